#!/bin/bash
# web-ha's PostgreSQL with TLS only: the server certificate of the test CA, and every client
# must present a certificate of that CA as well as its password (clientcert=verify-ca). The
# key is copied where PostgreSQL accepts it (owned by postgres, mode 0600): mounts are
# read-only copies.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/data
TLS=/var/lib/postgresql/tls
mkdir -p "$TLS"
cp /etc/hadrill/tls/db.crt /etc/hadrill/tls/db.key /etc/hadrill/tls/ca.crt "$TLS/"
chmod 600 "$TLS/db.key"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    "$BIN/initdb" --no-sync -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '*'
unix_socket_directories = '/tmp'
fsync = on
synchronous_commit = on
max_connections = 200
ssl = on
ssl_cert_file = '$TLS/db.crt'
ssl_key_file = '$TLS/db.key'
ssl_ca_file = '$TLS/ca.crt'
CONF
    # Local (health checks over 127.0.0.1) as web-ha; from other hosts only TLS with a
    # client certificate.
    echo "host all all 127.0.0.1/32 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "hostssl all all 0.0.0.0/0 scram-sha-256 clientcert=verify-ca" >> "$PGDATA/pg_hba.conf"
    "$BIN/postgres" --single -c fsync=off -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE app LOGIN PASSWORD '$APP_DB_PASSWORD';
CREATE DATABASE ${APP_DB_NAME:-traces} OWNER app;
SQL
fi
exec "$BIN/postgres" -D "$PGDATA"
