/*-------------------------------------------------------------------------
 *
 * cron.c
 *		Parsing and day matching for five-field cron expressions
 *		(schedule.cronExpression of CUSTOM schedules).
 *
 * The accepted language is the classic Vixie cron one: fields minute,
 * hour, day-of-month, month and day-of-week separated by blanks; each field
 * a comma list of '*', 'N', 'N-M', each optionally followed by '/step'
 * ('N/step' means N to the field's maximum); month names JAN-DEC and
 * weekday names SUN-SAT in any case, also inside ranges; weekday 7 is
 * Sunday; the macros @yearly, @annually, @monthly, @weekly, @daily,
 * @midnight and @hourly.  @reboot names no time and is refused.
 *
 * Day matching follows Vixie cron exactly: when both day fields are
 * restricted (neither begins with '*'), a day matches if either field
 * matches; when one of them begins with '*' both must match, which for a
 * plain '*' means only the other field restricts.
 *
 * An expression that can never match (day 30 of February, day 31 of April
 * and June only) is refused at parse time, so that next-run searches never
 * scan years in vain.  Unlike MONTHLY schedules, cron day 31 does not
 * clamp to shorter months: "0 0 31 * *" runs only in months with 31 days.
 *
 * Every error names schedule.cronExpression and says in the detail which
 * field is wrong and why.
 *
 * IDENTIFICATION
 *		src/schedule/cron.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "schedule/schedule.h"

/* The description of one cron field */
typedef struct CronField
{
	const char *name;			/* as used in error details */
	int			lo;				/* smallest value accepted */
	int			hi;				/* largest value accepted */
	int			top;			/* largest value '*' and 'N/step' reach */
	const char *const *names;	/* three-letter names, or NULL */
	int			names_base;		/* value of names[0] */
	const char *names_desc;		/* how the names are described */
} CronField;

static const char *const month_names[] = {
	"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
	"JUL", "AUG", "SEP", "OCT", "NOV", "DEC", NULL
};

static const char *const weekday_names[] = {
	"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL
};

#define CRON_MINUTE		0
#define CRON_HOUR		1
#define CRON_DOM		2
#define CRON_MONTH		3
#define CRON_DOW		4
#define CRON_NFIELDS	5

static const CronField cron_fields[CRON_NFIELDS] = {
	{"minute", 0, 59, 59, NULL, 0, NULL},
	{"hour", 0, 23, 23, NULL, 0, NULL},
	{"day-of-month", 1, 31, 31, NULL, 0, NULL},
	{"month", 1, 12, 12, month_names, 1, "month name (JAN-DEC)"},
	{"day-of-week", 0, 7, 6, weekday_names, 0, "weekday name (SUN-SAT)"},
};

/* The macros and the expressions they stand for */
static const struct
{
	const char *name;
	const char *expansion;
}			cron_macros[] = {
	{"@yearly", "0 0 1 1 *"},
	{"@annually", "0 0 1 1 *"},
	{"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"},
	{"@daily", "0 0 * * *"},
	{"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

/* Days per month in a leap year, index 1-12 */
static const int cron_month_days[13] = {
	0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
};

/*
 * Report an invalid cron expression: the message quotes the whole
 * expression as JSON, the detail says what is wrong.
 */
#define CRON_ERROR(expr, ...) \
	ereport(ERROR, \
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE), \
			 errmsg("invalid schedule.cronExpression: %s", cron_quote(expr)), \
			 errdetail(__VA_ARGS__)))

/* Longest part of an expression quoted in an error message */
#define CRON_QUOTE_MAX	60

/*
 * The expression as a JSON string literal for error messages, shortened
 * (with "..." after the literal) when long.
 */
static char *
cron_quote(const char *expr)
{
	StringInfoData buf;
	int			len = strlen(expr);

	initStringInfo(&buf);
	if (len > CRON_QUOTE_MAX)
	{
		escape_json(&buf, pnstrdup(expr, pg_mbcliplen(expr, len, CRON_QUOTE_MAX)));
		appendStringInfoString(&buf, "...");
	}
	else
		escape_json(&buf, expr);
	return buf.data;
}

/* Is c a field separator? */
static bool
cron_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Parse one value (a number or, where the field has them, a name) starting
 * at *pp; stops at '-', '/' or the end of the element.  token is the whole
 * list element, for error details.
 */
static int
cron_parse_value(const char *expr, const CronField *f, const char **pp,
				 const char *token)
{
	const char *start = *pp;
	const char *p = start;
	char	   *text;
	int			value = 0;

	if (isdigit((unsigned char) *p))
	{
		while (isdigit((unsigned char) *p))
		{
			/* stop accumulating once clearly out of range, keep scanning */
			if (value <= 1000)
				value = value * 10 + (*p - '0');
			p++;
		}
		text = pnstrdup(start, p - start);
		if (value < f->lo || value > f->hi)
			CRON_ERROR(expr, "The %s field value %s is outside %d-%d.",
					   f->name, text, f->lo, f->hi);
	}
	else if (isalpha((unsigned char) *p))
	{
		int			i;

		while (isalpha((unsigned char) *p))
			p++;
		text = pnstrdup(start, p - start);
		if (f->names == NULL)
			CRON_ERROR(expr, "The %s field value \"%s\" is not a number.",
					   f->name, text);
		for (i = 0; f->names[i] != NULL; i++)
		{
			if (pg_strcasecmp(f->names[i], text) == 0)
				break;
		}
		if (f->names[i] == NULL)
			CRON_ERROR(expr, "The %s field value \"%s\" is not a number or %s.",
					   f->name, text, f->names_desc);
		value = f->names_base + i;
	}
	else
	{
		CRON_ERROR(expr, "The %s field element \"%s\" is not valid.",
				   f->name, token);
	}

	*pp = p;
	return value;
}

/*
 * Parse one comma-list element of a field ("*", "N", "N-M", each with an
 * optional "/step") and set its bits.
 */
static void
cron_parse_element(const char *expr, const CronField *f, const char *token,
				   uint64 *bits)
{
	const char *p = token;
	int			lo;
	int			hi;
	int			step = 1;
	bool		is_range = false;
	int			v;

	if (*p == '*')
	{
		lo = f->lo;
		hi = f->top;
		is_range = true;
		p++;
	}
	else
	{
		lo = cron_parse_value(expr, f, &p, token);
		hi = lo;
		if (*p == '-')
		{
			const char *range_start = token;

			p++;
			hi = cron_parse_value(expr, f, &p, token);
			if (hi < lo)
				CRON_ERROR(expr, "The %s field range %s is reversed.",
						   f->name, pnstrdup(range_start, p - range_start));
			is_range = true;
		}
	}

	if (*p == '/')
	{
		const char *step_start = ++p;

		if (!isdigit((unsigned char) *p))
			CRON_ERROR(expr, "The %s field element \"%s\" has no step number after \"/\".",
					   f->name, token);
		step = 0;
		while (isdigit((unsigned char) *p))
		{
			if (step <= 1000)
				step = step * 10 + (*p - '0');
			p++;
		}
		if (step < 1 || step > f->top - f->lo)
			CRON_ERROR(expr, "The %s field step %s is outside 1-%d.",
					   f->name, pnstrdup(step_start, p - step_start),
					   f->top - f->lo);
		/*
		 * "N/step" runs from N to the top of the field; in the weekday field
		 * "7/step" is Sunday alone (7 lies above the top, 6).
		 */
		if (!is_range)
			hi = Max(lo, f->top);
	}

	if (*p != '\0')
		CRON_ERROR(expr, "The %s field element \"%s\" is not valid.",
				   f->name, token);

	for (v = lo; v <= hi; v += step)
	{
		/* weekday 7 is Sunday */
		if (f == &cron_fields[CRON_DOW] && v == 7)
			*bits |= UINT64CONST(1);
		else
			*bits |= UINT64CONST(1) << v;
	}
}

/* Parse a whole field (a comma list) into its bits */
static uint64
cron_parse_field(const char *expr, const CronField *f, char *text)
{
	uint64		bits = 0;
	char	   *elem = text;

	for (;;)
	{
		char	   *comma = strchr(elem, ',');

		if (comma != NULL)
			*comma = '\0';
		if (*elem == '\0')
			CRON_ERROR(expr, "The %s field has an empty list element.",
					   f->name);
		cron_parse_element(expr, f, elem, &bits);
		if (comma == NULL)
			break;
		elem = comma + 1;
	}
	return bits;
}

/*
 * Can the day fields ever select a day?  When both day fields are
 * restricted they combine with OR and the weekday field alone matches
 * every week.  Otherwise they combine with AND: some listed month must
 * have some listed day; every calendar date falls on every weekday within
 * the 400-year Gregorian cycle, so the weekday field cannot rule a date
 * out for good.
 */
static bool
cron_can_match(const BoCron *cron)
{
	int			m;
	int			d;

	if (!cron->dom_star && !cron->dow_star)
		return true;
	for (m = 1; m <= 12; m++)
	{
		if (!(cron->months & (1 << m)))
			continue;
		for (d = 1; d <= cron_month_days[m]; d++)
		{
			if (cron->days_of_month & ((uint32) 1 << d))
				return true;
		}
	}
	return false;
}

/*
 * Parse and check a cron expression into *cron; raises an error naming
 * schedule.cronExpression when it is not valid or can never match.
 */
void
bo_cron_parse(const char *expr, BoCron *cron)
{
	const char *text = expr;
	char	   *fields[CRON_NFIELDS];
	int			nfields = 0;
	char	   *copy;
	char	   *p;
	int			i;

	memset(cron, 0, sizeof(BoCron));

	while (cron_is_blank(*text))
		text++;

	if (*text == '@')
	{
		size_t		len = strlen(text);

		while (len > 0 && cron_is_blank(text[len - 1]))
			len--;
		if (len == strlen("@reboot") &&
			pg_strncasecmp(text, "@reboot", len) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid schedule.cronExpression: %s", cron_quote(expr)),
					 errdetail("@reboot names no time of day, so a backup schedule cannot use it.")));
		for (i = 0; i < lengthof(cron_macros); i++)
		{
			if (len == strlen(cron_macros[i].name) &&
				pg_strncasecmp(text, cron_macros[i].name, len) == 0)
				break;
		}
		if (i == lengthof(cron_macros))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid schedule.cronExpression: %s", cron_quote(expr)),
					 errdetail("The macro \"%s\" is unknown.", pnstrdup(text, len)),
					 errhint("Use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly.")));
		text = cron_macros[i].expansion;
	}

	/* split into blank-separated fields */
	copy = pstrdup(text);
	p = copy;
	for (;;)
	{
		while (cron_is_blank(*p))
			p++;
		if (*p == '\0')
			break;
		if (nfields < CRON_NFIELDS)
			fields[nfields] = p;
		nfields++;
		while (*p != '\0' && !cron_is_blank(*p))
			p++;
		if (*p != '\0')
			*p++ = '\0';
	}
	if (nfields != CRON_NFIELDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule.cronExpression: %s", cron_quote(expr)),
				 errdetail("A cron expression has 5 fields, but this one has %d.",
						   nfields),
				 errhint("Write minute hour day-of-month month day-of-week, for example \"0 2 * * *\".")));

	cron->minutes = cron_parse_field(expr, &cron_fields[CRON_MINUTE],
									 fields[CRON_MINUTE]);
	cron->hours = (uint32) cron_parse_field(expr, &cron_fields[CRON_HOUR],
											fields[CRON_HOUR]);
	cron->days_of_month = (uint32) cron_parse_field(expr, &cron_fields[CRON_DOM],
													fields[CRON_DOM]);
	cron->months = (uint16) cron_parse_field(expr, &cron_fields[CRON_MONTH],
											 fields[CRON_MONTH]);
	cron->days_of_week = (uint8) cron_parse_field(expr, &cron_fields[CRON_DOW],
												  fields[CRON_DOW]);
	cron->dom_star = (fields[CRON_DOM][0] == '*');
	cron->dow_star = (fields[CRON_DOW][0] == '*');

	if (!cron_can_match(cron))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule.cronExpression: %s", cron_quote(expr)),
				 errdetail("No month in the month field has a day listed in the day-of-month field, so the expression never matches."),
				 errhint("February has at most 29 days; April, June, September and November have 30.")));
}

/*
 * Does the cron expression select this calendar day?  month 1-12, mday
 * 1-31, wday 0-6 with 0 = Sunday.
 */
bool
bo_cron_day_matches(const BoCron *cron, int month, int mday, int wday)
{
	bool		dom_ok;
	bool		dow_ok;

	if (!(cron->months & (1 << month)))
		return false;
	dom_ok = (cron->days_of_month & ((uint32) 1 << mday)) != 0;
	dow_ok = (cron->days_of_week & (1 << wday)) != 0;
	if (cron->dom_star || cron->dow_star)
		return dom_ok && dow_ok;
	return dom_ok || dow_ok;
}
