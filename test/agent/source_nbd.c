/*
 * source_nbd.c: the agent's disk reader (tools/source.h) against a real
 * qemu-nbd exporting qcow2 images with a persistent dirty bitmap, made with
 * real qemu-img and qemu-io (QEMU's docs/interop/bitmaps.rst and nbd.txt).
 *
 *  1. The scenario of libnbd's info-map-qemu-dirty-bitmap test: dirty
 *     extents are exactly the two 64 KiB granules written after the
 *     bitmap was added (one of them with write-zeroes), data extents skip
 *     the unallocated part, reads return what `qemu-img convert -O raw`
 *     gives. Bad bitmaps and URIs, and a server that goes away.
 *  2. A 3 GiB image with more extents than one answer is kept of, and
 *     dirty runs across the 1 GiB block status pieces: the walks must
 *     resume, merge and clip; reads at depth and reads larger than NBD's
 *     32 MiB payload.
 *  3. With nbdkit's delay filter, a server that answers late: the
 *     handshake, a read and a block status query each time out.
 *
 * Skips when qemu-img, qemu-io or qemu-nbd is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "source.h"
#include "unit/util.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

static char dir[256];

static int have_tool(const char *name)
{
	const char *p = getenv("PATH");
	char buf[4096];

	if (p == NULL)
		p = "/usr/bin:/bin";
	while (*p != '\0') {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, name);
		if (access(buf, X_OK) == 0)
			return 1;
		p += n;
		if (*p == ':')
			p++;
	}
	return 0;
}

/* Starts ARGV with its stdout on our stderr (TAP owns stdout). */
static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();

	if (pid < 0)
		bail_out("fork");
	if (pid == 0) {
		/* A server must not outlive a test that died. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(2, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int run(char *const argv[])
{
	int st;
	pid_t pid = spawn(argv);

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#define RUN(...)                                                         \
	do {                                                             \
		char *const argv_[] = { __VA_ARGS__, NULL };             \
		if (run(argv_) != 0)                                     \
			bail_out("command failed: " #__VA_ARGS__);       \
	} while (0)

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void wait_listen(pid_t pid, const char *sock, const char *what);

/* qemu-nbd, read-only and persistent (we connect more than once),
 * exporting IMAGE on the unix socket SOCK, with bitmap BITMAP if not
 * NULL. Returns once the socket accepts connections. */
static pid_t start_nbd(const char *image, const char *sock,
		       const char *bitmap)
{
	char *argv[16];
	int i = 0;
	pid_t pid;

	argv[i++] = "qemu-nbd";
	argv[i++] = "-t";
	argv[i++] = "-r";
	argv[i++] = "-f";
	argv[i++] = "qcow2";
	if (bitmap != NULL) {
		argv[i++] = "-B";
		argv[i++] = (char *)bitmap;
	}
	argv[i++] = "-k";
	argv[i++] = (char *)sock;
	argv[i++] = (char *)image;
	argv[i] = NULL;
	unlink(sock);
	pid = spawn(argv);
	wait_listen(pid, sock, "qemu-nbd");
	return pid;
}

/* Returns once SOCK accepts connections (server PID, named WHAT). */
static void wait_listen(pid_t pid, const char *sock, const char *what)
{
	for (int tries = 0; tries < 1000; tries++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd, st;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			diag("%s exited at start", what);
			bail_out("a server exited at start");
		}
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 &&
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(fd);
			return;
		}
		if (fd >= 0)
			close(fd);
		sleep_ms(10);
	}
	diag("%s did not listen within 10 s", what);
	bail_out("a server did not start");
}

static void stop_nbd(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

static uint8_t *slurp(const char *path, uint64_t size)
{
	uint8_t *p = malloc(size);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t done = 0;

	if (p == NULL || fd < 0)
		bail_out("cannot read the raw copy");
	while (done < size) {
		ssize_t n = pread(fd, p + done, size - done, (off_t)done);

		if (n <= 0)
			bail_out("short raw copy");
		done += (uint64_t)n;
	}
	close(fd);
	return p;
}

/* ---- extent lists -------------------------------------------------- */

#define MAXEXT 4096
struct extents {
	uint64_t off[MAXEXT], len[MAXEXT];
	int n;
	int stop_after;          /* return 42 after this many (0: never) */
	struct bv_source *src;   /* read each extent inside the callback */
	const uint8_t *want;     /* ... and compare it with this image */
	int reads_ok;
};

static int collect(void *ud, uint64_t off, uint64_t len)
{
	struct extents *e = ud;

	if (e->n < MAXEXT) {
		e->off[e->n] = off;
		e->len[e->n] = len;
	}
	e->n++;
	if (e->src != NULL) {
		static uint8_t buf[1 << 20];
		struct bv_source_read r = { .buf = buf, .off = off };

		r.len = len < sizeof(buf) ? len : sizeof(buf);
		if (bv_source_read_many(e->src, &r, 1) != 0 ||
		    memcmp(buf, e->want + off, r.len) != 0)
			e->reads_ok = 0;
	}
	return e->stop_after > 0 && e->n >= e->stop_after ? 42 : 0;
}

static void ext_add(struct extents *e, uint64_t off, uint64_t len)
{
	if (e->n > 0 && e->off[e->n - 1] + e->len[e->n - 1] == off) {
		e->len[e->n - 1] += len;
		return;
	}
	if (e->n == MAXEXT)
		bail_out("too many expected extents");
	e->off[e->n] = off;
	e->len[e->n] = len;
	e->n++;
}

/* GOT equals WANT; on a difference prints the first one. */
static int same_extents(const struct extents *got, const struct extents *want)
{
	int n = got->n < want->n ? got->n : want->n;

	if (got->n > MAXEXT)
		return 0;
	for (int i = 0; i < n; i++)
		if (got->off[i] != want->off[i] || got->len[i] != want->len[i]) {
			diag("extent %d: got [%llu, +%llu), want [%llu, +%llu)",
			     i, (unsigned long long)got->off[i],
			     (unsigned long long)got->len[i],
			     (unsigned long long)want->off[i],
			     (unsigned long long)want->len[i]);
			return 0;
		}
	if (got->n != want->n)
		diag("got %d extents, want %d", got->n, want->n);
	return got->n == want->n;
}

static void print_extents(const char *what, const struct extents *e)
{
	for (int i = 0; i < e->n && i < 8; i++)
		diag("%s: [%llu, +%llu)", what, (unsigned long long)e->off[i],
		     (unsigned long long)e->len[i]);
}

/* ---- 1. the libnbd scenario ---------------------------------------- */

static void expect_open_fails(const char *spec, const char *bitmap, int want,
			      const char *words, const char *what)
{
	char err[1024] = "";
	struct bv_source *s = (struct bv_source *)1;
	int ret = bv_source_open(spec, bitmap, &s, err, sizeof(err));

	if (want != 0)
		is_int(ret, want, "%s: refused", what);
	else
		ok(ret < 0, "%s: refused (%d)", what, ret);
	ok(s == NULL, "%s: no handle", what);
	ok(strstr(err, spec) != NULL && strstr(err, words) != NULL,
	   "%s: message '%s' names it and says '%s'", what, err, words);
}

static void test_small(void)
{
	char img[512], raw[512], sock[512], uri[600], bad[600];
	static struct extents got, want;
	struct bv_source *s;
	static struct bv_source_read reqs[16];
	uint8_t *image, *bufs;
	char err[1024];
	pid_t pid;
	int same = 1;

	snprintf(img, sizeof(img), "%s/small.qcow2", dir);
	snprintf(raw, sizeof(raw), "%s/small.raw", dir);
	snprintf(sock, sizeof(sock), "%s/small.sock", dir);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);

	RUN("qemu-img", "create", "-q", "-f", "qcow2", img, "1M");
	RUN("qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 0 64k", img);
	RUN("qemu-img", "bitmap", "--add", "--enable", "-f", "qcow2", img,
	    "b0");
	RUN("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 64k 64k", "-c",
	    "write -z 512k 64k", img);
	RUN("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, raw);
	image = slurp(raw, 1 * MiB);
	pid = start_nbd(img, sock, "b0");

	if (bv_source_open(uri, "b0", &s, err, sizeof(err)) != 0)
		bail_out(err);
	ok(1, "open %s with bitmap b0", uri);
	is_int(bv_source_size(s), 1 * MiB, "size from nbd_get_size");
	{
		const uint8_t *v = (const uint8_t *)1;

		ok(!bv_source_can_view(s), "an NBD export cannot be viewed");
		is_int(bv_source_view(s, 0, 4096, &v), -ENOTSUP,
		       "bv_source_view: -ENOTSUP");
		ok(v == NULL && strstr(bv_source_error(s), "in place"),
		   "no pointer; message: %s", bv_source_error(s));
	}

	/* nbdinfo --map=qemu:dirty-bitmap:bitmap0 in libnbd's test:
	 * 65536+65536 dirty, 524288+65536 dirty, the rest clean. */
	memset(&got, 0, sizeof(got));
	memset(&want, 0, sizeof(want));
	ext_add(&want, 64 * KiB, 64 * KiB);
	ext_add(&want, 512 * KiB, 64 * KiB);
	is_int(bv_source_dirty_extents(s, 0, 1 * MiB, collect, &got), 0,
	       "dirty extents");
	print_extents("dirty", &got);
	ok(same_extents(&got, &want), "are exactly the two granules written "
	   "since the bitmap was added (data and write-zeroes)");

	/* base:allocation: 0+131072 data, the rest hole,zero. */
	memset(&got, 0, sizeof(got));
	memset(&want, 0, sizeof(want));
	ext_add(&want, 0, 128 * KiB);
	is_int(bv_source_data_extents(s, 0, 1 * MiB, collect, &got), 0,
	       "data extents");
	print_extents("data", &got);
	ok(same_extents(&got, &want), "are the allocated 128 KiB: holes and "
	   "the zeroed granule skipped");

	memset(&got, 0, sizeof(got));
	memset(&want, 0, sizeof(want));
	ext_add(&want, 100000, 128 * KiB - 100000);
	ext_add(&want, 512 * KiB, 64 * KiB);
	is_int(bv_source_dirty_extents(s, 100000, 500000, collect, &got), 0,
	       "dirty extents of [100000, 600000)");
	ok(same_extents(&got, &want), "are clipped to the range asked");

	memset(&got, 0, sizeof(got));
	got.stop_after = 1;
	is_int(bv_source_dirty_extents(s, 0, 1 * MiB, collect, &got), 42,
	       "a callback's nonzero return stops the walk and is returned");
	is_int(got.n, 1, "after one call");

	memset(&got, 0, sizeof(got));
	got.src = s;
	got.want = image;
	got.reads_ok = 1;
	is_int(bv_source_dirty_extents(s, 0, 1 * MiB, collect, &got), 0,
	       "dirty extents with a callback that reads them");
	ok(got.reads_ok && got.n == 2, "reads inside the callback work and "
	   "return the image's bytes");

	/* Sixteen 64 KiB reads, issued back to front. */
	bufs = malloc(1 * MiB);
	for (int i = 0; i < 16; i++)
		reqs[i] = (struct bv_source_read){
			.buf = bufs + (15 - i) * 64 * KiB, .len = 64 * KiB,
			.off = (uint64_t)(15 - i) * 64 * KiB };
	is_int(bv_source_read_many(s, reqs, 16), 0, "16 reads in flight");
	for (int i = 0; i < 16; i++)
		if (reqs[i].res != 0)
			same = 0;
	ok(same && memcmp(bufs, image, 1 * MiB) == 0,
	   "same bytes as qemu-img convert -O raw");

	reqs[0] = (struct bv_source_read){ .buf = bufs, .len = 4096,
					   .off = 1 * MiB - 2048 };
	is_int(bv_source_read_many(s, reqs, 1), -EINVAL,
	       "a read past the end: -EINVAL");
	ok(strstr(bv_source_error(s), uri) != NULL &&
	   strstr(bv_source_error(s), "past the end") != NULL,
	   "message: %s", bv_source_error(s));
	is_int(bv_source_dirty_extents(s, 1 * MiB - 1, 2, collect, &got),
	       -EINVAL, "dirty extents past the end: -EINVAL");
	bv_source_close(s);

	/* Without a bitmap: data works, dirty is refused. */
	if (bv_source_open(uri, NULL, &s, err, sizeof(err)) != 0)
		bail_out(err);
	memset(&got, 0, sizeof(got));
	is_int(bv_source_data_extents(s, 0, 1 * MiB, collect, &got), 0,
	       "opened without a bitmap: data extents");
	is_int(got.n, 1, "the same one extent");
	is_int(bv_source_dirty_extents(s, 0, 1 * MiB, collect, &got), -EINVAL,
	       "dirty extents without a bitmap: -EINVAL");
	ok(strstr(bv_source_error(s), uri) != NULL &&
	   strstr(bv_source_error(s), "no dirty bitmap") != NULL,
	   "message: %s", bv_source_error(s));
	bv_source_close(s);

	expect_open_fails(uri, "nope", -ENOENT, "nope is not exported",
			  "a bitmap the server does not export");
	{
		char err2[1024];

		bv_source_open(uri, "nope", &s, err2, sizeof(err2));
		ok(strstr(err2, "-B nope") != NULL,
		   "the message says how to export it");
	}
	expect_open_fails(uri, "", -EINVAL, "bad dirty bitmap name",
			  "an empty bitmap name");
	{
		static char longname[1100];

		memset(longname, 'x', 1024);
		expect_open_fails(uri, longname, -EINVAL,
				  "bad dirty bitmap name",
				  "a bitmap name of 1024 bytes");
	}
	snprintf(bad, sizeof(bad), "nbd+unix:///?socket=%s/none.sock", dir);
	expect_open_fails(bad, NULL, -ENOENT, "cannot connect",
			  "a socket nobody listens on");
	expect_open_fails("nbd+unix:///", NULL, 0, "cannot connect",
			  "nbd+unix without a socket");
	expect_open_fails("nbd+bogus://localhost/", NULL, 0, "cannot connect",
			  "an unknown nbd+ transport");
	expect_open_fails("nbd://[::1", NULL, 0, "cannot connect",
			  "a malformed URI");

	/* The server goes away under an open source. */
	if (bv_source_open(uri, "b0", &s, err, sizeof(err)) != 0)
		bail_out(err);
	stop_nbd(pid);
	for (int i = 0; i < 16; i++)
		reqs[i] = (struct bv_source_read){
			.buf = bufs + i * 64 * KiB, .len = 64 * KiB,
			.off = (uint64_t)i * 64 * KiB };
	{
		int ret = bv_source_read_many(s, reqs, 16);

		ok(ret < 0, "reads after the server died fail (%d)", ret);
		ok(strstr(bv_source_error(s), uri) != NULL,
		   "message: %s", bv_source_error(s));
		ret = bv_source_dirty_extents(s, 0, 1 * MiB, collect, &got);
		is_int(ret, -ENOTCONN, "then dirty extents: -ENOTCONN");
		ok(strstr(bv_source_error(s), "connection failed") != NULL,
		   "message: %s", bv_source_error(s));
		is_int(bv_source_data_extents(s, 0, 1 * MiB, collect, &got),
		       -ENOTCONN, "data extents: -ENOTCONN");
		is_int(bv_source_read_many(s, reqs, 16), -ENOTCONN,
		       "reads again: -ENOTCONN");
	}
	bv_source_close(s);
	ok(1, "close after the connection failed");
	free(bufs);
	free(image);
}

/* ---- 2. a large image ---------------------------------------------- */

#define BIG_SIZE (3 * GiB + 64 * KiB)
#define NDATA 768  /* data clusters, every other one, from 0 */
#define NDIRTY 600 /* dirty granules, every other one, from 128 MiB */
#define NRAND 300

/* Writes the dirty granules with one qemu-io run of many commands. */
static void write_dirty(const char *img, struct extents *dirty)
{
	static char cmds[NDIRTY + 3][64];
	static char *argv[2 * (NDIRTY + 3) + 5];
	int a = 0, c = 0;

	argv[a++] = "qemu-io";
	argv[a++] = "-f";
	argv[a++] = "qcow2";
	for (int i = 0; i < NDIRTY; i++) {
		uint64_t off = 128 * MiB + (uint64_t)i * 128 * KiB;

		snprintf(cmds[c], sizeof(cmds[c]),
			 "write -P 0x%02x %llu 64k", 0x10 + i % 200,
			 (unsigned long long)off);
		argv[a++] = "-c";
		argv[a++] = cmds[c++];
		ext_add(dirty, off, 64 * KiB);
	}
	/* Across the first 1 GiB piece of the walk. */
	snprintf(cmds[c], sizeof(cmds[c]), "write -P 0x5a %llu 384k",
		 (unsigned long long)(1 * GiB - 192 * KiB));
	argv[a++] = "-c";
	argv[a++] = cmds[c++];
	ext_add(dirty, 1 * GiB - 192 * KiB, 384 * KiB);
	/* A small unaligned write dirties its whole granule. */
	snprintf(cmds[c], sizeof(cmds[c]), "write -P 0x77 %llu 1000",
		 (unsigned long long)(2 * GiB + 100));
	argv[a++] = "-c";
	argv[a++] = cmds[c++];
	ext_add(dirty, 2 * GiB, 64 * KiB);
	/* The very end of the disk. */
	snprintf(cmds[c], sizeof(cmds[c]), "write -z %llu 64k",
		 (unsigned long long)(BIG_SIZE - 64 * KiB));
	argv[a++] = "-c";
	argv[a++] = cmds[c++];
	ext_add(dirty, BIG_SIZE - 64 * KiB, 64 * KiB);
	argv[a++] = (char *)img;
	argv[a] = NULL;
	if (run(argv) != 0)
		bail_out("qemu-io of the dirty granules failed");
}

static void test_big(void)
{
	char base[512], img[512], raw[512], sock[512], uri[600], err[1024];
	static struct extents got, dirty, data, want;
	static struct bv_source_read reqs[NRAND];
	uint8_t *buf, *bytes, *arena;
	struct bv_source *s;
	int fd, rfd, same = 1;
	pid_t pid;

	snprintf(base, sizeof(base), "%s/big-base.raw", dir);
	snprintf(img, sizeof(img), "%s/big.qcow2", dir);
	snprintf(raw, sizeof(raw), "%s/big.raw", dir);
	snprintf(sock, sizeof(sock), "%s/big.sock", dir);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);

	/* A sparse raw file with data in every other 64 KiB cluster, so that
	 * the allocation map has more extents than one answer is kept of. */
	buf = malloc(64 * KiB);
	fd = open(base, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (buf == NULL || fd < 0 || ftruncate(fd, (off_t)BIG_SIZE) < 0)
		bail_out("cannot make big-base.raw");
	memset(&data, 0, sizeof(data));
	for (int i = 0; i < NDATA; i++) {
		ut_fill_random(buf, 64 * KiB);
		if (pwrite(fd, buf, 64 * KiB, (off_t)(i * 128 * KiB)) !=
		    (ssize_t)(64 * KiB))
			bail_out("write big-base.raw");
		ext_add(&data, (uint64_t)i * 128 * KiB, 64 * KiB);
	}
	close(fd);
	RUN("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", base, img);
	RUN("qemu-img", "bitmap", "--add", "-f", "qcow2", img, "b0");
	memset(&dirty, 0, sizeof(dirty));
	write_dirty(img, &dirty);
	RUN("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, raw);
	/* What is allocated: the base clusters, the data writes (the zero
	 * write at the end leaves a zero cluster, which is skipped). */
	for (int i = 0; i < dirty.n - 1; i++)
		ext_add(&data, dirty.off[i], dirty.len[i]);
	/* ext_add merged only neighbours in order; the lists are disjoint
	 * and the data list is in order, as built above. */

	pid = start_nbd(img, sock, "b0");
	if (bv_source_open(uri, "b0", &s, err, sizeof(err)) != 0)
		bail_out(err);
	is_int(bv_source_size(s), BIG_SIZE, "3 GiB image: size");

	memset(&got, 0, sizeof(got));
	is_int(bv_source_dirty_extents(s, 0, BIG_SIZE, collect, &got), 0,
	       "dirty extents of 3 GiB");
	ok(same_extents(&got, &dirty), "%d runs as written: more than one "
	   "answer is kept of, merged across the 1 GiB pieces, the last "
	   "one at the end of the disk", got.n);

	/* From 1 GiB + 32 KiB the first 1 GiB piece ends inside the
	 * granule at 2 GiB: its two halves must come out as one run. */
	memset(&got, 0, sizeof(got));
	memset(&want, 0, sizeof(want));
	ext_add(&want, 1 * GiB + 32 * KiB, 160 * KiB);
	ext_add(&want, 2 * GiB, 64 * KiB);
	ext_add(&want, BIG_SIZE - 64 * KiB, 64 * KiB);
	is_int(bv_source_dirty_extents(s, 1 * GiB + 32 * KiB,
				       BIG_SIZE - 1 * GiB - 32 * KiB, collect,
				       &got), 0,
	       "dirty extents from 1 GiB + 32 KiB to the end");
	ok(same_extents(&got, &want), "clipped at the start, the run across "
	   "the piece boundary merged");

	memset(&got, 0, sizeof(got));
	is_int(bv_source_data_extents(s, 0, BIG_SIZE, collect, &got), 0,
	       "data extents of 3 GiB");
	ok(same_extents(&got, &data), "%d extents: the allocated clusters",
	   got.n);

	/* Reads: one larger than NBD's payload limit, then many at depth. */
	rfd = open(raw, O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		bail_out("open big.raw");
	bytes = malloc(40 * MiB);
	arena = malloc(40 * MiB);
	if (bytes == NULL || arena == NULL)
		bail_out("out of memory");
	reqs[0] = (struct bv_source_read){ .buf = arena, .len = 40 * MiB,
					   .off = 100 * MiB };
	if (pread(rfd, bytes, 40 * MiB, 100 * MiB) != (ssize_t)(40 * MiB))
		bail_out("pread big.raw");
	is_int(bv_source_read_many(s, reqs, 1), 0, "one read of 40 MiB "
	       "(split into commands the server takes)");
	ok(memcmp(arena, bytes, 40 * MiB) == 0, "same bytes as the raw copy");

	for (int i = 0; i < NRAND; i++) {
		uint64_t off;
		size_t len = (size_t)(ut_rand() % (128 * KiB)) + 1;

		/* Half near the written areas, half anywhere. */
		if (i % 2 == 0)
			off = ut_rand() % (260 * MiB);
		else
			off = ut_rand() % BIG_SIZE;
		if (len > BIG_SIZE - off)
			len = (size_t)(BIG_SIZE - off);
		reqs[i] = (struct bv_source_read){
			.buf = arena + (size_t)i * 128 * KiB, .len = len,
			.off = off };
	}
	is_int(bv_source_read_many(s, reqs, NRAND), 0,
	       "%d reads of up to 128 KiB, 64 in flight", NRAND);
	for (int i = 0; i < NRAND; i++) {
		if (pread(rfd, bytes, reqs[i].len, (off_t)reqs[i].off) !=
		    (ssize_t)reqs[i].len)
			bail_out("pread big.raw");
		if (reqs[i].res != 0 || memcmp(reqs[i].buf, bytes,
					       reqs[i].len) != 0)
			same = 0;
	}
	ok(same, "every read returns the raw copy's bytes");

	bv_source_close(s);
	stop_nbd(pid);
	close(rfd);
	free(bytes);
	free(arena);
	free(buf);
}

/* ---- timeouts ------------------------------------------------------ */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* nbdkit's memory plugin behind its delay filter (DELAY: "delay-read=3"
 * and the like), on SOCK. */
static pid_t start_slow(const char *sock, const char *delay)
{
	char *argv[] = { "nbdkit", "-f", "--exit-with-parent", "-U",
			 (char *)sock, "--filter=delay", "memory", "1M",
			 (char *)delay, NULL };
	pid_t pid;

	unlink(sock);
	pid = spawn(argv);
	wait_listen(pid, sock, "nbdkit");
	return pid;
}

/* A server that answers 3 s late, against a timeout of 1 s: the
 * handshake, a read and a block status query each give up after about a
 * second, say why, and the source refuses what follows. */
static void test_timeouts(void)
{
	char sock[512], uri[600], err[1024];
	struct bv_source *s;
	struct bv_source_read r;
	static uint8_t buf[4096];
	static struct extents got;
	double t0, dt;
	pid_t pid;
	int ret;

	if (!have_tool("nbdkit")) {
		ok(1, "# SKIP timeouts: needs nbdkit");
		return;
	}
	snprintf(sock, sizeof(sock), "%s/slow.sock", dir);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);

	pid = start_slow(sock, "delay-read=3");
	if (bv_source_open_timeout(uri, NULL, 1, &s, err, sizeof(err)) != 0)
		bail_out(err);
	r = (struct bv_source_read){ .buf = buf, .len = sizeof(buf) };
	t0 = now_s();
	ret = bv_source_read_many(s, &r, 1);
	dt = now_s() - t0;
	is_int(ret, -ETIMEDOUT, "a read the server answers late: -ETIMEDOUT");
	ok(dt > 0.8, "after the timeout (%.2f s)", dt);
	ok(strstr(bv_source_error(s), "did not answer within 1 s") != NULL &&
	   strstr(bv_source_error(s), sock) != NULL,
	   "message: %s", bv_source_error(s));
	is_int(bv_source_read_many(s, &r, 1), -ENOTCONN,
	       "the source refuses reads after that");
	bv_source_close(s);
	stop_nbd(pid);

	pid = start_slow(sock, "delay-extents=3");
	if (bv_source_open_timeout(uri, NULL, 1, &s, err, sizeof(err)) != 0)
		bail_out(err);
	memset(&got, 0, sizeof(got));
	t0 = now_s();
	ret = bv_source_data_extents(s, 0, MiB, collect, &got);
	dt = now_s() - t0;
	is_int(ret, -ETIMEDOUT, "block status answered late: -ETIMEDOUT");
	ok(dt > 0.8 && got.n == 0,
	   "after the timeout (%.2f s), no extents", dt);
	ok(strstr(bv_source_error(s), "block status") != NULL &&
	   strstr(bv_source_error(s), "did not answer") != NULL,
	   "message: %s", bv_source_error(s));
	bv_source_close(s);
	stop_nbd(pid);

	pid = start_slow(sock, "delay-open=3");
	s = (struct bv_source *)1;
	t0 = now_s();
	ret = bv_source_open_timeout(uri, NULL, 1, &s, err, sizeof(err));
	dt = now_s() - t0;
	is_int(ret, -ETIMEDOUT, "a handshake answered late: -ETIMEDOUT");
	ok(s == NULL && dt > 0.8,
	   "no handle, after the timeout (%.2f s)", dt);
	ok(strstr(err, "handshake") != NULL && strstr(err, sock) != NULL,
	   "message: %s", err);
	stop_nbd(pid);
}

int main(void)
{
	if (!have_tool("qemu-img") || !have_tool("qemu-io") ||
	    !have_tool("qemu-nbd"))
		skip_all("needs qemu-img, qemu-io and qemu-nbd (qemu-utils)");
	signal(SIGPIPE, SIG_IGN);
	ut_seed((uint64_t)getpid());
	ut_tmpdir(dir, sizeof(dir), "agent-source-nbd");
	test_small();
	test_big();
	test_timeouts();
	ut_rmtree(dir);
	return done_testing();
}
