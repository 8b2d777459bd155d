/*
 * stream.h: change stream reader (bvault streams, engine/STREAM.md, and
 * Ceph "rbd diff v1" streams, engine/STREAM.md, last section).
 * The writer is public (bv_stream_writer_* in bvault.h).
 *
 * The reader is a pull parser over a file descriptor: it never trusts the
 * bytes it reads. Every record is checked before it is returned: type,
 * 512-byte alignment of offsets and lengths, offset + length without
 * overflow and within the disk size in force at that point of the stream
 * (a resize record changes it). A bvault stream's END is returned only
 * after the trailer's counts and the checksum of the whole stream matched;
 * the consumer must treat everything before END as provisional.
 */
#ifndef BV_ENGINE_STREAM_H
#define BV_ENGINE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "bvault.h"

/* Largest piece of data one BV_REC_DATA record carries from next(): long
 * extents are split into pieces of at most this size, each a multiple of
 * 512 bytes. */
#define BV_STREAM_PIECE (4u << 20)

enum bv_rec_type {
	BV_REC_DATA = 1,   /* off, len, data */
	BV_REC_ZERO = 2,   /* off, len */
	BV_REC_RESIZE = 3, /* len: the new disk size */
	BV_REC_END = 4,    /* trailer verified; nothing follows */
};

struct bv_stream_rec {
	enum bv_rec_type type;
	uint64_t off;
	uint64_t len;
	const void *data; /* valid until the next call on the reader */
};

struct bv_stream_info {
	int format;                   /* BV_FORMAT_* */
	char replica[BV_NAME_MAX + 1]; /* "" for rbd-diff */
	uint64_t disk_size;           /* at the start of the stream; rbd-diff:
					 the 's' record (its end size) */
	uint64_t base_rp;             /* bvault: header; rbd-diff: 0 */
	unsigned version;             /* bvault: header version (1 or 2) */
	uint8_t base_id[BV_ID_SIZE];  /* bvault v2: identities of the base */
	uint8_t result_id[BV_ID_SIZE]; /* and of the result; zero: none */
	int consistency;
	int64_t time;                 /* rbd-diff: 0 */
	int has_from_snap;            /* rbd-diff: an 'f' record was present */
	char from_snap[256];          /* rbd-diff 'f' name, "" if none */
	char to_snap[256];            /* rbd-diff 't' name, "" if none */
};

struct bv_stream_reader;

/* Reads and checks the header (for rbd-diff: the banner and every metadata
 * record up to the first data record). Returns 0 with *OUT set, or an
 * error with *OUT set as well (so the message can be read; close it) unless
 * the error is -ENOMEM. Errors: BV_ESTREAM (bad magic, version 0, bad
 * header field), BV_EFORMAT (a newer stream version, unknown flags, or an
 * rbd diff v2), BV_EALIGN (disk size not a multiple of 512), BV_EINVAL
 * (unknown FORMAT), BV_ETRUNCATED, -errno from read(). FD must be blocking
 * and hold exactly one stream up to end of file. */
int bv_stream_reader_open(int fd, int format, struct bv_stream_reader **out);
const struct bv_stream_info *bv_stream_reader_info(
	const struct bv_stream_reader *rd);
/* Next record. Errors: BV_ESTREAM, BV_ETRUNCATED, BV_ECHECKSUM (trailer
 * checksum or record/byte counts), BV_ERANGE, BV_EALIGN, -errno. After an error the
 * reader stays failed. */
int bv_stream_next(struct bv_stream_reader *rd, struct bv_stream_rec *rec);
/* Message naming what was wrong and where ("stream byte 4096: zero extent
 * 1048576+512 ends past the disk size 1048576"). */
const char *bv_stream_reader_error(const struct bv_stream_reader *rd);
/* Bytes consumed so far (for progress). */
uint64_t bv_stream_reader_pos(const struct bv_stream_reader *rd);
void bv_stream_reader_close(struct bv_stream_reader *rd);

#endif
