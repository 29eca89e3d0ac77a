-- The schedule engine (src/schedule/): next run times, schedule validation,
-- backup windows and time zone checks.  Pure functions of their arguments
-- and the server's time zone database, so PUBLIC may call them.

CREATE FUNCTION @extschema@.next_run_times(schedule jsonb, timezone text,
										   after timestamptz, n integer)
	RETURNS SETOF timestamptz
	AS 'MODULE_PATHNAME', 'bo_next_run_times'
	LANGUAGE C STABLE PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION @extschema@.next_run_times(jsonb, text, timestamptz, integer) IS
	'the next n run instants of a schedule strictly after an instant, in increasing order; no rows for CONTINUOUS';

CREATE FUNCTION @extschema@.next_run_time(schedule jsonb, timezone text,
										  after timestamptz)
	RETURNS timestamptz
	AS 'MODULE_PATHNAME', 'bo_next_run_time'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.next_run_time(jsonb, text, timestamptz) IS
	'the first run instant of a schedule strictly after an instant; NULL for CONTINUOUS';

CREATE FUNCTION @extschema@.validate_schedule(schedule jsonb, timezone text)
	RETURNS void
	AS 'MODULE_PATHNAME', 'bo_validate_schedule'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.validate_schedule(jsonb, text) IS
	'raises an error (SQLSTATE 22023) naming the first invalid part of a schedule object';

CREATE FUNCTION @extschema@.in_backup_window(schedule jsonb, timezone text,
											 at timestamptz)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'bo_in_backup_window'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.in_backup_window(jsonb, text, timestamptz) IS
	'whether an instant lies in the schedule''s local [startTime, endTime) window; true without endTime';

CREATE FUNCTION @extschema@.is_valid_timezone(name text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'bo_is_valid_timezone'
	LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.is_valid_timezone(text) IS
	'whether a name is an IANA time zone of the server''s time zone database';

GRANT EXECUTE ON FUNCTION
	@extschema@.next_run_times(jsonb, text, timestamptz, integer),
	@extschema@.next_run_time(jsonb, text, timestamptz),
	@extschema@.validate_schedule(jsonb, text),
	@extschema@.in_backup_window(jsonb, text, timestamptz),
	@extschema@.is_valid_timezone(text)
	TO PUBLIC;
