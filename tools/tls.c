/*
 * tls.c: the server key and certificate of a store, fingerprints, the
 * TLS contexts of bvaultd and its clients, and the channel binding
 * (tls.h; tools/PROTOCOL.md, "TLS").
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CERT_DAYS 7300 /* twenty years: a pinned key outlives a CA's term */

void bvt_errors(char *buf, size_t cap)
{
	unsigned long e;
	size_t n = 0;

	if (cap)
		buf[0] = 0;
	while ((e = ERR_get_error())) {
		char one[256];
		ERR_error_string_n(e, one, sizeof one);
		if (n + 3 < cap) {
			int k = snprintf(buf + n, cap - n, "%s%s",
					 n ? "; " : "", one);
			if (k > 0)
				n += (size_t)k < cap - n ? (size_t)k : cap - n - 1;
		}
	}
}

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t cap, const char *fmt, ...)
{
	char ossl[512];
	va_list ap;
	bvt_errors(ossl, sizeof ossl);
	va_start(ap, fmt);
	int n = vsnprintf(err, cap, fmt, ap);
	va_end(ap);
	if (ossl[0] && n >= 0 && (size_t)n < cap)
		snprintf(err + n, cap - (size_t)n, " (%s)", ossl);
	return -1;
}

int bvt_path(const char *store, const char *name, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/" BVT_DIR "%s%s", store,
			 name ? "/" : "", name ? name : "");
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

void bvt_hex(const uint8_t fp[BVT_FP], char hex[BVT_FP_HEX])
{
	static const char d[] = "0123456789abcdef";
	for (int i = 0; i < BVT_FP; i++) {
		hex[2 * i] = d[fp[i] >> 4];
		hex[2 * i + 1] = d[fp[i] & 15];
	}
	hex[2 * BVT_FP] = 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int bvt_parse_fingerprint(const char *s, uint8_t fp[BVT_FP])
{
	if (!strncasecmp(s, "sha256:", 7) || !strncasecmp(s, "sha256=", 7))
		s += 7;
	for (int i = 0; i < BVT_FP; i++) {
		if (i && *s == ':')
			s++;
		int hi = hexval((unsigned char)s[0]);
		int lo = hi < 0 ? -1 : hexval((unsigned char)s[1]);
		if (lo < 0)
			return -1;
		fp[i] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	return *s ? -1 : 0;
}

static int cert_fingerprint(X509 *x, uint8_t fp[BVT_FP])
{
	unsigned int n = 0;
	if (!X509_digest(x, EVP_sha256(), fp, &n) || n != BVT_FP)
		return -1;
	return 0;
}

int bvt_peer_fingerprint(SSL *ssl, uint8_t fp[BVT_FP])
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	return x ? cert_fingerprint(x, fp) : -1;
}

int bvt_file_fingerprint(const char *cert, char hex[BVT_FP_HEX], char *err,
			 size_t cap)
{
	uint8_t fp[BVT_FP];
	FILE *f = fopen(cert, "r");
	if (!f)
		return fail(err, cap, "%s: %s", cert, strerror(errno));
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x)
		return fail(err, cap, "%s: not a PEM certificate", cert);
	int rc = cert_fingerprint(x, fp);
	X509_free(x);
	if (rc)
		return fail(err, cap, "%s: cannot take its fingerprint", cert);
	bvt_hex(fp, hex);
	return 0;
}

/* ---- making a key and its certificate --------------------------------------- */

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!e)
		return -1;
	int ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : -1;
}

/* "DNS:a,IP:1.2.3.4,..." for the certificate's subjectAltName. */
static int alt_names(const char *const *names, int nn, char *out, size_t cap)
{
	char host[256] = "";
	size_t n = 0;
	const char *fixed[] = { "DNS:localhost", "IP:127.0.0.1", "IP:::1" };

	out[0] = 0;
	if (gethostname(host, sizeof host - 1) == 0 && host[0] &&
	    strcmp(host, "localhost")) {
		int k = snprintf(out, cap, "DNS:%s", host);
		if (k < 0 || (size_t)k >= cap)
			return -1;
		n = (size_t)k;
	}
	for (int i = 0; i < 3 + nn; i++) {
		const char *v = i < 3 ? fixed[i] : names[i - 3];
		unsigned char a[16];
		const char *kind = "";
		if (i >= 3)
			kind = inet_pton(AF_INET, v, a) == 1 ||
			       inet_pton(AF_INET6, v, a) == 1 ? "IP:" : "DNS:";
		int k = snprintf(out + n, cap - n, "%s%s%s", n ? "," : "",
				 kind, v);
		if (k < 0 || (size_t)k >= cap - n)
			return -1;
		n += (size_t)k;
	}
	return 0;
}

static X509 *self_signed(EVP_PKEY *key, const char *const *names, int nn)
{
	char san[4096], host[256] = "bvaultd", cn[300];
	uint8_t serial[16];
	X509 *x = X509_new();
	BIGNUM *bn = NULL;
	ASN1_INTEGER *sn = NULL;

	if (!x || alt_names(names, nn, san, sizeof san))
		goto bad;
	if (gethostname(host, sizeof host - 1))
		snprintf(host, sizeof host, "bvaultd");
	snprintf(cn, sizeof cn, "bvaultd %s", host);
	if (RAND_bytes(serial, sizeof serial) != 1)
		goto bad;
	serial[0] &= 0x7f; /* a positive serial */
	if (!(bn = BN_bin2bn(serial, sizeof serial, NULL)) ||
	    !(sn = BN_to_ASN1_INTEGER(bn, NULL)) ||
	    !X509_set_version(x, 2) || !X509_set_serialNumber(x, sn) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), CERT_DAYS, 0, NULL) ||
	    !X509_set_pubkey(x, key))
		goto bad;
	X509_NAME *nm = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(x, nm) ||
	    add_ext(x, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") ||
	    add_ext(x, NID_subject_key_identifier, "hash") ||
	    add_ext(x, NID_subject_alt_name, san) ||
	    !X509_sign(x, key, EVP_sha256()))
		goto bad;
	BN_free(bn);
	ASN1_INTEGER_free(sn);
	return x;
bad:
	BN_free(bn);
	ASN1_INTEGER_free(sn);
	X509_free(x);
	return NULL;
}

/* Writes DIR/NAME (0600, new) by WRITE, and syncs it. */
static int write_private(const char *dir, const char *name, int is_key,
			 void *obj, char *err, size_t cap)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(err, cap, "%s: %s", path, strerror(errno));
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return fail(err, cap, "%s: %s", path, strerror(errno));
	}
	int ok = is_key ? PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL,
					       NULL) :
			  PEM_write_X509(f, obj);
	if (!ok || fflush(f) || fdatasync(fileno(f))) {
		int e = errno;
		fclose(f);
		return fail(err, cap, "writing %s: %s", path,
			    ok ? strerror(e) : "OpenSSL refused");
	}
	if (fclose(f))
		return fail(err, cap, "writing %s: %s", path, strerror(errno));
	return 0;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

static void remove_dir(const char *dir)
{
	char p[PATH_MAX + 32];
	snprintf(p, sizeof p, "%s/" BVT_KEY, dir);
	unlink(p);
	snprintf(p, sizeof p, "%s/" BVT_CERT, dir);
	unlink(p);
	rmdir(dir);
}

int bvt_make(const char *store, int replace, const char *const *names,
	     int nn, char *err, size_t cap)
{
	char dir[PATH_MAX], tmp[PATH_MAX + 16];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	int rc = -1;

	if (bvt_path(store, NULL, dir, sizeof dir))
		return fail(err, cap, "%s: path too long", store);
	if (!replace && access(dir, F_OK) == 0)
		return 1;
	snprintf(tmp, sizeof tmp, "%s.new-XXXXXX", dir);
	if (!mkdtemp(tmp)) /* 0700 */
		return fail(err, cap, "cannot make %s: %s", tmp,
			    strerror(errno));
	if (!(key = EVP_EC_gen("P-256"))) {
		fail(err, cap, "cannot make a P-256 key");
		goto out;
	}
	if (!(x = self_signed(key, names, nn))) {
		fail(err, cap, "cannot make a certificate");
		goto out;
	}
	if (write_private(tmp, BVT_KEY, 1, key, err, cap) ||
	    write_private(tmp, BVT_CERT, 0, x, err, cap))
		goto out;
	if (sync_dir(tmp)) {
		fail(err, cap, "syncing %s: %s", tmp, strerror(errno));
		goto out;
	}
	/* One rename makes the pair current: a new one, or (REPLACE) an
	 * exchange with the old one, which is then removed. */
	if (replace && access(dir, F_OK) == 0) {
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE)) {
			fail(err, cap, "cannot replace %s: %s", dir,
			     strerror(errno));
			goto out;
		}
	} else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE)) {
		if (errno == EEXIST) {
			rc = 1; /* made beside us: that one stands */
			goto out;
		}
		fail(err, cap, "cannot make %s: %s", dir, strerror(errno));
		goto out;
	}
	if (sync_dir(store)) {
		fail(err, cap, "syncing %s: %s", store, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	remove_dir(tmp); /* after an exchange: the old pair */
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

/* ---- contexts ------------------------------------------------------------------ */

SSL_CTX *bvt_server_ctx(const char *cert, const char *key, char *err,
			size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		fail(err, cap, "cannot make a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* Agents connect afresh for each backup: resumption buys little,
	 * and a ticket would be sent after the handshake, unasked. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Idle connections give their record buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		fail(err, cap, "TLS certificate %s cannot be used", cert);
		goto bad;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fail(err, cap, "TLS key %s cannot be used with certificate %s",
		     key, cert);
		goto bad;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		fail(err, cap, "TLS key %s is not the key of certificate %s",
		     key, cert);
		goto bad;
	}
	return ctx;
bad:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *bvt_client_ctx(const char *ca, char *err, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		fail(err, cap, "cannot make a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	if (ca) {
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
			fail(err, cap, "--ca %s: not a PEM file of "
			     "certificates", ca);
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

int bvt_client_host(SSL *ssl, const char *host)
{
	unsigned char a[16];
	if (inet_pton(AF_INET, host, a) == 1 ||
	    inet_pton(AF_INET6, host, a) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
						     host) == 1 ? 0 : -1;
	if (SSL_set_tlsext_host_name(ssl, host) != 1 ||
	    SSL_set1_host(ssl, host) != 1)
		return -1;
	return 0;
}

int bvt_binding(SSL *ssl, uint8_t out[BVT_BINDING])
{
	static const char label[] = "EXPORTER-Channel-Binding";
	return SSL_export_keying_material(ssl, out, BVT_BINDING, label,
					  sizeof label - 1, NULL, 0, 0) == 1 ?
		       0 : -1;
}
