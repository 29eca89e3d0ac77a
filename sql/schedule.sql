-- The schedule engine: next run times in IANA time zones, backup windows,
-- and how bad schedules are reported.
\set VERBOSITY terse
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET search_path = backup_offline, public;
-- daily at 02:30 in Chicago: on 9 March 2025 02:30 does not exist and the
-- run moves to the transition, 03:00 CDT
SELECT t AS run, t AT TIME ZONE 'America/Chicago' AS local_time
  FROM next_run_times('{"frequency": "DAILY", "startTime": "02:30"}',
                      'America/Chicago', '2025-03-07 12:00+00', 4) AS t;
-- daily at 01:30 on the fall-back day runs once, at the first 01:30
SELECT t AS run, t AT TIME ZONE 'America/Chicago' AS local_time
  FROM next_run_times('{"frequency": "DAILY", "startTime": "01:30"}',
                      'America/Chicago', '2025-11-01 12:00+00', 3) AS t;
-- hourly is every real hour: the repeated hour gets its run
SELECT t AS run
  FROM next_run_times('{"frequency": "HOURLY"}', 'America/Chicago',
                      '2025-11-02 05:30+00', 3) AS t;
-- monthly on the 31st uses the last day of shorter months
SELECT t AS run
  FROM next_run_times('{"frequency": "MONTHLY", "dayOfMonth": 31, "startTime": "03:00"}',
                      NULL, '2024-01-01 00:00+00', 4) AS t;
-- cron: the 13th or any Friday
SELECT t AS run, to_char(t, 'Dy') AS day
  FROM next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 0 13 * FRI"}',
                      NULL, '2025-07-01 00:00+00', 4) AS t;
-- the zone may come from the schedule
SELECT next_run_time('{"frequency": "WEEKLY", "daysOfWeek": [1], "startTime": "09:00", "timezone": "Asia/Kolkata"}',
                     NULL, '2025-01-01 00:00+00');
-- continuous schedules have no run times
SELECT count(*) FROM next_run_times('{"frequency": "CONTINUOUS"}', NULL, now(), 10);
-- a window across midnight
SELECT at, in_backup_window('{"frequency": "DAILY", "startTime": "22:00", "endTime": "04:00"}',
                            'UTC', at)
  FROM unnest(ARRAY['2025-01-01 21:59+00', '2025-01-01 22:00+00',
                    '2025-01-02 03:59+00', '2025-01-02 04:00+00']::timestamptz[]) AS at;
SELECT name, is_valid_timezone(name)
  FROM unnest(ARRAY['America/Chicago', 'Etc/GMT+5', 'EST5EDT6,M3.2.0', 'Mars/Olympus']) AS name;
-- errors name the JSON path
SELECT validate_schedule('{"frequency": "DAILY", "startTime": "25:00"}', NULL);
SELECT validate_schedule('{"frequency": "WEEKLY", "startTime": "02:00"}', NULL);
SELECT validate_schedule('{"frequency": "CUSTOM", "cronExpression": "61 * * * *"}', NULL);
SELECT validate_schedule('{"frequency": "DAILY", "every": "day"}', NULL);
SELECT validate_schedule('{"frequency": "DAILY"}', 'Mars/Olympus');
