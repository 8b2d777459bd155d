/*
 * fp_simd.c: XXH3-128 (fingerprints) and XXH3-64 (record checksums)
 * compiled inline for one instruction set. meson builds this file once
 * per variant (-mavx2, -mavx512f) with BV_FP_VARIANT, BV_CK_VARIANT and
 * BV_PD_VARIANT naming the functions; codec.c picks the best ones the CPU has at run
 * time. xxHash's output does not depend on the variant (its
 * format is fixed), and unit-codec checks a pinned fingerprint, so every
 * variant keys the same chunk to the same fingerprint.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <stddef.h>
#include <stdint.h>

void BV_FP_VARIANT(const uint8_t *secret, size_t secret_len,
		   const void *data, size_t len, uint64_t out[2]);

void BV_FP_VARIANT(const uint8_t *secret, size_t secret_len,
		   const void *data, size_t len, uint64_t out[2])
{
	XXH128_hash_t h = XXH3_128bits_withSecret(data, len, secret,
						  secret_len);
	out[0] = h.low64;
	out[1] = h.high64;
}

uint64_t BV_CK_VARIANT(const void *data, size_t len);

uint64_t BV_CK_VARIANT(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

void BV_PD_VARIANT(const void *data, size_t len, uint64_t out[2]);

void BV_PD_VARIANT(const void *data, size_t len, uint64_t out[2])
{
	XXH128_hash_t h = XXH3_128bits(data, len);
	out[0] = h.low64;
	out[1] = h.high64;
}
