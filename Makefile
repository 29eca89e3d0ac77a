# backup_offline: PGXS build.
#
# The version comes from the control file; the install script is built by
# concatenating the catalog sources in src/catalog/ in name order.

EXTENSION = backup_offline
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = backup_offline
OBJS = \
	src/backup_offline.o \
	src/catalog/audit.o \
	src/catalog/change_audit.o \
	src/schedule/cron.o \
	src/schedule/schedule.o \
	src/schedule/schedule_sql.o \
	src/storage/paths.o \
	src/storage/storage.o \
	src/storage/fs.o \
	src/archive/digest.o \
	src/archive/container.o \
	src/archive/keys.o

CATALOG_SOURCES = $(sort $(wildcard src/catalog/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(wildcard $(EXTENSION)--*--*.sql)
PGFILEDESC = "backup_offline - in-database backup and offline sync"

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

# libsodium (AEAD, key wrapping, Argon2id) and zstd, from Debian's -dev packages
SHLIB_LINK += -lsodium -lzstd

PG_CPPFLAGS = -I$(srcdir)/src -DBACKUP_OFFLINE_VERSION=\"$(EXTVERSION)\" \
	-Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers

EXTRA_CLEAN = $(DATA_built) META.json.tmp results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(CATALOG_SOURCES) $(EXTENSION).control
	( echo "-- $(EXTENSION) $(EXTVERSION): generated from src/catalog/*.sql by make; do not edit."; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	  for f in $(CATALOG_SOURCES); do echo; echo "-- ==== $$f ===="; cat $$f; done ) > $@

.PHONY: meta-check
# META.json must carry the control file's version.
meta-check:
	@grep -q '"version": "$(EXTVERSION)"' META.json || { echo "META.json version differs from $(EXTVERSION)"; exit 1; }
