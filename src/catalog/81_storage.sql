-- Storage operator tools (storage/storage.c, storage/fs.c).
--
-- Each function opens a storageDestination (validated like the one of a
-- backup configuration, then confined to backup_offline.allowed_paths) and
-- works on objects under relative names.  They read and write server files,
-- so they are superuser-only: revoked from PUBLIC and granted to no role.
--
-- Puts are write-once and atomic, but not transactional: an object stays
-- when the calling transaction later rolls back.

-- Write object name once; refuses (42710) when it exists.
CREATE FUNCTION @extschema@.storage_put(storage jsonb, name text, data bytea)
RETURNS void
AS 'MODULE_PATHNAME', 'bo_storage_put_sql'
LANGUAGE C STRICT VOLATILE;

-- Bytes of object name from offset (0-based); the rest when length is NULL.
CREATE FUNCTION @extschema@.storage_get(storage jsonb, name text, "offset" bigint DEFAULT 0,
										length bigint DEFAULT NULL)
RETURNS bytea
AS 'MODULE_PATHNAME', 'bo_storage_get_sql'
LANGUAGE C VOLATILE;

-- Objects whose names begin with prefix, sorted by name.
CREATE FUNCTION @extschema@.storage_list(storage jsonb, prefix text DEFAULT '')
RETURNS TABLE (name text, size bigint, modified timestamptz)
AS 'MODULE_PATHNAME', 'bo_storage_list_sql'
LANGUAGE C STRICT VOLATILE;

-- Delete object name (nothing happens when it does not exist).
CREATE FUNCTION @extschema@.storage_delete(storage jsonb, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'bo_storage_delete_sql'
LANGUAGE C STRICT VOLATILE;

-- {"name", "size", "modified"} of object name, or NULL when it does not exist.
CREATE FUNCTION @extschema@.storage_stat(storage jsonb, name text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_storage_stat_sql'
LANGUAGE C STRICT VOLATILE;

-- Remove temporary files of puts that never finished (a crash, kill -9) and
-- were not modified for older_than; returns how many were removed.
CREATE FUNCTION @extschema@.storage_cleanup(storage jsonb, older_than interval DEFAULT '1 hour')
RETURNS integer
AS 'MODULE_PATHNAME', 'bo_storage_cleanup_sql'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION
	@extschema@.storage_put(jsonb, text, bytea),
	@extschema@.storage_get(jsonb, text, bigint, bigint),
	@extschema@.storage_list(jsonb, text),
	@extschema@.storage_delete(jsonb, text),
	@extschema@.storage_stat(jsonb, text),
	@extschema@.storage_cleanup(jsonb, interval)
FROM PUBLIC;
