/*-------------------------------------------------------------------------
 *
 * schedule_sql.c
 *		SQL-callable functions of the schedule engine: next run times,
 *		schedule validation, backup windows and time zone checks.
 *
 * These are thin wrappers over schedule.c.  They follow SQL's convention
 * for NULL inputs (a NULL schedule, instant or count gives NULL or no
 * rows), except validate_schedule(), which reports a missing schedule: a
 * validator that let NULL pass would accept a configuration without one.
 * A NULL timezone argument means "schedule.timezone, else UTC".
 *
 * IDENTIFICATION
 *		src/schedule/schedule_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "schedule/schedule.h"

/* State of a next_run_times() scan between calls */
typedef struct NextRunsState
{
	BoSchedule *schedule;
	pg_tz	   *tz;
	TimestampTz last;			/* runs are strictly after this */
	int32		remaining;
} NextRunsState;

PG_FUNCTION_INFO_V1(bo_next_run_times);
PG_FUNCTION_INFO_V1(bo_next_run_time);
PG_FUNCTION_INFO_V1(bo_validate_schedule);
PG_FUNCTION_INFO_V1(bo_in_backup_window);
PG_FUNCTION_INFO_V1(bo_is_valid_timezone);

/* The timezone argument as a C string, or NULL */
static char *
timezone_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * next_run_times(schedule jsonb, timezone text, after timestamptz, n int)
 *		RETURNS SETOF timestamptz
 *
 * The next n run instants strictly after `after`, in increasing order;
 * no rows for CONTINUOUS schedules.
 */
Datum
bo_next_run_times(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	NextRunsState *state;
	TimestampTz next;
	bool		found;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext oldcontext;
		int32		n;

		funcctx = SRF_FIRSTCALL_INIT();
		if (PG_ARGISNULL(0) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
			SRF_RETURN_DONE(funcctx);

		n = PG_GETARG_INT32(3);
		if (n < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid n: %d", n),
					 errdetail("n is the number of run times to return and must not be negative.")));

		oldcontext = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		state = palloc0(sizeof(NextRunsState));
		state->schedule = bo_schedule_parse(PG_GETARG_JSONB_P(0));
		state->tz = bo_schedule_zone(state->schedule, timezone_arg(fcinfo, 1));
		state->last = PG_GETARG_TIMESTAMPTZ(2);
		state->remaining = n;
		funcctx->user_fctx = state;
		MemoryContextSwitchTo(oldcontext);
	}

	funcctx = SRF_PERCALL_SETUP();
	state = (NextRunsState *) funcctx->user_fctx;
	if (state->remaining <= 0)
		SRF_RETURN_DONE(funcctx);

	next = bo_schedule_next_run(state->schedule, state->tz, state->last, &found);
	if (!found)
		SRF_RETURN_DONE(funcctx);
	state->last = next;
	state->remaining--;
	SRF_RETURN_NEXT(funcctx, TimestampTzGetDatum(next));
}

/*
 * next_run_time(schedule jsonb, timezone text, after timestamptz)
 *		RETURNS timestamptz
 *
 * The first run instant strictly after `after`; NULL for CONTINUOUS.
 */
Datum
bo_next_run_time(PG_FUNCTION_ARGS)
{
	TimestampTz next;
	bool		found;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	next = bo_schedule_next(PG_GETARG_JSONB_P(0), timezone_arg(fcinfo, 1),
							PG_GETARG_TIMESTAMPTZ(2), &found);
	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(next);
}

/*
 * validate_schedule(schedule jsonb, timezone text) RETURNS void
 *
 * Raises the first problem of the schedule (or of the zone it would run
 * in); returns nothing when it is valid.
 */
Datum
bo_validate_schedule(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schedule is required"),
				 errhint("Give a schedule object, for example {\"frequency\": \"DAILY\", \"startTime\": \"02:00\"}.")));
	bo_schedule_validate(PG_GETARG_JSONB_P(0), timezone_arg(fcinfo, 1));
	PG_RETURN_VOID();
}

/*
 * in_backup_window(schedule jsonb, timezone text, at timestamptz)
 *		RETURNS boolean
 *
 * Whether `at`, in the zone's local time, lies in [startTime, endTime);
 * always true for schedules without endTime.
 */
Datum
bo_in_backup_window(PG_FUNCTION_ARGS)
{
	BoSchedule *schedule;
	pg_tz	   *tz;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	schedule = bo_schedule_parse(PG_GETARG_JSONB_P(0));
	tz = bo_schedule_zone(schedule, timezone_arg(fcinfo, 1));
	PG_RETURN_BOOL(bo_schedule_in_window(schedule, tz, PG_GETARG_TIMESTAMPTZ(2)));
}

/*
 * is_valid_timezone(name text) RETURNS boolean
 *
 * True for IANA zone names the server's time zone database knows.
 */
Datum
bo_is_valid_timezone(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(bo_timezone_is_valid(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}
