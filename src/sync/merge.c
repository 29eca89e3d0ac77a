/*-------------------------------------------------------------------------
 *
 * merge.c
 *		The field-level three-way merge engine: merge3(base, client, server,
 *		policy).
 *
 * Three documents: base (the server's version the device last saw and
 * edited), client (the device's version) and server (the current one).
 * Per field, with deep, type-aware equality (jsonb's: 1.0 = 1, key order
 * irrelevant) and "missing" distinct from null:
 *
 *	1. client = base: only the server changed it, take the server's;
 *	2. server = base: only the device changed it, take the client's;
 *	3. client = server: both changed it alike, no conflict (except for an
 *	   additive field: two increments of one both count);
 *	4. else both changed it differently: if both are objects and the field
 *	   has no policy of its own, merge their fields the same way (nested
 *	   paths: address.street); otherwise the field's policy decides and the
 *	   conflict is recorded (path, base, client, server, resolution, winner):
 *
 *	server_wins  the server's value
 *	client_wins  the client's value
 *	lww          the value of the side with the later hybrid logical clock
 *				 (policy clientHlc / serverHlc, ties by clientNode /
 *				 serverNode); without clocks: manual
 *	additive     numbers: server + (client - base) (missing counts 0)
 *	set_union    arrays as sets: what either side added, minus what either
 *				 side removed, in the server's order then the client's
 *	append       arrays or strings the client extended: the server's value
 *				 followed by what the client appended to the base
 *	merge_by_id  arrays of objects: elements matched by their key ("id" or
 *				 the policy's "key"), each merged the same way (paths
 *				 tasks[id=7].done; element policies under "tasks[]" and
 *				 "tasks[].done"),
 *				 added elements of both sides kept, in the server's order
 *				 then the client's
 *	custom       a SQL function (jsonb base, jsonb client, jsonb server)
 *				 RETURNS jsonb decides; an error or NULL: manual
 *	manual       the server's value is kept and the document needs a person
 *				 (requiresManualResolution)
 *
 * A policy that does not apply to the values (additive on text, say) falls
 * back to manual, which is recorded with the policy that failed.
 *
 * policy: {"default": <policy>, "fields": {"<path>": <policy>, ...},
 *			"clientHlc": n, "serverHlc": n, "clientNode": "...",
 *			"serverNode": "..."}; a <policy> is a name or {"strategy": name,
 * "key": "id", "function": "schema.fn"}.  The default default is
 * server_wins.
 *
 * The result: {"merged": {...}, "conflicts": [...],
 * "requiresManualResolution": bool}.
 *
 * IDENTIFICATION
 *		src/sync/merge.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/regproc.h"
#include "utils/resowner.h"

#include "backup_offline.h"

PG_FUNCTION_INFO_V1(bo_merge3_sql);

typedef enum BoMergeStrategy
{
	BO_MERGE_DEFAULT,			/* no policy of its own: objects recurse, else the default */
	BO_MERGE_SERVER_WINS,
	BO_MERGE_CLIENT_WINS,
	BO_MERGE_LWW,
	BO_MERGE_ADDITIVE,
	BO_MERGE_SET_UNION,
	BO_MERGE_APPEND,
	BO_MERGE_BY_ID,
	BO_MERGE_CUSTOM,
	BO_MERGE_MANUAL
} BoMergeStrategy;

static const char *const strategy_names[] = {
	"default", "server_wins", "client_wins", "lww", "additive", "set_union", "append",
	"merge_by_id", "custom", "manual"
};

typedef struct BoFieldPolicy
{
	char	   *path;			/* policy path: a.b, tasks.done */
	BoMergeStrategy strategy;
	char	   *key;			/* merge_by_id: the element key */
	Oid			function;		/* custom */
} BoFieldPolicy;

/* a parsed policy; cached per call site while the policy's bytes repeat */
typedef struct BoPolicy
{
	BoFieldPolicy deflt;
	BoFieldPolicy *fields;		/* sorted by path */
	int			nfields;
	int			lww;			/* > 0 client later, < 0 server later, 0 unknown */
	Jsonb	   *source;			/* the policy these were parsed from */
} BoPolicy;

typedef struct BoConflict
{
	char	   *path;
	JsonbValue *base;			/* NULL: missing */
	JsonbValue *client;
	JsonbValue *server;
	const char *resolution;
	const char *winner;			/* client, server, merged, none */
} BoConflict;

typedef struct BoMerge
{
	JsonbParseState *state;
	BoPolicy   *policy;
	List	   *conflicts;
	bool		manual;
	StringInfoData path;		/* for conflicts: tasks[id=7].done */
	StringInfoData ppath;		/* for policies: tasks.done */
} BoMerge;

/* ---------------------------------------------------------------------
 * Values
 * ---------------------------------------------------------------------
 */

/* deep, type-aware equality; NULL is "missing" */
static bool
values_equal(JsonbValue *a, JsonbValue *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(a->val.numeric),
													NumericGetDatum(b->val.numeric)));
		case jbvBinary:
			if (JsonContainerIsObject(a->val.binary.data) != JsonContainerIsObject(b->val.binary.data))
				return false;
			return compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			elog(ERROR, "unexpected jsonb value type %d", a->type);
	}
	return false;
}

static bool
is_object(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
is_array(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data) &&
		!JsonContainerIsScalar(v->val.binary.data);
}

/* a container's members (skipNested): keys and values, or elements */
typedef struct BoMembers
{
	int			n;
	JsonbValue *keys;
	JsonbValue *values;
} BoMembers;

static void
members(JsonbValue *v, BoMembers *m)
{
	JsonbIterator *it;
	JsonbValue	t;
	JsonbIteratorToken r;
	int			size;

	m->n = 0;
	if (v == NULL || v->type != jbvBinary)
		return;
	size = JsonContainerSize(v->val.binary.data);
	m->keys = palloc(sizeof(JsonbValue) * Max(size, 1));
	m->values = palloc(sizeof(JsonbValue) * Max(size, 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &t, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
			m->keys[m->n] = t;
		else if (r == WJB_VALUE)
			m->values[m->n++] = t;
		else if (r == WJB_ELEM)
			m->values[m->n++] = t;
	}
}

/* jsonb's key order: shorter first, then bytes */
static int
key_cmp(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len < b->val.string.len ? -1 : 1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

/* emit v (NULL: nothing) as the value of key, or as an array element when key is NULL */
static void
emit(BoMerge *m, JsonbValue *key, JsonbValue *v)
{
	if (v == NULL)
		return;
	if (key != NULL)
	{
		pushJsonbValue(&m->state, WJB_KEY, key);
		pushJsonbValue(&m->state, WJB_VALUE, v);
	}
	else
		pushJsonbValue(&m->state, WJB_ELEM, v);
}

static JsonbValue *
numeric_value(Numeric n)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvNumeric;
	v->val.numeric = n;
	return v;
}

static JsonbValue *
jsonb_as_value(Jsonb *j)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	if (JB_ROOT_IS_SCALAR(j))
	{
		JsonbExtractScalar(&j->root, v);
		return v;
	}
	v->type = jbvBinary;
	v->val.binary.data = &j->root;
	v->val.binary.len = VARSIZE(j) - VARHDRSZ;
	return v;
}

static Jsonb *
value_as_jsonb(JsonbValue *v)
{
	return v ? JsonbValueToJsonb(v) : NULL;
}

/* ---------------------------------------------------------------------
 * Policy
 * ---------------------------------------------------------------------
 */
static void
policy_error(const char *path, const char *what, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid policy%s%s: %s", path ? "." : "", path ? path : "", what),
			 errhint("%s", hint)));
}

static void
parse_field_policy(JsonbValue *v, const char *where, BoFieldPolicy *p)
{
	JsonbValue *name = v;
	int			i;

	memset(p, 0, sizeof(*p));
	if (is_object(v))
	{
		JsonbContainer *c = v->val.binary.data;
		JsonbValue *key;
		JsonbValue *fn;
		JsonbIterator *it = JsonbIteratorInit(c);
		JsonbValue	t;
		JsonbIteratorToken r;

		while ((r = JsonbIteratorNext(&it, &t, true)) != WJB_DONE)
			if (r == WJB_KEY &&
				!(t.val.string.len == 8 && memcmp(t.val.string.val, "strategy", 8) == 0) &&
				!(t.val.string.len == 3 && memcmp(t.val.string.val, "key", 3) == 0) &&
				!(t.val.string.len == 8 && memcmp(t.val.string.val, "function", 8) == 0))
				policy_error(where, psprintf("unknown key %.*s", t.val.string.len, t.val.string.val),
							 "A field policy object has strategy, key (merge_by_id) and function (custom).");
		name = getKeyJsonValueFromContainer(c, "strategy", 8, NULL);
		if (name == NULL)
			policy_error(where, "strategy is required", "Give {\"strategy\": \"merge_by_id\", \"key\": \"id\"} or a strategy name.");
		key = getKeyJsonValueFromContainer(c, "key", 3, NULL);
		if (key != NULL)
		{
			if (key->type != jbvString || key->val.string.len == 0)
				policy_error(where, "key must be a non-empty string", "Name the element field that identifies an element, such as \"id\".");
			p->key = pnstrdup(key->val.string.val, key->val.string.len);
		}
		fn = getKeyJsonValueFromContainer(c, "function", 8, NULL);
		if (fn != NULL)
		{
			Oid			argtypes[3] = {JSONBOID, JSONBOID, JSONBOID};
			List	   *names;

			if (fn->type != jbvString)
				policy_error(where, "function must be a string", "Name a function (jsonb, jsonb, jsonb) RETURNS jsonb.");
			names = stringToQualifiedNameList(pnstrdup(fn->val.string.val, fn->val.string.len));
			p->function = LookupFuncName(names, 3, argtypes, true);
			if (!OidIsValid(p->function))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_FUNCTION),
						 errmsg("invalid policy.%s: function %.*s(jsonb, jsonb, jsonb) does not exist", where,
								fn->val.string.len, fn->val.string.val),
						 errhint("A custom resolver takes base, client and server as jsonb and returns jsonb.")));
			if (get_func_rettype(p->function) != JSONBOID)
				policy_error(where, "the custom function must return jsonb", "Declare it RETURNS jsonb.");
		}
	}
	if (name->type != jbvString)
		policy_error(where, "a policy is a strategy name or an object", "Use, for example, \"server_wins\" or {\"strategy\": \"merge_by_id\"}.");
	for (i = 1; i < lengthof(strategy_names); i++)
		if (strlen(strategy_names[i]) == name->val.string.len &&
			memcmp(strategy_names[i], name->val.string.val, name->val.string.len) == 0)
			p->strategy = (BoMergeStrategy) i;
	if (p->strategy == BO_MERGE_DEFAULT)
		policy_error(where, psprintf("unknown strategy \"%.*s\"", name->val.string.len, name->val.string.val),
					 "Use server_wins, client_wins, lww, additive, set_union, append, merge_by_id, custom or manual.");
	if (p->strategy == BO_MERGE_CUSTOM && !OidIsValid(p->function))
		policy_error(where, "custom needs a function", "Give {\"strategy\": \"custom\", \"function\": \"schema.fn\"}.");
	if (p->strategy != BO_MERGE_CUSTOM && OidIsValid(p->function))
		policy_error(where, "function is only for custom", "Leave it out, or use strategy custom.");
	if (p->key != NULL && p->strategy != BO_MERGE_BY_ID)
		policy_error(where, "key is only for merge_by_id", "Leave it out, or use strategy merge_by_id.");
	if (p->strategy == BO_MERGE_BY_ID && p->key == NULL)
		p->key = "id";
}

static int
field_policy_cmp(const void *a, const void *b)
{
	return strcmp(((const BoFieldPolicy *) a)->path, ((const BoFieldPolicy *) b)->path);
}

/* a hybrid logical clock: a non-negative integer, or absent */
static bool
policy_hlc(JsonbContainer *c, const char *key, int64 *out)
{
	JsonbValue *v = getKeyJsonValueFromContainer(c, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return false;
	if (v->type != jbvNumeric)
		policy_error(key, "not a number", "A hybrid logical clock is an integer (milliseconds << 16 | counter).");
	*out = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
	return true;
}

static BoPolicy *
parse_policy(Jsonb *policy, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	BoPolicy   *p = palloc0(sizeof(BoPolicy));
	JsonbContainer *c;
	JsonbValue *v;
	JsonbIterator *it;
	JsonbValue	t;
	JsonbIteratorToken r;
	int64		client_hlc = 0;
	int64		server_hlc = 0;
	bool		have_client;
	bool		have_server;

	p->deflt.strategy = BO_MERGE_SERVER_WINS;
	p->source = (Jsonb *) palloc(VARSIZE(policy));
	memcpy(p->source, policy, VARSIZE(policy));
	if (!JB_ROOT_IS_OBJECT(policy))
		policy_error(NULL, "the policy must be a JSON object", "Pass {\"default\": \"server_wins\", \"fields\": {...}}, or '{}'.");
	c = &policy->root;
	it = JsonbIteratorInit(c);
	while ((r = JsonbIteratorNext(&it, &t, true)) != WJB_DONE)
	{
		static const char *const known[] = {"default", "fields", "clientHlc", "serverHlc", "clientNode", "serverNode"};
		bool		ok = false;
		int			i;

		if (r != WJB_KEY)
			continue;
		for (i = 0; i < lengthof(known); i++)
			ok |= strlen(known[i]) == t.val.string.len && memcmp(known[i], t.val.string.val, t.val.string.len) == 0;
		if (!ok)
			policy_error(NULL, psprintf("unknown key %.*s", t.val.string.len, t.val.string.val),
						 "A policy has default, fields, clientHlc, serverHlc, clientNode and serverNode.");
	}
	v = getKeyJsonValueFromContainer(c, "default", 7, NULL);
	if (v != NULL)
		parse_field_policy(v, "default", &p->deflt);
	v = getKeyJsonValueFromContainer(c, "fields", 6, NULL);
	if (v != NULL)
	{
		BoMembers m;
		int			i;

		if (!is_object(v))
			policy_error("fields", "not an object", "Map field paths to policies: {\"notes\": \"append\"}.");
		members(v, &m);
		p->fields = palloc(sizeof(BoFieldPolicy) * Max(m.n, 1));
		for (i = 0; i < m.n; i++)
		{
			char	   *path = pnstrdup(m.keys[i].val.string.val, m.keys[i].val.string.len);

			parse_field_policy(&m.values[i], psprintf("fields.%s", path), &p->fields[i]);
			p->fields[i].path = path;
		}
		p->nfields = m.n;
		qsort(p->fields, p->nfields, sizeof(BoFieldPolicy), field_policy_cmp);
	}
	have_client = policy_hlc(c, "clientHlc", &client_hlc);
	have_server = policy_hlc(c, "serverHlc", &server_hlc);
	if (have_client && have_server)
	{
		if (client_hlc != server_hlc)
			p->lww = client_hlc > server_hlc ? 1 : -1;
		else
		{
			JsonbValue *cn = getKeyJsonValueFromContainer(c, "clientNode", 10, NULL);
			JsonbValue *sn = getKeyJsonValueFromContainer(c, "serverNode", 10, NULL);

			/* equal clocks: the greater node id wins, deterministically */
			if (cn != NULL && sn != NULL && cn->type == jbvString && sn->type == jbvString)
			{
				int			cmp = key_cmp(cn, sn);

				p->lww = cmp > 0 ? 1 : (cmp < 0 ? -1 : 0);
			}
		}
	}
	MemoryContextSwitchTo(old);
	return p;
}

static BoFieldPolicy *
lookup_policy(BoMerge *m)
{
	BoFieldPolicy key;

	if (m->policy->nfields == 0)
		return NULL;
	key.path = m->ppath.data;
	return bsearch(&key, m->policy->fields, m->policy->nfields, sizeof(BoFieldPolicy), field_policy_cmp);
}

/* ---------------------------------------------------------------------
 * Merging
 * ---------------------------------------------------------------------
 */
static void merge_field(BoMerge *m, JsonbValue *key, JsonbValue *b, JsonbValue *c, JsonbValue *s);

static void
record(BoMerge *m, JsonbValue *b, JsonbValue *c, JsonbValue *s, const char *resolution, const char *winner)
{
	BoConflict *k = palloc(sizeof(BoConflict));

	k->path = pstrdup(m->path.data);
	k->base = b;
	k->client = c;
	k->server = s;
	k->resolution = resolution;
	k->winner = winner;
	m->conflicts = lappend(m->conflicts, k);
}

/* push a path segment; returns the lengths to restore */
static void
push_key(BoMerge *m, JsonbValue *key, int *plen, int *pplen)
{
	*plen = m->path.len;
	*pplen = m->ppath.len;
	if (m->path.len > 0)
		appendStringInfoChar(&m->path, '.');
	if (m->ppath.len > 0)
		appendStringInfoChar(&m->ppath, '.');
	appendBinaryStringInfo(&m->path, key->val.string.val, key->val.string.len);
	appendBinaryStringInfo(&m->ppath, key->val.string.val, key->val.string.len);
}

static void
pop_path(BoMerge *m, int plen, int pplen)
{
	m->path.len = plen;
	m->path.data[plen] = '\0';
	m->ppath.len = pplen;
	m->ppath.data[pplen] = '\0';
}

/* the fields of three objects (b may be missing), merged, emitted as an object */
static void
merge_objects(BoMerge *m, JsonbValue *b, JsonbValue *c, JsonbValue *s)
{
	BoMembers mb;
	BoMembers mc;
	BoMembers ms;
	int			ib = 0;
	int			ic = 0;
	int			is = 0;

	members(is_object(b) ? b : NULL, &mb);
	members(c, &mc);
	members(s, &ms);
	pushJsonbValue(&m->state, WJB_BEGIN_OBJECT, NULL);
	while (ib < mb.n || ic < mc.n || is < ms.n)
	{
		JsonbValue *k = NULL;
		JsonbValue *vb = NULL;
		JsonbValue *vc = NULL;
		JsonbValue *vs = NULL;
		int			plen;
		int			pplen;

		/* the smallest key of the three, in jsonb's order */
		if (ib < mb.n)
			k = &mb.keys[ib];
		if (ic < mc.n && (k == NULL || key_cmp(&mc.keys[ic], k) < 0))
			k = &mc.keys[ic];
		if (is < ms.n && (k == NULL || key_cmp(&ms.keys[is], k) < 0))
			k = &ms.keys[is];
		if (ib < mb.n && key_cmp(&mb.keys[ib], k) == 0)
			vb = &mb.values[ib++];
		if (ic < mc.n && key_cmp(&mc.keys[ic], k) == 0)
			vc = &mc.values[ic++];
		if (is < ms.n && key_cmp(&ms.keys[is], k) == 0)
			vs = &ms.values[is++];
		push_key(m, k, &plen, &pplen);
		merge_field(m, k, vb, vc, vs);
		pop_path(m, plen, pplen);
	}
	pushJsonbValue(&m->state, WJB_END_OBJECT, NULL);
}

/* additive: server + (client - base), all numbers (missing: 0) */
static bool
merge_additive(BoMerge *m, JsonbValue *key, JsonbValue *b, JsonbValue *c, JsonbValue *s)
{
	Datum		zero = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));
	Datum		nb;
	Datum		nc;
	Datum		ns;
	Datum		sum;

	if ((b && b->type != jbvNumeric) || (c && c->type != jbvNumeric) || (s && s->type != jbvNumeric))
		return false;
	nb = b ? NumericGetDatum(b->val.numeric) : zero;
	nc = c ? NumericGetDatum(c->val.numeric) : zero;
	ns = s ? NumericGetDatum(s->val.numeric) : zero;
	sum = DirectFunctionCall2(numeric_add, ns, DirectFunctionCall2(numeric_sub, nc, nb));
	emit(m, key, numeric_value(DatumGetNumeric(sum)));
	return true;
}

/* is v among the n values? */
static bool
contains(JsonbValue *values, int n, JsonbValue *v)
{
	int			i;

	for (i = 0; i < n; i++)
		if (values_equal(&values[i], v))
			return true;
	return false;
}

/*
 * set_union: arrays as sets.  Kept: the server's elements the client did
 * not remove (in base, not in client), then the client's additions (not in
 * base, not in server).
 */
static bool
merge_set(BoMerge *m, JsonbValue *key, JsonbValue *b, JsonbValue *c, JsonbValue *s)
{
	BoMembers mb;
	BoMembers mc;
	BoMembers ms;
	int			i;

	if ((b && !is_array(b)) || !is_array(c) || !is_array(s))
		return false;
	members(b, &mb);
	members(c, &mc);
	members(s, &ms);
	if (key)
		pushJsonbValue(&m->state, WJB_KEY, key);
	pushJsonbValue(&m->state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < ms.n; i++)
		if (!(contains(mb.values, mb.n, &ms.values[i]) && !contains(mc.values, mc.n, &ms.values[i])))
			pushJsonbValue(&m->state, WJB_ELEM, &ms.values[i]);
	for (i = 0; i < mc.n; i++)
		if (!contains(mb.values, mb.n, &mc.values[i]) && !contains(ms.values, ms.n, &mc.values[i]))
			pushJsonbValue(&m->state, WJB_ELEM, &mc.values[i]);
	pushJsonbValue(&m->state, WJB_END_ARRAY, NULL);
	return true;
}

/*
 * append: the client extended the base (the base is a prefix of the
 * client's array or string): the server's value followed by that
 * extension.
 */
static bool
merge_append(BoMerge *m, JsonbValue *key, JsonbValue *b, JsonbValue *c, JsonbValue *s)
{
	if (b != NULL && c != NULL && s != NULL && b->type == jbvString && c->type == jbvString && s->type == jbvString)
	{
		JsonbValue *v;
		int			extra = c->val.string.len - b->val.string.len;

		if (extra < 0 || memcmp(c->val.string.val, b->val.string.val, b->val.string.len) != 0)
			return false;
		v = palloc(sizeof(JsonbValue));
		v->type = jbvString;
		v->val.string.len = s->val.string.len + extra;
		v->val.string.val = palloc(v->val.string.len + 1);
		memcpy(v->val.string.val, s->val.string.val, s->val.string.len);
		memcpy(v->val.string.val + s->val.string.len, c->val.string.val + b->val.string.len, extra);
		emit(m, key, v);
		return true;
	}
	if (is_array(c) && is_array(s) && (b == NULL || is_array(b)))
	{
		BoMembers mb;
		BoMembers mc;
		BoMembers ms;
		int			i;

		members(b, &mb);
		members(c, &mc);
		members(s, &ms);
		if (mc.n < mb.n)
			return false;
		for (i = 0; i < mb.n; i++)
			if (!values_equal(&mb.values[i], &mc.values[i]))
				return false;
		if (key)
			pushJsonbValue(&m->state, WJB_KEY, key);
		pushJsonbValue(&m->state, WJB_BEGIN_ARRAY, NULL);
		for (i = 0; i < ms.n; i++)
			pushJsonbValue(&m->state, WJB_ELEM, &ms.values[i]);
		for (i = mb.n; i < mc.n; i++)
			pushJsonbValue(&m->state, WJB_ELEM, &mc.values[i]);
		pushJsonbValue(&m->state, WJB_END_ARRAY, NULL);
		return true;
	}
	return false;
}

/* an array element's key value (objects only), or NULL */
static JsonbValue *
element_key(JsonbValue *e, const char *key)
{
	if (!is_object(e))
		return NULL;
	return getKeyJsonValueFromContainer(e->val.binary.data, key, strlen(key), NULL);
}

/* the index of the element of m whose key equals id, or -1 */
static int
find_element(BoMembers *mm, JsonbValue **keys, JsonbValue *id)
{
	int			i;

	for (i = 0; i < mm->n; i++)
		if (keys[i] != NULL && values_equal(keys[i], id))
			return i;
	return -1;
}

static JsonbValue **
element_keys(BoMembers *mm, const char *key, bool *all)
{
	JsonbValue **keys = palloc(sizeof(JsonbValue *) * Max(mm->n, 1));
	int			i;

	for (i = 0; i < mm->n; i++)
	{
		keys[i] = element_key(&mm->values[i], key);
		if (keys[i] == NULL || keys[i]->type == jbvBinary || keys[i]->type == jbvNull)
			*all = false;
	}
	return keys;
}

/* merge_by_id: arrays of objects matched by an element key */
static bool
merge_by_id(BoMerge *m, JsonbValue *key, JsonbValue *b, JsonbValue *c, JsonbValue *s, const char *idkey)
{
	BoMembers mb;
	BoMembers mc;
	BoMembers ms;
	JsonbValue **kb;
	JsonbValue **kc;
	JsonbValue **ks;
	bool		all = true;
	int			i;
	int			plen = m->path.len;

	if ((b && !is_array(b)) || !is_array(c) || !is_array(s))
		return false;
	members(b, &mb);
	members(c, &mc);
	members(s, &ms);
	kb = element_keys(&mb, idkey, &all);
	kc = element_keys(&mc, idkey, &all);
	ks = element_keys(&ms, idkey, &all);
	if (!all)
		return false;
	if (key)
		pushJsonbValue(&m->state, WJB_KEY, key);
	pushJsonbValue(&m->state, WJB_BEGIN_ARRAY, NULL);
	/* element policies live under "tasks[]" and "tasks[].done" */
	appendStringInfoString(&m->ppath, "[]");
	/* the server's elements in its order, then the client's new ones */
	for (i = 0; i < ms.n + mc.n; i++)
	{
		bool		from_server = i < ms.n;
		JsonbValue *id = from_server ? ks[i] : kc[i - ms.n];
		int			jb = find_element(&mb, kb, id);
		int			jc = find_element(&mc, kc, id);
		int			js = find_element(&ms, ks, id);
		Jsonb	   *idj;

		if (!from_server && js >= 0)
			continue;			/* merged with the server's element */
		if (from_server && js != i)
			continue;			/* a repeated id: its first element stands for it */
		if (!from_server && jc != i - ms.n)
			continue;
		idj = JsonbValueToJsonb(id);
		appendStringInfo(&m->path, "[%s=%s]", idkey, JsonbToCString(NULL, &idj->root, VARSIZE(idj)));
		merge_field(m, NULL, jb >= 0 ? &mb.values[jb] : NULL, jc >= 0 ? &mc.values[jc] : NULL,
					js >= 0 ? &ms.values[js] : NULL);
		m->path.len = plen;
		m->path.data[plen] = '\0';
	}
	m->ppath.len -= 2;
	m->ppath.data[m->ppath.len] = '\0';
	pushJsonbValue(&m->state, WJB_END_ARRAY, NULL);
	return true;
}

/* custom: the function's answer, or false (an error, or NULL) */
static bool
merge_custom(BoMerge *m, JsonbValue *key, JsonbValue *b, JsonbValue *c, JsonbValue *s, Oid function)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *volatile result = NULL;
	LOCAL_FCINFO(fcinfo, 3);
	FmgrInfo	flinfo;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Datum		d;

		fmgr_info(function, &flinfo);
		InitFunctionCallInfoData(*fcinfo, &flinfo, 3, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = b ? JsonbPGetDatum(value_as_jsonb(b)) : (Datum) 0;
		fcinfo->args[0].isnull = b == NULL;
		fcinfo->args[1].value = c ? JsonbPGetDatum(value_as_jsonb(c)) : (Datum) 0;
		fcinfo->args[1].isnull = c == NULL;
		fcinfo->args[2].value = s ? JsonbPGetDatum(value_as_jsonb(s)) : (Datum) 0;
		fcinfo->args[2].isnull = s == NULL;
		d = FunctionCallInvoke(fcinfo);
		if (!fcinfo->isnull)
		{
			MemoryContextSwitchTo(cxt);
			result = DatumGetJsonbPCopy(d);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		result = NULL;
	}
	PG_END_TRY();
	if (result == NULL)
		return false;
	emit(m, key, jsonb_as_value(result));
	return true;
}

/*
 * One field (key; NULL: an array element) of base, client and server (NULL:
 * missing): the three-way rule, then the policy.
 */
static void
merge_field(BoMerge *m, JsonbValue *key, JsonbValue *b, JsonbValue *c, JsonbValue *s)
{
	BoFieldPolicy *fp;
	BoFieldPolicy *p;
	bool		done = false;

	if (values_equal(c, b))
	{
		emit(m, key, s);
		return;
	}
	if (values_equal(s, b))
	{
		emit(m, key, c);
		return;
	}
	fp = lookup_policy(m);
	/* both changed it alike: no conflict, except for counters, whose changes both count */
	if (values_equal(c, s) && !(fp != NULL && fp->strategy == BO_MERGE_ADDITIVE))
	{
		emit(m, key, c);
		return;
	}
	/* both changed an object, and the field has no policy of its own: field by field */
	if (fp == NULL && is_object(c) && is_object(s) && (b == NULL || is_object(b)))
	{
		if (key)
			pushJsonbValue(&m->state, WJB_KEY, key);
		merge_objects(m, b, c, s);
		return;
	}
	p = fp ? fp : &m->policy->deflt;
	switch (p->strategy)
	{
		case BO_MERGE_SERVER_WINS:
			emit(m, key, s);
			record(m, b, c, s, "server_wins", "server");
			return;
		case BO_MERGE_CLIENT_WINS:
			emit(m, key, c);
			record(m, b, c, s, "client_wins", "client");
			return;
		case BO_MERGE_LWW:
			if (m->policy->lww != 0)
			{
				emit(m, key, m->policy->lww > 0 ? c : s);
				record(m, b, c, s, "lww", m->policy->lww > 0 ? "client" : "server");
				return;
			}
			break;
		case BO_MERGE_ADDITIVE:
			done = merge_additive(m, key, b, c, s);
			break;
		case BO_MERGE_SET_UNION:
			done = merge_set(m, key, b, c, s);
			break;
		case BO_MERGE_APPEND:
			done = merge_append(m, key, b, c, s);
			break;
		case BO_MERGE_BY_ID:
			/* element conflicts are recorded inside */
			if (merge_by_id(m, key, b, c, s, p->key))
				return;
			break;
		case BO_MERGE_CUSTOM:
			done = merge_custom(m, key, b, c, s, p->function);
			break;
		case BO_MERGE_MANUAL:
		case BO_MERGE_DEFAULT:
			break;
	}
	if (done)
	{
		record(m, b, c, s, strategy_names[p->strategy], "merged");
		return;
	}
	/* manual, or a policy that could not decide: the server's value waits for a person */
	emit(m, key, s);
	record(m, b, c, s, p->strategy == BO_MERGE_MANUAL ? "manual" : psprintf("manual (%s failed)", strategy_names[p->strategy]),
		   "none");
	m->manual = true;
}

/* ---------------------------------------------------------------------
 * merge3(base jsonb, client jsonb, server jsonb, policy jsonb) RETURNS jsonb
 * ---------------------------------------------------------------------
 */
static JsonbValue *
document(Jsonb *j, const char *name, bool *missing)
{
	JsonbValue *v;

	if (j == NULL)
	{
		*missing = true;
		return NULL;
	}
	if (!JB_ROOT_IS_OBJECT(j))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", name),
				 errhint("merge3 merges documents: pass the row as a JSON object.")));
	v = palloc(sizeof(JsonbValue));
	v->type = jbvBinary;
	v->val.binary.data = &j->root;
	v->val.binary.len = VARSIZE(j) - VARHDRSZ;
	*missing = false;
	return v;
}

static void
push_key_text(JsonbParseState **state, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
}

static void
push_member(JsonbParseState **state, const char *key, JsonbValue *v)
{
	if (v == NULL)
		return;
	push_key_text(state, key);
	pushJsonbValue(state, WJB_VALUE, v);
}

static JsonbValue *
text_value(const char *s)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = strlen(s);
	return v;
}

Datum
bo_merge3_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *base = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Jsonb	   *client;
	Jsonb	   *server;
	Jsonb	   *policy;
	BoPolicy   *cached = fcinfo->flinfo->fn_extra;
	BoMerge		m;
	JsonbValue *vb;
	JsonbValue *vc;
	JsonbValue *vs;
	JsonbValue *result;
	JsonbValue	flag;
	bool		missing;
	ListCell   *lc;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s is required", PG_ARGISNULL(1) ? "client" : "server"),
				 errhint("merge3 needs the client's and the server's documents; base may be NULL (no common version).")));
	client = PG_GETARG_JSONB_P(1);
	server = PG_GETARG_JSONB_P(2);
	policy = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	vb = document(base, "base", &missing);
	vc = document(client, "client", &missing);
	vs = document(server, "server", &missing);

	/* the parsed policy, kept while the same policy comes again */
	if (policy == NULL)
		policy = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	if (cached == NULL || VARSIZE(cached->source) != VARSIZE(policy) ||
		memcmp(cached->source, policy, VARSIZE(policy)) != 0)
	{
		MemoryContext cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "merge3 policy", ALLOCSET_SMALL_SIZES);

		if (cached != NULL)
			MemoryContextDelete(GetMemoryChunkContext(cached));
		cached = parse_policy(policy, cxt);
		fcinfo->flinfo->fn_extra = cached;
	}

	memset(&m, 0, sizeof(m));
	m.policy = cached;
	initStringInfo(&m.path);
	initStringInfo(&m.ppath);

	pushJsonbValue(&m.state, WJB_BEGIN_OBJECT, NULL);
	push_key_text(&m.state, "merged");
	merge_objects(&m, vb, vc, vs);
	push_key_text(&m.state, "conflicts");
	pushJsonbValue(&m.state, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, m.conflicts)
	{
		BoConflict *k = lfirst(lc);

		pushJsonbValue(&m.state, WJB_BEGIN_OBJECT, NULL);
		push_member(&m.state, "path", text_value(k->path));
		push_member(&m.state, "base", k->base);
		push_member(&m.state, "client", k->client);
		push_member(&m.state, "server", k->server);
		push_member(&m.state, "resolution", text_value(k->resolution));
		push_member(&m.state, "winner", text_value(k->winner));
		pushJsonbValue(&m.state, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&m.state, WJB_END_ARRAY, NULL);
	flag.type = jbvBool;
	flag.val.boolean = m.manual;
	push_member(&m.state, "requiresManualResolution", &flag);
	result = pushJsonbValue(&m.state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}
