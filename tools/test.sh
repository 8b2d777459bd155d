#!/usr/bin/env bash
# test.sh: the whole test run, as CI does it (.ci/run), from a fresh clone
# on Debian 12.
#
#   1. installs the build dependencies that are missing (apt-get),
#   2. builds build/ (normal), build-asan/ (ASan + UBSan) and build-tsan/
#      (ThreadSanitizer), and build-release/ (-O3, the benchmarks' build:
#      its warnings differ; it counts as one test, nothing runs in it),
#   3. runs `meson test` in each (the ASan build with fewer rounds of
#      the long ones; the TSan build runs the tests that use threads), then
#      tools/quickstart.sh on a small image as one more test,
#   4. prints the failing tests with their logs, and as its last line
#      "N passed, N failed" (", N skipped" when some were skipped).
#
# Every meson test of every build counts as one test; a build that fails
# counts as one failed test. Exit status 0 only when nothing failed.
# Options: --no-install, --no-asan (only the normal build: no sanitizers).
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
INSTALL=1
ASAN=1
PKGS=(build-essential meson ninja-build pkg-config liburing-dev
	libxxhash-dev liblz4-dev librocksdb-dev libsodium-dev libnbd-dev
	libnbd-bin qemu-utils nbdkit nbdkit-plugin-dev fuse3 e2fsprogs ntfs-3g
	gdisk libext2fs-dev ntfs-3g-dev libssl-dev openssl python3 strace)
JOBS=2

while [ $# -gt 0 ]; do
	case $1 in
	--no-install) INSTALL=0 ;;
	--no-asan) ASAN=0 ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "test.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
	shift
done

say() { echo "== test.sh: $*"; }
extra_pass=0
extra_fail=0
extra_failed_names=()

fail_extra() {
	extra_fail=$((extra_fail + 1))
	extra_failed_names+=("$1")
}

# ---- 1. dependencies -------------------------------------------------------
if [ "$INSTALL" -eq 1 ] && command -v dpkg >/dev/null 2>&1; then
	missing=()
	for p in "${PKGS[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		sudo=()
		[ "$(id -u)" -ne 0 ] && sudo=(sudo)
		say "installing ${missing[*]}"
		"${sudo[@]}" apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install \
				-y -qq --no-install-recommends "${missing[@]}" || {
			echo "test.sh: could not install ${missing[*]}" >&2
			echo "0 passed, 1 failed"
			exit 1
		}
	fi
fi

# ---- 2 and 3. builds and tests ---------------------------------------------
# build DIR [meson options...]: configures if needed and builds; the
# result is 0 or the failure, its log in DIR/build.log.
build() {
	local dir=$1
	shift
	mkdir -p "$dir"
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$dir/setup.log" 2>&1 || {
			tail -n 40 "$dir/setup.log"
			return 1
		}
	fi
	ninja -C "$dir" -j "$JOBS" >"$dir/build.log" 2>&1 || {
		grep -E 'error|FAILED' "$dir/build.log" | head -n 40
		return 1
	}
}

# run_meson_tests DIR [meson test options...]
run_meson_tests() {
	local dir=$1
	shift
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --no-rebuild --num-processes "$JOBS" "$@" \
		>"$dir/test.out" 2>&1
	tail -n 12 "$dir/test.out"
}

BUILDS=()
say "building build/"
if build build; then
	BUILDS+=(build)
	say "testing build/"
	run_meson_tests build
else
	fail_extra "build of build/ (log: build/build.log)"
fi

if [ "$ASAN" -eq 1 ]; then
	say "building build-asan/ (ASan + UBSan)"
	if build build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
		BUILDS+=(build-asan)
		say "testing build-asan/"
		# The long model, crash and thread rounds run whole in build/;
		# here fewer of them (one lifecycle seed and 8 of its kills,
		# 30 GC rounds, 20 model steps, 8 kills) keep the sanitizer
		# stage within its time: the same code paths, fewer
		# repetitions ('slow' included: about a minute so).
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
			UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			BV_LIFE_SEEDS=1 BV_LIFE_KILLS=8 BV_GC_ROUNDS=30 \
			BV_STEPS=20 BV_KILLS=8 \
			run_meson_tests build-asan --timeout-multiplier 3
	else
		fail_extra "build of build-asan/ (log: build-asan/build.log)"
	fi
fi

# TSan for the code that runs threads: the worker pool, the ingest
# flusher, shared stores, bvaultd's applier and admin-command threads,
# the nbdkit plugin (its parallel requests, the plugin built with TSan
# and loaded into nbdkit with libtsan preloaded: test/nbd/lib.sh). Only
# the tests that exercise threads run here, and of bvaultd's two (net-qemu
# and net-heal drive the same applier and admin threads as net-basic and
# net-admin; engine-heal runs verify's readers)
# (TSan slows everything about tenfold).
if [ "$ASAN" -eq 1 ]; then
	say "building build-tsan/ (ThreadSanitizer)"
	if build build-tsan -Db_sanitize=thread -Db_lundef=false; then
		BUILDS+=(build-tsan)
		say "testing build-tsan/"
		TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/test/tsan.supp" \
			run_meson_tests build-tsan --timeout-multiplier 4 \
			engine-threads engine-lifecycle-threads engine-api engine-readonly engine-space engine-view engine-index \
			engine-restore engine-gc-threads engine-heal engine-memory unit-container unit-ring \
			net-basic net-admin nbd-parallel nbd-view
	else
		fail_extra "build of build-tsan/ (log: build-tsan/build.log)"
	fi
fi

# The benchmarks run a release build (bench/run.sh, restore.sh, nbd.sh);
# -O3 warns where -O2 does not, and -Werror makes that a broken build.
if [ "$ASAN" -eq 1 ]; then
	say "building build-release/ (release, as the benchmarks build)"
	if build build-release --buildtype=release; then
		extra_pass=$((extra_pass + 1))
	else
		fail_extra "build of build-release/ (log: build-release/build.log)"
	fi
fi

if [ -x build/tools/bvault ]; then
	say "quickstart check (64 MiB image)"
	if tools/quickstart.sh --no-install --build-dir build --size 64 \
		>build/quickstart.log 2>&1; then
		extra_pass=$((extra_pass + 1))
		tail -n 10 build/quickstart.log
	else
		tail -n 20 build/quickstart.log
		fail_extra "quickstart (log: build/quickstart.log)"
	fi
else
	fail_extra "quickstart (no build/tools/bvault)"
fi

# ---- 4. the count ---------------------------------------------------------
# Prints "pass fail skip" for the testlog.json files given, and the names
# of the failed tests (with their build) on stderr.
count_logs() {
	if command -v python3 >/dev/null 2>&1; then
		python3 - "$@" <<'EOF'
import json, os, sys

# What a failed test said: its failed points with their diagnostics, and
# the end of its stderr, so that a CI log shows why.
def what_it_said(build, t):
    lines = ['--- %s: %s (%s)' % (build, t.get('name', '?'), t.get('result'))]
    out = (t.get('stdout') or '').splitlines()
    shown, keep = [], False
    for l in out:
        if l.startswith('not ok') or l.startswith('Bail out'):
            keep = True
            shown.append(l)
        elif l.startswith('#') and keep:
            shown.append(l)
        else:
            keep = False
    lines += ['  ' + l for l in (shown or out[-20:])[:80]]
    err = (t.get('stderr') or '').splitlines()
    if err:
        lines.append('  stderr, last lines:')
        lines += ['    ' + l for l in err[-20:]]
    return '\n'.join(lines) + '\n'

details = []
p = f = s = 0
for path in sys.argv[1:]:
    build = path.split('/meson-logs/')[0]
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            t = json.loads(line)
        except ValueError:
            continue
        r = t.get('result', '')
        if r in ('OK', 'EXPECTEDFAIL'):
            p += 1
        elif r == 'SKIP':
            s += 1
        else:
            f += 1
            print('FAILED %s: %s (%s)' % (build, t.get('name', '?'), r),
                  file=sys.stderr)
            details.append(what_it_said(build, t))
with open(os.environ['DETAILS'], 'w') as out:
    out.write(''.join(details))
print(p, f, s)
EOF
	else
		local path build p=0 f=0 s=0 line name r
		for path; do
			[ -f "$path" ] || continue
			build=${path%%/meson-logs/*}
			while IFS= read -r line; do
				r=$(echo "$line" | grep -o '"result": *"[A-Z]*"' | grep -o '[A-Z]*')
				name=$(echo "$line" | grep -o '"name": *"[^"]*"' | sed 's/.*: *"//; s/"$//')
				case $r in
				OK | EXPECTEDFAIL) p=$((p + 1)) ;;
				SKIP) s=$((s + 1)) ;;
				'') ;;
				*) f=$((f + 1)); echo "FAILED $build: $name ($r)" >&2 ;;
				esac
			done <"$path"
		done
		echo "$p $f $s"
	fi
}

logs=()
for b in "${BUILDS[@]}"; do
	if [ -f "$b/meson-logs/testlog.json" ]; then
		logs+=("$b/meson-logs/testlog.json")
	else
		fail_extra "meson test in $b/ (no testlog.json; see $b/test.out)"
	fi
done
read -r pass fail skip < <(DETAILS=$ROOT/.test-details count_logs "${logs[@]}" \
	2>"$ROOT/.test-failures") ||
	{ pass=0 fail=0 skip=0; }
pass=$((pass + extra_pass))
fail=$((fail + extra_fail))

echo
if [ -s "$ROOT/.test-failures" ] || [ ${#extra_failed_names[@]} -gt 0 ]; then
	echo "Failed:"
	sed 's/^FAILED /  /' "$ROOT/.test-failures"
	for n in "${extra_failed_names[@]}"; do
		echo "  $n"
	done
	for b in "${BUILDS[@]}"; do
		echo "Logs: $b/meson-logs/testlog.txt (every test's output)," \
			"$b/test.out (summary)"
	done
fi
rm -f "$ROOT/.test-failures"
# What each failed test said (count_logs wrote it, with python3).
[ -s "$ROOT/.test-details" ] && cat "$ROOT/.test-details"
rm -f "$ROOT/.test-details"
if [ "$skip" -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
