/*
 * part.c: the partition-table parser of bvault files (tools/part.c) on
 * tables built here byte by byte: good GPTs (512 and 4096-byte sectors,
 * UTF-16 names), a damaged primary (the backup is used), both damaged,
 * headers whose CRC is right but whose fields are not (a header size past
 * the sector, an entry array of 4 GiB, entries past the disk), partitions
 * past the end or ending before they start, MBRs with primary and logical
 * partitions, an EBR chain that loops, a protective MBR without a GPT,
 * whole-disk file systems; then thousands of random mutations of a good
 * table, after each of which every partition the parser accepts must lie
 * inside the disk (and the sanitizer build sees no bad access).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "part.h"

#define DISK (8u << 20)

static uint8_t *disk;
static uint64_t disk_size = DISK;
static unsigned reads;

static int rd(void *ud, void *buf, size_t len, uint64_t off)
{
	(void)ud;
	reads++;
	if (off > disk_size || len > disk_size - off)
		return -1;
	memcpy(buf, disk + off, len);
	return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static const uint8_t linux_fs[16] = { 0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84,
				      0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69,
				      0xd8, 0x47, 0x7d, 0xe4 };

struct gpt_part {
	uint64_t first, last;
	const char *name; /* ASCII, or "\xfc" for one non-ASCII unit */
};

/* Writes a protective MBR and both GPTs (entries at LBA 2 and before the
 * backup header) for NP partitions, sector SS. */
static void make_gpt(unsigned ss, const struct gpt_part *p, unsigned np,
		     uint32_t nent)
{
	uint64_t nsect = disk_size / ss;
	uint32_t esize = 128, ecrc;
	size_t ebytes = (size_t)nent * esize;
	uint8_t *ent = calloc(1, ebytes);

	memset(disk, 0, disk_size);
	disk[446 + 4] = 0xee;
	put32(disk + 446 + 8, 1);
	put32(disk + 446 + 12, (uint32_t)(nsect - 1));
	disk[510] = 0x55;
	disk[511] = 0xaa;
	for (unsigned i = 0; i < np; i++) {
		uint8_t *e = ent + i * esize;

		memcpy(e, linux_fs, 16);
		e[16] = (uint8_t)(i + 1);
		put64(e + 32, p[i].first);
		put64(e + 40, p[i].last);
		for (size_t k = 0; p[i].name[k]; k++)
			e[56 + 2 * k] = (uint8_t)p[i].name[k];
	}
	ecrc = part_crc32(ent, ebytes);
	for (int backup = 0; backup < 2; backup++) {
		uint64_t lba = backup ? nsect - 1 : 1;
		uint64_t elba = backup ? nsect - 1 - (ebytes + ss - 1) / ss : 2;
		uint8_t *h = disk + lba * ss;

		memcpy(h, "EFI PART", 8);
		put32(h + 8, 0x10000);
		put32(h + 12, 92);
		put64(h + 24, lba);
		put64(h + 32, backup ? 1 : nsect - 1);
		put64(h + 40, 34);
		put64(h + 48, nsect - 34);
		put64(h + 72, elba);
		put32(h + 80, nent);
		put32(h + 84, esize);
		put32(h + 88, ecrc);
		memcpy(disk + elba * ss, ent, ebytes);
		put32(h + 16, 0);
		put32(h + 16, part_crc32(h, 92));
	}
	free(ent);
}

/* Recomputes the header CRC of the GPT header at LBA (after a change
 * that must be caught by a check other than the CRC). */
static void fix_crc(unsigned ss, uint64_t lba)
{
	uint8_t *h = disk + lba * ss;
	uint32_t hs = (uint32_t)h[12] | (uint32_t)h[13] << 8;

	if (hs > ss)
		hs = 92;
	put32(h + 16, 0);
	put32(h + 16, part_crc32(h, hs));
}

static void mbr_entry(uint8_t *sector, int i, uint8_t type, uint32_t lba,
		      uint32_t count)
{
	uint8_t *e = sector + 446 + 16 * i;

	e[0] = 0;
	e[4] = type;
	put32(e + 8, lba);
	put32(e + 12, count);
	sector[510] = 0x55;
	sector[511] = 0xaa;
}

static int inside(const struct part_table *t)
{
	for (unsigned i = 0; i < t->n; i++)
		if (!t->p[i].bad && (t->p[i].start > disk_size ||
				     t->p[i].len > disk_size - t->p[i].start))
			return 0;
	return 1;
}

static int scan(struct part_table *t, char *err)
{
	err[0] = '\0';
	return part_scan(rd, NULL, disk_size, t, err, 256);
}

int main(void)
{
	struct part_table t;
	char err[256];
	uint64_t nsect;
	int rc;

	disk = malloc(DISK);
	if (!disk)
		return 1;

	ok(part_crc32("123456789", 9) == 0xcbf43926u, "CRC32 check value");

	/* A good GPT. */
	struct gpt_part gp[] = { { 2048, 4095, "root" }, { 4096, 8191, "\xfc" },
				 { 8192, 16000, "data" } };
	make_gpt(512, gp, 3, 128);
	rc = scan(&t, err);
	ok(rc == 0 && t.scheme == PART_GPT && t.n == 3, "GPT: 3 partitions (%s)",
	   err);
	ok(t.n == 3 && t.p[0].num == 1 && t.p[0].start == 2048 * 512 &&
	   t.p[0].len == 2048 * 512 && t.p[2].num == 3,
	   "GPT: numbers, starts and lengths");
	ok(t.n == 3 && strcmp(t.p[0].name, "root") == 0 &&
	   strcmp(t.p[1].name, "\xc3\xbc") == 0 &&
	   strcmp(t.p[0].type, "Linux filesystem") == 0,
	   "GPT: names as UTF-8, known type GUID named");
	ok(t.note[0] == '\0', "GPT: no note for a good table");
	part_table_free(&t);

	/* Primary damaged (header CRC, then the entries): the backup. */
	disk[512 + 40] ^= 1;
	rc = scan(&t, err);
	ok(rc == 0 && t.n == 3 && strstr(t.note, "header CRC32 mismatch"),
	   "GPT: a damaged primary header: the backup (%s)", t.note);
	part_table_free(&t);
	make_gpt(512, gp, 3, 128);
	disk[2 * 512 + 33] ^= 1;
	rc = scan(&t, err);
	ok(rc == 0 && t.n == 3 && strstr(t.note, "entry array CRC32"),
	   "GPT: damaged primary entries: the backup (%s)", t.note);
	part_table_free(&t);
	nsect = disk_size / 512;
	disk[(nsect - 1) * 512 + 40] ^= 1;
	rc = scan(&t, err);
	ok(rc < 0 && strstr(err, "primary header") &&
	   strstr(err, "backup header"), "GPT: both damaged: refused (%s)",
	   err);
	part_table_free(&t);

	/* Right CRCs, wrong fields. */
	make_gpt(512, gp, 3, 128);
	put32(disk + 512 + 12, 1000);
	fix_crc(512, 1);
	disk[(nsect - 1) * 512] = 0;
	rc = scan(&t, err);
	ok(rc < 0 && strstr(err, "header size 1000"),
	   "GPT: a header size past the sector (%s)", err);
	part_table_free(&t);
	make_gpt(512, gp, 3, 128);
	put32(disk + 512 + 80, 0xffffffffu);
	fix_crc(512, 1);
	disk[(nsect - 1) * 512] = 0;
	reads = 0;
	rc = scan(&t, err);
	ok(rc < 0 && strstr(err, "entries of 128 bytes"),
	   "GPT: 4 Gi entries refused before any allocation (%s)", err);
	part_table_free(&t);
	make_gpt(512, gp, 3, 128);
	put64(disk + 512 + 72, nsect - 2);
	fix_crc(512, 1);
	disk[(nsect - 1) * 512] = 0;
	rc = scan(&t, err);
	ok(rc < 0 && strstr(err, "outside the disk"),
	   "GPT: an entry array past the end (%s)", err);
	part_table_free(&t);
	make_gpt(512, gp, 3, 128);
	put64(disk + 512 + 24, 7);
	fix_crc(512, 1);
	disk[(nsect - 1) * 512] = 0;
	rc = scan(&t, err);
	ok(rc < 0 && strstr(err, "says it is at LBA 7"),
	   "GPT: a header at the wrong LBA (%s)", err);
	part_table_free(&t);

	/* Partitions outside the disk, or backwards. */
	struct gpt_part bp[] = { { 2048, nsect + 5, "past" },
				 { 9000, 8000, "backwards" },
				 { 34, UINT64_MAX, "huge" } };
	make_gpt(512, bp, 3, 128);
	rc = scan(&t, err);
	ok(rc == 0 && t.n == 3 && t.p[0].bad && t.p[1].bad && t.p[2].bad,
	   "GPT: partitions past the end or backwards are marked bad");
	ok(inside(&t), "GPT: nothing bad is given a range");
	part_table_free(&t);

	/* 4096-byte sectors. */
	struct gpt_part gp4[] = { { 256, 511, "four-k" } };
	make_gpt(4096, gp4, 1, 128);
	rc = scan(&t, err);
	ok(rc == 0 && t.sector == 4096 && t.n == 1 &&
	   t.p[0].start == 256u * 4096, "GPT in 4096-byte sectors (%s)", err);
	part_table_free(&t);

	/* A protective MBR and no GPT. */
	memset(disk, 0, disk_size);
	mbr_entry(disk, 0, 0xee, 1, 1000);
	rc = scan(&t, err);
	ok(rc < 0 && strstr(err, "no GPT signature"),
	   "a protective MBR without a GPT is refused (%s)", err);
	part_table_free(&t);

	/* MBR: primaries, one past the end, and logical partitions. */
	memset(disk, 0, disk_size);
	mbr_entry(disk, 0, 0x83, 2048, 2048);
	mbr_entry(disk, 1, 0x07, 4096, (uint32_t)nsect);
	mbr_entry(disk, 2, 0x05, 8192, 4096);
	mbr_entry(disk + 8192 * 512, 0, 0x83, 63, 500);
	mbr_entry(disk + 8192 * 512, 1, 0x05, 1024, 1024);
	mbr_entry(disk + 9216 * 512, 0, 0x83, 63, 900);
	mbr_entry(disk + 9216 * 512, 1, 0x05, 2048, 1024);
	mbr_entry(disk + 10240 * 512, 0, 0x82, 63, 5000); /* past its end */
	rc = scan(&t, err);
	ok(rc == 0 && t.scheme == PART_MBR && t.n == 5,
	   "MBR: 2 primaries and 3 logicals (%u, %s)", t.n, err);
	ok(t.n == 5 && t.p[0].num == 1 && t.p[0].start == 2048 * 512 &&
	   !t.p[0].bad && t.p[1].bad, "MBR: a primary past the end is bad");
	ok(t.n == 5 && t.p[2].num == 5 && t.p[2].start == (8192 + 63) * 512ull &&
	   t.p[3].num == 6 && t.p[3].start == (9216 + 63) * 512ull &&
	   t.p[4].num == 7 && t.p[4].bad,
	   "MBR: logicals numbered from 5, relative to their EBR, bounded "
	   "by the extended partition");
	part_table_free(&t);
	/* An EBR chain that points back at itself. */
	mbr_entry(disk + 9216 * 512, 1, 0x05, 0, 1024);
	put32(disk + 9216 * 512 + 462 + 8, 1024); /* next = 8192 + 1024 */
	reads = 0;
	rc = scan(&t, err);
	ok(rc == 0 && reads < 20 && t.n == 4, "MBR: a looping EBR chain ends "
	   "(%u reads, %u partitions)", reads, t.n);
	part_table_free(&t);

	/* Whole-disk file systems. */
	memset(disk, 0, disk_size);
	disk[1080] = 0x53;
	disk[1081] = 0xef;
	rc = scan(&t, err);
	ok(rc == 0 && t.scheme == PART_NONE, "a whole-disk ext file system");
	part_table_free(&t);
	memset(disk, 0, disk_size);
	memcpy(disk + 3, "NTFS    ", 8);
	disk[510] = 0x55;
	disk[511] = 0xaa;
	disk[446] = 0x12; /* boot code where an MBR has its entries */
	rc = scan(&t, err);
	ok(rc == 0 && t.scheme == PART_NONE,
	   "a whole-disk NTFS is not taken for an MBR");
	part_table_free(&t);

	/* Random mutations of good tables: whatever the parser makes of
	 * them, every range it gives lies inside the disk. */
	srand(7);
	int all_inside = 1, ran = 0;
	for (int i = 0; i < 3000; i++) {
		int gpt = i % 2 == 0;

		if (gpt) {
			make_gpt(512, gp, 3, 128);
		} else {
			memset(disk, 0, 64 << 10);
			mbr_entry(disk, 0, 0x83, 2048, 2048);
			mbr_entry(disk, 2, 0x05, 8192, 4096);
			mbr_entry(disk + 8192 * 512, 0, 0x83, 63, 500);
			mbr_entry(disk + 8192 * 512, 1, 0x05, 1024, 1024);
		}
		for (int k = rand() % 8 + 1; k > 0; k--) {
			size_t at = gpt ? (size_t)(rand() % (3 * 512))
					: (rand() % 2 ? 446 + (size_t)(rand() % 66)
						      : 8192 * 512 + 446 +
						       (size_t)(rand() % 66));
			disk[at] = (uint8_t)rand();
		}
		if (gpt && rand() % 2) {
			fix_crc(512, 1);
			put32(disk + 512 + 88,
			      part_crc32(disk + 1024, 128 * 128));
			fix_crc(512, 1);
		}
		rc = scan(&t, err);
		ran++;
		if (rc == 0 && !inside(&t))
			all_inside = 0;
		part_table_free(&t);
	}
	ok(all_inside, "%d mutated tables: every partition inside the disk",
	   ran);

	free(disk);
	return done_testing();
}
