/*
 * session.h: the bvaultd protocol's frame layer, session rules and
 * request decoders as pure functions (tools/PROTOCOL.md, "Frames" and
 * "Requests and answers"):
 * no I/O, no store, no globals, so that bvaultd and the protocol fuzzer
 * (test/fuzz/fuzz_proto.c) run the very same checks. Every problem is
 * returned as the text bvaultd sends in its protocol error. A decoder
 * fills its struct even for a payload it refuses (the fields then mean
 * nothing); a pointer it gives points into the payload, valid as long
 * as the payload is.
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

/* AUTH's or AUTH_SIG's payload (TYPE): the proof alone, an HMAC
 * (BVP_MAC bytes) or a signature (BVP_SIG), at *PROOF inside P. NULL, or
 * the problem; whether the proof is good is the store's to say. */
const char *bvs_auth(uint8_t type, const uint8_t *p, size_t len,
		     const uint8_t **proof);

/* BEGIN's and ABORT's payloads, which are empty: NULL, or the problem. */
const char *bvs_begin(const uint8_t *p, size_t len);
const char *bvs_abort(const uint8_t *p, size_t len);

/* What becomes of a well-formed BEGIN: refused (a session is open on the
 * connection already: ERROR invalid; the server is stopping: ERROR
 * busy), made to wait (OPEN sessions are open on the server and MINE of
 * them the agent's, against the limits MAX_OPEN and MAX_MINE), or served
 * now. The store may still refuse the agent (removed) or the session. */
enum { BVS_BEGIN_NOW, BVS_BEGIN_WAIT, BVS_BEGIN_OPEN, BVS_BEGIN_STOPPING };
int bvs_begin_outcome(int in_session, int stopping, int open, int mine,
		      int max_open, int max_mine);

/* ADD and ADDV, decoded: the base RP, the size, the replica NAME; ADDV's
 * base identity then result identity at IDS (2 x BVP_ID bytes inside
 * the payload; NULL for ADD). */
struct bvs_add {
	uint64_t base, size;
	const uint8_t *ids;
	char name[64];
};

/* Decodes the ADD or ADDV (TYPE) in P, LEN bytes, into *OUT. NULL, or
 * the problem (whether a session is open, the replica exists and the
 * agent may write it is the store's to say). */
const char *bvs_add(uint8_t type, const uint8_t *p, size_t len,
		    struct bvs_add *out);

/* COMMIT, decoded: make an RP (0 or 1), its consistency (0 or 1), its
 * TIME as sent (bvs_commit_refusal checks its range), the LABEL ("" for
 * none; no NUL byte in it) and the RP NUMBER (0 when absent). */
struct bvs_commit {
	uint8_t make_rp, consistency;
	int64_t time;
	uint64_t number;
	char label[BVP_LABEL_MAX + 1];
};

/* Decodes the COMMIT in P, LEN bytes, into *OUT. NULL, or the problem. */
const char *bvs_commit(const uint8_t *p, size_t len, struct bvs_commit *out);

/* Whether the fields of a COMMIT that bvs_commit passed have it refused
 * (ERROR invalid, the session aborted): a TIME other than 0 outside 1 to
 * BVP_TIME_MAX, or an RP NUMBER without making an RP. */
enum { BVS_COMMIT_GOOD, BVS_COMMIT_TIME, BVS_COMMIT_NUMBER };
int bvs_commit_refusal(const struct bvs_commit *cm);

/* A query, decoded: RPS takes the NAME only, RPSV also FIRST (its first
 * RP), DIGESTS the RP (0: the latest), FIRST (its first chunk), COUNT (1
 * to BVP_DIGESTS_MAX chunks) and the NAME. Fields a query lacks are 0. */
struct bvs_query {
	uint64_t rp, first;
	uint32_t count;
	char name[64];
};

/* Decodes the query of TYPE (RPS, RPSV, DIGESTS) in P, LEN bytes, into
 * *OUT. NULL, or the problem. */
const char *bvs_query(uint8_t type, const uint8_t *p, size_t len,
		      struct bvs_query *out);

#endif
