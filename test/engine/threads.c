/*
 * engine-threads: one bv_store shared by threads, as bvault.h allows.
 *
 * Two writer threads each commit versions (with an RP) of their own
 * replica; two reader threads keep opening readers at RPs already
 * published by the writers and compare every byte with the writer's
 * image of that RP (invariant 3 under concurrency); a third thread walks
 * the lists and the stats. At the end, after a reopen, every RP is
 * exported and compared once more.
 *
 * BV_SEED replays the contents (not the interleaving).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "etest.h"

#define NW 2
#define DISK (1u << 20)
#define VERSIONS 25

typedef struct writer {
	char name[16];
	uint32_t chunk;
	uint8_t *img[VERSIONS + 1]; /* img[k]: RP k */
	atomic_int published;       /* RPs 1..published may be read */
	int failed;
} writer;

static bv_store *S;
static writer W[NW];
static uint64_t seed;
static atomic_int writers_done, read_fail, reads_done, walk_fail;

static void *writer_main(void *arg)
{
	writer *w = arg;
	et_rng r = { seed ^ (uint64_t)(uintptr_t)w->name[5] };
	uint8_t *cur = calloc(1, DISK), *buf = malloc(DISK);

	for (int k = 1; k <= VERSIONS && !w->failed; k++) {
		bv_ingest *in = NULL;
		bv_commit_opts co = { .make_rp = 1 };
		uint64_t rp = 0;
		int slot, rc, n = (int)et_range(&r, 1, 8);
		rc = bv_ingest_begin(S, &in);
		slot = rc < 0 ? rc
			      : bv_ingest_add(in, w->name, (uint64_t)k - 1,
					      k == 1 ? DISK : 0);
		rc = slot;
		for (int i = 0; i < n && rc >= 0; i++) {
			uint64_t off = et_below(&r, DISK / 512) * 512;
			uint64_t len = et_range(&r, 1, 256) * 512;
			if (len > DISK - off)
				len = DISK - off;
			et_fill(&r, buf, len);
			rc = bv_ingest_write(in, slot, off, buf, len);
			memcpy(cur + off, buf, len);
		}
		if (rc >= 0)
			rc = bv_ingest_commit(in, &co, &rp);
		else
			bv_ingest_abort(in);
		if (rc < 0 || rp != (uint64_t)k) {
			printf("# writer %s version %d: %d %s, RP %" PRIu64
			       ": %s\n", w->name, k, rc, bv_strerror(rc), rp,
			       bv_store_error(S));
			w->failed = 1;
			break;
		}
		w->img[k] = malloc(DISK);
		memcpy(w->img[k], cur, DISK);
		atomic_store(&w->published, k);
	}
	free(cur);
	free(buf);
	atomic_fetch_add(&writers_done, 1);
	return NULL;
}

static void *reader_main(void *arg)
{
	et_rng r = { seed + (uint64_t)(uintptr_t)arg };
	uint8_t *buf = malloc(DISK);

	while (atomic_load(&writers_done) < NW) {
		writer *w = &W[et_below(&r, NW)];
		int k = atomic_load(&w->published);
		bv_reader *rd = NULL;
		int rc;
		if (k == 0) {
			usleep(1000);
			continue;
		}
		k = (int)et_range(&r, 1, (uint64_t)k);
		rc = bv_reader_open(S, w->name, (uint64_t)k, &rd);
		if (rc < 0) {
			printf("# reader: open %s@%d: %d %s\n", w->name, k, rc,
			       bv_strerror(rc));
			atomic_fetch_add(&read_fail, 1);
			continue;
		}
		/* Read in pieces, so commits can land between them. */
		for (uint64_t off = 0; off < DISK && rc >= 0; off += 65536) {
			rc = bv_reader_pread(rd, buf + off, 65536, off);
			if (et_below(&r, 4) == 0)
				sched_yield();
		}
		if (rc < 0 || memcmp(buf, w->img[k], DISK) != 0) {
			printf("# reader: %s@%d: %s\n", w->name, k,
			       rc < 0 ? bv_strerror(rc) : "bytes differ");
			atomic_fetch_add(&read_fail, 1);
		}
		bv_reader_close(rd);
		atomic_fetch_add(&reads_done, 1);
	}
	free(buf);
	return NULL;
}

static int count_rp(void *ud, const bv_rp_info *rp)
{
	(void)rp;
	(*(int *)ud)++;
	return 0;
}

static int count_rep(void *ud, const bv_replica_info *ri)
{
	(void)ri;
	(*(int *)ud)++;
	return 0;
}

static void *walker_main(void *arg)
{
	(void)arg;
	while (atomic_load(&writers_done) < NW) {
		bv_stats st;
		int nrp = 0, nrep = 0, rc;
		int want = atomic_load(&W[0].published);
		rc = bv_rp_list(S, W[0].name, count_rp, &nrp);
		if (rc == BV_ENOTFOUND && want == 0)
			rc = 0; /* not created yet */
		if (bv_stats_get(S, &st) < 0 || rc < 0 ||
		    bv_replica_list(S, count_rep, &nrep) < 0 || nrp < want) {
			printf("# walker: %d RPs listed, %d published\n", nrp,
			       want);
			atomic_fetch_add(&walk_fail, 1);
		}
		usleep(2000);
	}
	return NULL;
}

int main(void)
{
	char *dir = et_tmpdir("threads");
	char *store = et_path(dir, "store");
	pthread_t wt[NW], rt[2], kt;

	seed = et_seed(31337);
	et_init(store, 16384);
	S = et_open(store);
	for (int i = 0; i < NW; i++) {
		snprintf(W[i].name, sizeof W[i].name, "repl-%d", i);
		pthread_create(&wt[i], NULL, writer_main, &W[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_create(&rt[i], NULL, reader_main, (void *)(uintptr_t)(i + 1));
	pthread_create(&kt, NULL, walker_main, NULL);
	for (int i = 0; i < NW; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(rt[i], NULL);
	pthread_join(kt, NULL);

	for (int i = 0; i < NW; i++)
		ok(!W[i].failed && atomic_load(&W[i].published) == VERSIONS,
		   "writer %s committed %d versions beside the others",
		   W[i].name, atomic_load(&W[i].published));
	is_int(atomic_load(&read_fail), 0,
	       "concurrent readers saw every RP exactly (%d reads)",
	       atomic_load(&reads_done));
	ok(atomic_load(&reads_done) > 0, "the readers did read");
	is_int(atomic_load(&walk_fail), 0, "lists and stats during ingest");

	bv_store_close(S);
	S = et_open(store);
	for (int i = 0; i < NW; i++) {
		int good = 1;
		for (int k = 1; k <= atomic_load(&W[i].published); k++)
			if (!et_export_eq(S, W[i].name, (uint64_t)k, dir,
					  W[i].img[k], DISK))
				good = 0;
		ok(good, "after a reopen every RP of %s exports exactly",
		   W[i].name);
		for (int k = 1; k <= VERSIONS; k++)
			free(W[i].img[k]);
	}
	bv_store_close(S);
	free(store);
	et_tmpdir_done(dir);
	return done_testing();
}
