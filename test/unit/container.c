/*
 * container.c: container files: staging and flushing across roll-overs,
 * verified reads, damage detection, rollback, reopen at a tail, scans,
 * failed I/O, concurrent readers, and the chunk location encoding.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "container.h"
#include "errcodes.h"
#include "util.h"

#define NREC 300
#define MAXRAW (200u << 10)

struct rec {
	struct bv_chunk_loc loc;
	bv_fp fp;
	uint8_t *raw;
	uint32_t raw_len;
};

static char dir[256];
static uint8_t secret[BV_SECRET_SIZE];
static const uint8_t store_id[16] = "bvault-unit-test";
static struct rec recs[NREC * 2];
static size_t nrecs;
static uint8_t encbuf[MAXRAW];
static struct bv_chunk_loc wrong_loc;

static struct bv_cset_opts opts(void)
{
	return (struct bv_cset_opts){
		.container_max = 256u << 10,
		.secret = secret,
		.store_id = store_id,
	};
}

/* Makes, encodes and stages one chunk of LEN bytes. */
static int stage_one(struct bv_cset *cs, struct bv_ring *r, struct rec *x,
		     uint32_t len)
{
	uint8_t codec;
	int64_t n;

	x->raw = realloc(x->raw, len);
	x->raw_len = len;
	if (ut_rand() % 2)
		ut_fill_text(x->raw, len);
	else
		ut_fill_random(x->raw, len);
	bv_fp_compute(secret, x->raw, len, &x->fp);
	n = bv_codec_encode(x->raw, len, encbuf, sizeof(encbuf), &codec);
	if (n <= 0)
		return (int)n;
	return ut_append_one(cs, r, &x->fp, codec, encbuf, (uint32_t)n, len,
			     &x->loc);
}

/* Reads records [FROM, TO) back in one call; 1 if all match. */
static int read_back(struct bv_cset *cs, struct bv_ring *r, size_t from,
		     size_t to, int *first_err)
{
	size_t n = to - from;
	struct bv_chunk_read *rd = calloc(n, sizeof(*rd));
	int same = 1;

	for (size_t i = 0; i < n; i++) {
		rd[i].loc = recs[from + i].loc;
		rd[i].fp = recs[from + i].fp;
		rd[i].out = malloc(recs[from + i].raw_len);
		rd[i].scratch = malloc(bv_rec_size(rd[i].loc.stored_len));
	}
	*first_err = bv_cset_read(cs, r, rd, n);
	for (size_t i = 0; i < n; i++) {
		if (rd[i].res != 0 ||
		    memcmp(rd[i].out, recs[from + i].raw,
			   recs[from + i].raw_len) != 0)
			same = 0;
		free(rd[i].out);
		free(rd[i].scratch);
	}
	free(rd);
	return same;
}

/* Reads one record; returns its result. */
static int read_one(struct bv_cset *cs, struct bv_ring *r,
		    const struct bv_chunk_loc *loc, const bv_fp *fp)
{
	struct bv_chunk_read rd = { .loc = *loc, .fp = *fp };
	int ret;

	rd.out = malloc(loc->raw_len);
	rd.scratch = malloc(bv_rec_size(loc->stored_len));
	ret = bv_cset_read(cs, r, &rd, 1);
	if (ret != rd.res)
		ret = -99999;
	free(rd.out);
	free(rd.scratch);
	return ret;
}

static off_t file_size(struct bv_cset *cs, uint32_t id)
{
	char path[512];
	struct stat st;

	bv_cset_path(cs, id, path, sizeof(path));
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void poke(struct bv_cset *cs, uint32_t id, uint64_t off, uint8_t x)
{
	char path[512];
	uint8_t b;
	int fd;

	bv_cset_path(cs, id, path, sizeof(path));
	fd = open(path, O_RDWR);
	if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1)
		bail_out("poke");
	b ^= x;
	if (pwrite(fd, &b, 1, (off_t)off) != 1)
		bail_out("poke");
	close(fd);
}

struct counter {
	size_t n;
	uint32_t id;
	int bad;
};

static int count_cb(void *ud, const struct bv_chunk_loc *loc,
		    const bv_fp *fp)
{
	struct counter *c = ud;
	int found = 0;

	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].loc.container == loc->container &&
		    recs[i].loc.offset == loc->offset)
			found = bv_fp_equal(&recs[i].fp, fp) &&
				recs[i].loc.stored_len == loc->stored_len;
	if (!found)
		c->bad++;
	c->n++;
	return 0;
}

static size_t expected_in(uint32_t id)
{
	size_t k = 0;

	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].loc.container == id)
			k++;
	return k;
}

struct reader {
	struct bv_cset *cs;
	int ok;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct bv_ring *r;
	int err;

	rd->ok = 0;
	if (bv_ring_new(32, &r) != 0)
		return NULL;
	rd->ok = 1;
	for (int round = 0; round < 5; round++)
		if (!read_back(rd->cs, r, 0, nrecs, &err) || err != 0)
			rd->ok = 0;
	bv_ring_free(r);
	return NULL;
}

static void test_loc(void)
{
	struct bv_chunk_loc a = { .container = 7, .offset = 123456 * 16,
				  .stored_len = 1000, .raw_len = 4096,
				  .codec = BV_CODEC_LZ4 }, b;
	uint8_t e[BV_LOC_SIZE];

	bv_chunk_loc_encode(&a, e);
	is_int(bv_chunk_loc_decode(e, sizeof(e), &b), 0, "loc round trip");
	ok(b.container == 7 && b.offset == a.offset && b.stored_len == 1000 &&
	   b.raw_len == 4096 && b.codec == BV_CODEC_LZ4, "loc fields");
	is_int(bv_chunk_loc_decode(e, sizeof(e) - 1, &b), ST_ECORRUPT,
	       "short loc");
	e[1] = 9;
	is_int(bv_chunk_loc_decode(e, sizeof(e), &b), ST_ECORRUPT,
	       "bad codec in loc");
	a.offset = 100;
	bv_chunk_loc_encode(&a, e);
	is_int(bv_chunk_loc_decode(e, sizeof(e), &b), ST_ECORRUPT,
	       "offset inside the file header");
	a.offset = 8192;
	a.codec = BV_CODEC_RAW;
	bv_chunk_loc_encode(&a, e);
	is_int(bv_chunk_loc_decode(e, sizeof(e), &b), ST_ECORRUPT,
	       "raw record with stored != raw");
}

int main(void)
{
	struct bv_cset_opts o;
	struct bv_cset *cs = NULL;
	struct bv_ring *r = NULL;
	uint32_t tid, tid2;
	uint64_t tend, tend2, files, bytes;
	char path[512];
	int err, fd;

	ut_seed(4242);
	if (bv_ring_new(64, &r) != 0)
		skip_all("io_uring not available");
	bv_secret_generate(secret);
	ut_tmpdir(dir, sizeof(dir), "cset");
	strcat(dir, "/c");
	is_int(bv_cset_create_dir(dir), 0, "create dir");
	is_int(bv_cset_create_dir(dir), 0, "create dir again is fine");
	test_loc();

	o = opts();
	is_int(bv_cset_open(dir, &o, 0, 0, &cs), 0, "open empty");
	is_int(bv_cset_flush(cs, r, &tid, &tend), 0, "flush with nothing");
	ok(tid == 0 && tend == 0, "tail of an empty set is 0/0");

	/* Many records over several containers; one over the staging
	 * buffer size (written around the buffer). */
	err = 0;
	for (size_t i = 0; i < NREC && err == 0; i++) {
		uint32_t len = 4096u * (1 + (uint32_t)(ut_rand() % 8));

		if (i == 17)
			len = MAXRAW;
		err = stage_one(cs, r, &recs[i], len);
		nrecs++;
	}
	is_int(err, 0, "staged %d records", NREC);
	ok(recs[17].loc.stored_len > (64u << 10) ||
	   recs[17].loc.codec == BV_CODEC_LZ4, "record 17 is large");
	is_int(bv_cset_flush(cs, r, &tid, &tend), 0, "flush");
	ok(tid > 2, "rolled over to container %u", tid);
	is_int(tend % 4096, 0, "flushed tail is page aligned");
	is_int(file_size(cs, tid), (long long)tend, "file ends at the tail");
	{
		int within = 1;

		for (size_t i = 0; i < nrecs; i++)
			if (recs[i].loc.offset + bv_rec_size(recs[i].loc.stored_len) >
				    o.container_max &&
			    recs[i].loc.offset != BV_CONTAINER_HDR)
				within = 0;
		ok(within, "no container passes container_max");
	}
	ok(read_back(cs, r, 0, nrecs, &err) && err == 0, "read all back");
	is_int(bv_cset_usage(cs, &files, &bytes), 0, "usage");
	is_int(files, tid, "one file per container");

	/* Scans see every record. */
	{
		int all = 1, bad = 0;

		for (uint32_t id = 1; id <= tid; id++) {
			struct counter c = { 0 };
			uint64_t off;

			if (bv_cset_scan(cs, id, count_cb, &c, &off) != 0 ||
			    c.n != expected_in(id))
				all = 0;
			bad += c.bad;
		}
		ok(all, "scan finds every record in every container");
		is_int(bad, 0, "scanned locations and fingerprints match");
	}

	/* Concurrent readers, each with its own ring. */
	{
		pthread_t t[4];
		struct reader rd[4];
		int all = 1;

		for (int i = 0; i < 4; i++) {
			rd[i].cs = cs;
			pthread_create(&t[i], NULL, reader_main, &rd[i]);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			all &= rd[i].ok;
		}
		ok(all, "4 threads read everything 5 times");
	}

	/* Damage. */
	{
		struct rec *x = &recs[5];
		struct counter c = { 0 };
		uint64_t bad_off = 0;
		bv_fp other = x->fp;

		other.b[0] ^= 1;
		is_int(read_one(cs, r, &x->loc, &other), ST_ECORRUPT,
		       "wrong expected fingerprint");
		is_int(read_one(cs, r, &recs[6].loc, &x->fp), ST_ECORRUPT,
		       "location of another record");

		poke(cs, x->loc.container, x->loc.offset + BV_REC_HDR + 10, 0x40);
		is_int(read_one(cs, r, &x->loc, &x->fp), ST_ECHECKSUM,
		       "payload byte flipped: checksum error");
		is_int(bv_cset_scan(cs, x->loc.container, count_cb, &c, &bad_off),
		       ST_ECORRUPT, "scan stops at the damaged record");
		is_int(bad_off, (long long)x->loc.offset, "and names its offset");
		ok(read_one(cs, r, &recs[4].loc, &recs[4].fp) == 0,
		   "its neighbour still reads");
		poke(cs, x->loc.container, x->loc.offset + BV_REC_HDR + 10, 0x40);
		is_int(read_one(cs, r, &x->loc, &x->fp), 0, "repaired");

		poke(cs, x->loc.container, x->loc.offset + 9, 0x01);
		is_int(read_one(cs, r, &x->loc, &x->fp), ST_ECHECKSUM,
		       "header byte flipped: header checksum error");
		poke(cs, x->loc.container, x->loc.offset + 9, 0x01);
		poke(cs, x->loc.container, x->loc.offset, 0xff);
		is_int(read_one(cs, r, &x->loc, &x->fp), ST_ECORRUPT,
		       "bad record magic");
		poke(cs, x->loc.container, x->loc.offset, 0xff);
		is_int(read_one(cs, r, &x->loc, &x->fp), 0, "repaired again");
	}

	/* A record whose bytes do not match its fingerprint (staged with a
	 * wrong one): the decoded bytes are checked, not just the header. */
	{
		struct rec *x = &recs[nrecs];
		bv_fp want;

		err = stage_one(cs, r, x, 8192);
		want = x->fp;
		x->raw[0] ^= 1;
		bv_fp_compute(secret, x->raw, 8192, &x->fp);
		x->raw[0] ^= 1;
		/* Restage the same bytes under the other fingerprint. */
		err |= ut_append_one(cs, r, &x->fp, BV_CODEC_RAW, x->raw, 8192,
				     8192, &x->loc);
		err |= bv_cset_flush(cs, r, &tid, &tend);
		is_int(err, 0, "staged a record under a wrong fingerprint");
		is_int(read_one(cs, r, &x->loc, &x->fp), ST_ECHECKSUM,
		       "fingerprint of decoded bytes checked");
		wrong_loc = x->loc;
		(void)want;
	}

	/* Rollback: staged and written-but-unflushed bytes go, containers
	 * made since the flush go. */
	{
		size_t before = nrecs;
		struct rec tmp[40];
		uint32_t last = 0;

		memset(tmp, 0, sizeof(tmp));
		err = 0;
		for (int i = 0; i < 40 && err == 0; i++) {
			err = stage_one(cs, r, &tmp[i], 32768);
			last = tmp[i].loc.container;
		}
		is_int(err, 0, "staged 1.25 MiB more");
		ok(last > tid, "into new containers (%u > %u)", last, tid);
		is_int(bv_cset_rollback(cs), 0, "rollback");
		is_int(file_size(cs, tid), (long long)tend, "tail file cut back");
		ok(file_size(cs, tid + 1) < 0, "containers above the tail gone");
		ok(read_back(cs, r, 0, before - 1, &err) && err == 0,
		   "flushed records still read");
		err = stage_one(cs, r, &recs[nrecs], 4096);
		is_int(err, 0, "stage after rollback");
		ok(recs[nrecs].loc.container == tid &&
		   recs[nrecs].loc.offset == tend, "appends continue at the tail");
		nrecs++;
		is_int(bv_cset_flush(cs, r, &tid, &tend), 0, "flush");
		for (int i = 0; i < 40; i++)
			free(tmp[i].raw);
	}

	/* Failed I/O breaks the set until rollback. */
	{
		struct rec tmp = { 0 };

		err = stage_one(cs, r, &tmp, 4096);
		bv_ring_fail_nth(BV_IO_FDATASYNC, 1, EIO);
		is_int(bv_cset_flush(cs, r, NULL, NULL), -EIO,
		       "flush reports the failed fdatasync");
		bv_ring_fail_nth(-1, 0, 0);
		is_int(stage_one(cs, r, &tmp, 4096), -EIO,
		       "stage refused while broken");
		is_int(bv_cset_flush(cs, r, NULL, NULL), -EIO,
		       "flush refused while broken");
		is_int(bv_cset_rollback(cs), 0, "rollback clears it");
		is_int(file_size(cs, tid), (long long)tend, "back at the tail");
		is_int(stage_one(cs, r, &tmp, 4096), 0, "stage works again");
		is_int(bv_cset_rollback(cs), 0, "rollback");
		free(tmp.raw);
	}

	/* Reopen at an older tail (a stale index): later bytes and
	 * containers are kept and listed, appends go above them (C2). */
	{
		size_t keep = nrecs;

		tid2 = tid;
		tend2 = tend;
		err = 0;
		for (int i = 0; i < 30 && err == 0; i++) {
			err = stage_one(cs, r, &recs[nrecs], 16384);
			nrecs++;
		}
		err |= bv_cset_flush(cs, r, &tid, &tend);
		is_int(err, 0, "flushed more (tail %u/%llu)", tid,
		       (unsigned long long)tend);
		ok(tid > tid2, "in new containers");
		bv_cset_close(cs);
		cs = NULL;
		is_int(bv_cset_open(dir, &o, tid2, tend2, &cs), 0,
		       "reopen at the older tail");
		ok(file_size(cs, tid2) > (long long)tend2, "tail file not cut");
		ok(file_size(cs, tid) > 0, "later containers kept");
		{
			const struct bv_cset_unknown *u;
			size_t nu = bv_cset_unknown_list(cs, &u);
			is_int(nu, 1 + (tid - tid2), "every range past the "
			       "tail listed");
			ok(nu > 0 && u[0].id == tid2 && u[0].from == tend2 &&
			   u[0].to == (uint64_t)file_size(cs, tid2),
			   "the tail container from the tail to its end");
		}
		ok(read_back(cs, r, 0, nrecs - 1, &err) && err == 0,
		   "every record reads after reopen, committed or not");
		nrecs = keep;
		is_int(bv_cset_flush(cs, r, &tid2, &tend2), 0, "flush");
		is_int(stage_one(cs, r, &recs[nrecs], 4096), 0, "stage one");
		ok(recs[nrecs].loc.container == tid + 1 &&
		   recs[nrecs].loc.offset == BV_CONTAINER_HDR,
		   "appends start a container above every other");
		is_int(bv_cset_rollback(cs), 0, "rollback");
		ok(file_size(cs, tid + 1) < 0 && file_size(cs, tid) > 0 &&
		   file_size(cs, tid2) > (long long)tend2,
		   "a rollback removes only what this set appended");
		bv_cset_close(cs);
		cs = NULL;
	}

	/* Bad tails. */
	{
		struct bv_cset *c2 = NULL;
		is_int(bv_cset_open(dir, &o, tid2, tend2, &c2), 0, "reopen");
		long long end = file_size(c2, tid2);
		bv_cset_close(c2);
		is_int(bv_cset_open(dir, &o, tid2, (uint64_t)end + 4096, &cs),
		       ST_ECORRUPT, "tail past the end of the file");
		ok(strstr(bv_cset_error(), ".bvc ends at offset") != NULL,
		   "the error names the file and the offset: %s",
		   bv_cset_error());
	}
	is_int(bv_cset_open(dir, &o, tid2 + 5, 8192, &cs), ST_ECORRUPT,
	       "tail in a missing container");
	is_int(bv_cset_open(dir, &o, 0, 4096, &cs), ST_EINVAL,
	       "tail 0 with an offset");
	{
		struct bv_cset_opts o2 = o;
		uint8_t other[16] = "another-store!!";

		o2.store_id = other;
		is_int(bv_cset_open(dir, &o2, tid2, tend2, &cs), ST_ECORRUPT,
		       "container of another store");
	}
	/* Scan of a torn container: bytes after the last record that are
	 * not padding. Container 1 was closed by a roll-over. */
	is_int(bv_cset_open(dir, &o, tid2, tend2, &cs), 0, "reopen");
	{
		struct counter c = { 0 };
		uint64_t bad_off = 0;
		off_t size1 = file_size(cs, 1);

		bv_cset_path(cs, 1, path, sizeof(path));
		fd = open(path, O_WRONLY | O_APPEND);
		ok(fd >= 0 && write(fd, "garbage!", 8) == 8, "append garbage");
		close(fd);
		is_int(bv_cset_scan(cs, 1, count_cb, &c, &bad_off),
		       ST_ECORRUPT, "scan finds the garbage");
		is_int(bad_off, (long long)size1, "at the old end");
		is_int(c.n, expected_in(1), "after every good record");
		c.n = 0;
		is_int(bv_cset_scan(cs, wrong_loc.container, count_cb, &c,
				    &bad_off),
		       ST_ECORRUPT, "scan checks fingerprints of decoded bytes");
		is_int(bad_off, (long long)wrong_loc.offset,
		       "and names the record staged under a wrong one");
	}
	bv_cset_close(cs);
	cs = NULL;

	/* Tail 0/0 on a directory with containers (an index that knows
	 * none of them): all kept and listed. */
	is_int(bv_cset_open(dir, &o, 0, 0, &cs), 0, "open at 0/0");
	is_int(bv_cset_usage(cs, &files, &bytes), 0, "usage");
	ok(files > 0, "no container removed (%llu)",
	   (unsigned long long)files);
	{
		const struct bv_cset_unknown *u;
		is_int(bv_cset_unknown_list(cs, &u), files,
		       "each listed as unknown");
	}
	bv_cset_close(cs);

	for (size_t i = 0; i < NREC * 2; i++)
		free(recs[i].raw);
	bv_ring_free(r);
	ut_tmpdir(path, sizeof(path), "x"); /* exercise: then remove both */
	ut_rmtree(path);
	dir[strlen(dir) - 2] = '\0';
	ut_rmtree(dir);
	return done_testing();
}
