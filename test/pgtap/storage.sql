-- The storage functions on LOCAL_FILESYSTEM and NETWORK_SHARE destinations:
-- round trips, ranged gets, listing, stat, delete, write-once, object names,
-- confinement to backup_offline.allowed_paths, permissions and groups,
-- types without a driver, and errors in the middle of a put (no temporary
-- file, no object).  Files are not transactional: everything is written in
-- a fresh directory that is removed at the end.
BEGIN;
SET LOCAL timezone = 'UTC';
SELECT plan(116);

CREATE TEMP TABLE t (root text, blob bytea);
INSERT INTO t
SELECT current_setting('backup_offline.allowed_paths') || '/pgtap_storage_' || md5(random()::text),
	   (SELECT convert_to(string_agg(md5(g::text), ''), 'UTF8') FROM generate_series(1, 32768) g);

-- a LOCAL_FILESYSTEM destination at the test directory (or below it), with extra keys
CREATE FUNCTION pg_temp.d(sub text DEFAULT '', extra jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', root || sub) || extra FROM t
$$;
-- the test directory
CREATE FUNCTION pg_temp.root() RETURNS text LANGUAGE sql AS $$ SELECT root FROM t $$;
-- run a shell command as the server's OS user; its output
CREATE TEMP TABLE shell_out (n serial, line text);
CREATE FUNCTION pg_temp.sh(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	TRUNCATE shell_out;
	EXECUTE format('COPY shell_out (line) FROM PROGRAM %L', cmd);
	SELECT string_agg(line, E'\n' ORDER BY n) INTO r FROM shell_out;
	RETURN coalesce(r, '');
END
$$;
-- temporary files anywhere under the test directory
CREATE FUNCTION pg_temp.temp_files() RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.sh(format('find %s -name ''.tmp.*'' | sort', pg_temp.root()))
$$;
-- names listed under prefix, in the order returned
CREATE FUNCTION pg_temp.names(prefix text DEFAULT '') RETURNS text[] LANGUAGE sql AS $$
	SELECT coalesce(array_agg(l.name ORDER BY l.ord), '{}')
	  FROM backup_offline.storage_list(pg_temp.d(), prefix) WITH ORDINALITY AS l(name, size, modified, ord)
$$;

-- ---- round trips --------------------------------------------------------
SELECT lives_ok($$SELECT backup_offline.storage_put(pg_temp.d(), 'empty', '')$$,
				'put of 0 bytes (the destination directory is created)');
SELECT is(backup_offline.storage_get(pg_temp.d(), 'empty'), ''::bytea, 'get of 0 bytes');
SELECT lives_ok($$SELECT backup_offline.storage_put(pg_temp.d(), 'a/one', '\x2a')$$, 'put of 1 byte into a new directory');
SELECT is(backup_offline.storage_get(pg_temp.d(), 'a/one'), '\x2a'::bytea, 'get of 1 byte');
SELECT lives_ok($$SELECT backup_offline.storage_put(pg_temp.d(), 'big/x/one.bin', (SELECT blob FROM t))$$,
				'put of 1 MiB two directories deep');
SELECT is(length(blob), 1048576, 'the test blob is 1 MiB') FROM t;
SELECT ok(backup_offline.storage_get(pg_temp.d(), 'big/x/one.bin') = blob, 'get of 1 MiB returns the same bytes') FROM t;
SELECT is(pg_temp.sh(format('sha256sum < %s/big/x/one.bin | cut -c1-64', root)),
		  encode(sha256(blob), 'hex'), 'the file holds exactly the bytes put') FROM t;

-- ---- ranged gets -----------------------------------------------------------
SELECT is(backup_offline.storage_get(pg_temp.d(), 'big/x/one.bin', 1000, 100),
		  substring(blob FROM 1001 FOR 100), 'get of 100 bytes at offset 1000') FROM t;
SELECT is(backup_offline.storage_get(pg_temp.d(), 'big/x/one.bin', 1048570, 100),
		  substring(blob FROM 1048571), 'a range past the end returns the last 6 bytes') FROM t;
SELECT is(backup_offline.storage_get(pg_temp.d(), 'big/x/one.bin', 1048576, 10), ''::bytea,
		  'a range starting at the end is empty');
SELECT is(backup_offline.storage_get(pg_temp.d(), 'big/x/one.bin', 5000000), ''::bytea,
		  'an offset beyond the end with no length is empty');
SELECT is(backup_offline.storage_get(pg_temp.d(), 'big/x/one.bin', 1048000),
		  substring(blob FROM 1048001), 'no length: the rest of the object') FROM t;
SELECT is(backup_offline.storage_get(pg_temp.d(), 'big/x/one.bin', 0, 0), ''::bytea, 'length 0 is empty');
SELECT is(backup_offline.storage_get(pg_temp.d(), 'a/one', 0, 1), '\x2a'::bytea, 'a 1-byte range of a 1-byte object');
SELECT throws_ok($$SELECT backup_offline.storage_get(pg_temp.d(), 'a/one', -1, 1)$$,
				 '22023', 'offset must not be negative', 'a negative offset is refused');
SELECT throws_ok($$SELECT backup_offline.storage_get(pg_temp.d(), 'a/one', 0, -1)$$,
				 '22023', 'length must not be negative', 'a negative length is refused');
SELECT throws_ok($$SELECT backup_offline.storage_get(pg_temp.d(), 'big/x/one.bin', 0, 2000000000)$$,
				 '54000', 'cannot return 2000000000 bytes of object "big/x/one.bin" at once',
				 'more than a bytea holds is refused before reading');
SELECT throws_ok($$SELECT backup_offline.storage_get(pg_temp.d(), 'nothing/here')$$,
				 '58P01', 'object "nothing/here" does not exist', 'get of a missing object');
SELECT throws_ok($$SELECT backup_offline.storage_get(pg_temp.d(), 'a/one/deeper', 0, 1)$$,
				 '58P01', 'object "a/one/deeper" does not exist', 'get below an object is a missing object');
SELECT throws_ok($$SELECT backup_offline.storage_get(pg_temp.d(), 'big/x', 0, 1)$$,
				 '58P01', 'object "big/x" does not exist', 'a directory is not an object');

-- ---- write-once -------------------------------------------------------------
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d(), 'a/one', '\x00')$$,
				 '42710', 'object "a/one" already exists', 'a second put of the same name is refused');
SELECT is(backup_offline.storage_get(pg_temp.d(), 'a/one'), '\x2a'::bytea, 'the object is unchanged');
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d(), 'big/x', '\x00')$$,
				 '42710', 'object "big/x" already exists', 'a put over a directory is refused');
SELECT is(pg_temp.temp_files(), '', 'refused puts leave no temporary file');

-- ---- stat ----------------------------------------------------------------
SELECT is(backup_offline.storage_stat(pg_temp.d(), 'big/x/one.bin') - 'modified',
		  '{"name": "big/x/one.bin", "size": 1048576}'::jsonb, 'stat: name and size');
SELECT ok((backup_offline.storage_stat(pg_temp.d(), 'big/x/one.bin') ->> 'modified')::timestamptz
			BETWEEN now() - interval '1 minute' AND clock_timestamp() + interval '1 second',
		  'stat: modified is the time of the put');
SELECT is(date_trunc('second', (backup_offline.storage_stat(pg_temp.d(), 'big/x/one.bin') ->> 'modified')::timestamptz),
		  (pg_stat_file(root || '/big/x/one.bin')).modification, 'stat: modified agrees with pg_stat_file') FROM t;
SELECT is(backup_offline.storage_stat(pg_temp.d(), 'empty') ->> 'size', '0', 'stat of an empty object');
SELECT is(backup_offline.storage_stat(pg_temp.d(), 'missing'), NULL, 'stat of a missing object is NULL');
SELECT is(backup_offline.storage_stat(pg_temp.d(), 'big/x'), NULL, 'stat of a directory is NULL');

-- ---- list ------------------------------------------------------------------
SELECT backup_offline.storage_put(pg_temp.d(), n, convert_to(n, 'UTF8'))
  FROM unnest(ARRAY['ab.txt', 'a/Z', 'a/b-c/d', 'a.b', 'b/a']) n;
SELECT is(pg_temp.names(), ARRAY['a.b', 'a/Z', 'a/b-c/d', 'a/one', 'ab.txt', 'b/a', 'big/x/one.bin', 'empty'],
		  'everything, sorted by bytes');
SELECT is(pg_temp.names('a/'), ARRAY['a/Z', 'a/b-c/d', 'a/one'], 'prefix "a/": the directory a');
SELECT is(pg_temp.names('a'), ARRAY['a.b', 'a/Z', 'a/b-c/d', 'a/one', 'ab.txt'], 'prefix "a": any name beginning with a');
SELECT is(pg_temp.names('a/b'), ARRAY['a/b-c/d'], 'prefix "a/b": a partial directory name');
SELECT is(pg_temp.names('a/b-c/'), ARRAY['a/b-c/d'], 'prefix of a nested directory');
SELECT is(pg_temp.names('big/x/one.bin'), ARRAY['big/x/one.bin'], 'a whole name as prefix');
SELECT is(pg_temp.names('zzz/'), '{}'::text[], 'a prefix matching nothing');
SELECT is(size, 1048576::bigint, 'list reports sizes')
  FROM backup_offline.storage_list(pg_temp.d(), 'big/');
SELECT is(date_trunc('second', modified), (pg_stat_file(root || '/a/one')).modification, 'list reports modification times')
  FROM backup_offline.storage_list(pg_temp.d(), 'a/one'), t;
SELECT throws_ok($$SELECT * FROM backup_offline.storage_list(pg_temp.d(), '../')$$,
				 '22023', 'invalid object name prefix "../"', 'a prefix with ".." is refused');
SELECT throws_ok($$SELECT * FROM backup_offline.storage_list(pg_temp.d(), '/etc')$$,
				 '22023', 'invalid object name prefix "/etc"', 'an absolute prefix is refused');
SELECT is((SELECT count(*) FROM backup_offline.storage_list(pg_temp.d('/not/yet'))), 0::bigint,
		  'a destination that does not exist yet lists nothing');

-- temporary files (as a crash leaves them) and other strangers are not listed
SELECT pg_temp.sh(format('touch %1$s/.tmp.1.1.x %1$s/a/.tmp.2.2.one "%1$s/a/not valid" && ln -s /etc/passwd %1$s/a/passwd && echo',
						 pg_temp.root()));
SELECT is(pg_temp.names(), ARRAY['a.b', 'a/Z', 'a/b-c/d', 'a/one', 'ab.txt', 'b/a', 'big/x/one.bin', 'empty'],
		  'temporary files, invalid names and symbolic links are not listed');

-- ---- cleanup of temporary files ---------------------------------------------
SELECT pg_temp.sh(format('touch -d "2 hours ago" %s/a/.tmp.2.2.one && echo', pg_temp.root()));
SELECT is(backup_offline.storage_cleanup(pg_temp.d()), 1, 'cleanup removes the temporary file older than an hour');
SELECT is(pg_temp.temp_files(), pg_temp.root() || '/.tmp.1.1.x', 'the recent temporary file stays');
SELECT is(backup_offline.storage_cleanup(pg_temp.d(), '0'), 1, 'cleanup with 0 removes it too');
SELECT is(pg_temp.temp_files(), '', 'no temporary file is left');
SELECT is(pg_temp.names('a/'), ARRAY['a/Z', 'a/b-c/d', 'a/one'], 'cleanup removes no object');
SELECT throws_ok($$SELECT backup_offline.storage_cleanup(pg_temp.d(), '-1 hour')$$,
				 '22023', 'older_than must not be negative', 'a negative age is refused');

-- ---- delete ----------------------------------------------------------------
SELECT lives_ok($$SELECT backup_offline.storage_delete(pg_temp.d(), 'ab.txt')$$, 'delete');
SELECT is(backup_offline.storage_stat(pg_temp.d(), 'ab.txt'), NULL, 'a deleted object is gone');
SELECT ok(NOT 'ab.txt' = ANY (pg_temp.names()), 'and no longer listed');
SELECT lives_ok($$SELECT backup_offline.storage_delete(pg_temp.d(), 'ab.txt')$$, 'deleting a missing object is no error');
SELECT lives_ok($$SELECT backup_offline.storage_put(pg_temp.d(), 'ab.txt', '\x01')$$, 'a deleted name can be written again');
SELECT throws_ok($$SELECT backup_offline.storage_delete(pg_temp.d(), 'big/x')$$,
				 '42809', NULL, 'a directory is not deleted');

-- ---- object names ------------------------------------------------------------
CREATE TEMP TABLE bad_names (name text, problem text);
INSERT INTO bad_names VALUES
	('../escape', 'a ".." component'),
	('a/../../escape', 'a ".." component inside'),
	('a/./b', 'a "." component'),
	('/etc/passwd', 'an absolute name'),
	('', 'an empty name'),
	('a//b', 'an empty component'),
	('a/', 'a trailing slash'),
	('with space', 'a space'),
	('semi;colon', 'a semicolon'),
	('caf' || chr(233), 'a non-ASCII letter'),
	('back\slash', 'a backslash'),
	('a/.tmp.1.2.x', 'a reserved temporary name'),
	(repeat('n', 1025), 'a name of 1025 bytes');
SELECT throws_ok(format('SELECT backup_offline.storage_put(pg_temp.d(), %L, ''\x00'')', name),
				 '22023', format('invalid object name "%s"', name), 'put refuses ' || problem)
  FROM bad_names ORDER BY name;
SELECT throws_ok($$SELECT backup_offline.storage_get(pg_temp.d(), '../x')$$,
				 '22023', 'invalid object name "../x"', 'get refuses a bad name');
SELECT throws_ok($$SELECT backup_offline.storage_delete(pg_temp.d(), 'a/../b')$$,
				 '22023', 'invalid object name "a/../b"', 'delete refuses a bad name');
SELECT throws_ok($$SELECT backup_offline.storage_stat(pg_temp.d(), '')$$,
				 '22023', 'invalid object name ""', 'stat refuses a bad name');
SELECT lives_ok(format('SELECT backup_offline.storage_put(pg_temp.d(), %L, ''\x00'')', repeat('n', 200) || '/' || repeat('m', 200)),
				'a long name of two 200-byte components is fine');

-- ---- confinement -------------------------------------------------------------
SELECT pg_temp.sh(format('ln -s /tmp %1$s/escape && mkdir -p %1$s/inside && ln -s %1$s/inside %1$s/a/inlink && echo', pg_temp.root()));
SELECT throws_ok($$SELECT backup_offline.storage_put('{"type": "LOCAL_FILESYSTEM", "path": "/etc/bo"}', 'x', '\x00')$$,
				 '22023', 'invalid storageDestination.path: "/etc/bo" is not under an allowed backup directory',
				 'a destination outside allowed_paths is refused');
SELECT throws_ok(format($$SELECT backup_offline.storage_list(%L)$$, pg_temp.d('/escape/x')),
				 '22023', format('invalid storageDestination.path: "%s/escape/x" leads outside the allowed backup directories through a symbolic link', pg_temp.root()),
				 'a destination through a symbolic link leading out is refused');
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d(), 'escape/x', '\x00')$$,
				 '22023', format('invalid storageDestination.path: "%s/escape/x" leads outside the allowed backup directories through a symbolic link', pg_temp.root()),
				 'an object name through a symbolic link leading out is refused');
SELECT throws_ok(format('SELECT backup_offline.storage_put(pg_temp.d(), %L, ''\x00'')', 'escape/' || right(pg_temp.root(), 12) || '/x'),
				 '22023', format('invalid storageDestination.path: "%s/escape/%s" leads outside the allowed backup directories through a symbolic link', pg_temp.root(), right(pg_temp.root(), 12)),
				 'no directory is created through a symbolic link leading out');
SELECT is(pg_temp.sh(format('ls -d /tmp/%s 2>/dev/null; echo', right(pg_temp.root(), 12))), '', 'nothing was written outside');
SELECT throws_ok($$SELECT * FROM backup_offline.storage_list(pg_temp.d(), 'escape/')$$,
				 '22023', format('invalid storageDestination.path: "%s/escape" leads outside the allowed backup directories through a symbolic link', pg_temp.root()),
				 'list does not follow a symbolic link leading out');
SELECT throws_ok($$SELECT backup_offline.storage_get(pg_temp.d(), 'a/passwd')$$,
				 '22023', format('invalid storageDestination.path: "%s/a/passwd" leads outside the allowed backup directories through a symbolic link', pg_temp.root()),
				 'get does not follow a symbolic link leading out');
SELECT throws_ok($$SELECT backup_offline.storage_stat(pg_temp.d(), 'a/passwd')$$,
				 '22023', NULL, 'stat does not follow a symbolic link leading out');
SELECT lives_ok($$SELECT backup_offline.storage_put(pg_temp.d(), 'a/inlink/y', '\x07')$$,
				'a symbolic link that stays inside the allowed directory is followed');
SELECT is(pg_temp.sh(format('cat %s/inside/y | od -An -tx1 | tr -d " "', pg_temp.root())), '07', 'and the object lands at its target');

-- ---- destination checks ------------------------------------------------------
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d('/empty'), 'x', '\x00')$$,
				 '22023', format('invalid storageDestination.path: "%s/empty" is not a directory', pg_temp.root()),
				 'a destination that is a file is refused');
SELECT throws_ok($$SELECT backup_offline.storage_put('{"type": "LOCAL_FILESYSTEM"}', 'x', '\x00')$$,
				 '22023', 'storageDestination.path is required', 'a destination without a path is refused');
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d('', '{"colour": "blue"}'), 'x', '\x00')$$,
				 '22023', 'unknown key storageDestination.colour', 'unknown keys are refused');
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d('', '{"permissions": "4755"}'), 'x', '\x00')$$,
				 '22023', 'invalid storageDestination.permissions: "4755" sets the set-user-ID, set-group-ID or sticky bit',
				 'set-user-ID permissions are refused');
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d('', '{"permissions": "0200"}'), 'x', '\x00')$$,
				 '22023', 'invalid storageDestination.permissions: "0200" does not let the owner read the objects',
				 'permissions the owner cannot read with are refused');
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d('', '{"owner": "no_such_user_x"}'), 'x', '\x00')$$,
				 '22023', 'invalid storageDestination.owner: no operating-system user "no_such_user_x" on the database server',
				 'an unknown owner is refused');
SELECT throws_ok($$SELECT backup_offline.storage_put(pg_temp.d('', '{"group": "no_such_group_x"}'), 'x', '\x00')$$,
				 '22023', 'invalid storageDestination.group: no operating-system group "no_such_group_x" on the database server',
				 'an unknown group is refused');
SELECT throws_ok($$SELECT backup_offline.storage_put(jsonb_build_object('type', 'NETWORK_SHARE', 'path', pg_temp.root()), 'x', '\x00')$$,
				 '55000', format('invalid storageDestination.path: "%s" is not on a mounted network share', pg_temp.root()),
				 'NETWORK_SHARE on the root filesystem is refused');

-- ---- types without a driver ---------------------------------------------------
SELECT throws_ok(format('SELECT backup_offline.storage_put(%L, ''x'', ''\x00'')', dest),
				 '0A000', format('storage type "%s" has no driver in this version', dest ->> 'type'),
				 (dest ->> 'type') || ' has no driver')
  FROM (VALUES ('{"type": "AWS_S3", "bucket": "care-backups"}'::jsonb),
			   ('{"type": "GOOGLE_CLOUD_STORAGE", "bucket": "care-backups"}'),
			   ('{"type": "AZURE_BLOB", "accountName": "careacct", "container": "backups"}'),
			   ('{"type": "SFTP", "host": "backup.example.org", "username": "care", "path": "/srv/backups"}'),
			   ('{"type": "MULTI", "replicas": [{"type": "AWS_S3", "bucket": "care-backups"}]}')) v(dest);
SELECT throws_ok($$SELECT * FROM backup_offline.storage_list('{"type": "AWS_S3"}')$$,
				 '22023', 'storageDestination.bucket is required', 'a malformed AWS_S3 destination is a validation error');

-- ---- permissions, owner and group ----------------------------------------------
SELECT is(pg_temp.sh(format('stat -c %%a %1$s/a/one %1$s/a %1$s/big/x', pg_temp.root())), E'600\n700\n700',
		  'default: files 0600, directories 0700');
SELECT lives_ok($$SELECT backup_offline.storage_put(pg_temp.d('/perm', '{"permissions": "0640"}'), 'g/h/obj', '\x01')$$,
				'put with permissions 0640');
SELECT is(pg_temp.sh(format('stat -c %%a %1$s/perm/g/h/obj %1$s/perm/g/h %1$s/perm/g %1$s/perm', pg_temp.root())),
		  E'640\n750\n750\n750', 'the file gets 0640, the directories created 0750');
SELECT lives_ok($$SELECT backup_offline.storage_put(pg_temp.d('/perm', '{"permissions": "0444"}'), 'ro', '\x01')$$,
				'put with read-only permissions');
SELECT is(pg_temp.sh(format('stat -c %%a %s/perm/ro', pg_temp.root())), '444', 'the object is read-only');
SELECT lives_ok($$SELECT backup_offline.storage_put(pg_temp.d('/grp', '{"group": "postgres", "owner": "postgres", "permissions": "0640"}'), 's/obj', '\x01')$$,
				'put with the server''s own owner and group');
SELECT is(pg_temp.sh(format('stat -c %%U:%%G %1$s/grp/s/obj %1$s/grp/s', pg_temp.root())), E'postgres:postgres\npostgres:postgres',
		  'file and directory carry the owner and group');
SELECT throws_like($$SELECT backup_offline.storage_put(pg_temp.d('/grp', '{"group": "root"}'), 's/denied', '\x01')$$,
				   'could not give file "%/grp/s/.tmp.%.denied" to group "root": Operation not permitted',
				   'a group the server does not belong to fails in the middle of the put');
SELECT throws_like($$SELECT backup_offline.storage_put(pg_temp.d('/grp', '{"owner": "root"}'), 's/denied', '\x01')$$,
				   'could not give file "%" to user "root": Operation not permitted',
				   'another owner fails in the middle of the put');
SELECT is(pg_temp.sh(format('ls -A %s/grp/s', pg_temp.root())), 'obj', 'the failed puts left no temporary file and no object');

-- an error in a nested block: the temporary file goes with the subtransaction
DO $$
BEGIN
	PERFORM backup_offline.storage_put(pg_temp.d('/grp', '{"group": "root"}'), 's/sp', '\x01');
EXCEPTION WHEN insufficient_privilege THEN
	NULL;
END
$$;
SELECT is(pg_temp.sh(format('ls -A %s/grp/s', pg_temp.root())), 'obj', 'an error caught in a nested block leaves no temporary file');
-- puts are not transactional: a committed put outlives a rollback
SAVEPOINT kept;
SELECT backup_offline.storage_put(pg_temp.d(), 'survives', '\x05');
ROLLBACK TO kept;
SELECT is(backup_offline.storage_get(pg_temp.d(), 'survives'), '\x05'::bytea, 'a put stays when its savepoint rolls back');

-- ---- privileges -------------------------------------------------------------------
CREATE ROLE t_storage_nobody;
SELECT is(has_function_privilege('t_storage_nobody', f, 'EXECUTE'), false, f || ' is not executable by ordinary roles')
  FROM unnest(ARRAY['backup_offline.storage_put(jsonb, text, bytea)', 'backup_offline.storage_get(jsonb, text, bigint, bigint)',
					'backup_offline.storage_list(jsonb, text)', 'backup_offline.storage_delete(jsonb, text)',
					'backup_offline.storage_stat(jsonb, text)', 'backup_offline.storage_cleanup(jsonb, interval)']) f;
SELECT is(pg_temp.temp_files(), '', 'no temporary file anywhere at the end');

SELECT pg_temp.sh(format('chmod -R u+w %1$s && rm -rf %1$s && echo', pg_temp.root()));
SELECT * FROM finish();
ROLLBACK;
