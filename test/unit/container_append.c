/*
 * container_append.c: runs of records built off the set (bv_rec_build)
 * and written as they are (bv_cset_appendv), the way ingest writes a
 * batch. A run lands after what came before, on a page boundary, in the
 * current container or, when it does not fit, in a new one; every record
 * reads back through its location, after a flush and after a reopen at
 * the tail, and a container scan finds them all. A run may come in
 * page-aligned segments (bv_cset_appendv), each records then zeros. Bad
 * arguments are refused and change nothing. Runs with O_DIRECT where the
 * temporary directory takes it, buffered elsewhere.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "errcodes.h"
#include "util.h"

#define NRUN 40
#define MAXRAW (64u << 10)

struct rec {
	struct bv_chunk_loc loc;
	bv_fp fp;
	uint8_t raw[MAXRAW];
	uint32_t raw_len;
};

static char dir[512];
static uint8_t secret[BV_SECRET_SIZE];
static const uint8_t store_id[16] = "bvault-unit-test";
static struct rec recs[3 * NRUN + 8];
static size_t nrecs;
static uint8_t encbuf[MAXRAW + MAXRAW / 128 + 64];

static struct bv_cset_opts opts(void)
{
	return (struct bv_cset_opts){
		.container_max = 1u << 20,
		.secret = secret,
		.store_id = store_id,
	};
}

static void make(struct rec *x)
{
	x->raw_len = 4096u * (1 + (uint32_t)(ut_rand() % 16));
	ut_fill_random(x->raw, x->raw_len);
	if (ut_rand() % 3)
		ut_fill_text(x->raw, x->raw_len / (1 + ut_rand() % 4));
	bv_fp_compute(secret, x->raw, x->raw_len, &x->fp);
}

/* Builds N new records into RUN (CAP bytes); returns the run length. */
static size_t build_run(uint8_t *run, size_t cap, size_t n)
{
	size_t used = 0;

	for (size_t i = 0; i < n; i++) {
		struct rec *x = &recs[nrecs++];
		uint8_t codec;
		int64_t k;

		make(x);
		k = bv_codec_encode(x->raw, x->raw_len, encbuf,
				    bv_codec_work_bound(x->raw_len), &codec);
		if (k <= 0 || used + bv_rec_size((uint32_t)k) > cap)
			bail_out("build_run");
		x->loc.codec = codec;
		x->loc.stored_len = (uint32_t)k;
		x->loc.raw_len = x->raw_len;
		x->loc.offset = used; /* in the run, until appended */
		used += (size_t)bv_rec_build(run + used, &x->fp, codec, encbuf,
					     (uint32_t)k, x->raw_len);
	}
	return used;
}

static void place(size_t from, size_t to, uint32_t cid, uint64_t base)
{
	for (size_t i = from; i < to; i++) {
		recs[i].loc.container = cid;
		recs[i].loc.offset += base;
	}
}

static int read_all(struct bv_cset *cs, struct bv_ring *r)
{
	static uint8_t out[MAXRAW], scratch[MAXRAW + 4096];
	int same = 1;

	for (size_t i = 0; i < nrecs; i++) {
		struct bv_chunk_read rd = { .loc = recs[i].loc,
					    .fp = recs[i].fp, .out = out,
					    .scratch = scratch };
		if (bv_cset_read(cs, r, &rd, 1) != 0 || rd.res != 0 ||
		    memcmp(out, recs[i].raw, recs[i].raw_len) != 0) {
			diag("record %zu (container %u offset %llu) does not "
			     "read back", i, recs[i].loc.container,
			     (unsigned long long)recs[i].loc.offset);
			same = 0;
		}
	}
	return same;
}

static int count_cb(void *ud, const struct bv_chunk_loc *loc,
		    const bv_fp *fp)
{
	size_t *n = ud;

	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].loc.container == loc->container &&
		    recs[i].loc.offset == loc->offset &&
		    bv_fp_equal(&recs[i].fp, fp))
			++*n;
	return 0;
}

/* One run of LEN bytes of records at RUN (page aligned, CAP bytes), padded
 * to a page and appended as one segment, with the checks the removed
 * single-run call made. */
static int append_run(struct bv_cset *cs, struct bv_ring *r, uint8_t *run,
		      size_t len, size_t cap, uint32_t *cid, uint64_t *base)
{
	size_t plen = (len + 4095) & ~(size_t)4095;

	if (len == 0 || len % 16 != 0 || cap < plen ||
	    (uintptr_t)run % 4096 != 0)
		return ST_EINVAL;
	memset(run + len, 0, plen - len);
	struct iovec seg = { run, plen };
	return bv_cset_appendv(cs, r, &seg, 1, cid, base);
}

int main(void)
{
	struct bv_cset_opts o = opts();
	struct bv_cset *cs = NULL;
	struct bv_ring *r = NULL;
	size_t cap = 4u << 20, len, from;
	uint8_t *run;
	uint32_t cid, cid2, tid, tid2;
	uint64_t base, base2, tend, tend2;

	ut_seed(777);
	if (bv_ring_new(64, &r) != 0)
		skip_all("io_uring not available");
	if (posix_memalign((void **)&run, 4096, cap + 4096))
		bail_out("memory");
	bv_secret_generate(secret);
	ut_tmpdir(dir, sizeof(dir), "append");
	strcat(dir, "/c");
	is_int(bv_cset_create_dir(dir), 0, "create dir");
	is_int(bv_cset_open(dir, &o, 0, 0, &cs), 0, "open empty");

	/* A few staged records first: the run must go after them. */
	for (int i = 0; i < 3; i++) {
		struct rec *x = &recs[nrecs++];
		uint8_t codec;
		int64_t k;

		make(x);
		k = bv_codec_encode(x->raw, x->raw_len, encbuf, sizeof encbuf,
				    &codec);
		if (k <= 0 || ut_append_one(cs, r, &x->fp, codec, encbuf,
					    (uint32_t)k, x->raw_len,
					    &x->loc))
			bail_out("append");
	}
	from = nrecs;
	len = build_run(run, cap, 8);
	is_int(append_run(cs, r, run, len, cap, &cid, &base), 0,
	       "append a run after staged records");
	is_int(base % 4096, 0, "the run starts on a page");
	ok(cid == recs[0].loc.container && base > recs[2].loc.offset,
	   "in the same container, after the staged records");
	place(from, nrecs, cid, base);
	is_int(bv_cset_flush(cs, r, &tid, &tend), 0, "flush");
	ok(read_all(cs, r), "every record reads back");

	/* Runs until one no longer fits the 1 MiB container. */
	int rolled = 0;
	for (int k = 0; k < 8 && !rolled; k++) {
		from = nrecs;
		len = build_run(run, cap, 8);
		if (append_run(cs, r, run, len, cap, &cid2, &base2))
			bail_out("append");
		place(from, nrecs, cid2, base2);
		rolled = cid2 != cid;
	}
	ok(rolled && base2 == BV_CONTAINER_HDR,
	   "a run that does not fit starts a new container, after its "
	   "header");
	is_int(bv_cset_flush(cs, r, &tid, &tend), 0, "flush");
	ok(read_all(cs, r), "every record reads back across containers");

	/* A run in segments, as ingest's workers leave it: each segment
	 * on its own page-aligned place in the buffer, records end to end
	 * then zeros to a page. One vectored write puts them back to back. */
	struct iovec seg[3];
	size_t sfrom[4], slen[3], prefix = 0;
	for (int i = 0; i < 3; i++) {
		uint8_t *at = run + (size_t)i * (1u << 20);
		sfrom[i] = nrecs;
		size_t l = build_run(at, 1u << 20, 1 + (size_t)i);
		slen[i] = (l + 4095) & ~(size_t)4095;
		memset(at + l, 0, slen[i] - l);
		seg[i] = (struct iovec){ at, slen[i] };
	}
	sfrom[3] = nrecs;
	is_int(bv_cset_appendv(cs, r, seg, 3, &cid2, &base2), 0,
	       "append a run of three segments");
	is_int(base2 % 4096, 0, "it starts on a page");
	for (int i = 0; i < 3; i++) {
		place(sfrom[i], sfrom[i + 1], cid2, base2 + prefix);
		prefix += slen[i];
	}
	is_int(bv_cset_flush(cs, r, &tid, &tend), 0, "flush");
	ok(read_all(cs, r), "every record of the segments reads back");

	/* Bad segments change nothing. */
	seg[0] = (struct iovec){ run, 4096 };
	seg[1] = (struct iovec){ run + 8192 + 16, 4096 };
	is_int(bv_cset_appendv(cs, r, seg, 2, &cid, &base), ST_EINVAL,
	       "a segment that does not start on a page is refused");
	seg[1] = (struct iovec){ run + 8192, 4000 };
	is_int(bv_cset_appendv(cs, r, seg, 2, &cid, &base), ST_EINVAL,
	       "a segment that is not whole pages is refused");
	seg[1] = (struct iovec){ run + 8192, 0 };
	is_int(bv_cset_appendv(cs, r, seg, 2, &cid, &base), ST_EINVAL,
	       "an empty segment is refused");
	is_int(bv_cset_appendv(cs, r, seg, 0, &cid, &base), ST_EINVAL,
	       "no segments is refused");
	is_int(bv_cset_flush(cs, r, &tid2, &tend2), 0, "flush");
	ok(tid2 == tid && tend2 == tend, "the tail did not move");

	/* Bad arguments change nothing. */
	len = build_run(run, cap, 2);
	nrecs -= 2;
	is_int(append_run(cs, r, run + 16, len, cap, &cid, &base),
	       ST_EINVAL, "a run that is not page aligned is refused");
	is_int(append_run(cs, r, run, len - 8, cap, &cid, &base),
	       ST_EINVAL, "a length that is not whole records is refused");
	is_int(append_run(cs, r, run, len, len - 1, &cid, &base),
	       ST_EINVAL, "a buffer without room for the padding is refused");
	is_int(bv_cset_flush(cs, r, &tid2, &tend2), 0, "flush");
	ok(tid2 == tid && tend2 == tend, "the tail did not move");

	bv_cset_close(cs);
	cs = NULL;
	is_int(bv_cset_open(dir, &o, tid, tend, &cs), 0, "reopen at the tail");
	ok(read_all(cs, r), "every record reads back after a reopen");
	size_t found = 0;
	uint64_t bad;
	int scan_err = 0;
	for (uint32_t id = 1; id <= tid; id++)
		scan_err |= bv_cset_scan(cs, id, count_cb, &found, &bad);
	is_int(scan_err, 0, "every container scans clean");
	is_int((int64_t)found, (int64_t)nrecs, "a scan finds every record");

	bv_cset_close(cs);
	bv_ring_free(r);
	free(run);
	ut_rmtree(dir);
	return done_testing();
}
