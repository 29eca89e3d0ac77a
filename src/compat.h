/*-------------------------------------------------------------------------
 *
 * compat.h
 *		The one place for PostgreSQL version differences.
 *
 * backup_offline targets PostgreSQL 15.  Code that depends on a server
 * version goes behind PG_VERSION_NUM guards here, so that 16 and 17 can
 * follow without touching the parts.
 *
 * IDENTIFICATION
 *		src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_COMPAT_H
#define BACKUP_OFFLINE_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "backup_offline requires PostgreSQL 15 or later"
#endif

#endif							/* BACKUP_OFFLINE_COMPAT_H */
