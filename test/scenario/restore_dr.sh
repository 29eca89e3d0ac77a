#!/usr/bin/env bash
# Disaster recovery (repository_snapshots, import_repository;
# src/restore/repository.c, src/catalog/77_repository.sql): cluster A backs
# up into a repository; cluster B, created from scratch, is given only the
# key file, reads the repository from storage alone, imports it and
# restores.
#
# Both clusters have the same backup_offline.allowed_paths: the shared
# repository directory (written by A, read by B, both as the postgres OS
# user).  A holds a small care schema: clients, visits (jsonb, long TOASTed
# notes, a serial key) and evv_records (numeric, an identity key), with
# foreign keys between them, check and unique constraints and indexes.
#
# Proven:
#   * A: an encrypted, BLAKE3 configuration; a FULL, changes, an INCREMENTAL,
#     more changes and a second INCREMENTAL whose stored manifest is then
#     damaged (one byte), and a forged manifest (a real one with another
#     snapshot id and row count, its self-checksum unchanged, re-encrypted
#     with the key) under a new snapshot id;
#   * B without the key file: repository_snapshots lists the four manifests,
#     none verified, each naming the missing key "k1"; import_repository
#     fails (55000) with a hint to copy the key file, and nothing changes
#     (no configuration, registry, snapshot, schema or audit row);
#   * B with only the key file copied: repository_snapshots lists the FULL
#     and the INCREMENTAL verified (numbers, types, parent, configuration,
#     row counts and stored bytes as A's catalog has them, not in B's
#     catalog), the damaged and the forged manifest not verified, each with
#     its problem;
#   * import_repository as a non-superuser administrator: creates the three
#     tables (their table_definition fingerprints equal A's: columns, NOT
#     NULL, defaults with the serial's sequence, identity, check, unique and
#     foreign key constraints, indexes: the manifests are encrypted, so
#     authenticated, and their definitions are recreated as they are, with
#     no problem reported; what an unencrypted manifest may not recreate is
#     test/pgtap/repository_errors.sql), registers the three entity types as
#     A had them, the configuration (same id, PAUSED, created by that role)
#     and the two snapshots (same ids, numbers and chain, COMPLETED, the
#     manifest and checksum equal to A's catalog); the damaged and forged
#     manifests are reported and not imported; one audit entry names the
#     administrator; a second import changes nothing (no row, no audit);
#   * on B: verify_snapshot(INCREMENTAL, 'restore') is valid; a FULL restore
#     of the INCREMENTAL (requested by the administrator, approved by an
#     approver) into a new schema is COMPLETED and every restored table has
#     the rows digest (rows_digest) A's table had right after that backup;
#   * an IN_PLACE restore of the INCREMENTAL fills the imported, empty
#     tables (parents before children: the foreign keys hold) with A's rows
#     digests;
#   * backups after the import: run_backup is refused (55000) while the
#     configuration is PAUSED; once ACTIVE, an INCREMENTAL is COMPLETED on top of the
#     imported chain, every table copied whole (no row index on this
#     server), numbered after the imported snapshots, with A's rows digests;
#   * no server process crashes on the way.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

BASE=$BO_TEST_DIR/restore_dr
A_DIR=$BASE/a
B_DIR=$BASE/b
REPO=$BASE/repo
A_PORT=$((BO_TEST_PORT + 28))
B_PORT=$((BO_TEST_PORT + 29))
ORG=6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b
STORAGE="{\"type\": \"LOCAL_FILESYSTEM\", \"path\": \"$REPO\"}"
trap 'cluster_stop "$A_DIR"; cluster_stop "$B_DIR"' EXIT
plan 43

QA() { q "$A_DIR" "$A_PORT" postgres "$1"; }
QB() { q "$B_DIR" "$B_PORT" postgres "$1"; }
# QB_AS ROLE SQL: one value on B, as ROLE
QB_AS() { cluster_psql "$B_DIR" "$B_PORT" -d postgres -At -c "SET ROLE $1" -c "$2"; }
# errB [ROLE] SQL: "SQLSTATE: message" of the error SQL raises on B, and its hint on a second line
errB() {
	local role=postgres
	[ $# -eq 2 ] && { role=$1; shift; }
	cluster_psql "$B_DIR" "$B_PORT" -d postgres -At -v VERBOSITY=verbose -c "SET ROLE $role" -c "$1" 2>&1 >/dev/null |
		sed -n 's/^ERROR:  //p; s/^HINT:  /hint: /p'
}
# crashes DIR: lines of the server log that tell of a crashed process
crashes() { grep -E 'terminated by signal|terminated by exception' "$1/server.log"; }

mkdir -p "$REPO"
[ "$(id -u)" -eq 0 ] && chown postgres: "$REPO"
cluster_start "$A_DIR" "$A_PORT" "backup_offline.allowed_paths = '$REPO'" || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$A_DIR/keys/k1.key'"
cluster_psql "$A_DIR" "$A_PORT" -d postgres -c "ALTER SYSTEM SET backup_offline.default_key_id = 'k1'" \
	-c "SELECT pg_reload_conf()" -c "CREATE EXTENSION backup_offline" >/dev/null || exit 1

# ---- cluster A: the care schema and its backups ---------------------------
cluster_psql "$A_DIR" "$A_PORT" -d postgres >/dev/null <<'SQL'
CREATE SCHEMA care;
CREATE TABLE care.clients (
	id uuid PRIMARY KEY,
	organization_id uuid NOT NULL,
	full_name text NOT NULL,
	birth_date date,
	status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DISCHARGED')),
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE care.visits (
	id bigserial PRIMARY KEY,
	client_id uuid NOT NULL REFERENCES care.clients (id),
	visit_date date NOT NULL,
	tasks jsonb NOT NULL DEFAULT '[]',
	notes text,
	UNIQUE (client_id, visit_date)
);
CREATE INDEX visits_date_idx ON care.visits (visit_date);
CREATE INDEX visits_tasks_idx ON care.visits USING gin (tasks);
CREATE TABLE care.evv_records (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	visit_id bigint NOT NULL REFERENCES care.visits (id) ON DELETE CASCADE,
	clock_in timestamptz NOT NULL,
	clock_out timestamptz,
	latitude numeric(9,6),
	longitude numeric(9,6),
	billed_amount numeric(12,2) CHECK (billed_amount >= 0),
	CHECK (clock_out IS NULL OR clock_out > clock_in)
);
INSERT INTO care.clients (id, organization_id, full_name, birth_date, status, created_at)
SELECT md5('client ' || i)::uuid, '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b', 'Client ' || i,
	   DATE '1930-01-01' + i * 97, CASE WHEN i % 7 = 0 THEN 'DISCHARGED' ELSE 'ACTIVE' END,
	   TIMESTAMPTZ '2024-01-01 00:00+00' + i * interval '1 hour'
  FROM generate_series(1, 40) i;
INSERT INTO care.visits (client_id, visit_date, tasks, notes)
SELECT md5('client ' || (i % 40 + 1))::uuid, DATE '2024-03-01' + i / 40,
	   jsonb_build_array(jsonb_build_object('task', 'bathing', 'minutes', i % 60), 'meds'),
	   CASE WHEN i % 5 = 0 THEN repeat('Long note about the visit, ' || i || '. ', 300) ELSE 'short note ' || i END
  FROM generate_series(1, 400) i;
INSERT INTO care.evv_records (visit_id, clock_in, clock_out, latitude, longitude, billed_amount)
SELECT v.id, v.visit_date + time '09:00' + (v.id % 30) * interval '1 minute', v.visit_date + time '10:15',
	   30.267153 + v.id / 100000.0, -97.743057 - v.id / 100000.0, round((v.id % 97) * 1.37, 2)
  FROM care.visits v;
SQL
CONFIG=$(cluster_psql "$A_DIR" "$A_PORT" -d postgres -At <<SQL
INSERT INTO backup_offline.organization_member VALUES ('postgres', '$ORG');
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.register_entity('CLIENT', 'care.clients', '{"clientIdColumn": "id", "containsPHI": true}') IS NULL;
SELECT backup_offline.register_entity('VISIT', 'care.visits',
	'{"clientIdColumn": "client_id", "dateColumn": "visit_date", "containsPHI": true}') IS NULL;
SELECT backup_offline.register_entity('EVV_RECORD', 'care.evv_records', '{"dateColumn": "clock_in", "containsFinancial": true}') IS NULL;
SELECT backup_offline.create_backup_configuration('{"name": "dr main",
	"scope": {"includeEntities": ["CLIENT", "VISIT", "EVV_RECORD"]},
	"schedule": {"frequency": "DAILY", "startTime": "02:00", "timezone": "UTC"}, "retention": {"retentionDays": 30},
	"storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "$REPO"}, "checksumAlgorithm": "BLAKE3"}');
SQL
)
CONFIG=$(echo "$CONFIG" | tail -1)
QA "UPDATE backup_offline.backup_configuration SET next_backup_at = 'infinity' WHERE id = '$CONFIG'" >/dev/null
is "$(QA "SELECT encryption_enabled || ' ' || checksum_algorithm FROM backup_offline.backup_configuration WHERE id = '$CONFIG'")" \
	"true BLAKE3" "A: the care schema, its three entity types and an encrypted BLAKE3 configuration"

# backup TYPE: the snapshot id on A (errors on stderr)
backup() {
	cluster_psql "$A_DIR" "$A_PORT" -d postgres -At -c "SET client_min_messages = warning" \
		-c "SELECT backup_offline.run_backup('$CONFIG', '$1')"
}
FULL=$(backup FULL)
cluster_psql "$A_DIR" "$A_PORT" -d postgres >/dev/null <<'SQL'
UPDATE care.visits SET notes = notes || ' Amended after review.', tasks = tasks || '["laundry"]' WHERE id % 10 = 0;
DELETE FROM care.evv_records WHERE id % 9 = 0;
UPDATE care.evv_records SET billed_amount = billed_amount + 0.05 WHERE id % 11 = 0;
INSERT INTO care.clients (id, organization_id, full_name) VALUES (md5('new client')::uuid, '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b', 'New Client');
INSERT INTO care.visits (client_id, visit_date, notes) VALUES (md5('new client')::uuid, DATE '2024-04-01', repeat('first visit ', 500));
SQL
INCR=$(backup INCREMENTAL)
is "$(QA "SELECT string_agg(backup_type || ' ' || status || ' ' || coalesce((parent_snapshot_id = '$FULL')::text, '-'), ', ' ORDER BY snapshot_number)
	FROM backup_offline.backup_snapshot WHERE id IN ('${FULL:-00000000-0000-0000-0000-000000000000}', '${INCR:-00000000-0000-0000-0000-000000000000}')")" \
	"FULL COMPLETED -, INCREMENTAL COMPLETED true" "A: a FULL, then an INCREMENTAL on top of it"
# A's tables right after the INCREMENTAL: what a restore of it must give
DIGESTS=$(QA "SELECT string_agg(backup_offline.rows_digest(('care.' || t)::regclass)::text, ' ' ORDER BY t)
	FROM unnest(ARRAY['clients', 'evv_records', 'visits']) t")
FINGERPRINTS=$(QA "SELECT string_agg(backup_offline.table_definition(('care.' || t)::regclass)->>'fingerprint', ' ' ORDER BY t)
	FROM unnest(ARRAY['clients', 'evv_records', 'visits']) t")
REGISTRY="SELECT string_agg(concat_ws(' ', entity_type, table_name::text, array_to_string(key_columns, ','), client_id_column,
	date_column, contains_phi, contains_financial), ', ' ORDER BY entity_type) FROM backup_offline.entity_registry"
A_REGISTRY=$(QA "$REGISTRY")
A_ROWS=$(QA "SELECT string_agg(snapshot_number || ' ' || backup_type || ' ' || (data_metrics->>'rowCount') || ' ' || (data_metrics->>'storedBytes'), ', '
	ORDER BY snapshot_number) FROM backup_offline.backup_snapshot")
A_MANIFESTS=$(QA "SELECT string_agg(id || ' ' || snapshot_number || ' ' || md5(manifest::text) || ' ' || checksum, ', ' ORDER BY snapshot_number)
	FROM backup_offline.backup_snapshot")
Q_ALL=$(QA "SELECT (SELECT count(*) FROM care.clients) || ' ' || (SELECT count(*) FROM care.visits) || ' ' || (SELECT count(*) FROM care.evv_records)")
diag "A after the INCREMENTAL: clients, visits, evv_records: $Q_ALL"

# the second INCREMENTAL, to be damaged
QA "UPDATE care.clients SET status = 'DISCHARGED' WHERE full_name = 'Client 3'" >/dev/null
INCR2=$(backup INCREMENTAL)
is "$(QA "SELECT backup_type || ' ' || status FROM backup_offline.backup_snapshot WHERE id = '${INCR2:-00000000-0000-0000-0000-000000000000}'")" \
	"INCREMENTAL COMPLETED" "A: a second INCREMENTAL"
MANIFEST2="$REPO/backup_offline/$CONFIG/$INCR2/backup_manifest"
SUM_BEFORE=$(as_pg md5sum "$MANIFEST2" | cut -d' ' -f1)
as_pg python3 -c "
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(0, 2)
    middle = f.tell() // 2
    f.seek(middle)
    b = f.read(1)
    f.seek(middle)
    f.write(bytes([b[0] ^ 0x01]))" "$MANIFEST2"
SUM_AFTER=$(as_pg md5sum "$MANIFEST2" | cut -d' ' -f1)
ok $([ -n "$SUM_BEFORE" ] && [ "$SUM_BEFORE" != "$SUM_AFTER" ] && echo 0 || echo 1) \
	"one byte in the middle of the second INCREMENTAL's stored manifest flipped"
# a forged manifest: the INCREMENTAL's, under a new snapshot id with another
# row count, encrypted with the key, its self-checksum left as it was
FORGED=5f0f0f0f-0000-4000-8000-00000000f0f0
QA "SELECT backup_offline.archive_put('$STORAGE', 'backup_offline/$CONFIG/$FORGED/backup_manifest',
	convert_to(replace(replace(convert_from(backup_offline.archive_get('$STORAGE', 'backup_offline/$CONFIG/$INCR/backup_manifest'), 'UTF8'),
		'$INCR', '$FORGED'), '\"rowCount\": 41,', '\"rowCount\": 42,'), 'UTF8'))->>'keyId'" >/dev/null
is "$(as_pg ls "$REPO/backup_offline/$CONFIG/$FORGED" 2>&1 | tr '\n' ' ')" "backup_manifest backup_manifest.key.k1 " \
	"a forged manifest (another snapshot id and row count, the old self-checksum) written with the key"

# ---- cluster B: from scratch, no key yet -----------------------------------
cluster_start "$B_DIR" "$B_PORT" "backup_offline.allowed_paths = '$REPO'" || exit 1
cluster_psql "$B_DIR" "$B_PORT" -d postgres >/dev/null <<SQL || exit 1
CREATE EXTENSION backup_offline;
CREATE ROLE dr_admin IN ROLE backup_offline_admin;
GRANT CREATE ON DATABASE postgres TO dr_admin;
CREATE ROLE dr_approver IN ROLE backup_offline_approver;
INSERT INTO backup_offline.organization_member VALUES ('dr_approver', '$ORG');
SQL
ok $? "B: a fresh cluster, the extension, an administrator (dr_admin) and an approver; no key file"

LIST="SELECT string_agg(concat_ws(' ', coalesce(snapshot_number, '?'), coalesce(backup_type, '?'), manifest_valid, in_catalog), ', '
	ORDER BY snapshot_time, manifest_object) FROM backup_offline.repository_snapshots('$STORAGE')"
is "$(QB_AS dr_admin "SELECT count(*) || ' ' || count(*) FILTER (WHERE manifest_valid)
	|| ' ' || count(*) FILTER (WHERE problem LIKE '%missing from backup_offline.key_directory: \"k1\"%' AND key_ids = '{k1}')
	FROM backup_offline.repository_snapshots('$STORAGE')")" "4 0 4" \
	"without the key: repository_snapshots lists the four manifests, none verified, each naming the missing key k1"
AUDITED=$(QB "SELECT count(*) FROM backup_offline.audit_log")
like "$(errB dr_admin "SELECT backup_offline.import_repository('$STORAGE')")" \
	"55000: no snapshot manifest in storage could be read: *hint: Copy the key file of the cluster that wrote the backups (key id \"k1\") into backup_offline.key_directory." \
	"without the key: import_repository fails (55000) and says which key file to copy"
is "$(QB "SELECT (SELECT count(*) FROM backup_offline.backup_configuration) || ' ' || (SELECT count(*) FROM backup_offline.entity_registry)
	|| ' ' || (SELECT count(*) FROM backup_offline.backup_snapshot) || ' ' || (SELECT count(*) FROM backup_offline.audit_log)
	|| ' ' || (to_regnamespace('care') IS NULL)")" "0 0 0 ${AUDITED:-(no count)} true" \
	"and nothing changed: no configuration, entity type, snapshot, audit entry or schema"

# ---- only the key file is copied ------------------------------------------
as_pg cp -p "$A_DIR/keys/k1.key" "$B_DIR/keys/k1.key"
is "$(as_pg ls "$B_DIR/keys")" "k1.key" "the key file, and nothing else, copied from A to B"

is "$(QB_AS dr_admin "$LIST")" \
	"BKP-00000001 FULL t f, BKP-00000002 INCREMENTAL t f, ? ? f f, ? ? f f" \
	"repository_snapshots: the FULL and the INCREMENTAL verified, not in B's catalog; two manifests not verified"
is "$(QB_AS dr_admin "SELECT string_agg(snapshot_number || ' ' || backup_type || ' ' || row_count || ' ' || stored_bytes, ', ' ORDER BY snapshot_number)
	FROM backup_offline.repository_snapshots('$STORAGE') WHERE manifest_valid")" "${A_ROWS:-(A has none)}" \
	"their row counts and stored bytes are those A's catalog recorded"
is "$(QB_AS dr_admin "SELECT string_agg(concat_ws(' ', configuration_id = '$CONFIG', configuration_name, organization_id,
	parent_snapshot_id = '$FULL', base_snapshot_id = '$FULL', table_count, missing_objects, key_ids::text), ', ' ORDER BY snapshot_number)
	FROM backup_offline.repository_snapshots('$STORAGE') WHERE manifest_valid")" \
	"t dr main $ORG t 3 0 {k1}, t dr main $ORG t t 3 0 {k1}" \
	"and their configuration, organization, chain, tables, objects (none missing) and key"
like "$(QB_AS dr_admin "SELECT problem FROM backup_offline.repository_snapshots('$STORAGE') WHERE snapshot_id = '$INCR2'")" \
	"*chunk*" "the damaged manifest is listed with the archive reader's problem (a failing chunk)"
like "$(QB_AS dr_admin "SELECT problem FROM backup_offline.repository_snapshots('$STORAGE') WHERE snapshot_id = '$FORGED'")" \
	"*does not match its manifest checksum*" "the forged manifest is listed as not matching its self-checksum"

# ---- the import -------------------------------------------------------------
QB_AS dr_admin "SELECT backup_offline.import_repository('$STORAGE')" >"$BASE/import.json" 2>&1
IMPORT=$(cat "$BASE/import.json")
is "$(QB "SELECT concat_ws(' ', r->'snapshotsImported', r->'snapshotsInvalid', r->'snapshotsSkipped', r->'snapshotsNotImported',
	r->'tablesCreated', r->'schemasCreated', r->'configurations'->0->>'result', jsonb_array_length(r->'entityTypes'))
	FROM (SELECT \$j\$$IMPORT\$j\$::jsonb AS r) x" 2>&1)" \
	'2 2 0 0 ["care.clients", "care.evv_records", "care.visits"] ["care"] imported 3' \
	"import_repository: two snapshots imported, two invalid; schema care and its three tables created; the configuration and three entity types"
is "$(QB "SELECT string_agg(p->>'object', ', ' ORDER BY p->>'object') FROM jsonb_array_elements(\$j\$$IMPORT\$j\$::jsonb->'problems') p" 2>&1)" \
	"$(QB "SELECT string_agg(x, ', ' ORDER BY x) FROM unnest(ARRAY['backup_offline/$CONFIG/$FORGED/backup_manifest',
		'backup_offline/$CONFIG/$INCR2/backup_manifest']) x")" \
	"its problems: exactly the two manifests that did not verify"
is "$(QB "SELECT string_agg(backup_offline.table_definition(('care.' || t)::regclass)->>'fingerprint', ' ' ORDER BY t)
	FROM unnest(ARRAY['clients', 'evv_records', 'visits']) t")" "${FINGERPRINTS:-(A has none)}" \
	"the tables created on B have A's definitions (table_definition fingerprints: columns, defaults, identity, constraints with foreign keys, indexes)"
is "$(QB "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner), ',') FROM pg_class c WHERE c.relnamespace = 'care'::regnamespace")" \
	"dr_admin" "they (and the serial's sequence) are owned by the administrator who imported"
is "$(QB "$REGISTRY")" "${A_REGISTRY:-(A has none)}" \
	"the entity types registered as A had them (table, key, client and date columns, PHI and financial flags)"
is "$(QB "SELECT concat_ws(' ', id = '$CONFIG', name, status, created_by_role, storage_destination->>'path' = '$REPO', next_backup_at IS NULL,
	last_backup_at = (SELECT max(snapshot_time) FROM backup_offline.backup_snapshot)) FROM backup_offline.backup_configuration")" \
	"t dr main PAUSED dr_admin t t t" \
	"the configuration: A's id and name, PAUSED (never scheduled), created by dr_admin, on the repository, last backup the INCREMENTAL"
is "$(QB "SELECT string_agg(id || ' ' || snapshot_number || ' ' || md5(manifest::text) || ' ' || checksum, ', ' ORDER BY snapshot_number)
	FROM backup_offline.backup_snapshot")" "${A_MANIFESTS:-(A has none)}" \
	"the snapshots: A's ids and numbers, with the manifest and checksum A's catalog holds"
is "$(QB "SELECT string_agg(concat_ws(' ', status, backup_type, coalesce((parent_snapshot_id = '$FULL')::text, '-'), base_snapshot_id = '$FULL',
	trigger, requested_by, consistency->>'changeLsn' IS NULL), ', ' ORDER BY snapshot_number) FROM backup_offline.backup_snapshot")" \
	"COMPLETED FULL - t MANUAL dr_admin t, COMPLETED INCREMENTAL true t MANUAL dr_admin t" \
	"both COMPLETED, the chain kept, requested by dr_admin, without A's change threshold"
is "$(QB "SELECT count(*) FROM backup_offline.backup_snapshot WHERE id IN ('$INCR2', '$FORGED')")" "0" \
	"the damaged and the forged manifest were not imported"
is "$(QB "SELECT string_agg(actor_role || ' ' || (details->>'snapshotsImported'), ', ') FROM backup_offline.audit_log WHERE action = 'import_repository'")" \
	"dr_admin 2" "one audit entry for the import, naming dr_admin"

STATE="SELECT (SELECT count(*) FROM backup_offline.audit_log) || ' ' || (SELECT string_agg(version::text, ',') FROM backup_offline.backup_configuration)
	|| ' ' || (SELECT count(*) FROM backup_offline.entity_registry) || ' ' || (SELECT count(*) FROM backup_offline.backup_snapshot)
	|| ' ' || (SELECT count(*) FROM pg_class WHERE relnamespace = 'care'::regnamespace)"
BEFORE=$(QB "$STATE")
AGAIN=$(QB_AS dr_admin "SELECT concat_ws(' ', r->'snapshotsImported', r->'snapshotsSkipped', r->'tablesCreated', r->'configurations'->0->>'result',
	r->'entityTypes', r->'tablesExisting') FROM backup_offline.import_repository('$STORAGE') r" 2>&1)
is "$AGAIN" '0 2 [] existing [] ["care.clients", "care.evv_records", "care.visits"]' \
	"a second import: both snapshots skipped, nothing created"
is "$(QB "$STATE")" "${BEFORE:-(no state)}" "and nothing changed: audit entries, configuration version, registry, snapshots, tables"
is "$(QB_AS dr_admin "$LIST")" \
	"BKP-00000001 FULL t t, BKP-00000002 INCREMENTAL t t, ? ? f f, ? ? f f" \
	"repository_snapshots now finds the two verified snapshots in the catalog"

# ---- verify and restore on B -------------------------------------------------
is "$(QB "SELECT concat_ws(' ', v->>'valid', (SELECT string_agg(t->>'equal', ',') FROM jsonb_array_elements(v->'tables') t))
	FROM backup_offline.verify_snapshot('$INCR', 'restore') v" 2>&1)" "true true,true,true" \
	"verify_snapshot(INCREMENTAL, 'restore') on B: valid, every table equal to the manifest"
RID=$(QB_AS dr_admin "SELECT backup_offline.create_restore('{\"snapshotId\": \"$INCR\", \"restoreType\": \"FULL\",
	\"destination\": {\"schema\": \"dr_restored\"}}')" 2>&1)
QB_AS dr_approver "SELECT backup_offline.approve_restore('$RID', 'disaster recovery drill')" >/dev/null 2>&1
RUN=$(cluster_psql "$B_DIR" "$B_PORT" -d postgres -At -c "SET ROLE dr_admin" -c "SELECT backup_offline.run_restore('$RID')->>'status'" 2>&1)
is "$RUN $(QB "SELECT status || ' ' || approved_by FROM backup_offline.restore_operation WHERE id = '$RID'" 2>&1)" \
	"COMPLETED COMPLETED dr_approver" "a FULL restore of the INCREMENTAL, approved by dr_approver, COMPLETED into schema dr_restored"
is "$(QB "SELECT string_agg(backup_offline.rows_digest(('dr_restored.' || t)::regclass)::text, ' ' ORDER BY t)
	FROM unnest(ARRAY['clients', 'evv_records', 'visits']) t" 2>&1)" "${DIGESTS:-(A has none)}" \
	"the restored tables have the rows digests A's tables had right after the INCREMENTAL"
is "$(QB "SELECT (SELECT count(*) FROM dr_restored.clients) || ' ' || (SELECT count(*) FROM dr_restored.visits) || ' ' || (SELECT count(*) FROM dr_restored.evv_records)")" \
	"$Q_ALL" "and the same row counts"

# the imported (empty) tables filled in place from the chain: parents before
# children, so the foreign keys between them hold
RID=$(QB_AS dr_admin "SELECT backup_offline.create_restore('{\"snapshotId\": \"$INCR\", \"restoreType\": \"FULL\",
	\"destination\": {\"type\": \"IN_PLACE\"}}')" 2>&1)
QB_AS dr_approver "SELECT backup_offline.approve_restore('$RID', 'disaster recovery: fill the tables')" >/dev/null 2>&1
RUN=$(cluster_psql "$B_DIR" "$B_PORT" -d postgres -At -c "SET ROLE dr_admin" -c "SELECT backup_offline.run_restore('$RID')->'metrics'->>'insertedRows'" 2>&1)
is "$RUN" "$(echo "$Q_ALL" | awk '{print $1 + $2 + $3}')" "an IN_PLACE restore of the INCREMENTAL into the imported tables inserted every row"
is "$(QB "SELECT string_agg(backup_offline.rows_digest(('care.' || t)::regclass)::text, ' ' ORDER BY t)
	FROM unnest(ARRAY['clients', 'evv_records', 'visits']) t" 2>&1)" "${DIGESTS:-(A has none)}" \
	"B's care tables now have the rows digests A's had right after the INCREMENTAL"

# ---- backups after the import -----------------------------------------------
like "$(errB dr_admin "SELECT backup_offline.run_backup('$CONFIG', 'INCREMENTAL')")" \
	"55000: backup configuration \"dr main\" is PAUSED*" "run_backup on B while the imported configuration is PAUSED: 55000"
cluster_psql "$B_DIR" "$B_PORT" -d postgres >/dev/null <<SQL
ALTER SYSTEM SET backup_offline.default_key_id = 'k1';
SELECT pg_reload_conf();
SET ROLE dr_admin;
SELECT backup_offline.set_backup_configuration_status('$CONFIG', 'ACTIVE', 'B backs up now');
RESET ROLE;
UPDATE backup_offline.backup_configuration SET next_backup_at = 'infinity' WHERE id = '$CONFIG';
SELECT setval('care.visits_id_seq', (SELECT max(id) FROM care.visits));
SQL
is "$(QB "SELECT status FROM backup_offline.backup_configuration WHERE id = '$CONFIG'")" "ACTIVE" \
	"the configuration reactivated on B (it validates there)"
NEXT=$(cluster_psql "$B_DIR" "$B_PORT" -d postgres -At -c "SET client_min_messages = warning" \
	-c "SELECT backup_offline.run_backup('$CONFIG', 'INCREMENTAL')" 2>&1)
is "$(QB "SELECT concat_ws(' ', status, backup_type, parent_snapshot_id = '$INCR', snapshot_number > 'BKP-00000002')
	FROM backup_offline.backup_snapshot WHERE id = '$NEXT'" 2>&1)" "COMPLETED INCREMENTAL t t" \
	"an INCREMENTAL on B: COMPLETED on top of the imported chain, numbered after the imported snapshots"
is "$(QB "SELECT string_agg(DISTINCT (t->>'change') || ': ' || (t->>'changeReason'), '; ')
	FROM backup_offline.backup_snapshot s, jsonb_array_elements(s.manifest->'tables') t WHERE s.id = '$NEXT'" 2>&1)" \
	"whole: the row index of the parent is missing on this server" \
	"it copied every table whole: B has no row index of the imported snapshots"
is "$(QB "SELECT string_agg(jsonb_build_object('format', t->'format', 'rowCount', t->'rowCount', 'rowsDigest', t->'rowsDigest')::text, ' '
	ORDER BY t->>'name') FROM backup_offline.backup_snapshot s, jsonb_array_elements(s.manifest->'tables') t WHERE s.id = '$NEXT'" 2>&1)" \
	"${DIGESTS:-(A has none)}" "its rows digests are A's as of the INCREMENTAL"
is "$(QB "SELECT backup_offline.verify_snapshot('$NEXT', 'restore')->>'valid'" 2>&1)" "true" \
	"and it verifies at level restore"

# ---- the guards -------------------------------------------------------------
like "$(errB "INSERT INTO backup_offline.backup_snapshot (organization_id, configuration_id, backup_type, requested_type, status,
	trigger, requested_by, storage_location, manifest, checksum, checksum_algorithm, encrypted, compressed)
	VALUES ('$ORG', '$CONFIG', 'FULL', 'FULL', 'COMPLETED', 'MANUAL', 'postgres', '{}', '{}', 'x', 'BLAKE3', true, true)")" \
	"23514: invalid status: a new snapshot cannot be COMPLETED*" \
	"outside import_repository, even a superuser cannot insert a COMPLETED snapshot (backup_snapshot_guard)"
is "$(QB "SELECT backup_offline.repository_importer() IS NULL")" "t" "repository_importer() is NULL outside an import"

# ---- no crash ---------------------------------------------------------------
CRASHED="$(crashes "$A_DIR")$(crashes "$B_DIR")"
[ -n "$CRASHED" ] && diag "$CRASHED"
ok $([ -z "$CRASHED" ] && echo 0 || echo 1) "no server process of A or B crashed"

exit $((TAP_FAILED > 0))
