/*
 * util.h: helpers shared by the unit tests: temporary directories that
 * clean up after themselves, and a deterministic random generator (a
 * failing run can be replayed with the seed it prints).
 */
#ifndef BV_TEST_UNIT_UTIL_H
#define BV_TEST_UNIT_UTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

static int ut_rm_one(const char *path, const struct stat *st, int flag,
		     struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

__attribute__((unused))
static void ut_rmtree(const char *path)
{
	nftw(path, ut_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes a fresh directory under $TMPDIR (or /tmp) into BUF. */
__attribute__((unused))
static void ut_tmpdir(char *buf, size_t n, const char *tag)
{
	const char *base = getenv("TMPDIR");

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	snprintf(buf, n, "%s/bv-%s-XXXXXX", base, tag);
	if (mkdtemp(buf) == NULL)
		bail_out("mkdtemp failed");
}

static uint64_t ut_rng_state = 0x9e3779b97f4a7c15ull;

__attribute__((unused))
static void ut_seed(uint64_t s)
{
	ut_rng_state = s ? s : 1;
	diag("seed %llu", (unsigned long long)s);
}

__attribute__((unused))
static uint64_t ut_rand(void)
{
	/* xorshift64*: fast, good enough for test data. */
	uint64_t x = ut_rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ut_rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

__attribute__((unused))
static void ut_fill_random(void *buf, size_t n)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(ut_rand() >> 56);
}

/* Compressible but not trivial: runs of repeated random words. */
__attribute__((unused))
static void ut_fill_text(void *buf, size_t n)
{
	static const char *const words[] = {
		"block ", "replica ", "chunk ", "version ", "store ",
		"group ", "recovery ", "point ", "stream ", "extent ",
	};
	uint8_t *p = buf;
	size_t i = 0;

	while (i < n) {
		const char *w = words[ut_rand() % 10];
		size_t l = strlen(w);

		if (l > n - i)
			l = n - i;
		memcpy(p + i, w, l);
		i += l;
	}
}

#ifdef BV_STORAGE_CONTAINER_H
/* Appends one record (FP, CODEC, STORED) to CS as a run of its own, padded
 * to whole pages, and sets *LOC: the one write path there is
 * (bv_cset_appendv), one record at a time. */
__attribute__((unused))
static int ut_append_one(struct bv_cset *cs, struct bv_ring *r,
			 const bv_fp *fp, uint8_t codec, const void *stored,
			 uint32_t stored_len, uint32_t raw_len,
			 struct bv_chunk_loc *loc)
{
	size_t len = (size_t)(bv_rec_size(stored_len) + 4095) & ~(size_t)4095;
	uint8_t *buf = NULL;
	uint32_t cid = 0;
	uint64_t off = 0;
	int64_t n;
	int ret;

	if (posix_memalign((void **)&buf, 4096, len) != 0)
		return -12; /* -ENOMEM */
	memset(buf, 0, len);
	n = bv_rec_build(buf, fp, codec, stored, stored_len, raw_len);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	struct iovec seg = { buf, len };
	ret = bv_cset_appendv(cs, r, &seg, 1, &cid, &off);
	free(buf);
	if (ret == 0)
		*loc = (struct bv_chunk_loc){ cid, off, stored_len, raw_len,
					      codec };
	return ret;
}
#endif

#endif
