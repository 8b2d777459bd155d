/*
 * cmd_life.c: bvault rp rm | rp protect | policy set | policy show |
 * prune | replica rm | group add | group ls (bvault.h, "lifecycle").
 * prune --dry-run, policy show and group ls open the store read-only:
 * they change nothing, and work beside bvaultd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bvault.h"
#include "cli.h"
#include "cmd_life.h"

/* Positional arguments: room for all of ARGV. */
static char **pos_new(int argc)
{
	return calloc((size_t)argc + 1, sizeof(char *));
}

static void fmt_min(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) ||
	    !strftime(buf, len, "%Y-%m-%d %H:%M", &tm))
		snprintf(buf, len, "%" PRId64, t);
}

/* --until DATE: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] (UTC) or @SECONDS. */
static int arg_date(const char *s, int64_t *out)
{
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
	char tail[8] = "";

	if (s[0] == '@') {
		uint64_t v;
		if (parse_u64(s + 1, &v) || v > INT64_MAX / 2)
			return usage_error("bad --until '%s': @SECONDS must be "
					   "a number", s);
		*out = (int64_t)v;
		return 0;
	}
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3)
		goto bad;
	if (s[n] == 'T' || s[n] == ' ') {
		int m = 0;
		if (sscanf(s + n + 1, "%2d:%2d%n", &h, &mi, &m) != 2)
			goto bad;
		n += 1 + m;
		if (s[n] == ':') {
			if (sscanf(s + n + 1, "%2d%n", &se, &m) != 1)
				goto bad;
			n += 1 + m;
		}
	}
	snprintf(tail, sizeof tail, "%s", s + n);
	if (strcmp(tail, "") && strcmp(tail, "Z"))
		goto bad;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    se > 60 || y < 1970)
		goto bad;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	*out = (int64_t)timegm(&tm);
	return 0;
bad:
	return usage_error("bad --until '%s': a date YYYY-MM-DD or "
			   "YYYY-MM-DDTHH:MM[:SS] (UTC), or @SECONDS", s);
}

/* ---- rp rm, rp protect ------------------------------------------------ */

int cmd_rp_rm(int argc, char **argv)
{
	int force = 0;
	struct optdef defs[] = {
		{ "force", OPT_FLAG, NULL, &force },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "GROUP@RP" };
	char **pos = pos_new(argc);
	char name[BV_NAME_MAX + 1];
	bv_store *s = NULL;
	uint64_t rp = 0;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_replica_rp(pos[1], name, &rp);
	if (!rc && rp == 0)
		rc = usage_error("bad GROUP@RP '%s': 0 is the head, not a "
				 "recovery point", pos[1]);
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	if ((rc = bv_rp_remove(s, name, rp, force)) < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	fprintf(CLI_OUT, "removed %s\n", pos[1]);
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

int cmd_rp_protect(int argc, char **argv)
{
	const char *until_s = NULL;
	int forever = 0;
	struct optdef defs[] = {
		{ "until", OPT_VALUE, &until_s, NULL },
		{ "forever", OPT_FLAG, NULL, &forever },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "GROUP@RP" };
	char **pos = pos_new(argc);
	char name[BV_NAME_MAX + 1], when[40];
	int64_t until = BV_LOCK_FOREVER;
	bv_store *s = NULL;
	uint64_t rp = 0;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_replica_rp(pos[1], name, &rp);
	if (!rc && rp == 0)
		rc = usage_error("bad GROUP@RP '%s': 0 is the head, not a "
				 "recovery point", pos[1]);
	if (!rc && !!until_s == !!forever)
		rc = usage_error("say how long: --until DATE or --forever "
				 "(one of them)");
	if (!rc && until_s)
		rc = arg_date(until_s, &until);
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	if ((rc = bv_rp_protect(s, name, rp, until)) < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (until == BV_LOCK_FOREVER)
		snprintf(when, sizeof when, "forever");
	else
		fmt_time(when, sizeof when, until);
	fprintf(CLI_OUT, "protected %s until %s\n", pos[1], when);
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* ---- policy ---------------------------------------------------------- */

static int arg_count(const char *opt, const char *s, uint32_t *out)
{
	uint64_t v = 0;
	int rc;

	if (!s)
		return 0;
	if ((rc = arg_u64(opt, s, &v)))
		return rc;
	if (v == 0 || v > 1000000)
		return usage_error("bad number '%s' for %s: 1 to 1000000", s,
				   opt);
	*out = (uint32_t)v;
	return 0;
}

int cmd_policy_set(int argc, char **argv)
{
	const char *v[7] = { NULL };
	static const char *const opt[7] = {
		"--keep-last", "--keep-hourly", "--keep-daily", "--keep-weekly",
		"--keep-monthly", "--keep-yearly", "--max-age",
	};
	struct optdef defs[] = {
		{ "keep-last", OPT_VALUE, &v[0], NULL },
		{ "keep-hourly", OPT_VALUE, &v[1], NULL },
		{ "keep-daily", OPT_VALUE, &v[2], NULL },
		{ "keep-weekly", OPT_VALUE, &v[3], NULL },
		{ "keep-monthly", OPT_VALUE, &v[4], NULL },
		{ "keep-yearly", OPT_VALUE, &v[5], NULL },
		{ "max-age", OPT_VALUE, &v[6], NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "GROUP" };
	char **pos = pos_new(argc);
	bv_policy p = { 0 };
	uint32_t *f[7] = { &p.keep_last, &p.keep_hourly, &p.keep_daily,
			   &p.keep_weekly, &p.keep_monthly, &p.keep_yearly,
			   &p.max_age_days };
	bv_store *s = NULL;
	int npos, rc, any = 0;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_name("replica or group name", pos[1]);
	for (int i = 0; i < 7 && !rc; i++) {
		rc = arg_count(opt[i], v[i], f[i]);
		any |= v[i] != NULL;
	}
	if (!rc && !any)
		rc = usage_error("an empty policy: give at least one of "
				 "--keep-last, --keep-hourly, --keep-daily, "
				 "--keep-weekly, --keep-monthly, --keep-yearly, "
				 "--max-age");
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	if ((rc = bv_policy_set(s, pos[1], &p)) < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

static void policy_text(FILE *f, const bv_policy *p)
{
	static const char *const name[7] = {
		"keep-last", "keep-hourly", "keep-daily", "keep-weekly",
		"keep-monthly", "keep-yearly", "max-age",
	};
	const uint32_t v[7] = { p->keep_last, p->keep_hourly, p->keep_daily,
				p->keep_weekly, p->keep_monthly,
				p->keep_yearly, p->max_age_days };
	int any = 0;

	for (int i = 0; i < 7; i++)
		if (v[i]) {
			fprintf(f, "%s%s %" PRIu32, any ? " " : "", name[i],
				v[i]);
			any = 1;
		}
	if (!any)
		fprintf(f, "none");
}

static void policy_json(FILE *f, const bv_policy *p)
{
	int none = !(p->keep_last | p->keep_hourly | p->keep_daily |
		     p->keep_weekly | p->keep_monthly | p->keep_yearly |
		     p->max_age_days);

	if (none) {
		fprintf(f, "null");
		return;
	}
	fprintf(f, "{\"keep_last\": %" PRIu32 ", \"keep_hourly\": %" PRIu32
		", \"keep_daily\": %" PRIu32 ", \"keep_weekly\": %" PRIu32
		", \"keep_monthly\": %" PRIu32 ", \"keep_yearly\": %" PRIu32
		", \"max_age_days\": %" PRIu32 "}", p->keep_last,
		p->keep_hourly, p->keep_daily, p->keep_weekly,
		p->keep_monthly, p->keep_yearly, p->max_age_days);
}

struct show_ctx {
	int json, n;
	const char *only;
};

static int show_one(void *ud, const bv_group_info *g)
{
	struct show_ctx *c = ud;
	FILE *f = CLI_OUT;

	if (c->only && strcmp(c->only, g->name))
		return 0;
	if (c->json) {
		fprintf(f, "%s\n  {\"group\": ", c->n ? "," : "");
		json_str(f, g->name);
		fprintf(f, ", \"policy\": ");
		policy_json(f, &g->policy);
		fprintf(f, "}");
	} else {
		fprintf(f, "%-24s ", g->name);
		policy_text(f, &g->policy);
		fprintf(f, "\n");
	}
	c->n++;
	return 0;
}

/* The group a replica name resolves to: its own name when it is one. */
static int resolve_group(bv_store *s, const char *what, char *gname)
{
	bv_replica_info ri;

	if (bv_replica_info_get(s, what, &ri) == 0)
		snprintf(gname, BV_NAME_MAX + 1, "%s", ri.group);
	else
		snprintf(gname, BV_NAME_MAX + 1, "%s", what);
	return 0;
}

int cmd_policy_show(int argc, char **argv)
{
	struct show_ctx c = { 0, 0, NULL };
	struct optdef defs[] = {
		{ "json", OPT_FLAG, NULL, &c.json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "GROUP" };
	char **pos = pos_new(argc);
	char gname[BV_NAME_MAX + 1];
	bv_store *s = NULL;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 2, names);
	if (!rc && npos == 2)
		rc = arg_name("replica or group name", pos[1]);
	if (!rc)
		rc = open_store_reading(pos[0], &s);
	if (rc)
		goto out;
	if (npos == 2) {
		bv_policy p;
		if ((rc = bv_policy_get(s, pos[1], &p)) < 0) {
			rc = store_error(s, rc);
			goto out;
		}
		resolve_group(s, pos[1], gname);
		c.only = gname;
	}
	if (c.json)
		fprintf(CLI_OUT, "[");
	if ((rc = bv_group_list(s, show_one, &c)) < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (c.json)
		fprintf(CLI_OUT, "%s]\n", c.n ? "\n" : "");
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* ---- prune --------------------------------------------------------------- */

struct prune_ctx {
	int json, n, removed;
};

static int prune_one(void *ud, const bv_prune_item *it)
{
	struct prune_ctx *c = ud;
	FILE *f = CLI_OUT;
	char when[32];

	if (c->json) {
		fprintf(f, "%s\n  {\"group\": ", c->n ? "," : "");
		json_str(f, it->group);
		fprintf(f, ", \"rp\": %" PRIu64 ", \"time\": %" PRId64
			", \"keep\": %s, \"reason\": ", it->number, it->time,
			it->keep ? "true" : "false");
		json_str(f, it->reason);
		fprintf(f, "}");
	} else {
		fmt_min(when, sizeof when, it->time);
		fprintf(f, "%-6s %-12s %-6" PRIu64 " %s  %s\n",
			it->keep ? "keep" : "remove", it->group, it->number,
			when, it->reason);
	}
	c->n++;
	c->removed += !it->keep;
	return 0;
}

int cmd_prune(int argc, char **argv)
{
	struct prune_ctx c = { 0, 0, 0 };
	int dry = 0;
	struct optdef defs[] = {
		{ "dry-run", OPT_FLAG, NULL, &dry },
		{ "json", OPT_FLAG, NULL, &c.json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "GROUP" };
	char **pos = pos_new(argc);
	bv_store *s = NULL;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 2, names);
	if (!rc && npos == 2)
		rc = arg_name("replica or group name", pos[1]);
	/* A dry run opens read-only: not a byte of the store changes. */
	if (!rc)
		rc = dry ? open_store_reading(pos[0], &s)
			 : open_store(pos[0], &s);
	if (rc)
		goto out;
	if (c.json)
		fprintf(CLI_OUT, "[");
	rc = bv_prune(s, npos == 2 ? pos[1] : NULL, dry, prune_one, &c);
	if (c.json)
		fprintf(CLI_OUT, "%s]\n", c.n ? "\n" : "");
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (!c.json)
		fprintf(CLI_ERR, "%s%d recovery point%s %s\n",
			dry ? "dry run: " : "", c.removed,
			c.removed == 1 ? "" : "s",
			dry ? "would be removed" : "removed");
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* ---- replica rm, group ls ------------------------------------ */

int cmd_replica_rm(int argc, char **argv)
{
	static const char *const names[] = { "STORE", "NAME" };
	char **pos = pos_new(argc);
	bv_store *s = NULL;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, NULL, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_name("replica name", pos[1]);
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	if ((rc = bv_replica_remove(s, pos[1])) < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	fprintf(CLI_OUT, "removed replica %s\n", pos[1]);
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

static int group_ls_one(void *ud, const bv_group_info *g)
{
	struct show_ctx *c = ud;
	FILE *f = CLI_OUT;

	if (c->json) {
		fprintf(f, "%s\n  {\"name\": ", c->n ? "," : "");
		json_str(f, g->name);
		fprintf(f, ", \"members\": [");
		for (uint32_t i = 0; i < g->nmembers; i++) {
			fprintf(f, "%s", i ? ", " : "");
			json_str(f, g->members[i]);
		}
		fprintf(f, "], \"rps\": %" PRIu64 ", \"latest_rp\": %" PRIu64
			", \"policy\": ", g->rps, g->latest_rp);
		policy_json(f, &g->policy);
		fprintf(f, "}");
	} else {
		fprintf(f, "%-20s rps %-6" PRIu64 " latest %-6" PRIu64
			" policy ", g->name, g->rps, g->latest_rp);
		policy_text(f, &g->policy);
		fprintf(f, "\n  members:");
		for (uint32_t i = 0; i < g->nmembers; i++)
			fprintf(f, " %s", g->members[i]);
		fprintf(f, "\n");
	}
	c->n++;
	return 0;
}

int cmd_group_ls(int argc, char **argv)
{
	struct show_ctx c = { 0, 0, NULL };
	struct optdef defs[] = {
		{ "json", OPT_FLAG, NULL, &c.json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE" };
	char **pos = pos_new(argc);
	bv_store *s = NULL;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, names);
	if (!rc)
		rc = open_store_reading(pos[0], &s);
	if (rc)
		goto out;
	if (c.json)
		fprintf(CLI_OUT, "[");
	if ((rc = bv_group_list(s, group_ls_one, &c)) < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (c.json)
		fprintf(CLI_OUT, "%s]\n", c.n ? "\n" : "");
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}
