/*
 * engine-readonly: a read-only open beside a writer in another process
 * (bv_open_opts.read_only), as the bvault CLI does while bvaultd serves
 * the store.
 *
 * A child is the writer: it commits RP 1 of replica "vm", then opens a
 * session that writes a whole new image (several batches, so chunks and
 * map entries of the session reach the index before the commit) and
 * waits. Meanwhile the parent checks:
 *   - a second open for writing: BV_EBUSY, and the message says that a
 *     read-only open works;
 *   - a read-only open: RP 1 lists and reads as image 1, the head reads as
 *     image 1 too (nothing of the session in flight shows), the store
 *     verifies;
 *   - every call that would change the store fails with BV_EREADONLY,
 *     names the store, and changes nothing;
 * then lets the child commit RP 2 and checks that the open read-only
 * handle still sees the store as it was (RP 1 only, head = image 1),
 * while a new read-only open sees RP 2 as image 2. Read-only opens leave
 * nothing behind in TMPDIR.
 */
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

#include "etest.h"

#define DISK (16u << 20)
#define CHUNK 65536u

static char *store_dir;
static uint8_t *img1, *img2, *buf;

static void child_fail(bv_store *s, const char *what)
{
	printf("# child: %s: %s\n", what, s ? bv_store_error(s) : "");
	fflush(stdout);
	_exit(2);
}

/* The writer: makes the store (in the child, so that the parent has no
 * threads when it forks, as TSan wants). Reports on TO ('1': RP 1 committed, 's': the session holds
 * image 2 uncommitted, '2': RP 2 committed) and waits for FROM ('c':
 * commit, 'q': quit). */
static void child(int from, int to)
{
	bv_open_opts o = { .workers = 2 };
	bv_commit_opts co = { .make_rp = 1 };
	bv_store *s = NULL;
	bv_ingest *in = NULL;
	uint64_t rp = 0;
	char c;
	int slot;

	et_init(store_dir, CHUNK);
	if (bv_store_open(store_dir, &o, &s) < 0)
		child_fail(s, "open");
	if (bv_ingest_begin(s, &in) < 0 ||
	    (slot = bv_ingest_add(in, "vm", 0, DISK)) < 0 ||
	    bv_ingest_write(in, slot, 0, img1, DISK) < 0 ||
	    bv_ingest_commit(in, &co, &rp) < 0 || rp != 1)
		child_fail(s, "RP 1");
	if (write(to, "1", 1) != 1)
		_exit(3);
	if (bv_ingest_begin(s, &in) < 0 ||
	    (slot = bv_ingest_add(in, "vm", 1, 0)) < 0)
		child_fail(s, "session 2");
	for (uint64_t off = 0; off < DISK; off += 1u << 20)
		if (bv_ingest_write(in, slot, off, img2 + off, 1u << 20) < 0)
			child_fail(s, "session 2 write");
	if (write(to, "s", 1) != 1 || read(from, &c, 1) != 1 || c != 'c')
		_exit(3);
	if (bv_ingest_commit(in, &co, &rp) < 0 || rp != 2)
		child_fail(s, "RP 2");
	if (write(to, "2", 1) != 1 || read(from, &c, 1) != 1)
		_exit(3);
	bv_store_close(s);
	_exit(0);
}

static void expect(int fd, char want)
{
	char c = 0;
	if (read(fd, &c, 1) != 1 || c != want) {
		printf("# the writer said '%c', not '%c'\n", c, want);
		bail_out("the writer child failed");
	}
}

static int count_rp(void *ud, const bv_rp_info *rp)
{
	(void)rp;
	(*(int *)ud)++;
	return 0;
}

/* The number of RPs of "vm" S lists, or -1. */
static int rps_of(bv_store *s)
{
	int n = 0;
	return bv_rp_list(s, "vm", count_rp, &n) == 0 ? n : -1;
}

/* REPLICA at RP through S reads as IMG. */
static int reads_as(bv_store *s, uint64_t rp, const uint8_t *img)
{
	bv_reader *r = NULL;
	int rc = bv_reader_open(s, "vm", rp, &r);
	if (rc == 0)
		rc = bv_reader_pread(r, buf, DISK, 0);
	bv_reader_close(r);
	if (rc < 0) {
		diag("read vm@%" PRIu64 ": %s", rp, bv_store_error(s));
		return 0;
	}
	return memcmp(buf, img, DISK) == 0;
}

static int leftovers(const char *tmp)
{
	DIR *d = opendir(tmp);
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "bvault-ro.", 10) == 0)
			n++;
	closedir(d);
	return n;
}

/* Every call that changes the store fails with BV_EREADONLY naming it. */
static void writes_refused(bv_store *s)
{
	const char *members[] = { "vm" };
	const char *groups[] = { "g1" };
	uint8_t secret[BV_AGENT_SECRET];
	bv_ingest *in = (bv_ingest *)1;
	uint64_t rp = 7;
	int rc;

#define REFUSED(call, what)                                               \
	do {                                                              \
		rc = (call);                                              \
		ok(rc == BV_EREADONLY &&                                  \
			   strstr(bv_store_error(s), store_dir) &&        \
			   strstr(bv_store_error(s), "read-only"),        \
		   "%s: refused (%d: %s)", what, rc, bv_store_error(s));  \
	} while (0)
	REFUSED(bv_ingest_begin(s, &in), "ingest");
	ok(in == NULL, "no session handle");
	REFUSED(bv_replica_create(s, "new", DISK, 0), "replica create");
	REFUSED(bv_group_create(s, "g", members, 1), "group create");
	REFUSED(bv_rp_create(s, "vm", "x", 0, &rp), "RP create");
	ok(rp == 0, "no RP number");
	REFUSED(bv_agent_add(s, "a1", groups, 1, secret), "agent add");
	REFUSED(bv_agent_remove(s, "a1"), "agent remove");
	{
		uint8_t pk[BV_AGENT_PUBLIC_KEY] = { 1 };
		REFUSED(bv_agent_add_key(s, "a2", groups, 1, pk),
			"agent add with a key");
		REFUSED(bv_agent_grant(s, "a1", groups, 1), "agent grant");
		REFUSED(bv_agent_revoke(s, "a1", groups, 1), "agent revoke");
	}
#undef REFUSED
}

int main(void)
{
	char *dir = et_tmpdir("readonly");
	char *tmp = et_path(dir, "tmp");
	int down[2], up[2], status = 0, n;
	et_rng rng = { et_seed(77) };
	bv_open_opts ro = { .workers = 2, .read_only = 1 };
	bv_open_opts rw = { .workers = 2 };
	bv_verify_result vr;
	bv_store *s = NULL, *s2 = NULL;
	pid_t pid;

	store_dir = et_path(dir, "store");
	if (mkdir(tmp, 0755) < 0 || setenv("TMPDIR", tmp, 1) < 0)
		bail_out("a TMPDIR of our own");
	img1 = malloc(DISK);
	img2 = malloc(DISK);
	buf = malloc(DISK);
	if (!img1 || !img2 || !buf)
		bail_out("out of memory");
	et_fill(&rng, img1, DISK);
	et_fill(&rng, img2, DISK);
	memset(img1 + (2u << 20), 0, 1u << 20); /* a zero run in RP 1 */

	if (pipe(down) < 0 || pipe(up) < 0)
		bail_out("pipe");
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bail_out("fork");
	if (pid == 0) {
		close(down[1]);
		close(up[0]);
		child(down[0], up[1]);
	}
	close(down[0]);
	close(up[1]);
	expect(up[0], '1');
	expect(up[0], 's');

	n = bv_store_open(store_dir, &rw, &s);
	ok(n == BV_EBUSY && s && strstr(bv_store_error(s), "read-only"),
	   "a second writer: BV_EBUSY (%d: %s)", n, s ? bv_store_error(s) : "");
	bv_store_close(s);
	s = NULL;

	n = bv_store_open(store_dir, &ro, &s);
	is_int(n, 0, "a read-only open beside the writer");
	if (n < 0) {
		diag("%s", s ? bv_store_error(s) : "");
		bail_out("cannot go on");
	}
	is_int(rps_of(s), 1, "it lists RP 1 only");
	ok(reads_as(s, 1, img1), "vm@1 reads as image 1");
	ok(reads_as(s, 0, img1), "the head reads as image 1: nothing of the "
	   "session in flight");
	n = bv_store_verify(s, &vr);
	ok(n == 0 && vr.problems == 0 && vr.chunks > 0,
	   "the store verifies, read-only, while the writer holds a session "
	   "(%d: %s)", n, n ? bv_store_error(s) : "");
	writes_refused(s);

	if (write(down[1], "c", 1) != 1)
		bail_out("pipe");
	expect(up[0], '2');
	is_int(rps_of(s), 1, "after the writer's commit, the open handle "
	       "still sees RP 1 only");
	ok(reads_as(s, 0, img1), "and its head still reads as image 1");
	n = bv_store_open(store_dir, &ro, &s2);
	is_int(n, 0, "a new read-only open");
	is_int(s2 ? rps_of(s2) : -1, 2, "it sees RP 2");
	{
		bv_replica_info ri;
		bv_agent_info ai;
		ok(s2 && bv_replica_info_get(s2, "new", &ri) == BV_ENOTFOUND &&
		   bv_agent_get(s2, "a1", &ai, NULL) == BV_ENOTFOUND,
		   "the refused calls changed nothing");
	}
	ok(s2 && reads_as(s2, 2, img2), "vm@2 reads as image 2");
	ok(s2 && reads_as(s2, 1, img1), "vm@1 still reads as image 1");
	bv_store_close(s2);
	bv_store_close(s);
	is_int(leftovers(tmp), 0, "read-only opens leave nothing in TMPDIR");

	if (write(down[1], "q", 1) != 1)
		bail_out("pipe");
	waitpid(pid, &status, 0);
	is_int(WIFEXITED(status) ? WEXITSTATUS(status) : 100, 0,
	       "the writer ends well");

	/* Without a writer, a read-only open works just the same. */
	s = NULL;
	n = bv_store_open(store_dir, &ro, &s);
	ok(n == 0 && reads_as(s, 2, img2), "read-only with no writer: vm@2");
	bv_store_close(s);

	free(img1);
	free(img2);
	free(buf);
	free(store_dir);
	free(tmp);
	et_tmpdir_done(dir);
	return done_testing();
}
