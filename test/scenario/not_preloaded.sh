#!/usr/bin/env bash
# Without shared_preload_libraries the extension still installs and its SQL
# works (nothing in this release needs the postmaster); the worker-only
# setting backup_offline.database is then not defined, and the reserved
# prefix still refuses unknown settings once the library is loaded.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/not_preloaded
PORT=$((BO_TEST_PORT + 12))
trap 'cluster_stop "$DIR"' EXIT
plan 5

cluster_start "$DIR" "$PORT" "shared_preload_libraries = ''"
ok $? "cluster without preloading started"
cluster_psql "$DIR" "$PORT" -d postgres -c "CREATE EXTENSION backup_offline" >/dev/null
ok $? "CREATE EXTENSION works without preloading"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM backup_offline.next_run_times('{\"frequency\": \"HOURLY\"}', 'UTC', '2025-01-01', 3)")" "3" \
	"schedule functions work"
out=$(cluster_psql "$DIR" "$PORT" -d postgres -c "SELECT backup_offline.next_run_time('{\"frequency\": \"DAILY\"}', 'UTC', now()); SHOW backup_offline.database" 2>&1)
echo "$out" | grep -q 'unrecognized configuration parameter "backup_offline.database"'
ok $? "backup_offline.database is only defined when preloaded"
out=$(cluster_psql "$DIR" "$PORT" -d postgres -c "SELECT backup_offline.next_run_time('{\"frequency\": \"DAILY\"}', 'UTC', now()); SET backup_offline.no_such = 1" 2>&1)
echo "$out" | grep -q 'invalid configuration parameter name "backup_offline.no_such"'
ok $? "the prefix is reserved once the library is loaded"
