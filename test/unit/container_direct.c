/*
 * container_direct.c: the O_DIRECT write path of container files. With a
 * staging buffer of 8 MiB or more, the writer descriptor is O_DIRECT where
 * the file system takes it, and every write must be whole pages: a staging
 * buffer that fills in the middle of a flush period writes its whole pages
 * and keeps the partial last one, and a roll-over pads the closed
 * container to a page boundary. This test makes both happen many times
 * (rounds of ~12 MiB between flushes, 3 MiB containers), then reads every
 * record back, reopens at the tail, scans every container, and checks that
 * records staged after the last flush are gone after a reopen.
 * Skipped where the temporary directory does not take O_DIRECT (tmpfs).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "container.h"
#include "errcodes.h"
#include "util.h"

#define MAXREC 2048

struct rec {
	struct bv_chunk_loc loc;
	bv_fp fp;
	uint8_t *raw;
	uint32_t raw_len;
};

static char dir[256];
static uint8_t secret[BV_SECRET_SIZE];
static const uint8_t store_id[16] = "bvault-direct-ut";
static struct rec recs[MAXREC];
static size_t nrecs;
static uint8_t *encbuf;

static struct bv_cset_opts opts(void)
{
	return (struct bv_cset_opts){
		.container_max = 3u << 20,
		.secret = secret,
		.store_id = store_id,
	};
}

static int stage_one(struct bv_cset *cs, struct bv_ring *r, struct rec *x)
{
	uint32_t len = (uint32_t)(4096 + ut_rand() % (252u << 10)) & ~511u;
	uint8_t codec;
	int64_t n;

	x->raw = realloc(x->raw, len);
	x->raw_len = len;
	if (ut_rand() % 2)
		ut_fill_text(x->raw, len);
	else
		ut_fill_random(x->raw, len);
	bv_fp_compute(secret, x->raw, len, &x->fp);
	n = bv_codec_encode(x->raw, len, encbuf, 4u << 20, &codec);
	if (n <= 0)
		return (int)n;
	return ut_append_one(cs, r, &x->fp, codec, encbuf, (uint32_t)n, len,
			     &x->loc);
}

/* Reads records [0, N) back; returns how many differ or fail. */
static size_t read_back(struct bv_cset *cs, struct bv_ring *r, size_t n)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		struct bv_chunk_read rd = { .loc = recs[i].loc,
					    .fp = recs[i].fp };
		rd.out = malloc(recs[i].raw_len);
		rd.scratch = malloc(bv_rec_size(rd.loc.stored_len));
		if (bv_cset_read(cs, r, &rd, 1) != 0 ||
		    memcmp(rd.out, recs[i].raw, recs[i].raw_len) != 0)
			bad++;
		free(rd.out);
		free(rd.scratch);
	}
	return bad;
}

static size_t scanned;
static int count_rec(void *ud, const struct bv_chunk_loc *loc,
		     const bv_fp *fp)
{
	(void)ud;
	(void)loc;
	(void)fp;
	scanned++;
	return 0;
}

int main(void)
{
	struct bv_cset *cs = NULL;
	struct bv_ring *r = NULL;
	uint32_t tail_id = 0;
	uint64_t tail_end = 0;
	char probe[300], cdir[300];
	int fd, rc = 0;

	ut_seed(4711);
	ut_tmpdir(dir, sizeof dir, "direct");
	snprintf(probe, sizeof probe, "%s/probe", dir);
	fd = open(probe, O_WRONLY | O_CREAT | O_DIRECT, 0644);
	if (fd < 0) {
		ut_rmtree(dir);
		skip_all("the temporary directory does not take O_DIRECT");
	}
	close(fd);
	unlink(probe);
	snprintf(cdir, sizeof cdir, "%s/containers", dir);
	ut_fill_random(secret, sizeof secret);
	encbuf = malloc(4u << 20);
	if (bv_cset_create_dir(cdir) || bv_ring_new(64, &r))
		bail_out("setup");
	struct bv_cset_opts o = opts();
	ok(bv_cset_open(cdir, &o, 0, 0, &cs) == 0, "open an empty set");

	for (int round = 0; round < 3 && !rc; round++) {
		uint64_t staged = 0;
		while (staged < (12u << 20) && nrecs < MAXREC && !rc) {
			rc = stage_one(cs, r, &recs[nrecs]);
			staged += recs[nrecs].loc.stored_len;
			nrecs++;
		}
		if (!rc)
			rc = bv_cset_flush(cs, r, &tail_id, &tail_end);
	}
	ok(rc == 0, "three rounds of ~12 MiB staged and flushed (%zu records, "
	   "tail %u/%llu)", nrecs, tail_id, (unsigned long long)tail_end);
	ok(tail_id >= 8, "they roll over into %u containers", tail_id);
	is_int(tail_end % 4096, 0, "the durable tail is page-aligned");
	is_int(read_back(cs, r, nrecs), 0, "every record reads back");

	/* Staged past the tail, written out in part, never flushed: a crash
	 * here must lose them. */
	size_t committed = nrecs;
	for (int i = 0; i < 60 && nrecs < MAXREC; i++)
		stage_one(cs, r, &recs[nrecs++]);
	bv_cset_close(cs);
	cs = NULL;
	ok(bv_cset_open(cdir, &o, tail_id, tail_end, &cs) == 0,
	   "reopen at the durable tail");
	is_int(read_back(cs, r, committed), 0,
	       "every flushed record reads back after the reopen");
	uint64_t files = 0, bytes = 0;
	bv_cset_usage(cs, &files, &bytes);
	{
		const struct bv_cset_unknown *u;
		size_t nu = bv_cset_unknown_list(cs, &u);
		uint64_t past = 0;
		for (size_t i = 0; i < nu; i++)
			past += u[i].to - u[i].from;
		ok(files >= tail_id, "nothing removed: %llu containers, tail "
		   "%u (container.c C2)", (unsigned long long)files, tail_id);
		ok(nu > 0 && past > 0, "the bytes past the tail are listed "
		   "(%zu ranges, %llu bytes)", nu, (unsigned long long)past);
	}
	scanned = 0;
	int scan_ok = 1;
	for (uint32_t id = 1; id <= tail_id; id++) {
		uint64_t bad = 0;
		if (bv_cset_scan(cs, id, count_rec, NULL, &bad) != 0) {
			diag("container %u damaged at %llu", id,
			     (unsigned long long)bad);
			scan_ok = 0;
		}
	}
	ok(scan_ok, "every container scans clean (roll-over padding included)");
	ok(scanned >= committed, "the scans find every flushed record (%zu "
	   "of %zu, and what was written past the tail)", scanned, committed);

	/* Appending continues at the tail, page-aligned. */
	size_t before = nrecs = committed;
	rc = 0;
	for (int i = 0; i < 40 && !rc; i++)
		rc = stage_one(cs, r, &recs[nrecs++]);
	if (!rc)
		rc = bv_cset_flush(cs, r, &tail_id, &tail_end);
	ok(rc == 0 && nrecs > before, "appends after the reopen flush");
	is_int(read_back(cs, r, nrecs), 0, "old and new records read back");

	bv_cset_close(cs);
	bv_ring_free(r);
	for (size_t i = 0; i < MAXREC; i++)
		free(recs[i].raw);
	free(encbuf);
	ut_rmtree(dir);
	return done_testing();
}
