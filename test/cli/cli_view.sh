#!/usr/bin/env bash
# cli_view.sh: bvault view create | ls | rm | promote. Views made, listed
# and removed through read-only opens, also while bvaultd holds the
# store (promote is then refused with the writer's message); promote
# --as and --into checked by export; every bad argument and object
# refused with a message naming it, the store unchanged. (Writes into a
# view are the engine's: engine-view; the NBD plugin serves them.)
. "$(dirname "$0")/lib.sh"

BVD=$(dirname "$BV")/bvaultd
S=$T/store
run_ok "init" "$BV" init "$S" || done_testing
mkimg "$T/img" 4
run_ok "mkstream" "$BV" mkstream "$T/img" --replica vm --out "$T/s1"
run_ok "ingest RP 1" "$BV" ingest "$S" --rp "$T/s1"
cp "$T/img" "$T/img2"
poke "$T/img2" 65536 131072
printf '65536 131072\n' >"$T/ext"
run_ok "mkstream RP 2" "$BV" mkstream "$T/img2" --replica vm --base 1 \
	--extents "$T/ext" --out "$T/s2"
run_ok "ingest RP 2" "$BV" ingest "$S" --rp "$T/s2"

run_ok "view create v1 --from vm@1" "$BV" view create "$S" v1 --from vm@1
grep -q 'view v1 of vm@1' "$T/out"
ok $? "create says what the view is of"
run_ok "view create v2 --from vm@latest" "$BV" view create "$S" v2 \
	--from vm@latest
run_ok "view ls" "$BV" view ls "$S"
grep -q '^v1 *vm@1 ' "$T/out" && grep -q '^v2 *vm@2 ' "$T/out"
ok $? "ls lists both views with their RPs"
run_ok "view ls --json" "$BV" view ls "$S" --json
json_ok "$T/out"
ok $? "ls --json is valid JSON"
grep -q '"name": "v2", "replica": "vm", "rp": 2' "$T/out"
ok $? "ls --json names v2 of vm@2"
[ "$(stat -c %a "$S/views")" = 700 ] &&
	[ -z "$(find "$S/views" -type f ! -perm 600)" ] &&
	[ -z "$(find "$S/views" -type d ! -perm 700)" ]
ok $? "views/ is private: 0700 directories, 0600 files"

snapshot "$S" views
run_fail "create: no --from" 2 'from' "$BV" view create "$S" v3
run_fail "create: bad REPLICA@RP" 2 'REPLICA@RP' "$BV" view create "$S" v3 \
	--from vm
run_fail "create: of the head" 2 'head' "$BV" view create "$S" v3 --from vm@0
run_fail "create: bad name" 2 'view name' "$BV" view create "$S" 'a/b' \
	--from vm@1
run_fail "create: no such replica" 1 'nosuch' "$BV" view create "$S" v3 \
	--from nosuch@1
run_fail "create: no such RP" 1 'recovery point 7' "$BV" view create "$S" \
	v3 --from vm@7
run_fail "create: name taken" 1 'v1.*exists' "$BV" view create "$S" v1 \
	--from vm@2
run_fail "rm: no such view" 1 'nosuch.*no such view' "$BV" view rm "$S" \
	nosuch
run_fail "promote: neither --as nor --into" 2 'as|into' "$BV" view \
	promote "$S" v1
run_fail "promote: both --as and --into" 2 'as|into' "$BV" view \
	promote "$S" v1 --as x --into
run_fail "promote --as an existing replica" 1 'vm.*exists' "$BV" view \
	promote "$S" v1 --as vm
run_fail "promote: no such view" 1 'nosuch.*no such view' "$BV" view \
	promote "$S" nosuch --into
run_fail "promote: bad replica name" 2 'replica name' "$BV" view \
	promote "$S" v1 --as 'x/y'
run_fail "view: not a store" 1 'store' "$BV" view ls "$T/nostore"
same_snapshot "$S" views "refused view commands changed nothing"
[ "$("$BV" view ls "$S" --json | grep -c '"name"')" = 2 ]
ok $? "and the views are as they were"

# beside bvaultd
SOCK=$T/sock
"$BVD" "$S" --unix "$SOCK" 2>"$T/bvaultd.log" &
SRV=$!
for _ in $(seq 1 600); do
	[ -S "$SOCK" ] && break
	sleep 0.1
done
[ -S "$SOCK" ]
ok $? "bvaultd serves the store"
run_ok "view create while bvaultd runs" "$BV" view create "$S" v3 \
	--from vm@2
run_ok "view ls while bvaultd runs" "$BV" view ls "$S"
grep -q '^v3 ' "$T/out"
ok $? "v3 listed"
run_ok "promote while bvaultd runs: bvaultd carries it out" \
	"$BV" view promote "$S" v3 --as vm3
grep -q 'vm3@1' "$T/out"
ok $? "says vm3@1"
run_ok "view rm while bvaultd runs" "$BV" view rm "$S" v3
kill -TERM "$SRV"
wait "$SRV"
ok $? "bvaultd exits 0"

# promote
run_ok "promote v1 --as vm1 --label copy" "$BV" view promote "$S" v1 \
	--as vm1 --label copy
grep -q 'vm1@1' "$T/out"
ok $? "says vm1@1"
run_ok "export vm1@1" "$BV" export "$S" vm1@1 "$T/e1"
cmp -s "$T/e1" "$T/img"
ok $? "vm1@1 is vm@1"
run_ok "rp ls vm1" "$BV" rp ls "$S" vm1 --json
grep -q '"label": "copy"' "$T/out"
ok $? "its RP has the label"
run_ok "promote v1 --into" "$BV" view promote "$S" v1 --into
grep -q 'vm@3' "$T/out"
ok $? "says vm@3"
run_ok "export vm@3" "$BV" export "$S" vm@3 "$T/e3"
cmp -s "$T/e3" "$T/img"
ok $? "vm@3 is the view (vm@1)"
run_ok "export vm@2" "$BV" export "$S" vm@2 "$T/e2"
cmp -s "$T/e2" "$T/img2"
ok $? "vm@2 as it was"
run_ok "view rm v1" "$BV" view rm "$S" v1
run_ok "view rm v2" "$BV" view rm "$S" v2
run_ok "view ls (none)" "$BV" view ls "$S" --json
[ "$(tr -d ' \n' <"$T/out")" = "[]" ]
ok $? "no views left"
[ -z "$(ls -A "$S/views" | grep -v '^lock$')" ]
ok $? "views/ holds nothing but its lock"
run_ok "verify" "$BV" verify "$S"

done_testing
