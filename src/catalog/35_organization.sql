-- Organizations of the current role, for row-level security.
--
-- The application either connects as a role that is a member of exactly the
-- organizations it serves, or (a pooled role) sets
--     SET backup_offline.organization_id = '<uuid>'
-- per connection or, better, per transaction with
--     SELECT set_config('backup_offline.organization_id', '<uuid>', true);
-- A role may only name an organization it is a member of (or a role with an
-- all-organizations membership); naming another one is an error, never a
-- silent empty result.
--
-- Memberships are kept by role name (pg_dump keeps names, not oids); a
-- membership whose role no longer exists is ignored.  Every role sees only
-- its own memberships (policy in 60_security.sql), so these functions run
-- as the caller and answer only for the caller.

-- The application user (uuid) named by backup_offline.user_id, or NULL.
CREATE FUNCTION @extschema@.current_actor()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT nullif(pg_catalog.current_setting('backup_offline.user_id', true), '')::uuid
$$;

-- Does the current role hold an all-organizations membership, with no
-- organization chosen for the session?
CREATE FUNCTION @extschema@.sees_all_organizations()
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT coalesce(pg_catalog.current_setting('backup_offline.organization_id', true), '') OPERATOR(pg_catalog.=) ''
	   AND EXISTS (SELECT 1 FROM @extschema@.organization_member m
				   JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) m.role_name
				   WHERE m.organization_id IS NULL
					 AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'MEMBER'))
$$;

-- The organizations the current role works on now: the session's chosen
-- organization when set (checked: the role must be a member of it, or of
-- all), else every organization it belongs to.
CREATE FUNCTION @extschema@.current_organization_ids()
RETURNS uuid[]
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
	chosen text := coalesce(pg_catalog.current_setting('backup_offline.organization_id', true), '');
	orgs uuid[];
BEGIN
	IF chosen OPERATOR(pg_catalog.<>) '' THEN
		IF EXISTS (SELECT 1 FROM @extschema@.organization_member m
				   JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) m.role_name
				   WHERE (m.organization_id IS NULL OR m.organization_id OPERATOR(pg_catalog.=) chosen::uuid)
					 AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'MEMBER'))
		   OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
			RETURN ARRAY[chosen::uuid];
		END IF;
		RAISE EXCEPTION 'role "%" is not a member of organization %', CURRENT_USER, chosen
			USING ERRCODE = '42501',
				  DETAIL = 'The setting backup_offline.organization_id names an organization this role does not act for.',
				  HINT = 'An administrator adds the membership to backup_offline.organization_member.';
	END IF;
	SELECT pg_catalog.array_agg(DISTINCT m.organization_id) INTO orgs
	  FROM @extschema@.organization_member m
	  JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) m.role_name
	 WHERE m.organization_id IS NOT NULL AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'MEMBER');
	RETURN coalesce(orgs, '{}');
END
$$;

-- The organization a new row belongs to: the one given, or the session's.
CREATE FUNCTION @extschema@.resolve_organization(given uuid, path text)
RETURNS uuid
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	chosen text := coalesce(pg_catalog.current_setting('backup_offline.organization_id', true), '');
BEGIN
	IF given IS NULL AND chosen OPERATOR(pg_catalog.=) '' THEN
		RAISE EXCEPTION '% is required', path
			USING ERRCODE = '22023',
				  HINT = 'Pass organizationId, or set backup_offline.organization_id for the session.';
	END IF;
	IF given IS NOT NULL AND chosen OPERATOR(pg_catalog.<>) '' AND given OPERATOR(pg_catalog.<>) chosen::uuid THEN
		RAISE EXCEPTION '% % differs from the session''s organization %', path, given, chosen
			USING ERRCODE = '42501',
				  HINT = 'Omit organizationId or set backup_offline.organization_id to the same organization.';
	END IF;
	RETURN coalesce(given, chosen::uuid);
END
$$;
