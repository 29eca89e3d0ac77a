#!/usr/bin/env bash
# Restores into a new schema and to files (create_restore, approve_restore,
# cancel_restore, run_restore; src/catalog/75_restore.sql,
# src/restore/restore.c), on every built-in type family
# (test/fixtures/type_families.sql, schema typefam) and a small home-care
# schema (test/bench/backup/care_schema.sql at scale 0.01, schema care).
#
# Proven:
#   * round trip: a FULL, changes, an INCREMENTAL; a FULL restore of the
#     INCREMENTAL (requiresApproval) approved by a separate approver is
#     COMPLETED, every validation result equalToBackup; every restored
#     table has the independent digest (typefam.row_digest over the copied
#     columns; md5 of the sorted row texts for care) the live table had
#     right after the INCREMENTAL (and not the FULL's, nor today's); the
#     restored tables have the source's NOT NULL columns, primary keys,
#     check constraints and indexes (pg_indexes), and no foreign keys;
#   * approval: run_restore before approval is refused (55000); the
#     requester cannot approve (42501), neither can a role outside
#     backup_offline_approver (42501, through approve_restore and through
#     UPDATE), nor an approver acting as the same backup_offline.user_id;
#     a PENDING_APPROVAL restore cancelled is CANCELLED and cannot run;
#   * SELECTIVE by clientIds, dateRange, recordIds and includeEntities: the
#     restored tables hold exactly the rows SQL selects from a copy of the
#     live data taken right after the backup; tables outside
#     includeEntities are not created;
#   * POINT_IN_TIME: between two FULL backups the first one is restored;
#     before the first one the request is refused (42704);
#   * FILE_LEVEL: csv and binary exports load back with COPY FROM into
#     tables equal to the source; a second export to the same path is
#     refused (58P02) and leaves the first file as it was; a path outside
#     allowed_paths is refused at create_restore (22023),
#     and a dangling symbolic link in allowed_paths to a file outside is
#     not written through;
#   * failure: with one stored object damaged, run_restore raises an
#     error, the restore is FAILED with its error, and no schema is left;
#   * an existing destination schema is refused at create_restore (42P06);
#   * two tables of the same name (other.t_bool, typefam.t_bool, each with
#     a primary key t_bool_pkey) restore into one schema, with their keys;
#   * no server process crashes on the way.
set -uo pipefail
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/backup_lib.sh"

DIR=$BO_TEST_DIR/restore_side
PORT=$((BO_TEST_PORT + 27))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# the organization of the care data set
ORG=6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b
trap 'cluster_stop "$DIR"' EXIT
plan 68

# sqlerr SQL...: the first ERROR line (with its SQLSTATE) of running the
# statements in one session, nothing when they all succeed
sqlerr() {
	local args=() s
	for s in "$@"; do args+=(-c "$s"); done
	cluster_psql "$DIR" "$PORT" -d postgres -At -v VERBOSITY=verbose -c "SET client_min_messages = warning" \
		"${args[@]}" 2>&1 >/dev/null | grep -m1 '^ERROR:'
}

# is_q GOT-SQL WANT-SQL DESCRIPTION: the two queries' values are equal;
# fails when either query fails or gives nothing
is_q() {
	local got want
	got=$(Q "$1" 2>&1) || got="(failed) $got"
	want=$(Q "$2" 2>&1) || want="(failed) $want"
	[ -n "$want" ] || want="(nothing)"
	is "$got" "$want" "$3"
}

# create REQUEST-JSON: the new restore's id (errors on stderr)
create() { Q "SELECT backup_offline.create_restore('$1')"; }

# run ID: run_restore, its result in $DIR/run.out; prints the error, if any
run() {
	cluster_psql "$DIR" "$PORT" -d postgres -At -v VERBOSITY=verbose -c "SET client_min_messages = warning" \
		-c "SELECT backup_offline.run_restore('$1')" 2>&1 >"$DIR/run.out" | grep -m1 '^ERROR:'
}

# R ID EXPRESSION: EXPRESSION over the restore's row r
R() { Q "SELECT $2 FROM backup_offline.restore_operation r WHERE r.id = '$1'"; }

# schema_tables SCHEMA: its tables, sorted, comma-separated
schema_tables() {
	Q "SELECT coalesce(string_agg(c.relname, ',' ORDER BY c.relname), '(none)') FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$1' AND c.relkind = 'r'"
}

# schema_exists SCHEMA: t or f
schema_exists() { Q "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '$1')"; }

cluster_start "$DIR" "$PORT" || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'"
as_pg mkdir -p "$DIR/backups/export"
cluster_psql "$DIR" "$PORT" -d postgres -c "ALTER SYSTEM SET backup_offline.default_key_id = 'k1'" \
	-c "SELECT pg_reload_conf()" -c "CREATE EXTENSION backup_offline" >/dev/null || exit 1

# ---- the data ---------------------------------------------------------------
cluster_psql "$DIR" "$PORT" -d postgres -f "$ROOT/test/fixtures/type_families.sql" >/dev/null &&
	cluster_psql "$DIR" "$PORT" -d postgres -v scale=0.01 -f "$ROOT/test/bench/backup/care_schema.sql" >/dev/null
ok $? "typefam fixture and care schema (scale 0.01) loaded"
NTABLES=$(Q "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname IN ('typefam', 'care') AND c.relkind = 'r'")
diag "$NTABLES tables in schemas typefam and care"

# the scenario's helpers, in schema rs_check
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL' || exit 1
CREATE SCHEMA rs_check;
-- rs_check.<table>_copied: the copied (non-generated) columns of each
-- table with generated columns, in column order
DO $$
DECLARE
	t record;
BEGIN
	FOR t IN SELECT c.oid::regclass AS rel, c.relname,
					string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) AS cols
			   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
			  WHERE n.nspname IN ('typefam', 'care') AND c.relkind = 'r'
				AND EXISTS (SELECT 1 FROM pg_attribute g WHERE g.attrelid = c.oid AND g.attgenerated <> '')
			  GROUP BY c.oid, c.relname LOOP
		EXECUTE format('CREATE VIEW rs_check.%I AS SELECT %s FROM %s', t.relname || '_copied', t.cols, t.rel);
	END LOOP;
END
$$;
-- qdigest(query): md5 of the sorted text forms of the query's rows,
-- preceded by their count; independent of the extension
CREATE FUNCTION rs_check.qdigest(query text) RETURNS text LANGUAGE plpgsql
	SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres' SET timezone = 'UTC'
	SET extra_float_digits = 1 SET bytea_output = 'hex' SET lc_monetary = 'C'
AS $$
DECLARE
	result text;
BEGIN
	EXECUTE format('SELECT count(*) || '':'' || md5(coalesce(string_agg(h, E''\n'' ORDER BY h COLLATE "C"), '''')) '
				   'FROM (SELECT ROW(q.*)::text AS h FROM (%s) AS q) AS s', query) INTO result;
	RETURN result;
END
$$;
-- digest(schema, table): the independent digest of a table: typefam's
-- tables through typefam.row_digest (over the copied columns: a live
-- table with generated columns through its _copied view), care's as the
-- md5 of their sorted row texts; source_schema says which kind
CREATE FUNCTION rs_check.digest(source_schema text, rel regclass) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	IF source_schema = 'typefam' THEN
		RETURN typefam.row_digest(rel);
	END IF;
	RETURN rs_check.qdigest(format('SELECT * FROM %s', rel));
END
$$;
-- live(schema, table): the live table, or its view of the copied columns
CREATE FUNCTION rs_check.live(source_schema text, name text) RETURNS regclass LANGUAGE sql AS $$
	SELECT coalesce(to_regclass(format('rs_check.%I', name || '_copied')), format('%I.%I', source_schema, name)::regclass)
$$;
-- digests of every live table at a moment
CREATE TABLE rs_check.digests (moment text, nsp text, name text, digest text, PRIMARY KEY (moment, nsp, name));
CREATE FUNCTION rs_check.record(moment text) RETURNS bigint LANGUAGE sql AS $$
	WITH ins AS (
		INSERT INTO rs_check.digests
		SELECT moment, n.nspname, c.relname, rs_check.digest(n.nspname, rs_check.live(n.nspname, c.relname))
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname IN ('typefam', 'care') AND c.relkind = 'r'
		RETURNING 1)
	SELECT count(*) FROM ins
$$;
-- mismatches(moment, schema): how many tables of the restored schema were
-- compared with the digests of that moment, and those that differ (or
-- are missing)
CREATE FUNCTION rs_check.mismatches(which text, restored text) RETURNS text LANGUAGE sql AS $$
	SELECT count(*) || coalesce(' differ:' || string_agg(' ' || d.nsp || '.' || d.name, '' ORDER BY d.nsp, d.name)
		FILTER (WHERE to_regclass(format('%I.%I', restored, d.name)) IS NULL
				   OR rs_check.digest(d.nsp, format('%I.%I', restored, d.name)::regclass) IS DISTINCT FROM d.digest), '')
	  FROM rs_check.digests d WHERE d.moment = which
$$;
SQL

# the roles: postgres requests; rs_approver approves; rs_operator may
# request but not approve
is "$(cluster_psql "$DIR" "$PORT" -d postgres -At <<SQL 2>&1
CREATE ROLE rs_approver IN ROLE backup_offline_approver;
CREATE ROLE rs_operator IN ROLE backup_offline_operator;
INSERT INTO backup_offline.organization_member VALUES ('postgres', '$ORG'), ('rs_approver', '$ORG'), ('rs_operator', '$ORG');
SET backup_offline.organization_id = '$ORG';
SELECT count(backup_offline.register_entity(upper(n.nspname || '_' || c.relname), c.oid::regclass,
		CASE WHEN c.relname = 't_nopk' THEN '{"keyColumns": ["a", "b", "c"]}' ELSE '{}' END::jsonb))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'typefam' AND c.relkind = 'r';
SELECT backup_offline.register_entity('CLIENT', 'care.clients', '{"clientIdColumn": "id", "containsPHI": true}') IS NOT NULL;
SELECT backup_offline.register_entity('CAREGIVER', 'care.caregivers', '{"caregiverIdColumn": "id"}') IS NOT NULL;
SELECT backup_offline.register_entity('VISIT', 'care.visits',
	'{"clientIdColumn": "client_id", "caregiverIdColumn": "caregiver_id", "dateColumn": "visit_date", "containsPHI": true}') IS NOT NULL;
SELECT backup_offline.register_entity('EVV_RECORD', 'care.evv_records', '{"dateColumn": "clock_in"}') IS NOT NULL;
SELECT backup_offline.register_entity('PAYROLL', 'care.payroll', '{"caregiverIdColumn": "caregiver_id", "dateColumn": "period_start"}') IS NOT NULL;
SQL
)" "$(printf '%s\n' $((NTABLES - 5)) t t t t t)" "roles created; every typefam table and the five care tables registered"

# create_config NAME REPO ENTITY-CONDITION: a configuration over the entity
# types that meet the condition, never due for a scheduled run (only the
# scenario's backups)
create_config() {
	local id
	id=$(cluster_psql "$DIR" "$PORT" -d postgres -At <<SQL
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.create_backup_configuration(jsonb_build_object(
	'name', '$1',
	'scope', jsonb_build_object('includeEntities', (SELECT jsonb_agg(entity_type ORDER BY entity_type) FROM backup_offline.entity_registry WHERE $3)),
	'schedule', '{"frequency": "DAILY", "startTime": "02:00", "timezone": "UTC"}'::jsonb,
	'retention', '{"retentionDays": 30}'::jsonb,
	'storageDestination', jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', '$DIR/backups/$2')));
SQL
) || return 1
	Q "UPDATE backup_offline.backup_configuration SET next_backup_at = 'infinity' WHERE id = '$id'" >/dev/null
	echo "$id"
}

# backup CONFIG TYPE: the snapshot id (errors on stderr)
backup() {
	cluster_psql "$DIR" "$PORT" -d postgres -At -c "SET client_min_messages = warning" \
		-c "SELECT backup_offline.run_backup('$1', '$2')"
}

# ---- FULL, changes, INCREMENTAL ------------------------------------------------
CONFIG=$(create_config main repo true)
FULL=$(backup "$CONFIG" FULL 2>"$DIR/err")
isd "$(Q "SELECT status || ' ' || backup_type FROM backup_offline.backup_snapshot WHERE id = '$FULL'")" "COMPLETED FULL" \
	"the FULL backup is COMPLETED" "run_backup: $(cat "$DIR/err")"
Q "SELECT rs_check.record('full')" >/dev/null

# changes of every kind: inserts, updates (also of a key, of the text of
# long values, of generated inputs), deletes, in typefam and care
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL'
INSERT INTO typefam.t_bool VALUES (4, true);
DELETE FROM typefam.t_int WHERE id = 4;
UPDATE typefam.t_float SET f8 = '-0', note = 'now -0' WHERE id = 2;
UPDATE typefam.t_generated SET qty = 7, name = 'changed' WHERE id = 1;
UPDATE typefam.t_evolved SET c = 43, d = 'set later' WHERE id = 1;
UPDATE typefam.t_nopk SET b = 'changed' WHERE a = 1;
INSERT INTO typefam.t_identity (v) VALUES ('after the FULL');
UPDATE typefam.t_text_long SET id = id + 1000 WHERE id = (SELECT min(id) FROM typefam.t_text_long);
UPDATE care.clients SET last_name = last_name || '-Changed', updated_at = updated_at + interval '1 day'
 WHERE id IN (SELECT id FROM care.clients ORDER BY id LIMIT 5);
UPDATE care.visits SET notes = coalesce(notes, '') || ' Amended, "quoted", and
on two lines.', mileage = NULL
 WHERE id IN (SELECT id FROM care.visits ORDER BY id LIMIT 20);
INSERT INTO care.visits
SELECT md5('new visit ' || id)::uuid, organization_id, client_id, caregiver_id, visit_date + 1, scheduled_start + interval '1 day',
	   scheduled_end + interval '1 day', NULL, NULL, 'SCHEDULED', service_code, tasks, NULL, NULL, billable, created_at, updated_at
  FROM care.visits ORDER BY id DESC LIMIT 30;
DELETE FROM care.evv_records WHERE id IN (SELECT id FROM care.evv_records ORDER BY id LIMIT 15);
DELETE FROM care.payroll WHERE id % 50 = 0;
UPDATE care.payroll SET paid_at = NULL WHERE id % 50 = 1;
SQL
INCR=$(backup "$CONFIG" INCREMENTAL 2>"$DIR/err")
isd "$(Q "SELECT status || ' ' || backup_type || ' ' || (parent_snapshot_id = '$FULL')
	FROM backup_offline.backup_snapshot WHERE id = '$INCR'")" "COMPLETED INCREMENTAL true" \
	"the INCREMENTAL after the changes is COMPLETED, its parent the FULL" "run_backup: $(cat "$DIR/err")"
# right after the INCREMENTAL: the digests of every table, and a copy of
# the care tables (the data "as of the backup" for the SELECTIVE checks)
Q "SELECT rs_check.record('incr')" >/dev/null
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL'
CREATE SCHEMA asof;
CREATE TABLE asof.clients AS SELECT * FROM care.clients;
CREATE TABLE asof.caregivers AS SELECT * FROM care.caregivers;
CREATE TABLE asof.visits AS SELECT * FROM care.visits;
CREATE TABLE asof.evv_records AS SELECT * FROM care.evv_records;
CREATE TABLE asof.payroll AS SELECT * FROM care.payroll;
SQL
# the live data moves on: what is restored must be the INCREMENTAL's state
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL'
UPDATE typefam.t_bool SET b = NOT b WHERE id = 1;
UPDATE care.visits SET notes = 'after the INCREMENTAL' WHERE id IN (SELECT id FROM care.visits ORDER BY id LIMIT 3);
DELETE FROM care.payroll WHERE id % 50 = 2;
SQL
Q "SELECT rs_check.record('later')" >/dev/null
# the digests see the changes (so that the comparisons below can fail)
is "$(Q "SELECT count(*) FILTER (WHERE f.digest <> i.digest) || ' ' || count(*) FILTER (WHERE l.digest <> i.digest)
	FROM rs_check.digests f JOIN rs_check.digests i USING (nsp, name) JOIN rs_check.digests l USING (nsp, name)
	WHERE f.moment = 'full' AND i.moment = 'incr' AND l.moment = 'later'")" "12 3" \
	"the digests tell the FULL's, the INCREMENTAL's and the later state apart (12 and 3 tables changed)"

# ---- approval ---------------------------------------------------------------
RT=$(create "{\"snapshotId\": \"$INCR\", \"restoreType\": \"FULL\", \"requiresApproval\": true,
	\"destination\": {\"type\": \"NEW_SCHEMA\", \"schema\": \"rs_full\"}, \"notes\": \"round trip\"}")
is "$(R "$RT" "status || ' ' || requested_by || ' ' || snapshot_id")" "PENDING_APPROVAL postgres $INCR" \
	"a FULL restore of the INCREMENTAL with requiresApproval waits for approval"
like "$(run "$RT")" "ERROR:  55000: restore RST-* waits for approval" \
	"run_restore before approval: 55000 waits for approval"
like "$(sqlerr "SELECT backup_offline.approve_restore('$RT')")" \
	"ERROR:  42501: restore RST-* cannot be approved by its own requester" \
	"approve_restore by the requester (a superuser, so also an approver): 42501 own requester"
like "$(sqlerr "SET ROLE rs_operator" "SELECT backup_offline.approve_restore('$RT')")" "ERROR:  42501: *" \
	"approve_restore by a role outside backup_offline_approver: 42501"
like "$(sqlerr "SET ROLE rs_operator" "UPDATE backup_offline.restore_operation SET status = 'APPROVED' WHERE id = '$RT'")" \
	'ERROR:  42501: role "rs_operator" may not approve restores' \
	"that role setting status APPROVED itself (it may update status): 42501 from the guard"
is "$(R "$RT" "status || ' ' || coalesce(approved_by, '-')")" "PENDING_APPROVAL -" \
	"after the refusals the restore still waits for approval, approved by nobody"
is "$(sqlerr "SET ROLE rs_approver" "SELECT backup_offline.approve_restore('$RT', 'checked')")" "" \
	"approve_restore by rs_approver (member of backup_offline_approver, not the requester) succeeds"
is "$(R "$RT" "status || ' ' || approved_by || ' ' || approval_notes")" "APPROVED rs_approver checked" \
	"the restore is APPROVED by rs_approver"

# same application user: a restore requested with backup_offline.user_id U
# cannot be approved by another role acting as U; cancelled instead
U=0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d
CX=$(Q "SET backup_offline.user_id = '$U'; SELECT backup_offline.create_restore('{\"snapshotId\": \"$INCR\",
	\"restoreType\": \"FULL\", \"destination\": {\"schema\": \"rs_cancelled\"}}')")
like "$(sqlerr "SET ROLE rs_approver" "SET backup_offline.user_id = '$U'" "SELECT backup_offline.approve_restore('$CX')")" \
	"ERROR:  42501: restore RST-* cannot be approved by its own requester" \
	"an approver acting as the requester's backup_offline.user_id: 42501 own requester"
is "$(Q "SELECT backup_offline.cancel_restore('$CX')") $(R "$CX" "status")" "t CANCELLED" \
	"cancel_restore of a PENDING_APPROVAL restore: true, CANCELLED"
like "$(run "$CX")" "ERROR:  55000: restore RST-* is CANCELLED" "run_restore of the cancelled restore: 55000"
is "$(schema_exists rs_cancelled) $(R "$CX" "coalesce(started_at::text, '-')")" "f -" \
	"the cancelled restore never started and created no schema"

# ---- the round trip ---------------------------------------------------------
crash_mark
err=$(run "$RT")
isd "$(Q "SELECT \$j\$$(cat "$DIR/run.out")\$j\$::jsonb->>'status'") $(R "$RT" "status")" "COMPLETED COMPLETED" \
	"run_restore of the approved restore returns it COMPLETED, and it is" "$err $(R "$RT" "error")"
is "$(Q "SELECT \$j\$$(cat "$DIR/run.out")\$j\$::jsonb->'validationResults' = validation_results
	FROM backup_offline.restore_operation WHERE id = '$RT'")" "t" "run_restore returns the validationResults recorded"
is "$(R "$RT" "(SELECT count(*) FILTER (WHERE (v->>'equalToBackup')::boolean AND v->>'rows' = v->>'backupRows')
	|| '/' || count(*) FROM jsonb_array_elements(validation_results) v) || ' ' || (metrics->>'tables')")" \
	"$NTABLES/$NTABLES $NTABLES" "validationResults: every table equalToBackup with its backup's row count"
is_q "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
	JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'rs_full' AND c.relkind = 'r'" \
	"SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
	JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('typefam', 'care') AND c.relkind = 'r'" \
	"schema rs_full holds one table per source table, with its name"
isd "$(Q "SELECT rs_check.mismatches('incr', 'rs_full')")" "$NTABLES" \
	"every restored table has the digest its live table had right after the INCREMENTAL" \
	"$(Q "SELECT rs_check.mismatches('full', 'rs_full') || ' (vs FULL); ' || rs_check.mismatches('later', 'rs_full') || ' (vs later)'")"
is "$(Q "SELECT rs_check.mismatches('later', 'rs_full')")" "$NTABLES differ: care.payroll care.visits typefam.t_bool" \
	"and not the digests of the live tables changed since (the comparison can fail)"
no_crash_since
ok $? "the restore did not crash the server"

# NOT NULL columns: the source's copied columns as (table, column, not null)
is_q "SELECT string_agg(c.relname || '.' || a.attname || ':' || a.attnotnull, ' ' ORDER BY c.relname, a.attnum)
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
	WHERE n.nspname = 'rs_full' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped" \
	"SELECT string_agg(c.relname || '.' || a.attname || ':' || a.attnotnull, ' ' ORDER BY c.relname, a.attnum)
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
	WHERE n.nspname IN ('typefam', 'care') AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''" \
	"the restored tables have the source's copied columns, NOT NULL where the source's are"
is "$(Q "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = 'rs_full' AND c.relkind = 'r' AND a.attnum > 0 AND a.attnotnull")" "84" \
	"84 NOT NULL columns (57 of care's; typefam's primary key columns and one identity column)"
# constraints: primary keys, checks; no foreign keys
CONS="SELECT string_agg(c.relname || ' ' || k.conname || ' ' || k.contype::text || ' ' || pg_get_constraintdef(k.oid), E'\n'
		ORDER BY c.relname, k.conname)
	FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
is_q "$CONS WHERE n.nspname = 'rs_full'" "$CONS WHERE n.nspname IN ('typefam', 'care') AND k.contype <> 'f'" \
	"the restored tables have the source's primary keys and check constraints, and no foreign keys"
is "$(Q "SELECT count(*) FILTER (WHERE contype = 'p') FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
	WHERE n.nspname = 'rs_full'")" "$((NTABLES - 1))" "a primary key on every restored table but t_nopk"
# indexes: pg_indexes of the new schema are the source's
IDX="SELECT string_agg(tablename || ' ' || indexname || ' ' || regexp_replace(indexdef, ' ON [a-z_]+\\.', ' ON ~.'), E'\n'
	ORDER BY tablename, indexname) FROM pg_indexes"
is_q "$IDX WHERE schemaname = 'rs_full'" "$IDX WHERE schemaname IN ('typefam', 'care')" \
	"pg_indexes of rs_full: the source's indexes, primary and secondary, with the same definitions"
is "$(Q "SELECT count(*) FROM pg_indexes WHERE schemaname = 'rs_full' AND indexname !~ '_pkey\$'")" "9" \
	"the nine secondary indexes of the care schema among them"

# ---- SELECTIVE ------------------------------------------------------------------
# selective NAME SCOPE-JSON: a SELECTIVE restore of the INCREMENTAL into
# schema rs_NAME, without approval; prints its error, if any
selective() {
	local id
	id=$(create "{\"snapshotId\": \"$INCR\", \"restoreType\": \"SELECTIVE\", \"requiresApproval\": false,
		\"scope\": $2, \"destination\": {\"schema\": \"rs_$1\"}}") || return 1
	run "$id"
	[ "$(R "$id" status)" = COMPLETED ] || echo "restore $id: $(R "$id" "status || ' ' || error")"
}
# same SCHEMA TABLE EXPECTED-QUERY: the restored table and the query give
# the same rows (count:digest of both, and whether the selection is proper)
same() {
	Q "SELECT CASE WHEN rs_check.qdigest('SELECT * FROM $1.$2') = e THEN 'same' ELSE
		'restored ' || rs_check.qdigest('SELECT * FROM $1.$2') || ' expected ' || e END
		FROM rs_check.qdigest(\$q\$$3\$q\$) e" 2>&1
}

# three clients with visits (one id in upper case: ids are uuids)
CLIENTS=$(Q "SELECT string_agg(CASE WHEN n = 1 THEN upper(c::text) ELSE c::text END, ',' ORDER BY n)
	FROM (SELECT c, row_number() OVER (ORDER BY c) n FROM (SELECT DISTINCT client_id c FROM asof.visits ORDER BY 1 LIMIT 3) x) y")
IN_CLIENTS="('$(echo "$CLIENTS" | tr 'A-Z' 'a-z' | sed "s/,/','/g")')"
err=$(selective clients "{\"clientIds\": [\"$(echo "$CLIENTS" | sed 's/,/", "/g')\"], \"includeEntities\": [\"CLIENT\", \"VISIT\", \"EVV_RECORD\"]}")
isd "$(schema_tables rs_clients)" "clients,evv_records,visits" \
	"SELECTIVE clientIds with includeEntities CLIENT, VISIT, EVV_RECORD: exactly those three tables" "$err"
is "$(same rs_clients clients "SELECT * FROM asof.clients WHERE id IN $IN_CLIENTS") $(same rs_clients visits \
	"SELECT * FROM asof.visits WHERE client_id IN $IN_CLIENTS") $(same rs_clients evv_records "SELECT * FROM asof.evv_records")" \
	"same same same" \
	"clientIds: the three clients, exactly their visits (registry clientIdColumn), evv_records (no client column) whole"
is "$(Q "SELECT count(*) || ' ' || (count(*) < (SELECT count(*) FROM asof.visits)) FROM rs_clients.visits") $(Q "SELECT count(*) FROM rs_clients.clients")" \
	"$(Q "SELECT count(*) FROM asof.visits WHERE client_id IN $IN_CLIENTS") true 3" \
	"clientIds: the selection is proper (some visits, not all)"

err=$(selective dates '{"dateRange": {"startDate": "2024-03-01", "endDate": "2024-03-31"},
	"includeEntities": ["VISIT", "PAYROLL", "EVV_RECORD", "CLIENT"]}')
isd "$(schema_tables rs_dates)" "clients,evv_records,payroll,visits" \
	"SELECTIVE dateRange with includeEntities VISIT, PAYROLL, EVV_RECORD, CLIENT: exactly those four tables" "$err"
is "$(same rs_dates visits "SELECT * FROM asof.visits WHERE visit_date BETWEEN '2024-03-01' AND '2024-03-31'") $(same rs_dates payroll \
	"SELECT * FROM asof.payroll WHERE period_start BETWEEN '2024-03-01' AND '2024-03-31'") $(same rs_dates evv_records \
	"SELECT * FROM asof.evv_records WHERE clock_in >= '2024-03-01 00:00+00' AND clock_in < '2024-04-01 00:00+00'") $(same rs_dates clients \
	"SELECT * FROM asof.clients")" "same same same same" \
	"dateRange (inclusive): visits by visit_date, payroll by period_start, evv_records by clock_in (a timestamptz, UTC days), clients (no date column) whole"
is "$(Q "SELECT (SELECT count(*) FROM rs_dates.visits) > 0 AND (SELECT count(*) FROM rs_dates.visits) < (SELECT count(*) FROM asof.visits)
	AND (SELECT count(*) FROM rs_dates.payroll) > 0 AND (SELECT count(*) FROM rs_dates.evv_records) > 0")" "t" \
	"dateRange: the selections are proper and not empty"

VISIT_IDS=$(Q "SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM asof.visits ORDER BY md5(id::text) LIMIT 3) x")
err=$(selective records "{\"recordIds\": [\"$(echo "$VISIT_IDS" | sed 's/,/", "/g')\", \"00000000-0000-4000-8000-000000000000\", 5, 7, \"9\"],
	\"includeEntities\": [\"VISIT\", \"PAYROLL\"]}")
isd "$(schema_tables rs_records)" "payroll,visits" "SELECTIVE recordIds with includeEntities VISIT, PAYROLL: those two tables" "$err"
is "$(same rs_records visits "SELECT * FROM asof.visits WHERE id::text IN ('$(echo "$VISIT_IDS" | sed "s/,/','/g")')") $(same rs_records payroll \
	"SELECT * FROM asof.payroll WHERE id IN (5, 7, 9)") $(Q "SELECT count(*) FROM rs_records.visits") $(Q "SELECT count(*) FROM rs_records.payroll")" \
	"same same 3 3" "recordIds: exactly the named visits (uuid keys) and payroll rows (bigint keys, as numbers or strings)"

err=$(selective entities '{"includeEntities": ["CAREGIVER", "PAYROLL"]}')
isd "$(schema_tables rs_entities)" "caregivers,payroll" \
	"SELECTIVE includeEntities CAREGIVER, PAYROLL: only those tables are created" "$err"
is "$(same rs_entities caregivers "SELECT * FROM asof.caregivers") $(same rs_entities payroll "SELECT * FROM asof.payroll")" \
	"same same" "includeEntities: both tables whole, as of the backup"
is "$(Q "SELECT count(*) FROM pg_indexes WHERE schemaname = 'rs_entities'")" "4" \
	"includeEntities: the two tables' primary keys and unique indexes are recreated"

# ---- FILE_LEVEL -------------------------------------------------------------------
EXP=$DIR/backups/export
# file_restore NAME FORMAT: a FILE_LEVEL restore of care.visits from the
# INCREMENTAL to $EXP/NAME; prints the restore id, the error on stderr
file_restore() {
	create "{\"snapshotId\": \"$INCR\", \"restoreType\": \"FILE_LEVEL\", \"requiresApproval\": false,
		\"file\": {\"entity\": \"VISIT\", \"path\": \"$EXP/$1\", \"format\": \"$2\"}}"
}
F1=$(file_restore visits.csv csv)
err=$(run "$F1")
isd "$(R "$F1" "status || ' ' || (validation_results->0->>'equalToBackup') || ' ' || (validation_results->0->>'restoredAs')")" \
	"COMPLETED true $EXP/visits.csv" "FILE_LEVEL csv of VISIT: COMPLETED, equalToBackup, restoredAs the file" "$err"
is "$(as_pg head -1 "$EXP/visits.csv" 2>&1)" "$(Q "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	WHERE attrelid = 'care.visits'::regclass AND attnum > 0 AND NOT attisdropped")" "the csv file begins with a header line"
err=$(Q "CREATE TABLE rs_check.visits_csv (LIKE asof.visits); COPY rs_check.visits_csv FROM '$EXP/visits.csv' WITH (FORMAT csv, HEADER)" 2>&1)
isd "$(same rs_check visits_csv "SELECT * FROM asof.visits")" "same" \
	"the csv file loads back with COPY FROM (FORMAT csv, HEADER) into a table equal to care.visits as of the backup" "$err"
F2=$(file_restore visits.bin binary)
err=$(run "$F2")
isd "$(R "$F2" "status || ' ' || (validation_results->0->>'equalToBackup')")" "COMPLETED true" \
	"FILE_LEVEL binary of VISIT: COMPLETED, equalToBackup" "$err"
err=$(Q "CREATE TABLE rs_check.visits_bin (LIKE asof.visits); COPY rs_check.visits_bin FROM '$EXP/visits.bin' WITH (FORMAT binary)" 2>&1)
isd "$(same rs_check visits_bin "SELECT * FROM asof.visits")" "same" \
	"the binary file loads back with COPY FROM (FORMAT binary) into a table equal to care.visits as of the backup" "$err"
SUM=$(as_pg md5sum "$EXP/visits.csv")
SUM=${SUM:-(no first file)}
F3=$(file_restore visits.csv csv)
like "$(run "$F3")" "ERROR:  58P02: restore RST-* failed: file \"$EXP/visits.csv\" already exists*" \
	"a second export to the same path: run_restore fails with 58P02"
is "$(R "$F3" "status || ' ' || (error->>'sqlstate')") $(as_pg md5sum "$EXP/visits.csv")" "FAILED 58P02 $SUM" \
	"that restore is FAILED (error 58P02) and the first file is unchanged"
like "$(sqlerr "SELECT backup_offline.create_restore('{\"snapshotId\": \"$INCR\", \"restoreType\": \"FILE_LEVEL\",
	\"file\": {\"entity\": \"VISIT\", \"path\": \"$DIR/outside.csv\", \"format\": \"csv\"}}')")" "ERROR:  22023: *file.path*" \
	"FILE_LEVEL to a path outside allowed_paths: 22023 at create_restore"
like "$(sqlerr "SELECT backup_offline.create_restore('{\"snapshotId\": \"$INCR\", \"restoreType\": \"FILE_LEVEL\",
	\"file\": {\"entity\": \"VISIT\", \"path\": \"$EXP/../../outside.csv\", \"format\": \"csv\"}}')")" "ERROR:  22023: *file.path*" \
	"FILE_LEVEL to a path that leaves allowed_paths through ..: 22023 at create_restore"
is "$(ls "$DIR"/outside.csv 2>/dev/null | wc -l)" "0" "no file was written outside allowed_paths"
# a dangling symbolic link inside allowed_paths, to a file outside: the
# export must not write through it (confine_path resolves the existing
# part of a path only; the file itself must not be followed either)
as_pg mkdir -p "$DIR/outside"
as_pg ln -s "$DIR/outside/escaped.csv" "$EXP/link.csv"
L=$(file_restore link.csv csv 2>&1)
err=$(run "$L")
isd "$(as_pg ls -A "$DIR/outside" | wc -l)" "0" \
	"FILE_LEVEL to a dangling symlink in allowed_paths that points outside: no file written outside" \
	"create_restore: $L; run_restore: $err; restore: $(R "$L" "status || ' ' || coalesce(error::text, '')" 2>&1)"

# ---- an existing destination schema --------------------------------------------
N=$(Q "SELECT count(*) FROM backup_offline.restore_operation")
N=${N:-(no count)}
like "$(sqlerr "SELECT backup_offline.create_restore('{\"snapshotId\": \"$INCR\", \"restoreType\": \"FULL\",
	\"destination\": {\"schema\": \"rs_check\"}}')")" 'ERROR:  42P06: schema "rs_check" already exists*' \
	"destination.schema that exists: 42P06 at create_restore"
is "$(Q "SELECT count(*) FROM backup_offline.restore_operation")" "$N" "and no restore was recorded"

# ---- POINT_IN_TIME -----------------------------------------------------------------
PIT=$(create_config pit repo_pit "entity_type = 'CAREGIVER'")
T0=$(Q "SELECT clock_timestamp()")
P1=$(backup "$PIT" FULL 2>"$DIR/err")
P1_DIGEST=$(Q "SELECT rs_check.qdigest('SELECT * FROM care.caregivers')")
T1=$(Q "SELECT clock_timestamp()")
Q "UPDATE care.caregivers SET hourly_rate = hourly_rate + 1 WHERE id IN (SELECT id FROM care.caregivers ORDER BY id LIMIT 4)" >/dev/null
P2=$(backup "$PIT" FULL 2>>"$DIR/err")
P2_DIGEST=$(Q "SELECT rs_check.qdigest('SELECT * FROM care.caregivers')")
P1=${P1:-(no first)} P2=${P2:-(no second)} P1_DIGEST=${P1_DIGEST:-(no first digest)}
isd "$(Q "SELECT string_agg(status::text, ' ' ORDER BY snapshot_time) FROM backup_offline.backup_snapshot
	WHERE id IN ('$P1', '$P2')") $([ "$P1_DIGEST" != "$P2_DIGEST" ] && echo differ || echo same)" "COMPLETED COMPLETED differ" \
	"two FULL backups of care.caregivers, the data changed between them" "run_backup: $(cat "$DIR/err")"
PR=$(create "{\"configurationId\": \"$PIT\", \"restoreType\": \"POINT_IN_TIME\", \"requiresApproval\": false,
	\"scope\": {\"restoreToTimestamp\": \"$T1\"}, \"destination\": {\"schema\": \"rs_pit\"}}")
is "$(R "$PR" "snapshot_id")" "$P1" "POINT_IN_TIME at a time between the two backups chooses the first"
err=$(run "$PR")
isd "$(R "$PR" status) $(Q "SELECT rs_check.qdigest('SELECT * FROM rs_pit.caregivers')")" "COMPLETED $P1_DIGEST" \
	"and restores the first backup's data" "$err"
is "$(R "$(create "{\"configurationId\": \"$PIT\", \"restoreType\": \"POINT_IN_TIME\",
	\"scope\": {\"restoreToTimestamp\": \"$(Q "SELECT clock_timestamp()")\"}}")" "snapshot_id")" "$P2" \
	"POINT_IN_TIME at a time after both chooses the second"
like "$(sqlerr "SELECT backup_offline.create_restore('{\"configurationId\": \"$PIT\", \"restoreType\": \"POINT_IN_TIME\",
	\"scope\": {\"restoreToTimestamp\": \"$T0\"}}')")" "ERROR:  42704: no restorable snapshot of configuration *" \
	"POINT_IN_TIME before the first backup: 42704"

# ---- a damaged object ---------------------------------------------------------------
DMG=$(create_config damaged repo_damaged "entity_type IN ('VISIT', 'CLIENT')")
DS=$(backup "$DMG" FULL 2>"$DIR/err")
isd "$(Q "SELECT status FROM backup_offline.backup_snapshot WHERE id = '$DS'")" "COMPLETED" \
	"a FULL of VISIT and CLIENT to damage" "run_backup: $(cat "$DIR/err")"
VICTIM=$(Q "SELECT o->>'name' FROM backup_offline.backup_snapshot s, jsonb_array_elements(s.manifest->'tables') t,
	jsonb_array_elements(t->'objects') o WHERE s.id = '$DS' AND o->>'kind' = 'rows'
	ORDER BY (o->>'storedLength')::bigint DESC LIMIT 1")
VICTIM=$DIR/backups/repo_damaged/${VICTIM:-(no rows object)}
as_pg python3 -c "
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(0, 2)
    middle = f.tell() // 2
    f.seek(middle)
    b = f.read(1)
    f.seek(middle)
    f.write(bytes([b[0] ^ 0x20]))" "$VICTIM"
ok $? "flipped one byte in the middle of $(basename "$VICTIM")"
DR=$(create "{\"snapshotId\": \"$DS\", \"restoreType\": \"FULL\", \"requiresApproval\": false, \"destination\": {\"schema\": \"rs_damaged\"}}")
crash_mark
like "$(run "$DR")" "ERROR:  *: restore RST-* failed: *" "run_restore of the damaged snapshot raises an error"
is "$(R "$DR" "status || ' ' || (error ? 'sqlstate') || ' ' || (error ? 'message') || ' ' || (completed_at IS NOT NULL)")" \
	"FAILED true true true" "the restore is FAILED with its error (sqlstate, message)"
is "$(schema_exists rs_damaged)" "f" "the failed restore left no schema"
no_crash_since
ok $? "the failed restore did not crash the server"

# ---- two tables of the same name -------------------------------------------------
# other.t_bool and typefam.t_bool (each with its default-named primary key
# t_bool_pkey): the restore names the second table <schema>_t_bool, and
# must name its indexes and constraints apart too
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<SQL
CREATE SCHEMA other;
CREATE TABLE other.t_bool (id int PRIMARY KEY, b bool NOT NULL, n text);
CREATE INDEX t_bool_b_idx ON other.t_bool (b);
INSERT INTO other.t_bool VALUES (1, true, 'x'), (2, false, NULL);
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.register_entity('OTHER_T_BOOL', 'other.t_bool', '{}');
SQL
TW=$(create_config twins repo_twins "entity_type IN ('OTHER_T_BOOL', 'TYPEFAM_T_BOOL')")
TS=$(backup "$TW" FULL 2>"$DIR/err")
TR=$(create "{\"snapshotId\": \"$TS\", \"restoreType\": \"FULL\", \"requiresApproval\": false, \"destination\": {\"schema\": \"rs_twins\"}}")
err=$(run "$TR")
isd "$(R "$TR" status)" "COMPLETED" \
	"FULL restore of other.t_bool and typefam.t_bool (same name, both with a t_bool_pkey) into one schema: COMPLETED" \
	"$err $(cat "$DIR/err")"
is "$(Q "SELECT string_agg(v->>'table' || ' ' || (typefam.row_digest((v->>'restoredAs')::regclass) = typefam.row_digest((v->>'table')::regclass))
	|| ' ' || (SELECT count(*) FROM pg_index i WHERE i.indrelid = (v->>'restoredAs')::regclass AND i.indisprimary)
	|| ' ' || (SELECT count(*) FROM pg_index i WHERE i.indrelid = (v->>'restoredAs')::regclass), ', ' ORDER BY v->>'table')
	FROM backup_offline.restore_operation r, jsonb_array_elements(r.validation_results) v WHERE r.id = '$TR'" 2>&1)" \
	"other.t_bool true 1 2, typefam.t_bool true 1 1" \
	"both restored equal to their sources, each with its primary key and indexes"

MARK=0
no_crash_since
ok $? "no server process crashed during the scenario"

exit $((TAP_FAILED > 0))
