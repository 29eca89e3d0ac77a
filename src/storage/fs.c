/*-------------------------------------------------------------------------
 *
 * fs.c
 *		Storage drivers for LOCAL_FILESYSTEM and NETWORK_SHARE destinations.
 *
 * An object "a/b/c" of a destination with path P is the file P/a/b/c;
 * directories are created as needed.  P is confined to
 * backup_offline.allowed_paths (paths.c) when the destination is opened,
 * and every object path is checked again before use, so a symbolic link
 * inside the destination cannot lead outside the allowed directories.
 * Symbolic links found while listing are not followed.  (A process that can
 * write inside an allowed directory could still swap a link between the
 * check and the open; the allowed directories are superuser-set and meant
 * to be writable by the server only.)
 *
 * Crash safety of a put:
 *
 *	1. the data goes to a temporary file ".tmp.<pid>.<counter>.<last name
 *	   component>" in the object's own directory (same filesystem, so the
 *	   rename below is atomic), created with O_EXCL, given its mode, owner
 *	   and group before any data is written;
 *	2. commit fsyncs and closes the file (write errors that NFS reports only
 *	   at close are caught here), then renames it to the final name with
 *	   renameat2(RENAME_NOREPLACE), so an existing object is never replaced
 *	   (write-once); where the filesystem cannot do that (EINVAL), link() and
 *	   unlink() give the same guarantee, link never replacing;
 *	3. the directory is fsynced, making the new name durable.
 *
 * Directories the driver creates are fsynced together with their parents
 * before anything is put in them.  Until step 2 the final name does not
 * exist, so a failed write (ENOSPC, EDQUOT, EIO), a cancel, an ERROR or a
 * crash never leaves a partial object under a final name.  After an ERROR
 * the temporary file is removed by storage.c's callbacks; after a crash or
 * kill -9 it stays, is never listed, and is removed by cleanup once it has
 * not been modified for the given time (storage_cleanup, default one hour;
 * a put running in another session keeps its file's modification time
 * fresh, and one whose file is removed anyway fails at its rename, leaving
 * nothing).
 * If the directory fsync of step 3 fails, the complete object is visible
 * but its name may not survive a power loss; the error says so.
 *
 * Reading: the archive reader asks for an object a few pieces at a time
 * (each frame's header, payload and digest are separate gets), so opening
 * the file, confining its path and checking it on every get would be
 * repeated work for the same file.  fs_get therefore keeps the descriptors
 * of the last few objects it read open in the FsStorage (a small LRU
 * cache), after the same confinement and regular-file checks as before;
 * later gets of the same object only pread.  The descriptors are plain
 * ones counted with AcquireExternalFD (when the process is short of
 * descriptors, fs_get falls back to opening per call) and live at most as
 * long as both the storage's memory and the transaction: a reset callback
 * on the storage's memory context and a transaction callback close them,
 * and fs_delete and fs_put_commit close the one of the name they touch.
 * A cached descriptor keeps reading the file it opened, which for
 * write-once objects is the object the name stood for when the transaction
 * first read it.
 *
 * NETWORK_SHARE destinations must lie on a mounted filesystem other than
 * the root filesystem (found in /proc/self/mountinfo by the longest mount
 * point that is a prefix of the resolved path) and be writable; this is
 * checked at open and again before every put, so an unmounted share is
 * refused instead of filling the mount point on the root filesystem.
 *
 * IDENTIFICATION
 *		src/storage/fs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "common/file_utils.h"
#include "common/string.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "backup_offline.h"
#include "storage/paths.h"
#include "storage/storage.h"

/* the JSON path named by path errors */
#define FS_FIELD "storageDestination.path"

/* bytes per read(2) and write(2) call, between interrupt checks */
#define FS_IO_CHUNK (1024 * 1024)

/* objects whose read descriptors an FsStorage keeps open */
#define FS_READ_HANDLES 4

/* an open read descriptor of one object (see fs_get) */
typedef struct FsReadHandle
{
	char	   *name;			/* object name; NULL when the slot is free */
	char	   *path;			/* its confined file */
	int			fd;
	uint64		last_use;		/* for evicting the least recently used */
} FsReadHandle;

/* an open filesystem destination */
typedef struct FsStorage
{
	char	   *root;			/* canonical destination directory */
	bool		network_share;
	mode_t		file_mode;		/* storageDestination.permissions */
	mode_t		dir_mode;		/* for directories the driver creates */
	uid_t		uid;			/* (uid_t) -1: leave unchanged */
	gid_t		gid;			/* (gid_t) -1: leave unchanged */
	char	   *owner;
	char	   *group;
	/* the read descriptor cache */
	FsReadHandle handles[FS_READ_HANDLES];
	uint64		handle_clock;	/* uses so far */
	bool		handles_tracked;	/* callback registered, in fs_storages */
	MemoryContextCallback handles_callback;
	dlist_node	node;			/* in fs_storages */
} FsStorage;

/* an open put */
typedef struct FsWriter
{
	int			fd;				/* -1 once closed or forgotten */
	bool		created;		/* the temporary file exists and is ours */
	bool		renamed;		/* it is now the object */
	char	   *tmp_path;
	char	   *final_path;
	char	   *dir_path;
} FsWriter;

/* state of a directory walk (list or cleanup) */
typedef struct FsWalk
{
	FsStorage  *fs;
	const char *prefix;			/* list: names must begin with this */
	bool		cleanup;		/* remove stale temporary files instead */
	TimestampTz cutoff;			/* cleanup: modified at or before this */
	List	   *entries;		/* list: BoStorageEntry pointers */
	int			removed;		/* cleanup: files removed */
} FsWalk;

/* makes temporary names of this backend unique */
static uint32 temp_counter = 0;

/* destinations that may hold cached read descriptors */
static dlist_head fs_storages = DLIST_STATIC_INIT(fs_storages);
static bool fs_xact_callback_registered = false;

/*
 * Is "path" equal to "dir" or below it?  Both absolute and canonical.
 */
static bool
path_is_under(const char *path, const char *dir)
{
	size_t		len = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return true;
	return strncmp(path, dir, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/*
 * The directory part of an absolute path; palloc'd.
 */
static char *
parent_dir(const char *path)
{
	char	   *dir = pstrdup(path);
	char	   *slash = strrchr(dir, '/');

	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	return dir;
}

/*
 * The file of object "name".
 */
static char *
object_path(FsStorage *fs, const char *name)
{
	if (strcmp(fs->root, "/") == 0)
		return psprintf("/%s", name);
	return psprintf("%s/%s", fs->root, name);
}

/*
 * Is a directory entry one of the driver's temporary files?
 */
static bool
is_temp_name(const char *entry)
{
	return strncmp(entry, BO_STORAGE_TEMP_PREFIX, strlen(BO_STORAGE_TEMP_PREFIX)) == 0;
}

/*
 * Modification time of a stat result, with microseconds.
 */
static TimestampTz
stat_mtime(const struct stat *st)
{
	return time_t_to_timestamptz((pg_time_t) st->st_mtime) + st->st_mtim.tv_nsec / 1000;
}

/*
 * A hint for failed chown(2): who the server runs as.
 */
static int
ownership_hint(void)
{
	struct passwd *pw = getpwuid(geteuid());

	return errhint("The database server runs as operating-system user \"%s\"; it can only give files to itself and to groups it belongs to.",
				   pw ? pw->pw_name : "?");
}

/*
 * Raise the error of a failed chown(2) of "path".
 */
static void
chown_error(FsStorage *fs, const char *path)
{
	int			save_errno = errno;
	char	   *who;

	if (fs->owner && fs->group)
		who = psprintf("user \"%s\" and group \"%s\"", fs->owner, fs->group);
	else if (fs->owner)
		who = psprintf("user \"%s\"", fs->owner);
	else
		who = psprintf("group \"%s\"", fs->group);
	errno = save_errno;
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not give file \"%s\" to %s: %m", path, who),
			 ownership_hint()));
}

/*
 * fsync directory "dir", making the names in it durable.  detail, when
 * given, is added to the error.
 */
static void
fsync_directory(const char *dir, const char *detail)
{
	int			fd;
	int			rc;

	fd = OpenTransientFile(dir, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open directory \"%s\": %m", dir),
				 detail ? errdetail_internal("%s", detail) : 0));
	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	rc = pg_fsync(fd);
	pgstat_report_wait_end();
	if (rc != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync directory \"%s\": %m", dir),
				 detail ? errdetail_internal("%s", detail) : 0));
	}
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close directory \"%s\": %m", dir)));
}

/*
 * The deepest existing directory among "path" and its ancestors.
 */
static char *
existing_ancestor(const char *path)
{
	char	   *dir = pstrdup(path);
	struct stat st;

	for (;;)
	{
		char	   *slash;

		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
			return dir;
		slash = strrchr(dir, '/');
		if (slash == NULL || slash == dir)
			return pstrdup("/");
		*slash = '\0';
	}
}

/*
 * Undo the octal escapes (\040 for a space, ...) of a mountinfo field, in
 * place.
 */
static void
unescape_mount_field(char *s)
{
	char	   *r = s;
	char	   *w = s;

	while (*r)
	{
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
			r[3] >= '0' && r[3] <= '7')
		{
			*w++ = (char) (((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
			r += 4;
		}
		else
			*w++ = *r++;
	}
	*w = '\0';
}

/*
 * The mount point holding the resolved path "real", and its filesystem
 * type, from /proc/self/mountinfo; NULL when it cannot be told.
 */
static char *
mount_point_of(const char *real, char **fstype)
{
	FILE	   *f;
	StringInfoData line;
	char	   *best = NULL;
	size_t		best_len = 0;

	*fstype = NULL;
	f = AllocateFile("/proc/self/mountinfo", "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", "/proc/self/mountinfo")));

	initStringInfo(&line);
	while (pg_get_line_buf(f, &line))
	{
		char	   *save = NULL;
		char	   *tok;
		char	   *mount = NULL;
		char	   *type = NULL;
		int			field = 0;
		bool		after_separator = false;

		/* id parent major:minor root mount-point options [optional...] - type source super */
		for (tok = strtok_r(line.data, " \n", &save); tok != NULL;
			 tok = strtok_r(NULL, " \n", &save), field++)
		{
			if (field == 4)
				mount = tok;
			else if (field > 5 && !after_separator && strcmp(tok, "-") == 0)
				after_separator = true;
			else if (after_separator)
			{
				type = tok;
				break;
			}
		}
		if (mount == NULL)
			continue;
		unescape_mount_field(mount);
		/* later lines are mounted over earlier ones: >= keeps the last */
		if (path_is_under(real, mount) && strlen(mount) >= best_len)
		{
			best = pstrdup(mount);
			best_len = strlen(mount);
			*fstype = type ? pstrdup(type) : NULL;
		}
	}
	FreeFile(f);
	pfree(line.data);
	return best;
}

/*
 * NETWORK_SHARE: the destination must be on a mounted filesystem other
 * than the root filesystem, and writable.
 */
static void
check_network_share(FsStorage *fs)
{
	char	   *existing = existing_ancestor(fs->root);
	char		real[PATH_MAX];
	char	   *mount;
	char	   *fstype;

	if (realpath(existing, real) == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not resolve path \"%s\": %m", existing)));
	mount = mount_point_of(real, &fstype);
	if (mount == NULL || strcmp(mount, "/") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invalid %s: \"%s\" is not on a mounted network share", FS_FIELD, fs->root),
				 errdetail("It lies on the server's root filesystem."),
				 errhint("Mount the share at or above this directory, or use type LOCAL_FILESYSTEM.")));
	if (access(existing, W_OK) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("invalid %s: the network share \"%s\" (%s) is not writable by the server: %m",
						FS_FIELD, mount, fstype ? fstype : "unknown type"),
				 errdetail("Directory \"%s\" cannot be written.", existing),
				 errhint("Mount the share read-write and give the database server's operating-system user write access.")));
}

/*
 * Create directory "path" (its parent exists) with the destination's mode,
 * owner and group, and make it durable.
 */
static void
make_one_directory(FsStorage *fs, const char *path)
{
	struct stat st;
	char	   *parent;

	/* never create anything outside the allowed directories */
	(void) bo_confine_path(path, FS_FIELD);

	if (mkdir(path, fs->dir_mode) != 0)
	{
		if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return;				/* made meanwhile by another session */
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", path)));
	}
	/* mkdir's mode went through the server's umask */
	if (chmod(path, fs->dir_mode) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not change permissions of directory \"%s\": %m", path)));
	if ((fs->uid != (uid_t) -1 || fs->gid != (gid_t) -1) &&
		chown(path, fs->uid, fs->gid) != 0)
		chown_error(fs, path);

	parent = parent_dir(path);
	fsync_directory(path, NULL);
	fsync_directory(parent, NULL);
	pfree(parent);
}

/*
 * Make sure directory "dir" exists, creating the missing ones from the top.
 */
static void
make_directories(FsStorage *fs, const char *dir)
{
	struct stat st;
	char	   *path;
	char	   *p;

	if (stat(dir, &st) == 0)
	{
		if (!S_ISDIR(st.st_mode))
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("could not create directory \"%s\": a file of that name exists", dir)));
		return;
	}
	if (errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat directory \"%s\": %m", dir)));

	path = pstrdup(dir);
	for (p = path + 1;; p++)
	{
		char		save;

		if (*p != '/' && *p != '\0')
			continue;
		save = *p;
		*p = '\0';
		if (stat(path, &st) != 0)
		{
			if (errno != ENOENT)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not stat directory \"%s\": %m", path)));
			make_one_directory(fs, path);
		}
		else if (!S_ISDIR(st.st_mode))
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("could not create directory \"%s\": a file of that name exists", path)));
		*p = save;
		if (save == '\0')
			break;
	}
	pfree(path);
}

/*
 * Rename "from" to "to" unless "to" exists (then EEXIST); atomic.
 */
static int
rename_noreplace(const char *from, const char *to)
{
	int			rc;

#ifdef RENAME_NOREPLACE
	rc = renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
#else
	errno = ENOSYS;
	rc = -1;
#endif
	if (rc == 0 || (errno != EINVAL && errno != ENOSYS))
		return rc;

	/* the filesystem cannot rename without replacing; link() never replaces */
	if (link(from, to) != 0)
		return -1;
	if (unlink(from) != 0)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", from),
				 errdetail("The object \"%s\" is complete; the leftover name is removed by storage_cleanup.", to)));
	return 0;
}

/*
 * Close a cached read descriptor and free its slot.  Never throws: runs
 * from memory-context and transaction callbacks.  (A failed close of a
 * descriptor only read from loses nothing.)
 */
static void
handle_close(FsReadHandle *h)
{
	if (h->name == NULL)
		return;
	(void) close(h->fd);
	ReleaseExternalFD();
	pfree(h->name);
	pfree(h->path);
	h->name = NULL;
	h->path = NULL;
	h->fd = -1;
}

/*
 * Close every cached read descriptor of a destination.
 */
static void
handles_close_all(FsStorage *fs)
{
	int			i;

	for (i = 0; i < FS_READ_HANDLES; i++)
		handle_close(&fs->handles[i]);
}

/*
 * Memory-context callback: the destination's memory goes away, and with it
 * its read descriptors.
 */
static void
handles_release(void *arg)
{
	FsStorage  *fs = (FsStorage *) arg;

	handles_close_all(fs);
	dlist_delete(&fs->node);
	fs->handles_tracked = false;
}

/*
 * Transaction callback: no cached read descriptor outlives the transaction
 * that opened it (the next get opens and checks the file again).
 */
static void
handles_xact_callback(XactEvent event, void *arg)
{
	dlist_iter	iter;

	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			break;
		default:
			return;
	}
	dlist_foreach(iter, &fs_storages)
		handles_close_all(dlist_container(FsStorage, node, iter.cur));
}

/*
 * The cached read descriptor of object "name", or NULL.
 */
static FsReadHandle *
handle_lookup(FsStorage *fs, const char *name)
{
	int			i;

	for (i = 0; i < FS_READ_HANDLES; i++)
	{
		FsReadHandle *h = &fs->handles[i];

		if (h->name != NULL && strcmp(h->name, name) == 0)
		{
			h->last_use = ++fs->handle_clock;
			return h;
		}
	}
	return NULL;
}

/*
 * Close the cached read descriptor of object "name", if there is one.
 */
static void
handle_forget(FsStorage *fs, const char *name)
{
	FsReadHandle *h = handle_lookup(fs, name);

	if (h != NULL)
		handle_close(h);
}

/*
 * Make sure the destination's cached descriptors will be closed: register
 * the transaction callback and a reset callback on the destination's
 * memory context (once).
 */
static void
handles_track(FsStorage *fs)
{
	if (fs->handles_tracked)
		return;
	if (!fs_xact_callback_registered)
	{
		RegisterXactCallback(handles_xact_callback, NULL);
		fs_xact_callback_registered = true;
	}
	fs->handles_callback.func = handles_release;
	fs->handles_callback.arg = fs;
	MemoryContextRegisterResetCallback(GetMemoryChunkContext(fs), &fs->handles_callback);
	dlist_push_tail(&fs_storages, &fs->node);
	fs->handles_tracked = true;
}

/*
 * Keep the open descriptor fd of object "name" (file "path") for later
 * gets, in a free slot or in that of the least recently used object.  name
 * and path are allocated in the destination's memory context and now
 * belong to the cache; the descriptor has been counted with
 * AcquireExternalFD.  Never throws, so the descriptor cannot leak between
 * its opening and its installation.
 */
static FsReadHandle *
handle_install(FsStorage *fs, char *name, char *path, int fd)
{
	FsReadHandle *victim = &fs->handles[0];
	int			i;

	for (i = 0; i < FS_READ_HANDLES; i++)
	{
		FsReadHandle *h = &fs->handles[i];

		if (h->name == NULL)
		{
			victim = h;
			break;
		}
		if (h->last_use < victim->last_use)
			victim = h;
	}
	handle_close(victim);
	victim->name = name;
	victim->path = path;
	victim->fd = fd;
	victim->last_use = ++fs->handle_clock;
	return victim;
}

/*
 * Check the normalised destination: path (confined again), permissions,
 * owner and group; for NETWORK_SHARE the mount.
 */
static void
fs_open(BoStorage *storage)
{
	FsStorage  *fs = palloc0(sizeof(FsStorage));
	char	   *path = bo_storage_config_text(storage, "path");
	char	   *perm = bo_storage_config_text(storage, "permissions");
	char	   *end;
	long		mode;
	struct stat st;

	fs->network_share = (strcmp(storage->type, "NETWORK_SHARE") == 0);
	fs->root = bo_confine_path(path, FS_FIELD);

	if (perm == NULL)
		perm = "0600";
	errno = 0;
	mode = strtol(perm, &end, 8);
	if (errno != 0 || *end != '\0' || mode < 0 || mode > 07777)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid storageDestination.permissions: \"%s\"", perm),
				 errhint("Give file permissions as 4 octal digits, for example \"0640\".")));
	if (mode & (S_ISUID | S_ISGID | S_ISVTX))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid storageDestination.permissions: \"%s\" sets the set-user-ID, set-group-ID or sticky bit", perm),
				 errhint("Give only read, write and execute bits, for example \"0640\".")));
	if ((mode & S_IRUSR) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid storageDestination.permissions: \"%s\" does not let the owner read the objects", perm),
				 errhint("Include the owner's read bit, for example \"0400\" or \"0600\".")));
	fs->file_mode = (mode_t) mode;
	/* directories: always the owner's; readable groups may also search */
	fs->dir_mode = S_IRWXU |
		((mode & S_IRGRP) ? (S_IRGRP | S_IXGRP) : 0) |
		((mode & S_IROTH) ? (S_IROTH | S_IXOTH) : 0);

	fs->uid = (uid_t) -1;
	fs->gid = (gid_t) -1;
	fs->owner = bo_storage_config_text(storage, "owner");
	fs->group = bo_storage_config_text(storage, "group");
	if (fs->owner)
	{
		struct passwd *pw = getpwnam(fs->owner);

		if (pw == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid storageDestination.owner: no operating-system user \"%s\" on the database server", fs->owner),
					 errhint("Give the name of an existing user of the server's operating system.")));
		fs->uid = pw->pw_uid;
	}
	if (fs->group)
	{
		struct group *gr = getgrnam(fs->group);

		if (gr == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid storageDestination.group: no operating-system group \"%s\" on the database server", fs->group),
					 errhint("Give the name of an existing group of the server's operating system.")));
		fs->gid = gr->gr_gid;
	}

	if (stat(fs->root, &st) == 0 && !S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: \"%s\" is not a directory", FS_FIELD, fs->root),
				 errhint("Give a directory; it is created when it does not exist.")));

	if (fs->network_share)
		check_network_share(fs);

	storage->private = fs;
}

/*
 * Begin a put: directories, the write-once check, the temporary file with
 * its final mode, owner and group.
 */
static void
fs_put_begin(BoStorageWriter *writer)
{
	FsStorage  *fs = (FsStorage *) writer->storage->private;
	FsWriter   *fw = palloc0(sizeof(FsWriter));
	const char *base;
	struct stat st;
	int			attempt;

	fw->fd = -1;
	writer->private = fw;

	if (fs->network_share)
		check_network_share(fs);

	fw->final_path = object_path(fs, writer->name);
	fw->dir_path = parent_dir(fw->final_path);
	make_directories(fs, fw->dir_path);
	(void) bo_confine_path(fw->final_path, FS_FIELD);

	if (lstat(fw->final_path, &st) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("object \"%s\" already exists", writer->name),
				 errdetail("Objects are written once and never replaced."),
				 errhint("Write under a new name, or delete the object first.")));
	if (errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", fw->final_path)));

	base = strrchr(writer->name, '/');
	base = base ? base + 1 : writer->name;
	for (attempt = 0;; attempt++)
	{
		int			fd;

		/* at most 5 + 10 + 1 + 10 + 1 + 200 bytes: fits NAME_MAX */
		fw->tmp_path = psprintf("%s/%s%d.%u.%.200s", fw->dir_path, BO_STORAGE_TEMP_PREFIX,
								MyProcPid, ++temp_counter, base);
		fd = OpenTransientFilePerm(fw->tmp_path, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY,
								   S_IRUSR | S_IWUSR);
		if (fd >= 0)
		{
			fw->fd = fd;
			fw->created = true;
			break;
		}
		/* a leftover of an earlier backend with the same pid: next counter */
		if (errno != EEXIST || attempt >= 100)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create file \"%s\": %m", fw->tmp_path)));
	}

	if (fchmod(fw->fd, fs->file_mode) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not change permissions of file \"%s\": %m", fw->tmp_path)));
	if ((fs->uid != (uid_t) -1 || fs->gid != (gid_t) -1) &&
		fchown(fw->fd, fs->uid, fs->gid) != 0)
		chown_error(fs, fw->tmp_path);
}

/*
 * Append to the temporary file.  A short write without an error is a full
 * disk, as in PostgreSQL's own file writes.
 */
static void
fs_put_write(BoStorageWriter *writer, const void *data, size_t len)
{
	FsWriter   *fw = (FsWriter *) writer->private;
	const char *p = data;

	while (len > 0)
	{
		ssize_t		n;

		errno = 0;
		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		n = write(fw->fd, p, Min(len, FS_IO_CHUNK));
		pgstat_report_wait_end();
		if (n < 0 && errno == EINTR)
		{
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (n <= 0)
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", fw->tmp_path),
					 errdetail("Nothing was stored under the name \"%s\".", writer->name)));
		}
		p += n;
		len -= n;
	}
}

/*
 * Commit: fsync and close, rename without replacing, fsync the directory.
 */
static void
fs_put_commit(BoStorageWriter *writer)
{
	FsStorage  *fs = (FsStorage *) writer->storage->private;
	FsWriter   *fw = (FsWriter *) writer->private;
	int			fd;

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	if (pg_fsync(fw->fd) != 0)
	{
		int			save_errno = errno;

		pgstat_report_wait_end();
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", fw->tmp_path),
				 errdetail("Nothing was stored under the name \"%s\".", writer->name)));
	}
	pgstat_report_wait_end();

	fd = fw->fd;
	fw->fd = -1;
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", fw->tmp_path),
				 errdetail("Nothing was stored under the name \"%s\".", writer->name)));

	/* a cancel that arrived during the fsync still stops the put */
	CHECK_FOR_INTERRUPTS();
	(void) bo_confine_path(fw->final_path, FS_FIELD);
	if (rename_noreplace(fw->tmp_path, fw->final_path) != 0)
	{
		int			save_errno = errno;

		if (unlink(fw->tmp_path) == 0)
			fw->created = false;
		errno = save_errno;
		if (errno == EEXIST)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("object \"%s\" already exists", writer->name),
					 errdetail("Another put stored it first; objects are written once and never replaced."),
					 errhint("Write under a new name, or delete the object first.")));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not rename file \"%s\" to \"%s\": %m", fw->tmp_path, fw->final_path)));
	}
	fw->renamed = true;
	fw->created = false;
	/* a descriptor kept from reading an earlier file of this name is stale */
	handle_forget(fs, writer->name);

	fsync_directory(fw->dir_path,
					psprintf("Object \"%s\" is complete, but its name may not survive a crash of the server's machine.",
							 writer->name));
}

/*
 * Remove the temporary file of a put that will not commit.  At the end of
 * a transaction fd.c closes the descriptor itself; otherwise we close it.
 */
static void
fs_discard(BoStorageWriter *writer, bool at_xact_end)
{
	FsWriter   *fw = (FsWriter *) writer->private;

	if (fw == NULL)
		return;
	if (fw->fd >= 0)
	{
		if (!at_xact_end)
			CloseTransientFile(fw->fd);
		fw->fd = -1;
	}
	if (fw->created && !fw->renamed)
	{
		if (unlink(fw->tmp_path) != 0 && errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not remove file \"%s\": %m", fw->tmp_path),
					 errhint("storage_cleanup removes it later.")));
		fw->created = false;
	}
}

/*
 * Open object "name" (its confined file "path") for reading and check that
 * it is a regular file.  cached: the caller has counted the descriptor with
 * AcquireExternalFD for the cache, and an error here closes and uncounts
 * it; else a transient descriptor (fd.c closes it at abort).
 */
static int
open_for_read(const char *name, const char *path, bool cached)
{
	struct stat st;
	int			fd;

	if (cached)
		fd = BasicOpenFile(path, O_RDONLY | PG_BINARY);
	else
		fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		int			save_errno = errno;

		if (cached)
			ReleaseExternalFD();
		errno = save_errno;
		if (errno == ENOENT || errno == ENOTDIR)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("object \"%s\" does not exist", name)));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	if (fstat(fd, &st) != 0)
	{
		int			save_errno = errno;

		if (cached)
		{
			(void) close(fd);
			ReleaseExternalFD();
		}
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	}
	if (!S_ISREG(st.st_mode))
	{
		if (cached)
		{
			(void) close(fd);
			ReleaseExternalFD();
		}
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("object \"%s\" does not exist", name),
				 errdetail("\"%s\" is not a regular file.", path)));
	}
	return fd;
}

/*
 * Ranged read of an object.  The descriptor comes from the destination's
 * cache, or is opened (path confined, regular file checked) and kept there;
 * only when the process has no descriptor to spare is the file opened and
 * closed for this call alone.
 */
static size_t
fs_get(BoStorage *storage, const char *name, uint64 offset, void *buf, size_t len)
{
	FsStorage  *fs = (FsStorage *) storage->private;
	FsReadHandle *h = handle_lookup(fs, name);
	char	   *p = buf;
	size_t		got = 0;
	const char *path;
	char	   *own_path = NULL;
	int			fd;

	if (h == NULL)
	{
		MemoryContext cxt = GetMemoryChunkContext(fs);
		char	   *file = object_path(fs, name);
		char	   *own_name;

		/* everything that can fail, before a descriptor is counted */
		own_path = MemoryContextStrdup(cxt, file);
		own_name = MemoryContextStrdup(cxt, name);
		pfree(file);
		(void) bo_confine_path(own_path, FS_FIELD);
		handles_track(fs);
		if (AcquireExternalFD())
		{
			fd = open_for_read(name, own_path, true);
			h = handle_install(fs, own_name, own_path, fd);
			own_path = NULL;
		}
		else
		{
			pfree(own_name);
			fd = open_for_read(name, own_path, false);
		}
	}
	if (h != NULL)
	{
		fd = h->fd;
		path = h->path;
	}
	else
		path = own_path;

	if (offset > (uint64) PG_INT64_MAX)
		len = 0;
	while (got < len)
	{
		ssize_t		n;

		CHECK_FOR_INTERRUPTS();
		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		n = pread(fd, p + got, Min(len - got, FS_IO_CHUNK), (off_t) (offset + got));
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
		got += n;
	}

	if (h == NULL)
	{
		if (CloseTransientFile(fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not close file \"%s\": %m", path)));
		pfree(own_path);
	}
	return got;
}

/*
 * Size and modification time of an object; false when there is none.
 */
static bool
fs_stat(BoStorage *storage, const char *name, BoStorageStat *out)
{
	FsStorage  *fs = (FsStorage *) storage->private;
	char	   *path = object_path(fs, name);
	struct stat st;

	(void) bo_confine_path(path, FS_FIELD);
	if (stat(path, &st) != 0)
	{
		if (errno == ENOENT || errno == ENOTDIR)
			return false;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	}
	if (!S_ISREG(st.st_mode))
		return false;
	out->size = (uint64) st.st_size;
	out->modified = stat_mtime(&st);
	pfree(path);
	return true;
}

/*
 * Could names under directory "reldir" begin with "prefix"?
 */
static bool
dir_may_match(const char *prefix, const char *reldir)
{
	size_t		plen = strlen(prefix);
	size_t		rlen = strlen(reldir);

	if (plen <= rlen)
		return strncmp(reldir, prefix, plen) == 0;
	/* the prefix reaches below the directory: it must continue it with '/' */
	return strncmp(reldir, prefix, rlen) == 0 && prefix[rlen] == '/';
}

/*
 * Walk directory "reldir" (relative to the destination, "" for its root)
 * and below, listing objects or removing stale temporary files.  Symbolic
 * links are neither followed nor listed.
 */
static void
fs_walk(FsWalk *walk, const char *reldir)
{
	char	   *dir = reldir[0] ? object_path(walk->fs, reldir) : pstrdup(walk->fs->root);
	DIR		   *d;
	struct dirent *de;

	check_stack_depth();
	d = AllocateDir(dir);
	if (d == NULL && (errno == ENOENT || errno == ENOTDIR))
		return;

	while ((de = ReadDirExtended(d, dir, ERROR)) != NULL)
	{
		char	   *rel;
		char	   *path;
		PGFileType type;
		struct stat st;

		CHECK_FOR_INTERRUPTS();
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rel = reldir[0] ? psprintf("%s/%s", reldir, de->d_name) : pstrdup(de->d_name);
		path = psprintf("%s/%s", dir, de->d_name);
		type = get_dirent_type(path, de, false, DEBUG1);

		if (is_temp_name(de->d_name))
		{
			if (walk->cleanup && type == PGFILETYPE_REG && lstat(path, &st) == 0 &&
				stat_mtime(&st) <= walk->cutoff)
			{
				if (unlink(path) == 0)
					walk->removed++;
				else if (errno != ENOENT)
					ereport(ERROR,
							(errcode_for_file_access(),
							 errmsg("could not remove file \"%s\": %m", path)));
			}
		}
		else if (type == PGFILETYPE_DIR)
		{
			if (walk->cleanup || dir_may_match(walk->prefix, rel))
				fs_walk(walk, rel);
		}
		else if (type == PGFILETYPE_REG && !walk->cleanup &&
				 strncmp(rel, walk->prefix, strlen(walk->prefix)) == 0 &&
				 bo_storage_name_is_valid(rel) && lstat(path, &st) == 0)
		{
			BoStorageEntry *e = palloc(sizeof(BoStorageEntry));

			e->name = rel;
			e->size = (uint64) st.st_size;
			e->modified = stat_mtime(&st);
			walk->entries = lappend(walk->entries, e);
			rel = NULL;
		}
		if (rel)
			pfree(rel);
		pfree(path);
	}
	FreeDir(d);
	pfree(dir);
}

/*
 * Order entries by name.
 */
static int
entry_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp(((BoStorageEntry *) lfirst(a))->name,
				  ((BoStorageEntry *) lfirst(b))->name);
}

/*
 * Objects whose names begin with "prefix", sorted.  The walk starts at the
 * directory the prefix names completely.
 */
static List *
fs_list(BoStorage *storage, const char *prefix)
{
	FsWalk		walk = {0};
	char	   *start = pstrdup(prefix);
	char	   *slash = strrchr(start, '/');

	walk.fs = (FsStorage *) storage->private;
	walk.prefix = prefix;
	if (slash)
		*slash = '\0';
	else
		start[0] = '\0';
	if (start[0])
		(void) bo_confine_path(object_path(walk.fs, start), FS_FIELD);
	fs_walk(&walk, start);
	list_sort(walk.entries, entry_cmp);
	return walk.entries;
}

/*
 * Delete an object and make that durable; a missing object is fine.
 */
static void
fs_delete(BoStorage *storage, const char *name)
{
	FsStorage  *fs = (FsStorage *) storage->private;
	char	   *path = object_path(fs, name);
	char	   *dir;

	handle_forget(fs, name);
	(void) bo_confine_path(path, FS_FIELD);
	if (unlink(path) != 0)
	{
		if (errno == ENOENT || errno == ENOTDIR)
			return;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", path)));
	}
	dir = parent_dir(path);
	fsync_directory(dir, NULL);
	pfree(dir);
	pfree(path);
}

/*
 * Remove temporary files not modified for older_than_seconds, in the
 * directory prefix names and below.
 */
static int
fs_cleanup(BoStorage *storage, const char *prefix, int64 older_than_seconds)
{
	FsWalk		walk = {0};
	char	   *start = pstrdup(prefix);

	/* the directory the prefix names (it ends in '/') */
	if (start[0] != '\0')
	{
		start[strlen(start) - 1] = '\0';
		(void) bo_confine_path(object_path((FsStorage *) storage->private, start), FS_FIELD);
	}
	walk.fs = (FsStorage *) storage->private;
	walk.prefix = prefix;
	walk.cleanup = true;
	walk.cutoff = GetCurrentTimestamp() - older_than_seconds * USECS_PER_SEC;
	fs_walk(&walk, start);
	return walk.removed;
}

const BoStorageDriver bo_fs_driver = {
	.type = "LOCAL_FILESYSTEM",
	.open = fs_open,
	.put_begin = fs_put_begin,
	.put_write = fs_put_write,
	.put_commit = fs_put_commit,
	.discard = fs_discard,
	.get = fs_get,
	.stat = fs_stat,
	.list = fs_list,
	.delete = fs_delete,
	.cleanup = fs_cleanup,
};

const BoStorageDriver bo_network_share_driver = {
	.type = "NETWORK_SHARE",
	.open = fs_open,
	.put_begin = fs_put_begin,
	.put_write = fs_put_write,
	.put_commit = fs_put_commit,
	.discard = fs_discard,
	.get = fs_get,
	.stat = fs_stat,
	.list = fs_list,
	.delete = fs_delete,
	.cleanup = fs_cleanup,
};
