/*
 * engine-crash: kill -9 an ingesting process at random moments and check
 * what survives (invariants 1-3).
 *
 * A child opens the store and commits express fulls of replica "vm" in a
 * loop, each with make_rp. The content of version K made by attempt A (the
 * kill cycle the child runs in) is a pure function of (seed, K, A), so the
 * parent can rebuild every image. The child keeps a log, each record
 * fsync'ed: an "intent" record (K, A) before the session begins, and a
 * "done" record (K, A, hash of the image) after bv_ingest_commit returns.
 *
 * After each kill the parent reopens the store and requires:
 *   - the RPs are exactly 1..M with M = K (last done) or K + 1 (the
 *     in-flight one, whose content is that of the last intent for K + 1);
 *   - every RP reads as its image (exported when the cycle does a full
 *     check, else the newest three exported and the rest sampled with
 *     bv_reader_pread), and the head reads as RP M;
 * then rewrites the log to match and starts the next child, which goes on
 * from the store's latest RP, so the store must stay usable after every
 * crash. A last child runs without being killed.
 *
 * Kills are timed from events, not from the clock alone, so that a slow,
 * loaded machine still sees kills mid-work: most cycles wait until the
 * child has the store open and has committed 0, 1 or 2 versions (it says
 * so through a pipe), then sleep a random delay.
 *
 * After each check, a copy of the store without its index is rebuilt
 * from the journal alone, and must hold the same RPs (INVARIANTS.md 9).
 *
 * BV_SEED replays a run; BV_KILLS sets the number of kills (default 24).
 */
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <xxhash.h>

#include "etest.h"

#define DISK (2u << 20)
#define CHUNK 16384u
#define MAXV 4096

enum { REC_INTENT = 1, REC_DONE = 2 };

typedef struct rec {
	uint32_t type;
	uint32_t attempt;
	uint64_t k;
	uint64_t hash;
} rec;

static uint64_t seed;
static char *store_dir, *log_path, *scratch;
static uint8_t *wbuf;

/* Applies version K of attempt A to IMG. */
static void gen_version(uint8_t *img, uint64_t k, uint32_t a)
{
	et_rng r = { seed ^ (k * 0x9e3779b97f4a7c15ull) ^
		     ((uint64_t)a << 40) };
	int n = (int)et_range(&r, 4, 24);
	for (int i = 0; i < n; i++) {
		uint64_t off = et_below(&r, DISK / 512) * 512;
		uint64_t len = et_range(&r, 1, 128) * 512;
		if (len > DISK - off)
			len = DISK - off;
		if (et_below(&r, 8) == 0)
			memset(img + off, 0, len);
		else
			et_fill(&r, img + off, len);
	}
}

/* The same changes as gen_version, sent to the engine. */
static int send_version(bv_ingest *in, int slot, uint64_t k, uint32_t a)
{
	et_rng r = { seed ^ (k * 0x9e3779b97f4a7c15ull) ^
		     ((uint64_t)a << 40) };
	int n = (int)et_range(&r, 4, 24), rc = 0;
	for (int i = 0; i < n && rc >= 0; i++) {
		uint64_t off = et_below(&r, DISK / 512) * 512;
		uint64_t len = et_range(&r, 1, 128) * 512;
		if (len > DISK - off)
			len = DISK - off;
		if (et_below(&r, 8) == 0) {
			rc = bv_ingest_zero(in, slot, off, len);
		} else {
			et_fill(&r, wbuf, len);
			rc = bv_ingest_write(in, slot, off, wbuf, len);
		}
	}
	return rc;
}

static void log_append(int fd, const rec *r)
{
	if (write(fd, r, sizeof *r) != (ssize_t)sizeof *r || fsync(fd) < 0)
		_exit(4);
}

/* The child: commits versions from the store's latest RP on, at most
 * MAXRUN of them (0: until killed). Exit codes: 0 done, 2 engine error,
 * 3 unexpected RP number, 4 log error. */
static void child(uint32_t attempt, int maxrun, int ready_fd)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 1 };
	bv_replica_info ri;
	uint64_t latest = 0;
	int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0644);

	if (fd < 0)
		_exit(4);
	if (bv_store_open(store_dir, &o, &s) < 0) {
		fprintf(stderr, "child open: %s\n", s ? bv_store_error(s) : "");
		_exit(2);
	}
	if (bv_replica_info_get(s, "vm", &ri) == 0)
		latest = ri.latest_rp;
	if (ready_fd >= 0) {
		/* Tells the parent the store is open: most kills are timed
		 * from here, so that a slow open on a loaded machine does
		 * not eat every delay. */
		if (write(ready_fd, "r", 1) != 1)
			_exit(4);
	}
	for (int i = 0; maxrun == 0 || i < maxrun; i++) {
		uint64_t k = latest + 1, rp = 0;
		bv_ingest *in;
		bv_commit_opts co = { .make_rp = 1, .label = "crash" };
		rec r = { REC_INTENT, attempt, k, 0 };
		int slot, rc;

		log_append(fd, &r);
		if (bv_ingest_begin(s, &in) < 0)
			_exit(2);
		slot = bv_ingest_add(in, "vm", latest, latest ? 0 : DISK);
		if (slot < 0 || send_version(in, slot, k, attempt) < 0) {
			fprintf(stderr, "child: %s\n", bv_store_error(s));
			_exit(2);
		}
		rc = bv_ingest_commit(in, &co, &rp);
		if (rc < 0) {
			fprintf(stderr, "child commit: %s\n", bv_store_error(s));
			_exit(2);
		}
		if (rp != k)
			_exit(3);
		/* The hash is the parent's business; the child records that
		 * the commit returned. */
		r.type = REC_DONE;
		log_append(fd, &r);
		latest = k;
		/* And tells the parent, which may wait for a few commits
		 * before it starts the kill's delay. */
		if (ready_fd >= 0 && write(ready_fd, "c", 1) != 1)
			_exit(4);
	}
	bv_store_close(s);
	_exit(0);
}

static rec *read_log(size_t *n)
{
	uint8_t *b = NULL;
	uint64_t len = 0;
	if (et_read_file(log_path, &b, &len) < 0) {
		*n = 0;
		return NULL;
	}
	*n = len / sizeof(rec); /* a torn last record is dropped */
	return (rec *)b;
}

/* The RP numbers of a list must be exactly 1, 2, ... */
typedef struct rp_walk {
	uint64_t count, last;
	int bad;
} rp_walk;

static int rp_walk_cb(void *ud, const bv_rp_info *rp)
{
	rp_walk *w = ud;
	if (rp->number != w->last + 1)
		w->bad = 1;
	w->last = rp->number;
	w->count++;
	return 0;
}

static uint32_t landed[MAXV + 2]; /* attempt whose version K landed */
static uint64_t hashes[MAXV + 2];

/* Reopens the store and checks it against the log; returns M, the
 * latest RP, and rewrites the log as M done records. */
static uint64_t check(int cycle, int full)
{
	size_t n;
	rec *log = read_log(&n);
	uint64_t K = 0, M = 0, intent_next = 0;
	uint32_t intent_attempt = 0;
	bv_store *s;
	bv_replica_info ri;
	int rc, good = 1;
	uint8_t *img = calloc(1, DISK);
	et_rng rr = { seed + (uint64_t)cycle };

	for (size_t i = 0; i < n; i++) {
		if (log[i].type == REC_DONE) {
			if (log[i].k != K + 1) {
				ok(0, "cycle %d: log says done %" PRIu64
				   " after %" PRIu64, cycle, log[i].k, K);
			}
			K = log[i].k;
			landed[K] = log[i].attempt;
		} else if (log[i].type == REC_INTENT) {
			intent_next = log[i].k;
			intent_attempt = log[i].attempt;
		}
	}
	free(log);

	s = et_open(store_dir);
	rc = bv_replica_info_get(s, "vm", &ri);
	if (rc == BV_ENOTFOUND) {
		M = 0;
	} else if (rc < 0) {
		ok(0, "cycle %d: info: %d %s", cycle, rc, bv_store_error(s));
		M = 0;
		good = 0;
	} else {
		M = ri.latest_rp;
	}
	if (M == K + 1 && intent_next == K + 1)
		landed[M] = intent_attempt;
	ok(M == K || (M == K + 1 && intent_next == K + 1),
	   "cycle %d: latest RP %" PRIu64 ", last committed %" PRIu64
	   ", in flight %" PRIu64, cycle, M, K,
	   intent_next > K ? intent_next : 0);
	if (M > K + 1 || M > MAXV) {
		bv_store_close(s);
		free(img);
		bail_out("an RP exists that was never committed");
	}
	if (M > 0 && rc == 0 && (ri.head == 0 || ri.size != DISK)) {
		diag("head %" PRIu64 " size %" PRIu64, ri.head, ri.size);
		good = 0;
	}
	if (M > 0) {
		rp_walk w = { 0, 0, 0 };
		rc = bv_rp_list(s, "vm", rp_walk_cb, &w);
		if (rc != 0 || w.bad || w.count != M) {
			diag("RP list: rc %d, %" PRIu64 " RPs, numbering %s",
			     rc, w.count, w.bad ? "broken" : "fine");
			good = 0;
		}
	}
	for (uint64_t k = 1; k <= M; k++) {
		gen_version(img, k, landed[k]);
		hashes[k] = XXH3_64bits(img, DISK);
		if (full || k + 3 > M) {
			if (!et_export_eq(s, "vm", k, scratch, img, DISK)) {
				diag("RP %" PRIu64 " (attempt %u) differs", k,
				     landed[k]);
				good = 0;
			}
		} else if (!et_pread_eq(s, "vm", k, img, DISK, &rr, 2)) {
			diag("RP %" PRIu64 " (attempt %u) differs", k,
			     landed[k]);
			good = 0;
		}
	}
	if (M > 0 && !et_pread_eq(s, "vm", 0, img, DISK, &rr, 4)) {
		diag("the head does not read as RP %" PRIu64, M);
		good = 0;
	}
	ok(good, "cycle %d: RPs 1..%" PRIu64 " read back%s, head is RP %" PRIu64,
	   cycle, M, full ? " (all exported)" : "", M);
	bv_store_close(s);

	/* The log now says exactly what the store holds. */
	{
		int fd = open(log_path, O_WRONLY | O_TRUNC | O_CREAT, 0644);
		for (uint64_t k = 1; k <= M; k++) {
			rec r = { REC_DONE, landed[k], k, hashes[k] };
			if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
				bail_out("log rewrite");
		}
		fsync(fd);
		close(fd);
	}
	free(img);
	return M;
}

/* The journal alone rebuilds what the store holds after the crash and
 * its recovery (storage/FORMAT.md, "The index journal"): a copy of the
 * store without index/ is rebuilt, and its RPs 1..M read as the images
 * (all exported when FULL, else the newest three, the rest sampled). */
static void rebuild_check(int cycle, uint64_t M, int full)
{
	char cmd[8192], err[1024] = "", old[256];
	char *copy = et_path(scratch, "rebuilt");
	bv_index_backup_info in;
	uint8_t *img = calloc(1, DISK);
	et_rng rr = { seed * 3 + (uint64_t)cycle };
	bv_replica_info ri = { 0 };
	int rc, good = 1;
	bv_store *s;

	et_rm_rf(copy);
	snprintf(cmd, sizeof cmd, "cp -a '%s' '%s' && rm -rf '%s/index'",
		 store_dir, copy, copy);
	if (system(cmd) != 0)
		bail_out("copy of the store");
	rc = bv_index_rebuild(copy, &in, old, sizeof old, err, sizeof err);
	ok(rc == 0, "cycle %d: the journal rebuilds the index (%" PRIu64
	   " entries)%s%s", cycle, in.sequence, rc ? ": " : "", err);
	if (rc == 0) {
		s = et_open(copy);
		if (M > 0 && (bv_replica_info_get(s, "vm", &ri) ||
			      ri.latest_rp != M))
			good = 0;
		for (uint64_t k = 1; k <= M && good; k++) {
			gen_version(img, k, landed[k]);
			good = full || k + 3 > M ?
			       et_export_eq(s, "vm", k, scratch, img, DISK) :
			       et_pread_eq(s, "vm", k, img, DISK, &rr, 2);
			if (!good)
				diag("rebuilt RP %" PRIu64 " differs", k);
		}
		ok(good, "cycle %d: the rebuilt index has RPs 1..%" PRIu64
		   " (latest %" PRIu64 "), each as committed", cycle, M,
		   ri.latest_rp);
		bv_store_close(s);
	}
	et_rm_rf(copy);
	free(copy);
	free(img);
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000),
			       (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int main(void)
{
	const char *e = getenv("BV_KILLS");
	int kills = e && *e ? atoi(e) : 24;
	et_rng rng;
	char *dir;
	uint64_t M = 0, waited = 0;
	int landed_inflight = 0, exited_early = 0;

	seed = et_seed(4242);
	rng.s = seed;
	dir = et_tmpdir("crash");
	store_dir = et_path(dir, "store");
	log_path = et_path(dir, "log");
	scratch = dir;
	wbuf = malloc(128 * 512);
	et_init(store_dir, CHUNK);

	for (int cycle = 1; cycle <= kills; cycle++) {
		uint64_t delay = et_range(&rng, 5, 200), before = M;
		uint64_t want = (uint64_t)cycle % 3, got = 0;
		/* One cycle in four times the kill from the fork, so that
		 * some land while the store is being opened (recovering). */
		int from_fork = cycle % 4 == 0;
		int status = 0, pfd[2];
		size_t n;
		rec *log;
		pid_t pid;

		fflush(stdout);
		if (pipe(pfd) < 0)
			bail_out("pipe");
		pid = fork();
		if (pid < 0)
			bail_out("fork");
		if (pid == 0) {
			close(pfd[0]);
			if (from_fork)
				close(pfd[1]);
			child((uint32_t)cycle, 0, from_fork ? -1 : pfd[1]);
		}
		close(pfd[1]);
		if (!from_fork) {
			struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
			char c;
			if (poll(&pf, 1, 30000) <= 0 || read(pfd[0], &c, 1) != 1)
				diag("cycle %d: the child did not report an "
				     "open store", cycle);
			while (got < want && poll(&pf, 1, 30000) > 0 &&
			       read(pfd[0], &c, 1) == 1)
				got++;
			if (got < want)
				diag("cycle %d: the child reported %" PRIu64
				     " commits of %" PRIu64, cycle, got, want);
			waited += got;
		}
		sleep_ms(delay);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		close(pfd[0]); /* after the kill: the child never sees EPIPE */
		if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
			exited_early++;
			ok(0, "cycle %d: the child ended by itself (status "
			   "0x%x) before the kill", cycle, status);
		}
		log = read_log(&n);
		{
			uint64_t done = 0, intent = 0;
			for (size_t i = 0; i < n; i++) {
				if (log[i].type == REC_DONE)
					done = log[i].k;
				else
					intent = log[i].k;
			}
			M = check(cycle, cycle % 6 == 0);
			rebuild_check(cycle, M, cycle % 6 == 0);
			if (M > done)
				landed_inflight++;
			diag("cycle %d: killed %" PRIu64 " ms after the %s, %"
			     PRIu64 " new RPs, in flight %" PRIu64 " %s", cycle,
			     delay, from_fork ? "fork" : "open",
			     M - before, intent > done ? intent : 0,
			     M > done ? "landed" : "");
		}
		free(log);
	}

	/* A last run that ends by itself: the store is still usable. */
	{
		int status = 0;
		uint64_t before = M;
		pid_t pid = fork();
		if (pid == 0)
			child((uint32_t)kills + 1, 5, -1);
		waitpid(pid, &status, 0);
		is_int(WIFEXITED(status) ? WEXITSTATUS(status) : 100 + status,
		       0, "a child after the last crash commits 5 more versions");
		M = check(kills + 1, 1);
		is_int(M, before + 5, "and they are all there");
	}
	diag("%" PRIu64 " RPs in all; %d in-flight commits landed; seed %" PRIu64,
	     M, landed_inflight, seed);
	ok(M >= waited + 5, "every commit a child reported survived its kill "
	   "(%" PRIu64 " RPs, %" PRIu64 " reported before the kills, 5 by "
	   "the last child)", M, waited);
	ok(waited >= (uint64_t)kills / 3, "the kills fell amid work: %" PRIu64
	   " commits before them", waited);
	(void)exited_early;
	free(wbuf);
	free(store_dir);
	free(log_path);
	et_tmpdir_done(dir);
	return done_testing();
}
