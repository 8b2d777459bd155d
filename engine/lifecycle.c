/*
 * lifecycle.c: removing RPs and replicas (bvault.h, "lifecycle"), their
 * retention locks, and adding replicas to a group.
 *
 * The rule (invariant 11; storage/FORMAT.md, "Removing versions"): a map
 * entry's version is its birth, the next newer entry of its chunk its
 * death, and the versions in [birth, death) read it. The retained
 * versions of a replica are those its group's RPs name and its committed
 * head (which is also the base of a session in flight: a session writes
 * head + 1 and the head moves only at its commit). Removing version V
 * whose retained neighbours are P < V < N (P 0 if none) frees exactly the
 * entries born after P whose death is at or before N. Each such entry
 * dies by an entry at some X in [P + 2, N] (X = P + 1 kills only entries
 * born at or before P), and that killer is listed in births (RID, X,
 * chunk); the entry it kills is the one a seek to (RID, chunk, ~(X - 1))
 * finds. So the work is the births of versions P + 2 .. N: what changed
 * around V, not the replica. Versions below the replica's first with
 * births ("bf/") are found by a walk of its map instead (O(replica)).
 *
 * Order, for crash safety: the intent ("del/": the RP, and for each
 * member RID, P, V, N, frozen) is synced in the batch that removes the
 * RP record; entries go in bounded batches; the intent goes last,
 * synced. A writable open replays an intent it finds (bv_life_recover)
 * before anything else. A replay frees the same set: an entry it deletes
 * has a present killer at or before N, and killers only get older as
 * entries go, so its first killer was at or before N too; an entry of
 * the set still present has a present entry above it that is its first
 * killer or (the ones between went, as members of the set) one at or
 * before N, which the replay's births walk meets.
 *
 * Locks: life_lock makes removals take turns (each finds its neighbours
 * with no other removal between its intent and its end); views/lock is
 * held exclusive while a removal decides and removes (a view pins its
 * RP); meta_lock covers each read-modify-write of meta records.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "view.h"

#define LIFE_BATCH 10000      /* map entries deleted per batch */
#define INTENT_RP 1
#define INTENT_REPLICA 2
#define INTENT_FIXED 29       /* kind u8, count u32, gid, rp, rid */

struct life_member {
	uint64_t rid, p, v, n;
};

struct intent {
	uint8_t kind;
	uint64_t gid, rp, rid;
	uint32_t n;
	struct life_member m[BV_GROUP_MAX_MEMBERS];
};

/* Tests: bv_life_hook sees each step (lifecycle.c's own, for the crash
 * test to stop between them). Unset in normal use. */
int (*bv_life_step_hook)(const char *step);

static int step(const char *what)
{
	return bv_life_step_hook ? bv_life_step_hook(what) : 0;
}

/* ---- small records --------------------------------------------------- */

static size_t key_gid_rp(uint8_t *key, const char *prefix, uint64_t gid,
			 uint64_t rp)
{
	size_t l = strlen(prefix);
	memcpy(key, prefix, l);
	bv_be64(key + l, gid);
	bv_be64(key + l + 8, rp);
	return l + 16;
}

int bv_births_first(bv_store *s, uint64_t rid, uint64_t *first)
{
	uint8_t key[16], v[8];
	size_t vl;
	int rc = bv_kv_get(s->kv, BV_CF_META, key, bv_key_id(key, "bf/", rid),
			   v, sizeof v, &vl);
	*first = UINT64_MAX;
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (vl != 8)
		return BV_ECORRUPT;
	*first = bv_get_le64(v);
	return 0;
}

void bv_births_put(struct bv_kv_batch *b, uint64_t rid, uint64_t first)
{
	uint8_t key[16], v[8];
	bv_le64(v, first);
	bv_kv_batch_put(b, BV_CF_META, key, bv_key_id(key, "bf/", rid), v, 8);
}

int bv_births_start(bv_store *s)
{
	struct bv_kv_iter *it = NULL;
	struct bv_kv_batch *b = NULL;
	uint8_t v[8];
	size_t vl;
	int rc = bv_kv_get(s->kv, BV_CF_META, "bfstart", 7, v, sizeof v, &vl);

	if (rc != ST_ENOTFOUND)
		return rc ? bv_fail_storage(rc, s->path) : 0;
	if ((rc = bv_kv_batch_new(&b)) ||
	    (rc = bv_kv_iter_new(s->kv, BV_CF_META, "r/", 2, "r0", 2, &it)))
		goto out;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		char name[BV_NAME_MAX + 1];
		struct bv_rrec r;
		uint64_t first;
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		if (kl < 3 || kl - 2 > BV_NAME_MAX)
			continue;
		memcpy(name, k + 2, kl - 2);
		name[kl - 2] = 0;
		if (bv_rrec_get(s, name, &r) ||
		    bv_births_first(s, r.rid, &first))
			continue; /* verify reports damaged records */
		/* Versions up to the head were written without births. */
		if (first == UINT64_MAX)
			bv_births_put(b, r.rid, r.head + 1);
	}
	if ((rc = bv_kv_iter_status(it)))
		goto out;
	bv_le64(v, 1);
	bv_kv_batch_put(b, BV_CF_META, "bfstart", 7, v, 8);
	rc = bv_kv_write(s->kv, b, 1);
out:
	bv_kv_iter_free(it);
	bv_kv_batch_free(b);
	return rc ? bv_fail_storage(rc, s->path) : 0;
}

/* The RP's retention lock: *UNTIL 0 when it has none. */
static int lock_get(bv_store *s, uint64_t gid, uint64_t rp, int64_t *until)
{
	uint8_t key[32], v[8];
	size_t vl;
	int rc = bv_kv_get(s->kv, BV_CF_META, key,
			   key_gid_rp(key, "lk/", gid, rp), v, sizeof v, &vl);
	*until = 0;
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (vl != 8)
		return BV_ECORRUPT;
	*until = (int64_t)bv_get_le64(v);
	return 0;
}

static void fmt_until(char *buf, size_t len, int64_t until)
{
	struct tm tm;
	time_t t = (time_t)until;

	if (until == BV_LOCK_FOREVER) {
		snprintf(buf, len, "forever");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* ---- versions a replica keeps ------------------------------------------ */

struct vers {
	uint64_t *v;
	size_t n, cap;
};

static int vers_add(struct vers *vs, uint64_t v)
{
	if (vs->n == vs->cap) {
		size_t nc = vs->cap ? 2 * vs->cap : 64;
		uint64_t *nv = realloc(vs->v, nc * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		vs->v = nv;
		vs->cap = nc;
	}
	vs->v[vs->n++] = v;
	return 0;
}

/* Calls FN for every RP record of group GID, in number order. */
static int rp_each(bv_store *s, uint64_t gid,
		   int (*fn)(void *ud, uint64_t number,
			     const struct bv_rprec *p),
		   void *ud)
{
	static _Thread_local struct bv_rprec p;
	struct bv_kv_iter *it = NULL;
	uint8_t lo[16], hi[16];
	int rc;

	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, lo,
				 bv_key_id(lo, "p/", gid), hi,
				 bv_key_id(hi, "p/", gid + 1), &it)))
		return bv_fail_storage(rc, s->path);
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const void *v = bv_kv_iter_value(it, &vl);
		if (kl != 18)
			continue;
		if (bv_rprec_decode(v, vl, &p)) {
			rc = bv_fail(BV_ECORRUPT, "recovery point %llu of group "
				     "id %llu: record is damaged",
				     (unsigned long long)bv_get_be64(k + 10),
				     (unsigned long long)gid);
			break;
		}
		if ((rc = fn(ud, bv_get_be64(k + 10), &p)))
			break;
	}
	if (!rc && (rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, s->path);
	bv_kv_iter_free(it);
	return rc;
}

struct kept_ctx {
	struct vers *vs;
	uint64_t rid, skip;
};

static int kept_one(void *ud, uint64_t number, const struct bv_rprec *p)
{
	struct kept_ctx *c = ud;

	if (number == c->skip)
		return 0;
	for (uint32_t i = 0; i < p->n; i++)
		if (p->m[i].rid == c->rid)
			return vers_add(c->vs, p->m[i].version);
	return 0;
}

/* The neighbours of version V of replica RID (head HEAD) among its
 * retained versions once RP SKIP of group GID is gone: *KEPT 1 when V
 * itself stays retained (another RP, or the head, names it). */
static int neighbours(bv_store *s, uint64_t gid, uint64_t rid, uint64_t head,
		      uint64_t skip, uint64_t v, uint64_t *p, uint64_t *n,
		      int *kept)
{
	struct vers vs = { 0 };
	struct kept_ctx c = { &vs, rid, skip };
	int rc;

	*p = 0;
	*n = UINT64_MAX;
	*kept = v == head;
	if ((rc = rp_each(s, gid, kept_one, &c)))
		goto out;
	if ((rc = vers_add(&vs, head)))
		goto out;
	for (size_t i = 0; i < vs.n; i++) {
		uint64_t x = vs.v[i];
		if (x == v)
			*kept = 1;
		else if (x < v && x > *p)
			*p = x;
		else if (x > v && x < *n)
			*n = x;
	}
out:
	free(vs.v);
	return rc;
}

/* ---- freeing entries ------------------------------------------------- */

struct freeing {
	bv_store *s;
	struct bv_kv_batch *b;
	size_t ndel;          /* map entries in B */
};

/* Writes F's batch (unsynced: the intent stays until the end, and a
 * replay deletes again whatever a crash lost), with the map counter. */
static int freeing_flush(struct freeing *f)
{
	struct bv_mstat ms;
	int rc;

	if (bv_kv_batch_count(f->b) == 0)
		return 0;
	if ((rc = step("batch")))
		return rc;
	pthread_mutex_lock(&f->s->meta_lock);
	if (!(rc = bv_mstat_get(f->s, &ms))) {
		ms.map_entries -= ms.map_entries < f->ndel ? ms.map_entries :
			f->ndel;
		bv_mstat_put(f->b, &ms);
		rc = bv_kv_write(f->s->kv, f->b, 0);
	}
	pthread_mutex_unlock(&f->s->meta_lock);
	bv_kv_batch_clear(f->b);
	f->ndel = 0;
	return rc;
}

/* Entries per batch: LIFE_BATCH, or BV_LIFE_BATCH (tests: small batches
 * make a crash land between them). */
static size_t batch_max(void)
{
	const char *e = getenv("BV_LIFE_BATCH");
	long n = e ? strtol(e, NULL, 10) : 0;
	return n > 0 && n < LIFE_BATCH ? (size_t)n : LIFE_BATCH;
}

static int freeing_del(struct freeing *f, uint64_t rid, uint64_t chunk,
		       uint64_t ver)
{
	bv_map_delete(f->b, rid, chunk, ver);
	if (++f->ndel >= batch_max())
		return freeing_flush(f);
	return 0;
}

/* Through births: for each (RID, X, chunk) with X in [P + 2, N], the
 * entry visible at X - 1 dies at X; it goes when born after P. */
static int free_births(struct freeing *f, const struct life_member *m)
{
	struct bv_kv_iter *bi = NULL, *mi = NULL;
	uint8_t lo[16], hi[16], key[BV_MAP_KEY];
	int rc;

	bv_be64(lo, m->rid);
	bv_be64(lo + 8, m->p + 2);
	bv_be64(hi, m->rid);
	bv_be64(hi + 8, m->n + 1);
	if ((rc = bv_kv_iter_new(f->s->kv, BV_CF_BIRTHS, lo, 16, hi, 16,
				 &bi)) ||
	    (rc = bv_map_iter(f->s, m->rid, &mi)))
		goto out;
	for (; bv_kv_iter_valid(bi); bv_kv_iter_next(bi)) {
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(bi, &kl);
		if (kl != BV_BIRTH_KEY)
			continue;
		uint64_t x = bv_get_be64(k + 8), chunk = bv_get_be64(k + 16);
		bv_key_map(key, m->rid, chunk, x - 1);
		bv_kv_iter_seek(mi, key, sizeof key);
		if (!bv_kv_iter_valid(mi))
			continue;
		const uint8_t *e = bv_kv_iter_key(mi, &kl);
		if (kl != BV_MAP_KEY || memcmp(e, key, 16))
			continue; /* no older entry of that chunk */
		uint64_t born = ~bv_get_be64(e + 16);
		if (born > m->p && (rc = freeing_del(f, m->rid, chunk, born)))
			goto out;
	}
	if ((rc = bv_kv_iter_status(bi)) || (rc = bv_kv_iter_status(mi)))
		goto out;
out:
	bv_kv_iter_free(bi);
	bv_kv_iter_free(mi);
	return rc;
}

/* The same rule by a walk of RID's whole map (versions before births):
 * an entry goes when born after P with its next newer one at or before
 * N. */
static int free_scan(struct freeing *f, const struct life_member *m)
{
	struct bv_kv_iter *it = NULL;
	struct bv_map_pos pos = { 0 };
	int rc;

	if ((rc = bv_map_iter(f->s, m->rid, &it)))
		return rc;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		if (bv_map_pos_next(&pos, k, kl))
			continue;
		if (pos.ver > m->p && pos.newer != UINT64_MAX &&
		    pos.newer <= m->n &&
		    (rc = freeing_del(f, m->rid, pos.chunk, pos.ver)))
			break;
	}
	if (!rc)
		rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc;
}

static int free_member(struct freeing *f, const struct life_member *m)
{
	uint64_t first;
	int rc;

	if (m->n == UINT64_MAX || m->n <= m->p + 1)
		return 0;
	if ((rc = bv_births_first(f->s, m->rid, &first)))
		return rc;
	return first <= m->p + 2 ? free_births(f, m) : free_scan(f, m);
}

/* ---- intents ------------------------------------------------------------ */

static size_t intent_encode(const struct intent *in, uint8_t *v)
{
	size_t pos = INTENT_FIXED;

	v[0] = in->kind;
	bv_le32(v + 1, in->n);
	bv_le64(v + 5, in->gid);
	bv_le64(v + 13, in->rp);
	bv_le64(v + 21, in->rid);
	for (uint32_t i = 0; i < in->n; i++, pos += 32) {
		bv_le64(v + pos, in->m[i].rid);
		bv_le64(v + pos + 8, in->m[i].p);
		bv_le64(v + pos + 16, in->m[i].v);
		bv_le64(v + pos + 24, in->m[i].n);
	}
	return pos;
}

static int intent_decode(const uint8_t *v, size_t len, struct intent *in)
{
	if (len < INTENT_FIXED)
		return BV_ECORRUPT;
	in->kind = v[0];
	in->n = bv_get_le32(v + 1);
	in->gid = bv_get_le64(v + 5);
	in->rp = bv_get_le64(v + 13);
	in->rid = bv_get_le64(v + 21);
	if ((in->kind != INTENT_RP && in->kind != INTENT_REPLICA) ||
	    in->n > BV_GROUP_MAX_MEMBERS ||
	    len != INTENT_FIXED + 32 * (size_t)in->n)
		return BV_ECORRUPT;
	for (uint32_t i = 0; i < in->n; i++) {
		const uint8_t *p = v + INTENT_FIXED + 32 * (size_t)i;
		in->m[i] = (struct life_member){ bv_get_le64(p),
			bv_get_le64(p + 8), bv_get_le64(p + 16),
			bv_get_le64(p + 24) };
	}
	return 0;
}

/* Puts intent IN into B under a new "del/" key (into KEY, 12 bytes). */
static int intent_put(bv_store *s, struct bv_kv_batch *b,
		      const struct intent *in, uint8_t key[12])
{
	static _Thread_local uint8_t v[INTENT_FIXED +
				       32 * BV_GROUP_MAX_MEMBERS];
	uint64_t seq;
	int rc;

	if ((rc = bv_seq_next(s, b, "del", &seq)))
		return rc;
	memcpy(key, "del/", 4);
	bv_be64(key + 4, seq);
	bv_kv_batch_put(b, BV_CF_META, key, 12, v, intent_encode(in, v));
	return 0;
}

/* The whole of replica RID: its map and births by range, its version
 * identities; counted first, so that the counter goes down in the batch
 * that removes them. */
static int purge_replica(bv_store *s, uint64_t rid, struct bv_kv_batch *b)
{
	uint8_t lo[16], hi[16], mlo[8], mhi[8];
	struct bv_kv_iter *it = NULL;
	struct bv_mstat ms;
	uint64_t count = 0;
	size_t l;
	int rc;

	bv_be64(mlo, rid);
	bv_be64(mhi, rid + 1);
	if ((rc = bv_map_iter(s, rid, &it)))
		return rc;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it))
		count++;
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	if (rc || (rc = step("batch")))
		return rc;
	bv_kv_batch_delete_range(b, BV_CF_MAPS, mlo, 8, mhi, 8);
	bv_kv_batch_delete_range(b, BV_CF_BIRTHS, mlo, 8, mhi, 8);
	l = bv_key_id(lo, "v/", rid);
	bv_key_id(hi, "v/", rid + 1);
	bv_kv_batch_delete_range(b, BV_CF_META, lo, l, hi, l);
	l = bv_key_id(lo, "vi/", rid);
	bv_key_id(hi, "vi/", rid + 1);
	bv_kv_batch_delete_range(b, BV_CF_META, lo, l, hi, l);
	pthread_mutex_lock(&s->meta_lock);
	if (!(rc = bv_mstat_get(s, &ms))) {
		ms.map_entries -= ms.map_entries < count ? ms.map_entries :
			count;
		bv_mstat_put(b, &ms);
	}
	pthread_mutex_unlock(&s->meta_lock);
	return rc;
}

/* Carries out intent IN (stored under KEY) and removes it, synced. */
static int intent_run(bv_store *s, const struct intent *in,
		      const uint8_t key[12])
{
	struct freeing f = { s, NULL, 0 };
	uint8_t mlo[8], mhi[8];
	int rc;

	if ((rc = bv_kv_batch_new(&f.b)))
		return rc;
	if (in->kind == INTENT_RP) {
		for (uint32_t i = 0; i < in->n && !rc; i++)
			rc = free_member(&f, &in->m[i]);
		if (!rc)
			rc = freeing_flush(&f);
	} else {
		rc = purge_replica(s, in->rid, f.b);
	}
	if (rc || (rc = step("end")))
		goto out;
	bv_kv_batch_delete(f.b, BV_CF_META, key, 12);
	if ((rc = bv_kv_write(s->kv, f.b, 1)))
		goto out;
	if (in->kind == INTENT_REPLICA) {
		/* The range tombstones and the space they cover go now. */
		bv_be64(mlo, in->rid);
		bv_be64(mhi, in->rid + 1);
		bv_kv_compact_range(s->kv, BV_CF_MAPS, mlo, 8, mhi, 8);
		bv_kv_compact_range(s->kv, BV_CF_BIRTHS, mlo, 8, mhi, 8);
	}
out:
	bv_kv_batch_free(f.b);
	return rc;
}

int bv_life_recover(bv_store *s)
{
	static _Thread_local struct intent in;
	struct bv_kv_iter *it = NULL;
	uint8_t key[12];
	int rc, found;

	do {
		found = 0;
		if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "del/", 4, "del0",
					 4, &it)))
			return bv_fail_storage(rc, s->path);
		for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
			size_t kl, vl;
			const uint8_t *k = bv_kv_iter_key(it, &kl);
			const uint8_t *v = bv_kv_iter_value(it, &vl);
			if (kl != 12)
				continue;
			if (intent_decode(v, vl, &in)) {
				bv_kv_iter_free(it);
				return bv_fail(BV_ECORRUPT, "store %s: removal "
					       "intent %llu is damaged; nothing "
					       "was changed", s->path,
					       (unsigned long long)
					       bv_get_be64(k + 4));
			}
			memcpy(key, k, 12);
			found = 1;
			break;
		}
		rc = bv_kv_iter_status(it);
		bv_kv_iter_free(it);
		it = NULL;
		if (rc)
			return bv_fail_storage(rc, s->path);
		if (found && (rc = intent_run(s, &in, key)))
			return bv_fail(rc, "store %s: finishing a removal cut "
				       "short: %s", s->path,
				       rc == ST_EDB ? bv_kv_error() :
				       bv_strerror(rc));
	} while (found);
	return 0;
}

/* ---- rp rm ------------------------------------------------------------ */

struct newest_ctx {
	uint64_t newest, count;
};

static int newest_one(void *ud, uint64_t number, const struct bv_rprec *p)
{
	struct newest_ctx *c = ud;
	(void)p;
	c->newest = number;
	c->count++;
	return 0;
}

/* The newest RP left of group GID (0: none) and how many there are. */
static int rp_newest(bv_store *s, uint64_t gid, uint64_t *newest,
		     uint64_t *count)
{
	struct newest_ctx c = { 0, 0 };
	int rc = rp_each(s, gid, newest_one, &c);
	*newest = c.newest;
	if (count)
		*count = c.count;
	return rc;
}

int bv_rp_latest(bv_store *s, uint64_t gid, uint64_t latest, uint64_t *rp)
{
	struct bv_rprec *p = NULL;
	int rc;

	*rp = latest;
	if (latest == 0)
		return 0;
	p = malloc(sizeof *p);
	if (!p)
		return -ENOMEM;
	rc = bv_rprec_get(s, gid, latest, p);
	free(p);
	if (rc != ST_ENOTFOUND)
		return rc;
	/* The latest was removed (rp rm --force). */
	return rp_newest(s, gid, rp, NULL);
}

/* A view made from RP of group GID, or NULL. */
static const struct bv_view_pin *pinned(bv_store *s, uint64_t gid,
					uint64_t rp,
					const struct bv_view_pin *pins,
					size_t npins)
{
	for (size_t i = 0; i < npins; i++) {
		struct bv_rrec r;
		if (pins[i].rp == rp &&
		    bv_rrec_get(s, pins[i].replica, &r) == 0 && r.gid == gid)
			return &pins[i];
	}
	return NULL;
}

/* Removes RP of group GNAME: with life_lock and the pins held; takes
 * meta_lock for the decision and the intent. */
static int rp_remove_locked(bv_store *s, const char *gname, uint64_t rp,
			    int force, const struct bv_view_pin *pins,
			    size_t npins)
{
	static _Thread_local struct bv_grec g;
	static _Thread_local struct bv_rprec p;
	static _Thread_local struct intent in;
	const struct bv_view_pin *pin;
	struct bv_kv_batch *b = NULL;
	uint8_t key[32], ikey[12];
	uint64_t newest;
	int64_t until;
	char when[40];
	int rc, locked = 1;

	pthread_mutex_lock(&s->meta_lock);
	if ((rc = bv_grec_get(s, gname, &g))) {
		rc = bv_fail(rc, "group %s: %s", gname, bv_strerror(rc));
		goto out;
	}
	if ((rc = rp_newest(s, g.gid, &newest, NULL)))
		goto out;
	if (rp == BV_RP_LATEST) {
		if (!newest) {
			rc = bv_fail(BV_ENOTFOUND, "group %s: has no recovery "
				     "point", gname);
			goto out;
		}
		rp = newest;
	}
	rc = bv_rprec_get(s, g.gid, rp, &p);
	if (rc == ST_ENOTFOUND) {
		rc = bv_fail(BV_ENOTFOUND, "group %s: no recovery point %llu",
			     gname, (unsigned long long)rp);
		goto out;
	}
	if (rc || (rc = lock_get(s, g.gid, rp, &until))) {
		rc = bv_fail(rc, "group %s: recovery point %llu: %s", gname,
			     (unsigned long long)rp, bv_strerror(rc));
		goto out;
	}
	if (until > (int64_t)time(NULL)) {
		fmt_until(when, sizeof when, until);
		rc = bv_fail(BV_EBUSY, "group %s: recovery point %llu is "
			     "protected until %s (a retention lock: nothing "
			     "removes it before then, --force neither)", gname,
			     (unsigned long long)rp, when);
		goto out;
	}
	if ((pin = pinned(s, g.gid, rp, pins, npins))) {
		rc = bv_fail(BV_EBUSY, "group %s: recovery point %llu: view %s "
			     "is made from it (bvault view rm %s first)", gname,
			     (unsigned long long)rp, pin->view, pin->view);
		goto out;
	}
	if (rp == newest && !force) {
		rc = bv_fail(BV_EBUSY, "group %s: recovery point %llu is the "
			     "latest, the base agents send changes from "
			     "(--force removes it)", gname,
			     (unsigned long long)rp);
		goto out;
	}
	memset(&in, 0, sizeof in);
	in.kind = INTENT_RP;
	in.gid = g.gid;
	in.rp = rp;
	for (uint32_t i = 0; i < p.n; i++) {
		char name[BV_NAME_MAX + 1];
		struct bv_rrec r;
		struct life_member m = { p.m[i].rid, 0, p.m[i].version, 0 };
		int kept;

		/* (Version 0, a member with nothing committed at the RP,
		 * too: the versions up to N that no RP names are freed.) */
		if (bv_id_name(s, "ri/", m.rid, name) ||
		    bv_rrec_get(s, name, &r)) {
			rc = bv_fail(BV_ECORRUPT, "group %s: member id %llu of "
				     "recovery point %llu has no replica "
				     "record", gname,
				     (unsigned long long)m.rid,
				     (unsigned long long)rp);
			goto out;
		}
		if ((rc = neighbours(s, g.gid, m.rid, r.head, rp, m.v, &m.p,
				     &m.n, &kept)))
			goto out;
		if (!kept && m.n != UINT64_MAX)
			in.m[in.n++] = m;
	}
	if ((rc = bv_kv_batch_new(&b)) || (rc = intent_put(s, b, &in, ikey)))
		goto out;
	bv_kv_batch_delete(b, BV_CF_META, key, bv_key_rp(key, g.gid, rp));
	bv_kv_batch_delete(b, BV_CF_META, key,
			   key_gid_rp(key, "lk/", g.gid, rp));
	/* Invariant 11: the intent is durable before the first entry goes. */
	if ((rc = bv_kv_write(s->kv, b, 1))) {
		rc = bv_fail_storage(rc, gname);
		goto out;
	}
	pthread_mutex_unlock(&s->meta_lock);
	locked = 0;
	if ((rc = step("intent")) || (rc = intent_run(s, &in, ikey)))
		rc = bv_fail(rc, "group %s: removing recovery point %llu: %s "
			     "(the rest is done at the next open)", gname,
			     (unsigned long long)rp,
			     rc == ST_EDB ? bv_kv_error() : bv_strerror(rc));
out:
	if (locked)
		pthread_mutex_unlock(&s->meta_lock);
	bv_kv_batch_free(b);
	return rc;
}

/* Resolves WHAT to its group name under meta_lock. */
static int group_of(bv_store *s, const char *what, char *gname)
{
	static _Thread_local struct bv_grec g;
	int rc;

	if (!what || (rc = bv_name_check("replica or group", what)))
		return what ? rc : bv_fail(BV_EINVAL, "no replica or group");
	pthread_mutex_lock(&s->meta_lock);
	rc = bv_resolve_group(s, what, gname, &g);
	pthread_mutex_unlock(&s->meta_lock);
	return rc;
}

int bv_rp_remove(bv_store *s, const char *what, uint64_t rp, int force)
{
	char gname[BV_NAME_MAX + 1];
	struct bv_view_pin *pins = NULL;
	size_t npins = 0;
	int rc, lfd = -1;

	bv_fail(0, "%s", "");
	if ((rc = bv_store_writable(s)) || (rc = group_of(s, what, gname)))
		return rc;
	if (rp == 0)
		return bv_fail(BV_EINVAL, "%s@0: 0 is the head, not a recovery "
			       "point", what);
	pthread_mutex_lock(&s->life_lock);
	if (!(rc = bv_view_pins_lock(s, 1, &lfd, &pins, &npins)))
		rc = rp_remove_locked(s, gname, rp, force, pins, npins);
	bv_view_pins_unlock(lfd, pins);
	pthread_mutex_unlock(&s->life_lock);
	return rc;
}

/* ---- protection ------------------------------------------------------- */

static int rp_find(bv_store *s, const char *what, uint64_t *rp,
		   struct bv_grec *g, char *gname)
{
	static _Thread_local struct bv_rprec p;
	int rc;

	if ((rc = bv_resolve_group(s, what, gname, g)))
		return rc;
	if (*rp == BV_RP_LATEST) {
		if ((rc = rp_newest(s, g->gid, rp, NULL)))
			return rc;
		if (!*rp)
			return bv_fail(BV_ENOTFOUND, "group %s: has no "
				       "recovery point", gname);
	}
	rc = bv_rprec_get(s, g->gid, *rp, &p);
	if (rc == ST_ENOTFOUND)
		return bv_fail(BV_ENOTFOUND, "group %s: no recovery point %llu",
			       gname, (unsigned long long)*rp);
	if (rc)
		return bv_fail(rc, "group %s: recovery point %llu: %s", gname,
			       (unsigned long long)*rp, bv_strerror(rc));
	return 0;
}

int bv_rp_protect(bv_store *s, const char *what, uint64_t rp, int64_t until)
{
	static _Thread_local struct bv_grec g;
	char gname[BV_NAME_MAX + 1], a[40], b2[40];
	uint8_t key[32], v[8];
	int64_t old;
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = bv_store_writable(s)))
		return rc;
	if (!what || (rc = bv_name_check("replica or group", what)))
		return what ? rc : bv_fail(BV_EINVAL, "no replica or group");
	if (until <= (int64_t)time(NULL))
		return bv_fail(BV_EINVAL, "%s@%llu: a lock until a time in the "
			       "past", what, (unsigned long long)rp);
	pthread_mutex_lock(&s->meta_lock);
	if ((rc = rp_find(s, what, &rp, &g, gname)))
		goto out;
	if ((rc = lock_get(s, g.gid, rp, &old))) {
		rc = bv_fail(rc, "group %s: lock of recovery point %llu: %s",
			     gname, (unsigned long long)rp, bv_strerror(rc));
		goto out;
	}
	if (old > until) {
		fmt_until(a, sizeof a, old);
		fmt_until(b2, sizeof b2, until);
		rc = bv_fail(BV_EINVAL, "group %s: recovery point %llu is "
			     "protected until %s; a lock only extends, never "
			     "shortens (to %s)", gname, (unsigned long long)rp,
			     a, b2);
		goto out;
	}
	bv_le64(v, (uint64_t)until);
	if ((rc = bv_kv_put(s->kv, BV_CF_META, key,
			    key_gid_rp(key, "lk/", g.gid, rp), v, 8, 1)))
		rc = bv_fail_storage(rc, gname);
out:
	pthread_mutex_unlock(&s->meta_lock);
	return rc;
}

int bv_rp_protected(bv_store *s, const char *what, uint64_t rp,
		    int64_t *until)
{
	static _Thread_local struct bv_grec g;
	char gname[BV_NAME_MAX + 1];
	int rc;

	bv_fail(0, "%s", "");
	*until = 0;
	if (!what || (rc = bv_name_check("replica or group", what)))
		return what ? rc : bv_fail(BV_EINVAL, "no replica or group");
	pthread_mutex_lock(&s->meta_lock);
	if (!(rc = rp_find(s, what, &rp, &g, gname)) &&
	    (rc = lock_get(s, g.gid, rp, until)))
		rc = bv_fail(rc, "group %s: %s", gname, bv_strerror(rc));
	pthread_mutex_unlock(&s->meta_lock);
	if (!rc && *until <= (int64_t)time(NULL))
		*until = 0;
	return rc;
}

/* ---- replica rm ------------------------------------------------------- */

struct strip_ctx {
	bv_store *s;
	struct bv_kv_batch *b;
	uint64_t gid, rid;
	const char *name, *gname;
	int64_t now;
	int all; /* the group goes: every RP goes */
};

static int strip_one(void *ud, uint64_t number, const struct bv_rprec *p)
{
	static _Thread_local struct bv_rprec np;
	struct strip_ctx *c = ud;
	uint8_t key[32];
	int64_t until;
	char when[40];
	int named = 0, rc;

	np = *p;
	np.n = 0;
	for (uint32_t i = 0; i < p->n; i++) {
		if (p->m[i].rid == c->rid)
			named = 1;
		else
			np.m[np.n++] = p->m[i];
	}
	if (!named && !c->all)
		return 0;
	if ((rc = lock_get(c->s, c->gid, number, &until)))
		return rc;
	if (until > c->now) {
		fmt_until(when, sizeof when, until);
		return bv_fail(BV_EBUSY, "replica %s: recovery point %llu of "
			       "group %s holds it and is protected until %s",
			       c->name, (unsigned long long)number, c->gname,
			       when);
	}
	/* Invariant 3 for the members left: each keeps its version and
	 * size, so the RP reads the same for them. */
	if (np.n && !c->all) {
		bv_rprec_put(c->b, c->gid, number, &np);
		return 0;
	}
	bv_kv_batch_delete(c->b, BV_CF_META, key,
			   bv_key_rp(key, c->gid, number));
	bv_kv_batch_delete(c->b, BV_CF_META, key,
			   key_gid_rp(key, "lk/", c->gid, number));
	return 0;
}

int bv_replica_remove(bv_store *s, const char *name)
{
	static _Thread_local struct bv_grec g;
	static _Thread_local struct intent in;
	char gname[BV_NAME_MAX + 1];
	struct bv_view_pin *pins = NULL;
	struct bv_kv_batch *b = NULL;
	struct bv_rrec r;
	uint8_t key[128], ikey[12];
	size_t npins = 0;
	int rc, lfd = -1, meta = 0;

	bv_fail(0, "%s", "");
	if ((rc = bv_store_writable(s)) ||
	    (rc = bv_name_check("replica", name)))
		return rc;
	pthread_mutex_lock(&s->life_lock);
	if ((rc = bv_view_pins_lock(s, 1, &lfd, &pins, &npins)))
		goto out;
	for (size_t i = 0; i < npins; i++)
		if (!strcmp(pins[i].replica, name)) {
			rc = bv_fail(BV_EBUSY, "replica %s: view %s is made "
				     "from it (RP %llu; bvault view rm %s "
				     "first)", name, pins[i].view,
				     (unsigned long long)pins[i].rp,
				     pins[i].view);
			goto out;
		}
	pthread_mutex_lock(&s->meta_lock);
	meta = 1;
	rc = bv_rrec_get(s, name, &r);
	if (rc == ST_ENOTFOUND) {
		rc = bv_fail(BV_ENOTFOUND, "replica %s: no such replica", name);
		goto out;
	}
	if (rc) {
		rc = bv_fail(rc, "replica %s: %s", name, bv_strerror(rc));
		goto out;
	}
	for (size_t i = 0; i < s->nbusy; i++)
		if (s->busy[i] == r.rid) {
			rc = bv_fail(BV_EBUSY, "replica %s: an ingest session "
				     "is writing it", name);
			goto out;
		}
	if ((rc = bv_id_name(s, "gi/", r.gid, gname)) ||
	    (rc = bv_grec_get(s, gname, &g))) {
		rc = bv_fail(BV_ECORRUPT, "replica %s: its group record is "
			     "missing or damaged", name);
		goto out;
	}
	if ((rc = bv_kv_batch_new(&b)))
		goto out;
	{
		struct strip_ctx c = { s, b, g.gid, r.rid, name, gname,
				       (int64_t)time(NULL), g.n == 1 };
		if ((rc = rp_each(s, g.gid, strip_one, &c)))
			goto out;
	}
	memset(&in, 0, sizeof in);
	in.kind = INTENT_REPLICA;
	in.gid = g.gid;
	in.rid = r.rid;
	if ((rc = intent_put(s, b, &in, ikey)))
		goto out;
	bv_kv_batch_delete(b, BV_CF_META, key, bv_key_name(key, "r/", name));
	bv_kv_batch_delete(b, BV_CF_META, key, bv_key_id(key, "ri/", r.rid));
	bv_kv_batch_delete(b, BV_CF_META, key, bv_key_id(key, "bf/", r.rid));
	bv_kv_batch_delete(b, BV_CF_META, key,
			   bv_key_id(key, "inflight/", r.rid));
	if (g.n == 1) {
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_name(key, "g/", gname));
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_id(key, "gi/", g.gid));
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_id(key, "pol/", g.gid));
	} else {
		uint32_t k = 0;
		for (uint32_t i = 0; i < g.n; i++)
			if (g.members[i] != r.rid)
				g.members[k++] = g.members[i];
		g.n = k;
		bv_grec_put(b, gname, &g);
	}
	if ((rc = bv_kv_write(s->kv, b, 1))) {
		rc = bv_fail_storage(rc, name);
		goto out;
	}
	pthread_mutex_unlock(&s->meta_lock);
	meta = 0;
	if ((rc = step("intent")) || (rc = intent_run(s, &in, ikey)))
		rc = bv_fail(rc, "replica %s: removing its map: %s (the rest "
			     "is done at the next open)", name,
			     rc == ST_EDB ? bv_kv_error() : bv_strerror(rc));
out:
	if (meta)
		pthread_mutex_unlock(&s->meta_lock);
	bv_kv_batch_free(b);
	bv_view_pins_unlock(lfd, pins);
	pthread_mutex_unlock(&s->life_lock);
	return rc;
}

/* ---- group add ---------------------------------------------------------- */

int bv_group_add(bv_store *s, const char *group, const char *const *replicas,
		 size_t n)
{
	static _Thread_local struct bv_grec g, old;
	struct bv_kv_batch *b = NULL;
	struct bv_rrec r;
	uint8_t key[128];
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = bv_store_writable(s)) || (rc = bv_name_check("group", group)))
		return rc;
	if (n == 0)
		return bv_fail(BV_EINVAL, "group %s: no replica to add", group);
	for (size_t i = 0; i < n; i++) {
		if ((rc = bv_name_check("replica", replicas[i])))
			return rc;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(replicas[i], replicas[j]))
				return bv_fail(BV_EINVAL, "group %s: replica "
					       "%s is named twice", group,
					       replicas[i]);
	}
	pthread_mutex_lock(&s->meta_lock);
	rc = bv_grec_get(s, group, &g);
	if (rc == ST_ENOTFOUND) {
		rc = bv_fail(BV_ENOTFOUND, "group %s: no such group (bvault "
			     "group create makes one)", group);
		goto out;
	}
	if (rc) {
		rc = bv_fail(rc, "group %s: %s", group, bv_strerror(rc));
		goto out;
	}
	if (g.n + n > BV_GROUP_MAX_MEMBERS) {
		rc = bv_fail(BV_EINVAL, "group %s: %u members and %zu more is "
			     "over %d", group, g.n, n, BV_GROUP_MAX_MEMBERS);
		goto out;
	}
	if ((rc = bv_kv_batch_new(&b)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		char own[BV_NAME_MAX + 1];
		uint64_t newest;

		rc = bv_rrec_get(s, replicas[i], &r);
		if (rc == ST_ENOTFOUND) {
			rc = bv_fail(BV_ENOTFOUND, "group %s: unknown replica "
				     "%s", group, replicas[i]);
			goto out;
		}
		if (rc) {
			rc = bv_fail(rc, "replica %s: %s", replicas[i],
				     bv_strerror(rc));
			goto out;
		}
		if (r.gid == g.gid) {
			rc = bv_fail(BV_EEXIST, "group %s: replica %s is a "
				     "member already", group, replicas[i]);
			goto out;
		}
		if (bv_id_name(s, "gi/", r.gid, own) ||
		    bv_grec_get(s, own, &old)) {
			rc = bv_fail(BV_ECORRUPT, "replica %s: its group record "
				     "is missing or damaged", replicas[i]);
			goto out;
		}
		if (strcmp(own, replicas[i]) || old.n != 1) {
			rc = bv_fail(BV_EEXIST, "group %s: replica %s is "
				     "already in group %s", group, replicas[i],
				     own);
			goto out;
		}
		if ((rc = rp_newest(s, old.gid, &newest, NULL)))
			goto out;
		if (old.latest_rp || newest) {
			rc = bv_fail(BV_EINVAL, "group %s: replica %s has "
				     "recovery points of its own; RPs are "
				     "numbered per group, so it cannot take "
				     "them along", group, replicas[i]);
			goto out;
		}
		for (size_t j = 0; j < s->nbusy; j++)
			if (s->busy[j] == r.rid) {
				rc = bv_fail(BV_EBUSY, "replica %s: an ingest "
					     "session is writing it", replicas[i]);
				goto out;
			}
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_name(key, "g/", own));
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_id(key, "gi/", old.gid));
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_id(key, "pol/", old.gid));
		r.gid = g.gid;
		bv_rrec_put(b, replicas[i], &r);
		g.members[g.n++] = r.rid;
	}
	bv_grec_put(b, group, &g);
	if ((rc = bv_kv_write(s->kv, b, 1)))
		rc = bv_fail_storage(rc, group);
out:
	pthread_mutex_unlock(&s->meta_lock);
	bv_kv_batch_free(b);
	return rc;
}

/* For policy.c. */
int bv_life_rp_remove_locked(bv_store *s, const char *gname, uint64_t rp,
			     const struct bv_view_pin *pins, size_t npins)
{
	return rp_remove_locked(s, gname, rp, 0, pins, npins);
}

int bv_life_rp_lock(bv_store *s, uint64_t gid, uint64_t rp, int64_t *until)
{
	return lock_get(s, gid, rp, until);
}

int bv_life_rp_each(bv_store *s, uint64_t gid,
		    int (*fn)(void *ud, uint64_t number,
			      const struct bv_rprec *p),
		    void *ud)
{
	return rp_each(s, gid, fn, ud);
}
