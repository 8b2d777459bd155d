/*
 * replica.c: replicas and groups. A replica is born in a group of its
 * own, named like it; bv_group_create() gathers replicas that have no RP
 * yet into one group, whose RPs then always cover every member.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static int chunk_ok(uint32_t cs)
{
	return cs >= BV_CHUNK_MIN && cs <= BV_CHUNK_MAX && !(cs & (cs - 1));
}

/* Puts the records of a new replica (and its own group when OWN_GROUP). */
void bv_replica_records(struct bv_kv_batch *b, const char *name,
			const struct bv_rrec *r, int own_group)
{
	uint8_t key[32];
	bv_rrec_put(b, name, r);
	bv_kv_batch_put(b, BV_CF_META, key, bv_key_id(key, "ri/", r->rid),
			name, strlen(name));
	/* Every version of a new replica has births keys. */
	bv_births_put(b, r->rid, 1);
	if (own_group) {
		struct bv_grec g = { .gid = r->gid, .n = 1 };
		g.members[0] = r->rid;
		bv_grec_put(b, name, &g);
		bv_kv_batch_put(b, BV_CF_META, key,
				bv_key_id(key, "gi/", r->gid), name,
				strlen(name));
	}
}

/* Checks that NAME is free as a replica name (and as a group name, since
 * the replica's own group takes it). Called with meta_lock held. */
int bv_replica_name_free(bv_store *s, const char *name)
{
	struct bv_rrec r;
	struct bv_grec g;
	int rc = bv_rrec_get(s, name, &r);
	if (rc == 0)
		return bv_fail(BV_EEXIST, "replica %s: already exists", name);
	if (rc != ST_ENOTFOUND)
		return bv_fail(rc, "replica %s: %s", name, bv_strerror(rc));
	rc = bv_grec_get(s, name, &g);
	if (rc == 0)
		return bv_fail(BV_EEXIST, "replica %s: a group has that name",
			       name);
	if (rc != ST_ENOTFOUND)
		return bv_fail(rc, "group %s: %s", name, bv_strerror(rc));
	return 0;
}

int bv_replica_create(bv_store *s, const char *name, uint64_t size,
		      uint32_t chunk_size)
{
	struct bv_kv_batch *b = NULL;
	struct bv_rrec r = { 0 };
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = bv_store_writable(s)))
		return rc;
	if ((rc = bv_name_check("replica", name)))
		return rc;
	r.chunk_size = chunk_size ? chunk_size : s->chunk_default;
	if (!chunk_ok(r.chunk_size))
		return bv_fail(BV_EINVAL, "replica %s: chunk size %u: must be "
			       "a power of two from 4 KiB to 4 MiB", name,
			       r.chunk_size);
	if (size % BV_SECTOR || size > (UINT64_C(1) << 62))
		return bv_fail(BV_EINVAL, "replica %s: size %llu: must be a "
			       "multiple of 512 below 4 EiB", name,
			       (unsigned long long)size);
	r.size = size;
	pthread_mutex_lock(&s->meta_lock);
	if ((rc = bv_replica_name_free(s, name)))
		goto out;
	if ((rc = bv_kv_batch_new(&b)))
		goto out;
	if ((rc = bv_seq_next(s, b, "rid", &r.rid)) ||
	    (rc = bv_seq_next(s, b, "gid", &r.gid))) {
		rc = bv_fail(rc, "replica %s: sequence: %s", name,
			     bv_strerror(rc));
		goto out;
	}
	bv_replica_records(b, name, &r, 1);
	if ((rc = bv_kv_write(s->kv, b, 1)))
		rc = bv_fail_storage(rc, name);
out:
	pthread_mutex_unlock(&s->meta_lock);
	bv_kv_batch_free(b);
	return rc;
}

static int fill_info(bv_store *s, const char *name, const struct bv_rrec *r,
		     bv_replica_info *out)
{
	struct bv_grec g;
	int rc;

	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "%s", name);
	out->size = r->size;
	out->chunk_size = r->chunk_size;
	out->head = r->head;
	if ((rc = bv_id_name(s, "gi/", r->gid, out->group)) ||
	    (rc = bv_grec_get(s, out->group, &g)))
		return bv_fail(BV_ECORRUPT, "replica %s: its group record is "
			       "missing or damaged", name);
	out->latest_rp = g.latest_rp;
	if ((rc = bv_ident_get(s, r->rid, r->head, out->head_id)))
		return bv_fail(rc, "replica %s: identity of version %llu: %s",
			       name, (unsigned long long)r->head,
			       bv_strerror(rc));
	return 0;
}

int bv_replica_info_get(bv_store *s, const char *name, bv_replica_info *out)
{
	struct bv_rrec r;
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = bv_name_check("replica", name)))
		return rc;
	rc = bv_rrec_get(s, name, &r);
	if (rc == ST_ENOTFOUND)
		return bv_fail(BV_ENOTFOUND, "replica %s: no such replica",
			       name);
	if (rc)
		return bv_fail(rc, "replica %s: %s", name, bv_strerror(rc));
	return fill_info(s, name, &r, out);
}

int bv_replica_list(bv_store *s, int (*cb)(void *, const bv_replica_info *),
		    void *ud)
{
	struct bv_kv_iter *it = NULL;
	bv_replica_info info;
	char name[BV_NAME_MAX + 1];
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "r/", 2, "r0", 2, &it)))
		return bv_fail_storage(rc, s->path);
	for (bv_kv_iter_seek(it, "r/", 2); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl;
		const char *k = bv_kv_iter_key(it, &kl);
		struct bv_rrec r;
		if (kl < 3 || kl - 2 > BV_NAME_MAX)
			continue;
		memcpy(name, k + 2, kl - 2);
		name[kl - 2] = 0;
		if ((rc = bv_rrec_get(s, name, &r))) {
			rc = bv_fail(BV_ECORRUPT, "replica %s: record is "
				     "damaged", name);
			break;
		}
		if ((rc = fill_info(s, name, &r, &info)))
			break;
		if ((rc = cb(ud, &info)))
			break;
	}
	if (!rc && (rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, s->path);
	bv_kv_iter_free(it);
	return rc;
}

int bv_group_create(bv_store *s, const char *group,
		    const char *const *replicas, size_t n)
{
	struct bv_kv_batch *b = NULL;
	static _Thread_local struct bv_grec g, old;
	struct bv_rrec r;
	uint8_t key[32];
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = bv_store_writable(s)))
		return rc;
	if ((rc = bv_name_check("group", group)))
		return rc;
	if (n == 0 || n > BV_GROUP_MAX_MEMBERS)
		return bv_fail(BV_EINVAL, "group %s: needs 1 to %d replicas",
			       group, BV_GROUP_MAX_MEMBERS);
	for (size_t i = 0; i < n; i++) {
		if ((rc = bv_name_check("replica", replicas[i])))
			return rc;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(replicas[i], replicas[j]))
				return bv_fail(BV_EINVAL, "group %s: replica "
					       "%s is named twice", group,
					       replicas[i]);
	}
	pthread_mutex_lock(&s->meta_lock);
	if ((rc = bv_kv_batch_new(&b)))
		goto out;
	rc = bv_grec_get(s, group, &g);
	int member_named = 0;
	for (size_t i = 0; i < n; i++)
		member_named |= !strcmp(group, replicas[i]);
	if (rc == 0 && !member_named) {
		rc = bv_fail(BV_EEXIST, "group %s: already exists", group);
		goto out;
	}
	rc = bv_rrec_get(s, group, &r);
	if (rc == 0 && !member_named) {
		rc = bv_fail(BV_EEXIST, "group %s: a replica outside the group "
			     "has that name", group);
		goto out;
	}
	memset(&g, 0, sizeof g);
	if ((rc = bv_seq_next(s, b, "gid", &g.gid)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		char own[BV_NAME_MAX + 1];
		rc = bv_rrec_get(s, replicas[i], &r);
		if (rc == ST_ENOTFOUND) {
			rc = bv_fail(BV_ENOTFOUND, "group %s: unknown replica "
				     "%s", group, replicas[i]);
			goto out;
		}
		if (rc) {
			rc = bv_fail(rc, "replica %s: %s", replicas[i],
				     bv_strerror(rc));
			goto out;
		}
		if ((rc = bv_id_name(s, "gi/", r.gid, own)) ||
		    (rc = bv_grec_get(s, own, &old))) {
			rc = bv_fail(BV_ECORRUPT, "replica %s: its group record "
				     "is missing or damaged", replicas[i]);
			goto out;
		}
		if (strcmp(own, replicas[i]) || old.n != 1) {
			rc = bv_fail(BV_EEXIST, "group %s: replica %s is "
				     "already in group %s", group, replicas[i],
				     own);
			goto out;
		}
		if (old.latest_rp) {
			rc = bv_fail(BV_EINVAL, "group %s: replica %s already "
				     "has %llu recovery points in its own "
				     "group; RPs are numbered per group, so "
				     "make groups before the first RP", group,
				     replicas[i],
				     (unsigned long long)old.latest_rp);
			goto out;
		}
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_name(key, "g/", own));
		bv_kv_batch_delete(b, BV_CF_META, key,
				   bv_key_id(key, "gi/", old.gid));
		r.gid = g.gid;
		bv_rrec_put(b, replicas[i], &r);
		g.members[g.n++] = r.rid;
	}
	bv_grec_put(b, group, &g);
	bv_kv_batch_put(b, BV_CF_META, key, bv_key_id(key, "gi/", g.gid),
			group, strlen(group));
	if ((rc = bv_kv_write(s->kv, b, 1)))
		rc = bv_fail_storage(rc, group);
out:
	pthread_mutex_unlock(&s->meta_lock);
	bv_kv_batch_free(b);
	return rc;
}
