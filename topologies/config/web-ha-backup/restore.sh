#!/bin/bash
# The restore, run on the backup server once fresh data nodes are up. The database restored
# itself from the base backup as it started (pg-start.sh, RESTORE_FROM) and must now serve.
# The bucket is made again and filled from the copy with the objects the restored rows point
# at, and only those: the copy was taken after the base backup, so it also holds objects of
# uploads the database no longer has, which would be left with no row.
set -euo pipefail
test -d /backup/current || { echo "no backup to restore: run backup.sh first" >&2; exit 1; }
pg_isready -q -h db -d traces -U app || { echo "the database is not serving after its restore" >&2; exit 1; }
rclone mkdir ":s3:$BUCKET"
PGPASSWORD="$APP_DB_PASSWORD" psql -h db -U app -d traces -Atc \
    "SELECT 'traces/' || sha256 FROM traces" > /tmp/referenced
rclone copy /backup/current/s3 ":s3:$BUCKET" --files-from-raw /tmp/referenced
echo "rows: $(wc -l < /tmp/referenced); objects in the copy: $(find /backup/current/s3 -type f | wc -l)"
echo "bucket: $(rclone size ":s3:$BUCKET" | tr '\n' ' ')"
