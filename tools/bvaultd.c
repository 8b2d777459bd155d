/*
 * bvaultd: the backup server's network front of a store. Host agents
 * (bvault-agent) connect over TCP or a Unix socket, prove who they are and
 * stream changed blocks into ingest sessions (tools/PROTOCOL.md).
 *
 * One thread runs one io_uring event loop for accept, receive and send;
 * no socket call blocks it. Change records (DATA, ZERO, RESIZE) go to one
 * applier thread, which hands them to the engine: the engine hashes and
 * compresses on its worker pool (a worker per core) and writes through
 * io_uring. While the applier works on one buffer of a connection's
 * records, the loop receives the next into the connection's other buffer,
 * so receiving overlaps hashing and compression. A connection has at most
 * two buffers (each at most one frame) and one of them with the applier:
 * when both are full, the loop stops receiving from it, so a slow disk
 * slows every sender through TCP's window, and memory stays bounded.
 * Every other message is handled on the loop, after the records before
 * it were applied (messages take effect in order).
 *
 * An ingest session holds the engine's batch buffers (up to about 120
 * MiB), so at most --max-sessions are open at once, --max-agent-sessions
 * of one agent: a BEGIN beyond that waits, unanswered, until a session
 * ends; the waiting ones are served round-robin by agent (the guard
 * block below). The connection reads nothing more meanwhile. Memory is
 * thus bounded by --max-sessions sessions and --max-connections
 * connections' two buffers (a few hundred bytes before login). Every
 * phase of a connection has a deadline (the guard block).
 *
 * The admin socket, STORE/admin.sock (admin.c; PROTOCOL.md, "Admin
 * socket"): bvault hands every command that changes the store to
 * bvaultd, which runs it on a thread of its own (at most
 * ADMIN_MAX_RUNNING at once) beside the sessions, for its own uid only.
 * Agents and their groups are read from the store at each HELLO and
 * BEGIN, never cached: an agent added there connects at once, and one
 * removed is refused from its next connection or BEGIN (a session it
 * has open runs to its COMMIT or ABORT).
 *
 * SIGTERM or SIGINT: stop accepting, abort every open session (nothing
 * half-committed: the engine's invariant 2), close, wait for the admin
 * commands running to end, exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sodium.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "admin.h"
#include "bvault.h"
#include "cli.h"
#include "proto.h"
#include "session.h"
#include "tls.h"

#define MAX_CONN 64         /* --max-connections, at most */
#define NSLOT (2 * MAX_CONN) /* connections, closing ones included */
#define DEFAULT_AGENT_SESSIONS 4 /* --max-agent-sessions */
#define DEFAULT_AGENT_CONNS 16   /* --max-agent-connections */
#define DEFAULT_LOGIN_TIMEOUT 10 /* seconds */
#define DEFAULT_IDLE_TIMEOUT 300
#define DEFAULT_FRAME_TIMEOUT 60
#define PRELOGIN_FRAME BVS_PRELOGIN_FRAME
#define PRELOGIN_TX (BVP_HDR + 4 + 1024) /* the largest answer before it */
#define TICK_MS 250         /* how often the deadlines are checked */
#define DEFAULT_SESSIONS 16 /* --max-sessions */
#define DEFAULT_SKEW 86400  /* --max-clock-skew, seconds */
#define MAX_LISTEN 4
#define RING_DEPTH 256
#define RX_START (64u << 10)
#define TX_MAX (2u << 20)
#define RPS_MAX 65536u

#define TLS_RX_LOGIN (16u << 10) + 512 /* a record, before login */
#define TLS_RX (256u << 10)            /* ciphertext received at once */
#define TLS_TX (256u << 10)            /* ciphertext sent at once */

/* OP_PUMP: a no-op that makes the loop go on with plaintext a TLS
 * connection already holds, as a receive would. */
enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_SIGNAL, OP_WAKE, OP_TICK,
       OP_PUMP };

/* A connection over TLS (tools/PROTOCOL.md, "TLS"): the loop receives
 * ciphertext into CRX, which IN (a BIO of ours, crx_method) hands to
 * OpenSSL in place, CRX[crx_off, crx_len); SSL_read puts plaintext into
 * the connection's RX, which the rest of bvaultd handles as if it had
 * been received so. No receive goes into CRX before IN gave all of it
 * out. An answer in TX goes through SSL_write into OUT, a memory BIO, and
 * from there, CTX at a time, out. SSL owns both BIOs. */
struct tls_conn {
	SSL *ssl;
	BIO *in, *out;
	size_t crx_off, crx_len;
	int ready;            /* the handshake is done */
	int starved;          /* SSL_read wants ciphertext IN does not have */
	uint8_t binding[BVP_BINDING];
	uint8_t *crx;
	size_t crx_cap;
	uint8_t *ctx;         /* ciphertext being sent: CTX[ctx_off, ctx_len) */
	size_t ctx_len, ctx_off, ctx_cap;
};
enum { CS_HELLO = BVS_HELLO, CS_AUTH = BVS_AUTH, CS_READY = BVS_READY };

struct conn {
	int used;
	int fd;
	uint32_t gen;
	char peer[80];
	int state;
	int refusing;         /* over the limit: ERROR busy after the TLS
			       * handshake, then closed (guard_slot) */
	struct tls_conn *tls; /* NULL: plain (a Unix socket, or --no-tls) */
	uint8_t *rx;          /* the buffer the loop receives into */
	size_t rx_len, rx_cap;
	uint8_t *spare;       /* the other buffer, when the applier has none */
	size_t spare_cap;
	/* Change records handed to the applier: WORK[work_off, work_end). */
	int busy;             /* the applier holds WORK */
	uint8_t *work;
	size_t work_cap, work_off, work_end;
	struct conn *qnext;   /* in the applier's queue or its done list */
	int close_pending;    /* close once the applier gave WORK back */
	char close_why[96];
	uint8_t *tx;
	size_t tx_len, tx_off, tx_cap;
	int recv_armed, send_armed;
	int closing;          /* close once the answer in TX is sent */
	char name[64];
	int known;            /* NAME is an agent of the store */
	bv_agent_info agent;
	uint8_t secret[BV_AGENT_SECRET];
	uint8_t nonce[BVP_NONCE];
	bv_ingest *in;        /* the open session, if any */
	int waiting;          /* its BEGIN waits for a free session */
	struct conn *wnext;   /* next in the line of waiting BEGINs */
	int nslots;
	int failed;           /* the session hit an error: only abort */
	uint16_t fail_code;
	char fail_msg[512];
	uint64_t bytes;       /* data bytes of the session */
	/* Deadlines (guard_tick), CLOCK_MONOTONIC milliseconds. */
	int64_t t_open;       /* accepted */
	int64_t t_active;     /* bytes last received, or an answer sent */
	int64_t t_frame;      /* the unfinished frame at RX's front began */
	int64_t t_send;       /* the answer in TX was queued */
	int64_t t_doom;       /* timed out: closed by then at the latest */
	uint64_t rx_total;    /* bytes ever received */
	uint64_t frame_pos;   /* where in them that frame began */
};

static struct {
	bv_store *s;
	const char *store_path;
	struct io_uring ring;
	int lfd[MAX_LISTEN];
	int ltls[MAX_LISTEN]; /* that listener speaks TLS */
	int nlisten;
	SSL_CTX *tls_ctx;
	int sfd;              /* signalfd */
	struct signalfd_siginfo sig;
	struct conn conns[NSLOT];
	uint32_t next_gen;
	int stopping;
	int max_sessions;
	int64_t max_skew;     /* --max-clock-skew, seconds */
	int max_agent_sessions;
	int max_agent_conns;     /* logged-in connections of one agent */
	int max_conn;
	int64_t login_ms, idle_ms, frame_ms; /* the --*-timeout flags */
	struct __kernel_timespec tick;
	struct conn *wait_head, *wait_tail; /* BEGINs waiting, in order */

	/* The applier: a queue of connections whose WORK is to be applied,
	 * and a list of those done, which the loop hears of through WAKEFD. */
	pthread_t applier;
	int applier_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct conn *queue, *queue_tail, *done;
	int applier_stop;
	int wakefd;
	uint64_t wake_buf;
} D = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
	.wakefd = -1 };

/* ---- live counters ---------------------------------------------------------- */

/* What bvault stats --prometheus reads from a running bvaultd through
 * the admin socket (admin.h, COUNTERS; PROTOCOL.md): written by the loop
 * and the applier, read by an admin thread, hence atomic. Totals count
 * from bvaultd's start. */
static struct {
	atomic_uint_fast64_t sessions_open, sessions_waiting, sessions_total;
	atomic_uint_fast64_t commits, data_bytes, connections;
	atomic_uint_fast64_t refusals[BVP_E_BUSY + 1]; /* by BVP_E_* code */
	uint64_t start_time;                            /* set before */
} CTR;

/* The reason label of each refusal code (tools/PROTOCOL.md, ERROR). */
static const char *const refusal_name[BVP_E_BUSY + 1] = {
	[BVP_E_PROTO] = "protocol", [BVP_E_AUTH] = "auth",
	[BVP_E_DENIED] = "denied", [BVP_E_NOTFOUND] = "notfound",
	[BVP_E_BASE] = "base", [BVP_E_INVALID] = "invalid",
	[BVP_E_STORAGE] = "storage", [BVP_E_BUSY] = "busy",
};

static size_t counters_text(char *buf, size_t cap)
{
	size_t n = 0;
#define PUT(...) do {							\
		int k_ = snprintf(buf + n, cap - n, __VA_ARGS__);	\
		if (k_ > 0 && (size_t)k_ < cap - n)			\
			n += (size_t)k_;				\
	} while (0)
	PUT("start_time_seconds %" PRIu64 "\n", CTR.start_time);
	PUT("connections_total %" PRIu64 "\n",
	    (uint64_t)atomic_load(&CTR.connections));
	PUT("sessions_open %" PRIu64 "\n",
	    (uint64_t)atomic_load(&CTR.sessions_open));
	PUT("sessions_waiting %" PRIu64 "\n",
	    (uint64_t)atomic_load(&CTR.sessions_waiting));
	PUT("sessions_total %" PRIu64 "\n",
	    (uint64_t)atomic_load(&CTR.sessions_total));
	PUT("commits_total %" PRIu64 "\n", (uint64_t)atomic_load(&CTR.commits));
	PUT("data_bytes_total %" PRIu64 "\n",
	    (uint64_t)atomic_load(&CTR.data_bytes));
	for (int i = 1; i <= BVP_E_BUSY; i++)
		PUT("refusals_total_%s %" PRIu64 "\n", refusal_name[i],
		    (uint64_t)atomic_load(&CTR.refusals[i]));
#undef PUT
	return n;
}

/* The gauges, from the loop's state after each batch of completions. */
static int open_sessions(void);
static void counters_gauges(void)
{
	uint64_t w = 0;
	for (const struct conn *c = D.wait_head; c; c = c->wnext)
		w++;
	atomic_store(&CTR.sessions_open, (uint64_t)open_sessions());
	atomic_store(&CTR.sessions_waiting, w);
}

/* ---- logging ------------------------------------------------------------ */

/* Escapes IN (N bytes) for a log line into OUT (at least 4 * N + 1
 * bytes): valid UTF-8 other than control characters passes; control
 * bytes, DEL, backslash and every byte of an invalid sequence become
 * \xNN. Whatever a peer sent (a name, a label, an engine message that
 * quotes one) thus stays on its line and cannot forge another or drive
 * a terminal. */
static size_t log_escape(const char *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		unsigned char b = s[i];
		size_t len = 0;
		if (b >= 0x20 && b < 0x7f && b != '\\')
			len = 1;
		else if (b >= 0xc2 && b <= 0xdf)
			len = 2;
		else if (b >= 0xe0 && b <= 0xef)
			len = 3;
		else if (b >= 0xf0 && b <= 0xf4)
			len = 4;
		if (len > 1) {
			/* Continuation bytes, no overlong form, no surrogate,
			 * nothing past U+10FFFF; C1 controls escaped. */
			int good = i + len <= n;
			for (size_t k = 1; good && k < len; k++)
				good = (s[i + k] & 0xc0) == 0x80;
			if (good && len == 2 && b == 0xc2 && s[i + 1] < 0xa0)
				good = 0;
			if (good && len == 3 &&
			    ((b == 0xe0 && s[i + 1] < 0xa0) ||
			     (b == 0xed && s[i + 1] > 0x9f)))
				good = 0;
			if (good && len == 4 &&
			    ((b == 0xf0 && s[i + 1] < 0x90) ||
			     (b == 0xf4 && s[i + 1] > 0x8f)))
				good = 0;
			if (!good)
				len = 0;
		}
		if (!len) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[b >> 4];
			out[o++] = hex[b & 15];
			i++;
			continue;
		}
		memcpy(out + o, s + i, len);
		o += len;
		i += len;
	}
	out[o] = 0;
	return o;
}

/* One log line on stderr. The whole line is escaped (log_escape): it
 * carries names and messages that came from the network. */
__attribute__((format(printf, 1, 2)))
static void logmsg(const char *fmt, ...)
{
	char when[32], line[2048], safe[4 * sizeof line + 1];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S",
		 gmtime_r(&ts.tv_sec, &tm));
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof line)
		n = sizeof line - 1;
	log_escape(line, (size_t)n, safe);
	flockfile(stderr); /* the applier logs too: one line at a time */
	fprintf(stderr, "%s bvaultd: %s\n", when, safe);
	funlockfile(stderr);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- garbage collection on a schedule (--gc-interval) --------------------- */

/* A thread of the writer, beside the sessions and the admin commands
 * (bv_gc is safe there: engine/gc.c): every GC.interval seconds it runs
 * a GC with the default threshold and logs what it did. A run that
 * finds containers a reader still holds leaves them to the next one. */
static struct {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned interval; /* seconds; 0: no schedule */
	int started, stop;
} GC = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void *gc_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&GC.lock);
	while (!GC.stop) {
		struct timespec until;
		bv_gc_opts o = { 0 };
		bv_gc_report r;
		int rc;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += GC.interval;
		while (!GC.stop && pthread_cond_timedwait(&GC.cond, &GC.lock,
							  &until) == 0)
			;
		if (GC.stop)
			break;
		pthread_mutex_unlock(&GC.lock);
		rc = bv_gc(D.s, &o, &r);
		if (rc < 0)
			logmsg("gc: %s", bv_store_error(D.s));
		else
			logmsg("gc: %llu dead chunks (%llu bytes), %llu "
			       "containers rewritten, %llu removed, %llu kept "
			       "for readers; %llu bytes reclaimed",
			       (unsigned long long)r.dead_chunks,
			       (unsigned long long)r.dead_bytes,
			       (unsigned long long)r.containers_rewritten,
			       (unsigned long long)r.containers_removed,
			       (unsigned long long)r.containers_waiting,
			       (unsigned long long)r.bytes_reclaimed);
		pthread_mutex_lock(&GC.lock);
	}
	pthread_mutex_unlock(&GC.lock);
	return NULL;
}

static void gc_stop(void)
{
	if (!GC.started)
		return;
	pthread_mutex_lock(&GC.lock);
	GC.stop = 1;
	pthread_cond_signal(&GC.cond);
	pthread_mutex_unlock(&GC.lock);
	/* A run under way ends first: GC stops at no point of its own. */
	pthread_join(GC.thread, NULL);
	GC.started = 0;
}

/* ---- ring plumbing -------------------------------------------------------- */

static uint64_t udata(int op, int idx, uint32_t gen)
{
	return (uint64_t)op << 56 | (uint64_t)(uint16_t)idx << 32 | gen;
}

static struct io_uring_sqe *sqe_get(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&D.ring);
	if (!sqe) {
		io_uring_submit(&D.ring);
		sqe = io_uring_get_sqe(&D.ring);
	}
	if (!sqe) {
		logmsg("io_uring submission queue full");
		exit(1);
	}
	return sqe;
}

static void arm_accept(int li)
{
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_accept(sqe, D.lfd[li], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, udata(OP_ACCEPT, li, 0));
}

static void arm_signal(void)
{
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_read(sqe, D.sfd, &D.sig, sizeof D.sig, 0);
	io_uring_sqe_set_data64(sqe, udata(OP_SIGNAL, 0, 0));
}

static void arm_wake(void)
{
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_read(sqe, D.wakefd, &D.wake_buf, sizeof D.wake_buf, 0);
	io_uring_sqe_set_data64(sqe, udata(OP_WAKE, 0, 0));
}

static int conn_index(const struct conn *c)
{
	return (int)(c - D.conns);
}

/* Makes room in RX for what is to be received next (grown to hold the
 * frame at its front, up to the largest frame) and returns how many bytes
 * may come; 0 when nothing is to be taken now. */
static size_t rx_room(struct conn *c)
{
	/* A whole frame left in RX waits (for the answer being sent, or for
	 * the applier to give back its buffer): take nothing more until
	 * then (RX stays one frame). */
	if (c->rx_len >= BVP_HDR &&
	    c->rx_len >= BVP_HDR + (size_t)bvp_get32(c->rx))
		return 0;
	size_t want = RX_START;
	if (c->rx_len >= BVP_HDR) {
		uint32_t len = bvp_get32(c->rx);
		if (len <= BVP_PAYLOAD_MAX)
			want = BVP_HDR + (size_t)len;
	}
	if (want < c->rx_len + 1)
		want = c->rx_len + 1;
	/* Before login a frame is small (drain_frames refuses a larger
	 * one): an unauthenticated peer holds at most this much. */
	if (c->state != CS_READY && want > BVP_HDR + PRELOGIN_FRAME)
		want = BVP_HDR + PRELOGIN_FRAME;
	if (want <= c->rx_len)
		return 0;
	if (want > c->rx_cap) {
		uint8_t *n = realloc(c->rx, want);
		if (!n) {
			logmsg("agent %s (%s): out of memory", c->name,
			       c->peer);
			c->closing = 1;
			return 0;
		}
		c->rx = n;
		c->rx_cap = want;
	}
	return c->rx_cap - c->rx_len;
}

static void tls_arm_recv(struct conn *c);
static struct tls_conn *tls_new(void);
static void tls_free(struct tls_conn *t);

/* Receives into the free part of RX (over TLS: ciphertext, see
 * tls_arm_recv). */
static void arm_recv(struct conn *c)
{
	if (c->recv_armed || c->closing || c->close_pending || !c->used)
		return;
	if (c->tls) {
		tls_arm_recv(c);
		return;
	}
	size_t room = rx_room(c);
	if (!room)
		return;
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_recv(sqe, c->fd, c->rx + c->rx_len, room, 0);
	io_uring_sqe_set_data64(sqe, udata(OP_RECV, conn_index(c), c->gen));
	c->recv_armed = 1;
}

static void tls_arm_send(struct conn *c);

static void arm_send(struct conn *c)
{
	if (c->tls) {
		tls_arm_send(c);
		return;
	}
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_send(sqe, c->fd, c->tx + c->tx_off,
			   c->tx_len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, udata(OP_SEND, conn_index(c), c->gen));
	c->send_armed = 1;
}

/* ---- answers ---------------------------------------------------------------- */

/* Queues one answer frame; it is sent before anything else is read. */
static void answer(struct conn *c, uint8_t type, const void *p, size_t len)
{
	/* Only a change record can fail while an answer is on its way (a
	 * protocol error): no second answer then, the connection closes. */
	if (c->send_armed) {
		c->closing = 1;
		return;
	}
	if (len > c->tx_cap - BVP_HDR)
		len = c->tx_cap - BVP_HDR;
	bvp_header(c->tx, type, (uint32_t)len);
	/* Large answers (RPS, DIGESTS) are built in place. */
	if (len && p != c->tx + BVP_HDR)
		memcpy(c->tx + BVP_HDR, p, len);
	c->tx_len = BVP_HDR + len;
	c->tx_off = 0;
	c->t_send = now_ms();
	arm_send(c);
}

__attribute__((format(printf, 3, 4)))
static void answer_error(struct conn *c, uint16_t code, const char *fmt, ...)
{
	uint8_t p[4 + 1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf((char *)p + 4, 1024, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > 1023)
		n = 1023;
	bvp_put16(p, code);
	bvp_put16(p + 2, (uint16_t)n);
	if (code <= BVP_E_BUSY)
		atomic_fetch_add(&CTR.refusals[code], 1);
	answer(c, BVP_ERROR, p, 4 + (size_t)n);
}

/* A protocol error: answered, then the connection closes. */
static void proto_error(struct conn *c, const char *what)
{
	logmsg("agent %s (%s): protocol error: %s; closing", c->name[0] ?
	       c->name : "?", c->peer, what);
	answer_error(c, BVP_E_PROTO, "protocol error: %s", what);
	c->closing = 1;
}

/* The protocol's code for an engine error. */
static uint16_t code_of(int rc)
{
	switch (rc) {
	case BV_EBASE:
		return BVP_E_BASE;
	case BV_ENOTFOUND:
		return BVP_E_NOTFOUND;
	case BV_EBUSY:
		return BVP_E_BUSY;
	case BV_EINVAL:
	case BV_EALIGN:
	case BV_ERANGE:
	case BV_EGROUP:
	case BV_EEXIST:
		return BVP_E_INVALID;
	default:
		return BVP_E_STORAGE;
	}
}

/* ---- connections ------------------------------------------------------------- */

static void admit_waiting(void);

static void session_drop(struct conn *c, const char *why)
{
	if (!c->in)
		return;
	bv_ingest_abort(c->in);
	c->in = NULL;
	logmsg("agent %s (%s): session aborted (%s); nothing committed",
	       c->name, c->peer, why);
	admit_waiting();
}

/* Takes C out of the line of waiting BEGINs. */
static void wait_unlink(struct conn *c)
{
	struct conn **pp = &D.wait_head, *prev = NULL;

	if (!c->waiting)
		return;
	while (*pp && *pp != c) {
		prev = *pp;
		pp = &(*pp)->wnext;
	}
	if (*pp)
		*pp = c->wnext;
	if (D.wait_tail == c)
		D.wait_tail = prev;
	c->wnext = NULL;
	c->waiting = 0;
}

/* Closes C, or starts to: while the applier holds the session or the
 * kernel one of C's buffers (a receive or send in flight), the socket is
 * shut down and the close finishes when they gave them back (conn_done).
 * FORCE: the ring is gone, nothing is in flight. */
static void conn_close_how(struct conn *c, const char *why, int force)
{
	if (!c->used)
		return;
	if (!c->close_pending) {
		snprintf(c->close_why, sizeof c->close_why, "%s", why);
		c->close_pending = 1;
	}
	if (!force && (c->busy || c->recv_armed || c->send_armed)) {
		shutdown(c->fd, SHUT_RDWR);
		return;
	}
	why = c->close_why;
	wait_unlink(c);
	session_drop(c, why);
	if (c->state == CS_READY || why[0])
		logmsg("agent %s (%s): disconnected (%s)", c->name[0] ?
		       c->name : "?", c->peer, why);
	close(c->fd);
	free(c->rx);
	free(c->spare);
	free(c->work);
	free(c->tx);
	tls_free(c->tls);
	sodium_memzero(c->secret, sizeof c->secret);
	memset(c, 0, sizeof *c);
}

static void conn_close(struct conn *c, const char *why)
{
	conn_close_how(c, why, 0);
}

/* ---- guard: deadlines and limits against hostile peers ---------------------- */

/* What one peer may hold (PROTOCOL.md, "Deadlines and limits"):
 * - before login, frames of at most PRELOGIN_FRAME bytes and buffers
 *   sized to them (RX at most BVP_HDR + PRELOGIN_FRAME, TX PRELOGIN_TX),
 *   so --max-connections unauthenticated peers hold a few hundred KiB;
 * - a deadline for each phase, checked every TICK_MS: login (from the
 *   accept to OK), an idle connection (nothing received and nothing
 *   owed to it), a frame begun and not finished, an answer not read.
 *   A connection waiting for its BEGIN, or whose records the applier
 *   holds, waits on the server, not the peer: no deadline runs then;
 * - at most --max-connections connections: when they are all taken,
 *   the oldest peer not yet logged in makes room for a new one; when
 *   every connection is logged in, the new one is refused with ERROR
 *   busy, naming the limit;
 * - at most --max-agent-sessions open sessions of one agent, and the
 *   BEGINs waiting for a session served round-robin by agent (fair_next):
 *   one tenant cannot starve another. */

static void arm_tick(void)
{
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_timeout(sqe, &D.tick, 0, 0);
	io_uring_sqe_set_data64(sqe, udata(OP_TICK, 0, 0));
}

/* Refuses FD, not yet a connection, with ERROR busy: one small frame
 * into an empty socket buffer, which does not block. */
#define BUSY_TEXT "the server is busy: it serves %d connections, its " \
	"limit (--max-connections); try again later"
static void guard_refuse(int fd)
{
	uint8_t f[BVP_HDR + 4 + 160];
	int n = snprintf((char *)f + BVP_HDR + 4, 160, BUSY_TEXT, D.max_conn);
	if (n < 0 || n >= 160)
		n = 0;
	bvp_header(f, BVP_ERROR, 4 + (uint32_t)n);
	bvp_put16(f + BVP_HDR, BVP_E_BUSY);
	bvp_put16(f + BVP_HDR + 2, (uint16_t)n);
	atomic_fetch_add(&CTR.refusals[BVP_E_BUSY], 1);
	if (send(fd, f, BVP_HDR + 4 + (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL)
	    < 0 && errno != EAGAIN)
		logmsg("refusing a connection: %s", strerror(errno));
	shutdown(fd, SHUT_WR);
	close(fd);
}

/* A free slot for the new connection FD, making room if the limit is
 * reached; NULL when FD was refused (and closed). For a TLS listener
 * (*REFUSE not NULL) the refusal needs the handshake before the ERROR
 * can be read: a spare slot (NSLOT is twice the limit) takes FD with
 * *REFUSE set, for at most REFUSING such connections at once. */
#define REFUSING 16
static struct conn *guard_slot(int fd, int *refuse)
{
	struct conn *free_slot = NULL, *oldest = NULL;
	int live = 0, refusing = 0;

	for (int i = 0; i < NSLOT; i++) {
		struct conn *c = &D.conns[i];
		if (!c->used) {
			if (!free_slot)
				free_slot = c;
			continue;
		}
		if (c->close_pending)
			continue;
		if (c->refusing) {
			refusing++;
			continue;
		}
		live++;
		if (c->state != CS_READY && !c->closing &&
		    (!oldest || c->t_open < oldest->t_open))
			oldest = c;
	}
	if (free_slot && live >= D.max_conn && oldest) {
		logmsg("agent %s (%s): dropped before login: %d connections "
		       "(--max-connections), making room for a new one",
		       oldest->name[0] ? oldest->name : "?", oldest->peer,
		       live);
		conn_close(oldest, "dropped before login");
		live--;
	}
	if (!free_slot || live >= D.max_conn) {
		logmsg("refusing a connection: %d connections "
		       "(--max-connections %d), every one logged in", live,
		       D.max_conn);
		if (refuse && free_slot && refusing < REFUSING) {
			*refuse = 1;
			return free_slot;
		}
		guard_refuse(fd);
		return NULL;
	}
	return free_slot;
}

/* After RX changed: when an unfinished frame is at its front, the time
 * that frame began (a new frame restarts the clock). */
static void frame_note(struct conn *c)
{
	int partial = c->rx_len > 0 &&
		      (c->rx_len < BVP_HDR ||
		       c->rx_len < BVP_HDR + (size_t)bvp_get32(c->rx));
	if (!partial) {
		c->t_frame = 0;
		return;
	}
	uint64_t pos = c->rx_total - c->rx_len;
	if (!c->t_frame || pos != c->frame_pos) {
		c->frame_pos = pos;
		c->t_frame = now_ms();
	}
}

/* C missed a deadline: an ERROR naming it when the way is free, then
 * the close (at once if the answer cannot be sent within a second). */
static void guard_expire(struct conn *c, int64_t now, const char *what,
			 int64_t ms)
{
	logmsg("agent %s (%s): %s (%" PRId64 " s); closing", c->name[0] ?
	       c->name : "?", c->peer, what, ms / 1000);
	if (c->send_armed || c->busy) {
		conn_close(c, what);
		return;
	}
	answer_error(c, BVP_E_PROTO, "timed out: %s (%" PRId64 " s)", what,
		     ms / 1000);
	c->closing = 1;
	c->t_doom = now + 1000;
}

static void guard_tick(void)
{
	int64_t now = now_ms();

	for (int i = 0; i < NSLOT; i++) {
		struct conn *c = &D.conns[i];
		if (!c->used || c->close_pending)
			continue;
		if (c->t_doom) {
			if (now >= c->t_doom)
				conn_close(c, "timed out");
			continue;
		}
		if (c->closing) {
			/* Its last answer, then the close: if it is not read. */
			if (c->send_armed && now - c->t_send >= D.frame_ms)
				conn_close(c, "its last answer not read");
			continue;
		}
		if (c->state != CS_READY) {
			if (now - c->t_open >= D.login_ms)
				guard_expire(c, now, "no login in time",
					     D.login_ms);
			continue;
		}
		if (c->send_armed) {
			if (now - c->t_send >= D.frame_ms)
				guard_expire(c, now, "an answer not read in "
					     "time", D.frame_ms);
			continue;
		}
		if (c->waiting || c->busy)
			continue;
		if (c->t_frame) {
			if (now - c->t_frame >= D.frame_ms)
				guard_expire(c, now, "a frame not finished in "
					     "time", D.frame_ms);
			continue;
		}
		if (c->rx_len == 0 && now - c->t_active >= D.idle_ms)
			guard_expire(c, now, c->in ? "idle with a session open" :
				     "idle", D.idle_ms);
	}
}

/* Sessions open by agent NAME. */
static int agent_sessions(const char *name)
{
	int n = 0;
	for (int i = 0; i < NSLOT; i++)
		n += D.conns[i].used && D.conns[i].in &&
		     !strcmp(D.conns[i].name, name);
	return n;
}

/* Connections of agent NAME logged in, but for SELF. */
static int agent_logins(const char *name, const struct conn *self)
{
	int n = 0;
	for (int i = 0; i < NSLOT; i++)
		n += D.conns[i].used && &D.conns[i] != self &&
		     D.conns[i].state == CS_READY &&
		     !strcmp(D.conns[i].name, name);
	return n;
}

/* When each agent was last granted a session (a sequence number), for
 * the round-robin; the least recent entries are forgotten first. */
static struct {
	char name[64];
	uint64_t last;
} RR[NSLOT];
static uint64_t rr_seq;

static uint64_t rr_last(const char *name)
{
	for (int i = 0; i < NSLOT; i++)
		if (RR[i].last && !strcmp(RR[i].name, name))
			return RR[i].last;
	return 0;
}

static void rr_note(const char *name)
{
	int at = 0;
	for (int i = 0; i < NSLOT; i++) {
		if (RR[i].last && !strcmp(RR[i].name, name)) {
			at = i;
			break;
		}
		if (RR[i].last < RR[at].last)
			at = i;
	}
	snprintf(RR[at].name, sizeof RR[at].name, "%s", name);
	RR[at].last = ++rr_seq;
}

/* The waiting BEGIN to admit next: of the agents below their own limit,
 * the one granted a session least recently; its oldest BEGIN. */
static struct conn *fair_next(void)
{
	struct conn *best = NULL;
	uint64_t best_last = 0;
	int open = open_sessions();

	for (struct conn *w = D.wait_head; w; w = w->wnext) {
		if (bvs_begin_outcome(0, D.stopping, open,
				      agent_sessions(w->name), D.max_sessions,
				      D.max_agent_sessions) != BVS_BEGIN_NOW)
			continue;
		uint64_t l = rr_last(w->name);
		if (!best || l < best_last) {
			best = w;
			best_last = l;
		}
	}
	return best;
}
/* ---- end of guard ---- */

static void conn_open(int fd, int li)
{
	struct conn *c = NULL;
	atomic_fetch_add(&CTR.connections, 1);
	int refuse = 0;
	if (!(c = guard_slot(fd, D.ltls[li] ? &refuse : NULL)))
		return;
	memset(c, 0, sizeof *c);
	c->used = 1;
	c->fd = fd;
	c->gen = ++D.next_gen;
	c->state = CS_HELLO;
	c->refusing = refuse;
	c->t_open = c->t_active = now_ms();
	/* Before login, small buffers (PROTOCOL.md, "Deadlines and
	 * limits"): TX grows to TX_MAX at login. */
	c->tx = malloc(PRELOGIN_TX);
	if (!c->tx) {
		close(fd);
		memset(c, 0, sizeof *c);
		return;
	}
	c->tx_cap = PRELOGIN_TX;
	if (D.ltls[li] && !(c->tls = tls_new())) {
		logmsg("refusing a connection: out of memory for TLS");
		close(fd);
		free(c->tx);
		memset(c, 0, sizeof *c);
		return;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	snprintf(c->peer, sizeof c->peer, "local");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
		char host[64], port[16];
		if (!getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host,
				 port, sizeof port,
				 NI_NUMERICHOST | NI_NUMERICSERV))
			snprintf(c->peer, sizeof c->peer, "%s:%s", host, port);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	arm_recv(c);
}

/* ---- the messages ------------------------------------------------------------ */

static void on_hello(struct conn *c, struct bvp_rd *r)
{
	uint16_t ver;
	const char *why = bvs_hello(r->p, r->left, &ver, c->name);
	if (why)
		return proto_error(c, why);
	if (ver != BVP_VERSION) {
		logmsg("agent %s (%s): protocol version %u refused", c->name,
		       c->peer, ver);
		answer_error(c, BVP_E_PROTO, "protocol version %u is not "
			     "supported (this server speaks %u)", ver,
			     BVP_VERSION);
		c->closing = 1;
		return;
	}
	/* An unknown name gets a challenge too: the answer to AUTH is the
	 * same whichever part was wrong. */
	c->known = bv_agent_get(D.s, c->name, &c->agent, c->secret) == 0;
	if (getrandom(c->nonce, sizeof c->nonce, 0) != sizeof c->nonce) {
		logmsg("no random bytes for a challenge: %s", strerror(errno));
		c->closing = 1;
		return;
	}
	c->state = CS_AUTH;
	answer(c, BVP_CHALLENGE, c->nonce, sizeof c->nonce);
}

/* A public key that no agent has, checked against for an AUTH_SIG that
 * cannot succeed (an unknown name, an agent with a secret): the same
 * work as a real check, so the time taken tells nothing either. */
static const uint8_t *decoy_public_key(void)
{
	static uint8_t pk[crypto_sign_PUBLICKEYBYTES];
	static int made;
	if (!made) {
		uint8_t sk[crypto_sign_SECRETKEYBYTES];
		crypto_sign_keypair(pk, sk);
		sodium_memzero(sk, sizeof sk);
		made = 1;
	}
	return pk;
}

/* AUTH (HMAC with the agent's secret) or AUTH_SIG (Ed25519 signature
 * with the agent's key). Either kind of proof for the other kind of
 * agent is refused exactly like a wrong one. */
static void on_auth(struct conn *c, uint8_t type, struct bvp_rd *r)
{
	uint8_t msg[BVP_PROOF_MSG_MAX];
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	/* Over TLS the proof covers this connection's channel binding
	 * (tools/proto.h, bvp_proof_message). */
	const uint8_t *binding = c->tls ? c->tls->binding : NULL;
	const uint8_t *proof;
	size_t ml;
	const char *how = "secret";
	const char *why = bvs_auth(type, r->p, r->left, &proof);
	int ok;

	_Static_assert(BV_AGENT_PUBLIC_KEY == crypto_sign_PUBLICKEYBYTES &&
		       BVP_SIG == crypto_sign_BYTES, "Ed25519 sizes");
	if (why)
		return proto_error(c, why);
	if (type == BVP_AUTH_SIG) {
		int key = c->known && c->agent.kind == BV_AGENT_KIND_KEY;
		ml = bvp_proof_message(msg, 1, c->nonce, binding, c->name);
		ok = crypto_sign_verify_detached(proof, msg, ml, key ?
						 c->agent.public_key :
						 decoy_public_key()) == 0 &&
			key;
		how = "key";
	} else {
		ml = bvp_proof_message(msg, 0, c->nonce, binding, c->name);
		/* Same work for an unknown name or an agent with a key (the
		 * key all zeros: bv_agent_get gives a key agent no
		 * secret). */
		_Static_assert(BV_AGENT_SECRET ==
			       crypto_auth_hmacsha256_KEYBYTES &&
			       sizeof mac == BVP_MAC, "HMAC-SHA256 sizes");
		crypto_auth_hmacsha256(mac, msg, ml, c->secret);
		ok = sodium_memcmp(mac, proof, BVP_MAC) == 0 && c->known &&
			c->agent.kind == BV_AGENT_KIND_SECRET;
	}
	if (!ok) {
		logmsg("authentication failed: agent name '%s' from %s (a %s "
		       "proof)", c->name, c->peer, how);
		answer_error(c, BVP_E_AUTH, "authentication failed");
		c->closing = 1;
		return;
	}
	/* One agent's logins cannot take every connection slot from the
	 * others (PROTOCOL.md, "Deadlines and limits"). */
	int mine = agent_logins(c->name, c);
	if (mine >= D.max_agent_conns) {
		logmsg("agent %s (%s): login refused: %d connections of this "
		       "agent are logged in (--max-agent-connections %d)",
		       c->name, c->peer, mine, D.max_agent_conns);
		answer_error(c, BVP_E_BUSY, "agent %s has %d connections "
			     "logged in, its limit (--max-agent-connections); "
			     "close one or try again later", c->name, mine);
		c->closing = 1;
		return;
	}
	uint8_t *tx = realloc(c->tx, TX_MAX);
	if (!tx) {
		logmsg("agent %s (%s): out of memory; closing", c->name,
		       c->peer);
		c->closing = 1;
		return;
	}
	c->tx = tx;
	c->tx_cap = TX_MAX;
	c->state = CS_READY;
	c->t_active = now_ms();
	logmsg("agent %s (%s): authenticated (%s)", c->name, c->peer, how);
	answer(c, BVP_OK, NULL, 0);
}

static int open_sessions(void)
{
	int n = 0;
	for (int i = 0; i < NSLOT; i++)
		n += D.conns[i].used && D.conns[i].in;
	return n;
}

static void begin_now(struct conn *c);

static void on_begin(struct conn *c, struct bvp_rd *r)
{
	const char *why = bvs_begin(r->p, r->left);
	if (why)
		return proto_error(c, why);
	int open = open_sessions(), mine = agent_sessions(c->name);
	int how = bvs_begin_outcome(c->in != NULL, D.stopping, open, mine,
				    D.max_sessions, D.max_agent_sessions);
	if (how == BVS_BEGIN_OPEN) {
		answer_error(c, BVP_E_INVALID, "a session is open already on "
			     "this connection");
		return;
	}
	if (how == BVS_BEGIN_STOPPING) {
		answer_error(c, BVP_E_BUSY, "the server is shutting down");
		return;
	}
	/* The agent and its groups as the store has them now: bvault agent
	 * rm (through the admin socket) takes effect here too. */
	if (bv_agent_get(D.s, c->name, &c->agent, c->secret) < 0) {
		logmsg("agent %s (%s): refused: no longer an agent of the "
		       "store", c->name, c->peer);
		answer_error(c, BVP_E_AUTH, "agent %s was removed", c->name);
		c->closing = 1;
		return;
	}
	if (how == BVS_BEGIN_WAIT) {
		logmsg("agent %s (%s): BEGIN waits: %d sessions open "
		       "(--max-sessions %d), %d of this agent "
		       "(--max-agent-sessions %d)", c->name, c->peer, open,
		       D.max_sessions, mine, D.max_agent_sessions);
		c->waiting = 1;
		c->wnext = NULL;
		if (D.wait_tail)
			D.wait_tail->wnext = c;
		else
			D.wait_head = c;
		D.wait_tail = c;
		return;
	}
	begin_now(c);
}

/* Opens C's session and answers its BEGIN. */
static void begin_now(struct conn *c)
{
	int rc = bv_ingest_begin(D.s, &c->in);
	if (rc < 0) {
		c->in = NULL;
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	c->nslots = 0;
	c->failed = 0;
	c->bytes = 0;
	rr_note(c->name);
	atomic_fetch_add(&CTR.sessions_total, 1);
	answer(c, BVP_OK, NULL, 0);
}

/* A session ended: waiting BEGINs get theirs, as far as the limits
 * allow, round-robin by agent (fair_next). */
static void admit_waiting(void)
{
	while (!D.stopping && D.wait_head &&
	       open_sessions() < D.max_sessions) {
		struct conn *c = fair_next();
		if (!c)
			break;
		wait_unlink(c);
		logmsg("agent %s (%s): BEGIN admitted", c->name, c->peer);
		begin_now(c);
		/* Its answer is sent, then its frames flow again. */
	}
}

/* The group the agent needs for replica NAME (an existing replica's, or
 * for one to be created, the group of its own name). */
static int group_of(const char *name, char group[64])
{
	bv_replica_info ri;
	int rc = bv_replica_info_get(D.s, name, &ri);
	if (rc == 0)
		snprintf(group, 64, "%s", ri.group);
	else
		snprintf(group, 64, "%s", name);
	return rc;
}

/* ADD, and ADDV with the identities IDS (base, then result; NULL for
 * ADD). */
static void add_replica(struct conn *c, const char *name, uint64_t base,
			uint64_t size, const uint8_t *ids)
{
	char group[64];
	uint8_t out[4];

	if (!c->in) {
		answer_error(c, BVP_E_INVALID, "ADD outside a session");
		return;
	}
	int rc = group_of(name, group);
	if (rc && rc != BV_ENOTFOUND) {
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	if (!bv_agent_may(&c->agent, group)) {
		logmsg("agent %s (%s): denied: replica %s (group %s)", c->name,
		       c->peer, name, group);
		answer_error(c, BVP_E_DENIED, "agent %s may not write group %s "
			     "(replica %s)", c->name, group, name);
		return;
	}
	int slot = ids ? bv_ingest_add_ids(c->in, name, base, ids, ids + BVP_ID,
					   size) :
			 bv_ingest_add(c->in, name, base, size);
	if (slot < 0) {
		if (ids)
			logmsg("agent %s (%s): ADDV refused: %s", c->name,
			       c->peer, bv_store_error(D.s));
		answer_error(c, code_of(slot), "%s", bv_store_error(D.s));
		return;
	}
	c->nslots = slot + 1 > c->nslots ? slot + 1 : c->nslots;
	bvp_put32(out, (uint32_t)slot);
	answer(c, BVP_OK, out, sizeof out);
}

/* ADD, and ADDV (push, bvault push: with the identities). */
static void on_add(struct conn *c, uint8_t type, struct bvp_rd *r)
{
	struct bvs_add a;
	const char *why = bvs_add(type, r->p, r->left, &a);

	if (why)
		return proto_error(c, why);
	add_replica(c, a.name, a.base, a.size, a.ids);
}

/* A change record failed: the session keeps only the error, which the
 * answer to COMMIT carries. */
static void change_failed(struct conn *c, int rc)
{
	if (c->failed)
		return;
	c->failed = 1;
	c->fail_code = code_of(rc);
	snprintf(c->fail_msg, sizeof c->fail_msg, "%s", bv_store_error(D.s));
	logmsg("agent %s (%s): %s", c->name, c->peer, c->fail_msg);
}

static int is_change(uint8_t type)
{
	return bvs_is_change(type);
}

/* The loop's check of a change record (payload P, LEN bytes) before the
 * applier gets it: NULL, or what is wrong with it (session.h). */
static const char *change_problem(const struct conn *c, uint8_t type,
				  const uint8_t *p, size_t len)
{
	struct bvs_change ch;
	return bvs_change(type, p, len, c->in != NULL,
			  c->nslots > 0 ? (uint32_t)c->nslots : 0, &ch);
}

/* On the applier: applies one change record that change_problem() passed.
 * After a failure the session keeps only the error. */
static void apply_change(struct conn *c, uint8_t type, const uint8_t *p,
			 size_t len)
{
	struct bvs_change ch;
	int rc = 0;

	/* Decoded again, not checked: the loop checked it against the
	 * session, whose slots the applier does not read. */
	bvs_change(type, p, len, 1, UINT32_MAX, &ch);
	if (c->failed)
		return;
	if (type == BVP_DATA) {
		rc = bv_ingest_write(c->in, (int)ch.slot, ch.off, ch.data,
				     ch.len);
		c->bytes += ch.len;
		atomic_fetch_add(&CTR.data_bytes, ch.len);
	} else if (type == BVP_ZERO) {
		rc = bv_ingest_zero(c->in, (int)ch.slot, ch.off, ch.arg);
	} else {
		rc = bv_ingest_resize(c->in, (int)ch.slot, ch.off);
	}
	if (rc < 0)
		change_failed(c, rc);
}

/* ---- the applier ---------------------------------------------------------- */

static void *applier_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&D.lock);
	for (;;) {
		while (!D.queue && !D.applier_stop)
			pthread_cond_wait(&D.cond, &D.lock);
		struct conn *c = D.queue;
		if (!c)
			break;
		D.queue = c->qnext;
		if (!D.queue)
			D.queue_tail = NULL;
		int skip = D.applier_stop; /* shutting down: abort, not apply */
		pthread_mutex_unlock(&D.lock);
		for (size_t o = c->work_off; !skip && o < c->work_end;) {
			const uint8_t *h = c->work + o;
			uint32_t len = bvp_get32(h);
			apply_change(c, h[4], h + BVP_HDR, len);
			o += BVP_HDR + (size_t)len;
		}
		pthread_mutex_lock(&D.lock);
		c->qnext = D.done;
		D.done = c;
		uint64_t one = 1;
		if (write(D.wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
			logmsg("waking the loop: %s", strerror(errno));
	}
	pthread_mutex_unlock(&D.lock);
	return NULL;
}

/* Hands the whole change records RX[OFF, END) to the applier. RX goes
 * with them, and the spare buffer, holding what followed them, becomes
 * RX. */
static int hand_over(struct conn *c, size_t off, size_t end)
{
	size_t tail = c->rx_len - end;
	size_t want = tail > RX_START ? tail : RX_START;
	uint8_t *nb = c->spare;
	size_t ncap = c->spare_cap;

	if (ncap < want) {
		nb = realloc(nb, want);
		if (!nb) {
			logmsg("agent %s (%s): out of memory; closing",
			       c->name, c->peer);
			return -1;
		}
		ncap = want;
	}
	memcpy(nb, c->rx + end, tail);
	c->work = c->rx;
	c->work_cap = c->rx_cap;
	c->work_off = off;
	c->work_end = end;
	c->rx = nb;
	c->rx_cap = ncap;
	c->rx_len = tail;
	c->spare = NULL;
	c->spare_cap = 0;
	c->busy = 1;
	pthread_mutex_lock(&D.lock);
	c->qnext = NULL;
	if (D.queue_tail)
		D.queue_tail->qnext = c;
	else
		D.queue = c;
	D.queue_tail = c;
	pthread_cond_signal(&D.cond);
	pthread_mutex_unlock(&D.lock);
	return 0;
}

/* ---- the RP time ---- */

/* An RP's time is the server's clock: an agent's claimed time is kept
 * only within --max-clock-skew of it (a host whose clock is off, or an
 * agent that lies, cannot date an RP into the past or the future, which
 * retention and `rp ls` trust). A COMMIT with an explicit RP number is a
 * push copying another store's history, whose times are kept as they
 * are (in range: on_commit checked). */
static void commit_time(struct conn *c, bv_commit_opts *o)
{
	if (o->number || !o->time)
		return;
	int64_t now = (int64_t)time(NULL);
	if (o->time >= now - D.max_skew && o->time <= now + D.max_skew)
		return;
	logmsg("agent %s (%s): RP time %" PRId64 " is more than %" PRId64
	       " s from the server's clock (%" PRId64 "): the server's time "
	       "is used", c->name, c->peer, o->time, D.max_skew, now);
	o->time = 0;
}
/* ---- end of the RP time ---- */

static void on_commit(struct conn *c, struct bvp_rd *r)
{
	bv_commit_opts o = { 0 };
	struct bvs_commit cm;
	uint8_t out[8];
	uint64_t rp = 0;
	const char *why = bvs_commit(r->p, r->left, &cm);

	_Static_assert(BVP_LABEL_MAX == BV_LABEL_MAX, "COMMIT's label");
	if (why)
		return proto_error(c, why);
	if (!c->in) {
		answer_error(c, BVP_E_INVALID, "COMMIT outside a session");
		return;
	}
	o.make_rp = cm.make_rp;
	o.consistency = cm.consistency;
	o.time = cm.time;
	o.number = cm.number;
	o.label = cm.label[0] ? cm.label : NULL;
	if (c->failed) {
		session_drop(c, "a change record failed");
		answer_error(c, c->fail_code, "%s", c->fail_msg);
		return;
	}
	int refusal = bvs_commit_refusal(&cm);
	if (refusal == BVS_COMMIT_TIME) {
		session_drop(c, "a bad RP time");
		answer_error(c, BVP_E_INVALID, "RP time %" PRId64 ": not 0 (now) "
			     "nor from 1 to %" PRId64 " seconds since the "
			     "epoch; nothing committed", o.time, BVP_TIME_MAX);
		return;
	}
	if (refusal == BVS_COMMIT_NUMBER) {
		session_drop(c, "an RP number without an RP");
		answer_error(c, BVP_E_INVALID, "RP number %" PRIu64 " given "
			     "without making an RP; nothing committed",
			     o.number);
		return;
	}
	commit_time(c, &o);
	bv_ingest *in = c->in;
	c->in = NULL;
	int rc = bv_ingest_commit(in, &o, &rp);
	if (rc < 0) {
		logmsg("agent %s (%s): commit failed: %s", c->name, c->peer,
		       bv_store_error(D.s));
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		admit_waiting();
		return;
	}
	logmsg("agent %s (%s): committed %d replica%s, %" PRIu64 " data "
	       "bytes, RP %" PRIu64, c->name, c->peer, c->nslots,
	       c->nslots == 1 ? "" : "s", c->bytes, rp);
	bvp_put64(out, rp);
	atomic_fetch_add(&CTR.commits, 1);
	answer(c, BVP_OK, out, sizeof out);
	admit_waiting();
}

static void on_abort(struct conn *c, struct bvp_rd *r)
{
	const char *why = bvs_abort(r->p, r->left);
	if (why)
		return proto_error(c, why);
	session_drop(c, "the agent aborted it");
	answer(c, BVP_OK, NULL, 0);
}

struct rps_walk {
	uint8_t *p;
	size_t n, cap;
	uint64_t latest;
};

static int rps_one(void *ud, const bv_rp_info *rp)
{
	struct rps_walk *w = ud;
	if (w->n < w->cap) {
		uint8_t *q = w->p + 8 + 8 + 4 + w->n * 17;
		bvp_put64(q, rp->number);
		bvp_put64(q + 8, (uint64_t)rp->time);
		q[16] = (uint8_t)rp->consistency;
		w->n++;
	}
	if (rp->number > w->latest)
		w->latest = rp->number;
	return 0;
}

static void on_rps(struct conn *c, struct bvp_rd *r)
{
	struct bvs_query ask;
	char group[64];
	const char *name = ask.name;
	bv_replica_info ri;
	const char *why = bvs_query(BVP_RPS, r->p, r->left, &ask);

	if (why)
		return proto_error(c, why);
	int rc = bv_replica_info_get(D.s, name, &ri);
	int is_rep = rc == 0;
	if (rc && rc != BV_ENOTFOUND) {
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	snprintf(group, sizeof group, "%s", is_rep ? ri.group : name);
	if (!bv_agent_may(&c->agent, group)) {
		logmsg("agent %s (%s): denied: RPs of %s (group %s)", c->name,
		       c->peer, name, group);
		answer_error(c, BVP_E_DENIED, "agent %s may not read group %s",
			     c->name, group);
		return;
	}
	/* The answer is built in place, in the (idle) send buffer. */
	uint8_t *buf = c->tx + BVP_HDR;
	struct rps_walk w = { buf, 0, (TX_MAX - 64) / 17, 0 };
	if (w.cap > RPS_MAX)
		w.cap = RPS_MAX;
	rc = bv_rp_list(D.s, name, rps_one, &w);
	if (rc < 0) {
		if (rc == BV_ENOTFOUND)
			answer_error(c, BVP_E_NOTFOUND, "no replica or group "
				     "named %s", name);
		else
			answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	bvp_put64(buf, w.latest);
	bvp_put64(buf + 8, is_rep ? ri.size : 0);
	bvp_put32(buf + 16, (uint32_t)w.n);
	answer(c, BVP_OK, buf, 20 + w.n * 17);
}

/* ---- push (bvault push): RPSV ---- */
struct rpsv_walk {
	uint8_t *p;       /* where the next entry goes */
	uint8_t *end;     /* the answer's room ends here */
	uint64_t first;
	uint32_t n;
	int full;
};

static int rpsv_one(void *ud, const bv_rp_info *rp)
{
	struct rpsv_walk *w = ud;
	size_t ll = strlen(rp->label);

	if (rp->number < w->first || w->full)
		return 0;
	if ((size_t)(w->end - w->p) < 8 + 8 + 1 + BVP_ID + 1 + ll ||
	    w->n == RPS_MAX) {
		w->full = 1;
		return 0;
	}
	bvp_put64(w->p, rp->number);
	bvp_put64(w->p + 8, (uint64_t)rp->time);
	w->p[16] = (uint8_t)rp->consistency;
	memcpy(w->p + 17, rp->id, BVP_ID);
	w->p[17 + BVP_ID] = (uint8_t)ll;
	memcpy(w->p + 18 + BVP_ID, rp->label, ll);
	w->p += 18 + BVP_ID + ll;
	w->n++;
	return 0;
}

static void on_rpsv(struct conn *c, struct bvp_rd *r)
{
	struct bvs_query ask;
	const char *name = ask.name;
	bv_replica_info ri;
	const char *why = bvs_query(BVP_RPSV, r->p, r->left, &ask);

	if (why)
		return proto_error(c, why);
	int rc = bv_replica_info_get(D.s, name, &ri);
	if (rc == BV_ENOTFOUND) {
		/* As RPS: a new replica would be in a group of its name. */
		if (!bv_agent_may(&c->agent, name)) {
			logmsg("agent %s (%s): denied: RPs of %s", c->name,
			       c->peer, name);
			answer_error(c, BVP_E_DENIED, "agent %s may not read "
				     "group %s", c->name, name);
		} else {
			answer_error(c, BVP_E_NOTFOUND, "no replica named %s",
				     name);
		}
		return;
	}
	if (rc < 0) {
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	if (!bv_agent_may(&c->agent, ri.group)) {
		logmsg("agent %s (%s): denied: RPs of %s (group %s)", c->name,
		       c->peer, name, ri.group);
		answer_error(c, BVP_E_DENIED, "agent %s may not read group %s",
			     c->name, ri.group);
		return;
	}
	/* Built in place, in the (idle) send buffer. */
	uint8_t *buf = c->tx + BVP_HDR;
	size_t gl = strlen(ri.group);
	struct rpsv_walk w = { buf + 8 + 8 + BVP_ID + 1 + gl + 4,
			       c->tx + TX_MAX, ask.first, 0, 0 };
	rc = bv_rp_list(D.s, name, rpsv_one, &w);
	if (rc < 0) {
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	bvp_put64(buf, ri.latest_rp);
	bvp_put64(buf + 8, ri.size);
	memcpy(buf + 16, ri.head_id, BVP_ID);
	buf[16 + BVP_ID] = (uint8_t)gl;
	memcpy(buf + 17 + BVP_ID, ri.group, gl);
	bvp_put32(buf + 17 + BVP_ID + gl, w.n);
	answer(c, BVP_OK, buf, (size_t)(w.p - buf));
}
/* ---- end of push ---- */

static void on_digests(struct conn *c, struct bvp_rd *r)
{
	struct bvs_query ask;
	char group[64];
	const char *name = ask.name;
	uint8_t *buf = c->tx + BVP_HDR; /* the answer, built in place */
	static uint8_t kinds[BVP_DIGESTS_MAX], digs[BVP_DIGESTS_MAX][16];
	bv_reader *rd = NULL;
	const char *why = bvs_query(BVP_DIGESTS, r->p, r->left, &ask);

	if (why)
		return proto_error(c, why);
	uint64_t rp = ask.rp, first = ask.first;
	uint32_t n = ask.count;
	int rc = group_of(name, group);
	if (rc && rc != BV_ENOTFOUND) {
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	if (!bv_agent_may(&c->agent, group)) {
		answer_error(c, BVP_E_DENIED, "agent %s may not read group %s",
			     c->name, group);
		return;
	}
	rc = bv_reader_open(D.s, name, rp ? rp : BV_RP_LATEST, &rd);
	if (rc < 0) {
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	uint64_t size = bv_reader_size(rd);
	uint32_t cs = bv_reader_chunk_size(rd);
	uint64_t nchunks = (size + cs - 1) / cs;
	if (first >= nchunks)
		n = 0;
	else if (n > nchunks - first)
		n = (uint32_t)(nchunks - first);
	rc = n ? bv_reader_digests(rd, first, n, kinds, digs) : 0;
	bv_reader_close(rd);
	if (rc < 0) {
		answer_error(c, code_of(rc), "%s", bv_store_error(D.s));
		return;
	}
	bvp_put32(buf, cs);
	bvp_put64(buf + 4, size);
	bvp_put32(buf + 12, n);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *q = buf + 16 + (size_t)i * 17;
		q[0] = kinds[i];
		if (kinds[i] == BV_DIGEST_KNOWN)
			memcpy(q + 1, digs[i], 16);
		else
			memset(q + 1, 0, 16);
	}
	answer(c, BVP_OK, buf, 16 + (size_t)n * 17);
}

/* Handles one frame. */
static void on_frame(struct conn *c, uint8_t type, const uint8_t *p,
		     size_t len)
{
	struct bvp_rd r = { p, len, 0 };
	const char *why = bvs_type_problem(c->state, type);

	if (why)
		return proto_error(c, why);
	if (c->state == CS_HELLO)
		return on_hello(c, &r);
	if (c->state == CS_AUTH)
		return on_auth(c, type, &r);
	switch (type) {
	case BVP_BEGIN:
		return on_begin(c, &r);
	case BVP_ADD:
	case BVP_ADDV:
		return on_add(c, type, &r);
	case BVP_COMMIT:
		return on_commit(c, &r);
	case BVP_ABORT:
		return on_abort(c, &r);
	case BVP_RPS:
		return on_rps(c, &r);
	case BVP_DIGESTS:
		return on_digests(c, &r);
	case BVP_RPSV:
		return on_rpsv(c, &r);
	default:
		return proto_error(c, "an unknown message type");
	}
}

static const char *header_problem(const uint8_t *h)
{
	return bvs_header_problem(h);
}

/* Handles every whole frame in RX, in order, until one that must wait:
 * change records go to the applier (one buffer of them at a time per
 * connection); any other message waits until the records before it were
 * applied and the last answer was sent. */
static void drain_frames(struct conn *c)
{
	size_t off = 0;

	while (!c->closing && !c->close_pending && !c->waiting &&
	       c->rx_len - off >= BVP_HDR) {
		const uint8_t *h = c->rx + off;
		uint32_t len = bvp_get32(h);
		const char *why;
		/* While an answer is on its way, change records (which get
		 * none) still flow: an agent that sends data before it reads
		 * the answer to its last query never waits on us. */
		int change = c->state == CS_READY && is_change(h[4]);
		if (!change && (c->send_armed || c->busy))
			break;
		if ((why = header_problem(h))) {
			proto_error(c, why);
			break;
		}
		if (c->state != CS_READY && len > PRELOGIN_FRAME) {
			char m[96];
			snprintf(m, sizeof m, "a frame of %" PRIu32 " bytes "
				 "before login (at most %u)", len,
				 PRELOGIN_FRAME);
			proto_error(c, m);
			break;
		}
		if (c->rx_len - off < BVP_HDR + (size_t)len)
			break;
		if (!change) {
			on_frame(c, h[4], h + BVP_HDR, len);
			off += BVP_HDR + (size_t)len;
			continue;
		}
		if ((why = change_problem(c, h[4], h + BVP_HDR, len))) {
			proto_error(c, why);
			break;
		}
		if (c->busy)
			break;
		/* Every whole, sound change record from here goes at once. */
		size_t end = off + BVP_HDR + (size_t)len;
		while (c->rx_len - end >= BVP_HDR) {
			const uint8_t *h2 = c->rx + end;
			size_t l2 = bvp_get32(h2);
			if (!is_change(h2[4]) || header_problem(h2) ||
			    c->rx_len - end < BVP_HDR + l2 ||
			    change_problem(c, h2[4], h2 + BVP_HDR, l2))
				break;
			end += BVP_HDR + l2;
		}
		if (hand_over(c, off, end)) {
			c->closing = 1;
			return;
		}
		off = 0; /* RX now holds what followed the records */
	}
	if (off) {
		memmove(c->rx, c->rx + off, c->rx_len - off);
		c->rx_len -= off;
	}
	frame_note(c);
}

/* ---- TLS (struct tls_conn) ------------------------------------------------- */

/* Why the last SSL call on C failed (RC its result), into WHY. */
static void tls_why(struct conn *c, int rc, char *why, size_t cap)
{
	int e = SSL_get_error(c->tls->ssl, rc);
	bvt_errors(why, cap);
	if (!why[0])
		snprintf(why, cap, "%s", e == SSL_ERROR_SSL ? "a TLS error" :
			 "the TLS session failed");
}

/* IN's read: what CRX holds, else "retry" (more comes from the loop). */
static int crx_read(BIO *b, char *out, int n)
{
	struct tls_conn *t = BIO_get_data(b);
	size_t k = t->crx_len - t->crx_off;
	BIO_clear_retry_flags(b);
	if (!k) {
		BIO_set_retry_read(b);
		return -1;
	}
	if (k > (size_t)n)
		k = (size_t)n;
	memcpy(out, t->crx + t->crx_off, k);
	t->crx_off += k;
	return (int)k;
}

static long crx_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_conn *t = BIO_get_data(b);
	(void)num;
	(void)ptr;
	if (cmd == BIO_CTRL_PENDING)
		return (long)(t->crx_len - t->crx_off);
	return cmd == BIO_CTRL_FLUSH;
}

static BIO_METHOD *crx_method(void)
{
	static BIO_METHOD *m;
	if (!m && (m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				    "bvaultd received ciphertext"))) {
		BIO_meth_set_read(m, crx_read);
		BIO_meth_set_ctrl(m, crx_ctrl);
	}
	return m;
}

static struct tls_conn *tls_new(void)
{
	struct tls_conn *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->crx = malloc(TLS_RX_LOGIN);
	t->ctx = malloc(TLS_RX_LOGIN);
	t->ssl = SSL_new(D.tls_ctx);
	t->in = crx_method() ? BIO_new(crx_method()) : NULL;
	t->out = BIO_new(BIO_s_mem());
	if (!t->crx || !t->ctx || !t->ssl || !t->in || !t->out) {
		BIO_free(t->in);
		BIO_free(t->out);
		SSL_free(t->ssl);
		free(t->crx);
		free(t->ctx);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	t->crx_cap = t->ctx_cap = TLS_RX_LOGIN;
	BIO_set_data(t->in, t);
	BIO_set_init(t->in, 1);
	SSL_set_bio(t->ssl, t->in, t->out);
	SSL_set_accept_state(t->ssl);
	return t;
}

static void tls_free(struct tls_conn *t)
{
	if (!t)
		return;
	SSL_free(t->ssl); /* and its BIOs */
	free(t->crx);
	free(t->ctx);
	free(t);
	ERR_clear_error();
}

/* Sends the ciphertext waiting in OUT, CTX at a time, unless a send is
 * on its way (its completion sends the rest). */
static void tls_flush(struct conn *c)
{
	struct tls_conn *t = c->tls;
	if (c->send_armed || BIO_ctrl_pending(t->out) == 0)
		return;
	/* Small until login, like every buffer of an unknown peer. */
	if (c->state == CS_READY && t->ctx_cap < TLS_TX) {
		uint8_t *n = realloc(t->ctx, TLS_TX);
		if (n) {
			t->ctx = n;
			t->ctx_cap = TLS_TX;
		}
	}
	int n = BIO_read(t->out, t->ctx, (int)t->ctx_cap);
	if (n <= 0)
		return;
	t->ctx_len = (size_t)n;
	t->ctx_off = 0;
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_send(sqe, c->fd, t->ctx, t->ctx_len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, udata(OP_SEND, conn_index(c), c->gen));
	c->send_armed = 1;
}

/* A send of ciphertext completed with RES bytes: 1 while more of it is
 * on its way, 0 once all of the answer (and anything TLS added) went. */
static int tls_sent(struct conn *c, int res)
{
	struct tls_conn *t = c->tls;
	t->ctx_off += (size_t)res;
	if (t->ctx_off < t->ctx_len) {
		struct io_uring_sqe *sqe = sqe_get();
		io_uring_prep_send(sqe, c->fd, t->ctx + t->ctx_off,
				   t->ctx_len - t->ctx_off, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, udata(OP_SEND, conn_index(c),
						   c->gen));
		c->send_armed = 1;
		return 1;
	}
	t->ctx_len = t->ctx_off = 0;
	if (BIO_ctrl_pending(t->out) > 0) {
		tls_flush(c);
		return 1;
	}
	return 0;
}

/* The answer in TX, encrypted whole into OUT (a memory BIO takes it
 * all), and sent. */
static void tls_arm_send(struct conn *c)
{
	struct tls_conn *t = c->tls;
	size_t n = c->tx_len - c->tx_off;
	if (n) {
		int k = SSL_write(t->ssl, c->tx + c->tx_off, (int)n);
		if (k <= 0 || (size_t)k != n) {
			char why[300];
			tls_why(c, k, why, sizeof why);
			logmsg("agent %s (%s): TLS: cannot send: %s; closing",
			       c->name[0] ? c->name : "?", c->peer, why);
			c->closing = 1;
			return;
		}
		c->tx_off = c->tx_len;
	}
	tls_flush(c);
}

/* Receives ciphertext into CRX, or (OP_PUMP) goes on with what IN and SSL
 * already hold: once logged in, RX's room bounds what SSL_read takes, so
 * ciphertext is received only when SSL has no plaintext for RX left. */
static void tls_arm_recv(struct conn *c)
{
	struct tls_conn *t = c->tls;
	struct io_uring_sqe *sqe;

	if (t->ready && !rx_room(c))
		return;
	if (t->crx_off < t->crx_len ||
	    (t->ready && !t->starved && SSL_pending(t->ssl) > 0)) {
		sqe = sqe_get();
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data64(sqe, udata(OP_PUMP, conn_index(c),
						   c->gen));
		c->recv_armed = 1;
		return;
	}
	if (c->state == CS_READY && t->crx_cap < TLS_RX) {
		uint8_t *n = realloc(t->crx, TLS_RX);
		if (n) {
			t->crx = n;
			t->crx_cap = TLS_RX;
		}
	}
	t->crx_off = t->crx_len = 0;
	sqe = sqe_get();
	io_uring_prep_recv(sqe, c->fd, t->crx, t->crx_cap, 0);
	io_uring_sqe_set_data64(sqe, udata(OP_RECV, conn_index(c), c->gen));
	c->recv_armed = 1;
}

/* After ciphertext came (RES bytes in CRX; 0 for OP_PUMP): the handshake
 * goes on, or plaintext goes into RX. -1 when C was closed. */
static int tls_input(struct conn *c, int res)
{
	struct tls_conn *t = c->tls;
	char why[300];
	int rc;

	if (res > 0) {
		t->crx_off = 0;
		t->crx_len = (size_t)res;
		t->starved = 0;
	}
	if (!t->ready) {
		rc = SSL_do_handshake(t->ssl);
		tls_flush(c);
		if (rc != 1) {
			if (SSL_get_error(t->ssl, rc) == SSL_ERROR_WANT_READ) {
				t->starved = 1;
				return 0;
			}
			tls_why(c, rc, why, sizeof why);
			logmsg("peer %s: TLS handshake failed: %s", c->peer,
			       why);
			c->closing = 1;
			return 0;
		}
		if (bvt_binding(t->ssl, t->binding)) {
			conn_close(c, "TLS: no channel binding");
			return -1;
		}
		t->ready = 1;
		if (c->refusing) {
			answer_error(c, BVP_E_BUSY, BUSY_TEXT, D.max_conn);
			c->closing = 1;
			return 0;
		}
	}
	while (!c->closing) {
		size_t room = rx_room(c);
		if (!room)
			break;
		rc = SSL_read(t->ssl, c->rx + c->rx_len,
			      room > INT32_MAX ? INT32_MAX : (int)room);
		if (rc > 0) {
			c->rx_len += (size_t)rc;
			c->rx_total += (uint64_t)rc;
			continue;
		}
		int e = SSL_get_error(t->ssl, rc);
		if (e == SSL_ERROR_WANT_READ) {
			t->starved = 1;
			break;
		}
		if (e == SSL_ERROR_ZERO_RETURN) {
			conn_close(c, "closed by the agent");
			return -1;
		}
		tls_why(c, rc, why, sizeof why);
		char m[96];
		snprintf(m, sizeof m, "TLS: %.80s", why);
		conn_close(c, m);
		return -1;
	}
	tls_flush(c); /* what reading made TLS answer (a key update) */
	return 0;
}

/* ---- the loop --------------------------------------------------------------- */

/* After C's frames were handled: close it when it is to close and its
 * answer went out, else receive more. */
static void conn_next(struct conn *c)
{
	if (c->closing && !c->send_armed && !c->recv_armed) {
		conn_close(c, "");
		return;
	}
	arm_recv(c);
}

/* The applier gave back buffers: those connections go on. */
static void on_wake(int res)
{
	struct conn *c;

	if (res < 0 && res != -EINTR && res != -ECANCELED)
		logmsg("reading the applier's wake-ups: %s", strerror(-res));
	pthread_mutex_lock(&D.lock);
	c = D.done;
	D.done = NULL;
	pthread_mutex_unlock(&D.lock);
	while (c) {
		struct conn *next = c->qnext;
		c->qnext = NULL;
		c->busy = 0;
		c->spare = c->work;
		c->spare_cap = c->work_cap;
		c->work = NULL;
		c->work_cap = c->work_off = c->work_end = 0;
		c->t_active = now_ms();
		if (c->close_pending) {
			conn_close(c, "");
		} else {
			drain_frames(c);
			conn_next(c);
		}
		c = next;
	}
	if (!D.stopping)
		arm_wake();
}

static void on_cqe(struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	int op = (int)(ud >> 56), idx = (int)(ud >> 32 & 0xffff);
	uint32_t gen = (uint32_t)ud;
	int res = cqe->res;

	if (op == OP_SIGNAL) {
		if (res == (int)sizeof D.sig) {
			logmsg("signal %u: stopping", D.sig.ssi_signo);
			D.stopping = 1;
		} else {
			arm_signal();
		}
		return;
	}
	if (op == OP_ACCEPT) {
		if (res >= 0)
			conn_open(res, idx);
		else if (res != -EINTR && res != -ECANCELED)
			logmsg("accept: %s", strerror(-res));
		if (!D.stopping)
			arm_accept(idx);
		return;
	}
	if (op == OP_WAKE) {
		on_wake(res);
		return;
	}
	if (op == OP_TICK) {
		guard_tick();
		if (!D.stopping)
			arm_tick();
		return;
	}
	if (idx < 0 || idx >= NSLOT)
		return;
	struct conn *c = &D.conns[idx];
	if (!c->used || c->gen != gen)
		return; /* a completion for a connection closed since */
	if (op == OP_RECV || op == OP_PUMP)
		c->recv_armed = 0;
	else if (op == OP_SEND)
		c->send_armed = 0;
	if (c->close_pending) {
		conn_close(c, "");
		return;
	}
	if (op == OP_PUMP) {
		if (tls_input(c, 0))
			return;
		drain_frames(c);
	} else if (op == OP_RECV) {
		if (res <= 0) {
			conn_close(c, res == 0 ? "closed by the agent" :
				   strerror(-res));
			return;
		}
		c->t_active = now_ms();
		if (c->tls) {
			if (tls_input(c, res))
				return;
		} else {
			c->rx_len += (size_t)res;
			c->rx_total += (uint64_t)res;
		}
		drain_frames(c);
	} else if (op == OP_SEND) {
		if (res < 0) {
			conn_close(c, strerror(-res));
			return;
		}
		if (c->tls) {
			if (tls_sent(c, res))
				return;
		} else {
			c->tx_off += (size_t)res;
			if (c->tx_off < c->tx_len) {
				arm_send(c);
				return;
			}
		}
		c->tx_len = c->tx_off = 0;
		c->t_active = now_ms();
		if (c->closing) {
			conn_close(c, "");
			return;
		}
		drain_frames(c);
	}
	conn_next(c);
}

/* ---- start-up ----------------------------------------------------------------- */

static int listen_tcp(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	const char *port = colon ? colon + 1 : BVP_DEFAULT_PORT;
	size_t hl = colon ? (size_t)(colon - spec) : strlen(spec);
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *ai = NULL;

	if (hl >= sizeof host) {
		fprintf(stderr, "bvaultd: --listen %s: host too long\n", spec);
		return -1;
	}
	memcpy(host, spec, hl);
	host[hl] = 0;
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	int e = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (e) {
		fprintf(stderr, "bvaultd: --listen %s: %s\n", spec,
			gai_strerror(e));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128)) {
		fprintf(stderr, "bvaultd: --listen %s: %s\n", spec,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char h[64] = "?", p[16] = "?";
	if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
		getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, p,
			    sizeof p, NI_NUMERICHOST | NI_NUMERICSERV);
	logmsg("listening on %s port %s", h, p);
	return fd;
}

/* ---- the --unix socket: one daemon per path ---- */

/* A socket path is served by one bvaultd at a time: PATH.lock (0600),
 * flock'ed for the daemon's life, says a daemon serves PATH, so a second
 * one refuses to start instead of replacing a live socket; a socket found
 * at PATH while the lock is free was left by a daemon that died, and is
 * replaced. At exit a daemon removes PATH only if it is still the socket
 * it bound (same device and inode). The lock file is left: removing it
 * would let two daemons lock two different files. */
static struct {
	int lock_fd;
	int bound;
	dev_t dev;
	ino_t ino;
} U = { .lock_fd = -1 };

static int unix_lock(const char *path)
{
	char lp[PATH_MAX];

	if ((size_t)snprintf(lp, sizeof lp, "%s.lock", path) >= sizeof lp) {
		fprintf(stderr, "bvaultd: --unix %s: path too long\n", path);
		return -1;
	}
	int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		fprintf(stderr, "bvaultd: --unix %s: cannot open its lock file "
			"%s: %s\n", path, lp, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EWOULDBLOCK)
			fprintf(stderr, "bvaultd: --unix %s: another bvaultd "
				"serves this path (it holds %s); stop it or "
				"choose another path\n", path, lp);
		else
			fprintf(stderr, "bvaultd: --unix %s: locking %s: %s\n",
				path, lp, strerror(e));
		close(fd);
		return -1;
	}
	U.lock_fd = fd;
	return 0;
}

/* Removes PATH if it is the socket this daemon bound. */
static void unix_remove(const char *path)
{
	struct stat st;

	if (U.bound && lstat(path, &st) == 0 && st.st_dev == U.dev &&
	    st.st_ino == U.ino)
		unlink(path);
	U.bound = 0;
}
/* ---- end of the --unix socket ---- */

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;

	if (strlen(path) >= sizeof sa.sun_path) {
		fprintf(stderr, "bvaultd: --unix %s: path too long\n", path);
		return -1;
	}
	if (unix_lock(path) < 0)
		return -1;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "bvaultd: --unix %s: exists and is not "
				"a socket\n", path);
			return -1;
		}
		unlink(path); /* left by a daemon that died (the lock was free) */
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
	    listen(fd, 128)) {
		fprintf(stderr, "bvaultd: --unix %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		U.bound = 1;
		U.dev = st.st_dev;
		U.ino = st.st_ino;
	}
	logmsg("listening on %s", path);
	return fd;
}

static void stop_applier(void)
{
	if (!D.applier_started)
		return;
	pthread_mutex_lock(&D.lock);
	D.applier_stop = 1;
	pthread_cond_signal(&D.cond);
	pthread_mutex_unlock(&D.lock);
	pthread_join(D.applier, NULL);
	D.applier_started = 0;
}

/* ---- guard: its flags ---- */

/* With VAL NULL: whether A is one of the guard's flags (1) or not (0).
 * Else sets it from VAL: 0, or -1 after a message (exit 2). */
static int guard_flag(const char *a, const char *val)
{
	static const struct {
		const char *flag;
		unsigned long min, max;
	} F[] = {
		{ "--login-timeout", 1, 3600 },
		{ "--idle-timeout", 1, 7 * 86400 },
		{ "--frame-timeout", 1, 3600 },
		{ "--max-agent-sessions", 1, MAX_CONN },
		{ "--max-connections", 1, MAX_CONN },
		{ "--max-clock-skew", 1, 365 * 86400 },
		{ "--max-agent-connections", 1, MAX_CONN },
	};
	int k = -1;
	for (int j = 0; j < (int)(sizeof F / sizeof F[0]); j++)
		if (!strcmp(a, F[j].flag))
			k = j;
	if (k < 0 || !val)
		return k >= 0;
	char *end;
	errno = 0;
	unsigned long v = strtoul(val, &end, 10);
	if (!*val || *end || errno || v < F[k].min || v > F[k].max ||
	    val[0] == '-') {
		fprintf(stderr, "bvaultd: %s %s: not a number from %lu to "
			"%lu\n", a, val, F[k].min, F[k].max);
		return -1;
	}
	switch (k) {
	case 0: D.login_ms = (int64_t)v * 1000; break;
	case 1: D.idle_ms = (int64_t)v * 1000; break;
	case 2: D.frame_ms = (int64_t)v * 1000; break;
	case 3: D.max_agent_sessions = (int)v; break;
	case 4: D.max_conn = (int)v; break;
	case 5: D.max_skew = (int64_t)v; break;
	default: D.max_agent_conns = (int)v; break;
	}
	return 0;
}
/* ---- end of guard flags ---- */

/* TLS for the TCP listeners: the operator's certificate and key, or the
 * store's own (tls.h), made here at the first start. */
static int tls_start(const char *store, const char *cert, const char *key)
{
	char c[PATH_MAX], k[PATH_MAX], err[800], hex[BVT_FP_HEX];

	if (!cert) {
		int made = bvt_make(store, 0, NULL, 0, err, sizeof err);
		if (made < 0) {
			fprintf(stderr, "bvaultd: TLS: %s\n", err);
			return -1;
		}
		if (made == 0)
			logmsg("made a TLS key and certificate in %s/" BVT_DIR,
			       store);
		if (bvt_path(store, BVT_CERT, c, sizeof c) ||
		    bvt_path(store, BVT_KEY, k, sizeof k))
			return -1;
		cert = c;
		key = k;
	}
	if (!(D.tls_ctx = bvt_server_ctx(cert, key, err, sizeof err))) {
		fprintf(stderr, "bvaultd: %s\n", err);
		return -1;
	}
	if (bvt_file_fingerprint(cert, hex, err, sizeof err)) {
		fprintf(stderr, "bvaultd: %s\n", err);
		return -1;
	}
	logmsg("TLS 1.3 on TCP: certificate sha256:%s", hex);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bvaultd STORE [--listen HOST:PORT] [--unix PATH] "
		   "[--workers N]\n"
		   "               [--max-sessions N] [--ingest-memory SIZE]\n"
		   "               [--gc-interval SECONDS]\n"
		   "       bvaultd --version\n"
		   "Serves the store to bvault-agent (tools/PROTOCOL.md). "
		   "Without --listen or\n--unix it listens on 127.0.0.1:%s. "
		   "Foreground; logs to stderr; SIGTERM or\nSIGINT aborts "
		   "open sessions and exits. At most --max-sessions ingest\n"
		   "sessions are open at once (default %d, at most %d); a "
		   "BEGIN beyond that waits\nfor one to end. Their batches "
		   "share --ingest-memory (default %llu MiB, at\nleast %llu "
		   "MiB). The commands of bvault that change the store are\n"
		   "carried out through STORE/admin.sock, for bvaultd's own "
		   "user only.\n"
		   "--gc-interval: run garbage collection every SECONDS "
		   "(bvault gc; default: only\nwhen asked).\n"
		   "TCP is TLS 1.3 with the store's key (STORE/tls, made at "
		   "the first start;\nbvault tls fingerprint STORE shows what "
		   "agents pin), or --tls-cert FILE\n--tls-key FILE (PEM); "
		   "--no-tls: plain TCP, for a network you trust.\n"
		   "Against hostile peers (seconds; PROTOCOL.md, \"Deadlines "
		   "and limits\"):\n"
		   "  --login-timeout S (default %d)   --idle-timeout S "
		   "(default %d)\n"
		   "  --frame-timeout S (default %d)   --max-connections N "
		   "(default %d, at most)\n"
		   "  --max-agent-sessions N (default %d)  --max-clock-skew S "
		   "(default %d)\n"
		   "  --max-agent-connections N (default %d)\n",
		BVP_DEFAULT_PORT, DEFAULT_SESSIONS, MAX_CONN,
		(unsigned long long)(BV_INGEST_MEMORY_DEFAULT >> 20),
		(unsigned long long)(BV_INGEST_MEMORY_MIN >> 20),
		DEFAULT_LOGIN_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
		DEFAULT_FRAME_TIMEOUT, MAX_CONN, DEFAULT_AGENT_SESSIONS,
		DEFAULT_SKEW, DEFAULT_AGENT_CONNS);
}

int main(int argc, char **argv)
{
	const char *store = NULL, *listen_spec[MAX_LISTEN], *unix_path = NULL;
	const char *tls_cert = NULL, *tls_key = NULL;
	int nl = 0, no_tls = 0;
	unsigned workers = 0;
	uint64_t ingest_memory = 0;

	/* The store is private to its owner (storage/FORMAT.md, "File
	 * modes"): RocksDB makes its files 0644 less the umask and cannot be
	 * told otherwise, so the umask makes them 0600. */
	umask(077);
	if (sodium_init() < 0) {
		fprintf(stderr, "bvaultd: libsodium cannot start\n");
		return 1;
	}
	D.max_sessions = DEFAULT_SESSIONS;
	D.max_skew = DEFAULT_SKEW;
	D.max_agent_sessions = DEFAULT_AGENT_SESSIONS;
	D.max_agent_conns = DEFAULT_AGENT_CONNS;
	D.max_conn = MAX_CONN;
	D.login_ms = DEFAULT_LOGIN_TIMEOUT * 1000;
	D.idle_ms = DEFAULT_IDLE_TIMEOUT * 1000;
	D.frame_ms = DEFAULT_FRAME_TIMEOUT * 1000;
	D.tick.tv_nsec = TICK_MS * 1000000LL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--version")) {
			printf("bvaultd %s\n", bv_version());
			return 0;
		}
		if ((!strcmp(a, "--listen") || !strcmp(a, "--unix") ||
		     !strcmp(a, "--workers") || !strcmp(a, "--max-sessions") ||
		     !strcmp(a, "--ingest-memory") ||
		     !strcmp(a, "--gc-interval") || !strcmp(a, "--tls-cert") ||
		     !strcmp(a, "--tls-key") || guard_flag(a, NULL)) &&
		    i + 1 >= argc) {
			fprintf(stderr, "bvaultd: %s needs a value\n", a);
			return 2;
		}
		if (!strcmp(a, "--listen")) {
			if (nl == MAX_LISTEN - 1) {
				fprintf(stderr, "bvaultd: too many --listen\n");
				return 2;
			}
			listen_spec[nl++] = argv[++i];
		} else if (!strcmp(a, "--unix")) {
			unix_path = argv[++i];
		} else if (!strcmp(a, "--no-tls")) {
			no_tls = 1;
		} else if (!strcmp(a, "--tls-cert")) {
			tls_cert = argv[++i];
		} else if (!strcmp(a, "--tls-key")) {
			tls_key = argv[++i];
		} else if (!strcmp(a, "--workers")) {
			char *end;
			unsigned long w = strtoul(argv[++i], &end, 10);
			if (*end || w == 0 || w > 64) {
				fprintf(stderr, "bvaultd: --workers %s: not a "
					"number from 1 to 64\n", argv[i]);
				return 2;
			}
			workers = (unsigned)w;
		} else if (!strcmp(a, "--max-sessions")) {
			char *end;
			unsigned long m = strtoul(argv[++i], &end, 10);
			if (*end || m == 0 || m > MAX_CONN) {
				fprintf(stderr, "bvaultd: --max-sessions %s: "
					"not a number from 1 to %d\n", argv[i],
					MAX_CONN);
				return 2;
			}
			D.max_sessions = (int)m;
		} else if (!strcmp(a, "--ingest-memory")) {
			const char *why = parse_size(argv[++i], &ingest_memory);
			if (!why && ingest_memory < BV_INGEST_MEMORY_MIN)
				why = "below the least";
			if (why) {
				fprintf(stderr, "bvaultd: --ingest-memory %s: "
					"%s (a size of at least %llu MiB)\n",
					argv[i], why, (unsigned long long)
					(BV_INGEST_MEMORY_MIN >> 20));
				return 2;
			}
		} else if (!strcmp(a, "--gc-interval")) {
			char *end;
			unsigned long g = strtoul(argv[++i], &end, 10);
			if (*end || !*argv[i] || g == 0 || g > 31u * 86400) {
				fprintf(stderr, "bvaultd: --gc-interval %s: "
					"not a number of seconds from 1 to "
					"%u\n", argv[i], 31u * 86400);
				return 2;
			}
			GC.interval = (unsigned)g;
		} else if (guard_flag(a, NULL)) {
			if (guard_flag(a, argv[++i]) < 0)
				return 2;
		} else if (a[0] == '-') {
			fprintf(stderr, "bvaultd: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		} else if (!store) {
			store = a;
		} else {
			fprintf(stderr, "bvaultd: one STORE only ('%s')\n", a);
			return 2;
		}
	}
	if (!store) {
		usage(stderr);
		return 2;
	}
	if (!nl && !unix_path)
		listen_spec[nl++] = "127.0.0.1:" BVP_DEFAULT_PORT;
	if (!tls_cert != !tls_key) {
		fprintf(stderr, "bvaultd: give --tls-cert and --tls-key "
			"together\n");
		return 2;
	}
	if (no_tls && tls_cert) {
		fprintf(stderr, "bvaultd: --no-tls takes no --tls-cert\n");
		return 2;
	}

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	D.sfd = signalfd(-1, &ss, SFD_CLOEXEC);

	/* Admin commands run in their caller's directory: the store's path
	 * must not depend on the working directory. */
	char abs_store[PATH_MAX];
	if (!realpath(store, abs_store)) {
		fprintf(stderr, "bvaultd: %s: %s\n", store, strerror(errno));
		return 1;
	}
	store = abs_store;
	bv_open_opts oo = { .workers = workers,
			    .ingest_memory = ingest_memory };
	int rc = bv_store_open(store, &oo, &D.s);
	if (rc < 0) {
		fprintf(stderr, "bvaultd: %s\n", D.s ? bv_store_error(D.s) :
			bv_strerror(rc));
		bv_store_close(D.s);
		return 1;
	}
	D.store_path = store;
	/* After the writer lock: a socket file there is an earlier run's. */
	CTR.start_time = (uint64_t)time(NULL);
	admin_set_counters(counters_text);
	if (admin_start(D.s, store, logmsg) < 0)
		goto fail;
	if (nl && !no_tls && tls_start(store, tls_cert, tls_key))
		goto fail;
	for (int i = 0; i < nl; i++) {
		D.ltls[D.nlisten] = !no_tls;
		if ((D.lfd[D.nlisten++] = listen_tcp(listen_spec[i])) < 0)
			goto fail;
	}
	if (unix_path && (D.lfd[D.nlisten++] = listen_unix(unix_path)) < 0)
		goto fail;
	if ((rc = io_uring_queue_init(RING_DEPTH, &D.ring, 0)) < 0) {
		fprintf(stderr, "bvaultd: io_uring: %s\n", strerror(-rc));
		goto fail;
	}
	D.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (D.wakefd < 0 || pthread_create(&D.applier, NULL, applier_main,
					   NULL)) {
		fprintf(stderr, "bvaultd: cannot start the applier thread: %s\n",
			strerror(errno));
		goto fail;
	}
	D.applier_started = 1;
	if (GC.interval) {
		if (pthread_create(&GC.thread, NULL, gc_main, NULL)) {
			fprintf(stderr, "bvaultd: cannot start the gc thread: "
				"%s\n", strerror(errno));
			goto fail;
		}
		GC.started = 1;
		logmsg("garbage collection every %u s", GC.interval);
	}
	for (int i = 0; i < D.nlisten; i++)
		arm_accept(i);
	arm_signal();
	arm_wake();
	arm_tick();
	logmsg("serving store %s", store);

	while (!D.stopping) {
		struct io_uring_cqe *cqe;
		rc = io_uring_submit_and_wait(&D.ring, 1);
		if (rc < 0 && rc != -EINTR) {
			logmsg("io_uring: %s", strerror(-rc));
			break;
		}
		unsigned head, n = 0;
		io_uring_for_each_cqe(&D.ring, head, cqe) {
			on_cqe(cqe);
			n++;
		}
		io_uring_cq_advance(&D.ring, n);
		counters_gauges();
	}

	/* The applier stops after the buffer it works on; the rest of its
	 * queue is dropped, since every open session is aborted. Then the
	 * ring goes, with whatever it had in flight, and the connections
	 * close with nothing of theirs in use. */
	stop_applier();
	io_uring_queue_exit(&D.ring);
	int open_sessions = 0;
	for (int i = 0; i < NSLOT; i++) {
		struct conn *c = &D.conns[i];
		open_sessions += c->in != NULL;
		c->busy = 0;
		conn_close_how(c, "the server stopped", 1);
	}
	logmsg("stopped (%d open session%s aborted)", open_sessions,
	       open_sessions == 1 ? "" : "s");
	close(D.wakefd);
	for (int i = 0; i < D.nlisten; i++)
		close(D.lfd[i]);
	if (unix_path)
		unix_remove(unix_path);
	gc_stop();
	admin_stop();
	bv_store_close(D.s);
	SSL_CTX_free(D.tls_ctx);
	return 0;
fail:
	gc_stop();
	admin_stop();
	stop_applier();
	if (D.wakefd >= 0)
		close(D.wakefd);
	for (int i = 0; i < D.nlisten; i++)
		if (D.lfd[i] >= 0)
			close(D.lfd[i]);
	if (unix_path)
		unix_remove(unix_path);
	bv_store_close(D.s);
	return 1;
}
