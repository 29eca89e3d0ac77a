/*-------------------------------------------------------------------------
 *
 * digest.c
 *		Streaming digests (SHA-256, SHA-512, BLAKE3) for the archive, and
 *		the SQL function digest(bytea, text).
 *
 * SHA-256 and SHA-512 go through PostgreSQL's pg_cryptohash (OpenSSL on
 * Debian's build), BLAKE3 through the official C implementation, which the
 * Makefile builds from the sources in Debian's librust-blake3-dev into a
 * static archive with its SIMD kernels (SSE2, SSE4.1, AVX2, AVX-512 on
 * x86_64, NEON on aarch64); blake3_dispatch.c picks the best one for the
 * CPU at run time.
 *
 * Resource handling.  A BLAKE3 hasher is a plain struct in palloc'd memory
 * and needs nothing special.  A pg_cryptohash context is different: the
 * backend allocates it in TopMemoryContext (with an OpenSSL EVP context
 * behind it) and remembers it in CurrentResourceOwner, which frees it when
 * the owner is released -- on abort silently, on commit with a leak
 * WARNING.  A BoDigest lives in an ordinary memory context, so two
 * different things can end the life of its SHA context, in either order:
 *
 *	1. The memory context holding the BoDigest is reset or deleted (a
 *	   per-chunk context reset, or at abort AtAbort_Portals deleting the
 *	   executor's contexts, which happens before the resource owners are
 *	   released).  A memory-context reset callback frees the SHA context.
 *	2. The resource owner is released first (a digest kept in a context
 *	   that outlives the (sub)transaction).  The owner frees the SHA context
 *	   itself; a resource-release callback, run by the owner right after
 *	   it released its cryptohash contexts, notices and forgets the pointer
 *	   so that (1) later finds nothing to free.
 *
 * Live SHA contexts are kept in a backend-local list for (2).  Whichever
 * comes first frees the context exactly once; bo_digest_final() and
 * bo_digest_free() free it early in the normal path.  The BoDigest of a SHA
 * digest is not pfree'd by bo_digest_free() because its memory-context
 * callback record is part of it and PostgreSQL 15 cannot unregister
 * callbacks; it goes with its memory context.
 *
 * IDENTIFICATION
 *		src/archive/digest.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "blake3.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "archive/digest.h"

/* digest() feeds its input in slices of this size, checking for cancel */
#define DIGEST_SQL_SLICE	(1024 * 1024)

StaticAssertDecl(BO_DIGEST_MAX_LENGTH >= PG_SHA512_DIGEST_LENGTH,
				 "BO_DIGEST_MAX_LENGTH too small for SHA-512");
StaticAssertDecl(BO_DIGEST_MAX_LENGTH >= BLAKE3_OUT_LEN,
				 "BO_DIGEST_MAX_LENGTH too small for BLAKE3");

struct BoDigest
{
	BoDigestAlgorithm alg;
	bool		finalized;		/* bo_digest_final() was called */
	bool		freed;			/* bo_digest_free() was called */

	/* SHA-256 / SHA-512 */
	pg_cryptohash_ctx *hash;	/* NULL once freed by us or the owner */
	ResourceOwner owner;		/* the owner tracking hash */
	dlist_node	node;			/* in live_sha_digests while hash != NULL */
	MemoryContextCallback reset_callback;

	/* BLAKE3 */
	blake3_hasher *blake3;
};

/* SHA digests whose pg_cryptohash context is still allocated */
static dlist_head live_sha_digests = DLIST_STATIC_INIT(live_sha_digests);
static bool release_callback_registered = false;

PG_FUNCTION_INFO_V1(bo_digest_sql);

/* Free the SHA context of a digest, if it still has one */
static void
release_sha_context(BoDigest *d)
{
	pg_cryptohash_ctx *hash = d->hash;

	if (hash == NULL)
		return;
	d->hash = NULL;
	d->owner = NULL;
	dlist_delete(&d->node);
	pg_cryptohash_free(hash);
}

/* Memory-context reset callback: the digest's memory is going away */
static void
digest_context_reset(void *arg)
{
	release_sha_context((BoDigest *) arg);
}

/*
 * Resource-release callback: when an owner is released, it has already
 * freed its cryptohash contexts in the BEFORE_LOCKS phase (resowner.c runs
 * add-on callbacks after its own cleanup, with CurrentResourceOwner set to
 * the owner being released); forget those pointers.
 */
static void
digest_resowner_release(ResourceReleasePhase phase, bool isCommit,
						bool isTopLevel, void *arg)
{
	dlist_mutable_iter iter;

	if (phase != RESOURCE_RELEASE_BEFORE_LOCKS)
		return;
	dlist_foreach_modify(iter, &live_sha_digests)
	{
		BoDigest   *d = dlist_container(BoDigest, node, iter.cur);

		if (d->owner == CurrentResourceOwner)
		{
			d->hash = NULL;
			d->owner = NULL;
			dlist_delete(&d->node);
		}
	}
}

/* Create a SHA-256 or SHA-512 context for d, tracked as described above */
static void
create_sha_context(BoDigest *d, pg_cryptohash_type type)
{
	if (CurrentResourceOwner == NULL)
		elog(ERROR, "%s digest created without a resource owner",
			 bo_digest_name(d->alg));
	if (!release_callback_registered)
	{
		RegisterResourceReleaseCallback(digest_resowner_release, NULL);
		release_callback_registered = true;
	}

	/* no ERROR can happen between creating and registering the context */
	d->hash = pg_cryptohash_create(type);
	if (d->hash == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	d->owner = CurrentResourceOwner;
	dlist_push_head(&live_sha_digests, &d->node);
	d->reset_callback.func = digest_context_reset;
	d->reset_callback.arg = d;
	MemoryContextRegisterResetCallback(GetMemoryChunkContext(d),
									   &d->reset_callback);

	if (pg_cryptohash_init(d->hash) < 0)
		elog(ERROR, "could not initialize %s context: %s",
			 bo_digest_name(d->alg), pg_cryptohash_error(d->hash));
}

/* A digest of the given algorithm, palloc'd in CurrentMemoryContext */
BoDigest *
bo_digest_create(BoDigestAlgorithm alg)
{
	BoDigest   *d;

	d = palloc0(sizeof(BoDigest));
	d->alg = alg;
	switch (alg)
	{
		case BO_DIGEST_SHA256:
			create_sha_context(d, PG_SHA256);
			break;
		case BO_DIGEST_SHA512:
			create_sha_context(d, PG_SHA512);
			break;
		case BO_DIGEST_BLAKE3:
			d->blake3 = palloc(sizeof(blake3_hasher));
			blake3_hasher_init(d->blake3);
			break;
		default:
			elog(ERROR, "unknown digest algorithm %d", (int) alg);
	}
	return d;
}

/* Check that d can still take input or be finalised */
static void
check_usable(BoDigest *d, const char *what)
{
	if (d->freed)
		elog(ERROR, "%s of a freed %s digest", what, bo_digest_name(d->alg));
	if (d->finalized)
		elog(ERROR, "%s of a finalized %s digest", what,
			 bo_digest_name(d->alg));
	if (d->alg != BO_DIGEST_BLAKE3 && d->hash == NULL)
		elog(ERROR, "%s of a %s digest whose resource owner was released",
			 what, bo_digest_name(d->alg));
}

/* Feed len bytes at data into the digest */
void
bo_digest_update(BoDigest *d, const void *data, size_t len)
{
	check_usable(d, "update");
	if (d->alg == BO_DIGEST_BLAKE3)
		blake3_hasher_update(d->blake3, data, len);
	else if (pg_cryptohash_update(d->hash, (const uint8 *) data, len) < 0)
		elog(ERROR, "could not update %s context: %s",
			 bo_digest_name(d->alg), pg_cryptohash_error(d->hash));
}

/*
 * Write the digest to out (room for bo_digest_length() bytes, at most
 * BO_DIGEST_MAX_LENGTH) and return its length.  A SHA context is freed
 * here already; the digest takes no more input.
 */
int
bo_digest_final(BoDigest *d, uint8 *out)
{
	int			len = bo_digest_length(d->alg);

	check_usable(d, "final");
	if (d->alg == BO_DIGEST_BLAKE3)
		blake3_hasher_finalize(d->blake3, out, len);
	else
	{
		if (pg_cryptohash_final(d->hash, out, len) < 0)
			elog(ERROR, "could not finalize %s context: %s",
				 bo_digest_name(d->alg), pg_cryptohash_error(d->hash));
		release_sha_context(d);
	}
	d->finalized = true;
	return len;
}

/* Release the digest; the memory of a SHA digest goes with its context */
void
bo_digest_free(BoDigest *d)
{
	if (d == NULL)
		return;
	if (d->alg == BO_DIGEST_BLAKE3)
	{
		pfree(d->blake3);
		pfree(d);
		return;
	}
	release_sha_context(d);
	d->freed = true;
}

/* Digest length in bytes: 32, 64, 32; 0 for an unknown algorithm */
int
bo_digest_length(BoDigestAlgorithm alg)
{
	switch (alg)
	{
		case BO_DIGEST_SHA256:
			return PG_SHA256_DIGEST_LENGTH;
		case BO_DIGEST_SHA512:
			return PG_SHA512_DIGEST_LENGTH;
		case BO_DIGEST_BLAKE3:
			return BLAKE3_OUT_LEN;
	}
	return 0;
}

/* Canonical name: "SHA256", "SHA512", "BLAKE3"; NULL for an unknown value */
const char *
bo_digest_name(BoDigestAlgorithm alg)
{
	switch (alg)
	{
		case BO_DIGEST_SHA256:
			return "SHA256";
		case BO_DIGEST_SHA512:
			return "SHA512";
		case BO_DIGEST_BLAKE3:
			return "BLAKE3";
	}
	return NULL;
}

/*
 * Parse an algorithm name, case-insensitively; "SHA-256" and "SHA-512" are
 * accepted as well.  Returns false for anything else.
 */
bool
bo_digest_parse(const char *name, BoDigestAlgorithm *alg)
{
	if (pg_strcasecmp(name, "SHA256") == 0 ||
		pg_strcasecmp(name, "SHA-256") == 0)
		*alg = BO_DIGEST_SHA256;
	else if (pg_strcasecmp(name, "SHA512") == 0 ||
			 pg_strcasecmp(name, "SHA-512") == 0)
		*alg = BO_DIGEST_SHA512;
	else if (pg_strcasecmp(name, "BLAKE3") == 0)
		*alg = BO_DIGEST_BLAKE3;
	else
		return false;
	return true;
}

/*
 * digest(data bytea, algorithm text) RETURNS bytea
 *
 * The digest of data; algorithm is SHA256, SHA512 or BLAKE3 (any case,
 * SHA-256 and SHA-512 too).  Long inputs are fed in 1 MiB slices so that
 * a cancel takes effect promptly.
 */
Datum
bo_digest_sql(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	BoDigestAlgorithm alg;
	bytea	   *data;
	const char *p;
	size_t		remaining;
	BoDigest   *d;
	bytea	   *result;
	int			len;

	if (!bo_digest_parse(name, &alg))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown digest algorithm \"%s\"", name),
				 errhint("Use one of SHA256, SHA512, BLAKE3.")));

	data = PG_GETARG_BYTEA_PP(0);
	p = VARDATA_ANY(data);
	remaining = VARSIZE_ANY_EXHDR(data);

	d = bo_digest_create(alg);
	while (remaining > 0)
	{
		size_t		n = Min(remaining, DIGEST_SQL_SLICE);

		CHECK_FOR_INTERRUPTS();
		bo_digest_update(d, p, n);
		p += n;
		remaining -= n;
	}
	result = palloc(VARHDRSZ + BO_DIGEST_MAX_LENGTH);
	len = bo_digest_final(d, (uint8 *) VARDATA(result));
	SET_VARSIZE(result, VARHDRSZ + len);
	bo_digest_free(d);

	PG_RETURN_BYTEA_P(result);
}
