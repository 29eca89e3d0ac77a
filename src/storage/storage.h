/*-------------------------------------------------------------------------
 *
 * storage.h
 *		The storage driver interface: write-once objects under names.
 *
 * A storage destination (the storageDestination object of a backup
 * configuration) is opened once per operation; objects are then written
 * with a streaming, write-once put whose commit is atomic, and read back
 * with ranged gets.  The interface knows bytes and object names only;
 * drivers (filesystem and network share in fs.c; later S3, Azure, SFTP)
 * fill in a BoStorageDriver.
 *
 * Object names are relative, '/'-separated, at most 1024 bytes, each
 * component made of [A-Za-z0-9._-], not empty, not "." or "..", and not
 * beginning with ".tmp." (reserved for a driver's temporary objects).
 *
 * Everything that fails raises ERROR; a put that is not committed leaves
 * nothing under its final name, and its temporary data is removed when the
 * (sub)transaction aborts, when the writer's memory context is reset or
 * deleted, or by bo_storage_cleanup after a crash.
 *
 * IDENTIFICATION
 *		src/storage/storage.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_STORAGE_H
#define BACKUP_OFFLINE_STORAGE_H

#include "lib/ilist.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* longest object name or prefix, in bytes */
#define BO_STORAGE_NAME_MAX 1024

/* component prefix reserved for temporary objects of drivers */
#define BO_STORAGE_TEMP_PREFIX ".tmp."

typedef struct BoStorage BoStorage;
typedef struct BoStorageWriter BoStorageWriter;

/* what bo_storage_stat reports */
typedef struct BoStorageStat
{
	uint64		size;			/* bytes */
	TimestampTz modified;		/* last modification */
} BoStorageStat;

/* one object of bo_storage_list */
typedef struct BoStorageEntry
{
	char	   *name;			/* object name, relative to the destination */
	uint64		size;
	TimestampTz modified;
} BoStorageEntry;

/* opening a destination (errors name storageDestination.*) */
extern BoStorage *bo_storage_open(Jsonb *destination);
extern const char *bo_storage_type(BoStorage *storage);
extern Jsonb *bo_storage_config(BoStorage *storage);

/* object names */
extern void bo_storage_check_name(const char *name);
extern void bo_storage_check_prefix(const char *prefix);
extern bool bo_storage_name_is_valid(const char *name);

/* write-once streaming put */
extern BoStorageWriter *bo_storage_put_begin(BoStorage *storage, const char *name);
extern void bo_storage_put_write(BoStorageWriter *writer, const void *data, size_t len);
extern void bo_storage_put_commit(BoStorageWriter *writer);
extern void bo_storage_put_abort(BoStorageWriter *writer);
extern uint64 bo_storage_put_size(BoStorageWriter *writer);
extern void bo_storage_put(BoStorage *storage, const char *name,
						   const void *data, size_t len);

/* reading and managing objects */
extern size_t bo_storage_get(BoStorage *storage, const char *name,
							 uint64 offset, void *buf, size_t len);
extern bool bo_storage_stat(BoStorage *storage, const char *name,
							BoStorageStat *out);
extern List *bo_storage_list(BoStorage *storage, const char *prefix);
extern void bo_storage_delete(BoStorage *storage, const char *name);
extern int	bo_storage_cleanup(BoStorage *storage, const char *prefix,
							   int64 older_than_seconds);

/*
 * Driver interface: only for drivers inside storage/.
 *
 * Every callback raises ERROR on failure, except discard, which runs from
 * transaction-abort and memory-context callbacks and must not throw (it
 * reports problems as WARNING).  Names and prefixes reach drivers already
 * checked.
 */
typedef struct BoStorageDriver
{
	const char *type;			/* storageDestination.type */

	/* check the normalised configuration, set storage->private */
	void		(*open) (BoStorage *storage);

	/* start a put: create the temporary object, set writer->private */
	void		(*put_begin) (BoStorageWriter *writer);
	void		(*put_write) (BoStorageWriter *writer, const void *data, size_t len);
	/* make the object visible under its name, atomically, never replacing */
	void		(*put_commit) (BoStorageWriter *writer);

	/*
	 * Remove the temporary object of a put that will not commit.  in_abort:
	 * called while the (sub)transaction that began the put aborts; file
	 * descriptors and other transaction resources are released by their
	 * owners then, so the driver must only forget them.
	 */
	void		(*discard) (BoStorageWriter *writer, bool in_abort);

	size_t		(*get) (BoStorage *storage, const char *name, uint64 offset,
						void *buf, size_t len);
	bool		(*stat) (BoStorage *storage, const char *name, BoStorageStat *out);
	List	   *(*list) (BoStorage *storage, const char *prefix);
	void		(*delete) (BoStorage *storage, const char *name);
	/* prefix: "" or a directory ending in '/' */
	int			(*cleanup) (BoStorage *storage, const char *prefix, int64 older_than_seconds);
} BoStorageDriver;

struct BoStorage
{
	const BoStorageDriver *driver;
	char	   *type;			/* storageDestination.type */
	Jsonb	   *config;			/* the normalised storageDestination */
	void	   *private;		/* the driver's state */
};

/* life of a writer */
typedef enum BoWriterState
{
	BO_WRITER_OPEN,				/* temporary object exists, accepting data */
	BO_WRITER_COMMITTED,		/* visible under its name */
	BO_WRITER_DISCARDED			/* temporary object removed */
} BoWriterState;

struct BoStorageWriter
{
	BoStorage  *storage;
	char	   *name;			/* final object name */
	BoWriterState state;
	uint64		written;		/* bytes accepted so far */
	SubTransactionId subid;		/* (sub)transaction owning the put */
	MemoryContextCallback reset_callback;
	dlist_node	node;			/* in the list of open writers */
	void	   *private;		/* the driver's state */
};

/* a JSON string member of the normalised configuration, or NULL */
extern char *bo_storage_config_text(BoStorage *storage, const char *key);

/* the drivers */
extern const BoStorageDriver bo_fs_driver;
extern const BoStorageDriver bo_network_share_driver;

#endif							/* BACKUP_OFFLINE_STORAGE_H */
