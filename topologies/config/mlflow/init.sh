#!/bin/sh
# The install step, run once: the bucket for the artifacts and MLflow's tables (`mlflow db
# upgrade` creates them on an empty database), before either tracking server starts.
set -eu
status=$(curl -sS -o /tmp/bucket.out -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X PUT "$MLFLOW_S3_ENDPOINT_URL/${setting:bucket}")
case "$status" in
    200|409) echo "bucket ${setting:bucket} ready ($status)" ;;
    *) echo "creating bucket ${setting:bucket} failed: HTTP $status"; cat /tmp/bucket.out; exit 1 ;;
esac
mlflow db upgrade "postgresql+psycopg2://${setting:app_user}:${secret:DB_PASSWORD}@dblb:5432/${setting:app_database}"
