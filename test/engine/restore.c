/*
 * restore.c (engine-restore): bv_restore_fd and bv_restore_to through
 * bvault.h, each compared byte for byte with the image the test wrote:
 * to a regular file (holes for zeros), a pipe, a target of callbacks (with
 * and without a zero call); deltas over a file and a target, whose counts
 * must be exactly the chunks that changed (and a damaged chunk the map
 * does not know of); the refusals (an RP that does not exist, a delta
 * into a pipe or a target that cannot read, a target too small, a target
 * whose writes fail), each leaving the destination as it was or naming
 * the failure; --bandwidth; progress; 8 restores at once from one store.
 */
#include <pthread.h>
#include <time.h>

#include "tap.h"
#include "etest.h"

#define CS (16u << 10)
#define SIZE (3u * 1048576u + 1024u) /* a partial last chunk */
#define NCH ((SIZE + CS - 1) / CS)

static uint8_t *img1, *img2;

/* A target in memory. */
struct mem {
	uint8_t *b;
	uint64_t size;
	unsigned writes, zeros, reads, flushes;
	int fail_write; /* -errno for every write */
	pthread_mutex_t mu;
};

static int m_write(void *ud, const void *buf, size_t len, uint64_t off)
{
	struct mem *m = ud;
	if (m->fail_write)
		return m->fail_write;
	if (off > m->size || len > m->size - off)
		return -EINVAL;
	memcpy(m->b + off, buf, len);
	pthread_mutex_lock(&m->mu);
	m->writes++;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int m_read(void *ud, void *buf, size_t len, uint64_t off)
{
	struct mem *m = ud;
	if (off > m->size || len > m->size - off)
		return -EINVAL;
	memcpy(buf, m->b + off, len);
	pthread_mutex_lock(&m->mu);
	m->reads++;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int m_zero(void *ud, uint64_t off, uint64_t len)
{
	struct mem *m = ud;
	if (off > m->size || len > m->size - off)
		return -EINVAL;
	memset(m->b + off, 0, len);
	pthread_mutex_lock(&m->mu);
	m->zeros++;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int m_flush(void *ud)
{
	struct mem *m = ud;
	m->flushes++;
	return 0;
}

static void mem_init(struct mem *m, uint64_t size, uint8_t fill)
{
	memset(m, 0, sizeof *m);
	m->size = size;
	m->b = malloc(size);
	if (!m->b)
		bail_out("out of memory");
	memset(m->b, fill, size);
	pthread_mutex_init(&m->mu, NULL);
}

static void mem_free(struct mem *m)
{
	free(m->b);
	pthread_mutex_destroy(&m->mu);
}

static bv_restore_target target_of(struct mem *m, int with_zero)
{
	return (bv_restore_target){ .name = "memory", .size = m->size,
				    .ud = m, .write = m_write, .read = m_read,
				    .zero = with_zero ? m_zero : NULL,
				    .flush = m_flush };
}

static int file_is(const char *path, const uint8_t *want, uint64_t len)
{
	uint8_t *got = NULL;
	uint64_t n = 0;
	int same;
	if (et_read_file(path, &got, &n) < 0)
		return 0;
	same = n == len && memcmp(got, want, len) == 0;
	if (!same && n == len)
		diag("%s differs at %lld", path,
		     (long long)et_first_diff(got, want, len));
	free(got);
	return same;
}

/* Writes IMG into the replica as one version with an RP: zero chunks as
 * zero extents. */
static void ingest(bv_store *s, const uint8_t *img, uint64_t base)
{
	bv_ingest *in;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp;
	int slot;

	ET_MUST(s, bv_ingest_begin(s, &in));
	slot = bv_ingest_add(in, "vm", base, SIZE);
	ET_MUST(s, slot);
	for (uint64_t off = 0; off < SIZE; off += CS) {
		uint64_t n = SIZE - off < CS ? SIZE - off : CS;
		int zero = 1;
		for (uint64_t i = 0; i < n && zero; i++)
			zero = img[off + i] == 0;
		if (zero)
			ET_MUST(s, bv_ingest_zero(in, slot, off, n));
		else
			ET_MUST(s, bv_ingest_write(in, slot, off, img + off, n));
	}
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
}

struct pipe_reader {
	int fd;
	uint8_t *buf;
	uint64_t got;
};

static void *drain(void *arg)
{
	struct pipe_reader *p = arg;
	ssize_t k;
	while ((k = read(p->fd, p->buf + p->got, SIZE + 1 - p->got)) > 0)
		p->got += (uint64_t)k;
	return NULL;
}

struct progress_seen {
	uint64_t last, total;
	unsigned calls;
	pthread_t thread;
	int other_thread;
};

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
	struct progress_seen *p = ud;
	p->calls++;
	p->last = done;
	p->total = total;
	if (!pthread_equal(pthread_self(), p->thread))
		p->other_thread = 1;
}

struct par {
	bv_store *s;
	uint64_t rp;
	int rc;
	int same;
};

static void *one_restore(void *arg)
{
	struct par *p = arg;
	struct mem m;
	bv_restore_target t;
	mem_init(&m, SIZE, 0xee);
	t = target_of(&m, 1);
	p->rc = bv_restore_to(p->s, "vm", p->rp, &t, NULL, NULL);
	p->same = memcmp(m.b, p->rp == 1 ? img1 : img2, SIZE) == 0;
	mem_free(&m);
	return NULL;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(void)
{
	et_rng g = { et_seed(42) };
	char *dir = et_tmpdir("restore");
	char *store = et_path(dir, "store");
	char *f1 = et_path(dir, "f1"), *f2 = et_path(dir, "f2");
	bv_restore_result res;
	bv_restore_opts o;
	bv_restore_target t;
	struct mem m;
	bv_store *s;
	int rc, fd, changed = 0;

	img1 = calloc(1, SIZE);
	img2 = malloc(SIZE);
	if (!img1 || !img2)
		bail_out("out of memory");
	/* Random data, but a zero run of 20 chunks and zero chunks spread
	 * through it. */
	et_fill(&g, img1, SIZE);
	memset(img1 + 40 * CS, 0, 20 * CS);
	for (unsigned c = 100; c < NCH - 1; c += 17)
		memset(img1 + (size_t)c * CS, 0, CS);
	memcpy(img2, img1, SIZE);
	/* RP 2: five chunks rewritten (one of them partly), one zeroed, one
	 * zero chunk written, and the partial last chunk. */
	unsigned rew[] = { 0, 3, 77, 150, 190 };
	for (size_t i = 0; i < sizeof rew / sizeof rew[0]; i++, changed++)
		et_fill(&g, img2 + (size_t)rew[i] * CS + (i == 1 ? 512 : 0),
			i == 1 ? 1024 : CS);
	memset(img2 + 10 * CS, 0, CS), changed++;
	et_fill(&g, img2 + 45 * CS, CS), changed++;
	et_fill(&g, img2 + (NCH - 1) * (size_t)CS, SIZE - (NCH - 1) * CS),
		changed++;

	et_init(store, CS);
	s = et_open(store);
	ingest(s, img1, 0);
	ingest(s, img2, 1);

	/* ---- to a file ---------------------------------------------- */
	fd = open(f1, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		bail_out("open f1");
	rc = bv_restore_fd(s, "vm", 1, fd, NULL, &res);
	is_int(rc, 0, "restore vm@1 to a file: %s", bv_store_error(s));
	ok(file_is(f1, img1, SIZE), "the file is vm@1 byte for byte");
	is_int(res.chunks, NCH, "result: chunks");
	{
		uint64_t z = 0;
		for (unsigned c = 0; c < NCH; c++) {
			int zero = 1;
			for (unsigned i = 0; i < CS && zero &&
			     (uint64_t)c * CS + i < SIZE; i++)
				zero = img1[(size_t)c * CS + i] == 0;
			z += zero;
		}
		is_int(res.zero_chunks, z, "result: zero chunks");
		is_int(res.written_chunks, NCH - z,
		       "result: the data chunks written, zeros left as holes");
	}
	struct stat st;
	fstat(fd, &st);
	ok((uint64_t)st.st_blocks * 512 < SIZE, "zero chunks are holes "
	   "(%lld bytes allocated)", (long long)st.st_blocks * 512);

	/* ---- delta over the file ------------------------------------ */
	memset(&o, 0, sizeof o);
	o.delta = 1;
	rc = bv_restore_fd(s, "vm", 2, fd, &o, &res);
	is_int(rc, 0, "delta of vm@2 over vm@1: %s", bv_store_error(s));
	ok(file_is(f1, img2, SIZE), "the file is vm@2 byte for byte");
	is_int(res.written_chunks, changed, "the delta wrote the %d chunks "
	       "that changed", changed);
	is_int(res.skipped_chunks, NCH - changed, "and skipped the others");
	/* A stray change the map knows nothing of, and a zero chunk that
	 * holds data now. */
	if (pwrite(fd, "x", 1, 60 * CS + 5) != 1 ||
	    pwrite(fd, "y", 1, 41 * CS) != 1)
		bail_out("pwrite");
	rc = bv_restore_fd(s, "vm", 2, fd, &o, &res);
	is_int(rc, 0, "delta over two stray changes");
	is_int(res.written_chunks, 2, "writes those two chunks");
	ok(file_is(f1, img2, SIZE), "the file is vm@2 again");
	/* A file of another size is set to the RP's. */
	if (ftruncate(fd, SIZE + 5 * CS) < 0)
		bail_out("ftruncate");
	rc = bv_restore_fd(s, "vm", 2, fd, &o, &res);
	is_int(rc, 0, "delta over a longer file");
	ok(file_is(f1, img2, SIZE), "cut to the RP's size, and vm@2");
	close(fd);

	/* ---- an RP that does not exist: nothing changes --------------- */
	fd = open(f1, O_RDWR);
	rc = bv_restore_fd(s, "vm", 9, fd, NULL, NULL);
	is_int(rc, BV_ENOTFOUND, "RP 9 does not exist");
	ok(strstr(bv_store_error(s), "no recovery point 9") != NULL,
	   "the message names it: %s", bv_store_error(s));
	ok(file_is(f1, img2, SIZE), "the file is untouched");
	rc = bv_restore_fd(s, "nope", 1, fd, NULL, NULL);
	is_int(rc, BV_ENOTFOUND, "replica nope does not exist");
	close(fd);
	rc = bv_restore_fd(s, "vm", 1, -1, NULL, NULL);
	is_int(rc, BV_EINVAL, "a bad fd is refused");

	/* ---- to a pipe ------------------------------------------------ */
	{
		int p[2];
		pthread_t th;
		struct pipe_reader pr = { 0 };
		if (pipe(p) < 0)
			bail_out("pipe");
		pr.fd = p[0];
		pr.buf = malloc(SIZE + 1);
		pthread_create(&th, NULL, drain, &pr);
		rc = bv_restore_fd(s, "vm", 2, p[1], NULL, &res);
		close(p[1]);
		pthread_join(th, NULL);
		close(p[0]);
		is_int(rc, 0, "restore vm@2 into a pipe");
		ok(pr.got == SIZE && memcmp(pr.buf, img2, SIZE) == 0,
		   "the pipe got vm@2 byte for byte (%llu bytes)",
		   (unsigned long long)pr.got);
		is_int(res.written_chunks, NCH, "every chunk written, zeros "
		       "too");
		free(pr.buf);
		if (pipe(p) < 0)
			bail_out("pipe");
		o.delta = 1;
		rc = bv_restore_fd(s, "vm", 2, p[1], &o, NULL);
		is_int(rc, BV_EINVAL, "a delta into a pipe is refused");
		ok(strstr(bv_store_error(s), "cannot be read back") != NULL,
		   "saying why: %s", bv_store_error(s));
		close(p[0]);
		close(p[1]);
	}

	/* ---- to a target ---------------------------------------------- */
	mem_init(&m, SIZE + 4096, 0xaa);
	t = target_of(&m, 1);
	memset(&o, 0, sizeof o);
	struct progress_seen ps = { .thread = pthread_self() };
	o.progress = on_progress;
	o.ud = &ps;
	rc = bv_restore_to(s, "vm", 1, &t, &o, &res);
	is_int(rc, 0, "restore vm@1 to a target: %s", bv_store_error(s));
	ok(memcmp(m.b, img1, SIZE) == 0, "the target holds vm@1");
	ok(m.b[SIZE] == 0xaa && m.b[SIZE + 4095] == 0xaa,
	   "nothing written past the RP's size");
	ok(m.zeros > 0 && m.flushes == 1, "zeros through its zero call (%u), "
	   "one flush", m.zeros);
	ok(ps.calls > 0 && ps.last == SIZE && ps.total == SIZE &&
	   !ps.other_thread, "progress ends at the size, on the calling "
	   "thread (%u calls)", ps.calls);
	o.delta = 1;
	o.progress = NULL;
	m.writes = m.zeros = 0;
	rc = bv_restore_to(s, "vm", 2, &t, &o, &res);
	is_int(rc, 0, "delta of vm@2 to the target");
	ok(memcmp(m.b, img2, SIZE) == 0, "the target holds vm@2");
	is_int(res.written_chunks, changed, "the delta wrote the %d chunks "
	       "that changed", changed);
	ok(m.reads > 0, "reading the target (%u reads)", m.reads);
	/* Without a zero call, zeros are written. */
	memset(m.b, 0xaa, m.size);
	t.zero = NULL;
	o.delta = 0;
	rc = bv_restore_to(s, "vm", 2, &t, &o, &res);
	ok(rc == 0 && memcmp(m.b, img2, SIZE) == 0, "a target without a zero "
	   "call gets zeros written");
	t.read = NULL;
	o.delta = 1;
	rc = bv_restore_to(s, "vm", 2, &t, &o, &res);
	is_int(rc, BV_EINVAL, "a delta to a target that cannot read");
	t = target_of(&m, 1);
	t.size = SIZE - 512;
	m.writes = 0;
	rc = bv_restore_to(s, "vm", 2, &t, NULL, NULL);
	is_int(rc, BV_ERANGE, "a target too small");
	ok(strstr(bv_store_error(s), "memory: holds") != NULL && m.writes == 0,
	   "nothing written, the message says: %s", bv_store_error(s));
	t = target_of(&m, 1);
	m.fail_write = -EIO;
	rc = bv_restore_to(s, "vm", 2, &t, NULL, NULL);
	is_int(rc, -EIO, "a target whose writes fail: the error comes back");
	ok(strstr(bv_store_error(s), "memory: write") != NULL,
	   "naming the target and the write: %s", bv_store_error(s));
	m.fail_write = 0;
	rc = bv_restore_to(s, "vm", 2, NULL, NULL, NULL);
	is_int(rc, BV_EINVAL, "no target");
	mem_free(&m);

	/* ---- bandwidth ------------------------------------------------- */
	fd = open(f2, O_RDWR | O_CREAT | O_TRUNC, 0600);
	memset(&o, 0, sizeof o);
	o.bandwidth = 4u << 20;
	double t0 = mono();
	rc = bv_restore_fd(s, "vm", 2, fd, &o, &res);
	double el = mono() - t0;
	/* About 2.8 MiB of data at 4 MiB/s: more than half a second. */
	ok(rc == 0 && el > 0.5, "restore at 4 MiB/s takes %.2f s", el);
	ok(file_is(f2, img2, SIZE), "and is vm@2");
	close(fd);

	/* ---- bv_export still works ------------------------------------- */
	unlink(f2);
	rc = bv_export(s, "vm", 1, f2, NULL, NULL);
	ok(rc == 0 && file_is(f2, img1, SIZE), "bv_export of vm@1");
	unlink(f2);
	rc = bv_export(s, "vm", 7, f2, NULL, NULL);
	ok(rc == BV_ENOTFOUND && access(f2, F_OK) != 0,
	   "bv_export of a missing RP creates nothing");
	bv_store_close(s);

	/* ---- 8 at once, on a read-only store --------------------------- */
	{
		bv_open_opts oo = { .read_only = 1 };
		struct par p[8];
		pthread_t th[8];
		int good = 1;
		rc = bv_store_open(store, &oo, &s);
		if (rc < 0)
			bail_out("read-only open");
		for (int i = 0; i < 8; i++) {
			p[i] = (struct par){ .s = s, .rp = 1 + (uint64_t)(i % 2) };
			pthread_create(&th[i], NULL, one_restore, &p[i]);
		}
		for (int i = 0; i < 8; i++) {
			pthread_join(th[i], NULL);
			good &= p[i].rc == 0 && p[i].same;
		}
		ok(good, "8 restores at once from one read-only store, each "
		   "byte for byte");
		bv_store_close(s);
	}

	/* ---- a damaged record is an error, never data (invariant 4) --- */
	{
		char *cont = et_path(store, "containers/00000001.bvc");
		int cfd = open(cont, O_RDWR);
		uint8_t b;
		bv_open_opts oo = { .read_only = 1 };
		if (cfd < 0 || pread(cfd, &b, 1, 4096 + 48 + 100) != 1)
			bail_out("open the container");
		b ^= 0xff;
		if (pwrite(cfd, &b, 1, 4096 + 48 + 100) != 1 || fsync(cfd))
			bail_out("damage the container");
		close(cfd);
		if (bv_store_open(store, &oo, &s) < 0)
			bail_out("read-only open");
		fd = open(f2, O_RDWR | O_CREAT | O_TRUNC, 0600);
		rc = bv_restore_fd(s, "vm", 1, fd, NULL, NULL);
		is_int(rc, BV_ECHECKSUM, "a restore over a damaged record fails");
		ok(strstr(bv_store_error(s), "00000001.bvc") != NULL,
		   "naming the container: %s", bv_store_error(s));
		close(fd);
		bv_store_close(s);
		free(cont);
	}

	free(img1);
	free(img2);
	free(store);
	free(f1);
	free(f2);
	et_tmpdir_done(dir);
	return done_testing();
}
