/*
 * digest.c: bv_chunk_digest(), in a file of its own so that a program
 * that needs only it (bvault-agent, for the consistency check) links only
 * the codec from the static libbvault, not the index and its RocksDB.
 */
#include "internal.h"

void bv_chunk_digest(const void *data, size_t len, uint8_t out[16])
{
	bv_digest_compute(data, len, out);
}
