#!/usr/bin/env bash
# net_keys.sh: agents with an Ed25519 key (bvault-agent keygen, bvault
# agent add --public-key, bvault-agent --key; tools/PROTOCOL.md AUTH_SIG)
# and bvault agent grant / revoke, with the real bvaultd:
#  - keygen: the private file 0600, the public one beside it; neither is
#    ever overwritten;
#  - a key agent backs up, bit for bit; a wrong key, the public key used
#    as a secret, a signature for an agent with a secret: all refused
#    with the one answer ERROR auth; an agent with a secret still works;
#  - the store holds the public key only: a copy of the whole store
#    directory has no byte of the private key, and agent ls --json shows
#    the kind and the public key;
#  - grant and revoke, through a running bvaultd, take effect at once;
#  - bvault push --key to a second bvaultd.
# Usage: net_keys.sh BVAULT BVAULTD BVAULT_AGENT
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

# keygen
"$BVA" keygen --out "$T/k1" >"$T/out" 2>"$T/err"
ok $? "keygen --out k1"
[ "$(stat -c %a "$T/k1")" = 600 ] && [ -f "$T/k1.pub" ]
ok $? "the private key is 0600, the public one in k1.pub"
grep -Eq '^bvault-ed25519-v1 [0-9a-f]{64}$' "$T/k1.pub"
ok $? "k1.pub: bvault-ed25519-v1 and 64 hex digits"
cp "$T/k1" "$T/k1.before"; cp "$T/k1.pub" "$T/k1.pub.before"
"$BVA" keygen --out "$T/k1" >"$T/out" 2>"$T/err"
r=$?
[ $r -ne 0 ] && grep -q 'refusing to overwrite' "$T/err" &&
	cmp -s "$T/k1" "$T/k1.before" && cmp -s "$T/k1.pub" "$T/k1.pub.before"
ok $? "keygen refuses to overwrite an existing key (exit $r)"
: >"$T/k3.pub"
"$BVA" keygen --out "$T/k3" >"$T/out" 2>"$T/err"
r=$?
[ $r -ne 0 ] && [ ! -e "$T/k3" ] && [ ! -s "$T/k3.pub" ]
ok $? "keygen refuses when only FILE.pub exists, and makes nothing"
"$BVA" keygen --out "$T/k2" >/dev/null 2>&1
ok $? "keygen --out k2 (another key)"
"$BVA" keygen >"$T/out" 2>"$T/err"
[ $? -eq 2 ]; ok $? "keygen without --out: a usage error"

run_ok "init" "$BV" init "$S" || done_testing
run_ok "agent add --public-key" \
	"$BV" agent add "$S" kh --group vm1 --public-key "$T/k1.pub"
grep -q 'public key' "$T/out" && ! grep -Eq '[0-9a-f]{64}' "$T/out"
ok $? "agent add --public-key prints no secret"
run_fail "agent add --public-key of a file that is no key" 1 'not a' \
	"$BV" agent add "$S" kx --group vm1 --public-key "$T/k1"
run_fail "--public-key and --secret-file together" 2 'not both' \
	"$BV" agent add "$S" ky --group vm1 --public-key "$T/k1.pub" \
	--secret-file "$T/ky.key"
"$BV" agent add "$S" hs --group vm3 --secret-file "$T/hs.key" >/dev/null
ok $? "agent add hs, with a secret"

run_ok "agent ls" "$BV" agent ls "$S"
grep -Eq '^kh +key ' "$T/out" && grep -Eq '^hs +secret ' "$T/out"
ok $? "agent ls says kh is a key agent, hs a secret one"
run_ok "agent ls --json" "$BV" agent ls "$S" --json
cp "$T/out" "$T/ls.json"
pub=$(sed 's/^bvault-ed25519-v1 //' "$T/k1.pub")
json_ok "$T/ls.json"; ok $? "agent ls --json is JSON"
grep -q "\"name\": \"kh\", \"kind\": \"key\"" "$T/ls.json" &&
	grep -q "\"public_key\": \"$pub\"" "$T/ls.json" &&
	grep -q "\"name\": \"hs\", \"kind\": \"secret\"" "$T/ls.json"
ok $? "agent ls --json: the kinds, and kh's public key"

start_server || done_testing
mkimg "$T/img" 4
cp --sparse=always "$T/img" "$T/v1"
agent --name kh --key "$T/k1" --disk vm1="$T/img" --full --label bykey
ok $? "a backup with --key"
grep -q "agent kh .*authenticated (key)" "$LOG"
ok $? "bvaultd logs a login with a key"
run_ok "export vm1@1" "$BV" export "$S" vm1@1 "$T/x1"
cmp "$T/x1" "$T/v1" >/dev/null; ok $? "the key agent's RP equals the image"

agent_fail "a wrong key is refused" 'authentication failed' \
	--name kh --key "$T/k2" --disk vm1="$T/img" --full
# The public key is all the store has: used as a secret, it is refused.
sed 's/^bvault-ed25519-v1 //' "$T/k1.pub" >"$T/pub-as-secret"
agent_fail "the public key as a secret (HMAC) is refused" \
	'authentication failed' \
	--name kh --secret-file "$T/pub-as-secret" --disk vm1="$T/img" --full
# An all-zero secret: what a key agent's secret would be if it had one.
printf '%064d\n' 0 >"$T/zero-secret"
agent_fail "an all-zero secret for the key agent is refused" \
	'authentication failed' \
	--name kh --secret-file "$T/zero-secret" --disk vm1="$T/img" --full
agent_fail "a signature for an agent with a secret is refused" \
	'authentication failed' \
	--name hs --key "$T/k1" --disk vm3="$T/img" --full
agent_fail "a signature for an unknown agent: the same answer" \
	'authentication failed' \
	--name nobody --key "$T/k1" --disk vm1="$T/img" --full
[ "$(log_count "authentication failed: agent name")" -ge 5 ]
ok $? "each refusal logged"
agent --name hs --secret-file "$T/hs.key" --disk vm3="$T/img" --full
ok $? "the agent with a secret still works beside it"
run_ok "export vm3@1" "$BV" export "$S" vm3@1 "$T/x3"
cmp "$T/x3" "$T/v1" >/dev/null; ok $? "its RP equals the image"

# Everything the store holds: no byte of the private key in it.
cp -a "$S" "$T/copy"
if command -v python3 >/dev/null; then
	python3 - "$T/k1" "$T/copy" <<'PY'
import os, sys
hexkey = open(sys.argv[1]).read().split()[1]
seed = bytes.fromhex(hexkey)[:32]      # the private half
pats = [seed, seed.hex().encode(), seed.hex().upper().encode(),
        bytes.fromhex(hexkey), hexkey.encode()]
for d, _, fs in os.walk(sys.argv[2]):
    for f in fs:
        p = os.path.join(d, f)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        try:
            b = open(p, 'rb').read()
        except OSError:
            continue
        for x in pats:
            if x in b:
                print('found in', p); sys.exit(1)
PY
	ok $? "no byte of the private key anywhere in a copy of the store"
else
	skip "no byte of the private key in the store" "no python3"
fi
rm -rf "$T/copy"

# grant / revoke through the running bvaultd, at once.
agent_fail "vm2 is not granted yet" 'may not' \
	--name kh --key "$T/k1" --disk vm2="$T/img" --full
n0=$(log_count 'admin #.*: running')
run_ok "agent grant kh vm2 (through bvaultd)" "$BV" agent grant "$S" kh vm2
[ "$(log_count 'admin #.*: running')" -gt "$n0" ]
ok $? "grant was carried out by bvaultd"
agent --name kh --key "$T/k1" --disk vm2="$T/img" --full
ok $? "granted vm2: the next backup works at once"
run_ok "agent revoke kh vm2" "$BV" agent revoke "$S" kh vm2
agent_fail "revoked vm2: the backup is refused" 'may not' \
	--name kh --key "$T/k1" --disk vm2="$T/img" --full
agent --name kh --key "$T/k1" --disk vm1="$T/img" --full
ok $? "vm1 is still granted, with the same key"
run_ok "agent grant kh vm2 again" "$BV" agent grant "$S" kh vm2 vm1
agent --name kh --key "$T/k1" --disk vm2="$T/img" --full
ok $? "granted again: the backup works"
run_fail "revoke a group not held" 1 'has no group vm7' \
	"$BV" agent revoke "$S" kh vm7
run_fail "revoke every group" 1 'no group left' \
	"$BV" agent revoke "$S" kh vm1 vm2
run_fail "grant to an unknown agent" 1 'not found' \
	"$BV" agent grant "$S" nobody vm1
run_fail "grant: no group" 2 'GROUP' "$BV" agent grant "$S" kh
run_ok "agent grant hs (a secret agent) vm4" "$BV" agent grant "$S" hs vm4
agent --name hs --secret-file "$T/hs.key" --disk vm4="$T/img" --full
ok $? "the secret agent keeps its secret after a grant"
run_ok "agent ls --json after the grants" "$BV" agent ls "$S" --json
grep -q "\"public_key\": \"$pub\", \"groups\": \\[\"vm1\", \"vm2\"\\]" \
	"$T/out"
ok $? "kh: same public key, groups vm1 and vm2"

# agent add --public-key through the running bvaultd (a relative path,
# read in the caller's directory): the agent logs in at once.
n0=$(log_count 'admin #.*: running')
(cd "$T" && "$BV" agent add "$S" k3 --group vm5 --public-key k2.pub) \
	>"$T/out" 2>"$T/err"
ok $? "agent add --public-key (relative) through bvaultd"
[ "$(log_count 'admin #.*: running')" -gt "$n0" ]
ok $? "that agent add was carried out by bvaultd"
agent --name k3 --key "$T/k2" --disk vm5="$T/img" --full
ok $? "the new key agent backs up right after"

# bvault push with --key, to a second bvaultd whose store knows the
# pusher by its public key only.
R=$T/remote
run_ok "init the remote" "$BV" init "$R"
run_ok "agent add pusher --public-key on the remote" \
	"$BV" agent add "$R" pusher --group vm1 --public-key "$T/k2.pub"
"$BVD" "$R" --unix "$T/rsock" 2>>"$T/rlog" &
RSRV=$!
for _ in $(seq 1 600); do
	[ -S "$T/rsock" ] && break
	sleep 0.1
done
run_ok "push vm1 --key" "$BV" push "$S" vm1 --unix "$T/rsock" \
	--name pusher --key "$T/k2"
run_fail "push with the wrong key is refused" 1 'authentication failed' \
	"$BV" push "$S" vm1 --unix "$T/rsock" --name pusher --key "$T/k1"
kill -TERM "$RSRV"; wait "$RSRV"
ok $? "the remote bvaultd exits 0"
"$BV" export "$R" vm1@1 "$T/y1" >/dev/null 2>&1 && cmp -s "$T/y1" "$T/v1"
ok $? "the pushed RP 1 equals the image"

stop_server
run_ok "verify" "$BV" verify "$S"
done_testing
