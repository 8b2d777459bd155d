/*
 * push.c: the engine's pieces of bvault push, through bvault.h only:
 *  - bv_diff_sink_run hands out the header and records bv_diff writes
 *    (a stream written from them is byte for byte bv_diff's), also from
 *    a read-only handle;
 *  - bv_ingest_add_ids + bv_commit_opts.number copy a history with gaps
 *    (RP 2 removed) into a second store: the same numbers, identities,
 *    times, labels and bytes;
 *  - refusals change nothing and leave the session usable: a base
 *    identity of another history (BV_EBASE naming both), a result
 *    identity of an older version (BV_EEXIST), an RP number not above
 *    the group's latest or without an RP (BV_EINVAL).
 */
#include <sys/mman.h>

#include "tap.h"
#include "etest.h"

#define SIZE (1u << 20)
#define NAME "vm1"

static char *dir;
static et_rng rng;

static bv_store *new_store(const char *name)
{
	return et_new_store(dir, name);
}

struct rpv {
	uint64_t number;
	int64_t time;
	char label[BV_LABEL_MAX + 1];
	uint8_t id[BV_ID_SIZE];
};

struct rps {
	struct rpv v[16];
	int n;
};

static int rps_cb(void *ud, const bv_rp_info *rp)
{
	struct rps *l = ud;
	if (l->n < 16) {
		struct rpv *v = &l->v[l->n++];
		v->number = rp->number;
		v->time = rp->time;
		snprintf(v->label, sizeof v->label, "%s", rp->label);
		memcpy(v->id, rp->id, BV_ID_SIZE);
	}
	return 0;
}

static void list(bv_store *s, struct rps *l)
{
	memset(l, 0, sizeof *l);
	ET_MUST(s, bv_rp_list(s, NAME, rps_cb, l));
}

static int same_list(const struct rps *a, const struct rps *b)
{
	if (a->n != b->n)
		return 0;
	for (int i = 0; i < a->n; i++)
		if (a->v[i].number != b->v[i].number ||
		    a->v[i].time != b->v[i].time ||
		    strcmp(a->v[i].label, b->v[i].label) ||
		    memcmp(a->v[i].id, b->v[i].id, BV_ID_SIZE))
			return 0;
	return 1;
}

/* ---- a sink that writes a stream (the equivalence check) ---------- */

struct wsink {
	int fd;
	bv_stream_writer *w;
};

static int w_begin(void *ud, const struct bv_stream_header *h)
{
	struct wsink *k = ud;
	return bv_stream_writer_open(k->fd, h, &k->w);
}

static int w_data(void *ud, uint64_t off, const void *buf, size_t len)
{
	struct wsink *k = ud;
	return bv_stream_write_data(k->w, off, buf, len);
}

static int w_zero(void *ud, uint64_t off, uint64_t len)
{
	struct wsink *k = ud;
	return bv_stream_write_zero(k->w, off, len);
}

static int same_fd(int a, int b)
{
	off_t la = lseek(a, 0, SEEK_END), lb = lseek(b, 0, SEEK_END);
	int same = la == lb && la > 0;
	uint8_t *pa = malloc((size_t)la + 1), *pb = malloc((size_t)lb + 1);
	if (same && (pread(a, pa, (size_t)la, 0) != la ||
		     pread(b, pb, (size_t)lb, 0) != lb ||
		     memcmp(pa, pb, (size_t)la)))
		same = 0;
	free(pa);
	free(pb);
	return same;
}

/* ---- a sink that applies into a session (what push's remote does) - */

struct isink {
	bv_ingest *in;
	int slot;
	uint64_t base_rp;
	int add_rc;
};

static int i_begin(void *ud, const struct bv_stream_header *h)
{
	struct isink *k = ud;
	k->slot = bv_ingest_add_ids(k->in, h->replica, k->base_rp, h->base_id,
				    h->result_id, h->disk_size);
	if (k->slot < 0)
		return k->add_rc = k->slot;
	return bv_ingest_resize(k->in, k->slot, h->disk_size);
}

static int i_data(void *ud, uint64_t off, const void *buf, size_t len)
{
	struct isink *k = ud;
	return bv_ingest_write(k->in, k->slot, off, buf, len);
}

static int i_zero(void *ud, uint64_t off, uint64_t len)
{
	struct isink *k = ud;
	return bv_ingest_zero(k->in, k->slot, off, len);
}

/* Copies RP N of A (diffed from RP FROM) into B as RP N, with its time
 * and label. Returns the engine's result. */
static int copy_rp(bv_store *a, bv_store *b, uint64_t from, const struct rpv *v,
		   uint64_t base_rp)
{
	struct isink k = { .base_rp = base_rp };
	bv_diff_sink sink = { &k, i_begin, i_data, i_zero };
	bv_commit_opts co = { .make_rp = 1, .time = v->time,
			      .label = v->label, .number = v->number };
	uint64_t rp = 0;
	int rc;

	ET_MUST(b, bv_ingest_begin(b, &k.in));
	rc = bv_diff_sink_run(a, NAME, from, v->number, &sink, NULL, NULL);
	if (rc < 0) {
		bv_ingest_abort(k.in);
		return rc;
	}
	rc = bv_ingest_commit(k.in, &co, &rp);
	if (rc == 0 && rp != v->number)
		bail_out("committed under another number");
	return rc;
}

static void change(uint8_t *img, int blocks)
{
	for (int i = 0; i < blocks; i++)
		et_fill(&rng, img + et_below(&rng, SIZE / 4096) * 4096, 4096);
}

int main(void)
{
	uint8_t *img[5];
	struct rps la, lb, lb2;
	bv_store *a, *b;
	uint64_t rp;
	int rc, good;

	rng.s = et_seed(20261202);
	dir = et_tmpdir("push");
	a = new_store("a");
	b = new_store("b");

	/* A: RPs 1..4 of vm1 (zeros in RP 3, to have zero records), then RP
	 * 2 removed. */
	for (int i = 1; i <= 4; i++) {
		bv_ingest *in;
		bv_commit_opts co = { .make_rp = 1, .time = 1700000000 + i };
		char label[16];
		img[i] = malloc(SIZE);
		if (i == 1)
			et_fill(&rng, img[i], SIZE);
		else
			memcpy(img[i], img[i - 1], SIZE);
		change(img[i], 3);
		if (i == 3)
			memset(img[i] + 65536, 0, 3 * 65536);
		snprintf(label, sizeof label, "l-%d", i);
		co.label = label;
		ET_MUST(a, bv_ingest_begin(a, &in));
		int slot = bv_ingest_add(in, NAME, (uint64_t)i - 1, SIZE);
		ET_MUST(a, slot);
		ET_MUST(a, bv_ingest_write(in, slot, 0, img[i], SIZE));
		ET_MUST(a, bv_ingest_commit(in, &co, &rp));
	}
	ET_MUST(a, bv_rp_remove(a, NAME, 2, 0));
	list(a, &la);
	is_int(la.n, 3, "A: RPs 1, 3, 4 (2 removed)");

	/* The sink's records are bv_diff's stream. */
	good = 1;
	for (int i = 0; i < la.n; i++) {
		uint64_t from = i ? la.v[i - 1].number : 0;
		struct wsink k = { memfd_create("sink", 0), NULL };
		bv_diff_sink sink = { &k, w_begin, w_data, w_zero };
		int fd = memfd_create("diff", 0);
		ET_MUST(a, bv_diff(a, NAME, from, la.v[i].number, BV_RP_LATEST,
				   fd, NULL, NULL));
		ET_MUST(a, bv_diff_sink_run(a, NAME, from, la.v[i].number,
					    &sink, NULL, NULL));
		if (!k.w || bv_stream_writer_finish(k.w) || !same_fd(fd, k.fd))
			good = 0;
		close(fd);
		close(k.fd);
	}
	ok(good, "bv_diff_sink_run hands out bv_diff's stream, byte for byte");
	{
		bv_diff_sink none = { NULL, NULL, NULL, NULL };
		is_int(bv_diff_sink_run(a, NAME, 0, 1, &none, NULL, NULL),
		       BV_EINVAL, "a sink without data or zero: BV_EINVAL");
	}

	/* Copy RP 1 into B; then refusals on RP 3's session. */
	is_int(copy_rp(a, b, 0, &la.v[0], 0), 0, "B: RP 1 copied");
	{
		bv_ingest *in;
		uint8_t wrong[BV_ID_SIZE], none[BV_ID_SIZE] = { 0 };
		char hx[33];
		memset(wrong, 0x5a, sizeof wrong);
		ET_MUST(b, bv_ingest_begin(b, &in));
		rc = bv_ingest_add_ids(in, NAME, 1, wrong, none, 0);
		is_int(rc, BV_EBASE, "a base identity of another history: "
		       "BV_EBASE");
		for (int i = 0; i < BV_ID_SIZE; i++)
			snprintf(hx + 2 * i, 3, "%02x", la.v[0].id[i]);
		ok(strstr(bv_store_error(b), "5a5a5a5a") &&
		   strstr(bv_store_error(b), hx),
		   "naming both identities: %s", bv_store_error(b));
		rc = bv_ingest_add_ids(in, NAME, 1, la.v[0].id, la.v[0].id, 0);
		ok(rc >= 0, "the session goes on: the right base, the head's "
		   "own identity as result (%d)", rc);
		bv_ingest_abort(in);
	}
	/* A result identity naming an older version than the head. */
	{
		struct rpv v3 = la.v[1];
		is_int(copy_rp(a, b, 1, &v3, 1), 0, "B: RP 3 copied (number 3)");
		bv_ingest *in;
		ET_MUST(b, bv_ingest_begin(b, &in));
		rc = bv_ingest_add_ids(in, NAME, 3, la.v[1].id, la.v[0].id, 0);
		is_int(rc, BV_EEXIST, "a result identity of an older version: "
		       "BV_EEXIST (%s)", bv_store_error(b));
		rc = bv_ingest_add_ids(in, NAME, 3, la.v[1].id, la.v[2].id, 0);
		ok(rc >= 0, "then the right one is taken in the same session");
		bv_ingest_abort(in);
	}
	/* RP numbers: not above the latest, or without an RP. */
	list(b, &lb);
	{
		struct rpv v = la.v[2];
		v.number = 3;
		is_int(copy_rp(a, b, 3, &v, 3), BV_EINVAL,
		       "an RP number not above the latest: BV_EINVAL (%s)",
		       bv_store_error(b));
		bv_ingest *in;
		bv_commit_opts co = { .make_rp = 0, .number = 9 };
		ET_MUST(b, bv_ingest_begin(b, &in));
		ET_MUST(b, bv_ingest_add(in, NAME, 3, 0));
		is_int(bv_ingest_commit(in, &co, &rp), BV_EINVAL,
		       "an RP number without an RP: BV_EINVAL");
	}
	list(b, &lb2);
	ok(same_list(&lb, &lb2) && et_export_eq(b, NAME, 0, dir, img[3], SIZE),
	   "the refusals changed nothing in B");

	/* The rest of the history, then B against A. */
	is_int(copy_rp(a, b, 3, &la.v[2], 3), 0, "B: RP 4 copied");
	list(b, &lb);
	ok(same_list(&la, &lb), "B holds RPs 1, 3, 4 with A's numbers, times, "
	   "labels and identities");
	good = et_export_eq(b, NAME, 1, dir, img[1], SIZE) &&
	       et_export_eq(b, NAME, 3, dir, img[3], SIZE) &&
	       et_export_eq(b, NAME, 4, dir, img[4], SIZE);
	ok(good, "and each exports as in A");

	/* From a read-only handle of A, beside its writer. */
	{
		char *p = et_path(dir, "a");
		bv_open_opts o = { .read_only = 1 };
		bv_store *ro = NULL;
		struct wsink k = { memfd_create("ro", 0), NULL };
		bv_diff_sink sink = { &k, w_begin, w_data, w_zero };
		int fd = memfd_create("diff", 0);
		ET_MUST(ro, bv_store_open(p, &o, &ro));
		ET_MUST(a, bv_diff(a, NAME, 3, 4, BV_RP_LATEST, fd, NULL, NULL));
		rc = bv_diff_sink_run(ro, NAME, 3, 4, &sink, NULL, NULL);
		ok(rc == 0 && k.w && bv_stream_writer_finish(k.w) == 0 &&
		   same_fd(fd, k.fd), "a read-only handle runs it too");
		close(fd);
		close(k.fd);
		bv_store_close(ro);
		free(p);
	}

	for (int i = 1; i <= 4; i++)
		free(img[i]);
	bv_store_close(a);
	bv_store_close(b);
	et_tmpdir_done(dir);
	return done_testing();
}
