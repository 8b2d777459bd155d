#!/bin/sh
# bench/gc-torture.sh: the long run of engine-gc-crash: kill -9 a process
# running GC 200 times (at each point of a run in turn, and at random
# moments), reopening the store and reading every RP bit for bit after
# each kill; then the next GC runs must finish the job.
#
#   bench/gc-torture.sh [BUILD_DIR] [KILLS]
#
# BUILD_DIR defaults to build/, KILLS to 200; BV_SEED replays a run.
set -eu
build=${1:-build}
kills=${2:-200}
exe="$build/test/engine/engine-gc-crash"
if [ ! -x "$exe" ]; then
	echo "gc-torture: $exe not found (ninja -C $build first)" >&2
	exit 2
fi
BV_KILLS=$kills exec "$exe"
