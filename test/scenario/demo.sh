#!/usr/bin/env bash
# The demo's SQL (demo/demo.sql) runs to the end on a fresh database and
# shows what it promises: the example configurations with next runs, the
# refused bad inputs, a FULL and an INCREMENTAL backup that verify at every
# level, a materialised snapshot, restores, a verified audit chain; and the
# offline-sync story: two phones edit one visit offline (notes; status and
# notes; an EVV clock-in) while the office edits it, reconnect and upload
# (one upload twice), the EVV clock-in is applied first, nothing twice, the
# visit merges (notes appended in arrival order, the latest status) with a
# FIELD_LEVEL conflict record per phone, and both phones pull the merged visit.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/demo
PORT=$((BO_TEST_PORT + 13))
VISIT=5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a04
EVV=5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a05
trap 'cluster_stop "$DIR"' EXIT
plan 23

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
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM care.evv_records WHERE id <> '$EVV'")" "3920" \
	"the EVV table is back with its rows as of the latest backup (the sync part's clock-in aside)"

# ---- offline sync --------------------------------------------------------------------
MERGED="Two-person lift transfer. Office: no clock-in by 10:00, family called. Ana: skin intact, repositioned. Ben: ate breakfast, vitals normal."
is "$(q "$DIR" "$PORT" postgres "SELECT v.status || ' v' || r.version || ' ' || v.notes FROM care.visits v
	JOIN backup_offline.sync_row r ON r.row_key = v.id::text JOIN backup_offline.sync_entity e ON e.id = r.entity_id AND e.entity_type = 'VISIT'
	WHERE v.id = '$VISIT'")" "COMPLETED v4 $MERGED" \
	"the merged visit: phone-ben's later status over the office's MISSED, the office's, Ana's and Ben's notes appended in arrival order"
is "$(q "$DIR" "$PORT" postgres "SELECT string_agg(operation_id || ':' || priority || ':' || status, ' ' ORDER BY completed_at) FROM backup_offline.sync_queue")" \
	"ben-1:CRITICAL:COMPLETED ana-1:NORMAL:COMPLETED ben-2:NORMAL:COMPLETED" \
	"the EVV clock-in (CRITICAL, uploaded last) applied first, then the visit's edits in upload order"
is "$(grep -cE '^ ben-[12] +\| PENDING +\| true$' "$DIR/demo.out") $(grep -cE '^ (ana|ben)-[12] +\| PENDING +\| false$' "$DIR/demo.out")" "2 3" \
	"phone-ben's second upload of its queue is answered duplicate: true for both operations (the first uploads: false)"
is "$(q "$DIR" "$PORT" postgres "SELECT (SELECT count(*) FROM backup_offline.sync_queue WHERE device_id = 'phone-ben') || ' '
	|| (SELECT count(*) FROM care.evv_records WHERE visit_id = '$VISIT') || ' '
	|| (SELECT count(*) FROM backup_offline.sync_conflict WHERE device_id = 'phone-ben')")" "2 1 1" \
	"nothing applied twice: phone-ben's operations queued once each, one clock-in, one conflict record (and the visit at version 4)"
is "$(q "$DIR" "$PORT" postgres "SELECT string_agg(device_id || ' ' || conflict_type || ' ' || status || ' ' || resolution || ' '
	|| (SELECT string_agg((f->>'path') || ':' || (f->>'resolution') || ':' || (f->>'winner'), ',' ORDER BY f->>'path')
		  FROM jsonb_array_elements(conflicting_fields) f), '; ' ORDER BY device_id) FROM backup_offline.sync_conflict")" \
	"phone-ana FIELD_LEVEL AUTO_RESOLVED merged notes:append:merged; phone-ben FIELD_LEVEL AUTO_RESOLVED merged notes:append:merged,status:lww:client" \
	"one conflict record per phone: FIELD_LEVEL, resolved automatically; notes appended, the status to phone-ben by lww"
is "$(q "$DIR" "$PORT" postgres "SELECT (base_version->>'version') || ' ' || (base_version->'data'->>'status') || ' / '
	|| (client_version->>'operation') || ' ' || (client_version->'data'->>'status') || ' / '
	|| (server_version->>'version') || ' ' || (server_version->'data'->>'status') || ' / ' || (merged->>'status')
	FROM backup_offline.sync_conflict WHERE device_id = 'phone-ben'")" \
	"1 SCHEDULED / PATCH COMPLETED / 3 MISSED / COMPLETED" \
	"phone-ben's conflict record keeps the base (v1), client and server (v3) versions and the merge"
is "$(grep -F "| COMPLETED | $MERGED" "$DIR/demo.out" | grep -cE '^ phone-(ana|ben) +\| +[0-9]+ +\| VISIT +\| 4 +\| ') $(grep -cE '^ phone-(ana|ben) +\| +[0-9]+ +\| EVV_RECORD +\| 1 +\| +\| clock-in 2026-11-26T08:02:00-06:00$' "$DIR/demo.out")" \
	"2 2" "both phones' second pull holds the merged visit (version 4) and phone-ben's clock-in"
grep -qE '^ 3 +\| 2 +\| 2 +\| 4 *$' "$DIR/demo.out"
ok $? "sync_statistics counts the demo's sync: 3 operations completed, 2 FIELD_LEVEL conflicts, 2 duplicate uploads, 4 pulls"
[ $TAP_FAILED -eq 0 ] || cat "$DIR/demo.out" | sed 's/^/# /'
