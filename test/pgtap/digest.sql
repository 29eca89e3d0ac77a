-- digest(bytea, text): SHA-256 and SHA-512 (NIST vectors, PostgreSQL's
-- sha256()/sha512()), BLAKE3 (the official test vectors), names, errors,
-- properties and privileges.  Large inputs against sha256sum/b3sum are in
-- test/scenario/digest_cli.sh.
BEGIN;
SELECT plan(65);
\ir lib/errors.psql

-- The official test-vector input: bytes 0, 1, ..., 250, 0, 1, ... (n bytes)
CREATE FUNCTION pg_temp.pattern(n integer) RETURNS bytea
	LANGUAGE sql IMMUTABLE
	AS $$
	SELECT substring(decode(repeat(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i),
								   n / 251 + 1), 'hex') FROM 1 FOR n)
	FROM generate_series(0, 250) AS i
$$;


-- the function and its properties
SELECT has_function('backup_offline', 'digest', ARRAY['bytea', 'text'], 'digest(bytea, text) exists');
SELECT is(
	(SELECT format('%s %s %s %s', provolatile, proisstrict, proparallel, prorettype::regtype)
	 FROM pg_proc WHERE oid = 'backup_offline.digest(bytea, text)'::regprocedure),
	'i t s bytea', 'digest is IMMUTABLE STRICT PARALLEL SAFE and returns bytea');

-- SHA-256: FIPS 180-2 vectors
SELECT is(encode(backup_offline.digest('', 'SHA256'), 'hex'),
	'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'SHA256 of the empty string');
SELECT is(encode(backup_offline.digest('abc', 'SHA256'), 'hex'),
	'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'SHA256 of "abc"');
SELECT is(encode(backup_offline.digest('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', 'SHA256'), 'hex'),
	'248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1', 'SHA256 of the 448-bit vector');

-- SHA-512: FIPS 180-2 vectors
SELECT is(encode(backup_offline.digest('', 'SHA512'), 'hex'),
	'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e',
	'SHA512 of the empty string');
SELECT is(encode(backup_offline.digest('abc', 'SHA512'), 'hex'),
	'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
	'SHA512 of "abc"');
SELECT is(encode(backup_offline.digest('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', 'SHA512'), 'hex'),
	'204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c33596fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445',
	'SHA512 of the 448-bit vector');

-- the same as PostgreSQL's own functions, also across the 1 MiB slices
SELECT is(backup_offline.digest(v, 'SHA256'), sha256(v), 'SHA256 = sha256() for ' || length(v) || ' bytes')
FROM (VALUES (''::bytea), ('abc'), ('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'),
			 (pg_temp.pattern(3 * 1024 * 1024 + 1))) AS t(v);
SELECT is(backup_offline.digest(v, 'SHA512'), sha512(v), 'SHA512 = sha512() for ' || length(v) || ' bytes')
FROM (VALUES (''::bytea), ('abc'), ('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'),
			 (pg_temp.pattern(3 * 1024 * 1024 + 1))) AS t(v);

-- BLAKE3: the official test vectors (test_vectors/test_vectors.json of
-- BLAKE3-team/BLAKE3, field "hash", first 32 bytes)
SELECT is(encode(backup_offline.digest(pg_temp.pattern(n), 'BLAKE3'), 'hex'), h,
		  'BLAKE3 test vector, input_len ' || n)
FROM (VALUES
	(0, 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'),
	(1, '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213'),
	(1023, '10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11'),
	(1024, '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7'),
	(1025, 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444'),
	(2048, 'e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a'),
	(2049, '5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030'),
	(3072, 'b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2'),
	(3073, '7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3'),
	(4096, '015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969'),
	(4097, '9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995'),
	(5120, '9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833'),
	(5121, '628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff'),
	(6144, '3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205'),
	(6145, 'f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f'),
	(7168, '61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a'),
	(7169, 'a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817'),
	(8192, 'aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63'),
	(8193, 'bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b'),
	(16384, 'f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4'),
	(31744, '62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47'),
	(102400, 'bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085')
) AS v(n, h)
ORDER BY n;

-- BLAKE3 of "abc", and across the 1 MiB slices (values printed by b3sum)
SELECT is(encode(backup_offline.digest('abc', 'BLAKE3'), 'hex'),
	'6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85', 'BLAKE3 of "abc"');
SELECT is(encode(backup_offline.digest(pg_temp.pattern(3 * 1024 * 1024 + 1), 'BLAKE3'), 'hex'),
	'fd984eaa20053d346cc7c79a175338f91556e68b871d877b23568a4587d9875b', 'BLAKE3 of 3 MiB + 1 bytes (b3sum)');
SELECT is(encode(backup_offline.digest(pg_temp.pattern(3 * 1024 * 1024 + 1), 'SHA256'), 'hex'),
	'fc66cb381d8de4396b685896bfef3b1811ca920b052873bea5227a354fd64f37', 'SHA256 of 3 MiB + 1 bytes (sha256sum)');

-- digest lengths
SELECT is(length(backup_offline.digest('x', a)), l, a || ' digest has ' || l || ' bytes')
FROM (VALUES ('SHA256', 32), ('SHA512', 64), ('BLAKE3', 32)) AS t(a, l);

-- names: any case, SHA-256 and SHA-512 spellings
SELECT is(backup_offline.digest('abc', a), backup_offline.digest('abc', c), quote_literal(a) || ' means ' || c)
FROM (VALUES ('sha256', 'SHA256'), ('Sha-256', 'SHA256'), ('SHA-512', 'SHA512'),
			 ('sha512', 'SHA512'), ('blake3', 'BLAKE3'), ('Blake3', 'BLAKE3')) AS t(a, c);

-- the three algorithms really differ
SELECT isnt(backup_offline.digest('abc', 'BLAKE3'), backup_offline.digest('abc', 'SHA256'),
	'BLAKE3 and SHA256 differ');

-- STRICT: NULL in, NULL out
SELECT is(backup_offline.digest(NULL, 'SHA256'), NULL, 'NULL data gives NULL');
SELECT is(backup_offline.digest('abc', NULL), NULL, 'NULL algorithm gives NULL');

-- unknown algorithms
SELECT throws_ok($$SELECT backup_offline.digest('abc', 'md5')$$, '22023',
	'unknown digest algorithm "md5"', 'md5 is refused');
SELECT is(pg_temp.error_of($$SELECT backup_offline.digest('abc', 'md5')$$),
	'22023: unknown digest algorithm "md5" / Use one of SHA256, SHA512, BLAKE3.',
	'the error hint lists the algorithms');
SELECT throws_ok(format('SELECT backup_offline.digest(%L, %L)', 'abc', a), '22023',
	format('unknown digest algorithm "%s"', a), quote_literal(a) || ' is refused')
FROM (VALUES (''), ('SHA-1'), ('SHA384'), ('sha 256'), ('BLAKE2b'), ('SHA256 ')) AS t(a);

-- privileges: the admin, operator and auditor roles, not PUBLIC
SELECT ok(has_function_privilege(r, 'backup_offline.digest(bytea, text)', 'EXECUTE'),
	r || ' may call digest')
FROM (VALUES ('backup_offline_admin'), ('backup_offline_operator'), ('backup_offline_auditor')) AS t(r);
SELECT ok(NOT has_function_privilege('public', 'backup_offline.digest(bytea, text)', 'EXECUTE'),
	'PUBLIC may not call digest');

SELECT * FROM finish();
ROLLBACK;
