/*
 * session.c: the frame layer and session rules of the bvaultd protocol
 * (session.h).
 */
#include "session.h"

const char *bvs_header_problem(const uint8_t *h)
{
	if (bvp_get32(h) > BVP_PAYLOAD_MAX)
		return "a frame larger than the limit";
	if (h[5] || h[6] || h[7])
		return "nonzero flags or reserved bytes";
	return NULL;
}

int bvs_is_change(uint8_t type)
{
	return type == BVP_DATA || type == BVP_ZERO || type == BVP_RESIZE;
}

const char *bvs_type_problem(int state, uint8_t type)
{
	if (state == BVS_HELLO)
		return type == BVP_HELLO ? NULL : "expected HELLO";
	if (state == BVS_AUTH)
		return type == BVP_AUTH || type == BVP_AUTH_SIG ? NULL :
							       "expected AUTH";
	switch (type) {
	case BVP_BEGIN:
	case BVP_ADD:
	case BVP_DATA:
	case BVP_ZERO:
	case BVP_RESIZE:
	case BVP_COMMIT:
	case BVP_ABORT:
	case BVP_RPS:
	case BVP_DIGESTS:
	case BVP_ADDV:
	case BVP_RPSV:
		return NULL;
	default:
		return "an unknown message type";
	}
}

const char *bvs_change(uint8_t type, const uint8_t *p, size_t len,
		       int in_session, uint32_t nslots,
		       struct bvs_change *out)
{
	struct bvp_rd r = { p, len, 0 };

	out->slot = bvp_u32(&r);
	out->off = bvp_u64(&r);
	out->arg = type == BVP_ZERO ? bvp_u64(&r) : 0;
	out->data = NULL;
	out->len = 0;
	if (r.bad || (type != BVP_DATA && r.left) ||
	    (type == BVP_DATA && (r.left == 0 || r.left > BVP_DATA_MAX)))
		return "a malformed change record";
	if (type == BVP_DATA) {
		out->data = r.p;
		out->len = r.left;
	}
	if (!in_session)
		return "a change record outside a session";
	if (out->slot >= nslots)
		return "a change record for a slot never added";
	return NULL;
}

const char *bvs_hello(const uint8_t *p, size_t len, uint16_t *version,
		      char name[64])
{
	struct bvp_rd r = { p, len, 0 };
	const uint8_t *magic = bvp_take(&r, 8);

	*version = bvp_u16(&r);
	bvp_name(&r, name);
	if (r.bad || r.left || memcmp(magic, BVP_MAGIC, 8))
		return "a malformed HELLO";
	return NULL;
}
