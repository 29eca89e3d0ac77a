#!/usr/bin/env bash
# A FULL backup of every built-in type family (test/fixtures/type_families.sql,
# schema typefam) and of a small home-care schema (test/bench/backup/
# care_schema.sql at scale 0.01, schema care) comes back exactly.
#
# Every table of both schemas is registered (typefam.t_nopk has no primary
# key; it is first backed up alone, so that trouble with it shows by
# itself), one FULL backup runs with the defaults (zstd, encryption,
# BLAKE3).  Proven:
#   * the snapshot is COMPLETED and verifies at the levels checksums,
#     decrypt and restore, every table restoring equal to the manifest;
#   * rows_digest() of every live table is the manifest's format, rowCount
#     and rowsDigest (what the backup recorded is what the table holds);
#   * materialize_snapshot() into a new schema gives, for every table, the
#     same typefam.row_digest() as the original (an md5 of the rows' text
#     forms, independent of the extension's digest), and the same
#     typefam.float_bits_digest() (float bits, NaN sign and payload);
#     generated columns are not copied, so a table with generated columns
#     is compared through a view of its copied columns;
#   * tables with composites, arrays of enums or domains and user range
#     types are stored as text, every table of built-in types as binary;
#   * the rows digest a materialisation takes while it loads (what
#     materialize_snapshot reports, and restores compare with the manifest)
#     is rows_digest() of the table it made, for every table whose column
#     types keep their stored format (domains become their base types);
#     compressible columns of materialised tables use lz4 when the server
#     has it;
#   * loading through the parallel loader (min_parallel_table_scan_size =
#     0: every table) gives the same: materialised tables equal to the
#     originals (row_digest), their load digests rows_digest(), verify at
#     level restore valid; with no parallel worker to be had
#     (max_parallel_workers = 0) the loader parses itself and verify is
#     valid too.
# Then a second configuration without encryption or compression and with
# SHA512 checksums: its FULL restores valid, its stored digests are what
# sha512sum prints; a byte flipped in the middle of one stored rows object
# makes verify_snapshot report that object at the checksums level and at
# the decrypt level, the snapshot becomes CORRUPTED, and materialising it
# fails without leaving a schema behind, also when a parallel worker
# parses the damaged object.  No server process crashes on
# the way (verify_snapshot and materialize_snapshot are checked on their
# own; after a crash the scenario waits for the server and goes on).
set -uo pipefail
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/backup_lib.sh"

DIR=$BO_TEST_DIR/backup_roundtrip
PORT=$((BO_TEST_PORT + 21))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ORG=5d0c6f4e-2b1a-4c3d-9e8f-7a6b5c4d3e21
trap 'cluster_stop "$DIR"' EXIT
plan 47

# verify NAME SNAPSHOT LEVEL: run verify_snapshot, keep its result as NAME in
# rt_check.v; prints errors (a failed call leaves no row)
verify() {
	Q "INSERT INTO rt_check.v VALUES ('$1', backup_offline.verify_snapshot('$2', '$3'))" 2>&1
	wait_ready
}

# V NAME EXPRESSION: EXPRESSION over the verification result r of NAME
V() { Q "SELECT $2 FROM rt_check.v WHERE name = '$1'"; }

cluster_start "$DIR" "$PORT" || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'"
cluster_psql "$DIR" "$PORT" -d postgres -c "ALTER SYSTEM SET backup_offline.default_key_id = 'k1'" \
	-c "SELECT pg_reload_conf()" -c "CREATE EXTENSION backup_offline" >/dev/null || exit 1

# ---- the data ---------------------------------------------------------------
cluster_psql "$DIR" "$PORT" -d postgres -f "$ROOT/test/fixtures/type_families.sql" >/dev/null &&
	cluster_psql "$DIR" "$PORT" -d postgres -v scale=0.01 -f "$ROOT/test/bench/backup/care_schema.sql" >/dev/null
ok $? "typefam fixture and care schema (scale 0.01) loaded"
NTABLES=$(Q "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname IN ('typefam', 'care') AND c.relkind = 'r'")
diag "$NTABLES tables in schemas typefam and care"

# the scenario's own helpers, in schema rt_check
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL' || exit 1
CREATE SCHEMA rt_check;
-- results of verify_snapshot and materialize_snapshot, by name
CREATE TABLE rt_check.v (name text PRIMARY KEY, r jsonb);
CREATE TABLE rt_check.mat (name text PRIMARY KEY, r jsonb);
CREATE FUNCTION rt_check.count_rows(rel regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM %s', rel) INTO n;
	RETURN n;
END
$$;
-- rt_check.<table>_copied: the copied (non-generated) columns, in column
-- order, of each table with generated columns, to compare with its copy
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
		EXECUTE format('CREATE VIEW rt_check.%I AS SELECT %s FROM %s', t.relname || '_copied', t.cols, t.rel);
	END LOOP;
END
$$;
-- mismatches(materialisation, digest function): how many tables of the
-- materialisation were compared with their originals through
-- typefam.<fn>, followed by those whose digests differ
CREATE FUNCTION rt_check.mismatches(which text, fn text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	t jsonb;
	orig regclass;
	a text;
	b text;
	n int := 0;
	bad text := '';
BEGIN
	FOR t IN SELECT jsonb_array_elements(r->'tables') FROM rt_check.mat WHERE name = which LOOP
		orig := coalesce(to_regclass(format('rt_check.%I', (t->>'name') || '_copied')),
						 format('%I.%I', t->>'schema', t->>'name')::regclass);
		EXECUTE format('SELECT typefam.%I($1), typefam.%I($2)', fn, fn) INTO a, b
			USING orig, (t->>'restoredAs')::regclass;
		n := n + 1;
		IF a IS DISTINCT FROM b THEN
			bad := bad || ' ' || (t->>'schema') || '.' || (t->>'name');
		END IF;
	END LOOP;
	RETURN n || bad;
END
$$;
SQL

# every table its own entity type: TYPEFAM_T_BOOL, CARE_VISITS, ...
is "$(cluster_psql "$DIR" "$PORT" -d postgres -At <<SQL
INSERT INTO backup_offline.organization_member VALUES ('postgres', '$ORG');
SET backup_offline.organization_id = '$ORG';
SELECT count(backup_offline.register_entity(upper(n.nspname || '_' || c.relname), c.oid::regclass,
		CASE WHEN c.relname = 't_nopk' THEN '{"keyColumns": ["a", "b", "c"]}' ELSE '{}' END::jsonb))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('typefam', 'care') AND c.relkind = 'r';
SQL
)" "$NTABLES" "every table of both schemas registered as an entity type"

# create_config NAME REPO EXTRA-JSON [ENTITY-CONDITION]: a configuration
# over every entity type (or those whose entity_type meets the condition)
create_config() {
	cluster_psql "$DIR" "$PORT" -d postgres -At <<SQL
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.create_backup_configuration(jsonb_build_object(
	'name', '$1',
	'scope', jsonb_build_object('includeEntities', (SELECT jsonb_agg(entity_type ORDER BY entity_type) FROM backup_offline.entity_registry WHERE ${4:-true})),
	'schedule', '{"frequency": "DAILY", "startTime": "02:00", "timezone": "UTC"}'::jsonb,
	'retention', '{"retentionDays": 30}'::jsonb,
	'storageDestination', jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', '$DIR/backups/$2'))
	|| '$3'::jsonb);
SQL
}

# run_full CONFIG: the snapshot id of a FULL backup (errors on stderr)
run_full() {
	cluster_psql "$DIR" "$PORT" -d postgres -At -c "SET client_min_messages = warning" \
		-c "SELECT backup_offline.run_backup('$1', 'FULL')"
}

# manifest tables of snapshot $1 as t, for FROM clauses
tables_of() {
	echo "backup_offline.backup_snapshot s, jsonb_array_elements(s.manifest->'tables') t WHERE s.id = '$1'"
}

# manifest objects of snapshot $1 as o (of table t), for FROM clauses
objects_of() {
	echo "backup_offline.backup_snapshot s, jsonb_array_elements(s.manifest->'tables') t,
		jsonb_array_elements(t->'objects') o WHERE s.id = '$1'"
}

# ---- a table without a primary key, alone ----------------------------------
# (so that a failure here is told apart from one of the whole scope below)
NOPK=$(create_config nopk repo_nopk '{}' "entity_type = 'TYPEFAM_T_NOPK'")
NSNAP=$(run_full "$NOPK" 2>"$DIR/err")
isd "$(Q "SELECT status || ' ' || (t->>'rowCount') || ' ' || (t->>'change') FROM $(tables_of "$NSNAP")")" \
	"COMPLETED 11 whole" "a FULL of typefam.t_nopk alone (no primary key) is COMPLETED with its 11 rows" \
	"run_backup: $(cat "$DIR/err")"

# ---- FULL with the defaults -------------------------------------------------
CONFIG=$(create_config roundtrip repo '{"checksumAlgorithm": "BLAKE3"}')
SNAP=$(run_full "$CONFIG" 2>"$DIR/err")
isd "$(Q "SELECT status || ' ' || backup_type || ' ' || (manifest->'totals'->>'tableCount')
	FROM backup_offline.backup_snapshot WHERE id = '$SNAP'")" "COMPLETED FULL $NTABLES" \
	"the FULL backup of every table is COMPLETED" "run_backup: $(cat "$DIR/err")"

crash_mark
for level in checksums decrypt restore; do
	err=$(verify "full_$level" "$SNAP" "$level")
	isd "$(V "full_$level" "r->>'valid'")" "true" "verify_snapshot level $level: valid" \
		"$err $(V "full_$level" "r->'problems'")"
done
isd "$(V full_restore "(SELECT count(*) FILTER (WHERE (t->>'equal')::boolean AND t->>'expectedRows' = t->>'restoredRows')
	|| '/' || count(*) FROM jsonb_array_elements(r->'tables') t)")" "$NTABLES/$NTABLES" \
	"verify restore: every table restored equal to the manifest (rows and digest)" "$(V full_restore "r->'tables'")"
no_crash_since
ok $? "verify_snapshot did not crash the server"
# a session with another client encoding: binary COPY receives text in the
# client encoding, so materialising must not depend on the caller's
is "$(PGCLIENTENCODING=LATIN1 Q "SELECT (backup_offline.verify_snapshot('$SNAP', 'restore')->>'valid')")" true \
	"verify_snapshot at level restore is valid from a LATIN1 session too"

# what rows_digest() says of the live tables is what the manifest recorded
is "$(Q "SELECT count(*) || coalesce(' ' || string_agg(t->>'schema' || '.' || (t->>'name'), ' ')
		FILTER (WHERE backup_offline.rows_digest(format('%I.%I', t->>'schema', t->>'name')::regclass)
			IS DISTINCT FROM jsonb_build_object('format', t->'format', 'rowCount', t->'rowCount', 'rowsDigest', t->'rowsDigest')), '')
	FROM $(tables_of "$SNAP")")" "$NTABLES" \
	"rows_digest(live table) is the manifest's format, rowCount and rowsDigest for every table"
is "$(Q "SELECT count(*) || coalesce(' ' || string_agg(t->>'name', ' ')
		FILTER (WHERE (t->>'rowCount')::bigint <> rt_check.count_rows(format('%I.%I', t->>'schema', t->>'name')::regclass)), '')
	FROM $(tables_of "$SNAP")")" "$NTABLES" \
	"the manifest's rowCount is count(*) of every live table"

# ---- the stored formats -----------------------------------------------------
is "$(Q "SELECT string_agg(t->>'name', ',' ORDER BY t->>'name') FROM $(tables_of "$SNAP") AND t->>'format' = 'text'")" \
	"t_composite,t_domain,t_enum,t_userrange" \
	"text format exactly for the tables with composites, arrays of enums or domains, user ranges"
is "$(Q "SELECT count(*) || ' ' || count(*) FILTER (WHERE t->>'format' = 'binary') FROM $(tables_of "$SNAP")
	AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = format('%I.%I', t->>'schema', t->>'name')::regclass
		AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid >= 16384)")" \
	"$(Q "SELECT count(*) || ' ' || count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname IN ('typefam', 'care') AND c.relkind = 'r'
		  AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
			AND NOT a.attisdropped AND a.atttypid >= 16384)")" \
	"every table of built-in types only is stored in binary"
is "$(Q "SELECT t->>'format' FROM $(tables_of "$SNAP") AND t->>'name' = 'visits'")" "binary" \
	"care.visits (a plain user enum column) is stored in binary (enums are sent as labels)"
is "$(Q "SELECT t->>'copyColumns' FROM $(tables_of "$SNAP") AND t->>'name' = 't_generated'")" \
	'["id", "qty", "price", "name"]' "generated columns are not copied (t_generated: copyColumns)"

# ---- materialised, compared with an independent digest ----------------------
crash_mark
err=$(Q "INSERT INTO rt_check.mat SELECT 'full', backup_offline.materialize_snapshot('$SNAP', 'restored_full')" 2>&1)
wait_ready
isd "$(Q "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = 'restored_full' AND c.relkind = 'r'")" "$NTABLES" \
	"materialize_snapshot of the FULL: schema restored_full holds every table" "$err"
no_crash_since
ok $? "materialize_snapshot did not crash the server"
is "$(Q "SELECT rt_check.mismatches('full', 'row_digest')")" "$NTABLES" \
	"typefam.row_digest(original) = typefam.row_digest(restored) for every table"
is "$(Q "SELECT rt_check.mismatches('full', 'float_bits_digest')")" "$NTABLES" \
	"typefam.float_bits_digest (float bits: -0, NaN sign and payload) equal for every table"
is "$(Q "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	WHERE attrelid = to_regclass('restored_full.t_generated') AND attnum > 0")" "id,qty,price,name" \
	"the restored t_generated has the copied columns only"
# the independent digest is not blind: one changed value in a restored copy shows
is "$(Q "BEGIN; UPDATE restored_full.t_float SET f8 = '-0' WHERE id = 5;
	SELECT typefam.row_digest('typefam.t_float') = typefam.row_digest('restored_full.t_float'); ROLLBACK;" 2>&1)" "f" \
	"row_digest sees a single changed value (0 vs -0) in a restored table"

# the load digest is rows_digest() of the table made (compared where the
# restored column types keep the stored format: not t_domain, whose domains
# become base types and so binary)
# tables_of_u SNAPSHOT: tables_of, the table element named u
tables_of_u() { tables_of "$1" | sed 's/) t WHERE/) u WHERE/'; }
# digest_check MAT: "<tables compared>[ differ: <tables>]" for materialisation MAT
digest_check() {
	Q "SELECT count(*) || coalesce(' differ: ' || string_agg(t->>'name', ' ')
			FILTER (WHERE t->>'rowsDigest' IS DISTINCT FROM d->>'rowsDigest'), '')
		FROM rt_check.mat m, jsonb_array_elements(m.r->'tables') t,
			 backup_offline.rows_digest((t->>'restoredAs')::regclass) d
		WHERE m.name = '$1' AND d->>'format' = (SELECT u->>'format' FROM $(tables_of_u "$SNAP") AND u->>'name' = t->>'name')"
}
is "$(digest_check full)" "$((NTABLES - 1))" \
	"the digest materialize_snapshot takes while loading is rows_digest() of the table it made"
# lz4 where the server has it: every column whose type can be compressed
is "$(Q "SELECT count(*) FILTER (WHERE a.attcompression <> CASE WHEN l.lz4 AND t.typstorage IN ('x', 'm') THEN 'l' ELSE '' END)
	|| ' ' || count(*) FILTER (WHERE t.typstorage IN ('x', 'm'))
	FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid,
		 (SELECT 'lz4' = ANY (enumvals) AS lz4 FROM pg_settings WHERE name = 'default_toast_compression') l
	WHERE c.relnamespace = 'restored_full'::regnamespace AND c.relkind = 'r' AND a.attnum > 0")" \
	"0 $(Q "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
		WHERE c.relnamespace = 'restored_full'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND t.typstorage IN ('x', 'm')")" \
	"materialised tables: lz4 on every compressible column when the server has lz4, on no other"

# ---- the parallel loader -----------------------------------------------------
# min_parallel_table_scan_size = 0: every table's streams are parsed by a
# parallel worker while the materialisation inserts (the loader says so at
# DEBUG1 in the server log)
PAR="SET min_parallel_table_scan_size = 0; SET max_parallel_maintenance_workers = 2; SET log_min_messages = debug1;"
# parallel_loads LINE: the tables a parallel worker parsed after that line of the server log
parallel_loads() { tail -n +"$(($1 + 1))" "$DIR/server.log" | grep -c 'a parallel worker parsed [0-9]* object(s) of table'; }
crash_mark
err=$(Q "$PAR INSERT INTO rt_check.mat SELECT 'parallel', backup_offline.materialize_snapshot('$SNAP', 'restored_parallel')" 2>&1)
wait_ready
isd "$(parallel_loads "$MARK")" "$NTABLES" "parallel loader: a worker parsed every table of the materialisation" "$err"
isd "$(Q "SELECT rt_check.mismatches('parallel', 'row_digest') || '; ' || rt_check.mismatches('parallel', 'float_bits_digest')")" \
	"$NTABLES; $NTABLES" \
	"parallel loader: materialised tables have the originals' row_digest and float_bits_digest" "$err"
is "$(digest_check parallel)" "$((NTABLES - 1))" \
	"parallel loader: the load digest is rows_digest() of the table made"
is "$(Q "$PAR SELECT (r->>'valid') || ' ' || (SELECT count(*) FILTER (WHERE (t->>'equal')::boolean) FROM jsonb_array_elements(r->'tables') t)
	FROM backup_offline.verify_snapshot('$SNAP', 'restore') r" 2>&1)" "true $NTABLES" \
	"parallel loader: verify_snapshot restore valid, every table equal"
# no worker to be had: the loader parses the streams itself
LINE=$(wc -l <"$DIR/server.log")
is "$(Q "$PAR SET max_parallel_workers = 0; SELECT (r->>'valid') || ' ' || (SELECT count(*) FILTER (WHERE (t->>'equal')::boolean) FROM jsonb_array_elements(r->'tables') t)
	FROM backup_offline.verify_snapshot('$SNAP', 'restore') r" 2>&1)" "true $NTABLES" \
	"no parallel worker available: verify_snapshot restore valid, every table equal"
is "$(parallel_loads "$LINE")" "0" "no parallel worker available: no table parsed by a worker"
no_crash_since
ok $? "the parallel loader did not crash the server"

# ---- no encryption, no compression, SHA512 ----------------------------------
PLAIN=$(create_config plain repo_plain '{"checksumAlgorithm": "SHA512", "encryptionEnabled": false, "compressionEnabled": false}')
PSNAP=$(run_full "$PLAIN" 2>"$DIR/err")
isd "$(Q "SELECT status || ' ' || (manifest->>'encryption') || ' ' || (manifest->>'compression') || ' '
		|| (manifest->>'digestAlgorithm') || ' ' || encrypted || ' ' || compressed
	FROM backup_offline.backup_snapshot WHERE id = '$PSNAP'")" "COMPLETED none none SHA512 false false" \
	"FULL without encryption and compression, SHA512: COMPLETED" "run_backup: $(cat "$DIR/err")"
REPO=$DIR/backups/repo_plain
PREFIX=backup_offline/$PLAIN/$PSNAP
is "$(find "$REPO/$PREFIX" -name '*.key.*' | wc -l) $(find "$REPO/$PREFIX" -type f | wc -l)" "0 $((NTABLES + 1))" \
	"no key objects stored: one object per table and the manifest"
# each object's storedDigest is what sha512sum prints for its file, and the
# catalog's checksum that of the manifest file
want=$(cd "$REPO" 2>/dev/null && as_pg sha512sum "$PREFIX"/t*.rows.* | sort -k2)
is "$(Q "SELECT o->>'storedDigest' || '  ' || (o->>'name') FROM $(objects_of "$PSNAP")
	ORDER BY o->>'name'")" "${want:-(no object files)}" "every object's storedDigest is sha512sum of its file"
want=$(as_pg sha512sum "$REPO/$PREFIX/backup_manifest" | cut -d' ' -f1)
is "$(Q "SELECT checksum FROM backup_offline.backup_snapshot WHERE id = '$PSNAP'")" "${want:-(no manifest file)}" \
	"the snapshot's checksum is sha512sum of its backup_manifest"
err=$(verify plain_restore "$PSNAP" restore)
isd "$(V plain_restore "(r->>'valid') || ' ' || (SELECT count(*) FILTER (WHERE (t->>'equal')::boolean)
	FROM jsonb_array_elements(r->'tables') t)")" "true $NTABLES" \
	"unencrypted, uncompressed: verify restore valid, every table equal" "$err $(V plain_restore "r->'problems'")"
err=$(Q "INSERT INTO rt_check.mat SELECT 'plain', backup_offline.materialize_snapshot('$PSNAP', 'restored_plain')" 2>&1)
wait_ready
isd "$(Q "SELECT rt_check.mismatches('plain', 'row_digest') || '; ' || rt_check.mismatches('plain', 'float_bits_digest')")" \
	"$NTABLES; $NTABLES" \
	"unencrypted, uncompressed: materialised tables have the originals' row_digest and float_bits_digest" "$err"

# ---- one damaged object -----------------------------------------------------
# the largest rows object; a byte in its middle flipped, as the server's user
VICTIM=$(Q "SELECT o->>'name' FROM $(objects_of "$PSNAP") AND o->>'kind' = 'rows'
	ORDER BY (o->>'storedLength')::bigint DESC LIMIT 1")
VICTIM=${VICTIM:-(no rows object)}
diag "damaging $VICTIM ($(stat -c %s "$REPO/$VICTIM") bytes)"
as_pg python3 -c "
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(0, 2)
    middle = f.tell() // 2
    f.seek(middle)
    b = f.read(1)
    f.seek(middle)
    f.write(bytes([b[0] ^ 0x20]))" "$REPO/$VICTIM"
ok $? "flipped one byte in the middle of $(basename "$VICTIM")"

err=$(verify damaged_checksums "$PSNAP" checksums)
isd "$(V damaged_checksums "r->>'valid'")" "false" "verify checksums of the damaged snapshot: valid false" "$err"
isd "$(V damaged_checksums "(SELECT string_agg(p->>'object', ' ') FROM jsonb_array_elements(r->'problems') p)")" \
	"$VICTIM" "verify checksums names exactly the damaged object" "$(V damaged_checksums "r->'problems'")"
is "$(Q "SELECT status FROM backup_offline.backup_snapshot WHERE id = '$PSNAP'")" "CORRUPTED" \
	"the damaged snapshot is CORRUPTED"
err=$(verify damaged_decrypt "$PSNAP" decrypt)
isd "$(V damaged_decrypt "(r->>'valid') || ' ' || (SELECT string_agg(p->>'object', ' ') FROM jsonb_array_elements(r->'problems') p)")" \
	"false $VICTIM" "verify decrypt of the damaged snapshot: valid false, naming the damaged object" \
	"$err $(V damaged_decrypt "r->'problems'")"
is "$(Q "SELECT status FROM backup_offline.backup_snapshot WHERE id = '$PSNAP'")" "CORRUPTED" \
	"the damaged snapshot stays CORRUPTED"
out=$(Q "SELECT backup_offline.materialize_snapshot('$PSNAP', 'restored_damaged')" 2>&1)
wait_ready
echo "$out" | grep -q "ERROR:  snapshot BKP-[0-9]* could not be materialised" &&
	[ "$(Q "SELECT count(*) FROM pg_namespace WHERE nspname = 'restored_damaged'")" = 0 ]
ok $? "materialising the damaged snapshot fails and leaves no schema"
# the same with a parallel worker parsing the damaged object: its error
# reaches the materialisation
out=$(Q "$PAR SELECT backup_offline.materialize_snapshot('$PSNAP', 'restored_damaged')" 2>&1)
wait_ready
echo "$out" | grep -q "ERROR:  snapshot BKP-[0-9]* could not be materialised" &&
	[ "$(Q "SELECT count(*) FROM pg_namespace WHERE nspname = 'restored_damaged'")" = 0 ]
ok $? "parallel loader: materialising the damaged snapshot fails and leaves no schema"
# the first configuration's snapshot is untouched
err=$(verify full_again "$SNAP" checksums)
isd "$(V full_again "r->>'valid'") $(Q "SELECT status FROM backup_offline.backup_snapshot WHERE id = '$SNAP'")" \
	"true COMPLETED" "the first snapshot still verifies and stays COMPLETED" "$err"
MARK=0
no_crash_since
ok $? "no server process crashed during the scenario"

exit $((TAP_FAILED > 0))
