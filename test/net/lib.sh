# lib.sh: what the network tests share, on top of ../cli/lib.sh. Sourced
# by test/net/net_*.sh, run as SCRIPT BVAULT BVAULTD BVAULT_AGENT.
#   start_server [ARGS...]  bvaultd on $SOCK for store $S, log in $LOG
#   stop_server             SIGTERM, and wait for it to exit
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
	kill -TERM "$SRV" 2>/dev/null
	wait "$SRV"
}
