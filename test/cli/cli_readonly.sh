#!/usr/bin/env bash
# cli_readonly.sh: the commands that only read (ls, rp ls, stats, export,
# diff, verify --read-only, check, agent ls) open the store read-only (INVARIANTS.md 7):
#   - they create, change and remove nothing in the store: every file's
#     name, type, size, mode, owner, mtime, ctime and contents are the
#     same after them, also in a store a writer left mid-session (killed),
#     which only a writer's open recovers;
#   - they work on a read-only bind mount of the store (root and mount
#     needed, else skipped);
#   - they work as a user who may only read the store (root and setpriv
#     needed, else skipped);
#   - a read that runs long (a diff into a pipe nobody drains) does not
#     keep bvault ingest from opening the store for writing.
. "$(dirname "$0")/lib.sh"

S=$T/s
MNT=$T/mnt
trap 'umount "$MNT" 2>/dev/null; rm -rf "$T"' EXIT

# Everything about every file of DIR that a write could change.
fingerprint() {
	(cd "$1" && find . -printf '%p %y %s %m %U:%G %T@ %C@\n' | sort &&
		find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# Runs every reading command on STORE as PREFIX... (may be empty), with
# outputs in OUTDIR; DESC names the case.
read_all() {
	local desc=$1 store=$2 out=$3
	shift 3
	run_ok "$desc: ls" "$@" "$BV" ls "$store"
	run_ok "$desc: ls --json" "$@" "$BV" ls "$store" --json
	run_ok "$desc: rp ls" "$@" "$BV" rp ls "$store"
	run_ok "$desc: rp ls REPLICA --json" "$@" "$BV" rp ls "$store" vm1 --json
	run_ok "$desc: stats" "$@" "$BV" stats "$store"
	run_ok "$desc: agent ls" "$@" "$BV" agent ls "$store"
	run_ok "$desc: verify --read-only" "$@" "$BV" verify "$store" --read-only
	run_ok "$desc: check" "$@" "$BV" check "$store"
	rm -f "$out/x.img" "$out/d.bvs"
	run_ok "$desc: export" "$@" "$BV" export "$store" vm1@latest "$out/x.img"
	cmp -s "$out/x.img" "$T/img2"
	ok $? "$desc: the export is the image"
	run_ok "$desc: diff" "$@" "$BV" diff "$store" vm1@1 vm1@2 --out "$out/d.bvs"
	[ -s "$out/d.bvs" ]
	ok $? "$desc: diff wrote a stream"
}

same_fingerprint() {
	fingerprint "$1" >"$T/fp.after"
	cmp -s "$2" "$T/fp.after"
	ok $? "$3"
	cmp -s "$2" "$T/fp.after" ||
		diag "$(diff "$2" "$T/fp.after" | head -n 20)"
}

mkimg "$T/img" 8
cp "$T/img" "$T/img2"
poke "$T/img2" 1048576 65536
printf '1048576 65536\n' >"$T/ext"
"$BV" mkstream "$T/img" --replica vm1 --out "$T/full.bvs" 2>"$T/err" &&
	"$BV" mkstream "$T/img2" --replica vm1 --base 1 --extents "$T/ext" \
		--out "$T/inc.bvs" 2>>"$T/err"
ok $? "mkstream: a full and an incremental stream"
run_ok "init" "$BV" init "$S"
run_ok "ingest the full" "$BV" ingest "$S" --rp "$T/full.bvs"
run_ok "ingest the incremental" "$BV" ingest "$S" --rp "$T/inc.bvs"
run_ok "agent add" "$BV" agent add "$S" host1 --group vm1

# 1. Nothing in the store changes.
fingerprint "$S" >"$T/fp.before"
read_all "closed store" "$S" "$T"
same_fingerprint "$S" "$T/fp.before" "reads changed nothing in the store"

# A writer killed mid-session leaves bytes past the committed container
# tail and uncommitted index entries: reads must leave them for the next
# writer's recovery, and still see RP 2 whole.
head -c $((32 << 20)) /dev/urandom >"$T/big"
"$BV" mkstream "$T/big" --replica big --out "$T/big.bvs" 2>"$T/err"
ok $? "mkstream of a 32 MiB image"
cbytes() { du -sb "$S/containers" | cut -f1; }
before_kill=$(cbytes)
mkfifo "$T/fifo"
"$BV" ingest "$S" --rp <"$T/fifo" >"$T/ing.out" 2>&1 &
ipid=$!
exec 3>"$T/fifo"
head -c $((28 << 20)) "$T/big.bvs" >&3
for _ in $(seq 100); do
	sleep 0.2
	[ "$(cbytes)" -gt $((before_kill + (4 << 20))) ] && break
done
sleep 0.5
kill -9 $ipid 2>/dev/null
wait $ipid 2>/dev/null
exec 3>&-
[ "$(cbytes)" -gt "$before_kill" ]
ok $? "the killed ingest left container bytes past the tail"
fingerprint "$S" >"$T/fp.crashed"
read_all "after a crash" "$S" "$T"
same_fingerprint "$S" "$T/fp.crashed" "reads did no recovery after a crash"
run_ok "a writer's open (rp create) recovers" "$BV" rp create "$S" vm1
fingerprint "$S" >"$T/fp.recovered"
! cmp -s "$T/fp.crashed" "$T/fp.recovered"
ok $? "and that does change the store (so the check above means something)"
fingerprint "$S" >"$T/fp.before"

# 2. A read-only bind mount.
mkdir -p "$MNT" "$T/rout"
if [ "$(id -u)" -eq 0 ] && mount --bind "$S" "$MNT" 2>/dev/null &&
	mount -o remount,bind,ro "$MNT" 2>/dev/null; then
	touch "$MNT/probe" 2>/dev/null
	[ ! -e "$S/probe" ]
	ok $? "the bind mount is read-only"
	read_all "read-only mount" "$MNT" "$T/rout"
	run_fail "read-only mount: ingest is refused" 1 \
		'read-only|Read-only file system' "$BV" ingest "$MNT" "$T/inc.bvs"
	umount "$MNT"
	ok $? "umount"
	same_fingerprint "$S" "$T/fp.before" "the mounted store is unchanged"
else
	umount "$MNT" 2>/dev/null
	skip "read-only mount" "needs root and mount --bind"
fi

# 3. A user who may only read a copy of the store.
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1 &&
	command -v setpriv >/dev/null 2>&1; then
	cp -a "$S" "$T/pub"
	chmod -R go+rX "$T/pub"
	chmod go-w -R "$T/pub"
	chmod 711 "$T"
	mkdir "$T/nb"
	chown nobody "$T/nb"
	fingerprint "$T/pub" >"$T/fp.pub"
	AS=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)"
		--clear-groups env TMPDIR="$T/nb")
	if "${AS[@]}" "$BV" --version >/dev/null 2>&1; then
		read_all "as nobody" "$T/pub" "$T/nb" "${AS[@]}"
		run_fail "as nobody: ingest is refused" 1 \
			'permission denied|read-only' \
			"${AS[@]}" "$BV" ingest "$T/pub" "$T/inc.bvs"
		same_fingerprint "$T/pub" "$T/fp.pub" \
			"the store read by nobody is unchanged"
		[ -z "$(ls -A "$T/nb" | grep -v -e '^x.img$' -e '^d.bvs$')" ]
		ok $? "nothing is left in nobody's TMPDIR"
	else
		skip "as nobody" "nobody cannot run $BV"
	fi
	chmod 700 "$T"
else
	skip "as nobody" "needs root, a user nobody and setpriv"
fi

# 4. A long read does not block a writer: diff into a FIFO that is opened
# but not drained, so diff sits in write() with the store open.
rm -f "$T/fifo"
mkfifo "$T/fifo"
(exec 4<"$T/fifo"; while [ ! -e "$T/go" ]; do sleep 0.1; done; cat <&4 >"$T/slow.bvs") &
cpid=$!
"$BV" diff "$S" vm1@0 vm1@2 --out "$T/fifo" 2>"$T/diff.err" &
dpid=$!
for _ in $(seq 100); do
	ls -l "/proc/$dpid/fd" 2>/dev/null | grep -q "$S/index/" && break
	sleep 0.1
done
ls -l "/proc/$dpid/fd" 2>/dev/null | grep -q "$S/index/"
ok $? "diff has the store open and waits on its output"
mkimg "$T/img3" 4
"$BV" mkstream "$T/img3" --replica other --out "$T/other.bvs" 2>"$T/err"
run_ok "ingest opens the store for writing meanwhile" \
	"$BV" ingest "$S" --rp "$T/other.bvs"
kill -0 $dpid 2>/dev/null
ok $? "diff is still running"
touch "$T/go"
wait $dpid
ok $? "diff then finishes"
wait $cpid
run_ok "init a second store" "$BV" init "$T/s2"
run_ok "the slow diff's stream ingests" "$BV" ingest "$T/s2" --rp "$T/slow.bvs"
run_ok "export it" "$BV" export "$T/s2" vm1@1 "$T/y.img"
cmp -s "$T/y.img" "$T/img2"
ok $? "it is RP 2, whole"

done_testing
