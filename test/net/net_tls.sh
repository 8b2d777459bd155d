#!/usr/bin/env bash
# net_tls.sh: TLS on bvaultd's TCP listeners (tools/PROTOCOL.md, "TLS"),
# with the real bvaultd, bvault-agent, OpenSSL's command line tool and a
# relay of the test's own (tls_relay.py):
#  - bvault tls init / fingerprint: the pair private to the owner, the
#    fingerprint the one openssl prints, never replaced unasked;
#  - an agent that pins the fingerprint backs up bit for bit (secret and
#    key agents); a wrong pin, no pin, a --ca that does not vouch for the
#    server: refused, naming both fingerprints, nothing committed;
#  - a machine in the middle with another key: refused by the pin; one
#    the agent was made to trust, relaying the login to the real server:
#    refused by the channel binding, while the same relay without TLS
#    logs in (so it is the binding that stops it);
#  - a peer that stalls in the handshake is dropped at the login
#    deadline, one that sends no TLS is refused; a real agent meanwhile
#    succeeds;
#  - --renew, and an operator's certificate from a CA (--tls-cert,
#    --tls-key) with the agent's --ca and its host name check.
# Usage: net_tls.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"
RELAY=(python3 "$(dirname "$0")/tls_relay.py")

# tcp_server [ARGS...]: bvaultd on a TCP port of its choosing ($PORT) and
# on $SOCK.
tcp_server() {
	local from
	from=$(wc -l <"$LOG" 2>/dev/null || echo 0)
	start_server --listen 127.0.0.1:0 "$@" || return 1
	PORT=
	for _ in $(seq 1 600); do
		PORT=$(tail -n +"$((from + 1))" "$LOG" |
			sed -n 's/.*listening on 127.0.0.1 port \([0-9]*\)$/\1/p' |
			tail -n 1)
		[ -n "$PORT" ] && return 0
		sleep 0.1
	done
	return 1
}

agent() {
	"$BVA" --name "$@" >"$T/out" 2>"$T/err" </dev/null
}

# agent_fail DESC RE ARGS...: the agent must fail (exit 1) with stderr
# matching RE.
agent_fail() {
	local desc=$1 re=$2 rc
	shift 2
	agent "$@"
	rc=$?
	if [ $rc -eq 1 ] && grep -Eq -- "$re" "$T/err"; then
		ok 0 "$desc"
	else
		ok 1 "$desc"
		diag "exit $rc; stderr:"; sed 's/^/#   /' "$T/err"
	fi
}

# relay NAME IN OUT TARGET [CERT KEY]: starts tls_relay.py ($NAME_port).
relay() {
	local name=$1
	shift
	rm -f "$T/$name.port"
	"${RELAY[@]}" "$T/$name.port" "$@" 2>>"$T/relay.log" &
	RELAYS+=($!)
	for _ in $(seq 1 100); do
		[ -s "$T/$name.port" ] && break
		sleep 0.05
	done
	eval "${name}_port=\$(cat \"\$T/$name.port\")"
}
RELAYS=(); SLOW=()
trap 'kill "${RELAYS[@]}" 2>/dev/null' EXIT

rps() { "$BV" rp ls "$S" vm1 2>/dev/null | grep -c '^vm1 '; }

run_ok "init" "$BV" init "$S" || done_testing
"$BV" agent add "$S" hs --group vm1 --secret-file "$T/hs.key" >/dev/null
ok $? "agent add hs (a secret)"
"$BVA" keygen --out "$T/k" >/dev/null 2>&1 &&
	"$BV" agent add "$S" kh --group vm1 --public-key "$T/k.pub" >/dev/null
ok $? "agent add kh (a key)"
mkimg "$T/vm1" 8
for i in 1 2; do
	"$BV" agent add "$S" "sl$i" --group "sl$i" --secret-file "$T/sl$i.key" \
		>/dev/null || ok 1 "agent add sl$i"
done

run_fail "tls fingerprint before any key" 1 'has no TLS certificate.*bvault tls init' \
	"$BV" tls fingerprint "$S"
run_ok "tls init" "$BV" tls init "$S" --name backup.example,10.9.8.7
FP=$(cat "$T/out")
[[ $FP =~ ^sha256:[0-9a-f]{64}$ ]]; ok $? "tls init prints the fingerprint ($FP)"
[ "$(stat -c %a "$S/tls")" = 700 ] &&
	[ "$(stat -c %a "$S/tls/key.pem")" = 600 ] &&
	[ "$(stat -c %a "$S/tls/cert.pem")" = 600 ]
ok $? "STORE/tls is 0700, key.pem and cert.pem 0600"
OFP=$(openssl x509 -in "$S/tls/cert.pem" -noout -fingerprint -sha256 |
	sed 's/.*=//; s/://g' | tr A-F a-f)
[ "sha256:$OFP" = "$FP" ]; ok $? "openssl x509 -fingerprint -sha256 shows the same"
openssl x509 -in "$S/tls/cert.pem" -noout -ext subjectAltName >"$T/san" 2>&1
grep -q 'DNS:backup.example' "$T/san" && grep -q 'IP Address:10.9.8.7' "$T/san" &&
	grep -q 'DNS:localhost' "$T/san"
ok $? "the certificate names --name's host and address, and localhost"
cp "$S/tls/key.pem" "$T/key.before"
run_fail "tls init again is refused" 1 'already has a TLS key.*--renew' \
	"$BV" tls init "$S"
cmp -s "$S/tls/key.pem" "$T/key.before"; ok $? "... and the key is unchanged"
run_fail "tls init --name with a bad host" 2 "not a host name" \
	"$BV" tls init "$S" --name 'a b' --renew
run_fail "tls fingerprint of no store" 1 'no TLS certificate' \
	"$BV" tls fingerprint "$T/nothing"

tcp_server || done_testing
grep -q "TLS 1.3 on TCP: certificate $FP" "$LOG"
ok $? "bvaultd logs the certificate it presents"
SRVA=(--server "127.0.0.1:$PORT")

# The fingerprint as an operator may copy it: upper case, with colons.
UFP=$(openssl x509 -in "$S/tls/cert.pem" -noout -fingerprint -sha256 | sed 's/.*=//')
agent hs --secret-file "$T/hs.key" "${SRVA[@]}" --fingerprint "$UFP" \
	--disk "vm1=$T/vm1" --full
ok $? "a secret agent over TLS, pinned (upper case with colons)"
"$BV" export "$S" vm1@1 "$T/e1" >/dev/null 2>&1 && cmp -s "$T/e1" "$T/vm1"
ok $? "vm1@1 is the image, bit for bit"
poke "$T/vm1" 65536 65536
agent kh --key "$T/k" "${SRVA[@]}" --fingerprint "$FP" --disk "vm1=$T/vm1" \
	--full
ok $? "a key agent over TLS, pinned"
"$BV" export "$S" vm1@2 "$T/e2" >/dev/null 2>&1 && cmp -s "$T/e2" "$T/vm1"
ok $? "vm1@2 is the changed image, bit for bit"
grep -q "agent kh (127.0.0.1:[0-9]*): authenticated (key)" "$LOG"
ok $? "the server logs kh's login by key"

n=$(rps)
BAD=sha256:$(printf '%064d' 7)
agent_fail "a wrong pin is refused, naming both fingerprints" \
	"presented the certificate $FP, not the pinned $BAD" \
	hs --secret-file "$T/hs.key" "${SRVA[@]}" --fingerprint "$BAD" \
	--disk "vm1=$T/vm1" --full
agent_fail "no pin is refused, showing the fingerprint to check" \
	"is not pinned: its certificate is $FP" \
	hs --secret-file "$T/hs.key" "${SRVA[@]}" --disk "vm1=$T/vm1" --full
agent hs --secret-file "$T/hs.key" "${SRVA[@]}" --fingerprint nothex \
	--disk "vm1=$T/vm1" --full
[ $? -eq 2 ] && grep -q 'not a SHA-256 fingerprint' "$T/err"
ok $? "--fingerprint that is not one: a usage error (exit 2)"
agent hs --secret-file "$T/hs.key" "${SRVA[@]}" --ca "$S/tls/cert.pem" \
	--disk "vm1=$T/vm1" --full
ok $? "--ca with the store's own certificate is trusted (127.0.0.1 in it)"
n=$((n + 1))

# Another key: a second store's pair, for the relays and the wrong CA.
"$BV" init "$T/other" >/dev/null && "$BV" tls init "$T/other" >/dev/null
MFP=$("$BV" tls fingerprint "$T/other")
agent_fail "--ca of another certificate is refused" \
	"not trusted by --ca" \
	hs --secret-file "$T/hs.key" "${SRVA[@]}" --ca "$T/other/tls/cert.pem" \
	--disk "vm1=$T/vm1" --full
[ "$(rps)" = "$n" ]; ok $? "nothing was committed by the refused agents"

# A machine in the middle, TLS on both sides with its own key.
relay mitm tls tls "$PORT" "$T/other/tls/cert.pem" "$T/other/tls/key.pem"
agent_fail "a man in the middle is refused by the pin" \
	"presented the certificate $MFP, not the pinned $FP" \
	hs --secret-file "$T/hs.key" --server "127.0.0.1:$mitm_port" \
	--fingerprint "$FP" --disk "vm1=$T/vm1" --full
# The agent was made to trust the relay: it relays the login.
auth0=$(log_count 'authentication failed')
agent_fail "a relayed login by secret is refused (channel binding)" \
	"authentication failed" \
	hs --secret-file "$T/hs.key" --server "127.0.0.1:$mitm_port" \
	--fingerprint "$MFP" --disk "vm1=$T/vm1" --full
agent_fail "a relayed login by key is refused (channel binding)" \
	"authentication failed" \
	kh --key "$T/k" --server "127.0.0.1:$mitm_port" \
	--fingerprint "$MFP" --disk "vm1=$T/vm1" --full
[ "$(log_count 'authentication failed')" -eq $((auth0 + 2)) ]
ok $? "the server saw both relayed proofs and refused them"
# The same relay, plain on both sides to the Unix socket: the login goes
# through it, so what refused above is the binding, not the relay.
relay plain plain plain "$SOCK"
agent hs --secret-file "$T/hs.key" --server "127.0.0.1:$plain_port" --no-tls \
	--disk "vm1=$T/vm1" --full
ok $? "control: the relay without TLS carries a login and a backup"
n=$((n + 1))
[ "$(rps)" = "$n" ]; ok $? "only the control run committed"

# Hostile peers against the TLS port, a real agent between them.
stop_server
tcp_server --login-timeout 2 || done_testing
python3 - "$PORT" >"$T/stall" 2>&1 <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
# The first bytes of a ClientHello record header, then nothing.
s.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]))
s.settimeout(20)
t = time.time()
try:
    d = s.recv(100)
except OSError:
    d = b""
print("closed after %.1f s" % (time.time() - t))
PY
STALL=$!
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read()); s.settimeout(10)
try: s.recv(100)
except OSError: pass' "$PORT"
poke "$T/vm1" 0 4096
agent hs --secret-file "$T/hs.key" "${SRVA[@]/$PORT*/}" --server "127.0.0.1:$PORT" \
	--fingerprint "$FP" --disk "vm1=$T/vm1" --full
ok $? "a real agent backs up beside a stalled handshake and an HTTP peer"
"$BV" export "$S" vm1@latest "$T/e3" >/dev/null 2>&1 && cmp -s "$T/e3" "$T/vm1"
ok $? "... bit for bit"
wait $STALL
grep -Eq 'closed after [0-9.]+ s' "$T/stall"
ok $? "the stalled handshake was closed at the login deadline ($(cat "$T/stall"))"
wait_log 'TLS handshake failed' 1; ok $? "the HTTP peer's handshake failed, logged"
agent_fail "an agent without TLS to the TLS port fails" "closed|TLS" \
	hs --secret-file "$T/hs.key" --server "127.0.0.1:$PORT" --no-tls \
	--disk "vm1=$T/vm1" --full

# Every connection logged in: the next one still learns why it is
# refused, inside TLS (ERROR busy after the handshake).
stop_server
tcp_server --max-connections 2 || done_testing
mkimg "$T/slow" 8
a0=$(log_count 'authenticated (secret)')
for i in 1 2; do
	"$BVA" --name "sl$i" --secret-file "$T/sl$i.key" \
		--server "127.0.0.1:$PORT" \
		--fingerprint "$FP" --disk "sl$i=$T/slow" --full --no-rp \
		--bandwidth 256K >/dev/null 2>&1 </dev/null &
	SLOW+=($!)
done
wait_log 'authenticated (secret)' $((a0 + 2))
ok $? "two slow agents hold both connections"
agent_fail "a third gets ERROR busy over TLS, naming the limit" \
	"the server is busy: it serves 2 connections" \
	hs --secret-file "$T/hs.key" --server "127.0.0.1:$PORT" \
	--fingerprint "$FP" --disk "vm1=$T/vm1" --full
kill "${SLOW[@]}" 2>/dev/null; wait "${SLOW[@]}" 2>/dev/null

# --renew: a new pair; the running server keeps the old until restarted.
run_ok "tls init --renew" "$BV" tls init "$S" --renew
NFP=$(cat "$T/out")
[ "$NFP" != "$FP" ] && [ "$("$BV" tls fingerprint "$S")" = "$NFP" ]
ok $? "--renew made a new fingerprint"
[ ! -e "$S/tls/key.pem.old" ] && [ -z "$(ls -d "$S"/tls.new-* 2>/dev/null)" ]
ok $? "... and left no old or temporary pair behind"
stop_server
tcp_server || done_testing
agent_fail "after the restart the old pin is refused" "not the pinned $FP" \
	hs --secret-file "$T/hs.key" --server "127.0.0.1:$PORT" \
	--fingerprint "$FP" --disk "vm1=$T/vm1" --full
agent hs --secret-file "$T/hs.key" --server "127.0.0.1:$PORT" \
	--fingerprint "$NFP" --disk "vm1=$T/vm1" --full
ok $? "and the new one works"
stop_server

# An operator's certificate from a CA of their own.
(cd "$T" &&
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout ca.key -out ca.pem -days 30 -subj /CN=test-ca \
		-addext basicConstraints=critical,CA:TRUE &&
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout srv.key -out srv.csr -subj /CN=localhost &&
	printf 'subjectAltName=DNS:localhost\n' >ext &&
	openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key \
		-CAcreateserial -out srv.pem -days 30 -extfile ext) \
	>"$T/openssl.log" 2>&1
ok $? "openssl makes a CA and a server certificate for localhost"
tcp_server --tls-cert "$T/srv.pem" --tls-key "$T/srv.key" || done_testing
agent hs --secret-file "$T/hs.key" --server "localhost:$PORT" --ca "$T/ca.pem" \
	--disk "vm1=$T/vm1" --full
ok $? "--ca CA: the operator's certificate is trusted for localhost"
agent_fail "--ca CA: 127.0.0.1 is not a name the certificate has" \
	"not trusted by --ca.*(mismatch|hostname|IP)" \
	hs --secret-file "$T/hs.key" --server "127.0.0.1:$PORT" --ca "$T/ca.pem" \
	--disk "vm1=$T/vm1" --full
stop_server
"$BVD" "$S" --listen 127.0.0.1:0 --tls-cert "$T/srv.pem" --tls-key \
	"$T/ca.key" >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -Eq 'cannot be used with certificate .*(mismatch|not the key)|is not the key of' "$T/err"
ok $? "bvaultd refuses a key that is not the certificate's"
"$BVD" "$S" --listen 127.0.0.1:0 --tls-cert "$T/srv.pem" >/dev/null 2>"$T/err"
[ $? -eq 2 ]; ok $? "--tls-cert without --tls-key: a usage error"
done_testing
