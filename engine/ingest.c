/*
 * ingest.c: ingest sessions. A session writes a new version (head + 1) of
 * each replica it holds; nothing is visible until bv_ingest_commit().
 *
 * How the invariants of INVARIANTS.md are kept here:
 *  1. write_batch() (phase D) makes the batch's new chunk records durable
 *     (the container interface's flush: write + fdatasync) before
 *     index_batch() (phase E, which takes batches only from D) writes the
 *     chunk index and map entries naming them to RocksDB.
 *  2. bv_ingest_add() writes, synced, an "inflight" marker for the replica
 *     before any map entry of the new version exists. Map entries of the
 *     new version are written unsynced per batch; they are invisible to
 *     every reader (readers look up at most a committed version). Commit
 *     is one synced RocksDB batch: replica heads, the new versions'
 *     identities, the RP record, counters, marker removal. Abort, and
 *     open after a crash, delete the entries above the head
 *     (bv_replica_cleanup).
 *  5. work_chunk pins every chunk's fingerprint against GC (bv_gc_pin,
 *     waiting while GC has it condemned) before the chunk index lookup
 *     or any reliance on an earlier slot holding it; batch_unpin drops
 *     the pins once phase E applied the batch's map entries (or the batch
 *     is dropped), telling GC what was applied while it ran. pending_find
 *     trusts only batches not yet indexed, and write_batch tells GC which
 *     container holds records not indexed yet. engine/gc.c argues why
 *     this keeps every chunk a session needs.
 *  6. Argument checks (alignment, range, base RP or base identity, a
 *     result identity already taken, group) run before the first byte of
 *     the session changes; a failure after that poisons the session,
 *     which then only aborts.
 *
 * Chunks wait in a batch of slots (BATCH_BYTES of raw data at most). A
 * slot is processed once:
 *   A-C. workers, one chunk at a time while it is in the core's cache:
 *        zero test, keyed fingerprint, lookup among the slots processed
 *        before in this batch, then in the chunk index (RocksDB's bloom
 *        filters keep misses off the disk), and for a new chunk LZ4,
 *        written straight into the thread's region of the batch's run
 *        buffer, and the record's checksum (work_chunk);
 *        A chunk new in a batch of the session still being written
 *        counts as stored (pending_find);
 *   then the caller, in slot order: dedup between the chunks just
 *        processed (a repeat of one is dropped, compressed or not, and
 *        its record taken out of the run before it is written) and
 *        the list of new chunks to store.
 * A write call of at least DIRECT_MIN bytes processes its whole chunks
 * before it returns, straight from the caller's buffer: no copy. Smaller
 * calls and partly covered chunks copy into the slot's own buffer and are
 * processed when the batch is handed over. A processed slot is never
 * changed: a later write to its chunk hands the batch over first.
 *   D. the writer thread, under the store's write lock: stage records and
 *      flush them (invariant 1);
 *   E. under the store's index lock: one unsynced RocksDB batch of
 *      chunk and map entries, while the writer already writes the next
 *      batch. No thread of its own: the oldest written batch is indexed
 *      as one more item of the next pool run (so that it takes a share
 *      of the cores instead of preempting the workers), or by the caller
 *      when it must wait for the queue anyway (index_next).
 * Memory: a batch's raw arena and run buffer come out of the store's
 * budget (bv_ingest_memory in bvault.h), shared by every session, and are
 * mapped and unmapped whole: allocation is per batch at most, never per
 * chunk, and a single session keeps its batches for its whole life.
 * next_batch picks the batch to fill at each batch boundary: one of the
 * session's own that is idle (indexed), a new one if the budget and the
 * session's share of it allow, else it waits for its own oldest batch
 * (its writer and its own index_next finish that: no wait on another
 * session, nor on anything another session holds). A session that holds
 * no batch at all gets a smallest one even past the budget. Idle batches
 * past the session's share, or of another size than its share allows
 * now, are unmapped there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "stream.h"

#define BATCH_BYTES (8u << 20)
/* The least raw data of a batch: what a session gets when the budget
 * leaves it less than a full batch. */
#define BATCH_MIN_BYTES (1u << 20)
/* Batches per session: one being filled, the others queued for or in the
 * flusher, so that a slow fdatasync does not stall hashing and LZ4. With
 * 4, a shared host's disk hiccups left the cores 8-18 % idle in some
 * rounds of bvbench; with 6, 1-4 %. Pages of a batch's buffers that a
 * workload never touches (the raw arena, with large writes) cost no
 * memory. */
#define NBATCH 6
/* Write calls this large process their whole chunks in place; below it,
 * the per-call phases would cost more than the copy they save. */
#define DIRECT_MIN (1u << 20)
/* Least size of a region of a batch's run buffer (see struct batch). */
#define REGION_MIN (1u << 20)

struct sess_rep {
	char name[BV_NAME_MAX + 1];
	struct bv_rrec r;   /* as committed when added (head = base) */
	uint64_t base_rp;   /* the RP the sender claimed */
	int base_by_id;     /* the base was checked by identity, not by RP */
	uint8_t result_id[BV_ID_SIZE]; /* the stream's, or none: fresh */
	uint64_t ver;       /* version being written */
	uint64_t size;      /* disk size as the session has it now */
	int created;        /* replica is made at commit */
	uint64_t ingested;  /* non-zero chunk bytes mapped */
	uint64_t entries;   /* map entries written */
};

struct slot {
	uint32_t rep;
	uint64_t chunk;
	uint8_t *raw;      /* the slot's own buffer */
	const uint8_t *data; /* what phases A-C read: raw, or the
			      * caller's buffer during its write call */
	uint8_t done;      /* phases A to C ran; the slot is fixed */
	uint8_t zero;      /* the chunk is all zeros */
	uint8_t found;     /* the chunk is stored or in the batch already */
	uint8_t has_digest; /* digest holds the chunk's plain digest */
	uint8_t dead;      /* built a record, then found to repeat an
			    * earlier slot: the record is dropped (seal_run) */
	uint8_t pinned;    /* fp is pinned against GC until the map entry
			    * is applied or dropped (gc.c) */
	uint8_t heal;      /* stored, but marked bad: a fresh record
			    * replaces it (bad.c, invariant 13) */
	int err;           /* lookup failed (phase A-C) */
	bv_fp fp;
	uint8_t digest[16];  /* plain digest (consistency checks:
			      * bv_reader_digests): computed for a new chunk,
			      * taken from the index for a stored one */
	struct bv_chunk_loc loc; /* of a new chunk: offset in the run buffer
				  * until phase D places the run */
};

/* One batch of pending chunks and everything needed to process it. */
struct batch {
	size_t used;
	size_t cap;                    /* slots; 0: not allocated */
	uint64_t cost;                 /* bytes mapped, charged to the
					* store's budget */
	int queued;                    /* handed over, not indexed yet
					* (under the session's lock) */
	size_t raw_len;
	uint8_t *raw_arena;
	/* The records of the batch's new chunks. Each pool thread takes a
	 * region of the run buffer at a time and LZ4 writes each record's
	 * payload in place there, so nothing is copied between LZ4 and the
	 * disk; a region is closed when the next record might not fit. The
	 * regions' used parts, each padded with zeros to a page, are written
	 * back to back as the segments of one run (bv_cset_appendv). */
	uint8_t *run;
	size_t run_cap;
	size_t region;                 /* bytes per region */
	atomic_size_t run_used;        /* bytes of regions handed out */
	size_t *reg_used;              /* per region: record bytes, once
					* closed */
	size_t *reg_pos, *reg_end;     /* per pool thread: its open region's
					* free part (both 0: none) */
	size_t *seg_at;                /* per region: where it starts in the
					* run as written */
	struct iovec *seg;             /* the segments of the run */
	unsigned nseg;
	struct slot *slots;
	int32_t *htab;                 /* (rep, chunk) -> slot + 1 */
	int32_t *ftab;                 /* fingerprint -> slot + 1 */
	size_t *idx;                   /* new chunks: slot indexes */
	size_t nnew;
	size_t *pend;                  /* slots waiting for phases A-C */
	size_t npend;
	size_t ndead;                  /* slots with dead records */
	size_t *recs;                  /* seal_run: slots with records */
	struct bv_ctail tail;          /* durable container tail after D */
	struct bv_kv_batch *kvb;
	uint32_t wcid;                 /* D wrote the run here, E has not
					* indexed it yet (gc.c); 0: none */
	atomic_int indexed;            /* E ran: pending_find no longer
					* trusts its new chunks (gc.c d) */
};

struct bv_ingest {
	bv_store *s;
	const size_t *plist;           /* phases A-C: the slots they run on */
	int pindex;                    /* item 0 of the pool run is phase E */
	atomic_int werr_taken;         /* a worker's lookup failed: */
	char werr_msg[256];            /* its message */
	struct sess_rep rep[BV_SESSION_MAX];
	size_t nrep;
	uint64_t gid;                  /* 0 until the first replica */
	char gname[BV_NAME_MAX + 1];
	int failed;                    /* poisoned: only abort remains */
	char rbd_label[256];           /* to-snapshot of the first rbd diff
					* that named one: the RP's label
					* when the commit gives none */
	char failmsg[512];
	/* bv_ingest_meta_put (seed import): one more meta record for the
	 * commit's batch; mklen 0: none. */
	uint8_t mkey[64], mval[256];
	size_t mklen, mvlen;
	/* bv_ingest_new_group (seed import): the replicas made by this
	 * session form this new group, made at commit; "": none. */
	char newgroup[BV_NAME_MAX + 1];
	struct bv_ring *ring;          /* the caller's thread */
	struct bv_kv_batch *batch;     /* zero entries from the caller */
	struct bv_kv_iter *it;         /* maps; remade after each write */
	int it_stale;
	uint8_t *scratch;              /* one record, for patch reads */
	uint8_t *lastnew;              /* per pool thread: its last chunk
					* was new (work_chunk's order) */
	unsigned nthreads;             /* pool threads, the caller's too */

	uint32_t slot_size;
	size_t nfull;                  /* slots of a full batch */
	size_t nmin;                   /* slots of a smallest batch */
	size_t hmask;                  /* htab and ftab, for NFULL slots */
	uint64_t held;                 /* bytes of batches held (cost) */
	int counted;                   /* in the store's bmem_sessions */
	struct batch b[NBATCH];        /* cap 0: not allocated */
	struct batch *cur;             /* being filled by the caller */

	/* The writer thread runs phase D of one batch while the caller
	 * fills and compresses the next; phase E of written batches runs
	 * in pool runs and waits (index_next). */
	pthread_t flusher;
	int flusher_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct batch *queue[NBATCH];   /* FIFO: handed over, not indexed */
	unsigned qhead, qlen;          /* qlen counts the ones in hand too */
	unsigned nwritten;             /* the first NWRITTEN are past D */
	int indexing;                  /* a thread is in index_next */
	int flusher_stop;
	int flush_rc;
	char flush_msg[512];
	struct bv_ring *fring;         /* the flusher's ring */
};

static int poison(bv_ingest *in, int rc)
{
	if (!in->failed) {
		in->failed = rc;
		snprintf(in->failmsg, sizeof in->failmsg, "%s",
			 bv_last_error());
	}
	return rc;
}

static int check_usable(bv_ingest *in)
{
	if (in->failed)
		return bv_fail(in->failed, "%s (the session failed before "
			       "and can only be aborted)", in->failmsg);
	return 0;
}

static int wait_queue(bv_ingest *in, unsigned max);

/* Gives COST bytes of batch memory back to the store's budget. */
static void bmem_give(bv_ingest *in, uint64_t cost)
{
	bv_store *s = in->s;
	pthread_mutex_lock(&s->bmem_lock);
	s->bmem_used -= cost;
	pthread_mutex_unlock(&s->bmem_lock);
	in->held -= cost;
}

/* Unmaps B's buffers (RSS goes back to the system, whatever malloc's
 * arenas would keep) and gives their bytes back; B may be half built or
 * never allocated. */
static void batch_free(bv_ingest *in, struct batch *b)
{
	if (b->raw_arena)
		munmap(b->raw_arena, b->raw_len);
	if (b->run)
		munmap(b->run, b->run_cap);
	free(b->reg_used);
	free(b->reg_pos);
	free(b->reg_end);
	free(b->seg_at);
	free(b->seg);
	free(b->slots);
	free(b->htab);
	free(b->ftab);
	free(b->idx);
	free(b->pend);
	free(b->recs);
	bv_kv_batch_free(b->kvb);
	if (b->cost)
		bmem_give(in, b->cost);
	memset(b, 0, sizeof *b);
}

/* The run buffer of a batch of N slots of SIZE bytes: returns its number
 * of regions, and the bytes of each in *REGION. A region holds PER
 * records of the largest size LZ4 may write. A thread closes a region
 * only when less than that is left, so a closed region holds at least
 * PER records; with one record per slot at most, N / PER closed regions
 * and one open region per thread are all a batch can take. A region is
 * an eighth of the batch's raw data, REGION_MIN at most (a full batch's),
 * and one largest record at least: a small batch has a small run too. */
static size_t batch_regions(size_t n, uint32_t size, unsigned nthreads,
			    size_t *region)
{
	size_t worst = bv_rec_size((uint32_t)bv_codec_work_bound(size));
	size_t r = n * (size_t)size / 8;
	if (r > REGION_MIN)
		r = REGION_MIN;
	if (r < worst)
		r = worst;
	*region = (r + 4095) & ~(size_t)4095;
	return n / (*region / worst) + nthreads + 1;
}

/* Bytes a batch of N slots of SIZE bytes maps: what the budget counts. */
static uint64_t batch_cost(size_t n, uint32_t size, unsigned nthreads)
{
	size_t region, nreg = batch_regions(n, size, nthreads, &region);
	return (uint64_t)n * size + (uint64_t)nreg * region;
}

void *bv_map_buf(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Builds B with N slots of SIZE bytes (hash tables of H entries); B is
 * zeroed first, and left for batch_free on failure. */
static int batch_alloc(struct batch *b, size_t n, size_t h, uint32_t size,
		       unsigned nthreads)
{
	memset(b, 0, sizeof *b);
	size_t nreg = batch_regions(n, size, nthreads, &b->region);
	b->run_cap = nreg * b->region;
	b->raw_len = n * (size_t)size;
	if (!(b->raw_arena = bv_map_buf(b->raw_len)) ||
	    !(b->run = bv_map_buf(b->run_cap)))
		return -ENOMEM;
	b->reg_used = calloc(nreg, sizeof *b->reg_used);
	b->seg_at = calloc(nreg, sizeof *b->seg_at);
	b->seg = calloc(nreg, sizeof *b->seg);
	b->reg_pos = calloc(nthreads, sizeof *b->reg_pos);
	b->reg_end = calloc(nthreads, sizeof *b->reg_end);
	b->slots = calloc(n, sizeof *b->slots);
	b->htab = calloc(h, sizeof *b->htab);
	b->ftab = calloc(h, sizeof *b->ftab);
	b->idx = calloc(n, sizeof *b->idx);
	b->pend = calloc(n, sizeof *b->pend);
	b->recs = calloc(n, sizeof *b->recs);
	if (!b->reg_used || !b->seg_at || !b->seg || !b->reg_pos ||
	    !b->reg_end || !b->slots || !b->htab || !b->ftab || !b->idx ||
	    !b->pend || !b->recs || bv_kv_batch_new(&b->kvb))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		b->slots[i].raw = b->raw_arena + i * size;
	b->cap = n;
	return 0;
}

/* The share of the budget the session may hold now (*SHARE: the budget
 * over the open sessions) and the slots of the batches it should fill:
 * a full batch, halved while one would not fit in the share, NMIN at
 * least. */
static size_t batch_want(bv_ingest *in, uint64_t *share)
{
	bv_store *s = in->s;
	size_t n = in->nfull;

	pthread_mutex_lock(&s->bmem_lock);
	*share = s->bmem_limit / (s->bmem_sessions ? s->bmem_sessions : 1);
	pthread_mutex_unlock(&s->bmem_lock);
	while (n / 2 >= in->nmin &&
	       batch_cost(n, in->slot_size, in->nthreads) > *share)
		n /= 2;
	return n;
}

/* Charges the budget for a batch of *N slots: when it fits under the
 * budget and in SHARE, or, smallest (*N becomes NMIN), when the session
 * holds no batch at all. Returns the cost, 0 when nothing was charged. */
static uint64_t bmem_take(bv_ingest *in, size_t *n, uint64_t share)
{
	bv_store *s = in->s;
	uint64_t cost = batch_cost(*n, in->slot_size, in->nthreads);

	pthread_mutex_lock(&s->bmem_lock);
	if (s->bmem_used + cost > s->bmem_limit || in->held + cost > share) {
		if (in->held) {
			cost = 0;
			goto out;
		}
		/* The one batch that lets the session go on. */
		*n = in->nmin;
		cost = batch_cost(*n, in->slot_size, in->nthreads);
		if (s->bmem_used + cost > s->bmem_limit)
			s->bmem_over++;
	}
	s->bmem_used += cost;
	if (s->bmem_used > s->bmem_peak)
		s->bmem_peak = s->bmem_used;
	in->held += cost;
out:
	pthread_mutex_unlock(&s->bmem_lock);
	return cost;
}

/* Makes in->cur a batch to fill (see the top: Memory). Called by the
 * caller between pool runs, with in->cur handed over or NULL: the
 * batches that are neither queued nor cur are idle, and only the caller
 * could change that. */
static int next_batch(bv_ingest *in)
{
	int queued[NBATCH];
	unsigned qlen;
	int rc;

	in->cur = NULL;
	for (;;) {
		uint64_t share;
		size_t want = batch_want(in, &share);
		struct batch *pick = NULL, *hole = NULL;

		pthread_mutex_lock(&in->lock);
		for (int j = 0; j < NBATCH; j++)
			queued[j] = in->b[j].queued;
		qlen = in->qlen;
		pthread_mutex_unlock(&in->lock);
		for (int j = 0; j < NBATCH; j++) {
			struct batch *b = &in->b[j];
			if (b->cap && !queued[j] && b->cap == want && !pick) {
				pick = b;
				continue;
			}
			/* Idle, and of a size the share no longer allows, or
			 * more than the share. */
			if (b->cap && !queued[j] &&
			    (b->cap != want || in->held > share))
				batch_free(in, b);
			if (!b->cap && !hole)
				hole = b;
		}
		if (pick) {
			in->cur = pick;
			return 0;
		}
		size_t n = want;
		uint64_t cost = hole ? bmem_take(in, &n, share) : 0;
		if (cost) {
			rc = batch_alloc(hole, n, in->hmask + 1, in->slot_size,
					 in->nthreads);
			hole->cost = cost;
			if (rc) {
				batch_free(in, hole);
				return bv_fail(rc, "ingest: cannot allocate "
					       "%llu MiB of batch buffers",
					       (unsigned long long)(cost >> 20));
			}
			in->cur = hole;
			return 0;
		}
		/* The budget is spent: the oldest batch of this session's
		 * own comes back (the session holds a batch, and none is
		 * idle: it is queued). */
		if (qlen == 0)
			return bv_fail(-ENOMEM, "ingest: no batch to fill");
		if ((rc = wait_queue(in, qlen - 1)))
			return rc;
	}
}

static void free_arenas(bv_ingest *in)
{
	for (int i = 0; i < NBATCH; i++)
		batch_free(in, &in->b[i]);
	free(in->scratch);
	in->scratch = NULL;
	free(in->lastnew);
	in->lastnew = NULL;
	in->nthreads = 0;
	in->cur = NULL;
	in->nfull = 0;
	in->slot_size = 0;
}

/* Called with no batch pending anywhere. */
static int alloc_arenas(bv_ingest *in, uint32_t slot_size)
{
	bv_store *s = in->s;
	size_t n = BATCH_BYTES / slot_size, m = BATCH_MIN_BYTES / slot_size;
	size_t h = 1;
	int rc;

	if (n < 8)
		n = 8;
	if (m < 2)
		m = 2;
	while (h < 2 * n)
		h <<= 1;
	free_arenas(in);
	/* Per thread of a pool run: which order work_chunk takes. */
	unsigned nt = bv_pool_size(s->pool) + 1;
	if (posix_memalign((void **)&in->scratch, 4096,
			   bv_rec_size(slot_size)))
		in->scratch = NULL;
	if (!in->scratch || !(in->lastnew = calloc(nt, 1))) {
		rc = bv_fail(-ENOMEM, "ingest: cannot allocate a session's "
			     "buffers");
		goto fail;
	}
	in->nthreads = nt;
	in->slot_size = slot_size;
	in->nfull = n;
	in->nmin = m;
	in->hmask = h - 1;
	if (!in->counted) {
		pthread_mutex_lock(&s->bmem_lock);
		s->bmem_sessions++;
		pthread_mutex_unlock(&s->bmem_lock);
		in->counted = 1;
	}
	if ((rc = next_batch(in)))
		goto fail;
	return 0;
fail:
	free_arenas(in);
	return rc;
}

static size_t hash_rc(uint32_t rep, uint64_t chunk)
{
	uint64_t x = chunk * 0x9E3779B97F4A7C15ull ^ (uint64_t)rep << 56;
	return (size_t)(x ^ (x >> 29));
}

static struct slot *find_slot(bv_ingest *in, uint32_t rep, uint64_t chunk)
{
	struct batch *b = in->cur;
	for (size_t h = hash_rc(rep, chunk) & in->hmask;;
	     h = (h + 1) & in->hmask) {
		int32_t v = b->htab[h];
		if (!v)
			return NULL;
		struct slot *sl = &b->slots[v - 1];
		if (sl->rep == rep && sl->chunk == chunk)
			return sl;
	}
}

static struct slot *new_slot(bv_ingest *in, uint32_t rep, uint64_t chunk)
{
	struct batch *b = in->cur;
	struct slot *sl = &b->slots[b->used];
	size_t h = hash_rc(rep, chunk) & in->hmask;
	while (b->htab[h])
		h = (h + 1) & in->hmask;
	b->htab[h] = (int32_t)++b->used;
	sl->rep = rep;
	sl->chunk = chunk;
	sl->data = sl->raw;
	sl->done = 0;
	sl->zero = 0;
	return sl;
}

/* ---- phase D on the writer thread, phase E in index_next ---------------- */

/* D: stages the batch's new chunks and makes them durable (invariant 1). */
static int write_batch(bv_ingest *in, struct batch *b, struct bv_ring *ring)
{
	bv_store *s = in->s;
	int rc = 0;

	if (!b->nnew)
		return 0;
	uint32_t cid = 0;
	uint64_t base = 0;
	pthread_mutex_lock(&s->write_lock);
	rc = s->cs->ops->appendv(s->cs, ring, b->seg, b->nseg, &cid, &base);
	if (!rc)
		rc = s->cs->ops->flush(s->cs, ring, &b->tail);
	if (!rc) {
		/* Under the write lock, as GC's seal: a container GC picks
		 * has no batch it does not see (gc.c, step 1). */
		b->wcid = cid;
		bv_gc_unindexed_add(s, cid);
	}
	for (size_t j = 0; j < b->nnew && !rc; j++) {
		struct slot *sl = &b->slots[b->idx[j]];
		size_t k = (size_t)sl->loc.offset / b->region;
		sl->loc.container = cid;
		sl->loc.offset = base + b->seg_at[k] +
				 sl->loc.offset % b->region;
	}
	if (rc) {
		s->cs->ops->rollback(s->cs);
		rc = bv_fail(rc, "ingest of replica %s%s: writing chunk "
			     "containers in %s: %s", in->rep[0].name,
			     in->nrep > 1 ? " and others" : "", s->path,
			     bv_strerror(rc));
	}
	pthread_mutex_unlock(&s->write_lock);
	return rc;
}

/* The durable tail batch B flushed to is past the one the index holds.
 * Caller holds the index lock. */
static int tail_later(const struct batch *b, const bv_store *s)
{
	return s->cs->ops->tail_cmp(s->cs, &b->tail, &s->tail) > 0;
}

/* Orders a batch's new chunks by fingerprint (qsort_r context: slots). */
static int by_fp(const void *a, const void *b, void *ctx)
{
	const struct slot *slots = ctx;
	return memcmp(slots[*(const size_t *)a].fp.b,
		      slots[*(const size_t *)b].fp.b, sizeof slots->fp.b);
}

/* E: writes the batch's chunk and map entries in one unsynced RocksDB
 * batch, with the chunk counters and the container tail. The tail never
 * moves back: a batch of another session may have recorded a later one
 * (every tail reported by a flush is durable). */
static int index_batch(bv_ingest *in, struct batch *b)
{
	bv_store *s = in->s;
	struct bv_cstat cst;
	uint8_t loc[BV_LOC_DIGEST_SIZE], mval[32];
	int rc = 0;

	pthread_mutex_lock(&s->index_lock);
	if (b->nnew) {
		if ((rc = bv_cstat_get(s, &cst))) {
			rc = bv_fail(rc, "ingest: chunk counters: %s",
				     bv_strerror(rc));
			goto out;
		}
		/* In key order: each insert into the memtable's skip list
		 * then starts from where the previous one ended, instead of
		 * searching from the top for a random key. */
		qsort_r(b->idx, b->nnew, sizeof *b->idx, by_fp, b->slots);
		for (size_t j = 0; j < b->nnew; j++) {
			struct slot *sl = &b->slots[b->idx[j]];
			bv_chunk_loc_encode(&sl->loc, loc);
			memcpy(loc + BV_LOC_SIZE, sl->digest, 16);
			bv_kv_batch_put(b->kvb, BV_CF_CHUNKS, sl->fp.b,
					sizeof sl->fp.b, loc,
					BV_LOC_DIGEST_SIZE);
			if (sl->heal) {
				/* The heal: the entry now names the fresh
				 * record; the chunk was counted already. */
				bv_bad_unmark(b->kvb, &sl->fp);
				continue;
			}
			cst.chunks++;
			cst.raw_bytes += sl->loc.raw_len;
			cst.stored_bytes += sl->loc.stored_len;
		}
		bv_cstat_put(b->kvb, &cst);
		if (tail_later(b, s)) {
			bv_kv_batch_put(b->kvb, BV_CF_META, "tail", 4,
					b->tail.b, b->tail.len);
		}
	}
	for (size_t i = 0; i < b->used; i++) {
		struct slot *sl = &b->slots[i];
		struct sess_rep *r = &in->rep[sl->rep];
		size_t vl = 0;
		if (!sl->zero) {
			/* Format 2: the digest too, so that a consistency
			 * check reads the map alone. */
			memcpy(mval, sl->fp.b, sizeof sl->fp.b);
			memcpy(mval + sizeof sl->fp.b, sl->digest, 16);
			vl = sizeof sl->fp.b;
			if (sl->has_digest && s->format >= 2)
				vl += 16;
		}
		bv_map_put(b->kvb, r->r.rid, sl->chunk, r->ver,
			   vl ? mval : NULL, vl);
	}
	if ((rc = bv_kv_write(s->kv, b->kvb, 0)))
		rc = bv_fail(rc, "ingest of replica %s%s: index batch: %s",
			     in->rep[0].name, in->nrep > 1 ? " and others" : "",
			     bv_kv_error());
	else if (b->nnew && tail_later(b, s)) {
		s->tail = b->tail;
	}
	for (size_t j = 0; !rc && j < b->nnew; j++)
		if (b->slots[b->idx[j]].heal)
			bv_bad_forget(s, &b->slots[b->idx[j]].fp);
out:
	pthread_mutex_unlock(&s->index_lock);
	bv_kv_batch_clear(b->kvb);
	return rc;
}

/* After phase E of B (APPLIED: its map entries are in the index) or
 * when B is dropped: the pins of its slots go, and GC may rewrite the
 * container its run went to. */
static void batch_unpin(bv_ingest *in, struct batch *b, int applied)
{
	atomic_store(&b->indexed, 1);
	for (size_t i = 0; i < b->used; i++) {
		struct slot *sl = &b->slots[i];
		if (!sl->pinned)
			continue;
		bv_gc_unpin(in->s, &sl->fp, applied);
		sl->pinned = 0;
	}
	if (b->wcid) {
		bv_gc_unindexed_drop(in->s, b->wcid);
		b->wcid = 0;
	}
}

static void flush_failed(bv_ingest *in, int rc)
{
	if (rc && !in->flush_rc) {
		in->flush_rc = rc;
		snprintf(in->flush_msg, sizeof in->flush_msg, "%s",
			 bv_last_error());
	}
}

/* The writer: phase D of each batch in turn. After a failure the
 * batches behind it are dropped (the session is poisoned and will only
 * abort), but still passed on, so that the queue drains. */
static void *flusher_main(void *arg)
{
	bv_ingest *in = arg;
	pthread_mutex_lock(&in->lock);
	for (;;) {
		while (in->nwritten == in->qlen && !in->flusher_stop)
			pthread_cond_wait(&in->cond, &in->lock);
		if (in->nwritten == in->qlen)
			break;
		struct batch *b = in->queue[(in->qhead + in->nwritten) %
					    NBATCH];
		int failed = in->flush_rc;
		pthread_mutex_unlock(&in->lock);
		int rc = failed ? 0 : write_batch(in, b, in->fring);
		pthread_mutex_lock(&in->lock);
		flush_failed(in, rc);
		in->nwritten++;
		pthread_cond_broadcast(&in->cond);
	}
	pthread_mutex_unlock(&in->lock);
	return NULL;
}

/* Phase E of the oldest written batch, unless none is written or another
 * thread is indexing (batches are indexed one at a time, in order).
 * Returns whether it indexed one. After a failure the batch is dropped
 * (the session is poisoned and will only abort) but still taken out of
 * the queue, so that the queue drains. */
static int index_next(bv_ingest *in)
{
	pthread_mutex_lock(&in->lock);
	if (!in->nwritten || in->indexing) {
		pthread_mutex_unlock(&in->lock);
		return 0;
	}
	in->indexing = 1;
	struct batch *b = in->queue[in->qhead];
	int failed = in->flush_rc;
	pthread_mutex_unlock(&in->lock);
	int rc = failed ? 0 : index_batch(in, b);
	if (failed)
		bv_kv_batch_clear(b->kvb);
	batch_unpin(in, b, !failed && !rc);
	pthread_mutex_lock(&in->lock);
	flush_failed(in, rc);
	b->queued = 0;
	in->qhead = (in->qhead + 1) % NBATCH;
	in->qlen--;
	in->nwritten--;
	in->indexing = 0;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
	return 1;
}

/* Waits until at most MAX batches are queued or in the flusher; with 0,
 * every batch handed over is in the index (and the maps iterator must be
 * remade). */
static int wait_queue(bv_ingest *in, unsigned max)
{
	int rc;
	if (!in->flusher_started)
		return 0;
	pthread_mutex_lock(&in->lock);
	while (in->qlen > max) {
		if (in->nwritten && !in->indexing) {
			pthread_mutex_unlock(&in->lock);
			index_next(in);
			pthread_mutex_lock(&in->lock);
			continue;
		}
		pthread_cond_wait(&in->cond, &in->lock);
	}
	rc = in->flush_rc;
	pthread_mutex_unlock(&in->lock);
	if (max == 0)
		in->it_stale = 1;
	if (rc)
		return poison(in, bv_fail(rc, "%s", in->flush_msg));
	return 0;
}

static int wait_flusher(bv_ingest *in)
{
	return wait_queue(in, 0);
}

static int refresh_iter(bv_ingest *in)
{
	int rc;
	if ((rc = wait_flusher(in)))
		return rc;
	if (in->it && !in->it_stale)
		return 0;
	bv_kv_iter_free(in->it);
	in->it = NULL;
	if ((rc = bv_map_iter(in->s, 0, &in->it)))
		return bv_fail_storage(rc, "ingest");
	in->it_stale = 0;
	return 0;
}

/* ---- phases A-C: the worker function ----------------------------------- */

static size_t hash_fp(const bv_fp *fp)
{
	uint64_t x;
	memcpy(&x, fp->b, 8);
	return (size_t)(x ^ (x >> 31));
}

/* The slot of batch B holding FP, among those processed and entered in
 * ftab; NULL if none. */
/* The fingerprint of a chunk of replica slot REP: keyed, and in a store
 * whose dedup scope is group, tagged with the replica's group, so that
 * the chunk index is looked up, and the chunk stored, for that group
 * only (storage/FORMAT.md, "Record"). */
static void chunk_fp(const bv_ingest *in, size_t rep, const void *data,
		     size_t len, bv_fp *fp)
{
	bv_fp_compute(in->s->secret, data, len, fp);
	if (in->s->dedup_scope == BV_DEDUP_GROUP)
		bv_fp_tag(in->s->secret, in->rep[rep].r.gid, fp);
}

static struct slot *ftab_in(bv_ingest *in, struct batch *b, const bv_fp *fp,
			    size_t *hp)
{
	size_t h = hash_fp(fp) & in->hmask;
	struct slot *hit = NULL;
	for (; b->ftab[h]; h = (h + 1) & in->hmask)
		if (bv_fp_equal(&b->slots[b->ftab[h] - 1].fp, fp)) {
			hit = &b->slots[b->ftab[h] - 1];
			break;
		}
	if (hp)
		*hp = h;
	return hit;
}

static struct slot *ftab_find(bv_ingest *in, const bv_fp *fp, size_t *hp)
{
	return ftab_in(in, in->cur, fp, hp);
}

/* A slot of another batch of the session where FP is new: that batch is
 * being written or indexed (or is done, and the index has it), so this
 * chunk needs no record of its own. Batches are indexed in order, so its
 * chunk entry is in the index before any map entry of this batch. The
 * other batches' ftab and their slots' fingerprints and digests do not
 * change while the workers run: a batch is emptied only by the caller,
 * between pool runs. */
static const struct slot *pending_find(bv_ingest *in, const bv_fp *fp)
{
	for (int j = 0; j < NBATCH; j++) {
		struct batch *b = &in->b[j];
		const struct slot *hit;
		/* An indexed batch's chunk may have been swept since (its map
		 * entry overwritten, then GC): the chunk index decides. */
		if (b == in->cur || b->used == 0 || atomic_load(&b->indexed))
			continue;
		hit = ftab_in(in, b, fp, NULL);
		if (hit && !hit->found)
			return hit;
	}
	return NULL;
}

/* Closes thread T's open region of B, if it has one. */
static void region_close(struct batch *b, unsigned t)
{
	if (b->reg_end[t] == 0)
		return;
	size_t start = b->reg_end[t] - b->region;
	b->reg_used[start / b->region] = b->reg_pos[t] - start;
	b->reg_pos[t] = b->reg_end[t] = 0;
}

/* Room for a record of up to NEED bytes in thread T's region of B (a new
 * region when the open one is short); NULL only if the batch's bound on
 * regions were wrong. */
static uint8_t *region_room(struct batch *b, unsigned t, size_t need)
{
	if (b->reg_end[t] - b->reg_pos[t] < need) {
		region_close(b, t);
		size_t off = atomic_fetch_add(&b->run_used, b->region);
		if (off + b->region > b->run_cap)
			return NULL;
		b->reg_pos[t] = off;
		b->reg_end[t] = off + b->region;
	}
	return b->run + b->reg_pos[t];
}

static void work_chunk(void *ctx, size_t i)
{
	bv_ingest *in = ctx;
	if (in->pindex) {
		/* Item 0 of the run is phase E of a written batch. */
		if (i == 0) {
			index_next(in);
			return;
		}
		i--;
	}
	struct batch *b = in->cur;
	struct slot *sl = &b->slots[in->plist[i]];
	uint32_t cs = in->rep[sl->rep].r.chunk_size;
	unsigned t = bv_pool_thread_index();
	uint8_t codec = BV_CODEC_RAW;
	int64_t n = 0;
	uint8_t v[64];
	size_t vl;
	int rc;

	sl->found = 0;
	sl->has_digest = 0;
	sl->dead = 0;
	sl->heal = 0;
	sl->err = 0;
	if (sl->zero)
		return;
	if (bv_is_zero(sl->data, cs)) {
		sl->zero = 1;
		return;
	}
	/* The record's place, LZ4 writing its payload there directly; it is
	 * kept only if the chunk turns out new. */
	size_t need = bv_rec_size((uint32_t)bv_codec_work_bound(cs));
	uint8_t *rec = region_room(b, t, need);
	if (rec == NULL) {
		sl->err = -ENOMEM;
		if (!atomic_exchange(&in->werr_taken, 1))
			snprintf(in->werr_msg, sizeof in->werr_msg,
				 "no room left in the batch's run buffer");
		return;
	}
	uint8_t *out = rec + BV_REC_HDR;
	size_t cap = b->reg_end[t] - b->reg_pos[t] - BV_REC_HDR;
	/* Order by what this thread saw last. After a new chunk, LZ4 goes
	 * first: it reads the chunk from memory at its own pace, as the
	 * single-core reference does, and the fingerprint then reads it
	 * from the cache, about four times faster than from memory. After a
	 * stored chunk, the fingerprint goes first, so that a run of stored
	 * chunks costs no LZ4 at all. A wrong guess costs one LZ4 of a
	 * chunk that turns out to be stored. */
	int lz_first = in->lastnew[t];
	if (lz_first)
		n = bv_codec_encode(sl->data, cs, out, cap, &codec);
	chunk_fp(in, sl->rep, sl->data, cs, &sl->fp);
	/* Before anything decides that the chunk is stored (gc.c, cases c
	 * and d): held until the batch's map entries are applied. */
	if (!sl->pinned) {
		bv_gc_pin(in->s, &sl->fp);
		sl->pinned = 1;
	}
	/* ftab is only read while the workers run, and its slots are
	 * fixed. */
	const struct slot *same = ftab_find(in, &sl->fp, NULL);
	if (!same)
		same = pending_find(in, &sl->fp);
	if (same) {
		sl->found = 1;
		sl->has_digest = same->has_digest;
		memcpy(sl->digest, same->digest, 16);
		in->lastnew[t] = 0;
		return;
	}
	rc = bv_kv_get(in->s->kv, BV_CF_CHUNKS, sl->fp.b, sizeof sl->fp.b, v,
		       sizeof v, &vl);
	/* Invariant 13: never dedup against a chunk marked bad; the chunk
	 * is written anew, and its index entry repointed (index_batch). */
	if (rc == 0 && bv_bad_has(in->s, &sl->fp)) {
		sl->heal = 1;
		rc = ST_ENOTFOUND;
	}
	if (rc == 0) {
		sl->found = 1;
		sl->has_digest =
			(uint8_t)bv_chunk_entry_digest(v, vl, sl->digest);
		in->lastnew[t] = 0;
		return;
	}
	if (rc != ST_ENOTFOUND) {
		sl->err = rc;
		if (!atomic_exchange(&in->werr_taken, 1))
			snprintf(in->werr_msg, sizeof in->werr_msg,
				 "chunk index lookup: %s",
				 rc == ST_EDB ? bv_kv_error() :
						bv_strerror(rc));
		return;
	}
	in->lastnew[t] = 1;
	/* While the chunk is in cache (fingerprint or LZ4 just read it). */
	bv_digest_compute(sl->data, cs, sl->digest);
	sl->has_digest = 1;
	if (!lz_first)
		n = bv_codec_encode(sl->data, cs, out, cap, &codec);
	const uint8_t *stored = out;
	if (n <= 0) {
		/* Cannot happen with cap >= raw length (raw fallback); keep
		 * the raw bytes rather than fail the batch. */
		stored = sl->data;
		codec = BV_CODEC_RAW;
		n = cs;
	}
	bv_rec_build(rec, &sl->fp, codec, stored, (uint32_t)n, cs);
	sl->loc.codec = codec;
	sl->loc.stored_len = (uint32_t)n;
	sl->loc.raw_len = cs;
	sl->loc.offset = b->reg_pos[t];
	b->reg_pos[t] += (size_t)bv_rec_size((uint32_t)n);
}

/* ---- the batch -------------------------------------------------------- */

/* Runs phases A to C on the slots of the current batch listed in
 * b->pend (waiting), and empties the list. New chunks join b->idx. */
static int process(bv_ingest *in)
{
	bv_store *s = in->s;
	struct batch *b = in->cur;
	size_t n = b->npend;
	int rc = 0;

	if (n == 0)
		return 0;
	b->npend = 0;

	in->plist = b->pend;
	/* A written batch waiting for phase E joins the run, first, so that
	 * one thread indexes while the others compress. */
	pthread_mutex_lock(&in->lock);
	in->pindex = in->nwritten > 0 && !in->indexing;
	pthread_mutex_unlock(&in->lock);
	bv_pool_run(s->pool, work_chunk, in, n + (size_t)in->pindex);
	in->pindex = 0;

	/* In slot order: the first of equal chunks is the one kept. */
	for (size_t k = 0; k < n; k++) {
		size_t i = b->pend[k], h;
		struct slot *sl = &b->slots[i];
		sl->done = 1;
		if (sl->zero)
			continue;
		if (sl->err) {
			rc = sl->err;
			continue;
		}
		if (ftab_find(in, &sl->fp, &h)) {
			/* A repeat of an earlier slot that the workers took at
			 * the same time: its record is not written. */
			if (!sl->found) {
				sl->dead = 1;
				b->ndead++;
			}
			continue;
		}
		b->ftab[h] = (int32_t)(i + 1);
		if (!sl->found)
			b->idx[b->nnew++] = i;
	}
	if (rc)
		return poison(in, bv_fail(rc, "ingest: %s", in->werr_msg));
	return 0;
}

/* Closes the open regions of B's run and lists its segments: the used
 * part of each region, zeroed from its last record to a page (LZ4 output
 * of chunks that turned out stored may lie there), and where each
 * region starts in the run as written. */
static int by_offset(const void *a, const void *b, void *ctx)
{
	const struct slot *slots = ctx;
	uint64_t x = slots[*(const size_t *)a].loc.offset;
	uint64_t y = slots[*(const size_t *)b].loc.offset;
	return x < y ? -1 : x > y;
}

/* Drops the records of dead slots from their regions: the live records
 * after one move down over it (their run offsets change with them), so
 * that a chunk repeated within the batch is written once. */
static void drop_dead(struct batch *b)
{
	size_t n = 0;

	for (size_t i = 0; i < b->used; i++) {
		const struct slot *sl = &b->slots[i];
		if (sl->done && !sl->zero && !sl->found && !sl->err)
			b->recs[n++] = i;
	}
	qsort_r(b->recs, n, sizeof *b->recs, by_offset, b->slots);
	for (size_t j = 0; j < n;) {
		size_t k = (size_t)b->slots[b->recs[j]].loc.offset / b->region;
		size_t start = k * b->region, pos = start;
		for (; j < n; j++) {
			struct slot *sl = &b->slots[b->recs[j]];
			size_t off = (size_t)sl->loc.offset;
			size_t len = (size_t)bv_rec_size(sl->loc.stored_len);
			if (off / b->region != k)
				break;
			if (sl->dead)
				continue;
			if (off != pos)
				memmove(b->run + pos, b->run + off, len);
			sl->loc.offset = pos;
			pos += len;
		}
		b->reg_used[k] = pos - start;
	}
	b->ndead = 0;
}

static void seal_run(bv_ingest *in, struct batch *b)
{
	size_t at = 0, nreg = atomic_load(&b->run_used) / b->region;

	for (unsigned t = 0; t < in->nthreads; t++)
		region_close(b, t);
	if (b->ndead)
		drop_dead(b);
	b->nseg = 0;
	for (size_t k = 0; k < nreg; k++) {
		size_t used = b->reg_used[k];
		size_t len = (used + 4095) & ~(size_t)4095;
		uint8_t *p = b->run + k * b->region;
		b->seg_at[k] = at;
		if (!used)
			continue;
		memset(p + used, 0, len - used);
		b->seg[b->nseg++] = (struct iovec){ p, len };
		at += len;
	}
}

/* Processes what is left of the current batch and hands it to the
 * flusher (phase D); the caller goes on with the next batch. A chunk new
 * in a batch still queued is not stored again (pending_find), and one
 * repeated within the batch once (drop_dead). */
static int flush_batch(bv_ingest *in)
{
	struct batch *b = in->cur;
	int rc;

	if (!b || b->used == 0)
		return 0;
	b->npend = 0;
	for (size_t i = 0; i < b->used; i++)
		if (!b->slots[i].done)
			b->pend[b->npend++] = i;
	if ((rc = process(in)))
		return rc;
	seal_run(in, b);

	for (size_t i = 0; i < b->used; i++) {
		struct slot *sl = &b->slots[i];
		struct sess_rep *r = &in->rep[sl->rep];
		if (!sl->zero)
			r->ingested += r->r.chunk_size;
		r->entries++;
	}

	/* D, on the flusher, in order. The queue holds every batch the
	 * session has, at most. */
	if (!in->flusher_started) {
		int e;
		if ((rc = bv_ring_new(64, &in->fring)))
			return poison(in, bv_fail(rc, "ingest: io_uring: %s",
						  strerror(-rc)));
		if ((e = pthread_create(&in->flusher, NULL, flusher_main, in)))
			return poison(in, bv_fail(-e, "ingest: cannot start "
						  "the writer thread: %s",
						  strerror(e)));
		in->flusher_started = 1;
	}
	pthread_mutex_lock(&in->lock);
	in->queue[(in->qhead + in->qlen) % NBATCH] = b;
	in->qlen++;
	b->queued = 1;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
	in->it_stale = 1;

	if ((rc = next_batch(in)))
		return poison(in, rc);
	in->cur->used = 0;
	in->cur->nnew = 0;
	in->cur->ndead = 0;
	atomic_store(&in->cur->indexed, 0);
	atomic_store(&in->cur->run_used, 0);
	for (unsigned t = 0; t < in->nthreads; t++)
		in->cur->reg_pos[t] = in->cur->reg_end[t] = 0;
	in->cur->npend = 0;
	memset(in->cur->htab, 0, (in->hmask + 1) * sizeof *in->cur->htab);
	memset(in->cur->ftab, 0, (in->hmask + 1) * sizeof *in->cur->ftab);
	return 0;
}

/* Flushes the current batch and waits until everything is in the index. */
static int drain(bv_ingest *in)
{
	int rc = flush_batch(in);
	if (rc)
		return rc;
	return wait_flusher(in);
}

/* Loads chunk CHUNK of session replica RI as the session sees it (its own
 * flushed entries included) into RAW. */
static int load_chunk(bv_ingest *in, uint32_t ri, uint64_t chunk,
		      uint8_t *raw)
{
	struct sess_rep *r = &in->rep[ri];
	struct bv_chunk_read rd;
	void *outs[1] = { raw };
	bv_fp fp;
	int rc;

	if ((rc = refresh_iter(in)))
		return rc;
	rc = bv_map_lookup(in->it, r->r.rid, chunk, r->ver, &fp, NULL);
	if (rc < 0)
		return bv_fail_storage(rc, r->name);
	if (rc == 0) {
		memset(raw, 0, r->r.chunk_size);
		return 0;
	}
	return bv_chunks_read(in->s, in->ring, &fp, outs, 1,
			      r->r.chunk_size, in->scratch, &rd, r->name);
}

/* Applies SRC (NULL: zeros) to [OFF, OFF + LEN) of replica RI, chunk by
 * chunk through the batch. The range is inside the disk. SRC is valid
 * only during the call: slots that read it in place are processed before
 * the call returns (and before the batch holding them is handed over). */
static int patch(bv_ingest *in, uint32_t ri, uint64_t off, const uint8_t *src,
		 uint64_t len)
{
	struct sess_rep *r = &in->rep[ri];
	uint32_t cs = r->r.chunk_size;
	int direct = src && len >= DIRECT_MIN;
	int rc = 0;

	while (len) {
		uint64_t c = off / cs;
		uint32_t o = (uint32_t)(off % cs);
		uint64_t n = cs - o < len ? cs - o : len;
		uint64_t in_disk = r->size - c * cs;
		if (in_disk > cs)
			in_disk = cs;
		int full = o == 0 && n >= in_disk;
		struct slot *sl = find_slot(in, ri, c);

		/* A processed slot is fixed: the batch goes first. */
		if (sl && sl->done) {
			if ((rc = flush_batch(in)))
				goto out;
			sl = NULL;
		}
		if (!sl) {
			if (in->cur->used == in->cur->cap &&
			    (rc = flush_batch(in)))
				goto out;
			sl = new_slot(in, ri, c);
			if (!full && (rc = load_chunk(in, ri, c, sl->raw))) {
				rc = poison(in, rc); /* slot holds garbage */
				goto out;
			}
		}
		if (full && !src) {
			sl->zero = 1;
			sl->data = sl->raw;
		} else if (full && direct && n == cs) {
			sl->data = src;
			sl->zero = 0;
			in->cur->pend[in->cur->npend++] =
				(size_t)(sl - in->cur->slots);
		} else if (full) {
			/* Bytes past the disk end are kept zero. */
			memcpy(sl->raw, src, n);
			memset(sl->raw + n, 0, cs - n);
			sl->data = sl->raw;
			sl->zero = 0;
		} else {
			if (sl->zero) {
				memset(sl->raw, 0, cs);
				sl->zero = 0;
			}
			if (src)
				memcpy(sl->raw + o, src, n);
			else
				memset(sl->raw + o, 0, n);
		}
		off += n;
		len -= n;
		if (src)
			src += n;
	}
	rc = process(in);
out:
	if (rc && in->cur) {
		/* The session is poisoned; no slot may keep SRC. */
		in->cur->npend = 0;
		for (size_t i = 0; i < in->cur->used; i++)
			in->cur->slots[i].data = in->cur->slots[i].raw;
	}
	return rc;
}

/* Zeros whole chunks [C0, C1) of replica RI: pending slots become zero,
 * and a zero entry is written only for chunks that hold data now, found by
 * walking the replica's map (never-written chunks cost nothing). */
static int zero_chunks(bv_ingest *in, uint32_t ri, uint64_t c0, uint64_t c1)
{
	struct sess_rep *r = &in->rep[ri];
	uint8_t key[BV_MAP_KEY];
	int rc;

	if (c0 >= c1)
		return 0;
	for (size_t i = 0; i < in->cur->used; i++) {
		struct slot *sl = &in->cur->slots[i];
		if (sl->rep == ri && sl->chunk >= c0 && sl->chunk < c1 &&
		    sl->done) {
			/* A processed slot is fixed: the batch goes first,
			 * and the map walk below zeros what it wrote. */
			if ((rc = flush_batch(in)))
				return rc;
			break;
		}
	}
	for (size_t i = 0; i < in->cur->used; i++) {
		struct slot *sl = &in->cur->slots[i];
		if (sl->rep == ri && sl->chunk >= c0 && sl->chunk < c1) {
			sl->zero = 1;
			sl->data = sl->raw;
		}
	}
	if ((rc = refresh_iter(in)))
		return poison(in, rc);
	uint64_t c = c0;
	while (c < c1) {
		bv_key_map(key, r->r.rid, c, UINT64_MAX);
		bv_kv_iter_seek(in->it, key, sizeof key);
		if (!bv_kv_iter_valid(in->it))
			break;
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(in->it, &kl);
		if (kl != BV_MAP_KEY || bv_get_be64(k) != r->r.rid)
			break;
		uint64_t kc = bv_get_be64(k + 8);
		if (kc >= c1)
			break;
		/* The first key of a chunk is its newest version; entries
		 * above VER do not exist (cleaned at open and abort). */
		bv_kv_iter_value(in->it, &vl);
		if (vl != 0 && ~bv_get_be64(k + 16) <= r->ver &&
		    !find_slot(in, ri, kc)) {
			bv_map_put(in->batch, r->r.rid, kc, r->ver, NULL, 0);
			r->entries++;
		}
		c = kc + 1;
	}
	if ((rc = bv_kv_iter_status(in->it)))
		return poison(in, bv_fail_storage(rc, r->name));
	if (bv_kv_batch_count(in->batch)) {
		if ((rc = bv_kv_write(in->s->kv, in->batch, 0)))
			return poison(in, bv_fail_storage(rc, r->name));
		bv_kv_batch_clear(in->batch);
		in->it_stale = 1;
	}
	return 0;
}

static int zero_range(bv_ingest *in, uint32_t ri, uint64_t off, uint64_t len)
{
	struct sess_rep *r = &in->rep[ri];
	uint32_t cs = r->r.chunk_size;
	uint64_t end = off + len;
	uint64_t c0 = (off + cs - 1) / cs;
	uint64_t c1 = end == r->size ? (end + cs - 1) / cs : end / cs;
	int rc;

	if (c0 >= c1)
		return patch(in, ri, off, NULL, len);
	if (off < c0 * cs && (rc = patch(in, ri, off, NULL, c0 * cs - off)))
		return rc;
	if ((rc = zero_chunks(in, ri, c0, c1)))
		return rc;
	if (c1 * cs < end)
		return patch(in, ri, c1 * cs, NULL, end - c1 * cs);
	return 0;
}

/* ---- the public session API -------------------------------------------- */

static void release(bv_ingest *in, int cleanup);

int bv_ingest_begin(bv_store *s, bv_ingest **out)
{
	bv_ingest *in = calloc(1, sizeof *in);
	int rc;

	bv_fail(0, "%s", "");
	*out = NULL;
	if ((rc = bv_store_writable(s))) {
		free(in);
		return rc;
	}
	if (!in)
		return -ENOMEM;
	in->s = s;
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->cond, NULL);
	if ((rc = bv_ring_new(64, &in->ring))) {
		rc = bv_fail(rc, "ingest: io_uring: %s", strerror(-rc));
		goto fail;
	}
	if ((rc = bv_kv_batch_new(&in->batch)))
		goto fail;
	*out = in;
	return 0;
fail:
	release(in, 0);
	return rc;
}

static int check_extent(bv_ingest *in, int slot, uint64_t off, uint64_t len)
{
	int rc;
	if ((rc = check_usable(in)))
		return rc;
	if (slot < 0 || (size_t)slot >= in->nrep)
		return bv_fail(BV_EINVAL, "ingest: no replica slot %d", slot);
	struct sess_rep *r = &in->rep[slot];
	if (off % BV_SECTOR || len % BV_SECTOR)
		return bv_fail(BV_EALIGN, "replica %s: extent %llu+%llu is not "
			       "aligned to 512 bytes", r->name,
			       (unsigned long long)off,
			       (unsigned long long)len);
	if (off > UINT64_MAX - len || off + len > r->size)
		return bv_fail(BV_ERANGE, "replica %s: extent %llu+%llu ends "
			       "past the disk size %llu", r->name,
			       (unsigned long long)off,
			       (unsigned long long)len,
			       (unsigned long long)r->size);
	return 0;
}

/* Whether replica R (committed, as read under meta_lock) takes changes
 * based on BASE_RP / BASE_ID (bvault.h bv_ingest_stream): by identity
 * when the stream names one and the head version has one, else by RP
 * number as streams without identities always are. */
static int check_base(bv_store *s, struct sess_rep *r, uint64_t base_rp,
		      const uint8_t *base_id, uint64_t latest_rp)
{
	uint8_t head_id[BV_ID_SIZE];
	char want[2 * BV_ID_SIZE + 1], have[2 * BV_ID_SIZE + 1];
	int rc;

	if (base_id && !bv_ident_none(base_id)) {
		if (r->r.head == 0)
			return bv_fail(BV_EBASE, "replica %s: stream base is "
				       "version %s, but the replica has no "
				       "version yet", r->name,
				       bv_ident_hex(base_id, want));
		if ((rc = bv_ident_get(s, r->r.rid, r->r.head, head_id)))
			return bv_fail(rc, "replica %s: identity of version "
				       "%llu: %s", r->name,
				       (unsigned long long)r->r.head,
				       bv_strerror(rc));
		if (!bv_ident_none(head_id)) {
			if (memcmp(head_id, base_id, BV_ID_SIZE))
				return bv_fail(BV_EBASE, "replica %s: stream "
					       "base is version %s but the "
					       "latest version is %s (version "
					       "%llu, latest RP %llu): the "
					       "stream was made from another "
					       "history", r->name,
					       bv_ident_hex(base_id, want),
					       bv_ident_hex(head_id, have),
					       (unsigned long long)r->r.head,
					       (unsigned long long)latest_rp);
			r->base_by_id = 1;
			return 0;
		}
		/* The head was committed before identities were kept. */
	}
	if (base_rp != latest_rp)
		return bv_fail(BV_EBASE, "replica %s: stream base is RP %llu "
			       "but latest is RP %llu", r->name,
			       (unsigned long long)base_rp,
			       (unsigned long long)latest_rp);
	return 0;
}

/* bv_ingest_add, with the base identity a stream names (NULL: none). */
static int add_replica(bv_ingest *in, const char *name, uint64_t base_rp,
		       const uint8_t *base_id, uint64_t create_size,
		       uint32_t create_chunk)
{
	bv_store *s = in->s;
	static _Thread_local struct bv_grec g;
	struct bv_kv_batch *b = NULL;
	struct sess_rep *r;
	char gname[BV_NAME_MAX + 1];
	uint8_t key[32], ver[8];
	int rc, busy = 0, locked = 0;

	bv_fail(0, "%s", "");
	if ((rc = check_usable(in)) || (rc = bv_name_check("replica", name)))
		return rc;
	for (size_t i = 0; i < in->nrep; i++)
		if (!strcmp(in->rep[i].name, name))
			return bv_fail(BV_EINVAL, "replica %s: named twice in "
				       "one session", name);
	if (in->nrep == BV_SESSION_MAX)
		return bv_fail(BV_EINVAL, "replica %s: a session holds at most "
			       "%d replicas", name, BV_SESSION_MAX);
	r = &in->rep[in->nrep];
	memset(r, 0, sizeof *r);
	snprintf(r->name, sizeof r->name, "%s", name);
	r->base_rp = base_rp;
	if ((rc = bv_kv_batch_new(&b)))
		return rc;
	pthread_mutex_lock(&s->meta_lock);
	locked = 1;
	rc = bv_rrec_get(s, name, &r->r);
	if (rc == 0) {
		if ((rc = bv_resolve_group(s, name, gname, &g)))
			goto out;
		if (in->gid && in->gid != g.gid) {
			rc = bv_fail(BV_EGROUP, "replica %s: is in group %s, but "
				     "this session writes group %s; one "
				     "session covers one group", name, gname,
				     in->gname);
			goto out;
		}
		if ((rc = check_base(s, r, base_rp, base_id, g.latest_rp)))
			goto out;
		r->size = r->r.size;
	} else if (rc == ST_ENOTFOUND) {
		if (!create_size) {
			rc = bv_fail(BV_ENOTFOUND, "replica %s: no such replica",
				     name);
			goto out;
		}
		if (base_id && !bv_ident_none(base_id)) {
			char hex[2 * BV_ID_SIZE + 1];
			rc = bv_fail(BV_EBASE, "replica %s: stream base is "
				     "version %s, but the replica does not exist "
				     "yet (a first stream must be a full one)",
				     name, bv_ident_hex(base_id, hex));
			goto out;
		}
		if (base_rp != 0) {
			rc = bv_fail(BV_EBASE, "replica %s: stream base is RP "
				     "%llu but the replica does not exist yet "
				     "(a first stream must be a full one, base "
				     "0)", name, (unsigned long long)base_rp);
			goto out;
		}
		if (create_size % BV_SECTOR || create_size > (UINT64_C(1) << 62)) {
			rc = bv_fail(BV_EINVAL, "replica %s: size %llu: must be "
				     "a multiple of 512 below 4 EiB", name,
				     (unsigned long long)create_size);
			goto out;
		}
		if (in->gid && !in->newgroup[0]) {
			rc = bv_fail(BV_EGROUP, "replica %s: a new replica gets a "
				     "group of its own, but this session writes "
				     "group %s", name, in->gname);
			goto out;
		}
		if (in->newgroup[0] && in->nrep && !in->rep[0].created) {
			rc = bv_fail(BV_EGROUP, "replica %s: new group %s holds "
				     "new replicas only", name, in->newgroup);
			goto out;
		}
		if ((rc = bv_replica_name_free(s, name)))
			goto out;
		memset(&r->r, 0, sizeof r->r);
		if ((rc = bv_seq_next(s, b, "rid", &r->r.rid)) ||
		    (in->gid ? (r->r.gid = in->gid, 0) :
		     (rc = bv_seq_next(s, b, "gid", &r->r.gid)))) {
			rc = bv_fail(rc, "replica %s: sequence: %s", name,
				     bv_strerror(rc));
			goto out;
		}
		r->r.chunk_size = create_chunk ? create_chunk :
						 s->chunk_default;
		r->size = create_size;
		r->created = 1;
		snprintf(gname, sizeof gname, "%s",
			 in->newgroup[0] ? in->newgroup : name);
		g.gid = r->r.gid;
	} else {
		rc = bv_fail(rc, "replica %s: %s", name, bv_strerror(rc));
		goto out;
	}
	/* Still under meta_lock: ids taken from the sequences above are
	 * written before another thread can read the sequence again. */
	if ((rc = bv_busy_take_locked(s, r->r.rid))) {
		rc = bv_fail(rc, "replica %s: another ingest session is "
			     "writing it", name);
		goto out;
	}
	busy = 1;
	/* A marker left by an earlier session whose cleanup failed: its
	 * entries would show through this session's version; clean first. */
	{
		uint8_t v[8];
		size_t vl;
		rc = bv_kv_get(s->kv, BV_CF_META, key,
			       bv_key_id(key, "inflight/", r->r.rid), v,
			       sizeof v, &vl);
		if (rc == 0)
			rc = bv_replica_cleanup(s, r->r.rid, r->r.head);
		else if (rc == ST_ENOTFOUND)
			rc = 0;
		else
			rc = bv_fail_storage(rc, name);
		if (rc)
			goto out;
	}
	/* Invariant 2: the marker is durable before any map entry. */
	r->ver = r->r.head + 1;
	bv_le64(ver, r->ver);
	bv_kv_batch_put(b, BV_CF_META, key, bv_key_id(key, "inflight/",
						       r->r.rid), ver, 8);
	if ((rc = bv_kv_write(s->kv, b, 1))) {
		rc = bv_fail_storage(rc, name);
		goto out;
	}
	pthread_mutex_unlock(&s->meta_lock);
	locked = 0;
	if (r->r.chunk_size > in->slot_size) {
		if ((rc = drain(in)) ||
		    (rc = alloc_arenas(in, r->r.chunk_size))) {
			poison(in, rc);
			goto out;
		}
	}
	in->gid = g.gid;
	snprintf(in->gname, sizeof in->gname, "%s", gname);
	rc = (int)in->nrep++;
out:
	if (rc < 0 && busy)
		bv_busy_drop_locked(s, r->r.rid);
	if (locked)
		pthread_mutex_unlock(&s->meta_lock);
	bv_kv_batch_free(b);
	return rc;
}

int bv_ingest_add(bv_ingest *in, const char *name, uint64_t base_rp,
		  uint64_t create_size)
{
	return add_replica(in, name, base_rp, NULL, create_size, 0);
}

int bv_ingest_add_new(bv_ingest *in, const char *name, uint64_t size,
		      uint32_t chunk_size)
{
	if (size == 0 || chunk_size < BV_CHUNK_MIN || chunk_size > BV_CHUNK_MAX ||
	    (chunk_size & (chunk_size - 1)))
		return bv_fail(BV_EINVAL, "replica %s: size %llu, chunk size %u",
			       name, (unsigned long long)size, chunk_size);
	return add_replica(in, name, 0, NULL, size, chunk_size);
}

int bv_ingest_fingerprint(const bv_ingest *in, int slot, const void *data,
			  size_t len, bv_fp *fp)
{
	if (slot < 0 || (size_t)slot >= in->nrep)
		return bv_fail(BV_EINVAL, "ingest: no replica slot %d", slot);
	chunk_fp(in, (size_t)slot, data, len, fp);
	return 0;
}

int bv_ingest_ref(bv_ingest *in, int slot, uint64_t chunk, const bv_fp *fp,
		  const uint8_t *digest)
{
	struct sess_rep *r;
	struct slot *sl;
	int rc;

	if ((rc = check_usable(in)))
		return rc;
	if (slot < 0 || (size_t)slot >= in->nrep)
		return bv_fail(BV_EINVAL, "ingest: no replica slot %d", slot);
	r = &in->rep[slot];
	if (chunk >= (r->size + r->r.chunk_size - 1) / r->r.chunk_size)
		return bv_fail(BV_ERANGE, "replica %s: chunk %llu is past the "
			       "disk size %llu", r->name,
			       (unsigned long long)chunk,
			       (unsigned long long)r->size);
	sl = find_slot(in, (uint32_t)slot, chunk);
	if (sl && sl->done) {
		/* A processed slot is fixed: the batch goes first. */
		if ((rc = flush_batch(in)))
			return rc;
		sl = NULL;
	}
	if (!sl) {
		if (in->cur->used == in->cur->cap && (rc = flush_batch(in)))
			return rc;
		sl = new_slot(in, (uint32_t)slot, chunk);
	}
	/* Processed already: phases A to C skip it, phase E writes its map
	 * entry (the chunk is stored: the RP's entry names it). */
	sl->data = sl->raw;
	sl->done = 1;
	sl->zero = 0;
	sl->found = 1;
	sl->dead = 0;
	sl->err = 0;
	sl->fp = *fp;
	if (!sl->pinned) {
		bv_gc_pin(in->s, fp);
		sl->pinned = 1;
	}
	sl->has_digest = digest != NULL;
	if (digest)
		memcpy(sl->digest, digest, 16);
	return 0;
}

/* Takes the result identity ID a stream names for slot SLOT's version,
 * unless it already names a version of the replica other than its head
 * (the head itself: a stream that changed nothing carries its base's
 * identity on). An identity names one state of one history. */
static int take_result_id(bv_ingest *in, int slot, const uint8_t *id)
{
	struct sess_rep *r = &in->rep[slot];
	char hex[2 * BV_ID_SIZE + 1];
	uint64_t ver = 0;
	int rc = 0;

	if (bv_ident_none(id))
		goto out;
	if (!r->created) {
		rc = bv_ident_find(in->s, r->r.rid, id, &ver);
		if (rc == ST_ENOTFOUND) {
			rc = 0;
		} else if (rc) {
			rc = bv_fail(rc, "replica %s: identity %s: %s", r->name,
				     bv_ident_hex(id, hex), bv_strerror(rc));
			goto out;
		} else if (ver != r->r.head) {
			rc = bv_fail(BV_EEXIST, "replica %s: the stream makes "
				     "version %s, but version %llu has that "
				     "identity already (a stream applied "
				     "twice, or one going back in history)",
				     r->name, bv_ident_hex(id, hex),
				     (unsigned long long)ver);
			goto out;
		}
	}
	memcpy(r->result_id, id, BV_ID_SIZE);
out:
	return rc;
}

/* ---- push (bvault push, tools/PROTOCOL.md ADDV): identities named ---- */

int bv_ingest_add_ids(bv_ingest *in, const char *name, uint64_t base_rp,
		      const uint8_t base_id[BV_ID_SIZE],
		      const uint8_t result_id[BV_ID_SIZE],
		      uint64_t create_size)
{
	int slot;
	int rc;

	if (!base_id || !result_id)
		return bv_fail(BV_EINVAL, "replica %s: no identities given",
			       name ? name : "?");
	if ((slot = add_replica(in, name, base_rp, base_id, create_size, 0)) < 0)
		return slot;
	/* The slot is the session's last: on a refused result identity it
	 * is taken out again, so that a refusal changes nothing. */
	if ((rc = take_result_id(in, slot, result_id))) {
		struct sess_rep *r = &in->rep[slot];
		char keep[1024];
		snprintf(keep, sizeof keep, "%s", bv_last_error());
		bv_replica_cleanup(in->s, r->r.rid, r->created ? 0 : r->r.head);
		bv_busy_drop(in->s, r->r.rid);
		in->nrep--;
		if (in->nrep == 0) {
			in->gid = 0;
			in->gname[0] = 0;
		}
		bv_fail(0, "%s", keep);
		return rc;
	}
	return slot;
}

/* ---- end of push ---- */
int bv_ingest_result_id(bv_ingest *in, int slot, const uint8_t *id)
{
	int rc;
	if ((rc = check_usable(in)))
		return rc;
	if (slot < 0 || (size_t)slot >= in->nrep)
		return bv_fail(BV_EINVAL, "ingest: no replica slot %d", slot);
	return take_result_id(in, slot, id);
}

int bv_ingest_new_group(bv_ingest *in, const char *group)
{
	static _Thread_local struct bv_grec g;
	struct bv_rrec r;
	int rc;
	if ((rc = check_usable(in)) || (rc = bv_name_check("group", group)))
		return rc;
	if (in->nrep)
		return bv_fail(BV_EINVAL, "group %s: name it before adding "
			       "replicas", group);
	pthread_mutex_lock(&in->s->meta_lock);
	rc = bv_grec_get(in->s, group, &g);
	if (rc == 0)
		rc = bv_fail(BV_EEXIST, "group %s: already exists", group);
	else if (rc == ST_ENOTFOUND && (rc = bv_rrec_get(in->s, group, &r)) == 0)
		rc = bv_fail(BV_EEXIST, "group %s: a replica has that name "
			     "(and its own group)", group);
	else if (rc == ST_ENOTFOUND)
		rc = 0;
	pthread_mutex_unlock(&in->s->meta_lock);
	if (rc)
		return rc;
	snprintf(in->newgroup, sizeof in->newgroup, "%s", group);
	return 0;
}

int bv_ingest_meta_put(bv_ingest *in, const void *key, size_t klen,
		       const void *val, size_t vlen)
{
	if (klen == 0 || klen > sizeof in->mkey || vlen > sizeof in->mval)
		return bv_fail(BV_EINVAL, "ingest: a meta record of %zu + %zu "
			       "bytes", klen, vlen);
	memcpy(in->mkey, key, klen);
	memcpy(in->mval, val, vlen);
	in->mklen = klen;
	in->mvlen = vlen;
	return 0;
}

int bv_ingest_write(bv_ingest *in, int slot, uint64_t off, const void *buf,
		    size_t len)
{
	int rc = check_extent(in, slot, off, len);
	if (rc)
		return rc;
	return patch(in, (uint32_t)slot, off, buf, len);
}

int bv_ingest_zero(bv_ingest *in, int slot, uint64_t off, uint64_t len)
{
	int rc = check_extent(in, slot, off, len);
	if (rc || len == 0)
		return rc;
	return zero_range(in, (uint32_t)slot, off, len);
}

int bv_ingest_resize(bv_ingest *in, int slot, uint64_t new_size)
{
	int rc;
	if ((rc = check_usable(in)))
		return rc;
	if (slot < 0 || (size_t)slot >= in->nrep)
		return bv_fail(BV_EINVAL, "ingest: no replica slot %d", slot);
	struct sess_rep *r = &in->rep[slot];
	uint32_t cs = r->r.chunk_size;
	if (new_size % BV_SECTOR || new_size > (UINT64_C(1) << 62))
		return bv_fail(BV_EALIGN, "replica %s: new size %llu is not a "
			       "multiple of 512 below 4 EiB", r->name,
			       (unsigned long long)new_size);
	if (new_size < r->size) {
		/* Bytes past the end of the disk are kept zero, so that a
		 * later grow reads zeros there. */
		uint64_t c_first = (new_size + cs - 1) / cs;
		uint64_t c_end = (r->size + cs - 1) / cs;
		uint64_t part_end = c_first * cs < r->size ? c_first * cs :
							     r->size;
		if (part_end > new_size &&
		    (rc = patch(in, (uint32_t)slot, new_size, NULL,
				part_end - new_size)))
			return rc;
		if ((rc = zero_chunks(in, (uint32_t)slot, c_first, c_end)))
			return rc;
	}
	r->size = new_size;
	return 0;
}

struct label_find {
	const char *label;
	uint64_t matches, number;
};

static int label_match(void *ud, const bv_rp_info *rp)
{
	struct label_find *f = ud;

	if (!strcmp(rp->label, f->label)) {
		f->matches++;
		f->number = rp->number;
	}
	return 0;
}

/* The base RP of an rbd diff from snapshot SNAP into replica NAME: its one
 * RP labelled SNAP. */
static int rbd_base(bv_ingest *in, const char *name, const char *snap,
		    uint64_t *base)
{
	struct label_find f = { snap, 0, 0 };
	int rc = bv_rp_list(in->s, name, label_match, &f);

	if (rc == BV_ENOTFOUND)
		return bv_fail(BV_EBASE, "rbd diff from snapshot '%s': replica "
			       "%s does not exist, so no RP of it is labelled "
			       "so (a first diff must be a full one)", snap,
			       name);
	if (rc)
		return rc;
	if (f.matches == 0)
		return bv_fail(BV_EBASE, "rbd diff from snapshot '%s': no RP of "
			       "replica %s is labelled '%s' (say which RP it is "
			       "based on: --base N)", snap, name, snap);
	if (f.matches > 1)
		return bv_fail(BV_EBASE, "rbd diff from snapshot '%s': %llu RPs "
			       "of replica %s are labelled '%s' (say which RP "
			       "it is based on: --base N)", snap,
			       (unsigned long long)f.matches, name, snap);
	*base = f.number;
	return 0;
}

int bv_ingest_stream(bv_ingest *in, int fd, int format, const char *name,
		     uint64_t base_rp, int *consistency, int64_t *tm,
		     bv_progress_fn progress, void *ud)
{
	const uint8_t *base_id = NULL;
	struct bv_stream_reader *rd = NULL;
	const struct bv_stream_info *info;
	struct bv_stream_rec rec;
	uint64_t total = 0, base = 0, last = 0;
	const char *rname;
	struct stat st;
	int rc, slot = -1;

	bv_fail(0, "%s", "");
	if ((rc = check_usable(in)))
		return rc;
	if (format != BV_FORMAT_BVAULT && format != BV_FORMAT_RBD_DIFF)
		return bv_fail(BV_EINVAL, "stream format %d: unknown", format);
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		total = (uint64_t)st.st_size;
	rc = bv_stream_reader_open(fd, format, &rd);
	if (rc) {
		rc = bv_fail(rc, "%s", rd ? bv_stream_reader_error(rd) :
			     "stream: out of memory");
		goto out;
	}
	info = bv_stream_reader_info(rd);
	if (format == BV_FORMAT_BVAULT) {
		if (name && strcmp(name, info->replica)) {
			rc = bv_fail(BV_EINVAL, "stream is for replica %s, not "
				     "%s", info->replica, name);
			goto out;
		}
		rname = info->replica;
		base = info->base_rp;
		base_id = info->base_id;
	} else {
		if (!name) {
			rc = bv_fail(BV_EINVAL, "an rbd diff names no replica: "
				     "say which");
			goto out;
		}
		rname = name;
		if (base_rp != BV_RP_LATEST)
			base = base_rp;
		else if (!info->has_from_snap)
			base = 0;
		else if ((rc = rbd_base(in, name, info->from_snap, &base)))
			goto out;
		if (!in->rbd_label[0])
			snprintf(in->rbd_label, sizeof in->rbd_label, "%s",
				 info->to_snap);
	}
	if ((rc = add_replica(in, rname, base, base_id, info->disk_size,
			      0)) < 0)
		goto out;
	slot = rc;
	if (format == BV_FORMAT_BVAULT &&
	    (rc = take_result_id(in, slot, info->result_id)))
		goto poisoned;
	if (in->rep[slot].size != info->disk_size &&
	    (rc = bv_ingest_resize(in, slot, info->disk_size)))
		goto poisoned;
	if (consistency)
		*consistency = info->consistency;
	if (tm)
		*tm = info->time;
	for (;;) {
		rc = bv_stream_next(rd, &rec);
		if (rc) {
			rc = bv_fail(rc, "replica %s: %s", rname,
				     bv_stream_reader_error(rd));
			goto poisoned;
		}
		if (rec.type == BV_REC_END)
			break;
		if (rec.type == BV_REC_DATA)
			rc = bv_ingest_write(in, slot, rec.off, rec.data,
					     rec.len);
		else if (rec.type == BV_REC_ZERO)
			rc = bv_ingest_zero(in, slot, rec.off, rec.len);
		else if (rec.type == BV_REC_RESIZE)
			rc = bv_ingest_resize(in, slot, rec.len);
		else
			rc = bv_fail(BV_ESTREAM, "replica %s: stream record "
				     "type %d unknown", rname, rec.type);
		if (rc)
			goto poisoned;
		uint64_t pos = bv_stream_reader_pos(rd);
		if (progress && pos - last >= (8u << 20)) {
			progress(ud, pos, total);
			last = pos;
		}
	}
	if (progress)
		progress(ud, bv_stream_reader_pos(rd), total);
	rc = slot;
	goto out;
poisoned:
	poison(in, rc);
out:
	bv_stream_reader_close(rd);
	return rc;
}

static void release(bv_ingest *in, int cleanup)
{
	if (in->flusher_started) {
		pthread_mutex_lock(&in->lock);
		in->flusher_stop = 1;
		pthread_cond_broadcast(&in->cond);
		pthread_mutex_unlock(&in->lock);
		/* The writer finishes every batch handed over before it
		 * stops; the batches it wrote are indexed here, so that
		 * cleanup below sees every entry written. */
		pthread_join(in->flusher, NULL);
		while (index_next(in))
			;
	}
	/* Slots never handed over (the batch being filled). */
	for (int j = 0; j < NBATCH; j++)
		if (in->b[j].cap)
			batch_unpin(in, &in->b[j], 0);
	for (size_t i = 0; i < in->nrep; i++) {
		struct sess_rep *r = &in->rep[i];
		if (cleanup)
			bv_replica_cleanup(in->s, r->r.rid,
					   r->created ? 0 : r->r.head);
		bv_busy_drop(in->s, r->r.rid);
	}
	bv_kv_iter_free(in->it);
	bv_kv_batch_free(in->batch);
	bv_ring_free(in->ring);
	bv_ring_free(in->fring);
	free_arenas(in);
	if (in->counted) {
		pthread_mutex_lock(&in->s->bmem_lock);
		in->s->bmem_sessions--;
		pthread_mutex_unlock(&in->s->bmem_lock);
	}
	pthread_mutex_destroy(&in->lock);
	pthread_cond_destroy(&in->cond);
	free(in);
}

void bv_ingest_abort(bv_ingest *in)
{
	if (!in)
		return;
	char keep[1024];
	snprintf(keep, sizeof keep, "%s", bv_last_error());
	release(in, 1);
	bv_fail(0, "%s", keep);
}

int bv_ingest_commit(bv_ingest *in, const bv_commit_opts *o, uint64_t *rp_out)
{
	bv_store *s = in->s;
	static _Thread_local struct bv_grec g;
	static _Thread_local struct bv_rprec p;
	static _Thread_local struct bv_grec p_unused_g;
	struct bv_rp_member over[BV_SESSION_MAX];
	struct bv_kv_batch *b = NULL;
	struct bv_mstat ms;
	const char *label = NULL;
	uint8_t key[32], id[BV_ID_SIZE];
	int rc, locked = 0;

	bv_fail(0, "%s", "");
	if (rp_out)
		*rp_out = 0;
	if ((rc = check_usable(in)))
		goto fail;
	if (in->nrep == 0) {
		rc = bv_fail(BV_EINVAL, "ingest: nothing to commit (no replica "
			     "in the session)");
		goto fail;
	}
	if (o && o->label)
		label = o->label;
	else if (in->rbd_label[0])
		label = in->rbd_label;
	if (o && o->make_rp && label == in->rbd_label &&
	    strlen(label) > BV_LABEL_MAX) {
		rc = bv_fail(BV_EINVAL, "rbd diff to-snapshot '%.40s...' is "
			     "longer than an RP label (%d bytes): give the RP "
			     "a label", label, BV_LABEL_MAX);
		goto fail;
	}
	if (o && o->make_rp && (rc = bv_rp_label_check(label)))
		goto fail;
	if (o && o->number && !o->make_rp) {
		rc = bv_fail(BV_EINVAL, "ingest: an RP number (%llu) without "
			     "an RP", (unsigned long long)o->number);
		goto fail;
	}
	if ((rc = drain(in)))
		goto fail;
	if ((rc = bv_kv_batch_new(&b)))
		goto fail;
	pthread_mutex_lock(&s->meta_lock);
	locked = 1;
	if (in->newgroup[0]) {
		memset(&g, 0, sizeof g);
		g.gid = in->rep[0].r.gid;
		g.n = (uint32_t)in->nrep;
		for (size_t i = 0; i < in->nrep; i++)
			g.members[i] = in->rep[i].r.rid;
		if (bv_grec_get(s, in->newgroup, &p_unused_g) != ST_ENOTFOUND) {
			rc = bv_fail(BV_EEXIST, "group %s: already exists",
				     in->newgroup);
			goto fail;
		}
	} else if (in->rep[0].created) {
		memset(&g, 0, sizeof g);
		g.gid = in->rep[0].r.gid;
		g.n = 1;
		g.members[0] = in->rep[0].r.rid;
	} else if ((rc = bv_grec_get(s, in->gname, &g))) {
		rc = bv_fail(rc, "group %s: %s", in->gname, bv_strerror(rc));
		goto fail;
	}
	if ((rc = bv_mstat_get(s, &ms))) {
		rc = bv_fail(rc, "ingest: counters: %s", bv_strerror(rc));
		goto fail;
	}
	for (size_t i = 0; i < in->nrep; i++) {
		struct sess_rep *r = &in->rep[i];
		if (!r->created && !r->base_by_id &&
		    r->base_rp != g.latest_rp) {
			/* An RP was made while the session ran. (A base
			 * checked by identity is the head, which no one else
			 * changes while the session holds the replica.) */
			rc = bv_fail(BV_EBASE, "replica %s: stream base is RP "
				     "%llu but latest is RP %llu", r->name,
				     (unsigned long long)r->base_rp,
				     (unsigned long long)g.latest_rp);
			goto fail;
		}
		if (r->created && (rc = bv_replica_name_free(s, r->name)))
			goto fail;
		struct bv_rrec nr = r->r;
		nr.head = r->ver;
		nr.size = r->size;
		if (r->created)
			bv_replica_records(b, r->name, &nr, !in->newgroup[0]);
		else
			bv_rrec_put(b, r->name, &nr);
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_id(key, "inflight/", r->r.rid));
		if (!bv_ident_none(r->result_id)) {
			memcpy(id, r->result_id, BV_ID_SIZE);
		} else if ((rc = bv_ident_new(id))) {
			rc = bv_fail(rc, "replica %s: cannot make a version "
				     "identity: %s", r->name, strerror(-rc));
			goto fail;
		}
		bv_ident_put(b, r->r.rid, r->ver, id);
		over[i].rid = r->r.rid;
		over[i].version = r->ver;
		over[i].size = r->size;
		ms.ingested_bytes += r->ingested;
		ms.map_entries += r->entries;
	}
	bv_mstat_put(b, &ms);
	if (in->mklen)
		bv_kv_batch_put(b, BV_CF_META, in->mkey, in->mklen, in->mval,
				in->mvlen);
	if (o && o->make_rp) {
		memset(&p, 0, sizeof p);
		p.time = o->time ? o->time : (int64_t)time(NULL);
		p.consistency = o->consistency == BV_APP_CONSISTENT;
		/* The label's length was checked above. */
		size_t ll = label ? strlen(label) : 0;
		memcpy(p.label, label ? label : "", ll);
		p.label[ll] = 0;
		if ((rc = bv_rp_build(s, in->gname, &g, over, in->nrep, &p)))
			goto fail;
		if (o->number && o->number <= g.latest_rp) {
			/* Numbers are never reused, nor go back (bvault.h
			 * bv_commit_opts.number). */
			rc = bv_fail(BV_EINVAL, "group %s: RP number %llu is not "
				     "above the group's latest RP %llu",
				     in->gname, (unsigned long long)o->number,
				     (unsigned long long)g.latest_rp);
			goto fail;
		}
		g.latest_rp = o->number ? o->number : g.latest_rp + 1;
		bv_rprec_put(b, g.gid, g.latest_rp, &p);
		if (!in->rep[0].created || in->newgroup[0])
			bv_grec_put(b, in->gname, &g);
		else
			bv_grec_put(b, in->rep[0].name, &g);
	}
	if (in->newgroup[0]) {
		if (!(o && o->make_rp))
			bv_grec_put(b, in->gname, &g);
		bv_kv_batch_put(b, BV_CF_META, key,
				bv_key_id(key, "gi/", g.gid), in->gname,
				strlen(in->gname));
	}
	/* Invariant 2: this one synced write makes the versions visible. */
	if ((rc = bv_kv_write(s->kv, b, 1))) {
		rc = bv_fail_storage(rc, in->gname);
		goto fail;
	}
	pthread_mutex_unlock(&s->meta_lock);
	if (rp_out && o && o->make_rp)
		*rp_out = g.latest_rp;
	bv_kv_batch_free(b);
	release(in, 0);
	return 0;
fail:
	if (locked)
		pthread_mutex_unlock(&s->meta_lock);
	bv_kv_batch_free(b);
	bv_ingest_abort(in);
	return rc;
}
