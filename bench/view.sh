#!/bin/sh
# view.sh [BUILD] [viewbench options]: random 4 KiB writes into a view
# (then one flush) against the same writes into a sparse file of the
# same size on the same disk (then one fdatasync), and their ratio.
# BUILD defaults to build/; options as viewbench's (--dir, --size MIB,
# --writes N, --rounds R). bench/RESULTS.md, "Views", keeps the figure.
set -eu
B=${1:-build}
[ $# -gt 0 ] && shift
exec "$B/bench/viewbench" "$@"
