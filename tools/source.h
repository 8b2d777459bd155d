/*
 * source.h: the disk bvault-agent backs up, and what to read from it.
 *
 * A source is a raw file, a block device, or an NBD export (qemu-nbd,
 * nbdkit, a hypervisor's NBD server). The agent asks it which ranges may
 * hold data (to skip holes on a full), which ranges a QEMU dirty bitmap
 * marks changed (for an incremental), and reads many ranges at once.
 *
 * Contract, for every function below:
 *  - Returns 0 or a negative errno value. OS, io_uring and NBD failures
 *    pass their errno up unchanged (an NBD command the server failed
 *    returns the server's errno). Our own refusals use: -EINVAL (a bad
 *    argument, a range past the end of the disk, a bitmap asked of a
 *    source that cannot have one), -EISDIR (the path is a directory),
 *    -ENOENT (also: the server does not export the bitmap), -EPROTO (the
 *    server answered block status with something unusable), -ENOMEM.
 *  - Every error leaves a message in bv_source_error() that names the
 *    source, e.g. "nbd+unix:///?socket=/run/q.sock: dirty bitmap b0 is
 *    not exported by the server ...". bv_source_open() writes its message
 *    into the caller's buffer instead, since no handle exists.
 *  - A source is used by one thread at a time. Different sources are
 *    independent.
 *  - Memory is bounded: a source holds a fixed amount (an io_uring of 64
 *    entries or one NBD connection, a few KiB of bookkeeping) whatever
 *    the disk size or the number of extents; reads allocate nothing.
 *
 * Caveats:
 *  - An NBD call waits for the server's answer up to the source's timeout
 *    (bv_source_open_timeout). After the NBD connection failed (the server
 *    went away or timed out), every later call fails; close the source
 *    and open it again.
 *  - The disk is read as it is at the time of the read: the agent must
 *    freeze what it reads (a disabled bitmap, a snapshot) for a
 *    consistent backup.
 */
#ifndef BV_TOOLS_SOURCE_H
#define BV_TOOLS_SOURCE_H

#include <stddef.h>
#include <stdint.h>

struct bv_source;

/* Opens SPEC: a path (a regular file or a block device, opened read-only)
 * or an NBD URI as libnbd's nbd_connect_uri() takes it (nbd://host/export,
 * nbd+unix:///export?socket=PATH, nbds://..., nbd+vsock://...). Anything
 * else of the form "scheme://" is refused.
 *
 * BITMAP is NULL, or the name (1 to 1023 bytes) of a QEMU persistent dirty
 * bitmap the NBD server exports as the metadata context
 * "qemu:dirty-bitmap:BITMAP" (qemu-nbd -B BITMAP). The open fails with
 * -ENOENT when the server does not offer it, and with -EINVAL when BITMAP
 * is given for a file or block device.
 *
 * On success *OUT is the new source, owned by the caller until
 * bv_source_close(). On failure *OUT is NULL and ERR (ERRLEN bytes, may be
 * NULL) holds a message naming SPEC and what is wrong. */
int bv_source_open(const char *spec, const char *bitmap,
		   struct bv_source **out, char *err, size_t errlen);

/* bv_source_open with a TIMEOUT in seconds (0: the default, 60): an NBD
 * server that sends nothing for that long, during the handshake, a read
 * or a block status query, fails the call with -ETIMEDOUT and a message
 * saying so, and the connection is given up (every later call fails).
 * Files and block devices have no timeout. */
int bv_source_open_timeout(const char *spec, const char *bitmap,
			   unsigned timeout, struct bv_source **out, char *err,
			   size_t errlen);

/* The disk size in bytes, as found at open. */
uint64_t bv_source_size(const struct bv_source *s);

/* The message of the last error on S ("" when none); valid until the
 * next call on S. */
const char *bv_source_error(const struct bv_source *s);

/* Extent callbacks: called with the source free to use (a callback may
 * read from S), in offset order, with ranges that neither overlap nor
 * touch (adjacent ones are merged). A nonzero return stops the walk, and
 * the walk returns that value. */
typedef int (*bv_source_extent_fn)(void *ud, uint64_t off, uint64_t len);

/* The parts of [OFF, OFF+LEN) that may hold data; the rest reads as zero.
 *  - file: SEEK_DATA / SEEK_HOLE (the whole range when the file system
 *    cannot tell);
 *  - block device: the whole range;
 *  - NBD: the base:allocation context, skipping ranges marked hole or
 *    zero (the whole range when the server offers no base:allocation).
 * -EINVAL when the range runs past the end of the disk. */
int bv_source_data_extents(struct bv_source *s, uint64_t off, uint64_t len,
			   bv_source_extent_fn cb, void *ud);

/* The parts of [OFF, OFF+LEN) the dirty bitmap given at open marks dirty
 * (bit 0 of qemu:dirty-bitmap:NAME), at the bitmap's granularity.
 * -EINVAL when no bitmap was given at open or the range runs past the
 * end of the disk. */
int bv_source_dirty_extents(struct bv_source *s, uint64_t off,
			    uint64_t len, bv_source_extent_fn cb, void *ud);

/* One read: LEN bytes at OFF into BUF. RES is set by bv_source_read_many:
 * 0, or -errno. */
struct bv_source_read {
	void *buf;
	size_t len;
	uint64_t off;
	int res;
};

/* Reads the N requests of REQS with up to 64 in flight, in any order
 * (io_uring for files and block devices, NBD commands of at most the
 * server's maximum size for NBD). The buffers must not overlap.
 *
 * A request that runs past the end of the disk (or has no buffer) makes
 * the whole call fail before anything is read: it gets -EINVAL, the
 * others -ECANCELED. Otherwise every request is tried and gets its own
 * RES; the return is the first error in REQS order, or 0. The contents
 * of a failed request's buffer are undefined. */
int bv_source_read_many(struct bv_source *s, struct bv_source_read *reqs,
			size_t n);

/* The largest LEN bv_source_view() takes. */
#define BV_SOURCE_VIEW_MAX (32u << 20)

/* Reading in place, for files and block devices: makes [OFF, OFF+LEN) of
 * the disk readable at *P without copying it (a read-only mapping of the
 * page cache), valid until the next bv_source_view() on S or
 * bv_source_close(). The source keeps one window of the disk mapped (at
 * most 64 MiB more than LEN) and asks the kernel to read the next window
 * ahead, so cold reads proceed while the caller works on this one; views
 * in ascending order read the disk once, in large requests.
 *
 * -ENOTSUP for NBD sources (use bv_source_read_many), -EINVAL for a range
 * past the end of the disk or LEN above BV_SOURCE_VIEW_MAX or 0.
 *
 * The bytes are read when first touched, so a read error (or a file cut
 * short after the open) shows up then, as SIGBUS: the first view installs
 * a handler that prints "SPEC: cannot read the disk near byte OFFSET (an
 * I/O error, or the source shrank while it was read)" on stderr and ends
 * the process with status 1. A tool that sends what it reads therefore
 * never sends bytes it could not read; its server sees the connection
 * drop and commits nothing. */
int bv_source_view(struct bv_source *s, uint64_t off, size_t len,
		   const uint8_t **p);

/* 1 when S can be read with bv_source_view (a file or block device). */
int bv_source_can_view(const struct bv_source *s);

/* For files and block devices only (bv_source_can_view): LEN bytes at OFF
 * copied into BUF with pread(). Safe to call from several threads at
 * once, so it sets no message: returns 0, -errno, or -EIO for a disk
 * that ends early. Copying small pieces into a buffer that stays in the
 * CPU's cache and hashing them there beats hashing the mapped page cache
 * on some machines (the kernel's copy streams from memory faster than
 * the hash's loads do). */
int bv_source_pread(struct bv_source *s, void *buf, size_t len,
		    uint64_t off);
/* Asks the kernel to read [OFF, OFF+LEN) of a file or block device ahead
 * (posix_fadvise WILLNEED); a hint, nothing for NBD. */
void bv_source_advise(struct bv_source *s, uint64_t off, uint64_t len);

/* Closes S (NULL is fine). Also the NBD connection: with qemu-nbd
 * without -t/--persistent that ends the server. */
void bv_source_close(struct bv_source *s);

#endif
