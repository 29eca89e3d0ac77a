-- Server paths are confined to backup_offline.allowed_paths (storage/paths.c).

-- The canonical form of path, or an error naming field when it is not under
-- an allowed directory.  The allowed directories themselves are never shown.
CREATE FUNCTION @extschema@.confine_path(path text, field text DEFAULT 'path')
RETURNS text
AS 'MODULE_PATHNAME', 'bo_confine_path_sql'
LANGUAGE C STRICT STABLE PARALLEL SAFE;
