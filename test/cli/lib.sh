# lib.sh: TAP helpers for the CLI tests, sourced by test/cli/cli_*.sh.
#
# Each test script is run by meson with the bvault executable as $1 and
# prints TAP. Helpers:
#   ok STATUS DESC            one test point (STATUS 0 = pass)
#   run_ok DESC CMD...        CMD must exit 0
#   run_fail DESC CODE RE CMD...
#                             CMD must exit CODE and print to stderr one
#                             "bvault <cmd>: ..." message matching the
#                             extended regex RE (case-insensitive)
#   snapshot STORE NAME       records the store's listings and the exports
#                             of every replica's latest RP and head
#   same_snapshot STORE NAME DESC
#                             the store still matches snapshot NAME
#   mkimg FILE MIB            an image with text, random, repeated blocks
#                             and a zero hole (MIB a multiple of 4)
#   poke FILE OFF LEN         random bytes at byte OFF
#   done_testing              plan, and the exit status
# Every command's stdout/stderr is kept in $T/out and $T/err.

set -u

BV=${1:?usage: $0 /path/to/bvault}
case $BV in
/*) ;;
*) BV=$PWD/$BV ;;
esac
[ -x "$BV" ] || { echo "Bail out! $BV is not executable"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/bvault-cli.XXXXXX") || {
	echo "Bail out! mktemp failed"
	exit 1
}
trap 'rm -rf "$T"' EXIT
tap_n=0
tap_failed=0

diag() {
	printf '%s\n' "$@" | sed 's/^/# /'
}

ok() {
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
}

# Skips one test point.
skip() {
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $1 # SKIP $2"
}

show_output() {
	[ -s "$T/out" ] && { diag "stdout:"; head -c 2000 "$T/out" | diag "$(cat)"; }
	[ -s "$T/err" ] && { diag "stderr:"; head -c 2000 "$T/err" | diag "$(cat)"; }
	return 0
}

run_ok() {
	local desc=$1 rc
	shift
	"$@" >"$T/out" 2>"$T/err" </dev/null
	rc=$?
	ok $rc "$desc"
	if [ $rc -ne 0 ]; then
		diag "command: $*" "exit status $rc, want 0"
		show_output
	fi
	return $rc
}

# Like run_ok but reads stdin from the caller.
run_ok_stdin() {
	local desc=$1 rc
	shift
	"$@" >"$T/out" 2>"$T/err"
	rc=$?
	ok $rc "$desc"
	if [ $rc -ne 0 ]; then
		diag "command: $*" "exit status $rc, want 0"
		show_output
	fi
	return $rc
}

run_fail() {
	local desc=$1 want=$2 re=$3 rc bad=0
	shift 3
	"$@" >"$T/out" 2>"$T/err" </dev/null
	rc=$?
	if [ $rc -ne "$want" ]; then
		bad=1
		diag "exit status $rc, want $want"
	fi
	if ! head -n 1 "$T/err" | grep -q '^bvault[ :]'; then
		bad=1
		diag "stderr does not start with 'bvault <cmd>: '"
	fi
	if ! grep -Eqi -- "$re" "$T/err"; then
		bad=1
		diag "stderr does not match /$re/"
	fi
	ok $bad "$desc"
	if [ $bad -ne 0 ]; then
		diag "command: $*"
		show_output
	fi
	return $bad
}

# Valid JSON in FILE (python3 or jq); returns 2 when neither is present.
json_ok() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" \
			2>/dev/null
	elif command -v jq >/dev/null 2>&1; then
		jq . "$1" >/dev/null 2>&1
	else
		return 2
	fi
}

# The names of the replicas of STORE, one a line (from ls --json).
replica_names() {
	"$BV" ls "$1" --json | sed -n 's/.*"name": "\([^"]*\)".*/\1/p'
}

snapshot() {
	local store=$1 d=$T/snap-$2 r
	rm -rf "$d"
	mkdir -p "$d"
	"$BV" rp ls "$store" --json >"$d/rp.json" 2>"$d/err" || echo "rp ls failed" >>"$d/fail"
	"$BV" ls "$store" --json >"$d/ls.json" 2>>"$d/err" || echo "ls failed" >>"$d/fail"
	for r in $(replica_names "$store"); do
		"$BV" export "$store" "$r@0" "$d/$r.head" 2>>"$d/err" ||
			echo "export $r@0 failed" >>"$d/fail"
		if "$BV" rp ls "$store" "$r" --json | grep -q '"rp"'; then
			"$BV" export "$store" "$r@latest" "$d/$r.latest" 2>>"$d/err" ||
				echo "export $r@latest failed" >>"$d/fail"
		fi
	done
}

same_snapshot() {
	local store=$1 name=$2 desc=$3 a=$T/snap-$2 b=$T/snap-now bad=0 f
	snapshot "$store" now
	if [ -e "$a/fail" ] || [ -e "$b/fail" ]; then
		bad=1
		diag "snapshot failed:" "$(cat "$a/fail" "$b/fail" "$a/err" "$b/err" 2>/dev/null)"
	fi
	for f in "$a"/*; do
		case $f in */err | */fail) continue ;; esac
		if ! cmp -s "$f" "$b/${f##*/}"; then
			bad=1
			diag "${f##*/} changed"
		fi
	done
	for f in "$b"/*; do
		case $f in */err | */fail) continue ;; esac
		[ -e "$a/${f##*/}" ] || { bad=1; diag "${f##*/} is new"; }
	done
	ok $bad "$desc"
}

# Writes LEN bytes of random data at byte OFF of FILE (keeps its size
# unless the write goes past it).
poke() {
	head -c "$3" /dev/urandom |
		dd of="$1" bs=64K seek="$2" oflag=seek_bytes conv=notrunc \
			iflag=fullblock status=none
}

# Writes LEN zero bytes at byte OFF of FILE.
poke_zero() {
	head -c "$3" /dev/zero |
		dd of="$1" bs=64K seek="$2" oflag=seek_bytes conv=notrunc \
			iflag=fullblock status=none
}

# Flips byte OFF of FILE (xor 0xff).
flip_byte() {
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((b ^ 255)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# Sets byte OFF of FILE to the value V (0..255).
set_byte() {
	printf "$(printf '\\%03o' "$3")" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# An image of MIB MiB: a quarter text-like, a quarter random, an eighth of
# one 256 KiB block repeated, the rest a zero hole with a little text.
mkimg() {
	local f=$1 mib=$2 q
	q=$((mib * 1048576 / 4))
	rm -f "$f"
	truncate -s "${mib}M" "$f"
	seq 1 $((q / 40 + 1)) | sed 's/.*/bvault line & of the test image, ok/' |
		head -c "$q" |
		dd of="$f" bs=64K conv=notrunc iflag=fullblock status=none
	poke "$f" "$q" "$q"
	head -c 262144 /dev/urandom >"$T/blk"
	local i=0 n=$((q / 2 / 262144))
	while [ $i -lt $n ]; do
		cat "$T/blk"
		i=$((i + 1))
	done | dd of="$f" bs=64K seek=$((2 * q)) oflag=seek_bytes \
		conv=notrunc iflag=fullblock status=none
	echo "a little text in the hole" |
		dd of="$f" bs=512 seek=$(((3 * q + q / 2) / 512)) conv=notrunc \
			status=none
}

done_testing() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
	exit $?
}
