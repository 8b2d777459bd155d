/*
 * tls.h: TLS 1.3 for bvaultd's TCP listeners and their clients
 * (tools/PROTOCOL.md, "TLS"), over OpenSSL.
 *
 * A store's server key and its self-signed certificate live in
 * STORE/tls/ (key.pem, cert.pem, both 0600 in a 0700 directory), made by
 * `bvault tls init` or by bvaultd's first start with a TCP listener. An
 * agent trusts a server by the SHA-256 fingerprint of its certificate
 * (the DER bytes, as `openssl x509 -fingerprint -sha256` prints it), by
 * a certificate authority, or both.
 *
 * Every function that can fail returns 0 (or a pointer) on success and
 * -1 (or NULL) with ERR (CAP bytes) naming the object and what is wrong,
 * OpenSSL's reason included.
 */
#ifndef BV_TOOLS_TLS_H
#define BV_TOOLS_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define BVT_DIR "tls"
#define BVT_KEY "key.pem"
#define BVT_CERT "cert.pem"
#define BVT_FP 32                 /* SHA-256 */
#define BVT_FP_HEX (2 * BVT_FP + 1)
/* RFC 9266: tls-exporter channel binding, 32 bytes */
#define BVT_BINDING 32

/* STORE/tls/NAME into OUT (CAP bytes); -1 if it does not fit. */
int bvt_path(const char *store, const char *name, char *out, size_t cap);

/* Makes a new P-256 key and a self-signed certificate for it (the host's
 * name, localhost and the loopback addresses, plus NAMES[0..NN) as DNS
 * names or IP addresses) in STORE/tls/. With REPLACE 0 an existing
 * STORE/tls is kept and 1 returned; with REPLACE 1 it is swapped for the
 * new one in one rename. A crash leaves the old pair or the new one,
 * never half of each. */
int bvt_make(const char *store, int replace, const char *const *names,
	     int nn, char *err, size_t cap);

/* The fingerprint of the certificate in the PEM file CERT, as hex. */
int bvt_file_fingerprint(const char *cert, char hex[BVT_FP_HEX], char *err,
			 size_t cap);
/* The fingerprint of the peer's certificate on SSL (none: -1). */
int bvt_peer_fingerprint(SSL *ssl, uint8_t fp[BVT_FP]);
void bvt_hex(const uint8_t fp[BVT_FP], char hex[BVT_FP_HEX]);
/* A fingerprint as an operator writes it: 64 hex digits, any case,
 * pairs may be separated by ':', an optional "sha256:" or "SHA256="
 * prefix. -1 if S is not one. */
int bvt_parse_fingerprint(const char *s, uint8_t fp[BVT_FP]);

/* A server context (TLS 1.3 only, no session tickets) over the PEM
 * certificate chain CERT and private key KEY. */
SSL_CTX *bvt_server_ctx(const char *cert, const char *key, char *err,
			size_t cap);
/* A client context (TLS 1.3 only): with CA, peers must chain to the
 * certificates in that PEM file (their host name is checked by the
 * caller, bvt_client_host); without, nothing is checked by OpenSSL and
 * the caller pins a fingerprint. */
SSL_CTX *bvt_client_ctx(const char *ca, char *err, size_t cap);
/* Sets what the server's certificate must name (a DNS name or an IP
 * address) and the SNI, for a client SSL whose context has a CA. */
int bvt_client_host(SSL *ssl, const char *host);

/* The RFC 9266 tls-exporter value of the connection. */
int bvt_binding(SSL *ssl, uint8_t out[BVT_BINDING]);

/* OpenSSL's queued errors as one line into BUF (emptied); "" if none. */
void bvt_errors(char *buf, size_t cap);

#endif
