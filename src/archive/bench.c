/*-------------------------------------------------------------------------
 *
 * bench.c
 *		Superuser-only entry points that stream server files through the
 *		archive writer and reader: archive_put_file and archive_get_file.
 *
 * archive_put and archive_get (container.c) take and return the whole
 * plaintext as one bytea, so they cannot handle objects of 1 GB or more,
 * and their memory grows with the object.  The large round-trip scenario
 * (test/scenario/archive_large.sh) and the archive benchmark
 * (test/bench/archive.sh) need neither limit: these functions read a
 * plaintext file in 1 MiB pieces into bo_archive_write, and write the
 * verified plaintext of bo_archive_read to a new file in 1 MiB pieces, so
 * the backend's memory is the writer's or reader's (one chunk and its
 * forms) plus one buffer, whatever the size.
 *
 * Both paths are server paths confined to backup_offline.allowed_paths
 * (bo_confine_path), like every path the server touches for backups; the
 * output file is created (never replaced) with mode 0600 and removed
 * again when anything fails, so an error never leaves a partial plaintext
 * behind.  Plaintext and server files: superuser only (checked here too).
 *
 * IDENTIFICATION
 *		src/archive/bench.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/wait_event.h"

#include "backup_offline.h"
#include "archive/archive.h"
#include "archive/keys.h"
#include "storage/paths.h"
#include "storage/storage.h"

PG_FUNCTION_INFO_V1(bo_archive_put_file_sql);
PG_FUNCTION_INFO_V1(bo_archive_get_file_sql);

/* bytes per read(2) of the input and per bo_archive_read of the output */
#define BENCH_IO_SIZE (1024 * 1024)

/* the JSON path of the file argument in errors */
#define BENCH_FIELD "path"

/*
 * Raise an error unless the caller is a superuser.
 */
static void
bench_require_superuser(const char *what)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser to %s", what)));
}

/*
 * Read the options of archive_put_file from a JSON object: compression,
 * level, cipher, digest, chunkSize, keyId, spelled and checked as
 * archive_put spells and checks them.
 */
static void
bench_parse_options(Jsonb *json, BoArchiveOptions *o)
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
		(void) JsonbIteratorNext(&it, &val, true);
		if (val.type == jbvString)
			str = pnstrdup(val.val.string.val, val.val.string.len);

		if (strcmp(key, "level") == 0 || strcmp(key, "chunkSize") == 0)
		{
			int64		n;

			if (val.type != jbvNumeric)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid options.%s: a number is required", key)));
			n = DatumGetInt64(DirectFunctionCall1(numeric_int8,
												  NumericGetDatum(val.val.numeric)));
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
 * Hex of len bytes (palloc'd).
 */
static char *
bench_hex(const uint8 *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char	   *out = palloc(len * 2 + 1);
	size_t		i;

	for (i = 0; i < len; i++)
	{
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 0x0f];
	}
	out[len * 2] = '\0';
	return out;
}

/*
 * Append "key": "value" (or null) to a JSON object under construction.
 */
static void
bench_json_text(StringInfo s, const char *key, const char *value)
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
 * Append "key": number to a JSON object under construction.
 */
static void
bench_json_number(StringInfo s, const char *key, int64 value)
{
	if (s->len > 1)
		appendStringInfoString(s, ", ");
	escape_json(s, key);
	appendStringInfo(s, ": " INT64_FORMAT, value);
}

/*
 * Open the confined server file "path" for reading; it must be a regular
 * file.
 */
static int
bench_open_input(const char *path)
{
	int			fd;
	struct stat st;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a regular file", path)));
	return fd;
}

/*
 * backup_offline.archive_put_file(storage jsonb, name text, path text,
 *		options jsonb DEFAULT '{}') RETURNS jsonb
 *
 * Write the server file "path" (under backup_offline.allowed_paths) as the
 * archive object "name", streaming it in 1 MiB pieces; returns what
 * archive_put returns (sizes, chunk count, digests, key ids).
 */
Datum
bo_archive_put_file_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *dest = PG_GETARG_JSONB_P(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(2));
	Jsonb	   *opts = PG_GETARG_JSONB_P(3);
	BoArchiveOptions o;
	BoArchiveWriter *w;
	BoArchiveResult res;
	BoStorage  *storage;
	StringInfoData s;
	char	   *buf;
	int			fd;

	bench_require_superuser("write archive objects from server files");
	bench_parse_options(opts, &o);
	path = bo_confine_path(path, BENCH_FIELD);
	storage = bo_storage_open(dest);
	fd = bench_open_input(path);
	buf = palloc(BENCH_IO_SIZE);

	w = bo_archive_writer_begin(storage, name, &o);
	for (;;)
	{
		ssize_t		n;

		CHECK_FOR_INTERRUPTS();
		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		n = read(fd, buf, BENCH_IO_SIZE);
		pgstat_report_wait_end();
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", path)));
		}
		if (n == 0)
			break;
		bo_archive_write(w, buf, (size_t) n);
	}
	bo_archive_writer_finish(w, &res);
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", path)));
	pfree(buf);

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	bench_json_text(&s, "name", name);
	bench_json_number(&s, "storedLength", (int64) res.stored_length);
	bench_json_number(&s, "plaintextLength", (int64) res.plaintext_length);
	bench_json_number(&s, "chunkCount", (int64) res.chunk_count);
	bench_json_text(&s, "compression", bo_compression_name(res.compression));
	bench_json_number(&s, "compressionLevel", res.compression_level);
	bench_json_text(&s, "cipher", bo_cipher_name(res.cipher));
	bench_json_text(&s, "digest", bo_digest_name(res.digest));
	bench_json_text(&s, "storedDigest", bench_hex(res.stored_digest, res.digest_length));
	bench_json_text(&s, "plaintextDigest", bench_hex(res.plaintext_digest, res.digest_length));
	bench_json_text(&s, "keyId", res.cipher != BO_CIPHER_NONE ?
					bench_hex(res.key_id, BO_ARCHIVE_KEY_ID_LENGTH) : NULL);
	bench_json_text(&s, "wrappedBy", res.cipher != BO_CIPHER_NONE ? res.kek_id : NULL);
	appendStringInfoChar(&s, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(s.data)));
}

/*
 * Write len bytes to the output file; a short write without an error is a
 * full disk, as in PostgreSQL's own file writes.
 */
static void
bench_write_all(int fd, const char *path, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n;

		errno = 0;
		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		n = write(fd, data, len);
		pgstat_report_wait_end();
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", path)));
		}
		data += n;
		len -= n;
	}
}

/*
 * backup_offline.archive_get_file(storage jsonb, name text, path text)
 *		RETURNS bigint
 *
 * Write the verified plaintext of the archive object "name" to the new
 * server file "path" (under backup_offline.allowed_paths, never replacing
 * a file), streaming it in 1 MiB pieces; returns the plaintext length.  A
 * damaged object raises the reader's error and removes the file.
 */
Datum
bo_archive_get_file_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *dest = PG_GETARG_JSONB_P(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(2));
	BoStorage  *storage;
	BoArchiveReader *r;
	char	   *buf;
	volatile int64 total = 0;
	int			fd;

	bench_require_superuser("read archive objects into server files");
	path = bo_confine_path(path, BENCH_FIELD);
	storage = bo_storage_open(dest);
	r = bo_archive_reader_open(storage, name, NULL);
	buf = palloc(BENCH_IO_SIZE);

	fd = OpenTransientFilePerm(path, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY,
							   S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", path)));

	/* from here on the file is ours: any error removes it */
	PG_TRY();
	{
		size_t		n;

		while ((n = bo_archive_read(r, buf, BENCH_IO_SIZE)) > 0)
		{
			bench_write_all(fd, path, buf, n);
			total += n;
		}
		if (CloseTransientFile(fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not close file \"%s\": %m", path)));
	}
	PG_CATCH();
	{
		/* the descriptor is closed by the abort (fd.c) */
		(void) unlink(path);
		PG_RE_THROW();
	}
	PG_END_TRY();

	bo_archive_reader_close(r);
	pfree(buf);
	PG_RETURN_INT64(total);
}
