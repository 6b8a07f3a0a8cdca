#!/bin/sh
# Run once by the postgres image's entrypoint, on an empty data directory: creates the
# role mcpwatch-exporter connects as (member of pg_monitor: it reads every statistics view
# and can change nothing), with the password of the compose secret
# postgres_monitor_password, and the pg_stat_statements extension the exporter reads
# (the server loads it: see `command` in docker-compose.yml).
#
# A data directory that already exists is left alone; create the role there by hand:
#   CREATE ROLE monitor LOGIN PASSWORD '...' IN ROLE pg_monitor;
set -e

password=$(cat /run/secrets/postgres_monitor_password)

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=password="$password" <<'SQL'
CREATE ROLE monitor LOGIN PASSWORD :'password' IN ROLE pg_monitor;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
