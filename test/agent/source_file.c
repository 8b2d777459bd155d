/*
 * source_file.c: the agent's disk reader (tools/source.h) on a sparse raw
 * file and, when we may attach one, a loop block device over it: data
 * extents find the data and skip the holes, many reads at depth return
 * the right bytes, reads past the end fail, bad specs are refused with a
 * message naming the path. Views (reading in place) return the right
 * bytes across windows, refuse bad ranges, and a source that shrinks
 * under a view is reported, as an error or, from the SIGBUS handler, as a
 * message and exit status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "source.h"
#include "unit/util.h"

#define SIZE ((32ull << 20) + 12345)

/* Where the file holds data; everything else is a hole. Some regions are
 * not block-aligned on purpose. */
static const struct { uint64_t off, len; } regions[] = {
	{ 0, 1 << 20 },
	{ (5ull << 20) + 4096, 12288 },
	{ (9ull << 20) + 100, 5000 },
	{ 16ull << 20, 2 << 20 },
	{ SIZE - 20000, 20000 },
};
#define NREGIONS (sizeof(regions) / sizeof(regions[0]))

static char dir[256], path[512];
static uint8_t *model; /* the file's bytes */

#define MAXEXT 1024
struct extents {
	uint64_t off[MAXEXT], len[MAXEXT];
	int n;
	int stop_after; /* return 42 after this many calls (0: never) */
};

static int collect(void *ud, uint64_t off, uint64_t len)
{
	struct extents *e = ud;

	if (e->n < MAXEXT) {
		e->off[e->n] = off;
		e->len[e->n] = len;
	}
	e->n++;
	return e->stop_after > 0 && e->n >= e->stop_after ? 42 : 0;
}

/* Extents in order, non-empty, not touching, inside [OFF, OFF+LEN). */
static int well_formed(const struct extents *e, uint64_t off, uint64_t len)
{
	uint64_t prev_end = off;

	if (e->n > MAXEXT)
		return 0;
	for (int i = 0; i < e->n; i++) {
		if (e->len[i] == 0 || e->off[i] < prev_end ||
		    (i > 0 && e->off[i] == prev_end) ||
		    e->off[i] + e->len[i] > off + len)
			return 0;
		prev_end = e->off[i] + e->len[i];
	}
	return 1;
}

/* [OFF, OFF+LEN) lies inside the union of the extents. */
static int covered(const struct extents *e, uint64_t off, uint64_t len)
{
	uint64_t pos = off;

	for (int i = 0; i < e->n && pos < off + len; i++)
		if (e->off[i] <= pos && pos < e->off[i] + e->len[i])
			pos = e->off[i] + e->len[i];
	return pos >= off + len;
}

static uint64_t total(const struct extents *e)
{
	uint64_t t = 0;

	for (int i = 0; i < e->n; i++)
		t += e->len[i];
	return t;
}

static void make_file(void)
{
	int fd;

	model = calloc(1, SIZE);
	if (model == NULL)
		bail_out("out of memory");
	snprintf(path, sizeof(path), "%s/disk.raw", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)SIZE) < 0)
		bail_out("cannot make the test file");
	for (size_t i = 0; i < NREGIONS; i++) {
		ut_fill_random(model + regions[i].off, regions[i].len);
		if (pwrite(fd, model + regions[i].off, regions[i].len,
			   (off_t)regions[i].off) != (ssize_t)regions[i].len)
			bail_out("cannot write the test file");
	}
	if (fsync(fd) < 0)
		bail_out("fsync");
	close(fd);
}

/* Whether the file system reports holes (else SEEK_HOLE says end of
 * file and a source rightly reports the whole file as data). */
static int fs_has_holes(void)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t h = lseek(fd, 0, SEEK_HOLE);

	close(fd);
	return h >= 0 && (uint64_t)h < SIZE;
}

static void test_data_extents(struct bv_source *s)
{
	static struct extents e;
	int all = 1;

	memset(&e, 0, sizeof(e));
	is_int(bv_source_data_extents(s, 0, SIZE, collect, &e), 0,
	       "data extents of the whole file");
	ok(well_formed(&e, 0, SIZE), "%d extents, in order, not touching, "
	   "in range", e.n);
	for (size_t i = 0; i < NREGIONS; i++)
		if (!covered(&e, regions[i].off, regions[i].len))
			all = 0;
	ok(all, "every data region lies inside the data extents");
	if (fs_has_holes())
		ok(total(&e) < SIZE / 4, "holes skipped: %llu of %llu bytes "
		   "reported as data", (unsigned long long)total(&e),
		   (unsigned long long)SIZE);
	else
		ok(1, "# SKIP the file system does not report holes");

	/* A range that starts in a hole and ends inside a region. */
	memset(&e, 0, sizeof(e));
	is_int(bv_source_data_extents(s, 5ull << 20, (4ull << 20) + 1000,
				      collect, &e), 0,
	       "data extents of [5 MiB, 9 MiB + 1000)");
	ok(well_formed(&e, 5ull << 20, (4ull << 20) + 1000),
	   "clipped to the range asked");
	ok(covered(&e, regions[1].off, regions[1].len) &&
	   covered(&e, regions[2].off, 900), "covers the data in it");

	/* The tail region: the file's size is not block-aligned. */
	memset(&e, 0, sizeof(e));
	is_int(bv_source_data_extents(s, SIZE - 30000, 30000, collect, &e), 0,
	       "data extents of the last 30000 bytes");
	ok(e.n >= 1 && e.off[e.n - 1] + e.len[e.n - 1] == SIZE &&
	   covered(&e, SIZE - 20000, 20000), "end at the end of the file");

	memset(&e, 0, sizeof(e));
	e.stop_after = 1;
	is_int(bv_source_data_extents(s, 0, SIZE, collect, &e), 42,
	       "a callback's nonzero return stops the walk and is returned");
	is_int(e.n, 1, "after one call");

	memset(&e, 0, sizeof(e));
	is_int(bv_source_data_extents(s, SIZE, 0, collect, &e), 0,
	       "an empty range at the end");
	is_int(e.n, 0, "has no extents");
	is_int(bv_source_data_extents(s, SIZE - 1, 2, collect, &e), -EINVAL,
	       "a range past the end: -EINVAL");
	ok(strstr(bv_source_error(s), path) != NULL &&
	   strstr(bv_source_error(s), "past the end") != NULL,
	   "message: %s", bv_source_error(s));
	is_int(bv_source_dirty_extents(s, 0, SIZE, collect, &e), -EINVAL,
	       "dirty extents of a file: -EINVAL");
	ok(strstr(bv_source_error(s), "no dirty bitmap") != NULL,
	   "message: %s", bv_source_error(s));
}

#define NREQ 1000
#define REQMAX (32u << 10)

static void test_read_many(struct bv_source *s, uint64_t size)
{
	static struct bv_source_read reqs[NREQ];
	uint8_t *arena = malloc((size_t)NREQ * REQMAX);
	uint8_t *whole = malloc(size);
	int same = 1, zero_res = 1;

	if (arena == NULL || whole == NULL)
		bail_out("out of memory");
	for (int i = 0; i < NREQ; i++) {
		uint64_t off = ut_rand() % size;
		size_t len = (size_t)(ut_rand() % (REQMAX + 1));

		if (len > size - off)
			len = (size_t)(size - off);
		reqs[i] = (struct bv_source_read){
			.buf = arena + (size_t)i * REQMAX, .len = len,
			.off = off, .res = 1 };
	}
	is_int(bv_source_read_many(s, reqs, NREQ), 0,
	       "%d reads of up to %u bytes at depth", NREQ, REQMAX);
	for (int i = 0; i < NREQ; i++) {
		if (reqs[i].res != 0)
			zero_res = 0;
		if (memcmp(reqs[i].buf, model + reqs[i].off, reqs[i].len) != 0)
			same = 0;
	}
	ok(zero_res, "every res is 0");
	ok(same, "every read returns the file's bytes");

	reqs[0] = (struct bv_source_read){ .buf = whole, .len = size };
	is_int(bv_source_read_many(s, reqs, 1), 0, "one read of the whole "
	       "disk (%llu bytes)", (unsigned long long)size);
	ok(memcmp(whole, model, size) == 0, "same bytes");
	is_int(bv_source_read_many(s, reqs, 0), 0, "no reads at all");

	/* Past the end: nothing is read. */
	for (int i = 0; i < 3; i++)
		reqs[i] = (struct bv_source_read){
			.buf = arena + (size_t)i * REQMAX, .len = 100,
			.off = (uint64_t)i * 4096 };
	reqs[1].off = size - 10;
	reqs[1].len = 20;
	is_int(bv_source_read_many(s, reqs, 3), -EINVAL,
	       "a read past the end: -EINVAL");
	ok(reqs[1].res == -EINVAL && reqs[0].res == -ECANCELED &&
	   reqs[2].res == -ECANCELED,
	   "it gets -EINVAL, the others -ECANCELED (got %d, %d, %d)",
	   reqs[0].res, reqs[1].res, reqs[2].res);
	ok(strstr(bv_source_error(s), path) != NULL ||
	   strstr(bv_source_error(s), "/dev/") != NULL,
	   "message: %s", bv_source_error(s));
	reqs[1] = (struct bv_source_read){ .buf = arena, .len = 1,
					   .off = UINT64_MAX };
	is_int(bv_source_read_many(s, reqs + 1, 1), -EINVAL,
	       "a read at offset 2^64-1: -EINVAL (no overflow)");
	reqs[1] = (struct bv_source_read){ .buf = NULL, .len = 1 };
	is_int(bv_source_read_many(s, reqs + 1, 1), -EINVAL,
	       "a read without a buffer: -EINVAL");
	reqs[1] = (struct bv_source_read){ .buf = arena, .len = 0,
					   .off = size };
	is_int(bv_source_read_many(s, reqs + 1, 1), 0,
	       "an empty read at the end is fine");
	free(arena);
	free(whole);
}

/* The file shrinks under an open source: the read hits end of file. */
static void test_shrunk(void)
{
	char p[600], err[512];
	struct bv_source *s;
	struct bv_source_read r;
	static uint8_t buf[8192];
	int fd;

	snprintf(p, sizeof(p), "%s/shrink.raw", dir);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf))
		bail_out("cannot make shrink.raw");
	is_int(bv_source_open(p, NULL, &s, err, sizeof(err)), 0,
	       "open shrink.raw");
	if (ftruncate(fd, 4096) < 0)
		bail_out("ftruncate");
	r = (struct bv_source_read){ .buf = buf, .len = 8192 };
	is_int(bv_source_read_many(s, &r, 1), -EIO,
	       "a read the file no longer holds: -EIO");
	ok(strstr(bv_source_error(s), "shrink.raw") != NULL,
	   "message: %s", bv_source_error(s));
	bv_source_close(s);
	close(fd);
}

/* Views of S (SIZE bytes, contents MODEL): random ones, then bad ones. */
static void test_view(struct bv_source *s, uint64_t size)
{
	const uint8_t *p;
	int same = 1;

	ok(bv_source_can_view(s), "a file or device can be viewed");
	for (int i = 0; i < 200; i++) {
		uint64_t off = ut_rand() % size;
		size_t len = 1 + (size_t)(ut_rand() % (8u << 20));

		if (len > size - off)
			len = (size_t)(size - off);
		if (len == 0)
			continue;
		if (bv_source_view(s, off, len, &p) != 0 ||
		    memcmp(p, model + off, len) != 0) {
			same = 0;
			diag("view %zu at %llu: %s", len,
			     (unsigned long long)off, bv_source_error(s));
			break;
		}
	}
	ok(same, "200 random views, forward and back, hold the disk's bytes");
	is_int(bv_source_view(s, 0, size < BV_SOURCE_VIEW_MAX ? size :
			      BV_SOURCE_VIEW_MAX, &p), 0,
	       "a view of the largest size");
	ok(memcmp(p, model, size < BV_SOURCE_VIEW_MAX ? size :
		  BV_SOURCE_VIEW_MAX) == 0, "same bytes");
	is_int(bv_source_view(s, size - 10, 20, &p), -EINVAL,
	       "a view past the end: -EINVAL");
	ok(p == NULL && strstr(bv_source_error(s), "past the end") != NULL,
	   "no pointer; message: %s", bv_source_error(s));
	is_int(bv_source_view(s, UINT64_MAX, 1, &p), -EINVAL,
	       "a view at 2^64-1: -EINVAL (no overflow)");
	is_int(bv_source_view(s, 0, 0, &p), -EINVAL, "an empty view: -EINVAL");
	is_int(bv_source_view(s, 0, BV_SOURCE_VIEW_MAX + 1, &p), -EINVAL,
	       "a view above BV_SOURCE_VIEW_MAX: -EINVAL");
	ok(strstr(bv_source_error(s), "1 to") != NULL, "message: %s",
	   bv_source_error(s));
	is_int(bv_source_view(s, 4096, 4096, &p), 0, "views work after that");
	ok(memcmp(p, model + 4096, 4096) == 0, "same bytes");
}

/* A sparse 300 MiB disk with an 8-byte mark every 64 KiB: sequential 4 MiB
 * views across many windows (what the agent does), and views of the
 * largest size that straddle windows. */
static void test_view_windows(void)
{
	const uint64_t big = 300ull << 20;
	char p[600], err[512];
	struct bv_source *s;
	const uint8_t *v;
	int fd, good = 1;

	snprintf(p, sizeof(p), "%s/big.raw", dir);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)big) < 0)
		bail_out("cannot make big.raw");
	for (uint64_t o = 0; o < big; o += 65536)
		if (pwrite(fd, &o, 8, (off_t)o) != 8)
			bail_out("cannot write big.raw");
	close(fd);
	if (bv_source_open(p, NULL, &s, err, sizeof(err)) != 0)
		bail_out(err);
	for (uint64_t o = 0; o < big && good; o += 4u << 20) {
		if (bv_source_view(s, o, 4u << 20, &v) != 0) {
			good = 0;
			break;
		}
		for (uint64_t k = 0; k < (4u << 20); k += 65536) {
			uint64_t m;

			memcpy(&m, v + k, 8);
			if (m != o + k || v[k + 8] != 0)
				good = 0;
		}
	}
	ok(good, "4 MiB views from start to end of 300 MiB hold the marks");
	good = 1;
	for (uint64_t o = (60ull << 20) + 512; o + BV_SOURCE_VIEW_MAX <= big;
	     o += 50ull << 20) {
		if (bv_source_view(s, o, BV_SOURCE_VIEW_MAX, &v) != 0) {
			good = 0;
			break;
		}
		for (uint64_t k = 65536 - 512; k < BV_SOURCE_VIEW_MAX;
		     k += 65536) {
			uint64_t m;

			memcpy(&m, v + k, 8);
			if (m != o + k)
				good = 0;
		}
	}
	ok(good, "32 MiB views at unaligned offsets across windows");
	bv_source_close(s);
	unlink(p);
}

/* The file shrinks under a view: the next view of the lost bytes fails
 * with -EIO; touching them through a view taken before is SIGBUS, which
 * the source's handler turns into a message and exit status 1. */
static void test_view_shrunk(void)
{
	char p[600], err[512], out[1024] = "";
	static uint8_t buf[16384];
	struct bv_source *s;
	const uint8_t *v;
	int fd, pipefd[2], status = 0;
	pid_t pid;
	ssize_t n;

	snprintf(p, sizeof(p), "%s/shrink-view.raw", dir);
	memset(buf, 0x5a, sizeof(buf));
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf))
		bail_out("cannot make shrink-view.raw");
	if (bv_source_open(p, NULL, &s, err, sizeof(err)) != 0)
		bail_out(err);
	is_int(bv_source_view(s, 0, sizeof(buf), &v), 0, "view 16 KiB");
	ok(v != NULL && v[12000] == 0x5a, "the bytes are there");
	if (ftruncate(fd, 4096) < 0)
		bail_out("ftruncate");
	is_int(bv_source_view(s, 0, sizeof(buf), &v), -EIO,
	       "a view of bytes the file no longer holds: -EIO");
	ok(strstr(bv_source_error(s), "shrink-view.raw") != NULL &&
	   strstr(bv_source_error(s), "shrank") != NULL,
	   "message: %s", bv_source_error(s));
	bv_source_close(s);

	if (ftruncate(fd, sizeof(buf)) < 0 ||
	    pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf) || pipe(pipefd) < 0)
		bail_out("cannot remake shrink-view.raw");
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 2);
		if (bv_source_open(p, NULL, &s, err, sizeof(err)) != 0 ||
		    bv_source_view(s, 0, sizeof(buf), &v) != 0)
			_exit(3);
		if (ftruncate(fd, 4096) < 0)
			_exit(4);
		/* SIGBUS here: the page past the new end is gone. */
		_exit(v[12000] == 0x5a ? 5 : 6);
	}
	close(pipefd[1]);
	n = read(pipefd[0], out, sizeof(out) - 1);
	out[n > 0 ? n : 0] = '\0';
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 1,
	   "touching a lost byte of a view ends the process with status 1 "
	   "(status %#x)", status);
	ok(strstr(out, "shrink-view.raw: cannot read the disk near byte "
		  "12000") != NULL, "and says where: %s", out);
	close(fd);
	unlink(p);
}

static void expect_refused(const char *spec, const char *bitmap, int want,
			   const char *words, const char *what)
{
	char err[512] = "";
	struct bv_source *s = (struct bv_source *)1;
	int ret = bv_source_open(spec, bitmap, &s, err, sizeof(err));

	is_int(ret, want, "%s: refused", what);
	ok(s == NULL, "%s: no handle", what);
	ok(strstr(err, spec) != NULL && strstr(err, words) != NULL,
	   "%s: message '%s' names it and says '%s'", what, err, words);
}

static void test_bad_specs(void)
{
	char p[600];

	snprintf(p, sizeof(p), "%s/missing.raw", dir);
	expect_refused(p, NULL, -ENOENT, "No such file", "a missing file");
	expect_refused(dir, NULL, -EISDIR, "is a directory", "a directory");
	snprintf(p, sizeof(p), "%s/fifo", dir);
	if (mkfifo(p, 0600) < 0)
		bail_out("mkfifo");
	expect_refused(p, NULL, -EINVAL, "FIFO", "a FIFO (without hanging)");
	expect_refused("/dev/null", NULL, -EINVAL, "character device",
		       "/dev/null");
	expect_refused("http://example.com/disk.raw", NULL, -EINVAL,
		       "not a path or an NBD URI", "an http URI");
	expect_refused(path, "b0", -EINVAL, "needs an NBD source",
		       "a bitmap for a file");
	{
		char err[64];
		struct bv_source *s;

		is_int(bv_source_open("", NULL, &s, err, sizeof(err)), -EINVAL,
		       "an empty spec: -EINVAL");
		is_int(bv_source_open(NULL, NULL, &s, NULL, 0), -EINVAL,
		       "a NULL spec and no message buffer: -EINVAL");
	}
	bv_source_close(NULL);
	ok(1, "bv_source_close(NULL) is a no-op");
}

/* The same file as a read-only loop device: BLKGETSIZE64, the whole
 * device as data, reads through the ring. Needs root and losetup. */
static void test_block_device(void)
{
	char cmd[700], dev[128] = "", err[512];
	struct bv_source *s;
	struct extents *e = calloc(1, sizeof(*e));
	uint64_t size = SIZE / 512 * 512; /* a loop device drops the tail */
	FILE *f;

	snprintf(cmd, sizeof(cmd), "losetup -f --show -r '%s' 2>/dev/null",
		 path);
	f = geteuid() == 0 ? popen(cmd, "r") : NULL;
	if (f != NULL) {
		if (fgets(dev, sizeof(dev), f) == NULL)
			dev[0] = '\0';
		pclose(f);
	}
	dev[strcspn(dev, "\n")] = '\0';
	if (strncmp(dev, "/dev/", 5) != 0) {
		ok(1, "# SKIP cannot attach a loop device (needs root)");
		free(e);
		return;
	}
	diag("loop device %s", dev);
	if (!ok(bv_source_open(dev, NULL, &s, err, sizeof(err)) == 0,
		"open the block device")) {
		diag("%s", err);
	} else {
		is_int(bv_source_size(s), size, "size from BLKGETSIZE64");
		is_int(bv_source_data_extents(s, 0, size, collect, e), 0,
		       "data extents of the device");
		ok(e->n == 1 && e->off[0] == 0 && e->len[0] == size,
		   "are the whole device");
		test_read_many(s, size);
		test_view(s, size);
		bv_source_close(s);
	}
	snprintf(cmd, sizeof(cmd), "losetup -d '%s'", dev);
	ok(system(cmd) == 0, "detach %s", dev);
	free(e);
}

int main(void)
{
	struct bv_source *s;
	char err[512];

	ut_seed((uint64_t)getpid());
	ut_tmpdir(dir, sizeof(dir), "agent-source-file");
	make_file();

	if (bv_source_open(path, NULL, &s, err, sizeof(err)) != 0)
		bail_out(err);
	ok(1, "open %s", path);
	is_int(bv_source_size(s), SIZE, "size");
	ok(strcmp(bv_source_error(s), "") == 0, "no error message yet");
	test_data_extents(s);
	test_read_many(s, SIZE);
	test_view(s, SIZE);
	bv_source_close(s);

	test_shrunk();
	test_view_windows();
	test_view_shrunk();
	test_bad_specs();
	test_block_device();

	ut_rmtree(dir);
	free(model);
	return done_testing();
}
