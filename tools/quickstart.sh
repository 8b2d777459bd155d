#!/usr/bin/env bash
# quickstart.sh: from a fresh clone to a checked bvault.
#
#   1. installs the build dependencies that are missing (apt-get; needs
#      root or sudo),
#   2. builds into build/ (meson + ninja),
#   3. makes a store and a disk image with text, random data, repeated
#      blocks and zero holes; ingests it as a full with an RP; changes it
#      twice, each time sending only the changed extents as an express
#      full (mkstream --extents --base <latest RP>) with an RP,
#   4. exports RP 1 and the latest RP and compares them with copies of
#      the images they came from,
#   5. prints logical vs stored bytes, the dedup and compression ratios
#      and the ingest and export throughput it measured.
#
# Options: --size MIB (image size, default 256, a multiple of 16),
# --build-dir DIR (default build), --no-install, --keep (keep the work
# directory). Exits non-zero with a message on any failure.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MIB=256
BUILD=build
INSTALL=1
KEEP=0
# What the build needs (meson.build); libnbd-bin and qemu-utils as the
# README lists, for bvault-agent's NBD sources.
PKGS=(build-essential meson ninja-build pkg-config liburing-dev
	libxxhash-dev liblz4-dev librocksdb-dev libsodium-dev libnbd-dev
	libnbd-bin qemu-utils)

die() {
	echo "quickstart: $*" >&2
	exit 1
}
say() { echo "quickstart: $*"; }

while [ $# -gt 0 ]; do
	case $1 in
	--size) SIZE_MIB=${2:?--size needs a value}; shift 2 ;;
	--build-dir) BUILD=${2:?--build-dir needs a value}; shift 2 ;;
	--no-install) INSTALL=0; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
done
case $SIZE_MIB in
'' | *[!0-9]*) die "--size '$SIZE_MIB': a number of MiB" ;;
esac
[ "$SIZE_MIB" -ge 16 ] && [ $((SIZE_MIB % 16)) -eq 0 ] ||
	die "--size $SIZE_MIB: at least 16 and a multiple of 16"

# ---- 1. dependencies -------------------------------------------------------
install_missing() {
	local missing=() p sudo=()
	if ! command -v dpkg >/dev/null 2>&1; then
		say "no dpkg: not a Debian system; install ${PKGS[*]} yourself"
		return 0
	fi
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 ||
			die "missing packages ${missing[*]}: run as root or install sudo"
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null 2>&1 ||
		die "missing packages ${missing[*]} and no apt-get"
	say "installing ${missing[*]}"
	"${sudo[@]}" apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"
}
[ "$INSTALL" -eq 1 ] && install_missing "${PKGS[@]}"

# ---- 2. build ------------------------------------------------------------------
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" >"$ROOT/.quickstart-setup.log" 2>&1 || {
		tail -n 30 "$ROOT/.quickstart-setup.log" >&2
		die "meson setup $BUILD failed (log: .quickstart-setup.log)"
	}
	rm -f "$ROOT/.quickstart-setup.log"
fi
ninja -C "$BUILD" >/dev/null || die "build failed: run 'ninja -C $BUILD' to see why"
case $BUILD in
/*) BV=$BUILD/tools/bvault ;;
*) BV=$ROOT/$BUILD/tools/bvault ;;
esac
[ -x "$BV" ] || die "$BV was not built"
say "built $BV ($("$BV" --version))"

# ---- 3. store, image, full and two express fulls ---------------------------
W=$(mktemp -d "${TMPDIR:-/tmp}/bvault-quickstart.XXXXXX")
cleanup() {
	local rc=$?
	if [ $rc -ne 0 ] || [ "$KEEP" -eq 1 ]; then
		echo "quickstart: work directory kept: $W" >&2
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
S=$W/store
IMG=$W/disk.img
MIB=1048576
SIZE=$((SIZE_MIB * MIB))
U=$((SIZE / 16)) # layout unit

now() { date +%s.%N; }
rate() { awk -v b="$1" -v t0="$2" -v t1="$3" \
	'BEGIN { t = t1 - t0; if (t <= 0) t = 1e-6; printf "%.0f MiB/s", b / 1048576 / t }'; }

# write FILE OFF: stdin at byte OFF of FILE, keeping its size.
write_at() {
	dd of="$1" bs=1M seek="$2" oflag=seek_bytes conv=notrunc \
		iflag=fullblock status=none
}
# text LEN FIRST: LEN bytes of numbered log lines (compressible, unique);
# a subshell without pipefail, as head stops its writers early.
text() (
	set +o pipefail
	seq "$2" $(($2 + $1 / 48)) |
		sed 's/.*/& 2024-05-01T12:00:00Z backup job ok, bytes moved/' |
		head -c "$1"
)

"$BV" init "$S" >/dev/null || die "bvault init failed"
truncate -s "$SIZE" "$IMG"
# Layout in sixteenths: 0-3 text, 4-6 random, 7-9 one 1 MiB block
# repeated (dedup), 10-15 a zero hole with a little text at 12.
text $((4 * U)) 1 | write_at "$IMG" 0
head -c $((3 * U)) /dev/urandom | write_at "$IMG" $((4 * U))
head -c $MIB /dev/urandom >"$W/block"
for _ in $(seq 1 $((3 * U / MIB))); do cat "$W/block"; done |
	write_at "$IMG" $((7 * U))
text $((U / 4)) 9000000 | write_at "$IMG" $((12 * U))
cp --sparse=always "$IMG" "$W/v1.img"
say "image: $SIZE_MIB MiB (text, random, repeated blocks, zero hole)"

t0=$(now)
"$BV" mkstream "$IMG" --replica disk0 --out "$W/full.bvs" ||
	die "mkstream of the full failed"
out=$("$BV" ingest "$S" --rp --label full "$W/full.bvs") || die "ingest of the full failed"
t1=$(now)
rp=$(echo "$out" | sed -n 's/.*RP \([0-9]*\)$/\1/p')
[ "$rp" = 1 ] || die "the full made '$out', not RP 1"
ingest_rate=$(rate "$SIZE" "$t0" "$t1")
say "full ingested: RP 1 ($ingest_rate, mkstream + ingest)"

# change N: writes the extents, lists them, sends them as an express
# full based on the latest RP, which must make RP N+1.
change() {
	local n=$1 ext=$W/ext$1
	: >"$ext"
	shift
	while [ $# -gt 0 ]; do
		local off=$1 len=$2 kind=$3
		shift 3
		case $kind in
		random) head -c "$len" /dev/urandom | write_at "$IMG" "$off" ;;
		zero) head -c "$len" /dev/zero | write_at "$IMG" "$off" ;;
		text) text "$len" $((off / 512)) | write_at "$IMG" "$off" ;;
		esac
		echo "$off $len" >>"$ext"
	done
	"$BV" mkstream "$IMG" --replica disk0 --base "$n" --extents "$ext" \
		--out "$W/x$n.bvs" || die "mkstream of change $n failed"
	out=$("$BV" ingest "$S" --rp --label "change $n" "$W/x$n.bvs") ||
		die "ingest of change $n failed"
	rp=$(echo "$out" | sed -n 's/.*RP \([0-9]*\)$/\1/p')
	[ "$rp" = $((n + 1)) ] || die "change $n made '$out', not RP $((n + 1))"
	say "change $n ingested: RP $rp ($(wc -l <"$ext") extents, $(stat -c %s "$W/x$n.bvs") stream bytes)"
}
change 1 \
	$((1 * U)) $MIB random \
	$((5 * U + 4096)) 8192 random \
	$((8 * U)) $((2 * MIB)) zero \
	$((11 * U)) $MIB text
cp --sparse=always "$IMG" "$W/v2.img"
change 2 \
	512 1024 random \
	$((5 * U)) $MIB text \
	$((13 * U)) $((3 * MIB)) random \
	$((SIZE - 65536)) 65536 random
cp --sparse=always "$IMG" "$W/v3.img"

# ---- 4. exports --------------------------------------------------------------
"$BV" export "$S" disk0@1 "$W/rp1.img" || die "export of RP 1 failed"
cmp "$W/rp1.img" "$W/v1.img" || die "RP 1 differs from the image it came from"
t0=$(now)
"$BV" export "$S" disk0@latest "$W/latest.img" || die "export of the latest RP failed"
t1=$(now)
cmp "$W/latest.img" "$W/v3.img" || die "the latest RP differs from the image it came from"
export_rate=$(rate "$SIZE" "$t0" "$t1")
say "exports of RP 1 and RP 3 match their images"

# ---- 5. summary --------------------------------------------------------------
stats=$("$BV" stats "$S" --json) || die "bvault stats failed"
field() { echo "$stats" | sed -n "s/^ *\"$1\": \\([0-9.null]*\\),\\{0,1\\}$/\\1/p"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
cat <<EOF

bvault quickstart: OK
  image              $SIZE_MIB MiB, a full and 2 express fulls: RPs 1..3
  logical            $(mib "$(field logical_bytes)") (sum of replica sizes)
  ingested           $(mib "$(field ingested_bytes)") (non-zero chunk bytes committed)
  unique (raw)       $(mib "$(field raw_bytes)")
  stored             $(mib "$(field stored_bytes)")
  dedup ratio        $(field dedup_ratio) (ingested / unique raw)
  compression ratio  $(field compression_ratio) (unique raw / stored)
  ingest (full)      $ingest_rate (mkstream + ingest of the $SIZE_MIB MiB image)
  export (latest)    $export_rate
EOF
