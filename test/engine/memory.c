/*
 * engine-memory: the ingest sessions of a store share one budget of batch
 * memory (bv_open_opts.ingest_memory, bv_ingest_memory in bvault.h).
 *
 * NS sessions are open at once on one thread, each filling its own new
 * replica a piece at a time in turn (large writes that go in place, small
 * and unaligned ones that are copied and patch chunks), so that every
 * session holds batches while the others take theirs. One session stops
 * in the middle of a batch, as an agent whose connection stalls, while
 * the others go on to their commits: any wait of a session for memory
 * another one holds would hang this single thread. Checked: the bytes of
 * batches the store counts never pass the budget by more than one
 * smallest batch per session, the count goes back to zero when every
 * session is done (commit or abort), every committed RP reads back
 * bit-exact, a budget below BV_INGEST_MEMORY_MIN is refused, and a single
 * session on the smallest budget still ingests more than a batch's worth.
 *
 * BV_SEED replays the contents.
 */
#include "etest.h"

#define NS 12
#define DISK (6u << 20)
#define BUDGET (32ull << 20)
/* One smallest batch (1 MiB of raw data and its run buffer of 64 KiB
 * chunks) is about 3.4 MiB with two workers: the most a session that
 * holds nothing else may take past the budget. */
#define SMALLEST (4ull << 20)

static bv_store *open_budget(const char *path, uint64_t budget)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2, .ingest_memory = budget };
	int rc = bv_store_open(path, &o, &s);
	if (rc < 0) {
		printf("# open %s: %d %s: %s\n", path, rc, bv_strerror(rc),
		       s ? bv_store_error(s) : "");
		bail_out("store open failed");
	}
	return s;
}

/* Every byte of NAME at RP against IMG. */
static int same_as(bv_store *s, const char *name, uint64_t rp,
		   const uint8_t *img, size_t len)
{
	bv_reader *r = NULL;
	uint8_t *buf = malloc(len);
	int64_t d = -1;
	int rc = buf ? bv_reader_open(s, name, rp, &r) : -ENOMEM;
	if (rc >= 0)
		rc = bv_reader_pread(r, buf, len, 0);
	if (rc >= 0 && (d = et_first_diff(buf, img, len)) >= 0)
		diag("%s@%llu differs at byte %lld", name,
		     (unsigned long long)rp, (long long)d);
	if (rc < 0)
		diag("%s@%llu: %s", name, (unsigned long long)rp,
		     bv_store_error(s));
	bv_reader_close(r);
	free(buf);
	return rc >= 0 && d < 0;
}

static void many_sessions(const char *dir, uint64_t seed)
{
	char *path = et_path(dir, "many");
	et_rng r = { seed };
	bv_ingest *in[NS];
	uint8_t *img[NS], *buf = malloc(1u << 20);
	uint64_t pos[NS], rp[NS], worst = 0;
	bv_ingest_memory m;
	char name[NS][16];
	int slot[NS], over_bound = 0;

	et_init(path, 0);
	bv_store *s = open_budget(path, BUDGET);
	for (int i = 0; i < NS; i++) {
		snprintf(name[i], sizeof name[i], "d%d", i);
		img[i] = calloc(1, DISK);
		pos[i] = 0;
		rp[i] = 0;
		ET_MUST(s, bv_ingest_begin(s, &in[i]));
		ET_MUST(s, slot[i] = bv_ingest_add(in[i], name[i], 0, DISK));
	}
	bv_store_ingest_memory(s, &m);
	is_int(m.sessions, NS, "%d sessions counted", NS);
	ok(m.limit == BUDGET, "the budget is the open's (%llu MiB)",
	   (unsigned long long)(m.limit >> 20));

	/* Rounds: each session in turn writes its next piece, until every
	 * one has filled its disk; session 0 stalls after 1.5 MiB, in the
	 * middle of a batch, and is committed last. */
	for (int done = 0; done < NS;) {
		done = 0;
		for (int i = 0; i < NS; i++) {
			uint64_t stop = i == 0 ? (3u << 19) : DISK;
			if (pos[i] >= stop) {
				done++;
				continue;
			}
			/* Big pieces go in place; small unaligned ones are
			 * copied and patch a chunk read back from the
			 * batch or the index. */
			uint64_t len = et_below(&r, 3) == 0 ?
				       et_range(&r, 1, 8) << 9 :
				       et_range(&r, 1, 16) << 16;
			if (len > stop - pos[i])
				len = stop - pos[i];
			et_fill(&r, buf, len);
			/* Half the pieces compress. */
			if (et_below(&r, 2))
				memset(buf, 0x5a, len / 2);
			ET_MUST(s, bv_ingest_write(in[i], slot[i], pos[i], buf,
						   len));
			memcpy(img[i] + pos[i], buf, len);
			pos[i] += len;
			/* Now and then a repeat of an earlier piece: dedup
			 * within and across the sessions. */
			if (et_below(&r, 8) == 0 && pos[i] > 65536) {
				uint64_t o = et_below(&r, pos[i] / 65536) *
					     65536;
				ET_MUST(s, bv_ingest_write(in[i], slot[i], o,
							   img[(i + 1) % NS],
							   65536));
				memcpy(img[i] + o, img[(i + 1) % NS], 65536);
			}
			bv_store_ingest_memory(s, &m);
			if (m.used > worst)
				worst = m.used;
			if (m.used > BUDGET + NS * SMALLEST)
				over_bound++;
		}
		/* The sessions that are through commit at once, the
		 * stalled one still holding its batch. */
		for (int i = 1; i < NS; i++) {
			bv_commit_opts co = { .make_rp = 1 };
			if (pos[i] < DISK || !in[i])
				continue;
			ET_MUST(s, bv_ingest_commit(in[i], &co, &rp[i]));
			in[i] = NULL;
		}
	}
	is_int(over_bound, 0, "batch memory stays within the budget and one "
	       "smallest batch a session (at most %llu MiB seen, budget "
	       "%llu MiB)", (unsigned long long)(worst >> 20),
	       (unsigned long long)(BUDGET >> 20));
	bv_store_ingest_memory(s, &m);
	ok(m.peak <= BUDGET + NS * SMALLEST, "the peak the store counts, "
	   "%llu MiB, is within that too", (unsigned long long)(m.peak >> 20));
	ok(m.peak > 0 && m.peak >= worst, "the peak is at least what was "
	   "seen");
	is_int(m.sessions, 1, "the stalled session is still open");
	ok(m.used > 0 && m.used <= BUDGET, "it holds its batch (%llu KiB)",
	   (unsigned long long)(m.used >> 10));

	/* The stalled session goes on and commits. */
	et_fill(&r, buf, 1u << 20);
	ET_MUST(s, bv_ingest_write(in[0], slot[0], pos[0], buf, 1u << 20));
	memcpy(img[0] + pos[0], buf, 1u << 20);
	bv_commit_opts co = { .make_rp = 1 };
	ET_MUST(s, bv_ingest_commit(in[0], &co, &rp[0]));
	bv_store_ingest_memory(s, &m);
	is_int(m.used, 0, "no batch memory held once every session is done");
	is_int(m.sessions, 0, "no session counted");

	/* An aborted session gives its batches back too. */
	bv_ingest *a = NULL;
	int as;
	ET_MUST(s, bv_ingest_begin(s, &a));
	ET_MUST(s, as = bv_ingest_add(a, "d1", rp[1], 0));
	et_fill(&r, buf, 1u << 20);
	ET_MUST(s, bv_ingest_write(a, as, 0, buf, 1u << 20));
	bv_store_ingest_memory(s, &m);
	ok(m.used > 0, "a new session holds batches");
	bv_ingest_abort(a);
	bv_store_ingest_memory(s, &m);
	is_int(m.used, 0, "none once it is aborted");

	int bad = 0;
	for (int i = 0; i < NS; i++)
		bad += !same_as(s, name[i], rp[i], img[i], DISK);
	is_int(bad, 0, "every one of the %d RPs reads back bit-exact", NS);
	bv_store_close(s);

	/* And after a reopen, from the containers. */
	s = open_budget(path, BUDGET);
	bad = 0;
	for (int i = 0; i < NS; i++)
		bad += !same_as(s, name[i], rp[i], img[i], DISK);
	is_int(bad, 0, "and after a reopen");
	bv_store_close(s);
	for (int i = 0; i < NS; i++)
		free(img[i]);
	free(buf);
	free(path);
}

/* The smallest budget: one session with less than one full batch's
 * memory, writing far more than a batch in one call and in small ones. */
static void smallest_budget(const char *dir, uint64_t seed)
{
	char *path = et_path(dir, "small");
	et_rng r = { seed ^ 0x77 };
	size_t len = 24u << 20;
	uint8_t *img = malloc(len);
	bv_ingest *in = NULL;
	bv_ingest_memory m;
	uint64_t rp = 0;
	int slot;

	et_init(path, 0);
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2,
			   .ingest_memory = BV_INGEST_MEMORY_MIN - 1 };
	int rc = bv_store_open(path, &o, &s);
	is_int(rc, BV_EINVAL, "a budget below BV_INGEST_MEMORY_MIN is refused");
	bv_store_close(s);

	s = open_budget(path, BV_INGEST_MEMORY_MIN);
	et_fill(&r, img, len);
	memset(img, 0x33, len / 3);
	ET_MUST(s, bv_ingest_begin(s, &in));
	ET_MUST(s, slot = bv_ingest_add(in, "big", 0, len));
	ET_MUST(s, bv_ingest_write(in, slot, 0, img, 16u << 20));
	for (size_t off = 16u << 20; off < len; off += 3072) {
		size_t n = len - off < 3072 ? len - off : 3072;
		ET_MUST(s, bv_ingest_write(in, slot, off, img + off, n));
	}
	bv_commit_opts co = { .make_rp = 1 };
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
	bv_store_ingest_memory(s, &m);
	ok(m.peak <= BV_INGEST_MEMORY_MIN, "one session stays within the "
	   "smallest budget (peak %llu KiB)",
	   (unsigned long long)(m.peak >> 10));
	is_int(m.over, 0, "no batch past the budget");
	ok(same_as(s, "big", rp, img, len), "its RP reads back bit-exact");
	bv_store_close(s);
	free(img);
	free(path);
}

int main(void)
{
	uint64_t seed = et_seed(14);
	char *dir = et_tmpdir("memory");

	many_sessions(dir, seed);
	smallest_budget(dir, seed);
	et_tmpdir_done(dir);
	return done_testing();
}
