#!/bin/sh
# seed.sh [SIZE]: `bvault seed export` of an RP against `cp` of the same
# number of bytes to the same folder, as a ratio of times measured in the
# same run (README.md, "Performance"; the target is at least 0.8x: the
# export writes nearly as fast as a plain copy). Also `seed import` into
# an empty store, against the export.
#
# The store is bvbench's standard workload (--store-only): replica big, a
# full of SIZE (default 1G) of 2:1 compressible data. In each of ROUNDS
# rounds (default 3), after the page cache is dropped (when root):
#
#   seed export big@latest --to OUT/set       vs  cp FILE OUT/copy
#   (FILE: a file of the set's pack bytes, made once, read from the
#    page cache like the store's containers after the first round: both
#    commands are timed cold when root can drop the caches)
#   seed import into an empty store            vs  the export
#
# A figure is the median of its rounds' ratios; times are medians too.
#
#   BUILD=dir   release build (default: build-release at the top)
#   DIR=dir     where everything goes (default: a new directory under
#               /var/tmp, removed at the end)
#   ROUNDS=n
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${BUILD:-$src/build-release}
size=${1:-1G}
rounds=${ROUNDS:-3}

if [ ! -d "$build" ]; then
	meson setup "$build" "$src" --buildtype=release
fi
ninja -C "$build" tools/bvault bench/bvbench >/dev/null
bv=$build/tools/bvault
if [ -n "${DIR:-}" ]; then
	d=$DIR
	mkdir -p "$d"
else
	d=$(mktemp -d /var/tmp/bvseed.XXXXXX)
	trap 'rm -rf "$d"' EXIT
fi
rm -rf "$d/store"
"$build/bench/bvbench" --store-only "$d/store" --size "$size" \
	--versions 1 --change 1 --compress 2.0 --chunk-size 64K >/dev/null

drop() {
	sync
	[ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

now() { date +%s.%N; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$d/r.export"; : >"$d/r.import"; : >"$d/t.export"; : >"$d/t.cp"
: >"$d/t.import"
i=0
while [ $i -lt "$rounds" ]; do
	i=$((i + 1))
	rm -rf "$d/out" "$d/dst"
	mkdir -p "$d/out"
	drop
	t0=$(now)
	"$bv" seed export "$d/store" big@latest --to "$d/out/set" >/dev/null
	sync
	t1=$(now)
	bytes=$(du -sb "$d/out/set" | cut -f1)
	if [ ! -f "$d/src" ] || [ "$(stat -c %s "$d/src")" != "$bytes" ]; then
		head -c "$bytes" /dev/urandom >"$d/src"
	fi
	drop
	t2=$(now)
	cp "$d/src" "$d/out/copy"
	sync
	t3=$(now)
	"$bv" init "$d/dst" >/dev/null
	drop
	t4=$(now)
	"$bv" seed import "$d/dst" "$d/out/set" >/dev/null
	t5=$(now)
	te=$(echo "$t1 - $t0" | bc -l)
	tc=$(echo "$t3 - $t2" | bc -l)
	ti=$(echo "$t5 - $t4" | bc -l)
	echo "$te" >>"$d/t.export"
	echo "$tc" >>"$d/t.cp"
	echo "$ti" >>"$d/t.import"
	echo "$tc / $te" | bc -l >>"$d/r.export"
	echo "$te / $ti" | bc -l >>"$d/r.import"
	printf 'round %d: %s bytes; export %.2f s, cp %.2f s, import %.2f s\n' \
		$i "$bytes" "$te" "$tc" "$ti"
done
printf '\n| figure | ratio | times (median) |\n| --- | --- | --- |\n'
printf '| seed export vs cp of the same bytes (higher: faster) | %.2fx | %.2f s vs %.2f s |\n' \
	"$(median <"$d/r.export")" "$(median <"$d/t.export")" "$(median <"$d/t.cp")"
printf '| seed import vs seed export | %.2fx | %.2f s vs %.2f s |\n' \
	"$(median <"$d/r.import")" "$(median <"$d/t.import")" "$(median <"$d/t.export")"
echo "command: bench/seed.sh $size (ROUNDS=$rounds), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
