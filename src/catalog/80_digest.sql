-- Digests of the archive engine (src/archive/digest.c): SHA-256 and SHA-512
-- through PostgreSQL's pg_cryptohash, BLAKE3 through the official C
-- implementation.  The result equals what sha256sum, sha512sum and b3sum
-- print for the same bytes.

CREATE FUNCTION @extschema@.digest(data bytea, algorithm text) RETURNS bytea
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'bo_digest_sql';

COMMENT ON FUNCTION @extschema@.digest(bytea, text) IS
	'Digest of data with algorithm SHA256, SHA512 or BLAKE3 (the values sha256sum, sha512sum and b3sum print)';

-- 60_security.sql revoked PUBLIC's EXECUTE before this file; nothing was
-- granted on this function yet, so revoke and grant it here.
REVOKE ALL ON FUNCTION @extschema@.digest(bytea, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.digest(bytea, text)
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor;
