/*-------------------------------------------------------------------------
 *
 * archive.h
 *		The archive container: a streaming, chunked, compressed, encrypted
 *		and digested object format, and its writer and reader.
 *
 * Every backup, change segment and export is stored as one container
 * object.  The format is open: this comment is the specification (the
 * README's "Archive format" section copies it), and an object can be
 * decoded with zstd, libsodium (or any AES-256-GCM / XChaCha20-Poly1305
 * implementation) and a SHA-2 or BLAKE3 implementation alone.
 *
 * Byte layout (all integers big-endian)
 * -------------------------------------
 *
 * Header:
 *	  magic				8 bytes  "\x89BOA\r\n\x1a\n"
 *	  format_version	u16		 1
 *	  header_length		u32		 length of the whole header, object_id included
 *	  flags				u16		 0
 *	  compression		u8		 0 none, 1 zstd
 *	  compression_level i8		 zstd level (1..19 or negative fast levels); 0 without compression
 *	  cipher			u8		 0 none, 1 AES-256-GCM, 2 XChaCha20-Poly1305
 *	  digest			u8		 1 SHA-256, 2 SHA-512, 3 BLAKE3 (32-byte output)
 *	  chunk_size		u32		 plaintext bytes per chunk, 64 KiB .. 64 MiB (default 1 MiB)
 *	  key_id			16 bytes random id of the object's data key; zeros without cipher
 *	  nonce_prefix		16 bytes random
 *	  object_id_length	u16
 *	  object_id			UTF-8, the object's identity (its storage name)
 *
 *	  H = SHA-256 of the header bytes (always SHA-256, whatever "digest" is).
 *	  D = the digest algorithm named by "digest"; |D| its length (32 or 64).
 *
 * Frame i (i = 0 .. n-1; an empty object has exactly one frame, with
 * plain_length 0):
 *	  stored_length		u32		 length of payload
 *	  plain_length		u32		 plaintext bytes of this chunk; chunk_size for
 *								 every frame but the last, 1..chunk_size for the
 *								 last (0 only for the single frame of an empty object)
 *	  kind				u8		 0 data, 1 final data (the last frame)
 *	  mode				u8		 0 raw, 1 one zstd frame (raw when compression is
 *								 off or did not make the chunk smaller)
 *	  payload			stored_length bytes: with a cipher, the AEAD ciphertext
 *								 of the body followed by its 16-byte tag; else the body
 *	  frame_digest		|D| bytes: D(H || u64(i) || the 10 frame-header bytes || payload)
 *
 * AEAD per frame:
 *	  key	= the object's 32-byte data key
 *	  nonce = nonce_prefix[0..3] || u64(i)		(AES-256-GCM, 12 bytes)
 *			  nonce_prefix[0..15] || u64(i)		(XChaCha20-Poly1305 IETF, 24 bytes)
 *	  AD	= H || u64(i) || u8 kind || u8 mode || u32 plain_length
 *
 * Trailer (follows frame n-1):
 *	  marker			u32		 0xFFFFFFFF (never a valid stored_length)
 *	  chunk_count		u64		 n
 *	  plaintext_length	u64
 *	  plaintext_digest	|D| bytes: D(all plaintext)
 *	  trailer_auth		with a cipher: the 16-byte AEAD tag of the empty message
 *						under nonce index n and AD = T; without: D(T), |D| bytes,
 *						where T = H || u64(n) || u8 2 || u64 chunk_count ||
 *						u64 plaintext_length || plaintext_digest
 *
 * Footer (the last 16 bytes):
 *	  trailer_offset	u64		 offset of the trailer's marker
 *	  end magic			8 bytes  "\x89BOAEND\n"
 *
 * The object's stored digest is D over every byte of the object, which is
 * what sha256sum, sha512sum or b3sum print for the file; manifests record
 * it.
 *
 * Wrapped data keys
 * -----------------
 * Each encrypted object has a fresh random 32-byte data key.  It is stored
 * beside the object, wrapped by a key-encryption key (KEK), as the small
 * write-once object "<object name>.key.<kek_id>":
 *	  magic "\x89BOK\r\n\x1a\n", version u16 = 1, kek_id_length u8, kek_id,
 *	  key_id 16 bytes, nonce 24 random bytes, and the XChaCha20-Poly1305
 *	  IETF ciphertext of the data key (32 + 16 bytes) under the KEK with
 *	  AD = magic || version || kek_id || key_id.
 * KEKs are files in backup_offline.key_directory: "<kek_id>.key" holding
 * exactly 32 random bytes, or "<kek_id>.passphrase" holding a passphrase
 * (one trailing newline removed) stretched with Argon2id v1.3, 3 passes,
 * 64 MiB, one lane, 32-byte output, salt = BLAKE2b with 16-byte output
 * (libsodium crypto_generichash, no key) of "backup_offline kek " || kek_id.
 * Rotation writes "<object name>.key.<new kek_id>" objects and never
 * rewrites data objects.
 *
 * Why the layout detects what it must
 * -----------------------------------
 *	- Nonces never repeat: every object has its own random data key, and
 *	  inside an object each frame (and the trailer, index n) has its own
 *	  index.
 *	- H is in every frame's AD and frame digest, so editing any header byte
 *	  (the cipher, the key id, the object identity, ...) fails chunk 0, and a
 *	  frame spliced from another object fails where it lands.
 *	- The index is in every AD and frame digest, so swapped or dropped
 *	  frames fail at the first displaced index.
 *	- The final flag is authenticated, so a cut at a chunk boundary is seen
 *	  as a missing final chunk, and the trailer binds the count, the length
 *	  and the plaintext digest.
 *	- Frame digests are keyed by nothing: verification without a key checks
 *	  every frame against accidental damage and names the first bad chunk;
 *	  against deliberate tampering only the AEAD (with the key) is proof.
 *
 * Two refinements over the first draft of this layout: frame digests
 * cover H and the index (over the frame bytes alone, a keyless check could
 * not see swapped or spliced frames, and an object without a cipher could
 * not see header edits), and the trailer_auth of an object without a
 * cipher covers T including H (the draft's digest of the trailer fields
 * alone left the header unauthenticated there).
 *
 * IDENTIFICATION
 *		src/archive/archive.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_ARCHIVE_H
#define BACKUP_OFFLINE_ARCHIVE_H

#include "lib/stringinfo.h"

#include "archive/digest.h"
#include "archive/format.h"	/* the constants and enums of the format */
#include "storage/storage.h"

/* How to write an object; bo_archive_options_init sets the defaults */
typedef struct BoArchiveOptions
{
	BoCompression compression;	/* default zstd */
	int			compression_level;	/* default 3 */
	BoCipher	cipher;			/* default auto */
	BoDigestAlgorithm digest;	/* default BLAKE3 */
	uint32		chunk_size;		/* default 1 MiB */
	const char *kek_id;			/* NULL: backup_offline.default_key_id */
	const char *object_id;		/* NULL: the storage name */
} BoArchiveOptions;

/* What a finished object is, for manifests */
typedef struct BoArchiveResult
{
	uint64		stored_length;	/* bytes of the object */
	uint64		plaintext_length;
	uint64		chunk_count;
	BoCompression compression;
	int			compression_level;
	BoCipher	cipher;			/* the cipher used (never auto) */
	BoDigestAlgorithm digest;
	int			digest_length;
	uint8		stored_digest[BO_DIGEST_MAX_LENGTH];	/* of the stored bytes */
	uint8		plaintext_digest[BO_DIGEST_MAX_LENGTH];
	uint8		key_id[BO_ARCHIVE_KEY_ID_LENGTH];	/* zeros without cipher */
	char		kek_id[BO_ARCHIVE_KEK_ID_MAX + 1];	/* "" without cipher */
} BoArchiveResult;

typedef struct BoArchiveWriter BoArchiveWriter;
typedef struct BoArchiveReader BoArchiveReader;

/* writing */
extern void bo_archive_options_init(BoArchiveOptions *options);
extern BoArchiveWriter *bo_archive_writer_begin(BoStorage *storage, const char *name,
												const BoArchiveOptions *options);
extern void bo_archive_write(BoArchiveWriter *writer, const void *data, size_t len);
extern void bo_archive_writer_finish(BoArchiveWriter *writer, BoArchiveResult *out);
extern void bo_archive_writer_abort(BoArchiveWriter *writer);

/*
 * Reading.  bo_archive_read returns authenticated plaintext only; the last
 * chunk's bytes are returned only after the trailer (count, length,
 * plaintext digest) has been verified too, so a caller that has received
 * all bytes has a verified object.  A damaged object raises ERROR
 * (data_corrupted) naming the first failing chunk.  object_id: the identity
 * expected in the header, NULL for the storage name.
 */
extern BoArchiveReader *bo_archive_reader_open(BoStorage *storage, const char *name,
											   const char *object_id);
extern size_t bo_archive_read(BoArchiveReader *reader, void *buf, size_t len);
extern void bo_archive_reader_result(BoArchiveReader *reader, BoArchiveResult *out);
extern void bo_archive_reader_close(BoArchiveReader *reader);

/* names of the algorithms as options and inspect_object spell them */
extern void bo_archive_parse_options(Jsonb *json, BoArchiveOptions *options);
extern Datum bo_archive_result_jsonb(const char *name, const BoArchiveResult *result);
extern void bo_archive_require_superuser(const char *what);
extern const char *bo_compression_name(BoCompression compression);
extern const char *bo_cipher_name(BoCipher cipher);

/* small output helpers, shared by the parts above archive */
extern char *bo_hex(const uint8 *data, size_t len);
extern void bo_json_add_key(StringInfo s, const char *key);
extern void bo_json_add_text(StringInfo s, const char *key, const char *value);
extern void bo_json_add_raw(StringInfo s, const char *key, const char *raw);
extern void bo_json_add_u64(StringInfo s, const char *key, uint64 value);

#endif							/* BACKUP_OFFLINE_ARCHIVE_H */
