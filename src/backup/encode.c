/*-------------------------------------------------------------------------
 *
 * encode.c
 *		Rows in PostgreSQL's COPY formats, and an order-independent digest
 *		of a set of rows.
 *
 * Every table object of a backup is a complete COPY stream, so that a DBA
 * holding the key can restore a table with nothing but the README's
 * archive format and `COPY ... FROM STDIN`:
 *
 *	- binary: COPY (FORMAT binary), each value in its type's send format.
 *	  Used when every column's binary form is the same on any cluster:
 *	  built-in types, enums (sent as their label), domains over such types,
 *	  and arrays of built-in element types.  (array_send and record_send
 *	  embed type OIDs, and the OID of a user-defined type differs from one
 *	  cluster to the next, so arrays of enums or domains and composite
 *	  types would not load on a fresh cluster.)
 *	- text: COPY (FORMAT text) with the default delimiter (tab) and NULL
 *	  (\N), each value in its type's output format, for every other table.
 *	  The job worker pins DateStyle, IntervalStyle, extra_float_digits and
 *	  TimeZone (bo_set_job_gucs) so that the text is exact and the same on
 *	  every run.
 *
 * Columns: those COPY uses by default, i.e. every column that is neither
 * dropped nor generated, in attribute order.
 *
 * The rows digest of a table is its row count and the sum, modulo 2^128,
 * of XXH3-128 (xxHash, seed 0) over each encoded row (binary: from the
 * field count to the row's last byte; text: the line including its
 * newline).  It does not depend on the order of the rows, so a restored
 * table can be compared with the manifest by encoding its rows again.
 *
 * IDENTIFICATION
 *		src/backup/encode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <xxhash.h>

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "backup/backup.h"

/* the 11-byte signature, flags and header extension length of COPY BINARY */
static const char copy_binary_signature[11] = "PGCOPY\n\377\r\n\0";

/*
 * Is the binary (send) form of typid the same on every cluster?
 */
static bool
type_binary_portable(Oid typid, int depth)
{
	HeapTuple	tup;
	Form_pg_type typ;
	bool		portable;

	if (depth > 32)
		return false;
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", typid);
	typ = (Form_pg_type) GETSTRUCT(tup);

	switch (typ->typtype)
	{
		case TYPTYPE_DOMAIN:
			portable = type_binary_portable(typ->typbasetype, depth + 1);
			break;
		case TYPTYPE_ENUM:
			portable = true;
			break;
		case TYPTYPE_BASE:
			if (OidIsValid(typ->typelem) && IsTrueArrayType(typ))
				portable = typ->typelem < FirstNormalObjectId &&
					type_binary_portable(typ->typelem, depth + 1);
			else
				portable = typid < FirstNormalObjectId && OidIsValid(typ->typsend);
			break;
		case TYPTYPE_RANGE:
		case TYPTYPE_MULTIRANGE:
			portable = typid < FirstNormalObjectId;
			break;
		default:
			/* composite (record_send embeds OIDs), pseudo types */
			portable = false;
			break;
	}
	ReleaseSysCache(tup);
	return portable;
}

static bool
column_is_copied(Form_pg_attribute att)
{
	return !att->attisdropped && att->attgenerated == '\0';
}

/*
 * The format a table's rows are stored in: binary when every copied column
 * is portable in binary, else text.
 */
BoRowFormat
bo_row_format_for(TupleDesc tupdesc)
{
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (column_is_copied(att) && !type_binary_portable(att->atttypid, 0))
			return BO_ROW_TEXT;
	}
	return BO_ROW_BINARY;
}

const char *
bo_row_format_name(BoRowFormat format)
{
	return format == BO_ROW_BINARY ? "binary" : "text";
}

bool
bo_row_format_parse(const char *name, BoRowFormat *format)
{
	if (strcmp(name, "binary") == 0)
		*format = BO_ROW_BINARY;
	else if (strcmp(name, "text") == 0)
		*format = BO_ROW_TEXT;
	else
		return false;
	return true;
}

/*
 * Prepare an encoder for rows of tupdesc.  only_columns: a List of column
 * names (char *) to encode, in that order (a primary key), or NIL for the
 * columns COPY uses.
 */
void
bo_row_encoder_init(BoRowEncoder *enc, TupleDesc tupdesc, BoRowFormat format,
					const List *only_columns)
{
	int			i;
	int			n = 0;

	memset(enc, 0, sizeof(*enc));
	enc->tupdesc = tupdesc;
	enc->format = format;
	enc->attnums = palloc(sizeof(AttrNumber) * Max(tupdesc->natts, 1));
	enc->functions = palloc0(sizeof(FmgrInfo) * Max(tupdesc->natts, 1));

	if (only_columns != NIL)
	{
		ListCell   *lc;

		foreach(lc, only_columns)
		{
			const char *name = lfirst(lc);

			for (i = 0; i < tupdesc->natts; i++)
			{
				Form_pg_attribute att = TupleDescAttr(tupdesc, i);

				if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
					break;
			}
			if (i == tupdesc->natts)
				elog(ERROR, "column \"%s\" not found", name);
			enc->attnums[n++] = i + 1;
		}
	}
	else
	{
		for (i = 0; i < tupdesc->natts; i++)
			if (column_is_copied(TupleDescAttr(tupdesc, i)))
				enc->attnums[n++] = i + 1;
	}
	enc->ncolumns = n;

	for (i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, enc->attnums[i] - 1);
		Oid			func;
		bool		isvarlena;

		if (format == BO_ROW_BINARY)
			getTypeBinaryOutputInfo(att->atttypid, &func, &isvarlena);
		else
			getTypeOutputInfo(att->atttypid, &func, &isvarlena);
		fmgr_info(func, &enc->functions[i]);
	}
	initStringInfo(&enc->row);
	enc->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "backup row",
										ALLOCSET_DEFAULT_SIZES);
}

/* names of the encoded columns */
List *
bo_row_encoder_column_names(BoRowEncoder *enc)
{
	List	   *names = NIL;
	int			i;

	for (i = 0; i < enc->ncolumns; i++)
		names = lappend(names, pstrdup(NameStr(TupleDescAttr(enc->tupdesc, enc->attnums[i] - 1)->attname)));
	return names;
}

/* COPY text escaping of one value (CopyAttributeOutText, default options) */
static void
append_text_escaped(StringInfo out, const char *s)
{
	const char *start = s;

	for (; *s != '\0'; s++)
	{
		unsigned char c = (unsigned char) *s;
		char		esc;

		if (c >= 0x20 && c != '\\')
			continue;
		switch (c)
		{
			case '\b':
				esc = 'b';
				break;
			case '\f':
				esc = 'f';
				break;
			case '\n':
				esc = 'n';
				break;
			case '\r':
				esc = 'r';
				break;
			case '\t':
				esc = 't';
				break;
			case '\v':
				esc = 'v';
				break;
			case '\\':
				esc = '\\';
				break;
			default:
				continue;		/* other control characters go as they are */
		}
		appendBinaryStringInfo(out, start, s - start);
		appendStringInfoChar(out, '\\');
		appendStringInfoChar(out, esc);
		start = s + 1;
	}
	appendBinaryStringInfo(out, start, s - start);
}

/*
 * Encode one row (values/nulls as heap_deform_tuple returns them, for the
 * whole tuple descriptor) at the end of out: a backup encodes straight into
 * the buffer it hands to the archive writer.
 */
void
bo_row_encode_into(BoRowEncoder *enc, Datum *values, bool *nulls, StringInfo out)
{
	MemoryContext old;
	int			i;

	MemoryContextReset(enc->rowcxt);
	old = MemoryContextSwitchTo(enc->rowcxt);

	if (enc->format == BO_ROW_BINARY)
	{
		uint16		n = pg_hton16((uint16) enc->ncolumns);

		appendBinaryStringInfoNT(out, (char *) &n, 2);
		for (i = 0; i < enc->ncolumns; i++)
		{
			int			a = enc->attnums[i] - 1;
			uint32		len;

			if (nulls[a])
			{
				len = pg_hton32((uint32) -1);
				appendBinaryStringInfoNT(out, (char *) &len, 4);
			}
			else
			{
				bytea	   *b = SendFunctionCall(&enc->functions[i], values[a]);

				len = pg_hton32((uint32) (VARSIZE(b) - VARHDRSZ));
				appendBinaryStringInfoNT(out, (char *) &len, 4);
				appendBinaryStringInfoNT(out, VARDATA(b), VARSIZE(b) - VARHDRSZ);
			}
		}
	}
	else
	{
		for (i = 0; i < enc->ncolumns; i++)
		{
			int			a = enc->attnums[i] - 1;

			if (i > 0)
				appendStringInfoChar(out, '\t');
			if (nulls[a])
				appendBinaryStringInfo(out, "\\N", 2);
			else
				append_text_escaped(out, OutputFunctionCall(&enc->functions[i], values[a]));
		}
		appendStringInfoChar(out, '\n');
	}
	MemoryContextSwitchTo(old);
}

/* Encode one row into enc->row (replacing the last one). */
void
bo_row_encode(BoRowEncoder *enc, Datum *values, bool *nulls)
{
	resetStringInfo(&enc->row);
	bo_row_encode_into(enc, values, nulls, &enc->row);
}

/* What a COPY stream of this format begins with */
void
bo_row_stream_header(BoRowFormat format, StringInfo out)
{
	if (format == BO_ROW_BINARY)
	{
		uint32		zero = 0;

		appendBinaryStringInfo(out, copy_binary_signature, sizeof(copy_binary_signature));
		appendBinaryStringInfo(out, (char *) &zero, 4);	/* flags */
		appendBinaryStringInfo(out, (char *) &zero, 4);	/* header extension length */
	}
}

/* What a COPY stream of this format ends with */
void
bo_row_stream_trailer(BoRowFormat format, StringInfo out)
{
	if (format == BO_ROW_BINARY)
	{
		uint16		end = pg_hton16((uint16) -1);

		appendBinaryStringInfo(out, (char *) &end, 2);
	}
}

/* XXH3-128 of an encoded row, in xxHash's canonical (big-endian) form */
void
bo_row_hash(const char *data, size_t len, uint8 *out)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
	memcpy(out, c.digest, 16);
}

static void
hash_words(const uint8 *h, uint64 *hi, uint64 *lo)
{
	int			i;

	*hi = 0;
	*lo = 0;
	for (i = 0; i < 8; i++)
	{
		*hi = (*hi << 8) | h[i];
		*lo = (*lo << 8) | h[8 + i];
	}
}

void
bo_rows_digest_add_hash(BoRowsDigest *d, const uint8 *h)
{
	uint64		hi,
				lo,
				sum;

	hash_words(h, &hi, &lo);
	sum = d->lo + lo;
	d->hi += hi + (sum < d->lo ? 1 : 0);
	d->lo = sum;
	d->count++;
}

void
bo_rows_digest_sub_hash(BoRowsDigest *d, const uint8 *h)
{
	uint64		hi,
				lo;

	hash_words(h, &hi, &lo);
	d->hi -= hi + (d->lo < lo ? 1 : 0);
	d->lo -= lo;
	d->count--;
}

/* add the rows of digest from to d (the digest of both sets of rows) */
void
bo_rows_digest_merge(BoRowsDigest *d, const BoRowsDigest *from)
{
	uint64		sum = d->lo + from->lo;

	d->hi += from->hi + (sum < d->lo ? 1 : 0);
	d->lo = sum;
	d->count += from->count;
}

void
bo_rows_digest_add(BoRowsDigest *d, const char *data, size_t len)
{
	uint8		h[16];

	bo_row_hash(data, len, h);
	bo_rows_digest_add_hash(d, h);
}

/* "xxh3-128-sum:" followed by 32 hex digits */
char *
bo_rows_digest_hex(const BoRowsDigest *d)
{
	return psprintf("xxh3-128-sum:%016llx%016llx",
					(unsigned long long) d->hi, (unsigned long long) d->lo);
}

/* the inverse of bo_rows_digest_hex, with the row count; false if malformed */
bool
bo_rows_digest_parse(const char *text, uint64 count, BoRowsDigest *d)
{
	unsigned long long hi,
				lo;
	int			n = 0;

	if (text == NULL || strncmp(text, "xxh3-128-sum:", 13) != 0 || strlen(text) != 13 + 32 ||
		sscanf(text + 13, "%16llx%16llx%n", &hi, &lo, &n) != 2 || n != 32)
		return false;
	d->hi = hi;
	d->lo = lo;
	d->count = count;
	return true;
}
