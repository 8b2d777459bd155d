#!/usr/bin/env bash
# net_basic.sh: network ingest end to end, with the real bvaultd and
# bvault-agent over a Unix socket and over TCP loopback.
#  - an agent made with 'bvault agent add' sends a full (holes skipped),
#    then an express full from an extents list; each RP exports byte for
#    byte as the image it came from;
#  - refused: a wrong secret and an unknown agent (the same answer, and a
#    log line), a group the agent was not granted, a base RP the replica
#    has moved on from (the agent says to run a consistency check),
#    malformed and oversized frames;
#  - faults: an agent killed mid-stream, the server killed mid-session,
#    SIGTERM with a session open: nothing committed, every RP reads as
#    before, the store verifies, the server keeps serving;
#  - 16 agents at once (on the least --ingest-memory), each RP checked
#    bit for bit.
# Usage: net_basic.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"

agent() {
	"$BVA" --unix "$SOCK" "$@" >"$T/out" 2>"$T/err" </dev/null
}

# agent_fail DESC RE ARGS...: the agent must fail with stderr matching RE.
agent_fail() {
	local desc=$1 re=$2 rc
	shift 2
	agent "$@"
	rc=$?
	if [ $rc -ne 0 ] && grep -Eqi -- "$re" "$T/err"; then
		ok 0 "$desc"
	else
		ok 1 "$desc"
		diag "exit $rc; stderr:"; sed 's/^/#   /' "$T/err"
	fi
}

run_ok "init" "$BV" init "$S" || done_testing
"$BV" agent add "$S" host1 --group vm1 --group vm2 >"$T/host1.key"
ok $? "agent add prints a secret"
grep -Eq '^[0-9a-f]{64}$' "$T/host1.key"; ok $? "the secret is 64 hex digits"
"$BV" agent add "$S" other --group vm9 >"$T/other.key"
groups=()
for i in $(seq 1 16); do groups+=(--group "m$i"); done
# The queue agent's secret goes through --secret-file: what it writes
# is what bvault-agent's --secret-file reads.
"$BV" agent add "$S" fleet "${groups[@]}" >"$T/fleet.key"
"$BV" agent add "$S" queue --group q1 --group q2 --group q3 --group q4 \
	--group cg --secret-file "$T/queue.key" >/dev/null
ok $? "agent add fleet, with 16 groups, and queue with --secret-file"
# Bad options of bvaultd: exit 2, a message naming the option.
for v in 0 65 x; do
	"$BVD" "$S" --unix "$SOCK" --max-sessions "$v" >/dev/null 2>"$T/err"
	r=$?
	[ $r -eq 2 ] && grep -q "max-sessions $v: not a number from 1 to 64" "$T/err"
	ok $? "bvaultd --max-sessions $v is refused (exit $r)"
done
for v in 4M 0 8X; do
	"$BVD" "$S" --unix "$SOCK" --ingest-memory "$v" >/dev/null 2>"$T/err"
	r=$?
	[ $r -eq 2 ] && grep -q "ingest-memory $v: .*at least 8 MiB" "$T/err"
	ok $? "bvaultd --ingest-memory $v is refused (exit $r)"
done
# bvaultd holds the store while it runs: the CLI checks below stop it
# first (stop_server) and start it again.
start_server || done_testing
ID=(--name host1 --secret-file "$T/host1.key")

# A full, holes skipped.
mkimg "$T/img" 8
cp --sparse=always "$T/img" "$T/v1"
agent "${ID[@]}" --disk vm1="$T/img" --full --label first
ok $? "agent --full"
grep -q 'as RP 1:' "$T/out"; ok $? "the agent reports RP 1"

# The CLI beside a running bvaultd: what only reads opens the store
# read-only and works; what changes it is carried out by bvaultd
# through its admin socket (net_admin.sh tests that in full).
run_ok "export vm1@1 while bvaultd serves the store" \
	"$BV" export "$S" vm1@1 "$T/x1"
cmp "$T/x1" "$T/v1" >/dev/null; ok $? "RP 1 equals the image"
run_ok "rp ls beside bvaultd" "$BV" rp ls "$S" vm1
grep -q 'first' "$T/out"; ok $? "rp ls shows RP 1 with its label"
run_ok "ls beside bvaultd" "$BV" ls "$S"
run_ok "stats beside bvaultd" "$BV" stats "$S"
run_ok "agent ls beside bvaultd" "$BV" agent ls "$S"
grep -q 'host1' "$T/out"; ok $? "agent ls lists host1"
run_ok "verify beside bvaultd" "$BV" verify "$S"
run_ok "replica create beside bvaultd: through bvaultd" \
	"$BV" replica create "$S" other --size 1M
run_ok "agent add beside bvaultd: through bvaultd" \
	"$BV" agent add "$S" late --group vm1

# An express full from an extents list.
poke "$T/img" 1048576 65536
poke "$T/img" $((5 * 1048576 + 4096)) 8192
printf '%s\n' "1048576 65536" "$((5 * 1048576 + 4096)) 8192" >"$T/ext"
cp --sparse=always "$T/img" "$T/v2"
agent "${ID[@]}" --disk vm1="$T/img" --extents "$T/ext" --base 1
ok $? "agent --extents --base 1"
run_ok "export vm1@2 (bvaultd still serving)" "$BV" export "$S" vm1@2 "$T/x2"
cmp "$T/x2" "$T/v2" >/dev/null; ok $? "RP 2 equals the changed image"

# A second full of an existing replica zeroes what became a hole.
truncate -s 0 "$T/img2" && truncate -s 8M "$T/img2"
echo "only this" | dd of="$T/img2" bs=512 seek=100 conv=notrunc status=none
agent "${ID[@]}" --disk vm1="$T/img2" --full
ok $? "a full over an existing replica"
stop_server
"$BV" export "$S" vm1@3 "$T/x3" && cmp "$T/x3" "$T/img2" >/dev/null
ok $? "RP 3 equals the new image: old data where it has holes is gone"
"$BV" ls "$S" >"$T/ls" 2>&1 && grep -qw other "$T/ls" &&
	"$BV" agent ls "$S" >"$T/als" 2>&1 && grep -qw late "$T/als"
ok $? "the replica and agent made through bvaultd are in the store"

# The consistency check of a file: hashed on several threads, each over
# its share of the chunks; only the chunks that differ are sent.
QID=(--name queue --secret-file "$T/queue.key")
# Two disks of one group whose chunks differ in size (64 KiB, 1 MiB).
# And one of 4 KiB chunks, over three blocks of digests (4096 chunks
# each; the agent hashes two blocks ahead of the one it compares), the
# last block short and its last chunk too.
"$BV" replica create "$S" c4k --size $((40 * 1048576 + 10240)) \
	--chunk-size 4K >/dev/null &&
	"$BV" agent add "$S" small --group c4k >"$T/small.key"
ok $? "replica c4k (4 KiB chunks) and agent small for it"
"$BV" replica create "$S" ca --size 8M >/dev/null &&
	"$BV" replica create "$S" cb --size 8M --chunk-size 1M >/dev/null &&
	"$BV" group create "$S" cg ca cb >/dev/null
ok $? "replicas ca (64 KiB chunks) and cb (1 MiB chunks) in group cg"
start_server || done_testing
mkimg "$T/c1" 8
agent "${QID[@]}" --disk q4="$T/c1" --full
ok $? "q4: a full"
poke "$T/c1" 65536 4096
poke "$T/c1" $((7 * 1048576 + 512)) 512
agent "${QID[@]}" --disk q4="$T/c1" --compare
ok $? "q4: --compare after two changes"
grep -q 'compared 128 chunks, 2 differed' "$T/out"
ok $? "it finds the two chunks that differ"
agent "${QID[@]}" --disk q4="$T/c1" --compare
grep -q 'compared 128 chunks, 0 differed' "$T/out"
ok $? "a second check finds none"
mkimg "$T/ca" 8
mkimg "$T/cb" 8
agent "${QID[@]}" --disk ca="$T/ca" --disk cb="$T/cb" --full
ok $? "ca and cb: a full"
poke "$T/ca" 5000192 512
poke "$T/cb" 3000064 512
agent "${QID[@]}" --disk ca="$T/ca" --disk cb="$T/cb" --compare
grep -q 'compared 136 chunks, 2 differed' "$T/out"
ok $? "--compare of both: 128 + 8 chunks, one of each differs"
stop_server
"$BV" export "$S" ca@2 "$T/xa" 2>/dev/null && cmp "$T/xa" "$T/ca" >/dev/null &&
	"$BV" export "$S" cb@2 "$T/xb" 2>/dev/null && cmp "$T/xb" "$T/cb" >/dev/null
ok $? "ca@2 and cb@2 equal their files"
"$BV" export "$S" q4@2 "$T/xc" 2>/dev/null && cmp "$T/xc" "$T/c1" >/dev/null
ok $? "q4@2 equals the changed file"

# c4k: 10243 chunks in three blocks of digests. Changes in the first
# chunk of each block, the last of the second, and the short last chunk.
start_server || done_testing
SID=(--name small --secret-file "$T/small.key")
mkimg "$T/c4" 40
head -c 10240 /dev/urandom >>"$T/c4"
agent "${SID[@]}" --disk c4k="$T/c4" --full
ok $? "c4k: a full"
for at in 0 $((4096 * 4096 + 100)) $((8191 * 4096 + 4000)) \
	$((8192 * 4096)) $((10242 * 4096 + 1000)); do
	poke "$T/c4" "$at" 16
done
agent "${SID[@]}" --disk c4k="$T/c4" --compare
grep -q 'compared 10243 chunks, 5 differed' "$T/out"
ok $? "c4k: --compare over three blocks finds the 5 chunks changed: $(
	head -1 "$T/out")"
agent "${SID[@]}" --disk c4k="$T/c4" --compare
grep -q 'compared 10243 chunks, 0 differed' "$T/out"
ok $? "c4k: a second check finds none"
stop_server
"$BV" export "$S" c4k@2 "$T/x4" 2>/dev/null && cmp "$T/x4" "$T/c4" >/dev/null
ok $? "c4k@2 equals the changed file"

# Refusals.
snapshot "$S" before
start_server || done_testing
printf '%064d\n' 0 >"$T/bad.key"
agent_fail "a wrong secret is refused" 'authentication failed' \
	--name host1 --secret-file "$T/bad.key" --disk vm1="$T/img" --full
agent_fail "an unknown agent gets the same answer" 'authentication failed' \
	--name nobody --secret-file "$T/host1.key" --disk vm1="$T/img" --full
grep -q "authentication failed: agent name 'nobody'" "$LOG"
ok $? "the server logs the failed attempt"
agent_fail "a group not granted is refused" 'may not (read|write) group vm9' \
	"${ID[@]}" --disk vm9="$T/img" --full
agent_fail "a base the replica moved on from: consistency check" \
	'consistency check is needed' \
	"${ID[@]}" --disk vm1="$T/img" --extents "$T/ext" --base 1
agent_fail "--bitmap on a file source is refused" 'bitmap' \
	"${ID[@]}" --disk vm1="$T/img" --bitmap b0 --base 3
agent_fail "--nbd-timeout 0 is refused" 'nbd-timeout 0: seconds' \
	"${ID[@]}" --disk vm1="$T/img" --full --nbd-timeout 0

if command -v python3 >/dev/null 2>&1; then
	python3 - "$SOCK" "$T/host1.key" >"$T/py" 2>&1 <<'EOF'
import socket, struct, sys
def talk(payload):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
    s.sendall(payload); s.settimeout(5)
    data = b''
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            data += d
    except socket.timeout:
        return b'timeout' * 4
    return data
big = struct.pack('<IBBH', 64 << 20, 1, 0, 0)
print('big', talk(big)[12:].decode(errors='replace'))
flags = struct.pack('<IBBH', 0, 1, 7, 0)
print('flags', talk(flags)[12:].decode(errors='replace'))
early = struct.pack('<IBBH', 0, 3, 0, 0)
print('early', talk(early)[12:].decode(errors='replace'))
short = struct.pack('<IBBH', 3, 1, 0, 0) + b'BVA'
print('short', talk(short)[12:].decode(errors='replace'))
# Authenticated as host1: ADD of a group it was not granted, then a
# change record for a slot never added.
import hmac, hashlib
key = bytes.fromhex(open(sys.argv[2]).read().strip())
def frame(t, p=b''):
    return struct.pack('<IBBH', len(p), t, 0, 0) + p
def answer(s):
    h = b''
    while len(h) < 8: h += s.recv(8 - len(h))
    n, t = struct.unpack('<IB', h[:5])
    p = b''
    while len(p) < n: p += s.recv(n - len(p))
    return t, p
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
s.sendall(frame(1, b'BVAULTP1' + struct.pack('<H', 1) + bytes([5]) + b'host1'))
t, nonce = answer(s)
mac = hmac.new(key, b'bvault-agent-auth-v1' + nonce + b'host1', hashlib.sha256).digest()
s.sendall(frame(2, mac)); print('auth', answer(s)[0] == 0x80)
s.sendall(frame(3)); answer(s)
s.sendall(frame(4, struct.pack('<QQ', 0, 1 << 20) + bytes([3]) + b'vm9'))
t, p = answer(s); print('add', t == 0x8f, p[4:].decode())
s.sendall(frame(5, struct.pack('<IQ', 7, 0) + b'x' * 512))
t, p = answer(s); print('slot', t == 0x8f, p[4:].decode())
# A bad change record right behind 4 MiB of DATA, then COMMIT, in one
# write: the bad one is refused while the applier still works on the
# DATA, the connection closes once it is done, nothing is committed.
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(20)
s.sendall(frame(1, b'BVAULTP1' + struct.pack('<H', 1) + bytes([5]) + b'host1'))
t, nonce = answer(s)
mac = hmac.new(key, b'bvault-agent-auth-v1' + nonce + b'host1', hashlib.sha256).digest()
s.sendall(frame(2, mac)); answer(s)
s.sendall(frame(3)); answer(s)
s.sendall(frame(4, struct.pack('<QQ', 3, 8 << 20) + bytes([3]) + b'vm1'))
t, p = answer(s); print('add3', t == 0x80)
slot = struct.unpack('<I', p[:4])[0] if t == 0x80 else 0
s.sendall(frame(5, struct.pack('<IQ', slot, 0) + b'\xee' * (4 << 20)) +
          frame(5, struct.pack('<IQ', slot + 5, 0) + b'x' * 512) +
          frame(8, bytes([1, 0]) + struct.pack('<Q', 0) + bytes([0])))
t, p = answer(s); print('behind', t == 0x8f, p[4:].decode())
print('closed', s.recv(1) == b'')
EOF
	grep -q "big.*larger than the limit" "$T/py"; ok $? "an oversized frame is refused"
	grep -q 'flags.*nonzero flags' "$T/py"; ok $? "nonzero flags are refused"
	grep -q 'early.*expected HELLO' "$T/py"; ok $? "a request before HELLO is refused"
	grep -q 'short.*malformed HELLO' "$T/py"; ok $? "a malformed HELLO is refused"
	grep -q '^auth True' "$T/py"; ok $? "a hand-made client authenticates"
	grep -q '^add True agent host1 may not write group vm9' "$T/py"
	ok $? "ADD of a replica in a group not granted is refused"
	grep -q '^slot True protocol error: a change record for a slot never added' "$T/py"
	ok $? "a change record for a slot never added is refused"
	grep -q '^add3 True' "$T/py" &&
		grep -q '^behind True protocol error: a change record for a slot never added' "$T/py" &&
		grep -q '^closed True' "$T/py"
	ok $? "a bad record behind 4 MiB of DATA and a COMMIT: refused, closed"
else
	for _ in 1 2 3 4 5 6 7 8; do skip "bad frames" "no python3"; done
fi
stop_server
same_snapshot "$S" before "refused runs changed nothing"
start_server || done_testing

# An agent killed mid-stream: nothing committed, the server serves on.
# Each fault below falls a second after the server logged the agent's
# authentication: at 8 MB/s, 64 MiB take 8 s to send.
mkimg "$T/big" 64
na=$(log_count 'host1.*authenticated')
nab=$(log_count 'session aborted')
"$BVA" --unix "$SOCK" "${ID[@]}" --disk vm2="$T/big" --full \
	--bandwidth 8M >/dev/null 2>&1 &
AG=$!
wait_log 'host1.*authenticated' $((na + 1))
sleep 1
run_ok "verify beside a session in flight" "$BV" verify "$S"
"$BV" export "$S" vm1@2 "$T/x2b" 2>/dev/null && cmp "$T/x2b" "$T/v2" >/dev/null
ok $? "vm1@2 exports whole beside a session in flight"
kill -9 $AG 2>/dev/null
wait $AG 2>/dev/null
wait_log 'session aborted' $((nab + 1))
ok $? "the server logs the aborted session"
agent "${ID[@]}" --disk vm2="$T/img" --full
ok $? "the server still serves: vm2 full"
grep -q 'as RP 1:' "$T/out"; ok $? "... as vm2's first RP: the killed run left none"
stop_server
"$BV" export "$S" vm2@1 "$T/y1" 2>/dev/null && cmp "$T/y1" "$T/img" >/dev/null
ok $? "vm2@1 equals its image"

# The server killed mid-session.
snapshot "$S" mid
start_server || done_testing
na=$(log_count 'host1.*authenticated')
"$BVA" --unix "$SOCK" "${ID[@]}" --disk vm2="$T/big" --full \
	--bandwidth 8M >/dev/null 2>&1 &
AG=$!
wait_log 'host1.*authenticated' $((na + 1))
sleep 1
kill -9 "$SRV"
wait "$SRV" 2>/dev/null
wait $AG 2>/dev/null
ok $(( $? == 0 )) "the agent fails when the server dies"
same_snapshot "$S" mid "after the server was killed mid-session"
run_ok "the store verifies" "$BV" verify "$S"
start_server || done_testing

# SIGTERM with a session open: aborted, exit 0.
na=$(log_count 'host1.*authenticated')
"$BVA" --unix "$SOCK" "${ID[@]}" --disk vm2="$T/big" --full \
	--bandwidth 8M >/dev/null 2>&1 &
AG=$!
wait_log 'host1.*authenticated' $((na + 1))
sleep 1
kill -TERM "$SRV"
wait "$SRV"
ok $? "bvaultd exits 0 on SIGTERM"
wait $AG 2>/dev/null
grep -q 'stopped (1 open session aborted)' "$LOG"
r=$?
ok $r "it aborted the open session"
[ $r -eq 0 ] || tail -n 6 "$LOG" | sed 's/^/# /'

same_snapshot "$S" mid "after SIGTERM"

# --max-sessions 2: two slow agents hold both sessions; a third BEGIN
# waits (its agent is killed while it waits), a fourth waits and gets
# its session when one of the first two ends; all three commit.
qa() { # qa REPLICA IMAGE [ARGS...], run with & (exec: $! is the agent)
	local r=$1 img=$2
	shift 2
	exec "$BVA" --unix "$SOCK" --name queue --secret-file "$T/queue.key" \
		--disk "$r=$img" --full "$@" >"$T/$r.out" 2>&1
}
start_server --max-sessions 2 || done_testing
mkimg "$T/q1" 8
mkimg "$T/q2" 8
poke "$T/q2" 4096 4096
mkimg "$T/q3" 4
poke "$T/q3" 8192 4096
nw=$(log_count 'BEGIN waits')
qa q1 "$T/q1" --bandwidth 3M &
Q1=$!
qa q2 "$T/q2" --bandwidth 3M &
Q2=$!
wait_log 'queue.*authenticated' 2
sleep 0.5
qa q3 "$T/q3" &
QX=$!
wait_log 'BEGIN waits' $((nw + 1))
ok $? "a third BEGIN waits"
kill -9 $QX 2>/dev/null
wait $QX 2>/dev/null
qa q3 "$T/q3" &
Q3=$!
wait_log 'BEGIN waits' $((nw + 2))
ok $? "a fourth BEGIN waits"
wait $Q1; r1=$?
wait $Q2; r2=$?
wait $Q3; r3=$?
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ $r3 -eq 0 ]
ok $? "the two slow agents and the waiting one all commit ($r1 $r2 $r3)"
[ "$(log_count 'BEGIN admitted')" -ge 1 ]
ok $? "the server logs the admitted BEGIN"
stop_server
for q in q1 q2 q3; do
	"$BV" export "$S" "$q@1" "$T/e$q" 2>/dev/null && cmp "$T/e$q" "$T/$q" >/dev/null
	ok $? "$q@1 equals its image"
done

# TCP loopback, 16 agents at once, on the least ingest memory: the
# sessions share 8 MiB of batches, so most of them go on with one
# smallest batch past the budget, and none waits for another's.
"$BVD" "$S" --listen 127.0.0.1:0 --ingest-memory 8M 2>>"$LOG" &
SRV=$!
PORT=
for _ in $(seq 1 600); do
	PORT=$(sed -n 's/.*listening on 127.0.0.1 port \([0-9]*\).*/\1/p' "$LOG" | tail -n 1)
	[ -n "$PORT" ] && break
	kill -0 "$SRV" 2>/dev/null || break
	sleep 0.1
done
[ -n "$PORT" ]; ok $? "bvaultd listens on a TCP port"
# TCP is TLS: the agents pin the certificate bvaultd made at its start.
FP=$("$BV" tls fingerprint "$S")
[[ $FP =~ ^sha256:[0-9a-f]{64}$ ]]; ok $? "tls fingerprint: $FP"
pids=()
for i in $(seq 1 16); do
	mkimg "$T/m$i" 4
	poke "$T/m$i" $((i * 4096)) 4096
	"$BVA" --server "127.0.0.1:$PORT" --name fleet --fingerprint "$FP" \
		--secret-file "$T/fleet.key" --disk "m$i=$T/m$i" --full \
		>"$T/m$i.out" 2>&1 &
	pids+=($!)
done
bad=0
for i in $(seq 1 16); do
	wait "${pids[$((i - 1))]}" && continue
	bad=$((bad + 1))
	diag "the agent of m$i failed:"; tail -n 5 "$T/m$i.out" | sed 's/^/#   /'
done
ok $bad "16 agents at once over TLS all committed ($bad failed)"
stop_server
bad=0
for i in $(seq 1 16); do
	if ! "$BV" export "$S" "m$i@1" "$T/e$i" >/dev/null 2>"$T/err"; then
		diag "export m$i@1 failed:"; head -n 20 "$T/err" | sed 's/^/#   /'
		bad=$((bad + 1))
	elif ! cmp "$T/e$i" "$T/m$i" >/dev/null; then
		diag "m$i@1 differs from its image"
		bad=$((bad + 1))
	fi
done
ok $bad "each of the 16 RPs equals its image"
run_ok "the store verifies at the end" "$BV" verify "$S"

done_testing
