/*
 * engine-gc: garbage collection and compaction (INVARIANTS.md 5 and 12).
 *
 *  1. A store with garbage of each kind (aborted sessions, chunks a
 *     session overwrote): a dry run changes no container and reports
 *     the dead chunks; runs until nothing is left delete exactly the
 *     garbage made, rewrite containers below the threshold, give bytes
 *     back, and every RP reads bit for bit after each; a last run finds
 *     nothing to do. Refusals: a read-only handle, a bad threshold.
 *  2. A dedup hit against garbage at each point of a run (before the
 *     mark, between mark and sweep, while a batch is condemned and while
 *     its delete is written): the session's RP reads right. Each
 *     protection is then switched off on a copy of the store (the
 *     touched set, the pins) and the same check must see the loss.
 *  3. Readers: a read-only handle of this process, and a read-only
 *     process, opened before a compaction keep reading every byte of
 *     their RPs while it runs; the victims stay (waiting) until they
 *     close, and a later run removes them. With the readers' locks
 *     ignored (on a copy), the reading process must fail.
 *
 * BV_SEED replays the contents.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "gctest.h"

static char *dir, *scratch;
static struct gt_model M;

static void msleep(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&t, NULL);
}

static int run_cmd(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void build(bv_store *s)
{
	for (int round = 0; round < 4; round++) {
		ET_MUST(s, gt_commit(s, &M, 0));
		ET_MUST(s, gt_commit(s, &M, 1));
		ET_MUST(s, gt_garbage(s, &M, 0, 100 + (uint64_t)round, 1));
		ET_MUST(s, gt_garbage(s, &M, 1, 200 + (uint64_t)round, 0));
	}
}

/* ---- 1 ------------------------------------------------------------------ */

static char *listing(void)
{
	char cmd[4096], *out = NULL;
	size_t cap = 0;
	snprintf(cmd, sizeof cmd, "cd %s/containers && ls -l --time-style="
		 "full-iso . | sort", dir);
	FILE *f = popen(cmd, "r");
	if (!f)
		bail_out("popen");
	FILE *m = open_memstream(&out, &cap);
	int c;
	while ((c = fgetc(f)) != EOF)
		fputc(c, m);
	pclose(f);
	fclose(m);
	return out;
}

static void part_basic(void)
{
	bv_store *s = et_open(dir);
	bv_gc_report g;
	bv_gc_opts dry = { .dry_run = 1 };
	int n0;

	build(s);
	ok(gt_check(s, &M), "the store with garbage reads right");
	uint64_t before = gt_container_bytes(dir, &n0);
	char *l0 = listing();
	ET_MUST(s, bv_gc(s, &dry, &g));
	gt_report("dry run", &g);
	char *l1 = listing();
	ok(strcmp(l0, l1) == 0, "a dry run changes no container");
	ok(g.dead_chunks <= M.garbage && g.dead_chunks * 10 >= M.garbage * 9,
	   "the dry run finds the garbage (%" PRIu64 " of %" PRIu64 ")",
	   g.dead_chunks, M.garbage);
	ok(g.containers_rewritten > 0 && g.bytes_removed > 0,
	   "and says which containers it would rewrite");
	free(l0);
	free(l1);

	bv_gc_opts bad = { .threshold = 101 };
	ok(bv_gc(s, &bad, &g) == BV_EINVAL, "a threshold above 100 is refused");

	ET_MUST(s, bv_gc(s, NULL, &g));
	gt_report("run 1", &g);
	uint64_t dead = g.dead_chunks;
	ok(g.dead_chunks * 10 >= M.garbage * 9, "the run deletes the garbage");
	ok(g.containers_removed > 0 && g.bytes_reclaimed > 0,
	   "removes containers and gives bytes back");
	ok(g.bytes_read <= 2 * g.bytes_removed + g.bytes_written,
	   "and reads only the containers it rewrites");
	ok(gt_check(s, &M), "every RP reads bit for bit after the run");
	int n1;
	uint64_t after = gt_container_bytes(dir, &n1);
	diag("containers: %d files %" PRIu64 " bytes before, %d files %" PRIu64
	     " after", n0, before, n1, after);
	ok(after < before, "the containers take fewer bytes");
	int runs = gt_gc_until_clean(s, 5, &dead);
	ok(runs > 0 && dead == M.garbage, "runs until clean delete exactly the "
	   "garbage (%" PRIu64 " of %" PRIu64 ", %d more runs)", dead,
	   M.garbage, runs);
	ET_MUST(s, bv_gc(s, NULL, &g));
	ok(g.dead_chunks == 0 && g.containers_rewritten == 0 &&
	   g.containers_retired == 0, "a last run finds nothing to do");
	ok(gt_check(s, &M), "every RP reads bit for bit");
	bv_store_close(s);

	bv_open_opts ro = { .read_only = 1 };
	ET_MUST(NULL, bv_store_open(dir, &ro, &s));
	ok(bv_gc(s, NULL, &g) == BV_EREADONLY, "a read-only handle is refused");
	ok(gt_check(s, &M), "and reads every RP");
	bv_store_close(s);
}

/* ---- 2 ------------------------------------------------------------------ */

struct hit {
	bv_store *s;
	int point;           /* where the hit goes */
	int fired;
	uint64_t salt;       /* the garbage it dedups against */
	pthread_t th;
	int th_started;
	atomic_int th_done;
	int th_rc;
	int blocked;         /* the thread had not finished at the point */
	bv_ingest *open;     /* point SWEEP: a session left open */
	uint8_t *img;        /* the RP it makes */
};

/* The hit: the next RP of "ra" holds the first 8 chunks of the garbage
 * noise SALT made. */
static void hit_image(struct hit *h)
{
	uint8_t *noise = malloc(GT_DISK);
	h->img = malloc(GT_DISK);
	gt_noise(M.seed ^ h->salt, noise, GT_DISK);
	memcpy(h->img, M.img[0][M.nrp[0]], GT_DISK);
	memcpy(h->img, noise, 8 * GT_CHUNK);
	free(noise);
}

static int hit_begin(struct hit *h, bv_ingest **in)
{
	int slot, rc;
	if ((rc = bv_ingest_begin(h->s, in)) < 0)
		return rc;
	if ((slot = bv_ingest_add(*in, "ra", (uint64_t)M.nrp[0], 0)) < 0)
		return slot;
	return bv_ingest_write(*in, slot, 0, h->img, GT_DISK);
}

static int hit_commit(bv_ingest *in)
{
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp = 0;
	return bv_ingest_commit(in, &co, &rp);
}

static int hit_session(struct hit *h)
{
	bv_ingest *in = NULL;
	int rc = hit_begin(h, &in);
	if (rc < 0) {
		bv_ingest_abort(in);
		return rc;
	}
	return hit_commit(in);
}

static void *hit_main(void *arg)
{
	struct hit *h = arg;
	h->th_rc = hit_session(h);
	if (h->th_rc < 0)
		diag("session beside gc: %s", bv_store_error(h->s));
	atomic_store(&h->th_done, 1);
	return NULL;
}

static void on_point(void *ud, int point)
{
	struct hit *h = ud;
	if (point != h->point || h->fired)
		return;
	h->fired = 1;
	if (point == BV_GC_AT_MARK) {
		/* Applied after the snapshot: only T keeps the chunks. */
		h->th_rc = hit_session(h);
	} else if (point == BV_GC_AT_SWEEP) {
		/* Looked up, pinned, not applied when the sweep looks. */
		h->th_rc = hit_begin(h, &h->open);
	} else {
		/* The hits are condemned (or being deleted): the session's
		 * lookups wait until the delete is synced, then miss. */
		pthread_create(&h->th, NULL, hit_main, h);
		h->th_started = 1;
		msleep(300);
		h->blocked = !atomic_load(&h->th_done);
	}
}

/* Runs a GC with a dedup hit at POINT on store S (unsafe flags FLAGS);
 * returns 1 when every RP, the hit's included, reads right after. */
static int hit_run(bv_store *s, int point, int flags, uint64_t salt,
		   int *blocked)
{
	struct hit h = { .s = s, .point = point, .salt = salt };
	bv_gc_report g;
	uint64_t dead = 0;

	/* Only the new garbage is left to find. */
	if (gt_gc_until_clean(s, 6, NULL) < 0)
		bail_out("gc");
	ET_MUST(s, gt_garbage(s, &M, 1, salt, 0));
	hit_image(&h);
	bv_gc_set_unsafe(s, flags);
	bv_gc_set_hook(s, on_point, &h);
	int rc = bv_gc(s, NULL, &g);
	bv_gc_set_hook(s, NULL, NULL);
	bv_gc_set_unsafe(s, 0);
	if (h.th_started)
		pthread_join(h.th, NULL);
	if (h.open && h.th_rc >= 0)
		h.th_rc = hit_commit(h.open);
	else if (h.open)
		bv_ingest_abort(h.open);
	if (rc < 0 || h.th_rc < 0 || !h.fired) {
		diag("point %d: gc %d, session %d, fired %d: %s", point, rc,
		     h.th_rc, h.fired, bv_store_error(s));
		free(h.img);
		return 0;
	}
	dead = g.dead_chunks;
	M.nrp[0]++;
	M.img[0][M.nrp[0]] = h.img;
	if (blocked)
		*blocked = h.blocked;
	diag("point %d: %" PRIu64 " dead", point, dead);
	return gt_check(s, &M);
}

static const char *const point_name[] = {
	"before the mark", "between mark and sweep", "after the condemn",
	"during the delete batch",
};

static void part_hits(void)
{
	bv_store *s = et_open(dir);
	for (int p = BV_GC_AT_MARK; p <= BV_GC_AT_DELETE; p++) {
		int blocked = 0;
		ok(hit_run(s, p, 0, 1000 + (uint64_t)p, &blocked),
		   "a dedup hit against garbage %s: every RP reads right",
		   point_name[p]);
		if (p >= BV_GC_AT_CONDEMN)
			ok(blocked, "the session waited for the delete");
	}
	bv_store_close(s);

	/* The same with a protection off, on a copy: the check must see the
	 * loss, or it proves nothing. */
	static const struct {
		int point, flags;
		const char *what;
	} bad[] = {
		{ BV_GC_AT_MARK, BV_GC_UNSAFE_NO_TOUCHED, "the touched set" },
		{ BV_GC_AT_SWEEP, BV_GC_UNSAFE_NO_PINS, "the pins" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char cmd[8192], *copy = et_path(scratch, "copy");
		struct gt_model keep = M;
		snprintf(cmd, sizeof cmd, "rm -rf %s && cp -a %s %s", copy, dir,
			 copy);
		if (run_cmd(cmd))
			bail_out("copy");
		bv_store *c = et_open(copy);
		int good = hit_run(c, bad[i].point, bad[i].flags, 2000 + i,
				   NULL);
		ok(!good, "with %s off, the check sees the hit's chunks lost",
		   bad[i].what);
		bv_store_close(c);
		/* The copy's RPs are not the store's: back to its model. */
		if (M.nrp[0] != keep.nrp[0]) {
			free(M.img[0][M.nrp[0]]);
			M.img[0][M.nrp[0]] = NULL;
		}
		M.nrp[0] = keep.nrp[0];
		M.nrp[1] = keep.nrp[1];
		M.garbage = keep.garbage;
		for (int r = 0; r < GT_NREP; r++)
			for (int k = keep.nrp[r] + 1; k <= GT_MAXRP; k++)
				if (M.img[r][k]) {
					free(M.img[r][k]);
					M.img[r][k] = NULL;
				}
		et_rm_rf(copy);
		free(copy);
	}
}

/* ---- 3 ------------------------------------------------------------------ */

/* The images as files, for the reading process. */
static void write_images(void)
{
	for (int r = 0; r < GT_NREP; r++)
		for (int k = 1; k <= M.nrp[r]; k++) {
			char name[64];
			snprintf(name, sizeof name, "img-%s-%d", gt_names[r], k);
			char *p = et_path(scratch, name);
			et_write_file(p, M.img[r][k], GT_DISK);
			free(p);
		}
}

/* The reading process: opens STORE read-only, says so on fd OUT, waits
 * for a byte on fd IN, then exports every RP named by the image files
 * and compares. Exit 0 when all read right. */
static int reader_child(const char *store, const char *scr, int in, int out,
			int nra, int nrb)
{
	bv_open_opts ro = { .read_only = 1 };
	bv_store *s = NULL;
	int nrp[2] = { nra, nrb }, bad = 0;
	char c = 'o';
	if (bv_store_open(store, &ro, &s) < 0) {
		fprintf(stderr, "reader: open: %s\n", bv_store_error(s));
		return 2;
	}
	if (write(out, &c, 1) != 1 || read(in, &c, 1) != 1)
		return 2;
	for (int r = 0; r < GT_NREP; r++)
		for (int k = 1; k <= nrp[r]; k++) {
			char name[64], *p, *e = et_path(scr, "child.img");
			uint8_t *a = NULL, *b = NULL;
			uint64_t al = 0, bl = 0;
			snprintf(name, sizeof name, "img-%s-%d", gt_names[r], k);
			p = et_path(scr, name);
			unlink(e);
			if (bv_export(s, gt_names[r], (uint64_t)k, e, NULL,
				      NULL) < 0) {
				fprintf(stderr, "reader: export %s@%d: %s\n",
					gt_names[r], k, bv_store_error(s));
				bad = 1;
			} else if (et_read_file(e, &a, &al) ||
				   et_read_file(p, &b, &bl) || al != bl ||
				   memcmp(a, b, al)) {
				fprintf(stderr, "reader: %s@%d differs\n",
					gt_names[r], k);
				bad = 1;
			}
			free(a);
			free(b);
			unlink(e);
			free(e);
			free(p);
		}
	bv_store_close(s);
	return bad;
}

struct child {
	pid_t pid;
	int to, from;
};

static struct child spawn_reader(const char *store)
{
	int a[2], b[2];
	struct child c;
	if (pipe(a) || pipe(b))
		bail_out("pipe");
	c.pid = fork();
	if (c.pid < 0)
		bail_out("fork");
	if (c.pid == 0) {
		char ain[16], bout[16], ra[16], rb[16];
		close(a[1]);
		close(b[0]);
		snprintf(ain, sizeof ain, "%d", a[0]);
		snprintf(bout, sizeof bout, "%d", b[1]);
		snprintf(ra, sizeof ra, "%d", M.nrp[0]);
		snprintf(rb, sizeof rb, "%d", M.nrp[1]);
		execl("/proc/self/exe", "engine-gc", "reader", store, scratch,
		      ain, bout, ra, rb, (char *)NULL);
		_exit(3);
	}
	close(a[0]);
	close(b[1]);
	c.to = a[1];
	c.from = b[0];
	char ch;
	if (read(c.from, &ch, 1) != 1)
		bail_out("the reader did not open");
	return c;
}

static int reap(struct child *c)
{
	int st;
	char ch = 'g';
	if (write(c->to, &ch, 1) != 1)
		bail_out("write");
	close(c->to);
	close(c->from);
	waitpid(c->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void part_readers(void)
{
	bv_store *s = et_open(dir);
	bv_gc_report g;
	bv_open_opts ro = { .read_only = 1 };
	bv_store *h = NULL;

	if (gt_gc_until_clean(s, 6, NULL) < 0)
		bail_out("gc");
	for (int i = 0; i < 3; i++)
		ET_MUST(s, gt_garbage(s, &M, i % 2, 3000 + (uint64_t)i, 1));
	/* RP history as the readers see it. */
	struct gt_model seen = M;
	write_images();

	ET_MUST(NULL, bv_store_open(dir, &ro, &h));
	struct child c = spawn_reader(dir);
	ET_MUST(s, bv_gc(s, NULL, &g));
	gt_report("beside readers", &g);
	ok(g.containers_retired > 0 && g.containers_removed == 0 &&
	   g.containers_waiting >= g.containers_retired,
	   "containers retired beside open readers wait for them");
	ok(gt_check(h, &seen), "a read-only handle opened before reads every "
	   "byte of every RP");
	ok(reap(&c) == 0, "a read-only process opened before reads every "
	   "byte of every RP");
	ET_MUST(s, bv_gc(s, NULL, &g));
	ok(g.containers_removed == 0 && g.containers_waiting > 0,
	   "with the handle still open, nothing is removed");
	bv_store_close(h);
	ET_MUST(s, bv_gc(s, NULL, &g));
	gt_report("after the readers closed", &g);
	ok(g.containers_removed > 0 && g.containers_waiting == 0,
	   "once they closed, a later run removes the containers");
	ok(gt_check(s, &M), "every RP reads right");

	/* A reader that opens after a compaction needs no old container. */
	for (int i = 0; i < 3; i++)
		ET_MUST(s, gt_garbage(s, &M, i % 2, 3100 + (uint64_t)i, 1));
	write_images();
	ET_MUST(s, bv_gc(s, NULL, &g));
	c = spawn_reader(dir);
	ET_MUST(s, bv_gc(s, NULL, &g));
	ok(reap(&c) == 0 && g.containers_waiting == 0,
	   "a reader opened after the repoint does not hold the victims");
	bv_store_close(s);

	/* The readers' locks ignored, on a copy: the reading process must
	 * then fail, or the test above proves nothing. */
	char cmd[8192], *copy = et_path(scratch, "copy");
	snprintf(cmd, sizeof cmd, "rm -rf %s && cp -a %s %s", copy, dir, copy);
	if (run_cmd(cmd))
		bail_out("copy");
	s = et_open(copy);
	if (gt_gc_until_clean(s, 6, NULL) < 0)
		bail_out("gc");
	struct gt_model keep = M;
	for (int i = 0; i < 3; i++)
		ET_MUST(s, gt_garbage(s, &M, i % 2, 3200 + (uint64_t)i, 1));
	write_images();
	c = spawn_reader(copy);
	bv_gc_set_unsafe(s, BV_GC_UNSAFE_NO_READERS);
	ET_MUST(s, bv_gc(s, NULL, &g));
	bv_gc_set_unsafe(s, 0);
	ok(g.containers_removed > 0 && reap(&c) != 0,
	   "with the readers' locks ignored, the reading process fails");
	bv_store_close(s);
	et_rm_rf(copy);
	free(copy);
	for (int r = 0; r < GT_NREP; r++) {
		for (int k = keep.nrp[r] + 1; k <= M.nrp[r]; k++) {
			free(M.img[r][k]);
			M.img[r][k] = NULL;
		}
		M.nrp[r] = keep.nrp[r];
	}
}

int main(int argc, char **argv)
{
	if (argc == 8 && strcmp(argv[1], "reader") == 0)
		return reader_child(argv[2], argv[3], atoi(argv[4]),
				    atoi(argv[5]), atoi(argv[6]),
				    atoi(argv[7]));
	setenv("BV_CONTAINER_MAX", GT_CMAX, 1);
	M.seed = et_seed(0x6763);
	scratch = et_tmpdir("gc");
	dir = et_path(scratch, "store");
	et_init(dir, GT_CHUNK);
	part_basic();
	part_hits();
	part_readers();
	gt_model_free(&M);
	free(dir);
	et_tmpdir_done(scratch);
	return done_testing();
}
