/*-------------------------------------------------------------------------
 *
 * keys.c
 *		Envelope keys: key-encryption keys (KEKs) from files, per-object data
 *		keys wrapped in small write-once objects, and key rotation.
 *
 * A KEK is a file in backup_offline.key_directory: "<kek_id>.key" holding
 * exactly 32 random bytes, or "<kek_id>.passphrase" holding a passphrase
 * that Argon2id stretches to 32 bytes (parameters fixed in archive.h, since
 * changing them would change the key).  The file must be a regular file
 * (not a symbolic link) owned by the server's OS user and not accessible
 * by group or others.  KEKs live only in sodium_malloc'd memory (guarded
 * pages, locked where the system allows, wiped when freed), cached per
 * backend and re-read when the file changes; they are never stored in
 * tables, logged or shown.
 *
 * Each encrypted object gets a fresh random data key and a random 16-byte
 * key id.  The data key is wrapped (XChaCha20-Poly1305, random 24-byte
 * nonce, AD binding the KEK id and the key id) and stored as
 * "<object name>.key.<kek_id>".  Wrapped keys live beside their objects,
 * not inside them, so that rotation only writes new small objects: data
 * objects are write-once and never touched again, and a repository copied
 * elsewhere still carries its wraps.  The key id, in the authenticated
 * header of the data object and in the wrap's AD, ties the two together: a
 * wrap copied from another object is refused.
 *
 * IDENTIFICATION
 *		src/archive/keys.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "backup_offline.h"
#include "archive/archive.h"
#include "archive/keys.h"

PG_FUNCTION_INFO_V1(bo_rotate_key_sql);

#define WRAP_MAGIC "\x89" "BOK\r\n\x1a\n"
#define WRAP_MAGIC_LENGTH 8
#define WRAP_VERSION 1
#define WRAP_NONCE_LENGTH crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define WRAP_TAG_LENGTH crypto_aead_xchacha20poly1305_ietf_ABYTES
#define WRAP_MAX_LENGTH (WRAP_MAGIC_LENGTH + 2 + 1 + BO_ARCHIVE_KEK_ID_MAX + \
						 BO_ARCHIVE_KEY_ID_LENGTH + WRAP_NONCE_LENGTH + \
						 BO_DATA_KEY_LENGTH + WRAP_TAG_LENGTH)

/* Argon2id parameters for passphrase KEKs: part of the format */
#define KEK_PWHASH_OPSLIMIT 3
#define KEK_PWHASH_MEMLIMIT ((size_t) 64 * 1024 * 1024)
#define KEK_SALT_LENGTH 16
#define KEK_PASSPHRASE_MAX 1024

/* per-backend cache of KEKs, keyed by file path and file identity */
typedef struct KekCacheEntry
{
	char		path[MAXPGPATH];
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	struct timespec mtime;
	unsigned char *key;			/* sodium_malloc'd, BO_DATA_KEY_LENGTH */
} KekCacheEntry;

#define KEK_CACHE_SIZE 16
static KekCacheEntry kek_cache[KEK_CACHE_SIZE];
static int	kek_cache_next = 0;

static bool sodium_ready = false;

static void kek_missing_error(const char *kek_id) pg_attribute_noreturn();

/*
 * Initialise libsodium once per backend.
 */
void
bo_keys_init(void)
{
	if (sodium_ready)
		return;
	if (sodium_init() < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialise libsodium")));
	sodium_ready = true;
}

/*
 * Does kek_id match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ?
 */
bool
bo_kek_id_is_valid(const char *kek_id)
{
	size_t		len;
	size_t		i;

	if (kek_id == NULL)
		return false;
	len = strlen(kek_id);
	if (len < 1 || len > BO_ARCHIVE_KEK_ID_MAX)
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = kek_id[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (i > 0 && (c == '_' || c == '.' || c == '-'))
			continue;
		return false;
	}
	return true;
}

/*
 * Raise an error naming "field" unless kek_id is a valid key id.
 */
void
bo_kek_id_check(const char *kek_id, const char *field)
{
	if (!bo_kek_id_is_valid(kek_id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: \"%s\"", field, kek_id ? kek_id : ""),
				 errdetail("A key id is 1 to 64 letters, digits, \"_\", \".\" and \"-\", beginning with a letter or digit.")));
}

/*
 * backup_offline.default_key_id, or NULL when it is empty.
 */
const char *
bo_default_kek_id(void)
{
	if (bo_default_key_id == NULL || bo_default_key_id[0] == '\0')
		return NULL;
	return bo_default_key_id;
}

/*
 * A data key's id as 32 lower-case hex digits (palloc'd).
 */
char *
bo_key_id_hex(const uint8 *key_id)
{
	char	   *out = palloc(BO_ARCHIVE_KEY_ID_LENGTH * 2 + 1);

	sodium_bin2hex(out, BO_ARCHIVE_KEY_ID_LENGTH * 2 + 1, key_id, BO_ARCHIVE_KEY_ID_LENGTH);
	return out;
}

/*
 * A fresh random data key (sodium_malloc'd; free with bo_data_key_free)
 * and its random id.
 */
unsigned char *
bo_data_key_new(uint8 *key_id)
{
	unsigned char *key;

	bo_keys_init();
	key = sodium_malloc(BO_DATA_KEY_LENGTH);
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not allocate protected memory for a data key.")));
	randombytes_buf(key, BO_DATA_KEY_LENGTH);
	randombytes_buf(key_id, BO_ARCHIVE_KEY_ID_LENGTH);
	return key;
}

/*
 * Wipe and free a data key from bo_data_key_new or bo_key_unwrap.
 */
void
bo_data_key_free(unsigned char *data_key)
{
	if (data_key != NULL)
		sodium_free(data_key);
}

/*
 * Check a key file found by lstat: a regular file, ours, private.
 */
static void
kek_check_file(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key file \"%s\" is not a regular file", path),
				 errdetail("Key files must be regular files, not symbolic links or directories.")));
	if (st->st_uid != geteuid())
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key file \"%s\" is not owned by the server's operating-system user", path),
				 errhint("Change its owner to the user the server runs as.")));
	if ((st->st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key file \"%s\" is accessible by group or others", path),
				 errhint("Make it readable by its owner only, for example with \"chmod 600\".")));
}

/*
 * Read exactly len bytes of an open key file into buf; false on a short
 * read (errno set on an error).
 */
static bool
kek_read_all(int fd, unsigned char *buf, size_t len)
{
	size_t		done = 0;

	while (done < len)
	{
		ssize_t		r = read(fd, buf + done, len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
		{
			if (r == 0)
				errno = 0;
			return false;
		}
		done += r;
	}
	return true;
}

/*
 * Read a KEK file and derive the key; returns sodium_malloc'd key.
 */
static unsigned char *
kek_read(const char *path, const char *kek_id, bool passphrase, const struct stat *st)
{
	unsigned char *key;
	unsigned char *text = NULL;
	size_t		len = st->st_size;
	int			fd;
	struct stat fst;
	bool		ok;
	int			save_errno;

	if (!passphrase && len != BO_DATA_KEY_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key file \"%s\" does not hold exactly %d bytes", path, BO_DATA_KEY_LENGTH),
				 errhint("Create it with 32 random bytes, for example \"head -c 32 /dev/urandom\".")));
	if (passphrase && (len == 0 || len > KEK_PASSPHRASE_MAX))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("passphrase file \"%s\" must hold 1 to %d bytes", path, KEK_PASSPHRASE_MAX)));

	key = sodium_malloc(BO_DATA_KEY_LENGTH);
	if (passphrase)
		text = sodium_malloc(len);
	if (key == NULL || (passphrase && text == NULL))
	{
		if (key)
			sodium_free(key);
		if (text)
			sodium_free(text);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not allocate protected memory for a key.")));
	}

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY | O_NOFOLLOW);
	if (fd < 0)
	{
		save_errno = errno;
		sodium_free(key);
		if (text)
			sodium_free(text);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	/* the file read must be the file checked */
	ok = fstat(fd, &fst) == 0 && fst.st_dev == st->st_dev && fst.st_ino == st->st_ino &&
		fst.st_size == st->st_size;
	if (ok)
		ok = kek_read_all(fd, passphrase ? text : key, len);
	save_errno = errno;
	CloseTransientFile(fd);
	if (!ok)
	{
		sodium_free(key);
		if (text)
			sodium_free(text);
		errno = save_errno;
		if (errno != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", path)));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key file \"%s\" changed while it was read", path)));
	}

	if (passphrase)
	{
		unsigned char salt[KEK_SALT_LENGTH];
		char	   *saltinput = psprintf("backup_offline kek %s", kek_id);
		size_t		plen = len;
		int			rc;

		/* one trailing newline (LF or CRLF) is not part of the passphrase */
		if (plen > 0 && text[plen - 1] == '\n')
		{
			plen--;
			if (plen > 0 && text[plen - 1] == '\r')
				plen--;
		}
		if (plen == 0)
		{
			sodium_free(key);
			sodium_free(text);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("passphrase file \"%s\" holds an empty passphrase", path)));
		}
		crypto_generichash(salt, sizeof(salt), (const unsigned char *) saltinput,
						   strlen(saltinput), NULL, 0);
		pfree(saltinput);
		rc = crypto_pwhash(key, BO_DATA_KEY_LENGTH, (const char *) text, plen, salt,
						   KEK_PWHASH_OPSLIMIT, KEK_PWHASH_MEMLIMIT,
						   crypto_pwhash_ALG_ARGON2ID13);
		sodium_free(text);
		if (rc != 0)
		{
			sodium_free(key);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not derive key \"%s\" from its passphrase", kek_id),
					 errdetail("Argon2id needs %zu MiB of memory.", KEK_PWHASH_MEMLIMIT / (1024 * 1024))));
		}
	}
	return key;
}

/*
 * The KEK named kek_id, or NULL when neither of its files exists.  The
 * result points into the cache: use it before loading another KEK.
 */
static const unsigned char *
kek_load(const char *kek_id)
{
	char	   *keypath;
	char	   *passpath;
	struct stat kst;
	struct stat pst;
	bool		has_key;
	bool		has_pass;
	const char *path;
	const struct stat *st;
	KekCacheEntry *e;
	int			i;

	Assert(bo_kek_id_is_valid(kek_id));
	bo_keys_init();
	if (bo_key_directory == NULL || bo_key_directory[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backup_offline.key_directory is not set"),
				 errhint("Set it to the directory holding key files such as \"%s.key\".", kek_id)));

	keypath = psprintf("%s/%s.key", bo_key_directory, kek_id);
	passpath = psprintf("%s/%s.passphrase", bo_key_directory, kek_id);
	has_key = lstat(keypath, &kst) == 0;
	if (!has_key && errno != ENOENT && errno != ENOTDIR)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", keypath)));
	has_pass = lstat(passpath, &pst) == 0;
	if (!has_pass && errno != ENOENT && errno != ENOTDIR)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", passpath)));
	if (has_key && has_pass)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key \"%s\" has both a key file and a passphrase file", kek_id),
				 errhint("Remove one of \"%s\" and \"%s\".", keypath, passpath)));
	if (!has_key && !has_pass)
		return NULL;
	path = has_key ? keypath : passpath;
	st = has_key ? &kst : &pst;
	kek_check_file(path, st);

	for (i = 0; i < KEK_CACHE_SIZE; i++)
	{
		e = &kek_cache[i];
		if (e->key != NULL && strcmp(e->path, path) == 0 &&
			e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
			e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec)
			return e->key;
	}

	/* not cached (or changed): read it, then replace the same path or the oldest entry */
	{
		unsigned char *key = kek_read(path, kek_id, !has_key, st);

		e = NULL;
		for (i = 0; i < KEK_CACHE_SIZE; i++)
			if (kek_cache[i].key != NULL && strcmp(kek_cache[i].path, path) == 0)
				e = &kek_cache[i];
		if (e == NULL)
		{
			e = &kek_cache[kek_cache_next];
			kek_cache_next = (kek_cache_next + 1) % KEK_CACHE_SIZE;
		}
		if (e->key != NULL)
			sodium_free(e->key);
		strlcpy(e->path, path, sizeof(e->path));
		e->dev = st->st_dev;
		e->ino = st->st_ino;
		e->size = st->st_size;
		e->mtime = st->st_mtim;
		e->key = key;
	}
	return e->key;
}

/*
 * The error for a KEK that has no file.
 */
static void
kek_missing_error(const char *kek_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("key-encryption key \"%s\" does not exist", kek_id),
			 errdetail("Neither \"%s.key\" nor \"%s.passphrase\" is in backup_offline.key_directory.",
					   kek_id, kek_id)));
}

/*
 * Raise an error unless the KEK kek_id has a usable key file.
 */
void
bo_kek_require(const char *kek_id)
{
	if (kek_load(kek_id) == NULL)
		kek_missing_error(kek_id);
}

/*
 * The name of the wrap of object_name's data key under kek_id.
 */
char *
bo_key_wrap_name(const char *object_name, const char *kek_id)
{
	return psprintf("%s.key.%s", object_name, kek_id);
}

/*
 * The associated data of a wrap: magic || version || kek_id || key_id.
 */
static size_t
wrap_ad(unsigned char *ad, const char *kek_id, const uint8 *key_id)
{
	size_t		klen = strlen(kek_id);
	size_t		n = 0;

	memcpy(ad, WRAP_MAGIC, WRAP_MAGIC_LENGTH);
	n += WRAP_MAGIC_LENGTH;
	ad[n++] = (WRAP_VERSION >> 8) & 0xFF;
	ad[n++] = WRAP_VERSION & 0xFF;
	memcpy(ad + n, kek_id, klen);
	n += klen;
	memcpy(ad + n, key_id, BO_ARCHIVE_KEY_ID_LENGTH);
	n += BO_ARCHIVE_KEY_ID_LENGTH;
	return n;
}

/*
 * Write "<object_name>.key.<kek_id>": data_key wrapped under kek_id.
 */
void
bo_key_wrap_put(BoStorage *storage, const char *object_name, const char *kek_id,
				const uint8 *key_id, const unsigned char *data_key)
{
	const unsigned char *kek;
	unsigned char buf[WRAP_MAX_LENGTH];
	unsigned char ad[WRAP_MAX_LENGTH];
	size_t		adlen;
	size_t		klen = strlen(kek_id);
	size_t		n = 0;
	unsigned long long clen;
	char	   *name;

	bo_kek_id_check(kek_id, "key id");
	kek = kek_load(kek_id);
	if (kek == NULL)
		kek_missing_error(kek_id);

	memcpy(buf, WRAP_MAGIC, WRAP_MAGIC_LENGTH);
	n += WRAP_MAGIC_LENGTH;
	buf[n++] = (WRAP_VERSION >> 8) & 0xFF;
	buf[n++] = WRAP_VERSION & 0xFF;
	buf[n++] = (unsigned char) klen;
	memcpy(buf + n, kek_id, klen);
	n += klen;
	memcpy(buf + n, key_id, BO_ARCHIVE_KEY_ID_LENGTH);
	n += BO_ARCHIVE_KEY_ID_LENGTH;
	randombytes_buf(buf + n, WRAP_NONCE_LENGTH);
	adlen = wrap_ad(ad, kek_id, key_id);
	if (crypto_aead_xchacha20poly1305_ietf_encrypt(buf + n + WRAP_NONCE_LENGTH, &clen,
												   data_key, BO_DATA_KEY_LENGTH,
												   ad, adlen, NULL, buf + n, kek) != 0)
		elog(ERROR, "could not wrap a data key");
	n += WRAP_NONCE_LENGTH + clen;

	name = bo_key_wrap_name(object_name, kek_id);
	bo_storage_put(storage, name, buf, n);
	pfree(name);
}

/*
 * Read the wrap object "name" made under kek_id and unwrap it with kek.
 * On success returns a sodium_malloc'd data key and sets *key_id_out (if
 * given); when key_id is given, a wrap of another key id is refused.  NULL
 * when the object is not a wrap under kek_id or does not decrypt.
 */
static unsigned char *
wrap_open(BoStorage *storage, const char *name, const char *kek_id,
		  const unsigned char *kek, const uint8 *key_id, uint8 *key_id_out)
{
	unsigned char buf[WRAP_MAX_LENGTH + 1];
	unsigned char ad[WRAP_MAX_LENGTH];
	size_t		len;
	size_t		klen = strlen(kek_id);
	size_t		n = 0;
	size_t		adlen;
	unsigned long long plen;
	unsigned char *data_key;

	len = bo_storage_get(storage, name, 0, buf, sizeof(buf));
	if (len != WRAP_MAGIC_LENGTH + 3 + klen + BO_ARCHIVE_KEY_ID_LENGTH +
		WRAP_NONCE_LENGTH + BO_DATA_KEY_LENGTH + WRAP_TAG_LENGTH)
		return NULL;
	if (memcmp(buf, WRAP_MAGIC, WRAP_MAGIC_LENGTH) != 0)
		return NULL;
	n = WRAP_MAGIC_LENGTH;
	if (((buf[n] << 8) | buf[n + 1]) != WRAP_VERSION)
		return NULL;
	n += 2;
	if (buf[n] != klen || memcmp(buf + n + 1, kek_id, klen) != 0)
		return NULL;
	n += 1 + klen;
	if (key_id != NULL && memcmp(buf + n, key_id, BO_ARCHIVE_KEY_ID_LENGTH) != 0)
		return NULL;
	adlen = wrap_ad(ad, kek_id, buf + n);
	if (key_id_out)
		memcpy(key_id_out, buf + n, BO_ARCHIVE_KEY_ID_LENGTH);
	n += BO_ARCHIVE_KEY_ID_LENGTH;

	data_key = sodium_malloc(BO_DATA_KEY_LENGTH);
	if (data_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not allocate protected memory for a data key.")));
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(data_key, &plen, NULL,
												   buf + n + WRAP_NONCE_LENGTH,
												   BO_DATA_KEY_LENGTH + WRAP_TAG_LENGTH,
												   ad, adlen, buf + n, kek) != 0 ||
		plen != BO_DATA_KEY_LENGTH)
	{
		sodium_free(data_key);
		return NULL;
	}
	return data_key;
}

/* list_sort comparator for C strings */
static int
cmp_strings(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

/*
 * The KEK ids under which object_name's data key is wrapped (sorted).
 */
List *
bo_key_wraps(BoStorage *storage, const char *object_name)
{
	char	   *prefix = psprintf("%s.key.", object_name);
	size_t		plen = strlen(prefix);
	List	   *entries = bo_storage_list(storage, prefix);
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, entries)
	{
		BoStorageEntry *e = (BoStorageEntry *) lfirst(lc);

		if (strncmp(e->name, prefix, plen) == 0 && bo_kek_id_is_valid(e->name + plen))
			result = lappend(result, pstrdup(e->name + plen));
	}
	list_sort(result, cmp_strings);
	pfree(prefix);
	return result;
}

/*
 * Join a list of C strings as "a", "b" (palloc'd); "none" when empty.
 */
static char *
join_quoted(List *items)
{
	StringInfoData s;
	ListCell   *lc;

	if (items == NIL)
		return pstrdup("none");
	initStringInfo(&s);
	foreach(lc, items)
		appendStringInfo(&s, "%s\"%s\"", s.len > 0 ? ", " : "", (char *) lfirst(lc));
	return s.data;
}

/*
 * The data key of object_name with id key_id, unwrapped with the first KEK
 * whose file is present and that opens its wrap.  NULL, with *problem
 * saying which key ids were tried and why each failed, when none does.
 * Broken key files (permissions, size) raise ERROR.
 */
unsigned char *
bo_key_unwrap(BoStorage *storage, const char *object_name, const uint8 *key_id,
			  BoKeyProblem *problem)
{
	List	   *wraps = bo_key_wraps(storage, object_name);
	List	   *missing = NIL;
	List	   *wrong = NIL;
	ListCell   *lc;
	char	   *hex = bo_key_id_hex(key_id);

	foreach(lc, wraps)
	{
		char	   *kek_id = (char *) lfirst(lc);
		const unsigned char *kek = kek_load(kek_id);
		unsigned char *data_key;
		char	   *name;

		if (kek == NULL)
		{
			missing = lappend(missing, kek_id);
			continue;
		}
		name = bo_key_wrap_name(object_name, kek_id);
		data_key = wrap_open(storage, name, kek_id, kek, key_id, NULL);
		pfree(name);
		if (data_key != NULL)
			return data_key;
		wrong = lappend(wrong, kek_id);
	}

	if (wraps == NIL)
	{
		problem->message = psprintf("object \"%s\" has no wrapped data key", object_name);
		problem->detail = psprintf("No key object \"%s.key.<key id>\" holds its data key %s.",
								   object_name, hex);
	}
	else
	{
		problem->message = psprintf("no key-encryption key opens the data key of object \"%s\"",
									object_name);
		problem->detail = psprintf("Its data key %s is wrapped under key ids %s; "
								   "key files missing from backup_offline.key_directory: %s; "
								   "key files that do not open their wrap (wrong key, or a damaged key object): %s.",
								   hex, join_quoted(wraps), join_quoted(missing), join_quoted(wrong));
	}
	return NULL;
}

/*
 * bo_key_wrap_put, wiping data_key if it fails.
 */
static void
wrap_put_freeing(BoStorage *storage, const char *object, const char *kek_id,
				 const uint8 *key_id, unsigned char *data_key)
{
	PG_TRY();
	{
		bo_key_wrap_put(storage, object, kek_id, key_id, data_key);
	}
	PG_CATCH();
	{
		bo_data_key_free(data_key);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * backup_offline.rotate_key(storage jsonb, old_key_id text, new_key_id text,
 *		prefix text DEFAULT '', remove_old boolean DEFAULT false) RETURNS bigint
 *
 * Re-wrap under new_key_id the data key of every object under prefix that
 * has a wrap under old_key_id, writing "<name>.key.<new_key_id>" objects
 * (existing ones are kept); data objects are never rewritten.  With
 * remove_old, the old wraps are deleted after every new wrap is committed,
 * and only where the new wrap opens to the same data key.  Returns the
 * number of wraps written.
 */
Datum
bo_rotate_key_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *dest;
	char	   *old_id;
	char	   *new_id;
	char	   *prefix;
	bool		remove_old;
	BoStorage  *storage;
	List	   *entries;
	List	   *to_remove = NIL;
	ListCell   *lc;
	char	   *suffix;
	size_t		slen;
	int64		written = 0;
	MemoryContext loopcxt;
	MemoryContext oldcxt;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser to rotate keys")));
	dest = PG_GETARG_JSONB_P(0);
	old_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	new_id = text_to_cstring(PG_GETARG_TEXT_PP(2));
	prefix = text_to_cstring(PG_GETARG_TEXT_PP(3));
	remove_old = PG_GETARG_BOOL(4);

	bo_kek_id_check(old_id, "old_key_id");
	bo_kek_id_check(new_id, "new_key_id");
	if (strcmp(old_id, new_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("old_key_id and new_key_id are both \"%s\"", old_id),
				 errdetail("Rotation re-wraps data keys under a different key id.")));
	/* both keys must be usable before anything is written */
	if (kek_load(old_id) == NULL)
		kek_missing_error(old_id);
	if (kek_load(new_id) == NULL)
		kek_missing_error(new_id);

	storage = bo_storage_open(dest);
	entries = bo_storage_list(storage, prefix);
	suffix = psprintf(".key.%s", old_id);
	slen = strlen(suffix);

	loopcxt = AllocSetContextCreate(CurrentMemoryContext, "rotate_key",
									ALLOCSET_DEFAULT_SIZES);
	foreach(lc, entries)
	{
		BoStorageEntry *e = (BoStorageEntry *) lfirst(lc);
		size_t		nlen = strlen(e->name);
		char	   *object;
		char	   *new_name;
		unsigned char *data_key;
		uint8		key_id[BO_ARCHIVE_KEY_ID_LENGTH];
		BoStorageStat st;

		CHECK_FOR_INTERRUPTS();
		if (nlen <= slen || strcmp(e->name + nlen - slen, suffix) != 0)
			continue;

		oldcxt = MemoryContextSwitchTo(loopcxt);
		object = pnstrdup(e->name, nlen - slen);
		data_key = wrap_open(storage, e->name, old_id, kek_load(old_id), NULL, key_id);
		if (data_key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("key object \"%s\" does not open with key \"%s\"", e->name, old_id),
					 errdetail("The key file is not the key the data key was wrapped with, or the key object is damaged; nothing was removed.")));
		new_name = bo_key_wrap_name(object, new_id);
		if (bo_storage_stat(storage, new_name, &st))
		{
			if (remove_old)
			{
				unsigned char *other = wrap_open(storage, new_name, new_id,
												 kek_load(new_id), key_id, NULL);
				bool		same = other != NULL &&
					sodium_memcmp(other, data_key, BO_DATA_KEY_LENGTH) == 0;

				bo_data_key_free(other);
				if (!same)
				{
					bo_data_key_free(data_key);
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("key object \"%s\" does not open to the data key of \"%s\"",
									new_name, e->name),
							 errdetail("The old wrap is kept; nothing was removed.")));
				}
			}
		}
		else
		{
			wrap_put_freeing(storage, object, new_id, key_id, data_key);
			written++;
		}
		bo_data_key_free(data_key);
		MemoryContextSwitchTo(oldcxt);
		if (remove_old)
			to_remove = lappend(to_remove, pstrdup(e->name));
		MemoryContextReset(loopcxt);
	}

	/* every new wrap is committed: only now drop the old ones */
	foreach(lc, to_remove)
	{
		CHECK_FOR_INTERRUPTS();
		bo_storage_delete(storage, (char *) lfirst(lc));
	}
	MemoryContextDelete(loopcxt);
	PG_RETURN_INT64(written);
}
