/*-------------------------------------------------------------------------
 *
 * fuzz_reader.c
 *		libFuzzer target for the archive reader: the format core of
 *		src/archive/format.c, the code the server runs, over arbitrary
 *		bytes taken as one whole stored object.
 *
 * Each input is read three ways:
 *
 *	1. with the fixed test data key (the corpus objects are encrypted with
 *	   it), decrypting, decompressing and checking everything;
 *	2. without a key, as verify_object(with_key => false) does;
 *	3. after "re-sealing" a copy: every frame digest, the trailer's
 *	   authenticator and the footer's offset are recomputed for the mutated
 *	   bytes.  Digests are unkeyed, so a real attacker can do this too, and
 *	   without it almost every mutation would stop at the first frame
 *	   digest and the checks behind it (kinds, modes, lengths, AEAD, zstd,
 *	   the trailer) would never see fuzzed values.
 *
 * Besides crashes, sanitizer reports, leaks and timeouts, these invariants
 * abort (and so count as findings):
 *
 *	- A chunk that fails yields no plaintext: after a failed step the
 *	  reader exposes nothing, the failure is recorded, and its chunk index
 *	  is the chunk being read (or the chunk count, for the trailer).
 *	- Plaintext is exposed only by a successful step, at most chunk_size
 *	  bytes, and the bytes are readable (ASan checks each one).
 *	- A fully verified object's plaintext has the length and digest the
 *	  trailer states, its stored digest is that of the input, and with a
 *	  key it re-encodes, by the core's writer, to exactly the input bytes:
 *	  nothing the writer did not produce under the key is accepted (for an
 *	  object without a cipher, only when the bytes are unmodified, since
 *	  re-sealing is exactly what a cipher-less object cannot detect).
 *	- Reading with the key succeeds only where reading without it does.
 *
 * IDENTIFICATION
 *		test/fuzz/fuzz_reader.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

#include "archive/digest.h"
#include "archive/format.h"
#include "fuzz_support.h"

/* what one reading of an object found */
typedef struct ReadOutcome
{
	bool		header_ok;
	bool		done;
	uint64		chunks;
} ReadOutcome;

/* BO_FUZZ_SELFTEST: "invariant" or "asan" plants a finding (see below) */
static const char *selftest = NULL;

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Abort with a message: an invariant does not hold.
 */
static void
invariant_failed(const char *what, uint64 chunk)
{
	fprintf(stderr, "fuzz_reader: invariant violated at chunk " UINT64_FORMAT ": %s\n",
			chunk, what);
	abort();
}

#define CHECK(cond, chunk) \
	do { if (!(cond)) invariant_failed(#cond, (chunk)); } while (0)

/*
 * Is this cipher usable on this machine?
 */
static bool
cipher_available(BoCipher cipher)
{
	return cipher != BO_CIPHER_AES256GCM || crypto_aead_aes256gcm_is_available();
}

/*
 * Read the object in "in" completely, checking the invariants; with_key
 * decodes with the fixed data key.  resealed: the bytes were re-sealed by
 * the harness.
 */
static ReadOutcome
read_object(FuzzBuffer *in, bool with_key, bool resealed)
{
	BoFormatReader r;
	ReadOutcome out = {false, false, 0};
	FuzzBuffer	plain = {NULL, 0, 0};

	bo_format_reader_init(&r, &fuzz_ops, in, with_key);
	if (!bo_format_reader_header(&r, NULL))
	{
		CHECK(r.failed && r.fail_chunk == 0 && r.problem != NULL, 0);
		CHECK(r.plain == NULL && r.plain_len == 0, 0);
		bo_format_reader_release(&r);
		return out;
	}
	out.header_ok = true;
	if (with_key && !cipher_available(r.cipher))
	{
		bo_format_reader_release(&r);
		return out;
	}
	if (!bo_format_reader_start(&r, r.cipher != BO_CIPHER_NONE ? fuzz_data_key : NULL))
		invariant_failed("could not create a zstd context", 0);

	while (!r.failed && !r.done)
	{
		uint64		i = r.index;

		if (!bo_format_reader_next_chunk(&r))
		{
			/* the failed chunk hands out nothing */
			CHECK(r.failed && r.problem != NULL, i);
			CHECK(r.plain == NULL && r.plain_len == 0, i);
			CHECK(r.fail_chunk == i || r.fail_chunk == i + 1, i);
			CHECK(!r.done, i);
			break;
		}
		CHECK(!r.failed && r.index == i + 1, i);
		if (!with_key)
		{
			CHECK(r.plain == NULL && r.plain_len == 0, i);
			continue;
		}
		CHECK(r.plain_len <= r.chunk_size, i);
		CHECK(r.plain != NULL || r.plain_len == 0, i);
		/* hand the bytes out, as bo_archive_read does (ASan checks them) */
		fuzz_buffer_append(&plain, r.plain, r.plain_len);
	}
	/* a failed reader stays failed and hands out nothing more */
	if (r.failed)
	{
		CHECK(!bo_format_reader_next_chunk(&r), r.index);
		CHECK(r.plain == NULL && r.plain_len == 0, r.index);
	}

	out.done = r.done;
	out.chunks = r.index;
	if (r.done)
	{
		uint8		d[BO_DIGEST_MAX_LENGTH];
		BoDigest   *dg = bo_digest_create(r.digest);

		/* the stored digest is that of every input byte */
		bo_digest_update(dg, in->data, in->len);
		bo_digest_final(dg, d);
		bo_digest_free(dg);
		CHECK(memcmp(d, r.stored_digest_out, r.dlen) == 0, r.index);
		if (with_key)
		{
			CHECK(plain.len == r.plaintext_length, r.index);
			dg = bo_digest_create(r.digest);
			bo_digest_update(dg, plain.data, plain.len);
			bo_digest_final(dg, d);
			bo_digest_free(dg);
			CHECK(memcmp(d, r.plaintext_digest, r.dlen) == 0, r.index);
			if (!resealed || r.cipher != BO_CIPHER_NONE)
			{
				FuzzBuffer	again = {NULL, 0, 0};

				/* what is accepted under the key is what the writer makes */
				CHECK(fuzz_encode(&again, r.compression, r.level, r.cipher, r.digest,
								  r.chunk_size, r.key_id, r.nonce_prefix, r.object_id,
								  plain.data, plain.len), r.index);
				CHECK(again.len == in->len && memcmp(again.data, in->data, in->len) == 0,
					  r.index);
				fuzz_buffer_free(&again);
			}
		}
	}
	fuzz_buffer_free(&plain);
	bo_format_reader_release(&r);
	return out;
}

/*
 * Recompute, in place, what an unkeyed (or, with the fixed key, keyed)
 * writer would: each frame's digest, the trailer's authenticator and the
 * footer's offset, over whatever the other bytes now are.  Stops quietly
 * where the bytes cannot be followed.  False if not even the header can.
 */
static bool
reseal(FuzzBuffer *b)
{
	uint8	   *p = b->data;
	size_t		size = b->len;
	uint8		H[BO_FORMAT_HEADER_HASH_LENGTH];
	uint32		hlen;
	BoDigestAlgorithm alg;
	BoCipher	cipher;
	int			dlen;
	size_t		off;
	uint64		i = 0;

	if (size < BO_FORMAT_HEADER_FIXED_LENGTH)
		return false;
	hlen = bo_get_u32(p + 10);
	if (hlen < BO_FORMAT_HEADER_FIXED_LENGTH || hlen > size)
		return false;
	if (p[19] < BO_DIGEST_SHA256 || p[19] > BO_DIGEST_BLAKE3)
		return false;
	alg = (BoDigestAlgorithm) p[19];
	cipher = (BoCipher) p[18];
	dlen = bo_digest_length(alg);
	bo_format_header_hash(p, hlen, H);

	off = hlen;
	while (size - off >= 4)
	{
		uint32		sl = bo_get_u32(p + off);

		if (sl == BO_FORMAT_TRAILER_MARKER)
		{
			bool		sealed = cipher == BO_CIPHER_AES256GCM ||
				cipher == BO_CIPHER_XCHACHA20POLY1305;
			size_t		authlen = sealed ? BO_FORMAT_AEAD_TAG_LENGTH : (size_t) dlen;
			size_t		total = 20 + dlen + authlen;
			uint8		ad[BO_FORMAT_AD_MAX_LENGTH];
			size_t		adlen;
			uint8	   *auth = p + off + 20 + dlen;

			if (size - off < total)
				return true;
			adlen = bo_format_trailer_ad(ad, H, i, bo_get_u64(p + off + 12), p + off + 20, dlen);
			if (sealed)
			{
				if (cipher_available(cipher))
					(void) bo_format_aead_seal(cipher, fuzz_data_key, p + 40, i, ad, adlen,
											   NULL, 0, auth);
			}
			else
			{
				BoDigest   *d = bo_digest_create(alg);

				bo_digest_update(d, ad, adlen);
				bo_digest_final(d, auth);
				bo_digest_free(d);
			}
			if (size - off - total >= BO_FORMAT_FOOTER_LENGTH)
				bo_put_u64(p + off + total, off);
			return true;
		}
		if (size - off < BO_FORMAT_FRAME_HEADER_LENGTH + (size_t) sl + dlen)
			return true;
		bo_format_frame_digest(alg, H, i, p + off, p + off + BO_FORMAT_FRAME_HEADER_LENGTH, sl,
							   p + off + BO_FORMAT_FRAME_HEADER_LENGTH + sl);
		off += BO_FORMAT_FRAME_HEADER_LENGTH + (size_t) sl + dlen;
		i++;
	}
	return true;
}

/*
 * libFuzzer: once, before the first input.
 */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	selftest = getenv("BO_FUZZ_SELFTEST");
	return 0;
}

/*
 * Plant a finding, so that test/scenario/fuzz_reader.sh can show that a
 * violated invariant and a sanitizer report each fail the run.
 */
static void
run_selftest(const uint8_t *data, size_t size)
{
	if (strcmp(selftest, "invariant") == 0)
		invariant_failed("self-test (BO_FUZZ_SELFTEST=invariant)", 0);
	if (strcmp(selftest, "asan") == 0)
	{
		volatile uint8 *p = malloc(size + 1);

		if (p == NULL)
			abort();
		memcpy((uint8 *) p, data, size);
		/* one byte past the end: a heap-buffer-overflow for ASan */
		p[size] = p[size + 1];
		free((uint8 *) p);
	}
}

/*
 * libFuzzer: one input, one stored object.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzBuffer	in = {(uint8 *) data, size, size};
	FuzzBuffer	copy = {NULL, 0, 0};
	ReadOutcome keyed;
	ReadOutcome keyless;

	if (selftest != NULL)
		run_selftest(data, size);
	keyed = read_object(&in, true, false);
	keyless = read_object(&in, false, false);
	CHECK(keyed.header_ok == keyless.header_ok, 0);
	/* the key adds checks; it never makes an object pass */
	if (keyed.done)
		CHECK(keyless.done && keyless.chunks == keyed.chunks, keyed.chunks);

	fuzz_buffer_append(&copy, data, size);
	if (reseal(&copy))
	{
		read_object(&copy, true, true);
		read_object(&copy, false, true);
	}
	fuzz_buffer_free(&copy);
	return 0;
}
