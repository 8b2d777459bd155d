/*
 * engine-dedup: the dedup scope (bv_init_opts.dedup_scope) and the tenant
 * tags behind BV_DEDUP_GROUP.
 *
 *  1. Tags (storage/codec.c): a tagged fingerprint checks, in a group-
 *     scoped store only, and gives back its tenant; an untagged one
 *     checks in a store-scoped store only; a tag of another key, a
 *     flipped bit, or a tenant whose mac half is wrong does not check.
 *  2. Init: the scope is recorded and reported by the stats; a scope out
 *     of range is refused, naming it, before anything is made.
 *  3. Ingest: in a group-scoped store, the same chunk written for two
 *     groups is two chunks whose fingerprints differ by the groups'
 *     tags; a write within a group finds it. Both read back bit for bit
 *     after a reopen.
 *  4. A damaged scope record is refused at open, naming it.
 */
#include <sys/stat.h>

#include "internal.h"
#include "tap.h"
#include "etest.h"

#define CHUNK 65536u

static void tags(void)
{
	uint8_t k1[BV_SECRET_SIZE], k2[BV_SECRET_SIZE], data[1000];
	bv_fp plain, t5, t6, x;
	uint64_t who = 0;

	et_rng r = { 7 };
	et_fill(&r, k1, sizeof k1);
	et_fill(&r, k2, sizeof k2);
	et_fill(&r, data, sizeof data);
	bv_fp_compute(k1, data, sizeof data, &plain);
	t5 = plain;
	bv_fp_tag(k1, 5, &t5);
	t6 = plain;
	bv_fp_tag(k1, 6, &t6);
	ok(!bv_fp_equal(&t5, &plain) && !bv_fp_equal(&t5, &t6),
	   "tags: two tenants, two fingerprints of the same bytes");
	ok(bv_fp_check(k1, 1, &plain, &t5, &who) && who == 5,
	   "tags: a tag of tenant 5 checks in a group store, naming 5");
	ok(!bv_fp_check(k1, 0, &plain, &t5, NULL),
	   "tags: a tagged fingerprint does not check in a store-scoped one");
	ok(bv_fp_check(k1, 0, &plain, &plain, NULL) &&
	   !bv_fp_check(k1, 1, &plain, &plain, NULL),
	   "tags: an untagged one checks in a store-scoped store only");
	x = plain;
	bv_fp_tag(k2, 5, &x);
	ok(!bv_fp_check(k1, 1, &plain, &x, NULL),
	   "tags: a tag made with another key does not check");
	x = t5;
	x.b[12] ^= 0x10;
	ok(!bv_fp_check(k1, 1, &plain, &x, NULL),
	   "tags: a flipped bit in the mac half does not check");
	x = t5;
	x.b[0] ^= 0x03; /* tenant 6 with tenant 5's mac */
	ok(!bv_fp_check(k1, 1, &plain, &x, NULL),
	   "tags: another tenant under a tenant's mac does not check");
	bv_fp_tag(k1, 5, &t5);
	ok(bv_fp_equal(&t5, &plain), "tags: tagging twice gives it back");
}

/* Writes BUF (one chunk) as chunk 0 of replica NAME (made if new) with an
 * RP; returns the chunk's fingerprint in the replica's map. */
static int put_chunk(bv_store *s, const char *name, const uint8_t *buf,
		     bv_fp *fp)
{
	bv_ingest *in = NULL;
	bv_replica_info ri;
	uint64_t rp = 0;
	int slot, rc;

	if (bv_replica_info_get(s, name, &ri) == 0)
		rp = ri.latest_rp;
	if ((rc = bv_ingest_begin(s, &in)))
		return rc;
	if ((slot = bv_ingest_add(in, name, rp, rp ? 0 : CHUNK)) < 0 ||
	    (rc = bv_ingest_write(in, slot, 0, buf, CHUNK)) ||
	    (rc = bv_ingest_commit(in, &(bv_commit_opts){ .make_rp = 1 },
				   NULL))) {
		bv_ingest_abort(in);
		return slot < 0 ? slot : rc;
	}
	struct bv_rrec rr;
	struct bv_kv_iter *it = NULL;
	if ((rc = bv_rrec_get(s, name, &rr)) ||
	    (rc = bv_map_iter(s, rr.rid, &it)))
		return rc;
	rc = bv_map_lookup(it, rr.rid, 0, UINT64_MAX, fp, NULL);
	bv_kv_iter_free(it);
	return rc > 0 ? 0 : -1;
}

static uint64_t nchunks(bv_store *s)
{
	bv_stats st;

	if (bv_stats_counters(s, &st))
		return UINT64_MAX;
	return st.chunks;
}

static void read_back(bv_store *s, const char *name, const uint8_t *buf)
{
	static uint8_t got[CHUNK];
	bv_reader *r = NULL;
	int rc = bv_reader_open(s, name, 0, &r);

	if (rc == 0)
		rc = bv_reader_pread(r, got, CHUNK, 0);
	ok(rc == 0 && memcmp(got, buf, CHUNK) == 0, "%s reads bit for bit "
	   "(%d)", name, rc);
	bv_reader_close(r);
}

int main(void)
{
	char *dir = et_tmpdir("dedup");
	char *sp = et_path(dir, "s"), *gp = et_path(dir, "g");
	char *bp = et_path(dir, "b");
	char err[512];
	struct stat st;
	bv_stats stats;
	bv_store *s;
	static uint8_t buf[CHUNK];
	bv_fp fa, fb, fc, plain;

	tags();

	bv_init_opts o = { .dedup_scope = BV_DEDUP_STORE };
	is_int(bv_store_init(sp, &o, err, sizeof err), 0, "store scope: init");
	s = et_open(sp);
	ET_MUST(s, bv_stats_counters(s, &stats));
	is_int(stats.dedup_scope, BV_DEDUP_STORE, "stats: scope store");
	bv_store_close(s);

	bv_init_opts b = { .dedup_scope = 7 };
	int rc = bv_store_init(bp, &b, err, sizeof err);
	ok(rc == BV_EINVAL && strstr(err, "dedup scope 7"),
	   "a scope out of range refused, named (%d: %s)", rc, err);
	ok(stat(bp, &st) < 0, "the refused init made nothing");

	bv_init_opts g = { .dedup_scope = BV_DEDUP_GROUP };
	is_int(bv_store_init(gp, &g, err, sizeof err), 0, "group scope: init");
	s = et_open(gp);
	ET_MUST(s, bv_stats_counters(s, &stats));
	is_int(stats.dedup_scope, BV_DEDUP_GROUP, "stats: scope group");
	et_rng r = { 11 };
	et_fill(&r, buf, sizeof buf);
	ET_MUST(s, bv_replica_create(s, "c", CHUNK, CHUNK));
	ET_MUST(s, bv_group_create(s, "ga", (const char *[]){ "c" }, 1));
	is_int(put_chunk(s, "a", buf, &fa), 0, "a writes the chunk");
	is_int(put_chunk(s, "b", buf, &fb), 0, "b (another group) writes it");
	is_int((int)nchunks(s), 2, "two groups: two chunks");
	struct bv_rrec ra, rb;
	ET_MUST(s, bv_rrec_get(s, "a", &ra));
	ET_MUST(s, bv_rrec_get(s, "b", &rb));
	bv_fp_compute(s->secret, buf, CHUNK, &plain);
	uint64_t ta = 0, tb = 0;
	ok(bv_fp_check(s->secret, 1, &plain, &fa, &ta) && ta == ra.gid &&
	   bv_fp_check(s->secret, 1, &plain, &fb, &tb) && tb == rb.gid &&
	   ta != tb, "each fingerprint carries its group's tag (%llu, %llu)",
	   (unsigned long long)ta, (unsigned long long)tb);
	bv_store_close(s);

	s = et_open(gp);
	read_back(s, "a", buf);
	read_back(s, "b", buf);
	is_int(put_chunk(s, "b", buf, &fc), 0, "b writes it again");
	ok(bv_fp_equal(&fc, &fb) && nchunks(s) == 2,
	   "within b's group it dedups (%llu chunks)",
	   (unsigned long long)nchunks(s));
	is_int(put_chunk(s, "c", buf, &fc), 0, "c (group ga) writes it");
	ok(nchunks(s) == 3, "ga is a third tenant: three chunks (%llu)",
	   (unsigned long long)nchunks(s));
	read_back(s, "c", buf);
	uint8_t bad = 9;
	ET_MUST(s, bv_kv_put(s->kv, BV_CF_META, "dedup", 5, &bad, 1, 1));
	bv_store_close(s);

	s = NULL;
	rc = bv_store_open(gp, NULL, &s);
	ok(rc == BV_EFORMAT && strstr(bv_store_error(s), "dedup scope record"),
	   "a damaged scope record is refused at open (%d: %s)", rc,
	   bv_store_error(s));
	bv_store_close(s);

	free(bp);
	free(gp);
	free(sp);
	et_tmpdir_done(dir);
	return done_testing();
}
