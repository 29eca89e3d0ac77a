-- Streaming archive round trips through server files (src/archive/bench.c),
-- for the large round-trip scenario and the archive benchmark: objects of
-- any size with memory independent of it, which archive_put and archive_get
-- (one bytea, at most 1 GB) cannot do.  Both paths are server paths under
-- backup_offline.allowed_paths.  Plaintext and server files: superuser only
-- (the functions check it themselves too).

-- Write the server file path as an archive object (options as for
-- archive_put); returns what archive_put returns.
CREATE FUNCTION @extschema@.archive_put_file(storage jsonb, name text, path text, options jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_archive_put_file_sql'
LANGUAGE C STRICT VOLATILE;

-- Write the verified plaintext of an archive object to the new server file
-- path (never replacing one; removed again on any error); returns its
-- length in bytes.
CREATE FUNCTION @extschema@.archive_get_file(storage jsonb, name text, path text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'bo_archive_get_file_sql'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION
	@extschema@.archive_put_file(jsonb, text, text, jsonb),
	@extschema@.archive_get_file(jsonb, text, text)
FROM PUBLIC;
