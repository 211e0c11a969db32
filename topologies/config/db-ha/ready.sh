#!/bin/sh
# The database tier is ready when HAProxy routes to a primary and that primary has a standby
# streaming from it: a failover before that would promote a standby without the data.
curl -fsS http://127.0.0.1:8404/up | grep -qx 1 || exit 1
for m in pg1 pg2; do
    curl -fsS "http://$m:8008/primary" 2>/dev/null | grep -q '"state": "streaming"' && exit 0
done
exit 1
