/*
 * agent.c: agent identities, for the network server (tools/bvaultd.c):
 * a name, a random secret the agent proves it knows (challenge-response,
 * tools/PROTOCOL.md) or the public half of the agent's Ed25519 key (the
 * store then holds nothing that lets anyone log in as it), and the
 * groups it may read and write. Kept in the
 * meta column family under "a/" NAME (storage/FORMAT.md). The engine only
 * keeps them; checking a proof and enforcing the groups is the server's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

/* The record's version byte also says the agent's kind: 1, the 32 bytes
 * are its secret (BV_AGENT_KIND_SECRET); 2, they are its Ed25519 public
 * key (BV_AGENT_KIND_KEY). Same layout otherwise (storage/FORMAT.md). */
#define AGENT_REC_V1 1
#define AGENT_REC_V2 2
#define AGENT_REC_MAX (1 + 8 + BV_AGENT_SECRET + 4 + \
		       BV_AGENT_GROUPS_MAX * (1 + BV_NAME_MAX))

_Static_assert(BV_AGENT_SECRET == BV_AGENT_PUBLIC_KEY,
	       "a secret and a public key take the same room in the record");

/* KEY32: the secret (kind secret) or the public key (kind key). */
static size_t agent_encode(uint8_t *v, const bv_agent_info *a,
			   const uint8_t key32[BV_AGENT_SECRET])
{
	size_t p = 0;
	v[p++] = a->kind == BV_AGENT_KIND_KEY ? AGENT_REC_V2 : AGENT_REC_V1;
	bv_le64(v + p, (uint64_t)a->created);
	p += 8;
	memcpy(v + p, key32, BV_AGENT_SECRET);
	p += BV_AGENT_SECRET;
	bv_le32(v + p, a->ngroups);
	p += 4;
	for (uint32_t i = 0; i < a->ngroups; i++) {
		size_t n = strlen(a->groups[i]);
		v[p++] = (uint8_t)n;
		memcpy(v + p, a->groups[i], n);
		p += n;
	}
	return p;
}

/* Fills A; KEY32 (may be NULL) gets the record's 32 bytes whatever the
 * kind (the callers outside this file see a secret only). */
static int agent_decode(const uint8_t *v, size_t len, bv_agent_info *a,
			uint8_t *key32)
{
	size_t p = 1 + 8 + BV_AGENT_SECRET + 4;
	if (len < p || (v[0] != AGENT_REC_V1 && v[0] != AGENT_REC_V2))
		return BV_ECORRUPT;
	a->kind = v[0] == AGENT_REC_V2 ? BV_AGENT_KIND_KEY :
		BV_AGENT_KIND_SECRET;
	a->created = (int64_t)bv_get_le64(v + 1);
	if (key32)
		memcpy(key32, v + 9, BV_AGENT_SECRET);
	memset(a->public_key, 0, sizeof a->public_key);
	if (a->kind == BV_AGENT_KIND_KEY)
		memcpy(a->public_key, v + 9, BV_AGENT_PUBLIC_KEY);
	a->ngroups = bv_get_le32(v + 9 + BV_AGENT_SECRET);
	if (a->ngroups > BV_AGENT_GROUPS_MAX)
		return BV_ECORRUPT;
	for (uint32_t i = 0; i < a->ngroups; i++) {
		if (p >= len)
			return BV_ECORRUPT;
		size_t n = v[p++];
		if (n == 0 || n > BV_NAME_MAX || len - p < n)
			return BV_ECORRUPT;
		memcpy(a->groups[i], v + p, n);
		a->groups[i][n] = 0;
		p += n;
	}
	return p == len ? 0 : BV_ECORRUPT;
}

/* Checks the N GROUPS (good names, none twice, 1 to the maximum). */
static int groups_check(const char *name, const char *const *groups,
			size_t n)
{
	int rc;
	if (!groups || n == 0 || n > BV_AGENT_GROUPS_MAX)
		return bv_fail(BV_EINVAL, "agent %s: needs 1 to %d groups",
			       name, BV_AGENT_GROUPS_MAX);
	for (size_t i = 0; i < n; i++) {
		if ((rc = bv_name_check("group", groups[i])))
			return rc;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(groups[i], groups[j]))
				return bv_fail(BV_EINVAL, "agent %s: group %s "
					       "is named twice", name,
					       groups[i]);
	}
	return 0;
}

/* Creates agent NAME of KIND with the 32 bytes KEY32. */
static int agent_put_new(bv_store *s, const char *name,
			 const char *const *groups, size_t n, int kind,
			 const uint8_t key32[BV_AGENT_SECRET])
{
	static _Thread_local bv_agent_info a;
	uint8_t key[BV_NAME_MAX + 2], v[AGENT_REC_MAX], old[8];
	size_t klen, vlen;
	int rc;

	memset(&a, 0, sizeof a);
	snprintf(a.name, sizeof a.name, "%s", name);
	for (size_t i = 0; i < n; i++)
		snprintf(a.groups[i], sizeof a.groups[i], "%s", groups[i]);
	a.ngroups = (uint32_t)n;
	a.created = (int64_t)time(NULL);
	a.kind = kind;
	klen = bv_key_name(key, "a/", name);
	pthread_mutex_lock(&s->meta_lock);
	rc = bv_kv_get(s->kv, BV_CF_META, key, klen, old, sizeof old, &vlen);
	if (rc == 0 || rc == ST_EINVAL) {
		rc = bv_fail(BV_EEXIST, "agent %s: already exists", name);
	} else if (rc != ST_ENOTFOUND) {
		rc = bv_fail_storage(rc, s->path);
	} else {
		vlen = agent_encode(v, &a, key32);
		rc = bv_kv_put(s->kv, BV_CF_META, key, klen, v, vlen, 1);
		if (rc)
			rc = bv_fail_storage(rc, s->path);
	}
	pthread_mutex_unlock(&s->meta_lock);
	memset(v, 0, sizeof v);
	return rc;
}

static int agent_add_check(bv_store *s, const char *name,
			   const char *const *groups, size_t n)
{
	int rc;
	if ((rc = bv_store_writable(s)))
		return rc;
	if ((rc = bv_name_check("agent", name)))
		return rc;
	return groups_check(name, groups, n);
}

int bv_agent_add(bv_store *s, const char *name, const char *const *groups,
		 size_t n, uint8_t secret_out[BV_AGENT_SECRET])
{
	uint8_t secret[BV_AGENT_SECRET];
	int rc;

	bv_fail(0, "%s", "");
	if (!s || !secret_out)
		return bv_fail(BV_EINVAL, "agent add: no store or no secret "
			       "buffer");
	if ((rc = agent_add_check(s, name, groups, n)))
		return rc;
	for (size_t got = 0; got < sizeof secret;) {
		ssize_t k = getrandom(secret + got, sizeof secret - got, 0);
		if (k < 0 && errno != EINTR)
			return bv_fail(-errno, "agent %s: no random bytes: %s",
				       name, strerror(errno));
		if (k > 0)
			got += (size_t)k;
	}
	rc = agent_put_new(s, name, groups, n, BV_AGENT_KIND_SECRET, secret);
	if (!rc)
		memcpy(secret_out, secret, sizeof secret);
	memset(secret, 0, sizeof secret);
	return rc;
}

int bv_agent_add_key(bv_store *s, const char *name, const char *const *groups,
		     size_t n, const uint8_t public_key[BV_AGENT_PUBLIC_KEY])
{
	int rc;

	bv_fail(0, "%s", "");
	if (!s || !public_key)
		return bv_fail(BV_EINVAL, "agent add: no store or no public "
			       "key");
	if ((rc = agent_add_check(s, name, groups, n)))
		return rc;
	return agent_put_new(s, name, groups, n, BV_AGENT_KIND_KEY,
			     public_key);
}

/* Grant (REVOKE 0) or revoke the N GROUPS of agent NAME: read, change,
 * write back under the meta lock, its kind and 32 bytes kept. */
static int agent_regroup(bv_store *s, const char *name,
			 const char *const *groups, size_t n, int revoke)
{
	static _Thread_local bv_agent_info a;
	const char *what = revoke ? "revoke" : "grant";
	uint8_t key[BV_NAME_MAX + 2], v[AGENT_REC_MAX], k32[BV_AGENT_SECRET];
	size_t klen, vlen;
	int rc;

	bv_fail(0, "%s", "");
	if (!s)
		return bv_fail(BV_EINVAL, "agent %s: no store", what);
	if ((rc = bv_store_writable(s)))
		return rc;
	if ((rc = bv_name_check("agent", name)))
		return rc;
	if ((rc = groups_check(name, groups, n)))
		return rc;
	klen = bv_key_name(key, "a/", name);
	pthread_mutex_lock(&s->meta_lock);
	memset(&a, 0, sizeof a);
	rc = bv_kv_get(s->kv, BV_CF_META, key, klen, v, sizeof v, &vlen);
	if (rc == ST_ENOTFOUND) {
		rc = bv_fail(BV_ENOTFOUND, "agent %s: not found", name);
		goto out;
	}
	if (rc == ST_EINVAL || (rc == 0 && agent_decode(v, vlen, &a, k32))) {
		rc = bv_fail(BV_ECORRUPT, "agent %s: its record is damaged",
			     name);
		goto out;
	}
	if (rc) {
		rc = bv_fail_storage(rc, s->path);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t j = 0;
		while (j < a.ngroups && strcmp(a.groups[j], groups[i]))
			j++;
		if (!revoke && j == a.ngroups) {
			if (a.ngroups == BV_AGENT_GROUPS_MAX) {
				rc = bv_fail(BV_EINVAL, "agent %s: at most %d "
					     "groups", name,
					     BV_AGENT_GROUPS_MAX);
				goto out;
			}
			snprintf(a.groups[a.ngroups++], sizeof a.groups[0],
				 "%s", groups[i]);
		} else if (revoke) {
			if (j == a.ngroups) {
				rc = bv_fail(BV_ENOTFOUND, "agent %s: has no "
					     "group %s", name, groups[i]);
				goto out;
			}
			memmove(a.groups[j], a.groups[j + 1],
				(a.ngroups - j - 1) * sizeof a.groups[0]);
			a.ngroups--;
		}
	}
	if (a.ngroups == 0) {
		rc = bv_fail(BV_EINVAL, "agent %s: would have no group left "
			     "(remove the agent instead)", name);
		goto out;
	}
	vlen = agent_encode(v, &a, k32);
	rc = bv_kv_put(s->kv, BV_CF_META, key, klen, v, vlen, 1);
	if (rc)
		rc = bv_fail_storage(rc, s->path);
out:
	pthread_mutex_unlock(&s->meta_lock);
	memset(v, 0, sizeof v);
	memset(k32, 0, sizeof k32);
	return rc;
}

int bv_agent_grant(bv_store *s, const char *name, const char *const *groups,
		   size_t n)
{
	return agent_regroup(s, name, groups, n, 0);
}

int bv_agent_revoke(bv_store *s, const char *name, const char *const *groups,
		    size_t n)
{
	return agent_regroup(s, name, groups, n, 1);
}

int bv_agent_get(bv_store *s, const char *name, bv_agent_info *out,
		 uint8_t *secret_out)
{
	uint8_t key[BV_NAME_MAX + 2], v[AGENT_REC_MAX];
	size_t vlen;
	int rc;

	bv_fail(0, "%s", "");
	if (!s || !out)
		return bv_fail(BV_EINVAL, "agent: no store or no result");
	if ((rc = bv_name_check("agent", name)))
		return rc;
	memset(out, 0, sizeof *out);
	rc = bv_kv_get(s->kv, BV_CF_META, key, bv_key_name(key, "a/", name), v,
		       sizeof v, &vlen);
	if (rc == ST_ENOTFOUND)
		return bv_fail(BV_ENOTFOUND, "agent %s: not found", name);
	if (rc == ST_EINVAL)
		rc = BV_ECORRUPT;
	if (rc == 0)
		rc = agent_decode(v, vlen, out, secret_out);
	/* A key agent has no secret: zeros, never its public key. */
	if (secret_out && (rc || out->kind != BV_AGENT_KIND_SECRET))
		memset(secret_out, 0, BV_AGENT_SECRET);
	memset(v, 0, sizeof v);
	if (rc == BV_ECORRUPT)
		return bv_fail(rc, "agent %s: its record is damaged", name);
	if (rc)
		return bv_fail_storage(rc, s->path);
	snprintf(out->name, sizeof out->name, "%s", name);
	return 0;
}

int bv_agent_list(bv_store *s, int (*cb)(void *ud, const bv_agent_info *a),
		  void *ud)
{
	static _Thread_local bv_agent_info a;
	struct bv_kv_iter *it = NULL;
	int rc;

	bv_fail(0, "%s", "");
	if (!s || !cb)
		return bv_fail(BV_EINVAL, "agent list: no store or callback");
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "a/", 2, "a0", 2, &it)))
		return bv_fail_storage(rc, s->path);
	for (bv_kv_iter_seek(it, "a/", 2); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		memset(&a, 0, sizeof a);
		if (kl < 3 || kl - 2 > BV_NAME_MAX ||
		    agent_decode(v, vl, &a, NULL)) {
			rc = bv_fail(BV_ECORRUPT, "store %s: a damaged agent "
				     "record", s->path);
			break;
		}
		memcpy(a.name, k + 2, kl - 2);
		a.name[kl - 2] = 0;
		if ((rc = cb(ud, &a)))
			break;
	}
	if (!rc && (rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, s->path);
	bv_kv_iter_free(it);
	return rc;
}

int bv_agent_remove(bv_store *s, const char *name)
{
	uint8_t key[BV_NAME_MAX + 2], v[8];
	size_t klen, vlen;
	int rc;

	bv_fail(0, "%s", "");
	if (!s)
		return bv_fail(BV_EINVAL, "agent remove: no store");
	if ((rc = bv_store_writable(s)))
		return rc;
	if ((rc = bv_name_check("agent", name)))
		return rc;
	klen = bv_key_name(key, "a/", name);
	pthread_mutex_lock(&s->meta_lock);
	rc = bv_kv_get(s->kv, BV_CF_META, key, klen, v, sizeof v, &vlen);
	if (rc == ST_ENOTFOUND)
		rc = bv_fail(BV_ENOTFOUND, "agent %s: not found", name);
	else if (rc != 0 && rc != ST_EINVAL)
		rc = bv_fail_storage(rc, s->path);
	else {
		struct bv_kv_batch *b = NULL;
		if (!(rc = bv_kv_batch_new(&b))) {
			bv_kv_batch_delete(b, BV_CF_META, key, klen);
			rc = bv_kv_write(s->kv, b, 1);
			bv_kv_batch_free(b);
		}
		if (rc)
			rc = bv_fail_storage(rc, s->path);
	}
	pthread_mutex_unlock(&s->meta_lock);
	return rc;
}

int bv_agent_may(const bv_agent_info *a, const char *group)
{
	for (uint32_t i = 0; a && group && i < a->ngroups; i++)
		if (!strcmp(a->groups[i], group))
			return 1;
	return 0;
}
