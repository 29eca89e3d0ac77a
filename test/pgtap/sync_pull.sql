-- Sync entities (register_sync_entity), what their triggers keep (row
-- versions, history bounded by historyDepth, tombstones, key changes), the
-- sequencer and pull_changes (pages, cursors, scopes, organizations,
-- tombstones, a resync after expired tombstones) and their errors.
-- The commit-order guarantee of cursors needs concurrent sessions: see
-- test/scenario/sync_pull.sh.
BEGIN;
SELECT plan(33);
\ir lib/errors.psql

\set org_a 'aaaaaaaa-0000-4000-8000-0000000000a6'
\set org_b 'bbbbbbbb-0000-4000-8000-0000000000b6'
\set client_1 'c1000000-0000-4000-8000-000000000001'
\set client_2 'c2000000-0000-4000-8000-000000000002'

-- a pull's changes as "id:version:deleted" in order, then the cursor and hasMore
CREATE FUNCTION pg_temp.pull(since bigint, n int, scope jsonb DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce((SELECT string_agg((c->>'id') || ':' || (c->>'version') || CASE WHEN (c->>'deleted')::boolean THEN ':deleted' ELSE '' END,
									   ' ' ORDER BY (c->>'seq')::bigint)
					   FROM jsonb_array_elements(r->'changes') c), '-')
		   || ' | ' || (r->>'hasMore')
	  FROM backup_offline.pull_changes('tablet-1', since, n, scope) r
$$;
CREATE FUNCTION pg_temp.cursor(since bigint, n int) RETURNS bigint LANGUAGE sql AS $$
	SELECT (backup_offline.pull_changes('tablet-1', since, n)->>'nextCursor')::bigint
$$;

CREATE SCHEMA t_sy;
CREATE TABLE t_sy.visits (id text PRIMARY KEY, organization_id uuid NOT NULL, client_id uuid, visit_date date,
	status text, notes text);
CREATE TABLE t_sy.pairs (a int, b int, PRIMARY KEY (a, b));
INSERT INTO t_sy.visits VALUES
	('v1', :'org_a', :'client_1', '2026-10-01', 'SCHEDULED', 'n1'),
	('v2', :'org_a', :'client_2', '2026-10-02', 'SCHEDULED', 'n2'),
	('v3', :'org_b', :'client_1', '2026-10-03', 'SCHEDULED', 'n3');

-- ---- registration -------------------------------------------------------------
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('visit', 't_sy.visits')$$),
	'22023: invalid entity_type: "visit"', 'entity types are upper case');
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('PAIR', 't_sy.pairs')$$),
	'22023: options.keyColumn is required: table t_sy.pairs has no one-column primary key', 'a key column is needed');
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('VISIT', 't_sy.visits', '{"clientIdColumn": "client"}')$$),
	'42703: invalid options.clientIdColumn: table t_sy.visits has no column "client"', 'columns must exist');
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('VISIT', 't_sy.visits', '{"fieldPolicies": {"notes": "concat"}}')$$),
	'22023: invalid policy.fields.notes: unknown strategy "concat"', 'field policies are checked by merge3');
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('VISIT', 't_sy.visits', '{"defaultStrategy": "CUSTOM"}')$$),
	'22023: options.customFunction goes with defaultStrategy CUSTOM, and only with it', 'CUSTOM needs its function');
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('VISIT', 't_sy.visits', '{"tombstoneLifetime": "5 minutes"}')$$),
	'22023: invalid options.tombstoneLifetime: 00:05:00 is outside 1 hour .. 1 year', 'tombstone lifetime bounds');
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('VISIT', 't_sy.visits', '{"historyDepth": 0}')$$),
	'22023: invalid options.historyDepth: 0 is out of range', 'history depth bounds');
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('VISIT', 't_sy.visits', '{"colour": "red"}')$$),
	'22023: unknown key options.colour', 'unknown options are refused');
SELECT is((SELECT count(*) FROM backup_offline.sync_entity), 0::bigint, 'the refused registrations left nothing');

SELECT isnt(backup_offline.register_sync_entity('VISIT', 't_sy.visits',
	'{"organizationColumn": "organization_id", "clientIdColumn": "client_id", "dateColumn": "visit_date",
	  "fieldPolicies": {"notes": "append"}, "historyDepth": 2, "tombstoneLifetime": "1 hour"}'), NULL, 'VISIT registered');
SELECT is(pg_temp.error_short($$SELECT backup_offline.register_sync_entity('VISIT2', 't_sy.visits')$$),
	'23505: table t_sy.visits is already registered for sync', 'a table is registered once');
SELECT is((SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 't_sy.visits'::regclass),
	'backup_offline_sync_delete,backup_offline_sync_insert,backup_offline_sync_update', 'three statement triggers installed');
SELECT is((SELECT string_agg(row_key || ':' || version || ':' || (organization_id = :'org_a'), ' ' ORDER BY row_key) FROM backup_offline.sync_row),
	'v1:1:true v2:1:true v3:1:false', 'the rows already there are tracked at version 1, with their organization');

-- ---- what the triggers keep ---------------------------------------------------------
UPDATE t_sy.visits SET status = 'DONE' WHERE id = 'v1';
UPDATE t_sy.visits SET status = 'DONE', notes = 'n1+' WHERE id = 'v1';
UPDATE t_sy.visits SET notes = 'n1++' WHERE id = 'v1';
SELECT is((SELECT version FROM backup_offline.sync_row WHERE row_key = 'v1'), 4::bigint, 'each change is a version');
SELECT is((SELECT string_agg(version || '=' || (image->>'notes'), ' ' ORDER BY version) FROM backup_offline.sync_row_history WHERE row_key = 'v1'),
	'3=n1+ 4=n1++', 'the history keeps the last historyDepth images');
INSERT INTO t_sy.visits VALUES ('v4', :'org_a', :'client_1', '2026-10-04', 'SCHEDULED', 'n4'), ('v5', :'org_a', :'client_2', '2026-10-05', 'SCHEDULED', 'n5');
SELECT is((SELECT count(*) FROM backup_offline.sync_row WHERE row_key IN ('v4', 'v5') AND version = 1), 2::bigint,
	'a multi-row INSERT tracks every row');
DELETE FROM t_sy.visits WHERE id = 'v5';
SELECT is((SELECT deleted || ':' || version FROM backup_offline.sync_row WHERE row_key = 'v5'), 'true:2', 'a delete is a tombstone, a new version');
SELECT is((SELECT image->>'notes' FROM backup_offline.sync_row_history WHERE row_key = 'v5' AND version = 2), 'n5',
	'the tombstone keeps the deleted row''s image');
UPDATE t_sy.visits SET id = 'v2b' WHERE id = 'v2';
SELECT is((SELECT string_agg(row_key || ':' || version || ':' || deleted, ' ' ORDER BY row_key) FROM backup_offline.sync_row WHERE row_key LIKE 'v2%'),
	'v2:2:true v2b:1:false', 'a changed key: the old key is a tombstone, the new one a new row');
INSERT INTO t_sy.visits VALUES ('v5', :'org_a', :'client_2', '2026-10-05', 'AGAIN', 'n5 again');
SELECT is((SELECT deleted || ':' || version FROM backup_offline.sync_row WHERE row_key = 'v5'), 'false:3',
	'a key inserted again continues its versions');

-- ---- pulls ------------------------------------------------------------------------
-- a pull in the writing transaction numbers its own changes (they appear to
-- others, numbers and all, when it commits)
SELECT is((SELECT count(*) FROM backup_offline.sync_row WHERE change_seq IS NULL), 6::bigint, 'nothing numbered before the first pull');
SELECT is((SELECT count(*) FROM jsonb_array_elements(backup_offline.pull_changes('tablet-1', 0, 100)->'changes')), 6::bigint,
	'a superuser pull: every tracked row');
SELECT is((SELECT count(*) FROM backup_offline.sync_row WHERE change_seq IS NULL), 0::bigint, '... each numbered');
SELECT is((SELECT string_agg(c->>'id', ' ' ORDER BY (c->>'seq')::bigint)
			 FROM (SELECT jsonb_array_elements(backup_offline.pull_changes('tablet-1', 0, 3)->'changes') c
				   UNION ALL SELECT jsonb_array_elements(backup_offline.pull_changes('tablet-1', pg_temp.cursor(0, 3), 3)->'changes')
				   UNION ALL SELECT jsonb_array_elements(backup_offline.pull_changes('tablet-1', pg_temp.cursor(pg_temp.cursor(0, 3), 3), 3)->'changes')) p),
		  (SELECT string_agg(c->>'id', ' ' ORDER BY (c->>'seq')::bigint) FROM jsonb_array_elements(backup_offline.pull_changes('tablet-1', 0, 100)->'changes') c),
	'three pages of 3 hold exactly the one page of 100, in order');
SELECT is((backup_offline.pull_changes('tablet-1', pg_temp.cursor(0, 100), 100)->>'hasMore') || ' ' ||
		  jsonb_array_length(backup_offline.pull_changes('tablet-1', pg_temp.cursor(0, 100), 100)->'changes'), 'false 0',
	'from the last cursor: nothing more');
SELECT is((SELECT string_agg((c->>'id') || ':' || (c->>'deleted'), ' ' ORDER BY c->>'id')
			 FROM jsonb_array_elements(backup_offline.pull_changes('tablet-1', 0, 100, '{"clientIds": ["c2000000-0000-4000-8000-000000000002"]}')->'changes') c),
	'v2:true v2b:false v5:false',
	'scope clientIds (a tombstone through its last image)');
-- (the rows, whatever their order: all were written in this test's one transaction, where the
-- order sync_sequence numbers them in is not defined)
SELECT is((SELECT string_agg(x, ' ' ORDER BY x) FROM regexp_split_to_table(split_part(pg_temp.pull(0, 100,
			'{"dateRange": {"startDate": "2026-10-03", "endDate": "2026-10-04"}}'), ' | ', 1), ' ') x), 'v3:1 v4:1',
	'scope dateRange');

-- organizations: the application of organization A sees A's rows only
CREATE ROLE t_sy_app_a IN ROLE backup_offline_app;
INSERT INTO backup_offline.organization_member VALUES ('t_sy_app_a', :'org_a');
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC', pg_my_temp_schema()::regnamespace);
END $$;
SET LOCAL ROLE t_sy_app_a;
SELECT is((SELECT count(*) FROM jsonb_array_elements(backup_offline.pull_changes('tablet-1', 0, 100)->'changes') c
			WHERE c->'data'->>'organization_id' = :'org_b'), 0::bigint, 'another organization''s rows are not pulled');
SELECT is((SELECT count(*) FROM jsonb_array_elements(backup_offline.pull_changes('tablet-1', 0, 100)->'changes')), 5::bigint,
	'... its own are');
RESET ROLE;

-- tombstones past their lifetime are forgotten: an older cursor must resync
UPDATE backup_offline.sync_row SET changed_at = now() - interval '2 hours' WHERE deleted;
SELECT is(backup_offline.pull_changes('tablet-1', 1, 100)->>'resyncRequired', 'true',
	'a cursor older than the forgotten tombstones: resyncRequired');
SELECT is((SELECT count(*) FROM backup_offline.sync_row WHERE deleted), 0::bigint, 'the expired tombstones are gone');

-- ---- bad pulls ----------------------------------------------------------------------
SELECT is(pg_temp.error_short($$SELECT backup_offline.pull_changes('tablet 1', 0, 10)$$),
	'22023: invalid device_id: ''tablet 1''', 'a device id without spaces');
SELECT is(pg_temp.error_short($$SELECT backup_offline.pull_changes('tablet-1', -1, 10)$$) || ' / ' ||
		  pg_temp.error_short($$SELECT backup_offline.pull_changes('tablet-1', 0, 0)$$) || ' / ' ||
		  pg_temp.error_short($$SELECT backup_offline.pull_changes('tablet-1', 0, 10, '{"entities": ["NOPE"]}')$$),
	'22023: invalid since: -1 / 22023: invalid max_rows: 0 / 22023: unknown sync entity type in scope.entities: NOPE',
	'cursors, page sizes and entity types are checked');

SELECT * FROM finish();
ROLLBACK;
