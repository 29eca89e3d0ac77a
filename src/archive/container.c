/*-------------------------------------------------------------------------
 *
 * container.c
 *		The archive container's streaming writer and reader as the server
 *		uses them, and the operator functions inspect_object,
 *		verify_object, archive_put and archive_get.
 *
 * The byte layout and the reasoning behind it are in archive.h; all of the
 * format's logic (header, frames, digests, AEAD, zstd, trailer, footer and
 * every check of the reader) is in format.c, which knows nothing of the
 * server so that the fuzz harness (test/fuzz) runs exactly that code.
 * This file wraps it with what only the server has:
 *
 *	- Storage: the core reads through a callback doing ranged storage gets
 *	  and writes through one appending to a storage writer.
 *	- Keys: the writer makes a fresh data key, the reader unwraps it from
 *	  the key objects beside the data object; missing or wrong keys are
 *	  object_not_in_prerequisite_state (55000) and name the key ids.
 *	  Nothing secret (data keys, KEKs) is ever put in a message.
 *	- Errors: the core records the first failure (chunk index and detail
 *	  sentence); this file raises it as data_corrupted (XX001), or, for
 *	  verify_object, reports it as a result.
 *	- Memory: the writer and the reader live in their own memory context,
 *	  with a child context reset per chunk (the storage driver's per-call
 *	  allocations and the per-frame digests go there), so memory does not
 *	  depend on the object's size.  CHECK_FOR_INTERRUPTS runs once per
 *	  chunk.  Resources outside palloc (zstd contexts, sodium_malloc'd data
 *	  keys) are freed by a reset callback on that context, so an ERROR
 *	  anywhere releases them; the storage writer discards its temporary
 *	  object on abort by itself.
 *	- The writer flushes a full chunk only when more data arrives, so the
 *	  last chunk is always known and flagged final when finishing.
 *	- With backup_offline.compression_workers > 0 the writer encodes chunks
 *	  in worker threads (see "The parallel chunk pipeline" below); the
 *	  bytes written are those of the serial path.
 *
 * IDENTIFICATION
 *		src/archive/container.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <zstd.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "backup_offline.h"
#include "archive/archive.h"
#include "archive/digest.h"
#include "archive/format.h"
#include "archive/keys.h"
#include "storage/storage.h"

PG_FUNCTION_INFO_V1(bo_archive_put_sql);
PG_FUNCTION_INFO_V1(bo_archive_get_sql);
PG_FUNCTION_INFO_V1(bo_inspect_object_sql);
PG_FUNCTION_INFO_V1(bo_verify_object_sql);

typedef struct BoWriterPool BoWriterPool;

struct BoArchiveWriter
{
	MemoryContext mcxt;			/* the writer and everything it keeps */
	MemoryContext chunkcxt;		/* reset after every chunk */
	MemoryContextCallback callback;
	BoStorage  *storage;
	BoStorageWriter *sw;
	char	   *name;
	char		kek_id[BO_ARCHIVE_KEK_ID_MAX + 1];
	unsigned char *data_key;	/* sodium_malloc'd; NULL without cipher */
	char	   *chunk;			/* chunk_size bytes of buffered plaintext */
	uint32		fill;
	BoFormatWriter core;		/* the format: header, frames, trailer */
	BoWriterPool *pool;			/* compression_workers > 0: the threads */
};

struct BoArchiveReader
{
	MemoryContext mcxt;
	MemoryContext chunkcxt;		/* reset before every chunk */
	MemoryContextCallback callback;
	BoStorage  *storage;
	char	   *name;
	unsigned char *data_key;	/* sodium_malloc'd */
	size_t		plain_pos;		/* bytes of core.plain handed out */
	BoFormatReader core;		/* the format: every check */
};

/*
 * Name of a compression method as options and inspect_object spell it.
 */
const char *
bo_compression_name(BoCompression compression)
{
	return compression == BO_COMPRESSION_ZSTD ? "zstd" : "none";
}

/*
 * Name of a cipher as options and inspect_object spell it.
 */
const char *
bo_cipher_name(BoCipher cipher)
{
	switch (cipher)
	{
		case BO_CIPHER_AUTO:
			return "auto";
		case BO_CIPHER_NONE:
			return "none";
		case BO_CIPHER_AES256GCM:
			return "aes-256-gcm";
		case BO_CIPHER_XCHACHA20POLY1305:
			return "xchacha20-poly1305";
	}
	return "unknown";
}

/*
 * Raise an error unless AES-256-GCM can run on this CPU.
 */
static void
require_aes(void)
{
	if (!crypto_aead_aes256gcm_is_available())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("AES-256-GCM is not available on this CPU"),
				 errdetail("libsodium's AES-256-GCM needs the AES-NI and CLMUL instructions."),
				 errhint("Write with cipher \"xchacha20-poly1305\" or \"auto\"; objects already written with AES-256-GCM must be read on a CPU that has them.")));
}

/* ---------------------------------------------------------------------
 * Writer
 * ---------------------------------------------------------------------
 */

/*
 * Format-core callback: append stored bytes to the storage writer.
 */
static void
writer_write_cb(void *arg, const void *data, size_t len)
{
	BoArchiveWriter *w = (BoArchiveWriter *) arg;

	bo_storage_put_write(w->sw, data, len);
}

/*
 * Format-core callback: memory that lives as long as the writer.
 */
static void *
writer_alloc_cb(void *arg, size_t size)
{
	BoArchiveWriter *w = (BoArchiveWriter *) arg;

	return MemoryContextAlloc(w->mcxt, size);
}

/*
 * Format-core callback: free memory from writer_alloc_cb.
 */
static void
mcxt_free_cb(void *arg, void *ptr)
{
	pfree(ptr);
}

static const BoFormatOps writer_ops = {
	.read = NULL,
	.write = writer_write_cb,
	.alloc = writer_alloc_cb,
	.free = mcxt_free_cb
};

/*
 * Raise the error a failed step of the format writer reports.
 */
static void
writer_check(BoArchiveWriter *w, BoFormatWriteResult result)
{
	if (result == BO_FORMAT_WRITE_ZSTD_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compress chunk " UINT64_FORMAT " of archive object \"%s\": %s",
						w->core.index, w->name, w->core.zstd_error)));
	if (result == BO_FORMAT_WRITE_SEAL_ERROR)
		elog(ERROR, "could not encrypt archive chunk " UINT64_FORMAT, w->core.index);
}

/* ---------------------------------------------------------------------
 * The parallel chunk pipeline (compression_workers > 0)
 *
 * N worker threads encode (compress with their own single-threaded zstd
 * context, seal) whole chunks at once, each into its slot's own buffers;
 * the backend thread fills the next slot with plaintext, hands chunks out
 * and collects finished frames strictly in chunk order, and does all
 * digest work and storage writes itself (bo_format_writer_frame).  N + 1
 * slots: N chunks being encoded while the backend fills one, so memory is
 * bounded by N + 1 chunks.  Chunk i lives in slot i % (N + 1).  The bytes
 * are those of the serial writer: every frame depends only on its chunk,
 * its index and the header.
 *
 * Worker threads call nothing of PostgreSQL (no palloc, no elog), block
 * every signal, and allocate nothing themselves: the pool, its slots and
 * their buffers are malloc'd by the backend thread before the threads
 * start.  A worker records a failure in its slot; the backend thread raises
 * it when it collects that chunk.  The backend waits on a condition
 * variable with a 10 ms timeout and runs CHECK_FOR_INTERRUPTS between
 * waits, never holding the mutex when it may raise an ERROR.  pool_stop
 * (from the writer's memory-context reset callback, so on finish, abort,
 * ERROR and cancel alike) stops and joins every thread before anything is
 * freed; no thread outlives the writer.
 * ---------------------------------------------------------------------
 */
typedef enum BoSlotState
{
	BO_SLOT_FREE = 0,			/* the backend may fill it */
	BO_SLOT_QUEUED,				/* waiting for a worker */
	BO_SLOT_BUSY,				/* a worker encodes it */
	BO_SLOT_DONE				/* encoded (or failed), waiting for the backend */
} BoSlotState;

typedef struct BoWriterSlot
{
	BoSlotState state;
	uint64		index;
	uint32		len;
	bool		final;
	uint8	   *plain;			/* chunk_size bytes */
	uint8	   *cbuf;			/* ZSTD_compressBound(chunk_size); NULL without zstd */
	size_t		cbuf_size;
	uint8	   *sealed;			/* chunk_size + 16; NULL without cipher */
	/* out */
	BoFormatWriteResult result;
	const char *zstd_error;
	uint8		fh[BO_FORMAT_FRAME_HEADER_LENGTH];
	const uint8 *payload;
	size_t		payload_len;
} BoWriterSlot;

typedef struct BoWriterWorker
{
	BoWriterPool *pool;
	ZSTD_CCtx  *cctx;			/* NULL without zstd */
	pthread_t	thread;
	bool		started;
} BoWriterWorker;

struct BoWriterPool
{
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a slot was queued, or stop */
	pthread_cond_t done;		/* a slot is done */
	bool		sync_ok;		/* lock and conditions initialized */
	bool		stop;
	const BoFormatWriter *core; /* read only while threads run */
	int			nworkers;
	BoWriterWorker *workers;
	int			nslots;
	BoWriterSlot *slots;
	uint64		next_submit;	/* index of the chunk being filled */
	uint64		next_collect;	/* index of the next frame to write */
};

static void *
pool_worker_main(void *arg)
{
	BoWriterWorker *me = (BoWriterWorker *) arg;
	BoWriterPool *pool = me->pool;
	sigset_t	all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	pthread_mutex_lock(&pool->lock);
	for (;;)
	{
		BoWriterSlot *slot = NULL;
		int			i;

		if (pool->stop)
			break;
		/* the queued chunk with the lowest index */
		for (i = 0; i < pool->nslots; i++)
		{
			BoWriterSlot *s = &pool->slots[i];

			if (s->state == BO_SLOT_QUEUED && (slot == NULL || s->index < slot->index))
				slot = s;
		}
		if (slot == NULL)
		{
			pthread_cond_wait(&pool->work, &pool->lock);
			continue;
		}
		slot->state = BO_SLOT_BUSY;
		pthread_mutex_unlock(&pool->lock);

		slot->zstd_error = NULL;
		slot->result = bo_format_frame_encode(pool->core, me->cctx, slot->index,
											  slot->plain, slot->len, slot->final,
											  slot->cbuf, slot->cbuf_size, slot->sealed,
											  slot->fh, &slot->payload, &slot->payload_len,
											  &slot->zstd_error);

		pthread_mutex_lock(&pool->lock);
		slot->state = BO_SLOT_DONE;
		pthread_cond_broadcast(&pool->done);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/*
 * Stop and join every worker, then free the pool.  Safe on a partly built
 * pool and more than once (w->pool is cleared).
 */
static void
pool_stop(BoArchiveWriter *w)
{
	BoWriterPool *pool = w->pool;
	int			i;

	if (pool == NULL)
		return;
	if (pool->sync_ok)
	{
		pthread_mutex_lock(&pool->lock);
		pool->stop = true;
		pthread_cond_broadcast(&pool->work);
		pthread_mutex_unlock(&pool->lock);
	}
	if (pool->workers != NULL)
	{
		for (i = 0; i < pool->nworkers; i++)
			if (pool->workers[i].started)
				pthread_join(pool->workers[i].thread, NULL);
		for (i = 0; i < pool->nworkers; i++)
			if (pool->workers[i].cctx != NULL)
				ZSTD_freeCCtx(pool->workers[i].cctx);
		free(pool->workers);
	}
	if (pool->slots != NULL)
	{
		for (i = 0; i < pool->nslots; i++)
		{
			free(pool->slots[i].plain);
			free(pool->slots[i].cbuf);
			free(pool->slots[i].sealed);
		}
		free(pool->slots);
	}
	if (pool->sync_ok)
	{
		pthread_cond_destroy(&pool->done);
		pthread_cond_destroy(&pool->work);
		pthread_mutex_destroy(&pool->lock);
	}
	free(pool);
	w->pool = NULL;
}

static void
pool_oom(BoArchiveWriter *w)
{
	pool_stop(w);
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory"),
			 errdetail("Could not set up %d archive compression workers.", bo_compression_workers)));
}

/*
 * Build the pool and start its threads (after bo_format_writer_begin: the
 * threads read the header hash).  w->chunk becomes slot 0's buffer.
 */
static void
pool_start(BoArchiveWriter *w, int nworkers)
{
	BoWriterPool *pool;
	size_t		chunk_size = w->core.chunk_size;
	sigset_t	all;
	sigset_t	old;
	int			i;
	int			rc = 0;

	pool = calloc(1, sizeof(BoWriterPool));
	if (pool == NULL)
		pool_oom(w);
	w->pool = pool;
	pool->core = &w->core;
	pool->nworkers = nworkers;
	pool->nslots = nworkers + 1;
	if (pthread_mutex_init(&pool->lock, NULL) != 0)
		pool_oom(w);
	if (pthread_cond_init(&pool->work, NULL) != 0)
	{
		pthread_mutex_destroy(&pool->lock);
		pool_oom(w);
	}
	if (pthread_cond_init(&pool->done, NULL) != 0)
	{
		pthread_cond_destroy(&pool->work);
		pthread_mutex_destroy(&pool->lock);
		pool_oom(w);
	}
	pool->sync_ok = true;

	pool->slots = calloc(pool->nslots, sizeof(BoWriterSlot));
	pool->workers = calloc(nworkers, sizeof(BoWriterWorker));
	if (pool->slots == NULL || pool->workers == NULL)
		pool_oom(w);
	for (i = 0; i < pool->nslots; i++)
	{
		BoWriterSlot *slot = &pool->slots[i];

		slot->plain = malloc(chunk_size);
		if (slot->plain == NULL)
			pool_oom(w);
		if (w->core.compression == BO_COMPRESSION_ZSTD)
		{
			slot->cbuf_size = ZSTD_compressBound(chunk_size);
			slot->cbuf = malloc(slot->cbuf_size);
			if (slot->cbuf == NULL)
				pool_oom(w);
		}
		if (w->core.cipher != BO_CIPHER_NONE)
		{
			slot->sealed = malloc(chunk_size + BO_FORMAT_AEAD_TAG_LENGTH);
			if (slot->sealed == NULL)
				pool_oom(w);
		}
	}
	for (i = 0; i < nworkers; i++)
	{
		BoWriterWorker *wk = &pool->workers[i];

		wk->pool = pool;
		if (w->core.compression == BO_COMPRESSION_ZSTD)
		{
			size_t		ret;

			wk->cctx = ZSTD_createCCtx();
			if (wk->cctx == NULL)
				pool_oom(w);
			ret = ZSTD_CCtx_setParameter(wk->cctx, ZSTD_c_compressionLevel, w->core.level);
			if (ZSTD_isError(ret))
			{
				pool_stop(w);
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("could not set zstd compression level to %d: %s",
								w->core.level, ZSTD_getErrorName(ret))));
			}
		}
	}

	/* threads start with every signal blocked (and block them again themselves) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < nworkers; i++)
	{
		rc = pthread_create(&pool->workers[i].thread, NULL, pool_worker_main, &pool->workers[i]);
		if (rc != 0)
			break;
		pool->workers[i].started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		pool_stop(w);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start archive compression worker thread: %s", strerror(rc))));
	}

	pool->next_submit = 0;
	pool->next_collect = 0;
	w->chunk = (char *) pool->slots[0].plain;
}

/*
 * Wait (interruptibly) until slot is done.
 */
static void
pool_wait_done(BoWriterPool *pool, BoWriterSlot *slot)
{
	for (;;)
	{
		bool		done;
		struct timespec ts;

		pthread_mutex_lock(&pool->lock);
		if (slot->state != BO_SLOT_DONE)
		{
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 10 * 1000 * 1000;
			if (ts.tv_nsec >= 1000 * 1000 * 1000)
			{
				ts.tv_sec++;
				ts.tv_nsec -= 1000 * 1000 * 1000;
			}
			pthread_cond_timedwait(&pool->done, &pool->lock, &ts);
		}
		done = slot->state == BO_SLOT_DONE;
		pthread_mutex_unlock(&pool->lock);
		if (done)
			return;
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Write the next frame in order (waiting for it when wait), raising a
 * worker's failure; false when !wait and it is not done yet.
 */
static bool
pool_collect_one(BoArchiveWriter *w, bool wait)
{
	BoWriterPool *pool = w->pool;
	BoWriterSlot *slot = &pool->slots[pool->next_collect % pool->nslots];
	MemoryContext oldcxt;
	bool		done;

	Assert(pool->next_collect < pool->next_submit);
	if (wait)
		pool_wait_done(pool, slot);
	else
	{
		pthread_mutex_lock(&pool->lock);
		done = slot->state == BO_SLOT_DONE;
		pthread_mutex_unlock(&pool->lock);
		if (!done)
			return false;
	}
	/* done: the worker no longer touches the slot */
	if (slot->result != BO_FORMAT_WRITE_OK)
	{
		w->core.zstd_error = slot->zstd_error;
		writer_check(w, slot->result);
	}
	CHECK_FOR_INTERRUPTS();
	oldcxt = MemoryContextSwitchTo(w->chunkcxt);
	bo_format_writer_frame(&w->core, slot->fh, slot->payload, slot->payload_len,
						   slot->plain, slot->len);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(w->chunkcxt);
	pool->next_collect++;
	slot->state = BO_SLOT_FREE;	/* only the backend touches a done slot */
	return true;
}

/*
 * Hand the filled chunk (w->chunk, w->fill bytes) to the workers and make
 * w->chunk the next free slot's buffer; with final, write every frame.
 */
static void
pool_submit(BoArchiveWriter *w, bool final)
{
	BoWriterPool *pool = w->pool;
	BoWriterSlot *slot = &pool->slots[pool->next_submit % pool->nslots];
	BoWriterSlot *next;

	Assert(slot->state == BO_SLOT_FREE && (char *) slot->plain == w->chunk);
	CHECK_FOR_INTERRUPTS();
	slot->index = pool->next_submit;
	slot->len = w->fill;
	slot->final = final;
	slot->result = BO_FORMAT_WRITE_OK;
	pthread_mutex_lock(&pool->lock);
	slot->state = BO_SLOT_QUEUED;
	pthread_cond_signal(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	pool->next_submit++;
	w->fill = 0;

	if (final)
	{
		while (pool->next_collect < pool->next_submit)
			pool_collect_one(w, true);
		w->chunk = NULL;
		return;
	}

	/* write what is ready, then make sure the next slot is free */
	while (pool->next_collect < pool->next_submit && pool_collect_one(w, false))
		;
	next = &pool->slots[pool->next_submit % pool->nslots];
	while (next->state != BO_SLOT_FREE)
		pool_collect_one(w, true);
	w->chunk = (char *) next->plain;
}

/*
 * Default options: zstd level 3, cipher auto, BLAKE3, 1 MiB chunks, the
 * default key id, the storage name as identity.
 */
void
bo_archive_options_init(BoArchiveOptions *options)
{
	memset(options, 0, sizeof(*options));
	options->compression = BO_COMPRESSION_ZSTD;
	options->compression_level = 3;
	options->cipher = BO_CIPHER_AUTO;
	options->digest = BO_DIGEST_BLAKE3;
	options->chunk_size = BO_ARCHIVE_DEFAULT_CHUNK_SIZE;
	options->kek_id = NULL;
	options->object_id = NULL;
}

/*
 * Memory-context callback: free what palloc does not own.
 */
static void
writer_release(void *arg)
{
	BoArchiveWriter *w = (BoArchiveWriter *) arg;

	/* first: the threads read the key and the header hash */
	pool_stop(w);
	if (w->core.cctx != NULL)
		ZSTD_freeCCtx(w->core.cctx);
	w->core.cctx = NULL;
	bo_data_key_free(w->data_key);
	w->data_key = NULL;
	w->core.data_key = NULL;
}

/*
 * Check options; raise an error naming the bad one.
 */
static void
check_options(const BoArchiveOptions *o)
{
	if (o->compression != BO_COMPRESSION_NONE && o->compression != BO_COMPRESSION_ZSTD)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid archive compression %d", (int) o->compression)));
	if (o->compression == BO_COMPRESSION_ZSTD &&
		(o->compression_level == 0 || o->compression_level < -128 ||
		 o->compression_level > 19))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid zstd compression level %d", o->compression_level),
				 errdetail("Levels are 1 to 19, or -128 to -1 for the fast levels.")));
	if (o->cipher < BO_CIPHER_AUTO || o->cipher > BO_CIPHER_XCHACHA20POLY1305)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid archive cipher %d", (int) o->cipher)));
	if (o->digest != BO_DIGEST_SHA256 && o->digest != BO_DIGEST_SHA512 &&
		o->digest != BO_DIGEST_BLAKE3)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid archive digest %d", (int) o->digest)));
	if (o->chunk_size < BO_ARCHIVE_MIN_CHUNK_SIZE || o->chunk_size > BO_ARCHIVE_MAX_CHUNK_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid archive chunk size %u", o->chunk_size),
				 errdetail("The chunk size is %d to %d bytes.",
						   BO_ARCHIVE_MIN_CHUNK_SIZE, BO_ARCHIVE_MAX_CHUNK_SIZE)));
}

/*
 * Start writing the object "name": resolve the options, make a data key,
 * write the header.  The writer lives in its own memory context under
 * CurrentMemoryContext; an ERROR (or deleting that context) before
 * bo_archive_writer_finish leaves nothing under the name.
 */
BoArchiveWriter *
bo_archive_writer_begin(BoStorage *storage, const char *name, const BoArchiveOptions *options)
{
	MemoryContext mcxt;
	MemoryContext oldcxt;
	BoArchiveWriter *w;
	BoCipher	cipher = options->cipher;
	const char *kek_id = NULL;
	const char *object_id = options->object_id ? options->object_id : name;
	size_t		oidlen = strlen(object_id);
	BoStorageStat st;

	check_options(options);
	bo_storage_check_name(name);
	/* refuse early rather than after writing the data (the commit refuses too) */
	if (bo_storage_stat(storage, name, &st))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("archive object \"%s\" already exists", name),
				 errdetail("Archive objects are written once and never replaced.")));
	if (oidlen > PG_UINT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("archive object identity is longer than %d bytes", PG_UINT16_MAX)));
	pg_verifymbstr(object_id, oidlen, false);

	bo_keys_init();
	if (cipher != BO_CIPHER_NONE)
	{
		kek_id = options->kek_id ? options->kek_id : bo_default_kek_id();
		if (kek_id == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no key-encryption key for archive object \"%s\"", name),
					 errdetail("Encryption needs a key id, and backup_offline.default_key_id is empty."),
					 errhint("Set backup_offline.default_key_id, name a key id, or write without a cipher.")));
		bo_kek_id_check(kek_id, "key id");
		bo_kek_require(kek_id);
		if (cipher == BO_CIPHER_AUTO)
			cipher = crypto_aead_aes256gcm_is_available() ? BO_CIPHER_AES256GCM
				: BO_CIPHER_XCHACHA20POLY1305;
		if (cipher == BO_CIPHER_AES256GCM)
			require_aes();
	}

	mcxt = AllocSetContextCreate(CurrentMemoryContext, "archive writer",
								 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(mcxt);
	w = palloc0(sizeof(BoArchiveWriter));
	w->mcxt = mcxt;
	w->callback.func = writer_release;
	w->callback.arg = w;
	MemoryContextRegisterResetCallback(mcxt, &w->callback);
	w->chunkcxt = AllocSetContextCreate(mcxt, "archive writer chunk",
										ALLOCSET_DEFAULT_SIZES);
	w->storage = storage;
	w->name = pstrdup(name);
	w->core.ops = &writer_ops;
	w->core.arg = w;
	w->core.compression = options->compression;
	w->core.level = w->core.compression == BO_COMPRESSION_ZSTD ? options->compression_level : 0;
	w->core.cipher = cipher;
	w->core.digest = options->digest;
	w->core.chunk_size = options->chunk_size;
	if (cipher != BO_CIPHER_NONE)
	{
		strlcpy(w->kek_id, kek_id, sizeof(w->kek_id));
		w->data_key = bo_data_key_new(w->core.key_id);
		w->core.data_key = w->data_key;
	}
	randombytes_buf(w->core.nonce_prefix, sizeof(w->core.nonce_prefix));

	if (w->core.compression == BO_COMPRESSION_ZSTD)
	{
		size_t		ret;

		w->core.cctx = ZSTD_createCCtx();
		if (w->core.cctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not create a zstd compression context.")));
		ret = ZSTD_CCtx_setParameter(w->core.cctx, ZSTD_c_compressionLevel, w->core.level);
		if (ZSTD_isError(ret))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not set zstd compression level to %d: %s",
							w->core.level, ZSTD_getErrorName(ret))));
	}

	w->sw = bo_storage_put_begin(storage, name);
	bo_format_writer_begin(&w->core, object_id, oidlen);
	if (bo_compression_workers > 0)
		pool_start(w, bo_compression_workers);	/* sets w->chunk */
	else
		w->chunk = palloc(w->core.chunk_size);

	MemoryContextSwitchTo(oldcxt);
	return w;
}

/*
 * Compress, encrypt, digest and write the buffered chunk.
 */
static void
writer_flush_chunk(BoArchiveWriter *w, bool final)
{
	MemoryContext oldcxt;

	if (w->pool != NULL)
	{
		pool_submit(w, final);
		return;
	}
	CHECK_FOR_INTERRUPTS();
	oldcxt = MemoryContextSwitchTo(w->chunkcxt);
	writer_check(w, bo_format_writer_chunk(&w->core, w->chunk, w->fill, final));
	w->fill = 0;
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(w->chunkcxt);
}

/*
 * Append len bytes of plaintext to the object.
 */
void
bo_archive_write(BoArchiveWriter *w, const void *data, size_t len)
{
	const char *p = (const char *) data;

	while (len > 0)
	{
		size_t		n;

		/* a full chunk is written only once more data shows it is not the last */
		if (w->fill == w->core.chunk_size)
			writer_flush_chunk(w, false);
		n = Min(len, (size_t) (w->core.chunk_size - w->fill));
		memcpy(w->chunk + w->fill, p, n);
		w->fill += n;
		p += n;
		len -= n;
	}
}

/*
 * Write the final chunk, the trailer and the footer; wrap the data key;
 * commit the object; report what was written.  Frees the writer.
 */
void
bo_archive_writer_finish(BoArchiveWriter *w, BoArchiveResult *out)
{
	MemoryContext oldcxt;

	writer_flush_chunk(w, true);
	oldcxt = MemoryContextSwitchTo(w->mcxt);
	writer_check(w, bo_format_writer_finish(&w->core));

	memset(out, 0, sizeof(*out));
	memcpy(out->stored_digest, w->core.stored_digest_out, w->core.dlen);

	/* the key first: a committed data object always has its key */
	if (w->core.cipher != BO_CIPHER_NONE)
		bo_key_wrap_put(w->storage, w->name, w->kek_id, w->core.key_id, w->data_key);
	bo_storage_put_commit(w->sw);

	out->stored_length = w->core.stored_length;
	out->plaintext_length = w->core.plaintext_length;
	out->chunk_count = w->core.index;
	out->compression = w->core.compression;
	out->compression_level = w->core.level;
	out->cipher = w->core.cipher;
	out->digest = w->core.digest;
	out->digest_length = w->core.dlen;
	memcpy(out->plaintext_digest, w->core.plaintext_digest, w->core.dlen);
	memcpy(out->key_id, w->core.key_id, BO_ARCHIVE_KEY_ID_LENGTH);
	strlcpy(out->kek_id, w->kek_id, sizeof(out->kek_id));

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(w->mcxt);
}

/*
 * Give up writing: nothing appears under the name.  Frees the writer.
 */
void
bo_archive_writer_abort(BoArchiveWriter *w)
{
	bo_storage_put_abort(w->sw);
	MemoryContextDelete(w->mcxt);
}

/* ---------------------------------------------------------------------
 * Reader
 * ---------------------------------------------------------------------
 */

/*
 * Format-core callback: up to len stored bytes at offset.  The driver's
 * per-call allocations go away with the chunk.
 */
static size_t
reader_read_cb(void *arg, uint64 offset, void *buf, size_t len)
{
	BoArchiveReader *r = (BoArchiveReader *) arg;
	MemoryContext oldcxt = MemoryContextSwitchTo(r->chunkcxt);
	size_t		got = bo_storage_get(r->storage, r->name, offset, buf, len);

	MemoryContextSwitchTo(oldcxt);
	return got;
}

/*
 * Format-core callback: memory that lives as long as the reader.
 */
static void *
reader_alloc_cb(void *arg, size_t size)
{
	BoArchiveReader *r = (BoArchiveReader *) arg;

	return MemoryContextAlloc(r->mcxt, size);
}

static const BoFormatOps reader_ops = {
	.read = reader_read_cb,
	.write = NULL,
	.alloc = reader_alloc_cb,
	.free = mcxt_free_cb
};

/*
 * Memory-context callback: free what palloc does not own.
 */
static void
reader_release(void *arg)
{
	BoArchiveReader *r = (BoArchiveReader *) arg;

	if (r->core.dctx != NULL)
		ZSTD_freeDCtx(r->core.dctx);
	r->core.dctx = NULL;
	bo_data_key_free(r->data_key);
	r->data_key = NULL;
	r->core.data_key = NULL;
}

/*
 * Raise the recorded failure as a data_corrupted error.
 */
static void
reader_raise(BoArchiveReader *r)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("object \"%s\" is corrupt at chunk " UINT64_FORMAT, r->name, r->core.fail_chunk),
			 errdetail_internal("%s", r->core.problem)));
}

/*
 * Create a reader (no I/O yet) in its own memory context.
 */
static BoArchiveReader *
reader_create(BoStorage *storage, const char *name, bool decode)
{
	MemoryContext mcxt = AllocSetContextCreate(CurrentMemoryContext, "archive reader",
											   ALLOCSET_DEFAULT_SIZES);
	BoArchiveReader *r = MemoryContextAllocZero(mcxt, sizeof(BoArchiveReader));

	r->mcxt = mcxt;
	r->callback.func = reader_release;
	r->callback.arg = r;
	MemoryContextRegisterResetCallback(mcxt, &r->callback);
	r->chunkcxt = AllocSetContextCreate(mcxt, "archive reader chunk", ALLOCSET_DEFAULT_SIZES);
	r->storage = storage;
	r->name = MemoryContextStrdup(mcxt, name);
	bo_format_reader_init(&r->core, &reader_ops, r, decode);
	return r;
}

/*
 * Read and check the header (see bo_format_reader_header); its digests
 * live in the reader's context.
 */
static bool
reader_header(BoArchiveReader *r, const char *object_id)
{
	MemoryContext oldcxt;
	bool		ok;

	bo_keys_init();
	oldcxt = MemoryContextSwitchTo(r->mcxt);
	ok = bo_format_reader_header(&r->core, object_id);
	MemoryContextSwitchTo(oldcxt);
	return ok;
}

/*
 * Prepare decoding: the data key (unwrapped from the key objects) and a
 * zstd context.  Key problems raise an error (or, with problem given,
 * are returned there).
 */
static bool
reader_prepare(BoArchiveReader *r, BoKeyProblem *problem)
{
	if (!r->core.decode)
		return true;
	if (r->core.cipher == BO_CIPHER_AES256GCM)
		require_aes();
	if (r->core.cipher != BO_CIPHER_NONE)
	{
		BoKeyProblem p;
		MemoryContext oldcxt = MemoryContextSwitchTo(r->mcxt);

		r->data_key = bo_key_unwrap(r->storage, r->name, r->core.key_id, &p);
		MemoryContextSwitchTo(oldcxt);
		if (r->data_key == NULL)
		{
			if (problem != NULL)
			{
				*problem = p;
				return false;
			}
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg_internal("%s", p.message),
					 errdetail_internal("%s", p.detail)));
		}
	}
	if (!bo_format_reader_start(&r->core, r->data_key))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a zstd decompression context.")));
	return true;
}

/*
 * Verify (and when decoding, decrypt and decompress) the next frame, and
 * after the final one the trailer; per-chunk memory is reset first.
 */
static bool
reader_next_chunk(BoArchiveReader *r)
{
	MemoryContext oldcxt;
	bool		ok;

	CHECK_FOR_INTERRUPTS();
	r->plain_pos = 0;
	MemoryContextReset(r->chunkcxt);
	oldcxt = MemoryContextSwitchTo(r->chunkcxt);
	ok = bo_format_reader_next_chunk(&r->core);
	MemoryContextSwitchTo(oldcxt);
	return ok;
}

/*
 * Open "name" for reading: check the header (identity object_id, or the
 * storage name when NULL) and unwrap the data key.
 */
BoArchiveReader *
bo_archive_reader_open(BoStorage *storage, const char *name, const char *object_id)
{
	BoArchiveReader *r = reader_create(storage, name, true);

	if (!reader_header(r, object_id ? object_id : name))
		reader_raise(r);
	reader_prepare(r, NULL);
	return r;
}

/*
 * Copy up to len bytes of verified plaintext into buf; 0 at the end, which
 * comes only after the whole object is verified.
 */
size_t
bo_archive_read(BoArchiveReader *r, void *buf, size_t len)
{
	size_t		total = 0;

	if (r->core.failed)
		reader_raise(r);
	while (total < len)
	{
		if (r->plain_pos < r->core.plain_len)
		{
			size_t		n = Min(len - total, r->core.plain_len - r->plain_pos);

			memcpy((char *) buf + total, r->core.plain + r->plain_pos, n);
			r->plain_pos += n;
			total += n;
			continue;
		}
		if (r->core.done)
			break;
		if (!reader_next_chunk(r))
			reader_raise(r);
	}
	return total;
}

/*
 * What a fully read object was: its sizes and digests, as verified.  Only
 * after bo_archive_read has returned 0.
 */
void
bo_archive_reader_result(BoArchiveReader *r, BoArchiveResult *out)
{
	if (!r->core.done)
		elog(ERROR, "archive object \"%s\" has not been read to its end", r->name);
	memset(out, 0, sizeof(*out));
	out->stored_length = r->core.offset;
	out->plaintext_length = r->core.plaintext_length;
	out->chunk_count = r->core.index;
	out->compression = r->core.compression;
	out->compression_level = r->core.level;
	out->cipher = r->core.cipher;
	out->digest = r->core.digest;
	out->digest_length = r->core.dlen;
	memcpy(out->stored_digest, r->core.stored_digest_out, r->core.dlen);
	memcpy(out->plaintext_digest, r->core.plaintext_digest, r->core.dlen);
	memcpy(out->key_id, r->core.key_id, BO_ARCHIVE_KEY_ID_LENGTH);
}

/*
 * Free a reader.
 */
void
bo_archive_reader_close(BoArchiveReader *r)
{
	MemoryContextDelete(r->mcxt);
}

/* ---------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------
 */

/*
 * Hex digits of data, as digests and key ids are shown.
 */
char *
bo_hex(const uint8 *data, size_t len)
{
	char	   *out = palloc(len * 2 + 1);

	hex_encode((const char *) data, len, out);
	out[len * 2] = '\0';
	return out;
}

/*
 * JSON output: "key": into an object being built, after a comma unless the
 * object or array was just opened.  Nested objects are built in the same
 * buffer: add the key with "{" as its raw value, then the members, then
 * append "}".
 */
void
bo_json_add_key(StringInfo s, const char *key)
{
	if (s->len > 0 && s->data[s->len - 1] != '{' && s->data[s->len - 1] != '[')
		appendStringInfoString(s, ", ");
	escape_json(s, key);
	appendStringInfoString(s, ": ");
}

/* "key": "value" (null for NULL) */
void
bo_json_add_text(StringInfo s, const char *key, const char *value)
{
	bo_json_add_key(s, key);
	if (value == NULL)
		appendStringInfoString(s, "null");
	else
		escape_json(s, value);
}

/* "key": raw JSON (null for NULL) */
void
bo_json_add_raw(StringInfo s, const char *key, const char *raw)
{
	bo_json_add_key(s, key);
	appendStringInfoString(s, raw ? raw : "null");
}

void
bo_json_add_u64(StringInfo s, const char *key, uint64 value)
{
	bo_json_add_key(s, key);
	appendStringInfo(s, UINT64_FORMAT, value);
}

/*
 * The finished JSON object as jsonb.
 */
static Datum
json_finish(StringInfo s)
{
	appendStringInfoChar(s, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(s->data));
}

/*
 * A JSON array of strings.
 */
static char *
json_string_array(List *items)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfoChar(&s, '[');
	foreach(lc, items)
	{
		if (s.len > 1)
			appendStringInfoString(&s, ", ");
		escape_json(&s, (char *) lfirst(lc));
	}
	appendStringInfoChar(&s, ']');
	return s.data;
}

/*
 * Read writer options from a JSON object (archive_put, archive_put_file):
 * compression, level, cipher, digest, chunkSize, keyId.
 */
void
bo_archive_parse_options(Jsonb *json, BoArchiveOptions *o)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		level_given = false;

	bo_archive_options_init(o);
	if (!JB_ROOT_IS_OBJECT(json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	it = JsonbIteratorInit(&json->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		JsonbValue	val;
		char	   *str = NULL;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &val, true);
		if (val.type == jbvString)
			str = pnstrdup(val.val.string.val, val.val.string.len);

		if (strcmp(key, "level") == 0 || strcmp(key, "chunkSize") == 0)
		{
			int64		n;

			if (val.type != jbvNumeric)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid options.%s: a number is required", key)));
			n = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(val.val.numeric)));
			if (strcmp(key, "level") == 0)
			{
				if (n < -128 || n > 19 || n == 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid options.level: %lld", (long long) n),
							 errdetail("zstd levels are 1 to 19, or -128 to -1 for the fast levels.")));
				o->compression_level = (int) n;
				level_given = true;
			}
			else
			{
				if (n < BO_ARCHIVE_MIN_CHUNK_SIZE || n > BO_ARCHIVE_MAX_CHUNK_SIZE)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid options.chunkSize: %lld", (long long) n),
							 errdetail("The chunk size is %d to %d bytes.",
									   BO_ARCHIVE_MIN_CHUNK_SIZE, BO_ARCHIVE_MAX_CHUNK_SIZE)));
				o->chunk_size = (uint32) n;
			}
			continue;
		}
		if (strcmp(key, "compression") != 0 && strcmp(key, "cipher") != 0 &&
			strcmp(key, "digest") != 0 && strcmp(key, "keyId") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown option options.%s", key),
					 errhint("Options are compression, level, cipher, digest, chunkSize and keyId.")));
		if (str == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid options.%s: a string is required", key)));
		if (strcmp(key, "compression") == 0)
		{
			if (strcmp(str, "none") == 0)
				o->compression = BO_COMPRESSION_NONE;
			else if (strcmp(str, "zstd") == 0)
				o->compression = BO_COMPRESSION_ZSTD;
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid options.compression: \"%s\"", str),
						 errhint("Give \"zstd\" or \"none\".")));
		}
		else if (strcmp(key, "cipher") == 0)
		{
			if (strcmp(str, "auto") == 0)
				o->cipher = BO_CIPHER_AUTO;
			else if (strcmp(str, "none") == 0)
				o->cipher = BO_CIPHER_NONE;
			else if (strcmp(str, "aes-256-gcm") == 0)
				o->cipher = BO_CIPHER_AES256GCM;
			else if (strcmp(str, "xchacha20-poly1305") == 0)
				o->cipher = BO_CIPHER_XCHACHA20POLY1305;
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid options.cipher: \"%s\"", str),
						 errhint("Give \"auto\", \"aes-256-gcm\", \"xchacha20-poly1305\" or \"none\".")));
		}
		else if (strcmp(key, "digest") == 0)
		{
			if (!bo_digest_parse(str, &o->digest))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid options.digest: \"%s\"", str),
						 errhint("Give \"sha256\", \"sha512\" or \"blake3\".")));
		}
		else
		{
			bo_kek_id_check(str, "options.keyId");
			o->kek_id = str;
		}
	}
	if (o->compression == BO_COMPRESSION_NONE && level_given)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options.level is given without compression")));
}

/*
 * What the writer reports for object "name", as the jsonb archive_put and
 * archive_put_file return: sizes, chunk count, digests, key ids.
 */
Datum
bo_archive_result_jsonb(const char *name, const BoArchiveResult *res)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	bo_json_add_text(&s, "name", name);
	bo_json_add_u64(&s, "storedLength", res->stored_length);
	bo_json_add_u64(&s, "plaintextLength", res->plaintext_length);
	bo_json_add_u64(&s, "chunkCount", res->chunk_count);
	bo_json_add_text(&s, "compression", bo_compression_name(res->compression));
	bo_json_add_raw(&s, "compressionLevel", psprintf("%d", res->compression_level));
	bo_json_add_text(&s, "cipher", bo_cipher_name(res->cipher));
	bo_json_add_text(&s, "digest", bo_digest_name(res->digest));
	bo_json_add_text(&s, "storedDigest", bo_hex(res->stored_digest, res->digest_length));
	bo_json_add_text(&s, "plaintextDigest", bo_hex(res->plaintext_digest, res->digest_length));
	bo_json_add_text(&s, "keyId", res->cipher != BO_CIPHER_NONE ?
				  bo_hex(res->key_id, BO_ARCHIVE_KEY_ID_LENGTH) : NULL);
	bo_json_add_text(&s, "wrappedBy", res->cipher != BO_CIPHER_NONE ? res->kek_id : NULL);
	return json_finish(&s);
}

/*
 * Raise an error unless the caller is a superuser.
 */
void
bo_archive_require_superuser(const char *what)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser to %s", what)));
}

/*
 * backup_offline.archive_put(storage jsonb, name text, data bytea,
 *		options jsonb DEFAULT '{}') RETURNS jsonb
 *
 * Write data as the archive object "name"; returns what the writer
 * reports (sizes, chunk count, digests, key ids).
 */
Datum
bo_archive_put_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *dest = PG_GETARG_JSONB_P(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bytea	   *data = PG_GETARG_BYTEA_PP(2);
	Jsonb	   *opts = PG_GETARG_JSONB_P(3);
	BoArchiveOptions o;
	BoArchiveWriter *w;
	BoArchiveResult res;
	BoStorage  *storage;

	bo_archive_require_superuser("write archive objects directly");
	bo_archive_parse_options(opts, &o);
	storage = bo_storage_open(dest);
	w = bo_archive_writer_begin(storage, name, &o);
	bo_archive_write(w, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	bo_archive_writer_finish(w, &res);

	PG_RETURN_DATUM(bo_archive_result_jsonb(name, &res));
}

/*
 * backup_offline.archive_get(storage jsonb, name text) RETURNS bytea
 *
 * The plaintext of the archive object "name", after verifying all of it.
 */
Datum
bo_archive_get_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *dest = PG_GETARG_JSONB_P(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	BoStorage  *storage;
	BoArchiveReader *r;
	StringInfoData s;
	char		buf[65536];
	size_t		n;

	bo_archive_require_superuser("read archive objects directly");
	storage = bo_storage_open(dest);
	r = bo_archive_reader_open(storage, name, NULL);
	initStringInfo(&s);
	appendStringInfoSpaces(&s, VARHDRSZ);
	while ((n = bo_archive_read(r, buf, sizeof(buf))) > 0)
		appendBinaryStringInfo(&s, buf, n);
	bo_archive_reader_close(r);
	SET_VARSIZE(s.data, s.len);
	PG_RETURN_BYTEA_P((bytea *) s.data);
}

/*
 * backup_offline.inspect_object(storage jsonb, name text) RETURNS jsonb
 *
 * The header fields, the trailer's sizes (read through the footer) and the
 * key ids of the wraps present.  Nothing is verified and nothing secret is
 * shown.
 */
Datum
bo_inspect_object_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *dest = PG_GETARG_JSONB_P(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	BoStorage  *storage = bo_storage_open(dest);
	BoArchiveReader *r;
	BoStorageStat st;
	StringInfoData s;
	uint8		footer[BO_FORMAT_FOOTER_LENGTH];
	uint8		trailer[20];
	const char *problem = NULL;

	if (!bo_storage_stat(storage, name, &st))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("object \"%s\" does not exist", name)));
	r = reader_create(storage, name, false);
	if (!reader_header(r, NULL))
		reader_raise(r);

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	bo_json_add_text(&s, "name", name);
	bo_json_add_raw(&s, "formatVersion", psprintf("%d", BO_ARCHIVE_FORMAT_VERSION));
	bo_json_add_u64(&s, "headerLength", r->core.header_length);
	bo_json_add_text(&s, "compression", bo_compression_name(r->core.compression));
	bo_json_add_raw(&s, "compressionLevel", psprintf("%d", r->core.level));
	bo_json_add_text(&s, "cipher", bo_cipher_name(r->core.cipher));
	bo_json_add_text(&s, "digest", bo_digest_name(r->core.digest));
	bo_json_add_u64(&s, "chunkSize", r->core.chunk_size);
	bo_json_add_text(&s, "keyId", r->core.cipher != BO_CIPHER_NONE ?
				  bo_hex(r->core.key_id, BO_ARCHIVE_KEY_ID_LENGTH) : NULL);
	bo_json_add_text(&s, "noncePrefix", bo_hex(r->core.nonce_prefix, 16));
	bo_json_add_text(&s, "objectId", r->core.object_id);
	bo_json_add_u64(&s, "storedLength", st.size);
	bo_json_add_raw(&s, "keyWraps", json_string_array(bo_key_wraps(storage, name)));

	/* the trailer's sizes, found through the footer */
	if (st.size < r->core.header_length + BO_FORMAT_FOOTER_LENGTH ||
		bo_storage_get(storage, name, st.size - BO_FORMAT_FOOTER_LENGTH, footer, BO_FORMAT_FOOTER_LENGTH) != BO_FORMAT_FOOTER_LENGTH ||
		memcmp(footer + 8, BO_FORMAT_END_MAGIC, BO_FORMAT_MAGIC_LENGTH) != 0)
		problem = "The object does not end with a footer.";
	else if (bo_get_u64(footer) < r->core.header_length ||
			 bo_get_u64(footer) > st.size - BO_FORMAT_FOOTER_LENGTH - sizeof(trailer) ||
			 bo_storage_get(storage, name, bo_get_u64(footer), trailer, sizeof(trailer)) != sizeof(trailer) ||
			 bo_get_u32(trailer) != BO_FORMAT_TRAILER_MARKER)
		problem = "The footer does not lead to a trailer.";
	if (problem == NULL)
	{
		bo_json_add_u64(&s, "chunkCount", bo_get_u64(trailer + 4));
		bo_json_add_u64(&s, "plaintextLength", bo_get_u64(trailer + 12));
	}
	else
	{
		bo_json_add_raw(&s, "chunkCount", "null");
		bo_json_add_raw(&s, "plaintextLength", "null");
	}
	bo_json_add_text(&s, "problem", problem);
	bo_archive_reader_close(r);
	PG_RETURN_DATUM(json_finish(&s));
}

/*
 * backup_offline.verify_object(storage jsonb, name text,
 *		with_key boolean DEFAULT true) RETURNS jsonb
 *
 * Check every frame of the object (and, with_key, decrypt, decompress and
 * check the plaintext digest); reports chunks checked, sizes, the stored
 * digest, the plaintext digest (with_key), valid, firstFailingChunk and
 * problem.  A damaged object is a result, not an error.
 */
Datum
bo_verify_object_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *dest = PG_GETARG_JSONB_P(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		with_key = PG_GETARG_BOOL(2);
	BoStorage  *storage = bo_storage_open(dest);
	BoStorageStat st;
	BoArchiveReader *r;
	StringInfoData s;
	char	   *key_problem = NULL;

	if (!bo_storage_stat(storage, name, &st))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("object \"%s\" does not exist", name)));
	r = reader_create(storage, name, with_key);
	if (reader_header(r, name))
	{
		BoKeyProblem p;

		if (!reader_prepare(r, &p))
		{
			key_problem = psprintf("%s: %s", p.message, p.detail);
			bo_format_reader_fail(&r->core, 0, "%s", key_problem);
		}
		while (!r->core.failed && !r->core.done)
		{
			reader_next_chunk(r);
		}
	}

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	bo_json_add_text(&s, "name", name);
	bo_json_add_raw(&s, "valid", r->core.failed ? "false" : "true");
	bo_json_add_raw(&s, "withKey", with_key ? "true" : "false");
	bo_json_add_u64(&s, "chunksChecked", r->core.index);
	bo_json_add_u64(&s, "storedLength", st.size);
	if (r->core.done)
	{
		bo_json_add_u64(&s, "plaintextLength", r->core.plaintext_length);
		bo_json_add_text(&s, "digest", bo_digest_name(r->core.digest));
		bo_json_add_text(&s, "storedDigest", bo_hex(r->core.stored_digest_out, r->core.dlen));
		bo_json_add_text(&s, "plaintextDigest", with_key ? bo_hex(r->core.plaintext_digest, r->core.dlen) : NULL);
		bo_json_add_raw(&s, "firstFailingChunk", "null");
	}
	else
	{
		bo_json_add_raw(&s, "plaintextLength", "null");
		bo_json_add_text(&s, "digest", r->core.stored_digest ? bo_digest_name(r->core.digest) : NULL);
		bo_json_add_raw(&s, "storedDigest", "null");
		bo_json_add_raw(&s, "plaintextDigest", "null");
		bo_json_add_u64(&s, "firstFailingChunk", r->core.fail_chunk);
	}
	bo_json_add_text(&s, "problem", r->core.failed ? r->core.problem : NULL);
	bo_archive_reader_close(r);
	PG_RETURN_DATUM(json_finish(&s));
}
