/*
 * codec.h: chunk fingerprints (keyed XXH3-128) and the chunk codec (LZ4,
 * or raw when LZ4 does not shrink the chunk).
 */
#ifndef BV_STORAGE_CODEC_H
#define BV_STORAGE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define BV_SECRET_SIZE 192 /* bytes of the store's fingerprint key */

enum { BV_CODEC_RAW = 0, BV_CODEC_LZ4 = 1 };

typedef struct bv_fp {
	uint8_t b[16]; /* XXH3-128, low 64 bits first, each little-endian */
} bv_fp;

/* Fingerprint of DATA keyed with SECRET (BV_SECRET_SIZE bytes). */
void bv_fp_compute(const uint8_t *secret, const void *data, size_t len,
		   bv_fp *out);
int bv_fp_equal(const bv_fp *a, const bv_fp *b);

/* Tenant tags (dedup scope "group", storage/FORMAT.md "Record"): in a
 * store that confines dedup to each group, the fingerprint of a chunk
 * written for group TENANT (its id, nonzero) is the keyed fingerprint
 * XOR the 128-bit tag (TENANT, mac(TENANT)), mac being 64 bits of the
 * keyed hash of the tenant id. The same bytes written for two groups
 * so have two fingerprints, and a lookup made for one group never finds
 * the other's chunk; the tag is recovered from any record and checked
 * without a table of groups. bv_fp_tag XORs the tag of TENANT into FP
 * (TENANT 0: FP unchanged). */
void bv_fp_tag(const uint8_t *secret, uint64_t tenant, bv_fp *fp);
/* 1 when FP is the fingerprint of bytes whose untagged fingerprint is
 * GOT: equal (TENANTS 0), or GOT XOR a valid tag of a nonzero tenant
 * (TENANTS 1, a group-scoped store). The tenant goes to *TENANT (may be
 * NULL). */
int bv_fp_check(const uint8_t *secret, int tenants, const bv_fp *got,
		const bv_fp *fp, uint64_t *tenant);
/* Fills SECRET with BV_SECRET_SIZE random bytes (getrandom). -errno. */
int bv_secret_generate(uint8_t *secret);
/* Fills the LEN bytes at OUT from the same source. -errno. */
int bv_random_fill(void *out, size_t len);

/* 1 when all LEN bytes are zero. Fast: word at a time. */
int bv_is_zero(const void *data, size_t len);

/* Worst-case stored size of a chunk of RAW bytes: never more than RAW
 * (raw storage is the fallback). */
size_t bv_codec_bound(size_t raw);
size_t bv_codec_work_bound(size_t raw);
/* Encodes RAW (LEN bytes) into OUT (CAP >= bv_codec_bound(LEN)); returns
 * the stored length (> 0) and sets *CODEC; ST_EINVAL on bad arguments.
 * With CAP >= bv_codec_work_bound(LEN) LZ4 runs its faster path, which
 * never checks the space left; the result is the same. */
int64_t bv_codec_encode(const void *raw, size_t len, void *out, size_t cap,
			uint8_t *codec);
/* Decodes STORED into exactly RAW_LEN bytes at OUT. ST_ECORRUPT if the
 * codec is unknown or the bytes do not decode to exactly RAW_LEN. Safe on
 * hostile input (LZ4_decompress_safe). */
int bv_codec_decode(uint8_t codec, const void *stored, size_t stored_len,
		    void *out, size_t raw_len);

/* XXH3-64 checksum of stored bytes, as kept in container records. */
uint64_t bv_checksum64(const void *data, size_t len);
/* The plain (unkeyed) digest of a chunk, for consistency checks with
 * agents, which do not know the store's secret: XXH3-128 with seed 0,
 * low 64 bits then high 64 bits, little-endian. */
void bv_digest_compute(const void *data, size_t len, uint8_t out[16]);

#endif
