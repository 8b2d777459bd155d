/*
 * part.c: MBR and GPT partition tables (part.h). Every number read from
 * the disk is checked before it is used: header and entry sizes against
 * fixed bounds, LBAs against the disk's sector count (so no byte offset
 * overflows), both GPT CRC32s, and the extended-partition chain must move
 * forward inside its container, so a crafted table can neither loop nor
 * point a read outside the disk.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "part.h"

#define GPT_ENTRIES_MAX (4u << 20) /* bytes of a GPT entry array */
#define EBR_MAX 128                /* logical partitions followed */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

uint32_t part_crc32(const void *buf, size_t len)
{
	static uint32_t table[256];
	static int ready;
	const uint8_t *p = buf;
	uint32_t c = 0xffffffffu;

	if (!ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;

			for (int k = 0; k < 8; k++)
				v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
			table[i] = v;
		}
		ready = 1;
	}
	while (len--)
		c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

const char *part_fs_name(int fs)
{
	switch (fs) {
	case PART_FS_EXT: return "ext2/3/4";
	case PART_FS_NTFS: return "NTFS";
	default: return "no known file system";
	}
}

void part_table_free(struct part_table *t)
{
	free(t->p);
	t->p = NULL;
	t->n = 0;
}

static int add(struct part_table *t, const struct part *p)
{
	struct part *v;

	if (t->n >= PART_MAX)
		return -1;
	v = realloc(t->p, (t->n + 1) * sizeof(*v));
	if (!v)
		return -1;
	t->p = v;
	t->p[t->n++] = *p;
	return 0;
}

/* The magic numbers of the file systems the reader knows, at fixed
 * offsets: a look, not a parse. */
static int probe_fs(part_read_fn rd, void *ud, uint64_t start, uint64_t len)
{
	uint8_t b[1088];

	if (len < sizeof(b) || rd(ud, b, sizeof(b), start) < 0)
		return PART_FS_NONE;
	if (b[1080] == 0x53 && b[1081] == 0xef)
		return PART_FS_EXT;
	if (memcmp(b + 3, "NTFS    ", 8) == 0)
		return PART_FS_NTFS;
	return PART_FS_NONE;
}

/* ---- GPT ------------------------------------------------------------------ */

struct gpt {
	uint64_t first, last, elba;
	uint32_t nent, esize, ecrc;
};

static const struct {
	const char *guid, *name;
} gpt_types[] = {
	{ "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem" },
	{ "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI system" },
	{ "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "Microsoft basic data" },
	{ "E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "Microsoft reserved" },
	{ "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC", "Windows recovery" },
	{ "21686148-6449-6E6F-744E-656564454649", "BIOS boot" },
	{ "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap" },
	{ "E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM" },
	{ "A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID" },
	{ "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "Linux root (x86-64)" },
	{ "BC13C2FF-59E6-4262-A352-B275FD6F7172", "Linux extended boot" },
	{ "933AC7E1-2EB4-4F13-B844-0E14E2AEF915", "Linux home" },
};

static void guid_str(const uint8_t *g, char *out, size_t len)
{
	snprintf(out, len, "%08" PRIX32 "-%04X-%04X-%02X%02X-"
		 "%02X%02X%02X%02X%02X%02X", le32(g),
		 (unsigned)(g[4] | g[5] << 8), (unsigned)(g[6] | g[7] << 8),
		 g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

/* A GPT name (UTF-16LE, up to 36 units) as UTF-8; what does not decode
 * becomes '?'. */
static void gpt_name(const uint8_t *s, size_t units, char *out, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < units; i++) {
		uint32_t c = (uint32_t)s[2 * i] | (uint32_t)s[2 * i + 1] << 8;
		uint8_t u[4];
		size_t n;

		if (c == 0)
			break;
		if (c >= 0xd800 && c < 0xdc00 && i + 1 < units) {
			uint32_t d = (uint32_t)s[2 * i + 2] |
				     (uint32_t)s[2 * i + 3] << 8;

			if (d >= 0xdc00 && d < 0xe000) {
				c = 0x10000 + ((c - 0xd800) << 10) +
				    (d - 0xdc00);
				i++;
			} else {
				c = '?';
			}
		} else if (c >= 0xd800 && c < 0xe000) {
			c = '?';
		}
		if (c < 0x20 || c == 0x7f)
			c = '?';
		if (c < 0x80) {
			u[0] = (uint8_t)c;
			n = 1;
		} else if (c < 0x800) {
			u[0] = (uint8_t)(0xc0 | c >> 6);
			u[1] = (uint8_t)(0x80 | (c & 0x3f));
			n = 2;
		} else if (c < 0x10000) {
			u[0] = (uint8_t)(0xe0 | c >> 12);
			u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
			u[2] = (uint8_t)(0x80 | (c & 0x3f));
			n = 3;
		} else {
			u[0] = (uint8_t)(0xf0 | c >> 18);
			u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3f));
			u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
			u[3] = (uint8_t)(0x80 | (c & 0x3f));
			n = 4;
		}
		if (o + n >= len)
			break;
		memcpy(out + o, u, n);
		o += n;
	}
	out[o] = '\0';
}

/* Checks the GPT header in S (one sector of SS bytes) read from LBA;
 * NULL, or why it is not good. */
static const char *gpt_header(uint8_t *s, unsigned ss, uint64_t lba,
			      uint64_t nsect, struct gpt *g, char *why,
			      size_t wlen)
{
	uint32_t hsize, crc;
	uint64_t bytes;

	if (memcmp(s, "EFI PART", 8) != 0)
		return "no GPT signature";
	hsize = le32(s + 12);
	if (hsize < 92 || hsize > ss) {
		snprintf(why, wlen, "header size %" PRIu32 " is outside "
			 "92..%u", hsize, ss);
		return why;
	}
	crc = le32(s + 16);
	memset(s + 16, 0, 4);
	if (part_crc32(s, hsize) != crc)
		return "header CRC32 mismatch";
	if (le64(s + 24) != lba) {
		snprintf(why, wlen, "header read at LBA %" PRIu64 " says it is "
			 "at LBA %" PRIu64, lba, le64(s + 24));
		return why;
	}
	g->first = le64(s + 40);
	g->last = le64(s + 48);
	g->elba = le64(s + 72);
	g->nent = le32(s + 80);
	g->esize = le32(s + 84);
	g->ecrc = le32(s + 88);
	if (g->first > g->last || g->last >= nsect) {
		snprintf(why, wlen, "usable LBAs %" PRIu64 "..%" PRIu64 " are "
			 "outside the disk (%" PRIu64 " sectors)", g->first,
			 g->last, nsect);
		return why;
	}
	if (g->esize < 128 || g->esize > 4096 || g->esize % 8) {
		snprintf(why, wlen, "entry size %" PRIu32 " is not a multiple "
			 "of 8 from 128 to 4096", g->esize);
		return why;
	}
	bytes = (uint64_t)g->nent * g->esize;
	if (g->nent == 0 || bytes > GPT_ENTRIES_MAX) {
		snprintf(why, wlen, "%" PRIu32 " entries of %" PRIu32 " bytes "
			 "is not 1 to %u bytes", g->nent, g->esize,
			 GPT_ENTRIES_MAX);
		return why;
	}
	if (g->elba < 2 || g->elba >= nsect ||
	    bytes > (nsect - g->elba) * (uint64_t)ss) {
		snprintf(why, wlen, "the entry array at LBA %" PRIu64 " is "
			 "outside the disk", g->elba);
		return why;
	}
	return NULL;
}

/* Reads and checks the header at LBA and its entries (into *ENT, freed by
 * the caller); NULL or why not. */
static const char *gpt_load(part_read_fn rd, void *ud, unsigned ss,
			    uint64_t lba, uint64_t nsect, struct gpt *g,
			    uint8_t **ent, char *why, size_t wlen)
{
	uint8_t *s = malloc(ss);
	const char *bad;

	*ent = NULL;
	if (!s)
		return "out of memory";
	if (rd(ud, s, ss, lba * ss) < 0) {
		free(s);
		snprintf(why, wlen, "cannot read LBA %" PRIu64, lba);
		return why;
	}
	bad = gpt_header(s, ss, lba, nsect, g, why, wlen);
	free(s);
	if (bad)
		return bad;
	*ent = malloc((size_t)g->nent * g->esize);
	if (!*ent)
		return "out of memory";
	if (rd(ud, *ent, (size_t)g->nent * g->esize, g->elba * ss) < 0) {
		snprintf(why, wlen, "cannot read the entries at LBA %" PRIu64,
			 g->elba);
		return why;
	}
	if (part_crc32(*ent, (size_t)g->nent * g->esize) != g->ecrc)
		return "entry array CRC32 mismatch";
	return NULL;
}

static int gpt_scan(part_read_fn rd, void *ud, uint64_t size, unsigned ss,
		    struct part_table *t, char *err, size_t errlen)
{
	char why1[128], why2[128];
	const char *bad1, *bad2 = NULL;
	uint64_t nsect = size / ss;
	uint8_t *ent = NULL;
	struct gpt g;
	int rc = -1;

	bad1 = gpt_load(rd, ud, ss, 1, nsect, &g, &ent, why1, sizeof(why1));
	if (bad1) {
		free(ent);
		ent = NULL;
		bad2 = nsect < 3 ? "the disk is too small"
				 : gpt_load(rd, ud, ss, nsect - 1, nsect, &g,
					    &ent, why2, sizeof(why2));
		if (bad2) {
			snprintf(err, errlen, "GPT partition table damaged: "
				 "primary header: %s; backup header: %s", bad1,
				 bad2);
			goto cleanup;
		}
		snprintf(t->note, sizeof(t->note), "primary GPT header "
			 "damaged (%s): using the backup", bad1);
	}
	t->scheme = PART_GPT;
	t->sector = ss;
	for (uint32_t i = 0; i < g.nent; i++) {
		const uint8_t *e = ent + (size_t)i * g.esize;
		static const uint8_t zero[16];
		uint64_t first = le64(e + 32), last = le64(e + 40);
		struct part p = { .num = i + 1 };
		char guid[40];

		if (memcmp(e, zero, 16) == 0)
			continue;
		guid_str(e, guid, sizeof(guid));
		snprintf(p.type, sizeof(p.type), "%s", guid);
		for (size_t k = 0; k < sizeof(gpt_types) / sizeof(gpt_types[0]);
		     k++)
			if (strcmp(guid, gpt_types[k].guid) == 0)
				snprintf(p.type, sizeof(p.type), "%s",
					 gpt_types[k].name);
		gpt_name(e + 56, g.esize >= 128 ? 36 : 0, p.name,
			 sizeof(p.name));
		if (first > last)
			p.bad = "its last LBA is before its first";
		else if (last >= nsect)
			p.bad = "it extends past the end of the disk";
		else {
			p.start = first * ss;
			p.len = (last - first + 1) * ss;
		}
		if (add(t, &p) < 0) {
			snprintf(err, errlen, "GPT: more than %u partitions",
				 PART_MAX);
			goto cleanup;
		}
	}
	rc = 0;
cleanup:
	free(ent);
	return rc;
}

/* ---- MBR ------------------------------------------------------------------ */

static int is_extended(uint8_t type)
{
	return type == 0x05 || type == 0x0f || type == 0x85;
}

/* An MBR: the boot signature, and every entry's status 0x00 or 0x80 (a
 * file system's boot sector has the signature too, but code there). */
static int mbr_valid(const uint8_t *s, int *protective, int *entries)
{
	*protective = 0;
	*entries = 0;
	if (s[510] != 0x55 || s[511] != 0xaa)
		return 0;
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = s + 446 + 16 * i;

		if (e[0] != 0x00 && e[0] != 0x80)
			return 0;
		if (e[4] == 0xee)
			*protective = 1;
		if (e[4] != 0 && le32(e + 12) != 0)
			(*entries)++;
	}
	return 1;
}

static void mbr_part(struct part *p, unsigned num, uint8_t type,
		     uint64_t lba, uint64_t count, uint64_t lo, uint64_t hi)
{
	*p = (struct part){ .num = num };
	snprintf(p->type, sizeof(p->type), "0x%02x%s", type,
		 type == 0x83 ? " Linux" : type == 0x07 ? " NTFS/exFAT"
		 : type == 0x82 ? " Linux swap" : type == 0x8e ? " Linux LVM"
		 : type == 0xef ? " EFI system" : "");
	if (lba < lo || lba > hi || count > hi - lba) {
		p->bad = "it extends outside the disk (or its extended "
			 "partition)";
		return;
	}
	p->start = lba * 512;
	p->len = count * 512;
}

static int mbr_scan(part_read_fn rd, void *ud, uint64_t size,
		    const uint8_t *s, struct part_table *t, char *err,
		    size_t errlen)
{
	uint64_t nsect = size / 512;

	t->scheme = PART_MBR;
	t->sector = 512;
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *e = s + 446 + 16 * i;
		uint64_t lba = le32(e + 8), count = le32(e + 12);
		struct part p;

		if (e[4] == 0 || count == 0)
			continue;
		if (!is_extended(e[4])) {
			mbr_part(&p, i + 1, e[4], lba, count, 0, nsect);
			if (add(t, &p) < 0)
				goto nomem;
			continue;
		}
		if (lba == 0 || lba >= nsect || count > nsect - lba)
			continue; /* an extended partition outside the disk */
		/* The chain of EBRs: each names one logical partition
		 * (relative to itself) and the next EBR (relative to the
		 * extended partition), which must lie further on. */
		uint64_t ext = lba, end = lba + count, ebr = lba;
		unsigned num = 5;

		for (int k = 0; k < EBR_MAX; k++) {
			uint8_t b[512];
			const uint8_t *l = b + 446, *n = b + 462;
			uint64_t next;

			if (rd(ud, b, sizeof(b), ebr * 512) < 0 ||
			    b[510] != 0x55 || b[511] != 0xaa)
				break;
			if (l[4] != 0 && le32(l + 12) != 0) {
				mbr_part(&p, num++, l[4], ebr + le32(l + 8),
					 le32(l + 12), ext, end);
				if (add(t, &p) < 0)
					goto nomem;
			}
			if (!is_extended(n[4]) || le32(n + 8) == 0)
				break;
			next = ext + le32(n + 8);
			if (next <= ebr || next >= end)
				break;
			ebr = next;
		}
	}
	return 0;
nomem:
	snprintf(err, errlen, "MBR: out of memory");
	return -1;
}

/* ---- the disk ------------------------------------------------------------- */

int part_scan(part_read_fn rd, void *ud, uint64_t size, struct part_table *t,
	      char *err, size_t errlen)
{
	uint8_t s[512];
	int prot = 0, entries = 0, rc = -1, have_mbr;

	memset(t, 0, sizeof(*t));
	if (size < 512) {
		rc = 0;
		goto cleanup;
	}
	if (rd(ud, s, sizeof(s), 0) < 0) {
		snprintf(err, errlen, "cannot read the first sector");
		goto cleanup;
	}
	if (memcmp(s + 3, "NTFS    ", 8) == 0) {
		rc = 0; /* a whole-disk NTFS: its boot sector looks an MBR */
		goto cleanup;
	}
	have_mbr = mbr_valid(s, &prot, &entries);
	if (prot || !have_mbr || entries == 0) {
		/* A GPT (protective MBR or none), in 512 or 4096-byte
		 * sectors; without a protective MBR, only if a header is
		 * found. */
		uint8_t sig[8];
		unsigned ss = 0;

		if (size >= 1024 && rd(ud, sig, 8, 512) == 0 &&
		    memcmp(sig, "EFI PART", 8) == 0)
			ss = 512;
		else if (size >= 8192 && rd(ud, sig, 8, 4096) == 0 &&
			 memcmp(sig, "EFI PART", 8) == 0)
			ss = 4096;
		if (ss || prot) {
			rc = gpt_scan(rd, ud, size, ss ? ss : 512, t, err,
				      errlen);
			goto probe;
		}
		rc = 0; /* no table: a whole-disk file system, or nothing */
		goto cleanup;
	}
	rc = mbr_scan(rd, ud, size, s, t, err, errlen);
probe:
	for (unsigned i = 0; rc == 0 && i < t->n; i++)
		if (!t->p[i].bad)
			t->p[i].fs = probe_fs(rd, ud, t->p[i].start,
					      t->p[i].len);
cleanup:
	return rc;
}
