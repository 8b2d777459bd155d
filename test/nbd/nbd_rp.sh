#!/usr/bin/env bash
# nbd_rp.sh: recovery points served by the real nbdkit with the bvault
# plugin, read by the real libnbd and qemu tools:
#  - nbdinfo gives the size, and --map shows the zero chunks as holes;
#  - nbdcopy of each RP, of REPLICA@latest, REPLICA and REPLICA@0 equals
#    (cmp) the image it came from; qemu-img compare against the URI;
#  - nbdinfo --list lists every REPLICA@RP with its label;
#  - the default export is the latest RP of the only replica, and is
#    refused (with how to name one) once the store holds two;
#  - bad export names, a replica or RP that does not exist: refused,
#    each with a message naming it, and the server goes on serving;
#  - a write, write-zeroes and trim to an RP fail with EPERM/EROFS;
#  - an RP committed by a writer after nbdkit started is served without
#    a restart, latest moves to it, a connection opened before keeps
#    reading what it opened, and the old generation is closed when its
#    last connection is;
#  - export= fixes the export; bad plugin parameters stop nbdkit with a
#    message.
# Usage: nbd_rp.sh BVAULT PLUGIN NBD_CLIENT
. "$(dirname "$0")/lib.sh"
need nbdcopy qemu-img

run_ok "init" "$BV" init "$S" || done_testing
mkimg "$T/img" 16
cp --sparse=always "$T/img" "$T/v1"
"$BV" mkstream "$T/img" --replica vm --out "$T/s1" &&
	"$BV" ingest "$S" --rp --label first "$T/s1" >/dev/null
ok $? "RP 1 ingested"
poke "$T/img" 1048576 65536
poke_zero "$T/img" $((3 * 1048576)) $((1048576))
cp --sparse=always "$T/img" "$T/v2"
"$BV" mkstream "$T/img" --replica vm --base 1 --out "$T/s2" &&
	"$BV" ingest "$S" --rp --label "second one" "$T/s2" >/dev/null
ok $? "RP 2 ingested"

# Bad parameters stop nbdkit at once, with a message.
bad_param() {
	local desc=$1 re=$2 rc i
	shift 2
	TMPDIR=$NTMP LD_PRELOAD=$PRELOAD ASAN_OPTIONS=detect_leaks=0 \
		nbdkit -f -U "$T/bad.sock" "$PLUGIN" "$@" >/dev/null 2>"$T/err" &
	local pid=$!
	for i in $(seq 1 600); do
		kill -0 $pid 2>/dev/null || break
		[ "$i" -gt 50 ] && exit_hang $pid && break
		sleep 0.1
	done
	if kill -0 $pid 2>/dev/null; then
		# lib.sh, exit_hang: nbdkit is exiting, and hangs there
		exit_hang $pid && rc=hung || rc=running
		kill -KILL $pid
		wait $pid
	else
		wait $pid
		rc=$?
	fi
	[ "$rc" != 0 ] && [ "$rc" != running ] && grep -Eq -- "$re" "$T/err"
	ok $? "$desc"
	case $rc in 0 | running) diag "exit status $rc" ;; esac
	grep -Eq -- "$re" "$T/err" || sed 's/^/# /' "$T/err"
}
bad_param "no store=: refused" 'store=STORE is required'
bad_param "store= not a directory: refused" "store $T/img: not a directory" store="$T/img"
bad_param "store= that does not exist: refused" "store $T/nope: No such file" store="$T/nope"
bad_param "store= not a store: refused" "not a bvault store" store="$T"
bad_param "export= not REPLICA@RP: refused" 'export=vm@x: ' \
	store="$S" export=vm@x
bad_param "export= naming no RP: refused at start" \
	'vm@9: replica vm: no recovery point 9' store="$S" export=vm@9
bad_param "export= and view= both: refused" 'given twice' \
	store="$S" export=vm@1 view=v
bad_param "readers=0: refused" 'readers=0: not a number from 1 to 64' \
	store="$S" readers=0
bad_param "an unknown parameter: refused" "unknown parameter 'colour'" \
	store="$S" colour=blue

start_nbdkit || done_testing
[ "$(generations)" -eq 1 ]
ok $? "one generation (read-only open of the store) after the start"

[ "$(nbdinfo --size "$(uri vm@1)" 2>"$T/err")" = "$((16 * 1048576))" ]
ok $? "nbdinfo --size vm@1 is 16 MiB"
nbdinfo --map "$(uri vm@1)" >"$T/map" 2>"$T/err"
ok $? "nbdinfo --map vm@1"
# mkimg leaves a zero hole from 12 MiB (but for one text sector at 14
# MiB): the chunks there are zero chunks, never stored.
awk '$3 == 3 && $1 <= 12582912 && $1 + $2 >= 14680064 { f = 1 }
     END { exit !f }' "$T/map"
ok $? "the map shows the zero chunks at 12 MiB as hole,zero"
awk '$3 == 0 && $1 == 0 { f = 1 } END { exit !f }' "$T/map"
ok $? "and the data at 0 as data"
nbdinfo --map "$(uri vm@2)" >"$T/map2" 2>"$T/err"
awk '$3 == 3 && $1 <= 3145728 && $1 + $2 >= 4194304 { f = 1 }
     END { exit !f }' "$T/map2"
ok $? "vm@2's map shows the MiB zeroed at 3 MiB as a hole"

copy_cmp() {
	rm -f "$T/copy"
	nbdcopy "$(uri "$1")" "$T/copy" 2>"$T/err" && cmp "$T/copy" "$2" >&2
	ok $? "nbdcopy $1 equals ${2##*/}"
}
copy_cmp vm@1 "$T/v1"
copy_cmp vm@2 "$T/v2"
copy_cmp vm@latest "$T/v2"
copy_cmp vm "$T/v2"
copy_cmp vm@0 "$T/v2"
qemu-img compare -f raw -F raw "$(uri vm@1)" "$T/v1" >"$T/out" 2>&1
ok $? "qemu-img compare vm@1 with the image"
qemu-img compare -f raw -F raw "$(uri vm@2)" "$T/v1" >"$T/out" 2>&1
[ $? -eq 1 ]
ok $? "qemu-img compare sees that vm@2 differs from RP 1's image"

nbdinfo --list "$(uri '')" >"$T/list" 2>"$T/err"
ok $? "nbdinfo --list"
grep -q 'export="vm@1"' "$T/list" && grep -q 'export="vm@2"' "$T/list"
ok $? "the list has vm@1 and vm@2"
grep -q "RP 1 of vm, 'first'" "$T/list" &&
	grep -q "RP 2 of vm, 'second one'" "$T/list"
ok $? "with their labels in the description"

[ "$(nbdinfo --size "$(uri '')" 2>"$T/err")" = "$((16 * 1048576))" ]
ok $? "the default export is vm@latest (the store's only replica)"
nbdinfo "$(uri '')" >"$T/out" 2>&1 && grep -q 'export="vm@latest"' "$T/out"
ok $? "nbdinfo shows its name as vm@latest"

nbd_fail "export 'vm@x': refused" "export name 'vm@x': the RP 'x'" \
	nbdinfo --size "$(uri vm@x)"
nbd_fail "export 'vm@': refused" "export name 'vm@': no RP after" \
	nbdinfo --size "$(uri vm@)"
nbd_fail "export 'vm@99999999999999999999': refused" \
	"the RP '99999999999999999999' is not a number" \
	nbdinfo --size "$(uri vm@99999999999999999999)"
nbd_fail "export 'bad%20name': refused" "export name 'bad name': not" \
	nbdinfo --size "$(uri bad%20name)"
nbd_fail "export with a control byte: refused, shown as ?" \
	"export name 'a\?b': not" nbdinfo --size "$(uri a%01b)"
nbd_fail "export 'nope@1': no such replica" \
	"nope@1: replica nope: no such replica" nbdinfo --size "$(uri nope@1)"
nbd_fail "export 'vm@7': no such RP" \
	"vm@7: replica vm: no recovery point 7 \(latest is 2\)" \
	nbdinfo --size "$(uri vm@7)"
nbd_fail "export 'view:bad name': refused" "is not a view name" \
	nbdinfo --size "$(uri view:bad%20name)"
[ "$(nbdinfo --size "$(uri vm@1)" 2>/dev/null)" = "$((16 * 1048576))" ]
ok $? "the server still serves after the refusals"

"$NBDC" refused "$(uri vm@1)" >"$T/out" 2>"$T/err"
ok $? "write, write-zeroes and trim to vm@1 fail with EPERM/EROFS, and it still reads"
[ $? -eq 0 ] || sed 's/^/# /' "$T/err"
qemu-io -f raw -c 'write -P 0x11 0 64k' "$(uri vm@1)" >"$T/out" 2>&1
[ $? -ne 0 ]
ok $? "qemu-io cannot write to vm@1"
copy_cmp vm@1 "$T/v1"

# A writer commits RP 3 while nbdkit runs. A connection to vm@latest
# made before (RP 2) keeps reading RP 2.
rm -f "$T/ready" "$T/go"
"$NBDC" hold "$(uri vm@latest)" "$T/v2" "$T/ready" "$T/go" 2>"$T/hold.err" &
HOLD=$!
for _ in $(seq 1 600); do [ -e "$T/ready" ] && break; sleep 0.1; done
[ -e "$T/ready" ]
ok $? "a client holds a connection to vm@latest (RP 2)"
poke "$T/img" 0 1048576
truncate -s 20M "$T/img"
poke "$T/img" $((18 * 1048576)) 65536
cp --sparse=always "$T/img" "$T/v3"
"$BV" mkstream "$T/img" --replica vm --base 2 --out "$T/s3" &&
	"$BV" ingest "$S" --rp --label third "$T/s3" >/dev/null
ok $? "RP 3 (grown to 20 MiB) committed by a writer beside nbdkit"
copy_cmp vm@3 "$T/v3"
[ "$(generations)" -eq 2 ]
ok $? "vm@3 opened a new generation, the old one is kept for the holder"
sleep 1.2 # refresh=1000: latest may be up to a second old
copy_cmp vm@latest "$T/v3"
touch "$T/go"
wait $HOLD
ok $? "the held connection still reads RP 2, all of it"
[ $? -eq 0 ] || sed 's/^/# /' "$T/hold.err"
for _ in $(seq 1 100); do [ "$(generations)" -eq 1 ] && break; sleep 0.1; done
[ "$(generations)" -eq 1 ]
ok $? "the old generation is closed with its last connection"
nbdinfo --list "$(uri '')" >"$T/list" 2>"$T/err" &&
	grep -q 'export="vm@3"' "$T/list"
ok $? "the list has vm@3"

# A second replica: the default export is then refused, saying why.
"$BV" replica create "$S" other --size 1M >/dev/null
ok $? "replica other created by a writer beside nbdkit"
sleep 1.2
nbd_fail "the default export with two replicas: refused" \
	"holds 2: name one as REPLICA@RP" nbdinfo --size "$(uri '')"
[ "$(nbdinfo --size "$(uri other@0)" 2>"$T/err")" = 1048576 ]
ok $? "other@0 (its head) is served: 1 MiB"
nbd_fail "other@latest: it has no RP" "replica other: has no recovery point" \
	nbdinfo --size "$(uri other@latest)"
# Labels are any bytes; NBD descriptions are UTF-8.
"$BV" rp create "$S" other --label "$(printf 'caf\303\251 \377\001end')" >/dev/null
ok $? "an RP of other labelled with UTF-8, a byte that is not, and a control byte"
sleep 1.2
nbdinfo --list "$(uri '')" >"$T/list" 2>"$T/err" &&
	grep -q "RP 1 of other, 'café ??end'" "$T/list"
ok $? "the list shows its label as valid UTF-8 (bad bytes as ?)"
[ $? -eq 0 ] || grep other "$T/list" | sed 's/^/# /'
stop_nbdkit
[ "$(generations)" -eq 0 ]
ok $? "nbdkit leaves no read-only open behind"

# export= serves one RP whatever the client names ("" or that name).
# Serving changes nothing in the store, not even a file's time.
listing() {
	find "$S" -printf '%p %s %m %T@\n' | sort
}
listing >"$T/before"
start_nbdkit export=vm@1 || done_testing
copy_cmp '' "$T/v1"
copy_cmp vm@1 "$T/v1"
nbd_fail "export=vm@1: another name is refused" \
	"export name 'vm@2': this server serves 'vm@1' only" \
	nbdinfo --size "$(uri vm@2)"
nbdinfo --list "$(uri '')" >"$T/list" 2>"$T/err" &&
	[ "$(grep -c '^export=' "$T/list")" -eq 1 ] &&
	grep -q 'export="vm@1"' "$T/list"
ok $? "the list has vm@1 only"
stop_nbdkit

listing >"$T/after"
cmp -s "$T/before" "$T/after"
ok $? "serving changed nothing in the store (names, sizes, modes, times)"
[ $? -eq 0 ] || diff "$T/before" "$T/after" | head -n 10 | sed 's/^/# /'
"$BV" verify "$S" >"$T/out" 2>&1
ok $? "the store verifies"
done_testing
