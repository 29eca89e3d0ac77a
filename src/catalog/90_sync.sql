-- The offline-sync engine (src/sync/): the field-level three-way merge.

-- merge3(base jsonb, client jsonb, server jsonb, policy jsonb DEFAULT '{}')
-- RETURNS jsonb: {"merged": {...}, "conflicts": [{path, base, client,
-- server, resolution, winner}], "requiresManualResolution": bool}.  base
-- may be NULL (the device never saw a server version).  See
-- src/sync/merge.c for the rules and the policy's shape.
CREATE FUNCTION @extschema@.merge3(base jsonb, client jsonb, server jsonb, policy jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_merge3_sql'
LANGUAGE C STABLE PARALLEL SAFE;

-- a pure function of its arguments (a custom resolver runs as the caller)
GRANT EXECUTE ON FUNCTION @extschema@.merge3(jsonb, jsonb, jsonb, jsonb) TO PUBLIC;

-- ---------------------------------------------------------------------
-- Sync entities: the tables devices sync, how their conflicts resolve,
-- and what keeps their row versions, pull sequence, history and
-- tombstones.
--
-- Registering a table installs three statement-level triggers on it
-- (sync_track_<entity id>, with transition tables) that keep, for every row:
--   sync_row          its version (1, 2, ... per change), whether it is
--                     deleted (a tombstone), the transaction that wrote it,
--                     and change_seq, the server-assigned pull sequence;
--   sync_row_history  the row image of its last history_depth versions
--                     (the base of three-way merges; a delete keeps the
--                     deleted image).
-- change_seq is assigned by sync_sequence() to committed changes, one
-- sequencer at a time, never at write time: a cursor handed to a device
-- never passes a change that commits later, since that change gets a
-- higher number when it is sequenced (a number taken at write time would:
-- the transaction holding a lower number may commit after one holding a
-- higher number has been pulled).
-- ---------------------------------------------------------------------

CREATE TYPE @extschema@.sync_strategy AS ENUM
	('CLIENT_WINS', 'SERVER_WINS', 'NEWEST_WINS', 'FIELD_LEVEL_MERGE', 'MANUAL', 'CUSTOM');
CREATE TYPE @extschema@.sync_delete_policy AS ENUM ('DELETE_WINS', 'UPDATE_WINS', 'MANUAL');

CREATE TABLE @extschema@.sync_entity (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid,
	entity_type text NOT NULL
		CONSTRAINT sync_entity_type_format CHECK (entity_type OPERATOR(pg_catalog.~) '^[A-Z][A-Z0-9_]{0,62}$'),
	table_name regclass NOT NULL,
	key_column name NOT NULL,
	strategy @extschema@.sync_strategy NOT NULL,
	field_policies jsonb NOT NULL,
	custom_function regprocedure,
	delete_policy @extschema@.sync_delete_policy NOT NULL,
	critical boolean NOT NULL,
	history_depth integer NOT NULL CHECK (history_depth BETWEEN 1 AND 1000),
	tombstone_lifetime interval NOT NULL,
	organization_column name,
	client_id_column name,
	caregiver_id_column name,
	branch_id_column name,
	date_column name,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by name NOT NULL DEFAULT CURRENT_USER
);
CREATE UNIQUE INDEX sync_entity_type_key ON @extschema@.sync_entity (organization_id, entity_type) NULLS NOT DISTINCT;
CREATE UNIQUE INDEX sync_entity_table_key ON @extschema@.sync_entity (table_name);
COMMENT ON TABLE @extschema@.sync_entity IS 'Tables that devices sync, with their conflict policies';

CREATE SEQUENCE @extschema@.sync_change_seq;

CREATE TABLE @extschema@.sync_row (
	entity_id uuid NOT NULL REFERENCES @extschema@.sync_entity (id) ON DELETE CASCADE,
	row_key text NOT NULL,
	organization_id uuid,
	version bigint NOT NULL,
	change_seq bigint,
	writer xid8 NOT NULL,
	deleted boolean NOT NULL,
	changed_at timestamptz NOT NULL,
	PRIMARY KEY (entity_id, row_key)
);
CREATE UNIQUE INDEX sync_row_change_seq ON @extschema@.sync_row (change_seq);
CREATE INDEX sync_row_unsequenced ON @extschema@.sync_row (entity_id) WHERE change_seq IS NULL;
CREATE INDEX sync_row_tombstones ON @extschema@.sync_row (entity_id, changed_at) WHERE deleted;
COMMENT ON TABLE @extschema@.sync_row IS 'Version, pull sequence and tombstone of every row of the sync entities';

CREATE TABLE @extschema@.sync_row_history (
	entity_id uuid NOT NULL,
	row_key text NOT NULL,
	organization_id uuid,
	version bigint NOT NULL,
	image jsonb NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (entity_id, row_key, version),
	FOREIGN KEY (entity_id, row_key) REFERENCES @extschema@.sync_row (entity_id, row_key) ON DELETE CASCADE
);
COMMENT ON TABLE @extschema@.sync_row_history IS 'Recent images of the rows of the sync entities: the bases of three-way merges';

-- Engine state: tombstone_horizon, the highest change_seq of a purged
-- tombstone (a cursor below it cannot be served incrementally; none: 0).
-- No row is installed with the extension, so that pg_dump / pg_restore
-- carry the rows written since.
CREATE TABLE @extschema@.sync_state (
	name text PRIMARY KEY,
	value bigint NOT NULL
);

-- The statement that records the rows of relation rows (the text of a
-- FROM item) of entity e as deleted or not: each row's state upserted
-- (version + 1, unsequenced again, its clock forgotten: a write is as
-- new as its changed_at until sync_stamp gives it the clock of the device
-- operation that made it), its image added to the history,
-- versions beyond the history depth dropped, except those a queued
-- operation still waits to be merged from (its baseVersion).  The entity's id, key,
-- organization and depth are written in: the statement is static SQL of
-- its trigger function.
CREATE FUNCTION @extschema@.sync_track_sql(e @extschema@.sync_entity, rows text, deleted boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format($f$
		WITH x AS (SELECT DISTINCT ON (k) k, img, %3$s AS org
					 FROM (SELECT (to_jsonb(r.*)->>%1$L) AS k, to_jsonb(r.*) AS img FROM %2$s r) s),
		up AS (
			INSERT INTO @extschema@.sync_row AS s (entity_id, row_key, organization_id, version, change_seq, writer, deleted, changed_at)
			SELECT %4$L::uuid, x.k, x.org, 1, NULL, pg_current_xact_id(), %5$L::boolean, now() FROM x
			ON CONFLICT (entity_id, row_key) DO UPDATE
			   SET version = s.version + 1, change_seq = NULL, writer = EXCLUDED.writer, deleted = EXCLUDED.deleted,
				   changed_at = EXCLUDED.changed_at, organization_id = EXCLUDED.organization_id, hlc = NULL
			RETURNING s.row_key, s.version, s.organization_id),
		h AS (
			INSERT INTO @extschema@.sync_row_history (entity_id, row_key, organization_id, version, image)
			SELECT %4$L::uuid, up.row_key, up.organization_id, up.version, x.img FROM up JOIN x ON x.k = up.row_key)
		DELETE FROM @extschema@.sync_row_history o USING up
		 WHERE o.entity_id = %4$L::uuid AND o.row_key = up.row_key AND o.version <= up.version - %6$s
		   AND NOT EXISTS (SELECT 1 FROM @extschema@.sync_queue q
							WHERE q.entity_type = %7$L AND q.entity_id = o.row_key AND q.base_version = o.version
							  AND q.status IN ('PENDING', 'BLOCKED', 'CONFLICT'))$f$,
		e.key_column, rows,
		CASE WHEN e.organization_column IS NOT NULL THEN format('(img->>%L)::uuid', e.organization_column)
			 ELSE quote_nullable(e.organization_id) || '::uuid' END,
		e.id, deleted, e.history_depth, e.entity_type)
$$;

-- The statement-trigger function of one entity (sync_track_<entity id>):
-- versions, history and tombstones for the rows a statement wrote,
-- set-based over the transition tables, with sync_track_sql's statements
-- and the entity's id, key column, organization column and history depth
-- written in as static SQL, so that PL/pgSQL plans them once per session
-- (built and planned per statement they cost about 0.7 ms each); a
-- statement of more than 64 rows runs them through EXECUTE, planned for its
-- size (a plan kept from a one-row statement joins the transition tables by
-- nested loops: 2 s instead of 0.1 s for 5,000 rows).  An UPDATE
-- that changes a key makes the old key a tombstone.  SECURITY DEFINER and
-- owned by the extension's owner (the table's writers may not write the
-- catalog), so it refuses to run for any table but its entity's.  Returns
-- its name.
CREATE FUNCTION @extschema@.sync_track_function(entity uuid)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e @extschema@.sync_entity;
	fn text;
	ins text;
	upd_gone text;
	del text;
	tag text;
BEGIN
	SELECT * INTO e FROM @extschema@.sync_entity WHERE id = entity;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sync entity % does not exist', entity USING ERRCODE = '42704';
	END IF;
	fn := 'sync_track_' || replace(e.id::text, '-', '');
	ins := @extschema@.sync_track_sql(e, 'new_rows', false);
	-- a key that an UPDATE changed: the old key is deleted
	upd_gone := @extschema@.sync_track_sql(e,
		format('(SELECT o.* FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.%1$I = o.%1$I))', e.key_column),
		true);
	del := @extschema@.sync_track_sql(e, 'old_rows', true);
	-- the body's quote: a tag no column name of the table can close
	tag := '$sync_' || replace(e.id::text, '-', '') || '$';
	IF strpos(ins || upd_gone || del, tag) > 0 THEN
		RAISE EXCEPTION 'a column name of % holds %', e.table_name, tag USING ERRCODE = '42602';
	END IF;
	EXECUTE format($f$
CREATE OR REPLACE FUNCTION @extschema@.%I()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS %s
DECLARE
	large boolean;
BEGIN
	IF TG_RELID <> %s::oid THEN
		RAISE EXCEPTION 'this sync trigger function fires only on table %s' USING ERRCODE = '42501';
	END IF;
	-- a statement of many rows plans its own statements (a plan kept from a
	-- statement of one row would join the transition tables by nested loops)
	IF TG_OP = 'DELETE' THEN
		large := (SELECT count(*) FROM (SELECT FROM old_rows LIMIT 65) x) > 64;
	ELSE
		large := (SELECT count(*) FROM (SELECT FROM new_rows LIMIT 65) x) > 64;
	END IF;
	IF TG_OP = 'INSERT' AND large THEN
		EXECUTE %L;
	ELSIF TG_OP = 'INSERT' THEN
		%s;
	ELSIF TG_OP = 'UPDATE' AND large THEN
		EXECUTE %L;
		EXECUTE %L;
	ELSIF TG_OP = 'UPDATE' THEN
		%s;
		%s;
	ELSIF large THEN
		EXECUTE %L;
	ELSE
		%s;
	END IF;
	RETURN NULL;
END
%s
$f$, fn, tag, e.table_name::oid, e.table_name::oid, ins, ins, ins, upd_gone, ins, upd_gone, del, del, tag);
	EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.%I() FROM PUBLIC', fn);
	RETURN '@extschema@.' || quote_ident(fn);
END
$$;

-- The rows a table holds when it is registered: version 1 each, pullable.
-- SECURITY DEFINER like the trigger functions; only for a just-registered entity
-- whose table the caller owns (register_sync_entity checked).
CREATE FUNCTION @extschema@.sync_track_existing(entity uuid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e @extschema@.sync_entity;
BEGIN
	SELECT * INTO e FROM @extschema@.sync_entity WHERE id = entity;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sync entity % does not exist', entity USING ERRCODE = '42704';
	END IF;
	IF EXISTS (SELECT 1 FROM @extschema@.sync_row r WHERE r.entity_id = entity) THEN
		RETURN;
	END IF;
	EXECUTE @extschema@.sync_track_sql(e, e.table_name::text, false);
END
$$;

-- register_sync_entity(entity_type text, target regclass, options jsonb DEFAULT '{}') RETURNS uuid
-- options: keyColumn (default: the one-column primary key), defaultStrategy
-- (SPEC.md's: CLIENT_WINS, SERVER_WINS, NEWEST_WINS, FIELD_LEVEL_MERGE
-- (default), MANUAL, CUSTOM), fieldPolicies (merge3's "fields"),
-- customFunction (CUSTOM: a function (jsonb, jsonb, jsonb) RETURNS jsonb),
-- deletePolicy (DELETE_WINS (default), UPDATE_WINS, MANUAL), critical
-- (never evicted from devices), historyDepth (1..1000, default 10),
-- tombstoneLifetime (1 hour .. 1 year, default 30 days), organizationColumn,
-- clientIdColumn, caregiverIdColumn, branchIdColumn, dateColumn (pull
-- scopes), organizationId.
CREATE FUNCTION @extschema@.register_sync_entity(entity_type text, target regclass, options jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e @extschema@.sync_entity;
	keys name[];
	fn text;
	lifetime text;
	col record;
BEGIN
	IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('options must be a JSON object', 'Pass ''{}'' for the defaults.');
	END IF;
	PERFORM @extschema@.check_object(options, 'options',
		ARRAY['keyColumn', 'defaultStrategy', 'fieldPolicies', 'customFunction', 'deletePolicy', 'critical',
			  'historyDepth', 'tombstoneLifetime', 'organizationColumn', 'clientIdColumn', 'caregiverIdColumn',
			  'branchIdColumn', 'dateColumn', 'organizationId']);
	IF entity_type IS NULL OR entity_type !~ '^[A-Z][A-Z0-9_]{0,62}$' THEN
		PERFORM @extschema@.raise_invalid(format('invalid entity_type: "%s"', entity_type),
			'Use upper-case letters, digits and underscores, such as VISIT.');
	END IF;
	IF target IS NULL OR (SELECT c.relkind FROM pg_class c WHERE c.oid = target) <> 'r' THEN
		PERFORM @extschema@.raise_invalid(format('invalid target: %s is not a table', coalesce(target::text, 'NULL')),
			'Register an ordinary table.', NULL, '42809');
	END IF;
	IF NOT pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = target), 'MEMBER') THEN
		PERFORM @extschema@.raise_invalid(format('must be the owner of table %s to register it for sync', target),
			'Registering installs triggers on the table: its owner registers it.', NULL, '42501');
	END IF;
	e.id := gen_random_uuid();
	e.organization_id := @extschema@.json_uuid(options, 'organizationId', 'options');
	e.entity_type := entity_type;
	e.table_name := target;
	e.key_column := @extschema@.json_text(options, 'keyColumn', 'options', false, 63);
	IF e.key_column IS NULL THEN
		SELECT array_agg(a.attname) INTO keys
		  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		 WHERE i.indrelid = target AND i.indisprimary;
		IF cardinality(keys) IS DISTINCT FROM 1 THEN
			PERFORM @extschema@.raise_invalid(format('options.keyColumn is required: table %s has no one-column primary key', target),
				'Name the column that identifies a row, such as {"keyColumn": "id"}.');
		END IF;
		e.key_column := keys[1];
	END IF;
	e.strategy := @extschema@.json_choice(options, 'defaultStrategy', 'options',
		ARRAY['CLIENT_WINS', 'SERVER_WINS', 'NEWEST_WINS', 'FIELD_LEVEL_MERGE', 'MANUAL', 'CUSTOM'], 'FIELD_LEVEL_MERGE');
	e.field_policies := coalesce(options->'fieldPolicies', '{}');
	IF jsonb_typeof(e.field_policies) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('invalid options.fieldPolicies: not an object',
			'Map field paths to merge3 policies, such as {"notes": "append", "tasks": "merge_by_id"}.');
	END IF;
	-- merge3 checks the policies (names, keys, functions)
	PERFORM @extschema@.merge3('{}', '{}', '{}', jsonb_build_object('fields', e.field_policies));
	fn := @extschema@.json_text(options, 'customFunction', 'options', false, 200);
	IF fn IS NOT NULL THEN
		e.custom_function := to_regprocedure(fn || '(jsonb, jsonb, jsonb)');
		IF e.custom_function IS NULL THEN
			PERFORM @extschema@.raise_invalid(format('invalid options.customFunction: function %s(jsonb, jsonb, jsonb) does not exist', fn),
				'A custom resolver takes base, client and server as jsonb and returns jsonb.', NULL, '42883');
		END IF;
	END IF;
	IF (e.strategy = 'CUSTOM') <> (e.custom_function IS NOT NULL) THEN
		PERFORM @extschema@.raise_invalid('options.customFunction goes with defaultStrategy CUSTOM, and only with it',
			'Name the resolver function for CUSTOM, or leave customFunction out.');
	END IF;
	e.delete_policy := @extschema@.json_choice(options, 'deletePolicy', 'options',
		ARRAY['DELETE_WINS', 'UPDATE_WINS', 'MANUAL'], 'DELETE_WINS');
	e.critical := @extschema@.json_bool(options, 'critical', 'options', false);
	e.history_depth := @extschema@.json_int(options, 'historyDepth', 'options', 1, 1000, 10);
	lifetime := @extschema@.json_text(options, 'tombstoneLifetime', 'options', false, 40);
	BEGIN
		e.tombstone_lifetime := coalesce(lifetime, '30 days')::interval;
	EXCEPTION WHEN others THEN
		PERFORM @extschema@.raise_invalid(format('invalid options.tombstoneLifetime: "%s"', lifetime),
			'Give an interval such as "30 days".');
	END;
	IF e.tombstone_lifetime < interval '1 hour' OR e.tombstone_lifetime > interval '366 days' THEN
		PERFORM @extschema@.raise_invalid(format('invalid options.tombstoneLifetime: %s is outside 1 hour .. 1 year', e.tombstone_lifetime),
			'Keep tombstones at least as long as a device may stay offline.');
	END IF;
	e.organization_column := @extschema@.json_text(options, 'organizationColumn', 'options', false, 63);
	e.client_id_column := @extschema@.json_text(options, 'clientIdColumn', 'options', false, 63);
	e.caregiver_id_column := @extschema@.json_text(options, 'caregiverIdColumn', 'options', false, 63);
	e.branch_id_column := @extschema@.json_text(options, 'branchIdColumn', 'options', false, 63);
	e.date_column := @extschema@.json_text(options, 'dateColumn', 'options', false, 63);
	FOR col IN SELECT * FROM (VALUES ('keyColumn', e.key_column), ('organizationColumn', e.organization_column),
			('clientIdColumn', e.client_id_column), ('caregiverIdColumn', e.caregiver_id_column),
			('branchIdColumn', e.branch_id_column), ('dateColumn', e.date_column)) v(field, name)
			WHERE v.name IS NOT NULL LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = col.name
					   AND a.attnum > 0 AND NOT a.attisdropped) THEN
			PERFORM @extschema@.raise_invalid(format('invalid options.%s: table %s has no column "%s"', col.field, target, col.name),
				'Name a column of the table.', NULL, '42703');
		END IF;
	END LOOP;
	IF EXISTS (SELECT 1 FROM @extschema@.sync_entity s WHERE s.table_name = target) THEN
		PERFORM @extschema@.raise_invalid(format('table %s is already registered for sync', target),
			'Each table is one sync entity.', NULL, '23505');
	END IF;
	IF EXISTS (SELECT 1 FROM @extschema@.sync_entity s
			   WHERE s.entity_type = e.entity_type AND s.organization_id IS NOT DISTINCT FROM e.organization_id) THEN
		PERFORM @extschema@.raise_invalid(format('sync entity type "%s" is already registered', e.entity_type),
			'Choose another entity type.', NULL, '23505');
	END IF;
	e.created_at := now();
	e.created_by := current_user;
	INSERT INTO @extschema@.sync_entity SELECT e.*;
	fn := @extschema@.sync_track_function(e.id);
	EXECUTE format('CREATE TRIGGER backup_offline_sync_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
				   'FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, fn);
	EXECUTE format('CREATE TRIGGER backup_offline_sync_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
				   'FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, fn);
	EXECUTE format('CREATE TRIGGER backup_offline_sync_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
				   'FOR EACH STATEMENT EXECUTE FUNCTION %s()', target, fn);
	-- the rows already there: version 1 each, pullable
	PERFORM @extschema@.sync_track_existing(e.id);
	RETURN e.id;
END
$$;

-- sync_sequence() RETURNS bigint: give change_seq numbers to every
-- committed change without one; returns how many.  One sequencer at a time
-- (an advisory lock held to the end of its transaction), each numbering
-- what has committed when it runs: a change committed later gets a higher
-- number than every number handed out before, so no cursor passes it.
-- A transaction that calls it after writing tracked rows numbers its own
-- changes too: they appear, numbers and all, when it commits, and no other
-- sequencer runs before that (the lock), so still no cursor passes them.
CREATE FUNCTION @extschema@.sync_sequence()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('backup_offline.sync_sequence'));
	WITH unnumbered AS (
		SELECT r.entity_id, r.row_key FROM @extschema@.sync_row r
		 WHERE r.change_seq IS NULL
		 ORDER BY r.writer, r.entity_id, r.row_key
		 FOR UPDATE)
	UPDATE @extschema@.sync_row r SET change_seq = nextval('@extschema@.sync_change_seq')
	  FROM unnumbered u WHERE r.entity_id = u.entity_id AND r.row_key = u.row_key;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- sync_purge_tombstones() RETURNS bigint: remove the tombstones older than
-- their entity's tombstone_lifetime (with their history), and move
-- sync_state's tombstone_horizon past them: a pull from an older cursor is
-- told to resync.  Returns how many.
CREATE FUNCTION @extschema@.sync_purge_tombstones()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
	horizon bigint;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('backup_offline.sync_sequence'));
	WITH gone AS (
		DELETE FROM @extschema@.sync_row r USING @extschema@.sync_entity e
		 WHERE r.entity_id = e.id AND r.deleted AND r.change_seq IS NOT NULL
		   AND r.changed_at < now() - e.tombstone_lifetime
		RETURNING r.change_seq)
	SELECT count(*), max(change_seq) INTO n, horizon FROM gone;
	IF horizon IS NOT NULL THEN
		INSERT INTO @extschema@.sync_state AS st VALUES ('tombstone_horizon', horizon)
		ON CONFLICT (name) DO UPDATE SET value = greatest(st.value, EXCLUDED.value);
	END IF;
	RETURN n;
END
$$;

-- A sync scope, checked as pull_changes checks its scope argument (the same
-- keys, helpers and messages, under the path "scope"): entities (registered
-- entity types; of organization and the shared ones when organization is
-- given), clientIds, caregiverIds, branchIds (uuids), dateRange
-- ({startDate, endDate}, start not after end).  With cache, also a cache
-- policy's entityPriorities ({"TYPE": CRITICAL | HIGH | NORMAL | LOW |
-- BACKGROUND}) and entityTtls ({"TYPE": seconds, 1..2592000}), for types in
-- entities when it is given.  Returns the scope normalised: the keys given,
-- uuids and dates in canonical form.  NULL is the empty scope.
CREATE FUNCTION @extschema@.validate_sync_scope(scope jsonb, organization uuid DEFAULT NULL, cache boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sc jsonb := coalesce(scope, '{}');
	entities text[];
	clients uuid[];
	caregivers uuid[];
	branches uuid[];
	date_from date;
	date_to date;
	known text[];
	unknown text;
	field text;
	k text;
	ttl bigint;
	result jsonb := '{}';
	priorities jsonb := '{}';
	ttls jsonb := '{}';
BEGIN
	IF jsonb_typeof(sc) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('invalid scope: not an object', 'Pass {"entities": ["VISIT"], "clientIds": [...]} or NULL.');
	END IF;
	PERFORM @extschema@.check_object(sc, 'scope', ARRAY['entities', 'clientIds', 'caregiverIds', 'branchIds', 'dateRange']
		|| CASE WHEN cache THEN ARRAY['entityPriorities', 'entityTtls'] ELSE '{}'::text[] END);
	entities := @extschema@.json_text_array(sc, 'entities', 'scope', false);
	clients := @extschema@.json_uuid_array(sc, 'clientIds', 'scope');
	caregivers := @extschema@.json_uuid_array(sc, 'caregiverIds', 'scope');
	branches := @extschema@.json_uuid_array(sc, 'branchIds', 'scope');
	IF sc ? 'dateRange' THEN
		PERFORM @extschema@.check_object(sc->'dateRange', 'scope.dateRange', ARRAY['startDate', 'endDate']);
		date_from := @extschema@.json_date(sc->'dateRange', 'startDate', 'scope.dateRange');
		date_to := @extschema@.json_date(sc->'dateRange', 'endDate', 'scope.dateRange');
		IF date_from > date_to THEN
			PERFORM @extschema@.raise_invalid(format('invalid scope.dateRange: startDate %s is after endDate %s', date_from, date_to),
				'Give the first and the last day of the range, in that order.');
		END IF;
	END IF;
	SELECT array_agg(DISTINCT e.entity_type) INTO known FROM @extschema@.sync_entity e
	 WHERE organization IS NULL OR e.organization_id IS NULL OR e.organization_id = organization;
	SELECT string_agg(x, ', ' ORDER BY n) INTO unknown FROM unnest(entities) WITH ORDINALITY AS u(x, n)
	 WHERE NOT x = ANY (coalesce(known, '{}'));
	IF unknown IS NOT NULL THEN
		PERFORM @extschema@.raise_invalid(format('unknown sync entity type in scope.entities: %s', unknown),
			'Name entity types registered with register_sync_entity.');
	END IF;
	IF cache THEN
		FOREACH field IN ARRAY ARRAY['entityPriorities', 'entityTtls'] LOOP
			CONTINUE WHEN sc->field IS NULL OR sc->field = 'null';
			IF jsonb_typeof(sc->field) <> 'object' THEN
				PERFORM @extschema@.raise_invalid(format('invalid scope.%s: not an object', field),
					CASE field WHEN 'entityPriorities' THEN 'Map entity types to CRITICAL, HIGH, NORMAL, LOW or BACKGROUND, such as {"VISIT": "HIGH"}.'
							   ELSE 'Map entity types to a time to live in seconds, such as {"VISIT": 86400}.' END);
			END IF;
			FOR k IN SELECT jsonb_object_keys(sc->field) ORDER BY 1 LOOP
				IF NOT k = ANY (coalesce(known, '{}')) THEN
					PERFORM @extschema@.raise_invalid(format('unknown sync entity type in scope.%s: %s', field, k),
						'Name entity types registered with register_sync_entity.');
				END IF;
				IF entities IS NOT NULL AND NOT k = ANY (entities) THEN
					PERFORM @extschema@.raise_invalid(format('invalid scope.%s.%s: %s is not in scope.entities', field, k, k),
						'Give settings to the entity types the scope caches, or add the type to scope.entities.');
				END IF;
				IF field = 'entityPriorities' THEN
					priorities := priorities || jsonb_build_object(k, @extschema@.json_choice(sc->field, k, 'scope.entityPriorities',
						ARRAY['CRITICAL', 'HIGH', 'NORMAL', 'LOW', 'BACKGROUND'], 'NORMAL'));
				ELSE
					ttl := @extschema@.cache_policy_int(sc->field, k, 'scope.entityTtls', 1, 2592000, ' seconds (30 days)',
						'Give the time to live in seconds, such as 86400 for a day.', NULL);
					IF ttl IS NOT NULL THEN
						ttls := ttls || jsonb_build_object(k, ttl);
					END IF;
				END IF;
			END LOOP;
		END LOOP;
	END IF;
	result := jsonb_strip_nulls(jsonb_build_object(
		'entities', to_jsonb(entities), 'clientIds', to_jsonb(clients), 'caregiverIds', to_jsonb(caregivers),
		'branchIds', to_jsonb(branches),
		'dateRange', CASE WHEN date_from IS NOT NULL OR date_to IS NOT NULL THEN
						 jsonb_strip_nulls(jsonb_build_object('startDate', date_from::text, 'endDate', date_to::text)) END));
	IF priorities <> '{}' THEN
		result := result || jsonb_build_object('entityPriorities', priorities);
	END IF;
	IF ttls <> '{}' THEN
		result := result || jsonb_build_object('entityTtls', ttls);
	END IF;
	RETURN result;
END
$$;

-- An integer member of a cache policy within [lo, hi] (unit: " seconds
-- (30 days)" and the like, for the message), or dflt when absent.
CREATE FUNCTION @extschema@.cache_policy_int(obj jsonb, key text, path text, lo bigint, hi bigint, unit text, hint text, dflt bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v jsonb := obj->key;
	p text := @extschema@.json_path(path, key);
BEGIN
	IF v IS NULL OR v = 'null' THEN
		RETURN dflt;
	END IF;
	IF jsonb_typeof(v) <> 'number' OR v::numeric <> trunc(v::numeric) THEN
		PERFORM @extschema@.raise_invalid(format('%s must be a whole number, not %s', p, @extschema@.json_excerpt(v)), hint);
	END IF;
	IF v::numeric NOT BETWEEN lo AND hi THEN
		PERFORM @extschema@.raise_invalid(format('%s must be between %s and %s%s, not %s', p, lo, hi, unit, v), hint);
	END IF;
	RETURN v::numeric::bigint;
END
$$;

-- pull_changes(device_id text, since bigint, max_rows int, scope jsonb DEFAULT NULL) RETURNS jsonb
-- The changes (rows and tombstones) after cursor since, oldest first, at
-- most max_rows, within scope and the caller's organizations:
--   {"changes": [{"seq", "entityType", "id", "version", "deleted", "data"}],
--    "nextCursor": n, "hasMore": bool}
-- or, when since is older than the tombstones kept,
--   {"resyncRequired": true, "nextCursor": 0, "reason": "..."}.
-- scope: {"entities": [...], "clientIds": [...], "caregiverIds": [...],
-- "branchIds": [...], "dateRange": {"startDate", "endDate"}}, each applied
-- to the entities that name such a column (a tombstone through the deleted
-- row's last image).  Cursors are server sequence numbers, never device
-- time; 0 starts from the beginning.  Each answer is logged
-- (PULL_COMPLETED or RESYNC_REQUIRED) and counted by the device's ACTIVE
-- session (sync_record_pull, src/catalog/95_sync_sessions.sql).
CREATE FUNCTION @extschema@.pull_changes(device_id text, since bigint, max_rows integer, scope jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sc jsonb := coalesce(scope, '{}');
	entities text[];
	clients text[];
	caregivers text[];
	branches text[];
	date_from date;
	date_to date;
	horizon bigint;
	result jsonb;
	n integer;
	last_seq bigint;
	orgs uuid[] := @extschema@.current_organization_ids();
	all_orgs boolean := @extschema@.sees_all_organizations();
BEGIN
	IF device_id IS NULL OR device_id !~ '^[A-Za-z0-9._:@-]{1,200}$' THEN
		PERFORM @extschema@.raise_invalid(format('invalid device_id: %s', coalesce(quote_literal(device_id), 'NULL')),
			'A device id is 1 to 200 letters, digits and . _ : @ -.');
	END IF;
	IF since IS NULL OR since < 0 THEN
		PERFORM @extschema@.raise_invalid(format('invalid since: %s', coalesce(since::text, 'NULL')),
			'Pass 0 for a first pull, then the nextCursor of the previous pull.');
	END IF;
	IF max_rows IS NULL OR max_rows NOT BETWEEN 1 AND 10000 THEN
		PERFORM @extschema@.raise_invalid(format('invalid max_rows: %s', coalesce(max_rows::text, 'NULL')),
			'Ask for 1 to 10000 rows per page.');
	END IF;
	sc := @extschema@.validate_sync_scope(scope);
	entities := CASE WHEN sc ? 'entities' THEN ARRAY(SELECT jsonb_array_elements_text(sc->'entities')) END;
	clients := CASE WHEN sc ? 'clientIds' THEN ARRAY(SELECT jsonb_array_elements_text(sc->'clientIds')) END;
	caregivers := CASE WHEN sc ? 'caregiverIds' THEN ARRAY(SELECT jsonb_array_elements_text(sc->'caregiverIds')) END;
	branches := CASE WHEN sc ? 'branchIds' THEN ARRAY(SELECT jsonb_array_elements_text(sc->'branchIds')) END;
	date_from := (sc->'dateRange'->>'startDate')::date;
	date_to := (sc->'dateRange'->>'endDate')::date;

	-- number what has committed since the last pull, drop expired tombstones
	PERFORM @extschema@.sync_sequence();
	PERFORM @extschema@.sync_purge_tombstones();
	SELECT coalesce(max(value), 0) INTO horizon FROM @extschema@.sync_state WHERE name = 'tombstone_horizon';
	IF since > 0 AND since < horizon THEN
		PERFORM @extschema@.sync_record_pull(device_id, since, NULL, 0, false, horizon);
		RETURN jsonb_build_object('resyncRequired', true, 'nextCursor', 0,
			'reason', format('cursor %s is older than the tombstones kept (deletes up to change %s were forgotten): pull again from 0 and replace the local data',
							 since, horizon));
	END IF;

	WITH page AS (
		SELECT r.change_seq, e.entity_type, r.row_key, r.version, r.deleted, h.image
		  FROM @extschema@.sync_row r
		  JOIN @extschema@.sync_entity e ON e.id = r.entity_id
		  LEFT JOIN @extschema@.sync_row_history h
				 ON h.entity_id = r.entity_id AND h.row_key = r.row_key AND h.version = r.version
		 WHERE r.change_seq > since
		   AND (all_orgs OR r.organization_id = ANY (orgs))
		   AND (entities IS NULL OR e.entity_type = ANY (entities))
		   AND (clients IS NULL OR e.client_id_column IS NULL OR h.image->>e.client_id_column = ANY (clients))
		   AND (caregivers IS NULL OR e.caregiver_id_column IS NULL OR h.image->>e.caregiver_id_column = ANY (caregivers))
		   AND (branches IS NULL OR e.branch_id_column IS NULL OR h.image->>e.branch_id_column = ANY (branches))
		   AND (date_from IS NULL OR e.date_column IS NULL OR (h.image->>e.date_column)::date >= date_from)
		   AND (date_to IS NULL OR e.date_column IS NULL OR (h.image->>e.date_column)::date <= date_to)
		 ORDER BY r.change_seq
		 LIMIT max_rows + 1)
	-- (data is the row as it is, null fields included; a tombstone has none)
	SELECT coalesce(jsonb_agg(jsonb_build_object(
			   'seq', p.change_seq, 'entityType', p.entity_type, 'id', p.row_key, 'version', p.version,
			   'deleted', p.deleted) || CASE WHEN NOT p.deleted THEN jsonb_build_object('data', p.image) ELSE '{}' END
			   ORDER BY p.change_seq)
			   FILTER (WHERE p.rn <= max_rows), '[]'),
		   count(*), max(p.change_seq) FILTER (WHERE p.rn <= max_rows)
	  INTO result, n, last_seq
	  FROM (SELECT page.*, row_number() OVER (ORDER BY page.change_seq) AS rn FROM page) p;
	PERFORM @extschema@.sync_record_pull(device_id, since, least(n, max_rows), coalesce(last_seq, since), n > max_rows, NULL);
	RETURN jsonb_build_object('changes', result, 'nextCursor', coalesce(last_seq, since), 'hasMore', n > max_rows);
END
$$;

-- privileges and row-level security of the sync tables
REVOKE ALL ON @extschema@.sync_entity, @extschema@.sync_row, @extschema@.sync_row_history, @extschema@.sync_state FROM PUBLIC;
REVOKE ALL ON FUNCTION
	@extschema@.sync_track_sql(@extschema@.sync_entity, text, boolean),
	@extschema@.sync_track_existing(uuid),
	@extschema@.sync_track_function(uuid),
	@extschema@.register_sync_entity(text, regclass, jsonb),
	@extschema@.sync_sequence(),
	@extschema@.sync_purge_tombstones(),
	@extschema@.pull_changes(text, bigint, integer, jsonb)
FROM PUBLIC;
GRANT SELECT ON @extschema@.sync_entity
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor, backup_offline_app;
GRANT SELECT ON @extschema@.sync_row, @extschema@.sync_row_history, @extschema@.sync_state
TO backup_offline_admin, backup_offline_auditor, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.sync_track_sql(@extschema@.sync_entity, text, boolean),
	@extschema@.sync_track_existing(uuid),
	@extschema@.sync_track_function(uuid),
	@extschema@.register_sync_entity(text, regclass, jsonb)
TO backup_offline_admin;
GRANT EXECUTE ON FUNCTION
	@extschema@.sync_sequence(),
	@extschema@.sync_purge_tombstones(),
	@extschema@.pull_changes(text, bigint, integer, jsonb)
TO backup_offline_admin, backup_offline_app;
ALTER TABLE @extschema@.sync_row ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_row FOR SELECT
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
ALTER TABLE @extschema@.sync_row_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_row_history FOR SELECT
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));

SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_entity', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_row', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_row_history', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_state', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_change_seq', '');
