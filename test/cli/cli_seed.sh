#!/usr/bin/env bash
# cli-seed: seed sets through the real tool (storage/SEED.md). An RP
# exported as a seed and imported into an empty store reads back bit for
# bit with its identity, label and time, and verify is clean; a store
# that holds similar data gets only the chunks it lacks; a set over three
# media imports in reverse order; an export killed with -9 at random
# moments resumes, 20 times, each set importing bit-exact. Bad input is
# refused with a message naming it, the store unchanged: a missing
# medium, a damaged pack, a medium of another set, a wrong key, a
# tampered or cut encrypted pack or manifest, a replica with another
# history, a folder without room.
. "$(dirname "$0")/lib.sh"

S=$T/store
mkimg "$T/a.img" 16
cp "$T/a.img" "$T/b.img"
poke "$T/b.img" 1048576 262144
run_ok "init" "$BV" init "$S"
run_ok "a full" sh -c "'$BV' mkstream '$T/a.img' --replica vm1 | '$BV' ingest '$S' --rp --label monday -"
run_ok "an express full" sh -c "'$BV' mkstream '$T/b.img' --replica vm1 --base 1 | '$BV' ingest '$S' --rp --label tuesday -"

# The numbers of a --json answer: field NAME of file F.
jnum() {
	sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$1"
}

# ---- export, verify, import into an empty store ------------------------
run_ok "seed export vm1@2" "$BV" seed export "$S" vm1@2 --to "$T/m1" --json
cp "$T/out" "$T/x.json"
json_ok "$T/x.json"
ok $? "export --json is JSON"
[ "$(stat -c %a "$T/m1")" = 700 ] && ! find "$T/m1" -type f ! -perm 600 | grep -q .
ok $? "the medium is private (0700 folder, 0600 files)"
run_ok "seed verify" "$BV" seed verify "$T/m1"
grep -q "intact: 1 medium" "$T/out"
ok $? "verify says the set is intact"
run_ok "init an empty store" "$BV" init "$T/s2"
run_ok "seed import" "$BV" seed import "$T/s2" "$T/m1" --json
cp "$T/out" "$T/i.json"
[ "$(jnum "$T/i.json" chunks_new)" = "$(jnum "$T/x.json" entries)" ]
ok $? "an empty store gets every distinct chunk of the set"
run_ok "export the imported RP" "$BV" export "$T/s2" vm1@latest "$T/b.out"
cmp -s "$T/b.img" "$T/b.out"
ok $? "the imported RP is bit-exact"
run_ok "verify the store" "$BV" verify "$T/s2"
# The RP's line of rp ls --json, without its number and version (the
# store's own).
rp_line() {
	"$BV" rp ls "$1" vm1 --json | grep "\"rp\": $2," |
		sed 's/"rp": [0-9]*//; s/"version": [0-9]*//'
}
rp_line "$S" 2 >"$T/rp.src"
rp_line "$T/s2" 1 >"$T/rp.dst"
grep -q identity "$T/rp.src" && cmp -s "$T/rp.src" "$T/rp.dst"
ok $? "the RP keeps its identity, label, time and size"
snapshot "$T/s2" imported
run_ok "importing the set again" "$BV" seed import "$T/s2" "$T/m1"
grep -q "already imported" "$T/out"
ok $? "says it was imported already"
same_snapshot "$T/s2" imported "and changes nothing"
cp "$T/b.img" "$T/c.img"
poke "$T/c.img" 6291456 131072
run_ok "a third RP at the source" sh -c "'$BV' mkstream '$T/c.img' --replica vm1 --base 2 | '$BV' ingest '$S' --rp -"
run_ok "its diff from the seed's RP applies on top of the seed" sh -c \
	"'$BV' diff '$S' vm1@2 vm1@3 | '$BV' ingest '$T/s2' --rp -"
run_ok "export" "$BV" export "$T/s2" vm1@latest "$T/c.out"
cmp -s "$T/c.img" "$T/c.out"
ok $? "the history goes on from the seed, bit-exact"
run_ok "importing the set after that" "$BV" seed import "$T/s2" "$T/m1"
grep -q "already imported" "$T/out"
ok $? "still says it was imported already"

# ---- a store with similar data gets only what it lacks -----------------
run_ok "init a third store" "$BV" init "$T/s3"
run_ok "it holds the older disk as another replica" sh -c \
	"'$BV' mkstream '$T/a.img' --replica old | '$BV' ingest '$T/s3' --rp -"
run_ok "seed import there" "$BV" seed import "$T/s3" "$T/m1" --json
new=$(jnum "$T/out" chunks_new)
[ "$new" = 4 ]
ok $? "only the 4 chunks it lacked were stored (stored $new)"
run_ok "export" "$BV" export "$T/s3" vm1@latest "$T/b3.out"
cmp -s "$T/b.img" "$T/b3.out"
ok $? "and the RP is bit-exact"

# ---- three media, encrypted, imported in reverse order -----------------
run_ok "seed keygen" "$BV" seed keygen --out "$T/key"
[ "$(stat -c %a "$T/key")" = 600 ]
ok $? "the key file is 0600"
run_fail "keygen never overwrites" 1 "exists" "$BV" seed keygen --out "$T/key"
run_ok "another key" "$BV" seed keygen --out "$T/key2"
run_ok "export over three media" "$BV" seed export "$S" vm1@2 \
	--to "$T/e1,$T/e2,$T/e3" --media-size 4M --key "$T/key" --json
[ "$(jnum "$T/out" media)" = 3 ]
ok $? "the set takes three media"
run_ok "verify in any order" "$BV" seed verify "$T/e3" "$T/e1" "$T/e2" --key "$T/key"
run_ok "init" "$BV" init "$T/s4"
run_ok "import in reverse order (the fingerprints in a temporary file)" \
	env BV_SEED_FP_MEM=0 "$BV" seed import "$T/s4" "$T/e3" "$T/e2" "$T/e1" --key "$T/key"
run_ok "export" "$BV" export "$T/s4" vm1@latest "$T/b4.out"
cmp -s "$T/b.img" "$T/b4.out"
ok $? "the RP imported from three media is bit-exact"

# One folder for three media: it writes the first and names the next.
run_fail "one folder for three media" 3 "medium 2 of 3 is needed next" \
	"$BV" seed export "$S" vm1@2 --to "$T/f1" --media-size 4M
run_ok "the second medium" "$BV" seed export "$S" vm1@2 --to "$T/f2,$T/f3" \
	--media-size 4M --medium 2
run_ok "the three verify" "$BV" seed verify "$T/f1" "$T/f2" "$T/f3"

# ---- a group: every member in one RP -----------------------------------
mkimg "$T/g2.img" 8
run_ok "init a group store" "$BV" init "$T/gs"
run_ok "two replicas" sh -c "'$BV' replica create '$T/gs' ga --size 16M &&
	'$BV' replica create '$T/gs' gb --size 8M"
run_ok "in one group" "$BV" group create "$T/gs" vmg ga gb
run_ok "an RP of both" sh -c "'$BV' mkstream '$T/b.img' --replica ga --out '$T/sa' &&
	'$BV' mkstream '$T/g2.img' --replica gb --out '$T/sb' &&
	'$BV' ingest '$T/gs' --rp --label both '$T/sa' '$T/sb'"
run_ok "seed export of the group" "$BV" seed export "$T/gs" vmg@1 --to "$T/gm"
run_ok "init" "$BV" init "$T/gd"
run_ok "seed import of the group" "$BV" seed import "$T/gd" "$T/gm"
"$BV" group ls "$T/gd" >"$T/out"
grep -q 'members: ga gb' "$T/out"
ok $? "the group comes back with both members"
"$BV" export "$T/gd" ga@1 "$T/ga.out" && cmp -s "$T/b.img" "$T/ga.out" &&
	"$BV" export "$T/gd" gb@1 "$T/gb.out" && cmp -s "$T/g2.img" "$T/gb.out"
ok $? "both members of RP 1 are bit-exact"
run_ok "REPLICA@RP of a group member" "$BV" seed export "$T/gs" gb@1 --to "$T/gbm" --json
[ "$(jnum "$T/out" replicas)" = 1 ]
ok $? "is that replica alone"

# ---- bad input: clear errors, the store unchanged ----------------------
run_ok "init the target" "$BV" init "$T/t"
run_ok "it has a replica of its own" sh -c \
	"'$BV' mkstream '$T/a.img' --replica other | '$BV' ingest '$T/t' --rp -"
snapshot "$T/t" t0
run_fail "a missing medium is named" 1 "medium 2 of 3 is missing" \
	"$BV" seed import "$T/t" "$T/e1" "$T/e3" --key "$T/key"
run_fail "verify names it too" 1 "medium 2 of 3 is missing" \
	"$BV" seed verify "$T/e3" "$T/e1" --key "$T/key"
run_fail "an encrypted set without its key" 1 "encrypted: give its key" \
	"$BV" seed import "$T/t" "$T/e1" "$T/e2" "$T/e3"
run_fail "a wrong key" 1 "wrong key" \
	"$BV" seed import "$T/t" "$T/e1" "$T/e2" "$T/e3" --key "$T/key2"
run_fail "a medium of another set" 1 "of set" \
	"$BV" seed import "$T/t" "$T/e1" "$T/f2" "$T/e3" --key "$T/key"
cp -r "$T/m1" "$T/bad"
pack=$(ls "$T/bad"/pack.* | head -n 1)
flip_byte "$pack" 100000
run_fail "a damaged pack names the file" 1 "${pack##*/}: .*(checksum mismatch|digest does not match)" \
	"$BV" seed import "$T/t" "$T/bad"
run_fail "verify finds it" 1 "${pack##*/}" "$BV" seed verify "$T/bad"
# Every file of a plain set: a flipped byte anywhere is found, naming it.
bad=0
for f in "$T/m1"/*; do
	n=${f##*/}
	rm -rf "$T/bad"
	cp -r "$T/m1" "$T/bad"
	sz=$(stat -c %s "$f")
	flip_byte "$T/bad/$n" $(((RANDOM * 32768 + RANDOM) % sz))
	if "$BV" seed import "$T/t" "$T/bad" >"$T/out" 2>"$T/err" ||
		! grep -q "$n" "$T/err"; then
		bad=1; diag "a flipped byte in $n: not found"; show_output
	fi
done
ok $bad "a byte flipped in any file of a plain set is found, naming the file"
for f in pack.000003 manifest; do
	rm -rf "$T/bad"
	cp -r "$T/e1" "$T/bad"
	flip_byte "$T/bad/$f" 300
	run_fail "a tampered encrypted $f" 1 "$f: authentication failed" \
		"$BV" seed import "$T/t" "$T/bad" "$T/e2" "$T/e3" --key "$T/key"
	rm -rf "$T/bad"
	cp -r "$T/e1" "$T/bad"
	truncate -s -17 "$T/bad/$f"
	run_fail "a cut encrypted $f" 1 "$f: .*(truncated|ends early)" \
		"$BV" seed import "$T/t" "$T/bad" "$T/e2" "$T/e3" --key "$T/key"
done
rm -rf "$T/bad"
cp -r "$T/e1" "$T/bad"
mv "$T/bad/pack.000002" "$T/p"
mv "$T/bad/pack.000003" "$T/bad/pack.000002"
mv "$T/p" "$T/bad/pack.000003"
run_fail "swapped encrypted packs" 1 "pack.00000[23]" \
	"$BV" seed import "$T/t" "$T/bad" "$T/e2" "$T/e3" --key "$T/key"
rm -f "$T/bad/complete"
run_fail "a medium whose export did not finish" 1 "complete: .*did not finish" \
	"$BV" seed import "$T/t" "$T/bad" "$T/e2" "$T/e3" --key "$T/key"
run_ok "vm1 with another history" sh -c \
	"'$BV' mkstream '$T/a.img' --replica vm1 | '$BV' ingest '$T/t' --rp -"
snapshot "$T/t" t1
run_fail "a replica with another history is refused, naming both" 1 \
	"vm1 exists with another history: its head is version [0-9a-f]{32}, the seed's is [0-9a-f]{32}" \
	"$BV" seed import "$T/t" "$T/m1"
same_snapshot "$T/t" t1 "the target is unchanged by every refused import"
run_fail "seed import wants a folder" 2 "missing DIR" "$BV" seed import "$T/t"
run_fail "seed export wants --to" 2 "--to" "$BV" seed export "$S" vm1@1
run_fail "a folder that is no medium" 1 "not a seed medium" \
	"$BV" seed verify "$T"
run_fail "export over another set's medium" 1 "holds medium 1 of seed set" \
	"$BV" seed export "$S" vm1@1 --to "$T/m1"
if [ "$(id -u)" = 0 ] && mkdir -p "$T/small" &&
	mount -t tmpfs -o size=2M tmpfs "$T/small" 2>/dev/null; then
	run_fail "a folder without room" 1 "no room for medium 1 of 1" \
		"$BV" seed export "$S" vm1@1 --to "$T/small/m"
	[ -z "$(ls -A "$T/small/m" 2>/dev/null)" ]
	ok $? "and writes nothing there"
	umount "$T/small"
else
	skip "a folder without room" "needs root to mount a small tmpfs"
	skip "and writes nothing there" "needs root"
fi

# ---- an export killed at random moments resumes ------------------------
# (The 100 processes of this loop run without meson's MALLOC_PERTURB_,
# which has every large buffer of a session filled: it would triple the
# test's time.)
bad=0 kept=0
for i in $(seq 1 20); do
	rm -rf "$T/k" "$T/ks"
	env -u MALLOC_PERTURB_ "$BV" seed export "$T/gs" gb@1 --to "$T/k" \
		--pack-size 128K >/dev/null 2>&1 &
	pid=$!
	sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	if ! env -u MALLOC_PERTURB_ "$BV" seed export "$T/gs" gb@1 --to "$T/k" \
		--pack-size 128K --json >"$T/out" 2>"$T/err"; then
		bad=1; diag "round $i: resume failed"; show_output; continue
	fi
	[ "$(jnum "$T/out" bytes_written)" -le "$(jnum "$T/out" bytes)" ] ||
		{ bad=1; diag "round $i: resume wrote more than the set"; }
	kept=$((kept + $(jnum "$T/out" files_kept)))
	if ! env -u MALLOC_PERTURB_ "$BV" init "$T/ks" >/dev/null ||
		! env -u MALLOC_PERTURB_ "$BV" seed import "$T/ks" "$T/k" \
			>/dev/null 2>"$T/err" ||
		! env -u MALLOC_PERTURB_ "$BV" export "$T/ks" gb@latest \
			"$T/k.out" 2>>"$T/err" ||
		! cmp -s "$T/g2.img" "$T/k.out"; then
		bad=1; diag "round $i: the resumed set is not bit-exact"; show_output
	fi
done
ok $bad "20 exports killed with -9 and resumed import bit-exact"
diag "packs kept by the resumed runs: $kept"

done_testing
