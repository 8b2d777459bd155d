/*
 * codec.c: fingerprints, zero detection and the chunk codec.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "codec.h"
#include "errcodes.h"
#include "util.h"

#define BIG (256u << 10)

static uint8_t raw[BIG], enc[BIG], dec[BIG], enc2[BIG + BIG / 128 + 64];

/* Encodes and decodes LEN bytes of RAW; returns the stored length, or -1
 * when the round trip did not give the same bytes back. */
static int64_t round_trip(size_t len, uint8_t *codec)
{
	int64_t n = bv_codec_encode(raw, len, enc, bv_codec_bound(len), codec);

	if (n <= 0 || (size_t)n > len)
		return -1;
	memset(dec, 0xa5, len);
	if (bv_codec_decode(*codec, enc, (size_t)n, dec, len) != 0)
		return -1;
	return memcmp(raw, dec, len) == 0 ? n : -1;
}

static void test_fp(void)
{
	uint8_t s1[BV_SECRET_SIZE], s2[BV_SECRET_SIZE];
	bv_fp a, b, c;

	is_int(bv_secret_generate(s1), 0, "secret generate");
	is_int(bv_secret_generate(s2), 0, "secret generate again");
	ok(memcmp(s1, s2, sizeof(s1)) != 0, "two secrets differ");
	ut_fill_random(raw, 65536);
	bv_fp_compute(s1, raw, 65536, &a);
	bv_fp_compute(s1, raw, 65536, &b);
	ok(bv_fp_equal(&a, &b), "fingerprint is deterministic");
	bv_fp_compute(s2, raw, 65536, &c);
	ok(!bv_fp_equal(&a, &c), "another secret, another fingerprint");
	raw[65535] ^= 1;
	bv_fp_compute(s1, raw, 65536, &c);
	ok(!bv_fp_equal(&a, &c), "one flipped bit changes the fingerprint");

	/* Pinned layout: low 64 bits first, little-endian. The value below
	 * is XXH3-128 with a secret of bytes 0..191 over "bvault". */
	{
		uint8_t sec[BV_SECRET_SIZE];
		bv_fp f;
		uint64_t lo = 0, hi = 0;

		for (int i = 0; i < BV_SECRET_SIZE; i++)
			sec[i] = (uint8_t)i;
		bv_fp_compute(sec, "bvault", 6, &f);
		for (int i = 7; i >= 0; i--) {
			lo = lo << 8 | f.b[i];
			hi = hi << 8 | f.b[8 + i];
		}
		diag("fp(bvault) = %016llx %016llx", (unsigned long long)hi,
		     (unsigned long long)lo);
		{
			XXH128_hash_t h = XXH3_128bits_withSecret(
				"bvault", 6, sec, sizeof(sec));

			ok(lo == h.low64 && hi == h.high64,
			   "layout: low64 then high64, little-endian");
		}
		ok(lo == 0x67a370ad114c1656ull && hi == 0x4cc4e9ea030be2a2ull,
		   "pinned value (format stability)");
	}
}

static void test_zero(void)
{
	static uint8_t z[8192 + 64];
	int all = 1;

	ok(bv_is_zero(z, 0), "empty is zero");
	ok(bv_is_zero(z, sizeof(z)), "zero buffer is zero");
	/* Every position and alignment must be seen. */
	for (size_t off = 0; off < 9 && all; off++) {
		for (size_t pos = off; pos < 300 + off && all; pos++) {
			z[pos] = 1;
			if (bv_is_zero(z + off, 300) ||
			    !bv_is_zero(z + off, pos - off))
				all = 0;
			z[pos] = 0;
		}
	}
	ok(all, "a single nonzero byte is found at every offset");
	z[sizeof(z) - 1] = 0x80;
	ok(!bv_is_zero(z, sizeof(z)), "last byte nonzero");
	ok(bv_is_zero(z, sizeof(z) - 1), "all but last byte zero");
	z[sizeof(z) - 1] = 0;
}

static void test_codec(void)
{
	uint8_t codec = 99;
	int64_t n;
	int good = 1;

	memset(raw, 0, BIG);
	n = round_trip(65536, &codec);
	ok(n > 0 && n < 1024, "zeros compress (%lld bytes)", (long long)n);
	is_int(codec, BV_CODEC_LZ4, "zeros use lz4");

	ut_fill_text(raw, BIG);
	n = round_trip(BIG, &codec);
	ok(n > 0 && n < BIG / 2, "text compresses (%lld bytes)", (long long)n);
	is_int(codec, BV_CODEC_LZ4, "text uses lz4");

	ut_fill_random(raw, BIG);
	n = round_trip(BIG, &codec);
	is_int(n, BIG, "random data is stored at full length");
	is_int(codec, BV_CODEC_RAW, "random data is stored raw");

	for (int i = 0; i < 200 && good; i++) {
		size_t len = 1 + ut_rand() % 70000;

		if (i % 2)
			ut_fill_text(raw, len);
		else
			ut_fill_random(raw, len);
		if (round_trip(len, &codec) < 0)
			good = 0;
	}
	ok(good, "200 random-length round trips");

	n = bv_codec_encode(raw, 0, enc, 0, &codec);
	is_int(n, ST_EINVAL, "empty input refused");
	n = bv_codec_encode(raw, 100, enc, 99, &codec);
	is_int(n, ST_EINVAL, "output below the bound refused");
}

static void test_decode_bad(void)
{
	uint8_t codec;
	int64_t n;
	int clean = 1;

	ut_fill_text(raw, 65536);
	n = bv_codec_encode(raw, 65536, enc, sizeof(enc), &codec);
	ok(codec == BV_CODEC_LZ4 && n > 16, "text compressed for damage");

	is_int(bv_codec_decode(7, enc, (size_t)n, dec, 65536), ST_ECORRUPT,
	       "unknown codec");
	is_int(bv_codec_decode(BV_CODEC_LZ4, enc, (size_t)n - 1, dec, 65536),
	       ST_ECORRUPT, "truncated lz4");
	is_int(bv_codec_decode(BV_CODEC_LZ4, enc, (size_t)n, dec, 65535),
	       ST_ECORRUPT, "raw length one short");
	is_int(bv_codec_decode(BV_CODEC_LZ4, enc, (size_t)n, dec, 65537),
	       ST_ECORRUPT, "raw length one long");
	is_int(bv_codec_decode(BV_CODEC_RAW, enc, 10, dec, 11), ST_ECORRUPT,
	       "raw with mismatched lengths");
	is_int(bv_codec_decode(BV_CODEC_LZ4, enc, 65536, dec, 65536),
	       ST_ECORRUPT, "lz4 claiming no gain");

	/* Random damage must fail or decode to exactly 65536 bytes (and then
	 * the fingerprint check catches it); it must never overrun. */
	for (int i = 0; i < 2000; i++) {
		uint8_t bad[BIG];
		int r;

		memcpy(bad, enc, (size_t)n);
		bad[ut_rand() % (uint64_t)n] ^= (uint8_t)(1 + ut_rand() % 255);
		r = bv_codec_decode(BV_CODEC_LZ4, bad, (size_t)n, dec, 65536);
		if (r != 0 && r != ST_ECORRUPT)
			clean = 0;
	}
	ok(clean, "2000 damaged inputs fail cleanly");
	{
		uint8_t junk[4096];
		int r;

		ut_fill_random(junk, sizeof(junk));
		r = bv_codec_decode(BV_CODEC_LZ4, junk, sizeof(junk), dec,
				    65536);
		is_int(r, ST_ECORRUPT, "random bytes are not lz4");
	}
}

/* With room for LZ4's worst case the encoder takes LZ4's unchecked path:
 * the stored bytes and the codec must be what the checked path gives,
 * including data that barely shrinks or grows. */
static void test_work_bound(void)
{
	int same = 1;

	ok(bv_codec_work_bound(65536) >= 65536 + 65536 / 255,
	   "work bound leaves room for LZ4's worst case");
	for (int i = 0; i < 300 && same; i++) {
		size_t len = 1 + ut_rand() % 70000;
		uint8_t c1 = 99, c2 = 98;
		int64_t n1, n2;

		ut_fill_random(raw, len);
		/* Text over a random share of the chunk: from barely
		 * compressible to very. */
		ut_fill_text(raw, len * (size_t)(i % 11) / 10);
		n1 = bv_codec_encode(raw, len, enc, len, &c1);
		n2 = bv_codec_encode(raw, len, enc2, bv_codec_work_bound(len),
				     &c2);
		same = n1 > 0 && n1 == n2 && c1 == c2 &&
		       memcmp(enc, enc2, (size_t)n1) == 0 &&
		       (size_t)n2 <= len;
	}
	ok(same, "unchecked and checked LZ4 paths store the same bytes");
}

static void test_checksum(void)
{
	uint64_t a, b;

	ut_fill_random(raw, 4096);
	a = bv_checksum64(raw, 4096);
	b = bv_checksum64(raw, 4096);
	ok(a == b, "checksum deterministic");
	raw[100] ^= 4;
	ok(bv_checksum64(raw, 4096) != a, "checksum sees a flipped bit");

	/* The checksum is plain XXH3-64 whatever variant the CPU picked:
	 * records written on one machine verify on any other. */
	static const size_t lens[] = { 0, 1, 3, 16, 17, 128, 129, 240, 241,
				       1000, 4096, 65536, BIG - 5 };
	int same = 1;
	ut_fill_random(raw, BIG);
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
		same &= bv_checksum64(raw + (i & 3), lens[i]) ==
			XXH3_64bits(raw + (i & 3), lens[i]);
	ok(same, "checksum equals libxxhash's XXH3_64bits at every length");

	/* The plain digest is what an agent computes with any XXH3-128:
	 * seed 0, low half first, little-endian. */
	same = 1;
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		uint8_t d[16], want[16];
		XXH128_hash_t h = XXH3_128bits(raw + (i & 3), lens[i]);
		for (int k = 0; k < 8; k++) {
			want[k] = (uint8_t)(h.low64 >> (8 * k));
			want[8 + k] = (uint8_t)(h.high64 >> (8 * k));
		}
		bv_digest_compute(raw + (i & 3), lens[i], d);
		same &= memcmp(d, want, 16) == 0;
	}
	ok(same, "plain digest equals libxxhash's XXH3_128bits at every "
	   "length");
}

int main(void)
{
	ut_seed(12345);
	test_fp();
	test_zero();
	test_codec();
	test_decode_bad();
	test_work_bound();
	test_checksum();
	return done_testing();
}
