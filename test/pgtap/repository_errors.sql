-- Disaster recovery functions (repository_snapshots, import_repository,
-- repository_importer; src/catalog/77_repository.sql,
-- src/restore/repository.c): argument errors, privileges, which manifests
-- each role sees, and the import's rules on a repository written here.
--
-- The repository is written with archive_put (superuser, unencrypted
-- objects) under a directory of its own below backup_offline.allowed_paths:
-- puts are not transactional, so the directory's name is unique per run.
-- Manifests are built as backup_offline writes them, with their trailing
-- SHA-256 self-checksum.  The end-to-end path (real backups, encryption, a
-- second cluster, restores) is test/scenario/restore_dr.sh.
--
-- A second repository (below "what a manifest may not make the import do")
-- holds manifests a stranger could have written, since they are not
-- encrypted: one naming a table the importing administrator may not read,
-- one naming a system catalog, one whose configuration names another
-- organization than the manifest, one with a default, checks and an index
-- calling functions outside pg_catalog or volatile ones, one with a
-- generated column, one whose entity type the registry maps to another
-- table; and, in a third, one configuration whose two manifests name two
-- organizations.
BEGIN;
SELECT plan(54);
\ir lib/errors.psql
-- pgTAP keeps its state in temporary tables: let the roles under test write them
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA %1$I TO PUBLIC',
				   pg_my_temp_schema()::regnamespace);
END $$;

\set org_a 'aaaaaaaa-0000-4000-8000-0000000000a3'
\set org_b 'bbbbbbbb-0000-4000-8000-0000000000b3'
\set cfg_a 'c0000000-0000-4000-8000-0000000000a1'
\set cfg_b 'c0000000-0000-4000-8000-0000000000b1'
\set cfg_c 'c0000000-0000-4000-8000-0000000000c1'
\set cfg_d 'c0000000-0000-4000-8000-0000000000d1'
\set snap_a1 '50000000-0000-4000-8000-0000000000a1'
\set snap_b1 '50000000-0000-4000-8000-0000000000b1'
\set snap_b2 '50000000-0000-4000-8000-0000000000b2'
\set snap_c1 '50000000-0000-4000-8000-0000000000c1'
\set snap_d1 '50000000-0000-4000-8000-0000000000d1'
\set missing '50000000-0000-4000-8000-00000000dead'

SELECT current_setting('backup_offline.allowed_paths') AS allowed \gset
SELECT format('%s/repository_errors_%s_%s', :'allowed', pg_backend_pid(), (extract(epoch FROM clock_timestamp()) * 1000)::bigint) AS repo \gset
SELECT jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', :'repo') AS storage,
	   jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', :'repo' || '/empty') AS empty \gset

CREATE SCHEMA t_ri;
CREATE TABLE t_ri.items (id bigint PRIMARY KEY, label text);
SELECT backup_offline.register_entity('RI_ITEM', 't_ri.items', '{}') IS NOT NULL AS registered \gset

CREATE ROLE t_ri_adm IN ROLE backup_offline_admin;
CREATE ROLE t_ri_op_a IN ROLE backup_offline_operator;
CREATE ROLE t_ri_aud IN ROLE backup_offline_auditor;
CREATE ROLE t_ri_app_a IN ROLE backup_offline_app;
CREATE ROLE t_ri_appr IN ROLE backup_offline_approver;
CREATE ROLE t_ri_nobody;
INSERT INTO backup_offline.organization_member (role_name, organization_id) VALUES
	('t_ri_op_a', :'org_a'), ('t_ri_app_a', :'org_a'), ('t_ri_appr', :'org_a');

-- a configuration as configuration_to_json gives it
CREATE FUNCTION pg_temp.config_json(org uuid, name text, repo text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('name', name, 'organizationId', org, 'configType', 'FULL',
		'schedule', '{"frequency": "DAILY", "startTime": "02:00", "timezone": "UTC"}'::jsonb,
		'scope', '{"includeEntities": ["RI_ITEM"]}'::jsonb, 'retention', '{"retentionDays": 30}'::jsonb,
		'storageDestination', jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', repo),
		'encryptionEnabled', false, 'compressionEnabled', false, 'integrityCheckEnabled', true,
		'checksumAlgorithm', 'BLAKE3', 'notificationSettings', '{}'::jsonb, 'complianceRequirements', '[]'::jsonb,
		'status', 'ACTIVE')
$$;
-- a snapshot manifest as backup_offline writes it (no tables unless given), with its
-- self-checksum; config_org: another organization for its configuration
CREATE FUNCTION pg_temp.manifest(cfg uuid, snap uuid, org uuid, num text, parent uuid, name text, repo text,
								 tables jsonb DEFAULT '[]', config_org uuid DEFAULT NULL)
RETURNS bytea LANGUAGE sql AS $$
	WITH b AS (
		SELECT '{"manifestVersion": 1, "format": "backup_offline snapshot manifest", "snapshotId": "' || snap
			|| '", "snapshotNumber": "' || num || '", "backupType": "' || CASE WHEN parent IS NULL THEN 'FULL' ELSE 'INCREMENTAL' END
			|| '", "parentSnapshotId": ' || coalesce('"' || parent || '"', 'null')
			|| ', "baseSnapshotId": "' || coalesce(parent, snap) || '", "configurationId": "' || cfg
			|| '", "organizationId": "' || org || '", "configuration": ' || pg_temp.config_json(coalesce(config_org, org), name, repo)::text
			|| ', "snapshotTime": "2025-02-01 10:00:00+00", "startedAt": "2025-02-01 09:59:59+00"'
			|| ', "consistency": {"xmin": 1, "xmax": 1, "lsn": "0/0", "changeLsn": null}, "compression": "none"'
			|| ', "encryption": "none", "keyId": null, "digestAlgorithm": "BLAKE3"'
			|| ', "totals": {"tableCount": ' || jsonb_array_length(tables) || ', "rowCount": 0, "objectCount": 0, "storedBytes": 0}'
			|| ', "tables": ' || tables::text AS body)
	SELECT convert_to(body || ', "manifestChecksum": "' || encode(backup_offline.digest(convert_to(body, 'UTF8'), 'SHA256'), 'hex')
					  || '"}' || E'\n', 'UTF8')
	  FROM b
$$;
CREATE FUNCTION pg_temp.put(cfg uuid, snap uuid, data bytea, repo text) RETURNS void LANGUAGE sql AS $$
	SELECT NULL::void FROM backup_offline.archive_put(jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', repo),
		format('backup_offline/%s/%s/backup_manifest', cfg, snap), data, '{"cipher": "none"}')
$$;
-- what the catalog holds, to see that failed calls change nothing
CREATE FUNCTION pg_temp.catalog_state() RETURNS text LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM backup_offline.backup_configuration) || ' ' || (SELECT count(*) FROM backup_offline.entity_registry)
		|| ' ' || (SELECT count(*) FROM backup_offline.backup_snapshot) || ' ' || (SELECT count(*) FROM backup_offline.audit_pending)
$$;
CREATE FUNCTION pg_temp.listing(storage jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(snapshot_id::text, ' ' ORDER BY snapshot_id), '(none)')
	  FROM backup_offline.repository_snapshots(storage)
$$;

-- the repository: A's and B's FULL, B's INCREMENTAL whose parent is not
-- there, and two objects that are not manifests: one under configuration C,
-- which the catalog holds for organization A, one under D, unknown
SELECT pg_temp.put(:'cfg_a', :'snap_a1', pg_temp.manifest(:'cfg_a', :'snap_a1', :'org_a', 'BKP-00000101', NULL, 'RI A', :'repo'), :'repo');
SELECT pg_temp.put(:'cfg_b', :'snap_b1', pg_temp.manifest(:'cfg_b', :'snap_b1', :'org_b', 'BKP-00000201', NULL, 'RI B', :'repo'), :'repo');
SELECT pg_temp.put(:'cfg_b', :'snap_b2', pg_temp.manifest(:'cfg_b', :'snap_b2', :'org_b', 'BKP-00000202', :'missing', 'RI B', :'repo'), :'repo');
SELECT pg_temp.put(:'cfg_c', :'snap_c1', convert_to('not a manifest', 'UTF8'), :'repo');
SELECT pg_temp.put(:'cfg_d', :'snap_d1', convert_to('{"manifestVersion": 1}', 'UTF8'), :'repo');
INSERT INTO backup_offline.backup_configuration (id, organization_id, name, schedule, retention, storage_destination, scope)
VALUES (:'cfg_c', :'org_a', 'RI C', '{"frequency": "DAILY", "startTime": "02:00"}', '{}', :'storage', '{"includeEntities": ["RI_ITEM"]}');
SELECT pg_temp.catalog_state() AS state0 \gset

-- ---- argument errors ------------------------------------------------------------
SELECT throws_ok($$SELECT * FROM backup_offline.repository_snapshots(NULL)$$, '22023', 'storageDestination is required',
	'repository_snapshots: a NULL storage is refused');
SELECT throws_ok($$SELECT backup_offline.import_repository(NULL)$$, '22023', 'storageDestination is required',
	'import_repository: a NULL storage is refused');
SELECT throws_ok($$SELECT * FROM backup_offline.repository_snapshots('[]')$$, '22023', 'storageDestination must be a JSON object',
	'repository_snapshots: storage must be an object');
SELECT throws_ok($$SELECT backup_offline.import_repository('{"type": "FTP", "path": "/x"}')$$, '22023',
	'invalid storageDestination.type: "FTP"', 'import_repository: an unknown type is named');
SELECT throws_ok($$SELECT backup_offline.import_repository('{"type": "LOCAL_FILESYSTEM"}')$$, '22023',
	'storageDestination.path is required', 'import_repository: the path is required');
SELECT throws_ok($$SELECT * FROM backup_offline.repository_snapshots('{"type": "LOCAL_FILESYSTEM", "path": "/etc"}')$$, '22023',
	'invalid storageDestination.path: "/etc" is not under an allowed backup directory',
	'repository_snapshots: a path outside backup_offline.allowed_paths is refused');
SELECT throws_ok(format('SELECT backup_offline.import_repository(%L)', jsonb_build_object('type', 'NETWORK_SHARE', 'path', :'repo' || '/../..')),
	'22023', format('invalid storageDestination.path: "%s/../.." contains a "." or ".." component', :'repo'),
	'import_repository: a path that climbs out with .. is refused');
SELECT throws_ok(format('SELECT * FROM backup_offline.repository_snapshots(%L)', :'storage'::jsonb || '{"bucket": "x"}'), '22023',
	'unknown key storageDestination.bucket', 'repository_snapshots: an unknown key is refused, not dropped');
SELECT throws_ok($$SELECT backup_offline.import_repository('{"type": "AWS_S3", "bucket": "care-backups"}')$$, '0A000',
	'storage type "AWS_S3" has no driver in this version', 'import_repository: a destination type without a driver');
SELECT is(pg_temp.error_of(format('SELECT backup_offline.import_repository(%L)', :'empty')),
	'42704: storage holds no snapshot manifest to import / Give the storageDestination the backups were written to: the directory that holds backup_offline/.',
	'import_repository of a directory without manifests: 42704 with a hint');
SELECT is(pg_temp.listing(:'empty'), '(none)', 'repository_snapshots of a directory without manifests: no rows');
SELECT is(pg_temp.catalog_state(), :'state0', 'the refused calls changed nothing');

-- ---- privileges ------------------------------------------------------------------
SELECT is((SELECT string_agg(format('%s %s %s %s', r,
			has_function_privilege(r, 'backup_offline.repository_snapshots(jsonb)', 'EXECUTE'),
			has_function_privilege(r, 'backup_offline.import_repository(jsonb)', 'EXECUTE'),
			has_function_privilege(r, 'backup_offline.repository_importer()', 'EXECUTE')), ', ' ORDER BY r)
		   FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
							 'backup_offline_auditor', 'backup_offline_app', 't_ri_nobody']) r),
	'backup_offline_admin t t t, backup_offline_app f f t, backup_offline_approver f f t, '
	'backup_offline_auditor t f t, backup_offline_operator t f t, t_ri_nobody f f f',
	'EXECUTE: listing for admin, operator, auditor; import for admin only; the import flag readable by the roles whose writes the guards check');
SET LOCAL ROLE t_ri_app_a;
SELECT throws_ok(format('SELECT * FROM backup_offline.repository_snapshots(%L)', :'storage'), '42501',
	'permission denied for function repository_snapshots', 'the application may not list the repository');
RESET ROLE;
SET LOCAL ROLE t_ri_nobody;
SELECT throws_ok(format('SELECT * FROM backup_offline.repository_snapshots(%L)', :'storage'), '42501', NULL,
	'a role outside the extension''s roles may not list it');
RESET ROLE;
SET LOCAL ROLE t_ri_op_a;
SELECT throws_ok(format('SELECT backup_offline.import_repository(%L)', :'storage'), '42501',
	'permission denied for function import_repository', 'an operator may not import');
RESET ROLE;
SET LOCAL ROLE t_ri_aud;
SELECT throws_ok(format('SELECT backup_offline.import_repository(%L)', :'storage'), '42501',
	'permission denied for function import_repository', 'an auditor may not import');
RESET ROLE;
SET LOCAL ROLE t_ri_appr;
SELECT throws_ok(format('SELECT backup_offline.import_repository(%L)', :'storage'), '42501',
	'permission denied for function import_repository', 'an approver may not import');
RESET ROLE;
SELECT is(pg_temp.catalog_state(), :'state0', 'the refused imports changed nothing');

-- ---- who sees what ------------------------------------------------------------------
SELECT is(pg_temp.listing(:'storage'), format('%s %s %s %s %s', :'snap_a1', :'snap_b1', :'snap_b2', :'snap_c1', :'snap_d1'),
	'the superuser sees every manifest');
SELECT is((SELECT string_agg(concat_ws(' ', snapshot_number, manifest_valid, organization_id), ', ' ORDER BY snapshot_id)
			 FROM backup_offline.repository_snapshots(:'storage')),
	format('BKP-00000101 t %s, BKP-00000201 t %s, BKP-00000202 t %s, f %s, f', :'org_a', :'org_b', :'org_b', :'org_a'),
	'three manifests verify; the two others do not (C''s organization comes from the catalog, D''s is unknown)');
SET LOCAL ROLE t_ri_aud;
SELECT is(pg_temp.listing(:'storage'), format('%s %s %s %s %s', :'snap_a1', :'snap_b1', :'snap_b2', :'snap_c1', :'snap_d1'),
	'an auditor sees every organization''s manifests, also those that do not verify');
RESET ROLE;
SET LOCAL ROLE t_ri_op_a;
SELECT is(pg_temp.listing(:'storage'), format('%s %s', :'snap_a1', :'snap_c1'),
	'an operator of organization A sees A''s manifest and the unverified one of A''s catalog configuration; nothing of B, nor the unknown one');
SET LOCAL backup_offline.organization_id = :'org_b';
SELECT throws_ok(format('SELECT * FROM backup_offline.repository_snapshots(%L)', :'storage'), '42501',
	'role "t_ri_op_a" is not a member of organization bbbbbbbb-0000-4000-8000-0000000000b3',
	'that operator naming organization B gets an error, not B''s manifests');
RESET backup_offline.organization_id;
RESET ROLE;
SET LOCAL ROLE t_ri_adm;
SET LOCAL backup_offline.organization_id = :'org_b';
SELECT is(pg_temp.listing(:'storage'), format('%s %s', :'snap_b1', :'snap_b2'),
	'an administrator working on organization B sees B''s manifests only');
SELECT is((SELECT concat_ws(' ', snapshot_number, backup_type, configuration_id, configuration_name, parent_snapshot_id,
				base_snapshot_id, snapshot_time, table_count, row_count, stored_bytes > 0, key_ids, missing_objects,
				problem IS NULL, in_catalog)
			 FROM backup_offline.repository_snapshots(:'storage') WHERE snapshot_id = :'snap_b2'),
	format('BKP-00000202 INCREMENTAL %s RI B %s %s 2025-02-01 10:00:00+00 0 0 t {} 0 t f', :'cfg_b', :'missing', :'missing'),
	'a verified manifest''s row: number, type, configuration, chain, time, counts, no key, nothing missing, not in the catalog');
RESET backup_offline.organization_id;
RESET ROLE;
SELECT is((SELECT problem FROM backup_offline.repository_snapshots(:'storage') WHERE snapshot_id = :'snap_c1'),
	format('manifest "backup_offline/%s/%s/backup_manifest" has no manifest checksum', :'cfg_c', :'snap_c1'),
	'an object that is not a manifest: its problem');
SELECT is((SELECT configuration_name || ' ' || manifest_valid || ' ' || (snapshot_number IS NULL) || ' ' || (snapshot_time IS NULL)
			 FROM backup_offline.repository_snapshots(:'storage') WHERE snapshot_id = :'snap_c1'),
	'RI C false true true', 'and what only a verified manifest would tell is NULL (the configuration name comes from the catalog)');

-- ---- the import ----------------------------------------------------------------------
SET LOCAL ROLE t_ri_adm;
SET LOCAL backup_offline.organization_id = :'org_b';
SELECT backup_offline.import_repository(:'storage') AS report \gset
RESET backup_offline.organization_id;
RESET ROLE;
SELECT is(concat_ws(' ', :'report'::jsonb->'manifests', :'report'::jsonb->'snapshotsImported', :'report'::jsonb->'snapshotsNotImported',
				   :'report'::jsonb->'snapshotsInvalid', :'report'::jsonb->'otherOrganizations',
				   :'report'::jsonb->'configurations'->0->>'result', :'report'::jsonb->'tablesCreated'),
	'2 1 1 0 3 imported []',
	'an administrator working on organization B imports B''s configuration and FULL; the three other manifests are left out');
SELECT is((SELECT p->>'problem' FROM jsonb_array_elements(:'report'::jsonb->'problems') p WHERE p->>'object' = 'BKP-00000202'),
	format('not imported: its parent snapshot %s is neither in the catalog nor verified in storage', :'missing'),
	'the INCREMENTAL whose parent is missing is not imported, and the report says why');
SELECT is((SELECT concat_ws(' ', organization_id, name, status, created_by_role, storage_destination->>'path', next_backup_at IS NULL)
			 FROM backup_offline.backup_configuration WHERE id = :'cfg_b'),
	format('%s RI B PAUSED t_ri_adm %s t', :'org_b', :'repo'),
	'the configuration: the repository''s id, PAUSED, never scheduled, created by the importing administrator');
SELECT is((SELECT concat_ws(' ', snapshot_number, status, backup_type, trigger, requested_by, organization_id, snapshot_time,
				checksum = encode(backup_offline.digest(backup_offline.storage_get(:'storage',
					format('backup_offline/%s/%s/backup_manifest', :'cfg_b', :'snap_b1')), 'BLAKE3'), 'hex'))
			 FROM backup_offline.backup_snapshot WHERE id = :'snap_b1'),
	format('BKP-00000201 COMPLETED FULL MANUAL t_ri_adm %s 2025-02-01 10:00:00+00 t', :'org_b'),
	'the FULL: COMPLETED, its number, time and organization, the BLAKE3 digest of the stored manifest as checksum');
SELECT is((SELECT count(*) FROM backup_offline.backup_snapshot WHERE id IN (:'snap_a1', :'snap_b2', :'snap_c1', :'snap_d1')), 0::bigint,
	'nothing else was imported');
SELECT is((SELECT string_agg(actor_role || ' ' || (details->>'snapshotsImported'), ', ') FROM backup_offline.audit_pending
			WHERE action = 'import_repository'), 't_ri_adm 1', 'one audit entry for the import, naming the administrator');
SELECT is((SELECT last_value FROM backup_offline.backup_snapshot_number_seq) >= 201, true,
	'the snapshot number sequence moved past the imported number');
SELECT is(backup_offline.verify_snapshot(:'snap_b1', 'decrypt')->>'valid', 'true',
	'verify_snapshot of the imported FULL: the stored manifest is the catalog''s');
SELECT is(backup_offline.verify_snapshot(:'snap_b1', 'checksums')->>'valid', 'true',
	'and its stored digest is the catalog''s checksum');
SELECT is((SELECT in_catalog FROM backup_offline.repository_snapshots(:'storage') WHERE snapshot_id = :'snap_b1'), true,
	'repository_snapshots now finds the FULL in the catalog');

SELECT pg_temp.catalog_state() AS state1 \gset
SET LOCAL ROLE t_ri_adm;
SET LOCAL backup_offline.organization_id = :'org_b';
SELECT backup_offline.import_repository(:'storage') AS report2 \gset
RESET backup_offline.organization_id;
RESET ROLE;
SELECT is(concat_ws(' ', :'report2'::jsonb->'snapshotsImported', :'report2'::jsonb->'snapshotsSkipped',
				   :'report2'::jsonb->'configurations'->0->>'result'),
	'0 1 existing', 'a second import skips the FULL and the configuration');
SELECT is(pg_temp.catalog_state(), :'state1', 'and changes nothing (no row, no audit entry)');

-- ---- what a manifest may not make the import do ------------------------------------
\set cfg_s1 'c0000000-0000-4000-8000-0000000000e1'
\set cfg_s2 'c0000000-0000-4000-8000-0000000000e2'
\set cfg_s3 'c0000000-0000-4000-8000-0000000000e3'
\set cfg_s4 'c0000000-0000-4000-8000-0000000000e4'
\set cfg_s5 'c0000000-0000-4000-8000-0000000000e5'
\set cfg_s6 'c0000000-0000-4000-8000-0000000000e6'
\set snap_s1 '50000000-0000-4000-8000-0000000000e1'
\set snap_s2 '50000000-0000-4000-8000-0000000000e2'
\set snap_s3 '50000000-0000-4000-8000-0000000000e3'
\set snap_s4 '50000000-0000-4000-8000-0000000000e4'
\set snap_s5 '50000000-0000-4000-8000-0000000000e5'
\set snap_s6 '50000000-0000-4000-8000-0000000000e6'
SELECT :'repo' || '/strange' AS repo_s \gset
SELECT jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', :'repo_s') AS storage_s \gset

-- a table the administrator may not read, functions outside pg_catalog it may call
CREATE SCHEMA t_ri_secret;
CREATE TABLE t_ri_secret.data (id bigint PRIMARY KEY, secret text);
CREATE FUNCTION t_ri.evil() RETURNS text LANGUAGE sql AS $$ SELECT 'what the inserter may read' $$;
CREATE FUNCTION t_ri.imm(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper($1) $$;
GRANT USAGE ON SCHEMA t_ri TO t_ri_adm;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO t_ri_adm', current_database()); END $$;

-- a manifest's table entry: entity type, definition (columns, constraints, indexes, primary key)
CREATE FUNCTION pg_temp.entry(schema text, name text, entity text, columns jsonb, constraints jsonb DEFAULT '[]',
							  indexes jsonb DEFAULT '[]', key jsonb DEFAULT '["id"]') RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_array(jsonb_build_object('schema', schema, 'name', name, 'entityTypes', jsonb_build_array(entity),
		'rowCount', 0, 'objects', '[]'::jsonb, 'copyColumns', (SELECT jsonb_agg(c->'name') FROM jsonb_array_elements(columns) c),
		'definition', jsonb_build_object('schema', schema, 'name', name, 'persistence', 'permanent', 'columns', columns,
			'constraints', constraints, 'indexes', indexes, 'primaryKey', key)))
$$;
SELECT pg_temp.put(:'cfg_s1', :'snap_s1', pg_temp.manifest(:'cfg_s1', :'snap_s1', :'org_a', 'BKP-00000301', NULL, 'RI S1', :'repo',
	pg_temp.entry('t_ri_secret', 'data', 'RI_SECRET', '[{"name": "id", "type": "bigint", "notNull": true}, {"name": "secret", "type": "text"}]')),
	:'repo_s');
SELECT pg_temp.put(:'cfg_s2', :'snap_s2', pg_temp.manifest(:'cfg_s2', :'snap_s2', :'org_a', 'BKP-00000302', NULL, 'RI S2', :'repo',
	pg_temp.entry('pg_catalog', 'pg_class', 'RI_PGCLASS', '[{"name": "oid", "type": "oid", "notNull": true}]', '[]', '[]', '["oid"]')),
	:'repo_s');
SELECT pg_temp.put(:'cfg_s3', :'snap_s3', pg_temp.manifest(:'cfg_s3', :'snap_s3', :'org_a', 'BKP-00000303', NULL, 'RI S3', :'repo',
	'[]', :'org_b'), :'repo_s');
SELECT pg_temp.put(:'cfg_s4', :'snap_s4', pg_temp.manifest(:'cfg_s4', :'snap_s4', :'org_a', 'BKP-00000304', NULL, 'RI S4', :'repo',
	pg_temp.entry('t_ri_r3', 'unsafe', 'RI_UNSAFE',
		$j$[{"name": "id", "type": "bigint", "notNull": true, "default": "nextval('t_ri_r3.unsafe_id_seq'::regclass)"},
			{"name": "label", "type": "text", "default": "t_ri.evil()"},
			{"name": "status", "type": "text", "default": "'ACTIVE'::text"},
			{"name": "code", "type": "integer", "notNull": true, "identity": "BY DEFAULT"}]$j$,
		$j$[{"name": "unsafe_pkey", "type": "p", "definition": "PRIMARY KEY (id)"},
			{"name": "unsafe_id_check", "type": "c", "definition": "CHECK ((id > 0))"},
			{"name": "unsafe_label_check", "type": "c", "definition": "CHECK ((t_ri.evil() IS NOT NULL))"},
			{"name": "unsafe_read_check", "type": "c", "definition": "CHECK ((pg_read_file('/etc/hostname'::text) IS NOT NULL))"}]$j$,
		$j$[{"name": "unsafe_lower_idx", "definition": "CREATE INDEX unsafe_lower_idx ON t_ri_r3.unsafe USING btree (lower(label))"},
			{"name": "unsafe_imm_idx", "definition": "CREATE INDEX unsafe_imm_idx ON t_ri_r3.unsafe USING btree (t_ri.imm(label))"}]$j$)),
	:'repo_s');
SELECT pg_temp.put(:'cfg_s5', :'snap_s5', pg_temp.manifest(:'cfg_s5', :'snap_s5', :'org_a', 'BKP-00000305', NULL, 'RI S5', :'repo',
	pg_temp.entry('t_ri_r3', 'gen', 'RI_GEN', '[{"name": "id", "type": "bigint", "notNull": true},
		{"name": "twice", "type": "bigint", "generated": "(id * 2)"}]')), :'repo_s');
SELECT pg_temp.put(:'cfg_s6', :'snap_s6', pg_temp.manifest(:'cfg_s6', :'snap_s6', :'org_a', 'BKP-00000306', NULL, 'RI S6', :'repo',
	pg_temp.entry('t_ri_r5', 'items', 'RI_ITEM', '[{"name": "id", "type": "bigint", "notNull": true}]')), :'repo_s');

SELECT is((SELECT problem FROM backup_offline.repository_snapshots(:'storage_s') WHERE snapshot_id = :'snap_s3'),
	format('manifest "backup_offline/%s/%s/backup_manifest" is of organization %s, its configuration of %s '
		   '(backup_offline writes the same organization in both places.)', :'cfg_s3', :'snap_s3', :'org_a', :'org_b'),
	'a manifest whose configuration names another organization than the manifest does not verify');

SET LOCAL ROLE t_ri_adm;
SET LOCAL backup_offline.organization_id = :'org_a';
SELECT backup_offline.import_repository(:'storage_s') AS report_s \gset
RESET backup_offline.organization_id;
RESET ROLE;
-- the report's problems of an object, each up to its detail
CREATE FUNCTION pg_temp.problems(report jsonb, object text) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(split_part(split_part(p->>'problem', ' (The repository is not encrypted', 1), ' (It could not', 1), ' | '
					  ORDER BY p->>'problem')
	  FROM jsonb_array_elements(report->'problems') p WHERE p->>'object' = object
$$;
SELECT is((SELECT string_agg(c->>'name' || ' ' || (c->>'result'), ', ' ORDER BY c->>'name')
			 FROM jsonb_array_elements(:'report_s'::jsonb->'configurations') c)
		   || ' / ' || (:'report_s'::jsonb->'otherOrganizations'),
	'RI S1 not imported, RI S2 not imported, RI S4 imported, RI S5 not imported, RI S6 not imported / 1',
	'the import of the strange repository: only the configuration whose definitions could be made safe is imported');
SELECT is(concat_ws(' / ', pg_temp.problems(:'report_s', format('configuration %s ("RI S1")', :'cfg_s1')),
				  (SELECT count(*) FROM backup_offline.entity_registry WHERE entity_type = 'RI_SECRET')),
	'not imported, nor its snapshots: permission denied to register table t_ri_secret.data for entity type RI_SECRET: '
	'role "t_ri_adm" may not read it / 0',
	'a table the importing administrator may not read is not registered (the caller''s rights count, not the extension owner''s), and its configuration is not imported');
SELECT is(concat_ws(' / ', pg_temp.problems(:'report_s', format('configuration %s ("RI S2")', :'cfg_s2')),
				  (SELECT count(*) FROM backup_offline.entity_registry WHERE entity_type = 'RI_PGCLASS')),
	'not imported, nor its snapshots: table pg_catalog.pg_class of entity type RI_PGCLASS is in a system schema: it is not registered / 0',
	'a system catalog, even one the administrator may read, is never registered');
SELECT is((SELECT count(*) FROM backup_offline.backup_configuration WHERE id = :'cfg_s3'), 0::bigint,
	'the configuration whose organization differs from its manifest''s is not imported');
SELECT is((SELECT string_agg(a.attname || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
							 || CASE WHEN a.attidentity <> '' THEN ' identity' ELSE '' END, ', ' ORDER BY a.attnum)
			 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE a.attrelid = to_regclass('t_ri_r3.unsafe') AND a.attnum > 0),
	'id nextval(''t_ri_r3.unsafe_id_seq''::regclass), label -, status -, code - identity',
	'from a manifest that is not authenticated: the serial''s default and the identity are recreated, no other default (t_ri.evil(), not even a constant)');
SELECT is((SELECT string_agg(x, ', ' ORDER BY x) FROM (
			SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass('t_ri_r3.unsafe')
			UNION ALL SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			 WHERE i.indrelid = to_regclass('t_ri_r3.unsafe') AND NOT i.indisprimary) y(x)),
	'unsafe_id_check, unsafe_lower_idx, unsafe_pkey',
	'and only the check constraint and the index that call nothing but pg_catalog functions that are not volatile');
SELECT is(pg_temp.problems(:'report_s', 't_ri_r3.unsafe'),
	'constraint unsafe_label_check not recreated: it calls t_ri.evil(), and the manifest is not authenticated | '
	'constraint unsafe_read_check not recreated: it calls pg_read_file(text) (volatile), and the manifest is not authenticated | '
	'index unsafe_imm_idx not recreated: it calls t_ri.imm(text), and the manifest is not authenticated | '
	'the default of column label not recreated: the manifest is not authenticated: of its defaults, only a serial column''s '
	'nextval() of a sequence of the table''s schema is recreated | '
	'the default of column status not recreated: the manifest is not authenticated: of its defaults, only a serial column''s '
	'nextval() of a sequence of the table''s schema is recreated',
	'each definition left out is a problem of the report');
SELECT is(concat_ws(' / ', to_regclass('t_ri_r3.gen'), pg_temp.problems(:'report_s', 't_ri_r3.gen'),
				  pg_temp.problems(:'report_s', format('configuration %s ("RI S5")', :'cfg_s5'))),
	'table t_ri_r3.gen not recreated: column twice is generated, and the manifest is not authenticated / '
	'not imported, nor its snapshots: table t_ri_r3.gen of entity type RI_GEN does not exist',
	'a table with a generated column is not created from a manifest that is not authenticated, nor its configuration imported');
SELECT is(concat_ws(' / ', pg_temp.problems(:'report_s', format('configuration %s ("RI S6")', :'cfg_s6')),
				  (SELECT string_agg(table_name::text, ', ') FROM backup_offline.entity_registry WHERE entity_type = 'RI_ITEM')),
	'not imported, nor its snapshots: entity type RI_ITEM is registered for table t_ri.items, the repository''s configuration '
	'has it for t_ri_r5.items / t_ri.items',
	'an entity type the registry maps to another table: the configuration is not imported (its backups would copy another table)');

-- a configuration whose manifests disagree about its organization: imported by a role that
-- sees both, it is not imported (its row would take one, its snapshots each their own)
\set snap_s7 '50000000-0000-4000-8000-0000000000e7'
\set snap_s8 '50000000-0000-4000-8000-0000000000e8'
SELECT jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', :'repo' || '/twoorgs') AS storage_t \gset
SELECT pg_temp.put(:'cfg_s1', :'snap_s7', pg_temp.manifest(:'cfg_s1', :'snap_s7', :'org_a', 'BKP-00000307', NULL, 'RI S7', :'repo'),
	:'repo' || '/twoorgs');
SELECT pg_temp.put(:'cfg_s1', :'snap_s8', pg_temp.manifest(:'cfg_s1', :'snap_s8', :'org_b', 'BKP-00000308', :'snap_s7', 'RI S7', :'repo'),
	:'repo' || '/twoorgs');
SELECT backup_offline.import_repository(:'storage_t') AS report_t \gset
SELECT is(concat_ws(' / ', :'report_t'::jsonb->'configurations'->0->>'result',
				  pg_temp.problems(:'report_t', format('configuration %s ("RI S7")', :'cfg_s1')),
				  (SELECT count(*) FROM backup_offline.backup_snapshot WHERE id IN (:'snap_s7', :'snap_s8'))),
	format('not imported / not imported, nor its snapshots: its manifests name two organizations, %s (the oldest) and %s '
		   '(snapshot BKP-00000308) (A configuration belongs to one organization; backup_offline writes it in every manifest.) / 0',
		   :'org_a', :'org_b'),
	'a configuration whose manifests name two organizations is not imported');

-- ---- the guard and the flag ---------------------------------------------------------
SELECT throws_ok(format($$INSERT INTO backup_offline.backup_snapshot (organization_id, configuration_id, backup_type, requested_type,
		status, trigger, requested_by, storage_location, manifest, checksum, checksum_algorithm, encrypted, compressed)
	VALUES (%L, %L, 'FULL', 'FULL', 'COMPLETED', 'MANUAL', 'postgres', '{}', '{}', 'x', 'BLAKE3', false, false)$$, :'org_b', :'cfg_b'),
	'23514', 'invalid status: a new snapshot cannot be COMPLETED',
	'outside import_repository even a superuser cannot insert a COMPLETED snapshot');
SELECT is(backup_offline.repository_importer(), NULL, 'repository_importer() is NULL outside an import');
SET LOCAL ROLE t_ri_app_a;
SELECT is(backup_offline.repository_importer(), NULL, 'and the application may read it (the configuration guard runs as the writer)');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
