/*
 * session.h: the bvaultd protocol's frame layer and session rules as pure
 * functions (tools/PROTOCOL.md, "Frames" and "Requests and answers"):
 * no I/O, no store, no globals, so that bvaultd and the protocol fuzzer
 * (test/fuzz/fuzz_proto.c) run the very same checks. Every problem is
 * returned as the text bvaultd sends in its protocol error.
 */
#ifndef BV_TOOLS_SESSION_H
#define BV_TOOLS_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* A connection's login state: HELLO expected, AUTH (or AUTH_SIG)
 * expected, logged in. */
enum { BVS_HELLO, BVS_AUTH, BVS_READY };

#define BVS_PRELOGIN_FRAME 512 /* payload bytes of a frame before login */

/* The frame header at H (BVP_HDR bytes): NULL, or what is wrong with it
 * (a length over BVP_PAYLOAD_MAX, nonzero flags or reserved bytes). */
const char *bvs_header_problem(const uint8_t *h);

/* DATA, ZERO, RESIZE: the records the applier takes, which get no
 * answer. */
int bvs_is_change(uint8_t type);

/* Whether a frame of TYPE may come in STATE: NULL, or the problem. */
const char *bvs_type_problem(int state, uint8_t type);

/* A change record, decoded: SLOT, OFF; ZERO's length or RESIZE's size in
 * ARG (RESIZE: OFF); DATA's bytes DATA[0, LEN) inside the payload. */
struct bvs_change {
	uint32_t slot;
	uint64_t off, arg;
	const uint8_t *data;
	size_t len;
};

/* Decodes the change record of TYPE (payload P, LEN bytes) into *OUT and
 * checks it against the session: IN_SESSION whether one is open, NSLOTS
 * the slots its ADDs made. NULL, or the problem. */
const char *bvs_change(uint8_t type, const uint8_t *p, size_t len,
		       int in_session, uint32_t nslots,
		       struct bvs_change *out);

/* HELLO's payload: the protocol VERSION and the agent NAME (1 to 63
 * bytes, NUL-terminated). NULL, or the problem (a wrong version is not
 * one: the caller answers it). */
const char *bvs_hello(const uint8_t *p, size_t len, uint16_t *version,
		      char name[64]);

#endif
