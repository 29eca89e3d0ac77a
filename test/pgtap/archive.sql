-- The archive container through archive_put / archive_get: round trips of
-- 0 B, 1 B, chunk size - 1, chunk size, chunk size + 1 and about three
-- chunks for every cipher x compression x digest (64 KiB chunks); what
-- inspect_object and verify_object report; key errors naming the key ids;
-- key rotation; options and privileges.
--
-- Objects go to a fresh directory under backup_offline.allowed_paths and
-- key files to backup_offline.key_directory, with ids unique to this run
-- (storage writes are not transactional, so names must not repeat).
BEGIN;
SET LOCAL search_path = public, backup_offline;
SELECT plan(315);

SELECT 'pta' || pg_backend_pid() || '_' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS run \gset
SELECT current_setting('backup_offline.key_directory') AS keydir,
	   jsonb_build_object('type', 'LOCAL_FILESYSTEM',
						  'path', current_setting('backup_offline.allowed_paths') || '/' || :'run') AS st \gset

-- Run a shell command as the server's OS user
CREATE FUNCTION pg_temp.sh(cmd text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', cmd);
END
$$;

-- Create key file <id>.key (32 random bytes) with the given mode
CREATE FUNCTION pg_temp.make_key(id text, mode text DEFAULT '600') RETURNS void
LANGUAGE sql AS $$
	SELECT pg_temp.sh(format('f=%s/%s.key; head -c 32 /dev/urandom > "$f.tmp" && chmod %s "$f.tmp" && mv "$f.tmp" "$f"',
							 current_setting('backup_offline.key_directory'), id, mode));
$$;

-- "SQLSTATE: message / detail" of the error a statement raises, or 'no error'
CREATE FUNCTION pg_temp.err(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s text;
	m text;
	d text;
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
	RETURN s || ': ' || m || ' / ' || coalesce(d, '');
END
$$;

SELECT pg_temp.make_key(:'run' || '_k1');

-- Can this CPU run AES-256-GCM?  Where it cannot, the AES rows of the
-- matrix use XChaCha20-Poly1305 (and the refusal is tested instead).
SELECT pg_temp.err(format('SELECT archive_put(%L, %L, ''\x00'', %L)', :'st', 'aes-probe',
		jsonb_build_object('cipher', 'aes-256-gcm', 'keyId', :'run' || '_k1'))) = 'no error' AS aes \gset

-- 64 KiB chunks.  The data: compressible text, then incompressible bytes,
-- so chunks are stored both as zstd frames and raw.
CREATE TEMP TABLE blob AS
SELECT convert_to(repeat('visit note: client stable, medication given, family informed. ', 1700), 'UTF8')
	   || (SELECT string_agg(sha256(int4send(i)), ''::bytea ORDER BY i) FROM generate_series(1, 2400) i) AS b;
CREATE TEMP TABLE combo AS
SELECT c.cipher, c.label, z.compression, d.digest, s.size,
	   format('rt/%s-%s-%s-%s', c.label, z.label, d.digest, s.size) AS name
FROM (VALUES ('none', 'none'),
			 (CASE WHEN :'aes' THEN 'aes-256-gcm' ELSE 'xchacha20-poly1305' END, 'aes'),
			 ('xchacha20-poly1305', 'xchacha')) c(cipher, label),
	 (VALUES ('{"compression": "none"}'::jsonb, 'raw'),
			 ('{"compression": "zstd", "level": 3}', 'zstd3'),
			 ('{"compression": "zstd", "level": -5}', 'zstdm5')) z(compression, label),
	 (VALUES ('sha256'), ('sha512'), ('blake3')) d(digest),
	 (VALUES (0), (1), (65535), (65536), (65537), (161072)) s(size);

CREATE TEMP TABLE put AS
SELECT combo.*, substr((SELECT b FROM blob), 1, size) AS data,
	   archive_put(:'st', name, substr((SELECT b FROM blob), 1, size),
				   compression || jsonb_build_object('cipher', cipher, 'digest', digest,
													 'chunkSize', 65536, 'keyId', :'run' || '_k1')) AS r
FROM combo;

-- ---- round trips: 162 ----
SELECT is(archive_get(:'st', name), data, 'round trip ' || name) FROM put ORDER BY name;

SELECT is((SELECT count(*) FROM put), 162::bigint, 'the matrix has 162 objects');
SELECT is((SELECT count(*) FROM put WHERE (r->>'plaintextLength')::int <> size), 0::bigint,
		'archive_put reports every plaintext length');
SELECT is((SELECT count(*) FROM put WHERE (r->>'chunkCount')::int <> greatest(1, ceil(size / 65536.0))), 0::bigint,
		'one chunk per 64 KiB, exactly one for an empty object');
SELECT is((SELECT count(*) FROM put WHERE digest = 'sha256' AND r->>'plaintextDigest' <> encode(sha256(data), 'hex')), 0::bigint,
		'the SHA-256 plaintext digest is sha256 of the data');
SELECT is((SELECT count(*) FROM put WHERE digest = 'sha512' AND r->>'plaintextDigest' <> encode(sha512(data), 'hex')), 0::bigint,
		'the SHA-512 plaintext digest is sha512 of the data');
SELECT is((SELECT count(*) FROM put WHERE cipher = 'none' AND r->>'keyId' IS NOT NULL), 0::bigint,
		'objects without a cipher have no key id');
SELECT is((SELECT count(*) FROM put WHERE cipher <> 'none' AND (r->>'keyId' !~ '^[0-9a-f]{32}$' OR r->>'wrappedBy' <> :'run' || '_k1')), 0::bigint,
		'encrypted objects report their key id and key-encryption key');
SELECT is((SELECT count(DISTINCT r->>'keyId') FROM put WHERE cipher <> 'none'), 108::bigint,
		'every encrypted object has its own data key');
SELECT cmp_ok((SELECT (r->>'storedLength')::int FROM put WHERE name = 'rt/none-zstd3-sha256-161072'), '<',
		(SELECT (r->>'storedLength')::int FROM put WHERE name = 'rt/none-raw-sha256-161072'),
		'zstd makes the compressible chunks smaller');

-- zstd worker threads (backup_offline.compression_workers) give the same bytes back
SELECT set_config('backup_offline.compression_workers', '2', true) IS NOT NULL AS workers \gset
SELECT is(archive_get(:'st', (archive_put(:'st', 'workers', (SELECT b FROM blob),
		jsonb_build_object('keyId', :'run' || '_k1', 'chunkSize', 65536))->>'name')),
		(SELECT b FROM blob), 'a round trip with two zstd worker threads');
SELECT set_config('backup_offline.compression_workers', '0', true) IS NOT NULL AS workers \gset

-- ---- inspect_object ----
SELECT i AS insp FROM (SELECT inspect_object(:'st', 'rt/xchacha-zstd3-sha512-161072') AS i) x \gset
SELECT is(ARRAY(SELECT jsonb_object_keys(:'insp'::jsonb) ORDER BY 1),
		ARRAY['chunkCount', 'chunkSize', 'cipher', 'compression', 'compressionLevel', 'digest', 'formatVersion',
			  'headerLength', 'keyId', 'keyWraps', 'name', 'noncePrefix', 'objectId', 'plaintextLength', 'problem',
			  'storedLength'],
		'inspect_object reports the header fields, trailer sizes and wraps, nothing else');
SELECT is(:'insp'::jsonb - 'keyId' - 'noncePrefix' - 'storedLength',
		jsonb_build_object('name', 'rt/xchacha-zstd3-sha512-161072', 'formatVersion', 1, 'headerLength', 58 + 30,
						   'compression', 'zstd', 'compressionLevel', 3, 'cipher', 'xchacha20-poly1305',
						   'digest', 'SHA512', 'chunkSize', 65536, 'objectId', 'rt/xchacha-zstd3-sha512-161072',
						   'keyWraps', jsonb_build_array(:'run' || '_k1'), 'chunkCount', 3,
						   'plaintextLength', 161072, 'problem', NULL),
		'inspect_object fields of an XChaCha20 / zstd 3 / SHA-512 object');
SELECT is(:'insp'::jsonb->>'keyId', (SELECT r->>'keyId' FROM put WHERE name = 'rt/xchacha-zstd3-sha512-161072'),
		'inspect_object shows the key id the writer reported');
SELECT is((inspect_object(:'st', 'rt/none-zstdm5-blake3-1') - 'noncePrefix' - 'storedLength' - 'name' - 'objectId' - 'headerLength'),
		'{"formatVersion": 1, "compression": "zstd", "compressionLevel": -5, "cipher": "none", "digest": "BLAKE3",
		  "chunkSize": 65536, "keyId": null, "keyWraps": [], "chunkCount": 1, "plaintextLength": 1, "problem": null}'::jsonb,
		'inspect_object of an unencrypted fast-level object');

-- ---- verify_object ----
SELECT is((SELECT count(*) FROM put WHERE NOT (verify_object(:'st', name)->>'valid')::boolean), 0::bigint,
		'verify_object finds every object valid');
SELECT is((SELECT count(*) FROM put, LATERAL verify_object(:'st', name) v
		   WHERE v->>'storedDigest' <> r->>'storedDigest' OR v->>'plaintextDigest' <> r->>'plaintextDigest'
			  OR (v->>'storedLength')::int <> (r->>'storedLength')::int
			  OR (v->>'chunksChecked')::int <> (r->>'chunkCount')::int), 0::bigint,
		'verify_object reports the digests, sizes and chunk counts the writer reported');
SELECT is(verify_object(:'st', 'rt/aes-zstd3-blake3-161072', false) - 'storedDigest',
		jsonb_build_object('name', 'rt/aes-zstd3-blake3-161072', 'valid', true, 'withKey', false, 'chunksChecked', 3,
						   'storedLength', (SELECT (r->>'storedLength')::int FROM put WHERE name = 'rt/aes-zstd3-blake3-161072'),
						   'plaintextLength', 161072, 'digest', 'BLAKE3', 'plaintextDigest', NULL,
						   'firstFailingChunk', NULL, 'problem', NULL),
		'verify_object without the key checks the frames and reports no plaintext digest');

-- ---- keys ----
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''nokey'', ''\x01'', ''{"cipher": "auto"}'')', :'st')),
		'55000: no key-encryption key for archive object "nokey" / Encryption needs a key id, and backup_offline.default_key_id is empty.',
		'encryption without a key id is refused');
SELECT set_config('backup_offline.default_key_id', :'run' || '_k1', true) IS NOT NULL AS set_default \gset
SELECT is(archive_put(:'st', 'default-key', '\x0102', '{}')->>'wrappedBy', :'run' || '_k1',
		'the writer wraps under backup_offline.default_key_id');
SELECT is(archive_get(:'st', 'default-key'), '\x0102'::bytea, 'an object written with the defaults reads back');
RESET backup_offline.default_key_id;
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''wrongid'', ''\x01'', %L)', :'st',
		jsonb_build_object('keyId', :'run' || '_absent'))),
		format('42704: key-encryption key "%s_absent" does not exist / Neither "%s_absent.key" nor "%s_absent.passphrase" is in backup_offline.key_directory.',
			   :'run', :'run', :'run'),
		'a key id without a key file is refused before anything is written');
SELECT is(pg_temp.err(format('SELECT inspect_object(%L, ''wrongid'')', :'st')),
		'42704: object "wrongid" does not exist / ', 'and nothing was written');

-- a missing KEK file: the error names the data key and the key id
SELECT pg_temp.make_key(:'run' || '_k2');
SELECT r->>'keyId' AS k2_data FROM (SELECT archive_put(:'st', 'lost', '\x0a0b0c', jsonb_build_object('keyId', :'run' || '_k2')) AS r) x \gset
SELECT pg_temp.sh(format('rm %s/%s_k2.key', :'keydir', :'run'));
SELECT is(pg_temp.err(format('SELECT archive_get(%L, ''lost'')', :'st')),
		format('55000: no key-encryption key opens the data key of object "lost" / Its data key %s is wrapped under key ids "%s_k2"; key files missing from backup_offline.key_directory: "%s_k2"; key files that do not open their wrap (wrong key, or a damaged key object): none.',
			   :'k2_data', :'run', :'run'),
		'a missing key file: the error names the data key id and the missing key id');
SELECT is(verify_object(:'st', 'lost')->'firstFailingChunk', '0'::jsonb, 'verify_object reports the missing key at chunk 0');
SELECT is((verify_object(:'st', 'lost', false)->>'valid')::boolean, true, 'without the key the frames still verify');

-- a wrong KEK (the file replaced by other bytes)
SELECT pg_temp.make_key(:'run' || '_k3');
SELECT r->>'keyId' AS k3_data FROM (SELECT archive_put(:'st', 'wrongkek', '\x0a0b0c', jsonb_build_object('keyId', :'run' || '_k3')) AS r) x \gset
SELECT pg_temp.make_key(:'run' || '_k3');
SELECT is(pg_temp.err(format('SELECT archive_get(%L, ''wrongkek'')', :'st')),
		format('55000: no key-encryption key opens the data key of object "wrongkek" / Its data key %s is wrapped under key ids "%s_k3"; key files missing from backup_offline.key_directory: none; key files that do not open their wrap (wrong key, or a damaged key object): "%s_k3".',
			   :'k3_data', :'run', :'run'),
		'a wrong key file: the error names the data key id and the key id that failed');

-- the wrap of another object is refused (its key id differs)
SELECT pg_temp.sh(format('cd %s/%s && cp rt/xchacha-raw-sha256-1.key.%s_k1 tmp.wrap && mv tmp.wrap rt/xchacha-raw-sha256-0.key.%s_k1',
						 current_setting('backup_offline.allowed_paths'), :'run', :'run', :'run'));
SELECT matches(pg_temp.err(format('SELECT archive_get(%L, ''rt/xchacha-raw-sha256-0'')', :'st')),
		'^55000: no key-encryption key opens the data key of object "rt/xchacha-raw-sha256-0" / .*do not open their wrap.*"' || :'run' || '_k1"\.$',
		'a data key wrap copied from another object does not open');

-- key files: permissions, size, passphrases
SELECT pg_temp.make_key(:'run' || '_open', '644');
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''perm'', ''\x01'', %L)', :'st', jsonb_build_object('keyId', :'run' || '_open'))),
		format('F0000: key file "%s/%s_open.key" is accessible by group or others / ', :'keydir', :'run'),
		'a key file readable by others is refused');
SELECT pg_temp.sh(format('printf short > %s/%s_short.key; chmod 600 %s/%s_short.key', :'keydir', :'run', :'keydir', :'run'));
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''short'', ''\x01'', %L)', :'st', jsonb_build_object('keyId', :'run' || '_short'))),
		format('F0000: key file "%s/%s_short.key" does not hold exactly 32 bytes / ', :'keydir', :'run'),
		'a key file of the wrong size is refused');
SELECT pg_temp.sh(format('printf ''correct horse battery staple\n'' > %s/%s_pp.passphrase; chmod 600 %s/%s_pp.passphrase',
						 :'keydir', :'run', :'keydir', :'run'));
SELECT is(archive_put(:'st', 'pass', '\xc0ffee', jsonb_build_object('keyId', :'run' || '_pp', 'cipher', 'xchacha20-poly1305'))->>'wrappedBy',
		:'run' || '_pp', 'a passphrase key file wraps');
SELECT is(archive_get(:'st', 'pass'), '\xc0ffee'::bytea, 'and unwraps');

-- ---- rotation ----
SELECT pg_temp.make_key(:'run' || '_k4');
SELECT pg_temp.make_key(:'run' || '_k5');
SELECT archive_put(:'st', 'rot/one', '\x01', jsonb_build_object('keyId', :'run' || '_k4')) IS NOT NULL AS w1,
	   archive_put(:'st', 'rot/two', '\x0202', jsonb_build_object('keyId', :'run' || '_k4', 'cipher', 'xchacha20-poly1305')) IS NOT NULL AS w2,
	   archive_put(:'st', 'rot/other', '\x03', jsonb_build_object('keyId', :'run' || '_k1')) IS NOT NULL AS w3 \gset
SELECT is(rotate_key(:'st', :'run' || '_k4', :'run' || '_k5', 'rot/'), 2::bigint, 'rotate_key re-wraps both objects under the prefix');
SELECT is(rotate_key(:'st', :'run' || '_k4', :'run' || '_k5', 'rot/'), 0::bigint, 'rotating again writes nothing');
SELECT is(inspect_object(:'st', 'rot/one')->'keyWraps', jsonb_build_array(:'run' || '_k4', :'run' || '_k5'),
		'the old and the new wrap exist side by side');
SELECT is(inspect_object(:'st', 'rot/other')->'keyWraps', jsonb_build_array(:'run' || '_k1'),
		'an object under another key is not touched');
SELECT is(rotate_key(:'st', :'run' || '_k4', :'run' || '_k5', 'rot/', true), 0::bigint, 'remove_old writes nothing new');
SELECT is(inspect_object(:'st', 'rot/two')->'keyWraps', jsonb_build_array(:'run' || '_k5'),
		'remove_old deleted the old wraps');
SELECT pg_temp.sh(format('rm %s/%s_k4.key', :'keydir', :'run'));
SELECT is(archive_get(:'st', 'rot/one'), '\x01'::bytea, 'with only the new key file present, the first object reads');
SELECT is(archive_get(:'st', 'rot/two'), '\x0202'::bytea, 'and so does the second');
SELECT is(pg_temp.err(format('SELECT rotate_key(%L, %L, %L)', :'st', :'run' || '_k5', :'run' || '_k5')),
		format('22023: old_key_id and new_key_id are both "%s_k5" / Rotation re-wraps data keys under a different key id.', :'run'),
		'rotating a key to itself is refused');
SELECT is(pg_temp.err(format('SELECT rotate_key(%L, %L, %L)', :'st', :'run' || '_k5', 'bad/id')),
		'22023: invalid new_key_id: "bad/id" / A key id is 1 to 64 letters, digits, "_", "." and "-", beginning with a letter or digit.',
		'an invalid key id is refused');

-- ---- options ----
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''o1'', ''\x01'', ''{"cipher": "none", "colour": "red"}'')', :'st')),
		'22023: unknown option options.colour / ', 'unknown options are refused');
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''o2'', ''\x01'', ''{"cipher": "none", "level": 20}'')', :'st')),
		'22023: invalid options.level: 20 / zstd levels are 1 to 19, or -128 to -1 for the fast levels.', 'zstd level 20 is refused');
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''o3'', ''\x01'', ''{"cipher": "none", "chunkSize": 1000}'')', :'st')),
		'22023: invalid options.chunkSize: 1000 / The chunk size is 65536 to 67108864 bytes.', 'a chunk size below 64 KiB is refused');
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''o4'', ''\x01'', ''{"cipher": "rot13"}'')', :'st')),
		'22023: invalid options.cipher: "rot13" / ', 'an unknown cipher is refused');
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''o5'', ''\x01'', ''{"cipher": "none", "digest": "md5"}'')', :'st')),
		'22023: invalid options.digest: "md5" / ', 'an unknown digest is refused');
SELECT is(CASE WHEN :'aes' THEN 'available' ELSE pg_temp.err(format('SELECT archive_put(%L, ''aes'', ''\x01'', %L)', :'st',
		jsonb_build_object('cipher', 'aes-256-gcm', 'keyId', :'run' || '_k1'))) END,
		CASE WHEN :'aes' THEN 'available' ELSE '0A000: AES-256-GCM is not available on this CPU / libsodium''s AES-256-GCM needs the AES-NI and CLMUL instructions.' END,
		'AES-256-GCM works, or is refused clearly where the CPU lacks it');
SELECT is(pg_temp.err(format('SELECT archive_put(%L, ''rt/none-raw-sha256-0'', ''\x01'', ''{"cipher": "none"}'')', :'st')),
		'42710: archive object "rt/none-raw-sha256-0" already exists / Archive objects are written once and never replaced.',
		'an existing object is never overwritten');

-- ---- privileges ----
SELECT ok(has_function_privilege(r, 'backup_offline.inspect_object(jsonb, text)', 'EXECUTE')
		  AND has_function_privilege(r, 'backup_offline.verify_object(jsonb, text, boolean)', 'EXECUTE'),
		  r || ' may inspect and verify objects')
FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_auditor']) r;
SELECT ok(NOT has_function_privilege(r, f, 'EXECUTE'), r || ' may not call ' || f)
FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_auditor', 'backup_offline_app', 'public']) r,
	 unnest(ARRAY['backup_offline.archive_get(jsonb, text)', 'backup_offline.archive_put(jsonb, text, bytea, jsonb)',
				  'backup_offline.rotate_key(jsonb, text, text, text, boolean)']) f;
SELECT ok(NOT has_function_privilege('backup_offline_app', 'backup_offline.inspect_object(jsonb, text)', 'EXECUTE'),
		  'the application may not inspect objects');
-- an auditor really can inspect and verify (not only holds the grant)
CREATE ROLE t_arch_auditor IN ROLE backup_offline_auditor;
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC; GRANT ALL ON ALL SEQUENCES IN SCHEMA %1$I TO PUBLIC',
				   pg_my_temp_schema()::regnamespace);
END $$;
SET LOCAL ROLE t_arch_auditor;
SELECT is((backup_offline.verify_object(:'st', 'rt/none-raw-sha256-1', false))->>'valid', 'true',
		  'an auditor verifies an object');
SELECT isnt(backup_offline.inspect_object(:'st', 'rt/none-raw-sha256-1'), NULL, 'an auditor inspects an object');
RESET ROLE;
CREATE ROLE t_arch_admin IN ROLE backup_offline_admin;
GRANT EXECUTE ON FUNCTION archive_get(jsonb, text) TO t_arch_admin;
SET LOCAL ROLE t_arch_admin;
SELECT is(pg_temp.err(format('SELECT archive_get(%L, ''rt/none-raw-sha256-1'')', :'st')),
		'42501: must be superuser to read archive objects directly / ',
		'archive_get checks for a superuser even when granted');
SELECT is(pg_temp.err(format('SHOW backup_offline.default_key_id')),
		'42501: must be superuser or have privileges of pg_read_all_settings to examine "backup_offline.default_key_id" / ',
		'backup_offline.default_key_id is hidden from ordinary roles');
RESET ROLE;

-- ---- the parallel chunk pipeline (compression_workers > 0) ----
-- Worker threads encode whole chunks at once; the object must hold the same
-- plaintext and have the same structure (stored length, chunk count,
-- plaintext digest) as the serial writer's.  Sizes 0, 1, chunk - 1, chunk,
-- chunk + 1 and about eleven chunks, every cipher, raw and zstd, 2 and 4
-- workers: 72 round trips and 3 comparisons with the serial objects.
CREATE FUNCTION pg_temp.put_w(workers int, st jsonb, name text, data bytea, opts jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('backup_offline.compression_workers', workers::text, true);
	RETURN backup_offline.archive_put(st, name, data, opts);
END
$$;
CREATE TEMP TABLE bigblob AS
SELECT (SELECT b FROM blob) || (SELECT b FROM blob) || (SELECT b FROM blob) || (SELECT b FROM blob) AS b;
CREATE TEMP TABLE wcombo AS
SELECT c.cipher, c.label, c.digest, z.compression, z.label AS zlabel, s.size, w.workers,
	   format('pw/%s-%s-%s-w%s', c.label, z.label, s.size, w.workers) AS name
FROM (VALUES ('none', 'none', 'sha256'),
			 (CASE WHEN :'aes' THEN 'aes-256-gcm' ELSE 'xchacha20-poly1305' END, 'aes', 'blake3'),
			 ('xchacha20-poly1305', 'xchacha', 'sha512')) c(cipher, label, digest),
	 (VALUES ('{"compression": "none"}'::jsonb, 'raw'),
			 ('{"compression": "zstd", "level": 3}', 'zstd3')) z(compression, label),
	 (VALUES (0), (1), (65535), (65536), (65537), (700000)) s(size),
	 (VALUES (0), (2), (4)) w(workers);
CREATE TEMP TABLE wput AS
SELECT wcombo.*, substr((SELECT b FROM bigblob), 1, size) AS data,
	   pg_temp.put_w(workers, :'st', name, substr((SELECT b FROM bigblob), 1, size),
					 compression || jsonb_build_object('cipher', cipher, 'digest', digest,
													   'chunkSize', 65536, 'keyId', :'run' || '_k1')) AS r
FROM wcombo ORDER BY workers, name;
SELECT set_config('backup_offline.compression_workers', '0', true) IS NOT NULL AS workers \gset
SELECT is(archive_get(:'st', name), data, 'round trip with ' || workers || ' workers: ' || name)
FROM wput WHERE workers > 0 ORDER BY workers, name;
SELECT is((SELECT count(*) FROM wput p JOIN wput s USING (label, zlabel, size)
		   WHERE s.workers = 0 AND p.workers > 0 AND p.r->>'storedLength' = s.r->>'storedLength'),
		  72::bigint, 'workers write objects of the serial writer''s stored length');
SELECT is((SELECT count(*) FROM wput p JOIN wput s USING (label, zlabel, size)
		   WHERE s.workers = 0 AND p.workers > 0 AND p.r->>'chunkCount' = s.r->>'chunkCount'
			 AND (p.r->>'chunkCount')::int = greatest(1, ceil(size / 65536.0))),
		  72::bigint, 'workers write the serial writer''s chunk count');
SELECT is((SELECT count(*) FROM wput p JOIN wput s USING (label, zlabel, size)
		   WHERE s.workers = 0 AND p.workers > 0 AND p.r->>'plaintextDigest' = s.r->>'plaintextDigest'
			 AND (p.r->>'plaintextLength')::int = size),
		  72::bigint, 'workers write the serial writer''s plaintext digest and length');

-- A cancel (statement_timeout) in the middle of a large write with four
-- workers: the error is caught in a subtransaction, nothing is left under
-- the name, every worker thread is joined, and the backend works on.
CREATE FUNCTION pg_temp.threads() RETURNS int
LANGUAGE sql AS $$
	SELECT substring(pg_read_file('/proc/' || pg_backend_pid() || '/status') FROM 'Threads:\s+(\d+)')::int;
$$;
CREATE FUNCTION pg_temp.cancelled_put(st jsonb, name text, path text, opts jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('backup_offline.compression_workers', '4', true);
	PERFORM backup_offline.archive_put_file(st, name, path, opts);
	RETURN 'not canceled';
EXCEPTION WHEN query_canceled THEN
	RETURN 'canceled';
END
$$;
SELECT pg_temp.sh(format('seq 1 50000000 > %s/%s_big.txt', current_setting('backup_offline.allowed_paths'), :'run'));
SELECT is(pg_temp.threads(), 1, 'one thread before the large write');
SET LOCAL statement_timeout = '400ms';
SELECT pg_temp.cancelled_put(:'st', 'big', current_setting('backup_offline.allowed_paths') || '/' || :'run' || '_big.txt',
		jsonb_build_object('keyId', :'run' || '_k1')) AS cancelled \gset
SET LOCAL statement_timeout = 0;
SELECT is(:'cancelled'::text, 'canceled', 'statement_timeout cancels a large write with four workers');
SELECT is(pg_temp.threads(), 1, 'no worker thread outlives the canceled writer');
SELECT matches(pg_temp.err(format('SELECT inspect_object(%L, ''big'')', :'st')), '^42704: object "big" does not exist',
		'a canceled write leaves no object');
SELECT is((SELECT count(*) FROM pg_ls_dir(current_setting('backup_offline.allowed_paths') || '/' || :'run') f
		   WHERE f LIKE '%big%'), 0::bigint, 'a canceled write leaves no temporary file');
SELECT set_config('backup_offline.compression_workers', '2', true) IS NOT NULL AS workers \gset
SELECT is(archive_get(:'st', (archive_put(:'st', 'after-cancel', (SELECT b FROM bigblob),
		jsonb_build_object('keyId', :'run' || '_k1', 'chunkSize', 65536))->>'name')),
		(SELECT b FROM bigblob), 'the backend writes with workers after the cancel');
SELECT is(pg_temp.threads(), 1, 'no worker thread outlives a finished writer');
SELECT set_config('backup_offline.compression_workers', '0', true) IS NOT NULL AS workers \gset
SELECT pg_temp.sh(format('rm -f %s/%s_big.txt', current_setting('backup_offline.allowed_paths'), :'run'));

SELECT * FROM finish();
ROLLBACK;
