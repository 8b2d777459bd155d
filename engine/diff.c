/*
 * diff.c: the change stream between two RPs of a replica. It walks the
 * replica's map once (O(map entries), never the whole disk): for each
 * chunk with entries, the newest entry at or below each version says what
 * the chunk was; a chunk is sent only when the two differ. The stream's
 * header carries the size at RP2, so a receiver resizes first.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DIFF_BATCH 64

struct entry {
	int kind; /* -1 none (zeros), 0 zero, 1 data */
	bv_fp fp;
};

static int same(const struct entry *a, const struct entry *b)
{
	int ka = a->kind == 1, kb = b->kind == 1;
	if (ka != kb)
		return 0;
	return !ka || bv_fp_equal(&a->fp, &b->fp);
}

struct diff_out {
	bv_store *s;
	const bv_diff_sink *sink;
	struct bv_ring *ring;
	const char *name;
	uint32_t cs;
	uint64_t size;
	size_t n;
	uint64_t chunks[DIFF_BATCH];
	bv_fp fps[DIFF_BATCH];
	void *outs[DIFF_BATCH];
	struct bv_chunk_read reads[DIFF_BATCH];
	uint8_t *data, *scratch;
	uint64_t zero_off, zero_len;
};

/* bv_diff's sink: a stream writer on FD. Its failures leave their
 * message (the diff's own code passes a sink's return on as is). */
struct stream_sink {
	int fd;
	const char *name;
	bv_stream_writer *w;
};

static int ws_fail(struct stream_sink *ws, int rc)
{
	return bv_fail(rc, "diff of replica %s: %s", ws->name,
		       bv_stream_writer_error(ws->w));
}

static int ws_begin(void *ud, const bv_stream_header *h)
{
	struct stream_sink *ws = ud;
	int rc = bv_stream_writer_open(ws->fd, h, &ws->w);
	if (rc)
		rc = bv_fail(rc, "diff of replica %s: %s", ws->name,
			     ws->w ? bv_stream_writer_error(ws->w) :
				     bv_strerror(rc));
	return rc;
}

static int ws_data(void *ud, uint64_t off, const void *buf, size_t len)
{
	struct stream_sink *ws = ud;
	int rc = bv_stream_write_data(ws->w, off, buf, len);
	return rc ? ws_fail(ws, rc) : 0;
}

static int ws_zero(void *ud, uint64_t off, uint64_t len)
{
	struct stream_sink *ws = ud;
	int rc = bv_stream_write_zero(ws->w, off, len);
	return rc ? ws_fail(ws, rc) : 0;
}

static int flush_zero(struct diff_out *d)
{
	int rc = 0;
	if (d->zero_len)
		rc = d->sink->zero(d->sink->ud, d->zero_off, d->zero_len);
	d->zero_len = 0;
	return rc;
}

static int flush_data(struct diff_out *d)
{
	int rc;
	if (d->n == 0)
		return 0;
	if ((rc = bv_chunks_read(d->s, d->ring, d->fps, d->outs, d->n, d->cs,
				 d->scratch, d->reads, d->name)))
		return rc;
	for (size_t i = 0; i < d->n; i++) {
		uint64_t off = d->chunks[i] * d->cs;
		uint64_t len = d->size - off < d->cs ? d->size - off : d->cs;
		if ((rc = d->sink->data(d->sink->ud, off, d->outs[i], len)))
			return rc;
	}
	d->n = 0;
	return 0;
}

static int emit(struct diff_out *d, uint64_t c, const struct entry *e)
{
	uint64_t off = c * d->cs;
	uint64_t len = d->size - off < d->cs ? d->size - off : d->cs;
	int rc;
	if (e->kind != 1) {
		if ((rc = flush_data(d)))
			return rc;
		if (d->zero_len && d->zero_off + d->zero_len == off) {
			d->zero_len += len;
			return 0;
		}
		if ((rc = flush_zero(d)))
			return rc;
		d->zero_off = off;
		d->zero_len = len;
		return 0;
	}
	if ((rc = flush_zero(d)))
		return rc;
	d->chunks[d->n] = c;
	d->fps[d->n] = e->fp;
	d->n++;
	if (d->n == DIFF_BATCH)
		return flush_data(d);
	return 0;
}

/* The diff of REPLICA from RP1 to RP2 into SINK (bv_diff, bv_diff_sink_run). */
static int diff_run(bv_store *s, const char *replica, uint64_t rp1,
		    uint64_t rp2, uint64_t base_override,
		    const bv_diff_sink *sink, bv_progress_fn progress, void *ud)
{
	static _Thread_local struct bv_rprec p;
	struct diff_out d = { 0 };
	struct bv_kv_iter *it = NULL;
	struct bv_rrec rr;
	char gname[BV_NAME_MAX + 1];
	struct bv_grec g;
	uint64_t v1 = 0, v2, size1 = 0, rp_real1 = 0, rp_real2;
	int rc;

	bv_fail(0, "%s", "");
	if (rp2 == 0)
		return bv_fail(BV_EINVAL, "diff of replica %s: the second RP "
			       "must be a recovery point, not 0", replica);
	if (rp1 && (rc = bv_replica_at(s, replica, rp1, &rr, &v1, &size1,
				       &rp_real1)))
		return rc;
	if ((rc = bv_replica_at(s, replica, rp2, &rr, &v2, &d.size,
				&rp_real2)))
		return rc;
	(void)size1;
	/* Identities: the base is RP1's version whatever number the header
	 * claims; a diff backwards names no result (bvault.h bv_diff). */
	uint8_t base_id[BV_ID_SIZE], result_id[BV_ID_SIZE];
	if ((rc = bv_ident_get(s, rr.rid, v1, base_id)) ||
	    (rc = bv_ident_get(s, rr.rid, v2, result_id)))
		return bv_fail(rc, "replica %s: version identity: %s", replica,
			       bv_strerror(rc));
	if (v2 < v1)
		memset(result_id, 0, sizeof result_id);
	if ((rc = bv_resolve_group(s, replica, gname, &g)) ||
	    (rc = bv_rprec_get(s, g.gid, rp_real2, &p)))
		return rc < -1000 && rc != ST_ENOTFOUND ? rc :
		       bv_fail(BV_ECORRUPT, "replica %s: RP %llu record "
			       "unreadable", replica,
			       (unsigned long long)rp_real2);
	d.s = s;
	d.name = replica;
	d.cs = rr.chunk_size;
	bv_stream_header h = {
		.replica = replica,
		.disk_size = d.size,
		.base_rp = base_override != BV_RP_LATEST ? base_override :
							   rp_real1,
		.consistency = p.consistency,
		.time = p.time,
	};
	memcpy(h.base_id, base_id, BV_ID_SIZE);
	memcpy(h.result_id, result_id, BV_ID_SIZE);
	rc = -ENOMEM;
	if (posix_memalign((void **)&d.data, 4096, (size_t)DIFF_BATCH * d.cs) ||
	    posix_memalign((void **)&d.scratch, 4096,
			   DIFF_BATCH * bv_rec_size(d.cs)))
		goto out;
	for (size_t i = 0; i < DIFF_BATCH; i++)
		d.outs[i] = d.data + i * (size_t)d.cs;
	if ((rc = bv_ring_new(DIFF_BATCH, &d.ring))) {
		rc = bv_fail(rc, "diff: io_uring: %s", strerror(-rc));
		goto out;
	}
	d.sink = sink;
	if (sink->begin && (rc = sink->begin(sink->ud, &h)))
		goto out;
	if ((rc = bv_map_iter(s, rr.rid, &it))) {
		rc = bv_fail_storage(rc, replica);
		goto out;
	}
	uint64_t nchunks = (d.size + d.cs - 1) / d.cs, last = 0;
	uint64_t c = UINT64_MAX;
	struct entry e1 = { -1 }, e2 = { -1 };
	bv_kv_iter_seek(it, "", 0);
	for (;; bv_kv_iter_next(it)) {
		int valid = bv_kv_iter_valid(it);
		size_t kl = 0, vl = 0;
		const uint8_t *k = valid ? bv_kv_iter_key(it, &kl) : NULL;
		uint64_t kc = valid && kl == BV_MAP_KEY ? bv_get_be64(k + 8) :
							  UINT64_MAX;
		if (valid && kl != BV_MAP_KEY)
			continue;
		if (kc != c || !valid) {
			/* chunk C is complete */
			if (c != UINT64_MAX && c < nchunks && !same(&e1, &e2) &&
			    (rc = emit(&d, c, &e2)))
				goto out;
			if (!valid || kc >= nchunks)
				break;
			c = kc;
			e1.kind = e2.kind = -1;
			if (progress && c - last >= 4096) {
				progress(ud, c * d.cs, d.size);
				last = c;
			}
		}
		uint64_t ver = ~bv_get_be64(k + 16);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		struct entry e = { vl ? 1 : 0 };
		if (vl && vl != sizeof e.fp.b && vl != sizeof e.fp.b + 16) {
			rc = bv_fail(BV_ECORRUPT, "replica %s: map entry of "
				     "chunk %llu is damaged", replica,
				     (unsigned long long)c);
			goto out;
		}
		if (vl)
			memcpy(e.fp.b, v, sizeof e.fp.b);
		/* Keys run from the newest version down: the first at or
		 * below a version is what the chunk was there. */
		if (e2.kind == -1 && ver <= v2)
			e2 = e;
		if (e1.kind == -1 && rp1 && ver <= v1)
			e1 = e;
	}
	if ((rc = bv_kv_iter_status(it))) {
		rc = bv_fail_storage(rc, replica);
		goto out;
	}
	if ((rc = flush_data(&d)) || (rc = flush_zero(&d)))
		goto out;
	if (progress)
		progress(ud, d.size, d.size);
out:
	bv_kv_iter_free(it);
	bv_ring_free(d.ring);
	free(d.data);
	free(d.scratch);
	return rc;
}

int bv_diff(bv_store *s, const char *replica, uint64_t rp1, uint64_t rp2,
	    uint64_t base_override, int fd, bv_progress_fn progress, void *ud)
{
	struct stream_sink ws = { fd, replica, NULL };
	bv_diff_sink sink = { &ws, ws_begin, ws_data, ws_zero };
	int rc = diff_run(s, replica, rp1, rp2, base_override, &sink, progress,
			  ud);
	if (rc == 0 && ws.w) {
		rc = bv_stream_writer_finish(ws.w);
		ws.w = NULL;
		if (rc)
			rc = bv_fail(rc, "diff of replica %s: finishing the "
				     "stream: %s", replica, bv_strerror(rc));
	}
	bv_stream_writer_abort(ws.w);
	return rc;
}

/* ---- push: the diff into a caller's sink (bvault push) ---- */
int bv_diff_sink_run(bv_store *s, const char *replica, uint64_t rp1,
		     uint64_t rp2, const bv_diff_sink *sink,
		     bv_progress_fn progress, void *ud)
{
	bv_fail(0, "%s", "");
	if (!sink || !sink->data || !sink->zero)
		return bv_fail(BV_EINVAL, "diff of replica %s: no sink",
			       replica ? replica : "?");
	return diff_run(s, replica, rp1, rp2, BV_RP_LATEST, sink, progress,
			ud);
}
/* ---- end of push ---- */
