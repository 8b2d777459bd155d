#!/usr/bin/env bash
# nbd_bvaultd.sh: the plugin beside a running bvaultd that ingests into
# the same store (real bvaultd and bvault-agent over a Unix socket):
#  - nbdkit starts while bvaultd holds the store for writing, and
#    serves RP 1 the agent sent, equal to the image;
#  - the agent sends express fulls while nbdkit runs: each new RP is
#    served at once by name, REPLICA@latest moves to it, and the list
#    grows, without restarting nbdkit;
#  - bvaultd is never kept from the store: it stops and starts again
#    while nbdkit serves, and takes the next RP.
# Usage: nbd_bvaultd.sh BVAULT PLUGIN NBD_CLIENT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"
need nbdcopy
SOCK=$T/bvaultd.sock
LOG=$T/bvaultd.log

start_server() {
	rm -f "$SOCK"
	"$BVD" "$S" --unix "$SOCK" 2>>"$LOG" &
	SRV=$!
	for _ in $(seq 1 600); do
		[ -S "$SOCK" ] && return 0
		kill -0 "$SRV" 2>/dev/null || break
		sleep 0.1
	done
	diag "bvaultd did not start"
	sed 's/^/# /' "$LOG"
	return 1
}

stop_server() {
	kill -TERM "$SRV" 2>/dev/null
	wait "$SRV"
	ok $? "bvaultd exits 0 on SIGTERM"
}

agent() {
	"$BVA" --unix "$SOCK" --name host --secret-file "$T/host.key" \
		--disk vm="$T/img" "$@" >"$T/out" 2>"$T/err" </dev/null
	local rc=$?
	[ $rc -eq 0 ] || sed 's/^/# agent: /' "$T/err"
	return $rc
}

copy_cmp() {
	rm -f "$T/copy"
	nbdcopy "$(uri "$1")" "$T/copy" 2>"$T/err" && cmp "$T/copy" "$2" >&2
	ok $? "nbdcopy $1 equals ${2##*/}"
}

run_ok "init" "$BV" init "$S" || done_testing
"$BV" agent add "$S" host --group vm >"$T/host.key"
ok $? "agent add"
mkimg "$T/img" 8
cp --sparse=always "$T/img" "$T/v1"
start_server || done_testing
agent --full --label full
ok $? "the agent sends a full (RP 1)"
start_nbdkit || done_testing
ok 0 "nbdkit starts beside bvaultd"
copy_cmp vm@1 "$T/v1"

for n in 2 3; do
	poke "$T/img" $((n * 1048576)) 65536
	cp --sparse=always "$T/img" "$T/v$n"
	printf '%s\n' "$((n * 1048576)) 65536" >"$T/ext"
	agent --extents "$T/ext" --base $((n - 1)) --label "express $n"
	ok $? "the agent sends an express full (RP $n) while nbdkit serves"
	copy_cmp "vm@$n" "$T/v$n"
	sleep 1.2 # latest may be up to refresh= (1 s) old
	copy_cmp vm@latest "$T/v$n"
	nbdinfo --list "$(uri '')" >"$T/list" 2>"$T/err" &&
		grep -q "export=\"vm@$n\"" "$T/list" &&
		grep -q "'express $n'" "$T/list"
	ok $? "the list has vm@$n with its label"
done

stop_server
start_server || done_testing
poke "$T/img" 0 4096
cp --sparse=always "$T/img" "$T/v4"
printf '0 4096\n' >"$T/ext"
agent --extents "$T/ext" --base 3
ok $? "bvaultd restarted beside nbdkit takes RP 4"
copy_cmp vm@4 "$T/v4"
copy_cmp vm@1 "$T/v1"
stop_server
stop_nbdkit
"$BV" verify "$S" >"$T/out" 2>&1
ok $? "the store verifies"
done_testing
