/*-------------------------------------------------------------------------
 *
 * schedule.h
 *		The schedule engine: backup schedules, cron expressions, IANA time
 *		zones, backup windows and next-run computation.
 *
 * A schedule is the JSON object of SPEC.md's BackupSchedule (camelCase
 * keys).  bo_schedule_parse() validates it completely and turns it into a
 * BoSchedule; the other functions work on that.  Every validation failure
 * is ereport(ERROR) with SQLSTATE 22023 and a message naming the JSON path
 * (schedule.startTime, schedule.cronExpression, ...).
 *
 * Run times are instants (TimestampTz) computed in an IANA zone; see
 * schedule.c for the rules at daylight-saving transitions.
 *
 * IDENTIFICATION
 *		src/schedule/schedule.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BO_SCHEDULE_H
#define BO_SCHEDULE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "pgtime.h"
#include "utils/jsonb.h"

/* schedule.frequency */
typedef enum BoScheduleFrequency
{
	BO_FREQ_HOURLY,
	BO_FREQ_DAILY,
	BO_FREQ_WEEKLY,
	BO_FREQ_MONTHLY,
	BO_FREQ_CUSTOM,
	BO_FREQ_CONTINUOUS
} BoScheduleFrequency;

/*
 * A parsed five-field cron expression, one bit per allowed value.  The
 * star flags record whether the day-of-month / day-of-week field began
 * with '*', which decides how the two day fields combine (see cron.c).
 */
typedef struct BoCron
{
	uint64		minutes;		/* bits 0-59 */
	uint32		hours;			/* bits 0-23 */
	uint32		days_of_month;	/* bits 1-31 */
	uint16		months;			/* bits 1-12 */
	uint8		days_of_week;	/* bits 0-6, 0 = Sunday */
	bool		dom_star;
	bool		dow_star;
} BoCron;

/* A validated schedule object */
typedef struct BoSchedule
{
	BoScheduleFrequency frequency;
	bool		has_start_time;
	int			start_minute;	/* startTime as minutes after midnight, 0 when
								 * absent (DAILY at 00:00, HOURLY at :00) */
	bool		has_end_time;
	int			end_minute;		/* endTime as minutes after midnight */
	uint8		days_of_week;	/* WEEKLY: bits 0-6, 0 = Sunday */
	int			day_of_month;	/* MONTHLY: 1-31 */
	BoCron		cron;			/* CUSTOM */
	char	   *timezone;		/* schedule.timezone, or NULL */
	int			max_duration_minutes;	/* 0 when not given */
} BoSchedule;

/* cron.c */
extern void bo_cron_parse(const char *expr, BoCron *cron);
extern bool bo_cron_day_matches(const BoCron *cron, int month, int mday,
								int wday);

/* schedule.c */
extern BoSchedule *bo_schedule_parse(Jsonb *schedule);
extern pg_tz *bo_schedule_zone(const BoSchedule *schedule,
							   const char *tzname);
extern TimestampTz bo_schedule_next_run(const BoSchedule *schedule,
										pg_tz *tz, TimestampTz after,
										bool *found);
extern TimestampTz bo_schedule_next(Jsonb *schedule, const char *tzname,
									TimestampTz after, bool *found);
extern void bo_schedule_validate(Jsonb *schedule, const char *tzname);
extern bool bo_schedule_in_window(const BoSchedule *schedule, pg_tz *tz,
								  TimestampTz at);
extern bool bo_timezone_is_valid(const char *name);
extern pg_tz *bo_timezone_lookup(const char *name, const char *path);

#endif							/* BO_SCHEDULE_H */
