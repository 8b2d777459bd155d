#!/bin/sh
# restore.sh [SIZE]: cold `bvault restore` against dd of the same image,
# each figure a ratio of times measured in the same run (README.md,
# "Performance"). Needs root (it drops the page cache with
# /proc/sys/vm/drop_caches before every timed command).
#
# The store is bvbench's standard workload (--store-only): replica big,
# a full of SIZE (default 1G) of 2:1 compressible data as RP 1, then 30
# express fulls of 1 % of the chunks each (RPs 2 to 31). The latest RP,
# restored once, is IMAGE: a plain file on the same disk. Then, in each of
# ROUNDS rounds (default 3), every command below after the caches are
# dropped; a figure is the median of its rounds:
#
#   restore of the latest RP to /dev/null   vs  dd if=IMAGE of=/dev/null
#                                               iflag=direct bs=4M
#   restore of the latest RP to a file      vs  dd if=IMAGE of=FILE
#                                               iflag=direct oflag=direct bs=4M
#   restore of the latest RP                vs  restore of the first RP
#   restore --delta of RP 30 over a copy of RP 31 (1 % of the chunks
#   differ)                                 vs  the full restore to a file
#
# Each round runs every command once, one after the other, so a ratio is
# of two times measured seconds apart; the table gives, for each figure,
# the median of its rounds' ratios and the median times (this machine's
# disk and cores are shared: single times swing by half).
#
#   BUILD=dir   release build (default: build-release at the top)
#   DIR=dir     where the store and images go (default: a new directory
#               under /var/tmp, removed at the end)
#   ROUNDS=n
#   REUSE=1     keep a store DIR holds from an earlier run
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${BUILD:-$src/build-release}
size=${1:-1G}
rounds=${ROUNDS:-3}

[ "$(id -u)" = 0 ] || { echo "restore.sh: needs root (drop_caches)" >&2; exit 1; }
if [ ! -d "$build" ]; then
	meson setup "$build" "$src" --buildtype=release
fi
ninja -C "$build" tools/bvault bench/bvbench >/dev/null
bv=$build/tools/bvault
if [ -n "${DIR:-}" ]; then
	d=$DIR
	mkdir -p "$d"
else
	d=$(mktemp -d /var/tmp/bvrestore.XXXXXX)
	trap 'rm -rf "$d"' EXIT
fi
if [ "${REUSE:-0}" = 1 ] && [ -d "$d/store" ]; then
	echo "reusing $d/store"
else
	rm -rf "$d/store"
	"$build/bench/bvbench" --store-only "$d/store" --size "$size" \
		--versions 30 --change 1 --compress 2.0 --chunk-size 64K
fi
"$bv" restore "$d/store" big@latest "$d/image" >/dev/null
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
	"$@" >/dev/null 2>&1 || { echo "restore.sh: failed: $*" >&2; exit 1; }
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

median() {
	tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END {
		printf "%.3f", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# The last word of $1: this round's time.
last() {
	echo "$1" | awk '{ print $NF }'
}

dd_null= r_null= dd_file= r_file= r_first= r_delta=
q_null= q_file= q_first= q_delta=
for i in $(seq "$rounds"); do
	dd_null="$dd_null $(timed dd if="$d/image" of=/dev/null iflag=direct bs=4M)"
	r_null="$r_null $(timed "$bv" restore "$d/store" big@latest /dev/null)"
	rm -f "$d/copy"
	dd_file="$dd_file $(timed dd if="$d/image" of="$d/copy" iflag=direct oflag=direct bs=4M)"
	rm -f "$d/copy"
	r_file="$r_file $(timed "$bv" restore "$d/store" big@latest "$d/copy")"
	rm -f "$d/first"
	r_first="$r_first $(timed "$bv" restore "$d/store" big@1 "$d/first")"
	rm -f "$d/first"
	# $d/copy holds RP 31 now; RP 30 differs from it in 1 % of the chunks.
	r_delta="$r_delta $(timed "$bv" restore "$d/store" big@30 "$d/copy" --delta)"
	q_null="$q_null $(echo "$(last "$dd_null") / $(last "$r_null")" | bc -l)"
	q_file="$q_file $(echo "$(last "$dd_file") / $(last "$r_file")" | bc -l)"
	q_first="$q_first $(echo "$(last "$r_first") / $(last "$r_file")" | bc -l)"
	q_delta="$q_delta $(echo "$(last "$r_delta") / $(last "$r_file")" | bc -l)"
	printf 'round %d: dd to /dev/null %.3f s, restore to /dev/null %.3f s, dd to a file %.3f s, restore to a file %.3f s, restore of RP 1 %.3f s, delta %.3f s\n' \
		"$i" "$(last "$dd_null")" "$(last "$r_null")" "$(last "$dd_file")" \
		"$(last "$r_file")" "$(last "$r_first")" "$(last "$r_delta")"
done
# What the delta wrote, untimed: RP 31 again, then RP 30 over it.
"$bv" restore "$d/store" big@latest "$d/copy" >/dev/null
"$bv" restore "$d/store" big@30 "$d/copy" --delta
rm -f "$d/copy"

m_dd_null=$(echo "$dd_null" | median)
m_r_null=$(echo "$r_null" | median)
m_dd_file=$(echo "$dd_file" | median)
m_r_file=$(echo "$r_file" | median)
m_r_first=$(echo "$r_first" | median)
m_r_delta=$(echo "$r_delta" | median)
row() {
	printf '%-58s %8.3f s %8.3f s %8.2fx\n' "$1" "$2" "$3" "$4"
}
echo
printf '%-58s %10s %10s %9s\n' "figure (cold; times: medians; ratio: median of $rounds rounds)" \
	measured reference ratio
row "restore latest RP to /dev/null vs dd iflag=direct (speed)" \
	"$m_r_null" "$m_dd_null" "$(echo "$q_null" | median)"
row "restore latest RP to a file vs dd direct to a file (speed)" \
	"$m_r_file" "$m_dd_file" "$(echo "$q_file" | median)"
row "restore latest RP vs restore of RP 1, to a file (speed)" \
	"$m_r_file" "$m_r_first" "$(echo "$q_first" | median)"
row "restore --delta (1 % differs) vs full restore (time)" \
	"$m_r_delta" "$m_r_file" "$(echo "$q_delta" | median)"
echo "ratios per round: /dev/null$(echo "$q_null" | xargs printf ' %.2f'); file$(echo "$q_file" | xargs printf ' %.2f'); latest vs first$(echo "$q_first" | xargs printf ' %.2f'); delta$(echo "$q_delta" | xargs printf ' %.2f')"
echo "image: $size of 2:1 compressible data, 64 KiB chunks, RP 31 after 30 express fulls of 1 %; store and images on $(df -T "$d" | awk 'NR == 2 { print $2 }') ($(df "$d" | awk 'NR == 2 { print $1 }'))"
