#!/usr/bin/env bash
# cli_modes.sh: the store is private to its owner (storage/FORMAT.md,
# "File modes"; INVARIANTS.md 8), whatever the umask of the calling shell
# (022 and 000): after init, ingest, export, diff, rp create and agent
# add, every directory in the store is 0700 and every file 0600, and so
# are the files the commands write outside it (exports, streams, an
# agent's --secret-file). A store made by older code (0755 and 0644) is
# made private by the next writable open; a read-only open changes no
# mode. agent add --secret-file refuses a file that exists and changes
# nothing then.
. "$(dirname "$0")/lib.sh"

# Every path under DIR whose mode is not 0700 (directories) or 0600
# (anything else), with its mode.
not_private() {
	find "$1" \( -type d ! -perm 0700 \) -printf '%m %p\n' -o \
		\( ! -type d ! -perm 0600 \) -printf '%m %p\n'
}

mode_of() {
	stat -c %a "$1"
}

mkimg "$T/img" 4
for um in 022 000; do
	S=$T/s$um
	(umask $um && "$BV" mkstream "$T/img" --replica vm1 \
		--out "$T/full$um.bvs") 2>"$T/err"
	ok $? "umask $um: mkstream --out"
	run_ok "umask $um: init" sh -c "umask $um && exec \"\$@\"" sh \
		"$BV" init "$S"
	run_ok "umask $um: ingest" sh -c "umask $um && exec \"\$@\"" sh \
		"$BV" ingest "$S" --rp "$T/full$um.bvs"
	run_ok "umask $um: export" sh -c "umask $um && exec \"\$@\"" sh \
		"$BV" export "$S" vm1@1 "$T/x$um.img"
	run_ok "umask $um: diff --out" sh -c "umask $um && exec \"\$@\"" sh \
		"$BV" diff "$S" vm1@0 vm1@1 --out "$T/d$um.bvs"
	run_ok "umask $um: rp create" sh -c "umask $um && exec \"\$@\"" sh \
		"$BV" rp create "$S" vm1
	run_ok "umask $um: agent add --secret-file" \
		sh -c "umask $um && exec \"\$@\"" sh \
		"$BV" agent add "$S" host1 --group vm1 --secret-file "$T/k$um"
	grep -q "$T/k$um" "$T/out"
	ok $? "umask $um: agent add names the secret file"
	[ "$(wc -l <"$T/k$um")" -eq 1 ] && grep -Eqx '[0-9a-f]{64}' "$T/k$um"
	ok $? "umask $um: the secret file is one line of 64 hex digits"
	bad=$(not_private "$S")
	[ -z "$bad" ]
	ok $? "umask $um: every directory of the store is 0700, every file 0600"
	[ -z "$bad" ] || diag "$bad"
	[ -d "$S/containers" ] && [ -n "$(ls "$S/containers")" ] &&
		[ -n "$(ls "$S/index")" ]
	ok $? "umask $um: the store has containers and index files to check"
	for f in "$T/full$um.bvs" "$T/x$um.img" "$T/d$um.bvs" "$T/k$um"; do
		[ "$(mode_of "$f")" = 600 ]
		ok $? "umask $um: ${f##*/} is 0600 (it is $(mode_of "$f"))"
	done
done

# --secret-file never overwrites, and a refusal adds no agent.
S=$T/s022
echo "precious" >"$T/taken"
run_fail "agent add --secret-file to an existing file: refused" 1 \
	'exists' "$BV" agent add "$S" host2 --group vm1 --secret-file "$T/taken"
grep -qx precious "$T/taken"
ok $? "the existing file is untouched"
run_ok "agent ls" "$BV" agent ls "$S"
! grep -q host2 "$T/out"
ok $? "no agent host2 was added"
ln -s "$T/nowhere" "$T/link"
run_fail "agent add --secret-file through a symbolic link: refused" 1 \
	'exists|symbolic|links' \
	"$BV" agent add "$S" host2 --group vm1 --secret-file "$T/link"
[ ! -e "$T/nowhere" ]
ok $? "nothing was made at the link's target"
run_fail "agent add --secret-file into a missing directory: refused" 1 \
	'no such file' \
	"$BV" agent add "$S" host2 --group vm1 --secret-file "$T/no/dir/k"
run_ok "agent ls" "$BV" agent ls "$S"
! grep -q host2 "$T/out"
ok $? "still no agent host2"
run_fail "agent add --secret-file of a taken name: refused" 1 \
	'exist' "$BV" agent add "$S" host1 --group vm1 --secret-file "$T/k2"
[ ! -e "$T/k2" ]
ok $? "and its secret file is not left behind"

# A store as older code left it: 0755 directories, 0644 files.
find "$S" -type d -exec chmod 0755 {} + && find "$S" -type f -exec chmod 0644 {} +
ok $? "make the store look like one of older code"
run_ok "a read-only open (ls)" "$BV" ls "$S"
[ "$(mode_of "$S")" = 755 ] && [ "$(mode_of "$S/bvault.store")" = 644 ]
ok $? "changes no mode"
run_ok "a writable open (replica create)" "$BV" replica create "$S" r2 --size 1M
bad=$(not_private "$S")
[ -z "$bad" ]
ok $? "makes every directory 0700 and every file 0600"
[ -z "$bad" ] || diag "$bad"

done_testing
