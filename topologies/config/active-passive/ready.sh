#!/bin/sh
# The pair is ready when the VIP leads to a primary and a standby streams from it.
curl -fsS -m 1 "http://${address:main:250}:8008/status" | grep -q '"role":"primary"' || exit 1
for n in node1 node2; do
    curl -fsS -m 1 "http://$n:8008/status" | grep -q '"replication_state":"streaming"' && exit 0
done
exit 1
