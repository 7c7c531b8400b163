#!/usr/bin/env bash
# Fetch cost with and without finished rows in the tasks table (docs/postgres.md, "Retention and table bloat").
# Usage: bash bench/sql/postgres-finished-rows.sh [postgresql://user:pass@host:port/db]   (default $CONVEYOR_TEST_POSTGRES)
# Builds the tables from the migrations in src/Conveyor.Postgres/Migrations/*.sql (in their numbered order) in a scratch schema
# (bloat_check, dropped at the end), with 0 and then 1,000,000 finished rows beside 1,000 ready ones, and prints
# the sizes and the EXPLAIN ANALYZE of one 64-task fetch (in a rolled-back transaction).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
url="${1:-${CONVEYOR_TEST_POSTGRES:?pass a postgresql:// URL or set CONVEYOR_TEST_POSTGRES}}"
ddl="$(mktemp)"
trap 'rm -f "$ddl"' EXIT
# The glob sorts by the zero-padded number; the files use no {{schema}} placeholder (search_path names the schema).
cat "$root"/src/Conveyor.Postgres/Migrations/[0-9]*.sql > "$ddl"
for finished in 0 1000000; do
  echo "== finished rows: $finished"
  psql "$url" -q -v finished="$finished" -v ddl="$ddl" -f "$root/bench/sql/postgres-finished-rows.sql"
done
psql "$url" -q -c "DROP SCHEMA bloat_check CASCADE" 2>/dev/null
