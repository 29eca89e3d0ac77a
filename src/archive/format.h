/*-------------------------------------------------------------------------
 *
 * format.h
 *		The archive container's format core: encoding and decoding of the
 *		byte layout documented in archive.h, independent of the server.
 *
 * The core knows bytes only.  It reads an object through a read-at-offset
 * callback, writes one through a write callback, allocates through an
 * allocation callback, and returns failures instead of raising them: the
 * first failure of a reader is recorded (chunk index and a detail
 * sentence) and every later call returns false.  It holds all of the
 * format's logic: header building, parsing and checks, frames, frame
 * digests, AEAD sealing and opening (libsodium), zstd compression and
 * decompression, trailer and footer.
 *
 * Two programs link it: the extension (container.c wraps it with storage
 * reads and writes, key lookup, memory contexts and ereport) and the fuzz
 * harness in test/fuzz (malloc and abort).  Both provide the BoDigest API
 * of digest.h: the extension through digest.c, the harness through a shim
 * over libsodium's SHA-2 and the same BLAKE3 library.
 *
 * The core allocates only through the callbacks and through bo_digest_*
 * and the zstd library; a caller that frees memory by other means (the
 * extension resets memory contexts) need not call the release functions
 * except for the zstd contexts, which it owns or frees itself.
 *
 * IDENTIFICATION
 *		src/archive/format.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_FORMAT_H
#define BACKUP_OFFLINE_FORMAT_H

#include <zstd.h>

#include "archive/digest.h"

#define BO_ARCHIVE_FORMAT_VERSION	1
#define BO_ARCHIVE_MIN_CHUNK_SIZE	(64 * 1024)
#define BO_ARCHIVE_MAX_CHUNK_SIZE	(64 * 1024 * 1024)
#define BO_ARCHIVE_DEFAULT_CHUNK_SIZE (1024 * 1024)
#define BO_ARCHIVE_KEY_ID_LENGTH	16
#define BO_ARCHIVE_KEK_ID_MAX		64
#define BO_DATA_KEY_LENGTH			32

/* the byte layout's constants (archive.h explains them) */
#define BO_FORMAT_MAGIC "\x89" "BOA\r\n\x1a\n"
#define BO_FORMAT_END_MAGIC "\x89" "BOAEND\n"
#define BO_FORMAT_MAGIC_LENGTH 8
#define BO_FORMAT_HEADER_FIXED_LENGTH 58
#define BO_FORMAT_FRAME_HEADER_LENGTH 10
#define BO_FORMAT_FOOTER_LENGTH 16
#define BO_FORMAT_TRAILER_MARKER 0xFFFFFFFFU
#define BO_FORMAT_HEADER_HASH_LENGTH 32 /* SHA-256 */
#define BO_FORMAT_AEAD_TAG_LENGTH 16
#define BO_FORMAT_NONCE_PREFIX_LENGTH 16
#define BO_FORMAT_KIND_DATA 0
#define BO_FORMAT_KIND_FINAL 1
#define BO_FORMAT_KIND_TRAILER 2
#define BO_FORMAT_MODE_RAW 0
#define BO_FORMAT_MODE_ZSTD 1
#define BO_FORMAT_AD_MAX_LENGTH (BO_FORMAT_HEADER_HASH_LENGTH + 8 + 1 + 8 + 8 + \
								 BO_DIGEST_MAX_LENGTH)

typedef enum BoCompression
{
	BO_COMPRESSION_NONE = 0,
	BO_COMPRESSION_ZSTD = 1
} BoCompression;

typedef enum BoCipher
{
	BO_CIPHER_AUTO = -1,		/* AES-256-GCM where the CPU has it, else XChaCha20 */
	BO_CIPHER_NONE = 0,
	BO_CIPHER_AES256GCM = 1,
	BO_CIPHER_XCHACHA20POLY1305 = 2
} BoCipher;

/* What the core asks of its caller */
typedef struct BoFormatOps
{
	/* reader: up to len bytes at offset; fewer only at the object's end */
	size_t		(*read) (void *arg, uint64 offset, void *buf, size_t len);
	/* writer: append len bytes to the object */
	void		(*write) (void *arg, const void *data, size_t len);
	/* memory: alloc never returns NULL (it raises or aborts instead) */
	void	   *(*alloc) (void *arg, size_t size);
	void		(*free) (void *arg, void *ptr);
} BoFormatOps;

/* A growable scratch buffer, allocated through the ops */
typedef struct BoFormatBuffer
{
	uint8	   *data;
	size_t		size;
} BoFormatBuffer;

/* Result of a writer step */
typedef enum BoFormatWriteResult
{
	BO_FORMAT_WRITE_OK = 0,
	BO_FORMAT_WRITE_ZSTD_ERROR, /* zstd_error names it */
	BO_FORMAT_WRITE_SEAL_ERROR	/* libsodium refused to encrypt */
} BoFormatWriteResult;

/*
 * Writer.  The caller fills the fields marked "in" (data_key and cctx when
 * the cipher and compression need them), then calls begin, chunk (the last
 * one with final = true; an empty object has exactly one, empty, final
 * chunk) and finish.
 */
typedef struct BoFormatWriter
{
	/* in */
	const BoFormatOps *ops;
	void	   *arg;
	BoCompression compression;
	int			level;
	BoCipher	cipher;			/* never auto */
	BoDigestAlgorithm digest;
	uint32		chunk_size;
	uint8		key_id[BO_ARCHIVE_KEY_ID_LENGTH];
	uint8		nonce_prefix[BO_FORMAT_NONCE_PREFIX_LENGTH];
	const unsigned char *data_key;
	ZSTD_CCtx  *cctx;
	/* out */
	int			dlen;
	uint8		H[BO_FORMAT_HEADER_HASH_LENGTH];
	uint64		index;			/* frames written */
	uint64		plaintext_length;
	uint64		stored_length;
	const char *zstd_error;
	uint8		plaintext_digest[BO_DIGEST_MAX_LENGTH];
	uint8		stored_digest_out[BO_DIGEST_MAX_LENGTH];
	/* private */
	BoDigest   *stored_digest;
	BoDigest   *plain_digest;
	BoFormatBuffer cbuf;
	BoFormatBuffer sealed;
} BoFormatWriter;

/*
 * Reader.  After bo_format_reader_init, bo_format_reader_header, then
 * (when decoding) bo_format_reader_start with the data key, then
 * bo_format_reader_next_chunk until done or failed.  After a successful
 * next_chunk, plain/plain_len hold that chunk's verified plaintext (the
 * final chunk's only once the trailer and footer are verified too); after
 * a failure they are empty.
 */
typedef struct BoFormatReader
{
	const BoFormatOps *ops;
	void	   *arg;
	bool		decode;			/* decrypt, decompress, check plaintext */
	/* the header */
	uint32		header_length;
	BoCompression compression;
	int			level;
	BoCipher	cipher;
	BoDigestAlgorithm digest;
	int			dlen;
	uint32		chunk_size;
	uint8		key_id[BO_ARCHIVE_KEY_ID_LENGTH];
	uint8		nonce_prefix[BO_FORMAT_NONCE_PREFIX_LENGTH];
	char	   *object_id;
	uint8		H[BO_FORMAT_HEADER_HASH_LENGTH];
	const unsigned char *data_key;
	ZSTD_DCtx  *dctx;
	/* progress */
	uint64		offset;
	uint64		index;			/* frames verified */
	uint64		plaintext_length;
	bool		done;			/* trailer and footer verified */
	BoDigest   *stored_digest;
	BoDigest   *plain_digest;
	const char *plain;			/* the current chunk's verified plaintext */
	size_t		plain_len;
	/* after done */
	uint8		plaintext_digest[BO_DIGEST_MAX_LENGTH];
	uint8		stored_digest_out[BO_DIGEST_MAX_LENGTH];
	/* the first failure */
	bool		failed;
	uint64		fail_chunk;
	char	   *problem;
	/* private scratch */
	BoFormatBuffer payload;
	BoFormatBuffer body;
	BoFormatBuffer plainbuf;
} BoFormatReader;

/* big-endian helpers */
static inline void
bo_put_u16(uint8 *p, uint16 v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static inline void
bo_put_u32(uint8 *p, uint32 v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static inline void
bo_put_u64(uint8 *p, uint64 v)
{
	bo_put_u32(p, (uint32) (v >> 32));
	bo_put_u32(p + 4, (uint32) v);
}

static inline uint16
bo_get_u16(const uint8 *p)
{
	return ((uint16) p[0] << 8) | p[1];
}

static inline uint32
bo_get_u32(const uint8 *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

static inline uint64
bo_get_u64(const uint8 *p)
{
	return ((uint64) bo_get_u32(p) << 32) | bo_get_u32(p + 4);
}

/* primitives (also used by the fuzz harness to re-seal mutated objects) */
extern void bo_format_header_hash(const uint8 *header, size_t len, uint8 *H);
extern void bo_format_frame_digest(BoDigestAlgorithm alg, const uint8 *H, uint64 i,
								   const uint8 *fh, const void *payload, size_t len,
								   uint8 *out);
extern size_t bo_format_trailer_ad(uint8 *ad, const uint8 *H, uint64 n,
								   uint64 plaintext_length, const uint8 *pdigest, int dlen);
extern bool bo_format_aead_seal(BoCipher cipher, const unsigned char *key,
								const uint8 *prefix, uint64 i, const uint8 *ad,
								size_t adlen, const void *m, size_t mlen, uint8 *c);

/* writer */
extern void bo_format_writer_begin(BoFormatWriter *w, const char *object_id, size_t oidlen);
extern BoFormatWriteResult bo_format_writer_chunk(BoFormatWriter *w, const void *plain,
												  uint32 len, bool final);
extern BoFormatWriteResult bo_format_frame_encode(const BoFormatWriter *w, ZSTD_CCtx *cctx,
												  uint64 index, const void *plain, uint32 len,
												  bool final, uint8 *cbuf, size_t cbuf_size,
												  uint8 *sealed, uint8 *fh,
												  const uint8 **payload, size_t *payload_len,
												  const char **zstd_error);
extern void bo_format_writer_frame(BoFormatWriter *w, const uint8 *fh, const uint8 *payload,
								   size_t payload_len, const void *plain, uint32 len);
extern BoFormatWriteResult bo_format_writer_finish(BoFormatWriter *w);
extern void bo_format_writer_release(BoFormatWriter *w);

/* reader */
extern void bo_format_reader_init(BoFormatReader *r, const BoFormatOps *ops, void *arg,
								  bool decode);
extern bool bo_format_reader_header(BoFormatReader *r, const char *object_id);
extern bool bo_format_reader_start(BoFormatReader *r, const unsigned char *data_key);
extern bool bo_format_reader_next_chunk(BoFormatReader *r);
extern bool bo_format_reader_fail(BoFormatReader *r, uint64 chunk, const char *fmt,...) pg_attribute_printf(3, 4);
extern void bo_format_reader_release(BoFormatReader *r);

#endif							/* BACKUP_OFFLINE_FORMAT_H */
