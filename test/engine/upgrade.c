/*
 * upgrade.c: a store made before version identities were kept (the code
 * up to commit 2ee33dd, store format 2) opens, ingests, and has
 * identities from its next version on; its old RPs export bit for bit
 * (storage/FORMAT.md, meta "v/").
 *
 * The suite cannot build old code, so the test makes the old store
 * itself: it fills a store through the engine, then removes every record
 * the older code did not write (the "v/" and "vi/" keys of the meta
 * column family, through the storage layer's kv.h) and checks that what
 * is left is the older layout only: the older code wrote the same
 * config, replica, group, RP and map records as this build, byte for
 * byte (the layouts of FORMAT.md did not change).
 */
#include <sys/mman.h>

#include "tap.h"
#include "etest.h"
#include "kv.h"

#define SIZE (1u << 20)
#define NAME "old"

static char *dir, *store;
static et_rng rng;
static uint8_t *img[5];

static int is_none(const uint8_t id[BV_ID_SIZE])
{
	static const uint8_t zero[BV_ID_SIZE];
	return !memcmp(id, zero, BV_ID_SIZE);
}

struct ids {
	uint64_t n;
	uint8_t id[8][BV_ID_SIZE];
};

static int ids_cb(void *ud, const bv_rp_info *rp)
{
	struct ids *q = ud;
	if (rp->number < 8)
		memcpy(q->id[rp->number], rp->id, BV_ID_SIZE);
	q->n++;
	return 0;
}

static void rp_ids(bv_store *s, struct ids *q)
{
	memset(q, 0, sizeof *q);
	ET_MUST(s, bv_rp_list(s, NAME, ids_cb, q));
}

static uint64_t commit_image(bv_store *s, const uint8_t *data,
			     uint64_t base)
{
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp;
	int slot;

	ET_MUST(s, bv_ingest_begin(s, &in));
	slot = bv_ingest_add(in, NAME, base, SIZE);
	ET_MUST(s, slot);
	ET_MUST(s, bv_ingest_write(in, slot, 0, data, SIZE));
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
	return rp;
}

/* Removes the identity records; counts what is left by kind. */
static void make_old(void)
{
	static const char *const old_prefix[] = {
		"config", "tail", "seq/", "stat/", "r/", "ri/", "g/", "gi/",
		"p/", "a/", "inflight/",
	};
	char *idx = et_path(store, "index");
	struct bv_kv_opts o = { 0 };
	struct bv_kv *kv = NULL;
	struct bv_kv_batch *b = NULL;
	struct bv_kv_iter *it = NULL;
	size_t removed = 0, unknown = 0, kept = 0, bad_rrec = 0;

	if (bv_kv_open(idx, &o, &kv) || bv_kv_batch_new(&b) ||
	    bv_kv_iter_new(kv, BV_CF_META, "", 0, NULL, 0, &it))
		bail_out("opening the index");
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl, i;
		const char *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		if ((kl > 2 && !memcmp(k, "v/", 2)) ||
		    (kl > 3 && !memcmp(k, "vi/", 3))) {
			bv_kv_batch_delete(b, BV_CF_META, k, kl);
			removed++;
			continue;
		}
		/* Newer than identities too: births (lifecycle.c) and the
		 * journal's records (FORMAT.md, "The index journal"), which
		 * the older code did not write either (journal/ itself is
		 * removed below, as a store of then had none). */
		if ((kl > 3 && !memcmp(k, "bf/", 3)) ||
		    (kl == 7 && !memcmp(k, "bfstart", 7)) ||
		    (kl == 4 && !memcmp(k, "jlsn", 4)) ||
		    (kl == 5 && !memcmp(k, "jsnap", 5)) ||
		    /* and GC's (engine/gc.c): the container size, the
		     * generation, retired containers */
		    (kl == 5 && !memcmp(k, "csize", 5)) ||
		    (kl > 3 && !memcmp(k, "gc/", 3)) ||
		    /* and the dedup scope (absent: store) */
		    (kl == 5 && !memcmp(k, "dedup", 5))) {
			bv_kv_batch_delete(b, BV_CF_META, k, kl);
			continue;
		}
		for (i = 0; i < sizeof old_prefix / sizeof *old_prefix; i++)
			if (kl >= strlen(old_prefix[i]) &&
			    !memcmp(k, old_prefix[i], strlen(old_prefix[i])))
				break;
		if (i == sizeof old_prefix / sizeof *old_prefix)
			unknown++;
		if (kl > 2 && !memcmp(k, "r/", 2) && (vl != 37 || v[0] != 1))
			bad_rrec++;
		kept++;
	}
	if (bv_kv_iter_status(it) || bv_kv_write(kv, b, 1))
		bail_out("rewriting the index");
	ok(removed == 2 * 3, "removed the %zu identity records of 3 versions",
	   removed);
	ok(unknown == 0 && bad_rrec == 0,
	   "what is left (%zu records) is the older layout only", kept);
	bv_kv_iter_free(it);
	bv_kv_batch_free(b);
	bv_kv_close(kv);
	free(idx);
	{
		char *j = et_path(store, "journal");
		et_rm_rf(j);
		free(j);
	}
}

/* A version 2 stream naming base identity BASE_ID (unknown to the store)
 * and result RESULT_ID, from BASE_RP, writing DATA at 0. */
static int v2_fd(uint64_t base_rp, const uint8_t *base_id,
		 const uint8_t *result_id, const uint8_t *data)
{
	bv_stream_header h = { .replica = NAME, .disk_size = SIZE,
			       .base_rp = base_rp };
	bv_stream_writer *w;
	int fd = memfd_create("v2", 0);

	memcpy(h.base_id, base_id, BV_ID_SIZE);
	memcpy(h.result_id, result_id, BV_ID_SIZE);
	if (fd < 0 || bv_stream_writer_open(fd, &h, &w) ||
	    bv_stream_write_data(w, 0, data, 4096) ||
	    bv_stream_writer_finish(w))
		bail_out("writing a stream");
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static int ingest(bv_store *s, int fd, uint64_t *rp)
{
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1 };
	int slot;

	ET_MUST(s, bv_ingest_begin(s, &in));
	lseek(fd, 0, SEEK_SET);
	slot = bv_ingest_stream(in, fd, BV_FORMAT_BVAULT, NULL, 0, NULL, NULL,
				NULL, NULL);
	if (slot < 0) {
		bv_ingest_abort(in);
		return slot;
	}
	return bv_ingest_commit(in, &co, rp);
}

int main(void)
{
	uint8_t base_id[BV_ID_SIZE], result_id[BV_ID_SIZE], hdr[16];
	bv_replica_info ri;
	struct ids q;
	bv_store *s;
	uint64_t rp;
	int fd, good = 1;

	rng.s = et_seed(7);
	dir = et_tmpdir("upgrade");
	store = et_path(dir, "store");
	et_init(store, 0);
	s = et_open(store);
	for (int i = 1; i <= 3; i++) {
		img[i] = malloc(SIZE);
		if (i == 1)
			et_fill(&rng, img[i], SIZE);
		else
			memcpy(img[i], img[i - 1], SIZE);
		et_fill(&rng, img[i] + (uint64_t)i * 65536, 8192);
		if (commit_image(s, img[i], (uint64_t)i - 1) != (uint64_t)i)
			bail_out("RP numbers");
	}
	bv_store_close(s);
	make_old();

	s = et_open(store);
	ET_MUST(s, bv_replica_info_get(s, NAME, &ri));
	ok(ri.head == 3 && is_none(ri.head_id),
	   "the old store opens; its head (version 3) has no identity");
	rp_ids(s, &q);
	ok(q.n == 3 && is_none(q.id[1]) && is_none(q.id[2]) &&
	   is_none(q.id[3]), "nor have its RPs");
	for (int i = 1; i <= 3; i++)
		good &= et_export_eq(s, NAME, (uint64_t)i, dir, img[i], SIZE);
	ok(good, "its RPs export bit for bit");
	fd = memfd_create("d", 0);
	ET_MUST(s, bv_diff(s, NAME, 1, 3, BV_RP_LATEST, fd, NULL, NULL));
	ok(pread(fd, hdr, 16, 0) == 16 && hdr[8] == 1,
	   "a diff between old RPs names no identity (version 1)");
	close(fd);

	/* A stream naming a base identity: the head has none, so the RP
	 * number decides. */
	et_fill(&rng, base_id, sizeof base_id);
	et_fill(&rng, result_id, sizeof result_id);
	img[4] = malloc(SIZE);
	memcpy(img[4], img[3], SIZE);
	et_fill(&rng, img[4], 4096);
	fd = v2_fd(2, base_id, result_id, img[4]);
	is_int(ingest(s, fd, &rp), BV_EBASE, "base RP 2, latest 3: BV_EBASE "
	       "(%s)", bv_store_error(s));
	close(fd);
	fd = v2_fd(3, base_id, result_id, img[4]);
	is_int(ingest(s, fd, &rp), 0, "base RP 3: ingests, by RP number (%s)",
	       bv_store_error(s));
	close(fd);
	is_int(rp, 4, "RP 4");
	rp_ids(s, &q);
	ok(!memcmp(q.id[4], result_id, BV_ID_SIZE),
	   "its version takes the stream's result identity");
	ok(is_none(q.id[3]), "the old versions stay unknown");
	ok(et_export_eq(s, NAME, 4, dir, img[4], SIZE), "RP 4 has its data");
	good = 1;
	for (int i = 1; i <= 3; i++)
		good &= et_export_eq(s, NAME, (uint64_t)i, dir, img[i], SIZE);
	ok(good, "the old RPs still export bit for bit");
	bv_store_close(s);

	/* Reopened, the identity is kept; the next version gets a fresh one
	 * and later streams are checked by identity. */
	s = et_open(store);
	rp_ids(s, &q);
	ok(!memcmp(q.id[4], result_id, BV_ID_SIZE), "kept across a reopen");
	memcpy(img[4] + 8192, img[1], 4096);
	is_int(commit_image(s, img[4], 4), 5, "a commit through the session "
	       "API: RP 5");
	rp_ids(s, &q);
	ok(!is_none(q.id[5]) && memcmp(q.id[5], result_id, BV_ID_SIZE),
	   "with a fresh identity");
	fd = v2_fd(5, base_id, result_id, img[1]);
	is_int(ingest(s, fd, &rp), BV_EBASE, "a stream naming another base "
	       "identity, base RP 5 = latest: BV_EBASE now (%s)",
	       bv_store_error(s));
	close(fd);
	bv_store_close(s);

	for (int i = 1; i <= 4; i++)
		free(img[i]);
	free(store);
	et_tmpdir_done(dir);
	return done_testing();
}
