/*
 * engine-retention: a store that lives for months gives its space back.
 * Sixty daily express fulls of one disk (each changing a few percent of
 * it, one RP a day), then a policy of --keep-last 7 --keep-weekly 4,
 * prune and gc: the container files are within 10% of those of a fresh
 * store that holds only the retained RPs (ingested the same way, each as
 * the changes from the one before), every retained RP reads back bit for
 * bit, and the removed ones are gone.
 *
 * Each day's changes are a pure function of (seed, day), so any day's
 * image is rebuilt by replaying days 0..d: no image is kept in memory.
 */
#include "tap.h"
#include "etest.h"

#define DISK (16u << 20)
#define CHUNK 65536u
#define NCH (DISK / CHUNK)
#define DAYS 60
#define CHANGED 12 /* chunks changed a day (about 5%) */
#define T0 1767225600 /* 2026-01-01 00:00 UTC */

static uint64_t seed;

/* The chunks day D changes (day 0: all of them) and their bytes. */
static void day_chunks(int d, uint32_t *which, size_t *n)
{
	et_rng r = { seed * 1000003u + (uint64_t)d };

	if (d == 0) {
		for (uint32_t c = 0; c < NCH; c++)
			which[c] = c;
		*n = NCH;
		return;
	}
	*n = CHANGED;
	for (size_t i = 0; i < CHANGED; i++)
		which[i] = (uint32_t)et_below(&r, NCH);
}

static void chunk_bytes(int d, uint32_t c, uint8_t *out)
{
	et_rng r = { (seed << 20) ^ ((uint64_t)d << 32) ^ c };

	et_fill(&r, out, CHUNK / 2);
	memset(out + CHUNK / 2, (int)(c & 0xff), CHUNK / 2); /* compressible */
}

/* The disk on day D. */
static void image_at(int d, uint8_t *img)
{
	uint32_t which[NCH];
	size_t n;

	memset(img, 0, DISK);
	for (int k = 0; k <= d; k++) {
		day_chunks(k, which, &n);
		for (size_t i = 0; i < n; i++)
			chunk_bytes(k, which[i], img + (uint64_t)which[i] * CHUNK);
	}
}

/* Commits into S the changes that take the disk from day FROM (-1:
 * nothing) to day TO, as one express full with an RP dated day TO. */
static void commit_days(bv_store *s, int from, int to, uint64_t base_rp,
			uint8_t *img_from, uint8_t *img_to)
{
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1,
			      .time = T0 + (int64_t)to * 86400 + 3600 };
	uint64_t rp;
	int slot;

	if (from >= 0)
		image_at(from, img_from);
	else
		memset(img_from, 0, DISK);
	image_at(to, img_to);
	ET_MUST(s, bv_ingest_begin(s, &in));
	ET_MUST(s, slot = bv_ingest_add(in, "vm", base_rp, DISK));
	for (uint32_t c = 0; c < NCH; c++) {
		uint64_t off = (uint64_t)c * CHUNK;
		if (memcmp(img_from + off, img_to + off, CHUNK) != 0)
			ET_MUST(s, bv_ingest_write(in, slot, off, img_to + off,
						    CHUNK));
	}
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
}

struct kept {
	uint64_t rp[DAYS + 1];
	size_t n, removed;
};

static int on_prune(void *ud, const bv_prune_item *it)
{
	struct kept *k = ud;

	if (it->keep)
		k->rp[k->n++] = it->number;
	else
		k->removed++;
	return 0;
}

static int by_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t container_bytes(bv_store *s)
{
	bv_stats st;

	ET_MUST(s, bv_stats_counters(s, &st));
	return st.container_bytes;
}

int main(void)
{
	char *dir = et_tmpdir("retention");
	char *sp = et_path(dir, "s"), *fp = et_path(dir, "fresh");
	uint8_t *a = malloc(DISK), *b = malloc(DISK);
	bv_init_opts io = { .container_size = 4u << 20 };
	char err[256];
	struct kept k = { { 0 }, 0, 0 };
	bv_store *s;
	uint64_t before, after, fresh;

	seed = et_seed(60);
	if (!a || !b)
		bail_out("out of memory");
	if (bv_store_init(sp, &io, err, sizeof err) < 0 ||
	    bv_store_init(fp, &io, err, sizeof err) < 0)
		bail_out("init");
	s = et_open(sp);
	for (int d = 0; d < DAYS; d++)
		commit_days(s, d - 1, d, (uint64_t)d, a, b);
	before = container_bytes(s);

	bv_policy p = { .keep_last = 7, .keep_weekly = 4 };
	ET_MUST(s, bv_policy_set(s, "vm", &p));
	ET_MUST(s, bv_prune(s, "vm", 0, on_prune, &k));
	qsort(k.rp, k.n, sizeof *k.rp, by_u64);
	ok(k.n >= 7 && k.n <= 11 && k.n + k.removed == DAYS, "prune keeps %zu "
	   "RPs of %d (7 last, 4 weekly) and removes %zu", k.n, DAYS,
	   k.removed);
	bv_gc_report rep;
	bv_gc_opts go = { .threshold = 90 };
	ET_MUST(s, bv_gc(s, &go, &rep));
	ET_MUST(s, bv_gc(s, &go, &rep));
	after = container_bytes(s);

	{
		int good = 1;
		for (size_t i = 0; i < k.n && good; i++) {
			image_at((int)k.rp[i] - 1, a);
			good = et_export_eq(s, "vm", k.rp[i], dir, a, DISK);
			if (!good)
				diag("RP %" PRIu64 " differs", k.rp[i]);
		}
		ok(good, "every retained RP reads back bit for bit");
	}
	{
		bv_reader *r = NULL;
		uint64_t gone = 0;
		for (uint64_t n = 1; n <= DAYS; n++) {
			void *hit = bsearch(&n, k.rp, k.n, sizeof *k.rp,
					    by_u64);
			if (!hit && bv_reader_open(s, "vm", n, &r) ==
				    BV_ENOTFOUND)
				gone++;
			bv_reader_close(r);
			r = NULL;
		}
		ok(gone == k.removed, "the %zu removed RPs are gone (%" PRIu64
		   ")", k.removed, gone);
	}
	bv_store_close(s);

	/* The fresh store: only the retained RPs, each as the changes
	 * from the one before. */
	s = et_open(fp);
	for (size_t i = 0; i < k.n; i++)
		commit_days(s, i ? (int)k.rp[i - 1] - 1 : -1,
			    (int)k.rp[i] - 1, i, a, b);
	fresh = container_bytes(s);
	bv_store_close(s);
	diag("container bytes: %" PRIu64 " after 60 days, %" PRIu64 " after "
	     "prune and gc, %" PRIu64 " in a fresh store of the retained RPs "
	     "(%.3fx)", before, after, fresh, (double)after / (double)fresh);
	ok(after <= fresh + fresh / 10, "after prune and gc the store is "
	   "within 10%% of the fresh one (%.3fx)", (double)after /
	   (double)fresh);
	ok(after < before, "and gave space back (%.2f of what it was)",
	   (double)after / (double)before);
	free(a);
	free(b);
	free(sp);
	free(fp);
	et_tmpdir_done(dir);
	return done_testing();
}
