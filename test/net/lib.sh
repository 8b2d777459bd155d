# lib.sh: what the network tests share, on top of ../cli/lib.sh. Sourced
# by test/net/net_*.sh, run as SCRIPT BVAULT BVAULTD BVAULT_AGENT.
#   start_server [ARGS...]  bvaultd on $SOCK for store $S, log in $LOG
#   stop_server             SIGTERM, wait for it, and check that it exited
#                           0 and no sanitizer reported anything
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
	for _ in $(seq 1 100); do
		[ -S "$SOCK" ] && return 0
		sleep 0.05
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
