/*
 * nbdkit-bvault-plugin.c: the nbdkit plugin that serves a bvault store
 * over NBD: recovery points read-only, views read-write (README.md,
 * "Serving over NBD"). A thin file over engine/bvault.h.
 *
 *   nbdkit bvault store=STORE [export=REPLICA@RP | view=NAME]
 *                 [readers=N] [refresh=MS]
 *
 * Export names (when neither export= nor view= fixes one):
 *   REPLICA@N       RP N of REPLICA, read-only
 *   REPLICA@latest  its latest RP (at the time the client connects)
 *   REPLICA         the same as REPLICA@latest
 *   REPLICA@0       its committed head (may be newer than every RP)
 *   view:NAME       view NAME, read-write
 *   ""              the default: REPLICA@latest when the store holds one
 *                   replica, else refused with a message saying how to
 *                   name one
 *
 * Generations. The store is opened read-only (bv_open_opts.read_only),
 * so the plugin runs beside a writer (bvaultd), and a read-only bv_store
 * sees the store as it was at its open. A generation is one such open,
 * shared by the connections that began while it was current, and kept
 * (refcounted) until the last of them closes. A new one is opened when
 * a client names an RP, replica or view the current generation does not
 * hold and the current one was opened before that client connected (it
 * then sees everything committed before the client asked), and when a
 * client asks for a latest RP, a head or the export list and the current
 * one is older than refresh= milliseconds (default 1000). A connection
 * keeps the generation it opened with: what it reads never changes.
 *
 * Threads: NBDKIT_THREAD_MODEL_PARALLEL. A bv_reader belongs to one
 * thread at a time, so each connection keeps a pool of up to readers=
 * readers (default 4), opened as requests need them; a request waits for
 * a free one. A view (bv_view) is thread-safe and may be open in one
 * process only: the plugin opens each view once, shares it between all
 * the connections that name it, and closes it (which flushes it) when
 * the last of them closes. A flush therefore covers every connection,
 * and multi-conn is advertised for views as for RPs.
 *
 * RocksDB starts threads of its own, and "background threads are killed
 * by fork" (nbdkit-plugin(3), .after_fork): nothing touches the store
 * before .after_fork, where the first generation is opened and a fixed
 * export checked.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bvault.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#define READERS_MAX 64
#define READERS_DEFAULT 4
#define REFRESH_DEFAULT_MS 1000
/* Largest request advertised: NBD's usual maximum payload. */
#define REQUEST_MAX (32u << 20)
/* Longest export name or label shown in a message. */
#define SHOW_MAX 80
#define VIEW_PREFIX "view:"

/* ---- configuration ---------------------------------------------------- */

enum { TARGET_RP = 1, TARGET_VIEW = 2 };

/* What an export name asks for. */
struct target {
	int kind;
	char name[BV_NAME_MAX + 1]; /* replica or view */
	uint64_t rp;                /* a number, BV_RP_LATEST, 0 (head) */
};

static char *store_path;
static char *fixed_name;        /* export= or view:NAME of view= */
static struct target fixed;     /* fixed.kind 0: no fixed export */
static unsigned readers_max = READERS_DEFAULT;
static uint64_t refresh_ns = REFRESH_DEFAULT_MS * 1000000ull;

/* ---- helpers ---------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* S (untrusted: an export name, a label) made printable into OUT: at
 * most SHOW_MAX bytes of it, control bytes and bytes that are not ASCII
 * as '?', "..." when cut. */
static const char *show(const char *s, char out[SHOW_MAX + 4])
{
	size_t i;
	for (i = 0; s[i] && i < SHOW_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	if (s[i])
		memcpy(out + i, "...", 3), i += 3;
	out[i] = '\0';
	return out;
}

/* Reports RC, a libbvault failure of this thread, to nbdkit: the
 * engine's message (prefixed by WHAT, the export, when not NULL) and the
 * nearest errno for the NBD reply. Returns -1. */
static int fail(int rc, const char *what)
{
	if (what)
		nbdkit_error("%s: %s", what, bv_store_error(NULL));
	else
		nbdkit_error("%s", bv_store_error(NULL));
	nbdkit_set_error(bv_errno(rc));
	return -1;
}

static int name_ok(const char *s, size_t n)
{
	if (n == 0 || n > BV_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return 0;
	}
	return 1;
}

/* Parses export name NAME into T (see the top of the file). "" is not
 * parsed here. On failure calls nbdkit_error with what is wrong and
 * returns -1. */
static int target_parse(const char *name, struct target *t)
{
	char shown[SHOW_MAX + 4], shown_rp[SHOW_MAX + 4];
	const char *at, *rp;
	size_t n;

	memset(t, 0, sizeof *t);
	if (strncmp(name, VIEW_PREFIX, strlen(VIEW_PREFIX)) == 0) {
		const char *v = name + strlen(VIEW_PREFIX);
		if (!name_ok(v, strlen(v))) {
			nbdkit_error("export name '%s': '%s' is not a view "
				     "name (1 to %d of A-Z a-z 0-9 . _ -)",
				     show(name, shown), "view:NAME",
				     BV_NAME_MAX);
			return -1;
		}
		t->kind = TARGET_VIEW;
		memcpy(t->name, v, strlen(v) + 1);
		return 0;
	}
	at = strchr(name, '@');
	n = at ? (size_t)(at - name) : strlen(name);
	if (!name_ok(name, n)) {
		nbdkit_error("export name '%s': not REPLICA@RP, REPLICA@latest, "
			     "REPLICA or view:NAME (a replica name is 1 to %d "
			     "of A-Z a-z 0-9 . _ -)", show(name, shown),
			     BV_NAME_MAX);
		return -1;
	}
	t->kind = TARGET_RP;
	memcpy(t->name, name, n);
	t->name[n] = '\0';
	t->rp = BV_RP_LATEST;
	if (!at || strcmp(at + 1, "latest") == 0)
		return 0;
	rp = at + 1;
	/* A decimal number, no sign, no spaces, within uint64_t and not
	 * the value that stands for latest. */
	t->rp = 0;
	for (n = 0; rp[n]; n++) {
		unsigned d = (unsigned)(rp[n] - '0');
		if (d > 9 || t->rp > (UINT64_MAX - 1 - d) / 10) {
			nbdkit_error("export name '%s': the RP '%s' is not "
				     "a number, 'latest' or 0 (the head)",
				     show(name, shown), show(rp, shown_rp));
			return -1;
		}
		t->rp = t->rp * 10 + d;
	}
	if (n == 0) {
		nbdkit_error("export name '%s': no RP after '@' (a number, "
			     "'latest', or 0 for the head)", show(name, shown));
		return -1;
	}
	return 0;
}

/* The canonical name of T into OUT. */
static void target_name(const struct target *t, char *out, size_t len)
{
	if (t->kind == TARGET_VIEW)
		snprintf(out, len, VIEW_PREFIX "%s", t->name);
	else if (t->rp == BV_RP_LATEST)
		snprintf(out, len, "%s@latest", t->name);
	else
		snprintf(out, len, "%s@%" PRIu64, t->name, t->rp);
}

/* ---- generations ------------------------------------------------------ */

struct gen {
	bv_store *s;
	unsigned refs;      /* under gen_lock */
	uint64_t opened;    /* now_ns() just before the open */
	uint64_t serial;
};

static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
/* Held while a new generation opens, so that clients that all find the
 * current one too old wait for one open instead of each making one. */
static pthread_mutex_t gen_open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gen *gen_cur;   /* holds a reference of its own */
static uint64_t gen_serial;

static void gen_put(struct gen *g)
{
	unsigned left;

	if (!g)
		return;
	pthread_mutex_lock(&gen_lock);
	left = --g->refs;
	pthread_mutex_unlock(&gen_lock);
	if (left)
		return;
	nbdkit_debug("bvault: generation %" PRIu64 " closed", g->serial);
	bv_store_close(g->s);
	free(g);
}

/* The current generation, opened at or after NEWER (now_ns() time; 0:
 * any), with a reference for the caller (gen_put). A new one replaces
 * the current one when it is older. -1 after nbdkit_error. */
static int gen_get(uint64_t newer, struct gen **out)
{
	bv_open_opts o = { .read_only = 1, .workers = 1 };
	struct gen *g = NULL, *old = NULL;
	int rc, ret = -1, opening = 0;

	*out = NULL;
	pthread_mutex_lock(&gen_lock);
	if (!gen_cur || gen_cur->opened < newer) {
		/* Take the open lock, then look again: another client may
		 * have opened one while this one waited. */
		pthread_mutex_unlock(&gen_lock);
		pthread_mutex_lock(&gen_open_lock);
		opening = 1;
		pthread_mutex_lock(&gen_lock);
	}
	if (gen_cur && gen_cur->opened >= newer) {
		gen_cur->refs++;
		*out = gen_cur;
		pthread_mutex_unlock(&gen_lock);
		ret = 0;
		goto cleanup;
	}
	pthread_mutex_unlock(&gen_lock);
	if (!(g = calloc(1, sizeof *g))) {
		nbdkit_error("store %s: out of memory", store_path);
		nbdkit_set_error(ENOMEM);
		goto cleanup;
	}
	g->opened = now_ns();
	if ((rc = bv_store_open(store_path, &o, &g->s))) {
		fail(rc, NULL);
		bv_store_close(g->s);
		free(g);
		goto cleanup;
	}
	g->refs = 2; /* gen_cur's and the caller's */
	pthread_mutex_lock(&gen_lock);
	g->serial = ++gen_serial;
	old = gen_cur;
	gen_cur = g;
	pthread_mutex_unlock(&gen_lock);
	nbdkit_debug("bvault: generation %" PRIu64 " opened", g->serial);
	gen_put(old);
	*out = g;
	ret = 0;
cleanup:
	if (opening)
		pthread_mutex_unlock(&gen_open_lock);
	return ret;
}

/* ---- views (shared by every connection that names them) --------------- */

struct view {
	struct view *next;
	char name[BV_NAME_MAX + 1];
	bv_view *v;
	struct gen *gen;
	unsigned refs; /* under views_lock */
};

static pthread_mutex_t views_lock = PTHREAD_MUTEX_INITIALIZER;
static struct view *views;

/* View NAME, opened if this process does not have it open yet, with a
 * reference for the caller (view_put). T0 is when the client asked: a
 * generation older than that is reopened once when it does not hold the
 * view or its RP. -1 after nbdkit_error. */
static int view_get(const char *name, uint64_t t0, struct view **out)
{
	struct view *w = NULL;
	struct gen *g = NULL;
	char what[BV_NAME_MAX + 8];
	int rc, ret = -1;

	*out = NULL;
	snprintf(what, sizeof what, VIEW_PREFIX "%s", name);
	pthread_mutex_lock(&views_lock);
	for (w = views; w; w = w->next) {
		if (strcmp(w->name, name) == 0) {
			w->refs++;
			*out = w;
			ret = 0;
			goto cleanup;
		}
	}
	if (!(w = calloc(1, sizeof *w))) {
		nbdkit_error("%s: out of memory", what);
		nbdkit_set_error(ENOMEM);
		goto cleanup;
	}
	snprintf(w->name, sizeof w->name, "%s", name);
	if (gen_get(0, &g))
		goto cleanup;
	rc = bv_view_open(g->s, name, &w->v);
	if (rc == BV_ENOTFOUND && g->opened < t0) {
		gen_put(g);
		g = NULL;
		if (gen_get(t0, &g))
			goto cleanup;
		rc = bv_view_open(g->s, name, &w->v);
	}
	if (rc) {
		fail(rc, what);
		goto cleanup;
	}
	w->gen = g;
	g = NULL;
	w->refs = 1;
	w->next = views;
	views = w;
	*out = w;
	w = NULL;
	ret = 0;
	nbdkit_debug("bvault: %s opened", what);
cleanup:
	pthread_mutex_unlock(&views_lock);
	if (ret)
		free(w);
	gen_put(g);
	return ret;
}

static void view_put(struct view *w)
{
	struct view **p;
	int last;

	if (!w)
		return;
	pthread_mutex_lock(&views_lock);
	last = --w->refs == 0;
	if (last) {
		for (p = &views; *p != w; p = &(*p)->next)
			;
		*p = w->next;
		/* Closed under the lock: a client opening it again waits
		 * for the close (the view's own lock is held until then). */
		if (bv_view_close(w->v))
			nbdkit_error(VIEW_PREFIX "%s: closing: %s", w->name,
				     bv_store_error(NULL));
	}
	pthread_mutex_unlock(&views_lock);
	if (last) {
		nbdkit_debug("bvault: view:%s closed", w->name);
		gen_put(w->gen);
		free(w);
	}
}

/* ---- connections ------------------------------------------------------ */

struct conn {
	struct target t;
	char name[BV_NAME_MAX + 32]; /* canonical, resolved: vm@3, view:x */
	struct gen *gen;
	struct view *view;
	uint64_t size;
	uint32_t chunk;
	int readonly;
	/* The reader pool of an RP export. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned nopen, nfree;
	bv_reader *free_readers[READERS_MAX];
};

/* A reader of C's RP for this thread: a free one, a new one while
 * fewer than readers= are open, else the next one given back. */
static int reader_take(struct conn *c, bv_reader **out)
{
	int rc, ret = -1;

	*out = NULL;
	pthread_mutex_lock(&c->lock);
	while (c->nfree == 0 && c->nopen >= readers_max)
		pthread_cond_wait(&c->cond, &c->lock);
	if (c->nfree) {
		*out = c->free_readers[--c->nfree];
		pthread_mutex_unlock(&c->lock);
		ret = 0;
		goto cleanup;
	}
	c->nopen++;
	pthread_mutex_unlock(&c->lock);
	if ((rc = bv_reader_open(c->gen->s, c->t.name, c->t.rp, out))) {
		fail(rc, c->name);
		pthread_mutex_lock(&c->lock);
		c->nopen--;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
		goto cleanup;
	}
	ret = 0;
cleanup:
	return ret;
}

/* Gives R back; BAD: it failed a call, so it is closed instead of kept
 * (what a failed read left in it is not worth trusting). */
static void reader_give(struct conn *c, bv_reader *r, int bad)
{
	pthread_mutex_lock(&c->lock);
	if (bad) {
		c->nopen--;
	} else {
		c->free_readers[c->nfree++] = r;
		r = NULL;
	}
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	bv_reader_close(r);
}

static void conn_free(struct conn *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nfree; i++)
		bv_reader_close(c->free_readers[i]);
	view_put(c->view);
	gen_put(c->gen);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Opens the first reader of RP export C (the one that proves it exists,
 * and gives its size), in a generation that holds it. T0: when the
 * client asked. */
static int conn_open_rp(struct conn *c, uint64_t t0)
{
	bv_replica_info ri;
	bv_reader *r = NULL;
	/* Latest and head move: take a generation at most refresh= old. */
	uint64_t newer = c->t.rp == BV_RP_LATEST || c->t.rp == 0 ?
			 (t0 > refresh_ns ? t0 - refresh_ns : 0) : 0;
	int rc, ret = -1;

	if (gen_get(newer, &c->gen))
		goto cleanup;
	rc = bv_reader_open(c->gen->s, c->t.name, c->t.rp, &r);
	if (rc == BV_ENOTFOUND && c->gen->opened < t0) {
		gen_put(c->gen);
		c->gen = NULL;
		if (gen_get(t0, &c->gen))
			goto cleanup;
		rc = bv_reader_open(c->gen->s, c->t.name, c->t.rp, &r);
	}
	if (rc) {
		fail(rc, c->name);
		goto cleanup;
	}
	/* Every later reader of the pool must read the same RP: latest is
	 * pinned to its number in this generation. */
	if (c->t.rp == BV_RP_LATEST) {
		if ((rc = bv_replica_info_get(c->gen->s, c->t.name, &ri))) {
			fail(rc, c->name);
			goto cleanup;
		}
		c->t.rp = ri.latest_rp;
	}
	target_name(&c->t, c->name, sizeof c->name);
	c->size = bv_reader_size(r);
	c->chunk = bv_reader_chunk_size(r);
	c->free_readers[c->nfree++] = r;
	c->nopen = 1;
	r = NULL;
	ret = 0;
cleanup:
	bv_reader_close(r);
	return ret;
}

static int conn_open_view(struct conn *c, uint64_t t0)
{
	if (view_get(c->t.name, t0, &c->view))
		return -1;
	c->size = bv_view_size(c->view->v);
	c->chunk = BV_VIEW_BLOCK;
	return 0;
}

/* The store's one replica as TARGET, for the default export: -1 after
 * nbdkit_error when the store holds none or several. */
struct one_replica {
	unsigned n;
	char name[BV_NAME_MAX + 1];
};

static int count_replica(void *ud, const bv_replica_info *r)
{
	struct one_replica *o = ud;
	if (o->n++ == 0)
		snprintf(o->name, sizeof o->name, "%s", r->name);
	return 0;
}

static int default_target(uint64_t t0, struct target *t)
{
	struct one_replica o = { 0 };
	struct gen *g = NULL;
	int rc, ret = -1;

	if (gen_get(t0 > refresh_ns ? t0 - refresh_ns : 0, &g))
		goto cleanup;
	if ((rc = bv_replica_list(g->s, count_replica, &o))) {
		fail(rc, "the default export");
		goto cleanup;
	}
	if (o.n != 1) {
		nbdkit_error("the default export (\"\") is the latest RP of "
			     "the store's only replica, but store %s holds "
			     "%u: name one as REPLICA@RP, REPLICA@latest or "
			     "view:NAME (nbdinfo --list shows them)",
			     store_path, o.n);
		nbdkit_set_error(ENOENT);
		goto cleanup;
	}
	memset(t, 0, sizeof *t);
	t->kind = TARGET_RP;
	memcpy(t->name, o.name, sizeof t->name);
	t->rp = BV_RP_LATEST;
	ret = 0;
cleanup:
	gen_put(g);
	return ret;
}

static void *bvault_open(int readonly)
{
	const char *ename = nbdkit_export_name();
	uint64_t t0 = now_ns();
	char shown[SHOW_MAX + 4];
	struct conn *c = calloc(1, sizeof *c);
	int ok = 0;

	if (!c) {
		nbdkit_error("out of memory");
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->readonly = readonly;
	if (!ename)
		goto cleanup;
	if (fixed.kind) {
		if (*ename && strcmp(ename, fixed_name) != 0) {
			nbdkit_error("export name '%s': this server serves "
				     "'%s' only", show(ename, shown),
				     fixed_name);
			goto cleanup;
		}
		c->t = fixed;
	} else if (*ename == '\0') {
		if (default_target(t0, &c->t))
			goto cleanup;
	} else if (target_parse(ename, &c->t)) {
		goto cleanup;
	}
	target_name(&c->t, c->name, sizeof c->name);
	if (c->t.kind == TARGET_VIEW ? conn_open_view(c, t0) :
				       conn_open_rp(c, t0))
		goto cleanup;
	nbdkit_debug("bvault: export '%s' is %s (generation %" PRIu64 ")",
		     show(ename, shown), c->name,
		     c->gen ? c->gen->serial : c->view->gen->serial);
	ok = 1;
cleanup:
	if (!ok) {
		conn_free(c);
		c = NULL;
	}
	return c;
}

static void bvault_close(void *h)
{
	conn_free(h);
}

static int64_t bvault_get_size(void *h)
{
	struct conn *c = h;
	return (int64_t)c->size;
}

static const char *bvault_export_description(void *h)
{
	struct conn *c = h;
	if (c->view)
		return nbdkit_printf_intern("view %s (read-write)",
					    c->t.name);
	if (c->t.rp == 0)
		return nbdkit_printf_intern("replica %s at its committed "
					    "head (read-only)", c->t.name);
	return nbdkit_printf_intern("recovery point %" PRIu64 " of replica "
				    "%s (read-only)", c->t.rp, c->t.name);
}

static int bvault_block_size(void *h, uint32_t *min, uint32_t *pref,
			     uint32_t *max)
{
	struct conn *c = h;
	*min = BV_SECTOR;
	*pref = c->chunk;
	*max = REQUEST_MAX;
	return 0;
}

static int writable(struct conn *c)
{
	return c->view && !c->readonly;
}

static int bvault_can_write(void *h)
{
	return writable(h);
}

/* RPs are immutable; a view's flush is global: with either, every
 * connection sees what another's completed flush made durable. */
static int bvault_can_multi_conn(void *h)
{
	(void)h;
	return 1;
}

static int bvault_can_fua(void *h)
{
	return writable(h) ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_NONE;
}

static int bvault_is_rotational(void *h)
{
	(void)h;
	return 0;
}

static int bvault_pread(void *h, void *buf, uint32_t count, uint64_t off,
			uint32_t flags)
{
	struct conn *c = h;
	bv_reader *r = NULL;
	int rc, ret = -1;

	(void)flags;
	if (c->view) {
		if ((rc = bv_view_pread(c->view->v, buf, count, off)))
			fail(rc, c->name);
		ret = rc ? -1 : 0;
		goto cleanup;
	}
	if (reader_take(c, &r))
		goto cleanup;
	if ((rc = bv_reader_pread(r, buf, count, off)))
		fail(rc, c->name);
	reader_give(c, r, rc != 0);
	ret = rc ? -1 : 0;
cleanup:
	return ret;
}

/* Writes reach here for views only (can_write is false for RPs, so
 * nbdkit refuses them first); EROFS whatever gets through. */
static int refuse_write(struct conn *c)
{
	nbdkit_error("%s: read-only: a recovery point never changes (serve "
		     "a view of it to write)", c->name);
	nbdkit_set_error(EROFS);
	return -1;
}

static int after_write(struct conn *c, uint32_t flags)
{
	int rc;
	if ((flags & NBDKIT_FLAG_FUA) && (rc = bv_view_flush(c->view->v)))
		return fail(rc, c->name);
	return 0;
}

static int bvault_pwrite(void *h, const void *buf, uint32_t count,
			 uint64_t off, uint32_t flags)
{
	struct conn *c = h;
	int rc;

	if (!writable(c))
		return refuse_write(c);
	if ((rc = bv_view_pwrite(c->view->v, buf, count, off)))
		return fail(rc, c->name);
	return after_write(c, flags);
}

/* Zero: the overlay keeps zero blocks as holes, so it is fast whatever
 * NBDKIT_FLAG_FAST_ZERO asks, and a trim is the same. */
static int bvault_zero(void *h, uint32_t count, uint64_t off,
		       uint32_t flags)
{
	struct conn *c = h;
	int rc;

	if (!writable(c))
		return refuse_write(c);
	if ((rc = bv_view_zero(c->view->v, off, count)))
		return fail(rc, c->name);
	return after_write(c, flags);
}

/* Trim: NBD lets a server round the start up and the end down, which
 * keeps an unaligned trim from failing; what is trimmed reads zeros. */
static int bvault_trim(void *h, uint32_t count, uint64_t off,
		       uint32_t flags)
{
	struct conn *c = h;
	uint64_t start = (off + BV_SECTOR - 1) / BV_SECTOR * BV_SECTOR;
	uint64_t end = (off + count) / BV_SECTOR * BV_SECTOR;
	int rc;

	if (!writable(c))
		return refuse_write(c);
	if (end > start && (rc = bv_view_zero(c->view->v, start, end - start)))
		return fail(rc, c->name);
	return after_write(c, flags);
}

static int bvault_flush(void *h, uint32_t flags)
{
	struct conn *c = h;
	int rc;

	(void)flags;
	if (!c->view)
		return 0;
	if ((rc = bv_view_flush(c->view->v)))
		return fail(rc, c->name);
	return 0;
}

static int bvault_can_flush(void *h)
{
	return writable(h);
}

static int bvault_can_trim(void *h)
{
	return writable(h);
}

static int bvault_can_zero(void *h)
{
	return writable(h);
}

static int bvault_can_fast_zero(void *h)
{
	return writable(h);
}

static int bvault_extents(void *h, uint32_t count, uint64_t off,
			  uint32_t flags, struct nbdkit_extents *ext)
{
	struct conn *c = h;
	uint64_t end = off + count;
	bv_reader *r = NULL;
	int rc = 0, ret = -1;

	if (end > c->size)
		end = c->size;
	if (!c->view && reader_take(c, &r))
		goto cleanup;
	while (off < end) {
		uint64_t len = end - off;
		rc = c->view ? bv_view_extent(c->view->v, off, &len) :
			       bv_reader_extent(r, off, &len);
		if (rc < 0) {
			fail(rc, c->name);
			goto cleanup;
		}
		if (len == 0 || len > end - off) { /* never: the contract */
			nbdkit_error("%s: extent at %" PRIu64 " has length "
				     "%" PRIu64, c->name, off, len);
			nbdkit_set_error(EIO);
			goto cleanup;
		}
		if (nbdkit_add_extent(ext, off, len, rc ? 0 :
				      NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO))
			goto cleanup;
		off += len;
		if (flags & NBDKIT_FLAG_REQ_ONE)
			break;
	}
	rc = 0;
	ret = 0;
cleanup:
	if (r)
		reader_give(c, r, rc < 0);
	return ret;
}

/* ---- the export list ---------------------------------------------- */

/* L made valid UTF-8 into OUT (bytes of a bad sequence and control
 * bytes as '?'): labels are any bytes, NBD descriptions UTF-8. */
static void utf8_clean(const char *l, char *out, size_t len)
{
	const unsigned char *s = (const unsigned char *)l;
	size_t o = 0;

	while (*s && o + 5 < len) {
		unsigned n = *s < 0x80 ? 0 : (*s & 0xe0) == 0xc0 ? 1 :
			     (*s & 0xf0) == 0xe0 ? 2 :
			     (*s & 0xf8) == 0xf0 && *s <= 0xf4 ? 3 : 4;
		unsigned i = 1;
		if (n == 0) {
			out[o++] = *s < 0x20 || *s == 0x7f ? '?' : (char)*s;
			s++;
			continue;
		}
		if (n < 4 && *s >= 0xc2)
			for (; i <= n && (s[i] & 0xc0) == 0x80; i++)
				;
		if (n == 4 || *s < 0xc2 || i <= n) {
			out[o++] = '?';
			s++;
			continue;
		}
		memcpy(out + o, s, n + 1);
		o += n + 1;
		s += n + 1;
	}
	out[o] = '\0';
}

/* nbdkit sends at most this many names (MAX_EXPORTS of its
 * server/exports.c); a longer list is cut there, and says so. */
#define LIST_MAX 10000

struct lister {
	struct nbdkit_exports *exps;
	bv_store *s;
	const char *replica;
	unsigned count;
	int failed; /* nbdkit_add_export failed: its error stands */
	int cut;    /* LIST_MAX reached */
};

/* Adds NAME; 1 (stop the walk) when it failed or the list is full. */
static int list_add(struct lister *l, const char *name, const char *descr)
{
	if (l->count == LIST_MAX) {
		l->cut = 1;
		return 1;
	}
	if (nbdkit_add_export(l->exps, name, descr)) {
		l->failed = 1;
		return 1;
	}
	l->count++;
	return 0;
}

static int list_rp(void *ud, const bv_rp_info *rp)
{
	struct lister *l = ud;
	char name[BV_NAME_MAX + 32], label[BV_LABEL_MAX * 3 + 8];
	char when[32], descr[1024];
	struct tm tm;
	time_t t = (time_t)rp->time;

	snprintf(name, sizeof name, "%s@%" PRIu64, l->replica, rp->number);
	utf8_clean(rp->label, label, sizeof label);
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
	else
		snprintf(when, sizeof when, "time %" PRId64, rp->time);
	snprintf(descr, sizeof descr, "RP %" PRIu64 " of %s%s%s, %s%s%s, %s, "
		 "%s, %" PRIu64 " bytes, read-only", rp->number, l->replica,
		 strcmp(rp->group, l->replica) ? " in group " : "",
		 strcmp(rp->group, l->replica) ? rp->group : "",
		 *label ? "'" : "", *label ? label : "no label",
		 *label ? "'" : "", when,
		 rp->consistency == BV_APP_CONSISTENT ? "app-consistent" :
							"crash-consistent",
		 rp->size);
	return list_add(l, name, descr);
}

static int list_replica(void *ud, const bv_replica_info *r)
{
	struct lister *l = ud;
	l->replica = r->name;
	return bv_rp_list(l->s, r->name, list_rp, l);
}

static int list_view(void *ud, const bv_view_info *v)
{
	struct lister *l = ud;
	char name[BV_NAME_MAX + 8], descr[512];

	snprintf(name, sizeof name, VIEW_PREFIX "%s", v->name);
	snprintf(descr, sizeof descr, "view of %s@%" PRIu64 ", %" PRIu64
		 " bytes, %" PRIu64 " bytes written, read-write%s",
		 v->replica, v->rp, v->size, v->written_bytes,
		 v->in_use ? ", open in a process now" : "");
	return list_add(l, name, descr);
}

static int bvault_list_exports(int readonly, int is_tls,
			       struct nbdkit_exports *exps)
{
	struct lister l = { .exps = exps };
	uint64_t t0 = now_ns();
	struct gen *g = NULL;
	int rc, ret = -1;

	(void)readonly;
	(void)is_tls;
	if (fixed.kind)
		return nbdkit_add_export(exps, fixed_name, fixed.kind ==
					 TARGET_VIEW ? "view (read-write)" :
					 "recovery point (read-only)");
	if (gen_get(t0 > refresh_ns ? t0 - refresh_ns : 0, &g))
		goto cleanup;
	l.s = g->s;
	rc = bv_replica_list(g->s, list_replica, &l);
	if (rc == 0)
		rc = bv_view_list(g->s, list_view, &l);
	if (l.failed)
		goto cleanup;
	if (rc < 0) {
		fail(rc, "listing the exports");
		goto cleanup;
	}
	if (l.cut)
		nbdkit_error("store %s: the export list is cut at %d names "
			     "(nbdkit's most); every REPLICA@RP and view:NAME "
			     "can still be named", store_path, LIST_MAX);
	nbdkit_debug("bvault: listed %u exports", l.count);
	ret = 0;
cleanup:
	gen_put(g);
	return ret;
}

static const char *bvault_default_export(int readonly, int is_tls)
{
	struct target t;
	char name[BV_NAME_MAX + 32];

	(void)readonly;
	(void)is_tls;
	if (fixed.kind)
		return fixed_name;
	/* No single replica: "" stays, and .open says what to name. */
	if (default_target(now_ns(), &t))
		return "";
	target_name(&t, name, sizeof name);
	return nbdkit_strdup_intern(name);
}

/* ---- configuration and life cycle ------------------------------------ */

static int bvault_config(const char *key, const char *value)
{
	char shown[SHOW_MAX + 4];

	if (strcmp(key, "store") == 0) {
		free(store_path);
		if (!(store_path = nbdkit_absolute_path(value)))
			return -1;
		return 0;
	}
	if (strcmp(key, "export") == 0) {
		if (fixed.kind) {
			nbdkit_error("export=%s: export= or view= given "
				     "twice", show(value, shown));
			return -1;
		}
		if (*value == '\0' || target_parse(value, &fixed))
			goto bad_export;
		if (fixed.kind != TARGET_RP)
			goto bad_export;
		return 0;
	}
	if (strcmp(key, "view") == 0) {
		if (fixed.kind) {
			nbdkit_error("view=%s: export= or view= given twice",
				     show(value, shown));
			return -1;
		}
		if (!name_ok(value, strlen(value))) {
			nbdkit_error("view=%s: not a view name (1 to %d of "
				     "A-Z a-z 0-9 . _ -)", show(value, shown),
				     BV_NAME_MAX);
			return -1;
		}
		fixed.kind = TARGET_VIEW;
		snprintf(fixed.name, sizeof fixed.name, "%s", value);
		return 0;
	}
	if (strcmp(key, "readers") == 0) {
		unsigned n;
		if (nbdkit_parse_unsigned("readers", value, &n))
			return -1;
		if (n < 1 || n > READERS_MAX) {
			nbdkit_error("readers=%s: not a number from 1 to %d",
				     show(value, shown), READERS_MAX);
			return -1;
		}
		readers_max = n;
		return 0;
	}
	if (strcmp(key, "refresh") == 0) {
		unsigned ms;
		if (nbdkit_parse_unsigned("refresh", value, &ms))
			return -1;
		if (ms > 3600000) {
			nbdkit_error("refresh=%s: more than an hour (the "
				     "value is in milliseconds)",
				     show(value, shown));
			return -1;
		}
		refresh_ns = ms * 1000000ull;
		return 0;
	}
	nbdkit_error("unknown parameter '%s' (store=, export=, view=, "
		     "readers=, refresh=)", show(key, shown));
	return -1;
bad_export:
	nbdkit_error("export=%s: not REPLICA@RP, REPLICA@latest or REPLICA "
		     "(use view= for a view)", show(value, shown));
	return -1;
}

/* Checks what can be checked without opening the store (which must wait
 * for .after_fork): the path is a directory holding a store marker. */
static int bvault_config_complete(void)
{
	char marker[PATH_MAX];
	struct stat st;

	if (!store_path) {
		nbdkit_error("store=STORE is required (the bvault store "
			     "directory)");
		return -1;
	}
	if (stat(store_path, &st)) {
		nbdkit_error("store %s: %m", store_path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		nbdkit_error("store %s: not a directory", store_path);
		return -1;
	}
	snprintf(marker, sizeof marker, "%s/bvault.store", store_path);
	if (access(marker, R_OK)) {
		nbdkit_error("store %s: not a bvault store (no readable "
			     "bvault.store: %m)", store_path);
		return -1;
	}
	if (fixed.kind) {
		char name[BV_NAME_MAX + 32];
		target_name(&fixed, name, sizeof name);
		if (!(fixed_name = strdup(name))) {
			nbdkit_error("out of memory");
			return -1;
		}
	}
	return 0;
}

/* Opens the first generation, and checks that a fixed export exists, so
 * that a bad store= or export= stops the server at start. Everything
 * the plugin creates from here on (RocksDB's log of a read-only open,
 * view overlays) is private, as the store is. */
static void bvault_cleanup(void);

static int bvault_after_fork(void)
{
	struct gen *g = NULL;
	bv_reader *r = NULL;
	bv_view_info vi;
	int rc, ret = -1;

	umask(077);
	if (gen_get(0, &g))
		goto cleanup;
	if (fixed.kind == TARGET_RP) {
		if ((rc = bv_reader_open(g->s, fixed.name, fixed.rp, &r))) {
			fail(rc, fixed_name);
			goto cleanup;
		}
	} else if (fixed.kind == TARGET_VIEW) {
		if ((rc = bv_view_info_get(g->s, fixed.name, &vi))) {
			fail(rc, fixed_name);
			goto cleanup;
		}
	}
	ret = 0;
cleanup:
	bv_reader_close(r);
	gen_put(g);
	if (ret)
		bvault_cleanup(); /* nbdkit exits without calling it */
	return ret;
}

static void bvault_cleanup(void)
{
	struct gen *g;

	pthread_mutex_lock(&gen_lock);
	g = gen_cur;
	gen_cur = NULL;
	pthread_mutex_unlock(&gen_lock);
	gen_put(g);
}

static void bvault_unload(void)
{
	free(store_path);
	free(fixed_name);
}

static void bvault_dump_plugin(void)
{
	printf("bvault_version=%s\n", bv_version());
	printf("bvault_views=yes\n");
}

#define BVAULT_CONFIG_HELP \
	"store=<DIR>          (required) the bvault store\n" \
	"export=<REPLICA@RP>  serve this RP only (else the client's export\n" \
	"                     name picks REPLICA@RP, REPLICA@latest,\n" \
	"                     REPLICA or view:NAME)\n" \
	"view=<NAME>          serve view NAME only, read-write\n" \
	"readers=<N>          readers per connection (default 4)\n" \
	"refresh=<MS>         reopen the store for latest RPs and lists\n" \
	"                     when older than this (default 1000)"

static struct nbdkit_plugin plugin = {
	.name = "bvault",
	.longname = "bvault recovery points and views",
	.version = BVAULT_VERSION,
	.description = "Serves the recovery points (read-only) and views "
		       "(read-write) of a bvault store.",
	.unload = bvault_unload,
	.config = bvault_config,
	.config_complete = bvault_config_complete,
	.config_help = BVAULT_CONFIG_HELP,
	.magic_config_key = "store",
	.after_fork = bvault_after_fork,
	.cleanup = bvault_cleanup,
	.dump_plugin = bvault_dump_plugin,
	.list_exports = bvault_list_exports,
	.default_export = bvault_default_export,
	.open = bvault_open,
	.close = bvault_close,
	.get_size = bvault_get_size,
	.export_description = bvault_export_description,
	.block_size = bvault_block_size,
	.can_write = bvault_can_write,
	.can_flush = bvault_can_flush,
	.can_trim = bvault_can_trim,
	.can_zero = bvault_can_zero,
	.can_fast_zero = bvault_can_fast_zero,
	.can_fua = bvault_can_fua,
	.can_multi_conn = bvault_can_multi_conn,
	.is_rotational = bvault_is_rotational,
	.pread = bvault_pread,
	.pwrite = bvault_pwrite,
	.zero = bvault_zero,
	.trim = bvault_trim,
	.flush = bvault_flush,
	.extents = bvault_extents,
	.errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
