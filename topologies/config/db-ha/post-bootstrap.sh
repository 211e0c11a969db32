#!/bin/sh
# Patroni runs this once, on the first primary, with a connection URL for the superuser: the
# product's role and database (SYSTEMS.md §1), for topologies that put the product on top.
set -e
psql "$1" -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE ${setting:app_user} LOGIN PASSWORD '${secret:DB_PASSWORD}';
CREATE DATABASE ${setting:app_database} OWNER ${setting:app_user};
SQL
