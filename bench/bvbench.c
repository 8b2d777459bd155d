/*
 * bvbench: end-to-end figures of the engine, each measured in the same
 * run as the reference it is a ratio against (README.md, "Performance":
 * 2 cores here, so absolute rates say little on their own).
 *
 *   full ingest of new data      vs single-core LZ4_compress_default
 *   ingest of already-stored data (a twin replica), GB/s and vs full
 *   express full of CHANGE % of the chunks   vs the full ingest time
 *   export of the latest RP after N express fulls   vs the first RP,
 *                                and vs read() of an image file
 *   RP creation, small vs large replica
 *   index bytes per changed chunk per version
 *   (optional) ingest of a stream file vs ingest from memory
 *
 * Ingest goes through bv_ingest_write from memory buffers, as a server
 * does. The workload is synthetic: each chunk is a block of a pool that
 * mixes random bytes with repeated text to reach the --compress ratio
 * under LZ4, stamped with an identity so that chunks are unique unless
 * --dedup says otherwise. Only bvault.h, xxHash and LZ4 are used.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <lz4.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bvault.h"

#define POOL_BYTES (64u << 20)
#define SEG 256u

typedef struct cfg {
	const char *dir;
	uint64_t size;
	double dedup;
	double compress;
	double change;
	int versions;
	uint32_t chunk;
	unsigned workers;
	uint64_t batch;
	int stream;
	int keep;
	int full_only;
	int rounds;
	const char *store_only;
} cfg;

static cfg C = {
	.size = 4ull << 30,
	.dedup = 1.0,
	.compress = 2.0,
	.change = 1.0,
	.versions = 30,
	.chunk = 64u << 10,
	.batch = 4u << 20,
	.stream = 1,
	.rounds = 3,
};

static uint8_t *pool;
static uint64_t pool_chunks, salt;
static double last_ingest_cores; /* CPU seconds / wall seconds */
static double pool_ratio;

/* ---- small things ---------------------------------------------------- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

__attribute__((noreturn, format(printf, 1, 2)))
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "bvbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static void must(bv_store *s, int rc, const char *what)
{
	if (rc < 0)
		die("%s: %s: %s", what, bv_strerror(rc),
		    s ? bv_store_error(s) : "");
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	uint64_t m = 1;
	switch (*end) {
	case 'k': case 'K': m = 1ull << 10; break;
	case 'm': case 'M': m = 1ull << 20; break;
	case 'g': case 'G': m = 1ull << 30; break;
	case 't': case 'T': m = 1ull << 40; break;
	case 0: break;
	default: die("bad size %s", s);
	}
	if (v <= 0)
		die("bad size %s", s);
	return (uint64_t)(v * (double)m);
}

static const char *human(double bytes, char *buf, size_t len)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;
	while (bytes >= 1024 && i < 4) {
		bytes /= 1024;
		i++;
	}
	snprintf(buf, len, "%.1f %s", bytes, u[i]);
	return buf;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the workload ---------------------------------------------------- */

static const char text[] =
	"The quick brown fox jumps over the lazy dog. Lorem ipsum dolor sit "
	"amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
	"ut labore et dolore magna aliqua. 2024-06-11 12:00:01 INFO service "
	"started pid=4711 config=/etc/app/app.conf workers=8 listen=0.0.0.0 "
	"SELECT id, name, created FROM accounts WHERE state = 'active'; ";

/* Fills one pool chunk: segments of random bytes with probability P,
 * else text starting at a random place. */
static void fill_chunk(uint8_t *c, double p, uint64_t *rs)
{
	for (uint32_t o = 0; o < C.chunk; o += SEG) {
		uint64_t r = mix64(++*rs);
		if ((double)(r >> 11) * 0x1.0p-53 < p) {
			for (uint32_t i = 0; i < SEG; i += 8) {
				uint64_t v = mix64(++*rs);
				memcpy(c + o + i, &v, 8);
			}
		} else {
			size_t at = (size_t)(r % (sizeof text - 1));
			for (uint32_t i = 0; i < SEG; i++) {
				c[o + i] = (uint8_t)text[at];
				at = (at + 1) % (sizeof text - 1);
			}
		}
	}
}

static double lz4_ratio(const uint8_t *chunks, uint64_t n)
{
	int cap = LZ4_compressBound((int)C.chunk);
	char *out = malloc((size_t)cap);
	uint64_t raw = 0, packed = 0;
	for (uint64_t i = 0; i < n; i++) {
		int k = LZ4_compress_default((const char *)chunks + i * C.chunk,
					     out, (int)C.chunk, cap);
		raw += C.chunk;
		/* What a store keeps: raw when LZ4 does not shrink it. */
		packed += k > 0 && (uint32_t)k < C.chunk ? (uint64_t)k : C.chunk;
	}
	free(out);
	return (double)raw / (double)packed;
}

/* Makes the pool, finding by bisection the share of random segments that
 * gives the --compress ratio under LZ4. */
static void make_pool(void)
{
	uint64_t sample = 32, rs;
	double lo = 0, hi = 1, p = 1;
	pool_chunks = POOL_BYTES / C.chunk;
	if (pool_chunks < 16)
		pool_chunks = 16;
	pool = malloc(pool_chunks * C.chunk);
	if (!pool)
		die("out of memory for the pool");
	if (sample > pool_chunks)
		sample = pool_chunks;
	if (C.compress > 1.0) {
		for (int it = 0; it < 14; it++) {
			p = (lo + hi) / 2;
			rs = 1;
			for (uint64_t i = 0; i < sample; i++)
				fill_chunk(pool + i * C.chunk, p, &rs);
			if (lz4_ratio(pool, sample) > C.compress)
				lo = p;
			else
				hi = p;
		}
		p = (lo + hi) / 2;
	}
	rs = 7;
	for (uint64_t i = 0; i < pool_chunks; i++)
		fill_chunk(pool + i * C.chunk, p, &rs);
	pool_ratio = lz4_ratio(pool, pool_chunks);
}

/* Chunk content for identity ID: a pool block with the identity stamped
 * in its first 16 bytes. Same ID and SALT, same bytes. */
static void gen_chunk(uint8_t *dst, uint64_t id, uint64_t s)
{
	uint64_t pick = mix64(id ^ s) % pool_chunks;
	memcpy(dst, pool + pick * C.chunk, C.chunk);
	memcpy(dst, &id, 8);
	memcpy(dst + 8, &s, 8);
}

/* Identity of chunk I of the base image: --dedup R makes every distinct
 * chunk appear about R times. */
static uint64_t base_id(uint64_t i, uint64_t nchunks)
{
	uint64_t uniq = (uint64_t)((double)nchunks / C.dedup);
	if (uniq == 0)
		uniq = 1;
	return i % uniq;
}

/* ---- engine steps -------------------------------------------------- */

/* The base image in memory, made before any timing when it fits in a
 * quarter of the machine's memory: the timed ingest then measures the
 * engine taking bytes from memory, as a server does with what it received,
 * and not this program's generator. NULL when it does not fit (the
 * generator then runs inside the timed loop; gen_only() says its cost). */
static uint8_t *image;

static const uint8_t *base_image(uint64_t sl)
{
	static uint64_t made_for;
	uint64_t n = C.size / C.chunk;
	uint64_t mem = (uint64_t)sysconf(_SC_PHYS_PAGES) *
		       (uint64_t)sysconf(_SC_PAGESIZE);
	if (C.size > mem / 4)
		return NULL;
	if (!image && !(image = malloc(C.size)))
		return NULL;
	if (made_for != sl) {
		for (uint64_t i = 0; i < n; i++)
			gen_chunk(image + i * C.chunk, base_id(i, n), sl);
		made_for = sl;
	}
	return image;
}

/* The machine's CPU time so far (/proc/stat, all CPUs, in ticks): idle
 * (with iowait), stolen by the hypervisor, and in all. Zeros when
 * unreadable. */
struct cpu_ticks {
	unsigned long long idle, steal, total;
};

static struct cpu_ticks cpu_ticks(void)
{
	struct cpu_ticks c = { 0, 0, 0 };
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return c;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
		c.idle = v[3] + v[4];
		c.steal = v[7];
		for (int i = 0; i < 8; i++)
			c.total += v[i];
	}
	fclose(f);
	return c;
}

/* Shares of the machine's CPU time between two readings, in percent. */
static double last_idle_pct, last_steal_pct;

static void cpu_shares(struct cpu_ticks a, struct cpu_ticks b)
{
	double t = (double)(b.total - a.total);
	last_idle_pct = t > 0 ? 100.0 * (double)(b.idle - a.idle) / t : 0;
	last_steal_pct = t > 0 ? 100.0 * (double)(b.steal - a.steal) / t : 0;
}

/* Ingests the whole base image into NAME (created), one session, with
 * an RP. Returns seconds. */
static double ingest_full(bv_store *s, const char *name, uint64_t sl)
{
	uint64_t n = C.size / C.chunk, per = C.batch / C.chunk, rp;
	const uint8_t *img = base_image(sl);
	uint8_t *buf = img ? NULL : malloc(C.batch);
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1, .label = "full" };
	struct rusage ru0, ru;
	int slot;

	getrusage(RUSAGE_SELF, &ru0);
	struct cpu_ticks c0 = cpu_ticks();
	double t0 = now();
	must(s, bv_ingest_begin(s, &in), "begin");
	slot = bv_ingest_add(in, name, 0, C.size);
	must(s, slot, "add");
	for (uint64_t i = 0; i < n; i += per) {
		uint64_t k = n - i < per ? n - i : per;
		const uint8_t *src = img ? img + i * C.chunk : buf;
		if (!img)
			for (uint64_t j = 0; j < k; j++)
				gen_chunk(buf + j * C.chunk,
					  base_id(i + j, n), sl);
		must(s, bv_ingest_write(in, slot, i * C.chunk, src,
					k * C.chunk), "write");
	}
	must(s, bv_ingest_commit(in, &co, &rp), "commit");
	double t = now() - t0;
	cpu_shares(c0, cpu_ticks());
	getrusage(RUSAGE_SELF, &ru);
	last_ingest_cores =
		(ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
		 ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec +
		 (ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
		  ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6) / t;
	free(buf);
	return t;
}

/* The disk's own rate for what ingest asks of it: 4 MiB appends with
 * O_DIRECT (buffered where the file system refuses it), each followed by
 * fdatasync, into a new file in DIR; LIMIT bytes. Bytes per second. */
static double disk_write_rate(const char *dir, uint64_t limit)
{
	const size_t piece = 4u << 20;
	char *path;
	uint8_t *buf;
	int fd;

	if (asprintf(&path, "%s/disk-ref", dir) < 0 ||
	    posix_memalign((void **)&buf, 4096, piece))
		die("out of memory");
	for (size_t i = 0; i < piece; i += 8) {
		uint64_t v = mix64(i);
		memcpy(buf + i, &v, 8);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	double t0 = now();
	for (uint64_t off = 0; off < limit; off += piece)
		if (pwrite(fd, buf, piece, (off_t)off) != (ssize_t)piece ||
		    fdatasync(fd))
			die("%s: write: %s", path, strerror(errno));
	double t = now() - t0;
	close(fd);
	unlink(path);
	free(path);
	free(buf);
	return (double)limit / t;
}

/* The generator alone over the same bytes (to show it is not what is
 * measured). */
static double gen_only(void)
{
	uint64_t n = C.size / C.chunk, per = C.batch / C.chunk;
	uint8_t *buf = malloc(C.batch);
	volatile uint8_t sink = 0;
	double t0 = now();
	for (uint64_t i = 0; i < n; i += per) {
		uint64_t k = n - i < per ? n - i : per;
		for (uint64_t j = 0; j < k; j++)
			gen_chunk(buf + j * C.chunk, base_id(i + j, n), salt);
		sink ^= buf[0];
	}
	(void)sink;
	free(buf);
	return now() - t0;
}

/* Single-core LZ4_compress_default over the first LIMIT bytes of the base
 * image, chunk by chunk, as the engine meets them: from the image in
 * memory when there is one (one timed loop), else each chunk just made
 * by the generator (only the compress calls timed; the chunk is then hot
 * in cache, which flatters the reference). Returns bytes per second. */
static double lz4_rate(uint64_t limit, uint64_t sl)
{
	uint64_t n = limit / C.chunk;
	int cap = LZ4_compressBound((int)C.chunk);
	char *out = malloc((size_t)cap);
	const uint8_t *img = base_image(sl);
	uint8_t *c = img ? NULL : malloc(C.chunk);
	double t = 0;
	if (img) {
		double t0 = now();
		for (uint64_t i = 0; i < n; i++)
			if (LZ4_compress_default((const char *)img + i * C.chunk,
						 out, (int)C.chunk, cap) <= 0)
				die("LZ4 failed");
		t = now() - t0;
	}
	for (uint64_t i = 0; !img && i < n; i++) {
		double t0;
		gen_chunk(c, base_id(i, C.size / C.chunk), sl);
		t0 = now();
		if (LZ4_compress_default((const char *)c, out, (int)C.chunk,
					 cap) <= 0)
			die("LZ4 failed");
		t += now() - t0;
	}
	free(out);
	free(c);
	return (double)(n * C.chunk) / t;
}

/* One express full of NAME: CHANGED random chunks get new content. */
static double express(bv_store *s, const char *name, uint64_t base,
		      int v, uint64_t changed)
{
	uint64_t n = C.size / C.chunk, rp;
	uint8_t *buf = malloc(C.chunk);
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1, .label = "express" };
	double t0;
	int slot;

	t0 = now();
	must(s, bv_ingest_begin(s, &in), "begin");
	slot = bv_ingest_add(in, name, base, 0);
	must(s, slot, "add");
	for (uint64_t j = 0; j < changed; j++) {
		uint64_t i = mix64(((uint64_t)v << 32) ^ j ^ salt) % n;
		gen_chunk(buf, ((uint64_t)v << 40) | (j << 1) | 1, salt);
		must(s, bv_ingest_write(in, slot, i * C.chunk, buf, C.chunk),
		     "write");
	}
	must(s, bv_ingest_commit(in, &co, &rp), "commit");
	free(buf);
	return now() - t0;
}

static int drop_one(const char *p, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_F && S_ISREG(st->st_mode)) {
		int fd = open(p, O_RDONLY);
		if (fd >= 0) {
			fdatasync(fd);
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
	}
	return 0;
}

/* Drops the page cache of every file under PATH (clean pages only: each
 * file is synced first). */
static void drop_cache(const char *path)
{
	nftw(path, drop_one, 16, FTW_PHYS);
}

static double export_rp(bv_store *s, const char *name, uint64_t rp,
			const char *path)
{
	double t0;
	unlink(path);
	/* Write back what earlier steps left dirty, so that the export does
	 * not pay for it. */
	sync();
	t0 = now();
	must(s, bv_export(s, name, rp, path, NULL, NULL), "export");
	return now() - t0;
}

/* read() of PATH from start to end in 1 MiB calls; returns seconds. */
static double read_file(const char *path)
{
	size_t bs = 1u << 20;
	char *buf = malloc(bs);
	int fd;
	double t0;
	sync();
	fd = open(path, O_RDONLY);
	t0 = now();
	ssize_t k;
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	while ((k = read(fd, buf, bs)) > 0)
		;
	if (k < 0)
		die("read %s: %s", path, strerror(errno));
	close(fd);
	free(buf);
	return now() - t0;
}

/* Writes a bvault stream of a fresh image for NAME into PATH. */
static double write_stream(const char *name, const char *path, uint64_t sl)
{
	uint64_t n = C.size / C.chunk, per = C.batch / C.chunk;
	uint8_t *buf = malloc(C.batch);
	bv_stream_header h = { .replica = name, .disk_size = C.size };
	bv_stream_writer *w;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), rc;
	double t0 = now();
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	rc = bv_stream_writer_open(fd, &h, &w);
	if (rc < 0)
		die("stream writer: %s", bv_strerror(rc));
	for (uint64_t i = 0; i < n; i += per) {
		uint64_t k = n - i < per ? n - i : per;
		for (uint64_t j = 0; j < k; j++)
			gen_chunk(buf + j * C.chunk, base_id(i + j, n), sl);
		rc = bv_stream_write_data(w, i * C.chunk, buf, k * C.chunk);
		if (rc < 0)
			die("stream write: %s", bv_stream_writer_error(w));
	}
	rc = bv_stream_writer_finish(w);
	if (rc < 0)
		die("stream finish: %s", bv_strerror(rc));
	fdatasync(fd);
	close(fd);
	free(buf);
	return now() - t0;
}

static double ingest_stream_file(bv_store *s, const char *path)
{
	int fd = open(path, O_RDONLY), slot;
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp;
	double t0 = now();
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	must(s, bv_ingest_begin(s, &in), "begin");
	slot = bv_ingest_stream(in, fd, BV_FORMAT_BVAULT, NULL, 0, NULL, NULL,
				NULL, NULL);
	must(s, slot, "ingest stream");
	must(s, bv_ingest_commit(in, &co, &rp), "commit");
	close(fd);
	return now() - t0;
}

/* Median times of REPS bv_rp_create calls on SMALL and on LARGE,
 * interleaved so that both see the same state of the index. */
static void rp_create_times(bv_store *s, const char *small,
			    const char *large, int reps, double *t_small,
			    double *t_large)
{
	double *ts = malloc(sizeof *ts * (size_t)reps);
	double *tl = malloc(sizeof *tl * (size_t)reps);
	for (int i = 0; i < reps; i++) {
		for (int k = 0; k < 2; k++) {
			uint64_t n;
			/* Alternate which goes first. */
			int big = (i + k) % 2;
			double t0 = now();
			must(s, bv_rp_create(s, big ? large : small, "bench",
					     BV_CRASH_CONSISTENT, &n),
			     "rp create");
			(big ? tl : ts)[i] = now() - t0;
		}
	}
	*t_small = median(ts, reps);
	*t_large = median(tl, reps);
	free(ts);
	free(tl);
}

/* Writes the base image of the current salt to PATH. */
static int write_base_image(const char *path)
{
	uint64_t n = C.size / C.chunk, per = 64;
	uint8_t *buf = malloc(per * C.chunk);
	FILE *f = fopen(path, "w");
	if (!buf || !f)
		die("%s: %s", path, strerror(errno));
	for (uint64_t i = 0; i < n; i += per) {
		uint64_t k = n - i < per ? n - i : per;
		for (uint64_t j = 0; j < k; j++)
			gen_chunk(buf + j * C.chunk, base_id(i + j, n), salt);
		if (fwrite(buf, C.chunk, k, f) != k)
			die("%s: %s", path, strerror(errno));
	}
	if (fclose(f))
		die("%s: %s", path, strerror(errno));
	free(buf);
	return 0;
}

/* ---- main ------------------------------------------------------------ */

static void usage(void)
{
	printf("usage: bvbench [--dir DIR] [--size SIZE] [--dedup RATIO]\n"
	       "               [--compress RATIO] [--change PERCENT]\n"
	       "               [--versions N] [--chunk-size SIZE]\n"
	       "               [--workers N] [--batch SIZE] [--no-stream]"
	       " [--keep]\n"
	       "               [--rounds N] [--full-only]   (the first "
	       "figure alone, for profiling)\n"
	       "       bvbench --write-image FILE [--size SIZE] [--salt N] "
	       "[--dedup R] [--compress R]\n"
	       "               (the workload's base image as a file, new "
	       "content per salt)\n"
	       "       bvbench --store-only STORE [--size SIZE] [--versions N] "
	       "[--change P] ...\n"
	       "               (a new store: replica big, a full then N "
	       "express fulls, each an RP;\n"
	       "               kept, for benchmarks of whole programs: "
	       "bench/restore.sh)\n"
	       "defaults: --size 4G --dedup 1 --compress 2 --change 1 "
	       "--versions 30 --chunk-size 64K --batch 4M;\n"
	       "DIR defaults to a new directory under /var/tmp, removed at "
	       "the end.\n");
}

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, 0, 'd' },
		{ "size", required_argument, 0, 's' },
		{ "dedup", required_argument, 0, 'D' },
		{ "compress", required_argument, 0, 'c' },
		{ "change", required_argument, 0, 'x' },
		{ "versions", required_argument, 0, 'v' },
		{ "chunk-size", required_argument, 0, 'k' },
		{ "workers", required_argument, 0, 'w' },
		{ "batch", required_argument, 0, 'b' },
		{ "no-stream", no_argument, 0, 'S' },
		{ "keep", no_argument, 0, 'K' },
		{ "full-only", no_argument, 0, 'F' },
		{ "rounds", required_argument, 0, 'r' },
		{ "write-image", required_argument, 0, 'W' },
		{ "salt", required_argument, 0, 'A' },
		{ "store-only", required_argument, 0, 'O' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *write_image = NULL;
	uint64_t salt_arg = 0;
	char tmpl[] = "/var/tmp/bvbench-XXXXXX";
	char *store, *img1, *imgn, *strm, h1[32], h2[32];
	bv_store *s = NULL;
	bv_open_opts oo = { 0 };
	bv_init_opts io = { 0 };
	bv_stats st0, st1, st2, st3;
	char err[512];
	int o, made_dir = 0;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'd': C.dir = optarg; break;
		case 's': C.size = parse_size(optarg); break;
		case 'D': C.dedup = atof(optarg); break;
		case 'c': C.compress = atof(optarg); break;
		case 'x': C.change = atof(optarg); break;
		case 'v': C.versions = atoi(optarg); break;
		case 'k': C.chunk = (uint32_t)parse_size(optarg); break;
		case 'w': C.workers = (unsigned)atoi(optarg); break;
		case 'b': C.batch = parse_size(optarg); break;
		case 'S': C.stream = 0; break;
		case 'K': C.keep = 1; break;
		case 'F': C.full_only = 1; break;
		case 'r': C.rounds = atoi(optarg); break;
		case 'W': write_image = optarg; break;
		case 'A': salt_arg = strtoull(optarg, NULL, 0); break;
		case 'O': C.store_only = optarg; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (C.dedup < 1.0 || C.compress < 1.0 || C.change <= 0 ||
	    C.change > 100 || C.versions < 1 || C.rounds < 1 || C.rounds > 9)
		die("--dedup and --compress are ratios >= 1, --change a "
		    "percentage in (0, 100], --versions >= 1, --rounds 1 to 9");
	if (C.chunk < BV_CHUNK_MIN || C.chunk > BV_CHUNK_MAX ||
	    (C.chunk & (C.chunk - 1)))
		die("--chunk-size must be a power of two from 4K to 4M");
	C.size -= C.size % C.chunk;
	if (C.size < 16ull * C.chunk)
		die("--size must hold at least 16 chunks");
	C.batch -= C.batch % C.chunk;
	if (C.batch < C.chunk)
		C.batch = C.chunk;
	if (write_image) {
		/* The workload's base image as a file, for benchmarks of
		 * whole programs (bench/net.sh); SALT picks new content. */
		salt = salt_arg ? mix64(salt_arg) : 1;
		make_pool();
		return write_base_image(write_image);
	}
	if (C.store_only) {
		/* The store of the standard workload, kept: a full ingest
		 * (RP 1), then VERSIONS express fulls of CHANGE % of the
		 * chunks (RPs 2 ...), nothing timed. */
		uint64_t n = C.size / C.chunk;
		uint64_t changed = (uint64_t)llround((double)n * C.change /
						     100.0);
		salt = mix64(salt_arg ? salt_arg : 1);
		make_pool();
		io.chunk_size = C.chunk;
		if (bv_store_init(C.store_only, &io, err, sizeof err) < 0)
			die("init %s: %s", C.store_only, err);
		oo.workers = C.workers;
		must(s, bv_store_open(C.store_only, &oo, &s), "open");
		ingest_full(s, "big", salt);
		for (int v = 1; v <= C.versions; v++)
			express(s, "big", (uint64_t)v, v, changed ? changed : 1);
		bv_store_close(s);
		printf("store %s: replica big, RP 1 a full of %" PRIu64
		       " bytes, RPs 2 to %d express fulls of %" PRIu64
		       " chunks each\n", C.store_only, C.size, C.versions + 1,
		       changed ? changed : 1);
		return 0;
	}
	if (!C.dir) {
		if (!mkdtemp(tmpl))
			die("mkdtemp %s: %s", tmpl, strerror(errno));
		C.dir = tmpl;
		made_dir = 1;
	}
	salt = mix64((uint64_t)time(NULL) ^ (uint64_t)getpid());
	if (asprintf(&store, "%s/store", C.dir) < 0 ||
	    asprintf(&img1, "%s/first.img", C.dir) < 0 ||
	    asprintf(&imgn, "%s/latest.img", C.dir) < 0 ||
	    asprintf(&strm, "%s/full.bvs", C.dir) < 0)
		die("out of memory");

	printf("bvbench: dir %s, size %s, chunk %u, dedup %.2f, compress "
	       "%.2f, change %.2f %%, versions %d, batch %s\n", C.dir,
	       human((double)C.size, h1, sizeof h1), C.chunk, C.dedup,
	       C.compress, C.change, C.versions,
	       human((double)C.batch, h2, sizeof h2));
	fflush(stdout);

	make_pool();
	io.chunk_size = C.chunk;
	if (bv_store_init(store, &io, err, sizeof err) < 0)
		die("init %s: %s", store, err);
	oo.workers = C.workers;
	must(s, bv_store_open(store, &oo, &s), "open");

	double t_gen = gen_only();
	uint64_t lz4_bytes = C.size < (1ull << 30) ? C.size : (1ull << 30);
	double r_disk = disk_write_rate(C.dir, lz4_bytes);

	/* 1. Full ingest of new data, in ROUNDS rounds, each into a new
	 * replica of new content, each between two single-core LZ4 passes
	 * over the same in-memory image: the rates of this shared machine
	 * drift by a third within seconds, so each ingest is compared with
	 * the reference measured around it, and the median round is kept.
	 * The last round makes "big", which the steps below use. */
	double rr[9], rate[9], lzr[9], tt[9], cores[9], stored[9];
	for (int k = C.rounds - 1; k >= 0; k--) {
		char name[16];
		uint64_t sl = k ? salt ^ mix64((uint64_t)k) : salt;
		snprintf(name, sizeof name, k ? "big%d" : "big", k);
		must(s, bv_stats_counters(s, &st0), "stats");
		double l0 = lz4_rate(lz4_bytes, sl);
		double t0 = now();
		tt[k] = ingest_full(s, name, sl);
		cores[k] = last_ingest_cores;
		double l1 = lz4_rate(lz4_bytes, sl);
		must(s, bv_stats_counters(s, &st1), "stats");
		rate[k] = (double)C.size / tt[k];
		lzr[k] = (l0 + l1) / 2;
		rr[k] = rate[k] / lzr[k];
		stored[k] = (double)(st1.stored_bytes - st0.stored_bytes) /
			    tt[k];
		printf("round %d: 1-core LZ4 %.3f GB/s before, %.3f after; "
		       "full ingest %.3f GB/s (%.2fx), containers written at "
		       "%.3f GB/s, cores busy %.2f (machine idle %.0f%%, "
		       "stolen by the host %.0f%%); CLOCK_MONOTONIC %.6f to "
		       "%.6f\n", C.rounds - k, l0 / 1e9, l1 / 1e9,
		       rate[k] / 1e9, rr[k], stored[k] / 1e9, cores[k],
		       last_idle_pct, last_steal_pct, t0, t0 + tt[k]);
		fflush(stdout);
	}
	/* The median round (by ratio) gives every full-ingest figure. */
	int mk = 0;
	{
		double sorted[9];
		memcpy(sorted, rr, sizeof(double) * (size_t)C.rounds);
		qsort(sorted, (size_t)C.rounds, sizeof(double), cmp_double);
		double m = sorted[(C.rounds - 1) / 2];
		for (int k = 0; k < C.rounds; k++)
			if (rr[k] == m)
				mk = k;
	}
	double r_full = rate[mk], r_lz4 = lzr[mk], t_full = tt[mk];
	double cores_full = cores[mk], r_stored = stored[mk];
	if (C.full_only) {
		printf("full ingest (median of %d rounds) %.3f GB/s, 1-core LZ4 "
		       "%.3f GB/s: %.2fx\n", C.rounds, r_full / 1e9,
		       r_lz4 / 1e9, r_full / r_lz4);
		bv_store_close(s);
		if (!C.keep)
			nftw(made_dir ? C.dir : store, rm_one, 16,
			     FTW_DEPTH | FTW_PHYS);
		return 0;
	}
	double store_ratio = st1.stored_bytes
				     ? (double)st1.raw_bytes / (double)st1.stored_bytes
				     : 0;

	/* 2. The same content again, as a twin replica. */
	double t_dup = ingest_full(s, "twin", salt);
	double cores_dup = last_ingest_cores;
	must(s, bv_stats_counters(s, &st2), "stats");
	double r_dup = (double)C.size / t_dup;

	/* 3. Express fulls of CHANGE % of the chunks. */
	uint64_t n = C.size / C.chunk;
	uint64_t changed = (uint64_t)llround((double)n * C.change / 100.0);
	if (changed == 0)
		changed = 1;
	double *tx = malloc(sizeof *tx * (size_t)C.versions), t_x_sum = 0;
	for (int v = 1; v <= C.versions; v++) {
		tx[v - 1] = express(s, "big", (uint64_t)v, v, changed);
		t_x_sum += tx[v - 1];
	}
	must(s, bv_stats_counters(s, &st3), "stats");
	double t_x = median(tx, C.versions);
	uint64_t latest = (uint64_t)C.versions + 1;
	double idx_per = (double)((int64_t)st3.index_bytes -
				  (int64_t)st2.index_bytes) /
			 (double)(changed * (uint64_t)C.versions);
	double map_per = (double)(st3.map_entries - st2.map_entries) /
			 (double)(changed * (uint64_t)C.versions);

	/* 4. Exports: a cold pass (the page cache of the store dropped before
	 * each), then a warm one (everything cached, the engine's own caches
	 * too). Within a pass, first and latest RP see the same conditions. */
	drop_cache(C.dir);
	double t_e1c = export_rp(s, "big", 1, img1);
	drop_cache(C.dir);
	double t_enc = export_rp(s, "big", latest, imgn);
	drop_cache(C.dir);
	double t_readc = read_file(img1);
	double t_e1 = export_rp(s, "big", 1, img1);
	double t_en = export_rp(s, "big", latest, imgn);
	double t_read = read_file(img1);
	unlink(img1);
	unlink(imgn);

	/* 5. RP creation: a small replica vs the large one. */
	{
		bv_ingest *in;
		uint64_t rp;
		uint8_t *b = malloc(C.chunk);
		int slot;
		bv_commit_opts co = { .make_rp = 1 };
		must(s, bv_ingest_begin(s, &in), "begin");
		slot = bv_ingest_add(in, "small", 0, 16ull * C.chunk);
		must(s, slot, "add");
		gen_chunk(b, 12345, salt ^ 1);
		must(s, bv_ingest_write(in, slot, 0, b, C.chunk), "write");
		must(s, bv_ingest_commit(in, &co, &rp), "commit");
		free(b);
	}
	double t_rp_small, t_rp_large;
	rp_create_times(s, "small", "big", 21, &t_rp_small, &t_rp_large);

	/* 6. Stream file ingest of fresh data. */
	double t_sw = 0, t_si = 0;
	if (C.stream) {
		t_sw = write_stream("streamed", strm, salt ^ 0x5eed);
		drop_cache(strm);
		t_si = ingest_stream_file(s, strm);
		unlink(strm);
	}
	bv_store_close(s);

	/* The table. */
	const double GB = 1e9;
	printf("\n%-52s %12s %12s %9s\n", "figure", "measured", "reference",
	       "ratio");
	printf("%-52s %9.3f GB/s %7.3f GB/s %8.2fx\n",
	       "full ingest, new data vs 1-core LZ4_compress_default",
	       r_full / GB, r_lz4 / GB, r_full / r_lz4);
	printf("%-52s %9.3f GB/s %7.3f GB/s %8.2fx\n",
	       "containers written in full ingest vs O_DIRECT disk",
	       r_stored / GB, r_disk / GB, r_stored / r_disk);
	printf("%-52s %9.3f GB/s %7.3f GB/s %8.2fx\n",
	       "ingest of stored data (twin) vs full ingest", r_dup / GB,
	       r_full / GB, r_dup / r_full);
	printf("%-52s %10.4f s %10.4f s %8.2f%%\n",
	       "express full (median) vs full ingest time", t_x, t_full,
	       100.0 * t_x / t_full);
	printf("%-52s %9.3f GB/s %7.3f GB/s %8.2fx\n",
	       "export latest RP vs first RP (warm)",
	       (double)C.size / t_en / GB, (double)C.size / t_e1 / GB,
	       t_e1 / t_en);
	printf("%-52s %9.3f GB/s %7.3f GB/s %8.2fx\n",
	       "export latest RP vs first RP (cold)",
	       (double)C.size / t_enc / GB, (double)C.size / t_e1c / GB,
	       t_e1c / t_enc);
	printf("%-52s %9.3f GB/s %7.3f GB/s %8.2fx\n",
	       "export first RP vs read() of an image (warm)",
	       (double)C.size / t_e1 / GB, (double)C.size / t_read / GB,
	       t_read / t_e1);
	printf("%-52s %9.3f GB/s %7.3f GB/s %8.2fx\n",
	       "export first RP vs read() of an image (cold)",
	       (double)C.size / t_e1c / GB, (double)C.size / t_readc / GB,
	       t_readc / t_e1c);
	printf("%-52s %9.1f us %9.1f us %8.2fx\n",
	       "RP create, large vs small replica (median of 21)",
	       t_rp_large * 1e6, t_rp_small * 1e6, t_rp_large / t_rp_small);
	printf("%-52s %12.1f %12s %9s\n",
	       "index bytes per changed chunk per version", idx_per, "", "");
	printf("%-52s %12.2f %12s %9s\n",
	       "map entries per changed chunk per version", map_per, "", "");
	if (C.stream)
		printf("%-52s %9.3f GB/s %7.3f GB/s %8.2fx\n",
		       "ingest of a stream file vs from memory (new data)",
		       (double)C.size / t_si / GB, r_full / GB,
		       ((double)C.size / t_si) / r_full);
	printf("\nworkload: pool LZ4 ratio %.2f, store raw/stored %.2f, "
	       "generator alone %.2f GB/s, %" PRIu64 " chunks changed per "
	       "version (mean express %.4f s), twin added %" PRIu64
	       " stored bytes, stream file written in %.2f s; ingest from %s; "
	       "cores busy: full ingest %.2f, twin %.2f\n",
	       pool_ratio, store_ratio, (double)C.size / t_gen / GB, changed,
	       t_x_sum / C.versions, st2.stored_bytes - st1.stored_bytes, t_sw,
	       image ? "an image made in memory before timing" :
		       "the generator inside the timed loop",
	       cores_full, cores_dup);
	printf("SUMMARY {\"size\":%" PRIu64 ",\"chunk\":%u,\"compress\":%.2f,"
	       "\"dedup\":%.2f,\"change_pct\":%.2f,\"versions\":%d,"
	       "\"full_ingest_gbps\":%.4f,\"lz4_1core_gbps\":%.4f,"
	       "\"full_vs_lz4\":%.3f,\"rounds\":%d,\"stored_write_gbps\":%.4f,"
	       "\"disk_write_gbps\":%.4f,\"dup_ingest_gbps\":%.4f,"
	       "\"dup_vs_full\":%.3f,\"express_s\":%.5f,\"full_s\":%.4f,"
	       "\"express_vs_full_pct\":%.3f,\"export_first_warm_gbps\":%.4f,"
	       "\"export_latest_warm_gbps\":%.4f,\"export_latest_vs_first_warm\":%.3f,"
	       "\"export_first_cold_gbps\":%.4f,\"export_latest_cold_gbps\":%.4f,"
	       "\"export_latest_vs_first_cold\":%.3f,\"read_warm_gbps\":%.4f,"
	       "\"read_cold_gbps\":%.4f,\"export_vs_read_warm\":%.3f,"
	       "\"export_vs_read_cold\":%.3f,\"rp_small_us\":%.2f,"
	       "\"rp_large_us\":%.2f,\"rp_large_vs_small\":%.3f,"
	       "\"index_bytes_per_changed_chunk\":%.1f,"
	       "\"map_entries_per_changed_chunk\":%.3f,"
	       "\"stream_ingest_gbps\":%.4f,\"stream_vs_memory\":%.3f,"
	       "\"pool_lz4_ratio\":%.3f,\"store_ratio\":%.3f}\n",
	       C.size, C.chunk, C.compress, C.dedup, C.change, C.versions,
	       r_full / GB, r_lz4 / GB, r_full / r_lz4, C.rounds,
	       r_stored / GB, r_disk / GB, r_dup / GB,
	       r_dup / r_full, t_x, t_full, 100.0 * t_x / t_full,
	       (double)C.size / t_e1 / GB, (double)C.size / t_en / GB,
	       t_e1 / t_en, (double)C.size / t_e1c / GB,
	       (double)C.size / t_enc / GB, t_e1c / t_enc,
	       (double)C.size / t_read / GB, (double)C.size / t_readc / GB,
	       t_read / t_e1, t_readc / t_e1c, t_rp_small * 1e6,
	       t_rp_large * 1e6, t_rp_large / t_rp_small, idx_per, map_per,
	       C.stream ? (double)C.size / t_si / GB : 0,
	       C.stream ? ((double)C.size / t_si) / r_full : 0, pool_ratio,
	       store_ratio);
	fflush(stdout);

	free(tx);
	free(pool);
	if (!C.keep)
		nftw(made_dir ? C.dir : store, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(store);
	free(img1);
	free(imgn);
	free(strm);
	return 0;
}
