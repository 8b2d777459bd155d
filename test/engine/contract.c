/*
 * engine-contract: statements of bvault.h's contract that the other engine
 * tests do not cover:
 *   - bv_errno() maps every engine error to the errno the header names,
 *     passes -errno through, and gives 0 for success and counts;
 *   - bv_strerror() names every engine error, each differently;
 *   - bv_version() is BVAULT_VERSION, which is MAJOR.MINOR.PATCH (all
 *     made from meson.build's project version);
 *   - the failure message is per thread: two threads fail at the same
 *     time on different stores, and each still reads its own message;
 *   - the files the library makes are private (INVARIANTS.md 8), even
 *     with umask 022: the store directory, index/ and containers/ 0700,
 *     the marker and exports 0600, and a writable open makes a store of
 *     older code (0755, 0644) private, while a read-only open changes no
 *     mode. (Files RocksDB rewrites at open, like CURRENT, get 0644 less
 *     the umask again: FORMAT.md, "File modes"; they are inside 0700
 *     index/.)
 */
#include <pthread.h>

#include "etest.h"

static const struct {
	int err, want;
} errno_map[] = {
	{ BV_ECORRUPT, EIO },     { BV_ECHECKSUM, EIO },
	{ BV_EFORMAT, ENOTSUP },  { BV_EBASE, ESTALE },
	{ BV_ENOTFOUND, ENOENT }, { BV_EEXIST, EEXIST },
	{ BV_EINVAL, EINVAL },    { BV_ESTREAM, EBADMSG },
	{ BV_ETRUNCATED, EBADMSG }, { BV_ERANGE, EINVAL },
	{ BV_EALIGN, EINVAL },    { BV_EBUSY, EBUSY },
	{ BV_EDB, EIO },          { BV_ENOTSTORE, ENOENT },
	{ BV_EGROUP, EINVAL },    { BV_EREADONLY, EROFS },
	{ BV_ELOST, EIO },
};
#define NMAP (sizeof errno_map / sizeof errno_map[0])

static void test_errno(void)
{
	int bad = 0;

	for (size_t i = 0; i < NMAP; i++) {
		int got = bv_errno(errno_map[i].err);
		if (got != errno_map[i].want) {
			diag("bv_errno(%d) = %d, want %d", errno_map[i].err,
			     got, errno_map[i].want);
			bad = 1;
		}
	}
	ok(!bad, "bv_errno maps every engine error (%zu) as documented", NMAP);
	is_int(bv_errno(-EIO), EIO, "bv_errno(-EIO) is EIO");
	is_int(bv_errno(-ENOSPC), ENOSPC, "bv_errno(-ENOSPC) is ENOSPC");
	is_int(bv_errno(-EACCES), EACCES, "bv_errno(-EACCES) is EACCES");
	is_int(bv_errno(0), 0, "bv_errno(0) is 0");
	is_int(bv_errno(7), 0, "bv_errno of a count is 0");
	is_int(bv_errno(-2000), EIO, "bv_errno of an unknown code is EIO");
}

static void test_strerror(void)
{
	int bad = 0;

	for (size_t i = 0; i < NMAP; i++) {
		const char *m = bv_strerror(errno_map[i].err);
		if (!m || !*m || !strcmp(m, "unknown error")) {
			diag("bv_strerror(%d): '%s'", errno_map[i].err,
			     m ? m : "(null)");
			bad = 1;
		}
		for (size_t j = 0; j < i; j++)
			if (m && !strcmp(m, bv_strerror(errno_map[j].err))) {
				diag("%d and %d are both '%s'",
				     errno_map[i].err, errno_map[j].err, m);
				bad = 1;
			}
	}
	ok(!bad, "bv_strerror names every engine error, each differently");
	ok(!strcmp(bv_strerror(-ENOENT), strerror(ENOENT)),
	   "bv_strerror(-errno) is strerror(errno)");
	ok(bv_strerror(-5000) && *bv_strerror(-5000),
	   "bv_strerror of an unknown code is a string");
}

static void test_version(void)
{
	char v[64];

	snprintf(v, sizeof v, "%d.%d.%d", BVAULT_VERSION_MAJOR,
		 BVAULT_VERSION_MINOR, BVAULT_VERSION_PATCH);
	ok(!strcmp(v, BVAULT_VERSION), "BVAULT_VERSION %s is MAJOR.MINOR.PATCH",
	   BVAULT_VERSION);
	ok(!strcmp(bv_version(), BVAULT_VERSION), "bv_version() is %s",
	   bv_version());
}

/* Two threads fail at once, each on a store path of its own, and check
 * their messages only after both have failed. */
struct msg_thread {
	const char *path;
	pthread_barrier_t *bar;
	int rc;
	char msg[512];
};

static void *msg_main(void *arg)
{
	struct msg_thread *t = arg;
	bv_store *s = NULL;

	t->rc = bv_store_open(t->path, NULL, &s);
	pthread_barrier_wait(t->bar);
	snprintf(t->msg, sizeof t->msg, "%s", bv_store_error(s));
	bv_store_close(s);
	return NULL;
}

static void test_thread_messages(const char *dir)
{
	pthread_barrier_t bar;
	struct msg_thread t[2] = {
		{ .path = NULL, .bar = &bar },
		{ .path = NULL, .bar = &bar },
	};
	pthread_t th[2];
	char *p0 = et_path(dir, "no-store-zero");
	char *p1 = et_path(dir, "no-store-one");

	t[0].path = p0;
	t[1].path = p1;
	pthread_barrier_init(&bar, NULL, 2);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, msg_main, &t[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	ok(t[0].rc == BV_ENOTSTORE && t[1].rc == BV_ENOTSTORE,
	   "both opens fail with BV_ENOTSTORE (%d, %d)", t[0].rc, t[1].rc);
	ok(strstr(t[0].msg, "no-store-zero") && !strstr(t[0].msg, "one"),
	   "thread 0 reads its own message: %s", t[0].msg);
	ok(strstr(t[1].msg, "no-store-one") && !strstr(t[1].msg, "zero"),
	   "thread 1 reads its own message: %s", t[1].msg);
	free(p0);
	free(p1);
}

static int mode_of(const char *dir, const char *name)
{
	struct stat st;
	char *p = et_path(dir, name);
	int m = stat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;

	free(p);
	return m;
}

static void set_mode(const char *dir, const char *name, mode_t m)
{
	char *p = et_path(dir, name);

	if (chmod(p, m) != 0)
		diag("chmod %s: %s", p, strerror(errno));
	free(p);
}

static void test_modes(const char *dir)
{
	char *sd = et_path(dir, "store");
	char *out = et_path(dir, "export.img");
	bv_open_opts ro = { .workers = 1, .read_only = 1 };
	bv_store *s = NULL;
	mode_t old = umask(022);

	et_init(sd, 65536);
	is_int(mode_of(sd, "."), 0700, "init: the store directory is 0700");
	is_int(mode_of(sd, "index"), 0700, "init: index/ is 0700");
	is_int(mode_of(sd, "containers"), 0700, "init: containers/ is 0700");
	is_int(mode_of(sd, "bvault.store"), 0600, "init: the marker is 0600");
	s = et_open(sd);
	ET_MUST(s, bv_replica_create(s, "vm", 1 << 20, 0));
	ET_MUST(s, bv_rp_create(s, "vm", NULL, BV_CRASH_CONSISTENT, NULL));
	ET_MUST(s, bv_export(s, "vm", 1, out, NULL, NULL));
	is_int(mode_of(dir, "export.img"), 0600, "an export is created 0600");
	bv_store_close(s);

	/* A store as older code made it. */
	set_mode(sd, ".", 0755);
	set_mode(sd, "index", 0755);
	set_mode(sd, "containers", 0755);
	set_mode(sd, "bvault.store", 0644);
	set_mode(sd, "index/IDENTITY", 0644);
	s = NULL;
	is_int(bv_store_open(sd, &ro, &s), 0, "a read-only open");
	bv_store_close(s);
	ok(mode_of(sd, ".") == 0755 && mode_of(sd, "index") == 0755 &&
	   mode_of(sd, "bvault.store") == 0644 &&
	   mode_of(sd, "index/IDENTITY") == 0644,
	   "changes no mode");
	s = et_open(sd);
	bv_store_close(s);
	ok(mode_of(sd, ".") == 0700 && mode_of(sd, "index") == 0700 &&
	   mode_of(sd, "containers") == 0700 &&
	   mode_of(sd, "bvault.store") == 0600 &&
	   mode_of(sd, "index/IDENTITY") == 0600,
	   "a writable open makes it private (%o %o %o %o %o)",
	   mode_of(sd, "."), mode_of(sd, "index"), mode_of(sd, "containers"),
	   mode_of(sd, "bvault.store"), mode_of(sd, "index/IDENTITY"));
	umask(old);
	free(sd);
	free(out);
}

int main(void)
{
	char *dir = et_tmpdir("contract");

	test_errno();
	test_strerror();
	test_version();
	test_thread_messages(dir);
	test_modes(dir);
	et_tmpdir_done(dir);
	return done_testing();
}
