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
 * records passed, sessions opened, and why it stopped (NULL: the input
 * ran out). */
struct fuzz_proto_result {
	unsigned frames, changes, sessions;
	int state;
	const char *stop;
};

/* Runs DATA as the store's decisions and then the bytes an agent sent on
 * one connection, through the decoders and checks bvaultd runs
 * (session.h), as bvaultd splits the bytes into frames. DATA's first
 * byte K is the length of the store's part, the K bytes after it: the
 * outcomes that depend on the store (does AUTH succeed, how many
 * sessions are open at BEGIN, is the agent still there, is an ADD
 * granted) are taken from those bytes in turn, from the first again
 * when they run out; K 0 (or no byte at all) is a store that says yes
 * to everything, with no other session open. The frames follow. Aborts
 * if a decoder breaks its contract or disagrees with the protocol as
 * fuzz_proto.c spells it out on its own. */
void fuzz_proto_one(const uint8_t *data, size_t size,
		    struct fuzz_proto_result *res);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
