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
	src/schedule/launcher.o \
	src/storage/paths.o \
	src/storage/storage.o \
	src/storage/fs.o \
	src/archive/digest.o \
	src/archive/format.o \
	src/archive/container.o \
	src/archive/keys.o \
	src/archive/bench.o \
	src/backup/encode.o \
	src/backup/manifest.o \
	src/backup/job.o \
	src/backup/snapshot.o \
	src/backup/verify.o \
	src/backup/rowindex.o \
	src/restore/restore.o \
	src/restore/inplace.o \
	src/restore/repository.o \
	src/sync/merge.o

# PGXS tracks no header dependencies: every object depends on every header
$(OBJS): $(wildcard src/*.h src/*/*.h)

CATALOG_SOURCES = $(sort $(wildcard src/catalog/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(wildcard $(EXTENSION)--*--*.sql)
PGFILEDESC = "backup_offline - in-database backup and offline sync"

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

# libsodium (AEAD, key wrapping, Argon2id) and zstd, from Debian's -dev packages
SHLIB_LINK += -lsodium -lzstd -lxxhash -lpthread

# BLAKE3 from the official C sources in Debian's librust-blake3-dev, built
# into a static archive linked through SHLIB_LINK (not OBJS: PGXS would try
# to build LLVM bitcode for the assembly files and for files outside the
# tree).  On x86_64 all SIMD kernels are built and blake3_dispatch.c picks
# the best at run time; aarch64 uses NEON; elsewhere the portable code.
BLAKE3_SRC := $(shell printf '%s\n' $(wildcard /usr/share/cargo/registry/blake3-*/c) | sort -V | tail -n 1)
BLAKE3_BUILD = src/archive/blake3_build
BLAKE3_LIB = $(BLAKE3_BUILD)/libblake3.a
SHLIB_LINK += $(BLAKE3_LIB)

PG_CPPFLAGS = -I$(srcdir)/src -DBACKUP_OFFLINE_VERSION=\"$(EXTVERSION)\" \
	-Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers

EXTRA_CLEAN = $(DATA_built) META.json.tmp results regression.diffs regression.out
EXTRA_CLEAN += $(BLAKE3_BUILD)

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

# ---- BLAKE3 (see above; after PGXS, which sets CC) ----
BLAKE3_CSRC = blake3.c blake3_dispatch.c blake3_portable.c
BLAKE3_DEFS =
BLAKE3_MACHINE := $(shell $(CC) -dumpmachine 2>/dev/null)
ifneq ($(filter x86_64-%,$(BLAKE3_MACHINE)),)
BLAKE3_ASRC = blake3_sse2_x86-64_unix.S blake3_sse41_x86-64_unix.S \
	blake3_avx2_x86-64_unix.S blake3_avx512_x86-64_unix.S
else ifneq ($(filter aarch64-%,$(BLAKE3_MACHINE)),)
BLAKE3_CSRC += blake3_neon.c
BLAKE3_DEFS = -DBLAKE3_USE_NEON=1
else
BLAKE3_DEFS = -DBLAKE3_NO_SSE2 -DBLAKE3_NO_SSE41 -DBLAKE3_NO_AVX2 \
	-DBLAKE3_NO_AVX512 -DBLAKE3_USE_NEON=0
endif
BLAKE3_OBJS = $(addprefix $(BLAKE3_BUILD)/,$(BLAKE3_CSRC:.c=.o) $(BLAKE3_ASRC:.S=.o))

src/archive/digest.o src/archive/digest.bc: override CPPFLAGS += -I$(BLAKE3_SRC)
src/archive/digest.o src/archive/digest.bc: | $(BLAKE3_LIB)
$(shlib): $(BLAKE3_LIB)

ifeq ($(BLAKE3_SRC),)
$(BLAKE3_LIB):
	@echo "BLAKE3 C sources not found under /usr/share/cargo/registry/blake3-*/c: install librust-blake3-dev" >&2; exit 1
else
$(BLAKE3_LIB): $(BLAKE3_OBJS)
	rm -f $@
	$(AR) crs $@ $^

$(BLAKE3_BUILD)/%.o: $(BLAKE3_SRC)/%.c
	@mkdir -p $(BLAKE3_BUILD)
	$(CC) -fPIC -O3 $(BLAKE3_DEFS) -c -o $@ $<

$(BLAKE3_BUILD)/%.o: $(BLAKE3_SRC)/%.S
	@mkdir -p $(BLAKE3_BUILD)
	$(CC) -fPIC $(BLAKE3_DEFS) -c -o $@ $<
endif

# ---- fuzzing (not part of the extension build; see test/fuzz/README.md) ----
# test/fuzz/build/fuzz_reader: libFuzzer + ASan + UBSan over the archive
# format core (src/archive/format.c); test/fuzz/build/gen_corpus writes
# the corpus.  Needs clang-14 and libclang-rt-14-dev.
.PHONY: fuzz
fuzz: $(BLAKE3_LIB)
	BLAKE3_SRC="$(BLAKE3_SRC)" BLAKE3_LIB="$(BLAKE3_LIB)" PG_CONFIG="$(PG_CONFIG)" test/fuzz/build.sh
