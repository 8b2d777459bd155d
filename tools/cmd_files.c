/*
 * cmd_files.c: bvault files ls|get, single files out of an RP (item-level
 * recovery), read straight from the store: no mount, no root, no copy of
 * the disk.
 *
 * This process (the parent) holds the store, read-only, and one reader of
 * REPLICA@RP; it finds the partition (part.c) and starts bvault-fsread,
 * which parses the guest file system in a sandbox and asks for the
 * partition's bytes over a pipe (tools/FILES.md). The child is as
 * untrusted as the file system it reads: every frame it sends is checked
 * (type, length, fields), its reads are bounded to the partition, and
 * whatever becomes of it (an error, a crash, a kill, a broken frame) ends
 * in a message naming the partition, with nothing left behind (a partly
 * written OUT is removed).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bvault.h"
#include "cli.h"
#include "fsproto.h"
#include "part.h"

#if defined(__SANITIZE_ADDRESS__)
#define FILES_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FILES_SANITIZED 1
#endif
#endif
#ifndef FILES_SANITIZED
#define FILES_SANITIZED 0
#endif

/* Silence from the child this long (it waits for nothing but us) means
 * it hangs: it is killed. */
#define CHILD_TIMEOUT_MS (300 * 1000)

/* Set by SIGINT, SIGTERM and SIGHUP while a child runs: the command
 * stops it and removes what it wrote, instead of dying with a partial
 * OUT. */
static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
	g_stop = sig;
}

struct target {
	char replica[BV_NAME_MAX + 1];
	uint64_t rp;
	char rp_text[32];  /* as the user wrote it, for messages */
	int has_part;
	unsigned part;
};

/* "REPLICA@RP[:PARTITION]". */
static int parse_target(const char *s, struct target *t)
{
	char buf[BV_NAME_MAX + 64];
	const char *at = strrchr(s, '@');
	const char *colon = at ? strchr(at, ':') : NULL;
	size_t n = colon ? (size_t)(colon - s) : strlen(s);
	uint64_t v;
	const char *why;
	int rc;

	memset(t, 0, sizeof(*t));
	if (n >= sizeof(buf))
		return usage_error("bad REPLICA@RP[:PARTITION] '%s': too long",
				   s);
	memcpy(buf, s, n);
	buf[n] = '\0';
	rc = arg_replica_rp(buf, t->replica, &t->rp);
	if (rc)
		return rc;
	snprintf(t->rp_text, sizeof(t->rp_text), "%s", strrchr(buf, '@') + 1);
	if (!colon)
		return 0;
	why = parse_u64(colon + 1, &v);
	if (!why && (v == 0 || v > PART_MAX))
		why = "partitions are numbered from 1, as in /dev/sda1";
	if (why)
		return usage_error("bad partition '%s' in '%s': %s", colon + 1,
				   s, why);
	t->has_part = 1;
	t->part = (unsigned)v;
	return 0;
}

/* ---- the disk and its partitions ---------------------------------------- */

static int disk_read(void *ud, void *buf, size_t len, uint64_t off)
{
	bv_reader *r = ud;
	uint64_t size = bv_reader_size(r);

	if (off > size || len > size - off)
		return BV_ERANGE;
	return bv_reader_pread(r, buf, len, off);
}

static void part_line(FILE *f, const struct part *p)
{
	char sz[32];

	human(sz, sizeof(sz), (double)p->len);
	fprintf(f, "  %3u  %-20s %10s  %s", p->num,
		p->bad ? "(unreadable)" : part_fs_name(p->fs),
		p->bad ? "-" : sz, p->type);
	if (p->name[0]) {
		fputs("  \"", f);
		text_str(f, p->name);
		fputc('"', f);
	}
	if (p->bad)
		fprintf(f, "  (%s)", p->bad);
	fputc('\n', f);
}

static const char *scheme_name(int scheme)
{
	return scheme == PART_GPT ? "GPT" : scheme == PART_MBR ? "MBR" : "";
}

/* Picks the partition T names (or the only one with a file system, or
 * the whole disk when there is no table); sets LABEL for messages. */
static int pick_part(bv_reader *r, const struct target *t, uint64_t *start,
		     uint64_t *len, char *label, size_t llen)
{
	struct part_table pt;
	const struct part *use = NULL;
	char err[256] = "";
	unsigned nfs = 0;
	int rc = EXIT_OP;

	if (part_scan(disk_read, r, bv_reader_size(r), &pt, err,
		      sizeof(err)) < 0) {
		op_error("%s@%s: %s", t->replica, t->rp_text, err);
		goto cleanup;
	}
	if (pt.note[0])
		fprintf(stderr, "bvault %s: warning: %s@%s: %s\n", g_cmd,
			t->replica, t->rp_text, pt.note);
	if (pt.scheme == PART_NONE) {
		if (t->has_part) {
			op_error("%s@%s partition %u: the disk has no partition "
				 "table (a whole-disk file system, or none): "
				 "leave out ':%u'", t->replica, t->rp_text,
				 t->part, t->part);
			goto cleanup;
		}
		*start = 0;
		*len = bv_reader_size(r);
		snprintf(label, llen, "%s@%s (whole disk)", t->replica,
			 t->rp_text);
		rc = 0;
		goto cleanup;
	}
	for (unsigned i = 0; i < pt.n; i++) {
		if (t->has_part && pt.p[i].num == t->part)
			use = &pt.p[i];
		if (!t->has_part && pt.p[i].fs != PART_FS_NONE) {
			nfs++;
			use = &pt.p[i];
		}
	}
	if (!t->has_part && nfs == 0 && pt.n == 1)
		use = &pt.p[0];
	if (t->has_part && !use) {
		op_error("%s@%s partition %u: no such partition; the %s "
			 "holds:", t->replica, t->rp_text, t->part,
			 scheme_name(pt.scheme));
		for (unsigned i = 0; i < pt.n; i++)
			part_line(stderr, &pt.p[i]);
		goto cleanup;
	}
	if (!t->has_part && pt.n == 0) {
		op_error("%s@%s: the %s holds no partition", t->replica,
			 t->rp_text, scheme_name(pt.scheme));
		goto cleanup;
	}
	if (!t->has_part && nfs != 1 && !use) {
		op_error("%s@%s: no partition holds an ext2/3/4 or NTFS file "
			 "system; the %s holds:", t->replica, t->rp_text,
			 scheme_name(pt.scheme));
		for (unsigned i = 0; i < pt.n; i++)
			part_line(stderr, &pt.p[i]);
		goto cleanup;
	}
	if (!t->has_part && nfs > 1) {
		op_error("%s@%s: %u partitions hold a file system; name one "
			 "as %s@%s:N:", t->replica, t->rp_text, nfs,
			 t->replica, t->rp_text);
		for (unsigned i = 0; i < pt.n; i++)
			part_line(stderr, &pt.p[i]);
		goto cleanup;
	}
	snprintf(label, llen, "%s@%s partition %u", t->replica, t->rp_text,
		 use->num);
	if (use->bad) {
		op_error("%s: cannot be read: %s", label, use->bad);
		goto cleanup;
	}
	*start = use->start;
	*len = use->len;
	rc = 0;
cleanup:
	part_table_free(&pt);
	return rc;
}

/* ---- the child ------------------------------------------------------------- */

/* The reader: $BVAULT_FSREAD, else beside this executable (the build
 * tree), else where it is installed. */
static int find_reader(char *out, size_t len)
{
	const char *env = getenv("BVAULT_FSREAD");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		if (access(env, X_OK) != 0)
			return op_error("BVAULT_FSREAD=%s: %s", env,
					strerror(errno));
		snprintf(out, len, "%s", env);
		return 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash;

		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			slash[1] = '\0';
			if ((size_t)snprintf(out, len, "%sbvault-fsread",
					     self) < len &&
			    access(out, X_OK) == 0)
				return 0;
		}
	}
#ifdef BV_HAVE_FSREAD
	if (access(BV_FSREAD_PATH, X_OK) == 0) {
		snprintf(out, len, "%s", BV_FSREAD_PATH);
		return 0;
	}
	return op_error("the file-system reader bvault-fsread is missing (not "
			"beside bvault, not at %s): reinstall bvault",
			BV_FSREAD_PATH);
#else
	return op_error("bvault was built without a file-system reader: "
			"install libext2fs-dev and/or ntfs-3g-dev and rebuild "
			"(meson finds them)");
#endif
}

struct session {
	const char *label;
	int mode; /* 0 ls, 1 get */
	bv_store *st;
	bv_reader *r;
	uint64_t start, len;
	pid_t pid;
	int to, from;
	uint8_t *frame, *data;
	char fstype[32];
	char error[FSR_MSG_MAX + 1];
	char broken[200];   /* how the child broke the protocol */
	char readerr[512];  /* the store's message for a failed read */
	int done, failed;
	/* ls */
	int json;
	unsigned entries;
	/* get */
	const char *out;
	int outfd, created, regular, got_file;
	uint64_t fsize, fdone;
};

/* The length of the UTF-8 sequence at P (of N bytes), or 0 when it is
 * not valid UTF-8; *SHOW says whether it is printable (not C0, DEL or
 * C1). */
static size_t utf8_seq(const uint8_t *p, size_t n, int *show)
{
	uint32_t c = p[0];
	size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2
		     : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;

	*show = 0;
	if (len == 0 || len > n)
		return 0;
	if (len > 1) {
		c &= 0x7fu >> len;
		for (size_t i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			c = c << 6 | (p[i] & 0x3fu);
		}
		if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) ||
		    (len == 4 && c < 0x10000) || c > 0x10ffff ||
		    (c >= 0xd800 && c < 0xe000))
			return 0;
	}
	*show = !(c < 0x20 || (c >= 0x7f && c < 0xa0));
	return len;
}

/* The child's text (names, targets, messages) made safe for a terminal:
 * what is not valid, printable UTF-8 becomes '?', so that no byte of a
 * guest file system reaches the terminal as a control sequence. DST has
 * room for MAX + 1 bytes. */
static void clean_text(char *dst, const uint8_t *src, size_t len, size_t max)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o < max;) {
		int show;
		size_t n = utf8_seq(src + i, len - i, &show);

		if (!show || o + n > max) {
			dst[o++] = '?';
			i += n ? n : 1;
			continue;
		}
		memcpy(dst + o, src + i, n);
		o += n;
		i += n;
	}
	dst[o] = '\0';
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR && !g_stop)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* LEN bytes from the child: 0, 1 at a clean end (EOF before the first
 * byte), or -errno (-ETIMEDOUT, -EPIPE for an end inside a frame). */
static int read_child(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, CHILD_TIMEOUT_MS);
		ssize_t n;

		if (g_stop)
			return -EINTR;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (pr == 0)
			return -ETIMEDOUT;
		n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return got == 0 ? 1 : -EPIPE;
		got += (size_t)n;
	}
	return 0;
}

static int spawn(struct session *s, const char *exe, const char *path)
{
	char size[32];
	char *argv[8];
	char *envp[] = { NULL };
	int a[2] = { -1, -1 }, b[2] = { -1, -1 }, argc = 0, rc = -1;
	const char *e;
	pid_t pid;

	snprintf(size, sizeof(size), "%" PRIu64, s->len);
	argv[argc++] = (char *)exe;
	argv[argc++] = s->mode ? "get" : "ls";
	argv[argc++] = size;
	argv[argc++] = (char *)path;
	e = getenv("BVAULT_FILES_REPORT_SANDBOX");
	if (e && *e && strcmp(e, "0") != 0)
		argv[argc++] = "--report-sandbox";
	e = getenv("BVAULT_FILES_TEST_SYSCALL");
	if (e && *e && strcmp(e, "0") != 0)
		argv[argc++] = "--test-syscall";
	argv[argc] = NULL;
	if (pipe2(a, O_CLOEXEC) != 0 || pipe2(b, O_CLOEXEC) != 0) {
		op_error("%s: cannot make a pipe: %s", s->label,
			 strerror(errno));
		goto cleanup;
	}
	pid = fork();
	if (pid < 0) {
		op_error("%s: cannot start the file-system reader: %s",
			 s->label, strerror(errno));
		goto cleanup;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here to execve: the
		 * store's threads are not in this copy of the process. */
		int in = fcntl(a[0], F_DUPFD, 10), out = fcntl(b[1], F_DUPFD, 10);

		if (in < 0 || out < 0 || dup2(in, FSR_FD_IN) < 0 ||
		    dup2(out, FSR_FD_OUT) < 0)
			_exit(127);
		if (close_range(FSR_FD_OUT + 1, ~0u, 0) != 0)
			_exit(127);
		close(0);
		close(1);
		if (!FILES_SANITIZED)
			close(2);
		execve(exe, argv, envp);
		_exit(127);
	}
	s->pid = pid;
	s->to = a[1];
	s->from = b[0];
	a[1] = b[0] = -1;
	rc = 0;
cleanup:
	for (int i = 0; i < 2; i++) {
		if (a[i] >= 0)
			close(a[i]);
		if (b[i] >= 0)
			close(b[i]);
	}
	return rc;
}

static void broke(struct session *s, const char *why)
{
	if (!s->broken[0])
		snprintf(s->broken, sizeof(s->broken), "%s", why);
}

/* A READ: bounded to the partition, answered with its bytes or an errno. */
static int answer_read(struct session *s, const uint8_t *p, uint32_t len)
{
	uint8_t h[8];
	uint64_t off;
	uint32_t n, status = 0;
	int rc;

	if (len != 12) {
		broke(s, "a read request of the wrong length");
		return -1;
	}
	off = fsr_get64(p);
	n = fsr_get32(p + 8);
	if (n == 0 || n > FSR_READ_MAX) {
		broke(s, "a read request of more than 1 MiB");
		return -1;
	}
	if (off > s->len || n > s->len - off) {
		status = ERANGE;
	} else {
		rc = bv_reader_pread(s->r, s->data, n, s->start + off);
		if (rc < 0) {
			status = EIO;
			snprintf(s->readerr, sizeof(s->readerr), "%s",
				 store_msg(s->st, rc));
		}
	}
	fsr_put32(h, status);
	fsr_put32(h + 4, status ? 0 : n);
	rc = write_all(s->to, h, sizeof(h));
	if (rc == 0 && status == 0)
		rc = write_all(s->to, s->data, n);
	return rc == 0 || rc == -EPIPE ? 0 : -1;
}

static const char *kind_word(int kind)
{
	static const char *const w[] = { "?", "file", "dir", "symlink",
					  "char", "block", "fifo", "socket",
					  "other" };

	return kind >= 1 && kind <= FSR_KIND_OTHER ? w[kind] : w[0];
}

static int on_entry(struct session *s, const uint8_t *p, uint32_t len)
{
	uint32_t nlen, tlen, mode;
	int kind = p[0];
	uint64_t size;
	int64_t mtime;
	char name[FSR_NAME_MAX + 1], target[FSR_TARGET_MAX + 1], when[40];

	if (s->mode != 0 || len < FSR_ENTRY_HDR) {
		broke(s, "a directory entry out of place");
		return -1;
	}
	mode = fsr_get32(p + 4);
	size = fsr_get64(p + 8);
	mtime = (int64_t)fsr_get64(p + 16);
	nlen = fsr_get32(p + 24);
	tlen = fsr_get32(p + 28);
	if (kind < 1 || kind > FSR_KIND_OTHER || p[1] || p[2] || p[3] ||
	    mode > 07777 || nlen == 0 || nlen > FSR_NAME_MAX ||
	    tlen > FSR_TARGET_MAX || len != FSR_ENTRY_HDR + nlen + tlen) {
		broke(s, "a malformed directory entry");
		return -1;
	}
	memcpy(name, p + FSR_ENTRY_HDR, nlen);
	name[nlen] = '\0';
	memcpy(target, p + FSR_ENTRY_HDR + nlen, tlen);
	target[tlen] = '\0';
	if (strlen(name) != nlen || strlen(target) != tlen ||
	    (nlen > 1 && memchr(name, '/', nlen))) {
		broke(s, "a directory entry with a NUL or '/' in its name");
		return -1;
	}
	fmt_time(when, sizeof(when), mtime);
	if (s->json) {
		fputs(s->entries ? ",\n  {" : "[\n  {", stdout);
		fputs("\"name\": ", stdout);
		json_str(stdout, name);
		printf(", \"type\": \"%s\", \"size\": %" PRIu64 ", \"mode\": "
		       "%" PRIu32 ", \"mtime\": %" PRId64 ", \"mtime_utc\": "
		       "\"%s\"", kind_word(kind), size, mode, mtime, when);
		if (kind == FSR_KIND_SYMLINK) {
			fputs(", \"target\": ", stdout);
			json_str(stdout, target);
		}
		fputc('}', stdout);
	} else {
		char shown[FSR_NAME_MAX + 1];

		printf("%-7s %04" PRIo32 " %14" PRIu64 "  %s  ",
		       kind_word(kind), mode, size, when);
		clean_text(shown, (const uint8_t *)name, nlen, FSR_NAME_MAX);
		fputs(shown, stdout);
		if (kind == FSR_KIND_DIR)
			fputc('/', stdout);
		if (kind == FSR_KIND_SYMLINK) {
			clean_text(shown, (const uint8_t *)target, tlen,
				   FSR_TARGET_MAX);
			printf(" -> %s", shown);
		}
		fputc('\n', stdout);
	}
	s->entries++;
	return 0;
}

static int on_file(struct session *s, const uint8_t *p, uint32_t len)
{
	struct stat st;

	if (s->mode != 1 || s->got_file || len != 8) {
		broke(s, "a file header out of place");
		return -1;
	}
	s->got_file = 1;
	s->fsize = fsr_get64(p);
	if (strcmp(s->out, "-") == 0) {
		s->outfd = STDOUT_FILENO;
		return 0;
	}
	s->outfd = open(s->out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				       O_CLOEXEC, 0600);
	if (s->outfd < 0) {
		snprintf(s->error, sizeof(s->error), "%s: %s", s->out,
			 strerror(errno));
		s->failed = 1;
		return -1;
	}
	s->created = 1;
	s->regular = fstat(s->outfd, &st) == 0 && S_ISREG(st.st_mode);
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* File bytes: written in order; in a regular OUT, whole zero 4 KiB
 * blocks are left as holes (ftruncate at the end sets the size). */
static int on_data(struct session *s, const uint8_t *p, uint32_t len)
{
	int rc = 0;

	if (s->mode != 1 || !s->got_file || len > s->fsize - s->fdone) {
		broke(s, "file bytes out of place, or more than the file's "
		      "size");
		return -1;
	}
	if (!s->regular) {
		rc = write_all(s->outfd, p, len);
	} else {
		uint32_t at = 0;

		while (rc == 0 && at < len) {
			uint64_t pos = s->fdone + at;
			uint32_t n = 4096 - (uint32_t)(pos % 4096);

			if (n > len - at)
				n = len - at;
			if (!all_zero(p + at, n)) {
				ssize_t w = pwrite(s->outfd, p + at, n,
						   (off_t)pos);

				rc = w == (ssize_t)n ? 0 : w < 0 ? -errno
								 : -EIO;
			}
			at += n;
		}
	}
	if (rc < 0) {
		snprintf(s->error, sizeof(s->error), "%s: %s",
			 strcmp(s->out, "-") == 0 ? "stdout" : s->out,
			 strerror(-rc));
		s->failed = 1;
		return -1;
	}
	s->fdone += len;
	return 0;
}

static int on_done(struct session *s, uint32_t len)
{
	if (len != 0 || (s->mode == 1 && (!s->got_file ||
					  s->fdone != s->fsize))) {
		broke(s, "an end before the whole file");
		return -1;
	}
	if (s->mode == 0 && s->json)
		fputs(s->entries ? "\n]\n" : "[]\n", stdout);
	if (s->mode == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
		snprintf(s->error, sizeof(s->error), "stdout: %s",
			 strerror(errno ? errno : EIO));
		s->failed = 1;
		return -1;
	}
	if (s->mode == 1 && s->regular &&
	    (ftruncate(s->outfd, (off_t)s->fsize) != 0 ||
	     fdatasync(s->outfd) != 0)) {
		snprintf(s->error, sizeof(s->error), "%s: %s", s->out,
			 strerror(errno));
		s->failed = 1;
		return -1;
	}
	s->done = 1;
	return 0;
}

/* Frames until DONE or ERROR, the child's end, or a broken frame. */
static void serve(struct session *s)
{
	for (;;) {
		uint8_t h[8];
		uint32_t type, len;
		int rc = read_child(s->from, h, sizeof(h));

		if (rc == 1)
			return; /* ended: wait_child says how */
		if (rc < 0) {
			broke(s, rc == -ETIMEDOUT ? "no answer for 300 s"
				 : rc == -EINTR ? "" : "an end inside a frame");
			return;
		}
		type = fsr_get32(h);
		len = fsr_get32(h + 4);
		if (len > FSR_FRAME_MAX) {
			broke(s, "a frame longer than 1 MiB");
			return;
		}
		rc = read_child(s->from, s->frame, len);
		if (rc != 0) {
			broke(s, rc == -ETIMEDOUT ? "no answer for 300 s"
				 : rc == -EINTR ? "" : "an end inside a frame");
			return;
		}
		switch (type) {
		case FSR_READ:
			rc = answer_read(s, s->frame, len);
			break;
		case FSR_FSTYPE:
			clean_text(s->fstype, s->frame, len,
				   sizeof(s->fstype) - 1);
			break;
		case FSR_ENTRY:
			rc = on_entry(s, s->frame, len);
			break;
		case FSR_FILE:
			rc = on_file(s, s->frame, len);
			break;
		case FSR_DATA:
			rc = on_data(s, s->frame, len);
			break;
		case FSR_DONE:
			return (void)on_done(s, len);
		case FSR_ERROR:
			clean_text(s->error, s->frame, len, FSR_MSG_MAX);
			s->failed = 1;
			return;
		case FSR_WARN: {
			char w[FSR_MSG_MAX + 1];

			clean_text(w, s->frame, len, FSR_MSG_MAX);
			fprintf(stderr, "bvault %s: warning: %s: %s\n", g_cmd,
				s->label, w);
			break;
		}
		case FSR_SANDBOX: {
			char w[FSR_MSG_MAX + 1];

			clean_text(w, s->frame, len, FSR_MSG_MAX);
			fprintf(stderr, "bvault %s: sandbox: %s\n", g_cmd, w);
			break;
		}
		default:
			broke(s, "a frame of an unknown type");
			return;
		}
		if (rc < 0)
			return;
	}
}

/* Reaps the child: at once when it ended or was told to, killed when it
 * lingers; returns its wait status. */
static int wait_child(struct session *s, int kill_now)
{
	int status = 0;

	if (s->to >= 0)
		close(s->to);
	if (s->from >= 0)
		close(s->from);
	s->to = s->from = -1;
	if (kill_now)
		kill(s->pid, SIGKILL);
	for (int i = 0; i < 500; i++) {
		pid_t w = waitpid(s->pid, &status, WNOHANG);

		if (w == s->pid || (w < 0 && errno != EINTR))
			return status;
		if (w == 0) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
	}
	kill(s->pid, SIGKILL);
	while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

static int report(struct session *s, int status)
{
	const char *fs = s->fstype[0] ? s->fstype : NULL;

	if (g_stop)
		return op_error("%s: interrupted by signal %d (%s); the "
				"file-system reader was stopped%s", s->label,
				(int)g_stop, strsignal((int)g_stop),
				s->created ? " and the partial OUT removed"
					   : "");
	if (s->broken[0])
		return op_error("%s: the file-system reader broke the protocol "
				"(%s) and was stopped%s%s", s->label, s->broken,
				fs ? "; file system: " : "", fs ? fs : "");
	if (s->failed) {
		if (s->readerr[0])
			return op_error("%s: %s (reading the RP: %s)", s->label,
					s->error, s->readerr);
		return op_error("%s: %s", s->label, s->error);
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);

		return op_error("%s: the file-system reader was killed by "
				"signal %d (%s)%s", s->label, sig,
				strsignal(sig),
				sig == SIGSYS ? ": a system call its sandbox "
						"forbids (a crafted file "
						"system?)"
				: sig == SIGXCPU ? ": its CPU time limit"
				: "");
	}
	if (!s->done) {
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

		if (code == 127)
			return op_error("%s: the file-system reader did not "
					"start", s->label);
		return op_error("%s: the file-system reader ended without an "
				"answer (exit status %d)", s->label, code);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return op_error("%s: the file-system reader failed after its "
				"answer (exit status %d)", s->label,
				WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 0;
}

/* Runs the child on PATH of the partition and relays its answer. */
static int run_child(struct session *s, const char *path)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	struct sigaction stop = { .sa_handler = on_stop }, old_stop[3];
	static const int stop_sigs[3] = { SIGINT, SIGTERM, SIGHUP };
	char exe[PATH_MAX];
	int rc, status;

	rc = find_reader(exe, sizeof(exe));
	if (rc)
		return rc;
	s->frame = malloc(FSR_FRAME_MAX);
	s->data = malloc(FSR_READ_MAX);
	if (!s->frame || !s->data) {
		free(s->frame);
		free(s->data);
		return op_error("%s", strerror(ENOMEM));
	}
	sigaction(SIGPIPE, &ign, &old);
	sigemptyset(&stop.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(stop_sigs[i], &stop, &old_stop[i]);
	rc = spawn(s, exe, path);
	if (rc == 0) {
		serve(s);
		status = wait_child(s, s->broken[0] != 0 || g_stop);
		rc = report(s, status);
	} else {
		rc = EXIT_OP;
	}
	for (int i = 0; i < 3; i++)
		sigaction(stop_sigs[i], &old_stop[i], NULL);
	sigaction(SIGPIPE, &old, NULL);
	if (s->outfd >= 0 && s->outfd != STDOUT_FILENO)
		close(s->outfd);
	if (rc && s->created)
		unlink(s->out);
	fflush(stdout);
	free(s->frame);
	free(s->data);
	return rc;
}

/* ---- the commands ------------------------------------------------------- */

static int files_main(int argc, char **argv, int mode)
{
	int json = 0;
	struct optdef defs_ls[] = {
		{ "json", OPT_FLAG, NULL, &json },
		{ NULL, 0, NULL, NULL },
	};
	struct optdef defs_get[] = { { NULL, 0, NULL, NULL } };
	static const char *const names_ls[] = { "STORE",
						"REPLICA@RP[:PARTITION]",
						"PATH" };
	static const char *const names_get[] = { "STORE",
						 "REPLICA@RP[:PARTITION]",
						 "PATH", "OUT" };
	struct session s = { .mode = mode, .to = -1, .from = -1, .outfd = -1,
			     .pid = -1 };
	char label[BV_NAME_MAX + 96];
	struct target t;
	bv_store *st = NULL;
	bv_reader *r = NULL;
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	const char *path;
	struct stat sb;
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, mode ? defs_get : defs_ls, pos, &npos);
	if (!rc)
		rc = mode ? want_pos(npos, pos, 4, 4, names_get)
			  : want_pos(npos, pos, 2, 3, names_ls);
	if (!rc)
		rc = parse_target(pos[1], &t);
	if (rc)
		goto cleanup;
	path = npos > 2 ? pos[2] : "/";
	if (!*path) {
		rc = usage_error("empty PATH (the root is '/')");
		goto cleanup;
	}
	if (mode) {
		s.out = pos[3];
		if (strcmp(s.out, "-") == 0 && isatty(STDOUT_FILENO)) {
			rc = op_error("refusing to write a file to a terminal; "
				      "give OUT or a redirect");
			goto cleanup;
		}
		if (strcmp(s.out, "-") != 0 && lstat(s.out, &sb) == 0) {
			rc = op_error("%s: exists; refusing to overwrite it",
				      s.out);
			goto cleanup;
		}
	}
	rc = open_store_reading(pos[0], &st);
	if (rc)
		goto cleanup;
	rc = bv_reader_open(st, t.replica, t.rp, &r);
	if (rc < 0) {
		rc = store_error(st, rc);
		goto cleanup;
	}
	rc = pick_part(r, &t, &s.start, &s.len, label, sizeof(label));
	if (rc)
		goto cleanup;
	s.label = label;
	s.st = st;
	s.r = r;
	s.json = json;
	rc = run_child(&s, path);
cleanup:
	bv_reader_close(r);
	bv_store_close(st);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

int cmd_files_ls(int argc, char **argv);
int cmd_files_get(int argc, char **argv);

int cmd_files_ls(int argc, char **argv)
{
	return files_main(argc, argv, 0);
}

int cmd_files_get(int argc, char **argv)
{
	return files_main(argc, argv, 1);
}
