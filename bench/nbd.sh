#!/usr/bin/env bash
# nbd.sh [SIZE]: the nbdkit plugin against references measured in the
# same round, on an image of SIZE (default 256M) of bvbench's 2:1
# compressible content, ingested as RP 1:
#  - nbdcopy of the RP out of the plugin into a file vs `bvault export`
#    of it into a file (ratio of their rates; target >= 0.8x);
#  - random 4 KiB reads per second through the plugin (bench/nbd_rand,
#    DEPTH in flight on one connection) vs the same reads (same count,
#    depth and seed) from a plain file holding the same bytes, served
#    by nbdkit's file plugin, so that both go through nbdkit and NBD.
# Both sides read a warm page cache (each side is run once before it is
# timed). ROUNDS rounds (default 3); each figure is the round with the
# median ratio, every round's ratio beside it. Prints result lines for
# bench/RESULTS.md. BUILD=dir picks the build (default build-release,
# --buildtype=release); DIR=dir the scratch directory (default
# /var/tmp); COUNT and DEPTH the random reads (default 20000, 16).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-release}
size=${1:-256M}
rounds=${ROUNDS:-3}
count=${COUNT:-20000}
depth=${DEPTH:-16}
[ -d "$build" ] || meson setup "$build" "$root" --buildtype=release >/dev/null
ninja -C "$build" bench/bvbench bench/nbd_rand tools/bvault \
	tools/nbdkit-bvault-plugin.so >/dev/null
BV=$build/tools/bvault
PLUGIN=$build/tools/nbdkit-bvault-plugin.so
T=$(mktemp -d "${DIR:-/var/tmp}/bvnbd-XXXXXX")
P1= P2=
trap 'for p in $P1 $P2; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT

now() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.3f", b / s / 1e9 }'; }

"$build/bench/bvbench" --write-image "$T/img" --size "$size" --salt 7 >/dev/null
bytes=$(stat -c %s "$T/img")
"$BV" init "$T/store" >/dev/null
"$BV" mkstream "$T/img" --replica vm | "$BV" ingest "$T/store" --rp - >/dev/null
"$BV" export "$T/store" vm@1 "$T/ref.img"

nbdkit -f -U "$T/b.sock" -P "$T/b.pid" "$PLUGIN" store="$T/store" &
P1=$!
nbdkit -f -U "$T/f.sock" -P "$T/f.pid" file "$T/ref.img" &
P2=$!
for _ in $(seq 1 100); do
	[ -s "$T/b.pid" ] && [ -s "$T/f.pid" ] && break
	sleep 0.1
done
B="nbd+unix:///vm@1?socket=$T/b.sock"
F="nbd+unix:///?socket=$T/f.sock"

copy_r=() export_s=() copy_s=() rand_r=() rand_b=() rand_f=()
for r in $(seq 1 "$rounds"); do
	# warm both, then time each
	"$BV" export "$T/store" vm@1 "$T/out.img"
	nbdcopy "$B" "$T/out.img"
	t0=$(now); "$BV" export "$T/store" vm@1 "$T/out.img"; t1=$(now)
	rm -f "$T/out.img"
	t2=$(now); nbdcopy "$B" "$T/out.img"; t3=$(now)
	cmp "$T/out.img" "$T/img"
	rm -f "$T/out.img"
	es=$(echo "$t1 - $t0" | bc -l); cs=$(echo "$t3 - $t2" | bc -l)
	export_s+=("$es") copy_s+=("$cs")
	copy_r+=("$(echo "$es / $cs" | bc -l)")
	"$build/bench/nbd_rand" "$F" "$count" "$depth" 1 >/dev/null
	"$build/bench/nbd_rand" "$B" "$count" "$depth" 1 >/dev/null
	fr=$("$build/bench/nbd_rand" "$F" "$count" "$depth" $((r + 10)) | awk '{print $8}')
	br=$("$build/bench/nbd_rand" "$B" "$count" "$depth" $((r + 10)) | awk '{print $8}')
	rand_f+=("$fr") rand_b+=("$br")
	rand_r+=("$(echo "$br / $fr" | bc -l)")
done

# median round of the ratios in array $1: prints its index
median() {
	local -n a=$1
	local i
	for i in "${!a[@]}"; do echo "${a[$i]} $i"; done | sort -g |
		awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }'
}
list() { local -n a=$1; printf '%.2fx ' "${a[@]}"; }
m=$(median copy_r)
printf '%-56s %9s GB/s %9s GB/s %8.2fx\n' \
	"nbdcopy of an RP from the plugin vs bvault export" \
	"$(rate "$bytes" "${copy_s[$m]}")" "$(rate "$bytes" "${export_s[$m]}")" \
	"${copy_r[$m]}"
m=$(median rand_r)
printf '%-56s %9.0f /s   %9.0f /s   %8.2fx\n' \
	"random 4 KiB reads, depth $depth: plugin vs file plugin" \
	"${rand_b[$m]}" "${rand_f[$m]}" "${rand_r[$m]}"
echo "rounds: nbdcopy/export $(list copy_r); random reads $(list rand_r)"
echo "image $bytes bytes, $count reads per run, load average $(cut -d' ' -f1-3 /proc/loadavg)"
