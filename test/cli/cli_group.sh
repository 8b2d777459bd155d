#!/usr/bin/env bash
# cli_group.sh: groups. Two replicas in one group; one ingest of two
# streams makes one RP holding both; group create refuses unknown
# replicas, replicas already grouped or with RPs; an ingest spanning two
# groups, or with one bad stream, changes nothing.
. "$(dirname "$0")/lib.sh"

S=$T/store
run_ok "init" "$BV" init "$S" || done_testing
run_ok "replica create a" "$BV" replica create "$S" a --size 4M
run_ok "replica create b" "$BV" replica create "$S" b --size 4M --chunk-size 64K
run_ok "replica create c" "$BV" replica create "$S" c --size 4M
run_fail "replica create: name taken" 1 'exist|taken|already' \
	"$BV" replica create "$S" a --size 4M
snapshot "$S" empty
run_fail "group create with an unknown replica: refused" 1 'nosuch' \
	"$BV" group create "$S" g a nosuch
same_snapshot "$S" empty "unknown replica: store unchanged"
run_ok "group create g a b" "$BV" group create "$S" g a b
run_fail "group create: a replica already grouped" 1 '\ba\b|group' \
	"$BV" group create "$S" g2 a c
run_fail "group create: the group name taken" 1 'exist|taken|already|\bg\b' \
	"$BV" group create "$S" g c

mkimg "$T/ia" 4
mkimg "$T/ib" 4
mkimg "$T/ic" 4
run_ok "mkstream a" "$BV" mkstream "$T/ia" --replica a --out "$T/sa"
run_ok "mkstream b" "$BV" mkstream "$T/ib" --replica b --out "$T/sb"
run_ok "mkstream c" "$BV" mkstream "$T/ic" --replica c --out "$T/sc"
snapshot "$S" before

run_fail "ingest spanning two groups: refused" 1 'group' \
	"$BV" ingest "$S" --rp "$T/sa" "$T/sc"
same_snapshot "$S" before "two groups: store unchanged"
cp "$T/sb" "$T/sb-bad"
head -c $(($(stat -c %s "$T/sb") - 1)) "$T/sb" >"$T/sb-bad"
run_fail "ingest of a good and a truncated stream: refused" 1 \
	'truncat|ended early|ends inside|end of|checksum' "$BV" ingest "$S" --rp "$T/sa" "$T/sb-bad"
same_snapshot "$S" before "good + truncated: store unchanged"

run_ok "ingest two streams, one RP" "$BV" ingest "$S" --rp --label both "$T/sa" "$T/sb"
grep -q 'committed 2 streams.*RP 1$' "$T/out"; ok $? "one commit, RP 1"
run_ok "rp ls g --json" "$BV" rp ls "$S" g --json
cp "$T/out" "$T/g.json"
json_ok "$T/g.json"; ok $? "valid JSON"
[ "$(grep -c '"rp":' "$T/g.json")" -eq 1 ] && grep -q '"members": 2' "$T/g.json"
ok $? "group g has one RP with two members"
run_ok "export a@1" "$BV" export "$S" a@1 "$T/ea"
cmp "$T/ea" "$T/ia" >/dev/null; ok $? "a@1 equals image a"
run_ok "export b@1" "$BV" export "$S" b@1 "$T/eb"
cmp "$T/eb" "$T/ib" >/dev/null; ok $? "b@1 equals image b"

# An RP of the group made by name of a member; both members are in it.
poke "$T/ia" 65536 65536
echo "65536 65536" >"$T/ext"
run_ok "mkstream a base 1" "$BV" mkstream "$T/ia" --replica a --base 1 \
	--extents "$T/ext" --out "$T/sa2"
run_ok "ingest a alone (no RP)" "$BV" ingest "$S" "$T/sa2"
run_ok "rp create by member name" "$BV" rp create "$S" a --label by-member
grep -q '^RP 2$' "$T/out"; ok $? "RP 2 of the group"
run_ok "export a@2" "$BV" export "$S" a@2 "$T/ea2"
cmp "$T/ea2" "$T/ia" >/dev/null; ok $? "a@2 has the change"
run_ok "export b@2" "$BV" export "$S" b@2 "$T/eb2"
cmp "$T/eb2" "$T/ib" >/dev/null; ok $? "b@2 is b unchanged"
run_ok "export a@1 again" "$BV" export "$S" a@1 "$T/ea1"
cmp "$T/ea1" "$T/ea" >/dev/null; ok $? "a@1 unchanged by RP 2"

# A replica with an RP cannot join a group.
run_ok "ingest c with an RP" "$BV" ingest "$S" --rp "$T/sc"
snapshot "$S" after
run_fail "group create: a replica with RPs" 1 '\bc\b|RP|recovery' \
	"$BV" group create "$S" g3 c
same_snapshot "$S" after "refused group create: store unchanged"
run_ok "rp ls all --json" "$BV" rp ls "$S" --json
cp "$T/out" "$T/all.json"
json_ok "$T/all.json"; ok $? "valid JSON"
[ "$(grep -c '"rp":' "$T/all.json")" -eq 3 ]; ok $? "three RPs in all"

done_testing
