#!/usr/bin/env bash
# The demo's SQL (demo/demo.sql) runs to the end on a fresh database and
# shows what it promises: the example configurations with next runs, the
# refused bad inputs, a FULL and an INCREMENTAL backup that verify at every
# level, a materialised snapshot, and a verified audit chain.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/demo
PORT=$((BO_TEST_PORT + 13))
trap 'cluster_stop "$DIR"' EXIT
plan 15

cluster_start "$DIR" "$PORT"
ok $? "cluster started"
sed "s|/tmp/backup_offline_demo/backups|$DIR/backups|g" "$(dirname "$0")/../../demo/demo.sql" >"$DIR/demo.sql"
cluster_psql "$DIR" "$PORT" -d postgres -P pager=off -f "$DIR/demo.sql" >"$DIR/demo.out" 2>&1
ok $? "demo/demo.sql runs to the end"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM backup_offline.backup_configuration WHERE next_backup_at > now()")" "4" \
	"four example configurations with a next run"
grep -q 'ERROR:  invalid schedule.startTime: "25:00"' "$DIR/demo.out"
ok $? "the bad start time is refused with its JSON path"
grep -q 'ERROR:  retention.retentionDays 30 is below the 2192 days HIPAA requires' "$DIR/demo.out"
ok $? "the short HIPAA retention is refused"
grep -q '"valid": true' "$DIR/demo.out"
ok $? "the audit chain verifies"
grep -q 'ERROR:  permission denied for table audit_log' "$DIR/demo.out"
ok $? "the other organization's application role cannot read the audit log"
is "$(q "$DIR" "$PORT" postgres "SELECT string_agg(backup_type || ':' || status, ',' ORDER BY created_at) FROM backup_offline.backup_snapshot")" \
	"FULL:COMPLETED,INCREMENTAL:COMPLETED" "the demo's FULL and INCREMENTAL backups completed"
is "$(q "$DIR" "$PORT" postgres "SELECT (t->>'upsertedRows') || '/' || (t->>'deletedRows') FROM backup_offline.backup_snapshot s, jsonb_array_elements(s.manifest->'tables') t WHERE s.backup_type = 'INCREMENTAL' AND t->>'name' = 'evv_records'")" \
	"0/80" "the INCREMENTAL holds the 80 deleted EVV records as deletes and nothing else of that table"
is "$(q "$DIR" "$PORT" postgres "SELECT status || ':' || (verification->>'level') || ':' || (verification->>'valid') FROM backup_offline.backup_snapshot WHERE backup_type = 'INCREMENTAL'")" \
	"COMPLETED:restore:true" "the INCREMENTAL's last verification (restore level) is recorded as valid"
is "$(grep -E '^ (caregivers|clients|evv_records|visits) ' "$DIR/demo.out" | grep -c '| true')" "4" \
	"the restore-level verification finds every non-empty table equal"
is "$(q "$DIR" "$PORT" postgres "SELECT string_agg(status || ' ' || approved_by, ',' ORDER BY created_at) FROM backup_offline.restore_operation")" \
	"COMPLETED demo_approver,ROLLED_BACK demo_approver" "the dropped table's restore and the in-place merge were approved by the second person; the merge was rolled back"
is "$(q "$DIR" "$PORT" postgres "SELECT (v->>'differingRows') || ' ' || (v->>'updatedRows') || ' ' || (r.rollback_results->>'restoredRows')
	FROM backup_offline.restore_operation r, jsonb_array_elements(r.validation_results) v WHERE r.status = 'ROLLED_BACK'")" \
	"80 80 80" "the merge filled the 80 emptied visits of Oct 9, and the rollback emptied them again"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FILTER (WHERE notes IS NULL) || ' ' || count(*) FILTER (WHERE tasks @> '[{\"rescheduled\": true}]') FROM care.visits WHERE visit_date = '2026-10-09'")" \
	"80 1" "after the rollback: the notes empty as before the merge, the office's reschedule kept throughout"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM care.evv_records")" "3920" \
	"the EVV table is back with its rows as of the latest backup"
[ $TAP_FAILED -eq 0 ] || cat "$DIR/demo.out" | sed 's/^/# /'
