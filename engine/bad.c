/*
 * bad.c: chunks marked bad (INVARIANTS.md 13). Verify marks a chunk
 * whose record does not read back (meta "bad/" fingerprint, FORMAT.md);
 * from then on:
 *  - no read hands it out: chunks_locate() in reader.c fails naming it,
 *    before its record is read (a damaged record fails its checksum
 *    anyway; the mark makes the message say so, also for a record that
 *    reads back, e.g. a flipped byte that was put right);
 *  - ingest never dedups against it: work_chunk() treats it as not
 *    stored, so the chunk's bytes, when a host sends them again, get a
 *    fresh record, and index_batch() repoints the chunk index entry to
 *    it and removes the mark in the same batch. Map entries name the
 *    fingerprint, not the location, so every RP that needed the chunk
 *    reads it again: the heal;
 *  - bv_reader_digests() gives its digest as unknown, so the next
 *    consistency check of an agent sends it.
 * The marks are consulted per chunk on the read and ingest paths, so the
 * set is kept in memory: loaded at open, changed by marks and heals of
 * this process (a read-only open keeps the set of its snapshot), sorted
 * for a binary search, behind a read-write lock, with a count read
 * without it for the usual case of no mark at all. It holds at most
 * BV_BAD_MAX fingerprints (1 MiB); past that the set is "overflowed" and
 * a fingerprint not in it is looked up in the index (a RocksDB get per
 * stored chunk met: slower, never wrong).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define BAD_KEY 20 /* "bad/" + fingerprint */

struct bv_badset {
	pthread_rwlock_t lock;
	bv_fp *fps; /* sorted */
	size_t n, cap;
	int overflow;       /* marks exist that FPS does not hold */
	atomic_size_t any;  /* n + overflow: 0 lets lookups skip the lock */
};

static void bad_key(uint8_t key[BAD_KEY], const bv_fp *fp)
{
	memcpy(key, "bad/", 4);
	memcpy(key + 4, fp->b, sizeof fp->b);
}

static int fp_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(bv_fp));
}

/* Where FP is in the sorted set, or would go; *HIT when it is there. */
static size_t set_pos(const struct bv_badset *bs, const bv_fp *fp, int *hit)
{
	size_t lo = 0, hi = bs->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = fp_cmp(&bs->fps[mid], fp);
		if (c == 0) {
			*hit = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*hit = 0;
	return lo;
}

/* Adds FP (write lock held); past BV_BAD_MAX, or without memory, the set
 * overflows instead. */
static void set_add(struct bv_badset *bs, const bv_fp *fp)
{
	int hit;
	size_t at = set_pos(bs, fp, &hit);

	if (hit)
		return;
	if (bs->n == bs->cap) {
		size_t nc = bs->cap ? bs->cap * 2 : 64;
		bv_fp *nf;
		if (nc > BV_BAD_MAX || !(nf = realloc(bs->fps, nc * sizeof *nf))) {
			bs->overflow = 1;
			goto out;
		}
		bs->fps = nf;
		bs->cap = nc;
	}
	memmove(bs->fps + at + 1, bs->fps + at, (bs->n - at) * sizeof *bs->fps);
	bs->fps[at] = *fp;
	bs->n++;
out:
	atomic_store(&bs->any, bs->n + (size_t)bs->overflow);
}

static void set_remove(struct bv_badset *bs, const bv_fp *fp)
{
	int hit;
	size_t at = set_pos(bs, fp, &hit);

	if (!hit)
		return;
	memmove(bs->fps + at, bs->fps + at + 1,
		(bs->n - at - 1) * sizeof *bs->fps);
	bs->n--;
	atomic_store(&bs->any, bs->n + (size_t)bs->overflow);
}

int bv_bad_load(bv_store *s)
{
	struct bv_badset *bs = calloc(1, sizeof *bs);
	struct bv_kv_iter *it = NULL;
	int rc;

	if (!bs)
		return bv_fail(-ENOMEM, "store %s: the set of bad chunks",
			       s->path);
	pthread_rwlock_init(&bs->lock, NULL);
	s->bad = bs;
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "bad/", 4, "bad0", 4,
				 &it)))
		return bv_fail_storage(rc, "bad chunk marks");
	for (bv_kv_iter_seek(it, "bad/", 4); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		bv_fp fp;
		if (kl != BAD_KEY)
			continue; /* not ours to judge here: verify says */
		memcpy(fp.b, k + 4, sizeof fp.b);
		set_add(bs, &fp); /* keys come sorted: appends */
	}
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc ? bv_fail_storage(rc, "bad chunk marks") : 0;
}

void bv_bad_free(bv_store *s)
{
	if (!s->bad)
		return;
	pthread_rwlock_destroy(&s->bad->lock);
	free(s->bad->fps);
	free(s->bad);
	s->bad = NULL;
}

int bv_bad_has(bv_store *s, const bv_fp *fp)
{
	struct bv_badset *bs = s->bad;
	int hit, overflow;
	uint8_t key[BAD_KEY], v[8];
	size_t vl;

	if (!bs || atomic_load(&bs->any) == 0)
		return 0;
	pthread_rwlock_rdlock(&bs->lock);
	(void)set_pos(bs, fp, &hit);
	overflow = bs->overflow;
	pthread_rwlock_unlock(&bs->lock);
	if (hit || !overflow)
		return hit;
	bad_key(key, fp);
	/* ST_EINVAL: a value longer than V, so there is one. An index
	 * error counts as "not marked": the read's own checks still stand. */
	int rc = bv_kv_get(s->kv, BV_CF_META, key, sizeof key, v, sizeof v, &vl);
	return rc == 0 || rc == ST_EINVAL;
}

int bv_bad_get(bv_store *s, const bv_fp *fp, bv_bad_info *out)
{
	uint8_t key[BAD_KEY], v[BV_BAD_REC_MAX];
	size_t vl;
	int rc;

	memset(out, 0, sizeof *out);
	out->fp = *fp;
	bad_key(key, fp);
	if ((rc = bv_kv_get(s->kv, BV_CF_META, key, sizeof key, v, sizeof v,
			    &vl)))
		return rc == ST_EINVAL ? BV_ECORRUPT : rc;
	return bv_bad_decode(v, vl, out);
}

int bv_bad_decode(const uint8_t *v, size_t vl, bv_bad_info *out)
{
	if (vl < BV_BAD_REC_FIXED || v[0] != 1 ||
	    vl != BV_BAD_REC_FIXED + (size_t)v[BV_BAD_REC_FIXED - 1])
		return BV_ECORRUPT;
	out->time = (int64_t)bv_get_le64(v + 1);
	out->container = bv_get_le32(v + 9);
	out->offset = bv_get_le64(v + 13);
	out->error = (int32_t)bv_get_le32(v + 21);
	size_t n = v[BV_BAD_REC_FIXED - 1];
	memcpy(out->reason, v + BV_BAD_REC_FIXED, n);
	out->reason[n] = '\0';
	return 0;
}

/* The record of mark M found at time NOW into V; its length. */
static size_t bad_encode(const bv_bad_info *m, int64_t now, uint8_t *v)
{
	size_t n = strnlen(m->reason, sizeof m->reason - 1);

	v[0] = 1;
	bv_le64(v + 1, (uint64_t)now);
	bv_le32(v + 9, m->container);
	bv_le64(v + 13, m->offset);
	bv_le32(v + 21, (uint32_t)m->error);
	v[BV_BAD_REC_FIXED - 1] = (uint8_t)n;
	memcpy(v + BV_BAD_REC_FIXED, m->reason, n);
	return BV_BAD_REC_FIXED + n;
}

/* 1 when the chunk index entry of M's chunk still names what verify
 * read: the same record (or, for M->container 0, an entry that does not
 * decode). A heal that repointed the chunk since must not be undone. */
static int still_there(bv_store *s, const bv_bad_info *m)
{
	uint8_t v[64];
	size_t vl;
	struct bv_chunk_loc loc;

	if (bv_kv_get(s->kv, BV_CF_CHUNKS, m->fp.b, sizeof m->fp.b, v,
		      sizeof v, &vl))
		return 0;
	if (bv_chunk_loc_decode(v, vl, &loc))
		return m->container == 0;
	return loc.container == m->container && loc.offset == m->offset;
}

int bv_bad_mark(bv_store *s, const bv_bad_info *marks, size_t n,
		size_t *marked)
{
	struct bv_kv_batch *b = NULL;
	uint8_t key[BAD_KEY], v[BV_BAD_REC_MAX];
	int64_t now = (int64_t)time(NULL);
	size_t put = 0;
	int rc;

	*marked = 0;
	if ((rc = bv_store_writable(s)))
		return rc;
	if (n == 0)
		return 0;
	if ((rc = bv_kv_batch_new(&b)))
		return bv_fail(rc, "store %s: marking bad chunks: %s", s->path,
			       bv_strerror(rc));
	/* Under the index lock, which ingest's index batches hold: a heal
	 * either ran before (the entry moved: no mark) or runs after (and
	 * removes the mark). */
	pthread_mutex_lock(&s->index_lock);
	for (size_t i = 0; i < n; i++) {
		if (bv_bad_has(s, &marks[i].fp) || !still_there(s, &marks[i]))
			continue;
		bad_key(key, &marks[i].fp);
		bv_kv_batch_put(b, BV_CF_META, key, sizeof key, v,
				bad_encode(&marks[i], now, v));
		put++;
	}
	if (put && (rc = bv_kv_write(s->kv, b, 1))) {
		rc = bv_fail(rc, "store %s: marking %zu bad chunks: %s",
			     s->path, put, bv_kv_error());
	} else if (put) {
		pthread_rwlock_wrlock(&s->bad->lock);
		for (size_t i = 0; i < n; i++)
			if (still_there(s, &marks[i]))
				set_add(s->bad, &marks[i].fp);
		pthread_rwlock_unlock(&s->bad->lock);
		*marked = put;
	}
	pthread_mutex_unlock(&s->index_lock);
	bv_kv_batch_free(b);
	return rc;
}

void bv_bad_unmark(struct bv_kv_batch *b, const bv_fp *fp)
{
	uint8_t key[BAD_KEY];

	bad_key(key, fp);
	bv_kv_batch_delete(b, BV_CF_META, key, sizeof key);
}

void bv_bad_forget(bv_store *s, const bv_fp *fp)
{
	pthread_rwlock_wrlock(&s->bad->lock);
	set_remove(s->bad, fp);
	pthread_rwlock_unlock(&s->bad->lock);
}

int bv_bad_count(bv_store *s, uint64_t *n)
{
	struct bv_kv_iter *it = NULL;
	int rc;

	*n = 0;
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "bad/", 4, "bad0", 4,
				 &it)))
		return rc;
	for (bv_kv_iter_seek(it, "bad/", 4); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it))
		(*n)++;
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc;
}

char *bv_fp_hex(const bv_fp *fp, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", fp->b[i]);
	return out;
}
