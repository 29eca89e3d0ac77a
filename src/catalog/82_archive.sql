-- The archive container (src/archive/): operator functions to inspect and
-- verify stored objects, key rotation, and direct put/get for tests and
-- operators.  The container format is documented in src/archive/archive.h
-- and the README ("Archive format").
--
-- inspect_object and verify_object show no secrets and are granted to the
-- administration, operation and audit roles.  rotate_key, archive_put and
-- archive_get handle keys and plaintext: superuser only (they also check
-- it themselves).  60_security.sql has already run, so this file revokes
-- its own functions from PUBLIC.

-- Header fields, trailer sizes and the key ids of the wraps present.
CREATE FUNCTION @extschema@.inspect_object(storage jsonb, name text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_inspect_object_sql'
LANGUAGE C STRICT VOLATILE;

-- Check every chunk; with_key also decrypts, decompresses and checks the
-- plaintext digest.  A damaged object is reported, not raised.
CREATE FUNCTION @extschema@.verify_object(storage jsonb, name text, with_key boolean DEFAULT true)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_verify_object_sql'
LANGUAGE C STRICT VOLATILE;

-- Re-wrap data keys under a new key-encryption key; returns the number of
-- wraps written.
CREATE FUNCTION @extschema@.rotate_key(storage jsonb, old_key_id text, new_key_id text,
									   prefix text DEFAULT '', remove_old boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'bo_rotate_key_sql'
LANGUAGE C STRICT VOLATILE;

-- Write bytes as an archive object (options: compression, level, cipher,
-- digest, chunkSize, keyId); returns sizes, digests and key ids.
CREATE FUNCTION @extschema@.archive_put(storage jsonb, name text, data bytea, options jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_archive_put_sql'
LANGUAGE C STRICT VOLATILE;

-- The verified plaintext of an archive object.
CREATE FUNCTION @extschema@.archive_get(storage jsonb, name text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'bo_archive_get_sql'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION
	@extschema@.inspect_object(jsonb, text),
	@extschema@.verify_object(jsonb, text, boolean),
	@extschema@.rotate_key(jsonb, text, text, text, boolean),
	@extschema@.archive_put(jsonb, text, bytea, jsonb),
	@extschema@.archive_get(jsonb, text)
FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	@extschema@.inspect_object(jsonb, text),
	@extschema@.verify_object(jsonb, text, boolean)
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor;

-- Opening a destination validates it (validate_storage) as the caller:
-- auditors, who change nothing else, need the validation functions too.
GRANT EXECUTE ON FUNCTION
	@extschema@.validate_storage(jsonb, text, boolean),
	@extschema@.confine_path(text, text),
	@extschema@.raise_invalid(text, text, text, text),
	@extschema@.json_path(text, text),
	@extschema@.json_excerpt(jsonb),
	@extschema@.check_object(jsonb, text, text[]),
	@extschema@.json_bool(jsonb, text, text, boolean),
	@extschema@.json_int(jsonb, text, text, bigint, bigint, bigint),
	@extschema@.json_text(jsonb, text, text, boolean, integer),
	@extschema@.json_choice(jsonb, text, text, text[], text),
	@extschema@.json_matching(jsonb, text, text, boolean, integer, text, text)
TO backup_offline_auditor;
