/*
 * engine-space: a chunk that occurs several times among the chunks an
 * ingest processes together is written once (ingest.c: dead records
 * are dropped from the batch's run, and a chunk new in a batch still
 * being written is not written again by the next).
 *
 *  1. 64 MiB of one repeated random 64 KiB block, written in one call,
 *     in 1 MiB calls and in 4 KiB calls: one record in the containers.
 *  2. 48 MiB of four random blocks in turn, over several batches: four
 *     records.
 *  3. Two disks of one group in one session, holding the same blocks:
 *     records only for the distinct ones.
 * Each time every RP exports bit for bit and verify is clean.
 *  4. stats are honest (engine/stats.c): four express fulls of a disk
 *     half zeros protect four times its non-zero bytes; an aborted
 *     session leaves its new chunks unreferenced, the live ones and what
 *     is protected unchanged; a repeated block is one live chunk.
 */
#include "etest.h"

#define BLK (64u << 10)

static uint8_t *make_disk(const uint8_t *blocks, unsigned nblocks,
			  uint64_t size)
{
	uint8_t *d = malloc(size);
	if (!d)
		bail_out("out of memory");
	for (uint64_t off = 0; off < size; off += BLK)
		memcpy(d + off, blocks + (off / BLK % nblocks) * BLK, BLK);
	return d;
}

static uint64_t records(bv_store *s)
{
	bv_verify_result vr;
	int rc = bv_store_verify(s, &vr);
	if (rc < 0)
		diag("verify: %s", bv_store_error(s));
	return rc < 0 ? UINT64_MAX : vr.records;
}

/* Ingests DISK into NAME of a fresh store in calls of STEP bytes. */
static void one(const char *root, const char *what, const uint8_t *disk,
		uint64_t size, size_t step, uint64_t want)
{
	char *dir = et_path(root, "s");
	bv_store *s;
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp;
	int slot;

	et_rm_rf(dir);
	et_init(dir, BLK);
	s = et_open(dir);
	ET_MUST(s, bv_ingest_begin(s, &in));
	ET_MUST(s, slot = bv_ingest_add(in, "vm1", 0, size));
	for (uint64_t off = 0; off < size; off += step)
		ET_MUST(s, bv_ingest_write(in, slot, off, disk + off, step));
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
	uint64_t n = records(s);
	is_int(n, want, "%s: %" PRIu64 " record%s in the containers", what,
	       want, want == 1 ? "" : "s");
	ok(et_export_eq(s, "vm1", 1, root, disk, size), "%s: exports bit for "
	   "bit", what);
	bv_store_close(s);
	free(dir);
}

int main(void)
{
	char *root = et_tmpdir("space");
	et_rng rng = { et_seed(31337) };
	uint8_t blocks[4 * BLK];

	et_fill(&rng, blocks, sizeof blocks);
	uint8_t *d1 = make_disk(blocks, 1, 64u << 20);
	one(root, "one block, one call", d1, 64u << 20, 64u << 20, 1);
	one(root, "one block, 1 MiB calls", d1, 64u << 20, 1u << 20, 1);
	one(root, "one block, 4 KiB calls", d1, 16u << 20, 4096, 1);
	free(d1);
	uint8_t *d4 = make_disk(blocks, 4, 48u << 20);
	one(root, "four blocks in turn", d4, 48u << 20, 1u << 20, 4);

	/* Two disks of one group, one session. */
	{
		char *dir = et_path(root, "g");
		const char *names[2] = { "a", "b" };
		bv_store *s;
		bv_ingest *in = NULL;
		bv_commit_opts co = { .make_rp = 1 };
		uint64_t rp, size = 24u << 20;
		int sa, sb;

		et_init(dir, BLK);
		s = et_open(dir);
		ET_MUST(s, bv_replica_create(s, "a", size, 0));
		ET_MUST(s, bv_replica_create(s, "b", size, 0));
		ET_MUST(s, bv_group_create(s, "vm", names, 2));
		ET_MUST(s, bv_ingest_begin(s, &in));
		ET_MUST(s, sa = bv_ingest_add(in, "a", 0, 0));
		ET_MUST(s, sb = bv_ingest_add(in, "b", 0, 0));
		for (uint64_t off = 0; off < size; off += 1u << 20) {
			ET_MUST(s, bv_ingest_write(in, sa, off, d4 + off,
						   1u << 20));
			ET_MUST(s, bv_ingest_write(in, sb, off, d4 + off,
						   1u << 20));
		}
		ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		is_int(records(s), 4, "two disks of the same four blocks: "
		       "four records");
		ok(et_export_eq(s, "a", 1, root, d4, size) &&
		   et_export_eq(s, "b", 1, root, d4, size),
		   "both export bit for bit");
		bv_store_close(s);
		free(dir);
	}
	free(d4);

	/* 4. stats */
	{
		char *dir = et_path(root, "st");
		uint64_t size = 16u << 20, half = size / 2;
		uint8_t *d = calloc(1, size);
		bv_store *s;
		bv_stats st;
		if (!d)
			bail_out("out of memory");
		et_fill(&rng, d, half); /* the second half stays zeros */
		et_init(dir, BLK);
		s = et_open(dir);
		for (int k = 0; k < 4; k++) {
			bv_ingest *in = NULL;
			bv_commit_opts co = { .make_rp = 1 };
			uint64_t rp;
			int slot;
			/* Each express full changes 1 MiB of the data half. */
			if (k)
				et_fill(&rng, d + (uint64_t)k * (1u << 20), 1u << 20);
			ET_MUST(s, bv_ingest_begin(s, &in));
			ET_MUST(s, slot = bv_ingest_add(in, "vm1", (uint64_t)k,
							size));
			if (k == 0)
				ET_MUST(s, bv_ingest_write(in, slot, 0, d, size));
			else
				ET_MUST(s, bv_ingest_write(in, slot,
						(uint64_t)k * (1u << 20),
						d + (uint64_t)k * (1u << 20),
						1u << 20));
			ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		}
		ET_MUST(s, bv_stats_get(s, &st));
		ok(st.scanned, "stats walked the index");
		is_int(st.protected_bytes, 4 * half, "four RPs protect four "
		       "times the non-zero half");
		is_int(st.live_chunks, (half + 3 * (1u << 20)) / BLK,
		       "the live chunks: the first full's, and each express "
		       "full's new ones");
		is_int(st.unreferenced_chunks, 0, "none unreferenced");
		ok(st.live_raw_bytes == half + 3 * (1u << 20),
		   "the dedup ratio counts what the RPs protect: %.2f, 32 MiB "
		   "of 11 MiB", (double)st.protected_bytes /
		   (double)st.live_raw_bytes);
		uint64_t live = st.live_chunks, prot = st.protected_bytes;

		/* An aborted session: 2 MiB of new data, never committed. */
		{
			bv_ingest *in = NULL;
			uint8_t *junk = malloc(2u << 20);
			int slot;
			if (!junk)
				bail_out("out of memory");
			et_fill(&rng, junk, 2u << 20);
			ET_MUST(s, bv_ingest_begin(s, &in));
			ET_MUST(s, slot = bv_ingest_add(in, "vm1", 4, 0));
			/* The disk twice over: batches reach the index. */
			for (uint64_t off = 0; off < 2 * size; off += 2u << 20) {
				et_fill(&rng, junk, 2u << 20);
				ET_MUST(s, bv_ingest_write(in, slot, off % size,
							   junk, 2u << 20));
			}
			bv_ingest_abort(in);
			free(junk);
		}
		ET_MUST(s, bv_stats_get(s, &st));
		ok(st.unreferenced_chunks > 0, "an aborted session's chunks "
		   "are unreferenced (%" PRIu64 ")", st.unreferenced_chunks);
		is_int(st.live_chunks, live, "the live chunks are as before");
		is_int(st.protected_bytes, prot, "and what is protected");
		ok(et_export_eq(s, "vm1", 4, root, d, size), "RP 4 exports "
		   "bit for bit");
		bv_store_close(s);
		free(d);
		free(dir);
	}
	{
		uint8_t *d1b = make_disk(blocks, 1, 8u << 20);
		char *dir = et_path(root, "one");
		bv_store *s;
		bv_stats st;
		bv_ingest *in = NULL;
		bv_commit_opts co = { .make_rp = 1 };
		uint64_t rp;
		int slot;
		et_init(dir, BLK);
		s = et_open(dir);
		ET_MUST(s, bv_ingest_begin(s, &in));
		ET_MUST(s, slot = bv_ingest_add(in, "vm1", 0, 8u << 20));
		ET_MUST(s, bv_ingest_write(in, slot, 0, d1b, 8u << 20));
		ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		ET_MUST(s, bv_stats_get(s, &st));
		ok(st.live_chunks == 1 && st.protected_bytes == (8u << 20) &&
		   st.chunks == 1, "a repeated block: one live chunk, 8 MiB "
		   "protected");
		bv_store_close(s);
		free(d1b);
		free(dir);
	}
	et_tmpdir_done(root);
	return done_testing();
}
