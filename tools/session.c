/*
 * session.c: the frame layer, session rules and request decoders of the
 * bvaultd protocol (session.h).
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

const char *bvs_auth(uint8_t type, const uint8_t *p, size_t len,
		     const uint8_t **proof)
{
	struct bvp_rd r = { p, len, 0 };
	int sig = type == BVP_AUTH_SIG;

	*proof = bvp_take(&r, sig ? BVP_SIG : BVP_MAC);
	if (r.bad || r.left)
		return sig ? "a malformed AUTH_SIG" : "a malformed AUTH";
	return NULL;
}

const char *bvs_begin(const uint8_t *p, size_t len)
{
	(void)p;
	return len ? "a malformed BEGIN" : NULL;
}

const char *bvs_abort(const uint8_t *p, size_t len)
{
	(void)p;
	return len ? "a malformed ABORT" : NULL;
}

int bvs_begin_outcome(int in_session, int stopping, int open, int mine,
		      int max_open, int max_mine)
{
	if (in_session)
		return BVS_BEGIN_OPEN;
	if (stopping)
		return BVS_BEGIN_STOPPING;
	if (open >= max_open || mine >= max_mine)
		return BVS_BEGIN_WAIT;
	return BVS_BEGIN_NOW;
}

const char *bvs_add(uint8_t type, const uint8_t *p, size_t len,
		    struct bvs_add *out)
{
	struct bvp_rd r = { p, len, 0 };
	int v = type == BVP_ADDV;

	out->base = bvp_u64(&r);
	out->size = bvp_u64(&r);
	out->ids = v ? bvp_take(&r, 2 * BVP_ID) : NULL;
	bvp_name(&r, out->name);
	if (r.bad || r.left)
		return v ? "a malformed ADDV" : "a malformed ADD";
	return NULL;
}

const char *bvs_commit(const uint8_t *p, size_t len, struct bvs_commit *out)
{
	struct bvp_rd r = { p, len, 0 };

	out->make_rp = bvp_u8(&r);
	out->consistency = bvp_u8(&r);
	out->time = (int64_t)bvp_u64(&r);
	uint8_t ll = bvp_u8(&r);
	const uint8_t *lp = ll ? bvp_take(&r, ll) : NULL;
	/* Optional trailing field (push): the RP's number. */
	out->number = r.left == 8 ? bvp_u64(&r) : 0;
	out->label[0] = 0;
	if (r.bad || r.left || out->make_rp > 1 || out->consistency > 1 ||
	    ll > BVP_LABEL_MAX)
		return "a malformed COMMIT";
	if (lp && memchr(lp, 0, ll))
		return "a COMMIT label with a NUL byte";
	if (lp)
		memcpy(out->label, lp, ll);
	out->label[ll] = 0;
	return NULL;
}

int bvs_commit_refusal(const struct bvs_commit *cm)
{
	if (cm->time < 0 || cm->time > BVP_TIME_MAX)
		return BVS_COMMIT_TIME;
	if (cm->number && !cm->make_rp)
		return BVS_COMMIT_NUMBER;
	return BVS_COMMIT_GOOD;
}

const char *bvs_query(uint8_t type, const uint8_t *p, size_t len,
		      struct bvs_query *out)
{
	struct bvp_rd r = { p, len, 0 };
	const char *bad;

	switch (type) {
	case BVP_RPS:
		bad = "a malformed RPS";
		break;
	case BVP_RPSV:
		bad = "a malformed RPSV";
		break;
	case BVP_DIGESTS:
		bad = "a malformed DIGESTS";
		break;
	default:
		return "an unknown message type";
	}
	out->rp = type == BVP_DIGESTS ? bvp_u64(&r) : 0;
	out->first = type == BVP_RPS ? 0 : bvp_u64(&r);
	out->count = type == BVP_DIGESTS ? bvp_u32(&r) : 0;
	bvp_name(&r, out->name);
	if (r.bad || r.left)
		return bad;
	if (type == BVP_DIGESTS &&
	    (out->count == 0 || out->count > BVP_DIGESTS_MAX))
		return bad;
	return NULL;
}
