/*
 * bvault-agent: runs on a protected host and sends the changes of one or
 * more disks to bvaultd (tools/PROTOCOL.md), as one atomic recovery point
 * of their group.
 *
 * Change sources (one per run):
 *   --full          everything that may hold data (holes skipped; the
 *                   replica's holes are zeroed when it exists already);
 *   --bitmap NAME   the ranges a QEMU dirty bitmap marks, read from the
 *                   NBD export's qemu:dirty-bitmap:NAME context;
 *   --extents FILE  "OFFSET LENGTH" lines from any change tracker.
 *   --compare       the consistency check against the replica's digests.
 * Reads go through the source module (tools/source.h): files and block
 * devices in place (a mapped window, read ahead), NBD exports with
 * several commands in flight; whole 64 KiB blocks of zeros go as ZERO
 * records, not bytes.
 * Any failure aborts the session: nothing of this run is committed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/stat.h>

#include <sodium.h>

#include "bvault.h"
#include "imgfmt.h"
#include "netclient.h"
#include "progress.h"
#include "proto.h"
#include "source.h"

#define MAX_DISKS 64
#define PIECE (4u << 20)         /* one DATA frame at most */
#define READ_BATCH 2             /* pieces read at once */
#define ZBLOCK 65536u            /* zero test unit */
#define FILE_AHEAD (64u << 20)   /* files, devices: read ahead this far */

enum { MODE_NONE, MODE_FULL, MODE_BITMAP, MODE_EXTENTS, MODE_COMPARE };
#define CMP_BLOCK 4096u          /* chunks per DIGESTS query */

struct disk {
	char name[64];
	const char *spec;
	struct bv_source *src;
	uint32_t slot;
	uint64_t size;            /* the source's size */
	uint64_t rep_size;        /* the replica's at its head (0: new) */
	uint64_t base;            /* the RP this run starts from */
	int exists;
	int in_place;             /* a file or device: bv_source_pread, and
				   * bv_source_view for a few chunks */
	uint64_t ahead;           /* send_file_range: where the read-ahead
				   * it asked for ends */
	/* What this run sent of it (-v, the progress bar). */
	uint64_t extents;         /* runs of changes (differing chunks) */
	uint64_t data, zero;      /* bytes sent as DATA, as ZERO */
	uint64_t unchanged;       /* --compare: chunks found the same */
	uint64_t pos;             /* the end of the furthest change sent */
};

static struct {
	struct nc nc;
	struct nc_tls tls;     /* --fingerprint, --ca, --no-tls */
	const char *server, *unix_path, *name, *secret_file, *key_file;
	const char *bitmap, *extents_file, *label, *base_arg;
	int mode, consistency, no_rp, verbose;
	unsigned nbd_timeout;     /* seconds; 0: the source's default */
	struct disk disks[MAX_DISKS];
	int ndisks;
	uint8_t *rbuf;            /* READ_BATCH pieces */
	uint64_t sent_data, sent_zero;
	uint64_t cmp_chunks, cmp_differ;  /* --compare */
	double t_start;
	uint64_t bandwidth;       /* --bandwidth: bytes per second, 0: none */
	struct progress pr;       /* the disk being sent's, on stderr */
} A;

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;
	progress_end(&A.pr); /* the message on a line of its own */
	fprintf(stderr, "bvault-agent: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* A usage error: the message, a pointer to --help, exit 2 (as bvault). */
__attribute__((format(printf, 1, 2), noreturn))
static void usage_die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "bvault-agent: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'bvault-agent --help'.\n");
	exit(2);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the connection (netclient.h) ------------------------------------------------ */

static void net_check(int rc)
{
	if (rc < 0)
		die("%s", A.nc.err);
}

/* Sends a frame of TYPE whose payload is at A.nc.frame + BVP_HDR. */
static void send_frame(uint8_t type, size_t len)
{
	net_check(nc_send(&A.nc, type, len));
}

/* Waits for the answer to a request: OK's payload into OUT (its first
 * CAP bytes; its whole length returned), or ERROR: CODE and MSG set, -1
 * returned. */
static long get_answer(uint8_t *out, size_t cap, uint16_t *code, char *msg,
		       size_t msgcap)
{
	long n = nc_answer(&A.nc, out, cap);
	if (n == NC_ERROR) {
		*code = A.nc.code;
		snprintf(msg, msgcap, "%s", A.nc.err);
		return -1;
	}
	net_check((int)(n < 0 ? -1 : 0));
	return n;
}

/* A request that must succeed; its answer's payload into OUT. */
static long must_answer(uint8_t *out, size_t cap, const char *what)
{
	uint16_t code = 0;
	char msg[1300];
	long n = get_answer(out, cap, &code, msg, sizeof msg);
	if (n >= 0)
		return n;
	/* The server's message names the object already. */
	if (code == BVP_E_BASE)
		die("%s\nThe replica has moved on from the base this run "
		    "starts from: a consistency check is needed (run "
		    "bvault-agent --compare, or --full).", msg);
	die("%s (%s)", msg, what);
}

/* ---- sending changes ------------------------------------------------------------ */

/* Counts LEN bytes of D at OFF as sent, and redraws the bar: --full and
 * --compare go through the whole disk in order, so their bar shows how
 * far (of its size); the others' how much was sent (of an unknown
 * total). */
static void sent(struct disk *d, uint64_t off, uint64_t len, int zero)
{
	if (zero)
		d->zero += len;
	else
		d->data += len;
	if (off + len > d->pos)
		d->pos = off + len;
	if (A.mode == MODE_FULL || A.mode == MODE_COMPARE)
		progress_cb(&A.pr, d->pos, d->size);
	else
		progress_cb(&A.pr, d->data + d->zero, 0);
}

static void send_zero(struct disk *d, uint64_t off, uint64_t len)
{
	net_check(nc_send_zero(&A.nc, d->slot, off, len));
	A.sent_zero += len;
	sent(d, off, len, 1);
}

static int all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t z[ZBLOCK];
	while (n) {
		size_t k = n < ZBLOCK ? n : ZBLOCK;
		if (memcmp(p, z, k))
			return 0;
		p += k;
		n -= k;
	}
	return 1;
}

/* Sends BUF (LEN bytes of disk D at OFF): runs of whole zero blocks as
 * ZERO records, the rest as DATA frames. */
static void send_piece(struct disk *d, const uint8_t *buf, uint64_t off,
		       size_t len)
{
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		int zero = all_zero(buf + i, len - i < ZBLOCK ? len - i :
					     ZBLOCK);
		/* One DATA frame at most per step. */
		while (j < len && j - i < PIECE) {
			size_t k = len - j < ZBLOCK ? len - j : ZBLOCK;
			if (all_zero(buf + j, k) != zero)
				break;
			j += k;
		}
		if (zero) {
			send_zero(d, off + i, j - i);
		} else {
			net_check(nc_send_data(&A.nc, d->slot, off + i,
					       buf + i, j - i));
			A.sent_data += j - i;
			sent(d, off + i, j - i, 0);
		}
		i = j;
	}
}

/* Pieces of extents waiting to be read, in order. */
struct pending {
	struct disk *d;
	struct bv_source_read r[READ_BATCH];
	int n;
};

/* Reads the N requests R of disk D (their buffers from A.rbuf) at once. */
static void read_pieces(struct disk *d, struct bv_source_read *r, int n)
{
	for (int i = 0; i < n; i++)
		r[i].buf = A.rbuf + (size_t)i * PIECE;
	if (bv_source_read_many(d->src, r, (size_t)n))
		die("reading %s: %s", d->spec, bv_source_error(d->src));
}

/* The bytes of request R of disk D, in place (valid until the next view
 * of D): no copy out of the page cache. */
static const uint8_t *view_piece(struct disk *d, const struct bv_source_read *r)
{
	const uint8_t *p;
	if (bv_source_view(d->src, r->off, r->len, &p))
		die("reading %s: %s", d->spec, bv_source_error(d->src));
	return p;
}

/* Dies of ERR (-errno of bv_source_pread) reading D at byte OFF. */
static void die_reading(const struct disk *d, uint64_t off, int err)
{
	die("reading %s at byte %" PRIu64 ": %s", d->spec, off,
	    err == -EIO ? "an I/O error, or the source shrank while it was "
	    "read" : strerror(-err));
}

/* Sends [OFF, OFF + LEN) of file or device D, copied a PIECE at a time
 * into a buffer of our own (A.rbuf) and sent from there. That costs less
 * than sending from a view of the page cache, whose every page costs a
 * TLB miss, twice (the zero test, then the socket's copy), where a miss
 * is dear (some virtual machines): on one such, 2 GiB took 0.6-0.7 s of
 * the agent's CPU this way and 1.5-2 s from views. Pieces of a PIECE
 * make DATA frames large enough for the server to hash them in place.
 * The source is read ahead FILE_AHEAD bytes (cold caches). */
static void send_file_range(struct disk *d, uint64_t off, uint64_t len)
{
	uint8_t *buf = A.rbuf;

	while (len) {
		size_t n = len < PIECE ? (size_t)len : PIECE;
		/* Half the read-ahead used up: ask for more. Before where it
		 * was last asked (extents out of order) or past its end: ask
		 * anew from here. */
		int back = off + FILE_AHEAD < d->ahead;
		if (back || off + FILE_AHEAD / 2 > d->ahead) {
			uint64_t from = back || d->ahead < off ? off : d->ahead;
			bv_source_advise(d->src, from, off + FILE_AHEAD - from);
			d->ahead = off + FILE_AHEAD;
		}
		int rc = bv_source_pread(d->src, buf, n, off);
		if (rc)
			die_reading(d, off, rc);
		send_piece(d, buf, off, n);
		off += n;
		len -= n;
	}
}

static void flush_reads(struct pending *pq)
{
	struct disk *d = pq->d;
	if (!pq->n)
		return;
	if (d->in_place) {
		for (int i = 0; i < pq->n; i++)
			send_file_range(d, pq->r[i].off, pq->r[i].len);
	} else {
		read_pieces(d, pq->r, pq->n);
		for (int i = 0; i < pq->n; i++)
			send_piece(d, pq->r[i].buf, pq->r[i].off,
				   pq->r[i].len);
	}
	pq->n = 0;
}

struct walk {
	struct disk *d;
	struct pending pq;
	uint64_t pos;            /* --full: end of what was handled */
};

/* Reads and sends [OFF, OFF+LEN) of the walk's disk in pieces. */
static int send_range(void *ud, uint64_t off, uint64_t len)
{
	struct walk *w = ud;
	/* Whole 512-byte sectors: bitmaps and file systems give more. */
	uint64_t end = (off + len + 511) & ~(uint64_t)511;
	off &= ~(uint64_t)511;
	if (end > w->d->size)
		end = w->d->size;
	w->d->extents++;
	if (w->d->exists && A.mode == MODE_FULL && off > w->pos)
		send_zero(w->d, w->pos, off - w->pos);
	for (uint64_t o = off; o < end;) {
		size_t n = end - o < PIECE ? (size_t)(end - o) : PIECE;
		if (w->pq.n == READ_BATCH)
			flush_reads(&w->pq);
		struct bv_source_read *r = &w->pq.r[w->pq.n];
		r->len = n;
		r->off = o;
		r->res = 0;
		w->pq.n++;
		o += n;
	}
	if (end > w->pos)
		w->pos = end;
	return 0;
}

static void send_extents_file(struct walk *w)
{
	FILE *f = fopen(A.extents_file, "r");
	char line[256];
	unsigned ln = 0;
	if (!f)
		die("--extents %s: %s", A.extents_file, strerror(errno));
	while (fgets(line, sizeof line, f)) {
		uint64_t off, len;
		char extra;
		ln++;
		char *p = line + strspn(line, " \t");
		if (*p == '#' || *p == '\n' || *p == 0)
			continue;
		if (sscanf(p, "%" SCNu64 " %" SCNu64 " %c", &off, &len,
			   &extra) != 2)
			die("--extents %s line %u: not \"OFFSET LENGTH\"",
			    A.extents_file, ln);
		if (off > w->d->size || len > w->d->size - off)
			die("--extents %s line %u: %" PRIu64 "+%" PRIu64
			    " runs past the end of %s (%" PRIu64 " bytes)",
			    A.extents_file, ln, off, len, w->d->spec,
			    w->d->size);
		if (len)
			send_range(w, off, len);
	}
	fclose(f);
}

/* Asks for the server's digests of chunks FIRST.. (at most N) of D at
 * RP; the answer is read by digests_answer(). */
static void digests_ask(struct disk *d, uint64_t rp, uint64_t first,
			uint32_t n)
{
	uint8_t *p = A.nc.frame + BVP_HDR;
	size_t nl = strlen(d->name);
	bvp_put64(p, rp);
	bvp_put64(p + 8, first);
	bvp_put32(p + 16, n);
	p[20] = (uint8_t)nl;
	memcpy(p + 21, d->name, nl);
	send_frame(BVP_DIGESTS, 21 + nl);
}

/* Reads the answer to the oldest digests_ask() of at most N chunks into
 * ANS; sets *CS and *RSIZE (chunk size, replica size); returns how many
 * chunks it covers. */
static uint32_t digests_answer(struct disk *d, uint32_t n, uint8_t *ans,
			       size_t cap, uint32_t *cs, uint64_t *rsize)
{
	char what[128];
	snprintf(what, sizeof what, "digests of replica %s", d->name);
	long len = must_answer(ans, cap, what);
	if (len < 16)
		die("%s: a malformed answer", what);
	*cs = bvp_get32(ans);
	*rsize = bvp_get64(ans + 4);
	uint32_t got = bvp_get32(ans + 12);
	if (got > n || (size_t)len != 16 + (size_t)got * 17 || *cs == 0 ||
	    (*cs & (*cs - 1)) || *cs > PIECE)
		die("%s: a malformed answer", what);
	return got;
}

/* Whether chunk bytes BUF (LEN, padded with zeros to CS) match what the
 * server said of that chunk (ANS: kind then digest). */
static int chunk_same(const uint8_t *buf, size_t len, uint32_t cs,
		      const uint8_t *ans, uint8_t *pad)
{
	if (ans[0] == 0)
		return all_zero(buf, len);
	if (ans[0] != 1)
		return 0; /* digest unknown: send it */
	const uint8_t *src = buf;
	if (len < cs) {
		memcpy(pad, buf, len);
		memset(pad + len, 0, cs - len);
		src = pad;
	}
	uint8_t d[16];
	bv_chunk_digest(src, cs, d);
	return memcmp(d, ans + 1, 16) == 0;
}

/* --compare on a file or block device: a pool of hashing threads (one
 * per core, up to CMP_THREADS) runs through the source from the start,
 * CMP_PIECE bytes at a time, each copied into a buffer of the thread's
 * own that stays in the CPU's cache (bv_source_pread), and fills the
 * digests of up to CMP_RING blocks ahead of the main thread. The main
 * thread meanwhile talks with the server: it takes a block's digests
 * from it, waits until the pool has hashed that block, sends what
 * differs, and gives the block's slot back. Hashing needs nothing from
 * the server, so the pool never waits for it. */
#define CMP_THREADS 4
#define CMP_PIECE (256u << 10)
#define CMP_RING 2

static struct {
	uint8_t zero[CMP_RING][CMP_BLOCK];    /* the chunk reads as zeros */
	uint8_t dig[CMP_RING][CMP_BLOCK][16]; /* else its digest */
} H;

static struct {
	pthread_mutex_t lock;
	pthread_cond_t more;       /* to the threads: next moved, or stop */
	pthread_cond_t hashed;     /* to the main thread: a block is done */
	pthread_t th[CMP_THREADS];
	int nth;
	struct disk *d;
	uint32_t cs;
	uint64_t chunks;           /* of the source */
	uint64_t next;             /* the next chunk to hash */
	uint64_t limit;            /* chunks below it may be hashed */
	uint32_t done[CMP_RING];   /* chunks hashed of each slot's block */
	int err;                   /* -errno of a failed read */
	uint64_t err_off;
	int stop;
} P = { .lock = PTHREAD_MUTEX_INITIALIZER,
	.more = PTHREAD_COND_INITIALIZER,
	.hashed = PTHREAD_COND_INITIALIZER };

static void *cmp_thread(void *arg)
{
	size_t bufsz = P.cs > CMP_PIECE ? P.cs : CMP_PIECE;
	uint8_t *buf = aligned_alloc(4096, bufsz);
	uint32_t cs = P.cs;
	uint32_t per = CMP_PIECE > cs ? CMP_PIECE / cs : 1;

	(void)arg;
	pthread_mutex_lock(&P.lock);
	if (!buf && !P.err) {
		P.err = -ENOMEM;
		pthread_cond_broadcast(&P.hashed);
	}
	while (buf) {
		while (!P.stop && !P.err && P.next >= P.limit)
			pthread_cond_wait(&P.more, &P.lock);
		if (P.stop || P.err)
			break;
		/* A piece never spans two blocks: each block's count of
		 * hashed chunks is then exact. */
		uint64_t c = P.next, bend = (c / CMP_BLOCK + 1) * CMP_BLOCK;
		uint32_t n = per;
		if (n > bend - c)
			n = (uint32_t)(bend - c);
		if (n > P.limit - c)
			n = (uint32_t)(P.limit - c);
		P.next = c + n;
		pthread_mutex_unlock(&P.lock);

		int slot = (int)(c / CMP_BLOCK % CMP_RING);
		uint32_t i = (uint32_t)(c % CMP_BLOCK);
		uint64_t off = c * cs, len = (uint64_t)n * cs;
		if (i == 0) /* the block after this one, read ahead (cold
			     * caches) */
			bv_source_advise(P.d->src, off + (uint64_t)CMP_BLOCK * cs,
					 (uint64_t)CMP_BLOCK * cs);
		if (len > P.d->size - off)
			len = P.d->size - off;
		int rc = bv_source_pread(P.d->src, buf, (size_t)len, off);
		if (!rc) {
			/* A short last chunk counts as padded with zeros. */
			if (len < (uint64_t)n * cs)
				memset(buf + len, 0,
				       (size_t)((uint64_t)n * cs - len));
			for (uint32_t k = 0; k < n; k++) {
				const uint8_t *p = buf + (size_t)k * cs;
				H.zero[slot][i + k] = (uint8_t)all_zero(p, cs);
				if (!H.zero[slot][i + k])
					bv_chunk_digest(p, cs,
							H.dig[slot][i + k]);
			}
		}
		pthread_mutex_lock(&P.lock);
		if (rc && !P.err) {
			P.err = rc;
			P.err_off = off;
		}
		P.done[slot] += n;
		/* The main thread waits for whole blocks (or an error):
		 * waking it for each piece would cost more than the
		 * hashing. */
		uint64_t b0 = c - i;
		uint64_t nb = P.chunks - b0 < CMP_BLOCK ? P.chunks - b0 :
							  CMP_BLOCK;
		if (P.err || P.done[slot] == nb)
			pthread_cond_signal(&P.hashed);
	}
	pthread_mutex_unlock(&P.lock);
	free(buf);
	return NULL;
}

/* Starts the pool on D, of chunk size CS. */
static void pool_start(struct disk *d, uint32_t cs)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	P.nth = cores < 1 ? 1 : cores > CMP_THREADS ? CMP_THREADS : (int)cores;
	P.d = d;
	P.cs = cs;
	P.chunks = (d->size + cs - 1) / cs;
	P.next = 0;
	P.limit = P.chunks < (uint64_t)CMP_RING * CMP_BLOCK ?
			  P.chunks : (uint64_t)CMP_RING * CMP_BLOCK;
	memset(P.done, 0, sizeof P.done);
	P.err = 0;
	P.stop = 0;
	for (int t = 0; t < P.nth; t++)
		if (pthread_create(&P.th[t], NULL, cmp_thread, NULL))
			die("cannot start a thread to hash with");
}

static void pool_stop(void)
{
	pthread_mutex_lock(&P.lock);
	P.stop = 1;
	pthread_cond_broadcast(&P.more);
	pthread_mutex_unlock(&P.lock);
	for (int t = 0; t < P.nth; t++)
		pthread_join(P.th[t], NULL);
	P.nth = 0;
}

/* Waits until the block at chunk B (NB chunks) is hashed into its slot
 * of H, and returns the slot. */
static int pool_wait(uint64_t b, uint32_t nb)
{
	int slot = (int)(b / CMP_BLOCK % CMP_RING);

	pthread_mutex_lock(&P.lock);
	while (!P.err && P.done[slot] < nb)
		pthread_cond_wait(&P.hashed, &P.lock);
	int err = P.err;
	pthread_mutex_unlock(&P.lock);
	if (err) {
		pool_stop();
		die_reading(P.d, P.err_off, err);
	}
	return slot;
}

/* Gives the slot of the block at chunk B back: the pool may hash the
 * block CMP_RING blocks on into it. */
static void pool_release(uint64_t b)
{
	pthread_mutex_lock(&P.lock);
	P.done[b / CMP_BLOCK % CMP_RING] = 0;
	P.limit = b + (uint64_t)(CMP_RING + 1) * CMP_BLOCK;
	if (P.limit > P.chunks)
		P.limit = P.chunks;
	pthread_cond_broadcast(&P.more);
	pthread_mutex_unlock(&P.lock);
}

/* Whether chunk I of the block hashed into slot S of H matches the
 * server's word on it (ANS: kind then digest); ZDIG: the digest of a
 * chunk of zeros. */
static int hashed_same(int s, uint32_t i, const uint8_t *ans,
		       const uint8_t *zdig)
{
	if (ans[0] == 0)
		return H.zero[s][i];
	if (ans[0] != 1)
		return 0; /* digest unknown: send it */
	return memcmp(H.zero[s][i] ? zdig : H.dig[s][i], ans + 1, 16) == 0;
}

/* Sends the chunks of the block hashed into slot S of H (chunk B of D,
 * NB chunks) that differ from what the server said of the first KNOWN
 * (ANS). */
static void send_differing(struct disk *d, int s, uint64_t b, uint32_t nb,
			   uint32_t known, uint32_t cs, const uint8_t *ans)
{
	static uint8_t zdig[16];
	static uint32_t zcs;

	if (zcs != cs) {
		uint8_t *z = calloc(1, cs);
		if (!z)
			die("out of memory");
		bv_chunk_digest(z, cs, zdig);
		free(z);
		zcs = cs;
	}
	/* Runs of differing chunks go from a view of the page cache: they
	 * are the few. */
	for (uint32_t i = 0; i < nb;) {
		A.cmp_chunks++;
		if (i < known &&
		    hashed_same(s, i, ans + 16 + (size_t)i * 17, zdig)) {
			d->unchanged++;
			i++;
			continue;
		}
		uint32_t j = i + 1;
		while (j < nb && (uint64_t)(j + 1 - i) * cs <= PIECE &&
		       !(j < known &&
			 hashed_same(s, j, ans + 16 + (size_t)j * 17, zdig))) {
			A.cmp_chunks++;
			j++;
		}
		A.cmp_differ += j - i;
		d->extents++;
		uint64_t off = (b + i) * cs;
		uint64_t len = (uint64_t)(j - i) * cs;
		if (len > d->size - off)
			len = d->size - off;
		struct bv_source_read r = { .off = off, .len = (size_t)len };
		send_piece(d, view_piece(d, &r), off, (size_t)len);
		i = j;
	}
}

/* --compare has been through D up to byte POS: the bar moves there. */
static void compared(struct disk *d, uint64_t pos)
{
	if (pos > d->size)
		pos = d->size;
	if (pos > d->pos)
		d->pos = pos;
	progress_cb(&A.pr, d->pos, d->size);
}

/* --compare: reads the whole source, and sends only the chunks whose
 * digest differs from the replica's at RP (the server answers from its
 * index, without reading the replica). */
static void compare_disk(struct disk *d, uint64_t rp)
{
	static uint8_t answers[2][16 + CMP_BLOCK * 17];
	uint32_t cs = 0;
	uint64_t rsize = 0;
	uint8_t *pad = malloc(PIECE);
	if (!pad)
		die("out of memory");
	digests_ask(d, rp, 0, 1);
	digests_answer(d, 1, answers[0], sizeof answers[0], &cs, &rsize);
	uint64_t schunks = (d->size + cs - 1) / cs;
	uint64_t rchunks = (rsize + cs - 1) / cs;
	uint32_t per = PIECE / cs;

	/* The next block's digests are asked for before this block is
	 * compared, so the server looks them up meanwhile (it takes the
	 * change records sent in between without waiting for us to read
	 * its answer). */
	if (rchunks)
		digests_ask(d, rp, 0, CMP_BLOCK);
	if (d->in_place)
		pool_start(d, cs);
	for (uint64_t b = 0; b < schunks; b += CMP_BLOCK) {
		uint32_t nb = schunks - b < CMP_BLOCK ? (uint32_t)(schunks - b) :
							CMP_BLOCK;
		uint8_t *ans = answers[(b / CMP_BLOCK) & 1];
		uint32_t known = 0, c2 = 0;
		uint64_t r2 = 0;
		if (b < rchunks) {
			known = digests_answer(d, CMP_BLOCK, ans,
					       sizeof answers[0], &c2, &r2);
			if (c2 != cs || r2 != rsize)
				die("replica %s changed during the check",
				    d->name);
		}
		if (b + CMP_BLOCK < rchunks)
			digests_ask(d, rp, b + CMP_BLOCK, CMP_BLOCK);
		if (d->in_place) {
			int slot = pool_wait(b, nb);
			send_differing(d, slot, b, nb, known, cs, ans);
			pool_release(b);
			compared(d, (b + nb) * cs);
			continue;
		}
		/* NBD: READ_BATCH pieces at a time, read at once. */
		for (uint32_t k = 0; k < nb; k += per * READ_BATCH) {
			struct bv_source_read r[READ_BATCH];
			int nr = 0;
			for (uint32_t j = k; j < nb && nr < READ_BATCH;
			     j += per) {
				uint64_t off = (b + j) * cs;
				uint64_t len = (uint64_t)per * cs;
				if (len > d->size - off)
					len = d->size - off;
				r[nr] = (struct bv_source_read){
					.len = (size_t)len, .off = off };
				nr++;
			}
			read_pieces(d, r, nr);
			for (int q = 0; q < nr; q++) {
				const uint8_t *buf = r[q].buf;
				size_t len = r[q].len, run = 0, start = 0;
				for (size_t o = 0; o < len; o += cs) {
					size_t cl = len - o < cs ? len - o : cs;
					uint64_t ci = (r[q].off + o) / cs - b;
					int same = ci < known &&
						   chunk_same(buf + o, cl, cs,
							      ans + 16 + ci * 17,
							      pad);
					A.cmp_chunks++;
					if (!same) {
						A.cmp_differ++;
						if (!run) {
							start = o;
							d->extents++;
						}
						run += cl;
						continue;
					}
					d->unchanged++;
					if (run)
						send_piece(d, buf + start,
							   r[q].off + start, run);
					run = 0;
				}
				if (run)
					send_piece(d, buf + start,
						   r[q].off + start, run);
				compared(d, r[q].off + r[q].len);
			}
		}
	}
	if (d->in_place)
		pool_stop();
	free(pad);
}

/* -v: what was sent of D. */
static void report_disk(const struct disk *d)
{
	if (!A.verbose)
		return;
	fprintf(stderr, "bvault-agent: disk %s: %" PRIu64 " extent%s, %"
		PRIu64 " bytes of data, %" PRIu64 " bytes of zeros, %" PRIu64
		" chunk%s skipped as unchanged\n", d->name, d->extents,
		d->extents == 1 ? "" : "s", d->data, d->zero, d->unchanged,
		d->unchanged == 1 ? "" : "s");
}

static void send_disk_changes(struct disk *d);

static void send_disk(struct disk *d)
{
	progress_start(&A.pr, d->name, stderr);
	send_disk_changes(d);
	if (A.pr.on)
		progress_draw(&A.pr, A.mode == MODE_FULL ||
			      A.mode == MODE_COMPARE ? d->size :
			      d->data + d->zero, A.mode == MODE_FULL ||
			      A.mode == MODE_COMPARE ? d->size : 0);
	progress_end(&A.pr);
	report_disk(d);
}

static void send_disk_changes(struct disk *d)
{
	struct walk w = { .d = d };
	int rc = 0;

	w.pq.d = d;
	if (d->exists && d->rep_size != d->size) {
		net_check(nc_send_resize(&A.nc, d->slot, d->size));
	}
	if (A.mode == MODE_COMPARE) {
		compare_disk(d, d->base);
		return;
	}
	if (A.mode == MODE_FULL)
		rc = bv_source_data_extents(d->src, 0, d->size, send_range, &w);
	else if (A.mode == MODE_BITMAP)
		rc = bv_source_dirty_extents(d->src, 0, d->size, send_range,
					     &w);
	else
		send_extents_file(&w);
	if (rc)
		die("%s: %s", d->spec, bv_source_error(d->src));
	flush_reads(&w.pq);
	if (A.mode == MODE_FULL && d->exists && w.pos < d->size)
		send_zero(d, w.pos, d->size - w.pos);
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: bvault-agent (--server HOST:PORT | --unix PATH) --name AGENT\n"
"                    (--key FILE | --secret-file FILE)\n"
"                    --disk NAME=SOURCE [--disk ...]\n"
"                    (--full | --bitmap NAME | --extents FILE | --compare)\n"
"                    [--base N|latest] [--label L] [--consistency app|crash]\n"
"                    [--no-rp] [--bandwidth RATE] [--nbd-timeout S] [-v]\n"
"                    [--fingerprint HEX | --ca FILE | --no-tls]\n"
"       bvault-agent seed --disk NAME=SOURCE [--disk ...] --to DIR[,DIR...] ...\n"
"                    (a seed set, no server: bvault-agent seed --help)\n"
"       bvault-agent keygen --out FILE\n"
"                    (an Ed25519 key pair: FILE private, FILE.pub public)\n"
"       bvault-agent --version\n"
"Sends the changes of each disk (replica NAME, read from SOURCE: a file, a\n"
"block device or an NBD URI) to bvaultd in one session: one atomic RP of\n"
"their group, or nothing if anything fails.\n"
"Over TCP the connection is TLS 1.3, and the server must prove it is the\n"
"one meant:\n"
NC_TLS_USAGE
"  --key FILE      log in with the private key bvault-agent keygen made\n"
"                  (the store holds only its public half); --secret-file\n"
"                  FILE: with the secret bvault agent add wrote\n"
"  --full          everything that may hold data (holes skipped)\n"
"  --bitmap NAME   the ranges QEMU's dirty bitmap NAME marks (NBD sources)\n"
"  --extents FILE  \"OFFSET LENGTH\" lines (bytes) from a change tracker\n"
"  --compare       the consistency check: reads the whole source and sends\n"
"                  only the chunks whose digest differs from the replica's\n"
"                  at the base (after a lost bitmap, a crash, a migration)\n"
"  --base N        the RP these changes start from (the server refuses the\n"
"                  run if the replica has moved on); --full and --compare\n"
"                  default to 'latest', --bitmap needs it, --extents needs\n"
"                  a number\n"
"  --bandwidth R   at most R bytes per second (K, M, G suffixes)\n"
"  --nbd-timeout S give up on an NBD server silent for S seconds (60)\n"
"  -v              after each disk, what was sent of it: extents, bytes of\n"
"                  data, bytes of zeros, chunks skipped as unchanged\n"
"On a terminal, stderr shows a progress bar per disk.\n");
}

/* A file or device source must be a raw disk: the bytes of a qcow2 or
 * VMDK file are the container's, not the guest's (imgfmt.h). qemu-nbd
 * serves such a file's disk raw, and the agent reads that export. */
static void check_raw(struct disk *d)
{
	uint8_t head[IMGFMT_HEAD];
	size_t n = d->size < sizeof head ? (size_t)d->size : sizeof head;
	const char *fmt;

	if (!d->in_place || !n || bv_source_pread(d->src, head, n, 0))
		return;
	fmt = imgfmt_detect(head, n);
	if (!fmt)
		return;
	die("disk %s: %s is a %s image, not a raw disk; serve its disk "
	    "through qemu-nbd and read that, e.g.\n"
	    "  qemu-nbd --read-only --persistent --format=%s "
	    "--socket=/run/bvault-%s.sock %s &\n"
	    "  bvault-agent ... --disk %s='nbd+unix:///?socket=/run/"
	    "bvault-%s.sock'", d->name, d->spec, fmt, fmt, d->name, d->spec,
	    d->name, d->name);
}

static uint64_t query_latest(struct disk *d)
{
	uint8_t *p = A.nc.frame + BVP_HDR, ans[64];
	size_t nl = strlen(d->name);
	uint16_t code = 0;
	char msg[1300];

	p[0] = (uint8_t)nl;
	memcpy(p + 1, d->name, nl);
	send_frame(BVP_RPS, 1 + nl);
	/* Only the head of the answer is wanted: latest, size, count. */
	long len = get_answer(ans, 20, &code, msg, sizeof msg);
	if (len < 0) {
		if (code == BVP_E_NOTFOUND) {
			d->exists = 0;
			return 0;
		}
		die("%s", msg);
	}
	if (len < 20)
		die("replica %s: a malformed answer to RPS", d->name);
	d->exists = 1;
	d->rep_size = bvp_get64(ans + 8);
	return bvp_get64(ans);
}

/* agent_seed.c: bvault-agent seed (a seed set, no server). */
int agent_seed_main(int argc, char **argv);

/* Writes LINE to the new file PATH (never one that exists, nor through a
 * symbolic link) with MODE, synced; -1 with errno. */
static int key_file_write(const char *path, mode_t mode, const char *line)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		      O_CLOEXEC, mode);
	size_t len = strlen(line);
	if (fd < 0)
		return -1;
	/* The umask may have taken bits; the mode is the one wanted. */
	if (fchmod(fd, mode) < 0 || write(fd, line, len) != (ssize_t)len ||
	    fsync(fd) < 0) {
		int e = errno ? errno : EIO;
		close(fd);
		unlink(path);
		errno = e;
		return -1;
	}
	return close(fd);
}

static void hex_line(char *out, const char *prefix, const uint8_t *b,
		     size_t n)
{
	size_t p = (size_t)sprintf(out, "%s ", prefix);
	for (size_t i = 0; i < n; i++)
		p += (size_t)sprintf(out + p, "%02x", b[i]);
	strcpy(out + p, "\n");
}

/* bvault-agent keygen --out FILE: an Ed25519 key pair, FILE the private
 * key (0600), FILE.pub the public one for bvault agent add --public-key. */
static int keygen_main(int argc, char **argv)
{
	const char *out = NULL;
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	char priv[200], pub[120], pubpath[4200];
	struct stat st;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("usage: bvault-agent keygen --out FILE\n"
			       "Makes an Ed25519 key pair for the agent: FILE "
			       "holds the private key\n(mode 0600; give it "
			       "to bvault-agent --key FILE), FILE.pub the "
			       "public\none (give it to bvault agent add "
			       "--public-key FILE.pub). Neither\nfile may "
			       "exist.\n");
			return 0;
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			out = argv[++i];
		} else if (!strncmp(argv[i], "--out=", 6)) {
			out = argv[i] + 6;
		} else if (!strcmp(argv[i], "--out")) {
			usage_die("--out needs a value");
		} else {
			usage_die("keygen: unknown argument '%s'", argv[i]);
		}
	}
	if (!out || !*out)
		usage_die("keygen: give --out FILE");
	if (strlen(out) + 5 > sizeof pubpath)
		usage_die("--out %s: too long a name", out);
	snprintf(pubpath, sizeof pubpath, "%s.pub", out);
	if (lstat(out, &st) == 0 || lstat(pubpath, &st) == 0)
		die("keygen: %s exists; refusing to overwrite it (remove it, "
		    "or name a new file)", lstat(out, &st) == 0 ? out :
		    pubpath);
	crypto_sign_keypair(pk, sk);
	_Static_assert(sizeof sk == NC_PRIVATE_KEY && sizeof pk ==
		       NC_PUBLIC_KEY, "key sizes");
	hex_line(priv, NC_PRIVATE_PREFIX, sk, sizeof sk);
	hex_line(pub, NC_PUBLIC_PREFIX, pk, sizeof pk);
	sodium_memzero(sk, sizeof sk);
	if (key_file_write(out, 0600, priv) < 0) {
		int e = errno;
		sodium_memzero(priv, sizeof priv);
		if (e == EEXIST)
			die("keygen: %s exists; refusing to overwrite it", out);
		die("keygen: %s: %s", out, strerror(e));
	}
	sodium_memzero(priv, sizeof priv);
	if (key_file_write(pubpath, 0644, pub) < 0) {
		int e = errno;
		unlink(out);
		if (e == EEXIST)
			die("keygen: %s exists; refusing to overwrite it",
			    pubpath);
		die("keygen: %s: %s", pubpath, strerror(e));
	}
	printf("private key written to %s, public key to %s\n", out,
	       pubpath);
	return 0;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		die("libsodium cannot start");
	if (argc > 1 && !strcmp(argv[1], "seed"))
		return agent_seed_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "keygen"))
		return keygen_main(argc - 1, argv + 1);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL() (v ? (i++, v) : (usage_die("%s needs a value", a), v))
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("bvault-agent %s\n", bv_version());
			return 0;
		} else if (!strcmp(a, "-v")) {
			A.verbose = 1;
		} else if (!strcmp(a, "--server")) {
			A.server = VAL();
		} else if (!strcmp(a, "--unix")) {
			A.unix_path = VAL();
		} else if (!strcmp(a, "--name")) {
			A.name = VAL();
		} else if (!strcmp(a, "--secret-file")) {
			A.secret_file = VAL();
		} else if (!strcmp(a, "--key")) {
			A.key_file = VAL();
		} else if (!strcmp(a, "--no-tls") ||
			   !strcmp(a, "--fingerprint") || !strcmp(a, "--ca")) {
			char e[300];
			if (nc_tls_option(&A.tls, a, strcmp(a, "--no-tls") ?
					  VAL() : NULL, e, sizeof e) < 0)
				usage_die("%s", e);
		} else if (!strcmp(a, "--disk")) {
			const char *d = VAL(), *eq = strchr(d, '=');
			if (!eq || eq == d || (size_t)(eq - d) > 63 || !eq[1])
				usage_die("--disk %s: not NAME=SOURCE", d);
			if (A.ndisks == MAX_DISKS)
				usage_die("at most %d disks", MAX_DISKS);
			struct disk *k = &A.disks[A.ndisks++];
			memcpy(k->name, d, (size_t)(eq - d));
			k->spec = eq + 1;
		} else if (!strcmp(a, "--full")) {
			A.mode = A.mode ? -1 : MODE_FULL;
		} else if (!strcmp(a, "--bitmap")) {
			A.bitmap = VAL();
			A.mode = A.mode ? -1 : MODE_BITMAP;
		} else if (!strcmp(a, "--compare")) {
			A.mode = A.mode ? -1 : MODE_COMPARE;
		} else if (!strcmp(a, "--extents")) {
			A.extents_file = VAL();
			A.mode = A.mode ? -1 : MODE_EXTENTS;
		} else if (!strcmp(a, "--base")) {
			A.base_arg = VAL();
		} else if (!strcmp(a, "--label")) {
			A.label = VAL();
		} else if (!strcmp(a, "--consistency")) {
			const char *c = VAL();
			if (!strcmp(c, "app"))
				A.consistency = 1;
			else if (strcmp(c, "crash"))
				usage_die("--consistency %s: app or crash", c);
		} else if (!strcmp(a, "--no-rp")) {
			A.no_rp = 1;
		} else if (!strcmp(a, "--bandwidth")) {
			const char *bw = VAL();
			if (nc_parse_rate(bw, &A.bandwidth))
				usage_die("--bandwidth %s: not a rate (bytes "
					  "per second, more than 0; K, M, G "
					  "suffixes)", bw);
		} else if (!strcmp(a, "--nbd-timeout")) {
			const char *tv = VAL();
			char *end;
			unsigned long t = strtoul(tv, &end, 10);
			if (*end || end == tv || t == 0 || t > 86400)
				usage_die("--nbd-timeout %s: seconds, from 1 "
					  "to 86400", tv);
			A.nbd_timeout = (unsigned)t;
		} else {
			usage_die("unknown argument '%s'", a);
		}
#undef VAL
	}
	if (A.mode == -1)
		usage_die("give one of --full, --bitmap, --extents and "
			  "--compare");
	if (!A.mode)
		usage_die("give one of --full, --bitmap, --extents and "
			  "--compare");
	if (!A.ndisks)
		usage_die("give at least one --disk NAME=SOURCE");
	if (!A.name || (!A.secret_file && !A.key_file))
		usage_die("give --name AGENT and --key FILE (or --secret-file "
			  "FILE)");
	if (A.secret_file && A.key_file)
		usage_die("give --key or --secret-file, not both");
	if (!A.server && !A.unix_path)
		usage_die("give --server HOST:PORT or --unix PATH");
	if (A.server && A.unix_path)
		usage_die("give --server or --unix, not both");
	if (A.label && strlen(A.label) > 127)
		usage_die("--label: at most 127 bytes");
	if (strlen(A.name) > 63)
		usage_die("--name %s: at most 63 bytes", A.name);
	if ((A.mode == MODE_BITMAP || A.mode == MODE_EXTENTS) && !A.base_arg)
		usage_die("--bitmap and --extents need --base N: the RP the "
			  "changes start from");
	int base_latest = !A.base_arg || !strcmp(A.base_arg, "latest");
	uint64_t base_n = 0;
	if (!base_latest) {
		char *end;
		base_n = strtoull(A.base_arg, &end, 10);
		if (*end || end == A.base_arg || *A.base_arg == '-')
			usage_die("--base %s: a number or 'latest'",
				  A.base_arg);
	}
	/* Extents from a change tracker are relative to the RP it last
	 * saw: 'latest' would apply them to whatever the replica is now,
	 * and the server's base check could never catch a missed run. */
	if (A.mode == MODE_EXTENTS && base_latest)
		usage_die("--extents needs --base N, the RP the tracker's "
			  "extents start from, not 'latest'");

	A.rbuf = malloc((size_t)READ_BATCH * PIECE);
	if (!A.rbuf)
		die("out of memory");
	for (int i = 0; i < A.ndisks; i++) {
		char err[1024];
		struct disk *d = &A.disks[i];
		if (bv_source_open_timeout(d->spec, A.mode == MODE_BITMAP ?
					   A.bitmap : NULL, A.nbd_timeout,
					   &d->src, err, sizeof err))
			die("disk %s: %s", d->name, err);
		d->size = bv_source_size(d->src);
		d->in_place = bv_source_can_view(d->src);
		check_raw(d);
		if (d->size == 0 || d->size % 512)
			die("disk %s: %s is %" PRIu64 " bytes, not a whole "
			    "number of 512-byte sectors", d->name, d->spec,
			    d->size);
	}

	A.t_start = now();
	net_check(nc_connect(&A.nc, A.server, A.unix_path, &A.tls));
	A.nc.bandwidth = A.bandwidth;
	if (A.key_file ? nc_login_key(&A.nc, A.name, A.key_file) :
	    nc_login(&A.nc, A.name, A.secret_file))
		die("%s%s", A.nc.err, A.nc.code ? " (authentication)" : "");

	uint64_t bases[MAX_DISKS];
	for (int i = 0; i < A.ndisks; i++) {
		struct disk *d = &A.disks[i];
		uint64_t latest = query_latest(d);
		bases[i] = base_latest ? latest : base_n;
		if (!d->exists && A.mode != MODE_FULL)
			die("replica %s does not exist on the server: start "
			    "with --full", d->name);
		if (A.mode == MODE_COMPARE && !latest)
			die("replica %s has no recovery point to compare "
			    "with: start with --full", d->name);
		d->base = bases[i];
	}

	send_frame(BVP_BEGIN, 0);
	must_answer(NULL, 0, "begin");
	for (int i = 0; i < A.ndisks; i++) {
		struct disk *d = &A.disks[i];
		uint8_t *p = A.nc.frame + BVP_HDR, ans[4];
		size_t nl = strlen(d->name);
		char what[128];
		bvp_put64(p, bases[i]);
		bvp_put64(p + 8, d->exists ? 0 : d->size);
		p[16] = (uint8_t)nl;
		memcpy(p + 17, d->name, nl);
		send_frame(BVP_ADD, 17 + nl);
		snprintf(what, sizeof what, "replica %s", d->name);
		if (must_answer(ans, sizeof ans, what) != 4)
			die("%s: a malformed answer to ADD", what);
		d->slot = bvp_get32(ans);
	}
	for (int i = 0; i < A.ndisks; i++)
		send_disk(&A.disks[i]);

	uint8_t ans[8];
	net_check(nc_send_commit(&A.nc, !A.no_rp, A.consistency, 0, A.label,
				 0));
	if (must_answer(ans, sizeof ans, "commit") != 8)
		die("a malformed answer to COMMIT");
	uint64_t rp = bvp_get64(ans);
	double t = now() - A.t_start;
	if (A.mode == MODE_COMPARE)
		printf("compared %" PRIu64 " chunks, %" PRIu64 " differed\n",
		       A.cmp_chunks, A.cmp_differ);
	if (rp)
		printf("committed %d disk%s as RP %" PRIu64 ": %" PRIu64
		       " bytes of data, %" PRIu64 " zeroed, %.1f s\n",
		       A.ndisks, A.ndisks == 1 ? "" : "s", rp, A.sent_data,
		       A.sent_zero, t);
	else
		printf("committed %d disk%s (no RP): %" PRIu64 " bytes of "
		       "data, %" PRIu64 " zeroed, %.1f s\n", A.ndisks,
		       A.ndisks == 1 ? "" : "s", A.sent_data, A.sent_zero, t);
	nc_close(&A.nc);
	for (int i = 0; i < A.ndisks; i++)
		bv_source_close(A.disks[i].src);
	free(A.rbuf);
	return 0;
}
