/*
 * check.c: bv_store_check_report(), the index held against the
 * containers without reading a chunk's payload (bvault check):
 *  1. every chunk index entry decodes, its container exists, and the
 *     record header at its offset checks and repeats the fingerprint,
 *     codec and lengths (the backend's read_headers: 48 bytes a chunk,
 *     a batch in flight at a time);
 *  2. every map entry has the right shape, names a chunk the index holds
 *     (or zero), and is of a version at or below its replica's committed
 *     head, but for the version an "inflight/" marker says a session is
 *     writing (invariant 2: anything else above a head is left by a
 *     session that neither committed nor was cleaned up);
 *  3. every container file is accounted for: at or below the durable
 *     tail the index names, or kept and recorded ("u/"); files past the
 *     tail that no record names are reported (a writer appending now,
 *     or bytes the next writable open records).
 * It only reads, goes on past every finding, and holds memory bounded by
 * one batch. It takes the index as it is while it runs: beside a writer
 * in this process, entries it meets may be newer than the heads it read.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CHECK_MAX 256u /* headers per batch */

struct cstate {
	bv_store *s;
	bv_check_result *res;
	bv_verify_fn fn;
	void *ud;
	char first[1024];
	struct bv_chunk_read *reads;
	uint8_t *hdrs;
	size_t n;
	/* The replica of the map walk: its record and inflight version. */
	struct bv_history h;
	uint64_t inflight; /* 0: none */
};

static void finding(struct cstate *c, int kind, uint32_t container,
		    uint64_t off, uint64_t len, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void finding(struct cstate *c, int kind, uint32_t container,
		    uint64_t off, uint64_t len, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* Bytes past the tail are accounted for by being reported. */
	if (kind != BV_VERIFY_UNKNOWN && c->res->problems++ == 0)
		snprintf(c->first, sizeof c->first, "%s", msg);
	bv_verify_report r = { .kind = kind, .message = msg,
			       .container = container, .offset = off,
			       .length = len };
	if (c->fn)
		c->fn(c->ud, &r);
}

static void check_headers(struct cstate *c, struct bv_ring *ring)
{
	bv_store *s = c->s;
	char hex[33], path[4096];

	if (c->n == 0)
		return;
	(void)s->cs->ops->read_headers(s->cs, ring, c->reads, c->n);
	for (size_t i = 0; i < c->n; i++) {
		const struct bv_chunk_read *r = &c->reads[i];
		int e = r->res;
		if (e == 0)
			continue;
		bv_fp_hex(&r->fp, hex);
		if (s->cs->ops->where(s->cs, r->loc.container, path, sizeof path))
			snprintf(path, sizeof path, "container %u",
				 r->loc.container);
		if (e == -ENOENT)
			finding(c, BV_VERIFY_INDEX, r->loc.container,
				r->loc.offset, 0, "chunk %s: its index entry "
				"names container %s, which does not exist",
				hex, path);
		else if (e == -EIO)
			finding(c, BV_VERIFY_INDEX, r->loc.container,
				r->loc.offset, BV_REC_HDR, "chunk %s: its index "
				"entry names offset %" PRIu64 " of %s, past the "
				"end of the file", hex, r->loc.offset, path);
		else
			finding(c, BV_VERIFY_INDEX, r->loc.container,
				r->loc.offset, BV_REC_HDR, "chunk %s: the record "
				"header at offset %" PRIu64 " of %s is not the "
				"one its index entry names: %s", hex,
				r->loc.offset, path, bv_strerror(e));
	}
	c->n = 0;
}

/* 1: every chunk index entry against its record header. */
static int check_chunks(struct cstate *c)
{
	struct bv_kv_iter *it = NULL;
	struct bv_ring *ring = NULL;
	char hex[33];
	int rc;

	if (!c->s->cs->ops->read_headers)
		return bv_fail(BV_EINVAL, "check: the %s container backend "
			       "cannot read record headers alone",
			       c->s->cs->ops->name);
	if ((rc = bv_ring_new(CHECK_MAX, &ring)))
		return bv_fail(rc, "check: io_uring: %s", strerror(-rc));
	if ((rc = bv_kv_iter_new(c->s->kv, BV_CF_CHUNKS, "", 0, NULL, 0,
				 &it))) {
		bv_ring_free(ring);
		return bv_fail_storage(rc, "check: chunk index");
	}
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const void *k = bv_kv_iter_key(it, &kl);
		const void *val = bv_kv_iter_value(it, &vl);
		struct bv_chunk_read *r = &c->reads[c->n];

		c->res->chunks++;
		if (kl != sizeof r->fp.b) {
			finding(c, BV_VERIFY_INDEX, 0, 0, 0, "chunk index: a "
				"key of %zu bytes (not a fingerprint)", kl);
			continue;
		}
		memcpy(r->fp.b, k, sizeof r->fp.b);
		if (bv_chunk_loc_decode(val, vl, &r->loc)) {
			finding(c, BV_VERIFY_INDEX, 0, 0, 0, "chunk %s: its "
				"index entry is damaged",
				bv_fp_hex(&r->fp, hex));
			continue;
		}
		r->scratch = c->hdrs + c->n * BV_REC_HDR;
		if (++c->n == CHECK_MAX)
			check_headers(c, ring);
	}
	check_headers(c, ring);
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	bv_ring_free(ring);
	return rc ? bv_fail_storage(rc, "check: chunk index") : 0;
}

/* The walk of the map meets replica RID: its head and inflight version. */
static int load_replica(struct cstate *c, uint64_t rid)
{
	uint8_t key[32], v[8];
	size_t kl = bv_key_id(key, "inflight/", rid), vl;
	int rc;

	if ((rc = bv_history_load(c->s, rid, &c->h)))
		return bv_fail(rc, "check: replica id %" PRIu64 ": %s", rid,
			       bv_strerror(rc));
	c->inflight = 0;
	rc = bv_kv_get(c->s->kv, BV_CF_META, key, kl, v, sizeof v, &vl);
	if (rc == 0 && vl == 8)
		c->inflight = bv_get_le64(v);
	else if (rc != 0 && rc != ST_ENOTFOUND)
		return bv_fail_storage(rc, "check: meta");
	return 0;
}

/* 2: every map entry. */
static int check_maps(struct cstate *c)
{
	struct bv_kv_iter *it = NULL;
	struct bv_map_pos pos = { 0 };
	uint8_t val[64];
	char hex[33];
	int rc;

	if ((rc = bv_map_iter(c->s, 0, &it)))
		return bv_fail_storage(rc, "check: maps");
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl, got;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *fp = bv_kv_iter_value(it, &vl);
		uint64_t rid = pos.rid;
		bv_fp f;

		c->res->map_entries++;
		if (bv_map_pos_next(&pos, k, kl)) {
			finding(c, BV_VERIFY_INDEX, 0, 0, 0, "a map key of %zu "
				"bytes", kl);
			continue;
		}
		if ((pos.rid != rid || c->h.rid != pos.rid) &&
		    (rc = load_replica(c, pos.rid)))
			break;
		if (!c->h.known && pos.ver == c->inflight)
			; /* a session making the replica, at its commit */
		else if (!c->h.known)
			finding(c, BV_VERIFY_INDEX, 0, 0, 0, "a map entry of "
				"replica id %" PRIu64 ", which no replica record "
				"names (chunk %" PRIu64 ", version %" PRIu64 ")",
				pos.rid, pos.chunk, pos.ver);
		else if (pos.ver > c->h.head && pos.ver != c->inflight)
			finding(c, BV_VERIFY_INDEX, 0, 0, 0, "replica %s: a map "
				"entry of version %" PRIu64 " (chunk %" PRIu64
				") above its committed head %" PRIu64 ", and no "
				"session is writing that version", c->h.name,
				pos.ver, pos.chunk, c->h.head);
		if (vl == 0)
			continue;
		if (vl != sizeof f.b && vl != sizeof f.b + 16) {
			finding(c, BV_VERIFY_INDEX, 0, 0, 0, "a map entry of "
				"%zu bytes (not a fingerprint, with or without "
				"a digest)", vl);
			continue;
		}
		memcpy(f.b, fp, sizeof f.b);
		rc = bv_kv_get(c->s->kv, BV_CF_CHUNKS, fp, sizeof f.b, val,
			       sizeof val, &got);
		if (rc == ST_ENOTFOUND)
			finding(c, BV_VERIFY_INDEX, 0, 0, 0, "replica %s: the "
				"map entry of chunk %" PRIu64 " at version %"
				PRIu64 " names chunk %s, which the chunk index "
				"does not hold", c->h.name, pos.chunk, pos.ver,
				bv_fp_hex(&f, hex));
		else if (rc && rc != ST_EINVAL) {
			rc = bv_fail_storage(rc, "check: chunk index");
			break;
		}
		rc = 0;
	}
	if (!rc && (rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, "check: maps");
	bv_kv_iter_free(it);
	return rc;
}

/* 1 when a "u/" record of container ID exists. */
static int recorded(bv_store *s, uint32_t id)
{
	uint8_t lo[6], hi[6];
	struct bv_kv_iter *it = NULL;
	int hit;

	memcpy(lo, "u/", 2);
	bv_be32(lo + 2, id);
	memcpy(hi, "u/", 2);
	bv_be32(hi + 2, id + 1);
	if (bv_kv_iter_new(s->kv, BV_CF_META, lo, sizeof lo, hi, sizeof hi,
			   &it))
		return 0;
	bv_kv_iter_seek(it, lo, sizeof lo);
	hit = bv_kv_iter_valid(it);
	bv_kv_iter_free(it);
	return hit;
}

/* 3: the container files against the tail and the "u/" records. A
 * read-only open lists the files up to its tail; those past it are
 * counted through usage and named by the records that keep them. */
static int check_files(struct cstate *c)
{
	bv_store *s = c->s;
	uint32_t *ids = NULL, tail_id = 0;
	uint64_t tail_end = 0, files = 0, bytes = 0;
	size_t n = 0;
	char path[4096];
	int rc;

	(void)bv_ctail_file_parse(&s->tail, &tail_id, &tail_end);
	if ((rc = s->cs->ops->list(s->cs, &ids, &n)))
		return bv_fail(rc, "check: listing the containers of %s: %s",
			       s->path, bv_strerror(rc));
	c->res->containers = n;
	for (size_t i = 0; i < n; i++) {
		if (ids[i] <= tail_id || recorded(s, ids[i]))
			continue;
		(void)s->cs->ops->where(s->cs, ids[i], path, sizeof path);
		finding(c, BV_VERIFY_UNKNOWN, ids[i], 0, 0, "container %s is "
			"past the durable tail (container %u) and no record "
			"keeps it: a writer appending now, or bytes the next "
			"writable open records", path, tail_id);
	}
	free(ids);
	if ((rc = s->cs->ops->usage(s->cs, &files, &bytes)))
		return bv_fail(rc, "check: containers of %s: %s", s->path,
			       bv_strerror(rc));
	if (files > n) {
		c->res->containers = files;
		finding(c, BV_VERIFY_UNKNOWN, 0, 0, 0, "%" PRIu64 " container "
			"file%s past the durable tail (container %u) that "
			"this read-only open does not read: a writer "
			"appending now, or bytes the next writable open "
			"records", files - n, files - n == 1 ? "" : "s",
			tail_id);
	}
	return 0;
}

int bv_store_check_report(bv_store *s, bv_verify_fn fn, void *ud,
			  bv_check_result *out)
{
	struct cstate c = { .s = s, .res = out, .fn = fn, .ud = ud };
	int rc;

	if (!s || !out)
		return bv_fail(BV_EINVAL, "check: no store or no result");
	memset(out, 0, sizeof *out);
	bv_fail(0, "%s", "");
	c.reads = calloc(CHECK_MAX, sizeof *c.reads);
	c.hdrs = malloc((size_t)CHECK_MAX * BV_REC_HDR);
	if (!c.reads || !c.hdrs) {
		rc = bv_fail(-ENOMEM, "check: cannot allocate its buffers");
		goto out;
	}
	if (s->index_lost)
		finding(&c, BV_VERIFY_INDEX, 0, 0, 0, "index %s/index: it lost "
			"commits that %s/index.seal records", s->path, s->path);
	rc = check_chunks(&c);
	if (!rc)
		rc = check_maps(&c);
	if (!rc)
		rc = check_files(&c);
out:
	free(c.reads);
	free(c.hdrs);
	bv_history_free(&c.h);
	if (rc)
		return rc;
	if (out->problems)
		return bv_fail(BV_ECORRUPT, "store %s: %" PRIu64 " finding%s; "
			       "the first: %s", s->path, out->problems,
			       out->problems == 1 ? "" : "s", c.first);
	return 0;
}
