/*
 * policy.c: retention policies, prune, and the group list (bvault.h,
 * "lifecycle").
 *
 * The policy's semantics are Proxmox Backup Server's (prune.rs,
 * compute_prune_info; LIFECYCLE.md 4.8 and R3), on RP times in UTC:
 * RPs newest first; keep_last, then hourly ("%Y-%m-%d %H"), daily
 * ("%Y-%m-%d"), weekly (ISO "%G-W%V"), monthly ("%Y-%m"), yearly ("%Y")
 * are applied in that order; each keeps the newest RP of each period not
 * already covered by an RP an earlier option kept, until it has kept N;
 * an RP the option meets in a period it already kept is marked for
 * removal, and later options skip it. Protected RPs are kept and count
 * for nothing (as PBS's). Then max_age_days: an RP older than that is
 * removed even if an option kept it; with no count option it keeps the
 * RPs younger than that. Whatever the policy: the group's latest RP
 * (agents diff from it) and RPs a view is made from are kept. This is
 * not restic's ORed buckets: restic's "--keep-daily 7 --keep-weekly 5"
 * keeps 7 dailies and 4 more weeklies, PBS's keeps 5 weeks past those
 * the dailies cover.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "view.h"

#define POLICY_LEN 29 /* record version u8, 7 x u32 */

static size_t key_pol(uint8_t *key, uint64_t gid)
{
	return bv_key_id(key, "pol/", gid);
}

static int policy_load(bv_store *s, uint64_t gid, bv_policy *p)
{
	uint8_t key[16], v[POLICY_LEN];
	size_t vl;
	int rc = bv_kv_get(s->kv, BV_CF_META, key, key_pol(key, gid), v,
			   sizeof v, &vl);
	memset(p, 0, sizeof *p);
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc == ST_EINVAL || (!rc && (vl != POLICY_LEN || v[0] != 1)))
		return BV_ECORRUPT;
	if (rc)
		return rc;
	p->keep_last = bv_get_le32(v + 1);
	p->keep_hourly = bv_get_le32(v + 5);
	p->keep_daily = bv_get_le32(v + 9);
	p->keep_weekly = bv_get_le32(v + 13);
	p->keep_monthly = bv_get_le32(v + 17);
	p->keep_yearly = bv_get_le32(v + 21);
	p->max_age_days = bv_get_le32(v + 25);
	return 0;
}

static int policy_empty(const bv_policy *p)
{
	return !(p->keep_last | p->keep_hourly | p->keep_daily |
		 p->keep_weekly | p->keep_monthly | p->keep_yearly |
		 p->max_age_days);
}

int bv_policy_set(bv_store *s, const char *what, const bv_policy *p)
{
	static _Thread_local struct bv_grec g;
	char gname[BV_NAME_MAX + 1];
	uint8_t key[16], v[POLICY_LEN];
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = bv_store_writable(s)))
		return rc;
	if (!what || (rc = bv_name_check("replica or group", what)))
		return what ? rc : bv_fail(BV_EINVAL, "no replica or group");
	if (!p || policy_empty(p))
		return bv_fail(BV_EINVAL, "%s: an empty policy would keep only "
			       "the latest RP; give at least one --keep-* or "
			       "--max-age", what);
	if (p->max_age_days > 1000000)
		return bv_fail(BV_EINVAL, "%s: max age %u days: at most "
			       "1000000", what, p->max_age_days);
	v[0] = 1;
	bv_le32(v + 1, p->keep_last);
	bv_le32(v + 5, p->keep_hourly);
	bv_le32(v + 9, p->keep_daily);
	bv_le32(v + 13, p->keep_weekly);
	bv_le32(v + 17, p->keep_monthly);
	bv_le32(v + 21, p->keep_yearly);
	bv_le32(v + 25, p->max_age_days);
	pthread_mutex_lock(&s->meta_lock);
	if (!(rc = bv_resolve_group(s, what, gname, &g)) &&
	    (rc = bv_kv_put(s->kv, BV_CF_META, key, key_pol(key, g.gid), v,
			    sizeof v, 1)))
		rc = bv_fail_storage(rc, gname);
	pthread_mutex_unlock(&s->meta_lock);
	return rc;
}

int bv_policy_get(bv_store *s, const char *what, bv_policy *p)
{
	static _Thread_local struct bv_grec g;
	char gname[BV_NAME_MAX + 1];
	int rc;

	bv_fail(0, "%s", "");
	memset(p, 0, sizeof *p);
	if (!what || (rc = bv_name_check("replica or group", what)))
		return what ? rc : bv_fail(BV_EINVAL, "no replica or group");
	if ((rc = bv_resolve_group(s, what, gname, &g)))
		return rc;
	if ((rc = policy_load(s, g.gid, p)))
		return bv_fail(rc, "group %s: policy record: %s", gname,
			       bv_strerror(rc));
	return 0;
}

/* ---- the plan ------------------------------------------------------------ */

struct rp_row {
	uint64_t number;
	int64_t time;
	char label[BV_LABEL_MAX + 1];
	int mark;       /* 0 none yet, 1 keep, -1 remove */
	int64_t until;  /* its lock */
	char reason[96];
};

struct rows {
	struct rp_row *r;
	size_t n, cap;
	bv_store *s;
	uint64_t gid;
};

static int rows_add(void *ud, uint64_t number, const struct bv_rprec *p)
{
	struct rows *rs = ud;

	if (rs->n == rs->cap) {
		size_t nc = rs->cap ? 2 * rs->cap : 64;
		struct rp_row *nr = realloc(rs->r, nc * sizeof *nr);
		if (!nr)
			return -ENOMEM;
		rs->r = nr;
		rs->cap = nc;
	}
	struct rp_row *r = &rs->r[rs->n++];
	memset(r, 0, sizeof *r);
	r->number = number;
	r->time = p->time;
	snprintf(r->label, sizeof r->label, "%s", p->label);
	return bv_life_rp_lock(rs->s, rs->gid, number, &r->until);
}

static void period(char *buf, size_t len, const char *fmt, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, fmt, &tm);
}

/* PBS's mark_selections: rows newest first. */
static void mark_rule(struct rows *rs, uint32_t keep, const char *name,
		      const char *fmt)
{
	char (*covered)[32] = NULL, (*chosen)[32] = NULL;
	size_t ncov = 0, nch = 0;
	char id[32];

	if (!keep)
		return;
	covered = calloc(rs->n ? rs->n : 1, sizeof *covered);
	chosen = calloc(rs->n ? rs->n : 1, sizeof *chosen);
	if (!covered || !chosen)
		goto out;
	for (size_t i = 0; i < rs->n; i++) {
		if (rs->r[i].mark != 1)
			continue;
		if (fmt)
			period(covered[ncov++], 32, fmt, rs->r[i].time);
		else
			snprintf(covered[ncov++], 32, "#%zu", i);
	}
	for (size_t i = 0; i < rs->n; i++) {
		struct rp_row *r = &rs->r[i];
		size_t j;

		if (r->mark)
			continue;
		if (fmt)
			period(id, sizeof id, fmt, r->time);
		else
			snprintf(id, sizeof id, "#%zu", i);
		for (j = 0; j < ncov && strcmp(covered[j], id); j++)
			;
		if (j < ncov)
			continue;
		for (j = 0; j < nch && strcmp(chosen[j], id); j++)
			;
		if (j < nch) {
			r->mark = -1;
			snprintf(r->reason, sizeof r->reason, "%s %s: a newer "
				 "RP is kept", name, id);
			continue;
		}
		if (nch >= keep)
			break;
		snprintf(chosen[nch++], 32, "%s", id);
		r->mark = 1;
		if (fmt)
			snprintf(r->reason, sizeof r->reason, "%s %s", name, id);
		else
			snprintf(r->reason, sizeof r->reason, "%s", name);
	}
out:
	free(covered);
	free(chosen);
}

/* Marks every row of RS (newest first) by policy P at time NOW. */
static void plan(bv_store *s, struct rows *rs, const bv_policy *p,
		 int64_t now, const struct bv_view_pin *pins, size_t npins,
		 const char *gname)
{
	int counts = p->keep_last | p->keep_hourly | p->keep_daily |
		     p->keep_weekly | p->keep_monthly | p->keep_yearly;
	char when[40];

	for (size_t i = 0; i < rs->n; i++) {
		struct rp_row *r = &rs->r[i];
		if (r->until > now) {
			r->mark = 2; /* kept, counts for nothing */
			if (r->until == BV_LOCK_FOREVER)
				snprintf(when, sizeof when, "forever");
			else
				period(when, sizeof when, "%Y-%m-%d %H:%M",
				       r->until);
			snprintf(r->reason, sizeof r->reason,
				 "protected until %s", when);
		}
	}
	mark_rule(rs, p->keep_last, "last", NULL);
	mark_rule(rs, p->keep_hourly, "hourly", "%Y-%m-%d %H");
	mark_rule(rs, p->keep_daily, "daily", "%Y-%m-%d");
	mark_rule(rs, p->keep_weekly, "weekly", "%G-W%V");
	mark_rule(rs, p->keep_monthly, "monthly", "%Y-%m");
	mark_rule(rs, p->keep_yearly, "yearly", "%Y");
	for (size_t i = 0; i < rs->n; i++) {
		struct rp_row *r = &rs->r[i];
		int old = p->max_age_days &&
			  now - r->time > (int64_t)p->max_age_days * 86400;

		if (r->mark == 2)
			continue;
		if (!counts && !old && p->max_age_days) {
			r->mark = 1;
			snprintf(r->reason, sizeof r->reason, "within max-age "
				 "%u days", p->max_age_days);
		} else if (old && r->mark != -1) {
			r->mark = -1;
			snprintf(r->reason, sizeof r->reason, "older than "
				 "max-age %u days", p->max_age_days);
		} else if (r->mark == 0) {
			r->mark = -1;
			snprintf(r->reason, sizeof r->reason, "not kept by the "
				 "policy");
		}
	}
	for (size_t i = 0; i < rs->n; i++) {
		struct rp_row *r = &rs->r[i];
		const struct bv_view_pin *pin = NULL;

		if (r->mark != -1)
			continue;
		for (size_t j = 0; j < npins && !pin; j++) {
			struct bv_rrec rr;
			if (pins[j].rp == r->number &&
			    bv_rrec_get(s, pins[j].replica, &rr) == 0 &&
			    rr.gid == rs->gid)
				pin = &pins[j];
		}
		if (i == 0) {
			r->mark = 1;
			snprintf(r->reason, sizeof r->reason, "latest (the base "
				 "agents send changes from)");
		} else if (pin) {
			r->mark = 1;
			snprintf(r->reason, sizeof r->reason, "view %s is made "
				 "from it", pin->view);
		}
	}
	(void)gname;
}

/* Prunes group GNAME (GID) by its policy; with life_lock and the pins
 * held. */
static int prune_group(bv_store *s, const char *gname, uint64_t gid,
		       int dry_run, const struct bv_view_pin *pins,
		       size_t npins,
		       int (*cb)(void *ud, const bv_prune_item *it), void *ud)
{
	struct rows rs = { NULL, 0, 0, s, gid };
	bv_policy p;
	int rc;

	pthread_mutex_lock(&s->meta_lock);
	if ((rc = policy_load(s, gid, &p)))
		rc = bv_fail(rc, "group %s: policy record: %s", gname,
			     bv_strerror(rc));
	else
		rc = bv_life_rp_each(s, gid, rows_add, &rs);
	pthread_mutex_unlock(&s->meta_lock);
	if (rc)
		goto out;
	if (policy_empty(&p)) {
		rc = bv_fail(BV_EINVAL, "group %s: has no retention policy "
			     "(bvault policy set)", gname);
		goto out;
	}
	/* Newest first. */
	for (size_t i = 0; i < rs.n / 2; i++) {
		struct rp_row t = rs.r[i];
		rs.r[i] = rs.r[rs.n - 1 - i];
		rs.r[rs.n - 1 - i] = t;
	}
	plan(s, &rs, &p, (int64_t)time(NULL), pins, npins, gname);
	for (size_t i = 0; i < rs.n; i++) {
		bv_prune_item it = { gname, rs.r[i].number, rs.r[i].time,
				     rs.r[i].label, rs.r[i].mark != -1, "" };
		snprintf(it.reason, sizeof it.reason, "%s", rs.r[i].reason);
		if ((rc = cb(ud, &it)))
			goto out;
	}
	if (dry_run)
		goto out;
	/* Oldest first: each removal then finds its older neighbour
	 * already gone, and frees the most it can. */
	for (size_t i = rs.n; i-- > 0;)
		if (rs.r[i].mark == -1 &&
		    (rc = bv_life_rp_remove_locked(s, gname, rs.r[i].number,
						   pins, npins)))
			goto out;
out:
	free(rs.r);
	return rc;
}

struct gnames {
	char (*name)[BV_NAME_MAX + 1];
	uint64_t *gid;
	size_t n, cap;
};

/* Every group, in name order. */
static int groups_load(bv_store *s, struct gnames *gs)
{
	static _Thread_local struct bv_grec g;
	struct bv_kv_iter *it = NULL;
	int rc;

	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "g/", 2, "g0", 2, &it)))
		return bv_fail_storage(rc, s->path);
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		if (kl < 3 || kl - 2 > BV_NAME_MAX)
			continue;
		if (gs->n == gs->cap) {
			size_t nc = gs->cap ? 2 * gs->cap : 32;
			void *a = realloc(gs->name, nc * sizeof *gs->name);
			if (a)
				gs->name = a;
			void *b = realloc(gs->gid, nc * sizeof *gs->gid);
			if (b)
				gs->gid = b;
			if (!a || !b) {
				rc = -ENOMEM;
				break;
			}
			gs->cap = nc;
		}
		memcpy(gs->name[gs->n], k + 2, kl - 2);
		gs->name[gs->n][kl - 2] = 0;
		if (bv_grec_get(s, gs->name[gs->n], &g)) {
			rc = bv_fail(BV_ECORRUPT, "group %s: record is damaged",
				     gs->name[gs->n]);
			break;
		}
		gs->gid[gs->n++] = g.gid;
	}
	if (!rc && (rc = bv_kv_iter_status(it)))
		rc = bv_fail_storage(rc, s->path);
	bv_kv_iter_free(it);
	return rc;
}

int bv_prune(bv_store *s, const char *what, int dry_run,
	     int (*cb)(void *ud, const bv_prune_item *it), void *ud)
{
	static _Thread_local struct bv_grec g;
	struct gnames gs = { 0 };
	struct bv_view_pin *pins = NULL;
	char gname[BV_NAME_MAX + 1];
	size_t npins = 0;
	int rc, lfd = -1;

	bv_fail(0, "%s", "");
	/* A dry run reads only: it works on a read-only open. */
	if (!dry_run && (rc = bv_store_writable(s)))
		return rc;
	if (what && (rc = bv_name_check("replica or group", what)))
		return rc;
	if (what && (rc = bv_resolve_group(s, what, gname, &g)))
		return rc;
	if (!what && (rc = groups_load(s, &gs)))
		goto out_free;
	pthread_mutex_lock(&s->life_lock);
	if ((rc = bv_view_pins_lock(s, !dry_run, &lfd, &pins, &npins)))
		goto out;
	if (what) {
		rc = prune_group(s, gname, g.gid, dry_run, pins, npins, cb,
				 ud);
		goto out;
	}
	for (size_t i = 0; i < gs.n && !rc; i++) {
		bv_policy p;
		if ((rc = policy_load(s, gs.gid[i], &p))) {
			rc = bv_fail(rc, "group %s: policy record: %s",
				     gs.name[i], bv_strerror(rc));
			break;
		}
		if (!policy_empty(&p))
			rc = prune_group(s, gs.name[i], gs.gid[i], dry_run,
					 pins, npins, cb, ud);
	}
out:
	bv_view_pins_unlock(lfd, pins);
	pthread_mutex_unlock(&s->life_lock);
out_free:
	free(gs.name);
	free(gs.gid);
	return rc;
}

/* ---- group ls ------------------------------------------------------------ */

struct count_ctx {
	uint64_t n, newest;
};

static int count_one(void *ud, uint64_t number, const struct bv_rprec *p)
{
	struct count_ctx *c = ud;
	(void)p;
	c->n++;
	c->newest = number;
	return 0;
}

int bv_group_list(bv_store *s, int (*cb)(void *ud, const bv_group_info *g),
		  void *ud)
{
	static _Thread_local struct bv_grec g;
	static _Thread_local char names[BV_GROUP_MAX_MEMBERS][BV_NAME_MAX + 1];
	static _Thread_local const char *ptrs[BV_GROUP_MAX_MEMBERS];
	struct gnames gs = { 0 };
	bv_group_info info;
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = groups_load(s, &gs)))
		goto out;
	for (size_t i = 0; i < gs.n; i++) {
		struct count_ctx c = { 0, 0 };

		memset(&info, 0, sizeof info);
		snprintf(info.name, sizeof info.name, "%s", gs.name[i]);
		if ((rc = bv_grec_get(s, gs.name[i], &g)))
			continue; /* removed since the listing */
		for (uint32_t j = 0; j < g.n; j++) {
			if (bv_id_name(s, "ri/", g.members[j], names[j]))
				snprintf(names[j], sizeof names[j], "#%llu",
					 (unsigned long long)g.members[j]);
			ptrs[j] = names[j];
		}
		info.nmembers = g.n;
		info.members = ptrs;
		if ((rc = bv_life_rp_each(s, g.gid, count_one, &c)))
			goto out;
		info.rps = c.n;
		info.latest_rp = c.newest;
		if ((rc = policy_load(s, g.gid, &info.policy))) {
			rc = bv_fail(rc, "group %s: policy record: %s",
				     gs.name[i], bv_strerror(rc));
			goto out;
		}
		if ((rc = cb(ud, &info)))
			goto out;
	}
	rc = 0;
out:
	free(gs.name);
	free(gs.gid);
	return rc;
}
