-- merge3(base, client, server, policy): the three-way rule per field, every
-- policy, nested paths and arrays of objects, missing versus null, deep
-- type-aware equality, the fallback to manual, and bad policies.
BEGIN;
SELECT plan(40);
\ir lib/errors.psql

-- merged document, conflicts (path:resolution:winner) and the manual flag, compactly
CREATE FUNCTION pg_temp.m(b jsonb, c jsonb, s jsonb, p jsonb DEFAULT '{}') RETURNS text LANGUAGE sql AS $$
	SELECT (r->'merged')::text || ' | ' ||
		   coalesce((SELECT string_agg((k->>'path') || ':' || (k->>'resolution') || ':' || (k->>'winner'), ', ' ORDER BY k->>'path')
					   FROM jsonb_array_elements(r->'conflicts') k), '-') || ' | ' ||
		   (r->>'requiresManualResolution')
	  FROM backup_offline.merge3(b, c, s, p) r
$$;

-- ---- the three-way rule ----------------------------------------------------------
SELECT is(pg_temp.m('{"a": 1, "b": 1, "c": 1}', '{"a": 2, "b": 1, "c": 5}', '{"a": 1, "b": 3, "c": 5}'),
	'{"a": 2, "b": 3, "c": 5} | - | false',
	'only the client changed a, only the server b, both c alike: no conflict');
SELECT is(pg_temp.m('{"a": 1}', '{"a": 2}', '{"a": 3}'), '{"a": 3} | a:server_wins:server | false',
	'both changed a differently: the default policy (server_wins) decides and the conflict is recorded');
SELECT is(backup_offline.merge3('{"a": 1}', '{"a": 2}', '{"a": 3}')->'conflicts',
	'[{"path": "a", "base": 1, "client": 2, "server": 3, "resolution": "server_wins", "winner": "server"}]',
	'a conflict keeps the base, client and server values');
SELECT is(pg_temp.m('{"a": 1, "b": 2}', '{"b": 2}', '{"a": 1, "b": 2, "c": 3}'), '{"b": 2, "c": 3} | - | false',
	'a field the client removed is removed; a field the server added is kept');
SELECT is(pg_temp.m('{"a": 1}', '{"a": null}', '{"a": 1}'), '{"a": null} | - | false',
	'null is a value: the client set a to null');
SELECT is(pg_temp.m('{"a": 1}', '{}', '{"a": 2}'), '{"a": 2} | a:server_wins:server | false',
	'the client removed what the server changed: a conflict');
SELECT is((backup_offline.merge3('{"a": 1}', '{}', '{"a": 2}')->'conflicts'->0) ? 'client', false,
	'... recorded without a client value (missing, not null)');
SELECT is(pg_temp.m('{"n": 1.0, "o": {"x": 1, "y": 2}}', '{"n": 1, "o": {"y": 2, "x": 1}}', '{"n": 1.00, "o": {"x": 1, "y": 3}}'),
	'{"n": 1.00, "o": {"x": 1, "y": 3}} | - | false',
	'equality is deep and type-aware: 1 = 1.0 = 1.00, key order is irrelevant');
SELECT is(pg_temp.m('{"n": 1}', '{"n": "1"}', '{"n": 2}'), '{"n": 2} | n:server_wins:server | false',
	'a string is not a number');
SELECT is(pg_temp.m(NULL, '{"a": 1, "b": 2}', '{"a": 1, "c": 3}'), '{"a": 1, "b": 2, "c": 3} | - | false',
	'no base: what both hold alike, and what either holds alone');
SELECT is(pg_temp.m(NULL, '{"a": 1}', '{"a": 2}'), '{"a": 2} | a:server_wins:server | false',
	'no base: differing values conflict');

-- ---- nested objects ---------------------------------------------------------------
SELECT is(pg_temp.m('{"address": {"street": "Elm", "city": "Austin", "zip": "78701"}}',
					'{"address": {"street": "Oak", "city": "Austin", "zip": "78702"}}',
					'{"address": {"street": "Elm", "city": "Dallas", "zip": "78703"}}'),
	'{"address": {"zip": "78703", "city": "Dallas", "street": "Oak"}} | address.zip:server_wins:server | false',
	'objects changed on both sides merge field by field, with nested paths');
SELECT is(pg_temp.m('{"address": {"street": "Elm", "zip": "1"}}', '{"address": {"street": "Oak", "zip": "1"}}',
					'{"address": {"street": "Elm", "zip": "2"}}', '{"fields": {"address": "client_wins"}}'),
	'{"address": {"zip": "1", "street": "Oak"}} | address:client_wins:client | false',
	'a policy on the object makes it one value');
SELECT is(pg_temp.m('{"address": {"zip": "1"}}', '{"address": {"zip": "2"}}', '{"address": {"zip": "3"}}',
					'{"fields": {"address.zip": "client_wins"}}'),
	'{"address": {"zip": "2"}} | address.zip:client_wins:client | false',
	'a policy on a nested path');

-- ---- every policy -------------------------------------------------------------------
SELECT is(pg_temp.m('{"a": 1}', '{"a": 2}', '{"a": 3}', '{"default": "client_wins"}'), '{"a": 2} | a:client_wins:client | false',
	'client_wins');
SELECT is(pg_temp.m('{"a": 1}', '{"a": 2}', '{"a": 3}', '{"default": "lww", "clientHlc": 5, "serverHlc": 4}'),
	'{"a": 2} | a:lww:client | false', 'lww: the later clock wins (client)');
SELECT is(pg_temp.m('{"a": 1}', '{"a": 2}', '{"a": 3}', '{"default": "lww", "clientHlc": 4, "serverHlc": 5}'),
	'{"a": 3} | a:lww:server | false', 'lww: the later clock wins (server)');
SELECT is(pg_temp.m('{"a": 1}', '{"a": 2}', '{"a": 3}', '{"default": "lww", "clientHlc": 5, "serverHlc": 5, "clientNode": "b", "serverNode": "a"}'),
	'{"a": 2} | a:lww:client | false', 'lww: equal clocks, the greater node wins');
SELECT is(pg_temp.m('{"a": 1}', '{"a": 2}', '{"a": 3}', '{"default": "lww"}'), '{"a": 3} | a:manual (lww failed):none | true',
	'lww without clocks falls back to manual: the server value waits for a person');
SELECT is(pg_temp.m('{"visits": 5}', '{"visits": 7}', '{"visits": 10}', '{"fields": {"visits": "additive"}}'),
	'{"visits": 12} | visits:additive:merged | false', 'additive: server + (client - base)');
SELECT is(pg_temp.m('{"visits": 5}', '{"visits": 6}', '{"visits": 6}', '{"fields": {"visits": "additive"}}'),
	'{"visits": 7} | visits:additive:merged | false', 'additive: two increments of one both count, though the values agree');
SELECT is(pg_temp.m('{}', '{"visits": 2}', '{"visits": 3}', '{"fields": {"visits": "additive"}}'),
	'{"visits": 5} | visits:additive:merged | false', 'additive: a missing counter counts 0');
SELECT is(pg_temp.m('{"v": "a"}', '{"v": "b"}', '{"v": "c"}', '{"fields": {"v": "additive"}}'),
	'{"v": "c"} | v:manual (additive failed):none | true', 'additive on text falls back to manual');
SELECT is(pg_temp.m('{"tags": ["a", "b", "c"]}', '{"tags": ["a", "c", "d"]}', '{"tags": ["a", "b", "c", "e"]}', '{"fields": {"tags": "set_union"}}'),
	'{"tags": ["a", "c", "e", "d"]} | tags:set_union:merged | false',
	'set_union: both sides'' additions kept, the client''s removal of b honoured');
SELECT is(pg_temp.m('{"notes": "Seen."}', '{"notes": "Seen. Client ate lunch."}', '{"notes": "Seen. Office called."}', '{"fields": {"notes": "append"}}'),
	'{"notes": "Seen. Office called. Client ate lunch."} | notes:append:merged | false',
	'append on text: the server''s notes, then what the caregiver appended');
SELECT is(pg_temp.m('{"log": [1]}', '{"log": [1, 2]}', '{"log": [1, 3]}', '{"fields": {"log": "append"}}'),
	'{"log": [1, 3, 2]} | log:append:merged | false', 'append on arrays');
SELECT is(pg_temp.m('{"notes": "Seen."}', '{"notes": "Rewritten."}', '{"notes": "Seen. Office."}', '{"fields": {"notes": "append"}}'),
	'{"notes": "Seen. Office."} | notes:manual (append failed):none | true',
	'append when the client rewrote instead of appending: manual');
SELECT is(pg_temp.m('{"tasks": [{"id": 1, "done": false, "t": "bath"}, {"id": 2, "done": false}, {"id": 4, "done": false}]}',
					'{"tasks": [{"id": 1, "done": true, "t": "bath"}, {"id": 2, "done": false}, {"id": 3, "done": false}]}',
					'{"tasks": [{"id": 1, "done": false, "t": "shower"}, {"id": 2, "done": true}, {"id": 4, "done": true}]}',
					'{"fields": {"tasks": "merge_by_id"}}'),
	'{"tasks": [{"t": "shower", "id": 1, "done": true}, {"id": 2, "done": true}, {"id": 4, "done": true}, {"id": 3, "done": false}]} | tasks[id=4]:server_wins:server | false',
	'merge_by_id: elements merged field by field, additions of both kept; the client''s removal of an element the server changed is a conflict');
SELECT is(pg_temp.m('{"tasks": [{"id": 1, "done": false}]}', '{"tasks": [{"id": 1, "done": true}]}', '{"tasks": [{"id": 1, "done": null}]}',
					'{"fields": {"tasks": "merge_by_id", "tasks[].done": "client_wins"}}'),
	'{"tasks": [{"id": 1, "done": true}]} | tasks[id=1].done:client_wins:client | false',
	'merge_by_id: element fields have policies under tasks[].<field>, conflicts name the element by id');
SELECT is(pg_temp.m('{"tasks": [{"k": "a", "n": 1}]}', '{"tasks": [{"k": "a", "n": 2}]}', '{"tasks": [{"k": "a", "n": 3}]}',
					'{"fields": {"tasks": {"strategy": "merge_by_id", "key": "k"}}}'),
	'{"tasks": [{"k": "a", "n": 3}]} | tasks[k="a"].n:server_wins:server | false', 'merge_by_id with another key');
SELECT is(pg_temp.m('{"tasks": [1, 2]}', '{"tasks": [1, 2, 3]}', '{"tasks": [2]}', '{"fields": {"tasks": "merge_by_id"}}'),
	'{"tasks": [2]} | tasks:manual (merge_by_id failed):none | true', 'merge_by_id over elements without ids: manual');

CREATE FUNCTION pg_temp.longest(b jsonb, c jsonb, s jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT CASE WHEN length(c #>> '{}') >= length(s #>> '{}') THEN c ELSE s END
$$;
CREATE FUNCTION pg_temp.broken(b jsonb, c jsonb, s jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT (1 / 0)::text::jsonb $$;
SELECT is(pg_temp.m('{"v": "a"}', '{"v": "client"}', '{"v": "srv"}', format('{"default": {"strategy": "custom", "function": "%s.longest"}}', pg_my_temp_schema()::regnamespace)::jsonb),
	'{"v": "client"} | v:custom:merged | false', 'custom: a registered function decides');
SELECT is(pg_temp.m('{"v": "a"}', '{"v": "client"}', '{"v": "srv"}', format('{"default": {"strategy": "custom", "function": "%s.broken"}}', pg_my_temp_schema()::regnamespace)::jsonb),
	'{"v": "srv"} | v:manual (custom failed):none | true', 'custom: an error in the function falls back to manual');
SELECT is(pg_temp.m('{"v": 1}', '{"v": 2}', '{"v": 3}', '{"default": "manual"}'), '{"v": 3} | v:manual:none | true',
	'manual: the server''s value is kept and the document needs a person');

-- ---- bad input ------------------------------------------------------------------------
SELECT is(pg_temp.error_short($$SELECT backup_offline.merge3('{}', '{}', '{}', '{"default": "newest"}')$$),
	'22023: invalid policy.default: unknown strategy "newest"', 'an unknown strategy is named');
SELECT is(pg_temp.error_short($$SELECT backup_offline.merge3('{}', '{}', '{}', '{"fields": {"a": {"strategy": "lww", "key": "id"}}}')$$),
	'22023: invalid policy.fields.a: key is only for merge_by_id', 'key only with merge_by_id');
SELECT is(pg_temp.error_short($$SELECT backup_offline.merge3('{}', '{}', '{}', '{"fields": {"a": {"strategy": "custom", "function": "nowhere.fn"}}}')$$),
	'42883: invalid policy.fields.a: function nowhere.fn(jsonb, jsonb, jsonb) does not exist', 'an unknown custom function');
SELECT is(pg_temp.error_short($$SELECT backup_offline.merge3('{}', '{}', '{}', '{"priority": 1}')$$),
	'22023: invalid policy: unknown key priority', 'an unknown policy key');
SELECT is(pg_temp.error_short($$SELECT backup_offline.merge3('[]', '{}', '{}')$$),
	'22023: base must be a JSON object', 'documents are objects');
SELECT is(pg_temp.error_short($$SELECT backup_offline.merge3('{}', NULL, '{}')$$),
	'22004: client is required', 'the client document is required');

SELECT * FROM finish();
ROLLBACK;
