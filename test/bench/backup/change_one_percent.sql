-- A day of application writes on top of care_schema.sql, for the
-- incremental backup of the benchmark (test/bench/backup.sh):
--
--   * 1% of the visits are updated: 0.4% are the oldest SCHEDULED visits,
--     which took place (status COMPLETED, actual times, notes, updated_at),
--     0.6% are older visits scattered over the whole table that get an
--     addendum to their notes (and a fifth of those a status correction);
--   * 0.1% of the EVV records, scattered, are deleted (duplicates);
--   * 0.5% new visits are inserted (completed visits entered after the
--     fact, with notes), and an EVV record for every newly completed visit.
--
-- Deterministic (rows are chosen by md5 order or fixed formulas; setseed
-- for the rest), a few seconds at scale 1.0.  It can run more than once:
-- new visit ids continue after the current count, and each run picks
-- other scheduled visits.
--
--   psql -f test/bench/backup/change_one_percent.sql
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
SET TimeZone = 'UTC';

CREATE FUNCTION pg_temp.uid(kind text, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT overlay(overlay(md5(kind || ':' || n) PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid $$;

SELECT count(*) AS n_visits, count(*) FILTER (WHERE status = 'SCHEDULED') AS n_scheduled FROM care.visits \gset
SELECT count(*) AS n_evv FROM care.evv_records \gset
-- the visits of care_schema.sql are uid('visit', 1 .. n); the first 90% of
-- them lie in the past and have notes to draw text from
SELECT greatest(1, floor(:n_visits * 0.9))::int AS n_past,
	   least(:n_scheduled, round(:n_visits * 0.004))::int AS n_done,
	   round(:n_visits * 0.01)::int - least(:n_scheduled, round(:n_visits * 0.004))::int AS n_fix,
	   round(:n_visits * 0.005)::int AS n_new,
	   round(:n_evv * 0.001)::int AS n_del
\gset

SELECT setseed(0.71) \g /dev/null
BEGIN;

-- the oldest scheduled visits took place
CREATE TEMP TABLE done ON COMMIT DROP AS
SELECT id FROM care.visits WHERE status = 'SCHEDULED' ORDER BY scheduled_start, id LIMIT :n_done;
UPDATE care.visits v
   SET status = 'COMPLETED',
	   actual_start = v.scheduled_start + (abs(hashtext(v.id::text)) % 12) * interval '1 minute',
	   actual_end = v.scheduled_end + (abs(hashtext(v.id::text)) % 9) * interval '1 minute',
	   notes = 'Arrived ' || to_char(v.scheduled_start + (abs(hashtext(v.id::text)) % 12) * interval '1 minute', 'HH24:MI') || '. '
			   || coalesce((SELECT o.notes FROM care.visits o
							 WHERE o.id = pg_temp.uid('visit', 1 + abs(hashtext('done' || v.id)) % :n_past)), ''),
	   mileage = round((abs(hashtext(v.id::text)) % 3000) / 100.0, 2),
	   updated_at = v.scheduled_end + interval '40 minutes'
  FROM done d
 WHERE v.id = d.id;

INSERT INTO care.evv_records (visit_id, clock_in, clock_out, latitude, longitude, device_id, method, verified, created_at)
SELECT v.id, v.actual_start, v.actual_end,
	   round(((c.address->>'latitude')::numeric + (random() - 0.5)::numeric * 0.004), 6),
	   round(((c.address->>'longitude')::numeric + (random() - 0.5)::numeric * 0.004), 6),
	   'DEV-' || upper(substr(md5('device' || (abs(hashtext(v.caregiver_id::text)) % 5000)), 1, 12)),
	   'GPS', true, v.actual_end + interval '1 minute'
  FROM done d JOIN care.visits v ON v.id = d.id JOIN care.clients c ON c.id = v.client_id
 ORDER BY v.actual_start, v.id;

-- addenda to older visits, scattered over the table
UPDATE care.visits v
   SET notes = coalesce(v.notes, '') || ' Addendum ' || to_char(timestamptz '2024-12-16 16:00+00' + f.n * interval '7 seconds', 'YYYY-MM-DD HH24:MI') || ': '
			   || coalesce(split_part((SELECT o.notes FROM care.visits o
									   WHERE o.id = pg_temp.uid('visit', 1 + abs(hashtext('fix' || v.id)) % :n_past)), '. ', 3), 'see call log')
			   || ' (entered by office staff).',
	   status = CASE WHEN f.n % 5 = 0 AND v.status = 'COMPLETED' THEN 'LATE'::care.visit_status ELSE v.status END,
	   updated_at = timestamptz '2024-12-16 16:00+00' + f.n * interval '7 seconds'
  FROM (SELECT id, row_number() OVER (ORDER BY md5(id::text || 'fix')) AS n
		  FROM care.visits
		 WHERE status <> 'SCHEDULED' AND updated_at < timestamptz '2024-12-16'
		 ORDER BY md5(id::text || 'fix') LIMIT :n_fix) f
 WHERE v.id = f.id;

-- duplicate EVV records removed
DELETE FROM care.evv_records
 WHERE id IN (SELECT id FROM care.evv_records ORDER BY md5(id::text || 'del') LIMIT :n_del);

-- completed visits entered after the fact: a copy of an older visit's
-- client, caregiver, tasks and notes on a new date
INSERT INTO care.visits
SELECT pg_temp.uid('visit', :n_visits + g), o.organization_id, o.client_id, o.caregiver_id,
	   date '2024-12-16', s.start, s.start + (o.scheduled_end - o.scheduled_start),
	   s.start + (g % 11) * interval '1 minute', s.start + (o.scheduled_end - o.scheduled_start) + (g % 7) * interval '1 minute',
	   'COMPLETED', o.service_code, o.tasks,
	   'Arrived ' || to_char(s.start + (g % 11) * interval '1 minute', 'HH24:MI') || ' (entered late). ' || coalesce(o.notes, ''),
	   o.mileage, true,
	   timestamptz '2024-12-16 18:00+00' + g * interval '3 seconds',
	   timestamptz '2024-12-16 18:00+00' + g * interval '3 seconds'
  FROM generate_series(1, :n_new) g
  JOIN care.visits o ON o.id = pg_temp.uid('visit', 1 + abs(hashtext('new' || g)) % :n_past)
  CROSS JOIN LATERAL (SELECT timestamptz '2024-12-16 06:00+00' + (g % 52) * interval '15 minutes' AS start) s
 ORDER BY g;

INSERT INTO care.evv_records (visit_id, clock_in, clock_out, latitude, longitude, device_id, method, verified, created_at)
SELECT v.id, v.actual_start, v.actual_end,
	   round(((c.address->>'latitude')::numeric + (random() - 0.5)::numeric * 0.004), 6),
	   round(((c.address->>'longitude')::numeric + (random() - 0.5)::numeric * 0.004), 6),
	   'DEV-' || upper(substr(md5('device' || (abs(hashtext(v.caregiver_id::text)) % 5000)), 1, 12)),
	   'TELEPHONY', true, v.actual_end + interval '1 minute'
  FROM generate_series(1, :n_new) g
  JOIN care.visits v ON v.id = pg_temp.uid('visit', :n_visits + g)
  JOIN care.clients c ON c.id = v.client_id
 ORDER BY g;

COMMIT;
