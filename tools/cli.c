/*
 * cli.c: what the bvault commands share (cli.h).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "cli.h"

/* Name of the running command, for messages ("rp ls", "ingest"). */
_Thread_local const char *g_cmd = "";
_Thread_local const char *g_usage = "";
_Thread_local FILE *cli_out_f, *cli_err_f;
_Thread_local bv_store *cli_held;
_Thread_local int cli_in_fd = -1;
_Thread_local const char *cli_held_path;
_Thread_local char **cli_fwd_argv;
_Thread_local int cli_fwd_argc;

/* ---- messages ----------------------------------------------------------- */

__attribute__((format(printf, 1, 2)))
int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(CLI_ERR, "bvault%s%s: ", *g_cmd ? " " : "", g_cmd);
	va_start(ap, fmt);
	vfprintf(CLI_ERR, fmt, ap);
	va_end(ap);
	fprintf(CLI_ERR, "\nTry 'bvault%s%s --help'.\n", *g_cmd ? " " : "",
		g_cmd);
	return EXIT_USAGE;
}

__attribute__((format(printf, 1, 2)))
int op_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(CLI_ERR, "bvault %s: ", g_cmd);
	va_start(ap, fmt);
	vfprintf(CLI_ERR, fmt, ap);
	va_end(ap);
	fputc('\n', CLI_ERR);
	return EXIT_OP;
}

/* The store's message when it has one (it names the object), else the
 * code's. */
const char *store_msg(const bv_store *s, int rc)
{
	const char *m = s ? bv_store_error(s) : NULL;

	return m && *m ? m : bv_strerror(rc);
}

int store_error(const bv_store *s, int rc)
{
	return op_error("%s", store_msg(s, rc));
}

/* ---- argument parsing ------------------------------------------------- */



/*
 * Splits ARGV (the words after the command) into options, per DEFS, and
 * positionals, stored in POS (room for ARGC). Accepts "--opt value",
 * "--opt=value", "-" as a positional and "--" to end options. Returns 0,
 * HELP_SHOWN, or EXIT_USAGE after printing why.
 */
int parse_opts(int argc, char **argv, const struct optdef *defs,
		      char **pos, int *npos)
{
	int only_pos = 0;

	*npos = 0;
	for (int i = 0; i < argc; i++) {
		char *a = argv[i];
		const struct optdef *d;
		size_t nlen;
		char *eq;

		if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
			pos[(*npos)++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(g_usage, CLI_OUT);
			return HELP_SHOWN;
		}
		if (a[1] != '-')
			return usage_error("unknown option '%s'", a);
		eq = strchr(a, '=');
		nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		for (d = defs; d && d->name; d++)
			if (strlen(d->name) == nlen &&
			    strncmp(d->name, a + 2, nlen) == 0)
				break;
		if (!d || !d->name)
			return usage_error("unknown option '%.*s'",
					   (int)nlen + 2, a);
		if (d->kind == OPT_FLAG) {
			if (eq)
				return usage_error("option --%s takes no value",
						   d->name);
			*d->flag = 1;
			continue;
		}
		if (eq) {
			*d->value = eq + 1;
		} else {
			if (i + 1 >= argc)
				return usage_error("option --%s needs a value",
						   d->name);
			*d->value = argv[++i];
		}
	}
	return 0;
}

/* Strict unsigned decimal; NULL on success, else why not. */
const char *parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return "empty number";
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return "not a decimal number";
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return "number too large";
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = v;
	return NULL;
}

/* Size with an optional binary suffix K, M, G, T (also KiB, ...). */
const char *parse_size(const char *s, uint64_t *out)
{
	char digits[32];
	size_t n = strspn(s, "0123456789");
	const char *suf = s + n;
	unsigned shift = 0;
	const char *why;
	uint64_t v;

	if (n == 0)
		return "expected a number with an optional K, M, G or T suffix";
	if (n >= sizeof(digits))
		return "number too large";
	memcpy(digits, s, n);
	digits[n] = '\0';
	why = parse_u64(digits, &v);
	if (why)
		return why;
	if (*suf) {
		switch (toupper((unsigned char)*suf)) {
		case 'K': shift = 10; break;
		case 'M': shift = 20; break;
		case 'G': shift = 30; break;
		case 'T': shift = 40; break;
		default: return "unknown suffix (use K, M, G or T)";
		}
		suf++;
		if (*suf && strcmp(suf, "iB") != 0)
			return "junk after the suffix";
	}
	if (shift && v > (UINT64_MAX >> shift))
		return "size too large";
	*out = v << shift;
	return NULL;
}

int arg_size(const char *opt, const char *s, uint64_t *out)
{
	const char *why = parse_size(s, out);

	return why ? usage_error("bad size '%s' for %s: %s", s, opt, why) : 0;
}

int arg_u64(const char *opt, const char *s, uint64_t *out)
{
	const char *why = parse_u64(s, out);

	return why ? usage_error("bad number '%s' for %s: %s", s, opt, why)
		   : 0;
}

int arg_chunk_size(const char *s, uint32_t *out)
{
	uint64_t v = 0;
	int rc = arg_size("--chunk-size", s, &v);

	if (rc)
		return rc;
	if (v < BV_CHUNK_MIN || v > BV_CHUNK_MAX || (v & (v - 1)))
		return usage_error("bad --chunk-size '%s': must be a power of "
				   "two from 4K to 4M", s);
	*out = (uint32_t)v;
	return 0;
}

int arg_consistency(const char *s, int *out)
{
	if (!s || strcmp(s, "crash") == 0)
		*out = BV_CRASH_CONSISTENT;
	else if (strcmp(s, "app") == 0)
		*out = BV_APP_CONSISTENT;
	else
		return usage_error("bad --consistency '%s': use app or crash",
				   s);
	return 0;
}

const char *check_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return "empty name";
	if (n > BV_NAME_MAX)
		return "name longer than 63 bytes";
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return "names use only A-Z a-z 0-9 . _ -";
	return NULL;
}

int arg_name(const char *what, const char *s)
{
	const char *why = check_name(s);

	return why ? usage_error("bad %s '%s': %s", what, s, why) : 0;
}

/* "REPLICA@RP", RP a number or "latest" (BV_RP_LATEST). NAME has room
 * for BV_NAME_MAX + 1 bytes. */
int arg_replica_rp(const char *s, char *name, uint64_t *rp)
{
	const char *at = strrchr(s, '@');
	const char *why;
	size_t n;

	if (!at)
		return usage_error("bad REPLICA@RP '%s': no '@'", s);
	n = (size_t)(at - s);
	if (n == 0)
		return usage_error("bad REPLICA@RP '%s': no replica name", s);
	if (n > BV_NAME_MAX)
		return usage_error("bad REPLICA@RP '%s': name longer than 63 "
				   "bytes", s);
	memcpy(name, s, n);
	name[n] = '\0';
	why = check_name(name);
	if (why)
		return usage_error("bad REPLICA@RP '%s': %s", s, why);
	if (strcmp(at + 1, "latest") == 0) {
		*rp = BV_RP_LATEST;
		return 0;
	}
	why = parse_u64(at + 1, rp);
	if (why)
		return usage_error("bad REPLICA@RP '%s': RP must be a number "
				   "or 'latest' (%s)", s, why);
	return 0;
}

/* Checks the positional count; names the first missing one. */
int want_pos(int npos, char **pos, int min, int max,
		    const char *const *names)
{
	if (npos < min)
		return usage_error("missing %s", names[npos]);
	if (max >= 0 && npos > max)
		return usage_error("unexpected argument '%s'", pos[max]);
	return 0;
}

/* ---- output helpers ------------------------------------------------- */

/* A JSON string: escapes quotes, backslashes and control bytes; bytes
 * that are not valid UTF-8 become U+FFFD, so the output is valid JSON
 * whatever a label holds. */
void json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		unsigned c = *p;
		int n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1
			: (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
		int good = n >= 0;

		for (int i = 1; good && i <= n; i++)
			good = (p[i] & 0xc0) == 0x80;
		if (good && n == 1 && c < 0xc2)
			good = 0; /* overlong */
		if (good && n == 2 && ((c == 0xe0 && p[1] < 0xa0) ||
				       (c == 0xed && p[1] >= 0xa0)))
			good = 0; /* overlong or surrogate */
		if (good && n == 3 && ((c == 0xf0 && p[1] < 0x90) ||
				       c > 0xf4 || (c == 0xf4 && p[1] >= 0x90)))
			good = 0;
		if (!good) {
			fputs("\\ufffd", f);
			p++;
			continue;
		}
		if (n > 0) {
			fwrite(p, 1, (size_t)n + 1, f);
			p += n + 1;
			continue;
		}
		switch (c) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(f, "\\u%04x", c);
			else
				fputc((int)c, f);
		}
		p++;
	}
	fputc('"', f);
}

/* Text output: control bytes of labels shown as '?'. */
void text_str(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, f);
}

/* ---- progress ------------------------------------------------------- */


void progress_init(struct progress *p, const char *what)
{
	progress_start(p, what, CLI_ERR);
}

/* ---- store helpers ---------------------------------------------------- */

/* bvaultd runs a command for a caller of its admin socket, who reached
 * it through PATH/admin.sock: PATH is the held store's directory (a
 * caller that swapped it meanwhile is refused). */
static int held_store(const char *path, bv_store **out)
{
	struct stat a, b;

	if (cli_held_path && (stat(path, &a) < 0 ||
			      stat(cli_held_path, &b) < 0 ||
			      a.st_dev != b.st_dev || a.st_ino != b.st_ino))
		return op_error("%s is not the store this bvaultd serves (%s)",
				path, cli_held_path);
	*out = cli_held;
	return 0;
}

/* Opens the store for a command. READING: a command that only reads
 * opens it read-only, whether or not another process writes it: it takes
 * no lock (so it never keeps bvaultd or an ingest from opening the store
 * for writing, however long it runs), creates and changes nothing in the
 * store (so it works on a read-only mount and for a user who may only
 * read the store), and sees the store as it was at this moment. */
void cli_try_forward(const char *path)
{
	int rc;

	if (cli_held || !cli_fwd_argv)
		return;
	rc = admin_forward(path, cli_fwd_argc, cli_fwd_argv);
	if (rc >= 0) {
		/* bvaultd ran it: bvault ends as the command did. */
		fflush(stdout);
		fflush(stderr);
		exit(rc);
	}
}

int open_store_how(const char *path, int reading, bv_store **out)
{
	bv_open_opts o = { .workers = 0, .read_only = reading };
	bv_store *s = NULL;
	int rc;

	if (cli_held)
		return held_store(path, out);
	if (!reading)
		cli_try_forward(path);
	rc = bv_store_open(path, &o, &s);

	if (rc < 0) {
		op_error("%s", s ? store_msg(s, rc) : bv_strerror(rc));
		bv_store_close(s);
		return EXIT_OP;
	}
	*out = s;
	return 0;
}

void close_store(bv_store *s)
{
	if (s && s != cli_held)
		bv_store_close(s);
}

int open_store(const char *path, bv_store **out)
{
	return open_store_how(path, 0, out);
}

int open_store_reading(const char *path, bv_store **out)
{
	return open_store_how(path, 1, out);
}

/* Opens an output for a binary stream: PATH, or stdout when NULL (never a
 * terminal). Sets *CREATED when a file was made, to unlink on failure. */
int open_stream_out(const char *path, int *fd, int *created)
{
	*created = 0;
	if (!path || strcmp(path, "-") == 0) {
		if (isatty(fileno(CLI_OUT)))
			return op_error("refusing to write a binary stream to "
					"a terminal; use --out FILE or a "
					"redirect");
		*fd = fileno(CLI_OUT);
		return 0;
	}
	*fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (*fd < 0)
		return op_error("%s: %s", path, strerror(errno));
	*created = 1;
	return 0;
}

void fmt_time(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) ||
	    !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%" PRId64, t);
}

/* A version identity in JSON: 32 hex digits, or null when unknown. */
void json_id(FILE *f, const uint8_t id[BV_ID_SIZE])
{
	int known = 0;

	for (int i = 0; i < BV_ID_SIZE; i++)
		known |= id[i];
	if (!known) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (int i = 0; i < BV_ID_SIZE; i++)
		fprintf(f, "%02x", id[i]);
	fputc('"', f);
}
