/*-------------------------------------------------------------------------
 *
 * digest.h
 *		Streaming message digests for the archive: SHA-256 and SHA-512
 *		through PostgreSQL's pg_cryptohash, BLAKE3 through the official C
 *		implementation.
 *
 * A digest is created in CurrentMemoryContext, fed any number of times,
 * finalised once and freed.  Lifetime rules (see digest.c for why):
 *
 *	- bo_digest_create() needs a CurrentResourceOwner (any transaction has
 *	  one); the SHA contexts are tracked by it, so a SHA digest must be
 *	  finished before that owner is released (inside a query: the portal's
 *	  owner, released when the query ends).  A digest that outlives the
 *	  owner is unusable (ERROR on use) and PostgreSQL warns of the leak.
 *	- An ERROR between create and free leaks nothing: the (sub)transaction
 *	  abort releases the SHA context, and resetting or deleting the memory
 *	  context the digest lives in releases it otherwise.  Code that catches
 *	  the error (PG_CATCH/PG_FINALLY) may still call bo_digest_free() before
 *	  the abort; after the abort the digest must not be used again.
 *	- bo_digest_free() is optional when the memory context goes away soon.
 *
 * The output is exactly what sha256sum, sha512sum and b3sum print (the
 * default 32-byte BLAKE3 output).
 *
 * IDENTIFICATION
 *		src/archive/digest.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_DIGEST_H
#define BACKUP_OFFLINE_DIGEST_H

/* Digest algorithms; the numbers are stored in archive headers */
typedef enum BoDigestAlgorithm
{
	BO_DIGEST_SHA256 = 1,
	BO_DIGEST_SHA512 = 2,
	BO_DIGEST_BLAKE3 = 3
} BoDigestAlgorithm;

/* The longest digest any algorithm produces (SHA-512) */
#define BO_DIGEST_MAX_LENGTH 64

typedef struct BoDigest BoDigest;	/* opaque */

extern BoDigest *bo_digest_create(BoDigestAlgorithm alg);
extern void bo_digest_update(BoDigest *d, const void *data, size_t len);
extern int	bo_digest_final(BoDigest *d, uint8 *out);
extern void bo_digest_free(BoDigest *d);

extern int	bo_digest_length(BoDigestAlgorithm alg);
extern const char *bo_digest_name(BoDigestAlgorithm alg);
extern bool bo_digest_parse(const char *name, BoDigestAlgorithm *alg);

#endif							/* BACKUP_OFFLINE_DIGEST_H */
