/*
 * engine-view: writable copy-on-write views (bvault.h, "views";
 * INVARIANTS.md V1 to V5), through bvault.h only, every read compared
 * with a model of the view's disk kept here:
 *   - a view reads as its RP, byte for byte and extent for extent;
 *   - random writes, zeros and trims of any 512-aligned size (partial
 *     blocks, whole blocks, runs of both) read back as the model, and the
 *     RP still exports bit for bit as it was;
 *   - close and reopen keep everything; several views of one RP and of
 *     different RPs side by side stay apart;
 *   - a shrink then a grow reads zeros past the smaller size;
 *   - threads writing and reading one bv_view at once;
 *   - flush then kill -9 of a child that goes on writing: flushed data
 *     is there, unflushed blocks read old or new (V1 to V3);
 *   - views made, written and removed through a read-only store while a
 *     writer process ingests and makes RPs, whose RPs stay right;
 *   - promote as a new replica and into its replica, checked by export
 *     against the model, and what they store;
 *   - every bad argument: a clear error, nothing changed.
 */
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "etest.h"

#define DISK (8u << 20)
#define CHUNK 65536u
#define BLK BV_VIEW_BLOCK

static char *dir, *store_dir;
static uint8_t *img1, *img2;
static et_rng rng;

static void make_images(void)
{
	img1 = malloc(DISK);
	img2 = malloc(DISK);
	if (!img1 || !img2)
		bail_out("out of memory");
	et_fill(&rng, img1, DISK);
	/* zero chunks, and a run of them */
	memset(img1 + 3 * CHUNK, 0, CHUNK);
	memset(img1 + 20 * CHUNK, 0, 5 * CHUNK);
	/* repeated chunks */
	memcpy(img1 + 40 * CHUNK, img1, CHUNK);
	memcpy(img2, img1, DISK);
	for (int i = 0; i < 10; i++) {
		uint64_t c = et_below(&rng, DISK / CHUNK);
		et_fill(&rng, img2 + c * CHUNK, CHUNK);
	}
	memset(img2 + 50 * CHUNK, 0, 2 * CHUNK);
}

static void ingest_image(bv_store *s, const char *name, uint64_t base,
			 const uint8_t *img, uint64_t size)
{
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp;
	int slot;

	ET_MUST(s, bv_ingest_begin(s, &in));
	ET_MUST(s, slot = bv_ingest_add(in, name, base, size));
	ET_MUST(s, bv_ingest_write(in, slot, 0, img, size));
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
}

/* Compares the whole view with MODEL (SIZE bytes), then NREADS random
 * byte ranges. */
static int view_eq(bv_view *v, const uint8_t *model, uint64_t size,
		   int nreads, const char *what)
{
	uint8_t *buf = malloc(size ? size : 1);
	int good = 0, rc;

	if (!buf)
		bail_out("out of memory");
	if (bv_view_size(v) != size) {
		diag("%s: size %llu, want %llu", what,
		     (unsigned long long)bv_view_size(v),
		     (unsigned long long)size);
		goto out;
	}
	memset(buf, 0xa5, size);
	if ((rc = bv_view_pread(v, buf, size, 0)) < 0) {
		diag("%s: pread: %s", what, bv_store_error(NULL));
		goto out;
	}
	int64_t d = et_first_diff(buf, model, size);
	if (d >= 0) {
		diag("%s: first difference at %lld (got 0x%02x, want 0x%02x)",
		     what, (long long)d, buf[d], model[d]);
		goto out;
	}
	for (int i = 0; i < nreads; i++) {
		uint64_t off = et_below(&rng, size);
		uint64_t len = et_range(&rng, 1, size - off < 300000 ?
						     size - off : 300000);
		if ((rc = bv_view_pread(v, buf, len, off)) < 0) {
			diag("%s: pread %llu+%llu: %s", what,
			     (unsigned long long)off, (unsigned long long)len,
			     bv_store_error(NULL));
			goto out;
		}
		d = et_first_diff(buf, model + off, len);
		if (d >= 0) {
			diag("%s: pread %llu+%llu: difference at %llu", what,
			     (unsigned long long)off, (unsigned long long)len,
			     (unsigned long long)(off + (uint64_t)d));
			goto out;
		}
	}
	good = 1;
out:
	free(buf);
	return good;
}

/* The view's extents agree with MODEL: every run said to be zeros is
 * zeros, and every run of data holds a non-zero byte somewhere in each
 * of its 4 KiB pieces that are wholly inside it, or is all inside
 * blocks the model keeps as data (an overlay block written with zeros
 * is data, as a disk's would be). Only the zero claims are strict. */
static int extents_ok(bv_view *v, const uint8_t *model, uint64_t size)
{
	uint64_t off = 0;
	int n = 0;

	while (off < size) {
		uint64_t len = size - off;
		int k = bv_view_extent(v, off, &len);
		if (k < 0 || len == 0 || len > size - off) {
			diag("extent at %llu: %d %s", (unsigned long long)off, k,
			     bv_store_error(NULL));
			return 0;
		}
		if (k == 0) {
			for (uint64_t i = 0; i < len; i++)
				if (model[off + i]) {
					diag("extent %llu+%llu said zero, byte "
					     "%llu is not",
					     (unsigned long long)off,
					     (unsigned long long)len,
					     (unsigned long long)(off + i));
					return 0;
				}
		}
		off += len;
		n++;
	}
	return n > 0;
}

/* Random writes, zeros and partial writes into V and MODEL. */
static int random_ops(bv_view *v, uint8_t *model, uint64_t size, int nops)
{
	uint8_t *buf = malloc(1u << 20);
	int rc = 0;

	if (!buf)
		bail_out("out of memory");
	for (int i = 0; i < nops && !rc; i++) {
		uint64_t kind = et_below(&rng, 10), len;
		uint64_t off = et_below(&rng, size / 512) * 512;
		switch (et_below(&rng, 4)) {
		case 0: /* partial sectors */
			len = et_range(&rng, 1, 7) * 512;
			break;
		case 1: /* whole blocks */
			off &= ~(uint64_t)(BLK - 1);
			len = et_range(&rng, 1, 40) * BLK;
			break;
		case 2: /* runs with partial edges */
			len = et_range(&rng, 1, 600) * 512;
			break;
		default: /* large */
			len = et_range(&rng, 1, 2048) * 512;
			break;
		}
		if (len > size - off)
			len = size - off;
		if (len == 0)
			continue;
		if (kind < 7) {
			et_fill(&rng, buf, len);
			if (et_below(&rng, 5) == 0)
				memset(buf, 0, len); /* zeros as data */
			rc = bv_view_pwrite(v, buf, len, off);
			memcpy(model + off, buf, len);
		} else {
			rc = bv_view_zero(v, off, len);
			memset(model + off, 0, len);
		}
		if (rc < 0)
			diag("op %d at %llu+%llu: %s", i,
			     (unsigned long long)off, (unsigned long long)len,
			     bv_store_error(NULL));
	}
	free(buf);
	return rc;
}

/* ---- reads, writes, reopen, several views, resize ------------------- */

static void test_basic(void)
{
	bv_store *s = et_open(store_dir);
	bv_view *v = NULL, *w = NULL, *x = NULL;
	uint8_t *model = malloc(DISK), *m2 = malloc(DISK);
	bv_view_info info;

	if (!model || !m2)
		bail_out("out of memory");
	ET_MUST(s, bv_view_create(s, "v1", "vm", 1));
	ET_MUST(s, bv_view_open(s, "v1", &v));
	ok(view_eq(v, img1, DISK, 50, "v1 fresh"), "a new view reads as its RP");
	ok(extents_ok(v, img1, DISK), "a new view's extents are the RP's");
	{
		uint64_t len = CHUNK * 3;
		int k = bv_view_extent(v, 20 * CHUNK, &len);
		ok(k == 0 && len == 3 * CHUNK, "a zero run of the RP is a zero "
		   "extent (%d, %llu)", k, (unsigned long long)len);
	}
	memcpy(model, img1, DISK);
	ok(random_ops(v, model, DISK, 400) == 0, "400 random writes, zeros "
	   "and partial writes");
	ok(view_eq(v, model, DISK, 100, "v1 after writes"), "the view reads "
	   "as the model");
	ok(extents_ok(v, model, DISK), "extents after writes");
	ok(et_export_eq(s, "vm", 1, dir, img1, DISK), "RP 1 exports bit for "
	   "bit as before");
	/* one zero written over data reads as a zero extent */
	ET_MUST(s, bv_view_zero(v, 30 * CHUNK, 2 * CHUNK));
	memset(model + 30 * CHUNK, 0, 2 * CHUNK);
	{
		uint64_t len = 2 * CHUNK;
		int k = bv_view_extent(v, 30 * CHUNK, &len);
		ok(k == 0 && len == 2 * CHUNK, "zeroed blocks are a zero extent "
		   "(holes, not the RP)");
	}
	ok(bv_view_close(v) == 0, "close flushes");
	ET_MUST(s, bv_view_open(s, "v1", &v));
	ok(view_eq(v, model, DISK, 50, "v1 reopened"), "close and reopen "
	   "keep every write");
	ET_MUST(s, bv_view_info_get(s, "v1", &info));
	ok(info.in_use == 1 && info.rp == 1 && !strcmp(info.replica, "vm") &&
	   info.size == DISK && info.written_bytes > 0 &&
	   info.written_bytes <= DISK, "info: in use, of vm@1, size, written "
	   "%llu", (unsigned long long)info.written_bytes);

	/* several views side by side */
	ET_MUST(s, bv_view_create(s, "v2", "vm", 2));
	ET_MUST(s, bv_view_create(s, "v3", "vm", 1));
	ET_MUST(s, bv_view_open(s, "v2", &w));
	ET_MUST(s, bv_view_open(s, "v3", &x));
	memcpy(m2, img2, DISK);
	ok(view_eq(w, img2, DISK, 20, "v2 fresh"), "a view of RP 2 reads as "
	   "RP 2");
	ok(random_ops(w, m2, DISK, 100) == 0, "writes into v2");
	ok(view_eq(x, img1, DISK, 20, "v3 fresh") &&
	   view_eq(v, model, DISK, 20, "v1 beside") &&
	   view_eq(w, m2, DISK, 20, "v2 beside"), "three views of two RPs "
	   "stay apart");
	ET_MUST(s, bv_view_close(w));
	ET_MUST(s, bv_view_close(x));

	/* shrink, then grow: zeros past the smaller size */
	uint64_t small = DISK / 2 + 3 * 512;
	ET_MUST(s, bv_view_resize(v, small));
	memset(model + small, 0, DISK - small);
	ok(view_eq(v, model, small, 20, "v1 shrunk"), "a shrink keeps what "
	   "is inside");
	ET_MUST(s, bv_view_resize(v, DISK));
	ok(view_eq(v, model, DISK, 20, "v1 grown"), "after a grow, bytes past "
	   "the smaller size read zeros (not the RP)");
	ok(extents_ok(v, model, DISK), "extents after shrink and grow");
	ET_MUST(s, bv_view_pwrite(v, img2 + DISK - CHUNK, CHUNK, DISK - CHUNK));
	memcpy(model + DISK - CHUNK, img2 + DISK - CHUNK, CHUNK);
	ET_MUST(s, bv_view_close(v));
	ET_MUST(s, bv_view_open(s, "v1", &v));
	ok(view_eq(v, model, DISK, 20, "v1 resized reopened"), "reopen after "
	   "a shrink and a grow");
	ET_MUST(s, bv_view_close(v));
	ok(et_export_eq(s, "vm", 1, dir, img1, DISK) &&
	   et_export_eq(s, "vm", 2, dir, img2, DISK), "RPs 1 and 2 export as "
	   "they were");
	ET_MUST(s, bv_view_remove(s, "v2"));
	ET_MUST(s, bv_view_remove(s, "v3"));
	bv_store_close(s);
	free(model);
	free(m2);
}

/* ---- threads ----------------------------------------------------------- */

struct thr {
	bv_view *v;
	uint8_t *model;
	uint64_t lo, hi; /* the thread's own bytes */
	uint64_t seed;
	int rc;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	et_rng r = { t->seed };
	uint8_t *buf = malloc(256u << 10), *got = malloc(256u << 10);

	for (int i = 0; i < 300 && !t->rc; i++) {
		uint64_t span = t->hi - t->lo;
		uint64_t off = t->lo + et_below(&r, span / 512) * 512;
		uint64_t len = et_range(&r, 1, 128) * 512;
		if (len > t->hi - off)
			len = t->hi - off;
		int op = (int)et_below(&r, 4);
		if (op == 0) {
			t->rc = bv_view_zero(t->v, off, len);
			memset(t->model + off, 0, len);
		} else if (op == 1) {
			/* the whole disk, others' bytes included: only its
			 * own are compared */
			t->rc = bv_view_pread(t->v, got, len, off);
			if (!t->rc && memcmp(got, t->model + off, len))
				t->rc = -EILSEQ;
		} else if (op == 2 && i % 50 == 0) {
			t->rc = bv_view_flush(t->v);
		} else {
			et_fill(&r, buf, len);
			t->rc = bv_view_pwrite(t->v, buf, len, off);
			memcpy(t->model + off, buf, len);
		}
	}
	free(buf);
	free(got);
	return NULL;
}

static void test_threads(void)
{
	bv_store *s = et_open(store_dir);
	uint8_t *model = malloc(DISK);
	struct thr t[4];
	pthread_t th[4];
	bv_view *v;
	int bad = 0;

	ET_MUST(s, bv_view_create(s, "vt", "vm", 1));
	ET_MUST(s, bv_view_open(s, "vt", &v));
	memcpy(model, img1, DISK);
	for (int i = 0; i < 4; i++) {
		/* ranges that share blocks at their edges (512-byte
		 * boundaries inside a 4 KiB block): the read-modify-writes of
		 * neighbours must not undo each other */
		t[i] = (struct thr){ v, model, (uint64_t)i * (DISK / 4) + 1024,
				     (uint64_t)(i + 1) * (DISK / 4) + 1024,
				     1000 + (uint64_t)i, 0 };
		if (i == 3)
			t[i].hi = DISK;
		if (i == 0)
			t[i].lo = 0;
		pthread_create(&th[i], NULL, thr_main, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (t[i].rc)
			bad = t[i].rc;
	}
	ok(bad == 0, "4 threads write, zero, read and flush one view at once "
	   "(%d)", bad);
	ok(view_eq(v, model, DISK, 20, "threads"), "the view reads as every "
	   "thread's writes");
	ET_MUST(s, bv_view_close(v));
	ET_MUST(s, bv_view_open(s, "vt", &v));
	ok(view_eq(v, model, DISK, 0, "threads reopened"), "and after a "
	   "reopen");
	ET_MUST(s, bv_view_close(v));
	ET_MUST(s, bv_view_remove(s, "vt"));
	bv_store_close(s);
	free(model);
}

/* V3: a damaged header slot leaves the one before. */
static void damage_at(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t x = 0;
	if (fd < 0 || pread(fd, &x, 1, off) != 1)
		bail_out("damage: open/read");
	x ^= 0x5a;
	if (pwrite(fd, &x, 1, off) != 1)
		bail_out("damage: write");
	close(fd);
}

static int count_views(void *ud, const bv_view_info *v)
{
	(void)v;
	(*(int *)ud)++;
	return 0;
}

static void test_header(void)
{
	bv_store *s = et_open(store_dir);
	char *map = et_path(store_dir, "views/vh/map");
	uint8_t blk[BLK];
	bv_view *v;
	int rc;

	memset(blk, 0x77, sizeof blk);
	ET_MUST(s, bv_view_create(s, "vh", "vm", 1));
	ET_MUST(s, bv_view_open(s, "vh", &v));
	ET_MUST(s, bv_view_pwrite(v, blk, BLK, 0));
	/* a shrink writes its header (generation 2, slot B, V4); the grow
	 * is written by the close's flush (generation 3, slot A) */
	ET_MUST(s, bv_view_resize(v, DISK - CHUNK));
	ET_MUST(s, bv_view_resize(v, DISK));
	ET_MUST(s, bv_view_close(v));
	damage_at(map, 30);
	rc = bv_view_open(s, "vh", &v);
	ok(rc == 0 && bv_view_size(v) == DISK - CHUNK, "the newer header slot "
	   "damaged: the view opens at the one before (size %llu)",
	   rc ? 0ull : (unsigned long long)bv_view_size(v));
	if (rc == 0) {
		uint8_t got[BLK];
		ok(bv_view_pread(v, got, BLK, 0) == 0 && !memcmp(got, blk, BLK),
		   "and its flushed block is there");
		bv_view_close(v);
	}
	/* nothing written since, so slot B is still the good one: damage
	 * it too */
	damage_at(map, 4096 + 30);
	damage_at(map, 31);
	is_int(bv_view_open(s, "vh", &v), BV_ECORRUPT, "both header slots "
	       "damaged: refused");
	ok(strstr(bv_store_error(s), "map") != NULL, "naming the map file: %s",
	   bv_store_error(s));
	ET_MUST(s, bv_view_remove(s, "vh"));
	/* a view that lost files: listed as damaged, and removable */
	{
		char *f = et_path(store_dir, "views/vd/view.conf");
		char *l = et_path(store_dir, "views/vd/lock");
		bv_view_info info;
		ET_MUST(s, bv_view_create(s, "vd", "vm", 1));
		unlink(f);
		unlink(l);
		is_int(bv_view_info_get(s, "vd", &info), BV_ECORRUPT, "a view "
		       "without its view.conf: damaged, not missing");
		ok(strstr(bv_store_error(s), "view.conf") != NULL, "names the "
		   "file: %s", bv_store_error(s));
		is_int(bv_view_remove(s, "vd"), 0, "and it can be removed");
		is_int(bv_view_info_get(s, "vd", &info), BV_ENOTFOUND, "gone");
		free(f);
		free(l);
	}
	/* what a create or remove cut short by a crash leaves: not listed,
	 * and swept by the next create (V5) */
	{
		char *n1 = et_path(store_dir, "views/.new-x");
		char *n2 = et_path(store_dir, "views/.rm-y");
		char *f1 = et_path(store_dir, "views/.new-x/data");
		int count = 0, count0 = 0;
		ET_MUST(s, bv_view_list(s, count_views, &count0));
		mkdir(n1, 0700);
		mkdir(n2, 0700);
		et_write_file(f1, "x", 1);
		ET_MUST(s, bv_view_list(s, count_views, &count));
		is_int(count, count0, "half-made and half-removed views are not "
		       "listed");
		ET_MUST(s, bv_view_create(s, "vs", "vm", 1));
		struct stat st;
		ok(stat(n1, &st) < 0 && stat(n2, &st) < 0, "the next create "
		   "sweeps them away");
		count = 0;
		ET_MUST(s, bv_view_list(s, count_views, &count));
		is_int(count, count0 + 1, "and lists the new view besides");
		ET_MUST(s, bv_view_remove(s, "vs"));
		free(n1);
		free(n2);
		free(f1);
	}
	free(map);
	bv_store_close(s);
}

/* ---- errors ------------------------------------------------------------ */

static void test_errors(void)
{
	bv_store *s = et_open(store_dir);
	bv_view *v = NULL, *w = NULL;
	uint8_t buf[4096] = { 0 };
	bv_view_info info;
	int rc;

	is_int(bv_view_create(s, "bad/name", "vm", 1), BV_EINVAL, "a bad view "
	       "name");
	is_int(bv_view_create(s, ".hidden", "vm", 1), BV_EINVAL, "a name "
	       "beginning with '.'");
	is_int(bv_view_create(s, "lock", "vm", 1), BV_EINVAL, "the name "
	       "'lock' (views/lock)");
	is_int(bv_view_create(s, "e1", "nosuch", 1), BV_ENOTFOUND, "no such "
	       "replica");
	ok(strstr(bv_store_error(s), "nosuch") != NULL, "the message names "
	   "the replica: %s", bv_store_error(s));
	is_int(bv_view_create(s, "e1", "vm", 9), BV_ENOTFOUND, "no such RP");
	is_int(bv_view_create(s, "e1", "vm", 0), BV_EINVAL, "RP 0 (the head) "
	       "is refused");
	ET_MUST(s, bv_view_create(s, "e1", "vm", 1));
	is_int(bv_view_create(s, "e1", "vm", 2), BV_EEXIST, "a view name "
	       "taken");
	ok(strstr(bv_store_error(s), "e1") != NULL, "names the view: %s",
	   bv_store_error(s));
	ET_MUST(s, bv_view_info_get(s, "e1", &info));
	ok(info.rp == 1, "the refused create changed nothing");
	is_int(bv_view_open(s, "nosuch", &v), BV_ENOTFOUND, "open: no such "
	       "view");
	is_int(bv_view_remove(s, "nosuch"), BV_ENOTFOUND, "remove: no such "
	       "view");
	is_int(bv_view_info_get(s, "nosuch", &info), BV_ENOTFOUND, "info: no "
	       "such view");
	ET_MUST(s, bv_view_open(s, "e1", &v));
	is_int(bv_view_open(s, "e1", &w), BV_EBUSY, "a second open: busy");
	is_int(bv_view_remove(s, "e1"), BV_EBUSY, "remove while open: busy");
	ok(strstr(bv_store_error(s), "in use") != NULL, "says it is in use: "
	   "%s", bv_store_error(s));
	is_int(bv_view_pwrite(v, buf, 100, 0), BV_EALIGN, "write of 100 "
	       "bytes");
	is_int(bv_view_pwrite(v, buf, 512, 100), BV_EALIGN, "write at 100");
	is_int(bv_view_pwrite(v, buf, 1024, DISK - 512), BV_ERANGE, "write "
	       "past the end");
	is_int(bv_view_zero(v, DISK, 512), BV_ERANGE, "zero past the end");
	is_int(bv_view_pread(v, buf, 2, DISK - 1), BV_ERANGE, "read past the "
	       "end");
	{
		uint64_t len = 1024;
		is_int(bv_view_extent(v, DISK - 512, &len), BV_ERANGE,
		       "extent past the end");
	}
	is_int(bv_view_resize(v, 1000), BV_EALIGN, "resize to 1000 bytes");
	ok(view_eq(v, img1, DISK, 5, "e1 after refusals"), "refused calls "
	   "changed nothing");
	ok(bv_view_close(v) == 0, "close");
	ok(bv_view_close(NULL) == 0, "close(NULL)");
	ET_MUST(s, bv_view_remove(s, "e1"));
	rc = bv_view_info_get(s, "e1", &info);
	is_int(rc, BV_ENOTFOUND, "removed");
	bv_store_close(s);
}

/* ---- processes: crash, and a writer beside ------------------------------
 *
 * These fork before the test process opens any store (TSan wants no
 * threads in a process that forks): children do the store work and
 * report through their exit status and pipes. */

static void child_fail(bv_store *s, const char *what)
{
	printf("# child: %s: %s\n", what, s ? bv_store_error(s) : "");
	fflush(stdout);
	_exit(2);
}

static bv_store *child_open(int ro)
{
	bv_open_opts o = { .workers = 2, .read_only = ro };
	bv_store *s = NULL;
	if (bv_store_open(store_dir, &o, &s) < 0)
		child_fail(s, "open");
	return s;
}

/* The store: vm@1 = img1, vm@2 = img2, bw@1 (for the writer beside). */
static void setup_child(void)
{
	et_init(store_dir, CHUNK);
	bv_store *s = child_open(0);
	ingest_image(s, "vm", 0, img1, DISK);
	ingest_image(s, "vm", 1, img2, DISK);
	ingest_image(s, "bw", 0, img1, DISK);
	bv_store_close(s);
	_exit(0);
}

static int run_child(void (*fn)(void))
{
	int st;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		fn();
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Crash rounds. In round R the writer writes NA blocks of pattern A
 * (whole blocks and partial sectors), flushes, says 'f', then writes NB
 * distinct blocks of pattern B, flushing every 64, until killed. The
 * checker reads the view back: every block is what it was before the
 * round (A where A wrote) or B's, and A's flushed blocks not written by
 * B are A. */
#define NA 300
#define NB 1500
static int crash_round;
static uint8_t *state; /* the view as the last checker read it */

struct plan {
	uint64_t a[NA], b[NB];
};

static void make_plan(struct plan *p)
{
	et_rng r = { 9000 + (uint64_t)crash_round };
	static uint8_t used[DISK / BLK];
	memset(used, 0, sizeof used);
	for (int i = 0; i < NA; i++)
		p->a[i] = et_below(&r, DISK / BLK);
	for (int i = 0; i < NB; i++) {
		uint64_t b;
		do
			b = et_below(&r, DISK / BLK);
		while (used[b]);
		used[b] = 1;
		p->b[i] = b;
	}
}

static void pattern(uint64_t block, int which, uint8_t *out)
{
	et_rng r = { block * 7 + (uint64_t)which * 1000003 +
		     (uint64_t)crash_round * 77777 };
	et_fill(&r, out, BLK);
}

static void crash_writer(void)
{
	static struct plan p;
	uint8_t buf[BLK];
	bv_store *s = child_open(1);
	bv_view *v;

	make_plan(&p);
	if (bv_view_open(s, "vc", &v) < 0)
		child_fail(s, "view open");
	for (int i = 0; i < NA; i++) {
		pattern(p.a[i], 1, buf);
		/* every other one as two partial writes: sectors 0-2, 3-7 */
		if (i % 2) {
			if (bv_view_pwrite(v, buf, 1536, p.a[i] * BLK) < 0 ||
			    bv_view_pwrite(v, buf + 1536, BLK - 1536,
					   p.a[i] * BLK + 1536) < 0)
				child_fail(s, "write A");
		} else if (bv_view_pwrite(v, buf, BLK, p.a[i] * BLK) < 0) {
			child_fail(s, "write A");
		}
	}
	if (bv_view_flush(v) < 0)
		child_fail(s, "flush");
	if (write(1, "", 0) < 0) /* keeps stdout's state simple */
		_exit(3);
	if (write(3, "f", 1) != 1)
		_exit(3);
	for (int i = 0; i < NB; i++) {
		pattern(p.b[i], 2, buf);
		if (i % 5 == 4) {
			if (bv_view_zero(v, p.b[i] * BLK, BLK) < 0)
				child_fail(s, "zero B");
		} else if (bv_view_pwrite(v, buf, BLK, p.b[i] * BLK) < 0) {
			child_fail(s, "write B");
		}
		if (i % 64 == 63 && bv_view_flush(v) < 0)
			child_fail(s, "flush B");
	}
	for (;;)
		pause();
}

static void crash_checker(void)
{
	static struct plan p;
	static uint8_t ina[DISK / BLK], inb[DISK / BLK];
	static int bi[DISK / BLK];
	uint8_t *got = malloc(DISK), a[BLK], b[BLK];
	bv_store *s = child_open(1);
	bv_view *v;
	int bad = 0;

	make_plan(&p);
	memset(ina, 0, sizeof ina);
	memset(inb, 0, sizeof inb);
	for (int i = 0; i < NA; i++)
		ina[p.a[i]] = 1;
	for (int i = 0; i < NB; i++) {
		inb[p.b[i]] = 1;
		bi[p.b[i]] = i;
	}
	if (bv_view_open(s, "vc", &v) < 0 ||
	    bv_view_pread(v, got, DISK, 0) < 0)
		child_fail(s, "view read");
	for (uint64_t k = 0; k < DISK / BLK && bad < 5; k++) {
		const uint8_t *old = state + k * BLK;
		const uint8_t *g = got + k * BLK;
		if (ina[k]) {
			pattern(k, 1, a);
			old = a;
		}
		if (inb[k]) {
			if (bi[k] % 5 == 4)
				memset(b, 0, BLK);
			else
				pattern(k, 2, b);
		}
		if (!memcmp(g, old, BLK) || (inb[k] && !memcmp(g, b, BLK)))
			continue;
		printf("# round %d block %llu: neither old%s nor new\n",
		       crash_round, (unsigned long long)k,
		       ina[k] ? " (flushed A)" : "");
		bad++;
	}
	memcpy(state, got, DISK);
	{
		char *path = et_path(dir, "state.img");
		et_write_file(path, got, DISK);
		free(path);
	}
	bv_view_close(v);
	bv_store_close(s);
	fflush(stdout);
	_exit(bad ? 1 : 0);
}

static void create_vc(void)
{
	bv_store *s = child_open(1);
	if (bv_view_create(s, "vc", "vm", 1) < 0)
		child_fail(s, "create vc");
	bv_store_close(s);
	_exit(0);
}

static void test_crash(void)
{
	int fds[2];

	state = malloc(DISK);
	memcpy(state, img1, DISK);
	is_int(run_child(create_vc), 0, "view vc made through a read-only "
	       "store");
	for (crash_round = 1; crash_round <= 4; crash_round++) {
		char c = 0;
		if (pipe(fds) < 0)
			bail_out("pipe");
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			close(fds[0]);
			if (dup2(fds[1], 3) < 0)
				_exit(3);
			crash_writer();
		}
		close(fds[1]);
		int got = (int)read(fds[0], &c, 1);
		close(fds[0]);
		/* somewhere in the B writes (or after them) */
		usleep((useconds_t)(crash_round * 3000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		ok(got == 1 && c == 'f', "round %d: the writer flushed A",
		   crash_round);
		is_int(run_child(crash_checker), 0, "round %d: after kill -9, "
		       "flushed blocks are there, the rest old or new",
		       crash_round);
		{
			char *path = et_path(dir, "state.img");
			uint8_t *st;
			uint64_t len;
			if (et_read_file(path, &st, &len) == 0 && len == DISK) {
				memcpy(state, st, DISK);
				free(st);
			}
			free(path);
		}
	}
	free(state);
}

/* The writer beside: RPs 2..BW_RPS+1 of bw, each img1 with chunks
 * rewritten from a seed; parent views through a read-only store. */
#define BW_RPS 6

static void bw_image(int n, uint8_t *img)
{
	et_rng r = { 5000 + (uint64_t)n };
	memcpy(img, img1, DISK);
	for (int k = 1; k <= n; k++) {
		et_rng rk = { 5000 + (uint64_t)k };
		for (int i = 0; i < 8; i++) {
			uint64_t c = et_below(&rk, DISK / CHUNK);
			et_fill(&rk, img + c * CHUNK, CHUNK);
		}
	}
	(void)r;
}

/* The writer keeps ingesting until the test has made BW_ROUNDS views
 * beside it (one byte each on FD), however slow the machine: its last RP
 * waits for them (60 s at most). */
#define BW_ROUNDS 3
static void bw_writer(int fd)
{
	bv_store *s = child_open(0);
	uint8_t *img = malloc(DISK);
	int seen = 0;
	for (int n = 1; n <= BW_RPS; n++) {
		if (n == BW_RPS)
			for (int t = 0; seen < BW_ROUNDS && t < 600; t++) {
				char b[16];
				struct pollfd p = { .fd = fd, .events = POLLIN };
				if (poll(&p, 1, 100) == 1) {
					ssize_t k = read(fd, b, sizeof b);
					if (k <= 0)
						break;
					seen += (int)k;
				}
			}
		bw_image(n, img);
		ingest_image(s, "bw", (uint64_t)n, img, DISK);
		usleep(150000);
	}
	bv_store_close(s);
	free(img);
	_exit(0);
}

static void test_beside(void)
{
	bv_open_opts roo = { .read_only = 1, .workers = 1 };
	uint8_t *model = malloc(DISK);
	bv_store *s = NULL;
	int st = -1, good = 1, rounds = 0;
	pid_t w = 0;

	int pfd[2];
	if (pipe(pfd)) {
		ok(0, "pipe: %s", strerror(errno));
		return;
	}
	/* The writer may be gone when a round's byte is written. */
	signal(SIGPIPE, SIG_IGN);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[1]);
		bw_writer(pfd[0]);
	}
	close(pfd[0]);
	/* Views made, written, read and removed while it ingests. */
	do {
		char name[32];
		bv_view *v;
		snprintf(name, sizeof name, "bw%d", rounds);
		if (bv_store_open(store_dir, &roo, &s) < 0) {
			diag("read-only open: %s", bv_store_error(s));
			good = 0;
			break;
		}
		memcpy(model, img1, DISK);
		if (bv_view_create(s, name, "bw", 1) < 0 ||
		    bv_view_open(s, name, &v) < 0) {
			diag("view %s: %s", name, bv_store_error(s));
			good = 0;
		} else {
			good &= random_ops(v, model, DISK, 50) == 0;
			good &= view_eq(v, model, DISK, 5, name);
			good &= bv_view_close(v) == 0;
			if (rounds % 2 == 0)
				good &= bv_view_remove(s, name) == 0;
		}
		bv_store_close(s);
		s = NULL;
		rounds++;
		(void)!write(pfd[1], "v", 1);
	} while (good && (w = waitpid(pid, &st, WNOHANG)) == 0 && rounds < 200);
	close(pfd[1]);
	if (w != pid && waitpid(pid, &st, 0) != pid)
		st = -1;
	ok(good && rounds >= BW_ROUNDS, "%d views made, written, read and removed through a "
	   "read-only store beside the writer", rounds);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer made its %d "
	   "RPs", BW_RPS);
	/* its RPs are right */
	s = et_open(store_dir);
	int rps_ok = 1;
	for (int n = 1; n <= BW_RPS; n++) {
		bw_image(n, model);
		rps_ok &= et_export_eq(s, "bw", (uint64_t)n + 1, dir, model,
				       DISK);
	}
	ok(rps_ok, "every RP the writer made exports right");
	ok(et_export_eq(s, "bw", 1, dir, img1, DISK), "bw@1, which the views "
	   "were of, as it was");
	bv_store_close(s);
	free(model);
}

/* ---- promote ------------------------------------------------------------ */

/* Chunks with a block written by random_ops: from a copy of the bits.
 * The test marks each chunk an op touched. */
static uint8_t touched[DISK / CHUNK];

static int random_ops_marked(bv_view *v, uint8_t *model, int nops)
{
	uint8_t *before = malloc(DISK);
	uint8_t *buf = malloc(256u << 10);
	int rc = 0;

	if (!before || !buf)
		bail_out("out of memory");
	memcpy(before, model, DISK);
	for (int i = 0; i < nops && !rc; i++) {
		uint64_t off = et_below(&rng, DISK / 512) * 512;
		uint64_t len = et_range(&rng, 1, 200) * 512;
		if (len > DISK - off)
			len = DISK - off;
		et_fill(&rng, buf, len);
		if (i % 3 == 2) {
			rc = bv_view_zero(v, off, len);
			memset(model + off, 0, len);
		} else {
			rc = bv_view_pwrite(v, buf, len, off);
			memcpy(model + off, buf, len);
		}
		/* every chunk a block of the write lies in */
		for (uint64_t c = (off / BLK * BLK) / CHUNK;
		     c <= (off + len - 1) / CHUNK; c++)
			touched[c] = 1;
	}
	free(before);
	free(buf);
	return rc;
}

static unsigned ntouched(void)
{
	unsigned n = 0;
	for (size_t i = 0; i < sizeof touched; i++)
		n += touched[i];
	return n;
}

static void test_promote(void)
{
	bv_store *s = et_open(store_dir), *ro;
	bv_open_opts roo = { .read_only = 1 };
	uint8_t *model = malloc(DISK), *img3 = malloc(DISK);
	bv_replica_info ri;
	bv_stats a, b;
	bv_view *v;
	uint64_t rp = 0;
	int rc;

	if (!model || !img3)
		bail_out("out of memory");
	/* --as: a new replica sharing the RP's chunks */
	ET_MUST(s, bv_view_create(s, "p1", "vm", 1));
	ET_MUST(s, bv_view_open(s, "p1", &v));
	memcpy(model, img1, DISK);
	memset(touched, 0, sizeof touched);
	ok(random_ops_marked(v, model, 12) == 0, "writes into view p1");
	is_int(bv_view_promote(s, "p1", "vmcopy", NULL, &rp), BV_EBUSY,
	       "promote of a view open elsewhere: busy");
	ET_MUST(s, bv_view_close(v));
	ET_MUST(s, bv_stats_counters(s, &a));
	is_int(bv_view_promote(s, "p1", "vm", NULL, &rp), BV_EEXIST, "promote "
	       "--as onto an existing replica");
	ok(strstr(bv_store_error(s), "vm") != NULL, "names it: %s",
	   bv_store_error(s));
	is_int(bv_view_promote(s, "nosuch", "vmcopy", NULL, &rp), BV_ENOTFOUND,
	       "promote of no such view");
	is_int(bv_view_promote(s, "p1", "bad/name", NULL, &rp), BV_EINVAL,
	       "promote as a bad name");
	ET_MUST(s, bv_stats_counters(s, &b));
	ok(a.chunks == b.chunks && a.rps == b.rps && a.replicas == b.replicas,
	   "refused promotes changed nothing");
	rc = bv_view_promote(s, "p1", "vmcopy", "from p1", &rp);
	ok(rc == 0 && rp == 1, "promote p1 --as vmcopy: RP %llu (%s)",
	   (unsigned long long)rp, rc ? bv_store_error(s) : "ok");
	ok(et_export_eq(s, "vmcopy", 1, dir, model, DISK), "vmcopy@1 exports "
	   "as the view");
	ET_MUST(s, bv_stats_counters(s, &b));
	ok(b.chunks - a.chunks <= ntouched(), "only chunks the view wrote "
	   "were stored: %llu new, %u touched of %u",
	   (unsigned long long)(b.chunks - a.chunks), ntouched(),
	   (unsigned)(DISK / CHUNK));
	ok(b.container_bytes - a.container_bytes <=
	   (uint64_t)ntouched() * (CHUNK + 8192), "container bytes grew by "
	   "%llu, not the disk's %u", (unsigned long long)(b.container_bytes -
							   a.container_bytes),
	   DISK);
	ET_MUST(s, bv_replica_info_get(s, "vmcopy", &ri));
	ok(ri.chunk_size == CHUNK && ri.size == DISK && ri.latest_rp == 1,
	   "vmcopy: chunk size, size, RP 1");
	{
		/* an express full goes on from it */
		bv_ingest *in;
		bv_commit_opts co = { .make_rp = 1 };
		int slot;
		ET_MUST(s, bv_ingest_begin(s, &in));
		ET_MUST(s, slot = bv_ingest_add(in, "vmcopy", 1, 0));
		ET_MUST(s, bv_ingest_write(in, slot, 5 * CHUNK, img2, CHUNK));
		ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		memcpy(model + 5 * CHUNK, img2, CHUNK);
		ok(rp == 2 && et_export_eq(s, "vmcopy", 2, dir, model, DISK),
		   "an express full on vmcopy (base RP 1) makes RP 2");
	}
	ok(et_export_eq(s, "vm", 1, dir, img1, DISK), "vm@1 unchanged");

	/* read-only store: promote refused */
	ET_MUST(NULL, bv_store_open(store_dir, &roo, &ro));
	is_int(bv_view_promote(ro, "p1", "vmcopy2", NULL, &rp), BV_EREADONLY,
	       "promote through a read-only store");
	bv_store_close(ro);

	/* --into: the head newer than the latest RP gets an RP first */
	ET_MUST(s, bv_view_create(s, "p2", "vm", 1));
	ET_MUST(s, bv_view_open(s, "p2", &v));
	memcpy(model, img1, DISK);
	memset(touched, 0, sizeof touched);
	ok(random_ops_marked(v, model, 12) == 0, "writes into view p2");
	ET_MUST(s, bv_view_resize(v, DISK - 3 * CHUNK - 1024));
	ET_MUST(s, bv_view_resize(v, DISK));
	memset(model + DISK - 3 * CHUNK - 1024, 0, 3 * CHUNK + 1024);
	for (size_t c = DISK / CHUNK - 4; c < DISK / CHUNK; c++)
		touched[c] = 1;
	ET_MUST(s, bv_view_close(v));
	memcpy(img3, img2, DISK);
	et_fill(&rng, img3 + 7 * CHUNK, 3 * CHUNK);
	{
		bv_ingest *in;
		bv_commit_opts co = { 0 };
		int slot;
		ET_MUST(s, bv_ingest_begin(s, &in));
		ET_MUST(s, slot = bv_ingest_add(in, "vm", 2, 0));
		ET_MUST(s, bv_ingest_write(in, slot, 7 * CHUNK,
					   img3 + 7 * CHUNK, 3 * CHUNK));
		ET_MUST(s, bv_ingest_commit(in, &co, NULL));
	}
	ET_MUST(s, bv_stats_counters(s, &a));
	rc = bv_view_promote(s, "p2", NULL, "into", &rp);
	ok(rc == 0 && rp == 4, "promote p2 --into vm: RP %llu (%s)",
	   (unsigned long long)rp, rc ? bv_store_error(s) : "ok");
	ok(et_export_eq(s, "vm", 3, dir, img3, DISK), "the old head became "
	   "RP 3");
	ok(et_export_eq(s, "vm", 4, dir, model, DISK), "vm@4 exports as the "
	   "view");
	ok(et_export_eq(s, "vm", 0, dir, model, DISK), "and is the head");
	ok(et_export_eq(s, "vm", 1, dir, img1, DISK) &&
	   et_export_eq(s, "vm", 2, dir, img2, DISK), "RPs 1 and 2 as they "
	   "were");
	ET_MUST(s, bv_stats_counters(s, &b));
	ok(b.chunks - a.chunks <= ntouched(), "--into stored only chunks the "
	   "view wrote: %llu new, %u touched",
	   (unsigned long long)(b.chunks - a.chunks), ntouched());
	/* again, with the head at the latest RP: no RP before */
	rc = bv_view_promote(s, "p2", NULL, NULL, &rp);
	ok(rc == 0 && rp == 5 && et_export_eq(s, "vm", 5, dir, model, DISK),
	   "a second promote --into: RP 5, no RP of the head before");
	ET_MUST(s, bv_stats_counters(s, &a));
	ok(a.chunks == b.chunks, "and it stored nothing (the head had it "
	   "all)");
	/* a view grown past its RP, and one shrunk below it */
	{
		uint64_t big = DISK + 3 * CHUNK + 512, small = DISK / 2 - 1536;
		uint8_t *mb = calloc(1, big);
		ET_MUST(s, bv_view_create(s, "p3", "vm", 1));
		ET_MUST(s, bv_view_open(s, "p3", &v));
		ET_MUST(s, bv_view_resize(v, big));
		memcpy(mb, img1, DISK);
		ET_MUST(s, bv_view_pwrite(v, img2, 2048, big - 2048));
		memcpy(mb + big - 2048, img2, 2048);
		ET_MUST(s, bv_view_close(v));
		rc = bv_view_promote(s, "p3", "vmbig", NULL, &rp);
		ok(rc == 0 && et_export_eq(s, "vmbig", 1, dir, mb, big),
		   "promote --as of a view grown past its RP (%s)",
		   rc ? bv_store_error(s) : "ok");
		rc = bv_view_promote(s, "p3", NULL, NULL, &rp);
		ok(rc == 0 && et_export_eq(s, "vm", rp, dir, mb, big),
		   "promote --into of it: the replica grows (%s)",
		   rc ? bv_store_error(s) : "ok");
		ET_MUST(s, bv_view_create(s, "p4", "vm", 2));
		ET_MUST(s, bv_view_open(s, "p4", &v));
		ET_MUST(s, bv_view_resize(v, small));
		ET_MUST(s, bv_view_close(v));
		rc = bv_view_promote(s, "p4", "vmsmall", NULL, &rp);
		ok(rc == 0 && et_export_eq(s, "vmsmall", 1, dir, img2, small),
		   "promote --as of a view shrunk inside a chunk (%s)",
		   rc ? bv_store_error(s) : "ok");
		rc = bv_view_promote(s, "p4", NULL, NULL, &rp);
		ok(rc == 0 && et_export_eq(s, "vm", rp, dir, img2, small),
		   "promote --into of it: the replica shrinks (%s)",
		   rc ? bv_store_error(s) : "ok");
		ET_MUST(s, bv_view_open(s, "p4", &v));
		ET_MUST(s, bv_view_resize(v, DISK));
		ET_MUST(s, bv_view_close(v));
		memset(mb, 0, DISK);
		memcpy(mb, img2, small);
		rc = bv_view_promote(s, "p4", NULL, NULL, &rp);
		ok(rc == 0 && et_export_eq(s, "vm", rp, dir, mb, DISK),
		   "grown again, --into: zeros past the smaller size, not the "
		   "RP (%s)", rc ? bv_store_error(s) : "ok");
		ET_MUST(s, bv_view_remove(s, "p3"));
		ET_MUST(s, bv_view_remove(s, "p4"));
		free(mb);
	}
	ET_MUST(s, bv_view_remove(s, "p1"));
	ET_MUST(s, bv_view_remove(s, "p2"));
	bv_store_close(s);
	free(model);
	free(img3);
}

int main(void)
{
	rng.s = et_seed(77);
	dir = et_tmpdir("view");
	store_dir = et_path(dir, "store");
	make_images();
	if (run_child(setup_child) != 0)
		bail_out("the store could not be made");
	test_crash();
	test_beside();
	test_basic();
	test_threads();
	test_errors();
	test_header();
	test_promote();
	free(img1);
	free(img2);
	free(store_dir);
	et_tmpdir_done(dir);
	return done_testing();
}
