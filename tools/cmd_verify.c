/*
 * cmd_verify.c: bvault verify (a read of everything a store keeps, or of
 * what some RPs read, marking the chunks found bad) and bvault check (the
 * index held against the containers, without reading chunk payloads).
 *
 * verify opens the store for writing when it can, so that the chunks it
 * finds bad are marked (INVARIANTS.md 13); when another process is the
 * writer (bvaultd), the store is on read-only media or not the user's,
 * or with --read-only, it opens read-only, reports the same findings,
 * and says what it did not mark. Under bvaultd's admin socket it runs on
 * the store bvaultd holds (cli_held), beside its ingest sessions.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bvault.h"
#include "cli.h"
#include "cmd_verify.h"

/* The findings, as they come: a line each, or (JSON) an element each of
 * a "findings" array. */
struct vprint {
	int json;
	uint64_t n;
	struct progress *pr; /* cleared before a line is printed */
	FILE *f;  /* the command's CLI_OUT: the findings come from the
		   * engine's reader threads, where CLI_OUT (per thread)
		   * would be bvaultd's own stdout */
};

static void print_finding(void *ud, const bv_verify_report *r)
{
	static const char *const kind[] = { "", "damaged", "needed", "unknown",
					    "index" };
	struct vprint *p = ud;
	const char *k = r->kind >= 1 && r->kind <= 4 ? kind[r->kind] : "?";
	FILE *f = p->f;

	if (p->pr && p->pr->drawn) {
		fputs("\r\033[K", p->pr->f);
		p->pr->drawn = 0;
	}
	if (!p->json) {
		fprintf(f, "%-8s %s\n", k, r->message);
		p->n++;
		return;
	}
	fprintf(f, "%s\n    { \"kind\": \"%s\", \"message\": ",
		p->n ? "," : "", k);
	json_str(f, r->message);
	if (r->kind == BV_VERIFY_NEEDED) {
		fprintf(f, ", \"replica\": ");
		json_str(f, r->replica);
		fprintf(f, ", \"rp\": %" PRIu64 ", \"offset\": %" PRIu64
			", \"length\": %" PRIu64, r->rp, r->off, r->len);
	} else if (r->container) {
		fprintf(f, ", \"container\": %u, \"offset\": %" PRIu64
			", \"length\": %" PRIu64, r->container, r->offset,
			r->length);
	}
	fprintf(f, " }");
	p->n++;
}

/* Opens PATH for verify: for writing unless READ_ONLY, else (or when
 * that fails) read-only, with the reason in WHY. */
static int open_for_verify(const char *path, int read_only, bv_store **s,
			   char *why, size_t n)
{
	bv_open_opts o = { .read_only = 0 };
	bv_store *w = NULL;
	int rc;

	*why = '\0';
	if (cli_held || read_only) {
		if (read_only)
			snprintf(why, n, "--read-only");
		return read_only && !cli_held ? open_store_reading(path, s) :
		       open_store(path, s);
	}
	/* While bvaultd holds the store, it runs verify (and marks). */
	cli_try_forward(path);
	rc = bv_store_open(path, &o, &w);
	if (rc == 0) {
		*s = w;
		return 0;
	}
	snprintf(why, n, "%s", w ? store_msg(w, rc) : bv_strerror(rc));
	close_store(w);
	return open_store_reading(path, s);
}

/* "vm1@3" or "vm1@latest" (one RP), else a replica or group name (every
 * RP of its group). */
static int parse_scope(const char *arg, char *name, bv_verify_scope *sc)
{
	const char *why;

	sc->name = name;
	sc->rp = 0;
	if (strchr(arg, '@'))
		return arg_replica_rp(arg, name, &sc->rp);
	if ((why = check_name(arg)))
		return usage_error("bad replica or group '%s': %s", arg, why);
	snprintf(name, BV_NAME_MAX + 1, "%s", arg);
	return 0;
}

int cmd_verify(int argc, char **argv)
{
	int json = 0, read_only = 0;
	const char *jobs = NULL;
	struct optdef defs[] = {
		{ "json", OPT_FLAG, NULL, &json },
		{ "read-only", OPT_FLAG, NULL, &read_only },
		{ "jobs", OPT_VALUE, &jobs, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "REPLICA@RP" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_verify_scope *scope = NULL;
	char (*snames)[BV_NAME_MAX + 1] = NULL;
	bv_store *s = NULL;
	bv_verify_result r;
	bv_verify_opts o = { 0 };
	struct progress pr;
	char why[1024];
	uint64_t nj = 0;
	int npos = 0, rc;
	FILE *f = CLI_OUT;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, npos > 0 ? npos : 1, names);
	if (!rc && jobs && (rc = arg_u64("jobs", jobs, &nj)) == 0 &&
	    (nj < 1 || nj > 64))
		rc = usage_error("--jobs %s: not a number from 1 to 64", jobs);
	if (!rc && npos > 1) {
		scope = calloc((size_t)npos, sizeof *scope);
		snames = calloc((size_t)npos, sizeof *snames);
		if (!scope || !snames)
			rc = op_error("%s", strerror(ENOMEM));
		for (int i = 1; !rc && i < npos; i++)
			rc = parse_scope(pos[i], snames[i - 1], &scope[i - 1]);
	}
	if (!rc)
		rc = open_for_verify(pos[0], read_only, &s, why, sizeof why);
	if (rc)
		goto out;
	progress_init(&pr, "verify");
	struct vprint vp = { .json = json, .pr = &pr, .f = f };
	o.jobs = (unsigned)nj;
	o.read_only = read_only;
	o.scope = scope;
	o.nscope = npos > 1 ? (size_t)npos - 1 : 0;
	o.progress = progress_cb;
	o.progress_ud = &pr;
	if (json)
		fprintf(f, "{\n  \"findings\": [");
	int vrc = bv_store_verify_opts(s, &o, print_finding, &vp, &r);
	progress_end(&pr);
	if (vrc < 0 && vrc != BV_ECORRUPT) {
		if (json)
			fprintf(f, "\n  ]\n}\n");
		rc = store_error(s, vrc);
		goto out;
	}
	if (r.unmarked && !*why)
		snprintf(why, sizeof why, "%s", r.not_marked);
	if (json) {
		fprintf(f, "%s],\n  \"containers\": %" PRIu64
			",\n  \"records\": %" PRIu64 ",\n  \"chunks\": %" PRIu64
			",\n  \"map_entries\": %" PRIu64
			",\n  \"problems\": %" PRIu64
			",\n  \"damaged_bytes\": %" PRIu64
			",\n  \"needed_ranges\": %" PRIu64
			",\n  \"unknown_bytes\": %" PRIu64
			",\n  \"bad_chunks\": %" PRIu64
			",\n  \"marked\": %" PRIu64
			",\n  \"unmarked\": %" PRIu64 ",\n  \"not_marked\": ",
			vp.n ? "\n  " : "", r.containers, r.records, r.chunks,
			r.map_entries, r.problems, r.damaged_bytes,
			r.needed_ranges, r.unknown_bytes, r.bad_chunks,
			r.marked, r.unmarked);
		if (r.unmarked)
			json_str(f, why);
		else
			fputs("null", f);
		fprintf(f, "\n}\n");
	} else {
		fprintf(f, "%" PRIu64 " containers (%" PRIu64 " records), %"
			PRIu64 " chunks read back, %" PRIu64 " map entries: "
			"%s\n", r.containers, r.records, r.chunks,
			r.map_entries, r.problems ? "DAMAGED" : "intact");
		if (r.marked)
			fprintf(f, "marked bad: %" PRIu64 " chunk%s (not served "
				"nor reused until a host sends them again)\n",
				r.marked, r.marked == 1 ? "" : "s");
		if (r.unmarked)
			fprintf(f, "not marked: %" PRIu64 " bad chunk%s, since "
				"the store was opened read-only: %s\n",
				r.unmarked, r.unmarked == 1 ? "" : "s", why);
	}
	if (vrc == BV_ECORRUPT)
		rc = store_error(s, vrc);
out:
	close_store(s);
	free(scope);
	free(snames);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

int cmd_check(int argc, char **argv)
{
	int json = 0;
	struct optdef defs[] = {
		{ "json", OPT_FLAG, NULL, &json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_store *s = NULL;
	bv_check_result r;
	int npos, rc;
	FILE *f = CLI_OUT;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, names);
	if (!rc)
		rc = open_store_reading(pos[0], &s);
	if (rc)
		goto out;
	struct vprint vp = { .json = json, .f = f };
	if (json)
		fprintf(f, "{\n  \"findings\": [");
	int crc = bv_store_check_report(s, print_finding, &vp, &r);
	if (crc < 0 && crc != BV_ECORRUPT) {
		if (json)
			fprintf(f, "\n  ]\n}\n");
		rc = store_error(s, crc);
		goto out;
	}
	if (json)
		fprintf(f, "%s],\n  \"containers\": %" PRIu64
			",\n  \"chunks\": %" PRIu64
			",\n  \"map_entries\": %" PRIu64
			",\n  \"problems\": %" PRIu64 "\n}\n",
			vp.n ? "\n  " : "", r.containers, r.chunks,
			r.map_entries, r.problems);
	else
		fprintf(f, "%" PRIu64 " containers, %" PRIu64 " chunk index "
			"entries, %" PRIu64 " map entries: %s\n", r.containers,
			r.chunks, r.map_entries,
			r.problems ? "INCONSISTENT" : "consistent");
	if (crc == BV_ECORRUPT)
		rc = store_error(s, crc);
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}
