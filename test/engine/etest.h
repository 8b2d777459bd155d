/*
 * etest.h: helpers shared by the engine tests. They reach the engine
 * through bvault.h only; everything here is about
 * scratch directories, a seeded generator, and comparing what the engine
 * returns with a model of the disk kept by the test.
 *
 * Header-only, like tap.h: include it once per test program, after tap.h.
 */
#ifndef BV_TEST_ETEST_H
#define BV_TEST_ETEST_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bvault.h"
#include "tap.h"

#define ET_UNUSED __attribute__((unused))

/* ---- seeded generator (splitmix64): cheap and reproducible ---------- */

typedef struct et_rng {
	uint64_t s;
} et_rng;

ET_UNUSED static uint64_t et_next(et_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n); n 0 gives 0. */
ET_UNUSED static uint64_t et_below(et_rng *r, uint64_t n)
{
	return n ? et_next(r) % n : 0;
}

/* Uniform in [lo, hi]. */
ET_UNUSED static uint64_t et_range(et_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + et_below(r, hi - lo + 1);
}

ET_UNUSED static void et_fill(et_rng *r, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len >= 8) {
		uint64_t v = et_next(r);
		memcpy(p, &v, 8);
		p += 8;
		len -= 8;
	}
	if (len) {
		uint64_t v = et_next(r);
		memcpy(p, &v, len);
	}
}

/* The run's seed: BV_SEED from the environment, else DEF; always printed
 * so that a failure can be replayed. */
ET_UNUSED static uint64_t et_seed(uint64_t def)
{
	const char *e = getenv("BV_SEED");
	uint64_t seed = def;
	if (e && *e)
		seed = strtoull(e, NULL, 0);
	diag("seed %" PRIu64 " (set BV_SEED to replay)", seed);
	return seed;
}

/* ---- scratch directories ------------------------------------------- */

ET_UNUSED static int et_rm_one(const char *p, const struct stat *st, int flag,
			       struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

ET_UNUSED static void et_rm_rf(const char *path)
{
	nftw(path, et_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes a fresh directory for one test program; BV_KEEP=1 keeps it. */
ET_UNUSED static char *et_tmpdir(const char *what)
{
	const char *base = getenv("TMPDIR");
	char *p;
	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&p, "%s/bv-%s-XXXXXX", base, what) < 0)
		bail_out("asprintf");
	if (!mkdtemp(p))
		bail_out("mkdtemp failed");
	return p;
}

ET_UNUSED static void et_tmpdir_done(char *p)
{
	const char *keep = getenv("BV_KEEP");
	if (keep && *keep == '1')
		diag("kept %s", p);
	else
		et_rm_rf(p);
	free(p);
}

ET_UNUSED static char *et_path(const char *dir, const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		bail_out("asprintf");
	return p;
}

/* ---- engine helpers ------------------------------------------------ */

/* Calls that must succeed for the test to mean anything: on failure the
 * program bails out with the engine's message. */
#define ET_MUST(s, call)                                                  \
	do {                                                              \
		int et_rc_ = (call);                                      \
		if (et_rc_ < 0) {                                         \
			printf("# %s:%d: %s -> %d %s: %s\n", __FILE__,    \
			       __LINE__, #call, et_rc_,                   \
			       bv_strerror(et_rc_),                       \
			       (s) ? bv_store_error(s) : "");             \
			bail_out("a call that must succeed failed");      \
		}                                                         \
	} while (0)

ET_UNUSED static bv_store *et_open(const char *dir)
{
	bv_store *s = NULL;
	bv_open_opts o = { .workers = 2 };
	int rc = bv_store_open(dir, &o, &s);
	if (rc < 0) {
		printf("# open %s: %d %s: %s\n", dir, rc, bv_strerror(rc),
		       s ? bv_store_error(s) : "");
		bv_store_close(s);
		bail_out("store open failed");
	}
	return s;
}

ET_UNUSED static void et_init(const char *dir, uint32_t chunk)
{
	char err[256] = "";
	bv_init_opts o = { .chunk_size = chunk };
	int rc = bv_store_init(dir, &o, err, sizeof err);
	if (rc < 0) {
		printf("# init %s: %d %s: %s\n", dir, rc, bv_strerror(rc), err);
		bail_out("store init failed");
	}
}

/* A new store DIR/NAME (the default chunk size), opened. */
ET_UNUSED static bv_store *et_new_store(const char *dir, const char *name)
{
	char *p = et_path(dir, name);
	bv_store *s;
	et_init(p, 0);
	s = et_open(p);
	free(p);
	return s;
}

/* First differing offset of A and B (LEN bytes each), or -1. */
ET_UNUSED static int64_t et_first_diff(const uint8_t *a, const uint8_t *b,
				       size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return (int64_t)i;
	return -1;
}

ET_UNUSED static int et_read_file(const char *path, uint8_t **out,
				  uint64_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf;
	uint64_t done = 0;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf)
		bail_out("out of memory");
	while (done < (uint64_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
		if (n <= 0) {
			free(buf);
			close(fd);
			return n < 0 ? -errno : -EIO;
		}
		done += (uint64_t)n;
	}
	close(fd);
	*out = buf;
	*len = done;
	return 0;
}

/* Exports REPLICA@RP into SCRATCH and compares it, size and bytes, with
 * WANT. Returns 1 when equal; prints what differs otherwise. */
ET_UNUSED static int et_export_eq(bv_store *s, const char *replica,
				  uint64_t rp, const char *scratch,
				  const uint8_t *want, uint64_t size)
{
	char *path = et_path(scratch, "export.img");
	uint8_t *got = NULL;
	uint64_t glen = 0;
	int rc, good = 0;
	unlink(path);
	rc = bv_export(s, replica, rp, path, NULL, NULL);
	if (rc < 0) {
		diag("export %s@%" PRIu64 ": %d %s: %s", replica, rp, rc,
		     bv_strerror(rc), bv_store_error(s));
		goto out;
	}
	rc = et_read_file(path, &got, &glen);
	if (rc < 0) {
		diag("read back export: %s", strerror(-rc));
		goto out;
	}
	if (glen != size) {
		diag("export %s@%" PRIu64 ": size %" PRIu64 ", want %" PRIu64,
		     replica, rp, glen, size);
		goto out;
	}
	{
		int64_t d = et_first_diff(got, want, size);
		if (d >= 0) {
			diag("export %s@%" PRIu64 ": first difference at byte "
			     "%" PRId64 " (got 0x%02x, want 0x%02x)",
			     replica, rp, d, got[d], want[d]);
			goto out;
		}
	}
	good = 1;
out:
	free(got);
	unlink(path);
	free(path);
	return good;
}

/* Reads REPLICA@RP through a reader: its size, then NREADS random
 * 512-aligned ranges (plus the first and the last sector), each compared
 * with WANT. Returns 1 when all equal. */
ET_UNUSED static int et_pread_eq(bv_store *s, const char *replica,
				 uint64_t rp, const uint8_t *want,
				 uint64_t size, et_rng *rng, int nreads)
{
	bv_reader *r = NULL;
	uint8_t *buf = NULL;
	int rc, good = 0;
	rc = bv_reader_open(s, replica, rp, &r);
	if (rc < 0) {
		diag("reader %s@%" PRIu64 ": %d %s: %s", replica, rp, rc,
		     bv_strerror(rc), bv_store_error(s));
		return 0;
	}
	if (bv_reader_size(r) != size) {
		diag("reader %s@%" PRIu64 ": size %" PRIu64 ", want %" PRIu64,
		     replica, rp, bv_reader_size(r), size);
		goto out;
	}
	if (size == 0) {
		good = 1;
		goto out;
	}
	for (int i = -2; i < nreads; i++) {
		uint64_t off, len;
		int64_t d;
		if (i == -2) {
			off = 0;
			len = size < 512 ? size : 512;
		} else if (i == -1) {
			len = size < 512 ? size : 512;
			off = size - len;
		} else {
			/* Any byte offsets: the reader is not bound to
			 * sectors, and odd ranges catch more slicing bugs. */
			off = et_below(rng, size);
			len = et_range(rng, 1, size - off < (3u << 16)
						       ? size - off
						       : (3u << 16));
			if (et_below(rng, 2)) {
				off &= ~(uint64_t)511;
				len = (len + 511) & ~(uint64_t)511;
				if (len > size - off)
					len = size - off;
			}
		}
		buf = realloc(buf, len);
		if (!buf)
			bail_out("out of memory");
		memset(buf, 0xa5, len);
		rc = bv_reader_pread(r, buf, len, off);
		if (rc < 0) {
			diag("pread %s@%" PRIu64 " [%" PRIu64 ", +%" PRIu64
			     "): %d %s: %s",
			     replica, rp, off, len, rc, bv_strerror(rc),
			     bv_store_error(s));
			goto out;
		}
		d = et_first_diff(buf, want + off, len);
		if (d >= 0) {
			diag("pread %s@%" PRIu64 " [%" PRIu64 ", +%" PRIu64
			     "): first difference at byte %" PRIu64
			     " (got 0x%02x, want 0x%02x)",
			     replica, rp, off, len, off + (uint64_t)d, buf[d],
			     want[off + d]);
			goto out;
		}
	}
	good = 1;
out:
	free(buf);
	bv_reader_close(r);
	return good;
}

/* Writes BUF (LEN bytes) to PATH, replacing it. */
ET_UNUSED static void et_write_file(const char *path, const void *buf,
				    size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	const uint8_t *p = buf;
	if (fd < 0)
		bail_out("open for writing failed");
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			bail_out("write failed");
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

#endif
