/*
 * ring.h: the io_uring wrapper. All file I/O of the engine's data path
 * (container appends, fdatasync, chunk reads, export writes) goes through
 * a ring. A ring belongs to one thread at a time.
 *
 * Contract: -errno returns end to end, as io_uring reports them. Short
 * reads and writes are resubmitted for the remainder; a read that hits end
 * of file returns -EIO (callers read only what they know exists).
 */
#ifndef BV_STORAGE_RING_H
#define BV_STORAGE_RING_H

#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

enum { BV_IO_READ = 0, BV_IO_WRITE = 1, BV_IO_FDATASYNC = 2,
       BV_IO_WRITEV = 3 };

/* One request. RES is set by bv_ring_run(): bytes done, or -errno.
 * BV_IO_WRITEV writes the NIOV segments of the iovec array IOV back to
 * back at OFF, LEN bytes in all (the sum of the segment lengths); after
 * a short write the ring advances IOV and NIOV in place past what was
 * written, so the caller's array must be writable and is left advanced. */
struct bv_io {
	int fd;
	int op;
	void *buf;
	size_t len;
	uint64_t off;
	int64_t res;
	uint64_t done; /* internal: bytes done so far */
	struct iovec *iov;
	unsigned niov;
};

struct bv_ring;

/* Makes a ring with DEPTH entries (rounded up to a power of two, at most
 * 4096). */
int bv_ring_new(unsigned depth, struct bv_ring **out);
void bv_ring_free(struct bv_ring *r);

/* Runs N requests with up to the ring's depth in flight, in any order,
 * except that an fdatasync request runs only after every request before it
 * in IOS finished (it is a barrier), and requests after it start only
 * after it finished. Returns 0 when all succeeded, else the first error
 * (in IOS order); every RES is set either way. */
int bv_ring_run(struct bv_ring *r, struct bv_io *ios, size_t n);

/* Convenience wrappers over bv_ring_run(). pwrite splits LEN into
 * requests of at most 64 MiB, all in flight at once. */
int bv_ring_pwrite(struct bv_ring *r, int fd, const void *buf, size_t len,
		   uint64_t off);
int bv_ring_pread(struct bv_ring *r, int fd, void *buf, size_t len,
		  uint64_t off);
int bv_ring_fdatasync(struct bv_ring *r, int fd);

/* Fault injection for tests: the Nth request (1-based, counted over every
 * ring in the process from the call on) of kind OP (-1: any kind) fails
 * with ERR instead of being submitted. N 0 switches it off. */
void bv_ring_fail_nth(int op, uint64_t n, int err);

#endif
