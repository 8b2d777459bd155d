/*
 * ident.c: version identities (engine/STREAM.md, "Version identities").
 * A stream applies only to the history it was made from: a diff from
 * another store's replica of the same name but another history is
 * refused, naming both identities, and changes nothing; a chain of diffs
 * rebuilds a history in a new store with the same identities, so that
 * diffs go back and forth between the copies; a renumbered base (--base)
 * does not get a stream into another history; streams without identities
 * (version 1) are checked by RP number as before.
 */
#include <sys/mman.h>

#include <xxhash.h>

#include "tap.h"
#include "etest.h"

#define SIZE (1u << 20)
#define NAME "vm1"

static char *dir;
static et_rng rng;

/* ---- helpers ------------------------------------------------------- */

static char *hex(const uint8_t id[BV_ID_SIZE], char buf[33])
{
	for (int i = 0; i < BV_ID_SIZE; i++)
		snprintf(buf + 2 * i, 3, "%02x", id[i]);
	return buf;
}

static int is_none(const uint8_t id[BV_ID_SIZE])
{
	static const uint8_t zero[BV_ID_SIZE];
	return !memcmp(id, zero, BV_ID_SIZE);
}

static bv_store *new_store(const char *name)
{
	return et_new_store(dir, name);
}

struct rp_id {
	uint64_t rp;
	uint8_t id[BV_ID_SIZE];
	int found;
	uint64_t count;
};

static int rp_id_cb(void *ud, const bv_rp_info *rp)
{
	struct rp_id *q = ud;
	q->count++;
	if (rp->number == q->rp) {
		memcpy(q->id, rp->id, BV_ID_SIZE);
		q->found = 1;
	}
	return 0;
}

/* Identity of NAME's version at RP of S (all zero when unknown). */
static void rp_ident(bv_store *s, uint64_t rp, uint8_t id[BV_ID_SIZE])
{
	struct rp_id q = { .rp = rp };
	ET_MUST(s, bv_rp_list(s, NAME, rp_id_cb, &q));
	if (!q.found)
		bail_out("no such RP");
	memcpy(id, q.id, BV_ID_SIZE);
}

static uint64_t rp_count(bv_store *s)
{
	struct rp_id q = { .rp = 0 };
	ET_MUST(s, bv_rp_list(s, NAME, rp_id_cb, &q));
	return q.count;
}

/* Ingests the stream in FD (from its start) and makes an RP. Returns the
 * engine's result; *RP the RP made. */
static int ingest_fd(bv_store *s, int fd, uint64_t *rp)
{
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	int rc, slot;

	*rp = 0;
	lseek(fd, 0, SEEK_SET);
	ET_MUST(s, bv_ingest_begin(s, &in));
	slot = bv_ingest_stream(in, fd, BV_FORMAT_BVAULT, NAME, 0, NULL, NULL,
				NULL, NULL);
	if (slot < 0) {
		bv_ingest_abort(in);
		return slot;
	}
	rc = bv_ingest_commit(in, &co, rp);
	return rc;
}

/* A memfd holding the diff NAME@A..NAME@B of S. */
static int diff_fd(bv_store *s, uint64_t a, uint64_t b, uint64_t over)
{
	int fd = memfd_create("diff", 0);
	if (fd < 0)
		bail_out("memfd_create");
	ET_MUST(s, bv_diff(s, NAME, a, b, over, fd, NULL, NULL));
	return fd;
}

/* A version 1 stream (the writer, no identities) of the whole IMG, base
 * RP BASE: what bvault mkstream makes. */
static int image_fd(const uint8_t *img, uint64_t base)
{
	bv_stream_header h = { .replica = NAME, .disk_size = SIZE,
			       .base_rp = base };
	bv_stream_writer *w;
	int fd = memfd_create("img", 0);
	if (fd < 0 || bv_stream_writer_open(fd, &h, &w) ||
	    bv_stream_write_data(w, 0, img, SIZE) ||
	    bv_stream_writer_finish(w))
		bail_out("writing an image stream");
	return fd;
}

/* Changes a few random 4 KiB blocks of IMG. */
static void change(uint8_t *img, int blocks)
{
	for (int i = 0; i < blocks; i++)
		et_fill(&rng, img + et_below(&rng, SIZE / 4096) * 4096, 4096);
}

/* Commits IMG's changed blocks into S's NAME as a new RP, through the
 * session API (no stream: a fresh identity). */
static uint64_t commit_image(bv_store *s, const uint8_t *img)
{
	bv_replica_info ri;
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp, latest = 0;
	int slot;

	if (bv_replica_info_get(s, NAME, &ri) == 0)
		latest = ri.latest_rp;
	ET_MUST(s, bv_ingest_begin(s, &in));
	slot = bv_ingest_add(in, NAME, latest, SIZE);
	ET_MUST(s, slot);
	ET_MUST(s, bv_ingest_write(in, slot, 0, img, SIZE));
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
	return rp;
}

/* ---- tests --------------------------------------------------------- */

struct hist {
	uint8_t *img[5]; /* the image at RP i (1-based; [0] unused) */
};

/* Store A: RP 1, 2, 3 of vm1, each from the last with a few changes. */
static bv_store *make_a(struct hist *h)
{
	bv_store *a = new_store("a");
	for (int i = 1; i <= 3; i++) {
		h->img[i] = malloc(SIZE);
		if (i == 1)
			et_fill(&rng, h->img[i], SIZE);
		else
			memcpy(h->img[i], h->img[i - 1], SIZE);
		change(h->img[i], 4);
		if (commit_image(a, h->img[i]) != (uint64_t)i)
			bail_out("store A: RP numbers");
	}
	return a;
}

/* Store B: the same replica name, seeded from another image (as the user
 * of the issue did with mkstream), RP 1. A's diff RP 1..2 is refused. */
static void test_other_history(bv_store *a, const struct hist *h)
{
	bv_store *b = new_store("b");
	uint8_t *other = malloc(SIZE), aid[BV_ID_SIZE];
	bv_replica_info ri;
	char ha[33], hb[33];
	uint64_t rp;
	int fd, rc;

	et_fill(&rng, other, SIZE);
	fd = image_fd(other, 0);
	is_int(ingest_fd(b, fd, &rp), 0, "B: seeded from another image (v1)");
	close(fd);
	ET_MUST(b, bv_replica_info_get(b, NAME, &ri));
	ok(!is_none(ri.head_id), "B's version has an identity of its own: %s",
	   hex(ri.head_id, hb));
	rp_ident(a, 1, aid);
	ok(memcmp(aid, ri.head_id, BV_ID_SIZE) != 0,
	   "A@1 and B@1 have different identities");

	fd = diff_fd(a, 1, 2, BV_RP_LATEST);
	rc = ingest_fd(b, fd, &rp);
	close(fd);
	is_int(rc, BV_EBASE, "A's diff RP 1..2 into B: BV_EBASE");
	ok(strstr(bv_store_error(b), hex(aid, ha)) &&
	   strstr(bv_store_error(b), hex(ri.head_id, hb)) &&
	   strstr(bv_store_error(b), NAME),
	   "the message names both identities and the replica: %s",
	   bv_store_error(b));
	is_int(rp_count(b), 1, "B still has one RP");
	ok(et_export_eq(b, NAME, 1, dir, other, SIZE), "B@1 is unchanged");
	ok(et_export_eq(b, NAME, 0, dir, other, SIZE), "and so is its head");
	(void)h;
	free(other);
	bv_store_close(b);
}

/* A chain of diffs from A into a new store C: C's versions take A's
 * identities; a diff made by C applies back to A. */
static void test_chain(bv_store *a, struct hist *h)
{
	bv_store *c = new_store("c");
	uint8_t ida[BV_ID_SIZE], idc[BV_ID_SIZE];
	int good = 1, fd, rc;
	uint64_t rp;

	for (uint64_t i = 1; i <= 3; i++) {
		fd = diff_fd(a, i - 1, i, BV_RP_LATEST);
		rc = ingest_fd(c, fd, &rp);
		close(fd);
		if (rc || rp != i) {
			diag("diff %" PRIu64 "..%" PRIu64 " into C: %d %s", i - 1,
			     i, rc, bv_store_error(c));
			good = 0;
			break;
		}
		rp_ident(a, i, ida);
		rp_ident(c, i, idc);
		if (is_none(ida) || memcmp(ida, idc, BV_ID_SIZE)) {
			diag("RP %" PRIu64 ": identities differ", i);
			good = 0;
		}
		if (!et_export_eq(c, NAME, i, dir, h->img[i], SIZE))
			good = 0;
	}
	ok(good, "the chain 0..1, 1..2, 2..3 rebuilds A in C with A's "
	   "identities");

	/* An RP made in C alone shifts its numbers: a later diff of A still
	 * applies, by identity (its base RP 3 is not C's latest, 4). */
	ET_MUST(c, bv_rp_create(c, NAME, "extra", 0, &rp));
	is_int(rp, 4, "C: an RP of its own, RP 4 (same version as RP 3)");

	/* A moves on to RP 4; its diff 3..4 names base RP 3. */
	h->img[4] = malloc(SIZE);
	memcpy(h->img[4], h->img[3], SIZE);
	change(h->img[4], 3);
	is_int(commit_image(a, h->img[4]), 4, "A: RP 4");
	fd = diff_fd(a, 3, 4, BV_RP_LATEST);
	rc = ingest_fd(c, fd, &rp);
	close(fd);
	is_int(rc, 0, "A's diff 3..4 into C, whose latest RP is 4: accepted by "
	       "identity (%s)", bv_store_error(c));
	is_int(rp, 5, "C's RP 5");
	ok(et_export_eq(c, NAME, 5, dir, h->img[4], SIZE), "C@5 equals A@4");
	rp_ident(a, 4, ida);
	rp_ident(c, 5, idc);
	ok(!memcmp(ida, idc, BV_ID_SIZE), "C@5 has A@4's identity");

	/* C goes on alone; its diff applies back to A. */
	uint8_t *img5 = malloc(SIZE);
	memcpy(img5, h->img[4], SIZE);
	change(img5, 5);
	is_int(commit_image(c, img5), 6, "C: RP 6, a change of its own");
	fd = diff_fd(c, 5, 6, BV_RP_LATEST);
	rc = ingest_fd(a, fd, &rp);
	close(fd);
	is_int(rc, 0, "C's diff 5..6 applies to A (latest RP 4) by identity "
	       "(%s)", bv_store_error(a));
	ok(rp == 5 && et_export_eq(a, NAME, 5, dir, img5, SIZE),
	   "A@5 equals C@6");
	rp_ident(a, 5, ida);
	rp_ident(c, 6, idc);
	ok(!memcmp(ida, idc, BV_ID_SIZE), "with C@6's identity");
	for (uint64_t i = 1; i <= 4; i++)
		if (!et_export_eq(a, NAME, i, dir, h->img[i], SIZE))
			good = 0;
	ok(good, "A's older RPs are unchanged");

	/* The same diff again: its base is no longer A's head. */
	fd = diff_fd(c, 5, 6, BV_RP_LATEST);
	rc = ingest_fd(a, fd, &rp);
	close(fd);
	is_int(rc, BV_EBASE, "the same diff again: BV_EBASE");
	is_int(rp_count(a), 5, "A still has 5 RPs");

	/* A diff between two RPs that name one version (C@3 and C@4)
	 * changes nothing and carries the identity on. */
	fd = diff_fd(c, 3, 4, BV_RP_LATEST);
	{
		bv_store *d = new_store("d");
		int fd0 = diff_fd(c, 0, 3, BV_RP_LATEST);
		is_int(ingest_fd(d, fd0, &rp), 0, "D: full copy of C@3");
		close(fd0);
		is_int(ingest_fd(d, fd, &rp), 0, "D: C's diff 3..4 (no change)");
		rp_ident(c, 4, idc);
		rp_ident(d, 2, ida);
		ok(!memcmp(ida, idc, BV_ID_SIZE), "D@2 has C@4's identity");
		fd0 = diff_fd(c, 4, 5, BV_RP_LATEST);
		is_int(ingest_fd(d, fd0, &rp), 0, "then C's diff 4..5 applies");
		close(fd0);
		ok(et_export_eq(d, NAME, 3, dir, h->img[4], SIZE),
		   "D@3 equals C@5");
		bv_store_close(d);
	}
	close(fd);
	free(img5);
	bv_store_close(c);
}

/* A renumbered base does not get a stream into another history: E has
 * three RPs of its own, and A's diff 1..2 claiming base RP 3 is refused. */
static void test_base_override(bv_store *a)
{
	bv_store *e = new_store("e");
	uint8_t *img = malloc(SIZE);
	bv_replica_info ri;
	char hb[33], msg[1024];
	uint64_t rp;
	int fd, rc;

	et_fill(&rng, img, SIZE);
	for (int i = 0; i < 3; i++) {
		change(img, 2);
		commit_image(e, img);
	}
	fd = diff_fd(a, 1, 2, 3);
	rc = ingest_fd(e, fd, &rp);
	close(fd);
	is_int(rc, BV_EBASE, "A's diff 1..2 with --base 3 into E (latest RP 3, "
	       "another history): BV_EBASE");
	snprintf(msg, sizeof msg, "%s", bv_store_error(e));
	ET_MUST(e, bv_replica_info_get(e, NAME, &ri));
	ok(strstr(msg, hex(ri.head_id, hb)) != NULL, "naming E's identity: %s",
	   msg);
	is_int(rp_count(e), 3, "E still has 3 RPs");
	ok(et_export_eq(e, NAME, 3, dir, img, SIZE), "E@3 unchanged");

	/* A base identity into a replica with no version. */
	bv_store *f = new_store("f");
	ET_MUST(f, bv_replica_create(f, NAME, SIZE, 0));
	fd = diff_fd(a, 1, 2, 0);
	rc = ingest_fd(f, fd, &rp);
	is_int(rc, BV_EBASE, "A's diff 1..2 with --base 0 into an empty "
	       "replica: BV_EBASE (%s)", bv_store_error(f));
	bv_store_close(f);
	f = new_store("f2");
	rc = ingest_fd(f, fd, &rp);
	is_int(rc, BV_EBASE, "and into a store without the replica: BV_EBASE "
	       "(%s)", bv_store_error(f));
	close(fd);
	bv_store_close(f);
	free(img);
	bv_store_close(e);
}

/* Version 1 streams: the RP-number check as before, and a fresh identity
 * for the version they make. Hand-made bytes (STREAM.md) as well as the
 * writer's. */
static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int handmade_v1(uint64_t base, const uint8_t *data)
{
	static const uint8_t magic[8] = { 'B', 'V', 'S', 'T', 'R', 'M', 0, 1 };
	uint8_t h[64], t[25];
	size_t n = 0, nl = strlen(NAME);
	int fd = memfd_create("v1", 0);
	XXH3_state_t *x = XXH3_createState();

	memcpy(h, magic, 8);
	put_le(h + 8, 1, 2);
	put_le(h + 10, 0, 2);
	h[12] = (uint8_t)nl;
	memcpy(h + 13, NAME, nl);
	n = 13 + nl;
	put_le(h + n, SIZE, 8);
	put_le(h + n + 8, base, 8);
	h[n + 16] = 0;
	put_le(h + n + 17, 1700000000, 8);
	n += 25;
	h[n] = 'D';
	put_le(h + n + 1, 8192, 8);
	put_le(h + n + 9, 4096, 8);
	n += 17;
	XXH3_64bits_reset(x);
	XXH3_64bits_update(x, h, n);
	XXH3_64bits_update(x, data, 4096);
	t[0] = 'E';
	put_le(t + 1, 1, 8);
	put_le(t + 9, 4096, 8);
	XXH3_64bits_update(x, t, 17);
	put_le(t + 17, XXH3_64bits_digest(x), 8);
	XXH3_freeState(x);
	if (write(fd, h, n) != (ssize_t)n || write(fd, data, 4096) != 4096 ||
	    write(fd, t, 25) != 25)
		bail_out("writing a v1 stream");
	return fd;
}

static void test_v1(void)
{
	bv_store *g = new_store("g");
	uint8_t *img = malloc(SIZE), block[4096], id1[BV_ID_SIZE],
		id2[BV_ID_SIZE], hdr[16];
	uint64_t rp;
	int fd, rc;

	et_fill(&rng, img, SIZE);
	et_fill(&rng, block, sizeof block);
	fd = image_fd(img, 0);
	ok(pread(fd, hdr, 16, 0) == 16 && hdr[8] == 1,
	   "the writer without identities writes version 1");
	is_int(ingest_fd(g, fd, &rp), 0, "a v1 full stream ingests");
	close(fd);
	rp_ident(g, 1, id1);
	ok(!is_none(id1), "its version gets a fresh identity");

	fd = handmade_v1(0, block);
	is_int(ingest_fd(g, fd, &rp), BV_EBASE,
	       "hand-made v1 stream with base RP 0, latest 1: BV_EBASE");
	ok(strstr(bv_store_error(g), "RP 0") &&
	   strstr(bv_store_error(g), "RP 1"),
	   "by RP number: %s", bv_store_error(g));
	close(fd);
	fd = handmade_v1(1, block);
	rc = ingest_fd(g, fd, &rp);
	is_int(rc, 0, "hand-made v1 stream with base RP 1 ingests (%s)",
	       bv_store_error(g));
	close(fd);
	memcpy(img + 8192, block, sizeof block);
	ok(rp == 2 && et_export_eq(g, NAME, 2, dir, img, SIZE),
	   "RP 2 has its data");
	rp_ident(g, 2, id2);
	ok(!is_none(id2) && memcmp(id1, id2, BV_ID_SIZE),
	   "and an identity of its own");
	free(img);
	bv_store_close(g);
}

/* A result identity that names an older version of the replica is
 * refused before anything is applied. */
static void test_result_taken(bv_store *a)
{
	uint8_t id1[BV_ID_SIZE];
	bv_replica_info ri;
	bv_stream_header h = { .replica = NAME, .disk_size = SIZE };
	bv_stream_writer *w;
	uint64_t rp, before = rp_count(a);
	int fd = memfd_create("dup", 0), rc;

	rp_ident(a, 1, id1);
	ET_MUST(a, bv_replica_info_get(a, NAME, &ri));
	memcpy(h.base_id, ri.head_id, BV_ID_SIZE);
	memcpy(h.result_id, id1, BV_ID_SIZE);
	h.base_rp = ri.latest_rp;
	if (bv_stream_writer_open(fd, &h, &w) ||
	    bv_stream_write_zero(w, 0, 4096) || bv_stream_writer_finish(w))
		bail_out("writing a stream");
	rc = ingest_fd(a, fd, &rp);
	close(fd);
	is_int(rc, BV_EEXIST, "a stream whose result identity is A@1's: "
	       "BV_EEXIST (%s)", bv_store_error(a));
	is_int(rp_count(a), before, "and A is unchanged");
}

int main(void)
{
	struct hist h = { { 0 } };
	bv_store *a;

	rng.s = et_seed(20261201);
	dir = et_tmpdir("ident");
	a = make_a(&h);
	test_other_history(a, &h);
	test_chain(a, &h);
	test_base_override(a);
	test_v1();
	test_result_taken(a);
	bv_store_close(a);
	for (int i = 1; i <= 4; i++)
		free(h.img[i]);
	et_tmpdir_done(dir);
	return done_testing();
}
