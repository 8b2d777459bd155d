/*
 * engine-fault: the write-ordering invariant is tested, not assumed
 * (INVARIANTS.md I1, I2, C5). A killed process keeps its page cache, so
 * kills cannot show a missing fdatasync; this test goes through the
 * engine's own seams instead (it uses internals: the containers seen
 * through cstore.h's fault-injecting wrapper, and the index's write
 * hook).
 *
 *  1. Ordering: an ingest that makes new chunks, patches parts of old
 *     ones (reads) and commits is recorded as one sequence of container
 *     appends, flushes (durable tails) and index writes. Every chunk
 *     index entry an index write puts must name a record that a flush
 *     before it made durable, and every container tail it records must
 *     be one a flush reported. The checker is first shown a sequence
 *     that breaks the rule, and must flag it.
 *  2. Faults: for every N up to the number of calls that ingest makes,
 *     the Nth container append, flush (failing before and after the
 *     real flush), read and index write fails. Each time the ingest
 *     fails with a message, and the store, reopened, reads exactly as
 *     before (RP 1 bit for bit, no RP 2, verify clean), and then takes
 *     the same ingest. The Nth journal append and sync fail too; after
 *     every index write and journal fault, the index rebuilt from the
 *     journal alone reads as before as well. The journal's order is
 *     checked like the containers': each index write journaled first,
 *     a synced one's entry durable first.
 */
#include <pthread.h>
#include <sys/wait.h>

#include "internal.h"
#include "etest.h"

#define SIZE (20u << 20)
#define CHUNK (64u << 10)

static uint8_t *img1, *img2;

/* ---- the sequence and its checker ------------------------------------ */

enum { EV_APPEND, EV_FLUSH, EV_KV, EV_JAPPEND, EV_JSYNC };

struct ev {
	int kind, res, sync;
	uint32_t container;
	uint64_t offset, len;
	struct bv_ctail tail;
	/* EV_KV: what it names */
	uint32_t nlocs;
	struct bv_chunk_loc locs[512];
	int has_tail;
	struct bv_ctail put_tail;
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
	uint32_t tid;
	uint64_t tend;
	bv_ctail_file_parse(t, &tid, &tend);
	return id < tid || (id == tid && end <= tend);
}

/* 1 when every index write of the sequence names only durable records
 * and durable tails; else prints the first that does not. */
static int order_ok(const struct ev *e, size_t n)
{
	struct bv_ctail durable = { 0 };
	for (size_t i = 0; i < n; i++) {
		if (e[i].kind == EV_FLUSH && e[i].res == 0) {
			durable = e[i].tail;
			continue;
		}
		if (e[i].kind != EV_KV)
			continue;
		for (uint32_t j = 0; j < e[i].nlocs; j++) {
			const struct bv_chunk_loc *l = &e[i].locs[j];
			if (!tail_covers(&durable, l->container,
					 l->offset + bv_rec_size(l->stored_len))) {
				diag("event %zu: an index write names the record "
				     "at container %u offset %" PRIu64 " before "
				     "a flush made it durable", i, l->container,
				     l->offset);
				return 0;
			}
		}
		if (e[i].has_tail) {
			uint32_t id;
			uint64_t end;
			bv_ctail_file_parse(&e[i].put_tail, &id, &end);
			if (!tail_covers(&durable, id, end)) {
				diag("event %zu: the index records tail %u/%"
				     PRIu64 " before it is durable", i, id, end);
				return 0;
			}
		}
	}
	return 1;
}

/* The journal's half (FORMAT.md, "The index journal"): the kv layer's
 * hook runs first in each write, so every index write (EV_KV) must be
 * followed, before the next one, by its journal append, and a synced one
 * by a journal sync after that append: the order in which bv_kv_write
 * then hands the batch to RocksDB. */
static int jorder_ok(const struct ev *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int appended = 0, synced = 0;
		size_t k;

		if (e[i].kind != EV_KV)
			continue;
		for (k = i + 1; k < n && e[k].kind != EV_KV; k++) {
			if (e[k].kind == EV_JAPPEND)
				appended = 1;
			else if (e[k].kind == EV_JSYNC && appended)
				synced = 1;
		}
		if (!appended || (e[i].sync && !synced)) {
			diag("event %zu: an index write (%s) %s", i,
			     e[i].sync ? "synced" : "unsynced", !appended ?
			     "without its journal entry first" :
			     "before its journal entry is durable");
			return 0;
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
	if (cf == BV_CF_CHUNKS && e->nlocs < 512 &&
	    bv_chunk_loc_decode(val, vlen, &e->locs[e->nlocs]) == 0)
		e->nlocs++;
	if (cf == BV_CF_META && klen == 4 && !memcmp(key, "tail", 4) &&
	    vlen <= BV_TAIL_MAX) {
		e->has_tail = 1;
		e->put_tail.len = (uint32_t)vlen;
		memcpy(e->put_tail.b, val, vlen);
	}
	return 0;
}

/* ---- the faults -------------------------------------------------------- */

struct run {
	struct bv_fault_plan plan;
	uint64_t kv_fail_at, kv_count;
	uint64_t j_fail_at[2], j_count[2]; /* journal appends, syncs */
	struct bv_cstore *fault;
	int record;
};

static void on_event(void *ud, const struct bv_fault_event *fe)
{
	struct run *r = ud;
	if (!r->record || fe->op == BV_FAULT_READ)
		return;
	pthread_mutex_lock(&evmu);
	struct ev *e = ev_new(fe->op == BV_FAULT_APPEND ? EV_APPEND : EV_FLUSH);
	e->res = fe->res;
	e->container = fe->container;
	e->offset = fe->offset;
	e->len = fe->len;
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
	if (r->record) {
		struct ev *e = ev_new(EV_KV);
		e->sync = sync;
		bv_kv_batch_each(b, kv_entry, e);
	}
	pthread_mutex_unlock(&evmu);
	return rc;
}

static int on_journal(void *ud, int op, uint64_t lsn)
{
	struct run *r = ud;
	int rc = 0;

	(void)lsn;
	pthread_mutex_lock(&evmu);
	r->j_count[op]++;
	if (r->j_fail_at[op] && r->j_count[op] == r->j_fail_at[op])
		rc = -EIO;
	if (r->record)
		ev_new(op == 0 ? EV_JAPPEND : EV_JSYNC);
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

/* The ingest under test: new data in big writes (several batches), and
 * 4 KiB writes inside chunks RP 1 holds (each read back and patched). */
static int ingest2(bv_store *s)
{
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp = 0;
	int slot, rc;

	if ((rc = bv_ingest_begin(s, &in)) < 0)
		return rc;
	if ((slot = rc = bv_ingest_add(in, "vm1", 1, 0)) < 0)
		goto fail;
	for (uint64_t off = 0; off < SIZE; off += 2u << 20) {
		/* Every other 2 MiB: a 1 MiB run of new data, then 4 KiB
		 * patches at the start of three chunks. */
		if ((rc = bv_ingest_write(in, slot, off, img2 + off, 1u << 20)))
			goto fail;
		for (uint64_t k = 0; k < 3; k++) {
			uint64_t p = off + (1u << 20) + k * 4 * CHUNK + 8192;
			if ((rc = bv_ingest_write(in, slot, p, img2 + p, 4096)))
				goto fail;
		}
	}
	return bv_ingest_commit(in, &co, &rp);
fail:
	bv_ingest_abort(in);
	return rc;
}

static int run_cmd(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Opens COPY through a wrapper with plan R, runs the ingest, closes. */
static int faulted_ingest(const char *copy, struct run *r, char *msg,
			  size_t mlen, uint64_t counts[6])
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
	bv_journal_set_hook(s->journal, on_journal, r);
	rc = ingest2(s);
	snprintf(msg, mlen, "%s", rc < 0 ? bv_store_error(s) : "");
	if (counts) {
		for (int i = 0; i < BV_FAULT_OPS; i++)
			counts[i] = bv_cstore_fault_count(r->fault, i);
		counts[3] = r->kv_count;
		counts[4] = r->j_count[0];
		counts[5] = r->j_count[1];
	}
	bv_kv_set_hook(s->kv, NULL, NULL);
	bv_journal_set_hook(s->journal, NULL, NULL);
	bv_store_close(s);
	return rc;
}

/* A copy of COPY without its index, rebuilt from the journal, reads as
 * before the failed ingest: the journal holds what the index took. */
static int rebuilt_as_before(const char *copy, const char *root)
{
	char cmd[8192], err[1024] = "", old[256];
	char *rb = et_path(root, "rebuilt");
	bv_index_backup_info in;
	bv_replica_info ri;
	bv_store *s;
	int good;

	snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s' && "
		 "rm -rf '%s/index'", rb, copy, rb, rb);
	if (run_cmd(cmd))
		bail_out("copy");
	if (bv_index_rebuild(rb, &in, old, sizeof old, err, sizeof err)) {
		diag("rebuild: %s", err);
		free(rb);
		return 0;
	}
	s = et_open(rb);
	good = bv_replica_info_get(s, "vm1", &ri) == 0 && ri.latest_rp == 1 &&
	       et_export_eq(s, "vm1", 1, root, img1, SIZE);
	bv_store_close(s);
	free(rb);
	return good;
}

/* The store reads as before the failed ingest, and takes it now. */
static int as_before(const char *copy, const char *root, int ingest_after)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2 };
	bv_replica_info ri;
	bv_verify_result vr;
	int good;

	if (bv_store_open(copy, &o, &s) < 0) {
		diag("reopen: %s", bv_store_error(s));
		bv_store_close(s);
		return 0;
	}
	good = bv_replica_info_get(s, "vm1", &ri) == 0 && ri.latest_rp == 1 &&
	       et_export_eq(s, "vm1", 1, root, img1, SIZE);
	if (good && bv_store_verify(s, &vr) < 0) {
		diag("verify: %s", bv_store_error(s));
		good = 0;
	}
	if (good && ingest_after) {
		good = ingest2(s) == 0 &&
		       et_export_eq(s, "vm1", 2, root, img2, SIZE) &&
		       et_export_eq(s, "vm1", 1, root, img1, SIZE);
		if (!good)
			diag("the ingest after: %s", bv_store_error(s));
	}
	bv_store_close(s);
	return good;
}

int main(void)
{
	char *root = et_tmpdir("fault");
	char *tmpl = et_path(root, "tmpl"), *copy = et_path(root, "copy");
	char cmd[8192], msg[1024];
	et_rng rng = { et_seed(99) };
	uint64_t counts[6] = { 0 };

	img1 = malloc(SIZE);
	img2 = malloc(SIZE);
	if (!img1 || !img2)
		bail_out("out of memory");
	et_fill(&rng, img1, SIZE);
	memcpy(img2, img1, SIZE);
	for (uint64_t off = 0; off < SIZE; off += 2u << 20) {
		et_fill(&rng, img2 + off, 1u << 20);
		for (uint64_t k = 0; k < 3; k++)
			et_fill(&rng, img2 + off + (1u << 20) + k * 4 * CHUNK +
				8192, 4096);
	}
	et_init(tmpl, CHUNK);
	{
		bv_store *s = et_open(tmpl);
		bv_ingest *in = NULL;
		bv_commit_opts co = { .make_rp = 1 };
		uint64_t rp;
		int slot;
		ET_MUST(s, bv_ingest_begin(s, &in));
		ET_MUST(s, slot = bv_ingest_add(in, "vm1", 0, SIZE));
		ET_MUST(s, bv_ingest_write(in, slot, 0, img1, SIZE));
		ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		bv_store_close(s);
	}

	/* 1. the ordering check, first on a sequence that breaks it */
	{
		struct ev bad[2];
		memset(bad, 0, sizeof bad);
		bad[0].kind = EV_KV;
		bad[0].nlocs = 1;
		bad[0].locs[0] = (struct bv_chunk_loc){ 1, 4096, 100, 100, 0 };
		bad[1].kind = EV_FLUSH;
		bv_ctail_file(&bad[1].tail, 1, 8192);
		ok(!order_ok(bad, 2), "the checker flags an index write that "
		   "names a record before its flush");
	}
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", copy, tmpl,
		 copy);
	if (run_cmd(cmd))
		bail_out("copy");
	struct run rec = { .record = 1 };
	int rc = faulted_ingest(copy, &rec, msg, sizeof msg, counts);
	is_int(rc, 0, "the ingest runs through the wrapper: %s", msg);
	diag("%" PRIu64 " appends, %" PRIu64 " flushes, %" PRIu64 " reads, %"
	     PRIu64 " index writes; %zu events", counts[0], counts[1],
	     counts[2], counts[3], nev);
	size_t nkv = 0, nlocs = 0;
	for (size_t i = 0; i < nev; i++)
		if (evs[i].kind == EV_KV) {
			nkv++;
			nlocs += evs[i].nlocs;
		}
	ok(counts[0] >= 2 && counts[1] >= 2 && counts[2] >= 1 && nlocs > 0,
	   "it appends, flushes, reads and indexes (%zu chunk entries in %zu "
	   "index writes)", nlocs, nkv);
	ok(order_ok(evs, nev), "no index write names a record or a tail "
	   "before a flush made it durable");
	{
		struct ev jbad[3];
		memset(jbad, 0, sizeof jbad);
		jbad[0].kind = EV_KV;
		jbad[0].sync = 1;
		jbad[1].kind = EV_JSYNC;
		jbad[2].kind = EV_JAPPEND;
		ok(!jorder_ok(jbad, 3), "the journal checker flags a synced "
		   "index write whose entry is not durable before it");
	}
	ok(jorder_ok(evs, nev), "every index write is journaled first, and "
	   "a synced one's entry is durable first (%" PRIu64 " appends, %"
	   PRIu64 " syncs)", counts[4], counts[5]);
	{
		size_t last_kv = 0;
		for (size_t i = 0; i < nev; i++)
			if (evs[i].kind == EV_KV)
				last_kv = i;
		ok(nkv > 0 && evs[last_kv].sync,
		   "the last write is the synced commit");
	}

	/* 2. every fault */
	static const char *const what[] = { "container appends", "flushes",
					    "reads", "index writes",
					    "journal appends", "journal syncs" };
	for (int op = 0; op < 7; op++) {
		int kind = op == 4 ? 1 : op >= 5 ? op - 1 : op;
		uint64_t n = counts[kind];
		int all_failed = 1, all_before = 1;
		for (uint64_t k = 1; k <= n; k++) {
			struct run r = { 0 };
			snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'",
				 copy, tmpl, copy);
			if (run_cmd(cmd))
				bail_out("copy");
			if (kind == 3)
				r.kv_fail_at = k;
			else if (kind >= 4)
				r.j_fail_at[kind - 4] = k;
			else
				r.plan.fail_at[kind] = k;
			r.plan.after = op == 4;
			rc = faulted_ingest(copy, &r, msg, sizeof msg, NULL);
			if (kind >= 3 && !rebuilt_as_before(copy, root)) {
				diag("%s, call %" PRIu64 ": the rebuilt index "
				     "differs", what[kind], k);
				all_before = 0;
			}
			if (rc >= 0 || !msg[0]) {
				diag("%s, call %" PRIu64 ": the ingest did not fail "
				     "(%d)", what[kind], k, rc);
				all_failed = 0;
			}
			if (!as_before(copy, root, k == n)) {
				diag("%s, call %" PRIu64 " of %" PRIu64 ": the store "
				     "changed (ingest: %s)", what[kind], k, n,
				     msg);
				all_before = 0;
			}
		}
		ok(all_failed, "each of the %" PRIu64 " %s%s failed makes the "
		   "ingest fail with a message", n, what[kind],
		   op == 4 ? " (after the real flush)" : "");
		ok(all_before, "each time the store reads exactly as before, "
		   "and then takes the ingest");
	}
	free(evs);
	free(img1);
	free(img2);
	free(tmpl);
	free(copy);
	et_tmpdir_done(root);
	return done_testing();
}
