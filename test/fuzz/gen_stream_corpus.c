/*
 * gen_stream_corpus.c: writes the seed corpus of the stream fuzzer into
 * the directory named by argv[1] (test/fuzz/corpus/stream/). The names say
 * what the replay test expects: ok-bvault-* and ok-rbd-* must read to END
 * in that format, bad-bvault-* and bad-rbd-* must fail in it; any other
 * file (one the fuzzer found) must only not crash. Small on purpose:
 * libFuzzer grows a corpus from small seeds.
 *
 *   gen-stream-corpus test/fuzz/corpus/stream
 */
#include <fcntl.h>
#include <stdio.h>

#include "stream_util.h"

static const char *dir;

static void save(const char *name, const struct bytes *b)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, b->p, b->len) != (ssize_t)b->len) {
		perror(path);
		exit(1);
	}
	close(fd);
}

/* A stream made by the writer itself: version 1, or with IDS version 2
 * (base and result identities). */
static void writer_stream(struct bytes *b, int ids)
{
	static uint8_t data[3 * 4096];
	bv_stream_header h = { "vm1.sda", 65536, 3, 1, 1700000000 };
	bv_stream_writer *w;
	int fd = memfd_create("gen", 0);
	ssize_t n;

	for (int i = 0; ids && i < 16; i++) {
		h.base_id[i] = (uint8_t)(0xb0 + i);
		h.result_id[i] = (uint8_t)(0xe0 + i);
	}
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i % 251);
	if (bv_stream_writer_open(fd, &h, &w) ||
	    bv_stream_write_data(w, 4096, data, 1024) ||
	    bv_stream_write_zero(w, 0, 512) ||
	    bv_stream_write_resize(w, 131072) ||
	    bv_stream_write_data(w, 65536, data, sizeof(data)) ||
	    bv_stream_write_resize(w, 32768) ||
	    bv_stream_write_zero(w, 1024, 31744) ||
	    bv_stream_writer_finish(w))
		exit(1);
	lseek(fd, 0, SEEK_SET);
	b->len = 0;
	for (;;) {
		uint8_t buf[4096];
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		b_put(b, buf, (size_t)n);
	}
	close(fd);
}

static void rbd_stream(struct bytes *b)
{
	b_rbd_banner(b);
	b_rbd_name(b, 'f', "s1");
	b_rbd_name(b, 't', "s2");
	b_u8(b, 's');
	b_le(b, 65536, 8);
	b_extent(b, 'w', 0, 1024);
	b_fill(b, 0x77, 1024);
	b_extent(b, 'z', 4096, 8192);
	b_extent(b, 'w', 32768, 512);
	b_fill(b, 0x01, 512);
	b_u8(b, 'e');
}

int main(int argc, char **argv)
{
	struct bytes b = { 0 };

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];

	writer_stream(&b, 0);
	save("ok-bvault-writer", &b);
	b.p[b.len - 30] ^= 4;
	save("bad-bvault-checksum", &b);
	writer_stream(&b, 0);
	b.len -= 9;
	save("bad-bvault-truncated", &b);
	b_free(&b);

	writer_stream(&b, 1);
	save("ok-bvault-v2-writer", &b);
	b.p[8 + 2 + 2 + 1 + 7 + 25 + 5] ^= 1; /* a bit of the base identity */
	save("bad-bvault-v2-checksum", &b);
	b.len = 8 + 2 + 2 + 1 + 7 + 25 + 20; /* cut inside the identities */
	save("bad-bvault-v2-truncated", &b);
	b_free(&b);

	b_header(&b, 1, 0, "x", 0, 0, 0, 0);
	b_trailer(&b, 0, 0);
	save("ok-bvault-empty", &b);
	b_free(&b);

	b_header(&b, 1, 0, "x", 4096, 0, 0, 0);
	b_extent(&b, 'D', 4096, 512);
	b_fill(&b, 1, 512);
	b_trailer(&b, 1, 512);
	save("bad-bvault-range", &b);
	b_free(&b);

	b_header(&b, 1, 0, "x", 4096, 0, 0, 0);
	b_extent(&b, 'Z', 3, 512);
	b_trailer(&b, 1, 0);
	save("bad-bvault-align", &b);
	b_free(&b);

	b_header(&b, 9, 0, "x", 4096, 0, 0, 0);
	b_trailer(&b, 0, 0);
	save("bad-bvault-version", &b);
	b_free(&b);

	rbd_stream(&b);
	save("ok-rbd-full", &b);
	b.len--;
	save("bad-rbd-no-end", &b);
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, 4096, 8);
	b_u8(&b, 'e');
	save("ok-rbd-empty", &b);
	b_free(&b);

	b_rbd_banner(&b);
	b_extent(&b, 'w', 0, 512);
	b_fill(&b, 2, 512);
	b_u8(&b, 'e');
	save("bad-rbd-no-size", &b);
	b_free(&b);

	b_rbd_banner(&b);
	b_u8(&b, 's');
	b_le(&b, 4096, 8);
	b_u8(&b, 'x');
	b_u8(&b, 'e');
	save("bad-rbd-tag", &b);
	b_free(&b);
	return 0;
}
