#!/bin/sh
# One MLflow tracking server: runs and params in PostgreSQL through the routed endpoint (the
# primary, whichever member Patroni elects), artifacts proxied to the S3 bucket. Any Host
# header: users reach it through the load balancer's published port.
set -eu
exec mlflow server --host 0.0.0.0 --port 5000 --workers 1 \
    --backend-store-uri "postgresql+psycopg2://${setting:app_user}:${secret:DB_PASSWORD}@dblb:5432/${setting:app_database}" \
    --serve-artifacts --artifacts-destination "s3://${setting:bucket}/" \
    --allowed-hosts '*'
