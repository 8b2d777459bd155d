/*
 * prunebench: the cost of removing one RP (bv_rp_remove) against the
 * replica's size. Two stores, the second replica 4x the first, each with
 * the same history: a full write, then RPs that each change the same
 * number of chunks. RPs in the middle are removed one at a time; for each
 * the time, the map entries deleted (seen through the index's write
 * hook) and the births keys its walk reads (P + 2 .. N) are recorded.
 * The removal must follow what changed, not the size: both ratios near 1.
 * It reaches engine internals (the hook), like the fault tests.
 *
 *   prunebench [--dir DIR] [--chunks N] [--rps R] [--change C]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK (64u << 10)

struct counts {
	uint64_t deleted;
};

static int on_entry(void *ud, int put, enum bv_cf cf, const void *key,
		    size_t klen, const void *val, size_t vlen)
{
	struct counts *c = ud;
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	if (cf == BV_CF_MAPS && !put)
		c->deleted++;
	return 0;
}

static int on_kv(void *ud, const struct bv_kv_batch *b, int sync)
{
	(void)sync;
	return bv_kv_batch_each(b, on_entry, ud);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(bv_store *s, const char *what, int rc)
{
	fprintf(stderr, "prunebench: %s: %d %s: %s\n", what, rc,
		bv_strerror(rc), s ? bv_store_error(s) : "");
	exit(1);
}

static void fill(uint8_t *buf, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < CHUNK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
}

struct result {
	double secs[64];
	uint64_t deleted[64], walked[64];
	int n;
};

/* Births keys of RID in [LO, HI]: what a removal with P + 2 = LO and N =
 * HI walks. */
static uint64_t births_in(bv_store *s, uint64_t rid, uint64_t lo, uint64_t hi)
{
	uint8_t a[16], b[16];
	struct bv_kv_iter *it;
	uint64_t n = 0;

	bv_be64(a, rid);
	bv_be64(a + 8, lo);
	bv_be64(b, rid);
	bv_be64(b + 8, hi + 1);
	if (bv_kv_iter_new(s->kv, BV_CF_BIRTHS, a, 16, b, 16, &it))
		return 0;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it))
		n++;
	bv_kv_iter_free(it);
	return n;
}

static void run(const char *dir, uint64_t nchunks, int rps, int change,
		struct result *res)
{
	static uint8_t buf[CHUNK];
	char err[256];
	bv_init_opts io = { .chunk_size = CHUNK };
	bv_open_opts oo = { 0 };
	bv_store *s = NULL;
	bv_ingest *in;
	struct bv_rrec rr;
	int rc, slot;

	if ((rc = bv_store_init(dir, &io, err, sizeof err)))
		die(NULL, err, rc);
	if ((rc = bv_store_open(dir, &oo, &s)))
		die(s, "open", rc);
	/* RP 1: the full disk. */
	if ((rc = bv_ingest_begin(s, &in)) ||
	    (rc = slot = bv_ingest_add(in, "r", 0, nchunks * CHUNK)) < 0)
		die(s, "ingest", rc);
	for (uint64_t c = 0; c < nchunks; c++) {
		fill(buf, c + 1);
		if ((rc = bv_ingest_write(in, slot, c * CHUNK, buf, CHUNK)))
			die(s, "write", rc);
	}
	bv_commit_opts co = { .make_rp = 1 };
	if ((rc = bv_ingest_commit(in, &co, NULL)))
		die(s, "commit", rc);
	/* RPs 2..: CHANGE chunks each, half of them the ones the RP before
	 * changed (so that removals have entries to free). */
	uint64_t prev[4096];
	for (int r = 2; r <= rps; r++) {
		if ((rc = bv_ingest_begin(s, &in)) ||
		    (rc = slot = bv_ingest_add(in, "r", (uint64_t)r - 1, 0)) < 0)
			die(s, "ingest", rc);
		for (int k = 0; k < change; k++) {
			uint64_t c = (k % 2 && r > 2) ? prev[k] :
				(uint64_t)rand() % nchunks;
			prev[k] = c;
			fill(buf, ((uint64_t)r << 40) + c);
			if ((rc = bv_ingest_write(in, slot, c * CHUNK, buf,
						  CHUNK)))
				die(s, "write", rc);
		}
		if ((rc = bv_ingest_commit(in, &co, NULL)))
			die(s, "commit", rc);
	}
	/* Steady state: no flush or compaction of the ingest left running
	 * in the background while removals are timed. */
	bv_kv_flush(s->kv);
	bv_kv_compact_range(s->kv, BV_CF_MAPS, NULL, 0, NULL, 0);
	bv_kv_compact_range(s->kv, BV_CF_BIRTHS, NULL, 0, NULL, 0);
	bv_kv_compact_range(s->kv, BV_CF_CHUNKS, NULL, 0, NULL, 0);
	bv_rrec_get(s, "r", &rr);
	/* Every other RP in the middle: neighbours P = v - 1, N = v + 1. */
	res->n = 0;
	for (int v = 3; v < rps - 1 && res->n < 64; v += 2) {
		struct counts c = { 0 };
		res->walked[res->n] = births_in(s, rr.rid, (uint64_t)v + 1,
						(uint64_t)v + 1);
		bv_kv_set_hook(s->kv, on_kv, &c);
		double t0 = now();
		if ((rc = bv_rp_remove(s, "r", (uint64_t)v, 0)))
			die(s, "rp rm", rc);
		res->secs[res->n] = now() - t0;
		bv_kv_set_hook(s->kv, NULL, NULL);
		res->deleted[res->n++] = c.deleted;
	}
	bv_store_close(s);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double t[64];
	memcpy(t, v, (size_t)n * sizeof *t);
	qsort(t, (size_t)n, sizeof *t, cmp_d);
	return n ? t[n / 2] : 0;
}

static double mean_u(const uint64_t *v, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)v[i];
	return n ? s / n : 0;
}

int main(int argc, char **argv)
{
	const char *base = "/var/tmp";
	uint64_t nchunks = 4096; /* 256 MiB */
	int rps = 30, change = 64;
	static struct result small, large;
	char d1[4096], d2[4096], cmd[8300];

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--dir"))
			base = argv[i + 1];
		else if (!strcmp(argv[i], "--chunks"))
			nchunks = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--rps"))
			rps = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--change"))
			change = atoi(argv[i + 1]);
	}
	if (rps < 6 || change < 2 || change > 4096 || nchunks < (uint64_t)change) {
		fprintf(stderr, "prunebench: --rps >= 6, 2 <= --change <= 4096\n");
		return 2;
	}
	snprintf(d1, sizeof d1, "%s/prunebench.%d.small", base, (int)getpid());
	snprintf(d2, sizeof d2, "%s/prunebench.%d.large", base, (int)getpid());
	srand(1);
	run(d1, nchunks, rps, change, &small);
	srand(1);
	run(d2, 4 * nchunks, rps, change, &large);
	double ts = median(small.secs, small.n), tl = median(large.secs, large.n);
	double ds = mean_u(small.deleted, small.n);
	double dl = mean_u(large.deleted, large.n);
	double ws = mean_u(small.walked, small.n);
	double wl = mean_u(large.walked, large.n);
	printf("figure                                         small       large       ratio\n");
	printf("replica size (MiB)                        %9.0f   %9.0f   %8.2fx\n",
	       (double)nchunks * CHUNK / 1048576,
	       (double)nchunks * 4 * CHUNK / 1048576, 4.0);
	printf("rp rm time, median of %2d (ms)             %9.3f   %9.3f   %8.2fx\n",
	       small.n, ts * 1e3, tl * 1e3, ts > 0 ? tl / ts : 0);
	printf("map entries deleted per rp rm (mean)      %9.1f   %9.1f   %8.2fx\n",
	       ds, dl, ds > 0 ? dl / ds : 0);
	printf("births keys walked per rp rm (mean)       %9.1f   %9.1f   %8.2fx\n",
	       ws, wl, ws > 0 ? wl / ws : 0);
	printf("workload: %d RPs, %d chunks of 64 KiB changed per RP (half of "
	       "them the previous RP's), every other middle RP removed\n",
	       rps, change);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", d1, d2);
	return system(cmd) == 0 ? 0 : 1;
}
