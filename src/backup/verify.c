/*-------------------------------------------------------------------------
 *
 * verify.c
 *		verify_snapshot, and materialising a snapshot chain into tables.
 *
 * Levels:
 *	checksums  every object's stored bytes against the manifest (size and
 *			   digest), the manifest object against the catalog's checksum;
 *			   needs no key.
 *	decrypt    every object read through the archive reader (AEAD, frame
 *			   and trailer checks), its plaintext length and digest against
 *			   the manifest; the stored manifest's self-checksum, and that it
 *			   is the catalog's manifest.
 *	restore    decrypt, then the snapshot's chain materialised into a
 *			   scratch schema (bo_materialize_table_digest: the stored COPY
 *			   streams loaded, each row digested as it is inserted), each
 *			   table's row count and rows digest compared with the
 *			   manifest; the schema is dropped again.
 *
 * Damage is reported in the result (valid false, problems[]), not raised,
 * and recorded on the snapshot: COMPLETED becomes CORRUPTED, and a
 * CORRUPTED snapshot that verifies again becomes COMPLETED.  The work runs
 * as the extension's owner (the caller needs only EXECUTE and to see the
 * snapshot through row-level security).
 *
 * IDENTIFICATION
 *		src/backup/verify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/paths.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parse_type.h"
#include "parser/scansup.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

#include "backup_offline.h"
#include "backup/backup.h"
#include "storage/storage.h"

PG_FUNCTION_INFO_V1(bo_verify_snapshot_sql);
PG_FUNCTION_INFO_V1(bo_rows_digest_sql);
PG_FUNCTION_INFO_V1(bo_materialize_snapshot_sql);

/* ---------------------------------------------------------------------
 * jsonb helpers
 * ---------------------------------------------------------------------
 */
JsonbValue *
bo_jget(JsonbContainer *c, const char *key)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
}

char *
bo_jstr(JsonbContainer *c, const char *key)
{
	JsonbValue *v = bo_jget(c, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

uint64
bo_jnum(JsonbContainer *c, const char *key)
{
	JsonbValue *v = bo_jget(c, key);

	if (v == NULL || v->type != jbvNumeric)
		return 0;
	return DatumGetUInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
}

JsonbContainer *
bo_jcontainer(JsonbContainer *c, const char *key)
{
	JsonbValue *v = bo_jget(c, key);

	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

/* the elements of a JSON array container that are objects or arrays */
List *
bo_jelements(JsonbContainer *array)
{
	List	   *out = NIL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (array == NULL)
		return NIL;
	it = JsonbIteratorInit(array);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_ELEM)
		{
			JsonbValue *copy = palloc(sizeof(JsonbValue));

			*copy = v;
			out = lappend(out, copy);
		}
	}
	return out;
}

/* ---------------------------------------------------------------------
 * Materialisation
 *
 * A table of a chain is created from the manifest (create_table_from_entry)
 * and filled from its stored COPY streams by a loader that does what COPY
 * FROM does for a table without indexes, triggers, defaults or constraints
 * other than NOT NULL (which a table being materialised is): the server's
 * COPY parser with the columns' receive or input functions (NextCopyFrom),
 * the NOT NULL check, then table_multi_insert in batches through one
 * bulk-insert state.  Inserting here, rather than
 * through CopyFrom, lets the loader encode each row as it goes in, with the
 * backups' encoder, and add it to a rows digest: the digest
 * bo_table_rows_digest computes by reading the table back (the values
 * encoded are the values stored), without that second scan, which also
 * detoasts and decompresses every long value.  The rows an incremental
 * deletes are deleted with RETURNING, their images encoded and subtracted
 * (the digest is a sum), so the digest is that of the table as it ends.
 *
 * For speed, a materialised table differs from its source in two ways that
 * its rows do not show:
 *	- its TOASTable columns are created with COMPRESSION lz4 when the
 *	  server has lz4 (pglz compressing long values was most of the load's
 *	  time); the source's columns usually take the server's default, pglz;
 *	- its rows are inserted frozen, as COPY FREEZE does: the table was
 *	  created in the current subtransaction, so they vanish with it on an
 *	  error; its pages are all-visible from the start, and nothing needs to
 *	  set hint bits on its rows or freeze them later.  As with COPY FREEZE,
 *	  a transaction whose snapshot predates the commit that creates the
 *	  table sees its rows once the table is committed (it would otherwise
 *	  see an empty table).
 * ---------------------------------------------------------------------
 */

/* the archive object COPY FROM is reading (data_source_cb has no argument) */
static BoArchiveReader *copy_source = NULL;

static int
copy_source_read(void *outbuf, int minread, int maxread)
{
	int			got = 0;

	while (got < minread)
	{
		size_t		n = bo_archive_read(copy_source, (char *) outbuf + got, maxread - got);

		if (n == 0)
			break;
		got += n;
	}
	return got;
}

/* the rows of one table_multi_insert: COPY FROM's limits */
#define BO_LOAD_BATCH_ROWS 1000
#define BO_LOAD_BATCH_BYTES 65535

/* loading rows into one table, and digesting them */
typedef struct BoLoader
{
	Relation	rel;
	CommandId	cid;
	int			options;		/* table_multi_insert options */
	BulkInsertState bistate;
	MemoryContext cxt;			/* the loader's, deleted at the end */
	MemoryContext rowcxt;		/* the parsed row, reset per row */
	MemoryContext batchcxt;		/* inserting a batch (toasting), reset per batch */
	TupleTableSlot *slots[BO_LOAD_BATCH_ROWS];
	int			nslots;			/* made */
	int			nused;			/* holding the batch's rows */
	Size		bytes;			/* the batch's tuple bytes */
	BoRowsDigest *digest;		/* NULL: no digest */
	BoRowEncoder enc;			/* the digest's encoder */
} BoLoader;

/*
 * A row's NULLs against the NOT NULL columns of tupdesc, as the executor
 * checks them: the loaders insert below the executor.
 */
static void
check_not_null(TupleDesc tupdesc, const bool *nulls, const char *relname)
{
	int			i;

	if (tupdesc->constr == NULL || !tupdesc->constr->has_not_null)
		return;
	for (i = 0; i < tupdesc->natts; i++)
		if (nulls[i] && TupleDescAttr(tupdesc, i)->attnotnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
							NameStr(TupleDescAttr(tupdesc, i)->attname), relname)));
}

/*
 * Start loading rows into rel (created in this transaction; no indexes,
 * triggers, defaults or constraints but NOT NULL, which the loaders check);
 * with digest, every row loaded is encoded as format and added to it.
 */
static void
loader_begin(BoLoader *l, Relation rel, BoRowFormat format, BoRowsDigest *digest)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	MemoryContext old;

	if (rel->rd_rel->relhasindex || rel->trigdesc != NULL ||
		(constr != NULL && (constr->num_defval > 0 || constr->num_check > 0 ||
							constr->has_generated_stored || constr->missing != NULL)))
		elog(ERROR, "table \"%s\" to load has indexes, triggers, defaults or constraints",
			 RelationGetRelationName(rel));
	memset(l, 0, sizeof(*l));
	l->rel = rel;
	l->cid = GetCurrentCommandId(true);
	/* as COPY FROM: a new file has no free space worth looking up */
	if (rel->rd_createSubid != InvalidSubTransactionId ||
		rel->rd_firstRelfilenodeSubid != InvalidSubTransactionId)
		l->options |= TABLE_INSERT_SKIP_FSM;
	/* as COPY FREEZE: the table goes away with this subtransaction if it fails */
	if (rel->rd_createSubid == GetCurrentSubTransactionId() ||
		rel->rd_newRelfilenodeSubid == GetCurrentSubTransactionId())
		l->options |= TABLE_INSERT_FROZEN;
	l->cxt = AllocSetContextCreate(CurrentMemoryContext, "materialise table", ALLOCSET_DEFAULT_SIZES);
	l->rowcxt = AllocSetContextCreate(l->cxt, "materialise row", ALLOCSET_DEFAULT_SIZES);
	l->batchcxt = AllocSetContextCreate(l->cxt, "materialise batch", ALLOCSET_DEFAULT_SIZES);
	l->bistate = GetBulkInsertState();
	l->digest = digest;
	if (digest != NULL)
	{
		old = MemoryContextSwitchTo(l->cxt);
		bo_row_encoder_init(&l->enc, RelationGetDescr(rel), format, NIL);
		MemoryContextSwitchTo(old);
	}
}

/* insert the batch */
static void
loader_flush(BoLoader *l)
{
	MemoryContext old;
	int			i;

	if (l->nused == 0)
		return;
	old = MemoryContextSwitchTo(l->batchcxt);
	table_multi_insert(l->rel, l->slots, l->nused, l->cid, l->options, l->bistate);
	MemoryContextSwitchTo(old);
	for (i = 0; i < l->nused; i++)
		ExecClearTuple(l->slots[i]);
	MemoryContextReset(l->batchcxt);
	l->nused = 0;
	l->bytes = 0;
}

/* the empty slot for the batch's next row */
static TupleTableSlot *
loader_slot(BoLoader *l)
{
	TupleTableSlot *slot;

	CHECK_FOR_INTERRUPTS();
	if (l->nused == l->nslots)
	{
		MemoryContext old = MemoryContextSwitchTo(l->cxt);

		l->slots[l->nslots++] = MakeSingleTupleTableSlot(RelationGetDescr(l->rel), &TTSOpsHeapTuple);
		MemoryContextSwitchTo(old);
	}
	slot = l->slots[l->nused];
	ExecClearTuple(slot);
	return slot;
}

/* add the row of slot (its values deformed) to the digest */
static void
loader_digest(BoLoader *l, TupleTableSlot *slot)
{
	if (l->digest != NULL)
	{
		bo_row_encode(&l->enc, slot->tts_values, slot->tts_isnull);
		bo_rows_digest_add(l->digest, l->enc.row.data, l->enc.row.len);
	}
}

/* the batch's next slot holds a row of len bytes: insert the batch when full */
static void
loader_keep(BoLoader *l, Size len)
{
	l->bytes += len;
	if (++l->nused == BO_LOAD_BATCH_ROWS || l->bytes >= BO_LOAD_BATCH_BYTES)
		loader_flush(l);
}

/* parse the next row of cstate, digest it and add it to the batch; false at the end */
static bool
loader_row(void *arg, CopyFromState cstate)
{
	BoLoader   *l = arg;
	TupleTableSlot *slot = loader_slot(l);
	HeapTuple	tuple;
	MemoryContext old;

	MemoryContextReset(l->rowcxt);
	old = MemoryContextSwitchTo(l->rowcxt);
	if (!NextCopyFrom(cstate, NULL, slot->tts_values, slot->tts_isnull))
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	check_not_null(RelationGetDescr(l->rel), slot->tts_isnull, RelationGetRelationName(l->rel));
	ExecStoreVirtualTuple(slot);
	loader_digest(l, slot);
	/* the row as a tuple in the slot's own memory, kept until the batch is inserted */
	tuple = ExecFetchSlotHeapTuple(slot, true, NULL);
	MemoryContextSwitchTo(old);
	loader_keep(l, tuple->t_len);
	return true;
}

/* add a row formed elsewhere (a tuple's t_len bytes), digested unless digested already */
static void
loader_tuple(BoLoader *l, const void *data, Size len, bool digested)
{
	TupleTableSlot *slot = loader_slot(l);
	HeapTuple	tuple;

	/* in one chunk of the slot's memory: the slot frees it when cleared */
	tuple = MemoryContextAlloc(slot->tts_mcxt, HEAPTUPLESIZE + len);
	tuple->t_len = len;
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = InvalidOid;
	tuple->t_data = (HeapTupleHeader) ((char *) tuple + HEAPTUPLESIZE);
	memcpy(tuple->t_data, data, len);
	if (HeapTupleHeaderGetNatts(tuple->t_data) > RelationGetDescr(l->rel)->natts)
		elog(ERROR, "a parallel loader sent a row with %d columns for table \"%s\"",
			 HeapTupleHeaderGetNatts(tuple->t_data), RelationGetRelationName(l->rel));
	ExecStoreHeapTuple(tuple, slot, true);
	if (l->digest != NULL && !digested)
	{
		slot_getallattrs(slot);
		loader_digest(l, slot);
	}
	loader_keep(l, len);
}

/* insert what is left and release the loader */
static void
loader_end(BoLoader *l)
{
	int			i;

	loader_flush(l);
	FreeBulkInsertState(l->bistate);
	table_finish_bulk_insert(l->rel, l->options);
	for (i = 0; i < l->nslots; i++)
		ExecDropSingleTupleTableSlot(l->slots[i]);
	MemoryContextDelete(l->cxt);
}

/*
 * The COPY options of a stored stream of that format in the source's server
 * encoding: the ENCODING option of a text COPY; for binary COPY, whose
 * receive functions convert text from the client encoding, the client
 * encoding is set to it (set_client_encoding; the caller's GUC level
 * restores it).
 */
static List *
copy_options(BoRowFormat format, const char *encoding, bool set_client_encoding)
{
	List	   *options = NIL;

	if (format == BO_ROW_BINARY)
	{
		options = lappend(options, makeDefElem("format", (Node *) makeString("binary"), -1));
		if (encoding != NULL && set_client_encoding)
			SetConfigOption("client_encoding", encoding, PGC_SUSET, PGC_S_SESSION);
	}
	else if (encoding != NULL)
		options = lappend(options, makeDefElem("encoding", (Node *) makeString(pstrdup(encoding)), -1));
	return options;
}

/* what to do with each row of a stream; false at its end */
typedef bool (*BoRowFn) (void *arg, CopyFromState cstate);

/* the server's COPY FROM parser over the stored stream "name", for rel: fn on every row */
static void
read_stream(BoStorage *storage, const char *name, Relation rel, List *options, BoRowFn fn, void *arg)
{
	ParseState *pstate = make_parsestate(NULL);
	CopyFromState cstate;
	ErrorContextCallback errcallback;

	/* as logical replication's table sync does: COPY FROM needs the range table */
	(void) addRangeTableEntryForRelation(pstate, rel, AccessShareLock, NULL, false, false);
	copy_source = bo_archive_reader_open(storage, name, NULL);
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source_read, NIL, options);
		/* errors name the row and column, as COPY FROM's do */
		errcallback.callback = CopyFromErrorCallback;
		errcallback.arg = (void *) cstate;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;
		while (fn(arg, cstate))
			;
		error_context_stack = errcallback.previous;
		EndCopyFrom(cstate);
		bo_archive_reader_close(copy_source);
	}
	PG_FINALLY();
	{
		copy_source = NULL;
	}
	PG_END_TRY();
	free_parsestate(pstate);
}

/* ---------------------------------------------------------------------
 * The parallel loader
 *
 * Parsing a stream (reading, decrypting and decompressing it, then every
 * value's receive or input function: jsonb's is the dearest) costs about
 * as much as digesting and inserting its rows.  For a large stream the
 * loader therefore starts one parallel worker (a ParallelContext; the
 * restore job and verify_snapshot run in a transaction like any query)
 * that parses the streams and sends each row, formed as a heap tuple,
 * through a shared memory queue; the leader inserts them as they come.
 * Each row is digested once, before it is formed, by whichever process
 * has time: the worker digests the rows it sends while the queue holds
 * more than half its size of rows the leader has not taken (the leader is
 * behind), the leader the others (the message says which); the worker's
 * share of the digest comes with its last message.  Either way the values
 * encoded are those of the tuple the leader inserts, as when the leader
 * parses itself.  The worker reads the table's definition only; the
 * leader, in parallel mode while the worker runs, only inserts (as
 * parallel CREATE TABLE AS does).  An error in the worker is raised in the
 * leader.
 *
 * Used when max_parallel_maintenance_workers > 0, the streams hold at
 * least min_parallel_table_scan_size bytes of plaintext, the table is not
 * temporary (the keys an incremental deletes), a worker can be had, and
 * the source's server encoding is this database's (a parallel worker's
 * client encoding is the database's); else the leader parses.
 * ---------------------------------------------------------------------
 */

/* shared memory keys of a parallel load */
#define BO_LOAD_KEY_SHARED		UINT64CONST(0xB0AD000000000001)
#define BO_LOAD_KEY_STORAGE		UINT64CONST(0xB0AD000000000002)
#define BO_LOAD_KEY_OBJECTS		UINT64CONST(0xB0AD000000000003)
#define BO_LOAD_KEY_QUEUE		UINT64CONST(0xB0AD000000000004)

/* the queue the worker's rows go through */
#define BO_LOAD_QUEUE_SIZE		(2 * 1024 * 1024)

/* what the worker is told, besides the storage (JSON) and the object names */
typedef struct BoLoadShared
{
	Oid			relid;			/* the table: its columns, for the parser */
	BoRowFormat format;
	int			nobjects;
	char		encoding[NAMEDATALEN];	/* the source's server encoding */
	bool		digest;			/* digest rows (as digest_format) */
	BoRowFormat digest_format;
	pg_atomic_uint64 taken;		/* message bytes the leader has taken */
} BoLoadShared;

/* the first byte of a message: what follows */
#define BO_LOAD_ROW			'r'	/* a tuple */
#define BO_LOAD_ROW_DIGESTED 'd'	/* a tuple the worker has digested */
#define BO_LOAD_END			'e'	/* the worker's share of the digest; the end */

/* the worker's state */
typedef struct BoLoadWorker
{
	shm_mq_handle *mqh;
	BoLoadShared *shared;
	TupleDesc	tupdesc;
	const char *relname;
	Datum	   *values;
	bool	   *nulls;
	MemoryContext rowcxt;		/* reset per row */
	uint64		sent;			/* message bytes */
	BoRowEncoder enc;			/* when shared->digest */
	BoRowsDigest digest;		/* of the rows the worker digested */
} BoLoadWorker;

PGDLLEXPORT void bo_load_worker_main(dsm_segment *seg, shm_toc *toc);

/* in the worker: parse the next row of cstate and send it formed; false at the end */
static bool
worker_row(void *arg, CopyFromState cstate)
{
	BoLoadWorker *w = arg;
	HeapTuple	tuple;
	MemoryContext old;
	char		kind;
	shm_mq_iovec iov[2];

	CHECK_FOR_INTERRUPTS();
	MemoryContextReset(w->rowcxt);
	old = MemoryContextSwitchTo(w->rowcxt);
	if (!NextCopyFrom(cstate, NULL, w->values, w->nulls))
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	check_not_null(w->tupdesc, w->nulls, w->relname);
	/* the leader is behind: digest the row here */
	kind = BO_LOAD_ROW;
	if (w->shared->digest &&
		w->sent - pg_atomic_read_u64(&w->shared->taken) > BO_LOAD_QUEUE_SIZE / 2)
	{
		bo_row_encode(&w->enc, w->values, w->nulls);
		bo_rows_digest_add(&w->digest, w->enc.row.data, w->enc.row.len);
		kind = BO_LOAD_ROW_DIGESTED;
	}
	tuple = heap_form_tuple(w->tupdesc, w->values, w->nulls);
	MemoryContextSwitchTo(old);
	iov[0].data = &kind;
	iov[0].len = 1;
	iov[1].data = (char *) tuple->t_data;
	iov[1].len = tuple->t_len;
	/* counted first: never less than what the leader has taken */
	w->sent += 1 + tuple->t_len;
	if (shm_mq_sendv(w->mqh, iov, 2, false, false) != SHM_MQ_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("the materialisation stopped taking rows")));
	return true;
}

/*
 * The parallel worker's entry point: parse every object named in the
 * shared memory and send its rows, then its share of the digest (which
 * ends them).
 */
void
bo_load_worker_main(dsm_segment *seg, shm_toc *toc)
{
	BoLoadShared *shared = shm_toc_lookup(toc, BO_LOAD_KEY_SHARED, false);
	char	   *storage_json = shm_toc_lookup(toc, BO_LOAD_KEY_STORAGE, false);
	char	   *name = shm_toc_lookup(toc, BO_LOAD_KEY_OBJECTS, false);
	shm_mq	   *mq = shm_toc_lookup(toc, BO_LOAD_KEY_QUEUE, false);
	BoLoadWorker w;
	BoStorage  *storage;
	Relation	rel;
	List	   *options;
	int			i;
	char		end[1 + sizeof(BoRowsDigest)];

	memset(&w, 0, sizeof(w));
	shm_mq_set_sender(mq, MyProc);
	w.mqh = shm_mq_attach(mq, seg, NULL);
	w.shared = shared;
	rel = table_open(shared->relid, AccessShareLock);
	w.tupdesc = RelationGetDescr(rel);
	w.relname = RelationGetRelationName(rel);
	if (shared->digest)
		bo_row_encoder_init(&w.enc, w.tupdesc, shared->digest_format, NIL);
	w.values = palloc(sizeof(Datum) * Max(w.tupdesc->natts, 1));
	w.nulls = palloc(sizeof(bool) * Max(w.tupdesc->natts, 1));
	w.rowcxt = AllocSetContextCreate(CurrentMemoryContext, "parallel load row", ALLOCSET_DEFAULT_SIZES);
	storage = bo_storage_open(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(storage_json))));
	options = copy_options(shared->format, shared->encoding, false);
	for (i = 0; i < shared->nobjects; i++)
	{
		read_stream(storage, name, rel, options, worker_row, &w);
		name += strlen(name) + 1;
	}
	end[0] = BO_LOAD_END;
	memcpy(end + 1, &w.digest, sizeof(BoRowsDigest));
	(void) shm_mq_send(w.mqh, sizeof(end), end, false, true);
	table_close(rel, AccessShareLock);
}

/*
 * Load the streams "names" (plaintext bytes of them all), of that format
 * and source encoding, through a parallel worker; false, having loaded
 * nothing, when that is not worth it or no worker can be had.
 */
static bool
load_parallel(BoLoader *l, BoStorage *storage, List *names, uint64 bytes, BoRowFormat format,
			  const char *encoding)
{
	ParallelContext *pcxt;
	BoLoadShared *shared;
	Jsonb	   *config;
	char	   *storage_json;
	Size		names_size = 0;
	char	   *p;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	ListCell   *lc;
	bool		ended = false;
	uint64		taken = 0;

	if (max_parallel_maintenance_workers <= 0 ||
		bytes < (uint64) min_parallel_table_scan_size * BLCKSZ ||
		encoding == NULL || pg_char_to_encoding(encoding) != GetDatabaseEncoding() ||
		l->rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP || IsInParallelMode())
		return false;
	config = bo_storage_config(storage);
	storage_json = JsonbToCString(NULL, &config->root, VARSIZE(config));
	foreach(lc, names)
		names_size += strlen(lfirst(lc)) + 1;
	/* this process encodes the digest's text as when it parses itself */
	(void) copy_options(format, encoding, true);

	EnterParallelMode();
	pcxt = CreateParallelContext("backup_offline", "bo_load_worker_main", 1);
	shm_toc_estimate_chunk(&pcxt->estimator, sizeof(BoLoadShared));
	shm_toc_estimate_chunk(&pcxt->estimator, strlen(storage_json) + 1);
	shm_toc_estimate_chunk(&pcxt->estimator, names_size);
	shm_toc_estimate_chunk(&pcxt->estimator, BO_LOAD_QUEUE_SIZE);
	shm_toc_estimate_keys(&pcxt->estimator, 4);
	InitializeParallelDSM(pcxt);
	if (pcxt->seg == NULL)
	{
		/* no dynamic shared memory to be had */
		DestroyParallelContext(pcxt);
		ExitParallelMode();
		return false;
	}

	shared = shm_toc_allocate(pcxt->toc, sizeof(BoLoadShared));
	memset(shared, 0, sizeof(*shared));
	shared->relid = RelationGetRelid(l->rel);
	shared->format = format;
	shared->nobjects = list_length(names);
	strlcpy(shared->encoding, encoding, sizeof(shared->encoding));
	shared->digest = l->digest != NULL;
	shared->digest_format = l->enc.format;
	pg_atomic_init_u64(&shared->taken, 0);
	shm_toc_insert(pcxt->toc, BO_LOAD_KEY_SHARED, shared);
	p = shm_toc_allocate(pcxt->toc, strlen(storage_json) + 1);
	strcpy(p, storage_json);
	shm_toc_insert(pcxt->toc, BO_LOAD_KEY_STORAGE, p);
	p = shm_toc_allocate(pcxt->toc, names_size);
	shm_toc_insert(pcxt->toc, BO_LOAD_KEY_OBJECTS, p);
	foreach(lc, names)
	{
		strcpy(p, lfirst(lc));
		p += strlen(lfirst(lc)) + 1;
	}
	mq = shm_mq_create(shm_toc_allocate(pcxt->toc, BO_LOAD_QUEUE_SIZE), BO_LOAD_QUEUE_SIZE);
	shm_toc_insert(pcxt->toc, BO_LOAD_KEY_QUEUE, mq);
	shm_mq_set_receiver(mq, MyProc);
	mqh = shm_mq_attach(mq, pcxt->seg, NULL);

	LaunchParallelWorkers(pcxt);
	if (pcxt->nworkers_launched == 0)
	{
		DestroyParallelContext(pcxt);
		ExitParallelMode();
		return false;
	}
	/* a worker that fails to start detaches the queue */
	shm_mq_set_handle(mqh, pcxt->worker[0].bgwhandle);
	for (;;)
	{
		Size		nbytes;
		char	   *data;

		if (shm_mq_receive(mqh, &nbytes, (void **) &data, false) != SHM_MQ_SUCCESS)
			break;
		taken += nbytes;
		pg_atomic_write_u64(&shared->taken, taken);
		if (nbytes == 1 + sizeof(BoRowsDigest) && data[0] == BO_LOAD_END)
		{
			BoRowsDigest worker;

			memcpy(&worker, data + 1, sizeof(worker));
			if (l->digest != NULL)
				bo_rows_digest_merge(l->digest, &worker);
			ended = true;
			break;
		}
		if (nbytes <= 1 || (data[0] != BO_LOAD_ROW && data[0] != BO_LOAD_ROW_DIGESTED))
			elog(ERROR, "unexpected message from a parallel loader");
		loader_tuple(l, data + 1, nbytes - 1, data[0] == BO_LOAD_ROW_DIGESTED);
	}
	loader_flush(l);
	/* raises the worker's error, if it had one */
	WaitForParallelWorkersToFinish(pcxt);
	if (!ended)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the parallel loader of table \"%s\" stopped before the end of its rows",
						RelationGetRelationName(l->rel)),
				 errhint("The server log may tell why.")));
	DestroyParallelContext(pcxt);
	ExitParallelMode();
	elog(DEBUG1, "a parallel worker parsed %d object(s) of table \"%s\"",
		 list_length(names), RelationGetRelationName(l->rel));
	return true;
}

/*
 * The type a materialised column gets: the column's type with domains
 * replaced by their base types (also as array elements), so that loading
 * rows runs no domain CHECK, which is user code, as the extension's owner.
 * Its OID in *typid_out.
 */
/*
 * Does a value of typid hold a domain anywhere inside: a field of a
 * composite, the subtype of a range, an element of an array?  Its input
 * function would run the domain's checks, which are user code.
 */
static bool
type_holds_domain(Oid typid, int depth)
{
	char		typtype;

	if (depth > 32)
		return true;
	typtype = get_typtype(typid);
	if (typtype == TYPTYPE_DOMAIN)
		return true;
	if (OidIsValid(get_element_type(typid)))
		return type_holds_domain(get_element_type(typid), depth + 1);
	if (typtype == TYPTYPE_RANGE)
		return type_holds_domain(get_range_subtype(typid), depth + 1);
	if (typtype == TYPTYPE_MULTIRANGE)
		return type_holds_domain(get_multirange_range(typid), depth + 1);
	if (typtype == TYPTYPE_COMPOSITE)
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(typid, -1);
		bool		holds = false;
		int			i;

		for (i = 0; i < desc->natts && !holds; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped)
				holds = type_holds_domain(att->atttypid, depth + 1);
		}
		ReleaseTupleDesc(desc);
		return holds;
	}
	return false;
}

static char *
scratch_type(const char *typname, Oid *typid_out)
{
	Oid			typid;
	int32		typmod;
	Oid			elem;

	parseTypeString(typname, &typid, &typmod, false);
	elem = get_element_type(typid);
	if (OidIsValid(elem) && get_typtype(elem) == TYPTYPE_DOMAIN)
	{
		Oid			base = getBaseTypeAndTypmod(elem, &typmod);

		typid = get_array_type(base);
		if (!OidIsValid(typid))
			elog(ERROR, "type %s has no array type", format_type_be(base));
	}
	else if (get_typtype(typid) == TYPTYPE_DOMAIN)
		typid = getBaseTypeAndTypmod(typid, &typmod);
	/*
	 * A composite or range that holds a domain is kept as its text (such
	 * types are stored in text format: encode.c), so that no domain check
	 * runs as the extension's owner; its text output is the same.
	 */
	if (type_holds_domain(typid, 0))
	{
		*typid_out = TEXTOID;
		return pstrdup("text");
	}
	*typid_out = typid;
	return format_type_with_typemod(typid, typmod);
}

/*
 * Create table "schema"."name" with the copied columns of a manifest table
 * entry (their names, types, collations and NOT NULL; no other
 * constraint), or with its primary key's columns only (key_only: no NOT
 * NULL).  NOT NULL from the start costs nothing (the loaders check each
 * row), where adding it later scans the table; compressible columns of a
 * materialised table compress with lz4 when the server has it (see the
 * section's comment).
 */
static void
create_table_from_entry(JsonbContainer *entry, const char *schema, const char *name, bool key_only)
{
	StringInfoData sql;
	JsonbContainer *def = bo_jcontainer(entry, "definition");
	List	   *columns = bo_jelements(bo_jcontainer(def, "columns"));
	List	   *copied = bo_jelements(key_only ? bo_jcontainer(def, "primaryKey") : bo_jcontainer(entry, "copyColumns"));
	ListCell   *lc;
	ListCell   *lc2;
	bool		first = true;

	initStringInfo(&sql);
	/* schema NULL: a temporary table */
	if (schema == NULL)
		appendStringInfo(&sql, "CREATE TEMP TABLE %s (", quote_identifier(name));
	else
		appendStringInfo(&sql, "CREATE TABLE %s.%s (", quote_identifier(schema), quote_identifier(name));
	foreach(lc, copied)
	{
		JsonbValue *cv = lfirst(lc);
		char	   *cname = pnstrdup(cv->val.string.val, cv->val.string.len);

		foreach(lc2, columns)
		{
			JsonbValue *col = lfirst(lc2);
			char	   *n = bo_jstr(col->val.binary.data, "name");

			if (n != NULL && strcmp(n, cname) == 0)
			{
				char	   *collation = bo_jstr(col->val.binary.data, "collation");
				Oid			typid;

				appendStringInfo(&sql, "%s%s %s", first ? "" : ", ", quote_identifier(cname),
								 scratch_type(bo_jstr(col->val.binary.data, "type"), &typid));
#ifdef USE_LZ4
				{
					char		storage = get_typstorage(typid);

					/* what COMPRESSION accepts: a type whose values may be compressed */
					if (!key_only && (storage == TYPSTORAGE_EXTENDED || storage == TYPSTORAGE_MAIN))
						appendStringInfoString(&sql, " COMPRESSION lz4");
				}
#endif
				if (collation)
					appendStringInfo(&sql, " COLLATE %s", collation);
				if (!key_only)
				{
					JsonbValue *nn = bo_jget(col->val.binary.data, "notNull");

					if (nn != NULL && nn->type == jbvBool && nn->val.boolean)
						appendStringInfoString(&sql, " NOT NULL");
				}
				first = false;
				break;
			}
		}
		if (lc2 == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("manifest names column \"%s\" without its definition", cname)));
	}
	appendStringInfoChar(&sql, ')');
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not create table %s.%s", schema, name);
}

/* the manifest entry of table schema.name, or NULL */
JsonbContainer *
bo_manifest_table(Jsonb *manifest, const char *schema, const char *name)
{
	ListCell   *lc;

	foreach(lc, bo_jelements(bo_jcontainer(&manifest->root, "tables")))
	{
		JsonbValue *t = lfirst(lc);
		char	   *s = bo_jstr(t->val.binary.data, "schema");
		char	   *n = bo_jstr(t->val.binary.data, "name");

		if (s && n && strcmp(s, schema) == 0 && strcmp(n, name) == 0)
			return t->val.binary.data;
	}
	return NULL;
}

/*
 * Load every object of one kind of a manifest table entry (stored as
 * format, in the source's server encoding) into rel, adding each row to
 * digest (unless NULL, encoded as digest_format).
 */
static void
load_objects(BoStorage *storage, JsonbContainer *entry, const char *kind, Relation rel,
			 BoRowFormat format, const char *encoding, BoRowFormat digest_format, BoRowsDigest *digest)
{
	BoLoader	l;
	List	   *names = NIL;
	uint64		bytes = 0;
	ListCell   *lc;

	foreach(lc, bo_jelements(bo_jcontainer(entry, "objects")))
	{
		JsonbContainer *o = ((JsonbValue *) lfirst(lc))->val.binary.data;
		char	   *k = bo_jstr(o, "kind");

		if (k != NULL && strcmp(k, kind) == 0)
		{
			names = lappend(names, bo_jstr(o, "name"));
			bytes += bo_jnum(o, "plaintextLength");
		}
	}
	loader_begin(&l, rel, digest_format, digest);
	if (names != NIL && !load_parallel(&l, storage, names, bytes, format, encoding))
	{
		List	   *options = copy_options(format, encoding, true);

		foreach(lc, names)
			read_stream(storage, lfirst(lc), rel, options, loader_row, &l);
	}
	loader_end(&l);
	CommandCounterIncrement();
}

BoRowFormat
bo_entry_format(JsonbContainer *entry, const char *schema, const char *name)
{
	BoRowFormat format;
	char	   *f = bo_jstr(entry, "format");

	if (f == NULL || !bo_row_format_parse(f, &format))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest gives table %s.%s an unknown format", schema, name)));
	return format;
}

/* target_schema.target, open */
static Relation
open_target(const char *target_schema, const char *target)
{
	return table_open(get_relname_relid(target, get_namespace_oid(target_schema, false)), RowExclusiveLock);
}

/*
 * Apply the changes of an incremental entry to target_schema.target:
 * delete the keys of its deletes objects, then load its upserts.  With
 * digest, the deleted rows (whole, as the table held them) are subtracted
 * from it and the loaded rows added, encoded as digest_format.
 */
static void
apply_changes(BoStorage *storage, JsonbContainer *entry, const char *encoding,
			  const char *schema, const char *name, const char *target_schema, const char *target,
			  BoRowFormat digest_format, BoRowsDigest *digest)
{
	/* the keys to delete, in a temporary table: no name of the schema can clash */
	const char *deletes = "backup_offline_deletes";
	BoRowFormat format = bo_entry_format(entry, schema, name);
	List	   *keys = bo_jelements(bo_jcontainer(bo_jcontainer(entry, "definition"), "primaryKey"));
	StringInfoData sql;
	ListCell   *lc;
	Relation	rel;

	create_table_from_entry(entry, NULL, deletes, true);
	CommandCounterIncrement();
	rel = table_open(RelnameGetRelid(deletes), RowExclusiveLock);
	load_objects(storage, entry, "deletes", rel, format, encoding, format, NULL);
	table_close(rel, NoLock);

	initStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM %s.%s t USING pg_temp.%s d WHERE ",
					 quote_identifier(target_schema), quote_identifier(target), deletes);
	foreach(lc, keys)
	{
		JsonbValue *k = lfirst(lc);
		const char *col = quote_identifier(pnstrdup(k->val.string.val, k->val.string.len));

		appendStringInfo(&sql, "%st.%s = d.%s", lc == list_head(keys) ? "" : " AND ", col, col);
	}
	if (digest == NULL)
	{
		if (SPI_execute(sql.data, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not apply the deletes of %s.%s", schema, name);
	}
	else
	{
		BoRowEncoder enc;
		TupleDesc	tupdesc;
		Datum	   *values;
		bool	   *nulls;
		uint64		i;

		/* every deleted row as the table held it (a target row is deleted, and returned, once) */
		appendStringInfoString(&sql, " RETURNING t.*");
		if (SPI_execute(sql.data, false, 0) != SPI_OK_DELETE_RETURNING)
			elog(ERROR, "could not apply the deletes of %s.%s", schema, name);
		rel = open_target(target_schema, target);
		tupdesc = SPI_tuptable->tupdesc;
		if (tupdesc->natts != RelationGetDescr(rel)->natts)
			elog(ERROR, "the deleted rows of %s.%s do not have the table's columns", schema, name);
		bo_row_encoder_init(&enc, RelationGetDescr(rel), digest_format, NIL);
		values = palloc(sizeof(Datum) * Max(tupdesc->natts, 1));
		nulls = palloc(sizeof(bool) * Max(tupdesc->natts, 1));
		for (i = 0; i < SPI_processed; i++)
		{
			uint8		h[16];

			CHECK_FOR_INTERRUPTS();
			heap_deform_tuple(SPI_tuptable->vals[i], tupdesc, values, nulls);
			bo_row_encode(&enc, values, nulls);
			bo_row_hash(enc.row.data, enc.row.len, h);
			bo_rows_digest_sub_hash(digest, h);
		}
		SPI_freetuptable(SPI_tuptable);
		MemoryContextDelete(enc.rowcxt);
		table_close(rel, NoLock);
	}
	if (SPI_execute(psprintf("DROP TABLE pg_temp.%s", deletes), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not drop %s", deletes);
	CommandCounterIncrement();

	rel = open_target(target_schema, target);
	load_objects(storage, entry, "rows", rel, format, encoding, digest_format, digest);
	table_close(rel, NoLock);
}

/*
 * Materialise table schema.name as of the last snapshot of chain (a List
 * of Jsonb manifests from the FULL to that snapshot) as
 * target_schema.target, a new table: the newest whole copy along the chain,
 * then the changes of every later snapshot, in order.  With out, the count
 * and rows digest of the table it made, encoded in the format of the last
 * snapshot's entry: what bo_table_rows_digest would compute on it, to
 * compare with that entry's rowCount and rowsDigest.
 */
void
bo_materialize_table_digest(BoStorage *storage, List *chain, const char *schema, const char *name,
							const char *target_schema, const char *target, BoRowsDigest *out)
{
	int			n = list_length(chain);
	int			start = -1;
	int			i;
	JsonbContainer *entry;
	JsonbContainer *last;
	BoRowFormat digest_format;
	Relation	rel;

	for (i = n - 1; i >= 0 && start < 0; i--)
	{
		JsonbContainer *e = bo_manifest_table(list_nth(chain, i), schema, name);
		char	   *change;

		if (e == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("table %s.%s is missing from a snapshot of the chain", schema, name)));
		change = bo_jstr(e, "change");
		if (change == NULL || strcmp(change, "whole") == 0)
			start = i;
	}
	if (start < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the chain holds no whole copy of table %s.%s", schema, name)));

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	entry = bo_manifest_table(list_nth(chain, start), schema, name);
	last = bo_manifest_table(llast(chain), schema, name);
	digest_format = bo_entry_format(last, schema, name);
	create_table_from_entry(last, target_schema, target, false);
	CommandCounterIncrement();
	rel = open_target(target_schema, target);
	load_objects(storage, entry, "rows", rel, bo_entry_format(entry, schema, name),
				 bo_jstr(&((Jsonb *) list_nth(chain, start))->root, "serverEncoding"), digest_format, out);
	table_close(rel, NoLock);

	for (i = start + 1; i < n; i++)
		apply_changes(storage, bo_manifest_table(list_nth(chain, i), schema, name),
					  bo_jstr(&((Jsonb *) list_nth(chain, i))->root, "serverEncoding"),
					  schema, name, target_schema, target, digest_format, out);
}

/* bo_materialize_table_digest without the digest */
void
bo_materialize_table(BoStorage *storage, List *chain, const char *schema, const char *name,
					 const char *target_schema, const char *target)
{
	bo_materialize_table_digest(storage, chain, schema, name, target_schema, target, NULL);
}

/* count and rows digest of a table, encoded as format */
void
bo_table_rows_digest(Oid relid, BoRowFormat format, Snapshot source, BoRowsDigest *out)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Snapshot	snapshot = RegisterSnapshot(source);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	BoRowEncoder enc;
	HeapTuple	tuple;
	Datum	   *values = palloc(sizeof(Datum) * Max(tupdesc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(tupdesc->natts, 1));

	memset(out, 0, sizeof(*out));
	bo_row_encoder_init(&enc, tupdesc, format, NIL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		heap_deform_tuple(tuple, tupdesc, values, nulls);
		bo_row_encode(&enc, values, nulls);
		bo_rows_digest_add(out, enc.row.data, enc.row.len);
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, NoLock);
}

/* ---------------------------------------------------------------------
 * verify_snapshot
 * ---------------------------------------------------------------------
 */
typedef enum BoVerifyLevel
{
	BO_VERIFY_CHECKSUMS,
	BO_VERIFY_DECRYPT,
	BO_VERIFY_RESTORE
} BoVerifyLevel;

typedef struct BoVerify
{
	BoStorage  *storage;
	BoVerifyLevel level;
	BoDigestAlgorithm digest;
	StringInfoData problems;
	int			nproblems;
	uint64		objects;
	uint64		bytes;
} BoVerify;

static void
problem(BoVerify *v, const char *object, const char *text)
{
	if (v->nproblems++ > 0)
		appendStringInfoString(&v->problems, ", ");
	appendStringInfoChar(&v->problems, '{');
	if (object)
		bo_json_add_text(&v->problems, "object", object);
	bo_json_add_text(&v->problems, "problem", text);
	appendStringInfoChar(&v->problems, '}');
}

/* digest of the stored bytes of name; its size in *size */
static char *
stored_digest(BoVerify *v, const char *name, uint64 *size)
{
	BoDigest   *d = bo_digest_create(v->digest);
	char	   *buf = palloc(1024 * 1024);
	uint8		out[BO_DIGEST_MAX_LENGTH];
	uint64		offset = 0;
	size_t		n;
	int			len;

	while ((n = bo_storage_get(v->storage, name, offset, buf, 1024 * 1024)) > 0)
	{
		CHECK_FOR_INTERRUPTS();
		bo_digest_update(d, buf, n);
		offset += n;
	}
	len = bo_digest_final(d, out);
	bo_digest_free(d);
	pfree(buf);
	*size = offset;
	return bo_hex(out, len);
}

/* read name through the archive reader to its end; what it was */
static void
read_object(BoVerify *v, const char *name, BoArchiveResult *res)
{
	BoArchiveReader *r = bo_archive_reader_open(v->storage, name, NULL);
	char	   *buf = palloc(1024 * 1024);

	while (bo_archive_read(r, buf, 1024 * 1024) > 0)
		CHECK_FOR_INTERRUPTS();
	bo_archive_reader_result(r, res);
	bo_archive_reader_close(r);
	pfree(buf);
}

/* one object of the manifest to check */
typedef struct BoObjectCheck
{
	BoVerify   *v;
	JsonbContainer *o;			/* its manifest entry */
	const char *name;
	/* the manifest object instead */
	const char *checksum;
	Jsonb	   *catalog_manifest;
} BoObjectCheck;

static void
check_object(void *arg)
{
	BoObjectCheck *c = arg;
	BoVerify   *v = c->v;
	JsonbContainer *o = c->o;
	const char *name = c->name;

	if (v->level == BO_VERIFY_CHECKSUMS)
	{
		uint64		size;
		char	   *digest = stored_digest(v, name, &size);

		if (size != bo_jnum(o, "storedLength"))
			problem(v, name, psprintf("stored size is " UINT64_FORMAT " bytes, the manifest says " UINT64_FORMAT,
									  size, bo_jnum(o, "storedLength")));
		else if (strcmp(digest, bo_jstr(o, "storedDigest")) != 0)
			problem(v, name, psprintf("stored digest is %s, the manifest says %s", digest, bo_jstr(o, "storedDigest")));
		v->bytes += size;
	}
	else
	{
		BoArchiveResult res;

		read_object(v, name, &res);
		if (res.plaintext_length != bo_jnum(o, "plaintextLength"))
			problem(v, name, psprintf("plaintext is " UINT64_FORMAT " bytes, the manifest says " UINT64_FORMAT,
									  res.plaintext_length, bo_jnum(o, "plaintextLength")));
		else if (strcmp(bo_hex(res.plaintext_digest, res.digest_length), bo_jstr(o, "plaintextDigest")) != 0)
			problem(v, name, "plaintext digest differs from the manifest");
		else if (strcmp(bo_hex(res.stored_digest, res.digest_length), bo_jstr(o, "storedDigest")) != 0)
			problem(v, name, "stored digest differs from the manifest");
		v->bytes += res.stored_length;
	}
}

/*
 * The manifest object: at level checksums its stored digest against the
 * catalog; else read, self-checksum, and equal to the catalog's manifest.
 */
static void
check_manifest(void *arg)
{
	BoObjectCheck *c = arg;
	BoVerify   *v = c->v;
	uint64		size;

	if (v->level == BO_VERIFY_CHECKSUMS)
	{
		char	   *digest = stored_digest(v, c->name, &size);

		if (c->checksum == NULL || strcmp(digest, c->checksum) != 0)
			problem(v, c->name, psprintf("stored digest is %s, the catalog says %s", digest,
										 c->checksum ? c->checksum : "nothing"));
	}
	else
	{
		size_t		len;
		char	   *text = bo_manifest_read(v->storage, c->name, &len, NULL);
		Jsonb	   *stored = bo_manifest_parse(text, len, "the stored manifest");
		BoStorageStat st;

		if (compareJsonbContainers(&stored->root, &c->catalog_manifest->root) != 0)
			problem(v, c->name, "the stored manifest differs from the catalog's");
		size = bo_storage_stat(v->storage, c->name, &st) ? st.size : 0;
	}
	v->bytes += size;
}

/*
 * Check one object (o NULL: the manifest object); an error is recorded as
 * a problem of the object, not raised.
 */
static void
verify_object_entry(BoVerify *v, JsonbContainer *o, const char *manifest_name,
					const char *checksum, Jsonb *catalog_manifest)
{
	BoObjectCheck c = {v, o, o ? bo_jstr(o, "name") : manifest_name, checksum, catalog_manifest};
	char	   *error = bo_try_subtransaction(o ? check_object : check_manifest, &c);

	if (error != NULL)
		problem(v, c.name, error);
	v->objects++;
}

/* the name a table of the manifest gets when materialised */
static char *
table_target(JsonbContainer *e, List *names, bool verify)
{
	char	   *tname = bo_jstr(e, "name");
	ListCell   *lc;
	int			same = 0;

	char	   *target;

	if (verify)
		return psprintf("t%04d", (int) bo_jnum(e, "ordinal"));
	foreach(lc, names)
		same += strcmp(lfirst(lc), tname) == 0;
	target = same > 1 ? psprintf("%s_%s", bo_jstr(e, "schema"), tname) : pstrdup(tname);
	/* as CREATE TABLE would cut it, so that it is found again */
	truncate_identifier(target, strlen(target), false);
	return target;
}

/*
 * The manifests of the chain that restores snapshot_id, its FULL first (a
 * List of Jsonb).  SPI must be connected.
 */
List *
bo_chain_manifests(const char *snapshot_id)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1];
	List	   *chain = NIL;
	uint64		i;

	args[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(snapshot_id));
	if (SPI_execute_with_args("SELECT manifest::text FROM backup_offline.snapshot_chain($1)",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the snapshot chain");
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *m = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (m == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("a snapshot of the chain has no manifest")));
		chain = lappend(chain, DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(m))));
	}
	return chain;
}

/* one table to materialise and digest */
typedef struct BoTableRestore
{
	BoVerify   *v;
	List	   *chain;
	const char *schema;			/* of the source table */
	const char *name;
	const char *target_schema;
	const char *target;
	BoRowsDigest got;			/* out */
} BoTableRestore;

/* materialise one table, digesting the rows it ends with */
static void
restore_one_table(void *arg)
{
	BoTableRestore *r = arg;

	bo_materialize_table_digest(r->v->storage, r->chain, r->schema, r->name, r->target_schema, r->target,
								&r->got);
	CommandCounterIncrement();
}

/*
 * Materialise every table of the snapshot into schema (created here) and
 * compare each with the manifest; appends the tables' results to out.
 * verify: a scratch schema, dropped again, tables named t<ordinal>; else
 * the tables keep their names (schema_name when two share a name).
 */
static void
restore_tables(BoVerify *v, const char *snapshot_id, Jsonb *manifest, StringInfo out,
			   const char *schema, bool verify)
{
	List	   *chain;
	ListCell   *lc;
	bool		first_table = true;
	List	   *names = NIL;

	chain = bo_chain_manifests(snapshot_id);

	if (OidIsValid(get_namespace_oid(schema, true)))
	{
		if (!verify)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_SCHEMA),
					 errmsg("schema \"%s\" already exists", schema),
					 errhint("Materialise into a new schema: pass a name that is not in use.")));
		SPI_execute(psprintf("DROP SCHEMA %s CASCADE", quote_identifier(schema)), false, 0);
	}
	SPI_execute(psprintf("CREATE SCHEMA %s", quote_identifier(schema)), false, 0);
	if (!verify)
	{
		/* the table names, to see which are ambiguous */
		foreach(lc, bo_jelements(bo_jcontainer(&manifest->root, "tables")))
			names = lappend(names, bo_jstr(((JsonbValue *) lfirst(lc))->val.binary.data, "name"));
	}

	appendStringInfoString(out, "[");
	foreach(lc, bo_jelements(bo_jcontainer(&manifest->root, "tables")))
	{
		JsonbValue *t = lfirst(lc);
		JsonbContainer *e = t->val.binary.data;
		char	   *tschema = bo_jstr(e, "schema");
		char	   *tname = bo_jstr(e, "name");
		char	   *target = table_target(e, names, verify);
		char	   *expected = bo_jstr(e, "rowsDigest");
		uint64		expected_rows = bo_jnum(e, "rowCount");
		BoTableRestore r = {v, chain, tschema, tname, schema, target};
		bool		equal = false;
		char	   *error;
		int			code = 0;

		memset(&r.got, 0, sizeof(r.got));
		error = bo_try_subtransaction_code(restore_one_table, &r, &code);
		/*
		 * Only what the stored data caused is damage: a cancel, a
		 * terminated worker, a shortage of memory or workers, or a state
		 * the verification cannot work in stops it with an error and leaves
		 * the snapshot as it was.
		 */
		if (error != NULL &&
			(ERRCODE_TO_CATEGORY(code) == ERRCODE_OPERATOR_INTERVENTION ||
			 ERRCODE_TO_CATEGORY(code) == ERRCODE_INSUFFICIENT_RESOURCES ||
			 ERRCODE_TO_CATEGORY(code) == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE ||
			 ERRCODE_TO_CATEGORY(code) == ERRCODE_FEATURE_NOT_SUPPORTED ||
			 ERRCODE_TO_CATEGORY(code) == ERRCODE_TRANSACTION_ROLLBACK ||
			 ERRCODE_TO_CATEGORY(code) == ERRCODE_INSUFFICIENT_PRIVILEGE))
			ereport(ERROR,
					(errcode(code),
					 errmsg("verification of table %s.%s stopped: %s", tschema, tname, error),
					 errhint("Nothing was recorded; verify again.")));

		if (error == NULL)
		{
			equal = r.got.count == expected_rows && expected != NULL &&
				strcmp(bo_rows_digest_hex(&r.got), expected) == 0;
			if (!equal)
				problem(v, psprintf("%s.%s", tschema, tname),
						psprintf("restored " UINT64_FORMAT " rows with digest %s; the manifest says " UINT64_FORMAT " rows, %s",
								 r.got.count, bo_rows_digest_hex(&r.got), expected_rows, expected ? expected : "nothing"));
		}
		else
			problem(v, psprintf("%s.%s", tschema, tname), psprintf("restore failed: %s", error));

		if (!first_table)
			appendStringInfoString(out, ", ");
		first_table = false;
		appendStringInfoChar(out, '{');
		bo_json_add_text(out, "schema", tschema);
		bo_json_add_text(out, "name", tname);
		if (!verify)
			bo_json_add_text(out, "restoredAs", psprintf("%s.%s", quote_identifier(schema), quote_identifier(target)));
		bo_json_add_u64(out, "expectedRows", expected_rows);
		bo_json_add_u64(out, "restoredRows", r.got.count);
		bo_json_add_text(out, "rowsDigest", error ? "" : bo_rows_digest_hex(&r.got));
		bo_json_add_raw(out, "equal", equal ? "true" : "false");
		appendStringInfoChar(out, '}');
	}
	appendStringInfoString(out, "]");
	if (verify)
		SPI_execute(psprintf("DROP SCHEMA %s CASCADE", quote_identifier(schema)), false, 0);
}

/* a snapshot row, as the caller sees it */
typedef struct BoSnapshotRow
{
	char	   *id;
	char	   *number;
	char	   *status;
	char	   *storage_json;
	char	   *manifest_name;
	char	   *checksum;
	char	   *algorithm;
	Jsonb	   *manifest;
} BoSnapshotRow;

/*
 * Read snapshot id (a uuid Datum) through row-level security; it must
 * have a manifest (COMPLETED or CORRUPTED).  SPI must be connected.
 */
static void
read_snapshot(Datum id, BoSnapshotRow *row)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1] = {id};
	char	   *manifest_text;

	row->id = DatumGetCString(DirectFunctionCall1(uuid_out, id));
	if (SPI_execute_with_args("SELECT snapshot_number, status::text, storage_location->'destination', "
							  "       storage_location->>'manifest', checksum, checksum_algorithm::text, manifest::text "
							  "  FROM backup_offline.backup_snapshot WHERE id = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the snapshot");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("snapshot %s does not exist", row->id),
				 errhint("Check the id; snapshots of other organizations are not visible.")));
	row->number = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	row->status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	row->storage_json = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	row->manifest_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	row->checksum = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
	row->algorithm = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);
	manifest_text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7);
	if (strcmp(row->status, "COMPLETED") != 0 && strcmp(row->status, "CORRUPTED") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("snapshot %s is %s: it has no manifest", row->number, row->status),
				 errhint("Only COMPLETED and CORRUPTED snapshots have a manifest and objects.")));
	row->manifest = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(manifest_text)));
}

/*
 * Become the extension's owner (the owner of the function being called)
 * with the job's output settings, for the work on storage and scratch
 * tables; returns the GUC nest level for leave_owner.
 */
static int
become_owner(FunctionCallInfo fcinfo, Oid *save_userid, int *save_sec)
{
	Oid			owner = bo_function_owner(fcinfo->flinfo->fn_oid);
	int			nestlevel;

	GetUserIdAndSecContext(save_userid, save_sec);
	SetUserIdAndSecContext(owner, *save_sec | SECURITY_LOCAL_USERID_CHANGE);
	nestlevel = NewGUCNestLevel();
	bo_set_job_gucs();
	/* the scratch schema's DROP ... CASCADE is not news */
	SetConfigOption("client_min_messages", "warning", PGC_SUSET, PGC_S_SESSION);
	return nestlevel;
}

static void
leave_owner(int nestlevel, Oid save_userid, int save_sec)
{
	AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
}

Datum
bo_verify_snapshot_sql(PG_FUNCTION_ARGS)
{
	char	   *level_name;
	BoVerify	v;
	BoSnapshotRow row;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	StringInfoData result;
	StringInfoData tables;
	ListCell   *lc;
	Datum		out;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("snapshot_id is required"),
				 errhint("Pass the id of a backup snapshot.")));
	level_name = PG_ARGISNULL(1) ? "decrypt" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	memset(&v, 0, sizeof(v));
	if (strcmp(level_name, "checksums") == 0)
		v.level = BO_VERIFY_CHECKSUMS;
	else if (strcmp(level_name, "decrypt") == 0)
		v.level = BO_VERIFY_DECRYPT;
	else if (strcmp(level_name, "restore") == 0)
		v.level = BO_VERIFY_RESTORE;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid level: \"%s\"", level_name),
				 errhint("Use checksums, decrypt or restore.")));

	SPI_connect();
	read_snapshot(PG_GETARG_DATUM(0), &row);
	if (!bo_digest_parse(row.algorithm, &v.digest))
		elog(ERROR, "unknown checksum algorithm \"%s\"", row.algorithm);
	nestlevel = become_owner(fcinfo, &save_userid, &save_sec);

	v.storage = bo_storage_open(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(row.storage_json))));
	initStringInfo(&v.problems);
	initStringInfo(&tables);

	verify_object_entry(&v, NULL, row.manifest_name, row.checksum, row.manifest);
	foreach(lc, bo_jelements(bo_jcontainer(&row.manifest->root, "tables")))
	{
		JsonbValue *t = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, bo_jelements(bo_jcontainer(t->val.binary.data, "objects")))
			verify_object_entry(&v, ((JsonbValue *) lfirst(lc2))->val.binary.data, NULL, NULL, NULL);
	}
	if (v.level == BO_VERIFY_RESTORE && v.nproblems == 0)
		restore_tables(&v, row.id, row.manifest, &tables, psprintf("backup_offline_verify_%d", MyProcPid), true);

	initStringInfo(&result);
	appendStringInfo(&result, "{\"snapshotId\": \"%s\", \"snapshotNumber\": ", row.id);
	escape_json(&result, row.number);
	appendStringInfo(&result, ", \"level\": \"%s\", \"valid\": %s, \"objects\": " UINT64_FORMAT
					 ", \"storedBytes\": " UINT64_FORMAT ", \"problems\": [%s]",
					 level_name, v.nproblems == 0 ? "true" : "false", v.objects, v.bytes, v.problems.data);
	if (v.level == BO_VERIFY_RESTORE)
		appendStringInfo(&result, ", \"tables\": %s", tables.len > 0 ? tables.data : "null");
	appendStringInfo(&result, ", \"verifiedAt\": \"%s\"}",
					 timestamptz_to_str(GetCurrentTimestamp()));

	/* record it on the snapshot (audited through the row change) */
	{
		Oid			types2[2] = {UUIDOID, TEXTOID};
		Datum		args2[2];

		args2[0] = PG_GETARG_DATUM(0);
		args2[1] = CStringGetTextDatum(result.data);
		if (SPI_execute_with_args("UPDATE backup_offline.backup_snapshot "
								  "   SET verification = $2::jsonb, verified_at = now(), "
								  "       status = CASE WHEN ($2::jsonb->>'valid')::boolean "
								  "                     THEN CASE WHEN status = 'CORRUPTED' THEN 'COMPLETED' ELSE status END "
								  "                     ELSE CASE WHEN status = 'COMPLETED' THEN 'CORRUPTED' ELSE status END END "
								  " WHERE id = $1",
								  2, types2, args2, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record the verification");
	}

	leave_owner(nestlevel, save_userid, save_sec);
	/* everything above lives in SPI's memory: copy the result out first */
	out = SPI_datumTransfer(DirectFunctionCall1(jsonb_in, CStringGetDatum(result.data)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(out);
}

/*
 * materialize_snapshot(snapshot_id uuid, target_schema name) RETURNS jsonb
 *
 * The engine restores build on: the snapshot's chain materialised into a
 * new schema, one table per table of the manifest (columns, types, NOT
 * NULL and rows; no other constraints, no indexes), each compared with the
 * manifest.  Any
 * damage or difference is an ERROR and leaves nothing behind.
 */
Datum
bo_materialize_snapshot_sql(PG_FUNCTION_ARGS)
{
	BoVerify	v;
	BoSnapshotRow row;
	char	   *schema;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	StringInfoData tables;
	StringInfoData result;
	Datum		out;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s is required", PG_ARGISNULL(0) ? "snapshot_id" : "target_schema"),
				 errhint("Pass a snapshot id and the name of a schema that does not exist yet.")));
	schema = NameStr(*PG_GETARG_NAME(1));
	memset(&v, 0, sizeof(v));
	v.level = BO_VERIFY_RESTORE;

	SPI_connect();
	read_snapshot(PG_GETARG_DATUM(0), &row);
	if (!bo_digest_parse(row.algorithm, &v.digest))
		elog(ERROR, "unknown checksum algorithm \"%s\"", row.algorithm);
	nestlevel = become_owner(fcinfo, &save_userid, &save_sec);
	v.storage = bo_storage_open(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(row.storage_json))));
	initStringInfo(&v.problems);
	initStringInfo(&tables);
	restore_tables(&v, row.id, row.manifest, &tables, schema, false);
	if (v.nproblems > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("snapshot %s could not be materialised", row.number),
				 errdetail("Problems: [%s]", v.problems.data),
				 errhint("verify_snapshot(id, 'decrypt') tells which objects are damaged.")));
	leave_owner(nestlevel, save_userid, save_sec);

	initStringInfo(&result);
	appendStringInfo(&result, "{\"snapshotId\": \"%s\", \"snapshotNumber\": ", row.id);
	escape_json(&result, row.number);
	appendStringInfoString(&result, ", \"schema\": ");
	escape_json(&result, schema);
	appendStringInfo(&result, ", \"tables\": %s}", tables.len > 0 ? tables.data : "[]");
	/* everything above lives in SPI's memory: copy the result out first */
	out = SPI_datumTransfer(DirectFunctionCall1(jsonb_in, CStringGetDatum(result.data)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(out);
}

/*
 * rows_digest(rel regclass) RETURNS jsonb: the row count and rows digest
 * of a table as a backup would record them now (format, rowCount,
 * rowsDigest), to compare a live or restored table with a manifest.
 */
Datum
bo_rows_digest_sql(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	BoRowFormat format;
	BoRowsDigest d;
	int			nestlevel;
	char	   *json;

	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid)),
				 errhint("rows_digest reads every row: it needs SELECT on the table.")));
	/* it reads the heap directly: not for tables whose rows this role may only partly see */
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("rows_digest cannot read table %s: row-level security applies to this role",
						get_rel_name(relid)),
				 errhint("Run it as the table's owner or a role that bypasses row-level security.")));
	rel = table_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel))));
	format = bo_row_format_for(RelationGetDescr(rel));
	table_close(rel, NoLock);

	nestlevel = NewGUCNestLevel();
	bo_set_job_gucs();
	bo_table_rows_digest(relid, format, GetActiveSnapshot(), &d);
	AtEOXact_GUC(false, nestlevel);

	json = psprintf("{\"format\": \"%s\", \"rowCount\": " UINT64_FORMAT ", \"rowsDigest\": \"%s\"}",
					bo_row_format_name(format), d.count, bo_rows_digest_hex(&d));
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}
