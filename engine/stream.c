/*
 * stream.c: the change stream reader, for bvault streams (STREAM.md) and
 * Ceph rbd diff v1 streams (STREAM.md, last section).
 *
 * A pull parser over a file descriptor. Bytes arrive in one buffer
 * allocated at open (read() in blocks as large as the free space, so a
 * pipe, a socket or stdin works as well as a file); fill() makes the next
 * N bytes contiguous and consume() moves past them, feeding the checksum.
 * Nothing is allocated per record: data pieces point into the buffer.
 *
 * Every field from the stream is checked before it is used, in this order:
 * alignment (BV_EALIGN), emptiness and the record limit (BV_ESTREAM),
 * overflow and range against the disk size in force (BV_ERANGE). Errors
 * are sticky and carry "stream byte N: what", N being the offset of the
 * record or field at fault.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "endian.h"
#include "stream.h"

/* Format constants; stream_writer.c keeps the same ones (STREAM.md). The
 * record limit can be lowered at build time so that a test can exercise
 * record splitting without gigabytes of data. */
#ifndef BV_STREAM_RECORD_MAX
#define BV_STREAM_RECORD_MAX (UINT64_C(1) << 30)
#endif
#define BV_STREAM_VERSION 2
#define BV_STREAM_HDR_FIXED 13  /* magic, version, flags, name length */
#define BV_STREAM_HDR_TAIL 25   /* disk size, base RP, consistency, time */
#define BV_STREAM_HDR_IDS 32    /* v2: base identity, result identity */
#define BV_STREAM_EXTENT_LEN 17 /* type, off, len */
#define BV_STREAM_RESIZE_LEN 9  /* type, size */
#define BV_STREAM_TRAILER_LEN 25 /* type, records, data bytes, checksum */

static const uint8_t bv_stream_magic[8] = { 'B', 'V', 'S', 'T',
					    'R', 'M', 0x00, 0x01 };
static const char rbd_banner[] = "rbd diff v1\n";
static const char rbd_banner_v2[] = "rbd diff v2\n";
#define RBD_BANNER_LEN 12
#define RBD_NAME_MAX 4096 /* what rbd import-diff accepts */

/* The buffer holds one whole piece plus room to read ahead, so that
 * making a piece contiguous rarely has to move bytes. */
#define BV_STREAM_BUF (2 * (size_t)BV_STREAM_PIECE)

enum { REC_D = 'D', REC_Z = 'Z', REC_S = 'S', REC_E = 'E' };

struct bv_stream_reader {
	int fd;
	int format;
	int err;         /* sticky: 0 while healthy */
	int ended;       /* END was returned */
	int eof;         /* read() returned 0 */
	int hashing;     /* bvault: bytes consumed feed the checksum */
	int rbd_data;    /* rbd: a data record was seen; metadata is over */
	uint8_t *buf;
	size_t head, tail; /* unread bytes are buf[head..tail) */
	uint64_t pos;      /* stream offset of buf[head] */
	XXH3_state_t *xxh;
	uint64_t disk_size;  /* in force at this point of the stream */
	uint64_t records;    /* bvault records read, for the trailer */
	uint64_t data_bytes; /* bvault data bytes read, for the trailer */
	uint64_t rbd_next;   /* rbd: the next extent may not start below */
	uint64_t data_off;   /* data record in progress: next piece's offset */
	uint64_t data_left;  /* and bytes still to hand out */
	struct bv_stream_info info;
	char msg[320];
};

__attribute__((format(printf, 4, 5)))
static int fail(struct bv_stream_reader *rd, int err, uint64_t at,
		const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(rd->msg, sizeof(rd->msg), "stream byte %llu: ",
			 (unsigned long long)at);

	if (n < 0 || (size_t)n >= sizeof(rd->msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(rd->msg + n, sizeof(rd->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	rd->err = err;
	return err;
}

/* Makes the next N (<= BV_STREAM_BUF) bytes contiguous at buf + head.
 * Returns 0, BV_ETRUNCATED at end of file (no message: the caller knows
 * what was expected), or -errno (with a message). */
static int fill(struct bv_stream_reader *rd, size_t n)
{
	int ret = 0;

	if (rd->head == rd->tail)
		rd->head = rd->tail = 0;
	while (rd->tail - rd->head < n) {
		ssize_t got;

		if (rd->eof) {
			ret = BV_ETRUNCATED;
			goto out;
		}
		if (BV_STREAM_BUF - rd->head < n) {
			memmove(rd->buf, rd->buf + rd->head,
				rd->tail - rd->head);
			rd->tail -= rd->head;
			rd->head = 0;
		}
		got = read(rd->fd, rd->buf + rd->tail,
			   BV_STREAM_BUF - rd->tail);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			ret = fail(rd, -errno, rd->pos + (rd->tail - rd->head),
				   "read failed: %s", strerror(errno));
			goto out;
		}
		if (got == 0)
			rd->eof = 1;
		rd->tail += (size_t)got;
	}
out:
	return ret;
}

static size_t avail(const struct bv_stream_reader *rd)
{
	return rd->tail - rd->head;
}

static const uint8_t *peek(const struct bv_stream_reader *rd)
{
	return rd->buf + rd->head;
}

static void consume(struct bv_stream_reader *rd, size_t n)
{
	if (rd->hashing)
		XXH3_64bits_update(rd->xxh, rd->buf + rd->head, n);
	rd->head += n;
	rd->pos += n;
}

/* End of file where WHAT (N bytes) was expected. */
static int truncated(struct bv_stream_reader *rd, const char *what,
		     size_t n)
{
	return fail(rd, BV_ETRUNCATED, rd->pos + avail(rd),
		    "stream ends inside %s (%zu of %zu bytes present)", what,
		    avail(rd), n);
}

/* fill() for a record or field named WHAT. */
static int need(struct bv_stream_reader *rd, size_t n, const char *what)
{
	int ret = fill(rd, n);

	if (ret == BV_ETRUNCATED)
		ret = truncated(rd, what, n);
	return ret;
}

/* After the last record: end of file must follow. */
static int expect_eof(struct bv_stream_reader *rd, const char *after)
{
	int ret = fill(rd, 1);

	if (ret == BV_ETRUNCATED)
		return 0;
	if (ret == 0)
		ret = fail(rd, BV_ESTREAM, rd->pos,
			   "%zu or more bytes of garbage after %s", avail(rd),
			   after);
	return ret;
}

static int name_ok(const uint8_t *p, size_t n)
{
	if (n < 1 || n > BV_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return 0;
	}
	return 1;
}

/* Checks an extent of KIND ("data extent", "zero extent") found at stream
 * byte AT against every rule of STREAM.md. */
static int check_extent(struct bv_stream_reader *rd, uint64_t at,
			const char *kind, uint64_t off, uint64_t len, int data)
{
	uint64_t end;

	if (off % BV_SECTOR || len % BV_SECTOR)
		return fail(rd, BV_EALIGN, at,
			    "%s %llu+%llu is not aligned to %u bytes", kind,
			    (unsigned long long)off, (unsigned long long)len,
			    BV_SECTOR);
	if (len == 0)
		return fail(rd, BV_ESTREAM, at, "%s at %llu is empty", kind,
			    (unsigned long long)off);
	if (data && len > BV_STREAM_RECORD_MAX)
		return fail(rd, BV_ESTREAM, at,
			    "%s %llu+%llu is longer than the record limit %llu",
			    kind, (unsigned long long)off,
			    (unsigned long long)len,
			    (unsigned long long)BV_STREAM_RECORD_MAX);
	if (__builtin_add_overflow(off, len, &end))
		return fail(rd, BV_ERANGE, at,
			    "%s %llu+%llu overflows 64 bits", kind,
			    (unsigned long long)off, (unsigned long long)len);
	if (end > rd->disk_size)
		return fail(rd, BV_ERANGE, at,
			    "%s %llu+%llu ends past the disk size %llu", kind,
			    (unsigned long long)off, (unsigned long long)len,
			    (unsigned long long)rd->disk_size);
	if (rd->format == BV_FORMAT_RBD_DIFF) {
		if (off < rd->rbd_next)
			return fail(rd, BV_ESTREAM, at,
				    "%s %llu+%llu starts below the end %llu of "
				    "the previous extent (rbd writes them in "
				    "ascending order)",
				    kind, (unsigned long long)off,
				    (unsigned long long)len,
				    (unsigned long long)rd->rbd_next);
		rd->rbd_next = end;
	}
	return 0;
}

/* Reads what prefix of MAGIC (LEN bytes) is present: BV_ETRUNCATED only
 * when the short stream is a true prefix of it, else a bad-magic error. */
static int read_magic(struct bv_stream_reader *rd, const void *magic,
		      size_t len, const char *what)
{
	int ret = fill(rd, len);

	if (ret == BV_ETRUNCATED) {
		if (memcmp(peek(rd), magic, avail(rd)) == 0)
			ret = truncated(rd, what, len);
		else
			ret = 0; /* short and wrong: the check below says so */
	}
	if (ret)
		return ret;
	if (avail(rd) >= len && memcmp(peek(rd), magic, len) == 0)
		return 0;
	return BV_ESTREAM;
}

static int open_bvault(struct bv_stream_reader *rd)
{
	struct bv_stream_info *info = &rd->info;
	const uint8_t *p;
	unsigned version, flags, n, cons;
	size_t len;
	uint64_t disk;
	int ret;

	ret = read_magic(rd, bv_stream_magic, sizeof(bv_stream_magic),
			 "the magic");
	if (ret == BV_ESTREAM) {
		if (avail(rd) >= 8 && memcmp(peek(rd), "rbd diff", 8) == 0)
			ret = fail(rd, BV_ESTREAM, 0,
				   "bad magic: this is an rbd diff stream, "
				   "not a bvault change stream");
		else
			ret = fail(rd, BV_ESTREAM, 0,
				   "bad magic: not a bvault change stream");
	}
	if (ret)
		goto out;
	ret = need(rd, BV_STREAM_HDR_FIXED, "the header");
	if (ret)
		goto out;
	p = peek(rd);
	version = (unsigned)p[8] | (unsigned)p[9] << 8;
	flags = (unsigned)p[10] | (unsigned)p[11] << 8;
	n = p[12];
	if (version == 0) {
		ret = fail(rd, BV_ESTREAM, 8, "format version 0 is not valid");
		goto out;
	}
	if (version > BV_STREAM_VERSION) {
		ret = fail(rd, BV_EFORMAT, 8,
			   "format version %u is newer than this reader "
			   "(version %u)", version, BV_STREAM_VERSION);
		goto out;
	}
	if (flags) {
		ret = fail(rd, BV_EFORMAT, 10,
			   "flags 0x%04x name features this reader does not "
			   "know", flags);
		goto out;
	}
	len = BV_STREAM_HDR_FIXED + n + BV_STREAM_HDR_TAIL;
	if (version >= 2)
		len += BV_STREAM_HDR_IDS;
	ret = need(rd, len, "the header");
	if (ret)
		goto out;
	p = peek(rd);
	if (!name_ok(p + 13, n)) {
		ret = fail(rd, BV_ESTREAM, 12,
			   "replica name of %u bytes is not 1..%d bytes of "
			   "[A-Za-z0-9._-]", n, BV_NAME_MAX);
		goto out;
	}
	memcpy(info->replica, p + 13, n);
	info->replica[n] = '\0';
	p += BV_STREAM_HDR_FIXED + n;
	disk = bv_get_le64(p);
	if (disk % BV_SECTOR) {
		ret = fail(rd, BV_EALIGN, 13 + n,
			   "disk size %llu is not a multiple of %u",
			   (unsigned long long)disk, BV_SECTOR);
		goto out;
	}
	cons = p[16];
	if (cons != BV_CRASH_CONSISTENT && cons != BV_APP_CONSISTENT) {
		ret = fail(rd, BV_ESTREAM, 29 + n,
			   "consistency %u is neither 0 (crash) nor 1 (app)",
			   cons);
		goto out;
	}
	info->disk_size = disk;
	info->base_rp = bv_get_le64(p + 8);
	info->consistency = (int)cons;
	info->time = (int64_t)bv_get_le64(p + 17);
	info->version = version;
	if (version >= 2) {
		memcpy(info->base_id, p + BV_STREAM_HDR_TAIL, BV_ID_SIZE);
		memcpy(info->result_id, p + BV_STREAM_HDR_TAIL + BV_ID_SIZE,
		       BV_ID_SIZE);
	}
	rd->disk_size = disk;
	consume(rd, len);
out:
	return ret;
}

/* rbd 'f' or 't': le32 length, then the name (information only; kept cut
 * to the size of DST). */
static int rbd_name(struct bv_stream_reader *rd, char *dst, size_t cap,
		    const char *what)
{
	uint64_t at = rd->pos;
	uint32_t n;
	size_t keep;
	int ret;

	ret = need(rd, 5, what);
	if (ret)
		goto out;
	n = bv_get_le32(peek(rd) + 1);
	if (n > RBD_NAME_MAX) {
		ret = fail(rd, BV_ESTREAM, at,
			   "%s of %u bytes is longer than %d", what, n,
			   RBD_NAME_MAX);
		goto out;
	}
	ret = need(rd, 5 + (size_t)n, what);
	if (ret)
		goto out;
	keep = n < cap - 1 ? n : cap - 1;
	memcpy(dst, peek(rd) + 5, keep);
	dst[keep] = '\0';
	consume(rd, 5 + (size_t)n);
out:
	return ret;
}

/* Banner, then metadata up to the first data or end record, which stays
 * unread for bv_stream_next(). */
static int open_rbd(struct bv_stream_reader *rd)
{
	struct bv_stream_info *info = &rd->info;
	int have_t = 0, have_s = 0, ret;

	ret = read_magic(rd, rbd_banner, RBD_BANNER_LEN, "the rbd banner");
	if (ret == BV_ESTREAM) {
		if (avail(rd) >= RBD_BANNER_LEN &&
		    memcmp(peek(rd), rbd_banner_v2, RBD_BANNER_LEN) == 0)
			ret = fail(rd, BV_EFORMAT, 0,
				   "rbd diff v2 is not supported, only v1 "
				   "(what rbd export-diff writes)");
		else if (avail(rd) >= 8 &&
			 memcmp(peek(rd), bv_stream_magic, 8) == 0)
			ret = fail(rd, BV_ESTREAM, 0,
				   "bad banner: this is a bvault change "
				   "stream, not an rbd diff");
		else
			ret = fail(rd, BV_ESTREAM, 0,
				   "bad banner: not an rbd diff v1 stream");
	}
	if (ret)
		goto out;
	consume(rd, RBD_BANNER_LEN);
	for (;;) {
		uint64_t at = rd->pos;
		uint8_t tag;

		ret = fill(rd, 1);
		if (ret == BV_ETRUNCATED)
			ret = fail(rd, BV_ETRUNCATED, at,
				   "stream ends in the metadata, without the "
				   "end record 'e'");
		if (ret)
			goto out;
		tag = peek(rd)[0];
		if (tag == 'f' || tag == 't') {
			int *have = tag == 'f' ? &info->has_from_snap : &have_t;

			if (*have) {
				ret = fail(rd, BV_ESTREAM, at,
					   "second '%c' record", tag);
				goto out;
			}
			ret = rbd_name(rd,
				       tag == 'f' ? info->from_snap
						  : info->to_snap,
				       sizeof(info->from_snap),
				       tag == 'f' ? "from-snapshot name 'f'"
						  : "to-snapshot name 't'");
			if (ret)
				goto out;
			*have = 1;
		} else if (tag == 's') {
			uint64_t size;

			if (have_s) {
				ret = fail(rd, BV_ESTREAM, at,
					   "second 's' record");
				goto out;
			}
			ret = need(rd, 9, "the image size 's'");
			if (ret)
				goto out;
			size = bv_get_le64(peek(rd) + 1);
			if (size % BV_SECTOR) {
				ret = fail(rd, BV_EALIGN, at,
					   "image size %llu is not a multiple "
					   "of %u", (unsigned long long)size,
					   BV_SECTOR);
				goto out;
			}
			info->disk_size = rd->disk_size = size;
			have_s = 1;
			consume(rd, 9);
		} else if (tag == 'w' || tag == 'z' || tag == 'e') {
			if (!have_s)
				ret = fail(rd, BV_ESTREAM, at,
					   "'%c' record before the image size "
					   "record 's'", tag);
			goto out;
		} else {
			ret = fail(rd, BV_ESTREAM, at,
				   "unknown rbd diff v1 tag 0x%02x", tag);
			goto out;
		}
	}
out:
	return ret;
}

int bv_stream_reader_open(int fd, int format, struct bv_stream_reader **out)
{
	struct bv_stream_reader *rd;
	int ret;

	*out = NULL;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->fd = fd;
	rd->format = format;
	rd->buf = malloc(BV_STREAM_BUF);
	rd->xxh = XXH3_createState();
	if (!rd->buf || !rd->xxh) {
		bv_stream_reader_close(rd);
		return -ENOMEM;
	}
	*out = rd;
	rd->info.format = format;
	if (format == BV_FORMAT_BVAULT) {
		XXH3_64bits_reset(rd->xxh);
		rd->hashing = 1;
		ret = open_bvault(rd);
	} else if (format == BV_FORMAT_RBD_DIFF) {
		ret = open_rbd(rd);
	} else {
		ret = fail(rd, BV_EINVAL, 0, "unknown stream format %d",
			   format);
	}
	return ret;
}

const struct bv_stream_info *bv_stream_reader_info(
	const struct bv_stream_reader *rd)
{
	return &rd->info;
}

/* The next piece of the data record in progress. */
static int next_piece(struct bv_stream_reader *rd, struct bv_stream_rec *rec)
{
	size_t n = rd->data_left < BV_STREAM_PIECE ? (size_t)rd->data_left
						    : BV_STREAM_PIECE;
	int ret = fill(rd, n);

	if (ret == BV_ETRUNCATED)
		ret = fail(rd, BV_ETRUNCATED, rd->pos + avail(rd),
			   "stream ends inside the data at %llu, %llu bytes "
			   "short",
			   (unsigned long long)(rd->data_off + avail(rd)),
			   (unsigned long long)(rd->data_left - avail(rd)));
	if (ret)
		return ret;
	rec->type = BV_REC_DATA;
	rec->off = rd->data_off;
	rec->len = n;
	rec->data = peek(rd);
	consume(rd, n);
	rd->data_off += n;
	rd->data_left -= n;
	return 0;
}

/* Type, off and len of an extent record at AT; checked. */
static int read_extent(struct bv_stream_reader *rd, uint64_t at, int data,
		       struct bv_stream_rec *rec)
{
	int rbd = rd->format == BV_FORMAT_RBD_DIFF;
	const char *kind = data ? (rbd ? "'w' extent" : "data extent")
				: (rbd ? "'z' extent" : "zero extent");
	uint64_t off, len;
	int ret;

	ret = need(rd, BV_STREAM_EXTENT_LEN,
		   data ? "a data extent record" : "a zero extent record");
	if (ret)
		return ret;
	off = bv_get_le64(peek(rd) + 1);
	len = bv_get_le64(peek(rd) + 9);
	ret = check_extent(rd, at, kind, off, len, data);
	if (ret)
		return ret;
	consume(rd, BV_STREAM_EXTENT_LEN);
	rd->records++;
	if (data) {
		/* Cannot overflow in practice (2^34 records of 1 GiB), but
		 * the count comes from the stream's length: check it. */
		if (__builtin_add_overflow(rd->data_bytes, len,
					   &rd->data_bytes))
			return fail(rd, BV_ESTREAM, at,
				    "data byte count overflows");
		rd->data_off = off;
		rd->data_left = len;
		return next_piece(rd, rec);
	}
	rec->type = BV_REC_ZERO;
	rec->off = off;
	rec->len = len;
	rec->data = NULL;
	return 0;
}

static int read_trailer(struct bv_stream_reader *rd, uint64_t at,
			struct bv_stream_rec *rec)
{
	uint64_t records, bytes, sum, want;
	int ret;

	ret = need(rd, BV_STREAM_TRAILER_LEN, "the trailer");
	if (ret)
		return ret;
	records = bv_get_le64(peek(rd) + 1);
	bytes = bv_get_le64(peek(rd) + 9);
	sum = bv_get_le64(peek(rd) + 17);
	consume(rd, 17);
	rd->hashing = 0;
	want = XXH3_64bits_digest(rd->xxh);
	consume(rd, 8);
	if (records != rd->records || bytes != rd->data_bytes)
		return fail(rd, BV_ECHECKSUM, at,
			    "trailer counts %llu records and %llu data bytes "
			    "but the stream holds %llu and %llu",
			    (unsigned long long)records,
			    (unsigned long long)bytes,
			    (unsigned long long)rd->records,
			    (unsigned long long)rd->data_bytes);
	if (sum != want)
		return fail(rd, BV_ECHECKSUM, at + 17,
			    "stream checksum %016llx does not match the "
			    "trailer's %016llx", (unsigned long long)want,
			    (unsigned long long)sum);
	ret = expect_eof(rd, "the trailer");
	if (ret)
		return ret;
	rec->type = BV_REC_END;
	rec->off = rec->len = 0;
	rec->data = NULL;
	return 0;
}

static int next_bvault(struct bv_stream_reader *rd, uint8_t type,
		       uint64_t at, struct bv_stream_rec *rec)
{
	uint64_t size;
	int ret;

	switch (type) {
	case REC_D:
		return read_extent(rd, at, 1, rec);
	case REC_Z:
		return read_extent(rd, at, 0, rec);
	case REC_S:
		ret = need(rd, BV_STREAM_RESIZE_LEN, "a size change record");
		if (ret)
			return ret;
		size = bv_get_le64(peek(rd) + 1);
		if (size % BV_SECTOR)
			return fail(rd, BV_EALIGN, at,
				    "new disk size %llu is not a multiple of "
				    "%u", (unsigned long long)size, BV_SECTOR);
		consume(rd, BV_STREAM_RESIZE_LEN);
		rd->records++;
		rd->disk_size = size;
		rec->type = BV_REC_RESIZE;
		rec->off = 0;
		rec->len = size;
		rec->data = NULL;
		return 0;
	case REC_E:
		return read_trailer(rd, at, rec);
	default:
		return fail(rd, BV_ESTREAM, at, "unknown record type 0x%02x",
			    type);
	}
}

static int next_rbd(struct bv_stream_reader *rd, uint8_t tag, uint64_t at,
		    struct bv_stream_rec *rec)
{
	int ret;

	switch (tag) {
	case 'w':
	case 'z':
		/* The rbd record layout is the bvault one with another tag:
		 * u8, le64 offset, le64 length. */
		return read_extent(rd, at, tag == 'w', rec);
	case 'e':
		consume(rd, 1);
		ret = expect_eof(rd, "the end record 'e'");
		if (ret)
			return ret;
		rec->type = BV_REC_END;
		rec->off = rec->len = 0;
		rec->data = NULL;
		return 0;
	case 'f':
	case 't':
	case 's':
		return fail(rd, BV_ESTREAM, at,
			    "metadata record '%c' after the data records",
			    tag);
	default:
		return fail(rd, BV_ESTREAM, at,
			    "unknown rbd diff v1 tag 0x%02x", tag);
	}
}

int bv_stream_next(struct bv_stream_reader *rd, struct bv_stream_rec *rec)
{
	uint64_t at = rd->pos;
	int ret;

	if (rd->err)
		return rd->err;
	if (rd->ended) {
		rec->type = BV_REC_END;
		rec->off = rec->len = 0;
		rec->data = NULL;
		return 0;
	}
	if (rd->data_left)
		return next_piece(rd, rec);
	ret = fill(rd, 1);
	if (ret == BV_ETRUNCATED) {
		if (rd->format == BV_FORMAT_RBD_DIFF)
			return fail(rd, BV_ETRUNCATED, at,
				    "stream ends without the end record 'e' "
				    "(rbd diff v1 has no checksum: this is "
				    "the only sign of a cut stream)");
		return fail(rd, BV_ETRUNCATED, at,
			    "stream ends after %llu records, without the "
			    "trailer", (unsigned long long)rd->records);
	}
	if (ret)
		return ret;
	if (rd->format == BV_FORMAT_RBD_DIFF)
		ret = next_rbd(rd, peek(rd)[0], at, rec);
	else
		ret = next_bvault(rd, peek(rd)[0], at, rec);
	if (ret == 0 && rec->type == BV_REC_END)
		rd->ended = 1;
	return ret;
}

const char *bv_stream_reader_error(const struct bv_stream_reader *rd)
{
	if (!rd)
		return "out of memory";
	return rd->err ? rd->msg : "no error";
}

uint64_t bv_stream_reader_pos(const struct bv_stream_reader *rd)
{
	return rd->pos;
}

void bv_stream_reader_close(struct bv_stream_reader *rd)
{
	if (!rd)
		return;
	XXH3_freeState(rd->xxh);
	free(rd->buf);
	free(rd);
}
