/*
 * bad.c: every kind of bad bvault stream gets its exact error code and a
 * message naming the byte, and never END (invariant 6). Streams are built
 * by hand from STREAM.md, so the test checks the document as well as the
 * reader.
 */
#include "tap.h"
#include "stream_util.h"

#define MiB (UINT64_C(1) << 20)

/* A small valid stream: header (1 MiB disk), data, zero, resize, data
 * past the old end, trailer. */
static void good_stream(struct bytes *b)
{
	b_header(b, 1, 0, "vm-7.disk_0", MiB, 12, 1, 1700000000);
	b_extent(b, 'D', 4096, 1024);
	b_fill(b, 0xab, 1024);
	b_extent(b, 'Z', 0, 512);
	b_u8(b, 'S');
	b_le(b, 2 * MiB, 8);
	b_extent(b, 'D', MiB + 512, 512);
	b_fill(b, 0x11, 512);
	b_trailer(b, 4, 1536);
}

static const uint8_t ids_base[16] = { 0xb0, 1, 2, 3, 4, 5, 6, 7,
				      8, 9, 10, 11, 12, 13, 14, 0xbf };
static const uint8_t ids_result[16] = { 0xe0, 1, 2, 3, 4, 5, 6, 7,
					8, 9, 10, 11, 12, 13, 14, 0xef };

/* good_stream with a version 2 header: the identities after the time. */
static void good_stream_v2(struct bytes *b)
{
	b_header(b, 2, 0, "vm-7.disk_0", MiB, 12, 1, 1700000000);
	b_ids(b, ids_base, ids_result);
	b_extent(b, 'D', 4096, 1024);
	b_fill(b, 0xab, 1024);
	b_extent(b, 'Z', 0, 512);
	b_trailer(b, 2, 1024);
}

static void expect(const struct bytes *b, int format, int want,
		   const char *what)
{
	struct run_result r = run_bytes(b->p, b->len, format);

	is_int(r.ret, want, "%s", what);
	ok(want == 0 || strncmp(r.msg, "stream byte ", 12) == 0,
	   "%s: message names the byte: %s", what, r.msg);
}

static void test_good(void)
{
	struct bytes b = { 0 };
	struct run_result r;

	good_stream(&b);
	r = run_bytes(b.p, b.len, BV_FORMAT_BVAULT);
	is_int(r.ret, 0, "hand-built stream reads to END");
	is_int(r.records, 4, "four records");
	is_int(r.data, 1536, "1536 data bytes");
	b_free(&b);
}

/* A version 2 stream reads to END with its identities; a version 1
 * stream names none. */
static void test_v2(void)
{
	struct bytes b = { 0 };
	struct bv_stream_reader *rd = NULL;
	const struct bv_stream_info *info;
	struct bv_stream_rec rec;
	int fd, ret, n = 0;

	good_stream_v2(&b);
	fd = mem_fd(b.p, b.len);
	ret = bv_stream_reader_open(fd, BV_FORMAT_BVAULT, &rd);
	is_int(ret, 0, "a version 2 header opens");
	info = bv_stream_reader_info(rd);
	ok(info->version == 2 && info->base_rp == 12 &&
	   !memcmp(info->base_id, ids_base, 16) &&
	   !memcmp(info->result_id, ids_result, 16) &&
	   info->disk_size == MiB && info->consistency == 1 &&
	   info->time == 1700000000,
	   "version 2: base RP, both identities and the v1 fields");
	while ((ret = bv_stream_next(rd, &rec)) == 0 && rec.type != BV_REC_END)
		n++;
	ok(ret == 0 && n == 2, "version 2 stream reads to END (%d: %s)", ret,
	   bv_stream_reader_error(rd));
	bv_stream_reader_close(rd);
	close(fd);
	b_free(&b);

	good_stream(&b);
	fd = mem_fd(b.p, b.len);
	ret = bv_stream_reader_open(fd, BV_FORMAT_BVAULT, &rd);
	info = bv_stream_reader_info(rd);
	static const uint8_t zero[16];
	ok(ret == 0 && info->version == 1 && !memcmp(info->base_id, zero, 16) &&
	   !memcmp(info->result_id, zero, 16),
	   "version 1 stream: no identities");
	bv_stream_reader_close(rd);
	close(fd);
	b_free(&b);
}

/* Every proper prefix is a cut stream: BV_ETRUNCATED, never END. */
static void test_prefixes_of(void (*make)(struct bytes *), const char *what)
{
	struct bytes b = { 0 };
	size_t bad = 0, nomsg = 0;

	make(&b);
	for (size_t n = 0; n < b.len; n++) {
		struct run_result r = run_bytes(b.p, n, BV_FORMAT_BVAULT);
		if (r.ret != BV_ETRUNCATED) {
			if (bad++ < 5)
				diag("prefix %zu: got %d: %s", n, r.ret, r.msg);
		}
		if (!strstr(r.msg, "stream byte"))
			nomsg++;
	}
	is_int(bad, 0, "%s: all %zu prefixes are BV_ETRUNCATED", what, b.len);
	is_int(nomsg, 0, "and every message names the byte");
	b_free(&b);
}

static void test_prefixes(void)
{
	test_prefixes_of(good_stream, "version 1");
	test_prefixes_of(good_stream_v2, "version 2");
}

static void test_header(void)
{
	struct bytes b = { 0 };

	b_put(&b, "BVSTRX\0\1", 8);
	b_fill(&b, 0, 60);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "wrong magic");
	b_free(&b);

	b_put(&b, "NOPE", 4);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "short and wrong magic");
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, MiB, 8);
	b_u8(&b, 'e');
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "rbd stream read as bvault");
	b_free(&b);

	b_header(&b, 3, 0, "vm", MiB, 0, 0, 0);
	b_ids(&b, ids_base, ids_result);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_EFORMAT, "newer version");
	b_free(&b);

	b_header(&b, 2, 1, "vm", MiB, 0, 0, 0);
	b_ids(&b, ids_base, ids_result);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_EFORMAT, "unknown flag in version 2");
	b_free(&b);

	b_header(&b, 0, 0, "vm", MiB, 0, 0, 0);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "version 0");
	b_free(&b);

	b_header(&b, 1, 4, "vm", MiB, 0, 0, 0);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_EFORMAT, "unknown flag");
	b_free(&b);

	b_header(&b, 1, 0, "", MiB, 0, 0, 0);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "empty replica name");
	b_free(&b);

	b_header(&b, 1, 0, "vm/7", MiB, 0, 0, 0);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "'/' in replica name");
	b_free(&b);

	{
		char name[65];
		memset(name, 'a', 64);
		name[64] = '\0';
		b_header(&b, 1, 0, name, MiB, 0, 0, 0);
		b_trailer(&b, 0, 0);
		expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM,
		       "64-byte replica name");
		b_free(&b);
		name[63] = '\0';
		b_header(&b, 1, 0, name, MiB, 0, 0, 0);
		b_trailer(&b, 0, 0);
		expect(&b, BV_FORMAT_BVAULT, 0, "63-byte replica name");
		b_free(&b);
	}

	b_header(&b, 1, 0, "vm", MiB + 1, 0, 0, 0);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_EALIGN, "unaligned disk size");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 2, 0);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "consistency 2");
	b_free(&b);

	b_header(&b, 1, 0, "vm", 0, 0, 0, -5);
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, 0, "empty disk, no records");
	b_free(&b);
}

static void test_records(void)
{
	struct bytes b = { 0 };
	struct run_result r;

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'D', MiB, 4096);
	b_fill(&b, 1, 4096);
	b_trailer(&b, 1, 4096);
	r = run_bytes(b.p, b.len, BV_FORMAT_BVAULT);
	is_int(r.ret, BV_ERANGE, "data extent past the disk size");
	ok(strstr(r.msg, "stream byte 40: data extent 1048576+4096 ends "
			 "past the disk size 1048576") != NULL,
	   "message: %s", r.msg);
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'Z', MiB - 512, 1024);
	b_trailer(&b, 1, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ERANGE, "zero extent past the end");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'Z', UINT64_MAX - 511, 1024);
	b_trailer(&b, 1, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ERANGE, "offset + length overflows");
	b_free(&b);

	b_header(&b, 1, 0, "vm", UINT64_MAX - 511, 0, 0, 0);
	b_extent(&b, 'Z', UINT64_MAX - 1023, 1024);
	b_trailer(&b, 1, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ERANGE,
	       "overflow on the largest disk");
	b_free(&b);

	b_header(&b, 1, 0, "vm", UINT64_MAX - 511, 0, 0, 0);
	b_extent(&b, 'Z', UINT64_MAX - 1023, 512);
	b_trailer(&b, 1, 0);
	expect(&b, BV_FORMAT_BVAULT, 0, "last sector of the largest disk");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'D', 100, 512);
	b_fill(&b, 1, 512);
	b_trailer(&b, 1, 512);
	expect(&b, BV_FORMAT_BVAULT, BV_EALIGN, "unaligned offset");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'Z', 512, 100);
	b_trailer(&b, 1, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_EALIGN, "unaligned length");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_u8(&b, 'S');
	b_le(&b, 1000, 8);
	b_trailer(&b, 1, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_EALIGN, "unaligned new size");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'Z', 512, 0);
	b_trailer(&b, 1, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "empty extent");
	b_free(&b);

	b_header(&b, 1, 0, "vm", 4 * 1024 * MiB, 0, 0, 0);
	b_extent(&b, 'D', 0, 1024 * MiB + 512);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM,
	       "data record over the 1 GiB limit");
	b_free(&b);

	/* A shrink makes the old end out of range. */
	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_u8(&b, 'S');
	b_le(&b, 512 * 1024, 8);
	b_extent(&b, 'Z', 512 * 1024, 512);
	b_trailer(&b, 2, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ERANGE, "extent past a shrink");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_u8(&b, 'X');
	b_trailer(&b, 0, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "unknown record type");
	b_free(&b);
}

static void test_trailer(void)
{
	struct bytes b = { 0 };

	good_stream(&b);
	b.p[70] ^= 0x40; /* a byte of the first data extent */
	expect(&b, BV_FORMAT_BVAULT, BV_ECHECKSUM, "flipped data byte");
	b_free(&b);

	good_stream(&b);
	b.p[b.len - 1] ^= 1;
	expect(&b, BV_FORMAT_BVAULT, BV_ECHECKSUM, "flipped checksum byte");
	b_free(&b);

	good_stream(&b);
	b.p[20] ^= 1; /* the replica name: still valid, but not the sum */
	expect(&b, BV_FORMAT_BVAULT, BV_ECHECKSUM, "flipped header byte");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'Z', 0, 512);
	b_trailer(&b, 2, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ECHECKSUM, "wrong record count");
	b_free(&b);

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'D', 0, 512);
	b_fill(&b, 3, 512);
	b_trailer(&b, 1, 1024);
	expect(&b, BV_FORMAT_BVAULT, BV_ECHECKSUM, "wrong data byte count");
	b_free(&b);

	good_stream(&b);
	b_u8(&b, 0);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "one byte after the trailer");
	b_free(&b);

	good_stream(&b);
	b_fill(&b, 'E', 5000);
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "garbage after the trailer");
	b_free(&b);

	/* Two streams back to back are not one stream. */
	good_stream(&b);
	{
		size_t n = b.len;
		b_put(&b, b.p, n);
	}
	expect(&b, BV_FORMAT_BVAULT, BV_ESTREAM, "two streams concatenated");
	b_free(&b);
}

/* The reader stays failed and keeps its message. */
static void test_sticky(void)
{
	struct bytes b = { 0 };
	struct bv_stream_reader *rd;
	struct bv_stream_rec rec;
	int fd, ret;

	b_header(&b, 1, 0, "vm", MiB, 0, 0, 0);
	b_extent(&b, 'Z', 0, 100);
	b_trailer(&b, 1, 0);
	fd = mem_fd(b.p, b.len);
	ret = bv_stream_reader_open(fd, BV_FORMAT_BVAULT, &rd);
	is_int(ret, 0, "open");
	is_int(bv_stream_next(rd, &rec), BV_EALIGN, "first next fails");
	is_int(bv_stream_next(rd, &rec), BV_EALIGN, "second next too");
	ok(strstr(bv_stream_reader_error(rd), "stream byte 40") != NULL,
	   "message kept: %s", bv_stream_reader_error(rd));
	bv_stream_reader_close(rd);
	close(fd);
	b_free(&b);

	fd = mem_fd("x", 1);
	ret = bv_stream_reader_open(fd, 7, &rd);
	is_int(ret, BV_EINVAL, "unknown format");
	ok(rd != NULL, "reader set on failure");
	bv_stream_reader_close(rd);
	close(fd);
	bv_stream_reader_close(NULL);
}

int main(void)
{
	test_good();
	test_v2();
	test_prefixes();
	test_header();
	test_records();
	test_trailer();
	test_sticky();
	return done_testing();
}
