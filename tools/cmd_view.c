/*
 * cmd_view.c: bvault view create | ls | rm | promote (bvault.h, "views").
 * create, ls and rm open the store read-only: a view lives in
 * STORE/views/, beside the store's writer (a running bvaultd), never in
 * the index. promote needs the writer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bvault.h"
#include "cli.h"
#include "cmd_view.h"

int cmd_view_create(int argc, char **argv)
{
	const char *from = NULL;
	struct optdef defs[] = {
		{ "from", OPT_VALUE, &from, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "NAME" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	char replica[BV_NAME_MAX + 1];
	bv_store *s = NULL;
	uint64_t rp = 0;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_name("view name", pos[1]);
	if (!rc && !from)
		rc = usage_error("view %s: say which RP it is of: --from "
				 "REPLICA@RP", pos[1]);
	if (!rc)
		rc = arg_replica_rp(from, replica, &rp);
	if (!rc && rp == 0)
		rc = usage_error("--from %s: a view is of a recovery point "
				 "(a number or 'latest'), not of the head (0)",
				 from);
	if (!rc)
		rc = open_store_reading(pos[0], &s);
	if (rc)
		goto out;
	rc = bv_view_create(s, pos[1], replica, rp);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	{
		bv_view_info vi;
		if (bv_view_info_get(s, pos[1], &vi) == 0)
			fprintf(CLI_OUT, "view %s of %s@%" PRIu64 "\n", vi.name,
				vi.replica, vi.rp);
	}
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

struct view_ls {
	int json, n;
};

static int view_ls_one(void *ud, const bv_view_info *v)
{
	struct view_ls *l = ud;
	char when[32], size[32], written[32];

	fmt_time(when, sizeof when, v->created);
	if (l->json) {
		fprintf(CLI_OUT, "%s\n  {\"name\": ", l->n ? "," : "");
		json_str(CLI_OUT, v->name);
		fprintf(CLI_OUT, ", \"replica\": ");
		json_str(CLI_OUT, v->replica);
		fprintf(CLI_OUT, ", \"rp\": %" PRIu64 ", \"version\": %" PRIu64
			", \"identity\": ", v->rp, v->version);
		json_id(CLI_OUT, v->id);
		fprintf(CLI_OUT,
			", \"created\": %" PRId64 ", \"size\": %" PRIu64
			", \"written_bytes\": %" PRIu64 ", \"in_use\": %s}",
			v->created, v->size, v->written_bytes,
			v->in_use ? "true" : "false");
	} else {
		human(size, sizeof size, (double)v->size);
		human(written, sizeof written, (double)v->written_bytes);
		fprintf(CLI_OUT, "%-24s %s@%-10" PRIu64 " %10s %10s  %s%s\n",
			v->name,
			v->replica, v->rp, size, written, when,
			v->in_use ? "  in use" : "");
	}
	l->n++;
	return 0;
}

int cmd_view_ls(int argc, char **argv)
{
	struct view_ls l = { 0, 0 };
	struct optdef defs[] = {
		{ "json", OPT_FLAG, NULL, &l.json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
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
	if (l.json)
		fprintf(CLI_OUT, "[");
	else
		fprintf(CLI_OUT, "%-24s %-13s %10s %10s  %s\n", "VIEW", "OF",
			"SIZE",
			"WRITTEN", "CREATED");
	rc = bv_view_list(s, view_ls_one, &l);
	if (l.json)
		fprintf(CLI_OUT, "%s]\n", l.n ? "\n" : "");
	if (rc < 0)
		rc = store_error(s, rc);
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

int cmd_view_rm(int argc, char **argv)
{
	static const char *const names[] = { "STORE", "NAME" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_store *s = NULL;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, NULL, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_name("view name", pos[1]);
	if (!rc)
		rc = open_store_reading(pos[0], &s);
	if (rc)
		goto out;
	if ((rc = bv_view_remove(s, pos[1])) < 0)
		rc = store_error(s, rc);
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

int cmd_view_promote(int argc, char **argv)
{
	const char *as = NULL, *label = NULL;
	int into = 0;
	struct optdef defs[] = {
		{ "as", OPT_VALUE, &as, NULL },
		{ "into", OPT_FLAG, NULL, &into },
		{ "label", OPT_VALUE, &label, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "NAME" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_store *s = NULL;
	bv_view_info vi;
	uint64_t rp = 0;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_name("view name", pos[1]);
	if (!rc && !as == !into)
		rc = usage_error("view %s: say where it goes: --as REPLICA (a "
				 "new replica) or --into (its own replica)",
				 pos[1]);
	if (!rc && as)
		rc = arg_name("replica name", as);
	if (!rc && label && strlen(label) > BV_LABEL_MAX)
		rc = usage_error("--label: longer than %d bytes", BV_LABEL_MAX);
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	rc = bv_view_promote(s, pos[1], as, label, &rp);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (bv_view_info_get(s, pos[1], &vi) < 0)
		snprintf(vi.replica, sizeof vi.replica, "?");
	fprintf(CLI_OUT, "view %s promoted: %s@%" PRIu64 "\n", pos[1],
		as ? as : vi.replica, rp);
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}
