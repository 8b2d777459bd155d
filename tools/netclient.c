/*
 * netclient.c: the client end of the bvaultd protocol, shared by
 * bvault-agent and bvault push (netclient.h says the contract).
 */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <signal.h>
#include <sodium.h>

#include "netclient.h"
#include "proto.h"
#include "tls.h"

__attribute__((format(printf, 2, 3)))
static int fail(struct nc *nc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(nc->err, sizeof nc->err, fmt, ap);
	va_end(ap);
	return -1;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits as long as the bandwidth limit asks before LEN more bytes go. */
static void pace(struct nc *nc, size_t len)
{
	if (!nc->bandwidth)
		return;
	double t = mono();
	if (nc->sent_until < t)
		nc->sent_until = t;
	nc->sent_until += (double)len / (double)nc->bandwidth;
	double wait = nc->sent_until - t;
	if (wait > 0) {
		struct timespec ts = { (time_t)wait,
				       (long)((wait - (double)(time_t)wait) *
					      1e9) };
		nanosleep(&ts, NULL);
	}
}

/* A failed SSL_read or SSL_write (RC its result): why, into NC->err. */
static int tls_failed(struct nc *nc, int rc, const char *doing)
{
	int e = SSL_get_error(nc->ssl, rc), se = errno;
	char ossl[400];
	bvt_errors(ossl, sizeof ossl);
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !se))
		return fail(nc, "the server closed the connection");
	if (e == SSL_ERROR_SYSCALL)
		return fail(nc, "the server closed the connection: %s",
			    strerror(se));
	return fail(nc, "%s over TLS: %s", doing, ossl[0] ? ossl :
		    "a TLS error");
}

static int recv_all(struct nc *nc, void *p, size_t n)
{
	uint8_t *q = p;
	while (n) {
		if (nc->ssl) {
			int k = SSL_read(nc->ssl, q, n > INT32_MAX ? INT32_MAX :
					 (int)n);
			if (k <= 0)
				return tls_failed(nc, k, "receiving");
			q += k;
			n -= (size_t)k;
			continue;
		}
		ssize_t k = recv(nc->fd, q, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return fail(nc, "the server closed the connection%s%s",
				    k < 0 ? ": " : "",
				    k < 0 ? strerror(errno) : "");
		q += k;
		n -= (size_t)k;
	}
	return 0;
}

/* nc_send_parts over TLS: both parts, each as one SSL_write (whole, on
 * a blocking socket). A server that closed may have said why first. */
static int tls_send(struct nc *nc, const uint8_t *head, size_t hl,
		    const uint8_t *data, size_t dl)
{
	const uint8_t *part[2] = { head, data };
	size_t len[2] = { hl, dl };
	for (int i = 0; i < 2; i++) {
		if (!len[i])
			continue;
		int k = SSL_write(nc->ssl, part[i], (int)len[i]);
		if (k > 0)
			continue;
		int e = SSL_get_error(nc->ssl, k), se = errno;
		ERR_clear_error();
		if (e == SSL_ERROR_SYSCALL && (se == EPIPE ||
					       se == ECONNRESET)) {
			char why[sizeof nc->err];
			if (nc_answer(nc, NULL, 0) == NC_ERROR) {
				snprintf(why, sizeof why, "%s", nc->err);
				return fail(nc, "the server closed the "
					    "connection: %s", why);
			}
			errno = se;
		}
		return tls_failed(nc, k, "sending");
	}
	/* The records wait in the write buffer (tls_start) until here: one
	 * system call per frame part instead of one per 16 KiB record. */
	if (BIO_flush(SSL_get_wbio(nc->ssl)) != 1) {
		int se = errno;
		ERR_clear_error();
		return fail(nc, "sending to the server: %s",
			    se ? strerror(se) : "the connection failed");
	}
	return 0;
}

int nc_send_parts(struct nc *nc, const uint8_t *head, size_t hl,
		  const uint8_t *data, size_t dl)
{
	struct iovec iov[2] = { { (void *)head, hl }, { (void *)data, dl } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = dl ? 2 : 1 };

	pace(nc, hl + dl);
	if (nc->ssl)
		return tls_send(nc, head, hl, data, dl);
	while (mh.msg_iovlen) {
		ssize_t k = sendmsg(nc->fd, &mh, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			/* The server may have said why before it closed (a
			 * busy server, a deadline): its ERROR is the reason. */
			int e = errno;
			char why[sizeof nc->err];
			if (nc_answer(nc, NULL, 0) == NC_ERROR) {
				snprintf(why, sizeof why, "%s", nc->err);
				return fail(nc, "the server closed the "
					    "connection: %s", why);
			}
			return fail(nc, "sending to the server: %s",
				    strerror(e));
		}
		if (k <= 0)
			return fail(nc, "sending to the server: %s", k < 0 ?
				    strerror(errno) : "connection closed");
		while (mh.msg_iovlen && (size_t)k >= mh.msg_iov[0].iov_len) {
			k -= (ssize_t)mh.msg_iov[0].iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + k;
			mh.msg_iov[0].iov_len -= (size_t)k;
		}
	}
	return 0;
}

int nc_send(struct nc *nc, uint8_t type, size_t len)
{
	bvp_header(nc->frame, type, (uint32_t)len);
	return nc_send_parts(nc, nc->frame, BVP_HDR + len, NULL, 0);
}

int nc_send_data(struct nc *nc, uint32_t slot, uint64_t off, const void *buf,
		 size_t len)
{
	uint8_t head[BVP_HDR + 12];

	if (len > BVP_DATA_MAX)
		return fail(nc, "a DATA record of %zu bytes (at most %u)", len,
			    BVP_DATA_MAX);
	bvp_header(head, BVP_DATA, (uint32_t)(12 + len));
	bvp_put32(head + BVP_HDR, slot);
	bvp_put64(head + BVP_HDR + 4, off);
	return nc_send_parts(nc, head, sizeof head, buf, len);
}

int nc_send_zero(struct nc *nc, uint32_t slot, uint64_t off, uint64_t len)
{
	uint8_t *p = nc->frame + BVP_HDR;
	bvp_put32(p, slot);
	bvp_put64(p + 4, off);
	bvp_put64(p + 12, len);
	return nc_send(nc, BVP_ZERO, 20);
}

int nc_send_resize(struct nc *nc, uint32_t slot, uint64_t size)
{
	uint8_t *p = nc->frame + BVP_HDR;
	bvp_put32(p, slot);
	bvp_put64(p + 4, size);
	return nc_send(nc, BVP_RESIZE, 12);
}

int nc_send_commit(struct nc *nc, int make_rp, int consistency, int64_t time,
		   const char *label, uint64_t number)
{
	uint8_t *p = nc->frame + BVP_HDR;
	size_t ll = label ? strlen(label) : 0;

	if (ll > 127)
		return fail(nc, "label '%.20s...': longer than 127 bytes", label);
	p[0] = make_rp ? 1 : 0;
	p[1] = (uint8_t)consistency;
	bvp_put64(p + 2, (uint64_t)time);
	p[10] = (uint8_t)ll;
	memcpy(p + 11, label ? label : "", ll);
	if (number)
		bvp_put64(p + 11 + ll, number);
	return nc_send(nc, BVP_COMMIT, 11 + ll + (number ? 8 : 0));
}

long nc_answer(struct nc *nc, uint8_t *out, size_t cap)
{
	uint8_t h[BVP_HDR];
	long rc;

	nc->code = 0;
	if (recv_all(nc, h, sizeof h))
		return -1;
	uint32_t len = bvp_get32(h);
	if (len > BVP_PAYLOAD_MAX)
		return fail(nc, "the server sent a frame of %u bytes", len);
	uint8_t *p = malloc(len ? len : 1);
	if (!p)
		return fail(nc, "out of memory");
	if (recv_all(nc, p, len)) {
		free(p);
		return -1;
	}
	if (h[4] == BVP_ERROR) {
		struct bvp_rd r = { p, len, 0 };
		nc->code = bvp_u16(&r);
		uint16_t ml = bvp_u16(&r);
		const uint8_t *m = bvp_take(&r, ml);
		snprintf(nc->err, sizeof nc->err, "%.*s", m ? (int)ml : 0,
			 m ? (const char *)m : "");
		if (!nc->code)
			nc->code = BVP_E_PROTO;
		rc = NC_ERROR;
	} else if (h[4] == BVP_OK || h[4] == BVP_CHALLENGE) {
		if (out && cap && len)
			memcpy(out, p, len < cap ? len : cap);
		rc = (long)len;
	} else {
		rc = fail(nc, "the server sent message type 0x%02x", h[4]);
	}
	free(p);
	return rc;
}

static int connect_unix(struct nc *nc, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sa.sun_path)
		return fail(nc, "--unix %s: path too long", path);
	strcpy(sa.sun_path, path);
	nc->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (nc->fd < 0 || connect(nc->fd, (struct sockaddr *)&sa, sizeof sa))
		return fail(nc, "cannot connect to %s: %s", path,
			    strerror(errno));
	return 0;
}

/* HOST (256 bytes) is set to the host part of SERVER. */
static int connect_tcp(struct nc *nc, const char *server, char host[256])
{
	const char *colon = strrchr(server, ':');
	const char *port = colon ? colon + 1 : BVP_DEFAULT_PORT;
	size_t hl = colon ? (size_t)(colon - server) : strlen(server);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *p;
	int e, err = 0, one = 1;

	if (hl >= 256)
		return fail(nc, "--server %s: host too long", server);
	memcpy(host, server, hl);
	host[hl] = 0;
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	if ((e = getaddrinfo(host, port, &hints, &ai)))
		return fail(nc, "--server %s: %s", server, gai_strerror(e));
	for (p = ai; p && nc->fd < 0; p = p->ai_next) {
		nc->fd = socket(p->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (nc->fd >= 0 && connect(nc->fd, p->ai_addr, p->ai_addrlen)) {
			err = errno;
			close(nc->fd);
			nc->fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (nc->fd < 0)
		return fail(nc, "cannot connect to %s: %s", server,
			    strerror(err ? err : errno));
	setsockopt(nc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return 0;
}

int nc_tls_option(struct nc_tls *t, const char *flag, const char *val,
		  char *err, size_t cap)
{
	uint8_t fp[BVT_FP];
	if (!strcmp(flag, "--no-tls")) {
		t->plain = 1;
		return 1;
	}
	if (!strcmp(flag, "--fingerprint")) {
		if (!val || bvt_parse_fingerprint(val, fp)) {
			snprintf(err, cap, "--fingerprint %s: not a SHA-256 "
				 "fingerprint (64 hex digits, as `bvault tls "
				 "fingerprint STORE` prints it)",
				 val ? val : "(missing)");
			return -1;
		}
		t->fingerprint = val;
		return 1;
	}
	if (!strcmp(flag, "--ca")) {
		if (!val || !val[0]) {
			snprintf(err, cap, "--ca needs a file");
			return -1;
		}
		t->ca = val;
		return 1;
	}
	return 0;
}

/* The TLS handshake on NC->fd, then the server's certificate checked as
 * TLS says; HOST is what --server named. */
static int tls_start(struct nc *nc, const char *server, const char *host,
		     const struct nc_tls *tls)
{
	uint8_t want[BVT_FP], got[BVT_FP];
	char err[600], hgot[BVT_FP_HEX], hwant[BVT_FP_HEX];

	/* OpenSSL writes to the socket without MSG_NOSIGNAL: a server that
	 * closed must give an error, not a SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (!(nc->ssl_ctx = bvt_client_ctx(tls->ca, err, sizeof err)))
		return fail(nc, "%s", err);
	if (!(nc->ssl = SSL_new(nc->ssl_ctx)) ||
	    SSL_set_fd(nc->ssl, nc->fd) != 1 ||
	    (tls->ca && bvt_client_host(nc->ssl, host))) {
		bvt_errors(err, sizeof err);
		return fail(nc, "cannot start TLS: %s", err);
	}
	/* Writes go through a buffer of a few records, flushed per frame
	 * (tls_send); reads stay on the plain socket BIO. */
	BIO *wsock = BIO_new_socket(nc->fd, BIO_NOCLOSE);
	BIO *wbuf = BIO_new(BIO_f_buffer());
	if (!wsock || !wbuf ||
	    BIO_set_write_buffer_size(wbuf, 256 << 10) != 1) {
		BIO_free(wsock);
		BIO_free(wbuf);
		bvt_errors(err, sizeof err);
		return fail(nc, "cannot start TLS: %s", err);
	}
	SSL_set0_wbio(nc->ssl, BIO_push(wbuf, wsock));
	int rc = SSL_connect(nc->ssl);
	if (rc != 1) {
		long v = SSL_get_verify_result(nc->ssl);
		int e = SSL_get_error(nc->ssl, rc), se = errno;
		bvt_errors(err, sizeof err);
		SSL_free(nc->ssl);
		nc->ssl = NULL;
		if (tls->ca && v != X509_V_OK)
			return fail(nc, "the server %s is not trusted by --ca "
				    "%s: %s", server, tls->ca,
				    X509_verify_cert_error_string(v));
		if (e == SSL_ERROR_SYSCALL)
			return fail(nc, "TLS handshake with %s: the server "
				    "closed the connection%s%s (is it at its "
				    "--max-connections, or not a bvaultd?)",
				    server, se ? ": " : "",
				    se ? strerror(se) : "");
		return fail(nc, "TLS handshake with %s failed: %s (is it a "
			    "bvaultd started with --no-tls?)", server,
			    err[0] ? err : "a TLS error");
	}
	if (bvt_peer_fingerprint(nc->ssl, got))
		return fail(nc, "the server %s sent no certificate", server);
	bvt_hex(got, hgot);
	if (tls->fingerprint) {
		bvt_parse_fingerprint(tls->fingerprint, want);
		bvt_hex(want, hwant);
		if (sodium_memcmp(want, got, BVT_FP))
			return fail(nc, "the server %s presented the "
				    "certificate sha256:%s, not the pinned "
				    "sha256:%s: refusing it (another server, "
				    "or a machine in the middle; if the "
				    "server's key was renewed, check `bvault "
				    "tls fingerprint STORE` there)", server,
				    hgot, hwant);
	} else if (!tls->ca) {
		return fail(nc, "the server %s is not pinned: its certificate "
			    "is sha256:%s; check that with `bvault tls "
			    "fingerprint STORE` on the server, then give "
			    "--fingerprint %s (or --ca FILE)", server, hgot,
			    hgot);
	}
	if (bvt_binding(nc->ssl, nc->binding))
		return fail(nc, "TLS with %s: no channel binding", server);
	return 0;
}

int nc_connect(struct nc *nc, const char *server, const char *unix_path,
	       const struct nc_tls *tls)
{
	static const struct nc_tls pin_nothing;
	char host[256];

	memset(nc, 0, sizeof *nc);
	nc->fd = -1;
	nc->frame = malloc(BVP_HDR + BVP_PAYLOAD_MAX);
	if (!nc->frame)
		return fail(nc, "out of memory");
	if (unix_path)
		return connect_unix(nc, unix_path);
	if (!tls)
		tls = &pin_nothing;
	if (connect_tcp(nc, server, host))
		return -1;
	return tls->plain ? 0 : tls_start(nc, server, host, tls);
}

static int read_secret(struct nc *nc, const char *file, uint8_t key[32])
{
	FILE *f = fopen(file, "r");
	char hex[128] = "";
	if (!f)
		return fail(nc, "--secret-file %s: %s", file, strerror(errno));
	if (!fgets(hex, sizeof hex, f))
		hex[0] = 0;
	fclose(f);
	size_t n = strcspn(hex, "\r\n");
	hex[n] = 0;
	if (n != 64)
		return fail(nc, "--secret-file %s: not a secret (64 hex "
			    "digits, as 'bvault agent add' prints it)", file);
	for (int i = 0; i < 32; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return fail(nc, "--secret-file %s: not hex", file);
		key[i] = (uint8_t)v;
	}
	sodium_memzero(hex, sizeof hex);
	return 0;
}

/* An answer that must be OK; an ERROR becomes a failure. */
static long must(struct nc *nc, uint8_t *out, size_t cap)
{
	long n = nc_answer(nc, out, cap);
	return n == NC_ERROR ? -1 : n;
}

/* Reads a line "PREFIX <2N hex digits>" of FILE into OUT (N bytes). */
static int read_key_line(const char *file, const char *prefix, uint8_t *out,
			 size_t n, char *err, size_t cap)
{
	char line[300] = "";
	size_t pl = strlen(prefix);
	int rc = -1;
	FILE *f = fopen(file, "r");

	if (!f) {
		snprintf(err, cap, "%s: %s", file, strerror(errno));
		return -1;
	}
	if (!fgets(line, sizeof line, f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	if (strncmp(line, prefix, pl) || line[pl] != ' ' ||
	    strlen(line + pl + 1) != 2 * n) {
		snprintf(err, cap, "%s: not a %s file (a line '%s' and %zu "
			 "hex digits, as 'bvault-agent keygen' writes it)",
			 file, prefix, prefix, 2 * n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		const char *h = line + pl + 1 + 2 * i;
		if (!isxdigit((unsigned char)h[0]) ||
		    !isxdigit((unsigned char)h[1]) ||
		    sscanf(h, "%2x", &v) != 1) {
			snprintf(err, cap, "%s: not hex", file);
			goto out;
		}
		out[i] = (uint8_t)v;
	}
	rc = 0;
out:
	sodium_memzero(line, sizeof line);
	if (rc)
		sodium_memzero(out, n);
	return rc;
}

int nc_read_public_key(const char *file, uint8_t pk[NC_PUBLIC_KEY],
		       char *err, size_t cap)
{
	return read_key_line(file, NC_PUBLIC_PREFIX, pk, NC_PUBLIC_KEY, err,
			     cap);
}

int nc_read_private_key(const char *file, uint8_t sk[NC_PRIVATE_KEY],
			char *err, size_t cap)
{
	_Static_assert(NC_PRIVATE_KEY == crypto_sign_SECRETKEYBYTES &&
		       NC_PUBLIC_KEY == crypto_sign_PUBLICKEYBYTES,
		       "Ed25519 sizes");
	return read_key_line(file, NC_PRIVATE_PREFIX, sk, NC_PRIVATE_KEY, err,
			     cap);
}

/* HELLO, CHALLENGE, then AUTH with the HMAC under SECRET, or (SECRET
 * NULL) AUTH_SIG with the signature by SK. */
static int login(struct nc *nc, const char *name, const uint8_t *secret,
		 const uint8_t *sk)
{
	uint8_t nonce[BVP_NONCE], msg[256],
		mac[crypto_auth_hmacsha256_BYTES];
	uint8_t *p = nc->frame + BVP_HDR;
	size_t nl = strlen(name), ml = 0;
	long n;

	memcpy(p, BVP_MAGIC, 8);
	bvp_put16(p + 8, BVP_VERSION);
	p[10] = (uint8_t)nl;
	memcpy(p + 11, name, nl);
	if (nc_send(nc, BVP_HELLO, 11 + nl) ||
	    (n = must(nc, nonce, sizeof nonce)) < 0)
		return -1;
	if (n != BVP_NONCE)
		return fail(nc, "the server's challenge is not %d bytes",
			    BVP_NONCE);
	_Static_assert(BVP_PROOF_MSG_MAX <= sizeof msg &&
		       BVP_SIG == crypto_sign_BYTES, "sizes");
	const uint8_t *binding = nc->ssl ? nc->binding : NULL;
	ml = bvp_proof_message(msg, !secret, nonce, binding, name);
	if (!secret) {
		crypto_sign_detached(nc->frame + BVP_HDR, NULL, msg, ml, sk);
		if (nc_send(nc, BVP_AUTH_SIG, BVP_SIG) || must(nc, NULL, 0) < 0)
			return -1;
		return 0;
	}
	_Static_assert(sizeof mac == BVP_MAC, "HMAC-SHA256 sizes");
	crypto_auth_hmacsha256(mac, msg, ml, secret);
	memcpy(nc->frame + BVP_HDR, mac, BVP_MAC);
	if (nc_send(nc, BVP_AUTH, BVP_MAC) || must(nc, NULL, 0) < 0)
		return -1;
	return 0;
}

int nc_login(struct nc *nc, const char *name, const char *secret_file)
{
	uint8_t key[crypto_auth_hmacsha256_KEYBYTES];
	size_t nl = strlen(name);
	int rc;

	if (nl == 0 || nl > 63)
		return fail(nc, "agent name '%s': 1 to 63 bytes", name);
	if (sodium_init() < 0)
		return fail(nc, "libsodium cannot start");
	if (read_secret(nc, secret_file, key))
		return -1;
	rc = login(nc, name, key, NULL);
	sodium_memzero(key, sizeof key);
	return rc;
}

int nc_login_key(struct nc *nc, const char *name, const char *key_file)
{
	uint8_t sk[NC_PRIVATE_KEY];
	char err[600];
	size_t nl = strlen(name);
	int rc;

	if (nl == 0 || nl > 63)
		return fail(nc, "agent name '%s': 1 to 63 bytes", name);
	if (sodium_init() < 0)
		return fail(nc, "libsodium cannot start");
	if (nc_read_private_key(key_file, sk, err, sizeof err))
		return fail(nc, "--key %s", err);
	rc = login(nc, name, NULL, sk);
	sodium_memzero(sk, sizeof sk);
	return rc;
}

void nc_close(struct nc *nc)
{
	if (nc->ssl) {
		SSL_shutdown(nc->ssl); /* close_notify, not waited for */
		SSL_free(nc->ssl);
		ERR_clear_error();
	}
	SSL_CTX_free(nc->ssl_ctx);
	nc->ssl = NULL;
	nc->ssl_ctx = NULL;
	if (nc->fd >= 0)
		close(nc->fd);
	nc->fd = -1;
	free(nc->frame);
	nc->frame = NULL;
}

int nc_parse_rate(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	uint64_t m = 1;

	if (end == s)
		return -1;
	if (*end == 'K' || *end == 'k')
		m = 1u << 10;
	else if (*end == 'M' || *end == 'm')
		m = 1u << 20;
	else if (*end == 'G' || *end == 'g')
		m = 1u << 30;
	else if (*end)
		return -1;
	if (*end && end[1])
		return -1;
	if (!(v > 0) || v * (double)m > 1e18)
		return -1;
	*out = (uint64_t)(v * (double)m);
	return *out ? 0 : -1;
}
