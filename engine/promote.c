/*
 * promote.c: a view's content (as last flushed) becomes a version of a
 * replica, through one ingest session, so that it is as atomic as any
 * ingest (INVARIANTS.md 2): a failure or a crash leaves the store as it
 * was, but for the RP of the old head that --into makes first (a
 * commit of its own, and an RP of what was already there).
 *
 * Per chunk of the view, in disk order, with the view's lock held so that
 * nobody writes it meanwhile:
 *   - a chunk none of whose blocks is in the overlay, and which lies
 *     wholly below the smallest size the view has had (or is the RP's own
 *     last chunk), reads as the RP's chunk: its map entry is copied into
 *     the session (bv_ingest_ref), without reading or hashing it; for
 *     --into, not even that when the head's entry names the same chunk;
 *   - a chunk wholly past that size and not written reads zeros: nothing
 *     for a new replica, a zero extent where the head has data;
 *   - any other chunk is read through the view and written (the session
 *     dedups it); for --into, not when its plain digest is the head's.
 * Memory: one chunk buffer; time: O(chunks) map look-ups plus the
 * chunks the view wrote.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "view.h"

struct promote {
	bv_store *s;
	bv_view *v;
	const struct bv_view_conf *c;
	const char *name;
	uint64_t rid;           /* of the view's replica */
	uint64_t size, lim;     /* the view's size; min(size, min size) */
	uint32_t cs;
	struct bv_kv_iter *it;
	uint8_t *buf;           /* one chunk */
};

/* Map entry of chunk C of the view's replica at VERSION: 0 zero, 1 or 2
 * data (2: DIGEST filled). */
static int entry(struct promote *p, uint64_t c, uint64_t version, bv_fp *fp,
		 uint8_t *digest)
{
	int rc = bv_map_lookup(p->it, p->rid, c, version, fp, digest);
	if (rc < 0)
		return rc == BV_ECORRUPT ?
		       bv_fail(rc, "replica %s: map entry of chunk %llu is "
			       "damaged", p->c->replica,
			       (unsigned long long)c) :
		       bv_fail_storage(rc, p->c->replica);
	return rc;
}

/* What chunk C of the view is: 0 the RP's chunk (its map entry says),
 * 1 zeros, 2 to be read through the view. [*C0, *C1): its bytes inside
 * the size. */
static int chunk_kind(struct promote *p, uint64_t c, uint64_t *c0,
		      uint64_t *c1)
{
	*c0 = c * p->cs;
	*c1 = *c0 + p->cs < p->size ? *c0 + p->cs : p->size;
	if (bv_view_block_written(p->v, *c0 / BV_VIEW_BLOCK,
				  (*c1 + BV_VIEW_BLOCK - 1) / BV_VIEW_BLOCK))
		return 2;
	if (*c1 <= p->lim && (*c0 + p->cs <= p->lim ||
			      p->lim == p->c->rp_size))
		return 0;
	if (*c0 >= p->lim)
		return 1;
	return 2;
}

/* Reads chunk [C0, C1) through the view into p->buf, zero-padded to the
 * chunk size. */
static int read_chunk(struct promote *p, uint64_t c0, uint64_t c1)
{
	int rc = bv_view_pread(p->v, p->buf, (size_t)(c1 - c0), c0);
	if (rc)
		return rc;
	memset(p->buf + (c1 - c0), 0, p->cs - (size_t)(c1 - c0));
	return 0;
}

static int promote_as(struct promote *p, const char *as, const char *label,
		      uint64_t *rp_out)
{
	bv_commit_opts co = { .make_rp = 1, .label = label };
	uint64_t nchunks = (p->size + p->cs - 1) / p->cs, c0, c1;
	uint8_t digest[16];
	bv_ingest *in = NULL;
	bv_fp fp;
	int rc, slot;

	if ((rc = bv_replica_name_free(p->s, as)))
		goto out;
	if ((rc = bv_ingest_begin(p->s, &in)) ||
	    (rc = slot = bv_ingest_add_new(in, as, p->size, p->cs)) < 0)
		goto out;
	for (uint64_t c = 0; c < nchunks; c++) {
		int k = chunk_kind(p, c, &c0, &c1);
		if (k == 0) {
			if ((rc = entry(p, c, p->c->version, &fp, digest)) < 0)
				goto out;
			if (rc && (rc = bv_ingest_ref(in, slot, c, &fp,
						      rc == 2 ? digest : NULL)))
				goto out;
		} else if (k == 2) {
			if ((rc = read_chunk(p, c0, c1)) ||
			    (rc = bv_ingest_write(in, slot, c0, p->buf,
						  (size_t)(c1 - c0))))
				goto out;
		}
	}
	rc = bv_ingest_commit(in, &co, rp_out);
	in = NULL;
out:
	bv_ingest_abort(in);
	return rc;
}

/* Whether the head of the view's replica is newer than its latest RP
 * (then an RP of it is made first). */
static int head_unprotected(struct promote *p, int *yes)
{
	bv_replica_info ri;
	struct bv_rrec rr;
	uint64_t ver, size, rp;
	int rc;

	if ((rc = bv_replica_info_get(p->s, p->c->replica, &ri)))
		return rc;
	if (ri.latest_rp == 0) {
		*yes = ri.head > 0;
		return 0;
	}
	if ((rc = bv_replica_at(p->s, p->c->replica, BV_RP_LATEST, &rr, &ver,
				&size, &rp)))
		return rc;
	*yes = ri.head != ver;
	return 0;
}

static int promote_into(struct promote *p, const char *label,
			uint64_t *rp_out)
{
	bv_commit_opts co = { .make_rp = 1, .label = label };
	uint64_t nchunks = (p->size + p->cs - 1) / p->cs, c0, c1, made;
	uint8_t sd[16], hd[16], d[16];
	char before[BV_NAME_MAX + 32];
	bv_replica_info ri;
	bv_ingest *in = NULL;
	bv_fp sfp, hfp;
	int rc, slot, newer;

	/* The head is kept as an RP of its own before it is changed. A
	 * session taken and dropped first: a replica busy in another
	 * session here gets no RP. */
	if ((rc = bv_replica_info_get(p->s, p->c->replica, &ri)) ||
	    (rc = bv_ingest_begin(p->s, &in)) ||
	    (rc = slot = bv_ingest_add(in, p->c->replica, ri.latest_rp, 0)) < 0 ||
	    (rc = head_unprotected(p, &newer)))
		goto out;
	if (newer) {
		bv_ingest_abort(in);
		in = NULL;
		snprintf(before, sizeof before, "before view %s", p->name);
		if ((rc = bv_rp_create(p->s, p->c->replica, before,
				       BV_CRASH_CONSISTENT, &made)) ||
		    (rc = bv_replica_info_get(p->s, p->c->replica, &ri)) ||
		    (rc = bv_ingest_begin(p->s, &in)) ||
		    (rc = slot = bv_ingest_add(in, p->c->replica, ri.latest_rp,
						 0)) < 0)
			goto out;
	}
	if (ri.size != p->size && (rc = bv_ingest_resize(in, slot, p->size)))
		goto out;
	for (uint64_t c = 0; c < nchunks; c++) {
		int k = chunk_kind(p, c, &c0, &c1);
		int hk = entry(p, c, ri.head, &hfp, hd);
		if ((rc = hk) < 0)
			goto out;
		if (k == 0) {
			int sk = entry(p, c, p->c->version, &sfp, sd);
			if ((rc = sk) < 0)
				goto out;
			if ((sk == 0 && hk == 0) ||
			    (sk && hk && bv_fp_equal(&sfp, &hfp)))
				continue; /* the head has it already */
			rc = sk ? bv_ingest_ref(in, slot, c, &sfp,
						sk == 2 ? sd : NULL) :
				  bv_ingest_zero(in, slot, c0, c1 - c0);
		} else if (k == 1) {
			rc = hk ? bv_ingest_zero(in, slot, c0, c1 - c0) : 0;
		} else {
			if ((rc = read_chunk(p, c0, c1)))
				goto out;
			if (hk == 0 && bv_is_zero(p->buf, p->cs))
				continue;
			if (hk == 2) {
				bv_digest_compute(p->buf, p->cs, d);
				if (!memcmp(d, hd, 16))
					continue;
			}
			rc = bv_ingest_write(in, slot, c0, p->buf,
					     (size_t)(c1 - c0));
		}
		if (rc)
			goto out;
	}
	rc = bv_ingest_commit(in, &co, rp_out);
	in = NULL;
out:
	bv_ingest_abort(in);
	return rc;
}

int bv_view_promote(bv_store *s, const char *name, const char *as,
		    const char *label, uint64_t *rp_out)
{
	struct promote p = { .s = s, .name = name };
	struct bv_rrec rr;
	uint64_t rp = 0;
	int rc, lock = -1;

	bv_fail(0, "%s", "");
	if (rp_out)
		*rp_out = 0;
	if ((rc = bv_store_writable(s)))
		return rc;
	if ((as && (rc = bv_name_check("replica", as))) ||
	    (rc = bv_rp_label_check(label)))
		return rc;
	if ((rc = bv_view_lock_name(s, name, &lock)) ||
	    (rc = bv_view_open_locked(s, name, lock, &p.v)))
		goto out;
	p.c = bv_view_conf_of(p.v);
	p.size = bv_view_size(p.v);
	p.lim = bv_view_min_size(p.v) < p.size ? bv_view_min_size(p.v) : p.size;
	p.cs = p.c->chunk_size;
	if (as && p.size == 0) {
		rc = bv_fail(BV_EINVAL, "view %s: size 0: a replica cannot be "
			     "made of it", name);
		goto out;
	}
	if ((rc = bv_rrec_get(s, p.c->replica, &rr))) {
		rc = bv_fail(rc == ST_ENOTFOUND ? BV_ENOTFOUND : rc, "view %s: "
			     "replica %s: %s", name, p.c->replica,
			     bv_strerror(rc));
		goto out;
	}
	p.rid = rr.rid;
	if (posix_memalign((void **)&p.buf, 4096, p.cs)) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = bv_map_iter(s, p.rid, &p.it))) {
		rc = bv_fail_storage(rc, p.c->replica);
		goto out;
	}
	rc = as ? promote_as(&p, as, label, &rp) :
		  promote_into(&p, label, &rp);
	if (!rc && rp_out)
		*rp_out = rp;
out:
	if (rc) {
		/* Closing must not replace the message of the failure. */
		char keep[1024];
		snprintf(keep, sizeof keep, "%s", bv_last_error());
		bv_kv_iter_free(p.it);
		bv_view_close(p.v);
		bv_fail(0, "%s", keep);
	} else {
		bv_kv_iter_free(p.it);
		bv_view_close(p.v);
	}
	free(p.buf);
	if (lock >= 0)
		close(lock);
	return rc;
}
