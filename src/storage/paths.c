/*-------------------------------------------------------------------------
 *
 * paths.c
 *		Confine server file paths to backup_offline.allowed_paths.
 *
 * Every path the server writes backup files to (a LOCAL_FILESYSTEM or
 * NETWORK_SHARE destination, a FILE_LEVEL export) must lie under one of the
 * superuser-set roots in backup_offline.allowed_paths.  The check is made
 * twice over:
 *
 *	- lexically: the path is absolute, has no "." or ".." component, and after
 *	  canonicalisation starts with a root followed by "/" or the end;
 *	- physically: the longest prefix of the path that exists is resolved with
 *	  realpath(3), and must lie under the resolved root, so a symbolic link
 *	  inside a root cannot lead out of it.
 *
 * The path need not exist yet (a destination directory is created on first
 * use).  The storage driver repeats the physical check when it opens files,
 * since links can change between configuration and use.
 *
 * Errors are 22023 (invalid parameter value) and never list the allowed
 * roots: the setting is superuser-only.
 *
 * IDENTIFICATION
 *		src/storage/paths.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <stdlib.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "backup_offline.h"
#include "storage/paths.h"

PG_FUNCTION_INFO_V1(bo_confine_path_sql);

/*
 * Is "path" equal to "root" or below it?  Both canonical and absolute.
 */
static bool
path_is_under(const char *path, const char *root)
{
	size_t		len = strlen(root);

	if (strcmp(root, "/") == 0)
		return true;
	return strncmp(path, root, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/*
 * realpath() of the longest existing prefix of "path", with the rest
 * appended; palloc'd.
 */
static char *
resolve_existing_prefix(const char *path)
{
	char	   *prefix = pstrdup(path);
	char		resolved[PATH_MAX];

	for (;;)
	{
		char	   *slash;

		if (realpath(prefix, resolved) != NULL)
		{
			const char *rest = path + strlen(prefix);

			if (strcmp(resolved, "/") == 0 && rest[0] == '/')
				return pstrdup(rest);
			return psprintf("%s%s", resolved, rest);
		}
		slash = strrchr(prefix, '/');
		if (slash == NULL || slash == prefix)
			return pstrdup(path);
		*slash = '\0';
	}
}

/*
 * Check that "path" lies under backup_offline.allowed_paths and return its
 * canonical form.  "field" names the input (a JSON path) in errors.
 */
char *
bo_confine_path(const char *path, const char *field)
{
	char	   *canon;
	char	   *real;
	char	   *rawstring;
	List	   *roots;
	ListCell   *lc;
	const char *p;

	if (path == NULL || path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is required", field),
				 errhint("Give an absolute directory under one of the server's allowed backup paths.")));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: \"%s\" is not an absolute path", field, path),
				 errhint("Give an absolute directory such as \"/var/backups/care\".")));

	/* reject "." and ".." components before canonicalising them away */
	for (p = path; *p; p++)
	{
		if (p[0] == '/' && p[1] == '.' &&
			(p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || p[3] == '\0'))))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s: \"%s\" contains a \".\" or \"..\" component", field, path),
					 errhint("Give the directory without relative components.")));
	}

	canon = pstrdup(path);
	canonicalize_path(canon);

	if (bo_allowed_paths == NULL || bo_allowed_paths[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: the server allows no directory for backup files", field),
				 errdetail("The setting backup_offline.allowed_paths is empty."),
				 errhint("A superuser lists the permitted directories in backup_offline.allowed_paths.")));

	real = resolve_existing_prefix(canon);

	rawstring = pstrdup(bo_allowed_paths);
	if (!SplitDirectoriesString(rawstring, ',', &roots))
		elog(ERROR, "invalid list syntax in backup_offline.allowed_paths");

	foreach(lc, roots)
	{
		char	   *root = (char *) lfirst(lc);
		char	   *real_root;

		if (!path_is_under(canon, root))
			continue;
		real_root = resolve_existing_prefix(root);
		if (path_is_under(real, real_root))
			return canon;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: \"%s\" leads outside the allowed backup directories through a symbolic link",
						field, path),
				 errhint("Give a directory whose real location is under an allowed backup directory.")));
	}

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s: \"%s\" is not under an allowed backup directory", field, path),
			 errhint("A superuser lists the permitted directories in backup_offline.allowed_paths.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * confine_path(path text, field text DEFAULT 'path') RETURNS text
 *
 * SQL face of bo_confine_path: the canonical path, or an error.
 */
Datum
bo_confine_path_sql(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *field = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(bo_confine_path(path, field)));
}
