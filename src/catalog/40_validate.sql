-- Validation of backup configurations given as SPEC.md's camelCase JSON.
--
-- Every check raises an error naming the JSON path of the offending value
-- (e.g. schedule.startTime, storageDestination.replicas[1].bucket) with
-- SQLSTATE 22023 for malformed input and 23514 for rules the values break
-- together (compliance minimums, PHI without encryption).  Nothing is
-- written before validation has passed, and unknown keys are rejected rather
-- than dropped.  validate_configuration returns the normalised object, with
-- defaults filled in, that is stored.

-- Raise a validation error.
CREATE FUNCTION @extschema@.raise_invalid(message text, hint text, detail text DEFAULT NULL,
										 sqlstate text DEFAULT '22023')
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	IF detail IS NULL THEN
		RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint;
	END IF;
	RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint, DETAIL = detail;
END
$$;

-- The JSON path of key under path ('' is the top level).
-- A status machine written down as a table of (from_status, to_status):
-- raise sqlstate unless from -> to is one of its rows; the hint lists where
-- "from" may go (in the enum's order), or says it is final.  what names the
-- object in the message ('backup configuration "x"', 'snapshot BKP-...').
CREATE FUNCTION @extschema@.check_status_transition(transitions regclass, what text,
													from_status anyenum, to_status anyenum,
													sqlstate text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ok boolean;
	allowed text;
BEGIN
	EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s t WHERE t.from_status = $1 AND t.to_status = $2), '
				   '       (SELECT string_agg(t.to_status::text, '', '' ORDER BY t.to_status) FROM %s t WHERE t.from_status = $1)',
				   transitions, transitions)
	   INTO ok, allowed USING from_status, to_status;
	IF NOT ok THEN
		RAISE EXCEPTION 'invalid status transition of % from % to %', what, from_status, to_status
			USING ERRCODE = sqlstate,
				  HINT = CASE WHEN allowed IS NULL THEN format('%s is a final status.', from_status)
							  ELSE format('From %s the status may change to %s.', from_status, allowed) END;
	END IF;
END
$$;

CREATE FUNCTION @extschema@.json_path(path text, key text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN path OPERATOR(pg_catalog.=) '' THEN key ELSE path OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) key END $$;

-- A JSON value for an error message, cut to 60 characters.
CREATE FUNCTION @extschema@.json_excerpt(v jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN pg_catalog.length(v::text) OPERATOR(pg_catalog.>) 60
				THEN pg_catalog.left(v::text, 57) OPERATOR(pg_catalog.||) '...' ELSE v::text END
$$;

-- obj must be a JSON object whose keys are all in allowed.
CREATE FUNCTION @extschema@.check_object(obj jsonb, path text, allowed text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	k text;
BEGIN
	IF obj IS NULL OR pg_catalog.jsonb_typeof(obj) OPERATOR(pg_catalog.<>) 'object' THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('%s must be a JSON object', CASE WHEN path OPERATOR(pg_catalog.=) '' THEN 'the configuration' ELSE path END),
			'Pass an object such as {"key": "value"}.');
	END IF;
	FOR k IN SELECT pg_catalog.jsonb_object_keys(obj) LOOP
		IF NOT k OPERATOR(pg_catalog.=) ANY (allowed) THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('unknown key %s', @extschema@.json_path(path, k)),
				pg_catalog.format('Allowed keys here: %s.', pg_catalog.array_to_string(allowed, ', ')));
		END IF;
	END LOOP;
END
$$;

-- A boolean member, or dflt when absent.
CREATE FUNCTION @extschema@.json_bool(obj jsonb, key text, path text, dflt boolean)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	v jsonb := obj OPERATOR(pg_catalog.->) key;
BEGIN
	IF v IS NULL OR v OPERATOR(pg_catalog.=) 'null'::jsonb THEN
		RETURN dflt;
	END IF;
	IF pg_catalog.jsonb_typeof(v) OPERATOR(pg_catalog.<>) 'boolean' THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('invalid %s: %s is not a boolean', @extschema@.json_path(path, key), v),
			'Use true or false.');
	END IF;
	RETURN v::boolean;
END
$$;

-- An integer member within [lo, hi], or dflt when absent.
CREATE FUNCTION @extschema@.json_int(obj jsonb, key text, path text, lo bigint, hi bigint, dflt bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	v jsonb := obj OPERATOR(pg_catalog.->) key;
	n numeric;
BEGIN
	IF v IS NULL OR v OPERATOR(pg_catalog.=) 'null'::jsonb THEN
		RETURN dflt;
	END IF;
	IF pg_catalog.jsonb_typeof(v) OPERATOR(pg_catalog.<>) 'number' OR v::numeric OPERATOR(pg_catalog.<>) pg_catalog.trunc(v::numeric) THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('invalid %s: %s is not an integer', @extschema@.json_path(path, key), @extschema@.json_excerpt(v)),
			pg_catalog.format('Use a whole number from %s to %s.', lo, hi));
	END IF;
	n := v::numeric;
	IF n OPERATOR(pg_catalog.<) lo OR n OPERATOR(pg_catalog.>) hi THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('invalid %s: %s is out of range', @extschema@.json_path(path, key), @extschema@.json_excerpt(v)),
			pg_catalog.format('Use a whole number from %s to %s.', lo, hi));
	END IF;
	RETURN n::bigint;
END
$$;

-- A string member (optionally required, with a length limit), or NULL.
CREATE FUNCTION @extschema@.json_text(obj jsonb, key text, path text, required boolean,
									 max_length integer DEFAULT 1000)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	v jsonb := obj OPERATOR(pg_catalog.->) key;
	s text;
BEGIN
	IF v IS NULL OR v OPERATOR(pg_catalog.=) 'null'::jsonb THEN
		IF required THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('%s is required', @extschema@.json_path(path, key)),
				pg_catalog.format('Add "%s" to %s.', key, CASE WHEN path OPERATOR(pg_catalog.=) '' THEN 'the configuration' ELSE path END));
		END IF;
		RETURN NULL;
	END IF;
	IF pg_catalog.jsonb_typeof(v) OPERATOR(pg_catalog.<>) 'string' THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('invalid %s: %s is not a string', @extschema@.json_path(path, key), v),
			'Pass the value as a JSON string.');
	END IF;
	s := obj OPERATOR(pg_catalog.->>) key;
	IF required AND pg_catalog.btrim(s) OPERATOR(pg_catalog.=) '' THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('%s must not be empty', @extschema@.json_path(path, key)),
			pg_catalog.format('Give a non-empty value for "%s".', key));
	END IF;
	IF pg_catalog.char_length(s) OPERATOR(pg_catalog.>) max_length THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('%s is too long (%s characters)', @extschema@.json_path(path, key), pg_catalog.char_length(s)),
			pg_catalog.format('Use at most %s characters.', max_length));
	END IF;
	RETURN s;
END
$$;

-- A string member that, when present (or required), must match pattern;
-- hint says what a valid value looks like.
CREATE FUNCTION @extschema@.json_matching(obj jsonb, key text, path text, required boolean,
										  max_length integer, pattern text, hint text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	s text := @extschema@.json_text(obj, key, path, required, max_length);
BEGIN
	IF s OPERATOR(pg_catalog.!~) pattern THEN
		PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid %s: "%s"', @extschema@.json_path(path, key), s), hint);
	END IF;
	RETURN s;
END
$$;

-- A string member that must be one of choices (or dflt when absent).
CREATE FUNCTION @extschema@.json_choice(obj jsonb, key text, path text, choices text[], dflt text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	s text := @extschema@.json_text(obj, key, path, dflt IS NULL);
BEGIN
	IF s IS NULL THEN
		RETURN dflt;
	END IF;
	IF NOT s OPERATOR(pg_catalog.=) ANY (choices) THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('invalid %s: "%s"', @extschema@.json_path(path, key), s),
			pg_catalog.format('Use one of %s.', pg_catalog.array_to_string(choices, ', ')));
	END IF;
	RETURN s;
END
$$;

-- An array member whose elements are strings (unique), or NULL when absent.
CREATE FUNCTION @extschema@.json_text_array(obj jsonb, key text, path text, allow_empty boolean)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	v jsonb := obj OPERATOR(pg_catalog.->) key;
	p text := @extschema@.json_path(path, key);
	result text[] := '{}';
	i integer;
	e jsonb;
BEGIN
	IF v IS NULL OR v OPERATOR(pg_catalog.=) 'null'::jsonb THEN
		RETURN NULL;
	END IF;
	IF pg_catalog.jsonb_typeof(v) OPERATOR(pg_catalog.<>) 'array' THEN
		PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid %s: %s is not an array', p, v),
										 'Pass a JSON array of strings.');
	END IF;
	IF pg_catalog.jsonb_array_length(v) OPERATOR(pg_catalog.=) 0 AND NOT allow_empty THEN
		PERFORM @extschema@.raise_invalid(pg_catalog.format('%s must not be empty', p),
										 'List at least one value, or leave the key out.');
	END IF;
	FOR i IN 0 .. pg_catalog.jsonb_array_length(v) OPERATOR(pg_catalog.-) 1 LOOP
		e := v OPERATOR(pg_catalog.->) i;
		IF pg_catalog.jsonb_typeof(e) OPERATOR(pg_catalog.<>) 'string' OR pg_catalog.btrim(v OPERATOR(pg_catalog.->>) i) OPERATOR(pg_catalog.=) '' THEN
			PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid %s[%s]: %s is not a non-empty string', p, i, e),
											 'Pass a JSON array of strings.');
		END IF;
		IF (v OPERATOR(pg_catalog.->>) i) OPERATOR(pg_catalog.=) ANY (result) THEN
			PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid %s[%s]: "%s" is listed twice', p, i, v OPERATOR(pg_catalog.->>) i),
											 'List each value once.');
		END IF;
		result := result OPERATOR(pg_catalog.||) (v OPERATOR(pg_catalog.->>) i);
	END LOOP;
	RETURN result;
END
$$;

-- An array member of uuids, or NULL when absent.
CREATE FUNCTION @extschema@.json_uuid_array(obj jsonb, key text, path text)
RETURNS uuid[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	items text[] := @extschema@.json_text_array(obj, key, path, false);
	result uuid[] := '{}';
	i integer;
BEGIN
	IF items IS NULL THEN
		RETURN NULL;
	END IF;
	FOR i IN 1 .. pg_catalog.cardinality(items) LOOP
		IF items[i] OPERATOR(pg_catalog.!~*) '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('invalid %s[%s]: "%s" is not a uuid', @extschema@.json_path(path, key), i OPERATOR(pg_catalog.-) 1, items[i]),
				'Pass ids as uuid strings such as "0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50".');
		END IF;
		result := result OPERATOR(pg_catalog.||) items[i]::uuid;
	END LOOP;
	RETURN result;
END
$$;

-- A uuid member, or NULL when absent.
CREATE FUNCTION @extschema@.json_uuid(obj jsonb, key text, path text)
RETURNS uuid
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	s text := @extschema@.json_text(obj, key, path, false, 64);
BEGIN
	IF s OPERATOR(pg_catalog.!~*) '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('invalid %s: "%s" is not a uuid', @extschema@.json_path(path, key), s),
			'Pass ids as uuid strings such as "0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50".');
	END IF;
	RETURN s::uuid;
END
$$;

-- A date member (YYYY-MM-DD), or NULL when absent.
CREATE FUNCTION @extschema@.json_date(obj jsonb, key text, path text)
RETURNS date
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
	s text := @extschema@.json_text(obj, key, path, false, 40);
BEGIN
	IF s IS NULL THEN
		RETURN NULL;
	END IF;
	IF s OPERATOR(pg_catalog.!~) '^\d{4}-\d{2}-\d{2}$' THEN
		PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid %s: "%s"', @extschema@.json_path(path, key), s),
										 'Use an ISO date such as "2025-01-31".');
	END IF;
	BEGIN
		RETURN s::date;
	EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
		PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid %s: "%s" is not a calendar date', @extschema@.json_path(path, key), s),
										 'Use an ISO date such as "2025-01-31".');
	END;
	RETURN NULL;
END
$$;

-- Days a retention interval can span at most ('6 years' from a leap year).
CREATE FUNCTION @extschema@.retention_interval_days(i interval)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ((DATE '2000-01-01' OPERATOR(pg_catalog.+) i)::date OPERATOR(pg_catalog.-) DATE '2000-01-01') $$;

-- Validate scope; returns the normalised scope with "entities", the
-- resolved entity types, left out (they are recomputed on use).
CREATE FUNCTION @extschema@.validate_scope(scope jsonb, organization uuid, OUT normalized jsonb, OUT has_phi boolean)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	include_entities text[];
	exclude_entities text[];
	known text[];
	selected text[];
	e text;
	i integer;
	date_from date;
	date_to date;
	dr jsonb;
BEGIN
	IF scope IS NULL THEN
		scope := '{}';
	END IF;
	PERFORM @extschema@.check_object(scope, 'scope',
		ARRAY['includeEntities', 'excludeEntities', 'clientIds', 'caregiverIds', 'branchIds',
			  'dateRange', 'includePHI', 'includePII', 'includeFinancialData']);
	include_entities := @extschema@.json_text_array(scope, 'includeEntities', 'scope', false);
	exclude_entities := @extschema@.json_text_array(scope, 'excludeEntities', 'scope', true);

	SELECT pg_catalog.array_agg(DISTINCT r.entity_type ORDER BY r.entity_type) INTO known
	  FROM @extschema@.entity_registry r
	 WHERE r.organization_id IS NULL OR r.organization_id OPERATOR(pg_catalog.=) organization;
	known := coalesce(known, '{}');

	FOR i IN 1 .. coalesce(pg_catalog.cardinality(include_entities), 0) LOOP
		IF NOT include_entities[i] OPERATOR(pg_catalog.=) ANY (known) THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('unknown entity type "%s" in scope.includeEntities[%s]', include_entities[i], i OPERATOR(pg_catalog.-) 1),
				'Register the entity type in backup_offline.entity_registry first.',
				pg_catalog.format('Known entity types: %s.', CASE WHEN known OPERATOR(pg_catalog.=) '{}' THEN 'none' ELSE pg_catalog.array_to_string(known, ', ') END));
		END IF;
	END LOOP;
	FOR i IN 1 .. coalesce(pg_catalog.cardinality(exclude_entities), 0) LOOP
		IF NOT exclude_entities[i] OPERATOR(pg_catalog.=) ANY (known) THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('unknown entity type "%s" in scope.excludeEntities[%s]', exclude_entities[i], i OPERATOR(pg_catalog.-) 1),
				'Register the entity type in backup_offline.entity_registry first.',
				pg_catalog.format('Known entity types: %s.', CASE WHEN known OPERATOR(pg_catalog.=) '{}' THEN 'none' ELSE pg_catalog.array_to_string(known, ', ') END));
		END IF;
	END LOOP;

	selected := ARRAY(SELECT x FROM pg_catalog.unnest(coalesce(include_entities, known)) x
					  WHERE NOT x OPERATOR(pg_catalog.=) ANY (coalesce(exclude_entities, '{}')));
	IF pg_catalog.cardinality(selected) OPERATOR(pg_catalog.=) 0 THEN
		PERFORM @extschema@.raise_invalid(
			'scope selects no entity',
			'Name entity types in scope.includeEntities, or register entity types in backup_offline.entity_registry.',
			CASE WHEN known OPERATOR(pg_catalog.=) '{}' THEN 'No entity type is registered for this organization.'
				 ELSE 'Every included entity type is also excluded.' END);
	END IF;

	SELECT pg_catalog.string_agg(pg_catalog.format('"%s"', r.entity_type), ', ' ORDER BY r.entity_type) INTO e
	  FROM @extschema@.entity_registry r
	 WHERE (r.organization_id IS NULL OR r.organization_id OPERATOR(pg_catalog.=) organization)
	   AND r.entity_type OPERATOR(pg_catalog.=) ANY (selected)
	   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.table_name);
	IF e IS NOT NULL THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('scope selects entity type %s whose table no longer exists', e),
			'Register the entity type again for its new table, or leave it out of the scope.',
			NULL, '42P01');
	END IF;

	PERFORM @extschema@.json_uuid_array(scope, 'clientIds', 'scope');
	PERFORM @extschema@.json_uuid_array(scope, 'caregiverIds', 'scope');
	PERFORM @extschema@.json_uuid_array(scope, 'branchIds', 'scope');
	FOREACH e IN ARRAY ARRAY['clientIds', 'caregiverIds', 'branchIds'] LOOP
		IF scope OPERATOR(pg_catalog.?) e AND NOT EXISTS (
			SELECT 1 FROM @extschema@.entity_registry r
			 WHERE (r.organization_id IS NULL OR r.organization_id OPERATOR(pg_catalog.=) organization)
			   AND r.entity_type OPERATOR(pg_catalog.=) ANY (selected)
			   AND CASE e WHEN 'clientIds' THEN r.client_id_column
						  WHEN 'caregiverIds' THEN r.caregiver_id_column
						  ELSE r.branch_id_column END IS NOT NULL) THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('scope.%s filters no selected entity', e),
				pg_catalog.format('Set the matching column (%s) in backup_offline.entity_registry for one of: %s.',
					CASE e WHEN 'clientIds' THEN 'client_id_column' WHEN 'caregiverIds' THEN 'caregiver_id_column' ELSE 'branch_id_column' END,
					pg_catalog.array_to_string(selected, ', ')));
		END IF;
	END LOOP;

	dr := scope OPERATOR(pg_catalog.->) 'dateRange';
	IF dr IS NOT NULL THEN
		PERFORM @extschema@.check_object(dr, 'scope.dateRange', ARRAY['startDate', 'endDate']);
		date_from := @extschema@.json_date(dr, 'startDate', 'scope.dateRange');
		date_to := @extschema@.json_date(dr, 'endDate', 'scope.dateRange');
		IF date_from IS NULL AND date_to IS NULL THEN
			PERFORM @extschema@.raise_invalid('scope.dateRange needs startDate or endDate',
											 'Give "startDate", "endDate" or both as ISO dates.');
		END IF;
		IF date_from OPERATOR(pg_catalog.>) date_to THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('invalid scope.dateRange: startDate %s is after endDate %s', date_from, date_to),
				'Swap the dates or widen the range.');
		END IF;
	END IF;

	normalized := scope
		OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
			'includePHI', @extschema@.json_bool(scope, 'includePHI', 'scope', false),
			'includePII', @extschema@.json_bool(scope, 'includePII', 'scope', false),
			'includeFinancialData', @extschema@.json_bool(scope, 'includeFinancialData', 'scope', false));
	has_phi := (normalized OPERATOR(pg_catalog.->>) 'includePHI')::boolean OR EXISTS (
		SELECT 1 FROM @extschema@.entity_registry r
		 WHERE (r.organization_id IS NULL OR r.organization_id OPERATOR(pg_catalog.=) organization)
		   AND r.entity_type OPERATOR(pg_catalog.=) ANY (selected) AND r.contains_phi);
END
$$;

-- Validate retention; returns it with defaults.
CREATE FUNCTION @extschema@.validate_retention(retention jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
	result jsonb := '{}';
	k text;
BEGIN
	IF retention IS NULL THEN
		retention := '{}';
	END IF;
	PERFORM @extschema@.check_object(retention, 'retention',
		ARRAY['retentionDays', 'autoDeleteExpired', 'keepDaily', 'keepWeekly', 'keepMonthly',
			  'keepYearly', 'minimumBackups']);
	result := pg_catalog.jsonb_build_object(
		'retentionDays', @extschema@.json_int(retention, 'retentionDays', 'retention', 0, 36500, 30),
		'autoDeleteExpired', @extschema@.json_bool(retention, 'autoDeleteExpired', 'retention', true));
	FOREACH k IN ARRAY ARRAY['keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly', 'minimumBackups'] LOOP
		IF retention OPERATOR(pg_catalog.?) k THEN
			result := result OPERATOR(pg_catalog.||)
				pg_catalog.jsonb_build_object(k, @extschema@.json_int(retention, k, 'retention', 0, 100000, NULL));
		END IF;
	END LOOP;
	RETURN result;
END
$$;

-- Validate one storage destination (path is its JSON path).
CREATE FUNCTION @extschema@.validate_storage(dest jsonb, path text, nested boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	kind text;
	result jsonb;
	s text;
	i integer;
	replicas jsonb;
	normalized_replicas jsonb := '[]';
	replica jsonb;
	types text[] := ARRAY['LOCAL_FILESYSTEM', 'NETWORK_SHARE', 'AWS_S3', 'AZURE_BLOB',
						  'GOOGLE_CLOUD_STORAGE', 'SFTP', 'MULTI'];
BEGIN
	IF dest IS NULL THEN
		PERFORM @extschema@.raise_invalid(pg_catalog.format('%s is required', path),
			'Give a storage destination such as {"type": "LOCAL_FILESYSTEM", "path": "/var/backups/care"}.');
	END IF;
	IF pg_catalog.jsonb_typeof(dest) OPERATOR(pg_catalog.<>) 'object' THEN
		PERFORM @extschema@.check_object(dest, path, '{}');
	END IF;
	IF nested THEN
		types := pg_catalog.array_remove(types, 'MULTI');
	END IF;
	kind := @extschema@.json_choice(dest, 'type', path, types, NULL);
	result := pg_catalog.jsonb_build_object('type', kind);

	IF kind IN ('LOCAL_FILESYSTEM', 'NETWORK_SHARE') THEN
		PERFORM @extschema@.check_object(dest, path, ARRAY['type', 'path', 'permissions', 'owner', 'group']);
		s := @extschema@.json_text(dest, 'path', path, true, 1024);
		result := result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('path',
			@extschema@.confine_path(s, @extschema@.json_path(path, 'path')));
		s := @extschema@.json_matching(dest, 'permissions', path, false, 10, '^[0-7]{4}$',
			'Give file permissions as 4 octal digits, for example "0640".');
		result := result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('permissions', coalesce(s, '0600'));
		FOREACH s IN ARRAY ARRAY['owner', 'group'] LOOP
			PERFORM @extschema@.json_matching(dest, s, path, false, 63, '^[A-Za-z_][A-Za-z0-9_.-]*$',
				'Give an operating-system user or group name.');
			IF (dest OPERATOR(pg_catalog.->>) s) IS NOT NULL THEN
				result := result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(s, dest OPERATOR(pg_catalog.->>) s);
			END IF;
		END LOOP;
	ELSIF kind IN ('AWS_S3', 'GOOGLE_CLOUD_STORAGE') THEN
		PERFORM @extschema@.check_object(dest, path, ARRAY['type', 'bucket', 'region', 'endpoint', 'prefix', 'storageClass', 'forcePathStyle']);
		s := @extschema@.json_text(dest, 'bucket', path, true, 63);
		IF s OPERATOR(pg_catalog.!~) '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' OR s OPERATOR(pg_catalog.~) '\.\.' THEN
			PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid %s: "%s"', @extschema@.json_path(path, 'bucket'), s),
				'Bucket names are 3 to 63 lower-case letters, digits, dots and hyphens, beginning and ending with a letter or digit.');
		END IF;
		PERFORM @extschema@.json_matching(dest, 'region', path, false, 64, '^[a-z0-9-]+$',
			'Give a region name such as "us-east-1".');
		PERFORM @extschema@.json_matching(dest, 'endpoint', path, false, 1024, '^https?://[^/\s]+(/\S*)?$',
			'Give an http or https URL such as "https://s3.us-east-1.amazonaws.com".');
		PERFORM @extschema@.json_text(dest, 'prefix', path, false, 512);
		PERFORM @extschema@.json_text(dest, 'storageClass', path, false, 64);
		PERFORM @extschema@.json_bool(dest, 'forcePathStyle', path, false);
		result := dest;
	ELSIF kind OPERATOR(pg_catalog.=) 'AZURE_BLOB' THEN
		PERFORM @extschema@.check_object(dest, path, ARRAY['type', 'accountName', 'container', 'prefix', 'endpoint']);
		PERFORM @extschema@.json_matching(dest, 'accountName', path, true, 24, '^[a-z0-9]{3,24}$',
			'Storage account names are 3 to 24 lower-case letters and digits.');
		PERFORM @extschema@.json_matching(dest, 'container', path, true, 63, '^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$',
			'Container names are 3 to 63 lower-case letters, digits and single hyphens.');
		PERFORM @extschema@.json_matching(dest, 'endpoint', path, false, 1024, '^https?://[^/\s]+(/\S*)?$',
			'Give an http or https URL.');
		PERFORM @extschema@.json_text(dest, 'prefix', path, false, 512);
		result := dest;
	ELSIF kind OPERATOR(pg_catalog.=) 'SFTP' THEN
		PERFORM @extschema@.check_object(dest, path, ARRAY['type', 'host', 'port', 'username', 'path']);
		PERFORM @extschema@.json_matching(dest, 'host', path, true, 255,
			'^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:]+\]$', 'Give a host name or IP address.');
		result := dest OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('port',
			@extschema@.json_int(dest, 'port', path, 1, 65535, 22));
		PERFORM @extschema@.json_text(dest, 'username', path, true, 64);
		s := @extschema@.json_text(dest, 'path', path, true, 1024);
		IF s OPERATOR(pg_catalog.!~) '^/' THEN
			PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid %s: "%s" is not an absolute path', @extschema@.json_path(path, 'path'), s),
											 'Give the remote directory as an absolute path.');
		END IF;
	ELSE
		PERFORM @extschema@.check_object(dest, path, ARRAY['type', 'replicas']);
		replicas := dest OPERATOR(pg_catalog.->) 'replicas';
		IF replicas IS NULL OR pg_catalog.jsonb_typeof(replicas) OPERATOR(pg_catalog.<>) 'array'
		   OR pg_catalog.jsonb_array_length(replicas) OPERATOR(pg_catalog.=) 0 THEN
			PERFORM @extschema@.raise_invalid(pg_catalog.format('%s needs at least one replica', @extschema@.json_path(path, 'replicas')),
				'List the destinations to write to, for example [{"type": "AWS_S3", "bucket": "care-backups"}].');
		END IF;
		FOR i IN 0 .. pg_catalog.jsonb_array_length(replicas) OPERATOR(pg_catalog.-) 1 LOOP
			replica := @extschema@.validate_storage(replicas OPERATOR(pg_catalog.->) i,
				pg_catalog.format('%s[%s]', @extschema@.json_path(path, 'replicas'), i), true);
			IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(normalized_replicas) e
					   WHERE e.value OPERATOR(pg_catalog.=) replica) THEN
				PERFORM @extschema@.raise_invalid(
					pg_catalog.format('invalid %s[%s]: the same destination is listed twice', @extschema@.json_path(path, 'replicas'), i),
					'List each replica once.');
			END IF;
			normalized_replicas := normalized_replicas OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array(replica);
		END LOOP;
		result := result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('replicas', normalized_replicas);
	END IF;
	RETURN result;
END
$$;

-- Validate notification settings; returns them with defaults.
CREATE FUNCTION @extschema@.validate_notifications(n jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
	channels text[];
	recipients text[];
	url text;
	i integer;
BEGIN
	IF n IS NULL THEN
		n := '{}';
	END IF;
	PERFORM @extschema@.check_object(n, 'notificationSettings',
		ARRAY['enabled', 'onSuccess', 'onFailure', 'onWarning', 'channels', 'recipients', 'webhookUrl']);
	channels := @extschema@.json_text_array(n, 'channels', 'notificationSettings', true);
	FOR i IN 1 .. coalesce(pg_catalog.cardinality(channels), 0) LOOP
		IF NOT channels[i] OPERATOR(pg_catalog.=) ANY (ARRAY['EMAIL', 'SMS', 'WEBHOOK', 'SLACK', 'IN_APP']) THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('invalid notificationSettings.channels[%s]: "%s"', i OPERATOR(pg_catalog.-) 1, channels[i]),
				'Use one of EMAIL, SMS, WEBHOOK, SLACK, IN_APP.');
		END IF;
	END LOOP;
	recipients := @extschema@.json_text_array(n, 'recipients', 'notificationSettings', true);
	IF channels OPERATOR(pg_catalog.&&) ARRAY['EMAIL', 'SMS'] THEN
		FOR i IN 1 .. coalesce(pg_catalog.cardinality(recipients), 0) LOOP
			IF recipients[i] OPERATOR(pg_catalog.!~) '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND recipients[i] OPERATOR(pg_catalog.!~) '^\+?[0-9]{7,15}$' THEN
				PERFORM @extschema@.raise_invalid(
					pg_catalog.format('invalid notificationSettings.recipients[%s]: "%s"', i OPERATOR(pg_catalog.-) 1, recipients[i]),
					'Give an e-mail address or a phone number in international form.');
			END IF;
		END LOOP;
		IF coalesce(pg_catalog.cardinality(recipients), 0) OPERATOR(pg_catalog.=) 0 THEN
			PERFORM @extschema@.raise_invalid('notificationSettings.recipients is required for the EMAIL and SMS channels',
											 'List at least one e-mail address or phone number.');
		END IF;
	END IF;
	url := @extschema@.json_matching(n, 'webhookUrl', 'notificationSettings', false, 2048, '^https?://[^/\s]+(/\S*)?$',
		'Give an http or https URL.');
	IF 'WEBHOOK' OPERATOR(pg_catalog.=) ANY (channels) AND url IS NULL THEN
		PERFORM @extschema@.raise_invalid('notificationSettings.webhookUrl is required for the WEBHOOK channel',
										 'Give the URL to post notifications to.');
	END IF;
	IF @extschema@.json_bool(n, 'enabled', 'notificationSettings', false)
	   AND coalesce(pg_catalog.cardinality(channels), 0) OPERATOR(pg_catalog.=) 0 THEN
		PERFORM @extschema@.raise_invalid('notificationSettings.enabled needs at least one channel',
										 'List channels, for example ["EMAIL"], or set enabled to false.');
	END IF;
	RETURN n OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
		'enabled', @extschema@.json_bool(n, 'enabled', 'notificationSettings', coalesce(pg_catalog.cardinality(channels), 0) OPERATOR(pg_catalog.>) 0),
		'onSuccess', @extschema@.json_bool(n, 'onSuccess', 'notificationSettings', false),
		'onFailure', @extschema@.json_bool(n, 'onFailure', 'notificationSettings', true),
		'onWarning', @extschema@.json_bool(n, 'onWarning', 'notificationSettings', true),
		'channels', pg_catalog.to_jsonb(coalesce(channels, '{}')),
		'recipients', pg_catalog.to_jsonb(coalesce(recipients, '{}')));
END
$$;

-- Validate a whole configuration (camelCase) and return it normalised.
-- Checks that involve several fields (compliance minimums, PHI, encryption)
-- raise 23514.
CREATE FUNCTION @extschema@.validate_configuration(config jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	result jsonb;
	org uuid;
	schedule jsonb;
	tz text;
	scope_check record;
	retention jsonb;
	retention_days bigint;
	req jsonb;
	reqs jsonb;
	normalized_reqs jsonb := '[]';
	rule record;
	seen text[] := '{}';
	i integer;
	p text;
	req_regulation text;
	minimum bigint;
	needs_encryption boolean;
	needs_integrity boolean;
	needs_audit boolean;
	encryption boolean;
	integrity boolean;
	config_type text;
BEGIN
	PERFORM @extschema@.check_object(config, '',
		ARRAY['organizationId', 'name', 'description', 'configType', 'schedule', 'scope', 'retention',
			  'storageDestination', 'encryptionEnabled', 'compressionEnabled', 'integrityCheckEnabled',
			  'checksumAlgorithm', 'notificationSettings', 'complianceRequirements', 'status']);

	org := @extschema@.resolve_organization(@extschema@.json_uuid(config, 'organizationId', ''), 'organizationId');

	result := pg_catalog.jsonb_build_object(
		'organizationId', org,
		'name', @extschema@.json_text(config, 'name', '', true, 255),
		'description', @extschema@.json_text(config, 'description', '', false, 1000));
	config_type := @extschema@.json_choice(config, 'configType', '',
		ARRAY['FULL', 'INCREMENTAL', 'DIFFERENTIAL', 'CONTINUOUS'], 'FULL');
	result := result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
		'configType', config_type,
		'status', @extschema@.json_choice(config, 'status', '', ARRAY['ACTIVE', 'PAUSED', 'SUSPENDED', 'DISABLED', 'ARCHIVED'], 'ACTIVE'));

	-- schedule (validated in C, see schedule/)
	schedule := config OPERATOR(pg_catalog.->) 'schedule';
	IF schedule IS NULL OR schedule OPERATOR(pg_catalog.=) 'null'::jsonb THEN
		PERFORM @extschema@.raise_invalid('schedule is required',
			'Give a schedule such as {"frequency": "DAILY", "startTime": "02:00"}.');
	END IF;
	PERFORM @extschema@.validate_schedule(schedule, NULL);
	tz := coalesce(schedule OPERATOR(pg_catalog.->>) 'timezone', 'UTC');
	IF (config_type OPERATOR(pg_catalog.=) 'CONTINUOUS') OPERATOR(pg_catalog.<>) ((schedule OPERATOR(pg_catalog.->>) 'frequency') OPERATOR(pg_catalog.=) 'CONTINUOUS') THEN
		PERFORM @extschema@.raise_invalid(
			pg_catalog.format('schedule.frequency %s does not fit configType %s', schedule OPERATOR(pg_catalog.->>) 'frequency', config_type),
			'A CONTINUOUS configuration takes the CONTINUOUS frequency, and only it does.');
	END IF;
	result := result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
		'schedule', schedule OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('timezone', tz));

	scope_check := @extschema@.validate_scope(config OPERATOR(pg_catalog.->) 'scope', org);
	retention := @extschema@.validate_retention(config OPERATOR(pg_catalog.->) 'retention');
	retention_days := (retention OPERATOR(pg_catalog.->>) 'retentionDays')::bigint;
	result := result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
		'scope', scope_check.normalized,
		'retention', retention,
		'storageDestination', @extschema@.validate_storage(config OPERATOR(pg_catalog.->) 'storageDestination', 'storageDestination'),
		'notificationSettings', @extschema@.validate_notifications(config OPERATOR(pg_catalog.->) 'notificationSettings'));

	encryption := @extschema@.json_bool(config, 'encryptionEnabled', '', true);
	integrity := @extschema@.json_bool(config, 'integrityCheckEnabled', '', true);
	result := result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
		'encryptionEnabled', encryption,
		'compressionEnabled', @extschema@.json_bool(config, 'compressionEnabled', '', true),
		'integrityCheckEnabled', integrity,
		'checksumAlgorithm', @extschema@.json_choice(config, 'checksumAlgorithm', '', ARRAY['SHA256', 'SHA512', 'BLAKE3'], 'SHA256'));

	-- compliance requirements: each names a known req_regulation; its minimum
	-- (the larger of the requirement's and the rule's) must be met
	reqs := nullif(config OPERATOR(pg_catalog.->) 'complianceRequirements', 'null'::jsonb);
	IF reqs IS NOT NULL AND pg_catalog.jsonb_typeof(reqs) OPERATOR(pg_catalog.<>) 'array' THEN
		PERFORM @extschema@.raise_invalid(pg_catalog.format('invalid complianceRequirements: %s is not an array', reqs),
										 'Pass an array of objects such as [{"regulation": "HIPAA"}].');
	END IF;
	FOR i IN 0 .. coalesce(pg_catalog.jsonb_array_length(reqs), 0) OPERATOR(pg_catalog.-) 1 LOOP
		req := reqs OPERATOR(pg_catalog.->) i;
		p := pg_catalog.format('complianceRequirements[%s]', i);
		PERFORM @extschema@.check_object(req, p,
			ARRAY['regulation', 'minimumRetentionDays', 'requiresEncryption', 'requiresAuditLog', 'requiresIntegrityCheck']);
		req_regulation := @extschema@.json_text(req, 'regulation', p, true, 63);
		IF req_regulation OPERATOR(pg_catalog.=) ANY (seen) THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('invalid %s.regulation: "%s" is listed twice', p, req_regulation),
				'List each regulation once.');
		END IF;
		seen := seen OPERATOR(pg_catalog.||) req_regulation;
		-- The shared rule and the organization's own row, if any, together:
		-- an organization's row may make a rule stricter, never weaker.
		SELECT pg_catalog.count(*) AS n,
			   pg_catalog.max(@extschema@.retention_interval_days(r.minimum_retention)) AS minimum_days,
			   pg_catalog.bool_or(r.requires_encryption) AS requires_encryption,
			   pg_catalog.bool_or(r.requires_integrity_check) AS requires_integrity_check,
			   pg_catalog.bool_or(r.requires_audit_log) AS requires_audit_log,
			   pg_catalog.string_agg(r.name OPERATOR(pg_catalog.||) ' (' OPERATOR(pg_catalog.||) r.source_citation OPERATOR(pg_catalog.||) ')',
									 '; ' ORDER BY r.organization_id NULLS FIRST) AS source
		  INTO rule
		  FROM @extschema@.compliance_rule r
		 WHERE r.regulation OPERATOR(pg_catalog.=) req_regulation
		   AND (r.organization_id IS NULL OR r.organization_id OPERATOR(pg_catalog.=) org);
		IF rule.n OPERATOR(pg_catalog.=) 0 THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('unknown regulation "%s" in %s.regulation', req_regulation, p),
				'Use a regulation listed in backup_offline.compliance_rule, or add a rule there first.',
				pg_catalog.format('Known regulations: %s.', (SELECT pg_catalog.string_agg(DISTINCT r.regulation, ', ')
					FROM @extschema@.compliance_rule r WHERE r.organization_id IS NULL OR r.organization_id OPERATOR(pg_catalog.=) org)));
		END IF;
		minimum := GREATEST(@extschema@.json_int(req, 'minimumRetentionDays', p, 0, 36500, 0),
							rule.minimum_days);
		-- a requirement may add safeguards to its rule, never waive them
		needs_encryption := @extschema@.json_bool(req, 'requiresEncryption', p, rule.requires_encryption);
		needs_integrity := @extschema@.json_bool(req, 'requiresIntegrityCheck', p, rule.requires_integrity_check);
		needs_audit := @extschema@.json_bool(req, 'requiresAuditLog', p, rule.requires_audit_log);
		IF (rule.requires_encryption AND NOT needs_encryption) OR (rule.requires_integrity_check AND NOT needs_integrity)
		   OR (rule.requires_audit_log AND NOT needs_audit) THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('%s cannot waive a safeguard %s requires', p, req_regulation),
				'Leave requiresEncryption, requiresIntegrityCheck and requiresAuditLog out, or set them to true.',
				pg_catalog.format('%s requires encryption: %s, integrity checks: %s, an audit log: %s (%s).', req_regulation,
					rule.requires_encryption, rule.requires_integrity_check, rule.requires_audit_log, rule.source), '23514');
		END IF;
		IF retention_days OPERATOR(pg_catalog.<>) 0 AND retention_days OPERATOR(pg_catalog.<) minimum THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('retention.retentionDays %s is below the %s days %s requires', retention_days, minimum, req_regulation),
				pg_catalog.format('Keep backups at least %s days (or 0, to keep them forever).', minimum),
				pg_catalog.format('%s: %s.', p, rule.source), '23514');
		END IF;
		IF needs_encryption AND NOT encryption THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('encryptionEnabled must be true: %s requires encryption', req_regulation),
				'Set encryptionEnabled to true.', pg_catalog.format('%s: %s.', p, rule.source), '23514');
		END IF;
		IF needs_integrity AND NOT integrity THEN
			PERFORM @extschema@.raise_invalid(
				pg_catalog.format('integrityCheckEnabled must be true: %s requires integrity checks', req_regulation),
				'Set integrityCheckEnabled to true.', pg_catalog.format('%s: %s.', p, rule.source), '23514');
		END IF;
		normalized_reqs := normalized_reqs OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
			'regulation', req_regulation,
			'minimumRetentionDays', minimum,
			'requiresEncryption', needs_encryption,
			'requiresAuditLog', needs_audit,
			'requiresIntegrityCheck', needs_integrity));
	END LOOP;
	IF scope_check.has_phi AND NOT encryption THEN
		PERFORM @extschema@.raise_invalid('encryptionEnabled must be true: the scope includes PHI',
			'Set encryptionEnabled to true; backups of protected health information are always encrypted.',
			'The scope sets includePHI or selects an entity type marked contains_phi.', '23514');
	END IF;
	RETURN result OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('complianceRequirements', normalized_reqs);
END
$$;
