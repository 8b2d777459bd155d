#!/usr/bin/env bash
# cli_store.sh: a STORE that is not a store (missing, an empty directory,
# a file, a directory of other files) is refused by every command with a
# message saying so, and is left exactly as it was; init refuses a
# directory that holds anything, including a store.
. "$(dirname "$0")/lib.sh"

NOTSTORE='not a bvault store|not a store|no such|not found|does not exist'

mkdir "$T/empty"
echo hello >"$T/file"
mkdir "$T/other"
head -c 4096 /dev/urandom >"$T/other/CURRENT"
echo "not rocksdb" >"$T/other/IDENTITY"
mkdir "$T/other/sub"
mkimg "$T/img" 4
"$BV" mkstream "$T/img" --replica vm1 --out "$T/s1" 2>"$T/err"
ok $? "mkstream (needs no store)"

# Names, sizes, types and contents of everything the commands were given.
listing() {
	find "$T/missing" "$T/empty" "$T/file" "$T/other" -printf '%p %s %y\n' \
		2>/dev/null | sort
	find "$T/missing" "$T/empty" "$T/file" "$T/other" -type f \
		-exec cksum {} + 2>/dev/null | sort
}

for what in missing empty file other; do
	p=$T/$what
	before=$(listing)
	run_fail "$what: ls refused" 1 "$NOTSTORE" "$BV" ls "$p"
	run_fail "$what: stats refused" 1 "$NOTSTORE" "$BV" stats "$p"
	run_fail "$what: rp ls refused" 1 "$NOTSTORE" "$BV" rp ls "$p" --json
	run_fail "$what: rp create refused" 1 "$NOTSTORE" "$BV" rp create "$p" vm1
	run_fail "$what: replica create refused" 1 "$NOTSTORE" \
		"$BV" replica create "$p" vm1 --size 1M
	run_fail "$what: ingest refused" 1 "$NOTSTORE" "$BV" ingest "$p" --rp "$T/s1"
	run_fail "$what: export refused" 1 "$NOTSTORE" "$BV" export "$p" vm1@1 "$T/x"
	[ ! -e "$T/x" ]; ok $? "$what: export made no output file"
	run_fail "$what: diff refused" 1 "$NOTSTORE" "$BV" diff "$p" vm1@0 vm1@1 --out "$T/d"
	[ ! -e "$T/d" ]; ok $? "$what: diff made no output file"
	after=$(listing)
	[ "$before" = "$after" ]; ok $? "$what: nothing created or changed"
	[ "$before" = "$after" ] || diag "$(diff <(echo "$before") <(echo "$after"))"
done
run_fail "empty dir: the message names the path" 1 "$T/empty" "$BV" ls "$T/empty"

# init refuses what holds anything.
run_fail "init into a file: refused" 1 'exist|not a directory|file' "$BV" init "$T/file"
grep -qx hello "$T/file"; ok $? "the file is untouched"
run_fail "init into a non-empty dir: refused" 1 'exist|not empty|empty' \
	"$BV" init "$T/other"
[ "$(find "$T/other" | wc -l)" -eq 4 ]; ok $? "the directory is untouched"
run_ok "init into an empty dir" "$BV" init "$T/empty"
run_ok "ingest into it" "$BV" ingest "$T/empty" --rp "$T/s1"
snapshot "$T/empty" store
run_fail "init over a store: refused" 1 'exist|not empty|already' "$BV" init "$T/empty"
same_snapshot "$T/empty" store "the store is untouched"
run_ok "init with --chunk-size 4K" "$BV" init "$T/small" --chunk-size 4K
run_ok "a replica of the store default" "$BV" replica create "$T/small" r --size 1M
run_ok "ls --json" "$BV" ls "$T/small" --json
grep -q '"chunk_size": 4096' "$T/out"; ok $? "store default chunk size applies"

done_testing
