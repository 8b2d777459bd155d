/*
 * export.c: writing a replica at an RP to a file or a block device. The
 * reader fills a window of chunks; the window's data runs are written
 * through io_uring while the next window is read. A regular file gets
 * holes where the replica is zeros; a block device gets the zeros written,
 * since it may hold anything. Two window buffers: the writes of window k
 * are queued, window k+1 is read into the other buffer, then the queued
 * writes run (bv_ring_run keeps them all in flight at once).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define WINDOW (32u << 20)
#define MAX_RUNS 512

int bv_export(bv_store *s, const char *replica, uint64_t rp, const char *path,
	      bv_progress_fn progress, void *ud)
{
	bv_reader *r = NULL;
	struct bv_ring *ring = NULL;
	uint8_t *buf[2] = { NULL, NULL };
	uint8_t *zmask = NULL;
	struct bv_io ios[MAX_RUNS];
	size_t nios = 0;
	struct stat st;
	int fd = -1, dfd = -1, created = 0, blockdev = 0, rc;
	uint64_t size, win;

	bv_fail(0, "%s", "");
	if ((rc = bv_reader_open(s, replica, rp, &r)))
		return rc;
	size = bv_reader_size(r);
	win = WINDOW - WINDOW % bv_reader_chunk_size(r);
	if (win == 0)
		win = bv_reader_chunk_size(r);
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode)) {
		uint64_t dev = 0;
		blockdev = 1;
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = bv_fail(-errno, "export %s: %s", path,
				     strerror(errno));
			goto out;
		}
		if (ioctl(fd, BLKGETSIZE64, &dev) < 0 || dev < size) {
			rc = bv_fail(BV_ERANGE, "export %s: device holds %llu "
				     "bytes, replica %s needs %llu", path,
				     (unsigned long long)dev, replica,
				     (unsigned long long)size);
			goto out;
		}
	} else {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = bv_fail(-errno, "export %s: %s", path,
				     strerror(errno));
			goto out;
		}
		created = 1;
		if (ftruncate(fd, (off_t)size) < 0) {
			rc = bv_fail(-errno, "export %s: cannot size it to "
				     "%llu bytes: %s", path,
				     (unsigned long long)size, strerror(errno));
			goto out;
		}
	}
	/* Whole pages go through a second, O_DIRECT descriptor when the file
	 * system takes it: an export is written once, and the copy into the
	 * page cache and its writeback at fdatasync cost more than the
	 * export itself. A partial last page goes through FD. */
	if (!getenv("BV_NO_DIRECT"))
		dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if ((rc = bv_ring_new(64, &ring))) {
		rc = bv_fail(rc, "export: io_uring: %s", strerror(-rc));
		goto out;
	}
	rc = -ENOMEM;
	if (posix_memalign((void **)&buf[0], 4096, win) ||
	    posix_memalign((void **)&buf[1], 4096, win) ||
	    !(zmask = calloc(win / bv_reader_chunk_size(r) + 2, 1)))
		goto out;
	rc = 0;

	uint32_t cs = bv_reader_chunk_size(r);
	int cur = 0;
	for (uint64_t off = 0; off < size; off += win, cur ^= 1) {
		uint64_t n = size - off < win ? size - off : win;
		/* buf[cur] is free: writes queued from it two windows ago
		 * ran before the previous window was read. */
		if ((rc = bv_reader_fill(r, buf[cur], n, off, zmask)))
			goto out;
		if (nios && (rc = bv_ring_run(ring, ios, nios))) {
			rc = bv_fail(rc, "export %s: write: %s", path,
				     strerror(-rc));
			goto out;
		}
		nios = 0;
		for (uint64_t p = 0; p < n;) {
			uint64_t q = p;
			size_t j = p / cs;
			int zero = zmask[j] && !blockdev;
			while (q < n && (zmask[q / cs] && !blockdev) == zero)
				q += cs - q % cs;
			if (q > n)
				q = n;
			if (!zero) {
				if (nios == MAX_RUNS) {
					if ((rc = bv_ring_run(ring, ios, nios)))
						goto wfail;
					nios = 0;
				}
				int whole = dfd >= 0 && (off + p) % 4096 == 0 &&
					    (q - p) % 4096 == 0;
				ios[nios++] = (struct bv_io){
					.fd = whole ? dfd : fd, .op = BV_IO_WRITE,
					.buf = buf[cur] + p, .len = q - p,
					.off = off + p };
			}
			p = q;
		}
		if (progress)
			progress(ud, off + n, size);
		continue;
wfail:
		rc = bv_fail(rc, "export %s: write: %s", path, strerror(-rc));
		goto out;
	}
	if (nios && (rc = bv_ring_run(ring, ios, nios))) {
		rc = bv_fail(rc, "export %s: write: %s", path, strerror(-rc));
		goto out;
	}
	nios = 0;
	if ((rc = bv_ring_fdatasync(ring, fd)))
		rc = bv_fail(rc, "export %s: fdatasync: %s", path,
			     strerror(-rc));
out:
	if (dfd >= 0)
		close(dfd);
	if (fd >= 0)
		close(fd);
	if (rc && created)
		unlink(path);
	free(buf[0]);
	free(buf[1]);
	free(zmask);
	bv_ring_free(ring);
	bv_reader_close(r);
	return rc;
}
