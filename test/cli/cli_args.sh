#!/usr/bin/env bash
# cli_args.sh: argument errors. Usage errors exit 2 with a message naming
# the argument; operational errors exit 1; --help prints usage to stdout
# and exits 0 on every command; nothing of this changes the store.
. "$(dirname "$0")/lib.sh"

S=$T/store
run_ok "init" "$BV" init "$S" || done_testing
mkimg "$T/img" 4
run_ok "mkstream" "$BV" mkstream "$T/img" --replica vm1 --out "$T/s1"
run_ok "ingest --rp" "$BV" ingest "$S" --rp "$T/s1" || done_testing
snapshot "$S" before

u() { run_fail "$1" 2 "$2" "${@:3}"; }

# Commands and subcommands.
u "no command" 'usage' "$BV"
u "unknown command" "unknown command 'frob'" "$BV" frob
u "rp without a subcommand" 'missing subcommand' "$BV" rp
u "unknown rp subcommand" "unknown subcommand 'frob'" "$BV" rp frob "$S"
u "replica without a subcommand" 'missing subcommand' "$BV" replica

# Options.
u "unknown option" "unknown option '--frob'" "$BV" ls "$S" --frob
u "unknown option with a value" "unknown option '--frob'" "$BV" ls "$S" --frob=1
u "unknown short option" "unknown option '-x'" "$BV" rp ls "$S" -x
u "missing value" 'option --label needs a value' "$BV" ingest "$S" --rp --label
u "flag given a value" 'option --rp takes no value' "$BV" ingest "$S" --rp=1 "$T/s1"
u "--label without --rp" '--label needs --rp' "$BV" ingest "$S" --label x "$T/s1"
u "bad --format" "bad --format 'tar'" "$BV" ingest "$S" --format tar "$T/s1"
u "rbd-diff without --replica" 'rbd-diff needs --replica' \
	"$BV" ingest "$S" --format rbd-diff "$T/s1"
u "bad --base" "bad number 'x1' for --base" "$BV" ingest "$S" --format rbd-diff \
	--replica vm1 --base x1 "$T/s1"
u "--base with a bvault stream" "--base is for --format rbd-diff" \
	"$BV" ingest "$S" --base 1 "$T/s1"
u "negative --base" "bad number '-1' for --base" "$BV" mkstream "$T/img" \
	--replica vm1 --base -1 --out "$T/never"
u "--base overflow" "bad number '99999999999999999999' for --base: number too large" \
	"$BV" mkstream "$T/img" --replica vm1 --base 99999999999999999999 --out "$T/never"
u "bad --consistency" "bad --consistency 'maybe'" "$BV" rp create "$S" vm1 \
	--consistency maybe
u "label too long" 'label is longer than 127' "$BV" rp create "$S" vm1 \
	--label "$(head -c 200 /dev/zero | tr '\0' x)"

# Sizes.
u "size with a junk suffix" "bad size '4Q' for --size" \
	"$BV" replica create "$S" r --size 4Q
u "size with junk after the suffix" "bad size '4Kx' for --size: junk" \
	"$BV" replica create "$S" r --size 4Kx
u "size without digits" "bad size 'K' for --size" "$BV" replica create "$S" r --size K
u "empty size" "bad size '' for --size" "$BV" replica create "$S" r --size ''
u "size overflow (suffix)" "bad size '17179869184T' for --size: size too large" \
	"$BV" replica create "$S" r --size 17179869184T
u "size overflow (digits)" "bad size '184467440737095516160' for --size" \
	"$BV" replica create "$S" r --size 184467440737095516160
u "size not a multiple of 512" "bad --size '1000': not a multiple of 512" \
	"$BV" replica create "$S" r --size 1000
u "missing --size" 'missing --size' "$BV" replica create "$S" r
u "chunk size not a power of two" "bad --chunk-size '48K'" \
	"$BV" replica create "$S" r --size 1M --chunk-size 48K
u "chunk size too big" "bad --chunk-size '8M'" "$BV" init "$T/never" --chunk-size 8M
u "chunk size too small" "bad --chunk-size '2K'" "$BV" init "$T/never" --chunk-size 2K
[ ! -e "$T/never" ]; ok $? "a refused init creates nothing"
u "bad replica name" "bad replica name 'a b'" "$BV" replica create "$S" 'a b' --size 1M
u "replica name too long" "bad replica name" "$BV" replica create "$S" \
	"$(head -c 64 /dev/zero | tr '\0' r)" --size 1M
u "bad group name" "bad group name 'g/1'" "$BV" group create "$S" 'g/1' vm1

# REPLICA@RP.
u "REPLICA@RP without @" "bad REPLICA@RP 'vm1': no '@'" "$BV" export "$S" vm1 "$T/x"
u "REPLICA@RP without a name" "bad REPLICA@RP '@1': no replica name" \
	"$BV" export "$S" @1 "$T/x"
u "REPLICA@RP bad RP" "bad REPLICA@RP 'vm1@one': RP must be a number or 'latest'" \
	"$BV" export "$S" vm1@one "$T/x"
u "REPLICA@RP empty RP" "bad REPLICA@RP 'vm1@'" "$BV" export "$S" vm1@ "$T/x"
u "REPLICA@RP overflow" "bad REPLICA@RP 'vm1@99999999999999999999'" \
	"$BV" export "$S" vm1@99999999999999999999 "$T/x"
u "REPLICA@RP bad name" "bad REPLICA@RP 'v m@1'" "$BV" export "$S" 'v m@1' "$T/x"
u "REPLICA@RP negative" "bad REPLICA@RP 'vm1@-1'" "$BV" export "$S" vm1@-1 "$T/x"
u "diff of two replicas" "name different replicas" "$BV" diff "$S" vm1@0 vm2@1
u "diff bad RP2" "bad REPLICA@RP 'vm1@x'" "$BV" diff "$S" vm1@0 vm1@x
[ ! -e "$T/x" ]; ok $? "no export file made"

# Positionals.
u "missing STORE" 'missing STORE' "$BV" ls
u "missing OUT" 'missing OUT' "$BV" export "$S" vm1@1
u "extra argument" "unexpected argument 'extra'" "$BV" export "$S" vm1@1 "$T/x" extra
u "extra argument to ls" "unexpected argument 'extra'" "$BV" ls "$S" extra
u "group create without replicas" 'missing REPLICA' "$BV" group create "$S" g
u "mkstream without --replica" 'missing --replica' "$BV" mkstream "$T/img"
u "mkstream without IMAGE" 'missing IMAGE' "$BV" mkstream --replica vm1
u "stdin twice" "'-' \\(stdin\\) given more than once" "$BV" ingest "$S" - -
u "bench with an argument" "unexpected argument" "$BV" bench extra
u "bench too small" "bad --size" "$BV" bench --size 1M

# Operational errors (exit 1).
o() { run_fail "$1" 1 "$2" "${@:3}"; }
truncate -s 1000 "$T/odd"
o "image size not a multiple of 512" "size 1000 is not a multiple of 512" \
	"$BV" mkstream "$T/odd" --replica vm1 --out "$T/never"
o "missing image" "No such file" "$BV" mkstream "$T/nosuch" --replica vm1 --out "$T/never"
o "image a directory" "not a regular file or block device" \
	"$BV" mkstream "$T" --replica vm1 --out "$T/never"
printf '%s\n' "0 512" "4096 x" >"$T/e-junk"
o "extents: junk on line 2" "e-junk line 2: .*not two decimal numbers" \
	"$BV" mkstream "$T/img" --replica vm1 --extents "$T/e-junk" --out "$T/never"
printf '%s\n' "# c" "0 512 9" >"$T/e-three"
o "extents: three fields" "e-three line 2: expected 'OFFSET LENGTH'" \
	"$BV" mkstream "$T/img" --replica vm1 --extents "$T/e-three" --out "$T/never"
echo "100 512" >"$T/e-unal"
o "extents: unaligned offset" "line 1: extent 100\\+512 is not aligned to 512" \
	"$BV" mkstream "$T/img" --replica vm1 --extents "$T/e-unal" --out "$T/never"
echo "0 1000" >"$T/e-unlen"
o "extents: unaligned length" "line 1: extent 0\\+1000 is not aligned" \
	"$BV" mkstream "$T/img" --replica vm1 --extents "$T/e-unlen" --out "$T/never"
echo "0 0" >"$T/e-empty"
o "extents: empty extent" "line 1: empty extent" \
	"$BV" mkstream "$T/img" --replica vm1 --extents "$T/e-empty" --out "$T/never"
printf '%s\n' "0 512" "4194304 512" >"$T/e-past"
o "extents: past the image" "line 2: extent 4194304\\+512 ends past the image size 4194304" \
	"$BV" mkstream "$T/img" --replica vm1 --extents "$T/e-past" --out "$T/never"
echo "18446744073709551104 1024" >"$T/e-ovf"
o "extents: overflowing" "line 1: .*past the image size" \
	"$BV" mkstream "$T/img" --replica vm1 --extents "$T/e-ovf" --out "$T/never"
o "extents file missing" "No such file" \
	"$BV" mkstream "$T/img" --replica vm1 --extents "$T/nosuch" --out "$T/never"
[ ! -e "$T/never" ]; ok $? "no stream file left behind"
o "stream file missing" "No such file" "$BV" ingest "$S" --rp "$T/nosuch"
o "export of an unknown replica" "nosuch" "$BV" export "$S" nosuch@1 "$T/x"
o "export of an unknown RP" "RP|recovery point|not found|no such" \
	"$BV" export "$S" vm1@9 "$T/x"
o "export into a missing directory" "No such file|nodir" \
	"$BV" export "$S" vm1@1 "$T/nodir/x"
o "rp create of an unknown replica" "nosuch" "$BV" rp create "$S" nosuch
o "rp ls of an unknown replica" "nosuch" "$BV" rp ls "$S" nosuch
o "diff of an unknown replica" "nosuch" "$BV" diff "$S" nosuch@0 nosuch@1 --out "$T/x"
[ ! -e "$T/x" ]; ok $? "no export or diff file left behind"
if command -v script >/dev/null 2>&1; then
	script -qec "$BV mkstream $T/img --replica vm1" /dev/null >"$T/tty" 2>&1
	grep -q 'refusing to write a binary stream to a terminal' "$T/tty"
	ok $? "mkstream refuses to write to a terminal"
	script -qec "$BV diff $S vm1@0 vm1@1" /dev/null >"$T/tty" 2>&1
	grep -q 'refusing to write a binary stream to a terminal' "$T/tty"
	ok $? "diff refuses to write to a terminal"
	script -qec "$BV ingest $S" /dev/null >"$T/tty" 2>&1
	grep -q 'refusing to read a binary stream from a terminal' "$T/tty"
	ok $? "ingest refuses to read a terminal"
	script -qec "$BV export $S vm1@1 $T/tty.img" /dev/null >"$T/tty" 2>&1
	grep -q 'export \[#*\] 100%' "$T/tty"; ok $? "export draws a progress bar on a terminal"
	rm -f "$T/tty.img"
else
	skip "terminal refusals and progress" "script(1) missing"
fi
"$BV" export "$S" vm1@1 "$T/quiet.img" 2>"$T/err" </dev/null
[ $? -eq 0 ] && [ ! -s "$T/err" ]; ok $? "no progress output when stderr is not a terminal"
rm -f "$T/quiet.img"

same_snapshot "$S" before "the store is unchanged by all of the above"

# Help everywhere: stdout, exit 0.
h() {
	local rc
	"$@" >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 0 ] && grep -q '^usage' "$T/out" && [ ! -s "$T/err" ]
	ok $? "help: ${*:2}"
}
h "$BV" --help
h "$BV" -h
h "$BV" rp --help
for c in init mkstream ingest export diff ls stats verify bench "replica create" \
	"group create" "rp create" "rp ls" "agent add" "agent ls" "agent rm" \
	"agent grant" "agent revoke"; do
	# shellcheck disable=SC2086
	h "$BV" $c --help
	# shellcheck disable=SC2086
	h "$BV" $c -h
done
h "$BV" export "$S" --help
"$BV" --version >"$T/out"; ok $? "--version"

done_testing
