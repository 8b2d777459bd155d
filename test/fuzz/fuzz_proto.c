/*
 * fuzz_proto.c: libFuzzer target over the bvaultd protocol's frame layer
 * and session rules (tools/session.h; fuzz_proto.h says what a run is).
 *   ./fuzz-proto test/fuzz/corpus/proto
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

/* A frame of TYPE in the READY state that is not a change record. */
static void ready_frame(uint8_t type, const uint8_t *p, size_t len,
			int *in_session, uint32_t *nslots)
{
	int yes = len > 0 && (p[0] & 1);
	switch (type) {
	case BVP_BEGIN:
		/* A second BEGIN is answered ERROR invalid; a BEGIN may be
		 * refused (busy, denied): either way nothing opens. */
		if (!*in_session && yes) {
			*in_session = 1;
			*nslots = 0;
		}
		break;
	case BVP_ADD:
	case BVP_ADDV:
		if (*in_session && yes && *nslots < MAX_SLOTS)
			(*nslots)++;
		break;
	case BVP_COMMIT:
	case BVP_ABORT:
		*in_session = 0;
		*nslots = 0;
		break;
	default:
		break;
	}
}

void fuzz_proto_one(const uint8_t *data, size_t size,
		    struct fuzz_proto_result *res)
{
	int state = BVS_HELLO, in_session = 0;
	uint32_t nslots = 0;
	size_t off = 0;

	memset(res, 0, sizeof *res);
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
		if (state != BVS_READY && len > BVS_PRELOGIN_FRAME) {
			res->stop = "a large frame before login";
			break;
		}
		if (size - off - BVP_HDR < len) {
			res->stop = NULL; /* waits for the rest */
			break;
		}
		res->frames++;
		off += BVP_HDR + (size_t)len;
		if (state == BVS_READY && bvs_is_change(type)) {
			struct bvs_change ch;
			why = bvs_change(type, p, len, in_session, nslots, &ch);
			if (why) {
				res->stop = why;
				break;
			}
			must(in_session && ch.slot < nslots);
			if (type == BVP_DATA)
				must(ch.data == p + 12 && ch.len == len - 12 &&
				     ch.len >= 1 && ch.len <= BVP_DATA_MAX);
			else
				must(!ch.data && !ch.len &&
				     len == (type == BVP_ZERO ? 20u : 12u));
			res->changes++;
			continue;
		}
		if ((why = bvs_type_problem(state, type))) {
			res->stop = why;
			break;
		}
		if (state == BVS_HELLO) {
			uint16_t ver;
			char name[64];
			memset(name, 0x55, sizeof name);
			if ((why = bvs_hello(p, len, &ver, name))) {
				res->stop = why;
				break;
			}
			size_t nl = strnlen(name, sizeof name);
			must(nl >= 1 && nl <= 63 && len == 11 + nl &&
			     !memcmp(p + 11, name, nl));
			if (ver != BVP_VERSION) {
				res->stop = "another protocol version";
				break;
			}
			state = BVS_AUTH;
		} else if (state == BVS_AUTH) {
			must(type == BVP_AUTH || type == BVP_AUTH_SIG);
			if (!(len > 0 && (p[0] & 1))) {
				res->stop = "authentication failed";
				break;
			}
			state = BVS_READY;
		} else {
			must(!bvs_is_change(type));
			ready_frame(type, p, len, &in_session, &nslots);
		}
		if (state > res->state)
			res->state = state;
	}
	must(off <= size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_proto_result res;
	fuzz_proto_one(data, size, &res);
	return 0;
}
