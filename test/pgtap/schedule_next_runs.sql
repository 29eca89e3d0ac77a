-- Next run times of every schedule frequency, month ends, leap years,
-- daylight-saving transitions, cron features, backup windows and time zone
-- names.  Every expected instant is written out in UTC.
--
-- America/Chicago: CST = UTC-6, CDT = UTC-5; in 2025 DST starts Sunday
-- 9 March at 02:00 CST (08:00 UTC) and ends Sunday 2 November at 02:00 CDT
-- (07:00 UTC).  America/New_York is one hour east of that (transitions at
-- 07:00 and 06:00 UTC).  Asia/Kolkata is UTC+05:30 all year.
BEGIN;
SET LOCAL search_path = public, backup_offline;
SET LOCAL timezone = 'UTC';
SELECT plan(64);

-- ---- HOURLY ---------------------------------------------------------------
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY"}', 'UTC',
										'2025-01-01 10:20+00', 3)),
		  ARRAY['2025-01-01 11:00+00', '2025-01-01 12:00+00',
				'2025-01-01 13:00+00']::timestamptz[],
		  'HOURLY without startTime runs at minute 0');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY", "startTime": "07:45"}', 'UTC',
										'2025-01-01 10:45+00', 2)),
		  ARRAY['2025-01-01 11:45+00', '2025-01-01 12:45+00']::timestamptz[],
		  'HOURLY runs at the minute of startTime, strictly after the given instant');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY", "startTime": "00:00"}', 'Asia/Kolkata',
										'2025-01-01 00:00+00', 3)),
		  ARRAY['2025-01-01 00:30+00', '2025-01-01 01:30+00',
				'2025-01-01 02:30+00']::timestamptz[],
		  'HOURLY in Asia/Kolkata: local minute 0 is UTC minute 30');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY", "startTime": "00:30"}', 'Asia/Kolkata',
										'2025-01-01 00:00+00', 2)),
		  ARRAY['2025-01-01 01:00+00', '2025-01-01 02:00+00']::timestamptz[],
		  'HOURLY in Asia/Kolkata: local minute 30 is UTC minute 0');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY"}', 'Asia/Kathmandu',
										'2025-01-01 00:00+00', 2)),
		  ARRAY['2025-01-01 00:15+00', '2025-01-01 01:15+00']::timestamptz[],
		  'HOURLY in Asia/Kathmandu (+05:45): local minute 0 is UTC minute 15');
-- Lord Howe Island leaves +11 for +10:30 at 2025-04-05 15:00 UTC: local
-- 02:00 becomes 01:30, so local minute 0 moves from UTC :00 to UTC :30
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY"}', 'Australia/Lord_Howe',
										'2025-04-05 13:30+00', 3)),
		  ARRAY['2025-04-05 14:00+00', '2025-04-05 15:30+00',
				'2025-04-05 16:30+00']::timestamptz[],
		  'HOURLY across a half-hour DST shift follows the local minute');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY", "startTime": "00:30"}', 'America/Chicago',
										'2025-03-09 06:00+00', 4)),
		  ARRAY['2025-03-09 06:30+00', '2025-03-09 07:30+00',
				'2025-03-09 08:30+00', '2025-03-09 09:30+00']::timestamptz[],
		  'HOURLY across spring-forward in Chicago: every real hour (01:30 CST then 03:30 CDT)');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY"}', 'America/Chicago',
										'2025-11-02 04:30+00', 4)),
		  ARRAY['2025-11-02 05:00+00', '2025-11-02 06:00+00',
				'2025-11-02 07:00+00', '2025-11-02 08:00+00']::timestamptz[],
		  'HOURLY across fall-back in Chicago: the repeated 01:00 hour runs twice');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY", "startTime": "00:15"}', 'America/New_York',
										'2025-11-02 04:10+00', 4)),
		  ARRAY['2025-11-02 04:15+00', '2025-11-02 05:15+00',
				'2025-11-02 06:15+00', '2025-11-02 07:15+00']::timestamptz[],
		  'HOURLY across fall-back in New York: 00:15 EDT, 01:15 EDT, 01:15 EST, 02:15 EST');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "HOURLY"}', 'America/New_York',
										'2025-03-09 05:30+00', 3)),
		  ARRAY['2025-03-09 06:00+00', '2025-03-09 07:00+00',
				'2025-03-09 08:00+00']::timestamptz[],
		  'HOURLY across spring-forward in New York: 01:00 EST, 03:00 EDT, 04:00 EDT');

-- ---- DAILY ------------------------------------------------------------------
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY"}', NULL,
										'2025-01-01 00:00+00', 2)),
		  ARRAY['2025-01-02 00:00+00', '2025-01-03 00:00+00']::timestamptz[],
		  'DAILY defaults to 00:00 in UTC, strictly after the given instant');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY"}', NULL,
										'2025-01-01 23:59:59.999+00', 1)),
		  ARRAY['2025-01-02 00:00+00']::timestamptz[],
		  'DAILY: fractional seconds before the run time');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY", "startTime": "02:00"}', 'America/Chicago',
										'2025-01-10 00:00+00', 2)),
		  ARRAY['2025-01-10 08:00+00', '2025-01-11 08:00+00']::timestamptz[],
		  'DAILY 02:00 in Chicago in winter is 08:00 UTC');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY", "startTime": "02:30"}', 'America/Chicago',
										'2025-03-07 12:00+00', 4)),
		  ARRAY['2025-03-08 08:30+00', '2025-03-09 08:00+00',
				'2025-03-10 07:30+00', '2025-03-11 07:30+00']::timestamptz[],
		  'DAILY 02:30 on the spring-forward day in Chicago runs at the transition, 03:00 CDT');
SELECT is(next_run_time('{"frequency": "DAILY", "startTime": "02:30"}', 'America/Chicago',
						'2025-03-09 00:00+00'),
		  '2025-03-09 08:00+00'::timestamptz,
		  'next_run_time: a local time in the gap maps to the transition instant');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY", "startTime": "02:30"}', 'America/New_York',
										'2025-03-08 12:00+00', 2)),
		  ARRAY['2025-03-09 07:00+00', '2025-03-10 06:30+00']::timestamptz[],
		  'DAILY 02:30 on the spring-forward day in New York runs at 03:00 EDT');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY", "startTime": "01:30"}', 'America/Chicago',
										'2025-11-01 12:00+00', 3)),
		  ARRAY['2025-11-02 06:30+00', '2025-11-03 07:30+00',
				'2025-11-04 07:30+00']::timestamptz[],
		  'DAILY 01:30 on the fall-back day in Chicago runs once, at 01:30 CDT');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY", "startTime": "01:30"}', 'America/Chicago',
										'2025-11-02 06:45+00', 1)),
		  ARRAY['2025-11-03 07:30+00']::timestamptz[],
		  'DAILY 01:30 in Chicago: no second run at 01:30 CST on the fall-back day');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY", "startTime": "01:30"}', 'America/New_York',
										'2025-11-01 12:00+00', 2)),
		  ARRAY['2025-11-02 05:30+00', '2025-11-03 06:30+00']::timestamptz[],
		  'DAILY 01:30 on the fall-back day in New York runs once, at 01:30 EDT');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY", "startTime": "02:00", "timezone": "America/Chicago"}',
										NULL, '2025-01-10 00:00+00', 1)),
		  ARRAY['2025-01-10 08:00+00']::timestamptz[],
		  'a NULL timezone argument uses schedule.timezone');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "DAILY", "startTime": "02:00", "timezone": "America/Chicago"}',
										'America/Chicago', '2025-07-10 00:00+00', 1)),
		  ARRAY['2025-07-10 07:00+00']::timestamptz[],
		  'the same zone in the argument and schedule.timezone is accepted');

-- ---- WEEKLY -----------------------------------------------------------------
-- 2025-01-01 is a Wednesday
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "WEEKLY", "startTime": "09:00", "daysOfWeek": [1, 3, 5]}',
										'America/New_York', '2025-01-01 00:00+00', 4)),
		  ARRAY['2025-01-01 14:00+00', '2025-01-03 14:00+00',
				'2025-01-06 14:00+00', '2025-01-08 14:00+00']::timestamptz[],
		  'WEEKLY Monday, Wednesday, Friday at 09:00 New York');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "WEEKLY", "startTime": "23:30", "daysOfWeek": [0]}',
										'Asia/Kolkata', '2025-01-01 00:00+00', 2)),
		  ARRAY['2025-01-05 18:00+00', '2025-01-12 18:00+00']::timestamptz[],
		  'WEEKLY Sunday 23:30 in Kolkata (0 is Sunday)');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "WEEKLY", "startTime": "02:30", "daysOfWeek": [0]}',
										'America/Chicago', '2025-03-01 00:00+00', 3)),
		  ARRAY['2025-03-02 08:30+00', '2025-03-09 08:00+00',
				'2025-03-16 07:30+00']::timestamptz[],
		  'WEEKLY Sunday 02:30 in Chicago across spring-forward');

-- ---- MONTHLY ----------------------------------------------------------------
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "MONTHLY", "dayOfMonth": 31, "startTime": "03:00"}',
										NULL, '2025-01-01 00:00+00', 5)),
		  ARRAY['2025-01-31 03:00+00', '2025-02-28 03:00+00', '2025-03-31 03:00+00',
				'2025-04-30 03:00+00', '2025-05-31 03:00+00']::timestamptz[],
		  'MONTHLY day 31 clamps to Feb 28 and Apr 30 and never rolls over');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "MONTHLY", "dayOfMonth": 31}',
										NULL, '2024-01-31 00:00+00', 3)),
		  ARRAY['2024-02-29 00:00+00', '2024-03-31 00:00+00',
				'2024-04-30 00:00+00']::timestamptz[],
		  'MONTHLY day 31 from Jan 31 2024: Feb 29 in a leap year');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "MONTHLY", "dayOfMonth": 30}',
										NULL, '2024-01-31 00:00+00', 2)),
		  ARRAY['2024-02-29 00:00+00', '2024-03-30 00:00+00']::timestamptz[],
		  'MONTHLY day 30: Feb 29 2024, then back to the 30th');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "MONTHLY", "dayOfMonth": 29}',
										NULL, '2100-02-01 00:00+00', 2)),
		  ARRAY['2100-02-28 00:00+00', '2100-03-29 00:00+00']::timestamptz[],
		  'MONTHLY day 29: 2100 is not a leap year');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "MONTHLY", "dayOfMonth": 15, "startTime": "02:00"}',
										'America/Chicago', '2025-02-01 00:00+00', 2)),
		  ARRAY['2025-02-15 08:00+00', '2025-03-15 07:00+00']::timestamptz[],
		  'MONTHLY day 15 at 02:00 Chicago: CST in February, CDT in March');

-- ---- CUSTOM (cron) ----------------------------------------------------------
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "*/15 * * * *"}',
										NULL, '2025-01-01 10:07+00', 4)),
		  ARRAY['2025-01-01 10:15+00', '2025-01-01 10:30+00',
				'2025-01-01 10:45+00', '2025-01-01 11:00+00']::timestamptz[],
		  'cron */15 * * * *');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 2 * * 1-5"}',
										NULL, '2025-01-03 03:00+00', 3)),
		  ARRAY['2025-01-06 02:00+00', '2025-01-07 02:00+00',
				'2025-01-08 02:00+00']::timestamptz[],
		  'cron 0 2 * * 1-5 skips the weekend');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 0 31 * *"}',
										NULL, '2025-01-31 00:00+00', 4)),
		  ARRAY['2025-03-31 00:00+00', '2025-05-31 00:00+00',
				'2025-07-31 00:00+00', '2025-08-31 00:00+00']::timestamptz[],
		  'cron 0 0 31 * * runs only in months with 31 days (no clamping)');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 0 13 * 5"}',
										NULL, '2025-01-01 00:00+00', 6)),
		  ARRAY['2025-01-03 00:00+00', '2025-01-10 00:00+00', '2025-01-13 00:00+00',
				'2025-01-17 00:00+00', '2025-01-24 00:00+00',
				'2025-01-31 00:00+00']::timestamptz[],
		  'cron 0 0 13 * 5: the 13th OR any Friday');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "@weekly"}',
										NULL, '2025-01-01 00:00+00', 2)),
		  ARRAY['2025-01-05 00:00+00', '2025-01-12 00:00+00']::timestamptz[],
		  'cron @weekly is Sunday midnight');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "@yearly"}',
										NULL, '2025-01-01 00:00+00', 1)),
		  ARRAY['2026-01-01 00:00+00']::timestamptz[],
		  'cron @yearly');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 3 * JAN,JUL SUN"}',
										NULL, '2025-01-01 00:00+00', 5)),
		  ARRAY['2025-01-05 03:00+00', '2025-01-12 03:00+00', '2025-01-19 03:00+00',
				'2025-01-26 03:00+00', '2025-07-06 03:00+00']::timestamptz[],
		  'cron month and weekday names: Sundays of January and July');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "30 4 * * mon-fri/2"}',
										NULL, '2025-01-01 00:00+00', 3)),
		  ARRAY['2025-01-01 04:30+00', '2025-01-03 04:30+00',
				'2025-01-06 04:30+00']::timestamptz[],
		  'cron lower-case weekday range with a step (MON, WED, FRI)');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 12 * * 7"}',
										NULL, '2025-01-01 00:00+00', 1)),
		  ARRAY['2025-01-05 12:00+00']::timestamptz[],
		  'cron weekday 7 is Sunday');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "5/20 1 * * *"}',
										NULL, '2025-01-01 00:00+00', 4)),
		  ARRAY['2025-01-01 01:05+00', '2025-01-01 01:25+00',
				'2025-01-01 01:45+00', '2025-01-02 01:05+00']::timestamptz[],
		  'cron 5/20 means 5-59/20');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 0 29 2 *"}',
										NULL, '2025-01-01 00:00+00', 2)),
		  ARRAY['2028-02-29 00:00+00', '2032-02-29 00:00+00']::timestamptz[],
		  'cron 0 0 29 2 * finds the next leap day');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 0 29 2 *"}',
										NULL, '2097-01-01 00:00+00', 1)),
		  ARRAY['2104-02-29 00:00+00']::timestamptz[],
		  'cron 0 0 29 2 * skips 2100, eight years ahead');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 0 */30 2 1"}',
										NULL, '2027-02-02 00:00+00', 1)),
		  ARRAY['2038-02-01 00:00+00']::timestamptz[],
		  'cron with a starred day field ANDs the day fields: Feb 1 on a Monday, eleven years ahead');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "*/15 * * * *"}',
										'America/Chicago', '2025-11-02 06:40+00', 3)),
		  ARRAY['2025-11-02 06:45+00', '2025-11-02 08:00+00',
				'2025-11-02 08:15+00']::timestamptz[],
		  'cron */15 across fall-back in Chicago: each local time once (01:45 CDT, then 02:00 CST)');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "*/30 * * * *"}',
										'America/Chicago', '2025-03-09 07:15+00', 3)),
		  ARRAY['2025-03-09 07:30+00', '2025-03-09 08:00+00',
				'2025-03-09 08:30+00']::timestamptz[],
		  'cron */30 across spring-forward in Chicago: 02:00, 02:30 and 03:00 collapse into one run');
SELECT is(ARRAY(SELECT next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 2 * * *"}',
										'America/New_York', '2025-03-08 12:00+00', 2)),
		  ARRAY['2025-03-09 07:00+00', '2025-03-10 06:00+00']::timestamptz[],
		  'cron 0 2 * * * on the spring-forward day in New York runs at 03:00 EDT');
-- a whole year of */15 in Chicago: 365 * 96 local times, of which 02:00,
-- 02:15, 02:30 and 02:45 on 9 March share the instant of 03:00 CDT
SELECT is((SELECT count(*) FROM next_run_times('{"frequency": "CUSTOM", "cronExpression": "*/15 * * * *"}',
												'America/Chicago', '2025-01-01 05:59:59+00', 40000) t
			WHERE t < '2026-01-01 06:00+00'),
		  35036::bigint,
		  'cron */15 over 2025 in Chicago: 35036 runs');
SELECT ok((SELECT bool_and(t > prev)
			 FROM (SELECT t, lag(t) OVER (ORDER BY ord) AS prev
					 FROM next_run_times('{"frequency": "CUSTOM", "cronExpression": "*/15 * * * *"}',
										 'America/Chicago', '2025-01-01 05:59:59+00', 35036)
						  WITH ORDINALITY AS r(t, ord)) s
			WHERE prev IS NOT NULL),
		  'cron */15 over 2025 in Chicago: strictly increasing');

-- ---- CONTINUOUS and edge arguments -------------------------------------------
SELECT is((SELECT count(*) FROM next_run_times('{"frequency": "CONTINUOUS"}', NULL,
												'2025-01-01 00:00+00', 5)),
		  0::bigint, 'CONTINUOUS has no run times');
SELECT is(next_run_time('{"frequency": "CONTINUOUS", "maxDurationMinutes": 60}', 'UTC',
						'2025-01-01 00:00+00'),
		  NULL::timestamptz, 'next_run_time is NULL for CONTINUOUS');
SELECT is((SELECT count(*) FROM next_run_times('{"frequency": "DAILY"}', NULL,
												'2025-01-01 00:00+00', 0)),
		  0::bigint, 'n = 0 gives no rows');
SELECT is(next_run_time(NULL, NULL, '2025-01-01 00:00+00'), NULL::timestamptz,
		  'a NULL schedule gives NULL');

-- ---- backup windows -----------------------------------------------------------
-- window 22:00-04:00 Chicago wraps midnight; in January 22:00 CST = 04:00 UTC
SELECT is(in_backup_window('{"frequency": "DAILY", "startTime": "22:00", "endTime": "04:00"}',
						   'America/Chicago', '2025-01-15 04:30+00'),
		  true, 'in_backup_window: 22:30 local is inside 22:00-04:00');
SELECT is(in_backup_window('{"frequency": "DAILY", "startTime": "22:00", "endTime": "04:00"}',
						   'America/Chicago', '2025-01-15 09:59:59+00'),
		  true, 'in_backup_window: 03:59:59 local is inside 22:00-04:00');
SELECT is(in_backup_window('{"frequency": "DAILY", "startTime": "22:00", "endTime": "04:00"}',
						   'America/Chicago', '2025-01-15 10:00+00'),
		  false, 'in_backup_window: 04:00 local is outside (end is exclusive)');
SELECT is(in_backup_window('{"frequency": "DAILY", "startTime": "22:00", "endTime": "04:00"}',
						   'America/Chicago', '2025-01-15 18:00+00'),
		  false, 'in_backup_window: noon local is outside 22:00-04:00');
SELECT is(in_backup_window('{"frequency": "DAILY", "startTime": "22:00", "endTime": "04:00"}',
						   'America/Chicago', '2025-01-16 04:00+00'),
		  true, 'in_backup_window: 22:00 local is inside (start is inclusive)');
SELECT is(in_backup_window('{"frequency": "HOURLY", "startTime": "01:00", "endTime": "05:00"}',
						   NULL, '2025-01-15 00:59+00'),
		  false, 'in_backup_window: 00:59 is before 01:00-05:00');
SELECT is(in_backup_window('{"frequency": "DAILY", "startTime": "02:00"}',
						   'America/Chicago', '2025-01-15 18:00+00'),
		  true, 'in_backup_window: no endTime means always');

-- weekday "7/2" is Sunday alone (7 is Sunday and lies above the field's top)
SELECT results_eq(
	$$SELECT t FROM next_run_times('{"frequency": "CUSTOM", "cronExpression": "0 0 * * 7/2"}', 'UTC', '2025-01-01', 2) t$$,
	$$VALUES ('2025-01-05 00:00+00'::timestamptz), ('2025-01-12 00:00+00')$$,
	'cron: weekday 7/2 runs on Sundays');

-- ---- time zone names -------------------------------------------------------------
SELECT is(ARRAY(SELECT is_valid_timezone(z)
				  FROM unnest(ARRAY['America/Chicago', 'UTC', 'Etc/GMT+5', 'Asia/Kolkata',
									'america/new_york']) z),
		  ARRAY[true, true, true, true, true],
		  'is_valid_timezone accepts IANA zone names, in any case');
SELECT is(is_valid_timezone('EST5EDT6,M3.2.0'), false,
		  'is_valid_timezone refuses a POSIX specification');
SELECT is(is_valid_timezone('<-03>3'), false,
		  'is_valid_timezone refuses a quoted POSIX offset');
SELECT is(is_valid_timezone('UTC0'), false,
		  'is_valid_timezone refuses a POSIX offset that has no zone file');
SELECT is(ARRAY(SELECT is_valid_timezone(z)
				  FROM unnest(ARRAY['Mars/Olympus', 'PDT', 'America', '', '../etc/passwd']) z),
		  ARRAY[false, false, false, false, false],
		  'is_valid_timezone refuses garbage, abbreviations without a zone file and directories');

SELECT * FROM finish();
ROLLBACK;
