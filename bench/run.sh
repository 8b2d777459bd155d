#!/bin/sh
# run.sh [BVBENCH ARGS...]: builds a release tree, runs bvbench with the
# standard parameters (or the ones given) and rewrites bench/RESULTS.md
# with the figures, the date, the machine and the exact command.
#
#   BUILD=dir    release build directory (default: build-release at the
#                top of the source tree)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${BUILD:-$src/build-release}

if [ ! -d "$build" ]; then
	meson setup "$build" "$src" --buildtype=release
fi
ninja -C "$build" bench/bvbench

if [ $# -eq 0 ]; then
	set -- --size 4G --compress 2.0 --dedup 1.0 --change 1 --versions 30 \
		--chunk-size 64K
fi
cmd="$build/bench/bvbench $*"
echo "+ $cmd"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
out=$("$build/bench/bvbench" "$@")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "$out"

# Network ingest (bench/net.sh), unless NET=0.
net=
if [ "${NET:-1}" != 0 ]; then
	echo "+ bench/net.sh ${NET_SIZE:-2G}"
	net=$(BUILD=$build "$here/net.sh" "${NET_SIZE:-2G}")
	printf '%s\n' "$net"
fi

summary=$(printf '%s\n' "$out" | sed -n 's/^SUMMARY //p')
[ -n "$summary" ] || { echo "run.sh: no SUMMARY from bvbench" >&2; exit 1; }
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
fs=$(df -T /var/tmp | awk 'NR == 2 { print $2 }')
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)

{
	echo "# bvbench results"
	echo
	echo "Made by \`bench/run.sh\`; every figure is a ratio against a"
	echo "reference measured in the same run on the same machine"
	echo "(README.md, "Performance"). Rerun it to update this file."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- commit: $commit"
	echo "- machine: $(nproc) cores ($cpu), $mem RAM, /var/tmp on $fs"
	echo "- load average (1, 5, 15 min) before: $load_before; after: $load_after"
	echo "  (a shared machine: other work competes for the same cores)"
	echo "- build: meson --buildtype=release"
	echo "- command: \`$(echo "$cmd" | sed "s|$src/||")\`"
	echo
	echo "## Table"
	echo
	echo '```'
	printf '%s\n' "$out" | sed -n '/^figure/,/^workload/p'
	echo '```'
	echo
	echo "The full-ingest rounds (the table keeps the median one):"
	echo
	echo '```'
	printf '%s\n' "$out" | sed -n 's/; CLOCK_MONOTONIC.*//; /^round /p'
	echo '```'
	echo
	echo "Targets: full ingest >= 1.0x single-core LZ4; ingest of stored"
	echo "data >= 3 GB/s; express full of 1 % changed chunks < 5 % of the"
	echo "full ingest time; export of the latest RP >= 0.7x the first;"
	echo "RP creation independent of replica size (ratio about 1)."
	echo "Containers are written with O_DIRECT, so an ingest leaves no"
	echo "chunk data in the page cache. \"cold\": the page cache of the"
	echo "store's files was dropped (fadvise) before each export; \"warm\":"
	echo "what the cold pass read in is still cached. Full ingest runs in"
	echo "rounds, each into a new replica of new content and each between"
	echo "two single-core LZ4 passes over the same in-memory image it"
	echo "reads; a round's reference is the mean of its two passes, and the"
	echo "table keeps the round with the median ratio (this machine's rates"
	echo "drift by a third within seconds). \"O_DIRECT disk\": 4 MiB"
	echo "appends, each followed by fdatasync, as ingest writes. \"cores"
	echo "busy\": CPU seconds / wall seconds of the ingest (2 cores here)."
	echo
	if [ -n "$net" ]; then
		echo "## Network ingest"
		echo
		echo "\`bench/net.sh ${NET_SIZE:-2G}\` (run by run.sh after bvbench):"
		echo
		echo '```'
		echo "figure                                                   measured    reference     ratio   (ratio of each round)"
		printf '%s\n' "$net"
		echo '```'
		echo
		echo "Targets: network ingest >= 0.8x local \`bvault ingest\` of the"
		echo "same data, with 1 and with 8 agents; the consistency check of"
		echo "an unchanged replica <= 1.2x reading its source once. Agents"
		echo "and server share this machine's 2 cores; the data crosses TCP"
		echo "loopback. Each figure is the round (of ROUNDS, default 3) with"
		echo "the median ratio; each round runs local and network one after"
		echo "the other, into new stores."
		echo
	fi
	echo "## Summary (machine-readable)"
	echo
	echo '```json'
	printf '%s\n' "$summary"
	echo '```'
	# Notes written by hand under "## Notes" are kept from run to run;
	# edit them to match the new figures.
	if [ -f "$here/RESULTS.md" ]; then
		sed -n '/^## Notes/,$p' "$here/RESULTS.md" | sed '1s/^/\n/'
	fi
} > "$here/RESULTS.md.new"
mv "$here/RESULTS.md.new" "$here/RESULTS.md"
echo "wrote $here/RESULTS.md"
