/*
 * gctest.h: what the GC tests share: a store with garbage of every kind
 * the engine leaves (aborted sessions, chunks a session wrote and then
 * overwrote, a session killed between a flush and its commit), a model
 * of every RP's bytes, and checks that every RP reads as its model.
 *
 * Images are a pure function of (seed, replica, RP), so that a child
 * process and its parent agree without passing them around.
 */
#ifndef BV_TEST_GCTEST_H
#define BV_TEST_GCTEST_H

#include "internal.h"
#include "etest.h"

#define GT_CHUNK 16384u
#define GT_DISK (1u << 20)
#define GT_NREP 2
#define GT_MAXRP 128
#define GT_CMAX "2097152" /* small containers: several, each with
				 * live and dead records */

static const char *const gt_names[GT_NREP] = { "ra", "rb" };

struct gt_model {
	uint64_t seed;
	int nrp[GT_NREP];                   /* RPs 1..nrp */
	uint8_t *img[GT_NREP][GT_MAXRP + 1];
	uint64_t garbage;                   /* dead chunks made */
};

/* Version K of replica R changes some chunks of IMG: half of them
 * compressible, so that LZ4 records and raw records both occur. */
ET_UNUSED static void gt_change(const struct gt_model *m, int r, int k,
				uint8_t *img)
{
	et_rng g = { m->seed ^ ((uint64_t)r << 56) ^ ((uint64_t)k << 32) };
	int n = (int)et_range(&g, 3, 20);
	for (int i = 0; i < n; i++) {
		uint64_t c = et_below(&g, GT_DISK / GT_CHUNK);
		uint8_t *p = img + c * GT_CHUNK;
		et_fill(&g, p, GT_CHUNK);
		if (et_below(&g, 2))
			memset(p + GT_CHUNK / 4, (int)et_below(&g, 256),
			       GT_CHUNK / 2);
	}
}

/* Unique random bytes: chunks no one else has. */
ET_UNUSED static void gt_noise(uint64_t seed, uint8_t *buf, size_t len)
{
	et_rng g = { seed * 0x9e3779b97f4a7c15ull + 12345 };
	et_fill(&g, buf, len);
}

/* Commits the next RP of replica R (a full write: only the changed
 * chunks are new). */
ET_UNUSED static int gt_commit(bv_store *s, struct gt_model *m, int r)
{
	int k = m->nrp[r] + 1;
	uint8_t *img = malloc(GT_DISK);
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp = 0;
	int slot, rc;

	if (!img || k > GT_MAXRP)
		bail_out("gt_commit");
	if (k == 1)
		memset(img, 0, GT_DISK);
	else
		memcpy(img, m->img[r][k - 1], GT_DISK);
	gt_change(m, r, k, img);
	if ((rc = bv_ingest_begin(s, &in)) < 0)
		goto fail;
	if ((slot = rc = bv_ingest_add(in, gt_names[r], (uint64_t)k - 1,
				       k == 1 ? GT_DISK : 0)) < 0)
		goto abort;
	if ((rc = bv_ingest_write(in, slot, 0, img, GT_DISK)) < 0)
		goto abort;
	if ((rc = bv_ingest_commit(in, &co, &rp)) < 0)
		goto fail;
	m->img[r][k] = img;
	m->nrp[r] = k;
	return 0;
abort:
	bv_ingest_abort(in);
fail:
	free(img);
	return rc;
}

/* Garbage: a session writes the whole disk of R with noise (handed over
 * and indexed when the second write comes), then COMMIT: overwrites it
 * with the next RP's image and commits (the noise chunks are then named
 * by no map entry), or not: aborts. Adds the dead chunks to the model. */
ET_UNUSED static int gt_garbage(bv_store *s, struct gt_model *m, int r,
				uint64_t salt, int commit)
{
	uint8_t *noise = malloc(GT_DISK);
	int k = m->nrp[r] + 1;
	uint8_t *img = malloc(GT_DISK);
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp = 0;
	int slot, rc;

	if (!noise || !img)
		bail_out("out of memory");
	gt_noise(m->seed ^ salt, noise, GT_DISK);
	if (k == 1)
		memset(img, 0, GT_DISK);
	else
		memcpy(img, m->img[r][k - 1], GT_DISK);
	gt_change(m, r, k, img);
	if ((rc = bv_ingest_begin(s, &in)) < 0)
		goto out;
	if ((slot = rc = bv_ingest_add(in, gt_names[r], (uint64_t)k - 1,
				       k == 1 ? GT_DISK : 0)) < 0)
		goto abort;
	if ((rc = bv_ingest_write(in, slot, 0, noise, GT_DISK)) < 0)
		goto abort;
	if ((rc = bv_ingest_write(in, slot, 0, img, GT_DISK)) < 0)
		goto abort;
	m->garbage += GT_DISK / GT_CHUNK;
	if (!commit) {
		bv_ingest_abort(in);
		rc = 0;
		goto out;
	}
	if ((rc = bv_ingest_commit(in, &co, &rp)) < 0)
		goto out;
	m->img[r][k] = img;
	m->nrp[r] = k;
	img = NULL;
	goto out;
abort:
	bv_ingest_abort(in);
out:
	free(noise);
	free(img);
	return rc;
}

/* Rebuilds the images of a model whose RPs were made by gt_commit and
 * gt_garbage in the order ORDER (replica index per RP made). */
ET_UNUSED static void gt_model_free(struct gt_model *m)
{
	for (int r = 0; r < GT_NREP; r++)
		for (int k = 0; k <= GT_MAXRP; k++) {
			free(m->img[r][k]);
			m->img[r][k] = NULL;
		}
}

/* Every RP of the model, bit for bit, through a reader (every byte, in
 * 256 KiB reads). Returns 1 when all read right. */
ET_UNUSED static int gt_check(bv_store *s, const struct gt_model *m)
{
	uint8_t *buf = malloc(256u << 10);
	int good = 1;
	if (!buf)
		bail_out("out of memory");
	for (int r = 0; r < GT_NREP && good; r++)
		for (int k = 1; k <= m->nrp[r] && good; k++) {
			bv_reader *rd = NULL;
			int rc = bv_reader_open(s, gt_names[r], (uint64_t)k, &rd);
			if (rc < 0) {
				diag("reader %s@%d: %s", gt_names[r], k,
				     bv_store_error(s));
				good = 0;
				break;
			}
			for (uint64_t off = 0; off < GT_DISK && good;
			     off += 256u << 10) {
				rc = bv_reader_pread(rd, buf, 256u << 10, off);
				if (rc < 0) {
					diag("pread %s@%d +%" PRIu64 ": %s",
					     gt_names[r], k, off,
					     bv_store_error(s));
					good = 0;
				} else if (memcmp(buf, m->img[r][k] + off,
						  256u << 10)) {
					diag("%s@%d differs in [%" PRIu64
					     ", +256 KiB)", gt_names[r], k,
					     off);
					good = 0;
				}
			}
			bv_reader_close(rd);
		}
	free(buf);
	return good;
}

/* The store's container bytes (files in containers/). */
ET_UNUSED static uint64_t gt_container_bytes(const char *dir, int *count)
{
	char cmd[4096];
	uint64_t bytes = 0;
	int n = 0;
	snprintf(cmd, sizeof cmd, "stat -c %%s %s/containers/*.bvc 2>/dev/null",
		 dir);
	FILE *f = popen(cmd, "r");
	unsigned long long v;
	while (f && fscanf(f, "%llu", &v) == 1) {
		bytes += v;
		n++;
	}
	if (f)
		pclose(f);
	if (count)
		*count = n;
	return bytes;
}

ET_UNUSED static void gt_report(const char *what, const bv_gc_report *g)
{
	diag("%s: %" PRIu64 " map entries, %" PRIu64 " chunks, %" PRIu64
	     " dead (%" PRIu64 " bytes); containers %" PRIu64 ": %" PRIu64
	     " rewritten, %" PRIu64 " retired, %" PRIu64 " removed, %" PRIu64
	     " waiting, %" PRIu64 " damaged; read %" PRIu64 ", written %"
	     PRIu64 ", reclaimed %" PRIu64, what, g->map_entries, g->chunks,
	     g->dead_chunks, g->dead_bytes, g->containers,
	     g->containers_rewritten, g->containers_retired,
	     g->containers_removed, g->containers_waiting,
	     g->containers_damaged, g->bytes_read, g->bytes_written,
	     g->bytes_reclaimed);
}

/* Runs GC to the end (until a run finds nothing to do), at most N runs;
 * returns the number of runs, or -1 on a failure. */
ET_UNUSED static int gt_gc_until_clean(bv_store *s, int n, uint64_t *dead)
{
	for (int i = 1; i <= n; i++) {
		bv_gc_report g;
		int rc = bv_gc(s, NULL, &g);
		if (rc < 0) {
			diag("gc: %s", bv_store_error(s));
			return -1;
		}
		if (dead)
			*dead += g.dead_chunks;
		if (g.dead_chunks == 0 && g.containers_rewritten == 0 &&
		    g.containers_retired == 0 && g.containers_removed == 0)
			return i;
	}
	return -1;
}

#endif
