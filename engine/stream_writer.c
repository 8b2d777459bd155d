/*
 * stream_writer.c: writes bvault change streams (STREAM.md).
 *
 * Contract beyond bvault.h:
 *   - Every call is checked as the reader checks the record it makes
 *     (stream.c check_extent): a refused call (BV_EINVAL, BV_EALIGN,
 *     BV_ERANGE) writes nothing and the writer stays usable, so the stream
 *     a writer makes is always one the reader accepts.
 *   - A failed write() (-errno) is sticky: every later call returns it and
 *     finish() writes no trailer, so the partial stream is refused by
 *     readers as truncated.
 *   - A data extent of length 0 writes nothing (the format has no empty
 *     records); one longer than the record limit becomes several records.
 *   - bv_stream_writer_open() sets *OUT to NULL on failure: its errors are
 *     about the header the caller passed (BV_EINVAL, BV_EALIGN) or -ENOMEM.
 *   - The writer does not fsync: the caller owns FD.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "bvault.h"
#include "endian.h"

/* The same constants as stream.c (STREAM.md). */
#ifndef BV_STREAM_RECORD_MAX
#define BV_STREAM_RECORD_MAX (UINT64_C(1) << 30)
#endif
#define BV_STREAM_VERSION_PLAIN 1 /* a header without identities */
#define BV_STREAM_VERSION_IDS 2   /* with base and result identities */
#define BV_STREAM_HDR_IDS 32
#define BV_STREAM_WBUF ((size_t)1 << 20)

static const uint8_t bv_stream_magic[8] = { 'B', 'V', 'S', 'T',
					    'R', 'M', 0x00, 0x01 };

struct bv_stream_writer {
	int fd;
	int err;         /* sticky write() failure; 0 while healthy */
	uint8_t *buf;    /* BV_STREAM_WBUF bytes; buf[0..used) not written */
	size_t used;
	XXH3_state_t *xxh;
	uint64_t pos;        /* stream bytes emitted (buffered or written) */
	uint64_t disk_size;  /* in force at the end of the stream so far */
	uint64_t records;
	uint64_t data_bytes;
	char msg[256];
};

__attribute__((format(printf, 3, 4)))
static int fail(struct bv_stream_writer *w, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
	return err;
}

static int write_all(struct bv_stream_writer *w, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t put = write(w->fd, p, n);

		if (put < 0) {
			if (errno == EINTR)
				continue;
			w->err = -errno;
			return fail(w, w->err,
				    "stream byte %llu: write failed: %s",
				    (unsigned long long)(w->pos - w->used),
				    strerror(errno));
		}
		p += put;
		n -= (size_t)put;
	}
	return 0;
}

static int flush(struct bv_stream_writer *w)
{
	int ret = write_all(w, w->buf, w->used);

	if (ret == 0)
		w->used = 0;
	return ret;
}

/* Appends N stream bytes: hashed unless it is the checksum field itself.
 * Large payloads go straight to write() after the buffer is flushed. */
static int emit(struct bv_stream_writer *w, const void *p, size_t n,
		int hash)
{
	int ret = 0;

	if (hash)
		XXH3_64bits_update(w->xxh, p, n);
	if (n <= BV_STREAM_WBUF - w->used) {
		memcpy(w->buf + w->used, p, n);
		w->used += n;
		w->pos += n;
		goto out;
	}
	ret = flush(w);
	if (ret)
		goto out;
	if (n >= BV_STREAM_WBUF) {
		ret = write_all(w, p, n);
		if (ret)
			goto out;
	} else {
		memcpy(w->buf, p, n);
		w->used = n;
	}
	w->pos += n;
out:
	return ret;
}

static int id_none(const uint8_t *id)
{
	for (size_t i = 0; i < BV_ID_SIZE; i++)
		if (id[i])
			return 0;
	return 1;
}

static int name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > BV_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return 0;
	}
	return 1;
}

/* The reader's check_extent, for a call about to become records. */
static int check_extent(struct bv_stream_writer *w, const char *kind,
			uint64_t off, uint64_t len)
{
	uint64_t end;

	if (off % BV_SECTOR || len % BV_SECTOR)
		return fail(w, BV_EALIGN,
			    "%s %llu+%llu is not aligned to %u bytes", kind,
			    (unsigned long long)off, (unsigned long long)len,
			    BV_SECTOR);
	if (__builtin_add_overflow(off, len, &end))
		return fail(w, BV_ERANGE, "%s %llu+%llu overflows 64 bits",
			    kind, (unsigned long long)off,
			    (unsigned long long)len);
	if (end > w->disk_size)
		return fail(w, BV_ERANGE,
			    "%s %llu+%llu ends past the disk size %llu", kind,
			    (unsigned long long)off, (unsigned long long)len,
			    (unsigned long long)w->disk_size);
	return 0;
}

static int emit_extent(struct bv_stream_writer *w, uint8_t type,
		       uint64_t off, uint64_t len)
{
	uint8_t rec[17];

	rec[0] = type;
	bv_le64(rec + 1, off);
	bv_le64(rec + 9, len);
	w->records++;
	return emit(w, rec, sizeof(rec), 1);
}

int bv_stream_writer_open(int fd, const bv_stream_header *h,
			  bv_stream_writer **out)
{
	struct bv_stream_writer *w = NULL;
	uint8_t hdr[13 + BV_NAME_MAX + 25 + BV_STREAM_HDR_IDS], *p;
	size_t n, len;
	int ret, ids;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w) {
		ret = -ENOMEM;
		goto fail;
	}
	w->fd = fd;
	if (!h || !h->replica || !name_ok(h->replica) ||
	    (h->consistency != BV_CRASH_CONSISTENT &&
	     h->consistency != BV_APP_CONSISTENT) || fd < 0) {
		ret = BV_EINVAL;
		goto fail;
	}
	if (h->disk_size % BV_SECTOR) {
		ret = BV_EALIGN;
		goto fail;
	}
	w->buf = malloc(BV_STREAM_WBUF);
	w->xxh = XXH3_createState();
	if (!w->buf || !w->xxh) {
		ret = -ENOMEM;
		goto fail;
	}
	XXH3_64bits_reset(w->xxh);
	n = strlen(h->replica);
	/* Version 1 when there is no identity to carry: what older readers
	 * read, byte for byte what this writer wrote before version 2. */
	ids = !id_none(h->base_id) || !id_none(h->result_id);
	memcpy(hdr, bv_stream_magic, 8);
	hdr[8] = ids ? BV_STREAM_VERSION_IDS : BV_STREAM_VERSION_PLAIN;
	hdr[9] = 0;
	hdr[10] = hdr[11] = 0; /* flags: none in versions 1 and 2 */
	hdr[12] = (uint8_t)n;
	memcpy(hdr + 13, h->replica, n);
	p = hdr + 13 + n;
	bv_le64(p, h->disk_size);
	bv_le64(p + 8, h->base_rp);
	p[16] = (uint8_t)h->consistency;
	bv_le64(p + 17, (uint64_t)h->time);
	len = 13 + n + 25;
	if (ids) {
		memcpy(p + 25, h->base_id, BV_ID_SIZE);
		memcpy(p + 25 + BV_ID_SIZE, h->result_id, BV_ID_SIZE);
		len += BV_STREAM_HDR_IDS;
	}
	w->disk_size = h->disk_size;
	ret = emit(w, hdr, len, 1); /* fits the buffer: no I/O */
	if (ret)
		goto fail;
	*out = w;
	return 0;
fail:
	bv_stream_writer_abort(w);
	return ret;
}

int bv_stream_write_data(bv_stream_writer *w, uint64_t off, const void *buf,
			 size_t len)
{
	const uint8_t *p = buf;
	int ret;

	if (w->err)
		return w->err;
	ret = check_extent(w, "data extent", off, len);
	if (ret)
		goto out;
	if (len && !buf) {
		ret = fail(w, BV_EINVAL, "data extent %llu+%zu has no buffer",
			   (unsigned long long)off, len);
		goto out;
	}
	while (len) {
		size_t n = len < BV_STREAM_RECORD_MAX ? len
						      : (size_t)BV_STREAM_RECORD_MAX;

		ret = emit_extent(w, 'D', off, n);
		if (ret)
			goto out;
		ret = emit(w, p, n, 1);
		if (ret)
			goto out;
		w->data_bytes += n;
		off += n;
		p += n;
		len -= n;
	}
out:
	return ret;
}

int bv_stream_write_zero(bv_stream_writer *w, uint64_t off, uint64_t len)
{
	int ret;

	if (w->err)
		return w->err;
	ret = check_extent(w, "zero extent", off, len);
	if (ret == 0 && len)
		ret = emit_extent(w, 'Z', off, len);
	return ret;
}

int bv_stream_write_resize(bv_stream_writer *w, uint64_t new_size)
{
	uint8_t rec[9];
	int ret;

	if (w->err)
		return w->err;
	if (new_size % BV_SECTOR) {
		ret = fail(w, BV_EALIGN,
			   "new disk size %llu is not a multiple of %u",
			   (unsigned long long)new_size, BV_SECTOR);
		goto out;
	}
	rec[0] = 'S';
	bv_le64(rec + 1, new_size);
	w->records++;
	w->disk_size = new_size;
	ret = emit(w, rec, sizeof(rec), 1);
out:
	return ret;
}

int bv_stream_writer_finish(bv_stream_writer *w)
{
	uint8_t rec[25];
	int ret;

	ret = w->err;
	if (ret)
		goto out;
	rec[0] = 'E';
	bv_le64(rec + 1, w->records);
	bv_le64(rec + 9, w->data_bytes);
	ret = emit(w, rec, 17, 1);
	if (ret)
		goto out;
	bv_le64(rec + 17, XXH3_64bits_digest(w->xxh));
	ret = emit(w, rec + 17, 8, 0);
	if (ret)
		goto out;
	ret = flush(w);
out:
	bv_stream_writer_abort(w);
	return ret;
}

void bv_stream_writer_abort(bv_stream_writer *w)
{
	if (!w)
		return;
	XXH3_freeState(w->xxh);
	free(w->buf);
	free(w);
}

const char *bv_stream_writer_error(const bv_stream_writer *w)
{
	if (!w)
		return "no stream writer";
	return w->msg[0] ? w->msg : "no error";
}
