/*
 * cmd_gc.c: bvault gc, garbage collection and container compaction
 * (bvault.h, "gc"; storage/FORMAT.md, "Garbage collection").
 *
 *   bvault gc STORE [--dry-run] [--threshold PCT] [--json]
 *
 * Runs in the store's writer (bvaultd runs it on its admin thread for a
 * bvault client, beside its sessions), so it opens the store with
 * open_store.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bvault.h"
#include "cli.h"

int cmd_gc(int argc, char **argv);

static void gc_json(FILE *f, const bv_gc_report *g, int dry)
{
	fprintf(f, "{\"dry_run\":%s,\"map_entries\":%" PRIu64
		",\"chunks\":%" PRIu64 ",\"dead_chunks\":%" PRIu64
		",\"dead_bytes\":%" PRIu64 ",\"containers\":%" PRIu64
		",\"containers_rewritten\":%" PRIu64
		",\"containers_retired\":%" PRIu64
		",\"containers_removed\":%" PRIu64
		",\"containers_waiting\":%" PRIu64
		",\"containers_damaged\":%" PRIu64
		",\"damaged_chunks\":%" PRIu64 ",\"chunks_copied\":%" PRIu64
		",\"bytes_read\":%" PRIu64 ",\"bytes_written\":%" PRIu64
		",\"bytes_removed\":%" PRIu64 ",\"bytes_reclaimed\":%" PRIu64
		",\"bloom_bytes\":%" PRIu64 ",\"mark_seconds\":%.3f"
		",\"sweep_seconds\":%.3f,\"compact_seconds\":%.3f}\n",
		dry ? "true" : "false", g->map_entries, g->chunks,
		g->dead_chunks, g->dead_bytes, g->containers,
		g->containers_rewritten, g->containers_retired,
		g->containers_removed, g->containers_waiting,
		g->containers_damaged, g->damaged_chunks, g->chunks_copied,
		g->bytes_read, g->bytes_written, g->bytes_removed,
		g->bytes_reclaimed, g->bloom_bytes, g->mark_seconds,
		g->sweep_seconds, g->compact_seconds);
}

static void gc_text(FILE *f, const bv_gc_report *g, int dry)
{
	char a[32], b[32], c[32], d[32];
	const char *w = dry ? "would be " : "";

	human(a, sizeof a, (double)g->dead_bytes);
	fprintf(f, "%s%" PRIu64 " map entries marked, %" PRIu64 " chunks "
		"swept: %" PRIu64 " dead (%s) %sdeleted\n",
		dry ? "dry run: " : "", g->map_entries, g->chunks,
		g->dead_chunks, a, w);
	fprintf(f, "containers: %" PRIu64 " candidates, %" PRIu64 " %s"
		"rewritten (%" PRIu64 " chunks copied), %" PRIu64 " %s"
		"retired, %" PRIu64 " %sremoved\n", g->containers,
		g->containers_rewritten, w, g->chunks_copied,
		g->containers_retired, w, g->containers_removed, w);
	if (g->containers_waiting)
		fprintf(f, "%" PRIu64 " retired containers kept: a reader may "
			"still read them (a later gc removes them)\n",
			g->containers_waiting);
	if (g->containers_damaged)
		fprintf(f, "%" PRIu64 " containers kept: %" PRIu64 " live "
			"chunks in them failed their checks (bvault verify "
			"lists them)\n", g->containers_damaged,
			g->damaged_chunks);
	human(a, sizeof a, (double)g->bytes_read);
	human(b, sizeof b, (double)g->bytes_written);
	human(c, sizeof c, (double)g->bytes_removed);
	human(d, sizeof d, (double)g->bytes_reclaimed);
	fprintf(f, "container bytes: %s read, %s written, %s removed: "
		"%s %sreclaimed\n", a, b, c, d, w);
}

int cmd_gc(int argc, char **argv)
{
	int dry = 0, json = 0;
	const char *th = NULL;
	struct optdef defs[] = {
		{ "dry-run", OPT_FLAG, NULL, &dry },
		{ "threshold", OPT_VALUE, &th, NULL },
		{ "json", OPT_FLAG, NULL, &json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_store *s = NULL;
	bv_gc_report g;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, names);
	bv_gc_opts o = { .dry_run = dry };
	if (!rc && th) {
		uint64_t v = 0;
		rc = arg_u64("--threshold", th, &v);
		if (!rc && (v < 1 || v > 100))
			rc = usage_error("bad --threshold '%s': a percentage "
					 "from 1 to 100", th);
		o.threshold = (unsigned)v;
	}
	if (rc)
		goto out;
	if ((rc = open_store(pos[0], &s)))
		goto out;
	rc = bv_gc(s, &o, &g);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (json)
		gc_json(CLI_OUT, &g, dry);
	else
		gc_text(CLI_OUT, &g, dry);
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}
