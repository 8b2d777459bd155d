/*
 * cmd_index.c: bvault index backup | restore (bvault.h, "the index:
 * backup and restore"). backup needs the store's writer (RocksDB makes
 * its checkpoint from the writing process): through bvaultd's admin
 * socket while it holds the store. restore replaces the index, so it
 * needs the store closed: never through a running bvaultd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bvault.h"
#include "cli.h"
#include "cmd_index.h"

static void print_info(const char *what, const char *dir,
		       const bv_index_backup_info *in)
{
	char t[64];

	fmt_time(t, sizeof t, in->time);
	fprintf(CLI_OUT, "%s %s: taken %s, %" PRIu64 " replica%s, %" PRIu64
		" recovery point%s, index write %" PRIu64 "\n", what, dir, t,
		in->replicas, in->replicas == 1 ? "" : "s", in->rps,
		in->rps == 1 ? "" : "s", in->sequence);
}

/* The two positionals STORE DIR, and no option. */
static int two_args(int argc, char **argv, char ***pos_out)
{
	static const char *const names[] = { "STORE", "DIR" };
	struct optdef defs[] = { { NULL, 0, NULL, NULL } };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (rc) {
		free(pos);
		return rc;
	}
	*pos_out = pos;
	return 0;
}

int cmd_index_backup(int argc, char **argv)
{
	bv_index_backup_info in;
	bv_store *s = NULL;
	char **pos = NULL;
	int rc;

	if ((rc = two_args(argc, argv, &pos)))
		return rc == HELP_SHOWN ? 0 : rc;
	if ((rc = open_store(pos[0], &s)))
		goto out;
	rc = bv_index_backup(s, pos[1], &in);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	print_info("backup", pos[1], &in);
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc;
}

int cmd_index_restore(int argc, char **argv)
{
	bv_index_backup_info in;
	char **pos = NULL, old[4096], err[2048];
	int rc;

	if ((rc = two_args(argc, argv, &pos)))
		return rc == HELP_SHOWN ? 0 : rc;
	rc = bv_index_restore(pos[0], pos[1], &in, old, sizeof old, err,
			      sizeof err);
	if (rc < 0) {
		rc = op_error("%s", err);
		goto out;
	}
	print_info("restored", pos[1], &in);
	if (*old)
		fprintf(CLI_OUT, "the index it replaced is kept in %s (remove "
			"it once the store reads as it should)\n", old);
	fprintf(CLI_OUT, "commits made after the backup are not in the "
		"index; their container bytes are kept (bvault stats: "
		"unknown)\n");
	rc = 0;
out:
	free(pos);
	return rc;
}

int cmd_index_rebuild(int argc, char **argv)
{
	static const char *const names[] = { "STORE" };
	struct optdef defs[] = { { NULL, 0, NULL, NULL } };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	char old[4096], err[2048];
	bv_index_backup_info in;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, names);
	if (rc)
		goto out;
	rc = bv_index_rebuild(pos[0], &in, old, sizeof old, err, sizeof err);
	if (rc < 0) {
		rc = op_error("%s", err);
		goto out;
	}
	fprintf(CLI_OUT, "rebuilt the index of %s from %" PRIu64 " journal "
		"entries: %" PRIu64 " replica%s, %" PRIu64 " recovery "
		"point%s\n", pos[0], in.sequence, in.replicas,
		in.replicas == 1 ? "" : "s", in.rps, in.rps == 1 ? "" : "s");
	if (*old)
		fprintf(CLI_OUT, "the index it replaced is kept in %s (remove "
			"it once the store reads as it should)\n", old);
	rc = 0;
out:
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}
