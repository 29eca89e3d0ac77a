/*-------------------------------------------------------------------------
 *
 * change_audit.c
 *		Row-change audit trigger for the catalog tables.
 *
 * Every change to a catalog table (backup configurations, entity registry,
 * compliance rules, organization memberships) writes one audit_log row in
 * the same transaction, whether it came through the API functions or a
 * direct INSERT/UPDATE/DELETE.
 *
 * The trigger must record who made the change and must be able to write the
 * audit log, which no ordinary role may write.  A SECURITY DEFINER function
 * cannot do both: inside it current_user is already the owner.  So this
 * trigger runs as the invoker, captures the invoker's role name, and only
 * then switches to the owner of the trigger function (the extension owner)
 * with SetUserIdAndSecContext, in a restricted security context, to call
 * write_audit().  The previous user is restored before returning; on error
 * transaction abort restores it.  write_audit() queues the entry, which is
 * chained when the transaction commits; queuing that deferred event inside
 * the restricted context is allowed by bo_audit_write() (see audit.c).
 *
 * IDENTIFICATION
 *		src/catalog/change_audit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "backup_offline.h"

PG_FUNCTION_INFO_V1(bo_audit_row_change);

/*
 * Owner of a function, from the syscache.  For the extension's functions:
 * the extension's owner, whom triggers, job workers and verification act as.
 */
Oid
bo_function_owner(Oid funcoid)
{
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", funcoid);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * audit_row_change() RETURNS trigger, AFTER INSERT OR UPDATE OR DELETE
 * FOR EACH ROW; the first trigger argument names the object type.
 *
 * The details and the action are computed in SQL (record_row_change), from
 * the old and new rows as jsonb.
 */
Datum
bo_audit_row_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	tupdesc;
	HeapTuple	oldtup = NULL;
	HeapTuple	newtup = NULL;
	const char *op;
	const char *object_type;
	char	   *actor;
	Oid			save_userid;
	int			save_sec_context;
	Oid			argtypes[4];
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			ret;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "audit_row_change: not called by trigger manager");
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || !TRIGGER_FIRED_AFTER(trigdata->tg_event))
		elog(ERROR, "audit_row_change: must be fired after the row change");
	if (trigdata->tg_trigger->tgnargs < 1)
		elog(ERROR, "audit_row_change: the object type argument is missing");

	tupdesc = RelationGetDescr(trigdata->tg_relation);
	object_type = trigdata->tg_trigger->tgargs[0];
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		op = "INSERT";
		newtup = trigdata->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		op = "UPDATE";
		oldtup = trigdata->tg_trigtuple;
		newtup = trigdata->tg_newtuple;
	}
	else
	{
		op = "DELETE";
		oldtup = trigdata->tg_trigtuple;
	}

	/* who made the change, before any user switch */
	actor = GetUserNameFromId(GetUserId(), false);

	argtypes[0] = TEXTOID;
	values[0] = CStringGetTextDatum(op);
	argtypes[1] = TEXTOID;
	values[1] = CStringGetTextDatum(object_type);
	argtypes[2] = tupdesc->tdtypeid;
	if (oldtup)
		values[2] = heap_copy_tuple_as_datum(oldtup, tupdesc);
	else
	{
		values[2] = (Datum) 0;
		nulls[2] = 'n';
	}
	argtypes[3] = tupdesc->tdtypeid;
	if (newtup)
		values[3] = heap_copy_tuple_as_datum(newtup, tupdesc);
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(bo_function_owner(trigdata->tg_trigger->tgfoid),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "audit_row_change: SPI_connect failed");
	{
		char	   *sql;
		Oid			all_types[5];
		Datum		all_values[5];
		char		all_nulls[5];

		memcpy(all_types, argtypes, sizeof(argtypes));
		memcpy(all_values, values, sizeof(values));
		memcpy(all_nulls, nulls, sizeof(nulls));
		all_types[4] = NAMEOID;
		all_values[4] = DirectFunctionCall1(namein, CStringGetDatum(actor));
		all_nulls[4] = ' ';

		sql = psprintf("SELECT %s.record_row_change($1, $2, pg_catalog.to_jsonb($3), pg_catalog.to_jsonb($4), $5)",
					   quote_identifier(get_namespace_name(get_func_namespace(trigdata->tg_trigger->tgfoid))));
		ret = SPI_execute_with_args(sql, 5, all_types, all_values, all_nulls, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "audit_row_change: SPI_execute_with_args returned %d", ret);
	}
	SPI_finish();

	SetUserIdAndSecContext(save_userid, save_sec_context);

	return PointerGetDatum(NULL);
}
