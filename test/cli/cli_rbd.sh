#!/usr/bin/env bash
# cli_rbd.sh: ingest of Ceph "rbd diff v1" streams (engine/STREAM.md,
# last section), crafted byte by byte here as `rbd export-diff` writes
# them: a full diff, then an incremental one based on RP 1. Snapshot
# names are RP labels: the RP of a diff is labelled with its to-snapshot,
# and a diff's from-snapshot finds its base RP by label (no --base); a
# from-snapshot that no RP or several RPs carry is refused naming both; a
# diff without its end is refused.
. "$(dirname "$0")/lib.sh"

S=$T/store
KIB=1024

# le64 N / le32 N: little-endian bytes of N.
le() {
	local v=$1 n=$2 i
	for ((i = 0; i < n; i++)); do
		printf "\\$(printf %03o $(((v >> (8 * i)) & 255)))"
	done
}
le64() { le "$1" 8; }
le32() { le "$1" 4; }
# rec_name TAG NAME: an f or t record.
rec_name() { printf '%s' "$1"; le32 ${#2}; printf '%s' "$2"; }
# rec_w OFF FILE: a w record of FILE's bytes at OFF.
rec_w() { printf w; le64 "$1"; le64 "$(stat -c %s "$2")"; cat "$2"; }
rec_z() { printf z; le64 "$1"; le64 "$2"; }

run_ok "init" "$BV" init "$S" || done_testing
head -c $((64 * KIB)) /dev/urandom >"$T/d1"
head -c $((4 * KIB)) /dev/urandom >"$T/d2"
head -c 512 /dev/urandom >"$T/d3"

# The image after snap1 and after snap2, built the same way.
truncate -s 1M "$T/v1"
dd if="$T/d1" of="$T/v1" conv=notrunc status=none
dd if="$T/d2" of="$T/v1" bs=1K seek=512 conv=notrunc status=none
cp "$T/v1" "$T/v2"
dd if=/dev/zero of="$T/v2" bs=64K count=1 conv=notrunc status=none
dd if="$T/d3" of="$T/v2" bs=512 seek=256 conv=notrunc status=none

{
	printf 'rbd diff v1\n'
	rec_name t snap1
	printf s; le64 1048576
	rec_w 0 "$T/d1"
	rec_w $((512 * KIB)) "$T/d2"
	printf e
} >"$T/full.rbd"
{
	printf 'rbd diff v1\n'
	rec_name f snap1
	rec_name t snap2
	printf s; le64 1048576
	rec_z 0 $((64 * KIB))
	rec_w $((128 * KIB)) "$T/d3"
	printf e
} >"$T/incr.rbd"

run_ok "ingest a full rbd diff" "$BV" ingest "$S" --rp --format rbd-diff \
	--replica r1 "$T/full.rbd"
grep -q 'RP 1$' "$T/out"; ok $? "RP 1"
run_ok "export r1@1" "$BV" export "$S" r1@1 "$T/e1"
cmp "$T/e1" "$T/v1" >/dev/null; ok $? "r1@1 equals the image at snap1"
snapshot "$S" before

run_ok "rp ls" "$BV" rp ls "$S" r1 --json
grep -q '"label": "snap1"' "$T/out"; ok $? "RP 1 is labelled with the to-snapshot, snap1"
snapshot "$S" before

{
	printf 'rbd diff v1\n'
	rec_name f nosuch
	rec_name t snap9
	printf s; le64 1048576
	rec_z 0 $((64 * KIB))
	printf e
} >"$T/nosuch.rbd"
run_fail "a diff from a snapshot no RP is labelled with: refused" 1 \
	"snapshot 'nosuch'.*replica r1" \
	"$BV" ingest "$S" --rp --format rbd-diff --replica r1 "$T/nosuch.rbd"
same_snapshot "$S" before "store unchanged"
head -c $(($(stat -c %s "$T/incr.rbd") - 1)) "$T/incr.rbd" >"$T/cut.rbd"
run_fail "an rbd diff without its end: refused" 1 'truncat|ends inside|ends without|end of|ended' \
	"$BV" ingest "$S" --rp --format rbd-diff --replica r1 --base 1 "$T/cut.rbd"
same_snapshot "$S" before "store unchanged"
printf 'rbd diff v2\n' >"$T/v2.rbd"
run_fail "rbd diff v2: refused" 1 'v2|version|format|banner' \
	"$BV" ingest "$S" --rp --format rbd-diff --replica r1 --base 1 "$T/v2.rbd"
run_fail "an rbd diff read as a bvault stream: refused" 1 'magic|not a bvault' \
	"$BV" ingest "$S" --rp "$T/incr.rbd"
same_snapshot "$S" before "store unchanged"

run_ok_stdin "the incremental rbd diff from snap1, on stdin, without --base" \
	"$BV" ingest "$S" --rp --format rbd-diff --replica r1 - <"$T/incr.rbd"
grep -q 'RP 2$' "$T/out"; ok $? "RP 2: based on RP 1, labelled snap1"
run_ok "export r1@2" "$BV" export "$S" r1@2 "$T/e2"
cmp "$T/e2" "$T/v2" >/dev/null; ok $? "r1@2 equals the image at snap2"
run_ok "export r1@1 again" "$BV" export "$S" r1@1 "$T/e1b"
cmp "$T/e1b" "$T/v1" >/dev/null; ok $? "r1@1 unchanged"
run_ok "rp ls" "$BV" rp ls "$S" r1 --json
grep -q '"rp": 2,.*"label": "snap2"' "$T/out"; ok $? "RP 2 is labelled snap2"
snapshot "$S" before2

# The same diff again: RP 1 (snap1) is no longer the latest.
run_fail "a diff from a snapshot whose RP is not the latest: refused" 1 \
	'base is RP 1 but latest is RP 2' \
	"$BV" ingest "$S" --rp --format rbd-diff --replica r1 "$T/incr.rbd"
same_snapshot "$S" before2 "store unchanged"

# Two RPs labelled snap2: a diff from snap2 cannot tell which.
{
	printf 'rbd diff v1\n'
	rec_name f snap2
	rec_name t snap3
	printf s; le64 1048576
	rec_w $((256 * KIB)) "$T/d3"
	printf e
} >"$T/incr3.rbd"
run_ok "an RP labelled snap2 by hand" "$BV" rp create "$S" r1 --label snap2
snapshot "$S" before3
run_fail "a diff from a snapshot that labels two RPs: refused" 1 \
	"snapshot 'snap2'.*2 RPs of replica r1" \
	"$BV" ingest "$S" --rp --format rbd-diff --replica r1 "$T/incr3.rbd"
same_snapshot "$S" before3 "store unchanged"
run_ok "--base 3 says which" "$BV" ingest "$S" --rp --format rbd-diff \
	--replica r1 --base 3 --label mine "$T/incr3.rbd"
grep -q 'RP 4$' "$T/out"; ok $? "RP 4"
run_ok "rp ls" "$BV" rp ls "$S" r1 --json
grep -q '"rp": 4,.*"label": "mine"' "$T/out"; ok $? "--label wins over the to-snapshot"
cp "$T/v2" "$T/v3"
dd if="$T/d3" of="$T/v3" bs=1K seek=256 conv=notrunc status=none
run_ok "export r1@4" "$BV" export "$S" r1@4 "$T/e4"
cmp "$T/e4" "$T/v3" >/dev/null; ok $? "r1@4 equals the image at snap3"

# A to-snapshot name longer than an RP label (127 bytes) cannot label the
# RP: refused, unless --label names it.
LONG=$(printf 's%.0s' $(seq 1 200))
{
	printf 'rbd diff v1\n'
	rec_name t "$LONG"
	printf s; le64 1048576
	rec_w 0 "$T/d1"
	printf e
} >"$T/long.rbd"
snapshot "$S" before4
run_fail "a to-snapshot name longer than a label: refused" 1 \
	'to-snapshot .*longer than an RP label' \
	"$BV" ingest "$S" --rp --format rbd-diff --replica r2 "$T/long.rbd"
same_snapshot "$S" before4 "store unchanged"
run_ok "with --label it ingests" "$BV" ingest "$S" --rp --format rbd-diff \
	--replica r2 --label short "$T/long.rbd"

done_testing
