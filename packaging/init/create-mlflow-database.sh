#!/usr/bin/env bash
# MLflow's role and database on the stack's PostgreSQL server. Safe to run again: the role's
# password follows MLFLOW_DB_PASSWORD each time. Connects with the libpq variables (PGHOST,
# PGUSER, PGPASSWORD, PGDATABASE) as a role that may create roles and databases.
set -euo pipefail
: "${MLFLOW_DB_PASSWORD:?MLflow database password missing: set MLFLOW_DB_PASSWORD}"

psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 -v password="$MLFLOW_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE mlflow LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow') \gexec
SELECT format('ALTER ROLE mlflow PASSWORD %L', :'password') \gexec
SELECT 'CREATE DATABASE mlflow OWNER mlflow'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow') \gexec
SQL
echo "MLflow's database 'mlflow' and role 'mlflow' are ready on ${PGHOST:-localhost}."
