/*
 * cmd_seed.c: bvault seed export | verify | import | keygen (bvault.h,
 * "seed sets"; storage/SEED.md).
 *
 *   bvault seed export STORE (REPLICA@RP | GROUP@RP) --to DIR[,DIR...]
 *                      [--media-size SIZE] [--pack-size SIZE]
 *                      [--medium N] [--key FILE] [--json]
 *   bvault seed verify DIR... [--key FILE] [--json]
 *   bvault seed import STORE DIR... [--key FILE] [--json]
 *   bvault seed keygen --out FILE
 *
 * export and verify only read (export opens the store read-only, beside
 * a running bvaultd); import changes the store and is flagged
 * CMD_CHANGES, so a running bvaultd carries it out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bvault.h"
#include "cli.h"

int cmd_seed_export(int argc, char **argv);
int cmd_seed_verify(int argc, char **argv);
int cmd_seed_import(int argc, char **argv);
int cmd_seed_keygen(int argc, char **argv);

/* Exit status of an export that wrote what it could and needs another
 * medium (README, "Seeding"). */
#define EXIT_NEXT_MEDIUM 3

static char *hex(const uint8_t id[16], char buf[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(buf + 2 * i, 3, "%02x", id[i]);
	return buf;
}

static int seed_error(int rc)
{
	const char *m = bv_store_error(NULL);
	return op_error("%s", m && *m ? m : bv_strerror(rc));
}

static int load_key(const char *path, uint8_t key[BV_SEED_KEY])
{
	int rc = bv_seed_key_load(path, key);
	if (rc)
		return op_error("%s", bv_store_error(NULL));
	return 0;
}

static void result_json(FILE *f, const char *what, const bv_seed_result *r)
{
	char id[33];
	fprintf(f, "{\"command\":\"%s\",\"set\":\"%s\",\"encrypted\":%s,"
		"\"media\":%u,\"next_medium\":%u,\"replicas\":%u,"
		"\"group\":", what, hex(r->set_id, id),
		r->encrypted ? "true" : "false", r->media, r->next_medium,
		r->replicas);
	json_str(f, r->group);
	fprintf(f, ",\"label\":");
	json_str(f, r->label);
	fprintf(f, ",\"time\":%" PRId64 ",\"chunks\":%" PRIu64
		",\"zero_chunks\":%" PRIu64 ",\"entries\":%" PRIu64
		",\"packs\":%" PRIu64 ",\"bytes\":%" PRIu64
		",\"bytes_written\":%" PRIu64 ",\"files_kept\":%" PRIu64
		",\"chunks_new\":%" PRIu64 ",\"rp\":%" PRIu64
		",\"already\":%s}\n", r->time, r->chunks, r->zero_chunks,
		r->entries, r->packs, r->bytes, r->bytes_written,
		r->files_kept, r->chunks_new, r->rp,
		r->already ? "true" : "false");
}

/* Splits "A,B,C" in place. */
static size_t split_dirs(char *s, const char **out, size_t max)
{
	size_t n = 0;
	for (char *p = s; p && n < max;) {
		char *c = strchr(p, ',');
		if (c)
			*c++ = 0;
		if (*p)
			out[n++] = p;
		p = c;
	}
	return n;
}

int cmd_seed_export(int argc, char **argv)
{
	const char *to = NULL, *ms = NULL, *ps = NULL, *mn = NULL,
		   *keyf = NULL;
	int json = 0;
	struct optdef defs[] = {
		{ "to", OPT_VALUE, &to, NULL },
		{ "media-size", OPT_VALUE, &ms, NULL },
		{ "pack-size", OPT_VALUE, &ps, NULL },
		{ "medium", OPT_VALUE, &mn, NULL },
		{ "key", OPT_VALUE, &keyf, NULL },
		{ "json", OPT_FLAG, NULL, &json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "REPLICA@RP" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	const char *dirs[256];
	char name[BV_NAME_MAX + 1], *tocopy = NULL, id[33];
	uint8_t key[BV_SEED_KEY];
	uint64_t rp = 0, v = 0;
	bv_seed_opts o = { 0 };
	bv_seed_result r;
	struct progress pg;
	bv_store *s = NULL;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_replica_rp(pos[1], name, &rp);
	if (!rc && !to)
		rc = usage_error("--to DIR[,DIR...] is required");
	if (!rc && ms)
		rc = arg_size("--media-size", ms, &o.media_size);
	if (!rc && ps)
		rc = arg_size("--pack-size", ps, &o.pack_size);
	if (!rc && mn) {
		rc = arg_u64("--medium", mn, &v);
		if (!rc && (v == 0 || v > 1000000))
			rc = usage_error("bad --medium '%s': a medium number, "
					 "1 or more", mn);
		o.first_medium = (uint32_t)v;
	}
	if (!rc && !(tocopy = strdup(to)))
		rc = op_error("%s", strerror(ENOMEM));
	if (!rc && (o.ndirs = split_dirs(tocopy, dirs, 256)) == 0)
		rc = usage_error("--to: no folder");
	if (!rc && keyf && !(rc = load_key(keyf, key)))
		o.key = key;
	if (rc)
		goto out;
	o.dirs = dirs;
	if ((rc = open_store_reading(pos[0], &s)))
		goto out;
	progress_init(&pg, "seed export");
	o.progress = progress_cb;
	o.ud = &pg;
	rc = bv_seed_export(s, name, rp, &o, &r);
	progress_end(&pg);
	if (rc < 0) {
		rc = seed_error(rc);
		goto out;
	}
	if (json) {
		result_json(CLI_OUT, "export", &r);
	} else {
		char a[32], b[32];
		uint32_t first = o.first_medium ? o.first_medium : 1;
		uint32_t last = r.next_medium ? r.next_medium - 1 : r.media;
		human(a, sizeof a, (double)r.bytes);
		human(b, sizeof b, (double)r.bytes_written);
		fprintf(CLI_OUT, "seed set %s%s: %s@%" PRIu64 " (%s), %u "
			"replica%s, %" PRIu64 " distinct chunks in %" PRIu64
			" packs, %s on %u medi%s\n", hex(r.set_id, id),
			r.encrypted ? " (encrypted)" : "", r.group, r.rp ? r.rp :
			rp, r.label, r.replicas, r.replicas == 1 ? "" : "s",
			r.entries, r.packs, a, r.media,
			r.media == 1 ? "um" : "a");
		fprintf(CLI_OUT, "media %u to %u complete; %s written by this "
			"run, %" PRIu64 " complete packs kept\n", first, last,
			b, r.files_kept);
	}
	if (r.next_medium) {
		fprintf(CLI_ERR, "bvault seed export: medium %u of %u is "
			"needed next: put an empty medium in place and run "
			"again with --medium %u --to DIR\n", r.next_medium,
			r.media, r.next_medium);
		rc = EXIT_NEXT_MEDIUM;
		goto out;
	}
	rc = 0;
out:
	close_store(s);
	free(tocopy);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

static int dirs_cmd(int argc, char **argv, int import)
{
	const char *keyf = NULL;
	int json = 0;
	struct optdef defs[] = {
		{ "key", OPT_VALUE, &keyf, NULL },
		{ "json", OPT_FLAG, NULL, &json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const vnames[] = { "DIR" };
	static const char *const inames[] = { "STORE", "DIR" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	uint8_t key[BV_SEED_KEY];
	bv_seed_opts o = { 0 };
	bv_seed_result r;
	struct progress pg;
	bv_store *s = NULL;
	char id[33];
	int npos, rc, first = import ? 1 : 0;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, first + 1, 100000,
			      import ? inames : vnames);
	if (!rc && keyf && !(rc = load_key(keyf, key)))
		o.key = key;
	if (rc)
		goto out;
	if (import && (rc = open_store(pos[0], &s)))
		goto out;
	progress_init(&pg, import ? "seed import" : "seed verify");
	o.progress = progress_cb;
	o.ud = &pg;
	if (import)
		rc = bv_seed_import(s, (const char *const *)pos + 1,
				    (size_t)npos - 1, &o, &r);
	else
		rc = bv_seed_verify((const char *const *)pos, (size_t)npos, &o,
				    &r);
	progress_end(&pg);
	if (rc < 0) {
		rc = seed_error(rc);
		goto out;
	}
	if (json) {
		result_json(CLI_OUT, import ? "import" : "verify", &r);
	} else if (!import) {
		char a[32];
		human(a, sizeof a, (double)r.bytes);
		fprintf(CLI_OUT, "seed set %s%s: intact: %u medi%s, %s, %u "
			"replica%s of %s@%" PRIu64 " (%s), %" PRIu64 " chunks "
			"(%" PRIu64 " distinct, %" PRIu64 " zero)\n",
			hex(r.set_id, id), r.encrypted ? " (encrypted)" : "",
			r.media, r.media == 1 ? "um" : "a", a, r.replicas,
			r.replicas == 1 ? "" : "s", r.group, r.rp, r.label,
			r.chunks, r.entries, r.zero_chunks);
	} else if (r.already) {
		fprintf(CLI_OUT, "seed set %s: already imported (group %s, "
			"from RP %" PRIu64 " on); nothing changed\n",
			hex(r.set_id, id), r.group, r.rp);
	} else {
		fprintf(CLI_OUT, "seed set %s imported: %s RP %" PRIu64 " (%s), "
			"%u replica%s, %" PRIu64 " chunks new to the store of %"
			PRIu64 " distinct in the set\n", hex(r.set_id, id),
			r.group, r.rp, r.label, r.replicas,
			r.replicas == 1 ? "" : "s", r.chunks_new, r.entries);
	}
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

int cmd_seed_verify(int argc, char **argv)
{
	return dirs_cmd(argc, argv, 0);
}

int cmd_seed_import(int argc, char **argv)
{
	return dirs_cmd(argc, argv, 1);
}

int cmd_seed_keygen(int argc, char **argv)
{
	const char *outf = NULL;
	struct optdef defs[] = {
		{ "out", OPT_VALUE, &outf, NULL },
		{ NULL, 0, NULL, NULL },
	};
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc && npos)
		rc = usage_error("unexpected argument '%s'", pos[0]);
	if (!rc && !outf)
		rc = usage_error("--out FILE is required");
	if (rc)
		goto out;
	if ((rc = bv_seed_keygen(outf)))
		rc = op_error("%s", bv_store_error(NULL));
	else
		fprintf(CLI_OUT, "seed key written to %s (mode 0600): keep a "
			"copy apart from the media\n", outf);
out:
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}
