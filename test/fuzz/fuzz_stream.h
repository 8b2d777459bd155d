/*
 * fuzz_stream.h: the stream fuzz target's one run, shared by the libFuzzer
 * build (clang only) and the corpus replay test (every compiler).
 */
#ifndef BV_TEST_FUZZ_STREAM_H
#define BV_TEST_FUZZ_STREAM_H

#include <stddef.h>
#include <stdint.h>

/* Reads DATA as a stream of FORMAT to the end or the first error and
 * returns 0 (END) or the error. Aborts if the reader breaks its contract
 * (a piece not a multiple of 512 or over BV_STREAM_PIECE, an extent past
 * the disk size, an error code outside the documented set, END twice
 * different). *RECORDS, when not NULL, gets the records returned. */
int fuzz_stream_one(const uint8_t *data, size_t size, int format,
		    uint64_t *records);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
