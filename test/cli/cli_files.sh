#!/usr/bin/env bash
# cli_files.sh: bvault files ls/get, single files out of an RP, on disks
# made with the real tools: an ext4 file system made by mke2fs -d from a
# tree (nested directories, a file of a few MiB, a sparse file, a file of
# odd size, an empty file, a symlink, a non-ASCII name) in a GPT disk
# (sgdisk), on a whole disk and in an MBR disk (sgdisk --gpttombr); an
# NTFS file system made by mkntfs with files copied in by ntfscp (ntfs-3g
# makes no directory without a mount) in a GPT disk beside an unformatted
# partition, and in the MBR disk. Each is ingested; files ls lists the
# tree and files get returns every file bit for bit. Then every refusal:
# an unknown file system, a damaged superblock, damaged GPT headers, a
# partition number out of range, a path that does not exist, a directory
# given to get, an OUT that exists, bad REPLICA@RP arguments; and the
# sandbox: as root the reader runs as uid 65534 in a network namespace of
# its own, always with no-new-privs, no capabilities and seccomp on; a
# forbidden system call kills it, and so does kill -9 mid-get, each with
# a clean error naming the partition. The store is unchanged by all of it.
. "$(dirname "$0")/lib.sh"

for t in mke2fs mkntfs ntfscp sgdisk; do
	if ! command -v $t >/dev/null 2>&1 &&
		! [ -x "/usr/sbin/$t" ] && ! [ -x "/sbin/$t" ]; then
		echo "1..0 # SKIP $t is not installed"
		exit 77
	fi
done
PATH=$PATH:/usr/sbin:/sbin
if ! [ -x "$(dirname "$BV")/bvault-fsread" ] && [ -z "${BVAULT_FSREAD:-}" ]; then
	echo "1..0 # SKIP bvault-fsread was not built (libext2fs-dev, ntfs-3g-dev)"
	exit 77
fi

S=$T/store
SRC=$T/src
run_ok "init" "$BV" init "$S" || done_testing

# ---- the trees -------------------------------------------------------------
mkdir -p "$SRC/dir/sub/deeper" "$SRC/empty dir"
head -c 3145728 /dev/urandom >"$SRC/big.bin"
truncate -s 6M "$SRC/sparse.img"
echo "data in the middle" | dd of="$SRC/sparse.img" bs=1 seek=1048576 conv=notrunc status=none
echo "data near the end" | dd of="$SRC/sparse.img" bs=1 seek=5242887 conv=notrunc status=none
head -c 12345 /dev/urandom >"$SRC/odd.dat"
: >"$SRC/empty"
echo "hello from deep inside" >"$SRC/dir/sub/hello.txt"
head -c 70001 /dev/urandom >"$SRC/dir/sub/deeper/leaf.bin"
printf 'Gr\303\274\303\237e, sn\342\230\203w\n' >"$SRC/gr$(printf '\303\274\303\237')e $(printf '\342\230\203').txt"
UNAME="gr$(printf '\303\274\303\237')e $(printf '\342\230\203').txt"
ln -s dir/sub/hello.txt "$SRC/link"
chmod 0640 "$SRC/odd.dat"
mkdir "$SRC/many"
for i in $(seq 1 300); do echo "$i" >"$SRC/many/f$i"; done
mkdir "$T/src-extra"
mkfifo "$T/src-extra/fifo"
ln -s loop2 "$T/src-extra/loop1"
ln -s loop1 "$T/src-extra/loop2"
# Names a terminal must not see raw: an escape sequence, a C1 control
# (U+009B, CSI), a byte that is not UTF-8.
: >"$T/src-extra/$(printf '\033[31mred')"
: >"$T/src-extra/$(printf 'c1\302\233x')"
: >"$T/src-extra/$(printf 'bad\377')"

mke2fs -q -F -t ext4 -L bvtest -d "$SRC" "$T/ext.img" 32M >/dev/null 2>&1
ok $? "mke2fs -t ext4 -d makes the ext4 image"
# A FIFO, a symlink loop, and a journal marked as needing recovery (as in
# a crash-consistent RP), in an ext4 of their own.
mke2fs -q -F -t ext4 -d "$T/src-extra" "$T/extra.img" 8M >/dev/null 2>&1 &&
	debugfs -w -R "feature needs_recovery" "$T/extra.img" >/dev/null 2>&1
ok $? "an ext4 with a FIFO, a symlink loop and a journal to replay"

mkntfs -q -F -Q -L bvntfs "$T/ntfs.img" >/dev/null 2>&1 ||
	{ truncate -s 24M "$T/ntfs.img" && mkntfs -q -F -Q -L bvntfs "$T/ntfs.img" >/dev/null 2>&1; }
ok $? "mkntfs makes the NTFS image"
NTFS_FILES="big.bin odd.dat sparse.img empty"
bad=0
for f in $NTFS_FILES; do
	ntfscp -q -f "$T/ntfs.img" "$SRC/$f" "$f" >/dev/null 2>&1 || bad=1
done
ntfscp -q -f "$T/ntfs.img" "$SRC/$UNAME" "$UNAME" >/dev/null 2>&1 || bad=1
for i in $(seq 1 60); do
	ntfscp -q -f "$T/ntfs.img" "$SRC/many/f$i" "n$i" >/dev/null 2>&1 || bad=1
done
ok $bad "ntfscp copies the files in"

# Writes image $2 into disk $1 at sector $3.
put() {
	dd if="$2" of="$1" bs=512 seek="$3" conv=notrunc status=none
}

# Ingests disk image $2 as replica $1, RP 1.
ingest() {
	"$BV" mkstream "$2" --replica "$1" --out "$T/$1.bvs" >/dev/null 2>&1 &&
		"$BV" ingest "$S" --rp "$T/$1.bvs" >/dev/null 2>&1
}

# ext4 alone in a GPT disk.
truncate -s 40M "$T/gpt-ext.img"
sgdisk -n 1:2048:+32M -t 1:8300 -c 1:root "$T/gpt-ext.img" >/dev/null 2>&1 &&
	put "$T/gpt-ext.img" "$T/ext.img" 2048
ok $? "a GPT disk with the ext4 file system in partition 1"
# NTFS in partition 2 of a GPT disk, partition 1 unformatted.
NTS=$(($(stat -c %s "$T/ntfs.img") / 512))
truncate -s $(((NTS + 2048 + 4096 + 100) * 512)) "$T/gpt-ntfs.img"
sgdisk -n 1:2048:+1M -t 1:ef02 -n 2:4096:+$((NTS))s -t 2:0700 \
	"$T/gpt-ntfs.img" >/dev/null 2>&1 && put "$T/gpt-ntfs.img" "$T/ntfs.img" 4096
ok $? "a GPT disk with NTFS in partition 2, beside an unformatted one"
# Both in an MBR disk.
truncate -s $(((69632 + NTS + 100) * 512)) "$T/mbr.img"
sgdisk -n 1:2048:+32M -t 1:8300 -n 2:69632:+$((NTS))s -t 2:0700 \
	"$T/mbr.img" >/dev/null 2>&1 && sgdisk -m 1:2 "$T/mbr.img" >/dev/null 2>&1 &&
	put "$T/mbr.img" "$T/ext.img" 2048 && put "$T/mbr.img" "$T/ntfs.img" 69632
[ "$(od -An -tx1 -j 450 -N1 "$T/mbr.img" | tr -d ' ')" = 83 ]
ok $? "an MBR disk (sgdisk --gpttombr) with ext4 in 1 and NTFS in 2"
# ext4 in logical partition 5 of an MBR: the extended partition (type
# 0x05) at sector 2048, its EBR naming a Linux partition 2048 sectors on.
# Writes 16-byte MBR entry $3 (type $4, LBA $5, count $6) of the sector
# at byte $2 of $1, and the boot signature.
mbr_ent() {
	local fmt v
	fmt=$(printf '\\x00\\x00\\x00\\x00\\x%02x\\x00\\x00\\x00' "$4")
	for v in "$5" "$6"; do
		fmt=$fmt$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((v & 255)) \
			$((v >> 8 & 255)) $((v >> 16 & 255)) $((v >> 24 & 255)))
	done
	# shellcheck disable=SC2059
	printf "$fmt\\x55\\xaa" >"$T/ent"
	dd if="$T/ent" of="$1" bs=1 seek=$(($2 + 446 + 16 * $3)) count=16 conv=notrunc status=none &&
		dd if="$T/ent" of="$1" bs=1 skip=16 seek=$(($2 + 510)) count=2 conv=notrunc status=none
}
truncate -s 40M "$T/logical.img"
mbr_ent "$T/logical.img" 0 0 5 2048 67584 &&
	mbr_ent "$T/logical.img" $((2048 * 512)) 0 0x83 2048 65536 &&
	put "$T/logical.img" "$T/ext.img" 4096
ok $? "an MBR disk with ext4 in logical partition 5 (hand-made EBR)"
# Damaged ones: random bytes in the partition; an ext4 superblock with an
# impossible block size (magic kept); garbage behind an NTFS signature.
cp "$T/gpt-ext.img" "$T/gpt-junk.img"
head -c 4194304 /dev/urandom | dd of="$T/gpt-junk.img" bs=512 seek=2048 conv=notrunc status=none
cp "$T/gpt-ext.img" "$T/gpt-badsb.img"
set_byte "$T/gpt-badsb.img" $((2048 * 512 + 1024 + 24)) 99
cp "$T/gpt-ntfs.img" "$T/gpt-badntfs.img"
head -c 400 /dev/urandom | dd of="$T/gpt-badntfs.img" bs=1 seek=$((4096 * 512 + 11)) conv=notrunc status=none
# GPT with the primary header damaged (the backup is good), and both.
cp "$T/gpt-ext.img" "$T/gpt-prim.img"
flip_byte "$T/gpt-prim.img" $((512 + 40))
cp "$T/gpt-prim.img" "$T/gpt-both.img"
flip_byte "$T/gpt-both.img" $(($(stat -c %s "$T/gpt-both.img") - 512 + 40))

bad=0
ingest vmext "$T/gpt-ext.img" || bad=1
ingest vmntfs "$T/gpt-ntfs.img" || bad=1
ingest vmmbr "$T/mbr.img" || bad=1
ingest vmwhole "$T/ext.img" || bad=1
ingest vmjunk "$T/gpt-junk.img" || bad=1
ingest vmbadsb "$T/gpt-badsb.img" || bad=1
ingest vmbadntfs "$T/gpt-badntfs.img" || bad=1
ingest vmprim "$T/gpt-prim.img" || bad=1
ingest vmextra "$T/extra.img" || bad=1
ingest vmlogical "$T/logical.img" || bad=1
ingest vmntwhole "$T/ntfs.img" || bad=1
ingest vmboth "$T/gpt-both.img" || bad=1
ok $bad "every disk ingested"
snapshot "$S" before
# Every file of the store, with its size, mtime and mode: reading writes
# nothing.
store_files() {
	find "$S" -printf '%P %y %s %T@ %m\n' | LC_ALL=C sort
}
store_files >"$T/files-before"

# ---- ext4 --------------------------------------------------------------------
run_ok "files ls of the root (ext4, GPT, partition found alone)" \
	"$BV" files ls "$S" vmext@1
cp "$T/out" "$T/ls-root"
bad=0
for want in 'dir +0755 .* dir/$' 'file +0644 +3145728 .* big\.bin$' \
	'file +0644 +6291456 .* sparse\.img$' 'file +0640 +12345 .* odd\.dat$' \
	'file +0644 +0 .* empty$' 'symlink .* link -> dir/sub/hello\.txt$' \
	"file .* $UNAME\$" 'dir .* lost\+found/$' 'dir .* empty dir/$'; do
	grep -Eq -- "$want" "$T/ls-root" || { bad=1; diag "no line /$want/"; }
done
ok $bad "files ls shows names, types, modes and sizes"
grep -Eq '20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z' "$T/ls-root"
ok $? "files ls shows mtimes"
sed 's/.*  //' "$T/ls-root" | LC_ALL=C sort -c
ok $? "entries come sorted by name"
run_ok "files ls --json" "$BV" files ls "$S" vmext@1 / --json
cp "$T/out" "$T/ls.json"
json_ok "$T/ls.json"; ok $? "files ls --json is valid JSON"
python3 - "$T/ls.json" "$UNAME" <<'EOF'
import json, sys
v = {e["name"]: e for e in json.load(open(sys.argv[1]))}
assert v["big.bin"]["type"] == "file" and v["big.bin"]["size"] == 3145728
assert v["dir"]["type"] == "dir"
assert v["link"]["type"] == "symlink" and v["link"]["target"] == "dir/sub/hello.txt"
assert v["odd.dat"]["mode"] == 0o640 and isinstance(v["odd.dat"]["mtime"], int)
assert sys.argv[2] in v
EOF
ok $? "files ls --json: names (non-ASCII too), types, sizes, modes, targets"
run_ok "files ls of a nested directory" "$BV" files ls "$S" vmext@1 /dir/sub
grep -q ' hello\.txt$' "$T/out" && grep -q ' deeper/$' "$T/out"
ok $? "the nested listing shows the file and the directory"
run_ok "files ls of a deeper one, path without a leading /" \
	"$BV" files ls "$S" vmext@1 dir/sub/deeper
grep -q 'file .* 70001 .* leaf\.bin$' "$T/out"; ok $? "its file is there"
run_ok "files ls of a directory of 300 files" "$BV" files ls "$S" vmext@1 /many
[ "$(wc -l <"$T/out")" -eq 300 ] && sed 's/.*  //' "$T/out" | LC_ALL=C sort -c
ok $? "all 300, sorted"
run_ok "files ls of a file" "$BV" files ls "$S" vmext@1 /dir/sub/hello.txt
[ "$(wc -l <"$T/out")" -eq 1 ] && grep -q ' hello\.txt$' "$T/out"
ok $? "a file lists as its one entry"

bad=0
for f in big.bin sparse.img odd.dat empty dir/sub/hello.txt \
	dir/sub/deeper/leaf.bin "$UNAME"; do
	o=$T/got-$(echo "$f" | tr '/ ' '__')
	if ! "$BV" files get "$S" vmext@1 "/$f" "$o" 2>"$T/err"; then
		bad=1; diag "get $f failed: $(cat "$T/err")"
	elif ! cmp -s "$o" "$SRC/$f"; then
		bad=1; diag "$f differs"
	fi
done
ok $bad "files get returns every ext4 file bit for bit"
[ "$(stat -c %a "$T/got-big.bin")" = 600 ]; ok $? "OUT is created 0600"
[ "$(du -k "$T/got-sparse.img" | cut -f1)" -lt 1024 ]
ok $? "the sparse file stays sparse in OUT"
run_ok "files get of a symlink follows it" "$BV" files get "$S" vmext@1 /link "$T/got-link"
cmp -s "$T/got-link" "$SRC/dir/sub/hello.txt"; ok $? "the link's target's bytes"
"$BV" files get "$S" vmext@1 /big.bin - 2>"$T/err" | cmp -s - "$SRC/big.bin"
ok $? "files get to stdout ('-')"
run_ok "a whole-disk ext4 (no table)" "$BV" files get "$S" vmwhole@1 /odd.dat "$T/got-whole"
cmp -s "$T/got-whole" "$SRC/odd.dat"; ok $? "its file, bit for bit"

# ---- NTFS ------------------------------------------------------------------------
run_ok "files ls of NTFS (GPT partition 2, found as the only file system)" \
	"$BV" files ls "$S" vmntfs@1
bad=0
for f in $NTFS_FILES "$UNAME"; do
	grep -q "  $f\$" "$T/out" || { bad=1; diag "no $f"; }
done
grep -q '\$MFT' "$T/out" && { bad=1; diag "system files listed"; }
[ "$(grep -c '  n[0-9]*$' "$T/out")" -eq 60 ] || { bad=1; diag "not 60 n* files"; }
ok $bad "the NTFS listing shows every file and no system file"
grep -Eq 'file +0644 +3145728 ' "$T/out"; ok $? "with its size"
run_ok "files ls --json of NTFS" "$BV" files ls "$S" vmntfs@1:2 --json
json_ok "$T/out"; ok $? "valid JSON"
bad=0
for f in $NTFS_FILES "$UNAME"; do
	rm -f "$T/got"
	if ! "$BV" files get "$S" vmntfs@latest "$f" "$T/got" 2>"$T/err"; then
		bad=1; diag "get $f failed: $(cat "$T/err")"
	elif ! cmp -s "$T/got" "$SRC/$f"; then
		bad=1; diag "$f differs"
	fi
done
ok $bad "files get returns every NTFS file bit for bit"

run_ok "a whole-disk NTFS (no table)" "$BV" files get "$S" vmntwhole@1 /odd.dat "$T/got-ntwhole"
cmp -s "$T/got-ntwhole" "$SRC/odd.dat"; ok $? "its file, bit for bit"

# ---- MBR -------------------------------------------------------------------------
run_fail "MBR with two file systems: ls asks which" 1 \
	'vmmbr@1: 2 partitions hold a file system; name one as vmmbr@1:N' \
	"$BV" files ls "$S" vmmbr@1
grep -q '1 .*ext2/3/4' "$T/err" && grep -q '2 .*NTFS' "$T/err"
ok $? "and lists them"
run_ok "MBR partition 1 (ext4)" "$BV" files get "$S" vmmbr@1:1 /dir/sub/deeper/leaf.bin "$T/got-m1"
cmp -s "$T/got-m1" "$SRC/dir/sub/deeper/leaf.bin"; ok $? "bit for bit"
run_ok "MBR partition 2 (NTFS)" "$BV" files get "$S" vmmbr@1:2 /odd.dat "$T/got-m2"
cmp -s "$T/got-m2" "$SRC/odd.dat"; ok $? "bit for bit"

run_ok "MBR logical partition 5, found alone" "$BV" files get "$S" vmlogical@1 /odd.dat "$T/got-l5"
cmp -s "$T/got-l5" "$SRC/odd.dat"; ok $? "bit for bit"
run_ok "and named" "$BV" files ls "$S" vmlogical@1:5 /dir/sub

# ---- refusals --------------------------------------------------------------------
run_fail "partition out of range" 1 'vmmbr@1 partition 3: no such partition' \
	"$BV" files ls "$S" vmmbr@1:3
run_fail "partition 0" 2 "bad partition '0'" "$BV" files ls "$S" vmmbr@1:0
run_fail "partition not a number" 2 "bad partition 'x'" "$BV" files ls "$S" vmmbr@1:x
run_fail "a partition on a disk without a table" 1 \
	'vmwhole@1 partition 1: the disk has no partition table' \
	"$BV" files ls "$S" vmwhole@1:1
run_fail "unknown file system" 1 \
	'vmjunk@1 partition 1: no ext2/3/4 or NTFS file system' \
	"$BV" files ls "$S" vmjunk@1
run_fail "damaged ext4 superblock" 1 \
	'vmbadsb@1 partition 1: ext2/3/4 file system does not open' \
	"$BV" files ls "$S" vmbadsb@1
run_fail "damaged NTFS boot sector" 1 \
	'vmbadntfs@1 partition 2: NTFS file system does not mount' \
	"$BV" files ls "$S" vmbadntfs@1:2
run_ok "primary GPT header damaged: the backup is used" "$BV" files ls "$S" vmprim@1
grep -q 'warning: vmprim@1: primary GPT header damaged (header CRC32 mismatch): using the backup' "$T/err"
ok $? "with a warning"
run_fail "both GPT headers damaged" 1 \
	'vmboth@1: GPT partition table damaged: primary header: header CRC32 mismatch; backup header: header CRC32 mismatch' \
	"$BV" files ls "$S" vmboth@1
run_fail "ls of a path that does not exist" 1 \
	'vmext@1 partition 1: /no/such: no such file or directory' \
	"$BV" files ls "$S" vmext@1 /no/such
run_fail "get of a path that does not exist" 1 \
	'vmext@1 partition 1: /nope\.txt: no such file' \
	"$BV" files get "$S" vmext@1 /nope.txt "$T/nope"
[ ! -e "$T/nope" ]; ok $? "and no OUT is left"
run_fail "NTFS path that does not exist" 1 \
	'vmntfs@1 partition 2: /nope: no such file' \
	"$BV" files get "$S" vmntfs@1 /nope "$T/nope"
run_fail "get of a directory" 1 'vmext@1 partition 1: /dir: is a directory' \
	"$BV" files get "$S" vmext@1 /dir "$T/dirout"
[ ! -e "$T/dirout" ]; ok $? "and no OUT is made"
run_fail "get of a FIFO" 1 'vmextra@1 \(whole disk\): /fifo: is a FIFO' \
	"$BV" files get "$S" vmextra@1 /fifo "$T/fifo-out"
[ ! -e "$T/fifo-out" ]; ok $? "and no OUT is made"
run_fail "get of a symlink loop" 1 'vmextra@1 \(whole disk\): /loop1: no such file \(.*symbolic links' \
	"$BV" files get "$S" vmextra@1 /loop1 "$T/loop-out"
run_ok "ls of an ext4 whose journal was not replayed" "$BV" files ls "$S" vmextra@1
grep -q 'warning: vmextra@1 (whole disk): the ext journal was not replayed' "$T/err" &&
	grep -q '^fifo .* fifo$' "$T/out" && grep -q 'loop1 -> loop2$' "$T/out"
ok $? "lists it, with a warning"
grep -q '  ?\[31mred$' "$T/out" && grep -q '  c1?x$' "$T/out" &&
	grep -q '  bad?$' "$T/out" && ! grep -q "$(printf '\033')" "$T/out"
ok $? "names with control bytes or bad UTF-8 are shown with '?'"
run_ok "and in JSON" "$BV" files ls "$S" vmextra@1 --json
json_ok "$T/out" && grep -q '"\\u001b\[31mred"' "$T/out" &&
	grep -q '"bad\\ufffd"' "$T/out"
ok $? "escaped in JSON"
echo keep >"$T/exists"
run_fail "an OUT that exists" 1 "$T/exists: exists; refusing to overwrite" \
	"$BV" files get "$S" vmext@1 /big.bin "$T/exists"
[ "$(cat "$T/exists")" = keep ]; ok $? "and it is left as it was"
run_fail "REPLICA@RP without @" 2 "bad REPLICA@RP 'vmext': no '@'" \
	"$BV" files ls "$S" vmext
run_fail "RP not a number" 2 "RP must be a number" "$BV" files ls "$S" vmext@x
run_fail "no such replica" 1 'nosuch' "$BV" files ls "$S" nosuch@1
run_fail "no such RP" 1 'no recovery point 9' "$BV" files ls "$S" vmext@9
run_fail "missing PATH and OUT of get" 2 'missing PATH' "$BV" files get "$S" vmext@1
run_fail "unknown option" 2 "unknown option '--nope'" "$BV" files ls "$S" vmext@1 --nope
run_fail "not a store" 1 'not a bvault store|no store|not found' \
	"$BV" files ls "$T/src" vmext@1
BVAULT_FSREAD=$T/no-reader run_fail "a missing reader named by BVAULT_FSREAD" 1 \
	"BVAULT_FSREAD=$T/no-reader: No such file" "$BV" files ls "$S" vmext@1
run_ok "files ls --help" "$BV" files ls --help
grep -q 'usage: bvault files ls' "$T/out"; ok $? "shows the usage"

# ---- the sandbox -------------------------------------------------------------------
BVAULT_FILES_REPORT_SANDBOX=1 run_ok "the reader reports its sandbox" \
	"$BV" files ls "$S" vmext@1 /dir
bad=0
for want in 'Seccomp: 2' 'NoNewPrivs: 1' 'CapEff: 0000000000000000'; do
	grep -q "sandbox: .*$want" "$T/err" || { bad=1; diag "no '$want'"; }
done
ok $bad "seccomp filter on, no-new-privs, no capabilities"
if [ "$(id -u)" -eq 0 ]; then
	grep -q 'Uid: 65534 65534 65534 65534; Gid: 65534 65534 65534 65534; Groups: *;' "$T/err"
	ok $? "started as root, it runs as uid and gid 65534 without groups"
	ns=$(sed -n 's/.*NetNs: \(net:\[[0-9]*\]\).*/\1/p' "$T/err")
	[ -n "$ns" ] && [ "$ns" != "$(readlink /proc/self/ns/net)" ]
	ok $? "in a network namespace of its own ($ns)"
else
	skip "uid 65534 when started as root" "not root"
	skip "a network namespace of its own" "not root"
fi
# Not root: a user who may only read a copy of the store. The reader
# cannot drop ids or enter a namespace then, and its filter is the same.
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1 &&
	command -v setpriv >/dev/null 2>&1; then
	cp -a "$S" "$T/pub"
	chmod -R go+rX "$T/pub"
	chmod -R go-w "$T/pub"
	chmod 711 "$T"
	mkdir "$T/nb"
	chown nobody "$T/nb"
	AS=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)"
		--clear-groups env TMPDIR="$T/nb" BVAULT_FILES_REPORT_SANDBOX=1)
	if "${AS[@]}" "$BV" --version >/dev/null 2>&1; then
		run_ok "as nobody: files get" "${AS[@]}" "$BV" files get "$T/pub" \
			vmntfs@1 /big.bin "$T/nb/big.bin"
		cmp -s "$T/nb/big.bin" "$SRC/big.bin"; ok $? "as nobody: bit for bit"
		grep -q 'sandbox: .*NoNewPrivs: 1; Seccomp: 2' "$T/err"
		ok $? "as nobody: no-new-privs and seccomp on"
	else
		skip "as nobody" "nobody cannot run $BV"
	fi
	chmod 700 "$T"
else
	skip "as nobody" "needs root, a user nobody and setpriv"
fi
BVAULT_FILES_TEST_SYSCALL=1 run_fail "a forbidden system call kills the reader" 1 \
	'vmext@1 partition 1: the file-system reader was killed by signal 31' \
	"$BV" files ls "$S" vmext@1

# kill -9 of the reader mid-get: its answer pipe fills while stdout (a
# FIFO read a little) blocks, so it is caught in the middle of the file.
mkfifo "$T/fifo"
"$BV" files get "$S" vmext@1 /big.bin - >"$T/fifo" 2>"$T/kill-err" &
bvpid=$!
exec 7<"$T/fifo"
head -c 65536 <&7 >/dev/null
cpid=
for _ in $(seq 1 100); do
	cpid=$(pgrep -P "$bvpid" 2>/dev/null | head -n 1)
	[ -n "$cpid" ] && break
	sleep 0.05
done
if [ -n "$cpid" ]; then
	kill -9 "$cpid"
	cat <&7 >"$T/partial"
	exec 7<&-
	wait "$bvpid"
	rc=$?
	[ $rc -eq 1 ] && grep -q '^bvault files get: vmext@1 partition 1: the file-system reader was killed by signal 9' "$T/kill-err"
	ok $? "a reader killed mid-get: a clean error naming the partition"
	[ "$(stat -c %s "$T/partial")" -lt 3145728 ]
	ok $? "it was killed mid-file"
else
	exec 7<&-
	wait "$bvpid"
	ok 1 "the reader of a get was found to kill"
fi

# ---- a hostile reader ------------------------------------------------------------
# The parent trusts its child no more than the file system: stand-ins for
# bvault-fsread (BVAULT_FSREAD) break the protocol in each way, and the
# parent must stop them with a clean error and leave no OUT behind.
# the system python: a shim (pyenv) would add an environment of its own
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
fake() {
	{
		echo "#!$PY"
		echo 'import os, struct, sys'
		echo 'def frame(t, p=b""): os.write(4, struct.pack("<II", t, len(p)) + p)'
		printf '%s\n' "$2"
	} >"$T/fake-$1"
	chmod 0755 "$T/fake-$1"
}
if [ -n "$PY" ]; then
	fake oversize 'os.write(4, struct.pack("<II", 5, 2 << 20))'
	fake toomuch 'frame(2, b"ext2/3/4"); frame(4, struct.pack("<Q", 10)); frame(5, b"x" * 20)'
	fake crash 'frame(4, struct.pack("<Q", 1000000)); frame(5, b"y" * 1000); os.kill(os.getpid(), 9)'
	fake range 'frame(1, struct.pack("<QI", 1 << 40, 4096)); st, n = struct.unpack("<II", os.read(3, 8)); frame(7, b"answer status %d length %d" % (st, n))'
	fake bigread 'frame(1, struct.pack("<QI", 0, (1 << 20) + 1))'
	fake slash 'frame(3, struct.pack("<B3xIQqII", 1, 0o644, 1, 0, 3, 0) + b"a/b"); frame(6)'
	fake silent 'sys.exit(0)'
	fake sleepy "import time
open('$T/sleepy.pid', 'w').write(str(os.getpid()))
frame(4, struct.pack('<Q', 100)); frame(5, b'z' * 10); time.sleep(60)"
	fake fds 'def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
frame(7, ("fds %s env=%s" % ([f for f in range(1024) if is_open(f)], sorted(os.environ))).encode())'
	BVAULT_FSREAD=$T/fake-oversize run_fail "a frame over 1 MiB" 1 \
		'vmext@1 partition 1: the file-system reader broke the protocol \(a frame longer than 1 MiB\)' \
		"$BV" files ls "$S" vmext@1
	BVAULT_FSREAD=$T/fake-toomuch run_fail "more bytes than the file's size" 1 \
		"broke the protocol \(file bytes out of place, or more than the file's size\)" \
		"$BV" files get "$S" vmext@1 /x "$T/fake-out"
	[ ! -e "$T/fake-out" ]; ok $? "and the partial OUT is removed"
	BVAULT_FSREAD=$T/fake-crash run_fail "a reader dead mid-file" 1 \
		'vmext@1 partition 1: the file-system reader was killed by signal 9' \
		"$BV" files get "$S" vmext@1 /x "$T/fake-out"
	[ ! -e "$T/fake-out" ]; ok $? "and the partial OUT is removed"
	BVAULT_FSREAD=$T/fake-range run_fail "a read past the partition is refused" 1 \
		'vmext@1 partition 1: answer status 34 length 0' \
		"$BV" files ls "$S" vmext@1
	BVAULT_FSREAD=$T/fake-bigread run_fail "a read over 1 MiB" 1 \
		'broke the protocol \(a read request of more than 1 MiB\)' \
		"$BV" files ls "$S" vmext@1
	BVAULT_FSREAD=$T/fake-slash run_fail "a name with a '/'" 1 \
		"broke the protocol \(a directory entry with a NUL or '/' in its name\)" \
		"$BV" files ls "$S" vmext@1
	BVAULT_FSREAD=$T/fake-silent run_fail "an end without an answer" 1 \
		'ended without an answer \(exit status 0\)' \
		"$BV" files ls "$S" vmext@1
	BVAULT_FSREAD=$T/fake-sleepy "$BV" files get "$S" vmext@1 /x "$T/sleepy-out" \
		2>"$T/sleepy-err" &
	bvpid=$!
	for _ in $(seq 1 100); do
		[ -e "$T/sleepy-out" ] && break
		sleep 0.05
	done
	kill -TERM "$bvpid"
	wait "$bvpid"
	rc=$?
	[ $rc -eq 1 ] && [ ! -e "$T/sleepy-out" ] &&
		grep -q 'vmext@1 partition 1: interrupted by signal 15 (Terminated); the file-system reader was stopped and the partial OUT removed' "$T/sleepy-err"
	ok $? "SIGTERM mid-get: the reader is stopped and the partial OUT removed"
	sleepy=$(cat "$T/sleepy.pid" 2>/dev/null)
	[ -n "$sleepy" ] && ! kill -0 "$sleepy" 2>/dev/null
	ok $? "and the reader is gone"
	BVAULT_FSREAD=$T/fake-fds run_fail "the reader gets fds 3 and 4 (and 2 in sanitizer builds) and no environment" 1 \
		"fds \\[(2, )?3, 4\\] env=\\[('LC_CTYPE')?\\]" \
		"$BV" files ls "$S" vmext@1
else
	skip "the hostile reader stand-ins" "no python3"
fi

same_snapshot "$S" before "files ls and get changed nothing in the store"
store_files >"$T/files-after"
cmp -s "$T/files-before" "$T/files-after"
ok $? "no file of the store was made, changed or touched"

# ---- damaged file systems ----------------------------------------------------------
# Random bytes over the metadata of the ext4 and NTFS images (superblock,
# group descriptors, inode tables, the MFT): whatever the reader makes of
# them, bvault answers or fails cleanly, naming the partition, and
# neither process reports a sanitizer error.
ext_meta=$((2 * 1048576))
nt_mft=$(($(stat -c %s "$T/ntfs.img") / 2))
bad=0
for i in $(seq 1 12); do
	if [ $((i % 2)) -eq 0 ]; then
		cp "$T/ext.img" "$T/fz.img"; span=$ext_meta; off=1024
	else
		cp "$T/ntfs.img" "$T/fz.img"; span=$nt_mft; off=512
	fi
	for _ in $(seq 1 40); do
		poke "$T/fz.img" $((off + (RANDOM * 32768 + RANDOM) % span)) $((RANDOM % 64 + 1))
	done
	ingest "vmfz$i" "$T/fz.img" || { bad=1; diag "ingest $i failed"; continue; }
	for cmd in "ls / --json" "get /big.bin $T/fz-out-$i" "get /odd.dat -"; do
		# shellcheck disable=SC2086
		"$BV" files ${cmd%% *} "$S" "vmfz$i@1" ${cmd#* } \
			>"$T/fz-out" 2>"$T/fz-err"
		rc=$?
		if [ $rc -ne 0 ] && { [ $rc -ne 1 ] ||
			! grep -q "^bvault files [a-z]*: vmfz$i@1 (whole disk): " "$T/fz-err"; }; then
			bad=1; diag "vmfz$i $cmd: exit $rc" "$(head -c 600 "$T/fz-err")"
		fi
		if grep -Eq 'AddressSanitizer|runtime error|LeakSanitizer' "$T/fz-err"; then
			bad=1; diag "vmfz$i $cmd: sanitizer report" "$(head -c 2000 "$T/fz-err")"
		fi
	done
done
ok $bad "12 damaged file systems: answers or clean errors naming the partition"

done_testing
