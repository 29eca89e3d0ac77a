/*-------------------------------------------------------------------------
 *
 * fuzz_support.h
 *		What the fuzz harness and the corpus generator share: the format
 *		core's callbacks over memory (malloc, abort on exhaustion), the
 *		fixed test data key, and a growable output buffer.
 *
 * The BoDigest API the core calls is provided by fuzz_support.c over
 * libsodium's SHA-256/SHA-512 and the BLAKE3 library the extension links,
 * in place of digest.c, which needs a running server.
 *
 * IDENTIFICATION
 *		test/fuzz/fuzz_support.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BO_FUZZ_SUPPORT_H
#define BO_FUZZ_SUPPORT_H

#include "archive/format.h"

/* An object in memory: the source the core reads, or the sink it writes */
typedef struct FuzzBuffer
{
	uint8	   *data;
	size_t		len;
	size_t		cap;
} FuzzBuffer;

/* ops: read from / write to the FuzzBuffer passed as arg; malloc/free */
extern const BoFormatOps fuzz_ops;

/* the fixed data key every corpus object is encrypted with */
extern const unsigned char fuzz_data_key[BO_DATA_KEY_LENGTH];

extern void fuzz_init(void);
extern void fuzz_buffer_append(FuzzBuffer *b, const void *data, size_t len);
extern void fuzz_buffer_free(FuzzBuffer *b);

/*
 * Encode plaintext as an object: header fields as given, the fixed key.
 * Returns false (and frees out) if zstd or libsodium refuse.
 */
extern bool fuzz_encode(FuzzBuffer *out, BoCompression compression, int level,
						BoCipher cipher, BoDigestAlgorithm digest, uint32 chunk_size,
						const uint8 *key_id, const uint8 *nonce_prefix,
						const char *object_id, const uint8 *plain, size_t plain_len);

#endif							/* BO_FUZZ_SUPPORT_H */
