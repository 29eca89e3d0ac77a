#!/usr/bin/env bash
# Build the archive reader's libFuzzer target and the corpus generator:
#   test/fuzz/build/fuzz_reader   ASan + UBSan + libFuzzer
#   test/fuzz/build/gen_corpus    plain build of the same core (writes the corpus)
# Both compile src/archive/format.c, the format core the extension runs, as
# frontend code.  Normally run through "make fuzz", which first builds the
# BLAKE3 static library; BLAKE3_SRC (the BLAKE3 C sources, for blake3.h)
# and BLAKE3_LIB may be given, else they are found as the Makefile finds them.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=test/fuzz/build
CLANG=${CLANG:-clang-14}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BLAKE3_SRC=${BLAKE3_SRC:-$(printf '%s\n' /usr/share/cargo/registry/blake3-*/c | sort -V | tail -n 1)}
BLAKE3_LIB=${BLAKE3_LIB:-src/archive/blake3_build/libblake3.a}

for f in "$BLAKE3_SRC/blake3.h" "$BLAKE3_LIB"; do
	[ -e "$f" ] || { echo "build.sh: $f not found (install librust-blake3-dev; run \"make fuzz\")" >&2; exit 1; }
done
command -v "$CLANG" >/dev/null || { echo "build.sh: $CLANG not found (install clang-14)" >&2; exit 1; }

INC="-I$ROOT/src -I$ROOT/test/fuzz -I$BLAKE3_SRC -I$("$PG_CONFIG" --includedir-server)"
LIBDIR=$("$PG_CONFIG" --pkglibdir)
LIBS="$BLAKE3_LIB $LIBDIR/libpgcommon.a $LIBDIR/libpgport.a -lsodium -lzstd"
WARN="-Wall -Wextra -Werror -Wno-ignored-attributes -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers"
SRCS="src/archive/format.c test/fuzz/fuzz_support.c"

mkdir -p "$OUT"
$CLANG -g -O1 -DFRONTEND $WARN $INC \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer \
	-o "$OUT/fuzz_reader" $SRCS test/fuzz/fuzz_reader.c $LIBS
$CLANG -g -O2 -DFRONTEND $WARN $INC \
	-o "$OUT/gen_corpus" $SRCS test/fuzz/gen_corpus.c $LIBS
echo "build.sh: built $OUT/fuzz_reader and $OUT/gen_corpus"
