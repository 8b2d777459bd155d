#!/bin/sh
# smoke.sh BVBENCH: a tiny bvbench run; fails unless it exits 0 and prints
# the SUMMARY line with its figures.
set -eu
out=$("$1" --size 64M --versions 3 --chunk-size 64K 2>&1) || {
	printf '%s\n' "$out"
	echo "bvbench failed" >&2
	exit 1
}
printf '%s\n' "$out"
printf '%s\n' "$out" | grep -q '^SUMMARY {.*"full_vs_lz4":[0-9.]*' || {
	echo "no SUMMARY line" >&2
	exit 1
}
