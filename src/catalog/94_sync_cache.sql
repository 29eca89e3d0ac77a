-- Offline cache policies (SPEC.md's OfflineCachePolicy) and cache planning:
-- plan_cache() tells a device, from the list of rows it holds, what to
-- evict and what to preload.
--
-- A policy: scope (what a device of the policy caches: pull_changes' scope,
-- plus per-entity priorities and time-to-live overrides), maxCacheSizeMB
-- (1..1000; 1 MB = 1,048,576 bytes), defaultTTL (seconds, 1..2,592,000 =
-- 30 days), refreshStrategy (ON_CONNECT, PERIODIC, ON_DEMAND, BACKGROUND:
-- advisory, for the app; the plan does not use it) and evictionPolicy (LRU,
-- LFU, FIFO, TTL, PRIORITY).  Policies are rows of sync_cache_policy, per
-- organization, validated by a guard trigger on every write and audited.
--
-- What the inventory's times mean (they are the device's clock):
--   cachedAt        when the device stored its current copy of the row (a
--                   pull that brings a new version resets it);
--   lastAccessedAt  when the app last read the row for a person (showing or
--                   using it; sync writes are not accesses); absent: cachedAt;
--   accessCount     such reads since cachedAt; absent: 0.
-- A row expires when cachedAt + its TTL is before the server's now().  TTL
-- is wall-clock time, not time the app ran: the server cannot see the app
-- run, and an offline period evicts nothing by itself, because a device
-- evicts only what a plan says and plans are made while it is connected,
-- when what expired can be pulled again.  Times more than
-- backup_offline.sync_max_clock_skew in the future are refused (a clock
-- ahead would keep rows forever).
--
-- The plan, in order:
--   protected  never evicted: the row has an operation of this device that
--              is not applied yet (PENDING, BLOCKED, CONFLICT; FAILED,
--              EXPIRED and CANCELLED are settled: the server keeps the
--              payload), an OPEN conflict (of any device: someone must
--              decide on it), its entity is critical (registered critical,
--              or CRITICAL in the policy's entityPriorities), or the server
--              has no such row in the policy's organization (a row created
--              on the device and not uploaded yet: evicting it would lose
--              it);
--   DELETED    the server's row is a tombstone;
--   OUT_OF_SCOPE  the row is outside the policy's scope now (its entity
--              type, client, caregiver, branch or date, judged on the
--              server's current row like pull_changes does);
--   EXPIRED    its TTL ran out;
--   SIZE_LIMIT when what is left is over maxCacheSizeMB, rows in the
--              policy's order until it is down to the low-water mark, 90%
--              of the limit (so the next few writes do not evict again):
--              LRU lastAccessedAt oldest first; LFU accessCount lowest
--              first, then LRU; FIFO cachedAt oldest first; TTL soonest
--              expiry first; PRIORITY the entity's priority lowest first
--              (BACKGROUND, LOW, NORMAL, HIGH), then LRU.  Ties by entity
--              type and id, so a plan is a function of its input.
--   preload    rows in scope the device does not hold, best first (critical
--              entities, then by entity priority, then the most recently
--              changed), as many as fit between what it keeps and the
--              low-water mark, at most 1,000 per plan (a batch to fetch;
--              the next plan names more); a row's size is estimated as the
--              bytes of its JSON as pull_changes sends it.

CREATE TYPE @extschema@.sync_cache_eviction AS ENUM ('LRU', 'LFU', 'FIFO', 'TTL', 'PRIORITY');
CREATE TYPE @extschema@.sync_cache_refresh AS ENUM ('ON_CONNECT', 'PERIODIC', 'ON_DEMAND', 'BACKGROUND');

CREATE TABLE @extschema@.sync_cache_policy (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid NOT NULL,
	scope jsonb NOT NULL DEFAULT '{}',
	max_cache_size_mb integer NOT NULL CHECK (max_cache_size_mb BETWEEN 1 AND 1000),
	default_ttl integer NOT NULL CHECK (default_ttl BETWEEN 1 AND 2592000),
	refresh_strategy @extschema@.sync_cache_refresh NOT NULL DEFAULT 'ON_CONNECT',
	eviction_policy @extschema@.sync_cache_eviction NOT NULL DEFAULT 'LRU',
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by uuid,
	created_by_role name NOT NULL DEFAULT CURRENT_USER,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by uuid,
	updated_by_role name NOT NULL DEFAULT CURRENT_USER,
	version integer NOT NULL DEFAULT 1
);
CREATE INDEX sync_cache_policy_organization ON @extschema@.sync_cache_policy (organization_id);
COMMENT ON TABLE @extschema@.sync_cache_policy IS 'Offline cache policies of devices (SPEC.md''s OfflineCachePolicy); defaultTTL in seconds';

-- validate_cache_policy(policy jsonb) RETURNS jsonb
-- An OfflineCachePolicy input, checked; returns it normalised with the
-- defaults filled in: {organizationId, scope, maxCacheSizeMB, defaultTTL,
-- refreshStrategy, evictionPolicy}.  organizationId defaults to the
-- session's (backup_offline.organization_id); maxCacheSizeMB and
-- defaultTTL are required; refreshStrategy ON_CONNECT, evictionPolicy LRU
-- and scope {} by default.
CREATE FUNCTION @extschema@.validate_cache_policy(policy jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	org uuid;
	field text;
BEGIN
	IF policy IS NULL OR jsonb_typeof(policy) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('policy must be a JSON object',
			'Pass {"maxCacheSizeMB": 200, "defaultTTL": 604800, "evictionPolicy": "LRU", "scope": {...}}.');
	END IF;
	PERFORM @extschema@.check_object(policy, '',
		ARRAY['organizationId', 'scope', 'maxCacheSizeMB', 'defaultTTL', 'refreshStrategy', 'evictionPolicy']);
	org := @extschema@.resolve_organization(@extschema@.json_uuid(policy, 'organizationId', ''), 'organizationId');
	FOREACH field IN ARRAY ARRAY['maxCacheSizeMB', 'defaultTTL'] LOOP
		IF policy->field IS NULL OR policy->field = 'null' THEN
			PERFORM @extschema@.raise_invalid(format('%s is required', field),
				CASE field WHEN 'maxCacheSizeMB' THEN 'Give the device cache''s size limit in MB, 1 to 1000.'
						   ELSE 'Give the time to live of cached rows in seconds, at most 2592000 (30 days).' END);
		END IF;
	END LOOP;
	RETURN jsonb_build_object(
		'organizationId', org,
		'maxCacheSizeMB', @extschema@.cache_policy_int(policy, 'maxCacheSizeMB', '', 1, 1000, '',
			'Give the device cache''s size limit in MB (1 MB = 1,048,576 bytes).', NULL),
		'defaultTTL', @extschema@.cache_policy_int(policy, 'defaultTTL', '', 1, 2592000, ' seconds (30 days)',
			'Give the time to live in seconds, such as 86400 for a day.', NULL),
		'refreshStrategy', @extschema@.json_choice(policy, 'refreshStrategy', '',
			ARRAY['ON_CONNECT', 'PERIODIC', 'ON_DEMAND', 'BACKGROUND'], 'ON_CONNECT'),
		'evictionPolicy', @extschema@.json_choice(policy, 'evictionPolicy', '',
			ARRAY['LRU', 'LFU', 'FIFO', 'TTL', 'PRIORITY'], 'LRU'),
		'scope', @extschema@.validate_sync_scope(policy->'scope', org, true));
END
$$;

-- A policy row as SPEC.md's camelCase object, with its bookkeeping.
CREATE FUNCTION @extschema@.cache_policy_to_json(p @extschema@.sync_cache_policy)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
		'id', p.id,
		'organizationId', p.organization_id,
		'scope', p.scope,
		'maxCacheSizeMB', p.max_cache_size_mb,
		'defaultTTL', p.default_ttl,
		'refreshStrategy', p.refresh_strategy,
		'evictionPolicy', p.eviction_policy,
		'createdAt', p.created_at,
		'createdBy', p.created_by,
		'updatedAt', p.updated_at,
		'updatedBy', p.updated_by,
		'version', p.version))
$$;

-- BEFORE INSERT OR UPDATE guard: every write, through the functions or
-- direct SQL, is validated as validate_cache_policy validates input and
-- stored normalised; version and created/updated at and by are kept here.
-- An update that changes nothing is skipped (no version, no audit row).
CREATE FUNCTION @extschema@.sync_cache_policy_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bookkeeping CONSTANT text[] := ARRAY['created_at', 'created_by', 'created_by_role', 'updated_at', 'updated_by',
										 'updated_by_role', 'version'];
	v jsonb;
BEGIN
	IF TG_OP = 'UPDATE' THEN
		-- (before validating: a policy whose entity type was unregistered since
		-- still takes an update that changes nothing)
		IF to_jsonb(NEW) - bookkeeping = to_jsonb(OLD) - bookkeeping THEN
			RETURN NULL;
		END IF;
		IF NEW.id <> OLD.id OR NEW.organization_id <> OLD.organization_id THEN
			RAISE EXCEPTION 'the id and organization of cache policy % cannot change', OLD.id
				USING ERRCODE = '23514', HINT = 'Create a new policy instead.';
		END IF;
	END IF;
	v := @extschema@.validate_cache_policy(jsonb_build_object(
		'organizationId', NEW.organization_id, 'scope', NEW.scope, 'maxCacheSizeMB', NEW.max_cache_size_mb,
		'defaultTTL', NEW.default_ttl, 'refreshStrategy', NEW.refresh_strategy, 'evictionPolicy', NEW.eviction_policy));
	NEW.organization_id := (v->>'organizationId')::uuid;
	NEW.scope := v->'scope';
	IF TG_OP = 'UPDATE' THEN
		-- (again once normalised: the same scope written otherwise)
		IF to_jsonb(NEW) - bookkeeping = to_jsonb(OLD) - bookkeeping THEN
			RETURN NULL;
		END IF;
		NEW.created_at := OLD.created_at;
		NEW.created_by := OLD.created_by;
		NEW.created_by_role := OLD.created_by_role;
		NEW.version := OLD.version + 1;
	ELSE
		NEW.created_at := now();
		NEW.created_by := @extschema@.current_actor();
		NEW.created_by_role := current_user;
		NEW.version := 1;
	END IF;
	NEW.updated_at := now();
	NEW.updated_by := @extschema@.current_actor();
	NEW.updated_by_role := current_user;
	RETURN NEW;
END
$$;

CREATE TRIGGER sync_cache_policy_guard
	BEFORE INSERT OR UPDATE ON @extschema@.sync_cache_policy
	FOR EACH ROW EXECUTE FUNCTION @extschema@.sync_cache_policy_guard();
CREATE TRIGGER sync_cache_policy_audit
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.sync_cache_policy
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_row_change('sync_cache_policy');

-- create_cache_policy(policy jsonb) RETURNS uuid
-- Validates an OfflineCachePolicy (see validate_cache_policy) and stores it.
CREATE FUNCTION @extschema@.create_cache_policy(policy jsonb)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v jsonb := @extschema@.validate_cache_policy(policy);
	new_id uuid;
BEGIN
	INSERT INTO @extschema@.sync_cache_policy (organization_id, scope, max_cache_size_mb, default_ttl, refresh_strategy, eviction_policy)
	VALUES ((v->>'organizationId')::uuid, v->'scope', (v->>'maxCacheSizeMB')::integer, (v->>'defaultTTL')::integer,
			(v->>'refreshStrategy')::@extschema@.sync_cache_refresh, (v->>'evictionPolicy')::@extschema@.sync_cache_eviction)
	RETURNING id INTO new_id;
	RETURN new_id;
END
$$;

-- The policy row for id (locked when lock), or an error when it is not
-- visible to the caller (42704) or id is NULL (22004).
CREATE FUNCTION @extschema@.cache_policy_row(policy_id uuid, lock boolean)
RETURNS @extschema@.sync_cache_policy
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p @extschema@.sync_cache_policy;
BEGIN
	IF policy_id IS NULL THEN
		PERFORM @extschema@.raise_invalid('policy_id is required', 'Pass the id create_cache_policy returned.', NULL, '22004');
	END IF;
	IF lock THEN
		SELECT * INTO p FROM @extschema@.sync_cache_policy c WHERE c.id = policy_id FOR UPDATE;
	ELSE
		SELECT * INTO p FROM @extschema@.sync_cache_policy c WHERE c.id = policy_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM @extschema@.raise_invalid(format('cache policy %s does not exist', policy_id),
			'Check the id; policies of other organizations are not visible.', NULL, '42704');
	END IF;
	RETURN p;
END
$$;

-- update_cache_policy(id uuid, changes jsonb) RETURNS void
-- Replaces the fields named in changes (scope is replaced whole);
-- "expectedVersion" makes the update conditional on the row's version
-- (40001 when it moved on).  The result is validated as a whole.
CREATE FUNCTION @extschema@.update_cache_policy(id uuid, changes jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p @extschema@.sync_cache_policy := @extschema@.cache_policy_row(id, true);
	expected bigint;
	v jsonb;
BEGIN
	IF changes IS NULL OR jsonb_typeof(changes) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('changes must be a JSON object', 'Pass the fields to change, such as {"maxCacheSizeMB": 300}.');
	END IF;
	PERFORM @extschema@.check_object(changes, '',
		ARRAY['scope', 'maxCacheSizeMB', 'defaultTTL', 'refreshStrategy', 'evictionPolicy', 'expectedVersion']);
	expected := @extschema@.json_int(changes, 'expectedVersion', '', 1, 2147483647, NULL);
	IF expected IS NOT NULL AND expected <> p.version THEN
		PERFORM @extschema@.raise_invalid(format('cache policy %s has version %s, not %s', p.id, p.version, expected),
			'Someone changed it meanwhile: read it again and reapply the change.', NULL, '40001');
	END IF;
	v := @extschema@.validate_cache_policy(
		(@extschema@.cache_policy_to_json(p) - ARRAY['id', 'createdAt', 'createdBy', 'updatedAt', 'updatedBy', 'version'])
		|| (changes - 'expectedVersion'));
	UPDATE @extschema@.sync_cache_policy c
	   SET scope = v->'scope', max_cache_size_mb = (v->>'maxCacheSizeMB')::integer, default_ttl = (v->>'defaultTTL')::integer,
		   refresh_strategy = (v->>'refreshStrategy')::@extschema@.sync_cache_refresh,
		   eviction_policy = (v->>'evictionPolicy')::@extschema@.sync_cache_eviction
	 WHERE c.id = p.id;
END
$$;

-- drop_cache_policy(id uuid) RETURNS void
-- Removes a policy; the audit log keeps its last state.
CREATE FUNCTION @extschema@.drop_cache_policy(id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p @extschema@.sync_cache_policy := @extschema@.cache_policy_row(id, true);
BEGIN
	DELETE FROM @extschema@.sync_cache_policy c WHERE c.id = p.id;
END
$$;

-- get_cache_policy(id uuid) RETURNS jsonb: the SPEC.md object, or NULL.
CREATE FUNCTION @extschema@.get_cache_policy(id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT @extschema@.cache_policy_to_json(p) FROM @extschema@.sync_cache_policy p WHERE p.id = $1
$$;

-- Is s shaped like an ISO 8601 timestamp with a time zone: a date, a time,
-- and an explicit zone at the end (Z or +HH, +HHMM, +HH:MM)?  Together with
-- timestamptz accepting it, this is what the inventory's times must be.
-- LIKE, not a regular expression: it runs for every item, and a regular
-- expression costs ten times more.  Inlined (no SET clause, qualified
-- operators).
CREATE FUNCTION @extschema@.sync_cache_timestamp_shape(s text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT pg_catalog.octet_length(s) OPERATOR(pg_catalog.<=) 40
	   AND (s OPERATOR(pg_catalog.~~) '____-__-__T__:__%' OR s OPERATOR(pg_catalog.~~) '____-__-__t__:__%'
			OR s OPERATOR(pg_catalog.~~) '____-__-__ __:__%')
	   AND (s OPERATOR(pg_catalog.~~) '%Z' OR s OPERATOR(pg_catalog.~~) '%+__:__' OR s OPERATOR(pg_catalog.~~) '%-__:__'
			OR s OPERATOR(pg_catalog.~~) '%z' OR s OPERATOR(pg_catalog.~~) '%+__' OR s OPERATOR(pg_catalog.~~) '%-__'
			OR s OPERATOR(pg_catalog.~~) '%+____' OR s OPERATOR(pg_catalog.~~) '%-____')
$$;

-- What is wrong with one inventory item (it, of an inventory for an
-- organization with entity types types, checked at time at_time with
-- clock skew skew allowed), as the end of a message after "inventory[i]", or
-- NULL.  The checks in order: an object, known keys, entityType, entityId,
-- bytes, cachedAt, lastAccessedAt, accessCount.  A time of the right shape
-- that is no valid timestamp raises timestamptz's error at its check
-- (plan_cache then finds the item one by one); an unknown key is named by
-- plan_cache.  Inlined into plan_cache's set-based check: one expression,
-- no sub-select.
CREATE FUNCTION @extschema@.sync_cache_item_problem(it jsonb, types text[], at_time timestamptz, skew interval)
RETURNS text
LANGUAGE sql STABLE
AS $$
	SELECT CASE
		WHEN pg_catalog.jsonb_typeof(it) OPERATOR(pg_catalog.<>) 'object' THEN ' is not an object'
		WHEN it OPERATOR(pg_catalog.-) ARRAY['entityType', 'entityId', 'bytes', 'cachedAt', 'lastAccessedAt', 'accessCount']
			 OPERATOR(pg_catalog.<>) '{}'::jsonb
			THEN ' has an unknown key'
		WHEN pg_catalog.jsonb_typeof(it OPERATOR(pg_catalog.->) 'entityType') IS DISTINCT FROM 'string'
			 OR NOT (it OPERATOR(pg_catalog.->>) 'entityType') OPERATOR(pg_catalog.=) ANY (types)
			THEN pg_catalog.format('.entityType: %s is not a registered sync entity',
				COALESCE(it OPERATOR(pg_catalog.->) 'entityType', 'null'))
		WHEN pg_catalog.jsonb_typeof(it OPERATOR(pg_catalog.->) 'entityId') IS DISTINCT FROM 'string'
			 OR pg_catalog.char_length(it OPERATOR(pg_catalog.->>) 'entityId') NOT BETWEEN 1 AND 200
			THEN '.entityId: a string of 1 to 200 characters (the row''s key) is required'
		WHEN pg_catalog.jsonb_typeof(it OPERATOR(pg_catalog.->) 'bytes') IS DISTINCT FROM 'number'
			 OR (it OPERATOR(pg_catalog.->>) 'bytes') OPERATOR(pg_catalog.~~) '%.%'
			 OR pg_catalog.octet_length(it OPERATOR(pg_catalog.->>) 'bytes') OPERATOR(pg_catalog.>) 10
			 OR (it OPERATOR(pg_catalog.->>) 'bytes')::bigint NOT BETWEEN 0 AND 1073741824
			THEN '.bytes: a whole number from 0 to 1073741824 (the row''s size on the device) is required'
		WHEN pg_catalog.jsonb_typeof(it OPERATOR(pg_catalog.->) 'cachedAt') IS DISTINCT FROM 'string'
			 OR NOT @extschema@.sync_cache_timestamp_shape(it OPERATOR(pg_catalog.->>) 'cachedAt')
			THEN '.cachedAt: an ISO 8601 timestamp with a time zone is required'
		WHEN (it OPERATOR(pg_catalog.->>) 'cachedAt')::timestamptz OPERATOR(pg_catalog.>) (at_time OPERATOR(pg_catalog.+) skew)
			THEN pg_catalog.format('.cachedAt is %s s in the future (the device clock is ahead; at most %s s are accepted)',
				pg_catalog.round(EXTRACT(epoch FROM (it OPERATOR(pg_catalog.->>) 'cachedAt')::timestamptz OPERATOR(pg_catalog.-) at_time), 1),
				EXTRACT(epoch FROM skew)::bigint)
		WHEN it OPERATOR(pg_catalog.->) 'lastAccessedAt' OPERATOR(pg_catalog.<>) 'null'
			 AND (pg_catalog.jsonb_typeof(it OPERATOR(pg_catalog.->) 'lastAccessedAt') OPERATOR(pg_catalog.<>) 'string'
				  OR NOT @extschema@.sync_cache_timestamp_shape(it OPERATOR(pg_catalog.->>) 'lastAccessedAt'))
			THEN '.lastAccessedAt: an ISO 8601 timestamp with a time zone'
		WHEN it OPERATOR(pg_catalog.->) 'lastAccessedAt' OPERATOR(pg_catalog.<>) 'null'
			 AND (it OPERATOR(pg_catalog.->>) 'lastAccessedAt')::timestamptz OPERATOR(pg_catalog.>) (at_time OPERATOR(pg_catalog.+) skew)
			THEN pg_catalog.format('.lastAccessedAt is %s s in the future (the device clock is ahead; at most %s s are accepted)',
				pg_catalog.round(EXTRACT(epoch FROM (it OPERATOR(pg_catalog.->>) 'lastAccessedAt')::timestamptz OPERATOR(pg_catalog.-) at_time), 1),
				EXTRACT(epoch FROM skew)::bigint)
		WHEN it OPERATOR(pg_catalog.->) 'accessCount' OPERATOR(pg_catalog.<>) 'null'
			 AND (pg_catalog.jsonb_typeof(it OPERATOR(pg_catalog.->) 'accessCount') OPERATOR(pg_catalog.<>) 'number'
				  OR (it OPERATOR(pg_catalog.->>) 'accessCount') OPERATOR(pg_catalog.~~) '%.%'
				  OR pg_catalog.octet_length(it OPERATOR(pg_catalog.->>) 'accessCount') OPERATOR(pg_catalog.>) 10
				  OR (it OPERATOR(pg_catalog.->>) 'accessCount')::bigint NOT BETWEEN 0 AND 2147483647)
			THEN '.accessCount: a whole number from 0 to 2147483647'
		END
$$;

-- plan_cache(device_id text, policy_id uuid, inventory jsonb) RETURNS jsonb
-- What a device of the policy should evict and preload, from its inventory,
-- a JSON array of the rows it holds (at most 100,000):
--   [{"entityType", "entityId", "bytes", "cachedAt", "lastAccessedAt", "accessCount"}]
-- (see the top of this file for the rules).  Returns
--   {"deviceId", "plannedAt",
--    "policy": {the policy, "limitBytes", "lowWaterBytes"},
--    "evict": [{entityType, entityId, bytes, reason}] in the order to evict
--             (DELETED, OUT_OF_SCOPE, EXPIRED, then SIZE_LIMIT; each in the
--             policy's order),
--    "keep": {"items", "bytes"} (the protected rows included),
--    "protected": [{entityType, entityId, bytes, reason}] by type and id,
--    "preload": [{entityType, entityId, version, bytes}] best first,
--    "preloadHasMore": bool,
--    "totals": {heldItems, heldBytes, evictItems, evictBytes, evictByReason,
--               protectedItems, protectedBytes, preloadItems, preloadBytes,
--               afterBytes, limitBytes, lowWaterBytes, overLimit}}.
-- overLimit: what the device keeps is over the limit even after every
-- eviction allowed (protected rows alone exceed it).  Read-only, as the
-- caller: row-level security decides which policy, rows, operations and
-- conflicts it sees.  The inventory is checked first, set-based; the first
-- bad item is the error (22023, its path: inventory[i].field).
--
-- Speed: one pass checks and parses the inventory into arrays, one
-- statement plans.  Custom plans (plan_cache_mode) let the planner see the
-- arrays' lengths, so a large inventory is hash-joined with sync_row and a
-- small one looked up by index.
CREATE FUNCTION @extschema@.plan_cache(device_id text, policy_id uuid, inventory jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
	p @extschema@.sync_cache_policy;
	sc jsonb;
	entities text[];
	clients text[];
	caregivers text[];
	branches text[];
	date_from date;
	date_to date;
	filtered boolean;
	types text[];
	skew interval := @extschema@.sync_max_clock_skew();
	first_bad bigint;
	problem text;
	item record;
	dup record;
	ets text[];
	eids text[];
	sizes bigint[];
	cached timestamptz[];
	accessed timestamptz[];
	counts bigint[];
	e_types text[];
	e_ids uuid[];
	e_critical boolean[];
	e_rank integer[];
	e_ttl integer[];
	e_in_scope boolean[];
	e_client text[];
	e_caregiver text[];
	e_branch text[];
	e_date text[];
	limit_bytes bigint;
	low_water bigint;
	preload_cap CONSTANT integer := 1000;
	result jsonb;
BEGIN
	IF device_id IS NULL OR device_id !~ '^[A-Za-z0-9._:@-]{1,200}$' THEN
		PERFORM @extschema@.raise_invalid(format('invalid device_id: %s', coalesce(quote_literal(device_id), 'NULL')),
			'A device id is 1 to 200 letters, digits and . _ : @ -.');
	END IF;
	p := @extschema@.cache_policy_row(policy_id, false);
	IF inventory IS NULL OR jsonb_typeof(inventory) <> 'array' THEN
		PERFORM @extschema@.raise_invalid('inventory must be a JSON array',
			'Pass the rows the device holds: [{"entityType": "VISIT", "entityId": "v1", "bytes": 2048, "cachedAt": "...", '
			'"lastAccessedAt": "...", "accessCount": 3}], or [] for an empty cache.');
	END IF;
	IF jsonb_array_length(inventory) > 100000 THEN
		PERFORM @extschema@.raise_invalid(format('inventory holds at most 100000 items, not %s', jsonb_array_length(inventory)),
			'List the rows of one device''s cache; a device caches at most 1000 MB.');
	END IF;
	SELECT array_agg(DISTINCT e.entity_type) INTO types FROM @extschema@.sync_entity e
	 WHERE e.organization_id IS NULL OR e.organization_id = p.organization_id;
	types := coalesce(types, '{}');

	-- check and parse every item in one pass; a time that is no timestamp
	-- raises, and then the items are checked one by one for the first bad one
	BEGIN
		-- (OFFSET 0: the problem is computed once per item, not once per use)
		SELECT min(x.i) FILTER (WHERE x.problem IS NOT NULL),
			   (array_agg(x.problem ORDER BY x.i) FILTER (WHERE x.problem IS NOT NULL))[1],
			   array_agg(x.it->>'entityType'), array_agg(x.it->>'entityId'),
			   array_agg(CASE WHEN x.problem IS NULL THEN (x.it->>'bytes')::bigint END),
			   array_agg(CASE WHEN x.problem IS NULL THEN (x.it->>'cachedAt')::timestamptz END),
			   array_agg(CASE WHEN x.problem IS NULL THEN coalesce((x.it->>'lastAccessedAt')::timestamptz, (x.it->>'cachedAt')::timestamptz) END),
			   array_agg(CASE WHEN x.problem IS NULL THEN coalesce((x.it->>'accessCount')::bigint, 0) END)
		  INTO first_bad, problem, ets, eids, sizes, cached, accessed, counts
		  FROM (SELECT o.i, o.it, @extschema@.sync_cache_item_problem(o.it, types, now(), skew) AS problem
				  FROM jsonb_array_elements(inventory) WITH ORDINALITY AS o(it, i) OFFSET 0) x;
	EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_time_zone_displacement_value THEN
		FOR item IN SELECT o.i, o.it FROM jsonb_array_elements(inventory) WITH ORDINALITY AS o(it, i) ORDER BY o.i LOOP
			BEGIN
				problem := @extschema@.sync_cache_item_problem(item.it, types, now(), skew);
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_time_zone_displacement_value THEN
				BEGIN
					PERFORM (item.it->>'cachedAt')::timestamptz;
					problem := '.lastAccessedAt: an ISO 8601 timestamp with a time zone';
				EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_time_zone_displacement_value THEN
					problem := '.cachedAt: an ISO 8601 timestamp with a time zone is required';
				END;
			END;
			IF problem IS NOT NULL THEN
				first_bad := item.i;
				EXIT;
			END IF;
		END LOOP;
	END;
	IF first_bad IS NOT NULL THEN
		IF problem = ' has an unknown key' THEN
			problem := problem || ' ' || (SELECT min(k) FROM jsonb_object_keys(inventory->(first_bad::integer - 1)) k
										   WHERE k NOT IN ('entityType', 'entityId', 'bytes', 'cachedAt', 'lastAccessedAt', 'accessCount'));
		END IF;
		PERFORM @extschema@.raise_invalid(format('inventory[%s]%s', first_bad - 1, problem),
			'Fix that item and send the inventory again: each item is {"entityType", "entityId", "bytes", "cachedAt", '
			'"lastAccessedAt", "accessCount"}.');
	END IF;
	-- a row listed twice
	SELECT d.et, d.eid INTO dup FROM unnest(ets, eids) AS d(et, eid) GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 1;
	IF FOUND THEN
		SELECT d.et, d.eid, min(d.i) AS first, (array_agg(d.i ORDER BY d.i))[2] AS second INTO dup
		  FROM unnest(ets, eids) WITH ORDINALITY AS d(et, eid, i)
		 GROUP BY 1, 2 HAVING count(*) > 1
		 ORDER BY 4 LIMIT 1;
		PERFORM @extschema@.raise_invalid(format('inventory[%s]: %s %s is already listed at inventory[%s]',
			dup.second - 1, dup.et, quote_literal(dup.eid), dup.first - 1),
			'List each row the device holds once.');
	END IF;

	-- the policy's scope (stored normalised: read as pull_changes reads its scope)
	sc := p.scope;
	entities := CASE WHEN sc ? 'entities' THEN ARRAY(SELECT jsonb_array_elements_text(sc->'entities')) END;
	clients := CASE WHEN sc ? 'clientIds' THEN ARRAY(SELECT jsonb_array_elements_text(sc->'clientIds')) END;
	caregivers := CASE WHEN sc ? 'caregiverIds' THEN ARRAY(SELECT jsonb_array_elements_text(sc->'caregiverIds')) END;
	branches := CASE WHEN sc ? 'branchIds' THEN ARRAY(SELECT jsonb_array_elements_text(sc->'branchIds')) END;
	date_from := (sc->'dateRange'->>'startDate')::date;
	date_to := (sc->'dateRange'->>'endDate')::date;
	filtered := clients IS NOT NULL OR caregivers IS NOT NULL OR branches IS NOT NULL OR date_from IS NOT NULL OR date_to IS NOT NULL;
	limit_bytes := p.max_cache_size_mb::bigint * 1048576;
	low_water := limit_bytes * 9 / 10;
	-- the organization's entity types (its own registration before a shared
	-- one) as arrays, looked up by position: a join with a handful of entity
	-- rows would hide the inventory's size from the planner
	SELECT array_agg(x.entity_type ORDER BY x.entity_type), array_agg(x.id ORDER BY x.entity_type),
		   array_agg(x.critical OR x.prio = 'CRITICAL' ORDER BY x.entity_type),
		   array_agg(CASE x.prio WHEN 'HIGH' THEN 3 WHEN 'NORMAL' THEN 2 WHEN 'LOW' THEN 1 WHEN 'BACKGROUND' THEN 0 ELSE 4 END
					 ORDER BY x.entity_type),
		   array_agg(coalesce((sc->'entityTtls'->>x.entity_type)::integer, p.default_ttl) ORDER BY x.entity_type),
		   array_agg(entities IS NULL OR x.entity_type = ANY (entities) ORDER BY x.entity_type),
		   array_agg(x.client_id_column::text ORDER BY x.entity_type), array_agg(x.caregiver_id_column::text ORDER BY x.entity_type),
		   array_agg(x.branch_id_column::text ORDER BY x.entity_type), array_agg(x.date_column::text ORDER BY x.entity_type)
	  INTO e_types, e_ids, e_critical, e_rank, e_ttl, e_in_scope, e_client, e_caregiver, e_branch, e_date
	  FROM (SELECT DISTINCT ON (e.entity_type) e.*, coalesce(sc->'entityPriorities'->>e.entity_type, 'NORMAL') AS prio
			  FROM @extschema@.sync_entity e
			 WHERE e.organization_id IS NULL OR e.organization_id = p.organization_id
			 ORDER BY e.entity_type, e.organization_id NULLS LAST) x;

	WITH inv AS (
		SELECT u.*, array_position(e_types, u.et) AS k, e_ids[array_position(e_types, u.et)] AS entity_id
		  FROM unnest(ets, eids, sizes, cached, accessed, counts) AS u(et, eid, bytes, cached_at, accessed_at, access_count)),
	-- every held row: protected (why), or evicted whatever the size (why)
	cls AS (
		SELECT inv.et, inv.eid, inv.bytes, inv.cached_at, inv.accessed_at, inv.access_count, e_rank[inv.k] AS prio_rank,
			   inv.cached_at + e_ttl[inv.k] * interval '1 second' AS expires_at,
			   CASE WHEN pend.entity_id IS NOT NULL THEN 'PENDING_OPERATION'
					WHEN conf.entity_id IS NOT NULL THEN 'OPEN_CONFLICT'
					WHEN e_critical[inv.k] THEN 'CRITICAL_ENTITY'
					WHEN r.row_key IS NULL THEN 'NOT_ON_SERVER' END AS protect,
			   CASE WHEN r.deleted THEN 'DELETED'
					WHEN NOT e_in_scope[inv.k] THEN 'OUT_OF_SCOPE'
					WHEN filtered AND (
						   (clients IS NULL OR e_client[inv.k] IS NULL OR h.image->>e_client[inv.k] = ANY (clients))
						   AND (caregivers IS NULL OR e_caregiver[inv.k] IS NULL OR h.image->>e_caregiver[inv.k] = ANY (caregivers))
						   AND (branches IS NULL OR e_branch[inv.k] IS NULL OR h.image->>e_branch[inv.k] = ANY (branches))
						   AND (date_from IS NULL OR e_date[inv.k] IS NULL OR (h.image->>e_date[inv.k])::date >= date_from)
						   AND (date_to IS NULL OR e_date[inv.k] IS NULL OR (h.image->>e_date[inv.k])::date <= date_to)) IS NOT TRUE
						THEN 'OUT_OF_SCOPE'
					WHEN inv.cached_at + e_ttl[inv.k] * interval '1 second' < now() THEN 'EXPIRED' END AS early
		  FROM inv
		  -- the row as the policy's organization has it (another organization's
		  -- row is no row of its: the plan does not depend on who may see it)
		  LEFT JOIN @extschema@.sync_row r
				 ON r.entity_id = inv.entity_id AND r.row_key = inv.eid AND r.organization_id = p.organization_id
		  LEFT JOIN @extschema@.sync_row_history h
				 ON filtered AND h.entity_id = r.entity_id AND h.row_key = r.row_key AND h.version = r.version
		  -- this device's operations not applied yet, and the open conflicts
		  LEFT JOIN (SELECT DISTINCT q.entity_type, q.entity_id FROM @extschema@.sync_queue q
					  WHERE q.device_id = plan_cache.device_id AND q.status IN ('PENDING', 'BLOCKED', 'CONFLICT')) pend
				 ON pend.entity_type = inv.et AND pend.entity_id = inv.eid
		  LEFT JOIN (SELECT DISTINCT c.entity_type, c.entity_id FROM @extschema@.sync_conflict c
					  WHERE c.status = 'OPEN' AND c.organization_id = p.organization_id) conf
				 ON conf.entity_type = inv.et AND conf.entity_id = inv.eid),
	-- in the policy's order (the CASEs fold to the policy's keys), with the
	-- bytes of the evictable rows before each
	ranked AS (
		SELECT c.et, c.eid, c.bytes, c.protect, c.early, row_number() OVER w AS n,
			   coalesce(sum(c.bytes) FILTER (WHERE c.protect IS NULL AND c.early IS NULL) OVER w, 0) - c.bytes AS before
		  FROM cls c
		WINDOW w AS (ORDER BY
			CASE WHEN p.eviction_policy = 'PRIORITY' THEN c.prio_rank END,
			CASE WHEN p.eviction_policy = 'LFU' THEN c.access_count END,
			CASE p.eviction_policy WHEN 'FIFO' THEN c.cached_at WHEN 'TTL' THEN c.expires_at ELSE c.accessed_at END,
			c.et, c.eid
			ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)),
	-- what is left after the protected rows and the first three reasons, and
	-- how much must go for it to come down to the low-water mark
	need AS (
		SELECT CASE WHEN s.left_bytes > limit_bytes THEN s.left_bytes - low_water ELSE 0 END AS bytes
		  FROM (SELECT coalesce(sum(c.bytes) FILTER (WHERE c.protect IS NOT NULL OR c.early IS NULL), 0) AS left_bytes FROM cls c) s),
	fin AS (
		SELECT rk.et, rk.eid, rk.bytes, rk.protect, rk.n,
			   CASE WHEN rk.protect IS NOT NULL THEN NULL
					WHEN rk.early IS NOT NULL THEN rk.early
					WHEN rk.before < need.bytes THEN 'SIZE_LIMIT' END AS reason
		  FROM ranked rk, need),
	kept AS (
		SELECT count(*) AS items, coalesce(sum(f.bytes), 0) AS bytes FROM fin f WHERE f.reason IS NULL),
	-- rows in scope the device does not hold, best first
	cand AS (
		SELECT y.*
		  FROM (SELECT e_types[x.k] AS et, x.eid, x.entity_id, x.version, e_critical[x.k] AS critical, e_rank[x.k] AS prio_rank,
					   x.changed_at
				  FROM (SELECT r.entity_id, r.row_key AS eid, r.version, r.changed_at, h.image,
							   array_position(e_ids, r.entity_id) AS k
						  FROM @extschema@.sync_row r
						  LEFT JOIN @extschema@.sync_row_history h
								 ON filtered AND h.entity_id = r.entity_id AND h.row_key = r.row_key AND h.version = r.version
						 WHERE r.entity_id = ANY (e_ids) AND NOT r.deleted AND r.organization_id = p.organization_id
						   AND NOT EXISTS (SELECT 1 FROM inv WHERE inv.entity_id = r.entity_id AND inv.eid = r.row_key)) x
				 WHERE e_in_scope[x.k]
				   AND (NOT filtered OR (
						   (clients IS NULL OR e_client[x.k] IS NULL OR x.image->>e_client[x.k] = ANY (clients))
						   AND (caregivers IS NULL OR e_caregiver[x.k] IS NULL OR x.image->>e_caregiver[x.k] = ANY (caregivers))
						   AND (branches IS NULL OR e_branch[x.k] IS NULL OR x.image->>e_branch[x.k] = ANY (branches))
						   AND (date_from IS NULL OR e_date[x.k] IS NULL OR (x.image->>e_date[x.k])::date >= date_from)
						   AND (date_to IS NULL OR e_date[x.k] IS NULL OR (x.image->>e_date[x.k])::date <= date_to)))
				-- (a fence: the best are picked by a bounded sort above, not by sorting every row below the anti-join)
				OFFSET 0) y
		 ORDER BY y.critical DESC, y.prio_rank DESC, y.changed_at DESC, y.et, y.eid
		 LIMIT preload_cap + 1),
	pre AS (
		SELECT x.*, sum(x.bytes) OVER (ORDER BY x.n ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS upto
		  FROM (SELECT c.*,
					   coalesce((SELECT octet_length(h.image::text) FROM @extschema@.sync_row_history h
								  WHERE h.entity_id = c.entity_id AND h.row_key = c.eid AND h.version = c.version), 0)::bigint AS bytes,
					   row_number() OVER (ORDER BY c.critical DESC, c.prio_rank DESC, c.changed_at DESC, c.et, c.eid) AS n
				  FROM cand c) x),
	chosen AS (
		SELECT pre.* FROM pre, kept
		 WHERE pre.n <= preload_cap AND pre.upto <= greatest(0, low_water - kept.bytes)),
	chosen_totals AS (
		SELECT count(*) AS items, coalesce(sum(c.bytes), 0) AS bytes FROM chosen c)
	SELECT jsonb_build_object(
		'deviceId', plan_cache.device_id,
		'plannedAt', now(),
		'policy', @extschema@.cache_policy_to_json(p) || jsonb_build_object('limitBytes', limit_bytes, 'lowWaterBytes', low_water),
		'evict', (SELECT coalesce(jsonb_agg(jsonb_build_object('entityType', f.et, 'entityId', f.eid, 'bytes', f.bytes, 'reason', f.reason)
											ORDER BY array_position(ARRAY['DELETED', 'OUT_OF_SCOPE', 'EXPIRED', 'SIZE_LIMIT'], f.reason), f.n), '[]')
					FROM fin f WHERE f.reason IS NOT NULL),
		'keep', (SELECT jsonb_build_object('items', k.items, 'bytes', k.bytes) FROM kept k),
		'protected', (SELECT coalesce(jsonb_agg(jsonb_build_object('entityType', f.et, 'entityId', f.eid, 'bytes', f.bytes, 'reason', f.protect)
												ORDER BY f.et, f.eid), '[]')
						FROM fin f WHERE f.protect IS NOT NULL),
		'preload', (SELECT coalesce(jsonb_agg(jsonb_build_object('entityType', c.et, 'entityId', c.eid, 'version', c.version, 'bytes', c.bytes)
											  ORDER BY c.n), '[]')
					  FROM chosen c),
		'preloadHasMore', (SELECT count(*) FROM pre) > (SELECT ct.items FROM chosen_totals ct),
		'totals', (SELECT jsonb_build_object(
						'heldItems', count(*), 'heldBytes', coalesce(sum(f.bytes), 0),
						'evictItems', count(*) FILTER (WHERE f.reason IS NOT NULL),
						'evictBytes', coalesce(sum(f.bytes) FILTER (WHERE f.reason IS NOT NULL), 0),
						'evictByReason', jsonb_build_object(
							'DELETED', count(*) FILTER (WHERE f.reason = 'DELETED'),
							'OUT_OF_SCOPE', count(*) FILTER (WHERE f.reason = 'OUT_OF_SCOPE'),
							'EXPIRED', count(*) FILTER (WHERE f.reason = 'EXPIRED'),
							'SIZE_LIMIT', count(*) FILTER (WHERE f.reason = 'SIZE_LIMIT')),
						'protectedItems', count(*) FILTER (WHERE f.protect IS NOT NULL),
						'protectedBytes', coalesce(sum(f.bytes) FILTER (WHERE f.protect IS NOT NULL), 0),
						'preloadItems', (SELECT ct.items FROM chosen_totals ct),
						'preloadBytes', (SELECT ct.bytes FROM chosen_totals ct),
						'afterBytes', (SELECT k.bytes FROM kept k) + (SELECT ct.bytes FROM chosen_totals ct),
						'limitBytes', limit_bytes,
						'lowWaterBytes', low_water,
						'overLimit', (SELECT k.bytes FROM kept k) > limit_bytes)
					 FROM fin f))
	  INTO result;
	RETURN result;
END
$$;

-- privileges and row-level security
REVOKE ALL ON @extschema@.sync_cache_policy FROM PUBLIC;
REVOKE ALL ON FUNCTION
	@extschema@.validate_sync_scope(jsonb, uuid, boolean),
	@extschema@.cache_policy_int(jsonb, text, text, bigint, bigint, text, text, bigint),
	@extschema@.validate_cache_policy(jsonb),
	@extschema@.cache_policy_to_json(@extschema@.sync_cache_policy),
	@extschema@.sync_cache_policy_guard(),
	@extschema@.create_cache_policy(jsonb),
	@extschema@.cache_policy_row(uuid, boolean),
	@extschema@.update_cache_policy(uuid, jsonb),
	@extschema@.drop_cache_policy(uuid),
	@extschema@.get_cache_policy(uuid),
	@extschema@.sync_cache_timestamp_shape(text),
	@extschema@.sync_cache_item_problem(jsonb, text[], timestamptz, interval),
	@extschema@.plan_cache(text, uuid, jsonb)
FROM PUBLIC;
GRANT SELECT ON @extschema@.sync_cache_policy
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor, backup_offline_app;
-- the policy's own columns; the guard keeps the bookkeeping
GRANT INSERT (organization_id, scope, max_cache_size_mb, default_ttl, refresh_strategy, eviction_policy),
	  UPDATE (scope, max_cache_size_mb, default_ttl, refresh_strategy, eviction_policy),
	  DELETE
ON @extschema@.sync_cache_policy
TO backup_offline_admin, backup_offline_operator, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.cache_policy_to_json(@extschema@.sync_cache_policy),
	@extschema@.get_cache_policy(uuid)
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.validate_sync_scope(jsonb, uuid, boolean),
	@extschema@.cache_policy_int(jsonb, text, text, bigint, bigint, text, text, bigint),
	@extschema@.validate_cache_policy(jsonb),
	@extschema@.create_cache_policy(jsonb),
	@extschema@.cache_policy_row(uuid, boolean),
	@extschema@.update_cache_policy(uuid, jsonb),
	@extschema@.drop_cache_policy(uuid)
TO backup_offline_admin, backup_offline_operator, backup_offline_app;
-- planning reads sync_row and sync_row_history, which operators do not
GRANT EXECUTE ON FUNCTION
	@extschema@.sync_cache_timestamp_shape(text),
	@extschema@.sync_cache_item_problem(jsonb, text[], timestamptz, interval),
	@extschema@.plan_cache(text, uuid, jsonb)
TO backup_offline_admin, backup_offline_app;
ALTER TABLE @extschema@.sync_cache_policy ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_cache_policy FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_cache_policy', '');
