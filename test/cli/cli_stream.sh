#!/usr/bin/env bash
# cli_stream.sh: bad change streams are refused with a message naming the
# fault, and leave the store exactly as it was (INVARIANTS.md 2
# and 6): truncated, wrong magic, newer version, checksum mismatch, bytes
# after the trailer, base RP not the latest, extents past the disk size,
# unaligned extents, unknown record types, wrong replica.
#
# Crafted streams patch bytes at the offsets of engine/STREAM.md: for the
# replica "vm1" the header is 38 + 3 = 41 bytes, so the first record's
# type is byte 41, its offset bytes 42..49, its length 50..57, its data
# from 58.
. "$(dirname "$0")/lib.sh"

S=$T/store
MIB=1048576
TRUNC='truncat|ended early|ends inside|end of (file|stream)'

run_ok "init" "$BV" init "$S" || done_testing
mkimg "$T/img" 8
run_ok "mkstream full" "$BV" mkstream "$T/img" --replica vm1 --out "$T/full"
run_ok "ingest full (RP 1)" "$BV" ingest "$S" --rp "$T/full" || done_testing
poke "$T/img" $((2 * MIB)) 65536
echo "$((2 * MIB)) 65536" >"$T/ext"
run_ok "mkstream express full" "$BV" mkstream "$T/img" --replica vm1 --base 1 \
	--extents "$T/ext" --out "$T/s2"
run_ok "ingest express full (RP 2)" "$BV" ingest "$S" --rp "$T/s2" || done_testing
snapshot "$S" before

# The good stream every bad one is made from: base 2, first record data.
poke "$T/img" $((1 * MIB)) 65536
poke "$T/img" $((5 * MIB)) 131072
printf '%s\n' "$((1 * MIB)) 65536" "$((5 * MIB)) 131072" >"$T/ext3"
cp --sparse=always "$T/img" "$T/v3"
run_ok "mkstream the good stream" "$BV" mkstream "$T/img" --replica vm1 \
	--base 2 --extents "$T/ext3" --out "$T/good"
L=$(stat -c %s "$T/good")
[ "$(head -c 8 "$T/good" | od -An -tx1 | tr -d ' \n')" = 42565354524d0001 ]
ok $? "stream starts with the STREAM.md magic"
[ "$(od -An -c -j 41 -N1 "$T/good" | tr -d ' ')" = D ]
ok $? "first record is a data record at byte 41"

# bad NAME RE: ingest $T/NAME must fail with exit 1 and match RE, and the
# store must be unchanged.
bad() {
	run_fail "$1: refused" 1 "$2" "$BV" ingest "$S" --rp "$T/$1"
	same_snapshot "$S" before "$1: store unchanged"
}

# Truncation anywhere.
: >"$T/empty"
bad empty "$TRUNC"
head -c 20 "$T/good" >"$T/cut-header"
bad cut-header "$TRUNC"
head -c 50 "$T/good" >"$T/cut-record"
bad cut-record "$TRUNC"
head -c $((L / 2)) "$T/good" >"$T/cut-data"
bad cut-data "$TRUNC"
head -c $((L - 25)) "$T/good" >"$T/cut-trailer"
bad cut-trailer "$TRUNC|trailer"
head -c $((L - 4)) "$T/good" >"$T/cut-in-trailer"
bad cut-in-trailer "$TRUNC"
run_fail "truncated through stdin: refused" 1 "$TRUNC" \
	sh -c '"$1" ingest "$2" --rp - <"$3"' sh "$BV" "$S" "$T/cut-data"
same_snapshot "$S" before "truncated through stdin: store unchanged"

# Damaged bytes.
cp "$T/good" "$T/magic"; flip_byte "$T/magic" 0
bad magic 'magic|not a bvault stream'
cp "$T/good" "$T/text"; set_byte "$T/text" 6 10
bad text 'magic|not a bvault stream'
cp "$T/good" "$T/version"; set_byte "$T/version" 8 2
bad version 'version|format|upgrade'
cp "$T/good" "$T/flags"; set_byte "$T/flags" 10 1
bad flags 'flag|format|upgrade'
cp "$T/good" "$T/data-bit"; flip_byte "$T/data-bit" $((58 + 1000))
bad data-bit 'checksum'
cp "$T/good" "$T/sum-bit"; flip_byte "$T/sum-bit" $((L - 1))
bad sum-bit 'checksum'
cp "$T/good" "$T/count"; flip_byte "$T/count" $((L - 24))
bad count 'checksum|count'
cp "$T/good" "$T/base-bit"; set_byte "$T/base-bit" 24 1
bad base-bit 'checksum|base'
cp "$T/good" "$T/extra"; printf x >>"$T/extra"
bad extra 'after|trailing|follow|extra|end'
cp "$T/good" "$T/type"; set_byte "$T/type" 41 81
bad type 'type|record|unknown'

# Crafted extents, refused by the record check before the checksum.
cp "$T/good" "$T/unaligned"; set_byte "$T/unaligned" 42 1
bad unaligned '512|align'
cp "$T/good" "$T/past"; set_byte "$T/past" 44 128 # off = 8 MiB, the disk size
bad past 'past|range|beyond|outside|size'
cp "$T/good" "$T/overflow"; set_byte "$T/overflow" 49 255
bad overflow 'overflow|past|range|size'
cp "$T/good" "$T/zero-len"
for i in 50 51 52 53 54 55 56 57; do set_byte "$T/zero-len" $i 0; done
bad zero-len 'empty|zero|length|len'

# Base RP not the latest, or unknown.
run_ok "mkstream with base 1" "$BV" mkstream "$T/img" --replica vm1 --base 1 \
	--extents "$T/ext3" --out "$T/old-base"
bad old-base 'base'
grep -q 'vm1' "$T/err"; ok $? "old-base: message names the replica"
run_ok "mkstream with base 7" "$BV" mkstream "$T/img" --replica vm1 --base 7 \
	--extents "$T/ext3" --out "$T/future-base"
bad future-base 'base'
run_ok "mkstream with base 0 (a full claim on a replica with RPs)" \
	"$BV" mkstream "$T/img" --replica vm1 --base 0 --extents "$T/ext3" \
	--out "$T/zero-base"
bad zero-base 'base'

# The replica: a name the store does not have (with a base), or a
# --replica that does not match the stream.
run_ok "mkstream for an unknown replica" "$BV" mkstream "$T/img" \
	--replica nosuch --base 2 --extents "$T/ext3" --out "$T/unknown"
bad unknown 'nosuch'
run_fail "--replica not matching the stream: refused" 1 'vm1|other|match' \
	"$BV" ingest "$S" --rp --replica other "$T/good"
same_snapshot "$S" before "--replica not matching: store unchanged"

# rbd-diff garbage and a bvault stream read as rbd-diff.
run_fail "rbd-diff: a bvault stream refused" 1 'banner|rbd|diff|format' \
	"$BV" ingest "$S" --format rbd-diff --replica vm1 --base 2 "$T/good"
same_snapshot "$S" before "rbd-diff garbage: store unchanged"

# Two streams of one replica in one session are refused (one version
# per replica per commit), and so is a good stream followed by a bad one.
run_fail "two streams of one replica: refused" 1 'twice|vm1' \
	"$BV" ingest "$S" --rp "$T/good" "$T/good"
same_snapshot "$S" before "two streams of one replica: store unchanged"

# And the good stream itself applies.
run_ok "the good stream ingests" "$BV" ingest "$S" --rp "$T/good"
grep -q 'RP 3$' "$T/out"; ok $? "good stream makes RP 3"
run_ok "export vm1@3" "$BV" export "$S" vm1@3 "$T/e3"
cmp "$T/e3" "$T/v3" >/dev/null; ok $? "vm1@3 equals the image"
run_ok "export vm1@2 still" "$BV" export "$S" vm1@2 "$T/e2"
cmp "$T/e2" "$T/snap-before/vm1.latest" >/dev/null; ok $? "vm1@2 unchanged by RP 3"

# A stream whose header claims another disk size: engine/STREAM.md makes
# the receiver adopt it (a grown disk needs no S record), so a 16 MiB
# image's stream grows the 8 MiB replica, and its extent past 8 MiB is
# inside the new size. An extent past the header's size can only be
# crafted (the "past" case above); mkstream refuses to make one (below).
cp --sparse=always "$T/img" "$T/big"
truncate -s 16M "$T/big"
poke "$T/big" $((12 * MIB)) 65536
echo "$((12 * MIB)) 65536" >"$T/ext-big"
run_ok "mkstream of a bigger image" "$BV" mkstream "$T/big" --replica vm1 \
	--base 3 --extents "$T/ext-big" --out "$T/bigger"
run_ok "the bigger stream grows the replica" "$BV" ingest "$S" --rp "$T/bigger"
run_ok "export vm1@4" "$BV" export "$S" vm1@4 "$T/e4"
cmp "$T/e4" "$T/big" >/dev/null; ok $? "vm1@4 equals the grown image"
run_ok "export vm1@3 after the growth" "$BV" export "$S" vm1@3 "$T/e3b"
cmp "$T/e3b" "$T/v3" >/dev/null; ok $? "vm1@3 keeps its size and bytes"
run_fail "mkstream --extents past the image: refused" 1 'line 1.*past' \
	"$BV" mkstream "$T/img" --replica vm1 --base 2 --extents "$T/ext-big" \
	--out "$T/never"
[ ! -e "$T/never" ]; ok $? "mkstream leaves no partial output"
echo "$((2 * MIB + 100)) 512" >"$T/ext-unal"
run_fail "mkstream --extents unaligned: refused" 1 'line 1.*512' \
	"$BV" mkstream "$T/img" --replica vm1 --base 2 --extents "$T/ext-unal" \
	--out "$T/never"

done_testing
