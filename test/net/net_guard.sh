#!/usr/bin/env bash
# net_guard.sh: bvaultd under hostile clients (tools/PROTOCOL.md,
# "Deadlines and limits"). Each hostile peer (test/net/guard_peer.py) is
# held off while a real agent's backup succeeds and exports bit for bit:
#  - 64 connections that send nothing: the oldest not logged in makes
#    room for the agent; all are closed after --login-timeout;
#  - 60 HELLOs stopped midway (30 declaring 4 MiB: refused at once with
#    ERROR; 30 small ones: closed at the login deadline); bvaultd's RSS
#    (VmRSS, /proc/PID/status) grows by less than 16 MiB while they
#    are held;
#  - one agent opening 16 BEGINs: 4 granted (--max-agent-sessions), 12
#    wait, another tenant's BEGIN is served; with the global limit
#    reached, a freed session goes to the other tenant (round-robin by
#    agent), not to the first agent's next BEGIN;
#  - a frame stopped midway (closed after --frame-timeout), an idle
#    session (after --idle-timeout), both with ERROR "timed out";
#  - every connection logged in: a new one gets ERROR busy naming
#    --max-connections, which the agent prints; once they are gone, the
#    agent's backup commits;
#  - one agent's login past --max-agent-connections: ERROR busy naming
#    it, while another agent's backup commits;
#  - a second bvaultd on the same --unix path is refused, the first
#    serves on and keeps its socket;
#  - a HELLO name with a newline and ESC is logged escaped;
#  - an agent's RP time more than a day off is replaced by the server's.
# Usage: net_guard.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || { skip "hostile peers" "no python3"; done_testing; }
PEER=(python3 "$(dirname "$0")/guard_peer.py" "$SOCK")

run_ok "init" "$BV" init "$S" || done_testing
"$BV" agent add "$S" alice --group a1 --group a2 --group a3 >"$T/alice.key"
"$BV" agent add "$S" bob --group b1 --group b2 --group b3 --group b4 \
	--group b5 --group b6 --group b7 >"$T/bob.key"
ok $? "agents alice and bob"

# backup REPLICA: bob's agent sends a full of a new image, which must
# commit and export bit for bit.
nb=0
backup() {
	local r=$1 desc=$2
	nb=$((nb + 1))
	mkimg "$T/$r.img" 4
	poke "$T/$r.img" $((nb * 8192)) 4096
	"$BVA" --unix "$SOCK" --name bob --secret-file "$T/bob.key" \
		--disk "$r=$T/$r.img" --full >"$T/$r.out" 2>&1 </dev/null
	local rc=$?
	ok $rc "$desc: bob's backup of $r commits"
	[ $rc -eq 0 ] || sed 's/^/#   /' "$T/$r.out"
	"$BV" export "$S" "$r@1" "$T/$r.x" >/dev/null 2>&1 &&
		cmp "$T/$r.img" "$T/$r.x" >/dev/null
	ok $? "$desc: $r@1 equals its image"
}

# peer MODE ARGS...: a hostile peer in the background; waits for its
# "ready". Its output is in $T/peer.out; release with 'touch $T/go'.
peer() {
	rm -f "$T/go" "$T/abort"
	"${PEER[@]}" "$@" >"$T/peer.out" 2>&1 &
	PP=$!
	for _ in $(seq 1 300); do
		grep -q '^ready' "$T/peer.out" && return 0
		kill -0 $PP 2>/dev/null || break
		sleep 0.1
	done
	diag "the peer did not get ready:"; sed 's/^/#   /' "$T/peer.out"
	return 1
}

rss_kb() {
	sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$SRV/status"
}

"$BVD" "$S" --unix "$SOCK" --login-timeout 0 >/dev/null 2>"$T/err"
[ $? -eq 2 ] && grep -q 'login-timeout 0: not a number from 1 to 3600' "$T/err"
ok $? "bvaultd --login-timeout 0 is refused"

start_server --login-timeout 2 --idle-timeout 3 --frame-timeout 2 \
	--max-sessions 6 --max-agent-sessions 4 || done_testing

# 64 idle connections.
peer idle 64 "$T/go"
ok $? "64 idle connections are open"
backup b1 "beside 64 idle connections"
grep -q 'dropped before login' "$LOG"; ok $? "the oldest idle peer made room"
touch "$T/go"; wait $PP
grep -q '^idle closed 64 of 64' "$T/peer.out"
ok $? "every idle connection was closed by the server"
wait_log 'no login in time' 60
ok $? "... at the login deadline"

# 60 HELLOs stopped midway.
rss0=$(rss_kb)
peer halfhello 60 "$T/go"
ok $? "60 half-sent HELLOs"
sleep 0.5
rss1=$(rss_kb)
[ $((rss1 - rss0)) -lt 16384 ]
ok $? "bvaultd's RSS grows by less than 16 MiB ($rss0 -> $rss1 kB)"
backup b2 "beside 60 half-sent HELLOs"
touch "$T/go"; wait $PP
grep -q '^big refused 30 of 30' "$T/peer.out"
ok $? "HELLOs declaring 4 MiB are refused with ERROR"
grep -q '^big msg protocol error: a frame of 4194304 bytes before login (at most 512)' "$T/peer.out"
ok $? "... naming the size and the limit"
grep -q '^small closed 30 of 30' "$T/peer.out"
ok $? "small half-sent HELLOs are closed at the login deadline, with ERROR"

# One agent's 16 BEGINs against another tenant.
peer begins alice "$T/alice.key" 16 "$T/go"
grep -q '^granted 4 waiting 12' "$T/peer.out"
ok $? "alice's 16 BEGINs: 4 granted, 12 wait (--max-agent-sessions 4)"
backup b3 "beside alice's 16 BEGINs"
touch "$T/go"; wait $PP

# A frame stopped midway; an idle session.
"${PEER[@]}" midframe alice "$T/alice.key" >"$T/py" 2>&1
grep -Eq '^midframe True [1-5]\.[0-9] timed out: a frame not finished in time \(2 s\)' "$T/py"
ok $? "a frame stopped midway is closed after --frame-timeout"
grep -Eq '^idle True [2-6]\.[0-9] timed out: idle \(3 s\)' "$T/py"
r=$?
ok $r "an idle connection is closed after --idle-timeout"
[ $r -eq 0 ] || sed 's/^/#   /' "$T/py"

# A HELLO name with a newline and ESC.
"${PEER[@]}" evilname >"$T/py" 2>&1
grep -q '^evil True authentication failed' "$T/py"; ok $? "an evil name fails to log in"
grep -Fq "agent name 'evil\\x0aFAKE bvaultd: root logged in\\x1b[31m\\x5c' from local" "$LOG"
ok $? "it is logged escaped"
! grep -q '^FAKE' "$LOG" && ! grep -q "$(printf '\033')" "$LOG"
ok $? "no forged line, no ESC byte in the log"

# RP times.
now=$(date +%s)
"${PEER[@]}" rptime alice "$T/alice.key" a2 $((now - 10 * 86400)) 0 >"$T/py" 2>&1
grep -q '^rptime True 1' "$T/py"; ok $? "an RP dated 10 days ago commits"
"${PEER[@]}" rptime alice "$T/alice.key" a2 $((now - 3600)) 1 >>"$T/py" 2>&1
grep -q '^rptime True 2' "$T/py"; ok $? "an RP dated an hour ago commits"
"$BV" rp ls "$S" a2 --json >"$T/rps" 2>&1
python3 - "$T/rps" "$now" >"$T/times" <<'EOF'
import json, sys
now = int(sys.argv[2])
r = json.load(open(sys.argv[1]))
print('t1', abs(r[0]['time'] - now) < 120)
print('t2', r[1]['time'] == now - 3600)
EOF
grep -q '^t1 True' "$T/times"; ok $? "10 days off: the server's clock is the RP's time"
grep -q '^t2 True' "$T/times"; ok $? "an hour off: the agent's time is kept"
grep -q 'more than 86400 s from the server' "$LOG"; ok $? "the replaced time is logged"

# A second bvaultd on the same --unix path (another store).
"$BV" init "$T/store2" >/dev/null
"$BVD" "$T/store2" --unix "$SOCK" >/dev/null 2>"$T/err2" &
P2=$!
wait $P2
r=$?
[ $r -eq 1 ] && grep -q "unix $SOCK: another bvaultd serves this path" "$T/err2"
ok $? "a second bvaultd on the same --unix path is refused (exit $r)"
[ -S "$SOCK" ]; ok $? "the first one's socket is still there"
backup b4 "after the second bvaultd was refused"
stop_server
[ ! -e "$SOCK" ]; ok $? "the first one removed its socket at exit"
[ "$(stat -c %a "$SOCK.lock")" = 600 ]; ok $? "the lock file is 0600"

# The global limit reached: a freed session goes to the other tenant.
start_server --max-sessions 4 --max-agent-sessions 4 --idle-timeout 60 || done_testing
peer begins alice "$T/alice.key" 16 "$T/abort" "$T/go"
grep -q '^granted 4 waiting 12' "$T/peer.out"
ok $? "alice holds the 4 sessions, 12 of her BEGINs wait"
na=$(log_count 'BEGIN admitted')
nw=$(log_count 'bob.*BEGIN waits')
mkimg "$T/b5.img" 4
"$BVA" --unix "$SOCK" --name bob --secret-file "$T/bob.key" \
	--disk "b5=$T/b5.img" --full >"$T/b5.out" 2>&1 </dev/null &
BK=$!
wait_log 'bob.*BEGIN waits' $((nw + 1))
ok $? "bob's BEGIN waits behind alice's"
touch "$T/abort"
wait $BK
ok $? "round-robin: bob's backup of b5 commits"
"$BV" export "$S" b5@1 "$T/b5.x" >/dev/null 2>&1 && cmp "$T/b5.img" "$T/b5.x" >/dev/null
ok $? "round-robin: b5@1 equals its image"
grep 'BEGIN admitted' "$LOG" | sed -n "$((na + 1))p" | grep -q 'agent bob '
ok $? "the freed session went to bob, not to alice's next BEGIN"
grep -q '^abort True' "$T/peer.out"; ok $? "alice aborted one session"
touch "$T/go"; wait $PP
stop_server

# Every connection logged in: the next one gets ERROR busy.
start_server --max-connections 3 || done_testing
peer full alice "$T/alice.key" 3 "$T/go"
grep -q '^full True the server is busy: it serves 3 connections, its limit (--max-connections)' "$T/peer.out"
r=$?
ok $r "a connection past --max-connections gets ERROR busy naming the limit"
[ $r -eq 0 ] || sed 's/^/#   /' "$T/peer.out"
mkimg "$T/b6.img" 4
"$BVA" --unix "$SOCK" --name bob --secret-file "$T/bob.key" \
	--disk "b6=$T/b6.img" --full >"$T/b6.out" 2>&1 </dev/null
r=$?
[ $r -ne 0 ] && grep -q 'the server is busy: it serves 3 connections' "$T/b6.out"
ok $? "the agent says the server is busy (exit $r)"
[ $? -eq 0 ] || sed 's/^/#   /' "$T/b6.out"
nd=$(log_count 'agent alice.*disconnected')
touch "$T/go"; wait $PP
wait_log 'agent alice.*disconnected' $((nd + 3))
backup b6 "once the connections are free"
stop_server

# One agent's logins past --max-agent-connections: ERROR busy naming the
# limit, while another agent's backup is served.
start_server --max-agent-connections 2 || done_testing
peer agentfull alice "$T/alice.key" 2 "$T/go"
grep -q '^agentfull True agent alice has 2 connections logged in, its limit (--max-agent-connections)' "$T/peer.out"
r=$?
ok $r "a login past --max-agent-connections gets ERROR busy naming the limit"
[ $r -eq 0 ] || sed 's/^/#   /' "$T/peer.out"
[ "$(log_count 'agent alice.*login refused: 2 connections of this agent')" = 1 ]
ok $? "the refusal is logged"
backup b7 "while alice holds her 2 connections"
touch "$T/go"; wait $PP
stop_server

run_ok "the store verifies" "$BV" verify "$S"
done_testing
