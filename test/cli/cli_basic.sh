#!/usr/bin/env bash
# cli_basic.sh: the happy path of the CLI. A full ingest and two express
# fulls (one through stdin) make RPs 1..3; each RP exports byte for byte
# as the image it came from; listings are valid JSON; a full diff and an
# incremental diff rebuild the replica in other stores; verify finds the
# stores intact, and a byte flipped in a copy.
. "$(dirname "$0")/lib.sh"

S=$T/store
run_ok "init" "$BV" init "$S" || { done_testing; }
mkimg "$T/img" 8
cp --sparse=always "$T/img" "$T/v1"

run_ok "mkstream full" "$BV" mkstream "$T/img" --replica vm1 --out "$T/s1"
run_ok "ingest full with --rp" "$BV" ingest "$S" --rp --label "first full" "$T/s1"
grep -q 'RP 1$' "$T/out"; ok $? "ingest reports RP 1"

# Express full 1: changed extents, one of them not chunk-aligned.
poke "$T/img" 1048576 65536
poke "$T/img" $((3 * 1048576 + 4096)) 8192
poke_zero "$T/img" 0 65536
printf '%s\n' "1048576 65536" "# a comment" "" \
	"$((3 * 1048576 + 4096)) 8192" "0 65536" >"$T/ext2"
cp --sparse=always "$T/img" "$T/v2"
run_ok "mkstream --extents --base 1" "$BV" mkstream "$T/img" --replica vm1 \
	--base 1 --extents "$T/ext2" --out "$T/s2"
run_ok "ingest express full" "$BV" ingest "$S" --rp "$T/s2"
grep -q 'RP 2$' "$T/out"; ok $? "ingest reports RP 2"

# Express full 2 through a pipe, with a change in the hole.
poke "$T/img" $((7 * 1048576)) 131072
echo "$((7 * 1048576)) 131072" >"$T/ext3"
cp --sparse=always "$T/img" "$T/v3"
run_ok_stdin "ingest from stdin" "$BV" ingest "$S" --rp --label "third" - \
	< <("$BV" mkstream "$T/img" --replica vm1 --base 2 --extents "$T/ext3")
grep -q 'RP 3$' "$T/out"; ok $? "ingest reports RP 3"

run_ok "rp ls" "$BV" rp ls "$S"
[ "$(grep -c '^vm1 ' "$T/out")" -eq 3 ]; ok $? "rp ls shows 3 RPs"
run_ok "rp ls --json" "$BV" rp ls "$S" vm1 --json
cp "$T/out" "$T/rp.json"
json_ok "$T/rp.json"; ok $? "rp ls --json is valid JSON"
grep -q '"rp": 3' "$T/rp.json" && grep -q '"label": "first full"' "$T/rp.json"
ok $? "rp ls --json names RP 3 and the label"
grep -q '"size": 8388608' "$T/rp.json"; ok $? "rp ls REPLICA --json carries the size"

run_ok "ls --json" "$BV" ls "$S" --json
cp "$T/out" "$T/ls.json"
json_ok "$T/ls.json"; ok $? "ls --json is valid JSON"
grep -q '"name": "vm1"' "$T/ls.json" && grep -q '"latest_rp": 3' "$T/ls.json"
ok $? "ls --json shows vm1 at RP 3"
run_ok "ls" "$BV" ls "$S"

run_ok "stats" "$BV" stats "$S"
grep -q 'dedup ratio' "$T/out" && grep -q 'compression ratio' "$T/out"
ok $? "stats shows the ratios"
run_ok "stats --json" "$BV" stats "$S" --json
cp "$T/out" "$T/stats.json"
json_ok "$T/stats.json"; ok $? "stats --json is valid JSON"
grep -q '"logical_bytes": 8388608' "$T/stats.json"; ok $? "stats logical bytes"

for i in 1 2 3; do
	run_ok "export vm1@$i" "$BV" export "$S" "vm1@$i" "$T/e$i"
	cmp "$T/e$i" "$T/v$i" >/dev/null; ok $? "vm1@$i equals the image it came from"
done
run_ok "export vm1@latest" "$BV" export "$S" vm1@latest "$T/el"
cmp "$T/el" "$T/v3" >/dev/null; ok $? "vm1@latest equals the last image"
run_ok "export vm1@0 (head)" "$BV" export "$S" vm1@0 "$T/eh"
cmp "$T/eh" "$T/v3" >/dev/null; ok $? "vm1@0 equals the last image"
# Holes: an export of a mostly-zero replica should not use all its blocks.
used=$(($(stat -c %b "$T/e1") * 512))
[ "$used" -lt 8388608 ]; ok $? "export leaves zeros as holes ($used bytes used)"

# rp create with a label JSON must escape.
run_ok "rp create with an odd label" "$BV" rp create "$S" vm1 \
	--label "$(printf 'q"b\\s\tt\001')" --consistency app
grep -q '^RP 4$' "$T/out"; ok $? "rp create prints RP 4"
run_ok "rp ls --json after the odd label" "$BV" rp ls "$S" --json
cp "$T/out" "$T/rp2.json"
json_ok "$T/rp2.json"; ok $? "odd label still gives valid JSON"
grep -qF '"label": "q\"b\\s\tt\u0001"' "$T/rp2.json"; ok $? "label escaped"
grep -q '"consistency": "app"' "$T/rp2.json"; ok $? "consistency app recorded"
run_ok "export vm1@4" "$BV" export "$S" vm1@4 "$T/e4"
cmp "$T/e4" "$T/v3" >/dev/null; ok $? "vm1@4 equals the last image"

# A full diff rebuilds the replica in another store.
run_ok "diff vm1@0 vm1@3" "$BV" diff "$S" vm1@0 vm1@3 --out "$T/d03"
S2=$T/store2
run_ok "init second store" "$BV" init "$S2"
run_ok "ingest the full diff" "$BV" ingest "$S2" --rp "$T/d03"
run_ok "export from the second store" "$BV" export "$S2" vm1@latest "$T/x2"
cmp "$T/x2" "$T/v3" >/dev/null; ok $? "second store's copy equals the image"

# Full to RP 1, then the incremental diff 1 -> 3.
S3=$T/store3
run_ok "init third store" "$BV" init "$S3"
"$BV" diff "$S" vm1@0 vm1@1 >"$T/d01" 2>"$T/err"; ok $? "diff to stdout"
run_ok "ingest diff 0..1" "$BV" ingest "$S3" --rp "$T/d01"
run_ok "diff vm1@1 vm1@latest" "$BV" diff "$S" vm1@1 vm1@latest --out "$T/d13"
run_ok "ingest diff 1..3" "$BV" ingest "$S3" --rp "$T/d13"
run_ok "export from the third store" "$BV" export "$S3" vm1@2 "$T/x3"
cmp "$T/x3" "$T/v3" >/dev/null; ok $? "incremental diff rebuilds the image"
run_ok "export RP 1 from the third store" "$BV" export "$S3" vm1@1 "$T/x31"
cmp "$T/x31" "$T/v1" >/dev/null; ok $? "third store keeps RP 1"

# A replica never written (all zeros, no map entries) diffs and exports.
run_ok "replica create empty" "$BV" replica create "$S" empty --size 1M
run_ok "rp create of it" "$BV" rp create "$S" empty
run_ok "export empty@1" "$BV" export "$S" empty@1 "$T/ez"
cmp "$T/ez" <(head -c 1048576 /dev/zero) >/dev/null; ok $? "empty@1 is all zeros"
run_ok "diff empty@0 empty@1" "$BV" diff "$S" empty@0 empty@1 --out "$T/dz"
run_ok "ingest that diff elsewhere" "$BV" ingest "$S2" --rp "$T/dz"
run_ok "export it there" "$BV" export "$S2" empty@1 "$T/ez2"
cmp "$T/ez2" "$T/ez" >/dev/null; ok $? "the copy is all zeros, 1 MiB"

# verify: intact stores, then a damaged container in a copy of one.
run_ok "verify" "$BV" verify "$S"
grep -q 'intact$' "$T/out"; ok $? "verify says intact"
run_ok "verify --json" "$BV" verify "$S2" --json
cp "$T/out" "$T/verify.json"
json_ok "$T/verify.json"; ok $? "verify --json is valid JSON"
grep -q '"problems": 0' "$T/verify.json"; ok $? "verify --json: no problems"
cp -a "$S3" "$T/store4"
flip_byte "$T/store4/containers/00000001.bvc" 4200
run_fail "verify finds a flipped byte" 1 '00000001.bvc.*(damaged|checksum)' \
	"$BV" verify "$T/store4"
grep -q 'DAMAGED$' "$T/out"; ok $? "verify says DAMAGED"
run_ok "the damaged copy's neighbour still verifies" "$BV" verify "$S3"

done_testing
