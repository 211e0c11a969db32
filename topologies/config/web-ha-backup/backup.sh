#!/bin/bash
# The backup, run on the backup server: a base backup of PostgreSQL (tar, compressed, with the
# WAL it needs streamed alongside: consistent on its own), then a copy of the bucket. The
# database first: every row it holds points at an object stored before the row was written, so
# the bucket copied after it holds them all. Published whole or not at all (a rename).
# `--database-only` leaves the bucket out, as an operator who backs up only the database does:
# the negative control of the backup and restore drill.
set -euo pipefail
mkdir -p /backup
rm -rf /backup/new
mkdir -p /backup/new/pg /backup/new/s3
t0=$(date +%s%N)
pg_basebackup -h db -U backup -D /backup/new/pg -Ft -z -X stream -c fast
t1=$(date +%s%N)
if [ "${1:-}" != "--database-only" ]; then rclone sync ":s3:$BUCKET" /backup/new/s3; fi
t2=$(date +%s%N)
rm -rf /backup/old
if [ -d /backup/current ]; then mv /backup/current /backup/old; fi
mv /backup/new /backup/current
rm -rf /backup/old
echo "base backup $(du -sk /backup/current/pg | cut -f1) KiB in $(( (t1 - t0) / 1000000 )) ms; bucket $(find /backup/current/s3 -type f | wc -l) objects in $(( (t2 - t1) / 1000000 )) ms"
