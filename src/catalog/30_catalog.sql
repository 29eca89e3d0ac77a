-- Catalog tables: organizations, the entity registry, compliance rules and
-- backup configurations.  Every row carries organization_id (NULL on the
-- shared, built-in rows of entity_registry and compliance_rule), created /
-- updated at and by, and a row version.  Row-level security and grants are
-- in 60_security.sql.

CREATE TYPE @extschema@.backup_config_type AS ENUM
	('FULL', 'INCREMENTAL', 'DIFFERENTIAL', 'CONTINUOUS');

-- Allowed transitions are in @extschema@.config_status_transition below.
CREATE TYPE @extschema@.backup_config_status AS ENUM
	('ACTIVE', 'PAUSED', 'SUSPENDED', 'DISABLED', 'ARCHIVED');

CREATE TYPE @extschema@.checksum_algorithm AS ENUM ('SHA256', 'SHA512', 'BLAKE3');

CREATE TYPE @extschema@.storage_type AS ENUM
	('LOCAL_FILESYSTEM', 'NETWORK_SHARE', 'AWS_S3', 'AZURE_BLOB',
	 'GOOGLE_CLOUD_STORAGE', 'SFTP', 'MULTI');

-- Which SQL roles act for which organizations.  organization_id NULL means
-- every organization (administrators, auditors, a pooled application role
-- that sets backup_offline.organization_id per request).
CREATE TABLE @extschema@.organization_member (
	role_name name NOT NULL,
	organization_id uuid,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by name NOT NULL DEFAULT CURRENT_USER
);
CREATE UNIQUE INDEX organization_member_key
	ON @extschema@.organization_member (role_name, organization_id) NULLS NOT DISTINCT;

-- Entity types (CLIENT, VISIT, EVV_RECORD, ...) mapped to the tables that
-- hold them, with the columns that backup scopes filter on.
CREATE TABLE @extschema@.entity_registry (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid,
	entity_type text NOT NULL
		CONSTRAINT entity_type_format CHECK (entity_type OPERATOR(pg_catalog.~) '^[A-Z][A-Z0-9_]{0,62}$'),
	table_name regclass NOT NULL,
	key_columns name[] NOT NULL
		CONSTRAINT key_columns_present CHECK (pg_catalog.cardinality(key_columns) OPERATOR(pg_catalog.>) 0),
	client_id_column name,
	caregiver_id_column name,
	branch_id_column name,
	date_column name,
	organization_column name,
	modified_at_column name,
	contains_phi boolean NOT NULL DEFAULT false,
	contains_pii boolean NOT NULL DEFAULT false,
	contains_financial boolean NOT NULL DEFAULT false,
	description text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by uuid,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by uuid,
	version integer NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX entity_registry_type_key
	ON @extschema@.entity_registry (organization_id, entity_type) NULLS NOT DISTINCT;

-- Named regulations: minimum retention and the safeguards they require.
-- built_in rows ship with the extension and cannot be changed; stricter
-- terms go into an organization's own row for the same regulation.
-- Retention runs minimum_retention after the anchor event and, when
-- until_subject_age is set, at least until the record's subject reaches that
-- age: whichever is later.
CREATE TABLE @extschema@.compliance_rule (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid,
	regulation text NOT NULL
		CONSTRAINT regulation_format CHECK (regulation OPERATOR(pg_catalog.~) '^[A-Z][A-Z0-9_]{0,62}$'),
	name text NOT NULL,
	jurisdiction text NOT NULL,
	minimum_retention interval NOT NULL
		CONSTRAINT minimum_retention_nonnegative CHECK (minimum_retention OPERATOR(pg_catalog.>=) '0'::interval),
	retention_anchor text NOT NULL DEFAULT 'record creation',
	until_subject_age integer
		CONSTRAINT until_subject_age_range CHECK (until_subject_age BETWEEN 1 AND 120),
	requires_encryption boolean NOT NULL DEFAULT false,
	requires_audit_log boolean NOT NULL DEFAULT false,
	requires_integrity_check boolean NOT NULL DEFAULT false,
	source_citation text NOT NULL,
	source_url text,
	notes text,
	built_in boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by uuid,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by uuid,
	version integer NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX compliance_rule_regulation_key
	ON @extschema@.compliance_rule (organization_id, regulation) NULLS NOT DISTINCT;

-- Backup configurations (SPEC.md's BackupConfiguration).  The nested
-- objects are kept as validated, normalised jsonb in SPEC.md's camelCase
-- shape; every write goes through backup_configuration_guard (validation,
-- status transitions, version, next run) and is audited.
CREATE TABLE @extschema@.backup_configuration (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid NOT NULL,
	name text NOT NULL
		CONSTRAINT name_length CHECK (pg_catalog.char_length(name) BETWEEN 1 AND 255),
	description text
		CONSTRAINT description_length CHECK (pg_catalog.char_length(description) OPERATOR(pg_catalog.<=) 1000),
	config_type @extschema@.backup_config_type NOT NULL DEFAULT 'FULL',
	schedule jsonb NOT NULL,
	timezone text NOT NULL DEFAULT 'UTC',
	scope jsonb NOT NULL DEFAULT '{}',
	retention jsonb NOT NULL,
	storage_destination jsonb NOT NULL,
	encryption_enabled boolean NOT NULL DEFAULT true,
	compression_enabled boolean NOT NULL DEFAULT true,
	integrity_check_enabled boolean NOT NULL DEFAULT true,
	checksum_algorithm @extschema@.checksum_algorithm NOT NULL DEFAULT 'SHA256',
	notification_settings jsonb NOT NULL DEFAULT '{}',
	compliance_requirements jsonb NOT NULL DEFAULT '[]',
	status @extschema@.backup_config_status NOT NULL DEFAULT 'ACTIVE',
	status_reason text,
	status_changed_at timestamptz,
	next_backup_at timestamptz,
	last_backup_at timestamptz,
	consecutive_failures integer NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by uuid,
	created_by_role name NOT NULL DEFAULT CURRENT_USER,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by uuid,
	updated_by_role name NOT NULL DEFAULT CURRENT_USER,
	version integer NOT NULL DEFAULT 1,
	deleted_at timestamptz,
	deleted_by uuid
);
CREATE UNIQUE INDEX backup_configuration_name_key
	ON @extschema@.backup_configuration (organization_id, name) WHERE deleted_at IS NULL;
CREATE INDEX backup_configuration_due
	ON @extschema@.backup_configuration (next_backup_at)
	WHERE deleted_at IS NULL AND status OPERATOR(pg_catalog.=) 'ACTIVE';

-- The status machine of a backup configuration, written down as data.
CREATE TABLE @extschema@.config_status_transition (
	from_status @extschema@.backup_config_status NOT NULL,
	to_status @extschema@.backup_config_status NOT NULL,
	PRIMARY KEY (from_status, to_status)
);
INSERT INTO @extschema@.config_status_transition VALUES
	('ACTIVE', 'PAUSED'), ('ACTIVE', 'SUSPENDED'), ('ACTIVE', 'DISABLED'), ('ACTIVE', 'ARCHIVED'),
	('PAUSED', 'ACTIVE'), ('PAUSED', 'DISABLED'), ('PAUSED', 'ARCHIVED'),
	('SUSPENDED', 'ACTIVE'), ('SUSPENDED', 'DISABLED'), ('SUSPENDED', 'ARCHIVED'),
	('DISABLED', 'ACTIVE'), ('DISABLED', 'ARCHIVED');

-- pg_dump keeps what users added; the built-in rows come back with CREATE
-- EXTENSION (see 32_seed.sql).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.organization_member',
	'WHERE NOT (organization_id IS NULL AND role_name IN (''backup_offline_admin'', ''backup_offline_auditor''))');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.entity_registry', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.compliance_rule', 'WHERE NOT built_in');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.backup_configuration', '');
