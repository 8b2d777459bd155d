#!/bin/sh
# verify.sh [SIZE]: cold `bvault verify` of a whole store against `cat` of
# the same container files to /dev/null, each a ratio of times measured in
# the same run (README.md, "Performance"). Needs root (it drops the page
# cache with /proc/sys/vm/drop_caches before every timed command).
#
# The store is bvbench's standard workload (--store-only): a full of SIZE
# (default 4G) of 2:1 compressible data as RP 1, then 30 express fulls of
# 1 % of the chunks each, so the containers hold about SIZE / 2. In each
# of ROUNDS rounds (default 3), after the caches are dropped:
#
#   bvault verify STORE --read-only --jobs J   vs  cat STORE/containers/* >/dev/null
#
# for J = 1 and the default (J = twice the core count; "verify" reads every container record
# by record, checks each record's checksums and the fingerprint of its
# decoded bytes, holds it against the chunk index, then walks the map).
# A figure is the median of its rounds' speed ratios (cat's time / the
# verify's: above 1, verify is faster). The target is 0.8x.
#
#   BUILD=dir   release build (default: build-release at the top)
#   DIR=dir     where the store goes (default: a new directory under
#               /var/tmp, removed at the end)
#   ROUNDS=n
#   REUSE=1     keep a store DIR holds from an earlier run
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${BUILD:-$src/build-release}
size=${1:-4G}
rounds=${ROUNDS:-3}
cores=$(nproc)

[ "$(id -u)" = 0 ] || { echo "verify.sh: needs root (drop_caches)" >&2; exit 1; }
if [ ! -d "$build" ]; then
	meson setup "$build" "$src" --buildtype=release
fi
ninja -C "$build" tools/bvault bench/bvbench >/dev/null
bv=$build/tools/bvault
if [ -n "${DIR:-}" ]; then
	d=$DIR
	mkdir -p "$d"
else
	d=$(mktemp -d /var/tmp/bvverify.XXXXXX)
	trap 'rm -rf "$d"' EXIT
fi
if [ "${REUSE:-0}" = 1 ] && [ -d "$d/store" ]; then
	echo "reusing $d/store"
else
	rm -rf "$d/store"
	"$build/bench/bvbench" --store-only "$d/store" --size "$size" \
		--versions 30 --change 1 --compress 2.0 --chunk-size 64K
fi
"$bv" verify "$d/store" --read-only >/dev/null ||
	{ echo "verify.sh: the store does not verify" >&2; exit 1; }
sync

drop() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# Seconds that "$@" takes, caches dropped first.
timed() {
	local t0 t1
	drop
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1 || { echo "verify.sh: failed: $*" >&2; exit 1; }
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

median() {
	tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END {
		printf "%.3f", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

last() {
	echo "$1" | awk '{ print $NF }'
}

catall() {
	cat "$d"/store/containers/*.bvc >/dev/null
}

c= v1= vn= q1= qn=
for i in $(seq "$rounds"); do
	c="$c $(timed catall)"
	v1="$v1 $(timed "$bv" verify "$d/store" --read-only --jobs 1)"
	vn="$vn $(timed "$bv" verify "$d/store" --read-only)"
	q1="$q1 $(echo "$(last "$c") / $(last "$v1")" | bc -l)"
	qn="$qn $(echo "$(last "$c") / $(last "$vn")" | bc -l)"
	printf 'round %d: cat %.3f s, verify --jobs 1 %.3f s, verify (%d jobs) %.3f s\n' \
		"$i" "$(last "$c")" "$(last "$v1")" "$((2 * cores))" "$(last "$vn")"
done
bytes=$(cat "$d"/store/containers/*.bvc | wc -c)
row() {
	printf '%-58s %8.3f s %8.3f s %8.2fx\n' "$1" "$2" "$3" "$4"
}
echo
printf '%-58s %10s %10s %9s\n' "figure (cold; times: medians; ratio: median of $rounds rounds)" \
	measured reference ratio
row "verify --jobs 1 vs cat of the containers (speed)" \
	"$(echo "$v1" | median)" "$(echo "$c" | median)" "$(echo "$q1" | median)"
row "verify ($((2 * cores)) jobs, the default) vs cat of the containers" \
	"$(echo "$vn" | median)" "$(echo "$c" | median)" "$(echo "$qn" | median)"
echo "ratios per round: jobs 1$(echo "$q1" | xargs printf ' %.2f'); jobs $((2 * cores))$(echo "$qn" | xargs printf ' %.2f')"
echo "store: $size of 2:1 compressible data, 64 KiB chunks, 30 express fulls of 1 %; $(ls "$d"/store/containers/*.bvc | wc -l) container files, $bytes bytes, on $(df -T "$d" | awk 'NR == 2 { print $2 }') ($(df "$d" | awk 'NR == 2 { print $1 }'))"
