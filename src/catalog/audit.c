/*-------------------------------------------------------------------------
 *
 * audit.c
 *		The append-only, hash-chained audit trail: the writer, the
 *		commit-time chainer, the append-only trigger and the verifier.
 *
 * Every audit entry is a row of backup_offline.audit_log.  Rows are only
 * ever added, by write_audit() (SECURITY DEFINER; the catalog's change
 * triggers call it) or bo_audit_write() from C.  An entry gets its place in
 * the chain when its transaction commits, not when it is written:
 *
 *	1. The writer inserts the entry into audit_pending, with the fields that
 *	   belong to the moment of writing:
 *
 *	occurred_at		= statement start time of the writing statement
 *	actor_user_id	= session setting backup_offline.user_id (empty: NULL)
 *	transaction_id	= pg_current_xact_id() of the writing transaction
 *	seq				= a backend-local counter: the order of the writes
 *
 *	2. The constraint trigger audit_pending_chain (bo_audit_pending_chain,
 *	   AFTER INSERT, DEFERRABLE INITIALLY DEFERRED, SECURITY DEFINER, ENABLE
 *	   ALWAYS) fires for each pending row when the transaction commits (or
 *	   prepares), in the order the rows were written.  It deletes the
 *	   pending row, takes the chain lock, numbers the entry and links it to
 *	   the previous one:
 *
 *	id				= head.last_id + 1 (1, 2, 3, ... without gaps)
 *	prev_hash		= head.last_hash (32 zero bytes for id 1)
 *	row_hash		= SHA-256 of the canonical encoding below
 *
 *	   inserts it into audit_log and moves the head (audit_chain_head) to it.
 *
 * So audit_pending is empty outside transactions: a rolled-back or failed
 * transaction takes its pending rows and their trigger events with it, and
 * so does ROLLBACK TO SAVEPOINT for the rows written since the savepoint.
 * write_audit() cannot know the id at write time and returns NULL (0 from
 * bo_audit_write()), unless the entry was chained at once (below).
 *
 * The BEFORE INSERT trigger audit_log_chain (bo_audit_chain) lets the rows
 * the chainer inserts through (chain_insert_id) and refuses every other
 * insert that supplies id, occurred_at, transaction_id, prev_hash or
 * row_hash itself (SQLSTATE 428C9), never silently renumbering it: a dump
 * that is restored with the trigger active fails loudly instead of
 * re-chaining the old entries under new numbers, times and transactions.  A
 * direct INSERT without those columns (owner or superuser only) is chained
 * at once, as write_audit() with SET CONSTRAINTS ... IMMEDIATE would be:
 * the entries its transaction wrote before it and that are still pending
 * are chained first (flush_pending), so ids follow the order of writing.
 *
 * Locking.  The chain lock is an ExclusiveLock on the object
 * audit_chain_head (LockDatabaseObject; pg_locks shows locktype "object",
 * classid pg_class), taken by the first entry a transaction chains and
 * held until the transaction ends.  Since entries are chained at commit,
 * the lock is held only from the first deferred trigger to the end of the
 * commit: a transaction that writes audit entries and then stays open,
 * idle or busy, holds up nobody, whichever organization it works for.
 * Holding the lock through the commit is what keeps ids gapless and in
 * commit order: a chainer that fails rolls back its head update with
 * everything else, and the next chainer starts from the head the last
 * committed one left.  The head is read and updated under a snapshot taken
 * after the lock is granted (GetLatestSnapshot), not under the
 * transaction's snapshot, so REPEATABLE READ and SERIALIZABLE transactions
 * see the head the previous chainer committed instead of failing with
 * 40001 because it moved since their snapshot; nobody else changes the
 * head meanwhile.  The lock is not a row lock, so it needs no WAL and does
 * not conflict with vacuum.
 *
 * Chaining early.  SET CONSTRAINTS backup_offline.audit_pending_chain
 * IMMEDIATE (or ALL IMMEDIATE) makes the pending entries chain at once and
 * later ones at the end of each statement, so the transaction can read its
 * own entries in audit_log and write_audit() returns their ids; the chain
 * lock is then held from that point until the transaction ends, as every
 * audit write held it before chaining moved to commit.  PREPARE
 * TRANSACTION fires the deferred triggers, so a prepared transaction holds
 * the chain lock until COMMIT PREPARED or ROLLBACK PREPARED.
 *
 * Security-restricted operations.  The catalog's change trigger calls
 * write_audit() in a security-restricted operation, where queuing a deferred
 * trigger event is refused (deferred user code would run outside the
 * sandbox).  bo_audit_write() lifts the restriction for its one INSERT into
 * audit_pending: the only code that INSERT queues or runs is the
 * extension's own, on a table nobody but the owner can change.
 *
 * The head row is created on the first chained entry (not by CREATE
 * EXTENSION), so that a dumped head can be restored without colliding with
 * a seeded one.  All queries are saved plans; after its first entry a
 * transaction finds the head by the ctid its last update left (see
 * lock_chain_head), and the chainer finds each pending row by the ctid its
 * trigger event carries, so many entries in one transaction stay linear.
 *
 * Append-only.  BEFORE UPDATE OR DELETE (row and statement level) and BEFORE
 * TRUNCATE triggers refuse with SQLSTATE 42501 "audit_log is append-only",
 * for every role including superusers.  They are ENABLE ALWAYS, so
 * session_replication_role = replica does not switch them off; only an
 * explicit ALTER TABLE ... DISABLE TRIGGER (owner or superuser) does, and
 * verify_audit_chain() detects what is done behind it.  audit_log_chain is
 * an ordinary (origin) trigger, so rows loaded in replica mode keep their
 * stored numbers and hashes; audit_pending_chain is ENABLE ALWAYS, so an
 * entry written in replica mode is still chained, never left pending.
 *
 * Canonical encoding.  row_hash = SHA-256 over the concatenation of these
 * eleven fields, in this order, each written as a 4-byte big-endian signed
 * length followed by that many bytes; an SQL NULL is the length -1
 * (ff ff ff ff) with no bytes:
 *
 *	 1 id				8 bytes: int64, big-endian
 *	 2 occurred_at		8 bytes: int64, big-endian, microseconds since
 *						2000-01-01 00:00:00 UTC (Unix microseconds minus
 *						946684800000000)
 *	 3 organization_id	16 bytes: the uuid's bytes in the order its hex
 *						digits are written, or NULL
 *	 4 actor_role		the role name in UTF-8, no terminator
 *	 5 actor_user_id	16 bytes as organization_id, or NULL
 *	 6 action			UTF-8
 *	 7 object_type		UTF-8
 *	 8 object_id		UTF-8, or NULL
 *	 9 details			UTF-8 of jsonb's text output (details::text: keys
 *						sorted, one space after ':' and ',')
 *	10 transaction_id	8 bytes: the xid8 as uint64, big-endian (epoch << 32
 *						| xid)
 *	11 prev_hash		32 bytes
 *
 * Text is converted from the database encoding to UTF-8 first (a no-op in
 * UTF-8 databases).  The same hash in SQL, with F(b) = CASE WHEN b IS NULL
 * THEN int4send(-1) ELSE int4send(octet_length(b)) || b END:
 *
 *	sha256(F(int8send(id)) || F(timestamptz_send(occurred_at))
 *		   || F(uuid_send(organization_id))
 *		   || F(convert_to(actor_role::text, 'UTF8'))
 *		   || F(uuid_send(actor_user_id)) || F(convert_to(action, 'UTF8'))
 *		   || F(convert_to(object_type, 'UTF8'))
 *		   || F(convert_to(object_id, 'UTF8'))
 *		   || F(convert_to(details::text, 'UTF8'))
 *		   || F(xid8send(transaction_id)) || F(prev_hash))
 *
 * Verification.  verify_audit_chain() reads the head and then streams the
 * log in id order through a cursor, both under the calling statement's
 * snapshot (read-only SPI), so a concurrent writer is seen either entirely
 * or not at all.  For each row, in this order, it checks that the id is the
 * previous id + 1 (else "gap", at the row after the missing ones), that
 * prev_hash equals the previous row's stored row_hash (else
 * "prev_hash_mismatch") and that row_hash equals the recomputed hash (else
 * "row_hash_mismatch"); it stops at the first broken row.  A log that ends
 * before or after the head, or whose last row_hash differs from the head's,
 * is "head_mismatch"; firstBrokenId is then the first id the head and the
 * log disagree about (the first missing row, the first row past the head,
 * or the last row when only the hash differs).  The result is
 * {"valid", "rowsChecked", "lastId", "firstBrokenId", "problem"}:
 * rowsChecked counts the rows that passed before the first broken one (all
 * rows when valid), lastId is the last of them (null when there is none),
 * firstBrokenId and problem are null when valid.  Memory does not grow with
 * the log: rows are fetched in batches and each row's copies live in a
 * context reset after it.
 *
 * IDENTIFICATION
 *		src/catalog/audit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "backup_offline.h"
#include "catalog/audit.h"

PG_FUNCTION_INFO_V1(bo_write_audit);
PG_FUNCTION_INFO_V1(bo_audit_chain);
PG_FUNCTION_INFO_V1(bo_audit_pending_chain);
PG_FUNCTION_INFO_V1(bo_audit_append_only);
PG_FUNCTION_INFO_V1(bo_verify_audit_chain);

/* audit_log columns in canonical (hash) order; row_hash last, not hashed */
typedef enum AuditField
{
	AF_ID,
	AF_OCCURRED_AT,
	AF_ORGANIZATION_ID,
	AF_ACTOR_ROLE,
	AF_ACTOR_USER_ID,
	AF_ACTION,
	AF_OBJECT_TYPE,
	AF_OBJECT_ID,
	AF_DETAILS,
	AF_TRANSACTION_ID,
	AF_PREV_HASH,
	AF_ROW_HASH,
	AF_NUM
} AuditField;

static const char *const audit_column[AF_NUM] = {
	"id", "occurred_at", "organization_id", "actor_role", "actor_user_id",
	"action", "object_type", "object_id", "details", "transaction_id",
	"prev_hash", "row_hash"
};

/* rows fetched per cursor round trip in verify_audit_chain() */
#define VERIFY_BATCH_ROWS	1000

static const uint8 zero_hash[BO_AUDIT_HASH_LEN] = {0};

/* saved plans (prepare_plans), for the extension's schema audit_plans_nsp */
enum
{
	PLAN_HEAD_BY_KEY,			/* read the head by key */
	PLAN_HEAD_BY_TID,			/* read the head by ctid */
	PLAN_HEAD_CREATE,			/* create the head on the first write */
	PLAN_HEAD_ADVANCE,			/* update the head by ctid */
	PLAN_LOG_INSERT,			/* insert a chained row into audit_log */
	PLAN_PENDING_INSERT,		/* queue an entry in audit_pending */
	PLAN_PENDING_TAKE,			/* delete a pending row by ctid */
	PLAN_PENDING_LIST,			/* this transaction's pending rows, in order */
	NUM_PLANS
};
static SPIPlanPtr audit_plans[NUM_PLANS];
static Oid	audit_plans_nsp = InvalidOid;
static Oid	head_relid = InvalidOid;

/* the head version this backend's transaction head_tid_fxid last wrote */
static FullTransactionId head_tid_fxid;
static ItemPointerData head_tid;

/* audit_pending.seq of this backend's last write */
static int64 pending_seq = 0;

/*
 * The last transaction of this backend that queued a pending row, and
 * whether some of its rows may still be pending (cleared by flush_pending(),
 * set again by a write or a subtransaction abort, which may bring back rows
 * a flush had taken).
 */
static FullTransactionId pending_fxid;
static bool pending_unflushed = false;
static bool pending_callback_registered = false;

/* the last pending row this backend chained: its seq and its new id */
static int64 chained_seq = 0;
static int64 chained_id = 0;

/* while the chainer inserts a finished row: that row's id (else 0) */
static int64 chain_insert_id = 0;

/*
 * Feed one length-prefixed field to the hash; len -1 is SQL NULL.
 */
static void
hash_field(pg_cryptohash_ctx *ctx, const void *data, int32 len)
{
	uint32		be = pg_hton32((uint32) len);

	if (pg_cryptohash_update(ctx, (const uint8 *) &be, sizeof(be)) < 0 ||
		(len > 0 && pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0))
		elog(ERROR, "could not compute audit row hash: %s",
			 pg_cryptohash_error(ctx));
}

/*
 * Feed a string in the database encoding to the hash, as UTF-8.
 */
static void
hash_text_field(pg_cryptohash_ctx *ctx, const char *s, int len)
{
	char	   *utf8 = pg_server_to_any(s, len, PG_UTF8);

	if (utf8 != s)
		len = strlen(utf8);
	hash_field(ctx, utf8, len);
}

/*
 * Feed a 64-bit integer to the hash, big-endian.
 */
static void
hash_int64_field(pg_cryptohash_ctx *ctx, uint64 v)
{
	uint64		be = pg_hton64(v);

	hash_field(ctx, &be, sizeof(be));
}

/*
 * Compute row_hash from the audit_log columns in canonical order (values
 * and nulls indexed by AuditField; the row_hash entry is ignored).
 * Detoasted copies are made in the current memory context.
 */
static void
audit_row_hash(const Datum *values, const bool *nulls, uint8 *out)
{
	pg_cryptohash_ctx *ctx;
	int			f;

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not initialize SHA-256 context: %s",
			 pg_cryptohash_error(ctx));

	for (f = 0; f < AF_ROW_HASH; f++)
	{
		Datum		d = values[f];

		if (nulls[f])
		{
			hash_field(ctx, NULL, -1);
			continue;
		}
		switch ((AuditField) f)
		{
			case AF_ID:
				hash_int64_field(ctx, (uint64) DatumGetInt64(d));
				break;
			case AF_OCCURRED_AT:
				hash_int64_field(ctx, (uint64) DatumGetTimestampTz(d));
				break;
			case AF_TRANSACTION_ID:
				hash_int64_field(ctx,
								 U64FromFullTransactionId(DatumGetFullTransactionId(d)));
				break;
			case AF_ORGANIZATION_ID:
			case AF_ACTOR_USER_ID:
				hash_field(ctx, DatumGetUUIDP(d)->data, UUID_LEN);
				break;
			case AF_ACTOR_ROLE:
				{
					const char *name = NameStr(*DatumGetName(d));

					hash_text_field(ctx, name, strlen(name));
					break;
				}
			case AF_ACTION:
			case AF_OBJECT_TYPE:
			case AF_OBJECT_ID:
				{
					text	   *t = DatumGetTextPP(d);

					hash_text_field(ctx, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
					break;
				}
			case AF_DETAILS:
				{
					Jsonb	   *jb = DatumGetJsonbP(d);
					char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

					hash_text_field(ctx, s, strlen(s));
					break;
				}
			case AF_PREV_HASH:
				{
					bytea	   *b = DatumGetByteaPP(d);

					hash_field(ctx, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
					break;
				}
			case AF_ROW_HASH:
			case AF_NUM:
				break;
		}
	}

	if (pg_cryptohash_final(ctx, out, BO_AUDIT_HASH_LEN) < 0)
		elog(ERROR, "could not finalize SHA-256 hash: %s",
			 pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

/*
 * A bytea holding len bytes copied from data.
 */
static bytea *
make_bytea(const uint8 *data, int len)
{
	bytea	   *b = (bytea *) palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

/*
 * Whether a bytea datum holds exactly the 32 bytes at hash.
 */
static bool
bytea_equals_hash(Datum d, const uint8 *hash)
{
	bytea	   *b = DatumGetByteaPP(d);

	return VARSIZE_ANY_EXHDR(b) == BO_AUDIT_HASH_LEN &&
		memcmp(VARDATA_ANY(b), hash, BO_AUDIT_HASH_LEN) == 0;
}

/*
 * Oid of the schema the extension is installed in.
 */
static Oid
audit_namespace(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			nspid = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("backup_offline"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		nspid = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(nspid) || get_namespace_name(nspid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"backup_offline\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION backup_offline first.")));
	return nspid;
}

/*
 * Quoted name of the schema holding the calling SQL function.
 */
static const char *
function_schema(FunctionCallInfo fcinfo)
{
	return quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
}

/*
 * Refuse an empty or missing required audit field.
 */
static void
require_field(const char *value, const char *field)
{
	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("audit entry field \"%s\" must not be empty", field),
				 errhint("Every audit entry names its action and the type of object it concerns.")));
}

/*
 * Make (once per backend and schema) the saved plans.  Called inside SPI.
 */
static void
prepare_plans(Oid nspid)
{
	static const char *const queries[NUM_PLANS] = {
		"SELECT ctid, last_id, last_hash FROM %s.audit_chain_head WHERE singleton",
		"SELECT ctid, last_id, last_hash FROM %s.audit_chain_head WHERE ctid = $1",
		"INSERT INTO %s.audit_chain_head (singleton, last_id, last_hash) "
		"VALUES (true, 0, $1) ON CONFLICT (singleton) DO NOTHING",
		"UPDATE %s.audit_chain_head SET last_id = $2, last_hash = $3 WHERE ctid = $1 "
		"RETURNING ctid",
		"INSERT INTO %s.audit_log (id, occurred_at, organization_id, actor_role, "
		"actor_user_id, action, object_type, object_id, details, transaction_id, "
		"prev_hash, row_hash) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
		"INSERT INTO %s.audit_pending (seq, occurred_at, organization_id, actor_role, "
		"actor_user_id, action, object_type, object_id, details, transaction_id) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
		"DELETE FROM %s.audit_pending WHERE ctid = $1",
		"SELECT ctid, seq, occurred_at, organization_id, actor_role, actor_user_id, "
		"action, object_type, object_id, details, transaction_id "
		"FROM %s.audit_pending WHERE transaction_id = $1 ORDER BY seq"
	};
	static Oid	tid_arg[1] = {TIDOID};
	static Oid	bytea_arg[1] = {BYTEAOID};
	static Oid	advance_args[3] = {TIDOID, INT8OID, BYTEAOID};
	static Oid	log_args[AF_NUM] = {
		INT8OID, TIMESTAMPTZOID, UUIDOID, NAMEOID, UUIDOID, TEXTOID, TEXTOID,
		TEXTOID, JSONBOID, XID8OID, BYTEAOID, BYTEAOID
	};
	static Oid	pending_args[10] = {
		INT8OID, TIMESTAMPTZOID, UUIDOID, NAMEOID, UUIDOID, TEXTOID, TEXTOID,
		TEXTOID, JSONBOID, XID8OID
	};
	static Oid	xid8_arg[1] = {XID8OID};
	static const int nargs[NUM_PLANS] = {0, 1, 1, 3, AF_NUM, 10, 1, 1};
	Oid		   *argtypes[NUM_PLANS] = {
		NULL, tid_arg, bytea_arg, advance_args, log_args, pending_args,
		tid_arg, xid8_arg
	};
	const char *nspname;
	StringInfoData sql;
	int			i;

	if (audit_plans_nsp == nspid)
		return;

	audit_plans_nsp = InvalidOid;
	for (i = 0; i < NUM_PLANS; i++)
	{
		if (audit_plans[i] != NULL)
			SPI_freeplan(audit_plans[i]);
		audit_plans[i] = NULL;
	}

	head_relid = get_relname_relid("audit_chain_head", nspid);
	if (!OidIsValid(head_relid))
		elog(ERROR, "relation \"audit_chain_head\" not found");

	nspname = quote_identifier(get_namespace_name(nspid));
	initStringInfo(&sql);
	for (i = 0; i < NUM_PLANS; i++)
	{
		SPIPlanPtr	plan;

		resetStringInfo(&sql);
		appendStringInfo(&sql, queries[i], nspname);
		plan = SPI_prepare(sql.data, nargs[i], argtypes[i]);
		if (plan == NULL)
			elog(ERROR, "could not prepare audit query: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not save audit query");
		audit_plans[i] = plan;
	}
	pfree(sql.data);
	audit_plans_nsp = nspid;
}

/*
 * Run a saved head query under a snapshot taken now, so that it sees the
 * head as the last committed chainer left it even in a REPEATABLE READ or
 * SERIALIZABLE transaction whose own snapshot is older.  Only called with
 * the chain lock held, so nobody else is changing the head meanwhile.
 */
static int
execute_head_plan(int plan, Datum *values)
{
	return SPI_execute_snapshot(audit_plans[plan], values, NULL,
								GetLatestSnapshot(), InvalidSnapshot,
								false, true, 0);
}

/*
 * Take the chain lock (held until the transaction ends) and read the head,
 * creating it on the first write.  Called inside SPI, after prepare_plans().
 *
 * Within one transaction every chained entry leaves a new version of the
 * head row that cannot be pruned before the transaction ends; looking the
 * head up by key walks all of them, which makes many entries in one
 * transaction quadratic.  So after its first entry the transaction goes
 * straight to the version it left (head_tid).  If that version is not
 * visible any more (a rolled-back subtransaction made it, or something else
 * updated the head since), the lookup by key is used.
 */
static void
lock_chain_head(FullTransactionId fxid, ItemPointer tid, int64 *last_id,
				uint8 *last_hash)
{
	Datum		values[1];
	bool		found = false;
	bool		isnull;
	bytea	   *hash;
	int			attempt;

	LockDatabaseObject(RelationRelationId, head_relid, 0, ExclusiveLock);

	if (FullTransactionIdEquals(head_tid_fxid, fxid) && ItemPointerIsValid(&head_tid))
	{
		values[0] = PointerGetDatum(&head_tid);
		if (execute_head_plan(PLAN_HEAD_BY_TID, values) != SPI_OK_SELECT)
			elog(ERROR, "could not read the audit chain head");
		found = (SPI_processed == 1);
	}

	for (attempt = 0; attempt < 2 && !found; attempt++)
	{
		if (execute_head_plan(PLAN_HEAD_BY_KEY, NULL) != SPI_OK_SELECT)
			elog(ERROR, "could not read the audit chain head");
		found = (SPI_processed == 1);
		if (found)
			break;

		/* first write ever: create the head */
		values[0] = PointerGetDatum(make_bytea(zero_hash, BO_AUDIT_HASH_LEN));
		if (execute_head_plan(PLAN_HEAD_CREATE, values) != SPI_OK_INSERT)
			elog(ERROR, "could not create the audit chain head");
	}
	if (!found)
		elog(ERROR, "audit chain head not found after creating it");

	ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[0],
																SPI_tuptable->tupdesc,
																1, &isnull)),
					tid);
	*last_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 2, &isnull));
	hash = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 3, &isnull));
	if (VARSIZE_ANY_EXHDR(hash) != BO_AUDIT_HASH_LEN || *last_id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("audit chain head is damaged"),
				 errdetail("The head must hold a non-negative id and a %d-byte hash.",
						   BO_AUDIT_HASH_LEN),
				 errhint("Run backup_offline.verify_audit_chain() to locate the damage.")));
	memcpy(last_hash, VARDATA_ANY(hash), BO_AUDIT_HASH_LEN);
}

/*
 * Move the locked chain head (at tid) to the new row and remember where its
 * new version is.  Called inside SPI.
 */
static void
advance_chain_head(FullTransactionId fxid, ItemPointer tid, int64 id,
				   const uint8 *hash)
{
	Datum		values[3];
	bool		isnull;

	values[0] = PointerGetDatum(tid);
	values[1] = Int64GetDatum(id);
	values[2] = PointerGetDatum(make_bytea(hash, BO_AUDIT_HASH_LEN));
	if (execute_head_plan(PLAN_HEAD_ADVANCE, values) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not advance the audit chain head");

	ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[0],
																SPI_tuptable->tupdesc,
																1, &isnull)),
					&head_tid);
	head_tid_fxid = fxid;
}

/*
 * Give an entry its place in the chain: take the chain lock, set id,
 * prev_hash and row_hash in values/nulls (indexed by AuditField, the other
 * fields already filled in; the new datums are allocated in cxt) and move
 * the head to it.  Called inside SPI, after prepare_plans().
 */
static void
chain_entry(Datum *values, bool *nulls, MemoryContext cxt)
{
	FullTransactionId fxid = GetTopFullTransactionId();
	ItemPointerData tid;
	int64		last_id;
	uint8		last_hash[BO_AUDIT_HASH_LEN];
	uint8		row_hash[BO_AUDIT_HASH_LEN];
	MemoryContext oldcxt;

	lock_chain_head(fxid, &tid, &last_id, last_hash);

	oldcxt = MemoryContextSwitchTo(cxt);
	values[AF_ID] = Int64GetDatum(last_id + 1);
	nulls[AF_ID] = false;
	values[AF_PREV_HASH] = PointerGetDatum(make_bytea(last_hash, BO_AUDIT_HASH_LEN));
	nulls[AF_PREV_HASH] = false;
	MemoryContextSwitchTo(oldcxt);

	audit_row_hash(values, nulls, row_hash);
	advance_chain_head(fxid, &tid, last_id + 1, row_hash);

	oldcxt = MemoryContextSwitchTo(cxt);
	values[AF_ROW_HASH] = PointerGetDatum(make_bytea(row_hash, BO_AUDIT_HASH_LEN));
	nulls[AF_ROW_HASH] = false;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Insert a row chain_entry() finished into audit_log; the audit_log_chain
 * trigger lets exactly this row through.  Called inside SPI.
 */
static void
insert_chained(Datum *values, const bool *nulls)
{
	char		cnulls[AF_NUM];
	volatile int rc = 0;
	int			i;

	for (i = 0; i < AF_NUM; i++)
		cnulls[i] = nulls[i] ? 'n' : ' ';

	chain_insert_id = DatumGetInt64(values[AF_ID]);
	PG_TRY();
	{
		rc = SPI_execute_plan(audit_plans[PLAN_LOG_INSERT], values, cnulls, false, 0);
	}
	PG_FINALLY();
	{
		chain_insert_id = 0;
	}
	PG_END_TRY();
	if (rc != SPI_OK_INSERT || SPI_processed != 1)
		elog(ERROR, "audit_log insert returned %d for " UINT64_FORMAT " rows",
			 rc, (uint64) SPI_processed);
}

/*
 * Read a pending row (of audit_pending, or of PLAN_PENDING_LIST's result)
 * into values/nulls, indexed by AuditField (occurred_at to transaction_id),
 * and its seq.  External TOAST values are fetched into memory first, so the
 * row may be deleted afterwards.
 */
static void
pending_values(HeapTuple tuple, TupleDesc tupdesc, Datum *values, bool *nulls,
			   int64 *seq)
{
	int			f;
	int			attnum;
	bool		isnull;

	if (HeapTupleHasExternal(tuple))
		tuple = toast_flatten_tuple(tuple, tupdesc);

	for (f = 0; f < AF_NUM; f++)
	{
		values[f] = (Datum) 0;
		nulls[f] = true;
	}
	for (f = AF_OCCURRED_AT; f <= AF_TRANSACTION_ID; f++)
	{
		attnum = SPI_fnumber(tupdesc, audit_column[f]);
		if (attnum <= 0)
			elog(ERROR, "column \"%s\" of audit_pending not found", audit_column[f]);
		values[f] = heap_getattr(tuple, attnum, tupdesc, &nulls[f]);
	}
	attnum = SPI_fnumber(tupdesc, "seq");
	if (attnum <= 0)
		elog(ERROR, "column \"seq\" of audit_pending not found");
	*seq = DatumGetInt64(heap_getattr(tuple, attnum, tupdesc, &isnull));
}

/*
 * Take one pending row out of audit_pending (by ctid) and chain it.  Returns
 * false, changing nothing, when the row is gone: flush_pending() chained it
 * already.  Called inside SPI.
 */
static bool
chain_pending(HeapTuple tuple, TupleDesc tupdesc, ItemPointer ctid)
{
	Datum		values[AF_NUM];
	bool		nulls[AF_NUM];
	Datum		tidv = PointerGetDatum(ctid);
	int64		seq;

	pending_values(tuple, tupdesc, values, nulls, &seq);
	if (SPI_execute_plan(audit_plans[PLAN_PENDING_TAKE], &tidv, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not take a pending audit entry");
	if (SPI_processed == 0)
		return false;

	chain_entry(values, nulls, CurrentMemoryContext);
	insert_chained(values, nulls);
	chained_seq = seq;
	chained_id = DatumGetInt64(values[AF_ID]);
	return true;
}

/*
 * Subtransaction callback: an aborted subtransaction may have undone a
 * flush, so the next direct INSERT must look for pending rows again.
 */
static void
pending_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		pending_unflushed = true;
}

/*
 * Chain, in the order they were written, the entries this transaction has
 * queued and not chained yet.  Called inside SPI.
 */
static void
flush_pending(FullTransactionId fxid)
{
	SPITupleTable *pending;
	uint64		n;
	uint64		i;
	Datum		xid;
	bool		isnull;

	if (!FullTransactionIdEquals(pending_fxid, fxid) || !pending_unflushed)
		return;					/* nothing of this transaction is pending */

	xid = FullTransactionIdGetDatum(fxid);
	if (SPI_execute_plan(audit_plans[PLAN_PENDING_LIST], &xid, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the pending audit entries");
	pending = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		ItemPointer ctid;

		ctid = (ItemPointer) DatumGetPointer(SPI_getbinval(pending->vals[i],
														   pending->tupdesc, 1, &isnull));
		chain_pending(pending->vals[i], pending->tupdesc, ctid);
	}
	SPI_freetuptable(pending);
	pending_unflushed = false;
}

/*
 * Queue one audit entry (see audit.h); returns its id when it was chained
 * at once (SET CONSTRAINTS ... IMMEDIATE), else 0.
 */
int64
bo_audit_write(const char *action, const char *object_type,
			   const char *object_id, const pg_uuid_t *organization_id,
			   Jsonb *details, const char *actor_role)
{
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	const char *user_id;
	FullTransactionId fxid;
	Oid			nspid;
	Oid			save_userid;
	int			save_sec_context;
	int64		seq;

	require_field(action, "action");
	require_field(object_type, "object_type");
	if (details != NULL && !JB_ROOT_IS_OBJECT(details))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("audit entry field \"details\" must be a JSON object"),
				 errhint("Pass the details as a JSON object, for example '{}'.")));
	if (actor_role == NULL)
		actor_role = GetUserNameFromId(GetSessionUserId(), false);
	else if (strlen(actor_role) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("audit entry field \"actor_role\" is too long"),
				 errdetail("Role names are at most %d bytes long.", NAMEDATALEN - 1)));

	if (!pending_callback_registered)
	{
		RegisterSubXactCallback(pending_subxact_callback, NULL);
		pending_callback_registered = true;
	}
	nspid = audit_namespace();
	fxid = GetTopFullTransactionId();
	seq = ++pending_seq;

	/* the columns of audit_pending, in the order of PLAN_PENDING_INSERT */
	values[0] = Int64GetDatum(seq);
	values[1] = TimestampTzGetDatum(GetCurrentStatementStartTimestamp());
	if (organization_id != NULL)
		values[2] = UUIDPGetDatum(organization_id);
	else
		nulls[2] = 'n';
	values[3] = DirectFunctionCall1(namein, CStringGetDatum(actor_role));
	user_id = GetConfigOption("backup_offline.user_id", true, false);
	if (user_id == NULL || user_id[0] == '\0')
		nulls[4] = 'n';
	else
		values[4] = DirectFunctionCall1(uuid_in, CStringGetDatum(user_id));
	values[5] = CStringGetTextDatum(action);
	values[6] = CStringGetTextDatum(object_type);
	if (object_id != NULL)
		values[7] = CStringGetTextDatum(object_id);
	else
		nulls[7] = 'n';
	if (details != NULL)
		values[8] = JsonbPGetDatum(details);
	else
		values[8] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	values[9] = FullTransactionIdGetDatum(fxid);

	/*
	 * Queuing the deferred chain event is refused inside a security-restricted
	 * operation (the catalog's change trigger runs in one), because deferred
	 * user code would escape the sandbox.  The only code this INSERT queues
	 * or runs is the extension's own (audit_pending has no other triggers,
	 * defaults or policies, and only its owner could add any), so the
	 * restriction is lifted for the INSERT alone.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	if (save_sec_context & SECURITY_RESTRICTED_OPERATION)
		SetUserIdAndSecContext(save_userid,
							   save_sec_context & ~SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		int			rc;

		SPI_connect();
		prepare_plans(nspid);
		rc = SPI_execute_plan(audit_plans[PLAN_PENDING_INSERT], values, nulls, false, 0);
		if (rc != SPI_OK_INSERT || SPI_processed != 1)
			elog(ERROR, "audit_pending insert returned %d for " UINT64_FORMAT " rows",
				 rc, (uint64) SPI_processed);
		pending_fxid = fxid;
		pending_unflushed = true;
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();

	return chained_seq == seq ? chained_id : 0;
}

/*
 * write_audit(action text, object_type text, object_id text,
 *			   organization_id uuid, details jsonb DEFAULT '{}',
 *			   actor_role name DEFAULT NULL) RETURNS bigint
 *
 * SECURITY DEFINER; returns the new entry's id when it is chained at once
 * (SET CONSTRAINTS ... IMMEDIATE), NULL when it will be at commit.
 */
Datum
bo_write_audit(PG_FUNCTION_ARGS)
{
	char	   *action = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *object_type = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *object_id = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	pg_uuid_t  *organization_id = PG_ARGISNULL(3) ? NULL : PG_GETARG_UUID_P(3);
	Jsonb	   *details = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	char	   *actor_role = PG_ARGISNULL(5) ? NULL : NameStr(*PG_GETARG_NAME(5));
	int64		id;

	id = bo_audit_write(action, object_type, object_id, organization_id,
						details, actor_role);
	if (id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(id);
}

/*
 * audit_pending_chain() RETURNS trigger, CONSTRAINT TRIGGER AFTER INSERT ON
 * audit_pending DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
 *
 * SECURITY DEFINER.  Moves the pending row into the chain: see the file
 * header.
 */
Datum
bo_audit_pending_chain(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("audit_pending_chain() must be fired AFTER INSERT FOR EACH ROW")));

	SPI_connect();
	prepare_plans(RelationGetNamespace(trigdata->tg_relation));
	chain_pending(trigdata->tg_trigtuple, RelationGetDescr(trigdata->tg_relation),
				  &trigdata->tg_trigtuple->t_self);
	SPI_finish();

	return PointerGetDatum(NULL);
}

/*
 * audit_log_chain() RETURNS trigger, BEFORE INSERT ON audit_log FOR EACH ROW
 *
 * Lets the rows the chainer finished through; refuses rows that bring their
 * own chain columns; chains a direct INSERT at once (after the entries the
 * transaction queued before it).  See the file header.
 */
Datum
bo_audit_chain(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	static const AuditField assigned[] = {
		AF_ID, AF_OCCURRED_AT, AF_TRANSACTION_ID, AF_PREV_HASH, AF_ROW_HASH
	};
	MemoryContext callercxt;
	Relation	rel;
	TupleDesc	tupdesc;
	FullTransactionId fxid;
	int			attnums[AF_NUM];
	Datum	   *tvalues;
	bool	   *tnulls;
	Datum		values[AF_NUM];
	bool		nulls[AF_NUM];
	const char *user_id;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("audit_log_chain() must be fired BEFORE INSERT FOR EACH ROW")));

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	for (i = 0; i < AF_NUM; i++)
	{
		attnums[i] = SPI_fnumber(tupdesc, audit_column[i]);
		if (attnums[i] <= 0)
			elog(ERROR, "column \"%s\" of relation \"%s\" not found",
				 audit_column[i], RelationGetRelationName(rel));
	}

	tvalues = (Datum *) palloc(tupdesc->natts * sizeof(Datum));
	tnulls = (bool *) palloc(tupdesc->natts * sizeof(bool));
	heap_deform_tuple(trigdata->tg_trigtuple, tupdesc, tvalues, tnulls);

	/* the row insert_chained() is inserting: already numbered and hashed */
	if (chain_insert_id != 0 && !tnulls[attnums[AF_ID] - 1] &&
		DatumGetInt64(tvalues[attnums[AF_ID] - 1]) == chain_insert_id)
		return PointerGetDatum(trigdata->tg_trigtuple);

	for (i = 0; i < lengthof(assigned); i++)
	{
		const char *col = audit_column[assigned[i]];

		if (!tnulls[attnums[assigned[i]] - 1])
			ereport(ERROR,
					(errcode(ERRCODE_GENERATED_ALWAYS),
					 errmsg("cannot insert a value into column \"%s\" of audit_log", col),
					 errdetail("Column \"%s\" is assigned by the audit chain.", col),
					 errhint("Write audit entries with backup_offline.write_audit(). "
							 "To load a dumped audit trail unchanged, restore it with session_replication_role = replica.")));
	}

	for (i = 0; i < AF_NUM; i++)
	{
		values[i] = tvalues[attnums[i] - 1];
		nulls[i] = tnulls[attnums[i] - 1];
	}

	user_id = GetConfigOption("backup_offline.user_id", true, false);
	if (user_id == NULL || user_id[0] == '\0')
	{
		values[AF_ACTOR_USER_ID] = (Datum) 0;
		nulls[AF_ACTOR_USER_ID] = true;
	}
	else
	{
		values[AF_ACTOR_USER_ID] = DirectFunctionCall1(uuid_in, CStringGetDatum(user_id));
		nulls[AF_ACTOR_USER_ID] = false;
	}
	values[AF_OCCURRED_AT] = TimestampTzGetDatum(GetCurrentStatementStartTimestamp());
	nulls[AF_OCCURRED_AT] = false;
	fxid = GetTopFullTransactionId();
	values[AF_TRANSACTION_ID] = FullTransactionIdGetDatum(fxid);
	nulls[AF_TRANSACTION_ID] = false;

	callercxt = CurrentMemoryContext;

	SPI_connect();
	prepare_plans(RelationGetNamespace(rel));
	flush_pending(fxid);
	chain_entry(values, nulls, callercxt);
	SPI_finish();

	for (i = 0; i < AF_NUM; i++)
	{
		tvalues[attnums[i] - 1] = values[i];
		tnulls[attnums[i] - 1] = nulls[i];
	}
	return PointerGetDatum(heap_form_tuple(tupdesc, tvalues, tnulls));
}

/*
 * audit_log_append_only() RETURNS trigger, BEFORE UPDATE OR DELETE (row or
 * statement) and BEFORE TRUNCATE ON audit_log
 *
 * Refuses the change, whoever makes it.
 */
Datum
bo_audit_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("audit_log_append_only() must be called as a trigger")));

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";
	else
		op = "INSERT";

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s is append-only", RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("%s of audit entries is refused for every role.", op),
			 errhint("Audit entries are only ever added, through backup_offline.write_audit(); "
					 "backup_offline.verify_audit_chain() checks that none was changed or removed.")));
	PG_RETURN_NULL();
}

/*
 * verify_audit_chain() RETURNS jsonb
 *
 * Recomputes every row_hash and link in id order, streaming; see the file
 * header for the checks and the result's fields.  SECURITY DEFINER, so the
 * result does not depend on which rows the caller may see.
 */
Datum
bo_verify_audit_chain(PG_FUNCTION_ARGS)
{
	const char *nspname = function_schema(fcinfo);
	StringInfoData sql;
	StringInfoData result;
	SPIPlanPtr	plan;
	Portal		portal;
	MemoryContext rowcxt;
	int64		head_id = 0;
	uint8		head_hash[BO_AUDIT_HASH_LEN];
	bool		head_hash_ok = true;
	uint8		prev_hash[BO_AUDIT_HASH_LEN];
	int64		rows_checked = 0;
	int64		last_id = 0;
	int64		broken_id = 0;
	const char *problem = NULL;
	bool		isnull;
	int			i;

	memcpy(head_hash, zero_hash, BO_AUDIT_HASH_LEN);
	memcpy(prev_hash, zero_hash, BO_AUDIT_HASH_LEN);

	SPI_connect();

	/* the head, under the statement's snapshot (read-only SPI) */
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT last_id, last_hash FROM %s.audit_chain_head WHERE singleton",
					 nspname);
	if (SPI_execute(sql.data, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the audit chain head");
	if (SPI_processed == 1)
	{
		bytea	   *hash;

		head_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
		hash = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 2, &isnull));
		if (VARSIZE_ANY_EXHDR(hash) == BO_AUDIT_HASH_LEN)
			memcpy(head_hash, VARDATA_ANY(hash), BO_AUDIT_HASH_LEN);
		else
			head_hash_ok = false;
	}
	SPI_freetuptable(SPI_tuptable);

	/* the log, in id order, through a cursor under the same snapshot */
	resetStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (i = 0; i < AF_NUM; i++)
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", audit_column[i]);
	appendStringInfo(&sql, " FROM %s.audit_log ORDER BY id", nspname);
	plan = SPI_prepare(sql.data, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare audit_log scan: %s",
			 SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext,
								   "audit chain verification row",
								   ALLOCSET_DEFAULT_SIZES);

	while (problem == NULL)
	{
		uint64		n;

		SPI_cursor_fetch(portal, true, VERIFY_BATCH_ROWS);
		if (SPI_processed == 0)
			break;

		for (n = 0; n < SPI_processed && problem == NULL; n++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[n];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			Datum		values[AF_NUM];
			bool		nulls[AF_NUM];
			uint8		computed[BO_AUDIT_HASH_LEN] = {0};
			MemoryContext oldcxt;
			int64		id;

			CHECK_FOR_INTERRUPTS();
			oldcxt = MemoryContextSwitchTo(rowcxt);

			for (i = 0; i < AF_NUM; i++)
				values[i] = SPI_getbinval(tuple, desc, i + 1, &nulls[i]);
			id = DatumGetInt64(values[AF_ID]);

			if (id != last_id + 1)
				problem = "gap";
			else if (nulls[AF_PREV_HASH] ||
					 !bytea_equals_hash(values[AF_PREV_HASH], prev_hash))
				problem = "prev_hash_mismatch";
			else
			{
				audit_row_hash(values, nulls, computed);
				if (nulls[AF_ROW_HASH] ||
					!bytea_equals_hash(values[AF_ROW_HASH], computed))
					problem = "row_hash_mismatch";
			}

			if (problem != NULL)
				broken_id = id;
			else
			{
				memcpy(prev_hash, computed, BO_AUDIT_HASH_LEN);
				last_id = id;
				rows_checked++;
			}

			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(rowcxt);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	if (problem == NULL &&
		(head_id != last_id || !head_hash_ok ||
		 memcmp(head_hash, prev_hash, BO_AUDIT_HASH_LEN) != 0))
	{
		problem = "head_mismatch";
		broken_id = head_id == last_id ? last_id : Min(head_id, last_id) + 1;
	}

	SPI_finish();

	initStringInfo(&result);
	appendStringInfo(&result, "{\"valid\": %s, \"rowsChecked\": " INT64_FORMAT,
					 problem == NULL ? "true" : "false", rows_checked);
	if (last_id > 0)
		appendStringInfo(&result, ", \"lastId\": " INT64_FORMAT, last_id);
	else
		appendStringInfoString(&result, ", \"lastId\": null");
	if (problem != NULL)
		appendStringInfo(&result,
						 ", \"firstBrokenId\": " INT64_FORMAT ", \"problem\": \"%s\"}",
						 broken_id, problem);
	else
		appendStringInfoString(&result, ", \"firstBrokenId\": null, \"problem\": null}");

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(result.data)));
}
