/*
 * fuzz_proto.h: the protocol fuzz target's one run (tools/session.h),
 * shared by the libFuzzer build (clang only) and the corpus replay test
 * (every compiler).
 */
#ifndef BV_TEST_FUZZ_PROTO_H
#define BV_TEST_FUZZ_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* What one run reached: frames handled, the furthest login state, change
 * records passed, and why it stopped (NULL: the input ran out). */
struct fuzz_proto_result {
	unsigned frames, changes;
	int state;
	const char *stop;
};

/* Runs DATA as the bytes an agent sent on one connection, through the
 * checks bvaultd makes (session.h), as bvaultd splits them into frames.
 * The outcomes that depend on the store (does AUTH succeed, is a session
 * free at BEGIN) are taken from the frames' own first payload byte, so
 * every state is reachable. Aborts if a check breaks its contract. */
void fuzz_proto_one(const uint8_t *data, size_t size,
		    struct fuzz_proto_result *res);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
