-- Configuration life cycle: what may change when, and what each change does.
BEGIN;
SELECT plan(21);
-- audit entries are chained at commit; chain them at once so this transaction reads them
SET CONSTRAINTS backup_offline.audit_pending_chain IMMEDIATE;
SET LOCAL timezone = 'UTC';

CREATE SCHEMA t_life;
CREATE TABLE t_life.payroll (id uuid PRIMARY KEY, caregiver_id uuid);
CREATE TABLE t_life.notes (id uuid PRIMARY KEY);
SELECT backup_offline.register_entity('L_PAYROLL', 't_life.payroll', '{"caregiverIdColumn": "caregiver_id"}');
SELECT backup_offline.register_entity('L_NOTE', 't_life.notes');
SELECT set_config('backup_offline.organization_id', 'cccccccc-0000-4000-8000-00000000000c', true);

SELECT backup_offline.create_backup_configuration('{
  "name": "Payroll", "scope": {"includeEntities": ["L_PAYROLL"]},
  "schedule": {"frequency": "WEEKLY", "daysOfWeek": [1], "startTime": "04:00", "timezone": "America/New_York"},
  "retention": {"retentionDays": 1500},
  "storageDestination": {"type": "AWS_S3", "bucket": "care-backups"},
  "complianceRequirements": [{"regulation": "IRS"}]}') AS id \gset

SELECT is(backup_offline.get_backup_configuration(:'id')->'notificationSettings'->'enabled', 'false'::jsonb,
	'notifications are off when no channel is given');
SELECT is((backup_offline.validate_configuration(backup_offline.get_backup_configuration(:'id')
			- ARRAY['id', 'status', 'nextBackupAt', 'lastBackupAt', 'consecutiveFailures', 'createdAt', 'createdBy',
					'updatedAt', 'updatedBy', 'version']))->'notificationSettings'->'enabled',
	'false'::jsonb, 'validate_configuration itself says false, not null');
SELECT is(
	(SELECT next_backup_at FROM backup_offline.backup_configuration WHERE id = :'id'),
	backup_offline.next_run_time('{"frequency": "WEEKLY", "daysOfWeek": [1], "startTime": "04:00"}', 'America/New_York', now()),
	'next_backup_at is the schedule''s next run in its own time zone');

-- changing only the time zone moves the next run
SELECT backup_offline.update_backup_configuration(:'id',
	'{"schedule": {"frequency": "WEEKLY", "daysOfWeek": [1], "startTime": "04:00", "timezone": "Asia/Tokyo"}}');
SELECT is(
	(SELECT next_backup_at FROM backup_offline.backup_configuration WHERE id = :'id'),
	backup_offline.next_run_time('{"frequency": "WEEKLY", "daysOfWeek": [1], "startTime": "04:00"}', 'Asia/Tokyo', now()),
	'a new time zone recomputes the next run');

-- a rule made stricter: the configuration no longer validates, yet it can
-- still be paused; reactivating it is refused until it is fixed
INSERT INTO backup_offline.compliance_rule (organization_id, regulation, name, jurisdiction, minimum_retention, source_citation)
VALUES ('cccccccc-0000-4000-8000-00000000000c', 'IRS', 'IRS, agency policy', 'US-FEDERAL', '10 years', 'agency policy 7');
SELECT lives_ok(format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', :'id', 'PAUSED'),
	'a configuration that no longer validates can be paused');
SELECT is((SELECT next_backup_at FROM backup_offline.backup_configuration WHERE id = :'id'), NULL,
	'a paused configuration has no next run');
SELECT throws_ok(format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', :'id', 'ACTIVE'),
	'23514', 'retention.retentionDays 1500 is below the 3653 days IRS requires',
	'reactivating it validates it again');
SELECT backup_offline.update_backup_configuration(:'id', '{"retention": {"retentionDays": 3653}}');
SELECT lives_ok(format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', :'id', 'ACTIVE'),
	'fixed, it can be reactivated');
SELECT isnt((SELECT next_backup_at FROM backup_offline.backup_configuration WHERE id = :'id'), NULL,
	'reactivated, it has a next run again');

-- an organization's own rule takes precedence over the shared one, for that
-- organization only
INSERT INTO backup_offline.compliance_rule (organization_id, regulation, name, jurisdiction, minimum_retention, source_citation)
VALUES ('cccccccc-0000-4000-8000-00000000000c', 'HIPAA', 'HIPAA, agency policy', 'US-FEDERAL', '10 years', 'agency policy 12');
SELECT is(backup_offline.compliance_retention_until('HIPAA', '2020-01-01'), '2030-01-01'::date,
	'the session organization''s own rule applies');
SELECT is(backup_offline.compliance_retention_until('HIPAA', '2020-01-01', NULL, 'dddddddd-0000-4000-8000-00000000000d'),
	'2026-01-01'::date, 'another organization gets the shared rule');
SELECT set_config('backup_offline.organization_id', '', true);
SELECT is(backup_offline.compliance_retention_until('HIPAA', '2020-01-01'), '2026-01-01'::date,
	'without an organization the shared rule applies');

SELECT throws_ok($$UPDATE backup_offline.compliance_rule SET minimum_retention = '1 day' WHERE regulation = 'HIPAA' AND organization_id IS NULL$$,
	'55000', 'compliance rule "HIPAA" is built in and cannot change', 'built-in rules cannot be weakened, even by a superuser');
SELECT is((SELECT count(*) FROM backup_offline.audit_log
			WHERE (object_type = 'compliance_rule' AND details->'new'->>'built_in' = 'true')
			   OR (object_type = 'organization_member'
				   AND details->'new'->>'role_name' IN ('backup_offline_admin', 'backup_offline_auditor'))), 0::bigint,
	'installing wrote no audit rows for the built-in rows');

-- an update that changes nothing writes no version and no audit row
SELECT version AS v_before, (SELECT max(id) FROM backup_offline.audit_log) AS a_before
  FROM backup_offline.backup_configuration WHERE id = :'id' \gset
SELECT backup_offline.update_backup_configuration(:'id', '{}');
UPDATE backup_offline.backup_configuration SET name = name WHERE id = :'id';
SELECT is((SELECT version || ' ' || (SELECT max(id) FROM backup_offline.audit_log) FROM backup_offline.backup_configuration WHERE id = :'id'),
	:'v_before' || ' ' || :'a_before', 'an update that changes nothing leaves version and audit log alone');

-- a direct UPDATE that sets deleted_at archives the configuration, and
-- nothing else it sets is kept
UPDATE backup_offline.backup_configuration
   SET deleted_at = '2000-01-01', encryption_enabled = false, name = 'renamed', schedule = '"garbage"'
 WHERE id = :'id';
SELECT is((SELECT name || ' ' || encryption_enabled || ' ' || (schedule->>'frequency') FROM backup_offline.backup_configuration WHERE id = :'id'),
	'Payroll true WEEKLY', 'a soft delete keeps the content as it was');
SELECT is((SELECT count(*) FROM backup_offline.backup_configuration WHERE id = :'id' AND deleted_by IS NULL AND deleted_at IS NOT NULL),
	1::bigint, 'the deletion is stamped (no application user set: deleted_by NULL)');
SELECT is((SELECT status::text || ' ' || (deleted_at > '2000-01-02') FROM backup_offline.backup_configuration WHERE id = :'id'),
	'ARCHIVED true', 'a soft delete by direct UPDATE archives and stamps the row itself');

-- entity types: in use by a deleted configuration or by none, they can go
SELECT lives_ok($$DELETE FROM backup_offline.entity_registry WHERE entity_type = 'L_PAYROLL'$$,
	'an entity type used only by a deleted configuration can be unregistered');
SELECT lives_ok($$DELETE FROM backup_offline.entity_registry WHERE entity_type = 'L_NOTE'$$,
	'an unused entity type can be unregistered');
SELECT is((SELECT count(*) FROM backup_offline.audit_log WHERE object_type = 'entity_registry' AND action = 'purge'
			AND details->'old'->>'entity_type' IN ('L_PAYROLL', 'L_NOTE')), 2::bigint,
	'unregistering is audited');

SELECT * FROM finish();
ROLLBACK;
