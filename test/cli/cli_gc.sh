#!/usr/bin/env bash
# cli-gc: bvault gc and bvault init --container-size through the real
# tool (INVARIANTS.md 5, 12): bad arguments are refused and change
# nothing; a dry run changes no container and says what a run would do;
# a run after refused streams (their chunks were indexed, then the
# session aborted) deletes their chunks, removes the containers that held
# them, and every RP still exports bit for bit; --json gives the same
# report as an object; a second run finds nothing to do.
. "$(dirname "$0")/lib.sh"

S=$T/store
mkimg "$T/a.img" 16
cp "$T/a.img" "$T/b.img"
poke "$T/b.img" 1048576 65536

run_fail "a container size below 1 MiB is refused" 2 "container-size" \
	"$BV" init "$S" --container-size 64K
[ ! -e "$S" ]
ok $? "and makes no store"
run_fail "a bad container size is refused" 2 "container-size" \
	"$BV" init "$S" --container-size lots
run_ok "init --container-size 4M" "$BV" init "$S" --container-size 4M
run_ok "a full" sh -c "'$BV' mkstream '$T/a.img' --replica vm1 | '$BV' ingest '$S' --rp -"
run_ok "an express full" sh -c "'$BV' mkstream '$T/b.img' --replica vm1 --base 1 | '$BV' ingest '$S' --rp -"
n1=$(ls "$S/containers" | wc -l)
big=$(find "$S/containers" -size +9M | wc -l)
[ "$n1" -ge 2 ] && [ "$big" -eq 0 ]
ok $? "containers are closed past 4 MiB (after a batch's run: $n1 for 16 MiB)"

# Garbage: streams of new data cut short. The session indexed its first
# batches before the stream ended, then aborted.
head -c $((24 << 20)) /dev/urandom >"$T/c.img"
"$BV" mkstream "$T/c.img" --replica vm2 --out "$T/c.s" >/dev/null 2>&1
for i in 1 2; do
	head -c $((20 << 20)) "$T/c.s" >"$T/cut.s"
	"$BV" ingest "$S" --rp "$T/cut.s" >/dev/null 2>&1
done
run_fail "a bad threshold is refused" 2 "threshold" "$BV" gc "$S" --threshold 0
run_fail "a threshold above 100 is refused" 2 "threshold" "$BV" gc "$S" --threshold 101
run_fail "gc needs a store" 2 "STORE" "$BV" gc

ls -l --time-style=full-iso "$S/containers" >"$T/before"
run_ok "gc --dry-run" "$BV" gc "$S" --dry-run
grep -q "would be deleted" "$T/out"
ok $? "the dry run says what it would do"
ls -l --time-style=full-iso "$S/containers" >"$T/after"
cmp -s "$T/before" "$T/after"
ok $? "and changes no container"
size0=$(du -sb "$S/containers" | cut -f1)
run_ok "gc --json" "$BV" gc "$S" --json
grep -q '"dead_chunks":[1-9]' "$T/out" && grep -q '"containers_removed":[1-9]' "$T/out" &&
	grep -q '"bytes_reclaimed":[1-9]' "$T/out"
ok $? "it deletes the aborted sessions' chunks and removes containers"
diag "$(cat "$T/out")"
size1=$(du -sb "$S/containers" | cut -f1)
[ "$size1" -lt "$size0" ]
ok $? "the containers take fewer bytes ($size0 -> $size1)"
for rp in 1 2; do
	run_ok "export vm1@$rp" "$BV" export "$S" vm1@$rp "$T/x.img"
	[ $rp = 1 ] && want=$T/a.img || want=$T/b.img
	cmp -s "$T/x.img" "$want"
	ok $? "vm1@$rp is bit for bit after gc"
done
run_ok "verify after gc" "$BV" verify "$S"
run_ok "gc again" "$BV" gc "$S" --json
grep -q '"dead_chunks":0,' "$T/out" && grep -q '"containers_rewritten":0,' "$T/out"
ok $? "a second run finds nothing to do"
run_ok "stats" "$BV" stats "$S" --json
done_testing
