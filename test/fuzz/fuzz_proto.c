/*
 * fuzz_proto.c: libFuzzer target over the bvaultd protocol's decoders,
 * frame layer and session rules (tools/session.h; fuzz_proto.h says
 * what a run is).
 *   ./fuzz-proto test/fuzz/corpus/proto
 *
 * Each decoder is checked against the protocol as this file spells it
 * out again from tools/PROTOCOL.md, on its own: a payload is well-formed
 * exactly when that reading says so, with the same reason when not, and
 * the fields decoded are the bytes sent.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_proto.h"
#include "session.h"

#define MAX_SLOTS 4096 /* bvaultd's sessions hold far fewer */

static void must(int cond)
{
	if (!cond)
		abort();
}

/* Whether WHY, a decoder's answer, is EXPECT (both NULL, or the same
 * text). */
static void must_say(const char *why, const char *expect)
{
	must(!why == !expect && (!why || !strcmp(why, expect)));
}

/* The store's decisions: P[0, N), taken in turn and over again; none at
 * all is a store that says yes (0) to everything. */
struct store {
	const uint8_t *p;
	size_t n, next;
};

static uint8_t store_says(struct store *s)
{
	if (!s->n)
		return 0;
	uint8_t b = s->p[s->next];
	s->next = (s->next + 1) % s->n;
	return b;
}

/* One connection as bvaultd keeps it. */
struct run {
	struct store store;
	int state, in_session;
	uint32_t nslots;
	struct fuzz_proto_result *res;
};

/* Whether P[0, LEN) ends, from AT on, in a name as the protocol has it:
 * a length byte, 1 to 63 bytes none of which is NUL, nothing after. */
static int name_ends(const uint8_t *p, size_t len, size_t at)
{
	if (len <= at)
		return 0;
	size_t n = p[at];
	return n >= 1 && n <= 63 && len == at + 1 + n &&
	       !memchr(p + at + 1, 0, n);
}

/* NAME, decoded, is the name at P + AT. */
static void must_name(const char *name, const uint8_t *p, size_t at)
{
	must(strnlen(name, 64) == p[at] && !memcmp(name, p + at + 1, p[at]));
}

static const char *hello(struct run *r, const uint8_t *p, size_t len)
{
	int sound = len >= 11 && !memcmp(p, BVP_MAGIC, 8) &&
		    name_ends(p, len, 10);
	uint16_t ver;
	char name[64];

	memset(name, 0x55, sizeof name);
	const char *why = bvs_hello(p, len, &ver, name);
	must_say(why, sound ? NULL : "a malformed HELLO");
	if (why)
		return why;
	must(ver == bvp_get16(p + 8));
	must_name(name, p, 10);
	if (ver != BVP_VERSION)
		return "another protocol version";
	r->state = BVS_AUTH;
	return NULL;
}

static const char *auth(struct run *r, uint8_t type, const uint8_t *p,
			size_t len)
{
	int sig = type == BVP_AUTH_SIG;
	const uint8_t *proof = NULL;
	const char *why = bvs_auth(type, p, len, &proof);

	must(type == BVP_AUTH || sig);
	must_say(why, len == (sig ? BVP_SIG : BVP_MAC) ? NULL :
		 sig ? "a malformed AUTH_SIG" : "a malformed AUTH");
	if (why)
		return why;
	must(proof == p);
	if (store_says(&r->store) & 1)
		return "authentication failed";
	r->state = BVS_READY;
	return NULL;
}

/* BEGIN: the store's three bytes say whether the agent was removed (bit
 * 0), the engine cannot open a session (bit 1), the server is stopping
 * (bit 2); how many sessions are open and how many of them the agent's
 * (a nibble each); the two limits (a nibble each, + 1). A BEGIN made to
 * wait is served later, which the run takes as now. */
static const char *begin(struct run *r, const uint8_t *p, size_t len)
{
	uint8_t f = store_says(&r->store), n = store_says(&r->store),
		lim = store_says(&r->store);
	int open = n & 15, mine = n >> 4;
	int max_open = (lim & 15) + 1, max_mine = (lim >> 4) + 1;
	const char *why = bvs_begin(p, len);

	must_say(why, len ? "a malformed BEGIN" : NULL);
	if (why)
		return why;
	int how = bvs_begin_outcome(r->in_session, f & 4, open, mine,
				    max_open, max_mine);
	must(how == (r->in_session ? BVS_BEGIN_OPEN :
		     (f & 4) ? BVS_BEGIN_STOPPING :
		     open >= max_open || mine >= max_mine ? BVS_BEGIN_WAIT :
							     BVS_BEGIN_NOW));
	if (how == BVS_BEGIN_OPEN || how == BVS_BEGIN_STOPPING)
		return NULL; /* ERROR invalid or busy; the connection goes on */
	if (f & 1)
		return "the agent was removed";
	if (!(f & 2)) {
		r->in_session = 1;
		r->nslots = 0;
		r->res->sessions++;
	}
	return NULL;
}

/* ADD, ADDV: granted unless the store's byte has bit 0 set. */
static const char *add(struct run *r, uint8_t type, const uint8_t *p,
		       size_t len)
{
	int v = type == BVP_ADDV;
	size_t at = v ? 16 + 2 * BVP_ID : 16;
	struct bvs_add a;

	memset(&a, 0x55, sizeof a);
	const char *why = bvs_add(type, p, len, &a);
	must_say(why, name_ends(p, len, at) ? NULL :
		 v ? "a malformed ADDV" : "a malformed ADD");
	if (why)
		return why;
	must(a.base == bvp_get64(p) && a.size == bvp_get64(p + 8) &&
	     a.ids == (v ? p + 16 : NULL));
	must_name(a.name, p, at);
	if (r->in_session && !(store_says(&r->store) & 1) &&
	    r->nslots < MAX_SLOTS)
		r->nslots++;
	return NULL;
}

/* COMMIT ends the session, whatever the engine makes of it. */
static const char *commit(struct run *r, const uint8_t *p, size_t len)
{
	size_t ll = len >= 11 ? p[10] : 0;
	int sound = len >= 11 && p[0] <= 1 && p[1] <= 1 &&
		    ll <= BVP_LABEL_MAX &&
		    (len == 11 + ll || len == 19 + ll);
	int nul = sound && memchr(p + 11, 0, ll);
	struct bvs_commit cm;

	memset(&cm, 0x55, sizeof cm);
	const char *why = bvs_commit(p, len, &cm);
	must_say(why, !sound ? "a malformed COMMIT" :
		 nul ? "a COMMIT label with a NUL byte" : NULL);
	if (why)
		return why;
	must(cm.make_rp == p[0] && cm.consistency == p[1] &&
	     cm.time == (int64_t)bvp_get64(p + 2) &&
	     cm.number == (len == 19 + ll ? bvp_get64(p + 11 + ll) : 0));
	must(strnlen(cm.label, sizeof cm.label) == ll &&
	     !memcmp(cm.label, p + 11, ll));
	must(bvs_commit_refusal(&cm) ==
	     (cm.time < 0 || cm.time > INT64_C(253402300799) ?
		      BVS_COMMIT_TIME :
	      cm.number && !cm.make_rp ? BVS_COMMIT_NUMBER : BVS_COMMIT_GOOD));
	r->in_session = 0;
	r->nslots = 0;
	return NULL;
}

static const char *end(struct run *r, const uint8_t *p, size_t len)
{
	const char *why = bvs_abort(p, len);

	must_say(why, len ? "a malformed ABORT" : NULL);
	if (why)
		return why;
	r->in_session = 0;
	r->nslots = 0;
	return NULL;
}

/* RPS, RPSV, DIGESTS: answered from the store; nothing changes. */
static const char *query(uint8_t type, const uint8_t *p, size_t len)
{
	size_t at = type == BVP_RPS ? 0 : type == BVP_RPSV ? 8 : 20;
	int sound = name_ends(p, len, at);
	struct bvs_query q;

	if (sound && type == BVP_DIGESTS) {
		uint32_t n = bvp_get32(p + 16);
		sound = n >= 1 && n <= BVP_DIGESTS_MAX;
	}
	memset(&q, 0x55, sizeof q);
	const char *why = bvs_query(type, p, len, &q);
	must_say(why, sound ? NULL : type == BVP_RPS ? "a malformed RPS" :
		 type == BVP_RPSV ? "a malformed RPSV" :
				    "a malformed DIGESTS");
	if (why)
		return why;
	must(q.rp == (type == BVP_DIGESTS ? bvp_get64(p) : 0));
	must(q.first == (type == BVP_RPS ? 0 :
			 type == BVP_RPSV ? bvp_get64(p) : bvp_get64(p + 8)));
	must(q.count == (type == BVP_DIGESTS ? bvp_get32(p + 16) : 0));
	must_name(q.name, p, at);
	return NULL;
}

static const char *change(struct run *r, uint8_t type, const uint8_t *p,
			  size_t len)
{
	struct bvs_change ch;
	const char *why = bvs_change(type, p, len, r->in_session, r->nslots,
				     &ch);

	if (why)
		return why;
	must(r->in_session && ch.slot < r->nslots &&
	     ch.slot == bvp_get32(p) && ch.off == bvp_get64(p + 4));
	if (type == BVP_DATA)
		must(ch.data == p + 12 && ch.len == len - 12 && ch.len >= 1 &&
		     ch.len <= BVP_DATA_MAX && !ch.arg);
	else if (type == BVP_ZERO)
		must(!ch.data && !ch.len && len == 20 &&
		     ch.arg == bvp_get64(p + 12));
	else
		must(!ch.data && !ch.len && len == 12 && !ch.arg);
	r->res->changes++;
	return NULL;
}

/* A frame of TYPE that bvs_type_problem let through in R's state. */
static const char *frame(struct run *r, uint8_t type, const uint8_t *p,
			 size_t len)
{
	if (r->state == BVS_HELLO) {
		must(type == BVP_HELLO);
		return hello(r, p, len);
	}
	if (r->state == BVS_AUTH)
		return auth(r, type, p, len);
	switch (type) {
	case BVP_BEGIN:
		return begin(r, p, len);
	case BVP_ADD:
	case BVP_ADDV:
		return add(r, type, p, len);
	case BVP_COMMIT:
		return commit(r, p, len);
	case BVP_ABORT:
		return end(r, p, len);
	case BVP_RPS:
	case BVP_RPSV:
	case BVP_DIGESTS:
		return query(type, p, len);
	default:
		must(0); /* change records and unknown types never get here */
		return NULL;
	}
}

void fuzz_proto_one(const uint8_t *data, size_t size,
		    struct fuzz_proto_result *res)
{
	struct run r = { { NULL, 0, 0 }, BVS_HELLO, 0, 0, res };
	size_t off = 0;

	memset(res, 0, sizeof *res);
	if (size) {
		r.store.n = data[0] < size - 1 ? data[0] : size - 1;
		r.store.p = data + 1;
		off = 1 + r.store.n;
	}
	while (size - off >= BVP_HDR) {
		const uint8_t *h = data + off, *p = h + BVP_HDR;
		uint32_t len = bvp_get32(h);
		uint8_t type = h[4];
		const char *why;

		if ((why = bvs_header_problem(h))) {
			must(len > BVP_PAYLOAD_MAX || h[5] || h[6] || h[7]);
			res->stop = why;
			break;
		}
		if (r.state != BVS_READY && len > BVS_PRELOGIN_FRAME) {
			res->stop = "a large frame before login";
			break;
		}
		if (size - off - BVP_HDR < len) {
			res->stop = NULL; /* waits for the rest */
			break;
		}
		res->frames++;
		off += BVP_HDR + (size_t)len;
		if (r.state == BVS_READY && bvs_is_change(type))
			why = change(&r, type, p, len);
		else if (!(why = bvs_type_problem(r.state, type)))
			why = frame(&r, type, p, len);
		if (why) {
			res->stop = why;
			break;
		}
		if (r.state > res->state)
			res->state = r.state;
	}
	must(off <= size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_proto_result res;
	fuzz_proto_one(data, size, &res);
	return 0;
}
