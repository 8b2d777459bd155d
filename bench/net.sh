#!/usr/bin/env bash
# net.sh [SIZE]: network ingest through bvaultd on TCP loopback, with 1 and
# with 8 agents, over TLS 1.3 (the default) and over plain TCP (--no-tls
# on both ends), each as a ratio of local `bvault ingest` of the same data
# (stream files made by `bvault mkstream` from the same images) measured in
# the same round; and the consistency check of the unchanged replica as a
# ratio of reading its source once with dd. New, 2:1 compressible content
# from bvbench's generator; every image has content of its own, and every
# ingest goes into a store of its own, so nothing deduplicates against
# anything ingested before it.
# ROUNDS rounds (default 3), local and network one after the other in
# each; this machine's disk and CPU rates wander by tens of percent from
# minute to minute, so each figure prints the round with its median ratio,
# and the ratios of every round beside it.
# Prints result lines; run.sh copies them into RESULTS.md.
# BUILD=dir picks the build (default build-release, made with
# --buildtype=release); DIR=dir the scratch directory (default /var/tmp).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-release}
size=${1:-2G}
rounds=${ROUNDS:-3}
[ -d "$build" ] || meson setup "$build" "$root" --buildtype=release >/dev/null
ninja -C "$build" bench/bvbench tools/bvault tools/bvaultd tools/bvault-agent >/dev/null
BV=$build/tools/bvault
BVD=$build/tools/bvaultd
BVA=$build/tools/bvault-agent
T=$(mktemp -d "${DIR:-/var/tmp}/bvnet-XXXXXX")
SRV=
trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$T"' EXIT

now() { date +%s.%N; }
bytes() { stat -c %s "$1"; }

# Images: one of SIZE, and eight of SIZE/8, each of its own salt.
"$build/bench/bvbench" --write-image "$T/one.img" --size "$size" --salt 1
one=$(bytes "$T/one.img")
part=$((one / 8 / 65536 * 65536))
for i in 1 2 3 4 5 6 7 8; do
	"$build/bench/bvbench" --write-image "$T/p$i.img" --size "$part" \
		--salt $((10 + i))
done
for f in one p1 p2 p3 p4 p5 p6 p7 p8; do
	"$BV" mkstream "$T/$f.img" --replica "$f" --out "$T/$f.bvs"
done
# Warm the page cache the same for both sides: they read the same files.
cat "$T"/*.img "$T"/*.bvs >/dev/null

# A new store served by a new bvaultd, and an agent identity for it.
serve() {
	rm -rf "$T/net" && "$BV" init "$T/net" >/dev/null
	"$BV" agent add "$T/net" bench --group one --group p1 --group p2 \
		--group p3 --group p4 --group p5 --group p6 --group p7 \
		--group p8 >"$T/key"
	"$BVD" "$T/net" --listen 127.0.0.1:0 $1 2>"$T/log" &
	SRV=$!
	port=
	for _ in $(seq 1 200); do
		port=$(sed -n 's/.*listening on 127.0.0.1 port \([0-9]*\).*/\1/p' \
			"$T/log")
		[ -n "$port" ] && break
		sleep 0.05
	done
	[ -n "$port" ] || { echo "net.sh: bvaultd did not start" >&2; exit 1; }
	if [ "$1" = --no-tls ]; then
		how=(--no-tls)
	else
		how=(--fingerprint "$("$BV" tls fingerprint "$T/net")")
	fi
}
unserve() { kill -TERM "$SRV"; wait "$SRV" || true; SRV=; }
agent() {
	"$BVA" --server "127.0.0.1:$port" "${how[@]}" --name bench \
		--secret-file "$T/key" "$@" >/dev/null
}

# net_round SERVE-FLAG FILE1 FILE8: a new server (serve SERVE-FLAG), one
# agent, then eight at once; appends "RATIO MEASURED REFERENCE" against
# local1 and local8 to FILE1 and FILE8.
net_round() {
	local t0 t1 t2 net1 net8 p pids=()
	serve "$1"
	t0=$(now)
	agent --disk one="$T/one.img" --full
	t1=$(now)
	for i in 1 2 3 4 5 6 7 8; do
		agent --disk "p$i=$T/p$i.img" --full &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	t2=$(now)
	net1=$(echo "$one / ($t1 - $t0)" | bc -l)
	net8=$(echo "8 * $part / ($t2 - $t1)" | bc -l)
	echo "$(echo "$net1 / $local1" | bc -l) $net1 $local1" >>"$T/$2"
	echo "$(echo "$net8 / $local8" | bc -l) $net8 $local8" >>"$T/$3"
}

# Each round appends "RATIO MEASURED REFERENCE" to r1, r8 and rc.
: >"$T/r1"; : >"$T/r8"; : >"$T/rc"; : >"$T/p1"; : >"$T/p8"
for r in $(seq 1 "$rounds"); do
	# Local ingest: one stream, then the eight one after another.
	rm -rf "$T/local" && "$BV" init "$T/local" >/dev/null
	t0=$(now)
	"$BV" ingest "$T/local" --rp "$T/one.bvs" >/dev/null
	t1=$(now)
	for i in 1 2 3 4 5 6 7 8; do
		"$BV" ingest "$T/local" --rp "$T/p$i.bvs" >/dev/null
	done
	t2=$(now)
	local1=$(echo "$one / ($t1 - $t0)" | bc -l)
	local8=$(echo "8 * $part / ($t2 - $t1)" | bc -l)

	# Through bvaultd on loopback, plain TCP first, then TLS as agents
	# connect by default (the server left running for the check below).
	net_round --no-tls p1 p8
	unserve
	net_round "" r1 r8
	# The consistency check of the unchanged replica "one", against
	# reading the source once (dd, 4 MiB reads, page cache as warm as
	# the agent's).
	dd if="$T/one.img" of=/dev/null bs=4M 2>/dev/null
	t3=$(now)
	dd if="$T/one.img" of=/dev/null bs=4M 2>/dev/null
	t4=$(now)
	agent --disk one="$T/one.img" --compare --no-rp
	t5=$(now)
	unserve
	readt=$(echo "$t4 - $t3" | bc -l)
	cmpt=$(echo "$t5 - $t4" | bc -l)
	echo "$(echo "$cmpt / $readt" | bc -l) $cmpt $readt" >>"$T/rc"
done

# median FILE: the line of FILE with the median ratio (the lower middle
# one of an even count).
median() { sort -g "$1" | sed -n "$(( ($(wc -l <"$1") + 1) / 2 ))p"; }
# every FILE: the ratios of every round, in round order.
every() { awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 }' "$1"; }
gb() { printf '%.3f GB/s' "$(echo "$1 / 1000000000" | bc -l)"; }

# rate_line FILE LABEL: the median round of FILE as a rate figure.
rate_line() {
	local ratio m ref
	read -r ratio m ref < <(median "$T/$1")
	printf '%-56s %12s %12s %8.2fx   rounds: %s\n' "$2" "$(gb "$m")" \
		"$(gb "$ref")" "$ratio" "$(every "$T/$1")"
}
rate_line r1 "network ingest (TLS), 1 agent vs local bvault ingest"
rate_line r8 "network ingest (TLS), 8 agents at once vs local ingest"
rate_line p1 "network ingest (plain TCP), 1 agent vs local ingest"
rate_line p8 "network ingest (plain TCP), 8 agents vs local ingest"
read -r ratio m ref < <(median "$T/rc")
printf '%-56s %10.3f s %10.3f s %8.2fx   rounds: %s\n' \
	"consistency check of an unchanged replica vs dd of it" "$m" "$ref" \
	"$ratio" "$(every "$T/rc")"
echo "net workload: one image of $one bytes; eight of $part bytes each; TCP loopback; local: bvault ingest of bvault mkstream files of the same images, page cache warm for both; $rounds rounds, each figure the round of median ratio"
