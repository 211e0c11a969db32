#!/bin/sh
# The guides' install step on one VM: `database init`, and the bucket the product writes to.
set -eu
web --config /etc/hadrill/web.conf database init
# Only the store's keys: a database URL with TLS options holds `&`, which a shell would take
# as its own.
set -a
eval "$(grep '^S3_' /etc/hadrill/web.conf)"
set +a
status=$(curl -sS -o /tmp/bucket.out -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$S3_TRACE_AWS_ACCESS_KEY_ID:$S3_TRACE_AWS_SECRET_ACCESS_KEY" \
    -X PUT "$S3_ENDPOINT/$S3_TRACE_BUCKET")
case "$status" in
    200|409) echo "bucket $S3_TRACE_BUCKET ready ($status)" ;;
    *) echo "creating bucket $S3_TRACE_BUCKET failed: HTTP $status"; cat /tmp/bucket.out; exit 1 ;;
esac
