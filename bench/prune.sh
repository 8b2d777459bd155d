#!/bin/sh
# prune.sh [BUILD] [prunebench options]: the time of one rp rm and the
# map entries it deletes and births keys it walks, on two replicas 4x
# apart in size with the same small change per RP: all three must follow
# what the RP changed, not the replica's size (ratios about 1).
# BUILD defaults to build/; options as prunebench's (--dir DIR, --chunks
# N of 64 KiB for the small one, --rps R, --change C). bench/RESULTS.md,
# "Prune", keeps the figures.
set -eu
B=${1:-build}
[ $# -gt 0 ] && shift
exec "$B/bench/prunebench" "$@"
