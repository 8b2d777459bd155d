# lib.sh: what the network tests share, on top of ../cli/lib.sh. Sourced
# by test/net/net_*.sh, run as SCRIPT BVAULT BVAULTD BVAULT_AGENT.
#   start_server [ARGS...]  bvaultd on $SOCK for store $S, log in $LOG
#   stop_server             SIGTERM, wait for it, and check that it exited
#                           0 and no sanitizer reported anything
#   log_count RE            lines of the bvaultd log matching RE
#   wait_log RE N           waits (up to 60 s) until N lines of the log
#                           match RE; tests time faults from the server's
#                           own reports, not from the clock, so that a
#                           slow machine (or TSan) sees the same events
. "$(dirname "$0")/../cli/lib.sh"

BVD=${2:?bvaultd}
BVA=${3:?bvault-agent}
S=$T/store
SOCK=$T/sock
LOG=$T/bvaultd.log

start_server() {
	rm -f "$SOCK" # a server killed with -9 leaves its socket behind
	"$BVD" "$S" --unix "$SOCK" "$@" 2>>"$LOG" &
	SRV=$!
	for _ in $(seq 1 600); do # up to 60 s: TSan makes opening slow
		[ -S "$SOCK" ] && return 0
		kill -0 "$SRV" 2>/dev/null || break
		sleep 0.1
	done
	diag "bvaultd did not start"; sed 's/^/# /' "$LOG"
	return 1
}

stop_server() {
	local r
	kill -TERM "$SRV" 2>/dev/null
	wait "$SRV"
	r=$?
	[ $r -eq 0 ] || tail -n 20 "$LOG" | sed 's/^/# /'
	ok $r "bvaultd exits 0 on SIGTERM"
	if grep -q 'Sanitizer' "$LOG"; then
		grep -A 30 'Sanitizer' "$LOG" | head -n 60 | sed 's/^/# /'
		ok 1 "no sanitizer report in the bvaultd log"
	else
		ok 0 "no sanitizer report in the bvaultd log"
	fi
	return $r
}

log_count() {
	grep -c -- "$1" "$LOG" 2>/dev/null
}

wait_log() {
	local i
	for i in $(seq 1 600); do
		[ "$(log_count "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	diag "the bvaultd log never had $2 lines matching '$1'"
	tail -n 10 "$LOG" | sed 's/^/# /'
	return 1
}
