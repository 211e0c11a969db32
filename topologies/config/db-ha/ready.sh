#!/bin/sh
# The database tier is ready when HAProxy routes to a primary and that primary has a standby
# streaming from it: a failover before that would promote a standby without the data. In
# synchronous mode the standby must also be the synchronous one: Patroni names it up to a
# loop_wait after it streams, and until then commits are acknowledged without it, so a fault
# in that window would test an install that has not yet made its zero-loss promise.
curl -fsS http://127.0.0.1:8404/up | grep -qx 1 || exit 1
want='"state": "streaming"'
[ "${setting:synchronous_mode}" = "true" ] && want='"sync_state": "sync"'
for m in pg1 pg2; do
    curl -fsS "http://$m:8008/primary" 2>/dev/null | grep -q "$want" && exit 0
done
exit 1
