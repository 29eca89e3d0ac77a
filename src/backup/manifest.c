/*-------------------------------------------------------------------------
 *
 * manifest.c
 *		Snapshot manifests: the trailing self-checksum, reading and parsing.
 *
 * A manifest is one JSON object (README "Backups: the manifest") stored
 * as the archive object "backup_manifest" of its snapshot, written after
 * every other object of the snapshot: it is the commit point.  Like
 * PostgreSQL's backup_manifest it ends with its own checksum: the last
 * member is
 *
 *		, "manifestChecksum": "<64 hex digits>"}
 *
 * where the digits are the SHA-256 (pg_cryptohash) of every byte of the
 * manifest before the ", " that precedes "manifestChecksum".  So a
 * manifest can be checked without the catalog and without our code:
 * `head -c -<n> | sha256sum`.
 *
 * IDENTIFICATION
 *		src/backup/manifest.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "backup/backup.h"

#define CHECKSUM_KEY ", \"manifestChecksum\": \""

static void
sha256_hex(const char *data, size_t len, char *out)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	hex_encode((const char *) digest, PG_SHA256_DIGEST_LENGTH, out);
	out[PG_SHA256_DIGEST_LENGTH * 2] = '\0';
}

/*
 * Close the manifest body (an open JSON object) with its checksum; returns
 * the whole manifest.
 */
char *
bo_manifest_finish(StringInfo body)
{
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];

	sha256_hex(body->data, body->len, hex);
	appendStringInfo(body, "%s%s\"}\n", CHECKSUM_KEY, hex);
	return body->data;
}

/*
 * Check a manifest's checksum and parse it; what: how to name it in
 * errors.
 */
Jsonb *
bo_manifest_parse(const char *text, size_t len, const char *what)
{
	const char *p = NULL;
	const char *s;
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	char	   *copy;

	/* the last occurrence of the checksum key */
	for (s = text; (s = memmem(s, len - (s - text), CHECKSUM_KEY, strlen(CHECKSUM_KEY))) != NULL; s++)
		p = s;
	if (p == NULL || (size_t) (text + len - p) < strlen(CHECKSUM_KEY) + PG_SHA256_DIGEST_LENGTH * 2 + 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s has no manifest checksum", what)));
	sha256_hex(text, p - text, hex);
	if (memcmp(hex, p + strlen(CHECKSUM_KEY), PG_SHA256_DIGEST_LENGTH * 2) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s does not match its manifest checksum", what),
				 errdetail("Computed %s, recorded %.*s.", hex, PG_SHA256_DIGEST_LENGTH * 2,
						   p + strlen(CHECKSUM_KEY))));
	copy = pnstrdup(text, len);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(copy)));
}

/*
 * The verified plaintext of a stored manifest object (NUL-terminated);
 * *len its length; *authenticated (when not NULL): whether the reader
 * authenticated it with a key (an object with a cipher decrypts only with a
 * key of key_directory, its AEAD tags; one without is checked by digests
 * anybody who can write to the storage can compute).
 */
char *
bo_manifest_read(BoStorage *storage, const char *name, size_t *len, bool *authenticated)
{
	BoArchiveReader *r = bo_archive_reader_open(storage, name, NULL);
	StringInfoData s;
	char		buf[65536];
	size_t		n;

	initStringInfo(&s);
	while ((n = bo_archive_read(r, buf, sizeof(buf))) > 0)
	{
		if (s.len + n > MaxAllocSize / 2)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("manifest \"%s\" is too large", name)));
		appendBinaryStringInfo(&s, buf, n);
	}
	if (authenticated != NULL)
	{
		BoArchiveResult result;

		bo_archive_reader_result(r, &result);
		*authenticated = result.cipher != BO_CIPHER_NONE;
	}
	bo_archive_reader_close(r);
	*len = s.len;
	return s.data;
}
