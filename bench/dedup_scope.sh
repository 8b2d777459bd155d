#!/usr/bin/env bash
# dedup_scope.sh [SIZE]: what a commit's time tells a tenant, in each dedup
# scope (bvault init --dedup store|group, INVARIANTS.md 15). Replica a (a
# group of its own) ingests an image; then replica b, another group,
# ingests the same bytes. The figure is b's ingest time as a ratio of a's,
# measured in the same round: in a store-scoped store b's data is known and
# its commit is much faster (the channel); in a group-scoped store b's
# data is stored anew and takes as long as a's (no channel). Also the
# space each scope takes for the two copies. 2:1 compressible content
# from bvbench's generator; local `bvault ingest` of `bvault mkstream`
# files, page cache warm.
# ROUNDS rounds (default 3); each figure is the round with the median
# ratio, with every round's ratio beside it.
# BUILD=dir picks the build (default build-release, made with
# --buildtype=release); DIR=dir the scratch directory (default /var/tmp).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-release}
size=${1:-1G}
rounds=${ROUNDS:-3}
[ -d "$build" ] || meson setup "$build" "$root" --buildtype=release >/dev/null
ninja -C "$build" bench/bvbench tools/bvault >/dev/null
BV=$build/tools/bvault
T=$(mktemp -d "${DIR:-/var/tmp}/bvscope-XXXXXX")
trap 'rm -rf "$T"' EXIT

now() { date +%s.%N; }

"$build/bench/bvbench" --write-image "$T/img" --size "$size" --salt 7
for r in a b; do
	"$BV" mkstream "$T/img" --replica $r --out "$T/$r.bvs"
done
cat "$T/img" "$T"/*.bvs >/dev/null

# Each round appends "RATIO SECOND FIRST STORED" to the scope's file.
for r in $(seq 1 "$rounds"); do
	for sc in store group; do
		rm -rf "$T/s"
		"$BV" init "$T/s" --dedup $sc >/dev/null
		t0=$(now)
		"$BV" ingest "$T/s" --rp "$T/a.bvs" >/dev/null
		t1=$(now)
		"$BV" ingest "$T/s" --rp "$T/b.bvs" >/dev/null
		t2=$(now)
		stored=$("$BV" stats "$T/s" --json |
			sed -n 's/^  "stored_bytes": \([0-9]*\),*$/\1/p')
		echo "$(echo "($t2 - $t1) / ($t1 - $t0)" | bc -l) \
$(echo "$t2 - $t1" | bc -l) $(echo "$t1 - $t0" | bc -l) $stored" >>"$T/$sc"
	done
done
rm -rf "$T/s"

median() { sort -g "$1" | sed -n "$(( ($(wc -l <"$1") + 1) / 2 ))p"; }
every() { awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 }' "$1"; }
for sc in store group; do
	read -r ratio second first stored < <(median "$T/$sc")
	printf '%-60s %9.3f s %9.3f s %7.2fx   rounds: %s\n' \
		"dedup scope $sc: another group's ingest of the same data" \
		"$second" "$first" "$ratio" "$(every "$T/$sc")"
	printf '%-60s %12s\n' "dedup scope $sc: stored bytes of the two copies" \
		"$(numfmt --to=iec "$stored")"
done
echo "dedup scope workload: $(stat -c %s "$T/img") bytes, 2:1 compressible; figure: second ingest's time / first's; $rounds rounds, each figure the round of median ratio"
