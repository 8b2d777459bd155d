#!/usr/bin/env bash
# cli_lifecycle.sh: rp rm, rp protect, policy set/show, prune, replica rm,
# group add/ls. Every command and its --json; every bad argument exits 2
# naming it and changes nothing; a protected RP is refused even with
# --force, and so is a view's RP; prune --dry-run changes no byte and no
# mtime of the store; prune prints each RP with the rule that decided;
# what is left exports as before.
. "$(dirname "$0")/lib.sh"

S=$T/store
run_ok "init" "$BV" init "$S" --chunk-size 4K || done_testing
run_ok "replica create a" "$BV" replica create "$S" a --size 1M
run_ok "replica create b" "$BV" replica create "$S" b --size 1M
run_ok "replica create c" "$BV" replica create "$S" c --size 1M
run_ok "group create g a b" "$BV" group create "$S" g a b

mkimg "$T/ia" 4
head -c 1048576 "$T/ia" >"$T/ia1"
cp "$T/ia1" "$T/ia2"
poke "$T/ia2" 8192 4096
run_ok "mkstream a" "$BV" mkstream "$T/ia1" --replica a --out "$T/sa1"
run_ok "ingest a: RP 1" "$BV" ingest "$S" --rp "$T/sa1"
printf '8192 4096\n' >"$T/ext"
run_ok "mkstream a (a change)" "$BV" mkstream "$T/ia2" --replica a --base 1 \
	--extents "$T/ext" --out "$T/sa2"
run_ok "ingest a: RP 2" "$BV" ingest "$S" --rp "$T/sa2"
for i in 3 4 5 6; do
	run_ok "rp create g: RP $i" "$BV" rp create "$S" g --label "n$i"
done
"$BV" export "$S" a@2 "$T/a2.img" 2>/dev/null
cmp -s "$T/a2.img" "$T/ia2"
ok $? "a@2 exports as the image"

# ---- bad arguments: exit 2, the argument named, nothing changed ----
snapshot "$S" before
run_fail "rp rm: no GROUP@RP" 2 'GROUP@RP' "$BV" rp rm "$S"
run_fail "rp rm: no '@'" 2 "'g'|@" "$BV" rp rm "$S" g
run_fail "rp rm: RP not a number" 2 'g@x' "$BV" rp rm "$S" g@x
run_fail "rp rm: RP 0" 2 'g@0' "$BV" rp rm "$S" g@0
run_fail "rp rm: an unknown option" 2 'bogus' "$BV" rp rm "$S" g@1 --bogus
run_fail "rp rm: an extra argument" 2 'extra' "$BV" rp rm "$S" g@1 extra
run_fail "rp protect: no duration" 2 'until|forever' "$BV" rp protect "$S" g@1
run_fail "rp protect: both durations" 2 'until|forever' \
	"$BV" rp protect "$S" g@1 --forever --until 2099-01-01
run_fail "rp protect: a bad date" 2 'until.*yesterday' \
	"$BV" rp protect "$S" g@1 --until yesterday
run_fail "rp protect: a bad month" 2 '2099-13-01' \
	"$BV" rp protect "$S" g@1 --until 2099-13-01
run_fail "policy set: no option" 2 'empty|keep' "$BV" policy set "$S" g
run_fail "policy set: --keep-daily 0" 2 'keep-daily' \
	"$BV" policy set "$S" g --keep-daily 0
run_fail "policy set: --keep-last abc" 2 'keep-last' \
	"$BV" policy set "$S" g --keep-last abc
run_fail "policy set: --max-age without a value" 2 'max-age' \
	"$BV" policy set "$S" g --max-age
run_fail "policy set: no GROUP" 2 'GROUP' "$BV" policy set "$S"
run_fail "policy set: a bad group name" 2 "name" \
	"$BV" policy set "$S" 'bad/name' --keep-last 1
run_fail "policy show: an extra argument" 2 'extra' \
	"$BV" policy show "$S" g extra
run_fail "prune: an extra argument" 2 'extra' "$BV" prune "$S" g extra
run_fail "prune: an unknown option" 2 'bogus' "$BV" prune "$S" --bogus
run_fail "replica rm: no NAME" 2 'NAME' "$BV" replica rm "$S"
run_fail "replica rm: a bad name" 2 "a/b" "$BV" replica rm "$S" a/b
run_fail "group add: no REPLICA" 2 'REPLICA' "$BV" group add "$S" g
run_fail "group ls: an extra argument" 2 'extra' "$BV" group ls "$S" extra
run_fail "rp rm: no such RP" 1 'no recovery point 99' "$BV" rp rm "$S" g@99
run_fail "rp rm: no such group" 1 'nosuch' "$BV" rp rm "$S" nosuch@1
run_fail "replica rm: no such replica" 1 'nosuch' "$BV" replica rm "$S" nosuch
run_fail "group add: no such group" 1 'nosuch' "$BV" group add "$S" nosuch c
run_fail "group add: a replica already grouped" 1 'already' \
	"$BV" group add "$S" g a
run_fail "prune: a group without a policy" 1 'no retention policy' \
	"$BV" prune "$S" g
run_fail "rp rm: the latest without --force" 1 'latest.*--force' \
	"$BV" rp rm "$S" g@6
same_snapshot "$S" before "refused commands changed nothing"

# ---- protection ----
run_ok "rp protect g@3 --forever" "$BV" rp protect "$S" g@3 --forever
grep -q 'forever' "$T/out"
ok $? "rp protect says forever"
run_fail "rp rm of a protected RP" 1 'protected' "$BV" rp rm "$S" g@3
run_fail "rp rm --force of a protected RP" 1 'protected' \
	"$BV" rp rm "$S" g@3 --force
run_fail "a lock is never shortened" 1 'never shortens|only extends' \
	"$BV" rp protect "$S" a@3 --until 2099-01-01
run_ok "rp protect g@4 --until 2099-01-01" "$BV" rp protect "$S" a@4 --until 2099-01-01
run_ok "a lock extends" "$BV" rp protect "$S" g@4 --until 2100-01-01T10:00
run_fail "extended, not shortened" 1 'only extends' \
	"$BV" rp protect "$S" g@4 --until 2099-06-01
run_fail "a lock in the past" 1 'past' "$BV" rp protect "$S" g@5 --until 2001-01-01
run_fail "replica rm of a protected RP's member" 1 'protected' \
	"$BV" replica rm "$S" b
run_ok "rp protect g@5 for twelve seconds" "$BV" rp protect "$S" g@5 \
	--until "@$(($(date +%s) + 12))"
run_fail "rp rm before the lock expires" 1 'protected' "$BV" rp rm "$S" g@5
sleep 13
run_ok "rp rm after the lock expired" "$BV" rp rm "$S" g@5

# ---- a view pins its RP ----
run_ok "view create v of a@2" "$BV" view create "$S" v --from a@2
run_fail "rp rm of a view's RP" 1 'view v' "$BV" rp rm "$S" g@2 --force
run_fail "replica rm of a view's replica" 1 'view v' "$BV" replica rm "$S" a

# ---- policy and prune ----
run_ok "policy set g" "$BV" policy set "$S" a --keep-last 1
run_ok "policy show g" "$BV" policy show "$S" g
grep -Eq "^g +keep-last 1$" "$T/out"
ok $? "policy show prints it"
run_ok "policy show --json" "$BV" policy show "$S" --json
json_ok "$T/out"
ok $? "policy show --json is JSON"
grep -q '"keep_last": 1' "$T/out"
ok $? "policy show --json has keep_last"

# --dry-run: not a byte, not an mtime.
state() {
	(cd "$S" && find . -printf '%p %s %T@ %m\n' | sort &&
		find . -type f -exec md5sum {} + | sort -k 2)
}
state >"$T/state1"
run_ok "prune --dry-run" "$BV" prune "$S" g --dry-run
cp "$T/out" "$T/dry"
state >"$T/state2"
cmp -s "$T/state1" "$T/state2"
r=$?
ok $r "prune --dry-run changed no file, size, mode or mtime of the store"
[ $r -eq 0 ] || diag "$(diff "$T/state1" "$T/state2" | head -20)"
grep -Eq '^keep +g +6 .*last' "$T/dry" &&
	grep -Eq '^keep +g +4 .*protected until 2100' "$T/dry" &&
	grep -Eq '^keep +g +3 .*protected until forever' "$T/dry" &&
	grep -Eq '^keep +g +2 .*view v' "$T/dry" &&
	grep -Eq '^remove +g +1 .*not kept' "$T/dry"
r=$?
ok $r "prune lists each RP with the rule that decided it"
[ $r -eq 0 ] || diag "$(cat "$T/dry")"
run_ok "prune --dry-run --json" "$BV" prune "$S" g --dry-run --json
json_ok "$T/out"
ok $? "prune --json is JSON"
grep -q '"rp": 1, "time": [0-9]*, "keep": false' "$T/out"
ok $? "prune --json: RP 1 removed"
run_ok "prune" "$BV" prune "$S"
"$BV" rp ls "$S" g --json >"$T/rps"
! grep -q '"rp": 1,' "$T/rps" && grep -q '"rp": 2,' "$T/rps"
ok $? "prune removed RP 1 and kept the rest"
"$BV" export "$S" a@2 "$T/a2b.img" 2>/dev/null
cmp -s "$T/a2b.img" "$T/ia2"
ok $? "a@2 still exports as the image"

# ---- rp rm --force of the latest; latest then means the newest left ----
run_ok "rp rm g@6 --force" "$BV" rp rm "$S" g@6 --force
"$BV" export "$S" a@latest "$T/al.img" 2>/dev/null
cmp -s "$T/al.img" "$T/ia2"
ok $? "a@latest is the newest RP left and exports as the image"
run_fail "rp rm g@latest --force: the newest left (4) is protected" 1 \
	'recovery point 4 is protected' "$BV" rp rm "$S" g@latest --force
run_fail "the number is not reused: g@6 is gone" 1 'no recovery point 6' \
	"$BV" rp rm "$S" g@6 --force

# ---- group add, group ls ----
run_ok "group add g c" "$BV" group add "$S" g c
run_ok "rp create g: RP 7 holds c" "$BV" rp create "$S" g
run_fail "c at an RP from before it joined" 1 'joined' \
	"$BV" export "$S" c@4 "$T/c4.img"
run_ok "group ls" "$BV" group ls "$S"
grep -Eq '^g +rps 4 +latest 7 +policy keep-last 1' "$T/out" &&
	grep -q 'members: a b c' "$T/out"
r=$?
ok $r "group ls: members, RPs, latest, policy"
[ $r -eq 0 ] || diag "$(cat "$T/out")"
run_ok "group ls --json" "$BV" group ls "$S" --json
json_ok "$T/out"
ok $? "group ls --json is JSON"
grep -q '"members": \["a", "b", "c"\], "rps": 4, "latest_rp": 7' "$T/out"
ok $? "group ls --json: members, rps, latest"
run_ok "stats --json" "$BV" stats "$S" --json
grep -q '"rps": 4,' "$T/out"
ok $? "stats counts the RPs that exist (4), not the numbers given out (7)"

# ---- replica rm ----
run_ok "view rm v" "$BV" view rm "$S" v
run_ok "replica create d" "$BV" replica create "$S" d --size 1M
run_ok "replica rm d" "$BV" replica rm "$S" d
"$BV" ls "$S" --json >"$T/ls"
! grep -q '"d"' "$T/ls"
ok $? "d is gone"
run_ok "replica rm c" "$BV" replica rm "$S" c
"$BV" rp ls "$S" g --json >"$T/rps"
grep -q '"members": 2' "$T/rps" && ! grep -q '"members": 3' "$T/rps"
ok $? "g's RPs keep their other members"
"$BV" export "$S" a@2 "$T/a2c.img" 2>/dev/null
cmp -s "$T/a2c.img" "$T/ia2"
ok $? "a@2 still exports as the image after replica rm c"
run_ok "verify" "$BV" verify "$S"

done_testing
