#!/usr/bin/env bash
# soak.sh [AGENTS [SECONDS [MIB]]]: AGENTS agents (default 64) back up to
# one bvaultd over TCP with TLS (pinned fingerprint) again and again for
# SECONDS (default 300), each its own disk of MIB MiB (default 16) with
# fresh random blocks written between runs; then every RP of every disk
# is exported and compared with the image it was taken from (each run
# keeps a copy of the image it sent). Prints the runs, failures, the
# server's peak RSS (VmHWM) and the RSS bound of the issue (256 MiB) for
# the figure in RESULTS.md; exits 1 if any run failed or any RP differs.
# The machine has 2 cores: the agents share them with the server, so the
# figure that matters here is memory and correctness, not speed.
# BUILD=dir (default build-release), DIR=dir scratch (default /var/tmp).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD:-$root/build-release}
agents=${1:-64}
secs=${2:-300}
mib=${3:-16}
[ -d "$build" ] || meson setup "$build" "$root" --buildtype=release >/dev/null
ninja -C "$build" tools/bvault tools/bvaultd tools/bvault-agent >/dev/null
BV=$build/tools/bvault
BVD=$build/tools/bvaultd
BVA=$build/tools/bvault-agent
T=$(mktemp -d "${DIR:-/var/tmp}/bvsoak-XXXXXX")
SRV=
trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$T"' EXIT

"$BV" init "$T/s" >/dev/null
groups=()
for i in $(seq 1 "$agents"); do groups+=(--group "d$i"); done
"$BV" agent add "$T/s" soak "${groups[@]}" --secret-file "$T/key" >/dev/null
# One agent identity for every disk: its session and connection limits
# are raised to what the soak asks of it.
"$BVD" "$T/s" --listen 127.0.0.1:0 --max-connections 64 \
	--max-agent-sessions 16 --max-agent-connections 64 2>"$T/log" &
SRV=$!
port=
for _ in $(seq 1 300); do
	port=$(sed -n 's/.*listening on 127.0.0.1 port \([0-9]*\)$/\1/p' "$T/log")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { echo "soak.sh: bvaultd did not start" >&2; exit 1; }
fp=$("$BV" tls fingerprint "$T/s")

# One agent's loop: change 8 random 64 KiB blocks, back up, keep a copy
# of what was sent as img.RUN (the RP number is the run's, 1, 2, ...).
one() {
	local i=$1 end=$2 run=0 img=$T/d$1.img
	truncate -s "${mib}M" "$img"
	while [ "$(date +%s)" -lt "$end" ]; do
		for _ in 1 2 3 4 5 6 7 8; do
			head -c 65536 /dev/urandom | dd of="$img" bs=64K \
				seek=$((RANDOM % (mib * 16))) conv=notrunc \
				status=none
		done
		run=$((run + 1))
		if "$BVA" --server "127.0.0.1:$port" --fingerprint "$fp" \
			--name soak --secret-file "$T/key" \
			--disk "d$i=$img" --full >"$T/d$i.out" 2>&1; then
			cp "$img" "$img.$run"
		else
			echo "d$i run $run failed: $(tail -n 1 "$T/d$i.out")" \
				>>"$T/failures"
			run=$((run - 1))
		fi
	done
	echo "$run" >"$T/d$i.runs"
}

end=$(( $(date +%s) + secs ))
peak=0
for i in $(seq 1 "$agents"); do one "$i" "$end" & done
while [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
wait $(jobs -p | grep -v "^$SRV$") 2>/dev/null || true
peak=$(awk '/VmHWM/ { print $2 }' "/proc/$SRV/status")
kill -TERM "$SRV"; wait "$SRV" || true; SRV=

runs=0; bad=0
for i in $(seq 1 "$agents"); do
	n=$(cat "$T/d$i.runs" 2>/dev/null || echo 0)
	runs=$((runs + n))
	for r in $(seq 1 "$n"); do
		if ! "$BV" export "$T/s" "d$i@$r" "$T/x" >/dev/null 2>&1 ||
		   ! cmp -s "$T/x" "$T/d$i.img.$r"; then
			echo "d$i@$r differs from its image" >>"$T/failures"
			bad=$((bad + 1))
		fi
	done
	rm -f "$T"/d"$i".img.*
done
fails=$( [ -f "$T/failures" ] && wc -l <"$T/failures" || echo 0)
[ -f "$T/failures" ] && head -n 20 "$T/failures" >&2
printf 'soak: %d agents over TLS for %d s: %d runs, every RP exported and compared: %d differ, %d failures\n' \
	"$agents" "$secs" "$runs" "$bad" "$fails"
printf '%-56s %9.1f MiB %9.1f MiB %8.2fx\n' \
	"bvaultd peak RSS, $agents agents vs the 256 MiB bound" \
	"$(echo "$peak / 1024" | bc -l)" 256 "$(echo "$peak / 1024 / 256" | bc -l)"
[ "$fails" -eq 0 ]
