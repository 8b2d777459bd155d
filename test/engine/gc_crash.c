/*
 * engine-gc-crash: kill -9 a process running GC at every point of a run
 * and at random moments (INVARIANTS.md 5, 9, 12).
 *
 * The store has garbage of every kind: aborted sessions, chunks a
 * session overwrote, and a session killed after its first batch went to
 * the containers and before its commit (unknown bytes, the open records
 * them). Each cycle adds garbage, then runs a child that runs GC after
 * GC and kills it: at one of the run's points (the hook raises SIGKILL:
 * after the snapshot, after the mark, with a batch condemned, after its
 * delete, after the copies' flush and before their repoint, after the
 * retire and before any remove), or after a random delay. The parent
 * then reopens the store and reads every RP bit for bit. At the end GC
 * runs until it finds nothing to do, and a dry run finds nothing
 * reclaimable above the threshold.
 *
 * BV_KILLS sets the number of kills (default 24; bench/gc-torture.sh
 * runs 200); BV_SEED replays the contents.
 */
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "gctest.h"

static struct gt_model M;
static char *dir;

static void kill_here(void *ud, int point)
{
	if (point == *(int *)ud)
		raise(SIGKILL);
}

/* The child: opens the store, says so on fd OUT, then runs GC after GC
 * (KILL_AT >= 0: killed by its own hook at that point). */
static int gc_child(const char *store, int out, int kill_at)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2 };
	if (bv_store_open(store, &o, &s) < 0) {
		fprintf(stderr, "gc child: %s\n", bv_store_error(s));
		return 2;
	}
	if (kill_at >= 0)
		bv_gc_set_hook(s, kill_here, &kill_at);
	char c = 'o';
	if (write(out, &c, 1) != 1)
		return 2;
	for (;;) {
		bv_gc_report g;
		if (bv_gc(s, NULL, &g) < 0) {
			fprintf(stderr, "gc child: %s\n", bv_store_error(s));
			return 1;
		}
	}
}

/* The child that leaves unknown bytes: a session whose first batch is
 * handed to the writer thread, then killed before any commit. */
static int ingest_child(const char *store, int out)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2 };
	bv_ingest *in = NULL;
	uint8_t *buf = malloc(GT_DISK);
	if (!buf || bv_store_open(store, &o, &s) < 0 ||
	    bv_ingest_begin(s, &in) < 0)
		return 2;
	int slot = bv_ingest_add(in, gt_names[0], (uint64_t)M.nrp[0], 0);
	gt_noise(77, buf, GT_DISK);
	if (slot < 0 || bv_ingest_write(in, slot, 0, buf, GT_DISK) < 0)
		return 2;
	gt_noise(78, buf, GT_DISK);
	if (bv_ingest_write(in, slot, 0, buf, GT_DISK) < 0)
		return 2;
	char c = 'w';
	if (write(out, &c, 1) != 1)
		return 2;
	for (;;)
		pause();
}

static pid_t spawn(const char *mode, int kill_at, int *from)
{
	int p[2];
	if (pipe(p))
		bail_out("pipe");
	pid_t pid = fork();
	if (pid < 0)
		bail_out("fork");
	if (pid == 0) {
		char fd[16], ka[16], nrp[16];
		close(p[0]);
		snprintf(fd, sizeof fd, "%d", p[1]);
		snprintf(ka, sizeof ka, "%d", kill_at);
		snprintf(nrp, sizeof nrp, "%d", M.nrp[0]);
		execl("/proc/self/exe", "engine-gc-crash", mode, dir, fd, ka,
		      nrp, (char *)NULL);
		_exit(3);
	}
	close(p[1]);
	*from = p[0];
	return pid;
}

/* Waits up to MS for the child's word; 1 when it came. */
static int await(int fd, int ms)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	char c;
	return poll(&pf, 1, ms) == 1 && read(fd, &c, 1) == 1;
}

static void msleep(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&t, NULL);
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "gc") == 0)
		return gc_child(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 6 && strcmp(argv[1], "ingest") == 0) {
		M.nrp[0] = atoi(argv[5]);
		return ingest_child(argv[2], atoi(argv[3]));
	}
	setenv("BV_CONTAINER_MAX", GT_CMAX, 1);
	int kills = 24;
	const char *e = getenv("BV_KILLS");
	if (e && *e)
		kills = atoi(e);
	M.seed = et_seed(0x6363);
	et_rng rng = { M.seed };
	char *scratch = et_tmpdir("gc-crash");
	dir = et_path(scratch, "store");
	et_init(dir, GT_CHUNK);

	bv_store *s = et_open(dir);
	for (int r = 0; r < 3; r++) {
		ET_MUST(s, gt_commit(s, &M, 0));
		ET_MUST(s, gt_commit(s, &M, 1));
		ET_MUST(s, gt_garbage(s, &M, r % 2, 10 + (uint64_t)r, r % 2));
	}
	bv_store_close(s);
	int from;
	pid_t pid = spawn("ingest", -1, &from);
	int said = await(from, 20000);
	msleep(300); /* the writer thread flushes the first batch */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(from);
	s = et_open(dir);
	bv_stats st;
	ET_MUST(s, bv_stats_get(s, &st));
	diag("after the killed session: %" PRIu64 " unknown bytes",
	     st.unknown_bytes);
	ok(said && gt_check(s, &M), "a session killed before its commit "
	   "leaves every RP as it was");
	bv_store_close(s);

	int bad = -1, points = 0;
	for (int i = 0; i < kills && bad < 0; i++) {
		s = et_open(dir);
		if (gt_garbage(s, &M, i % 2, 100 + (uint64_t)i, i % 3 != 0) < 0)
			bail_out("garbage");
		if (i % 3 == 1)
			ET_MUST(s, gt_commit(s, &M, (i + 1) % 2));
		bv_store_close(s);
		/* Two thirds at a point of the run, in turn; the rest at a
		 * random moment. */
		int at = i % 3 != 2 ? (points++ % BV_GC_POINTS) : -1;
		pid = spawn("gc", at, &from);
		if (!await(from, 20000))
			bail_out("the gc child did not open the store");
		if (at < 0)
			msleep((int)et_below(&rng, 120));
		else
			msleep(2000); /* it kills itself there, or runs on */
		kill(pid, SIGKILL);
		int wst;
		waitpid(pid, &wst, 0);
		close(from);
		if (!WIFSIGNALED(wst)) {
			diag("kill %d: the gc child exited %d", i,
			     WEXITSTATUS(wst));
			bad = i;
			break;
		}
		s = et_open(dir);
		if (!gt_check(s, &M)) {
			diag("kill %d (point %d): an RP reads wrong", i, at);
			bad = i;
		}
		bv_store_close(s);
	}
	ok(bad < 0, "%d kills of a running GC (%d at its points): every RP "
	   "bit for bit after each", kills, points);

	s = et_open(dir);
	int runs = gt_gc_until_clean(s, 8, NULL);
	ok(runs > 0, "the next GC runs finish the job (%d runs)", runs);
	bv_gc_report g;
	bv_gc_opts dry = { .dry_run = 1 };
	ET_MUST(s, bv_gc(s, &dry, &g));
	gt_report("dry run after the last", &g);
	ok(g.dead_chunks == 0 && g.containers_rewritten == 0,
	   "nothing reclaimable is left above the threshold");
	ok(gt_check(s, &M), "every RP bit for bit at the end");
	ET_MUST(s, bv_stats_get(s, &st));
	diag("at the end: %" PRIu64 " unknown bytes", st.unknown_bytes);
	bv_store_close(s);
	gt_model_free(&M);
	free(dir);
	et_tmpdir_done(scratch);
	return done_testing();
}
