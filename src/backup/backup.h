/*-------------------------------------------------------------------------
 *
 * backup.h
 *		Backups: job slots in shared memory, the job worker, the snapshot
 *		engine, row encoding, manifests and verification.
 *
 * A backup runs in a dynamic background worker (job.c), started by
 * run_backup or the scheduler; the worker runs bo_backup_run (snapshot.c),
 * which scans every table of the scope under one MVCC snapshot, encodes
 * rows in PostgreSQL's COPY formats (encode.c), streams them through the
 * archive writer into storage, and writes the manifest (manifest.c) last.
 *
 * IDENTIFICATION
 *		src/backup/backup.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_BACKUP_H
#define BACKUP_OFFLINE_BACKUP_H

#include "datatype/timestamp.h"
#include "storage/block.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"
#include "utils/uuid.h"

#include "archive/archive.h"

/* ---------------------------------------------------------------------
 * Job slots (job.c)
 * ---------------------------------------------------------------------
 */
typedef enum BoJobState
{
	BO_JOB_FREE = 0,
	BO_JOB_STARTING,			/* slot taken, worker not yet running */
	BO_JOB_RUNNING,				/* worker running */
	BO_JOB_DONE					/* worker finished; result below */
} BoJobState;

/* what a job does */
typedef enum BoJobKind
{
	BO_JOB_BACKUP = 0,
	BO_JOB_RESTORE
} BoJobKind;

#define BO_JOB_TEXT 64
#define BO_JOB_ERROR 1024

/* what a job worker shows while it runs (the backup_progress view) */
typedef struct BoJobProgress
{
	char		phase[BO_JOB_TEXT];
	char		current_table[2 * NAMEDATALEN + 2];
	int			tables_done;
	int			tables_total;
	int64		rows_done;
	int64		bytes_done;		/* heap bytes scanned */
	int64		bytes_total;	/* heap bytes of the scope's tables */
	int64		stored_bytes;	/* bytes written to storage */
} BoJobProgress;

typedef struct BoJobSlot
{
	BoJobState	state;
	BoJobKind	kind;
	pg_uuid_t	object_id;		/* a restore job: the restore's id */
	uint64		generation;		/* changes each time the slot is taken */
	int			worker_pid;
	int			requester_procno;	/* waiting backend's pgprocno, or -1 */
	Oid			database;
	Oid			run_as;			/* the extension owner */
	pg_uuid_t	configuration_id;
	pg_uuid_t	organization_id;
	char		requested_type[16];	/* FULL, INCREMENTAL, DIFFERENTIAL, "" */
	char		trigger[16];	/* MANUAL, SCHEDULE */
	char		requested_by[NAMEDATALEN];
	char		requested_by_user[40];	/* uuid text or "" */
	int			compression_workers;	/* the requester's setting, -1: the server's */
	/* set by the worker */
	bool		claimed;		/* snapshot_id is this job's (the row may not exist yet) */
	bool		have_snapshot;	/* the snapshot row is committed */
	pg_uuid_t	snapshot_id;
	char		snapshot_number[32];
	char		backup_type[16];
	TimestampTz started_at;
	bool		cancel_requested;
	char		cancel_reason[BO_JOB_TEXT];
	BoJobProgress progress;
	/* result, when DONE */
	char		result_status[16];	/* COMPLETED, FAILED, CANCELLED */
	int			result_sqlstate;
	char		result_message[BO_JOB_ERROR];
} BoJobSlot;

extern void bo_job_shmem_request(void);
extern void bo_job_shmem_startup(void);
extern bool bo_job_available(void);
extern int	bo_job_free_slots(void);
extern int	bo_job_prepare(Oid database, Oid run_as, const char *configuration_id,
						   const pg_uuid_t *organization, const char *requested_type,
						   const char *trigger, const char *requested_by,
						   const char *requested_by_user, int requester_procno);
extern void bo_job_launch(int index);
extern bool bo_job_cancel(BoJobKind kind, const pg_uuid_t *id, const char *reason);
extern BoJobSlot *bo_job_slot(int index);
typedef void (*BoJobObserver) (const BoJobSlot *copy, bool wait, void *arg);
extern void bo_job_run(int index, bool wait, BoJobSlot *result, BoJobObserver observe, void *arg);
extern void bo_job_require(const char *what);

/* inside a job worker */
extern BoJobSlot *bo_job_my_slot(void);
extern void bo_job_publish_snapshot(const pg_uuid_t *id, const char *number,
									const char *backup_type);
extern void bo_job_report(const BoJobProgress *progress);
extern void bo_job_check_cancel(void);
extern bool bo_job_running(BoJobKind kind, const pg_uuid_t *id);
extern int	bo_jobs_recover(void);
extern void bo_job_claim_snapshot(const pg_uuid_t *id);
extern bool bo_job_terminating(void);
extern char *bo_job_cancel_reason(void);

/* ---------------------------------------------------------------------
 * The snapshot engine (snapshot.c)
 * ---------------------------------------------------------------------
 */
extern void bo_backup_run(BoJobSlot *slot);
extern int	bo_backup_recover(void);
extern char *bo_snapshot_prefix(const char *configuration_id, const char *snapshot_id);
extern char *bo_try_subtransaction(void (*fn) (void *arg), void *arg);
extern int	bo_spi_exec(const char *sql, int nargs, const char **args, bool read_only, long limit);
extern char *bo_try_subtransaction_code(void (*fn) (void *arg), void *arg, int *code);

/* ---------------------------------------------------------------------
 * Row encoding in COPY formats (encode.c)
 * ---------------------------------------------------------------------
 */
typedef enum BoRowFormat
{
	BO_ROW_BINARY,				/* COPY (FORMAT binary) */
	BO_ROW_TEXT					/* COPY (FORMAT text), the default options */
} BoRowFormat;

typedef struct BoRowEncoder
{
	TupleDesc	tupdesc;
	BoRowFormat format;
	int			ncolumns;		/* encoded columns */
	AttrNumber *attnums;		/* their attribute numbers (1-based) */
	FmgrInfo   *functions;		/* send (binary) or output (text) */
	StringInfoData row;			/* the last row bo_row_encode encoded */
	MemoryContext rowcxt;		/* reset per row */
} BoRowEncoder;

/* an order-independent digest of a multiset of rows: count and sum */
typedef struct BoRowsDigest
{
	uint64		count;
	uint64		hi;				/* sum of XXH3-128 of each row, mod 2^128 */
	uint64		lo;
} BoRowsDigest;

extern BoRowFormat bo_row_format_for(TupleDesc tupdesc);
extern const char *bo_row_format_name(BoRowFormat format);
extern bool bo_row_format_parse(const char *name, BoRowFormat *format);
extern void bo_row_encoder_init(BoRowEncoder *enc, TupleDesc tupdesc, BoRowFormat format,
								const List *only_columns);
extern void bo_row_encode(BoRowEncoder *enc, Datum *values, bool *nulls);
extern void bo_row_encode_into(BoRowEncoder *enc, Datum *values, bool *nulls, StringInfo out);
extern void bo_row_stream_header(BoRowFormat format, StringInfo out);
extern void bo_row_stream_trailer(BoRowFormat format, StringInfo out);
extern List *bo_row_encoder_column_names(BoRowEncoder *enc);
extern void bo_row_hash(const char *data, size_t len, uint8 *out);
extern void bo_rows_digest_add(BoRowsDigest *d, const char *data, size_t len);
extern void bo_rows_digest_add_hash(BoRowsDigest *d, const uint8 *h);
extern void bo_rows_digest_sub_hash(BoRowsDigest *d, const uint8 *h);
extern void bo_rows_digest_merge(BoRowsDigest *d, const BoRowsDigest *from);
extern char *bo_rows_digest_hex(const BoRowsDigest *d);
extern bool bo_rows_digest_parse(const char *text, uint64 count, BoRowsDigest *d);

/* ---------------------------------------------------------------------
 * The row index (rowindex.c)
 * ---------------------------------------------------------------------
 */
typedef struct BoIndexEntry
{
	uint16		offset;			/* line pointer */
	TransactionId xmin;			/* raw xmin of the row version */
	uint8		hash[16];		/* XXH3-128 of the encoded row */
	uint16		keylen;
	char	   *key;			/* the primary key, encoded as a row */
} BoIndexEntry;

typedef struct BoIndexWriter BoIndexWriter;
typedef struct BoIndexChain BoIndexChain;

extern char *bo_index_dir(const char *snapshot_id);
extern void bo_index_remove(const char *snapshot_id);
extern BoIndexWriter *bo_index_begin(const char *snapshot_id, Oid relid, Oid relfilenode,
									 BlockNumber nblocks, bool whole, const char *fingerprint);
extern void bo_index_block(BoIndexWriter *w, BlockNumber block, const BoIndexEntry *entries,
						   int count);
extern void bo_index_finish(BoIndexWriter *w);
extern BoIndexChain *bo_index_chain_open(List *chain, Oid relid, Oid relfilenode,
										 const char *fingerprint, const char **reason);
extern BlockNumber bo_index_chain_nblocks(BoIndexChain *c);
extern void bo_index_chain_close(BoIndexChain *c);
extern const BoIndexEntry *bo_index_chain_block(BoIndexChain *c, BlockNumber block, int *count);

/* ---------------------------------------------------------------------
 * Manifests (manifest.c)
 * ---------------------------------------------------------------------
 */
#define BO_MANIFEST_NAME "backup_manifest"
#define BO_MANIFEST_VERSION 1

extern char *bo_manifest_finish(StringInfo body);
extern Jsonb *bo_manifest_parse(const char *text, size_t len, const char *what);
extern char *bo_manifest_read(BoStorage *storage, const char *name, size_t *len, bool *authenticated);

/* ---------------------------------------------------------------------
 * Materialisation and verification (verify.c)
 * ---------------------------------------------------------------------
 */
extern void bo_set_job_gucs(void);

/* manifest access and materialisation, shared with restores */
extern JsonbValue *bo_jget(JsonbContainer *c, const char *key);
extern char *bo_jstr(JsonbContainer *c, const char *key);
extern uint64 bo_jnum(JsonbContainer *c, const char *key);
extern JsonbContainer *bo_jcontainer(JsonbContainer *c, const char *key);
extern List *bo_jelements(JsonbContainer *array);
extern JsonbContainer *bo_manifest_table(Jsonb *manifest, const char *schema, const char *name);
extern BoRowFormat bo_entry_format(JsonbContainer *entry, const char *schema, const char *name);
extern void bo_materialize_table(BoStorage *storage, List *chain, const char *schema, const char *name,
								 const char *target_schema, const char *target);
extern void bo_materialize_table_digest(BoStorage *storage, List *chain, const char *schema,
										const char *name, const char *target_schema,
										const char *target, BoRowsDigest *out);
extern void bo_table_rows_digest(Oid relid, BoRowFormat format, Snapshot source, BoRowsDigest *out);
extern List *bo_chain_manifests(const char *snapshot_id);

/* restores (src/restore/restore.c) */
extern void bo_restore_run(BoJobSlot *slot);
extern int	bo_restore_recover(void);

/* the scheduler (src/schedule/launcher.c) */
extern void bo_launcher_register(void);

#endif							/* BACKUP_OFFLINE_BACKUP_H */
