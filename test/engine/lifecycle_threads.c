/*
 * engine-lifecycle-threads: rp rm, prune and replica rm beside ingest
 * sessions of the same process (as bvaultd runs them), INVARIANTS.md 11.
 * A writer thread commits versions of replica w, each with an RP; a
 * remover thread removes its older RPs (rp rm, prune) meanwhile, and a
 * third removes and makes replicas of their own. Afterwards every RP left
 * reads what its commit wrote, bit for bit, every entry a retained
 * version reads is there, and the store reopens and verifies clean.
 * Runs under ThreadSanitizer too (tools/test.sh's list).
 */
#include <pthread.h>

#include "internal.h"
#include "etest.h"

#define CHUNK 4096u
#define NCHUNK 16u
#define SIZE (CHUNK * NCHUNK)
#define COMMITS 40

static bv_store *s;
/* chunk c of version v: written at the newest version <= v that wrote
 * it; wrote[v][c] is 1 when version v wrote chunk c (seed v * 100 + c). */
static uint8_t wrote[COMMITS + 2][NCHUNK];
static _Atomic int writer_done;
static _Atomic int failures;

static void data(uint64_t v, unsigned c, uint8_t *out)
{
	et_rng g = { v * 1000 + c + 7 };
	et_fill(&g, out, CHUNK);
}

static void *writer(void *arg)
{
	static uint8_t buf[CHUNK];
	et_rng rng = { 5 };
	(void)arg;
	for (uint64_t v = 1; v <= COMMITS; v++) {
		bv_ingest *in;
		uint64_t rp;
		int slot;
		if (bv_ingest_begin(s, &in)) {
			failures++;
			break;
		}
		slot = bv_ingest_add(in, "w", v - 1, 0);
		if (slot < 0) {
			diag("add: %s", bv_store_error(s));
			bv_ingest_abort(in);
			failures++;
			break;
		}
		for (unsigned k = 0; k < (v == 1 ? NCHUNK : 3); k++) {
			unsigned c = v == 1 ? k : (unsigned)et_below(&rng, 6);
			data(v, c, buf);
			wrote[v][c] = 1;
			bv_ingest_write(in, slot, (uint64_t)c * CHUNK, buf, CHUNK);
		}
		bv_commit_opts o = { .make_rp = 1 };
		if (bv_ingest_commit(in, &o, &rp) || rp != v) {
			diag("commit %" PRIu64 ": %s", v, bv_store_error(s));
			failures++;
			break;
		}
	}
	writer_done = 1;
	return NULL;
}

static int prune_cb(void *ud, const bv_prune_item *it)
{
	(void)ud;
	(void)it;
	return 0;
}

static void *remover(void *arg)
{
	et_rng rng = { 11 };
	bv_policy p = { .keep_last = 6 };
	(void)arg;
	while (!writer_done) {
		uint64_t n = 1 + et_below(&rng, COMMITS);
		usleep(500);
		int rc = bv_rp_remove(s, "w", n, 0);
		if (rc && rc != BV_ENOTFOUND && rc != BV_EBUSY) {
			diag("rp rm w@%" PRIu64 ": %d %s", n, rc,
			     bv_store_error(s));
			failures++;
		}
		if (et_below(&rng, 8) == 0) {
			if (bv_policy_set(s, "w", &p) ||
			    bv_prune(s, "w", 0, prune_cb, NULL)) {
				diag("prune: %s", bv_store_error(s));
				failures++;
			}
		}
	}
	return NULL;
}

static void *churn(void *arg)
{
	char name[16];
	(void)arg;
	for (int i = 0; !writer_done; i++) {
		snprintf(name, sizeof name, "t%d", i);
		if (bv_replica_create(s, name, SIZE, CHUNK) ||
		    bv_rp_create(s, name, NULL, 0, NULL) ||
		    bv_replica_remove(s, name)) {
			diag("churn %s: %s", name, bv_store_error(s));
			failures++;
			break;
		}
	}
	return NULL;
}

struct seen {
	uint64_t v[COMMITS + 2];
	int n;
};

static int rp_cb(void *ud, const bv_rp_info *rp)
{
	struct seen *x = ud;
	if (x->n < COMMITS + 2)
		x->v[x->n++] = rp->number;
	return 0;
}

/* Version v's image. */
static void image(uint64_t v, uint8_t *img)
{
	for (unsigned c = 0; c < NCHUNK; c++) {
		uint64_t w = v;
		while (w > 0 && !wrote[w][c])
			w--;
		if (w)
			data(w, c, img + (size_t)c * CHUNK);
		else
			memset(img + (size_t)c * CHUNK, 0, CHUNK);
	}
}

int main(void)
{
	char *dir = et_tmpdir("life-threads");
	static uint8_t img[SIZE], got[SIZE];
	pthread_t t[3];
	struct seen seen = { { 0 }, 0 };
	int good = 1;

	et_init(dir, CHUNK);
	s = et_open(dir);
	ET_MUST(s, bv_replica_create(s, "w", SIZE, CHUNK));
	pthread_create(&t[0], NULL, writer, NULL);
	pthread_create(&t[1], NULL, remover, NULL);
	pthread_create(&t[2], NULL, churn, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	ok(failures == 0, "40 commits with an RP each, rp rm and prune of "
	   "older RPs and replica create/rp/rm beside them: no call failed");
	ET_MUST(s, bv_rp_list(s, "w", rp_cb, &seen));
	for (int i = 0; i < seen.n; i++) {
		bv_reader *r;
		image(seen.v[i], img);
		if (bv_reader_open(s, "w", seen.v[i], &r) ||
		    bv_reader_pread(r, got, SIZE, 0)) {
			diag("read w@%" PRIu64 ": %s", seen.v[i],
			     bv_store_error(s));
			good = 0;
			continue;
		}
		bv_reader_close(r);
		if (et_first_diff(got, img, SIZE) >= 0) {
			diag("w@%" PRIu64 " differs", seen.v[i]);
			good = 0;
		}
	}
	ok(good && seen.n >= 1 && seen.n < COMMITS, "the %d RPs left read bit "
	   "for bit", seen.n);
	bv_store_close(s);
	s = et_open(dir);
	{
		bv_verify_result vr;
		int rc = bv_store_verify(s, &vr);
		ok(rc == 0 && vr.problems == 0, "reopened: verify is clean (%d, "
		   "%" PRIu64 " problems)", rc, vr.problems);
	}
	bv_store_close(s);
	et_rm_rf(dir);
	et_tmpdir_done(dir);
	return done_testing();
}
