/*
 * bvault-fsread: reads one guest file system for `bvault files`, in a
 * sandbox (tools/FILES.md). It is started by the parent with two pipes
 * (FSR_FD_IN, FSR_FD_OUT), no other file descriptor, an empty
 * environment, and the arguments
 *
 *     bvault-fsread ls|get SIZE PATH [--report-sandbox] [--test-syscall]
 *
 * SIZE: the partition's size in bytes; every byte of it comes from the
 * parent on request. The guest file system is hostile input: before
 * looking at it the child gives up what it does not need (sandbox_enter):
 * as root it drops to uid/gid 65534 without supplementary groups, in a
 * network namespace of its own; always it sets no-new-privs, not
 * dumpable, rlimits (address space, no core, no file creation, few
 * files, CPU time) and a seccomp filter that allows reading its request
 * pipe, writing its answer pipe, memory management and exit, and kills
 * the process on any other system call. --report-sandbox sends the
 * Uid/Gid/Seccomp/NoNewPrivs/CapEff lines of /proc/self/status as the
 * child sees them under the filter (for tests); --test-syscall then tries
 * a forbidden call (socket), which must kill the child.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fsread.h"

#if defined(__SANITIZE_ADDRESS__)
#define FSR_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FSR_SANITIZED 1
#endif
#endif
#ifndef FSR_SANITIZED
#define FSR_SANITIZED 0
#endif

#if FSR_SANITIZED
/* LeakSanitizer stops the world with clone and ptrace at exit, which the
 * filter kills: leaks are checked in the parent only. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}
#endif

#define NOBODY 65534
#define AS_LIMIT (1024ull << 20) /* address space: metadata, one frame */
#define CPU_LIMIT 3600           /* seconds: a loop in a parser ends */

uint64_t fsr_size;
static char g_netns[64]; /* the network namespace, for the report */

/* ---- pipes --------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fsr_send(uint32_t type, const void *payload, uint32_t len)
{
	uint8_t h[8];
	int rc;

	if (len > FSR_FRAME_MAX)
		return -EMSGSIZE;
	fsr_put32(h, type);
	fsr_put32(h + 4, len);
	rc = write_all(FSR_FD_OUT, h, sizeof(h));
	if (rc == 0 && len)
		rc = write_all(FSR_FD_OUT, payload, len);
	return rc;
}

int fsr_say(uint32_t type, const char *fmt, ...)
{
	char msg[FSR_MSG_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = (int)sizeof(msg) - 1;
	return fsr_send(type, msg, (uint32_t)n);
}

int fsr_entry(int kind, uint32_t mode, uint64_t size, int64_t mtime,
	      const char *name, size_t name_len, const char *target,
	      size_t target_len)
{
	uint8_t *f;
	size_t len;
	int rc;

	if (name_len == 0 || name_len > FSR_NAME_MAX)
		return 0; /* the parent would refuse it: leave it out */
	if (target_len > FSR_TARGET_MAX)
		target_len = FSR_TARGET_MAX;
	len = FSR_ENTRY_HDR + name_len + target_len;
	f = calloc(1, len);
	if (!f)
		return -ENOMEM;
	f[0] = (uint8_t)kind;
	fsr_put32(f + 4, mode & 07777);
	fsr_put64(f + 8, size);
	fsr_put64(f + 16, (uint64_t)mtime);
	fsr_put32(f + 24, (uint32_t)name_len);
	fsr_put32(f + 28, (uint32_t)target_len);
	memcpy(f + FSR_ENTRY_HDR, name, name_len);
	if (target_len)
		memcpy(f + FSR_ENTRY_HDR + name_len, target, target_len);
	rc = fsr_send(FSR_ENTRY, f, (uint32_t)len);
	free(f);
	return rc;
}

/* ---- the byte source ----------------------------------------------------- */

/* Whole aligned windows of the partition, least recently used replaced:
 * file systems read a block at a time, and each round trip to the parent
 * costs two pipe transfers and, there, a chunk decode. */
#define WIN (256u << 10)
#define NWIN 16

static struct window {
	uint64_t base;
	uint32_t len; /* 0: empty */
	uint64_t used;
	uint8_t *buf;
} g_win[NWIN];
static uint64_t g_clock;

/* One request to the parent: LEN bytes at OFF, into BUF. */
static int fetch(void *buf, uint32_t len, uint64_t off)
{
	uint8_t req[12], h[8];
	uint32_t status, got;
	int rc;

	fsr_put64(req, off);
	fsr_put32(req + 8, len);
	rc = fsr_send(FSR_READ, req, sizeof(req));
	if (rc == 0)
		rc = read_all(FSR_FD_IN, h, sizeof(h));
	if (rc < 0)
		return rc;
	status = fsr_get32(h);
	got = fsr_get32(h + 4);
	if (status != 0)
		return got == 0 ? -EIO : -EPROTO;
	if (got != len)
		return -EPROTO;
	return read_all(FSR_FD_IN, buf, len);
}

int fsr_pread(void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	if (off > fsr_size || len > fsr_size - off)
		return -EIO;
	while (len > 0) {
		uint64_t base = off - off % WIN;
		struct window *w = NULL, *lru = &g_win[0];
		size_t at, n;

		for (int i = 0; i < NWIN; i++) {
			if (g_win[i].len && g_win[i].base == base) {
				w = &g_win[i];
				break;
			}
			if (g_win[i].used < lru->used)
				lru = &g_win[i];
		}
		if (!w) {
			uint64_t wl = fsr_size - base < WIN ? fsr_size - base
							   : WIN;
			int rc;

			w = lru;
			if (!w->buf) {
				w->buf = malloc(WIN);
				if (!w->buf)
					return -ENOMEM;
			}
			w->len = 0;
			rc = fetch(w->buf, (uint32_t)wl, base);
			if (rc < 0)
				return rc;
			w->base = base;
			w->len = (uint32_t)wl;
		}
		w->used = ++g_clock;
		at = (size_t)(off - base);
		n = w->len - at < len ? w->len - at : len;
		memcpy(p, w->buf + at, n);
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- small helpers the readers share -------------------------------------- */

const char *fsr_basename(const char *path, size_t *len)
{
	size_t n = strlen(path);
	const char *b;

	while (n > 1 && path[n - 1] == '/')
		n--;
	b = path + n;
	while (b > path && b[-1] != '/')
		b--;
	*len = (size_t)(path + n - b);
	if (*len == 0 || (*len == 1 && *b == '/')) {
		*len = 1;
		return "/";
	}
	return b;
}

int fsr_dlist_add(struct fsr_dlist *l, const char *name, size_t len,
		  uint64_t ref)
{
	char *copy;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct fsr_dent *v;

		if (l->n >= FSR_DIR_MAX)
			return -EFBIG;
		v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, name, len);
	copy[len] = '\0';
	l->v[l->n++] = (struct fsr_dent){ copy, len, ref };
	return 0;
}

static int dent_cmp(const void *a, const void *b)
{
	const struct fsr_dent *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->name, y->name, n);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* A merge sort of our own: glibc's qsort asks the kernel for the
 * machine's memory (sysinfo) before sorting more than 1 KiB, a call the
 * filter kills. Without the scratch memory, the entries stay in
 * directory order. */
void fsr_dlist_sort(struct fsr_dlist *l)
{
	struct fsr_dent *tmp, *src = l->v, *dst;

	if (l->n < 2)
		return;
	tmp = malloc(l->n * sizeof(*tmp));
	if (!tmp)
		return;
	dst = tmp;
	for (size_t w = 1; w < l->n; w *= 2) {
		for (size_t lo = 0; lo < l->n; lo += 2 * w) {
			size_t mid = lo + w < l->n ? lo + w : l->n;
			size_t hi = lo + 2 * w < l->n ? lo + 2 * w : l->n;
			size_t i = lo, j = mid, k = lo;

			while (i < mid && j < hi)
				dst[k++] = dent_cmp(&src[j], &src[i]) < 0
						   ? src[j++] : src[i++];
			while (i < mid)
				dst[k++] = src[i++];
			while (j < hi)
				dst[k++] = src[j++];
		}
		struct fsr_dent *t = src;

		src = dst;
		dst = t;
	}
	if (src != l->v)
		memcpy(l->v, src, l->n * sizeof(*src));
	free(tmp);
}

void fsr_dlist_free(struct fsr_dlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* ---- the sandbox ---------------------------------------------------------- */

#if defined(__x86_64__)
#define FSR_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FSR_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, \
		       offsetof(struct seccomp_data, nr))
#define LD_ARG(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, \
			   offsetof(struct seccomp_data, args[i]))
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define KILL BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS)

/* The filter: read only from the request pipe (and the status file of a
 * report), write only to the answer pipe (and stderr in sanitizer
 * builds), no executable mappings, the memory calls malloc makes, the
 * clocks, sysinfo, exit; anything else kills the process. The argument checks
 * look at the low 32 bits (file descriptors, protection flags). */
static int seccomp_enter(int status_fd)
{
#ifndef FSR_AUDIT_ARCH
	(void)status_fd;
	return -ENOSYS; /* fail closed on an architecture without a filter */
#else
	int err_fd = FSR_SANITIZED ? 2 : FSR_FD_OUT;
	int rd2 = status_fd >= 0 ? status_fd : FSR_FD_IN;
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FSR_AUDIT_ARCH, 1, 0),
		KILL,
		LD_NR,
		/* read(fd): the request pipe or the status file */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_read, 0, 5),
		LD_ARG(0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FSR_FD_IN, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)rd2, 1, 0),
		KILL,
		ALLOW,
		/* write(fd): the answer pipe, stderr when sanitized */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_write, 0, 5),
		LD_ARG(0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FSR_FD_OUT, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)err_fd, 1, 0),
		KILL,
		ALLOW,
		/* mmap and mprotect: never PROT_EXEC */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 0, 4),
		LD_ARG(2),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
		KILL,
		ALLOW,
		LD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_munmap, 13, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mremap, 12, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_brk, 11, 0),
		/* glibc's qsort asks for the memory size (the libraries
		 * sort too): a count of bytes, harmless */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sysinfo, 10, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 9, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_close, 8, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_futex, 7, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clock_gettime, 6, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_gettimeofday, 5, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getpid, 4, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit, 1, 0),
		KILL,
		ALLOW,
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(f) / sizeof(f[0])),
		.filter = f,
	};

	if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0 &&
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
		return -errno;
	return 0;
#endif
}

static int set_limit(int res, rlim_t v)
{
	struct rlimit rl = { v, v };

	return setrlimit(res, &rl) == 0 ? 0 : -errno;
}

/* Drops privileges and closes the sandbox; *WHY names the step that
 * failed. The readers' set-up runs just before the filter: libraries
 * make what they need (error tables, log handlers) while they still
 * may. */
static int sandbox_enter(int report, int *status_fd, const char **why)
{
	int rc;

	*status_fd = -1;
	*why = "rlimits";
	if ((rc = set_limit(RLIMIT_CORE, 0)) < 0 ||
	    (rc = set_limit(RLIMIT_FSIZE, 0)) < 0 ||
	    (rc = set_limit(RLIMIT_CPU, CPU_LIMIT)) < 0 ||
	    (!FSR_SANITIZED && (rc = set_limit(RLIMIT_AS, AS_LIMIT)) < 0))
		return rc;
	if (geteuid() == 0 || getuid() == 0) {
		uid_t ru, eu, su;
		gid_t rg, eg, sg;

		*why = "a network namespace of its own (unshare)";
		if (unshare(CLONE_NEWNET) != 0)
			return -errno;
		*why = "dropping to uid/gid 65534";
		if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 ||
		    setuid(NOBODY) != 0)
			return -errno;
		if (getresuid(&ru, &eu, &su) != 0 ||
		    getresgid(&rg, &eg, &sg) != 0)
			return -errno;
		if (ru != NOBODY || eu != NOBODY || su != NOBODY ||
		    rg != NOBODY || eg != NOBODY || sg != NOBODY ||
		    setuid(0) == 0)
			return -EPERM;
	}
	if (report) {
		ssize_t n = readlink("/proc/self/ns/net", g_netns,
				     sizeof(g_netns) - 1);

		g_netns[n > 0 ? n : 0] = '\0';
		*why = "opening /proc/self/status for the report";
		*status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
		if (*status_fd < 0)
			return -errno;
	}
	*why = "no-new-privs";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return -errno;
	/* After the report's file: no descriptor beyond the pipes. */
	*why = "rlimits";
	if ((rc = set_limit(RLIMIT_NOFILE, 8)) < 0)
		return rc;
#ifdef BV_HAVE_EXT2FS
	fsr_ext_init();
#endif
#ifdef BV_HAVE_NTFS3G
	fsr_ntfs_init();
#endif
	for (int i = 0; i < NWIN; i++) {
		g_win[i].buf = malloc(WIN);
		if (!g_win[i].buf)
			return -ENOMEM;
	}
	*why = "the seccomp filter";
	return seccomp_enter(*status_fd);
}

/* Sends the lines of /proc/self/status that show the sandbox, read
 * under the filter (the file is made when it is read). */
static int report_sandbox(int fd)
{
	static const char *const keys[] = { "Uid:", "Gid:", "Groups:",
					      "NoNewPrivs:", "Seccomp:",
					      "CapEff:" };
	char buf[8192], out[FSR_MSG_MAX];
	size_t len = 0, o = 0;
	ssize_t n;
	int w;

	while (len < sizeof(buf) - 1 &&
	       (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			size_t kl = strlen(keys[k]);

			if (strncmp(line, keys[k], kl) != 0)
				continue;
			for (char *t = line; *t; t++)
				if (*t == '\t')
					*t = ' ';
			w = snprintf(out + o, sizeof(out) - o, "%s%s",
				     o ? "; " : "", line);
			if (w > 0 && (size_t)w < sizeof(out) - o)
				o += (size_t)w;
		}
	}
	w = snprintf(out + o, sizeof(out) - o, "; NetNs: %s", g_netns);
	if (w > 0 && (size_t)w < sizeof(out) - o)
		o += (size_t)w;
	return fsr_send(FSR_SANDBOX, out, (uint32_t)o);
}

/* ---- what file system is it ----------------------------------------------- */

static int run(int mode, const char *path)
{
	uint8_t b[4096];
	size_t n = fsr_size < sizeof(b) ? (size_t)fsr_size : sizeof(b);
	int rc = fsr_pread(b, n, 0);

	if (rc < 0) {
		if (rc == -EPIPE)
			return rc;
		return fsr_say(FSR_ERROR, "cannot read its first %zu bytes: %s",
			       n, strerror(-rc));
	}
	if (n >= 1082 && b[1080] == 0x53 && b[1081] == 0xef) {
#ifdef BV_HAVE_EXT2FS
		return fsr_ext_run(mode, path);
#else
		return fsr_say(FSR_ERROR, "an ext2/3/4 file system, but this "
			       "bvault-fsread was built without libext2fs "
			       "(install libext2fs-dev and rebuild)");
#endif
	}
	if (n >= 11 && memcmp(b + 3, "NTFS    ", 8) == 0) {
#ifdef BV_HAVE_NTFS3G
		return fsr_ntfs_run(mode, path);
#else
		return fsr_say(FSR_ERROR, "an NTFS file system, but this "
			       "bvault-fsread was built without libntfs-3g "
			       "(install ntfs-3g-dev and rebuild)");
#endif
	}
	return fsr_say(FSR_ERROR, "no ext2/3/4 or NTFS file system (no ext "
		       "superblock magic at byte 1080, no NTFS boot sector "
		       "at byte 0)");
}

int main(int argc, char **argv)
{
	int mode, report = 0, test_syscall = 0, status_fd = -1, rc;
	const char *why = "";
	char *end;

	if (argc < 4)
		return 2;
	if (strcmp(argv[1], "ls") == 0)
		mode = FSR_MODE_LS;
	else if (strcmp(argv[1], "get") == 0)
		mode = FSR_MODE_GET;
	else
		return 2;
	errno = 0;
	fsr_size = strtoull(argv[2], &end, 10);
	if (errno || *end || end == argv[2])
		return 2;
	for (int i = 4; i < argc; i++) {
		if (strcmp(argv[i], "--report-sandbox") == 0)
			report = 1;
		else if (strcmp(argv[i], "--test-syscall") == 0)
			test_syscall = 1;
		else
			return 2;
	}
	rc = sandbox_enter(report, &status_fd, &why);
	if (rc < 0) {
		fsr_say(FSR_ERROR, "the file-system reader cannot enter its "
			"sandbox: %s: %s", why, strerror(-rc));
		return 1;
	}
	if (report && report_sandbox(status_fd) < 0)
		return 1;
	if (test_syscall) {
		/* The filter must kill the process here. */
		int s = socket(AF_INET, SOCK_STREAM, 0);

		fsr_say(FSR_ERROR, "socket() was not stopped by the sandbox "
			"(%d)", s);
		return 1;
	}
	rc = run(mode, argv[3]);
	return rc < 0 ? 1 : 0;
}
