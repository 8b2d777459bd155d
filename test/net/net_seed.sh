#!/usr/bin/env bash
# net_seed.sh: a seed made at the protected site by bvault-agent seed,
# straight from a qcow2 image served by the real qemu-nbd (holes and zero
# ranges skipped through base:allocation), verified, imported through a
# running bvaultd (seed import is forwarded to the store's writer), then
# an express full with --bitmap from the agent to that bvaultd on top of
# the seed, and a --compare: each RP identical to the image (qemu-img
# compare). An encrypted agent seed over two media too.
# Usage: net_seed.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/qemu.sh"

run_ok "init" "$BV" init "$S" || done_testing
"$BV" agent add "$S" host --group vm >"$T/host.key"
ok $? "agent add"
qemu-img create -q -f qcow2 "$IMG" 64M
ok $? "qemu-img create a 64 MiB qcow2"
qemu-io -f qcow2 -c 'write -P 0xaa 0 4M' -c 'write -P 0x31 8M 1M' \
	-c 'write -P 0x7e 20M 512k' -c 'write -z 30M 2M' \
	-c 'write -P 0xaa 40M 4M' "$IMG" >/dev/null
ok $? "qemu-io writes data (and a repeat, and write-zeroes) into it"
args=
for i in $(seq 1 24); do
	args="$args -c 'write -P $i $((48 * 1048576 + i * 65536)) 64k'"
done
eval qemu-io -f qcow2 $args '"$IMG"' >/dev/null
ok $? "and 24 chunks of their own"
qemu-img bitmap --add --enable -f qcow2 "$IMG" b0
ok $? "a dirty bitmap b0 records from the seed on"

start_nbd || { ok 1 "qemu-nbd starts"; done_testing; }
"$BVA" seed --disk "vm=nbd+unix:///?socket=$QS" --to "$T/seed" --label seed \
	--json >"$T/out" 2>"$T/err"
ok $? "bvault-agent seed from qemu-nbd, no server"
[ $? -eq 0 ] || sed 's/^/# /' "$T/err"
cp "$T/out" "$T/seed.json"
zero=$(sed -n 's/.*"zero_chunks":\([0-9]*\).*/\1/p' "$T/seed.json")
entries=$(sed -n 's/.*"entries":\([0-9]*\).*/\1/p' "$T/seed.json")
[ "$zero" = $((1024 - 176)) ] && [ "$entries" = 27 ]
ok $? "holes and zeros skipped, the repeat stored once ($zero zero chunks, $entries distinct)"
run_ok "bvault-agent seed again resumes: nothing to write" \
	"$BVA" seed --disk "vm=nbd+unix:///?socket=$QS" --to "$T/seed" --label seed --json
grep -q '"bytes_written":0' "$T/out"
ok $? "the rerun wrote nothing"
run_ok "seed keygen" "$BV" seed keygen --out "$T/key"
run_ok "an encrypted agent seed over two media" \
	"$BVA" seed --disk "vm=nbd+unix:///?socket=$QS" --to "$T/e1,$T/e2" \
	--media-size 1M --pack-size 256K --key "$T/key"
stop_nbd
run_ok "it verifies, media in reverse order" "$BV" seed verify "$T/e2" "$T/e1" --key "$T/key"
run_ok "seed verify" "$BV" seed verify "$T/seed"

start_server || done_testing
run_ok "seed import while bvaultd holds the store (forwarded)" \
	"$BV" seed import "$S" "$T/seed" --json
grep -q '"rp":1' "$T/out"
ok $? "RP 1 made from the seed"
grep -q 'running seed import' "$LOG"
ok $? "bvaultd carried it out"
run_ok "importing it again" "$BV" seed import "$S" "$T/seed"
grep -q "already imported" "$T/out"; ok $? "says so"
run_ok "seed export beside the running bvaultd (read-only)" \
	"$BV" seed export "$S" vm@1 --to "$T/back"
run_ok "and that set verifies" "$BV" seed verify "$T/back"
compare_rp 1 "RP 1 (the seed) and the qcow2 image are identical"

qemu-io -f qcow2 -c 'write -P 0xab 64k 64k' -c 'write -z 2M 64k' \
	-c 'write -P 0x5c 10M 300k' -c 'write -P 0x11 60M 4k' "$IMG" >/dev/null
ok $? "qemu-io writes changes after the seed"
qemu-img bitmap --add -f qcow2 "$IMG" b1 &&
	qemu-img bitmap --disable -f qcow2 "$IMG" b0
ok $? "b0 frozen"
start_nbd b0 || { ok 1 "qemu-nbd -B b0 starts"; done_testing; }
agent --bitmap b0 --base 1 --label incr
ok $? "an express full with --bitmap b0 --base 1 on top of the seed"
grep -q 'as RP 2:' "$T/out"; ok $? "RP 2"
sent=$(sed -n 's/.*: \([0-9]*\) bytes of data.*/\1/p' "$T/out")
[ -n "$sent" ] && [ "$sent" -le $((640 * 1024)) ]
ok $? "only the dirty granules were sent ($sent bytes of data)"
stop_nbd
start_nbd || { ok 1 "qemu-nbd starts"; done_testing; }
agent --compare --label check
ok $? "a consistency check (--compare) against the seeded history"
differ=$(sed -n 's/^compared [0-9]* chunks, \([0-9]*\) differed$/\1/p' "$T/out")
[ "$differ" = 0 ]; ok $? "finds nothing to send ($differ)"
stop_nbd
stop_server
compare_rp 2 "RP 2 and the changed qcow2 image are identical"
run_ok "the store verifies" "$BV" verify "$S"

done_testing
