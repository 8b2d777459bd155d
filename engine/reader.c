/*
 * reader.c: reading a replica at a version. Chunk i of replica R at
 * version V is the first maps key at or after (R, i, ~V): one seek. A key
 * of another chunk, or none, means the chunk was never written (zeros);
 * an empty value means a zero chunk. Data chunks are fetched in batches:
 * one multi-get in the chunk index, then every record read through
 * io_uring at once, each checked (invariant 4).
 *
 * A reader sees its version only (invariant 3): later versions write
 * keys with other versions, which its seeks skip.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "internal.h"

#define READ_BATCH_BYTES (8u << 20)
#define LOOKUP_MAX 64

struct bv_reader {
	bv_store *s;
	char name[BV_NAME_MAX + 1];
	uint64_t rid, version, size;
	uint64_t rp;         /* 0: the head */
	uint32_t cs;
	struct bv_kv_iter *it;
	struct bv_ring *ring;
	size_t nbatch;
	uint8_t *chunkbuf;   /* nbatch chunks, for partly read chunks */
	uint8_t *scratch;    /* nbatch records */
	size_t chunkbuf_len, scratch_len; /* mapped (bv_map_buf) */
	bv_fp *fps;
	void **outs;
	struct bv_chunk_read *reads;
	/* for each batched chunk: where its bytes go in the caller's
	 * buffer, when they went through chunkbuf */
	uint8_t **copy_to;
	uint32_t *copy_off, *copy_len;
	uint64_t *chunkno;   /* for each batched chunk: its number */
};

int bv_map_iter(bv_store *s, uint64_t rid, struct bv_kv_iter **out)
{
	uint8_t lo[8], hi[8];
	if (rid == 0)
		return bv_kv_iter_new(s->kv, BV_CF_MAPS, "", 0, NULL, 0, out);
	bv_be64(lo, rid);
	bv_be64(hi, rid + 1);
	return bv_kv_iter_new(s->kv, BV_CF_MAPS, lo, 8, hi, 8, out);
}

int bv_map_pos_next(struct bv_map_pos *p, const uint8_t *k, size_t kl)
{
	uint64_t rid, chunk;

	if (kl != BV_MAP_KEY)
		return ST_ECORRUPT;
	rid = bv_get_be64(k);
	chunk = bv_get_be64(k + 8);
	p->newer = rid == p->rid && chunk == p->chunk ? p->ver : UINT64_MAX;
	p->rid = rid;
	p->chunk = chunk;
	p->ver = ~bv_get_be64(k + 16);
	return 0;
}

/* Moves IT, when it stands below KEY, forward by at most MAP_STEPS
 * steps to the first key at or above KEY: the same place a seek finds.
 * 1 when it got there, 0 when a seek is needed. */
#define MAP_STEPS 4

static int step_to(struct bv_kv_iter *it, const uint8_t *key)
{
	const uint8_t *k;
	size_t kl;

	if (!bv_kv_iter_valid(it))
		return 0;
	k = bv_kv_iter_key(it, &kl);
	if (kl != BV_MAP_KEY || memcmp(k, key, BV_MAP_KEY) >= 0)
		return 0;
	for (int i = 0; i < MAP_STEPS; i++) {
		bv_kv_iter_next(it);
		if (!bv_kv_iter_valid(it))
			return 0;
		k = bv_kv_iter_key(it, &kl);
		if (kl != BV_MAP_KEY)
			return 0; /* not a map key: the seek says what it is */
		if (memcmp(k, key, BV_MAP_KEY) >= 0)
			return 1;
	}
	return 0;
}

int bv_map_lookup(struct bv_kv_iter *it, uint64_t rid, uint64_t chunk,
		  uint64_t version, bv_fp *fp, uint8_t *digest)
{
	uint8_t key[BV_MAP_KEY];
	size_t kl, vl;
	const uint8_t *k, *v;

	bv_key_map(key, rid, chunk, version);
	/* Lookups in chunk order (exports, digests) find the next key a few
	 * steps on from the last: a step costs a fraction of a seek. */
	if (!step_to(it, key))
		bv_kv_iter_seek(it, key, sizeof key);
	if (!bv_kv_iter_valid(it))
		return bv_kv_iter_status(it);
	k = bv_kv_iter_key(it, &kl);
	if (kl != BV_MAP_KEY || memcmp(k, key, 16))
		return 0;
	v = bv_kv_iter_value(it, &vl);
	if (vl == 0)
		return 0;
	if (vl != sizeof fp->b && vl != sizeof fp->b + 16)
		return BV_ECORRUPT;
	memcpy(fp->b, v, sizeof fp->b);
	if (vl == sizeof fp->b)
		return 1;
	if (digest)
		memcpy(digest, v + sizeof fp->b, 16);
	return 2;
}

/* The message for chunk R, marked bad (invariant 13). */
static int bad_fail(bv_store *s, const struct bv_chunk_read *r,
		    const char *replica)
{
	char where[4096], hex[33], when[64] = "?";
	bv_bad_info b;
	struct tm tm;

	if (s->cs->ops->where(s->cs, r->loc.container, where, sizeof where))
		snprintf(where, sizeof where, "container %u", r->loc.container);
	if (bv_bad_get(s, &r->fp, &b) == 0) {
		time_t t = (time_t)b.time;
		if (gmtime_r(&t, &tm))
			strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	} else {
		snprintf(b.reason, sizeof b.reason, "its mark is unreadable");
	}
	return bv_fail(BV_ECORRUPT, "replica %s: chunk %s (%s, offset %llu) "
		       "is marked bad (bvault verify, %s: %s); it is not "
		       "served until a host sends its bytes again",
		       replica, bv_fp_hex(&r->fp, hex), where,
		       (unsigned long long)r->loc.offset, when, b.reason);
}

/* Fills READS[0..N) from the chunk index: where FPS[i] is, into OUTS[i],
 * through SCRATCH (records of RAW_LEN bytes each, when not NULL). */
static int chunks_locate(bv_store *s, const bv_fp *fps, void *const *outs,
			 size_t n, uint32_t raw_len, uint8_t *scratch,
			 struct bv_chunk_read *reads, const char *replica)
{
	const char *keys[LOOKUP_MAX];
	size_t klens[LOOKUP_MAX], vlens[LOOKUP_MAX];
	uint8_t vals[LOOKUP_MAX * 64], found[LOOKUP_MAX];
	uint64_t rec = bv_rec_size(raw_len);
	int rc;

	/* A failure below sets its read's res: callers find which chunk
	 * failed (bv_chunks_failed) to name the range that needs it. */
	for (size_t i = 0; i < n; i++)
		reads[i].res = 0;
	for (size_t done = 0; done < n;) {
		size_t m = n - done < LOOKUP_MAX ? n - done : LOOKUP_MAX;
		for (size_t i = 0; i < m; i++) {
			keys[i] = (const char *)fps[done + i].b;
			klens[i] = sizeof fps[done + i].b;
		}
		rc = bv_kv_multi_get(s->kv, BV_CF_CHUNKS, m, keys, klens, vals,
				     64, vlens, found);
		if (rc)
			return bv_fail_storage(rc, replica);
		for (size_t i = 0; i < m; i++) {
			struct bv_chunk_read *r = &reads[done + i];
			char hex[33];
			bv_fp_hex(&fps[done + i], hex);
			r->fp = fps[done + i];
			if (!found[i])
				return r->res = bv_fail(BV_ECORRUPT, "replica "
					       "%s: chunk %s, which its map "
					       "names, is missing from the "
					       "chunk index", replica, hex);
			rc = bv_chunk_loc_decode(vals + 64 * i, vlens[i],
						 &r->loc);
			if (rc || r->loc.raw_len != raw_len)
				return r->res = bv_fail(BV_ECORRUPT, "replica "
					       "%s: the chunk index entry of "
					       "chunk %s is damaged", replica,
					       hex);
			/* Invariant 13: a chunk marked bad is not served,
			 * whatever its record would read now. */
			if (bv_bad_has(s, &r->fp))
				return r->res = bad_fail(s, r, replica);
			r->out = outs[done + i];
			r->scratch = scratch ? scratch + rec * (done + i) : NULL;
			r->res = 0;
		}
		done += m;
	}
	return 0;
}

size_t bv_chunks_failed(const struct bv_chunk_read *reads, size_t n)
{
	size_t i = 0;

	while (i < n && reads[i].res == 0)
		i++;
	return i;
}

int bv_fail_needs(int rc, const char *replica, uint64_t rp, uint64_t from,
		  uint64_t to)
{
	char msg[1024], at[32] = " (its head)";

	snprintf(msg, sizeof msg, "%s", bv_last_error());
	if (rp)
		snprintf(at, sizeof at, "@%llu", (unsigned long long)rp);
	return bv_fail(rc, "%s; %s%s needs it for bytes %llu to %llu", msg,
		       replica, at, (unsigned long long)from,
		       (unsigned long long)to);
}

/* The message for the first failed read of READS (RC: the read's
 * result). */
static int chunks_fail(bv_store *s, const struct bv_chunk_read *reads,
		       size_t n, int rc, const char *replica)
{
	for (size_t i = 0; i < n; i++) {
		char where[4096];
		if (!reads[i].res)
			continue;
		if (s->cs->ops->where(s->cs, reads[i].loc.container, where,
				      sizeof where))
			snprintf(where, sizeof where, "container %u",
				 reads[i].loc.container);
		char hex[33];
		return bv_fail(reads[i].res, "replica %s: chunk %s at offset "
			       "%llu of %s: %s%s", replica,
			       bv_fp_hex(&reads[i].fp, hex),
			       (unsigned long long)reads[i].loc.offset, where,
			       bv_strerror(reads[i].res),
			       reads[i].res == -EIO || reads[i].res == -ENOENT ?
			       " (the container is shorter or missing: bvault "
			       "verify lists what this affects)" : "");
	}
	return bv_fail(rc, "replica %s: reading chunks: %s", replica,
		       bv_strerror(rc));
}

int bv_chunks_read(bv_store *s, struct bv_ring *ring, const bv_fp *fps,
		   void *const *outs, size_t n, uint32_t raw_len,
		   uint8_t *scratch, struct bv_chunk_read *reads,
		   const char *replica)
{
	/* GC removes no container between the lookup and the read
	 * (INVARIANTS.md 12). */
	bv_gc_read_begin(s);
	int rc = chunks_locate(s, fps, outs, n, raw_len, scratch, reads,
			       replica);

	if (!rc && (rc = s->cs->ops->read(s->cs, ring, reads, n)))
		rc = chunks_fail(s, reads, n, rc, replica);
	bv_gc_read_end(s);
	return rc;
}

int bv_chunks_read_runs(bv_store *s, struct bv_ring *ring, const bv_fp *fps,
			void *const *outs, size_t n, uint32_t raw_len,
			uint8_t *buf, size_t len, struct bv_chunk_read *reads,
			const char *replica)
{
	int runs = s->cs->ops->read_runs != NULL;
	bv_gc_read_begin(s);
	int rc = chunks_locate(s, fps, outs, n, raw_len, runs ? NULL : buf,
			       reads, replica);

	if (!rc && (rc = runs ? s->cs->ops->read_runs(s->cs, ring, reads, n,
						      buf, len) :
				s->cs->ops->read(s->cs, ring, reads, n)))
		rc = chunks_fail(s, reads, n, rc, replica);
	bv_gc_read_end(s);
	return rc;
}

void bv_reader_close(bv_reader *r)
{
	if (!r)
		return;
	bv_kv_iter_free(r->it);
	bv_ring_free(r->ring);
	if (r->chunkbuf)
		munmap(r->chunkbuf, r->chunkbuf_len);
	if (r->scratch)
		munmap(r->scratch, r->scratch_len);
	free(r->fps);
	free(r->outs);
	free(r->reads);
	free(r->copy_to);
	free(r->copy_off);
	free(r->copy_len);
	free(r->chunkno);
	free(r);
}

int bv_reader_open(bv_store *s, const char *replica, uint64_t rp,
		   bv_reader **out)
{
	bv_reader *r = calloc(1, sizeof *r);
	struct bv_rrec rr;
	uint64_t rp_out;
	int rc;

	bv_fail(0, "%s", "");
	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->s = s;
	if ((rc = bv_replica_at(s, replica, rp, &rr, &r->version, &r->size,
				&rp_out)))
		goto fail;
	snprintf(r->name, sizeof r->name, "%s", replica);
	r->rp = rp_out;
	r->rid = rr.rid;
	r->cs = rr.chunk_size;
	r->nbatch = READ_BATCH_BYTES / r->cs;
	if (r->nbatch < 2)
		r->nbatch = 2;
	if ((rc = bv_map_iter(s, r->rid, &r->it))) {
		rc = bv_fail_storage(rc, replica);
		goto fail;
	}
	/* The iterator is a snapshot: the reader reads the RP as it is now
	 * for as long as it stays open, even if the RP is removed meanwhile,
	 * until GC deletes the chunks only it read (then BV_ENOTFOUND, which
	 * says so). A removal syncs its intent with
	 * the RP record's removal before it deletes an entry, so an RP still
	 * there after the snapshot was taken has all its entries in it. */
	{
		uint64_t ver2, size2;
		if ((rc = bv_replica_at(s, replica, rp, &rr, &ver2, &size2,
					&rp_out)))
			goto fail;
		if (ver2 != r->version || rr.rid != r->rid) {
			rc = bv_fail(BV_EBUSY, "replica %s: recovery point "
				     "changed while it was opened; open it "
				     "again", replica);
			goto fail;
		}
	}
	if ((rc = bv_ring_new(128, &r->ring))) {
		rc = bv_fail(rc, "replica %s: io_uring: %s", replica,
			     strerror(-rc));
		goto fail;
	}
	rc = -ENOMEM;
	r->chunkbuf_len = r->nbatch * r->cs;
	r->scratch_len = r->nbatch * bv_rec_size(r->cs);
	if (!(r->chunkbuf = bv_map_buf(r->chunkbuf_len)) ||
	    !(r->scratch = bv_map_buf(r->scratch_len)))
		goto fail;
	r->fps = calloc(r->nbatch, sizeof *r->fps);
	r->outs = calloc(r->nbatch, sizeof *r->outs);
	r->reads = calloc(r->nbatch, sizeof *r->reads);
	r->copy_to = calloc(r->nbatch, sizeof *r->copy_to);
	r->copy_off = calloc(r->nbatch, sizeof *r->copy_off);
	r->copy_len = calloc(r->nbatch, sizeof *r->copy_len);
	r->chunkno = calloc(r->nbatch, sizeof *r->chunkno);
	if (!r->fps || !r->outs || !r->reads || !r->copy_to || !r->copy_off ||
	    !r->copy_len || !r->chunkno)
		goto fail;
	*out = r;
	return 0;
fail:
	bv_reader_close(r);
	return rc;
}

uint64_t bv_reader_size(const bv_reader *r)
{
	return r->size;
}

uint32_t bv_reader_chunk_size(const bv_reader *r)
{
	return r->cs;
}

/* Whether R's RP is gone from the store since R opened it. */
static int removed_since(bv_reader *r)
{
	struct bv_rrec rr;
	uint64_t v, size, rp;

	return r->rp && bv_replica_at(r->s, r->name, r->rp, &rr, &v, &size,
				      &rp) == BV_ENOTFOUND;
}

int bv_reader_fill(bv_reader *r, void *buf, size_t len, uint64_t off,
		   uint8_t *zmask)
{
	uint8_t *dst = buf;
	uint64_t first = off / r->cs;
	int rc;

	if (off > r->size || len > r->size - off)
		return bv_fail(BV_ERANGE, "replica %s: read %llu+%zu ends past "
			       "the disk size %llu", r->name,
			       (unsigned long long)off, len,
			       (unsigned long long)r->size);
	while (len) {
		size_t nb = 0;
		while (len && nb < r->nbatch) {
			uint64_t c = off / r->cs;
			uint32_t o = (uint32_t)(off % r->cs);
			size_t n = r->cs - o < len ? r->cs - o : len;
			bv_fp fp;
			rc = bv_map_lookup(r->it, r->rid, c, r->version, &fp,
					   NULL);
			if (rc < 0)
				return rc == BV_ECORRUPT ?
				       bv_fail(rc, "replica %s: map entry of "
					       "chunk %llu is damaged", r->name,
					       (unsigned long long)c) :
				       bv_fail_storage(rc, r->name);
			if (zmask)
				zmask[c - first] = rc == 0;
			if (rc == 0) {
				memset(dst, 0, n);
			} else {
				r->fps[nb] = fp;
				r->chunkno[nb] = c;
				if (o == 0 && n == r->cs) {
					r->outs[nb] = dst;
					r->copy_to[nb] = NULL;
				} else {
					r->outs[nb] = r->chunkbuf +
						      nb * (size_t)r->cs;
					r->copy_to[nb] = dst;
					r->copy_off[nb] = o;
					r->copy_len[nb] = (uint32_t)n;
				}
				nb++;
			}
			dst += n;
			off += n;
			len -= n;
		}
		if (nb == 0)
			continue;
		if ((rc = bv_chunks_read(r->s, r->ring, r->fps, r->outs, nb,
					 r->cs, r->scratch, r->reads,
					 r->name))) {
			size_t i = bv_chunks_failed(r->reads, nb);
			if (rc == BV_ECORRUPT && removed_since(r))
				return bv_fail(BV_ENOTFOUND, "replica %s: "
					       "recovery point %llu was "
					       "removed while this reader had "
					       "it open, and garbage "
					       "collection has since deleted "
					       "chunks it reads", r->name,
					       (unsigned long long)r->rp);
			uint64_t from = i < nb ? r->chunkno[i] * r->cs : 0;
			uint64_t to = from + r->cs < r->size ? from + r->cs :
				      r->size;
			return i < nb ? bv_fail_needs(rc, r->name, r->rp, from,
						      to) : rc;
		}
		for (size_t i = 0; i < nb; i++)
			if (r->copy_to[i])
				memcpy(r->copy_to[i],
				       (uint8_t *)r->outs[i] + r->copy_off[i],
				       r->copy_len[i]);
	}
	return 0;
}

int bv_reader_pread(bv_reader *r, void *buf, size_t len, uint64_t off)
{
	bv_fail(0, "%s", "");
	return bv_reader_fill(r, buf, len, off, NULL);
}

int bv_reader_extent(bv_reader *r, uint64_t off, uint64_t *len)
{
	uint64_t want = *len, run = 0;
	int kind = -1, rc;

	bv_fail(0, "%s", "");
	if (off > r->size || want > r->size - off)
		return bv_fail(BV_ERANGE, "replica %s: extent query %llu+%llu "
			       "ends past the disk size %llu", r->name,
			       (unsigned long long)off,
			       (unsigned long long)want,
			       (unsigned long long)r->size);
	while (run < want) {
		uint64_t pos = off + run;
		uint64_t c = pos / r->cs;
		uint64_t n = r->cs - pos % r->cs;
		bv_fp fp;
		if (n > want - run)
			n = want - run;
		rc = bv_map_lookup(r->it, r->rid, c, r->version, &fp, NULL);
		if (rc < 0)
			return bv_fail_storage(rc, r->name);
		rc = rc > 0; /* data, with or without its digest */
		if (kind == -1)
			kind = rc;
		else if (kind != rc)
			break;
		run += n;
	}
	*len = run;
	return kind < 0 ? 0 : kind;
}

/* Up to LOOKUP_MAX chunks whose map entries do not hold their digests:
 * the digests from the chunk index. */
static int digest_batch(bv_reader *r, const bv_fp *fps, const size_t *at,
			size_t m, uint8_t *kinds, uint8_t (*digests)[16])
{
	const char *keys[LOOKUP_MAX] = { 0 };
	size_t klens[LOOKUP_MAX] = { 0 }, vlens[LOOKUP_MAX];
	uint8_t vals[LOOKUP_MAX * 64], found[LOOKUP_MAX];
	int rc;

	for (size_t i = 0; i < m; i++) {
		keys[i] = (const char *)fps[i].b;
		klens[i] = sizeof fps[i].b;
	}
	if ((rc = bv_kv_multi_get(r->s->kv, BV_CF_CHUNKS, m, keys, klens,
				  vals, 64, vlens, found)))
		return bv_fail_storage(rc, r->name);
	for (size_t i = 0; i < m; i++) {
		struct bv_chunk_loc loc;
		if (!found[i])
			return bv_fail(BV_ECORRUPT, "replica %s: a chunk its "
				       "map names is missing from the chunk "
				       "index", r->name);
		if (bv_chunk_loc_decode(vals + 64 * i, vlens[i], &loc))
			return bv_fail(BV_ECORRUPT, "replica %s: chunk index "
				       "entry is damaged", r->name);
		kinds[at[i]] = bv_chunk_entry_digest(vals + 64 * i, vlens[i],
						     digests[at[i]]) ?
				       BV_DIGEST_KNOWN : BV_DIGEST_UNKNOWN;
	}
	return 0;
}

int bv_reader_digests(bv_reader *r, uint64_t first, size_t n,
		      uint8_t *kinds, uint8_t (*digests)[16])
{
	uint64_t nchunks = (r->size + r->cs - 1) / r->cs;
	bv_fp fps[LOOKUP_MAX];
	size_t at[LOOKUP_MAX], m = 0;
	int rc;

	bv_fail(0, "%s", "");
	if (first > nchunks || n > nchunks - first)
		return bv_fail(BV_ERANGE, "replica %s: digests of chunks "
			       "%llu+%zu: the disk has %llu chunks", r->name,
			       (unsigned long long)first, n,
			       (unsigned long long)nchunks);
	for (size_t i = 0; i < n; i++) {
		rc = bv_map_lookup(r->it, r->rid, first + i, r->version,
				   &fps[m], digests[i]);
		if (rc < 0)
			return rc == BV_ECORRUPT ?
			       bv_fail(rc, "replica %s: map entry of chunk "
				       "%llu is damaged", r->name,
				       (unsigned long long)(first + i)) :
			       bv_fail_storage(rc, r->name);
		if (rc == 0) {
			kinds[i] = BV_DIGEST_ZERO;
			continue;
		}
		/* Invariant 13: a chunk marked bad has no digest to
		 * compare with, so that the agent sends its bytes. */
		if (bv_bad_has(r->s, &fps[m])) {
			kinds[i] = BV_DIGEST_UNKNOWN;
			continue;
		}
		if (rc == 2) { /* the map entry holds it: no index lookup */
			kinds[i] = BV_DIGEST_KNOWN;
			continue;
		}
		at[m++] = i;
		if (m == LOOKUP_MAX) {
			if ((rc = digest_batch(r, fps, at, m, kinds, digests)))
				return rc;
			m = 0;
		}
	}
	return m ? digest_batch(r, fps, at, m, kinds, digests) : 0;
}

