/*
 * proto.h: the bvaultd protocol's constants and the little-endian field
 * helpers both ends use (tools/PROTOCOL.md is the reference).
 */
#ifndef BV_TOOLS_PROTO_H
#define BV_TOOLS_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BVP_MAGIC "BVAULTP1"
#define BVP_VERSION 1
#define BVP_HDR 8
#define BVP_DATA_MAX (4u << 20)          /* bytes of one DATA frame */
#define BVP_PAYLOAD_MAX (BVP_DATA_MAX + 64)
#define BVP_NONCE 32
#define BVP_MAC 32
#define BVP_AUTH_LABEL "bvault-agent-auth-v1"
/* AUTH_SIG: an Ed25519 signature over this label, the challenge and the
 * agent name (bvp_proof_message) */
#define BVP_SIG 64
#define BVP_SIG_LABEL "bvault-agent-sig-v1"
#define BVP_DEFAULT_PORT "7468"
#define BVP_DIGESTS_MAX 65536u           /* chunks per DIGESTS */
#define BVP_ID 16                        /* a version identity */
/* COMMIT's time: 0 (now) or 1 .. this (9999-12-31 23:59:59 UTC) */
#define BVP_TIME_MAX INT64_C(253402300799)
#define BVP_LABEL_MAX 127                /* COMMIT's label (BV_LABEL_MAX) */

enum {
	BVP_HELLO = 0x01,
	BVP_AUTH = 0x02,
	BVP_BEGIN = 0x03,
	BVP_ADD = 0x04,
	BVP_DATA = 0x05,
	BVP_ZERO = 0x06,
	BVP_RESIZE = 0x07,
	BVP_COMMIT = 0x08,
	BVP_ABORT = 0x09,
	BVP_RPS = 0x0a,
	BVP_DIGESTS = 0x0b,
	/* push (bvault push): identities and RP numbers kept */
	BVP_RPSV = 0x0c,
	BVP_ADDV = 0x0d,
	/* AUTH by an agent with a key (bvault-agent keygen) */
	BVP_AUTH_SIG = 0x0e,
	BVP_OK = 0x80,
	BVP_CHALLENGE = 0x81,
	BVP_ERROR = 0x8f,
};

enum {
	BVP_E_PROTO = 1,
	BVP_E_AUTH = 2,
	BVP_E_DENIED = 3,
	BVP_E_NOTFOUND = 4,
	BVP_E_BASE = 5,
	BVP_E_INVALID = 6,
	BVP_E_STORAGE = 7,
	BVP_E_BUSY = 8,
};

/* Over TLS, both proofs also cover the connection's RFC 9266
 * tls-exporter value (BVP_BINDING bytes), under the v2 labels: a proof
 * made for one TLS connection is worth nothing on another, so a server
 * the agent was made to trust cannot relay its login to ours. */
#define BVP_AUTH_LABEL2 "bvault-agent-auth-v2"
#define BVP_SIG_LABEL2 "bvault-agent-sig-v2"
#define BVP_BINDING 32

/* The bytes an AUTH's HMAC or an AUTH_SIG's signature covers, into MSG
 * (room for BVP_PROOF_MSG_MAX): the label (v1 without BINDING, v2 with
 * it), the NONCE (BVP_NONCE bytes), BINDING (when not NULL) and NAME (at
 * most 63 bytes). SIG selects AUTH_SIG's labels. Returns the length. */
#define BVP_PROOF_MSG_MAX (sizeof BVP_AUTH_LABEL2 + BVP_NONCE + \
			   BVP_BINDING + 64)
static inline size_t bvp_proof_message(uint8_t *msg, int sig,
				       const uint8_t *nonce,
				       const uint8_t *binding,
				       const char *name)
{
	const char *label = sig ? (binding ? BVP_SIG_LABEL2 : BVP_SIG_LABEL) :
				  (binding ? BVP_AUTH_LABEL2 : BVP_AUTH_LABEL);
	size_t ml = strlen(label), nl = strlen(name);
	if (nl > 63)
		nl = 63;
	memcpy(msg, label, ml);
	memcpy(msg + ml, nonce, BVP_NONCE);
	ml += BVP_NONCE;
	if (binding) {
		memcpy(msg + ml, binding, BVP_BINDING);
		ml += BVP_BINDING;
	}
	memcpy(msg + ml, name, nl);
	return ml + nl;
}

static inline void bvp_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void bvp_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void bvp_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t bvp_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t bvp_get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t bvp_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline void bvp_header(uint8_t *h, uint8_t type, uint32_t len)
{
	bvp_put32(h, len);
	h[4] = type;
	h[5] = 0;
	h[6] = 0;
	h[7] = 0;
}

/* A reader over a received payload: every get checks the length left;
 * after a short read BAD is set and the values read are zeros. */
struct bvp_rd {
	const uint8_t *p;
	size_t left;
	int bad;
};

static inline const uint8_t *bvp_take(struct bvp_rd *r, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = 1;
		return NULL;
	}
	const uint8_t *q = r->p;
	r->p += n;
	r->left -= n;
	return q;
}

static inline uint8_t bvp_u8(struct bvp_rd *r)
{
	const uint8_t *q = bvp_take(r, 1);
	return q ? q[0] : 0;
}

static inline uint16_t bvp_u16(struct bvp_rd *r)
{
	const uint8_t *q = bvp_take(r, 2);
	return q ? bvp_get16(q) : 0;
}

static inline uint32_t bvp_u32(struct bvp_rd *r)
{
	const uint8_t *q = bvp_take(r, 4);
	return q ? bvp_get32(q) : 0;
}

static inline uint64_t bvp_u64(struct bvp_rd *r)
{
	const uint8_t *q = bvp_take(r, 8);
	return q ? bvp_get64(q) : 0;
}

/* A length-prefixed (u8) name into OUT (64 bytes): 1 to 63 bytes, none
 * of them NUL (a NUL would cut the name short of what was sent: found by
 * fuzz-proto). */
static inline void bvp_name(struct bvp_rd *r, char out[64])
{
	uint8_t n = bvp_u8(r);
	const uint8_t *q = n ? bvp_take(r, n) : NULL;
	if (!q || n > 63 || memchr(q, 0, n)) {
		r->bad = 1;
		out[0] = 0;
		return;
	}
	memcpy(out, q, n);
	out[n] = 0;
}

#endif
