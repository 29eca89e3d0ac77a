-- Backups (src/backup/): snapshots of the scoped tables, their status
-- machine, the job functions and the progress view.
--
-- A snapshot row is written only by the job worker (run_backup, the
-- scheduler), which runs as the extension's owner; the row's status moves
-- along snapshot_status_transition, enforced by backup_snapshot_guard, and
-- every change is audited.  The repository in storage is the truth about a
-- backup (its manifest, written last, is the commit point); these rows are
-- the index.  60_security.sql has already run, so this file grants and
-- revokes for its own objects.

CREATE TYPE @extschema@.backup_type AS ENUM ('FULL', 'INCREMENTAL', 'DIFFERENTIAL');

-- PENDING      created by the job worker, waiting to take its snapshot
--              (for writers in progress to finish, see README "Backups")
-- IN_PROGRESS  scanning and writing objects
-- COMPLETED    manifest written: a restore point
-- FAILED       stopped by an error or a crash; its objects are removed
-- CANCELLED    stopped by cancel_backup or schedule.maxDurationMinutes; objects removed
-- CORRUPTED    a verification found damage
-- EXPIRED      past retention, still stored (retention issue)
-- DELETED      its objects are gone from storage
CREATE TYPE @extschema@.snapshot_status AS ENUM
	('PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED', 'CORRUPTED', 'EXPIRED', 'DELETED');

CREATE SEQUENCE @extschema@.backup_snapshot_number_seq;

CREATE TABLE @extschema@.backup_snapshot (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid NOT NULL,
	configuration_id uuid NOT NULL REFERENCES @extschema@.backup_configuration (id),
	snapshot_number text NOT NULL UNIQUE
		DEFAULT 'BKP-' OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.nextval('@extschema@.backup_snapshot_number_seq')::text, 8, '0'),
	backup_type @extschema@.backup_type NOT NULL,
	requested_type @extschema@.backup_type NOT NULL,
	status @extschema@.snapshot_status NOT NULL DEFAULT 'PENDING',
	status_reason text,
	status_changed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	trigger text NOT NULL
		CONSTRAINT trigger_known CHECK (trigger IN ('MANUAL', 'SCHEDULE')),
	parent_snapshot_id uuid REFERENCES @extschema@.backup_snapshot (id),
	base_snapshot_id uuid REFERENCES @extschema@.backup_snapshot (id),
	requested_by name NOT NULL,
	requested_by_user uuid,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	started_at timestamptz,
	snapshot_time timestamptz,
	completed_at timestamptz,
	consistency jsonb,
	storage_location jsonb NOT NULL,
	manifest jsonb,
	checksum text,
	checksum_algorithm @extschema@.checksum_algorithm NOT NULL,
	encrypted boolean NOT NULL,
	compressed boolean NOT NULL,
	key_id text,
	data_metrics jsonb NOT NULL DEFAULT '{}',
	error jsonb,
	verification jsonb,
	verified_at timestamptz,
	worker_pid integer,
	CONSTRAINT parent_matches_type CHECK ((backup_type OPERATOR(pg_catalog.=) 'FULL') OPERATOR(pg_catalog.=) (parent_snapshot_id IS NULL))
);
COMMENT ON TABLE @extschema@.backup_snapshot IS
	'Backups (SPEC.md''s BackupSnapshot): one row per run of a configuration; the manifest in storage is the commit point';
COMMENT ON COLUMN @extschema@.backup_snapshot.parent_snapshot_id IS
	'INCREMENTAL: the previous snapshot of any type; DIFFERENTIAL: the last FULL; FULL: none';
COMMENT ON COLUMN @extschema@.backup_snapshot.base_snapshot_id IS 'The FULL snapshot the chain starts from (itself for a FULL)';
COMMENT ON COLUMN @extschema@.backup_snapshot.consistency IS
	'The consistency point: snapshot xmin and xmax, the WAL insert position when the snapshot was taken';
COMMENT ON COLUMN @extschema@.backup_snapshot.checksum IS 'Digest (checksum_algorithm) of the stored manifest object';

-- one configuration never runs twice at once
CREATE UNIQUE INDEX backup_snapshot_one_running
	ON @extschema@.backup_snapshot (configuration_id)
	WHERE status IN ('PENDING', 'IN_PROGRESS');
CREATE INDEX backup_snapshot_configuration
	ON @extschema@.backup_snapshot (configuration_id, created_at);
CREATE INDEX backup_snapshot_parent
	ON @extschema@.backup_snapshot (parent_snapshot_id);

-- The status machine of a snapshot, written down as data.
CREATE TABLE @extschema@.snapshot_status_transition (
	from_status @extschema@.snapshot_status NOT NULL,
	to_status @extschema@.snapshot_status NOT NULL,
	PRIMARY KEY (from_status, to_status)
);
INSERT INTO @extschema@.snapshot_status_transition VALUES
	('PENDING', 'IN_PROGRESS'), ('PENDING', 'FAILED'), ('PENDING', 'CANCELLED'),
	('IN_PROGRESS', 'COMPLETED'), ('IN_PROGRESS', 'FAILED'), ('IN_PROGRESS', 'CANCELLED'),
	('COMPLETED', 'CORRUPTED'), ('COMPLETED', 'EXPIRED'), ('COMPLETED', 'DELETED'),
	('CORRUPTED', 'COMPLETED'), ('CORRUPTED', 'EXPIRED'), ('CORRUPTED', 'DELETED'),
	('EXPIRED', 'DELETED'),
	('FAILED', 'DELETED'), ('CANCELLED', 'DELETED');

-- Keeps a snapshot row honest: what identifies it never changes, its
-- status moves only along snapshot_status_transition, and a committed
-- snapshot's manifest is fixed.
CREATE FUNCTION @extschema@.backup_snapshot_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
BEGIN
	IF TG_OP = 'INSERT' THEN
		-- import_repository alone (its flag, 77_repository.sql) records
		-- snapshots that are COMPLETED already: those it verified in storage
		IF NEW.status <> 'PENDING'
		   AND NOT (NEW.status = 'COMPLETED' AND NEW.manifest IS NOT NULL AND NEW.checksum IS NOT NULL
					AND @extschema@.repository_importer() IS NOT NULL) THEN
			RAISE EXCEPTION 'invalid status: a new snapshot cannot be %', NEW.status
				USING ERRCODE = '23514', HINT = 'Snapshots start PENDING.';
		END IF;
		NEW.status_changed_at := now();
		RETURN NEW;
	END IF;
	IF NEW.id <> OLD.id OR NEW.organization_id <> OLD.organization_id
	   OR NEW.configuration_id <> OLD.configuration_id OR NEW.snapshot_number <> OLD.snapshot_number
	   OR NEW.backup_type <> OLD.backup_type OR NEW.requested_type <> OLD.requested_type
	   OR NEW.trigger <> OLD.trigger
	   OR NEW.parent_snapshot_id IS DISTINCT FROM OLD.parent_snapshot_id
	   OR NEW.base_snapshot_id IS DISTINCT FROM OLD.base_snapshot_id
	   OR NEW.requested_by <> OLD.requested_by OR NEW.created_at <> OLD.created_at THEN
		RAISE EXCEPTION 'the identity of snapshot % cannot change', OLD.snapshot_number
			USING ERRCODE = '23514', HINT = 'Only status, results and verification of a snapshot change.';
	END IF;
	IF OLD.status NOT IN ('PENDING', 'IN_PROGRESS')
	   AND (NEW.manifest IS DISTINCT FROM OLD.manifest OR NEW.checksum IS DISTINCT FROM OLD.checksum
			OR NEW.storage_location IS DISTINCT FROM OLD.storage_location) THEN
		RAISE EXCEPTION 'the manifest of snapshot % cannot change', OLD.snapshot_number
			USING ERRCODE = '23514', HINT = 'A finished snapshot''s manifest, checksum and location are fixed.';
	END IF;
	IF NEW.status <> OLD.status THEN
		PERFORM @extschema@.check_status_transition('@extschema@.snapshot_status_transition'::regclass, 'snapshot ' || OLD.snapshot_number,
			OLD.status, NEW.status, '23514');
		IF NEW.status = 'COMPLETED' AND OLD.status = 'IN_PROGRESS' AND NEW.manifest IS NULL THEN
			RAISE EXCEPTION 'snapshot % cannot complete without a manifest', OLD.snapshot_number
				USING ERRCODE = '23514', HINT = 'The job worker completes a snapshot after writing its manifest.';
		END IF;
		NEW.status_changed_at := now();
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER backup_snapshot_guard
	BEFORE INSERT OR UPDATE ON @extschema@.backup_snapshot
	FOR EACH ROW EXECUTE FUNCTION @extschema@.backup_snapshot_guard();

CREATE TRIGGER backup_snapshot_audit
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.backup_snapshot
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_row_change('backup_snapshot');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.backup_snapshot', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.backup_snapshot_number_seq', '');

-- The tables a configuration's scope selects now: one row per table, with
-- the entity types it holds, the registry's filter columns (the backup keeps
-- only the configuration's organization's rows of a table with an
-- organization column) and flags.  Used by the job worker (as the
-- extension owner).
CREATE FUNCTION @extschema@.backup_scope_tables(configuration_id uuid)
RETURNS TABLE (relid oid, schema_name name, table_name name, entity_types text[],
			   client_id_column name, caregiver_id_column name, branch_id_column name,
			   date_column name, organization_column name,
			   contains_phi boolean, contains_pii boolean, contains_financial boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH c AS (
		SELECT b.organization_id, b.scope FROM @extschema@.backup_configuration b
		 WHERE b.id OPERATOR(pg_catalog.=) backup_scope_tables.configuration_id
	), selected AS (
		SELECT r.* FROM @extschema@.entity_registry r, c
		 WHERE (r.organization_id IS NULL OR r.organization_id OPERATOR(pg_catalog.=) c.organization_id)
		   AND (NOT c.scope OPERATOR(pg_catalog.?) 'includeEntities'
				OR r.entity_type OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text(c.scope OPERATOR(pg_catalog.->) 'includeEntities'))))
		   AND NOT r.entity_type OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.jsonb_array_elements_text(coalesce(c.scope OPERATOR(pg_catalog.->) 'excludeEntities', '[]'))))
	)
	SELECT s.table_name::oid, n.nspname, cl.relname,
		   pg_catalog.array_agg(s.entity_type ORDER BY s.entity_type),
		   (pg_catalog.array_agg(s.client_id_column ORDER BY s.entity_type) FILTER (WHERE s.client_id_column IS NOT NULL))[1],
		   (pg_catalog.array_agg(s.caregiver_id_column ORDER BY s.entity_type) FILTER (WHERE s.caregiver_id_column IS NOT NULL))[1],
		   (pg_catalog.array_agg(s.branch_id_column ORDER BY s.entity_type) FILTER (WHERE s.branch_id_column IS NOT NULL))[1],
		   (pg_catalog.array_agg(s.date_column ORDER BY s.entity_type) FILTER (WHERE s.date_column IS NOT NULL))[1],
		   (pg_catalog.array_agg(s.organization_column ORDER BY s.entity_type) FILTER (WHERE s.organization_column IS NOT NULL))[1],
		   pg_catalog.bool_or(s.contains_phi), pg_catalog.bool_or(s.contains_pii), pg_catalog.bool_or(s.contains_financial)
	  FROM selected s
	  JOIN pg_catalog.pg_class cl ON cl.oid OPERATOR(pg_catalog.=) s.table_name
	  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) cl.relnamespace
	 GROUP BY s.table_name, n.nspname, cl.relname
	 ORDER BY n.nspname, cl.relname
$$;

-- What it takes to recreate a table: columns (name, type as format_type
-- prints it, not null, default, collation, identity, generated),
-- constraints and indexes as pg_get_*def print them, the primary key, and
-- a fingerprint of all that.  Recorded per table in manifests.
CREATE FUNCTION @extschema@.table_definition(rel regclass)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH cols AS (
		SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
				   'name', a.attname,
				   'type', format_type(a.atttypid, a.atttypmod),
				   'typeSchema', tn.nspname,
				   'notNull', a.attnotnull,
				   'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
				   'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
				   'identity', CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END,
				   'collation', CASE WHEN a.attcollation <> t.typcollation THEN
									 (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
										FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
									   WHERE co.oid = a.attcollation) END))
				   ORDER BY a.attnum), '[]') AS columns
		  FROM pg_attribute a
		  JOIN pg_type t ON t.oid = a.atttypid
		  JOIN pg_namespace tn ON tn.oid = t.typnamespace
		  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		 WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
	), cons AS (
		SELECT coalesce(jsonb_agg(jsonb_build_object('name', c.conname, 'type', c.contype,
													 'definition', pg_get_constraintdef(c.oid))
								  ORDER BY c.contype, c.conname), '[]') AS constraints
		  FROM pg_constraint c WHERE c.conrelid = rel
	), idx AS (
		SELECT coalesce(jsonb_agg(jsonb_build_object('name', ic.relname, 'definition', pg_get_indexdef(i.indexrelid))
								  ORDER BY ic.relname), '[]') AS indexes
		  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
		 WHERE i.indrelid = rel
		   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = rel)
	), pk AS (
		SELECT jsonb_agg(a.attname ORDER BY k.ord) AS primary_key
		  FROM pg_index i
		  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		 WHERE i.indrelid = rel AND i.indisprimary
	), def AS (
		SELECT jsonb_build_object(
				   'schema', n.nspname, 'name', c.relname,
				   'persistence', CASE c.relpersistence WHEN 'u' THEN 'unlogged' ELSE 'permanent' END,
				   'columns', cols.columns, 'constraints', cons.constraints, 'indexes', idx.indexes,
				   'primaryKey', pk.primary_key) AS d
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, cols, cons, idx, pk
		 WHERE c.oid = rel
	)
	SELECT d || jsonb_build_object('fingerprint', encode(sha256(convert_to(d::text, 'UTF8')), 'hex')) FROM def
$$;

-- The chain that restores snapshot_id: its FULL first, then each child
-- down to snapshot_id itself.
CREATE FUNCTION @extschema@.snapshot_chain(snapshot_id uuid)
RETURNS SETOF @extschema@.backup_snapshot
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH RECURSIVE chain AS (
		SELECT s, 0 AS depth FROM @extschema@.backup_snapshot s WHERE s.id = snapshot_chain.snapshot_id
		UNION ALL
		SELECT p, chain.depth + 1
		  FROM chain JOIN @extschema@.backup_snapshot p ON p.id = (chain.s).parent_snapshot_id
	)
	SELECT (chain.s).* FROM chain ORDER BY depth DESC
$$;

-- run_backup(configuration_id, backup_type, wait) RETURNS uuid: run a
-- backup of the configuration now, in a job worker; NULL backup_type: the
-- configuration's own type.  With wait, returns when it has finished (an
-- ERROR when it failed) and reports progress as NOTICEs; without, returns
-- the snapshot id as soon as the worker has created it.
CREATE FUNCTION @extschema@.run_backup(configuration_id uuid, backup_type text DEFAULT NULL, wait boolean DEFAULT true)
RETURNS uuid
AS 'MODULE_PATHNAME', 'bo_run_backup_sql'
LANGUAGE C VOLATILE;

-- Ask the job worker running snapshot_id to stop; true when it was running.
CREATE FUNCTION @extschema@.cancel_backup(snapshot_id uuid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'bo_cancel_backup_sql'
LANGUAGE C STRICT VOLATILE;

-- Verify a snapshot: level 'checksums' (stored bytes, no key), 'decrypt'
-- (authentication and plaintext digests), 'restore' (materialise into a
-- scratch schema, compare with the manifest, drop it).
CREATE FUNCTION @extschema@.verify_snapshot(snapshot_id uuid, level text DEFAULT 'decrypt')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_verify_snapshot_sql'
LANGUAGE C VOLATILE;

-- The snapshot's chain materialised into a new schema (columns and rows,
-- no constraints or indexes), each table compared with the manifest: the
-- engine restores build on.  An ERROR leaves nothing behind.
CREATE FUNCTION @extschema@.materialize_snapshot(snapshot_id uuid, target_schema name)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_materialize_snapshot_sql'
LANGUAGE C VOLATILE;

-- The row count and rows digest a backup would record for a table now
-- (README "Backups: rows digest"): compare a live or restored table with a
-- manifest's tables[].rowsDigest.
CREATE FUNCTION @extschema@.rows_digest(rel regclass)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_rows_digest_sql'
LANGUAGE C STRICT STABLE;

-- Running backup jobs, in the manner of pg_stat_progress_*.  The function
-- returns only jobs of the caller's organizations (all for superusers and
-- all-organizations members); the view repeats the filter.
CREATE FUNCTION @extschema@.backup_progress_internal(
	OUT pid integer, OUT snapshot_id uuid, OUT configuration_id uuid, OUT organization_id uuid,
	OUT backup_type text, OUT phase text, OUT current_table text,
	OUT tables_done integer, OUT tables_total integer,
	OUT rows_done bigint, OUT bytes_done bigint, OUT bytes_total bigint,
	OUT stored_bytes bigint, OUT started_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'bo_backup_progress_sql'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW @extschema@.backup_progress WITH (security_barrier) AS
	SELECT p.pid, p.snapshot_id, s.snapshot_number, p.configuration_id, p.organization_id,
		   p.backup_type, p.phase, p.current_table, p.tables_done, p.tables_total,
		   p.rows_done, p.bytes_done, p.bytes_total, p.stored_bytes, p.started_at,
		   CASE WHEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) p.started_at THEN
				(p.bytes_done::numeric OPERATOR(pg_catalog./) GREATEST(extract(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) p.started_at), 0.001))::bigint
		   END AS bytes_per_second,
		   CASE WHEN p.bytes_done OPERATOR(pg_catalog.>) 0 AND p.bytes_total OPERATOR(pg_catalog.>) p.bytes_done THEN
				pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+)
				((pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) p.started_at)
				 OPERATOR(pg_catalog.*) ((p.bytes_total OPERATOR(pg_catalog.-) p.bytes_done)::float8 OPERATOR(pg_catalog./) p.bytes_done))
		   END AS estimated_completion
	  FROM @extschema@.backup_progress_internal() p
	  LEFT JOIN @extschema@.backup_snapshot s ON s.id OPERATOR(pg_catalog.=) p.snapshot_id
	 WHERE p.organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		OR (SELECT @extschema@.sees_all_organizations());

-- privileges and row-level security
REVOKE ALL ON @extschema@.backup_snapshot, @extschema@.snapshot_status_transition,
	@extschema@.backup_progress FROM PUBLIC;
REVOKE ALL ON FUNCTION
	@extschema@.backup_snapshot_guard(),
	@extschema@.backup_scope_tables(uuid),
	@extschema@.table_definition(regclass),
	@extschema@.snapshot_chain(uuid),
	@extschema@.rows_digest(regclass),
	@extschema@.run_backup(uuid, text, boolean),
	@extschema@.cancel_backup(uuid),
	@extschema@.verify_snapshot(uuid, text),
	@extschema@.materialize_snapshot(uuid, name),
	@extschema@.backup_progress_internal()
FROM PUBLIC;

GRANT SELECT ON @extschema@.backup_snapshot, @extschema@.snapshot_status_transition,
	@extschema@.backup_progress
TO backup_offline_admin, backup_offline_operator, backup_offline_approver,
   backup_offline_auditor, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.snapshot_chain(uuid),
	@extschema@.rows_digest(regclass),
	@extschema@.backup_progress_internal()
TO backup_offline_admin, backup_offline_operator, backup_offline_approver,
   backup_offline_auditor, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.run_backup(uuid, text, boolean),
	@extschema@.cancel_backup(uuid)
TO backup_offline_admin, backup_offline_operator, backup_offline_app;
GRANT EXECUTE ON FUNCTION @extschema@.verify_snapshot(uuid, text)
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor;
GRANT EXECUTE ON FUNCTION @extschema@.materialize_snapshot(uuid, name) TO backup_offline_admin;

ALTER TABLE @extschema@.backup_snapshot ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.backup_snapshot
	FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
