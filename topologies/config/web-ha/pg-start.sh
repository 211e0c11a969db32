#!/bin/bash
# PostgreSQL 15 as one node: initialise on first start (app role and its database,
# APP_DB_NAME, default traces), then run in the foreground. Runs as the postgres user.
# The initial files are not fsynced (--no-sync, fsync off in single-user mode): saves seconds
# per run, and a container's files outlive its kill (the host does not crash). The server
# itself runs with fsync and synchronous_commit on.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    "$BIN/initdb" --no-sync -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '*'
# /run is empty in the imported image; the socket goes where postgres may write.
unix_socket_directories = '/tmp'
# Acknowledged means durable.
fsync = on
synchronous_commit = on
max_connections = 200
CONF
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    "$BIN/postgres" --single -c fsync=off -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE app LOGIN PASSWORD '$APP_DB_PASSWORD';
CREATE DATABASE ${APP_DB_NAME:-traces} OWNER app;
SQL
fi
exec "$BIN/postgres" -D "$PGDATA"
