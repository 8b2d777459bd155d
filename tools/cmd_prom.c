/*
 * cmd_prom.c: bvault stats --prometheus: the store's figures, and the
 * live counters of the bvaultd serving it when one runs, in Prometheus's
 * text exposition format (version 0.0.4), for node_exporter's textfile
 * collector (README.md, "Metrics").
 *
 * Every metric is one block: "# HELP", "# TYPE", then its samples, each
 * with a store label (several stores on one host stay apart) and, per
 * group or replica, a group (and replica) label. Label values are
 * escaped as the format says: backslash, double quote and newline.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "bvault.h"
#include "cli.h"
#include "cmd_prom.h"

/* A label value, escaped. */
static void prom_label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			fputs("\\\\", f);
		else if (*v == '"')
			fputs("\\\"", f);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void prom_head(FILE *f, const char *name, const char *type,
		      const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_sample(FILE *f, const char *name, const char *store,
			const char *extra_k, const char *extra_v,
			uint64_t v)
{
	fprintf(f, "%s{store=\"", name);
	prom_label(f, store);
	fputc('"', f);
	if (extra_k) {
		fprintf(f, ",%s=\"", extra_k);
		prom_label(f, extra_v);
		fputc('"', f);
	}
	fprintf(f, "} %" PRIu64 "\n", v);
}

static void prom_gauge(FILE *f, const char *store, const char *name,
		       const char *help, uint64_t v)
{
	prom_head(f, name, "gauge", help);
	prom_sample(f, name, store, NULL, NULL, v);
}

/* The per-group or per-replica metrics: one block per figure. */
enum { U_LOGICAL, U_RPS, U_UCHUNKS, U_UBYTES };
static uint64_t usage_value(const bv_usage *u, int which)
{
	return which == U_LOGICAL ? u->logical_bytes : which == U_RPS ? u->rps
	       : which == U_UCHUNKS ? u->unique_chunks : u->unique_bytes;
}

static void prom_usage(FILE *f, const char *store, const bv_usage *u,
		       size_t n)
{
	static const struct {
		const char *suffix, *help;
	} figs[] = {
		[U_LOGICAL] = { "logical_bytes", "size at the head, bytes" },
		[U_RPS] = { "rps", "recovery points of the group" },
		[U_UCHUNKS] = { "unique_chunks", "chunks no one else names" },
		[U_UBYTES] = { "unique_bytes", "container bytes of the unique "
			       "chunks (what removing it would free)" },
	};
	char name[64];

	for (int kind = 1; kind >= 0; kind--) {
		for (int w = 0; w < 4; w++) {
			int any = 0;
			snprintf(name, sizeof name, "bvault_%s_%s",
				 kind ? "group" : "replica", figs[w].suffix);
			for (size_t i = 0; i < n; i++) {
				if (u[i].is_group != kind)
					continue;
				if (!any) {
					char help[160];
					snprintf(help, sizeof help, "Per %s: "
						 "%s.", kind ? "group" :
						 "replica", figs[w].help);
					prom_head(f, name, "gauge", help);
					any = 1;
				}
				fprintf(f, "%s{store=\"", name);
				prom_label(f, store);
				fprintf(f, "\",group=\"");
				prom_label(f, kind ? u[i].name : u[i].group);
				if (!kind) {
					fprintf(f, "\",replica=\"");
					prom_label(f, u[i].name);
				}
				fprintf(f, "\"} %" PRIu64 "\n",
					usage_value(&u[i], w));
			}
		}
	}
}

/* The daemon's counters, as its COUNTERS answer names them (admin.h):
 * each known name becomes a metric; unknown ones (a newer bvaultd) are
 * left out. */
static const struct {
	const char *key, *name, *type, *help;
} live[] = {
	{ "start_time_seconds", "bvaultd_start_time_seconds", "gauge",
	  "When the running bvaultd started, seconds since the epoch." },
	{ "connections_total", "bvaultd_connections_total", "counter",
	  "Connections accepted since bvaultd started." },
	{ "sessions_open", "bvaultd_sessions_open", "gauge",
	  "Ingest sessions open now." },
	{ "sessions_waiting", "bvaultd_sessions_waiting", "gauge",
	  "BEGINs waiting for a free session (--max-sessions)." },
	{ "sessions_total", "bvaultd_sessions_total", "counter",
	  "Ingest sessions opened since bvaultd started." },
	{ "commits_total", "bvaultd_commits_total", "counter",
	  "Sessions committed since bvaultd started." },
	{ "data_bytes_total", "bvaultd_data_bytes_total", "counter",
	  "Bytes of DATA records received since bvaultd started." },
};

static int live_value(const char *text, const char *key, uint64_t *v)
{
	size_t kl = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'),
	     p = p ? p + 1 : NULL) {
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
			char *end;
			*v = strtoull(p + kl + 1, &end, 10);
			return *end == '\n' || *end == 0;
		}
	}
	return 0;
}

static void prom_live(FILE *f, const char *store, const char *text)
{
	static const char pre[] = "refusals_total_";
	uint64_t v;
	int any = 0;

	for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
		if (!live_value(text, live[i].key, &v))
			continue;
		prom_head(f, live[i].name, live[i].type, live[i].help);
		prom_sample(f, live[i].name, store, NULL, NULL, v);
	}
	for (const char *p = text; p && *p; p = strchr(p, '\n'),
	     p = p ? p + 1 : NULL) {
		char reason[32], *end;
		size_t rl;

		if (strncmp(p, pre, sizeof pre - 1))
			continue;
		rl = strspn(p + sizeof pre - 1,
			    "abcdefghijklmnopqrstuvwxyz0123456789_");
		if (!rl || rl >= sizeof reason || p[sizeof pre - 1 + rl] != ' ')
			continue;
		memcpy(reason, p + sizeof pre - 1, rl);
		reason[rl] = 0;
		v = strtoull(p + sizeof pre + rl, &end, 10);
		if (*end != '\n' && *end)
			continue;
		if (!any)
			prom_head(f, "bvaultd_refusals_total", "counter",
				  "Requests bvaultd answered with an ERROR "
				  "since it started, by reason.");
		any = 1;
		prom_sample(f, "bvaultd_refusals_total", store, "reason",
			    reason, v);
	}
}

int print_prometheus(bv_store *s, const char *path, const bv_stats *st,
		     const char *group, int quick)
{
	FILE *f = CLI_OUT;
	char abs[PATH_MAX];
	/* The label is the store's absolute path: the same series whatever
	 * directory the collector's job runs in. */
	const char *store = realpath(path, abs) ? abs : path;
	bv_usage *u = NULL;
	size_t n = 0;
	char text[8192];
	int rc;

	if (!quick) {
		rc = bv_stats_usage(s, group, &u, &n);
		if (rc < 0)
			return store_error(s, rc);
	}
	prom_gauge(f, store, "bvault_store_replicas", "Replicas in the store.",
		   st->replicas);
	prom_gauge(f, store, "bvault_store_groups", "Groups in the store.",
		   st->groups);
	prom_gauge(f, store, "bvault_store_rps",
		   "Recovery points in the store.", st->rps);
	prom_gauge(f, store, "bvault_store_logical_bytes",
		   "Sum of the replicas' sizes at their heads, bytes.",
		   st->logical_bytes);
	prom_gauge(f, store, "bvault_store_ingested_bytes",
		   "Bytes ever written into the store.", st->ingested_bytes);
	prom_gauge(f, store, "bvault_store_chunks",
		   "Unique chunks in the index.", st->chunks);
	prom_gauge(f, store, "bvault_store_raw_bytes",
		   "Bytes of the unique chunks before compression.",
		   st->raw_bytes);
	prom_gauge(f, store, "bvault_store_stored_bytes",
		   "Bytes of the unique chunks as stored (compressed).",
		   st->stored_bytes);
	prom_gauge(f, store, "bvault_store_containers", "Container files.",
		   st->containers);
	prom_gauge(f, store, "bvault_store_container_bytes",
		   "Bytes of the container files.", st->container_bytes);
	prom_gauge(f, store, "bvault_store_index_bytes",
		   "Bytes of the chunk index.", st->index_bytes);
	prom_gauge(f, store, "bvault_store_map_entries",
		   "Map entries of every version.", st->map_entries);
	prom_gauge(f, store, "bvault_store_unknown_bytes",
		   "Bytes whose content is unknown (lost chunks).",
		   st->unknown_bytes);
	prom_gauge(f, store, "bvault_store_bad_chunks",
		   "Chunks marked bad by verify.", st->bad_chunks);
	prom_gauge(f, store, "bvault_store_index_lost",
		   "1 when the index lost commits (bvault verify STORE).",
		   (uint64_t)(st->index_lost != 0));
	if (st->scanned) {
		prom_gauge(f, store, "bvault_store_protected_bytes",
			   "Non-zero bytes of every RP.", st->protected_bytes);
		prom_gauge(f, store, "bvault_store_live_chunks",
			   "Chunks a committed version names.",
			   st->live_chunks);
		prom_gauge(f, store, "bvault_store_live_bytes",
			   "Container bytes of the live chunks.",
			   st->live_bytes);
		prom_gauge(f, store, "bvault_store_unreferenced_bytes",
			   "Container bytes of chunks no version names.",
			   st->unreferenced_bytes);
	}
	prom_usage(f, store, u, n);
	bv_usage_free(u);

	rc = admin_counters(store, text, sizeof text);
	if (rc >= 0) {
		prom_gauge(f, store, "bvaultd_up",
			   "1 when a bvaultd serves the store.", 1);
		prom_live(f, store, text);
	} else {
		/* A comment: the scrape stays valid, and an absent series
		 * (not a zero) says nothing is known. */
		if (rc == -1)
			fprintf(f, "# no bvaultd runs on this store: its live "
				"counters are left out\n");
		else
			fprintf(f, "# bvaultd did not give its counters (%s): "
				"they are left out\n", text);
		prom_gauge(f, store, "bvaultd_up",
			   "1 when a bvaultd serves the store.", 0);
	}
	return 0;
}
