/*-------------------------------------------------------------------------
 *
 * format.c
 *		The archive container's format core: header, frames, frame digests,
 *		AEAD, zstd, trailer and footer, on bytes, without the server.
 *
 * container.c used to hold this logic together with storage, keys, memory
 * contexts and ereport.  It is split out so that exactly the code the
 * server runs can be fuzzed as a plain program (test/fuzz): this file
 * compiles both as backend code (postgres.h) and as frontend code
 * (postgres_fe.h, with FRONTEND defined) and calls nothing of the server
 * but the UTF-8 check of src/common and the BoDigest API, which both
 * builds provide.
 *
 * The reader checks, in order, each frame's structure, its digest, its
 * AEAD tag and its decompressed length before any of its plaintext is
 * exposed; the final chunk's plaintext is exposed only once the trailer
 * and the footer are verified too.  The first failure stops reading and
 * is recorded with the index of the chunk that failed (n, the chunk count,
 * for the trailer and footer; 0 for the header) and a detail sentence;
 * the messages are part of the extension's interface (tests match them).
 *
 * Scratch buffers grow to the largest frame seen and are reused, so
 * memory depends on the chunk size, not on the object's size.
 *
 * IDENTIFICATION
 *		src/archive/format.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include <sodium.h>
#include <zstd.h>

#include "mb/pg_wchar.h"

#include "archive/digest.h"
#include "archive/format.h"

/*
 * Make buf hold at least size bytes (contents are not kept).
 */
static uint8 *
buffer_reserve(const BoFormatOps *ops, void *arg, BoFormatBuffer *buf, size_t size)
{
	if (size == 0)
		size = 1;
	if (buf->size < size)
	{
		if (buf->data != NULL)
			ops->free(arg, buf->data);
		buf->data = NULL;
		buf->size = 0;
		buf->data = ops->alloc(arg, size);
		buf->size = size;
	}
	return buf->data;
}

/*
 * Free a scratch buffer.
 */
static void
buffer_free(const BoFormatOps *ops, void *arg, BoFormatBuffer *buf)
{
	if (buf->data != NULL)
		ops->free(arg, buf->data);
	buf->data = NULL;
	buf->size = 0;
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
		bo_put_u64(nonce + 4, i);
		return 12;
	}
	memcpy(nonce, prefix, 16);
	bo_put_u64(nonce + 16, i);
	return 24;
}

/*
 * The associated data of frame i: H || u64(i) || kind || mode || u32 plain_length.
 */
static size_t
frame_ad(uint8 *ad, const uint8 *H, uint64 i, uint8 kind, uint8 mode, uint32 plain_length)
{
	memcpy(ad, H, BO_FORMAT_HEADER_HASH_LENGTH);
	bo_put_u64(ad + 32, i);
	ad[40] = kind;
	ad[41] = mode;
	bo_put_u32(ad + 42, plain_length);
	return 46;
}

/*
 * T, the authenticated trailer fields: H || u64(n) || 2 || u64 n ||
 * u64 plaintext_length || plaintext_digest.
 */
size_t
bo_format_trailer_ad(uint8 *ad, const uint8 *H, uint64 n, uint64 plaintext_length,
					 const uint8 *pdigest, int dlen)
{
	memcpy(ad, H, BO_FORMAT_HEADER_HASH_LENGTH);
	bo_put_u64(ad + 32, n);
	ad[40] = BO_FORMAT_KIND_TRAILER;
	bo_put_u64(ad + 41, n);
	bo_put_u64(ad + 49, plaintext_length);
	memcpy(ad + 57, pdigest, dlen);
	return 57 + dlen;
}

/*
 * Encrypt m (mlen bytes) into c (mlen + 16 bytes) under key and index i;
 * false if libsodium refuses.
 */
bool
bo_format_aead_seal(BoCipher cipher, const unsigned char *key, const uint8 *prefix, uint64 i,
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
	return rc == 0 && clen == mlen + BO_FORMAT_AEAD_TAG_LENGTH;
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

	if (clen < BO_FORMAT_AEAD_TAG_LENGTH)
		return false;
	aead_nonce(cipher, prefix, i, nonce);
	if (cipher == BO_CIPHER_AES256GCM)
		rc = crypto_aead_aes256gcm_decrypt(m, &mlen, NULL, c, clen, ad, adlen, nonce, key);
	else
		rc = crypto_aead_xchacha20poly1305_ietf_decrypt(m, &mlen, NULL, c, clen, ad, adlen,
														nonce, key);
	return rc == 0 && mlen == clen - BO_FORMAT_AEAD_TAG_LENGTH;
}

/*
 * D(H || u64(i) || frame header || payload): the digest closing frame i.
 */
void
bo_format_frame_digest(BoDigestAlgorithm alg, const uint8 *H, uint64 i, const uint8 *fh,
					   const void *payload, size_t len, uint8 *out)
{
	BoDigest   *d = bo_digest_create(alg);
	uint8		ibuf[8];

	bo_put_u64(ibuf, i);
	bo_digest_update(d, H, BO_FORMAT_HEADER_HASH_LENGTH);
	bo_digest_update(d, ibuf, 8);
	bo_digest_update(d, fh, BO_FORMAT_FRAME_HEADER_LENGTH);
	bo_digest_update(d, payload, len);
	bo_digest_final(d, out);
	bo_digest_free(d);
}

/*
 * SHA-256 of the header bytes.
 */
void
bo_format_header_hash(const uint8 *header, size_t len, uint8 *H)
{
	BoDigest   *d = bo_digest_create(BO_DIGEST_SHA256);

	bo_digest_update(d, header, len);
	bo_digest_final(d, H);
	bo_digest_free(d);
}

/* ---------------------------------------------------------------------
 * Writer
 * ---------------------------------------------------------------------
 */

/*
 * Append stored bytes to the object, and to its stored digest.
 */
static void
writer_emit(BoFormatWriter *w, const void *data, size_t len)
{
	w->ops->write(w->arg, data, len);
	bo_digest_update(w->stored_digest, data, len);
	w->stored_length += len;
}

/*
 * Build and write the header (identity object_id, oidlen bytes, at most
 * 65535, checked by the caller) and start the digests.
 */
void
bo_format_writer_begin(BoFormatWriter *w, const char *object_id, size_t oidlen)
{
	size_t		hlen = BO_FORMAT_HEADER_FIXED_LENGTH + oidlen;
	uint8	   *header = w->ops->alloc(w->arg, hlen);

	w->dlen = bo_digest_length(w->digest);
	w->index = 0;
	w->plaintext_length = 0;
	w->stored_length = 0;
	w->zstd_error = NULL;
	memset(header, 0, hlen);
	memcpy(header, BO_FORMAT_MAGIC, BO_FORMAT_MAGIC_LENGTH);
	bo_put_u16(header + 8, BO_ARCHIVE_FORMAT_VERSION);
	bo_put_u32(header + 10, (uint32) hlen);
	bo_put_u16(header + 14, 0);
	header[16] = (uint8) w->compression;
	header[17] = (uint8) (int8) w->level;
	header[18] = (uint8) w->cipher;
	header[19] = (uint8) w->digest;
	bo_put_u32(header + 20, w->chunk_size);
	memcpy(header + 24, w->key_id, BO_ARCHIVE_KEY_ID_LENGTH);
	memcpy(header + 40, w->nonce_prefix, BO_FORMAT_NONCE_PREFIX_LENGTH);
	bo_put_u16(header + 56, (uint16) oidlen);
	memcpy(header + 58, object_id, oidlen);
	bo_format_header_hash(header, hlen, w->H);

	w->stored_digest = bo_digest_create(w->digest);
	w->plain_digest = bo_digest_create(w->digest);
	writer_emit(w, header, hlen);
	w->ops->free(w->arg, header);
}

/*
 * Compress, encrypt, digest and write len bytes of plaintext (chunk_size
 * for every chunk but the final one) as frame w->index.
 */
BoFormatWriteResult
bo_format_writer_chunk(BoFormatWriter *w, const void *plain, uint32 len, bool final)
{
	size_t		cap = (w->compression == BO_COMPRESSION_ZSTD && len > 0) ? ZSTD_compressBound(len) : 0;
	uint8	   *cbuf = cap > 0 ? buffer_reserve(w->ops, w->arg, &w->cbuf, cap) : NULL;
	uint8	   *sealed = w->cipher != BO_CIPHER_NONE ?
		buffer_reserve(w->ops, w->arg, &w->sealed, (size_t) len + BO_FORMAT_AEAD_TAG_LENGTH) : NULL;
	uint8		fh[BO_FORMAT_FRAME_HEADER_LENGTH];
	const uint8 *payload;
	size_t		payload_len;
	BoFormatWriteResult rc;

	/* the same two halves the parallel pipeline runs, here back to back */
	rc = bo_format_frame_encode(w, w->cctx, w->index, plain, len, final, cbuf, cap, sealed,
								fh, &payload, &payload_len, &w->zstd_error);
	if (rc != BO_FORMAT_WRITE_OK)
		return rc;
	bo_format_writer_frame(w, fh, payload, payload_len, plain, len);
	return BO_FORMAT_WRITE_OK;
}

/*
 * The half of a frame that needs no digest and no allocation, for a
 * pipeline that encodes several chunks at once in threads: compress (with
 * cctx, a context of the caller's, single-threaded) and seal len bytes of
 * plaintext as frame index of the object w begins, into the caller's
 * buffers cbuf (ZSTD_compressBound(chunk_size) bytes) and sealed
 * (chunk_size + 16 bytes; unused without a cipher).  Reads only fields of w
 * that are constant after bo_format_writer_begin, calls no callback and
 * touches no digest, so threads may run it at once on different chunks.
 * On success fh holds the frame header and *payload (inside plain, cbuf or
 * sealed) the payload; bo_format_writer_frame writes them.
 * bo_format_writer_chunk, the serial path, is these two halves back to back.
 */
BoFormatWriteResult
bo_format_frame_encode(const BoFormatWriter *w, ZSTD_CCtx *cctx, uint64 index,
					   const void *plain, uint32 len, bool final,
					   uint8 *cbuf, size_t cbuf_size, uint8 *sealed,
					   uint8 *fh, const uint8 **payload, size_t *payload_len,
					   const char **zstd_error)
{
	const uint8 *body = (const uint8 *) plain;
	size_t		body_len = len;
	uint8		mode = BO_FORMAT_MODE_RAW;
	uint8		kind = final ? BO_FORMAT_KIND_FINAL : BO_FORMAT_KIND_DATA;

	if (w->compression == BO_COMPRESSION_ZSTD && len > 0)
	{
		size_t		ret = ZSTD_compress2(cctx, cbuf, cbuf_size, plain, len);

		if (ZSTD_isError(ret))
		{
			*zstd_error = ZSTD_getErrorName(ret);
			return BO_FORMAT_WRITE_ZSTD_ERROR;
		}
		if (ret < len)
		{
			body = cbuf;
			body_len = ret;
			mode = BO_FORMAT_MODE_ZSTD;
		}
	}

	if (w->cipher != BO_CIPHER_NONE)
	{
		uint8		ad[BO_FORMAT_AD_MAX_LENGTH];
		size_t		adlen = frame_ad(ad, w->H, index, kind, mode, len);

		if (!bo_format_aead_seal(w->cipher, w->data_key, w->nonce_prefix, index, ad, adlen,
								 body, body_len, sealed))
			return BO_FORMAT_WRITE_SEAL_ERROR;
		*payload = sealed;
		*payload_len = body_len + BO_FORMAT_AEAD_TAG_LENGTH;
	}
	else
	{
		*payload = body;
		*payload_len = body_len;
	}

	bo_put_u32(fh, (uint32) *payload_len);
	bo_put_u32(fh + 4, len);
	fh[8] = kind;
	fh[9] = mode;
	return BO_FORMAT_WRITE_OK;
}

/*
 * The other half: digest and write a frame bo_format_frame_encode made for
 * index w->index (the caller hands frames over strictly in order), with
 * its plaintext for the plaintext digest.
 */
void
bo_format_writer_frame(BoFormatWriter *w, const uint8 *fh, const uint8 *payload,
					   size_t payload_len, const void *plain, uint32 len)
{
	uint8		fd[BO_DIGEST_MAX_LENGTH];

	bo_format_frame_digest(w->digest, w->H, w->index, fh, payload, payload_len, fd);
	writer_emit(w, fh, BO_FORMAT_FRAME_HEADER_LENGTH);
	writer_emit(w, payload, payload_len);
	writer_emit(w, fd, w->dlen);
	bo_digest_update(w->plain_digest, plain, len);
	w->plaintext_length += len;
	w->index++;
}

/*
 * Write the trailer and the footer after the final chunk; finish the
 * plaintext and stored digests.
 */
BoFormatWriteResult
bo_format_writer_finish(BoFormatWriter *w)
{
	uint8		ad[BO_FORMAT_AD_MAX_LENGTH];
	size_t		adlen;
	uint8		buf[4 + 8 + 8];
	uint8		auth[BO_DIGEST_MAX_LENGTH];
	size_t		authlen;
	uint8		footer[BO_FORMAT_FOOTER_LENGTH];
	uint64		trailer_offset;
	uint64		n = w->index;

	bo_digest_final(w->plain_digest, w->plaintext_digest);
	adlen = bo_format_trailer_ad(ad, w->H, n, w->plaintext_length, w->plaintext_digest,
								 w->dlen);
	if (w->cipher != BO_CIPHER_NONE)
	{
		if (!bo_format_aead_seal(w->cipher, w->data_key, w->nonce_prefix, n, ad, adlen,
								 NULL, 0, auth))
			return BO_FORMAT_WRITE_SEAL_ERROR;
		authlen = BO_FORMAT_AEAD_TAG_LENGTH;
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
	bo_put_u32(buf, BO_FORMAT_TRAILER_MARKER);
	bo_put_u64(buf + 4, n);
	bo_put_u64(buf + 12, w->plaintext_length);
	writer_emit(w, buf, sizeof(buf));
	writer_emit(w, w->plaintext_digest, w->dlen);
	writer_emit(w, auth, authlen);
	bo_put_u64(footer, trailer_offset);
	memcpy(footer + 8, BO_FORMAT_END_MAGIC, BO_FORMAT_MAGIC_LENGTH);
	writer_emit(w, footer, BO_FORMAT_FOOTER_LENGTH);
	bo_digest_final(w->stored_digest, w->stored_digest_out);
	return BO_FORMAT_WRITE_OK;
}

/*
 * Free the writer's scratch buffers and digests (not the zstd context,
 * which the caller owns).
 */
void
bo_format_writer_release(BoFormatWriter *w)
{
	buffer_free(w->ops, w->arg, &w->cbuf);
	buffer_free(w->ops, w->arg, &w->sealed);
	bo_digest_free(w->stored_digest);
	w->stored_digest = NULL;
	bo_digest_free(w->plain_digest);
	w->plain_digest = NULL;
}

/* ---------------------------------------------------------------------
 * Reader
 * ---------------------------------------------------------------------
 */

/*
 * Set up a reader (no I/O yet).  decode: decrypt, decompress and check the
 * plaintext, which needs bo_format_reader_start; without it only the
 * structure, the frame digests and the trailer fields are checked.
 */
void
bo_format_reader_init(BoFormatReader *r, const BoFormatOps *ops, void *arg, bool decode)
{
	memset(r, 0, sizeof(*r));
	r->ops = ops;
	r->arg = arg;
	r->decode = decode;
}

/*
 * Record the first failure: chunk index and a detail sentence.  Returns
 * false for the caller to return.  Later failures are ignored.
 */
bool
bo_format_reader_fail(BoFormatReader *r, uint64 chunk, const char *fmt,...)
{
	va_list		args;
	int			needed;
	char	   *buf;

	r->plain = NULL;
	r->plain_len = 0;
	if (r->failed)
		return false;
	va_start(args, fmt);
	needed = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	if (needed < 0)
		needed = 0;
	buf = r->ops->alloc(r->arg, (size_t) needed + 1);
	buf[0] = '\0';
	va_start(args, fmt);
	vsnprintf(buf, (size_t) needed + 1, fmt, args);
	va_end(args);
	r->failed = true;
	r->fail_chunk = chunk;
	r->problem = buf;
	return false;
}

/*
 * Read up to len bytes at the current offset; everything read goes into
 * the stored digest.  Returns the bytes read (short only at the end).
 */
static size_t
reader_get(BoFormatReader *r, void *buf, size_t len)
{
	size_t		done = 0;

	while (done < len)
	{
		size_t		got = r->ops->read(r->arg, r->offset, (char *) buf + done, len - done);

		if (got == 0)
			break;
		bo_digest_update(r->stored_digest, (char *) buf + done, got);
		r->offset += got;
		done += got;
	}
	return done;
}

/*
 * Read up to len bytes at offset without digesting them (the header, read
 * before its digest algorithm is known, and the probe past the footer).
 */
static size_t
reader_peek(BoFormatReader *r, uint64 offset, void *buf, size_t len)
{
	size_t		done = 0;

	while (done < len)
	{
		size_t		got = r->ops->read(r->arg, offset + done, (char *) buf + done, len - done);

		if (got == 0)
			break;
		done += got;
	}
	return done;
}

/*
 * Read and check the header; false (failure at chunk 0) when it is not a
 * valid header of this format.  object_id: the identity expected, or NULL
 * to accept any.
 */
bool
bo_format_reader_header(BoFormatReader *r, const char *object_id)
{
	uint8		fixed[BO_FORMAT_HEADER_FIXED_LENGTH];
	uint8	   *header;
	size_t		got;
	uint16		version;
	uint16		oidlen;
	int			level;
	bool		zero_key;
	int			i;

	/* the stored digest starts once the header has named its algorithm */
	got = reader_peek(r, 0, fixed, BO_FORMAT_HEADER_FIXED_LENGTH);
	if (got >= BO_FORMAT_MAGIC_LENGTH && memcmp(fixed, BO_FORMAT_MAGIC, BO_FORMAT_MAGIC_LENGTH) != 0)
		return bo_format_reader_fail(r, 0, "The object does not begin with the archive magic number.");
	if (got < BO_FORMAT_HEADER_FIXED_LENGTH)
		return bo_format_reader_fail(r, 0, "The object ends inside its header (%zu bytes).", got);
	version = bo_get_u16(fixed + 8);
	if (version != BO_ARCHIVE_FORMAT_VERSION)
		return bo_format_reader_fail(r, 0, "The header's format version is %u; this build reads version %d.",
									 version, BO_ARCHIVE_FORMAT_VERSION);
	r->header_length = bo_get_u32(fixed + 10);
	oidlen = bo_get_u16(fixed + 56);
	if (r->header_length != BO_FORMAT_HEADER_FIXED_LENGTH + (uint32) oidlen)
		return bo_format_reader_fail(r, 0, "The header length %u does not match its object identity length %u.",
									 r->header_length, oidlen);
	if (bo_get_u16(fixed + 14) != 0)
		return bo_format_reader_fail(r, 0, "The header has unknown flags 0x%04x.", bo_get_u16(fixed + 14));
	if (fixed[16] > BO_COMPRESSION_ZSTD)
		return bo_format_reader_fail(r, 0, "The header names an unknown compression method %u.", fixed[16]);
	r->compression = (BoCompression) fixed[16];
	level = (int8) fixed[17];
	if (r->compression == BO_COMPRESSION_NONE ? level != 0 : (level == 0 || level > 19))
		return bo_format_reader_fail(r, 0, "The header's compression level %d is invalid.", level);
	r->level = level;
	if (fixed[18] > BO_CIPHER_XCHACHA20POLY1305)
		return bo_format_reader_fail(r, 0, "The header names an unknown cipher %u.", fixed[18]);
	r->cipher = (BoCipher) fixed[18];
	if (fixed[19] < BO_DIGEST_SHA256 || fixed[19] > BO_DIGEST_BLAKE3)
		return bo_format_reader_fail(r, 0, "The header names an unknown digest algorithm %u.", fixed[19]);
	r->digest = (BoDigestAlgorithm) fixed[19];
	r->dlen = bo_digest_length(r->digest);
	r->chunk_size = bo_get_u32(fixed + 20);
	if (r->chunk_size < BO_ARCHIVE_MIN_CHUNK_SIZE || r->chunk_size > BO_ARCHIVE_MAX_CHUNK_SIZE)
		return bo_format_reader_fail(r, 0, "The header's chunk size %u is out of range.", r->chunk_size);
	memcpy(r->key_id, fixed + 24, BO_ARCHIVE_KEY_ID_LENGTH);
	memcpy(r->nonce_prefix, fixed + 40, BO_FORMAT_NONCE_PREFIX_LENGTH);
	zero_key = true;
	for (i = 0; i < BO_ARCHIVE_KEY_ID_LENGTH; i++)
		if (r->key_id[i] != 0)
			zero_key = false;
	if (zero_key != (r->cipher == BO_CIPHER_NONE))
		return bo_format_reader_fail(r, 0, "The header's key id does not fit its cipher.");

	header = r->ops->alloc(r->arg, r->header_length);
	memcpy(header, fixed, BO_FORMAT_HEADER_FIXED_LENGTH);
	got = oidlen > 0 ? reader_peek(r, BO_FORMAT_HEADER_FIXED_LENGTH,
								   header + BO_FORMAT_HEADER_FIXED_LENGTH, oidlen) : 0;
	if (got < oidlen)
	{
		r->ops->free(r->arg, header);
		return bo_format_reader_fail(r, 0, "The object ends inside its header.");
	}
	if (pg_encoding_verifymbstr(PG_UTF8, (char *) header + BO_FORMAT_HEADER_FIXED_LENGTH, oidlen) != oidlen)
	{
		r->ops->free(r->arg, header);
		return bo_format_reader_fail(r, 0, "The header's object identity is not valid UTF-8.");
	}
	r->object_id = r->ops->alloc(r->arg, (size_t) oidlen + 1);
	memcpy(r->object_id, header + BO_FORMAT_HEADER_FIXED_LENGTH, oidlen);
	r->object_id[oidlen] = '\0';
	bo_format_header_hash(header, r->header_length, r->H);
	r->stored_digest = bo_digest_create(r->digest);
	bo_digest_update(r->stored_digest, header, r->header_length);
	r->offset = r->header_length;
	if (r->decode)
		r->plain_digest = bo_digest_create(r->digest);
	r->ops->free(r->arg, header);

	if (object_id != NULL && strcmp(object_id, r->object_id) != 0)
		return bo_format_reader_fail(r, 0, "The header names the object \"%s\", not \"%s\".",
									 r->object_id, object_id);
	return true;
}

/*
 * Prepare decoding after a valid header: the data key (the caller keeps
 * it alive while reading; NULL without a cipher) and a zstd context.
 * False, with no failure recorded, when the zstd context cannot be
 * allocated.
 */
bool
bo_format_reader_start(BoFormatReader *r, const unsigned char *data_key)
{
	r->data_key = data_key;
	if (r->decode && r->compression == BO_COMPRESSION_ZSTD && r->dctx == NULL)
	{
		r->dctx = ZSTD_createDCtx();
		if (r->dctx == NULL)
			return false;
	}
	return true;
}

/*
 * Read and verify the trailer and the footer after the final chunk.
 */
static bool
reader_trailer(BoFormatReader *r)
{
	uint64		n = r->index;
	uint64		trailer_offset = r->offset;
	size_t		authlen = r->cipher != BO_CIPHER_NONE ? BO_FORMAT_AEAD_TAG_LENGTH : r->dlen;
	size_t		total = 4 + 8 + 8 + r->dlen + authlen;
	uint8		buf[4 + 8 + 8 + 2 * BO_DIGEST_MAX_LENGTH];
	uint8		ad[BO_FORMAT_AD_MAX_LENGTH];
	size_t		adlen;
	const uint8 *pdigest = buf + 20;
	const uint8 *auth = buf + 20 + r->dlen;
	uint8		footer[BO_FORMAT_FOOTER_LENGTH];
	uint8		probe;
	size_t		got;

	got = reader_get(r, buf, total);
	if (got < 4)
		return bo_format_reader_fail(r, n, "The object ends after its final chunk " UINT64_FORMAT ", before the trailer.",
									 n - 1);
	if (bo_get_u32(buf) != BO_FORMAT_TRAILER_MARKER)
		return bo_format_reader_fail(r, n, "Data follows the final chunk " UINT64_FORMAT " where the trailer should begin.",
									 n - 1);
	if (got < total)
		return bo_format_reader_fail(r, n, "The object ends inside its trailer.");
	if (bo_get_u64(buf + 4) != n)
		return bo_format_reader_fail(r, n, "The trailer counts " UINT64_FORMAT " chunks; the object has " UINT64_FORMAT ".",
									 bo_get_u64(buf + 4), n);
	if (bo_get_u64(buf + 12) != r->plaintext_length)
		return bo_format_reader_fail(r, n, "The trailer gives a plaintext length of " UINT64_FORMAT " bytes; the chunks hold " UINT64_FORMAT ".",
									 bo_get_u64(buf + 12), r->plaintext_length);
	adlen = bo_format_trailer_ad(ad, r->H, n, r->plaintext_length, pdigest, r->dlen);
	if (r->cipher != BO_CIPHER_NONE)
	{
		uint8		empty[1];

		if (r->decode &&
			!aead_open(r->cipher, r->data_key, r->nonce_prefix, n, ad, adlen, auth,
					   BO_FORMAT_AEAD_TAG_LENGTH, empty))
			return bo_format_reader_fail(r, n, "The trailer does not authenticate under the object's data key.");
	}
	else
	{
		uint8		expect[BO_DIGEST_MAX_LENGTH];
		BoDigest   *d = bo_digest_create(r->digest);

		bo_digest_update(d, ad, adlen);
		bo_digest_final(d, expect);
		bo_digest_free(d);
		if (memcmp(expect, auth, r->dlen) != 0)
			return bo_format_reader_fail(r, n, "The trailer's digest does not match its fields.");
	}
	if (r->decode)
	{
		uint8		computed[BO_DIGEST_MAX_LENGTH];

		bo_digest_final(r->plain_digest, computed);
		if (memcmp(computed, pdigest, r->dlen) != 0)
			return bo_format_reader_fail(r, n, "The digest of the plaintext does not match the trailer.");
	}
	memcpy(r->plaintext_digest, pdigest, r->dlen);

	got = reader_get(r, footer, BO_FORMAT_FOOTER_LENGTH);
	if (got < BO_FORMAT_FOOTER_LENGTH)
		return bo_format_reader_fail(r, n, "The object ends inside its footer.");
	if (memcmp(footer + 8, BO_FORMAT_END_MAGIC, BO_FORMAT_MAGIC_LENGTH) != 0)
		return bo_format_reader_fail(r, n, "The footer's end magic number is wrong.");
	if (bo_get_u64(footer) != trailer_offset)
		return bo_format_reader_fail(r, n, "The footer places the trailer at offset " UINT64_FORMAT "; it is at " UINT64_FORMAT ".",
									 bo_get_u64(footer), trailer_offset);
	if (reader_peek(r, r->offset, &probe, 1) != 0)
		return bo_format_reader_fail(r, n, "Data follows the footer.");
	bo_digest_final(r->stored_digest, r->stored_digest_out);
	r->done = true;
	return true;
}

/*
 * Read, check and (when decoding) decrypt and decompress the next frame;
 * after the final one, the trailer too.  On success the chunk's verified
 * plaintext is in r->plain (valid until the next call).
 */
bool
bo_format_reader_next_chunk(BoFormatReader *r)
{
	uint64		i = r->index;
	uint8		fh[BO_FORMAT_FRAME_HEADER_LENGTH];
	uint8		fd[BO_DIGEST_MAX_LENGTH];
	uint8		expect[BO_DIGEST_MAX_LENGTH];
	uint32		stored_length;
	uint32		plain_length;
	uint8		kind;
	uint8		mode;
	size_t		tag = r->cipher != BO_CIPHER_NONE ? BO_FORMAT_AEAD_TAG_LENGTH : 0;
	size_t		max_body;
	size_t		body_len;
	uint8	   *payload;
	size_t		got;

	r->plain = NULL;
	r->plain_len = 0;
	if (r->failed || r->done)
		return false;
	got = reader_get(r, fh, 4);
	if (got == 0)
		return i == 0 ? bo_format_reader_fail(r, 0, "The object ends after its header.")
			: bo_format_reader_fail(r, i, "The object ends before chunk " UINT64_FORMAT "; chunk " UINT64_FORMAT " is not marked final.",
									i, i - 1);
	if (got < 4)
		return bo_format_reader_fail(r, i, "The object ends inside the frame header of chunk " UINT64_FORMAT ".", i);
	stored_length = bo_get_u32(fh);
	if (stored_length == BO_FORMAT_TRAILER_MARKER)
		return bo_format_reader_fail(r, i, "A trailer begins where chunk " UINT64_FORMAT " should: no final chunk precedes it.", i);
	if (reader_get(r, fh + 4, 6) < 6)
		return bo_format_reader_fail(r, i, "The object ends inside the frame header of chunk " UINT64_FORMAT ".", i);
	plain_length = bo_get_u32(fh + 4);
	kind = fh[8];
	mode = fh[9];

	max_body = r->chunk_size;
	if (r->compression == BO_COMPRESSION_ZSTD)
		max_body = Max(max_body, ZSTD_compressBound(r->chunk_size));
	if (stored_length < tag || stored_length - tag > max_body)
		return bo_format_reader_fail(r, i, "The frame header of chunk " UINT64_FORMAT " gives an impossible stored length %u.",
									 i, stored_length);
	body_len = stored_length - tag;

	payload = buffer_reserve(r->ops, r->arg, &r->payload, stored_length);
	if (reader_get(r, payload, stored_length) < stored_length ||
		reader_get(r, fd, r->dlen) < (size_t) r->dlen)
		return bo_format_reader_fail(r, i, "The object ends inside chunk " UINT64_FORMAT ".", i);
	bo_format_frame_digest(r->digest, r->H, i, fh, payload, stored_length, expect);
	if (memcmp(expect, fd, r->dlen) != 0)
		return bo_format_reader_fail(r, i, "The frame digest of chunk " UINT64_FORMAT " does not match its bytes (the chunk, the header or the chunk order was changed).", i);

	/* the frame is as written; is it a frame this writer could have made? */
	if (kind != BO_FORMAT_KIND_DATA && kind != BO_FORMAT_KIND_FINAL)
		return bo_format_reader_fail(r, i, "Chunk " UINT64_FORMAT " has an unknown kind %u.", i, kind);
	if (mode != BO_FORMAT_MODE_RAW &&
		!(mode == BO_FORMAT_MODE_ZSTD && r->compression == BO_COMPRESSION_ZSTD))
		return bo_format_reader_fail(r, i, "Chunk " UINT64_FORMAT " has an invalid mode %u.", i, mode);
	if (kind == BO_FORMAT_KIND_DATA && plain_length != r->chunk_size)
		return bo_format_reader_fail(r, i, "Chunk " UINT64_FORMAT " is not final but holds %u bytes instead of %u.",
									 i, plain_length, r->chunk_size);
	if (plain_length > r->chunk_size || (plain_length == 0 && i > 0))
		return bo_format_reader_fail(r, i, "Chunk " UINT64_FORMAT " holds an impossible %u bytes.", i, plain_length);
	if (mode == BO_FORMAT_MODE_RAW && body_len != plain_length)
		return bo_format_reader_fail(r, i, "Raw chunk " UINT64_FORMAT " stores %zu bytes for %u.", i, body_len, plain_length);
	if (mode == BO_FORMAT_MODE_ZSTD && body_len == 0)
		return bo_format_reader_fail(r, i, "Compressed chunk " UINT64_FORMAT " is empty.", i);

	if (r->decode)
	{
		uint8	   *body = payload;
		char	   *plain;

		if (r->cipher != BO_CIPHER_NONE)
		{
			uint8		ad[BO_FORMAT_AD_MAX_LENGTH];
			size_t		adlen = frame_ad(ad, r->H, i, kind, mode, plain_length);

			body = buffer_reserve(r->ops, r->arg, &r->body, body_len);
			if (!aead_open(r->cipher, r->data_key, r->nonce_prefix, i, ad, adlen,
						   payload, stored_length, body))
				return bo_format_reader_fail(r, i, "Chunk " UINT64_FORMAT " does not authenticate under the object's data key.", i);
		}
		if (mode == BO_FORMAT_MODE_ZSTD)
		{
			size_t		ret;

			plain = (char *) buffer_reserve(r->ops, r->arg, &r->plainbuf, plain_length);
			ret = ZSTD_decompressDCtx(r->dctx, plain, plain_length, body, body_len);
			if (ZSTD_isError(ret))
				return bo_format_reader_fail(r, i, "Chunk " UINT64_FORMAT " does not decompress: %s.", i,
											 ZSTD_getErrorName(ret));
			if (ret != plain_length)
				return bo_format_reader_fail(r, i, "Chunk " UINT64_FORMAT " decompresses to %zu bytes instead of %u.",
											 i, ret, plain_length);
		}
		else
			plain = (char *) body;
		bo_digest_update(r->plain_digest, plain, plain_length);
		r->plain = plain;
		r->plain_len = plain_length;
	}
	r->plaintext_length += plain_length;
	r->index++;
	if (kind == BO_FORMAT_KIND_FINAL)
		return reader_trailer(r);
	return true;
}

/*
 * Free everything the reader allocated: scratch buffers, digests, the
 * object identity, the failure text and the zstd context.  (The data key
 * belongs to the caller.)
 */
void
bo_format_reader_release(BoFormatReader *r)
{
	buffer_free(r->ops, r->arg, &r->payload);
	buffer_free(r->ops, r->arg, &r->body);
	buffer_free(r->ops, r->arg, &r->plainbuf);
	if (r->dctx != NULL)
		ZSTD_freeDCtx(r->dctx);
	r->dctx = NULL;
	bo_digest_free(r->stored_digest);
	r->stored_digest = NULL;
	bo_digest_free(r->plain_digest);
	r->plain_digest = NULL;
	if (r->object_id != NULL)
		r->ops->free(r->arg, r->object_id);
	r->object_id = NULL;
	if (r->problem != NULL)
		r->ops->free(r->arg, r->problem);
	r->problem = NULL;
	r->plain = NULL;
	r->plain_len = 0;
}
