-- The restore API's validation (validate_restore, create_restore), the
-- normalised request a restore row is built from, the restore status
-- machine and its approval rules (restore_operation_guard, approve_restore,
-- cancel_restore), the privileges and row-level security of restores and
-- their audit trail.
--
-- No restore runs here: a job worker cannot see this transaction's
-- uncommitted rows, so every run_restore call below is one that must fail
-- before a job is started.  Snapshot rows are written directly, as the
-- superuser (what the job worker does as the extension owner): a COMPLETED
-- snapshot whose manifest lists tables with their entity types is all
-- create_restore's validation reads.  The statuses the job sets
-- (IN_PROGRESS, COMPLETED, FAILED) are set here by the superuser too.
BEGIN;
SELECT plan(187);
\ir lib/errors.psql
-- pgTAP keeps its state in temporary tables: let the roles under test write them
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA %1$I TO PUBLIC',
				   pg_my_temp_schema()::regnamespace);
END $$;

\set org_a 'aaaaaaaa-0000-4000-8000-0000000000a2'
\set org_b 'bbbbbbbb-0000-4000-8000-0000000000b2'
\set unknown 'dddddddd-0000-4000-8000-00000000dead'
\set user_1 'eeeeeeee-0000-4000-8000-000000000001'
\set user_2 'eeeeeeee-0000-4000-8000-000000000002'
-- snapshot ids are fixed so that requests can be written as JSON literals
\set s_a '5a000000-0000-4000-8000-00000000000a'
\set s_pend '5a000000-0000-4000-8000-0000000000e0'
\set p1 '5a000000-0000-4000-8000-0000000000c1'
\set p2 '5a000000-0000-4000-8000-0000000000c2'
\set x1 '5a000000-0000-4000-8000-0000000000f1'
\set x2 '5a000000-0000-4000-8000-0000000000f2'
\set s_b '5b000000-0000-4000-8000-00000000000b'
\set full '{"restoreType": "FULL", "snapshotId": "5a000000-0000-4000-8000-00000000000a"}'
\set selective '{"restoreType": "SELECTIVE", "snapshotId": "5a000000-0000-4000-8000-00000000000a"}'
\set file_level '{"restoreType": "FILE_LEVEL", "snapshotId": "5a000000-0000-4000-8000-00000000000a"}'
\set pit '{"restoreType": "POINT_IN_TIME"}'
\set tables '[{"schema": "t_rs", "name": "clients", "entityTypes": ["RS_CLIENT"], "format": "binary", "change": "whole", "rowCount": 0}, {"schema": "t_rs", "name": "visits", "entityTypes": ["RS_VISIT"], "format": "binary", "change": "whole", "rowCount": 0}]'

-- the server directory FILE_LEVEL restores may write to (test clusters: one)
SELECT current_setting('backup_offline.allowed_paths') AS allowed \gset

CREATE SCHEMA t_rs;
CREATE TABLE t_rs.clients (id uuid PRIMARY KEY, name text);
CREATE TABLE t_rs.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date);
GRANT USAGE ON SCHEMA t_rs TO PUBLIC;
GRANT SELECT ON t_rs.clients, t_rs.visits TO PUBLIC;
SELECT backup_offline.register_entity('RS_CLIENT', 't_rs.clients', '{}') AS e_client,
	   backup_offline.register_entity('RS_VISIT', 't_rs.visits', '{"clientIdColumn": "client_id", "dateColumn": "visit_date"}') AS e_visit \gset

CREATE ROLE t_rs_app_a IN ROLE backup_offline_app;
CREATE ROLE t_rs_app_b IN ROLE backup_offline_app;
CREATE ROLE t_rs_pool IN ROLE backup_offline_app;
CREATE ROLE t_rs_op_a IN ROLE backup_offline_operator;
CREATE ROLE t_rs_opappr_a IN ROLE backup_offline_operator, backup_offline_approver;
CREATE ROLE t_rs_appr_a IN ROLE backup_offline_approver;
CREATE ROLE t_rs_appr_b IN ROLE backup_offline_approver;
CREATE ROLE t_rs_auditor IN ROLE backup_offline_auditor;
CREATE ROLE t_rs_adm_a IN ROLE backup_offline_admin;
INSERT INTO backup_offline.organization_member (role_name, organization_id) VALUES
	('t_rs_app_a', :'org_a'), ('t_rs_app_b', :'org_b'), ('t_rs_pool', NULL), ('t_rs_op_a', :'org_a'),
	('t_rs_opappr_a', :'org_a'), ('t_rs_appr_a', :'org_a'), ('t_rs_appr_b', :'org_b'), ('t_rs_adm_a', :'org_a');

CREATE FUNCTION pg_temp.config(org uuid, name text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('organizationId', org, 'name', name,
		'scope', '{"includeEntities": ["RS_CLIENT", "RS_VISIT"]}'::jsonb,
		'schedule', '{"frequency": "DAILY", "startTime": "01:00", "timezone": "UTC"}'::jsonb,
		'retention', '{"retentionDays": 30}'::jsonb,
		'storageDestination', '{"type": "AWS_S3", "bucket": "care-backups"}'::jsonb,
		'checksumAlgorithm', 'BLAKE3')
$$;
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_a', 'A main')) AS c_a \gset
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_a', 'A running')) AS c_run \gset
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_a', 'A history')) AS c_pit \gset
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_a', 'A broken chain')) AS c_broken \gset
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_b', 'B main')) AS c_b \gset

-- A snapshot row as the job worker writes it, taken to COMPLETED (through
-- IN_PROGRESS) with a manifest and its snapshot time unless finish is
-- false; FULL without a parent, INCREMENTAL with one.  Returns its number.
CREATE FUNCTION pg_temp.snapshot(sid uuid, cfg uuid, at timestamptz, tables jsonb,
								 parent uuid DEFAULT NULL, finish boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	bt backup_offline.backup_type := CASE WHEN parent IS NULL THEN 'FULL' ELSE 'INCREMENTAL' END;
	n text;
BEGIN
	INSERT INTO backup_offline.backup_snapshot
		(id, organization_id, configuration_id, backup_type, requested_type, status, trigger, parent_snapshot_id,
		 requested_by, storage_location, checksum_algorithm, encrypted, compressed)
	VALUES (sid, (SELECT organization_id FROM backup_offline.backup_configuration WHERE id = cfg), cfg,
			bt, bt, 'PENDING', 'MANUAL', parent, current_user, '{}', 'BLAKE3', false, false)
	RETURNING snapshot_number INTO n;
	IF finish THEN
		UPDATE backup_offline.backup_snapshot SET status = 'IN_PROGRESS', started_at = at WHERE id = sid;
		UPDATE backup_offline.backup_snapshot
		   SET status = 'COMPLETED', snapshot_time = at, completed_at = at, checksum = 'c0ffee',
			   manifest = jsonb_build_object('tables', tables)
		 WHERE id = sid;
	END IF;
	RETURN n;
END
$$;
-- A's restorable snapshot, with tables of RS_CLIENT and RS_VISIT
SELECT pg_temp.snapshot(:'s_a', :'c_a', '2025-02-01T00:00:00Z', :'tables') AS s_a_number \gset
-- a snapshot a job is still taking
SELECT pg_temp.snapshot(:'s_pend', :'c_run', NULL, NULL, NULL, false) AS s_pend_number \gset
-- a chain for POINT_IN_TIME: a FULL on Jan 10, an INCREMENTAL on Jan 20
SELECT pg_temp.snapshot(:'p1', :'c_pit', '2025-01-10T00:00:00Z', :'tables') AS p1_number \gset
SELECT pg_temp.snapshot(:'p2', :'c_pit', '2025-01-20T00:00:00Z', :'tables', :'p1') AS p2_number \gset
-- a chain whose FULL a verification found CORRUPTED: no snapshot of it is restorable
SELECT pg_temp.snapshot(:'x1', :'c_broken', '2025-01-10T00:00:00Z', :'tables') AS x1_number \gset
SELECT pg_temp.snapshot(:'x2', :'c_broken', '2025-01-20T00:00:00Z', :'tables', :'x1') AS x2_number \gset
UPDATE backup_offline.backup_snapshot SET status = 'CORRUPTED' WHERE id = :'x1';
-- B's snapshot
SELECT pg_temp.snapshot(:'s_b', :'c_b', '2025-02-01T00:00:00Z', :'tables') AS s_b_number \gset

-- the statements under test, as text for throws_ok
CREATE FUNCTION pg_temp.cr(request jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT format('SELECT backup_offline.create_restore(%L::jsonb)', request)
$$;
CREATE FUNCTION pg_temp.vr(request jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT format('SELECT backup_offline.validate_restore(%L::jsonb)', request)
$$;
-- The audit entries of a restore, wherever they are within this
-- transaction: audit_pending until they are chained at commit, audit_log after.
CREATE FUNCTION pg_temp.audit_entries(rid uuid)
RETURNS TABLE (action text, actor_role name, actor_user_id uuid, organization_id uuid, details jsonb) LANGUAGE sql AS $$
	SELECT e.action, e.actor_role, e.actor_user_id, e.organization_id, e.details FROM (
		SELECT 1 AS src, l.id AS n, l.action, l.actor_role, l.actor_user_id, l.organization_id, l.details
		  FROM backup_offline.audit_log l
		 WHERE l.object_type = 'restore_operation' AND l.object_id = rid::text
		UNION ALL
		SELECT 2, p.seq, p.action, p.actor_role, p.actor_user_id, p.organization_id, p.details
		  FROM backup_offline.audit_pending p
		 WHERE p.object_type = 'restore_operation' AND p.object_id = rid::text) e
	ORDER BY e.src, e.n
$$;
-- the status changes of a restore's audit entries, as 'OLD -> NEW'
CREATE FUNCTION pg_temp.audited_statuses(rid uuid) RETURNS text[] LANGUAGE sql AS $$
	SELECT array_agg((details->'changes'->'status'->>'old') || ' -> ' || (details->'changes'->'status'->>'new'))
	  FROM pg_temp.audit_entries(rid) WHERE action = 'status_change'
$$;
CREATE FUNCTION pg_temp.set_status_sql(rid uuid, status text, role name DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
	SELECT CASE WHEN role IS NULL THEN '' ELSE format('SET LOCAL ROLE %I; ', role) END
		|| format('UPDATE backup_offline.restore_operation SET status = %L WHERE id = %L', status, rid)
		|| CASE WHEN role IS NULL THEN '' ELSE '; RESET ROLE' END
$$;

-- ---- validation: the request's shape -----------------------------------------
SELECT throws_ok(pg_temp.vr('[]'), '22023', 'the restore request must be a JSON object',
	'validate_restore: an array is not a request');
SELECT throws_ok($$SELECT backup_offline.create_restore(NULL)$$, '22023', 'the restore request must be a JSON object',
	'create_restore: a NULL request');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"priority": 1}'), '22023', 'unknown key priority',
	'an unknown key is rejected, not dropped');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"scope": {"entities": ["RS_VISIT"]}}'), '22023', 'unknown key scope.entities',
	'an unknown key in scope is named by its path');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb - 'restoreType'), '22023', 'restoreType is required',
	'restoreType is required');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"restoreType": "full"}'), '22023', 'invalid restoreType: "full"',
	'restore types are upper case');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"restoreType": "INCREMENTAL"}'), '22023', 'invalid restoreType: "INCREMENTAL"',
	'an unknown restoreType');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb - 'snapshotId'), '22023', 'snapshotId is required',
	'a FULL restore needs snapshotId');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"snapshotId": "BKP-00000001"}'), '22023',
	'invalid snapshotId: "BKP-00000001" is not a uuid', 'snapshotId is a uuid, not a snapshot number');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || jsonb_build_object('snapshotId', :'unknown')), '42704',
	format('snapshot %s does not exist', :'unknown'), 'an unknown snapshot');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || jsonb_build_object('snapshotId', :'s_pend')), '55000',
	format('snapshot %s is PENDING', :'s_pend_number'), 'a snapshot still being taken is not restored');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || jsonb_build_object('snapshotId', :'x1')), '55000',
	format('snapshot %s is CORRUPTED', :'x1_number'), 'a CORRUPTED snapshot is not restored');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"requiresApproval": "no"}'), '22023',
	'invalid requiresApproval: "no" is not a boolean', 'requiresApproval is a boolean');
-- configurationId is for POINT_IN_TIME only (snapshotId on a POINT_IN_TIME
-- is refused); on a FULL it is dropped silently, even when it names a
-- configuration the snapshot does not belong to
SELECT throws_ok(pg_temp.vr(:'full'::jsonb || jsonb_build_object('configurationId', :'c_pit')), '22023', NULL,
	'a FULL restore naming a configuration its snapshot does not belong to is refused');

-- ---- validation: POINT_IN_TIME -------------------------------------------------
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_pit')), '22023',
	'a POINT_IN_TIME restore needs scope.restoreToTimestamp', 'POINT_IN_TIME without restoreToTimestamp');
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_pit', 'snapshotId', :'p1',
															  'scope', '{"restoreToTimestamp": "2025-01-15T00:00:00Z"}'::jsonb)), '22023',
	'a POINT_IN_TIME restore chooses its snapshot: leave snapshotId out', 'POINT_IN_TIME with a snapshotId');
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || '{"scope": {"restoreToTimestamp": "2025-01-15T00:00:00Z"}}'), '22023',
	'a POINT_IN_TIME restore needs configurationId', 'POINT_IN_TIME without configurationId');
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_pit',
															  'scope', '{"restoreToTimestamp": "2025-01-01T00:00:00Z"}'::jsonb)), '42704',
	format('no restorable snapshot of configuration %s at or before 2025-01-01 00:00:00+00', :'c_pit'),
	'POINT_IN_TIME before every snapshot of the configuration');
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_broken',
															  'scope', '{"restoreToTimestamp": "2025-01-25T00:00:00Z"}'::jsonb)), '42704',
	format('no restorable snapshot of configuration %s at or before 2025-01-25 00:00:00+00', :'c_broken'),
	'POINT_IN_TIME skips snapshots whose chain holds a CORRUPTED one (here: all of them)');
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || jsonb_build_object('configurationId', :'unknown',
															  'scope', '{"restoreToTimestamp": "2025-01-25T00:00:00Z"}'::jsonb)), '42704',
	format('no restorable snapshot of configuration %s at or before 2025-01-25 00:00:00+00', :'unknown'),
	'POINT_IN_TIME of an unknown configuration');
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_pit',
															  'scope', '{"restoreToTimestamp": "2025-13-45T00:00:00Z"}'::jsonb)), '22023',
	'invalid scope.restoreToTimestamp: "2025-13-45T00:00:00Z"', 'a restoreToTimestamp that is no time');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"scope": {"restoreToTimestamp": "2025-01-15T00:00:00Z"}}'), '22023',
	'scope.restoreToTimestamp is only for POINT_IN_TIME restores', 'restoreToTimestamp on a FULL restore');
SELECT is(backup_offline.validate_restore(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_pit',
		'scope', '{"restoreToTimestamp": "2025-01-15T00:00:00Z"}'::jsonb))->>'snapshotId', :'p1',
	'POINT_IN_TIME between two snapshots chooses the older one');
SELECT is(backup_offline.validate_restore(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_pit',
		'scope', '{"restoreToTimestamp": "2025-01-20T00:00:00Z"}'::jsonb))->>'snapshotId', :'p2',
	'POINT_IN_TIME exactly at a snapshot''s time chooses that snapshot');
SELECT is(backup_offline.validate_restore(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_pit',
		'scope', '{"restoreToTimestamp": "2025-01-20T00:59:59+01:00"}'::jsonb))->>'snapshotId', :'p1',
	'POINT_IN_TIME compares instants: 00:59:59+01 is before the snapshot at 00:00Z');

-- ---- validation: the scope -------------------------------------------------------
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"scope": {"includeEntities": ["RS_VISIT", "RS_NOPE"]}}'), '22023',
	format('snapshot %s holds no entity type "RS_NOPE" (scope.includeEntities)', :'s_a_number'),
	'includeEntities: an entity type the snapshot lacks');
SELECT is(pg_temp.error_of(pg_temp.cr(:'selective'::jsonb || '{"scope": {"includeEntities": ["RS_NOPE"]}}')),
	format('22023: snapshot %s holds no entity type "RS_NOPE" (scope.includeEntities) / It holds: RS_CLIENT, RS_VISIT.', :'s_a_number'),
	'... and the hint lists the entity types it holds');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"scope": {"includeEntities": "RS_VISIT"}}'), '22023',
	'invalid scope.includeEntities: "RS_VISIT" is not an array', 'includeEntities is an array');
SELECT throws_ok(pg_temp.cr(:'selective'::jsonb || '{"scope": {"recordIds": "5a000000-0000-4000-8000-0000000000aa"}}'), '22023',
	'invalid scope.recordIds: a non-empty array of strings or numbers is required', 'recordIds is an array');
SELECT throws_ok(pg_temp.cr(:'selective'::jsonb || '{"scope": {}}'), '22023',
	'a SELECTIVE restore needs a selection in scope', 'SELECTIVE with an empty scope');
SELECT throws_ok(pg_temp.cr(:'selective'), '22023',
	'a SELECTIVE restore needs a selection in scope', 'SELECTIVE without a scope');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"scope": {"clientIds": ["cccccccc-0000-4000-8000-000000000001"]}}'), '22023',
	'scope selects records, which a FULL restore does not', 'FULL with clientIds');
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_pit', 'scope',
		'{"restoreToTimestamp": "2025-01-15T00:00:00Z", "dateRange": {"startDate": "2025-01-01"}}'::jsonb)), '22023',
	'scope selects records, which a POINT_IN_TIME restore does not', 'POINT_IN_TIME with a dateRange');
SELECT throws_ok(pg_temp.cr(:'selective'::jsonb || '{"scope": {"clientIds": ["client-1"]}}'), '22023',
	'invalid scope.clientIds[0]: "client-1" is not a uuid', 'clientIds are uuids');
SELECT throws_ok(pg_temp.cr(:'selective'::jsonb || '{"scope": {"dateRange": {"startDate": "2025-02-01", "endDate": "2025-01-01"}}}'), '22023',
	'invalid scope.dateRange: startDate 2025-02-01 is after endDate 2025-01-01', 'dateRange: start after end');
SELECT throws_ok(pg_temp.cr(:'selective'::jsonb || '{"scope": {"dateRange": {}}}'), '22023',
	'scope.dateRange needs startDate or endDate', 'dateRange without dates');
SELECT throws_ok(pg_temp.cr(:'selective'::jsonb || '{"scope": {"dateRange": {"startDate": "2025-02-30"}}}'), '22023',
	'invalid scope.dateRange.startDate: "2025-02-30" is not a calendar date', 'dateRange: a day that does not exist');

-- ---- validation: the destination ------------------------------------------------
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"destination": {"type": "EXISTING_SCHEMA"}}'), '22023',
	'invalid destination.type: "EXISTING_SCHEMA"', 'destination.type other than NEW_SCHEMA');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"destination": {"schema": "Restored-Visits"}}'), '22023',
	'invalid destination.schema: "Restored-Visits"', 'a schema name that is no plain lower-case identifier');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"destination": {"schema": "t_rs; DROP SCHEMA t_rs"}}'), '22023',
	'invalid destination.schema: "t_rs; DROP SCHEMA t_rs"', 'a schema name with SQL in it');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"destination": {"schema": "t_rs"}}'), '42P06',
	'schema "t_rs" already exists (destination.schema)', 'an existing schema is refused');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"destination": {"tablePrefix": "P-"}}'), '22023',
	'invalid destination.tablePrefix: "P-"', 'a bad tablePrefix');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"destination": {"type": "NEW_SCHEMA", "name": "x"}}'), '22023',
	'unknown key destination.name', 'an unknown key in destination');

-- ---- validation: FILE_LEVEL -------------------------------------------------------
SELECT throws_ok(pg_temp.cr(:'file_level'), '22023', 'a FILE_LEVEL restore needs file', 'FILE_LEVEL without file');
SELECT throws_ok(pg_temp.cr(:'file_level'::jsonb || jsonb_build_object('file', jsonb_build_object('entity', 'RS_VISIT',
		'path', :'allowed' || '/rs/visits.csv'), 'destination', '{"type": "NEW_SCHEMA"}'::jsonb)), '22023',
	'a FILE_LEVEL restore writes a file, not a schema: leave destination out', 'FILE_LEVEL with a destination');
SELECT throws_ok(pg_temp.cr(:'file_level'::jsonb || '{"file": {"entity": "RS_VISIT", "path": "/etc/rs_visits.csv"}}'), '22023',
	'invalid file.path: "/etc/rs_visits.csv" is not under an allowed backup directory', 'FILE_LEVEL: a path outside allowed_paths');
SELECT throws_ok(pg_temp.cr(:'file_level'::jsonb || jsonb_build_object('file', jsonb_build_object('entity', 'RS_VISIT',
		'path', :'allowed' || '/../rs_visits.csv'))), '22023',
	format('invalid file.path: "%s/../rs_visits.csv" contains a "." or ".." component', :'allowed'),
	'FILE_LEVEL: no way out of allowed_paths through ".."');
SELECT throws_ok(pg_temp.cr(:'file_level'::jsonb || '{"file": {"entity": "RS_VISIT", "path": "visits.csv"}}'), '22023',
	'invalid file.path: "visits.csv" is not an absolute path', 'FILE_LEVEL: a relative path');
SELECT throws_ok(pg_temp.cr(:'file_level'::jsonb || jsonb_build_object('file', jsonb_build_object('entity', 'RS_NOPE',
		'path', :'allowed' || '/rs/visits.csv'))), '22023',
	format('snapshot %s holds no entity type "RS_NOPE" (file.entity)', :'s_a_number'), 'file.entity: an entity type the snapshot lacks');
SELECT throws_ok(pg_temp.cr(:'file_level'::jsonb || jsonb_build_object('file', jsonb_build_object(
		'path', :'allowed' || '/rs/visits.csv'))), '22023',
	'file.entity is required', 'file.entity is required');
SELECT throws_ok(pg_temp.cr(:'file_level'::jsonb || jsonb_build_object('file', jsonb_build_object('entity', 'RS_VISIT',
		'path', :'allowed' || '/rs/visits.csv', 'format', 'xml'))), '22023',
	'invalid file.format: "xml"', 'file.format: csv or binary');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || jsonb_build_object('file', jsonb_build_object('entity', 'RS_VISIT',
		'path', :'allowed' || '/rs/visits.csv'))), '22023',
	'file is only for FILE_LEVEL restores', 'file on a FULL restore');

-- ---- validation: conflict resolution ---------------------------------------------
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"conflictResolutionStrategy": "MANUAL"}'), '22023',
	'conflictResolutionStrategy MANUAL needs a restore in place; a restore into a new schema has no conflicts',
	'MANUAL conflict resolution for a new schema');
SELECT throws_ok(pg_temp.cr(:'full'::jsonb || '{"conflictResolutionStrategy": "LAST_WINS"}'), '22023',
	'invalid conflictResolutionStrategy: "LAST_WINS"', 'an unknown conflictResolutionStrategy');
SELECT is((SELECT count(*) FROM backup_offline.restore_operation), 0::bigint,
	'the refused requests left no restore behind');

-- ---- the normalised request ----------------------------------------------------------
SELECT is(backup_offline.validate_restore(:'full'),
	jsonb_build_object('restoreType', 'FULL', 'snapshotId', :'s_a', 'configurationId', :'c_a', 'organizationId', :'org_a',
		'scope', '{}'::jsonb, 'destination', '{"type": "NEW_SCHEMA", "tablePrefix": ""}'::jsonb,
		'conflictResolutionStrategy', 'BACKUP_WINS', 'requiresApproval', true, 'rollbackEnabled', true),
	'the defaults: approval required, rollback enabled, a NEW_SCHEMA without prefix (its name chosen later), BACKUP_WINS');
SELECT is(backup_offline.validate_restore(:'selective'::jsonb || '{"scope": {"includeEntities": ["RS_VISIT"], "dateRange": {"endDate": "2025-01-31"}},
		"destination": {"schema": "rs_restored", "tablePrefix": "r_"}, "conflictResolutionStrategy": "BACKUP_WINS",
		"requiresApproval": false, "rollbackEnabled": false, "notes": "ticket 7"}'),
	jsonb_build_object('restoreType', 'SELECTIVE', 'snapshotId', :'s_a', 'configurationId', :'c_a', 'organizationId', :'org_a',
		'scope', '{"includeEntities": ["RS_VISIT"], "dateRange": {"endDate": "2025-01-31"}}'::jsonb,
		'destination', '{"type": "NEW_SCHEMA", "schema": "rs_restored", "tablePrefix": "r_"}'::jsonb,
		'conflictResolutionStrategy', 'BACKUP_WINS', 'requiresApproval', false, 'rollbackEnabled', false, 'notes', 'ticket 7'),
	'every given value is kept');
SELECT is(backup_offline.validate_restore(:'file_level'::jsonb || jsonb_build_object('file', jsonb_build_object('entity', 'RS_VISIT',
		'path', :'allowed' || '/rs/visits.csv'))) - 'snapshotId' - 'configurationId' - 'organizationId',
	jsonb_build_object('restoreType', 'FILE_LEVEL', 'scope', '{}'::jsonb,
		'file', jsonb_build_object('entity', 'RS_VISIT', 'path', :'allowed' || '/rs/visits.csv', 'format', 'csv'),
		'conflictResolutionStrategy', 'BACKUP_WINS', 'requiresApproval', true, 'rollbackEnabled', true),
	'FILE_LEVEL: file with the csv default, no destination');

-- create_restore by the roles that request restores (not the superuser):
-- the row's restore_number default takes nextval of restore_number_seq
SELECT is(pg_temp.error_of(format('SET LOCAL ROLE t_rs_app_a; SELECT backup_offline.create_restore(%L); RESET ROLE', :'full')),
	'no error', 'the application creates a restore');
SELECT is(pg_temp.error_of(format('SET LOCAL ROLE t_rs_op_a; SELECT backup_offline.create_restore(%L); RESET ROLE', :'full')),
	'no error', 'an operator creates a restore');
-- Without USAGE on restore_number_seq the two above fail ("permission
-- denied for sequence restore_number_seq") and nobody but a superuser can
-- request a restore.  Granted here (rolled back with the rest) so that the
-- remaining checks test the rest of the API with the real requesters.
GRANT USAGE ON SEQUENCE backup_offline.restore_number_seq TO backup_offline_admin, backup_offline_operator, backup_offline_app;

-- create_restore: PENDING_APPROVAL by default, APPROVED without requiresApproval
SELECT throws_ok(format('SET LOCAL ROLE t_rs_app_a; SELECT backup_offline.create_restore(%L)',
	:'full'::jsonb || '{"requiresApproval": false}'), '42501',
	'only administrators may waive the approval of a restore (requiresApproval)',
	'the application cannot waive approval');
SET LOCAL ROLE t_rs_adm_a;
SELECT backup_offline.create_restore(:'full'::jsonb || '{"requiresApproval": false}') AS r2 \gset
SELECT backup_offline.create_restore(:'full'::jsonb || '{"requiresApproval": false}') AS r3 \gset
SET LOCAL ROLE t_rs_app_a;
SELECT backup_offline.create_restore(:'full') AS r1 \gset
SELECT backup_offline.create_restore(:'file_level'::jsonb || jsonb_build_object('file', jsonb_build_object('entity', 'RS_VISIT',
		'path', :'allowed' || '/rs/visits.bin', 'format', 'binary'))) AS r_file \gset
RESET ROLE;
SELECT restore_number AS r1_number FROM backup_offline.restore_operation WHERE id = :'r1' \gset
SELECT restore_number AS r2_number FROM backup_offline.restore_operation WHERE id = :'r2' \gset
SELECT restore_number AS r3_number FROM backup_offline.restore_operation WHERE id = :'r3' \gset
SELECT is((SELECT format('%s %s %s %s %s %s %s %s', status, organization_id, snapshot_id, restore_type, requires_approval,
						 rollback_enabled, requested_by, approved_by IS NULL AND approved_at IS NULL)
			 FROM backup_offline.restore_operation WHERE id = :'r1'),
	format('PENDING_APPROVAL %s %s FULL t t t_rs_app_a t', :'org_a', :'s_a'),
	'a restore requiring approval starts PENDING_APPROVAL, requested by the caller');
SELECT is((SELECT request FROM backup_offline.restore_operation WHERE id = :'r1'), backup_offline.validate_restore(:'full'),
	'the row keeps the normalised request');
SELECT is((SELECT destination FROM backup_offline.restore_operation WHERE id = :'r1'), '{"type": "NEW_SCHEMA", "tablePrefix": ""}'::jsonb,
	'the destination column holds the normalised destination');
SELECT matches((SELECT restore_number FROM backup_offline.restore_operation WHERE id = :'r1'), '^RST-[0-9]{8}$',
	'restores are numbered RST-nnnnnnnn');
SELECT is((SELECT format('%s %s', status, requires_approval) FROM backup_offline.restore_operation WHERE id = :'r2'),
	'APPROVED f', 'a restore not requiring approval starts APPROVED');
SELECT is((SELECT destination FROM backup_offline.restore_operation WHERE id = :'r_file'),
	jsonb_build_object('file', jsonb_build_object('entity', 'RS_VISIT',
		'path', :'allowed' || '/rs/visits.bin', 'format', 'binary')),
	'a FILE_LEVEL restore''s destination column holds the file');

-- a direct INSERT: every column follows from the validated request
INSERT INTO backup_offline.restore_operation
	(organization_id, snapshot_id, restore_type, scope, destination, request, status, requires_approval, rollback_enabled,
	 requested_by, approved_by, approved_at, started_at, completed_at, validation_results, error, status_reason)
VALUES (:'org_b', :'s_b', 'FILE_LEVEL', '{"clientIds": []}', '{"type": "EXISTING"}',
		:'selective'::jsonb || '{"scope": {"includeEntities": ["RS_CLIENT"]}, "rollbackEnabled": false}', 'COMPLETED', false, false,
		'mallory', 'mallory', now(), now(), now(), '[{"table": "forged"}]', '{"message": "forged"}', 'forged')
RETURNING id AS r_su \gset
SELECT is((SELECT format('%s %s %s %s %s %s %s', organization_id, snapshot_id, restore_type, status, requires_approval,
						 rollback_enabled, requested_by)
			 FROM backup_offline.restore_operation WHERE id = :'r_su'),
	format('%s %s SELECTIVE PENDING_APPROVAL t f postgres', :'org_a', :'s_a'),
	'a direct INSERT gets organization, snapshot, type, status and requester from the validated request and current_user');
SELECT is((SELECT ROW(scope, destination, approved_by, approved_at, started_at, completed_at, validation_results, error, status_reason)::text
			 FROM backup_offline.restore_operation WHERE id = :'r_su'),
	ROW('{"includeEntities": ["RS_CLIENT"]}'::jsonb, '{"type": "NEW_SCHEMA", "tablePrefix": ""}'::jsonb,
		NULL::name, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::jsonb, NULL::jsonb, NULL::text)::text,
	'... and nothing of the forged scope, destination, approval, results or error');
SET LOCAL ROLE t_rs_app_a;
INSERT INTO backup_offline.restore_operation
	(organization_id, snapshot_id, restore_type, scope, destination, request, status, requires_approval, rollback_enabled)
VALUES (:'org_b', :'s_b', 'POINT_IN_TIME', '{}', '{}', :'full'::jsonb || '{"requiresApproval": true}', 'APPROVED', false, false)
RETURNING id AS r_app \gset
RESET ROLE;
SELECT is((SELECT format('%s %s %s %s %s', organization_id, snapshot_id, restore_type, status, requested_by)
			 FROM backup_offline.restore_operation WHERE id = :'r_app'),
	format('%s %s FULL PENDING_APPROVAL t_rs_app_a', :'org_a', :'s_a'),
	'the application''s direct INSERT cannot choose another organization''s snapshot, the type or the status');
SELECT throws_ok(format($q$SET LOCAL ROLE t_rs_app_a; INSERT INTO backup_offline.restore_operation
		(organization_id, snapshot_id, restore_type, scope, destination, request, status, requires_approval, rollback_enabled, approved_by)
		VALUES (%L, %L, 'FULL', '{}', '{}', %L, 'APPROVED', false, false, 'someone')$q$, :'org_a', :'s_a', :'full'), '42501',
	'permission denied for table restore_operation', 'the application cannot even name approved_by in an INSERT');
SELECT throws_ok(format($q$INSERT INTO backup_offline.restore_operation
		(organization_id, snapshot_id, restore_type, scope, destination, request, status, requires_approval, rollback_enabled)
		VALUES (%L, %L, 'FULL', '{}', '{}', %L, 'APPROVED', false, false)$q$, :'org_a', :'s_a', :'full'::jsonb || '{"restoreType": "DIFF"}'),
	'22023', 'invalid restoreType: "DIFF"', 'a direct INSERT is validated like create_restore');

-- ---- the request cannot change -------------------------------------------------------
SELECT is(pg_temp.error_of(format('UPDATE backup_offline.restore_operation SET snapshot_id = %L WHERE id = %L', :'p1', :'r1')),
	format('23514: the request of restore %s cannot change / Cancel it and create a new restore.', :'r1_number'),
	'the snapshot of a restore cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.restore_operation SET scope = '{"includeEntities": ["RS_VISIT"]}' WHERE id = %L$q$, :'r1'),
	'23514', format('the request of restore %s cannot change', :'r1_number'), 'the scope of a restore cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.restore_operation SET destination = '{"type": "NEW_SCHEMA", "schema": "x"}' WHERE id = %L$q$, :'r1'),
	'23514', format('the request of restore %s cannot change', :'r1_number'), 'the destination of a restore cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.restore_operation SET request = request || '{"notes": "x"}' WHERE id = %L$q$, :'r1'),
	'23514', format('the request of restore %s cannot change', :'r1_number'), 'the request of a restore cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.restore_operation SET requires_approval = false WHERE id = %L$q$, :'r1'),
	'23514', format('the request of restore %s cannot change', :'r1_number'), 'requires_approval cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.restore_operation SET requested_by = 't_rs_op_a' WHERE id = %L$q$, :'r1'),
	'23514', format('the request of restore %s cannot change', :'r1_number'), 'the requester of a restore cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.restore_operation SET approved_by = 't_rs_appr_a', approved_at = now() WHERE id = %L$q$, :'r1'),
	'23514', format('restore %s can only be approved on its way from PENDING_APPROVAL to APPROVED', :'r1_number'),
	'approved_by cannot be set without the approval');

-- ---- status transitions ----------------------------------------------------------------
SELECT is(pg_temp.error_of(pg_temp.set_status_sql(:'r1', 'IN_PROGRESS')),
	format('55000: invalid status transition of restore %s from PENDING_APPROVAL to IN_PROGRESS / From PENDING_APPROVAL the status may change to APPROVED, CANCELLED.', :'r1_number'),
	'PENDING_APPROVAL -> IN_PROGRESS is refused even to the job, the hint lists the allowed transitions');
SELECT throws_ok(pg_temp.set_status_sql(:'r1', 'COMPLETED', 't_rs_op_a'), '42501',
	format('only the restore job sets restore %s COMPLETED', :'r1_number'), 'an operator cannot set COMPLETED');
SELECT is(pg_temp.error_of(pg_temp.set_status_sql(:'r2', 'COMPLETED')),
	format('55000: invalid status transition of restore %s from APPROVED to COMPLETED / From APPROVED the status may change to IN_PROGRESS, CANCELLED.', :'r2_number'),
	'APPROVED -> COMPLETED is refused');
SELECT throws_ok(pg_temp.set_status_sql(:'r2', 'PENDING_APPROVAL'), '55000',
	format('invalid status transition of restore %s from APPROVED to PENDING_APPROVAL', :'r2_number'), 'APPROVED -> PENDING_APPROVAL is refused');
SELECT throws_ok(pg_temp.set_status_sql(:'r2', 'IN_PROGRESS', 't_rs_op_a'), '42501',
	format('only the restore job sets restore %s IN_PROGRESS', :'r2_number'), 'an operator cannot set IN_PROGRESS');
SELECT throws_ok(pg_temp.set_status_sql(:'r2', 'IN_PROGRESS', 't_rs_app_a'), '42501',
	format('only the restore job sets restore %s IN_PROGRESS', :'r2_number'), 'the requesting application cannot set IN_PROGRESS');
SELECT throws_ok(format('SELECT backup_offline.run_restore(%L)', :'r2'), '25001',
	'run_restore with wait cannot run in a transaction that has written to the database',
	'run_restore: with wait, refused in a transaction that has written');
-- the job's part, done here by the superuser
SELECT lives_ok(pg_temp.set_status_sql(:'r2', 'IN_PROGRESS'), 'APPROVED -> IN_PROGRESS by the job');
SELECT throws_ok(pg_temp.set_status_sql(:'r2', 'COMPLETED', 't_rs_op_a'), '42501',
	format('only the restore job sets restore %s COMPLETED', :'r2_number'), 'an operator cannot complete a running restore');
SELECT throws_ok(pg_temp.set_status_sql(:'r2', 'FAILED', 't_rs_app_a'), '42501',
	format('only the restore job sets restore %s FAILED', :'r2_number'), 'the application cannot fail a running restore');
SELECT is(backup_offline.cancel_restore(:'r2'), false, 'cancel_restore of an IN_PROGRESS restore that no job runs: false');
SELECT is((SELECT status::text FROM backup_offline.restore_operation WHERE id = :'r2'), 'IN_PROGRESS',
	'... and the restore is still IN_PROGRESS (only its job makes it CANCELLED)');
SELECT is(pg_temp.error_of(pg_temp.set_status_sql(:'r2', 'APPROVED')),
	format('55000: invalid status transition of restore %s from IN_PROGRESS to APPROVED / From IN_PROGRESS the status may change to COMPLETED, FAILED, CANCELLED.', :'r2_number'),
	'IN_PROGRESS -> APPROVED is refused');
SELECT lives_ok(format($q$UPDATE backup_offline.restore_operation SET status = 'COMPLETED', completed_at = now(),
		validation_results = '[]', metrics = '{"tables": 0}' WHERE id = %L$q$, :'r2'), 'IN_PROGRESS -> COMPLETED by the job');
SELECT is(pg_temp.error_of(pg_temp.set_status_sql(:'r2', 'CANCELLED')),
	format('55000: invalid status transition of restore %s from COMPLETED to CANCELLED / From COMPLETED the status may change to ROLLED_BACK.', :'r2_number'),
	'COMPLETED only moves on to ROLLED_BACK, and the hint says so');
SELECT is(backup_offline.cancel_restore(:'r2'), false, 'cancel_restore of a COMPLETED restore: false');
SELECT throws_ok(format('SELECT backup_offline.run_restore(%L, false)', :'r2'), '55000',
	format('restore %s is COMPLETED', :'r2_number'), 'run_restore: a COMPLETED restore does not run again');
SELECT lives_ok(pg_temp.set_status_sql(:'r_file', 'CANCELLED', 't_rs_app_a'), 'PENDING_APPROVAL -> CANCELLED by the application');
SELECT lives_ok(pg_temp.set_status_sql(:'r3', 'IN_PROGRESS') || '; ' || format($q$UPDATE backup_offline.restore_operation
		SET status = 'FAILED', status_reason = 'disk full', error = '{"sqlstate": "53100"}' WHERE id = %L$q$, :'r3'),
	'APPROVED -> IN_PROGRESS -> FAILED by the job');
SELECT is(pg_temp.error_of(pg_temp.set_status_sql(:'r3', 'CANCELLED')),
	format('55000: invalid status transition of restore %s from FAILED to CANCELLED / FAILED is a final status.', :'r3_number'),
	'FAILED is final');

-- ---- approval -------------------------------------------------------------------------
SELECT throws_ok(format('SELECT backup_offline.run_restore(%L, false)', :'r1'), '55000',
	format('restore %s waits for approval', :'r1_number'), 'run_restore: a PENDING_APPROVAL restore does not run');
SELECT throws_ok(pg_temp.set_status_sql(:'r1', 'APPROVED', 't_rs_op_a'), '42501',
	'role "t_rs_op_a" may not approve restores', 'an operator cannot approve (a direct UPDATE)');
SELECT throws_ok(pg_temp.set_status_sql(:'r1', 'APPROVED', 't_rs_app_a'), '42501',
	'role "t_rs_app_a" may not approve restores', 'the requesting application cannot approve its own restore');
SELECT throws_ok(format('SET LOCAL ROLE t_rs_op_a; SELECT backup_offline.approve_restore(%L)', :'r1'), '42501',
	'permission denied for function approve_restore', 'an operator may not call approve_restore');
SELECT throws_ok(format('SET LOCAL ROLE t_rs_appr_b; SELECT backup_offline.approve_restore(%L)', :'r1'), '42704',
	format('restore %s does not exist', :'r1'), 'B''s approver cannot approve A''s restore: it is not visible');
SET LOCAL ROLE t_rs_opappr_a;
SELECT backup_offline.create_restore(:'full') AS r_self \gset
RESET ROLE;
SELECT throws_ok(format('SET LOCAL ROLE t_rs_opappr_a; SELECT backup_offline.approve_restore(%L)', :'r_self'), '42501',
	format('restore %s cannot be approved by its own requester',
		   (SELECT restore_number FROM backup_offline.restore_operation WHERE id = :'r_self')),
	'an approver cannot approve a restore it requested');
SET LOCAL ROLE t_rs_appr_a;
SELECT lives_ok(format('SELECT backup_offline.approve_restore(%L, %L)', :'r1', 'ticket 42'), 'an approver approves');
RESET ROLE;
SELECT is((SELECT format('%s %s %s %s', status, approved_by, approved_at IS NOT NULL, approval_notes)
			 FROM backup_offline.restore_operation WHERE id = :'r1'),
	'APPROVED t_rs_appr_a t ticket 42', 'the approval records status, approver, time and notes');
SELECT throws_ok(format('SET LOCAL ROLE t_rs_appr_a; SELECT backup_offline.approve_restore(%L)', :'r1'), '55000',
	format('restore %s is APPROVED, not waiting for approval', :'r1_number'), 'a restore is approved once');
SELECT throws_ok(format($q$UPDATE backup_offline.restore_operation SET approved_by = 'postgres' WHERE id = %L$q$, :'r1'),
	'23514', format('restore %s can only be approved on its way from PENDING_APPROVAL to APPROVED', :'r1_number'),
	'the approver of an APPROVED restore cannot change');

-- the same application user under another role is still the requester
SELECT set_config('backup_offline.user_id', :'user_1', true) AS u \gset
SET LOCAL ROLE t_rs_app_a;
SELECT backup_offline.create_restore(:'full') AS r_user \gset
RESET ROLE;
SELECT is((SELECT requested_by_user FROM backup_offline.restore_operation WHERE id = :'r_user'), :'user_1'::uuid,
	'the requesting application user is recorded');
SELECT throws_ok(format('SET LOCAL ROLE t_rs_appr_a; SELECT backup_offline.approve_restore(%L)', :'r_user'), '42501',
	format('restore %s cannot be approved by its own requester',
		   (SELECT restore_number FROM backup_offline.restore_operation WHERE id = :'r_user')),
	'the requesting application user cannot approve under an approver role');
SELECT set_config('backup_offline.user_id', :'user_2', true) AS u \gset
SET LOCAL ROLE t_rs_appr_a;
SELECT lives_ok(format('SELECT backup_offline.approve_restore(%L)', :'r_user'), 'another application user approves');
RESET ROLE;
SELECT set_config('backup_offline.user_id', '', true) AS u \gset
SELECT is((SELECT format('%s %s %s', status, approved_by, approved_by_user) FROM backup_offline.restore_operation WHERE id = :'r_user'),
	format('APPROVED t_rs_appr_a %s', :'user_2'), 'the approving application user is recorded');

-- the approver's notes belong to the approval (approved_by and approved_at
-- are fixed by the guard; approval_notes is left writable by the requester)
SET LOCAL ROLE t_rs_app_a;
SELECT backup_offline.create_restore(:'full') AS r_notes \gset
RESET ROLE;
SET LOCAL ROLE t_rs_appr_a;
SELECT lives_ok(format('SELECT backup_offline.approve_restore(%L, %L)', :'r_notes', 'only the visits of January'),
	'an approver approves with a condition in the notes');
RESET ROLE;
SELECT throws_ok(format($q$SET LOCAL ROLE t_rs_app_a; UPDATE backup_offline.restore_operation
						   SET approval_notes = 'no conditions' WHERE id = %L$q$, :'r_notes'), '23514', NULL,
	'the requester cannot rewrite the approver''s notes after the approval');

-- ---- cancel_restore ------------------------------------------------------------------------
SET LOCAL ROLE t_rs_app_a;
SELECT backup_offline.create_restore(:'full') AS r_pend \gset
SELECT is(backup_offline.cancel_restore(:'r_pend'), true, 'cancel_restore of a PENDING_APPROVAL restore: true');
SELECT is(backup_offline.cancel_restore(:'r1'), true, 'cancel_restore of an APPROVED restore: true');
RESET ROLE;
SELECT is((SELECT array_agg(status::text || ' ' || status_reason ORDER BY created_at, restore_number)
			 FROM backup_offline.restore_operation WHERE id IN (:'r_pend', :'r1')),
	ARRAY['CANCELLED cancelled by t_rs_app_a', 'CANCELLED cancelled by t_rs_app_a'], '... both are CANCELLED, with the reason');
SELECT is(backup_offline.cancel_restore(:'r1'), false, 'cancel_restore of a CANCELLED restore: false');
SELECT throws_ok(format('SELECT backup_offline.cancel_restore(%L)', :'unknown'), '42704',
	format('restore %s does not exist', :'unknown'), 'cancel_restore of an unknown restore');
SELECT throws_ok($$SELECT backup_offline.cancel_restore(NULL)$$, '22004', 'id is required', 'cancel_restore: a NULL id');
SELECT throws_ok(format('SET LOCAL ROLE t_rs_appr_a; SELECT backup_offline.approve_restore(%L)', :'r_pend'), '55000',
	format('restore %s is CANCELLED, not waiting for approval',
		   (SELECT restore_number FROM backup_offline.restore_operation WHERE id = :'r_pend')),
	'a CANCELLED restore is not approved');
SELECT throws_ok(format('SELECT backup_offline.approve_restore(%L)', :'unknown'), '42704',
	format('restore %s does not exist', :'unknown'), 'approve_restore of an unknown restore');
SELECT is(pg_temp.error_of(pg_temp.set_status_sql(:'r1', 'APPROVED')),
	format('55000: invalid status transition of restore %s from CANCELLED to APPROVED / CANCELLED is a final status.', :'r1_number'),
	'CANCELLED is final');
SELECT throws_ok(format('SELECT backup_offline.run_restore(%L, false)', :'r1'), '55000',
	format('restore %s is CANCELLED', :'r1_number'), 'run_restore: a CANCELLED restore does not run');
SELECT throws_ok(format('SELECT backup_offline.run_restore(%L, false)', :'unknown'), '42704',
	format('restore %s does not exist', :'unknown'), 'run_restore: an unknown restore');
SET LOCAL ROLE t_rs_appr_a;
SELECT is(backup_offline.cancel_restore(:'r3'), false, 'an approver may call cancel_restore (here on a FAILED restore: false)');
RESET ROLE;

-- ---- audit of restore changes --------------------------------------------------------------
SELECT is((SELECT array_agg(action) FROM pg_temp.audit_entries(:'r1')), ARRAY['create', 'status_change', 'status_change'],
	'a restore''s creation, approval and cancellation were audited, the refused changes not');
SELECT is(pg_temp.audited_statuses(:'r1'), ARRAY['PENDING_APPROVAL -> APPROVED', 'APPROVED -> CANCELLED'],
	'the status changes are recorded with old and new status');
SELECT is((SELECT array_agg(actor_role::text) FROM pg_temp.audit_entries(:'r1')), ARRAY['t_rs_app_a', 't_rs_appr_a', 't_rs_app_a'],
	'each entry names the role that made the change');
SELECT is((SELECT details->'changes'->'approved_by'->>'new' FROM pg_temp.audit_entries(:'r1')
			WHERE details->'changes'->'status'->>'new' = 'APPROVED'), 't_rs_appr_a', 'the approval entry records the approver');
SELECT is((SELECT array_agg(DISTINCT organization_id) FROM pg_temp.audit_entries(:'r1')), ARRAY[:'org_a'::uuid],
	'the entries belong to the restore''s organization');
SELECT is((SELECT details->'new'->>'status' FROM pg_temp.audit_entries(:'r1') WHERE action = 'create'), 'PENDING_APPROVAL',
	'the creation entry holds the new row');
SELECT is(pg_temp.audited_statuses(:'r2'), ARRAY['APPROVED -> IN_PROGRESS', 'IN_PROGRESS -> COMPLETED'],
	'the job''s status changes are audited');
SELECT is((SELECT array_agg(actor_user_id) FROM pg_temp.audit_entries(:'r_user') WHERE action = 'status_change'),
	ARRAY[:'user_2'::uuid], 'the approval entry names the approving application user');
SELECT is((SELECT array_agg(details->'new'->>'status') FROM pg_temp.audit_entries(:'r_su')), ARRAY['PENDING_APPROVAL'],
	'a direct INSERT is audited with the row the guard made of it');

-- ---- privileges and row-level security -----------------------------------------------------
SET LOCAL ROLE t_rs_app_b;
SELECT backup_offline.create_restore(jsonb_build_object('restoreType', 'FULL', 'snapshotId', :'s_b')) AS r_b \gset
RESET ROLE;
SELECT is((SELECT organization_id FROM backup_offline.restore_operation WHERE id = :'r_b'), :'org_b'::uuid,
	'B''s application restores B''s snapshot');

SET LOCAL ROLE t_rs_app_a;
SELECT is((SELECT array_agg(id) FROM backup_offline.restore_operation WHERE id IN (:'r1', :'r_b')), ARRAY[:'r1'::uuid],
	'A''s application sees A''s restore, not B''s');
SELECT is((SELECT count(*) FROM backup_offline.restore_operation WHERE organization_id <> :'org_a'), 0::bigint,
	'A''s application sees no restore of another organization');
SELECT throws_ok(format('SELECT backup_offline.cancel_restore(%L)', :'r_b'), '42704', format('restore %s does not exist', :'r_b'),
	'A''s application cannot cancel B''s restore: it is not visible');
SELECT throws_ok(pg_temp.cr(jsonb_build_object('restoreType', 'FULL', 'snapshotId', :'s_b')), '42704',
	format('snapshot %s does not exist', :'s_b'), 'A''s application cannot restore B''s snapshot: it is not visible');
SELECT throws_ok(pg_temp.cr(:'pit'::jsonb || jsonb_build_object('configurationId', :'c_b',
															  'scope', '{"restoreToTimestamp": "2025-03-01T00:00:00Z"}'::jsonb)), '42704',
	format('no restorable snapshot of configuration %s at or before 2025-03-01 00:00:00+00', :'c_b'),
	'A''s application cannot restore B''s configuration to a point in time');
SELECT throws_ok(format($q$SELECT set_config('backup_offline.organization_id', %L, true);
						   SELECT count(*) FROM backup_offline.restore_operation$q$, :'org_b'), '42501',
	format('role "t_rs_app_a" is not a member of organization %s', :'org_b'),
	'A''s application cannot choose B to read its restores');
RESET ROLE;
SELECT is((SELECT status::text FROM backup_offline.restore_operation WHERE id = :'r_b'), 'PENDING_APPROVAL',
	'B''s restore was left as it was');

SET LOCAL ROLE t_rs_app_b;
SELECT is((SELECT array_agg(id) FROM backup_offline.restore_operation WHERE id IN (:'r1', :'r_b')), ARRAY[:'r_b'::uuid],
	'B''s application sees B''s restore, not A''s');
RESET ROLE;

-- a pooled application role chooses the organization per transaction
SET LOCAL ROLE t_rs_pool;
SELECT set_config('backup_offline.organization_id', :'org_b', true) AS chosen \gset
SELECT is((SELECT array_agg(id) FROM backup_offline.restore_operation WHERE id IN (:'r1', :'r_b')), ARRAY[:'r_b'::uuid],
	'a pooled role that chose B sees B''s restore only');
SELECT throws_ok(pg_temp.cr(:'full'), '42704', format('snapshot %s does not exist', :'s_a'),
	'a pooled role that chose B cannot restore A''s snapshot');
SELECT set_config('backup_offline.organization_id', '', true) AS chosen \gset
RESET ROLE;

SET LOCAL ROLE t_rs_auditor;
SELECT is((SELECT count(*) FROM backup_offline.restore_operation WHERE id IN (:'r1', :'r_b')), 2::bigint,
	'the auditor reads the restores of every organization');
SELECT throws_ok(pg_temp.cr(:'full'), '42501', 'permission denied for function create_restore', 'the auditor cannot create restores');
SELECT throws_ok(format('SELECT backup_offline.cancel_restore(%L)', :'r_b'), '42501', 'permission denied for function cancel_restore',
	'the auditor cannot cancel restores');
SELECT throws_ok(format('SELECT backup_offline.approve_restore(%L)', :'r_b'), '42501', 'permission denied for function approve_restore',
	'the auditor cannot approve restores');
RESET ROLE;
SELECT throws_ok(pg_temp.set_status_sql(:'r_b', 'CANCELLED', 't_rs_auditor'), '42501',
	'permission denied for table restore_operation', 'the auditor cannot UPDATE restore_operation');

SELECT throws_ok('SET LOCAL ROLE t_rs_appr_a; ' || pg_temp.cr(:'full'), '42501', 'permission denied for function create_restore',
	'an approver cannot create restores');
SELECT throws_ok(format($q$SET LOCAL ROLE t_rs_appr_a; INSERT INTO backup_offline.restore_operation
		(organization_id, snapshot_id, restore_type, scope, destination, request, status, requires_approval, rollback_enabled)
		VALUES (%L, %L, 'FULL', '{}', '{}', %L, 'PENDING_APPROVAL', true, true)$q$, :'org_a', :'s_a', :'full'), '42501',
	'permission denied for table restore_operation', 'an approver cannot INSERT a restore either');
SELECT throws_ok(format('SET LOCAL ROLE t_rs_appr_a; SELECT backup_offline.run_restore(%L, false)', :'r_user'), '42501',
	'permission denied for function run_restore', 'an approver cannot run restores');
SELECT throws_ok(format('SET LOCAL ROLE t_rs_app_a; DELETE FROM backup_offline.restore_operation WHERE id = %L', :'r_user'), '42501',
	'permission denied for table restore_operation', 'the application cannot DELETE a restore');


-- ---- in place ------------------------------------------------------------------
\set in_place '{"restoreType": "FULL", "snapshotId": "5a000000-0000-4000-8000-00000000000a", "destination": {"type": "IN_PLACE"}}'
SELECT is(backup_offline.validate_restore(:'in_place'::jsonb || '{"conflictResolutionStrategy": "MERGE"}') - 'snapshotId' - 'configurationId' - 'organizationId',
	'{"restoreType": "FULL", "scope": {}, "destination": {"type": "IN_PLACE"}, "conflictResolutionStrategy": "MERGE",
	  "requiresApproval": true, "rollbackEnabled": true}'::jsonb,
	'IN_PLACE: the normalised request keeps the strategy, approval and rollback on by default');
SELECT throws_ok(pg_temp.vr(:'in_place'::jsonb || '{"requiresApproval": false}'), '22023',
	'an in-place restore always requires approval (requiresApproval)', 'IN_PLACE without approval is refused');
SELECT throws_ok(pg_temp.vr(:'in_place'::jsonb || '{"destination": {"type": "IN_PLACE", "tablePrefix": "x_"}}'), '22023',
	'an IN_PLACE restore writes into the tables of the snapshot: leave destination.schema and destination.tablePrefix out',
	'IN_PLACE with a table prefix is refused');
SELECT throws_ok(pg_temp.vr(:'in_place'::jsonb || '{"destination": {"type": "SOMEWHERE"}}'), '22023',
	'invalid destination.type: "SOMEWHERE"', 'an unknown destination type');
SELECT throws_ok(pg_temp.vr(:'in_place'::jsonb || '{"conflictResolutionStrategy": "LAST_WINS"}'), '22023',
	'invalid conflictResolutionStrategy: "LAST_WINS"', 'an unknown strategy');
SELECT throws_ok(pg_temp.vr(:'in_place'::jsonb || '{"conflictResolutionStrategy": "NEWEST_WINS"}'), '22023',
	'conflictResolutionStrategy NEWEST_WINS needs the time each row last changed, and table t_rs.clients has no modified_at_column in entity_registry',
	'NEWEST_WINS needs a modified_at_column for every table of the scope');
SELECT throws_ok($$UPDATE backup_offline.entity_registry SET modified_at_column = 'name' WHERE entity_type = 'RS_CLIENT'$$, '42804',
	'invalid modified_at_column: column "name" of table t_rs.clients is not a timestamp or date',
	'modified_at_column must be a timestamp or date column');
SELECT throws_ok($$SELECT backup_offline.register_entity('RS_OTHER', 't_rs.visits', '{"modifiedAtColumn": "changed_at"}')$$, '42703',
	'invalid modified_at_column: table t_rs.visits has no column "changed_at"', 'modified_at_column must exist');
ALTER TABLE t_rs.clients ADD COLUMN changed_at timestamptz;
UPDATE backup_offline.entity_registry SET modified_at_column = 'changed_at' WHERE entity_type = 'RS_CLIENT';
SELECT throws_ok(pg_temp.vr(:'in_place'::jsonb || '{"conflictResolutionStrategy": "OLDEST_WINS"}'), '22023',
	'conflictResolutionStrategy OLDEST_WINS needs the time each row last changed, and table t_rs.visits has no modified_at_column in entity_registry',
	'... every table: visits still has none');
SELECT lives_ok(pg_temp.vr(:'in_place'::jsonb || '{"conflictResolutionStrategy": "OLDEST_WINS", "scope": {"includeEntities": ["RS_CLIENT"]}}'),
	'OLDEST_WINS over the tables that name their modified_at_column');
ALTER TABLE t_rs.visits RENAME TO visits_gone;
SELECT throws_ok(pg_temp.vr(:'in_place'), '42P01',
	format('table t_rs.visits of snapshot %s does not exist: an IN_PLACE restore writes into it', :'s_a_number'),
	'IN_PLACE into a table that no longer exists is refused');
ALTER TABLE t_rs.visits_gone RENAME TO visits;
SELECT throws_ok(pg_temp.vr(:'file_level'::jsonb || '{"destination": {"type": "IN_PLACE"}, "file": {"entity": "RS_VISIT", "path": "/x"}}'),
	'22023', NULL, 'FILE_LEVEL in place is refused');

-- rollback_restore: only COMPLETED in-place restores, only through the job
SELECT throws_ok(format('SELECT backup_offline.rollback_restore(%L)', :'r2'), '55000',
	format('restore %s wrote into a schema or file of its own, not in place', :'r2_number'),
	'a restore into a new schema is not rolled back');
SELECT backup_offline.create_restore(:'in_place') AS r_ip \gset
SELECT throws_ok(format('SELECT backup_offline.rollback_restore(%L)', :'r_ip'), '55000',
	format('restore %s is PENDING_APPROVAL', (SELECT restore_number FROM backup_offline.restore_operation WHERE id = :'r_ip')),
	'a restore that has not run is not rolled back');
SELECT throws_ok($$SELECT backup_offline.rollback_restore(NULL)$$, '22004', NULL, 'rollback_restore(NULL)');
SELECT throws_ok(format('SELECT backup_offline.rollback_restore(%L)', :'unknown'), '42704', NULL, 'rollback_restore of an unknown restore');
SELECT throws_ok(pg_temp.set_status_sql(:'r2', 'ROLLED_BACK', 't_rs_op_a'), '42501', NULL,
	'only the job sets ROLLED_BACK');
SELECT throws_ok(format($q$SET LOCAL ROLE t_rs_adm_a; INSERT INTO backup_offline.restore_conflict (restore_id, organization_id,
		table_schema, table_name, record_key, conflict_type, backup_version, conflicting_fields)
		VALUES (%L, %L, 't_rs', 'clients', '{}', 'BACKUP_ONLY', '{}', '[]')$q$, :'r_ip', :'org_a'), '42501',
	'permission denied for table restore_conflict', 'nobody but the job writes restore_conflict, not even an administrator');
RESET ROLE;
-- conflicts are visible per organization
INSERT INTO backup_offline.restore_conflict (restore_id, organization_id, table_schema, table_name, record_key, conflict_type,
	backup_version, conflicting_fields)
VALUES (:'r_ip', :'org_a', 't_rs', 'clients', '{"id": 1}', 'BACKUP_ONLY', '{"id": 1}', '[]');
SET LOCAL ROLE t_rs_app_a;
SELECT is((SELECT count(*) FROM backup_offline.restore_conflict WHERE restore_id = :'r_ip'), 1::bigint,
	'the application of organization A sees its conflict');
SET LOCAL ROLE t_rs_app_b;
SELECT is((SELECT count(*) FROM backup_offline.restore_conflict WHERE restore_id = :'r_ip'), 0::bigint,
	'another organization does not see it');
RESET ROLE;

CREATE TEMP TABLE roles (r text, n serial);
INSERT INTO roles (r) VALUES ('backup_offline_admin'), ('backup_offline_operator'), ('backup_offline_approver'),
	('backup_offline_auditor'), ('backup_offline_app'), ('public');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_function_privilege(r, 'backup_offline.create_restore(jsonb)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_app'], 'who may call create_restore');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_function_privilege(r, 'backup_offline.approve_restore(uuid, text)', 'EXECUTE')),
	ARRAY['backup_offline_approver'], 'who may call approve_restore');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_function_privilege(r, 'backup_offline.cancel_restore(uuid)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver', 'backup_offline_app'], 'who may call cancel_restore');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_function_privilege(r, 'backup_offline.run_restore(uuid, boolean)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_app'], 'who may call run_restore');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_table_privilege(r, 'backup_offline.restore_operation', 'SELECT')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver', 'backup_offline_auditor', 'backup_offline_app'],
	'every role of the extension, and not PUBLIC, reads restore_operation');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_any_column_privilege(r, 'backup_offline.restore_operation', 'INSERT')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_app'], 'who may INSERT into restore_operation');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles, unnest(ARRAY['DELETE', 'TRUNCATE']) p
			WHERE has_table_privilege(r, 'backup_offline.restore_operation', p)), NULL,
	'no role may DELETE or TRUNCATE restores');
SELECT is((SELECT array_agg(r || ' ' || c ORDER BY n, c) FROM roles,
			unnest(ARRAY['organization_id', 'snapshot_id', 'restore_type', 'scope', 'destination', 'request', 'requires_approval',
						 'rollback_enabled', 'requested_by', 'approved_by', 'approved_at', 'validation_results', 'metrics', 'error',
						 'started_at', 'completed_at']) c
			WHERE has_column_privilege(r, 'backup_offline.restore_operation', c, 'UPDATE')), NULL,
	'no role may UPDATE the request, the approver or the results');

SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_function_privilege(r, 'backup_offline.rollback_restore(uuid)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver', 'backup_offline_app'], 'who may call rollback_restore');
SELECT is((SELECT array_agg(r || ' ' || t ORDER BY n, t) FROM roles, unnest(ARRAY['restore_conflict', 'restore_rollback']) t
			WHERE has_table_privilege(r, 'backup_offline.' || t, 'SELECT')),
	ARRAY['backup_offline_admin restore_conflict', 'backup_offline_admin restore_rollback',
		  'backup_offline_operator restore_conflict', 'backup_offline_operator restore_rollback',
		  'backup_offline_approver restore_rollback', 'backup_offline_auditor restore_rollback',
		  'backup_offline_app restore_conflict', 'backup_offline_app restore_rollback'],
	'every role reads restore_rollback; restore_conflict (whole rows) not approvers and auditors; not PUBLIC');
SELECT is((SELECT array_agg(r || ' ' || t || ' ' || p ORDER BY n, t, p) FROM roles,
			unnest(ARRAY['restore_conflict', 'restore_rollback']) t, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
			WHERE has_table_privilege(r, 'backup_offline.' || t, p)), NULL,
	'no role writes restore_conflict or restore_rollback');

SELECT * FROM finish();
ROLLBACK;
