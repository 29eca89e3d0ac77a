-- The backup API's errors, the snapshot status machine and its audit trail,
-- the privileges and row-level security of snapshots, and the jobs'
-- bookkeeping on configurations.
--
-- No backup runs here: a job worker cannot see this transaction's
-- uncommitted rows, so every run_backup call below is one that must fail
-- before a job is started.  Snapshot rows are written directly, as the
-- superuser (what the job worker does as the extension owner), to drive
-- the status machine (backup_snapshot_guard).
BEGIN;
SELECT plan(90);
\ir lib/errors.psql
-- pgTAP keeps its state in temporary tables: let the roles under test write them
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA %1$I TO PUBLIC',
				   pg_my_temp_schema()::regnamespace);
END $$;

\set org_a 'aaaaaaaa-0000-4000-8000-0000000000a1'
\set org_b 'bbbbbbbb-0000-4000-8000-0000000000b1'
\set unknown 'dddddddd-0000-4000-8000-00000000dead'

CREATE SCHEMA t_bk;
CREATE TABLE t_bk.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date);
CREATE TABLE t_bk.secret (id integer PRIMARY KEY, note text);
CREATE VIEW t_bk.visits_view AS SELECT * FROM t_bk.visits;
GRANT USAGE ON SCHEMA t_bk TO PUBLIC;
GRANT SELECT ON t_bk.visits, t_bk.visits_view TO PUBLIC;
SELECT backup_offline.register_entity('BK_VISIT', 't_bk.visits', '{"clientIdColumn": "client_id"}') AS entity_id \gset

CREATE ROLE t_bk_app_a IN ROLE backup_offline_app;
CREATE ROLE t_bk_app_b IN ROLE backup_offline_app;
CREATE ROLE t_bk_pool IN ROLE backup_offline_app;
CREATE ROLE t_bk_op_a IN ROLE backup_offline_operator;
CREATE ROLE t_bk_appr_a IN ROLE backup_offline_approver;
CREATE ROLE t_bk_auditor IN ROLE backup_offline_auditor;
CREATE ROLE t_bk_admin IN ROLE backup_offline_admin;
INSERT INTO backup_offline.organization_member (role_name, organization_id) VALUES
	('t_bk_app_a', :'org_a'), ('t_bk_app_b', :'org_b'), ('t_bk_pool', NULL),
	('t_bk_op_a', :'org_a'), ('t_bk_appr_a', :'org_a');

CREATE FUNCTION pg_temp.config(org uuid, name text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('organizationId', org, 'name', name,
		'scope', '{"includeEntities": ["BK_VISIT"]}'::jsonb,
		'schedule', '{"frequency": "DAILY", "startTime": "01:00", "timezone": "UTC"}'::jsonb,
		'retention', '{"retentionDays": 30}'::jsonb,
		'storageDestination', '{"type": "AWS_S3", "bucket": "care-backups"}'::jsonb,
		'checksumAlgorithm', 'BLAKE3')
$$;
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_a', 'A main')) AS c_main \gset
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_a', 'A second')) AS c_second \gset
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_a', 'A paused')) AS c_paused \gset
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_a', 'A deleted')) AS c_deleted \gset
SELECT backup_offline.create_backup_configuration(pg_temp.config(:'org_b', 'B main')) AS c_b \gset
SELECT backup_offline.set_backup_configuration_status(:'c_paused', 'PAUSED') IS NULL AS paused,
	   backup_offline.delete_backup_configuration(:'c_deleted') IS NULL AS deleted \gset

-- A snapshot row as the job worker writes it: every NOT NULL column given.
CREATE FUNCTION pg_temp.insert_snapshot_sql(cfg uuid, status text DEFAULT 'PENDING', btype text DEFAULT 'FULL',
											parent uuid DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
	SELECT format($q$INSERT INTO backup_offline.backup_snapshot
		(organization_id, configuration_id, backup_type, requested_type, status, trigger, parent_snapshot_id,
		 requested_by, storage_location, checksum_algorithm, encrypted, compressed)
		VALUES ((SELECT organization_id FROM backup_offline.backup_configuration WHERE id = %1$L), %1$L,
				%2$L, %2$L, %3$L, 'MANUAL', %4$L, current_user, '{}', 'BLAKE3', false, false)$q$,
		cfg, btype, status, parent)
$$;
CREATE FUNCTION pg_temp.new_snapshot(cfg uuid) RETURNS backup_offline.backup_snapshot LANGUAGE plpgsql AS $$
DECLARE
	s backup_offline.backup_snapshot;
BEGIN
	EXECUTE pg_temp.insert_snapshot_sql(cfg) || ' RETURNING *' INTO STRICT s;
	RETURN s;
END
$$;
-- The audit entries of an object, wherever they are within this
-- transaction: audit_pending until they are chained at commit, audit_log after.
CREATE FUNCTION pg_temp.audit_entries(otype text, oid_ text)
RETURNS TABLE (action text, organization_id uuid, details jsonb) LANGUAGE sql AS $$
	SELECT e.action, e.organization_id, e.details FROM (
		SELECT 1 AS src, l.id AS n, l.action, l.organization_id, l.details FROM backup_offline.audit_log l
		 WHERE l.object_type = otype AND l.object_id = oid_
		UNION ALL
		SELECT 2, p.seq, p.action, p.organization_id, p.details FROM backup_offline.audit_pending p
		 WHERE p.object_type = otype AND p.object_id = oid_) e
	ORDER BY e.src, e.n
$$;

SELECT id AS s1, snapshot_number AS s1_number FROM pg_temp.new_snapshot(:'c_main') \gset
SELECT id AS sb, snapshot_number AS sb_number FROM pg_temp.new_snapshot(:'c_b') \gset

-- ---- run_backup, cancel_backup, verify_snapshot, materialize_snapshot, rows_digest: bad calls
SELECT throws_ok($$SELECT backup_offline.run_backup(NULL)$$, '22004', 'configuration_id is required',
	'run_backup: a NULL configuration id');
SELECT throws_ok(format('SELECT backup_offline.run_backup(%L, %L)', :'c_main', 'WEEKLY'), '22023', 'invalid backup_type: "WEEKLY"',
	'run_backup: an unknown backup_type');
SELECT throws_ok(format('SELECT backup_offline.run_backup(%L, %L)', :'c_main', 'full'), '22023', 'invalid backup_type: "full"',
	'run_backup: backup types are upper case');
SELECT throws_ok(format('SELECT backup_offline.run_backup(%L)', :'unknown'), '42704',
	format('backup configuration %s does not exist', :'unknown'), 'run_backup: an unknown configuration');
SELECT throws_ok(format('SET LOCAL ROLE t_bk_app_a; SELECT backup_offline.run_backup(%L)', :'c_b'), '42704',
	format('backup configuration %s does not exist', :'c_b'),
	'run_backup: a configuration of another organization is not visible to the application');
SELECT throws_ok(format('SELECT backup_offline.run_backup(%L)', :'c_paused'), '55000',
	'backup configuration "A paused" is PAUSED', 'run_backup: a PAUSED configuration does not run');
SELECT throws_ok(format('SET LOCAL ROLE t_bk_app_a; SELECT backup_offline.run_backup(%L, %L, false)', :'c_paused', 'FULL'), '55000',
	'backup configuration "A paused" is PAUSED', 'run_backup: the application gets the same answer for its own PAUSED configuration');
SELECT throws_ok(format('SELECT backup_offline.run_backup(%L)', :'c_deleted'), '55000',
	'backup configuration "A deleted" is deleted', 'run_backup: a deleted configuration does not run');
-- (a PENDING snapshot that no job runs, like s1, is left for recovery and
-- does not block: backup_jobs.sh shows 55006 for one a job really runs)
SELECT throws_ok(format('SELECT backup_offline.run_backup(%L)', :'c_main'), '25001',
	'run_backup with wait cannot run in a transaction that has written to the database',
	'run_backup: with wait, refused in a transaction that has written (the job would wait for its locks)');
SELECT throws_ok(format('SELECT backup_offline.cancel_backup(%L)', :'unknown'), '42704',
	format('snapshot %s does not exist', :'unknown'), 'cancel_backup: an unknown snapshot');
SELECT is(backup_offline.cancel_backup(:'s1'), false, 'cancel_backup: false for a snapshot no job is running');
SELECT is(backup_offline.cancel_backup(NULL), NULL, 'cancel_backup is strict');
SELECT throws_ok(format('SELECT backup_offline.verify_snapshot(%L, %L)', :'s1', 'deep'), '22023', 'invalid level: "deep"',
	'verify_snapshot: an unknown level');
SELECT throws_ok($$SELECT backup_offline.verify_snapshot(NULL)$$, '22004', 'snapshot_id is required',
	'verify_snapshot: a NULL snapshot id');
SELECT throws_ok(format('SELECT backup_offline.verify_snapshot(%L)', :'unknown'), '42704',
	format('snapshot %s does not exist', :'unknown'), 'verify_snapshot: an unknown snapshot');
SELECT throws_ok(format('SELECT backup_offline.verify_snapshot(%L, %L)', :'s1', 'checksums'), '55000',
	format('snapshot %s is PENDING: it has no manifest', :'s1_number'), 'verify_snapshot: a PENDING snapshot has nothing to verify');
SELECT throws_ok(format('SELECT backup_offline.materialize_snapshot(NULL, %L)', 't_bk_restored'), '22004', 'snapshot_id is required',
	'materialize_snapshot: a NULL snapshot id');
SELECT throws_ok(format('SELECT backup_offline.materialize_snapshot(%L, NULL)', :'s1'), '22004', 'target_schema is required',
	'materialize_snapshot: a NULL target schema');
SELECT throws_ok(format('SELECT backup_offline.materialize_snapshot(%L, %L)', :'unknown', 't_bk_restored'), '42704',
	format('snapshot %s does not exist', :'unknown'), 'materialize_snapshot: an unknown snapshot');
SELECT throws_ok(format('SELECT backup_offline.materialize_snapshot(%L, %L)', :'s1', 't_bk_restored'), '55000',
	format('snapshot %s is PENDING: it has no manifest', :'s1_number'), 'materialize_snapshot: a PENDING snapshot');
SELECT hasnt_schema('t_bk_restored', 'the failed materialisations left no schema behind');
SELECT throws_ok($$SET LOCAL ROLE t_bk_app_a; SELECT backup_offline.rows_digest('t_bk.secret')$$, '42501',
	'permission denied for table secret', 'rows_digest: a table the role cannot SELECT');
SELECT throws_ok($$SELECT backup_offline.rows_digest('t_bk.visits_view')$$, '42809', '"visits_view" is not a table',
	'rows_digest: a view');
SELECT is(backup_offline.rows_digest('t_bk.visits')->>'rowCount', '0', 'rows_digest: an empty readable table has no rows');

-- ---- the snapshot status machine -------------------------------------------
SELECT throws_ok(pg_temp.insert_snapshot_sql(:'c_second', 'COMPLETED'), '23514',
	'invalid status: a new snapshot cannot be COMPLETED', 'a snapshot cannot be inserted COMPLETED');
SELECT throws_ok(pg_temp.insert_snapshot_sql(:'c_second', 'IN_PROGRESS'), '23514',
	'invalid status: a new snapshot cannot be IN_PROGRESS', 'a snapshot cannot be inserted IN_PROGRESS');
SELECT is((SELECT status::text FROM backup_offline.backup_snapshot WHERE id = :'s1'), 'PENDING',
	'a snapshot inserted with all its required columns starts PENDING');
SELECT throws_ok(pg_temp.insert_snapshot_sql(:'c_main'), '23505',
	'duplicate key value violates unique constraint "backup_snapshot_one_running"',
	'a second PENDING snapshot of the same configuration is refused');
SELECT is(pg_temp.error_of(format($q$UPDATE backup_offline.backup_snapshot SET status = 'COMPLETED', manifest = '{"tables": []}' WHERE id = %L$q$, :'s1')),
	format('23514: invalid status transition of snapshot %s from PENDING to COMPLETED / From PENDING the status may change to IN_PROGRESS, FAILED, CANCELLED.', :'s1_number'),
	'PENDING -> COMPLETED is refused, the hint lists the allowed transitions');
SELECT lives_ok(format($q$UPDATE backup_offline.backup_snapshot SET status = 'IN_PROGRESS', started_at = now() WHERE id = %L$q$, :'s1'),
	'PENDING -> IN_PROGRESS');
SELECT throws_ok(pg_temp.insert_snapshot_sql(:'c_main'), '23505',
	'duplicate key value violates unique constraint "backup_snapshot_one_running"',
	'a new PENDING snapshot is refused while one is IN_PROGRESS');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_snapshot SET status = 'COMPLETED' WHERE id = %L$q$, :'s1'), '23514',
	format('snapshot %s cannot complete without a manifest', :'s1_number'), 'IN_PROGRESS -> COMPLETED without a manifest is refused');
SELECT lives_ok(format($q$UPDATE backup_offline.backup_snapshot
						   SET status = 'COMPLETED', completed_at = now(), checksum = 'c0ffee',
							   manifest = '{"tables": [{"schema": "t_bk", "name": "visits", "rowsDigest": "manifest-marker-9f3e"}]}'
						 WHERE id = %L$q$, :'s1'),
	'IN_PROGRESS -> COMPLETED with a manifest');
SELECT is(pg_temp.error_of(format($q$UPDATE backup_offline.backup_snapshot SET status = 'PENDING' WHERE id = %L$q$, :'s1')),
	format('23514: invalid status transition of snapshot %s from COMPLETED to PENDING / From COMPLETED the status may change to CORRUPTED, EXPIRED, DELETED.', :'s1_number'),
	'COMPLETED -> PENDING is refused');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_snapshot SET backup_type = 'INCREMENTAL' WHERE id = %L$q$, :'s1'), '23514',
	format('the identity of snapshot %s cannot change', :'s1_number'), 'the backup type of a snapshot cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_snapshot SET configuration_id = %L WHERE id = %L$q$, :'c_second', :'s1'), '23514',
	format('the identity of snapshot %s cannot change', :'s1_number'), 'the configuration of a snapshot cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_snapshot SET manifest = '{"tables": []}' WHERE id = %L$q$, :'s1'), '23514',
	format('the manifest of snapshot %s cannot change', :'s1_number'), 'the manifest of a COMPLETED snapshot cannot change');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_snapshot SET checksum = 'beef' WHERE id = %L$q$, :'s1'), '23514',
	format('the manifest of snapshot %s cannot change', :'s1_number'), 'the checksum of a COMPLETED snapshot cannot change');
SELECT is((SELECT status::text || ' ' || backup_type || ' ' || (manifest->'tables'->0->>'rowsDigest') || ' ' || checksum
			 FROM backup_offline.backup_snapshot WHERE id = :'s1'),
	'COMPLETED FULL manifest-marker-9f3e c0ffee', 'the refused changes left the snapshot as it was');
SELECT throws_ok(pg_temp.insert_snapshot_sql(:'c_second', 'PENDING', 'FULL', :'s1'), '23514',
	'new row for relation "backup_snapshot" violates check constraint "parent_matches_type"',
	'a FULL snapshot with a parent violates parent_matches_type');
SELECT throws_ok(pg_temp.insert_snapshot_sql(:'c_second', 'PENDING', 'INCREMENTAL', NULL), '23514',
	'new row for relation "backup_snapshot" violates check constraint "parent_matches_type"',
	'an INCREMENTAL snapshot without a parent violates parent_matches_type');
SELECT lives_ok(pg_temp.insert_snapshot_sql(:'c_main'), 'once the snapshot is COMPLETED its configuration may run again');
-- a stopped snapshot's way out: CANCELLED -> DELETED, and DELETED is final
SELECT id AS s3, snapshot_number AS s3_number FROM pg_temp.new_snapshot(:'c_second') \gset
SELECT lives_ok(format($q$UPDATE backup_offline.backup_snapshot SET status = 'CANCELLED' WHERE id = %1$L;
						   UPDATE backup_offline.backup_snapshot SET status = 'DELETED' WHERE id = %1$L$q$, :'s3'),
	'PENDING -> CANCELLED -> DELETED');
SELECT is(pg_temp.error_of(format($q$UPDATE backup_offline.backup_snapshot SET status = 'COMPLETED' WHERE id = %L$q$, :'s3')),
	format('23514: invalid status transition of snapshot %s from DELETED to COMPLETED / DELETED is a final status.', :'s3_number'),
	'DELETED is final, and the hint says so');

-- ---- audit of snapshot changes ---------------------------------------------
SELECT is((SELECT array_agg(action) FROM pg_temp.audit_entries('backup_snapshot', :'s1')),
	ARRAY['create', 'status_change', 'status_change'],
	'the snapshot''s creation and each status change were audited, the refused changes not');
SELECT is((SELECT array_agg((details->'changes'->'status'->>'old') || ' -> ' || (details->'changes'->'status'->>'new'))
			 FROM pg_temp.audit_entries('backup_snapshot', :'s1') WHERE action = 'status_change'),
	ARRAY['PENDING -> IN_PROGRESS', 'IN_PROGRESS -> COMPLETED'], 'the status changes are recorded with old and new status');
SELECT is((SELECT array_agg(DISTINCT organization_id) FROM pg_temp.audit_entries('backup_snapshot', :'s1')),
	ARRAY[:'org_a'::uuid], 'the entries belong to the snapshot''s organization');
SELECT is((SELECT details->'new'->>'status' FROM pg_temp.audit_entries('backup_snapshot', :'s1') WHERE action = 'create'),
	'PENDING', 'the creation entry holds the new row');
SELECT is((SELECT count(*) FROM pg_temp.audit_entries('backup_snapshot', :'s1')
			WHERE details->'new' ? 'manifest' OR details->'changes' ? 'manifest' OR details->'old' ? 'manifest'
			   OR details::text LIKE '%manifest-marker-9f3e%'), 0::bigint,
	'the manifest is not copied into the audit details');
SELECT is((SELECT details->'changes'->'checksum'->>'new' FROM pg_temp.audit_entries('backup_snapshot', :'s1')
			WHERE details->'changes'->'status'->>'new' = 'COMPLETED'), 'c0ffee',
	'the completion entry records the manifest''s checksum');
SELECT is((SELECT array_agg(details->'changes'->'status'->>'new') FROM pg_temp.audit_entries('backup_snapshot', :'s3')
			WHERE action = 'status_change'), ARRAY['CANCELLED', 'DELETED'], 'every status change of another snapshot is audited too');

-- ---- privileges and row-level security ---------------------------------------
SET LOCAL ROLE t_bk_app_a;
SELECT is((SELECT array_agg(snapshot_number) FROM backup_offline.backup_snapshot WHERE id IN (:'s1', :'sb')),
	ARRAY[:'s1_number'], 'A''s application sees A''s snapshot, not B''s');
SELECT is((SELECT count(*) FROM backup_offline.backup_snapshot WHERE organization_id <> :'org_a'), 0::bigint,
	'A''s application sees no snapshot of another organization');
SELECT throws_ok(format('SELECT backup_offline.cancel_backup(%L)', :'sb'), '42704', format('snapshot %s does not exist', :'sb'),
	'A''s application cannot cancel B''s snapshot: it is not visible');
SELECT throws_ok(format('SELECT backup_offline.verify_snapshot(%L)', :'s1'), '42501', 'permission denied for function verify_snapshot',
	'the application cannot verify snapshots');
-- No job runs in this file, so backup_progress is empty here: these two
-- prove it is readable and lets nothing of another organization through,
-- not the filter on a running job (a scenario's business).
SELECT lives_ok($$SELECT * FROM backup_offline.backup_progress$$, 'the application reads backup_progress');
SELECT is((SELECT count(*) FROM backup_offline.backup_progress WHERE organization_id IS DISTINCT FROM :'org_a'), 0::bigint,
	'backup_progress shows the application nothing of other organizations');
SELECT throws_ok(format($q$SELECT set_config('backup_offline.organization_id', %L, true);
						   SELECT count(*) FROM backup_offline.backup_snapshot$q$, :'org_b'), '42501',
	format('role "t_bk_app_a" is not a member of organization %s', :'org_b'),
	'A''s application cannot choose B to read its snapshots');
RESET ROLE;

SET LOCAL ROLE t_bk_app_b;
SELECT is((SELECT array_agg(snapshot_number) FROM backup_offline.backup_snapshot WHERE id IN (:'s1', :'sb')),
	ARRAY[:'sb_number'], 'B''s application sees B''s snapshot, not A''s');
RESET ROLE;

-- a pooled application role chooses the organization per transaction
SET LOCAL ROLE t_bk_pool;
SELECT set_config('backup_offline.organization_id', :'org_b', true) AS chosen \gset
SELECT is((SELECT array_agg(snapshot_number) FROM backup_offline.backup_snapshot WHERE id IN (:'s1', :'sb')),
	ARRAY[:'sb_number'], 'a pooled role that chose B sees B''s snapshot only');
SELECT is((SELECT count(*) FROM backup_offline.backup_progress WHERE organization_id IS DISTINCT FROM :'org_b'), 0::bigint,
	'backup_progress shows a pooled role that chose B nothing of other organizations');
SELECT set_config('backup_offline.organization_id', '', true) AS chosen \gset
RESET ROLE;

SET LOCAL ROLE t_bk_op_a;
SELECT is((SELECT array_agg(snapshot_number) FROM backup_offline.backup_snapshot WHERE id IN (:'s1', :'sb')),
	ARRAY[:'s1_number'], 'A''s operator sees A''s snapshot, not B''s');
SELECT throws_ok(format('SELECT backup_offline.verify_snapshot(%L)', :'sb'), '42704', format('snapshot %s does not exist', :'sb'),
	'A''s operator cannot verify B''s snapshot: it is not visible');
SELECT throws_ok(format('SELECT backup_offline.materialize_snapshot(%L, %L)', :'s1', 't_bk_restored'), '42501',
	'permission denied for function materialize_snapshot', 'an operator cannot materialise snapshots');
RESET ROLE;

SET LOCAL ROLE t_bk_auditor;
SELECT is((SELECT count(*) FROM backup_offline.backup_snapshot WHERE id IN (:'s1', :'sb')), 2::bigint,
	'the auditor reads the snapshots of every organization');
SELECT throws_ok(format('SELECT backup_offline.verify_snapshot(%L, %L)', :'sb', 'checksums'), '55000',
	format('snapshot %s is PENDING: it has no manifest', :'sb_number'),
	'the auditor may call verify_snapshot (the error is about the snapshot, not a privilege)');
SELECT throws_ok(format('SELECT backup_offline.run_backup(%L)', :'c_main'), '42501', 'permission denied for function run_backup',
	'the auditor cannot run backups');
SELECT throws_ok(format('SELECT backup_offline.cancel_backup(%L)', :'s1'), '42501', 'permission denied for function cancel_backup',
	'the auditor cannot cancel backups');
RESET ROLE;

SET LOCAL ROLE t_bk_appr_a;
SELECT throws_ok(format('SELECT backup_offline.run_backup(%L)', :'c_main'), '42501', 'permission denied for function run_backup',
	'the approver cannot run backups');
SELECT is((SELECT array_agg(snapshot_number) FROM backup_offline.backup_snapshot WHERE id IN (:'s1', :'sb')),
	ARRAY[:'s1_number'], 'A''s approver sees A''s snapshot, not B''s');
RESET ROLE;

SET LOCAL ROLE t_bk_admin;
SELECT is((SELECT count(*) FROM backup_offline.backup_snapshot WHERE id IN (:'s1', :'sb')), 2::bigint,
	'an administrator reads the snapshots of every organization');
RESET ROLE;

CREATE TEMP TABLE roles (r text, n serial);
INSERT INTO roles (r) VALUES ('backup_offline_admin'), ('backup_offline_operator'), ('backup_offline_approver'),
	('backup_offline_auditor'), ('backup_offline_app'), ('public');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_function_privilege(r, 'backup_offline.run_backup(uuid, text, boolean)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_app'], 'who may call run_backup');
SELECT ok(has_function_privilege('t_bk_app_a', 'backup_offline.run_backup(uuid, text, boolean)', 'EXECUTE'),
	'a member of backup_offline_app may call run_backup');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_function_privilege(r, 'backup_offline.verify_snapshot(uuid, text)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_auditor'], 'who may call verify_snapshot');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_function_privilege(r, 'backup_offline.materialize_snapshot(uuid, name)', 'EXECUTE')),
	ARRAY['backup_offline_admin'], 'nobody but the administrator may call materialize_snapshot');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
			WHERE has_table_privilege(r, 'backup_offline.backup_snapshot', p)), NULL,
	'no role may write backup_snapshot directly');
SELECT is((SELECT array_agg(r ORDER BY n) FROM roles WHERE has_table_privilege(r, 'backup_offline.backup_progress', 'SELECT')),
	ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver', 'backup_offline_auditor', 'backup_offline_app'],
	'every role of the extension, and not PUBLIC, reads backup_progress');
SELECT throws_ok(format($q$SET LOCAL ROLE %I; UPDATE backup_offline.backup_snapshot SET status_reason = 'forged' WHERE id = %L$q$, u, :'s1'),
	'42501', 'permission denied for table backup_snapshot', u || ' cannot UPDATE backup_snapshot')
  FROM unnest(ARRAY['t_bk_app_a', 't_bk_op_a', 't_bk_appr_a', 't_bk_auditor', 't_bk_admin']) WITH ORDINALITY AS x(u, n) ORDER BY n;
SELECT throws_ok('SET LOCAL ROLE t_bk_app_a; ' || pg_temp.insert_snapshot_sql(:'c_second'), '42501',
	'permission denied for table backup_snapshot', 'the application cannot INSERT a snapshot');
SELECT throws_ok(format('SET LOCAL ROLE t_bk_app_a; DELETE FROM backup_offline.backup_snapshot WHERE id = %L', :'s1'), '42501',
	'permission denied for table backup_snapshot', 'the application cannot DELETE a snapshot');

-- ---- the jobs' bookkeeping on a configuration ------------------------------
SELECT version AS v_before, updated_at AS u_before FROM backup_offline.backup_configuration WHERE id = :'c_second' \gset
SELECT count(*) AS audit_before FROM pg_temp.audit_entries('backup_configuration', :'c_second') \gset
UPDATE backup_offline.backup_configuration
   SET last_backup_at = now() - interval '1 hour', next_backup_at = now() + interval '1 day', consecutive_failures = 2
 WHERE id = :'c_second';
SELECT is((SELECT consecutive_failures FROM backup_offline.backup_configuration WHERE id = :'c_second'), 2,
	'the bookkeeping update was applied');
SELECT is((SELECT version FROM backup_offline.backup_configuration WHERE id = :'c_second'), :v_before,
	'updating only last_backup_at, next_backup_at and consecutive_failures keeps the version');
SELECT is((SELECT updated_at FROM backup_offline.backup_configuration WHERE id = :'c_second'), :'u_before'::timestamptz,
	'... and updated_at');
SELECT is((SELECT count(*) FROM pg_temp.audit_entries('backup_configuration', :'c_second')), :audit_before::bigint,
	'... and writes no audit entry');
UPDATE backup_offline.backup_configuration SET description = 'a real change' WHERE id = :'c_second';
SELECT is((SELECT version FROM backup_offline.backup_configuration WHERE id = :'c_second'), :v_before + 1,
	'a real change bumps the version');
SELECT is((SELECT array_agg(action) FROM (SELECT action FROM pg_temp.audit_entries('backup_configuration', :'c_second')
											OFFSET :audit_before) e), ARRAY['update'],
	'a real change writes one audit entry');

SELECT * FROM finish();
ROLLBACK;
