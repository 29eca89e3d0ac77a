-- Bad schedules: each is refused with SQLSTATE 22023 and the exact message
-- naming the JSON path.  A few details and hints are checked too, and the
-- valid forms next to them must pass.
BEGIN;
SET LOCAL search_path = public, backup_offline;
SET LOCAL timezone = 'UTC';
SELECT plan(74);

-- The detail and hint of the error a statement raises
CREATE FUNCTION pg_temp.error_field(stmt text, field text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	d text;
	h text;
BEGIN
	EXECUTE stmt;
	RETURN NULL;
EXCEPTION WHEN invalid_parameter_value THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	RETURN CASE field WHEN 'detail' THEN d ELSE h END;
END
$$;

-- ---- messages ----
SELECT throws_ok('SELECT validate_schedule(''[1]'', NULL)',
		'22023', 'schedule must be a JSON object',
		'an array is not a schedule');
SELECT throws_ok('SELECT validate_schedule(''"DAILY"'', NULL)',
		'22023', 'schedule must be a JSON object',
		'a string is not a schedule');
SELECT throws_ok('SELECT validate_schedule(NULL, NULL)',
		'22023', 'schedule is required',
		'validate_schedule refuses NULL');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "foo": 1}'', NULL)',
		'22023', 'unknown key schedule.foo',
		'unknown keys are rejected');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "StartTime": "02:00"}'', NULL)',
		'22023', 'unknown key schedule.StartTime',
		'keys are case-sensitive');
SELECT throws_ok('SELECT validate_schedule(''{}'', NULL)',
		'22023', 'schedule.frequency is required',
		'frequency is required');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": null, "startTime": "02:00"}'', NULL)',
		'22023', 'schedule.frequency is required',
		'a null frequency is missing');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "daily"}'', NULL)',
		'22023', 'invalid schedule.frequency: "daily"',
		'frequency is upper case');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": 1}'', NULL)',
		'22023', 'invalid schedule.frequency: 1',
		'frequency must be a string');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "25:00"}'', NULL)',
		'22023', 'invalid schedule.startTime: "25:00"',
		'hour 25');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "12:60"}'', NULL)',
		'22023', 'invalid schedule.startTime: "12:60"',
		'minute 60');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "2:00"}'', NULL)',
		'22023', 'invalid schedule.startTime: "2:00"',
		'one-digit hour');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "02:00:00"}'', NULL)',
		'22023', 'invalid schedule.startTime: "02:00:00"',
		'seconds are not allowed');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": 200}'', NULL)',
		'22023', 'invalid schedule.startTime: 200',
		'startTime must be a string');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "02:00", "endTime": "24:00"}'', NULL)',
		'22023', 'invalid schedule.endTime: "24:00"',
		'endTime 24:00');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "endTime": "04:00"}'', NULL)',
		'22023', 'schedule.endTime requires schedule.startTime',
		'endTime needs startTime');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "02:00", "endTime": "02:00"}'', NULL)',
		'22023', 'schedule.endTime must differ from schedule.startTime',
		'empty window');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "WEEKLY"}'', NULL)',
		'22023', 'schedule.daysOfWeek is required when schedule.frequency is WEEKLY',
		'WEEKLY needs daysOfWeek');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "WEEKLY", "daysOfWeek": [1, 7]}'', NULL)',
		'22023', 'invalid schedule.daysOfWeek[1]: 7',
		'day of week 7');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "WEEKLY", "daysOfWeek": [1, 3, 1]}'', NULL)',
		'22023', 'invalid schedule.daysOfWeek[2]: 1',
		'duplicate day of week');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "WEEKLY", "daysOfWeek": []}'', NULL)',
		'22023', 'invalid schedule.daysOfWeek: []',
		'empty daysOfWeek');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "WEEKLY", "daysOfWeek": "MON"}'', NULL)',
		'22023', 'invalid schedule.daysOfWeek: "MON"',
		'daysOfWeek must be an array');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "WEEKLY", "daysOfWeek": ["1"]}'', NULL)',
		'22023', 'invalid schedule.daysOfWeek[0]: "1"',
		'days of week are numbers');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "WEEKLY", "daysOfWeek": [1.5]}'', NULL)',
		'22023', 'invalid schedule.daysOfWeek[0]: 1.5',
		'days of week are integers');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "daysOfWeek": [1]}'', NULL)',
		'22023', 'schedule.daysOfWeek is not allowed when schedule.frequency is DAILY',
		'daysOfWeek only for WEEKLY');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "MONTHLY"}'', NULL)',
		'22023', 'schedule.dayOfMonth is required when schedule.frequency is MONTHLY',
		'MONTHLY needs dayOfMonth');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "MONTHLY", "dayOfMonth": 15.5}'', NULL)',
		'22023', 'invalid schedule.dayOfMonth: 15.5',
		'dayOfMonth 15.5');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "MONTHLY", "dayOfMonth": "15"}'', NULL)',
		'22023', 'invalid schedule.dayOfMonth: "15"',
		'dayOfMonth as a string');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "MONTHLY", "dayOfMonth": 0}'', NULL)',
		'22023', 'invalid schedule.dayOfMonth: 0',
		'dayOfMonth 0');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "MONTHLY", "dayOfMonth": 32}'', NULL)',
		'22023', 'invalid schedule.dayOfMonth: 32',
		'dayOfMonth 32');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "WEEKLY", "daysOfWeek": [1], "dayOfMonth": 1}'', NULL)',
		'22023', 'schedule.dayOfMonth is not allowed when schedule.frequency is WEEKLY',
		'dayOfMonth only for MONTHLY');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM"}'', NULL)',
		'22023', 'schedule.cronExpression is required when schedule.frequency is CUSTOM',
		'CUSTOM needs cronExpression');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "cronExpression": "0 2 * * *"}'', NULL)',
		'22023', 'schedule.cronExpression is not allowed when schedule.frequency is DAILY',
		'cronExpression only for CUSTOM');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": 5}'', NULL)',
		'22023', 'invalid schedule.cronExpression: 5',
		'cronExpression must be a string');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 0 * * * *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "0 0 * * * *"',
		'cron with 6 fields');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "61 * * * *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "61 * * * *"',
		'cron minute 61');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "*/0 * * * *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "*/0 * * * *"',
		'cron step 0');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 5-1 * * *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "0 5-1 * * *"',
		'cron reversed range');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 0 * JNU *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "0 0 * JNU *"',
		'cron unknown month name');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "MON 0 * * *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "MON 0 * * *"',
		'cron name in the minute field');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "1,,2 * * * *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "1,,2 * * * *"',
		'cron empty list element');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 0 30 2 *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "0 0 30 2 *"',
		'cron that never matches (Feb 30)');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 0 31 4,6,9,11 *"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "0 0 31 4,6,9,11 *"',
		'cron that never matches (31st of 30-day months)');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "@reboot"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "@reboot"',
		'cron @reboot');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 0 * * 8"}'', NULL)',
		'22023', 'invalid schedule.cronExpression: "0 0 * * 8"',
		'cron weekday 8');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CONTINUOUS", "startTime": "01:00"}'', NULL)',
		'22023', 'schedule.startTime is not allowed when schedule.frequency is CONTINUOUS',
		'CONTINUOUS has no startTime');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "CONTINUOUS", "maxDurationMinutes": 0}'', NULL)',
		'22023', 'invalid schedule.maxDurationMinutes: 0',
		'maxDurationMinutes 0');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "maxDurationMinutes": 10081}'', NULL)',
		'22023', 'invalid schedule.maxDurationMinutes: 10081',
		'maxDurationMinutes above a week');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "timezone": "Mars/Olympus"}'', NULL)',
		'22023', 'unknown time zone "Mars/Olympus" in schedule.timezone',
		'unknown schedule.timezone');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "timezone": 5}'', NULL)',
		'22023', 'invalid schedule.timezone: 5',
		'schedule.timezone must be a string');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY"}'', ''Mars/Olympus'')',
		'22023', 'unknown time zone "Mars/Olympus" in timezone',
		'unknown timezone argument');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY"}'', ''EST5EDT6,M3.2.0'')',
		'22023', 'unknown time zone "EST5EDT6,M3.2.0" in timezone',
		'POSIX timezone argument');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "timezone": "<-03>3"}'', NULL)',
		'22023', 'unknown time zone "<-03>3" in schedule.timezone',
		'POSIX schedule.timezone');
SELECT throws_ok('SELECT validate_schedule(''{"frequency": "DAILY", "timezone": "America/Chicago"}'', ''UTC'')',
		'22023', 'schedule.timezone conflicts with the timezone argument',
		'schedule.timezone and a different argument');
SELECT throws_ok('SELECT next_run_times(''{"frequency": "DAILY"}'', NULL, ''2025-01-01 00:00+00'', -1)',
		'22023', 'invalid n: -1',
		'negative n');
SELECT throws_ok('SELECT next_run_times(''{"frequency": "DAILY"}'', NULL, ''infinity'', 1)',
		'22023', 'after must be a finite timestamp',
		'infinite after');
SELECT throws_ok('SELECT next_run_time(''{"frequency": "HOURLY", "startTime": "7:00"}'', NULL, ''2025-01-01 00:00+00'')',
		'22023', 'invalid schedule.startTime: "7:00"',
		'next_run_time validates too');
SELECT throws_ok('SELECT in_backup_window(''{"frequency": "DAILY", "bogus": true}'', NULL, ''2025-01-01 00:00+00'')',
		'22023', 'unknown key schedule.bogus',
		'in_backup_window validates too');

-- ---- details and hints ----
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "61 * * * *"}'', NULL)', 'detail'),
		  'The minute field value 61 is outside 0-59.');
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 0 * * * *"}'', NULL)', 'detail'),
		  'A cron expression has 5 fields, but this one has 6.');
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "*/0 * * * *"}'', NULL)', 'detail'),
		  'The minute field step 0 is outside 1-59.');
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 5-1 * * *"}'', NULL)', 'detail'),
		  'The hour field range 5-1 is reversed.');
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 0 * JNU *"}'', NULL)', 'detail'),
		  'The month field value "JNU" is not a number or month name (JAN-DEC).');
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "0 0 30 2 *"}'', NULL)', 'detail'),
		  'No month in the month field has a day listed in the day-of-month field, so the expression never matches.');
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "25:00"}'', NULL)', 'detail'),
		  'The hour 25 is outside 00-23.');
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "25:00"}'', NULL)', 'hint'),
		  'Use 24-hour HH:MM, for example "02:00".');
SELECT is(pg_temp.error_field('SELECT validate_schedule(''{"frequency": "DAILY", "timezone": "Mars/Olympus"}'', NULL)', 'hint'),
		  'Use a name from pg_timezone_names, for example "America/Chicago".');

-- ---- valid schedules pass ----
SELECT lives_ok('SELECT validate_schedule(''{"frequency": "HOURLY"}'', NULL)',
		'valid: {"frequency": "HOURLY"}');
SELECT lives_ok('SELECT validate_schedule(''{"frequency": "DAILY", "startTime": "02:00", "endTime": "04:00", "timezone": "America/Chicago", "maxDurationMinutes": 120}'', NULL)',
		'valid: {"frequency": "DAILY", "startTime": "02:00", "endTime": "04:00", "timezone": "America/Chicago", "maxDurationMinutes": 120}');
SELECT lives_ok('SELECT validate_schedule(''{"frequency": "WEEKLY", "daysOfWeek": [0, 6], "startTime": "23:59"}'', NULL)',
		'valid: {"frequency": "WEEKLY", "daysOfWeek": [0, 6], "startTime": "23:59"}');
SELECT lives_ok('SELECT validate_schedule(''{"frequency": "MONTHLY", "dayOfMonth": 31.0}'', NULL)',
		'valid: {"frequency": "MONTHLY", "dayOfMonth": 31.0}');
SELECT lives_ok('SELECT validate_schedule(''{"frequency": "CUSTOM", "cronExpression": "  0  2  *  *  mon-fri  ", "startTime": "22:00", "endTime": "04:00"}'', NULL)',
		'valid: {"frequency": "CUSTOM", "cronExpression": "  0  2  *  *  mon-fri  ", "startTime": "22:00", "endTime": "04:00"}');
SELECT lives_ok('SELECT validate_schedule(''{"frequency": "CONTINUOUS", "timezone": "UTC", "maxDurationMinutes": 10080}'', NULL)',
		'valid: {"frequency": "CONTINUOUS", "timezone": "UTC", "maxDurationMinutes": 10080}');
SELECT lives_ok('SELECT validate_schedule(''{"frequency": "DAILY", "daysOfWeek": null, "startTime": "00:00"}'', NULL)',
		'valid: {"frequency": "DAILY", "daysOfWeek": null, "startTime": "00:00"}');

SELECT * FROM finish();
ROLLBACK;
