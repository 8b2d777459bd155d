/*
 * source.c: reading the protected disk (source.h).
 *
 * Three kinds of source share one handle. Files and block devices are read
 * through an io_uring of the source's own (the agent is a tool: it sees
 * only bvault.h of the engine, so it does not borrow the storage layer's
 * ring); NBD exports
 * through libnbd, with reads issued as asynchronous commands and driven by
 * nbd_poll().
 *
 * Extents from NBD arrive inside a libnbd callback, which must not call
 * libnbd on the same handle. So a block status answer is first copied into
 * a fixed buffer of the handle, and the caller's callback runs after
 * nbd_block_status() returned: the caller may then read from the source,
 * and the memory used stays fixed however many extents the server sends
 * (when the buffer fills, the next query starts where it stopped).
 *
 * The reads of one bv_source_read_many() call need no allocation: file
 * reads reuse a fixed array of ring requests, NBD reads a fixed set of 64
 * slots, each naming the request a command in flight belongs to.
 *
 * libnbd is loaded (dlopen) when the first NBD source opens, not linked:
 * it brings GnuTLS, libxml2 and ICU, whose loading cost about 11 ms of
 * every run of bvault-agent on the machines we measured, and most runs
 * read files or block devices.
 */
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fs.h>

#include <dlfcn.h>
#include <pthread.h>

#include <libnbd.h>

#include <liburing.h>

enum { SRC_FILE, SRC_BDEV, SRC_NBD };

#define SRC_DEPTH 64u           /* reads in flight */
#define SRC_BATCH 256u          /* ring requests per bv_ring_run() */
#define SRC_STATUS_MAX (1ull << 30) /* length asked per block status */
#define SRC_NBD_PIECE (1u << 20)    /* read command size: several in flight
				     * per request; below NBD's default
				     * maximum payload, 32 MiB */
#define SRC_EXTENTS 512u        /* extents kept from one answer */
#define SRC_BITMAP_MAX 1023u    /* QEMU's limit on bitmap names */
#define QEMU_DIRTY_PREFIX "qemu:dirty-bitmap:"
#define QEMU_STATE_DIRTY 1u     /* qemu docs/interop/nbd.txt: bit 0 */
#define SRC_TIMEOUT_DEFAULT 60u /* seconds an NBD server may stay silent */
#define SRC_WINDOW (64u << 20)  /* mapped, and read ahead, past a view */
#define SRC_WIN_ALIGN (1u << 20)

struct src_extent {
	uint64_t off, len;
};

/* An NBD read command in flight. */
struct src_slot {
	struct bv_source *src;
	struct bv_source_read *req;
	int busy;
};

/* One block status query's answer, as far as kept. It lives in the
 * source, not on a stack: libnbd may still call back into it when the
 * connection is closed after a timeout. */
struct scan {
	struct bv_source *s;
	const char *ctx;
	int dirty;      /* want dirty ranges (else data ranges) */
	uint64_t start; /* the queried offset */
	uint64_t end;   /* the walk's end: answers are clipped to it */
	uint64_t next;  /* where this answer, as far as taken, ends */
	unsigned n;     /* extents kept in s->ext */
	int seen;       /* our context answered */
	int bad_off;    /* ... but not at the offset asked */
	int done;       /* the command completed */
	int err;        /* its errno (0: success) */
};

struct bv_source {
	int kind;
	char *spec;
	char *ctx;      /* "qemu:dirty-bitmap:NAME", or NULL */
	uint64_t size;

	/* files and block devices */
	int fd;
	struct io_uring ring;
	int ring_ok;
	uint64_t *done;    /* SRC_BATCH: bytes read so far per request */
	uint8_t *map;      /* bv_source_view's window, or NULL */
	uint64_t map_off;  /* disk offset of map[0] */
	size_t map_len;
	uint64_t ahead;    /* read ahead asked up to here */

	/* NBD */
	struct nbd_handle *nbd;
	unsigned timeout;  /* seconds without an answer before giving up */
	int has_alloc;  /* the server gave us base:allocation */
	int broken;     /* the connection failed: refuse further work */
	size_t piece;   /* largest read command */
	struct src_slot slots[SRC_DEPTH];
	unsigned free_slots[SRC_DEPTH]; /* a stack of slot indexes */
	unsigned nfree;
	struct src_extent ext[SRC_EXTENTS];
	struct scan scan;  /* the block status query in flight */

	char err[512];
};

/* Sets the message of S to "SPEC: fmt..." and returns ERR. */
__attribute__((format(printf, 3, 4)))
static int src_fail(struct bv_source *s, int err, const char *fmt, ...)
{
	int n;
	va_list ap;

	n = snprintf(s->err, sizeof(s->err), "%s: ", s->spec);
	if (n < 0 || (size_t)n >= sizeof(s->err))
		return err;
	va_start(ap, fmt);
	vsnprintf(s->err + n, sizeof(s->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

/* ---- libnbd, loaded on first use -------------------------------------- */

/* Every libnbd function this file calls. */
#define NBD_FUNCS(X)                                                        \
	X(nbd_create) X(nbd_close) X(nbd_get_error) X(nbd_get_errno)        \
	X(nbd_supports_uri) X(nbd_add_meta_context) X(nbd_aio_connect_uri)  \
	X(nbd_poll) X(nbd_aio_is_connecting) X(nbd_aio_is_ready)            \
	X(nbd_aio_is_dead) X(nbd_aio_is_closed) X(nbd_get_size)             \
	X(nbd_can_meta_context) X(nbd_get_block_size) X(nbd_shutdown)       \
	X(nbd_aio_pread) X(nbd_aio_block_status)

static struct {
#define NBD_PTR(f) __typeof__(f) *f;
	NBD_FUNCS(NBD_PTR)
#undef NBD_PTR
	char why[256]; /* why libnbd could not be loaded; "" once it is */
} nbd_lib;
static pthread_once_t nbd_once = PTHREAD_ONCE_INIT;

static void nbd_load(void)
{
	void *h = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);

	if (h == NULL) {
		snprintf(nbd_lib.why, sizeof nbd_lib.why, "NBD sources need "
			 "libnbd (Debian: libnbd0), which cannot be loaded: "
			 "%s", dlerror());
		return;
	}
#define NBD_SYM(f)                                                          \
	if (!nbd_lib.why[0]) {                                              \
		void *p = dlsym(h, #f);                                     \
		if (p == NULL)                                              \
			snprintf(nbd_lib.why, sizeof nbd_lib.why, "the "    \
				 "libnbd found has no %s: it is older than " \
				 "1.14", #f);                               \
		memcpy(&nbd_lib.f, &p, sizeof p);                           \
	}
	NBD_FUNCS(NBD_SYM)
#undef NBD_SYM
}

/* From here on, libnbd calls go through the table. */
#define nbd_create (*nbd_lib.nbd_create)
#define nbd_close (*nbd_lib.nbd_close)
#define nbd_get_error (*nbd_lib.nbd_get_error)
#define nbd_get_errno (*nbd_lib.nbd_get_errno)
#define nbd_supports_uri (*nbd_lib.nbd_supports_uri)
#define nbd_add_meta_context (*nbd_lib.nbd_add_meta_context)
#define nbd_aio_connect_uri (*nbd_lib.nbd_aio_connect_uri)
#define nbd_poll (*nbd_lib.nbd_poll)
#define nbd_aio_is_connecting (*nbd_lib.nbd_aio_is_connecting)
#define nbd_aio_is_ready (*nbd_lib.nbd_aio_is_ready)
#define nbd_aio_is_dead (*nbd_lib.nbd_aio_is_dead)
#define nbd_aio_is_closed (*nbd_lib.nbd_aio_is_closed)
#define nbd_get_size (*nbd_lib.nbd_get_size)
#define nbd_can_meta_context (*nbd_lib.nbd_can_meta_context)
#define nbd_get_block_size (*nbd_lib.nbd_get_block_size)
#define nbd_shutdown (*nbd_lib.nbd_shutdown)
#define nbd_aio_pread (*nbd_lib.nbd_aio_pread)
#define nbd_aio_block_status (*nbd_lib.nbd_aio_block_status)

/* libnbd's errno for its last failure; EIO when it gives none, so that a
 * failure is never reported as success. */
static int nbd_err(void)
{
	int e = nbd_get_errno();

	return e > 0 ? -e : -EIO;
}

/* 1 when SPEC starts with an NBD URI scheme, 0 when it has no
 * "scheme://" prefix (a path), -1 for any other scheme. */
static int uri_kind(const char *spec)
{
	size_t i = 0;

	if (!((spec[0] >= 'a' && spec[0] <= 'z') ||
	      (spec[0] >= 'A' && spec[0] <= 'Z')))
		return 0;
	while (spec[i] != '\0' && spec[i] != ':') {
		char c = spec[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '+' || c == '-' ||
		      c == '.'))
			return 0;
		i++;
	}
	if (strncmp(spec + i, "://", 3) != 0)
		return 0;
	/* nbd, nbds, nbd+unix, nbds+vsock, ...: libnbd judges the rest. */
	if (strncmp(spec, "nbd:", 4) == 0 || strncmp(spec, "nbds:", 5) == 0 ||
	    strncmp(spec, "nbd+", 4) == 0 || strncmp(spec, "nbds+", 5) == 0)
		return 1;
	return -1;
}

static int open_path(struct bv_source *s)
{
	struct stat st;
	int flags, ret;

	/* O_NONBLOCK so that a FIFO cannot hang the open; it is cleared
	 * below once we know we hold a file or a device. */
	s->fd = open(s->spec, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (s->fd < 0)
		return src_fail(s, -errno, "cannot open: %s", strerror(errno));
	if (fstat(s->fd, &st) < 0)
		return src_fail(s, -errno, "cannot stat: %s", strerror(errno));
	if (S_ISREG(st.st_mode)) {
		s->kind = SRC_FILE;
		s->size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		s->kind = SRC_BDEV;
		if (ioctl(s->fd, BLKGETSIZE64, &s->size) < 0)
			return src_fail(s, -errno,
					"cannot get the block device size: %s",
					strerror(errno));
	} else if (S_ISDIR(st.st_mode)) {
		return src_fail(s, -EISDIR, "is a directory, not a regular "
				"file or block device");
	} else {
		return src_fail(s, -EINVAL, "is a %s, not a regular file or "
				"block device",
				S_ISCHR(st.st_mode)    ? "character device"
				: S_ISFIFO(st.st_mode) ? "FIFO"
				: S_ISSOCK(st.st_mode) ? "socket"
						       : "special file");
	}
	flags = fcntl(s->fd, F_GETFL);
	if (flags < 0 || fcntl(s->fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return src_fail(s, -errno, "fcntl: %s", strerror(errno));
	s->done = calloc(SRC_BATCH, sizeof(*s->done));
	if (s->done == NULL)
		return src_fail(s, -ENOMEM, "out of memory");
	ret = io_uring_queue_init(SRC_DEPTH, &s->ring, 0);
	if (ret < 0)
		return src_fail(s, ret, "cannot make an io_uring: %s",
				strerror(-ret));
	s->ring_ok = 1;
	return 0;
}

/* Drives S's NBD connection until DONE(UD) holds. Returns 0; -ETIMEDOUT
 * (the connection is then given up) when the server sent nothing for the
 * source's timeout; libnbd's errno when the connection failed. WHAT names
 * what we wait for in the message. */
static int nbd_wait(struct bv_source *s, int (*done)(struct bv_source *,
						     void *),
		    void *ud, const char *what)
{
	while (!done(s, ud)) {
		int r = nbd_poll(s->nbd, (int)s->timeout * 1000);

		if (r == 0) {
			s->broken = 1;
			return src_fail(s, -ETIMEDOUT, "the NBD server did not "
					"answer %s within %u s", what,
					s->timeout);
		}
		if (r < 0) {
			int e = nbd_err();

			s->broken = 1;
			return src_fail(s, e, "%s: %s", what, nbd_get_error());
		}
	}
	return 0;
}

static int connect_done(struct bv_source *s, void *ud)
{
	(void)ud;
	return nbd_aio_is_connecting(s->nbd) != 1;
}

static int open_nbd(struct bv_source *s, const char *bitmap)
{
	int64_t size, max;
	int ret;

	s->kind = SRC_NBD;
	pthread_once(&nbd_once, nbd_load);
	if (nbd_lib.why[0])
		return src_fail(s, -ENOPKG, "%s", nbd_lib.why);
	if (bitmap != NULL) {
		size_t n = strlen(bitmap);

		if (n == 0 || n > SRC_BITMAP_MAX)
			return src_fail(s, -EINVAL, "bad dirty bitmap name "
					"(%zu bytes; a name has 1 to %u)",
					n, SRC_BITMAP_MAX);
		s->ctx = malloc(sizeof(QEMU_DIRTY_PREFIX) + n);
		if (s->ctx == NULL)
			return src_fail(s, -ENOMEM, "out of memory");
		memcpy(s->ctx, QEMU_DIRTY_PREFIX, sizeof(QEMU_DIRTY_PREFIX) - 1);
		memcpy(s->ctx + sizeof(QEMU_DIRTY_PREFIX) - 1, bitmap, n + 1);
	}
	s->nbd = nbd_create();
	if (s->nbd == NULL)
		return src_fail(s, nbd_err(), "cannot make an NBD handle: %s",
				nbd_get_error());
	if (nbd_supports_uri(s->nbd) != 1)
		return src_fail(s, -ENOTSUP,
				"this libnbd was built without URI support");
	/* Contexts are chosen during the handshake, so they must be asked
	 * for before connecting; which ones the server took is asked after. */
	if (nbd_add_meta_context(s->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
	    (s->ctx != NULL && nbd_add_meta_context(s->nbd, s->ctx) < 0))
		return src_fail(s, nbd_err(), "%s", nbd_get_error());
	/* Asynchronously, so that a server that accepts and then says
	 * nothing cannot hang us. */
	if (nbd_aio_connect_uri(s->nbd, s->spec) < 0)
		return src_fail(s, nbd_err(), "cannot connect: %s",
				nbd_get_error());
	if ((ret = nbd_wait(s, connect_done, NULL, "the handshake")) < 0)
		return ret == -ETIMEDOUT ? ret : src_fail(s, ret,
			"cannot connect: %s", nbd_get_error());
	if (nbd_aio_is_ready(s->nbd) != 1)
		return src_fail(s, nbd_err(), "cannot connect: %s",
				nbd_get_error());
	size = nbd_get_size(s->nbd);
	if (size < 0)
		return src_fail(s, nbd_err(), "cannot get the export size: %s",
				nbd_get_error());
	s->size = (uint64_t)size;
	s->has_alloc = nbd_can_meta_context(s->nbd,
					    LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	if (s->ctx != NULL && nbd_can_meta_context(s->nbd, s->ctx) != 1)
		return src_fail(s, -ENOENT, "dirty bitmap %s is not exported "
				"by the server (it does not offer the %s "
				"context; qemu-nbd exports it with -B %s, and "
				"refuses a bitmap QEMU marked inconsistent "
				"after a crash: then only a consistency check, "
				"--compare, finds the changes)",
				bitmap, s->ctx, bitmap);
	/* A server may cap commands below our size. */
	max = nbd_get_block_size(s->nbd, LIBNBD_SIZE_MAXIMUM);
	s->piece = max > 0 && (uint64_t)max < SRC_NBD_PIECE ? (size_t)max
							     : SRC_NBD_PIECE;
	for (unsigned i = 0; i < SRC_DEPTH; i++) {
		s->slots[i].src = s;
		s->free_slots[i] = SRC_DEPTH - 1 - i;
	}
	s->nfree = SRC_DEPTH;
	return 0;
}

int bv_source_open(const char *spec, const char *bitmap,
		   struct bv_source **out, char *err, size_t errlen)
{
	return bv_source_open_timeout(spec, bitmap, 0, out, err, errlen);
}

int bv_source_open_timeout(const char *spec, const char *bitmap,
			   unsigned timeout, struct bv_source **out, char *err,
			   size_t errlen)
{
	struct bv_source *s = NULL;
	int kind;
	int ret;

	if (out != NULL)
		*out = NULL;
	if (spec == NULL || spec[0] == '\0' || out == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "bv_source_open: no source given");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s != NULL)
		s->spec = strdup(spec);
	if (s == NULL || s->spec == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: out of memory", spec);
		free(s);
		return -ENOMEM;
	}
	s->fd = -1;
	s->timeout = timeout ? timeout : SRC_TIMEOUT_DEFAULT;
	kind = uri_kind(spec);
	if (kind < 0) {
		ret = src_fail(s, -EINVAL, "not a path or an NBD URI (an NBD "
			       "URI starts nbd://, nbds://, nbd+unix://, ...)");
	} else if (kind == 1) {
		ret = open_nbd(s, bitmap);
	} else if (bitmap != NULL) {
		ret = src_fail(s, -EINVAL, "a dirty bitmap (%s) needs an NBD "
			       "source, not a file or block device", bitmap);
	} else {
		ret = open_path(s);
	}
	if (ret < 0) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s", s->err);
		bv_source_close(s);
		return ret;
	}
	*out = s;
	return 0;
}

uint64_t bv_source_size(const struct bv_source *s)
{
	return s->size;
}

const char *bv_source_error(const struct bv_source *s)
{
	return s->err;
}

static void unmap_window(struct bv_source *s);

void bv_source_close(struct bv_source *s)
{
	if (s == NULL)
		return;
	if (s->nbd != NULL) {
		/* A polite disconnect when the connection still works; close
		 * also frees the slots of commands still in flight, so S must
		 * live until it returns. */
		if (!s->broken && nbd_aio_is_ready(s->nbd) == 1)
			(void)nbd_shutdown(s->nbd, 0);
		nbd_close(s->nbd);
	}
	if (s->map != NULL)
		unmap_window(s);
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	if (s->fd >= 0)
		close(s->fd);
	free(s->done);
	free(s->ctx);
	free(s->spec);
	free(s);
}

/* -EINVAL unless [OFF, OFF+LEN) lies within the disk. */
static int check_range(struct bv_source *s, uint64_t off, uint64_t len,
		       const char *what)
{
	if (off > s->size || len > s->size - off)
		return src_fail(s, -EINVAL, "%s of %llu bytes at %llu runs "
				"past the end of the disk (%llu bytes)", what,
				(unsigned long long)len,
				(unsigned long long)off,
				(unsigned long long)s->size);
	return 0;
}

/* An NBD connection that died (the server went away mid-command) stays
 * dead: say so plainly instead of libnbd's "invalid state" -EINVAL. */
static int check_usable(struct bv_source *s)
{
	if (s->kind == SRC_NBD && !s->broken &&
	    (nbd_aio_is_dead(s->nbd) == 1 || nbd_aio_is_closed(s->nbd) == 1))
		s->broken = 1;
	if (s->broken)
		return src_fail(s, -ENOTCONN, "the NBD connection failed "
				"earlier; close and open the source again");
	return 0;
}

/* ---- extents --------------------------------------------------------- */

static int file_data_extents(struct bv_source *s, uint64_t off,
			     uint64_t len, bv_source_extent_fn cb, void *ud)
{
	uint64_t end = off + len, pos = off;
	int ret = 0;

	while (pos < end) {
		off_t data, hole;
		uint64_t stop;

		data = lseek(s->fd, (off_t)pos, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break; /* no data from POS to end of file */
			if (errno == EINVAL || errno == EOPNOTSUPP) {
				/* The file system cannot tell holes. */
				ret = cb(ud, pos, end - pos);
				break;
			}
			ret = src_fail(s, -errno, "SEEK_DATA at %llu: %s",
				       (unsigned long long)pos,
				       strerror(errno));
			break;
		}
		if ((uint64_t)data >= end)
			break;
		hole = lseek(s->fd, data, SEEK_HOLE);
		if (hole < 0) {
			ret = src_fail(s, -errno, "SEEK_HOLE at %llu: %s",
				       (unsigned long long)data,
				       strerror(errno));
			break;
		}
		/* A file that changes under us may answer a hole at or
		 * before DATA; take the rest as data rather than loop. */
		stop = hole <= data || (uint64_t)hole > end ? end
							     : (uint64_t)hole;
		ret = cb(ud, (uint64_t)data, stop - (uint64_t)data);
		if (ret != 0)
			break;
		pos = stop;
	}
	return ret;
}

/* One block status query of an NBD walk. */

/* libnbd's extent callback: runs inside libnbd, so it only keeps the
 * wanted extents of our context; no nbd_* calls, no caller callbacks. */
static int on_extents(void *ud, const char *meta, uint64_t off,
		      uint32_t *entries, size_t nr, int *error)
{
	struct scan *sc = ud;
	struct bv_source *s = sc->s;

	(void)error;
	/* A buggy server may answer a context twice: the first counts. */
	if (strcmp(meta, sc->ctx) != 0 || sc->seen)
		return 0;
	sc->seen = 1;
	if (off != sc->start) {
		sc->bad_off = 1;
		return 0;
	}
	for (size_t i = 0; i + 1 < nr && off < sc->end; i += 2) {
		uint64_t len = entries[i];
		uint32_t flags = entries[i + 1];
		int want;

		/* The last extent may reach past what was asked. */
		if (len > sc->end - off)
			len = sc->end - off;
		if (sc->dirty)
			want = (flags & QEMU_STATE_DIRTY) != 0;
		else
			want = (flags & (LIBNBD_STATE_HOLE |
					 LIBNBD_STATE_ZERO)) == 0;
		if (want && len > 0) {
			struct src_extent *last =
				sc->n > 0 ? &s->ext[sc->n - 1] : NULL;

			if (last != NULL && last->off + last->len == off) {
				last->len += len;
			} else if (sc->n == SRC_EXTENTS) {
				break; /* full: the next query starts here */
			} else {
				s->ext[sc->n].off = off;
				s->ext[sc->n].len = len;
				sc->n++;
			}
		}
		off += len;
	}
	sc->next = off;
	return 0;
}

static int on_status_done(void *ud, int *error)
{
	struct scan *sc = ud;

	sc->done = 1;
	sc->err = *error;
	return 1; /* retire the command */
}

static int status_done(struct bv_source *s, void *ud)
{
	(void)s;
	return ((struct scan *)ud)->done;
}

/* Walks [OFF, OFF+LEN) of context CTX with block status queries of at
 * most SRC_STATUS_MAX bytes, calling CB with the wanted ranges, merged
 * across answers. */
static int nbd_extents(struct bv_source *s, const char *ctx, int dirty,
		       uint64_t off, uint64_t len, bv_source_extent_fn cb,
		       void *ud)
{
	uint64_t end = off + len, pos = off;
	struct src_extent pend = { 0, 0 }; /* a range that may grow */
	int ret = 0;

	while (pos < end) {
		uint64_t ask = end - pos < SRC_STATUS_MAX ? end - pos
							  : SRC_STATUS_MAX;
		struct scan *sc = &s->scan;
		char what[128];

		*sc = (struct scan){ .s = s, .ctx = ctx, .dirty = dirty,
				     .start = pos, .end = end, .next = pos };
		snprintf(what, sizeof(what), "block status (%s) of %llu bytes "
			 "at %llu", ctx, (unsigned long long)ask,
			 (unsigned long long)pos);
		if (nbd_aio_block_status(s->nbd, ask, pos,
					 (nbd_extent_callback){
						 .callback = on_extents,
						 .user_data = sc },
					 (nbd_completion_callback){
						 .callback = on_status_done,
						 .user_data = sc },
					 0) < 0) {
			ret = nbd_err();
			return src_fail(s, ret, "%s: %s", what,
					nbd_get_error());
		}
		if ((ret = nbd_wait(s, status_done, sc, what)) < 0)
			return ret;
		if (sc->err != 0)
			return src_fail(s, -sc->err, "%s: %s", what,
					strerror(sc->err));
		/* Without progress the walk would never end. */
		if (!sc->seen || sc->bad_off || sc->next <= pos)
			return src_fail(s, -EPROTO, "block status (%s) at "
					"%llu: the server's answer %s", ctx,
					(unsigned long long)pos,
					!sc->seen ? "lacks this context"
					: sc->bad_off ? "starts at another offset"
						     : "covers nothing");
		for (unsigned i = 0; i < sc->n; i++) {
			if (pend.len > 0 && pend.off + pend.len == s->ext[i].off) {
				pend.len += s->ext[i].len;
				continue;
			}
			if (pend.len > 0) {
				ret = cb(ud, pend.off, pend.len);
				if (ret != 0)
					return ret;
			}
			pend = s->ext[i];
		}
		pos = sc->next;
	}
	if (pend.len > 0)
		ret = cb(ud, pend.off, pend.len);
	return ret;
}

int bv_source_data_extents(struct bv_source *s, uint64_t off, uint64_t len,
			   bv_source_extent_fn cb, void *ud)
{
	int ret;

	ret = check_usable(s);
	if (ret == 0)
		ret = check_range(s, off, len, "data extents");
	if (ret < 0 || len == 0)
		return ret;
	switch (s->kind) {
	case SRC_FILE:
		return file_data_extents(s, off, len, cb, ud);
	case SRC_NBD:
		if (s->has_alloc)
			return nbd_extents(s, LIBNBD_CONTEXT_BASE_ALLOCATION,
					   0, off, len, cb, ud);
		return cb(ud, off, len);
	default:
		return cb(ud, off, len);
	}
}

int bv_source_dirty_extents(struct bv_source *s, uint64_t off,
			    uint64_t len, bv_source_extent_fn cb, void *ud)
{
	int ret;

	if (s->ctx == NULL)
		return src_fail(s, -EINVAL, "no dirty bitmap was given when "
				"the source was opened");
	ret = check_usable(s);
	if (ret == 0)
		ret = check_range(s, off, len, "dirty extents");
	if (ret < 0 || len == 0)
		return ret;
	return nbd_extents(s, s->ctx, 1, off, len, cb, ud);
}

/* ---- reads ------------------------------------------------------------ */

/* Refuses the whole call when a request is bad, before any I/O. */
static int check_reads(struct bv_source *s, struct bv_source_read *reqs,
		       size_t n)
{
	size_t bad = n;

	for (size_t i = 0; i < n; i++) {
		struct bv_source_read *r = &reqs[i];

		if ((r->buf == NULL && r->len > 0) ||
		    r->off > s->size || r->len > s->size - r->off) {
			r->res = -EINVAL;
			if (bad == n)
				bad = i;
		} else {
			r->res = -ECANCELED;
		}
	}
	if (bad == n)
		return 0;
	if (reqs[bad].buf == NULL && reqs[bad].len > 0)
		return src_fail(s, -EINVAL, "read request %zu has no buffer",
				bad);
	return check_range(s, reqs[bad].off, reqs[bad].len, "read");
}

/* Queues the rest of request I of REQS (its DONE bytes are read). */
static int file_queue(struct bv_source *s, struct bv_source_read *r,
		      size_t i)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	if (sqe == NULL) {
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	if (sqe == NULL)
		return -EBUSY;
	io_uring_prep_read(sqe, s->fd, (char *)r->buf + s->done[i],
			   (unsigned)(r->len - s->done[i]), r->off + s->done[i]);
	io_uring_sqe_set_data64(sqe, i);
	return 0;
}

/* Reads REQS (at most SRC_BATCH) with up to SRC_DEPTH in flight; a short
 * read is queued again for the rest, end of file is -EIO. Every RES is
 * set. */
static void file_read_batch(struct bv_source *s, struct bv_source_read *reqs,
			    size_t n)
{
	size_t next = 0, inflight = 0;

	while (next < n || inflight > 0) {
		while (next < n && inflight < SRC_DEPTH) {
			s->done[next] = 0;
			reqs[next].res = 0;
			if (reqs[next].len == 0) {
				next++;
				continue;
			}
			if (file_queue(s, &reqs[next], next)) {
				reqs[next].res = -EBUSY;
				next++;
				continue;
			}
			inflight++;
			next++;
		}
		if (inflight == 0)
			break;
		int rc = io_uring_submit_and_wait(&s->ring, 1);
		if (rc < 0 && rc != -EINTR) {
			/* The ring is unusable: what is in flight cannot be
			 * told apart; fail every request not finished. */
			for (size_t i = 0; i < n; i++)
				if (reqs[i].res == 0 && s->done[i] < reqs[i].len)
					reqs[i].res = rc;
			return;
		}
		struct io_uring_cqe *cqe;
		while (io_uring_peek_cqe(&s->ring, &cqe) == 0) {
			size_t i = (size_t)io_uring_cqe_get_data64(cqe);
			int res = cqe->res;
			io_uring_cqe_seen(&s->ring, cqe);
			if (i >= n)
				continue;
			struct bv_source_read *r = &reqs[i];
			if (res == -EINTR || res == -EAGAIN ||
			    (res > 0 && (s->done[i] += (uint64_t)res) <
					       r->len)) {
				if (file_queue(s, r, i) == 0)
					continue;
				res = -EBUSY;
			}
			if (res < 0)
				r->res = res;
			else if (res == 0)
				r->res = -EIO; /* the file ends early */
			inflight--;
		}
	}
}

static void file_read_many(struct bv_source *s, struct bv_source_read *reqs,
			   size_t n)
{
	for (size_t first = 0; first < n; first += SRC_BATCH)
		file_read_batch(s, reqs + first, n - first < SRC_BATCH ?
						 n - first : SRC_BATCH);
}

static int on_read_done(void *ud, int *error)
{
	struct src_slot *slot = ud;

	/* REQ is NULL once the call that issued the command gave up on it. */
	if (*error != 0 && slot->req != NULL && slot->req->res == 0)
		slot->req->res = -*error;
	return 1; /* retire the command: nobody waits on its cookie */
}

/* Called once per command however it ended, also when nbd_aio_pread()
 * itself failed and when nbd_close() drops a command in flight. */
static void on_read_free(void *ud)
{
	struct src_slot *slot = ud;
	struct bv_source *s = slot->src;

	slot->busy = 0;
	s->free_slots[s->nfree++] = (unsigned)(slot - s->slots);
}

static void nbd_read_many(struct bv_source *s, struct bv_source_read *reqs,
			  size_t n)
{
	size_t i = 0, pos = 0; /* the next piece: REQS[i] from POS */

	for (size_t j = 0; j < n; j++)
		reqs[j].res = 0;
	for (;;) {
		while (s->nfree > 0 && i < n) {
			struct bv_source_read *r = &reqs[i];
			struct src_slot *slot;
			size_t piece;

			if (pos == r->len || r->res != 0) {
				i++;
				pos = 0;
				continue;
			}
			piece = r->len - pos < s->piece ? r->len - pos
							: s->piece;
			slot = &s->slots[s->free_slots[--s->nfree]];
			slot->req = r;
			slot->busy = 1;
			if (nbd_aio_pread(s->nbd, (char *)r->buf + pos, piece,
					  r->off + pos,
					  (nbd_completion_callback){
						  .callback = on_read_done,
						  .user_data = slot,
						  .free = on_read_free },
					  0) < 0) {
				/* The slot came back through on_read_free. */
				if (r->res == 0)
					r->res = nbd_err();
			}
			pos += piece;
		}
		if (s->nfree == SRC_DEPTH)
			break;
		int pr = nbd_poll(s->nbd, (int)s->timeout * 1000);
		if (pr <= 0) {
			int e = pr == 0 ? -ETIMEDOUT : nbd_err();

			/* The connection is gone; what is in flight will not
			 * complete, and what is not sent never will be. The
			 * commands still held by libnbd are let go of: the
			 * caller may free REQS before nbd_close() ends them. */
			s->broken = 1;
			for (unsigned k = 0; k < SRC_DEPTH; k++) {
				struct src_slot *slot = &s->slots[k];

				if (slot->busy && slot->req->res == 0)
					slot->req->res = e;
				slot->req = NULL;
			}
			for (; i < n; i++)
				if (reqs[i].res == 0)
					reqs[i].res = e;
			break;
		}
	}
}

int bv_source_read_many(struct bv_source *s, struct bv_source_read *reqs,
			size_t n)
{
	int ret;

	ret = check_usable(s);
	if (ret < 0) {
		for (size_t i = 0; i < n; i++)
			reqs[i].res = ret;
		return ret;
	}
	ret = check_reads(s, reqs, n);
	if (ret < 0)
		return ret;
	if (s->kind == SRC_NBD)
		nbd_read_many(s, reqs, n);
	else
		file_read_many(s, reqs, n);
	for (size_t i = 0; i < n; i++) {
		struct bv_source_read *r = &reqs[i];

		if (r->res == -ETIMEDOUT && s->kind == SRC_NBD)
			return src_fail(s, r->res, "read of %zu bytes at %llu: "
					"the NBD server did not answer within "
					"%u s", r->len,
					(unsigned long long)r->off, s->timeout);
		if (r->res < 0)
			return src_fail(s, r->res, "read of %zu bytes at %llu: "
					"%s", r->len,
					(unsigned long long)r->off,
					strerror(-r->res));
	}
	return 0;
}

/* ---- reading in place ----------------------------------------------------- */

/* What the SIGBUS handler needs to name the failed read: the window
 * mapped last (views of one source at a time are what the agent does). */
static struct {
	const char *volatile spec;
	volatile uintptr_t base;
	volatile size_t len;
	volatile uint64_t off;
} fault_at;

static void put_str(char *buf, size_t *n, size_t cap, const char *s)
{
	while (*s != '\0' && *n < cap)
		buf[(*n)++] = *s++;
}

/* Async-signal-safe: formats by hand, then write() and _exit(). */
static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	char msg[1024], num[24];
	size_t n = 0, k = 0;
	uint64_t off;

	(void)uc;
	if (fault_at.spec == NULL || a < fault_at.base ||
	    a - fault_at.base >= fault_at.len) {
		/* Not ours: die of it as if no handler were there. */
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	off = fault_at.off + (a - fault_at.base);
	do {
		num[k++] = (char)('0' + off % 10);
		off /= 10;
	} while (off != 0);
	put_str(msg, &n, sizeof(msg), fault_at.spec);
	put_str(msg, &n, sizeof(msg), ": cannot read the disk near byte ");
	while (k > 0 && n < sizeof(msg))
		msg[n++] = num[--k];
	put_str(msg, &n, sizeof(msg), " (an I/O error, or the source shrank "
		"while it was read)\n");
	(void)!write(2, msg, n);
	_exit(1);
}

static void unmap_window(struct bv_source *s)
{
	if ((uintptr_t)s->map == fault_at.base)
		fault_at.len = 0;
	munmap(s->map, s->map_len);
	s->map = NULL;
	s->map_len = 0;
}

/* Maps the window that starts at or below OFF and holds [OFF, OFF+LEN)
 * and SRC_WINDOW more (up to the end of the disk). */
static int map_window(struct bv_source *s, uint64_t off, size_t len)
{
	static int handler_set;
	uint64_t start = off & ~(uint64_t)(SRC_WIN_ALIGN - 1);
	uint64_t end = off + len + SRC_WINDOW;
	void *p;

	if (end > s->size)
		end = s->size;
	if (s->map != NULL)
		unmap_window(s);
	p = mmap(NULL, (size_t)(end - start), PROT_READ, MAP_SHARED, s->fd,
		 (off_t)start);
	if (p == MAP_FAILED)
		return src_fail(s, -errno, "cannot map bytes %llu to %llu: %s",
				(unsigned long long)start,
				(unsigned long long)end, strerror(errno));
	s->map = p;
	s->map_off = start;
	s->map_len = (size_t)(end - start);
	(void)madvise(p, s->map_len, MADV_SEQUENTIAL);
	if (!handler_set) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigbus;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, NULL) < 0)
			return src_fail(s, -errno, "sigaction: %s",
					strerror(errno));
		handler_set = 1;
	}
	fault_at.len = 0;
	fault_at.spec = s->spec;
	fault_at.base = (uintptr_t)p;
	fault_at.off = start;
	fault_at.len = s->map_len;
	return 0;
}

int bv_source_can_view(const struct bv_source *s)
{
	return s->kind != SRC_NBD;
}

int bv_source_pread(struct bv_source *s, void *buf, size_t len,
		    uint64_t off)
{
	size_t done = 0;

	if (s->kind == SRC_NBD)
		return -ENOTSUP;
	if (off > s->size || len > s->size - off)
		return -EINVAL;
	while (done < len) {
		ssize_t n = pread(s->fd, (uint8_t *)buf + done, len - done,
				  (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the source shrank since the open */
		done += (size_t)n;
	}
	return 0;
}

void bv_source_advise(struct bv_source *s, uint64_t off, uint64_t len)
{
	if (s->kind == SRC_NBD || off >= s->size)
		return;
	if (len > s->size - off)
		len = s->size - off;
	(void)posix_fadvise(s->fd, (off_t)off, (off_t)len,
			    POSIX_FADV_WILLNEED);
}

int bv_source_view(struct bv_source *s, uint64_t off, size_t len,
		   const uint8_t **p)
{
	int ret;

	*p = NULL;
	if (s->kind == SRC_NBD)
		return src_fail(s, -ENOTSUP, "an NBD export cannot be read "
				"in place");
	if ((ret = check_range(s, off, len, "a view")))
		return ret;
	if (len == 0 || len > BV_SOURCE_VIEW_MAX)
		return src_fail(s, -EINVAL, "a view of %zu bytes: 1 to %u "
				"bytes", len, BV_SOURCE_VIEW_MAX);
	if (s->map == NULL || off < s->map_off ||
	    off + len > s->map_off + s->map_len) {
		if ((ret = map_window(s, off, len)))
			return ret;
	}
	/* Ask for the rest of this window and the next one now, so the
	 * disk works while the caller does. */
	if (s->ahead < s->map_off + s->map_len) {
		uint64_t from = s->ahead > off ? s->ahead : off;
		uint64_t to = s->map_off + s->map_len + SRC_WINDOW;

		if (to > s->size)
			to = s->size;
		bv_source_advise(s, from, to - from);
		s->ahead = to;
	}
	*p = s->map + (off - s->map_off);
	/* Fill the page tables in one call rather than fault by fault; an
	 * unreadable page fails here, plainly, rather than as SIGBUS. */
	{
		uintptr_t a = (uintptr_t)*p & ~(uintptr_t)4095;
		size_t l = (size_t)((uintptr_t)*p + len - a);

		int e = madvise((void *)a, l, MADV_POPULATE_READ) < 0 ? errno
								     : 0;

		/* EINVAL, ENOSYS: a kernel before 5.14; faults do it. */
		if (e == EFAULT || e == EIO || e == EHWPOISON)
			return src_fail(s, -EIO, "cannot read %zu bytes at "
					"%llu: an I/O error, or the source "
					"shrank while it was read", len,
					(unsigned long long)off);
		if (e != 0 && e != EINVAL && e != ENOSYS && e != EINTR)
			return src_fail(s, -e, "cannot read %zu bytes at %llu: "
					"%s", len, (unsigned long long)off,
					strerror(e));
	}
	return 0;
}
