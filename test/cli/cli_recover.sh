#!/usr/bin/env bash
# cli-recover: what a user sees of recovery (INVARIANTS.md 9 and 10)
# through the real tool: an index/ copied back from before the last
# ingest is refused by writing commands, with a message that says what
# to do, while reading commands work; `bvault recover --accept-index-loss`
# goes on, keeping the lost RP's container bytes (stats: unknown); a
# damaged container is listed by verify with every REPLICA@RP range that
# needs it, and an RP that needs none still exports bit for bit.
. "$(dirname "$0")/lib.sh"

S=$T/store
mkimg "$T/a.img" 8
cp "$T/a.img" "$T/b.img"
poke "$T/b.img" 1048576 65536
run_ok "init" "$BV" init "$S"
run_ok "a full" sh -c "'$BV' mkstream '$T/a.img' --replica vm1 | '$BV' ingest '$S' --rp -"
cp -a "$S/index" "$T/index.old"
run_ok "an express full" sh -c "'$BV' mkstream '$T/b.img' --replica vm1 --base 1 | '$BV' ingest '$S' --rp -"
size_before=$(du -sb "$S/containers" | cut -f1)
rm -rf "$S/index" && cp -a "$T/index.old" "$S/index"

run_fail "a writing command is refused when the index lost a commit" 1 \
	"lost committed writes.*recover .*--accept-index-loss" \
	"$BV" replica create "$S" other --size 1M
run_ok "rp ls still works" "$BV" rp ls "$S"
grep -q " 1 " "$T/out" && ! grep -q " 2 " "$T/out"
ok $? "it lists what the index holds: RP 1"
run_ok "export of RP 1 works" "$BV" export "$S" vm1@1 "$T/out1.img"
cmp -s "$T/out1.img" "$T/a.img"
ok $? "RP 1 is bit for bit"
"$BV" verify "$S" >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 1 ] && grep -q "^index" "$T/out"
ok $? "verify reports the lost commits (exit $rc)"
run_fail "recover wants its flag" 2 "accept-index-loss" "$BV" recover "$S"
run_ok "recover --accept-index-loss" "$BV" recover "$S" --accept-index-loss
size_after=$(du -sb "$S/containers" | cut -f1)
[ "$size_after" -ge "$size_before" ]
ok $? "no container byte was cut ($size_before -> $size_after)"
run_ok "stats" "$BV" stats "$S" --json
grep -q '"unknown_bytes": [1-9]' "$T/out"
ok $? "stats count the kept bytes no commit names"
run_ok "the store ingests on" sh -c "'$BV' mkstream '$T/b.img' --replica vm1 --base 1 | '$BV' ingest '$S' --rp -"
run_ok "export of the new RP 2" "$BV" export "$S" vm1@2 "$T/out2.img"
cmp -s "$T/out2.img" "$T/b.img"
ok $? "it is bit for bit"

# A damaged container: verify names it and what needs it.
D=$T/dmg
run_ok "init a second store" "$BV" init "$D"
run_ok "a full of vm1" sh -c "'$BV' mkstream '$T/a.img' --replica vm1 | '$BV' ingest '$D' --rp -"
run_ok "a full of vm2 (all zeros)" sh -c "truncate -s 4M '$T/z.img' && '$BV' mkstream '$T/z.img' --replica vm2 | '$BV' ingest '$D' --rp -"
dd if=/dev/zero of="$D/containers/00000001.bvc" bs=4096 seek=200 count=16 conv=notrunc status=none
"$BV" verify "$D" >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 1 ] && grep -q "^damaged .*00000001.bvc.*offset" "$T/out" &&
	grep -q "^needed .*vm1@1 .*bytes [0-9]* to [0-9]*" "$T/out"
ok $? "verify lists the damaged bytes and the vm1@1 ranges that need them"
grep -q "vm2@" "$T/out"
ok $((1 - $?)) "and nothing of vm2"
run_ok "vm2@1 still exports" "$BV" export "$D" vm2@1 "$T/outz.img"
cmp -s "$T/outz.img" "$T/z.img"
ok $? "bit for bit"
done_testing
