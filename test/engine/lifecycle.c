/*
 * engine-lifecycle: removing RPs and replicas frees exactly what no
 * retained version reads (INVARIANTS.md 11). It reaches internals (the
 * maps and births families, the index's write hook, the removal's step
 * hook) to compare the index with a model.
 *
 *  1. Model: random histories (seeds) of writes, commits with and
 *     without RPs, aborted sessions, rp rm (forced or not), replica rm,
 *     group add, protection. After every step every remaining RP and
 *     head reads bit for bit as the model's, and the map entries left
 *     are exactly the model's: the model applies the rule from its
 *     definition (an entry goes when born after P with its next newer
 *     one at or before N), by a walk of all its entries, not through
 *     births. It also checks that nothing live is lost (every entry a
 *     retained version reads is there) and that after a removal no
 *     entry born between its neighbours is left that the next one does
 *     not read (nothing leaks), and that births keys are exactly the
 *     maps entries.
 *  2. Order: the index writes of an rp rm, recorded through the write
 *     hook: the intent is synced before the first entry is deleted and
 *     removed, synced, after the last. The checker first sees a bad
 *     order.
 *  3. Crash: a child runs a series of rp rm (or a prune) on a store
 *     with many RPs and is killed (SIGKILL) at a random moment, 24 times; the store,
 *     reopened writable (which finishes the removal), reads every RP
 *     left bit for bit, and its entries are exactly the model's for the
 *     removals done.
 *  4. Readers: an in-process reader opened before rp rm keeps reading
 *     its RP; a read-only handle (another process's, a RocksDB
 *     secondary) opened before exports it bit for bit after.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <rocksdb/c.h>

#include "internal.h"
#include "view.h"
#include "etest.h"

#define CHUNK 4096u
#define NCHUNK 24u
#define SIZE (CHUNK * NCHUNK)
#define MAXV 200
#define MAXR 8
#define MAXRP 400

/* ---- the model ------------------------------------------------------ */

struct mrep {
	int live;
	char name[16];
	uint64_t rid;
	int group;          /* index into groups */
	uint64_t head;
	/* written[c][v]: chunk c was written at version v (1: data, 2:
	 * zeros); present[c][v]: the model's map holds that entry. */
	uint8_t written[NCHUNK][MAXV];
	uint8_t present[NCHUNK][MAXV];
	uint64_t births_from; /* versions below have no births keys */
};

struct mrp {
	int live;
	uint64_t number;
	int n;
	int rep[MAXR];
	uint64_t ver[MAXR];
	int protected_;
};

struct mgroup {
	int live;
	char name[16];
	int members[MAXR], n;
	struct mrp rps[MAXRP];
	int nrps;           /* numbers 1..nrps made */
};

struct model {
	struct mrep r[MAXR];
	int nr;
	struct mgroup g[MAXR];
	int ng;
	int leak_checks, removals;
};

static uint64_t chunk_seed(int rep, unsigned c, uint64_t v)
{
	return ((uint64_t)rep << 48) ^ ((uint64_t)c << 32) ^ v ^
	       0x5bd1e995ull;
}

static void chunk_data(int rep, unsigned c, uint64_t v, uint8_t *out)
{
	et_rng g = { chunk_seed(rep, c, v) };
	et_fill(&g, out, CHUNK);
}

/* The version of chunk C that version S of replica R reads: 0 none. */
static uint64_t reads_at(const struct mrep *r, unsigned c, uint64_t s)
{
	for (uint64_t v = s; v > 0; v--)
		if (r->written[c][v])
			return v;
	return 0;
}

static void image_at(const struct model *m, int ri, uint64_t s, uint8_t *img)
{
	const struct mrep *r = &m->r[ri];
	for (unsigned c = 0; c < NCHUNK; c++) {
		uint64_t v = reads_at(r, c, s);
		if (v && r->written[c][v] == 1)
			chunk_data(ri, c, v, img + (size_t)c * CHUNK);
		else
			memset(img + (size_t)c * CHUNK, 0, CHUNK);
	}
}

/* Retained versions of replica RI (RP SKIP of its group excluded:
 * number 0 excludes none) into RET[v] = 1. */
static void retained(const struct model *m, int ri, uint64_t skip,
		     uint8_t ret[MAXV])
{
	const struct mrep *r = &m->r[ri];
	const struct mgroup *g = &m->g[r->group];
	memset(ret, 0, MAXV);
	ret[r->head] = 1;
	for (int i = 0; i < g->nrps; i++) {
		const struct mrp *p = &g->rps[i];
		if (!p->live || p->number == skip)
			continue;
		for (int j = 0; j < p->n; j++)
			if (p->rep[j] == ri)
				ret[p->ver[j]] = 1;
	}
}

/* The rule, from its definition: removing V of RI with neighbours P, N
 * drops every present entry born after P whose next newer present entry
 * is at or before N. */
static void model_free(struct model *m, int ri, uint64_t v, uint64_t skip)
{
	struct mrep *r = &m->r[ri];
	uint8_t ret[MAXV];
	uint64_t p = 0, n = UINT64_MAX;
	uint8_t drop[MAXV];

	retained(m, ri, skip, ret);
	if (ret[v])
		return;
	for (uint64_t x = 0; x < MAXV; x++) {
		if (!ret[x])
			continue;
		if (x < v && x > p)
			p = x;
		if (x > v && x < n)
			n = x;
	}
	if (n == UINT64_MAX)
		return;
	for (unsigned c = 0; c < NCHUNK; c++) {
		memset(drop, 0, sizeof drop);
		for (uint64_t b = p + 1; b < MAXV; b++) {
			if (!r->present[c][b])
				continue;
			uint64_t d = b + 1;
			while (d < MAXV && !r->present[c][d])
				d++;
			if (d < MAXV && d <= n)
				drop[b] = 1;
		}
		for (uint64_t b = 0; b < MAXV; b++)
			if (drop[b])
				r->present[c][b] = 0;
	}
	/* Nothing leaks: what is left born between P and N is read by N. */
	for (unsigned c = 0; c < NCHUNK; c++)
		for (uint64_t b = p + 1; b < n && b < MAXV; b++)
			if (r->present[c][b] && reads_at(r, c, n) != b) {
				diag("model: %s chunk %u version %" PRIu64
				     " left between %" PRIu64 " and %" PRIu64,
				     r->name, c, b, p, n);
				m->leak_checks = -1000000;
			}
	m->leak_checks++;
}

/* ---- comparing the store with the model ------------------------------ */

static int read_eq(bv_store *s, const char *name, uint64_t rp,
		   const uint8_t *want)
{
	static uint8_t got[SIZE];
	bv_reader *rd = NULL;
	int rc = bv_reader_open(s, name, rp, &rd);
	if (rc < 0) {
		diag("open %s@%" PRIu64 ": %s", name, rp, bv_store_error(s));
		return 0;
	}
	if (bv_reader_size(rd) != SIZE ||
	    (rc = bv_reader_pread(rd, got, SIZE, 0)) < 0) {
		diag("read %s@%" PRIu64 ": %d %s", name, rp, rc,
		     bv_store_error(s));
		bv_reader_close(rd);
		return 0;
	}
	bv_reader_close(rd);
	int64_t d = et_first_diff(got, want, SIZE);
	if (d >= 0)
		diag("%s@%" PRIu64 ": differs at byte %" PRId64, name, rp, d);
	return d < 0;
}

/* Every RP and head bit for bit. */
static int check_reads(bv_store *s, const struct model *m)
{
	static uint8_t img[SIZE];
	int good = 1;

	for (int ri = 0; ri < m->nr; ri++) {
		const struct mrep *r = &m->r[ri];
		if (!r->live)
			continue;
		image_at(m, ri, r->head, img);
		good &= read_eq(s, r->name, 0, img);
		const struct mgroup *g = &m->g[r->group];
		for (int i = 0; i < g->nrps; i++) {
			const struct mrp *p = &g->rps[i];
			if (!p->live)
				continue;
			for (int j = 0; j < p->n; j++)
				if (p->rep[j] == ri) {
					image_at(m, ri, p->ver[j], img);
					good &= read_eq(s, r->name, p->number,
							img);
				}
		}
	}
	return good;
}

static int rep_of_rid(const struct model *m, uint64_t rid)
{
	for (int i = 0; i < m->nr; i++)
		if (m->r[i].live && m->r[i].rid == rid)
			return i;
	return -1;
}

/* The maps family is exactly the model's entries, births exactly the
 * maps keys, and every entry a retained version reads is there. */
static int check_entries(bv_store *s, const struct model *m)
{
	static uint8_t seen[MAXR][NCHUNK][MAXV];
	struct bv_kv_iter *it = NULL;
	int good = 1, nbad = 0;

	memset(seen, 0, sizeof seen);
	if (bv_kv_iter_new(s->kv, BV_CF_MAPS, "", 0, NULL, 0, &it))
		return 0;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		int ri = rep_of_rid(m, bv_get_be64(k));
		uint64_t c = bv_get_be64(k + 8), v = ~bv_get_be64(k + 16);
		if (ri < 0 || c >= NCHUNK || v >= MAXV) {
			if (nbad++ < 5)
				diag("entry of rid %" PRIu64 " chunk %" PRIu64
				     " version %" PRIu64 " the model does not "
				     "have", bv_get_be64(k), c, v);
			good = 0;
			continue;
		}
		seen[ri][c][v] |= 1;
	}
	bv_kv_iter_free(it);
	if (bv_kv_iter_new(s->kv, BV_CF_BIRTHS, "", 0, NULL, 0, &it))
		return 0;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		int ri = rep_of_rid(m, bv_get_be64(k));
		uint64_t v = bv_get_be64(k + 8), c = bv_get_be64(k + 16);
		if (ri < 0 || c >= NCHUNK || v >= MAXV) {
			if (nbad++ < 5)
				diag("births key of rid %" PRIu64 " without a "
				     "replica", bv_get_be64(k));
			good = 0;
			continue;
		}
		seen[ri][c][v] |= 2;
	}
	bv_kv_iter_free(it);
	for (int ri = 0; ri < m->nr; ri++) {
		const struct mrep *r = &m->r[ri];
		uint8_t ret[MAXV];
		if (!r->live)
			continue;
		retained(m, ri, 0, ret);
		for (unsigned c = 0; c < NCHUNK; c++)
			for (uint64_t v = 0; v < MAXV; v++) {
				int want = !r->present[c][v] ? 0 :
					   v < r->births_from ? 1 : 3;
				if (seen[ri][c][v] != want) {
					if (nbad++ < 5)
						diag("%s chunk %u version %"
						     PRIu64 ": index has %d, "
						     "model %d (1 maps, 2 "
						     "births)", r->name, c, v,
						     seen[ri][c][v], want);
					good = 0;
				}
			}
		for (uint64_t x = 0; x < MAXV; x++) {
			if (!ret[x])
				continue;
			for (unsigned c = 0; c < NCHUNK; c++) {
				uint64_t b = reads_at(r, c, x);
				if (b && !r->present[c][b]) {
					if (nbad++ < 5)
						diag("model lost %s chunk %u "
						     "version %" PRIu64
						     " that %" PRIu64 " reads",
						     r->name, c, b, x);
					good = 0;
				}
			}
		}
	}
	return good;
}

/* ---- steps ---------------------------------------------------------------- */

static struct mgroup *group_of(struct model *m, int ri)
{
	return &m->g[m->r[ri].group];
}

static uint64_t latest_rp(const struct mgroup *g)
{
	for (int i = g->nrps; i-- > 0;)
		if (g->rps[i].live)
			return g->rps[i].number;
	return 0;
}

/* An RP of group G from every member's head. */
static void model_rp(struct model *m, struct mgroup *g)
{
	struct mrp *p = &g->rps[g->nrps++];
	memset(p, 0, sizeof *p);
	p->live = 1;
	p->number = (uint64_t)g->nrps;
	for (int i = 0; i < g->n; i++) {
		p->rep[p->n] = g->members[i];
		p->ver[p->n++] = m->r[g->members[i]].head;
	}
}

/* Chunks a commit writes are drawn from [0, hot) (NCHUNK: all) most of
 * the time: overlapping writes are what removals free. */
static unsigned hot = 8;

/* A session over some members of group GI: random chunks. */
static int step_commit(bv_store *s, struct model *m, et_rng *rng, int gi,
		       int make_rp, int abort_it)
{
	static uint8_t buf[CHUNK];
	struct mgroup *g = &m->g[gi];
	bv_ingest *in = NULL;
	int slots[MAXR], who[MAXR], nw = 0, rc;
	uint64_t rp = 0;
	uint8_t touched[MAXR][NCHUNK];

	if (g->nrps >= MAXRP - 1)
		return 0;
	memset(touched, 0, sizeof touched);
	ET_MUST(s, bv_ingest_begin(s, &in));
	for (int i = 0; i < g->n; i++) {
		int ri = g->members[i];
		if (m->r[ri].head >= MAXV - 2)
			continue;
		if (nw && et_below(rng, 2))
			continue;
		/* The base is the group's latest RP number, also after
		 * the newest RP was removed (numbers are never reused). */
		rc = bv_ingest_add(in, m->r[ri].name, (uint64_t)g->nrps, 0);
		if (rc < 0) {
			diag("add %s: %s", m->r[ri].name, bv_store_error(s));
			bv_ingest_abort(in);
			return -1;
		}
		slots[nw] = rc;
		who[nw++] = ri;
	}
	if (!nw) {
		bv_ingest_abort(in);
		return 0;
	}
	for (int k = 0; k < nw; k++) {
		int ri = who[k];
		uint64_t v = m->r[ri].head + 1;
		unsigned nchg = (unsigned)et_range(rng, 1, 4);
		for (unsigned j = 0; j < nchg; j++) {
			unsigned c = (unsigned)et_below(rng,
				et_below(rng, 4) ? hot : NCHUNK);
			int zero = et_below(rng, 8) == 0;
			if (zero)
				memset(buf, 0, CHUNK);
			else
				chunk_data(ri, c, v, buf);
			ET_MUST(s, bv_ingest_write(in, slots[k], (uint64_t)c *
						   CHUNK, buf, CHUNK));
			touched[k][c] = zero ? 2 : 1;
		}
	}
	if (abort_it) {
		bv_ingest_abort(in);
		return 0;
	}
	bv_commit_opts o = { .make_rp = make_rp };
	rc = bv_ingest_commit(in, &o, &rp);
	if (rc < 0) {
		diag("commit: %s", bv_store_error(s));
		return -1;
	}
	for (int k = 0; k < nw; k++) {
		struct mrep *r = &m->r[who[k]];
		r->head++;
		for (unsigned c = 0; c < NCHUNK; c++)
			if (touched[k][c]) {
				r->written[c][r->head] = touched[k][c];
				r->present[c][r->head] = 1;
			}
	}
	if (make_rp)
		model_rp(m, g);
	return 0;
}

/* The model's side of removing RP P of group G. */
static void model_rp_remove(struct model *m, struct mrp *p)
{
	for (int j = 0; j < p->n; j++)
		model_free(m, p->rep[j], p->ver[j], p->number);
	p->live = 0;
	m->removals++;
}

static int step_rp_rm(bv_store *s, struct model *m, et_rng *rng, int gi)
{
	struct mgroup *g = &m->g[gi];
	int live[MAXRP], n = 0, rc;

	for (int i = 0; i < g->nrps; i++)
		if (g->rps[i].live)
			live[n++] = i;
	if (!n)
		return 0;
	struct mrp *p = &g->rps[live[et_below(rng, (uint64_t)n)]];
	int newest = p->number == latest_rp(g);
	int force = et_below(rng, 2);
	rc = bv_rp_remove(s, g->name, p->number, force);
	int want_ok = !p->protected_ && (!newest || force);
	if (want_ok != (rc == 0)) {
		diag("rp rm %s@%" PRIu64 " (newest %d force %d protected %d): "
		     "%d %s", g->name, p->number, newest, force, p->protected_,
		     rc, bv_store_error(s));
		return -1;
	}
	if (rc == 0)
		model_rp_remove(m, p);
	else if (rc != BV_EBUSY)
		return -1;
	return 0;
}

static int step_replica_rm(bv_store *s, struct model *m, et_rng *rng)
{
	int live[MAXR], n = 0;
	for (int i = 0; i < m->nr; i++)
		if (m->r[i].live)
			live[n++] = i;
	if (n <= 2)
		return 0;
	int ri = live[et_below(rng, (uint64_t)n)];
	struct mgroup *g = group_of(m, ri);
	int prot = 0;
	for (int i = 0; i < g->nrps; i++)
		for (int j = 0; j < g->rps[i].n; j++)
			if (g->rps[i].live && g->rps[i].rep[j] == ri &&
			    g->rps[i].protected_)
				prot = 1;
	int rc = bv_replica_remove(s, m->r[ri].name);
	if (prot) {
		if (rc != BV_EBUSY) {
			diag("replica rm of a protected RP's member: %d", rc);
			return -1;
		}
		return 0;
	}
	if (rc < 0) {
		diag("replica rm %s: %s", m->r[ri].name, bv_store_error(s));
		return -1;
	}
	m->r[ri].live = 0;
	memset(m->r[ri].present, 0, sizeof m->r[ri].present);
	for (int i = 0; i < g->nrps; i++) {
		struct mrp *p = &g->rps[i];
		int k = 0;
		for (int j = 0; j < p->n; j++)
			if (p->rep[j] != ri) {
				p->rep[k] = p->rep[j];
				p->ver[k++] = p->ver[j];
			}
		p->n = k;
		if (!k)
			p->live = 0;
	}
	int k = 0;
	for (int j = 0; j < g->n; j++)
		if (g->members[j] != ri)
			g->members[k++] = g->members[j];
	g->n = k;
	if (!k)
		g->live = 0;
	return 0;
}

/* A new replica, added to a group that has RPs. */
static int step_group_add(bv_store *s, struct model *m, et_rng *rng)
{
	if (m->nr == MAXR)
		return 0;
	int gi = (int)et_below(rng, (uint64_t)m->ng);
	if (!m->g[gi].live || m->g[gi].n >= MAXR)
		return 0;
	int ri = m->nr++;
	struct mrep *r = &m->r[ri];
	memset(r, 0, sizeof *r);
	snprintf(r->name, sizeof r->name, "r%d", ri);
	ET_MUST(s, bv_replica_create(s, r->name, SIZE, CHUNK));
	const char *names[1] = { r->name };
	ET_MUST(s, bv_group_add(s, m->g[gi].name, names, 1));
	struct bv_rrec rr;
	bv_rrec_get(s, r->name, &rr);
	r->rid = rr.rid;
	r->live = 1;
	r->group = gi;
	m->g[gi].members[m->g[gi].n++] = ri;
	return 0;
}

static int step_protect(bv_store *s, struct model *m, et_rng *rng, int gi)
{
	struct mgroup *g = &m->g[gi];
	if (!g->nrps)
		return 0;
	struct mrp *p = &g->rps[et_below(rng, (uint64_t)g->nrps)];
	if (!p->live || p->protected_)
		return 0;
	ET_MUST(s, bv_rp_protect(s, g->name, p->number, BV_LOCK_FOREVER));
	p->protected_ = 1;
	/* A lock never shortens. */
	int rc = bv_rp_protect(s, g->name, p->number, time(NULL) + 3600);
	return rc == BV_EINVAL ? 0 : -1;
}

static void model_setup(bv_store *s, struct model *m)
{
	memset(m, 0, sizeof *m);
	/* g0: a group of two; r2 alone in its own group. */
	for (int i = 0; i < 3; i++) {
		struct mrep *r = &m->r[i];
		snprintf(r->name, sizeof r->name, "r%d", i);
		ET_MUST(s, bv_replica_create(s, r->name, SIZE, CHUNK));
		r->live = 1;
	}
	const char *two[2] = { "r0", "r1" };
	ET_MUST(s, bv_group_create(s, "g0", two, 2));
	m->nr = 3;
	m->ng = 2;
	snprintf(m->g[0].name, sizeof m->g[0].name, "g0");
	m->g[0].live = 1;
	m->g[0].n = 2;
	m->g[0].members[0] = 0;
	m->g[0].members[1] = 1;
	snprintf(m->g[1].name, sizeof m->g[1].name, "r2");
	m->g[1].live = 1;
	m->g[1].n = 1;
	m->g[1].members[0] = 2;
	m->r[2].group = 1;
	for (int i = 0; i < 3; i++) {
		struct bv_rrec rr;
		bv_rrec_get(s, m->r[i].name, &rr);
		m->r[i].rid = rr.rid;
	}
}

static void test_model(uint64_t seed, int steps)
{
	char *dir = et_tmpdir("life-model");
	static struct model m;
	et_rng rng = { seed };
	int good = 1, reads = 1, exact = 1, st;
	bv_store *s;

	et_init(dir, CHUNK);
	s = et_open(dir);
	model_setup(s, &m);
	for (st = 0; st < steps && good; st++) {
		int gi = (int)et_below(&rng, (uint64_t)m.ng);
		uint64_t op = et_below(&rng, 100);
		int rc = 0;
		if (!m.g[gi].live)
			continue;
		if (getenv("BV_LIFE_TRACE"))
			diag("step %d: group %s op %" PRIu64, st, m.g[gi].name,
			     op);
		if (op < 45)
			rc = step_commit(s, &m, &rng, gi, op < 38, 0);
		else if (op < 50)
			rc = step_commit(s, &m, &rng, gi, 0, 1);
		else if (op < 80)
			rc = step_rp_rm(s, &m, &rng, gi);
		else if (op < 84)
			rc = step_replica_rm(s, &m, &rng);
		else if (op < 88)
			rc = step_group_add(s, &m, &rng);
		else if (op < 90)
			rc = step_protect(s, &m, &rng, gi);
		else {
			ET_MUST(s, bv_rp_create(s, m.g[gi].name, NULL, 0,
						NULL));
			model_rp(&m, &m.g[gi]);
		}
		if (rc) {
			diag("seed %" PRIu64 " step %d failed", seed, st);
			good = 0;
		}
		if (!check_reads(s, &m)) {
			diag("seed %" PRIu64 " step %d: reads differ", seed, st);
			reads = good = 0;
		}
		if (!check_entries(s, &m)) {
			diag("seed %" PRIu64 " step %d: entries differ", seed,
			     st);
			exact = good = 0;
		}
		if (m.leak_checks < 0)
			good = exact = 0;
		/* Now and then, a reopen: the recovery path runs and must
		 * change nothing. */
		if (et_below(&rng, 16) == 0) {
			bv_store_close(s);
			s = et_open(dir);
		}
	}
	ok(good && reads && exact, "seed %" PRIu64 ": %d steps, %d removals: "
	   "every RP and head reads as the model's, map entries exactly "
	   "the model's", seed, st, m.removals);
	bv_store_close(s);
	et_rm_rf(dir);
	et_tmpdir_done(dir);
}

/* ---- order ----------------------------------------------------------- */

struct rec {
	int n;
	int kind[4096]; /* 1 synced intent put, 2 map delete batch, 3 synced
			 * intent delete, 4 unsynced intent put or delete */
};

static int on_entry(void *ud, int put, enum bv_cf cf, const void *key,
		    size_t klen, const void *val, size_t vlen)
{
	int *k = ud;
	(void)val;
	(void)vlen;
	if (cf == BV_CF_META && klen == 12 && !memcmp(key, "del/", 4))
		*k |= put ? 1 : 4;
	if (cf == BV_CF_MAPS && !put)
		*k |= 2;
	return 0;
}

static int on_kv(void *ud, const struct bv_kv_batch *b, int sync)
{
	struct rec *r = ud;
	int k = 0;
	bv_kv_batch_each(b, on_entry, &k);
	if (!k || r->n == 4096)
		return 0;
	if ((k & 1) && (k & 2))
		r->kind[r->n++] = 99; /* intent and deletes together */
	else if (k & 1)
		r->kind[r->n++] = sync ? 1 : 4;
	else if (k & 4)
		r->kind[r->n++] = (k & 2) ? (sync ? 3 : 4) : (sync ? 3 : 4);
	else
		r->kind[r->n++] = 2;
	return 0;
}

/* 1 when the recorded writes keep the order: a synced intent, then
 * deletes, then the synced end; for every removal. */
static int order_good(const struct rec *r)
{
	int state = 0; /* 0 no intent, 1 intent durable */
	for (int i = 0; i < r->n; i++) {
		switch (r->kind[i]) {
		case 1:
			if (state)
				return 0;
			state = 1;
			break;
		case 2:
			if (!state)
				return 0;
			break;
		case 3:
			if (!state)
				return 0;
			state = 0;
			break;
		default:
			return 0;
		}
	}
	return state == 0 && r->n > 0;
}

static void test_order(void)
{
	char *dir = et_tmpdir("life-order");
	static struct model m;
	static struct rec r;
	et_rng rng = { 7 };
	bv_store *s;

	struct rec bad = { 3, { 2, 1, 3 } };
	ok(!order_good(&bad), "order checker: deletes before the intent "
	   "are caught");
	struct rec bad2 = { 3, { 4, 2, 3 } };
	ok(!order_good(&bad2), "order checker: an unsynced intent is caught");

	et_init(dir, CHUNK);
	s = et_open(dir);
	model_setup(s, &m);
	hot = 3;
	for (int i = 0; i < 12; i++)
		step_commit(s, &m, &rng, 1, 1, 0);
	hot = 8;
	setenv("BV_LIFE_BATCH", "3", 1);
	bv_kv_set_hook(s->kv, on_kv, &r);
	for (uint64_t rp = 2; rp <= 10; rp += 2) {
		ET_MUST(s, bv_rp_remove(s, "r2", rp, 0));
		model_rp_remove(&m, &m.g[1].rps[rp - 1]);
	}
	bv_kv_set_hook(s->kv, NULL, NULL);
	unsetenv("BV_LIFE_BATCH");
	int deletes = 0;
	for (int i = 0; i < r.n; i++)
		deletes += r.kind[i] == 2;
	ok(order_good(&r) && deletes >= 3, "rp rm: intent synced before the "
	   "first map delete, removed synced after the last (%d writes, %d "
	   "delete batches)", r.n, deletes);
	/* The entries checker, shown a live entry gone and a stray one. */
	ok(check_entries(s, &m), "entries checker: the store as the model");
	{
		struct bv_kv_batch *b = NULL;
		uint64_t c = 0, v = 0;
		for (c = 0; c < NCHUNK && !v; c++)
			for (uint64_t x = 1; x < MAXV && !v; x++)
				if (m.r[2].present[c][x])
					v = x;
		c--;
		bv_kv_batch_new(&b);
		bv_map_delete(b, m.r[2].rid, c, v);
		bv_kv_write(s->kv, b, 1);
		ok(!check_entries(s, &m), "entries checker: a lost entry is "
		   "caught");
		bv_kv_batch_clear(b);
		bv_map_put(b, m.r[2].rid, c, v, NULL, 0);
		bv_map_put(b, m.r[2].rid, NCHUNK - 1, 1, NULL, 0);
		bv_kv_write(s->kv, b, 1);
		ok(!check_entries(s, &m), "entries checker: a leaked entry is "
		   "caught");
		bv_kv_batch_free(b);
	}
	bv_store_close(s);
	et_rm_rf(dir);
	et_tmpdir_done(dir);
}

/* ---- crash ----------------------------------------------------------- */

static int slow_step(const char *what)
{
	(void)what;
	usleep((useconds_t)(rand() % 2000));
	return 0;
}

static int quiet_cb(void *ud, const bv_prune_item *it)
{
	(void)ud;
	(void)it;
	return 0;
}

static void test_crash(int rounds)
{
	static struct model m;
	int good = 1, mid = 0;

	for (int round = 0; round < rounds; round++) {
		char *dir = et_tmpdir("life-crash");
		et_rng rng = { 1000 + (uint64_t)round };
		uint64_t order[64];
		int norder = 0;
		bv_store *s;

		et_init(dir, CHUNK);
		s = et_open(dir);
		model_setup(s, &m);
		hot = 4;
		for (int i = 0; i < 40; i++)
			step_commit(s, &m, &rng, 1, 1, 0);
		hot = 8;
		struct mgroup *g = &m.g[1];
		/* A random order of removals, not the newest. */
		for (int i = 0; i < g->nrps - 1; i++)
			order[norder++] = g->rps[i].number;
		for (int i = norder - 1; i > 0; i--) {
			int j = (int)et_below(&rng, (uint64_t)i + 1);
			uint64_t t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		norder = 30;
		/* Odd rounds prune instead (keep-last 10): it removes RPs 1
		 * to 30, oldest first. */
		if (round % 2)
			for (int i = 0; i < norder; i++)
				order[i] = (uint64_t)i + 1;
		bv_store_close(s);
		fflush(stdout);
		int pfd[2];
		if (pipe(pfd))
			bail_out("pipe");
		pid_t pid = fork();
		if (pid == 0) {
			srand((unsigned)round);
			setenv("BV_LIFE_BATCH", "4", 1);
			bv_life_step_hook = slow_step;
			bv_store *c = NULL;
			bv_open_opts o = { .workers = 1 };
			if (bv_store_open(dir, &o, &c))
				_exit(3);
			if (write(pfd[1], "o", 1) != 1)
				_exit(5);
			if (round % 2) {
				bv_policy pol = { .keep_last = 10 };
				if (bv_policy_set(c, "r2", &pol) ||
				    bv_prune(c, "r2", 0, quiet_cb, NULL))
					_exit(4);
				_exit(0);
			}
			for (int i = 0; i < norder; i++)
				if (bv_rp_remove(c, "r2", order[i], 0))
					_exit(4);
			_exit(0);
		}
		char byte;
		close(pfd[1]);
		if (read(pfd[0], &byte, 1) == 1)
			usleep((useconds_t)et_below(&rng, 150000));
		close(pfd[0]);
		kill(pid, SIGKILL);
		int stw;
		waitpid(pid, &stw, 0);
		if (WIFEXITED(stw) && WEXITSTATUS(stw) != 0) {
			diag("round %d: child failed (%d)", round,
			     WEXITSTATUS(stw));
			good = 0;
		}
		s = et_open(dir);
		/* The removals done are a prefix of the order: those whose
		 * RP record is gone. */
		int done = 0;
		for (int i = 0; i < norder; i++) {
			bv_rp_info dummy;
			(void)dummy;
			struct bv_rprec *pr = malloc(sizeof *pr);
			struct bv_grec gr;
			bv_grec_get(s, "r2", &gr);
			int gone = bv_rprec_get(s, gr.gid, order[i], pr) ==
				   ST_ENOTFOUND;
			free(pr);
			if (!gone)
				break;
			done++;
		}
		if (done > 0 && done < norder)
			mid++;
		for (int i = 0; i < done; i++)
			for (int j = 0; j < g->nrps; j++)
				if (g->rps[j].number == order[i])
					model_rp_remove(&m, &g->rps[j]);
		if (!check_reads(s, &m) || !check_entries(s, &m)) {
			diag("round %d: after %d removals and a kill, the store "
			     "differs from the model", round, done);
			good = 0;
		}
		bv_store_close(s);
		et_rm_rf(dir);
		et_tmpdir_done(dir);
	}
	ok(good, "%d kills during rp rm (even rounds) and prune (odd): every RP left reads bit for bit and "
	   "the entries are exactly the model's after the replay (%d cut "
	   "between removals or inside one)", rounds, mid);
}

/* ---- policies ------------------------------------------------------------ */

struct pl {
	int keep[64];
	char reason[64][96];
	int n;
};

static int pl_cb(void *ud, const bv_prune_item *it)
{
	struct pl *p = ud;
	if (it->number < 64) {
		p->keep[it->number] = it->keep;
		snprintf(p->reason[it->number], 96, "%s", it->reason);
	}
	p->n++;
	return 0;
}

static int64_t utc(int y, int mo, int d, int h)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h };
	return (int64_t)timegm(&tm);
}

/* RPs of replica "p" at TIMES (oldest first), in a fresh store. */
static bv_store *policy_store(const char *dir, const int64_t *times, int n)
{
	static uint8_t buf[CHUNK];
	bv_store *s;

	et_init(dir, CHUNK);
	s = et_open(dir);
	ET_MUST(s, bv_replica_create(s, "p", SIZE, CHUNK));
	for (int i = 0; i < n; i++) {
		bv_ingest *in;
		bv_commit_opts o = { .make_rp = 1, .time = times[i] };
		memset(buf, i + 1, sizeof buf);
		ET_MUST(s, bv_ingest_begin(s, &in));
		int slot = bv_ingest_add(in, "p", (uint64_t)i, 0);
		ET_MUST(s, slot);
		ET_MUST(s, bv_ingest_write(in, slot, 0, buf, CHUNK));
		ET_MUST(s, bv_ingest_commit(in, &o, NULL));
	}
	return s;
}

/* KEPT: the RP numbers a policy must keep, 0-terminated. */
static int kept_is(const struct pl *p, int n, const int *kept)
{
	int want[64] = { 0 };
	for (int i = 0; kept[i]; i++)
		want[kept[i]] = 1;
	for (int i = 1; i <= n; i++)
		if (p->keep[i] != want[i]) {
			diag("RP %d: keep %d, want %d (%s)", i, p->keep[i],
			     want[i], p->reason[i]);
			return 0;
		}
	return p->n == n;
}

static void test_policy(void)
{
	char *dir = et_tmpdir("life-policy");
	int64_t t[64];
	struct pl p;
	bv_store *s;

	/* 1. Daily RPs at noon, 2026-11-01 .. 11-30 (RP k on day k);
	 * --keep-daily 7 --keep-weekly 5 (restic's documented example,
	 * which there keeps 7 dailies and 3 more weeklies; PBS counts only
	 * weeks the dailies do not cover: W49 and W48 are, so it keeps the
	 * newest of W47, W46, W45 and W44, the list then ending). */
	for (int d = 1; d <= 30; d++)
		t[d - 1] = utc(2026, 11, d, 12);
	s = policy_store(dir, t, 30);
	bv_policy pol = { .keep_daily = 7, .keep_weekly = 5 };
	ok(bv_prune(s, "p", 1, pl_cb, &p) == BV_EINVAL,
	   "prune of a group without a policy: BV_EINVAL");
	bv_policy empty = { 0 };
	ok(bv_policy_set(s, "p", &empty) == BV_EINVAL,
	   "an empty policy is refused");
	ET_MUST(s, bv_policy_set(s, "p", &pol));
	memset(&p, 0, sizeof p);
	ET_MUST(s, bv_prune(s, "p", 1, pl_cb, &p));
	static const int k1[] = { 30, 29, 28, 27, 26, 25, 24, 22, 15, 8, 1, 0 };
	ok(kept_is(&p, 30, k1) && !strcmp(p.reason[30], "daily 2026-11-30") &&
	   !strcmp(p.reason[22], "weekly 2026-W47") &&
	   !strcmp(p.reason[1], "weekly 2026-W44"),
	   "keep-daily 7 keep-weekly 5: 7 dailies, then the weeks not covered "
	   "(PBS, not restic's 7 + 3)");
	ET_MUST(s, bv_prune(s, "p", 0, pl_cb, &p));
	{
		struct bv_grec g;
		struct bv_rprec *r = malloc(sizeof *r);
		int left = 0, right = 1;
		bv_grec_get(s, "p", &g);
		for (int i = 1; i <= 30; i++) {
			int there = bv_rprec_get(s, g.gid, (uint64_t)i, r) == 0;
			int want = 0;
			for (int j = 0; k1[j]; j++)
				want |= k1[j] == i;
			left += there;
			right &= there == want;
		}
		free(r);
		ok(right && left == 11, "prune removed the 19 others (%d left)",
		   left);
	}
	bv_store_close(s);
	et_rm_rf(dir);

	/* 2. keep-last 3 keep-monthly 2: last 3, then the months other than
	 * November: 10-25 (10-05 is in a month kept), 09-20; 08-15 is past
	 * the count. 3: with 11-04 protected, last takes 11-02 instead. */
	static const int days[9][2] = { { 8, 15 }, { 9, 10 }, { 9, 20 },
					{ 10, 5 }, { 10, 25 }, { 11, 2 },
					{ 11, 3 }, { 11, 4 }, { 11, 5 } };
	for (int i = 0; i < 9; i++)
		t[i] = utc(2026, days[i][0], days[i][1], 8);
	s = policy_store(dir, t, 9);
	bv_policy pol2 = { .keep_last = 3, .keep_monthly = 2 };
	ET_MUST(s, bv_policy_set(s, "p", &pol2));
	memset(&p, 0, sizeof p);
	ET_MUST(s, bv_prune(s, "p", 1, pl_cb, &p));
	static const int k2[] = { 9, 8, 7, 5, 3, 0 };
	ok(kept_is(&p, 9, k2) && !strcmp(p.reason[5], "monthly 2026-10"),
	   "keep-last 3 keep-monthly 2: last 3, then new months");
	ET_MUST(s, bv_rp_protect(s, "p", 8, BV_LOCK_FOREVER));
	memset(&p, 0, sizeof p);
	ET_MUST(s, bv_prune(s, "p", 1, pl_cb, &p));
	static const int k3[] = { 9, 8, 7, 6, 5, 3, 0 };
	ok(kept_is(&p, 9, k3) && !strncmp(p.reason[8], "protected", 9),
	   "a protected RP is kept and counts for no rule");
	bv_store_close(s);
	et_rm_rf(dir);

	/* 4. max-age 10 alone: what is younger is kept, the latest always. */
	int64_t now = (int64_t)time(NULL);
	for (int i = 0; i < 6; i++)
		/* 30 .. 5 days old, and an hour: never on the edge. */
		t[i] = now - (int64_t)(30 - 5 * i) * 86400 - 3600;
	s = policy_store(dir, t, 6);
	bv_policy pol4 = { .max_age_days = 10 };
	ET_MUST(s, bv_policy_set(s, "p", &pol4));
	memset(&p, 0, sizeof p);
	ET_MUST(s, bv_prune(s, "p", 1, pl_cb, &p));
	static const int k4[] = { 6, 0 };
	ok(kept_is(&p, 6, k4) && !strncmp(p.reason[5], "older than", 10),
	   "max-age 10: the RPs of 30 to 10 days go (the one of 5 days "
	   "stays)");
	/* And with a count: keep-last 5 max-age 10 removes what is old. */
	bv_policy pol5 = { .keep_last = 5, .max_age_days = 10 };
	ET_MUST(s, bv_policy_set(s, "p", &pol5));
	memset(&p, 0, sizeof p);
	ET_MUST(s, bv_prune(s, "p", 1, pl_cb, &p));
	ok(kept_is(&p, 6, k4), "keep-last 5 max-age 10: max-age removes what "
	   "keep-last kept");
	bv_store_close(s);
	et_rm_rf(dir);
	et_tmpdir_done(dir);
}

/* ---- a store from before births ------------------------------------- */

/* Makes the store at DIR look as it was before births: the family
 * dropped, the "bf/" records and the marker gone. */
static void make_pre_births(const char *dir)
{
	const char *names[5] = { "default", "meta", "chunks", "maps",
				 "births" };
	const rocksdb_options_t *opts[5];
	rocksdb_column_family_handle_t *cf[5];
	rocksdb_options_t *o = rocksdb_options_create();
	char *path = et_path(dir, "index"), *err = NULL;
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();

	for (int i = 0; i < 5; i++)
		opts[i] = o;
	rocksdb_t *db = rocksdb_open_column_families(o, path, 5, names, opts,
						     cf, &err);
	if (err)
		bail_out("opening the index by hand");
	rocksdb_drop_column_family(db, cf[4], &err);
	rocksdb_writeoptions_set_sync(wo, 1);
	rocksdb_delete_range_cf(db, wo, cf[1], "bf/", 3, "bf0", 3, &err);
	rocksdb_delete_cf(db, wo, cf[1], "bfstart", 7, &err);
	if (err)
		bail_out("rewriting the index by hand");
	for (int i = 0; i < 5; i++)
		rocksdb_column_family_handle_destroy(cf[i]);
	rocksdb_close(db);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_options_destroy(o);
	free(path);
}

static void test_pre_births(void)
{
	char *dir = et_tmpdir("life-old");
	static struct model m;
	et_rng rng = { 31337 };
	bv_store *s;
	int good = 1;

	et_init(dir, CHUNK);
	s = et_open(dir);
	model_setup(s, &m);
	hot = 4;
	for (int i = 0; i < 16; i++)
		step_commit(s, &m, &rng, (int)et_below(&rng, 2), 1, 0);
	bv_store_close(s);
	make_pre_births(dir);
	for (int i = 0; i < m.nr; i++)
		m.r[i].births_from = m.r[i].head + 1;

	bv_open_opts o = { .read_only = 1 };
	s = NULL;
	ET_MUST(NULL, bv_store_open(dir, &o, &s));
	ok(check_reads(s, &m), "a store without births opens read-only, and "
	   "every RP reads as before");
	bv_store_close(s);
	s = et_open(dir);
	ok(check_entries(s, &m), "a writable open makes the births family "
	   "(empty) and keeps the old entries");
	/* Removals below the first version with births walk the map;
	 * later ones go through births; both by the same rule. */
	for (int i = 0; i < 40 && good; i++) {
		int gi = (int)et_below(&rng, 2);
		if (et_below(&rng, 3) == 0)
			good &= step_commit(s, &m, &rng, gi, 1, 0) == 0;
		else
			good &= step_rp_rm(s, &m, &rng, gi) == 0;
		good &= check_reads(s, &m) && check_entries(s, &m);
	}
	hot = 8;
	ok(good && m.leak_checks >= 0, "removals across the versions from "
	   "before births (map walk) and after (births): reads and entries "
	   "as the model's (%d removals)", m.removals);
	bv_store_close(s);
	et_rm_rf(dir);
	et_tmpdir_done(dir);
}

/* ---- readers --------------------------------------------------------- */

static void test_readers(void)
{
	char *dir = et_tmpdir("life-readers");
	static struct model m;
	static uint8_t img[SIZE], got[SIZE];
	et_rng rng = { 99 };
	bv_reader *rd = NULL, *held = NULL;
	bv_store *s, *ro = NULL;

	et_init(dir, CHUNK);
	s = et_open(dir);
	model_setup(s, &m);
	for (int i = 0; i < 6; i++)
		step_commit(s, &m, &rng, 1, 1, 0);
	image_at(&m, 2, m.g[1].rps[2].ver[0], img);
	ET_MUST(s, bv_reader_open(s, "r2", 3, &rd));
	bv_open_opts o = { .read_only = 1 };
	ET_MUST(NULL, bv_store_open(dir, &o, &ro));
	ET_MUST(s, bv_rp_remove(s, "r2", 3, 0));
	model_rp_remove(&m, &m.g[1].rps[2]);
	ok(check_entries(s, &m), "rp rm 3 freed its entries");
	ET_MUST(s, bv_reader_pread(rd, got, SIZE, 0));
	ok(et_first_diff(got, img, SIZE) < 0, "a reader opened before rp rm "
	   "still reads that RP bit for bit (its snapshot)");
	bv_reader_close(rd);
	ok(bv_reader_open(s, "r2", 3, &rd) == BV_ENOTFOUND,
	   "a new reader of the removed RP: BV_ENOTFOUND");
	ok(et_export_eq(ro, "r2", 3, dir, img, SIZE), "a read-only handle "
	   "opened before rp rm exports that RP bit for bit");
	bv_store_close(ro);
	/* Then an RP whose chunks no other RP has (U), overwritten by the
	 * next (W), a reader held open on U, U removed and GC run: the
	 * reader gets a clear error naming the replica, or U's bytes (never
	 * other bytes). */
	bv_replica_info ri;
	uint64_t u = 0, w = 0;
	for (int k = 0; k < 2; k++) {
		bv_ingest *in = NULL;
		ET_MUST(s, bv_replica_info_get(s, "r2", &ri));
		ET_MUST(s, bv_ingest_begin(s, &in));
		int slot = bv_ingest_add(in, "r2", ri.latest_rp, 0);
		if (slot < 0)
			bail_out(bv_store_error(s));
		et_fill(&rng, got, 4 * CHUNK);
		ET_MUST(s, bv_ingest_write(in, slot, 0, got, 4 * CHUNK));
		bv_commit_opts co = { .make_rp = 1 };
		ET_MUST(s, bv_ingest_commit(in, &co, k ? &w : &u));
		if (!k)
			memcpy(img, got, 4 * CHUNK);
	}
	ET_MUST(s, bv_reader_open(s, "r2", u, &held));
	ET_MUST(s, bv_rp_remove(s, "r2", u, 0));
	bv_gc_opts go = { .threshold = 100 };
	bv_gc_report gr;
	ET_MUST(s, bv_gc(s, &go, &gr));
	memset(got, 0xa5, 4 * CHUNK);
	int prc = bv_reader_pread(held, got, 4 * CHUNK, 0);
	const char *why = bv_store_error(s);
	if (prc < 0)
		diag("the held reader after gc: %s", why);
	ok(gr.dead_chunks >= 4, "gc after rp rm %" PRIu64 " (RP %" PRIu64
	   " overwrote its 4 chunks) deletes them (%" PRIu64 " dead)", u, w,
	   gr.dead_chunks);
	ok(prc == 0 ? memcmp(got, img, 4 * CHUNK) == 0 :
		      prc == BV_ENOTFOUND && strstr(why, "r2") &&
		      strstr(why, "was removed while this reader"),
	   "a reader held open on the removed RP through gc %s",
	   prc == 0 ? "reads it bit for bit" : "fails: BV_ENOTFOUND, naming "
	   "the replica and saying the RP was removed");
	bv_reader_close(held);
	bv_store_close(s);
	et_rm_rf(dir);
	et_tmpdir_done(dir);
}

int main(void)
{
	uint64_t seed = et_seed(1);
	/* Three seeds in the suite (tools/test.sh gives the sanitizer build
	 * one); BV_LIFE_SEEDS=50 for a long run. */
	int nseeds = getenv("BV_LIFE_SEEDS") ? atoi(getenv("BV_LIFE_SEEDS"))
					     : 3;

	for (int i = 0; i < nseeds; i++)
		test_model(seed + (uint64_t)i, 80);
	test_order();
	test_policy();
	test_pre_births();
	test_crash(getenv("BV_LIFE_KILLS") ? atoi(getenv("BV_LIFE_KILLS"))
					   : 24);
	test_readers();
	return done_testing();
}
