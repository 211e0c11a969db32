#!/bin/sh
# A cluster node: the shared files the master distributes, then the node itself. The cluster
# key must be exactly 32 characters; the run's secret is 64 hex characters, so its first 32.
set -e
mkdir -p /var/lib/cluster/etc/shared
if [ "$1" = master ] && [ ! -f /var/lib/cluster/etc/shared/agent.conf ]; then
    printf 'notify_time=1\nversion=1\n' >/var/lib/cluster/etc/shared/agent.conf
fi
CLUSTER_KEY=$(printf %s "$CLUSTER_SECRET" | cut -c1-32)
export CLUSTER_KEY
exec cluster-node --role "$1" --master master --sync-interval-ms "${SYNC_INTERVAL_MS:-2000}"
