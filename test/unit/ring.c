/*
 * ring.c: the io_uring wrapper: many requests at depth, short transfers,
 * end of file, large split writes, the fdatasync barrier, fault injection.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"
#include "util.h"

static char dir[256];

static int open_file(const char *name)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		bail_out("open test file");
	return fd;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

#define NBLK 1000
#define BLK 4096

static void test_many(struct bv_ring *r)
{
	static uint8_t data[NBLK][BLK], back[NBLK][BLK];
	static struct bv_io ios[NBLK];
	int fd = open_file("many");
	int good = 1;
	int ret;

	ut_fill_random(data, sizeof(data));
	/* Written in reverse block order, to show order does not matter. */
	for (int i = 0; i < NBLK; i++)
		ios[i] = (struct bv_io){ .fd = fd, .op = BV_IO_WRITE,
			.buf = data[NBLK - 1 - i], .len = BLK,
			.off = (uint64_t)(NBLK - 1 - i) * BLK };
	ret = bv_ring_run(r, ios, NBLK);
	is_int(ret, 0, "%d writes at depth", NBLK);
	for (int i = 0; i < NBLK; i++)
		if (ios[i].res != BLK)
			good = 0;
	ok(good, "every write reports %d bytes", BLK);

	memset(back, 0, sizeof(back));
	for (int i = 0; i < NBLK; i++)
		ios[i] = (struct bv_io){ .fd = fd, .op = BV_IO_READ,
			.buf = back[i], .len = BLK, .off = (uint64_t)i * BLK };
	ret = bv_ring_run(r, ios, NBLK);
	is_int(ret, 0, "%d reads at depth", NBLK);
	ok(memcmp(data, back, sizeof(data)) == 0, "read back what was written");
	close(fd);
}

static void test_big_write(struct bv_ring *r)
{
	size_t len = (64u << 20) + 12345;
	uint8_t *a = malloc(len), *b = malloc(len);
	int fd = open_file("big");
	struct stat st;

	ut_fill_random(a, len);
	is_int(bv_ring_pwrite(r, fd, a, len, 4096), 0,
	       "pwrite of 64 MiB + 12345 (split in two requests)");
	fstat(fd, &st);
	is_int(st.st_size, (long long)len + 4096, "file size");
	memset(b, 0, len);
	is_int(bv_ring_pread(r, fd, b, len, 4096), 0, "pread it back");
	ok(memcmp(a, b, len) == 0, "same bytes");
	is_int(bv_ring_fdatasync(r, fd), 0, "fdatasync");
	is_int(bv_ring_pwrite(r, fd, a, 0, 0), 0, "zero-length pwrite");
	close(fd);
	free(a);
	free(b);
}

static void test_eof(struct bv_ring *r)
{
	uint8_t buf[12000];
	struct bv_io io;
	int fd = open_file("eof");

	memset(buf, 7, sizeof(buf));
	is_int(bv_ring_pwrite(r, fd, buf, 10000, 0), 0, "write 10000 bytes");
	io = (struct bv_io){ .fd = fd, .op = BV_IO_READ, .buf = buf,
			     .len = sizeof(buf), .off = 0 };
	is_int(bv_ring_run(r, &io, 1), -EIO, "read past end of file: -EIO");
	is_int(io.res, -EIO, "its res too");
	is_int(io.done, 10000, "after the short part was read");
	close(fd);
}

struct dribble {
	int fd;
	const uint8_t *data;
	size_t len;
};

/* Writes the data to a pipe 100 bytes at a time, so the reader sees many
 * short reads. */
static void *dribble_main(void *arg)
{
	struct dribble *d = arg;

	for (size_t pos = 0; pos < d->len; pos += 100) {
		size_t n = d->len - pos < 100 ? d->len - pos : 100;

		if (write(d->fd, d->data + pos, n) != (ssize_t)n)
			break;
		if (pos % 1000 == 0)
			sleep_ms(1);
	}
	return NULL;
}

static void test_short(struct bv_ring *r)
{
	static uint8_t data[10000], back[10000];
	struct dribble d;
	pthread_t t;
	int p[2];
	struct bv_io io;

	if (pipe(p) != 0)
		bail_out("pipe");
	ut_fill_random(data, sizeof(data));
	d = (struct dribble){ .fd = p[1], .data = data, .len = sizeof(data) };
	pthread_create(&t, NULL, dribble_main, &d);
	io = (struct bv_io){ .fd = p[0], .op = BV_IO_READ, .buf = back,
			     .len = sizeof(back) };
	is_int(bv_ring_run(r, &io, 1), 0, "read through many short reads");
	is_int(io.res, sizeof(back), "full length reported");
	ok(memcmp(data, back, sizeof(data)) == 0, "bytes in order");
	pthread_join(t, NULL);
	close(p[0]);
	close(p[1]);
}

struct drain {
	int fd;
	uint8_t *back;
	size_t len;
};

/* Reads a pipe slowly, a little at a time, until LEN bytes came. */
static void *drain_main(void *arg)
{
	struct drain *d = arg;
	size_t pos = 0;

	while (pos < d->len) {
		size_t want = d->len - pos < 4096 ? d->len - pos : 4096;
		ssize_t n = read(d->fd, d->back + pos, want);
		if (n <= 0)
			break;
		pos += (size_t)n;
		if (pos % 65536 < 4096)
			sleep_ms(1);
	}
	return NULL;
}

/* Vectored writes: to a file (read back), through a pipe that takes only
 * part of each attempt (the ring advances the segments in place), and a
 * request whose segments do not add up to its length (refused). */
static void test_writev(struct bv_ring *r)
{
	size_t lens[3] = { 100000, 50007, 30000 };
	size_t total = lens[0] + lens[1] + lens[2];
	uint8_t *a = malloc(total), *b = malloc(total);
	struct iovec iov[3];
	struct bv_io io;
	int fd = open_file("vec");

	ut_fill_random(a, total);
	for (int pass = 0; pass < 2; pass++) {
		size_t pos = 0;
		for (int i = 0; i < 3; i++) {
			iov[i].iov_base = a + pos;
			iov[i].iov_len = lens[i];
			pos += lens[i];
		}
		if (pass == 0) {
			io = (struct bv_io){ .fd = fd, .op = BV_IO_WRITEV,
					     .iov = iov, .niov = 3,
					     .len = total, .off = 8192 };
			is_int(bv_ring_run(r, &io, 1), 0, "writev to a file");
			is_int(io.res, (long long)total, "all bytes reported");
			memset(b, 0, total);
			is_int(bv_ring_pread(r, fd, b, total, 8192), 0,
			       "read it back");
			ok(memcmp(a, b, total) == 0, "same bytes, in order");
			continue;
		}
		int p[2];
		pthread_t t;
		struct drain d;
		if (pipe(p) != 0)
			bail_out("pipe");
		memset(b, 0, total);
		d = (struct drain){ .fd = p[0], .back = b, .len = total };
		pthread_create(&t, NULL, drain_main, &d);
		io = (struct bv_io){ .fd = p[1], .op = BV_IO_WRITEV,
				     .iov = iov, .niov = 3, .len = total };
		is_int(bv_ring_run(r, &io, 1), 0,
		       "writev through a pipe, in short writes");
		is_int(io.res, (long long)total, "all bytes reported");
		pthread_join(t, NULL);
		ok(memcmp(a, b, total) == 0, "the reader got every byte in order");
		close(p[0]);
		close(p[1]);
	}
	iov[0] = (struct iovec){ a, 4096 };
	iov[1] = (struct iovec){ a + 4096, 4096 };
	io = (struct bv_io){ .fd = fd, .op = BV_IO_WRITEV, .iov = iov,
			     .niov = 2, .len = 4096 * 3, .off = 0 };
	is_int(bv_ring_run(r, &io, 1), -EINVAL,
	       "segments that do not add up to the length: refused");
	io = (struct bv_io){ .fd = fd, .op = BV_IO_WRITEV, .iov = NULL,
			     .niov = 0, .len = 0, .off = 0 };
	is_int(bv_ring_run(r, &io, 1), -EINVAL, "no segments: refused");
	struct stat st;
	fstat(fd, &st);
	is_int(st.st_size, (long long)(8192 + total),
	       "the refused requests wrote nothing");
	close(fd);
	free(a);
	free(b);
}

struct spy {
	int in_w;   /* write end of the pipe the first request reads */
	int out_r;  /* read end of the pipe the last request writes */
	int early;  /* the last request ran before the first finished */
};

static void *spy_main(void *arg)
{
	struct spy *s = arg;
	char c;

	sleep_ms(300);
	s->early = read(s->out_r, &c, 1) == 1;
	if (write(s->in_w, "x", 1) != 1)
		s->early = -1;
	return NULL;
}

/* [read pipe A (blocks until the spy writes), fdatasync, write pipe B]:
 * with the barrier, B stays empty until A's read is done. */
static void test_barrier(struct bv_ring *r)
{
	int a[2], b[2];
	int fd = open_file("barrier");
	char in = 0;
	struct spy s;
	pthread_t t;
	struct bv_io ios[3];

	if (pipe(a) != 0 || pipe2(b, O_NONBLOCK) != 0)
		bail_out("pipe");
	s = (struct spy){ .in_w = a[1], .out_r = b[0] };
	ios[0] = (struct bv_io){ .fd = a[0], .op = BV_IO_READ, .buf = &in,
				 .len = 1 };
	ios[1] = (struct bv_io){ .fd = fd, .op = BV_IO_FDATASYNC };
	ios[2] = (struct bv_io){ .fd = b[1], .op = BV_IO_WRITE, .buf = "y",
				 .len = 1 };
	pthread_create(&t, NULL, spy_main, &s);
	is_int(bv_ring_run(r, ios, 3), 0, "read, barrier, write");
	pthread_join(t, NULL);
	is_int(s.early, 0, "nothing after the barrier ran before the read");
	ok(in == 'x' && ios[2].res == 1, "all three done");

	/* Without the barrier the write goes at once (the test can fail). */
	ios[1] = ios[2];
	s.early = 0;
	pthread_create(&t, NULL, spy_main, &s);
	is_int(bv_ring_run(r, ios, 2), 0, "read, write without barrier");
	pthread_join(t, NULL);
	is_int(s.early, 1, "control: without a barrier the write ran early");

	/* A failing barrier (fdatasync on a pipe: -EINVAL) stops what
	 * follows it. */
	ios[0] = (struct bv_io){ .fd = fd, .op = BV_IO_WRITE, .buf = "z",
				 .len = 1 };
	ios[1] = (struct bv_io){ .fd = a[1], .op = BV_IO_FDATASYNC };
	ios[2] = (struct bv_io){ .fd = fd, .op = BV_IO_WRITE, .buf = "w",
				 .len = 1, .off = 1 };
	is_int(bv_ring_run(r, ios, 3), -EINVAL, "failed fdatasync reported");
	is_int(ios[0].res, 1, "the write before it completed");
	is_int(ios[2].res, -ECANCELED, "the write after it did not start");
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	close(fd);
}

static void test_faults(struct bv_ring *r)
{
	uint8_t buf[5][512];
	struct bv_io ios[5];
	int fd = open_file("faults");
	int others = 1;

	memset(buf, 3, sizeof(buf));
	bv_ring_fail_nth(BV_IO_WRITE, 3, EIO);
	for (int i = 0; i < 5; i++)
		ios[i] = (struct bv_io){ .fd = fd, .op = BV_IO_WRITE,
			.buf = buf[i], .len = 512, .off = (uint64_t)i * 512 };
	is_int(bv_ring_run(r, ios, 5), -EIO, "injected -EIO returned");
	is_int(ios[2].res, -EIO, "on the third write");
	for (int i = 0; i < 5; i++)
		if (i != 2 && ios[i].res != 512)
			others = 0;
	ok(others, "the other writes succeeded");
	is_int(bv_ring_run(r, ios, 5), 0, "the fault fires once");

	bv_ring_fail_nth(BV_IO_FDATASYNC, 1, ENOSPC);
	is_int(bv_ring_pwrite(r, fd, buf, 512, 0), 0, "writes not counted");
	is_int(bv_ring_fdatasync(r, fd), -ENOSPC, "fdatasync fails -ENOSPC");

	bv_ring_fail_nth(-1, 2, EIO);
	is_int(bv_ring_pread(r, fd, buf, 512, 0), 0, "first request passes");
	is_int(bv_ring_pread(r, fd, buf, 512, 0), -EIO, "second one fails");

	bv_ring_fail_nth(-1, 0, 0);
	is_int(bv_ring_fdatasync(r, fd), 0, "switched off");
	close(fd);
}

int main(void)
{
	struct bv_ring *r = NULL, *small = NULL;

	ut_seed(777);
	ut_tmpdir(dir, sizeof(dir), "ring");
	is_int(bv_ring_new(0, &r), -EINVAL, "depth 0 refused");
	is_int(bv_ring_new(5000, &r), 0, "depth over 4096 is capped");
	bv_ring_free(r);
	r = NULL;
	if (bv_ring_new(64, &r) != 0)
		skip_all("io_uring not available");
	is_int(bv_ring_new(3, &small), 0, "depth 3 (rounded up)");
	test_many(r);
	test_many(small);
	test_big_write(r);
	test_big_write(small);
	test_eof(r);
	test_short(r);
	test_writev(r);
	test_writev(small);
	test_barrier(r);
	test_faults(r);
	bv_ring_free(small);
	bv_ring_free(r);
	ut_rmtree(dir);
	return done_testing();
}
