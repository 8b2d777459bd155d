/*
 * part.h: the partition table of a disk image (MBR with its extended
 * partitions, GPT with both headers' and the entries' CRC32), read
 * through a callback, every field treated as hostile: each partition is
 * checked to lie inside the disk before anything reads it.
 */
#ifndef BV_PART_H
#define BV_PART_H

#include <stddef.h>
#include <stdint.h>

enum { PART_NONE = 0, PART_MBR = 1, PART_GPT = 2 };
enum { PART_FS_NONE = 0, PART_FS_EXT = 1, PART_FS_NTFS = 2 };

#define PART_MAX 1024 /* partitions kept (GPT entries beyond are refused) */

struct part {
	unsigned num;      /* 1-based, as in /dev/sda1; logical MBR from 5 */
	uint64_t start;    /* bytes */
	uint64_t len;      /* bytes */
	char type[40];     /* "Linux filesystem", "0x83", a GUID */
	char name[112];    /* GPT name as UTF-8, or "" */
	const char *bad;   /* why it cannot be read (outside the disk), or
			    * NULL */
	int fs;            /* PART_FS_*, from the file system's magic */
};

struct part_table {
	int scheme;        /* PART_NONE: a whole-disk file system or nothing */
	unsigned sector;   /* the sector size the table was found with */
	unsigned n;
	struct part *p;    /* n entries, by number */
	char note[160];    /* a repaired detail ("primary GPT header damaged:
			    * using the backup"), or "" */
};

/* Reads LEN bytes at OFF of the disk; 0 or negative. */
typedef int (*part_read_fn)(void *ud, void *buf, size_t len, uint64_t off);

/* Reads the table of a disk of SIZE bytes. 0, or -1 with ERR (ERRLEN
 * bytes) saying what is wrong with the table (both GPT headers damaged,
 * entries outside the disk, ...) or the read that failed. Free T with
 * part_table_free, whatever the result. */
int part_scan(part_read_fn rd, void *ud, uint64_t size, struct part_table *t,
	      char *err, size_t errlen);
void part_table_free(struct part_table *t);

/* "ext2/3/4", "NTFS" or "no known file system". */
const char *part_fs_name(int fs);

/* CRC32 (IEEE 802.3, as GPT uses it) of LEN bytes. */
uint32_t part_crc32(const void *buf, size_t len);

#endif
