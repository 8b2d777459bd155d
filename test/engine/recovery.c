/*
 * engine-recovery: recovery never destroys committed data (INVARIANTS.md,
 * "nothing lost"; storage/kv.c, the seal; storage/container.c C2).
 *
 *  1. A byte of the RocksDB write-ahead log flipped after two commits, at
 *     several positions: a writable open either finds both RPs whole or
 *     refuses with an error naming the index; it never silently opens
 *     without a committed RP, and no container byte is cut or removed.
 *     A read-only open then reads correctly whatever it can read.
 *  2. index/ copied back from before the last ingest: the writable open
 *     refuses (BV_ELOST) and changes no container; read-only opens read
 *     RP 1; accepting the loss opens, keeps the newer bytes (listed as
 *     unknown) and ingests on.
 *  3. A session killed (-9) after its batches were written and
 *     fdatasync'ed but before its commit: the reopen keeps every
 *     container byte, RP 1 reads back, and the store ingests on.
 *
 * Each child that makes commits ends with _exit() and no close, so the
 * write-ahead log still holds them (a close flushes it into tables).
 */
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

#include "etest.h"

#define SIZE (24u << 20)

static uint8_t *img1, *img2, *img3;

/* Every container file with its size and a checksum of its bytes. */
struct cfile {
	char name[256];
	uint64_t size, sum;
};

static size_t list_containers(const char *store, struct cfile *out,
			      size_t max)
{
	char *dir = et_path(store, "containers");
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	while (d && (e = readdir(d)) != NULL && n < max) {
		char *p;
		uint8_t *buf = NULL;
		uint64_t len = 0, sum = 1469598103934665603ull;

		if (!strstr(e->d_name, ".bvc"))
			continue;
		p = et_path(dir, e->d_name);
		if (et_read_file(p, &buf, &len) == 0) {
			for (uint64_t i = 0; i < len; i++)
				sum = (sum ^ buf[i]) * 1099511628211ull;
			free(buf);
		}
		free(p);
		snprintf(out[n].name, sizeof out[n].name, "%s", e->d_name);
		out[n].size = len;
		out[n].sum = sum;
		n++;
	}
	if (d)
		closedir(d);
	free(dir);
	return n;
}

/* 1 when every container of BEFORE is in AFTER with the same bytes, or
 * with more bytes after them (appends). */
static int containers_kept(const struct cfile *before, size_t nb,
			   const struct cfile *after, size_t na, int exact)
{
	for (size_t i = 0; i < nb; i++) {
		size_t j;
		for (j = 0; j < na; j++)
			if (!strcmp(before[i].name, after[j].name))
				break;
		if (j == na) {
			diag("container %s is gone", before[i].name);
			return 0;
		}
		if (after[j].size < before[i].size ||
		    (exact && after[j].sum != before[i].sum)) {
			diag("container %s changed: %" PRIu64 " -> %" PRIu64
			     " bytes", before[i].name, before[i].size,
			     after[j].size);
			return 0;
		}
	}
	return 1;
}

static void ingest_image(bv_store *s, const uint8_t *img, uint64_t base)
{
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp = 0;
	int slot;

	ET_MUST(s, bv_ingest_begin(s, &in));
	ET_MUST(s, slot = bv_ingest_add(in, "vm1", base, SIZE));
	ET_MUST(s, bv_ingest_write(in, slot, 0, img, SIZE));
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
}

/* In a child: open, ingest IMG as the RP after BASE, and _exit without a
 * close (or, KILL_BEFORE_COMMIT, write it all and SIGKILL itself before
 * the commit). */
static void child_ingest(const char *store, const uint8_t *img,
			 uint64_t base, int kill_before_commit)
{
	pid_t pid = fork();
	int st = 0;

	if (pid < 0)
		bail_out("fork");
	if (pid == 0) {
		bv_store *s = NULL;
		bv_open_opts o = { .workers = 2 };
		if (bv_store_open(store, &o, &s) < 0)
			_exit(3);
		if (kill_before_commit) {
			bv_ingest *in = NULL;
			int slot;
			if (bv_ingest_begin(s, &in) < 0 ||
			    (slot = bv_ingest_add(in, "vm1", base, SIZE)) < 0 ||
			    bv_ingest_write(in, slot, 0, img, SIZE) < 0)
				_exit(4);
			raise(SIGKILL);
		}
		ingest_image(s, img, base);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	if (kill_before_commit ? !WIFSIGNALED(st) :
				 !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		bail_out("the ingesting child failed");
}

static int run(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *newest_log(const char *store)
{
	char *dir = et_path(store, "index");
	DIR *d = opendir(dir);
	struct dirent *e;
	char best[256] = "";
	char *p = NULL;

	while (d && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n > 4 && !strcmp(e->d_name + n - 4, ".log") &&
		    strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof best, "%s", e->d_name);
	}
	if (d)
		closedir(d);
	if (best[0])
		p = et_path(dir, best);
	free(dir);
	return p;
}

/* A read-only open reads correctly what it can: each RP it lists equals
 * its image. */
static int readonly_reads_right(const char *store, const char *scratch)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2, .read_only = 1 };
	bv_replica_info ri;
	int good = 1;

	if (bv_store_open(store, &o, &s) < 0) {
		diag("read-only open: %s", bv_store_error(s));
		bv_store_close(s);
		return 0; /* a damaged store must still be examined */
	}
	if (bv_replica_info_get(s, "vm1", &ri) == 0) {
		for (uint64_t rp = 1; rp <= ri.latest_rp && good; rp++)
			good = et_export_eq(s, "vm1", rp, scratch,
					    rp == 1 ? img1 : img2, SIZE);
	}
	bv_store_close(s);
	return good;
}

static void wal_flips(const char *root)
{
	char *tmpl = et_path(root, "tmpl");
	char *st = et_path(root, "flip");
	char cmd[8192];
	struct cfile before[64], after[64];

	et_init(tmpl, 0);
	child_ingest(tmpl, img1, 0, 0);
	child_ingest(tmpl, img2, 1, 0);
	char *log = newest_log(tmpl);
	uint8_t *buf = NULL;
	uint64_t len = 0;
	if (!log || et_read_file(log, &buf, &len) < 0 || len < 1024)
		bail_out("no write-ahead log with the commits in it");
	diag("write-ahead log %s: %" PRIu64 " bytes", log, len);
	free(buf);
	const double at[] = { 0.02, 0.25, 0.5, 0.75, 0.97 };
	for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
		uint64_t off = (uint64_t)(at[k] * (double)len);
		snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", st,
			 tmpl, st);
		if (run(cmd))
			bail_out("copy of the store");
		char *l = newest_log(st);
		int fd = open(l, O_RDWR);
		uint8_t b = 0;
		if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1)
			bail_out("reading the log");
		b ^= 0x10;
		if (pwrite(fd, &b, 1, (off_t)off) != 1)
			bail_out("writing the log");
		close(fd);
		free(l);
		size_t nb = list_containers(st, before, 64);

		bv_store *s = NULL;
		bv_open_opts o = { .workers = 2 };
		int rc = bv_store_open(st, &o, &s);
		bv_replica_info ri = { 0 };
		if (rc == 0) {
			int whole = bv_replica_info_get(s, "vm1", &ri) == 0 &&
				    ri.latest_rp == 2 &&
				    et_export_eq(s, "vm1", 1, root, img1, SIZE) &&
				    et_export_eq(s, "vm1", 2, root, img2, SIZE);
			ok(whole, "flip at byte %" PRIu64 " of %" PRIu64 ": the "
			   "open succeeds only with both RPs whole", off, len);
		} else {
			ok(strstr(bv_store_error(s), "index") != NULL,
			   "flip at byte %" PRIu64 ": refused naming the index "
			   "(%d): %s", off, rc, bv_store_error(s));
		}
		bv_store_close(s);
		size_t na = list_containers(st, after, 64);
		ok(containers_kept(before, nb, after, na, 1),
		   "flip at byte %" PRIu64 ": no container byte cut or "
		   "removed", off);
		ok(readonly_reads_right(st, root), "flip at byte %" PRIu64
		   ": a read-only open reads correctly what it can", off);
	}
	free(log);
	free(tmpl);
	free(st);
}

static void old_index(const char *root)
{
	char *st = et_path(root, "old");
	char cmd[8192];
	struct cfile before[64], after[64];
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2 };
	bv_open_opts ro = { .workers = 2, .read_only = 1 };
	bv_replica_info ri = { 0 };
	int rc;

	et_init(st, 0);
	s = et_open(st);
	ingest_image(s, img1, 0);
	bv_store_close(s);
	snprintf(cmd, sizeof cmd, "cp -a '%s/index' '%s/index.before'", st,
		 st);
	if (run(cmd))
		bail_out("copy of index/");
	s = et_open(st);
	ingest_image(s, img2, 1);
	bv_store_close(s);
	snprintf(cmd, sizeof cmd, "rm -rf '%s/index' && mv '%s/index.before' "
		 "'%s/index'", st, st, st);
	if (run(cmd))
		bail_out("restoring the old index/");
	size_t nb = list_containers(st, before, 64);

	s = NULL;
	rc = bv_store_open(st, &o, &s);
	is_int(rc, BV_ELOST, "an index older than its commits is refused");
	ok(strstr(bv_store_error(s), "index") &&
	   strstr(bv_store_error(s), "--accept-index-loss"),
	   "the error names the index and what to do: %s", bv_store_error(s));
	bv_store_close(s);
	size_t na = list_containers(st, after, 64);
	ok(containers_kept(before, nb, after, na, 1) && na == nb,
	   "the refused open changed no container");

	s = NULL;
	rc = bv_store_open(st, &ro, &s);
	is_int(rc, 0, "a read-only open works");
	if (rc == 0) {
		ok(bv_replica_info_get(s, "vm1", &ri) == 0 &&
		   ri.latest_rp == 1, "it sees what the index holds: RP 1");
		ok(et_export_eq(s, "vm1", 1, root, img1, SIZE),
		   "RP 1 exports bit for bit");
	}
	bv_store_close(s);

	bv_open_opts acc = { .workers = 2, .accept_index_loss = 1 };
	s = NULL;
	rc = bv_store_open(st, &acc, &s);
	is_int(rc, 0, "accepting the loss opens for writing");
	if (rc == 0) {
		na = list_containers(st, after, 64);
		ok(containers_kept(before, nb, after, na, 1),
		   "the bytes of the lost RP are kept");
		ingest_image(s, img3, 1);
		ok(et_export_eq(s, "vm1", 1, root, img1, SIZE) &&
		   et_export_eq(s, "vm1", 2, root, img3, SIZE),
		   "it ingests on: RP 1 and the new RP 2 read back");
		bv_stats stt = { 0 };
		rc = bv_stats_get(s, &stt);
		ok(rc == 0 && stt.unknown_bytes > 0,
		   "stats report the bytes no commit names (%" PRIu64 ")",
		   stt.unknown_bytes);
	}
	bv_store_close(s);
	na = list_containers(st, after, 64);
	ok(containers_kept(before, nb, after, na, 1), "and keeps them after");
	s = NULL;
	rc = bv_store_open(st, &o, &s);
	is_int(rc, 0, "later opens need nothing more");
	bv_store_close(s);
	free(st);
}

static void killed_session(const char *root)
{
	char *st = et_path(root, "kill");
	struct cfile before[64], after[64];
	bv_store *s;

	et_init(st, 0);
	child_ingest(st, img1, 0, 0);
	child_ingest(st, img2, 1, 1);
	size_t nb = list_containers(st, before, 64);
	s = et_open(st);
	size_t na = list_containers(st, after, 64);
	ok(containers_kept(before, nb, after, na, 1),
	   "after a kill before the commit, the open keeps every byte");
	bv_replica_info ri = { 0 };
	ok(bv_replica_info_get(s, "vm1", &ri) == 0 && ri.latest_rp == 1 &&
	   et_export_eq(s, "vm1", 1, root, img1, SIZE),
	   "RP 1 is whole, and the killed session made no RP");
	ingest_image(s, img2, 1);
	ok(et_export_eq(s, "vm1", 1, root, img1, SIZE) &&
	   et_export_eq(s, "vm1", 2, root, img2, SIZE),
	   "the store ingests on");
	bv_store_close(s);
	free(st);
}

int main(void)
{
	char *root = et_tmpdir("recovery");
	et_rng rng = { et_seed(20261201) };

	img1 = malloc(SIZE);
	img2 = malloc(SIZE);
	img3 = malloc(SIZE);
	if (!img1 || !img2 || !img3)
		bail_out("out of memory");
	et_fill(&rng, img1, SIZE);
	memcpy(img2, img1, SIZE);
	et_fill(&rng, img2 + (1u << 20), 3u << 20);
	memcpy(img3, img1, SIZE);
	et_fill(&rng, img3 + (8u << 20), 2u << 20);

	wal_flips(root);
	old_index(root);
	killed_session(root);

	free(img1);
	free(img2);
	free(img3);
	et_tmpdir_done(root);
	return done_testing();
}
