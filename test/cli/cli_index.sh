#!/usr/bin/env bash
# cli-index: bvault index backup and restore through the real tool. A
# backup is a new directory, private (0700/0600), refused over anything
# that exists; restoring it puts back exactly the RPs it holds (bit for
# bit), keeps the replaced index as index.old.N and every container
# byte, and ingest goes on from it. A bad backup (none, damaged, another
# store's) and a store held by a writer are refused and change nothing.
. "$(dirname "$0")/lib.sh"

S=$T/store
mkimg "$T/a.img" 8
cp "$T/a.img" "$T/b.img"
poke "$T/b.img" 1048576 65536
cp "$T/b.img" "$T/c.img"
poke "$T/c.img" 4194304 131072
run_ok "init" "$BV" init "$S"
run_ok "a full" sh -c "'$BV' mkstream '$T/a.img' --replica vm1 | '$BV' ingest '$S' --rp -"
run_ok "an express full" sh -c "'$BV' mkstream '$T/b.img' --replica vm1 --base 1 | '$BV' ingest '$S' --rp -"

run_ok "index backup" "$BV" index backup "$S" "$T/bk"
grep -q "backup $T/bk: taken .*1 replica, 2 recovery points" "$T/out"
ok $? "it says what the backup holds"
[ "$(stat -c %a "$T/bk")" = 700 ] && [ "$(stat -c %a "$T/bk/index")" = 700 ] &&
	! find "$T/bk" -type f ! -perm 600 | grep -q .
ok $? "the backup is private (0700 directories, 0600 files)"
run_fail "a backup never goes over a directory that exists" 1 \
	"exists already" "$BV" index backup "$S" "$T/bk"
run_fail "a backup wants a directory" 2 "missing DIR" "$BV" index backup "$S"
run_fail "a backup into a missing parent" 1 "$T/no/bk" \
	"$BV" index backup "$S" "$T/no/bk"
[ ! -e "$T/no" ]
ok $? "and makes nothing"

run_ok "a third RP after the backup" sh -c "'$BV' mkstream '$T/c.img' --replica vm1 --base 2 | '$BV' ingest '$S' --rp -"
snapshot "$S" before
containers=$(cd "$S/containers" && sha256sum ./* | sha256sum)

# Bad backups: each refused, the store as it was.
mkdir "$T/empty"
run_fail "a directory that is no backup" 1 "not a bvault index backup" \
	"$BV" index restore "$S" "$T/empty"
cp -a "$T/bk" "$T/bad"
printf 'X' | dd of="$T/bad/backup.info" bs=1 seek=20 conv=notrunc 2>/dev/null
run_fail "a damaged backup.info" 1 "backup.info is damaged" \
	"$BV" index restore "$S" "$T/bad"
run_ok "another store" "$BV" init "$T/other"
run_ok "with a replica" "$BV" replica create "$T/other" vm9 --size 1M
run_ok "its backup" "$BV" index backup "$T/other" "$T/otherbk"
run_fail "another store's backup is refused" 1 \
	"not this store.s backup" \
	"$BV" index restore "$S" "$T/otherbk"
same_snapshot "$S" before "the refused restores changed nothing"
[ ! -e "$S/index.old.1" ] && [ ! -e "$S/index.restore" ]
ok $? "and left nothing beside the index"

# A writer holds the store: refused.
exec 9<"$S/bvault.store"
flock -x 9
run_fail "a store open for writing is refused" 1 "stop bvaultd" \
	"$BV" index restore "$S" "$T/bk"
exec 9<&-
same_snapshot "$S" before "still unchanged"

run_ok "index restore" "$BV" index restore "$S" "$T/bk"
grep -q "kept in $S/index.old.1" "$T/out"
ok $? "it names where the replaced index is kept"
[ -d "$S/index.old.1" ]
ok $? "the replaced index is kept"
run_ok "rp ls" "$BV" rp ls "$S"
grep -q " 2 " "$T/out" && ! grep -q " 3 " "$T/out"
ok $? "the index holds the backup's RPs: 1 and 2, not 3"
for rp in 1 2; do
	img=$([ $rp = 1 ] && echo a || echo b)
	run_ok "export RP $rp" "$BV" export "$S" vm1@$rp "$T/out$rp.img"
	cmp -s "$T/out$rp.img" "$T/$img.img"
	ok $? "RP $rp is bit for bit"
done
[ "$(cd "$S/containers" && sha256sum ./* | sha256sum)" = "$containers" ]
ok $? "every container byte is kept"
run_ok "stats" "$BV" stats "$S" --quick
grep -Eq "^unknown +[1-9]" "$T/out"
ok $? "RP 3's bytes are counted unknown"
run_ok "ingest goes on" sh -c "'$BV' mkstream '$T/c.img' --replica vm1 --base 2 | '$BV' ingest '$S' --rp -"
run_ok "export the new RP" "$BV" export "$S" vm1@3 "$T/out3.img"
cmp -s "$T/out3.img" "$T/c.img"
ok $? "the new RP 3 is bit for bit"
run_ok "a second restore" "$BV" index restore "$S" "$T/bk"
grep -q "index.old.2" "$T/out"
ok $? "keeps the index it replaced as index.old.2"

# The journal rebuilds the index when index/ is lost.
run_ok "rp ls before" "$BV" rp ls "$S"
cp "$T/out" "$T/rp.before"
rm -rf "$S/index"
run_fail "a lost index/ is refused by a writing command" 1 "$S" \
	"$BV" replica create "$S" x --size 1M
run_ok "index rebuild" "$BV" index rebuild "$S"
grep -q "rebuilt the index of $S from [0-9]* journal entries: 1 replica, 2 recovery points" "$T/out"
ok $? "it says what it rebuilt"
run_ok "rp ls after" "$BV" rp ls "$S"
cmp -s "$T/out" "$T/rp.before"
ok $? "the same RPs"
run_ok "export RP 2" "$BV" export "$S" vm1@2 "$T/rb2.img"
cmp -s "$T/rb2.img" "$T/b.img"
ok $? "RP 2 is bit for bit (the store as the second restore left it)"
[ "$(stat -c %a "$S/journal")" = 700 ] && ! find "$S/journal" -type f ! -perm 600 | grep -q .
ok $? "the journal is private"
exec 9<"$S/bvault.store"
flock -x 9
run_fail "a store open for writing is refused" 1 "stop bvaultd" \
	"$BV" index rebuild "$S"
exec 9<&-
mv "$S/journal" "$T/journal.gone"
run_fail "no journal: refused" 1 "no complete snapshot|journal" \
	"$BV" index rebuild "$S"
run_ok "and the index is still there" "$BV" export "$S" vm1@2 "$T/rb2b.img"
mv "$T/journal.gone" "$S/journal"
run_fail "index rebuild wants STORE" 2 "missing STORE" "$BV" index rebuild

done_testing
