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
#include <time.h>
#include <unistd.h>

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

/* An RP a scoped verify covers. */
struct vtarget {
	char name[BV_NAME_MAX + 1];
	uint64_t rid, rp, version, size;
	uint32_t cs;
	uint64_t first_slice; /* its slices are numbered from here */
};

#define SLICE_BYTES (16u << 20) /* raw bytes a scoped reader takes */

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
	/* The readers (--jobs). MU (recursive) guards everything above and
	 * the result's counters the readers change; the callback and the
	 * progress run under it too, so that they never overlap. */
	pthread_mutex_t mu;
	unsigned jobs;
	const bv_verify_opts *o;
	atomic_uint_fast64_t done_bytes, records, chunks;
	uint64_t total_bytes;
	atomic_uint running;
	int err;                  /* a reader that could not go on */
	char errmsg[1024];
	/* The container pass: the files, and for each a sum over the
	 * records that its chunk index entries name, from the scan and
	 * from the index walk; a file whose sums differ holds an entry the
	 * scan did not meet intact, and its entries are read one by one. */
	uint32_t *ids;
	size_t nids;
	atomic_size_t next;
	uint64_t *sum_scan, *sum_index;
	uint8_t *heavy;
	int heavy_other; /* entries naming a container not scanned */
	/* Scoped verify: the RPs, and the slices of them the readers take. */
	struct vtarget *tg;
	size_t ntg;
	uint64_t nslices;
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
	pthread_mutex_lock(&v->mu);
	if (v->res->problems++ == 0)
		snprintf(v->first, sizeof v->first, "%s", msg);
	bv_verify_report r = { .kind = kind, .message = msg,
			       .container = container, .offset = off,
			       .length = len };
	report(v, &r);
	pthread_mutex_unlock(&v->mu);
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
	pthread_mutex_lock(&v->mu);
	v->res->bad_chunks++;
	if (v->ndamaged == v->damaged_cap) {
		size_t nc = v->damaged_cap ? v->damaged_cap * 2 : 256;
		bv_fp *nd;
		if (nc > DAMAGED_MAX ||
		    !(nd = realloc(v->damaged, nc * sizeof *nd))) {
			v->untraced++;
			goto out;
		}
		v->damaged = nd;
		v->damaged_cap = nc;
	}
	v->damaged[v->ndamaged++] = *fp;
out:
	pthread_mutex_unlock(&v->mu);
}

/* Remembers a chunk to mark bad: its record at CONTAINER, OFF (0, 0:
 * its index entry does not decode) failed with ERR. Past BV_BAD_MAX
 * marks in one run, the rest are marked by the next verify. */
static void note_mark(struct vstate *v, const bv_fp *fp, uint32_t container,
		      uint64_t off, int err, const char *reason)
{
	pthread_mutex_lock(&v->mu);
	if (v->nmarks == v->marks_cap) {
		size_t nc = v->marks_cap ? v->marks_cap * 2 : 64;
		bv_bad_info *nm;
		if (nc > BV_BAD_MAX ||
		    !(nm = realloc(v->marks, nc * sizeof *nm))) {
			v->res->unmarked++;
			goto out;
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
out:
	pthread_mutex_unlock(&v->mu);
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

/* Keeps damaged run [OFF, OFF+LEN) of container ID for later; 0 when
 * there is no room (then it is reported at once). */
static int hold_run(struct vstate *v, uint32_t id, uint64_t off,
		    uint64_t len)
{
	int held = 0;

	pthread_mutex_lock(&v->mu);
	if (v->nruns == v->runs_cap) {
		size_t nc = v->runs_cap ? v->runs_cap * 2 : 16;
		struct drun *nr;
		if (nc > RUNS_MAX || !(nr = realloc(v->runs, nc * sizeof *nr)))
			goto out;
		v->runs = nr;
		v->runs_cap = nc;
	}
	v->runs[v->nruns++] = (struct drun){ .id = id, .off = off,
					     .len = len };
	held = 1;
out:
	pthread_mutex_unlock(&v->mu);
	return held;
}

static int drun_cmp(const void *a, const void *b)
{
	const struct drun *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
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

/* What a scan of one container carries: the sum of the records its
 * chunk index entries name (rec_mix). */
struct sctx {
	struct vstate *v;
	size_t i; /* the container's place in v->ids */
	uint64_t sum;
};

static int count_damage(void *ud, uint32_t id, uint64_t off, uint64_t len)
{
	struct vstate *v = ((struct sctx *)ud)->v;

	/* Reads of a container whose file header is damaged fail even
	 * where the scan read records: its entries are read one by one. */
	if (off == 0)
		v->heavy[((struct sctx *)ud)->i] = 1;
	char path[4096];

	if (off != 0 && hold_run(v, id, off, len))
		return 0;
	(void)v->s->cs->ops->where(v->s->cs, id, path, sizeof path);
	pthread_mutex_lock(&v->mu);
	v->res->damaged_bytes += len;
	pthread_mutex_unlock(&v->mu);
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

/* ---- the readers (--jobs) -------------------------------------------- */

static void set_err(struct vstate *v, int rc)
{
	pthread_mutex_lock(&v->mu);
	if (!v->err) {
		v->err = rc;
		snprintf(v->errmsg, sizeof v->errmsg, "%s", bv_last_error());
	}
	pthread_mutex_unlock(&v->mu);
}

struct rarg {
	struct vstate *v;
	unsigned t;
	void (*fn)(struct vstate *v, unsigned t);
};

static void *reader_main(void *arg)
{
	struct rarg *a = arg;

	a->fn(a->v, a->t);
	atomic_fetch_sub(&a->v->running, 1);
	return NULL;
}

static void progress(struct vstate *v)
{
	if (!v->o || !v->o->progress)
		return;
	pthread_mutex_lock(&v->mu);
	v->o->progress(v->o->progress_ud, atomic_load(&v->done_bytes),
		       v->total_bytes);
	pthread_mutex_unlock(&v->mu);
}

/* Runs FN on V->jobs threads of their own (not the store's pool, which
 * ingest sessions share), telling the progress from this one. */
static int run_readers(struct vstate *v,
		       void (*fn)(struct vstate *v, unsigned t))
{
	pthread_t th[64];
	struct rarg args[64];
	unsigned n = 0;

	atomic_store(&v->next, 0);
	atomic_store(&v->running, v->jobs);
	for (; n < v->jobs; n++) {
		args[n] = (struct rarg){ .v = v, .t = n, .fn = fn };
		if (pthread_create(&th[n], NULL, reader_main, &args[n]))
			break;
	}
	if (n < v->jobs)
		atomic_fetch_sub(&v->running, v->jobs - n);
	if (n == 0) {
		atomic_store(&v->running, 1);
		args[0] = (struct rarg){ .v = v, .t = 0, .fn = fn };
		reader_main(&args[0]);
	}
	while (atomic_load(&v->running) > 0) {
		progress(v);
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	progress(v);
	return v->err ? bv_fail(v->err, "%s", v->errmsg) : 0;
}

/* A record's location and fingerprint, mixed: summed per container by
 * the scan and by the walk of the chunk index, whose sums then agree
 * exactly when every entry naming the container named a record the scan
 * met intact (a chance of 2^-64 otherwise). */
static uint64_t rec_mix(const bv_fp *fp, uint64_t off)
{
	uint64_t a, z = off + 0x9e3779b97f4a7c15ull;

	memcpy(&a, fp->b, 8);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return a ^ z ^ (z >> 31);
}

/* 1 and 2 in one read: each intact record the scan meets (its header,
 * payload checksum and the fingerprint of its decoded bytes checked by
 * the scan, invariant 4) is held against the chunk index entry of its
 * fingerprint; when the entry names it, it is that chunk read back, and
 * the digest the entry keeps is checked against its bytes. */
static int on_record(void *ud, const struct bv_chunk_loc *loc,
		     const bv_fp *fp, const void *raw)
{
	struct sctx *c = ud;
	struct vstate *v = c->v;
	struct bv_chunk_loc at;
	uint8_t val[64], dg[16], d[16];
	char hex[33];
	size_t vl;
	int rc;

	atomic_fetch_add(&v->records, 1);
	atomic_fetch_add(&v->done_bytes, bv_rec_size(loc->stored_len));
	rc = bv_kv_get(v->s->kv, BV_CF_CHUNKS, fp->b, sizeof fp->b, val,
		       sizeof val, &vl);
	if (rc == ST_ENOTFOUND)
		return 0; /* garbage: no entry names the chunk */
	if (rc) {
		set_err(v, bv_fail_storage(rc, "verify: chunk index"));
		return rc;
	}
	if (bv_chunk_loc_decode(val, vl, &at) ||
	    at.container != loc->container || at.offset != loc->offset ||
	    at.codec != loc->codec || at.stored_len != loc->stored_len ||
	    at.raw_len != loc->raw_len)
		return 0; /* the entry names another record: the walk sees */
	c->sum += rec_mix(fp, loc->offset);
	if (!raw)
		return 0;
	if (bv_bad_has(v->s, fp)) {
		/* Not served whatever it reads now (invariant 13): what
		 * needs it needs a host to send it again. */
		note_damaged(v, fp);
		problem_at(v, BV_VERIFY_DAMAGED, loc->container, loc->offset,
			   bv_rec_size(loc->stored_len), "chunk %s reads back "
			   "intact, but is marked bad: it is not served until "
			   "a host sends it again", (fp_hex(fp, hex), hex));
		return 0;
	}
	if (bv_chunk_entry_digest(val, vl, dg)) {
		bv_digest_compute(raw, loc->raw_len, d);
		if (memcmp(d, dg, 16))
			problem(v, "chunk %s: the plain digest its index entry "
				"keeps is not its bytes'",
				(fp_hex(fp, hex), hex));
	}
	return 0;
}

static int on_record_nodata(void *ud, const struct bv_chunk_loc *loc,
			    const bv_fp *fp)
{
	return on_record(ud, loc, fp, NULL);
}

/* 1: the containers, each scanned past its damage by one reader. A
 * read-only open scans up to the durable tail only (beyond it, a writer
 * may be appending); the write lock keeps this process's appends out
 * while the last container is read. A backend without scan_data gives
 * no bytes: every entry is then read one by one (heavy). */
static void scan_thread(struct vstate *v, unsigned t)
{
	bv_store *s = v->s;
	size_t i;

	(void)t;
	while (!v->err && (i = atomic_fetch_add(&v->next, 1)) < v->nids) {
		struct sctx c = { .v = v, .i = i };
		char path[4096];
		int last = i + 1 == v->nids, rc;
		if (last)
			pthread_mutex_lock(&s->write_lock);
		if (s->cs->ops->scan_data)
			rc = s->cs->ops->scan_data(s->cs, v->ids[i], on_record,
						   count_damage, &c);
		else
			rc = s->cs->ops->scan(s->cs, v->ids[i],
					      on_record_nodata, count_damage,
					      &c);
		if (last)
			pthread_mutex_unlock(&s->write_lock);
		v->sum_scan[i] = c.sum;
		if (!s->cs->ops->scan_data)
			v->heavy[i] = 1;
		if (rc && !v->err) {
			v->heavy[i] = 1;
			(void)s->cs->ops->where(s->cs, v->ids[i], path,
						sizeof path);
			problem_at(v, BV_VERIFY_DAMAGED, v->ids[i], 0, 0,
				   "container %s cannot be read: %s", path,
				   bv_strerror(rc));
		}
	}
}

static int scan_containers(struct vstate *v)
{
	bv_store *s = v->s;
	uint64_t files = 0;
	int rc;

	if ((rc = s->cs->ops->list(s->cs, &v->ids, &v->nids)))
		return bv_fail(rc, "verify: listing the containers of %s: %s",
			       s->path, bv_strerror(rc));
	v->res->containers = v->nids;
	v->sum_scan = calloc(v->nids + 1, sizeof *v->sum_scan);
	v->sum_index = calloc(v->nids + 1, sizeof *v->sum_index);
	v->heavy = calloc(v->nids + 1, 1);
	if (!v->sum_scan || !v->sum_index || !v->heavy)
		return bv_fail(-ENOMEM, "verify: %zu containers", v->nids);
	(void)s->cs->ops->usage(s->cs, &files, &v->total_bytes);
	rc = run_readers(v, scan_thread);
	if (v->nruns)
		qsort(v->runs, v->nruns, sizeof *v->runs, drun_cmp);
	return rc;
}

/* Where container ID is in V->ids, or V->nids. */
static size_t id_pos(const struct vstate *v, uint32_t id)
{
	size_t lo = 0, hi = v->nids;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->ids[mid] == id)
			return mid;
		if (v->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return v->nids;
}

/* 2, the index's side: every chunk index entry decodes, and sums into
 * its container's; damaged runs an entry names are damage. Returns 1 in
 * *HEAVY when some entries must be read one by one. */
static int index_walk(struct vstate *v, int *heavy)
{
	struct bv_kv_iter *it = NULL;
	char hex[33];
	int rc;

	*heavy = 0;
	if ((rc = bv_kv_iter_new(v->s->kv, BV_CF_CHUNKS, "", 0, NULL, 0,
				 &it)))
		return bv_fail_storage(rc, "verify: chunk index");
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
		atomic_fetch_add(&v->chunks, 1);
		if (bv_chunk_loc_decode(val, vl, &loc)) {
			fp_hex(&fp, hex);
			note_damaged(v, &fp);
			if (!bv_bad_has(v->s, &fp))
				note_mark(v, &fp, 0, 0, BV_ECORRUPT,
					  "its chunk index entry is damaged");
			problem(v, "chunk %s: its index entry is damaged", hex);
			continue;
		}
		if (v->nruns)
			run_named(v, loc.container, loc.offset);
		size_t i = id_pos(v, loc.container);
		if (i == v->nids)
			v->heavy_other = 1;
		else
			v->sum_index[i] += rec_mix(&fp, loc.offset);
	}
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	if (rc)
		return bv_fail_storage(rc, "verify: chunk index");
	*heavy = v->heavy_other;
	for (size_t i = 0; i < v->nids; i++) {
		if (v->sum_scan[i] != v->sum_index[i])
			v->heavy[i] = 1;
		*heavy |= v->heavy[i];
	}
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
		if (r->res) {
			char path[4096];
			int marked = bv_bad_has(v->s, &r->fp);
			fp_hex(&r->fp, hex);
			(void)v->s->cs->ops->where(v->s->cs, r->loc.container, path,
					   sizeof path);
			note_damaged(v, &r->fp);
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

/* One reader's buffers for a batch of records. */
struct rbuf {
	struct bv_ring *ring;
	struct bv_chunk_read *reads;
	uint8_t (*dig)[17];
	uint8_t *out, *scratch;
	uint64_t *chunkno;
	bv_fp *fps;
};

static void rbuf_free(struct rbuf *b)
{
	bv_ring_free(b->ring);
	free(b->reads);
	free(b->dig);
	free(b->out);
	free(b->scratch);
	free(b->chunkno);
	free(b->fps);
}

/* A ring of VERIFY_MAX entries: a batch's reads all in flight at once. */
static int rbuf_alloc(struct vstate *v, struct rbuf *b)
{
	int rc;

	memset(b, 0, sizeof *b);
	if ((rc = bv_ring_new(VERIFY_MAX, &b->ring))) {
		set_err(v, bv_fail(rc, "verify: io_uring: %s", strerror(-rc)));
		return rc;
	}
	b->reads = calloc(VERIFY_MAX, sizeof *b->reads);
	b->dig = calloc(VERIFY_MAX, sizeof *b->dig);
	b->out = malloc(VERIFY_BYTES);
	b->scratch = malloc(VERIFY_BYTES + VERIFY_MAX * 64u + 4096);
	b->chunkno = calloc(VERIFY_MAX, sizeof *b->chunkno);
	b->fps = calloc(VERIFY_MAX, sizeof *b->fps);
	if (!b->reads || !b->dig || !b->out || !b->scratch || !b->chunkno ||
	    !b->fps) {
		set_err(v, bv_fail(-ENOMEM, "verify: cannot allocate read "
				   "buffers"));
		return -ENOMEM;
	}
	return 0;
}

/* 2, where the sums disagree: the entries of slice K (fingerprints
 * whose first byte is K) that name a heavy container, or one the scan
 * did not see, read back one by one. */
static int heavy_slice(struct vstate *v, struct rbuf *b, unsigned k)
{
	uint8_t lo[1] = { (uint8_t)k }, hi[1] = { (uint8_t)(k + 1) };
	struct bv_kv_iter *it = NULL;
	size_t n = 0, out_used = 0, scr_used = 0;
	int rc;

	if ((rc = bv_kv_iter_new(v->s->kv, BV_CF_CHUNKS, lo, 1,
				 k == 255 ? NULL : hi, k == 255 ? 0 : 1, &it)))
		return bv_fail_storage(rc, "verify: chunk index");
	for (bv_kv_iter_seek(it, lo, 1); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const void *key = bv_kv_iter_key(it, &kl);
		const void *val = bv_kv_iter_value(it, &vl);
		struct bv_chunk_loc loc;
		bv_fp fp;

		if (kl != sizeof fp.b || bv_chunk_loc_decode(val, vl, &loc))
			continue; /* the walk reported it */
		size_t i = id_pos(v, loc.container);
		if (i < v->nids && !v->heavy[i])
			continue;
		memcpy(fp.b, key, sizeof fp.b);
		uint64_t rec = bv_rec_size(loc.stored_len);
		if (n == VERIFY_MAX || out_used + loc.raw_len > VERIFY_BYTES ||
		    scr_used + rec > VERIFY_BYTES + 4096) {
			check_batch(v, b->ring, b->reads, b->dig, n);
			n = out_used = scr_used = 0;
		}
		b->dig[n][0] = (uint8_t)bv_chunk_entry_digest(val, vl,
							      b->dig[n] + 1);
		/* A chunk is at most BV_CHUNK_MAX: always fits a batch. */
		b->reads[n] = (struct bv_chunk_read){
			.loc = loc, .fp = fp, .out = b->out + out_used,
			.scratch = b->scratch + scr_used,
		};
		atomic_fetch_add(&v->done_bytes, rec);
		out_used += loc.raw_len;
		scr_used += rec;
		n++;
	}
	check_batch(v, b->ring, b->reads, b->dig, n);
	if ((rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, "verify: chunk index");
	bv_kv_iter_free(it);
	return rc;
}

static void heavy_thread(struct vstate *v, unsigned t)
{
	struct rbuf b;
	size_t k;
	int rc;

	(void)t;
	if (rbuf_alloc(v, &b) == 0)
		while (!v->err && (k = atomic_fetch_add(&v->next, 1)) < 256)
			if ((rc = heavy_slice(v, &b, (unsigned)k)))
				set_err(v, rc);
	rbuf_free(&b);
}

/* ---- scoped verify: what some RPs read -------------------------------- */

/* Chunks of size CS a scoped reader takes at a time: a batch. */
static uint64_t slice_chunks(uint32_t cs)
{
	uint64_t per = SLICE_BYTES / cs;

	return per < 1 ? 1 : per > VERIFY_MAX ? VERIFY_MAX : per;
}

static int add_target(struct vstate *v, const char *name, uint64_t rid,
		      uint64_t rp, uint64_t version, uint64_t size,
		      uint32_t cs)
{
	struct vtarget *nt = realloc(v->tg, (v->ntg + 1) * sizeof *nt);

	if (!nt)
		return bv_fail(-ENOMEM, "verify: the RPs to cover");
	v->tg = nt;
	struct vtarget *t = &v->tg[v->ntg++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->rid = rid;
	t->rp = rp;
	t->version = version;
	t->size = size;
	t->cs = cs;
	return 0;
}

/* Resolves the scope: REPLICA@RP, or every RP of a group (or of a
 * replica's group). */
static int resolve_scope(struct vstate *v)
{
	const bv_verify_opts *o = v->o;
	struct bv_history h = { 0 };
	int rc = 0;

	for (size_t i = 0; !rc && i < o->nscope; i++) {
		const bv_verify_scope *sc = &o->scope[i];
		if (!sc->name) {
			rc = bv_fail(BV_EINVAL, "verify: a scope without a name");
		} else if (sc->rp) {
			struct bv_rrec rr;
			uint64_t ver, size, rp;
			rc = bv_replica_at(v->s, sc->name, sc->rp, &rr, &ver,
					   &size, &rp);
			if (!rc)
				rc = add_target(v, sc->name, rr.rid, rp, ver,
						size, rr.chunk_size);
		} else {
			char gname[BV_NAME_MAX + 1];
			struct bv_grec *g = malloc(sizeof *g);
			size_t before = v->ntg;
			rc = g ? bv_resolve_group(v->s, sc->name, gname, g) :
				 -ENOMEM;
			for (uint32_t m = 0; !rc && m < g->n; m++) {
				rc = bv_history_load(v->s, g->members[m], &h);
				for (size_t j = 0; !rc && j < h.n; j++)
					rc = add_target(v, h.name, h.rid,
							h.rps[j].number,
							h.rps[j].version,
							h.rps[j].size,
							h.chunk_size);
			}
			if (!rc && v->ntg == before)
				rc = bv_fail(BV_ENOTFOUND, "verify: group %s has "
					     "no recovery point", gname);
			free(g);
		}
	}
	bv_history_free(&h);
	if (rc)
		return rc;
	for (size_t i = 0; i < v->ntg; i++) {
		struct vtarget *t = &v->tg[i];
		uint64_t per = slice_chunks(t->cs);
		uint64_t nch = (t->size + t->cs - 1) / t->cs;
		t->first_slice = v->nslices;
		v->nslices += (nch + per - 1) / per;
		v->total_bytes += t->size;
	}
	return 0;
}

/* Chunk C of target T, of chunk FP, reads damage: its range. */
static void needed(struct vstate *v, const struct vtarget *t, uint64_t c,
		   const bv_fp *fp)
{
	char msg[512], hex[33];
	uint64_t from = c * t->cs;
	uint64_t to = from + t->cs < t->size ? from + t->cs : t->size;

	fp_hex(fp, hex);
	snprintf(msg, sizeof msg, "%s@%" PRIu64 " needs damaged or missing "
		 "data: bytes %" PRIu64 " to %" PRIu64 " (chunk %s)", t->name,
		 t->rp, from, to, hex);
	pthread_mutex_lock(&v->mu);
	v->res->needed_ranges++;
	bv_verify_report r = { .kind = BV_VERIFY_NEEDED, .message = msg,
			       .replica = t->name, .rp = t->rp, .off = from,
			       .len = to - from };
	report(v, &r);
	pthread_mutex_unlock(&v->mu);
}

/* Reads chunks [C0, C1) of target T: the map, the chunk index, then the
 * records, a batch in flight at a time. */
static int scope_slice(struct vstate *v, struct rbuf *b, struct bv_kv_iter *it,
		       const struct vtarget *t, uint64_t c0, uint64_t c1)
{
	const char *keys[64];
	size_t klens[64], vlens[64];
	uint8_t vals[64 * 64], found[64];
	size_t n = 0, m = 0;
	char hex[33];
	int rc;

	for (uint64_t c = c0; c < c1; c++) {
		rc = bv_map_lookup(it, t->rid, c, t->version, &b->fps[n], NULL);
		atomic_fetch_add(&v->records, 1);
		if (rc < 0) {
			if (rc != BV_ECORRUPT)
				return bv_fail_storage(rc, t->name);
			problem(v, "replica %s: the map entry of chunk %" PRIu64
				" at version %" PRIu64 " is damaged", t->name, c,
				t->version);
			continue;
		}
		if (rc > 0)
			b->chunkno[n++] = c;
	}
	atomic_fetch_add(&v->done_bytes, (c1 - c0) * t->cs);
	for (size_t done = 0; done < n; done += 64) {
		size_t k = n - done < 64 ? n - done : 64;
		for (size_t i = 0; i < k; i++) {
			keys[i] = (const char *)b->fps[done + i].b;
			klens[i] = sizeof b->fps[done + i].b;
		}
		if ((rc = bv_kv_multi_get(v->s->kv, BV_CF_CHUNKS, k, keys, klens,
					  vals, 64, vlens, found)))
			return bv_fail_storage(rc, t->name);
		for (size_t i = 0; i < k; i++) {
			const bv_fp *fp = &b->fps[done + i];
			uint64_t c = b->chunkno[done + i];
			struct bv_chunk_loc loc;
			fp_hex(fp, hex);
			if (!found[i]) {
				problem(v, "replica %s: the map entry of chunk %"
					PRIu64 " names chunk %s, which the chunk "
					"index does not hold", t->name, c, hex);
				needed(v, t, c, fp);
				continue;
			}
			if (bv_chunk_loc_decode(vals + 64 * i, vlens[i], &loc)) {
				note_damaged(v, fp);
				if (!bv_bad_has(v->s, fp))
					note_mark(v, fp, 0, 0, BV_ECORRUPT, "its "
						  "chunk index entry is damaged");
				problem(v, "chunk %s: its index entry is "
					"damaged", hex);
				needed(v, t, c, fp);
				continue;
			}
			b->reads[m] = (struct bv_chunk_read){
				.loc = loc, .fp = *fp,
				.out = b->out + m * (size_t)t->cs,
				.scratch = b->scratch +
					   m * (size_t)bv_rec_size(t->cs),
			};
			b->dig[m][0] = 0;
			b->chunkno[m] = c; /* m <= done + i: already read */
			m++;
		}
	}
	check_batch(v, b->ring, b->reads, b->dig, m);
	atomic_fetch_add(&v->chunks, m);
	for (size_t i = 0; i < m; i++)
		if (b->reads[i].res || bv_bad_has(v->s, &b->reads[i].fp))
			needed(v, t, b->chunkno[i], &b->reads[i].fp);
	return 0;
}

static void scope_thread(struct vstate *v, unsigned t)
{
	struct bv_kv_iter *it = NULL;
	struct rbuf b;
	uint64_t k;
	int rc;

	(void)t;
	if (rbuf_alloc(v, &b) == 0 &&
	    (rc = bv_map_iter(v->s, 0, &it)) != 0)
		set_err(v, bv_fail_storage(rc, "verify: maps"));
	while (it && !v->err && (k = atomic_fetch_add(&v->next, 1)) <
					v->nslices) {
		size_t i = v->ntg - 1;
		while (v->tg[i].first_slice > k)
			i--;
		const struct vtarget *tg = &v->tg[i];
		uint64_t per = slice_chunks(tg->cs);
		uint64_t nch = (tg->size + tg->cs - 1) / tg->cs;
		uint64_t c0 = (k - tg->first_slice) * per;
		uint64_t c1 = c0 + per < nch ? c0 + per : nch;
		if ((rc = scope_slice(v, &b, it, tg, c0, c1)))
			set_err(v, rc);
	}
	bv_kv_iter_free(it);
	rbuf_free(&b);
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
		/* A chunk that several RPs read is found once per RP. */
		qsort(v->marks, v->nmarks, sizeof *v->marks, fp_cmp);
		size_t u = 0;
		for (size_t i = 0; i < v->nmarks; i++)
			if (u == 0 || fp_cmp(&v->marks[u - 1], &v->marks[i]))
				v->marks[u++] = v->marks[i];
		v->nmarks = u;
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

/* The whole store: 1 and 2 in one parallel read of the containers, the
 * index walk against it (and the entries it could not vouch for read one
 * by one), 3 and 4 from the map, then the kept bytes. */
static int verify_all(struct vstate *v)
{
	struct bv_ring *ring = NULL;
	int heavy = 0, rc;

	if ((rc = bv_ring_new(4, &ring)))
		return bv_fail(rc, "verify: io_uring: %s", strerror(-rc));
	rc = scan_containers(v);
	if (!rc)
		rc = index_walk(v, &heavy);
	if (!rc)
		report_runs(v, ring);
	if (!rc && heavy)
		rc = run_readers(v, heavy_thread);
	if (!rc)
		rc = check_maps(v);
	if (!rc)
		rc = unknown_ranges(v);
	bv_ring_free(ring);
	return rc;
}

int bv_store_verify_opts(bv_store *s, const bv_verify_opts *o,
			 bv_verify_fn fn, void *ud, bv_verify_result *out)
{
	struct vstate v = { .s = s, .res = out, .fn = fn, .ud = ud, .o = o };
	pthread_mutexattr_t ma;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int rc;

	if (!s || !out)
		return bv_fail(BV_EINVAL, "verify: no store or no result");
	memset(out, 0, sizeof *out);
	bv_fail(0, "%s", "");
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&v.mu, &ma);
	pthread_mutexattr_destroy(&ma);
	/* Two readers a core: a scan reads a window and then checks it, so
	 * one reader's read overlaps another's checks. */
	v.jobs = o && o->jobs ? o->jobs : cores > 0 ? 2 * (unsigned)cores : 2;
	if (v.jobs > 64)
		v.jobs = 64;
	atomic_init(&v.done_bytes, 0);
	atomic_init(&v.records, 0);
	atomic_init(&v.chunks, 0);
	atomic_init(&v.running, 0);
	atomic_init(&v.next, 0);
	if (s->index_lost)
		problem(&v, "index %s/index: it lost commits that %s/index.seal "
			"records (a damaged write-ahead log, or a directory "
			"restored from an older copy); what it still holds is "
			"checked below", s->path, s->path);
	bv_gc_exclude_begin(s);
	if (o && o->nscope) {
		rc = resolve_scope(&v);
		if (!rc)
			rc = run_readers(&v, scope_thread);
		out->map_entries = atomic_load(&v.records);
	} else {
		rc = verify_all(&v);
		out->records = atomic_load(&v.records);
	}
	out->chunks = atomic_load(&v.chunks);
	if (!rc)
		rc = mark_bad(&v, o);
	bv_gc_exclude_end(s);
	free(v.marks);
	free(v.runs);
	free(v.damaged);
	free(v.open);
	free(v.ids);
	free(v.sum_scan);
	free(v.sum_index);
	free(v.heavy);
	free(v.tg);
	bv_history_free(&v.h);
	if (!rc && v.untraced)
		problem(&v, "%" PRIu64 " more damaged chunks than verify "
			"traces to the RPs that need them", v.untraced);
	pthread_mutex_destroy(&v.mu);
	if (rc)
		return rc;
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
