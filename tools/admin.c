/*
 * admin.c: bvaultd's admin socket (admin.h; tools/PROTOCOL.md, "Admin
 * socket"): the client side that bvault's open_store() calls for a
 * command that changes the store, and the server side bvaultd starts.
 *
 * Server threads: one accepts; each accepted connection gets a thread of
 * its own, at most ADMIN_MAX_RUNNING at once (the acceptor takes no new
 * connection while that many run, so later callers wait in the listen
 * backlog), so a long command (an ingest, later GC) never keeps an
 * `agent add` waiting. A command thread unshares its file-system context
 * (CLONE_FS: working directory and umask become its own), enters the
 * caller's directory and umask, and runs cli_run() with CLI_OUT, CLI_ERR
 * and CLI_IN_FD set to the caller's descriptors and cli_held to
 * bvaultd's store. Nothing a command does is process-wide: output and
 * the held store are per thread (cli.h), the engine is thread-safe
 * beside the ingest sessions (bvault.h, "Threads"), and bvaultd ignores
 * SIGPIPE, so a caller that went away fails the command's output only.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin.h"
#include "cli.h"

/* ---- framing (both sides) ---------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put_hdr(uint8_t *h, uint8_t type, uint32_t len)
{
	put32(h, len);
	h[4] = type;
	h[5] = ADMIN_VERSION;
	h[6] = 0;
	h[7] = 0;
}

/* Writes all of P; 0 or -errno. */
static int send_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly LEN bytes; 0, -ENODATA when the stream ends first, or
 * -errno (-EAGAIN: the receive timeout passed). */
static int recv_all(int fd, void *p, size_t len)
{
	uint8_t *b = p;

	while (len) {
		ssize_t n = recv(fd, b, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The address of STORE/admin.sock. A path too long for sun_path is
 * reached through an O_PATH descriptor of STORE (*DIRFD, to close). */
static int sock_addr(const char *store, struct sockaddr_un *sa, int *dirfd)
{
	size_t room = sizeof sa->sun_path;

	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	*dirfd = -1;
	if ((size_t)snprintf(sa->sun_path, room, "%s/%s", store,
			     ADMIN_SOCK) < room)
		return 0;
	*dirfd = open(store, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		return -errno;
	snprintf(sa->sun_path, room, "/proc/self/fd/%d/%s", *dirfd,
		 ADMIN_SOCK);
	return 0;
}

/* ---- the client side ------------------------------------------------------ */

/* A connected socket to STORE's bvaultd, or -1 when none answers. Any
 * failure to connect (no socket: ENOENT; a stale one: ECONNREFUSED; a
 * path that is not a store) means "run here": the store's own open then
 * says what is wrong, exactly as without bvaultd. */
static int admin_connect(const char *store)
{
	struct sockaddr_un sa;
	int dirfd, fd = -1;

	if (sock_addr(store, &sa, &dirfd) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		fd = -1;
	}
	if (dirfd >= 0)
		close(dirfd);
	return fd;
}

int admin_running(const char *store)
{
	int fd = admin_connect(store);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* The request: header, umask, argc, then each word as u16 length and
 * bytes. Returns its length, or 0 when the words exceed the limits. */
static size_t build_request(uint8_t *buf, int argc, char **argv)
{
	mode_t mask = umask(077); /* bvault is one thread: read it back */
	size_t off = ADMIN_HDR;

	umask(mask);
	if (argc < 1 || argc > ADMIN_MAX_ARGS)
		return 0;
	put32(buf + off, (uint32_t)mask);
	off += 4;
	buf[off++] = (uint8_t)argc;
	buf[off++] = (uint8_t)(argc >> 8);
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);

		if (n > ADMIN_MAX_ARG || off + 2 + n > ADMIN_HDR +
		    ADMIN_MAX_PAYLOAD)
			return 0;
		buf[off++] = (uint8_t)n;
		buf[off++] = (uint8_t)(n >> 8);
		memcpy(buf + off, argv[i], n);
		off += n;
	}
	put_hdr(buf, ADMIN_RUN, (uint32_t)(off - ADMIN_HDR));
	return off;
}

/* Sends the request with the descriptors: the working directory (an
 * O_PATH descriptor), stdin, stdout, stderr (a closed one replaced by
 * /dev/null, as a command would find it). */
static int send_request(int fd, const uint8_t *buf, size_t len)
{
	int fds[ADMIN_NFDS] = { -1, -1, -1, -1 }, rc = 0;
	union {
		char b[CMSG_SPACE(sizeof fds)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cm.b,
			     .msg_controllen = sizeof cm.b };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	int made[ADMIN_NFDS] = { 1, 0, 0, 0 };
	ssize_t n;

	fds[0] = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fds[0] < 0) {
		rc = -errno;
		goto out;
	}
	for (int i = 1; i < ADMIN_NFDS; i++) {
		fds[i] = i - 1;
		if (fcntl(fds[i], F_GETFD) >= 0)
			continue;
		fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fds[i] < 0) {
			rc = -errno;
			goto out;
		}
		made[i] = 1;
	}
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof fds);
	memcpy(CMSG_DATA(c), fds, sizeof fds);
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		rc = -errno;
	else if ((size_t)n < len)
		rc = send_all(fd, buf + n, len - (size_t)n);
out:
	for (int i = 0; i < ADMIN_NFDS; i++)
		if (made[i] && fds[i] >= 0)
			close(fds[i]);
	return rc;
}

/* Waits for the answer: the exit status, or after a refusal its reason
 * (status 1). */
static int read_answer(int fd)
{
	uint8_t h[ADMIN_HDR], msg[ADMIN_MAX_MSG + 1];
	uint32_t len;
	int rc = recv_all(fd, h, sizeof h);

	if (rc == -ENODATA || rc == -ECONNRESET)
		return op_error("bvaultd ended before the command finished");
	if (rc < 0)
		return op_error("bvaultd's admin socket: %s", strerror(-rc));
	len = get32(h);
	if (h[5] != ADMIN_VERSION || h[6] || h[7] ||
	    (h[4] == ADMIN_EXIT && len != 1) ||
	    (h[4] == ADMIN_REFUSED && len > ADMIN_MAX_MSG) ||
	    (h[4] != ADMIN_EXIT && h[4] != ADMIN_REFUSED))
		return op_error("bvaultd's admin socket: a malformed answer "
				"(type 0x%02x, version %u, length %u)", h[4],
				h[5], len);
	rc = recv_all(fd, msg, len);
	if (rc == -ENODATA || rc == -ECONNRESET)
		return op_error("bvaultd ended before the command finished");
	if (rc < 0)
		return op_error("bvaultd's admin socket: %s", strerror(-rc));
	if (h[4] == ADMIN_EXIT)
		return msg[0];
	msg[len] = 0;
	for (uint32_t i = 0; i < len; i++)
		if (msg[i] < 0x20 || msg[i] == 0x7f)
			msg[i] = '?';
	return op_error("%s", (char *)msg);
}

int admin_counters(const char *store, char *buf, size_t cap)
{
	uint8_t h[ADMIN_HDR];
	uint32_t len;
	int fd, rc = -2;

	if (cap < ADMIN_MAX_MSG + 1)
		return -2;
	buf[0] = 0;
	fd = admin_connect(store);
	if (fd < 0)
		return -1;
	/* A collector must not hang on a stuck daemon. */
	struct timeval tv = { ADMIN_REQ_TIMEOUT, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	put_hdr(h, ADMIN_COUNTERS, 0);
	/* A bvaultd that refuses the caller (another uid) answers before it
	 * reads: its answer is read even when the send failed. */
	(void)send_all(fd, h, sizeof h);
	int r = recv_all(fd, h, sizeof h);
	if (r < 0) {
		snprintf(buf, cap, r == -EAGAIN ? "bvaultd did not answer "
			 "within %d seconds" : "bvaultd ended before it "
			 "answered", ADMIN_REQ_TIMEOUT);
		goto out;
	}
	len = get32(h);
	if (h[5] != ADMIN_VERSION || h[6] || h[7] || len >= cap ||
	    (h[4] != ADMIN_FIGURES && h[4] != ADMIN_REFUSED)) {
		snprintf(buf, cap, "a malformed answer (type 0x%02x, version "
			 "%u, length %u)", h[4], h[5], len);
		goto out;
	}
	if (recv_all(fd, buf, len) < 0) {
		snprintf(buf, cap, "bvaultd ended before it answered");
		goto out;
	}
	buf[len] = 0;
	rc = h[4] == ADMIN_FIGURES ? (int)len : -2;
	/* A refusal is shown to a terminal: no control bytes. */
	for (uint32_t i = 0; rc == -2 && i < len; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
out:
	close(fd);
	return rc;
}

int admin_forward(const char *store, int argc, char **argv)
{
	uint8_t *buf = NULL;
	size_t len;
	int fd, rc;

	fd = admin_connect(store);
	if (fd < 0)
		return -1;
	/* What bvault wrote so far comes before what bvaultd writes. */
	fflush(stdout);
	fflush(stderr);
	buf = malloc(ADMIN_HDR + ADMIN_MAX_PAYLOAD);
	if (!buf) {
		rc = op_error("%s", strerror(ENOMEM));
		goto out;
	}
	len = build_request(buf, argc, argv);
	if (!len) {
		rc = op_error("the command is too long for bvaultd's admin "
			      "socket (at most %d words of %d bytes, %u in "
			      "all)", ADMIN_MAX_ARGS, ADMIN_MAX_ARG,
			      ADMIN_MAX_PAYLOAD);
		goto out;
	}
	rc = send_request(fd, buf, len);
	/* A bvaultd that refused the caller at once closed before reading
	 * the request: its answer says why. */
	if (rc < 0 && rc != -EPIPE && rc != -ECONNRESET)
		rc = op_error("bvaultd's admin socket: %s", strerror(-rc));
	else
		rc = read_answer(fd);
out:
	free(buf);
	close(fd);
	return rc;
}

/* ---- the server side ------------------------------------------------------ */

static struct {
	bv_store *s;
	const char *store;
	admin_log_fn log;
	uid_t uid;
	int lfd, dirfd, stopfd;
	pthread_t acceptor;
	int started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int running, stopping;
	unsigned long next_id;
	admin_counters_fn counters;
} A = { .lfd = -1, .dirfd = -1, .stopfd = -1,
	.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

struct job {
	int fd;
	unsigned long id;
	struct ucred cred;
};

/* Before a refused connection closes: what the caller sent and this
 * side did not read, as far as it is there already (a socket closed
 * with unread bytes resets, and the caller might lose the answer). */
static void drain(int fd)
{
	uint8_t junk[4096];
	size_t total = 0;
	ssize_t n;

	shutdown(fd, SHUT_WR);
	while (total < 2 * ADMIN_MAX_PAYLOAD &&
	       (n = recv(fd, junk, sizeof junk, MSG_DONTWAIT)) > 0)
		total += (size_t)n;
}

__attribute__((format(printf, 2, 3)))
static void refuse(int fd, const char *fmt, ...)
{
	uint8_t buf[ADMIN_HDR + ADMIN_MAX_MSG + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf((char *)buf + ADMIN_HDR, ADMIN_MAX_MSG + 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > ADMIN_MAX_MSG)
		n = ADMIN_MAX_MSG;
	put_hdr(buf, ADMIN_REFUSED, (uint32_t)n);
	send_all(fd, buf, ADMIN_HDR + (size_t)n);
	drain(fd);
}

/* A request: the words (ARGV[1..], ARGV[0] "bvault"; one allocation
 * with their bytes), the umask and the descriptors received. */
struct request {
	int type;            /* ADMIN_RUN or ADMIN_COUNTERS */
	char **argv;
	int argc;
	mode_t mask;
	int fds[ADMIN_NFDS];
	int nfds;
};

/* A connection closed before a byte: admin_running's probe. */
static const char no_request[] = "no request";

/* Takes the descriptors MH carried into RQ (more than ADMIN_NFDS are
 * closed, and make the request bad). */
static const char *take_fds(struct msghdr *mh, struct request *rq)
{
	const char *why = NULL;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c;
	     c = CMSG_NXTHDR(mh, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
			if (rq->nfds < ADMIN_NFDS)
				rq->fds[rq->nfds++] = fd;
			else {
				close(fd);
				why = "more than 4 descriptors";
			}
		}
	}
	if (mh->msg_flags & MSG_CTRUNC)
		why = "more than 4 descriptors";
	return why;
}

/* Parses RUN's payload P (LEN bytes, at most ADMIN_MAX_PAYLOAD) into
 * RQ: every length checked against the limits and what is left. */
static const char *parse_words(const uint8_t *p, uint32_t len,
			       struct request *rq)
{
	uint32_t off = 6, words;
	char *strs;

	if (len < 6)
		return "a RUN shorter than its fixed fields";
	rq->mask = (mode_t)get32(p);
	words = (uint32_t)p[4] | (uint32_t)p[5] << 8;
	if (get32(p) > 0777)
		return "a umask beyond 0777";
	if (words < 1 || words > ADMIN_MAX_ARGS)
		return "no words, or more than 256";
	/* ARGV and the words in one block: the words take at most LEN
	 * bytes with their terminators in place of the lengths. */
	rq->argv = malloc((words + 2) * sizeof(char *) + len + 8);
	if (!rq->argv)
		return "out of memory";
	strs = (char *)(rq->argv + words + 2);
	memcpy(strs, "bvault", 7);
	rq->argv[0] = strs;
	strs += 7;
	for (uint32_t i = 0; i < words; i++) {
		uint32_t n;

		if (len - off < 2)
			return "a word's length beyond the payload";
		n = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8;
		off += 2;
		if (n > ADMIN_MAX_ARG)
			return "a word longer than 4096 bytes";
		if (len - off < n)
			return "a word beyond the payload";
		if (memchr(p + off, 0, n))
			return "a word with a NUL byte";
		memcpy(strs, p + off, n);
		strs[n] = 0;
		rq->argv[i + 1] = strs;
		strs += n + 1;
		off += n;
	}
	if (off != len)
		return "bytes after the last word";
	rq->argv[words + 1] = NULL;
	rq->argc = (int)words + 1;
	return NULL;
}

/* Reads the request of a connection, under its receive timeout, into
 * RQ. NULL when it is good, no_request when the peer closed before a
 * byte, else what is wrong with it (the caller frees RQ->argv and
 * closes RQ->fds in every case). */
static const char *read_request(int fd, struct request *rq)
{
	uint8_t h[ADMIN_HDR], *p = NULL;
	union {
		char b[CMSG_SPACE(sizeof(int) * ADMIN_NFDS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { h, sizeof h };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cm.b,
			     .msg_controllen = sizeof cm.b };
	const char *why = NULL;
	struct stat st;
	uint32_t len;
	ssize_t n;
	int rc;

	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return no_request;
	if (n < 0)
		return errno == EAGAIN ? "no request within 10 seconds"
		       : "the request could not be read";
	why = take_fds(&mh, rq);
	if (!why && (size_t)n < sizeof h &&
	    recv_all(fd, h + n, sizeof h - (size_t)n) < 0)
		why = "a short header";
	len = get32(h);
	if (!why && h[5] != ADMIN_VERSION)
		why = "an admin protocol version this bvaultd does not speak "
		      "(it speaks 1)";
	if (!why && ((h[4] != ADMIN_RUN && h[4] != ADMIN_COUNTERS) || h[6] ||
		     h[7]))
		why = "an unknown type or nonzero reserved bytes";
	rq->type = h[4];
	/* COUNTERS: a header alone, nothing carried. */
	if (!why && h[4] == ADMIN_COUNTERS)
		return len || rq->nfds ? "a COUNTERS request with a payload "
			     "or descriptors" : NULL;
	if (!why && len > ADMIN_MAX_PAYLOAD)
		why = "a payload over 64 KiB";
	if (!why && rq->nfds != ADMIN_NFDS)
		why = "not the 4 descriptors (directory, stdin, stdout, "
		      "stderr)";
	if (!why && (fstat(rq->fds[0], &st) < 0 || !S_ISDIR(st.st_mode)))
		why = "a first descriptor that is not a directory";
	if (!why && !(p = malloc(len ? len : 1)))
		why = "out of memory";
	if (!why && (rc = recv_all(fd, p, len)) < 0)
		why = rc == -EAGAIN ? "no whole request within 10 seconds"
		      : "a payload shorter than its length";
	if (!why)
		why = parse_words(p, len, rq);
	free(p);
	return why;
}

/* Control bytes of a word shown as '?' in the log. */
static void log_word(char *out, size_t room, const char *w)
{
	size_t i = 0;

	for (; w && w[i] && i + 1 < room; i++)
		out[i] = (unsigned char)w[i] < 0x20 || w[i] == 0x7f ? '?'
			 : w[i];
	out[i] = 0;
}

/* Runs RQ's command on this thread with the caller's directory, umask
 * and descriptors (which it takes). Returns the exit status. */
static int run_request(struct job *j, struct request *rq)
{
	FILE *out = NULL, *err = NULL;
	int rc;

	if (unshare(CLONE_FS) < 0 || fchdir(rq->fds[0]) < 0) {
		refuse(j->fd, "bvaultd cannot enter your working directory: "
		       "%s", strerror(errno));
		return -1;
	}
	/* Never looser than bvault's own: RocksDB files this thread may
	 * make are the store's (INVARIANTS.md 8). */
	umask(rq->mask | 077);
	out = fdopen(rq->fds[2], "w");
	if (out)
		rq->fds[2] = -1;
	err = fdopen(rq->fds[3], "w");
	if (err) {
		rq->fds[3] = -1;
		setvbuf(err, NULL, _IONBF, 0); /* as stderr is */
	}
	if (!out || !err) {
		refuse(j->fd, "bvaultd: %s", strerror(errno));
		rc = -1;
		goto out;
	}
	cli_out_f = out;
	cli_err_f = err;
	cli_in_fd = rq->fds[1];
	cli_held = A.s;
	cli_held_path = A.store;
	rc = cli_run(rq->argc, rq->argv, CLI_DAEMON);
	cli_out_f = cli_err_f = NULL;
	cli_in_fd = -1;
	cli_held = NULL;
	cli_held_path = NULL;
out:
	/* A caller that went away fails its output only. */
	if (out)
		fclose(out);
	if (err)
		fclose(err);
	return rc;
}

/* Answers a COUNTERS request; not logged (a collector asks every few
 * seconds). */
static void send_counters(int fd)
{
	uint8_t buf[ADMIN_HDR + ADMIN_MAX_MSG * 4];
	size_t n;

	if (!A.counters) {
		refuse(fd, "this bvaultd keeps no counters");
		return;
	}
	n = A.counters((char *)buf + ADMIN_HDR, sizeof buf - ADMIN_HDR);
	if (n > sizeof buf - ADMIN_HDR)
		n = sizeof buf - ADMIN_HDR;
	put_hdr(buf, ADMIN_FIGURES, (uint32_t)n);
	send_all(fd, buf, ADMIN_HDR + n);
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct request rq = { .fds = { -1, -1, -1, -1 } };
	struct timeval tv = { ADMIN_REQ_TIMEOUT, 0 };
	char w[32] = "";
	const char *why, *name;
	uint8_t ans[ADMIN_HDR + 1];
	int rc;

	setsockopt(j->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	why = read_request(j->fd, &rq);
	if (why == no_request)
		goto out; /* bvault asking whether bvaultd runs */
	if (why) {
		A.log("admin #%lu (pid %d): malformed request refused: %s",
		      j->id, (int)j->cred.pid, why);
		refuse(j->fd, "bvaultd refused a malformed admin request: %s",
		       why);
		goto out;
	}
	if (rq.type == ADMIN_COUNTERS) {
		send_counters(j->fd);
		goto out;
	}
	name = cli_name(rq.argc, rq.argv);
	log_word(w, sizeof w, name ? name : rq.argv[1]);
	A.log("admin #%lu (pid %d): running %s", j->id, (int)j->cred.pid, w);
	rc = run_request(j, &rq);
	if (rc < 0)
		goto out;
	A.log("admin #%lu (pid %d): %s: exit %d", j->id, (int)j->cred.pid, w,
	      rc);
	put_hdr(ans, ADMIN_EXIT, 1);
	ans[ADMIN_HDR] = (uint8_t)rc;
	if (send_all(j->fd, ans, sizeof ans) < 0)
		A.log("admin #%lu (pid %d): the caller went away before its "
		      "exit status", j->id, (int)j->cred.pid);
out:
	for (int i = 0; i < rq.nfds; i++)
		if (rq.fds[i] >= 0)
			close(rq.fds[i]);
	free(rq.argv);
	close(j->fd);
	free(j);
	pthread_mutex_lock(&A.lock);
	A.running--;
	pthread_cond_broadcast(&A.cond);
	pthread_mutex_unlock(&A.lock);
	return NULL;
}

/* Only the store's owner administers it: a peer whose uid is not
 * bvaultd's own (root's included, unless bvaultd runs as root) is
 * refused and logged. */
static int peer_ok(int fd, struct ucred *cr)
{
	socklen_t cl = sizeof *cr;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &cl) < 0) {
		A.log("admin: no peer credentials: %s", strerror(errno));
		refuse(fd, "bvaultd cannot tell who you are: %s",
		       strerror(errno));
		return 0;
	}
	if (cr->uid == A.uid)
		return 1;
	A.log("admin: refused uid %u (pid %d): only uid %u, the store's "
	      "owner, administers it", (unsigned)cr->uid, (int)cr->pid,
	      (unsigned)A.uid);
	refuse(fd, "bvaultd refuses uid %u: only uid %u, which runs it, may "
	       "change store %s", (unsigned)cr->uid, (unsigned)A.uid,
	       A.store);
	return 0;
}

static void start_job(int fd, const struct ucred *cr)
{
	struct job *j = malloc(sizeof *j);
	pthread_attr_t at;
	pthread_t t;
	int e = ENOMEM;

	if (j) {
		j->fd = fd;
		j->cred = *cr;
		j->id = ++A.next_id;
		pthread_mutex_lock(&A.lock);
		A.running++;
		pthread_mutex_unlock(&A.lock);
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		e = pthread_create(&t, &at, job_main, j);
		pthread_attr_destroy(&at);
		if (!e)
			return;
		pthread_mutex_lock(&A.lock);
		A.running--;
		pthread_mutex_unlock(&A.lock);
		free(j);
	}
	A.log("admin: cannot start a command thread: %s", strerror(e));
	refuse(fd, "bvaultd cannot start a command thread: %s", strerror(e));
	close(fd);
}

static void *acceptor_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pf[2] = { { A.lfd, POLLIN, 0 },
					{ A.stopfd, POLLIN, 0 } };
		struct ucred cr;
		int fd;

		pthread_mutex_lock(&A.lock);
		while (A.running >= ADMIN_MAX_RUNNING && !A.stopping)
			pthread_cond_wait(&A.cond, &A.lock);
		pthread_mutex_unlock(&A.lock);
		if (poll(pf, 2, -1) < 0 && errno != EINTR) {
			A.log("admin: poll: %s", strerror(errno));
			break;
		}
		if (pf[1].revents)
			break;
		if (!(pf[0].revents & POLLIN))
			continue;
		fd = accept4(A.lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED &&
			    errno != EAGAIN)
				A.log("admin: accept: %s", strerror(errno));
			if (errno == EMFILE || errno == ENFILE)
				usleep(100000);
			continue;
		}
		if (peer_ok(fd, &cr))
			start_job(fd, &cr);
		else
			close(fd);
	}
	return NULL;
}

void admin_set_counters(admin_counters_fn fn)
{
	A.counters = fn;
}

int admin_start(bv_store *s, const char *store, admin_log_fn log)
{
	struct sockaddr_un sa;
	struct stat st;
	int tmp = -1, rc;

	A.s = s;
	A.store = store;
	A.log = log;
	A.uid = geteuid();
	A.dirfd = open(store, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (A.dirfd < 0)
		goto fail;
	/* bvaultd holds the writer lock: a socket here is an earlier run's. */
	if (fstatat(A.dirfd, ADMIN_SOCK, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "bvaultd: %s/%s: exists and is not a "
				"socket; refusing to replace it\n", store,
				ADMIN_SOCK);
			goto out;
		}
		if (unlinkat(A.dirfd, ADMIN_SOCK, 0) < 0)
			goto fail;
	}
	if ((rc = sock_addr(store, &sa, &tmp)) < 0) {
		errno = -rc;
		goto fail;
	}
	A.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (A.lfd < 0 || bind(A.lfd, (struct sockaddr *)&sa, sizeof sa) < 0)
		goto fail;
	/* bind made it 0700 (umask 077); the store's files are 0600. */
	if (fchmodat(A.dirfd, ADMIN_SOCK, 0600, 0) < 0 || listen(A.lfd, 16))
		goto fail;
	A.stopfd = eventfd(0, EFD_CLOEXEC);
	if (A.stopfd < 0)
		goto fail;
	if ((rc = pthread_create(&A.acceptor, NULL, acceptor_main, NULL))) {
		errno = rc;
		goto fail;
	}
	A.started = 1;
	if (tmp >= 0)
		close(tmp);
	log("admin socket %s/%s (uid %u only)", store, ADMIN_SOCK,
	    (unsigned)A.uid);
	return 0;
fail:
	fprintf(stderr, "bvaultd: admin socket %s/%s: %s\n", store, ADMIN_SOCK,
		strerror(errno));
out:
	if (tmp >= 0)
		close(tmp);
	admin_stop();
	return -1;
}

void admin_stop(void)
{
	uint64_t one = 1;

	if (A.started) {
		pthread_mutex_lock(&A.lock);
		A.stopping = 1;
		pthread_cond_broadcast(&A.cond);
		pthread_mutex_unlock(&A.lock);
		if (write(A.stopfd, &one, sizeof one) != sizeof one)
			A.log("admin: cannot stop the acceptor: %s",
			      strerror(errno));
		pthread_join(A.acceptor, NULL);
		A.started = 0;
		pthread_mutex_lock(&A.lock);
		if (A.running)
			A.log("waiting for %d admin command%s to end",
			      A.running, A.running == 1 ? "" : "s");
		while (A.running)
			pthread_cond_wait(&A.cond, &A.lock);
		pthread_mutex_unlock(&A.lock);
	}
	if (A.lfd >= 0) {
		close(A.lfd);
		A.lfd = -1;
		unlinkat(A.dirfd, ADMIN_SOCK, 0);
	}
	if (A.stopfd >= 0)
		close(A.stopfd);
	A.stopfd = -1;
	if (A.dirfd >= 0)
		close(A.dirfd);
	A.dirfd = -1;
}
