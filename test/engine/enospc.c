/*
 * engine-enospc: fill the file system under a store and check that the
 * failure is a clean error that changes nothing.
 *
 * The store lives on a 24 MiB tmpfs mounted for the test (root only; the
 * test is skipped otherwise). Versions of 2 MiB of fresh random data are
 * committed with an RP each until one fails. The failure must be -ENOSPC
 * or BV_EDB (RocksDB reporting the full disk), never a crash; then every
 * earlier RP must read back exactly, the latest RP must be the last one
 * that committed, and the same must hold after a reopen. Last, the tmpfs
 * is grown and the store must take a new version.
 */
#include <sys/mount.h>

#include "etest.h"

#define DISK (64u << 20)
#define STEP (2u << 20)
#define SEG (1u << 20)

static uint64_t seed;

/* Version K writes STEP fresh bytes at (K - 1) * STEP. */
static void gen_step(uint8_t *buf, uint64_t k)
{
	et_rng r = { seed * 1000003u + k };
	et_fill(&r, buf, STEP);
}

/* Compares REPLICA@RP, which must hold versions 1..K, with what they
 * wrote: every byte, read through a reader in SEG slices. */
static int rp_holds(bv_store *s, uint64_t rp, uint64_t k)
{
	bv_reader *r = NULL;
	uint8_t *want = malloc(STEP), *got = malloc(SEG), *zero = calloc(1, SEG);
	int rc, good = 1;

	rc = bv_reader_open(s, "fill", rp, &r);
	if (rc < 0) {
		diag("reader at RP %" PRIu64 ": %d %s: %s", rp, rc,
		     bv_strerror(rc), bv_store_error(s));
		good = 0;
		goto out;
	}
	if (bv_reader_size(r) != DISK) {
		good = 0;
		goto out;
	}
	for (uint64_t off = 0; off < DISK && good; off += SEG) {
		uint64_t v = off / STEP + 1;
		const uint8_t *exp = zero;
		if (v <= k) {
			if (off % STEP == 0)
				gen_step(want, v);
			exp = want + off % STEP;
		}
		rc = bv_reader_pread(r, got, SEG, off);
		if (rc < 0 || memcmp(got, exp, SEG) != 0) {
			diag("RP %" PRIu64 " at %" PRIu64 ": %s", rp, off,
			     rc < 0 ? bv_strerror(rc) : "bytes differ");
			good = 0;
		}
	}
out:
	bv_reader_close(r);
	free(want);
	free(got);
	free(zero);
	return good;
}

/* Exports the latest RP outside the full file system and compares. */
static int export_holds(bv_store *s, const char *scratch, uint64_t k)
{
	uint8_t *img = calloc(1, DISK);
	int good;
	for (uint64_t v = 1; v <= k; v++)
		gen_step(img + (v - 1) * STEP, v);
	good = et_export_eq(s, "fill", k, scratch, img, DISK);
	free(img);
	return good;
}

static int check_all(bv_store *s, const char *scratch, uint64_t k,
		     const char *when)
{
	bv_replica_info ri;
	int rc = bv_replica_info_get(s, "fill", &ri), good = 1;
	if (rc < 0 || ri.latest_rp != k) {
		diag("%s: latest RP %" PRIu64 ", want %" PRIu64 " (rc %d)", when,
		     rc < 0 ? 0 : ri.latest_rp, k, rc);
		good = 0;
	}
	for (uint64_t rp = 1; rp <= k; rp++)
		if (!rp_holds(s, rp, rp))
			good = 0;
	if (!rp_holds(s, 0, k))
		good = 0;
	if (!export_holds(s, scratch, k))
		good = 0;
	return ok(good, "%s: RPs 1..%" PRIu64 " and the head read back exactly",
		  when, k);
}

int main(void)
{
	char *dir = et_tmpdir("enospc");
	char *mnt = et_path(dir, "mnt");
	char *store = et_path(mnt, "store");
	uint8_t *buf = malloc(STEP);
	bv_store *s;
	uint64_t k = 0;
	int rc = 0, where = 0;

	seed = et_seed(99);
	mkdir(mnt, 0755);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=24m") < 0) {
		char why[128];
		snprintf(why, sizeof why, "cannot mount a tmpfs: %s",
			 strerror(errno));
		et_tmpdir_done(dir);
		skip_all(why);
	}
	et_init(store, 65536);
	s = et_open(store);

	/* 64 MiB of random data cannot fit in 24 MiB: some call fails. */
	for (k = 0; k < DISK / STEP; k++) {
		bv_ingest *in = NULL;
		bv_commit_opts co = { .make_rp = 1 };
		uint64_t rp = 0;
		int slot;
		where = 1;
		rc = bv_ingest_begin(s, &in);
		if (rc < 0)
			break;
		where = 2;
		slot = rc = bv_ingest_add(in, "fill", k, k ? 0 : DISK);
		if (rc < 0) {
			bv_ingest_abort(in);
			break;
		}
		gen_step(buf, k + 1);
		where = 3;
		for (uint64_t o = 0; o < STEP && rc >= 0; o += SEG)
			rc = bv_ingest_write(in, slot, k * STEP + o, buf + o, SEG);
		if (rc < 0) {
			bv_ingest_abort(in);
			break;
		}
		where = 4;
		rc = bv_ingest_commit(in, &co, &rp);
		if (rc < 0)
			break;
		if (rp != k + 1)
			ok(0, "version %" PRIu64 " made RP %" PRIu64, k + 1, rp);
	}
	diag("%" PRIu64 " versions fitted; then %s failed: %d %s: %s", k,
	     where == 1   ? "begin"
	     : where == 2 ? "add"
	     : where == 3 ? "write"
			  : "commit",
	     rc, bv_strerror(rc), bv_store_error(s));
	ok(rc == -ENOSPC || rc == BV_EDB,
	   "the full file system fails a call with -ENOSPC or BV_EDB (%d %s)",
	   rc, bv_strerror(rc));
	ok(bv_store_error(s)[0] != 0, "with a message: %s", bv_store_error(s));
	ok(k >= 2, "some versions fitted first (%" PRIu64 ")", k);
	check_all(s, dir, k, "full, same handle");

	/* A second try on the full file system: a clean failure again, or
	 * (if the failed attempt freed something) a whole new version. */
	{
		bv_ingest *in = NULL;
		uint64_t rp = 0;
		bv_commit_opts co = { .make_rp = 1 };
		int slot;
		gen_step(buf, k + 1);
		rc = bv_ingest_begin(s, &in);
		if (rc >= 0) {
			slot = rc = bv_ingest_add(in, "fill", k, 0);
			for (uint64_t o = 0; o < STEP && rc >= 0; o += SEG)
				rc = bv_ingest_write(in, slot, k * STEP + o,
						     buf + o, SEG);
			if (rc >= 0)
				rc = bv_ingest_commit(in, &co, &rp);
			else
				bv_ingest_abort(in);
		}
		diag("a second try: %d %s", rc, bv_strerror(rc));
		ok(rc == 0 || rc == -ENOSPC || rc == BV_EDB,
		   "a second try succeeds or fails the same way (%d %s)", rc,
		   bv_strerror(rc));
		if (rc == 0 && rp == k + 1)
			k++;
		check_all(s, dir, k, "after a second try");
		bv_store_close(s);
	}

	s = NULL;
	{
		bv_open_opts o = { .workers = 2 };
		rc = bv_store_open(store, &o, &s);
		ok(rc == 0, "the store opens again on the full file system "
		   "(%d %s: %s)", rc, bv_strerror(rc),
		   s ? bv_store_error(s) : "");
		if (rc == 0)
			check_all(s, dir, k, "reopened while full");
		bv_store_close(s);
	}
	if (mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=160m") < 0) {
		ok(0, "grow the tmpfs: %s", strerror(errno));
	} else {
		bv_ingest *in = NULL;
		uint64_t rp = 0;
		bv_replica_info ri;
		bv_commit_opts co = { .make_rp = 1 };
		int slot;
		s = et_open(store);
		ET_MUST(s, bv_replica_info_get(s, "fill", &ri));
		is_int(ri.latest_rp, k, "after growing, the latest RP is still "
		       "the last one that committed");
		ET_MUST(s, bv_ingest_begin(s, &in));
		slot = bv_ingest_add(in, "fill", k, 0);
		ET_MUST(s, slot);
		gen_step(buf, k + 1);
		ET_MUST(s, bv_ingest_write(in, slot, k * STEP, buf, STEP));
		rc = bv_ingest_commit(in, &co, &rp);
		is_int(rc, 0, "with room again, a new version commits (%s)",
		       bv_store_error(s));
		if (rc == 0)
			k++;
		if (rc == 0)
			ok(rp_holds(s, k, k) && rp_holds(s, 0, k),
			   "RP %" PRIu64 " reads back", k);
		bv_store_close(s);
	}
	if (umount2(mnt, 0) < 0 && umount2(mnt, MNT_DETACH) < 0)
		diag("umount %s: %s", mnt, strerror(errno));
	free(buf);
	free(store);
	free(mnt);
	et_tmpdir_done(dir);
	return done_testing();
}
