-- The sync engine's property test: the schema "prop" with the synced tables,
-- a model of the policies, the random driver (prop.run) and the per-round
-- checks.  Loaded and run by test/scenario/sync_property.sh, which explains
-- what is proven; this file says how.
--
-- A round plays two to five devices and the office on a handful of fresh
-- rows of four entities, in one session, step by step (each step its own
-- transaction), every choice drawn from random() after setseed(): devices
-- pull, edit offline, upload their queues in chunks whose answers or whole
-- uploads get lost (and are retried), the office writes directly, the queue
-- is processed with random max_operations, MANUAL conflicts are resolved by
-- random strategies.  In the end everything is uploaded, processed and
-- resolved, and every device pulls to the end.
--
-- Entities, of the organization the session works for (historyDepth 1000:
-- a device's base image is always kept):
--   ITEM  FIELD_LEVEL_MERGE: n additive, notes append, tags set_union, tasks
--         merge_by_id (tasks[].note append), status server_wins, title (and
--         tasks[].done) lww by hybrid logical clock; never deleted
--   NOTE  MANUAL, deletePolicy MANUAL       body, color
--   CARD  CLIENT_WINS, deletePolicy DELETE_WINS
--   PIN   SERVER_WINS, deletePolicy UPDATE_WINS
--
-- Devices follow the engine's protocol: an operation carries the version
-- the device pulled (baseVersion) and, for each field it changes, the
-- device's value after the edit; the device's copy of a row is the pulled
-- image with its own edits since over it (a second edit builds on the
-- first), and a pull of a newer version replaces it.  Every value written
-- is unique (title, status, body, color, tags, task ids, appended pieces),
-- so a value names its writer.
--
-- Clocks: a device's clientHlc is (milliseconds << 16) | a counter unique
-- in the round; before every server-side write (the office's, a
-- resolution's) the driver waits for the next millisecond, so that the
-- write's clock (its transaction's now(), in milliseconds << 16, the way
-- the engine reads sync_row.changed_at) is later than every clock before
-- it, and no two clocks tie.
--
-- The oracle:
--   * a model of every row (prop.mrow: exists, image, version, clock),
--     advanced by the office's writes, by each processed operation in the
--     order the engine applied them (completed_at) and by each resolution,
--     under the policies' meaning: per field, only one side changed it ->
--     that side's value; both -> the policy (additive server + client -
--     base, append server + what the client appended, set_union, merge_by_id
--     element by element, lww the later clock of operation and row (the
--     row's clock: the latest of the clocks of the writes it has seen),
--     server_wins, client_wins, manual: the server's value and an OPEN
--     conflict); deletes against updates by the delete policy; compared
--     with the real rows after every step;
--   * order-independent sums at the end of each round: counters, appended
--     pieces, tag sets, tasks, against every contribution (prop.contrib);
--   * a write log of the synced tables (prop.wlog, a row trigger), against
--     which every value that disappeared is accounted for.

SET client_min_messages = warning;
CREATE SCHEMA prop;

-- ---- the synced tables --------------------------------------------------------------
CREATE TABLE prop.item (id text PRIMARY KEY, n int NOT NULL, notes text NOT NULL, tags jsonb NOT NULL,
	tasks jsonb NOT NULL, title text, status text);
CREATE TABLE prop.note (id text PRIMARY KEY, body text, color text);
CREATE TABLE prop.card (LIKE prop.note INCLUDING ALL);
CREATE TABLE prop.pin (LIKE prop.note INCLUDING ALL);
SELECT backup_offline.register_sync_entity(e, t, '{"organizationId": "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", "historyDepth": 1000}'::jsonb || o)
	   IS NOT NULL
  FROM (VALUES ('ITEM', 'prop.item'::regclass, '{"fieldPolicies": {"n": "additive", "notes": "append", "tags": "set_union",
					"tasks": "merge_by_id", "tasks[].note": "append", "status": "server_wins"}}'::jsonb),
			   ('NOTE', 'prop.note', '{"defaultStrategy": "MANUAL", "deletePolicy": "MANUAL"}'),
			   ('CARD', 'prop.card', '{"defaultStrategy": "CLIENT_WINS", "deletePolicy": "DELETE_WINS"}'),
			   ('PIN', 'prop.pin', '{"defaultStrategy": "SERVER_WINS", "deletePolicy": "UPDATE_WINS"}')) v(e, t, o);

-- the entities as the model knows them: table, the policy of a conflicting
-- body/color (generic entities), the delete policy, the fields whose lost
-- values are accounted for
CREATE TABLE prop.ent (entity text PRIMARY KEY, tbl regclass NOT NULL, pol text NOT NULL, delpol text NOT NULL,
	tracked text[] NOT NULL, weight int NOT NULL, sid uuid);
INSERT INTO prop.ent VALUES
	('ITEM', 'prop.item', 'fields', 'NONE', '{title,status}', 50),
	('NOTE', 'prop.note', 'manual', 'MANUAL', '{body,color}', 20),
	('CARD', 'prop.card', 'client_wins', 'DELETE_WINS', '{body,color}', 15),
	('PIN', 'prop.pin', 'server_wins', 'UPDATE_WINS', '{body,color}', 15);
UPDATE prop.ent e SET sid = s.id FROM backup_offline.sync_entity s WHERE s.entity_type = e.entity;

-- ---- run state ------------------------------------------------------------------------
-- one row: the run's seed, the round, its seed, the step, the processing
-- call, the clock counter and the highest millisecond of any clock handed out
CREATE UNLOGGED TABLE prop.st (seed bigint, round int, rseed bigint, step int, callno int, hlc_ctr int, max_ms bigint);
INSERT INTO prop.st VALUES (0, 0, 0, 0, 0, 0, 0);
-- failures: round, the round's seed (SYNC_PROPERTY_SEED=<rseed> SYNC_PROPERTY_ROUNDS=1 replays it), property, what
CREATE UNLOGGED TABLE prop.fail (id serial PRIMARY KEY, round int, rseed bigint, step int, prop text, detail text);
-- what the run exercised (cover_log: the round's events, added up at its end)
CREATE UNLOGGED TABLE prop.cover (what text PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
CREATE UNLOGGED TABLE prop.cover_log (what text);
-- the rounds' sizes
CREATE UNLOGGED TABLE prop.rounds (round int PRIMARY KEY, rseed bigint, devices int, ops int, steps int, ms int);

-- per round (emptied at its start)
CREATE UNLOGGED TABLE prop.dev (dev text PRIMARY KEY, k int NOT NULL, cursor bigint NOT NULL, seq int NOT NULL DEFAULT 0);
-- a device's copy of a row: the version and image it pulled (assumed: its
-- own CREATE, not pulled yet), its own edits over it (local), whether it
-- deleted the row
CREATE UNLOGGED TABLE prop.view (dev text, entity text, id text, bv bigint NOT NULL, base jsonb NOT NULL, local jsonb NOT NULL,
	assumed boolean NOT NULL DEFAULT false, gone boolean NOT NULL DEFAULT false, PRIMARY KEY (dev, entity, id));
-- the operations the devices made: what the device had (seen), the
-- payload, the JSON uploaded; whether it reached the server (stored, qid),
-- was acknowledged, and the model's idea of its state (m_*)
CREATE UNLOGGED TABLE prop.op (dev text, seq int, opid text NOT NULL, entity text NOT NULL, id text NOT NULL, operation text NOT NULL,
	bv bigint, seen jsonb, payload jsonb, hlc bigint NOT NULL, depends text[] NOT NULL DEFAULT '{}', js jsonb NOT NULL,
	stored boolean NOT NULL DEFAULT false, acked boolean NOT NULL DEFAULT false, qid uuid, firsts int NOT NULL DEFAULT 0,
	m_status text, m_applied text, m_version bigint, m_conflict boolean NOT NULL DEFAULT false, m_call int, m_done int NOT NULL DEFAULT 0,
	PRIMARY KEY (dev, seq));
CREATE INDEX ON prop.op (qid);
CREATE INDEX ON prop.op (entity, id);
-- the model's rows
CREATE UNLOGGED TABLE prop.mrow (entity text, id text, ex boolean NOT NULL, img jsonb, ver bigint NOT NULL, clk bigint NOT NULL,
	PRIMARY KEY (entity, id));
-- every contribution to an ITEM's counter, notes, tags and tasks
CREATE UNLOGGED TABLE prop.contrib (entity text, id text, kind text, val text, num int, src text);
-- every write to the synced tables, with who made it (prop.actor)
CREATE UNLOGGED TABLE prop.wlog (seq bigserial PRIMARY KEY, entity text, id text, old jsonb, new jsonb, actor text);
-- the resolutions made: conflict, strategy, resolution
CREATE UNLOGGED TABLE prop.res (cid uuid PRIMARY KEY, strategy text, resolution jsonb, step int);

CREATE FUNCTION prop.wlog_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO prop.wlog (entity, id, old, new, actor)
	VALUES (TG_ARGV[0], CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
			CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END, CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
			current_setting('prop.actor', true));
	RETURN NULL;
END
$$;
CREATE TRIGGER wlog AFTER INSERT OR UPDATE OR DELETE ON prop.item FOR EACH ROW EXECUTE FUNCTION prop.wlog_trigger('ITEM');
CREATE TRIGGER wlog AFTER INSERT OR UPDATE OR DELETE ON prop.note FOR EACH ROW EXECUTE FUNCTION prop.wlog_trigger('NOTE');
CREATE TRIGGER wlog AFTER INSERT OR UPDATE OR DELETE ON prop.card FOR EACH ROW EXECUTE FUNCTION prop.wlog_trigger('CARD');
CREATE TRIGGER wlog AFTER INSERT OR UPDATE OR DELETE ON prop.pin FOR EACH ROW EXECUTE FUNCTION prop.wlog_trigger('PIN');

-- ---- small helpers ----------------------------------------------------------------------
CREATE FUNCTION prop.fail(p text, detail text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO prop.fail (round, rseed, step, prop, detail) SELECT round, rseed, step, p, detail FROM prop.st
$$;
CREATE FUNCTION prop.cover(w text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO prop.cover_log VALUES (w)
$$;
-- a random integer lo..hi
CREATE FUNCTION prop.rnd(lo int, hi int) RETURNS int LANGUAGE sql AS $$ SELECT lo + floor(random() * (hi - lo + 1))::int $$;
-- a salt for picking a random row: ORDER BY md5(key || salt) depends neither on the
-- rows' physical order nor (the key without its R<round>. prefix) on the round
CREATE FUNCTION prop.salt() RETURNS text LANGUAGE sql AS $$ SELECT random()::text $$;
CREATE FUNCTION prop.chance(p float8) RETURNS boolean LANGUAGE sql AS $$ SELECT random() < p $$;
-- a fresh value: prefix and the round's counter
CREATE SEQUENCE prop.ctr;
CREATE FUNCTION prop.val(prefix text) RETURNS text LANGUAGE sql AS $$ SELECT prefix || nextval('prop.ctr') $$;
-- milliseconds of a time, rounded the way the engine reads sync_row.changed_at
CREATE FUNCTION prop.ms(t timestamptz) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT (extract(epoch FROM t) * 1000)::bigint $$;
-- a device's clock for an edit now: (ms << 16) | a counter unique in the round
CREATE FUNCTION prop.device_clock() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	m bigint := prop.ms(clock_timestamp());
	c int;
BEGIN
	UPDATE prop.st SET hlc_ctr = hlc_ctr + 1, max_ms = greatest(max_ms, m) RETURNING hlc_ctr INTO c;
	RETURN (m << 16) | c;
END
$$;
-- before a server-side write: wait until the clock is past every clock handed out (then COMMIT, so now() is later still)
CREATE FUNCTION prop.wait_past() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	m bigint := (SELECT max_ms FROM prop.st);
BEGIN
	WHILE prop.ms(clock_timestamp()) <= m LOOP
		PERFORM pg_sleep(0.0002);
	END LOOP;
END
$$;
-- the clock of a server-side write in this transaction
CREATE FUNCTION prop.server_clock() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	UPDATE prop.st SET max_ms = greatest(max_ms, prop.ms(now()));
	RETURN prop.ms(now()) << 16;
END
$$;
-- the round's ids: R<round>.<x>
CREATE FUNCTION prop.rid(x text) RETURNS text LANGUAGE sql AS $$ SELECT 'R' || round || '.' || x FROM prop.st $$;
CREATE FUNCTION prop.actor(a text) RETURNS void LANGUAGE sql AS $$ SELECT set_config('prop.actor', a, false) $$;

-- a row image compared as a set where order is not the policy's business (tags, tasks)
CREATE FUNCTION prop.norm(img jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF img IS NULL OR jsonb_typeof(img) <> 'object' OR NOT img ? 'tags' THEN
		RETURN img;
	END IF;
	RETURN img
		|| jsonb_build_object('tags', (SELECT coalesce(jsonb_agg(x ORDER BY x::text), '[]') FROM jsonb_array_elements(img->'tags') x))
		|| jsonb_build_object('tasks', (SELECT coalesce(jsonb_agg(x ORDER BY x->>'id', x::text), '[]') FROM jsonb_array_elements(img->'tasks') x));
END
$$;
-- tasks with one task's field set
CREATE FUNCTION prop.task_set(tasks jsonb, tid text, k text, v jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(jsonb_agg(CASE WHEN x->>'id' = tid THEN jsonb_set(x, ARRAY[k], v) ELSE x END ORDER BY o), '[]')
	  FROM jsonb_array_elements(tasks) WITH ORDINALITY t(x, o)
$$;
CREATE FUNCTION prop.task_get(tasks jsonb, tid text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
	SELECT x FROM jsonb_array_elements(tasks) x WHERE x->>'id' = tid LIMIT 1
$$;

-- ---- the model of the policies ------------------------------------------------------------
-- One field, three-way: only one side changed it -> that side's value;
-- both alike -> it (an additive field counts both); else the policy.
-- conflict: a conflict the engine must record; manual: it waits for a person.
CREATE FUNCTION prop.m3(pol text, b jsonb, c jsonb, s jsonb, client_later boolean,
						OUT v jsonb, OUT conflict boolean, OUT manual boolean)
LANGUAGE plpgsql AS $$
BEGIN
	conflict := false;
	manual := false;
	IF c IS NOT DISTINCT FROM b THEN
		v := s;
		RETURN;
	ELSIF s IS NOT DISTINCT FROM b THEN
		v := c;
		RETURN;
	ELSIF c IS NOT DISTINCT FROM s AND pol <> 'additive' THEN
		v := c;
		RETURN;
	END IF;
	conflict := true;
	IF pol = 'additive' THEN
		-- the server's value with the client's change
		v := to_jsonb((s #>> '{}')::int + (c #>> '{}')::int - (b #>> '{}')::int);
	ELSIF pol = 'append' AND left(c #>> '{}', length(b #>> '{}')) = b #>> '{}' THEN
		-- the server's value followed by what the client appended
		v := to_jsonb((s #>> '{}') || substr(c #>> '{}', length(b #>> '{}') + 1));
	ELSIF pol = 'set_union' THEN
		-- what either side added, minus what either side removed
		v := (SELECT coalesce(jsonb_agg(x), '[]') FROM (
				SELECT x FROM jsonb_array_elements(s) x WHERE NOT (b @> jsonb_build_array(x) AND NOT c @> jsonb_build_array(x))
				UNION ALL
				SELECT x FROM jsonb_array_elements(c) x WHERE NOT b @> jsonb_build_array(x) AND NOT s @> jsonb_build_array(x)) u);
	ELSIF pol = 'merge_by_id' THEN
		SELECT t.v, t.conflict INTO v, conflict FROM prop.m_tasks(b, c, s, client_later) t;
	ELSIF pol = 'lww' THEN
		v := CASE WHEN client_later THEN c ELSE s END;
	ELSIF pol = 'client_wins' THEN
		v := c;
	ELSIF pol = 'server_wins' THEN
		v := s;
	ELSE
		-- manual (or a policy that cannot decide): the server's value waits for a person
		v := s;
		manual := true;
	END IF;
END
$$;

-- tasks, merged element by element (matched by id): each element three-way,
-- its note appended, its other fields lww
CREATE FUNCTION prop.m_tasks(b jsonb, c jsonb, s jsonb, client_later boolean, OUT v jsonb, OUT conflict boolean)
LANGUAGE plpgsql AS $$
DECLARE
	tid text;
	eb jsonb;
	ec jsonb;
	es jsonb;
	m jsonb;
	k text;
	r record;
BEGIN
	v := '[]';
	conflict := false;
	FOR tid IN SELECT x->>'id' FROM (SELECT x, 0 AS side, o FROM jsonb_array_elements(s) WITH ORDINALITY t(x, o)
									 UNION ALL SELECT x, 1, o FROM jsonb_array_elements(c) WITH ORDINALITY t(x, o)) u
				GROUP BY x->>'id' ORDER BY min(side), min(o) LOOP
		eb := prop.task_get(b, tid);
		ec := prop.task_get(c, tid);
		es := prop.task_get(s, tid);
		IF ec IS NOT DISTINCT FROM eb THEN
			m := es;
		ELSIF es IS NOT DISTINCT FROM eb THEN
			m := ec;
		ELSIF ec IS NOT DISTINCT FROM es THEN
			m := ec;
		ELSE
			m := '{}';
			FOR k IN SELECT DISTINCT key FROM (SELECT jsonb_object_keys(ec) AS key UNION SELECT jsonb_object_keys(es)) x LOOP
				SELECT * INTO r FROM prop.m3(CASE WHEN k = 'note' THEN 'append' ELSE 'lww' END, eb->k, ec->k, es->k, client_later);
				m := m || jsonb_build_object(k, r.v);
				conflict := conflict OR r.conflict;
			END LOOP;
		END IF;
		IF m IS NOT NULL THEN
			v := v || jsonb_build_array(m);
		END IF;
	END LOOP;
END
$$;

-- The expected outcome of one operation, applied to the model's row; the
-- row's version the device knew: its base, or the version its previous
-- operation on the row (on the same base, written as sent) wrote.
-- Returns {status, applied, ctype, cstatus, version, c (the device's
-- document), s (the row before)}.
CREATE FUNCTION prop.m_apply(o prop.op) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	e prop.ent;
	r prop.mrow;
	p prop.op;
	known bigint := o.bv;
	c jsonb := coalesce(o.seen, '{}') || coalesce(o.payload, '{}') || jsonb_build_object('id', o.id);
	s jsonb;
	m jsonb;
	f record;
	x record;
	later boolean;
	status text := 'COMPLETED';
	applied text := 'NONE';
	ctype text;
	manual boolean := false;
	conflict boolean := false;
	newimg jsonb;
	delete_it boolean := false;
BEGIN
	SELECT * INTO e FROM prop.ent WHERE entity = o.entity;
	SELECT * INTO r FROM prop.mrow WHERE entity = o.entity AND id = o.id;
	SELECT * INTO p FROM prop.op WHERE dev = o.dev AND entity = o.entity AND id = o.id AND seq < o.seq ORDER BY seq DESC LIMIT 1;
	IF FOUND AND p.bv = o.bv AND p.m_status = 'COMPLETED' AND NOT p.m_conflict AND p.m_applied = 'DIRECT' THEN
		known := p.m_version;
	END IF;
	s := CASE WHEN r.ex THEN r.img END;
	later := o.hlc > r.clk OR (o.hlc = r.clk AND (length(o.dev), o.dev) > (6, 'server'));
	IF o.operation = 'CREATE' AND r.id IS NOT NULL THEN
		-- every id is created once: a second apply of a CREATE
		PERFORM prop.fail('exactly once', format('%s (CREATE %s %s) applied to a row that exists: %s', o.opid, o.entity, o.id, r.img));
		status := 'a second CREATE';
	ELSIF o.operation = 'CREATE' THEN
		newimg := c;
		applied := 'DIRECT';
	ELSIF r.id IS NULL AND o.operation <> 'DELETE' THEN
		-- a row the server never had (a device's edit before its CREATE)
		status := 'FAILED';
	ELSIF o.operation = 'DELETE' THEN
		IF NOT coalesce(r.ex, false) THEN
			NULL;						-- already gone
		ELSIF r.ver = known OR e.delpol = 'DELETE_WINS' THEN
			IF r.ver <> known THEN
				ctype := 'DELETE_UPDATE';
			END IF;
			delete_it := true;
			applied := 'DIRECT';
		ELSE
			ctype := 'DELETE_UPDATE';
			manual := e.delpol = 'MANUAL';
		END IF;
	ELSIF NOT r.ex THEN
		-- an update of a row the server deleted
		ctype := 'UPDATE_DELETE';
		IF e.delpol = 'UPDATE_WINS' THEN
			newimg := c;
			applied := 'MERGED';
		ELSIF e.delpol = 'MANUAL' THEN
			manual := true;
		END IF;
	ELSIF r.ver = known THEN
		-- the row is what the device had: its fields as sent
		newimg := s || o.payload;
		applied := 'DIRECT';
	ELSE
		-- both changed it: field by field
		m := jsonb_build_object('id', o.id);
		FOR f IN SELECT k, CASE WHEN e.pol <> 'fields' THEN e.pol
								WHEN k = 'n' THEN 'additive' WHEN k = 'notes' THEN 'append' WHEN k = 'tags' THEN 'set_union'
								WHEN k = 'tasks' THEN 'merge_by_id' WHEN k = 'status' THEN 'server_wins' ELSE 'lww' END AS pol
				   FROM jsonb_object_keys(s) k WHERE k <> 'id' LOOP
			SELECT * INTO x FROM prop.m3(f.pol, o.seen->f.k, c->f.k, s->f.k, later);
			m := m || jsonb_build_object(f.k, x.v);
			conflict := conflict OR x.conflict;
			manual := manual OR x.manual;
		END LOOP;
		IF conflict THEN
			ctype := CASE WHEN manual THEN 'UPDATE_UPDATE' ELSE 'FIELD_LEVEL' END;
		END IF;
		IF m IS DISTINCT FROM s AND prop.norm(m) IS DISTINCT FROM prop.norm(s) THEN
			newimg := m;
			applied := 'MERGED';
		END IF;
	END IF;
	IF manual THEN
		status := 'CONFLICT';
	END IF;
	-- the model's row: written (a new version, the clock advanced), deleted, or as it was
	IF newimg IS NOT NULL OR delete_it THEN
		INSERT INTO prop.mrow AS t VALUES (o.entity, o.id, NOT delete_it, CASE WHEN delete_it THEN NULL ELSE newimg END, 1, o.hlc)
		ON CONFLICT (entity, id) DO UPDATE SET ex = EXCLUDED.ex, img = EXCLUDED.img, ver = t.ver + 1, clk = greatest(t.clk, EXCLUDED.clk)
		RETURNING * INTO r;
	END IF;
	RETURN jsonb_build_object('status', status, 'applied', applied, 'ctype', ctype,
		'cstatus', CASE WHEN ctype IS NULL THEN NULL WHEN manual THEN 'OPEN' ELSE 'AUTO_RESOLVED' END,
		'version', CASE WHEN applied <> 'NONE' THEN r.ver END, 'c', c, 's', s, 'later', later);
END
$$;

-- what a row's change gave to the order-independent sums (ITEM): counter
-- delta, appended pieces, tags added and removed, tasks added, ticked,
-- their appended pieces
CREATE FUNCTION prop.contrib(en text, rid text, before jsonb, after jsonb, src text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	b jsonb := coalesce(before, '{"n": 0, "notes": "", "tags": [], "tasks": []}');
	a jsonb := b || after;
BEGIN
	IF en <> 'ITEM' THEN
		RETURN;
	END IF;
	IF (a->>'n')::int <> (b->>'n')::int THEN
		INSERT INTO prop.contrib VALUES (en, rid, 'n', NULL, (a->>'n')::int - (b->>'n')::int, src);
	END IF;
	INSERT INTO prop.contrib
	SELECT en, rid, 'piece', x, NULL, src FROM regexp_split_to_table(substr(a->>'notes', length(b->>'notes') + 1), ';') x WHERE x <> '';
	INSERT INTO prop.contrib SELECT en, rid, 'tag+', x, NULL, src FROM jsonb_array_elements_text(a->'tags') x
	 WHERE NOT b->'tags' ? x;
	INSERT INTO prop.contrib SELECT en, rid, 'tag-', x, NULL, src FROM jsonb_array_elements_text(b->'tags') x
	 WHERE NOT a->'tags' ? x;
	INSERT INTO prop.contrib SELECT en, rid, 'task+', t->>'id', NULL, src FROM jsonb_array_elements(a->'tasks') t
	 WHERE prop.task_get(b->'tasks', t->>'id') IS NULL;
	INSERT INTO prop.contrib SELECT en, rid, 'tick', t->>'id', NULL, src FROM jsonb_array_elements(a->'tasks') t
	 WHERE (t->>'done')::boolean AND NOT coalesce((prop.task_get(b->'tasks', t->>'id')->>'done')::boolean, false);
	INSERT INTO prop.contrib
	SELECT en, rid, 'tpiece', t->>'id' || '/' || x, NULL, src
	  FROM jsonb_array_elements(a->'tasks') t,
		   regexp_split_to_table(substr(t->>'note', coalesce(length(prop.task_get(b->'tasks', t->>'id')->>'note'), 0) + 1), ';') x
	 WHERE x <> '';
END
$$;

-- ---- edits: what a device or the office changes in a row ------------------------------------
-- A random change of an image (the fields it changes), by writer w; for an
-- ITEM one to three fields, for the others body and/or color.
CREATE FUNCTION prop.change(en text, img jsonb, w text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	ch jsonb := '{}';
	k text;
	t jsonb;
	tid text;
BEGIN
	IF en <> 'ITEM' THEN
		IF prop.chance(0.6) THEN
			ch := ch || jsonb_build_object('body', prop.val(w || ':b'));
		END IF;
		IF ch = '{}' OR prop.chance(0.4) THEN
			ch := ch || jsonb_build_object('color', prop.val(w || ':c'));
		END IF;
		RETURN ch;
	END IF;
	FOR k IN SELECT x FROM unnest(ARRAY['n', 'notes', 'tags', 'tasks', 'title', 'status']) x ORDER BY random() LIMIT prop.rnd(1, 3) LOOP
		t := coalesce(ch->'tasks', img->'tasks');
		CASE k
		WHEN 'n' THEN
			ch := ch || jsonb_build_object('n', (img->>'n')::int + (CASE WHEN prop.chance(0.5) THEN 1 ELSE -1 END) * prop.rnd(1, 9));
		WHEN 'notes' THEN
			ch := ch || jsonb_build_object('notes', (img->>'notes') || prop.val(w || ':p') || ';');
		WHEN 'tags' THEN
			IF jsonb_array_length(img->'tags') > 0 AND prop.chance(0.4) THEN
				ch := ch || jsonb_build_object('tags', (img->'tags') - (SELECT x FROM jsonb_array_elements_text(img->'tags') x ORDER BY random() LIMIT 1));
			ELSE
				ch := ch || jsonb_build_object('tags', (img->'tags') || jsonb_build_array(prop.val(w || ':g')));
			END IF;
		WHEN 'tasks' THEN
			IF jsonb_array_length(t) = 0 OR prop.chance(0.3) THEN
				tid := prop.val('t');
				ch := ch || jsonb_build_object('tasks', t || jsonb_build_array(jsonb_build_object('id', tid, 'label', 'L' || tid, 'done', false, 'note', '')));
			ELSE
				tid := (SELECT x->>'id' FROM jsonb_array_elements(t) x ORDER BY random() LIMIT 1);
				IF NOT (prop.task_get(t, tid)->>'done')::boolean AND prop.chance(0.5) THEN
					ch := ch || jsonb_build_object('tasks', prop.task_set(t, tid, 'done', 'true'));
				ELSE
					ch := ch || jsonb_build_object('tasks', prop.task_set(t, tid, 'note',
						to_jsonb((prop.task_get(t, tid)->>'note') || prop.val(w || ':q') || ';')));
				END IF;
			END IF;
		WHEN 'title' THEN
			ch := ch || jsonb_build_object('title', prop.val(w || ':T'));
		ELSE
			ch := ch || jsonb_build_object('status', prop.val(w || ':S'));
		END CASE;
	END LOOP;
	RETURN ch;
END
$$;

-- a whole new row's fields, by writer w
CREATE FUNCTION prop.new_row(en text, w text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	tid text;
BEGIN
	IF en <> 'ITEM' THEN
		RETURN jsonb_build_object('body', prop.val(w || ':b'), 'color', prop.val(w || ':c'));
	END IF;
	tid := prop.val('t');
	RETURN jsonb_build_object('n', prop.rnd(0, 20), 'notes', prop.val(w || ':p') || ';', 'tags', jsonb_build_array(prop.val(w || ':g')),
		'tasks', jsonb_build_array(jsonb_build_object('id', tid, 'label', 'L' || tid, 'done', false, 'note', '')),
		'title', prop.val(w || ':T'), 'status', prop.val(w || ':S'));
END
$$;

-- ---- the office ----------------------------------------------------------------------------------
-- Write a row of the table directly and advance the model the same way.
-- doc NULL: delete.  A new id: insert.
CREATE FUNCTION prop.server_write(en text, rid text, doc jsonb, is_insert boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	e prop.ent;
	cols text;
	sclk bigint := prop.server_clock();
BEGIN
	SELECT * INTO e FROM prop.ent WHERE entity = en;
	IF doc IS NULL THEN
		EXECUTE format('DELETE FROM %s WHERE id = $1', e.tbl) USING rid;
		UPDATE prop.mrow SET ex = false, img = NULL, ver = ver + 1, clk = greatest(prop.mrow.clk, sclk)
		 WHERE entity = en AND id = rid;
		RETURN;
	END IF;
	SELECT string_agg(quote_ident(k), ', ') INTO cols FROM jsonb_object_keys(doc) k;
	IF is_insert THEN
		EXECUTE format('INSERT INTO %s (id, %s) SELECT $2, %s FROM jsonb_populate_record(NULL::%s, $1)', e.tbl, cols, cols, e.tbl)
			USING doc, rid;
		INSERT INTO prop.mrow VALUES (en, rid, true, doc || jsonb_build_object('id', rid), 1, sclk);
		PERFORM prop.contrib(en, rid, NULL, doc, 'office');
	ELSE
		PERFORM prop.contrib(en, rid, (SELECT img FROM prop.mrow WHERE entity = en AND id = rid), doc, 'office');
		EXECUTE format('UPDATE %s SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1)) WHERE id = $2', e.tbl,
					   cols, cols, e.tbl) USING doc, rid;
		UPDATE prop.mrow SET img = img || doc, ver = ver + 1, clk = greatest(prop.mrow.clk, sclk)
		 WHERE entity = en AND id = rid;
	END IF;
END
$$;

-- the office's step: change a row (for the generic entities sometimes
-- delete one or add one)
CREATE FUNCTION prop.office() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	en text := (SELECT entity FROM prop.ent ORDER BY random() * weight DESC LIMIT 1);
	r prop.mrow;
	x float8 := random();
	salt text := prop.salt();
	wid text;
BEGIN
	PERFORM prop.actor('office');
	SELECT * INTO r FROM prop.mrow WHERE entity = en AND ex ORDER BY md5(split_part(id, '.', 2) || salt) LIMIT 1;
	IF r.id IS NULL OR (en <> 'ITEM' AND x < 0.1) THEN
		wid := prop.rid(prop.val('o'));
		PERFORM prop.server_write(en, wid, prop.new_row(en, 'office'), true);
		PERFORM prop.cover('office insert');
	ELSIF en <> 'ITEM' AND x < 0.3 THEN
		wid := r.id;
		PERFORM prop.server_write(en, wid, NULL, false);
		PERFORM prop.cover('office delete');
	ELSE
		-- read-modify-write of the row as it is
		wid := r.id;
		PERFORM prop.server_write(en, wid, prop.change(en, r.img, 'office'), false);
		PERFORM prop.cover('office update');
	END IF;
	PERFORM prop.compare_rows('office write', 'policies', ARRAY[en || '/' || wid]);
END
$$;

-- ---- devices ----------------------------------------------------------------------------------------
-- Make an operation of device d: the operation JSON, the device's copy.
CREATE FUNCTION prop.device_edit(d text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	dv prop.dev;
	en text := (SELECT entity FROM prop.ent ORDER BY random() * weight DESC LIMIT 1);
	v prop.view;
	kind text;
	rid text;
	payload jsonb;
	seen jsonb;
	hlc bigint := prop.device_clock();
	js jsonb;
	deps text[] := '{}';
	cr text;
	pri text;
	salt text := prop.salt();
BEGIN
	UPDATE prop.dev SET seq = seq + 1 WHERE dev = d RETURNING * INTO dv;
	SELECT * INTO v FROM prop.view WHERE dev = d AND entity = en AND NOT gone ORDER BY md5(split_part(id, '.', 2) || salt) LIMIT 1;
	IF v.id IS NULL OR prop.chance(0.1) THEN
		kind := 'CREATE';
		rid := d || '-' || prop.val('r');			-- a new id, made on the device
		payload := prop.new_row(en, d);
		INSERT INTO prop.view VALUES (d, en, rid, 1, payload || jsonb_build_object('id', rid), payload || jsonb_build_object('id', rid), true);
		PERFORM prop.contrib(en, rid, NULL, payload, d);
	ELSIF en <> 'ITEM' AND prop.chance(0.2) THEN
		kind := 'DELETE';
		rid := v.id;
		seen := v.local;
		UPDATE prop.view SET gone = true WHERE dev = d AND entity = en AND id = rid;
	ELSE
		kind := 'PATCH';
		rid := v.id;
		seen := v.local;
		payload := prop.change(en, v.local, d);
		PERFORM prop.contrib(en, rid, v.local, payload, d);
		UPDATE prop.view SET local = local || payload WHERE dev = d AND entity = en AND id = rid;
	END IF;
	-- an edit of the device's own new row may wait for its CREATE (dependsOn)
	IF kind <> 'CREATE' AND v.assumed AND prop.chance(0.4) THEN
		SELECT opid INTO cr FROM prop.op WHERE dev = d AND entity = en AND id = rid AND operation = 'CREATE';
		deps := ARRAY[cr];
	END IF;
	pri := (ARRAY['CRITICAL', 'HIGH', 'NORMAL', 'NORMAL', 'NORMAL', 'LOW', 'BACKGROUND'])[prop.rnd(1, 7)];
	js := jsonb_strip_nulls(jsonb_build_object('deviceId', d, 'operationId', d || '.' || dv.seq, 'deviceSeq', dv.seq,
		'clientHlc', hlc, 'operation', kind, 'entityType', en, 'entityId', rid, 'payload', payload,
		'baseVersion', CASE WHEN kind <> 'CREATE' THEN v.bv END, 'priority', pri,
		'dependsOn', CASE WHEN cardinality(deps) > 0 THEN to_jsonb(deps) END));
	INSERT INTO prop.op (dev, seq, opid, entity, id, operation, bv, seen, payload, hlc, depends, js)
	VALUES (d, dv.seq, d || '.' || dv.seq, en, rid, kind, CASE WHEN kind <> 'CREATE' THEN v.bv END, seen, payload, hlc, deps, js);
	PERFORM prop.cover('edit ' || kind);
END
$$;

-- Upload the device's first k unacknowledged operations; fate: ok, the
-- answer lost (stored, not acknowledged: uploaded again later), the
-- upload lost (nothing stored).  Checks every answer.
CREATE FUNCTION prop.upload(d text, k int, fate text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	chunk jsonb;
	ans jsonb;
	a record;
	q backup_offline.sync_queue;
BEGIN
	SELECT jsonb_agg(js ORDER BY seq) INTO chunk
	  FROM (SELECT js, seq FROM prop.op WHERE dev = d AND NOT acked ORDER BY seq LIMIT k) x;
	IF chunk IS NULL THEN
		RETURN;
	END IF;
	IF fate = 'upload lost' THEN
		PERFORM prop.cover('upload lost');
		RETURN;
	END IF;
	BEGIN
		ans := backup_offline.queue_operations(chunk);
	EXCEPTION WHEN OTHERS THEN
		PERFORM prop.fail('retries', format('queue_operations failed: %s %s (chunk %s)', SQLSTATE, SQLERRM, chunk));
		RETURN;
	END;
	PERFORM prop.cover('upload ' || fate);
	FOR a IN SELECT o.*, x.r, x.i FROM jsonb_array_elements(ans) WITH ORDINALITY x(r, i)
			   LEFT JOIN prop.op o ON o.dev = d AND o.opid = x.r->>'operationId' ORDER BY x.i LOOP
		SELECT * INTO q FROM backup_offline.sync_queue WHERE device_id = d AND operation_id = a.r->>'operationId';
		IF a.opid IS NULL OR a.opid <> chunk->(a.i::int - 1)->>'operationId' THEN
			PERFORM prop.fail('retries', format('answer %s names operation %s, not the one sent there', a.i, a.r->>'operationId'));
		ELSIF a.stored THEN
			PERFORM prop.cover('duplicate answered');
			IF (a.r->>'duplicate')::boolean IS NOT TRUE OR (a.r->>'id')::uuid IS DISTINCT FROM a.qid
			   OR a.r->>'status' IS DISTINCT FROM q.status::text OR (a.r->'result') IS DISTINCT FROM q.result THEN
				PERFORM prop.fail('retries', format('retried upload of %s: answer %s, stored %s %s %s', a.opid, a.r, a.qid, q.status, q.result));
			END IF;
			IF q.status::text = 'COMPLETED' THEN
				PERFORM prop.cover('duplicate after completion');
			END IF;
		ELSE
			IF (a.r->>'duplicate')::boolean IS NOT FALSE OR q.id IS NULL OR (a.r->>'id')::uuid IS DISTINCT FROM q.id
			   OR a.r->>'status' IS DISTINCT FROM (CASE WHEN cardinality(a.depends) > 0 THEN 'BLOCKED' ELSE 'PENDING' END) THEN
				PERFORM prop.fail('retries', format('first upload of %s: answer %s, stored %s', a.opid, a.r, q.id));
			END IF;
			UPDATE prop.op SET stored = true, qid = q.id, firsts = firsts + 1, m_status = q.status::text
			 WHERE dev = d AND seq = a.seq;
		END IF;
		IF fate = 'ok' THEN
			UPDATE prop.op SET acked = true WHERE dev = d AND seq = a.seq;
		END IF;
	END LOOP;
END
$$;


-- ---- the real rows --------------------------------------------------------------------------------
-- every row of the round the model knows or that was written (or those of
-- keys, 'ENTITY/id'): its image (NULL: not there) and its sync_row version
CREATE FUNCTION prop.actual(keys text[] DEFAULT NULL) RETURNS TABLE (entity text, id text, img jsonb, ver bigint) LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY
	WITH k AS (SELECT split_part(x, '/', 1) AS entity, substr(x, strpos(x, '/') + 1) AS id FROM unnest(keys) x
			   UNION ALL
			   SELECT x.entity, x.id FROM (SELECT m.entity, m.id FROM prop.mrow m UNION SELECT w.entity, w.id FROM prop.wlog w) x
				WHERE keys IS NULL)
	SELECT k.entity, k.id,
		   CASE k.entity WHEN 'ITEM' THEN (SELECT to_jsonb(x) FROM prop.item x WHERE x.id = k.id)
						 WHEN 'NOTE' THEN (SELECT to_jsonb(x) FROM prop.note x WHERE x.id = k.id)
						 WHEN 'CARD' THEN (SELECT to_jsonb(x) FROM prop.card x WHERE x.id = k.id)
						 ELSE (SELECT to_jsonb(x) FROM prop.pin x WHERE x.id = k.id) END,
		   s.version
	  FROM k
	  JOIN prop.ent e ON e.entity = k.entity
	  LEFT JOIN LATERAL (SELECT r.version FROM backup_offline.sync_row r WHERE r.entity_id = e.sid AND r.row_key = k.id OFFSET 0) s ON true;
END
$$;

-- Compare the model's rows (those of keys, 'ENTITY/id'; NULL: all) with
-- the real ones; a difference is a failure of property p (then the model
-- takes the real row, so that one fault is reported once).
CREATE FUNCTION prop.compare_rows(what text, p text DEFAULT 'policies', keys text[] DEFAULT NULL) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	d record;
BEGIN
	FOR d IN SELECT a.entity, a.id, a.img, a.ver, m.ex, m.img AS mimg, m.ver AS mver, m.clk
			   FROM prop.actual(keys) a LEFT JOIN prop.mrow m ON m.entity = a.entity AND m.id = a.id
			  WHERE m.id IS NULL OR m.ex <> (a.img IS NOT NULL) OR m.ver IS DISTINCT FROM a.ver
				 OR (m.img IS DISTINCT FROM a.img AND prop.norm(m.img) IS DISTINCT FROM prop.norm(a.img)) LOOP
		PERFORM prop.fail(p, format('after %s: %s %s is %s (version %s), the policies say %s (version %s; row clock %s)',
			what, d.entity, d.id, coalesce(d.img::text, 'absent'), d.ver,
			CASE WHEN d.mver IS NULL THEN 'nothing' WHEN d.ex THEN d.mimg::text ELSE 'absent' END, d.mver, d.clk));
		INSERT INTO prop.mrow AS m VALUES (d.entity, d.id, d.img IS NOT NULL, d.img, coalesce(d.ver, 0), coalesce(d.clk, 0))
		ON CONFLICT (entity, id) DO UPDATE SET ex = EXCLUDED.ex, img = EXCLUDED.img, ver = EXCLUDED.ver;
	END LOOP;
END
$$;

-- Pull: pages of page_size until the end (or one page when partial); the
-- device's copies replaced by what it pulled (its edits on a version it
-- pulls again, its own new row's first version, stay).  After a pull to the end the
-- device must hold every row as the server has it (its own creates not yet
-- applied aside).
CREATE FUNCTION prop.pull(d text, page_size int, partial boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	ans jsonb;
	ch jsonb;
	bad text;
BEGIN
	LOOP
		BEGIN
			ans := backup_offline.pull_changes(d, (SELECT cursor FROM prop.dev WHERE dev = d), page_size);
		EXCEPTION WHEN OTHERS THEN
			PERFORM prop.fail('pulls', format('%s: pull_changes failed: %s %s', d, SQLSTATE, SQLERRM));
			RETURN;
		END;
		IF (ans->>'resyncRequired')::boolean THEN
			PERFORM prop.fail('pulls', format('%s: resync required: %s', d, ans));
			RETURN;
		END IF;
		FOR ch IN SELECT x FROM jsonb_array_elements(ans->'changes') x LOOP
			CONTINUE WHEN (ch->>'id') NOT LIKE (SELECT 'R' || round || '.%' FROM prop.st);
			IF (ch->>'deleted')::boolean THEN
				DELETE FROM prop.view WHERE dev = d AND entity = ch->>'entityType' AND id = ch->>'id';
			ELSE
				INSERT INTO prop.view AS v VALUES (d, ch->>'entityType', ch->>'id', (ch->>'version')::bigint, ch->'data', ch->'data')
				ON CONFLICT (dev, entity, id) DO UPDATE
				   SET bv = EXCLUDED.bv, base = EXCLUDED.base, assumed = false, gone = false,
					   -- the version it has (its own new row, first pulled): its edits on it stay
					   local = CASE WHEN v.bv = EXCLUDED.bv AND NOT v.gone THEN v.local ELSE EXCLUDED.local END;
			END IF;
		END LOOP;
		UPDATE prop.dev SET cursor = (ans->>'nextCursor')::bigint WHERE dev = d;
		EXIT WHEN partial OR NOT (ans->>'hasMore')::boolean;
	END LOOP;
	IF partial THEN
		PERFORM prop.cover('pull partial');
		RETURN;
	END IF;
	PERFORM prop.cover('pull to the end');
	-- (the model's rows: the real ones, compared after every step)
	SELECT string_agg(format('%s %s: device has %s (v%s), server %s (v%s)', coalesce(a.entity, v.entity), coalesce(a.id, v.id),
						coalesce(v.base::text, 'nothing'), v.bv, coalesce(a.img::text, 'nothing'), a.ver), '; ') INTO bad
	  FROM (SELECT * FROM prop.mrow WHERE ex) a
	  FULL JOIN (SELECT * FROM prop.view WHERE dev = d AND NOT assumed) v ON v.entity = a.entity AND v.id = a.id
	 WHERE NOT EXISTS (SELECT 1 FROM prop.view x WHERE x.dev = d AND x.entity = a.entity AND x.id = a.id AND x.assumed)
	   AND (a.id IS NULL OR v.id IS NULL OR v.bv IS DISTINCT FROM a.ver
			OR (v.base IS DISTINCT FROM a.img AND prop.norm(v.base) IS DISTINCT FROM prop.norm(a.img)));
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('pulls', format('%s pulled to the end: %s', d, bad));
	END IF;
END
$$;

-- ---- processing -----------------------------------------------------------------------------------
-- process_sync_queue(maxops), then: the operations it took, in the order
-- it applied them (completed_at), each against the model (outcome, conflict
-- record, and whether it was allowed to run: the device's earlier
-- operations on the row and its dependencies done), the call's answer,
-- nothing runnable left when it stopped short of maxops, every row.
CREATE FUNCTION prop.process(maxops int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	res jsonb;
	o prop.op;
	q record;
	x jsonb;
	c record;
	k int;
	n_completed int := 0;
	n_conflicts int := 0;
	n_processed int := 0;
	bad text;
BEGIN
	UPDATE prop.st SET callno = callno + 1 RETURNING callno INTO k;
	PERFORM prop.actor('process:' || k);
	BEGIN
		res := backup_offline.process_sync_queue(maxops);
	EXCEPTION WHEN OTHERS THEN
		PERFORM prop.fail('outcomes', format('process_sync_queue(%s) failed: %s %s', maxops, SQLSTATE, SQLERRM));
		RETURN;
	END;
	PERFORM prop.cover('process calls');
	FOR q IN SELECT po.dev, po.seq, s.id, s.status::text AS status, s.result, s.has_conflict, s.retry_count, s.last_error
			   FROM prop.op po JOIN backup_offline.sync_queue s ON s.id = po.qid
			  WHERE po.stored AND po.m_status IN ('PENDING', 'BLOCKED') AND (s.status NOT IN ('PENDING', 'BLOCKED') OR s.retry_count > 0)
			  ORDER BY s.completed_at, s.enqueue_seq LOOP
		SELECT * INTO o FROM prop.op WHERE dev = q.dev AND seq = q.seq;
		n_processed := n_processed + 1;
		IF q.status IN ('PENDING', 'BLOCKED') THEN
			PERFORM prop.fail('outcomes', format('%s was retried (%s): %s', o.opid, q.retry_count, q.last_error));
			CONTINUE;
		END IF;
		n_completed := n_completed + (q.status = 'COMPLETED')::int;
		n_conflicts := n_conflicts + (q.status = 'CONFLICT')::int;
		-- allowed to run? (the device's earlier operations on the row not waiting, its dependencies COMPLETED)
		SELECT string_agg(p.opid || ' ' || coalesce(p.m_status, 'not uploaded'), ', ') INTO bad FROM prop.op p
		 WHERE p.dev = o.dev AND ((p.entity = o.entity AND p.id = o.id AND p.seq < o.seq
								   AND (p.m_status IS NULL OR p.m_status IN ('PENDING', 'BLOCKED', 'CONFLICT')))
								  OR (p.opid = ANY (o.depends) AND p.m_status IS DISTINCT FROM 'COMPLETED'));
		IF bad IS NOT NULL THEN
			PERFORM prop.fail('holds', format('%s ran while %s', o.opid, bad));
		END IF;
		x := prop.m_apply(o);
		PERFORM prop.cover(format('%s %s %s%s', o.entity, o.operation, x->>'applied', coalesce(' ' || (x->>'ctype'), '')));
		IF (x->>'ctype') IS NOT NULL AND o.entity = 'ITEM' THEN
			PERFORM prop.cover(CASE WHEN (x->>'later')::boolean THEN 'ITEM conflict: operation later than the row'
									ELSE 'ITEM conflict: row later than the operation' END);
		END IF;
		IF q.status IS DISTINCT FROM x->>'status' OR (q.result->>'applied') IS DISTINCT FROM x->>'applied'
		   OR (q.result->>'conflictType') IS DISTINCT FROM x->>'ctype'
		   OR (x->>'applied' <> 'NONE' AND (q.result->>'version')::bigint IS DISTINCT FROM (x->>'version')::bigint) THEN
			PERFORM prop.fail('outcomes', format('%s (%s %s %s base %s, payload %s): %s %s (retries %s, %s), the policies say %s %s %s version %s (row %s)',
				o.opid, o.operation, o.entity, o.id, o.bv, o.payload, q.status, q.result, q.retry_count, q.last_error,
				x->>'status', x->>'applied', x->>'ctype', x->>'version', x->'s'));
		END IF;
		-- its conflict record: one when it conflicted, with the device's document and the row as it was
		SELECT count(*) AS n, min(cf.conflict_type::text) AS ctype, min(cf.status::text) AS cstatus,
			   bool_and(cf.client_version->'data' = x->'c' OR prop.norm(cf.client_version->'data') IS NOT DISTINCT FROM prop.norm(x->'c')) AS c_ok,
			   bool_and(cf.server_version->'data' = x->'s' OR prop.norm(cf.server_version->'data') IS NOT DISTINCT FROM prop.norm(x->'s')) AS s_ok,
			   min(cf.client_version->>'data') AS cdoc, min(cf.server_version->>'data') AS sdoc
		  INTO c FROM backup_offline.sync_conflict cf WHERE cf.queue_id = q.id;
		IF c.n <> (x->>'ctype' IS NOT NULL)::int OR c.ctype IS DISTINCT FROM x->>'ctype' OR c.cstatus IS DISTINCT FROM x->>'cstatus'
		   OR NOT c.c_ok OR NOT c.s_ok THEN
			PERFORM prop.fail('conflict records', format('%s (%s %s %s): %s record(s) %s %s client %s server %s; the policies say %s %s client %s server %s',
				o.opid, o.operation, o.entity, o.id, c.n, c.ctype, c.cstatus, c.cdoc, c.sdoc, x->>'ctype', x->>'cstatus', x->'c', x->'s'));
		END IF;
		UPDATE prop.op SET m_status = q.status, m_applied = q.result->>'applied', m_version = (q.result->>'version')::bigint,
			   m_conflict = q.has_conflict, m_call = k, m_done = m_done + 1
		 WHERE dev = o.dev AND seq = o.seq;
	END LOOP;
	-- released dependents
	UPDATE prop.op po SET m_status = 'PENDING' FROM backup_offline.sync_queue s
	 WHERE s.id = po.qid AND po.m_status = 'BLOCKED' AND s.status = 'PENDING';
	-- nothing else changed
	SELECT string_agg(po.opid || ' ' || po.m_status || ' -> ' || s.status, ', ') INTO bad
	  FROM prop.op po JOIN backup_offline.sync_queue s ON s.id = po.qid WHERE po.m_status IS DISTINCT FROM s.status::text;
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('outcomes', format('process_sync_queue(%s) changed %s', maxops, bad));
		UPDATE prop.op po SET m_status = s.status::text FROM backup_offline.sync_queue s WHERE s.id = po.qid;
	END IF;
	IF (res->>'processed')::int <> n_processed OR (res->>'completed')::int <> n_completed OR (res->>'conflicts')::int <> n_conflicts THEN
		PERFORM prop.fail('outcomes', format('process_sync_queue(%s) answered %s; it processed %s, completed %s, left %s in conflict',
			maxops, res, n_processed, n_completed, n_conflicts));
	END IF;
	-- stopped short of maxops: nothing runnable left (every PENDING operation
	-- waits behind an earlier one of its device on the row; no BLOCKED one
	-- whose dependencies are done)
	IF (res->>'processed')::int < maxops THEN
		SELECT string_agg(po.opid, ', ') INTO bad FROM prop.op po
		 WHERE (po.m_status = 'PENDING' AND NOT EXISTS (SELECT 1 FROM prop.op p WHERE p.dev = po.dev AND p.entity = po.entity AND p.id = po.id
																		AND p.seq < po.seq AND p.m_status IN ('PENDING', 'BLOCKED', 'CONFLICT')))
			OR (po.m_status = 'BLOCKED' AND NOT EXISTS (SELECT 1 FROM prop.op p WHERE p.dev = po.dev AND p.opid = ANY (po.depends)
																	  AND p.m_status IS DISTINCT FROM 'COMPLETED'));
		IF bad IS NOT NULL THEN
			PERFORM prop.fail('holds', format('process_sync_queue(%s) processed %s and left runnable: %s', maxops, res->>'processed', bad));
		END IF;
	END IF;
	PERFORM prop.compare_rows(format('process_sync_queue(%s) (call %s)', maxops, k), 'policies',
		ARRAY(SELECT po.entity || '/' || po.id FROM prop.op po WHERE po.m_call = k
			  UNION SELECT w.entity || '/' || w.id FROM prop.wlog w WHERE w.actor = 'process:' || k));
END
$$;

-- ---- resolutions ------------------------------------------------------------------------------------
-- Resolve one OPEN conflict of the round (a random strategy;
-- FIELD_LEVEL_MERGE: per conflicting field the client's or the server's
-- value; CUSTOM: a new document), then check the conflict, the operation
-- and the row against the strategy's meaning: CLIENT_WINS the device's
-- changes (its delete: deleted; an update of a deleted row: the row back),
-- SERVER_WINS nothing, FIELD_LEVEL_MERGE the row with the chosen fields,
-- CUSTOM the document.  false: none open.
CREATE FUNCTION prop.resolve() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	cf backup_offline.sync_conflict;
	o prop.op;
	strategy text := (ARRAY['CLIENT_WINS', 'SERVER_WINS', 'FIELD_LEVEL_MERGE', 'CUSTOM'])[prop.rnd(1, 4)];
	res jsonb;
	c jsonb;
	r prop.mrow;
	rclk bigint := prop.server_clock();
	ans jsonb;
	bad text;
	now_img jsonb;
BEGIN
	SELECT f.* INTO cf FROM backup_offline.sync_conflict f JOIN prop.op p ON p.qid = f.queue_id
	 WHERE f.status = 'OPEN' ORDER BY p.dev, p.seq LIMIT 1 OFFSET prop.rnd(0, 3);
	IF cf.id IS NULL THEN
		SELECT f.* INTO cf FROM backup_offline.sync_conflict f JOIN prop.op p ON p.qid = f.queue_id
		 WHERE f.status = 'OPEN' ORDER BY p.dev, p.seq LIMIT 1;
	END IF;
	IF cf.id IS NULL THEN
		RETURN false;
	END IF;
	SELECT * INTO o FROM prop.op WHERE qid = cf.queue_id;
	c := coalesce(o.seen, '{}') || coalesce(o.payload, '{}') || jsonb_build_object('id', o.id);
	IF strategy = 'FIELD_LEVEL_MERGE' THEN
		SELECT jsonb_object_agg(f->>'path', CASE WHEN prop.chance(0.5) THEN f->'client' ELSE f->'server' END) INTO res
		  FROM jsonb_array_elements(cf.conflicting_fields) f;
		res := coalesce(res, jsonb_build_object('body', coalesce(c->'body', to_jsonb(prop.val('person:b')))));
	ELSIF strategy = 'CUSTOM' THEN
		res := jsonb_build_object('body', prop.val('person:b'), 'color', prop.val('person:c'));
	END IF;
	PERFORM prop.actor('resolve:' || cf.id);
	BEGIN
		ans := backup_offline.resolve_conflict(cf.id, strategy, 'eeeeeeee-0000-4000-8000-0000000000e8', res, 'sync_property');
	EXCEPTION WHEN OTHERS THEN
		PERFORM prop.fail('resolutions', format('resolve_conflict(%s, %s, %s) failed: %s %s', cf.id, strategy, res, SQLSTATE, SQLERRM));
		RETURN true;
	END;
	INSERT INTO prop.res VALUES (cf.id, strategy, res, (SELECT step FROM prop.st));
	PERFORM prop.cover('resolved ' || strategy || ' ' || cf.conflict_type);
	-- the model
	SELECT * INTO r FROM prop.mrow WHERE entity = o.entity AND id = o.id;
	IF strategy = 'CLIENT_WINS' AND o.operation = 'DELETE' THEN
		IF r.ex THEN
			UPDATE prop.mrow SET ex = false, img = NULL, ver = ver + 1, clk = greatest(prop.mrow.clk, rclk)
			 WHERE entity = o.entity AND id = o.id;
		END IF;
	ELSIF strategy = 'CLIENT_WINS' THEN
		-- the fields the device changed take its values; each of the others
		-- stays, or takes the device's document's value (the whole document
		-- written: a value lost so is for 'no value lost' to find)
		now_img := (SELECT a.img FROM prop.actual(ARRAY[o.entity || '/' || o.id]) a);
		c := CASE WHEN r.ex THEN r.img ELSE c END || o.payload
			 || coalesce((SELECT jsonb_object_agg(k, c->k) FROM jsonb_object_keys(c) k
						   WHERE r.ex AND NOT o.payload ? k AND now_img->k IS NOT DISTINCT FROM c->k), '{}');
		UPDATE prop.mrow SET img = c, ex = true, ver = ver + 1, clk = greatest(prop.mrow.clk, rclk)
		 WHERE entity = o.entity AND id = o.id;
	ELSIF strategy <> 'SERVER_WINS' THEN
		UPDATE prop.mrow
		   SET img = coalesce(CASE WHEN ex THEN img END, jsonb_build_object('id', o.id, 'body', NULL, 'color', NULL)) || res,
			   ex = true, ver = ver + 1, clk = greatest(prop.mrow.clk, rclk)
		 WHERE entity = o.entity AND id = o.id;
	END IF;
	UPDATE prop.op SET m_status = 'COMPLETED' WHERE qid = cf.queue_id;
	SELECT format('conflict %s %s %s, operation %s %s', f.status, f.resolution_strategy, f.resolved_by, q.status, q.result) INTO bad
	  FROM backup_offline.sync_conflict f JOIN backup_offline.sync_queue q ON q.id = f.queue_id
	 WHERE f.id = cf.id AND NOT (f.status = 'RESOLVED' AND f.resolution_strategy = strategy AND f.resolved_by IS NOT NULL
								 AND q.status = 'COMPLETED' AND ans->>'status' = 'RESOLVED');
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('resolutions', format('resolve_conflict(%s, %s, %s): %s', cf.id, strategy, res, bad));
	END IF;
	PERFORM prop.compare_rows(format('resolve_conflict(%s %s of %s, %s, %s)', cf.conflict_type, cf.id, o.opid, strategy, res), 'resolutions',
		ARRAY(SELECT o.entity || '/' || o.id UNION SELECT w.entity || '/' || w.id FROM prop.wlog w WHERE w.actor = 'resolve:' || cf.id));
	RETURN true;
END
$$;

-- ---- a round ----------------------------------------------------------------------------------------
-- Fresh rows and devices; returns the number of steps to play.
CREATE FUNCTION prop.round_setup(r int, rseed bigint) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	cursor0 bigint;
	e prop.ent;
	i int;
BEGIN
	-- emptied: DELETE costs less than TRUNCATE, whose files are fsynced;
	-- TRUNCATE every 20 rounds keeps the dead rows few
	IF r % 20 = 0 THEN
		TRUNCATE prop.dev, prop.view, prop.op, prop.mrow, prop.contrib, prop.wlog, prop.res, prop.cover_log;
	ELSE
		DELETE FROM prop.dev;
		DELETE FROM prop.view;
		DELETE FROM prop.op;
		DELETE FROM prop.mrow;
		DELETE FROM prop.contrib;
		DELETE FROM prop.wlog;
		DELETE FROM prop.res;
	END IF;
	PERFORM setseed((rseed % 1000003)::float8 / 1000003);
	UPDATE prop.st SET round = r, rseed = round_setup.rseed, step = 0, hlc_ctr = 0;
	PERFORM setval('prop.ctr', 1, false);
	PERFORM backup_offline.sync_sequence();
	SELECT coalesce(max(change_seq), 0) INTO cursor0 FROM backup_offline.sync_row;
	INSERT INTO prop.dev (dev, k, cursor) SELECT prop.rid('d' || k), k, cursor0 FROM generate_series(1, prop.rnd(2, 5)) k;
	PERFORM prop.actor('setup');
	FOR e IN SELECT * FROM prop.ent ORDER BY entity LOOP
		FOR i IN 1..prop.rnd(1, CASE WHEN e.entity = 'ITEM' THEN 3 ELSE 2 END) LOOP
			PERFORM prop.server_write(e.entity, prop.rid(lower(e.entity) || i), prop.new_row(e.entity, 'setup'), true);
		END LOOP;
	END LOOP;
	RETURN prop.rnd(6, 42);
END
$$;

-- One random step (not the server-side writes, which the driver makes
-- after a COMMIT): returns what it was, or 'office' / 'resolve' for the
-- driver to do.  edit: an edit in any case (a round makes five at least).
CREATE FUNCTION prop.step(edit boolean) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	x float8 := CASE WHEN edit THEN 0 ELSE random() END;
	d text := (SELECT dev FROM prop.dev ORDER BY k LIMIT 1 OFFSET floor(random() * (SELECT count(*) FROM prop.dev)));
	k int;
	fate text;
BEGIN
	UPDATE prop.st SET step = step + 1;
	IF x < 0.42 THEN
		PERFORM prop.device_edit(d);
		RETURN 'edit';
	ELSIF x < 0.62 THEN
		-- upload a chunk of the device's queue; an answer lost is often retried at once (the same chunk)
		k := prop.rnd(1, 6);
		LOOP
			fate := CASE WHEN prop.chance(0.55) THEN 'ok' WHEN prop.chance(0.6) THEN 'answer lost' ELSE 'upload lost' END;
			PERFORM prop.upload(d, k, fate);
			EXIT WHEN fate <> 'answer lost' OR prop.chance(0.5);
		END LOOP;
		RETURN 'upload';
	ELSIF x < 0.75 THEN
		PERFORM prop.process(prop.rnd(1, 12));
		RETURN 'process';
	ELSIF x < 0.87 THEN
		PERFORM prop.pull(d, prop.rnd(3, 25), prop.chance(0.25));
		RETURN 'pull';
	ELSIF x < 0.96 THEN
		RETURN 'office';
	END IF;
	RETURN 'resolve';
END
$$;

-- The round's end: every queue uploaded (answers arrive), processed, every
-- conflict resolved, every device pulled to the end.  Called repeatedly by
-- the driver (which commits and waits before resolutions) while it answers
-- 'resolve'.
CREATE FUNCTION prop.drain() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	d text;
BEGIN
	UPDATE prop.st SET step = step + 1;
	FOR d IN SELECT dev FROM prop.dev ORDER BY k LOOP
		PERFORM prop.upload(d, 100000, 'ok');
	END LOOP;
	PERFORM prop.process(100000);
	IF EXISTS (SELECT 1 FROM backup_offline.sync_conflict f JOIN prop.op p ON p.qid = f.queue_id WHERE f.status = 'OPEN') THEN
		RETURN 'resolve';
	END IF;
	FOR d IN SELECT dev FROM prop.dev ORDER BY k LOOP
		PERFORM prop.pull(d, prop.rnd(3, 25), false);
	END LOOP;
	RETURN 'done';
END
$$;

-- the round's ITEM rows (each found by its key: the table holds every round's)
CREATE FUNCTION prop.items() RETURNS SETOF prop.item LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY SELECT i.* FROM prop.mrow m CROSS JOIN LATERAL (SELECT * FROM prop.item x WHERE x.id = m.id OFFSET 0) i
				  WHERE m.entity = 'ITEM';
END
$$;

-- ---- the round's checks ----------------------------------------------------------------------------------
CREATE FUNCTION prop.round_checks() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	bad text;
BEGIN
	-- exactly once: each operation stored once, as sent, applied once, COMPLETED
	SELECT string_agg(format('%s: stored %s, first arrivals %s, processed %s times, %s', o.opid, o.stored, o.firsts, o.m_done,
						 coalesce(q.status::text, 'not in the queue')), '; ') INTO bad
	  FROM prop.op o LEFT JOIN backup_offline.sync_queue q ON q.device_id = o.dev AND q.operation_id = o.opid
	 WHERE NOT o.stored OR o.firsts <> 1 OR o.m_done <> 1 OR q.id IS DISTINCT FROM o.qid OR q.status IS DISTINCT FROM 'COMPLETED'
		OR q.operation::text <> o.operation OR q.entity_type <> o.entity OR q.entity_id <> o.id OR q.device_seq <> o.seq
		OR q.payload IS DISTINCT FROM o.payload OR q.base_version IS DISTINCT FROM o.bv OR q.client_hlc <> o.hlc
		OR q.depends_on <> o.depends;
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('exactly once', bad);
	END IF;
	SELECT string_agg(format('%s %s %s', q.device_id, q.operation_id, q.status), '; ') INTO bad
	  FROM backup_offline.sync_queue q JOIN prop.dev d ON d.dev = q.device_id
	 WHERE NOT EXISTS (SELECT 1 FROM prop.op o WHERE o.dev = q.device_id AND o.opid = q.operation_id);
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('exactly once', 'in the queue but never sent: ' || bad);
	END IF;

	-- additive: every counter is its start plus every change, each once
	SELECT string_agg(format('%s: n = %s, the changes add up to %s', i.id, i.n, s.n), '; ') INTO bad
	  FROM prop.items() i JOIN (SELECT id, sum(num) AS n FROM prop.contrib WHERE kind = 'n' GROUP BY id) s ON s.id = i.id
	 WHERE i.n <> s.n;
	SELECT concat_ws('; ', bad, string_agg(format('%s: n = %s, never changed', i.id, i.n), '; ')) INTO bad
	  FROM prop.items() i WHERE NOT EXISTS (SELECT 1 FROM prop.contrib c WHERE c.id = i.id AND c.kind = 'n') AND i.n <> 0;
	IF bad <> '' THEN
		PERFORM prop.fail('additive', bad);
	END IF;

	-- append: every appended piece exactly once (notes, and each task's note)
	WITH got AS (SELECT i.id, 'piece' AS kind, x AS val FROM prop.items() i, regexp_split_to_table(i.notes, ';') x
				  WHERE x <> ''
				 UNION ALL
				 SELECT i.id, 'tpiece', (t->>'id') || '/' || x FROM prop.items() i, jsonb_array_elements(i.tasks) t,
						regexp_split_to_table(t->>'note', ';') x
				  WHERE x <> ''),
	want AS (SELECT id, kind, val FROM prop.contrib WHERE kind IN ('piece', 'tpiece')),
	g AS (SELECT id, kind, val, count(*) AS n FROM got GROUP BY 1, 2, 3),
	w AS (SELECT id, kind, val, count(*) AS n FROM want GROUP BY 1, 2, 3)
	SELECT string_agg(format('%s %s %s: %s times, appended %s times', coalesce(g.id, w.id), coalesce(g.kind, w.kind),
							 coalesce(g.val, w.val), coalesce(g.n, 0), coalesce(w.n, 0)), '; ') INTO bad
	  FROM g FULL JOIN w ON w.id = g.id AND w.kind = g.kind AND w.val = g.val
	 WHERE g.n IS DISTINCT FROM w.n;
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('append', bad);
	END IF;

	-- set_union: tags are what was added minus what was removed, once each
	WITH got AS (SELECT i.id, x AS tag, count(*) AS n FROM prop.items() i, jsonb_array_elements_text(i.tags) x
				  GROUP BY 1, 2),
	want AS (SELECT id, val AS tag FROM prop.contrib WHERE kind = 'tag+'
			 EXCEPT SELECT id, val FROM prop.contrib WHERE kind = 'tag-')
	SELECT string_agg(format('%s %s: %s times, wanted %s', coalesce(got.id, want.id), coalesce(got.tag, want.tag),
							 coalesce(got.n, 0), (want.tag IS NOT NULL)::int), '; ') INTO bad
	  FROM got FULL JOIN want ON want.id = got.id AND want.tag = got.tag
	 WHERE coalesce(got.n, 0) <> (want.tag IS NOT NULL)::int;
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('set_union', bad);
	END IF;

	-- merge_by_id: every task added exactly once, done when anyone ticked it
	WITH got AS (SELECT i.id, t->>'id' AS tid, count(*) AS n, bool_or((t->>'done')::boolean) AS done
				   FROM prop.items() i, jsonb_array_elements(i.tasks) t GROUP BY 1, 2),
	want AS (SELECT id, val AS tid, count(*) AS n,
					EXISTS (SELECT 1 FROM prop.contrib k WHERE k.id = c.id AND k.kind = 'tick' AND k.val = c.val) AS done
			   FROM prop.contrib c WHERE kind = 'task+' GROUP BY id, val)
	SELECT string_agg(format('%s task %s: %s times done %s, added %s times ticked %s', coalesce(got.id, want.id), coalesce(got.tid, want.tid),
							 coalesce(got.n, 0), got.done, coalesce(want.n, 0), want.done), '; ') INTO bad
	  FROM got FULL JOIN want ON want.id = got.id AND want.tid = got.tid
	 WHERE got.n IS DISTINCT FROM 1::bigint OR want.n IS DISTINCT FROM 1::bigint OR got.done IS DISTINCT FROM want.done;
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('merge_by_id', bad);
	END IF;

	-- no value lost without a conflict record (title, status, body, color):
	-- (a) a value replaced (or deleted) was seen by whoever replaced it (the
	--     office, a person deciding that field, the device operation that
	--     wrote the new value or the delete, having that value in its copy),
	--     or that writer's conflict record holds it (server_version);
	-- (b) a value a device sent that never reached the row is in that
	--     operation's conflict record (client_version);
	-- (c) a value the processor wrote was sent by an operation of that run
	WITH w AS (
		SELECT w.seq, w.entity, w.id, w.actor, f, w.old->f AS v, w.new
		  FROM prop.wlog w JOIN prop.ent e ON e.entity = w.entity, unnest(e.tracked) f
		 WHERE w.old IS NOT NULL AND (w.new IS NULL OR w.new->f IS DISTINCT FROM w.old->f) AND w.old->f <> 'null'),
	writer AS (
		-- the operations (or the resolution) that made the change
		SELECT w.*, o.opid, o.seen, o.qid, NULL::text AS strategy, NULL::jsonb AS resolution, NULL::uuid AS cid
		  FROM w JOIN prop.op o ON w.actor = 'process:' || o.m_call AND o.entity = w.entity AND o.id = w.id
		   AND ((w.new IS NOT NULL AND o.payload ? w.f AND w.new->w.f = o.payload->w.f) OR (w.new IS NULL AND o.operation = 'DELETE'))
		UNION ALL
		SELECT w.*, o.opid, o.seen, o.qid, r.strategy, r.resolution, r.cid
		  FROM w JOIN prop.res r ON w.actor = 'resolve:' || r.cid
		  JOIN backup_offline.sync_conflict cf ON cf.id = r.cid JOIN prop.op o ON o.qid = cf.queue_id),
	judged AS (
		SELECT w.seq, w.entity, w.id, w.f, w.v, w.actor, w.new->w.f AS nv,
			   w.actor IN ('office', 'setup')
			   OR EXISTS (SELECT 1 FROM writer x WHERE x.seq = w.seq AND x.f = w.f AND (
					 (x.strategy IS NULL AND x.seen->x.f = x.v)
					 OR (x.strategy IN ('FIELD_LEVEL_MERGE', 'CUSTOM') AND x.resolution ? x.f)
					 OR (x.strategy = 'CLIENT_WINS' AND EXISTS (SELECT 1 FROM prop.op o WHERE o.opid = x.opid
																   AND (o.operation = 'DELETE' OR o.payload ? x.f)))
					 OR EXISTS (SELECT 1 FROM backup_offline.sync_conflict cf WHERE cf.queue_id = x.qid AND cf.server_version->'data'->x.f = x.v)))
			   AS accounted,
			   EXISTS (SELECT 1 FROM writer x WHERE x.seq = w.seq AND x.f = w.f) OR w.actor IN ('office', 'setup') AS attributed
		  FROM w)
	SELECT string_agg(format('%s %s.%s = %s replaced by %s with %s: %s', j.entity, j.id, j.f, j.v, j.actor, coalesce(j.nv::text, 'a delete'),
							 CASE WHEN NOT j.attributed THEN 'a value no operation of that run sent' ELSE 'unseen, and no conflict record holds it' END),
					  '; ' ORDER BY j.seq) INTO bad
	  FROM judged j WHERE NOT j.accounted;
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('no value lost', bad);
	END IF;
	SELECT string_agg(format('%s %s.%s = %s (%s) never written, no conflict record holds it', o.opid, o.id, f, o.payload->f, o.operation), '; ')
	  INTO bad
	  FROM prop.op o JOIN prop.ent e ON e.entity = o.entity, unnest(e.tracked) f
	 WHERE o.payload ? f
	   AND NOT EXISTS (SELECT 1 FROM prop.wlog w WHERE w.entity = o.entity AND w.id = o.id AND w.new->f = o.payload->f)
	   AND NOT EXISTS (SELECT 1 FROM backup_offline.sync_conflict cf WHERE cf.queue_id = o.qid AND cf.client_version->'data'->f = o.payload->f);
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('no value lost', bad);
	END IF;
	SELECT string_agg(format('%s %s.%s = %s written by %s: sent by no operation of that run', w.entity, w.id, f, w.new->f, w.actor), '; ')
	  INTO bad
	  FROM prop.wlog w JOIN prop.ent e ON e.entity = w.entity, unnest(e.tracked) f
	 WHERE w.actor LIKE 'process:%' AND w.new IS NOT NULL AND (w.old IS NULL OR w.new->f IS DISTINCT FROM w.old->f)
	   AND NOT EXISTS (SELECT 1 FROM prop.op o WHERE w.actor = 'process:' || o.m_call AND o.entity = w.entity AND o.id = w.id
						  AND (coalesce(o.seen, '{}') || coalesce(o.payload, '{}'))->f = w.new->f);
	IF bad IS NOT NULL THEN
		PERFORM prop.fail('no value lost', bad);
	END IF;
END
$$;

-- ---- the driver ---------------------------------------------------------------------------------------------
-- Rounds first .. rounds - 1 of seed whose number modulo parts is part
-- (the script runs the parts in parallel, a database each): round r plays
-- with seed + r.  Each step is its own transaction; server-side writes wait
-- for the next millisecond first.
CREATE PROCEDURE prop.run(seed bigint, rounds int, part int DEFAULT 0, parts int DEFAULT 1, first int DEFAULT 0) LANGUAGE plpgsql AS $$
DECLARE
	r int;
	nsteps int;
	s int;
	what text;
	guard int;
	d text;
	t0 timestamptz;
BEGIN
	UPDATE prop.st SET seed = run.seed;
	COMMIT;
	FOR r IN first..rounds - 1 LOOP
		CONTINUE WHEN r % parts <> part;
		t0 := clock_timestamp();
		PERFORM prop.wait_past();
		COMMIT;
		nsteps := prop.round_setup(r, seed + r);
		PERFORM prop.server_clock();
		COMMIT;
		FOR d IN SELECT dev FROM prop.dev ORDER BY k LOOP
			PERFORM prop.pull(d, prop.rnd(3, 25), false);
		END LOOP;
		COMMIT;
		FOR s IN 1..nsteps LOOP
			what := prop.step((SELECT count(*) FROM prop.op) + (nsteps - s) < 5);
			IF what = 'office' THEN
				PERFORM prop.wait_past();
				COMMIT;
				PERFORM prop.office();
			ELSIF what = 'resolve' THEN
				PERFORM prop.wait_past();
				COMMIT;
				PERFORM prop.resolve();
			END IF;
			COMMIT;
		END LOOP;
		guard := 0;
		LOOP
			what := prop.drain();
			COMMIT;
			EXIT WHEN what = 'done';
			guard := guard + 1;
			IF guard > 100 THEN
				PERFORM prop.fail('outcomes', 'the round does not drain');
				EXIT;
			END IF;
			LOOP
				PERFORM prop.wait_past();
				COMMIT;
				EXIT WHEN NOT prop.resolve();
				COMMIT;
			END LOOP;
			COMMIT;
		END LOOP;
		PERFORM prop.round_checks();
		-- the round's operations, conflicts and row versions leave the
		-- engine's tables (its rows are never touched again; a failing round
		-- is replayed from its seed): they stay as small as in one round, and
		-- every round runs as fast as the first
		DELETE FROM backup_offline.sync_conflict WHERE queue_id IN (SELECT qid FROM prop.op WHERE qid IS NOT NULL);
		DELETE FROM backup_offline.sync_queue WHERE id IN (SELECT qid FROM prop.op WHERE qid IS NOT NULL);
		DELETE FROM backup_offline.sync_device WHERE device_id IN (SELECT dev FROM prop.dev);
		DELETE FROM backup_offline.sync_row s USING prop.mrow m, prop.ent e
		 WHERE e.entity = m.entity AND s.entity_id = e.sid AND s.row_key = m.id;
		INSERT INTO prop.rounds SELECT r, seed + r, (SELECT count(*) FROM prop.dev), (SELECT count(*) FROM prop.op), (SELECT step FROM prop.st),
			   extract(epoch FROM clock_timestamp() - t0) * 1000;
		INSERT INTO prop.cover AS c SELECT l.what, count(*) FROM prop.cover_log l GROUP BY l.what
		ON CONFLICT ON CONSTRAINT cover_pkey DO UPDATE SET n = c.n + EXCLUDED.n;
		DELETE FROM prop.cover_log;
		COMMIT;
	END LOOP;
END
$$;
