#!/usr/bin/env bash
# In-place restores and their rollback (src/restore/inplace.c,
# src/catalog/75_restore.sql) on a small home-care schema ip: visits (a
# generated column, jsonb, arrays, numeric, a modified_at_column) and EVV
# records (an identity key), with rows that differ from the backup, rows
# only the backup holds and rows only the table holds.
#
# Proven:
#   * every strategy leaves exactly the rows SQL computes from a copy of
#     the tables taken right after the backup (bk) and one taken right
#     before the restore (pre), with no help from the extension:
#     BACKUP_WINS, EXISTING_WINS, NEWEST_WINS and OLDEST_WINS (by
#     updated_at), MERGE (NULL fields filled from the backup), and MANUAL
#     (the table untouched, one restore_conflict row per differing or
#     missing row, with the differing fields); the validation counters say
#     the same; rows only the table holds are kept by every strategy;
#   * the writes run as the requester: a trigger on the table sees the
#     requester as current_user; a requester without UPDATE on the table
#     gets a FAILED restore (42501) and an unchanged table;
#   * rollback_restore returns both tables exactly to their state before the
#     restore (digest with the generated column), drops the rollback
#     tables, leaves the restore ROLLED_BACK; a second rollback, a rollback
#     of a MANUAL or of a new-schema restore, and a rollback after a
#     restored row changed (55000) are refused and change nothing;
#   * SELECTIVE in place (includeEntities + recordIds) touches only the
#     selected rows;
#   * refused at create_restore, nothing created: IN_PLACE without
#     approval, with a schema, as FILE_LEVEL, NEWEST_WINS without a
#     modified_at_column, a table that no longer exists; approval by the
#     requester refused;
#   * atomicity: an error in the middle (a trigger raising on one row)
#     leaves the tables, restore_rollback and backup_offline_rollback as
#     they were and the restore FAILED; a kill -9 of the job worker in the
#     middle of writing does the same once recovery has run;
#   * no server process crashes on the way (except the kill).
set -uo pipefail
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/backup_lib.sh"

DIR=$BO_TEST_DIR/restore_inplace
PORT=$((BO_TEST_PORT + 30))
ORG=6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
trap 'cluster_stop "$DIR"' EXIT
plan 62

# as ROLE SQL...: run statements as a role of the organization; the first
# ERROR line (with SQLSTATE) on stderr is printed, values on stdout
as() {
	local role=$1 args=() s out
	shift
	for s in "$@"; do args+=(-c "$s"); done
	out=$(cluster_psql "$DIR" "$PORT" -d postgres -At -q -v VERBOSITY=verbose -c "SET client_min_messages = warning" \
		-c "SET ROLE $role" -c "SET backup_offline.organization_id = '$ORG'" "${args[@]}" 2>&1)
	if grep -q '^ERROR:' <<<"$out"; then
		grep -m1 '^ERROR:' <<<"$out"
	else
		printf '%s\n' "$out"
	fi
}

# create ROLE EXTRA-JSON: an in-place restore of snapshot $SNAP requested by ROLE
create() {
	as "$1" "SELECT backup_offline.create_restore('{\"snapshotId\": \"$SNAP\", \"restoreType\": \"FULL\",
		\"destination\": {\"type\": \"IN_PLACE\"}$2}')"
}

# restore ROLE EXTRA-JSON: create as ROLE, approve as ip_approver, run as
# ROLE; sets RID, and ERR to run_restore's error (empty when none)
restore() {
	RID=$(create "$1" "$2")
	as ip_approver "SELECT backup_offline.approve_restore('$RID')" >/dev/null
	ERR=$(cluster_psql "$DIR" "$PORT" -d postgres -At -v VERBOSITY=verbose -c "SET client_min_messages = warning" \
		-c "SET ROLE $1" -c "SELECT backup_offline.run_restore('$RID')" 2>&1 >"$DIR/run.out" | grep -m1 '^ERROR:')
}

# R EXPRESSION: over the restore $RID's row r
R() { Q "SELECT $1 FROM backup_offline.restore_operation r WHERE r.id = '$RID'"; }

# V TABLE KEY: a validation result's value for table ip.TABLE of restore $RID
V() { Q "SELECT v->>'$2' FROM backup_offline.restore_operation r, jsonb_array_elements(r.validation_results) v
	WHERE r.id = '$RID' AND v->>'table' = 'ip.$1'"; }

# state: digests of both tables now (every column, the generated one too)
state() { Q "SELECT chk.qdigest('SELECT * FROM ip.visits') || ' ' || chk.qdigest('SELECT * FROM ip.evv')"; }

# kept_tables: how many rollback tables of restore $RID exist
kept_tables() {
	R "(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'backup_offline_rollback' AND c.relname LIKE lower(replace(r.restore_number, '-', '_')) || '\\_%')"
}

# reset: both tables back to pre
reset() {
	Q "SELECT chk.reset()" >/dev/null
}

cluster_start "$DIR" "$PORT" || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'"
cluster_psql "$DIR" "$PORT" -d postgres -c "ALTER SYSTEM SET backup_offline.default_key_id = 'k1'" \
	-c "ALTER SYSTEM SET backup_offline.scheduler_interval = 1" \
	-c "SELECT pg_reload_conf()" -c "CREATE EXTENSION backup_offline" >/dev/null || exit 1

cluster_psql "$DIR" "$PORT" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE SCHEMA ip;
CREATE TABLE ip.visits (id int PRIMARY KEY, client_id uuid NOT NULL, status text NOT NULL, notes text,
	miles numeric(8,2), tags text[], doc jsonb, updated_at timestamptz NOT NULL,
	twice int GENERATED ALWAYS AS (id * 2) STORED);
CREATE TABLE ip.evv (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, visit_id int NOT NULL,
	lat numeric(9,6), lon numeric(9,6), clock_in timestamptz);
CREATE TABLE ip.extra (id int PRIMARY KEY);
INSERT INTO ip.visits (id, client_id, status, notes, miles, tags, doc, updated_at)
SELECT g, ('11111111-1111-4111-8111-11111111111' || (g % 2))::uuid, 'SCHEDULED', 'note ' || g, g * 1.5,
	   ARRAY['a', 'b' || g], jsonb_build_object('tasks', jsonb_build_array(g, 'bath')),
	   '2026-01-01 00:00+00'::timestamptz + g * interval '1 hour'
  FROM generate_series(1, 10) g;
INSERT INTO ip.evv (visit_id, lat, lon, clock_in)
SELECT g, 30 + g / 100.0, -97 - g / 100.0, '2026-01-01 08:00+00'::timestamptz + g * interval '1 day'
  FROM generate_series(1, 10) g;
INSERT INTO ip.extra VALUES (1);
-- who wrote (the restore's triggers fire as the requester), when to stall, when to fail
CREATE TABLE ip.writers (who name, op text);
CREATE TABLE ip.flags (stall boolean NOT NULL, fail_id int);
INSERT INTO ip.flags VALUES (false, NULL);
-- a trap: the trigger (run as the requester) puts schema ip first in the
-- session's search_path; ip.now() records who calls it.  The extension
-- owner's later unqualified now() must never land here.
CREATE TABLE ip.captured (who name);
GRANT INSERT ON ip.captured TO PUBLIC;
CREATE FUNCTION ip.now() RETURNS timestamptz LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO ip.captured VALUES (current_user);
	RETURN pg_catalog.now();
END
\$\$;
CREATE FUNCTION ip.visits_trigger() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM set_config('search_path', 'ip, pg_catalog', false);
	INSERT INTO ip.writers VALUES (current_user, TG_OP);
	IF (SELECT stall FROM ip.flags) THEN
		PERFORM pg_sleep(60);
	END IF;
	IF NEW.id = (SELECT fail_id FROM ip.flags) THEN
		RAISE EXCEPTION 'visit % refused by a trigger', NEW.id;
	END IF;
	RETURN NEW;
END
\$\$;
CREATE TRIGGER visits_trigger BEFORE INSERT OR UPDATE ON ip.visits FOR EACH ROW EXECUTE FUNCTION ip.visits_trigger();

CREATE ROLE ip_clerk IN ROLE backup_offline_operator;
CREATE ROLE ip_reader IN ROLE backup_offline_operator;
CREATE ROLE ip_approver IN ROLE backup_offline_approver;
GRANT USAGE ON SCHEMA ip TO ip_clerk, ip_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ip.visits, ip.evv TO ip_clerk;
GRANT SELECT, INSERT ON ip.writers TO ip_clerk, ip_reader;
GRANT SELECT ON ip.flags TO ip_clerk, ip_reader;
GRANT SELECT ON ip.visits, ip.evv TO ip_reader;
INSERT INTO backup_offline.organization_member
VALUES ('postgres', '$ORG'), ('ip_clerk', '$ORG'), ('ip_reader', '$ORG'), ('ip_approver', '$ORG');
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.register_entity('VISIT', 'ip.visits', '{"clientIdColumn": "client_id", "modifiedAtColumn": "updated_at"}');
SELECT backup_offline.register_entity('EVV_RECORD', 'ip.evv', '{"modifiedAtColumn": "clock_in"}');
SELECT backup_offline.register_entity('EXTRA', 'ip.extra', '{}');

-- the checks' helpers, independent of the extension
CREATE SCHEMA chk;
CREATE FUNCTION chk.qdigest(query text) RETURNS text LANGUAGE plpgsql
	SET datestyle = 'ISO, YMD' SET timezone = 'UTC' SET extra_float_digits = 1
AS \$\$
DECLARE
	result text;
BEGIN
	EXECUTE format('SELECT count(*) || '':'' || md5(coalesce(string_agg(h, E''\n'' ORDER BY h COLLATE "C"), '''')) '
				   'FROM (SELECT ROW(q.*)::text AS h FROM (%s) AS q) AS s', query) INTO result;
	RETURN result;
END
\$\$;
SQL
ok $? "schema ip, roles, entity types registered"

CFG=$(cluster_psql "$DIR" "$PORT" -d postgres -At -c "SET backup_offline.organization_id = '$ORG'" -c "SELECT backup_offline.create_backup_configuration('{
	\"name\": \"in place\", \"scope\": {\"includeEntities\": [\"VISIT\", \"EVV_RECORD\", \"EXTRA\"]},
	\"schedule\": {\"frequency\": \"DAILY\", \"startTime\": \"02:00\", \"timezone\": \"UTC\"},
	\"retention\": {\"retentionDays\": 30},
	\"storageDestination\": {\"type\": \"LOCAL_FILESYSTEM\", \"path\": \"$DIR/backups/repo\"}}')")
SNAP=$(Q "SELECT backup_offline.run_backup('$CFG')" 2>/dev/null)
is "$(Q "SELECT status FROM backup_offline.backup_snapshot WHERE id = '$SNAP'")" "COMPLETED" "FULL backup of the three tables"

# bk: the tables as backed up; then the changes; pre: the tables before each restore
cluster_psql "$DIR" "$PORT" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE chk.bk_visits AS SELECT * FROM ip.visits;
CREATE TABLE chk.bk_evv AS SELECT * FROM ip.evv;
-- office edits, newer than the backup
UPDATE ip.visits SET status = 'COMPLETED', notes = 'office edit ' || id, updated_at = '2026-06-01+00' WHERE id IN (1, 2, 3);
-- an edit whose time is older than the backup's version
UPDATE ip.visits SET status = 'MISSED', updated_at = '2025-06-01+00' WHERE id = 4;
-- fields emptied
UPDATE ip.visits SET status = 'IN_PROGRESS', notes = NULL, miles = NULL, updated_at = '2026-06-01+00' WHERE id = 5;
-- rows only the backup holds, rows only the table holds
DELETE FROM ip.visits WHERE id IN (6, 7);
INSERT INTO ip.visits (id, client_id, status, notes, updated_at)
VALUES (11, '11111111-1111-4111-8111-111111111111', 'NEW', 'new 11', '2026-07-01+00'),
	   (12, '11111111-1111-4111-8111-111111111110', 'NEW', 'new 12', '2026-07-01+00');
DELETE FROM ip.evv WHERE id IN (2, 3);
UPDATE ip.evv SET lat = 0 WHERE id = 1;
INSERT INTO ip.evv (visit_id, lat) VALUES (11, 1);
CREATE TABLE chk.pre_visits AS SELECT * FROM ip.visits;
CREATE TABLE chk.pre_evv AS SELECT * FROM ip.evv;
CREATE FUNCTION chk.reset() RETURNS void LANGUAGE sql AS $$
	UPDATE ip.flags SET stall = false, fail_id = NULL;
	ALTER TABLE ip.visits DISABLE TRIGGER visits_trigger;
	TRUNCATE ip.visits, ip.evv, ip.writers;
	INSERT INTO ip.visits (id, client_id, status, notes, miles, tags, doc, updated_at)
	SELECT id, client_id, status, notes, miles, tags, doc, updated_at FROM chk.pre_visits;
	INSERT INTO ip.evv OVERRIDING SYSTEM VALUE SELECT * FROM chk.pre_evv;
	ALTER TABLE ip.visits ENABLE TRIGGER visits_trigger;
$$;
-- what each strategy must leave, from bk (b) and pre (p) alone: the rows of
-- both by the rule, plus the rows of either side alone
CREATE FUNCTION chk.expected(strategy text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	pick text := CASE strategy
		WHEN 'BACKUP_WINS' THEN 'true'
		WHEN 'EXISTING_WINS' THEN 'false'
		WHEN 'NEWEST_WINS' THEN 'b.%1$s > p.%1$s'
		WHEN 'OLDEST_WINS' THEN 'b.%1$s < p.%1$s' END;
	visits text;
	evv text;
BEGIN
	IF strategy = 'MERGE' THEN
		visits := 'SELECT p.id, p.client_id, p.status, coalesce(p.notes, b.notes), coalesce(p.miles, b.miles), '
			'coalesce(p.tags, b.tags), coalesce(p.doc, b.doc), p.updated_at, p.twice '
			'FROM chk.pre_visits p JOIN chk.bk_visits b USING (id)';
		evv := 'SELECT p.id, p.visit_id, coalesce(p.lat, b.lat), coalesce(p.lon, b.lon), coalesce(p.clock_in, b.clock_in) '
			'FROM chk.pre_evv p JOIN chk.bk_evv b USING (id)';
	ELSE
		-- the row types differ (two tables): through text
		visits := format('SELECT ((CASE WHEN %s THEN b::text ELSE p::text END)::chk.pre_visits).* '
						 'FROM chk.pre_visits p JOIN chk.bk_visits b USING (id)', format(pick, 'updated_at'));
		evv := format('SELECT ((CASE WHEN %s THEN b::text ELSE p::text END)::chk.pre_evv).* '
					  'FROM chk.pre_evv p JOIN chk.bk_evv b USING (id)', format(pick, 'clock_in'));
	END IF;
	RETURN chk.qdigest(visits || ' UNION ALL SELECT * FROM chk.bk_visits WHERE id NOT IN (SELECT id FROM chk.pre_visits)'
							  || ' UNION ALL SELECT * FROM chk.pre_visits WHERE id NOT IN (SELECT id FROM chk.bk_visits)')
		|| ' ' ||
		   chk.qdigest(evv || ' UNION ALL SELECT * FROM chk.bk_evv WHERE id NOT IN (SELECT id FROM chk.pre_evv)'
						   || ' UNION ALL SELECT * FROM chk.pre_evv WHERE id NOT IN (SELECT id FROM chk.bk_evv)');
END
$$;
SQL
PRE=$(state)
diag "pre: $PRE"

crash_mark

# ---- refused at create_restore ----------------------------------------------
N0=$(Q "SELECT count(*) FROM backup_offline.restore_operation")
like "$(create ip_clerk ', "requiresApproval": false')" "ERROR:  22023: an in-place restore always requires approval*" \
	"IN_PLACE with requiresApproval false is refused (22023)"
like "$(create postgres ', "requiresApproval": false')" "ERROR:  22023: an in-place restore always requires approval*" \
	"... even for an administrator"
like "$(as ip_clerk "SELECT backup_offline.create_restore('{\"snapshotId\": \"$SNAP\", \"restoreType\": \"FULL\",
	\"destination\": {\"type\": \"IN_PLACE\", \"schema\": \"x\"}}')")" "ERROR:  22023: an IN_PLACE restore writes into the tables of the snapshot*" \
	"IN_PLACE with a schema is refused (22023)"
like "$(create ip_clerk ', "conflictResolutionStrategy": "NEWEST_WINS", "scope": {"includeEntities": ["EXTRA"]}')" \
	"ERROR:  22023: conflictResolutionStrategy NEWEST_WINS needs the time each row last changed, and table ip.extra has no modified_at_column*" \
	"NEWEST_WINS over a table without modified_at_column is refused (22023)"
Q "DROP TABLE ip.extra" >/dev/null
like "$(create ip_clerk '')" "ERROR:  42P01: table ip.extra of snapshot BKP-00000001 does not exist*" \
	"a table of the scope that no longer exists is refused (42P01)"
is "$(Q "SELECT count(*) FROM backup_offline.restore_operation")" "$N0" "no restore was created by the refused requests"
SCOPE=', "scope": {"includeEntities": ["VISIT", "EVV_RECORD"]}'
RID=$(create ip_clerk "$SCOPE")
Q "GRANT ip_approver TO ip_clerk" >/dev/null
like "$(as ip_clerk "SELECT backup_offline.approve_restore('$RID')")" \
	"ERROR:  42501: restore RST-* cannot be approved by its own requester" \
	"the requester, even as an approver, cannot approve its own in-place restore (42501)"
Q "REVOKE ip_approver FROM ip_clerk" >/dev/null
as postgres "SELECT backup_offline.cancel_restore('$RID')" >/dev/null

# ---- every strategy ---------------------------------------------------------
for strategy in BACKUP_WINS EXISTING_WINS NEWEST_WINS OLDEST_WINS MERGE; do
	reset
	restore ip_clerk "$SCOPE, \"conflictResolutionStrategy\": \"$strategy\""
	is "$ERR$(R "r.status")" "COMPLETED" "$strategy: the restore COMPLETED"
	is "$(state)" "$(Q "SELECT chk.expected('$strategy')")" "$strategy: both tables hold exactly the rows the strategy dictates"
	case $strategy in
	BACKUP_WINS) want="5 2 0 2 10" ;;   # updated inserted kept tableOnly matching
	EXISTING_WINS) want="0 2 5 2 5" ;;
	NEWEST_WINS) want="1 2 4 2 6" ;;
	OLDEST_WINS) want="4 2 1 2 9" ;;
	MERGE) want="1 2 4 2 5" ;;
	esac
	is "$(V visits updatedRows) $(V visits insertedRows) $(V visits keptExistingRows) $(V visits tableOnlyRows) $(V visits backupRowsMatching)" \
		"$want" "$strategy: visits' validation counters (updated, inserted, kept, table-only, matching)"
done
# BACKUP_WINS wrote through the requester: its trigger saw ip_clerk
reset
restore ip_clerk "$SCOPE"
is "$ERR$(Q "SELECT string_agg(DISTINCT who || ' ' || op, ',') FROM ip.writers")" "ip_clerk INSERT,ip_clerk UPDATE" \
	"the table's trigger fired as the requester for the updates and inserts"
is "$(V evv updatedRows) $(V evv insertedRows) $(V evv tableOnlyRows) $(V evv backupVerified)" "1 2 1 true" \
	"evv (identity key): 1 updated, 2 inserted with their ids, 1 row only the table holds kept, backup verified"

# ---- rollback ---------------------------------------------------------------
RB=$(R "(SELECT string_agg(rollback_table, ',' ORDER BY rollback_table) FROM backup_offline.restore_rollback WHERE restore_id = r.id)")
is "$RB" "$(R "lower(replace(r.restore_number, '-', '_')) || '_1,' || lower(replace(r.restore_number, '-', '_')) || '_2'")" \
	"the restore kept a rollback table per table in restore_rollback"
is "$(as ip_clerk "SELECT backup_offline.rollback_restore('$RID')->>'status'")" "ROLLED_BACK" "rollback_restore by the requester: ROLLED_BACK"
is "$(state)" "$PRE" "the rollback returned both tables exactly to their state before the restore"
is "$(Q "SELECT count(*) FROM backup_offline.restore_rollback WHERE restore_id = '$RID'")/$(kept_tables)" \
	"0/0" "the rollback tables are gone"
is "$(R "r.rollback_results->>'removedRows'") $(R "r.rollback_results->>'restoredRows'") $(R "r.rolled_back_by")" "4 6 ip_clerk" \
	"rollback results: 4 inserted rows removed, 6 updated rows restored, by ip_clerk"
like "$(as ip_clerk "SELECT backup_offline.rollback_restore('$RID')")" "ERROR:  55000: restore RST-* is ROLLED_BACK" \
	"a second rollback is refused (55000)"

# a restored row changed afterwards: the rollback is refused and changes nothing
reset
restore ip_clerk "$SCOPE"
Q "UPDATE ip.visits SET notes = 'changed after the restore' WHERE id = 2" >/dev/null
AFTER=$(state)
like "$(as ip_clerk "SELECT backup_offline.rollback_restore('$RID')")" "ERROR:  55000: rollback of restore RST-* failed: 1 row of ip.visits changed after the restore wrote it" \
	"a rollback after a restored row changed is refused (55000)"
is "$(state) $(R "r.status") $(Q "SELECT count(*) FROM backup_offline.restore_rollback WHERE restore_id = '$RID'")" "$AFTER COMPLETED 2" \
	"... the tables, the restore and its rollback tables unchanged"

# ---- MANUAL -----------------------------------------------------------------
reset
restore ip_clerk "$SCOPE, \"conflictResolutionStrategy\": \"MANUAL\""
is "$ERR$(R "r.status") $(state)" "COMPLETED $PRE" "MANUAL: COMPLETED, both tables untouched"
is "$(Q "SELECT string_agg(table_name || ':' || conflict_type || ':' || cnt, ' ' ORDER BY table_name, conflict_type)
	FROM (SELECT table_name, conflict_type, count(*) cnt FROM backup_offline.restore_conflict WHERE restore_id = '$RID'
		  GROUP BY 1, 2) x")" "evv:BACKUP_ONLY:2 evv:ROW_DIFFERS:1 visits:BACKUP_ONLY:2 visits:ROW_DIFFERS:5" \
	"MANUAL: one conflict per differing or missing row"
is "$(Q "SELECT string_agg(f->>'field' || '=' || (f->>'backupValue') || '/' || (f->>'existingValue'), ' ' ORDER BY f->>'field')
	FROM backup_offline.restore_conflict c, jsonb_array_elements(c.conflicting_fields) f
	WHERE c.restore_id = '$RID' AND c.table_name = 'visits' AND c.record_key = '{\"id\": 4}'")" \
	"status=SCHEDULED/MISSED updated_at=2026-01-01T04:00:00+00:00/2025-06-01T00:00:00+00:00" \
	"MANUAL: visit 4's conflict names exactly the differing fields with both values"
is "$(Q "SELECT backup_version->>'notes' || '|' || (existing_version IS NULL) FROM backup_offline.restore_conflict
	WHERE restore_id = '$RID' AND table_name = 'visits' AND record_key = '{\"id\": 6}'")" "note 6|true" \
	"MANUAL: a row only the backup holds is recorded with its backup version"
like "$(as ip_clerk "SELECT backup_offline.rollback_restore('$RID')")" "ERROR:  55000: restore RST-* (MANUAL) changed nothing*" \
	"rolling back a MANUAL restore is refused (55000)"

# ---- SELECTIVE in place -----------------------------------------------------
reset
RID=$(as ip_clerk "SELECT backup_offline.create_restore('{\"snapshotId\": \"$SNAP\", \"restoreType\": \"SELECTIVE\",
	\"scope\": {\"includeEntities\": [\"VISIT\"], \"recordIds\": [1, 6]}, \"destination\": {\"type\": \"IN_PLACE\"}}')")
as ip_approver "SELECT backup_offline.approve_restore('$RID')" >/dev/null
err=$(as ip_clerk "SELECT backup_offline.run_restore('$RID')->>'status'")
is "$err" "COMPLETED" "SELECTIVE in place by recordIds: COMPLETED"
is "$(Q "SELECT chk.qdigest('SELECT * FROM ip.visits')")" \
	"$(Q "SELECT chk.qdigest('SELECT * FROM chk.bk_visits WHERE id IN (1, 6) UNION ALL SELECT * FROM chk.pre_visits WHERE id NOT IN (1, 6)')")" \
	"... visits 1 and 6 are the backup's, every other row as before"
is "$(V visits backupRows) $(V visits updatedRows) $(V visits insertedRows) $(V visits tableOnlyRows)" "2 1 1 " \
	"... 2 selected rows, 1 updated, 1 inserted, no table-only count for a selection"

# ---- privileges and atomicity -----------------------------------------------
reset
restore ip_reader "$SCOPE"
like "$ERR" "ERROR:  42501: restore RST-* failed: permission denied for table *" \
	"a requester without UPDATE on the table: run_restore fails (42501)"
is "$(R "r.status") $(state)" "FAILED $PRE" "... the restore FAILED and both tables are unchanged"

reset
Q "UPDATE ip.flags SET fail_id = 7" >/dev/null
restore ip_clerk "$SCOPE"
like "$ERR" "ERROR:  P0001: restore RST-* failed: visit 7 refused by a trigger" "an error on one row fails the restore"
is "$(R "r.status") $(state) $(Q "SELECT count(*) FROM backup_offline.restore_rollback WHERE restore_id = '$RID'") $(kept_tables)" \
	"FAILED $PRE 0 0" "... FAILED; the tables unchanged (including the rows before visit 7); no rollback table"

# a kill -9 of the job worker while it writes
reset
Q "UPDATE ip.flags SET stall = true" >/dev/null
RID=$(create ip_clerk "$SCOPE")
as ip_approver "SELECT backup_offline.approve_restore('$RID')" >/dev/null
is "$(as ip_clerk "SELECT backup_offline.run_restore('$RID', wait => false)->>'status'")" "IN_PROGRESS" "a restore started without waiting"
PID=""
for _ in $(seq 150); do
	PID=$(Q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'backup_offline job' AND wait_event = 'PgSleep'")
	[ -n "$PID" ] && break
	sleep 0.2
done
ok "$([ -n "$PID" ]; echo $?)" "the job is stalled inside the table's trigger, mid-write"
crash_mark
kill -9 "$PID"
wait_ready
Q "UPDATE ip.flags SET stall = false" >/dev/null
for _ in $(seq 150); do
	[ "$(R "r.status")" = "FAILED" ] && break
	sleep 0.2
done
is "$(R "r.status") $(R "r.error->>'sqlstate'")" "FAILED 57P01" "after the kill and the restart, recovery marks the restore FAILED"
is "$(state) $(Q "SELECT count(*) FROM ip.writers") $(Q "SELECT count(*) FROM backup_offline.restore_rollback WHERE restore_id = '$RID'") $(kept_tables)" \
	"$PRE 0 0 0" "... both tables as before, no trigger write survived, no rollback table"

# a new-schema restore is not rolled back
RID=$(as ip_clerk "SELECT backup_offline.create_restore('{\"snapshotId\": \"$SNAP\", \"restoreType\": \"FULL\", $(printf '%s' "${SCOPE#, }"), \"destination\": {\"schema\": \"side\"}}')")
as ip_approver "SELECT backup_offline.approve_restore('$RID')" >/dev/null
as ip_clerk "SELECT backup_offline.run_restore('$RID')" >/dev/null
like "$(as ip_clerk "SELECT backup_offline.rollback_restore('$RID')")" "ERROR:  55000: restore RST-* wrote into a schema or file of its own*" \
	"rolling back a new-schema restore is refused (55000)"

# ---- every built-in type family, in place --------------------------------------
# typefam's tables backed up; then half the rows deleted and a column of the
# rest emptied; a BACKUP_WINS restore in place brings each table back to its
# backed-up rows (typefam.row_digest, independent of the extension)
cluster_psql "$DIR" "$PORT" -d postgres -v ON_ERROR_STOP=1 -f "$ROOT/test/fixtures/type_families.sql" >/dev/null &&
	cluster_psql "$DIR" "$PORT" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET backup_offline.organization_id = '$ORG';
-- a domain whose check records who runs it, inside a composite type
CREATE TABLE ip.checked_by (who name);
GRANT INSERT ON ip.checked_by TO PUBLIC;
CREATE FUNCTION ip.record_checker(v text) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO ip.checked_by VALUES (current_user);
	RETURN true;
END
\$\$;
CREATE DOMAIN ip.watched AS text CHECK (ip.record_checker(VALUE));
CREATE TYPE ip.wrap AS (v ip.watched, n int);
CREATE TABLE ip.wrapped (id int PRIMARY KEY, w ip.wrap);
INSERT INTO ip.wrapped VALUES (1, ROW('a', 1)), (2, ROW('b, c', 2));
SELECT backup_offline.register_entity('TF_WRAPPED', 'ip.wrapped', '{}') IS NOT NULL;
CREATE TABLE ip.nokey (code text, v int);
INSERT INTO ip.nokey VALUES ('a', 1), ('b', 2);
SELECT backup_offline.register_entity('TF_NOKEY', 'ip.nokey', '{"keyColumns": ["code"]}') IS NOT NULL;
SELECT count(backup_offline.register_entity(upper('TF_' || c.relname), c.oid::regclass,
		CASE WHEN c.relname = 't_nopk' THEN '{"keyColumns": ["a", "b", "c"]}' ELSE '{}' END::jsonb))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'typefam' AND c.relkind = 'r';
CREATE TABLE chk.tf_before AS
SELECT c.relname, typefam.row_digest(c.oid::regclass) AS digest
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'typefam' AND c.relkind = 'r';
SQL
ok $? "typefam loaded and registered"
TFCFG=$(cluster_psql "$DIR" "$PORT" -d postgres -At -c "SET backup_offline.organization_id = '$ORG'" -c "SELECT backup_offline.create_backup_configuration(jsonb_build_object(
	'name', 'type families', 'scope', jsonb_build_object('includeEntities',
		(SELECT jsonb_agg(entity_type) FROM backup_offline.entity_registry WHERE entity_type LIKE 'TF\_%')),
	'schedule', '{\"frequency\": \"DAILY\", \"startTime\": \"02:00\", \"timezone\": \"UTC\"}'::jsonb,
	'retention', '{\"retentionDays\": 30}'::jsonb,
	'storageDestination', jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', '$DIR/backups/tf')))")
SNAP=$(Q "SELECT backup_offline.run_backup('$TFCFG')" 2>/dev/null)
Q "TRUNCATE ip.checked_by" >/dev/null
is "$(as ip_clerk "SELECT backup_offline.verify_snapshot('$SNAP', 'restore')->>'valid'") $(Q "SELECT count(*) FROM ip.checked_by")" "true 0" \
	"verify_snapshot(restore) by an operator: a domain check inside a composite type never runs (as the extension owner or at all)"
cluster_psql "$DIR" "$PORT" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $$
DECLARE
	t record;
	col name;
BEGIN
	FOR t IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			  WHERE n.nspname = 'typefam' AND c.relkind = 'r' AND c.relname <> 't_nopk' LOOP
		EXECUTE format('DELETE FROM %s WHERE id %% 2 = 0', t.rel);
		SELECT a.attname INTO col FROM pg_attribute a
		 WHERE a.attrelid = t.rel AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnotnull
		   AND a.attgenerated = '' AND a.attidentity = '' AND a.attname <> 'id'
		 ORDER BY a.attnum LIMIT 1;
		IF col IS NOT NULL THEN
			EXECUTE format('UPDATE %s SET %I = NULL', t.rel, col);
		END IF;
	END LOOP;
END
$$;
DELETE FROM typefam.t_nopk WHERE a = 1;
INSERT INTO ip.nokey VALUES ('a', 3);
CREATE TABLE chk.tf_changed AS
SELECT c.relname, typefam.row_digest(c.oid::regclass) AS digest
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'typefam' AND c.relkind = 'r';
SQL
diag "tables changed: $(Q "SELECT count(*) FROM chk.tf_before b JOIN chk.tf_changed c USING (relname) WHERE b.digest <> c.digest")"
TFSCOPE=$(Q "SELECT jsonb_agg(entity_type ORDER BY entity_type) FROM backup_offline.entity_registry WHERE entity_type LIKE 'TF\_%' AND entity_type NOT IN ('TF_T_NOPK', 'TF_NOKEY')")
restore postgres ", \"scope\": {\"includeEntities\": $TFSCOPE}"
is "$ERR$(R "r.status")" "COMPLETED" "BACKUP_WINS in place over every type family table (with a primary key): COMPLETED"
is "$(Q "SELECT count(*) || ' ' || count(*) FILTER (WHERE typefam.row_digest(format('typefam.%I', b.relname)::regclass) <> b.digest)
	FROM chk.tf_before b WHERE b.relname <> 't_nopk'")" "$(($(Q "SELECT count(*) FROM chk.tf_before") - 1)) 0" \
	"... every table's rows equal the backed-up ones again (typefam.row_digest)"
restore postgres ", \"scope\": {\"includeEntities\": [\"TF_T_NOPK\"]}"
like "$ERR" "ERROR:  55000: restore RST-* failed: the key columns (a, b, c) of table typefam.t_nopk do not identify the backup's rows*" \
	"a table without a primary key whose registry key columns repeat is refused (55000)"
is "$(Q "SELECT typefam.row_digest('typefam.t_nopk') = (SELECT digest FROM chk.tf_changed WHERE relname = 't_nopk')")" "t" \
	"... and left as it was"
restore postgres ", \"scope\": {\"includeEntities\": [\"TF_NOKEY\"]}"
like "$ERR" "ERROR:  55000: restore RST-* failed: the key columns (code) of table ip.nokey do not identify the table's rows*" \
	"registry key columns unique in the backup but repeated in the live table: refused (55000), nothing written"
is "$(Q "SELECT string_agg(code || v, ',' ORDER BY code, v) FROM ip.nokey")" "a1,a3,b2" "... the table as it was"

# the trap set by the table's trigger caught nobody: settings the requester's
# code changed were undone before the extension owner went on
is "$(Q "SELECT count(*) FROM ip.captured WHERE who <> 'ip_clerk'")" "0" \
	"a search_path set by the requester's trigger never reached the extension owner's statements"

# the audit trail saw the in-place restores move
is "$(Q "SELECT count(*) > 0 FROM backup_offline.audit_log WHERE object_type = 'restore_operation'
	AND details->'changes'->'status'->>'new' = 'ROLLED_BACK'")" "t" \
	"the move to ROLLED_BACK is in the audit log"
ok "$(grep -c 'terminated by signal' "$DIR/server.log" | awk '{print ($1 == 1) ? 0 : 1}')" "no server process died of a signal but the one killed"
