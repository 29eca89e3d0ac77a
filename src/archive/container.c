/*-------------------------------------------------------------------------
 *
 * container.c
 *		The archive container's streaming writer and reader, and the
 *		operator functions inspect_object, verify_object, archive_put and
 *		archive_get.
 *
 * The byte layout and the reasoning behind it are in archive.h.  This file
 * keeps these rules:
 *
 *	- Streaming: the writer holds one chunk of plaintext, plus its
 *	  compressed and encrypted forms in a memory context reset per chunk;
 *	  the reader holds one frame and its plaintext.  Memory does not depend
 *	  on the object's size.  CHECK_FOR_INTERRUPTS runs once per chunk.
 *	- The writer flushes a full chunk only when more data arrives, so the
 *	  last chunk is always known and flagged final when finishing.
 *	- The reader checks, in order, each frame's structure, its digest, its
 *	  AEAD tag and its decompressed length before any of its plaintext is
 *	  handed out; the final chunk's plaintext waits until the trailer and
 *	  the footer are verified too.  The first failure stops reading and is
 *	  reported with the index of the chunk that failed (n, the chunk count,
 *	  for the trailer and footer; 0 for the header).
 *	- Failures of the object are data_corrupted (XX001) errors; missing or
 *	  wrong keys are object_not_in_prerequisite_state (55000) and name the
 *	  key ids.  Nothing secret (data keys, KEKs) is ever put in a message.
 *	- Resources outside palloc (zstd contexts, sodium_malloc'd data keys)
 *	  are freed by a reset callback on the writer's or reader's memory
 *	  context, so an ERROR anywhere releases them; the storage writer
 *	  discards its temporary object on abort by itself.
 *
 * IDENTIFICATION
 *		src/archive/container.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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
#include "archive/keys.h"
#include "storage/storage.h"

PG_FUNCTION_INFO_V1(bo_archive_put_sql);
PG_FUNCTION_INFO_V1(bo_archive_get_sql);
PG_FUNCTION_INFO_V1(bo_inspect_object_sql);
PG_FUNCTION_INFO_V1(bo_verify_object_sql);

#define ARCHIVE_MAGIC "\x89" "BOA\r\n\x1a\n"
#define ARCHIVE_END_MAGIC "\x89" "BOAEND\n"
#define MAGIC_LENGTH 8
#define HEADER_FIXED_LENGTH 58
#define FRAME_HEADER_LENGTH 10
#define FOOTER_LENGTH 16
#define TRAILER_MARKER 0xFFFFFFFFU
#define HEADER_HASH_LENGTH 32	/* SHA-256 */
#define AEAD_TAG_LENGTH 16
#define FRAME_KIND_DATA 0
#define FRAME_KIND_FINAL 1
#define TRAILER_KIND 2
#define FRAME_MODE_RAW 0
#define FRAME_MODE_ZSTD 1
#define AD_MAX_LENGTH (HEADER_HASH_LENGTH + 8 + 1 + 8 + 8 + BO_DIGEST_MAX_LENGTH)

struct BoArchiveWriter
{
	MemoryContext mcxt;			/* the writer and everything it keeps */
	MemoryContext chunkcxt;		/* reset after every chunk */
	MemoryContextCallback callback;
	BoStorage  *storage;
	BoStorageWriter *sw;
	char	   *name;
	BoCompression compression;
	int			level;
	BoCipher	cipher;
	BoDigestAlgorithm digest;
	int			dlen;
	uint32		chunk_size;
	char		kek_id[BO_ARCHIVE_KEK_ID_MAX + 1];
	uint8		key_id[BO_ARCHIVE_KEY_ID_LENGTH];
	uint8		nonce_prefix[16];
	unsigned char *data_key;	/* sodium_malloc'd; NULL without cipher */
	uint8		H[HEADER_HASH_LENGTH];
	char	   *chunk;			/* chunk_size bytes of buffered plaintext */
	uint32		fill;
	uint64		index;			/* frames written */
	uint64		plaintext_length;
	uint64		stored_length;
	BoDigest   *stored_digest;
	BoDigest   *plain_digest;
	ZSTD_CCtx  *cctx;
};

struct BoArchiveReader
{
	MemoryContext mcxt;
	MemoryContext chunkcxt;
	MemoryContextCallback callback;
	BoStorage  *storage;
	char	   *name;
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
	uint8		nonce_prefix[16];
	char	   *object_id;
	uint8		H[HEADER_HASH_LENGTH];
	unsigned char *data_key;	/* sodium_malloc'd */
	ZSTD_DCtx  *dctx;
	/* progress */
	uint64		offset;
	uint64		index;			/* frames verified */
	uint64		plaintext_length;
	bool		done;			/* trailer and footer verified */
	BoDigest   *stored_digest;
	BoDigest   *plain_digest;
	char	   *plain;			/* the current chunk's plaintext, in chunkcxt */
	size_t		plain_len;
	size_t		plain_pos;
	/* after done */
	uint8		plaintext_digest[BO_DIGEST_MAX_LENGTH];
	uint8		stored_digest_out[BO_DIGEST_MAX_LENGTH];
	/* the first failure */
	bool		failed;
	uint64		fail_chunk;
	char	   *problem;
};

static bool reader_fail(BoArchiveReader *r, uint64 chunk, const char *fmt,...) pg_attribute_printf(3, 4);

/* big-endian helpers */
static inline void
put_u16(uint8 *p, uint16 v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static inline void
put_u32(uint8 *p, uint32 v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static inline void
put_u64(uint8 *p, uint64 v)
{
	put_u32(p, (uint32) (v >> 32));
	put_u32(p + 4, (uint32) v);
}

static inline uint16
get_u16(const uint8 *p)
{
	return ((uint16) p[0] << 8) | p[1];
}

static inline uint32
get_u32(const uint8 *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

static inline uint64
get_u64(const uint8 *p)
{
	return ((uint64) get_u32(p) << 32) | get_u32(p + 4);
}

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
 * The AEAD nonce of frame (or trailer) index i.
 */
static size_t
aead_nonce(BoCipher cipher, const uint8 *prefix, uint64 i, uint8 *nonce)
{
	if (cipher == BO_CIPHER_AES256GCM)
	{
		memcpy(nonce, prefix, 4);
		put_u64(nonce + 4, i);
		return 12;
	}
	memcpy(nonce, prefix, 16);
	put_u64(nonce + 16, i);
	return 24;
}

/*
 * The associated data of frame i: H || u64(i) || kind || mode || u32 plain_length.
 */
static size_t
frame_ad(uint8 *ad, const uint8 *H, uint64 i, uint8 kind, uint8 mode, uint32 plain_length)
{
	memcpy(ad, H, HEADER_HASH_LENGTH);
	put_u64(ad + 32, i);
	ad[40] = kind;
	ad[41] = mode;
	put_u32(ad + 42, plain_length);
	return 46;
}

/*
 * T, the authenticated trailer fields: H || u64(n) || 2 || u64 n ||
 * u64 plaintext_length || plaintext_digest.
 */
static size_t
trailer_ad(uint8 *ad, const uint8 *H, uint64 n, uint64 plaintext_length,
		   const uint8 *pdigest, int dlen)
{
	memcpy(ad, H, HEADER_HASH_LENGTH);
	put_u64(ad + 32, n);
	ad[40] = TRAILER_KIND;
	put_u64(ad + 41, n);
	put_u64(ad + 49, plaintext_length);
	memcpy(ad + 57, pdigest, dlen);
	return 57 + dlen;
}

/*
 * Encrypt m (mlen bytes) into c (mlen + 16 bytes) under key and index i.
 */
static void
aead_seal(BoCipher cipher, const unsigned char *key, const uint8 *prefix, uint64 i,
		  const uint8 *ad, size_t adlen, const void *m, size_t mlen, uint8 *c)
{
	uint8		nonce[24];
	unsigned long long clen;
	int			rc;

	aead_nonce(cipher, prefix, i, nonce);
	if (cipher == BO_CIPHER_AES256GCM)
		rc = crypto_aead_aes256gcm_encrypt(c, &clen, m, mlen, ad, adlen, NULL, nonce, key);
	else
		rc = crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, m, mlen, ad, adlen, NULL,
														nonce, key);
	if (rc != 0 || clen != mlen + AEAD_TAG_LENGTH)
		elog(ERROR, "could not encrypt archive chunk " UINT64_FORMAT, i);
}

/*
 * Decrypt and authenticate c (clen bytes, tag included) into m; false when
 * it does not authenticate.
 */
static bool
aead_open(BoCipher cipher, const unsigned char *key, const uint8 *prefix, uint64 i,
		  const uint8 *ad, size_t adlen, const uint8 *c, size_t clen, void *m)
{
	uint8		nonce[24];
	unsigned long long mlen;
	int			rc;

	if (clen < AEAD_TAG_LENGTH)
		return false;
	aead_nonce(cipher, prefix, i, nonce);
	if (cipher == BO_CIPHER_AES256GCM)
		rc = crypto_aead_aes256gcm_decrypt(m, &mlen, NULL, c, clen, ad, adlen, nonce, key);
	else
		rc = crypto_aead_xchacha20poly1305_ietf_decrypt(m, &mlen, NULL, c, clen, ad, adlen,
														nonce, key);
	return rc == 0 && mlen == clen - AEAD_TAG_LENGTH;
}

/*
 * D(H || u64(i) || frame header || payload): the digest closing frame i.
 */
static void
frame_digest(BoDigestAlgorithm alg, const uint8 *H, uint64 i, const uint8 *fh,
			 const void *payload, size_t len, uint8 *out)
{
	BoDigest   *d = bo_digest_create(alg);
	uint8		ibuf[8];

	put_u64(ibuf, i);
	bo_digest_update(d, H, HEADER_HASH_LENGTH);
	bo_digest_update(d, ibuf, 8);
	bo_digest_update(d, fh, FRAME_HEADER_LENGTH);
	bo_digest_update(d, payload, len);
	bo_digest_final(d, out);
	bo_digest_free(d);
}

/*
 * SHA-256 of the header bytes.
 */
static void
header_hash(const uint8 *header, size_t len, uint8 *H)
{
	BoDigest   *d = bo_digest_create(BO_DIGEST_SHA256);

	bo_digest_update(d, header, len);
	bo_digest_final(d, H);
	bo_digest_free(d);
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

	if (w->cctx != NULL)
		ZSTD_freeCCtx(w->cctx);
	w->cctx = NULL;
	bo_data_key_free(w->data_key);
	w->data_key = NULL;
}

/*
 * Append stored bytes to the object, and to its stored digest.
 */
static void
writer_emit(BoArchiveWriter *w, const void *data, size_t len)
{
	bo_storage_put_write(w->sw, data, len);
	bo_digest_update(w->stored_digest, data, len);
	w->stored_length += len;
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
	uint8	   *header;
	size_t		hlen;
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
	w->compression = options->compression;
	w->level = w->compression == BO_COMPRESSION_ZSTD ? options->compression_level : 0;
	w->cipher = cipher;
	w->digest = options->digest;
	w->dlen = bo_digest_length(w->digest);
	w->chunk_size = options->chunk_size;
	if (cipher != BO_CIPHER_NONE)
	{
		strlcpy(w->kek_id, kek_id, sizeof(w->kek_id));
		w->data_key = bo_data_key_new(w->key_id);
	}
	randombytes_buf(w->nonce_prefix, sizeof(w->nonce_prefix));

	if (w->compression == BO_COMPRESSION_ZSTD)
	{
		size_t		ret;

		w->cctx = ZSTD_createCCtx();
		if (w->cctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not create a zstd compression context.")));
		ret = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->level);
		if (ZSTD_isError(ret))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not set zstd compression level to %d: %s",
							w->level, ZSTD_getErrorName(ret))));
		if (bo_compression_workers > 0)
		{
			ret = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, bo_compression_workers);
			if (ZSTD_isError(ret))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("could not set compression worker count to %d: %s",
								bo_compression_workers, ZSTD_getErrorName(ret))));
		}
	}

	/* the header */
	hlen = HEADER_FIXED_LENGTH + oidlen;
	header = palloc0(hlen);
	memcpy(header, ARCHIVE_MAGIC, MAGIC_LENGTH);
	put_u16(header + 8, BO_ARCHIVE_FORMAT_VERSION);
	put_u32(header + 10, (uint32) hlen);
	put_u16(header + 14, 0);
	header[16] = (uint8) w->compression;
	header[17] = (uint8) (int8) w->level;
	header[18] = (uint8) w->cipher;
	header[19] = (uint8) w->digest;
	put_u32(header + 20, w->chunk_size);
	memcpy(header + 24, w->key_id, BO_ARCHIVE_KEY_ID_LENGTH);
	memcpy(header + 40, w->nonce_prefix, 16);
	put_u16(header + 56, (uint16) oidlen);
	memcpy(header + 58, object_id, oidlen);
	header_hash(header, hlen, w->H);

	w->stored_digest = bo_digest_create(w->digest);
	w->plain_digest = bo_digest_create(w->digest);
	w->chunk = palloc(w->chunk_size);
	w->sw = bo_storage_put_begin(storage, name);
	writer_emit(w, header, hlen);
	pfree(header);

	MemoryContextSwitchTo(oldcxt);
	return w;
}

/*
 * Compress, encrypt, digest and write the buffered chunk as frame w->index.
 */
static void
writer_flush_chunk(BoArchiveWriter *w, bool final)
{
	MemoryContext oldcxt;
	const uint8 *body = (const uint8 *) w->chunk;
	size_t		body_len = w->fill;
	uint8		mode = FRAME_MODE_RAW;
	uint8		kind = final ? FRAME_KIND_FINAL : FRAME_KIND_DATA;
	const uint8 *payload;
	size_t		payload_len;
	uint8		fh[FRAME_HEADER_LENGTH];
	uint8		fd[BO_DIGEST_MAX_LENGTH];

	CHECK_FOR_INTERRUPTS();
	oldcxt = MemoryContextSwitchTo(w->chunkcxt);

	if (w->compression == BO_COMPRESSION_ZSTD && w->fill > 0)
	{
		size_t		cap = ZSTD_compressBound(w->fill);
		uint8	   *cbuf = palloc(cap);
		size_t		ret = ZSTD_compress2(w->cctx, cbuf, cap, w->chunk, w->fill);

		if (ZSTD_isError(ret))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not compress chunk " UINT64_FORMAT " of archive object \"%s\": %s",
							w->index, w->name, ZSTD_getErrorName(ret))));
		if (ret < w->fill)
		{
			body = cbuf;
			body_len = ret;
			mode = FRAME_MODE_ZSTD;
		}
	}

	if (w->cipher != BO_CIPHER_NONE)
	{
		uint8		ad[AD_MAX_LENGTH];
		size_t		adlen = frame_ad(ad, w->H, w->index, kind, mode, w->fill);
		uint8	   *c = palloc(body_len + AEAD_TAG_LENGTH);

		aead_seal(w->cipher, w->data_key, w->nonce_prefix, w->index, ad, adlen,
				  body, body_len, c);
		payload = c;
		payload_len = body_len + AEAD_TAG_LENGTH;
	}
	else
	{
		payload = body;
		payload_len = body_len;
	}

	put_u32(fh, (uint32) payload_len);
	put_u32(fh + 4, w->fill);
	fh[8] = kind;
	fh[9] = mode;
	frame_digest(w->digest, w->H, w->index, fh, payload, payload_len, fd);

	writer_emit(w, fh, FRAME_HEADER_LENGTH);
	writer_emit(w, payload, payload_len);
	writer_emit(w, fd, w->dlen);
	bo_digest_update(w->plain_digest, w->chunk, w->fill);

	w->plaintext_length += w->fill;
	w->index++;
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
		if (w->fill == w->chunk_size)
			writer_flush_chunk(w, false);
		n = Min(len, (size_t) (w->chunk_size - w->fill));
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
	MemoryContext oldcxt = MemoryContextSwitchTo(w->mcxt);
	uint8		pdigest[BO_DIGEST_MAX_LENGTH];
	uint8		ad[AD_MAX_LENGTH];
	size_t		adlen;
	uint8		buf[4 + 8 + 8];
	uint8		auth[BO_DIGEST_MAX_LENGTH];
	size_t		authlen;
	uint8		footer[FOOTER_LENGTH];
	uint64		trailer_offset;
	uint64		n;

	writer_flush_chunk(w, true);
	n = w->index;

	bo_digest_final(w->plain_digest, pdigest);
	adlen = trailer_ad(ad, w->H, n, w->plaintext_length, pdigest, w->dlen);
	if (w->cipher != BO_CIPHER_NONE)
	{
		aead_seal(w->cipher, w->data_key, w->nonce_prefix, n, ad, adlen, NULL, 0, auth);
		authlen = AEAD_TAG_LENGTH;
	}
	else
	{
		BoDigest   *d = bo_digest_create(w->digest);

		bo_digest_update(d, ad, adlen);
		bo_digest_final(d, auth);
		bo_digest_free(d);
		authlen = w->dlen;
	}

	trailer_offset = w->stored_length;
	put_u32(buf, TRAILER_MARKER);
	put_u64(buf + 4, n);
	put_u64(buf + 12, w->plaintext_length);
	writer_emit(w, buf, sizeof(buf));
	writer_emit(w, pdigest, w->dlen);
	writer_emit(w, auth, authlen);
	put_u64(footer, trailer_offset);
	memcpy(footer + 8, ARCHIVE_END_MAGIC, MAGIC_LENGTH);
	writer_emit(w, footer, FOOTER_LENGTH);

	memset(out, 0, sizeof(*out));
	bo_digest_final(w->stored_digest, out->stored_digest);

	/* the key first: a committed data object always has its key */
	if (w->cipher != BO_CIPHER_NONE)
		bo_key_wrap_put(w->storage, w->name, w->kek_id, w->key_id, w->data_key);
	bo_storage_put_commit(w->sw);

	out->stored_length = w->stored_length;
	out->plaintext_length = w->plaintext_length;
	out->chunk_count = n;
	out->compression = w->compression;
	out->compression_level = w->level;
	out->cipher = w->cipher;
	out->digest = w->digest;
	out->digest_length = w->dlen;
	memcpy(out->plaintext_digest, pdigest, w->dlen);
	memcpy(out->key_id, w->key_id, BO_ARCHIVE_KEY_ID_LENGTH);
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
 * Memory-context callback: free what palloc does not own.
 */
static void
reader_release(void *arg)
{
	BoArchiveReader *r = (BoArchiveReader *) arg;

	if (r->dctx != NULL)
		ZSTD_freeDCtx(r->dctx);
	r->dctx = NULL;
	bo_data_key_free(r->data_key);
	r->data_key = NULL;
}

/*
 * Record the first failure: chunk index and a detail sentence.  Returns
 * false for the caller to return.
 */
static bool
reader_fail(BoArchiveReader *r, uint64 chunk, const char *fmt,...)
{
	StringInfoData buf;
	MemoryContext oldcxt;

	if (r->failed)
		return false;
	oldcxt = MemoryContextSwitchTo(r->mcxt);
	initStringInfo(&buf);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	r->failed = true;
	r->fail_chunk = chunk;
	r->problem = buf.data;
	MemoryContextSwitchTo(oldcxt);
	return false;
}

/*
 * Raise the recorded failure as a data_corrupted error.
 */
static void
reader_raise(BoArchiveReader *r)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("object \"%s\" is corrupt at chunk " UINT64_FORMAT, r->name, r->fail_chunk),
			 errdetail_internal("%s", r->problem)));
}

/*
 * Read up to len bytes at the current offset; everything read goes into
 * the stored digest.  Returns the bytes read (short only at the end).
 */
static size_t
reader_get(BoArchiveReader *r, void *buf, size_t len)
{
	size_t		done = 0;

	while (done < len)
	{
		/* the driver's per-call allocations go away with the chunk */
		MemoryContext oldcxt = MemoryContextSwitchTo(r->chunkcxt);
		size_t		got = bo_storage_get(r->storage, r->name, r->offset,
										 (char *) buf + done, len - done);

		MemoryContextSwitchTo(oldcxt);
		if (got == 0)
			break;
		bo_digest_update(r->stored_digest, (char *) buf + done, got);
		r->offset += got;
		done += got;
	}
	return done;
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
	r->decode = decode;
	return r;
}

/*
 * Read and check the header; false (failure at chunk 0) when it is not a
 * valid header of this format.  object_id: the identity expected, or NULL
 * to accept any.
 */
static bool
reader_header(BoArchiveReader *r, const char *object_id)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(r->mcxt);
	uint8		fixed[HEADER_FIXED_LENGTH];
	uint8	   *header;
	size_t		got;
	uint16		version;
	uint16		oidlen;
	int			level;
	bool		zero_key;
	int			i;

	bo_keys_init();
	/* the stored digest starts once the header has named its algorithm */
	got = bo_storage_get(r->storage, r->name, 0, fixed, HEADER_FIXED_LENGTH);
	MemoryContextSwitchTo(oldcxt);
	if (got >= MAGIC_LENGTH && memcmp(fixed, ARCHIVE_MAGIC, MAGIC_LENGTH) != 0)
		return reader_fail(r, 0, "The object does not begin with the archive magic number.");
	if (got < HEADER_FIXED_LENGTH)
		return reader_fail(r, 0, "The object ends inside its header (%zu bytes).", got);
	version = get_u16(fixed + 8);
	if (version != BO_ARCHIVE_FORMAT_VERSION)
		return reader_fail(r, 0, "The header's format version is %u; this build reads version %d.",
						   version, BO_ARCHIVE_FORMAT_VERSION);
	r->header_length = get_u32(fixed + 10);
	oidlen = get_u16(fixed + 56);
	if (r->header_length != HEADER_FIXED_LENGTH + (uint32) oidlen)
		return reader_fail(r, 0, "The header length %u does not match its object identity length %u.",
						   r->header_length, oidlen);
	if (get_u16(fixed + 14) != 0)
		return reader_fail(r, 0, "The header has unknown flags 0x%04x.", get_u16(fixed + 14));
	if (fixed[16] > BO_COMPRESSION_ZSTD)
		return reader_fail(r, 0, "The header names an unknown compression method %u.", fixed[16]);
	r->compression = (BoCompression) fixed[16];
	level = (int8) fixed[17];
	if (r->compression == BO_COMPRESSION_NONE ? level != 0 : (level == 0 || level > 19))
		return reader_fail(r, 0, "The header's compression level %d is invalid.", level);
	r->level = level;
	if (fixed[18] > BO_CIPHER_XCHACHA20POLY1305)
		return reader_fail(r, 0, "The header names an unknown cipher %u.", fixed[18]);
	r->cipher = (BoCipher) fixed[18];
	if (fixed[19] < BO_DIGEST_SHA256 || fixed[19] > BO_DIGEST_BLAKE3)
		return reader_fail(r, 0, "The header names an unknown digest algorithm %u.", fixed[19]);
	r->digest = (BoDigestAlgorithm) fixed[19];
	r->dlen = bo_digest_length(r->digest);
	r->chunk_size = get_u32(fixed + 20);
	if (r->chunk_size < BO_ARCHIVE_MIN_CHUNK_SIZE || r->chunk_size > BO_ARCHIVE_MAX_CHUNK_SIZE)
		return reader_fail(r, 0, "The header's chunk size %u is out of range.", r->chunk_size);
	memcpy(r->key_id, fixed + 24, BO_ARCHIVE_KEY_ID_LENGTH);
	memcpy(r->nonce_prefix, fixed + 40, 16);
	zero_key = true;
	for (i = 0; i < BO_ARCHIVE_KEY_ID_LENGTH; i++)
		if (r->key_id[i] != 0)
			zero_key = false;
	if (zero_key != (r->cipher == BO_CIPHER_NONE))
		return reader_fail(r, 0, "The header's key id does not fit its cipher.");

	oldcxt = MemoryContextSwitchTo(r->mcxt);
	header = palloc(r->header_length);
	memcpy(header, fixed, HEADER_FIXED_LENGTH);
	got = oidlen > 0 ? bo_storage_get(r->storage, r->name, HEADER_FIXED_LENGTH,
									  header + HEADER_FIXED_LENGTH, oidlen) : 0;
	if (got < oidlen)
	{
		MemoryContextSwitchTo(oldcxt);
		return reader_fail(r, 0, "The object ends inside its header.");
	}
	if (pg_encoding_verifymbstr(PG_UTF8, (char *) header + HEADER_FIXED_LENGTH, oidlen) != oidlen)
	{
		MemoryContextSwitchTo(oldcxt);
		return reader_fail(r, 0, "The header's object identity is not valid UTF-8.");
	}
	r->object_id = pnstrdup((char *) header + HEADER_FIXED_LENGTH, oidlen);
	header_hash(header, r->header_length, r->H);
	r->stored_digest = bo_digest_create(r->digest);
	bo_digest_update(r->stored_digest, header, r->header_length);
	r->offset = r->header_length;
	if (r->decode)
		r->plain_digest = bo_digest_create(r->digest);
	pfree(header);
	MemoryContextSwitchTo(oldcxt);

	if (object_id != NULL && strcmp(object_id, r->object_id) != 0)
		return reader_fail(r, 0, "The header names the object \"%s\", not \"%s\".",
						   r->object_id, object_id);
	return true;
}

/*
 * Prepare decoding: the data key (unwrapped from the key objects) and a
 * zstd context.  Key problems raise an error (or, with problem given,
 * are returned there).
 */
static bool
reader_prepare(BoArchiveReader *r, BoKeyProblem *problem)
{
	if (!r->decode)
		return true;
	if (r->cipher == BO_CIPHER_AES256GCM)
		require_aes();
	if (r->cipher != BO_CIPHER_NONE)
	{
		BoKeyProblem p;
		MemoryContext oldcxt = MemoryContextSwitchTo(r->mcxt);

		r->data_key = bo_key_unwrap(r->storage, r->name, r->key_id, &p);
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
	if (r->compression == BO_COMPRESSION_ZSTD)
	{
		r->dctx = ZSTD_createDCtx();
		if (r->dctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not create a zstd decompression context.")));
	}
	return true;
}

/*
 * Read and verify the trailer and the footer after the final chunk.
 */
static bool
reader_trailer(BoArchiveReader *r)
{
	uint64		n = r->index;
	uint64		trailer_offset = r->offset;
	size_t		authlen = r->cipher != BO_CIPHER_NONE ? AEAD_TAG_LENGTH : r->dlen;
	size_t		total = 4 + 8 + 8 + r->dlen + authlen;
	uint8		buf[4 + 8 + 8 + 2 * BO_DIGEST_MAX_LENGTH];
	uint8		ad[AD_MAX_LENGTH];
	size_t		adlen;
	const uint8 *pdigest = buf + 20;
	const uint8 *auth = buf + 20 + r->dlen;
	uint8		footer[FOOTER_LENGTH];
	uint8		probe;
	size_t		got;

	got = reader_get(r, buf, total);
	if (got < 4)
		return reader_fail(r, n, "The object ends after its final chunk " UINT64_FORMAT ", before the trailer.",
						   n - 1);
	if (get_u32(buf) != TRAILER_MARKER)
		return reader_fail(r, n, "Data follows the final chunk " UINT64_FORMAT " where the trailer should begin.",
						   n - 1);
	if (got < total)
		return reader_fail(r, n, "The object ends inside its trailer.");
	if (get_u64(buf + 4) != n)
		return reader_fail(r, n, "The trailer counts " UINT64_FORMAT " chunks; the object has " UINT64_FORMAT ".",
						   get_u64(buf + 4), n);
	if (get_u64(buf + 12) != r->plaintext_length)
		return reader_fail(r, n, "The trailer gives a plaintext length of " UINT64_FORMAT " bytes; the chunks hold " UINT64_FORMAT ".",
						   get_u64(buf + 12), r->plaintext_length);
	adlen = trailer_ad(ad, r->H, n, r->plaintext_length, pdigest, r->dlen);
	if (r->cipher != BO_CIPHER_NONE)
	{
		uint8		empty[1];

		if (r->decode &&
			!aead_open(r->cipher, r->data_key, r->nonce_prefix, n, ad, adlen, auth,
					   AEAD_TAG_LENGTH, empty))
			return reader_fail(r, n, "The trailer does not authenticate under the object's data key.");
	}
	else
	{
		uint8		expect[BO_DIGEST_MAX_LENGTH];
		BoDigest   *d = bo_digest_create(r->digest);

		bo_digest_update(d, ad, adlen);
		bo_digest_final(d, expect);
		bo_digest_free(d);
		if (memcmp(expect, auth, r->dlen) != 0)
			return reader_fail(r, n, "The trailer's digest does not match its fields.");
	}
	if (r->decode)
	{
		uint8		computed[BO_DIGEST_MAX_LENGTH];

		bo_digest_final(r->plain_digest, computed);
		if (memcmp(computed, pdigest, r->dlen) != 0)
			return reader_fail(r, n, "The digest of the plaintext does not match the trailer.");
	}
	memcpy(r->plaintext_digest, pdigest, r->dlen);

	got = reader_get(r, footer, FOOTER_LENGTH);
	if (got < FOOTER_LENGTH)
		return reader_fail(r, n, "The object ends inside its footer.");
	if (memcmp(footer + 8, ARCHIVE_END_MAGIC, MAGIC_LENGTH) != 0)
		return reader_fail(r, n, "The footer's end magic number is wrong.");
	if (get_u64(footer) != trailer_offset)
		return reader_fail(r, n, "The footer places the trailer at offset " UINT64_FORMAT "; it is at " UINT64_FORMAT ".",
						   get_u64(footer), trailer_offset);
	if (bo_storage_get(r->storage, r->name, r->offset, &probe, 1) != 0)
		return reader_fail(r, n, "Data follows the footer.");
	bo_digest_final(r->stored_digest, r->stored_digest_out);
	r->done = true;
	return true;
}

/*
 * Read, check and (when decoding) decrypt and decompress the next frame;
 * after the final one, the trailer too.  The plaintext is left in
 * r->plain (in chunkcxt, which the caller resets before the next call).
 */
static bool
reader_next_chunk(BoArchiveReader *r)
{
	uint64		i = r->index;
	uint8		fh[FRAME_HEADER_LENGTH];
	uint8		fd[BO_DIGEST_MAX_LENGTH];
	uint8		expect[BO_DIGEST_MAX_LENGTH];
	uint32		stored_length;
	uint32		plain_length;
	uint8		kind;
	uint8		mode;
	size_t		tag = r->cipher != BO_CIPHER_NONE ? AEAD_TAG_LENGTH : 0;
	size_t		max_body;
	size_t		body_len;
	uint8	   *payload;
	size_t		got;
	MemoryContext oldcxt;
	bool		ok;

	CHECK_FOR_INTERRUPTS();
	got = reader_get(r, fh, 4);
	if (got == 0)
		return i == 0 ? reader_fail(r, 0, "The object ends after its header.")
			: reader_fail(r, i, "The object ends before chunk " UINT64_FORMAT "; chunk " UINT64_FORMAT " is not marked final.",
						  i, i - 1);
	if (got < 4)
		return reader_fail(r, i, "The object ends inside the frame header of chunk " UINT64_FORMAT ".", i);
	stored_length = get_u32(fh);
	if (stored_length == TRAILER_MARKER)
		return reader_fail(r, i, "A trailer begins where chunk " UINT64_FORMAT " should: no final chunk precedes it.", i);
	if (reader_get(r, fh + 4, 6) < 6)
		return reader_fail(r, i, "The object ends inside the frame header of chunk " UINT64_FORMAT ".", i);
	plain_length = get_u32(fh + 4);
	kind = fh[8];
	mode = fh[9];

	max_body = r->chunk_size;
	if (r->compression == BO_COMPRESSION_ZSTD)
		max_body = Max(max_body, ZSTD_compressBound(r->chunk_size));
	if (stored_length < tag || stored_length - tag > max_body)
		return reader_fail(r, i, "The frame header of chunk " UINT64_FORMAT " gives an impossible stored length %u.",
						   i, stored_length);
	body_len = stored_length - tag;

	oldcxt = MemoryContextSwitchTo(r->chunkcxt);
	payload = palloc(stored_length > 0 ? stored_length : 1);
	MemoryContextSwitchTo(oldcxt);
	if (reader_get(r, payload, stored_length) < stored_length ||
		reader_get(r, fd, r->dlen) < (size_t) r->dlen)
		return reader_fail(r, i, "The object ends inside chunk " UINT64_FORMAT ".", i);
	frame_digest(r->digest, r->H, i, fh, payload, stored_length, expect);
	if (memcmp(expect, fd, r->dlen) != 0)
		return reader_fail(r, i, "The frame digest of chunk " UINT64_FORMAT " does not match its bytes (the chunk, the header or the chunk order was changed).", i);

	/* the frame is as written; is it a frame this writer could have made? */
	if (kind != FRAME_KIND_DATA && kind != FRAME_KIND_FINAL)
		return reader_fail(r, i, "Chunk " UINT64_FORMAT " has an unknown kind %u.", i, kind);
	if (mode != FRAME_MODE_RAW && !(mode == FRAME_MODE_ZSTD && r->compression == BO_COMPRESSION_ZSTD))
		return reader_fail(r, i, "Chunk " UINT64_FORMAT " has an invalid mode %u.", i, mode);
	if (kind == FRAME_KIND_DATA && plain_length != r->chunk_size)
		return reader_fail(r, i, "Chunk " UINT64_FORMAT " is not final but holds %u bytes instead of %u.",
						   i, plain_length, r->chunk_size);
	if (plain_length > r->chunk_size || (plain_length == 0 && i > 0))
		return reader_fail(r, i, "Chunk " UINT64_FORMAT " holds an impossible %u bytes.", i, plain_length);
	if (mode == FRAME_MODE_RAW && body_len != plain_length)
		return reader_fail(r, i, "Raw chunk " UINT64_FORMAT " stores %zu bytes for %u.", i, body_len, plain_length);
	if (mode == FRAME_MODE_ZSTD && body_len == 0)
		return reader_fail(r, i, "Compressed chunk " UINT64_FORMAT " is empty.", i);

	if (r->decode)
	{
		uint8	   *body = payload;
		char	   *plain;

		oldcxt = MemoryContextSwitchTo(r->chunkcxt);
		if (r->cipher != BO_CIPHER_NONE)
		{
			uint8		ad[AD_MAX_LENGTH];
			size_t		adlen = frame_ad(ad, r->H, i, kind, mode, plain_length);

			body = palloc(body_len > 0 ? body_len : 1);
			ok = aead_open(r->cipher, r->data_key, r->nonce_prefix, i, ad, adlen,
						   payload, stored_length, body);
			if (!ok)
			{
				MemoryContextSwitchTo(oldcxt);
				return reader_fail(r, i, "Chunk " UINT64_FORMAT " does not authenticate under the object's data key.", i);
			}
		}
		if (mode == FRAME_MODE_ZSTD)
		{
			size_t		ret;

			plain = palloc(plain_length > 0 ? plain_length : 1);
			ret = ZSTD_decompressDCtx(r->dctx, plain, plain_length, body, body_len);
			if (ZSTD_isError(ret) || ret != plain_length)
			{
				MemoryContextSwitchTo(oldcxt);
				if (ZSTD_isError(ret))
					return reader_fail(r, i, "Chunk " UINT64_FORMAT " does not decompress: %s.", i,
									   ZSTD_getErrorName(ret));
				return reader_fail(r, i, "Chunk " UINT64_FORMAT " decompresses to %zu bytes instead of %u.",
								   i, ret, plain_length);
			}
		}
		else
			plain = (char *) body;
		MemoryContextSwitchTo(oldcxt);
		bo_digest_update(r->plain_digest, plain, plain_length);
		r->plain = plain;
		r->plain_len = plain_length;
		r->plain_pos = 0;
	}
	r->plaintext_length += plain_length;
	r->index++;
	if (kind == FRAME_KIND_FINAL)
		return reader_trailer(r);
	return true;
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

	if (r->failed)
		reader_raise(r);
	while (total < len)
	{
		if (r->plain_pos < r->plain_len)
		{
			size_t		n = Min(len - total, r->plain_len - r->plain_pos);

			memcpy((char *) buf + total, r->plain + r->plain_pos, n);
			r->plain_pos += n;
			total += n;
			continue;
		}
		if (r->done)
			break;
		r->plain = NULL;
		r->plain_len = r->plain_pos = 0;
		MemoryContextReset(r->chunkcxt);
		if (!reader_next_chunk(r))
			reader_raise(r);
	}
	return total;
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
 * Hex of len bytes (palloc'd).
 */
static char *
to_hex(const uint8 *data, size_t len)
{
	char	   *out = palloc(len * 2 + 1);

	hex_encode((const char *) data, len, out);
	out[len * 2] = '\0';
	return out;
}

/*
 * Append ,"key": "value" (a JSON string) to a JSON object being built.
 */
static void
json_add_text(StringInfo s, const char *key, const char *value)
{
	if (s->len > 1)
		appendStringInfoString(s, ", ");
	escape_json(s, key);
	appendStringInfoString(s, ": ");
	if (value == NULL)
		appendStringInfoString(s, "null");
	else
		escape_json(s, value);
}

/*
 * Append ,"key": raw JSON to a JSON object being built.
 */
static void
json_add_raw(StringInfo s, const char *key, const char *raw)
{
	if (s->len > 1)
		appendStringInfoString(s, ", ");
	escape_json(s, key);
	appendStringInfo(s, ": %s", raw);
}

/*
 * Append ,"key": number.
 */
static void
json_add_u64(StringInfo s, const char *key, uint64 value)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), UINT64_FORMAT, value);
	json_add_raw(s, key, buf);
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
 * Read options for archive_put from a JSON object: compression, level,
 * cipher, digest, chunkSize, keyId.
 */
static void
parse_put_options(Jsonb *json, BoArchiveOptions *o)
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
 * Raise an error unless the caller is a superuser.
 */
static void
require_superuser(const char *what)
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
	StringInfoData s;

	require_superuser("write archive objects directly");
	parse_put_options(opts, &o);
	storage = bo_storage_open(dest);
	w = bo_archive_writer_begin(storage, name, &o);
	bo_archive_write(w, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	bo_archive_writer_finish(w, &res);

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	json_add_text(&s, "name", name);
	json_add_u64(&s, "storedLength", res.stored_length);
	json_add_u64(&s, "plaintextLength", res.plaintext_length);
	json_add_u64(&s, "chunkCount", res.chunk_count);
	json_add_text(&s, "compression", bo_compression_name(res.compression));
	json_add_raw(&s, "compressionLevel", psprintf("%d", res.compression_level));
	json_add_text(&s, "cipher", bo_cipher_name(res.cipher));
	json_add_text(&s, "digest", bo_digest_name(res.digest));
	json_add_text(&s, "storedDigest", to_hex(res.stored_digest, res.digest_length));
	json_add_text(&s, "plaintextDigest", to_hex(res.plaintext_digest, res.digest_length));
	json_add_text(&s, "keyId", res.cipher != BO_CIPHER_NONE ?
				  to_hex(res.key_id, BO_ARCHIVE_KEY_ID_LENGTH) : NULL);
	json_add_text(&s, "wrappedBy", res.cipher != BO_CIPHER_NONE ? res.kek_id : NULL);
	PG_RETURN_DATUM(json_finish(&s));
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

	require_superuser("read archive objects directly");
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
	uint8		footer[FOOTER_LENGTH];
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
	json_add_text(&s, "name", name);
	json_add_raw(&s, "formatVersion", psprintf("%d", BO_ARCHIVE_FORMAT_VERSION));
	json_add_u64(&s, "headerLength", r->header_length);
	json_add_text(&s, "compression", bo_compression_name(r->compression));
	json_add_raw(&s, "compressionLevel", psprintf("%d", r->level));
	json_add_text(&s, "cipher", bo_cipher_name(r->cipher));
	json_add_text(&s, "digest", bo_digest_name(r->digest));
	json_add_u64(&s, "chunkSize", r->chunk_size);
	json_add_text(&s, "keyId", r->cipher != BO_CIPHER_NONE ?
				  to_hex(r->key_id, BO_ARCHIVE_KEY_ID_LENGTH) : NULL);
	json_add_text(&s, "noncePrefix", to_hex(r->nonce_prefix, 16));
	json_add_text(&s, "objectId", r->object_id);
	json_add_u64(&s, "storedLength", st.size);
	json_add_raw(&s, "keyWraps", json_string_array(bo_key_wraps(storage, name)));

	/* the trailer's sizes, found through the footer */
	if (st.size < r->header_length + FOOTER_LENGTH ||
		bo_storage_get(storage, name, st.size - FOOTER_LENGTH, footer, FOOTER_LENGTH) != FOOTER_LENGTH ||
		memcmp(footer + 8, ARCHIVE_END_MAGIC, MAGIC_LENGTH) != 0)
		problem = "The object does not end with a footer.";
	else if (get_u64(footer) < r->header_length ||
			 get_u64(footer) > st.size - FOOTER_LENGTH - sizeof(trailer) ||
			 bo_storage_get(storage, name, get_u64(footer), trailer, sizeof(trailer)) != sizeof(trailer) ||
			 get_u32(trailer) != TRAILER_MARKER)
		problem = "The footer does not lead to a trailer.";
	if (problem == NULL)
	{
		json_add_u64(&s, "chunkCount", get_u64(trailer + 4));
		json_add_u64(&s, "plaintextLength", get_u64(trailer + 12));
	}
	else
	{
		json_add_raw(&s, "chunkCount", "null");
		json_add_raw(&s, "plaintextLength", "null");
	}
	json_add_text(&s, "problem", problem);
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
			reader_fail(r, 0, "%s", key_problem);
		}
		while (!r->failed && !r->done)
		{
			MemoryContextReset(r->chunkcxt);
			reader_next_chunk(r);
		}
	}

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	json_add_text(&s, "name", name);
	json_add_raw(&s, "valid", r->failed ? "false" : "true");
	json_add_raw(&s, "withKey", with_key ? "true" : "false");
	json_add_u64(&s, "chunksChecked", r->index);
	json_add_u64(&s, "storedLength", st.size);
	if (r->done)
	{
		json_add_u64(&s, "plaintextLength", r->plaintext_length);
		json_add_text(&s, "digest", bo_digest_name(r->digest));
		json_add_text(&s, "storedDigest", to_hex(r->stored_digest_out, r->dlen));
		json_add_text(&s, "plaintextDigest", with_key ? to_hex(r->plaintext_digest, r->dlen) : NULL);
		json_add_raw(&s, "firstFailingChunk", "null");
	}
	else
	{
		json_add_raw(&s, "plaintextLength", "null");
		json_add_text(&s, "digest", r->stored_digest ? bo_digest_name(r->digest) : NULL);
		json_add_raw(&s, "storedDigest", "null");
		json_add_raw(&s, "plaintextDigest", "null");
		json_add_u64(&s, "firstFailingChunk", r->fail_chunk);
	}
	json_add_text(&s, "problem", r->failed ? r->problem : NULL);
	bo_archive_reader_close(r);
	PG_RETURN_DATUM(json_finish(&s));
}
