-- Roles and row-level security: organizations cannot see or change each
-- other's rows; the application cannot read the audit log or change
-- compliance rules; auditors read everything and change nothing.
BEGIN;
SELECT plan(40);
-- audit entries are chained at commit; chain them at once so this transaction reads them
SET CONSTRAINTS backup_offline.audit_pending_chain IMMEDIATE;
-- pgTAP keeps its state in temporary tables: let the roles under test write them
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA %1$I TO PUBLIC',
				   pg_my_temp_schema()::regnamespace);
END $$;

CREATE SCHEMA t_sec;
CREATE TABLE t_sec.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date);
SELECT backup_offline.register_entity('SEC_VISIT', 't_sec.visits', '{"clientIdColumn": "client_id"}');
GRANT USAGE ON SCHEMA t_sec TO PUBLIC;

CREATE ROLE t_app_a IN ROLE backup_offline_app;
CREATE ROLE t_app_b IN ROLE backup_offline_app;
CREATE ROLE t_pool IN ROLE backup_offline_app;
CREATE ROLE t_auditor IN ROLE backup_offline_auditor;
CREATE ROLE t_op_a IN ROLE backup_offline_operator;
CREATE ROLE t_appr_a IN ROLE backup_offline_approver;
CREATE ROLE t_gone;
INSERT INTO backup_offline.organization_member (role_name, organization_id) VALUES
	('t_app_a', 'aaaaaaaa-0000-4000-8000-00000000000a'),
	('t_app_b', 'bbbbbbbb-0000-4000-8000-00000000000b'),
	('t_pool', NULL),
	('t_op_a', 'aaaaaaaa-0000-4000-8000-00000000000a'),
	('t_appr_a', 'aaaaaaaa-0000-4000-8000-00000000000a'),
	('t_gone', 'aaaaaaaa-0000-4000-8000-00000000000a');
-- a member role that is dropped later must not break anyone's queries
DROP ROLE t_gone;
-- organization B's own registry row and rule
CREATE TABLE t_sec.b_only (id uuid PRIMARY KEY);
GRANT SELECT ON t_sec.b_only TO PUBLIC;
SELECT backup_offline.register_entity('B_ONLY', 't_sec.b_only', '{"organizationId": "bbbbbbbb-0000-4000-8000-00000000000b"}');
INSERT INTO backup_offline.compliance_rule (organization_id, regulation, name, jurisdiction, minimum_retention, source_citation)
VALUES ('bbbbbbbb-0000-4000-8000-00000000000b', 'B_POLICY', 'B policy', 'US-TX', '2 years', 'B handbook');

CREATE TEMP TABLE ids (org text, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.config(org text, name text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('organizationId', org, 'name', name,
		'scope', '{"includeEntities": ["SEC_VISIT"]}'::jsonb,
		'schedule', '{"frequency": "DAILY", "startTime": "01:00"}'::jsonb,
		'storageDestination', '{"type": "AWS_S3", "bucket": "care-backups"}'::jsonb)
$$;
INSERT INTO ids VALUES
	('a', backup_offline.create_backup_configuration(pg_temp.config('aaaaaaaa-0000-4000-8000-00000000000a', 'A nightly'))),
	('b', backup_offline.create_backup_configuration(pg_temp.config('bbbbbbbb-0000-4000-8000-00000000000b', 'B nightly')));

-- organization A's application
SET LOCAL ROLE t_app_a;
SELECT is((SELECT array_agg(name) FROM backup_offline.backup_configuration), ARRAY['A nightly'],
	'A sees only its own configuration');
SELECT is(backup_offline.get_backup_configuration((SELECT id FROM ids WHERE org = 'b')), NULL,
	'A cannot read B''s configuration through the API');
SELECT throws_ok(format('SELECT backup_offline.update_backup_configuration(%L, %L)', (SELECT id FROM ids WHERE org = 'b'), '{"name": "hijacked"}'),
	'42704', NULL, 'A cannot update B''s configuration through the API');
SELECT throws_ok(format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', (SELECT id FROM ids WHERE org = 'b'), 'PAUSED'),
	'42704', NULL, 'A cannot pause B''s configuration');
SELECT throws_ok(format('SELECT backup_offline.delete_backup_configuration(%L)', (SELECT id FROM ids WHERE org = 'b')),
	'42704', NULL, 'A cannot delete B''s configuration');
WITH u AS (UPDATE backup_offline.backup_configuration SET description = 'x'
		   WHERE id = (SELECT id FROM ids WHERE org = 'b') RETURNING 1)
SELECT is(count(*), 0::bigint, 'a direct UPDATE of B''s row touches nothing') FROM u;
SELECT throws_ok($$SELECT backup_offline.create_backup_configuration(pg_temp.config('bbbbbbbb-0000-4000-8000-00000000000b', 'planted'))$$,
	'42501', NULL, 'A cannot create a configuration in B');
SELECT throws_ok($$DELETE FROM backup_offline.backup_configuration$$, '42501', NULL,
	'the application cannot hard-delete configurations');
SELECT lives_ok(format('SELECT backup_offline.update_backup_configuration(%L, %L)', (SELECT id FROM ids WHERE org = 'a'), '{"description": "ours"}'),
	'A updates its own configuration');
SELECT throws_ok($$SELECT set_config('backup_offline.organization_id', 'bbbbbbbb-0000-4000-8000-00000000000b', true);
				   SELECT count(*) FROM backup_offline.backup_configuration$$,
	'42501', 'role "t_app_a" is not a member of organization bbbbbbbb-0000-4000-8000-00000000000b',
	'A cannot choose B as its session organization');
SELECT throws_ok($$SELECT set_config('backup_offline.organization_id', 'bbbbbbbb-0000-4000-8000-00000000000b', true);
				   SELECT count(*) FROM backup_offline.compliance_rule$$,
	'42501', 'role "t_app_a" is not a member of organization bbbbbbbb-0000-4000-8000-00000000000b',
	'naming a foreign organization is refused even where only shared rows exist');
SELECT throws_ok($$SELECT * FROM backup_offline.audit_log$$, '42501', NULL, 'the application cannot read the audit log');
SELECT throws_ok($$SELECT backup_offline.verify_audit_chain()$$, '42501', NULL, 'the application cannot verify the audit chain');
SELECT throws_ok($$UPDATE backup_offline.compliance_rule SET minimum_retention = '1 day' WHERE regulation = 'HIPAA'$$,
	'42501', NULL, 'the application cannot change compliance rules');
SELECT throws_ok($$INSERT INTO backup_offline.compliance_rule (regulation, name, jurisdiction, minimum_retention, source_citation)
				   VALUES ('LAX', 'lax', 'X', '1 day', 'none')$$,
	'42501', NULL, 'the application cannot add compliance rules');
SELECT throws_ok($$SELECT backup_offline.write_audit('forge', 'x', NULL, NULL, '{}', 'nobody')$$,
	'42501', NULL, 'the application cannot write audit rows itself');
SELECT throws_ok($$INSERT INTO backup_offline.organization_member VALUES ('t_app_a', 'bbbbbbbb-0000-4000-8000-00000000000b')$$,
	'42501', NULL, 'the application cannot grant itself another organization');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_configuration SET next_backup_at = now() WHERE id = %L$q$, (SELECT id FROM ids WHERE org = 'a')),
	'42501', NULL, 'the application cannot move the next run of its own configuration');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_configuration SET consecutive_failures = 0, version = 1 WHERE id = %L$q$, (SELECT id FROM ids WHERE org = 'a')),
	'42501', NULL, 'the application cannot rewrite bookkeeping columns');
SELECT is((SELECT count(*) FROM backup_offline.entity_registry WHERE entity_type = 'B_ONLY'), 0::bigint,
	'A does not see B''s own entity types');
SELECT is((SELECT count(*) FROM backup_offline.compliance_rule WHERE regulation = 'B_POLICY'), 0::bigint,
	'A does not see B''s own compliance rules');
SELECT is((SELECT array_agg(role_name::text || ':' || organization_id) FROM backup_offline.organization_member),
	ARRAY['t_app_a:aaaaaaaa-0000-4000-8000-00000000000a'], 'A reads its own membership only');
SELECT throws_ok($$CREATE TEMP TABLE probe (entity_type text, organization_id uuid);
				   CREATE TRIGGER p BEFORE DELETE ON probe FOR EACH ROW EXECUTE FUNCTION backup_offline.entity_registry_in_use()$$,
	'42501', NULL, 'the application cannot attach the extension''s trigger functions to its own tables');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_configuration SET timezone = 'Asia/Tokyo' WHERE id = %L$q$, (SELECT id FROM ids WHERE org = 'a')),
	'42501', NULL, 'the time zone column is not writable (it follows schedule.timezone)');
SELECT throws_ok(format($q$UPDATE backup_offline.backup_configuration SET deleted_by = %L WHERE id = %L$q$,
						'11111111-1111-4111-8111-111111111111', (SELECT id FROM ids WHERE org = 'a')),
	'42501', NULL, 'deleted_by is not writable');
SELECT ok((SELECT count(*) FROM backup_offline.compliance_rule WHERE regulation = 'HIPAA') = 1,
	'the application reads the shared compliance rules');
RESET ROLE;

-- organization B sees its own row unchanged
SET LOCAL ROLE t_app_b;
SELECT is((SELECT array_agg(name || ':' || coalesce(description, '') || ':' || status) FROM backup_offline.backup_configuration),
	ARRAY['B nightly::ACTIVE'], 'B sees only its own configuration, untouched by A');
RESET ROLE;

-- a pooled application role chooses the organization per transaction
SET LOCAL ROLE t_pool;
SELECT set_config('backup_offline.organization_id', 'bbbbbbbb-0000-4000-8000-00000000000b', true);
SELECT is((SELECT array_agg(name) FROM backup_offline.backup_configuration), ARRAY['B nightly'],
	'a pooled role sees the chosen organization only');
SELECT throws_ok($$SELECT backup_offline.create_backup_configuration(pg_temp.config('aaaaaaaa-0000-4000-8000-00000000000a', 'cross'))$$,
	'42501', NULL, 'a pooled role cannot write into another organization than the chosen one');
SELECT lives_ok($$SELECT backup_offline.create_backup_configuration(pg_temp.config(NULL, 'B weekly') - 'organizationId')$$,
	'a pooled role creates rows in the chosen organization without naming it');
SELECT set_config('backup_offline.organization_id', '', true);
RESET ROLE;
SELECT is((SELECT organization_id FROM backup_offline.backup_configuration WHERE name = 'B weekly'),
	'bbbbbbbb-0000-4000-8000-00000000000b'::uuid, 'the row landed in the chosen organization');

-- an operator and an approver of A see A only; the approver changes nothing
SET LOCAL ROLE t_op_a;
SELECT is((SELECT array_agg(name) FROM backup_offline.backup_configuration), ARRAY['A nightly'],
	'A''s operator sees only A''s configuration');
SELECT throws_ok(format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', (SELECT id FROM ids WHERE org = 'b'), 'PAUSED'),
	'42704', NULL, 'A''s operator cannot pause B''s configuration');
RESET ROLE;
SET LOCAL ROLE t_appr_a;
SELECT is((SELECT array_agg(name) FROM backup_offline.backup_configuration), ARRAY['A nightly'],
	'A''s approver sees only A''s configuration');
SELECT throws_ok(format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', (SELECT id FROM ids WHERE org = 'a'), 'PAUSED'),
	'42501', NULL, 'an approver cannot change configurations');
RESET ROLE;

-- auditors read everything, change nothing
SET LOCAL ROLE t_auditor;
SELECT is((SELECT count(*) FROM backup_offline.backup_configuration), 3::bigint, 'the auditor sees every organization');
SELECT ok((SELECT count(*) FROM backup_offline.audit_log WHERE object_type = 'backup_configuration') >= 3,
	'the auditor reads the audit log');
SELECT is((backup_offline.verify_audit_chain())->>'valid', 'true', 'the auditor verifies the chain');
SELECT throws_ok(format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', (SELECT id FROM ids WHERE org = 'a'), 'PAUSED'),
	'42501', NULL, 'the auditor cannot change configurations');
RESET ROLE;

-- every change was audited with the role that made it
SELECT is((SELECT actor_role::text FROM backup_offline.audit_log
			WHERE object_type = 'backup_configuration' AND object_id = (SELECT id::text FROM ids WHERE org = 'a')
			ORDER BY id DESC LIMIT 1), 't_app_a', 'the audit row names the application role, not the owner');

SELECT * FROM finish();
ROLLBACK;
