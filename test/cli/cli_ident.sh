#!/usr/bin/env bash
# cli_ident.sh: a stream applies only to the history it was made from
# (engine/STREAM.md, "Version identities"). Two stores hold a replica
# vm1 of different histories: a diff of one is refused by the other with
# both identities named, and changes nothing, even with --base claiming
# the other's latest RP; a chain of diffs into a new store goes on with
# the same identities, and a diff made there applies back. mkstream still
# writes version 1 streams. With BV_OLD_BVAULT (a bvault built from commit
# 2ee33dd, before identities), a store it made is read, ingested into and
# still read by it.
. "$(dirname "$0")/lib.sh"

A=$T/a B=$T/b C=$T/c
MIB=1048576

# id STORE RP: the identity of vm1's version at RP, from rp ls --json.
id() {
	"$BV" rp ls "$1" vm1 --json |
		sed -n "s/.*\"rp\": $2,.*\"identity\": \"\\([0-9a-f]*\\)\".*/\\1/p"
}

for s in "$A" "$B" "$C"; do run_ok "init $s" "$BV" init "$s" || done_testing; done
mkimg "$T/a1" 4
mkimg "$T/b1" 4
run_ok "mkstream" "$BV" mkstream "$T/a1" --replica vm1 --out "$T/a1.bvs"
[ "$(od -An -tu1 -j 8 -N1 "$T/a1.bvs" | tr -d ' ')" = 1 ]
ok $? "mkstream writes a version 1 stream (no identity)"
run_ok "A: RP 1" "$BV" ingest "$A" --rp "$T/a1.bvs"
cp "$T/a1" "$T/a2"
poke "$T/a2" $MIB 65536
echo "$MIB 65536" >"$T/ext"
run_ok "A: RP 2" sh -c "'$BV' mkstream '$T/a2' --replica vm1 --base 1 \
	--extents '$T/ext' | '$BV' ingest '$A' --rp -"
cp "$T/a2" "$T/a3"
poke "$T/a3" $((2 * MIB)) 65536
echo "$((2 * MIB)) 65536" >"$T/ext"
run_ok "A: RP 3" sh -c "'$BV' mkstream '$T/a3' --replica vm1 --base 2 \
	--extents '$T/ext' | '$BV' ingest '$A' --rp -"
run_ok "B: RP 1 from another image" sh -c "'$BV' mkstream '$T/b1' \
	--replica vm1 | '$BV' ingest '$B' --rp -"
for i in 1 2 3; do
	mkimg "$T/b1" 4
	run_ok "B: RP $((i + 1))" sh -c "'$BV' mkstream '$T/b1' --replica vm1 \
		--base $i | '$BV' ingest '$B' --rp -"
done
IA1=$(id "$A" 1) IB1=$(id "$B" 1) IB4=$(id "$B" 4)
[ ${#IA1} = 32 ] && [ ${#IB1} = 32 ] && [ "$IA1" != "$IB1" ]
ok $? "rp ls --json shows identities, different in A and B"
"$BV" ls "$B" --json | grep -q "\"head_identity\": \"$IB4\""
ok $? "ls --json shows B's head identity"
snapshot "$B" before

run_ok "diff A 1..2" "$BV" diff "$A" vm1@1 vm1@2 --out "$T/a12.bvs"
[ "$(od -An -tu1 -j 8 -N1 "$T/a12.bvs" | tr -d ' ')" = 2 ]
ok $? "a diff is a version 2 stream"
run_fail "A's diff 1..2 into B: refused" 1 "replica vm1: stream base is version $IA1 but the latest version is $IB4" \
	"$BV" ingest "$B" --rp "$T/a12.bvs"
same_snapshot "$B" before "B unchanged"
run_ok "diff A 1..2 --base 4" "$BV" diff "$A" vm1@1 vm1@2 --base 4 --out "$T/a12b4.bvs"
run_fail "with --base 4, B's latest RP: refused all the same" 1 "version $IA1 .*$IB4" \
	"$BV" ingest "$B" --rp "$T/a12b4.bvs"
same_snapshot "$B" before "B unchanged"

for i in 1 2 3; do
	run_ok "diff A $((i - 1))..$i into C" sh -c "'$BV' diff '$A' vm1@$((i - 1)) \
		vm1@$i | '$BV' ingest '$C' --rp -"
done
[ "$(id "$A" 1) $(id "$A" 2) $(id "$A" 3)" = "$(id "$C" 1) $(id "$C" 2) $(id "$C" 3)" ]
ok $? "C's RPs carry A's identities"
run_ok "export C@3" "$BV" export "$C" vm1@3 "$T/c3"
cmp "$T/c3" "$T/a3" >/dev/null; ok $? "C@3 equals A@3"
cp "$T/a3" "$T/c4"
poke "$T/c4" $((3 * MIB)) 65536
echo "$((3 * MIB)) 65536" >"$T/ext"
run_ok "C: RP 4 of its own" sh -c "'$BV' mkstream '$T/c4' --replica vm1 \
	--base 3 --extents '$T/ext' | '$BV' ingest '$C' --rp -"
run_ok "C's diff 3..4 applies back to A" sh -c "'$BV' diff '$C' vm1@3 vm1@4 |
	'$BV' ingest '$A' --rp -"
run_ok "export A@4" "$BV" export "$A" vm1@4 "$T/a4"
cmp "$T/a4" "$T/c4" >/dev/null; ok $? "A@4 equals C@4"
[ "$(id "$A" 4)" = "$(id "$C" 4)" ]; ok $? "with C@4's identity"

OLD=${BV_OLD_BVAULT:-}
if [ -n "$OLD" ] && [ -x "$OLD" ]; then
	O=$T/old
	run_ok "old build: init" "$OLD" init "$O"
	run_ok "old build: RP 1" "$OLD" ingest "$O" --rp "$T/a1.bvs"
	run_ok "reads the old store" "$BV" rp ls "$O" vm1 --json
	grep -q '"identity": null' "$T/out"; ok $? "its RP has no identity"
	run_ok "the old store takes A's diff 1..2 by RP number" "$BV" ingest "$O" --rp "$T/a12.bvs"
	[ "$(id "$O" 2)" = "$(id "$A" 2)" ]; ok $? "and A@2's identity"
	run_ok "export old@1" "$BV" export "$O" vm1@1 "$T/o1"
	cmp "$T/o1" "$T/a1" >/dev/null; ok $? "the old RP is bit for bit"
	run_ok "the old build reads it still" "$OLD" export "$O" vm1@2 "$T/o2"
	cmp "$T/o2" "$T/a2" >/dev/null; ok $? "including the new RP"
	run_ok "old build: verify" "$OLD" verify "$O"
else
	skip "a store of the build before identities" "BV_OLD_BVAULT not set"
fi

done_testing
