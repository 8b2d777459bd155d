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
 *  4. for each chunk found damaged or missing in 2 and 3, every
 *     REPLICA@RP byte range that reads it: a map entry of version v is
 *     read by the versions from v up to (not including) the version of
 *     the next newer entry of the same chunk, so the map walk, which
 *     meets a chunk's entries newest first, knows each entry's span.
 * It only reads, and it goes on past a problem (a damaged run of
 * container bytes is skipped to the next intact record): problems are
 * counted and reported one by one (bv_store_verify_report), and the
 * first one is the store's error message. Memory is bounded by the
 * batch buffers (VERIFY_BYTES each) and the damaged set (DAMAGED_MAX
 * fingerprints), whatever the store holds.
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
#define DAMAGED_MAX (1u << 20)   /* damaged chunks traced to their RPs */

/* The range of an RP (or the head) of the replica being walked that
 * reads damage and is not reported yet (merged while chunks are
 * adjacent); to == from: none open. */
struct vrange {
	uint64_t from, to;
	bv_fp first;      /* the chunk of FROM */
	uint64_t nchunks; /* chunks in the range */
};

struct drun {
	uint32_t id;
	uint64_t off, len;
	int named; /* a chunk index entry points into it */
};

#define RUNS_MAX (1u << 16)

struct vstate {
	bv_store *s;
	bv_verify_result *res;
	bv_verify_fn fn;
	void *ud;
	char first[1024];
	bv_fp *damaged;       /* sorted once the chunk pass is done */
	size_t ndamaged, damaged_cap;
	uint64_t untraced;    /* damaged chunks past DAMAGED_MAX */
	/* The replica of the map walk (4): its RPs, and a range for each
	 * of them and, at index h.n, for the head. */
	struct bv_history h;
	struct vrange *open;
	size_t open_cap;
	/* Damaged runs of container bytes (past the file header), held
	 * until the chunk pass says whether an index entry names a record
	 * in them: those that none names are garbage (the old record of a
	 * healed chunk, say), reported but not a problem. Sorted by
	 * (container, offset) as the scan finds them; past RUNS_MAX, runs
	 * are reported as problems at once. */
	struct drun *runs;
	size_t nruns, runs_cap;
	/* Chunks to mark bad (invariant 13) at the end, in one batch. */
	bv_bad_info *marks;
	size_t nmarks, marks_cap;
};

static void report(struct vstate *v, const bv_verify_report *r)
{
	if (v->fn)
		v->fn(v->ud, r);
}

static void problem(struct vstate *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Counts a problem, keeps the first as the message, and reports it as
 * KIND about container bytes [OFF, OFF+LEN) of CONTAINER (0: none). */
static void problem_at(struct vstate *v, int kind, uint32_t container,
		       uint64_t off, uint64_t len, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void problem_at(struct vstate *v, int kind, uint32_t container,
		       uint64_t off, uint64_t len, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (v->res->problems++ == 0)
		snprintf(v->first, sizeof v->first, "%s", msg);
	bv_verify_report r = { .kind = kind, .message = msg,
			       .container = container, .offset = off,
			       .length = len };
	report(v, &r);
}

static void problem(struct vstate *v, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	problem_at(v, BV_VERIFY_INDEX, 0, 0, 0, "%s", msg);
}

/* Remembers FP as damaged or missing, for the trace to RPs (4). */
static void note_damaged(struct vstate *v, const bv_fp *fp)
{
	if (v->ndamaged == v->damaged_cap) {
		size_t nc = v->damaged_cap ? v->damaged_cap * 2 : 256;
		bv_fp *nd;
		if (nc > DAMAGED_MAX ||
		    !(nd = realloc(v->damaged, nc * sizeof *nd))) {
			v->untraced++;
			return;
		}
		v->damaged = nd;
		v->damaged_cap = nc;
	}
	v->damaged[v->ndamaged++] = *fp;
}

/* Remembers a chunk to mark bad: its record at CONTAINER, OFF (0, 0:
 * its index entry does not decode) failed with ERR. Past BV_BAD_MAX
 * marks in one run, the rest are marked by the next verify. */
static void note_mark(struct vstate *v, const bv_fp *fp, uint32_t container,
		      uint64_t off, int err, const char *reason)
{
	if (v->nmarks == v->marks_cap) {
		size_t nc = v->marks_cap ? v->marks_cap * 2 : 64;
		bv_bad_info *nm;
		if (nc > BV_BAD_MAX ||
		    !(nm = realloc(v->marks, nc * sizeof *nm))) {
			v->res->unmarked++;
			return;
		}
		v->marks = nm;
		v->marks_cap = nc;
	}
	bv_bad_info *m = &v->marks[v->nmarks++];
	memset(m, 0, sizeof *m);
	m->fp = *fp;
	m->container = container;
	m->offset = off;
	m->error = err;
	snprintf(m->reason, sizeof m->reason, "%s", reason);
}

static int fp_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(bv_fp));
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

/* Keeps damaged run [OFF, OFF+LEN) of container ID for later; 0 when
 * there is no room (then it is reported at once). */
static int hold_run(struct vstate *v, uint32_t id, uint64_t off,
		    uint64_t len)
{
	if (v->nruns == v->runs_cap) {
		size_t nc = v->runs_cap ? v->runs_cap * 2 : 16;
		struct drun *nr;
		if (nc > RUNS_MAX || !(nr = realloc(v->runs, nc * sizeof *nr)))
			return 0;
		v->runs = nr;
		v->runs_cap = nc;
	}
	v->runs[v->nruns++] = (struct drun){ .id = id, .off = off,
					     .len = len };
	return 1;
}

/* A chunk index entry names the record at OFF of container ID: marks
 * the held run that holds it, if any. */
static void run_named(struct vstate *v, uint32_t id, uint64_t off)
{
	size_t lo = 0, hi = v->nruns;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct drun *r = &v->runs[mid];
		if (r->id < id || (r->id == id && r->off + r->len <= off))
			lo = mid + 1;
		else if (r->id > id || off < r->off)
			hi = mid;
		else {
			v->runs[mid].named = 1;
			return;
		}
	}
}

/* 1 when damaged run R starts with an intact record header whose chunk
 * the index holds elsewhere, or not at all: the run is a record nothing
 * reads any more (a healed chunk's old copy, or never committed), whose
 * payload is damaged. Padding or headers that are damaged are not. */
static int run_is_garbage(struct vstate *v, struct bv_ring *ring,
			  const struct drun *r)
{
	_Alignas(16) uint8_t h[BV_REC_HDR];
	struct bv_chunk_read rd = { .scratch = h };
	struct bv_chunk_loc loc;
	uint8_t val[64];
	size_t vl;
	bv_fp fp;
	int rc;

	if (r->named || !v->s->cs->ops->read_headers)
		return 0;
	/* Any valid location: the header read is compared with it, and
	 * fails that comparison; only its bytes are wanted here. */
	rd.loc = (struct bv_chunk_loc){ .container = r->id, .offset = r->off,
					.codec = BV_CODEC_RAW,
					.stored_len = 4096, .raw_len = 4096 };
	memset(h, 0, sizeof h);
	rc = v->s->cs->ops->read_headers(v->s->cs, ring, &rd, 1);
	if (rc != 0 && rc != ST_ECORRUPT)
		return 0;
	if (bv_rec_hdr_parse(h, r->id, r->off, &loc, &fp) ||
	    bv_rec_size(loc.stored_len) > r->len)
		return 0;
	rc = bv_kv_get(v->s->kv, BV_CF_CHUNKS, fp.b, sizeof fp.b, val,
		       sizeof val, &vl);
	if (rc == ST_ENOTFOUND)
		return 1;
	if (rc || bv_chunk_loc_decode(val, vl, &loc))
		return 0;
	return loc.container != r->id || loc.offset != r->off;
}

/* After the chunk pass: the held runs, as damage or as garbage. */
static void report_runs(struct vstate *v, struct bv_ring *ring)
{
	char path[4096], msg[4608];

	for (size_t i = 0; i < v->nruns; i++) {
		const struct drun *r = &v->runs[i];
		(void)v->s->cs->ops->where(v->s->cs, r->id, path, sizeof path);
		if (!run_is_garbage(v, ring, r)) {
			v->res->damaged_bytes += r->len;
			problem_at(v, BV_VERIFY_DAMAGED, r->id, r->off, r->len,
				   "container %s: %" PRIu64 " damaged bytes at "
				   "offset %" PRIu64 " (up to the next intact "
				   "record)", path, r->len, r->off);
			continue;
		}
		snprintf(msg, sizeof msg, "container %s: %" PRIu64 " damaged "
			 "bytes at offset %" PRIu64 " that no chunk index entry "
			 "names (garbage: a record replaced since, or never "
			 "committed)", path, r->len, r->off);
		v->res->unknown_bytes += r->len;
		bv_verify_report rep = { .kind = BV_VERIFY_UNKNOWN,
					 .message = msg, .container = r->id,
					 .offset = r->off, .length = r->len };
		report(v, &rep);
	}
}

static int count_damage(void *ud, uint32_t id, uint64_t off, uint64_t len)
{
	struct vstate *v = ud;
	char path[4096];

	if (off != 0 && hold_run(v, id, off, len))
		return 0;
	(void)v->s->cs->ops->where(v->s->cs, id, path, sizeof path);
	v->res->damaged_bytes += len;
	if (off == 0)
		problem_at(v, BV_VERIFY_DAMAGED, id, off, len, "container %s: "
			   "its file header (offset 0, %" PRIu64 " bytes) is "
			   "damaged or not this store's", path, len);
	else
		problem_at(v, BV_VERIFY_DAMAGED, id, off, len, "container %s: "
			   "%" PRIu64 " damaged bytes at offset %" PRIu64
			   " (up to the next intact record)", path, len, off);
	return 0;
}

/* 1: every container, each scanned past its damage. A read-only open
 * scans up to the durable tail only (beyond it, a writer may be
 * appending). The write lock keeps appends out while the last one is
 * read. */
static int scan_containers(struct vstate *v)
{
	bv_store *s = v->s;
	uint32_t *ids = NULL;
	size_t n = 0;
	int rc;

	pthread_mutex_lock(&s->write_lock);
	if ((rc = s->cs->ops->list(s->cs, &ids, &n))) {
		pthread_mutex_unlock(&s->write_lock);
		return bv_fail(rc, "verify: listing the containers of %s: %s",
			       s->path, bv_strerror(rc));
	}
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		rc = s->cs->ops->scan(s->cs, ids[i], count_record,
				      count_damage, v);
		v->res->containers++;
		if (rc) {
			(void)s->cs->ops->where(s->cs, ids[i], path, sizeof path);
			problem_at(v, BV_VERIFY_DAMAGED, ids[i], 0, 0,
				   "container %s cannot be read: %s", path,
				   bv_strerror(rc));
		}
	}
	pthread_mutex_unlock(&s->write_lock);
	free(ids);
	return 0;
}

/* The meta "u/" records: container bytes no commit names (store.c). */
static int unknown_ranges(struct vstate *v)
{
	struct bv_kv_iter *it = NULL;
	char path[4096], msg[4608];
	int rc;

	if ((rc = bv_kv_iter_new(v->s->kv, BV_CF_META, "u/", 2, "u0", 2, &it)))
		return bv_fail_storage(rc, "verify: meta");
	for (bv_kv_iter_seek(it, "u/", 2); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *val = bv_kv_iter_value(it, &vl);
		if (kl != 14 || vl != 8)
			continue;
		uint32_t id = bv_get_be32(k + 2);
		uint64_t from = bv_get_be64(k + 6), to = bv_get_le64(val);
		if (to <= from)
			continue;
		(void)v->s->cs->ops->where(v->s->cs, id, path, sizeof path);
		snprintf(msg, sizeof msg, "container %s: %" PRIu64 " bytes at "
			 "offset %" PRIu64 " that no commit names (kept: a "
			 "crash before a commit, or an index older than the "
			 "containers)", path, to - from, from);
		v->res->unknown_bytes += to - from;
		bv_verify_report r = { .kind = BV_VERIFY_UNKNOWN,
				       .message = msg, .container = id,
				       .offset = from, .length = to - from };
		report(v, &r);
	}
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc ? bv_fail_storage(rc, "verify: meta") : 0;
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
	(void)v->s->cs->ops->read(v->s->cs, ring, reads, n);
	for (size_t i = 0; i < n; i++) {
		struct bv_chunk_read *r = &reads[i];
		uint8_t d[16];
		v->res->chunks++;
		if (r->res) {
			char path[4096];
			int marked = bv_bad_has(v->s, &r->fp);
			fp_hex(&r->fp, hex);
			(void)v->s->cs->ops->where(v->s->cs, r->loc.container, path,
					   sizeof path);
			note_damaged(v, &r->fp);
			v->res->bad_chunks++;
			if (!marked)
				note_mark(v, &r->fp, r->loc.container,
					  r->loc.offset, r->res,
					  bv_strerror(r->res));
			problem_at(v, BV_VERIFY_DAMAGED, r->loc.container,
				   r->loc.offset, bv_rec_size(r->loc.stored_len),
				   "chunk %s (container %s, offset %" PRIu64
				   "): %s%s", hex, path, r->loc.offset,
				   bv_strerror(r->res),
				   marked ? " (marked bad already)" : "");
			continue;
		}
		if (bv_bad_has(v->s, &r->fp)) {
			/* Not served whatever it reads now (invariant 13):
			 * what needs it needs a host to send it again. */
			fp_hex(&r->fp, hex);
			note_damaged(v, &r->fp);
			v->res->bad_chunks++;
			problem_at(v, BV_VERIFY_DAMAGED, r->loc.container,
				   r->loc.offset, bv_rec_size(r->loc.stored_len),
				   "chunk %s reads back intact, but is marked "
				   "bad: it is not served until a host sends "
				   "it again", hex);
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
			v->res->bad_chunks++;
			note_damaged(v, &fp);
			if (!bv_bad_has(v->s, &fp))
				note_mark(v, &fp, 0, 0, BV_ECORRUPT,
					  "its chunk index entry is damaged");
			problem(v, "chunk %s: its index entry is damaged", hex);
			continue;
		}
		uint64_t rec = bv_rec_size(loc.stored_len);
		if (v->nruns)
			run_named(v, loc.container, loc.offset);
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

/* ---- 4: which REPLICA@RP ranges read damage ------------------------- */

/* Reports the open range of RP I (the head when I == h.n). */
static void emit_range(struct vstate *v, size_t i)
{
	struct vrange *o = &v->open[i];
	uint64_t number = i < v->h.n ? v->h.rps[i].number : 0;
	char msg[512], hex[33], which[96];

	if (o->to == o->from)
		return;
	fp_hex(&o->first, hex);
	if (o->nchunks == 1)
		snprintf(which, sizeof which, "chunk %s", hex);
	else
		snprintf(which, sizeof which, "%" PRIu64 " chunks, the first "
			 "%s", o->nchunks, hex);
	if (number)
		snprintf(msg, sizeof msg, "%s@%" PRIu64 " needs damaged or "
			 "missing data: bytes %" PRIu64 " to %" PRIu64 " (%s)",
			 v->h.name, number, o->from, o->to, which);
	else
		snprintf(msg, sizeof msg, "%s (its head, newer than every RP) "
			 "needs damaged or missing data: bytes %" PRIu64
			 " to %" PRIu64 " (%s)", v->h.name, o->from, o->to,
			 which);
	v->res->needed_ranges++;
	bv_verify_report r = { .kind = BV_VERIFY_NEEDED, .message = msg,
			       .replica = v->h.name, .rp = number,
			       .off = o->from, .len = o->to - o->from };
	report(v, &r);
	o->from = o->to = 0;
}

static void emit_all(struct vstate *v)
{
	if (v->h.rid == 0 || !v->h.known)
		return;
	for (size_t i = 0; i <= v->h.n; i++)
		emit_range(v, i);
}

/* Loads replica RID and its RPs for the trace. */
static int trace_replica(struct vstate *v, uint64_t rid)
{
	int rc;

	emit_all(v);
	if ((rc = bv_history_load(v->s, rid, &v->h)))
		return rc;
	if (v->h.n + 1 > v->open_cap) {
		size_t nc = v->h.n + 1 > 64 ? v->h.n + 1 : 64;
		struct vrange *n = realloc(v->open, nc * sizeof *n);
		if (!n)
			return -ENOMEM;
		v->open = n;
		v->open_cap = nc;
	}
	memset(v->open, 0, (v->h.n + 1) * sizeof *v->open);
	return 0;
}

/* Chunk CHUNK of the walked replica, in an entry of version VER that
 * versions below NEWER read, is damaged: extend or report the range of
 * every RP (and the head, unless an RP is the head) that reads it. */
static void trace(struct vstate *v, uint64_t chunk, uint64_t ver,
		  uint64_t newer, const uint8_t *fp)
{
	const struct bv_history *h = &v->h;
	int head_is_rp = 0;

	if (!h->known || ver > h->head)
		return; /* not committed: nothing reads it */
	for (size_t i = 0; i <= h->n; i++) {
		uint64_t version = i < h->n ? h->rps[i].version : h->head;
		uint64_t size = i < h->n ? h->rps[i].size : h->head_size;
		struct vrange *o = &v->open[i];
		if (i == h->n && head_is_rp)
			break;
		if (i < h->n && version == h->head)
			head_is_rp = 1;
		if (version < ver || version >= newer)
			continue;
		uint64_t from = chunk * h->chunk_size;
		if (from >= size)
			continue;
		uint64_t to = from + h->chunk_size > size ? size :
			      from + h->chunk_size;
		if (o->to != from || o->to == o->from) {
			emit_range(v, i);
			o->from = from;
			memcpy(o->first.b, fp, sizeof o->first.b);
			o->nchunks = 0;
		}
		o->to = to;
		o->nchunks++;
	}
}

static int is_damaged(const struct vstate *v, const uint8_t *fp)
{
	return v->ndamaged &&
	       bsearch(fp, v->damaged, v->ndamaged, sizeof *v->damaged,
		       fp_cmp) != NULL;
}

/* 3: every map entry names zero or an indexed chunk, and the digest it
 * keeps (format 2) is the one the index keeps; 4 along the way. */
static int check_maps(struct vstate *v)
{
	struct bv_kv_iter *it = NULL;
	struct bv_map_pos pos = { 0 };
	uint8_t val[64];
	char hex[33];
	int rc;

	if (v->ndamaged)
		qsort(v->damaged, v->ndamaged, sizeof *v->damaged, fp_cmp);
	if ((rc = bv_map_iter(v->s, 0, &it)))
		return bv_fail_storage(rc, "verify: maps");
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl, got;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *fp = bv_kv_iter_value(it, &vl);
		int missing = 0;
		uint8_t d[16];
		bv_fp f;

		v->res->map_entries++;
		if (bv_map_pos_next(&pos, k, kl)) {
			problem(v, "a map key of %zu bytes", kl);
			continue;
		}
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
			missing = 1;
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
		if (missing || is_damaged(v, fp)) {
			if (pos.rid != v->h.rid &&
			    (rc = trace_replica(v, pos.rid))) {
				bv_kv_iter_free(it);
				return bv_fail(rc, "verify: replica id %llu: %s",
					       (unsigned long long)pos.rid,
					       bv_strerror(rc));
			}
			trace(v, pos.chunk, pos.ver, pos.newer, fp);
		}
	}
	emit_all(v);
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc ? bv_fail_storage(rc, "verify: maps") : 0;
}

/* Marks what verify found bad, in one synced batch, when it may: a
 * writable store, and not O->read_only. */
static int mark_bad(struct vstate *v, const bv_verify_opts *o)
{
	size_t marked = 0;
	int rc;

	if (v->nmarks == 0)
		return 0;
	if (o && o->read_only) {
		snprintf(v->res->not_marked, sizeof v->res->not_marked,
			 "verify was asked not to change the store");
	} else if (v->s->read_only) {
		snprintf(v->res->not_marked, sizeof v->res->not_marked,
			 "the store is open read-only");
	} else {
		if ((rc = bv_bad_mark(v->s, v->marks, v->nmarks, &marked)))
			return rc;
		v->res->marked = marked;
		return 0;
	}
	v->res->unmarked += v->nmarks;
	return 0;
}

int bv_store_verify_report(bv_store *s, bv_verify_fn fn, void *ud,
			   bv_verify_result *out)
{
	/* As before marks existed: it changes nothing. */
	bv_verify_opts o = { .read_only = 1 };

	return bv_store_verify_opts(s, &o, fn, ud, out);
}

int bv_store_verify_opts(bv_store *s, const bv_verify_opts *o,
			 bv_verify_fn fn, void *ud, bv_verify_result *out)
{
	struct vstate v = { .s = s, .res = out, .fn = fn, .ud = ud };
	struct bv_ring *ring = NULL;
	int rc;

	if (!s || !out)
		return bv_fail(BV_EINVAL, "verify: no store or no result");
	memset(out, 0, sizeof *out);
	bv_fail(0, "%s", "");
	if (s->index_lost)
		problem(&v, "index %s/index: it lost commits that %s/index.seal "
			"records (a damaged write-ahead log, or a directory "
			"restored from an older copy); what it still holds is "
			"checked below", s->path, s->path);
	if ((rc = bv_ring_new(64, &ring)))
		return bv_fail(rc, "verify: io_uring: %s", strerror(-rc));
	rc = scan_containers(&v);
	if (!rc)
		rc = check_chunks(&v, ring);
	if (!rc)
		report_runs(&v, ring);
	if (!rc)
		rc = check_maps(&v);
	if (!rc)
		rc = unknown_ranges(&v);
	if (!rc)
		rc = mark_bad(&v, o);
	bv_ring_free(ring);
	free(v.marks);
	free(v.runs);
	free(v.damaged);
	free(v.open);
	bv_history_free(&v.h);
	if (rc)
		return rc;
	if (v.untraced)
		problem(&v, "%" PRIu64 " more damaged chunks than verify "
			"traces to the RPs that need them", v.untraced);
	if (out->problems)
		return bv_fail(BV_ECORRUPT, "store %s: %" PRIu64 " problem%s "
			       "found; the first: %s", s->path, out->problems,
			       out->problems == 1 ? "" : "s", v.first);
	return 0;
}

int bv_store_verify(bv_store *s, bv_verify_result *out)
{
	return bv_store_verify_report(s, NULL, NULL, out);
}
