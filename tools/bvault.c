/*
 * bvault.c: the bvault command-line tool. A thin layer over bvault.h and
 * nothing else of the engine: every command parses its arguments, opens
 * the store, makes one or a few library calls and reports.
 *
 * Conventions kept by every command:
 *   - errors go to stderr as "bvault <cmd>: <message>", where the message
 *     is the store's own (it names the object) or bv_strerror();
 *   - exit status 0 on success, 1 for an operational error, 2 for a usage
 *     error (unknown option, missing or bad value, bad REPLICA@RP);
 *   - --help / -h prints the command's usage to stdout and exits 0;
 *   - binary streams are never written to or read from a terminal;
 *   - progress bars are drawn on stderr only when it is a terminal.
 *
 * The bench command also links xxHash and LZ4 directly, for the reference
 * figures the engine's rates are compared with.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <lz4.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <xxhash.h>

#include "admin.h"
#include "bvault.h"
#include "cli.h"
#include "cmd_index.h"
#include "cmd_prom.h"
#include "cmd_usage.h"
#include "imgfmt.h"
#include "netclient.h"
#include "cmd_verify.h"
#include "cmd_view.h"
#include "cmd_life.h"

/* tools/cmd_files.c */
int cmd_files_ls(int argc, char **argv);
int cmd_files_get(int argc, char **argv);

/* ---- init, replica, group -------------------------------------------- */

static int cmd_init(int argc, char **argv)
{
	const char *cs = NULL, *csize = NULL, *dedup = NULL;
	struct optdef defs[] = {
		{ "chunk-size", OPT_VALUE, &cs, NULL },
		{ "container-size", OPT_VALUE, &csize, NULL },
		{ "dedup", OPT_VALUE, &dedup, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE" };
	bv_init_opts o = { .chunk_size = 0 };
	char err[512] = "";
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, names);
	if (!rc && cs)
		rc = arg_chunk_size(cs, &o.chunk_size);
	if (!rc && csize) {
		rc = arg_size("--container-size", csize, &o.container_size);
		if (!rc && (o.container_size < BV_CONTAINER_SIZE_MIN ||
			    o.container_size > BV_CONTAINER_SIZE_MAX))
			rc = usage_error("bad --container-size '%s': from 1M "
					 "to 16G", csize);
	}
	if (!rc && dedup) {
		if (!strcmp(dedup, "store"))
			o.dedup_scope = BV_DEDUP_STORE;
		else if (!strcmp(dedup, "group"))
			o.dedup_scope = BV_DEDUP_GROUP;
		else
			rc = usage_error("--dedup must be store or group, "
					 "not '%s'", dedup);
	}
	if (rc)
		goto out;
	rc = bv_store_init(pos[0], &o, err, sizeof(err));
	if (rc < 0) {
		rc = op_error("%s", *err ? err : bv_strerror(rc));
		goto out;
	}
	fprintf(CLI_OUT, "initialized store %s (chunk size %u)\n", pos[0],
		o.chunk_size ? o.chunk_size : BV_CHUNK_DEFAULT);
	rc = 0;
out:
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

static int cmd_replica_create(int argc, char **argv)
{
	const char *size_s = NULL, *cs = NULL;
	struct optdef defs[] = {
		{ "size", OPT_VALUE, &size_s, NULL },
		{ "chunk-size", OPT_VALUE, &cs, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "NAME" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	uint32_t chunk = 0;
	uint64_t size = 0;
	bv_store *s = NULL;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_name("replica name", pos[1]);
	if (!rc && !size_s)
		rc = usage_error("missing --size SIZE");
	if (!rc)
		rc = arg_size("--size", size_s, &size);
	if (!rc && size % BV_SECTOR)
		rc = usage_error("bad --size '%s': not a multiple of 512",
				 size_s);
	if (!rc && cs)
		rc = arg_chunk_size(cs, &chunk);
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	rc = bv_replica_create(s, pos[1], size, chunk);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* STORE ONE MANY...: checks ONE and each of MANY as names (ONE_WHAT,
 * MANY_WHAT), then FN(store, ONE, MANY, n): group create and group add
 * (a group and its replicas), agent grant and revoke (an agent and its
 * groups). */
typedef int (*set_fn)(bv_store *, const char *, const char *const *, size_t);

static int name_and_names(int argc, char **argv, const char *const names[3],
			  const char *one_what, const char *many_what,
			  set_fn fn)
{
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_store *s = NULL;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, NULL, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 3, -1, names);
	if (!rc)
		rc = arg_name(one_what, pos[1]);
	for (int i = 2; !rc && i < npos; i++)
		rc = arg_name(many_what, pos[i]);
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	rc = fn(s, pos[1], (const char *const *)pos + 2, (size_t)npos - 2);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

static int group_members(int argc, char **argv, set_fn fn)
{
	static const char *const names[] = { "STORE", "GROUP", "REPLICA" };
	return name_and_names(argc, argv, names, "group name", "replica name",
			      fn);
}

static int cmd_group_create(int argc, char **argv)
{
	return group_members(argc, argv, bv_group_create);
}

/* New members take part from the group's next RP on. */
static int cmd_group_add(int argc, char **argv)
{
	return group_members(argc, argv, bv_group_add);
}

/* ---- agent identities -------------------------------------------------- */

/* Takes every "--group G" / "--group=G" out of ARGV (in place) into
 * GROUPS (room for ARGC); returns how many, or -1 after a usage error. */
static int take_groups(int *argc, char **argv, const char **groups)
{
	int n = 0, k = 0;

	for (int i = 0; i < *argc; i++) {
		if (!strcmp(argv[i], "--")) {
			while (i < *argc)
				argv[k++] = argv[i++];
			break;
		}
		if (!strcmp(argv[i], "--group")) {
			if (i + 1 >= *argc) {
				usage_error("option --group needs a value");
				return -1;
			}
			groups[n++] = argv[++i];
		} else if (!strncmp(argv[i], "--group=", 8)) {
			groups[n++] = argv[i] + 8;
		} else {
			argv[k++] = argv[i];
		}
	}
	*argc = k;
	return n;
}

/* Creates FILE for an agent's secret: a new file (O_EXCL, never one that
 * exists, nor through a symbolic link), 0600. */
static int secret_file_create(const char *file, int *fd)
{
	*fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		   0600);
	if (*fd >= 0)
		return 0;
	if (errno == EEXIST)
		return op_error("--secret-file %s: exists; refusing to "
				"overwrite it (remove it, or name a new file)",
				file);
	return op_error("--secret-file %s: %s", file, strerror(errno));
}

/* Writes the secret as bvault-agent's --secret-file reads it: 64 hex
 * digits and a newline, synced. */
static int secret_file_write(const char *file, int fd, const char *line)
{
	size_t len = strlen(line);
	int rc = 0;

	if (write(fd, line, len) != (ssize_t)len || fsync(fd) < 0)
		rc = op_error("--secret-file %s: %s", file,
			      strerror(errno ? errno : EIO));
	if (close(fd) < 0 && !rc)
		rc = op_error("--secret-file %s: %s", file, strerror(errno));
	return rc;
}

static int cmd_agent_add(int argc, char **argv)
{
	const char *file = NULL, *pubfile = NULL;
	struct optdef defs[] = {
		{ "secret-file", OPT_VALUE, &file, NULL },
		{ "public-key", OPT_VALUE, &pubfile, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "NAME" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	const char **groups = calloc((size_t)argc + 1, sizeof(*groups));
	uint8_t secret[BV_AGENT_SECRET];
	char line[2 * BV_AGENT_SECRET + 2];
	bv_store *s = NULL;
	int npos, rc, ng, fd = -1, made = 0, added = 0;

	if (!pos || !groups) {
		rc = op_error("%s", strerror(ENOMEM));
		goto out;
	}
	ng = take_groups(&argc, argv, groups);
	rc = ng < 0 ? EXIT_USAGE : parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_name("agent name", pos[1]);
	if (!rc && ng == 0)
		rc = usage_error("agent %s: give at least one --group", pos[1]);
	if (!rc && file && !*file)
		rc = usage_error("--secret-file: empty file name");
	if (!rc && file && pubfile)
		rc = usage_error("give --public-key (an agent with a key) or "
				 "--secret-file (one with a secret), not "
				 "both");
	for (int i = 0; !rc && i < ng; i++)
		rc = arg_name("group name", groups[i]);
	/* An agent with a key: the store keeps its public key only, and
	 * there is no secret to show. */
	if (!rc && pubfile) {
		uint8_t pk[NC_PUBLIC_KEY];
		char err[700];
		_Static_assert(NC_PUBLIC_KEY == BV_AGENT_PUBLIC_KEY, "sizes");
		if (nc_read_public_key(pubfile, pk, err, sizeof err)) {
			rc = op_error("--public-key %s", err);
			goto out;
		}
		if (crypto_core_ed25519_is_valid_point(pk) != 1) {
			rc = op_error("--public-key %s: not an Ed25519 public "
				      "key", pubfile);
			goto out;
		}
		if ((rc = open_store(pos[0], &s)))
			goto out;
		rc = bv_agent_add_key(s, pos[1], groups, (size_t)ng, pk);
		if (rc < 0) {
			rc = store_error(s, rc);
			goto out;
		}
		fprintf(CLI_OUT, "agent %s: added with the public key of %s\n",
			pos[1], pubfile);
		goto out;
	}
	if (!rc)
		rc = open_store(pos[0], &s);
	/* The file first: a file that cannot be made leaves the store as
	 * it was. */
	if (!rc && file && !(rc = secret_file_create(file, &fd)))
		made = 1;
	if (rc)
		goto out;
	rc = bv_agent_add(s, pos[1], groups, (size_t)ng, secret);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	added = 1;
	for (size_t i = 0; i < sizeof secret; i++)
		snprintf(line + 2 * i, 3, "%02x", secret[i]);
	strcpy(line + 2 * BV_AGENT_SECRET, "\n");
	if (file) {
		rc = secret_file_write(file, fd, line);
		fd = -1;
		if (!rc)
			fprintf(CLI_OUT, "agent %s: secret written to %s\n",
				pos[1],
				file);
		goto out;
	}
	fputs(line, CLI_OUT);
	if (isatty(fileno(CLI_OUT)))
		fprintf(CLI_ERR, "bvault agent add: that is agent %s's secret; "
			"it is not shown again\n", pos[1]);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	/* A secret that did not reach its file is of no use: the agent
	 * goes again, and so does the file (only one made here). */
	if (rc && made) {
		if (added)
			bv_agent_remove(s, pos[1]);
		unlink(file);
	}
	memset(secret, 0, sizeof secret);
	memset(line, 0, sizeof line);
	close_store(s);
	free(pos);
	free(groups);
	return rc == HELP_SHOWN ? 0 : rc;
}

struct agent_ls {
	int json, n;
};

static int agent_ls_one(void *ud, const bv_agent_info *a)
{
	struct agent_ls *l = ud;
	char when[32];
	time_t t = (time_t)a->created;
	struct tm tm;

	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S",
		 gmtime_r(&t, &tm));
	if (l->json) {
		fprintf(CLI_OUT, "%s\n  {\"name\": ", l->n ? "," : "");
		json_str(CLI_OUT, a->name);
		fprintf(CLI_OUT, ", \"kind\": \"%s\", \"created\": %" PRId64,
			a->kind == BV_AGENT_KIND_KEY ? "key" : "secret",
			a->created);
		if (a->kind == BV_AGENT_KIND_KEY) {
			fprintf(CLI_OUT, ", \"public_key\": \"");
			for (size_t i = 0; i < sizeof a->public_key; i++)
				fprintf(CLI_OUT, "%02x", a->public_key[i]);
			fprintf(CLI_OUT, "\"");
		}
		fprintf(CLI_OUT, ", \"groups\": [");
		for (uint32_t i = 0; i < a->ngroups; i++) {
			fprintf(CLI_OUT, "%s", i ? ", " : "");
			json_str(CLI_OUT, a->groups[i]);
		}
		fprintf(CLI_OUT, "]}");
	} else {
		fprintf(CLI_OUT, "%-24s %-6s %s UTC ", a->name,
			a->kind == BV_AGENT_KIND_KEY ? "key" : "secret", when);
		for (uint32_t i = 0; i < a->ngroups; i++)
			fprintf(CLI_OUT, "%s%s", i ? "," : "", a->groups[i]);
		fprintf(CLI_OUT, "\n");
	}
	l->n++;
	return 0;
}

static int cmd_agent_ls(int argc, char **argv)
{
	struct agent_ls l = { 0, 0 };
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
		fprintf(CLI_OUT, "%-24s %-6s %-23s %s\n", "AGENT", "KIND",
			"CREATED", "GROUPS");
	rc = bv_agent_list(s, agent_ls_one, &l);
	if (l.json)
		fprintf(CLI_OUT, "%s]\n", l.n ? "\n" : "");
	if (rc < 0)
		rc = store_error(s, rc);
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

static int cmd_agent_rm(int argc, char **argv)
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
		rc = arg_name("agent name", pos[1]);
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	rc = bv_agent_remove(s, pos[1]);
	if (rc < 0)
		rc = store_error(s, rc);
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* bvault agent grant / revoke STORE NAME GROUP...: FN changes the
 * groups of agent NAME, keeping its secret or key. */
static int agent_groups(int argc, char **argv, set_fn fn)
{
	static const char *const names[] = { "STORE", "NAME", "GROUP" };
	return name_and_names(argc, argv, names, "agent name", "group name",
			      fn);
}

static int cmd_agent_grant(int argc, char **argv)
{
	return agent_groups(argc, argv, bv_agent_grant);
}

static int cmd_agent_revoke(int argc, char **argv)
{
	return agent_groups(argc, argv, bv_agent_revoke);
}

/* ---- mkstream ------------------------------------------------------- */

struct extent {
	uint64_t off, len;
};

/* Everything mkstream needs; also used by bench to feed an ingest. */
struct mkjob {
	int img_fd;
	const char *img_name;
	uint64_t img_size;
	int is_reg;
	int out_fd;
	bv_stream_header h;
	struct extent *ext; /* NULL: a full stream */
	size_t next;
	struct progress *pr;
	char err[512];
	/* state while running */
	bv_stream_writer *w;
	unsigned char *buf;
	uint64_t zoff, zlen; /* pending zero extent */
	uint64_t done, total;
};

static int mk_writer_fail(struct mkjob *j, int rc)
{
	snprintf(j->err, sizeof(j->err), "%s",
		 j->w && *bv_stream_writer_error(j->w)
			 ? bv_stream_writer_error(j->w) : bv_strerror(rc));
	return rc;
}

static int mk_flush_zero(struct mkjob *j)
{
	int rc = 0;

	if (j->zlen)
		rc = bv_stream_write_zero(j->w, j->zoff, j->zlen);
	j->zlen = 0;
	return rc < 0 ? mk_writer_fail(j, rc) : 0;
}

/* Zero extents are merged while they are adjacent. */
static int mk_zero(struct mkjob *j, uint64_t off, uint64_t len)
{
	int rc;

	if (j->zlen && j->zoff + j->zlen == off) {
		j->zlen += len;
		return 0;
	}
	rc = mk_flush_zero(j);
	j->zoff = off;
	j->zlen = len;
	return rc;
}

static int mk_data(struct mkjob *j, uint64_t off, const void *buf,
		   size_t len)
{
	int rc = mk_flush_zero(j);

	if (rc < 0)
		return rc;
	rc = bv_stream_write_data(j->w, off, buf, len);
	return rc < 0 ? mk_writer_fail(j, rc) : 0;
}

static int all_zero(const unsigned char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Reads [OFF, OFF+LEN) of the image and sends it in pieces cut at
 * absolute 64 KiB boundaries: all-zero pieces as zero extents, runs of
 * data pieces as one data extent per buffer. */
static int mk_scan(struct mkjob *j, uint64_t off, uint64_t len)
{
	const uint64_t piece = BV_CHUNK_DEFAULT;

	while (len) {
		size_t n = len < IO_BUF ? (size_t)len : IO_BUF;
		size_t got = 0, i = 0, run = 0;
		int rc, in_data = 0;

		while (got < n) {
			ssize_t r = pread(j->img_fd, j->buf + got, n - got,
					  (off_t)(off + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				snprintf(j->err, sizeof(j->err), "%s: %s",
					 j->img_name, strerror(errno));
				return -errno;
			}
			if (r == 0) {
				snprintf(j->err, sizeof(j->err),
					 "%s: ends early at byte %" PRIu64
					 " (did it shrink?)", j->img_name,
					 off + got);
				return BV_ETRUNCATED;
			}
			got += (size_t)r;
		}
		while (i < n) {
			uint64_t a = off + i;
			size_t m = (size_t)(piece - a % piece);
			int z;

			if (m > n - i)
				m = n - i;
			z = all_zero(j->buf + i, m);
			if (!z && !in_data) {
				in_data = 1;
				run = i;
			} else if (z && in_data) {
				in_data = 0;
				rc = mk_data(j, off + run, j->buf + run,
					     i - run);
				if (rc < 0)
					return rc;
			}
			if (z) {
				rc = mk_zero(j, a, m);
				if (rc < 0)
					return rc;
			}
			i += m;
		}
		if (in_data) {
			rc = mk_data(j, off + run, j->buf + run, n - run);
			if (rc < 0)
				return rc;
		}
		off += n;
		len -= n;
		j->done += n;
		progress_cb(j->pr, j->done, j->total);
	}
	return 0;
}

/* A full stream: holes found with SEEK_DATA / SEEK_HOLE are sent as zero
 * extents without reading them. */
static int mk_full(struct mkjob *j)
{
	uint64_t pos = 0, size = j->img_size;
	int holes = j->is_reg;

	while (pos < size) {
		uint64_t d = pos, h = size;
		int rc;

		if (holes) {
			off_t r = lseek(j->img_fd, (off_t)pos, SEEK_DATA);

			if (r < 0 && errno == ENXIO) {
				d = size;
			} else if (r < 0) {
				holes = 0; /* not supported here: read all */
			} else {
				d = (uint64_t)r > size ? size : (uint64_t)r;
				d &= ~(uint64_t)(BV_SECTOR - 1);
				if (d < pos)
					d = pos;
			}
		}
		if (d > pos) {
			rc = mk_zero(j, pos, d - pos);
			if (rc < 0)
				return rc;
			j->done += d - pos;
			progress_cb(j->pr, j->done, j->total);
			pos = d;
			continue;
		}
		if (holes) {
			off_t r = lseek(j->img_fd, (off_t)pos, SEEK_HOLE);

			h = r < 0 ? size : (uint64_t)r;
			h = (h + BV_SECTOR - 1) & ~(uint64_t)(BV_SECTOR - 1);
			if (h > size || h <= pos)
				h = size;
		}
		rc = mk_scan(j, pos, h - pos);
		if (rc < 0)
			return rc;
		pos = h;
	}
	return 0;
}

/* Writes the whole stream. On failure j->err says why. */
static int mk_run(struct mkjob *j)
{
	int rc;

	j->buf = malloc(IO_BUF);
	if (!j->buf) {
		snprintf(j->err, sizeof(j->err), "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	j->done = 0;
	j->zlen = 0;
	if (j->ext) {
		j->total = 0;
		for (size_t i = 0; i < j->next; i++)
			j->total += j->ext[i].len;
	} else {
		j->total = j->img_size;
	}
	rc = bv_stream_writer_open(j->out_fd, &j->h, &j->w);
	if (rc < 0) {
		mk_writer_fail(j, rc);
		bv_stream_writer_abort(j->w);
		j->w = NULL;
		goto out;
	}
	if (j->ext) {
		for (size_t i = 0; rc == 0 && i < j->next; i++)
			rc = mk_scan(j, j->ext[i].off, j->ext[i].len);
	} else {
		rc = mk_full(j);
	}
	if (rc == 0)
		rc = mk_flush_zero(j);
	if (rc < 0) {
		bv_stream_writer_abort(j->w);
		j->w = NULL;
		goto out;
	}
	rc = bv_stream_writer_finish(j->w);
	j->w = NULL;
	if (rc < 0)
		snprintf(j->err, sizeof(j->err), "writing the trailer: %s",
			 bv_strerror(rc));
out:
	free(j->buf);
	j->buf = NULL;
	return rc;
}

/* Opens an image (regular file or block device) and finds its size,
 * which must be a multiple of 512. Prints the error itself. */
static int open_image(const char *path, int *fd, uint64_t *size, int *is_reg)
{
	struct stat st;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return op_error("%s: %s", path, strerror(errno));
	if (fstat(*fd, &st) < 0)
		goto sys;
	*is_reg = S_ISREG(st.st_mode);
	/* A container's bytes are not its disk's (imgfmt.h). */
	const char *fmt = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) ?
				  imgfmt_detect_fd(*fd) : NULL;
	if (fmt) {
		close(*fd);
		*fd = -1;
		return op_error("%s is a %s image, not a raw disk; convert it "
				"(qemu-img convert -f %s -O raw %s DISK.raw) "
				"or attach its disk raw through qemu-nbd:\n"
				"  qemu-nbd --read-only --format=%s "
				"--connect=/dev/nbd0 %s\n"
				"and give /dev/nbd0 (qemu-nbd --disconnect "
				"/dev/nbd0 after)", path, fmt, fmt, path, fmt,
				path);
	}
	if (*is_reg) {
		*size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(*fd, BLKGETSIZE64, size) < 0)
			goto sys;
	} else {
		close(*fd);
		*fd = -1;
		return op_error("%s: not a regular file or block device",
				path);
	}
	if (*size % BV_SECTOR) {
		close(*fd);
		*fd = -1;
		return op_error("%s: size %" PRIu64 " is not a multiple of "
				"512", path, *size);
	}
	return 0;
sys:
	op_error("%s: %s", path, strerror(errno));
	close(*fd);
	*fd = -1;
	return EXIT_OP;
}

/* Parses an extents file: lines "OFFSET LENGTH" in bytes, blank lines and
 * '#' comments ignored. Every extent must be aligned and inside SIZE. */
static int read_extents(const char *path, uint64_t size, struct extent **out,
			size_t *n)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	struct extent *v = NULL;
	size_t cap = 0, cnt = 0, lcap = 0;
	char *line = NULL;
	unsigned long lineno = 0;
	int rc = 0;

	if (!f)
		return op_error("%s: %s", path, strerror(errno));
	while (getline(&line, &lcap, f) >= 0) {
		char *fields[3] = { NULL, NULL, NULL };
		char *save = NULL, *tok, *hash;
		uint64_t off, len;
		int nf = 0;

		lineno++;
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		for (tok = strtok_r(line, " \t\r\n", &save); tok;
		     tok = strtok_r(NULL, " \t\r\n", &save)) {
			if (nf < 3)
				fields[nf] = tok;
			nf++;
		}
		if (nf == 0)
			continue;
		if (nf != 2) {
			rc = op_error("%s line %lu: expected 'OFFSET LENGTH' "
				      "in bytes", path, lineno);
			break;
		}
		if (parse_u64(fields[0], &off) || parse_u64(fields[1], &len)) {
			rc = op_error("%s line %lu: '%s %s' is not two decimal "
				      "numbers", path, lineno, fields[0],
				      fields[1]);
			break;
		}
		if (off % BV_SECTOR || len % BV_SECTOR) {
			rc = op_error("%s line %lu: extent %" PRIu64 "+%" PRIu64
				      " is not aligned to 512 bytes", path,
				      lineno, off, len);
			break;
		}
		if (len == 0) {
			rc = op_error("%s line %lu: empty extent", path,
				      lineno);
			break;
		}
		if (off > size || len > size - off) {
			rc = op_error("%s line %lu: extent %" PRIu64 "+%" PRIu64
				      " ends past the image size %" PRIu64,
				      path, lineno, off, len, size);
			break;
		}
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct extent *nv = realloc(v, nc * sizeof(*v));

			if (!nv) {
				rc = op_error("%s", strerror(ENOMEM));
				break;
			}
			v = nv;
			cap = nc;
		}
		v[cnt].off = off;
		v[cnt].len = len;
		cnt++;
	}
	if (!rc && ferror(f))
		rc = op_error("%s: %s", path, strerror(errno));
	free(line);
	if (f != stdin)
		fclose(f);
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int cmd_mkstream(int argc, char **argv)
{
	const char *replica = NULL, *base_s = NULL, *ext_s = NULL;
	const char *out_s = NULL, *cons_s = NULL;
	struct optdef defs[] = {
		{ "replica", OPT_VALUE, &replica, NULL },
		{ "base", OPT_VALUE, &base_s, NULL },
		{ "extents", OPT_VALUE, &ext_s, NULL },
		{ "out", OPT_VALUE, &out_s, NULL },
		{ "consistency", OPT_VALUE, &cons_s, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "IMAGE" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	struct mkjob j = { .img_fd = -1, .out_fd = -1 };
	struct progress pr;
	uint64_t base = 0;
	int npos, rc, created = 0;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, names);
	if (!rc && !replica)
		rc = usage_error("missing --replica NAME");
	if (!rc)
		rc = arg_name("--replica", replica);
	if (!rc && base_s)
		rc = arg_u64("--base", base_s, &base);
	if (!rc)
		rc = arg_consistency(cons_s, &j.h.consistency);
	if (!rc)
		rc = open_image(pos[0], &j.img_fd, &j.img_size, &j.is_reg);
	if (!rc && ext_s)
		rc = read_extents(ext_s, j.img_size, &j.ext, &j.next);
	if (!rc)
		rc = open_stream_out(out_s, &j.out_fd, &created);
	if (rc)
		goto out;
	j.img_name = pos[0];
	j.h.replica = replica;
	j.h.disk_size = j.img_size;
	j.h.base_rp = base;
	j.h.time = (int64_t)time(NULL);
	progress_init(&pr, "mkstream");
	j.pr = &pr;
	rc = mk_run(&j);
	progress_end(&pr);
	if (rc < 0) {
		rc = op_error("%s", j.err);
		goto out;
	}
	if (created && fsync(j.out_fd) < 0 && errno != EINVAL) {
		rc = op_error("%s: %s", out_s, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (created) {
		if (close(j.out_fd) < 0 && rc == 0)
			rc = op_error("%s: %s", out_s, strerror(errno));
		if (rc)
			unlink(out_s);
	}
	if (j.img_fd >= 0)
		close(j.img_fd);
	free(j.ext);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* ---- ingest ------------------------------------------------------------ */

static int cmd_ingest(int argc, char **argv)
{
	const char *label = NULL, *fmt_s = NULL, *replica = NULL;
	const char *base_s = NULL;
	int want_rp = 0;
	struct optdef defs[] = {
		{ "rp", OPT_FLAG, NULL, &want_rp },
		{ "label", OPT_VALUE, &label, NULL },
		{ "format", OPT_VALUE, &fmt_s, NULL },
		{ "replica", OPT_VALUE, &replica, NULL },
		{ "base", OPT_VALUE, &base_s, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE" };
	static char dash[] = "-";
	char **pos = calloc((size_t)argc + 2, sizeof(*pos));
	char *dash_pos[1] = { dash };
	char **streams;
	bv_ingest *in = NULL;
	bv_store *s = NULL;
	bv_commit_opts co = { .consistency = BV_APP_CONSISTENT };
	uint64_t base = BV_RP_LATEST, rp = 0, bytes = 0;
	int npos, nstreams, rc, format = BV_FORMAT_BVAULT, stdin_used = 0;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, -1, names);
	if (rc)
		goto out;
	if (fmt_s && strcmp(fmt_s, "rbd-diff") == 0)
		format = BV_FORMAT_RBD_DIFF;
	else if (fmt_s && strcmp(fmt_s, "bvault") != 0)
		rc = usage_error("bad --format '%s': use bvault or rbd-diff",
				 fmt_s);
	if (!rc && replica)
		rc = arg_name("--replica", replica);
	if (!rc && format == BV_FORMAT_RBD_DIFF && !replica)
		rc = usage_error("--format rbd-diff needs --replica NAME");
	if (!rc && base_s && format == BV_FORMAT_BVAULT)
		rc = usage_error("--base is for --format rbd-diff: a bvault "
				 "stream names its own base RP");
	if (!rc && base_s)
		rc = arg_u64("--base", base_s, &base);
	if (!rc && label && !want_rp)
		rc = usage_error("--label needs --rp");
	if (!rc && label && strlen(label) > BV_LABEL_MAX)
		rc = usage_error("--label is longer than %d bytes",
				 BV_LABEL_MAX);
	if (rc)
		goto out;
	streams = npos > 1 ? pos + 1 : dash_pos;
	nstreams = npos > 1 ? npos - 1 : 1;
	for (int i = 0; i < nstreams; i++) {
		if (strcmp(streams[i], "-"))
			continue;
		if (stdin_used++) {
			rc = usage_error("'-' (stdin) given more than once");
			goto out;
		}
		if (isatty(CLI_IN_FD)) {
			rc = op_error("refusing to read a binary stream from a "
				      "terminal; give STREAM files or a pipe");
			goto out;
		}
	}
	rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	rc = bv_ingest_begin(s, &in);
	if (rc < 0) {
		rc = store_error(s, rc);
		in = NULL;
		goto out;
	}
	for (int i = 0; i < nstreams; i++) {
		const char *path = streams[i];
		int is_stdin = strcmp(path, "-") == 0;
		int fd = is_stdin ? CLI_IN_FD
				  : open(path, O_RDONLY | O_CLOEXEC);
		int cons = BV_CRASH_CONSISTENT;
		int64_t t = 0;
		struct progress pr;
		struct stat st;
		char what[64];

		if (fd < 0) {
			rc = op_error("%s: %s", path, strerror(errno));
			goto out;
		}
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
			bytes += (uint64_t)st.st_size;
		snprintf(what, sizeof(what), nstreams > 1 ? "ingest %d/%d"
			 : "ingest", i + 1, nstreams);
		progress_init(&pr, what);
		rc = bv_ingest_stream(in, fd, format, replica, base, &cons, &t,
				      progress_cb, &pr);
		progress_end(&pr);
		if (!is_stdin)
			close(fd);
		if (rc < 0) {
			if (nstreams > 1)
				rc = op_error("%s: %s", path,
					      store_msg(s, rc));
			else
				rc = store_error(s, rc);
			goto out;
		}
		/* The RP is as consistent as the least consistent stream and
		 * carries the first stream's declared time. */
		if (cons == BV_CRASH_CONSISTENT)
			co.consistency = BV_CRASH_CONSISTENT;
		if (i == 0)
			co.time = t;
	}
	co.make_rp = want_rp;
	co.label = label;
	rc = bv_ingest_commit(in, &co, &rp);
	in = NULL;
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	fprintf(CLI_OUT, "committed %d stream%s", nstreams,
		nstreams > 1 ? "s" : "");
	if (bytes) {
		char h[32];

		human(h, sizeof(h), (double)bytes);
		fprintf(CLI_OUT, " (%s)", h);
	}
	if (rp)
		fprintf(CLI_OUT, ", RP %" PRIu64, rp);
	fprintf(CLI_OUT, "\n");
	rc = 0;
out:
	bv_ingest_abort(in);
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* ---- recovery points ------------------------------------------------ */

static int cmd_rp_create(int argc, char **argv)
{
	const char *label = NULL, *cons_s = NULL;
	struct optdef defs[] = {
		{ "label", OPT_VALUE, &label, NULL },
		{ "consistency", OPT_VALUE, &cons_s, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "REPLICA|GROUP" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_store *s = NULL;
	uint64_t n = 0;
	int npos, rc, cons = 0;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc)
		rc = arg_name("replica or group name", pos[1]);
	if (!rc)
		rc = arg_consistency(cons_s, &cons);
	if (!rc && label && strlen(label) > BV_LABEL_MAX)
		rc = usage_error("--label is longer than %d bytes",
				 BV_LABEL_MAX);
	if (!rc)
		rc = open_store(pos[0], &s);
	if (rc)
		goto out;
	rc = bv_rp_create(s, pos[1], label, cons, &n);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	fprintf(CLI_OUT, "RP %" PRIu64 "\n", n);
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

struct rp_ls_ctx {
	int json, per_replica;
	unsigned long n;
};

static int rp_ls_cb(void *ud, const bv_rp_info *rp)
{
	struct rp_ls_ctx *c = ud;
	const char *kind = rp->consistency == BV_APP_CONSISTENT ? "app"
								: "crash";
	char tb[64];

	fmt_time(tb, sizeof(tb), rp->time);
	if (c->json) {
		fprintf(CLI_OUT, "%s\n  {\"group\": ", c->n ? "," : "");
		json_str(CLI_OUT, rp->group);
		fprintf(CLI_OUT, ", \"rp\": %" PRIu64 ", \"time\": %" PRId64
			", \"time_utc\": \"%s\", \"consistency\": \"%s\", "
			"\"members\": %" PRIu32 ", \"label\": ", rp->number,
			rp->time, tb, kind, rp->members);
		json_str(CLI_OUT, rp->label);
		if (c->per_replica) {
			fprintf(CLI_OUT,
				", \"size\": %" PRIu64 ", \"version\": %" PRIu64
				", \"identity\": ", rp->size, rp->version);
			json_id(CLI_OUT, rp->id);
		}
		fprintf(CLI_OUT, "}");
	} else {
		if (c->n == 0) {
			fprintf(CLI_OUT, "%-20s %6s %-20s %-5s %7s", "GROUP",
				"RP",
				"TIME", "KIND", "MEMBERS");
			if (c->per_replica)
				fprintf(CLI_OUT, " %14s %7s", "SIZE",
					"VERSION");
			fprintf(CLI_OUT, "  LABEL\n");
		}
		fprintf(CLI_OUT, "%-20s %6" PRIu64 " %-20s %-5s %7" PRIu32,
			rp->group,
			rp->number, tb, kind, rp->members);
		if (c->per_replica)
			fprintf(CLI_OUT, " %14" PRIu64 " %7" PRIu64, rp->size,
				rp->version);
		fprintf(CLI_OUT, "  ");
		text_str(CLI_OUT, rp->label);
		fprintf(CLI_OUT, "\n");
	}
	c->n++;
	return 0;
}

static int cmd_rp_ls(int argc, char **argv)
{
	struct rp_ls_ctx c = { 0, 0, 0 };
	struct optdef defs[] = {
		{ "json", OPT_FLAG, NULL, &c.json },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_replica_info ri;
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
	/* A replica's name is also its default group's: size and version
	 * are filled when the name is a replica. */
	c.per_replica = npos == 2 && bv_replica_info_get(s, pos[1], &ri) == 0;
	if (c.json)
		fprintf(CLI_OUT, "[");
	rc = bv_rp_list(s, npos == 2 ? pos[1] : NULL, rp_ls_cb, &c);
	if (rc < 0) {
		if (c.json)
			fprintf(CLI_OUT, "]\n");
		fflush(CLI_OUT);
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

/* ---- export and diff ------------------------------------------------ */

/* cmd_restore.c */
int cmd_restore(int argc, char **argv);
/* cmd_gc.c */
int cmd_gc(int argc, char **argv);
/* ---- push (cmd_push.c) ---- */
int cmd_push(int argc, char **argv);
/* ---- end of push ---- */
/* cmd_seed.c (seed sets) */
int cmd_seed_export(int argc, char **argv);
/* ---- tls (cmd_tls.c) ---- */
int cmd_tls_init(int argc, char **argv);
int cmd_tls_fingerprint(int argc, char **argv);
int cmd_seed_verify(int argc, char **argv);
int cmd_seed_import(int argc, char **argv);
int cmd_seed_keygen(int argc, char **argv);
int cmd_export(int argc, char **argv);

static int cmd_diff(int argc, char **argv)
{
	const char *out_s = NULL, *base_s = NULL;
	struct optdef defs[] = {
		{ "out", OPT_VALUE, &out_s, NULL },
		{ "base", OPT_VALUE, &base_s, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "REPLICA@RP1",
					     "REPLICA@RP2" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	char n1[BV_NAME_MAX + 1], n2[BV_NAME_MAX + 1];
	uint64_t rp1 = 0, rp2 = 0, base = BV_RP_LATEST;
	struct progress pr;
	bv_store *s = NULL;
	int npos, rc, fd = -1, created = 0;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 3, 3, names);
	if (!rc)
		rc = arg_replica_rp(pos[1], n1, &rp1);
	if (!rc)
		rc = arg_replica_rp(pos[2], n2, &rp2);
	if (!rc && strcmp(n1, n2))
		rc = usage_error("'%s' and '%s' name different replicas",
				 pos[1], pos[2]);
	if (!rc && base_s)
		rc = arg_u64("--base", base_s, &base);
	if (!rc)
		rc = open_store_reading(pos[0], &s);
	if (rc)
		goto out;
	if (rp1 == BV_RP_LATEST || rp2 == BV_RP_LATEST) {
		bv_replica_info ri;

		rc = bv_replica_info_get(s, n1, &ri);
		if (rc < 0) {
			rc = store_error(s, rc);
			goto out;
		}
		if (rp1 == BV_RP_LATEST)
			rp1 = ri.latest_rp;
		if (rp2 == BV_RP_LATEST)
			rp2 = ri.latest_rp;
	}
	rc = open_stream_out(out_s, &fd, &created);
	if (rc)
		goto out;
	progress_init(&pr, "diff");
	rc = bv_diff(s, n1, rp1, rp2, base, fd, progress_cb, &pr);
	progress_end(&pr);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (created && fsync(fd) < 0 && errno != EINVAL) {
		rc = op_error("%s: %s", out_s, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (created) {
		if (close(fd) < 0 && rc == 0)
			rc = op_error("%s: %s", out_s, strerror(errno));
		if (rc)
			unlink(out_s);
	}
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* ---- ls and stats ----------------------------------------------------- */

struct ls_ctx {
	int json;
	unsigned long n;
};

static int ls_cb(void *ud, const bv_replica_info *r)
{
	struct ls_ctx *c = ud;

	if (c->json) {
		fprintf(CLI_OUT, "%s\n  {\"name\": ", c->n ? "," : "");
		json_str(CLI_OUT, r->name);
		fprintf(CLI_OUT, ", \"group\": ");
		json_str(CLI_OUT, r->group);
		fprintf(CLI_OUT,
			", \"size\": %" PRIu64 ", \"chunk_size\": %" PRIu32
			", \"head\": %" PRIu64 ", \"latest_rp\": %" PRIu64
			", \"head_identity\": ", r->size, r->chunk_size, r->head,
			r->latest_rp);
		json_id(CLI_OUT, r->head_id);
		fprintf(CLI_OUT, "}");
	} else {
		char h[32];

		if (c->n == 0)
			fprintf(CLI_OUT, "%-24s %-24s %10s %8s %6s %9s\n",
				"NAME",
				"GROUP", "SIZE", "CHUNK", "HEAD", "LATEST-RP");
		human(h, sizeof(h), (double)r->size);
		fprintf(CLI_OUT,
			"%-24s %-24s %10s %8" PRIu32 " %6" PRIu64 " %9" PRIu64
			"\n", r->name, r->group, h, r->chunk_size, r->head,
			r->latest_rp);
	}
	c->n++;
	return 0;
}

static int cmd_ls(int argc, char **argv)
{
	struct ls_ctx c = { 0, 0 };
	struct optdef defs[] = {
		{ "json", OPT_FLAG, NULL, &c.json },
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
	if (c.json)
		fprintf(CLI_OUT, "[");
	rc = bv_replica_list(s, ls_cb, &c);
	if (rc < 0) {
		if (c.json)
			fprintf(CLI_OUT, "]\n");
		fflush(CLI_OUT);
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

static void ratio_json(const char *key, uint64_t num, uint64_t den)
{
	if (den)
		fprintf(CLI_OUT, ",\n  \"%s\": %.4f", key,
			(double)num / (double)den);
	else
		fprintf(CLI_OUT, ",\n  \"%s\": null", key);
}

static void stat_line(const char *key, uint64_t v, int bytes)
{
	char h[32];

	if (bytes) {
		human(h, sizeof(h), (double)v);
		fprintf(CLI_OUT, "%-18s %12s  (%" PRIu64 ")\n", key, h, v);
	} else {
		fprintf(CLI_OUT, "%-18s %12" PRIu64 "\n", key, v);
	}
}

static int cmd_stats(int argc, char **argv)
{
	int json = 0, quick = 0, prom = 0;
	struct optdef defs[] = {
		{ "json", OPT_FLAG, NULL, &json },
		{ "quick", OPT_FLAG, NULL, &quick },
		{ "prometheus", OPT_FLAG, NULL, &prom },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "GROUP" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_store *s = NULL;
	bv_stats st;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 2, names);
	if (!rc && npos == 2)
		rc = arg_name("group", pos[1]);
	if (!rc && npos == 2 && quick)
		rc = usage_error("--quick shows the store's counters alone: "
				 "it takes no GROUP");
	if (!rc && json && prom)
		rc = usage_error("--json or --prometheus, not both");
	if (!rc)
		rc = open_store_reading(pos[0], &s);
	if (rc)
		goto out;
	rc = quick ? bv_stats_counters(s, &st) : bv_stats_get(s, &st);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (prom) {
		rc = print_prometheus(s, pos[0], &st, npos == 2 ? pos[1] : NULL,
				      quick);
		if (rc)
			goto out;
	} else if (json) {
		fprintf(CLI_OUT,
			"{\n  \"replicas\": %" PRIu64 ",\n  \"groups\": %" PRIu64
			",\n  \"rps\": %" PRIu64 ",\n  \"logical_bytes\": %"
			PRIu64 ",\n  \"ingested_bytes\": %" PRIu64
			",\n  \"chunks\": %" PRIu64 ",\n  \"raw_bytes\": %"
			PRIu64 ",\n  \"stored_bytes\": %" PRIu64
			",\n  \"containers\": %" PRIu64
			",\n  \"container_bytes\": %" PRIu64
			",\n  \"index_bytes\": %" PRIu64
			",\n  \"map_entries\": %" PRIu64
			",\n  \"unknown_bytes\": %" PRIu64
			",\n  \"unknown_ranges\": %" PRIu64
			",\n  \"bad_chunks\": %" PRIu64
			",\n  \"index_lost\": %s"
			",\n  \"dedup_scope\": \"%s\"",
			st.replicas, st.groups, st.rps, st.logical_bytes,
			st.ingested_bytes, st.chunks, st.raw_bytes,
			st.stored_bytes, st.containers, st.container_bytes,
			st.index_bytes, st.map_entries, st.unknown_bytes,
			st.unknown_ranges, st.bad_chunks,
			st.index_lost ? "true" : "false",
			st.dedup_scope == BV_DEDUP_GROUP ? "group" : "store");
		if (st.scanned) {
			fprintf(CLI_OUT, ",\n  \"protected_bytes\": %" PRIu64
				",\n  \"live_chunks\": %" PRIu64
				",\n  \"live_raw_bytes\": %" PRIu64
				",\n  \"live_bytes\": %" PRIu64
				",\n  \"unreferenced_chunks\": %" PRIu64
				",\n  \"unreferenced_bytes\": %" PRIu64,
				st.protected_bytes, st.live_chunks,
				st.live_raw_bytes, st.live_bytes,
				st.unreferenced_chunks, st.unreferenced_bytes);
			fprintf(CLI_OUT, ",\n  \"reclaimable_bytes\": %" PRIu64,
				st.container_bytes > st.live_bytes ?
				st.container_bytes - st.live_bytes : 0);
			ratio_json("live_share", st.live_bytes,
				   st.container_bytes);
			ratio_json("protected_ratio", st.protected_bytes,
				   st.container_bytes);
			ratio_json("live_dedup_ratio", st.protected_bytes,
				   st.live_raw_bytes);
			ratio_json("live_compression_ratio", st.live_raw_bytes,
				   st.live_bytes);
		}
		ratio_json("dedup_ratio", st.ingested_bytes, st.raw_bytes);
		ratio_json("compression_ratio", st.raw_bytes, st.stored_bytes);
		if (!quick && (rc = print_usage(s, npos == 2 ? pos[1] : NULL,
						1)))
			goto out;
		fprintf(CLI_OUT, "\n}\n");
	} else {
		stat_line("replicas", st.replicas, 0);
		stat_line("groups", st.groups, 0);
		stat_line("recovery points", st.rps, 0);
		stat_line("logical", st.logical_bytes, 1);
		stat_line("ingested", st.ingested_bytes, 1);
		stat_line("unique (raw)", st.raw_bytes, 1);
		stat_line("stored", st.stored_bytes, 1);
		stat_line("unique chunks", st.chunks, 0);
		if (st.raw_bytes)
			fprintf(CLI_OUT,
				"%-18s %12.2f  (ingested / unique raw)\n",
				"dedup ratio", (double)st.ingested_bytes /
				(double)st.raw_bytes);
		else
			fprintf(CLI_OUT, "%-18s %12s\n", "dedup ratio", "-");
		fprintf(CLI_OUT, "%-18s %12s\n", "dedup scope",
			st.dedup_scope == BV_DEDUP_GROUP ? "group" : "store");
		if (st.stored_bytes)
			fprintf(CLI_OUT,
				"%-18s %12.2f  (unique raw / stored)\n",
				"compression ratio", (double)st.raw_bytes /
				(double)st.stored_bytes);
		else
			fprintf(CLI_OUT, "%-18s %12s\n", "compression ratio",
				"-");
		stat_line("containers", st.containers, 0);
		stat_line("container files", st.container_bytes, 1);
		stat_line("index", st.index_bytes, 1);
		stat_line("map entries", st.map_entries, 0);
		stat_line("unknown", st.unknown_bytes, 1);
		stat_line("bad chunks", st.bad_chunks, 0);
		if (st.scanned) {
			stat_line("protected", st.protected_bytes, 1);
			stat_line("live chunks", st.live_chunks, 0);
			stat_line("live (raw)", st.live_raw_bytes, 1);
			stat_line("live (stored)", st.live_bytes, 1);
			stat_line("unreferenced", st.unreferenced_bytes, 1);
			/* What a GC at 100% could give back: every container
			 * byte that is not a live record (dead records,
			 * padding, unknown bytes, headers). */
			stat_line("reclaimable", st.container_bytes >
				  st.live_bytes ? st.container_bytes -
				  st.live_bytes : 0, 1);
			if (st.container_bytes)
				fprintf(CLI_OUT, "%-18s %12.2f  (live stored / "
					"container files)\n", "live share",
					(double)st.live_bytes /
					(double)st.container_bytes);
			if (st.container_bytes)
				fprintf(CLI_OUT,
					"%-18s %12.2f  (protected / container "
					"files)\n", "protected ratio",
					(double)st.protected_bytes /
					(double)st.container_bytes);
			if (st.live_raw_bytes)
				fprintf(CLI_OUT,
					"%-18s %12.2f  (protected / live raw)\n",
					"live dedup ratio",
					(double)st.protected_bytes /
					(double)st.live_raw_bytes);
		}
		if (st.index_lost)
			fprintf(CLI_OUT,
				"%-18s %12s  (the index lost commits its seal "
				"records: bvault verify STORE)\n", "index", "LOST");
		if (!quick && (rc = print_usage(s, npos == 2 ? pos[1] : NULL,
						0)))
			goto out;
	}
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

static int cmd_recover(int argc, char **argv)
{
	int accept = 0;
	struct optdef defs[] = {
		{ "accept-index-loss", OPT_FLAG, NULL, &accept },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	bv_open_opts o = { .accept_index_loss = 1 };
	bv_store *s = NULL;
	bv_stats st;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, names);
	if (!rc && !accept)
		rc = usage_error("recover: say --accept-index-loss: the commits "
				 "the index lost are then given up");
	if (!rc && admin_running(pos[0]))
		rc = op_error("bvaultd holds store %s: stop it first (recover "
			      "needs the store to itself)", pos[0]);
	if (rc)
		goto out;
	rc = bv_store_open(pos[0], &o, &s);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (bv_stats_counters(s, &st) == 0)
		fprintf(CLI_OUT,
			"store %s opens from what its index holds: %" PRIu64
			" recovery points; %" PRIu64 " container bytes no commit "
			"names are kept\n", pos[0], st.rps, st.unknown_bytes);
	rc = 0;
out:
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* ---- bench ------------------------------------------------------------ */

/* xorshift64*: fast, good enough to make incompressible bytes. */
static uint64_t rng_next(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void fill_random(unsigned char *p, size_t n, uint64_t *st)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t v = rng_next(st);

		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = (unsigned char)rng_next(st);
}

/* About 2:1 for LZ4: each 1 KiB holds 512 random bytes and 512 bytes of
 * text-like filler; every chunk is unique, so nothing dedups. */
static void fill_half(unsigned char *p, size_t n, uint64_t *st)
{
	static const char text[] = "the quick brown fox jumps over the lazy "
				   "dog while the backup server keeps every "
				   "block it has ever seen, once. ";
	size_t tl = sizeof(text) - 1;

	for (size_t i = 0; i < n; i += 1024) {
		size_t m = n - i < 1024 ? n - i : 1024;
		size_t r = m < 512 ? m : 512;

		fill_random(p + i, r, st);
		for (size_t k = r; k < m; k++)
			p[i + k] = (unsigned char)text[(i / 1024 + k) % tl];
	}
}

struct bench_row {
	const char *name;
	double rate;      /* units per second */
	int ops;          /* 1: ops/s rather than bytes/s */
	const char *ref;  /* compared with; NULL: none */
	double ref_rate;
};

static void bench_rate(char *buf, size_t len, double v, int ops)
{
	if (ops)
		snprintf(buf, len, "%.0f /s", v);
	else {
		human(buf, len, v);
		strncat(buf, "/s", len - strlen(buf) - 1);
	}
}

static void bench_print(const struct bench_row *r)
{
	char a[32], b[32] = "", ratio[32] = "";

	bench_rate(a, sizeof(a), r->rate, r->ops);
	if (r->ref) {
		bench_rate(b, sizeof(b), r->ref_rate, r->ops);
		if (r->ref_rate > 0)
			snprintf(ratio, sizeof(ratio), "%.2f",
				 r->rate / r->ref_rate);
	}
	fprintf(CLI_OUT, "| %-34s | %14s | %-36s | %14s | %6s |\n", r->name, a,
		r->ref ? r->ref : "-", r->ref ? b : "-", r->ref ? ratio : "-");
	fflush(CLI_OUT);
}

static int rm_cb(const char *p, const struct stat *sb, int type,
		 struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return type == FTW_DP ? rmdir(p) : unlink(p);
}

static int write_file(const char *path, const unsigned char *buf,
		      size_t buflen, uint64_t size, int sync, double *secs)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	double t0 = now_sec();
	uint64_t done = 0;

	if (fd < 0)
		return -errno;
	while (done < size) {
		size_t n = size - done < buflen ? (size_t)(size - done)
						: buflen;
		ssize_t w = write(fd, buf, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? -errno : -EIO;

			close(fd);
			return e;
		}
		done += (uint64_t)w;
	}
	if (sync && fdatasync(fd) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	*secs = now_sec() - t0;
	return close(fd) < 0 ? -errno : 0;
}

/* Reads PATH through once from the device: its cached pages are written
 * back and dropped first, as the engine's containers (written with
 * O_DIRECT) are not in the page cache either. */
static int read_file(const char *path, unsigned char *buf, size_t buflen,
		     double *rate)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	double t0;
	uint64_t done = 0;

	if (fd < 0)
		return -errno;
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	t0 = now_sec();
	for (;;) {
		ssize_t r = read(fd, buf, buflen);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = -errno;

			close(fd);
			return e;
		}
		if (r == 0)
			break;
		done += (uint64_t)r;
	}
	*rate = (double)done / (now_sec() - t0);
	close(fd);
	return 0;
}

/* Writes an image of SIZE bytes of synthetic 2:1 data, chunk by chunk,
 * each chunk unique. */
static int make_image(const char *path, uint64_t size, unsigned char *buf)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	uint64_t st = 0x9E3779B97F4A7C15ULL, done = 0;

	if (fd < 0)
		return -errno;
	while (done < size) {
		size_t n = size - done < IO_BUF ? (size_t)(size - done)
						: IO_BUF;
		size_t off = 0;

		fill_half(buf, n, &st);
		while (off < n) {
			ssize_t w = write(fd, buf + off, n - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				int e = w < 0 ? -errno : -EIO;

				close(fd);
				return e;
			}
			off += (size_t)w;
		}
		done += n;
	}
	return close(fd) < 0 ? -errno : 0;
}

static void *mk_thread(void *arg)
{
	struct mkjob *j = arg;
	intptr_t rc = mk_run(j);

	close(j->out_fd);
	return (void *)rc;
}

/* Ingests BUF's pattern as replica NAME through bv_ingest_write: SIZE
 * bytes in IO_BUF writes, each IO_BUF regenerated from ST unless ST is
 * NULL (then BUF is reused: all duplicates). */
static int bench_ingest_writes(bv_store *s, const char *name, uint64_t size,
			       unsigned char *buf, uint64_t *st, double *secs)
{
	bv_commit_opts co = { .make_rp = 1 };
	bv_ingest *in = NULL;
	double t0 = now_sec();
	uint64_t rp = 0;
	int slot, rc;

	rc = bv_ingest_begin(s, &in);
	if (rc < 0)
		return rc;
	slot = bv_ingest_add(in, name, 0, size);
	if (slot < 0) {
		bv_ingest_abort(in);
		return slot;
	}
	for (uint64_t off = 0; off < size; off += IO_BUF) {
		size_t n = size - off < IO_BUF ? (size_t)(size - off) : IO_BUF;

		if (st)
			fill_random(buf, n, st);
		rc = bv_ingest_write(in, slot, off, buf, n);
		if (rc < 0) {
			bv_ingest_abort(in);
			return rc;
		}
	}
	rc = bv_ingest_commit(in, &co, &rp);
	*secs = now_sec() - t0;
	return rc < 0 ? rc : 0;
}

static int cmd_bench(int argc, char **argv)
{
	const char *dir_s = NULL, *size_s = NULL;
	struct optdef defs[] = {
		{ "dir", OPT_VALUE, &dir_s, NULL },
		{ "size", OPT_VALUE, &size_s, NULL },
		{ NULL, 0, NULL, NULL },
	};
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	uint64_t size = 1ull << 30, small, st = 0x1234567ULL;
	const size_t mem = 64u << 20, chunk = BV_CHUNK_DEFAULT;
	unsigned char *a = NULL, *b = NULL, *c = NULL;
	char tmpl[4096], path[4200], store[4200], *dir = NULL;
	double memcpy_rate = 0, hash_rate = 0, comp_rate = 0, t0, secs;
	double rate, rd_rate = 0, gen_secs, lz4_ratio = 0;
	bv_store *s = NULL;
	int npos, rc, bound;
	struct bench_row row;
	uint64_t sink = 0;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc && npos > 0)
		rc = usage_error("unexpected argument '%s'", pos[0]);
	if (!rc && size_s)
		rc = arg_size("--size", size_s, &size);
	if (!rc && (size < (16u << 20) || size % chunk))
		rc = usage_error("bad --size '%s': at least 16M, a multiple "
				 "of 64K", size_s);
	if (rc)
		goto out;
	small = size / 4 < (16u << 20) ? size : size / 4;
	small -= small % chunk;
	a = malloc(mem);
	b = malloc(mem);
	bound = LZ4_compressBound((int)chunk);
	c = malloc((size_t)bound * (mem / chunk));
	if (!a || !b || !c) {
		rc = op_error("%s", strerror(ENOMEM));
		goto out;
	}
	snprintf(tmpl, sizeof(tmpl), "%s/bvault-bench.XXXXXX",
		 dir_s ? dir_s : "/var/tmp");
	dir = mkdtemp(tmpl);
	if (!dir) {
		rc = op_error("%s: %s", tmpl, strerror(errno));
		goto out;
	}
	fprintf(CLI_OUT,
		"bvault bench: %s, image %s, %ld online cores, dir %s\n\n",
		bv_version(), size_s ? size_s : "1G",
		sysconf(_SC_NPROCESSORS_ONLN), dir);
	fprintf(CLI_OUT, "| %-34s | %14s | %-36s | %14s | %6s |\n", "test",
		"rate",
		"compared with", "reference", "ratio");
	fprintf(CLI_OUT, "|%.36s|%.16s|%.38s|%.16s|%.8s|\n",
		"--------------------------------------",
		"--------------------------------------",
		"--------------------------------------",
		"--------------------------------------",
		"--------------------------------------");
	fill_half(a, mem, &st);
	memset(b, 0, mem); /* page faults out of the timed loops */
	memset(c, 0, (size_t)bound * (mem / chunk));

	/* memcpy: the memory bandwidth every other row is bounded by. */
	t0 = now_sec();
	secs = 0;
	for (int i = 0; secs < 0.5; i++) {
		memcpy(b, a, mem);
		sink += b[(size_t)i % mem];
		secs = now_sec() - t0;
		memcpy_rate = (double)mem * (i + 1) / secs;
	}
	row = (struct bench_row){ "memcpy (1 core)", memcpy_rate, 0, NULL, 0 };
	bench_print(&row);

	t0 = now_sec();
	secs = 0;
	for (int i = 0; secs < 1.0; i++) {
		for (size_t off = 0; off < mem; off += chunk) {
			XXH128_hash_t h = XXH3_128bits(a + off, chunk);

			sink += h.low64;
		}
		secs = now_sec() - t0;
		hash_rate = (double)mem * (i + 1) / secs;
	}
	row = (struct bench_row){ "XXH3-128 hash, 64K chunks (1 core)",
				  hash_rate, 0, "memcpy (1 core)",
				  memcpy_rate };
	bench_print(&row);

	{
		int clen[1024];
		uint64_t raw = 0, packed = 0;

		t0 = now_sec();
		secs = 0;
		for (int i = 0; secs < 1.0; i++) {
			for (size_t k = 0; k < mem / chunk; k++) {
				clen[k] = LZ4_compress_default(
					(const char *)a + k * chunk,
					(char *)c + k * (size_t)bound,
					(int)chunk, bound);
				packed += (uint64_t)clen[k];
			}
			raw += mem;
			secs = now_sec() - t0;
		}
		comp_rate = (double)raw / secs;
		row = (struct bench_row){ "LZ4 compress, 2:1 data (1 core)",
					  comp_rate, 0,
					  "XXH3-128 hash (1 core)", hash_rate };
		bench_print(&row);
		lz4_ratio = (double)raw / (double)(packed ? packed : 1);

		t0 = now_sec();
		secs = 0;
		raw = 0;
		for (int i = 0; secs < 1.0; i++) {
			for (size_t k = 0; k < mem / chunk; k++) {
				int r = LZ4_decompress_safe(
					(const char *)c + k * (size_t)bound,
					(char *)b + k * chunk, clen[k],
					(int)chunk);

				if (r != (int)chunk) {
					rc = op_error("LZ4 round trip failed");
					goto out;
				}
			}
			raw += mem;
			secs = now_sec() - t0;
		}
		row = (struct bench_row){ "LZ4 decompress (1 core)",
					  (double)raw / secs, 0,
					  "memcpy (1 core)", memcpy_rate };
		bench_print(&row);
	}

	/* Engine rows: a fresh store in the temp dir. */
	snprintf(store, sizeof(store), "%s/store", dir);
	rc = bv_store_init(store, NULL, path, sizeof(path));
	if (rc < 0) {
		rc = op_error("%s", *path ? path : bv_strerror(rc));
		goto out;
	}
	rc = open_store(store, &s);
	if (rc)
		goto out;

	snprintf(path, sizeof(path), "%s/raw", dir);
	st = 42;
	fill_random(a, mem, &st);
	rc = write_file(path, a, IO_BUF, small, 1, &secs);
	if (rc < 0) {
		rc = op_error("%s: %s", path, strerror(-rc));
		goto out;
	}
	rate = (double)small / secs;
	/* The engine rows regenerate their data as they go: that time is
	 * measured here and taken off. */
	st = 7;
	t0 = now_sec();
	for (uint64_t off = 0; off < small; off += IO_BUF)
		fill_random(b, IO_BUF, &st);
	gen_secs = now_sec() - t0;
	st = 7;
	rc = bench_ingest_writes(s, "bench-w", small, a, &st, &secs);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	secs = secs - gen_secs > 1e-6 ? secs - gen_secs : 1e-6;
	row = (struct bench_row){ "container write, random (engine)",
				  (double)small / secs, 0,
				  "write()+fdatasync of a file", rate };
	bench_print(&row);

	{
		bv_reader *r = NULL;
		double rrate;

		rc = read_file(path, a, IO_BUF, &rrate);
		if (rc < 0) {
			rc = op_error("%s: %s", path, strerror(-rc));
			goto out;
		}
		rc = bv_reader_open(s, "bench-w", BV_RP_LATEST, &r);
		if (rc < 0) {
			rc = store_error(s, rc);
			goto out;
		}
		t0 = now_sec();
		for (uint64_t off = 0; rc >= 0 && off < small; off += IO_BUF)
			rc = bv_reader_pread(r, a, small - off < IO_BUF
					     ? (size_t)(small - off) : IO_BUF,
					     off);
		secs = now_sec() - t0;
		bv_reader_close(r);
		if (rc < 0) {
			rc = store_error(s, rc);
			goto out;
		}
		row = (struct bench_row){ "container read (engine)",
					  (double)small / secs, 0,
					  "read() of a file (device)",
					  rrate };
		bench_print(&row);
	}

	/* Every chunk already stored: each one is a hash and a look-up. */
	st = 7;
	{
		rc = bench_ingest_writes(s, "bench-d", small, a, &st, &secs);
		if (rc < 0) {
			rc = store_error(s, rc);
			goto out;
		}
		secs = secs - gen_secs > 1e-6 ? secs - gen_secs : 1e-6;
		row = (struct bench_row){ "index look-ups (duplicate chunks)",
					  (double)(small / chunk) / secs, 1,
					  "XXH3-128 hashes of 64K (1 core)",
					  hash_rate / (double)chunk };
		bench_print(&row);
	}
	unlink(path);

	/* End to end: image -> stream (thread) -> pipe -> ingest. */
	snprintf(path, sizeof(path), "%s/image", dir);
	rc = make_image(path, size, a);
	if (rc < 0) {
		rc = op_error("%s: %s", path, strerror(-rc));
		goto out;
	}
	{
		struct mkjob j = { .img_fd = -1, .out_fd = -1 };
		bv_ingest *in = NULL;
		bv_commit_opts co = { .make_rp = 1 };
		pthread_t th;
		int pfd[2], is_reg;
		void *thr = NULL;
		uint64_t rp = 0;

		if (open_image(path, &j.img_fd, &j.img_size, &is_reg)) {
			rc = EXIT_OP;
			goto out;
		}
		j.is_reg = is_reg;
		j.img_name = path;
		j.h.replica = "bench-e";
		j.h.disk_size = j.img_size;
		j.h.time = (int64_t)time(NULL);
		if (pipe2(pfd, O_CLOEXEC) < 0) {
			close(j.img_fd);
			rc = op_error("pipe: %s", strerror(errno));
			goto out;
		}
		(void)fcntl(pfd[0], F_SETPIPE_SZ, 1 << 20);
		j.out_fd = pfd[1];
		t0 = now_sec();
		rc = bv_ingest_begin(s, &in);
		if (rc == 0 && pthread_create(&th, NULL, mk_thread, &j) != 0)
			rc = -EAGAIN;
		if (rc < 0) {
			close(pfd[0]);
			close(pfd[1]);
			close(j.img_fd);
			bv_ingest_abort(in);
			rc = store_error(s, rc);
			goto out;
		}
		rc = bv_ingest_stream(in, pfd[0], BV_FORMAT_BVAULT, NULL,
				      BV_RP_LATEST, NULL, NULL, NULL, NULL);
		close(pfd[0]); /* a writer still going gets EPIPE */
		pthread_join(th, &thr);
		close(j.img_fd);
		if (rc < 0 || (intptr_t)thr < 0) {
			bv_ingest_abort(in);
			if (rc < 0)
				rc = store_error(s, rc);
			else
				rc = op_error("mkstream: %s", j.err);
			goto out;
		}
		rc = bv_ingest_commit(in, &co, &rp);
		secs = now_sec() - t0;
		if (rc < 0) {
			rc = store_error(s, rc);
			goto out;
		}
		row = (struct bench_row){ "ingest, 2:1 image (end to end)",
					  (double)size / secs, 0,
					  "LZ4 compress (1 core)", comp_rate };
		bench_print(&row);
	}

	rc = read_file(path, a, IO_BUF, &rd_rate);
	if (rc < 0) {
		rc = op_error("%s: %s", path, strerror(-rc));
		goto out;
	}
	unlink(path);
	snprintf(path, sizeof(path), "%s/export", dir);
	t0 = now_sec();
	rc = bv_export(s, "bench-e", BV_RP_LATEST, path, NULL, NULL);
	secs = now_sec() - t0;
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	row = (struct bench_row){ "export, 2:1 image (end to end)",
				  (double)size / secs, 0,
				  "read() of the image file", rd_rate };
	bench_print(&row);
	unlink(path);
	{
		bv_stats sts;

		if (bv_stats_counters(s, &sts) == 0 && sts.stored_bytes)
			fprintf(CLI_OUT,
				"\nstore: %" PRIu64 " unique chunks (random and "
				"2:1), compression %.2f:1\n", sts.chunks,
				(double)sts.raw_bytes /
				(double)sts.stored_bytes);
	}
	fprintf(CLI_OUT, "\nLZ4 ratio on the 2:1 data: %.2f:1. ratio = rate / "
		"reference. Reference reads are from the device, like the "
		"engine's.\n", lz4_ratio);
	if (sink == 42)
		fprintf(CLI_OUT,
			"\n"); /* keeps the measured loops from being elided */
	rc = 0;
out:
	close_store(s);
	if (dir)
		nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(a);
	free(b);
	free(c);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

/* ---- dispatch ------------------------------------------------------- */

struct command {
	const char *group; /* "rp" for "rp create"; NULL for one word */
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
	int flags; /* CMD_CHANGES, CMD_ALONE (cli.h); 0: only reads */
};

static const struct command commands[] = {
	{ NULL, "init", cmd_init,
	  "usage: bvault init STORE [--chunk-size SIZE] "
	  "[--container-size SIZE] [--dedup store|group]\n"
	  "Creates a new store in the directory STORE (made if missing;\n"
	  "must be empty). --chunk-size: default chunk size of new replicas,\n"
	  "a power of two from 4K to 4M (default 64K). --container-size:\n"
	  "bytes past which a container file is closed, GC's unit of\n"
	  "rewriting, 1M to 16G (default 64M). --dedup: store (default)\n"
	  "dedups across every replica; group confines dedup to each\n"
	  "replica group, so that no tenant learns from a commit's timing\n"
	  "what another stores, at the price of storing shared data once per\n"
	  "group (see README). Fixed for the store's life.\n" },
	{ NULL, "gc", cmd_gc,
	  "usage: bvault gc STORE [--dry-run] [--threshold PCT] [--json]\n"
	  "Deletes the chunks that no RP, head, view or session in flight\n"
	  "needs, and rewrites every container whose live share is below\n"
	  "PCT percent (default 50): its live chunks are copied to new\n"
	  "containers and it is removed once no reader can read it (one\n"
	  "kept for an open reader goes at a later gc). Reports chunks and\n"
	  "bytes found dead, containers rewritten and removed, bytes read,\n"
	  "written and reclaimed. --dry-run changes nothing and reports what\n"
	  "a run would do. Needs the store's writer: while bvaultd holds\n"
	  "the store, bvaultd runs it (bvaultd --gc-interval runs it on a\n"
	  "schedule too).\n",
	  CMD_CHANGES },
	/* ---- push ---- */
	{ NULL, "push", cmd_push,
	  "usage: bvault push STORE GROUP (--server HOST:PORT | --unix PATH)\n"
	  "                   --name AGENT (--key FILE | --secret-file FILE)\n"
	  "                   [--bandwidth RATE]\n"
	  "                   [--fingerprint HEX | --ca FILE | --no-tls]\n"
	  "Replicates group GROUP to a second server: sends every RP of it\n"
	  "that the remote bvaultd lacks, oldest first, each as the\n"
	  "difference from the RP before it, so that the remote holds the\n"
	  "same RPs with the same numbers, labels, times and version\n"
	  "identities. The remote authorizes it as agent AGENT (a grant on\n"
	  "the group; a group of several replicas must exist there with\n"
	  "the same members). Each RP is atomic there: a push cut off\n"
	  "resumes from the last RP the remote committed. A remote whose\n"
	  "history differs (another identity at the same RP) is refused,\n"
	  "naming both identities; nothing is sent. --bandwidth: at most\n"
	  "RATE bytes per second (K, M, G suffixes). Over TCP it speaks\n"
	  "TLS 1.3 and the remote must be the one --fingerprint pins (bvault\n"
	  "tls fingerprint REMOTE-STORE there) or one --ca FILE vouches for;\n"
	  "--no-tls for a remote bvaultd started with --no-tls. Opens the\n"
	  "store read-only (works beside its bvaultd).\n" },
	/* ---- end of push ---- */
	{ "replica", "create", cmd_replica_create,
	  "usage: bvault replica create STORE NAME --size SIZE "
	  "[--chunk-size SIZE]\n"
	  "Creates an empty (all-zero) replica of SIZE bytes (a multiple of\n"
	  "512) in a group of its own named NAME.\n",
	  CMD_CHANGES },
	{ "group", "create", cmd_group_create,
	  "usage: bvault group create STORE GROUP REPLICA...\n"
	  "Puts the replicas into group GROUP, whose recovery points hold\n"
	  "every member. Each replica must still be alone in its own group\n"
	  "and have no recovery point yet.\n",
	  CMD_CHANGES },
	{ "replica", "rm", cmd_replica_rm,
	  "usage: bvault replica rm STORE NAME\n"
	  "Removes replica NAME: its map, its records, its place in its\n"
	  "group and in the group's recovery points (an RP left with no\n"
	  "member goes). Refused while a session writes it, a view is made\n"
	  "from it, or an RP holding it is protected. Its chunks are\n"
	  "reclaimed by garbage collection.\n",
	  CMD_CHANGES },
	{ "group", "add", cmd_group_add,
	  "usage: bvault group add STORE GROUP REPLICA...\n"
	  "Adds the replicas to group GROUP, which may have recovery points\n"
	  "already; each must be alone in its own group with no RP. They\n"
	  "take part from the group's next RP on (older RPs do not hold\n"
	  "them); their next stream names the group's latest RP as base.\n",
	  CMD_CHANGES },
	{ "group", "ls", cmd_group_ls,
	  "usage: bvault group ls STORE [--json]\n"
	  "Lists groups: members, how many RPs, the latest RP, the policy.\n"
	  "Opens the store read-only.\n" },
	{ "agent", "add", cmd_agent_add,
	  "usage: bvault agent add STORE NAME --group G [--group G...]\n"
	  "                        [--public-key FILE.pub | --secret-file FILE]\n"
	  "Creates agent NAME, which may read and write the groups named\n"
	  "(a new replica is in a group of its own name).\n"
	  "With --public-key (recommended) the agent logs in with the key\n"
	  "pair bvault-agent keygen made (bvault-agent --key FILE): the\n"
	  "store keeps only FILE.pub's public key, nothing that lets anyone\n"
	  "who reads the store log in as the agent; nothing secret is\n"
	  "printed. Without it, the agent gets a random secret, which the\n"
	  "store keeps too, printed once as hex: give it to bvault-agent\n"
	  "(--secret-file). With --secret-file it writes the secret to FILE\n"
	  "instead, a new file (never one that exists) of mode 0600. The\n"
	  "secret is not shown again.\n",
	  CMD_CHANGES },
	{ "agent", "ls", cmd_agent_ls,
	  "usage: bvault agent ls STORE [--json]\n"
	  "Lists agents: name, kind (key: logs in with an Ed25519 key,\n"
	  "secret: with a secret the store keeps), when made, the groups\n"
	  "they may use.\n" },
	{ "agent", "grant", cmd_agent_grant,
	  "usage: bvault agent grant STORE NAME GROUP [GROUP...]\n"
	  "Lets agent NAME read and write the GROUPs too, with the same key\n"
	  "or secret (a group it has already is no change). A running\n"
	  "bvaultd applies it from the agent's next session on.\n",
	  CMD_CHANGES },
	{ "agent", "revoke", cmd_agent_revoke,
	  "usage: bvault agent revoke STORE NAME GROUP [GROUP...]\n"
	  "Takes the GROUPs away from agent NAME (an error, and no change,\n"
	  "if it lacks one; at least one group must remain: else bvault\n"
	  "agent rm). A running bvaultd refuses the agent's next session\n"
	  "on them.\n",
	  CMD_CHANGES },
	{ "agent", "rm", cmd_agent_rm,
	  "usage: bvault agent rm STORE NAME\n"
	  "Removes agent NAME: bvaultd refuses it from then on.\n",
	  CMD_CHANGES },
	{ NULL, "mkstream", cmd_mkstream,
	  "usage: bvault mkstream IMAGE --replica NAME [--base N] "
	  "[--extents FILE]\n"
	  "                       [--out FILE] [--consistency app|crash]\n"
	  "Writes a bvault change stream of IMAGE (a regular file or block\n"
	  "device whose size is a multiple of 512) to --out or CLI_OUT (never\n"
	  "a terminal). Without --extents the stream is full: all-zero and\n"
	  "hole ranges become zero extents. With --extents, only the listed\n"
	  "extents are sent; FILE ('-': stdin) has lines \"OFFSET LENGTH\" in\n"
	  "bytes, multiples of 512, '#' comments allowed. --base: the RP\n"
	  "the changes start from (0: none; default 0).\n" },
	{ NULL, "ingest", cmd_ingest,
	  "usage: bvault ingest STORE [--rp] [--label L] "
	  "[--format bvault|rbd-diff]\n"
	  "                     [--replica NAME] [--base N] [STREAM...|-]\n"
	  "Applies change streams (files, or stdin with '-' or none) in one\n"
	  "atomic commit; with --rp also makes one recovery point of the\n"
	  "group. All streams must be for replicas of one group. rbd-diff\n"
	  "streams need --replica; the RP takes the diff's to-snapshot name\n"
	  "as label (unless --label), and a diff from snapshot F is based on\n"
	  "the replica's RP labelled F, or on RP N with --base N. A bvault\n"
	  "stream names its replica and base itself (a diff: the identity of\n"
	  "its base version, which must be the replica's latest); --replica\n"
	  "then only checks that it is for that replica.\n",
	  CMD_CHANGES },
	{ "rp", "create", cmd_rp_create,
	  "usage: bvault rp create STORE REPLICA|GROUP [--label L] "
	  "[--consistency app|crash]\n"
	  "Makes a recovery point of the group from every member's committed\n"
	  "head, and prints its number.\n",
	  CMD_CHANGES },
	{ "rp", "ls", cmd_rp_ls,
	  "usage: bvault rp ls STORE [REPLICA|GROUP] [--json]\n"
	  "Lists recovery points, of every group or of one; for a replica,\n"
	  "also its size and version at each (with --json, also the\n"
	  "version's identity: 32 hex digits, null if unknown).\n" },
	{ "rp", "rm", cmd_rp_rm,
	  "usage: bvault rp rm STORE GROUP@RP [--force]\n"
	  "Removes recovery point RP (a number or 'latest') of the group\n"
	  "(a replica name means its group), and the map entries no other\n"
	  "RP, head or view reads, in time proportional to what changed\n"
	  "around it. The group's latest RP, which agents send changes\n"
	  "from, needs --force. A protected RP, or one a view is made from,\n"
	  "is refused, --force or not.\n",
	  CMD_CHANGES },
	{ "rp", "protect", cmd_rp_protect,
	  "usage: bvault rp protect STORE GROUP@RP (--until DATE | --forever)\n"
	  "Puts a retention lock on the RP: nothing removes it (rp rm,\n"
	  "--force, prune, replica rm) before DATE (YYYY-MM-DD or\n"
	  "YYYY-MM-DDTHH:MM[:SS], UTC, or @SECONDS), or ever. A lock can be\n"
	  "extended, never shortened or lifted.\n",
	  CMD_CHANGES },
	{ "policy", "set", cmd_policy_set,
	  "usage: bvault policy set STORE GROUP [--keep-last N] "
	  "[--keep-hourly N]\n"
	  "                         [--keep-daily N] [--keep-weekly N] "
	  "[--keep-monthly N]\n"
	  "                         [--keep-yearly N] [--max-age DAYS]\n"
	  "Sets the group's retention policy, which prune applies (README,\n"
	  "\"Retention\": Proxmox Backup Server's rules, in UTC). At least\n"
	  "one option.\n",
	  CMD_CHANGES },
	{ "policy", "show", cmd_policy_show,
	  "usage: bvault policy show STORE [GROUP] [--json]\n"
	  "Shows the policy of every group, or of one. Opens read-only.\n" },
	{ NULL, "prune", cmd_prune,
	  "usage: bvault prune STORE [GROUP] [--dry-run] [--json]\n"
	  "Applies the retention policy of the group (or of every group that\n"
	  "has one): prints each RP, newest first, as keep or remove with the\n"
	  "rule that decided, and removes those not kept. The latest RP,\n"
	  "protected RPs and RPs a view is made from are always kept.\n"
	  "--dry-run changes nothing (opens the store read-only).\n",
	  CMD_CHANGES },
	{ "view", "create", cmd_view_create,
	  "usage: bvault view create STORE NAME --from REPLICA@RP\n"
	  "Makes view NAME, a writable copy-on-write clone of REPLICA at\n"
	  "recovery point RP (a number or 'latest'). Its writes go to\n"
	  "STORE/views/NAME, never into the RP. Opens the store read-only:\n"
	  "works while bvaultd holds it.\n" },
	{ "view", "ls", cmd_view_ls,
	  "usage: bvault view ls STORE [--json]\n"
	  "Lists views: what they are of, size, bytes written, when made,\n"
	  "whether a process has one open. Opens the store read-only.\n" },
	{ "view", "rm", cmd_view_rm,
	  "usage: bvault view rm STORE NAME\n"
	  "Removes view NAME and everything written into it (refused while\n"
	  "it is open). Opens the store read-only.\n" },
	{ "view", "promote", cmd_view_promote,
	  "usage: bvault view promote STORE NAME (--as REPLICA | --into) "
	  "[--label L]\n"
	  "Makes the view's content (as last flushed) a version of a\n"
	  "replica, with an RP labelled L: --as, a new replica REPLICA\n"
	  "sharing every chunk the view did not write with the RP; --into,\n"
	  "the next version of the replica it came from (an RP of its head\n"
	  "is made first when the head is newer than its latest RP). Only\n"
	  "chunks that differ are stored. While bvaultd holds the store, it\n"
	  "is carried out by bvaultd (through its admin socket). The view\n"
	  "is kept.\n",
	  CMD_CHANGES },
	/* ---- seed sets (cmd_seed.c, storage/SEED.md) ---- */
	{ "seed", "export", cmd_seed_export,
	  "usage: bvault seed export STORE (REPLICA@RP | GROUP@RP) "
	  "--to DIR[,DIR...]\n"
	  "                          [--media-size SIZE] [--medium N] "
	  "[--pack-size SIZE]\n"
	  "                          [--key FILE] [--json]\n"
	  "Writes the RP as a seed set (storage/SEED.md): one folder per\n"
	  "medium, each with its label, the manifest and chunk packs; the\n"
	  "block maps go on the last medium. --media-size bounds each medium;\n"
	  "with several --to folders the export moves to the next when one\n"
	  "is full; with fewer folders than media it writes those and exits\n"
	  "3 naming the next medium: run it again with --medium N and that\n"
	  "medium's folder. Re-running an interrupted export keeps the\n"
	  "complete files and writes the rest. --key FILE (bvault seed\n"
	  "keygen): encrypted and authenticated. --pack-size: bytes per pack\n"
	  "(default 256M, or an eighth of the media size). Opens the store\n"
	  "read-only: works beside a running bvaultd.\n" },
	{ "seed", "verify", cmd_seed_verify,
	  "usage: bvault seed verify DIR... [--key FILE] [--json]\n"
	  "Checks a seed set on its own: every medium there (the error names\n"
	  "a missing one), every file whole, every checksum, tag and chunk\n"
	  "digest right, the manifest authentic (with --key).\n" },
	{ "seed", "import", cmd_seed_import,
	  "usage: bvault seed import STORE DIR... [--key FILE] [--json]\n"
	  "Imports a seed set, its media in any order: checks it as it\n"
	  "reads, stores only the chunks the store lacks, then one commit\n"
	  "makes the replica with the seed's version identity and its RP\n"
	  "(the seed's label and time), and records the set. Importing a set\n"
	  "again changes nothing and says so; a replica that exists with\n"
	  "another history is refused. Any failure leaves the store as it\n"
	  "was.\n",
	  CMD_CHANGES },
	{ "seed", "keygen", cmd_seed_keygen,
	  "usage: bvault seed keygen --out FILE\n"
	  "Writes a new random seed key to FILE (created 0600, never\n"
	  "overwritten), for --key of seed export, verify and import.\n" },
	/* ---- end of seed sets ---- */
	/* ---- tls (cmd_tls.c, tls.h) ---- */
	{ "tls", "init", cmd_tls_init,
	  "usage: bvault tls init STORE [--name HOST[,HOST...]] [--renew]\n"
	  "Makes the key and self-signed certificate bvaultd's TCP listeners\n"
	  "present (STORE/tls/, private to the owner; bvaultd's first start\n"
	  "with --listen makes them too), and prints the certificate's\n"
	  "SHA-256 fingerprint, which agents pin (--fingerprint). The\n"
	  "certificate names this host, localhost and the loopback\n"
	  "addresses, and each --name (for agents that check it with --ca).\n"
	  "--renew replaces an existing pair in one step: restart bvaultd,\n"
	  "and give every agent the new fingerprint.\n" },
	{ "tls", "fingerprint", cmd_tls_fingerprint,
	  "usage: bvault tls fingerprint STORE\n"
	  "Prints the SHA-256 fingerprint of the certificate bvaultd\n"
	  "presents (\"sha256:\" and 64 hex digits; `openssl x509\n"
	  "-fingerprint -sha256` shows the same): what an agent's\n"
	  "--fingerprint pins. Reads only that file.\n" },
	/* ---- end of tls ---- */
	{ NULL, "export", cmd_export,
	  "usage: bvault export STORE REPLICA@RP OUT\n"
	  "Writes the replica at recovery point RP (a number, 'latest', or 0\n"
	  "for the committed head) to OUT: a regular file (created 0600 or\n"
	  "truncated, zeros left as holes), a block device, an NBD URI, or\n"
	  "'-' for standard output (never a terminal). It is bvault restore\n"
	  "without its options.\n" },
	{ NULL, "restore", cmd_restore,
	  "usage: bvault restore STORE REPLICA@RP DEST [--delta] "
	  "[--bandwidth RATE]\n"
	  "Writes the replica at recovery point RP (a number, 'latest', or 0\n"
	  "for the committed head) to DEST: a regular file (created 0600 or\n"
	  "truncated, zeros left as holes), a block device (never truncated;\n"
	  "it must hold the RP), an NBD URI (nbd://HOST[:PORT]/EXPORT,\n"
	  "nbd+unix:///EXPORT?socket=PATH), or '-' for standard output (a\n"
	  "pipe or file, never a terminal; every byte written in order).\n"
	  "--delta: DEST holds an earlier copy (a file, device or NBD export);\n"
	  "each chunk of it is hashed and compared with the RP's digest, and\n"
	  "only the chunks that differ are written (a file of another size\n"
	  "is first set to the RP's size). --bandwidth RATE: at most RATE\n"
	  "bytes written per second (K, M, G suffixes: 50M is 50 MiB/s).\n"
	  "The store is opened read-only. Prints what it wrote and skipped.\n" },
	{ "files", "ls", cmd_files_ls,
	  "usage: bvault files ls STORE REPLICA@RP[:PARTITION] [PATH] [--json]\n"
	  "Lists directory PATH (default: the root) of the guest file system\n"
	  "(ext2/3/4 or NTFS) in the replica at RP, read straight from the\n"
	  "store (no mount, no copy of the disk): type, mode, size, mtime\n"
	  "and name of each entry, or of PATH itself when it is not a\n"
	  "directory. PARTITION is a number (1-based, as in /dev/sda1) of an\n"
	  "MBR or GPT partition; without it, a disk whose only file system\n"
	  "is on one partition, or on the whole disk, uses that. The file\n"
	  "system is parsed by bvault-fsread in a sandbox (tools/FILES.md).\n"
	  "--json: the entries as an array.\n" },
	{ "files", "get", cmd_files_get,
	  "usage: bvault files get STORE REPLICA@RP[:PARTITION] PATH OUT\n"
	  "Writes the bytes of file PATH of the guest file system (as in\n"
	  "files ls; a symlink is followed) to OUT, a new file of mode 0600\n"
	  "(never one that exists; holes stay holes), or to CLI_OUT with '-'\n"
	  "(never a terminal). A directory is refused.\n" },
	{ NULL, "diff", cmd_diff,
	  "usage: bvault diff STORE REPLICA@RP1 REPLICA@RP2 [--out FILE] "
	  "[--base N]\n"
	  "Writes the change stream that turns RP1 into RP2 (RP1 0: a full\n"
	  "stream) to --out or CLI_OUT (never a terminal). The stream names\n"
	  "the identities of both versions, so it applies only where RP1's\n"
	  "version is the latest. --base N renumbers its base RP (not its\n"
	  "base identity).\n" },
	{ NULL, "ls", cmd_ls,
	  "usage: bvault ls STORE [--json]\n"
	  "Lists replicas: group, size, chunk size, head version, latest RP\n"
	  "(with --json, also the head version's identity).\n" },
	{ NULL, "stats", cmd_stats,
	  "usage: bvault stats STORE [GROUP] [--json | --prometheus] [--quick]\n"
	  "Shows logical, ingested, unique and stored bytes, the dedup ratio\n"
	  "(ingested / unique raw), the compression ratio (unique raw /\n"
	  "stored), index size and containers; then, from a walk of the\n"
	  "index (time in proportion to it), what the RPs protect (the\n"
	  "non-zero bytes of every RP), the live chunks (a committed version\n"
	  "names them) and the unreferenced ones, and the ratios of what is\n"
	  "protected to the container files and to the live raw bytes;\n"
	  "then, per group and per replica (of GROUP alone when named): its\n"
	  "logical bytes, RPs, and the bytes unique to it (chunks no other\n"
	  "replica, or no replica outside the group, names: what removing it\n"
	  "gives back). --quick: the counters alone, at once. The README\n"
	  "lists every field. --prometheus: the same in Prometheus's text\n"
	  "format, with the live counters of the bvaultd serving the store\n"
	  "when one runs (for node_exporter's textfile collector).\n" },
	{ NULL, "verify", cmd_verify,
	  "usage: bvault verify STORE [REPLICA@RP | GROUP]... [--jobs N]\n"
	  "       [--read-only] [--json]\n"
	  "Reads everything the store keeps: every container record by\n"
	  "record, every indexed chunk (decoded, its fingerprint checked)\n"
	  "and every map entry, going on past damage, on N reader threads\n"
	  "(default: one per core). With REPLICA@RP or GROUP (every RP of\n"
	  "it), only the chunks those RPs read. Prints a line for each\n"
	  "finding: 'damaged' (container bytes or a chunk, with the file\n"
	  "and offset), 'needed' (a REPLICA@RP byte range that reads damaged\n"
	  "or missing data, naming the chunk), 'unknown' (container bytes no\n"
	  "commit names, kept), 'index' (damaged index entries, or commits\n"
	  "the index lost). A chunk that does not read back is marked bad in\n"
	  "the index: no read serves it and no ingest reuses it, and the\n"
	  "next consistency check of the agent (bvault-agent --compare)\n"
	  "sends it again, which heals every RP that needs it. Marking needs\n"
	  "the store's writer: while bvaultd holds the store, bvaultd runs\n"
	  "verify (and marks); else verify opens the store for writing when\n"
	  "it can. Beside another writer, on read-only media, or with\n"
	  "--read-only it opens read-only, changes nothing, and says what it\n"
	  "did not mark ('not marked: ...'). Exit 0 when intact, 1 when not.\n",
	  CMD_CHANGES },
	{ NULL, "check", cmd_check,
	  "usage: bvault check STORE [--json]\n"
	  "Holds the index against the containers without reading chunk\n"
	  "payloads: each chunk index entry's container exists and its\n"
	  "record header repeats the fingerprint, codec and lengths; each\n"
	  "map entry names a chunk the index holds and no version above its\n"
	  "replica's head (but the one a session is writing); each container\n"
	  "file is below the durable tail, recorded as kept, or reported.\n"
	  "Findings print as verify's. Exit 0 when consistent, 1 when not.\n"
	  "Opens read-only and changes nothing.\n" },
	{ NULL, "recover", cmd_recover,
	  "usage: bvault recover STORE --accept-index-loss\n"
	  "Opens a store whose index lost commits it had made (a damaged\n"
	  "write-ahead log, or index/ restored from an older copy), which\n"
	  "every writing command refuses: from now on the index counts as it\n"
	  "is. The RPs it lost are gone from the index; their container\n"
	  "bytes are kept (bvault stats: unknown). Restoring index/ from a\n"
	  "copy at least as new loses nothing, and is the better way when\n"
	  "there is one.\n",
	  CMD_ALONE },
	{ "index", "backup", cmd_index_backup,
	  "usage: bvault index backup STORE DIR\n"
	  "Copies the whole index, consistent at one moment, into DIR (a new\n"
	  "directory): a RocksDB checkpoint (table files hard-linked when DIR\n"
	  "is on the store's file system, copied otherwise) and backup.info.\n"
	  "Sessions go on meanwhile. Needs the store's writer. The containers\n"
	  "are not copied: back them up beside it.\n",
	  CMD_CHANGES },
	{ "index", "restore", cmd_index_restore,
	  "usage: bvault index restore STORE DIR\n"
	  "Puts the index backup in DIR in place of the store's index, which\n"
	  "is kept as STORE/index.old.N. The store must not be open for\n"
	  "writing (stop bvaultd first). The restored index must open with\n"
	  "the store's containers, else the old one is put back. Commits made\n"
	  "after the backup are not in it; their container bytes are kept.\n",
	  CMD_ALONE },
	{ "index", "rebuild", cmd_index_rebuild,
	  "usage: bvault index rebuild STORE\n"
	  "Rebuilds the whole index (every replica, group, RP, agent, map\n"
	  "entry and chunk location) from the store's journal, which holds\n"
	  "every index write since its last snapshot, when index/ is lost or\n"
	  "damaged. The index it replaces, if any, is kept as\n"
	  "STORE/index.old.N. The store must not be open for writing (stop\n"
	  "bvaultd first).\n",
	  CMD_ALONE },
	{ NULL, "bench", cmd_bench,
	  "usage: bvault bench [--dir DIR] [--size SIZE]\n"
	  "Measures hashing, compression, the engine's container write and\n"
	  "read, index look-ups, and end-to-end ingest and export of a\n"
	  "synthetic 2:1 compressible image of --size (default 1G), each\n"
	  "against a reference figure. Works in a temporary directory under\n"
	  "--dir (default /var/tmp), removed at the end.\n" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The synopsis of a command: its usage text up to the description (the
 * first line, and the lines that continue it, indented). */
static void print_synopsis(FILE *f, const char *usage)
{
	const char *p = usage + strlen("usage: ");

	do {
		const char *nl = strchr(p, '\n');

		fprintf(f, "  %.*s\n", (int)(nl - p), p);
		p = nl + 1;
	} while (*p == ' ');
}

static void top_usage(FILE *f)
{
	fprintf(f, "usage: bvault COMMAND [ARGS...]   (bvault COMMAND --help "
		   "for details)\n\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		print_synopsis(f, commands[i].usage);
	fprintf(f, "  bvault --version\n");
	fprintf(f, "\nSizes take K, M, G, T suffixes (binary). Exit status: 0 "
		   "ok, 1 error, 2 usage error.\n");
}

static void group_usage(FILE *f, const char *group)
{
	fprintf(f, "usage:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (commands[i].group && strcmp(commands[i].group, group) == 0)
			print_synopsis(f, commands[i].usage);
}

const char *cli_name(int argc, char **argv)
{
	static _Thread_local char name[64];

	for (size_t i = 0; argc > 1 && i < NCOMMANDS; i++) {
		const struct command *c = &commands[i];

		if (!c->group && strcmp(c->name, argv[1]) == 0)
			return c->name;
		if (c->group && argc > 2 && strcmp(c->group, argv[1]) == 0 &&
		    strcmp(c->name, argv[2]) == 0) {
			snprintf(name, sizeof name, "%s %s", c->group, c->name);
			return name;
		}
	}
	return NULL;
}

/* Runs command C with the words after its name. The hook for bvaultd's
 * admin socket is here: see cli.h. */
static int run_one(const struct command *c, int argc, char **argv, int how,
		   int all_argc, char **all_argv)
{
	int rc;

	if (how == CLI_DAEMON && !(c->flags & CMD_CHANGES))
		return op_error("bvaultd carries out only the commands that "
				"change the store; run this one with bvault");
	if (how == CLI_DAEMON || !(c->flags & CMD_CHANGES))
		return c->fn(argc, argv);
	/* A copy of the words: a command may reorder its argv. */
	cli_fwd_argv = calloc((size_t)all_argc, sizeof(*cli_fwd_argv));
	if (!cli_fwd_argv)
		return op_error("%s", strerror(ENOMEM));
	memcpy(cli_fwd_argv, all_argv + 1,
	       (size_t)(all_argc - 1) * sizeof(*cli_fwd_argv));
	cli_fwd_argc = all_argc - 1;
	rc = c->fn(argc, argv);
	free(cli_fwd_argv);
	cli_fwd_argv = NULL;
	return rc;
}

/* Runs the command ARGV names (ARGV[0] is the program), as bvault's
 * main does (HOW CLI_LOCAL) or as bvaultd does for a caller of its admin
 * socket (CLI_DAEMON), on the calling thread. Returns the exit status. */
int cli_run(int argc, char **argv, int how)
{
	static _Thread_local char cmdname[64];
	const char *word;
	int group_seen = 0;

	if (how == CLI_DAEMON && !cli_name(argc, argv)) {
		fprintf(CLI_ERR, "bvault: bvaultd carries out only the "
			"commands that change the store\n");
		return EXIT_OP;
	}
	if (argc < 2) {
		fprintf(CLI_ERR, "bvault: missing command\n");
		top_usage(CLI_ERR);
		return EXIT_USAGE;
	}
	word = argv[1];
	if (strcmp(word, "-h") == 0 || strcmp(word, "--help") == 0 ||
	    strcmp(word, "help") == 0) {
		top_usage(CLI_OUT);
		return 0;
	}
	if (strcmp(word, "--version") == 0 || strcmp(word, "version") == 0) {
		fprintf(CLI_OUT, "bvault %s\n", bv_version());
		return 0;
	}
	for (size_t i = 0; i < NCOMMANDS; i++) {
		const struct command *c = &commands[i];

		if (!c->group) {
			if (strcmp(c->name, word) != 0)
				continue;
			g_cmd = c->name;
			g_usage = c->usage;
			return run_one(c, argc - 2, argv + 2, how, argc, argv);
		}
		if (strcmp(c->group, word) != 0)
			continue;
		group_seen = 1;
		if (argc < 3)
			break;
		if (strcmp(argv[2], "-h") == 0 ||
		    strcmp(argv[2], "--help") == 0) {
			group_usage(CLI_OUT, word);
			return 0;
		}
		if (strcmp(c->name, argv[2]) != 0)
			continue;
		snprintf(cmdname, sizeof(cmdname), "%s %s", c->group, c->name);
		g_cmd = cmdname;
		g_usage = c->usage;
		return run_one(c, argc - 3, argv + 3, how, argc, argv);
	}
	if (group_seen) {
		if (argc < 3)
			fprintf(CLI_ERR, "bvault %s: missing subcommand\n", word);
		else
			fprintf(CLI_ERR, "bvault %s: unknown subcommand '%s'\n",
				word, argv[2]);
		group_usage(CLI_ERR, word);
		return EXIT_USAGE;
	}
	fprintf(CLI_ERR, "bvault: unknown command '%s'\n", word);
	top_usage(CLI_ERR);
	return EXIT_USAGE;
}
