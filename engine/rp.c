/*
 * rp.c: recovery points. An RP is one record, "p/" gid rp, naming a
 * version and size for every member of the group; making one is a single
 * synced write whatever the replicas' size (O(members)). RP records are
 * never rewritten (invariant 3): map entries of those versions are never
 * changed either, so the RP reads the same forever.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

int bv_rp_label_check(const char *label)
{
	if (label && strlen(label) > BV_LABEL_MAX)
		return bv_fail(BV_EINVAL, "label '%.20s...': longer than %d "
			       "bytes", label, BV_LABEL_MAX);
	return 0;
}

int bv_rp_build(bv_store *s, const char *gname, const struct bv_grec *g,
		const struct bv_rp_member *over, size_t nover,
		struct bv_rprec *p)
{
	p->n = 0;
	for (uint32_t i = 0; i < g->n; i++) {
		struct bv_rp_member *m = &p->m[p->n++];
		size_t j;
		m->rid = g->members[i];
		for (j = 0; j < nover; j++)
			if (over[j].rid == m->rid)
				break;
		if (j < nover) {
			*m = over[j];
			continue;
		}
		char name[BV_NAME_MAX + 1];
		struct bv_rrec r;
		if (bv_id_name(s, "ri/", m->rid, name) ||
		    bv_rrec_get(s, name, &r))
			return bv_fail(BV_ECORRUPT, "group %s: member id %llu "
				       "has no replica record", gname,
				       (unsigned long long)m->rid);
		m->version = r.head;
		m->size = r.size;
	}
	return 0;
}

int bv_rp_create(bv_store *s, const char *what, const char *label,
		 int consistency, uint64_t *number_out)
{
	static _Thread_local struct bv_grec g;
	static _Thread_local struct bv_rprec p;
	char gname[BV_NAME_MAX + 1];
	struct bv_kv_batch *b = NULL;
	int rc;

	bv_fail(0, "%s", "");
	if (number_out)
		*number_out = 0;
	if ((rc = bv_store_writable(s)))
		return rc;
	if (!what || (rc = bv_name_check("replica or group", what)))
		return what ? rc : bv_fail(BV_EINVAL, "no replica or group");
	if ((rc = bv_rp_label_check(label)))
		return rc;
	if (consistency != BV_CRASH_CONSISTENT &&
	    consistency != BV_APP_CONSISTENT)
		return bv_fail(BV_EINVAL, "consistency %d: must be crash (0) "
			       "or application (1)", consistency);
	pthread_mutex_lock(&s->meta_lock);
	if ((rc = bv_resolve_group(s, what, gname, &g)))
		goto out;
	memset(&p, 0, sizeof p);
	p.time = (int64_t)time(NULL);
	p.consistency = (uint8_t)consistency;
	snprintf(p.label, sizeof p.label, "%s", label ? label : "");
	if ((rc = bv_rp_build(s, gname, &g, NULL, 0, &p)))
		goto out;
	if ((rc = bv_kv_batch_new(&b)))
		goto out;
	g.latest_rp++;
	bv_rprec_put(b, g.gid, g.latest_rp, &p);
	bv_grec_put(b, gname, &g);
	if ((rc = bv_kv_write(s->kv, b, 1))) {
		rc = bv_fail_storage(rc, gname);
		goto out;
	}
	if (number_out)
		*number_out = g.latest_rp;
out:
	pthread_mutex_unlock(&s->meta_lock);
	bv_kv_batch_free(b);
	return rc;
}

int bv_rp_list(bv_store *s, const char *what,
	       int (*cb)(void *ud, const bv_rp_info *rp), void *ud)
{
	static _Thread_local struct bv_grec g;
	static _Thread_local struct bv_rprec p;
	char gname[BV_NAME_MAX + 1] = "";
	struct bv_kv_iter *it = NULL;
	struct bv_rrec r = { 0 };
	uint8_t lo[16], hi[16];
	size_t lolen = 2, hilen = 2;
	int is_replica = 0, rc;
	bv_rp_info info;

	bv_fail(0, "%s", "");
	memcpy(lo, "p/", 2);
	memcpy(hi, "p0", 2);
	if (what) {
		if ((rc = bv_name_check("replica or group", what)) ||
		    (rc = bv_resolve_group(s, what, gname, &g)))
			return rc;
		is_replica = bv_rrec_get(s, what, &r) == 0;
		lolen = bv_key_id(lo, "p/", g.gid);
		hilen = bv_key_id(hi, "p/", g.gid + 1);
	}
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, lo, lolen, hi, hilen, &it)))
		return bv_fail_storage(rc, s->path);
	for (bv_kv_iter_seek(it, lo, lolen); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const void *v = bv_kv_iter_value(it, &vl);
		if (kl != 18)
			continue;
		uint64_t gid = bv_get_be64(k + 2);
		if ((rc = bv_rprec_decode(v, vl, &p))) {
			rc = bv_fail(rc, "recovery point %llu of group id "
				     "%llu: record is damaged",
				     (unsigned long long)bv_get_be64(k + 10),
				     (unsigned long long)gid);
			break;
		}
		memset(&info, 0, sizeof info);
		if (what)
			snprintf(info.group, sizeof info.group, "%s", gname);
		else if (bv_id_name(s, "gi/", gid, info.group))
			snprintf(info.group, sizeof info.group, "#%llu",
				 (unsigned long long)gid);
		info.number = bv_get_be64(k + 10);
		info.time = p.time;
		info.consistency = p.consistency;
		snprintf(info.label, sizeof info.label, "%s", p.label);
		info.members = p.n;
		if (is_replica) {
			/* An RP from before the replica joined the group
			 * (bv_group_add) does not hold it. */
			uint32_t i;
			for (i = 0; i < p.n && p.m[i].rid != r.rid; i++)
				;
			if (i == p.n)
				continue;
		}
		if (is_replica)
			for (uint32_t i = 0; i < p.n; i++)
				if (p.m[i].rid == r.rid) {
					info.size = p.m[i].size;
					info.version = p.m[i].version;
					rc = bv_ident_get(s, r.rid,
							  info.version,
							  info.id);
				}
		if (rc) {
			rc = bv_fail(rc, "replica %s: identity of version "
				     "%llu: %s", what,
				     (unsigned long long)info.version,
				     bv_strerror(rc));
			break;
		}
		if ((rc = cb(ud, &info)))
			break;
	}
	if (!rc && (rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, s->path);
	bv_kv_iter_free(it);
	return rc;
}

static int history_add(void *ud, const bv_rp_info *rp)
{
	struct bv_history *h = ud;

	if (h->n == h->cap) {
		size_t nc = h->cap ? h->cap * 2 : 64;
		struct bv_rp_ver *n = realloc(h->rps, nc * sizeof *n);
		if (!n)
			return -ENOMEM;
		h->rps = n;
		h->cap = nc;
	}
	h->rps[h->n++] = (struct bv_rp_ver){ rp->number, rp->version,
					     rp->size };
	return 0;
}

int bv_history_load(bv_store *s, uint64_t rid, struct bv_history *h)
{
	struct bv_rrec r;

	h->rid = rid;
	h->n = 0;
	h->known = bv_id_name(s, "ri/", rid, h->name) == 0 &&
		   bv_rrec_get(s, h->name, &r) == 0;
	if (!h->known) {
		snprintf(h->name, sizeof h->name, "#%llu",
			 (unsigned long long)rid);
		return 0;
	}
	h->chunk_size = r.chunk_size;
	h->head = r.head;
	h->head_size = r.size;
	return bv_rp_list(s, h->name, history_add, h);
}

void bv_history_free(struct bv_history *h)
{
	free(h->rps);
	h->rps = NULL;
	h->n = h->cap = 0;
}
