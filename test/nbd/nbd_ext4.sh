#!/usr/bin/env bash
# nbd_ext4.sh: item-level restore through NBD. An ext4 image made with
# `mke2fs -t ext4 -d DIR` from a directory of files is ingested (RP 1),
# changed (files rewritten, one removed, one added: RP 2), served by the
# plugin, presented as a file by nbdfuse (FUSE), and read with debugfs:
# every file of each RP comes back bit for bit, and the file removed in
# RP 2 is still in RP 1. Skips without nbdfuse, FUSE, mke2fs or debugfs.
# Usage: nbd_ext4.sh BVAULT PLUGIN NBD_CLIENT
. "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin:/sbin
need nbdfuse fusermount3 mke2fs debugfs
if [ ! -c /dev/fuse ]; then
	echo "1..0 # SKIP no /dev/fuse"
	exit 0
fi
MNT=$T/mnt
mkdir -p "$MNT"
FUSED=0
cleanup_fuse() {
	[ "$FUSED" -eq 1 ] && fusermount3 -u "$MNT" 2>/dev/null
	FUSED=0
}
trap 'cleanup_fuse; rm -rf "$T"' EXIT

# A tree of files: text, random bytes over several extents, an empty
# file, a file in a subdirectory, one of 3 MiB.
D=$T/d
mkdir -p "$D/sub/deeper"
seq 1 5000 >"$D/numbers.txt"
head -c 300000 /dev/urandom >"$D/random.bin"
: >"$D/empty"
echo "deep file" >"$D/sub/deeper/note.txt"
head -c $((3 * 1048576)) /dev/urandom >"$D/sub/big.bin"
mke2fs -q -F -t ext4 -b 4096 -d "$D" "$T/fs1.img" 32M >"$T/out" 2>&1
ok $? "mke2fs -t ext4 -d makes a 32 MiB file system of the tree"
cp -r "$D" "$T/d1"

run_ok "init" "$BV" init "$S" || done_testing
"$BV" mkstream "$T/fs1.img" --replica fs --out "$T/s1" &&
	"$BV" ingest "$S" --rp --label tree1 "$T/s1" >/dev/null
ok $? "the image ingested as RP 1"

rm "$D/random.bin"
head -c 500000 /dev/urandom >"$D/sub/big.bin"
echo "added later" >"$D/added.txt"
mke2fs -q -F -t ext4 -b 4096 -d "$D" "$T/fs2.img" 32M >"$T/out" 2>&1
"$BV" mkstream "$T/fs2.img" --replica fs --base 1 --out "$T/s2" &&
	"$BV" ingest "$S" --rp --label tree2 "$T/s2" >/dev/null
ok $? "a changed tree ingested as RP 2"

start_nbdkit || done_testing

# mount_rp EXPORT: nbdfuse presents it as $MNT/disk.
mount_rp() {
	cleanup_fuse
	nbdfuse -r -P "$T/fuse.pid" "$MNT/disk" "$(uri "$1")" \
		>>"$T/fuse.log" 2>&1 &
	for _ in $(seq 1 300); do
		[ -s "$T/fuse.pid" ] && [ -e "$MNT/disk" ] && { FUSED=1; return 0; }
		sleep 0.1
	done
	sed 's/^/# /' "$T/fuse.log"
	return 1
}

# check_file IMAGE-IN-FUSE PATH WANT
check_file() {
	debugfs -R "cat /$2" "$1" >"$T/got" 2>"$T/dbg.err"
	cmp "$T/got" "$3" >&2
	ok $? "$4: /$2 reads back bit for bit"
}

rm -f "$T/fuse.pid"
if mount_rp fs@1; then
	ok 0 "nbdfuse presents fs@1 as a file"
	[ "$(stat -c %s "$MNT/disk")" -eq $((32 * 1048576)) ]
	ok $? "of 32 MiB"
	for f in numbers.txt random.bin empty sub/deeper/note.txt sub/big.bin; do
		check_file "$MNT/disk" "$f" "$T/d1/$f" "RP 1"
	done
	debugfs -R "ls -l /" "$MNT/disk" >"$T/ls" 2>&1
	grep -q random.bin "$T/ls" && ! grep -q added.txt "$T/ls"
	ok $? "RP 1's root has random.bin and not added.txt"
	cleanup_fuse
else
	ok 1 "nbdfuse presents fs@1 as a file"
fi
rm -f "$T/fuse.pid"
if mount_rp fs@latest; then
	for f in numbers.txt added.txt sub/deeper/note.txt sub/big.bin; do
		check_file "$MNT/disk" "$f" "$D/$f" "RP 2 (fs@latest)"
	done
	debugfs -R "ls -l /" "$MNT/disk" >"$T/ls" 2>&1
	! grep -q random.bin "$T/ls"
	ok $? "RP 2's root has no random.bin"
	cleanup_fuse
else
	ok 1 "nbdfuse presents fs@latest as a file"
fi
stop_nbdkit
done_testing
