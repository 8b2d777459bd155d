/*
 * engine-gc-threads: GC beside ingest on threads of one process
 * (INVARIANTS.md 5), over many rounds.
 *
 * Chunk contents come from a small pool of patterns that moves on a
 * little each round, so that sessions keep deduplicating against chunks
 * that are garbage at that moment (left by aborted sessions, or written
 * and overwritten by a session), and GC keeps finding garbage that a
 * session is about to need again. Each round a writer thread runs two
 * sessions (one commits an RP, one aborts), each writing its replica's
 * whole disk twice (the first write's batch is indexed before the second
 * replaces it), while a GC thread runs GC after GC until the writer is
 * done. After every round every RP of both replicas is read bit for bit.
 * Every fifth round a third thread verifies the whole store meanwhile
 * (read only: nothing marked), which must find nothing wrong: verify and
 * GC in one process exclude each other, so no container verify listed
 * goes away under its scan.
 * A last GC on its own must then leave nothing above the threshold.
 *
 * BV_GC_ROUNDS sets the rounds (default 100; 30 under TSan, which is
 * about tenfold slower); BV_SEED replays the contents, not the
 * interleaving.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "gctest.h"

#define POOL 40

static bv_store *S;
static struct gt_model M;
static atomic_int writer_done;
static int writer_rc, gc_rc, gc_runs, verify_rc, verify_runs;
static uint64_t gc_dead;

/* Pattern ID's chunk: compressible in part. */
static void pattern(uint64_t id, uint8_t *p)
{
	et_rng g = { M.seed ^ (id * 0x2545f4914f6cdd1dull) };
	et_fill(&g, p, GT_CHUNK);
	memset(p + GT_CHUNK / 2, (int)(id & 0xff), GT_CHUNK / 4);
}

/* Changes 2 to 12 chunks of IMG to patterns of the pool at ROUND. */
static void churn(et_rng *g, int round, uint8_t *img)
{
	int n = (int)et_range(g, 2, 12);
	for (int i = 0; i < n; i++)
		pattern((uint64_t)round + et_below(g, POOL),
			img + et_below(g, GT_DISK / GT_CHUNK) * GT_CHUNK);
}

/* One session of replica R: a first write that churns more, then the
 * image; commits an RP when COMMIT. */
static int session(et_rng *g, int round, int r, int commit)
{
	int k = M.nrp[r] + 1;
	uint8_t *img = malloc(GT_DISK), *first = malloc(GT_DISK);
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp = 0;
	int slot, rc;

	if (!img || !first)
		bail_out("out of memory");
	if (k == 1)
		memset(img, 0, GT_DISK);
	else
		memcpy(img, M.img[r][k - 1], GT_DISK);
	memcpy(first, img, GT_DISK);
	churn(g, round, first);
	churn(g, round, first);
	churn(g, round, img);
	if ((rc = bv_ingest_begin(S, &in)) < 0)
		goto out;
	if ((slot = rc = bv_ingest_add(in, gt_names[r], (uint64_t)k - 1,
				       k == 1 ? GT_DISK : 0)) < 0 ||
	    (rc = bv_ingest_write(in, slot, 0, first, GT_DISK)) < 0 ||
	    (rc = bv_ingest_write(in, slot, 0, img, GT_DISK)) < 0 || !commit) {
		bv_ingest_abort(in);
		goto out;
	}
	if ((rc = bv_ingest_commit(in, &co, &rp)) < 0)
		goto out;
	M.img[r][k] = img;
	M.nrp[r] = k;
	img = NULL;
out:
	free(img);
	free(first);
	return rc;
}

struct round {
	int n;
	et_rng g;
};

static void *writer_main(void *arg)
{
	struct round *rd = arg;
	int r = rd->n % 2;
	writer_rc = session(&rd->g, rd->n, r, 1);
	if (writer_rc >= 0)
		writer_rc = session(&rd->g, rd->n, 1 - r, 0);
	if (writer_rc < 0)
		diag("round %d: session: %s", rd->n, bv_store_error(S));
	atomic_store(&writer_done, 1);
	return NULL;
}

static void *gc_main(void *arg)
{
	(void)arg;
	do {
		bv_gc_report g;
		int rc = bv_gc(S, NULL, &g);
		if (rc < 0) {
			diag("gc: %s", bv_store_error(S));
			gc_rc = rc;
			break;
		}
		gc_runs++;
		gc_dead += g.dead_chunks;
	} while (!atomic_load(&writer_done));
	return NULL;
}

static void *verify_main(void *arg)
{
	(void)arg;
	do {
		bv_verify_opts o = { .read_only = 1 };
		bv_verify_result res;
		int rc = bv_store_verify_opts(S, &o, NULL, NULL, &res);
		if (rc < 0) {
			diag("verify beside ingest and gc: %s",
			     bv_store_error(S));
			verify_rc = rc;
			break;
		}
		verify_runs++;
	} while (!atomic_load(&writer_done));
	return NULL;
}

int main(void)
{
	setenv("BV_CONTAINER_MAX", GT_CMAX, 1);
	int rounds = 100;
#if defined(__SANITIZE_THREAD__)
	rounds = 30;
#endif
	const char *e = getenv("BV_GC_ROUNDS");
	if (e && *e)
		rounds = atoi(e);
	M.seed = et_seed(0x7467);
	char *scratch = et_tmpdir("gc-threads");
	char *dir = et_path(scratch, "store");
	et_init(dir, GT_CHUNK);
	S = et_open(dir);

	struct round rd = { 0, { M.seed } };
	int bad_round = -1;
	for (rd.n = 0; rd.n < rounds; rd.n++) {
		pthread_t w, g, v;
		int verifying = rd.n % 5 == 4;
		atomic_store(&writer_done, 0);
		pthread_create(&g, NULL, gc_main, NULL);
		if (verifying)
			pthread_create(&v, NULL, verify_main, NULL);
		pthread_create(&w, NULL, writer_main, &rd);
		pthread_join(w, NULL);
		pthread_join(g, NULL);
		if (verifying)
			pthread_join(v, NULL);
		if (writer_rc < 0 || gc_rc < 0 || verify_rc < 0 ||
		    !gt_check(S, &M)) {
			bad_round = rd.n;
			break;
		}
	}
	ok(bad_round < 0, "%d rounds of sessions (dedup hits against garbage, "
	   "aborts) beside GC: every RP bit for bit after each round",
	   rounds);
	diag("%d gc runs, %" PRIu64 " chunks deleted", gc_runs, gc_dead);
	ok(gc_dead > 0, "GC found garbage while sessions ran");
	ok(verify_runs > 0 && verify_rc == 0, "%d whole-store verifies beside "
	   "them found nothing wrong", verify_runs);
	bv_store_close(S);

	S = et_open(dir);
	int runs = gt_gc_until_clean(S, 6, NULL);
	ok(runs > 0, "GC alone then finishes (%d runs)", runs);
	ok(gt_check(S, &M), "every RP bit for bit after a reopen and GC");
	bv_store_close(S);
	gt_model_free(&M);
	free(dir);
	et_tmpdir_done(scratch);
	return done_testing();
}
