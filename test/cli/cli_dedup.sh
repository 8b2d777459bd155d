#!/usr/bin/env bash
# cli_dedup.sh: bvault init --dedup. store is the default and what stats
# shows for it (and for stores made before the scope was recorded); a bad
# value is a usage error; group is refused until this build confines dedup
# to each group, and the refusal leaves nothing behind.
. "$(dirname "$0")/lib.sh"

run_fail "bad --dedup value" 2 "--dedup must be store or group, not 'tenant'" \
	"$BV" init "$T/bad" --dedup tenant
[ ! -e "$T/bad" ]
ok $? "bad --dedup makes no store"
run_fail "--dedup group refused" 1 "dedup scope group is not implemented" \
	"$BV" init "$T/grp" --dedup group
[ ! -e "$T/grp" ]
ok $? "refused --dedup group makes no store"

run_ok "init --dedup store" "$BV" init "$T/st" --dedup store || done_testing
run_ok "stats" "$BV" stats "$T/st"
grep -Eq '^dedup scope +store$' "$T/out"
ok $? "stats shows dedup scope store"
run_ok "stats --json" "$BV" stats "$T/st" --json
json_ok "$T/out" && grep -q '"dedup_scope": "store"' "$T/out"
ok $? "stats --json shows dedup_scope store"

run_ok "init (default scope)" "$BV" init "$T/def" || done_testing
run_ok "stats (default scope)" "$BV" stats "$T/def"
grep -Eq '^dedup scope +store$' "$T/out"
ok $? "the default scope is store"

done_testing
