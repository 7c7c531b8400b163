#!/usr/bin/env bash
# Fetch cost with and without finished rows in the tasks table (docs/postgres.md, "Retention and table bloat").
# Usage: bash bench/sql/postgres-finished-rows.sh [postgresql://user:pass@host:port/db]   (default $CONVEYOR_TEST_POSTGRES)
# Builds the tables from the migrations in src/Conveyor.Postgres/PostgresSchema.cs in a scratch schema
# (bloat_check, dropped at the end), with 0 and then 1,000,000 finished rows beside 1,000 ready ones, and prints
# the sizes and the EXPLAIN ANALYZE of one 64-task fetch (in a rolled-back transaction).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
url="${1:-${CONVEYOR_TEST_POSTGRES:?pass a postgresql:// URL or set CONVEYOR_TEST_POSTGRES}}"
ddl="$(mktemp)"
trap 'rm -f "$ddl"' EXIT
python3 - "$root/src/Conveyor.Postgres/PostgresSchema.cs" > "$ddl" <<'PY'
import re, sys
source = open(sys.argv[1]).read()
print("\n".join(m for m in re.findall(r'"""\n(.*?)\n        """', source, re.S) if "CREATE" in m or "DROP" in m))
PY
for finished in 0 1000000; do
  echo "== finished rows: $finished"
  psql "$url" -q -v finished="$finished" -v ddl="$ddl" -f "$root/bench/sql/postgres-finished-rows.sql"
done
psql "$url" -q -c "DROP SCHEMA bloat_check CASCADE" 2>/dev/null
