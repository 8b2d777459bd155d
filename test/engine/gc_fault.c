/*
 * engine-gc-fault: GC's order of syncs and commits, and I/O failures at
 * every container operation and index write it makes (INVARIANTS.md 1,
 * 5, 12), through cstore.h's fault-injecting wrapper and the index's
 * write hook.
 *
 *  1. Ordering: a GC run that deletes, copies, repoints, retires and
 *     removes is recorded as one sequence of container appends, flushes,
 *     seals, removes and index writes. Every chunk index entry a write
 *     puts names a record that a flush before it made durable, and the
 *     write is synced; a container is removed only after a synced write
 *     recorded it retired, and after the last repoint. The checker is
 *     first shown sequences that break each rule, and must flag them.
 *  2. Faults: for every N up to the number of calls the run makes, the
 *     Nth append, flush (before and after the real one), read, seal,
 *     remove and index write fails. The run fails with a message; the
 *     store, reopened, reads every RP bit for bit; GC then runs to the
 *     end, and a dry run finds nothing left above the threshold.
 */
#include <pthread.h>
#include <sys/wait.h>

#include "gctest.h"

static struct gt_model M;
static char *scratch, *tmpl, *copy;

enum { EV_APPEND, EV_FLUSH, EV_SEAL, EV_REMOVE, EV_KV };

struct ev {
	int kind, res, sync;
	uint32_t container;
	struct bv_ctail tail;
	uint32_t nlocs;
	struct bv_chunk_loc locs[64];
	uint32_t nretired;
	uint32_t retired[64];
};

static struct ev *evs;
static size_t nev, evcap;
static pthread_mutex_t evmu = PTHREAD_MUTEX_INITIALIZER;

static struct ev *ev_new(int kind)
{
	if (nev == evcap) {
		evcap = evcap ? evcap * 2 : 256;
		evs = realloc(evs, evcap * sizeof *evs);
		if (!evs)
			bail_out("out of memory");
	}
	memset(&evs[nev], 0, sizeof evs[nev]);
	evs[nev].kind = kind;
	return &evs[nev++];
}

static int tail_covers(const struct bv_ctail *t, uint32_t id, uint64_t end)
{
	uint32_t tid = 0;
	uint64_t tend = 0;
	bv_ctail_file_parse(t, &tid, &tend);
	return id < tid || (id == tid && end <= tend);
}

/* 1 when the sequence keeps GC's order; else says what breaks it. */
static int order_ok(const struct ev *e, size_t n)
{
	struct bv_ctail durable = { 0 };
	size_t last_repoint = 0;
	for (size_t i = 0; i < n; i++)
		if (e[i].kind == EV_KV && e[i].nlocs)
			last_repoint = i;
	for (size_t i = 0; i < n; i++) {
		if (e[i].kind == EV_FLUSH && e[i].res == 0)
			durable = e[i].tail;
		if (e[i].kind == EV_KV && e[i].nlocs) {
			if (!e[i].sync) {
				diag("event %zu: a repoint is not synced", i);
				return 0;
			}
			for (uint32_t j = 0; j < e[i].nlocs; j++) {
				const struct bv_chunk_loc *l = &e[i].locs[j];
				if (!tail_covers(&durable, l->container,
						 l->offset +
						 bv_rec_size(l->stored_len))) {
					diag("event %zu: a repoint names the "
					     "record at %u/%" PRIu64 " before a "
					     "flush made it durable", i,
					     l->container, l->offset);
					return 0;
				}
			}
		}
		if (e[i].kind == EV_REMOVE && e[i].res == 0) {
			int retired = 0;
			for (size_t k = 0; k < i && !retired; k++)
				for (uint32_t j = 0; j < e[k].nretired; j++)
					if (e[k].kind == EV_KV && e[k].sync &&
					    e[k].retired[j] == e[i].container)
						retired = 1;
			if (!retired) {
				diag("event %zu: container %u is removed "
				     "before a synced write retired it", i,
				     e[i].container);
				return 0;
			}
			if (i < last_repoint) {
				diag("event %zu: container %u is removed before "
				     "the last repoint", i, e[i].container);
				return 0;
			}
		}
	}
	return 1;
}

static int kv_entry(void *ud, int put, enum bv_cf cf, const void *key,
		    size_t klen, const void *val, size_t vlen)
{
	struct ev *e = ud;
	if (!put)
		return 0;
	if (cf == BV_CF_CHUNKS && e->nlocs < 64 &&
	    bv_chunk_loc_decode(val, vlen, &e->locs[e->nlocs]) == 0)
		e->nlocs++;
	if (cf == BV_CF_META && klen == 9 && !memcmp(key, "gc/r/", 5) &&
	    e->nretired < 64)
		e->retired[e->nretired++] = bv_get_be32((const uint8_t *)key + 5);
	return 0;
}

struct run {
	struct bv_fault_plan plan;
	uint64_t kv_fail_at, kv_count;
	struct bv_cstore *fault;
	int record;
};

static void on_event(void *ud, const struct bv_fault_event *fe)
{
	struct run *r = ud;
	static const int kind[] = { EV_APPEND, EV_FLUSH, -1, EV_REMOVE,
				    EV_SEAL };
	if (!r->record || kind[fe->op] < 0)
		return;
	pthread_mutex_lock(&evmu);
	struct ev *e = ev_new(kind[fe->op]);
	e->res = fe->res;
	e->container = fe->container;
	e->tail = fe->tail;
	pthread_mutex_unlock(&evmu);
}

static int on_kv(void *ud, const struct bv_kv_batch *b, int sync)
{
	struct run *r = ud;
	int rc = 0;
	pthread_mutex_lock(&evmu);
	r->kv_count++;
	if (r->kv_fail_at && r->kv_count == r->kv_fail_at)
		rc = -EIO;
	if (r->record && !rc) {
		struct ev *e = ev_new(EV_KV);
		e->sync = sync;
		bv_kv_batch_each(b, kv_entry, e);
	}
	pthread_mutex_unlock(&evmu);
	return rc;
}

static int wrap(void *ud, struct bv_cstore *inner, struct bv_cstore **out)
{
	struct run *r = ud;
	int rc = bv_cstore_fault_new(inner, &r->plan, out);
	r->fault = *out;
	return rc;
}

static int run_cmd(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void fresh_copy(void)
{
	char cmd[8192];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", copy, tmpl,
		 copy);
	if (run_cmd(cmd))
		bail_out("copy");
}

/* One GC of the copy through plan R; the counts of each op after. */
static int faulted_gc(struct run *r, char *msg, size_t mlen,
		      uint64_t counts[BV_FAULT_OPS + 1], bv_gc_report *g)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2 };
	int rc;
	r->plan.log = on_event;
	r->plan.ud = r;
	rc = bv_store_open_wrapped(copy, &o, wrap, r, &s);
	if (rc < 0) {
		snprintf(msg, mlen, "open: %s", bv_store_error(s));
		bv_store_close(s);
		return rc;
	}
	bv_kv_set_hook(s->kv, on_kv, r);
	rc = bv_gc(s, NULL, g);
	snprintf(msg, mlen, "%s", rc < 0 ? bv_store_error(s) : "");
	if (counts) {
		for (int i = 0; i < BV_FAULT_OPS; i++)
			counts[i] = bv_cstore_fault_count(r->fault, i);
		counts[BV_FAULT_OPS] = r->kv_count;
	}
	bv_kv_set_hook(s->kv, NULL, NULL);
	bv_store_close(s);
	return rc;
}

/* After a fault: the copy reads right, and GC finishes the job. */
static int recovers(const char *what, uint64_t k)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2 };
	bv_gc_report g;
	bv_gc_opts dry = { .dry_run = 1 };
	if (bv_store_open(copy, &o, &s) < 0) {
		diag("%s %" PRIu64 ": reopen: %s", what, k, bv_store_error(s));
		bv_store_close(s);
		return 0;
	}
	int good = gt_check(s, &M);
	if (good && gt_gc_until_clean(s, 6, NULL) < 0)
		good = 0;
	if (good && (bv_gc(s, &dry, &g) < 0 || g.dead_chunks ||
		     g.containers_rewritten)) {
		diag("%s %" PRIu64 ": garbage left after the runs", what, k);
		good = 0;
	}
	if (good)
		good = gt_check(s, &M);
	bv_store_close(s);
	return good;
}

static void build_template(void)
{
	et_init(tmpl, GT_CHUNK);
	bv_store *s = et_open(tmpl);
	for (int r = 0; r < 3; r++) {
		ET_MUST(s, gt_commit(s, &M, 0));
		ET_MUST(s, gt_commit(s, &M, 1));
		ET_MUST(s, gt_garbage(s, &M, r % 2, 10 + (uint64_t)r, 1));
		ET_MUST(s, gt_garbage(s, &M, (r + 1) % 2, 20 + (uint64_t)r, 0));
	}
	bv_store_close(s);
}

int main(void)
{
	setenv("BV_CONTAINER_MAX", GT_CMAX, 1);
	M.seed = et_seed(0x6766);
	scratch = et_tmpdir("gc-fault");
	tmpl = et_path(scratch, "tmpl");
	copy = et_path(scratch, "copy");
	build_template();

	/* 1. the checker first sees bad sequences */
	{
		struct ev bad[3];
		memset(bad, 0, sizeof bad);
		bad[0].kind = EV_APPEND;
		bad[1].kind = EV_KV;
		bad[1].sync = 1;
		bad[1].nlocs = 1;
		bad[1].locs[0] = (struct bv_chunk_loc){ .container = 9,
			.offset = 4096, .stored_len = 100, .raw_len = 16384,
			.codec = 1 };
		bad[2].kind = EV_FLUSH;
		bv_ctail_file(&bad[2].tail, 9, 8192);
		ok(!order_ok(bad, 3), "the checker flags a repoint before "
		   "the flush of its copy");
		bad[1] = bad[2];
		bad[2].kind = EV_KV;
		bad[2].sync = 0;
		bad[2].nlocs = 1;
		bad[2].locs[0] = (struct bv_chunk_loc){ .container = 9,
			.offset = 4096, .stored_len = 100, .raw_len = 16384,
			.codec = 1 };
		ok(!order_ok(bad, 3), "the checker flags an unsynced repoint");
		memset(bad, 0, sizeof bad);
		bad[0].kind = EV_REMOVE;
		bad[0].container = 3;
		bad[1].kind = EV_KV;
		bad[1].sync = 1;
		bad[1].nretired = 1;
		bad[1].retired[0] = 3;
		ok(!order_ok(bad, 2), "the checker flags a remove before the "
		   "retire");
	}

	/* the real sequence */
	uint64_t counts[BV_FAULT_OPS + 1] = { 0 };
	char msg[2048];
	bv_gc_report g;
	{
		struct run r = { .record = 1 };
		fresh_copy();
		ok(faulted_gc(&r, msg, sizeof msg, counts, &g) == 0,
		   "a recorded GC runs");
		gt_report("recorded", &g);
		diag("%" PRIu64 " appends, %" PRIu64 " flushes, %" PRIu64
		     " reads, %" PRIu64 " removes, %" PRIu64 " seals, %" PRIu64
		     " index writes; %zu events", counts[0], counts[1],
		     counts[2], counts[3], counts[4], counts[5], nev);
		ok(g.containers_rewritten > 0 && g.containers_removed > 0 &&
		   g.dead_chunks > 0, "it deletes, copies and removes");
		ok(order_ok(evs, nev), "copies are flushed before their "
		   "repoint, repoints synced, removes after a synced retire");
		ok(recovers("recorded", 0), "and the copy reads right after");
	}

	/* 2. every fault */
	static const struct {
		int kind, after;
		const char *what;
	} ops[] = {
		{ BV_FAULT_APPEND, 0, "container append" },
		{ BV_FAULT_FLUSH, 0, "flush" },
		{ BV_FAULT_FLUSH, 1, "flush (after the real one)" },
		{ BV_FAULT_READ, 0, "read" },
		{ BV_FAULT_SEAL, 0, "seal" },
		{ BV_FAULT_REMOVE, 0, "remove" },
		{ BV_FAULT_OPS, 0, "index write" },
	};
	for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
		uint64_t n = counts[ops[o].kind];
		int all_failed = 1, all_good = 1;
		for (uint64_t k = 1; k <= n; k++) {
			struct run r = { 0 };
			fresh_copy();
			if (ops[o].kind == BV_FAULT_OPS)
				r.kv_fail_at = k;
			else
				r.plan.fail_at[ops[o].kind] = k;
			r.plan.after = ops[o].after;
			int rc = faulted_gc(&r, msg, sizeof msg, NULL, &g);
			if (rc >= 0 || !msg[0]) {
				diag("%s %" PRIu64 ": the run did not fail "
				     "with a message (%d)", ops[o].what, k, rc);
				all_failed = 0;
			}
			if (k == 1)
				diag("%s 1: %s", ops[o].what, msg);
			if (!recovers(ops[o].what, k))
				all_good = 0;
		}
		ok(n > 0 && all_failed, "each of the %" PRIu64 " %ss failing "
		   "fails the run, with a message", n, ops[o].what);
		ok(all_good, "after each, every RP reads bit for bit and GC "
		   "finishes the job");
	}
	free(evs);
	gt_model_free(&M);
	et_rm_rf(copy);
	free(copy);
	free(tmpl);
	et_tmpdir_done(scratch);
	return done_testing();
}
