#!/usr/bin/env bash
# net_qemu.sh: backups of a qcow2 image through qemu-nbd, with the real
# qemu-img, qemu-io and qemu-nbd (tools/test.sh installs qemu-utils):
#  - a full backup from the NBD export (holes skipped through
#    base:allocation), exported back and compared with `qemu-img compare`;
#  - a persistent dirty bitmap added and enabled, changes written with
#    qemu-io (data and write-zeroes), the bitmap frozen (a new one takes
#    over recording), an incremental with --bitmap that sends only the
#    dirty granules, exported and compared again: identical;
#  - the bitmaps dropped, more changes, a consistency check (--compare)
#    that sends only the chunks that differ: identical again.
# Usage: net_qemu.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/qemu.sh"

run_ok "init" "$BV" init "$S" || done_testing
"$BV" agent add "$S" host --group vm >"$T/host.key"
ok $? "agent add"

qemu-img create -q -f qcow2 "$IMG" 32M
ok $? "qemu-img create a 32 MiB qcow2"
qemu-io -f qcow2 -c 'write -P 0xaa 0 4M' -c 'write -P 0x31 8M 1M' \
	-c 'write -P 0x7e 20M 512k' "$IMG" >/dev/null
ok $? "qemu-io writes data into it"

start_server || done_testing
start_nbd || { ok 1 "qemu-nbd starts"; done_testing; }
agent --full --label full
ok $? "a full backup from qemu-nbd"
grep -q 'as RP 1:' "$T/out"; ok $? "RP 1"
sent=$(sed -n 's/.*: \([0-9]*\) bytes of data.*/\1/p' "$T/out")
[ -n "$sent" ] && [ "$sent" -le $((6 * 1048576)) ]
ok $? "holes skipped: $sent bytes of data sent for 5.5 MiB written"
stop_nbd
stop_server
compare_rp 1 "RP 1 and the qcow2 image are identical (qemu-img compare)"

# Change tracking: a persistent dirty bitmap, then changes.
qemu-img bitmap --add --enable -f qcow2 "$IMG" b0
ok $? "qemu-img bitmap --add --enable b0"
qemu-io -f qcow2 -c 'write -P 0xab 64k 64k' -c 'write -z 2M 64k' \
	-c 'write -P 0x5c 10M 300k' -c 'write -P 0x11 30M 4k' "$IMG" >/dev/null
ok $? "qemu-io writes changes (data and write-zeroes)"
# Freeze the epoch being backed up; b1 records from here on.
qemu-img bitmap --add -f qcow2 "$IMG" b1 &&
	qemu-img bitmap --disable -f qcow2 "$IMG" b0
ok $? "b0 frozen, b1 recording"

start_server || done_testing
start_nbd b0 || { ok 1 "qemu-nbd -B b0 starts"; done_testing; }
agent --bitmap b0 --base 1 --label incr
ok $? "an incremental backup with --bitmap b0 --base 1"
grep -q 'as RP 2:' "$T/out"; ok $? "RP 2"
sent=$(sed -n 's/.*: \([0-9]*\) bytes of data.*/\1/p' "$T/out")
[ -n "$sent" ] && [ "$sent" -le $((640 * 1024)) ]
ok $? "only the dirty granules were sent ($sent bytes of data)"
agent --bitmap b0 --base 1
grep -q 'consistency check is needed' "$T/err"
ok $? "the same incremental again: the replica moved on, check needed"
stop_nbd
stop_server
compare_rp 2 "RP 2 and the changed qcow2 image are identical"
"$BV" export "$S" vm@1 "$T/x1b.raw" && cmp "$T/x1.raw" "$T/x1b.raw" >/dev/null
ok $? "RP 1 still reads as before"
qemu-img bitmap --remove -f qcow2 "$IMG" b0
ok $? "b0 removed after the server acknowledged RP 2"

# The bitmap is lost; more changes; the consistency check finds them.
qemu-img bitmap --remove -f qcow2 "$IMG" b1 &&
	qemu-io -f qcow2 -c 'write -P 0x42 5M 128k' -c 'write -z 8M 64k' \
		-c 'write -P 0x43 31M 1M' "$IMG" >/dev/null
ok $? "bitmaps dropped, more changes written"
start_server || done_testing
start_nbd || { ok 1 "qemu-nbd starts"; done_testing; }
agent --compare --label check
ok $? "a consistency check (--compare)"
grep -q 'as RP 3:' "$T/out"; ok $? "RP 3"
differ=$(sed -n 's/^compared [0-9]* chunks, \([0-9]*\) differed$/\1/p' "$T/out")
[ -n "$differ" ] && [ "$differ" -ge 3 ] && [ "$differ" -le 24 ]
ok $? "only the changed chunks differed ($differ of 512)"
agent --compare
differ=$(sed -n 's/^compared [0-9]* chunks, \([0-9]*\) differed$/\1/p' "$T/out")
[ "$differ" = 0 ]; ok $? "a second check finds nothing to send ($differ)"
stop_nbd
stop_server
compare_rp 3 "RP 3 and the qcow2 image are identical"
run_ok "the store verifies" "$BV" verify "$S"

done_testing
