/*
 * engine-usage: bv_stats_usage against a model. Four replicas (two in
 * one group) get chunks drawn from a small pool over several versions,
 * some shared between replicas and groups, some overwritten later (a
 * chunk an older RP still reads stays theirs); the bytes unique to each
 * replica and group are counted from the model and compared, with the
 * table of owners small enough to need several passes too.
 */
#include "tap.h"
#include "etest.h"

#define CHUNK 65536u
#define NCH 32u
#define POOL 96u
#define NREP 4
#define VERS 4

static const char *const names[NREP] = { "r0", "r1", "r2", "r3" };
/* tokens[r][v][c]: the token of chunk c of replica r at version v + 1;
 * 0 a zero chunk. */
static unsigned tokens[NREP][VERS][NCH];

static void fill(uint8_t *b, unsigned tok)
{
	et_rng r = { tok * 1000003ull };
	et_fill(&r, b, CHUNK);
}

/* Who uses token T: bit r for replica r. */
static unsigned users(unsigned t)
{
	unsigned m = 0;
	for (int r = 0; r < NREP; r++)
		for (int v = 0; v < VERS; v++)
			for (unsigned c = 0; c < NCH; c++)
				if (tokens[r][v][c] == t)
					m |= 1u << r;
	return m;
}

static void check(bv_store *s, const char *how)
{
	/* groups: g = {r0, r1}; r2 and r3 alone. */
	static const unsigned gmask[3] = { 3, 4, 8 };
	static const char *const gname[3] = { "g", "r2", "r3" };
	uint64_t want_rep[NREP] = { 0 }, want_grp[3] = { 0 };
	bv_usage *u = NULL;
	size_t n = 0;
	int good = 1;

	for (unsigned t = 1; t <= POOL; t++) {
		unsigned m = users(t);
		for (int r = 0; r < NREP; r++)
			if (m == 1u << r)
				want_rep[r]++;
		for (int g = 0; g < 3; g++)
			if (m && (m & ~gmask[g]) == 0)
				want_grp[g]++;
	}
	ET_MUST(s, bv_stats_usage(s, NULL, &u, &n));
	ok(n == 3 + NREP, "%s: 3 groups and 4 replicas (%zu)", how, n);
	for (size_t i = 0; i < n; i++) {
		uint64_t want = 0;
		if (u[i].is_group) {
			for (int g = 0; g < 3; g++)
				if (strcmp(u[i].name, gname[g]) == 0)
					want = want_grp[g];
		} else {
			want = want_rep[u[i].name[1] - '0'];
		}
		if (u[i].unique_chunks != want ||
		    u[i].unique_bytes != want * ((48 + CHUNK + 15) & ~15u) ||
		    u[i].logical_bytes != (u[i].is_group &&
					   strcmp(u[i].name, "g") == 0 ? 2 : 1) *
					  (uint64_t)NCH * CHUNK ||
		    u[i].rps != VERS) {
			diag("%s %s: unique %" PRIu64 " chunks / %" PRIu64
			     " bytes, want %" PRIu64 "; logical %" PRIu64
			     ", rps %" PRIu64, u[i].is_group ? "group" :
			     "replica", u[i].name, u[i].unique_chunks,
			     u[i].unique_bytes, want, u[i].logical_bytes,
			     u[i].rps);
			good = 0;
		}
	}
	ok(good, "%s: every group's and replica's unique chunks, bytes, "
	   "logical size and RPs are the model's", how);
	bv_usage_free(u);
	ET_MUST(s, bv_stats_usage(s, "g", &u, &n));
	ok(n == 3 && u[0].is_group && strcmp(u[0].name, "g") == 0 &&
	   u[0].unique_chunks == want_grp[0], "%s: GROUP g alone: it and its "
	   "two members", how);
	bv_usage_free(u);
}

int main(void)
{
	char *dir = et_tmpdir("usage"), *sp = et_path(dir, "s");
	et_rng r = { et_seed(11) };
	uint8_t *buf = malloc(CHUNK);
	bv_store *s;

	et_init(sp, CHUNK);
	s = et_open(sp);
	for (int i = 0; i < NREP; i++)
		ET_MUST(s, bv_replica_create(s, names[i], NCH * CHUNK, 0));
	{
		const char *m[2] = { "r0", "r1" };
		ET_MUST(s, bv_group_create(s, "g", m, 2));
	}
	for (int v = 0; v < VERS; v++) {
		/* One session per group, each making that group's RP. */
		for (int g = 0; g < 3; g++) {
			bv_ingest *in = NULL;
			int lo = g == 0 ? 0 : g + 1, hi = g == 0 ? 1 : g + 1;
			uint64_t rp;

			ET_MUST(s, bv_ingest_begin(s, &in));
			for (int i = lo; i <= hi; i++) {
				int slot;
				ET_MUST(s, slot = bv_ingest_add(in, names[i],
							       (uint64_t)v, 0));
				for (unsigned c = 0; c < NCH; c++) {
					unsigned t = v ? tokens[i][v - 1][c] :
						     0;
					if (v == 0 || et_below(&r, 3) == 0)
						t = (unsigned)et_below(&r,
								       POOL + 1);
					tokens[i][v][c] = t;
					if (t == 0) {
						ET_MUST(s, bv_ingest_zero(in,
							slot, c * CHUNK,
							CHUNK));
						continue;
					}
					fill(buf, t);
					ET_MUST(s, bv_ingest_write(in, slot,
						c * CHUNK, buf, CHUNK));
				}
			}
			bv_commit_opts co = { .make_rp = 1 };
			ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		}
	}
	check(s, "one pass");
	setenv("BV_USAGE_TABLE_MAX", "4096", 1);
	check(s, "many passes");
	unsetenv("BV_USAGE_TABLE_MAX");
	{
		bv_usage *u = NULL;
		size_t n = 0;
		int rc = bv_stats_usage(s, "nope", &u, &n);
		ok(rc == BV_ENOTFOUND && strstr(bv_store_error(s), "nope"),
		   "an unknown group is refused, named (%d: %s)", rc,
		   bv_store_error(s));
	}
	bv_store_close(s);
	free(buf);
	free(sp);
	et_tmpdir_done(dir);
	return done_testing();
}
