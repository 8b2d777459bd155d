/*
 * gc.c: garbage collection (mark and sweep) and container compaction, in
 * the writing process, beside ingest sessions and readers
 * (../shared/reference/LIFECYCLE.md R5 and R6; DESIGN.md "Lifecycle").
 *
 * One run (bv_gc):
 *   1. seal: the container being appended to is closed, so that every
 *      container up to SEAL_ID takes no append again; those with a batch
 *      flushed but not yet indexed are left out of this run;
 *   2. GC goes active (shard by shard, under each shard's lock: its
 *      touched set T is cleared), then the RocksDB snapshot S is taken;
 *   3. mark: every fingerprint a map entry at S names, of every replica
 *      and version (entries above a head are sessions in flight), into a
 *      Bloom filter L sized from the map entry count;
 *   4. sweep: every chunk index entry at S whose fingerprint f is not in
 *      L is condemned under its shard lock, unless a session pinned f or
 *      T holds it; condemned entries are deleted in synced batches, and
 *      only then released from the condemned set C;
 *   5. compaction: containers whose live share (the bytes of chunk index
 *      entries pointing into them, after the sweep) is below the
 *      threshold are victims. Their live records are copied into new
 *      containers (fdatasync), the newest RP of each replica's reading
 *      order first, then container order; each round's chunk index
 *      entries are repointed in a synced batch (only where they still
 *      point at the victim), which also bumps the GC generation; a
 *      victim every live record of which was copied is recorded retired
 *      (synced) at that generation;
 *   6. remove: a retired container is removed once no reader can read
 *      it (INVARIANTS.md 12): no read-only open holds a lock on bytes
 *      [0, G] of STORE/readers (G: the generation it was retired at), and
 *      no in-process read is between its location lookup and its read.
 *
 * Why a chunk a session needs is never swept (INVARIANTS.md 5). Let f be
 * in S's chunk index but not in L (no map entry at S names it), and let
 * a map entry naming f be applied, or be about to be, by a session.
 * Every session pins f (bv_gc_pin, under shard(f)) before it looks f up
 * or trusts an earlier slot holding it, and drops the pin only after the
 * map entry naming f is applied (bv_gc_unpin), adding f to T there when
 * GC is active, in the same critical section. The sweep decides on f
 * under shard(f):
 *   a. the entry was applied before S: the mark saw it (f in L), unless a
 *      later entry of the same key replaced it before S, in which case
 *      nothing at S needs f (a session's own overwrite);
 *   b. it was applied after S, and the pin was dropped before the sweep
 *      looked: GC was active since before S, so the unpin put f into T,
 *      and the sweep skips f;
 *   c. it is not applied yet when the sweep looks: the pin is held, so
 *      the sweep skips f;
 *   d. the pin was taken after the sweep condemned f: bv_gc_pin waits
 *      while f is in C, and C is released only after the delete is
 *      synced, so the session's lookup then misses and it stores f anew
 *      (its Put comes after the delete). An earlier batch of the same
 *      session that held f new is trusted only while that batch is not
 *      yet indexed (ingest.c pending_find), so that its Put, too, comes
 *      after the delete;
 *   e. entries put after S are not in S's chunk index: never candidates.
 * Pins and T are hashed (counters and a Bloom filter per shard): a
 * collision only keeps some garbage until a later run. Views pin RPs,
 * whose map entries are marked; a view's own writes are not in
 * containers. In-process readers read committed versions, which the mark
 * covers.
 *
 * Crash safety: every step is a synced RocksDB batch or a flushed
 * container. A crash before a repoint leaves copies no entry names
 * (dead records of a new container: the next run reclaims them); after
 * it, the victim's records are duplicates the entries no longer name;
 * a retired record names a container that nothing points into; a crash
 * after a remove and before its record is deleted finds the container
 * gone (-ENOENT) and deletes the record.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define SHARDS 256
#define PINS 1024u          /* pin counters per shard */
#define TBYTES 8192u        /* bytes of a shard's touched filter */
#define DEL_BATCH 1024u     /* chunk index deletes per synced batch */
#define UNIDX 64u           /* containers with unindexed batches */
#define ROUND_BYTES (32u << 20) /* records copied per round */
#define ROUND_MAX 8192u     /* records per round */
#define READ_GROUP 32u      /* records read at once */
#define BLOOM_BITS 10u      /* per map entry */
#define BLOOM_K 7u
#define BLOOM_MIN (1u << 19)  /* bits */

struct shard {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int32_t chead;              /* condemned of this shard, or -1 */
	int active;                 /* GC runs (case b): set before the
				     * snapshot, cleared after the sweep */
	uint32_t pins[PINS];
	uint8_t touched[TBYTES];
};

struct unidx {
	uint32_t cid, n;
};

struct bv_gc {
	struct shard sh[SHARDS];
	/* C: the batch being deleted; an entry is written under its
	 * shard's lock and read only by walking that shard's chain. */
	bv_fp cfp[DEL_BATCH];
	int32_t cnext[DEL_BATCH];
	size_t ncond;
	pthread_mutex_t run;        /* one GC at a time */
	pthread_rwlock_t rd;        /* in-process reads vs remove */
	pthread_mutex_t umu;
	struct unidx un[UNIDX];
	unsigned nun;
	unsigned un_over;           /* adds that found the table full */
	void (*hook)(void *ud, int point);
	void *hook_ud;
	int unsafe;                 /* tests: BV_GC_UNSAFE_* */
};

/* ---- shards: pins, touched, condemned --------------------------------- */

static struct shard *shard_of(struct bv_gc *g, const bv_fp *fp)
{
	return &g->sh[fp->b[0]];
}

static uint32_t pin_ix(const bv_fp *fp)
{
	return ((uint32_t)fp->b[1] | (uint32_t)fp->b[2] << 8) % PINS;
}

/* Three bits of the touched filter: fingerprints are keyed hashes, so
 * their bytes are as good as any hash of them. */
static void touched_bits(const bv_fp *fp, uint32_t bit[3])
{
	for (int i = 0; i < 3; i++)
		bit[i] = (bv_get_le32(fp->b + 3 + 4 * i)) % (TBYTES * 8);
}

static void touch(struct shard *h, const bv_fp *fp)
{
	uint32_t bit[3];
	touched_bits(fp, bit);
	for (int i = 0; i < 3; i++)
		h->touched[bit[i] / 8] |= (uint8_t)(1u << (bit[i] % 8));
}

static int touched(const struct shard *h, const bv_fp *fp)
{
	uint32_t bit[3];
	touched_bits(fp, bit);
	for (int i = 0; i < 3; i++)
		if (!(h->touched[bit[i] / 8] & (1u << (bit[i] % 8))))
			return 0;
	return 1;
}

static int condemned(const struct bv_gc *g, const struct shard *h,
		     const bv_fp *fp)
{
	for (int32_t i = h->chead; i >= 0; i = g->cnext[i])
		if (bv_fp_equal(&g->cfp[i], fp))
			return 1;
	return 0;
}

int bv_gc_state_new(bv_store *s)
{
	struct bv_gc *g = calloc(1, sizeof *g);
	if (!g)
		return -ENOMEM;
	for (int i = 0; i < SHARDS; i++) {
		pthread_mutex_init(&g->sh[i].mu, NULL);
		pthread_cond_init(&g->sh[i].cv, NULL);
		g->sh[i].chead = -1;
	}
	pthread_mutex_init(&g->run, NULL);
	/* Writer first: readers come and go all the time, and a remove
	 * must not wait for a moment with none. No reader nests. */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&g->rd, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&g->umu, NULL);
	s->gc = g;
	return 0;
}

void bv_gc_state_free(bv_store *s)
{
	struct bv_gc *g = s->gc;
	if (!g)
		return;
	for (int i = 0; i < SHARDS; i++) {
		pthread_mutex_destroy(&g->sh[i].mu);
		pthread_cond_destroy(&g->sh[i].cv);
	}
	pthread_mutex_destroy(&g->run);
	pthread_rwlock_destroy(&g->rd);
	pthread_mutex_destroy(&g->umu);
	free(g);
	s->gc = NULL;
}

void bv_gc_pin(bv_store *s, const bv_fp *fp)
{
	struct bv_gc *g = s->gc;
	if (!g)
		return;
	struct shard *h = shard_of(g, fp);
	pthread_mutex_lock(&h->mu);
	/* Case d: wait until the delete is synced; the lookup then misses
	 * and the session stores the chunk anew. */
	while (condemned(g, h, fp))
		pthread_cond_wait(&h->cv, &h->mu);
	h->pins[pin_ix(fp)]++;
	pthread_mutex_unlock(&h->mu);
}

void bv_gc_unpin(bv_store *s, const bv_fp *fp, int applied)
{
	struct bv_gc *g = s->gc;
	if (!g)
		return;
	struct shard *h = shard_of(g, fp);
	pthread_mutex_lock(&h->mu);
	/* Case b: applied while GC runs, so maybe after its snapshot. */
	if (applied && h->active)
		touch(h, fp);
	if (h->pins[pin_ix(fp)] > 0)
		h->pins[pin_ix(fp)]--;
	pthread_mutex_unlock(&h->mu);
}

/* Shard by shard, each under its lock: an unpin of a fingerprint after
 * the snapshot takes that shard's lock after it was set, so it sees GC
 * active (case b), which is all the argument needs. */
static void set_active(struct bv_gc *g, int on)
{
	for (int i = 0; i < SHARDS; i++) {
		struct shard *h = &g->sh[i];
		pthread_mutex_lock(&h->mu);
		h->active = on;
		if (on)
			memset(h->touched, 0, TBYTES);
		pthread_mutex_unlock(&h->mu);
	}
}

/* Condemns FP unless it is pinned or touched; 1 when condemned. */
static int condemn(struct bv_gc *g, const bv_fp *fp)
{
	struct shard *h = shard_of(g, fp);
	int keep;
	pthread_mutex_lock(&h->mu);
	keep = (!(g->unsafe & BV_GC_UNSAFE_NO_PINS) &&
		h->pins[pin_ix(fp)] > 0) ||
	       (!(g->unsafe & BV_GC_UNSAFE_NO_TOUCHED) && touched(h, fp));
	if (!keep) {
		size_t i = g->ncond++;
		g->cfp[i] = *fp;
		g->cnext[i] = h->chead;
		h->chead = (int32_t)i;
	}
	pthread_mutex_unlock(&h->mu);
	return !keep;
}

/* After the delete of the condemned batch is synced: lookups waiting on
 * them go on (and miss). */
static void release_condemned(struct bv_gc *g)
{
	for (size_t i = 0; i < g->ncond; i++) {
		struct shard *h = shard_of(g, &g->cfp[i]);
		pthread_mutex_lock(&h->mu);
		if (h->chead >= 0) {
			h->chead = -1;
			pthread_cond_broadcast(&h->cv);
		}
		pthread_mutex_unlock(&h->mu);
	}
	g->ncond = 0;
}

void bv_gc_unindexed_add(bv_store *s, uint32_t cid)
{
	struct bv_gc *g = s->gc;
	if (!g)
		return;
	pthread_mutex_lock(&g->umu);
	unsigned i;
	for (i = 0; i < g->nun; i++)
		if (g->un[i].cid == cid)
			break;
	if (i < g->nun) {
		g->un[i].n++;
	} else if (g->nun < UNIDX) {
		g->un[g->nun++] = (struct unidx){ cid, 1 };
	} else {
		g->un_over++;
	}
	pthread_mutex_unlock(&g->umu);
}

void bv_gc_unindexed_drop(bv_store *s, uint32_t cid)
{
	struct bv_gc *g = s->gc;
	if (!g)
		return;
	pthread_mutex_lock(&g->umu);
	unsigned i;
	for (i = 0; i < g->nun; i++)
		if (g->un[i].cid == cid)
			break;
	if (i < g->nun) {
		if (--g->un[i].n == 0)
			g->un[i] = g->un[--g->nun];
	} else if (g->un_over) {
		g->un_over--;
	}
	pthread_mutex_unlock(&g->umu);
}

/* 1 when container CID may have records whose entries are not indexed
 * yet (or the table overflowed: then every container may). */
static int unindexed(struct bv_gc *g, uint32_t cid)
{
	int r = 0;
	pthread_mutex_lock(&g->umu);
	r = g->un_over > 0;
	for (unsigned i = 0; i < g->nun && !r; i++)
		r = g->un[i].cid == cid;
	pthread_mutex_unlock(&g->umu);
	return r;
}

void bv_gc_read_begin(bv_store *s)
{
	if (s->gc)
		pthread_rwlock_rdlock(&s->gc->rd);
}

void bv_gc_read_end(bv_store *s)
{
	if (s->gc)
		pthread_rwlock_unlock(&s->gc->rd);
}

void bv_gc_exclude_begin(bv_store *s)
{
	if (s->gc)
		pthread_mutex_lock(&s->gc->run);
}

void bv_gc_exclude_end(bv_store *s)
{
	if (s->gc)
		pthread_mutex_unlock(&s->gc->run);
}

void bv_gc_set_hook(bv_store *s, void (*hook)(void *ud, int point), void *ud)
{
	if (!s->gc)
		return;
	s->gc->hook = hook;
	s->gc->hook_ud = ud;
}

void bv_gc_set_unsafe(bv_store *s, int flags)
{
	if (s->gc)
		s->gc->unsafe = flags;
}

static void at(struct bv_gc *g, int point)
{
	if (g->hook)
		g->hook(g->hook_ud, point);
}

/* ---- the readers file ------------------------------------------------- */

/* Read-only opens lock bytes of STORE/readers (FORMAT.md, "Readers"):
 * byte 0 while they open, then byte G + 1, G being the generation their
 * index snapshot names. OFD locks: per open file description, so that
 * handles of one process are told apart, and taken through a read-only
 * descriptor. */
static int readers_lock(int fd, short type, uint64_t byte)
{
	struct flock l = { .l_type = type, .l_whence = SEEK_SET,
			   .l_start = (off_t)byte, .l_len = 1 };
	return fcntl(fd, F_OFD_SETLK, &l) == 0 ? 0 : -errno;
}

void bv_readers_make(bv_store *s)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/readers", s->path);
	s->readers_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
}

void bv_readers_enter(bv_store *s)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/readers", s->path);
	/* Missing or unreadable (read-only media, an old store): nothing
	 * can collect under this reader then, or GC keeps every retired
	 * container (it cannot make the file either). */
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (readers_lock(fd, F_RDLCK, 0)) {
		close(fd);
		return;
	}
	s->readers_fd = fd;
}

void bv_readers_settle(bv_store *s)
{
	if (s->readers_fd < 0)
		return;
	uint64_t g = bv_gc_generation(s);
	if (g >= (uint64_t)INT64_MAX - 1)
		return; /* keeps byte 0: blocks every remove */
	if (readers_lock(s->readers_fd, F_RDLCK, g + 1) == 0) {
		struct flock l = { .l_type = F_UNLCK, .l_whence = SEEK_SET,
				   .l_start = 0, .l_len = 1 };
		(void)fcntl(s->readers_fd, F_OFD_SETLK, &l);
	}
}

/* 1 when a read-only open may still read a container retired at
 * generation GEN: one holds a lock on a byte of [0, GEN]. Unsure (no
 * readers file, a failed query) counts as yes. */
static int readers_busy(bv_store *s, uint64_t gen)
{
	if (s->readers_fd < 0 || gen >= (uint64_t)INT64_MAX - 1)
		return 1;
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			   .l_start = 0, .l_len = (off_t)(gen + 1) };
	if (fcntl(s->readers_fd, F_OFD_GETLK, &l) != 0)
		return 1;
	return l.l_type != F_UNLCK;
}

uint64_t bv_gc_generation(bv_store *s)
{
	uint8_t v[8];
	size_t vl;
	if (bv_kv_get(s->kv, BV_CF_META, "gc/gen", 6, v, sizeof v, &vl) ||
	    vl != 8)
		return 0;
	return bv_get_le64(v);
}

/* ---- the mark's Bloom filter ------------------------------------------ */

struct bloom {
	uint64_t *bits;
	uint64_t m;     /* bits */
	uint64_t seed;  /* per run: a false positive does not stick */
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t reduce(uint64_t h, uint64_t m)
{
	return (uint64_t)(((unsigned __int128)h * m) >> 64);
}

static void bloom_hash(const struct bloom *b, const uint8_t *fp,
		       uint64_t *h1, uint64_t *h2)
{
	*h1 = mix64(bv_get_le64(fp) ^ b->seed);
	*h2 = mix64(bv_get_le64(fp + 8) + b->seed) | 1;
}

static void bloom_add(struct bloom *b, const uint8_t *fp)
{
	uint64_t h1, h2;
	bloom_hash(b, fp, &h1, &h2);
	for (unsigned i = 0; i < BLOOM_K; i++) {
		uint64_t x = reduce(h1 + i * h2, b->m);
		b->bits[x / 64] |= 1ull << (x % 64);
	}
}

static int bloom_has(const struct bloom *b, const uint8_t *fp)
{
	uint64_t h1, h2;
	bloom_hash(b, fp, &h1, &h2);
	for (unsigned i = 0; i < BLOOM_K; i++) {
		uint64_t x = reduce(h1 + i * h2, b->m);
		if (!(b->bits[x / 64] & (1ull << (x % 64))))
			return 0;
	}
	return 1;
}

/* ---- one run ---------------------------------------------------------- */

struct cand {
	uint32_t id;
	uint64_t size;      /* file bytes */
	uint64_t live;      /* record bytes of live entries */
	uint64_t nlive;     /* live entries pointing here */
	uint64_t copied;    /* of them, repointed to a copy */
	int victim, damaged;
};

struct item {
	bv_fp fp;
	struct bv_chunk_loc from;
	size_t at;          /* offset in the round's buffer */
	int res;
	struct cand *c;
};

struct gc_run {
	bv_store *s;
	struct bv_gc *g;
	const bv_gc_opts *o;
	bv_gc_report *rep;
	int dry;
	struct bv_ring *ring;
	struct bv_kv_batch *b;
	struct bv_kv_snap *snap;
	struct bloom bl;
	uint32_t seal_id;
	struct cand *cand;
	size_t ncand;
	/* The round of copies. */
	uint8_t *buf;
	size_t used;
	struct item *items;
	size_t n;
	int32_t *hset;      /* fingerprints of the round: item + 1 */
	uint8_t *outs;      /* decoded chunks of a read group */
	size_t outs_cap;
	struct bv_chunk_read reads[READ_GROUP];
	uint64_t gen;
};

#define HSET (ROUND_MAX * 2u)

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static struct cand *cand_of(struct gc_run *r, uint32_t id)
{
	size_t lo = 0, hi = r->ncand;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->cand[mid].id == id)
			return &r->cand[mid];
		if (r->cand[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int retired_key(uint8_t key[9], uint32_t id)
{
	memcpy(key, "gc/r/", 5);
	bv_be32(key + 5, id);
	return 9;
}

/* 1 when a retired record names ID. */
static int is_retired(bv_store *s, uint32_t id)
{
	uint8_t key[9], v[8];
	size_t vl;
	retired_key(key, id);
	return bv_kv_get(s->kv, BV_CF_META, key, sizeof key, v, sizeof v,
			 &vl) == 0;
}

/* The candidates: containers up to the seal, not retired already, and
 * with no batch waiting for its index entries. */
static int pick_candidates(struct gc_run *r)
{
	bv_store *s = r->s;
	uint32_t *ids = NULL;
	size_t n = 0;
	int rc = s->cs->ops->list(s->cs, &ids, &n);
	if (rc)
		return bv_fail(rc, "store %s: gc: listing containers: %s",
			       s->path, bv_strerror(rc));
	r->cand = calloc(n ? n : 1, sizeof *r->cand);
	if (!r->cand) {
		free(ids);
		return bv_fail(-ENOMEM, "store %s: gc: out of memory", s->path);
	}
	for (size_t i = 0; i < n; i++) {
		struct cand *c = &r->cand[r->ncand];
		if (ids[i] > r->seal_id || unindexed(r->g, ids[i]) ||
		    is_retired(s, ids[i]))
			continue;
		c->id = ids[i];
		if ((rc = s->cs->ops->size(s->cs, ids[i], &c->size))) {
			free(ids);
			return bv_fail(rc, "store %s: gc: container %u: %s",
				       s->path, ids[i], bv_strerror(rc));
		}
		r->ncand++;
	}
	free(ids);
	r->rep->containers = r->ncand;
	return 0;
}

static int mark(struct gc_run *r)
{
	bv_store *s = r->s;
	struct bv_kv_iter *it = NULL;
	struct bv_mstat ms = { 0 };
	double t0 = now_s();
	int rc;

	/* Sized from the entry count: the committed ones, RocksDB's estimate
	 * (sessions in flight too), whichever is larger. */
	(void)bv_mstat_get(s, &ms);
	uint64_t n = bv_kv_estimate_keys(s->kv, BV_CF_MAPS);
	if (ms.map_entries > n)
		n = ms.map_entries;
	n += n / 4;
	uint64_t m = n * BLOOM_BITS;
	if (m < BLOOM_MIN)
		m = BLOOM_MIN;
	m = (m + 63) & ~63ull;
	r->bl.m = m;
	r->bl.bits = calloc(m / 64, 8);
	if (!r->bl.bits)
		return bv_fail(-ENOMEM, "store %s: gc: no memory for the "
			       "mark's filter (%llu MiB)", s->path,
			       (unsigned long long)(m / 8 >> 20));
	uint8_t seed[BV_ID_SIZE];
	if (bv_ident_new(seed) == 0)
		r->bl.seed = bv_get_le64(seed);
	r->rep->bloom_bytes = m / 8;
	if ((rc = bv_kv_iter_new_at(s->kv, r->snap, BV_CF_MAPS, NULL, 0, NULL,
				    0, &it)))
		return bv_fail_storage(rc, s->path);
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t vl;
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		r->rep->map_entries++;
		if (vl >= 16)
			bloom_add(&r->bl, v);
	}
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	r->rep->mark_seconds = now_s() - t0;
	return rc ? bv_fail_storage(rc, s->path) : 0;
}

/* Deletes the condemned batch (synced, with the chunk counters) and
 * releases it. Under the index lock: the counters are read, changed and
 * written, as ingest does. */
static int delete_batch(struct gc_run *r, const struct bv_cstat *gone)
{
	bv_store *s = r->s;
	struct bv_cstat cst;
	int rc;

	at(r->g, BV_GC_AT_CONDEMN);
	pthread_mutex_lock(&s->index_lock);
	if ((rc = bv_cstat_get(s, &cst)) == 0) {
		cst.chunks -= gone->chunks < cst.chunks ? gone->chunks
							: cst.chunks;
		cst.raw_bytes -= gone->raw_bytes < cst.raw_bytes ?
				 gone->raw_bytes : cst.raw_bytes;
		cst.stored_bytes -= gone->stored_bytes < cst.stored_bytes ?
				    gone->stored_bytes : cst.stored_bytes;
		bv_cstat_put(r->b, &cst);
		/* A reader opened before this batch may hold the entries it
		 * deletes: containers emptied by it are retired at the new
		 * generation, which that reader's lock covers. */
		uint8_t gv[8];
		bv_le64(gv, r->gen + 1);
		bv_kv_batch_put(r->b, BV_CF_META, "gc/gen", 6, gv, 8);
		if ((rc = bv_kv_write(s->kv, r->b, 1)) == 0)
			r->gen++;
	}
	pthread_mutex_unlock(&s->index_lock);
	bv_kv_batch_clear(r->b);
	if (rc)
		rc = bv_fail(rc, "store %s: gc: deleting chunk index entries: "
			     "%s", s->path, rc == ST_EDB ? bv_kv_error() :
			     bv_strerror(rc));
	else
		at(r->g, BV_GC_AT_DELETE);
	/* Released either way: a failed delete leaves the entries, and a
	 * waiting lookup finds them. */
	release_condemned(r->g);
	return rc;
}

static int sweep(struct gc_run *r)
{
	bv_store *s = r->s;
	struct bv_kv_iter *it = NULL;
	struct bv_cstat gone = { 0 };
	double t0 = now_s();
	int rc;

	if ((rc = bv_kv_iter_new_at(s->kv, r->snap, BV_CF_CHUNKS, NULL, 0,
				    NULL, 0, &it)))
		return bv_fail_storage(rc, s->path);
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		struct bv_chunk_loc loc;
		bv_fp fp;
		if (kl != sizeof fp.b || bv_chunk_loc_decode(v, vl, &loc)) {
			/* Damaged: never deleted on a guess. */
			r->rep->chunks++;
			continue;
		}
		memcpy(fp.b, k, sizeof fp.b);
		r->rep->chunks++;
		uint64_t rec = bv_rec_size(loc.stored_len);
		int dead = !bloom_has(&r->bl, fp.b) &&
			   (r->dry || condemn(r->g, &fp));
		if (!dead) {
			struct cand *c = cand_of(r, loc.container);
			if (c) {
				c->live += rec;
				c->nlive++;
			}
			continue;
		}
		r->rep->dead_chunks++;
		r->rep->dead_bytes += rec;
		if (r->dry)
			continue;
		bv_kv_batch_delete(r->b, BV_CF_CHUNKS, fp.b, sizeof fp.b);
		gone.chunks++;
		gone.raw_bytes += loc.raw_len;
		gone.stored_bytes += loc.stored_len;
		if (r->g->ncond == DEL_BATCH) {
			if ((rc = delete_batch(r, &gone)))
				goto out;
			gone = (struct bv_cstat){ 0 };
		}
	}
	if ((rc = bv_kv_iter_status(it))) {
		rc = bv_fail_storage(rc, s->path);
		goto out;
	}
	if (r->g->ncond)
		rc = delete_batch(r, &gone);
out:
	if (rc && r->g->ncond) {
		bv_kv_batch_clear(r->b);
		release_condemned(r->g);
	}
	bv_kv_iter_free(it);
	r->rep->sweep_seconds = now_s() - t0;
	return rc;
}

/* Victims: live share below the threshold (an empty one too). */
static void pick_victims(struct gc_run *r)
{
	unsigned th = r->o && r->o->threshold ? r->o->threshold : 50;
	for (size_t i = 0; i < r->ncand; i++) {
		struct cand *c = &r->cand[i];
		uint64_t room = c->size > BV_CONTAINER_HDR ?
				c->size - BV_CONTAINER_HDR : 0;
		c->victim = room == 0 || c->live * 100 < (uint64_t)th * room;
	}
}

/* The chunk index entry of FP now, if it names exactly FROM: 1 and its
 * value in V (VL bytes); 0 if it names something else or nothing. */
static int entry_at(bv_store *s, const bv_fp *fp,
		    const struct bv_chunk_loc *from, uint8_t v[64],
		    size_t *vl)
{
	struct bv_chunk_loc loc;
	int rc = bv_kv_get(s->kv, BV_CF_CHUNKS, fp->b, sizeof fp->b, v, 64,
			   vl);
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc)
		return bv_fail_storage(rc, s->path);
	if (bv_chunk_loc_decode(v, *vl, &loc))
		return 0;
	return loc.container == from->container &&
	       loc.offset == from->offset;
}

static size_t hset_slot(const bv_fp *fp)
{
	return (size_t)bv_get_le64(fp->b + 4) % HSET;
}

static int in_round(struct gc_run *r, const bv_fp *fp)
{
	for (size_t h = hset_slot(fp); r->hset[h]; h = (h + 1) % HSET)
		if (bv_fp_equal(&r->items[r->hset[h] - 1].fp, fp))
			return 1;
	return 0;
}

/* Reads the round's records straight into their places in the buffer
 * (each checked as every read is: C4), drops the damaged ones and packs
 * the rest end to end. */
static int round_read(struct gc_run *r)
{
	bv_store *s = r->s;
	for (size_t base = 0; base < r->n; base += READ_GROUP) {
		size_t k = r->n - base < READ_GROUP ? r->n - base : READ_GROUP;
		size_t need = 0;
		for (size_t i = 0; i < k; i++)
			if (r->items[base + i].from.raw_len > need)
				need = r->items[base + i].from.raw_len;
		if (need * READ_GROUP > r->outs_cap) {
			free(r->outs);
			r->outs_cap = need * READ_GROUP;
			if (!(r->outs = malloc(r->outs_cap))) {
				r->outs_cap = 0;
				return bv_fail(-ENOMEM, "store %s: gc: out of "
					       "memory", s->path);
			}
		}
		for (size_t i = 0; i < k; i++) {
			struct item *it = &r->items[base + i];
			r->reads[i] = (struct bv_chunk_read){
				.loc = it->from, .fp = it->fp,
				.out = r->outs + need * i,
				.scratch = r->buf + it->at };
		}
		(void)s->cs->ops->read(s->cs, r->ring, r->reads, k);
		for (size_t i = 0; i < k; i++) {
			struct item *it = &r->items[base + i];
			it->res = r->reads[i].res;
			r->rep->bytes_read += BV_REC_HDR + it->from.stored_len;
			if (it->res == ST_ECHECKSUM || it->res == ST_ECORRUPT) {
				/* Never copied: its container stays. */
				r->rep->damaged_chunks++;
				it->c->damaged = 1;
			} else if (it->res) {
				char where[512];
				if (s->cs->ops->where(s->cs, it->from.container,
						      where, sizeof where))
					snprintf(where, sizeof where,
						 "container %u",
						 it->from.container);
				return bv_fail(it->res, "store %s: gc: reading "
					       "the record at offset %llu of "
					       "%s: %s", s->path,
					       (unsigned long long)
					       it->from.offset, where,
					       bv_strerror(it->res));
			}
		}
	}
	size_t pos = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct item *it = &r->items[i];
		size_t len = (size_t)bv_rec_size(it->from.stored_len);
		if (it->res)
			continue;
		if (it->at != pos)
			memmove(r->buf + pos, r->buf + it->at,
				BV_REC_HDR + it->from.stored_len);
		it->at = pos;
		/* The header again, and zero padding (the read left it as
		 * the buffer had it). */
		bv_rec_build(r->buf + pos, &it->fp, it->from.codec,
			     r->buf + pos + BV_REC_HDR, it->from.stored_len,
			     it->from.raw_len);
		pos += len;
	}
	r->used = pos;
	return 0;
}

/* Writes the round's copies (flushed), then repoints the entries that
 * still name the victims' records, in one synced batch that bumps the
 * generation and records the tail. */
static int round_do(struct gc_run *r)
{
	bv_store *s = r->s;
	struct bv_ctail tail = { 0 };
	uint32_t cid = 0;
	uint64_t base = 0;
	uint8_t key[8], val[64];
	int rc;

	if (r->n == 0)
		return 0;
	if ((rc = round_read(r)))
		goto out;
	if (r->used == 0)
		goto out;
	size_t len = (r->used + 4095) & ~(size_t)4095;
	memset(r->buf + r->used, 0, len - r->used);
	struct iovec iov = { r->buf, len };
	pthread_mutex_lock(&s->write_lock);
	rc = s->cs->ops->appendv(s->cs, r->ring, &iov, 1, &cid, &base);
	if (!rc)
		rc = s->cs->ops->flush(s->cs, r->ring, &tail);
	if (rc)
		s->cs->ops->rollback(s->cs);
	pthread_mutex_unlock(&s->write_lock);
	if (rc) {
		rc = bv_fail(rc, "store %s: gc: writing copies: %s", s->path,
			     bv_strerror(rc));
		goto out;
	}
	r->rep->bytes_written += len;
	at(r->g, BV_GC_AT_COPIED);

	pthread_mutex_lock(&s->index_lock);
	for (size_t i = 0; i < r->n; i++) {
		struct item *it = &r->items[i];
		size_t vl;
		if (it->res)
			continue;
		rc = entry_at(s, &it->fp, &it->from, val, &vl);
		if (rc < 0)
			break;
		if (rc == 0)
			continue; /* changed meanwhile: the copy is garbage */
		rc = 0;
		struct bv_chunk_loc nl = it->from;
		nl.container = cid;
		nl.offset = base + it->at;
		bv_chunk_loc_encode(&nl, val);
		bv_kv_batch_put(r->b, BV_CF_CHUNKS, it->fp.b, sizeof it->fp.b,
				val, vl);
		it->c->copied++;
		r->rep->chunks_copied++;
	}
	bv_le64(key, r->gen + 1);
	bv_kv_batch_put(r->b, BV_CF_META, "gc/gen", 6, key, 8);
	int later = s->cs->ops->tail_cmp(s->cs, &tail, &s->tail) > 0;
	if (later)
		bv_kv_batch_put(r->b, BV_CF_META, "tail", 4, tail.b, tail.len);
	if (!rc && (rc = bv_kv_write(s->kv, r->b, 1)))
		rc = bv_fail(rc, "store %s: gc: repointing chunk index "
			     "entries: %s", s->path, bv_kv_error());
	if (!rc) {
		r->gen++;
		if (later)
			s->tail = tail;
	}
	pthread_mutex_unlock(&s->index_lock);
	bv_kv_batch_clear(r->b);
	if (rc) {
		/* The copies' counts are off now; the victims stay (the
		 * retire step is not reached). */
		goto out;
	}
out:
	r->n = 0;
	r->used = 0;
	memset(r->hset, 0, HSET * sizeof *r->hset);
	return rc;
}

/* Adds FP's record at FROM (in victim C) to the round. */
static int round_add(struct gc_run *r, const bv_fp *fp,
		     const struct bv_chunk_loc *from, struct cand *c)
{
	uint64_t rec = bv_rec_size(from->stored_len);
	int rc;
	if (in_round(r, fp))
		return 0;
	if (r->n == ROUND_MAX || r->used + rec + 4096 > ROUND_BYTES)
		if ((rc = round_do(r)))
			return rc;
	if (rec + 4096 > ROUND_BYTES)
		return bv_fail(BV_EINVAL, "store %s: gc: a record of %llu "
			       "bytes", r->s->path, (unsigned long long)rec);
	struct item *it = &r->items[r->n];
	it->fp = *fp;
	it->from = *from;
	it->at = r->used;
	it->res = 0;
	it->c = c;
	size_t h = hset_slot(fp);
	while (r->hset[h])
		h = (h + 1) % HSET;
	r->hset[h] = (int32_t)(++r->n);
	r->used += rec;
	return 0;
}

/* FP, met in a walk: copied if its entry points into a victim. */
static int consider(struct gc_run *r, const bv_fp *fp)
{
	uint8_t v[64];
	size_t vl;
	struct bv_chunk_loc loc;
	int rc = bv_kv_get(r->s->kv, BV_CF_CHUNKS, fp->b, sizeof fp->b, v,
			   sizeof v, &vl);
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc)
		return bv_fail_storage(rc, r->s->path);
	if (bv_chunk_loc_decode(v, vl, &loc))
		return 0;
	struct cand *c = cand_of(r, loc.container);
	(void)vl;
	if (!c || !c->victim)
		return 0;
	return round_add(r, fp, &loc, c);
}

/* First the order the newest RP of each replica (its head when it has
 * none) reads its chunks: its map in chunk order at that version, so
 * that a restore of a recent RP reads the copies in sequence. */
static int copy_by_rp(struct gc_run *r)
{
	bv_store *s = r->s;
	struct bv_kv_iter *it = NULL;
	struct bv_history h = { 0 };
	struct bv_map_pos pos = { 0 };
	uint64_t want = 0, done_chunk = UINT64_MAX;
	int rc = 0;

	if ((rc = bv_kv_iter_new_at(s->kv, r->snap, BV_CF_MAPS, NULL, 0, NULL,
				    0, &it)))
		return bv_fail_storage(rc, s->path);
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		uint64_t rid = pos.rid;
		if (bv_map_pos_next(&pos, k, kl))
			continue;
		if (pos.rid != rid || h.rid != pos.rid) {
			if ((rc = bv_history_load(s, pos.rid, &h)))
				break;
			want = h.n ? h.rps[h.n - 1].version : h.head;
			done_chunk = UINT64_MAX;
		}
		if (!h.known || pos.chunk == done_chunk || pos.ver > want)
			continue;
		done_chunk = pos.chunk; /* the entry WANT reads */
		if (vl < 16)
			continue;
		bv_fp fp;
		memcpy(fp.b, v, sizeof fp.b);
		if ((rc = consider(r, &fp)))
			break;
	}
	if (!rc && (rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, s->path);
	bv_kv_iter_free(it);
	bv_history_free(&h);
	return rc;
}

struct scan_ctx {
	struct gc_run *r;
	struct cand *c;
	int rc;
};

static int scan_rec(void *ud, const struct bv_chunk_loc *loc,
		    const bv_fp *fp)
{
	struct scan_ctx *x = ud;
	uint8_t v[64];
	size_t vl;
	int rc = entry_at(x->r->s, fp, loc, v, &vl);
	if (rc < 0)
		return x->rc = rc;
	if (rc == 0)
		return 0;
	if ((rc = round_add(x->r, fp, loc, x->c)))
		x->rc = rc;
	return rc;
}

static int scan_damage(void *ud, uint32_t id, uint64_t off, uint64_t len)
{
	struct scan_ctx *x = ud;
	(void)id;
	(void)off;
	(void)len;
	/* A live record in there is not copied: the count check keeps the
	 * container. */
	x->c->damaged = 1;
	return 0;
}

/* Then whatever is still live in each victim, in container order. */
static int copy_rest(struct gc_run *r)
{
	bv_store *s = r->s;
	for (size_t i = 0; i < r->ncand; i++) {
		struct cand *c = &r->cand[i];
		if (!c->victim || c->copied >= c->nlive)
			continue;
		struct scan_ctx x = { r, c, 0 };
		int rc = s->cs->ops->scan(s->cs, c->id, scan_rec, scan_damage,
					  &x);
		r->rep->bytes_read += c->size;
		if (x.rc)
			return x.rc;
		if (rc)
			return bv_fail(rc, "store %s: gc: reading container "
				       "%u: %s", s->path, c->id,
				       bv_strerror(rc));
	}
	return round_do(r);
}

/* Records as retired every victim all of whose live entries now point
 * at copies; a damaged one stays (and is reported). */
static int retire(struct gc_run *r)
{
	bv_store *s = r->s;
	uint8_t key[9], v[8];
	size_t n = 0;
	for (size_t i = 0; i < r->ncand; i++) {
		struct cand *c = &r->cand[i];
		if (!c->victim)
			continue;
		if (c->nlive)
			r->rep->containers_rewritten++;
		if (c->copied < c->nlive) {
			r->rep->containers_damaged++;
			continue;
		}
		retired_key(key, c->id);
		bv_le64(v, r->gen);
		bv_kv_batch_put(r->b, BV_CF_META, key, sizeof key, v, 8);
		n++;
	}
	r->rep->containers_retired = n;
	if (n == 0)
		return 0;
	int rc = bv_kv_write(s->kv, r->b, 1);
	bv_kv_batch_clear(r->b);
	if (rc)
		return bv_fail(rc, "store %s: gc: recording retired "
			       "containers: %s", s->path, bv_kv_error());
	at(r->g, BV_GC_AT_RETIRED);
	return 0;
}

/* Deletes the retired record of ID and the unknown-bytes records of it. */
static int forget(struct gc_run *r, uint32_t id)
{
	bv_store *s = r->s;
	struct bv_kv_iter *it = NULL;
	uint8_t key[9], lo[6], hi[6];
	int rc;
	memcpy(lo, "u/", 2);
	bv_be32(lo + 2, id);
	memcpy(hi, "u/", 2);
	bv_be32(hi + 2, id + 1);
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, lo, sizeof lo,
				 id == UINT32_MAX ? "u0" : (const char *)hi,
				 id == UINT32_MAX ? 2 : sizeof hi, &it)))
		return bv_fail_storage(rc, s->path);
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl;
		const void *k = bv_kv_iter_key(it, &kl);
		bv_kv_batch_delete(r->b, BV_CF_META, k, kl);
	}
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	retired_key(key, id);
	bv_kv_batch_delete(r->b, BV_CF_META, key, sizeof key);
	if (!rc)
		rc = bv_kv_write(s->kv, r->b, 1);
	bv_kv_batch_clear(r->b);
	return rc ? bv_fail(rc, "store %s: gc: forgetting container %u: %s",
			    s->path, id, bv_kv_error()) : 0;
}

/* The index's tail names container ID, about to be removed (an open
 * needs the tail's container): moves it to the end of the highest
 * container below ID that stays (not in RETIRED). Nothing committed lies
 * past that: every committed record is at or below the tail, and ID
 * holds none any more. 1 when moved, 0 when there is no such container
 * (ID then waits). Under the index lock, as ingest records tails. */
static int tail_move(struct gc_run *r, uint32_t id, const uint32_t *retired,
		     size_t nretired)
{
	bv_store *s = r->s;
	uint32_t *ids = NULL, x = 0, tid = 0;
	uint64_t tend = 0, size = 0;
	size_t n = 0;
	int rc, moved = 0;

	pthread_mutex_lock(&s->index_lock);
	if (bv_ctail_file_parse(&s->tail, &tid, &tend) || tid != id)
		goto out; /* moved on meanwhile: a later container */
	if ((rc = s->cs->ops->list(s->cs, &ids, &n)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		int gone = 0;
		for (size_t k = 0; k < nretired && !gone; k++)
			gone = retired[k] == ids[i];
		if (ids[i] < id && !gone)
			x = ids[i];
	}
	if (x == 0 || s->cs->ops->size(s->cs, x, &size))
		goto out;
	struct bv_ctail t;
	bv_ctail_file(&t, x, size);
	bv_kv_batch_put(r->b, BV_CF_META, "tail", 4, t.b, t.len);
	if (bv_kv_write(s->kv, r->b, 1) == 0) {
		s->tail = t;
		moved = 1;
	}
	bv_kv_batch_clear(r->b);
out:
	pthread_mutex_unlock(&s->index_lock);
	free(ids);
	return moved;
}

/* The index's tail as the store records it now (ingest moves it under
 * the index lock). */
static void tail_now(bv_store *s, uint32_t *id, uint64_t *end)
{
	pthread_mutex_lock(&s->index_lock);
	if (bv_ctail_file_parse(&s->tail, id, end))
		*id = 0;
	pthread_mutex_unlock(&s->index_lock);
}

/* Removes each retired container no reader can still read; the others
 * wait for a later run. */
static int remove_retired(struct gc_run *r)
{
	bv_store *s = r->s;
	struct bv_kv_iter *it = NULL;
	uint32_t tail_id = 0, *ids = NULL;
	uint64_t tail_end = 0, *gens = NULL;
	size_t n = 0, cap = 0;
	int rc;

	tail_now(s, &tail_id, &tail_end);
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "gc/r/", 5, "gc/r0", 5,
				 &it)))
		return bv_fail_storage(rc, s->path);
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		if (kl != 9 || vl != 8)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			uint32_t *ni = realloc(ids, cap * sizeof *ids);
			if (ni)
				ids = ni;
			uint64_t *ng = realloc(gens, cap * sizeof *gens);
			if (ng)
				gens = ng;
			if (!ni || !ng) {
				rc = bv_fail(-ENOMEM, "store %s: gc: out of "
					     "memory", s->path);
				break;
			}
		}
		ids[n] = bv_get_be32(k + 5);
		gens[n] = bv_get_le64(v);
		n++;
	}
	if (!rc && (rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, s->path);
	bv_kv_iter_free(it);
	for (size_t i = 0; i < n && !rc; i++) {
		uint64_t size = 0;
		if (!(r->g->unsafe & BV_GC_UNSAFE_NO_READERS) &&
		    readers_busy(s, gens[i])) {
			r->rep->containers_waiting++;
			continue;
		}
		if (ids[i] == tail_id && !r->dry) {
			if (!tail_move(r, ids[i], ids, n)) {
				r->rep->containers_waiting++;
				continue;
			}
			tail_now(s, &tail_id, &tail_end);
		}
		if (r->dry) {
			if (s->cs->ops->size(s->cs, ids[i], &size) == 0)
				r->rep->bytes_removed += size;
			r->rep->containers_removed++;
			continue;
		}
		if (s->cs->ops->size(s->cs, ids[i], &size))
			size = 0;
		/* No in-process read is between its lookup and its read. */
		pthread_rwlock_wrlock(&r->g->rd);
		rc = s->cs->ops->remove(s->cs, ids[i]);
		pthread_rwlock_unlock(&r->g->rd);
		if (rc == -ENOENT)
			rc = 0; /* removed before a crash */
		if (rc) {
			char where[512];
			if (s->cs->ops->where(s->cs, ids[i], where,
					      sizeof where))
				snprintf(where, sizeof where, "container %u",
					 ids[i]);
			rc = bv_fail(rc, "store %s: gc: removing %s: %s",
				     s->path, where, bv_strerror(rc));
			break;
		}
		r->rep->containers_removed++;
		r->rep->bytes_removed += size;
		rc = forget(r, ids[i]);
	}
	free(ids);
	free(gens);
	return rc;
}

/* The dry run's view of compaction: every victim's live bytes copied,
 * itself read whole and removed. */
static void dry_compact(struct gc_run *r)
{
	for (size_t i = 0; i < r->ncand; i++) {
		struct cand *c = &r->cand[i];
		if (!c->victim)
			continue;
		if (c->nlive) {
			r->rep->containers_rewritten++;
			r->rep->bytes_read += c->size + c->live;
			r->rep->bytes_written += c->live;
			r->rep->chunks_copied += c->nlive;
		}
		r->rep->containers_retired++;
		r->rep->containers_removed++;
		r->rep->bytes_removed += c->size;
	}
}

static void run_free(struct gc_run *r)
{
	if (r->snap)
		bv_kv_snap_free(r->s->kv, r->snap);
	bv_kv_batch_free(r->b);
	bv_ring_free(r->ring);
	free(r->bl.bits);
	free(r->cand);
	free(r->buf);
	free(r->items);
	free(r->hset);
	free(r->outs);
}

static int run_alloc(struct gc_run *r)
{
	int rc;
	if ((rc = bv_kv_batch_new(&r->b)))
		return rc;
	if ((rc = bv_ring_new(64, &r->ring)))
		return rc;
	if (!r->dry) {
		if (posix_memalign((void **)&r->buf, 4096, ROUND_BYTES))
			return -ENOMEM;
		r->items = calloc(ROUND_MAX, sizeof *r->items);
		r->hset = calloc(HSET, sizeof *r->hset);
		if (!r->items || !r->hset)
			return -ENOMEM;
	}
	return 0;
}

static int seal(struct gc_run *r)
{
	bv_store *s = r->s;
	int rc = 0;
	if (r->dry) {
		/* Nothing changes: every container counts, as after a seal. */
		r->seal_id = UINT32_MAX;
		return 0;
	}
	pthread_mutex_lock(&s->write_lock);
	rc = s->cs->ops->seal(s->cs, &r->seal_id);
	pthread_mutex_unlock(&s->write_lock);
	return rc ? bv_fail(rc, "store %s: gc: sealing the container being "
			    "appended to: %s", s->path, bv_strerror(rc)) : 0;
}

/* 1 when a victim holds a live record (else nothing needs copying). */
static int any_live(const struct gc_run *r)
{
	for (size_t i = 0; i < r->ncand; i++)
		if (r->cand[i].victim && r->cand[i].nlive)
			return 1;
	return 0;
}

static int gc_run(struct gc_run *r)
{
	bv_store *s = r->s;
	int rc;

	if ((rc = run_alloc(r)))
		return bv_fail(rc, "store %s: gc: %s", s->path,
			       bv_strerror(rc));
	r->gen = bv_gc_generation(s);
	if ((rc = seal(r)))
		return rc;
	/* Active strictly before the snapshot (case b). */
	if (!r->dry)
		set_active(r->g, 1);
	if ((rc = pick_candidates(r)))
		goto out;
	if ((rc = bv_kv_snap_new(s->kv, &r->snap))) {
		rc = bv_fail_storage(rc, s->path);
		goto out;
	}
	at(r->g, BV_GC_AT_MARK);
	if ((rc = mark(r)))
		goto out;
	at(r->g, BV_GC_AT_SWEEP);
	if ((rc = sweep(r)))
		goto out;
	if (!r->dry)
		set_active(r->g, 0);
	free(r->bl.bits);
	r->bl.bits = NULL;
	pick_victims(r);
	double t0 = now_s();
	if (r->dry) {
		dry_compact(r);
	} else if ((rc = any_live(r) ? copy_by_rp(r) : 0) == 0 &&
		   (rc = copy_rest(r)) == 0 && (rc = retire(r)) == 0) {
		rc = remove_retired(r);
	}
	if (r->dry)
		rc = remove_retired(r);
	r->rep->compact_seconds = now_s() - t0;
out:
	if (!r->dry)
		set_active(r->g, 0);
	r->rep->bytes_reclaimed = r->rep->bytes_removed > r->rep->bytes_written ?
				  r->rep->bytes_removed - r->rep->bytes_written : 0;
	return rc;
}

int bv_gc(bv_store *s, const bv_gc_opts *opts, bv_gc_report *report)
{
	bv_gc_report dummy;
	int rc;

	if ((rc = bv_store_writable(s)))
		return rc;
	if (opts && opts->threshold > 100)
		return bv_fail(BV_EINVAL, "store %s: gc: threshold %u%%: must "
			       "be 1 to 100", s->path, opts->threshold);
	if (!report)
		report = &dummy;
	memset(report, 0, sizeof *report);
	struct gc_run r = { .s = s, .g = s->gc, .o = opts, .rep = report,
			    .dry = opts && opts->dry_run };
	pthread_mutex_lock(&s->gc->run);
	rc = gc_run(&r);
	pthread_mutex_unlock(&s->gc->run);
	run_free(&r);
	return rc;
}
