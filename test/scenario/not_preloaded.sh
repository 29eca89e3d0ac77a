#!/usr/bin/env bash
# Without shared_preload_libraries the extension still installs and its SQL
# works, except what needs the postmaster: run_backup and cancel_backup
# (job workers and their shared memory) refuse with a clear error, and
# backup_progress is empty; the worker-only settings backup_offline.database
# and max_backup_jobs are then not defined, and the reserved prefix still
# refuses unknown settings once the library is loaded.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/not_preloaded
PORT=$((BO_TEST_PORT + 12))
trap 'cluster_stop "$DIR"' EXIT
plan 8

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
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null 2>&1 <<SQL
CREATE TABLE public.visits (id bigint PRIMARY KEY, notes text);
SELECT backup_offline.register_entity('VISIT', 'public.visits', '{}');
INSERT INTO backup_offline.organization_member VALUES ('postgres', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50');
SET backup_offline.organization_id = '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50';
SELECT backup_offline.create_backup_configuration('{"name": "np", "schedule": {"frequency": "DAILY"}, "storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "$DIR/backups/r"}}');
SQL
out=$(cluster_psql "$DIR" "$PORT" -d postgres -v VERBOSITY=verbose -c "SELECT backup_offline.run_backup(id) FROM backup_offline.backup_configuration" 2>&1)
echo "$out" | grep -q 'ERROR:  55000: run_backup needs backup_offline in shared_preload_libraries' &&
	echo "$out" | grep -q 'HINT:  Add backup_offline to shared_preload_libraries and restart the server.'
ok $? "run_backup says it needs shared_preload_libraries (55000, with a hint)"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM backup_offline.backup_snapshot")" "0" "and no snapshot row was written"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM backup_offline.backup_progress")" "0" "backup_progress is empty"
