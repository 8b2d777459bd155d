/*
 * split.c: built with the record limit lowered to 64 KiB
 * (-DBV_STREAM_RECORD_MAX, see meson.build) so that splitting long data
 * extents into several records, and refusing an over-long record, can be
 * tested without gigabytes. The format's limit is 1 GiB.
 */
#include "tap.h"
#include "stream_util.h"

#define KiB 1024u

int main(void)
{
	static uint8_t data[200 * KiB];
	bv_stream_header h = { "split", 1024 * KiB, 0, 0, 0 };
	bv_stream_writer *w;
	struct bv_stream_reader *rd;
	struct bv_stream_rec rec;
	struct bytes b = { 0 };
	struct run_result r;
	uint64_t next = 4096;
	int fd, ret, pieces = 0, same = 1;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7);
	fd = memfd_create("split", 0);
	is_int(bv_stream_writer_open(fd, &h, &w), 0, "open");
	is_int(bv_stream_write_data(w, 4096, data, sizeof(data)), 0,
	       "write 200 KiB with a 64 KiB record limit");
	is_int(bv_stream_writer_finish(w), 0, "finish");

	lseek(fd, 0, SEEK_SET);
	is_int(bv_stream_reader_open(fd, BV_FORMAT_BVAULT, &rd), 0,
	       "reader open");
	while ((ret = bv_stream_next(rd, &rec)) == 0 &&
	       rec.type != BV_REC_END) {
		if (rec.type != BV_REC_DATA || rec.off != next ||
		    rec.len > 64 * KiB ||
		    memcmp(rec.data, data + (next - 4096), rec.len))
			same = 0;
		next += rec.len;
		pieces++;
	}
	is_int(ret, 0, "reads to END");
	ok(same && next == 4096 + sizeof(data), "data back in order");
	is_int(pieces, 4, "4 records (64+64+64+8 KiB)");
	bv_stream_reader_close(rd);
	close(fd);

	/* The trailer counts records as written: 4. */
	b_header(&b, 1, 0, "s", 1024 * KiB, 0, 0, 0);
	b_extent(&b, 'D', 0, 64 * KiB + 512);
	b_fill(&b, 0, 64 * KiB + 512);
	b_trailer(&b, 1, 64 * KiB + 512);
	r = run_bytes(b.p, b.len, BV_FORMAT_BVAULT);
	is_int(r.ret, BV_ESTREAM, "a record over the limit is refused");
	ok(strstr(r.msg, "record limit") != NULL, "message: %s", r.msg);
	b_free(&b);

	b_header(&b, 1, 0, "s", 1024 * KiB, 0, 0, 0);
	b_extent(&b, 'D', 0, 64 * KiB);
	b_fill(&b, 0, 64 * KiB);
	b_trailer(&b, 1, 64 * KiB);
	is_int(run_bytes(b.p, b.len, BV_FORMAT_BVAULT).ret, 0,
	       "a record at the limit is fine");
	b_free(&b);
	return done_testing();
}
