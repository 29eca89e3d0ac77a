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
