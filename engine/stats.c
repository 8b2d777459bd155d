/*
 * stats.c: the figures of bv_stats_get() that only a walk of the index
 * can give honestly (bv_stats_counters() gives the rest, from counters):
 *
 *  - protected bytes: the non-zero chunk bytes of every RP of every
 *    replica. A map entry of version v is read by the versions from v up
 *    to (not including) the version of the next newer entry of its chunk,
 *    and a replica's RPs are in version order, so the RPs that read an
 *    entry are one run of them, found by two binary searches: the walk
 *    costs O(map entries x log RPs), whatever the number of RPs.
 *  - live and unreferenced chunks: a chunk is live when an entry of a
 *    committed version (at or below its replica's head) names it. The
 *    walk marks those fingerprints in a Bloom filter, then sweeps the
 *    chunk index: a chunk the filter does not hold is unreferenced for
 *    certain (an aborted or crashed session's, which no later session
 *    deduplicated against); a false positive counts an unreferenced chunk
 *    as live, never the other way round. The filter takes BLOOM_BITS bits
 *    per chunk (false positives about 1 in 10^5), and at most BLOOM_MAX
 *    bytes: memory stays bounded whatever the store holds, and past
 *    BLOOM_MAX / 3 chunks the unreferenced figure becomes a lower bound.
 *    Fingerprints are keyed XXH3-128, uniform already: the filter's hash
 *    functions are the two 64-bit halves, combined (double hashing).
 * The walk sees the index as it is while it runs: beside an ingest in
 * this process, the figures are of some moment during the walk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BLOOM_BITS 24u
#define BLOOM_K 16u
#define BLOOM_MAX ((size_t)768 << 20)

struct bloom {
	uint64_t *w;
	uint64_t nbits;
};

static int bloom_new(struct bloom *b, uint64_t keys)
{
	uint64_t bits = keys * BLOOM_BITS;

	if (bits < 4096)
		bits = 4096;
	if (bits / 8 > BLOOM_MAX)
		bits = (uint64_t)BLOOM_MAX * 8;
	b->nbits = bits;
	b->w = calloc((size_t)((bits + 63) / 64), sizeof *b->w);
	return b->w ? 0 : -ENOMEM;
}

static void bloom_hashes(const uint8_t *fp, uint64_t *h1, uint64_t *h2)
{
	memcpy(h1, fp, 8);
	memcpy(h2, fp + 8, 8);
	*h2 |= 1; /* odd: the probes cover the whole table */
}

static void bloom_add(struct bloom *b, const uint8_t *fp)
{
	uint64_t h1, h2;

	bloom_hashes(fp, &h1, &h2);
	for (unsigned i = 0; i < BLOOM_K; i++) {
		uint64_t bit = (h1 + i * h2) % b->nbits;
		b->w[bit / 64] |= (uint64_t)1 << (bit % 64);
	}
}

static int bloom_has(const struct bloom *b, const uint8_t *fp)
{
	uint64_t h1, h2;

	bloom_hashes(fp, &h1, &h2);
	for (unsigned i = 0; i < BLOOM_K; i++) {
		uint64_t bit = (h1 + i * h2) % b->nbits;
		if (!(b->w[bit / 64] & ((uint64_t)1 << (bit % 64))))
			return 0;
	}
	return 1;
}

/* The first RP of H whose version is at least V. */
static size_t first_at(const struct bv_history *h, uint64_t v)
{
	size_t lo = 0, hi = h->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (h->rps[mid].version < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bv_stats_get(bv_store *s, bv_stats *out)
{
	struct bv_history h = { 0 };
	struct bv_map_pos pos = { 0 };
	struct bloom bl = { 0 };
	struct bv_kv_iter *it = NULL;
	int rc;

	if ((rc = bv_stats_counters(s, out)))
		return rc;
	if ((rc = bloom_new(&bl, out->chunks))) {
		rc = bv_fail(rc, "store %s: stats: no memory for the mark of "
			     "%llu chunks", s->path,
			     (unsigned long long)out->chunks);
		goto out;
	}
	if ((rc = bv_map_iter(s, 0, &it))) {
		rc = bv_fail_storage(rc, s->path);
		goto out;
	}
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);

		if (bv_map_pos_next(&pos, k, kl))
			continue;
		if (pos.rid != h.rid && (rc = bv_history_load(s, pos.rid, &h))) {
			rc = bv_fail(rc, "store %s: stats: replica id %llu: %s",
				     s->path, (unsigned long long)pos.rid,
				     bv_strerror(rc));
			goto out;
		}
		if (!h.known || pos.ver > h.head || vl < 16)
			continue; /* not committed, or zero */
		bloom_add(&bl, v);
		size_t lo = first_at(&h, pos.ver), hi = first_at(&h, pos.newer);
		for (size_t i = lo; i < hi; i++) {
			/* Whole chunks, the last one clipped at the RP's size. */
			uint64_t from = pos.chunk * h.chunk_size;
			uint64_t size = h.rps[i].size;
			if (from >= size)
				continue;
			out->protected_bytes += size - from < h.chunk_size ?
						size - from : h.chunk_size;
		}
	}
	if ((rc = bv_kv_iter_status(it))) {
		rc = bv_fail_storage(rc, s->path);
		goto out;
	}
	bv_kv_iter_free(it);
	it = NULL;

	/* The sweep: each chunk the index holds, live or not. */
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_CHUNKS, "", 0, NULL, 0, &it))) {
		rc = bv_fail_storage(rc, s->path);
		goto out;
	}
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const void *v = bv_kv_iter_value(it, &vl);
		struct bv_chunk_loc loc;

		if (kl != 16 || bv_chunk_loc_decode(v, vl, &loc))
			continue;
		uint64_t rec = bv_rec_size(loc.stored_len);
		if (bloom_has(&bl, k)) {
			out->live_chunks++;
			out->live_raw_bytes += loc.raw_len;
			out->live_bytes += rec;
		} else {
			out->unreferenced_chunks++;
			out->unreferenced_bytes += rec;
		}
	}
	if ((rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, s->path);
	out->scanned = rc == 0;
out:
	bv_kv_iter_free(it);
	free(bl.w);
	bv_history_free(&h);
	return rc;
}
