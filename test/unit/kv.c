/*
 * kv.c: the RocksDB wrapper: put/get, multi_get, batches across column
 * families, bounded iterators, persistence across reopen, a missing
 * database, and the size and flush helpers.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "errcodes.h"
#include "kv.h"
#include "util.h"

static char dir[256];

static void key_of(uint8_t k[8], uint64_t i)
{
	bv_be64(k, i);
}

static void test_basic(struct bv_kv *kv)
{
	char val[64];
	size_t vlen = 0;

	is_int(bv_kv_put(kv, BV_CF_META, "config", 6, "v1", 2, 1), 0,
	       "synced put");
	is_int(bv_kv_get(kv, BV_CF_META, "config", 6, val, sizeof(val), &vlen),
	       0, "get");
	ok(vlen == 2 && memcmp(val, "v1", 2) == 0, "value read back");
	is_int(bv_kv_get(kv, BV_CF_CHUNKS, "config", 6, val, sizeof(val),
			 &vlen),
	       ST_ENOTFOUND, "column families are separate");
	is_int(bv_kv_get(kv, BV_CF_META, "nothing", 7, val, sizeof(val), &vlen),
	       ST_ENOTFOUND, "missing key");
	vlen = 0;
	is_int(bv_kv_get(kv, BV_CF_META, "config", 6, val, 1, &vlen), ST_EINVAL,
	       "value larger than the buffer");
	is_int(vlen, 2, "full length still reported");
	is_int(bv_kv_put(kv, BV_CF_META, "empty", 5, "", 0, 0), 0,
	       "empty value");
	vlen = 99;
	is_int(bv_kv_get(kv, BV_CF_META, "empty", 5, val, 0, &vlen), 0,
	       "get empty value");
	is_int(vlen, 0, "length 0");
}

static void test_batch(struct bv_kv *kv)
{
	struct bv_kv_batch *b = NULL;
	uint8_t k[8];
	uint64_t v;
	size_t vlen;
	int all = 1;

	is_int(bv_kv_batch_new(&b), 0, "batch");
	for (uint64_t i = 0; i < 1000; i++) {
		key_of(k, i);
		v = i * 3;
		bv_kv_batch_put(b, BV_CF_MAPS, k, 8, &v, 8);
	}
	bv_kv_batch_put(b, BV_CF_META, "head", 4, "h1", 2);
	is_int(bv_kv_batch_count(b), 1001, "batch count");
	is_int(bv_kv_write(kv, b, 1), 0, "synced batch write");
	for (uint64_t i = 0; i < 1000; i++) {
		key_of(k, i);
		if (bv_kv_get(kv, BV_CF_MAPS, k, 8, &v, 8, &vlen) != 0 ||
		    v != i * 3)
			all = 0;
	}
	ok(all, "all 1000 batch entries read back");

	bv_kv_batch_clear(b);
	is_int(bv_kv_batch_count(b), 0, "cleared");
	for (uint64_t i = 0; i < 1000; i += 2) {
		key_of(k, i);
		bv_kv_batch_delete(b, BV_CF_MAPS, k, 8);
	}
	is_int(bv_kv_write(kv, b, 0), 0, "batch of deletes");
	key_of(k, 2);
	is_int(bv_kv_get(kv, BV_CF_MAPS, k, 8, &v, 8, &vlen), ST_ENOTFOUND,
	       "deleted");
	key_of(k, 3);
	is_int(bv_kv_get(kv, BV_CF_MAPS, k, 8, &v, 8, &vlen), 0, "kept");
	bv_kv_batch_free(b);
}

static void test_multi_get(struct bv_kv *kv)
{
	enum { N = 150 }; /* over one internal batch of 64 */
	uint8_t kb[N][8];
	const char *keys[N];
	size_t klens[N], vlens[N];
	uint64_t vals[N];
	uint8_t found[N];
	int all = 1;

	for (int i = 0; i < N; i++) {
		key_of(kb[i], (uint64_t)i);
		keys[i] = (const char *)kb[i];
		klens[i] = 8;
	}
	is_int(bv_kv_multi_get(kv, BV_CF_MAPS, N, keys, klens, vals, 8, vlens,
			       found),
	       0, "multi_get of %d keys", N);
	for (int i = 0; i < N; i++) {
		int want = i % 2 == 1;

		if (found[i] != want || (want && (vlens[i] != 8 ||
						  vals[i] != (uint64_t)i * 3)))
			all = 0;
	}
	ok(all, "found exactly the odd keys, with their values");
	is_int(bv_kv_multi_get(kv, BV_CF_MAPS, N, keys, klens, vals, 4, vlens,
			       found),
	       ST_EINVAL, "values over vcap refused");
}

static void test_iter(struct bv_kv *kv)
{
	struct bv_kv_iter *it = NULL;
	uint8_t lo[8], hi[8], seek[8];
	uint64_t first = 0, last = 0, n = 0;
	int ordered = 1;

	key_of(lo, 100);
	key_of(hi, 200);
	is_int(bv_kv_iter_new(kv, BV_CF_MAPS, lo, 8, hi, 8, &it), 0,
	       "iterator [100, 200)");
	/* Overwrite the bounds: the iterator copied them. */
	memset(lo, 0xff, 8);
	memset(hi, 0, 8);
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const void *v = bv_kv_iter_value(it, &vl);
		uint64_t i = bv_get_be64(k), val;

		memcpy(&val, v, 8);
		if (kl != 8 || vl != 8 || val != i * 3 ||
		    (n > 0 && i != last + 2))
			ordered = 0;
		if (n == 0)
			first = i;
		last = i;
		n++;
	}
	is_int(bv_kv_iter_status(it), 0, "ended cleanly");
	is_int(n, 50, "50 keys in range");
	ok(first == 101 && last == 199 && ordered, "bounds and order");

	key_of(seek, 150);
	bv_kv_iter_seek(it, seek, 8);
	ok(bv_kv_iter_valid(it), "seek inside the range");
	{
		size_t kl;

		is_int(bv_get_be64(bv_kv_iter_key(it, &kl)), 151,
		       "seek lands on the next key");
	}
	key_of(seek, 500);
	bv_kv_iter_seek(it, seek, 8);
	ok(!bv_kv_iter_valid(it), "seek past the upper bound");
	key_of(seek, 5);
	bv_kv_iter_seek(it, seek, 8);
	{
		size_t kl;

		ok(bv_kv_iter_valid(it) &&
		   bv_get_be64(bv_kv_iter_key(it, &kl)) == 101,
		   "seek below the lower bound clamps to it");
	}
	bv_kv_iter_free(it);

	key_of(lo, 990);
	is_int(bv_kv_iter_new(kv, BV_CF_MAPS, lo, 8, NULL, 0, &it), 0,
	       "iterator without an upper bound");
	n = 0;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it))
		n++;
	is_int(n, 5, "991..999");
	bv_kv_iter_free(it);
}

int main(void)
{
	struct bv_kv_opts o = { .create = 1, .cache_mb = 8 };
	struct bv_kv *kv = NULL;
	char path[512], val[16];
	size_t vlen;
	uint64_t bytes = 0, bytes2 = 0;

	ut_tmpdir(dir, sizeof(dir), "kv");
	snprintf(path, sizeof(path), "%s/db", dir);

	o.create = 0;
	is_int(bv_kv_open(path, &o, &kv), ST_ENOTFOUND,
	       "open of a missing database fails");
	ok(kv == NULL, "no handle");
	ok(strstr(bv_kv_error(), "no database") != NULL, "message: %s",
	   bv_kv_error());
	o.create = 1;
	is_int(bv_kv_open(path, &o, &kv), 0, "create");
	test_basic(kv);
	test_batch(kv);
	test_multi_get(kv);
	test_iter(kv);
	is_int(bv_kv_disk_bytes(kv, &bytes), 0, "disk bytes");
	is_int(bv_kv_flush(kv), 0, "flush memtables");
	is_int(bv_kv_disk_bytes(kv, &bytes2), 0, "disk bytes after flush");
	ok(bytes > 0 && bytes2 > 0, "sizes %llu, %llu",
	   (unsigned long long)bytes, (unsigned long long)bytes2);
	bv_kv_close(kv);
	kv = NULL;

	o.create = 0;
	is_int(bv_kv_open(path, &o, &kv), 0, "reopen existing");
	is_int(bv_kv_get(kv, BV_CF_META, "head", 4, val, sizeof(val), &vlen), 0,
	       "batch entry persisted");
	ok(vlen == 2 && memcmp(val, "h1", 2) == 0, "with its value");
	{
		uint8_t k[8];
		uint64_t v = 0;

		key_of(k, 999);
		is_int(bv_kv_get(kv, BV_CF_MAPS, k, 8, &v, 8, &vlen), 0,
		       "maps entry persisted");
		is_int(v, 999 * 3, "value");
	}
	test_iter(kv);
	bv_kv_close(kv);
	kv = NULL;

	o.read_only = 1;
	is_int(bv_kv_open(path, &o, &kv), 0, "open read-only");
	is_int(bv_kv_get(kv, BV_CF_META, "config", 6, val, sizeof(val), &vlen),
	       0, "read-only get");
	is_int(bv_kv_put(kv, BV_CF_META, "x", 1, "y", 1, 0), ST_EDB,
	       "read-only put refused");
	ok(bv_kv_error()[0] != '\0', "message: %s", bv_kv_error());
	bv_kv_close(kv);

	ut_rmtree(dir);
	return done_testing();
}
