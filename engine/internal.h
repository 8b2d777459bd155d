/*
 * internal.h: what the engine's files share. Not installed; tools/ never
 * sees it (they get engine/public/, which holds bvault.h alone).
 *
 * Index layout (the byte-exact version is in storage/FORMAT.md):
 *   maps   rid(be64) chunk(be64) ~version(be64) -> fingerprint(16)
 *          [digest(16), format 2] | "" (zero)
 *   chunks fingerprint(16) -> chunk location (bv_chunk_loc_encode)
 *          [digest(16)]
 *   meta   "config" "tail" "seq" "stat/c" "stat/m"
 *          "r/" name -> replica record     "ri/" rid(be64) -> name
 *          "g/" name -> group record       "gi/" gid(be64) -> name
 *          "p/" gid(be64) rp(be64) -> RP record
 *          "a/" name -> agent record
 *          "v/" rid(be64) version(be64) -> version identity
 *          "vi/" rid(be64) identity(16) -> newest version with it
 *          "inflight/" rid(be64) -> version being written
 *          "u/" container(be32) from(be64) -> to(le64): bytes no commit names
 *          "csize" -> container size (le64)
 *          "dedup" -> dedup scope (1 byte, BV_DEDUP_*; absent: store)
 *          "gc/gen" -> GC generation (le64)
 *          "gc/r/" container(be32) -> generation it was retired at (le64)
 *          "bad/" fingerprint(16) -> a chunk verify found bad (bad.c)
 *          "seed/" set id(16) -> a seed set imported (seed.c)
 */
#ifndef BV_ENGINE_INTERNAL_H
#define BV_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "bvault.h"
#include "codec.h"
#include "container.h"
#include "cstore.h"
#include "endian.h"
#include "errcodes.h"
#include "journal.h"
#include "kv.h"
#include "ring.h"

/* Format 2 map entries may carry the chunk's plain digest (FORMAT.md);
 * format 1 stores are read, and written as format 1. */
#define BV_STORE_FORMAT 2
#define BV_STORE_FORMAT_MIN 1
#define BV_MARKER "bvault.store"
#define BV_GROUP_MAX_MEMBERS 256
#define BV_SESSION_MAX 64      /* replicas in one ingest session */
#define BV_MAP_KEY 24

/* ---- errors ------------------------------------------------------------ */

/* Sets the calling thread's message (bv_store_error) and returns ERR. */
__attribute__((format(printf, 2, 3)))
int bv_fail(int err, const char *fmt, ...);
const char *bv_last_error(void);
/* A storage-layer error as a message about OBJECT. */
int bv_fail_storage(int err, const char *object);
/* 0, or BV_EREADONLY (with the message) when S was opened read-only: the
 * first check of every call that changes the store. */
int bv_store_writable(const bv_store *s);
/* 0 when PATH is a store of a format this build reads (its marker);
 * BV_ENOTSTORE or BV_EFORMAT with the message. */
int bv_check_marker(const char *path);
/* bv_store_open, with the containers seen through WRAP (for the fault
 * tests: cstore.h's fault-injecting wrapper). */
int bv_store_open_wrapped(const char *path, const bv_open_opts *opts,
			  int (*wrap)(void *ud, struct bv_cstore *inner,
				      struct bv_cstore **out),
			  void *wrap_ud, bv_store **out);

/* ---- worker pool ------------------------------------------------------- */

struct bv_pool;
int bv_pool_new(unsigned workers, struct bv_pool **out);
void bv_pool_free(struct bv_pool *p);
unsigned bv_pool_size(const struct bv_pool *p);
/* Inside a run's function: 0 on the calling thread, 1 to
 * bv_pool_size() on the workers; a run's threads have distinct ones. */
unsigned bv_pool_thread_index(void);
/* Runs FN(CTX, i) for i in [0, N) on the workers and the calling thread;
 * returns when all are done. Runs of several callers take turns. */
void bv_pool_run(struct bv_pool *p, void (*fn)(void *ctx, size_t i),
		 void *ctx, size_t n);

/* ---- store ------------------------------------------------------------- */

struct bv_store {
	char *path;
	int lock_fd;         /* flock on the marker: one writer at a time */
	int read_only;       /* bv_open_opts.read_only: no lock, no writes */
	struct bv_kv *kv;
	struct bv_journal *journal; /* the writer's (FORMAT.md, "The index
				     * journal"); NULL when read-only */
	int index_lost;          /* the seal says the index lost commits */
	struct bv_cstore *cs;     /* the containers (cstore.h) */
	struct bv_pool *pool;
	uint8_t secret[BV_SECRET_SIZE];
	uint8_t store_id[16];
	uint32_t chunk_default;
	uint32_t format;     /* BV_STORE_FORMAT_MIN..BV_STORE_FORMAT */
	/* Serializes read-modify-write of meta records (commits, RPs,
	 * replica and group changes). */
	pthread_mutex_t meta_lock;
	/* Serializes container staging + flush, so that staged records
	 * never outlive one batch (a rollback drops only its own). */
	pthread_mutex_t write_lock;
	/* Serializes chunk index writes: the chunk counters are read,
	 * changed and written, and the durable container tail recorded in
	 * the index only moves forward (tail_id, tail_end: the last one
	 * written). */
	pthread_mutex_t index_lock;
	struct bv_ctail tail;
	/* Serializes removals of RPs and replicas (lifecycle.c): each one
	 * finds its retained neighbours while no other removal is between
	 * its intent and its end, so that two never free by stale ones. */
	pthread_mutex_t life_lock;
	struct bv_badset *bad;    /* chunks marked bad (bad.c) */
	/* Replicas held by an open ingest session (in-process). */
	uint64_t busy[BV_SESSION_MAX * 4];
	size_t nbusy;
	/* gc.c: pins, touched and condemned sets (writable opens only;
	 * NULL when read-only) and the readers file. */
	struct bv_gc *gc;
	int readers_fd;      /* STORE/readers, or -1 */
	uint64_t container_size; /* meta "csize", or 1 GiB */
	int dedup_scope;         /* meta "dedup", or BV_DEDUP_STORE; group:
				  * chunk fingerprints are tagged with the
				  * replica's group (ingest.c chunk_fp) */
	/* The batch memory budget of the ingest sessions (ingest.c,
	 * bv_ingest_memory in bvault.h): LIMIT from the open's options,
	 * the rest under BMEM_LOCK. */
	pthread_mutex_t bmem_lock;
	uint64_t bmem_limit, bmem_used, bmem_peak, bmem_over;
	unsigned bmem_sessions;
};

/* Replica record, meta "r/" name. */
struct bv_rrec {
	uint64_t rid;
	uint64_t gid;
	uint32_t chunk_size;
	uint64_t size; /* at head */
	uint64_t head; /* committed version */
};

/* Group record, meta "g/" name. */
struct bv_grec {
	uint64_t gid;
	uint64_t latest_rp;
	uint32_t n;
	uint64_t members[BV_GROUP_MAX_MEMBERS]; /* rids */
};

struct bv_rp_member {
	uint64_t rid;
	uint64_t version;
	uint64_t size;
};

/* RP record, meta "p/" gid rp. */
struct bv_rprec {
	int64_t time;
	uint8_t consistency;
	char label[BV_LABEL_MAX + 1];
	uint32_t n;
	struct bv_rp_member m[BV_GROUP_MAX_MEMBERS];
};

/* Counters, meta "stat/c" (chunk store) and "stat/m" (maps). */
struct bv_cstat {
	uint64_t chunks, raw_bytes, stored_bytes;
};
struct bv_mstat {
	uint64_t ingested_bytes, map_entries;
};

int bv_name_check(const char *what, const char *name);

/* meta.c: records to and from bytes, and their keys. Getters return
 * ST_ENOTFOUND (== BV_ENOTFOUND) when missing, BV_ECORRUPT when damaged;
 * neither sets a message (callers name the object). */
size_t bv_key_name(uint8_t *key, const char *prefix, const char *name);
size_t bv_key_id(uint8_t *key, const char *prefix, uint64_t id);
size_t bv_key_rp(uint8_t *key, uint64_t gid, uint64_t rp);
void bv_key_map(uint8_t key[BV_MAP_KEY], uint64_t rid, uint64_t chunk,
		uint64_t version);
/* births: rid(be64) version(be64) chunk(be64) -> "" (FORMAT.md). */
#define BV_BIRTH_KEY 24
void bv_key_birth(uint8_t key[BV_BIRTH_KEY], uint64_t rid, uint64_t version,
		  uint64_t chunk);
/* Puts (deletes) the maps entry of (RID, CHUNK, VERSION) and its births
 * key into B: the two only ever change together (invariant 11). */
void bv_map_put(struct bv_kv_batch *b, uint64_t rid, uint64_t chunk,
		uint64_t version, const void *val, size_t vlen);
void bv_map_delete(struct bv_kv_batch *b, uint64_t rid, uint64_t chunk,
		   uint64_t version);

int bv_rrec_get(bv_store *s, const char *name, struct bv_rrec *r);
void bv_rrec_put(struct bv_kv_batch *b, const char *name,
		 const struct bv_rrec *r);
int bv_grec_get(bv_store *s, const char *name, struct bv_grec *g);
void bv_grec_put(struct bv_kv_batch *b, const char *name,
		 const struct bv_grec *g);
int bv_rprec_get(bv_store *s, uint64_t gid, uint64_t rp,
		 struct bv_rprec *p);
void bv_rprec_put(struct bv_kv_batch *b, uint64_t gid, uint64_t rp,
		  const struct bv_rprec *p);
int bv_rprec_decode(const void *v, size_t len, struct bv_rprec *p);
/* Version identities (FORMAT.md, meta "v/" and "vi/"). bv_ident_get
 * fills ID with the identity of version VERSION of replica RID, all zero
 * when it has none (version 0, or committed before identities were kept);
 * BV_ECORRUPT for a damaged record. bv_ident_find sets *VERSION to the
 * newest version of RID with identity ID, or returns ST_ENOTFOUND.
 * bv_ident_put puts both records of (RID, VERSION, ID) into B. */
int bv_ident_get(bv_store *s, uint64_t rid, uint64_t version,
		 uint8_t id[BV_ID_SIZE]);
int bv_ident_find(bv_store *s, uint64_t rid, const uint8_t id[BV_ID_SIZE],
		  uint64_t *version);
void bv_ident_put(struct bv_kv_batch *b, uint64_t rid, uint64_t version,
		  const uint8_t id[BV_ID_SIZE]);
/* A fresh random identity (never all zero). -errno. */
int bv_ident_new(uint8_t id[BV_ID_SIZE]);
/* 1 when ID is all zero: no identity. */
int bv_ident_none(const uint8_t id[BV_ID_SIZE]);
/* ID as 32 hex digits into BUF, or "none" when all zero; returns BUF. */
char *bv_ident_hex(const uint8_t id[BV_ID_SIZE], char buf[2 * BV_ID_SIZE + 1]);

/* Name of replica RID / group GID into BUF (BV_NAME_MAX + 1). */
int bv_id_name(bv_store *s, const char *prefix, uint64_t id, char *buf);
int bv_cstat_get(bv_store *s, struct bv_cstat *c);
void bv_cstat_put(struct bv_kv_batch *b, const struct bv_cstat *c);
int bv_mstat_get(bv_store *s, struct bv_mstat *m);
void bv_mstat_put(struct bv_kv_batch *b, const struct bv_mstat *m);
/* Next id of a sequence ("rid" or "gid"), put into B. */
int bv_seq_next(bv_store *s, struct bv_kv_batch *b, const char *which,
		uint64_t *id);

/* Resolves WHAT (a replica name, else a group name) to its group. */
int bv_resolve_group(bv_store *s, const char *what, char *gname,
		     struct bv_grec *g);

/* Finds replica RID's version and size at RP of group GID: RP 0 is the
 * head; BV_RP_LATEST the latest RP. */
int bv_replica_at(bv_store *s, const char *name, uint64_t rp,
		  struct bv_rrec *r, uint64_t *version, uint64_t *size,
		  uint64_t *rp_out);

/* Removes map entries of RID above version HEAD (an uncommitted version),
 * then its inflight marker. */
int bv_replica_cleanup(bv_store *s, uint64_t rid, uint64_t head);

/* lifecycle.c. bv_life_recover finishes every removal intent ("del/")
 * a crash left (a writable open, before anything else). bv_births_first
 * sets *FIRST to the first version of RID that has births keys
 * (UINT64_MAX: none known, meta "bf/" missing). bv_births_start gives
 * every replica without one a "bf/" record (its head + 1), once: a store
 * made before births. */
int bv_life_recover(bv_store *s);
int bv_births_first(bv_store *s, uint64_t rid, uint64_t *first);
int bv_births_start(bv_store *s);
void bv_births_put(struct bv_kv_batch *b, uint64_t rid, uint64_t first);
/* *RP: LATEST (a group's latest_rp) when its record exists, else the
 * newest RP left (0: none), after an rp rm --force of the latest. */
int bv_rp_latest(bv_store *s, uint64_t gid, uint64_t latest, uint64_t *rp);
/* For policy.c: rp rm of RP of group GNAME by the rules (never forced)
 * with life_lock and the pins (view.h) held; a retention lock; every RP
 * record of group GID in number order. */
struct bv_view_pin;
int bv_life_rp_remove_locked(bv_store *s, const char *gname, uint64_t rp,
			     const struct bv_view_pin *pins, size_t npins);
int bv_life_rp_lock(bv_store *s, uint64_t gid, uint64_t rp, int64_t *until);
int bv_life_rp_each(bv_store *s, uint64_t gid,
		    int (*fn)(void *ud, uint64_t number,
			      const struct bv_rprec *p),
		    void *ud);
/* Tests: called with the name of each step of a removal ("intent",
 * "batch", "end"); a non-zero return stops it there. */
extern int (*bv_life_step_hook)(const char *step);

/* Marks a replica busy for an ingest session; BV_EBUSY if it already is.
 * The _locked forms are called with meta_lock held. */
int bv_busy_take_locked(bv_store *s, uint64_t rid);
void bv_busy_drop_locked(bv_store *s, uint64_t rid);
void bv_busy_drop(bv_store *s, uint64_t rid);

/* replica.c */
void bv_replica_records(struct bv_kv_batch *b, const char *name,
			const struct bv_rrec *r, int own_group);
int bv_replica_name_free(bv_store *s, const char *name);

/* rp.c: fills P's members from group G: a member named in OVER takes that
 * version and size, the others their committed head. */
int bv_rp_build(bv_store *s, const char *gname, const struct bv_grec *g,
		const struct bv_rp_member *over, size_t nover,
		struct bv_rprec *p);
int bv_rp_label_check(const char *label);

/* ingest.c: LEN bytes of zeroed memory mapped for a large buffer (a
 * batch, a reader's chunk buffers), NULL when none; unmapped with
 * munmap(P, LEN). Pages cost nothing until touched, go back to the
 * system at once when unmapped, and never pass through malloc (whose
 * arenas keep freed memory, and whose MALLOC_PERTURB_ writes all of
 * it). */
void *bv_map_buf(size_t len);

/* ingest.c, for promote (engine/promote.c): bv_ingest_add of a replica
 * NAME made at commit with SIZE and CHUNK_SIZE (not the store's
 * default), base 0; and a map entry of chunk CHUNK of SLOT's new version
 * naming stored chunk FP (DIGEST, its plain digest, or NULL) without
 * reading or hashing it: the caller vouches that the chunk index holds
 * FP (an RP's map entry named it). */
int bv_ingest_add_new(bv_ingest *in, const char *name, uint64_t size,
		      uint32_t chunk_size);
int bv_ingest_ref(bv_ingest *in, int slot, uint64_t chunk, const bv_fp *fp,
		  const uint8_t *digest);
/* The fingerprint the session gives LEN bytes of DATA written to SLOT
 * (keyed; tagged with the replica's group when the store's dedup scope
 * is group): seed import names chunks it wrote by it. BV_EINVAL for a
 * bad slot. */
int bv_ingest_fingerprint(const bv_ingest *in, int slot, const void *data,
			  size_t len, bv_fp *fp);
/* For seed import (engine/seed.c): the version SLOT makes takes identity
 * ID (as a stream's result identity: BV_EEXIST when an older version of
 * the replica has it); and one more meta record (KEY up to 64 bytes, VAL
 * up to 256) is put into the commit's synced batch. */
int bv_ingest_result_id(bv_ingest *in, int slot, const uint8_t *id);
int bv_ingest_meta_put(bv_ingest *in, const void *key, size_t klen,
		       const void *val, size_t vlen);
/* Seed import of a group: the replicas the session then makes (all new,
 * bv_ingest_add_new) are the members of new group GROUP, made by the
 * commit (BV_EEXIST when the name is a group's or a replica's). Called
 * before the first replica is added. */
int bv_ingest_new_group(bv_ingest *in, const char *group);

/* ---- gc.c: what ingest, readers and the open share with GC ------------ */

/* The GC state of a writable open; bv_gc_state_free takes NULL. */
int bv_gc_state_new(bv_store *s);
void bv_gc_state_free(bv_store *s);
/* Ingest: pins FP before it looks FP up or relies on an earlier slot
 * holding it (engine/ingest.c work_chunk), waiting while GC has FP
 * condemned; unpins it once the map entry naming FP is applied (APPLIED)
 * or dropped. While GC runs, an applied FP joins the touched set first.
 * No-ops on a read-only store. INVARIANTS.md 5 argues why this is enough. */
void bv_gc_pin(bv_store *s, const bv_fp *fp);
void bv_gc_unpin(bv_store *s, const bv_fp *fp, int applied);
/* Ingest: a batch's records were flushed into container CID and are not
 * in the index yet (add), or now are, or were dropped (drop). GC does not
 * rewrite a container while a batch of it is unindexed. */
void bv_gc_unindexed_add(bv_store *s, uint32_t cid);
void bv_gc_unindexed_drop(bv_store *s, uint32_t cid);
/* In-process readers: a chunk location looked up and read between
 * begin and end is not removed meanwhile (GC removes containers only
 * between reads). No-ops on a read-only store. */
void bv_gc_read_begin(bv_store *s);
void bv_gc_read_end(bv_store *s);
/* Verify in a writing process (bvaultd): no GC runs between begin and
 * end, so no container verify listed is rewritten or removed under its
 * scan, and the index it holds the containers against stays theirs. A
 * GC asked for meanwhile waits. No-ops on a read-only store (whose reads
 * GC in another process keeps safe through the readers file). */
void bv_gc_exclude_begin(bv_store *s);
void bv_gc_exclude_end(bv_store *s);
/* The readers file (FORMAT.md, "Readers"): a writable open makes it; a
 * read-only open enters (byte 0) before its index opens and settles at
 * its generation after. Failures only leave the open unlocked. */
void bv_readers_make(bv_store *s);
void bv_readers_enter(bv_store *s);
void bv_readers_settle(bv_store *s);
/* The GC generation the index (as S's handle sees it) names. */
uint64_t bv_gc_generation(bv_store *s);
/* Tests: HOOK runs on the GC's thread at each point (bv_gc_point). */
enum bv_gc_point {
	BV_GC_AT_MARK = 0,    /* the snapshot is taken, before the mark */
	BV_GC_AT_SWEEP = 1,   /* marked, before the sweep */
	BV_GC_AT_CONDEMN = 2, /* a batch condemned, its delete not written */
	BV_GC_AT_DELETE = 3,  /* its delete written, C not yet released */
	BV_GC_AT_COPIED = 4,  /* copies flushed, before their repoint */
	BV_GC_AT_RETIRED = 5, /* victims retired, before any remove */
	BV_GC_POINTS = 6,
};
void bv_gc_set_hook(bv_store *s, void (*hook)(void *ud, int point),
		    void *ud);
/* Tests only: turn a protection off, to show that its test then fails. */
#define BV_GC_UNSAFE_NO_TOUCHED 1
#define BV_GC_UNSAFE_NO_PINS 2
#define BV_GC_UNSAFE_NO_READERS 4
void bv_gc_set_unsafe(bv_store *s, int flags);

/* ---- chunk map lookups (reader.c) -------------------------------------- */

/* What chunk CHUNK of replica RID is at VERSION: 0 for zero (or never
 * written); else *FP, and 2 with the chunk's plain digest in DIGEST (when
 * not NULL) if the entry holds it, 1 if not. IT is an iterator over the
 * maps CF. */
int bv_map_lookup(struct bv_kv_iter *it, uint64_t rid, uint64_t chunk,
		  uint64_t version, bv_fp *fp, uint8_t *digest);
int bv_map_iter(bv_store *s, uint64_t rid, struct bv_kv_iter **out);

/* Where a walk of the whole map stands: the entry's replica, chunk and
 * version, and the version of the next newer entry of the same chunk
 * (UINT64_MAX: none), which the walk met just before (newer versions
 * sort first). The versions from VER up to, not including, NEWER read
 * the entry. Start from { 0 }. */
struct bv_map_pos {
	uint64_t rid, chunk, ver, newer;
};
/* Moves P to map key K (KL bytes): 0, or ST_ECORRUPT for a key of the
 * wrong size (P is left as it was). */
int bv_map_pos_next(struct bv_map_pos *p, const uint8_t *k, size_t kl);

/* A replica's RPs and head, for map walks that ask which of them read an
 * entry (verify, stats): RPS in number order, so versions ascending. */
struct bv_rp_ver {
	uint64_t number, version, size;
};
struct bv_history {
	uint64_t rid;
	int known;               /* a replica record names RID */
	char name[BV_NAME_MAX + 1];
	uint32_t chunk_size;
	uint64_t head, head_size;
	struct bv_rp_ver *rps;
	size_t n, cap;
};
/* Loads replica RID into H (its buffer is reused; free it with
 * bv_history_free). An id no replica record names is not an error:
 * H->known is 0 and H->name "#RID". */
int bv_history_load(bv_store *s, uint64_t rid, struct bv_history *h);
void bv_history_free(struct bv_history *h);

/* Reads chunks: for each i, FPS[i] into OUTS[i] (RAW_LEN bytes each, the
 * replica's chunk size) through RING. SCRATCH holds n records. */
int bv_chunks_read(bv_store *s, struct bv_ring *ring, const bv_fp *fps,
		   void *const *outs, size_t n, uint32_t raw_len,
		   uint8_t *scratch, struct bv_chunk_read *reads,
		   const char *replica);

/* bv_chunks_read for chunks that are mostly neighbours in the containers
 * (a restore in disk order): through the backend's read_runs (records
 * near each other read as one run, O_DIRECT) into BUF, LEN bytes, page
 * aligned, at least N records plus two pages each and 1 MiB; a backend
 * without it reads record by record, BUF then the records' scratch. */
int bv_chunks_read_runs(bv_store *s, struct bv_ring *ring, const bv_fp *fps,
			void *const *outs, size_t n, uint32_t raw_len,
			uint8_t *buf, size_t len, struct bv_chunk_read *reads,
			const char *replica);

/* The index of the first read of READS[0..N) that failed in
 * bv_chunks_read or bv_chunks_read_runs (N: none). */
size_t bv_chunks_failed(const struct bv_chunk_read *reads, size_t n);
/* Adds to the thread's message which range of REPLICA@RP (RP 0: the
 * head) needs the chunk it names: bytes [FROM, TO). Returns RC. */
int bv_fail_needs(int rc, const char *replica, uint64_t rp, uint64_t from,
		  uint64_t to);

/* reader.c: reads [OFF, OFF + LEN) into BUF; when ZMASK is not NULL,
 * ZMASK[j] is 1 for each chunk j of the range (counted from the chunk of
 * OFF) that is zeros and was not read. */
int bv_reader_fill(bv_reader *r, void *buf, size_t len, uint64_t off,
		   uint8_t *zmask);

/* ---- chunks marked bad (bad.c; INVARIANTS.md 13, FORMAT.md "bad/") ---- */

/* Marks the in-memory set holds; past it, lookups ask the index. */
#define BV_BAD_MAX 65536u
/* The meta "bad/" record: 1, i64 time, u32 container, u64 offset, i32
 * error, u8 n, then n bytes of reason. */
#define BV_BAD_REC_FIXED 26u
#define BV_BAD_REASON_MAX 200u
#define BV_BAD_REC_MAX (BV_BAD_REC_FIXED + BV_BAD_REASON_MAX)

typedef struct bv_bad_info {
	bv_fp fp;
	int64_t time;        /* found, seconds since the epoch */
	uint32_t container;  /* the record verify read (0: the chunk index
			      * entry itself did not decode) */
	uint64_t offset;
	int32_t error;       /* what the read returned (BV_ECHECKSUM, ...) */
	char reason[BV_BAD_REASON_MAX + 1];
} bv_bad_info;

/* Loads the marks into S->bad at open (also read-only). */
int bv_bad_load(bv_store *s);
void bv_bad_free(bv_store *s);
/* 1 when FP is marked bad. Any thread; no allocation. */
int bv_bad_has(bv_store *s, const bv_fp *fp);
/* FP's mark from the index: 0, ST_ENOTFOUND, BV_ECORRUPT. */
int bv_bad_get(bv_store *s, const bv_fp *fp, bv_bad_info *out);
int bv_bad_decode(const uint8_t *v, size_t vl, bv_bad_info *out);
/* Marks the N chunks of MARKS bad in one synced write (time: now), each
 * only while its chunk index entry still names the record described
 * (a heal may have moved it) and it is not marked already; *MARKED says
 * how many were. Needs a writable S. Takes the index lock. */
int bv_bad_mark(bv_store *s, const bv_bad_info *marks, size_t n,
		size_t *marked);
/* Ingest's heal (index_batch, index lock held): the delete of FP's mark
 * into B; once B is written, bv_bad_forget drops it from the set. */
void bv_bad_unmark(struct bv_kv_batch *b, const bv_fp *fp);
void bv_bad_forget(bv_store *s, const bv_fp *fp);
/* The number of "bad/" records. */
int bv_bad_count(bv_store *s, uint64_t *n);
char *bv_fp_hex(const bv_fp *fp, char out[33]);

#endif
