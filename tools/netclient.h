/*
 * netclient.h: the client end of the bvaultd protocol (tools/PROTOCOL.md)
 * that bvault-agent and bvault push share: connecting over TCP or a Unix
 * socket, the HMAC login, frames out (paced by a bandwidth limit) and
 * answers in.
 *
 * Every function returns 0 (or a length) on success and -1 on failure,
 * with NC->err naming what went wrong; a failed call leaves the
 * connection good only for nc_close(). An ERROR answer is not a failure
 * of the connection: nc_answer() returns NC_ERROR with NC->code and
 * NC->err set from it, and the connection goes on.
 */
#ifndef BV_NETCLIENT_H
#define BV_NETCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define NC_ERROR (-2)

struct nc {
	int fd;
	SSL_CTX *ssl_ctx;     /* over TLS (TCP unless --no-tls), else NULL */
	SSL *ssl;
	uint8_t binding[32];  /* its RFC 9266 channel binding */
	uint64_t bandwidth;   /* bytes per second, 0: no limit */
	double sent_until;    /* pacing: when what was sent is due */
	uint8_t *frame;       /* BVP_HDR + BVP_PAYLOAD_MAX: the frame to send,
			       * its payload at frame + BVP_HDR */
	uint16_t code;        /* the last ERROR's code, else 0 */
	char err[1200];
};

/* How a TCP connection trusts the server (tools/PROTOCOL.md, "TLS"):
 * TLS 1.3, and the server's certificate must have the SHA-256
 * FINGERPRINT (--fingerprint) and/or chain to the authorities in the PEM
 * file CA (--ca, with the host name checked). With neither, the
 * connection is refused once the handshake showed the fingerprint to
 * pin. PLAIN (--no-tls): no TLS, for a bvaultd started with --no-tls. */
struct nc_tls {
	int plain;
	const char *fingerprint;
	const char *ca;
};
/* Takes one of --fingerprint HEX, --ca FILE, --no-tls (FLAG, with VAL
 * its value) into T: 1 if FLAG is one of them, 0 if not, -1 (ERR, CAP
 * bytes, says why) if VAL is bad. */
int nc_tls_option(struct nc_tls *t, const char *flag, const char *val,
		  char *err, size_t cap);
/* The usage lines of those flags. */
#define NC_TLS_USAGE \
"  --fingerprint HEX   the server's certificate, pinned (from `bvault tls\n" \
"                      fingerprint STORE` on the server)\n" \
"  --ca FILE           trust servers whose certificate chains to FILE's\n" \
"                      (PEM) and names the host\n" \
"  --no-tls            plain TCP, to a bvaultd started with --no-tls\n"

/* Connects to SERVER (HOST:PORT, [V6]:PORT or HOST, port 7468) over TLS
 * as TLS says (NULL: TLS, nothing pinned) or, when UNIX_PATH is not
 * NULL, to that socket (plain: the socket's permissions guard it);
 * allocates NC->frame. NC is zeroed first: set bandwidth after. */
int nc_connect(struct nc *nc, const char *server, const char *unix_path,
	       const struct nc_tls *tls);
/* HELLO, CHALLENGE, AUTH as agent NAME with the secret in SECRET_FILE
 * (64 hex digits, as bvault agent add writes it). */
int nc_login(struct nc *nc, const char *name, const char *secret_file);
/* The same with AUTH_SIG: signed with the Ed25519 private key in KEY_FILE
 * (as bvault-agent keygen writes it). */
int nc_login_key(struct nc *nc, const char *name, const char *key_file);

/* Agent key files (bvault-agent keygen): one line each, a versioned
 * prefix, a space, the key in hex. The private file holds libsodium's
 * 64-byte Ed25519 secret key (seed and public key). */
#define NC_PUBLIC_PREFIX "bvault-ed25519-v1"
#define NC_PRIVATE_PREFIX "bvault-ed25519-private-v1"
#define NC_PUBLIC_KEY 32
#define NC_PRIVATE_KEY 64
/* Read a public / private key file into PK / SK; -1 with ERR (CAP bytes)
 * saying why. */
int nc_read_public_key(const char *file, uint8_t pk[NC_PUBLIC_KEY],
		       char *err, size_t cap);
int nc_read_private_key(const char *file, uint8_t sk[NC_PRIVATE_KEY],
			char *err, size_t cap);
/* Sends the frame of TYPE whose LEN bytes of payload are at
 * NC->frame + BVP_HDR. */
int nc_send(struct nc *nc, uint8_t type, size_t len);
/* Sends HEAD (a header and fields) and DATA (may be NULL) as one frame,
 * without copying DATA. */
int nc_send_parts(struct nc *nc, const uint8_t *head, size_t hl,
		  const uint8_t *data, size_t dl);
/* The change records (no answer): DATA of LEN bytes of BUF (at most
 * BVP_DATA_MAX, not copied), ZERO, RESIZE, for session slot SLOT. */
int nc_send_data(struct nc *nc, uint32_t slot, uint64_t off, const void *buf,
		 size_t len);
int nc_send_zero(struct nc *nc, uint32_t slot, uint64_t off, uint64_t len);
int nc_send_resize(struct nc *nc, uint32_t slot, uint64_t size);
/* COMMIT: MAKE_RP 0 or 1, CONSISTENCY 0 or 1, TIME (0: now), LABEL (may
 * be NULL; at most 127 bytes), NUMBER the RP's number (0: the next, and
 * the field is left out, as agents send it). */
int nc_send_commit(struct nc *nc, int make_rp, int consistency, int64_t time,
		   const char *label, uint64_t number);
/* Reads the next answer: OK's (or CHALLENGE's) payload into OUT (its
 * first CAP bytes) and its whole length returned; ERROR: NC_ERROR. */
long nc_answer(struct nc *nc, uint8_t *out, size_t cap);
/* Closes the connection and frees NC->frame; a closed NC is fine. */
void nc_close(struct nc *nc);
/* A rate as --bandwidth takes it (bytes per second; K, M, G suffixes,
 * powers of 1024) into *OUT; -1 if S is not one (more than 0). */
int nc_parse_rate(const char *s, uint64_t *out);

#endif
