/*
 * rbd.c: Ceph rbd diff v1 streams, built from the byte layout in
 * Ceph's doc/dev/rbd-diff.rst: what the reader accepts and what it refuses
 * (STREAM.md, last section).
 */
#include "tap.h"
#include "stream_util.h"

#define MiB (UINT64_C(1) << 20)

/* banner, f, t, s, w, z, w, e */
static void good_rbd(struct bytes *b, int with_names)
{
	b_rbd_banner(b);
	if (with_names) {
		b_rbd_name(b, 'f', "snap1");
		b_rbd_name(b, 't', "snap2");
	}
	b_u8(b, 's');
	b_le(b, 8 * MiB, 8);
	b_extent(b, 'w', 0, 4096);
	for (int i = 0; i < 4096; i++)
		b_u8(b, (uint8_t)(i * 7));
	b_extent(b, 'z', 4096, MiB);
	b_extent(b, 'w', 4 * MiB, 512);
	b_fill(b, 0x5a, 512);
	b_u8(b, 'e');
}

static void expect(const struct bytes *b, int want, const char *what)
{
	struct run_result r = run_bytes(b->p, b->len, BV_FORMAT_RBD_DIFF);

	is_int(r.ret, want, "%s", what);
	ok(want == 0 || strncmp(r.msg, "stream byte ", 12) == 0,
	   "%s: message names the byte: %s", what, r.msg);
}

static void test_roundtrip(void)
{
	struct bytes b = { 0 };
	struct bv_stream_reader *rd;
	const struct bv_stream_info *info;
	struct bv_stream_rec rec;
	int fd, ret;

	good_rbd(&b, 1);
	fd = mem_fd(b.p, b.len);
	ret = bv_stream_reader_open(fd, BV_FORMAT_RBD_DIFF, &rd);
	is_int(ret, 0, "open rbd diff v1");
	info = bv_stream_reader_info(rd);
	is_int(info->format, BV_FORMAT_RBD_DIFF, "format");
	is_int(info->disk_size, 8 * MiB, "disk size is the 's' record");
	ok(info->has_from_snap && strcmp(info->from_snap, "snap1") == 0,
	   "from snap");
	ok(strcmp(info->to_snap, "snap2") == 0, "to snap");
	ok(info->replica[0] == '\0' && info->base_rp == 0 && info->time == 0,
	   "no replica, base or time");

	ret = bv_stream_next(rd, &rec);
	ok(ret == 0 && rec.type == BV_REC_DATA && rec.off == 0 &&
		   rec.len == 4096, "w 0+4096");
	if (ret == 0) {
		int same = 1;
		for (int i = 0; i < 4096; i++)
			same &= ((const uint8_t *)rec.data)[i] ==
				(uint8_t)(i * 7);
		ok(same, "w data");
	}
	ret = bv_stream_next(rd, &rec);
	ok(ret == 0 && rec.type == BV_REC_ZERO && rec.off == 4096 &&
		   rec.len == MiB, "z 4096+1M");
	ret = bv_stream_next(rd, &rec);
	ok(ret == 0 && rec.type == BV_REC_DATA && rec.off == 4 * MiB &&
		   rec.len == 512 && ((const uint8_t *)rec.data)[511] == 0x5a,
	   "w 4M+512");
	ret = bv_stream_next(rd, &rec);
	ok(ret == 0 && rec.type == BV_REC_END, "e is END");
	is_int(bv_stream_reader_pos(rd), b.len, "whole stream consumed");
	bv_stream_reader_close(rd);
	close(fd);
	b_free(&b);

	good_rbd(&b, 0);
	expect(&b, 0, "without f and t");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, 0, 8);
	b_u8(&b, 'e');
	expect(&b, 0, "empty image, no data");
	b_free(&b);

	b_rbd_banner(&b);
	b_rbd_name(&b, 't', "s");
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_rbd_name(&b, 'f', "");
	b_u8(&b, 'e');
	expect(&b, 0, "metadata in any order, empty name");
	b_free(&b);

	/* A 4096-byte name is allowed (rbd's limit) and kept cut. */
	{
		char name[4097];
		struct run_result r;

		memset(name, 'n', 4096);
		name[4096] = '\0';
		b_rbd_banner(&b);
		b_rbd_name(&b, 'f', name);
		b_u8(&b, 's');
		b_le(&b, MiB, 8);
		b_u8(&b, 'e');
		r = run_bytes(b.p, b.len, BV_FORMAT_RBD_DIFF);
		is_int(r.ret, 0, "4096-byte snapshot name");
		b_free(&b);

		name[4096] = 'n';
		b_rbd_banner(&b);
		b_u8(&b, 'f');
		b_le(&b, 4097, 4);
		b_put(&b, name, 4097);
		b_u8(&b, 's');
		b_le(&b, MiB, 8);
		b_u8(&b, 'e');
		expect(&b, BV_ESTREAM, "4097-byte snapshot name");
		b_free(&b);
	}

	/* Through a pipe in 3-byte writes. */
	good_rbd(&b, 1);
	{
		pid_t pid;
		struct run_result r = run_fd(pipe_fd(b.p, b.len, 3, &pid),
					     BV_FORMAT_RBD_DIFF);
		pipe_done(pid);
		is_int(r.ret, 0, "through a pipe, 3 bytes at a time");
		is_int(r.records, 3, "three records");
	}
	b_free(&b);
}

static void test_refused(void)
{
	struct bytes b = { 0 };

	good_rbd(&b, 1);
	b.len--;
	expect(&b, BV_ETRUNCATED, "missing 'e'");
	b_free(&b);

	good_rbd(&b, 1);
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "byte after 'e'");
	b_free(&b);

	/* Every proper prefix: truncated (v1 has no checksum; the missing 'e'
	 * is what tells). */
	good_rbd(&b, 1);
	{
		size_t bad = 0;
		for (size_t n = 0; n < b.len; n++) {
			struct run_result r =
				run_bytes(b.p, n, BV_FORMAT_RBD_DIFF);
			if (r.ret != BV_ETRUNCATED && bad++ < 5)
				diag("prefix %zu: %d %s", n, r.ret, r.msg);
		}
		is_int(bad, 0, "all %zu prefixes are BV_ETRUNCATED", b.len);
	}
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_u8(&b, 'p');
	b_u8(&b, 1);
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "unknown tag 'p' in metadata");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_extent(&b, 'z', 0, 512);
	b_u8(&b, 'q');
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "unknown tag among data");
	b_free(&b);

	b_rbd_banner(&b);
	b_extent(&b, 'z', 0, 512);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "data before 's'");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "'e' without 's'");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_extent(&b, 'z', 0, 512);
	b_u8(&b, 's');
	b_le(&b, 2 * MiB, 8);
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "'s' after data");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "two 's'");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_extent(&b, 'w', 100, 512);
	b_fill(&b, 0, 512);
	b_u8(&b, 'e');
	expect(&b, BV_EALIGN, "unaligned 'w' offset");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_extent(&b, 'z', 0, 1000);
	b_u8(&b, 'e');
	expect(&b, BV_EALIGN, "unaligned 'z' length");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB + 100, 8);
	b_u8(&b, 'e');
	expect(&b, BV_EALIGN, "unaligned image size");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_extent(&b, 'z', MiB - 512, 1024);
	b_u8(&b, 'e');
	expect(&b, BV_ERANGE, "'z' past the image size");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_extent(&b, 'w', UINT64_MAX - 511, 1024);
	expect(&b, BV_ERANGE, "'w' offset + length overflows");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_extent(&b, 'z', 4096, 512);
	b_extent(&b, 'z', 0, 512);
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "descending extents");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_extent(&b, 'z', 0, 0);
	b_u8(&b, 'e');
	expect(&b, BV_ESTREAM, "empty extent");
	b_free(&b);

	b_put(&b, "rbd diff v2\n", 12);
	b_u8(&b, 'e');
	expect(&b, BV_EFORMAT, "rbd diff v2");
	b_free(&b);

	b_put(&b, "rbd image v2\n", 13);
	expect(&b, BV_ESTREAM, "rbd export format 2 image");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_trailer(&b, 0, 0);
	expect(&b, BV_ESTREAM, "bvault stream read as rbd");
	b_free(&b);
}

int main(void)
{
	test_roundtrip();
	test_refused();
	return done_testing();
}
