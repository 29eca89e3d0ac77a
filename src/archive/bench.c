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
	char	   *buf;
	int			fd;

	bo_archive_require_superuser("write archive objects from server files");
	bo_archive_parse_options(opts, &o);
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

	PG_RETURN_DATUM(bo_archive_result_jsonb(name, &res));
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

	bo_archive_require_superuser("read archive objects into server files");
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
