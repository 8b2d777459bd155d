/*
 * engine-model: random ingest sessions against an in-memory model of
 * every disk at every RP.
 *
 * Three replicas (chunk sizes 4 KiB, 16 KiB and the store default 64 KiB,
 * the last one created by its first session) take 40 steps of random
 * sessions: data extents at random sector offsets (inside a chunk,
 * spanning chunks, up to the disk end), zero extents, grows and shrinks
 * (a shrink then a grow must read back as zeros), chunk-aligned copies of
 * a few pool blocks (dedup), all-zero data. Each session is committed with
 * an RP, committed without one, or aborted (which must leave no trace);
 * some RPs are made afterwards with bv_rp_create. A quarter of the
 * sessions are written as a change stream (bv_stream_writer) and ingested
 * with bv_ingest_stream, some resizing through the stream header alone;
 * a third of the operations stay in the first four chunks so that a
 * session's operations overlap each other. After every step each
 * replica's head and every RP are read through bv_reader_pread at random
 * ranges and the head and latest RP exported; every ten steps, after a
 * reopen midway, and at the end every RP of every replica is exported and
 * compared byte for byte.
 *
 * BV_SEED replays a run; BV_STEPS changes the number of steps.
 */
#include "etest.h"

#define NREP 3
#define MAX_SIZE (3u << 20)
#define POOL_BLOCKS 6
#define POOL_BLOCK (64u << 10)

typedef struct model_rp {
	uint64_t number;
	uint64_t version;
	uint64_t size;
	uint8_t *img;
} model_rp;

typedef struct model_rep {
	char name[16];
	uint32_t chunk;
	int exists;       /* committed at least once or created */
	uint64_t version; /* committed head version as last seen */
	uint64_t size;
	uint8_t *head;    /* MAX_SIZE bytes; past SIZE always zero */
	model_rp *rps;
	size_t nrps;
} model_rep;

static model_rep reps[NREP];
static uint8_t *pool[POOL_BLOCKS];
static uint8_t *scratch_buf;
static const char *scratch;
static et_rng rng;

/* The content of a write of LEN bytes at OFF, into scratch_buf. */
static void make_content(const model_rep *m, uint64_t off, uint64_t len,
			 int kind)
{
	switch (kind) {
	case 0: /* fresh random bytes */
		et_fill(&rng, scratch_buf, len);
		break;
	case 1: /* all zero, sent as data */
		memset(scratch_buf, 0, len);
		break;
	default: { /* a pool block, laid out by disk offset: same chunk
		     content wherever the same block lands aligned */
		const uint8_t *src = pool[kind - 2];
		for (uint64_t i = 0; i < len;) {
			uint64_t at = (off + i) % POOL_BLOCK;
			uint64_t n = POOL_BLOCK - at;
			if (n > len - i)
				n = len - i;
			memcpy(scratch_buf + i, src + at, n);
			i += n;
		}
		break;
	}
	}
	(void)m;
}

static uint64_t rand_sectors(uint64_t lo, uint64_t hi)
{
	return et_range(&rng, lo / 512, hi / 512) * 512;
}

/* Where a session's changes go: straight into an ingest session, or into
 * a change stream that is ingested afterwards with bv_ingest_stream. */
typedef struct sink {
	bv_ingest *in;
	int slot;
	bv_stream_writer *w;
} sink;

static int sk_write(sink *k, uint64_t off, const void *buf, uint64_t len)
{
	return k->w ? bv_stream_write_data(k->w, off, buf, len)
		    : bv_ingest_write(k->in, k->slot, off, buf, len);
}

static int sk_zero(sink *k, uint64_t off, uint64_t len)
{
	return k->w ? bv_stream_write_zero(k->w, off, len)
		    : bv_ingest_zero(k->in, k->slot, off, len);
}

static int sk_resize(sink *k, uint64_t size)
{
	return k->w ? bv_stream_write_resize(k->w, size)
		    : bv_ingest_resize(k->in, k->slot, size);
}

/* One random operation into sink K for replica M, applied to the pending
 * image P (with size *PSIZE) too. Returns 0, or the engine's error. */
static int one_op(sink *k, const model_rep *m, uint8_t *p, uint64_t *psize,
		  char *what, size_t whatlen)
{
	uint64_t size = *psize, off, len, ns;
	uint64_t c = m->chunk ? m->chunk : 64u << 10;
	unsigned pick = (unsigned)et_below(&rng, 100);
	int rc;

	if (size < 512)
		pick = 80; /* nothing to write into: resize */
	/* A third of the time stay in the first few chunks, so that the
	 * operations of a session overlap each other and older versions. */
	if (pick < 70 && et_below(&rng, 3) == 0 && size > 4 * c)
		size = 4 * c; /* offsets only: resizes below see the real size */
	if (pick < 40) {
		int kind = (int)et_below(&rng, 10);
		kind = kind < 7 ? 0 : kind < 8 ? 1 : 2 + (int)et_below(&rng, POOL_BLOCKS);
		off = rand_sectors(0, size - 512);
		len = rand_sectors(512, size - off < 3 * c + c / 2
					     ? size - off
					     : 3 * c + c / 2);
		/* One in six is large (1 MiB and more where the disk has
		 * room): the engine reads the whole chunks of such a call
		 * in place, without copying them. */
		if (et_below(&rng, 6) == 0 && *psize > (1u << 20) + 512) {
			off = rand_sectors(0, *psize - (1u << 20) - 512);
			len = rand_sectors(1u << 20, *psize - off);
		}
		make_content(m, off, len, kind);
		snprintf(what, whatlen, "write %" PRIu64 "+%" PRIu64 " kind %d",
			 off, len, kind);
		rc = sk_write(k, off, scratch_buf, len);
		if (rc >= 0)
			memcpy(p + off, scratch_buf, len);
	} else if (pick < 55) {
		/* Chunk-aligned pool copies: whole chunks the store has
		 * probably seen before. */
		int kind = 2 + (int)et_below(&rng, POOL_BLOCKS);
		if (size < c)
			return one_op(k, m, p, psize, what, whatlen);
		off = et_below(&rng, size / c) * c;
		len = et_range(&rng, 1, 3) * c;
		if (len > size - off)
			len = size - off;
		make_content(m, off, len, kind);
		snprintf(what, whatlen, "dedup write %" PRIu64 "+%" PRIu64
			 " kind %d", off, len, kind);
		rc = sk_write(k, off, scratch_buf, len);
		if (rc >= 0)
			memcpy(p + off, scratch_buf, len);
	} else if (pick < 70) {
		off = rand_sectors(0, size - 512);
		len = rand_sectors(512, size - off < 4 * c ? size - off : 4 * c);
		snprintf(what, whatlen, "zero %" PRIu64 "+%" PRIu64, off, len);
		rc = sk_zero(k, off, len);
		if (rc >= 0)
			memset(p + off, 0, len);
	} else if (pick < 78) {
		/* A write that ends exactly at the disk end. */
		len = rand_sectors(512, size < 2 * c ? size : 2 * c);
		off = size - len;
		make_content(m, off, len, 0);
		snprintf(what, whatlen, "tail write %" PRIu64 "+%" PRIu64, off,
			 len);
		rc = sk_write(k, off, scratch_buf, len);
		if (rc >= 0)
			memcpy(p + off, scratch_buf, len);
	} else if (pick < 90) {
		uint64_t lo = size / 2 < 4096 ? 4096 : size / 2;
		uint64_t hi = size + size / 2 + 4096;
		if (hi > MAX_SIZE)
			hi = MAX_SIZE;
		ns = rand_sectors(lo, hi);
		snprintf(what, whatlen, "resize %" PRIu64 " -> %" PRIu64, size,
			 ns);
		rc = sk_resize(k, ns);
		if (rc >= 0) {
			if (ns < size)
				memset(p + ns, 0, size - ns);
			*psize = ns;
		}
	} else {
		/* Shrink then grow back: what was cut must come back as
		 * zeros, not as the old bytes. */
		uint64_t cut = rand_sectors(512, size / 2 > 512 ? size / 2 : 512);
		if (cut >= size)
			cut = size - 512;
		ns = size - cut;
		snprintf(what, whatlen, "shrink %" PRIu64 " -> %" PRIu64
			 " then grow back", size, ns);
		rc = sk_resize(k, ns);
		if (rc >= 0) {
			memset(p + ns, 0, size - ns);
			*psize = ns;
			rc = sk_resize(k, size);
			if (rc >= 0)
				*psize = size;
		}
	}
	return rc;
}

static uint64_t latest_rp(const model_rep *m)
{
	return m->nrps ? m->rps[m->nrps - 1].number : 0;
}

static void add_rp(model_rep *m, uint64_t number)
{
	model_rp *r;
	m->rps = realloc(m->rps, (m->nrps + 1) * sizeof *m->rps);
	if (!m->rps)
		bail_out("out of memory");
	r = &m->rps[m->nrps++];
	r->number = number;
	r->version = m->version;
	r->size = m->size;
	r->img = malloc(m->size ? m->size : 1);
	if (!r->img)
		bail_out("out of memory");
	memcpy(r->img, m->head, m->size);
}

/* Writes the stream of a session to a scratch file and opens it for
 * reading; the caller then ingests it. */
static int stream_open(const char *name, uint64_t size, uint64_t base,
		       sink *k, int *fd)
{
	char *path = et_path(scratch, "session.bvs");
	bv_stream_header h = { .replica = name, .disk_size = size,
			       .base_rp = base };
	int rc;
	*fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	free(path);
	if (*fd < 0)
		bail_out("cannot make the stream file");
	rc = bv_stream_writer_open(*fd, &h, &k->w);
	if (rc < 0)
		close(*fd);
	return rc;
}

/* One session on replica M: a few operations, then commit with an RP,
 * commit without, or abort. A quarter of the sessions go through a
 * change stream (bv_stream_writer, then bv_ingest_stream); some of
 * those change the size through the stream header. */
static void session(bv_store *s, model_rep *m, int step)
{
	bv_ingest *in = NULL;
	uint8_t *p = malloc(MAX_SIZE);
	uint64_t psize = m->size, create = 0, rp = 0;
	unsigned outcome = (unsigned)et_below(&rng, 100);
	int nops = (int)et_range(&rng, 1, 10), rc, failed = 0, fd = -1;
	int via_stream = et_below(&rng, 4) == 0;
	sink k = { 0 };
	char what[160] = "";
	const char *how = via_stream ? "stream" : "direct";

	if (!p)
		bail_out("out of memory");
	memcpy(p, m->head, MAX_SIZE);
	if (!m->exists) {
		/* Created by its first session, at the store's chunk size. */
		create = psize = rand_sectors(256 << 10, 1 << 20);
	}
	if (via_stream) {
		uint64_t hs = psize;
		if (m->exists && et_below(&rng, 4) == 0) {
			/* The header alone resizes the disk. */
			hs = rand_sectors(4096, MAX_SIZE);
			if (hs < psize)
				memset(p + hs, 0, psize - hs);
			psize = hs;
		}
		rc = stream_open(m->name, hs, latest_rp(m), &k, &fd);
		if (rc < 0) {
			ok(0, "step %d %s: stream writer: %d %s", step, m->name,
			   rc, bv_strerror(rc));
			free(p);
			return;
		}
	} else {
		ET_MUST(s, bv_ingest_begin(s, &in));
		k.in = in;
		k.slot = bv_ingest_add(in, m->name, latest_rp(m), create);
		if (k.slot < 0) {
			ok(0, "step %d %s: add (base %" PRIu64 "): %d %s: %s",
			   step, m->name, latest_rp(m), k.slot,
			   bv_strerror(k.slot), bv_store_error(s));
			bv_ingest_abort(in);
			free(p);
			return;
		}
	}
	for (int i = 0; i < nops && !failed; i++) {
		rc = one_op(&k, m, p, &psize, what, sizeof what);
		if (rc < 0) {
			ok(0, "step %d %s (%s): %s: %d %s: %s", step, m->name,
			   how, what, rc, bv_strerror(rc),
			   k.w ? bv_stream_writer_error(k.w)
			       : bv_store_error(s));
			failed = 1;
		}
	}
	if (via_stream) {
		if (failed) {
			bv_stream_writer_abort(k.w);
			close(fd);
			free(p);
			return;
		}
		rc = bv_stream_writer_finish(k.w);
		k.w = NULL;
		if (rc >= 0 && lseek(fd, 0, SEEK_SET) != 0)
			rc = -errno;
		if (rc >= 0)
			rc = bv_ingest_begin(s, &in);
		if (rc >= 0) {
			int64_t t = 0;
			int cons = -1;
			rc = bv_ingest_stream(in, fd, BV_FORMAT_BVAULT, NULL, 0,
					      &cons, &t, NULL, NULL);
			if (rc < 0)
				bv_ingest_abort(in);
		}
		close(fd);
		if (rc < 0) {
			ok(0, "step %d %s: ingest of the session's stream: %d "
			   "%s: %s", step, m->name, rc, bv_strerror(rc),
			   bv_store_error(s));
			free(p);
			return;
		}
	}
	if (outcome < 20) {
		bv_ingest_abort(in);
		diag("step %d %s: %d ops aborted (%s)", step, m->name, nops,
		     how);
		free(p);
		return;
	}
	{
		bv_commit_opts co = { .make_rp = outcome < 70,
				      .label = "model",
				      .consistency = BV_CRASH_CONSISTENT };
		rc = bv_ingest_commit(in, &co, &rp);
	}
	if (rc < 0) {
		ok(0, "step %d %s: commit (%s): %d %s: %s", step, m->name, how,
		   rc, bv_strerror(rc), bv_store_error(s));
		free(p);
		return;
	}
	memcpy(m->head, p, MAX_SIZE);
	m->size = psize;
	m->exists = 1;
	{
		bv_replica_info ri;
		rc = bv_replica_info_get(s, m->name, &ri);
		if (rc < 0 || ri.head <= m->version)
			ok(0, "step %d %s: head version after commit: %" PRIu64
			   " (was %" PRIu64 "), rc %d", step, m->name,
			   rc < 0 ? 0 : ri.head, m->version, rc);
		else
			m->version = ri.head;
	}
	if (outcome < 70) {
		if (rp != latest_rp(m) + 1)
			ok(0, "step %d %s: commit made RP %" PRIu64
			   ", want %" PRIu64, step, m->name, rp,
			   latest_rp(m) + 1);
		add_rp(m, rp);
	} else if (rp != 0) {
		ok(0, "step %d %s: commit without make_rp returned RP %" PRIu64,
		   step, m->name, rp);
	}
	diag("step %d %s: %d ops committed (%s), size %" PRIu64 ", RP %" PRIu64,
	     step, m->name, nops, how, m->size, rp);
	free(p);
}

typedef struct rp_walk {
	const model_rep *m;
	size_t i;
} rp_walk;

static int rp_walk_cb(void *ud, const bv_rp_info *rp)
{
	rp_walk *w = ud;
	const model_rep *m = w->m;
	const model_rp *want;
	if (w->i >= m->nrps) {
		diag("%s: extra RP %" PRIu64, m->name, rp->number);
		return 1;
	}
	want = &m->rps[w->i];
	if (rp->number != want->number || rp->size != want->size ||
	    rp->version != want->version || rp->members != 1 ||
	    strcmp(rp->group, m->name) != 0) {
		diag("%s: RP %zu listed as number %" PRIu64 " size %" PRIu64
		     " version %" PRIu64 " members %u group %s, want %" PRIu64
		     " %" PRIu64 " %" PRIu64 " 1 %s",
		     m->name, w->i, rp->number, rp->size, rp->version,
		     rp->members, rp->group, want->number, want->size,
		     want->version, m->name);
		return 2;
	}
	w->i++;
	return 0;
}

/* Checks replica M against the model: info, RP list, random reads of
 * every RP and of the head, exports of the head and latest RP (of every
 * RP when FULL). */
static void check(bv_store *s, model_rep *m, const char *when, int full)
{
	bv_replica_info ri;
	int rc, good = 1;

	if (!m->exists) {
		rc = bv_replica_info_get(s, m->name, &ri);
		if (m->chunk == 0)
			ok(rc == BV_ENOTFOUND,
			   "%s: %s never committed: not found (%d)", when,
			   m->name, rc);
		return;
	}
	rc = bv_replica_info_get(s, m->name, &ri);
	if (rc < 0) {
		ok(0, "%s: %s info: %d %s", when, m->name, rc, bv_strerror(rc));
		return;
	}
	if (ri.size != m->size || ri.chunk_size != m->chunk ||
	    ri.latest_rp != latest_rp(m) || ri.head != m->version ||
	    strcmp(ri.group, m->name) != 0) {
		diag("%s info: size %" PRIu64 "/%" PRIu64 " chunk %u/%u latest "
		     "%" PRIu64 "/%" PRIu64 " head %" PRIu64 "/%" PRIu64
		     " group %s", m->name, ri.size, m->size, ri.chunk_size,
		     m->chunk, ri.latest_rp, latest_rp(m), ri.head, m->version,
		     ri.group);
		good = 0;
	}
	{
		rp_walk w = { .m = m };
		rc = bv_rp_list(s, m->name, rp_walk_cb, &w);
		if (rc != 0 || w.i != m->nrps) {
			diag("%s: RP list: %d, %zu RPs listed, want %zu",
			     m->name, rc, w.i, m->nrps);
			good = 0;
		}
	}
	if (!et_pread_eq(s, m->name, 0, m->head, m->size, &rng, 4))
		good = 0;
	if (!et_export_eq(s, m->name, 0, scratch, m->head, m->size))
		good = 0;
	for (size_t i = 0; i < m->nrps; i++) {
		model_rp *r = &m->rps[i];
		if (!et_pread_eq(s, m->name, r->number, r->img, r->size, &rng,
				 2))
			good = 0;
		if ((full || i + 1 == m->nrps) &&
		    !et_export_eq(s, m->name, r->number, scratch, r->img,
				  r->size))
			good = 0;
	}
	if (m->nrps) {
		model_rp *r = &m->rps[m->nrps - 1];
		if (!et_pread_eq(s, m->name, BV_RP_LATEST, r->img, r->size,
				 &rng, 2))
			good = 0;
	}
	ok(good, "%s: %s matches the model (%zu RPs, size %" PRIu64 "%s)",
	   when, m->name, m->nrps, m->size, full ? ", every RP exported" : "");
}

/* Replays the RP history of M into store T as a chain of bv_diff streams
 * (0..RP 1, then RP i..RP i+1 with the base renumbered to T's), checking
 * each RP in T against the model: diffs must carry data, zeros and size
 * changes alike. */
static void diff_chain(bv_store *s, bv_store *t, const model_rep *m)
{
	char *path = et_path(scratch, "diff.bvs");
	int good = 1;
	for (size_t j = 0; j < m->nrps && good; j++) {
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644), rc, slot;
		uint64_t from = j ? m->rps[j - 1].number : 0, rp = 0;
		bv_ingest *in = NULL;
		bv_commit_opts co = { .make_rp = 1 };
		if (fd < 0)
			bail_out("open diff file");
		rc = bv_diff(s, m->name, from, m->rps[j].number, j, fd, NULL,
			     NULL);
		if (rc < 0) {
			diag("diff %s %" PRIu64 "..%" PRIu64 ": %d %s: %s",
			     m->name, from, m->rps[j].number, rc,
			     bv_strerror(rc), bv_store_error(s));
			good = 0;
			close(fd);
			break;
		}
		lseek(fd, 0, SEEK_SET);
		ET_MUST(t, bv_ingest_begin(t, &in));
		slot = bv_ingest_stream(in, fd, BV_FORMAT_BVAULT, m->name, 0,
					NULL, NULL, NULL, NULL);
		rc = slot < 0 ? slot : bv_ingest_commit(in, &co, &rp);
		if (slot < 0)
			bv_ingest_abort(in);
		close(fd);
		if (rc < 0 || rp != j + 1) {
			diag("ingest of diff %s %" PRIu64 "..%" PRIu64 ": %d %s: "
			     "%s (RP %" PRIu64 ")", m->name, from,
			     m->rps[j].number, rc, bv_strerror(rc),
			     bv_store_error(t), rp);
			good = 0;
			break;
		}
		if (!et_export_eq(t, m->name, rp, scratch, m->rps[j].img,
				  m->rps[j].size)) {
			diag("%s: the copy of RP %" PRIu64 " made by diffs "
			     "differs", m->name, m->rps[j].number);
			good = 0;
		}
	}
	ok(good, "%s: a chain of %zu diffs rebuilds every RP in another store",
	   m->name, m->nrps);
	free(path);
}

int main(void)
{
	uint64_t seed = et_seed(20240611);
	const char *e = getenv("BV_STEPS");
	int steps = e && *e ? atoi(e) : 40;
	char *dir = et_tmpdir("model");
	char *store = et_path(dir, "store");
	bv_store *s;
	char when[64];

	rng.s = seed;
	scratch = dir;
	scratch_buf = malloc(MAX_SIZE);
	for (int i = 0; i < POOL_BLOCKS; i++) {
		pool[i] = malloc(POOL_BLOCK);
		if (!pool[i])
			bail_out("out of memory");
		et_fill(&rng, pool[i], POOL_BLOCK);
	}
	et_init(store, 64 << 10);
	s = et_open(store);
	is_int(bv_store_chunk_size(s), 64 << 10, "store default chunk size");

	for (int i = 0; i < NREP; i++) {
		model_rep *m = &reps[i];
		snprintf(m->name, sizeof m->name, "disk%d", i);
		m->head = calloc(1, MAX_SIZE);
		if (!m->head)
			bail_out("out of memory");
		if (i < 2) {
			m->chunk = i == 0 ? 4096 : 16384;
			m->size = rand_sectors(256 << 10, 2 << 20);
			ET_MUST(s, bv_replica_create(s, m->name, m->size,
						     m->chunk));
			m->exists = 1;
		} else {
			m->chunk = 0; /* store default, set at creation */
		}
		check(s, m, "created", 1);
	}

	for (int step = 1; step <= steps; step++) {
		for (int i = 0; i < NREP; i++) {
			model_rep *m = &reps[i];
			unsigned what = (unsigned)et_below(&rng, 100);
			int was = m->exists;
			if (what < 85) {
				session(s, m, step);
				if (!was && m->exists) {
					bv_replica_info ri;
					ET_MUST(s, bv_replica_info_get(s,
						m->name, &ri));
					is_int(ri.chunk_size, 64 << 10,
					       "%s created by ingest takes the "
					       "store's chunk size", m->name);
					m->chunk = ri.chunk_size;
				}
			} else if (what < 93 && m->exists && m->version > 0) {
				uint64_t n = 0;
				int rc = bv_rp_create(s, m->name, "manual",
						      BV_APP_CONSISTENT, &n);
				if (rc < 0 || n != latest_rp(m) + 1)
					ok(0, "step %d %s: rp_create: %d, "
					   "RP %" PRIu64 " want %" PRIu64,
					   step, m->name, rc, n,
					   latest_rp(m) + 1);
				if (rc >= 0)
					add_rp(m, n);
			}
		}
		snprintf(when, sizeof when, "step %d", step);
		for (int i = 0; i < NREP; i++)
			check(s, &reps[i], when, step % 10 == 0);
		if (step == steps / 2) {
			bv_store_close(s);
			s = et_open(store);
			for (int i = 0; i < NREP; i++)
				check(s, &reps[i], "after reopen", 1);
		}
	}
	bv_store_close(s);
	s = et_open(store);
	for (int i = 0; i < NREP; i++)
		check(s, &reps[i], "end, reopened", 1);
	{
		bv_stats st;
		int rc = bv_stats_get(s, &st);
		ok(rc == 0 && st.replicas == NREP && st.raw_bytes >= st.chunks,
		   "stats: %d replicas, %" PRIu64 " chunks, %" PRIu64
		   " raw bytes, %" PRIu64 " RPs", (int)st.replicas, st.chunks,
		   st.raw_bytes, st.rps);
	}
	{
		char *copy = et_path(dir, "copy");
		bv_store *t;
		et_init(copy, 4096);
		t = et_open(copy);
		for (int i = 0; i < NREP; i++)
			if (reps[i].exists)
				diff_chain(s, t, &reps[i]);
		bv_store_close(t);
		free(copy);
	}
	bv_store_close(s);

	for (int i = 0; i < NREP; i++) {
		for (size_t j = 0; j < reps[i].nrps; j++)
			free(reps[i].rps[j].img);
		free(reps[i].rps);
		free(reps[i].head);
	}
	for (int i = 0; i < POOL_BLOCKS; i++)
		free(pool[i]);
	free(scratch_buf);
	free(store);
	diag("seed %" PRIu64, seed);
	et_tmpdir_done(dir);
	return done_testing();
}
