#!/usr/bin/env bash
# net_heal.sh: a chunk found bad is healed by the agent's next run
# (INVARIANTS.md 13), end to end with the real bvaultd and bvault-agent:
#  - three replicas through bvaultd: h1 (two RPs), h2 sharing h1's first
#    chunks, h3 sharing nothing; one byte of a record h1@1, h1@2 and h2@1
#    all need is flipped in its container file (the daemon stopped);
#  - verify --read-only beside the running daemon finds the chunk and
#    every RP range that needs it, and marks nothing (it says so); verify
#    beside it is carried out by bvaultd, which marks it; stats count it;
#  - h3@1 exports bit for bit; an export of h1@1 fails naming the chunk,
#    the container, the offset and the range;
#  - the agent's consistency check (--compare) sends that chunk again (its
#    digest is unknown now): h1@1, h1@2 and h2@1 export bit for bit, the
#    mark is gone, and a second verify finds the store intact, the old
#    record reported as garbage;
#  - verify of one RP or one group covers what it reads, on any number
#    of readers; check finds the index consistent (it reads no payload);
#  - a second damaged chunk is healed by --full.
# Usage: net_heal.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"

C=65536
agent() {
	"$BVA" --unix "$SOCK" --name host1 --secret-file "$T/host1.key" "$@" \
		>"$T/out" 2>"$T/err" </dev/null
}

# flip STORE-FILE-OF-CHUNK: flips byte 1000 of the record holding the 64
# KiB at offset $2 of image $1 (random data is stored raw: its bytes are
# in the container as they are).
flip() {
	python3 - "$S/containers" "$1" "$2" <<'EOF'
import os, sys
d, img, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(img, 'rb') as f:
    f.seek(off)
    want = f.read(65536)
for n in sorted(os.listdir(d)):
    if not n.endswith('.bvc'):
        continue
    p = os.path.join(d, n)
    with open(p, 'r+b') as f:
        data = f.read()
        at = data.find(want)
        if at >= 0:
            f.seek(at + 1000)
            f.write(bytes([data[at + 1000] ^ 0x40]))
            sys.exit(0)
sys.exit(1)
EOF
}

command -v python3 >/dev/null || { skip "python3 missing" "needs python3"; done_testing; }
run_ok "init" "$BV" init "$S" || done_testing
"$BV" agent add "$S" host1 --group h1 --group h2 --group h3 >"$T/host1.key"
ok $? "agent add"
head -c $((64 * C)) /dev/urandom >"$T/i1"
head -c $((64 * C)) /dev/urandom >"$T/i3"
# h2: the first 16 chunks of h1, then its own.
{ head -c $((16 * C)) "$T/i1"; head -c $((48 * C)) /dev/urandom; } >"$T/i2"
start_server || done_testing
agent --disk h1="$T/i1" --full && cp "$T/i1" "$T/v1"
ok $? "h1@1: a full"
dd if=/dev/urandom of="$T/i1" bs=$C seek=20 count=1 conv=notrunc status=none
agent --disk h1="$T/i1" --compare && cp "$T/i1" "$T/v2"
ok $? "h1@2: chunk 20 changed"
agent --disk h2="$T/i2" --full && agent --disk h3="$T/i3" --full
ok $? "h2@1 and h3@1: a full each"
stop_server

flip "$T/v1" $((3 * C))
ok $? "a byte of chunk 3's record is flipped (h1@1, h1@2, h2@1 need it)"

start_server || done_testing
"$BV" verify "$S" --read-only >"$T/out" 2>"$T/err"
ok $(($? != 1)) "verify --read-only beside bvaultd: exit 1"
hex=$(sed -n 's/^damaged  chunk \([0-9a-f]\{32\}\) .*checksum mismatch$/\1/p' \
	"$T/out")
[ ${#hex} -eq 32 ]; ok $? "it names the damaged chunk: $hex"
for want in "h1@1 needs damaged or missing data: bytes 196608 to 262144 (chunk $hex)" \
	"h1@2 needs damaged or missing data: bytes 196608 to 262144 (chunk $hex)" \
	"h2@1 needs damaged or missing data: bytes 196608 to 262144 (chunk $hex)"; do
	grep -qF "needed   $want" "$T/out"; ok $? "it says: $want"
done
[ "$(grep -c '^needed' "$T/out")" -eq 3 ]; ok $? "and no other range"
grep -q '^not marked: 1 bad chunk' "$T/out"
ok $? "with --read-only it marks nothing, and says so"
n0=$(log_count 'admin #.*: running verify')
"$BV" verify "$S" --json >"$T/out" 2>"$T/err"
ok $(($? != 1)) "verify beside bvaultd: exit 1"
grep -q '"marked": 1' "$T/out"; ok $? "bvaultd ran it, and it marked the chunk"
[ "$(log_count 'admin #.*: running verify')" -gt "$n0" ]
ok $? "bvaultd's log shows it ran verify"
stop_server

"$BV" verify "$S" --json >"$T/out" 2>"$T/err"
ok $(($? != 1)) "verify with the daemon stopped: exit 1"
grep -q '"marked": 0' "$T/out"; ok $? "the chunk is marked already"
"$BV" stats "$S" --json >"$T/out" 2>&1
grep -q '"bad_chunks": 1' "$T/out"; ok $? "stats count one bad chunk"
# Scopes and readers.
run_ok "verify of h3@1 alone: intact" "$BV" verify "$S" h3@1
"$BV" verify "$S" h1@1 --jobs 1 >"$T/out" 2>"$T/err"
[ $? -eq 1 ] && [ "$(grep -c '^needed' "$T/out")" -eq 1 ] &&
	grep -q "^needed   h1@1 needs damaged or missing data: bytes 196608 to 262144 (chunk $hex)" "$T/out"
ok $? "verify of h1@1 (one reader): its range alone"
"$BV" verify "$S" h2 --jobs 3 >"$T/out" 2>"$T/err"
[ $? -eq 1 ] && [ "$(grep -c '^needed' "$T/out")" -eq 1 ] &&
	grep -q '^needed   h2@1 needs' "$T/out"
ok $? "verify of group h2 (three readers): h2@1's range alone"
run_fail "verify --jobs 0 is refused" 2 'jobs 0: not a number from 1 to 64' 	"$BV" verify "$S" --jobs 0
run_fail "verify of a missing RP is refused" 1 'no recovery point 9' 	"$BV" verify "$S" h1@9
run_ok "check: the index is consistent (payloads are verify's)" "$BV" check "$S"
run_ok "h3@1 needs nothing bad: it exports" "$BV" export "$S" h3@1 "$T/x3"
cmp -s "$T/x3" "$T/i3"; ok $? "h3@1 is bit for bit its image"
run_fail "export of h1@1 fails naming the chunk and the range" 1 \
	"chunk $hex \(.*00000001.bvc, offset [0-9]+\) is marked bad.*h1@1 needs it for bytes 196608 to 262144" \
	"$BV" export "$S" h1@1 "$T/x1"
[ ! -e "$T/x1" ]; ok $? "and leaves no file"

# The heal: the agent's next consistency check sends chunk 3 again.
start_server || done_testing
agent --disk h1="$T/i1" --compare
ok $? "h1: --compare"
grep -q 'compared 64 chunks, 1 differed' "$T/out"
ok $? "it sends the one chunk whose digest is unknown: $(head -1 "$T/out")"
for rp in h1@1:v1 h1@2:v2 h1@3:i1 h2@1:i2 h3@1:i3; do
	rm -f "$T/x"
	"$BV" export "$S" "${rp%%:*}" "$T/x" 2>"$T/err" && cmp -s "$T/x" "$T/${rp##*:}"
	ok $? "${rp%%:*} exports bit for bit (beside bvaultd)"
done
stop_server
"$BV" stats "$S" --json >"$T/out" 2>&1
grep -q '"bad_chunks": 0' "$T/out"; ok $? "the mark is gone"
run_ok "a second verify finds the store intact" "$BV" verify "$S"
grep -q '^unknown .*damaged bytes .* that no chunk index entry names (garbage' \
	"$T/out"
ok $? "the old record is reported as garbage"
grep -q '^damaged\|^needed' "$T/out"; ok $((! $?)) "and nothing as damage"

# --full heals too: a chunk of h3 only.
flip "$T/i3" $((40 * C))
ok $? "a byte of chunk 40 of h3 is flipped"
"$BV" verify "$S" >"$T/out" 2>"$T/err"
grep -q '^needed   h3@1 needs damaged or missing data: bytes 2621440 to 2686976' "$T/out" &&
	grep -q '^marked bad: 1 chunk' "$T/out"
ok $? "verify marks it and names h3@1's range"
start_server || done_testing
agent --disk h3="$T/i3" --full
ok $? "h3: --full"
run_ok "h3@1 exports again" "$BV" export "$S" h3@1 "$T/x3b"
cmp -s "$T/x3b" "$T/i3"; ok $? "bit for bit"
stop_server
run_ok "verify: intact" "$BV" verify "$S"
run_ok "check: consistent" "$BV" check "$S"
done_testing
