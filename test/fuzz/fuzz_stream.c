/*
 * fuzz_stream.c: libFuzzer target for the change stream reader, both
 * formats (bvault and rbd diff v1) on every input. The bytes reach the
 * reader through a memfd, as they would through any file descriptor.
 * Built with -fsanitize=fuzzer by clang (test/stream/meson.build); the
 * replay test runs the same code on test/fuzz/corpus/stream/.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_stream.h"
#include "stream.h"

static int known_error(int err)
{
	return err == BV_ESTREAM || err == BV_ETRUNCATED ||
	       err == BV_ECHECKSUM || err == BV_ERANGE || err == BV_EALIGN ||
	       err == BV_EFORMAT;
}

static int load(int fd, const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET) != 0)
		return -1;
	while (size) {
		ssize_t w = write(fd, data, size);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		data += w;
		size -= (size_t)w;
	}
	return lseek(fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

int fuzz_stream_one(const uint8_t *data, size_t size, int format,
		    uint64_t *records)
{
	static int fd = -1;
	struct bv_stream_reader *rd = NULL;
	struct bv_stream_rec rec;
	uint64_t disk, n = 0;
	int ret;

	if (fd < 0)
		fd = memfd_create("fuzz_stream", 0);
	if (fd < 0 || load(fd, data, size))
		abort();
	ret = bv_stream_reader_open(fd, format, &rd);
	if (ret)
		goto out;
	disk = bv_stream_reader_info(rd)->disk_size;
	for (;;) {
		ret = bv_stream_next(rd, &rec);
		if (ret || rec.type == BV_REC_END)
			break;
		n++;
		if (rec.type == BV_REC_RESIZE) {
			if (rec.len % 512)
				abort();
			disk = rec.len;
			continue;
		}
		if (rec.len == 0 || rec.off % 512 || rec.len % 512 ||
		    rec.off > disk || rec.len > disk - rec.off)
			abort();
		if (rec.type == BV_REC_DATA) {
			volatile uint8_t sink;
			if (rec.len > BV_STREAM_PIECE)
				abort();
			/* touch both ends: ASan checks the pointer */
			sink = ((const uint8_t *)rec.data)[0];
			sink = ((const uint8_t *)rec.data)[rec.len - 1];
			(void)sink;
		} else if (rec.type != BV_REC_ZERO) {
			abort();
		}
	}
	if (ret == 0) {
		/* END stays END; the whole input was consumed */
		if (bv_stream_next(rd, &rec) || rec.type != BV_REC_END ||
		    bv_stream_reader_pos(rd) != size)
			abort();
	}
out:
	if (ret && !known_error(ret))
		abort();
	if (ret && rd && strncmp(bv_stream_reader_error(rd),
				 "stream byte ", 12) != 0)
		abort();
	bv_stream_reader_close(rd);
	if (records)
		*records = n;
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_stream_one(data, size, BV_FORMAT_BVAULT, NULL);
	fuzz_stream_one(data, size, BV_FORMAT_RBD_DIFF, NULL);
	return 0;
}
