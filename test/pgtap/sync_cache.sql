-- Offline cache policies and plan_cache: every field's validation error
-- (SQLSTATE, message, hint) and that a refused input changes nothing, the
-- policy life cycle (defaults, guard on direct SQL, versions, audit), the
-- inventory's validation, the eviction order of each policy against an
-- order computed here in SQL, protection (pending operations, open
-- conflicts, critical entities, rows the server does not have), deleted,
-- out-of-scope and expired rows, the size budget and its low-water mark,
-- preloads within budget and scope, determinism, organizations and
-- privileges.
BEGIN;
SELECT plan(89);
\ir lib/errors.psql
SET CONSTRAINTS backup_offline.audit_pending_chain IMMEDIATE;
SET LOCAL timezone = 'UTC';

\set org_a 'aaaaaaaa-0000-4000-8000-0000000000c1'
\set org_b 'bbbbbbbb-0000-4000-8000-0000000000c2'
\set client_1 'c1000000-0000-4000-8000-0000000000c1'
\set client_2 'c2000000-0000-4000-8000-0000000000c2'

CREATE SCHEMA t_sc;
CREATE TABLE t_sc.visits (id text PRIMARY KEY, organization_id uuid NOT NULL, client_id uuid, visit_date date, notes text);
CREATE TABLE t_sc.evv (id text PRIMARY KEY, organization_id uuid NOT NULL, notes text);
CREATE TABLE t_sc.notes (id text PRIMARY KEY, organization_id uuid NOT NULL, body text);
CREATE TABLE t_sc.tasks (id text PRIMARY KEY, organization_id uuid NOT NULL, title text);
INSERT INTO t_sc.visits SELECT 'v' || lpad(g::text, 2, '0'), :'org_a', :'client_1', DATE '2026-10-01' + g - 1, repeat('n', g)
  FROM generate_series(1, 12) g;
INSERT INTO t_sc.visits VALUES ('v13', :'org_a', :'client_2', '2026-10-02', 'other client'),
	('v14', :'org_b', :'client_1', '2026-10-02', 'other organization');
INSERT INTO t_sc.evv SELECT 'e' || g, :'org_a', 'clock-in ' || g FROM generate_series(1, 3) g;
INSERT INTO t_sc.notes SELECT 'n' || g, :'org_a', 'note ' || g FROM generate_series(1, 4) g;
INSERT INTO t_sc.notes VALUES ('z9', :'org_a', 'a note whose id sorts after the visits''');
INSERT INTO t_sc.tasks VALUES ('t1', :'org_a', 'task');
SELECT backup_offline.register_sync_entity('VISIT', 't_sc.visits', '{"organizationColumn": "organization_id",
	"clientIdColumn": "client_id", "dateColumn": "visit_date"}') IS NOT NULL AS r1 \gset
SELECT backup_offline.register_sync_entity('EVV', 't_sc.evv', '{"organizationColumn": "organization_id", "critical": true}') IS NOT NULL AS r2 \gset
SELECT backup_offline.register_sync_entity('NOTE', 't_sc.notes', '{"organizationColumn": "organization_id"}') IS NOT NULL AS r3 \gset
SELECT backup_offline.register_sync_entity('TASK', 't_sc.tasks', '{"organizationColumn": "organization_id"}') IS NOT NULL AS r4 \gset
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
SET backup_offline.organization_id = :'org_a';

-- the error of create_cache_policy(policy), and the same with SQLSTATE and message only
CREATE FUNCTION pg_temp.create_error(policy text) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.error_of(format('SELECT backup_offline.create_cache_policy(%L)', policy))
$$;
CREATE FUNCTION pg_temp.create_short(policy text) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.error_short(format('SELECT backup_offline.create_cache_policy(%L)', policy))
$$;

-- ---- validation of policies, field by field --------------------------------------------------
SELECT is(pg_temp.create_error('[]'),
	'22023: policy must be a JSON object / Pass {"maxCacheSizeMB": 200, "defaultTTL": 604800, "evictionPolicy": "LRU", "scope": {...}}.',
	'a policy is an object');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "colour": "red"}'),
	'22023: unknown key colour / Allowed keys here: organizationId, scope, maxCacheSizeMB, defaultTTL, refreshStrategy, evictionPolicy.',
	'unknown keys are refused');
SELECT is(pg_temp.create_error('{"defaultTTL": 60}'),
	'22023: maxCacheSizeMB is required / Give the device cache''s size limit in MB, 1 to 1000.', 'maxCacheSizeMB is required');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 0, "defaultTTL": 60}'),
	'22023: maxCacheSizeMB must be between 1 and 1000, not 0 / Give the device cache''s size limit in MB (1 MB = 1,048,576 bytes).',
	'maxCacheSizeMB is at least 1');
SELECT is(pg_temp.create_short('{"maxCacheSizeMB": 1001, "defaultTTL": 60}'),
	'22023: maxCacheSizeMB must be between 1 and 1000, not 1001', 'maxCacheSizeMB is at most 1000');
SELECT is(pg_temp.create_short('{"maxCacheSizeMB": "200MB", "defaultTTL": 60}'),
	'22023: maxCacheSizeMB must be a whole number, not "200MB"', 'maxCacheSizeMB is a number');
SELECT is(pg_temp.create_short('{"maxCacheSizeMB": 2.5, "defaultTTL": 60}'),
	'22023: maxCacheSizeMB must be a whole number, not 2.5', 'maxCacheSizeMB is a whole number');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10}'),
	'22023: defaultTTL is required / Give the time to live of cached rows in seconds, at most 2592000 (30 days).', 'defaultTTL is required');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 2592001}'),
	'22023: defaultTTL must be between 1 and 2592000 seconds (30 days), not 2592001 / Give the time to live in seconds, such as 86400 for a day.',
	'defaultTTL is at most 30 days');
SELECT is(pg_temp.create_short('{"maxCacheSizeMB": 10, "defaultTTL": 0}'),
	'22023: defaultTTL must be between 1 and 2592000 seconds (30 days), not 0', 'defaultTTL is at least a second');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "refreshStrategy": "HOURLY"}'),
	'22023: invalid refreshStrategy: "HOURLY" / Use one of ON_CONNECT, PERIODIC, ON_DEMAND, BACKGROUND.', 'refresh strategies');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "evictionPolicy": "MRU"}'),
	'22023: invalid evictionPolicy: "MRU" / Use one of LRU, LFU, FIFO, TTL, PRIORITY.', 'eviction policies');
SELECT is(pg_temp.create_short('{"maxCacheSizeMB": 10, "defaultTTL": 60, "organizationId": "org-a"}'),
	'22023: invalid organizationId: "org-a" is not a uuid', 'organizationId is a uuid');
SELECT is(pg_temp.create_short(format('{"maxCacheSizeMB": 10, "defaultTTL": 60, "organizationId": "%s"}', :'org_b')),
	format('42501: organizationId %s differs from the session''s organization %s', :'org_b', :'org_a'),
	'organizationId is the session''s organization');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": ["VISIT"]}'),
	'22023: invalid scope: not an object / Pass {"entities": ["VISIT"], "clientIds": [...]} or NULL.', 'a scope is an object');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"clients": []}}'),
	'22023: unknown key scope.clients / Allowed keys here: entities, clientIds, caregiverIds, branchIds, dateRange, entityPriorities, entityTtls.',
	'unknown scope keys are refused');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"entities": ["VISIT", "MEAL"]}}'),
	'22023: unknown sync entity type in scope.entities: MEAL / Name entity types registered with register_sync_entity.',
	'scope.entities are registered entity types');
SELECT is(pg_temp.create_short('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"clientIds": ["c1000000-0000-4000-8000-0000000000c1", "c2"]}}'),
	'22023: invalid scope.clientIds[1]: "c2" is not a uuid', 'scope.clientIds are uuids');
SELECT is(pg_temp.create_short('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"dateRange": {"startDate": "2026-02-30"}}}'),
	'22023: invalid scope.dateRange.startDate: "2026-02-30" is not a calendar date', 'scope.dateRange has dates');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"dateRange": {"startDate": "2026-03-01", "endDate": "2026-02-01"}}}'),
	'22023: invalid scope.dateRange: startDate 2026-03-01 is after endDate 2026-02-01 / Give the first and the last day of the range, in that order.',
	'scope.dateRange starts before it ends');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"entityPriorities": {"VISIT": "URGENT"}}}'),
	'22023: invalid scope.entityPriorities.VISIT: "URGENT" / Use one of CRITICAL, HIGH, NORMAL, LOW, BACKGROUND.', 'entity priorities');
SELECT is(pg_temp.create_short('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"entityPriorities": {"MEAL": "LOW"}}}'),
	'22023: unknown sync entity type in scope.entityPriorities: MEAL', 'priorities are for registered entity types');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"entities": ["VISIT"], "entityTtls": {"NOTE": 60}}}'),
	'22023: invalid scope.entityTtls.NOTE: NOTE is not in scope.entities / Give settings to the entity types the scope caches, or add the type to scope.entities.',
	'settings are for entity types in the scope');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"entityTtls": {"NOTE": 2592001}}}'),
	'22023: scope.entityTtls.NOTE must be between 1 and 2592000 seconds (30 days), not 2592001 / Give the time to live in seconds, such as 86400 for a day.',
	'entity TTLs are at most 30 days');
SELECT is(pg_temp.create_error('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"entityTtls": [60]}}'),
	'22023: invalid scope.entityTtls: not an object / Map entity types to a time to live in seconds, such as {"VISIT": 86400}.',
	'entity TTLs are a map');
SELECT is(
	(SELECT array_agg(pg_temp.create_short(format('{"maxCacheSizeMB": 10, "defaultTTL": 60, "scope": %s}', s)) ORDER BY n)
	   FROM unnest(ARRAY['{"clientIds": ["x"]}', '{"entities": ["VISIT", "VISIT"]}', '{"dateRange": {"from": "2026-01-01"}}',
						 '{"branchIds": []}']) WITH ORDINALITY u(s, n)),
	(SELECT array_agg(pg_temp.error_short(format('SELECT backup_offline.pull_changes(''tab-1'', 0, 10, %L)', s)) ORDER BY n)
	   FROM unnest(ARRAY['{"clientIds": ["x"]}', '{"entities": ["VISIT", "VISIT"]}', '{"dateRange": {"from": "2026-01-01"}}',
						 '{"branchIds": []}']) WITH ORDINALITY u(s, n)),
	'a scope is checked as pull_changes checks its scope, with the same messages');
SELECT is((SELECT count(*) FROM backup_offline.sync_cache_policy) || '/' ||
		  (SELECT count(*) FROM backup_offline.audit_log WHERE object_type = 'sync_cache_policy'), '0/0',
	'the refused policies stored and audited nothing');

-- ---- life cycle --------------------------------------------------------------------------------
SELECT backup_offline.create_cache_policy(format('{"maxCacheSizeMB": 50, "defaultTTL": 86400,
	"scope": {"entities": ["VISIT", "NOTE"], "clientIds": ["%s"], "entityPriorities": {"NOTE": "LOW"}}}', upper(:'client_1'))::jsonb) AS pid \gset
SELECT is(backup_offline.get_cache_policy(:'pid') - ARRAY['id', 'createdAt', 'updatedAt'],
	jsonb_build_object('organizationId', :'org_a', 'maxCacheSizeMB', 50, 'defaultTTL', 86400, 'refreshStrategy', 'ON_CONNECT',
		'evictionPolicy', 'LRU', 'version', 1,
		'scope', jsonb_build_object('entities', jsonb_build_array('VISIT', 'NOTE'), 'clientIds', jsonb_build_array(:'client_1'),
									'entityPriorities', '{"NOTE": "LOW"}'::jsonb)),
	'a policy is stored normalised (defaults, organization, lower-case uuids)');
SELECT is((SELECT string_agg(action, ',' ORDER BY id) FROM backup_offline.audit_log
			WHERE object_type = 'sync_cache_policy' AND object_id = :'pid'), 'create', 'creating is audited');
SELECT backup_offline.update_cache_policy(:'pid', '{"maxCacheSizeMB": 80, "evictionPolicy": "LFU", "expectedVersion": 1}');
SELECT is((SELECT max_cache_size_mb || ' ' || eviction_policy || ' ' || version || ' ' || (scope ? 'clientIds')
			 FROM backup_offline.sync_cache_policy WHERE id = :'pid'), '80 LFU 2 true',
	'update_cache_policy changes the fields named and keeps the rest');
SELECT is(pg_temp.error_of(format('SELECT backup_offline.update_cache_policy(%L, %L)', :'pid', '{"defaultTTL": 60, "expectedVersion": 1}')),
	format('40001: cache policy %s has version 2, not 1 / Someone changed it meanwhile: read it again and reapply the change.', :'pid'),
	'expectedVersion makes an update conditional');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.update_cache_policy(%L, %L)', :'pid', '{"organizationId": "x"}')),
	'22023: unknown key organizationId', 'the organization of a policy does not change');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.update_cache_policy(%L, %L)', :'pid', '{"defaultTTL": 5, "maxCacheSizeMB": 0}')),
	'22023: maxCacheSizeMB must be between 1 and 1000, not 0', 'an update is validated as a whole');
SELECT is(pg_temp.error_short(format('UPDATE backup_offline.sync_cache_policy SET max_cache_size_mb = 5000 WHERE id = %L', :'pid')),
	'22023: maxCacheSizeMB must be between 1 and 1000, not 5000', 'direct SQL is validated by the guard trigger');
SELECT is(pg_temp.error_of(format('UPDATE backup_offline.sync_cache_policy SET organization_id = %L WHERE id = %L', :'org_b', :'pid')),
	format('23514: the id and organization of cache policy %s cannot change / Create a new policy instead.', :'pid'),
	'a policy stays in its organization');
SELECT is((SELECT max_cache_size_mb || ' ' || default_ttl || ' ' || version FROM backup_offline.sync_cache_policy WHERE id = :'pid')
		  || ' ' || (SELECT count(*) FROM backup_offline.audit_log WHERE object_type = 'sync_cache_policy'),
	'80 86400 2 2', '... and the refused updates changed and audited nothing');
UPDATE backup_offline.sync_cache_policy SET max_cache_size_mb = 80 WHERE id = :'pid';
SELECT is((SELECT version FROM backup_offline.sync_cache_policy WHERE id = :'pid') || ' '
		  || (SELECT count(*) FROM backup_offline.audit_log WHERE object_type = 'sync_cache_policy'),
	'2 2', 'an update that changes nothing keeps the version and writes no audit row');
SELECT is((SELECT details->'changes' FROM backup_offline.audit_log
			WHERE object_type = 'sync_cache_policy' AND action = 'update' AND object_id = :'pid'),
	'{"eviction_policy": {"new": "LFU", "old": "LRU"}, "max_cache_size_mb": {"new": 80, "old": 50}}'::jsonb,
	'the update is audited with what changed');
SELECT backup_offline.create_cache_policy('{"maxCacheSizeMB": 1, "defaultTTL": 60}') AS pid_drop \gset
SELECT backup_offline.drop_cache_policy(:'pid_drop');
SELECT is((SELECT count(*) FROM backup_offline.sync_cache_policy WHERE id = :'pid_drop') || ' '
		  || (SELECT string_agg(action, ',' ORDER BY id) FROM backup_offline.audit_log WHERE object_id = :'pid_drop'),
	'0 create,purge', 'drop_cache_policy removes a policy, audited with its last state');
SELECT is(pg_temp.error_of(format('SELECT backup_offline.drop_cache_policy(%L)', :'pid_drop')),
	format('42704: cache policy %s does not exist / Check the id; policies of other organizations are not visible.', :'pid_drop'),
	'an unknown policy is 42704');

-- ---- plan_cache: the inventory's validation ----------------------------------------------------
-- an inventory item: type, id, bytes, cached and last accessed so many minutes ago, access count
-- (NULLs left out)
CREATE FUNCTION pg_temp.item(t text, id text, bytes bigint, cached_min int, accessed_min int DEFAULT NULL, hits int DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object('entityType', t, 'entityId', id, 'bytes', bytes,
		'cachedAt', to_jsonb(now() - cached_min * interval '1 minute'),
		'lastAccessedAt', to_jsonb(now() - accessed_min * interval '1 minute'), 'accessCount', hits))
$$;
-- the error of plan_cache on an inventory (message only, or with the hint)
CREATE FUNCTION pg_temp.plan_short(pol uuid, inv jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.error_short(format('SELECT backup_offline.plan_cache(''tab-1'', %L, %L)', pol, inv))
$$;
CREATE FUNCTION pg_temp.plan_error(pol uuid, inv jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.error_of(format('SELECT backup_offline.plan_cache(''tab-1'', %L, %L)', pol, inv))
$$;
-- an inventory: items, with one item (at position at) changed by change (a JSON null removes a key)
CREATE FUNCTION pg_temp.bad(change jsonb, at int DEFAULT 0) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_agg(CASE WHEN g = at THEN jsonb_strip_nulls(pg_temp.item('VISIT', 'v0' || (g + 1), 100, 10) || change)
						  ELSE pg_temp.item('VISIT', 'v0' || (g + 1), 100, 10) END ORDER BY g)
	  FROM generate_series(0, 2) g
$$;

SELECT is(pg_temp.error_short(format('SELECT backup_offline.plan_cache(%L, %L, %L)', 'tab 1', :'pid', '[]')),
	'22023: invalid device_id: ''tab 1''', 'device ids are checked as everywhere');
SELECT is(pg_temp.error_short('SELECT backup_offline.plan_cache(''tab-1'', NULL, ''[]'')'), '22004: policy_id is required', 'a policy is required');
SELECT is(pg_temp.plan_short(:'pid_drop', '[]'), format('42704: cache policy %s does not exist', :'pid_drop'), 'an unknown policy is 42704');
SELECT is(pg_temp.plan_error(:'pid', '{}'),
	'22023: inventory must be a JSON array / Pass the rows the device holds: [{"entityType": "VISIT", "entityId": "v1", "bytes": 2048, '
	'"cachedAt": "...", "lastAccessedAt": "...", "accessCount": 3}], or [] for an empty cache.', 'an inventory is an array');
SELECT is(pg_temp.plan_short(:'pid', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 100001))),
	'22023: inventory holds at most 100000 items, not 100001', 'an inventory holds at most 100000 items');
SELECT is(pg_temp.plan_error(:'pid', jsonb_build_array(pg_temp.item('VISIT', 'v01', 100, 10), 'v02')),
	'22023: inventory[1] is not an object / Fix that item and send the inventory again: each item is {"entityType", "entityId", '
	'"bytes", "cachedAt", "lastAccessedAt", "accessCount"}.', 'an item is an object, named by its index');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"size": 1, "colour": 2}', 1)), '22023: inventory[1] has an unknown key colour',
	'unknown keys are refused');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"entityType": "MEAL"}')), '22023: inventory[0].entityType: "MEAL" is not a registered sync entity',
	'entity types are registered ones');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"entityType": null}')), '22023: inventory[0].entityType: null is not a registered sync entity',
	'entityType is required');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"entityId": 7}', 2)),
	'22023: inventory[2].entityId: a string of 1 to 200 characters (the row''s key) is required', 'entity ids are strings');
SELECT is((SELECT array_agg(DISTINCT pg_temp.plan_short(:'pid', pg_temp.bad(jsonb_build_object('bytes', b))))
			 FROM unnest(ARRAY['-1', '1.5', '"10"', '1073741825', 'null']::jsonb[]) b),
	ARRAY['22023: inventory[0].bytes: a whole number from 0 to 1073741824 (the row''s size on the device) is required'],
	'bytes: a whole number from 0 to 1 GB (negative, fractions, strings, too large and missing refused)');
SELECT is((SELECT array_agg(DISTINCT pg_temp.plan_short(:'pid', pg_temp.bad(jsonb_build_object('cachedAt', c), 1)))
			 FROM unnest(ARRAY['null', '"yesterday"', '"2026-10-01T10:00:00"', '"2026-10-01"', '"now Z"', '1767225600',
							   '"2026-10-01T10:00:00 PST"']::jsonb[]) c),
	ARRAY['22023: inventory[1].cachedAt: an ISO 8601 timestamp with a time zone is required'],
	'cachedAt: a timestamp with a date, a time and a zone (missing, words, no zone, no time, numbers refused)');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"cachedAt": "2026-02-30T10:00:00Z"}', 2)),
	'22023: inventory[2].cachedAt: an ISO 8601 timestamp with a time zone is required', 'cachedAt: a calendar date');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad(jsonb_build_object('cachedAt', now() + interval '1 hour'))),
	'22023: inventory[0].cachedAt is 3600.0 s in the future (the device clock is ahead; at most 300 s are accepted)',
	'a cachedAt further ahead than backup_offline.sync_max_clock_skew is refused');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"lastAccessedAt": "2026-13-01T00:00:00+02:00"}', 1)),
	'22023: inventory[1].lastAccessedAt: an ISO 8601 timestamp with a time zone', 'lastAccessedAt: a timestamp');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad(jsonb_build_object('lastAccessedAt', now() + interval '2 hours'))),
	'22023: inventory[0].lastAccessedAt is 7200.0 s in the future (the device clock is ahead; at most 300 s are accepted)',
	'... not in the future');
SELECT is((SELECT array_agg(DISTINCT pg_temp.plan_short(:'pid', pg_temp.bad(jsonb_build_object('accessCount', c))))
			 FROM unnest(ARRAY['-1', '2.5', '"3"', '2147483648']::jsonb[]) c),
	ARRAY['22023: inventory[0].accessCount: a whole number from 0 to 2147483647'], 'accessCount: a whole number');
SELECT is(pg_temp.plan_error(:'pid', pg_temp.bad('{"entityId": "v01"}', 2)),
	'22023: inventory[2]: VISIT ''v01'' is already listed at inventory[0] / List each row the device holds once.', 'a row is listed once');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"bytes": -1}', 1) || pg_temp.bad('{"cachedAt": "2026-02-30T10:00:00Z"}', 0)),
	'22023: inventory[1].bytes: a whole number from 0 to 1073741824 (the row''s size on the device) is required',
	'the first bad item is the error, also when a later one is no timestamp ...');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"cachedAt": "2026-02-30T10:00:00Z"}', 1) || pg_temp.bad('{"bytes": -1}', 0)),
	'22023: inventory[1].cachedAt: an ISO 8601 timestamp with a time zone is required', '... and when an earlier one is');
SELECT is(pg_temp.plan_short(:'pid', pg_temp.bad('{"lastAccessedAt": null, "accessCount": null}')
			|| '[{"entityType": "VISIT", "entityId": "v09", "bytes": 0, "cachedAt": "2026-10-01t10:00+0200"}]'), 'no error',
	'lastAccessedAt and accessCount are optional; zones as +0200 and a lower-case t are taken');

-- ---- eviction order of each policy ----------------------------------------------------------------
-- 1 MB (1,048,576 bytes, low-water mark 943,718); NOTE lives 2 hours and ranks LOW, VISIT ranks HIGH
SELECT pol, backup_offline.create_cache_policy(jsonb_build_object('maxCacheSizeMB', 1, 'defaultTTL', 86400, 'evictionPolicy', pol,
		'scope', '{"entityTtls": {"NOTE": 7200}, "entityPriorities": {"NOTE": "LOW", "VISIT": "HIGH"}}'::jsonb)) AS id
  INTO TEMP policies FROM unnest(ARRAY['LRU', 'LFU', 'FIFO', 'TTL', 'PRIORITY']) pol;
-- twelve rows, 1,248,000 bytes: about 300,000 must go
CREATE TEMP TABLE inv AS SELECT jsonb_agg(pg_temp.item(t, id, b, c, a, h) ORDER BY id) AS j FROM (VALUES
	('VISIT', 'v01', 110000, 600, 30, 5), ('VISIT', 'v02', 105000, 1200, 400, 2), ('VISIT', 'v03', 120000, 300, 10, 9),
	('VISIT', 'v04', 100000, 900, 200, 2), ('VISIT', 'v05', 115000, 60, 500, 1), ('VISIT', 'v06', 108000, 1000, 50, 7),
	('VISIT', 'v07', 102000, 150, 300, 0), ('VISIT', 'v08', 112000, 450, 100, 3), ('NOTE', 'n1', 90000, 30, 20, 0),
	('NOTE', 'n2', 95000, 100, 250, 4), ('NOTE', 'n3', 98000, 20, 5, 1), ('NOTE', 'n4', 93000, 90, 600, 0)) v(t, id, b, c, a, h);
GRANT SELECT ON policies, inv TO PUBLIC;
-- the ids a plan evicts for reason (all when NULL), in its order
CREATE FUNCTION pg_temp.evicted(plan jsonb, reason text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(e->>'entityId', ' ' ORDER BY n), '-')
	  FROM jsonb_array_elements(plan->'evict') WITH ORDINALITY AS x(e, n) WHERE reason IS NULL OR e->>'reason' = reason
$$;
-- what the policy must evict, computed here: the rows in the policy's order, each evicted while the
-- bytes of those before it are short of total - low-water mark, and only when the total is over the limit
CREATE FUNCTION pg_temp.expected(inv jsonb, policy text) RETURNS text LANGUAGE sql AS $$
	WITH i AS (
		SELECT x->>'entityType' AS t, x->>'entityId' AS id, (x->>'bytes')::bigint AS b, (x->>'cachedAt')::timestamptz AS ca,
			   coalesce((x->>'lastAccessedAt')::timestamptz, (x->>'cachedAt')::timestamptz) AS la, coalesce((x->>'accessCount')::int, 0) AS ac
		  FROM jsonb_array_elements(inv) x),
	k AS (
		SELECT i.*, CASE policy
			WHEN 'LRU' THEN ARRAY[extract(epoch FROM la)]
			WHEN 'LFU' THEN ARRAY[ac, extract(epoch FROM la)]
			WHEN 'FIFO' THEN ARRAY[extract(epoch FROM ca)]
			WHEN 'TTL' THEN ARRAY[extract(epoch FROM ca) + CASE t WHEN 'NOTE' THEN 7200 ELSE 86400 END]
			WHEN 'PRIORITY' THEN ARRAY[CASE t WHEN 'NOTE' THEN 1 ELSE 3 END, extract(epoch FROM la)] END AS key
		  FROM i),
	o AS (SELECT k.*, sum(b) OVER (ORDER BY key, t, id) - b AS before FROM k)
	SELECT coalesce(string_agg(o.id, ' ' ORDER BY o.key, o.t, o.id), '-')
	  FROM o, (SELECT sum(b) AS total FROM i) s
	 WHERE s.total > 1048576 AND o.before < s.total - 943718
$$;
CREATE TEMP TABLE plans AS
	SELECT p.pol, backup_offline.plan_cache('tab-9', p.id, inv.j) AS plan FROM policies p, inv;

SELECT is(pg_temp.evicted(plan, 'SIZE_LIMIT'), pg_temp.expected(inv.j, 'LRU'), 'LRU: the least recently accessed first')
  FROM plans, inv WHERE pol = 'LRU';
SELECT is(pg_temp.evicted(plan, 'SIZE_LIMIT'), pg_temp.expected(inv.j, 'LFU'), 'LFU: the least often accessed first, then LRU')
  FROM plans, inv WHERE pol = 'LFU';
SELECT is(pg_temp.evicted(plan, 'SIZE_LIMIT'), pg_temp.expected(inv.j, 'FIFO'), 'FIFO: the first cached first')
  FROM plans, inv WHERE pol = 'FIFO';
SELECT is(pg_temp.evicted(plan, 'SIZE_LIMIT'), pg_temp.expected(inv.j, 'TTL'), 'TTL: the soonest to expire first (entity TTLs apply)')
  FROM plans, inv WHERE pol = 'TTL';
SELECT is(pg_temp.evicted(plan, 'SIZE_LIMIT'), pg_temp.expected(inv.j, 'PRIORITY'), 'PRIORITY: the lowest entity priority first, then LRU')
  FROM plans, inv WHERE pol = 'PRIORITY';
SELECT is((SELECT string_agg(pol || ': ' || pg_temp.evicted(plan), ' | ' ORDER BY pol) FROM plans),
	'FIFO: v02 v06 v04 | LFU: n4 v07 n1 v05 | LRU: n4 v05 v02 | PRIORITY: n4 n2 n1 n3 | TTL: n2 n4 n1 n3',
	'the five policies evict different rows or in a different order, and nothing else');
SELECT is((SELECT string_agg(DISTINCT ((plan->'keep'->>'bytes')::bigint <= 943718
				AND (plan->'keep'->>'bytes')::bigint + (SELECT (e->>'bytes')::bigint FROM jsonb_array_elements(plan->'evict') WITH ORDINALITY x(e, n)
															 ORDER BY n DESC LIMIT 1) > 943718
				AND (plan->'keep'->>'bytes')::bigint + (plan->'totals'->>'evictBytes')::bigint = 1248000
				AND plan->'totals'->>'overLimit' = 'false')::text, ',') FROM plans),
	'true', 'each keeps at most the low-water mark, would not without its last eviction, and accounts for every byte');

-- ---- the size budget -------------------------------------------------------------------------
SELECT id AS lru FROM policies WHERE pol = 'LRU' \gset
-- 963,000 bytes: above the low-water mark, under the limit: nothing goes
SELECT is(pg_temp.evicted(backup_offline.plan_cache('tab-9', :'lru',
			(SELECT jsonb_agg(x) FROM inv, jsonb_array_elements(inv.j) x WHERE x->>'entityId' NOT IN ('n4', 'v07', 'n1')))), '-',
	'under the limit nothing is evicted, even above the low-water mark');
SELECT is(pg_temp.evicted(backup_offline.plan_cache('tab-9', :'lru',
			(SELECT jsonb_agg(x) FROM inv, jsonb_array_elements(inv.j) x WHERE x->>'entityId' NOT IN ('n4', 'v07')))), 'v05',
	'over the limit (1,053,000 bytes) rows go until the rest is under the low-water mark');

-- ---- protection ---------------------------------------------------------------------------------
-- an operation of a device on a visit
CREATE FUNCTION pg_temp.op(dev text, seq int, id text) RETURNS uuid LANGUAGE sql AS $$
	SELECT backup_offline.queue_operation(jsonb_build_object('deviceId', dev, 'operationId', dev || '-' || seq, 'deviceSeq', seq,
		'clientHlc', ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16), 'operation', 'PATCH', 'entityType', 'VISIT',
		'entityId', id, 'payload', '{"notes": "edited offline"}'::jsonb, 'baseVersion', 1))
$$;
SELECT pg_temp.op('tab-1', 1, 'v01') AS o1, pg_temp.op('tab-1', 2, 'v02') AS o2, pg_temp.op('tab-1', 3, 'v03') AS o3,
	   pg_temp.op('tab-1', 4, 'v04') AS o4, pg_temp.op('tab-1', 5, 'v05') AS o5, pg_temp.op('tab-1', 6, 'v09') AS o6,
	   pg_temp.op('tab-2', 1, 'v06') AS o7, pg_temp.op('tab-2', 2, 'v07') AS o8, pg_temp.op('tab-2', 3, 'v08') AS o9 \gset
UPDATE backup_offline.sync_queue SET status = CASE operation_id WHEN 'tab-1-2' THEN 'BLOCKED' WHEN 'tab-1-3' THEN 'COMPLETED'
	WHEN 'tab-1-4' THEN 'FAILED' WHEN 'tab-1-5' THEN 'CONFLICT' ELSE status END::backup_offline.sync_queue_status;
INSERT INTO backup_offline.sync_conflict (organization_id, queue_id, device_id, conflict_type, entity_type, entity_id, client_version,
	resolution, status, requires_manual_resolution)
SELECT :'org_a', q.id, 'tab-2', 'UPDATE_UPDATE', 'VISIT', q.entity_id, '{}', 'manual',
	   CASE q.entity_id WHEN 'v07' THEN 'OPEN' ELSE 'AUTO_RESOLVED' END::backup_offline.sync_conflict_status, q.entity_id = 'v07'
  FROM backup_offline.sync_queue q WHERE q.operation_id IN ('tab-2-2', 'tab-2-3');
DELETE FROM t_sc.visits WHERE id IN ('v09', 'v10');
SELECT backup_offline.create_cache_policy('{"maxCacheSizeMB": 1, "defaultTTL": 86400, "scope": {"entityPriorities": {"NOTE": "CRITICAL"}}}') AS prot \gset
-- 600,000 bytes each, the oldest first; v01 expired long ago
CREATE TEMP TABLE pinv AS SELECT jsonb_agg(pg_temp.item(t, id, 600000, c, a) ORDER BY id) AS j
  FROM (VALUES ('VISIT', 'v01', 5000, 900), ('VISIT', 'v02', 60, 800), ('VISIT', 'v03', 60, 700), ('VISIT', 'v04', 60, 600),
			   ('VISIT', 'v05', 60, 500), ('VISIT', 'v06', 60, 400), ('VISIT', 'v07', 60, 300), ('VISIT', 'v08', 60, 200),
			   ('VISIT', 'v09', 60, 100), ('VISIT', 'v10', 60, 50), ('VISIT', 'v99', 60, 990), ('EVV', 'e1', 60, 999),
			   ('NOTE', 'n1', 60, 998), ('NOTE', 'z9', 60, 997)) v(t, id, c, a);
SELECT backup_offline.plan_cache('tab-1', :'prot', j) AS pplan FROM pinv \gset
SELECT is((SELECT string_agg((e->>'entityId') || ':' || (e->>'reason'), ' ' ORDER BY n)
			 FROM jsonb_array_elements(:'pplan'::jsonb->'protected') WITH ORDINALITY x(e, n)),
	'e1:CRITICAL_ENTITY n1:CRITICAL_ENTITY z9:CRITICAL_ENTITY v01:PENDING_OPERATION v02:PENDING_OPERATION v05:PENDING_OPERATION v07:OPEN_CONFLICT '
	'v09:PENDING_OPERATION v99:NOT_ON_SERVER',
	'protected: the device''s PENDING, BLOCKED and CONFLICT operations (also on an expired or deleted row), OPEN conflicts, '
	'critical entities (registered or by the policy), rows the server does not have; by type and id');
SELECT is((SELECT string_agg((e->>'entityId') || ':' || (e->>'reason'), ' ' ORDER BY n)
			 FROM jsonb_array_elements(:'pplan'::jsonb->'evict') WITH ORDINALITY x(e, n)),
	'v10:DELETED v03:SIZE_LIMIT v04:SIZE_LIMIT v06:SIZE_LIMIT v08:SIZE_LIMIT',
	'not protected: COMPLETED and FAILED operations, another device''s, resolved conflicts; a deleted row goes first');
SELECT is((:'pplan'::jsonb->'totals') - ARRAY['limitBytes', 'lowWaterBytes', 'evictByReason'],
	'{"heldItems": 14, "heldBytes": 8400000, "evictItems": 5, "evictBytes": 3000000, "protectedItems": 9, "protectedBytes": 5400000,
	  "preloadItems": 0, "preloadBytes": 0, "afterBytes": 5400000, "overLimit": true}'::jsonb,
	'protected rows alone over the limit: everything else goes, overLimit, nothing preloaded');

-- ---- deleted, out of scope, expired -------------------------------------------------------------
SELECT backup_offline.create_cache_policy(format('{"maxCacheSizeMB": 1000, "defaultTTL": 86400, "scope": {"entities": ["VISIT", "NOTE"],
	"clientIds": ["%s"], "dateRange": {"startDate": "2026-10-01", "endDate": "2026-10-11"}, "entityTtls": {"NOTE": 3600}}}', :'client_1')::jsonb)
	AS scoped \gset
SELECT backup_offline.plan_cache('tab-1', :'scoped', jsonb_agg(pg_temp.item(t, id, 1000, c, a) ORDER BY id)) AS splan
  FROM (VALUES ('VISIT', 'v10', 60, 5), ('VISIT', 'v13', 60, 30), ('VISIT', 'v12', 60, 50), ('TASK', 't1', 60, 10),
			   ('VISIT', 'v14', 60, 40), ('NOTE', 'n2', 120, 1), ('NOTE', 'n3', 30, 1), ('VISIT', 'v11', 120, 1),
			   ('VISIT', 'v03', 1430, 1)) v(t, id, c, a) \gset
SELECT is(pg_temp.evicted(:'splan') || ' / ' || (:'splan'::jsonb->'totals'->'evictByReason')::text || ' / '
		  || (SELECT string_agg((e->>'entityId') || ':' || (e->>'reason'), ' ') FROM jsonb_array_elements(:'splan'::jsonb->'protected') e),
	'v10 v12 v13 t1 n2 / {"DELETED": 1, "EXPIRED": 1, "SIZE_LIMIT": 0, "OUT_OF_SCOPE": 3} / v14:NOT_ON_SERVER',
	'deleted on the server, then out of scope (another client, a date outside the range, an entity type not cached; each '
	'reason in the policy''s order), then expired (by the entity''s TTL); the rest stays; another organization''s row is '
	'none of this organization''s, even for a role that sees it');

-- ---- preload -------------------------------------------------------------------------------------
-- the most recently changed first: v01 a minute ago, v02 two, ...
UPDATE backup_offline.sync_row r SET changed_at = now() - substr(r.row_key, 2)::int * interval '1 minute'
  FROM backup_offline.sync_entity e WHERE e.id = r.entity_id AND e.entity_type = 'VISIT';
SELECT backup_offline.create_cache_policy(format('{"maxCacheSizeMB": 1, "defaultTTL": 86400, "scope": {"entities": ["VISIT", "EVV"],
	"clientIds": ["%s"], "entityPriorities": {"VISIT": "HIGH", "EVV": "BACKGROUND"}}}', :'client_1')::jsonb) AS pre \gset
SELECT is((SELECT string_agg(e->>'entityId', ' ' ORDER BY n) || ' / ' || (p->>'preloadHasMore')
			 FROM backup_offline.plan_cache('tab-1', :'pre', '[]') p, jsonb_array_elements(p->'preload') WITH ORDINALITY x(e, n)
			 GROUP BY p),
	'e1 e2 e3 v01 v02 v03 v04 v05 v06 v07 v08 v11 v12 / false',
	'preload: every row in scope (not deleted, not another client''s or organization''s, no other entity), critical entities '
	'first (whatever their priority), then the most recently changed');
-- held: v01..v04, 500 bytes short of the low-water mark
SELECT backup_offline.plan_cache('tab-1', :'pre', jsonb_build_array(pg_temp.item('VISIT', 'v01', 235000, 10),
	pg_temp.item('VISIT', 'v02', 235000, 10), pg_temp.item('VISIT', 'v03', 235000, 10), pg_temp.item('VISIT', 'v04', 238218, 10))) AS pplan2 \gset
SELECT is((SELECT string_agg(e->>'entityId' || ':' || (e->>'bytes'), ' ' ORDER BY n) FROM jsonb_array_elements(:'pplan2'::jsonb->'preload')
			 WITH ORDINALITY x(e, n)),
	(SELECT string_agg(c.row_key || ':' || c.b, ' ' ORDER BY c.crit DESC, c.changed_at DESC, c.row_key)
	   FROM (SELECT r.row_key, octet_length(h.image::text) AS b, e.critical AS crit, r.changed_at,
					sum(octet_length(h.image::text)) OVER (ORDER BY e.critical DESC, r.changed_at DESC, r.row_key) AS upto
			   FROM backup_offline.sync_row r
			   JOIN backup_offline.sync_entity e ON e.id = r.entity_id
			   JOIN backup_offline.sync_row_history h ON h.entity_id = r.entity_id AND h.row_key = r.row_key AND h.version = r.version
			  WHERE NOT r.deleted AND r.organization_id = :'org_a' AND e.entity_type IN ('VISIT', 'EVV')
				AND (e.entity_type = 'EVV' OR h.image->>'client_id' = :'client_1')
				AND r.row_key NOT IN ('v01', 'v02', 'v03', 'v04')) c
	  WHERE c.upto <= 500),
	'preload: best first within the bytes left under the low-water mark, sized as the row''s JSON');
SELECT is((:'pplan2'::jsonb->>'preloadHasMore') || ' ' || ((:'pplan2'::jsonb->'totals'->>'preloadBytes')::int <= 500)
		  || ' ' || (:'pplan2'::jsonb->'totals'->>'afterBytes')::bigint - (:'pplan2'::jsonb->'totals'->>'preloadBytes')::bigint,
	'true true 943218', '... it says there is more; what is kept plus the preload stays under the mark');

INSERT INTO t_sc.tasks SELECT 't' || g, :'org_a', 'task ' || g FROM generate_series(2, 1101) g;
SELECT is((SELECT (p->'totals'->>'preloadItems') || ' ' || (p->>'preloadHasMore') || ' ' || (p->'preload'->0->>'entityId')
			 FROM backup_offline.plan_cache('tab-1', backup_offline.create_cache_policy('{"maxCacheSizeMB": 1000, "defaultTTL": 60,
					"scope": {"entities": ["TASK"]}}'), '[{"entityType": "TASK", "entityId": "t1", "bytes": 10, "cachedAt": "2026-01-01T00:00:00Z"}]') p),
	'1000 true t10', 'at most 1,000 rows are preloaded per plan (ties in change time by id; the held t1 is not)');

-- ---- determinism ------------------------------------------------------------------------------------
-- the same inventories listed backwards
SELECT is((SELECT array_agg(backup_offline.plan_cache(dev, pol, (SELECT jsonb_agg(x ORDER BY n DESC)
															FROM jsonb_array_elements(j) WITH ORDINALITY y(x, n))) - 'plannedAt' ORDER BY dev)
			 FROM (SELECT 'tab-1' AS dev, :'prot'::uuid AS pol, pinv.j FROM pinv UNION ALL SELECT 'tab-9', :'lru', inv.j FROM inv) t),
	(SELECT array_agg(backup_offline.plan_cache(dev, pol, j) - 'plannedAt' ORDER BY dev)
	   FROM (SELECT 'tab-1' AS dev, :'prot'::uuid AS pol, pinv.j FROM pinv UNION ALL SELECT 'tab-9', :'lru', inv.j FROM inv) t),
	'a plan does not depend on the order of the inventory');
SELECT is((SELECT string_agg(pg_temp.evicted(backup_offline.plan_cache('tab-9', :'lru', tie)), ' | ' ORDER BY o)
			 FROM (SELECT o, jsonb_agg(pg_temp.item(t, id, 300000, 60, 30) ORDER BY CASE WHEN o = 1 THEN id END, id DESC) AS tie
					 FROM (VALUES ('VISIT', 'v03'), ('NOTE', 'n2'), ('VISIT', 'v01'), ('VISIT', 'v04'), ('NOTE', 'z9'), ('VISIT', 'v02')) v(t, id),
						  generate_series(1, 2) o GROUP BY o) x),
	'n2 z9 v01 | n2 z9 v01', 'ties are broken by entity type, then id, whatever the inventory''s order');

-- ---- organizations and privileges -----------------------------------------------------------------
CREATE ROLE t_sc_app_a IN ROLE backup_offline_app;
CREATE ROLE t_sc_app_b IN ROLE backup_offline_app;
CREATE ROLE t_sc_operator IN ROLE backup_offline_operator;
INSERT INTO backup_offline.organization_member VALUES ('t_sc_app_a', :'org_a'), ('t_sc_app_b', :'org_b'), ('t_sc_operator', :'org_a');
RESET backup_offline.organization_id;
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC', pg_my_temp_schema()::regnamespace);
END $$;
SELECT (backup_offline.plan_cache('tab-9', :'lru', j) - 'plannedAt')::text AS lru_plan FROM inv \gset
SET LOCAL ROLE t_sc_app_a;
SELECT is((SELECT (backup_offline.plan_cache('tab-9', :'lru', j) - 'plannedAt')::text FROM inv), :'lru_plan',
	'the application of the organization plans with its policy (as the superuser did)');
SET LOCAL ROLE t_sc_operator;
SELECT is(pg_temp.create_short(format('{"organizationId": "%s", "maxCacheSizeMB": 10, "defaultTTL": 60, "scope": {"entities": ["NOTE"]}}', :'org_a')),
	'no error',
	'an operator of the organization creates a policy for it');
SET LOCAL ROLE t_sc_app_b;
SELECT is((SELECT count(*) FROM backup_offline.sync_cache_policy)::text || ' ' || (backup_offline.get_cache_policy(:'lru') IS NULL)
		  || ' / ' || pg_temp.plan_short(:'lru', '[]')
		  || ' / ' || pg_temp.error_short(format('SELECT backup_offline.update_cache_policy(%L, ''{"defaultTTL": 5}'')', :'lru'))
		  || ' / ' || pg_temp.error_short(format('SELECT backup_offline.drop_cache_policy(%L)', :'lru')),
	format('0 true / 42704: cache policy %1$s does not exist / 42704: cache policy %1$s does not exist / 42704: cache policy %1$s does not exist', :'lru'),
	'another organization neither sees, uses, changes nor drops a policy');
SELECT is(pg_temp.create_short(format('{"organizationId": "%s", "maxCacheSizeMB": 10, "defaultTTL": 60}', :'org_a')),
	'42501: new row violates row-level security policy for table "sync_cache_policy"', '... nor creates one for it');
RESET ROLE;
SELECT is((SELECT default_ttl FROM backup_offline.sync_cache_policy WHERE id = :'lru'), 86400, '... and the policy is as it was');
SELECT is((SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
			'backup_offline_auditor', 'backup_offline_app', 'public']) r
			WHERE has_function_privilege(r, 'backup_offline.plan_cache(text, uuid, jsonb)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_app']::text[], 'who may plan');
SELECT is((SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
			'backup_offline_auditor', 'backup_offline_app', 'public']) r
			WHERE has_function_privilege(r, 'backup_offline.create_cache_policy(jsonb)', 'EXECUTE')
			  AND has_any_column_privilege(r, 'backup_offline.sync_cache_policy', 'INSERT')),
	ARRAY['backup_offline_admin', 'backup_offline_app', 'backup_offline_operator']::text[], 'who may create policies');
SELECT is((SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
			'backup_offline_auditor', 'backup_offline_app', 'public']) r
			WHERE has_table_privilege(r, 'backup_offline.sync_cache_policy', 'SELECT')),
	ARRAY['backup_offline_admin', 'backup_offline_app', 'backup_offline_auditor', 'backup_offline_operator']::text[], 'who may read them');
SELECT is((SELECT relrowsecurity FROM pg_class WHERE oid = 'backup_offline.sync_cache_policy'::regclass)
		  || ' ' || (SELECT 'backup_offline.sync_cache_policy'::regclass::oid = ANY (extconfig) FROM pg_extension WHERE extname = 'backup_offline'),
	'true true', 'row-level security is on, and pg_dump keeps the policies');

SELECT * FROM finish();
ROLLBACK;
