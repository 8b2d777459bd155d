/*
 * restore.c: writing a replica at an RP to a file, a device, a pipe or a
 * caller's target, in full or as a delta (bvault.h, "restore").
 *
 * The disk is cut into slices of SLICE_BYTES, and slices into windows of
 * WIN_BYTES, NWIN of which have a buffer at a time. Lanes (threads of the
 * restore's own, each with its own map iterator, ring and buffers) take
 * slices in disk order from one counter, never waiting for each other:
 * for its slice a lane reads the destination's bytes into the window (a
 * delta) and compares each chunk's digest with the map's, looks up the
 * map entries, then the chunk index entries of the chunks to fetch, reads
 * their records in runs (neighbours in a container as one O_DIRECT read:
 * bv_chunks_read_runs), checks them and decodes them straight into the
 * window (invariant 4). While one lane decodes, the reads of the others
 * are in flight. The lane that ends the last slice of a window hands it
 * to the writer thread, which writes its runs (io_uring, O_DIRECT where
 * it can) while later windows fill. So reading, decoding and writing
 * overlap, and memory is NWIN windows plus a slice per lane, whatever the
 * disk.
 *
 * A window buffer goes FREE -> FILLING (its first slice taken; it holds
 * window K) -> FULL (its last slice done) -> FREE (written). A lane with a
 * slice of window K waits until buffer K % NWIN is FILLING K, or FREE
 * with window K - NWIN written, which it then claims; lanes take slices
 * in order and hold one at a time, so every window before K is claimed
 * and its slices taken: the wait always ends.
 *
 * Each chunk of a window gets one action: SKIP (nothing to write: a hole
 * of a new file, or a chunk the destination already holds), DATA (write
 * the window's bytes) or ZERO (make it read as zeros: a punched hole, the
 * target's zero call, else the window's bytes, zeroed). The writer turns
 * runs of the same action into one call each.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define WIN_BYTES (16u << 20)  /* a multiple of every chunk size */
#define NWIN 3
#define SLICE_BYTES (2u << 20) /* what a lane takes at a time */
#define PIECE (1u << 20)       /* destination reads (delta) */
#define WPIECE (4u << 20)      /* destination writes */
#define MAX_IOS 256
#define PAGE 4096u

enum { ACT_SKIP = 0, ACT_DATA = 1, ACT_ZERO = 2,
       /* delta, before the fetch: */
       ACT_FETCH = 3,     /* differs from the map's digest */
       ACT_FETCH_CMP = 4, /* no digest: fetch and compare */
};

enum { DEST_FILE, DEST_BLOCK, DEST_SEQ, DEST_TARGET };

enum { WIN_FREE = 0, WIN_FILLING, WIN_FULL };

struct window {
	uint8_t *buf;  /* WIN_BYTES, page aligned */
	uint8_t *act;  /* one per chunk */
	uint8_t *src;  /* per chunk, bv_map_lookup's answer: 0, 1 or 2 */
	uint64_t k;    /* the window it holds (FILLING, FULL) or held */
	uint64_t off, len;
	int state;
	size_t pending; /* FILLING: slices not done yet */
};

/* A lane: one thread's map iterator, ring and buffers for a slice. */
struct lane {
	struct restore *R;
	pthread_t thread;
	int started;
	struct bv_kv_iter *it; /* over the replica's map */
	struct bv_ring *ring;
	uint8_t *scratch;  /* records of a slice, read in runs */
	size_t scratch_len;
	uint8_t *tmp;      /* delta: the fetched chunks of a slice */
	void **outs;
	struct bv_chunk_read *reads;
	bv_fp *fps;
	uint8_t (*digests)[16];
	uint32_t *need;    /* window chunks to fetch */
};

struct restore {
	bv_store *s;
	char name[BV_NAME_MAX + 1];
	char dest[512];
	uint64_t rid, version, size;
	uint64_t rp;         /* 0: the head */
	uint32_t cs;
	size_t nch;          /* chunks per window */
	size_t slice;        /* chunks per slice */
	size_t spw;          /* slices per window */
	uint64_t nwins, nslices;
	int kind, delta;
	int fd, dfd;         /* dfd: an O_DIRECT descriptor of FD, or -1 */
	const bv_restore_target *t;
	uint64_t bandwidth;
	struct bv_ring *ring; /* the calling thread's: the final sync */
	unsigned nlanes;
	struct lane *lanes;
	atomic_uint_fast64_t next; /* the next slice to take */
	/* Under MU: the windows' states, the counts, the first failure
	 * (with its message: messages are per thread). */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct window win[NWIN];
	int stop;
	int err;
	char msg[1024];
	uint64_t wdone;       /* disk bytes written, windows in order */
	bv_restore_result res;
	/* The writer's. */
	pthread_t writer;
	int writer_started;
	struct bv_ring *wring;
	struct bv_io ios[MAX_IOS];
	size_t nios;
	double t0;
	uint64_t paced;       /* bytes written, for the bandwidth */
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int all_zero(const uint8_t *p, size_t n)
{
	uint64_t acc = 0;
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		uint64_t a, b, c, d;
		memcpy(&a, p + i, 8);
		memcpy(&b, p + i + 8, 8);
		memcpy(&c, p + i + 16, 8);
		memcpy(&d, p + i + 24, 8);
		acc |= a | b | c | d;
		if (acc)
			return 0;
	}
	for (; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

/* ---- the writer ------------------------------------------------------ */

/* The failure RC of a target's callback (0 when it did not fail), as a
 * message naming the target, the operation and the bytes. */
static int target_rc(struct restore *R, int rc, const char *op, uint64_t len,
		     uint64_t off)
{
	if (rc > 0)
		rc = -EIO; /* a callback must return -errno: never success */
	if (rc)
		rc = bv_fail(rc, "%s: %s of %llu bytes at %llu: %s", R->dest,
			     op, (unsigned long long)len,
			     (unsigned long long)off, strerror(-rc));
	return rc;
}

/* Waits, before writing LEN more bytes, until the bytes written so far
 * are within the bandwidth. */
static void pace(struct restore *R, size_t len)
{
	double due, t;

	if (!R->bandwidth)
		return;
	due = R->t0 + (double)R->paced / (double)R->bandwidth;
	t = mono();
	if (due > t) {
		struct timespec ts;
		double d = due - t;
		ts.tv_sec = (time_t)d;
		ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	R->paced += len;
}

static int flush_ios(struct restore *R)
{
	int rc = 0;

	if (R->nios && (rc = bv_ring_run(R->wring, R->ios, R->nios))) {
		for (size_t i = 0; i < R->nios; i++)
			if (R->ios[i].res < 0) {
				rc = bv_fail(rc, "%s: write of %zu bytes at "
					     "%llu: %s", R->dest,
					     R->ios[i].len,
					     (unsigned long long)R->ios[i].off,
					     strerror(-rc));
				break;
			}
	}
	R->nios = 0;
	return rc;
}

static int write_all(struct restore *R, const uint8_t *p, size_t len)
{
	int rc = 0;

	while (len && !rc) {
		ssize_t k = write(R->fd, p, len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) {
			struct pollfd pf = { .fd = R->fd, .events = POLLOUT };
			(void)poll(&pf, 1, -1);
			continue;
		}
		if (k <= 0) {
			rc = bv_fail(k < 0 ? -errno : -EIO, "%s: write: %s",
				     R->dest, k < 0 ? strerror(errno) :
				     "nothing written");
			break;
		}
		p += k;
		len -= (size_t)k;
	}
	return rc;
}

/* Writes LEN bytes at P to disk offset OFF, as the destination takes
 * them. */
static int put_data(struct restore *R, const uint8_t *p, size_t len,
		    uint64_t off)
{
	size_t step = len;
	int rc = 0;

	if (R->bandwidth) {
		step = (size_t)(R->bandwidth / 8);
		step -= step % PAGE;
		if (step < PAGE)
			step = PAGE;
	}
	for (size_t done = 0; done < len && !rc;) {
		size_t n = len - done < step ? len - done : step;
		pace(R, n);
		switch (R->kind) {
		case DEST_SEQ:
			rc = write_all(R, p + done, n);
			break;
		case DEST_TARGET:
			rc = target_rc(R, R->t->write(R->t->ud, p + done, n,
						      off + done),
				       "write", n, off + done);
			break;
		default: {
			/* Whole pages through the O_DIRECT descriptor, a
			 * partial last page through FD. */
			size_t whole = R->dfd >= 0 && (off + done) % PAGE == 0 ?
				       n - n % PAGE : 0;
			/* Pieces of WPIECE, all in flight at once: the disk
			 * gets a queue to work on. */
			for (size_t w = 0; w < whole && !rc; w += WPIECE) {
				if (R->nios + 2 > MAX_IOS &&
				    (rc = flush_ios(R)))
					break;
				R->ios[R->nios++] = (struct bv_io){
					.fd = R->dfd, .op = BV_IO_WRITE,
					.buf = (void *)(p + done + w),
					.len = whole - w < WPIECE ? whole - w
								  : WPIECE,
					.off = off + done + w };
			}
			if (rc || (R->nios + 2 > MAX_IOS && (rc = flush_ios(R))))
				break;
			if (whole < n)
				R->ios[R->nios++] = (struct bv_io){
					.fd = R->fd, .op = BV_IO_WRITE,
					.buf = (void *)(p + done + whole),
					.len = n - whole,
					.off = off + done + whole };
			if (R->bandwidth)
				rc = flush_ios(R);
		}
		}
		done += n;
	}
	return rc;
}

static int put_zero(struct restore *R, const uint8_t *p, size_t len,
		    uint64_t off)
{
	int rc = 0;

	/* A target zeroes with its call; a file gets a hole; a block device
	 * holds anything, and is asked to zero the range (a write-zeroes
	 * command where the device has one: a loop device punches its
	 * file; else the kernel writes zeros). Without those, or when they
	 * fail, the zeros in P are written. */
	if (R->kind == DEST_TARGET && R->t->zero)
		rc = target_rc(R, R->t->zero(R->t->ud, off, len), "zero", len,
			       off);
	else if (!(R->kind == DEST_FILE &&
		   fallocate(R->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     (off_t)off, (off_t)len) == 0) &&
		 !(R->kind == DEST_BLOCK &&
		   fallocate(R->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			     (off_t)off, (off_t)len) == 0))
		rc = put_data(R, p, len, off);
	return rc;
}

static int write_window(struct restore *R, struct window *w)
{
	size_t nc = (w->len + R->cs - 1) / R->cs;
	int rc = 0;

	for (size_t j = 0; j < nc && !rc;) {
		size_t k = j + 1;
		while (k < nc && w->act[k] == w->act[j])
			k++;
		uint64_t p = (uint64_t)j * R->cs;
		uint64_t q = (uint64_t)k * R->cs;
		if (q > w->len)
			q = w->len;
		if (w->act[j] == ACT_DATA)
			rc = put_data(R, w->buf + p, q - p, w->off + p);
		else if (w->act[j] == ACT_ZERO)
			rc = put_zero(R, w->buf + p, q - p, w->off + p);
		j = k;
	}
	if (!rc)
		rc = flush_ios(R);
	R->nios = 0;
	return rc;
}

/* Records the first failure, with this thread's message, and stops
 * everything. */
static void fail_locked(struct restore *R, int rc)
{
	if (!R->err) {
		R->err = rc;
		snprintf(R->msg, sizeof R->msg, "%s", bv_last_error());
	}
	R->stop = 1;
	pthread_cond_broadcast(&R->cv);
}

static void *writer_main(void *arg)
{
	struct restore *R = arg;

	for (uint64_t k = 0; k < R->nwins; k++) {
		struct window *w = &R->win[k % NWIN];
		int rc;

		pthread_mutex_lock(&R->mu);
		while (!(w->state == WIN_FULL && w->k == k) && !R->stop)
			pthread_cond_wait(&R->cv, &R->mu);
		if (R->stop) {
			pthread_mutex_unlock(&R->mu);
			break;
		}
		pthread_mutex_unlock(&R->mu);
		rc = write_window(R, w);
		pthread_mutex_lock(&R->mu);
		if (rc) {
			fail_locked(R, rc);
		} else {
			w->state = WIN_FREE;
			R->wdone = w->off + w->len;
			pthread_cond_broadcast(&R->cv);
		}
		pthread_mutex_unlock(&R->mu);
		if (rc)
			break;
	}
	return NULL;
}

/* ---- reading: the lanes -------------------------------------------- */

/* Delta: the destination's bytes [P, Q) of window W, through lane L. */
static int read_dest(struct restore *R, struct lane *l, struct window *w,
		     uint64_t p, uint64_t q)
{
	struct bv_io ios[SLICE_BYTES / PIECE + BV_CHUNK_MAX / PIECE + 2];
	uint64_t whole = R->dfd >= 0 ? q - (q - p) % PAGE : p;
	size_t n = 0;
	int rc;

	if (R->kind == DEST_TARGET) {
		rc = target_rc(R, R->t->read(R->t->ud, w->buf + p, q - p,
					     w->off + p),
			       "read", q - p, w->off + p);
		goto out;
	}
	for (uint64_t o = p; o < whole; o += PIECE)
		ios[n++] = (struct bv_io){
			.fd = R->dfd, .op = BV_IO_READ, .buf = w->buf + o,
			.len = whole - o < PIECE ? whole - o : PIECE,
			.off = w->off + o };
	if (whole < q)
		ios[n++] = (struct bv_io){
			.fd = R->fd, .op = BV_IO_READ, .buf = w->buf + whole,
			.len = q - whole, .off = w->off + whole };
	if ((rc = bv_ring_run(l->ring, ios, n)))
		rc = bv_fail(rc, "%s: read at %llu: %s", R->dest,
			     (unsigned long long)(w->off + p), strerror(-rc));
out:
	return rc;
}

/* The action of chunk J of window W (I in its slice) before any fetch. */
static uint8_t decide(struct restore *R, struct lane *l, struct window *w,
		      size_t j, size_t i)
{
	uint8_t *c = w->buf + j * (size_t)R->cs;
	uint8_t d[16];
	uint8_t act;

	if (!R->delta && w->src[j]) {
		act = ACT_FETCH;
	} else if (!R->delta) {
		/* Zeros: a new file has a hole there already; the others
		 * get the window's bytes zeroed, to write if need be. */
		if (R->kind != DEST_FILE)
			memset(c, 0, R->cs);
		act = R->kind == DEST_FILE ? ACT_SKIP :
		      R->kind == DEST_SEQ ? ACT_DATA : ACT_ZERO;
	} else if (w->src[j] == 0) {
		act = all_zero(c, R->cs) ? ACT_SKIP : ACT_ZERO;
		if (act == ACT_ZERO)
			memset(c, 0, R->cs);
	} else if (w->src[j] == 2) {
		bv_chunk_digest(c, R->cs, d);
		act = memcmp(d, l->digests[i], 16) ? ACT_FETCH : ACT_SKIP;
	} else {
		act = ACT_FETCH_CMP;
	}
	return act;
}

/* Slice I of window W, start to end: the destination's bytes (delta),
 * the map entries, the actions, and the chunks to fetch, read and
 * decoded into the window. */
static int do_slice(struct restore *R, struct lane *l, struct window *w,
		    size_t i)
{
	size_t nc = (w->len + R->cs - 1) / R->cs;
	size_t a = i * R->slice, e = a + R->slice < nc ? a + R->slice : nc;
	uint64_t first = w->off / R->cs;
	size_t m = 0;
	int rc = 0;

	if (R->delta) {
		uint64_t q = (uint64_t)e * R->cs;
		if ((rc = read_dest(R, l, w, (uint64_t)a * R->cs,
				    q < w->len ? q : w->len)))
			goto out;
		/* The digest covers a whole chunk, zero-padded past the
		 * disk's end. */
		if (q > w->len)
			memset(w->buf + w->len, 0, q - w->len);
	}
	for (size_t j = a; j < e; j++) {
		size_t x = j - a;
		rc = bv_map_lookup(l->it, R->rid, first + j, R->version,
				   &l->fps[m], l->digests[x]);
		if (rc < 0) {
			rc = rc == BV_ECORRUPT ?
			     bv_fail(rc, "replica %s: map entry of chunk %llu "
				     "is damaged", R->name,
				     (unsigned long long)(first + j)) :
			     bv_fail_storage(rc, R->name);
			goto out;
		}
		w->src[j] = (uint8_t)rc;
		w->act[j] = decide(R, l, w, j, x);
		if (w->act[j] != ACT_FETCH && w->act[j] != ACT_FETCH_CMP)
			continue;
		l->need[m] = (uint32_t)j;
		l->outs[m] = R->delta ? l->tmp + m * (size_t)R->cs :
			     w->buf + j * (size_t)R->cs;
		m++;
	}
	rc = 0;
	if (m && (rc = bv_chunks_read_runs(R->s, l->ring, l->fps, l->outs, m,
					   R->cs, l->scratch, l->scratch_len,
					   l->reads, R->name))) {
		size_t k = bv_chunks_failed(l->reads, m);
		if (k < m) {
			uint64_t from = (first + l->need[k]) * R->cs;
			uint64_t to = from + R->cs < R->size ? from + R->cs :
				      R->size;
			rc = bv_fail_needs(rc, R->name, R->rp, from, to);
		}
		goto out;
	}
	for (size_t k = 0; k < m; k++) {
		size_t j = l->need[k];
		uint8_t *dst = w->buf + j * (size_t)R->cs;
		if (!R->delta) {
			w->act[j] = ACT_DATA;
			continue;
		}
		if (w->act[j] == ACT_FETCH_CMP &&
		    memcmp(dst, l->outs[k], R->cs) == 0) {
			w->act[j] = ACT_SKIP;
			continue;
		}
		memcpy(dst, l->outs[k], R->cs);
		w->act[j] = ACT_DATA;
	}
out:
	return rc;
}

/* Counts window W, all of whose slices are done (under MU). */
static void count_window(struct restore *R, const struct window *w)
{
	size_t nc = (w->len + R->cs - 1) / R->cs;

	for (size_t j = 0; j < nc; j++) {
		uint64_t b = (uint64_t)(j + 1) * R->cs > w->len ?
			     w->len - (uint64_t)j * R->cs : R->cs;
		if (w->src[j] == 0)
			R->res.zero_chunks++;
		if (w->act[j] == ACT_SKIP) {
			if (R->delta)
				R->res.skipped_chunks++;
			continue;
		}
		R->res.written_chunks++;
		R->res.written_bytes += b;
	}
}

static void *lane_main(void *arg)
{
	struct lane *l = arg;
	struct restore *R = l->R;

	for (;;) {
		uint64_t g = atomic_fetch_add(&R->next, 1);
		uint64_t k = g / R->spw;
		struct window *w = &R->win[k % NWIN];
		int rc;

		if (g >= R->nslices)
			break;
		pthread_mutex_lock(&R->mu);
		while (!R->stop && !(w->state == WIN_FILLING && w->k == k)) {
			if (w->state == WIN_FREE &&
			    (k < NWIN || w->k == k - NWIN)) {
				w->state = WIN_FILLING;
				w->k = k;
				w->off = k * (uint64_t)WIN_BYTES;
				w->len = R->size - w->off < WIN_BYTES ?
					 R->size - w->off : WIN_BYTES;
				w->pending = (((w->len + R->cs - 1) / R->cs) +
					      R->slice - 1) / R->slice;
				break;
			}
			pthread_cond_wait(&R->cv, &R->mu);
		}
		if (R->stop) {
			pthread_mutex_unlock(&R->mu);
			break;
		}
		pthread_mutex_unlock(&R->mu);
		rc = do_slice(R, l, w, (size_t)(g % R->spw));
		pthread_mutex_lock(&R->mu);
		if (rc) {
			fail_locked(R, rc);
		} else if (--w->pending == 0) {
			count_window(R, w);
			w->state = WIN_FULL;
			pthread_cond_broadcast(&R->cv);
		}
		pthread_mutex_unlock(&R->mu);
		if (rc)
			break;
	}
	return NULL;
}

/* ---- set-up ------------------------------------------------------------ */

static void restore_free(struct restore *R)
{
	for (int i = 0; i < NWIN; i++) {
		if (R->win[i].buf)
			munmap(R->win[i].buf, WIN_BYTES);
		free(R->win[i].act);
		free(R->win[i].src);
	}
	for (unsigned i = 0; R->lanes && i < R->nlanes; i++) {
		struct lane *l = &R->lanes[i];
		bv_kv_iter_free(l->it);
		bv_ring_free(l->ring);
		free(l->scratch);
		free(l->tmp);
		free(l->outs);
		free(l->reads);
		free(l->fps);
		free(l->digests);
		free(l->need);
	}
	free(R->lanes);
	bv_ring_free(R->ring);
	bv_ring_free(R->wring);
	if (R->dfd >= 0)
		close(R->dfd);
	pthread_mutex_destroy(&R->mu);
	pthread_cond_destroy(&R->cv);
}

/* The lanes' and windows' memory, rings and iterators (restore_free
 * frees what was made). */
static int restore_alloc(struct restore *R)
{
	size_t rec = bv_rec_size(R->cs);
	int rc = -ENOMEM;

	R->nch = WIN_BYTES / R->cs;
	R->slice = SLICE_BYTES / R->cs ? SLICE_BYTES / R->cs : 1;
	R->spw = R->nch / R->slice;
	R->nwins = (R->size + WIN_BYTES - 1) / WIN_BYTES;
	R->nslices = R->size ? (R->nwins - 1) * R->spw +
		     ((R->size - (R->nwins - 1) * (uint64_t)WIN_BYTES +
		       R->cs - 1) / R->cs + R->slice - 1) / R->slice : 0;
	/* Twice as many lanes as the store's pool has threads, and one: a
	 * lane waits for its reads, then decodes, and while some wait,
	 * others decode; more reads are in flight at once. */
	R->nlanes = 2 * bv_pool_size(R->s->pool) + 1;
	for (int i = 0; i < NWIN; i++) {
		/* Mapped and populated at once: faulting its pages in one by
		 * one under the decoder cost a tenth of a cold restore. */
		void *p = mmap(NULL, WIN_BYTES, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1,
			       0);
		if (p == MAP_FAILED)
			goto nomem;
		R->win[i].buf = p;
		if (!(R->win[i].act = calloc(R->nch, 1)) ||
		    !(R->win[i].src = calloc(R->nch, 1)))
			goto nomem;
	}
	if (!(R->lanes = calloc(R->nlanes, sizeof *R->lanes)))
		goto nomem;
	for (unsigned i = 0; i < R->nlanes; i++) {
		struct lane *l = &R->lanes[i];
		l->R = R;
		l->scratch_len = R->slice * (rec + 2 * PAGE) + (1u << 20);
		if (posix_memalign((void **)&l->scratch, PAGE, l->scratch_len) ||
		    (R->delta && posix_memalign((void **)&l->tmp, PAGE,
						R->slice * (size_t)R->cs)) ||
		    !(l->outs = calloc(R->slice, sizeof *l->outs)) ||
		    !(l->reads = calloc(R->slice, sizeof *l->reads)) ||
		    !(l->fps = calloc(R->slice, sizeof *l->fps)) ||
		    !(l->digests = calloc(R->slice, sizeof *l->digests)) ||
		    !(l->need = calloc(R->slice, sizeof *l->need)))
			goto nomem;
		if ((rc = bv_map_iter(R->s, R->rid, &l->it))) {
			rc = bv_fail_storage(rc, R->name);
			goto out;
		}
		if ((rc = bv_ring_new(64, &l->ring)))
			goto ring;
	}
	if ((rc = bv_ring_new(64, &R->ring)) ||
	    (rc = bv_ring_new(MAX_IOS, &R->wring)))
		goto ring;
	rc = 0;
	goto out;
ring:
	rc = bv_fail(rc, "restore %s: io_uring: %s", R->dest, strerror(-rc));
	goto out;
nomem:
	rc = bv_fail(-ENOMEM, "restore %s: out of memory for its buffers",
		     R->dest);
out:
	return rc;
}

/* The whole restore, once the destination is known and checked: the
 * lanes and the writer run, and this thread tells PROGRESS as windows
 * are written. */
static int restore_run(struct restore *R, bv_progress_fn progress, void *ud)
{
	uint64_t told = UINT64_MAX;
	int rc;

	if ((rc = restore_alloc(R)))
		goto out;
	R->t0 = mono();
	if ((rc = pthread_create(&R->writer, NULL, writer_main, R))) {
		rc = bv_fail(-rc, "restore %s: cannot start its writer: %s",
			     R->dest, strerror(rc));
		goto out;
	}
	R->writer_started = 1;
	for (unsigned i = 0; i < R->nlanes; i++) {
		struct lane *l = &R->lanes[i];
		if ((rc = pthread_create(&l->thread, NULL, lane_main, l))) {
			rc = bv_fail(-rc, "restore %s: cannot start its "
				     "threads: %s", R->dest, strerror(rc));
			pthread_mutex_lock(&R->mu);
			fail_locked(R, rc);
			pthread_mutex_unlock(&R->mu);
			break;
		}
		l->started = 1;
	}
	pthread_mutex_lock(&R->mu);
	while (!R->stop && R->wdone < R->size) {
		if (R->wdone != told && progress) {
			uint64_t d = told = R->wdone;
			pthread_mutex_unlock(&R->mu);
			progress(ud, d, R->size);
			pthread_mutex_lock(&R->mu);
			continue;
		}
		pthread_cond_wait(&R->cv, &R->mu);
	}
	pthread_mutex_unlock(&R->mu);
	for (unsigned i = 0; i < R->nlanes; i++)
		if (R->lanes[i].started)
			pthread_join(R->lanes[i].thread, NULL);
	pthread_join(R->writer, NULL);
	R->writer_started = 0;
	if (R->err) {
		rc = bv_fail(R->err, "%s", R->msg);
		goto out;
	}
	if (R->kind == DEST_FILE || R->kind == DEST_BLOCK) {
		if ((rc = bv_ring_fdatasync(R->ring, R->fd)))
			rc = bv_fail(rc, "%s: fdatasync: %s", R->dest,
				     strerror(-rc));
	} else if (R->kind == DEST_TARGET && R->t->flush) {
		if ((rc = R->t->flush(R->t->ud)))
			rc = bv_fail(rc < 0 ? rc : -EIO, "%s: flush: %s",
				     R->dest, strerror(rc < 0 ? -rc : EIO));
	}
	if (!rc && progress)
		progress(ud, R->size, R->size);
out:
	return rc;
}

/* Fills R from the RP and the options: everything but the destination. */
static int restore_init(struct restore *R, bv_store *s, const char *replica,
			uint64_t rp, const bv_restore_opts *o)
{
	struct bv_rrec rr;
	uint64_t rp_out;
	int rc;

	memset(R, 0, sizeof *R);
	R->s = s;
	R->fd = -1;
	R->dfd = -1;
	atomic_init(&R->next, 0);
	pthread_mutex_init(&R->mu, NULL);
	pthread_cond_init(&R->cv, NULL);
	if (o) {
		R->delta = o->delta != 0;
		R->bandwidth = o->bandwidth;
	}
	if ((rc = bv_replica_at(s, replica, rp, &rr, &R->version, &R->size,
				&rp_out)) == 0) {
		snprintf(R->name, sizeof R->name, "%s", replica);
		R->rp = rp_out;
		R->rid = rr.rid;
		R->cs = rr.chunk_size;
		R->res.size = R->size;
		R->res.chunks = (R->size + R->cs - 1) / R->cs;
	}
	return rc;
}

int bv_restore_fd(bv_store *s, const char *replica, uint64_t rp, int fd,
		  const bv_restore_opts *o, bv_restore_result *out)
{
	struct restore R;
	struct stat st;
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = restore_init(&R, s, replica, rp, o)))
		goto out;
	if (o && o->name)
		snprintf(R.dest, sizeof R.dest, "%s", o->name);
	else
		snprintf(R.dest, sizeof R.dest, "fd %d", fd);
	R.fd = fd;
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = bv_fail(BV_EINVAL, "%s: not an open file descriptor",
			     R.dest);
		goto out;
	}
	R.kind = S_ISREG(st.st_mode) ? DEST_FILE :
		 S_ISBLK(st.st_mode) ? DEST_BLOCK : DEST_SEQ;
	if (R.kind == DEST_FILE && (fcntl(fd, F_GETFL) & O_APPEND)) {
		/* Every write would land at the end, not at its offset. */
		rc = bv_fail(BV_EINVAL, "%s: opened for appending (>>): a "
			     "restore writes at the disk's offsets", R.dest);
		goto out;
	}
	if (R.kind == DEST_SEQ && R.delta) {
		rc = bv_fail(BV_EINVAL, "%s: a delta restore reads the "
			     "destination, and this one (a pipe, socket or "
			     "character device) cannot be read back", R.dest);
		goto out;
	}
	if (R.kind == DEST_BLOCK) {
		uint64_t dev = 0;
		if (ioctl(fd, BLKGETSIZE64, &dev) < 0) {
			rc = bv_fail(-errno, "%s: cannot get the device's size: "
				     "%s", R.dest, strerror(errno));
			goto out;
		}
		if (dev < R.size) {
			rc = bv_fail(BV_ERANGE, "%s: device holds %llu bytes, "
				     "replica %s needs %llu", R.dest,
				     (unsigned long long)dev, replica,
				     (unsigned long long)R.size);
			goto out;
		}
	}
	if (R.kind == DEST_FILE) {
		/* Without delta the old content goes (what was not written
		 * then reads as zeros: holes); with it, only a wrong size. */
		int cut = !R.delta && ftruncate(fd, 0) < 0;
		if (cut || ((!R.delta || (uint64_t)st.st_size != R.size) &&
			    ftruncate(fd, (off_t)R.size) < 0)) {
			rc = bv_fail(-errno, "%s: cannot size it to %llu "
				     "bytes: %s", R.dest,
				     (unsigned long long)R.size,
				     strerror(errno));
			goto out;
		}
	}
	/* Backup data passes through once: whole pages go through a second,
	 * O_DIRECT descriptor where the file system takes it (the copy into
	 * the page cache and its writeback cost more than the restore). */
	if (R.kind != DEST_SEQ && !getenv("BV_NO_DIRECT")) {
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		R.dfd = open(path, (R.delta ? O_RDWR : O_WRONLY) | O_DIRECT |
			     O_CLOEXEC);
	}
	rc = restore_run(&R, o ? o->progress : NULL, o ? o->ud : NULL);
	if (!rc && out)
		*out = R.res;
out:
	restore_free(&R);
	return rc;
}

int bv_restore_to(bv_store *s, const char *replica, uint64_t rp,
		  const bv_restore_target *t, const bv_restore_opts *o,
		  bv_restore_result *out)
{
	struct restore R;
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = restore_init(&R, s, replica, rp, o)))
		goto out;
	snprintf(R.dest, sizeof R.dest, "%s", t && t->name ? t->name :
		 "restore target");
	if (!t || !t->write) {
		rc = bv_fail(BV_EINVAL, "%s: a target needs a write function",
			     R.dest);
		goto out;
	}
	if (R.delta && !t->read) {
		rc = bv_fail(BV_EINVAL, "%s: a delta restore reads the target, "
			     "and it has no read function", R.dest);
		goto out;
	}
	if (t->size < R.size) {
		rc = bv_fail(BV_ERANGE, "%s: holds %llu bytes, replica %s "
			     "needs %llu", R.dest,
			     (unsigned long long)t->size, replica,
			     (unsigned long long)R.size);
		goto out;
	}
	R.kind = DEST_TARGET;
	R.t = t;
	rc = restore_run(&R, o ? o->progress : NULL, o ? o->ud : NULL);
	if (!rc && out)
		*out = R.res;
out:
	restore_free(&R);
	return rc;
}
