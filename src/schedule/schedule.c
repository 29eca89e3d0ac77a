/*-------------------------------------------------------------------------
 *
 * schedule.c
 *		Backup schedules: validation of the schedule JSON object, IANA time
 *		zone checks, backup windows and next-run computation.
 *
 * A schedule names local wall-clock times ("02:00 every day") in an IANA
 * time zone, but the scheduler needs instants.  The mapping follows one
 * rule, which also fixes what happens at daylight-saving transitions:
 *
 *		a local time L runs at the first instant t whose local time is L or
 *		later, that is min { t : t + utcoffset(t) >= L }.
 *
 * For an ordinary local time that is its only instant.  In a fall-back
 * night a repeated local time runs once, at its first occurrence (01:30
 * CDT, not 01:30 CST an hour later).  In a spring-forward gap a local time
 * that does not exist runs at the transition instant itself, the first
 * valid instant after it (02:30 on 2025-03-09 in America/Chicago runs at
 * 03:00 CDT = 08:00 UTC); several gap times map to that one instant and
 * produce one run.  The mapping never decreases as L grows, so enumerating
 * matching local times in order and keeping the instants strictly after
 * the previous run gives a strictly increasing sequence.
 *
 * PostgreSQL's own DetermineTimeZoneOffset() resolves these cases the other
 * way round (the pre-transition offset in a gap, the later occurrence in an
 * overlap), which suits timestamp input but would run a 01:30 backup in the
 * second 01:30 and a 02:30 backup at 03:30.  So this file walks the zone's
 * transitions itself with pg_next_dst_boundary(): between two transitions
 * the offset is constant and the rule above is a single subtraction.
 *
 * HOURLY is different by design: it is every hour of real time, at the
 * instants whose local minute is the one of startTime.  A repeated hour in
 * a fall-back night therefore gets its run, a skipped hour does not exist,
 * and in zones with half-hour offsets the local minute is what counts.
 *
 * DAILY, WEEKLY, MONTHLY and CUSTOM enumerate calendar days from the local
 * date of the starting instant; a cron expression that cannot match is
 * refused at validation (cron.c), and the search is still bounded by 400
 * years of days, the full Gregorian cycle, so a rare but possible match
 * (29 February of the next leap year, even across 2100) is always found.
 *
 * Time zones must be names from the server's IANA database.  pg_tzset()
 * also accepts POSIX specifications such as "EST5EDT6,M3.2.0" when no zone
 * file has the name; those are refused here, see bo_timezone_is_valid().
 *
 * IDENTIFICATION
 *		src/schedule/schedule.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "common/int.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#include "schedule/schedule.h"

/* Seconds from the Unix epoch to the PostgreSQL epoch (2000-01-01) */
#define BO_EPOCH_DIFF_SECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)

/* Larger than the UTC offset of any zone, ever */
#define BO_MAX_UTC_OFFSET	(26 * SECS_PER_HOUR)

/* How many days a next-run search looks at: one Gregorian cycle */
#define BO_SEARCH_DAYS		(400 * 366)

/* Longest run a schedule may ask for: one week */
#define BO_MAX_DURATION_MINUTES 10080

/* Longest JSON value quoted in an error message */
#define BO_QUOTE_MAX		60

/* The keys of a schedule object */
typedef enum ScheduleKey
{
	KEY_FREQUENCY,
	KEY_START_TIME,
	KEY_END_TIME,
	KEY_DAYS_OF_WEEK,
	KEY_DAY_OF_MONTH,
	KEY_CRON_EXPRESSION,
	KEY_TIMEZONE,
	KEY_MAX_DURATION_MINUTES,
	NUM_SCHEDULE_KEYS
} ScheduleKey;

static const char *const schedule_keys[NUM_SCHEDULE_KEYS] = {
	"frequency",
	"startTime",
	"endTime",
	"daysOfWeek",
	"dayOfMonth",
	"cronExpression",
	"timezone",
	"maxDurationMinutes",
};

/* Indexed by BoScheduleFrequency */
static const char *const frequency_names[] = {
	"HOURLY", "DAILY", "WEEKLY", "MONTHLY", "CUSTOM", "CONTINUOUS", NULL
};

static void invalid_value(const char *path, JsonbValue *value,
						  const char *detail, const char *hint) pg_attribute_noreturn();
static void key_not_allowed(ScheduleKey key,
							BoScheduleFrequency frequency) pg_attribute_noreturn();
static void key_required(ScheduleKey key,
						 BoScheduleFrequency frequency) pg_attribute_noreturn();

/* a / b rounded towards minus infinity (b > 0) */
static int64
floor_div(int64 a, int64 b)
{
	int64		q = a / b;

	if (a % b != 0 && a < 0)
		q--;
	return q;
}

/* a mod b in 0..b-1 (b > 0) */
static int64
pos_mod(int64 a, int64 b)
{
	int64		r = a % b;

	return r < 0 ? r + b : r;
}

/* The whole Unix second containing a timestamp */
static pg_time_t
timestamp_to_secs(TimestampTz ts)
{
	return floor_div(ts, USECS_PER_SEC) + BO_EPOCH_DIFF_SECS;
}

/*
 * A Unix time as a timestamp; false when it lies beyond the range of
 * timestamptz.
 */
static bool
secs_to_timestamp(pg_time_t secs, TimestampTz *ts)
{
	int64		result;

	if (pg_mul_s64_overflow(secs - BO_EPOCH_DIFF_SECS, USECS_PER_SEC, &result) ||
		!IS_VALID_TIMESTAMP(result))
		return false;
	*ts = result;
	return true;
}

/* The UTC offset (seconds east) in effect at an instant */
static long int
utc_offset_at(pg_time_t t, const pg_tz *tz)
{
	struct pg_tm *tm = pg_localtime(&t, tz);

	if (tm == NULL)
		elog(ERROR, "could not compute local time in time zone \"%s\"",
			 pg_get_timezone_name((pg_tz *) tz));
	return tm->tm_gmtoff;
}

/*
 * The offset in effect at *t and the next transition after it; returns
 * false when the zone has no later transition.
 */
static bool
next_transition(pg_time_t t, const pg_tz *tz, long int *offset,
				pg_time_t *boundary)
{
	long int	after_offset;
	int			before_isdst;
	int			after_isdst;
	int			res;

	res = pg_next_dst_boundary(&t, offset, &before_isdst, boundary,
							   &after_offset, &after_isdst, tz);
	if (res < 0)
		elog(ERROR, "could not find time zone transitions in \"%s\"",
			 pg_get_timezone_name((pg_tz *) tz));
	return res == 1;
}

/*
 * The instant a local wall-clock time runs at: the first instant whose
 * local time is at or after it (see the file header).  local is the wall
 * clock reading written as seconds since 1970-01-01 00:00.
 */
static pg_time_t
local_to_instant(pg_time_t local, const pg_tz *tz)
{
	/* here every offset puts local time before the target */
	pg_time_t	t = local - BO_MAX_UTC_OFFSET;

	for (;;)
	{
		long int	offset;
		pg_time_t	boundary;
		pg_time_t	candidate;
		bool		more;

		/* on [t, boundary) the offset is constant */
		more = next_transition(t, tz, &offset, &boundary);
		candidate = Max(t, local - offset);
		if (!more || candidate < boundary)
			return candidate;
		t = boundary;
	}
}

/*
 * HOURLY: the first instant at or after lo whose local time is minute:00
 * past some hour.
 */
static pg_time_t
next_hourly_instant(pg_time_t lo, int minute, const pg_tz *tz)
{
	for (;;)
	{
		long int	offset;
		pg_time_t	boundary;
		pg_time_t	candidate;
		bool		more;

		CHECK_FOR_INTERRUPTS();

		/* on [lo, boundary) local = t + offset; solve local = minute mod 1h */
		more = next_transition(lo, tz, &offset, &boundary);
		candidate = lo + pos_mod(minute * SECS_PER_MINUTE - offset - lo,
								 SECS_PER_HOUR);
		if (!more || candidate < boundary)
			return candidate;
		lo = boundary;
	}
}

/* Does the schedule run on this local calendar day? */
static bool
schedule_day_matches(const BoSchedule *schedule, int year, int month,
					 int mday, int wday)
{
	switch (schedule->frequency)
	{
		case BO_FREQ_DAILY:
			return true;
		case BO_FREQ_WEEKLY:
			return (schedule->days_of_week & (1 << wday)) != 0;
		case BO_FREQ_MONTHLY:
			/* clamp to the month's last day, never roll over */
			return mday == Min(schedule->day_of_month,
							   day_tab[isleap(year)][month - 1]);
		case BO_FREQ_CUSTOM:
			return bo_cron_day_matches(&schedule->cron, month, mday, wday);
		default:
			elog(ERROR, "unexpected schedule frequency %d",
				 (int) schedule->frequency);
	}
	return false;				/* keep compiler quiet */
}

/*
 * Try one local wall-clock time: 1 and *result set when its instant is
 * after `after`, 0 when it is not, -1 when it lies beyond timestamptz.
 * after_local is the local reading at `after`; local times up to it run at
 * or before `after` and need no zone lookup.
 */
static int
try_local_time(pg_time_t local, const pg_tz *tz, TimestampTz after,
			   pg_time_t after_local, TimestampTz *result)
{
	TimestampTz ts;

	if (local <= after_local)
		return 0;
	if (!secs_to_timestamp(local_to_instant(local, tz), &ts))
		return -1;
	if (ts <= after)
		return 0;
	*result = ts;
	return 1;
}

/*
 * DAILY, WEEKLY, MONTHLY and CUSTOM: walk local calendar days from the
 * local date of `after` and return the first matching local time whose
 * instant is after it.
 */
static bool
next_calendar_run(const BoSchedule *schedule, const pg_tz *tz,
				  TimestampTz after, TimestampTz *result)
{
	pg_time_t	after_secs = timestamp_to_secs(after);
	pg_time_t	after_local = after_secs + utc_offset_at(after_secs, tz);
	int64		jd = floor_div(after_local, SECS_PER_DAY) + UNIX_EPOCH_JDATE;
	int			i;

	if (jd < 0)
		jd = 0;

	for (i = 0; i < BO_SEARCH_DAYS; i++, jd++)
	{
		int			year;
		int			month;
		int			mday;
		pg_time_t	day_start;
		int			res;

		CHECK_FOR_INTERRUPTS();

		if (jd >= TIMESTAMP_END_JULIAN)
			return false;
		j2date((int) jd, &year, &month, &mday);
		if (!schedule_day_matches(schedule, year, month, mday, j2day((int) jd)))
			continue;

		day_start = (jd - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
		if (schedule->frequency == BO_FREQ_CUSTOM)
		{
			int			hour;
			int			minute;

			for (hour = 0; hour < HOURS_PER_DAY; hour++)
			{
				if (!(schedule->cron.hours & ((uint32) 1 << hour)))
					continue;
				for (minute = 0; minute < MINS_PER_HOUR; minute++)
				{
					if (!(schedule->cron.minutes & (UINT64CONST(1) << minute)))
						continue;
					res = try_local_time(day_start + hour * SECS_PER_HOUR +
										 minute * SECS_PER_MINUTE,
										 tz, after, after_local, result);
					if (res != 0)
						return res > 0;
				}
			}
		}
		else
		{
			res = try_local_time(day_start +
								 schedule->start_minute * SECS_PER_MINUTE,
								 tz, after, after_local, result);
			if (res != 0)
				return res > 0;
		}
	}
	return false;
}

/*
 * The first run of a parsed schedule strictly after `after`, in zone tz.
 * *found is false for CONTINUOUS schedules (they have no run times) and
 * when no run fits before the end of timestamptz.
 */
TimestampTz
bo_schedule_next_run(const BoSchedule *schedule, pg_tz *tz,
					 TimestampTz after, bool *found)
{
	TimestampTz result = 0;

	if (TIMESTAMP_NOT_FINITE(after))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after must be a finite timestamp"),
				 errdetail("There is no next run after infinity or -infinity.")));

	switch (schedule->frequency)
	{
		case BO_FREQ_CONTINUOUS:
			*found = false;
			break;
		case BO_FREQ_HOURLY:
			{
				/* the first whole second strictly after `after` */
				pg_time_t	lo = timestamp_to_secs(after) + 1;
				pg_time_t	t;

				t = next_hourly_instant(lo, schedule->start_minute % MINS_PER_HOUR,
										tz);
				*found = secs_to_timestamp(t, &result);
				break;
			}
		default:
			*found = next_calendar_run(schedule, tz, after, &result);
			break;
	}
	return *found ? result : 0;
}

/*
 * Is `at` inside the schedule's backup window [startTime, endTime) in the
 * zone's local time?  Windows may wrap midnight; without endTime every
 * instant is inside.
 */
bool
bo_schedule_in_window(const BoSchedule *schedule, pg_tz *tz, TimestampTz at)
{
	pg_time_t	secs;
	struct pg_tm *tm;
	int			second_of_day;
	int			start;
	int			end;

	if (!schedule->has_end_time)
		return true;
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must be a finite timestamp"),
				 errdetail("A backup window is a time of day; infinity and -infinity have none.")));

	secs = timestamp_to_secs(at);
	tm = pg_localtime(&secs, tz);
	if (tm == NULL)
		elog(ERROR, "could not compute local time in time zone \"%s\"",
			 pg_get_timezone_name(tz));
	second_of_day = tm->tm_hour * SECS_PER_HOUR + tm->tm_min * SECS_PER_MINUTE +
		tm->tm_sec;
	start = schedule->start_minute * SECS_PER_MINUTE;
	end = schedule->end_minute * SECS_PER_MINUTE;
	if (start < end)
		return second_of_day >= start && second_of_day < end;
	return second_of_day >= start || second_of_day < end;
}

/*
 * Look a name up in the server's zone database.  Returns NULL when the
 * name is no usable zone file; *posix tells whether PostgreSQL would have
 * taken it as a POSIX time zone specification instead.
 */
static pg_tz *
timezone_find(const char *name, bool *posix)
{
	const char *p;
	bool		has_digit = false;
	pg_tz	   *tz;
	const char *canon;
	char	   *upper;
	char	   *q;
	pg_tzenum  *tzenum;
	pg_tz	   *z;
	bool		listed = false;

	*posix = false;
	if (name[0] == '\0' || name[0] == '/' || strlen(name) > TZ_STRLEN_MAX)
		return NULL;

	/* IANA names use letters, digits, '/', '_', '-' and '+' only */
	for (p = name; *p != '\0'; p++)
	{
		if (isdigit((unsigned char) *p))
			has_digit = true;
		else if (!isalpha((unsigned char) *p) &&
				 *p != '/' && *p != '_' && *p != '-' && *p != '+')
		{
			*posix = (pg_tzset(name) != NULL);
			return NULL;
		}
	}

	tz = pg_tzset(name);
	if (tz == NULL || !pg_tz_acceptable(tz))
		return NULL;

	/*
	 * pg_tzset() falls back to parsing the name as a POSIX specification,
	 * which always contains a digit (the offset); GMT it parses even though
	 * a zone file of that name exists.  Without a digit the name therefore
	 * came from a zone file.
	 */
	if (!has_digit)
		return tz;

	/*
	 * A zone file gives its canonical spelling ("Etc/GMT+5"); a POSIX
	 * specification keeps the upper-cased input.  Only when the two agree
	 * ("EST5EDT" is both) do we need to look at the list of zone files.
	 */
	canon = pg_get_timezone_name(tz);
	upper = pstrdup(name);
	for (q = upper; *q != '\0'; q++)
		*q = pg_toupper((unsigned char) *q);
	if (strcmp(canon, upper) != 0)
		return tz;

	tzenum = pg_tzenumerate_start();
	while ((z = pg_tzenumerate_next(tzenum)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		if (strcmp(pg_get_timezone_name(z), canon) == 0)
		{
			listed = true;
			break;
		}
	}
	pg_tzenumerate_end(tzenum);

	if (!listed)
		*posix = true;
	return listed ? tz : NULL;
}

/*
 * Is name an IANA zone of the server's time zone database (the names in
 * pg_timezone_names, in any case)?  POSIX-style specifications such as
 * "EST5EDT6,M3.2.0" or "<-03>3" and abbreviations without a zone file are
 * not.
 */
bool
bo_timezone_is_valid(const char *name)
{
	bool		posix;

	return timezone_find(name, &posix) != NULL;
}

/*
 * The zone of that name; raises an error naming path (the JSON path or
 * argument the name came from) when it is not an IANA zone.
 */
pg_tz *
bo_timezone_lookup(const char *name, const char *path)
{
	bool		posix;
	pg_tz	   *tz = timezone_find(name, &posix);

	if (tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown time zone \"%s\" in %s", name, path),
				 posix ?
				 errdetail("POSIX-style time zone specifications are not accepted; %s must name an IANA time zone.", path) :
				 errdetail("The server's time zone database has no zone of that name."),
				 errhint("Use a name from pg_timezone_names, for example \"America/Chicago\".")));
	return tz;
}

/*
 * The JSON text of a value for an error message, shortened when long.
 */
static char *
json_value_text(JsonbValue *value)
{
	Jsonb	   *jb = JsonbValueToJsonb(value);
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	int			len = strlen(text);

	if (len > BO_QUOTE_MAX)
		return psprintf("%s...",
						pnstrdup(text, pg_mbcliplen(text, len, BO_QUOTE_MAX)));
	return text;
}

/* Report an invalid value at a JSON path */
static void
invalid_value(const char *path, JsonbValue *value, const char *detail,
			  const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s: %s", path, json_value_text(value)),
			 errdetail("%s", detail),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * The value as an int when it is a JSON number holding an integer in
 * lo..hi (15 and 15.0 are, 15.5 and "15" are not).
 */
static bool
json_int_in_range(JsonbValue *value, int lo, int hi, int *result)
{
	Datum		num;
	Datum		truncated;

	if (value->type != jbvNumeric)
		return false;
	num = NumericGetDatum(value->val.numeric);
	truncated = DirectFunctionCall2(numeric_trunc, num, Int32GetDatum(0));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, num, truncated)))
		return false;
	if (DatumGetBool(DirectFunctionCall2(numeric_lt, num,
										 NumericGetDatum(int64_to_numeric(lo)))) ||
		DatumGetBool(DirectFunctionCall2(numeric_gt, num,
										 NumericGetDatum(int64_to_numeric(hi)))))
		return false;
	*result = DatumGetInt32(DirectFunctionCall1(numeric_int4, num));
	return true;
}

/* Parse an "HH:MM" value (startTime, endTime) into minutes after midnight */
static int
parse_time_of_day(const char *path, JsonbValue *value)
{
	static const char *hint = "Use 24-hour HH:MM, for example \"02:00\".";
	const char *s;
	int			hour;
	int			minute;

	if (value->type != jbvString)
		invalid_value(path, value,
					  psprintf("%s must be a string.", path), hint);
	s = value->val.string.val;
	if (value->val.string.len != 5 ||
		!isdigit((unsigned char) s[0]) || !isdigit((unsigned char) s[1]) ||
		s[2] != ':' ||
		!isdigit((unsigned char) s[3]) || !isdigit((unsigned char) s[4]))
		invalid_value(path, value,
					  psprintf("%s must have the form HH:MM with two digits each.", path),
					  hint);
	hour = (s[0] - '0') * 10 + (s[1] - '0');
	minute = (s[3] - '0') * 10 + (s[4] - '0');
	if (hour > 23)
		invalid_value(path, value,
					  psprintf("The hour %02d is outside 00-23.", hour), hint);
	if (minute > 59)
		invalid_value(path, value,
					  psprintf("The minute %02d is outside 00-59.", minute), hint);
	return hour * MINS_PER_HOUR + minute;
}

/* Parse schedule.daysOfWeek into a bit set, 0 = Sunday */
static uint8
parse_days_of_week(JsonbValue *value)
{
	static const char *detail =
		"schedule.daysOfWeek must be a non-empty array of integers 0-6, where 0 is Sunday.";
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	elem;
	uint8		days = 0;
	int			index = 0;

	if (value->type != jbvBinary ||
		!JsonContainerIsArray(value->val.binary.data) ||
		JsonContainerIsScalar(value->val.binary.data))
		invalid_value("schedule.daysOfWeek", value, detail, NULL);

	it = JsonbIteratorInit(value->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		char	   *path;
		int			day;

		if (tok != WJB_ELEM)
			continue;
		path = psprintf("schedule.daysOfWeek[%d]", index);
		if (!json_int_in_range(&elem, 0, 6, &day))
			invalid_value(path, &elem,
						  "Days of the week are integers 0-6, where 0 is Sunday.",
						  NULL);
		if (days & (1 << day))
			invalid_value(path, &elem,
						  psprintf("Day %d is listed more than once.", day),
						  NULL);
		days |= (1 << day);
		index++;
	}
	if (days == 0)
		invalid_value("schedule.daysOfWeek", value, detail, NULL);
	return days;
}

/* Raise the error for a key that the frequency does not use */
static void
key_not_allowed(ScheduleKey key, BoScheduleFrequency frequency)
{
	const char *detail;

	switch (key)
	{
		case KEY_DAYS_OF_WEEK:
			detail = "Only WEEKLY schedules have days of the week.";
			break;
		case KEY_DAY_OF_MONTH:
			detail = "Only MONTHLY schedules have a day of the month.";
			break;
		case KEY_CRON_EXPRESSION:
			detail = "Only CUSTOM schedules have a cron expression.";
			break;
		default:
			detail = "CONTINUOUS schedules run all the time and have no start time or window.";
			break;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("schedule.%s is not allowed when schedule.frequency is %s",
					schedule_keys[key], frequency_names[frequency]),
			 errdetail("%s", detail)));
}

/* Raise the error for a key that the frequency needs */
static void
key_required(ScheduleKey key, BoScheduleFrequency frequency)
{
	const char *hint;

	switch (key)
	{
		case KEY_DAYS_OF_WEEK:
			hint = "Give the days as integers 0-6 with 0 for Sunday, for example [1, 3, 5].";
			break;
		case KEY_DAY_OF_MONTH:
			hint = "Give a day 1-31; in shorter months the last day is used.";
			break;
		default:
			hint = "Give a five-field cron expression, for example \"0 2 * * *\".";
			break;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("schedule.%s is required when schedule.frequency is %s",
					schedule_keys[key], frequency_names[frequency]),
			 errhint("%s", hint)));
}

/*
 * Validate a schedule object completely and return it parsed.  The result
 * is allocated in the current memory context and does not point into the
 * Jsonb.  JSON null values count as absent keys.
 */
BoSchedule *
bo_schedule_parse(Jsonb *jb)
{
	BoSchedule *schedule = palloc0(sizeof(BoSchedule));
	JsonbValue	values[NUM_SCHEDULE_KEYS];
	bool		present[NUM_SCHEDULE_KEYS];
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	BoScheduleFrequency freq;
	int			k;

	if (!JB_ROOT_IS_OBJECT(jb))
	{
		JsonbValue	scalar;
		const char *type = "array";

		if (JB_ROOT_IS_SCALAR(jb) && JsonbExtractScalar(&jb->root, &scalar))
			type = JsonbTypeName(&scalar);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schedule must be a JSON object"),
				 errdetail("The value given is a JSON %s.", type)));
	}

	/* collect the keys, refusing unknown ones */
	memset(present, 0, sizeof(present));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (k = 0; k < NUM_SCHEDULE_KEYS; k++)
		{
			if (strcmp(key, schedule_keys[k]) == 0)
				break;
		}
		if (k == NUM_SCHEDULE_KEYS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown key schedule.%s", key),
					 errdetail("A schedule has the keys frequency, startTime, endTime, daysOfWeek, dayOfMonth, cronExpression, timezone and maxDurationMinutes."),
					 errhint("Key names are case-sensitive camelCase.")));
		tok = JsonbIteratorNext(&it, &values[k], true);
		Assert(tok == WJB_VALUE);
		present[k] = (values[k].type != jbvNull);
	}

	/* frequency */
	if (!present[KEY_FREQUENCY])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schedule.frequency is required"),
				 errhint("Use one of HOURLY, DAILY, WEEKLY, MONTHLY, CUSTOM or CONTINUOUS.")));
	for (k = 0; frequency_names[k] != NULL; k++)
	{
		if (values[KEY_FREQUENCY].type == jbvString &&
			values[KEY_FREQUENCY].val.string.len == strlen(frequency_names[k]) &&
			memcmp(values[KEY_FREQUENCY].val.string.val, frequency_names[k],
				   values[KEY_FREQUENCY].val.string.len) == 0)
			break;
	}
	if (frequency_names[k] == NULL)
		invalid_value("schedule.frequency", &values[KEY_FREQUENCY],
					  "schedule.frequency must be one of HOURLY, DAILY, WEEKLY, MONTHLY, CUSTOM or CONTINUOUS.",
					  NULL);
	freq = (BoScheduleFrequency) k;
	schedule->frequency = freq;

	/* keys the frequency does not use, then keys it needs */
	if (freq == BO_FREQ_CONTINUOUS && present[KEY_START_TIME])
		key_not_allowed(KEY_START_TIME, freq);
	if (freq == BO_FREQ_CONTINUOUS && present[KEY_END_TIME])
		key_not_allowed(KEY_END_TIME, freq);
	if (freq != BO_FREQ_WEEKLY && present[KEY_DAYS_OF_WEEK])
		key_not_allowed(KEY_DAYS_OF_WEEK, freq);
	if (freq != BO_FREQ_MONTHLY && present[KEY_DAY_OF_MONTH])
		key_not_allowed(KEY_DAY_OF_MONTH, freq);
	if (freq != BO_FREQ_CUSTOM && present[KEY_CRON_EXPRESSION])
		key_not_allowed(KEY_CRON_EXPRESSION, freq);
	if (freq == BO_FREQ_WEEKLY && !present[KEY_DAYS_OF_WEEK])
		key_required(KEY_DAYS_OF_WEEK, freq);
	if (freq == BO_FREQ_MONTHLY && !present[KEY_DAY_OF_MONTH])
		key_required(KEY_DAY_OF_MONTH, freq);
	if (freq == BO_FREQ_CUSTOM && !present[KEY_CRON_EXPRESSION])
		key_required(KEY_CRON_EXPRESSION, freq);

	/* the values */
	if (present[KEY_START_TIME])
	{
		schedule->has_start_time = true;
		schedule->start_minute = parse_time_of_day("schedule.startTime",
												   &values[KEY_START_TIME]);
	}
	if (present[KEY_END_TIME])
	{
		schedule->has_end_time = true;
		schedule->end_minute = parse_time_of_day("schedule.endTime",
												 &values[KEY_END_TIME]);
		if (!schedule->has_start_time)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("schedule.endTime requires schedule.startTime"),
					 errdetail("A backup window runs from schedule.startTime to schedule.endTime.")));
		if (schedule->end_minute == schedule->start_minute)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("schedule.endTime must differ from schedule.startTime"),
					 errdetail("A window from %02d:%02d to %02d:%02d is empty.",
							   schedule->start_minute / MINS_PER_HOUR,
							   schedule->start_minute % MINS_PER_HOUR,
							   schedule->end_minute / MINS_PER_HOUR,
							   schedule->end_minute % MINS_PER_HOUR),
					 errhint("Leave out schedule.endTime to allow backups at any time of day.")));
	}
	if (present[KEY_DAYS_OF_WEEK])
		schedule->days_of_week = parse_days_of_week(&values[KEY_DAYS_OF_WEEK]);
	if (present[KEY_DAY_OF_MONTH] &&
		!json_int_in_range(&values[KEY_DAY_OF_MONTH], 1, 31,
						   &schedule->day_of_month))
		invalid_value("schedule.dayOfMonth", &values[KEY_DAY_OF_MONTH],
					  "schedule.dayOfMonth must be an integer 1-31.",
					  "In months shorter than the day given, the backup runs on the last day.");
	if (present[KEY_CRON_EXPRESSION])
	{
		JsonbValue *cron = &values[KEY_CRON_EXPRESSION];

		if (cron->type != jbvString)
			invalid_value("schedule.cronExpression", cron,
						  "schedule.cronExpression must be a string.",
						  "Give a five-field cron expression, for example \"0 2 * * *\".");
		bo_cron_parse(pnstrdup(cron->val.string.val, cron->val.string.len),
					  &schedule->cron);
	}
	if (present[KEY_TIMEZONE])
	{
		JsonbValue *tzvalue = &values[KEY_TIMEZONE];

		if (tzvalue->type != jbvString)
			invalid_value("schedule.timezone", tzvalue,
						  "schedule.timezone must be a string naming an IANA time zone.",
						  "Use a name from pg_timezone_names, for example \"America/Chicago\".");
		schedule->timezone = pnstrdup(tzvalue->val.string.val,
									  tzvalue->val.string.len);
		(void) bo_timezone_lookup(schedule->timezone, "schedule.timezone");
	}
	if (present[KEY_MAX_DURATION_MINUTES] &&
		!json_int_in_range(&values[KEY_MAX_DURATION_MINUTES], 1,
						   BO_MAX_DURATION_MINUTES,
						   &schedule->max_duration_minutes))
		invalid_value("schedule.maxDurationMinutes",
					  &values[KEY_MAX_DURATION_MINUTES],
					  "schedule.maxDurationMinutes must be an integer 1-10080 (one week).",
					  NULL);

	return schedule;
}

/*
 * The zone a schedule is computed in: the tzname argument, else
 * schedule.timezone, else UTC.  Both given and different is an error.
 */
pg_tz *
bo_schedule_zone(const BoSchedule *schedule, const char *tzname)
{
	pg_tz	   *own = NULL;
	pg_tz	   *arg = NULL;

	if (schedule->timezone != NULL)
		own = bo_timezone_lookup(schedule->timezone, "schedule.timezone");
	if (tzname != NULL)
		arg = bo_timezone_lookup(tzname, "timezone");

	if (own != NULL && arg != NULL &&
		strcmp(pg_get_timezone_name(own), pg_get_timezone_name(arg)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schedule.timezone conflicts with the timezone argument"),
				 errdetail("schedule.timezone is \"%s\" but the timezone argument is \"%s\".",
						   schedule->timezone, tzname),
				 errhint("Pass NULL as the timezone argument to use schedule.timezone.")));

	if (arg != NULL)
		return arg;
	if (own != NULL)
		return own;
	own = pg_tzset("UTC");
	if (own == NULL)
		elog(ERROR, "could not load time zone \"UTC\"");
	return own;
}

/*
 * Validate a schedule object and the zone it would run in; raises the
 * first problem found.
 */
void
bo_schedule_validate(Jsonb *schedule, const char *tzname)
{
	(void) bo_schedule_zone(bo_schedule_parse(schedule), tzname);
}

/*
 * The first run of a schedule object strictly after `after`, in tzname
 * (NULL: schedule.timezone, else UTC).  *found is false when there is
 * none (CONTINUOUS).
 */
TimestampTz
bo_schedule_next(Jsonb *schedule, const char *tzname, TimestampTz after,
				 bool *found)
{
	BoSchedule *parsed = bo_schedule_parse(schedule);

	return bo_schedule_next_run(parsed, bo_schedule_zone(parsed, tzname),
								after, found);
}
