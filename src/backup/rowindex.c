/*-------------------------------------------------------------------------
 *
 * rowindex.c
 *		The row index: what each backed-up heap page held, kept locally so
 *		that INCREMENTAL and DIFFERENTIAL backups cost what changed.
 *
 * For every snapshot and table, a file
 *		$PGDATA/pg_backup_offline/<snapshot id>/<table oid>.idx
 * lists, for each heap page the snapshot read, the row versions it backed
 * up: line pointer, raw xmin (together they name a row version: a heap
 * tuple is never changed in place, and a line pointer is reused only by a
 * later transaction), the XXH3-128 of the encoded row, and the encoded
 * primary key.  A FULL (or a table copied whole) writes every page; an
 * incremental writes the pages it read again, including pages now empty.
 * The index "as of" snapshot P is the newest record of each page along
 * P's chain, back to the last whole copy, among pages below the table's
 * size at every later snapshot (vacuum truncation drops pages).
 *
 * An incremental compares, page by page, the row versions visible now
 * with the index of its parent: versions that are gone are deletes (by
 * key), new versions are upserts.  Pages whose LSN is at or below the
 * parent's change threshold are not read at all (snapshot.c explains the
 * threshold).  Rule 1 (the repository describes itself) is untouched: the
 * index is never needed to restore, only to take the next incremental;
 * when it is missing (another server, a deleted file) or does not match
 * (a rewritten table, changed columns) the incremental copies the table
 * whole, and the manifest says why.
 *
 * File layout (integers in native byte order: the file never leaves the
 * server that wrote it):
 *		"BOIDX001" | u32 relfilenode | u32 nblocks | u8 whole |
 *		u8 fingerprint length | fingerprint |
 *		records: u32 block | u16 count | count x (u16 offset | u32 xmin |
 *				 16-byte row hash | u16 key length | key) |
 *		u32 0xFFFFFFFF | u32 CRC-32C of everything before it
 * written to a temporary name, fsynced and renamed (durable_rename).
 *
 * IDENTIFICATION
 *		src/backup/rowindex.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "backup/backup.h"

#define INDEX_MAGIC "BOIDX001"
#define INDEX_END 0xFFFFFFFFu
#define INDEX_BUFSIZE (256 * 1024)

struct BoIndexWriter
{
	char	   *path;
	char	   *tmppath;
	int			fd;
	pg_crc32c	crc;
	StringInfoData buf;
};

/* one file of a chain, read sequentially */
typedef struct BoIndexFile
{
	char	   *path;
	int			fd;				/* open while records are read */
	char	   *buf;			/* INDEX_BUFSIZE bytes of the file */
	size_t		len;			/* valid bytes in buf */
	size_t		pos;			/* next byte in buf */
	uint64		remaining;		/* bytes of records not yet in buf */
	BlockNumber nblocks;
	BlockNumber valid_below;	/* records at or above are dropped */
	bool		has_record;		/* next record read into below */
	BlockNumber next_block;
	int			next_count;
	BoIndexEntry *next_entries;
	MemoryContext cxt;			/* entries of the current record */
} BoIndexFile;

struct BoIndexChain
{
	MemoryContext cxt;			/* everything of the chain */
	int			nall;
	BoIndexFile *all;			/* one per snapshot of the chain, some unused */
	int			nfiles;
	BoIndexFile *files;			/* those in use, oldest (the whole copy) first */
};

/* longest chain of index files an incremental reads for one table */
#define BO_INDEX_CHAIN_MAX 32

char *
bo_index_dir(const char *snapshot_id)
{
	return psprintf("%s/pg_backup_offline/%s", DataDir, snapshot_id);
}

static char *
index_path(const char *snapshot_id, Oid relid)
{
	return psprintf("%s/%u.idx", bo_index_dir(snapshot_id), relid);
}

/* remove a snapshot's index directory (no error when it is missing) */
void
bo_index_remove(const char *snapshot_id)
{
	char	   *dir = bo_index_dir(snapshot_id);
	struct stat st;

	if (stat(dir, &st) == 0)
	{
		if (!rmtree(dir, true))
			ereport(WARNING,
					(errmsg("could not remove row index directory \"%s\"", dir)));
	}
}

/* ---------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------
 */
static void
writer_flush(BoIndexWriter *w)
{
	if (w->buf.len == 0)
		return;
	errno = 0;
	if (write(w->fd, w->buf.data, w->buf.len) != w->buf.len)
	{
		if (errno == 0)
			errno = ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write row index \"%s\": %m", w->tmppath)));
	}
	resetStringInfo(&w->buf);
}

static void
writer_put(BoIndexWriter *w, const void *data, size_t len)
{
	COMP_CRC32C(w->crc, data, len);
	appendBinaryStringInfo(&w->buf, data, len);
	if (w->buf.len >= INDEX_BUFSIZE)
		writer_flush(w);
}

BoIndexWriter *
bo_index_begin(const char *snapshot_id, Oid relid, Oid relfilenode, BlockNumber nblocks,
			   bool whole, const char *fingerprint)
{
	BoIndexWriter *w = palloc0(sizeof(BoIndexWriter));
	char	   *top = psprintf("%s/pg_backup_offline", DataDir);
	char	   *dir = bo_index_dir(snapshot_id);
	uint32		u;
	uint8		b;

	if (MakePGDirectory(top) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", top)));
	if (MakePGDirectory(dir) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
	w->path = index_path(snapshot_id, relid);
	w->tmppath = psprintf("%s.tmp", w->path);
	w->fd = OpenTransientFile(w->tmppath, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (w->fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create row index \"%s\": %m", w->tmppath)));
	INIT_CRC32C(w->crc);
	initStringInfo(&w->buf);
	writer_put(w, INDEX_MAGIC, 8);
	u = relfilenode;
	writer_put(w, &u, 4);
	u = nblocks;
	writer_put(w, &u, 4);
	b = whole ? 1 : 0;
	writer_put(w, &b, 1);
	b = (uint8) Min(strlen(fingerprint), 255);
	writer_put(w, &b, 1);
	writer_put(w, fingerprint, b);
	return w;
}

void
bo_index_block(BoIndexWriter *w, BlockNumber block, const BoIndexEntry *entries, int count)
{
	uint32		u = block;
	uint16		n = (uint16) count;
	int			i;

	writer_put(w, &u, 4);
	writer_put(w, &n, 2);
	for (i = 0; i < count; i++)
	{
		const BoIndexEntry *e = &entries[i];

		writer_put(w, &e->offset, 2);
		writer_put(w, &e->xmin, 4);
		writer_put(w, e->hash, 16);
		writer_put(w, &e->keylen, 2);
		writer_put(w, e->key, e->keylen);
	}
}

void
bo_index_finish(BoIndexWriter *w)
{
	uint32		end = INDEX_END;
	pg_crc32c	crc;

	writer_put(w, &end, 4);
	crc = w->crc;
	FIN_CRC32C(crc);
	appendBinaryStringInfo(&w->buf, (char *) &crc, 4);
	writer_flush(w);
	if (pg_fsync(w->fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync row index \"%s\": %m", w->tmppath)));
	CloseTransientFile(w->fd);
	w->fd = -1;
	durable_rename(w->tmppath, w->path, ERROR);
}

/* ---------------------------------------------------------------------
 * Reading a chain
 * ---------------------------------------------------------------------
 */
/* fill the buffer again, keeping its unread bytes */
static void
file_refill(BoIndexFile *f)
{
	size_t		keep = f->len - f->pos;
	size_t		want;
	ssize_t		got;

	memmove(f->buf, f->buf + f->pos, keep);
	f->len = keep;
	f->pos = 0;
	want = Min((uint64) (INDEX_BUFSIZE - keep), f->remaining);
	if (want == 0)
		return;
	got = read(f->fd, f->buf + keep, want);
	if (got != (ssize_t) want)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read row index \"%s\": %m", f->path)));
	f->len += want;
	f->remaining -= want;
}

/* the next n bytes (n <= INDEX_BUFSIZE / 2), or NULL at the end */
static const char *
file_bytes(BoIndexFile *f, size_t n)
{
	const char *p;

	if (f->len - f->pos < n)
		file_refill(f);
	if (f->len - f->pos < n)
		return NULL;
	p = f->buf + f->pos;
	f->pos += n;
	return p;
}

static bool
file_read(BoIndexFile *f, void *out, size_t n)
{
	const char *p = file_bytes(f, n);

	if (p == NULL)
		return false;
	memcpy(out, p, n);
	return true;
}

/*
 * Open and check one file: it must exist, carry a valid CRC (checked in
 * a first pass over the file) and the expected relfilenode and
 * fingerprint.  *reason says why not.  Memory: one buffer, whatever the
 * file's size.
 */
static bool
file_load(BoIndexFile *f, Oid relfilenode, const char *fingerprint, bool *whole,
		  const char **reason)
{
	struct stat st;
	pg_crc32c	crc;
	pg_crc32c	stored;
	char		magic[8];
	uint32		u = 0;
	uint8		b = 0;
	char		fp[256];
	uint64		left;

	f->fd = OpenTransientFile(f->path, O_RDONLY | PG_BINARY);
	if (f->fd < 0)
	{
		*reason = "the row index of the parent is missing on this server";
		return false;
	}
	if (fstat(f->fd, &st) != 0 || st.st_size < 30)
	{
		*reason = "the row index of the parent is damaged";
		return false;
	}
	f->buf = palloc(INDEX_BUFSIZE);
	INIT_CRC32C(crc);
	for (left = st.st_size - 4; left > 0;)
	{
		size_t		n = Min(left, (uint64) INDEX_BUFSIZE);

		if (read(f->fd, f->buf, n) != (ssize_t) n)
		{
			*reason = "the row index of the parent could not be read";
			return false;
		}
		COMP_CRC32C(crc, f->buf, n);
		left -= n;
		CHECK_FOR_INTERRUPTS();
	}
	FIN_CRC32C(crc);
	if (read(f->fd, &stored, 4) != 4 || !EQ_CRC32C(crc, stored))
	{
		*reason = "the row index of the parent is damaged";
		return false;
	}
	if (lseek(f->fd, 0, SEEK_SET) != 0)
	{
		*reason = "the row index of the parent could not be read";
		return false;
	}
	f->len = 0;
	f->pos = 0;
	f->remaining = st.st_size - 4;
	if (!file_read(f, magic, 8) || memcmp(magic, INDEX_MAGIC, 8) != 0)
	{
		*reason = "the row index of the parent has an unknown format";
		return false;
	}
	file_read(f, &u, 4);
	if (u != relfilenode)
	{
		*reason = "the table was rewritten (TRUNCATE, VACUUM FULL, CLUSTER or ALTER TABLE) since the parent";
		return false;
	}
	file_read(f, &u, 4);
	f->nblocks = u;
	file_read(f, &b, 1);
	*whole = b != 0;
	file_read(f, &b, 1);
	if (!file_read(f, fp, b))
	{
		*reason = "the row index of the parent is damaged";
		return false;
	}
	fp[b] = '\0';
	if (strcmp(fp, fingerprint) != 0)
	{
		*reason = "the table's definition changed since the parent";
		return false;
	}
	return true;
}

/* read the next record of f into next_*; false at the end */
static void
file_next(BoIndexFile *f)
{
	uint32		u = INDEX_END;
	uint16		n = 0;
	int			i;

	f->has_record = false;
	MemoryContextReset(f->cxt);
	if (!file_read(f, &u, 4) || u == INDEX_END)
		return;
	if (!file_read(f, &n, 2))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("row index \"%s\" is truncated", f->path)));
	f->next_block = u;
	f->next_count = n;
	f->next_entries = MemoryContextAlloc(f->cxt, sizeof(BoIndexEntry) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		BoIndexEntry *e = &f->next_entries[i];

		const char *key;

		if (!file_read(f, &e->offset, 2) || !file_read(f, &e->xmin, 4) ||
			!file_read(f, e->hash, 16) || !file_read(f, &e->keylen, 2) ||
			(key = file_bytes(f, e->keylen)) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("row index \"%s\" is truncated", f->path)));
		/* the buffer moves on: the record keeps its own copy */
		e->key = MemoryContextAlloc(f->cxt, Max(e->keylen, 1));
		memcpy(e->key, key, e->keylen);
	}
	f->has_record = true;
}

/*
 * Open the index of table relid as of snapshot chain[n-1] (chain: the
 * snapshot ids from the FULL to the parent).  NULL, with *reason, when the
 * table must be copied whole instead.
 */
BoIndexChain *
bo_index_chain_open(List *chain, Oid relid, Oid relfilenode, const char *fingerprint,
					const char **reason)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "row index chain",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	BoIndexChain *c = palloc0(sizeof(BoIndexChain));
	int			n = list_length(chain);
	int			first = -1;
	int			i;
	BlockNumber minblocks;

	c->cxt = cxt;
	c->all = palloc0(sizeof(BoIndexFile) * Max(n, 1));
	c->nall = n;
	for (i = 0; i < n; i++)
		c->all[i].fd = -1;
	/* from the parent back to the last whole copy */
	for (i = n - 1; i >= 0 && first < 0; i--)
	{
		BoIndexFile *f = &c->all[i];
		bool		whole;

		if (n - i > BO_INDEX_CHAIN_MAX)
		{
			*reason = "the table's chain of changes since its last whole copy is " CppAsString2(BO_INDEX_CHAIN_MAX)
				" snapshots long: a whole copy starts a new one";
			break;
		}
		f->path = index_path(list_nth(chain, i), relid);
		if (!file_load(f, relfilenode, fingerprint, &whole, reason))
			break;
		if (whole)
			first = i;
	}
	if (first < 0)
	{
		if (i < 0)
			*reason = "no whole copy of the table in the parent's chain";
		MemoryContextSwitchTo(old);
		bo_index_chain_close(c);
		return NULL;
	}
	/* keep files first .. n-1 */
	c->nfiles = n - first;
	c->files = &c->all[first];
	minblocks = InvalidBlockNumber;
	for (i = c->nfiles - 1; i >= 0; i--)
	{
		BoIndexFile *f = &c->files[i];

		minblocks = (minblocks == InvalidBlockNumber) ? f->nblocks : Min(minblocks, f->nblocks);
		f->valid_below = minblocks;
		f->cxt = AllocSetContextCreate(cxt, "row index record", ALLOCSET_SMALL_SIZES);
		file_next(f);
	}
	MemoryContextSwitchTo(old);
	return c;
}

/* the table's size at the parent */
BlockNumber
bo_index_chain_nblocks(BoIndexChain *c)
{
	return c->files[c->nfiles - 1].nblocks;
}

/*
 * The entries of block (called with increasing blocks): the newest record
 * for it along the chain, if valid at the parent.  *count 0 when none.
 */
const BoIndexEntry *
bo_index_chain_block(BoIndexChain *c, BlockNumber block, int *count)
{
	const BoIndexEntry *result = NULL;
	bool		decided = false;
	int			i;

	*count = 0;
	for (i = c->nfiles - 1; i >= 0; i--)
	{
		BoIndexFile *f = &c->files[i];

		while (f->has_record && f->next_block < block)
			file_next(f);
		if (!decided && f->has_record && f->next_block == block)
		{
			decided = true;
			if (block < f->valid_below)
			{
				result = f->next_entries;
				*count = f->next_count;
			}
		}
	}
	return result;
}

/* close the files of a chain and free it */
void
bo_index_chain_close(BoIndexChain *c)
{
	int			i;

	for (i = 0; i < c->nall; i++)
	{
		if (c->all[i].fd >= 0)
			CloseTransientFile(c->all[i].fd);
		c->all[i].fd = -1;
	}
	MemoryContextDelete(c->cxt);
}
