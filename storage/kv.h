/*
 * kv.h: the RocksDB wrapper (C API) behind the index. Four column
 * families: meta (store config, replicas, groups, RPs, counters), chunks
 * (fingerprint -> location), maps (replica, chunk, inverted version ->
 * fingerprint or zero) and births (replica, version, chunk: the maps
 * entries each version wrote). Keys are compared bytewise, so integers in keys are
 * big-endian.
 *
 * Errors: RocksDB failures become ST_EDB, with RocksDB's message kept in
 * bv_kv_error() (per thread, valid until the next failing call of that
 * thread). A missing key is ST_ENOTFOUND.
 *
 * Threads: a bv_kv may be used from any number of threads; a batch or an
 * iterator belongs to one thread at a time.
 */
#ifndef BV_STORAGE_KV_H
#define BV_STORAGE_KV_H

#include <stddef.h>
#include <stdint.h>

/* births: rid(be64) version(be64) chunk(be64) -> "", one for each maps
 * entry (FORMAT.md). A store made before it has none: a writable open
 * makes the family (that one only), a read-only open reads it as empty. */
enum bv_cf {
	BV_CF_META = 0,
	BV_CF_CHUNKS = 1,
	BV_CF_MAPS = 2,
	BV_CF_BIRTHS = 3,
	BV_CF_COUNT
};

struct bv_kv;
struct bv_kv_batch;
struct bv_kv_iter;

struct bv_kv_opts {
	int create;      /* make the database if missing */
	int read_only;
	size_t cache_mb; /* block cache; 0: 64 */
	int accept_loss; /* open for writing even when the seal says that
			  * committed writes were lost (then bv_kv_reseal) */
};

/* Opens the database in PATH. A writable open first checks the seal:
 * ST_ELOST (nothing written) when the database lost committed writes,
 * unless O->accept_loss. */
int bv_kv_open(const char *path, const struct bv_kv_opts *o,
	       struct bv_kv **out);
void bv_kv_close(struct bv_kv *kv);
const char *bv_kv_error(void);

/* Copies the value into VAL (CAP bytes) and sets *VLEN to its full
 * length; ST_EINVAL when it does not fit. */
int bv_kv_get(struct bv_kv *kv, enum bv_cf cf, const void *key, size_t klen,
	      void *val, size_t cap, size_t *vlen);
/* N lookups in one call. For each i: FOUND[i] is 1 or 0; a found value is
 * copied to VALS + i*VCAP and its length to VLENS[i]. */
int bv_kv_multi_get(struct bv_kv *kv, enum bv_cf cf, size_t n,
		    const char *const *keys, const size_t *klens, void *vals,
		    size_t vcap, size_t *vlens, uint8_t *found);

int bv_kv_batch_new(struct bv_kv_batch **out);
void bv_kv_batch_free(struct bv_kv_batch *b);
void bv_kv_batch_clear(struct bv_kv_batch *b);
size_t bv_kv_batch_count(const struct bv_kv_batch *b);
void bv_kv_batch_put(struct bv_kv_batch *b, enum bv_cf cf, const void *key,
		     size_t klen, const void *val, size_t vlen);
void bv_kv_batch_delete(struct bv_kv_batch *b, enum bv_cf cf,
			const void *key, size_t klen);
/* Deletes every key of CF in [LO, HI). */
void bv_kv_batch_delete_range(struct bv_kv_batch *b, enum bv_cf cf,
			      const void *lo, size_t lolen, const void *hi,
			      size_t hilen);
/* Applies B atomically; SYNC makes it durable (WAL fsync) before return. */
int bv_kv_write(struct bv_kv *kv, struct bv_kv_batch *b, int sync);
/* Single synced or unsynced put / delete. */
int bv_kv_put(struct bv_kv *kv, enum bv_cf cf, const void *key, size_t klen,
	      const void *val, size_t vlen, int sync);

/* Iterator over CF with keys in [LO, HI) (HI NULL: no upper bound). The
 * bounds are copied. */
int bv_kv_iter_new(struct bv_kv *kv, enum bv_cf cf, const void *lo,
		   size_t lolen, const void *hi, size_t hilen,
		   struct bv_kv_iter **out);
void bv_kv_iter_free(struct bv_kv_iter *it);

/* A snapshot of the whole database (every column family) as of now;
 * iterators made at it see exactly that, whatever is written later.
 * Release it soon: it keeps RocksDB from dropping what it shadows. */
struct bv_kv_snap;
int bv_kv_snap_new(struct bv_kv *kv, struct bv_kv_snap **out);
void bv_kv_snap_free(struct bv_kv *kv, struct bv_kv_snap *sn);
/* bv_kv_iter_new at snapshot SN, not filling the block cache. */
int bv_kv_iter_new_at(struct bv_kv *kv, const struct bv_kv_snap *sn,
		      enum bv_cf cf, const void *lo, size_t lolen,
		      const void *hi, size_t hilen, struct bv_kv_iter **out);
/* RocksDB's estimate of the keys in CF (0 when it has none). */
uint64_t bv_kv_estimate_keys(struct bv_kv *kv, enum bv_cf cf);
void bv_kv_iter_seek(struct bv_kv_iter *it, const void *key, size_t klen);
int bv_kv_iter_valid(struct bv_kv_iter *it);
void bv_kv_iter_next(struct bv_kv_iter *it);
/* Pointers valid until the iterator moves. */
const void *bv_kv_iter_key(struct bv_kv_iter *it, size_t *klen);
const void *bv_kv_iter_value(struct bv_kv_iter *it, size_t *vlen);
/* ST_EDB if the iteration stopped on an error rather than at the end. */
int bv_kv_iter_status(struct bv_kv_iter *it);

/* 1 when the database holds fewer writes than its seal (PATH.seal, see
 * kv.c) records as committed: for a read-only open, which opens anyway,
 * or a writable one with accept_loss. Sets the two sequence numbers. */
int bv_kv_lost(const struct bv_kv *kv, uint64_t *recovered, uint64_t *sealed);
/* Seals the database as it is now (after accepting a loss). */
int bv_kv_reseal(struct bv_kv *kv);

/* Tests (the fault and ordering checks): HOOK runs before every write
 * of KV with the batch (bv_kv_put included, as a batch of one) and
 * whether it is synced; a non-zero return fails the write with that
 * code, writing nothing. NULL removes it. */
void bv_kv_set_hook(struct bv_kv *kv,
		    int (*hook)(void *ud, const struct bv_kv_batch *b,
				int sync),
		    void *ud);
/* Calls CB for each entry of B in order (PUT 0: a delete, VAL NULL; or a
 * range delete: VAL the end key). */
int bv_kv_batch_each(const struct bv_kv_batch *b,
		     int (*cb)(void *ud, int put, enum bv_cf cf,
			       const void *key, size_t klen, const void *val,
			       size_t vlen),
		     void *ud);

/* A consistent copy of the whole database, as of now, in DIR (which
 * must not exist; its parent must): RocksDB's checkpoint, which flushes
 * the memtables first and hard-links the table files when DIR is on the
 * same file system (copies them otherwise). Every file and DIR itself
 * are fsynced before it returns. Works beside writers on other threads. */
int bv_kv_checkpoint(struct bv_kv *kv, const char *dir);
/* The sequence number of the newest write the database holds. */
uint64_t bv_kv_sequence(struct bv_kv *kv);

struct bv_journal;
/* From now on every write of KV goes to journal J first (kv.c,
 * journal_first), numbered after meta "jlsn" (0 when missing). */
int bv_kv_set_journal(struct bv_kv *kv, struct bv_journal *j);
/* The number of the last journaled write. */
uint64_t bv_kv_jlsn(struct bv_kv *kv);
/* Writes the whole database into J as a snapshot of state LSN, synced.
 * Nothing may write KV meanwhile. */
int bv_kv_snapshot(struct bv_kv *kv, struct bv_journal *j, uint64_t lsn);
/* Applies LEN bytes of a journal entry (batch entries, as a batch keeps
 * them) to KV as one unsynced write; ST_ECORRUPT for bytes that are not
 * a batch. */
int bv_kv_apply_log(struct bv_kv *kv, const void *log, size_t len);

/* Bytes the database takes on disk (SST files and logs). */
int bv_kv_disk_bytes(struct bv_kv *kv, uint64_t *bytes);
/* Compacts CF's keys in [LO, HI) (after a range delete: drops the
 * tombstones and the space). Waits for it. */
int bv_kv_compact_range(struct bv_kv *kv, enum bv_cf cf, const void *lo,
			size_t lolen, const void *hi, size_t hilen);
/* Flushes memtables to SST files (for stats and tests). */
int bv_kv_flush(struct bv_kv *kv);
/* Flushes them when they hold MIN bytes or more in all: a writer's clean
 * close, so that read-only opens after it read tables instead of
 * replaying the write-ahead log into a memtable of their own (on a store
 * just ingested, most of their open). 0 or ST_EIO; nothing changes in
 * what the index holds. */
int bv_kv_flush_big(struct bv_kv *kv, uint64_t min);

#endif
