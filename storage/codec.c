/*
 * codec.c: keyed chunk fingerprints, the zero test, and the chunk codec.
 *
 * The fingerprint is XXH3-128 keyed with the store's random secret, so a
 * client that does not know the secret cannot craft colliding chunks. The
 * codec is LZ4 when it shrinks the chunk, else the raw bytes: the stored
 * length therefore never exceeds the raw length, which lets callers size
 * buffers with the raw length alone.
 */
#include "codec.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/random.h>

#include <lz4.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_128bits_withSecret's size checks */
#include <xxhash.h>

#include "endian.h"
#include "errcodes.h"

_Static_assert(BV_SECRET_SIZE >= XXH3_SECRET_SIZE_MIN,
	       "XXH3 needs a longer secret");

#ifdef BV_FP_SIMD
void bv_fp_avx2(const uint8_t *secret, size_t secret_len, const void *data,
		size_t len, uint64_t out[2]);
void bv_fp_avx512(const uint8_t *secret, size_t secret_len, const void *data,
		  size_t len, uint64_t out[2]);

static void fp_generic(const uint8_t *secret, size_t secret_len,
		       const void *data, size_t len, uint64_t out[2])
{
	XXH128_hash_t h = XXH3_128bits_withSecret(data, len, secret,
						  secret_len);
	out[0] = h.low64;
	out[1] = h.high64;
}

uint64_t bv_ck_avx2(const void *data, size_t len);
uint64_t bv_ck_avx512(const void *data, size_t len);
void bv_pd_avx2(const void *data, size_t len, uint64_t out[2]);
void bv_pd_avx512(const void *data, size_t len, uint64_t out[2]);
typedef void pd_fn(const void *, size_t, uint64_t[2]);

static void pd_generic(const void *data, size_t len, uint64_t out[2])
{
	XXH128_hash_t h = XXH3_128bits(data, len);
	out[0] = h.low64;
	out[1] = h.high64;
}

static pd_fn *pick_pd(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return bv_pd_avx512;
	if (__builtin_cpu_supports("avx2"))
		return bv_pd_avx2;
	return pd_generic;
}

typedef void fp_fn(const uint8_t *, size_t, const void *, size_t,
		   uint64_t[2]);
typedef uint64_t ck_fn(const void *, size_t);

static uint64_t ck_generic(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

/* Chosen once; every variant gives the same bytes (fp_simd.c). */
static fp_fn *pick_fp(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return bv_fp_avx512;
	if (__builtin_cpu_supports("avx2"))
		return bv_fp_avx2;
	return fp_generic;
}

static ck_fn *pick_ck(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return bv_ck_avx512;
	if (__builtin_cpu_supports("avx2"))
		return bv_ck_avx2;
	return ck_generic;
}
#endif

void bv_fp_compute(const uint8_t *secret, const void *data, size_t len,
		   bv_fp *out)
{
#ifdef BV_FP_SIMD
	static fp_fn *_Atomic fn;
	fp_fn *f = fn;
	uint64_t h[2];

	if (!f)
		fn = f = pick_fp();
	f(secret, BV_SECRET_SIZE, data, len, h);
	bv_le64(out->b, h[0]);
	bv_le64(out->b + 8, h[1]);
#else
	XXH128_hash_t h = XXH3_128bits_withSecret(data, len, secret,
						  BV_SECRET_SIZE);

	bv_le64(out->b, h.low64);
	bv_le64(out->b + 8, h.high64);
#endif
}

int bv_fp_equal(const bv_fp *a, const bv_fp *b)
{
	return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

/* 64 bits of the keyed hash of a label and TENANT: the half of the tag
 * that proves it was made with this store's key. */
static uint64_t tenant_mac(const uint8_t *secret, uint64_t tenant)
{
	uint8_t in[24] = "bvault tenant tag v1";
	bv_fp h;

	bv_le64(in + 16, tenant);
	bv_fp_compute(secret, in, sizeof in, &h);
	return bv_get_le64(h.b + 8);
}

void bv_fp_tag(const uint8_t *secret, uint64_t tenant, bv_fp *fp)
{
	if (tenant == 0)
		return;
	bv_le64(fp->b, bv_get_le64(fp->b) ^ tenant);
	bv_le64(fp->b + 8, bv_get_le64(fp->b + 8) ^ tenant_mac(secret, tenant));
}

int bv_fp_check(const uint8_t *secret, int tenants, const bv_fp *got,
		const bv_fp *fp, uint64_t *tenant)
{
	uint64_t t = bv_get_le64(got->b) ^ bv_get_le64(fp->b);
	uint64_t m = bv_get_le64(got->b + 8) ^ bv_get_le64(fp->b + 8);

	if (tenant)
		*tenant = t;
	if (!tenants)
		return t == 0 && m == 0;
	return t != 0 && m == tenant_mac(secret, t);
}

int bv_random_fill(void *out, size_t len)
{
	uint8_t *p = out;
	size_t got = 0;
	int ret = 0;

	while (got < len) {
		ssize_t n = getrandom(p + got, len - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		got += (size_t)n;
	}
out:
	return ret;
}

int bv_secret_generate(uint8_t *secret)
{
	return bv_random_fill(secret, BV_SECRET_SIZE);
}

int bv_is_zero(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t acc = 0;

	/* Head bytes until the pointer is word aligned. */
	while (len > 0 && ((uintptr_t)p & 7u) != 0) {
		if (*p != 0)
			return 0;
		p++;
		len--;
	}
	/* OR eight words per step and test once: branch-light, vectorizable,
	 * and still stops early on data that is not zero. */
	while (len >= 64) {
		uint64_t w[8];

		memcpy(w, p, sizeof(w));
		acc = w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
		if (acc != 0)
			return 0;
		p += 64;
		len -= 64;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, sizeof(w));
		if (w != 0)
			return 0;
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		if (*p != 0)
			return 0;
		p++;
		len--;
	}
	return 1;
}

size_t bv_codec_bound(size_t raw)
{
	return raw;
}

size_t bv_codec_work_bound(size_t raw)
{
	return raw > (size_t)LZ4_MAX_INPUT_SIZE ? raw :
	       (size_t)LZ4_compressBound((int)raw);
}

int64_t bv_codec_encode(const void *raw, size_t len, void *out, size_t cap,
			uint8_t *codec)
{
	int64_t ret;
	int n;

	if (raw == NULL || out == NULL || codec == NULL || len == 0 ||
	    len > (size_t)LZ4_MAX_INPUT_SIZE || cap < len) {
		ret = ST_EINVAL;
		goto out;
	}
	/* Room for LZ4's worst case lets it skip its bound checks; else
	 * giving it one byte less than the input makes it fail (return 0)
	 * exactly when compression would not shrink the chunk. */
	if (cap >= (size_t)LZ4_compressBound((int)len))
		n = LZ4_compress_default(raw, out, (int)len,
					 LZ4_compressBound((int)len));
	else
		n = LZ4_compress_default(raw, out, (int)len, (int)(len - 1));
	if (n > 0 && (size_t)n < len) {
		*codec = BV_CODEC_LZ4;
		ret = n;
		goto out;
	}
	memcpy(out, raw, len);
	*codec = BV_CODEC_RAW;
	ret = (int64_t)len;
out:
	return ret;
}

int bv_codec_decode(uint8_t codec, const void *stored, size_t stored_len,
		    void *out, size_t raw_len)
{
	int ret = 0;
	int n;

	if (stored == NULL || out == NULL) {
		ret = ST_EINVAL;
		goto out;
	}
	switch (codec) {
	case BV_CODEC_RAW:
		if (stored_len != raw_len) {
			ret = ST_ECORRUPT;
			goto out;
		}
		memcpy(out, stored, raw_len);
		break;
	case BV_CODEC_LZ4:
		/* Compressed data is strictly smaller than the raw chunk
		 * (else it would have been stored raw). */
		if (stored_len == 0 || stored_len >= raw_len ||
		    raw_len > (size_t)INT_MAX) {
			ret = ST_ECORRUPT;
			goto out;
		}
		n = LZ4_decompress_safe(stored, out, (int)stored_len,
					(int)raw_len);
		if (n < 0 || (size_t)n != raw_len) {
			ret = ST_ECORRUPT;
			goto out;
		}
		break;
	default:
		ret = ST_ECORRUPT;
		break;
	}
out:
	return ret;
}

uint64_t bv_checksum64(const void *data, size_t len)
{
#ifdef BV_FP_SIMD
	static ck_fn *_Atomic fn;
	ck_fn *f = fn;

	if (!f)
		fn = f = pick_ck();
	return f(data, len);
#else
	return XXH3_64bits(data, len);
#endif
}

void bv_digest_compute(const void *data, size_t len, uint8_t out[16])
{
#ifdef BV_FP_SIMD
	static pd_fn *_Atomic fn;
	pd_fn *f = fn;
	uint64_t h[2];

	if (!f)
		fn = f = pick_pd();
	f(data, len, h);
	bv_le64(out, h[0]);
	bv_le64(out + 8, h[1]);
#else
	XXH128_hash_t h = XXH3_128bits(data, len);

	bv_le64(out, h.low64);
	bv_le64(out + 8, h.high64);
#endif
}
