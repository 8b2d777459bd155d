#!/usr/bin/env bash
# net_push.sh: bvault push, the replication of a group to a second
# server, with two real bvaultd processes (each over its own Unix
# socket):
#  - 10 RPs of a replica, RP 3 removed here (a gap in the numbers), pushed
#    while this store's own bvaultd serves it (push only reads), cut off
#    twice (the push killed mid-RP, then the remote bvaultd killed
#    mid-RP) and resumed: every RP arrives with its own number, label,
#    time and version identity, and exports byte for byte as here;
#  - a second push sends nothing, and says so;
#  - a remote whose history differs (another identity at RP 1) is
#    refused, naming both identities, and neither store changes;
#  - a first RP into a remote replica that has data of its own, or by
#    an agent the remote did not grant the group, is refused;
#  - a group of two replicas: each RP arrives whole, both members in it.
# Usage: net_push.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"

R=$T/remote
RSOCK=$T/rsock
RLOG=$T/remote.log

start_remote() {
	rm -f "$RSOCK"
	"$BVD" "$R" --unix "$RSOCK" --listen 127.0.0.1:0 2>>"$RLOG" &
	RSRV=$!
	for _ in $(seq 1 600); do
		[ -S "$RSOCK" ] && return 0
		kill -0 "$RSRV" 2>/dev/null || break
		sleep 0.1
	done
	diag "the remote bvaultd did not start"; sed 's/^/# /' "$RLOG"
	return 1
}

stop_remote() {
	kill -TERM "$RSRV" 2>/dev/null
	wait "$RSRV"
	ok $? "the remote bvaultd exits 0 on SIGTERM"
	! grep -q Sanitizer "$RLOG"
	ok $? "no sanitizer report in the remote bvaultd's log"
}

rlog_wait() {
	local i
	for i in $(seq 1 600); do
		[ "$(grep -c -- "$1" "$RLOG")" -ge "$2" ] && return 0
		sleep 0.1
	done
	diag "the remote log never had $2 lines matching '$1'"
	tail -n 10 "$RLOG" | sed 's/^/# /'
	return 1
}

# mkrp STORE REPLICA IMAGE BASE LABEL: a full stream of IMAGE on BASE,
# ingested as the group's next RP.
mkrp() {
	"$BV" mkstream "$3" --replica "$2" --base "$4" --out "$T/stream" &&
		"$BV" ingest "$1" --rp --label "$5" "$T/stream" >/dev/null
}

# The RPs of REPLICA in STORE as "number time consistency label id" lines.
rps() {
	"$BV" rp ls "$1" "$2" --json |
		python3 -c 'import json,sys
for r in json.load(sys.stdin):
    print(r["rp"], r["time"], r["consistency"], r["label"], r["identity"])'
}

# same_rps REPLICA DESC: the remote holds REPLICA's RPs as here, and each
# exports byte for byte as here.
same_rps() {
	local bad=0 n
	rps "$S" "$1" >"$T/rps.here" && rps "$R" "$1" >"$T/rps.there" ||
		bad=1
	cmp -s "$T/rps.here" "$T/rps.there" || {
		bad=1
		diag "RPs here:" "$(cat "$T/rps.here")" "RPs there:" \
			"$(cat "$T/rps.there")"
	}
	for n in $(cut -d' ' -f1 "$T/rps.here"); do
		cmp -s <("$BV" export "$S" "$1@$n" /dev/stdout 2>/dev/null ||
			echo failed) \
			<("$BV" export "$R" "$1@$n" /dev/stdout 2>/dev/null) || {
			bad=1
			diag "$1@$n differs"
		}
	done
	ok $bad "$2"
}

# listing STORE FILE: every RP, and every replica's head (version,
# identity, size): a push that changed anything would change these (RPs
# are immutable, INVARIANTS.md 3).
listing() {
	{ "$BV" rp ls "$1" --json && "$BV" ls "$1" --json; } >"$2" 2>&1
}

push() {
	"$BV" push "$S" "$@" --unix "$RSOCK" --secret-file "$T/pusher.key" \
		>"$T/out" 2>"$T/err" </dev/null
}

run_ok "init here" "$BV" init "$S" || done_testing
run_ok "init the remote" "$BV" init "$R" || done_testing
"$BV" agent add "$R" pusher --group vm --group dv --group g2 --group ne \
	--secret-file "$T/pusher.key" >/dev/null &&
	"$BV" agent add "$R" other --group elsewhere \
		--secret-file "$T/other.key" >/dev/null
ok $? "agents on the remote: pusher (vm, dv, g2, ne) and other"

# 10 RPs of vm: RP 1 and RP 6 change several MiB (the two cut-offs fall
# in them), the others 64 KiB.
mkimg "$T/img" 8
for i in $(seq 1 10); do
	case $i in
	1) ;;
	6) poke "$T/img" 0 4194304 ;;
	*) poke "$T/img" $((i * 262144)) 65536 ;;
	esac
	mkrp "$S" vm "$T/img" $((i - 1)) "rp-$i" || break
done
ok $? "10 RPs of vm here"
run_ok "RP 3 removed here (a gap in the numbers)" "$BV" rp rm "$S" vm@3

# Arguments: usage errors exit 2, naming what is wrong; --help exits 0.
K=(--secret-file "$T/pusher.key")
run_fail "push without a server" 2 'give --server HOST:PORT or --unix PATH' \
	"$BV" push "$S" vm --name pusher "${K[@]}"
run_fail "push with both --server and --unix" 2 'give --server HOST:PORT or --unix PATH' \
	"$BV" push "$S" vm --server 127.0.0.1:1 --unix "$RSOCK" --name pusher "${K[@]}"
run_fail "push without --name" 2 '--name AGENT and --key FILE \(or --secret-file FILE\) are needed' \
	"$BV" push "$S" vm --unix "$RSOCK" "${K[@]}"
run_fail "push with a bad --bandwidth" 2 "bad --bandwidth 'fast'" \
	"$BV" push "$S" vm --unix "$RSOCK" --name pusher "${K[@]}" --bandwidth fast
run_fail "push of a bad group name" 2 "bad group 'a/b'" \
	"$BV" push "$S" a/b --unix "$RSOCK" --name pusher "${K[@]}"
run_fail "push of a group this store lacks" 1 'no group named nosuch' \
	"$BV" push "$S" nosuch --unix "$RSOCK" --name pusher "${K[@]}"
run_fail "push to a server that is not there" 1 "cannot connect to $T/nosock" \
	"$BV" push "$S" vm --unix "$T/nosock" --name pusher "${K[@]}"
"$BV" push --help >"$T/out" 2>&1 && grep -q '^usage: bvault push STORE GROUP' "$T/out"
ok $? "push --help"

start_server || done_testing
start_remote || done_testing

# Cut-off 1: the push killed in RP 1.
"$BV" push "$S" vm --unix "$RSOCK" --name pusher --secret-file \
	"$T/pusher.key" --bandwidth 2M >/dev/null 2>&1 &
PU=$!
rlog_wait 'pusher.*authenticated' 1
sleep 1
kill -9 $PU 2>/dev/null
wait $PU 2>/dev/null
rlog_wait 'session aborted' 1
ok $? "push killed in RP 1: the remote aborts the session"
[ -z "$(rps "$R" vm 2>/dev/null)" ]
ok $? "... and holds no RP of vm"

# Cut-off 2: the remote bvaultd killed in RP 6 (4 MiB at 2 MB/s).
"$BV" push "$S" vm --unix "$RSOCK" --name pusher --secret-file \
	"$T/pusher.key" --bandwidth 2M >"$T/out2" 2>"$T/err2" &
PU=$!
rlog_wait 'committed .* RP 5$' 1
sleep 1
kill -9 "$RSRV"
wait "$RSRV" 2>/dev/null
wait $PU
r=$?
[ $r -eq 1 ] && grep -q "server $RSOCK, group vm: RP 6" "$T/err2"
ok $? "push fails when the remote dies in RP 6, naming server, group, RP"
[ $r -eq 1 ] || { diag "exit $r"; sed 's/^/# /' "$T/out2" "$T/err2"; }
grep -q "^sent RP 5 'rp-5'" "$T/out2"
ok $? "... after it reported RP 5 sent"
start_remote || done_testing
[ "$(rps "$R" vm | cut -d' ' -f1 | tr '\n' ' ')" = "1 2 4 5 " ]
ok $? "the remote holds RPs 1, 2, 4, 5 after the cut-offs"

push vm --name pusher
r=$?
ok $r "push resumes"
[ $r -eq 0 ] || sed 's/^/# /' "$T/out" "$T/err"
[ "$(grep -c '^sent RP' "$T/out")" -eq 5 ] &&
	grep -q "^sent RP 6 'rp-6'" "$T/out" &&
	grep -q "^pushed 5 RPs of group vm" "$T/out"
ok $? "... sending RPs 6 to 10 only"
same_rps vm "the remote's RPs of vm: same numbers (the gap too), times, labels, identities, bytes"

push vm --name pusher
r=$?
[ $r -eq 0 ] && grep -qx "nothing to send: the remote has every RP of vm" "$T/out"
ok $? "a second push sends nothing, and says so"

# What the remote takes from the network is checked (a hand-made client):
# RPSV pages; ADDV of another base identity, COMMIT with an RP number
# not above the latest or a time out of range, a malformed ADDV: refused,
# nothing changed.
listing "$R" "$T/r.before-py"
id10=$("$BV" rp ls "$R" vm --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["identity"])')
python3 - "$RSOCK" "$T/pusher.key" "$id10" >"$T/py" 2>&1 <<'EOF'
import socket, struct, sys, hmac, hashlib
key = bytes.fromhex(open(sys.argv[2]).read().strip())
id10 = bytes.fromhex(sys.argv[3])
def frame(t, p=b''):
    return struct.pack('<IBBH', len(p), t, 0, 0) + p
def answer(s):
    h = b''
    while len(h) < 8:
        d = s.recv(8 - len(h))
        if not d: return None, b''
        h += d
    n, t = struct.unpack('<IB', h[:5])
    p = b''
    while len(p) < n: p += s.recv(n - len(p))
    return t, p
def login():
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(20)
    s.sendall(frame(1, b'BVAULTP1' + struct.pack('<H', 1) + bytes([6]) + b'pusher'))
    t, nonce = answer(s)
    mac = hmac.new(key, b'bvault-agent-auth-v1' + nonce + b'pusher', hashlib.sha256).digest()
    s.sendall(frame(2, mac)); answer(s)
    return s
def name(n): return bytes([len(n)]) + n
s = login()
s.sendall(frame(0x0c, struct.pack('<Q', 5) + name(b'vm')))
t, p = answer(s)
latest, size = struct.unpack('<QQ', p[:16])
head, gl = p[16:32], p[32]
n = struct.unpack('<I', p[33 + gl:37 + gl])[0]
o, nums = 37 + gl, []
for i in range(n):
    num = struct.unpack('<Q', p[o:o + 8])[0]; ll = p[o + 33]
    nums.append(num); o += 34 + ll
print('rpsv', t == 0x80, latest, n, nums, o == len(p), head == id10)
wrong = b'\x5a' * 16
s.sendall(frame(3)); answer(s)
s.sendall(frame(0x0d, struct.pack('<QQ', 10, 8 << 20) + wrong + b'\0' * 16 + name(b'vm')))
t, p = answer(s); print('base', t == 0x8f, struct.unpack('<H', p[:2])[0], p[4:].decode())
s.sendall(frame(0x0d, struct.pack('<QQ', 10, 8 << 20) + id10 + b'\0' * 16 + name(b'vm')))
t, p = answer(s); print('addv', t == 0x80)
s.sendall(frame(8, bytes([1, 0]) + struct.pack('<q', 0) + bytes([0]) + struct.pack('<Q', 10)))
t, p = answer(s); print('number', t == 0x8f, struct.unpack('<H', p[:2])[0], p[4:].decode())
s.sendall(frame(3)); answer(s)
s.sendall(frame(0x0d, struct.pack('<QQ', 10, 8 << 20) + id10 + b'\0' * 16 + name(b'vm')))
answer(s)
s.sendall(frame(8, bytes([1, 0]) + struct.pack('<q', -5) + bytes([0]) + struct.pack('<Q', 11)))
t, p = answer(s); print('time', t == 0x8f, struct.unpack('<H', p[:2])[0], p[4:].decode())
s.sendall(frame(3)); answer(s)
s.sendall(frame(0x0d, struct.pack('<QQ', 10, 8 << 20) + b'\1' * 7))
t, p = answer(s); print('short', t == 0x8f, p[4:].decode())
print('closed', answer(s)[0] is None)
EOF
grep -q '^rpsv True 10 6 \[5, 6, 7, 8, 9, 10\] True True' "$T/py"
ok $? "RPSV from RP 5: the group's latest and RPs 5 to 10, labels and identities"
grep -q "^base True 5 replica vm: stream base is version 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a but the latest version is $id10" "$T/py"
ok $? "ADDV of another base identity: ERROR base naming both"
grep -q '^number True 6 group vm: RP number 10 is not above the group.s latest RP 10' "$T/py"
ok $? "COMMIT with an RP number not above the latest: ERROR invalid"
grep -q '^time True 6 RP time -5: not 0' "$T/py"
ok $? "COMMIT with a time out of range: ERROR invalid"
grep -q '^short True protocol error: a malformed ADDV' "$T/py" && grep -q '^closed True' "$T/py"
ok $? "a malformed ADDV: a protocol error, the connection closed"
grep -q '^addv True' "$T/py" || sed 's/^/# /' "$T/py"
listing "$R" "$T/r.after-py" && cmp -s "$T/r.before-py" "$T/r.after-py"
ok $? "the remote is unchanged by the refused requests"

# A remote whose history differs: dv there was made apart from dv here.
mkimg "$T/d1" 4
mkrp "$S" dv "$T/d1" 0 here-1 && poke "$T/d1" 0 65536 &&
	mkrp "$S" dv "$T/d1" 1 here-2
ok $? "dv here: 2 RPs"
stop_remote
mkrp "$R" dv "$T/img" 0 there-1
ok $? "dv on the remote: 1 RP of other content"
start_remote || done_testing
listing "$S" "$T/s.before" && listing "$R" "$T/r.before"
idh=$("$BV" rp ls "$S" dv --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["identity"])')
idt=$("$BV" rp ls "$R" dv --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["identity"])')
push dv --name pusher
r=$?
[ $r -eq 1 ] && grep -q "RP 1" "$T/err" && grep -q "$idh" "$T/err" &&
	grep -q "$idt" "$T/err"
ok $? "a divergent remote is refused, naming both identities"
[ $r -eq 1 ] && grep -q "$idh" "$T/err" || sed 's/^/# /' "$T/err"
listing "$S" "$T/s.after" && cmp -s "$T/s.before" "$T/s.after"
ok $? "this store is unchanged (its RPs, identities and heads)"
listing "$R" "$T/r.after" && cmp -s "$T/r.before" "$T/r.after"
ok $? "the remote is unchanged (its RPs, identities and heads)"

# A first RP goes to a new or empty replica only: a full stream sends no
# zero chunk, so a remote replica with data of its own is refused.
mkrp "$S" ne "$T/d1" 0 ne-1
stop_remote
"$BV" mkstream "$T/img" --replica ne --base 0 --out "$T/stream" &&
	"$BV" ingest "$R" "$T/stream" >/dev/null
ok $? "ne on the remote: data, no RP"
start_remote || done_testing
listing "$R" "$T/r.before"
push ne --name pusher
r=$?
[ $r -eq 1 ] && grep -q "replica ne: the remote replica has version [0-9a-f]\{32\} and no RP of this history" "$T/err"
ok $? "a remote replica with data and no RP is refused"
[ $r -eq 1 ] || sed 's/^/# /' "$T/out" "$T/err"
listing "$R" "$T/r.after" && cmp -s "$T/r.before" "$T/r.after"
ok $? "... and the remote is unchanged"

# An agent the remote did not grant the group.
"$BV" push "$S" vm --unix "$RSOCK" --name other --secret-file \
	"$T/other.key" >"$T/out" 2>"$T/err" </dev/null
r=$?
[ $r -eq 1 ] && grep -q "may not read group vm" "$T/err"
ok $? "an agent without a grant on the group is refused"
[ $r -eq 1 ] || sed 's/^/# /' "$T/err"
"$BV" push "$S" vm --unix "$RSOCK" --name pusher --secret-file \
	"$T/other.key" >"$T/out" 2>"$T/err" </dev/null
[ $? -eq 1 ] && grep -q "authentication failed" "$T/err"
ok $? "a wrong secret is refused"

# A group of two replicas (made on both sides, as for agents).
for st in "$S" "$R"; do
	"$BV" replica create "$st" ga --size 4M >/dev/null &&
		"$BV" replica create "$st" gb --size 2M >/dev/null &&
		"$BV" group create "$st" g2 ga gb >/dev/null || break
done
ok $? "group g2 of ga and gb on both sides"
mkimg "$T/ga" 4
mkimg "$T/gb" 4
truncate -s 2M "$T/gb"
"$BV" mkstream "$T/ga" --replica ga --base 0 --out "$T/sa" &&
	"$BV" mkstream "$T/gb" --replica gb --base 0 --out "$T/sb" &&
	"$BV" ingest "$S" --rp --label g-1 "$T/sa" "$T/sb" >/dev/null &&
	poke "$T/ga" 65536 65536 &&
	"$BV" mkstream "$T/ga" --replica ga --base 1 --out "$T/sa" &&
	"$BV" ingest "$S" --rp --label g-2 "$T/sa" >/dev/null &&
	truncate -s 3M "$T/gb" && poke "$T/gb" 0 65536 &&
	"$BV" mkstream "$T/gb" --replica gb --base 2 --out "$T/sb" &&
	"$BV" ingest "$S" --rp --label g-3 "$T/sb" >/dev/null
ok $? "3 RPs of g2 here (RP 2 changes ga, RP 3 grows gb)"
# Over TCP this time (the remote listens on a port of its choosing).
port=$(sed -n 's/.*listening on 127.0.0.1 port \([0-9]*\)$/\1/p' "$RLOG" | tail -n 1)
"$BV" push "$S" g2 --server "127.0.0.1:$port" --name pusher --secret-file \
	"$T/pusher.key" >"$T/out" 2>"$T/err" </dev/null
r=$?
[ $r -eq 1 ] && grep -q "is not pinned: its certificate is sha256:" "$T/err"
ok $? "push over TCP without --fingerprint is refused, showing it"
"$BV" push "$S" g2 --server "127.0.0.1:$port" --name pusher --secret-file \
	"$T/pusher.key" --fingerprint "$("$BV" tls fingerprint "$R")" \
	>"$T/out" 2>"$T/err" </dev/null
r=$?
ok $r "push of g2, over TCP with TLS, the remote pinned"
[ $r -eq 0 ] || sed 's/^/# /' "$T/out" "$T/err"
grep -q "^sent RP 1 'g-1': 2 replicas" "$T/out"; ok $? "... each RP with both members"
same_rps ga "ga's RPs on the remote as here"
same_rps gb "gb's RPs on the remote as here"
"$BV" rp ls "$R" g2 --json | python3 -c 'import json,sys
rs = json.load(sys.stdin)
sys.exit(0 if len(rs) == 3 and all(r["members"] == 2 for r in rs) else 1)'
ok $? "the remote's RPs of g2 hold both members each"

# A group of two replicas the remote lacks: refused, saying to make it.
"$BV" replica create "$S" hc --size 1M >/dev/null &&
	"$BV" replica create "$S" hd --size 1M >/dev/null &&
	"$BV" group create "$S" g3 hc hd >/dev/null &&
	"$BV" rp create "$S" g3 >/dev/null
ok $? "group g3 of hc and hd here, RP 1"
listing "$R" "$T/r.before"
push g3 --name pusher
r=$?
[ $r -eq 1 ] && grep -q 'must exist .*with the same members' "$T/err"
ok $? "a group the remote lacks is refused, saying to make it there"
[ $r -eq 1 ] || sed 's/^/# /' "$T/out" "$T/err"
listing "$R" "$T/r.after" && cmp -s "$T/r.before" "$T/r.after"
ok $? "... and the remote is unchanged"

stop_remote
stop_server
done_testing
