#!/usr/bin/env bash
# cli_restore.sh: bvault restore (and export, which shares its
# destinations) to every kind of DEST, bit for bit with the source image:
# a regular file, a loop device (skipped when losetup cannot make one), an
# NBD export served by nbdkit's memory plugin (skipped without nbdkit and
# nbdcopy), standard output into a pipe; --delta writes only the chunks
# that changed (the count it prints, and the result, are checked);
# --bandwidth holds (loosely); 8 restores at once; and the refusals: a bad
# DEST, a device too small, an NBD server gone, an RP that does not exist,
# a terminal, a delta with nothing to compare: each a clean message, exit
# 1 or 2, nothing created, and the store unchanged (it is read only).
. "$(dirname "$0")/lib.sh"

S=$T/s
LOOPS=
NBDPID=
cleanup() {
	for l in $LOOPS; do losetup -d "$l" 2>/dev/null; done
	[ -n "$NBDPID" ] && kill "$NBDPID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

CS=65536
mkimg "$T/img1" 8
# Size not a multiple of the chunk size: a partial last chunk.
truncate -s $((8 * 1048576 + 3 * 512)) "$T/img1"
poke "$T/img1" $((8 * 1048576)) 1536
cp "$T/img1" "$T/img2"
# RP 2: three chunks rewritten, one zeroed, one hole written.
poke "$T/img2" $((3 * CS)) $CS
poke "$T/img2" $((10 * CS + 4096)) 512
poke "$T/img2" $((100 * CS)) $CS
poke_zero "$T/img2" $((20 * CS)) $CS
poke "$T/img2" $((120 * CS)) 4096
printf '%s %s\n' $((3 * CS)) $CS $((10 * CS)) $CS $((100 * CS)) $CS \
	$((20 * CS)) $CS $((120 * CS)) $CS >"$T/ext"
CHANGED=5

"$BV" init "$S" >/dev/null
"$BV" mkstream "$T/img1" --replica vm --out "$T/s1" &&
	"$BV" ingest "$S" --rp "$T/s1" >/dev/null &&
	"$BV" mkstream "$T/img2" --replica vm --base 1 --extents "$T/ext" \
		--out "$T/s2" &&
	"$BV" ingest "$S" --rp "$T/s2" >/dev/null
ok $? "a store with vm@1 and vm@2 (5 chunks changed)"
NCH=$(((8 * 1048576 + 1536 + CS - 1) / CS))
snapshot "$S" before

# ---- regular files ------------------------------------------------------

run_ok "restore vm@1 to a new file" "$BV" restore "$S" vm@1 "$T/f1"
cmp -s "$T/img1" "$T/f1"
ok $? "the file is vm@1 bit for bit"
ok $([ "$(stat -c %a "$T/f1")" = 600 ]; echo $?) "the file is made 0600"
grep -q "wrote .* of $NCH chunks" "$T/out"
ok $? "it says how many chunks it wrote"
run_ok "restore vm@2 over an existing file" "$BV" restore "$S" vm@latest "$T/f1"
cmp -s "$T/img2" "$T/f1"
ok $? "the file is vm@2 bit for bit (truncated first)"
alloc1=$(stat -c %b "$T/f1")
ok $([ $((alloc1 * 512)) -lt $((7 * 1048576)) ]; echo $?) \
	"zero chunks are holes ($((alloc1 / 2)) KiB allocated)"

# ---- delta ------------------------------------------------------------------

"$BV" restore "$S" vm@1 "$T/d" >/dev/null 2>&1
run_ok "restore --delta of vm@2 over a copy of vm@1" \
	"$BV" restore "$S" vm@2 "$T/d" --delta
cmp -s "$T/img2" "$T/d"
ok $? "after the delta the file is vm@2 bit for bit"
grep -q "wrote $CHANGED of $NCH chunks.*skipped $((NCH - CHANGED)) unchanged" "$T/out"
ok $? "the delta wrote only the $CHANGED changed chunks ($(cat "$T/out"))"
run_ok "a second delta of the same RP" "$BV" restore "$S" vm@2 "$T/d" --delta
grep -q "wrote 0 of $NCH chunks" "$T/out"
ok $? "writes nothing ($(cat "$T/out"))"
# A copy with a different size: set to the RP's size, then compared.
cp "$T/img1" "$T/d2"
truncate -s 20M "$T/d2"
run_ok "a delta over a longer file" "$BV" restore "$S" vm@2 "$T/d2" --delta
cmp -s "$T/img2" "$T/d2"
ok $? "it is cut to the RP's size and is vm@2 bit for bit"
# Damage in a chunk that did not change between RPs is found and fixed.
cp "$T/img2" "$T/d3"
poke "$T/d3" $((50 * CS + 100)) 8
poke_zero "$T/d3" $((40 * CS)) $CS
run_ok "a delta over a copy with two stray changes" \
	"$BV" restore "$S" vm@2 "$T/d3" --delta
cmp -s "$T/img2" "$T/d3" && grep -q "wrote 2 of" "$T/out"
ok $? "both are found and rewritten ($(cat "$T/out"))"

# ---- standard output, FIFO, export --------------------------------------

"$BV" restore "$S" vm@2 - 2>"$T/err" | cmp -s - "$T/img2"
ok $? "restore to standard output (a pipe) is vm@2 bit for bit"
grep -q "restored vm@2 to standard output" "$T/err"
ok $? "its summary goes to stderr, not into the image"
"$BV" restore "$S" vm@2 - >"$T/redir" 2>/dev/null && cmp -s "$T/redir" "$T/img2"
ok $? "restore to standard output redirected to a file"
echo keep >"$T/app"
run_fail "standard output opened for appending (>>) is refused" 1 \
	"opened for appending" sh -c "'$BV' restore '$S' vm@2 - >>'$T/app'"
ok $([ "$(cat "$T/app")" = keep ]; echo $?) "and the file is untouched"
"$BV" export "$S" vm@1 - | cmp -s - "$T/img1"
ok $? "export STORE vm@1 - writes standard output"
ok $([ ! -e ./- ] && [ ! -e "$T/-" ]; echo $?) "and makes no file named '-'"
"$BV" export "$S" vm@1 /dev/stdout | cmp -s - "$T/img1"
ok $? "export to /dev/stdout (a pipe) works"
mkfifo "$T/fifo"
cmp -s "$T/fifo" "$T/img2" &
cpid=$!
"$BV" restore "$S" vm@2 "$T/fifo" >/dev/null 2>&1
wait $cpid
ok $? "restore to a FIFO is vm@2 bit for bit"
run_ok "restore to /dev/null" "$BV" restore "$S" vm@2 /dev/null

# ---- a loop device ---------------------------------------------------------

truncate -s 9M "$T/loopfile"
head -c 9M /dev/urandom >"$T/loopfile"
L=$(losetup -f --show "$T/loopfile" 2>/dev/null)
if [ -n "$L" ] && [ -b "$L" ]; then
	LOOPS="$LOOPS $L"
	run_ok "restore vm@1 to a loop device" "$BV" restore "$S" vm@1 "$L"
	cmp -s -n $((8 * 1048576 + 1536)) "$L" "$T/img1"
	ok $? "the device holds vm@1 bit for bit (zeros written over old data)"
	run_ok "restore --delta of vm@2 to the device" \
		"$BV" restore "$S" vm@2 "$L" --delta
	cmp -s -n $((8 * 1048576 + 1536)) "$L" "$T/img2" &&
		grep -q "wrote $CHANGED of" "$T/out"
	ok $? "the device holds vm@2, $CHANGED chunks written"
	head -c 4M /dev/urandom >"$T/smallfile"
	cp "$T/smallfile" "$T/small.before"
	L2=$(losetup -f --show "$T/smallfile" 2>/dev/null)
	LOOPS="$LOOPS $L2"
	run_fail "a device too small is refused" 1 "holds 4194304 bytes.*needs" \
		"$BV" restore "$S" vm@1 "$L2"
	losetup -d "$L2" 2>/dev/null
	cmp -s "$T/smallfile" "$T/small.before"
	ok $? "and nothing is written to it"
else
	for i in 1 2 3 4 5 6; do
		skip "loop device" "losetup cannot make one here"
	done
fi

# ---- NBD -------------------------------------------------------------------

if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null; then
	SOCK=$T/nbd.sock
	URI="nbd+unix:///?socket=$SOCK"
	nbdkit -U "$SOCK" -P "$T/nbd.pid" -f memory 16M &
	NBDPID=$!
	for i in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
	run_ok "restore vm@1 to an NBD export (nbdkit memory)" \
		"$BV" restore "$S" vm@1 "$URI"
	nbdcopy "$URI" "$T/n1" && cmp -s -n $((8 * 1048576 + 1536)) "$T/n1" "$T/img1"
	ok $? "the export holds vm@1 bit for bit"
	run_ok "restore --delta of vm@2 to the NBD export" \
		"$BV" restore "$S" vm@2 "$URI" --delta
	grep -q "wrote $CHANGED of" "$T/out"
	ok $? "it wrote the $CHANGED changed chunks ($(cat "$T/out"))"
	rm -f "$T/n1"
	nbdcopy "$URI" "$T/n1" && cmp -s -n $((8 * 1048576 + 1536)) "$T/n1" "$T/img2"
	ok $? "the export holds vm@2 bit for bit"
	run_ok "export to an NBD URI" "$BV" export "$S" vm@1 "$URI"
	kill "$NBDPID"
	wait "$NBDPID" 2>/dev/null
	NBDPID=
	run_fail "an NBD server that is gone" 1 "nbd\+unix.*cannot connect" \
		"$BV" restore "$S" vm@1 "$URI"
	rm -f "$SOCK"
	nbdkit -U "$SOCK" -f memory 1M &
	NBDPID=$!
	for i in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
	run_fail "an NBD export too small" 1 "holds 1048576 bytes.*needs" \
		"$BV" restore "$S" vm@1 "$URI"
	kill "$NBDPID"
	wait "$NBDPID" 2>/dev/null
	NBDPID=
	# A server that goes away in the middle: writes slowed to 0.2 s
	# each, killed after a second.
	rm -f "$SOCK"
	nbdkit -U "$SOCK" -f --filter=delay memory 16M wdelay=200ms &
	NBDPID=$!
	for i in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
	(sleep 1; kill -9 "$NBDPID") &
	killer=$!
	run_fail "an NBD server killed during the restore" 1 \
		"nbd\+unix.*(write|flush|zero)" "$BV" restore "$S" vm@1 "$URI"
	wait "$killer"
	wait "$NBDPID" 2>/dev/null
	NBDPID=
else
	for i in 1 2 3 4 5 6 7 8 9 10; do skip "NBD" "nbdkit or nbdcopy missing"; done
fi

# ---- bandwidth ------------------------------------------------------------

head -c 8M /dev/urandom >"$T/rnd"
"$BV" mkstream "$T/rnd" --replica rnd --out "$T/s3" &&
	"$BV" ingest "$S" --rp "$T/s3" >/dev/null
t0=$(date +%s%N)
run_ok "restore of 8 MiB at --bandwidth 2M" \
	"$BV" restore "$S" rnd@1 "$T/bw" --bandwidth 2M
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
cmp -s "$T/rnd" "$T/bw" && [ $ms -gt 2000 ]
ok $? "takes more than 2 s (${ms} ms) and is right"
run_fail "a bad --bandwidth" 2 "bad size" \
	"$BV" restore "$S" rnd@1 "$T/bw2" --bandwidth fast
run_fail "--bandwidth 0" 2 "above 0" \
	"$BV" restore "$S" rnd@1 "$T/bw2" --bandwidth 0
ok $([ ! -e "$T/bw2" ]; echo $?) "nothing created by them"
snapshot "$S" before

# ---- 8 at once ------------------------------------------------------------

pids=
for i in 1 2 3 4 5 6 7 8; do
	if [ $((i % 2)) = 0 ]; then rp=1; else rp=2; fi
	"$BV" restore "$S" vm@$rp "$T/par$i" >"$T/par$i.out" 2>&1 &
	pids="$pids $!"
done
bad=0
for p in $pids; do wait "$p" || bad=1; done
for i in 1 2 3 4 5 6 7 8; do
	if [ $((i % 2)) = 0 ]; then rp=1; else rp=2; fi
	cmp -s "$T/par$i" "$T/img$rp" || { bad=1; diag "restore $i differs"; }
done
ok $bad "8 restores at once from one store, each bit for bit"

# ---- beside a running writer ------------------------------------------

BVD=$(dirname "$BV")/bvaultd
if [ -x "$BVD" ]; then
	"$BVD" "$S" --unix "$T/bvd.sock" 2>"$T/bvd.log" &
	BVDPID=$!
	for i in $(seq 50); do [ -S "$T/bvd.sock" ] && break; sleep 0.1; done
	run_ok "restore while bvaultd holds the store for writing" \
		"$BV" restore "$S" vm@2 "$T/beside"
	cmp -s "$T/beside" "$T/img2"
	ok $? "and it is vm@2 bit for bit"
	kill -TERM "$BVDPID"
	wait "$BVDPID"
	ok $? "bvaultd ends cleanly after it"
else
	for i in 1 2 3; do skip "bvaultd" "not built"; done
fi

# ---- refusals ------------------------------------------------------------

mkdir "$T/dir"
run_fail "DEST a directory" 1 "dir: is a directory" \
	"$BV" restore "$S" vm@1 "$T/dir"
run_fail "DEST in a directory that does not exist" 1 "no such file" \
	"$BV" restore "$S" vm@1 "$T/nodir/x"
run_fail "an RP that does not exist" 1 "no recovery point 9" \
	"$BV" restore "$S" vm@9 "$T/x"
ok $([ ! -e "$T/x" ]; echo $?) "creates nothing"
run_fail "a replica that does not exist" 1 "no such replica" \
	"$BV" restore "$S" nope@1 "$T/x"
run_fail "--delta with no DEST to compare" 1 "does not exist.*delta" \
	"$BV" restore "$S" vm@1 "$T/x" --delta
ok $([ ! -e "$T/x" ]; echo $?) "creates nothing"
run_fail "--delta to standard output" 1 "delta" \
	"$BV" restore "$S" vm@1 - --delta
run_fail "--delta to a FIFO" 1 "regular file or a block device" \
	"$BV" restore "$S" vm@1 "$T/fifo" --delta
run_fail "a URI that is not NBD" 2 "not an NBD URI" \
	"$BV" restore "$S" vm@1 "http://example/x"
run_fail "a bad REPLICA@RP" 2 "bad REPLICA@RP" \
	"$BV" restore "$S" vm "$T/x"
run_fail "a missing DEST" 2 "missing DEST" "$BV" restore "$S" vm@1
run_fail "an unknown option" 2 "unknown option" \
	"$BV" restore "$S" vm@1 "$T/x" --fast
run_fail "export takes no --delta" 2 "unknown option" \
	"$BV" export "$S" vm@1 "$T/x" --delta
run_fail "a store that is not one" 1 "not a bvault store|no store" \
	"$BV" restore "$T/dir" vm@1 "$T/x"
ok $([ ! -e "$T/x" ]; echo $?) "none of them created DEST"
if command -v script >/dev/null; then
	script -qec "$BV restore $S vm@1 -" /dev/null >"$T/tty.out" 2>&1
	rc=$?
	[ $rc = 1 ] && grep -q "refusing to write a disk image to a terminal" "$T/tty.out"
	ok $? "standard output a terminal is refused (exit $rc)"
	script -qec "$BV restore $S vm@1 /dev/tty" /dev/null >"$T/tty.out" 2>&1
	rc=$?
	[ $rc = 1 ] && grep -q "is a terminal" "$T/tty.out"
	ok $? "DEST /dev/tty is refused (exit $rc)"
	script -qec "$BV restore $S vm@1 $T/ttyf" /dev/null >"$T/tty.out" 2>&1
	grep -q 'restore \[#*\] 100%' "$T/tty.out" && cmp -s "$T/ttyf" "$T/img1"
	ok $? "on a terminal it draws a progress bar to 100 %"
else
	for i in 1 2 3; do skip "terminal" "script(1) missing"; done
fi
same_snapshot "$S" before "the store is as it was: restore only reads"

done_testing
