#!/usr/bin/env bash
# nbd_parallel.sh: many connections and requests in flight at once
# against one nbdkit (thread model parallel), with few readers per
# connection (readers=2) so that requests wait for each other's
# readers, and refresh=0 so that the generations change under load:
#  - nbdcopy --connections=4 --requests=16 of two RPs at once, each equal
#    to its image;
#  - qemu-img compare, nbdinfo --map and qemu-io (several aio reads in
#    flight) clients beside them;
#  - a writer commits a new RP meanwhile, and clients of REPLICA@latest
#    keep opening new generations while the old ones close.
# tools/test.sh runs this in its ThreadSanitizer build too (the plugin
# built with TSan, loaded into nbdkit with libtsan preloaded).
# Usage: nbd_parallel.sh BVAULT PLUGIN NBD_CLIENT
. "$(dirname "$0")/lib.sh"
need nbdcopy qemu-img qemu-io

run_ok "init" "$BV" init "$S" || done_testing
mkimg "$T/img" 16
cp --sparse=always "$T/img" "$T/v1"
"$BV" mkstream "$T/img" --replica vm --out "$T/s1" &&
	"$BV" ingest "$S" --rp "$T/s1" >/dev/null
ok $? "RP 1 ingested"
poke "$T/img" 65536 $((2 * 1048576))
cp --sparse=always "$T/img" "$T/v2"
"$BV" mkstream "$T/img" --replica vm --base 1 --out "$T/s2" &&
	"$BV" ingest "$S" --rp "$T/s2" >/dev/null
ok $? "RP 2 ingested"

start_nbdkit readers=2 refresh=0 || done_testing

pids=()
names=()
bg() {
	local name=$1
	shift
	"$@" >"$T/bg.$name.out" 2>&1 &
	pids+=($!)
	names+=("$name")
}
bg copy1 sh -c "nbdcopy --connections=4 --requests=16 '$(uri vm@1)' '$T/c1' &&
	cmp '$T/c1' '$T/v1'"
bg copy2 sh -c "nbdcopy --connections=4 --requests=16 '$(uri vm@2)' '$T/c2' &&
	cmp '$T/c2' '$T/v2'"
bg compare1 qemu-img compare -f raw -F raw "$(uri vm@1)" "$T/v1"
bg compare2 qemu-img compare -f raw -F raw "$(uri vm@2)" "$T/v2"
bg map nbdinfo --map "$(uri vm@2)"
# qemu-io: reads of known content, eight in flight on one connection.
bg qemuio qemu-io -r -f raw \
	-c 'aio_read -P 0 12M 1M' -c 'aio_read -P 0 13M 512k' \
	-c 'aio_read 0 64k' -c 'aio_read 1M 1M' -c 'aio_read 5M 4k' \
	-c 'aio_read 7M 2M' -c 'aio_read -P 0 12M 4k' -c 'aio_read 3M 1M' \
	-c 'aio_flush' "$(uri vm@1)"
# A commit while they run, and latest clients around it.
bg latest sh -c "for i in 1 2 3 4 5 6; do
	nbdinfo --size '$(uri vm@latest)' || exit 1; done"
poke "$T/img" $((6 * 1048576)) 65536
cp --sparse=always "$T/img" "$T/v3"
"$BV" mkstream "$T/img" --replica vm --base 2 --out "$T/s3" &&
	"$BV" ingest "$S" --rp "$T/s3" >/dev/null
ok $? "RP 3 committed while the clients run"
bg copy3 sh -c "nbdcopy --connections=4 --requests=16 '$(uri vm@latest)' '$T/c3' &&
	cmp '$T/c3' '$T/v3'"
bg latest2 sh -c "for i in 1 2 3 4 5 6; do
	nbdinfo --map '$(uri vm@latest)' >/dev/null || exit 1; done"
for i in "${!pids[@]}"; do
	wait "${pids[$i]}"
	r=$?
	ok $r "client ${names[$i]} succeeded"
	[ $r -eq 0 ] || sed 's/^/# /' "$T/bg.${names[$i]}.out" | head -n 20
done
grep -q 'read 1048576/1048576 bytes at offset 12582912' "$T/bg.qemuio.out"
ok $? "qemu-io read the zero MiB at 12 MiB as zeros"
[ "$(grep -c '^read ' "$T/bg.qemuio.out")" -eq 8 ]
ok $? "qemu-io's eight reads all completed"
for _ in $(seq 1 100); do [ "$(generations)" -le 1 ] && break; sleep 0.1; done
[ "$(generations)" -le 1 ]
ok $? "every old generation closed with its last connection"
stop_nbdkit
done_testing
