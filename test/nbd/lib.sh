# lib.sh: what the nbd tests share, on top of ../cli/lib.sh. Sourced by
# test/nbd/nbd_*.sh, run as SCRIPT BVAULT PLUGIN NBD_CLIENT BVAULTD AGENT.
#   need TOOL...            skips the whole test (exit 0, "1..0 # SKIP")
#                           when a tool is missing
#   start_nbdkit ARGS...    the real nbdkit with the plugin, store $S, on
#                           $NSOCK, log in $NLOG (its $TMPDIR is $NTMP)
#   stop_nbdkit             SIGTERM, wait, and check that it exited 0 and
#                           that no sanitizer reported anything
#   uri NAME                the NBD URI of export NAME on $NSOCK
#   generations             the read-only opens of the store nbdkit holds
#                           now (each makes a directory under its $TMPDIR)
# A plugin built with ASan or TSan is loaded into the uninstrumented
# nbdkit with the sanitizer's runtime preloaded (BV_SANITIZE, from
# meson's b_sanitize).
. "$(dirname "$0")/../cli/lib.sh"

# BV_KEEP_TMP=1 keeps the test's directory (logs, stores) for a look.
if [ "${BV_KEEP_TMP:-0}" = 1 ]; then
	trap - EXIT
	echo "# keeping $T"
fi

PLUGIN=${2:?plugin}
NBDC=${3:?nbd_client}
BVD=${4:-}
BVA=${5:-}
S=$T/store
NSOCK=$T/nbd.sock
NLOG=$T/nbdkit.log
NTMP=$T/nbdkit-tmp
mkdir -p "$NTMP"

need() {
	local t
	for t; do
		if ! command -v "$t" >/dev/null 2>&1; then
			echo "1..0 # SKIP $t is not installed"
			exit 0
		fi
	done
}

need nbdkit nbdinfo

# The sanitizer runtime the plugin needs, if any.
sanitizer_preload() {
	local lib=
	case ${BV_SANITIZE:-none} in
	*address*) lib=libasan.so ;;
	*thread*) lib=libtsan.so ;;
	*) return 0 ;;
	esac
	lib=$(${CC:-cc} -print-file-name=$lib)
	[ -e "$lib" ] && readlink -f "$lib"
}
PRELOAD=$(sanitizer_preload)
if [ "${BV_SANITIZE:-none}" != none ] && [ -z "$PRELOAD" ]; then
	echo "Bail out! the plugin is built with $BV_SANITIZE but its runtime is not found"
	exit 1
fi

# With a sanitizer, proves that nbdkit runs with its runtime (else the
# plugin's checks would not be running at all).
check_preload() {
	[ -n "$PRELOAD" ] || return 0
	grep -q "${PRELOAD##*/}" "/proc/$NBDKIT/maps"
	ok $? "nbdkit runs with ${PRELOAD##*/} (the plugin is built with $BV_SANITIZE)"
}

uri() {
	echo "nbd+unix:///$1?socket=$NSOCK"
}

start_nbdkit() {
	rm -f "$NSOCK" "$T/nbdkit.pid"
	echo "== nbdkit $*" >>"$NLOG"
	# nbdkit's own allocations are not ours to account for: leaks are
	# looked for in the engine tests.
	TMPDIR=$NTMP LD_PRELOAD=$PRELOAD \
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		nbdkit -f -U "$NSOCK" -P "$T/nbdkit.pid" "$PLUGIN" \
		store="$S" "$@" 2>>"$NLOG" &
	NBDKIT=$!
	for _ in $(seq 1 600); do # up to 60 s: TSan makes opening slow
		if [ -S "$NSOCK" ] && [ -s "$T/nbdkit.pid" ]; then
			check_preload
			return 0
		fi
		kill -0 "$NBDKIT" 2>/dev/null || break
		sleep 0.1
	done
	diag "nbdkit did not start"
	tail -n 20 "$NLOG" | sed 's/^/# /'
	return 1
}

# exit_hang PID: 0 when PID, run with a sanitizer runtime preloaded, is
# down to its main thread (and TSan's own background thread) waiting on
# a futex: how nbdkit 1.32 hangs in glibc's exit handlers (__freelocale
# in libp11-kit's destructor) with libasan or libtsan preloaded once
# anything in it called strerror: `nbdkit file /nonexistent` does the
# same, whatever the plugin. The plugin's .cleanup and .unload have run
# by then.
exit_hang() {
	local most=1
	[ -n "$PRELOAD" ] || return 1
	case $BV_SANITIZE in *thread*) most=2 ;; esac
	[ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -le $most ] &&
		grep -q futex "/proc/$1/task/$1/wchan" 2>/dev/null
}

stop_nbdkit() {
	local r i
	kill -TERM "$NBDKIT" 2>/dev/null
	# Up to 60 s to exit; a hung nbdkit is shown (its stacks, when gdb
	# is there) and killed, and the test fails instead of hanging.
	for i in $(seq 1 600); do
		kill -0 "$NBDKIT" 2>/dev/null || break
		[ "$i" -gt 50 ] && exit_hang "$NBDKIT" && break
		sleep 0.1
	done
	if kill -0 "$NBDKIT" 2>/dev/null && exit_hang "$NBDKIT"; then
		kill -KILL "$NBDKIT"
		wait "$NBDKIT"
		ok 0 "nbdkit stops on SIGTERM # hung in glibc's exit handlers after the plugin's cleanup (nbdkit with a preloaded sanitizer runtime), killed"
		r=0
	else
		if kill -0 "$NBDKIT" 2>/dev/null; then
			diag "nbdkit did not exit 60 s after SIGTERM"
			command -v gdb >/dev/null 2>&1 &&
				timeout 60 gdb -p "$NBDKIT" -batch \
					-ex 'thread apply all bt 15' 2>&1 |
				grep -E '^#|Thread' | head -n 60 | sed 's/^/# /'
			kill -KILL "$NBDKIT"
		fi
		wait "$NBDKIT"
		r=$?
		[ $r -eq 0 ] || tail -n 20 "$NLOG" | sed 's/^/# /'
		ok $r "nbdkit exits 0 on SIGTERM"
	fi
	if grep -q 'Sanitizer' "$NLOG"; then
		grep -A 40 'Sanitizer' "$NLOG" | head -n 80 | sed 's/^/# /'
		ok 1 "no sanitizer report in the nbdkit log"
	else
		ok 0 "no sanitizer report in the nbdkit log"
	fi
	return $r
}

generations() {
	find "$NTMP" -maxdepth 1 -name 'bvault-ro.*' | wc -l
}

# nbd_fail DESC RE CMD...: CMD (an NBD client) must fail, and the nbdkit
# log must get a new line matching RE (the plugin's message).
nbd_fail() {
	local desc=$1 re=$2 before rc bad=0
	shift 2
	before=$(wc -l <"$NLOG")
	"$@" >"$T/out" 2>"$T/err" </dev/null
	rc=$?
	if [ $rc -eq 0 ]; then
		bad=1
		diag "exit status 0, want a failure"
	fi
	if ! tail -n +$((before + 1)) "$NLOG" | grep -Eq -- "$re"; then
		bad=1
		diag "the nbdkit log has no new line matching /$re/:"
		tail -n +$((before + 1)) "$NLOG" | head -n 5 | sed 's/^/#   /'
	fi
	ok $bad "$desc"
}
