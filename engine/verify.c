/*
 * verify.c: bv_store_verify(), a full read of what a store keeps:
 *  1. every container file, record by record (bv_cset_scan): record
 *     headers and their checksums, padding that must be zero, records
 *     that run past the end; a damaged container is named with the
 *     offset of the damage;
 *  2. every chunk index entry: its record is read, its payload checksum
 *     checked, the payload decoded and the fingerprint of the decoded
 *     bytes compared with the entry's key (bv_cset_read, invariant 4),
 *     with a batch of reads in flight at a time; the plain digest the
 *     entry keeps is compared with the decoded bytes' too;
 *  3. every map entry (every version of every replica) names either zero
 *     or a chunk the index holds, and a digest it keeps is the index's.
 * It only reads, and it goes on past a problem: problems are counted, and
 * the first one is the store's error message. Memory is bounded by the
 * batch buffers (VERIFY_BYTES each), whatever the store holds.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define VERIFY_BYTES (16u << 20) /* raw bytes read per batch */
#define VERIFY_MAX 256u          /* reads per batch */

struct vstate {
	bv_store *s;
	bv_verify_result *res;
	char first[512];
};

static void problem(struct vstate *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct vstate *v, const char *fmt, ...)
{
	va_list ap;

	if (v->res->problems++ == 0) {
		va_start(ap, fmt);
		vsnprintf(v->first, sizeof v->first, fmt, ap);
		va_end(ap);
	}
}

static void fp_hex(const bv_fp *fp, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", fp->b[i]);
}

static int count_record(void *ud, const struct bv_chunk_loc *loc,
			const bv_fp *fp)
{
	(void)loc;
	(void)fp;
	((struct vstate *)ud)->res->records++;
	return 0;
}

/* 1: every container up to the durable tail. The write lock keeps
 * appends out while the last one is read. */
static int scan_containers(struct vstate *v, uint32_t tail_id)
{
	bv_store *s = v->s;

	pthread_mutex_lock(&s->write_lock);
	for (uint32_t id = 1; id <= tail_id; id++) {
		uint64_t bad = 0;
		int rc = bv_cset_scan(s->cset, id, count_record, v, &bad);
		v->res->containers++;
		if (rc == ST_ECORRUPT)
			problem(v, "container %u is damaged at offset %" PRIu64,
				id, bad);
		else if (rc)
			problem(v, "container %u cannot be read: %s", id,
				bv_strerror(rc));
	}
	pthread_mutex_unlock(&s->write_lock);
	return 0;
}

/* Reads and checks the N records listed in READS; DIG[i]: 1 and the
 * plain digest the index keeps for chunk i, or 0. */
static void check_batch(struct vstate *v, struct bv_ring *ring,
			struct bv_chunk_read *reads, const uint8_t (*dig)[17],
			size_t n)
{
	char hex[33];

	if (n == 0)
		return;
	(void)bv_cset_read(v->s->cset, ring, reads, n);
	for (size_t i = 0; i < n; i++) {
		struct bv_chunk_read *r = &reads[i];
		uint8_t d[16];
		v->res->chunks++;
		if (r->res) {
			fp_hex(&r->fp, hex);
			problem(v, "chunk %s (container %u, offset %" PRIu64
				"): %s", hex, r->loc.container, r->loc.offset,
				bv_strerror(r->res));
			continue;
		}
		if (!dig[i][0])
			continue;
		bv_digest_compute(r->out, r->loc.raw_len, d);
		if (memcmp(d, dig[i] + 1, 16)) {
			fp_hex(&r->fp, hex);
			problem(v, "chunk %s: the plain digest its index entry "
				"keeps is not its bytes'", hex);
		}
	}
}

/* 2: every chunk index entry, read back in batches. */
static int check_chunks(struct vstate *v, struct bv_ring *ring)
{
	struct bv_chunk_read *reads = calloc(VERIFY_MAX, sizeof *reads);
	uint8_t (*dig)[17] = calloc(VERIFY_MAX, sizeof *dig);
	uint8_t *out = malloc(VERIFY_BYTES);
	uint8_t *scratch = malloc(VERIFY_BYTES + 4096);
	struct bv_kv_iter *it = NULL;
	size_t n = 0, out_used = 0, scr_used = 0;
	char hex[33];
	int rc;

	if (!reads || !dig || !out || !scratch) {
		rc = bv_fail(-ENOMEM, "verify: cannot allocate read buffers");
		goto done;
	}
	if ((rc = bv_kv_iter_new(v->s->kv, BV_CF_CHUNKS, "", 0, NULL, 0,
				 &it))) {
		rc = bv_fail_storage(rc, "verify: chunk index");
		goto done;
	}
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const void *k = bv_kv_iter_key(it, &kl);
		const void *val = bv_kv_iter_value(it, &vl);
		struct bv_chunk_loc loc;
		bv_fp fp;

		if (kl != sizeof fp.b) {
			problem(v, "chunk index: a key of %zu bytes (not a "
				"fingerprint)", kl);
			continue;
		}
		memcpy(fp.b, k, sizeof fp.b);
		if (bv_chunk_loc_decode(val, vl, &loc)) {
			fp_hex(&fp, hex);
			v->res->chunks++;
			problem(v, "chunk %s: its index entry is damaged", hex);
			continue;
		}
		uint64_t rec = bv_rec_size(loc.stored_len);
		if (n == VERIFY_MAX || out_used + loc.raw_len > VERIFY_BYTES ||
		    scr_used + rec > VERIFY_BYTES + 4096) {
			check_batch(v, ring, reads, dig, n);
			n = out_used = scr_used = 0;
		}
		dig[n][0] = (uint8_t)bv_chunk_entry_digest(val, vl, dig[n] + 1);
		/* A chunk is at most BV_CHUNK_MAX: always fits a batch. */
		reads[n] = (struct bv_chunk_read){
			.loc = loc, .fp = fp, .out = out + out_used,
			.scratch = scratch + scr_used,
		};
		out_used += loc.raw_len;
		scr_used += rec;
		n++;
	}
	check_batch(v, ring, reads, dig, n);
	if ((rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, "verify: chunk index");
done:
	bv_kv_iter_free(it);
	free(reads);
	free(dig);
	free(out);
	free(scratch);
	return rc;
}

/* 3: every map entry names zero or an indexed chunk, and the digest it
 * keeps (format 2) is the one the index keeps. */
static int check_maps(struct vstate *v)
{
	struct bv_kv_iter *it = NULL;
	uint8_t val[64];
	char hex[33];
	int rc;

	if ((rc = bv_map_iter(v->s, 0, &it)))
		return bv_fail_storage(rc, "verify: maps");
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl, got;
		(void)bv_kv_iter_key(it, &kl);
		const uint8_t *fp = bv_kv_iter_value(it, &vl);
		uint8_t d[16];
		bv_fp f;

		v->res->map_entries++;
		if (vl == 0)
			continue;
		if (vl != sizeof f.b && vl != sizeof f.b + 16) {
			problem(v, "a map entry of %zu bytes (not a "
				"fingerprint, with or without a digest)", vl);
			continue;
		}
		memcpy(f.b, fp, sizeof f.b);
		rc = bv_kv_get(v->s->kv, BV_CF_CHUNKS, fp, sizeof f.b, val,
			       sizeof val, &got);
		if (rc == ST_ENOTFOUND) {
			fp_hex(&f, hex);
			problem(v, "a map entry names chunk %s, which the "
				"chunk index does not hold", hex);
		} else if (rc == 0 && vl > sizeof f.b &&
			   (!bv_chunk_entry_digest(val, got, d) ||
			    memcmp(d, fp + sizeof f.b, 16))) {
			fp_hex(&f, hex);
			problem(v, "a map entry of chunk %s keeps a digest "
				"that is not the chunk's", hex);
		} else if (rc) {
			bv_kv_iter_free(it);
			return bv_fail_storage(rc, "verify: chunk index");
		}
	}
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc ? bv_fail_storage(rc, "verify: maps") : 0;
}

int bv_store_verify(bv_store *s, bv_verify_result *out)
{
	struct vstate v = { .s = s, .res = out };
	struct bv_ring *ring = NULL;
	uint32_t tail_id;
	int rc;

	if (!s || !out)
		return bv_fail(BV_EINVAL, "verify: no store or no result");
	memset(out, 0, sizeof *out);
	bv_fail(0, "%s", "");
	pthread_mutex_lock(&s->index_lock);
	tail_id = s->tail_id;
	pthread_mutex_unlock(&s->index_lock);
	if ((rc = bv_ring_new(64, &ring)))
		return bv_fail(rc, "verify: io_uring: %s", strerror(-rc));
	rc = scan_containers(&v, tail_id);
	if (!rc)
		rc = check_chunks(&v, ring);
	if (!rc)
		rc = check_maps(&v);
	bv_ring_free(ring);
	if (rc)
		return rc;
	if (out->problems)
		return bv_fail(BV_ECORRUPT, "store %s: %" PRIu64 " problem%s "
			       "found; the first: %s", s->path, out->problems,
			       out->problems == 1 ? "" : "s", v.first);
	return 0;
}
