/*
 * cmd_usage.c: the per-group and per-replica part of bvault stats
 * (bv_stats_usage): logical bytes, RPs, and the bytes unique to each.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bvault.h"
#include "cli.h"
#include "cmd_usage.h"

static void usage_json(FILE *f, const bv_usage *u)
{
	fprintf(f, "{\"name\": ");
	json_str(f, u->name);
	fprintf(f, ", \"logical_bytes\": %" PRIu64 ", \"rps\": %" PRIu64
		", \"unique_chunks\": %" PRIu64 ", \"unique_bytes\": %" PRIu64,
		u->logical_bytes, u->rps, u->unique_chunks, u->unique_bytes);
}

int print_usage(bv_store *s, const char *group, int json)
{
	bv_usage *u = NULL;
	size_t n = 0;
	FILE *f = CLI_OUT;
	int rc = bv_stats_usage(s, group, &u, &n);

	if (rc < 0)
		return store_error(s, rc);
	if (json) {
		int open = 0;

		fprintf(f, ",\n  \"groups\": [");
		for (size_t i = 0; i < n; i++) {
			if (u[i].is_group) {
				fprintf(f, "%s\n    ", open ? "]},"
					: "");
				usage_json(f, &u[i]);
				fprintf(f, ", \"replicas\": [");
				open = 1;
			} else {
				fprintf(f, "%s\n      ", i && !u[i - 1].is_group
					? "}," : "");
				usage_json(f, &u[i]);
				if (i + 1 == n || u[i + 1].is_group)
					fprintf(f, "}\n    ");
			}
		}
		fprintf(f, "%s]", open ? "]}\n  " : "");
	} else {
		char l[32], b[32];

		fprintf(f, "\n%-28s %12s %6s %12s %10s\n", "GROUP / REPLICA",
			"LOGICAL", "RPS", "UNIQUE", "CHUNKS");
		for (size_t i = 0; i < n; i++) {
			human(l, sizeof l, (double)u[i].logical_bytes);
			human(b, sizeof b, (double)u[i].unique_bytes);
			fprintf(f, "%s%-*s %12s %6" PRIu64 " %12s %10" PRIu64
				"\n", u[i].is_group ? "" : "  ",
				u[i].is_group ? 28 : 26, u[i].name, l,
				u[i].rps, b, u[i].unique_chunks);
		}
	}
	bv_usage_free(u);
	return 0;
}
