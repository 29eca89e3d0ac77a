-- Entity registry, compliance rules and memberships: guards and audit.

-- BEFORE INSERT OR UPDATE bookkeeping shared by the registry tables:
-- version, created/updated at and by.
CREATE FUNCTION @extschema@.stamp_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		NEW.id := OLD.id;
		NEW.created_at := OLD.created_at;
		NEW.created_by := OLD.created_by;
		NEW.version := OLD.version + 1;
	ELSE
		NEW.created_at := now();
		NEW.created_by := @extschema@.current_actor();
		NEW.version := 1;
	END IF;
	NEW.updated_at := now();
	NEW.updated_by := @extschema@.current_actor();
	RETURN NEW;
END
$$;

-- Every column an entity_registry row names must exist in its table.
CREATE FUNCTION @extschema@.entity_registry_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	col name;
	field text;
	cols name[];
BEGIN
	FOR field, col IN
		SELECT 'key_columns', k FROM unnest(NEW.key_columns) k
		UNION ALL SELECT 'client_id_column', NEW.client_id_column
		UNION ALL SELECT 'caregiver_id_column', NEW.caregiver_id_column
		UNION ALL SELECT 'branch_id_column', NEW.branch_id_column
		UNION ALL SELECT 'date_column', NEW.date_column
		UNION ALL SELECT 'organization_column', NEW.organization_column
		UNION ALL SELECT 'modified_at_column', NEW.modified_at_column
	LOOP
		CONTINUE WHEN col IS NULL;
		IF NOT EXISTS (SELECT 1 FROM pg_attribute a
					   WHERE a.attrelid = NEW.table_name AND a.attname = col
						 AND a.attnum > 0 AND NOT a.attisdropped) THEN
			RAISE EXCEPTION 'invalid %: table % has no column "%"', field, NEW.table_name, col
				USING ERRCODE = '42703', HINT = 'Name a column of the registered table.';
		END IF;
	END LOOP;
	-- NEWEST_WINS / OLDEST_WINS restores compare rows by it
	IF NEW.modified_at_column IS NOT NULL
	   AND (SELECT a.atttypid FROM pg_attribute a
			 WHERE a.attrelid = NEW.table_name AND a.attname = NEW.modified_at_column)
		   NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
		RAISE EXCEPTION 'invalid modified_at_column: column "%" of table % is not a timestamp or date',
			NEW.modified_at_column, NEW.table_name
			USING ERRCODE = '42804', HINT = 'Name the column that records when a row last changed (timestamptz, timestamp or date).';
	END IF;
	IF (SELECT c.relkind FROM pg_class c WHERE c.oid = NEW.table_name) NOT IN ('r', 'p') THEN
		RAISE EXCEPTION 'invalid table_name: % is not a table', NEW.table_name
			USING ERRCODE = '42809', HINT = 'Register ordinary or partitioned tables.';
	END IF;
	IF NOT has_table_privilege(NEW.table_name, 'SELECT') THEN
		RAISE EXCEPTION 'permission denied to register table %', NEW.table_name
			USING ERRCODE = '42501', HINT = 'Only a role that can read a table may register it for backups.';
	END IF;
	SELECT array_agg(k ORDER BY k) INTO cols FROM unnest(NEW.key_columns) k;
	IF cardinality(cols) <> (SELECT count(DISTINCT k) FROM unnest(NEW.key_columns) k) THEN
		RAISE EXCEPTION 'invalid key_columns: a column is listed twice'
			USING ERRCODE = '22023', HINT = 'List each key column once.';
	END IF;
	RETURN NEW;
END
$$;

-- An entity type named by a configuration's scope cannot be removed or
-- renamed while that configuration exists (deleted ones excepted).
CREATE FUNCTION @extschema@.entity_registry_in_use()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names text;
BEGIN
	-- SECURITY DEFINER: never run on behalf of another table's trigger
	IF TG_RELID <> '@extschema@.entity_registry'::regclass THEN
		RAISE EXCEPTION 'entity_registry_in_use fires only on backup_offline.entity_registry'
			USING ERRCODE = '42501';
	END IF;
	IF TG_OP = 'UPDATE' AND NEW.entity_type = OLD.entity_type
	   AND NEW.organization_id IS NOT DISTINCT FROM OLD.organization_id THEN
		RETURN NEW;
	END IF;
	SELECT string_agg(format('"%s"', c.name), ', ' ORDER BY c.name) INTO names
	  FROM @extschema@.backup_configuration c
	 WHERE c.deleted_at IS NULL
	   AND (OLD.organization_id IS NULL OR c.organization_id = OLD.organization_id)
	   AND (c.scope->'includeEntities' ? OLD.entity_type OR c.scope->'excludeEntities' ? OLD.entity_type);
	IF names IS NOT NULL THEN
		RAISE EXCEPTION 'entity type "%" is in use by backup configuration %', OLD.entity_type, names
			USING ERRCODE = '23503', HINT = 'Remove it from those configurations'' scopes first.';
	END IF;
	RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER entity_registry_in_use
	BEFORE UPDATE OR DELETE ON @extschema@.entity_registry
	FOR EACH ROW EXECUTE FUNCTION @extschema@.entity_registry_in_use();
CREATE TRIGGER entity_registry_guard
	BEFORE INSERT OR UPDATE ON @extschema@.entity_registry
	FOR EACH ROW EXECUTE FUNCTION @extschema@.entity_registry_guard();
CREATE TRIGGER entity_registry_stamp
	BEFORE INSERT OR UPDATE ON @extschema@.entity_registry
	FOR EACH ROW EXECUTE FUNCTION @extschema@.stamp_row();
CREATE TRIGGER entity_registry_audit
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.entity_registry
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_row_change('entity_registry');

-- Built-in rules are the extension's: they cannot be changed or removed,
-- and only the install script creates them.
CREATE FUNCTION @extschema@.compliance_rule_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.built_in THEN
		RAISE EXCEPTION 'compliance rule "%" is built in and cannot change', OLD.regulation
			USING ERRCODE = '55000',
				  HINT = 'Add an organization''s own row for the same regulation with stricter terms, or a rule under a new regulation name.';
	END IF;
	IF TG_OP = 'DELETE' THEN
		RETURN OLD;
	END IF;
	IF NEW.built_in THEN
		RAISE EXCEPTION 'only the extension creates built-in compliance rules'
			USING ERRCODE = '42501', HINT = 'Leave built_in false.';
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER compliance_rule_guard
	BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.compliance_rule
	FOR EACH ROW EXECUTE FUNCTION @extschema@.compliance_rule_guard();
CREATE TRIGGER compliance_rule_stamp
	BEFORE INSERT OR UPDATE ON @extschema@.compliance_rule
	FOR EACH ROW EXECUTE FUNCTION @extschema@.stamp_row();
CREATE TRIGGER compliance_rule_audit
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.compliance_rule
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_row_change('compliance_rule');

CREATE TRIGGER organization_member_audit
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.organization_member
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_row_change('organization_member');

-- register_entity(entity_type text, table_name regclass, options jsonb DEFAULT '{}') RETURNS uuid
-- Maps an entity type to a table.  options: keyColumns (default: the
-- primary key), clientIdColumn, caregiverIdColumn, branchIdColumn,
-- dateColumn, organizationColumn, modifiedAtColumn (when a row last changed:
-- NEWEST_WINS / OLDEST_WINS restores compare it), containsPHI, containsPII,
-- containsFinancial, description, organizationId (NULL: every organization).
CREATE FUNCTION @extschema@.register_entity(entity_type text, table_name regclass, options jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keys name[];
	new_id uuid;
BEGIN
	PERFORM @extschema@.check_object(options, 'options',
		ARRAY['keyColumns', 'clientIdColumn', 'caregiverIdColumn', 'branchIdColumn', 'dateColumn',
			  'organizationColumn', 'modifiedAtColumn', 'containsPHI', 'containsPII', 'containsFinancial',
			  'description', 'organizationId']);
	IF entity_type IS NULL OR entity_type !~ '^[A-Z][A-Z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid entity_type: "%"', entity_type
			USING ERRCODE = '22023', HINT = 'Use upper-case letters, digits and underscores, such as EVV_RECORD.';
	END IF;
	IF table_name IS NULL THEN
		RAISE EXCEPTION 'table_name is required' USING ERRCODE = '22023', HINT = 'Name the table that holds the entity.';
	END IF;
	keys := @extschema@.json_text_array(options, 'keyColumns', 'options', false)::name[];
	IF keys IS NULL THEN
		SELECT array_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum)) INTO keys
		  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		 WHERE i.indrelid = table_name AND i.indisprimary;
		IF keys IS NULL THEN
			RAISE EXCEPTION 'options.keyColumns is required: table % has no primary key', table_name
				USING ERRCODE = '22023', HINT = 'Name the columns that identify a row, for example {"keyColumns": ["id"]}.';
		END IF;
	END IF;
	INSERT INTO @extschema@.entity_registry
		(organization_id, entity_type, table_name, key_columns, client_id_column, caregiver_id_column,
		 branch_id_column, date_column, organization_column, modified_at_column, contains_phi,
		 contains_pii, contains_financial, description)
	VALUES (@extschema@.json_uuid(options, 'organizationId', 'options'), entity_type, table_name, keys,
			@extschema@.json_text(options, 'clientIdColumn', 'options', false, 63),
			@extschema@.json_text(options, 'caregiverIdColumn', 'options', false, 63),
			@extschema@.json_text(options, 'branchIdColumn', 'options', false, 63),
			@extschema@.json_text(options, 'dateColumn', 'options', false, 63),
			@extschema@.json_text(options, 'organizationColumn', 'options', false, 63),
			@extschema@.json_text(options, 'modifiedAtColumn', 'options', false, 63),
			@extschema@.json_bool(options, 'containsPHI', 'options', false),
			@extschema@.json_bool(options, 'containsPII', 'options', false),
			@extschema@.json_bool(options, 'containsFinancial', 'options', false),
			@extschema@.json_text(options, 'description', 'options', false, 1000))
	RETURNING id INTO new_id;
	RETURN new_id;
EXCEPTION WHEN unique_violation THEN
	RAISE EXCEPTION 'entity type "%" is already registered', entity_type
		USING ERRCODE = '23505', HINT = 'Update the existing row of backup_offline.entity_registry instead.';
END
$$;

-- compliance_retention_until(regulation text, event_date date, subject_birth_date date DEFAULT NULL,
--                            organization_id uuid DEFAULT NULL) RETURNS date
-- The day until which a record must be kept under a regulation: the rule's
-- minimum after the anchor event and, for rules with until_subject_age,
-- at least until the subject reaches that age; whichever is later.  The
-- rule is the organization's own (organization_id, else the session's
-- backup_offline.organization_id) when it has one, else the shared rule;
-- never another organization's.
CREATE FUNCTION @extschema@.compliance_retention_until(regulation text, event_date date,
													   subject_birth_date date DEFAULT NULL,
													   organization_id uuid DEFAULT NULL)
RETURNS date
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	org uuid := coalesce(organization_id,
						 nullif(current_setting('backup_offline.organization_id', true), '')::uuid);
	rule record;
BEGIN
	-- the shared rule and the organization's own row together: the later
	-- date of either (an organization's row makes a rule stricter, never weaker)
	SELECT count(*) AS n, max(r.retention_anchor) AS retention_anchor,
		   max((event_date + r.minimum_retention)::date) AS after_event,
		   max(r.until_subject_age) AS until_subject_age
	  INTO rule
	  FROM @extschema@.compliance_rule r
	 WHERE r.regulation = compliance_retention_until.regulation
	   AND (r.organization_id IS NULL OR r.organization_id = org);
	IF rule.n = 0 THEN
		RAISE EXCEPTION 'unknown regulation "%"', regulation
			USING ERRCODE = '22023', HINT = 'See backup_offline.compliance_rule for the known regulations.';
	END IF;
	IF event_date IS NULL THEN
		RAISE EXCEPTION 'event_date is required' USING ERRCODE = '22023',
			HINT = format('Give the date of the event the rule counts from (%s).', rule.retention_anchor);
	END IF;
	IF rule.until_subject_age IS NOT NULL AND subject_birth_date IS NULL THEN
		RAISE EXCEPTION 'subject_birth_date is required for %', regulation USING ERRCODE = '22023',
			HINT = format('The rule keeps records at least until the subject is %s.', rule.until_subject_age);
	END IF;
	RETURN greatest(rule.after_event,
					(subject_birth_date + make_interval(years => rule.until_subject_age))::date);
END
$$;
