#!/usr/bin/env bash
# Tampering with archive objects on disk is detected, reported with the
# index of the first failing chunk, and never yields data.
#
# One encrypted object of four 64 KiB chunks ("orig") is written; each case
# copies it (and its wrapped key) into a directory of its own, keeping the
# object's name, and damages the copy: a byte flipped in the header, a
# frame header, a payload, a frame digest or the trailer; a cut at a chunk
# boundary and inside a chunk; two frames swapped; a frame spliced in from
# another object; the key object deleted; the key file replaced.  For each,
# archive_get must fail (printing no data) and verify_object must report the
# chunk; frame-level damage must also be found without the key.  Finally
# the stored digest the writer reports must equal sha256sum, sha512sum and
# b3sum of the file.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/archive_tamper
PORT=$((BO_TEST_PORT + 19))
B=$DIR/backups
trap 'cluster_stop "$DIR"' EXIT
plan 49

cluster_start "$DIR" "$PORT" || exit 1
q "$DIR" "$PORT" postgres "CREATE EXTENSION backup_offline" >/dev/null || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'; head -c 32 /dev/urandom > '$DIR/keys/k2.key'"

# st CASE: the storage destination of a case's directory
st() { printf '{"type": "LOCAL_FILESYSTEM", "path": "%s/%s"}' "$B" "$1"; }

# The data: compressible text, then incompressible bytes; 4 chunks of 64 KiB
data_sql() {
	echo "substr(convert_to(repeat('visit note $1: client stable, medication given. ', 2500), 'UTF8')
		|| (SELECT string_agg(sha256(int4send(i * $2)), ''::bytea ORDER BY i) FROM generate_series(1, 3200) i), 1, 201608)"
}
put() { # put CASE NAME OPTIONS DATA-SEED
	q "$DIR" "$PORT" postgres "SELECT backup_offline.archive_put('$(st "$1")', '$2', $(data_sql "$4" "$4"), '$3')"
}
OPTS='{"chunkSize": 65536, "digest": "sha256", "keyId": "k1", "cipher": "xchacha20-poly1305"}'
put src orig "$OPTS" 1 >/dev/null || exit 1
put src other "$OPTS" 7 >/dev/null || exit 1
put plain orig '{"chunkSize": 65536, "digest": "sha256", "cipher": "none"}' 1 >/dev/null || exit 1
put wrongkek orig '{"chunkSize": 65536, "digest": "sha256", "keyId": "k2"}' 1 >/dev/null || exit 1

is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.verify_object('$(st src)', 'orig')->>'valid'")" true \
	"the original object verifies"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.archive_get('$(st src)', 'orig') = $(data_sql 1 1)")" t \
	"the original object reads back"

# Damage a copy of an object file: mutate.py FILE CASE [OTHER-FILE]
cat >"$DIR/mutate.py" <<'EOF'
import sys
path, case = sys.argv[1], sys.argv[2]
b = bytearray(open(path, 'rb').read())
dl = {1: 32, 2: 64, 3: 32}[b[19]]
def frames(b):
    off, fr = int.from_bytes(b[10:14], 'big'), []
    while int.from_bytes(b[off:off + 4], 'big') != 0xFFFFFFFF:
        end = off + 10 + int.from_bytes(b[off:off + 4], 'big') + dl
        fr.append((off, end))
        off = end
    return fr, off
fr, trailer = frames(b)
assert len(fr) == 4, len(fr)
if case == 'header':        # a byte of the nonce prefix
    b[45] ^= 0x01
elif case == 'frame_header':  # the mode byte of frame 2
    b[fr[2][0] + 9] ^= 0x01
elif case == 'payload':     # the middle of frame 1's payload
    b[(fr[1][0] + 10 + fr[1][1] - dl) // 2] ^= 0x40
elif case == 'frame_digest':  # the last byte of frame 3's digest
    b[fr[3][1] - 1] ^= 0x80
elif case == 'trailer':     # a byte of the plaintext digest in the trailer
    b[trailer + 20 + 5] ^= 0x01
elif case == 'cut_boundary':  # frames 0 and 1 only
    b = b[:fr[2][0]]
elif case == 'cut_inside':  # inside frame 1's payload
    b = b[:fr[1][0] + 100]
elif case == 'swap':        # frames 1 and 2 exchanged
    b = b[:fr[1][0]] + b[fr[2][0]:fr[2][1]] + b[fr[1][0]:fr[1][1]] + b[fr[2][1]:]
elif case == 'splice':      # frame 2 taken from another object
    o = bytearray(open(sys.argv[3], 'rb').read())
    ofr = frames(o)[0]
    b = b[:fr[2][0]] + o[ofr[2][0]:ofr[2][1]] + b[fr[2][1]:]
else:
    sys.exit('unknown case ' + case)
open(path, 'wb').write(b)
EOF

# damaged CASE: copy orig (and its key) into directory CASE and damage it
damaged() {
	as_pg mkdir -p "$B/$1"
	as_pg cp "$B/src/orig" "$B/src/orig.key.k1" "$B/$1/"
	as_pg python3 "$DIR/mutate.py" "$B/$1/orig" "$1" "$B/src/other"
}

# check_get CASE MESSAGE-PATTERN DESCRIPTION: archive_get fails with it and prints nothing
check_get() {
	local out err
	out=$(cluster_psql "$DIR" "$PORT" -d postgres -At -c \
		"SELECT length(backup_offline.archive_get('$(st "$1")', 'orig'))" 2>"$DIR/err")
	err=$(cat "$DIR/err")
	if [[ "$err" =~ $2 ]]; then ok 0 "$3: archive_get fails"; else ok 1 "$3: archive_get fails"; diag "got: $err"; fi
	is "$out" "" "$3: archive_get returns no data"
}

# check_verify CASE WITH-KEY CHUNK DESCRIPTION
check_verify() {
	is "$(q "$DIR" "$PORT" postgres "SELECT (v->>'valid') || ' ' || (v->>'firstFailingChunk')
		FROM backup_offline.verify_object('$(st "$1")', 'orig', $2) v")" "false $3" "$4"
}

# frame-level damage: detected with and without the key, at the chunk
for spec in header:0 frame_header:2 payload:1 frame_digest:3 cut_boundary:2 cut_inside:1 swap:1 splice:2; do
	c=${spec%%:*}
	n=${spec##*:}
	damaged "$c"
	check_get "$c" "ERROR:  object \"orig\" is corrupt at chunk $n"$'\n'"DETAIL:  " "$c"
	check_verify "$c" true "$n" "$c: verify_object reports chunk $n"
	check_verify "$c" false "$n" "$c: verify_object without the key reports chunk $n"
done

# the trailer: authenticated with the key (chunk index n = 4)
damaged trailer
check_get trailer 'ERROR:  object "orig" is corrupt at chunk 4.*DETAIL:  The trailer does not authenticate' trailer
check_verify trailer true 4 "trailer: verify_object reports chunk 4"

# without a cipher, a header edit is still caught (frame digests cover the header)
as_pg python3 "$DIR/mutate.py" "$B/plain/orig" header
check_get plain 'ERROR:  object "orig" is corrupt at chunk 0.*DETAIL:  The frame digest of chunk 0' "unencrypted header"
check_verify plain false 0 "unencrypted header: verify_object reports chunk 0"

# the key object deleted
as_pg mkdir -p "$B/nokey"
as_pg cp "$B/src/orig" "$B/nokey/"
check_get nokey 'ERROR:  object "orig" has no wrapped data key.*DETAIL:  No key object "orig.key.<key id>" holds its data key [0-9a-f]{32}\.' "deleted key object"
check_verify nokey true 0 "deleted key object: verify_object reports chunk 0"

# the key file replaced by another key
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k2.new' && mv '$DIR/keys/k2.new' '$DIR/keys/k2.key'"
check_get wrongkek 'ERROR:  no key-encryption key opens the data key of object "orig".*do not open their wrap \(wrong key, or a damaged key object\): "k2"\.' "wrong key file"
check_verify wrongkek true 0 "wrong key file: verify_object reports chunk 0"

# the writer's stored digest is what the standard tools print for the file
for d in sha256:sha256sum sha512:sha512sum blake3:b3sum; do
	alg=${d%%:*}
	tool=${d##*:}
	got=$(put digests "$alg" "{\"digest\": \"$alg\", \"keyId\": \"k1\", \"chunkSize\": 65536}" 3 | sed -n 's/.*"storedDigest": "\([0-9a-f]*\)".*/\1/p')
	want=$(as_pg "$tool" "$B/digests/$alg" | cut -d' ' -f1)
	is "$got" "$want" "the stored $alg digest equals $tool of the file"
done

exit $((TAP_FAILED > 0))
