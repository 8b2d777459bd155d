#!/bin/sh
# torture.sh [KILLS] [ROUNDS]: the kill -9 torture of ingest, long form.
# Runs test/engine/crash.c (engine-crash) with KILLS random kills
# (default 200; the test suite runs 24) in each of ROUNDS rounds (default
# 2): the first with 1 GiB containers, the second with 1 MiB containers
# (BV_CONTAINER_MAX) so that kills also land on roll-overs. Each round
# uses a fresh seed, printed, so that a failure can be replayed with
# BV_SEED=... . After every kill the test reopens the store and checks
# every committed RP bit for bit (or sampled, with the newest three
# exported whole), and that the in-flight one is whole or absent.
#
#   BUILD=dir   a build directory (default: build at the top of the tree)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${BUILD:-$src/build}
kills=${1:-200}
rounds=${2:-2}

if [ ! -d "$build" ]; then
	meson setup "$build" "$src"
fi
ninja -C "$build" test/engine/engine-crash >/dev/null
fail=0
r=1
while [ "$r" -le "$rounds" ]; do
	seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
	cmax=
	[ $((r % 2)) -eq 0 ] && cmax=1048576
	echo "== torture round $r: $kills kills, seed $seed${cmax:+, containers of $cmax bytes}"
	if ! BV_SEED=$seed BV_KILLS=$kills BV_CONTAINER_MAX=$cmax \
		"$build/test/engine/engine-crash" >"$build/torture-$r.log" 2>&1; then
		fail=1
	fi
	grep -E '^(not ok|# )' "$build/torture-$r.log" | tail -n 20
	echo "   $(grep -c '^ok' "$build/torture-$r.log") passed, $(grep -c '^not ok' "$build/torture-$r.log") failed"
	r=$((r + 1))
done
exit $fail
