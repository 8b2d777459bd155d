/*
 * engine-view-fault: the durability of views (INVARIANTS.md V1 to V5) is
 * tested, not assumed. engine-view kills a child with -9, but a killed
 * process keeps its page cache, so a kill cannot show a missing or
 * misplaced fdatasync. This test goes through view.c's I/O hook
 * (bv_view_set_io_hook, engine/view.h), which sees every write, punch,
 * truncate, sync and rename a view makes on its own files:
 *
 *  1. Order. A grow, writes and zeros that touch four bitmap pages, a
 *     shrink and a flush are recorded as one sequence: the data file is
 *     fdatasynced after its last write and before any map page is
 *     written (V1), the map is fdatasynced after its last page and
 *     before the header (V2), and the header's fdatasync is the last
 *     step (V3); the shrink writes and syncs a header before it cuts
 *     the data file (V4); an open syncs data, then map, before it
 *     trusts what a failed flush may have left in the page cache (V1).
 *     A create fsyncs each of its files after its last write
 *     and the new directory, all before the rename, and views/ after it
 *     (V5). Each checker is first shown a sequence that breaks its rule
 *     and must flag it.
 *  2. Faults. For N = 1, 2, ... until the operation no longer reaches
 *     its Nth step: create; writes then a flush; zeros then a flush; a
 *     shrink then a flush; a shrink, a grow, a write past the smaller
 *     size and a flush; a grow then a flush; remove; each with the Nth
 *     step failing with -EIO, and again with -ENOSPC. Each time the call
 *     returns that error with a message naming the view and a file;
 *     then a flush is tried again, the view closed and reopened (what a
 *     power loss leaves, as far as one process can show it), and every
 *     tracked block must read as before the operation or as after it
 *     (or after one of its calls, for an operation of several), the
 *     size be one of theirs, and RP 1 export bit for bit. When the
 *     flush tried again succeeds, every call that had returned 0 must be
 *     there: a failed flush must not lose the map pages it did not
 *     write.
 */
#include "view.h"
#include "etest.h"

#define RPSIZE (2u << 20)
#define CHUNK 65536u
#define BLK ((uint64_t)BV_VIEW_BLOCK)
#define PAGE_SPAN (BLK * 32768u) /* the disk one bitmap page covers */
#define BIG (3 * PAGE_SPAN + (1u << 20))
#define NLOW (RPSIZE / BLK)
#define NFAR 3
#define NTRACK (NLOW + NFAR)

static char *dir, *store_dir;
static uint8_t *img;
static bv_store *st;

/* Blocks in bitmap pages 1 to 3, past the RP's size. */
static const uint64_t far_at[NFAR] = { PAGE_SPAN + 5 * BLK,
				       2 * PAGE_SPAN + 9 * BLK,
				       3 * PAGE_SPAN + 100 * BLK };

static uint64_t track_off(size_t i)
{
	return i < NLOW ? i * BLK : far_at[i - NLOW];
}

/* ---- the recorded steps and the hook ------------------------------------- */

struct ev {
	enum bv_view_step step;
	enum bv_view_file file;
	char dir[512];
};

#define MAXEV 4096
static struct {
	uint64_t count, fail_at;
	int err, record;
	struct ev ev[MAXEV];
	size_t nev;
} H;

static int hook(void *ud, enum bv_view_step step, enum bv_view_file file,
		const char *d)
{
	(void)ud;
	H.count++;
	if (H.record && H.nev < MAXEV) {
		H.ev[H.nev].step = step;
		H.ev[H.nev].file = file;
		snprintf(H.ev[H.nev].dir, sizeof H.ev[H.nev].dir, "%s", d);
		H.nev++;
	}
	return H.fail_at && H.count == H.fail_at ? H.err : 0;
}

static void arm(uint64_t fail_at, int err, int record)
{
	H.count = 0;
	H.fail_at = fail_at;
	H.err = err;
	H.record = record;
	H.nev = 0;
	bv_view_set_io_hook(hook, NULL);
}

static void disarm(void)
{
	bv_view_set_io_hook(NULL, NULL);
}

static const char *const step_names[] = { "write", "punch", "truncate",
					  "sync", "rename" };
static const char *const file_names[] = { "data", "map", "header", "conf",
					  "lock", "dir" };

/* V1 to V3 on a flush's sequence (and the writes before it): 1 when each
 * map page write follows a data sync that follows every data change
 * before it, each header write follows a map sync that follows every map
 * page write before it, and the last step is the header's sync, after
 * the last header write. */
static int flush_order_ok(const struct ev *e, size_t n)
{
	int data_clean = 1, map_clean = 1, header_synced = 0;

	for (size_t i = 0; i < n; i++) {
		int is_sync = e[i].step == BV_VSTEP_SYNC;
		switch (e[i].file) {
		case BV_VFILE_DATA:
			data_clean = is_sync;
			break;
		case BV_VFILE_MAP:
			if (is_sync) {
				map_clean = 1;
				break;
			}
			if (!data_clean) {
				diag("step %zu: a map page is written before the "
				     "data file is synced", i);
				return 0;
			}
			map_clean = 0;
			header_synced = 0;
			break;
		case BV_VFILE_HEADER:
			if (is_sync) {
				header_synced = 1;
				break;
			}
			if (!map_clean) {
				diag("step %zu: the header is written before the "
				     "map pages are synced", i);
				return 0;
			}
			header_synced = 0;
			break;
		default:
			break;
		}
	}
	if (!n || !header_synced || e[n - 1].file != BV_VFILE_HEADER ||
	    e[n - 1].step != BV_VSTEP_SYNC) {
		diag("the sequence does not end with the header's sync");
		return 0;
	}
	return 1;
}

/* V5 on a create's sequence: every file of the new directory is synced
 * after its last write or truncate, and the directory itself, before the
 * rename; views/ (VDIR) is synced after it. */
static int create_order_ok(const struct ev *e, size_t n, const char *vdir)
{
	int dirty[BV_VFILE_DIR + 1] = { 0 }, seen[BV_VFILE_DIR + 1] = { 0 };
	size_t ren = n;

	for (size_t i = 0; i < n; i++) {
		if (e[i].step == BV_VSTEP_RENAME) {
			ren = i;
			break;
		}
		if (e[i].file == BV_VFILE_DIR)
			continue;
		int f = e[i].file == BV_VFILE_HEADER ? BV_VFILE_MAP : e[i].file;
		seen[f] = 1;
		dirty[f] = e[i].step != BV_VSTEP_SYNC;
	}
	if (ren == n) {
		diag("no rename");
		return 0;
	}
	for (int f = BV_VFILE_DATA; f <= BV_VFILE_LOCK; f++) {
		if (f == BV_VFILE_HEADER)
			continue;
		if (!seen[f] || dirty[f]) {
			diag("%s: %s before the rename", file_names[f],
			     seen[f] ? "not synced after its last write" :
				       "not synced");
			return 0;
		}
	}
	/* the new directory's sync: after every file's */
	{
		size_t dsync = n, last_file = 0;
		for (size_t i = 0; i < ren; i++) {
			if (e[i].file == BV_VFILE_DIR &&
			    e[i].step == BV_VSTEP_SYNC && strcmp(e[i].dir, vdir))
				dsync = i;
			else if (e[i].file != BV_VFILE_DIR)
				last_file = i;
		}
		if (dsync == n || dsync < last_file ||
		    strcmp(e[dsync].dir, e[ren].dir)) {
			diag("the new directory is not synced after its files "
			     "and before the rename");
			return 0;
		}
	}
	for (size_t i = ren + 1; i < n; i++)
		if (e[i].file == BV_VFILE_DIR && e[i].step == BV_VSTEP_SYNC &&
		    !strcmp(e[i].dir, vdir))
			return 1;
	diag("views/ is not synced after the rename");
	return 0;
}

/* ---- a model of the tracked blocks ---------------------------------------- */

struct model {
	uint64_t size;
	uint8_t *b; /* NTRACK blocks */
};

static void model_init(struct model *m)
{
	m->b = calloc(NTRACK, BLK);
	if (!m->b)
		bail_out("out of memory");
	memcpy(m->b, img, RPSIZE);
	m->size = RPSIZE;
}

static void model_copy(struct model *d, const struct model *s)
{
	d->size = s->size;
	memcpy(d->b, s->b, NTRACK * BLK);
}

/* SRC NULL: zeros. */
static void model_write(struct model *m, uint64_t off, const uint8_t *src,
			uint64_t len)
{
	for (size_t i = 0; i < NTRACK; i++) {
		uint64_t a = track_off(i), e = a + BLK;
		uint64_t lo = off > a ? off : a, hi = off + len < e ? off + len : e;
		if (lo >= hi)
			continue;
		if (src)
			memcpy(m->b + i * BLK + (lo - a), src + (lo - off), hi - lo);
		else
			memset(m->b + i * BLK + (lo - a), 0, hi - lo);
	}
}

/* Past a shrink, a later grow reads zeros (V4). */
static void model_resize(struct model *m, uint64_t size)
{
	if (size < m->size)
		for (size_t i = 0; i < NTRACK; i++) {
			uint64_t a = track_off(i);
			if (a + BLK <= size)
				continue;
			uint64_t from = size > a ? size - a : 0;
			memset(m->b + i * BLK + from, 0, BLK - from);
		}
	m->size = size;
}

/* ---- the operations ------------------------------------------------------- */

enum { C_WRITE, C_ZERO, C_RESIZE, C_FLUSH };

struct call {
	int kind;
	uint64_t off, len; /* C_RESIZE: off is the new size */
};

static void call_data(size_t k, uint8_t *buf, uint64_t len)
{
	et_rng r = { 1000 + k };
	et_fill(&r, buf, len);
}

static void call_model(struct model *m, const struct call *c, size_t k,
		       uint8_t *buf)
{
	switch (c->kind) {
	case C_WRITE:
		call_data(k, buf, c->len);
		model_write(m, c->off, buf, c->len);
		break;
	case C_ZERO:
		model_write(m, c->off, NULL, c->len);
		break;
	case C_RESIZE:
		model_resize(m, c->off);
		break;
	}
}

static int call_run(bv_view *v, const struct call *c, size_t k, uint8_t *buf)
{
	switch (c->kind) {
	case C_WRITE:
		call_data(k, buf, c->len);
		return bv_view_pwrite(v, buf, c->len, c->off);
	case C_ZERO:
		return bv_view_zero(v, c->off, c->len);
	case C_RESIZE:
		return bv_view_resize(v, c->off);
	default:
		return bv_view_flush(v);
	}
}

/* What each view of the fault runs starts from: grown to BIG, written in
 * the low blocks and in every far one, flushed. */
static const struct call base_calls[] = {
	{ C_RESIZE, BIG, 0 },
	{ C_WRITE, 0, 64 * BLK },
	{ C_WRITE, 100 * BLK + 1536, 30 * BLK },
	{ C_WRITE, 300 * BLK, 50 * BLK },
	{ C_WRITE, PAGE_SPAN + 5 * BLK, BLK },
	{ C_WRITE, 2 * PAGE_SPAN + 9 * BLK, BLK },
	{ C_WRITE, 3 * PAGE_SPAN + 99 * BLK, 3 * BLK },
	{ C_FLUSH, 0, 0 },
};

struct op {
	const char *what;
	struct call c[8];
	size_t n;
	int write_err; /* also run with -ENOSPC */
};

static const struct op ops[] = {
	{ "writes then a flush",
	  { { C_WRITE, 3 * BLK + 512, 1024 },
	    { C_WRITE, 10 * BLK + 1024, 9 * BLK },
	    { C_WRITE, PAGE_SPAN + 5 * BLK, BLK },
	    { C_WRITE, 3 * PAGE_SPAN + 100 * BLK + 512, 2048 },
	    { C_WRITE, 400 * BLK, 20 * BLK },
	    { C_FLUSH, 0, 0 } }, 6, 1 },
	{ "zeros then a flush",
	  { { C_ZERO, 40 * BLK + 512, 6 * BLK },
	    { C_ZERO, 2 * PAGE_SPAN + 9 * BLK, BLK },
	    { C_ZERO, 60 * BLK, 4 * BLK },
	    { C_ZERO, 450 * BLK + 1024, 1024 },
	    { C_FLUSH, 0, 0 } }, 5, 1 },
	{ "a shrink then a flush",
	  { { C_RESIZE, 2 * PAGE_SPAN + 1536, 0 },
	    { C_FLUSH, 0, 0 } }, 2, 0 },
	{ "a shrink below the RP, a grow, a write past it, a flush",
	  { { C_RESIZE, RPSIZE / 2 + 512, 0 },
	    { C_RESIZE, BIG, 0 },
	    { C_WRITE, 3 * PAGE_SPAN + 100 * BLK, BLK },
	    { C_FLUSH, 0, 0 } }, 4, 1 },
	{ "a grow then a flush",
	  { { C_RESIZE, 5 * PAGE_SPAN, 0 },
	    { C_FLUSH, 0, 0 } }, 2, 0 },
};

/* ---- checking a view against the models ------------------------------------ */

/* M[0..NM-1]: the view before an operation and after each of its calls.
 * STRICT < 0: the view's size is one of theirs, and each tracked block
 * inside it reads as one of the states that holds it inside its size
 * (never, say, the content of a block past a shrink the view does not
 * show). STRICT = k: the size and every block are M[k]'s, but for the
 * blocks of [FA, FB) (call k's, which failed), which may be M[k + 1]'s. */
static int view_check(bv_view *v, const struct model *m, int nm, int strict,
		      uint64_t fa, uint64_t fb, const char *what)
{
	uint8_t got[BV_VIEW_BLOCK];
	uint64_t size = bv_view_size(v);
	int k, size_ok = 0;

	for (k = 0; k < nm; k++)
		if ((strict < 0 || k == strict) && size == m[k].size)
			size_ok = 1;
	if (!size_ok) {
		diag("%s: size %llu (before %llu, after %llu)", what,
		     (unsigned long long)size, (unsigned long long)m[0].size,
		     (unsigned long long)m[nm - 1].size);
		return 0;
	}
	for (size_t i = 0; i < NTRACK; i++) {
		uint64_t a = track_off(i);
		if (a >= size)
			continue;
		uint64_t n = size - a < BLK ? size - a : BLK;
		if (bv_view_pread(v, got, n, a) < 0) {
			diag("%s: reading block at %llu: %s", what,
			     (unsigned long long)a, bv_store_error(NULL));
			return 0;
		}
		int in_failed = a < fb && a + BLK > fa, match = 0;
		for (k = 0; k < nm && !match; k++) {
			if (strict >= 0 && k != strict &&
			    !(in_failed && k == strict + 1))
				continue;
			match = a + n <= m[k].size &&
				!memcmp(got, m[k].b + i * BLK, n);
		}
		if (!match) {
			diag("%s: the block at %llu reads as %s", what,
			     (unsigned long long)a, strict >= 0 ?
			     "not what the calls that returned 0 made it" :
			     "no state the operation went through");
			return 0;
		}
	}
	return 1;
}

static int rp_intact(void)
{
	return et_export_eq(st, "vm", 1, dir, img, RPSIZE);
}

/* Makes view NAME in the base state; BEFORE gets it. */
static bv_view *prepare(const char *name, struct model *before)
{
	uint8_t *buf = malloc(64 * BLK);
	bv_view *v;

	if (!buf)
		bail_out("out of memory");
	ET_MUST(st, bv_view_create(st, name, "vm", 1));
	ET_MUST(st, bv_view_open(st, name, &v));
	model_init(before);
	for (size_t k = 0; k < sizeof base_calls / sizeof *base_calls; k++) {
		ET_MUST(st, call_run(v, &base_calls[k], 100 + k, buf));
		call_model(before, &base_calls[k], 100 + k, buf);
	}
	free(buf);
	return v;
}

/* The error's message names view F and a file of it (or views/). */
static int message_ok(const char *msg)
{
	return strstr(msg, "view f:") &&
	       (strstr(msg, "/data") || strstr(msg, "/map") ||
		strstr(msg, "view.conf") || strstr(msg, "/lock") ||
		strstr(msg, "/views"));
}

/* ---- 1. the order ------------------------------------------------------------ */

static void test_order(void)
{
	struct model m;
	uint8_t *buf = malloc(64 * BLK);
	char *vdir = et_path(store_dir, "views");
	bv_view *v;
	size_t pages = 0;

	/* the checkers flag what breaks their rules */
	{
		struct ev bad[4] = {
			{ BV_VSTEP_WRITE, BV_VFILE_DATA, "" },
			{ BV_VSTEP_WRITE, BV_VFILE_MAP, "" },
			{ BV_VSTEP_SYNC, BV_VFILE_DATA, "" },
			{ BV_VSTEP_SYNC, BV_VFILE_HEADER, "" },
		};
		ok(!flush_order_ok(bad, 4), "the flush checker flags a map page "
		   "written before the data sync");
		bad[1] = (struct ev){ BV_VSTEP_SYNC, BV_VFILE_DATA, "" };
		bad[2] = (struct ev){ BV_VSTEP_WRITE, BV_VFILE_MAP, "" };
		bad[3] = (struct ev){ BV_VSTEP_WRITE, BV_VFILE_HEADER, "" };
		ok(!flush_order_ok(bad, 4), "and a header written before the map "
		   "sync, with no sync after it");
		struct ev c[4] = {
			{ BV_VSTEP_WRITE, BV_VFILE_CONF, "/x/.new-a" },
			{ BV_VSTEP_SYNC, BV_VFILE_DIR, "/x/.new-a" },
			{ BV_VSTEP_RENAME, BV_VFILE_DIR, "/x/.new-a" },
			{ BV_VSTEP_SYNC, BV_VFILE_DIR, "/x" },
		};
		ok(!create_order_ok(c, 4, "/x"), "the create checker flags a file "
		   "not synced before the rename");
	}

	if (!buf)
		bail_out("out of memory");
	ET_MUST(st, bv_view_create(st, "o0", "vm", 1)); /* views/ exists */
	arm(0, 0, 1);
	int rc = bv_view_create(st, "o", "vm", 1);
	disarm();
	is_int(rc, 0, "create, recorded: %zu steps", H.nev);
	ok(create_order_ok(H.ev, H.nev, vdir), "create fsyncs every file and "
	   "its directory before the rename, and views/ after it (V5)");

	ET_MUST(st, bv_view_open(st, "o", &v));
	model_init(&m);
	static const struct call calls[] = {
		{ C_RESIZE, BIG, 0 },
		{ C_WRITE, 7 * BLK + 512, 3 * BLK },
		{ C_WRITE, PAGE_SPAN + 5 * BLK, BLK },
		{ C_WRITE, 2 * PAGE_SPAN + 9 * BLK, BLK },
		{ C_ZERO, 30 * BLK + 1024, 5 * BLK },
		{ C_ZERO, 3 * PAGE_SPAN + 100 * BLK, 2 * BLK },
		{ C_RESIZE, 3 * PAGE_SPAN + (512u << 10), 0 },
		{ C_FLUSH, 0, 0 },
	};
	arm(0, 0, 1);
	rc = 0;
	for (size_t k = 0; k < sizeof calls / sizeof *calls && !rc; k++) {
		rc = call_run(v, &calls[k], k, buf);
		call_model(&m, &calls[k], k, buf);
	}
	disarm();
	is_int(rc, 0, "a grow, writes and zeros over four bitmap pages, a "
	       "shrink, then a flush: %zu steps", H.nev);
	{
		/* V4: the shrink's cut (the second truncate) comes right
		 * after the sync of its header */
		size_t t = 0, seen = 0;
		for (size_t i = 0; i < H.nev && seen < 2; i++)
			if (H.ev[i].step == BV_VSTEP_TRUNCATE && ++seen == 2)
				t = i;
		ok(t >= 2 && H.ev[t - 1].step == BV_VSTEP_SYNC &&
		   H.ev[t - 1].file == BV_VFILE_HEADER &&
		   H.ev[t - 2].step == BV_VSTEP_WRITE &&
		   H.ev[t - 2].file == BV_VFILE_HEADER, "a shrink writes and "
		   "syncs its header before it cuts the data file (V4)");
	}
	for (size_t i = 0; i < H.nev; i++)
		if (H.ev[i].step == BV_VSTEP_WRITE &&
		    H.ev[i].file == BV_VFILE_MAP)
			pages++;
	ok(pages == 4, "the flush writes the four dirty map pages (%zu)", pages);
	ok(flush_order_ok(H.ev, H.nev), "data synced before any map page, map "
	   "synced before the header, the header's sync last (V1 to V3)");
	if (!flush_order_ok(H.ev, H.nev))
		for (size_t i = 0; i < H.nev; i++)
			diag("  %zu: %s %s", i, step_names[H.ev[i].step],
			     file_names[H.ev[i].file]);
	ET_MUST(st, bv_view_close(v));
	arm(0, 0, 1);
	rc = bv_view_open(st, "o", &v);
	disarm();
	ok(rc == 0 && H.nev == 3 && H.ev[0].step == BV_VSTEP_TRUNCATE &&
	   H.ev[1].step == BV_VSTEP_SYNC && H.ev[1].file == BV_VFILE_DATA &&
	   H.ev[2].step == BV_VSTEP_SYNC && H.ev[2].file == BV_VFILE_MAP,
	   "an open cuts data to its size, then syncs data, then map (what a "
	   "failed flush left in the cache is made durable before it is "
	   "trusted, V1)");
	ok(view_check(v, &m, 1, 0, 0, 0, "order view"), "and the view "
	   "reads as written after a reopen");
	ET_MUST(st, bv_view_close(v));
	ET_MUST(st, bv_view_remove(st, "o"));
	ET_MUST(st, bv_view_remove(st, "o0"));
	free(m.b);
	free(buf);
	free(vdir);
}

/* ---- 2. the faults -------------------------------------------------------------- */

/* One run of OP with its Nth step failing with ERR; 1 when the op no
 * longer reached step N (it succeeded), 0 when it failed; *GOOD 0 when
 * a check did not hold. */
static int fault_op(const struct op *op, uint64_t n, int err, int *good)
{
	struct model m[9];
	uint8_t *buf = malloc(64 * BLK);
	uint64_t fa = 0, fb = 0;
	char msg[1024] = "", what[256];
	int rc = 0, reached, strict;
	size_t k;
	bv_view *v;

	if (!buf)
		bail_out("out of memory");
	v = prepare("f", &m[0]);
	for (k = 0; k < op->n; k++) {
		if (!(m[k + 1].b = malloc(NTRACK * BLK)))
			bail_out("out of memory");
		model_copy(&m[k + 1], &m[k]);
		call_model(&m[k + 1], &op->c[k], k, buf);
	}
	arm(n, err, 0);
	for (k = 0; k < op->n; k++)
		if ((rc = call_run(v, &op->c[k], k, buf)))
			break;
	reached = H.count >= n;
	disarm();
	if (rc)
		snprintf(msg, sizeof msg, "%s", bv_store_error(NULL));
	if (!reached && rc) {
		diag("%s, step %llu never reached, yet a call failed: %s",
		     op->what, (unsigned long long)n, msg);
		*good = 0;
	} else if (reached && (rc != err || !message_ok(msg))) {
		diag("%s, step %llu failing with %d: the call returned %d (%s)",
		     op->what, (unsigned long long)n, err, rc, msg);
		*good = 0;
	}
	if (k < op->n && (op->c[k].kind == C_WRITE ||
			  op->c[k].kind == C_ZERO)) {
		fa = op->c[k].off;
		fb = fa + op->c[k].len;
	}
	/* A flush that succeeds now must make every call that returned 0
	 * durable: K calls did. */
	strict = bv_view_flush(v) == 0;
	bv_view_close(v);
	ET_MUST(st, bv_view_open(st, "f", &v));
	snprintf(what, sizeof what, "%s, step %llu (%d), %s", op->what,
		 (unsigned long long)n, err,
		 strict ? "the flush after succeeded" : "the flush after failed");
	if (!view_check(v, m, (int)op->n + 1, strict ? (int)k : -1, fa, fb,
			what))
		*good = 0;
	if (bv_view_flush(v) < 0) {
		diag("%s: a flush after the reopen: %s", what,
		     bv_store_error(NULL));
		*good = 0;
	}
	ET_MUST(st, bv_view_close(v));
	if (!rp_intact()) {
		diag("%s: RP 1 changed", what);
		*good = 0;
	}
	ET_MUST(st, bv_view_remove(st, "f"));
	for (k = 0; k <= op->n; k++)
		free(m[k].b);
	free(buf);
	return !reached;
}

static void test_view_faults(void)
{
	for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
		for (int e = 0; e < 1 + ops[i].write_err; e++) {
			int err = e ? -ENOSPC : -EIO, good = 1;
			uint64_t n = 1;
			while (!fault_op(&ops[i], n, err, &good) && n < 200)
				n++;
			ok(good && n > 1 && n < 200, "%s, each of its %llu steps "
			   "failing (%s): the error and a message naming view and "
			   "file; after a reopen, each block before or after; a "
			   "flush that succeeds after it keeps every call that "
			   "returned 0; RP 1 unchanged", ops[i].what,
			   (unsigned long long)(n - 1), strerror(-err));
		}
	}
}

/* Create and remove: the view is there whole or not at all. */
static int view_whole(const char *name, const struct model *m)
{
	bv_view *v;
	int good;
	if (bv_view_open(st, name, &v) < 0) {
		diag("open %s: %s", name, bv_store_error(st));
		return 0;
	}
	good = view_check(v, m, 1, 0, 0, 0, name);
	bv_view_close(v);
	return good;
}

static int count_views(void *ud, const bv_view_info *i)
{
	(void)i;
	(*(int *)ud)++;
	return 0;
}

static void test_create_remove_faults(void)
{
	struct model rp;
	bv_view_info info;
	int good = 1, ok_fail = 1;
	uint64_t n;

	model_init(&rp);
	for (int e = 0; e < 2; e++) {
		int err = e ? -ENOSPC : -EIO;
		good = ok_fail = 1;
		for (n = 1; n < 200; n++) {
			arm(n, err, 0);
			int rc = bv_view_create(st, "f", "vm", 1);
			int reached = H.count >= n;
			disarm();
			if (!reached) {
				good &= rc == 0 && view_whole("f", &rp);
				ET_MUST(st, bv_view_remove(st, "f"));
				break;
			}
			if (rc != err || !message_ok(bv_store_error(NULL))) {
				diag("create, step %llu: %d (%s)",
				     (unsigned long long)n, rc,
				     bv_store_error(NULL));
				ok_fail = 0;
			}
			int count = 0;
			ET_MUST(st, bv_view_list(st, count_views, &count));
			rc = bv_view_info_get(st, "f", &info);
			if (rc == 0) {
				good &= count == 1 && view_whole("f", &rp);
			} else if (rc == BV_ENOTFOUND) {
				good &= count == 0;
				/* and a create goes through now */
				good &= bv_view_create(st, "f", "vm", 1) == 0 &&
					view_whole("f", &rp);
			} else {
				diag("create, step %llu: after it, info: %s",
				     (unsigned long long)n, bv_store_error(st));
				good = 0;
			}
			if (!good)
				diag("create, step %llu: the view is half there",
				     (unsigned long long)n);
			ET_MUST(st, bv_view_remove(st, "f"));
		}
		ok(ok_fail && good && n > 1 && n < 200, "create, each of its "
		   "%llu steps failing (%s): the error, named; then no view, or "
		   "a whole one (listed, reading as its RP)",
		   (unsigned long long)(n - 1), strerror(-err));
	}

	good = ok_fail = 1;
	for (n = 1; n < 200; n++) {
		struct model before;
		bv_view *v = prepare("f", &before);
		ET_MUST(st, bv_view_close(v));
		arm(n, -EIO, 0);
		int rc = bv_view_remove(st, "f");
		int reached = H.count >= n;
		disarm();
		if (!reached) {
			good &= rc == 0 &&
				bv_view_info_get(st, "f", &info) == BV_ENOTFOUND;
			free(before.b);
			break;
		}
		if (rc != -EIO || !message_ok(bv_store_error(NULL))) {
			diag("remove, step %llu: %d (%s)", (unsigned long long)n,
			     rc, bv_store_error(NULL));
			ok_fail = 0;
		}
		rc = bv_view_info_get(st, "f", &info);
		if (rc == 0) {
			if (!view_whole("f", &before)) {
				diag("remove, step %llu: the view changed",
				     (unsigned long long)n);
				good = 0;
			}
			ET_MUST(st, bv_view_remove(st, "f"));
		} else if (rc != BV_ENOTFOUND) {
			diag("remove, step %llu: after it, info: %s",
			     (unsigned long long)n, bv_store_error(st));
			good = 0;
		}
		free(before.b);
	}
	ok(ok_fail && good && n > 1 && n < 200, "remove, each of its %llu "
	   "steps failing: the error, named; the view whole as it was, or "
	   "gone", (unsigned long long)(n - 1));
	ok(rp_intact(), "RP 1 exports bit for bit after every fault");
	free(rp.b);
}

int main(void)
{
	et_rng rng = { et_seed(31) };
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp;
	int slot;

	dir = et_tmpdir("view-fault");
	store_dir = et_path(dir, "store");
	img = malloc(RPSIZE);
	if (!img)
		bail_out("out of memory");
	et_fill(&rng, img, RPSIZE);
	memset(img + 5 * CHUNK, 0, CHUNK);
	et_init(store_dir, CHUNK);
	st = et_open(store_dir);
	ET_MUST(st, bv_ingest_begin(st, &in));
	ET_MUST(st, slot = bv_ingest_add(in, "vm", 0, RPSIZE));
	ET_MUST(st, bv_ingest_write(in, slot, 0, img, RPSIZE));
	ET_MUST(st, bv_ingest_commit(in, &co, &rp));

	test_order();
	test_view_faults();
	test_create_remove_faults();

	bv_store_close(st);
	free(img);
	free(store_dir);
	et_tmpdir_done(dir);
	return done_testing();
}
