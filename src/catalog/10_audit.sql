-- The audit trail: an append-only, hash-chained log.  src/catalog/audit.c
-- has the canonical hash encoding, the locking and the verification rules.

CREATE TABLE @extschema@.audit_log (
	id bigint PRIMARY KEY,
	occurred_at timestamptz NOT NULL,
	organization_id uuid,
	actor_role name NOT NULL,
	actor_user_id uuid,
	action text NOT NULL
		CONSTRAINT audit_log_action_present CHECK (action OPERATOR(pg_catalog.<>) ''),
	object_type text NOT NULL
		CONSTRAINT audit_log_object_type_present CHECK (object_type OPERATOR(pg_catalog.<>) ''),
	object_id text,
	details jsonb NOT NULL DEFAULT '{}'
		CONSTRAINT audit_log_details_object CHECK (pg_catalog.jsonb_typeof(details) OPERATOR(pg_catalog.=) 'object'),
	transaction_id xid8 NOT NULL,
	prev_hash bytea NOT NULL
		CONSTRAINT audit_log_prev_hash_length CHECK (pg_catalog.octet_length(prev_hash) OPERATOR(pg_catalog.=) 32),
	row_hash bytea NOT NULL
		CONSTRAINT audit_log_row_hash_length CHECK (pg_catalog.octet_length(row_hash) OPERATOR(pg_catalog.=) 32)
);

COMMENT ON TABLE @extschema@.audit_log IS
	'Append-only audit trail; each row_hash chains to the previous row (verify with verify_audit_chain())';
COMMENT ON COLUMN @extschema@.audit_log.id IS 'Position in the chain: 1, 2, 3, ... without gaps';
COMMENT ON COLUMN @extschema@.audit_log.actor_role IS 'SQL role that made the change';
COMMENT ON COLUMN @extschema@.audit_log.actor_user_id IS 'Application user, from the setting backup_offline.user_id';
COMMENT ON COLUMN @extschema@.audit_log.prev_hash IS 'row_hash of the previous row; 32 zero bytes for id 1';
COMMENT ON COLUMN @extschema@.audit_log.row_hash IS 'SHA-256 of the row''s canonical encoding (see the reference)';

-- The end of the chain.  The row is created by the first audit write, not
-- here, so that a dumped head restores without colliding with a seeded one;
-- no row reads as (0, 32 zero bytes).
CREATE TABLE @extschema@.audit_chain_head (
	singleton boolean PRIMARY KEY DEFAULT true
		CONSTRAINT audit_chain_head_singleton CHECK (singleton),
	last_id bigint NOT NULL,
	last_hash bytea NOT NULL
);

COMMENT ON TABLE @extschema@.audit_chain_head IS
	'Id and row_hash of the last audit_log row; committing writers serialise on it';

-- Entries waiting for their place in the chain.  write_audit() inserts here;
-- the deferred constraint trigger audit_pending_chain moves each row into
-- audit_log when its transaction commits (or at SET CONSTRAINTS ...
-- IMMEDIATE), so the table is empty outside transactions: it is not dumped,
-- nobody is granted anything on it, and row-level security without a policy
-- hides it from everyone but its owner.
CREATE TABLE @extschema@.audit_pending (
	seq bigint NOT NULL,
	occurred_at timestamptz NOT NULL,
	organization_id uuid,
	actor_role name NOT NULL,
	actor_user_id uuid,
	action text NOT NULL
		CONSTRAINT audit_pending_action_present CHECK (action OPERATOR(pg_catalog.<>) ''),
	object_type text NOT NULL
		CONSTRAINT audit_pending_object_type_present CHECK (object_type OPERATOR(pg_catalog.<>) ''),
	object_id text,
	details jsonb NOT NULL DEFAULT '{}'
		CONSTRAINT audit_pending_details_object CHECK (pg_catalog.jsonb_typeof(details) OPERATOR(pg_catalog.=) 'object'),
	transaction_id xid8 NOT NULL
);

COMMENT ON TABLE @extschema@.audit_pending IS
	'Audit entries written by transactions still in progress; chained into audit_log at commit';
COMMENT ON COLUMN @extschema@.audit_pending.seq IS 'Order of the writes within the writing backend';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_chain_head', '');

-- Triggers: chain every new row, refuse every change to an existing one.
CREATE FUNCTION @extschema@.audit_log_chain() RETURNS trigger
	LANGUAGE C
	AS 'MODULE_PATHNAME', 'bo_audit_chain';

CREATE FUNCTION @extschema@.audit_log_append_only() RETURNS trigger
	LANGUAGE C
	AS 'MODULE_PATHNAME', 'bo_audit_append_only';

REVOKE ALL ON FUNCTION @extschema@.audit_log_chain() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.audit_log_append_only() FROM PUBLIC;

CREATE TRIGGER audit_log_chain
	BEFORE INSERT ON @extschema@.audit_log
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_log_chain();

CREATE TRIGGER audit_log_append_only
	BEFORE UPDATE OR DELETE ON @extschema@.audit_log
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_log_append_only();

CREATE TRIGGER audit_log_append_only_statement
	BEFORE UPDATE OR DELETE OR TRUNCATE ON @extschema@.audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_log_append_only();

-- session_replication_role = replica does not switch these off.
ALTER TABLE @extschema@.audit_log
	ENABLE ALWAYS TRIGGER audit_log_append_only,
	ENABLE ALWAYS TRIGGER audit_log_append_only_statement;

-- The commit-time chainer: one deferred event per pending row.  It runs as
-- the extension owner (SECURITY DEFINER), whoever commits, and also in
-- replica mode, so that no pending row is ever left behind.
CREATE FUNCTION @extschema@.audit_pending_chain() RETURNS trigger
	LANGUAGE C SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'bo_audit_pending_chain';

REVOKE ALL ON FUNCTION @extschema@.audit_pending_chain() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER audit_pending_chain
	AFTER INSERT ON @extschema@.audit_pending
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_pending_chain();

ALTER TABLE @extschema@.audit_pending ENABLE ALWAYS TRIGGER audit_pending_chain;

-- The writer.  Callers (the catalog's change triggers) pass the role they
-- captured before switching to the extension owner; NULL records
-- session_user.
CREATE FUNCTION @extschema@.write_audit(
	action text,
	object_type text,
	object_id text,
	organization_id uuid,
	details jsonb DEFAULT '{}',
	actor_role name DEFAULT NULL)
	RETURNS bigint
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'bo_write_audit';

COMMENT ON FUNCTION @extschema@.write_audit(text, text, text, uuid, jsonb, name) IS
	'Append an audit entry; it is numbered and chained at commit (returns its id only when already chained)';

-- The verifier.
CREATE FUNCTION @extschema@.verify_audit_chain()
	RETURNS jsonb
	LANGUAGE C STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'bo_verify_audit_chain';

COMMENT ON FUNCTION @extschema@.verify_audit_chain() IS
	'Recompute every audit_log hash and link; report the first broken row';

-- Privileges: nobody inserts directly, nobody changes anything; auditors and
-- administrators read and verify.
REVOKE ALL ON TABLE @extschema@.audit_log FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.audit_chain_head FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.audit_pending FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.write_audit(text, text, text, uuid, jsonb, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.verify_audit_chain() FROM PUBLIC;

GRANT SELECT ON TABLE @extschema@.audit_log TO backup_offline_auditor, backup_offline_admin;
GRANT SELECT ON TABLE @extschema@.audit_chain_head TO backup_offline_auditor, backup_offline_admin;
GRANT EXECUTE ON FUNCTION @extschema@.verify_audit_chain() TO backup_offline_auditor, backup_offline_admin;

-- Auditors and administrators work across organizations: they read every row.
ALTER TABLE @extschema@.audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_log_read ON @extschema@.audit_log
	FOR SELECT TO backup_offline_auditor, backup_offline_admin
	USING (true);

-- Nobody but the owner sees or touches pending entries.
ALTER TABLE @extschema@.audit_pending ENABLE ROW LEVEL SECURITY;
