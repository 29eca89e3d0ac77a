#!/usr/bin/env bash
# A backup chain restores every snapshot exactly: a FULL, three
# INCREMENTALs, a DIFFERENTIAL and one more INCREMENTAL, with changes in
# between that an incremental must get right.
#
# Tables (schema chain, autovacuum off so that only the scenario changes
# pages): visits (primary key, ~500 pages, fillfactor 90), events (no
# primary key), tasks (primary key; TRUNCATEd and refilled), staff
# (primary key; ALTER TABLE ADD COLUMN with a default).
#
#   b0 FULL
#      then visits: non-key updates, deletes, inserts, primary keys changed
#      (shifted, two swapped, one deleted and inserted again), VACUUM;
#      events: inserts; tasks: TRUNCATE, inserts
#   b1 INCREMENTAL    parent b0
#      then visits: a few updates, VACUUM (FREEZE) (every page changes, no
#      row does); staff: ADD COLUMN with a default; events: deletes
#   b2 INCREMENTAL    parent b1
#      then visits: every row on the last 40% of its pages deleted, VACUUM
#      (the table is truncated); staff: updates of the new column
#   b3 INCREMENTAL    parent b2
#      then visits: inserts and updates; tasks: an insert
#   b4 DIFFERENTIAL   parent b0
#      then the row index of b4 is removed from $PGDATA/pg_backup_offline;
#      visits: an update
#   b5 INCREMENTAL    parent b4: the tables with a key are copied whole
#
# Right after each backup (nothing changes in between) the scenario
# records an md5 of every live table's sorted row texts (independent of
# the extension) and rows_digest().  Proven: each snapshot is COMPLETED
# with the expected type and parent; rows_digest() of each live table is
# the manifest's rowsDigest; each snapshot materialises (its own schema)
# into tables whose md5 is the one recorded at its moment, and verifies at
# level restore, also with every stream parsed by the parallel loader
# (min_parallel_table_scan_size = 0: whole copies, upserts and deletes of
# the incrementals); the manifests say what an incremental did: changed rows
# of visits only (exact upsert and delete counts, most pages skipped, an
# unchanged table reads and writes nothing), whole copies with a reason
# for the table without a primary key, the TRUNCATEd table (rewritten),
# the table whose definition changed, and the tables whose parent row
# index is missing; an INCREMENTAL of a few rows stores a small fraction
# of the FULL's bytes.
set -uo pipefail
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/backup_lib.sh"

DIR=$BO_TEST_DIR/backup_chain
PORT=$((BO_TEST_PORT + 22))
ORG=8e2f4a6c-1d3b-4f5e-a7c9-0b1d2e3f4a22
TABLES="visits events tasks staff"
trap 'cluster_stop "$DIR"' EXIT
plan 54

cluster_start "$DIR" "$PORT" || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'"
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<SQL || exit 1
ALTER SYSTEM SET backup_offline.default_key_id = 'k1';
SELECT pg_reload_conf();
CREATE EXTENSION backup_offline;

CREATE SCHEMA chain;
CREATE TABLE chain.visits (id int PRIMARY KEY, client int NOT NULL, day date NOT NULL, amount numeric(10, 2), note text)
	WITH (fillfactor = 90, autovacuum_enabled = false);
INSERT INTO chain.visits
SELECT i, i % 97, date '2024-01-01' + i % 365, (i % 1000) / 7.0, repeat(md5(i::text), 4)
  FROM generate_series(1, 20000) i;
CREATE TABLE chain.events (visit_id int, kind text, at timestamptz) WITH (autovacuum_enabled = false);
INSERT INTO chain.events
SELECT i % 500, (ARRAY['clock-in', 'clock-out', 'note'])[1 + i % 3], timestamptz '2024-01-01 08:00+00' + i * interval '7 minutes'
  FROM generate_series(1, 2000) i;
INSERT INTO chain.events SELECT * FROM chain.events WHERE visit_id < 5;	-- duplicate rows
CREATE TABLE chain.tasks (id int PRIMARY KEY, visit_id int, task text) WITH (autovacuum_enabled = false);
INSERT INTO chain.tasks SELECT i, i % 300, 'task ' || i FROM generate_series(1, 300) i;
CREATE TABLE chain.staff (id int PRIMARY KEY, name text, rate numeric(6, 2)) WITH (autovacuum_enabled = false);
INSERT INTO chain.staff SELECT i, 'caregiver ' || i, 20 + i % 15 FROM generate_series(1, 100) i;
VACUUM chain.visits, chain.events, chain.tasks, chain.staff;

-- the scenario's records, outside the scope
CREATE SCHEMA chain_check;
CREATE TABLE chain_check.snaps (label text PRIMARY KEY, id uuid NOT NULL);
CREATE TABLE chain_check.recorded (label text, tbl text, md5 text, rd jsonb, PRIMARY KEY (label, tbl));
CREATE TABLE chain_check.verified (label text PRIMARY KEY, r jsonb);
-- md5 of the sorted text forms of a table's rows
CREATE FUNCTION chain_check.md5_of(rel regclass) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE
	result text;
BEGIN
	EXECUTE format('SELECT md5(string_agg(t::text, ''|'' ORDER BY t::text)) FROM %s t', rel) INTO result;
	RETURN result;
END
\$\$;

INSERT INTO backup_offline.organization_member VALUES ('postgres', '$ORG');
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.register_entity('VISIT', 'chain.visits', '{}');
SELECT backup_offline.register_entity('EVENT', 'chain.events', '{"keyColumns": ["visit_id", "kind"]}');
SELECT backup_offline.register_entity('TASK', 'chain.tasks', '{}');
SELECT backup_offline.register_entity('STAFF', 'chain.staff', '{}');
SQL
CONFIG=$(cluster_psql "$DIR" "$PORT" -d postgres -At <<SQL
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.create_backup_configuration('{"name": "chain",
	"scope": {"includeEntities": ["VISIT", "EVENT", "TASK", "STAFF"]},
	"schedule": {"frequency": "DAILY", "startTime": "02:00", "timezone": "UTC"},
	"retention": {"retentionDays": 30},
	"storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "$DIR/backups/repo"},
	"checksumAlgorithm": "BLAKE3"}');
SQL
)
[ -n "$CONFIG" ] || exit 1

# backup LABEL TYPE: run a backup, then at once record its id and the
# digests of the live tables; checks that it COMPLETED with that type
backup() {
	local id
	id=$(cluster_psql "$DIR" "$PORT" -d postgres -At -c "SET client_min_messages = warning" \
		-c "SELECT backup_offline.run_backup('$CONFIG', '$2')" 2>"$DIR/err")
	Q "INSERT INTO chain_check.snaps VALUES ('$1', '${id:-00000000-0000-0000-0000-000000000000}');
	   INSERT INTO chain_check.recorded
	   SELECT '$1', t, chain_check.md5_of(('chain.' || t)::regclass), backup_offline.rows_digest(('chain.' || t)::regclass)
	     FROM unnest(string_to_array('$TABLES', ' ')) t" >/dev/null
	isd "$(Q "SELECT status || ' ' || backup_type FROM backup_offline.backup_snapshot WHERE id = '$id'")" "COMPLETED $2" \
		"$1: $2 backup COMPLETED" "run_backup: $(cat "$DIR/err")"
	eval "$1=\$id"
}

# T LABEL TABLE FIELDS: fields (a jsonb expression over the manifest table
# entry t) of TABLE in the manifest of snapshot LABEL
T() {
	Q "SELECT $3 FROM chain_check.snaps c, backup_offline.backup_snapshot s, jsonb_array_elements(s.manifest->'tables') t
	   WHERE c.label = '$1' AND s.id = c.id AND t->>'schema' = 'chain' AND t->>'name' = '$2'"
}

# rows_digest_matches LABEL: the tables whose recorded rows_digest differs
# from the manifest's (count of tables compared first)
rows_digest_matches() {
	Q "SELECT count(*) || coalesce(' ' || string_agg(r.tbl, ' ') FILTER (WHERE
			r.rd->>'rowsDigest' IS DISTINCT FROM t->>'rowsDigest' OR (r.rd->>'rowCount')::bigint IS DISTINCT FROM (t->>'rowCount')::bigint), '')
	     FROM chain_check.snaps c JOIN backup_offline.backup_snapshot s ON s.id = c.id
	     CROSS JOIN jsonb_array_elements(s.manifest->'tables') t
	     JOIN chain_check.recorded r ON r.label = c.label AND r.tbl = t->>'name'
	    WHERE c.label = '$1'"
}

# ---- b0: FULL ---------------------------------------------------------------
backup b0 FULL
is "$(rows_digest_matches b0)" "4" "b0: rows_digest() of every live table is the manifest's"

# ---- changes, b1: INCREMENTAL -----------------------------------------------
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL' || exit 1
UPDATE chain.visits SET note = note || ' (corrected)', amount = amount + 1 WHERE id % 1000 = 7;	-- 20 rows
DELETE FROM chain.visits WHERE id % 2000 = 500;													-- 10 rows
INSERT INTO chain.visits SELECT i, 1, date '2025-01-01', 1.5, 'new ' || i FROM generate_series(20001, 20030) i;
UPDATE chain.visits SET id = id + 100000 WHERE id BETWEEN 11 AND 15;							-- 5 keys shifted
UPDATE chain.visits SET id = -21 WHERE id = 21;													-- 21 and 22 swapped
UPDATE chain.visits SET id = 21 WHERE id = 22;
UPDATE chain.visits SET id = 22 WHERE id = -21;
DELETE FROM chain.visits WHERE id = 31;															-- 31 again, other values
INSERT INTO chain.visits VALUES (31, 31, date '2025-02-02', 31.31, 'reinserted');
VACUUM chain.visits;
INSERT INTO chain.events VALUES (1, 'note', '2025-01-01 10:00+00'), (1, 'note', '2025-01-01 10:00+00');
TRUNCATE chain.tasks;
INSERT INTO chain.tasks SELECT i, i % 50, 'after truncate ' || i FROM generate_series(1, 150) i;
SQL
backup b1 INCREMENTAL
is "$(rows_digest_matches b1)" "4" "b1: rows_digest() of every live table is the manifest's"
# row versions: 20 + 30 + 5 + 2 + 1 new, 20 + 10 + 5 + 2 + 1 gone
is "$(T b1 visits "(t->>'change') || ' ' || (t->>'upsertedRows') || ' ' || (t->>'deletedRows') || ' ' || (t->>'rowCount')")" \
	"rows 58 38 20020" "b1: visits by rows: exactly the 58 new and 38 gone row versions, 20020 rows"
isd "$(T b1 visits "(t->>'pagesSkipped')::int > 0 AND (t->>'pagesSkipped')::int > 4 * (t->>'pagesRead')::int")" "t" \
	"b1: visits: most pages skipped (unchanged since b0)" "$(T b1 visits "t->>'pagesRead' || ' read, ' || (t->>'pagesSkipped') || ' skipped'")"
is "$(T b1 staff "(t->>'change') || ' ' || (t->>'pagesRead') || ' ' || (t->>'upsertedRows') || ' ' || (t->>'deletedRows') || ' ' || jsonb_array_length(t->'objects')")" \
	"rows 0 0 0 0" "b1: staff, unchanged: by rows, no page read, nothing written, no object"
is "$(T b1 events "(t->>'change') || ': ' || (t->>'changeReason')")" "whole: the table has no primary key" \
	"b1: events (no primary key) copied whole, with the reason"
isd "$(T b1 tasks "t->>'change' = 'whole' AND t->>'changeReason' ~* 'rewritten' AND t->>'changeReason' ~ 'TRUNCATE'")" "t" \
	"b1: tasks (TRUNCATEd) copied whole, the reason says it was rewritten" "$(T b1 tasks "t->>'changeReason'")"
is "$(Q "SELECT (i.parent_snapshot_id = f.id AND i.base_snapshot_id = f.id)::text
	FROM chain_check.snaps ci JOIN backup_offline.backup_snapshot i ON i.id = ci.id,
	     chain_check.snaps cf JOIN backup_offline.backup_snapshot f ON f.id = cf.id
	WHERE ci.label = 'b1' AND cf.label = 'b0'")" "true" "b1: parent and base are the FULL"
full=$(Q "SELECT (data_metrics->>'storedBytes')::bigint FROM backup_offline.backup_snapshot s JOIN chain_check.snaps c ON c.id = s.id WHERE c.label = 'b0'")
incr=$(Q "SELECT (data_metrics->>'storedBytes')::bigint FROM backup_offline.backup_snapshot s JOIN chain_check.snaps c ON c.id = s.id WHERE c.label = 'b1'")
diag "stored bytes: b0 FULL ${full:-?}, b1 INCREMENTAL ${incr:-?}"
ok $([ -n "$full" ] && [ -n "$incr" ] && [ $((incr * 10)) -lt "$full" ] && echo 0 || echo 1) \
	"b1: the INCREMENTAL stores less than a tenth of the FULL's bytes"
vfull=$(T b0 visits "t->>'storedBytes'")
vincr=$(T b1 visits "t->>'storedBytes'")
ok $([ -n "$vfull" ] && [ -n "$vincr" ] && [ $((vincr * 50)) -lt "$vfull" ] && echo 0 || echo 1) \
	"b1: visits' changes are stored in less than a fiftieth of its whole copy ($vincr vs $vfull bytes)"

# ---- changes, b2: INCREMENTAL -----------------------------------------------
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL' || exit 1
UPDATE chain.visits SET amount = amount * 2 WHERE id % 3000 = 1;	-- 7 rows
VACUUM (FREEZE) chain.visits;	-- every page's tuple headers change, not the rows
ALTER TABLE chain.staff ADD COLUMN grade text DEFAULT 'junior';
DELETE FROM chain.events WHERE visit_id = 7;
SQL
backup b2 INCREMENTAL
is "$(rows_digest_matches b2)" "4" "b2: rows_digest() of every live table is the manifest's"
is "$(T b2 visits "(t->>'change') || ' ' || (t->>'upsertedRows') || ' ' || (t->>'deletedRows')")" "rows 7 7" \
	"b2: visits by rows after VACUUM (FREEZE): the 7 updated rows, no other"
is "$(T b2 visits "(t->>'pagesRead' = t->>'heapBlocks')::text || ' ' || (t->>'pagesSkipped')")" "true 0" \
	"b2: VACUUM (FREEZE) changed every page of visits: all read, none skipped"
isd "$(T b2 staff "t->>'change' = 'whole' AND t->>'changeReason' ~* 'definition changed'")" "t" \
	"b2: staff after ADD COLUMN copied whole, the reason says its definition changed" "$(T b2 staff "t->>'changeReason'")"
is "$(T b2 tasks "(t->>'change') || ' ' || (t->>'upsertedRows')")" "rows 0" \
	"b2: tasks, copied whole by b1, is by rows again"
is "$(Q "SELECT (i.parent_snapshot_id = p.id AND i.base_snapshot_id = f.id)::text
	FROM chain_check.snaps ci JOIN backup_offline.backup_snapshot i ON i.id = ci.id,
	     chain_check.snaps cp JOIN backup_offline.backup_snapshot p ON p.id = cp.id,
	     chain_check.snaps cf JOIN backup_offline.backup_snapshot f ON f.id = cf.id
	WHERE ci.label = 'b2' AND cp.label = 'b1' AND cf.label = 'b0'")" "true" \
	"b2: the parent is the previous snapshot (b1), the base the FULL"

# ---- changes, b3: INCREMENTAL after a bulk delete that truncates ------------
ndel=$(cluster_psql "$DIR" "$PORT" -d postgres -At <<'SQL'
WITH d AS (
	DELETE FROM chain.visits
	 WHERE (ctid::text::point)[0] >= 0.6 * (pg_relation_size('chain.visits') / current_setting('block_size')::int)
	RETURNING 1)
SELECT count(*) FROM d;
SQL
)
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL' || exit 1
VACUUM chain.visits;
UPDATE chain.staff SET grade = 'senior' WHERE id % 10 = 0;
SQL
[ -n "$ndel" ] || exit 1
diag "bulk delete: $ndel rows of visits"
backup b3 INCREMENTAL
is "$(rows_digest_matches b3)" "4" "b3: rows_digest() of every live table is the manifest's"
isd "$(Q "SELECT ((SELECT (t->>'heapBlocks')::int FROM chain_check.snaps c, backup_offline.backup_snapshot s,
		jsonb_array_elements(s.manifest->'tables') t WHERE c.label = 'b3' AND s.id = c.id AND t->>'name' = 'visits')
	< 0.7 * (SELECT (t->>'heapBlocks')::int FROM chain_check.snaps c, backup_offline.backup_snapshot s,
		jsonb_array_elements(s.manifest->'tables') t WHERE c.label = 'b2' AND s.id = c.id AND t->>'name' = 'visits'))::text")" \
	"true" "b3: VACUUM truncated visits (heapBlocks down by more than 30%)" \
	"heapBlocks b2 $(T b2 visits "t->>'heapBlocks'"), b3 $(T b3 visits "t->>'heapBlocks'")"
is "$(T b3 visits "(t->>'change') || ' ' || (t->>'upsertedRows') || ' ' || (t->>'deletedRows')")" "rows 0 $ndel" \
	"b3: visits by rows: the $ndel deleted rows, nothing upserted"
is "$(Q "SELECT (i.parent_snapshot_id = p.id)::text
	FROM chain_check.snaps ci JOIN backup_offline.backup_snapshot i ON i.id = ci.id,
	     chain_check.snaps cp JOIN backup_offline.backup_snapshot p ON p.id = cp.id
	WHERE ci.label = 'b3' AND cp.label = 'b2'")" "true" "b3: the parent is the previous snapshot (b2)"
is "$(T b3 staff "(t->>'change') || ' ' || (t->>'upsertedRows') || ' ' || (t->>'deletedRows')")" "rows 10 10" \
	"b3: staff (a column added with a default) by rows: the 10 updated rows"

# ---- changes, b4: DIFFERENTIAL ----------------------------------------------
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL' || exit 1
INSERT INTO chain.visits SELECT i, 2, date '2025-03-03', 2.5, 'after truncation ' || i FROM generate_series(30001, 30040) i;
UPDATE chain.visits SET note = 'differential' WHERE id IN (2, 3, 4);
INSERT INTO chain.tasks VALUES (1000, 1, 'one more');
SQL
backup b4 DIFFERENTIAL
is "$(rows_digest_matches b4)" "4" "b4: rows_digest() of every live table is the manifest's"
is "$(Q "SELECT (d.parent_snapshot_id = f.id AND d.base_snapshot_id = f.id)::text
	FROM chain_check.snaps cd JOIN backup_offline.backup_snapshot d ON d.id = cd.id,
	     chain_check.snaps cf JOIN backup_offline.backup_snapshot f ON f.id = cf.id
	WHERE cd.label = 'b4' AND cf.label = 'b0'")" "true" "b4: the DIFFERENTIAL's parent and base are the FULL"
isd "$(T b4 visits "t->>'change' = 'rows' AND (t->>'rowCount')::int = (t->>'upsertedRows')::int + 20000 - (t->>'deletedRows')::int")" "t" \
	"b4: visits by rows since the FULL (rows = FULL's 20000 + upserted - deleted)" \
	"$(T b4 visits "t->>'upsertedRows' || ' upserted, ' || (t->>'deletedRows') || ' deleted, ' || (t->>'rowCount') || ' rows'")"
is "$(T b4 tasks "t->>'change' = 'whole' AND t->>'changeReason' ~* 'rewritten'") $(T b4 staff "t->>'change' = 'whole' AND t->>'changeReason' ~* 'definition changed'")" \
	"t t" "b4: since the FULL, tasks was rewritten and staff's definition changed: both whole"

# ---- the parent's row index removed, b5: INCREMENTAL ------------------------
IDX=$DIR/data/pg_backup_offline/$b4
ok $([ -n "$b4" ] && [ -d "$IDX" ] && [ "$(find "$IDX" -name '*.idx' | wc -l)" -gt 0 ] && echo 0 || echo 1) \
	"b4 left a local row index in \$PGDATA/pg_backup_offline/<id>"
as_pg rm -rf "$IDX"
Q "UPDATE chain.visits SET amount = 0 WHERE id = 5" >/dev/null
backup b5 INCREMENTAL
is "$(rows_digest_matches b5)" "4" "b5: rows_digest() of every live table is the manifest's"
is "$(Q "SELECT (i.parent_snapshot_id = p.id)::text
	FROM chain_check.snaps ci JOIN backup_offline.backup_snapshot i ON i.id = ci.id,
	     chain_check.snaps cp JOIN backup_offline.backup_snapshot p ON p.id = cp.id
	WHERE ci.label = 'b5' AND cp.label = 'b4'")" "true" "b5: the parent is the DIFFERENTIAL b4"
for t in visits tasks staff; do
	isd "$(T b5 "$t" "t->>'change' = 'whole' AND t->>'changeReason' ~* 'index' AND t->>'changeReason' ~* 'missing'")" "t" \
		"b5: $t copied whole, the reason says the parent's row index is missing" "$(T b5 "$t" "t->>'changeReason'")"
done

# ---- every snapshot materialised and verified -------------------------------
# (not vacuous: visits differs at every backup)
is "$(Q "SELECT count(DISTINCT md5) || '/' || count(*) FROM chain_check.recorded WHERE tbl = 'visits'")" "6/6" \
	"the recorded md5 of visits differs at each of the 6 backups"
crash_mark
for label in b0 b1 b2 b3 b4 b5; do
	err=$(Q "SELECT backup_offline.materialize_snapshot(id, 'm_$label') FROM chain_check.snaps WHERE label = '$label'" 2>&1 >/dev/null)
	wait_ready
	isd "$(Q "SELECT count(*) || coalesce(' differ: ' || string_agg(r.tbl, ' ') FILTER (WHERE
			to_regclass(format('m_%s.%I', r.label, r.tbl)) IS NULL
			OR chain_check.md5_of(format('m_%s.%I', r.label, r.tbl)::regclass) IS DISTINCT FROM r.md5), '')
		FROM chain_check.recorded r WHERE r.label = '$label'")" "4" \
		"$label: every materialised table has the md5 recorded at its backup" "$err"
done
no_crash_since
ok $? "materialize_snapshot did not crash the server"
crash_mark
for label in b0 b1 b2 b3 b4 b5; do
	err=$(Q "INSERT INTO chain_check.verified SELECT label, backup_offline.verify_snapshot(id, 'restore')
		FROM chain_check.snaps WHERE label = '$label'" 2>&1)
	wait_ready
	isd "$(Q "SELECT (r->>'valid') || ' ' || (SELECT count(*) FILTER (WHERE (t->>'equal')::boolean) FROM jsonb_array_elements(r->'tables') t)
		FROM chain_check.verified WHERE label = '$label'")" "true 4" \
		"$label: verify_snapshot restore valid, every table equal" "$err $(Q "SELECT r->'problems' FROM chain_check.verified WHERE label = '$label'")"
done
# the same through the parallel loader: a worker parses every stream
is "$(Q "SET min_parallel_table_scan_size = 0; SET max_parallel_maintenance_workers = 2;
	SELECT string_agg(label || ' ' || (r->>'valid') || ' ' ||
		(SELECT count(*) FILTER (WHERE (t->>'equal')::boolean) FROM jsonb_array_elements(r->'tables') t), ', ' ORDER BY label)
	FROM (SELECT label, backup_offline.verify_snapshot(id, 'restore') r FROM chain_check.snaps) v" 2>&1)" \
	"b0 true 4, b1 true 4, b2 true 4, b3 true 4, b4 true 4, b5 true 4" \
	"every snapshot verifies at level restore with the parallel loader, every table equal"
no_crash_since
ok $? "verify_snapshot did not crash the server"
MARK=0
no_crash_since
ok $? "no server process crashed during the scenario"

exit $((TAP_FAILED > 0))
