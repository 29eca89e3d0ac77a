/*-------------------------------------------------------------------------
 *
 * repository.c
 *		Disaster recovery: the repository read from storage alone
 *		(repository_snapshots), and the catalog rebuilt from it on a fresh
 *		cluster (import_repository).
 *
 * DESIGN.md rule 1: a fresh cluster that has the key can list, verify and
 * restore every backup from storage alone; the catalog is an index.  The
 * repository describes itself:
 *
 *		<path>/backup_offline/<configuration id>/<snapshot id>/backup_manifest
 *
 * is a snapshot (rule 2: a snapshot exists when its manifest exists; a
 * directory without one is a backup that failed or never finished, and is
 * not listed).  A manifest is believed only when it verified: the archive
 * reader authenticates it (AEAD with the key in key_directory, frame
 * digests, trailer), its trailing self-checksum matches (manifest.c), it
 * says it is a manifest of this format and version, and the ids it holds
 * are those of the directory it lies in, and the organization it names at
 * its top is the one its configuration names.  A manifest that does not
 * verify is reported with its problem, never used; the objects a verified one
 * lists are looked up in the same listing (present, with the stored length
 * recorded) - the cheap half of verify_snapshot's 'checksums' level.
 *
 * Who sees what: manifests hold organization ids.  A caller sees the
 * manifests of the organizations it works on (current_organization_ids(),
 * or all of them with sees_all_organizations()), as row-level security
 * shows it catalog rows; a manifest that does not verify has no trusted
 * organization, so it is shown only to callers who see every organization,
 * or whose catalog holds its configuration (by the id in its path).
 *
 * The import runs in the caller's transaction, in three phases:
 *
 *	1. As the caller: the tables of the newest manifest of each
 *	   configuration that do not exist are created from their recorded
 *	   definitions (schema, columns with NOT NULL, collation, identity and
 *	   generated expressions, defaults, primary key, unique, check and
 *	   exclusion constraints, indexes; then foreign keys, once every table
 *	   exists).  They are the caller's own statements: the caller owns the
 *	   tables, and nothing runs with more rights than the caller has.  Each
 *	   definition is pasted into one statement that is parsed first and must
 *	   be exactly the one statement meant (a manifest of an unencrypted
 *	   repository is not authenticated: "CHECK (x); DROP ..." must not
 *	   run).  Each statement runs in a subtransaction: what cannot be
 *	   recreated is reported, not fatal.  From a manifest that is not
 *	   authenticated (no cipher), what would run later with the rights of
 *	   whoever writes the table is limited (see UNAUTHENTICATED_DETAIL):
 *	   only serial defaults, no generated column, checks and indexes that
 *	   call only pg_catalog functions that are not volatile.
 *	2. As the extension's owner, with the import flag set (below): per
 *	   configuration, in a subtransaction: the entity types it needs when
 *	   missing (only for tables the caller may read, of ordinary schemas:
 *	   the caller's rights are checked here, since the registry's own check
 *	   sees the owner's; an entity type the registry maps to another table
 *	   refuses the configuration), its configuration row (the same id, so
 *	   the storage prefix matches; the organization of its manifests, which
 *	   must all name the same; PAUSED, so that neither the scheduler nor
 *	   run_backup writes into the repository before a DBA has decided that
 *	   this cluster is the one that backs up now), and a snapshot row for
 *	   every verified manifest, oldest first (so that every parent is there
 *	   before its children; one whose parent is missing is not imported).
 *	   Snapshots the catalog holds are skipped, so a second import changes
 *	   nothing.
 *	3. The snapshot number sequence moved past the imported numbers (done
 *	   first, in fact), last_backup_at, and one audit entry naming the
 *	   caller (when the import changed something).
 *
 * The import flag: snapshot rows are otherwise inserted PENDING only, by
 * the job worker (backup_snapshot_guard).  repository_importer() returns
 * the name of the role whose import_repository is writing in this
 * backend, NULL otherwise; the guard accepts a COMPLETED row with a
 * manifest and a checksum only while it is set, and the configuration
 * guard records that role as the creator.  The flag is a static variable
 * that only import_repository sets, around phase 2 alone, and clears
 * however it ends: no SQL can set it, no other session sees it, and no
 * statement taken from a manifest runs while it is set.  Every row the
 * import writes goes through the guards and audit triggers as usual.
 *
 * What an imported snapshot row cannot know, it says: trigger MANUAL and
 * requested_by the importing role (the manifest records neither),
 * completed_at its snapshot time, status_reason "imported from the
 * repository", consistency without the change threshold (the WAL positions
 * are another cluster's), no row index: the next INCREMENTAL copies every
 * table whole (snapshot.c: "the row index of the parent is missing on this
 * server").
 *
 * IDENTIFICATION
 *		src/restore/repository.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "backup_offline.h"
#include "backup/backup.h"
#include "restore/restore.h"
#include "storage/storage.h"

PG_FUNCTION_INFO_V1(bo_repository_snapshots_sql);
PG_FUNCTION_INFO_V1(bo_import_repository_sql);
PG_FUNCTION_INFO_V1(bo_repository_importer_sql);

/* where snapshots live, as object names go (bo_snapshot_prefix) */
#define REPO_ROOT "backup_offline/"
#define UUID_TEXT_LEN 36
/* the key wraps of an object: "<object>.key.<kek id>" (archive.h) */
#define KEY_SUFFIX ".key."
/* how many missing objects a problem names */
#define MISSING_NAMED 3

/* the import flag (see the file comment) */
static bool importing = false;
static char importer[NAMEDATALEN];

/* one manifest found in storage */
typedef struct RepoSnapshot
{
	char	   *name;			/* the manifest object */
	char		configuration_id[UUID_TEXT_LEN + 1];	/* from the object name */
	char		snapshot_id[UUID_TEXT_LEN + 1];
	uint64		manifest_bytes; /* stored size of the manifest object */
	List	   *key_ids;		/* of its key wraps (char *) */
	bool		valid;			/* the manifest verified */
	bool		authenticated;	/* it was encrypted: the AEAD authenticated it */
	ErrorData  *error;			/* why it did not */
	/* from a verified manifest */
	Jsonb	   *manifest;		/* kept for the import only */
	char	   *number;
	char	   *organization_id;
	char	   *configuration_name;
	char	   *backup_type;
	char	   *parent_id;
	char	   *base_id;
	TimestampTz snapshot_time;
	int			table_count;
	uint64		row_count;
	uint64		stored_bytes;	/* the objects and the manifest */
	int			missing;		/* listed objects absent or of another size */
	char	   *missing_names;	/* the first few of them */
	char	   *checksum;		/* the import: digest of the stored manifest */
	/* what the caller sees of it */
	bool		visible;
	bool		in_catalog;
} RepoSnapshot;

/* what reading the repository needs */
typedef struct RepoScan
{
	BoStorage  *storage;
	BoStorageEntry **entries;	/* every object under REPO_ROOT, by name */
	int			nentries;
	bool		import;			/* keep manifests, compute checksums */
} RepoScan;

/* the caller's organizations */
typedef struct RepoVisibility
{
	bool		all;
	char	   *organizations;	/* uuids, comma-separated */
} RepoVisibility;

/* ---------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------
 */

/* column col (1-based) of SPI result row r as text, or NULL */
static char *
spi_value(uint64 r, int col)
{
	return r < SPI_processed ? SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, col) : NULL;
}

/* is text a lower-case uuid as uuid_out prints it? */
static bool
is_uuid_text(const char *s, size_t len)
{
	size_t		i;

	if (len != UUID_TEXT_LEN)
		return false;
	for (i = 0; i < len; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

/* a uuid Datum from its text */
static Datum
uuid_datum(const char *s)
{
	return DirectFunctionCall1(uuid_in, CStringGetDatum(s));
}

/* a text Datum, or SQL NULL for NULL */
static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = s == NULL;
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* a uuid Datum, or SQL NULL for NULL */
static Datum
uuid_or_null(const char *s, bool *isnull)
{
	*isnull = s == NULL;
	return s ? uuid_datum(s) : (Datum) 0;
}

/*
 * Run fn(arg) in a subtransaction; true when it succeeded, else false with
 * its error in *error (allocated in errcxt; the subtransaction rolled
 * back).  fn allocates in the caller's memory context, which outlives the
 * subtransaction.
 */
static bool
try_subtransaction(void (*fn) (void *arg), void *arg, MemoryContext errcxt, ErrorData **error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(errcxt);
		*error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* the text of an error for a report: its message, and its detail */
static char *
error_text(ErrorData *e)
{
	if (e->detail != NULL)
		return psprintf("%s (%s)", e->message, e->detail);
	return pstrdup(e->message);
}

/* append {"object": ..., key: text} to a JSON array's members */
static void
add_item(StringInfo list, const char *object, const char *key, const char *text)
{
	if (list->len > 0)
		appendStringInfoString(list, ", ");
	appendStringInfoChar(list, '{');
	bo_json_add_text(list, "object", object);
	bo_json_add_text(list, key, text);
	appendStringInfoChar(list, '}');
}

/* append a JSON string to a JSON array's members */
static void
add_string(StringInfo list, const char *value)
{
	if (list->len > 0)
		appendStringInfoString(list, ", ");
	escape_json(list, value);
}

/* the elements of a JSON array of strings */
static List *
string_elements(JsonbContainer *array)
{
	List	   *out = NIL;
	ListCell   *lc;

	foreach(lc, bo_jelements(array))
	{
		JsonbValue *v = lfirst(lc);

		if (v->type == jbvString)
			out = lappend(out, pnstrdup(v->val.string.val, v->val.string.len));
	}
	return out;
}

/* ---------------------------------------------------------------------
 * Reading the repository
 * ---------------------------------------------------------------------
 */

/* listed objects by name, for qsort and bsearch */
static int
entry_name_cmp(const void *a, const void *b)
{
	return strcmp((*(BoStorageEntry *const *) a)->name, (*(BoStorageEntry *const *) b)->name);
}

/* the listed object called name, or NULL */
static BoStorageEntry *
find_entry(RepoScan *scan, const char *name)
{
	BoStorageEntry key;
	BoStorageEntry *keyp = &key;
	BoStorageEntry **found;

	key.name = (char *) name;
	found = bsearch(&keyp, scan->entries, scan->nentries, sizeof(BoStorageEntry *), entry_name_cmp);
	return found ? *found : NULL;
}

/*
 * Is name "backup_offline/<uuid>/<uuid>/backup_manifest<suffix>"?  Sets
 * the two ids and *suffix.
 */
static bool
parse_manifest_name(const char *name, char *configuration_id, char *snapshot_id, const char **suffix)
{
	const char *p = name;

	if (strncmp(p, REPO_ROOT, strlen(REPO_ROOT)) != 0)
		return false;
	p += strlen(REPO_ROOT);
	if (strlen(p) < 2 * (UUID_TEXT_LEN + 1) || !is_uuid_text(p, UUID_TEXT_LEN) || p[UUID_TEXT_LEN] != '/')
		return false;
	memcpy(configuration_id, p, UUID_TEXT_LEN);
	configuration_id[UUID_TEXT_LEN] = '\0';
	p += UUID_TEXT_LEN + 1;
	if (!is_uuid_text(p, UUID_TEXT_LEN) || p[UUID_TEXT_LEN] != '/')
		return false;
	memcpy(snapshot_id, p, UUID_TEXT_LEN);
	snapshot_id[UUID_TEXT_LEN] = '\0';
	p += UUID_TEXT_LEN + 1;
	if (strncmp(p, BO_MANIFEST_NAME, strlen(BO_MANIFEST_NAME)) != 0)
		return false;
	*suffix = p + strlen(BO_MANIFEST_NAME);
	return true;
}

/* a required uuid member of a manifest, or an error; NULL when absent and optional */
static char *
manifest_uuid(JsonbContainer *root, const char *key, bool required, const char *name)
{
	char	   *v = bo_jstr(root, key);

	if (v == NULL && !required && (bo_jget(root, key) == NULL || bo_jget(root, key)->type == jbvNull))
		return NULL;
	if (v == NULL || !is_uuid_text(v, strlen(v)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest \"%s\" has no valid %s", name, key)));
	return v;
}

/* the digest, in hex, of the stored bytes of object name */
static char *
stored_digest(BoStorage *storage, const char *name, BoDigestAlgorithm alg)
{
	BoDigest   *d = bo_digest_create(alg);
	char	   *buf = palloc(1024 * 1024);
	uint8		out[BO_DIGEST_MAX_LENGTH];
	uint64		offset = 0;
	size_t		n;
	int			len;

	while ((n = bo_storage_get(storage, name, offset, buf, 1024 * 1024)) > 0)
	{
		CHECK_FOR_INTERRUPTS();
		bo_digest_update(d, buf, n);
		offset += n;
	}
	len = bo_digest_final(d, out);
	bo_digest_free(d);
	pfree(buf);
	return bo_hex(out, len);
}

/* what read_manifest works on */
typedef struct RepoRead
{
	RepoScan   *scan;
	RepoSnapshot *s;
} RepoRead;

/*
 * Read and verify one manifest, and take what the listing and the import
 * need from it.  Raises an error for anything that does not verify.
 */
static void
read_manifest(void *arg)
{
	RepoRead   *r = arg;
	RepoSnapshot copy = *r->s;	/* *r->s changes only when all verified */
	RepoSnapshot *s = &copy;
	size_t		len;
	char	   *text = bo_manifest_read(r->scan->storage, s->name, &len, &s->authenticated);
	Jsonb	   *m = bo_manifest_parse(text, len, psprintf("manifest \"%s\"", s->name));
	JsonbContainer *root = &m->root;
	JsonbContainer *config;
	char	   *v;
	char	   *when;
	JsonbContainer *totals;
	ListCell   *lc;
	StringInfoData missing;
	BoDigestAlgorithm alg;

	pfree(text);
	v = bo_jstr(root, "format");
	if (v == NULL || strcmp(v, "backup_offline snapshot manifest") != 0 ||
		bo_jnum(root, "manifestVersion") != BO_MANIFEST_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest \"%s\" is not a backup_offline snapshot manifest of version %d",
						s->name, BO_MANIFEST_VERSION)));
	/* it must be the manifest of the snapshot whose place it takes */
	if (strcmp(manifest_uuid(root, "snapshotId", true, s->name), s->snapshot_id) != 0 ||
		strcmp(manifest_uuid(root, "configurationId", true, s->name), s->configuration_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest \"%s\" names snapshot %s of configuration %s: it lies elsewhere",
						s->name, bo_jstr(root, "snapshotId"), bo_jstr(root, "configurationId"))));
	s->organization_id = manifest_uuid(root, "organizationId", true, s->name);
	/*
	 * The organization is written twice: at the top, which decides who sees
	 * and imports the manifest, and in the configuration, which the import
	 * makes the configuration row of.  backup_offline writes the same id in
	 * both; a manifest where they differ would put a configuration into an
	 * organization its reader was never shown.
	 */
	config = bo_jcontainer(root, "configuration");
	if (config != NULL &&
		(bo_jstr(config, "organizationId") == NULL || strcmp(bo_jstr(config, "organizationId"), s->organization_id) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest \"%s\" is of organization %s, its configuration of %s",
						s->name, s->organization_id,
						bo_jstr(config, "organizationId") ? bo_jstr(config, "organizationId") : "none"),
				 errdetail("backup_offline writes the same organization in both places.")));
	s->parent_id = manifest_uuid(root, "parentSnapshotId", false, s->name);
	s->base_id = manifest_uuid(root, "baseSnapshotId", false, s->name);
	s->number = bo_jstr(root, "snapshotNumber");
	s->backup_type = bo_jstr(root, "backupType");
	if (s->number == NULL || s->backup_type == NULL ||
		(strcmp(s->backup_type, "FULL") != 0 && strcmp(s->backup_type, "INCREMENTAL") != 0 &&
		 strcmp(s->backup_type, "DIFFERENTIAL") != 0) ||
		(strcmp(s->backup_type, "FULL") == 0) != (s->parent_id == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest \"%s\" has no valid snapshotNumber, backupType and parentSnapshotId", s->name)));
	when = bo_jstr(root, "snapshotTime");
	if (when == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest \"%s\" has no snapshotTime", s->name)));
	s->snapshot_time = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(when),
															   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	if (config != NULL)
		s->configuration_name = bo_jstr(config, "name");
	totals = bo_jcontainer(root, "totals");
	s->row_count = totals ? bo_jnum(totals, "rowCount") : 0;
	s->stored_bytes = (totals ? bo_jnum(totals, "storedBytes") : 0) + s->manifest_bytes;

	/* every object it lists, in the listing with its stored length */
	initStringInfo(&missing);
	foreach(lc, bo_jelements(bo_jcontainer(root, "tables")))
	{
		JsonbContainer *t = ((JsonbValue *) lfirst(lc))->val.binary.data;
		ListCell   *lc2;

		s->table_count++;
		foreach(lc2, bo_jelements(bo_jcontainer(t, "objects")))
		{
			JsonbContainer *o = ((JsonbValue *) lfirst(lc2))->val.binary.data;
			char	   *oname = bo_jstr(o, "name");
			BoStorageEntry *e = oname ? find_entry(r->scan, oname) : NULL;

			if (e != NULL && e->size == bo_jnum(o, "storedLength"))
				continue;
			if (s->missing++ < MISSING_NAMED)
				appendStringInfo(&missing, "%s%s%s", missing.len > 0 ? ", " : "",
								 oname ? oname : "(an object without a name)",
								 e == NULL ? "" : psprintf(" (" UINT64_FORMAT " bytes, the manifest says " UINT64_FORMAT ")",
														   e->size, bo_jnum(o, "storedLength")));
		}
	}
	if (s->missing > 0)
		s->missing_names = missing.data;

	/* the configuration's checksumAlgorithm, which the catalog's checksum uses */
	v = bo_jstr(root, "digestAlgorithm");
	if (v == NULL || (strcmp(v, "SHA256") != 0 && strcmp(v, "SHA512") != 0 && strcmp(v, "BLAKE3") != 0) ||
		!bo_digest_parse(v, &alg))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest \"%s\" has no valid digestAlgorithm", s->name)));
	if (r->scan->import)
	{
		s->checksum = stored_digest(r->scan->storage, s->name, alg);
		s->manifest = m;
	}
	else
		pfree(m);
	s->valid = true;
	*r->s = copy;
}

/* snapshots with a verified manifest first, by snapshot time, then by object name */
static int
snapshot_cmp(const ListCell *a, const ListCell *b)
{
	RepoSnapshot *x = lfirst(a);
	RepoSnapshot *y = lfirst(b);

	if (x->valid != y->valid)
		return x->valid ? -1 : 1;
	if (x->valid && x->snapshot_time != y->snapshot_time)
		return x->snapshot_time < y->snapshot_time ? -1 : 1;
	return strcmp(x->name, y->name);
}

/*
 * Every snapshot manifest under the destination (a List of RepoSnapshot),
 * each read and verified (or not, with its error), in snapshot_cmp order.
 */
static List *
scan_repository(BoStorage *storage, bool import)
{
	RepoScan	scan;
	List	   *entries = bo_storage_list(storage, REPO_ROOT);
	List	   *snapshots = NIL;
	RepoSnapshot *last = NULL;
	ListCell   *lc;
	int			i = 0;

	scan.storage = storage;
	scan.import = import;
	scan.nentries = list_length(entries);
	scan.entries = palloc(sizeof(BoStorageEntry *) * Max(scan.nentries, 1));
	foreach(lc, entries)
	{
		BoStorageEntry *e = lfirst(lc);
		char		configuration_id[UUID_TEXT_LEN + 1];
		char		snapshot_id[UUID_TEXT_LEN + 1];
		const char *suffix;

		scan.entries[i++] = e;
		if (!parse_manifest_name(e->name, configuration_id, snapshot_id, &suffix))
			continue;
		if (suffix[0] == '\0')
		{
			last = palloc0(sizeof(RepoSnapshot));
			last->name = e->name;
			memcpy(last->configuration_id, configuration_id, sizeof(configuration_id));
			memcpy(last->snapshot_id, snapshot_id, sizeof(snapshot_id));
			last->manifest_bytes = e->size;
			snapshots = lappend(snapshots, last);
		}
		/* names sort "backup_manifest" before its "backup_manifest.key.<kek>" */
		else if (strncmp(suffix, KEY_SUFFIX, strlen(KEY_SUFFIX)) == 0 && last != NULL &&
				 strncmp(e->name, last->name, strlen(last->name)) == 0)
			last->key_ids = lappend(last->key_ids, pstrdup(suffix + strlen(KEY_SUFFIX)));
	}
	qsort(scan.entries, scan.nentries, sizeof(BoStorageEntry *), entry_name_cmp);

	foreach(lc, snapshots)
	{
		RepoSnapshot *s = lfirst(lc);
		RepoRead	r = {&scan, s};

		CHECK_FOR_INTERRUPTS();
		(void) try_subtransaction(read_manifest, &r, CurrentMemoryContext, &s->error);
	}
	list_sort(snapshots, snapshot_cmp);
	return snapshots;
}

/* the caller's organizations (as row-level security sees them) */
static void
read_visibility(RepoVisibility *vis)
{
	bo_spi_exec("SELECT backup_offline.sees_all_organizations(), "
			"       array_to_string(backup_offline.current_organization_ids(), ',')", 0, NULL, false, 0);
	vis->all = strcmp(spi_value(0, 1), "t") == 0;
	vis->organizations = spi_value(0, 2);
	if (vis->organizations == NULL)
		vis->organizations = "";
}

/* does the caller work on organization? */
static bool
organization_visible(RepoVisibility *vis, const char *organization)
{
	return vis->all || (organization != NULL && strstr(vis->organizations, organization) != NULL);
}

/* '{id,id,...}' of the snapshots' configuration or snapshot ids */
static char *
id_array(List *snapshots, bool configurations)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	foreach(lc, snapshots)
	{
		RepoSnapshot *r = lfirst(lc);

		appendStringInfo(&s, "%s%s", lc == list_head(snapshots) ? "" : ",",
						 configurations ? r->configuration_id : r->snapshot_id);
	}
	appendStringInfoChar(&s, '}');
	return s.data;
}

/*
 * What the caller may see, as the caller: the organization of a manifest
 * that did not verify and the name of its configuration from the catalog
 * (when row-level security shows it), visibility, and whether the catalog
 * holds each snapshot.
 */
static void
apply_visibility(List *snapshots, RepoVisibility *vis)
{
	const char *args[1];
	ListCell   *lc;
	uint64		i;

	args[0] = id_array(snapshots, true);
	bo_spi_exec("SELECT c.id::text, c.organization_id::text, c.name "
			"  FROM backup_offline.backup_configuration c WHERE c.id = ANY ($1::uuid[])", 1, args, false, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *id = spi_value(i, 1);

		foreach(lc, snapshots)
		{
			RepoSnapshot *s = lfirst(lc);

			if (strcmp(s->configuration_id, id) != 0 || s->valid)
				continue;
			s->organization_id = spi_value(i, 2);
			s->configuration_name = spi_value(i, 3);
		}
	}
	foreach(lc, snapshots)
	{
		RepoSnapshot *s = lfirst(lc);

		s->visible = s->organization_id != NULL ? organization_visible(vis, s->organization_id) : vis->all;
	}

	args[0] = id_array(snapshots, false);
	bo_spi_exec("SELECT s.id::text FROM backup_offline.backup_snapshot s WHERE s.id = ANY ($1::uuid[])", 1, args, false, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *id = spi_value(i, 1);

		foreach(lc, snapshots)
		{
			RepoSnapshot *s = lfirst(lc);

			if (strcmp(s->snapshot_id, id) == 0)
				s->in_catalog = true;
		}
	}
}

/* the problem column of a listed snapshot */
static char *
snapshot_problem(RepoSnapshot *s)
{
	if (!s->valid)
		return error_text(s->error);
	if (s->missing > 0)
		return psprintf("%d object%s listed in the manifest %s missing or of another size: %s%s",
						s->missing, s->missing == 1 ? "" : "s", s->missing == 1 ? "is" : "are",
						s->missing_names, s->missing > MISSING_NAMED ? ", ..." : "");
	return NULL;
}

/*
 * repository_snapshots(storage jsonb) RETURNS TABLE (snapshot_id uuid,
 *     snapshot_number text, configuration_id uuid, configuration_name text,
 *     organization_id uuid, backup_type text, parent_snapshot_id uuid,
 *     base_snapshot_id uuid, snapshot_time timestamptz, table_count integer,
 *     row_count bigint, stored_bytes bigint, key_ids text[],
 *     manifest_valid boolean, missing_objects integer, problem text,
 *     in_catalog boolean, manifest_object text)
 *
 * Every snapshot manifest in storage the caller may see, read and verified
 * without the catalog; a manifest that does not verify is a row with its
 * problem, not an error.
 */
Datum
bo_repository_snapshots_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BoStorage  *storage;
	List	   *snapshots;
	RepoVisibility vis;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	/* validated and confined as configurations' destinations are; NULL is an error there */
	storage = bo_storage_open(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	read_visibility(&vis);
	snapshots = scan_repository(storage, false);
	if (snapshots != NIL)
		apply_visibility(snapshots, &vis);

	foreach(lc, snapshots)
	{
		RepoSnapshot *s = lfirst(lc);
		Datum		values[18];
		bool		nulls[18];
		char	   *problem = snapshot_problem(s);
		int			n = list_length(s->key_ids);
		Datum	   *keys = palloc(sizeof(Datum) * Max(n, 1));
		int			k = 0;
		ListCell   *lc2;

		if (!s->visible)
			continue;
		memset(nulls, 0, sizeof(nulls));
		foreach(lc2, s->key_ids)
			keys[k++] = CStringGetTextDatum(lfirst(lc2));

		values[0] = uuid_datum(s->snapshot_id);
		values[1] = text_or_null(s->number, &nulls[1]);
		values[2] = uuid_datum(s->configuration_id);
		values[3] = text_or_null(s->configuration_name, &nulls[3]);
		values[4] = uuid_or_null(s->organization_id, &nulls[4]);
		values[5] = text_or_null(s->backup_type, &nulls[5]);
		values[6] = uuid_or_null(s->parent_id, &nulls[6]);
		values[7] = uuid_or_null(s->base_id, &nulls[7]);
		/* what only a verified manifest tells is NULL for the others */
		values[8] = TimestampTzGetDatum(s->snapshot_time);
		values[9] = Int32GetDatum(s->table_count);
		values[10] = Int64GetDatum((int64) s->row_count);
		nulls[8] = nulls[9] = nulls[10] = !s->valid;
		values[11] = Int64GetDatum((int64) (s->valid ? s->stored_bytes : s->manifest_bytes));
		values[12] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
		values[13] = BoolGetDatum(s->valid);
		values[14] = Int32GetDatum(s->missing);
		nulls[14] = !s->valid;
		values[15] = text_or_null(problem, &nulls[15]);
		values[16] = BoolGetDatum(s->in_catalog);
		values[17] = CStringGetTextDatum(s->name);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * repository_importer() RETURNS name: the role whose import_repository is
 * writing the catalog in this backend, else NULL (the guards' import flag).
 */
Datum
bo_repository_importer_sql(PG_FUNCTION_ARGS)
{
	if (!importing)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(namein, CStringGetDatum(importer)));
}

/* ---------------------------------------------------------------------
 * The import: planning
 * ---------------------------------------------------------------------
 */

/* one configuration of the repository */
typedef struct RepoConfig
{
	char	   *id;
	char	   *organization_id;
	char	   *name;
	List	   *snapshots;		/* verified, oldest first */
	RepoSnapshot *newest;
	char	   *conflict;		/* why it cannot be imported, found while planning */
} RepoConfig;

/* one table of the newest manifest of a configuration */
typedef struct RepoTable
{
	char	   *schema;
	char	   *name;
	char	   *qualified;		/* quoted */
	JsonbContainer *definition; /* from the newest manifest holding it */
	TimestampTz time;			/* that manifest's snapshot time */
	bool		authenticated;	/* that manifest was (see create_table_cb) */
	bool		existed;		/* before the import */
	bool		created;
} RepoTable;

/* the whole import */
typedef struct RepoImport
{
	MemoryContext cxt;			/* outlives SPI: results, errors */
	BoStorage  *storage;
	char	   *storage_json;	/* the normalised destination */
	char	   *caller;			/* role name */
	Oid			caller_id;		/* its oid: the rights that count */
	Oid			extension_schema;	/* the extension's own tables are not entities */
	List	   *configs;		/* RepoConfig */
	List	   *tables;			/* RepoTable */
	int			manifests;
	int			invalid;
	int			other_organizations;
	int			imported;
	int			skipped;
	int			not_imported;
	int			configurations_imported;
	/* the report: JSON array members */
	StringInfoData configurations;
	StringInfoData entity_types;
	StringInfoData schemas_created;
	StringInfoData tables_created;
	StringInfoData tables_existing;
	StringInfoData snapshots;
	StringInfoData problems;
	StringInfoData notes;
} RepoImport;

/* the configuration of the repository with that id, or NULL */
static RepoConfig *
find_config(RepoImport *im, const char *id)
{
	ListCell   *lc;

	foreach(lc, im->configs)
	{
		RepoConfig *c = lfirst(lc);

		if (strcmp(c->id, id) == 0)
			return c;
	}
	return NULL;
}

/* the configurations and the tables of their newest manifests */
static void
plan_import(RepoImport *im, List *snapshots)
{
	ListCell   *lc;

	/* snapshot_cmp order: verified ones first, oldest first */
	foreach(lc, snapshots)
	{
		RepoSnapshot *s = lfirst(lc);
		RepoConfig *c;

		if (!s->valid || !s->visible)
			continue;
		c = find_config(im, s->configuration_id);
		if (c == NULL)
		{
			c = palloc0(sizeof(RepoConfig));
			c->id = s->configuration_id;
			c->organization_id = s->organization_id;
			im->configs = lappend(im->configs, c);
		}
		/* one configuration, one organization: its rows and snapshots all get c's */
		if (strcmp(s->organization_id, c->organization_id) != 0 && c->conflict == NULL)
			c->conflict = psprintf("its manifests name two organizations, %s (the oldest) and %s (snapshot %s)",
								   c->organization_id, s->organization_id, s->number);
		c->snapshots = lappend(c->snapshots, s);
		c->newest = s;
		c->name = s->configuration_name;
	}

	foreach(lc, im->configs)
	{
		RepoConfig *c = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, bo_jelements(bo_jcontainer(&c->newest->manifest->root, "tables")))
		{
			JsonbContainer *e = ((JsonbValue *) lfirst(lc2))->val.binary.data;
			JsonbContainer *def = bo_jcontainer(e, "definition");
			char	   *schema = bo_jstr(e, "schema");
			char	   *name = bo_jstr(e, "name");
			RepoTable  *t = NULL;
			ListCell   *lc3;

			if (schema == NULL || name == NULL || def == NULL)
				continue;
			foreach(lc3, im->tables)
			{
				RepoTable  *x = lfirst(lc3);

				if (strcmp(x->schema, schema) == 0 && strcmp(x->name, name) == 0)
					t = x;
			}
			if (t == NULL)
			{
				t = palloc0(sizeof(RepoTable));
				t->schema = schema;
				t->name = name;
				t->qualified = quote_qualified_identifier(schema, name);
				im->tables = lappend(im->tables, t);
			}
			/* the newest definition, an authenticated one before any other */
			if (t->definition == NULL || (c->newest->authenticated && !t->authenticated) ||
				(c->newest->authenticated == t->authenticated && c->newest->snapshot_time > t->time))
			{
				t->definition = def;
				t->time = c->newest->snapshot_time;
				t->authenticated = c->newest->authenticated;
			}
		}
	}
}

/* ---------------------------------------------------------------------
 * Phase 1: tables, as the caller
 * ---------------------------------------------------------------------
 */

static void wrong_statement(const char *what, const char *sql) pg_attribute_noreturn();

/* the error for a statement that is not the one meant */
static void
wrong_statement(const char *what, const char *sql)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("the manifest's %s does not make the one statement meant", what),
			 errdetail("The statement would be: %s", sql),
			 errhint("The manifest is not as backup_offline writes it; recreate this by hand.")));
}

/*
 * Parse sql, which holds text taken from a manifest, and raise an error
 * unless it is exactly one statement of kind tag; returns it.  Restores
 * check the definitions they recreate with it too (restore.c).
 */
Node *
bo_restore_one_statement(const char *sql, NodeTag tag, const char *what)
{
	List	   *raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	Node	   *stmt = list_length(raw) == 1 ? ((RawStmt *) linitial(raw))->stmt : NULL;

	if (stmt == NULL || nodeTag(stmt) != tag)
		wrong_statement(what, sql);
	return stmt;
}

/* is rv the table t? */
static bool
is_table(RangeVar *rv, RepoTable *t)
{
	return rv != NULL && rv->schemaname != NULL && strcmp(rv->schemaname, t->schema) == 0 &&
		strcmp(rv->relname, t->name) == 0 && rv->catalogname == NULL;
}

/* run one checked DDL statement */
static void
run_ddl(const char *sql)
{
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not run: %s", sql);
	CommandCounterIncrement();
}

/*
 * Definitions from a manifest that is not authenticated.  An unencrypted
 * repository's manifests are checked by digests anybody who can write to
 * the repository can compute, so their definitions are a stranger's: a
 * default, a generated column, a check constraint or an index expression
 * runs later with the rights of whoever writes the table.  From such a
 * manifest, a default is recreated only when it is a serial column's
 * nextval() of its own sequence (created here), a generated column keeps
 * its table from being created (create_table_cb), and a check or exclusion
 * constraint or an index is recreated only when its expressions call
 * nothing but functions of pg_catalog that are not volatile, and cast to no
 * domain.  Expressions are checked once parsed, before the statement runs
 * (planning it could already call a function declared immutable).  Each
 * definition left out is a problem of the report, with its text, for a DBA
 * to review and recreate by hand.  Encrypted manifests are authenticated
 * by the AEAD with the key: their definitions are recreated as they are.
 */
#define UNAUTHENTICATED_DETAIL \
	"The repository is not encrypted: anybody who can write to it can write a manifest, " \
	"and what a definition calls runs with the rights of whoever writes the table."

/* the first function or domain an expression may not use, when not authenticated */
typedef struct RepoTrust
{
	Oid			function;
	Oid			domain;
} RepoTrust;

static bool
untrusted_function(Oid funcid, void *context)
{
	if (get_func_namespace(funcid) == PG_CATALOG_NAMESPACE && func_volatile(funcid) != PROVOLATILE_VOLATILE)
		return false;
	((RepoTrust *) context)->function = funcid;
	return true;
}

static bool
untrusted_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, untrusted_function, context))
		return true;
	/* a domain's own check constraints run on the cast */
	if (IsA(node, CoerceToDomain))
	{
		((RepoTrust *) context)->domain = ((CoerceToDomain *) node)->resulttype;
		return true;
	}
	return expression_tree_walker(node, untrusted_walker, context);
}

/*
 * Raise an error when raw, an expression of statement sql on table t,
 * calls a function outside pg_catalog or a volatile one, or casts to a
 * domain.  It is parsed here as the statement will parse it (the table and
 * the search path are the same), and nothing of it runs.
 */
static void
check_expression(const char *schema, const char *name, Node *raw, ParseExprKind kind, const char *sql)
{
	Relation	rel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Node	   *expr;
	RepoTrust	trust = {InvalidOid, InvalidOid};

	if (raw == NULL)
		return;
	rel = table_openrv(makeRangeVar(pstrdup(schema), pstrdup(name), -1), AccessShareLock);
	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = sql;
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock, NULL, false, true);
	addNSItemToQuery(pstate, nsitem, true, true, true);
	expr = transformExpr(pstate, copyObject(raw), kind);
	free_parsestate(pstate);
	table_close(rel, NoLock);
	if (!untrusted_walker(expr, &trust))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("it %s, and the manifest is not authenticated",
					OidIsValid(trust.function)
					? psprintf("calls %s%s", format_procedure(trust.function),
							   get_func_namespace(trust.function) == PG_CATALOG_NAMESPACE ? " (volatile)" : "")
					: psprintf("casts to domain %s", format_type_be(trust.domain))),
			 errdetail("%s Only functions of pg_catalog that are not volatile are called from its definitions. "
					   "The statement is: %s", UNAUTHENTICATED_DETAIL, sql),
			 errhint("Review the definition and recreate it by hand.")));
}

/* what a DDL step works on */
typedef struct RepoDdl
{
	RepoImport *im;
	RepoTable  *t;
	JsonbContainer *item;		/* a column, constraint or index of the definition */
	bool		schema_created; /* out */
} RepoDdl;

/* the schema when missing, and the table with its columns */
static void
create_table_cb(void *arg)
{
	RepoDdl    *d = arg;
	RepoTable  *t = d->t;
	StringInfoData sql;
	List	   *columns = bo_jelements(bo_jcontainer(t->definition, "columns"));
	char	   *persistence = bo_jstr(t->definition, "persistence");
	CreateStmt *stmt;
	ListCell   *lc;
	ListCell   *lc2;

	/*
	 * A generated column of a manifest that is not authenticated: the table
	 * is not created.  Created with a plain column instead, it would take
	 * no value from a restore (backups do not copy generated columns) and
	 * whatever an application writes, where the application expects the
	 * computed one: it is safer to let a DBA create the table after reading
	 * the expression.
	 */
	if (!t->authenticated)
	{
		foreach(lc, columns)
		{
			JsonbContainer *c = ((JsonbValue *) lfirst(lc))->val.binary.data;

			if (bo_jstr(c, "generated") != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("column %s is generated, and the manifest is not authenticated",
								bo_jstr(c, "name") ? quote_identifier(bo_jstr(c, "name")) : "(without a name)"),
						 errdetail("%s The expression is: %s", UNAUTHENTICATED_DETAIL, bo_jstr(c, "generated")),
						 errhint("Review the expression, create the table by hand (the manifest's definition) and import again.")));
		}
	}

	if (!OidIsValid(get_namespace_oid(t->schema, true)))
	{
		run_ddl(psprintf("CREATE SCHEMA %s", quote_identifier(t->schema)));
		d->schema_created = true;
	}
	if (columns == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the manifest's definition of table %s has no columns", t->qualified)));

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE %sTABLE %s (",
					 persistence && strcmp(persistence, "unlogged") == 0 ? "UNLOGGED " : "", t->qualified);
	foreach(lc, columns)
	{
		JsonbContainer *c = ((JsonbValue *) lfirst(lc))->val.binary.data;
		char	   *name = bo_jstr(c, "name");
		char	   *type = bo_jstr(c, "type");
		char	   *collation = bo_jstr(c, "collation");
		char	   *generated = bo_jstr(c, "generated");
		char	   *identity = bo_jstr(c, "identity");
		JsonbValue *nn = bo_jget(c, "notNull");

		if (name == NULL || type == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the manifest's definition of table %s has a column without a name or type", t->qualified)));
		appendStringInfo(&sql, "%s%s %s", lc == list_head(columns) ? "" : ", ", quote_identifier(name), type);
		if (collation)
			appendStringInfo(&sql, " COLLATE %s", collation);
		if (generated)
			appendStringInfo(&sql, " GENERATED ALWAYS AS (%s) STORED", generated);
		if (identity && (strcmp(identity, "ALWAYS") == 0 || strcmp(identity, "BY DEFAULT") == 0))
			appendStringInfo(&sql, " GENERATED %s AS IDENTITY", identity);
		if (nn != NULL && nn->type == jbvBool && nn->val.boolean)
			appendStringInfoString(&sql, " NOT NULL");
	}
	appendStringInfoChar(&sql, ')');

	/* exactly the columns meant, each with only what was asked for */
	stmt = (CreateStmt *) bo_restore_one_statement(sql.data, T_CreateStmt, psprintf("definition of table %s", t->qualified));
	if (!is_table(stmt->relation, t) || list_length(stmt->tableElts) != list_length(columns) ||
		stmt->inhRelations != NIL || stmt->partspec != NULL || stmt->partbound != NULL || stmt->ofTypename != NULL ||
		stmt->options != NIL || stmt->tablespacename != NULL || stmt->accessMethod != NULL || stmt->if_not_exists)
		wrong_statement(psprintf("definition of table %s", t->qualified), sql.data);
	forboth(lc, stmt->tableElts, lc2, columns)
	{
		ColumnDef  *cd = (ColumnDef *) lfirst(lc);
		ListCell   *lc3;

		if (!IsA(cd, ColumnDef) ||
			strcmp(cd->colname, bo_jstr(((JsonbValue *) lfirst(lc2))->val.binary.data, "name")) != 0)
			wrong_statement(psprintf("definition of table %s", t->qualified), sql.data);
		foreach(lc3, cd->constraints)
		{
			Constraint *con = lfirst(lc3);

			if (con->contype != CONSTR_NOTNULL && con->contype != CONSTR_GENERATED &&
				con->contype != CONSTR_IDENTITY)
				wrong_statement(psprintf("definition of column %s of table %s", cd->colname, t->qualified), sql.data);
		}
	}
	run_ddl(sql.data);
}

/*
 * A column default: "nextval('<sequence>'::regclass)" (a serial column)
 * first creates the sequence when it is missing.  From a manifest that is
 * not authenticated, only that default is recreated, and only when the
 * sequence is in the table's schema and created here for the column (the
 * statement is then built from the sequence's name, not pasted).
 */
static void
column_default_cb(void *arg)
{
	RepoDdl    *d = arg;
	RepoTable  *t = d->t;
	char	   *column = bo_jstr(d->item, "name");
	char	   *type = bo_jstr(d->item, "type");
	char	   *expr = bo_jstr(d->item, "default");
	const char *head = "nextval('";
	const char *tail = "'::regclass)";
	List	   *seqnames = NIL;
	RangeVar   *rv = NULL;
	bool		created = false;
	char	   *sql;
	AlterTableStmt *stmt;
	AlterTableCmd *cmd;

	if (strncmp(expr, head, strlen(head)) == 0 && strlen(expr) > strlen(head) + strlen(tail) &&
		strcmp(expr + strlen(expr) - strlen(tail), tail) == 0)
	{
		seqnames = stringToQualifiedNameList(pnstrdup(expr + strlen(head), strlen(expr) - strlen(head) - strlen(tail)));
		rv = makeRangeVarFromNameList(seqnames);
	}
	if (!t->authenticated && (rv == NULL || list_length(seqnames) != 2 || strcmp(rv->schemaname, t->schema) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the manifest is not authenticated: of its defaults, only a serial column's nextval() "
						"of a sequence of the table's schema is recreated"),
				 errdetail("%s The default is: %s", UNAUTHENTICATED_DETAIL, expr),
				 errhint("Review the default and set it by hand (ALTER TABLE ... ALTER COLUMN ... SET DEFAULT).")));
	if (rv != NULL && rv->schemaname != NULL && !OidIsValid(RangeVarGetRelid(rv, NoLock, true)))
	{
		const char *as = strcmp(type, "smallint") == 0 || strcmp(type, "integer") == 0 ||
			strcmp(type, "bigint") == 0 ? psprintf(" AS %s", type) : "";

		sql = psprintf("CREATE SEQUENCE %s%s", quote_qualified_identifier(rv->schemaname, rv->relname), as);
		if (strcmp(rv->schemaname, t->schema) == 0)
			sql = psprintf("%s OWNED BY %s.%s", sql, t->qualified, quote_identifier(column));
		(void) bo_restore_one_statement(sql, T_CreateSeqStmt, "sequence");
		run_ddl(sql);
		created = true;
		add_item(&d->im->notes, psprintf("%s.%s", t->qualified, quote_identifier(column)), "note",
				 psprintf("sequence %s created for the column's default; it starts at 1: move it past the "
						  "restored rows (setval) before new rows use it",
						  quote_qualified_identifier(rv->schemaname, rv->relname)));
	}
	if (!t->authenticated)
	{
		if (!created)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("the manifest is not authenticated, and sequence %s exists already: it is not the column's own",
							quote_qualified_identifier(rv->schemaname, rv->relname)),
					 errdetail("%s The default is: %s", UNAUTHENTICATED_DETAIL, expr),
					 errhint("Review the default and set it by hand (ALTER TABLE ... ALTER COLUMN ... SET DEFAULT).")));
		expr = psprintf("nextval(%s::regclass)",
						quote_literal_cstr(quote_qualified_identifier(rv->schemaname, rv->relname)));
	}
	sql = psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", t->qualified, quote_identifier(column), expr);
	stmt = (AlterTableStmt *) bo_restore_one_statement(sql, T_AlterTableStmt, psprintf("default of column %s", column));
	cmd = list_length(stmt->cmds) == 1 ? linitial(stmt->cmds) : NULL;
	if (!is_table(stmt->relation, t) || cmd == NULL || cmd->subtype != AT_ColumnDefault ||
		strcmp(cmd->name, column) != 0)
		wrong_statement(psprintf("default of column %s", column), sql);
	run_ddl(sql);
}

/* a constraint: primary key, unique, check, exclusion or foreign key */
static void
add_constraint_cb(void *arg)
{
	RepoDdl    *d = arg;
	RepoTable  *t = d->t;
	char	   *name = bo_jstr(d->item, "name");
	char	   *type = bo_jstr(d->item, "type");
	char	   *sql = psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", t->qualified, quote_identifier(name),
							   bo_jstr(d->item, "definition"));
	AlterTableStmt *stmt = (AlterTableStmt *) bo_restore_one_statement(sql, T_AlterTableStmt, psprintf("constraint %s", name));
	AlterTableCmd *cmd = list_length(stmt->cmds) == 1 ? linitial(stmt->cmds) : NULL;
	Constraint *con = cmd && cmd->subtype == AT_AddConstraint && IsA(cmd->def, Constraint) ? (Constraint *) cmd->def : NULL;
	ConstrType	want = type[0] == 'p' ? CONSTR_PRIMARY : type[0] == 'u' ? CONSTR_UNIQUE :
		type[0] == 'c' ? CONSTR_CHECK : type[0] == 'x' ? CONSTR_EXCLUSION : CONSTR_FOREIGN;
	ListCell   *lc;

	if (!is_table(stmt->relation, t) || con == NULL || con->contype != want)
		wrong_statement(psprintf("constraint %s", name), sql);
	/* primary keys, unique constraints and foreign keys have no expressions */
	if (!t->authenticated && want == CONSTR_CHECK)
		check_expression(t->schema, t->name, con->raw_expr, EXPR_KIND_CHECK_CONSTRAINT, sql);
	if (!t->authenticated && want == CONSTR_EXCLUSION)
	{
		foreach(lc, con->exclusions)
		{
			IndexElem  *elem = linitial((List *) lfirst(lc));

			if (IsA(elem, IndexElem))
				check_expression(t->schema, t->name, elem->expr, EXPR_KIND_INDEX_EXPRESSION, sql);
		}
		check_expression(t->schema, t->name, con->where_clause, EXPR_KIND_INDEX_PREDICATE, sql);
	}
	run_ddl(sql);
}

/* an index that backs no constraint, as pg_get_indexdef printed it */
static void
create_index_cb(void *arg)
{
	RepoDdl    *d = arg;
	char	   *name = bo_jstr(d->item, "name");
	char	   *sql = bo_jstr(d->item, "definition");
	IndexStmt  *stmt = (IndexStmt *) bo_restore_one_statement(sql, T_IndexStmt, psprintf("index %s", name));
	ListCell   *lc;

	if (!is_table(stmt->relation, d->t) || stmt->idxname == NULL || strcmp(stmt->idxname, name) != 0 ||
		stmt->concurrent || stmt->tableSpace != NULL)
		wrong_statement(psprintf("index %s", name), sql);
	if (!d->t->authenticated)
	{
		foreach(lc, stmt->indexParams)
		{
			IndexElem  *elem = lfirst(lc);

			check_expression(d->t->schema, d->t->name, elem->expr, EXPR_KIND_INDEX_EXPRESSION, sql);
		}
		check_expression(d->t->schema, d->t->name, stmt->whereClause, EXPR_KIND_INDEX_PREDICATE, sql);
	}
	run_ddl(sql);
}

/* run one step in a subtransaction; a failure becomes a problem of object */
static bool
ddl_step(RepoImport *im, void (*fn) (void *), RepoDdl *d, const char *object, const char *what)
{
	ErrorData  *error;

	if (try_subtransaction(fn, d, im->cxt, &error))
		return true;
	add_item(&im->problems, object, "problem", psprintf("%s not recreated: %s", what, error_text(error)));
	return false;
}

/* recreate what a new table's definition holds beyond its columns; foreign keys when fkeys */
static void
complete_table(RepoImport *im, RepoTable *t, bool fkeys)
{
	ListCell   *lc;
	RepoDdl		d = {im, t, NULL, false};

	if (!fkeys)
	{
		foreach(lc, bo_jelements(bo_jcontainer(t->definition, "columns")))
		{
			d.item = ((JsonbValue *) lfirst(lc))->val.binary.data;
			if (bo_jstr(d.item, "identity") != NULL && bo_jstr(d.item, "name") != NULL)
				add_item(&im->notes, psprintf("%s.%s", t->qualified, quote_identifier(bo_jstr(d.item, "name"))), "note",
						 "identity column: its sequence starts at 1: move it past the restored rows "
						 "(ALTER TABLE ... ALTER COLUMN ... RESTART WITH) before new rows use it");
			if (bo_jstr(d.item, "default") != NULL && bo_jstr(d.item, "name") != NULL && bo_jstr(d.item, "type") != NULL)
				ddl_step(im, column_default_cb, &d, t->qualified,
						 psprintf("the default of column %s", quote_identifier(bo_jstr(d.item, "name"))));
		}
	}
	foreach(lc, bo_jelements(bo_jcontainer(t->definition, "constraints")))
	{
		char	   *type;
		char	   *name;

		d.item = ((JsonbValue *) lfirst(lc))->val.binary.data;
		type = bo_jstr(d.item, "type");
		name = bo_jstr(d.item, "name");
		if (type == NULL || type[0] == '\0' || name == NULL || bo_jstr(d.item, "definition") == NULL)
			continue;
		if ((type[0] == 'f') != fkeys)
			continue;
		if (strchr("pucxf", type[0]) == NULL || type[1] != '\0')
			add_item(&im->problems, t->qualified, "problem",
					 psprintf("constraint %s (type %s) not recreated: only primary keys, unique, check, exclusion "
							  "and foreign key constraints are", quote_identifier(name), type));
		else
			ddl_step(im, add_constraint_cb, &d, t->qualified, psprintf("constraint %s", quote_identifier(name)));
	}
	if (fkeys)
		return;
	foreach(lc, bo_jelements(bo_jcontainer(t->definition, "indexes")))
	{
		d.item = ((JsonbValue *) lfirst(lc))->val.binary.data;
		if (bo_jstr(d.item, "name") != NULL && bo_jstr(d.item, "definition") != NULL)
			ddl_step(im, create_index_cb, &d, t->qualified, psprintf("index %s", quote_identifier(bo_jstr(d.item, "name"))));
	}
}

/* phase 1: the tables that do not exist, created */
static void
create_tables(RepoImport *im)
{
	ListCell   *lc;

	foreach(lc, im->tables)
	{
		RepoTable  *t = lfirst(lc);
		Oid			nsp = get_namespace_oid(t->schema, true);
		RepoDdl		d = {im, t, NULL, false};

		CHECK_FOR_INTERRUPTS();
		t->existed = OidIsValid(nsp) && OidIsValid(get_relname_relid(t->name, nsp));
		if (t->existed)
		{
			add_string(&im->tables_existing, psprintf("%s.%s", t->schema, t->name));
			continue;
		}
		t->created = ddl_step(im, create_table_cb, &d, t->qualified, psprintf("table %s", t->qualified));
		if (!t->created)
			continue;
		if (d.schema_created)
			add_string(&im->schemas_created, t->schema);
		add_string(&im->tables_created, psprintf("%s.%s", t->schema, t->name));
		complete_table(im, t, false);
	}
	/* foreign keys once every table exists */
	foreach(lc, im->tables)
	{
		RepoTable  *t = lfirst(lc);

		if (t->created)
			complete_table(im, t, true);
	}
}

/* ---------------------------------------------------------------------
 * Phase 2: the catalog, as the extension's owner with the import flag
 * ---------------------------------------------------------------------
 */

/* what importing one configuration produced, kept only when it commits */
typedef struct RepoConfigWork
{
	RepoImport *im;
	RepoConfig *c;
	RepoSnapshot *s;			/* the snapshot being imported */
	const char *result;			/* "imported" or "existing" */
	int			imported;
	int			skipped;
	int			not_imported;
	StringInfoData entity_types;
	StringInfoData snapshots;
	StringInfoData problems;
	StringInfoData notes;
	TimestampTz last;			/* newest imported snapshot time */
} RepoConfigWork;

/* the registry's flags for a table: from the newest manifest in which it had rows */
static void
table_flags(RepoConfig *c, const char *schema, const char *name, bool *phi, bool *pii, bool *financial)
{
	int			i;

	*phi = *pii = *financial = false;
	for (i = list_length(c->snapshots) - 1; i >= 0; i--)
	{
		JsonbContainer *e = bo_manifest_table(((RepoSnapshot *) list_nth(c->snapshots, i))->manifest, schema, name);

		if (e != NULL && bo_jnum(e, "rowCount") > 0)
		{
			*phi = bo_jnum(e, "phiRecords") > 0;
			*pii = bo_jnum(e, "piiRecords") > 0;
			*financial = bo_jnum(e, "financialRecords") > 0;
			return;
		}
	}
}

/*
 * May the importing role register table relid (named qualified) for
 * entity type type?  Phase 2 runs as the extension's owner, for whom the
 * registry's own check (has_table_privilege in entity_registry_guard) is
 * always true: the caller's rights are checked here.  A registered table is
 * backed up by the job worker and can be restored into a schema of the
 * administrator's, so only tables the caller may read are registered, and
 * never a system catalog, a table of a system schema or of the extension's
 * own schema, or a relation that is not a table.  An error refuses the
 * configuration (import_catalog reports it).
 */
static void
check_registrable(RepoImport *im, Oid relid, const char *qualified, const char *type)
{
	Oid			nsp = get_rel_namespace(relid);
	char	   *nspname = get_namespace_name(nsp);
	char		relkind = get_rel_relkind(relid);

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s, the table of entity type %s, is not a table", qualified, type),
				 errhint("Only ordinary and partitioned tables are registered.")));
	if (nspname == NULL || strncmp(nspname, "pg_", 3) == 0 || strcmp(nspname, "information_schema") == 0 ||
		IsCatalogNamespace(nsp) || isAnyTempNamespace(nsp) || nsp == im->extension_schema)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s of entity type %s is in a system schema: it is not registered", qualified, type),
				 errhint("Only tables of ordinary schemas are registered; the manifest is not one backup_offline wrote.")));
	if (pg_class_aclcheck(relid, im->caller_id, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to register table %s for entity type %s: role \"%s\" may not read it",
						qualified, type, im->caller),
				 errhint("Only a role that can read a table may register it for backups: import as such a role, "
						 "or grant SELECT on the table first.")));
}

/* the entity types of the configuration's newest manifest, registered when missing */
static void
register_entity_types(RepoConfigWork *w)
{
	RepoConfig *c = w->c;
	ListCell   *lc;

	foreach(lc, bo_jelements(bo_jcontainer(&c->newest->manifest->root, "tables")))
	{
		JsonbContainer *e = ((JsonbValue *) lfirst(lc))->val.binary.data;
		char	   *schema = bo_jstr(e, "schema");
		char	   *name = bo_jstr(e, "name");
		char	   *qualified;
		JsonbContainer *filters = bo_jcontainer(e, "filterColumns");
		JsonbContainer *definition = bo_jcontainer(e, "definition");
		JsonbContainer *keys = definition ? bo_jcontainer(definition, "primaryKey") : NULL;
		List	   *types = string_elements(bo_jcontainer(e, "entityTypes"));
		ListCell   *lc2;

		if (types == NIL)
			continue;
		if (schema == NULL || name == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("manifest \"%s\" names entity types of a table without a schema or name", c->newest->name)));
		qualified = quote_qualified_identifier(schema, name);
		foreach(lc2, types)
		{
			char	   *type = lfirst(lc2);
			const char *args[13];
			Oid			nsp;
			Oid			relid;
			bool		phi,
						pii,
						financial;

			args[0] = c->organization_id;
			args[1] = type;
			bo_spi_exec("SELECT r.table_name::text FROM backup_offline.entity_registry r "
					" WHERE r.entity_type = $2 AND (r.organization_id IS NULL OR r.organization_id = $1::uuid) "
					" ORDER BY r.organization_id NULLS LAST LIMIT 1", 2, args, false, 0);
			if (SPI_processed > 0)
			{
				char	   *registered = spi_value(0, 1);

				/* its backups would cover another table than the repository's */
				if (strcmp(registered, qualified) != 0)
					ereport(ERROR,
							(errcode(ERRCODE_DUPLICATE_OBJECT),
							 errmsg("entity type %s is registered for table %s, the repository's configuration has it for %s",
									type, registered, qualified),
							 errhint("Backups of the imported configuration would copy %s. Change the registry "
									 "(or the configuration, once imported by hand) and import again.", registered)));
				continue;
			}
			nsp = get_namespace_oid(schema, true);
			relid = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
			if (!OidIsValid(relid))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_TABLE),
						 errmsg("table %s of entity type %s does not exist", qualified, type),
						 errdetail("It could not be created (see the problems of the table).")));
			check_registrable(w->im, relid, qualified, type);
			table_flags(c, schema, name, &phi, &pii, &financial);
			args[2] = qualified;
			/* without a primary key the manifest records no key columns: every copied column is the key */
			if (keys == NULL && bo_jcontainer(e, "copyColumns") == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("manifest \"%s\" records neither a primary key nor the copied columns of table %s",
								c->newest->name, qualified)));
			args[3] = JsonbToCString(NULL, keys ? keys : bo_jcontainer(e, "copyColumns"), 64);
			args[4] = filters ? bo_jstr(filters, "clientIds") : NULL;
			args[5] = filters ? bo_jstr(filters, "caregiverIds") : NULL;
			args[6] = filters ? bo_jstr(filters, "branchIds") : NULL;
			args[7] = filters ? bo_jstr(filters, "dateRange") : NULL;
			args[8] = filters ? bo_jstr(filters, "organization") : NULL;
			args[9] = phi ? "true" : "false";
			args[10] = pii ? "true" : "false";
			args[11] = financial ? "true" : "false";
			args[12] = psprintf("imported from the repository (snapshot %s)", c->newest->number);
			bo_spi_exec("INSERT INTO backup_offline.entity_registry "
					"  (organization_id, entity_type, table_name, key_columns, client_id_column, caregiver_id_column, "
					"   branch_id_column, date_column, organization_column, contains_phi, contains_pii, "
					"   contains_financial, description) "
					"SELECT $1::uuid, $2, $3::regclass, ARRAY(SELECT jsonb_array_elements_text($4::jsonb))::name[], "
					"       $5, $6, $7, $8, $9, $10::boolean, $11::boolean, $12::boolean, $13", 13, args, false, 0);
			if (keys == NULL)
				add_item(&w->notes, type, "note",
						 psprintf("table %s has no primary key: every copied column registered as key column", qualified));
			if (w->entity_types.len > 0)
				appendStringInfoString(&w->entity_types, ", ");
			appendStringInfoChar(&w->entity_types, '{');
			bo_json_add_text(&w->entity_types, "entityType", type);
			bo_json_add_text(&w->entity_types, "table", psprintf("%s.%s", schema, name));
			bo_json_add_text(&w->entity_types, "organizationId", c->organization_id);
			bo_json_add_raw(&w->entity_types, "containsPHI", phi ? "true" : "false");
			bo_json_add_raw(&w->entity_types, "containsPII", pii ? "true" : "false");
			bo_json_add_raw(&w->entity_types, "containsFinancial", financial ? "true" : "false");
			appendStringInfoChar(&w->entity_types, '}');
		}
	}
}

/* the configuration row, PAUSED, unless the catalog holds it */
static void
insert_configuration(RepoConfigWork *w)
{
	RepoImport *im = w->im;
	RepoConfig *c = w->c;
	JsonbContainer *config = bo_jcontainer(&c->newest->manifest->root, "configuration");
	const char *args[5];

	args[0] = c->id;
	bo_spi_exec("SELECT c.organization_id::text, c.name FROM backup_offline.backup_configuration c WHERE c.id = $1::uuid",
			1, args, false, 0);
	if (SPI_processed > 0)
	{
		if (strcmp(spi_value(0, 1), c->organization_id) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("the catalog holds configuration %s (\"%s\") for organization %s, the repository for %s",
							c->id, spi_value(0, 2), spi_value(0, 1), c->organization_id),
					 errhint("The repository's snapshots of it are not imported.")));
		w->result = "existing";
		return;
	}
	if (config == NULL || c->name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest \"%s\" holds no configuration", c->newest->name)));
	args[0] = c->organization_id;
	args[1] = c->name;
	bo_spi_exec("SELECT 1 FROM backup_offline.backup_configuration c "
			" WHERE c.organization_id = $1::uuid AND c.name = $2 AND c.deleted_at IS NULL", 2, args, false, 0);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("another backup configuration \"%s\" exists in organization %s", c->name, c->organization_id),
				 errhint("Rename it (update_backup_configuration) and import again.")));

	/*
	 * The configuration as it was, writing to this destination, PAUSED, in
	 * the organization the caller was shown it for (read_manifest refused a
	 * manifest whose configuration names another one).
	 */
	args[0] = JsonbToCString(NULL, config, 1024);
	args[1] = im->storage_json;
	args[2] = c->id;
	args[3] = psprintf("imported from the repository by %s: resume it with set_backup_configuration_status(id, 'ACTIVE') "
					   "once this cluster is the one that backs up", im->caller);
	args[4] = c->organization_id;
	bo_spi_exec("WITH v AS (SELECT backup_offline.configuration_apply("
			"    $1::jsonb || jsonb_build_object('organizationId', $5::uuid, 'storageDestination', $2::jsonb, "
			"                                    'status', 'PAUSED'), NULL) AS r) "
			"INSERT INTO backup_offline.backup_configuration "
			"  (id, organization_id, name, description, config_type, schedule, scope, retention, storage_destination, "
			"   encryption_enabled, compression_enabled, integrity_check_enabled, checksum_algorithm, "
			"   notification_settings, compliance_requirements, status, status_reason) "
			"SELECT $3::uuid, $5::uuid, (v.r).name, (v.r).description, (v.r).config_type, (v.r).schedule, "
			"       (v.r).scope, (v.r).retention, (v.r).storage_destination, (v.r).encryption_enabled, "
			"       (v.r).compression_enabled, (v.r).integrity_check_enabled, (v.r).checksum_algorithm, "
			"       (v.r).notification_settings, (v.r).compliance_requirements, 'PAUSED', $4 "
			"  FROM v", 5, args, false, 0);
	w->result = "imported";
}

/* one snapshot row, COMPLETED, unless the catalog holds it */
static void
insert_snapshot_cb(void *arg)
{
	RepoConfigWork *w = arg;
	RepoImport *im = w->im;
	RepoSnapshot *s = w->s;
	const char *args[10];
	const char *result;
	char	   *catalog_number = NULL;

	args[0] = s->snapshot_id;
	bo_spi_exec("SELECT 1 FROM backup_offline.backup_snapshot s WHERE s.id = $1::uuid", 1, args, false, 0);
	if (SPI_processed > 0)
	{
		w->skipped++;
		result = "skipped";
	}
	else
	{
		if (s->parent_id != NULL)
		{
			args[0] = s->parent_id;
			bo_spi_exec("SELECT 1 FROM backup_offline.backup_snapshot s WHERE s.id = $1::uuid", 1, args, false, 0);
			if (SPI_processed == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
						 errmsg("its parent snapshot %s is neither in the catalog nor verified in storage", s->parent_id),
						 errhint("A snapshot is restored with its chain: without its parent it cannot be.")));
		}
		/* the manifest's number, unless the catalog has given it to another snapshot */
		args[0] = s->number;
		bo_spi_exec("SELECT 1 FROM backup_offline.backup_snapshot s WHERE s.snapshot_number = $1", 1, args, false, 0);
		args[2] = SPI_processed > 0 ? NULL : s->number;

		args[0] = im->storage_json;
		args[1] = JsonbToCString(NULL, &s->manifest->root, VARSIZE(s->manifest));
		args[3] = psprintf("imported from the repository by %s", im->caller);
		args[4] = im->caller;
		args[5] = s->name;
		args[6] = s->checksum;
		args[7] = psprintf(UINT64_FORMAT, s->manifest_bytes);
		args[8] = psprintf("backup_offline/%s/%s/", s->configuration_id, s->snapshot_id);
		args[9] = w->c->organization_id;	/* the manifest's (plan_import) */
		bo_spi_exec("WITH m AS (SELECT $2::jsonb AS j) "
				"INSERT INTO backup_offline.backup_snapshot "
				"  (id, organization_id, configuration_id, snapshot_number, backup_type, requested_type, status, "
				"   status_reason, trigger, parent_snapshot_id, base_snapshot_id, requested_by, requested_by_user, "
				"   created_at, started_at, snapshot_time, completed_at, consistency, storage_location, manifest, "
				"   checksum, checksum_algorithm, encrypted, compressed, key_id, data_metrics) "
				"SELECT (m.j->>'snapshotId')::uuid, $10::uuid, (m.j->>'configurationId')::uuid, "
				"       coalesce($3, 'BKP-' || lpad(nextval('backup_offline.backup_snapshot_number_seq')::text, 8, '0')), "
				"       (m.j->>'backupType')::backup_offline.backup_type, "
				"       coalesce(m.j->>'requestedType', m.j->>'backupType')::backup_offline.backup_type, "
				"       'COMPLETED', $4, 'MANUAL', (m.j->>'parentSnapshotId')::uuid, "
				"       coalesce((m.j->>'baseSnapshotId')::uuid, (m.j->>'snapshotId')::uuid), $5::name, "
				"       backup_offline.current_actor(), "
				"       coalesce((m.j->>'startedAt')::timestamptz, (m.j->>'snapshotTime')::timestamptz), "
				"       coalesce((m.j->>'startedAt')::timestamptz, (m.j->>'snapshotTime')::timestamptz), "
				"       (m.j->>'snapshotTime')::timestamptz, (m.j->>'snapshotTime')::timestamptz, "
				/* the WAL positions are another cluster's: no change threshold here */
				"       coalesce(m.j->'consistency', '{}') || jsonb_build_object('changeLsn', NULL, "
				"           'sourceChangeLsn', m.j->'consistency'->'changeLsn', "
				"           'sourceSystemIdentifier', m.j->'systemIdentifier'), "
				"       jsonb_build_object('type', $1::jsonb->>'type', 'destination', $1::jsonb, "
				"           'prefix', $9, 'manifest', $6), "
				"       m.j, $7, (m.j->>'digestAlgorithm')::backup_offline.checksum_algorithm, "
				"       coalesce(m.j->>'encryption', 'none') <> 'none', coalesce(m.j->>'compression', 'none') <> 'none', "
				"       m.j->>'keyId', "
				"       coalesce(m.j->'totals', '{}') || jsonb_build_object('manifestBytes', $8::bigint, "
				"           'storedBytes', coalesce((m.j->'totals'->>'storedBytes')::bigint, 0) + $8::bigint) "
				"  FROM m RETURNING snapshot_number", 10, args, false, 0);
		catalog_number = spi_value(0, 1);
		w->imported++;
		if (s->snapshot_time > w->last)
			w->last = s->snapshot_time;
		result = "imported";
		if (s->missing > 0)
			add_item(&w->problems, s->number, "problem",
					 psprintf("imported, but %s: verify_snapshot will find it CORRUPTED", snapshot_problem(s)));
	}

	if (w->snapshots.len > 0)
		appendStringInfoString(&w->snapshots, ", ");
	appendStringInfoChar(&w->snapshots, '{');
	bo_json_add_text(&w->snapshots, "snapshotId", s->snapshot_id);
	bo_json_add_text(&w->snapshots, "snapshotNumber", s->number);
	bo_json_add_text(&w->snapshots, "configurationId", s->configuration_id);
	bo_json_add_text(&w->snapshots, "result", result);
	if (catalog_number != NULL && strcmp(catalog_number, s->number) != 0)
	{
		bo_json_add_text(&w->snapshots, "catalogNumber", catalog_number);
		add_item(&w->notes, s->number, "note",
				 psprintf("the catalog had given number %s to another snapshot: imported as %s", s->number, catalog_number));
	}
	appendStringInfoChar(&w->snapshots, '}');
}

/* one snapshot that could not be imported */
static void
snapshot_not_imported(StringInfo snapshots, RepoSnapshot *s, const char *result)
{
	if (snapshots->len > 0)
		appendStringInfoString(snapshots, ", ");
	appendStringInfoChar(snapshots, '{');
	bo_json_add_text(snapshots, "snapshotId", s->snapshot_id);
	bo_json_add_text(snapshots, "snapshotNumber", s->number);
	bo_json_add_text(snapshots, "configurationId", s->configuration_id);
	bo_json_add_text(snapshots, "result", result);
	appendStringInfoChar(snapshots, '}');
}

/* one configuration: entity types, its row, its snapshots oldest first */
static void
import_configuration_cb(void *arg)
{
	RepoConfigWork *w = arg;
	ListCell   *lc;

	if (w->c->conflict != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s", w->c->conflict),
				 errdetail("A configuration belongs to one organization; backup_offline writes it in every manifest.")));
	register_entity_types(w);
	insert_configuration(w);
	foreach(lc, w->c->snapshots)
	{
		ErrorData  *error;

		CHECK_FOR_INTERRUPTS();
		w->s = lfirst(lc);
		if (!try_subtransaction(insert_snapshot_cb, w, w->im->cxt, &error))
		{
			w->not_imported++;
			snapshot_not_imported(&w->snapshots, w->s, "not imported");
			add_item(&w->problems, w->s->number, "problem", psprintf("not imported: %s", error_text(error)));
		}
	}
	if (w->imported > 0)
	{
		const char *args[2] = {w->c->id, timestamptz_to_str(w->last)};

		/* the jobs' bookkeeping: no new version, no audit row */
		bo_spi_exec("UPDATE backup_offline.backup_configuration c SET last_backup_at = $2::timestamptz "
				" WHERE c.id = $1::uuid AND (c.last_backup_at IS NULL OR c.last_backup_at < $2::timestamptz)",
				2, args, false, 0);
	}
}

/* appends the members of from to the array members to */
static void
merge(StringInfo to, StringInfo from)
{
	if (from->len == 0)
		return;
	if (to->len > 0)
		appendStringInfoString(to, ", ");
	appendBinaryStringInfo(to, from->data, from->len);
}

/* phase 2: per configuration, each in a subtransaction */
static void
import_catalog(RepoImport *im)
{
	ListCell   *lc;
	int64		highest = 0;
	const char *args[3];

	/* tables that existed: does the manifest describe them? */
	foreach(lc, im->tables)
	{
		RepoTable  *t = lfirst(lc);
		char	   *recorded = bo_jstr(t->definition, "fingerprint");
		Oid			relid;

		if (!t->existed || recorded == NULL)
			continue;
		/* nothing about a table the caller may not read */
		relid = get_relname_relid(t->name, get_namespace_oid(t->schema, false));
		if (!OidIsValid(relid) || pg_class_aclcheck(relid, im->caller_id, ACL_SELECT) != ACLCHECK_OK)
			continue;
		args[0] = t->qualified;
		bo_spi_exec("SELECT backup_offline.table_definition($1::regclass)->>'fingerprint'", 1, args, false, 0);
		if (strcmp(spi_value(0, 1), recorded) != 0)
			add_item(&im->notes, psprintf("%s.%s", t->schema, t->name), "note",
					 "the table exists with a definition that differs from the newest manifest's; it was left as it is");
	}

	/* new numbers (when one is taken) must come after every imported one */
	foreach(lc, im->configs)
	{
		ListCell   *lc2;

		foreach(lc2, ((RepoConfig *) lfirst(lc))->snapshots)
		{
			RepoSnapshot *s = lfirst(lc2);

			if (strncmp(s->number, "BKP-", 4) == 0 && strspn(s->number + 4, "0123456789") == strlen(s->number + 4) &&
				strlen(s->number + 4) > 0 && strlen(s->number + 4) < 18)
				highest = Max(highest, strtoll(s->number + 4, NULL, 10));
		}
	}
	args[0] = psprintf(INT64_FORMAT, highest);
	bo_spi_exec("SELECT setval('backup_offline.backup_snapshot_number_seq', $1::bigint) "
			" WHERE $1::bigint > (SELECT CASE WHEN q.is_called THEN q.last_value ELSE q.last_value - 1 END "
			"                       FROM backup_offline.backup_snapshot_number_seq q)", 1, args, false, 0);

	foreach(lc, im->configs)
	{
		RepoConfig *c = lfirst(lc);
		RepoConfigWork w;
		ErrorData  *error;

		memset(&w, 0, sizeof(w));
		w.im = im;
		w.c = c;
		initStringInfo(&w.entity_types);
		initStringInfo(&w.snapshots);
		initStringInfo(&w.problems);
		initStringInfo(&w.notes);

		if (im->configurations.len > 0)
			appendStringInfoString(&im->configurations, ", ");
		appendStringInfoChar(&im->configurations, '{');
		bo_json_add_text(&im->configurations, "id", c->id);
		bo_json_add_text(&im->configurations, "name", c->name);
		bo_json_add_text(&im->configurations, "organizationId", c->organization_id);
		if (try_subtransaction(import_configuration_cb, &w, im->cxt, &error))
		{
			bo_json_add_text(&im->configurations, "result", w.result);
			bo_json_add_u64(&im->configurations, "snapshotsImported", w.imported);
			im->imported += w.imported;
			im->configurations_imported += strcmp(w.result, "imported") == 0;
			im->skipped += w.skipped;
			im->not_imported += w.not_imported;
			merge(&im->entity_types, &w.entity_types);
			merge(&im->snapshots, &w.snapshots);
			merge(&im->problems, &w.problems);
			merge(&im->notes, &w.notes);
		}
		else
		{
			ListCell   *lc2;

			bo_json_add_text(&im->configurations, "result", "not imported");
			bo_json_add_u64(&im->configurations, "snapshotsImported", 0);
			add_item(&im->problems, psprintf("configuration %s (\"%s\")", c->id, c->name ? c->name : ""), "problem",
					 psprintf("not imported, nor its snapshots: %s", error_text(error)));
			foreach(lc2, c->snapshots)
			{
				im->not_imported++;
				snapshot_not_imported(&im->snapshots, lfirst(lc2), "not imported");
			}
		}
		appendStringInfoChar(&im->configurations, '}');
	}
}

/* ---------------------------------------------------------------------
 * import_repository
 * ---------------------------------------------------------------------
 */

/* the error when nothing in storage can be imported */
static void
nothing_to_import(RepoImport *im, List *snapshots)
{
	RepoSnapshot *first = NULL;
	int			sqlerrcode = 0;
	bool		same = true;
	ListCell   *lc;

	if (im->manifests == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("storage holds no snapshot manifest %s",
						im->other_organizations > 0 ? "of the organizations this role works on" : "to import"),
				 errdetail("No object named backup_offline/<configuration id>/<snapshot id>/backup_manifest is under \"%s\"%s.",
						   bo_storage_config_text(im->storage, "path") ? bo_storage_config_text(im->storage, "path") : "",
						   im->other_organizations > 0 ? psprintf(" that this role may see (%d belong to other organizations)",
																  im->other_organizations) : ""),
				 errhint("Give the storageDestination the backups were written to: the directory that holds backup_offline/.")));
	foreach(lc, snapshots)
	{
		RepoSnapshot *s = lfirst(lc);

		if (!s->visible || s->valid)
			continue;
		if (first == NULL)
		{
			first = s;
			sqlerrcode = s->error->sqlerrcode;
		}
		else if (s->error->sqlerrcode != sqlerrcode)
			same = false;
	}
	if (first == NULL)
		return;
	ereport(ERROR,
			(errcode(same ? sqlerrcode : ERRCODE_DATA_CORRUPTED),
			 errmsg("no snapshot manifest in storage could be read: %s", first->error->message),
			 errdetail("%d manifest%s, none verified; the first: \"%s\"%s", im->manifests, im->manifests == 1 ? "" : "s",
					   first->name, first->error->detail ? psprintf(": %s", first->error->detail) : "."),
			 errhint("%s", same && sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE && first->key_ids != NIL
					 ? psprintf("Copy the key file of the cluster that wrote the backups (key id \"%s\") into backup_offline.key_directory.",
								(char *) linitial(first->key_ids))
					 : "repository_snapshots(storage) lists every manifest with its problem.")));
}

/* the report */
static char *
import_report(RepoImport *im)
{
	StringInfoData r;

	initStringInfo(&r);
	appendStringInfoChar(&r, '{');
	bo_json_add_raw(&r, "storage", im->storage_json);
	bo_json_add_u64(&r, "manifests", im->manifests);
	bo_json_add_u64(&r, "snapshotsImported", im->imported);
	bo_json_add_u64(&r, "snapshotsSkipped", im->skipped);
	bo_json_add_u64(&r, "snapshotsInvalid", im->invalid);
	bo_json_add_u64(&r, "snapshotsNotImported", im->not_imported);
	bo_json_add_u64(&r, "otherOrganizations", im->other_organizations);
	bo_json_add_raw(&r, "configurations", psprintf("[%s]", im->configurations.data));
	bo_json_add_raw(&r, "entityTypes", psprintf("[%s]", im->entity_types.data));
	bo_json_add_raw(&r, "schemasCreated", psprintf("[%s]", im->schemas_created.data));
	bo_json_add_raw(&r, "tablesCreated", psprintf("[%s]", im->tables_created.data));
	bo_json_add_raw(&r, "tablesExisting", psprintf("[%s]", im->tables_existing.data));
	bo_json_add_raw(&r, "snapshots", psprintf("[%s]", im->snapshots.data));
	bo_json_add_raw(&r, "problems", psprintf("[%s]", im->problems.data));
	bo_json_add_raw(&r, "notes", psprintf("[%s]", im->notes.data));
	appendStringInfoChar(&r, '}');
	return r.data;
}

/*
 * import_repository(storage jsonb) RETURNS jsonb
 *
 * Rebuild the catalog rows of every snapshot in storage whose manifest
 * verifies, in the caller's transaction (see the file comment).  Returns
 * what it did; what it could not do is in "problems", and when nothing in
 * storage can be imported it is an error and nothing changes.
 */
Datum
bo_import_repository_sql(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	RepoImport	im;
	RepoVisibility vis;
	List	   *snapshots;
	ListCell   *lc;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	char	   *report;
	const char *args[3];
	Datum		out;

	if (importing)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("import_repository is already running in this session"),
				 errhint("Wait for it to finish; an import does not start another one.")));
	memset(&im, 0, sizeof(im));
	im.cxt = AllocSetContextCreate(caller_cxt, "import_repository", ALLOCSET_DEFAULT_SIZES);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	im.caller = GetUserNameFromId(save_userid, false);
	im.caller_id = save_userid;
	im.extension_schema = get_func_namespace(fcinfo->flinfo->fn_oid);
	/* validated and confined as configurations' destinations are; NULL is an error there */
	im.storage = bo_storage_open(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0));
	im.storage_json = JsonbToCString(NULL, &bo_storage_config(im.storage)->root, 256);
	initStringInfo(&im.configurations);
	initStringInfo(&im.entity_types);
	initStringInfo(&im.schemas_created);
	initStringInfo(&im.tables_created);
	initStringInfo(&im.tables_existing);
	initStringInfo(&im.snapshots);
	initStringInfo(&im.problems);
	initStringInfo(&im.notes);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* definitions were printed with this search path: read them with it */
	nestlevel = NewGUCNestLevel();
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);

	/* one import at a time: a second one waits, then finds the first's rows */
	bo_spi_exec("SELECT pg_advisory_xact_lock(hashtext('backup_offline.import_repository'))", 0, NULL, false, 0);
	read_visibility(&vis);
	snapshots = scan_repository(im.storage, true);
	if (snapshots != NIL)
		apply_visibility(snapshots, &vis);
	foreach(lc, snapshots)
	{
		RepoSnapshot *s = lfirst(lc);

		if (!s->visible)
		{
			im.other_organizations++;
			continue;
		}
		im.manifests++;
		if (!s->valid)
		{
			im.invalid++;
			snapshot_not_imported(&im.snapshots, s, "invalid");
			add_item(&im.problems, s->name, "problem", psprintf("manifest not verified: %s", error_text(s->error)));
		}
	}
	if (im.manifests == im.invalid)
		nothing_to_import(&im, snapshots);
	plan_import(&im, snapshots);

	/* phase 1, as the caller */
	create_tables(&im);

	/* phase 2, as the extension's owner with the import flag */
	SetUserIdAndSecContext(bo_function_owner(fcinfo->flinfo->fn_oid), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	strlcpy(importer, im.caller, sizeof(importer));
	importing = true;
	PG_TRY();
	{
		import_catalog(&im);
	}
	PG_FINALLY();
	{
		importing = false;
	}
	PG_END_TRY();

	/* one audit entry for an import that changed something, naming the caller */
	report = import_report(&im);
	args[0] = bo_storage_config_text(im.storage, "path");
	args[1] = report;
	args[2] = im.caller;
	if (im.imported > 0 || im.configurations_imported > 0 || im.tables_created.len > 0 || im.entity_types.len > 0)
		bo_spi_exec("SELECT backup_offline.write_audit('import_repository', 'repository', $1, NULL, "
				"       ($2::jsonb - 'snapshots' - 'notes' - 'tablesExisting' - 'problems') "
				"       || jsonb_build_object('problems', jsonb_array_length($2::jsonb->'problems')), $3::name)",
				3, args, false, 0);
	SetUserIdAndSecContext(save_userid, save_sec);
	AtEOXact_GUC(false, nestlevel);

	out = SPI_datumTransfer(DirectFunctionCall1(jsonb_in, CStringGetDatum(report)), false, -1);
	SPI_finish();
	MemoryContextDelete(im.cxt);
	PG_RETURN_DATUM(out);
}
