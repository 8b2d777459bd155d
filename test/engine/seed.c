/*
 * engine-seed: seed sets through bvault.h (storage/SEED.md). Disks held
 * in memory (bv_seed_export_disks with the caller's read and extent
 * callbacks: a hole the extents report is never read), of two chunk
 * sizes and a size that is not a multiple of the chunk, exported plain
 * and sealed, over several media, verified, imported and read back byte
 * for byte; a rerun writes nothing; the same set again is "already";
 * the error codes of a missing medium, a wrong key, a damaged pack, a
 * key file that exists.
 */
#include "tap.h"
#include "etest.h"

/* Paths made here, freed at the end (each et_path() is a new string). */
static char *owned[64];
static size_t nowned;

static char *P(const char *dir, const char *name)
{
	if (nowned == sizeof owned / sizeof *owned)
		bail_out("too many paths");
	return owned[nowned++] = et_path(dir, name);
}

#define MIB (1u << 20)

struct mdisk {
	uint8_t *data;
	uint64_t size;
	uint64_t hole_from, hole_to; /* reported as a hole, filled with junk
				      * that must never be read */
	uint64_t hole_reads;
};

static int mread(void *ud, void *buf, size_t len, uint64_t off)
{
	struct mdisk *d = ud;
	if (off + len > d->size)
		return -EINVAL;
	if (off < d->hole_to && off + len > d->hole_from)
		d->hole_reads++;
	memcpy(buf, d->data + off, len);
	return 0;
}

static int mextent(void *ud, uint64_t off, uint64_t len, uint64_t *run)
{
	struct mdisk *d = ud;
	if (off >= d->hole_from && off < d->hole_to) {
		uint64_t r = d->hole_to - off;
		*run = r < len ? r : len;
		return 0;
	}
	uint64_t end = off < d->hole_from ? d->hole_from : d->size;
	*run = end - off < len ? end - off : len;
	return 1;
}

static int import_eq(bv_store *s, const char *name, const uint8_t *want,
		     uint64_t size, const char *dir)
{
	return et_export_eq(s, name, BV_RP_LATEST, dir, want, size);
}

int main(void)
{
	char *dir = et_tmpdir("seed");
	et_rng rng = { et_seed(13) };
	struct mdisk d[2];
	uint8_t key[BV_SEED_KEY], key2[BV_SEED_KEY];
	bv_seed_result r;
	int rc;

	/* Disk a: 6 MiB + 1536 bytes of 64 KiB chunks: random, a repeat, a
	 * hole; disk b: 3 MiB of 4 KiB chunks sharing bytes with a. */
	d[0].size = 6 * MIB + 1536;
	d[1].size = 3 * MIB;
	for (int i = 0; i < 2; i++) {
		d[i].data = calloc(1, d[i].size);
		if (!d[i].data)
			bail_out("calloc");
		d[i].hole_reads = 0;
	}
	et_fill(&rng, d[0].data, 2 * MIB);
	memcpy(d[0].data + 2 * MIB, d[0].data, MIB);
	d[0].hole_from = 3 * MIB;
	d[0].hole_to = 4 * MIB;
	et_fill(&rng, d[0].data + 4 * MIB, 2 * MIB + 1536);
	memcpy(d[1].data, d[0].data + MIB, 2 * MIB);
	d[1].hole_from = d[1].hole_to = 0;

	bv_seed_disk sd[2] = {
		{ .name = "da", .size = d[0].size, .chunk_size = 64 << 10,
		  .ud = &d[0], .read = mread, .extent = mextent },
		{ .name = "db", .size = d[1].size, .chunk_size = 4096,
		  .ud = &d[1], .read = mread, .extent = mextent },
	};
	/* The hole holds junk: any read of it would show in the import. */
	memset(d[0].data + 3 * MIB, 0x5a, MIB);

	char *m1 = P(dir, "m1");
	const char *dirs1[] = { m1 };
	bv_seed_opts o = { .dirs = dirs1, .ndirs = 1 };
	rc = bv_seed_export_disks(sd, 1, NULL, "first", 1700000000, &o, &r);
	is_int(rc, 0, "export of one disk: %s", bv_store_error(NULL));
	ok(d[0].hole_reads == 0, "the hole was never read (%" PRIu64 ")",
	   d[0].hole_reads);
	is_int((int)r.media, 1, "one medium");
	ok(r.entries == 65, "65 distinct chunks, the repeat once: %" PRIu64,
	   r.entries);
	ok(r.zero_chunks == 16, "16 zero chunks (the hole): %" PRIu64,
	   r.zero_chunks);
	uint64_t written = r.bytes_written;
	rc = bv_seed_export_disks(sd, 1, NULL, "first", 1700000000, &o, &r);
	is_int(rc, 0, "a rerun");
	ok(r.bytes_written == 0 && written == r.bytes,
	   "writes nothing (%" PRIu64 "), the first wrote the set (%" PRIu64
	   " of %" PRIu64 ")", r.bytes_written, written, r.bytes);

	/* Zero the hole in the model: that is what the set holds. */
	memset(d[0].data + 3 * MIB, 0, MIB);
	char *sdir = P(dir, "store");
	et_init(sdir, 0);
	bv_store *s = et_open(sdir);
	rc = bv_seed_verify(dirs1, 1, NULL, &r);
	is_int(rc, 0, "verify: %s", bv_store_error(NULL));
	rc = bv_seed_import(s, dirs1, 1, NULL, &r);
	is_int(rc, 0, "import: %s", bv_store_error(s));
	ok(import_eq(s, "da", d[0].data, d[0].size, dir),
	   "disk a reads back bit for bit");
	rc = bv_seed_import(s, dirs1, 1, NULL, &r);
	ok(rc == 0 && r.already, "the same set again: already imported");

	/* A group of both, sealed, over three media or more. */
	memset(d[0].data + 3 * MIB, 0x5a, MIB);
	ET_MUST(NULL, bv_seed_keygen(P(dir, "key")));
	is_int(bv_seed_keygen(P(dir, "key")), BV_EEXIST,
	       "keygen never overwrites");
	ET_MUST(NULL, bv_seed_key_load(P(dir, "key"), key));
	ET_MUST(NULL, bv_seed_keygen(P(dir, "key2")));
	ET_MUST(NULL, bv_seed_key_load(P(dir, "key2"), key2));
	char *e[4] = { P(dir, "e1"), P(dir, "e2"),
		       P(dir, "e3"), P(dir, "e4") };
	const char *edirs[4] = { e[0], e[1], e[2], e[3] };
	bv_seed_opts oe = { .dirs = edirs, .ndirs = 4, .media_size = 3 * MIB,
			    .key = key };
	rc = bv_seed_export_disks(sd, 2, "both", NULL, 0, &oe, &r);
	is_int(rc, 0, "sealed export of a group: %s", bv_store_error(NULL));
	ok(r.media >= 3 && r.media <= 4 && r.next_medium == 0,
	   "over %u media", r.media);
	memset(d[0].data + 3 * MIB, 0, MIB);
	uint32_t nm = r.media;
	const char *rev[4];
	for (uint32_t i = 0; i < nm; i++)
		rev[i] = edirs[nm - 1 - i];
	bv_seed_opts ok_key = { .key = key }, bad_key = { .key = key2 };
	is_int(bv_seed_verify(rev, nm - 1, &ok_key, &r), BV_ENOTFOUND,
	       "a missing medium: BV_ENOTFOUND");
	ok(strstr(bv_store_error(NULL), "is missing") != NULL, "named: %s",
	   bv_store_error(NULL));
	is_int(bv_seed_verify(rev, nm, &bad_key, &r), BV_ECHECKSUM,
	       "a wrong key: BV_ECHECKSUM");
	is_int(bv_seed_verify(rev, nm, NULL, &r), BV_EINVAL,
	       "no key: BV_EINVAL");
	is_int(bv_seed_verify(rev, nm, &ok_key, &r), 0, "verify, reversed");
	/* Disk da has the same content, so the same identity, as in the
	 * first set: that store refuses the group (da exists "from this
	 * seed"); a fresh one takes it. */
	is_int(bv_seed_import(s, rev, nm, &ok_key, &r), BV_EEXIST,
	       "a group with a member imported before, alone: BV_EEXIST");
	char *sgdir = P(dir, "storeg");
	et_init(sgdir, 0);
	bv_store *sg = et_open(sgdir);
	rc = bv_seed_import(sg, rev, nm, &ok_key, &r);
	is_int(rc, 0, "import of the group: %s", bv_store_error(sg));
	ok(import_eq(sg, "da", d[0].data, d[0].size, dir) &&
	   import_eq(sg, "db", d[1].data, d[1].size, dir),
	   "both disks (64 KiB and 4 KiB chunks) read back bit for bit");
	ok(r.chunks_new == r.entries, "%" PRIu64 " chunks new of %" PRIu64,
	   r.chunks_new, r.entries);
	bv_store_close(sg);

	/* A damaged byte in a sealed pack: nothing imported. */
	char *s2dir = P(dir, "store2");
	et_init(s2dir, 0);
	bv_store *s2 = et_open(s2dir);
	char *pack = P(e[0], "pack.000000");
	int fd = open(pack, O_RDWR);
	uint8_t b = 0;
	ok(fd >= 0 && pread(fd, &b, 1, 5000) == 1, "open a pack");
	b ^= 1;
	ok(pwrite(fd, &b, 1, 5000) == 1, "flip a byte");
	close(fd);
	is_int(bv_seed_import(s2, rev, nm, &ok_key, &r), BV_ECHECKSUM,
	       "a tampered pack: BV_ECHECKSUM");
	ok(strstr(bv_store_error(NULL), "pack.000000") != NULL,
	   "the message names the pack: %s", bv_store_error(NULL));
	bv_replica_info ri;
	is_int(bv_replica_info_get(s2, "da", &ri), BV_ENOTFOUND,
	       "and nothing was imported");
	bv_store_close(s2);
	bv_store_close(s);

	for (int i = 0; i < 2; i++)
		free(d[i].data);
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	et_tmpdir_done(dir);
	return done_testing();
}
