#!/bin/bash
# The restore, run on the backup server once fresh data nodes are up: the bucket is made again
# and filled from the copy; the database restored itself from the base backup as it started
# (pg-start.sh, RESTORE_FROM), and must now serve.
set -euo pipefail
test -d /backup/current || { echo "no backup to restore: run backup.sh first" >&2; exit 1; }
rclone mkdir ":s3:$BUCKET"
rclone copy /backup/current/s3 ":s3:$BUCKET"
pg_isready -q -h db -d traces -U app || { echo "the database is not serving after its restore" >&2; exit 1; }
echo "bucket: $(rclone size ":s3:$BUCKET" | tr '\n' ' ')"
