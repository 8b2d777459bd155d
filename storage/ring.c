/*
 * ring.c: the io_uring wrapper.
 *
 * bv_ring_run() takes the caller's array of requests and drives it to
 * completion. The array is split at each fdatasync into segments: the
 * requests of one segment run with up to DEPTH in flight, in any order;
 * the fdatasync then runs alone. That makes an fdatasync a barrier without
 * IOSQE_IO_DRAIN (which would stall the whole ring, not just this call).
 *
 * A CQE's user data is the request's index in the caller's array, and the
 * progress of a request lives in the request itself (bv_io.done), so the
 * hot path allocates nothing. The only per-ring allocation is a small
 * array bv_ring_pwrite() uses to split large writes.
 *
 * Error handling: a failed request keeps its -errno in RES; the rest of
 * its segment still runs (its buffers stay owned by the kernel until then),
 * but nothing after the next barrier starts: those requests get
 * -ECANCELED, because a barrier after a failed write promises nothing.
 */
#include "ring.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#define RING_MAX_DEPTH 4096u
/* bv_ring_pwrite piece size. One request per write up to this size: the
 * block layer splits it for the device anyway, and every extra request
 * costs a kernel worker wakeup (ext4 punts O_DIRECT appends to io-wq,
 * which runs writes to one file one after another). */
#define RING_SPLIT (64u << 20)
#define RING_MAX_XFER (1u << 30) /* one SQE moves at most this much */
#define RES_PENDING INT64_MIN    /* RES while a request is in flight */

struct bv_ring {
	struct io_uring uring;
	int uring_init;
	unsigned depth;
	int broken;          /* a submit failed hard: in-flight state unknown */
	struct bv_io *split; /* DEPTH requests for bv_ring_pwrite */
};

/* Fault injection (bv_ring_fail_nth): process-wide, so a test can fail an
 * I/O deep inside the engine without reaching its rings. */
static atomic_int fail_op = -1;
static atomic_uint_fast64_t fail_n;
static atomic_int fail_err;
static atomic_uint_fast64_t fail_count;

void bv_ring_fail_nth(int op, uint64_t n, int err)
{
	atomic_store(&fail_n, 0);
	atomic_store(&fail_count, 0);
	atomic_store(&fail_op, op);
	atomic_store(&fail_err, err > 0 ? -err : err);
	atomic_store(&fail_n, n);
}

/* 0, or the injected -errno when this request is the chosen one. */
static int fault_check(const struct bv_io *io)
{
	uint64_t n = atomic_load(&fail_n);
	int op;

	if (n == 0)
		return 0;
	op = atomic_load(&fail_op);
	if (op != -1 && op != io->op)
		return 0;
	if (atomic_fetch_add(&fail_count, 1) + 1 != n)
		return 0;
	return atomic_load(&fail_err);
}

int bv_ring_new(unsigned depth, struct bv_ring **out)
{
	struct bv_ring *r = NULL;
	unsigned d = 1;
	int ret;

	*out = NULL;
	if (depth == 0) {
		ret = -EINVAL;
		goto fail;
	}
	if (depth > RING_MAX_DEPTH)
		depth = RING_MAX_DEPTH;
	while (d < depth)
		d <<= 1;
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	r->depth = d;
	r->split = calloc(d, sizeof(*r->split));
	if (r->split == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	/* COOP_TASKRUN: completions are processed when we enter the kernel
	 * anyway, saving an interrupt per completion; older kernels refuse
	 * the flag, so fall back to none. */
	ret = io_uring_queue_init(d, &r->uring, IORING_SETUP_COOP_TASKRUN);
	if (ret == -EINVAL)
		ret = io_uring_queue_init(d, &r->uring, 0);
	if (ret < 0)
		goto fail;
	r->uring_init = 1;
	*out = r;
	return 0;
fail:
	bv_ring_free(r);
	return ret;
}

void bv_ring_free(struct bv_ring *r)
{
	if (r == NULL)
		return;
	if (r->uring_init)
		io_uring_queue_exit(&r->uring);
	free(r->split);
	free(r);
}

static void prep(struct io_uring_sqe *sqe, struct bv_io *io, size_t idx)
{
	uint64_t left = io->len - io->done;
	unsigned n = left > RING_MAX_XFER ? RING_MAX_XFER : (unsigned)left;

	switch (io->op) {
	case BV_IO_READ:
		io_uring_prep_read(sqe, io->fd, (char *)io->buf + io->done, n,
				   io->off + io->done);
		break;
	case BV_IO_WRITE:
		io_uring_prep_write(sqe, io->fd, (char *)io->buf + io->done,
				    n, io->off + io->done);
		break;
	case BV_IO_WRITEV:
		/* IOV was advanced past what is done (advance_iov). */
		io_uring_prep_writev(sqe, io->fd, io->iov, io->niov,
				     io->off + io->done);
		break;
	default:
		io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
		break;
	}
	io_uring_sqe_set_data64(sqe, idx);
}

/* An SQE, submitting what is queued when the SQ is full. The SQ holds
 * DEPTH entries and at most DEPTH requests are in flight, so after one
 * submit there is always room. */
static struct io_uring_sqe *get_sqe(struct bv_ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);

	if (sqe == NULL) {
		io_uring_submit(&r->uring);
		sqe = io_uring_get_sqe(&r->uring);
	}
	return sqe;
}

/* A vectored request's segments add up to its length, which one SQE
 * can move. */
static int iov_ok(const struct bv_io *io)
{
	uint64_t sum = 0;

	if (io->iov == NULL || io->niov == 0 || io->niov > IOV_MAX ||
	    io->len > RING_MAX_XFER)
		return 0;
	for (unsigned i = 0; i < io->niov; i++)
		sum += io->iov[i].iov_len;
	return sum == io->len;
}

/* Moves a vectored request's segments past N more bytes written. */
static void advance_iov(struct bv_io *io, uint64_t n)
{
	while (n > 0 && io->niov > 0) {
		if (n >= io->iov->iov_len) {
			n -= io->iov->iov_len;
			io->iov++;
			io->niov--;
		} else {
			io->iov->iov_base = (char *)io->iov->iov_base + n;
			io->iov->iov_len -= n;
			n = 0;
		}
	}
}

/* Queues the rest of IO again (short transfer or EINTR). */
static int resubmit(struct bv_ring *r, struct bv_io *io, size_t idx)
{
	struct io_uring_sqe *sqe = get_sqe(r);

	if (sqe == NULL)
		return -EBUSY;
	prep(sqe, io, idx);
	return 0;
}

/* Runs IOS[START, END) with up to depth in flight. Returns 0, or a hard
 * ring error (the ring is then unusable); per-request errors are in RES. */
static int run_segment(struct bv_ring *r, struct bv_io *ios, size_t start,
		       size_t end)
{
	size_t next = start;
	unsigned inflight = 0;
	int ret = 0;

	while (next < end || inflight > 0) {
		struct io_uring_cqe *cqe;

		while (inflight < r->depth && next < end) {
			struct bv_io *io = &ios[next];
			struct io_uring_sqe *sqe;
			int err;

			io->done = 0;
			if ((io->op != BV_IO_READ && io->op != BV_IO_WRITE &&
			     io->op != BV_IO_FDATASYNC &&
			     io->op != BV_IO_WRITEV) ||
			    (io->op == BV_IO_WRITEV && !iov_ok(io))) {
				io->res = -EINVAL;
				next++;
				continue;
			}
			err = fault_check(io);
			if (err != 0) {
				io->res = err;
				next++;
				continue;
			}
			if (io->op != BV_IO_FDATASYNC && io->len == 0) {
				io->res = 0;
				next++;
				continue;
			}
			sqe = get_sqe(r);
			if (sqe == NULL) {
				ret = -EBUSY;
				goto broken;
			}
			io->res = RES_PENDING;
			prep(sqe, io, next);
			inflight++;
			next++;
		}
		if (inflight == 0)
			break;
		/* Sleep until all in flight are done when nothing waits to be
		 * queued (a segment's writes, its fdatasync), else until half
		 * are, so that reads keep the queue full: one wakeup per
		 * segment, not one per request. */
		ret = io_uring_submit_and_wait(
			&r->uring, next < end && inflight > 1 ? inflight / 2
							       : inflight);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN &&
		    ret != -EBUSY)
			goto broken;
		ret = 0;
		while (io_uring_peek_cqe(&r->uring, &cqe) == 0) {
			size_t idx = (size_t)io_uring_cqe_get_data64(cqe);
			int res = cqe->res;
			struct bv_io *io;

			io_uring_cqe_seen(&r->uring, cqe);
			if (idx < start || idx >= end)
				continue; /* cannot happen: not ours */
			io = &ios[idx];
			if (res == -EINTR || res == -EAGAIN) {
				if (resubmit(r, io, idx) == 0)
					continue;
				res = -EBUSY;
			}
			if (res < 0) {
				io->res = res;
			} else if (io->op == BV_IO_FDATASYNC) {
				io->res = 0;
			} else if (res == 0) {
				/* End of file on a read, or a write that made
				 * no progress: never retry forever. */
				io->res = -EIO;
			} else {
				io->done += (uint64_t)res;
				if (io->op == BV_IO_WRITEV)
					advance_iov(io, (uint64_t)res);
				if (io->done < io->len) {
					/* Short transfer: the rest, same slot. */
					if (resubmit(r, io, idx) == 0)
						continue;
					io->res = -EBUSY;
				} else {
					io->res = (int64_t)io->done;
				}
			}
			inflight--;
		}
	}
	return 0;
broken:
	/* Requests may still be in the kernel; we cannot tell which. The
	 * ring refuses further work rather than reuse their slots. */
	r->broken = 1;
	for (size_t i = start; i < end; i++)
		if (i >= next || ios[i].res == RES_PENDING)
			ios[i].res = ret;
	return ret;
}

int bv_ring_run(struct bv_ring *r, struct bv_io *ios, size_t n)
{
	size_t i = 0;
	int ret;
	int failed = 0;

	while (i < n) {
		size_t end = i;

		while (end < n && ios[end].op != BV_IO_FDATASYNC)
			end++;
		if (end == i)
			end = i + 1; /* an fdatasync runs alone */
		if (failed || r->broken) {
			for (size_t k = i; k < end; k++)
				ios[k].res = r->broken ? -EIO : -ECANCELED;
		} else {
			(void)run_segment(r, ios, i, end);
			for (size_t k = i; k < end && !failed; k++)
				if (ios[k].res < 0)
					failed = 1;
		}
		i = end;
	}
	ret = 0;
	for (i = 0; i < n; i++) {
		if (ios[i].res < 0) {
			ret = (int)ios[i].res;
			break;
		}
	}
	return ret;
}

int bv_ring_pwrite(struct bv_ring *r, int fd, const void *buf, size_t len,
		   uint64_t off)
{
	size_t pos = 0;
	int ret = 0;

	while (pos < len && ret == 0) {
		size_t k = 0;

		while (k < r->depth && pos < len) {
			size_t piece = len - pos < RING_SPLIT ? len - pos
							      : RING_SPLIT;

			r->split[k] = (struct bv_io){
				.fd = fd,
				.op = BV_IO_WRITE,
				.buf = (char *)buf + pos,
				.len = piece,
				.off = off + pos,
			};
			pos += piece;
			k++;
		}
		ret = bv_ring_run(r, r->split, k);
	}
	return ret;
}

int bv_ring_pread(struct bv_ring *r, int fd, void *buf, size_t len,
		  uint64_t off)
{
	struct bv_io io = {
		.fd = fd, .op = BV_IO_READ, .buf = buf, .len = len, .off = off,
	};

	return bv_ring_run(r, &io, 1);
}

int bv_ring_fdatasync(struct bv_ring *r, int fd)
{
	struct bv_io io = { .fd = fd, .op = BV_IO_FDATASYNC };

	return bv_ring_run(r, &io, 1);
}
