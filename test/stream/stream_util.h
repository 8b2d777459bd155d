/*
 * stream_util.h: helpers for the stream tests: a byte builder that writes
 * streams from the documented layouts (engine/STREAM.md, and Ceph's doc/dev/rbd-diff.rst)
 * without the writer, and runners that feed bytes to the reader through a
 * memfd or a pipe.
 */
#ifndef BV_TEST_STREAM_UTIL_H
#define BV_TEST_STREAM_UTIL_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include "stream.h"

struct bytes {
	uint8_t *p;
	size_t len, cap;
};

__attribute__((unused))
static void b_put(struct bytes *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

__attribute__((unused))
static void b_u8(struct bytes *b, uint8_t v)
{
	b_put(b, &v, 1);
}

__attribute__((unused))
static void b_le(struct bytes *b, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		b_u8(b, (uint8_t)(v >> (8 * i)));
}

__attribute__((unused))
static void b_fill(struct bytes *b, uint8_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b_u8(b, v);
}

__attribute__((unused))
static void b_free(struct bytes *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* bvault header, by hand (STREAM.md). */
__attribute__((unused))
static void b_header(struct bytes *b, unsigned version, unsigned flags,
		     const char *name, uint64_t size, uint64_t base, int cons,
		     int64_t time)
{
	static const uint8_t magic[8] = { 'B', 'V', 'S', 'T', 'R', 'M', 0, 1 };
	b_put(b, magic, 8);
	b_le(b, version, 2);
	b_le(b, flags, 2);
	b_u8(b, (uint8_t)strlen(name));
	b_put(b, name, strlen(name));
	b_le(b, size, 8);
	b_le(b, base, 8);
	b_u8(b, (uint8_t)cons);
	b_le(b, (uint64_t)time, 8);
}

/* The two identities a version 2 header adds after the v1 fields. */
__attribute__((unused))
static void b_ids(struct bytes *b, const uint8_t base[16],
		  const uint8_t result[16])
{
	b_put(b, base, 16);
	b_put(b, result, 16);
}

__attribute__((unused))
static void b_extent(struct bytes *b, uint8_t type, uint64_t off,
		     uint64_t len)
{
	b_u8(b, type);
	b_le(b, off, 8);
	b_le(b, len, 8);
}

/* Trailer with the right checksum over everything in B so far. */
__attribute__((unused))
static void b_trailer(struct bytes *b, uint64_t records, uint64_t bytes)
{
	b_u8(b, 'E');
	b_le(b, records, 8);
	b_le(b, bytes, 8);
	b_le(b, XXH3_64bits(b->p, b->len), 8);
}

/* rbd diff v1 pieces (Ceph's doc/dev/rbd-diff.rst). */
__attribute__((unused))
static void b_rbd_banner(struct bytes *b)
{
	b_put(b, "rbd diff v1\n", 12);
}

__attribute__((unused))
static void b_rbd_name(struct bytes *b, char tag, const char *name)
{
	b_u8(b, (uint8_t)tag);
	b_le(b, strlen(name), 4);
	b_put(b, name, strlen(name));
}

/* A memfd holding P[0..N), positioned at 0. */
__attribute__((unused))
static int mem_fd(const void *p, size_t n)
{
	int fd = memfd_create("stream", 0);
	const uint8_t *q = p;

	if (fd < 0)
		abort();
	while (n) {
		ssize_t w = write(fd, q, n);
		if (w <= 0)
			abort();
		q += w;
		n -= (size_t)w;
	}
	if (lseek(fd, 0, SEEK_SET) != 0)
		abort();
	return fd;
}

/* A pipe whose other end a child process fills with P[0..N) in writes of
 * at most STEP bytes (short reads for the reader), then closes. *PID is
 * the child to reap with pipe_done(). */
__attribute__((unused))
static int pipe_fd(const void *p, size_t n, size_t step, pid_t *pid)
{
	int fds[2];

	if (pipe(fds))
		abort();
	*pid = fork();
	if (*pid < 0)
		abort();
	if (*pid == 0) {
		const uint8_t *q = p;
		close(fds[0]);
		signal(SIGPIPE, SIG_DFL);
		while (n) {
			size_t k = n < step ? n : step;
			ssize_t w = write(fds[1], q, k);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				_exit(1);
			q += w;
			n -= (size_t)w;
		}
		_exit(0);
	}
	close(fds[1]);
	return fds[0];
}

__attribute__((unused))
static void pipe_done(pid_t pid)
{
	int st;
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
}

struct run_result {
	int ret;          /* 0 when END was reached, else the error */
	int at_open;      /* the error came from open */
	uint64_t records; /* records returned before END or the error */
	uint64_t data;    /* data bytes returned */
	char msg[320];
};

/* Reads a whole stream from FD; closes FD. */
__attribute__((unused))
static struct run_result run_fd(int fd, int format)
{
	struct run_result r;
	struct bv_stream_reader *rd = NULL;
	struct bv_stream_rec rec;

	memset(&r, 0, sizeof(r));
	r.ret = bv_stream_reader_open(fd, format, &rd);
	if (r.ret) {
		r.at_open = 1;
		goto out;
	}
	for (;;) {
		r.ret = bv_stream_next(rd, &rec);
		if (r.ret || rec.type == BV_REC_END)
			break;
		r.records++;
		if (rec.type == BV_REC_DATA)
			r.data += rec.len;
	}
out:
	if (rd)
		snprintf(r.msg, sizeof(r.msg), "%s",
			 bv_stream_reader_error(rd));
	bv_stream_reader_close(rd);
	close(fd);
	return r;
}

__attribute__((unused))
static struct run_result run_bytes(const void *p, size_t n, int format)
{
	return run_fd(mem_fd(p, n), format);
}

#endif
