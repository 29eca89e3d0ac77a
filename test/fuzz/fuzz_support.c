/*-------------------------------------------------------------------------
 *
 * fuzz_support.c
 *		Shims that let the archive format core (src/archive/format.c) run
 *		as a plain program: memory callbacks, the BoDigest API, and an
 *		encoder built on the core's writer.
 *
 * The extension provides the BoDigest API through digest.c, which tracks
 * pg_cryptohash contexts with resource owners and so needs a server.  Here
 * SHA-256 and SHA-512 come from libsodium and BLAKE3 from the same static
 * library the extension links (src/archive/blake3_build/libblake3.a); the
 * outputs are the same standard digests, so objects written by either
 * build read in the other.
 *
 * IDENTIFICATION
 *		test/fuzz/fuzz_support.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

#include "blake3.h"

#include "archive/digest.h"
#include "archive/format.h"
#include "fuzz_support.h"

struct BoDigest
{
	BoDigestAlgorithm alg;
	union
	{
		crypto_hash_sha256_state sha256;
		crypto_hash_sha512_state sha512;
		blake3_hasher blake3;
	}			u;
};

const unsigned char fuzz_data_key[BO_DATA_KEY_LENGTH] = {
	0x62, 0x6f, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d,	/* "bo-fuzz-" */
	0x64, 0x61, 0x74, 0x61, 0x2d, 0x6b, 0x65, 0x79,	/* "data-key" */
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff
};

/*
 * Abort with a message (the harness has no error path for these).
 */
static void
fuzz_die(const char *what)
{
	fprintf(stderr, "fuzz support: %s\n", what);
	abort();
}

/*
 * Initialise libsodium.
 */
void
fuzz_init(void)
{
	if (sodium_init() < 0)
		fuzz_die("could not initialise libsodium");
}

/*
 * A new digest of algorithm alg.
 */
BoDigest *
bo_digest_create(BoDigestAlgorithm alg)
{
	BoDigest   *d = malloc(sizeof(BoDigest));

	if (d == NULL)
		fuzz_die("out of memory");
	d->alg = alg;
	switch (alg)
	{
		case BO_DIGEST_SHA256:
			crypto_hash_sha256_init(&d->u.sha256);
			break;
		case BO_DIGEST_SHA512:
			crypto_hash_sha512_init(&d->u.sha512);
			break;
		case BO_DIGEST_BLAKE3:
			blake3_hasher_init(&d->u.blake3);
			break;
		default:
			fuzz_die("unknown digest algorithm");
	}
	return d;
}

/*
 * Feed len bytes.
 */
void
bo_digest_update(BoDigest *d, const void *data, size_t len)
{
	switch (d->alg)
	{
		case BO_DIGEST_SHA256:
			crypto_hash_sha256_update(&d->u.sha256, data, len);
			break;
		case BO_DIGEST_SHA512:
			crypto_hash_sha512_update(&d->u.sha512, data, len);
			break;
		case BO_DIGEST_BLAKE3:
			blake3_hasher_update(&d->u.blake3, data, len);
			break;
	}
}

/*
 * Write the digest to out; returns its length.
 */
int
bo_digest_final(BoDigest *d, uint8 *out)
{
	switch (d->alg)
	{
		case BO_DIGEST_SHA256:
			crypto_hash_sha256_final(&d->u.sha256, out);
			return 32;
		case BO_DIGEST_SHA512:
			crypto_hash_sha512_final(&d->u.sha512, out);
			return 64;
		case BO_DIGEST_BLAKE3:
			blake3_hasher_finalize(&d->u.blake3, out, BLAKE3_OUT_LEN);
			return BLAKE3_OUT_LEN;
	}
	return 0;
}

/*
 * Release a digest.
 */
void
bo_digest_free(BoDigest *d)
{
	free(d);
}

/*
 * Digest length in bytes, as digest.c gives it.
 */
int
bo_digest_length(BoDigestAlgorithm alg)
{
	switch (alg)
	{
		case BO_DIGEST_SHA256:
			return 32;
		case BO_DIGEST_SHA512:
			return 64;
		case BO_DIGEST_BLAKE3:
			return BLAKE3_OUT_LEN;
	}
	return 0;
}

/*
 * Append len bytes to b, growing it.
 */
void
fuzz_buffer_append(FuzzBuffer *b, const void *data, size_t len)
{
	if (len == 0)
		return;
	if (b->len + len > b->cap)
	{
		size_t		cap = Max(b->cap * 2, b->len + len);
		uint8	   *p = realloc(b->data, cap);

		if (p == NULL)
			fuzz_die("out of memory");
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

/*
 * Free a buffer's memory.
 */
void
fuzz_buffer_free(FuzzBuffer *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/*
 * Core callback: read from the FuzzBuffer in arg.
 */
static size_t
fuzz_read(void *arg, uint64 offset, void *buf, size_t len)
{
	FuzzBuffer *b = (FuzzBuffer *) arg;
	size_t		n;

	if (offset >= b->len)
		return 0;
	n = Min(len, b->len - (size_t) offset);
	memcpy(buf, b->data + offset, n);
	return n;
}

/*
 * Core callback: append to the FuzzBuffer in arg.
 */
static void
fuzz_write(void *arg, const void *data, size_t len)
{
	fuzz_buffer_append((FuzzBuffer *) arg, data, len);
}

/*
 * Core callback: malloc, aborting when memory runs out.
 */
static void *
fuzz_alloc(void *arg, size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
		fuzz_die("out of memory");
	return p;
}

/*
 * Core callback: free.
 */
static void
fuzz_free(void *arg, void *ptr)
{
	free(ptr);
}

const BoFormatOps fuzz_ops = {
	.read = fuzz_read,
	.write = fuzz_write,
	.alloc = fuzz_alloc,
	.free = fuzz_free
};

/*
 * Encode plaintext with the core's writer (see fuzz_support.h).
 */
bool
fuzz_encode(FuzzBuffer *out, BoCompression compression, int level, BoCipher cipher,
			BoDigestAlgorithm digest, uint32 chunk_size, const uint8 *key_id,
			const uint8 *nonce_prefix, const char *object_id, const uint8 *plain,
			size_t plain_len)
{
	BoFormatWriter w;
	size_t		pos = 0;
	bool		ok = true;

	memset(&w, 0, sizeof(w));
	w.ops = &fuzz_ops;
	w.arg = out;
	w.compression = compression;
	w.level = level;
	w.cipher = cipher;
	w.digest = digest;
	w.chunk_size = chunk_size;
	memcpy(w.key_id, key_id, BO_ARCHIVE_KEY_ID_LENGTH);
	memcpy(w.nonce_prefix, nonce_prefix, BO_FORMAT_NONCE_PREFIX_LENGTH);
	w.data_key = cipher != BO_CIPHER_NONE ? fuzz_data_key : NULL;
	if (compression == BO_COMPRESSION_ZSTD)
	{
		w.cctx = ZSTD_createCCtx();
		if (w.cctx == NULL)
			fuzz_die("could not create a zstd context");
		if (ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_compressionLevel, level)))
			ok = false;
	}
	if (ok)
	{
		bo_format_writer_begin(&w, object_id, strlen(object_id));
		/* every chunk full but the last; an empty object has one empty chunk */
		do
		{
			uint32		n = (uint32) Min((size_t) chunk_size, plain_len - pos);
			bool		final = pos + n == plain_len;

			/* (an empty plaintext may come as NULL: no arithmetic on it) */
			if (bo_format_writer_chunk(&w, n > 0 ? plain + pos : plain, n, final) !=
				BO_FORMAT_WRITE_OK)
			{
				ok = false;
				break;
			}
			pos += n;
		} while (pos < plain_len);
		if (ok && bo_format_writer_finish(&w) != BO_FORMAT_WRITE_OK)
			ok = false;
		bo_format_writer_release(&w);
	}
	if (w.cctx != NULL)
		ZSTD_freeCCtx(w.cctx);
	if (!ok)
		fuzz_buffer_free(out);
	return ok;
}
