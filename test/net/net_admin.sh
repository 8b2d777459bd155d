#!/usr/bin/env bash
# net_admin.sh: administration while bvaultd runs, through its admin
# socket STORE/admin.sock (tools/PROTOCOL.md, "Admin socket"), with the
# real bvault and bvaultd.
#  - two stores made the same way: each command that changes a store run
#    on one while bvaultd holds it and on the other without a daemon
#    gives byte for byte the same stdout, stderr and exit status (errors
#    too), relative paths resolving in the caller's directory;
#  - an agent added over the socket connects at once, a removed one is
#    refused; recover says bvaultd holds the store;
#  - a caller of another uid is refused (SO_PEERCRED: a bvaultd run as
#    uid 65534, bvault as root), malformed requests are refused and
#    bvaultd keeps serving;
#  - the caller killed mid-command (bvaultd finishes it), bvaultd killed
#    mid-command (the caller says so, exit 1), a stale socket.
# Usage: net_admin.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"

A=$T/a # its store is served by bvaultd
L=$T/l # its store is changed by bvault itself
IN=/dev/null

# same DESC WANT ARGS...: `bvault ARGS` in $A and in $L, stdin from $IN,
# must exit WANT and print the same bytes; in $A bvaultd must have run it.
same() {
	local desc=$1 want=$2 ra rl n0
	shift 2
	n0=$(log_count 'admin #.*: running')
	(cd "$A" && "$BV" "$@") <"$IN" >"$T/a.out" 2>"$T/a.err"
	ra=$?
	(cd "$L" && "$BV" "$@") <"$IN" >"$T/l.out" 2>"$T/l.err"
	rl=$?
	if [ $ra -eq "$want" ] && [ $rl -eq "$want" ] &&
	   cmp -s "$T/a.out" "$T/l.out" && cmp -s "$T/a.err" "$T/l.err"; then
		ok 0 "$desc: exit $want, same output through bvaultd"
	else
		ok 1 "$desc: exit $want, same output through bvaultd"
		diag "bvault $*: exit $ra through bvaultd, $rl without" \
		     "through bvaultd:" "$(cat "$T/a.out" "$T/a.err")" \
		     "without:" "$(cat "$T/l.out" "$T/l.err")"
	fi
	# Usage errors are found before the store is opened, so only the
	# commands that got that far reach bvaultd.
	if [ "$want" -ne 2 ]; then
		[ "$(log_count 'admin #.*: running')" -gt "$n0" ]
		ok $? "$desc: bvaultd ran it"
	fi
}

mkdir -p "$A/keys" "$L/keys" "$A/streams" "$L/streams"
for d in "$A" "$L"; do
	(cd "$d" && "$BV" init store >/dev/null &&
		"$BV" replica create store seed --size 4M >/dev/null)
done
ok $? "two stores made the same way"
S=$A/store
start_server || done_testing
[ "$(stat -c %a "$S/admin.sock")" = 600 ] && [ "$(stat -c %a "$S")" = 700 ]
ok $? "admin.sock is 0600 in the 0700 store"
grep -q "admin socket $S/admin.sock" "$LOG"
ok $? "bvaultd logs its admin socket"

# replica create, group create
same "replica create" 0 replica create store vm1 --size 8M
same "replica create: exists" 1 replica create store vm1 --size 8M
same "replica create: bad size" 2 replica create store vm2 --size 1X
same "replica create vm2" 0 replica create store vm2 --size 4M
same "replica create vm3" 0 replica create store vm3 --size 4M
same "group create: an unknown replica" 1 group create store g1 vm2 nosuch
same "group create" 0 group create store g1 vm2 vm3
same "group create: missing replicas" 2 group create store g2

# agent add and rm
same "agent add --secret-file (relative)" 0 agent add store a1 \
	--group vm1 --secret-file keys/a1.key
[ -f "$A/keys/a1.key" ] && [ "$(stat -c %a "$A/keys/a1.key")" = 600 ] &&
	grep -Eq '^[0-9a-f]{64}$' "$A/keys/a1.key"
ok $? "the secret file is in the caller's directory, 0600"
same "agent add: exists" 1 agent add store a1 --group vm1 \
	--secret-file keys/a1b.key
[ ! -e "$A/keys/a1b.key" ]
ok $? "... and leaves no secret file"
same "agent add: the file exists" 1 agent add store a9 --group vm1 \
	--secret-file keys/a1.key
same "agent add: no --group" 2 agent add store a2
(cd "$A" && "$BV" agent add store a2 --group vm2) >"$T/a.out" 2>"$T/a.err"
ra=$?
(cd "$L" && "$BV" agent add store a2 --group vm2) >"$T/l.out" 2>"$T/l.err"
[ $ra -eq 0 ] && [ $? -eq 0 ] && grep -Eq '^[0-9a-f]{64}$' "$T/a.out" &&
	cmp -s "$T/a.err" "$T/l.err"
ok $? "agent add to stdout: a secret through bvaultd too"
same "agent rm" 0 agent rm store a2
same "agent rm: unknown" 1 agent rm store a2

# rp create
same "rp create" 0 rp create store vm1 --label r1
same "rp create of a group" 0 rp create store g1 --consistency crash
same "rp create: an unknown replica" 1 rp create store nosuch
same "rp create: bad --consistency" 2 rp create store vm1 --consistency x

# index backup: made by bvaultd (RocksDB's checkpoint needs the writer),
# into a directory relative to the caller; restore and rebuild need the
# store alone.
n0=$(log_count 'admin #.*: running')
(cd "$A" && "$BV" index backup store bk) >"$T/a.out" 2>"$T/a.err"
rc=$?
[ $rc -eq 0 ] && [ -f "$A/bk/backup.info" ] && [ -d "$A/bk/index" ] &&
	grep -q "^backup bk: taken" "$T/a.out" &&
	[ "$(log_count 'admin #.*: running')" -gt "$n0" ]
ok $? "index backup through bvaultd, into the caller's relative DIR (exit $rc)"
(cd "$A" && "$BV" index backup store bk) >"$T/a.out" 2>"$T/a.err"
[ $? -eq 1 ] && grep -q "exists already" "$T/a.err"
ok $? "index backup over a directory that exists: refused through bvaultd"
(cd "$A" && "$BV" index restore store bk) >"$T/a.out" 2>"$T/a.err"
[ $? -eq 1 ] && grep -q "stop bvaultd" "$T/a.err"
ok $? "index restore beside bvaultd is refused, saying to stop it"
(cd "$A" && "$BV" index rebuild store) >"$T/a.out" 2>"$T/a.err"
[ $? -eq 1 ] && grep -q "stop bvaultd" "$T/a.err"
ok $? "index rebuild beside bvaultd is refused, saying to stop it"

# ingest: a stream file given relatively, stdin, errors
# latest_rp REPLICA: the replica's latest RP in $A's store.
latest_rp() {
	(cd "$A" && "$BV" ls store) | awk -v r="$1" '$1 == r { print $NF }'
}

mkimg "$T/img" 8
"$BV" mkstream "$T/img" --replica vm1 --base "$(latest_rp vm1)" \
	--out "$T/s1" &&
	cp "$T/s1" "$A/streams/s1" && cp "$T/s1" "$L/streams/s1"
ok $? "a stream for vm1 based on its latest RP"
same "ingest streams/s1 --rp" 0 ingest store streams/s1 --rp --label i1
same "ingest: no such file" 1 ingest store streams/nosuch
same "ingest: the base moved on" 1 ingest store streams/s1
poke "$T/img" 65536 4096
"$BV" mkstream "$T/img" --replica vm1 --base "$(latest_rp vm1)" \
	--out "$T/s2"
ok $? "a stream for vm1 based on its latest RP"
IN=$T/s2
same "ingest from stdin" 0 ingest store --rp
same "ingest from stdin again: the base moved on" 1 ingest store -
IN=/dev/null
same "ingest: --label without --rp" 2 ingest store --label x -

# view promote (view create only reads: bvault does it itself)
for d in "$A" "$L"; do
	(cd "$d" && "$BV" view create store v1 --from vm1@latest >/dev/null)
done
same "view promote --as" 0 view promote store v1 --as vm9 --label p
same "view promote: the replica exists" 1 view promote store v1 --as vm9
same "view promote: neither --as nor --into" 2 view promote store v1
same "view promote: an unknown view" 1 view promote store nosuch --into

# The stores match, and what only reads still opens read-only itself.
n0=$(log_count 'admin #.*: running')
(cd "$A" && "$BV" ls store && "$BV" rp ls store vm1 | cut -c1-27,49-) \
	>"$T/a.ls" 2>&1
(cd "$L" && "$BV" ls store && "$BV" rp ls store vm1 | cut -c1-27,49-) \
	>"$T/l.ls" 2>&1
cmp -s "$T/a.ls" "$T/l.ls"
ok $? "both stores list the same replicas and RPs"
[ "$(log_count 'admin #.*: running')" -eq "$n0" ]
ok $? "ls and rp ls did not go through bvaultd"
(cd "$A" && "$BV" recover store --accept-index-loss) >"$T/out" 2>"$T/err"
[ $? -eq 1 ] && grep -q 'bvault recover: bvaultd holds store store: stop it first' "$T/err"
ok $? "recover: bvaultd holds the store, stop it first"

# The caller's own descriptors: isatty() in bvaultd sees the caller's
# terminal (script(1) makes one): agent add warns on it that the secret
# is not shown again, and ingest draws its progress bar.
if command -v script >/dev/null; then
	"$BV" mkstream "$T/img" --replica vm3 --base "$(latest_rp vm3)" \
		--out "$A/streams/t1" 2>/dev/null
	n0=$(log_count 'admin #.*: running')
	script -qec "cd '$A' && '$BV' agent add store tty1 --group vm1 &&
		'$BV' ingest store streams/t1" "$T/tty" >/dev/null 2>&1 </dev/null
	r=$?
	[ $r -eq 0 ] && grep -q "that is agent tty1's secret; it is not shown again" "$T/tty"
	ok $? "agent add on a terminal through bvaultd: the warning (exit $r)"
	grep -q "ingest \[#*" "$T/tty" && grep -q 'committed 1 stream' "$T/tty"
	ok $? "ingest on a terminal through bvaultd: its progress bar"
	[ "$(log_count 'admin #.*: running')" -eq $((n0 + 2)) ]
	ok $? "... both run by bvaultd"
else
	for i in 1 2 3; do
		skip "a terminal through bvaultd ($i)" "no script(1)"
	done
fi

# A new agent connects at once; a removed one is refused.
(cd "$A" && "$BV" agent add store net1 --group vm5 --secret-file keys/net1) \
	>/dev/null
ok $? "agent add net1 through bvaultd"
"$BVA" --unix "$SOCK" --name net1 --secret-file "$A/keys/net1" \
	--disk vm5="$T/img" --full >"$T/out" 2>"$T/err"
ok $? "net1 connects and sends a full right after"
(cd "$A" && "$BV" agent rm store net1) >/dev/null
ok $? "agent rm net1 through bvaultd"
"$BVA" --unix "$SOCK" --name net1 --secret-file "$A/keys/net1" \
	--disk vm5="$T/img" --full >"$T/out" 2>"$T/err"
[ $? -ne 0 ] && grep -qi 'authentication failed' "$T/err"
ok $? "net1 is refused from its next connection"

# Malformed requests: each refused with a reason; bvaultd goes on.
if command -v python3 >/dev/null; then
	python3 - "$S/admin.sock" >"$T/py" 2>&1 <<'EOF'
import os, socket, struct, sys
path = sys.argv[1]
def hdr(n, t=1, v=1, r=0):
    return struct.pack('<IBBH', n, t, v, r)
def run(words, mask=0o77):
    b = struct.pack('<IH', mask, len(words))
    for w in words:
        b += struct.pack('<H', len(w)) + w
    return b
fds = [os.open('.', os.O_RDONLY | os.O_DIRECTORY), 0, 1, 2]
good = run([b'rp', b'create', b'x', b'vm1'])
cases = [
    ('version', hdr(len(good), v=2) + good, fds),
    ('unknown type', hdr(len(good), t=5) + good, fds),
    ('unknown type', hdr(len(good), r=1) + good, fds),
    ('over 64 KiB', hdr(1 << 20) + good, fds),
    ('4 descriptors', hdr(len(good)) + good, []),
    ('4 descriptors', hdr(len(good)) + good, fds[:2]),
    ('not a directory', hdr(len(good)) + good, [0, 0, 1, 2]),
    ('no words', hdr(6) + run([]), fds),
    ('umask', hdr(len(good)) + run([b'rp', b'create', b'x', b'vm1'], 0o1000),
     fds),
    ('beyond the payload', hdr(8) + struct.pack('<IHH', 0, 1, 50), fds),
    ('NUL', hdr(len(run([b'a\0b']))) + run([b'a\0b']), fds),
    ('after the last word', hdr(len(good) + 3) + good + b'xyz', fds),
    ('shorter than its length', hdr(len(good) + 100) + good, fds),
    ('short header', b'\x01\x02\x03', fds),
    ('COUNTERS request with a payload', hdr(len(good), t=2) + good, []),
    ('COUNTERS request with a payload', hdr(0, t=2), fds),
]
bad = 0
for want, msg, f in cases:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                       struct.pack('%di' % len(f), *f))] if f else [])
    if want in ('shorter than its length', 'short header'):
        s.shutdown(socket.SHUT_WR)
    a = b''
    while True:
        try:
            c = s.recv(4096)
        except ConnectionResetError:
            break
        if not c:
            break
        a += c
    s.close()
    n, t, v, r = struct.unpack('<IBBH', a[:8]) if len(a) >= 8 else (0, 0, 0, 0)
    text = a[8:8 + n].decode(errors='replace')
    good_answer = t == 0x8f and v == 1 and want in text
    print('%s: %s: %s' % ('ok' if good_answer else 'BAD', want, text))
    bad += not good_answer
# Well formed, but not a command that changes the store: not run.
for words in ([b'ls', b'x'], [b'--version'], [b'bench']):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    msg = run(words)
    s.sendmsg([hdr(len(msg)) + msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       struct.pack('4i', *fds))])
    a = s.recv(64)
    s.close()
    good_answer = a == hdr(1, t=0x81) + b'\x01'
    print('%s: %s: exit status 1' % ('ok' if good_answer else 'BAD', words))
    bad += not good_answer
# COUNTERS, well formed: the daemon's figures, nothing run.
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.sendall(hdr(0, t=2))
a = b''
while True:
    c = s.recv(4096)
    if not c:
        break
    a += c
s.close()
n, t, v, r = struct.unpack('<IBBH', a[:8])
lines = a[8:].decode().splitlines()
good_answer = (t == 0x82 and n == len(a) - 8 and
               all(len(l.split(' ')) == 2 and l.split(' ')[1].isdigit()
                   for l in lines) and
               any(l.startswith('commits_total ') for l in lines))
print('%s: COUNTERS answered: %r' % ('ok' if good_answer else 'BAD', lines))
bad += not good_answer
sys.exit(1 if bad else 0)
EOF
	r=$?
	[ $r -eq 0 ] || sed 's/^/# /' "$T/py"
	ok $r "16 malformed requests refused with their reasons; ls, --version, bench not run; COUNTERS answered"
	[ "$(log_count 'malformed request refused')" -ge 16 ]
	ok $? "... and logged"
else
	skip "malformed requests" "no python3"
	skip "malformed requests logged" "no python3"
fi
(cd "$A" && "$BV" rp create store vm1) >"$T/out" 2>"$T/err"
ok $? "bvaultd still carries out commands"

# A caller of another uid: bvaultd run as uid 65534, bvault as root (who
# may connect to any socket): refused by SO_PEERCRED, logged.
N=$(mktemp -d /tmp/bvault-admin-nobody.XXXXXX)
trap 'rm -rf "$T" "$N"' EXIT
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null &&
   chown 65534:65534 "$N" &&
   NB=(setpriv --reuid 65534 --regid 65534 --clear-groups) &&
   "${NB[@]}" "$BV" init "$N/store" >/dev/null 2>&1; then
	"${NB[@]}" "$BVD" "$N/store" --unix "$N/sock" 2>"$N/log" &
	NSRV=$!
	for _ in $(seq 1 600); do
		[ -S "$N/store/admin.sock" ] && break
		sleep 0.1
	done
	"$BV" replica create "$N/store" intruder --size 1M >"$T/out" 2>"$T/err"
	r=$?
	[ $r -eq 1 ] && grep -q "bvault replica create: bvaultd refuses uid 0: only uid 65534" "$T/err"
	ok $? "root is refused by a bvaultd of uid 65534 (exit $r)"
	[ $r -eq 1 ] || show_output
	grep -q 'admin: refused uid 0' "$N/log"
	ok $? "... and bvaultd logs it"
	"$BV" ls "$N/store" >"$T/out" 2>&1 && ! grep -q intruder "$T/out"
	ok $? "... and the store is unchanged"
	"$BV" stats "$N/store" --prometheus --quick >"$T/out" 2>"$T/err" &&
		grep -q '^# bvaultd did not give its counters (bvaultd refuses uid 0' "$T/out" &&
		grep -q '^bvaultd_up{.*} 0$' "$T/out"
	ok $? "... and stats --prometheus says why its counters are left out"
	"${NB[@]}" "$BV" replica create "$N/store" own --size 1M >"$T/out" 2>&1
	ok $? "its own uid is served"
	kill -TERM "$NSRV"
	wait "$NSRV"
	ok $? "that bvaultd exits 0"
	! grep -q Sanitizer "$N/log"
	ok $? "no sanitizer report in its log"
	grep -q Sanitizer "$N/log" && grep -A 30 Sanitizer "$N/log" | sed 's/^/# /'
else
	for i in 1 2 3 4 5 6 7; do
		skip "a caller of another uid ($i)" "needs root and setpriv"
	done
fi

# The caller killed mid-command: bvaultd finishes it.
poke "$T/img" 131072 4096
"$BV" mkstream "$T/img" --replica vm1 --base "$(latest_rp vm1)" \
	--out "$T/s3"
mkfifo "$T/fifo"
(cd "$A" && exec "$BV" ingest store --rp --label late) <"$T/fifo" \
	>"$T/k.out" 2>"$T/k.err" &
CL=$!
exec 7>"$T/fifo"
n0=$(log_count 'running ingest')
n1=$(log_count 'ingest: exit 0')
wait_log 'running ingest' $((n0 + 1))
# A command that takes long (this ingest waits for its stream) keeps no
# other from running beside it.
(cd "$A" && timeout 60 "$BV" agent add store side --group vm2 \
	--secret-file keys/side) >"$T/out" 2>"$T/err"
ok $? "agent add runs while an ingest is under way"
kill -KILL $CL
wait $CL 2>/dev/null
cat "$T/s3" >&7
exec 7>&-
wait_log 'ingest: exit 0' $((n1 + 1))
ok $? "the caller killed: bvaultd finishes its ingest"
wait_log 'the caller went away before its exit status' 1
ok $? "... and logs that the caller went away"
(cd "$A" && "$BV" rp ls store vm1) >"$T/out" 2>&1
grep -q 'late' "$T/out"
ok $? "... whose RP is there"

# bvaultd killed mid-command: the caller says so; a stale socket is
# taken for no bvaultd; a new bvaultd replaces it.
rm -f "$T/fifo" && mkfifo "$T/fifo"
(cd "$A" && exec "$BV" ingest store --rp) <"$T/fifo" \
	>"$T/k.out" 2>"$T/k.err" &
CL=$!
exec 7>"$T/fifo"
wait_log 'running ingest' $((n0 + 2))
kill -KILL "$SRV"
wait "$SRV" 2>/dev/null
wait $CL
r=$?
exec 7>&-
[ $r -eq 1 ] && grep -qx 'bvault ingest: bvaultd ended before the command finished' "$T/k.err"
ok $? "bvaultd killed: the caller exits 1 and says so (exit $r)"
[ $r -eq 1 ] || diag "$(cat "$T/k.err")"
[ -S "$S/admin.sock" ] && (cd "$A" && "$BV" rp create store vm1) >"$T/out" 2>&1
ok $? "a stale admin.sock: bvault opens the store itself"
start_server --gc-interval 1 || done_testing
(cd "$A" && "$BV" rp create store vm1) >"$T/out" 2>&1
ok $? "a new bvaultd replaced the stale socket and serves"
# Garbage collection: on request through the socket, and on a schedule.
n0=$(log_count 'admin #.*: running')
(cd "$A" && "$BV" gc store --json) >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/out" &&
	[ "$(log_count 'admin #.*: running')" -gt "$n0" ]
ok $? "bvault gc through bvaultd (exit $rc)"
[ $rc -eq 0 ] || diag "$(cat "$T/err")"
grep -q "garbage collection every 1 s" "$LOG" && wait_log 'bvaultd: gc: .*reclaimed' 1
ok $? "bvaultd --gc-interval 1 runs gc on its own and logs it"
"$BVD" "$S" --gc-interval 0 >/dev/null 2>"$T/err"
[ $? -eq 2 ] && grep -q -- "--gc-interval 0: not a number of seconds" "$T/err"
ok $? "bvaultd --gc-interval 0 is refused"
stop_server
[ ! -e "$S/admin.sock" ]
ok $? "bvaultd removed admin.sock at exit"
"$BV" verify "$S" >"$T/out" 2>&1
ok $? "the store verifies"
done_testing
