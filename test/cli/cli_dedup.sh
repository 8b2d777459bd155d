#!/usr/bin/env bash
# cli_dedup.sh: bvault init --dedup store|group. store (the default) dedups
# the same data written by two groups; group stores it once per group and
# dedups within a group only. A group-scoped store reads, verifies,
# checks, collects, rebuilds its index and imports a seed set like any
# other; its records carry tenant tags that a store-scoped open refuses.
# A bad value is a usage error that makes nothing.
. "$(dirname "$0")/lib.sh"

# chunks STORE: the chunk count from stats --json
chunks() {
	"$BV" stats "$1" --json | sed -n 's/^  "chunks": \([0-9]*\),*$/\1/p'
}

run_fail "bad --dedup value" 2 "--dedup must be store or group, not 'tenant'" \
	"$BV" init "$T/bad" --dedup tenant
[ ! -e "$T/bad" ]
ok $? "bad --dedup makes no store"

run_ok "init (default scope)" "$BV" init "$T/def" || done_testing
run_ok "stats (default scope)" "$BV" stats "$T/def"
grep -Eq '^dedup scope +store$' "$T/out"
ok $? "the default scope is store"

# 2 MiB of random data: 32 distinct chunks of 64 KiB.
head -c 2M /dev/urandom >"$T/img"
for sc in store group; do
	S=$T/$sc
	run_ok "init --dedup $sc" "$BV" init "$S" --dedup $sc || done_testing
	run_ok "$sc: stats --json" "$BV" stats "$S" --json
	json_ok "$T/out" && grep -q "\"dedup_scope\": \"$sc\"" "$T/out"
	ok $? "$sc: stats --json shows dedup_scope $sc"
	for r in a b c; do
		run_ok "$sc: replica create $r" "$BV" replica create "$S" $r --size 2M
	done
	# a and c are one group (one tenant); b is a group of its own.
	run_ok "$sc: group create ga a c" "$BV" group create "$S" ga a c
	run_ok "$sc: mkstream a" "$BV" mkstream "$T/img" --replica a --out "$T/sa"
	run_ok "$sc: ingest a" "$BV" ingest "$S" --rp "$T/sa"
	[ "$(chunks "$S")" = 32 ]
	ok $? "$sc: a's image is 32 chunks"
	run_ok "$sc: mkstream b" "$BV" mkstream "$T/img" --replica b --out "$T/sb"
	run_ok "$sc: ingest b, the same bytes, another group" \
		"$BV" ingest "$S" --rp "$T/sb"
	run_ok "$sc: mkstream c" "$BV" mkstream "$T/img" --replica c --base 1 \
		--out "$T/sc"
	run_ok "$sc: ingest c, the same bytes, a's group" \
		"$BV" ingest "$S" --rp "$T/sc"
done
[ "$(chunks "$T/store")" = 32 ]
ok $? "store scope: b and c dedup against a (32 chunks in all)"
[ "$(chunks "$T/group")" = 64 ]
ok $? "group scope: b's copy is stored again, c's dedups within ga (64)"

S=$T/group
for rp in a@1 b@1 c@2; do
	run_ok "group: export $rp" "$BV" export "$S" $rp "$T/e"
	cmp -s "$T/e" "$T/img"
	ok $? "group: $rp is bit for bit"
done
run_ok "group: verify" "$BV" verify "$S"
run_ok "group: check" "$BV" check "$S"

# The seed set of ga@2 imported into group stores dedups within the new
# group only; into a store-scoped store, with everything.
run_ok "group: seed export ga@2" "$BV" seed export "$S" ga@2 --to "$T/m"
for sc in store group; do
	D=$T/d-$sc
	run_ok "$sc: init another" "$BV" init "$D" --dedup $sc
	run_ok "$sc: replica create x" "$BV" replica create "$D" x --size 2M
	run_ok "$sc: mkstream x" "$BV" mkstream "$T/img" --replica x --out "$T/sx"
	run_ok "$sc: ingest x" "$BV" ingest "$D" --rp "$T/sx"
	run_ok "$sc: seed import ga" "$BV" seed import "$D" "$T/m"
	run_ok "$sc: export the imported c" "$BV" export "$D" c@latest "$T/e"
	cmp -s "$T/e" "$T/img"
	ok $? "$sc: the imported c is bit for bit"
	run_ok "$sc: verify after the import" "$BV" verify "$D"
done
[ "$(chunks "$T/d-store")" = 32 ]
ok $? "store scope: the seed dedups against x (32 chunks)"
[ "$(chunks "$T/d-group")" = 64 ]
ok $? "group scope: the seed's group is stored apart from x (64 chunks)"

# GC frees b's copy once b goes; a and c still read.
run_ok "group: replica rm b" "$BV" replica rm "$S" b
run_ok "group: gc" "$BV" gc "$S"
[ "$(chunks "$S")" = 32 ]
ok $? "group: gc leaves ga's 32 chunks"
run_ok "group: export c@2 after gc" "$BV" export "$S" c@2 "$T/e"
cmp -s "$T/e" "$T/img"
ok $? "group: c@2 is bit for bit after gc"

# The index rebuilt from the journal keeps the scope.
rm -rf "$S/index"
run_ok "group: index rebuild" "$BV" index rebuild "$S"
run_ok "group: stats after the rebuild" "$BV" stats "$S"
grep -Eq '^dedup scope +group$' "$T/out"
ok $? "group: the rebuilt index keeps the scope"
run_ok "group: export a@1 after the rebuild" "$BV" export "$S" a@1 "$T/e"
cmp -s "$T/e" "$T/img"
ok $? "group: a@1 is bit for bit after the rebuild"
run_ok "group: mkstream c over ga@2" "$BV" mkstream "$T/img" --replica c \
	--base 2 --out "$T/sc3"
run_ok "group: ingest c again" "$BV" ingest "$S" --rp "$T/sc3"
[ "$(chunks "$S")" = 32 ]
ok $? "group: after the rebuild, c still dedups within ga"

done_testing
