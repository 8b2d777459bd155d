/*
 * engine-index: index backups taken while sessions commit on another
 * thread are each consistent (every RP a backup lists reads back bit for
 * bit from a copy of the store restored from it: nothing half of a
 * commit), and a restored store takes new commits. Backups are refused
 * through a read-only handle and into a directory that exists.
 */
#include <pthread.h>

#include "tap.h"
#include "etest.h"

#define DISK (4u << 20)
#define ROUNDS 12
#define BACKUPS 5

static char *dir;
static bv_store *st;
static uint8_t *model[ROUNDS + 1]; /* model[k]: the disk at RP k */
static _Atomic int done_rounds;

static void *writer(void *arg)
{
	et_rng r = { 7 };
	uint8_t *cur = calloc(1, DISK), *buf = malloc(256 << 10);

	(void)arg;
	for (int k = 1; k <= ROUNDS; k++) {
		bv_ingest *in = NULL;
		uint64_t rp = 0;
		int slot;

		ET_MUST(st, bv_ingest_begin(st, &in));
		ET_MUST(st, slot = bv_ingest_add(in, "d", (uint64_t)k - 1,
						 DISK));
		for (int w = 0; w < 6; w++) {
			uint64_t off = et_below(&r, DISK / 4096) * 4096;
			size_t len = (size_t)et_range(&r, 1, 64) * 4096;

			if (off + len > DISK)
				len = DISK - off;
			et_fill(&r, buf, len);
			memcpy(cur + off, buf, len);
			ET_MUST(st, bv_ingest_write(in, slot, off, buf, len));
		}
		bv_commit_opts co = { .make_rp = 1 };
		ET_MUST(st, bv_ingest_commit(in, &co, &rp));
		model[k] = malloc(DISK);
		memcpy(model[k], cur, DISK);
		done_rounds = k;
	}
	free(cur);
	free(buf);
	return NULL;
}

/* RP K of replica d in store S is model[K]. */
static int rp_is(bv_store *s, uint64_t k)
{
	bv_reader *rd = NULL;
	uint8_t *got = malloc(DISK);
	int ok = 0;

	if (bv_reader_open(s, "d", k, &rd) == 0 &&
	    bv_reader_pread(rd, got, DISK, 0) == 0)
		ok = memcmp(got, model[k], DISK) == 0;
	bv_reader_close(rd);
	free(got);
	return ok;
}

/* A copy of the store's containers and marker, with the index from
 * backup B. */
static char *restore_copy(int b, const char *bk, bv_index_backup_info *in)
{
	char *copy, cmd[8192], err[1024] = "", old[256];
	int rc;

	if (asprintf(&copy, "%s/copy%d", dir, b) < 0)
		bail_out("asprintf");
	snprintf(cmd, sizeof cmd, "mkdir -m 700 %s && cp -a %s/s/containers "
		 "%s/s/bvault.store %s/", copy, dir, dir, copy);
	if (system(cmd) != 0)
		bail_out("copy");
	rc = bv_index_restore(copy, bk, in, old, sizeof old, err, sizeof err);
	if (rc < 0)
		diag("restore %s: %s", bk, err);
	return rc < 0 ? NULL : copy;
}

int main(void)
{
	bv_index_backup_info info[BACKUPS];
	char *bk[BACKUPS], *s_path;
	pthread_t t;
	int rc;

	dir = et_tmpdir("index");
	s_path = et_path(dir, "s");
	et_init(s_path, 65536);
	st = et_open(s_path);
	pthread_create(&t, NULL, writer, NULL);
	for (int b = 0; b < BACKUPS; b++) {
		while (done_rounds < 1 + b * 2)
			usleep(1000);
		if (asprintf(&bk[b], "%s/bk%d", dir, b) < 0)
			bail_out("asprintf");
		ET_MUST(st, bv_index_backup(st, bk[b], &info[b]));
	}
	pthread_join(t, NULL);
	rc = bv_index_backup(st, bk[0], NULL);
	ok(rc == BV_EEXIST && strstr(bv_store_error(st), "exists already"),
	   "a backup into a directory that exists is refused (%d: %s)", rc,
	   bv_store_error(st));
	bv_store_close(st);

	{
		bv_open_opts ro = { .read_only = 1 };
		bv_store *r = NULL;
		char *p = et_path(dir, "robk");
		struct stat sb;

		ET_MUST(r, bv_store_open(s_path, &ro, &r));
		rc = bv_index_backup(r, p, NULL);
		ok(rc == BV_EREADONLY && stat(p, &sb) != 0,
		   "a read-only handle makes no backup (%d)", rc);
		bv_store_close(r);
		free(p);
	}

	for (int b = 0; b < BACKUPS; b++) {
		bv_index_backup_info in;
		char *copy = restore_copy(b, bk[b], &in);
		int all = 1;

		ok(copy != NULL && in.rps == info[b].rps &&
		   in.sequence == info[b].sequence,
		   "backup %d (%" PRIu64 " RPs) restores into a copy", b,
		   info[b].rps);
		if (!copy)
			continue;
		ok(info[b].rps >= (uint64_t)(1 + b * 2) &&
		   info[b].rps <= ROUNDS, "it holds the RPs made before it "
		   "(%" PRIu64 ")", info[b].rps);
		bv_store *c = et_open(copy);
		bv_replica_info ri;
		ET_MUST(c, bv_replica_info_get(c, "d", &ri));
		ok(ri.latest_rp == info[b].rps, "the copy's latest RP is the "
		   "backup's last (%" PRIu64 ")", ri.latest_rp);
		for (uint64_t k = 1; k <= info[b].rps; k++)
			all &= rp_is(c, k);
		ok(all, "every RP of backup %d reads back bit for bit", b);
		if (b == 0) {
			/* The restored store takes commits: RP n + 1. */
			bv_ingest *in2 = NULL;
			uint64_t rp = 0;
			int slot;
			uint8_t blk[4096];

			memset(blk, 0x5a, sizeof blk);
			ET_MUST(c, bv_ingest_begin(c, &in2));
			ET_MUST(c, slot = bv_ingest_add(in2, "d", ri.latest_rp,
							 0));
			ET_MUST(c, bv_ingest_write(in2, slot, 0, blk,
						    sizeof blk));
			bv_commit_opts co = { .make_rp = 1 };
			ET_MUST(c, bv_ingest_commit(in2, &co, &rp));
			ok(rp == ri.latest_rp + 1 && rp_is(c, 1),
			   "the restored store commits RP %" PRIu64 ", and "
			   "RP 1 still reads", rp);
		}
		bv_store_close(c);
		free(copy);
	}
	for (int b = 0; b < BACKUPS; b++)
		free(bk[b]);
	for (int k = 1; k <= ROUNDS; k++)
		free(model[k]);
	free(s_path);
	et_tmpdir_done(dir);
	return done_testing();
}
