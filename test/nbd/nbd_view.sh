#!/usr/bin/env bash
# nbd_view.sh: views served read-write by the plugin (export view:NAME,
# or view=NAME), written by qemu-io and nbdcopy, read by nbdcopy,
# nbdinfo and qemu-img:
#  - a view advertises write, flush, FUA, trim, zero, fast zero and
#    multi-conn; qemu-io writes data, write-zeroes and a discard (also
#    across a 4 KiB overlay block) and reads them back on a new
#    connection; the map shows the zeroed and trimmed ranges as holes;
#  - nbdkit restarted: a new connection reads the same bytes;
#  - nbdcopy with 4 connections writes a whole image into the view, and
#    it reads back equal;
#  - the RP it came from is unchanged, over NBD and by bvault export;
#  - unaligned writes fail with EINVAL and the server goes on; nbdkit
#    -r serves it read-only; a second nbdkit is refused the view while
#    the first has it open; view= fixes the export;
#  - a view of an RP committed after nbdkit started is served.
# Skips when libbvault has no views (nbdkit --dump-plugin says).
# Usage: nbd_view.sh BVAULT PLUGIN NBD_CLIENT
. "$(dirname "$0")/lib.sh"
need nbdcopy qemu-io qemu-img
if ! LD_PRELOAD=$PRELOAD ASAN_OPTIONS=detect_leaks=0 nbdkit --dump-plugin "$PLUGIN" 2>/dev/null | grep -q '^bvault_views=yes'; then
	echo "1..0 # SKIP this build of libbvault has no views"
	exit 0
fi

copy_cmp() {
	rm -f "$T/copy"
	nbdcopy "$(uri "$1")" "$T/copy" 2>"$T/err" && cmp "$T/copy" "$2" >&2
	ok $? "nbdcopy $1 equals ${2##*/}"
	[ -s "$T/err" ] && sed 's/^/# /' "$T/err"
	return 0
}

run_ok "init" "$BV" init "$S" || done_testing
mkimg "$T/img" 8
cp --sparse=always "$T/img" "$T/v1"
"$BV" mkstream "$T/img" --replica vm --out "$T/s1" &&
	"$BV" ingest "$S" --rp "$T/s1" >/dev/null
ok $? "RP 1 ingested"
run_ok "view v1 of vm@1 made" "$NBDC" view-create "$S" v1 vm 1

start_nbdkit || done_testing
nbdinfo "$(uri view:v1)" >"$T/info" 2>"$T/err"
ok $? "nbdinfo view:v1"
for f in "is_read_only: false" "can_flush: true" "can_fua: true" \
	"can_trim: true" "can_zero: true" "can_fast_zero: true" \
	"can_multi_conn: true" "export-size: 8388608"; do
	grep -q "$f" "$T/info"
	ok $? "view:v1 has $f"
done
nbdinfo --list "$(uri '')" >"$T/list" 2>"$T/err" &&
	grep -q 'export="view:v1"' "$T/list" &&
	grep -q 'view of vm@1' "$T/list"
ok $? "the list has view:v1, a view of vm@1"

# The same changes into the view (qemu-io) and into a copy of the image.
qemu-io -f raw -c 'write -P 0xab 0 64k' -c 'write -z 1M 64k' \
	-c 'discard 2M 64k' -c 'write -P 0xcd 4193792 2048' -c 'flush' \
	"$(uri view:v1)" >"$T/out" 2>&1
ok $? "qemu-io writes, write-zeroes, discards and flushes into view:v1"
[ $? -eq 0 ] || sed 's/^/# /' "$T/out"
cp "$T/v1" "$T/exp"
patch_exp() { # OFF LEN BYTE
	head -c "$2" /dev/zero | tr '\0' "$3" |
		dd of="$T/exp" bs=512 seek=$(($1 / 512)) conv=notrunc status=none
}
patch_exp 0 65536 '\253'
patch_exp 1048576 65536 '\0'
patch_exp 2097152 65536 '\0'
patch_exp 4193792 2048 '\315'
copy_cmp view:v1 "$T/exp"
qemu-img compare -f raw -F raw "$(uri view:v1)" "$T/exp" >"$T/out" 2>&1
ok $? "qemu-img compare view:v1 with the changed image"
nbdinfo --map "$(uri view:v1)" >"$T/map" 2>"$T/err"
awk '$3 == 3 && $1 <= 1048576 && $1 + $2 >= 1114112 { a = 1 }
     $3 == 3 && $1 <= 2097152 && $1 + $2 >= 2162688 { b = 1 }
     END { exit !(a && b) }' "$T/map"
ok $? "the map shows the zeroed and the trimmed 64 KiB as holes"
copy_cmp vm@1 "$T/v1"

"$NBDC" unaligned "$(uri view:v1)" 2>"$T/err"
ok $? "unaligned write and write-zeroes to the view fail with EINVAL"
[ $? -eq 0 ] || sed 's/^/# /' "$T/err"
grep -q "view v1.*512\|multiple of 512\|not a multiple\|align" "$NLOG"
ok $? "and the log says why"

# A second nbdkit is refused the view while this one has it open.
rm -f "$T/ready" "$T/go"
"$NBDC" hold "$(uri view:v1)" "$T/exp" "$T/ready" "$T/go" 2>"$T/hold.err" &
HOLD=$!
for _ in $(seq 1 600); do [ -e "$T/ready" ] && break; sleep 0.1; done
TMPDIR=$NTMP LD_PRELOAD=$PRELOAD ASAN_OPTIONS=detect_leaks=0 \
	nbdkit -f -U "$T/b.sock" -P "$T/b.pid" "$PLUGIN" store="$S" \
	2>"$T/b.log" &
B=$!
for _ in $(seq 1 600); do [ -s "$T/b.pid" ] && break; sleep 0.1; done
nbdinfo --size "nbd+unix:///view:v1?socket=$T/b.sock" >/dev/null 2>&1
[ $? -ne 0 ] && grep -qi "view.*v1.*\(busy\|another process\|open\)" "$T/b.log"
ok $? "a second nbdkit is refused view:v1 while the first has it open"
[ $? -eq 0 ] || sed 's/^/# /' "$T/b.log"
[ "$(nbdinfo --size "nbd+unix:///vm@1?socket=$T/b.sock" 2>/dev/null)" = 8388608 ]
ok $? "and serves vm@1 beside it"
kill -TERM $B; wait $B
touch "$T/go"
wait $HOLD
ok $? "the holding connection read the whole changed view"
stop_nbdkit

start_nbdkit || done_testing
copy_cmp view:v1 "$T/exp"
ok $? "after nbdkit restarted, a new connection reads the same view"
# A whole image written with four connections at once.
head -c $((8 * 1048576)) /dev/urandom >"$T/rand"
truncate -s 2M "$T/rand.tmp" && rm -f "$T/rand.tmp"
nbdcopy --connections=4 --requests=16 "$T/rand" "$(uri view:v1)" 2>"$T/err"
ok $? "nbdcopy writes 8 MiB into view:v1 over 4 connections"
copy_cmp view:v1 "$T/rand"
copy_cmp vm@1 "$T/v1"
stop_nbdkit
"$BV" export "$S" vm@1 "$T/x1" >/dev/null 2>&1 && cmp "$T/x1" "$T/v1"
ok $? "bvault export vm@1 is still the image: the view never wrote the RP"
read -r vsize vwritten vuse < <("$NBDC" view-info "$S" v1)
[ "$vsize" = 8388608 ] && [ "$vwritten" -gt 0 ] && [ "$vuse" = 0 ]
ok $? "view-info: 8 MiB, $vwritten bytes written, not in use after nbdkit stopped"

# Read-only: nbdkit -r.
start_nbdkit -r || done_testing
nbdinfo "$(uri view:v1)" 2>/dev/null | grep -q "is_read_only: true"
ok $? "nbdkit -r serves view:v1 read-only"
"$NBDC" refused "$(uri view:v1)" 2>"$T/err"
ok $? "and refuses writes to it with EPERM/EROFS"
copy_cmp view:v1 "$T/rand"
stop_nbdkit

# view= serves one view; an RP committed after the start gets a view
# that the running server serves.
start_nbdkit view=v1 || done_testing
copy_cmp '' "$T/rand"
"$NBDC" write "$(uri '')" 0 4096 0x42 2>"$T/err"
ok $? "a write through the default export of view=v1"
nbd_fail "view=v1: vm@1 is refused" "this server serves 'view:v1' only" \
	nbdinfo --size "$(uri vm@1)"
stop_nbdkit
start_nbdkit || done_testing
poke "$T/img" 0 65536
cp --sparse=always "$T/img" "$T/v2"
"$BV" mkstream "$T/img" --replica vm --base 1 --out "$T/s2" &&
	"$BV" ingest "$S" --rp "$T/s2" >/dev/null &&
	"$BV" view create "$S" v2 --from vm@2 >/dev/null
ok $? "RP 2 and its view v2 (bvault view create) made while nbdkit runs"
copy_cmp view:v2 "$T/v2"
# While a connection holds v2, bvault view ls says it is in use and
# view rm is refused.
rm -f "$T/ready" "$T/go"
"$NBDC" hold "$(uri view:v2)" "$T/v2" "$T/ready" "$T/go" 2>"$T/hold.err" &
HOLD=$!
for _ in $(seq 1 600); do [ -e "$T/ready" ] && break; sleep 0.1; done
"$BV" view ls "$S" >"$T/vls" 2>&1 && grep -E '^v2 .*in use' "$T/vls" >/dev/null
ok $? "bvault view ls shows v2 in use while nbdkit serves it"
[ $? -eq 0 ] || sed 's/^/# /' "$T/vls"
"$BV" view rm "$S" v2 >/dev/null 2>&1
[ $? -ne 0 ]
ok $? "bvault view rm v2 is refused meanwhile"
touch "$T/go"
wait $HOLD
ok $? "the held connection read v2 whole"
nbd_fail "view:nope: no such view" "view:nope: .*nope" \
	nbdinfo --size "$(uri view:nope)"
stop_nbdkit
done_testing
