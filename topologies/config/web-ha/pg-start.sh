#!/bin/bash
# PostgreSQL 15 as one node: initialise on first start (app role and its database,
# APP_DB_NAME, default traces), then run in the foreground. Runs as the postgres user.
# The initial files are not fsynced (--no-sync, fsync off in single-user mode): saves seconds
# per run, and a container's files outlive its kill (the host does not crash). The server
# itself runs with fsync and synchronous_commit on.
#
# With PG_TLS (a directory holding db.crt, db.key and ca.crt), other hosts may connect only
# over TLS, with a client certificate of that CA as well as their password
# (clientcert=verify-ca). The key is copied where PostgreSQL accepts it (owned by postgres,
# mode 0600): mounts are read-only copies.
#
# With BACKUP_DB_PASSWORD, a `backup` role may take base backups over a replication
# connection. With RESTORE_FROM (a URL), a node that starts empty restores the base backup
# found there (base.tar.gz and pg_wal.tar.gz of `pg_basebackup -Ft -z -X stream`) instead of
# initialising; none there (404) means a new install; anything else stops it, loudly.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/data
if [ -n "${RESTORE_FROM:-}" ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    status=$(curl -sS -o /tmp/base.tar.gz -w '%{http_code}' "$RESTORE_FROM/pg/base.tar.gz") || {
        echo "pg-start: cannot reach the backup at $RESTORE_FROM" >&2
        exit 1
    }
    case "$status" in
        200)
            curl -fsS -o /tmp/pg_wal.tar.gz "$RESTORE_FROM/pg/pg_wal.tar.gz"
            mkdir -p "$PGDATA"
            chmod 700 "$PGDATA"
            tar -xzf /tmp/base.tar.gz -C "$PGDATA"
            tar -xzf /tmp/pg_wal.tar.gz -C "$PGDATA/pg_wal"
            rm -f /tmp/base.tar.gz /tmp/pg_wal.tar.gz
            echo "pg-start: restored the base backup from $RESTORE_FROM"
            ;;
        404) ;;
        *)
            echo "pg-start: fetching the backup from $RESTORE_FROM gave HTTP $status" >&2
            exit 1
            ;;
    esac
fi
if [ -n "${PG_TLS:-}" ]; then
    TLS=/var/lib/postgresql/tls
    mkdir -p "$TLS"
    cp "$PG_TLS/db.crt" "$PG_TLS/db.key" "$PG_TLS/ca.crt" "$TLS/"
    chmod 600 "$TLS/db.key"
fi
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
    if [ -n "${PG_TLS:-}" ]; then
        cat >> "$PGDATA/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = '$TLS/db.crt'
ssl_key_file = '$TLS/db.key'
ssl_ca_file = '$TLS/ca.crt'
CONF
        # The node's own health check over 127.0.0.1 as without TLS.
        echo "host all all 127.0.0.1/32 scram-sha-256" >> "$PGDATA/pg_hba.conf"
        echo "hostssl all all 0.0.0.0/0 scram-sha-256 clientcert=verify-ca" >> "$PGDATA/pg_hba.conf"
    else
        echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    fi
    if [ -n "${BACKUP_DB_PASSWORD:-}" ]; then
        echo "host replication backup 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    fi
    "$BIN/postgres" --single -c fsync=off -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE app LOGIN PASSWORD '$APP_DB_PASSWORD';
CREATE DATABASE ${APP_DB_NAME:-traces} OWNER app;
${BACKUP_DB_PASSWORD:+CREATE ROLE backup LOGIN REPLICATION PASSWORD '$BACKUP_DB_PASSWORD';}
SQL
fi
exec "$BIN/postgres" -D "$PGDATA"
