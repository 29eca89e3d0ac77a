/*-------------------------------------------------------------------------
 *
 * gen_corpus.c
 *		Writes the fuzz corpus: small valid archive objects made by the
 *		format core's writer with the fixed test data key.
 *
 * Usage: gen_corpus DIRECTORY.  The output is deterministic (fixed key
 * ids, nonce prefixes and plaintexts), so regenerating reproduces the
 * committed files byte for byte as long as zstd compresses the same way.
 * Coverage: every cipher x compression x digest on a small care-like
 * record set, empty objects, one-chunk and multi-chunk objects at the
 * chunk-size boundaries, incompressible chunks stored raw, and the fast
 * and highest zstd levels.  Every file stays under 64 KiB.
 *
 * IDENTIFICATION
 *		test/fuzz/gen_corpus.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <stdio.h>
#include <stdlib.h>

#include "archive/digest.h"
#include "archive/format.h"
#include "fuzz_support.h"

#define MAX_FILE (64 * 1024)

static const char *outdir;
static int	files = 0;

/*
 * Deterministic plaintext: care-like text records, or (random) bytes from
 * a fixed-seed xorshift generator that zstd cannot compress.
 */
static uint8 *
make_plain(size_t len, bool random, uint32 seed)
{
	uint8	   *p = malloc(len > 0 ? len : 1);
	uint32		x = seed | 1;
	size_t		i = 0;
	int			rec = 0;

	if (p == NULL)
		abort();
	if (random)
	{
		for (i = 0; i < len; i++)
		{
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			p[i] = (uint8) x;
		}
		return p;
	}
	while (i < len)
	{
		char		line[160];
		int			n = snprintf(line, sizeof(line),
								 "%d\tpatient-%05u\tward %c\tvisit 2024-%02d-%02d\tbp %u/%u\tnote: stable, follow up\n",
								 rec, (seed * 7919u + rec * 104729u) % 100000u, 'A' + rec % 6,
								 1 + rec % 12, 1 + rec % 28, 100 + rec % 60, 60 + rec % 30);

		memcpy(p + i, line, Min((size_t) n, len - i));
		i += Min((size_t) n, len - i);
		rec++;
	}
	return p;
}

/*
 * Write one object, named after its parameters.
 */
static void
emit(const char *label, BoCompression compression, int level, BoCipher cipher,
	 BoDigestAlgorithm digest, uint32 chunk_size, size_t plain_len, bool random)
{
	FuzzBuffer	out = {NULL, 0, 0};
	uint8		key_id[BO_ARCHIVE_KEY_ID_LENGTH];
	uint8		prefix[BO_FORMAT_NONCE_PREFIX_LENGTH];
	uint8	   *plain = make_plain(plain_len, random, (uint32) files + 1);
	char		object_id[128];
	char		path[1024];
	FILE	   *f;
	int			i;

	for (i = 0; i < BO_ARCHIVE_KEY_ID_LENGTH; i++)
		key_id[i] = cipher == BO_CIPHER_NONE ? 0 : (uint8) (0xa0 + files + i);
	for (i = 0; i < BO_FORMAT_NONCE_PREFIX_LENGTH; i++)
		prefix[i] = (uint8) (0x10 * files + i);
	snprintf(object_id, sizeof(object_id), "corpus/%s", label);
	if (!fuzz_encode(&out, compression, level, cipher, digest, chunk_size, key_id, prefix,
					 object_id, plain, plain_len))
	{
		fprintf(stderr, "gen_corpus: could not encode %s\n", label);
		exit(1);
	}
	if (out.len > MAX_FILE)
	{
		fprintf(stderr, "gen_corpus: %s is %zu bytes, over %d\n", label, out.len, MAX_FILE);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s.boa", outdir, label);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(out.data, 1, out.len, f) != out.len || fclose(f) != 0)
	{
		fprintf(stderr, "gen_corpus: could not write %s\n", path);
		exit(1);
	}
	printf("%s\t%zu bytes\n", path, out.len);
	fuzz_buffer_free(&out);
	free(plain);
	files++;
}

/*
 * Every combination, then the special shapes.
 */
int
main(int argc, char **argv)
{
	static const BoCipher ciphers[] = {BO_CIPHER_NONE, BO_CIPHER_AES256GCM,
	BO_CIPHER_XCHACHA20POLY1305};
	static const char *const cipher_names[] = {"none", "aes", "xchacha"};
	static const BoDigestAlgorithm digests[] = {BO_DIGEST_SHA256, BO_DIGEST_SHA512,
	BO_DIGEST_BLAKE3};
	static const char *const digest_names[] = {"sha256", "sha512", "blake3"};
	const uint32 chunk = BO_ARCHIVE_MIN_CHUNK_SIZE;
	int			c;
	int			d;
	char		label[64];

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	fuzz_init();

	/* 18: cipher x compression x digest, 1-2 KiB of records */
	for (c = 0; c < 3; c++)
		for (d = 0; d < 3; d++)
		{
			snprintf(label, sizeof(label), "%s-none-%s", cipher_names[c], digest_names[d]);
			emit(label, BO_COMPRESSION_NONE, 0, ciphers[c], digests[d], chunk, 1000 + 100 * d, false);
			snprintf(label, sizeof(label), "%s-zstd3-%s", cipher_names[c], digest_names[d]);
			emit(label, BO_COMPRESSION_ZSTD, 3, ciphers[c], digests[d], chunk, 2000 + 100 * d, false);
		}
	/* empty objects */
	emit("empty-none-zstd-blake3", BO_COMPRESSION_ZSTD, 3, BO_CIPHER_NONE, BO_DIGEST_BLAKE3, chunk, 0, false);
	emit("empty-aes-none-sha256", BO_COMPRESSION_NONE, 0, BO_CIPHER_AES256GCM, BO_DIGEST_SHA256, chunk, 0, false);
	emit("empty-xchacha-zstd-sha512", BO_COMPRESSION_ZSTD, 1, BO_CIPHER_XCHACHA20POLY1305, BO_DIGEST_SHA512, chunk, 0, false);
	/* one byte; exactly one chunk; chunk + 1; three chunks and a bit */
	emit("byte-xchacha-zstd-blake3", BO_COMPRESSION_ZSTD, 3, BO_CIPHER_XCHACHA20POLY1305, BO_DIGEST_BLAKE3, chunk, 1, false);
	emit("chunk-aes-zstd-blake3", BO_COMPRESSION_ZSTD, 3, BO_CIPHER_AES256GCM, BO_DIGEST_BLAKE3, chunk, chunk, false);
	emit("chunkplus1-none-zstd-sha256", BO_COMPRESSION_ZSTD, 19, BO_CIPHER_NONE, BO_DIGEST_SHA256, chunk, chunk + 1, false);
	emit("multi-xchacha-zstd-sha256", BO_COMPRESSION_ZSTD, -5, BO_CIPHER_XCHACHA20POLY1305, BO_DIGEST_SHA256, chunk, 3 * chunk + 777, false);
	emit("multi-none-zstd-blake3", BO_COMPRESSION_ZSTD, 3, BO_CIPHER_NONE, BO_DIGEST_BLAKE3, chunk, 2 * chunk + 5, false);
	/* incompressible: zstd on, chunk stored raw */
	emit("raw-xchacha-zstd-blake3", BO_COMPRESSION_ZSTD, 3, BO_CIPHER_XCHACHA20POLY1305, BO_DIGEST_BLAKE3, chunk, 3000, true);
	return 0;
}
