#!/bin/sh
# bench/gc.sh: what GC costs, as ratios of figures measured in the same
# run (README.md, "Performance"; the results go to bench/RESULTS.md).
#
#   bench/gc.sh scale [SIZE]     GC on two stores, SIZE and 4 x SIZE of
#                                data (default 256M, 4K chunks), with the
#                                same garbage (three sessions cut short
#                                after 24 MiB of new data each): the
#                                container bytes it reads and writes
#                                against what it reclaims, its time, and
#                                the mark's rate in map entries per second
#                                with what that projects for 1.3 billion
#                                map entries (800 replicas of 100 GB in
#                                64 KiB chunks)
#   bench/gc.sh csize [SIZE]     for container sizes 16M, 64M, 256M, 1G:
#                                a store of SIZE (default 512M) of data,
#                                fragmented by express fulls (16 random
#                                1 MiB ranges each) between sessions cut
#                                short (garbage); the restore of its
#                                latest RP to /dev/null (O_DIRECT reads)
#                                against dd of the image, before and after
#                                a GC at threshold 95%, and the bytes GC
#                                writes per byte it reclaims
#
#   BUILD=dir   build with tools/bvault (default: build at the top)
#   DIR=dir     where stores and images go (default: a new directory
#               under /var/tmp, removed at the end)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${BUILD:-$src/build}
BV=$build/tools/bvault
mode=${1:-scale}
[ -x "$BV" ] || { echo "gc.sh: $BV not found (ninja -C $build)" >&2; exit 2; }
dir=${DIR:-$(mktemp -d /var/tmp/bvault-gc.XXXXXX)}
mkdir -p "$dir"
[ -n "${DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
unset BV_CONTAINER_MAX

now() { date +%s.%N; }
# json FILE KEY: the number KEY has in FILE's one-line object.
json() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.3f", a / b }'; }

# garbage STORE N: N sessions of new data cut short after 24 MiB (their
# batches were indexed, then the session aborted).
garbage() {
	i=0
	while [ $i -lt "$2" ]; do
		head -c $((32 << 20)) /dev/urandom >"$dir/g.img"
		"$BV" mkstream "$dir/g.img" --replica "junk$i" --out "$dir/g.s"
		head -c $((26 << 20)) "$dir/g.s" >"$dir/cut.s"
		"$BV" ingest "$1" --rp "$dir/cut.s" >/dev/null 2>&1 || true
		i=$((i + 1))
	done
	rm -f "$dir/g.img" "$dir/g.s" "$dir/cut.s"
}

# A compressible image (about 2:1): random 4 KiB blocks half zeroed.
mkimage() {
	head -c "$2" /dev/urandom | perl -e '
		$/ = \4096; while (<STDIN>) { substr($_, 2048) = "\0" x 2048
		    if length($_) == 4096; print }' >"$1"
}

scale() {
	size=${1:-256M}
	bytes=$(numfmt --from=iec "$size")
	echo "## GC scaling (bench/gc.sh scale $size)"
	echo
	echo '```'
	printf '%-10s %12s %12s %12s %12s %10s %10s %12s\n' store map_entries \
		read written reclaimed gc_s mark_s entries/s
	for mult in 1 4; do
		s=$dir/s$mult
		rm -rf "$s"
		"$BV" init "$s" --chunk-size 4K --container-size 64M >/dev/null
		mkimage "$dir/a.img" $((bytes * mult))
		"$BV" mkstream "$dir/a.img" --replica vm --out "$dir/a.s"
		"$BV" ingest "$s" --rp "$dir/a.s" >/dev/null
		rm -f "$dir/a.s" "$dir/a.img"
		garbage "$s" 3
		t0=$(now)
		"$BV" gc "$s" --json >"$dir/gc$mult.json"
		t1=$(now)
		gc_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
		eval "gc_s$mult=$gc_s"
		for k in map_entries bytes_read bytes_written bytes_reclaimed \
			mark_seconds; do
			eval "${k}$mult=$(json "$dir/gc$mult.json" $k)"
		done
		eval "me=\$map_entries$mult ms=\$mark_seconds$mult"
		rate=$(awk -v n="$me" -v t="$ms" 'BEGIN { if (t > 0) printf "%.0f", n / t; else print 0 }')
		eval "rate$mult=$rate"
		eval "printf '%-10s %12s %12s %12s %12s %10s %10s %12s\n' \
			\"$mult x $size\" \$map_entries$mult \$bytes_read$mult \
			\$bytes_written$mult \$bytes_reclaimed$mult $gc_s \
			\$mark_seconds$mult $rate"
		rm -rf "$s"
	done
	echo
	echo "4x store vs 1x: map entries $(ratio "$map_entries4" "$map_entries1")x," \
		"bytes read $(ratio "$bytes_read4" "$bytes_read1")x," \
		"written $(ratio "$bytes_written4" "$bytes_written1")x," \
		"reclaimed $(ratio "$bytes_reclaimed4" "$bytes_reclaimed1")x," \
		"gc time $(ratio "$gc_s4" "$gc_s1")x, mark time $(ratio "$mark_seconds4" "$mark_seconds1")x"
	echo "read per byte reclaimed: 1x $(ratio "$bytes_read1" "$bytes_reclaimed1")," \
		"4x $(ratio "$bytes_read4" "$bytes_reclaimed4"); written per byte reclaimed:" \
		"1x $(ratio "$bytes_written1" "$bytes_reclaimed1"), 4x $(ratio "$bytes_written4" "$bytes_reclaimed4")"
	awk -v r="$rate4" 'BEGIN { if (r > 0) printf "mark: %.0f map entries/s (4x store); 1.3e9 map entries: %.0f s (%.1f min) of mark, and a Bloom filter of %.2f GB\n", r, 1.3e9 / r, 1.3e9 / r / 60, 1.3e9 * 12.5 / 8 / 1e9 }'
	echo '```'
}

csize() {
	size=${1:-512M}
	bytes=$(numfmt --from=iec "$size")
	mkimage "$dir/base.img" "$bytes"
	t0=$(now)
	dd if="$dir/base.img" of=/dev/null iflag=direct bs=4M 2>/dev/null
	t1=$(now)
	dd_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	echo "## Container size (bench/gc.sh csize $size)"
	echo
	echo '```'
	echo "dd iflag=direct of the $size image: $dd_s s"
	printf '%-8s %10s %10s %10s %10s %12s %12s %10s\n' csize files \
		restore_s vs_dd after_gc vs_dd_after written reclaimed
	for cs in 16M 64M 256M 1G; do
		s=$dir/s-$cs
		rm -rf "$s"
		cp "$dir/base.img" "$dir/a.img"
		"$BV" init "$s" --container-size "$cs" >/dev/null
		"$BV" mkstream "$dir/a.img" --replica vm --out "$dir/a.s"
		"$BV" ingest "$s" --rp "$dir/a.s" >/dev/null
		rm -f "$dir/a.s"
		rp=1
		for round in 1 2 3 4; do
			garbage "$s" 1
			# 16 random 1 MiB ranges of new data: an express full
			: >"$dir/ext"
			n=0
			while [ $n -lt 16 ]; do
				mb=$(awk -v s="$bytes" -v r="$(od -An -N4 -tu4 /dev/urandom)" \
					'BEGIN { printf "%d", r % (s / 1048576) }')
				head -c 1048576 /dev/urandom | dd of="$dir/a.img" bs=1M \
					seek="$mb" conv=notrunc 2>/dev/null
				echo "$((mb << 20)) 1048576" >>"$dir/ext"
				n=$((n + 1))
			done
			sort -n -u "$dir/ext" -o "$dir/ext"
			"$BV" mkstream "$dir/a.img" --replica vm --base $rp \
				--extents "$dir/ext" --out "$dir/e.s"
			"$BV" ingest "$s" --rp "$dir/e.s" >/dev/null
			rp=$((rp + 1))
		done
		files=$(ls "$s/containers" | wc -l)
		t0=$(now)
		"$BV" restore "$s" vm@latest /dev/null >/dev/null
		t1=$(now)
		r_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
		"$BV" gc "$s" --threshold 95 --json >"$dir/gc.json"
		t0=$(now)
		"$BV" restore "$s" vm@latest /dev/null >/dev/null
		t1=$(now)
		a_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
		w=$(json "$dir/gc.json" bytes_written)
		rec=$(json "$dir/gc.json" bytes_reclaimed)
		printf '%-8s %10s %10s %10s %10s %12s %12s %10s\n' "$cs" "$files" \
			"$r_s" "$(ratio "$dd_s" "$r_s")" "$a_s" \
			"$(ratio "$dd_s" "$a_s")" "$w" "$rec"
		echo "         written per byte reclaimed: $(ratio "$w" "$rec")"
		rm -rf "$s" "$dir/a.img"
	done
	echo '```'
}

case $mode in
scale) scale "${2:-}" ;;
csize) csize "${2:-}" ;;
*) echo "usage: bench/gc.sh scale|csize [SIZE]" >&2; exit 2 ;;
esac
