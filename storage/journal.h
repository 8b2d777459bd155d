/*
 * journal.h: the index journal (storage/FORMAT.md, "The index journal"):
 * an append-only log, beside the containers, of every write the index
 * takes, written before the index takes it, so that the whole index can
 * be rebuilt from the containers and the journal alone when RocksDB is
 * lost or damaged (bvault index rebuild).
 *
 * Entries are numbered (LSN, from 1, one per index write); the payload of
 * an entry is opaque here (the kv layer's batch bytes). A snapshot is a
 * run of entries that together hold a whole index: BEGIN, DATA..., END;
 * a reader takes the last complete snapshot and the entries after it.
 *
 * Files: DIR/%08u.bvj, each with a 4096-byte header. A writer never
 * appends to a file it did not create (a crash may have torn its end):
 * each writable open starts a new file, whose first entry's LSN says
 * where it goes on, so entries of an older file with that LSN or more
 * (written, but never applied to the index) are void.
 *
 * Threads: the caller orders appends (the kv layer's write mutex).
 */
#ifndef BV_STORAGE_JOURNAL_H
#define BV_STORAGE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

enum bv_jkind {
	BV_J_BATCH = 1,      /* one index write */
	BV_J_SNAP_BEGIN = 2, /* a snapshot of the whole index starts */
	BV_J_SNAP_DATA = 3,  /* part of it */
	BV_J_SNAP_END = 4,   /* it is complete */
};

struct bv_journal;

/* Opens the journal in DIR (made, 0700, when WRITABLE and missing).
 * STORE_ID (16 bytes) goes into file headers and is checked on read. A
 * writable journal appends to a new file, made at the first append. */
int bv_journal_open(const char *dir, const uint8_t *store_id, int writable,
		    struct bv_journal **out);
void bv_journal_close(struct bv_journal *j);
/* The store id in the header of DIR's oldest journal file: ST_ENOTFOUND
 * when there is none, ST_ECORRUPT for a damaged header. */
int bv_journal_owner(const char *dir, uint8_t store_id[16]);
/* The message of the last failure of this thread. */
const char *bv_journal_error(void);

/* Appends entry LSN of KIND with LEN bytes of DATA: written (not yet
 * durable) when it returns. */
int bv_journal_append(struct bv_journal *j, uint64_t lsn, int kind,
		      const void *data, size_t len);
/* Makes every appended entry durable (fdatasync, and the directory after
 * a new file). */
int bv_journal_sync(struct bv_journal *j);

/* Ends the file being appended to: the next append starts a new one,
 * whose base voids what the old one holds past it (an entry whose index
 * write then failed). */
void bv_journal_roll(struct bv_journal *j);

/* Tests (the fault and ordering checks): HOOK runs before every append
 * (OP 0, with the entry's LSN) and every sync that has something to make
 * durable (OP 1); a non-zero return fails that call with that code,
 * doing nothing. NULL removes it. */
void bv_journal_set_hook(struct bv_journal *j,
			 int (*hook)(void *ud, int op, uint64_t lsn), void *ud);

/* The LSN of the last intact, live entry (0: none): reads the newest
 * files only, for the check at every writable open. */
int bv_journal_last(struct bv_journal *j, uint64_t *lsn);

/* Replays what the journal holds, in order: the last complete snapshot
 * (its DATA entries, after a call with KIND BV_J_SNAP_BEGIN that means
 * "start from nothing"), then every BATCH after it, skipping entries
 * made void by a later file. Calls CB for each; a non-zero return stops
 * it. ST_ENOTFOUND: no complete snapshot; ST_ECORRUPT: a gap in the
 * LSNs (a damaged entry lost some), with the message naming the file. */
int bv_journal_replay(struct bv_journal *j,
		      int (*cb)(void *ud, uint64_t lsn, int kind,
				const void *data, size_t len),
		      void *ud);

/* The bytes of every journal file in all. */
int bv_journal_bytes(struct bv_journal *j, uint64_t *bytes);
/* Removes the files before the one where the last complete snapshot
 * begins (replay reads nothing of them), the directory synced after;
 * *REMOVED counts them. Call it only once that snapshot is durable
 * (bv_kv_snapshot syncs it) and holds the index as it is. */
int bv_journal_trim(struct bv_journal *j, unsigned *removed);

#endif
