#!/bin/bash
# One policy server of the active/passive pair (SYSTEMS.md §3): PostgreSQL (primary on the
# active, streaming replica on the passive), keepalived holding the virtual IP, and the status
# service. One script, several entry points, so the roles' logic lives in one place:
#   start          the container's command
#   notify STATE   keepalived's notify script: record the state; on MASTER promote PostgreSQL
#   check-gateway  keepalived's track script: the ping node (when the setting enables it)
#   failover       the operator's manual failover, run on the active
set -u
: "${NODE:?}" "${PEER:?}" "${PRIORITY:?}"
PGBIN=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/data
RUN=/run/hadrill
VIP='${address:main:250}'
GATEWAY='${setting:gateway}'
PING_NODE='${setting:ping_node}'
INITIAL_ACTIVE='${setting:initial_active}'
export PGPASSWORD='${secret:DB_PASSWORD}'
REPL_PASSWORD='${secret:REPL_PASSWORD}'

log() { echo "node.sh[$NODE]: $*" >&2; }
as_pg() { runuser -u postgres -- "$@"; }
sql() { as_pg psql -h /tmp -U postgres -d postgres -XAtqc "$1"; }
# The peer's PostgreSQL role as its status service reports it, or nothing if unreachable.
peer_status() {
    curl -fsS -m 1 "http://$PEER:8008/status" 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin).get('$1', ''))" 2>/dev/null
}
peer_role() { peer_status role; }

pg_start() {
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$RUN/postgresql.log" -w -t 60 start >/dev/null
}

init_primary() {
    log "initialising the primary"
    as_pg "$PGBIN/initdb" --no-sync -D "$PGDATA" -U postgres -k --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = '*'
unix_socket_directories = '/tmp'
wal_level = replica
wal_log_hints = on
hot_standby = on
max_wal_senders = 10
wal_keep_size = 256MB
# Per node (primary_conninfo names the peer); not copied by base backups.
include_if_exists = '$RUN/node.conf'
CONF
    cat >>"$PGDATA/pg_hba.conf" <<CONF
host replication replicator 0.0.0.0/0 scram-sha-256
host all all 0.0.0.0/0 scram-sha-256
CONF
    pg_start
    sql "ALTER ROLE postgres PASSWORD '$PGPASSWORD'"
    sql "CREATE ROLE replicator REPLICATION LOGIN PASSWORD '$REPL_PASSWORD'"
}

# A fresh copy of the active's data directory, as the guide's initial sync does.
init_standby() {
    log "copying the data directory from $PEER"
    until rm -rf "$PGDATA" && PGPASSWORD=$REPL_PASSWORD as_pg "$PGBIN/pg_basebackup" \
        -h "$PEER" -U replicator -D "$PGDATA" -X stream -c fast; do
        sleep 1
    done
    touch "$PGDATA/standby.signal" && chown postgres "$PGDATA/standby.signal"
}

# A former primary returning while the peer is active: finish crash recovery, rewind onto the
# peer's timeline (a full copy if that fails), and follow it.
rejoin() {
    log "rejoining $PEER as its standby"
    if [ ! -f "$PGDATA/standby.signal" ]; then
        as_pg "$PGBIN/postgres" --single -D "$PGDATA" postgres </dev/null >/dev/null 2>&1
        # A just-promoted primary's control file names its new timeline only after a
        # checkpoint; without one pg_rewind sees one timeline and rewinds nothing.
        as_pg psql -h "$PEER" -U postgres -d postgres -XAtqc CHECKPOINT >&2
        as_pg "$PGBIN/pg_rewind" -D "$PGDATA" \
            --source-server="host=$PEER user=postgres dbname=postgres password=$PGPASSWORD" >&2 ||
            init_standby
    fi
    sed -i '/default_transaction_read_only/d' "$PGDATA/postgresql.auto.conf"
    touch "$PGDATA/standby.signal" && chown postgres "$PGDATA/standby.signal"
}

keepalived_conf() {
    cat <<CONF
global_defs {
    script_user root
    enable_script_security
}
vrrp_script chk_gateway {
    script "/bin/bash /etc/hadrill/node.sh check-gateway"
    interval 1
    fall 2
    rise 2
}
track_file maintenance {
    file $RUN/maintenance
}
vrrp_instance policy {
    # Both start as BACKUP with nopreempt: a returning node never takes the VIP back.
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 51
    priority $PRIORITY
    advert_int 1
    virtual_ipaddress {
        $VIP/32 dev eth0
    }
    track_script {
        chk_gateway
    }
    track_file {
        maintenance weight 0
    }
    notify "/bin/bash /etc/hadrill/node.sh notify"
}
CONF
}

start() {
    mkdir -p "$RUN" && chown postgres "$RUN"
    touch "$RUN/postgresql.log" && chown postgres "$RUN/postgresql.log"
    echo BACKUP >"$RUN/vrrp-state"
    echo 0 >"$RUN/maintenance"
    echo "primary_conninfo = 'host=$PEER user=replicator password=$REPL_PASSWORD application_name=$NODE'" >"$RUN/node.conf"
    chown postgres "$RUN/node.conf"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        if [ "$NODE" = "$INITIAL_ACTIVE" ] && [ -z "$(peer_role)" ]; then init_primary; else init_standby; fi
    elif [ "$(peer_role)" = primary ]; then
        rejoin
    fi
    pg_status=$(as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; echo $?)
    [ "$pg_status" = 0 ] || pg_start
    # PostgreSQL's own log (pg_ctl writes it to a file) into the container's output.
    touch "$RUN/postgresql.log" && tail -n +1 -F "$RUN/postgresql.log" 2>/dev/null &
    policy --listen 0.0.0.0:8008 --state-file "$RUN/vrrp-state" &
    # A standby joins the election only once its primary holds the VIP, so the first election
    # cannot hand the VIP to the standby.
    if [ "$(peer_role)" = primary ]; then
        for _ in $(seq 150); do [ "$(peer_status vip)" = True ] && break; sleep 0.2; done
    fi
    keepalived_conf >"$RUN/keepalived.conf"
    # A container restarted after a SIGKILL keeps keepalived's pid files; when a pid in them now
    # belongs to another process, keepalived says "daemon is already running" and exits.
    rm -f "$RUN"/keepalived*.pid
    keepalived -n -l -D -f "$RUN/keepalived.conf" -p "$RUN/keepalived.pid" \
        -r "$RUN/keepalived-vrrp.pid" -c "$RUN/keepalived-checkers.pid" -b "$RUN/keepalived-bfd.pid" &
    # The node lives while its processes do; PostgreSQL may be restarted by a manual failover.
    while sleep 1; do
        [ "$(jobs -r | wc -l)" -eq 3 ] || { log "keepalived or the status service exited"; exit 1; }
        [ -f "$RUN/pg-maintenance" ] && continue
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1 || { log "PostgreSQL exited"; exit 1; }
    done
}

notify() {
    local state=$3
    echo "$state" >"$RUN/vrrp-state"
    log "VRRP state $state"
    if [ "$state" = MASTER ] && [ "$(sql 'SELECT pg_is_in_recovery()')" = t ]; then
        log "promoting PostgreSQL"
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" promote -w >/dev/null
    fi
}

check_gateway() {
    [ "$PING_NODE" = true ] || exit 0
    curl -fsS -m 1 -o /dev/null "http://$GATEWAY:8404/"
}

# Planned: fence writes, let the peer catch up, hand over the VIP, follow the new active.
failover() {
    [ "$(cat "$RUN/vrrp-state")" = MASTER ] || { echo "$NODE is not the active node" >&2; exit 1; }
    sql "ALTER SYSTEM SET default_transaction_read_only = on" && sql "SELECT pg_reload_conf()" >/dev/null
    sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" >/dev/null
    local lsn; lsn=$(sql "SELECT pg_current_wal_lsn()")
    for _ in $(seq 100); do
        [ "$(as_pg psql -h "$PEER" -U postgres -d postgres -XAtqc "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
        sleep 0.1
    done
    echo "$PEER has replayed up to $lsn"
    echo 1 >"$RUN/maintenance"
    for _ in $(seq 300); do [ "$(peer_role)" = primary ] && break; sleep 0.1; done
    [ "$(peer_role)" = primary ] || { echo "$PEER did not become primary" >&2; exit 1; }
    echo "$PEER is primary"
    touch "$RUN/pg-maintenance"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    rejoin
    pg_start
    rm -f "$RUN/pg-maintenance"
    echo 0 >"$RUN/maintenance"
    echo "$NODE follows $PEER"
}

case "${1:-}" in
start) start ;;
notify) shift; notify "$@" ;;
check-gateway) check_gateway ;;
failover) failover ;;
*) echo "usage: node.sh start|notify|check-gateway|failover" >&2; exit 2 ;;
esac
