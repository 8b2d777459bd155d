/*
 * usage.c: what each group and replica takes (bv_stats_usage): its
 * logical bytes, its RPs, and the chunks its committed versions name
 * that no other replica (for a group: no replica outside it) names, with
 * their container bytes: what removing it and collecting would give
 * back.
 *
 * "Names" is decided per chunk over every map entry of every committed
 * version, so it needs, per fingerprint, who names it: one replica, or
 * more than one (and the same for groups). That table is as large as the
 * chunks the store holds, so it is built in passes over a partition of
 * the fingerprints (their low 64 bits modulo the pass count), each pass
 * a walk of the whole map then of the chunk index: memory stays within
 * TABLE_MAX whatever the store holds, and time is the pass count times
 * one walk (one pass below about 4 million chunks).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TABLE_MAX ((size_t)256 << 20)

struct owner {
	uint8_t fp[16];
	uint32_t rep;   /* index + 1 into the replica table; 0: empty slot */
	uint32_t grp;   /* index + 1 into the group table */
	uint8_t multi_rep, multi_grp;
};

struct urep {
	uint64_t rid;
	uint32_t grp; /* index into the group table */
	bv_usage *u;
};

struct ugrp {
	char name[BV_NAME_MAX + 1];
	bv_usage *u;
};

struct uctx {
	bv_store *s;
	struct urep *reps;
	size_t nreps, capreps;
	struct ugrp *grps;
	size_t ngrps, capgrps;
	int rc;
};

static int by_rid(const void *a, const void *b)
{
	const struct urep *x = a, *y = b;

	return x->rid < y->rid ? -1 : x->rid > y->rid;
}

static struct urep *find_rep(struct uctx *c, uint64_t rid)
{
	struct urep key = { .rid = rid };

	return bsearch(&key, c->reps, c->nreps, sizeof *c->reps, by_rid);
}

static int collect(void *ud, const bv_replica_info *ri)
{
	struct uctx *c = ud;
	struct bv_rrec r;
	size_t g;

	if (c->nreps == c->capreps) {
		size_t cap = c->capreps ? 2 * c->capreps : 16;
		struct urep *n = realloc(c->reps, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		c->reps = n;
		c->capreps = cap;
	}
	for (g = 0; g < c->ngrps; g++)
		if (strcmp(c->grps[g].name, ri->group) == 0)
			break;
	if (g == c->ngrps) {
		if (c->ngrps == c->capgrps) {
			size_t cap = c->capgrps ? 2 * c->capgrps : 16;
			struct ugrp *n = realloc(c->grps, cap * sizeof *n);
			if (!n)
				return -ENOMEM;
			c->grps = n;
			c->capgrps = cap;
		}
		snprintf(c->grps[g].name, sizeof c->grps[g].name, "%s",
			 ri->group);
		c->ngrps++;
	}
	if (bv_rrec_get(c->s, ri->name, &r))
		return BV_ECORRUPT;
	c->reps[c->nreps++] = (struct urep){ .rid = r.rid, .grp = (uint32_t)g };
	return 0;
}

static int count_rp(void *ud, const bv_rp_info *rp)
{
	(void)rp;
	(*(uint64_t *)ud)++;
	return 0;
}

static int by_group_then_kind(const void *a, const void *b)
{
	const bv_usage *x = a, *y = b;
	const char *gx = x->is_group ? x->name : x->group;
	const char *gy = y->is_group ? y->name : y->group;
	int d = strcmp(gx, gy);

	if (d)
		return d;
	if (x->is_group != y->is_group)
		return y->is_group - x->is_group; /* the group first */
	return strcmp(x->name, y->name);
}

/* The slot of FP in T (NSLOTS, a power of two): its own or the empty one
 * where it goes. */
static struct owner *slot_of(struct owner *t, size_t nslots, const uint8_t *fp)
{
	uint64_t h;
	size_t i;

	memcpy(&h, fp + 8, 8);
	for (i = (size_t)h & (nslots - 1);; i = (i + 1) & (nslots - 1))
		if (!t[i].rep || memcmp(t[i].fp, fp, 16) == 0)
			return &t[i];
}

/* One pass: the fingerprints with low 64 bits = PART (mod PARTS). */
static int pass(struct uctx *c, struct owner *t, size_t nslots, uint64_t part,
		uint64_t parts)
{
	struct bv_history h = { 0 };
	struct bv_map_pos pos = { 0 };
	struct bv_kv_iter *it = NULL;
	struct urep *cur = NULL;
	size_t used = 0;
	int rc;

	memset(t, 0, nslots * sizeof *t);
	if ((rc = bv_map_iter(c->s, 0, &it)))
		goto out;
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		uint64_t lo;
		struct owner *o;

		if (bv_map_pos_next(&pos, k, kl))
			continue;
		if (pos.rid != h.rid) {
			if ((rc = bv_history_load(c->s, pos.rid, &h)))
				goto out;
			cur = h.known ? find_rep(c, pos.rid) : NULL;
		}
		if (!cur || pos.ver > h.head || vl < 16)
			continue; /* not committed, or zero */
		memcpy(&lo, v, 8);
		if (lo % parts != part)
			continue;
		o = slot_of(t, nslots, v);
		uint32_t rep = (uint32_t)(cur - c->reps) + 1;
		if (!o->rep) {
			if (++used >= nslots) {
				/* More fingerprints in the map than the
				 * chunk index counts: a damaged counter. */
				rc = BV_ECORRUPT;
				goto out;
			}
			memcpy(o->fp, v, 16);
			o->rep = rep;
			o->grp = cur->grp + 1;
			continue;
		}
		if (o->rep != rep)
			o->multi_rep = 1;
		if (o->grp != cur->grp + 1)
			o->multi_grp = 1;
	}
	if ((rc = bv_kv_iter_status(it)))
		goto out;
	bv_kv_iter_free(it);
	it = NULL;
	/* The chunk index, for each chunk's bytes in its container. */
	if ((rc = bv_kv_iter_new(c->s->kv, BV_CF_CHUNKS, "", 0, NULL, 0, &it)))
		goto out;
	for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const void *v = bv_kv_iter_value(it, &vl);
		struct bv_chunk_loc loc;
		struct owner *o;
		uint64_t lo;

		if (kl != 16 || bv_chunk_loc_decode(v, vl, &loc))
			continue;
		memcpy(&lo, k, 8);
		if (lo % parts != part)
			continue;
		o = slot_of(t, nslots, k);
		if (!o->rep)
			continue;
		uint64_t rec = bv_rec_size(loc.stored_len);
		if (!o->multi_rep) {
			c->reps[o->rep - 1].u->unique_chunks++;
			c->reps[o->rep - 1].u->unique_bytes += rec;
		}
		if (!o->multi_grp) {
			c->grps[o->grp - 1].u->unique_chunks++;
			c->grps[o->grp - 1].u->unique_bytes += rec;
		}
	}
	rc = bv_kv_iter_status(it);
out:
	bv_kv_iter_free(it);
	bv_history_free(&h);
	return rc;
}

int bv_stats_usage(bv_store *s, const char *group, bv_usage **out, size_t *n)
{
	struct uctx c = { .s = s };
	struct owner *t = NULL;
	bv_usage *u = NULL;
	bv_stats st;
	size_t nu = 0, nslots, keep;
	uint64_t parts;
	int rc;

	*out = NULL;
	*n = 0;
	if (group && (rc = bv_name_check("group", group)))
		return rc;
	if ((rc = bv_stats_counters(s, &st)))
		return rc;
	if ((rc = bv_replica_list(s, collect, &c))) {
		rc = rc == -ENOMEM ? rc : bv_fail(rc, "store %s: usage: the "
						  "replica records: %s",
						  s->path, bv_strerror(rc));
		goto out;
	}
	if (group) {
		size_t g;
		for (g = 0; g < c.ngrps; g++)
			if (strcmp(c.grps[g].name, group) == 0)
				break;
		if (g == c.ngrps) {
			rc = bv_fail(BV_ENOTFOUND, "store %s: no group %s",
				     s->path, group);
			goto out;
		}
	}
	if (c.nreps)
		qsort(c.reps, c.nreps, sizeof *c.reps, by_rid);
	if (!(u = calloc(c.nreps + c.ngrps + 1, sizeof *u))) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t g = 0; g < c.ngrps; g++) {
		bv_usage *x = &u[nu++];
		x->is_group = 1;
		snprintf(x->name, sizeof x->name, "%s", c.grps[g].name);
		c.grps[g].u = x;
		if ((rc = bv_rp_list(s, x->name, count_rp, &x->rps)))
			goto out;
	}
	for (size_t i = 0; i < c.nreps; i++) {
		bv_usage *x = &u[nu++];
		bv_replica_info ri;
		char name[BV_NAME_MAX + 1];

		c.reps[i].u = x;
		if ((rc = bv_id_name(s, "ri/", c.reps[i].rid, name)) ||
		    (rc = bv_replica_info_get(s, name, &ri)))
			goto out;
		snprintf(x->name, sizeof x->name, "%s", ri.name);
		snprintf(x->group, sizeof x->group, "%s", ri.group);
		x->logical_bytes = ri.size;
		x->rps = c.grps[c.reps[i].grp].u->rps;
		c.grps[c.reps[i].grp].u->logical_bytes += ri.size;
	}
	/* Slots at half load, a power of two, within TABLE_MAX
	 * (BV_USAGE_TABLE_MAX: smaller, for the test of several passes). */
	size_t tmax = TABLE_MAX;
	const char *e = getenv("BV_USAGE_TABLE_MAX");
	if (e && *e && strtoull(e, NULL, 0) >= 64 * sizeof *t &&
	    strtoull(e, NULL, 0) < TABLE_MAX)
		tmax = (size_t)strtoull(e, NULL, 0);
	nslots = 1;
	while (nslots < 2 * (st.chunks + 1) && nslots * 2 * sizeof *t <= tmax)
		nslots *= 2;
	parts = (2 * (st.chunks + 1) + nslots - 1) / nslots;
	if (parts == 0)
		parts = 1;
	if (!(t = malloc(nslots * sizeof *t))) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint64_t p = 0; p < parts && rc == 0; p++)
		rc = pass(&c, t, nslots, p, parts);
	if (rc) {
		rc = bv_fail_storage(rc, s->path);
		goto out;
	}
	qsort(u, nu, sizeof *u, by_group_then_kind);
	keep = 0;
	for (size_t i = 0; i < nu; i++) {
		const char *g = u[i].is_group ? u[i].name : u[i].group;
		if (!group || strcmp(g, group) == 0)
			u[keep++] = u[i];
	}
	*out = u;
	*n = keep;
	u = NULL;
out:
	free(u);
	free(t);
	free(c.reps);
	free(c.grps);
	return rc;
}

void bv_usage_free(bv_usage *u)
{
	free(u);
}
