/*
 * meta.c: the records of the meta column family, to and from bytes.
 * Values are little-endian and begin with a record version byte, so a
 * later format can tell its own records from ours. Every decoder checks
 * lengths before it reads: the index is disk input too (STYLE habit 5).
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define REC_V1 1

size_t bv_key_name(uint8_t *key, const char *prefix, const char *name)
{
	size_t p = strlen(prefix), n = strlen(name);
	memcpy(key, prefix, p);
	memcpy(key + p, name, n);
	return p + n;
}

size_t bv_key_id(uint8_t *key, const char *prefix, uint64_t id)
{
	size_t p = strlen(prefix);
	memcpy(key, prefix, p);
	bv_be64(key + p, id);
	return p + 8;
}

size_t bv_key_rp(uint8_t *key, uint64_t gid, uint64_t rp)
{
	memcpy(key, "p/", 2);
	bv_be64(key + 2, gid);
	bv_be64(key + 10, rp);
	return 18;
}

void bv_key_map(uint8_t key[BV_MAP_KEY], uint64_t rid, uint64_t chunk,
		uint64_t version)
{
	bv_be64(key, rid);
	bv_be64(key + 8, chunk);
	bv_be64(key + 16, ~version);
}

void bv_key_birth(uint8_t key[BV_BIRTH_KEY], uint64_t rid, uint64_t version,
		  uint64_t chunk)
{
	bv_be64(key, rid);
	bv_be64(key + 8, version);
	bv_be64(key + 16, chunk);
}

void bv_map_put(struct bv_kv_batch *b, uint64_t rid, uint64_t chunk,
		uint64_t version, const void *val, size_t vlen)
{
	uint8_t key[BV_MAP_KEY];

	bv_key_map(key, rid, chunk, version);
	bv_kv_batch_put(b, BV_CF_MAPS, key, sizeof key, val, vlen);
	bv_key_birth(key, rid, version, chunk);
	bv_kv_batch_put(b, BV_CF_BIRTHS, key, sizeof key, NULL, 0);
}

void bv_map_delete(struct bv_kv_batch *b, uint64_t rid, uint64_t chunk,
		   uint64_t version)
{
	uint8_t key[BV_MAP_KEY];

	bv_key_map(key, rid, chunk, version);
	bv_kv_batch_delete(b, BV_CF_MAPS, key, sizeof key);
	bv_key_birth(key, rid, version, chunk);
	bv_kv_batch_delete(b, BV_CF_BIRTHS, key, sizeof key);
}

static int get_meta(bv_store *s, const uint8_t *key, size_t klen, void *val,
		    size_t cap, size_t *vlen)
{
	int rc = bv_kv_get(s->kv, BV_CF_META, key, klen, val, cap, vlen);
	if (rc == ST_EINVAL)
		return BV_ECORRUPT; /* larger than any record of ours */
	return rc;
}

int bv_rrec_get(bv_store *s, const char *name, struct bv_rrec *r)
{
	uint8_t key[128], v[64];
	size_t len;
	int rc = get_meta(s, key, bv_key_name(key, "r/", name), v, sizeof v,
			  &len);
	if (rc)
		return rc;
	if (len != 37 || v[0] != REC_V1)
		return BV_ECORRUPT;
	r->rid = bv_get_le64(v + 1);
	r->gid = bv_get_le64(v + 9);
	r->chunk_size = bv_get_le32(v + 17);
	r->size = bv_get_le64(v + 21);
	r->head = bv_get_le64(v + 29);
	if (r->chunk_size < BV_CHUNK_MIN || r->chunk_size > BV_CHUNK_MAX ||
	    (r->chunk_size & (r->chunk_size - 1)) || r->size % BV_SECTOR)
		return BV_ECORRUPT;
	return 0;
}

void bv_rrec_put(struct bv_kv_batch *b, const char *name,
		 const struct bv_rrec *r)
{
	uint8_t key[128], v[37];
	v[0] = REC_V1;
	bv_le64(v + 1, r->rid);
	bv_le64(v + 9, r->gid);
	bv_le32(v + 17, r->chunk_size);
	bv_le64(v + 21, r->size);
	bv_le64(v + 29, r->head);
	bv_kv_batch_put(b, BV_CF_META, key, bv_key_name(key, "r/", name), v,
			sizeof v);
}

int bv_grec_get(bv_store *s, const char *name, struct bv_grec *g)
{
	uint8_t key[128], v[21 + 8 * BV_GROUP_MAX_MEMBERS];
	size_t len;
	int rc = get_meta(s, key, bv_key_name(key, "g/", name), v, sizeof v,
			  &len);
	if (rc)
		return rc;
	if (len < 21 || v[0] != REC_V1)
		return BV_ECORRUPT;
	g->gid = bv_get_le64(v + 1);
	g->latest_rp = bv_get_le64(v + 9);
	g->n = bv_get_le32(v + 17);
	if (g->n > BV_GROUP_MAX_MEMBERS || len != 21 + 8 * (size_t)g->n)
		return BV_ECORRUPT;
	for (uint32_t i = 0; i < g->n; i++)
		g->members[i] = bv_get_le64(v + 21 + 8 * i);
	return 0;
}

void bv_grec_put(struct bv_kv_batch *b, const char *name,
		 const struct bv_grec *g)
{
	uint8_t key[128], v[21 + 8 * BV_GROUP_MAX_MEMBERS];
	v[0] = REC_V1;
	bv_le64(v + 1, g->gid);
	bv_le64(v + 9, g->latest_rp);
	bv_le32(v + 17, g->n);
	for (uint32_t i = 0; i < g->n; i++)
		bv_le64(v + 21 + 8 * i, g->members[i]);
	bv_kv_batch_put(b, BV_CF_META, key, bv_key_name(key, "g/", name), v,
			21 + 8 * (size_t)g->n);
}

#define RP_FIXED (1 + 8 + 1 + 1)

int bv_rprec_decode(const void *val, size_t len, struct bv_rprec *p)
{
	const uint8_t *v = val;
	size_t pos;
	if (len < RP_FIXED + 4 || v[0] != REC_V1)
		return BV_ECORRUPT;
	p->time = (int64_t)bv_get_le64(v + 1);
	p->consistency = v[9];
	size_t ll = v[10];
	if (ll > BV_LABEL_MAX || len < RP_FIXED + ll + 4)
		return BV_ECORRUPT;
	memcpy(p->label, v + RP_FIXED, ll);
	p->label[ll] = 0;
	pos = RP_FIXED + ll;
	p->n = bv_get_le32(v + pos);
	pos += 4;
	if (p->n == 0 || p->n > BV_GROUP_MAX_MEMBERS ||
	    len != pos + 24 * (size_t)p->n)
		return BV_ECORRUPT;
	for (uint32_t i = 0; i < p->n; i++, pos += 24) {
		p->m[i].rid = bv_get_le64(v + pos);
		p->m[i].version = bv_get_le64(v + pos + 8);
		p->m[i].size = bv_get_le64(v + pos + 16);
	}
	return 0;
}

int bv_rprec_get(bv_store *s, uint64_t gid, uint64_t rp, struct bv_rprec *p)
{
	uint8_t key[32];
	static _Thread_local uint8_t v[RP_FIXED + BV_LABEL_MAX + 4 +
				       24 * BV_GROUP_MAX_MEMBERS];
	size_t len;
	int rc = get_meta(s, key, bv_key_rp(key, gid, rp), v, sizeof v, &len);
	if (rc)
		return rc;
	return bv_rprec_decode(v, len, p);
}

void bv_rprec_put(struct bv_kv_batch *b, uint64_t gid, uint64_t rp,
		  const struct bv_rprec *p)
{
	uint8_t key[32];
	static _Thread_local uint8_t v[RP_FIXED + BV_LABEL_MAX + 4 +
				       24 * BV_GROUP_MAX_MEMBERS];
	size_t ll = strlen(p->label), pos;
	v[0] = REC_V1;
	bv_le64(v + 1, (uint64_t)p->time);
	v[9] = p->consistency;
	v[10] = (uint8_t)ll;
	memcpy(v + RP_FIXED, p->label, ll);
	pos = RP_FIXED + ll;
	bv_le32(v + pos, p->n);
	pos += 4;
	for (uint32_t i = 0; i < p->n; i++, pos += 24) {
		bv_le64(v + pos, p->m[i].rid);
		bv_le64(v + pos + 8, p->m[i].version);
		bv_le64(v + pos + 16, p->m[i].size);
	}
	bv_kv_batch_put(b, BV_CF_META, key, bv_key_rp(key, gid, rp), v, pos);
}

static size_t key_ident(uint8_t *key, uint64_t rid, uint64_t version)
{
	memcpy(key, "v/", 2);
	bv_be64(key + 2, rid);
	bv_be64(key + 10, version);
	return 18;
}

static size_t key_ident_rev(uint8_t *key, uint64_t rid,
			    const uint8_t id[BV_ID_SIZE])
{
	memcpy(key, "vi/", 3);
	bv_be64(key + 3, rid);
	memcpy(key + 11, id, BV_ID_SIZE);
	return 11 + BV_ID_SIZE;
}

int bv_ident_none(const uint8_t id[BV_ID_SIZE])
{
	for (size_t i = 0; i < BV_ID_SIZE; i++)
		if (id[i])
			return 0;
	return 1;
}

char *bv_ident_hex(const uint8_t id[BV_ID_SIZE], char buf[2 * BV_ID_SIZE + 1])
{
	static const char hex[] = "0123456789abcdef";

	if (bv_ident_none(id)) {
		snprintf(buf, 2 * BV_ID_SIZE + 1, "none");
		return buf;
	}
	for (size_t i = 0; i < BV_ID_SIZE; i++) {
		buf[2 * i] = hex[id[i] >> 4];
		buf[2 * i + 1] = hex[id[i] & 15];
	}
	buf[2 * BV_ID_SIZE] = 0;
	return buf;
}

int bv_ident_new(uint8_t id[BV_ID_SIZE])
{
	int rc;

	do {
		if ((rc = bv_random_fill(id, BV_ID_SIZE)))
			break;
	} while (bv_ident_none(id));
	return rc;
}

int bv_ident_get(bv_store *s, uint64_t rid, uint64_t version,
		 uint8_t id[BV_ID_SIZE])
{
	uint8_t key[32], v[1 + BV_ID_SIZE + 1];
	size_t len;
	int rc;

	memset(id, 0, BV_ID_SIZE);
	if (version == 0)
		return 0;
	rc = get_meta(s, key, key_ident(key, rid, version), v, sizeof v, &len);
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (len != 1 + BV_ID_SIZE || v[0] != REC_V1 ||
	    bv_ident_none(v + 1))
		return BV_ECORRUPT;
	memcpy(id, v + 1, BV_ID_SIZE);
	return 0;
}

int bv_ident_find(bv_store *s, uint64_t rid, const uint8_t id[BV_ID_SIZE],
		  uint64_t *version)
{
	uint8_t key[32], v[16];
	size_t len;
	int rc;

	rc = get_meta(s, key, key_ident_rev(key, rid, id), v, sizeof v, &len);
	if (rc)
		return rc;
	if (len != 9 || v[0] != REC_V1 || bv_get_le64(v + 1) == 0)
		return BV_ECORRUPT;
	*version = bv_get_le64(v + 1);
	return 0;
}

void bv_ident_put(struct bv_kv_batch *b, uint64_t rid, uint64_t version,
		  const uint8_t id[BV_ID_SIZE])
{
	uint8_t key[32], v[1 + BV_ID_SIZE];

	v[0] = REC_V1;
	memcpy(v + 1, id, BV_ID_SIZE);
	bv_kv_batch_put(b, BV_CF_META, key, key_ident(key, rid, version), v,
			sizeof v);
	v[0] = REC_V1;
	bv_le64(v + 1, version);
	bv_kv_batch_put(b, BV_CF_META, key, key_ident_rev(key, rid, id), v, 9);
}

int bv_id_name(bv_store *s, const char *prefix, uint64_t id, char *buf)
{
	uint8_t key[32];
	size_t len;
	int rc = get_meta(s, key, bv_key_id(key, prefix, id), buf,
			  BV_NAME_MAX, &len);
	if (rc)
		return rc;
	if (len == 0)
		return BV_ECORRUPT;
	buf[len] = 0;
	return 0;
}

static int get_u64s(bv_store *s, const char *k, uint64_t *out, size_t n)
{
	uint8_t v[64];
	size_t len;
	int rc = get_meta(s, (const uint8_t *)k, strlen(k), v, sizeof v, &len);
	if (rc == ST_ENOTFOUND) {
		memset(out, 0, n * sizeof *out);
		return 0;
	}
	if (rc)
		return rc;
	if (len != 8 * n)
		return BV_ECORRUPT;
	for (size_t i = 0; i < n; i++)
		out[i] = bv_get_le64(v + 8 * i);
	return 0;
}

static void put_u64s(struct bv_kv_batch *b, const char *k,
		     const uint64_t *in, size_t n)
{
	uint8_t v[64];
	for (size_t i = 0; i < n; i++)
		bv_le64(v + 8 * i, in[i]);
	bv_kv_batch_put(b, BV_CF_META, k, strlen(k), v, 8 * n);
}

int bv_cstat_get(bv_store *s, struct bv_cstat *c)
{
	uint64_t v[3] = { 0 };
	int rc = get_u64s(s, "stat/c", v, 3);
	c->chunks = v[0];
	c->raw_bytes = v[1];
	c->stored_bytes = v[2];
	return rc;
}

void bv_cstat_put(struct bv_kv_batch *b, const struct bv_cstat *c)
{
	uint64_t v[3] = { c->chunks, c->raw_bytes, c->stored_bytes };
	put_u64s(b, "stat/c", v, 3);
}

int bv_mstat_get(bv_store *s, struct bv_mstat *m)
{
	uint64_t v[2] = { 0 };
	int rc = get_u64s(s, "stat/m", v, 2);
	m->ingested_bytes = v[0];
	m->map_entries = v[1];
	return rc;
}

void bv_mstat_put(struct bv_kv_batch *b, const struct bv_mstat *m)
{
	uint64_t v[2] = { m->ingested_bytes, m->map_entries };
	put_u64s(b, "stat/m", v, 2);
}

int bv_seq_next(bv_store *s, struct bv_kv_batch *b, const char *which,
		uint64_t *id)
{
	char k[32] = "seq/";
	uint64_t v = 0;
	strncat(k, which, sizeof k - 5);
	int rc = get_u64s(s, k, &v, 1);
	if (rc)
		return rc;
	*id = v + 1;
	put_u64s(b, k, id, 1);
	return 0;
}
