/*
 * roundtrip.c: whatever the writer accepts, the reader gives back
 * unchanged: random data extents (some longer than a piece), zero extents
 * and resizes, through a memfd and through a pipe fed in small writes.
 * Also the writer's own refusals, and its sticky write errors.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "tap.h"
#include "stream_util.h"

#define MiB (UINT64_C(1) << 20)
#define MAX_OPS 64

struct op {
	enum bv_rec_type type;
	uint64_t off, len;
	const uint8_t *data;
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Random ops inside the size in force; data from POOL. */
static size_t make_ops(struct op *ops, uint64_t *size, const uint8_t *pool,
		       size_t pool_len)
{
	size_t n = 1 + rnd() % MAX_OPS;
	uint64_t disk = *size;

	for (size_t i = 0; i < n; i++) {
		unsigned kind = rnd() % 8;
		struct op *o = &ops[i];

		if (kind == 0 || disk < 512) {
			o->type = BV_REC_RESIZE;
			o->len = (rnd() % (32 * MiB / 512)) * 512;
			o->off = 0;
			disk = o->len;
			continue;
		}
		o->off = (rnd() % (disk / 512)) * 512;
		o->len = (1 + rnd() % ((disk - o->off) / 512)) * 512;
		if (kind <= 2) {
			o->type = BV_REC_ZERO;
			continue;
		}
		o->type = BV_REC_DATA;
		if (kind == 3 && o->len > 9 * MiB)
			o->len = 9 * MiB; /* some pieces of 4 MiB */
		else if (o->len > 256 * 1024)
			o->len = (1 + rnd() % 512) * 512;
		o->data = pool + (rnd() % ((pool_len - o->len) / 512 + 1)) * 512;
	}
	return n;
}

static int write_ops(int fd, const char *name, uint64_t size,
		     const struct op *ops, size_t n)
{
	bv_stream_header h = { name, size, 42, BV_APP_CONSISTENT, -12345 };
	bv_stream_writer *w;
	int ret = bv_stream_writer_open(fd, &h, &w);

	if (ret)
		return ret;
	for (size_t i = 0; i < n && ret == 0; i++) {
		const struct op *o = &ops[i];
		if (o->type == BV_REC_DATA)
			ret = bv_stream_write_data(w, o->off, o->data,
						   (size_t)o->len);
		else if (o->type == BV_REC_ZERO)
			ret = bv_stream_write_zero(w, o->off, o->len);
		else
			ret = bv_stream_write_resize(w, o->len);
	}
	if (ret) {
		diag("writer: %s", bv_stream_writer_error(w));
		bv_stream_writer_abort(w);
		return ret;
	}
	return bv_stream_writer_finish(w);
}

/* Reads FD and checks it gives back OPS exactly. */
static int check_ops(int fd, const char *name, uint64_t size,
		     const struct op *ops, size_t n)
{
	struct bv_stream_reader *rd;
	const struct bv_stream_info *info;
	struct bv_stream_rec rec;
	int ret, good = 0;
	size_t i = 0;
	uint64_t done = 0; /* bytes of ops[i]'s data already seen */

	ret = bv_stream_reader_open(fd, BV_FORMAT_BVAULT, &rd);
	if (ret) {
		diag("open: %s", bv_stream_reader_error(rd));
		goto out;
	}
	info = bv_stream_reader_info(rd);
	if (strcmp(info->replica, name) || info->disk_size != size ||
	    info->base_rp != 42 || info->consistency != BV_APP_CONSISTENT ||
	    info->time != -12345) {
		diag("header differs");
		goto out;
	}
	for (;;) {
		ret = bv_stream_next(rd, &rec);
		if (ret) {
			diag("next: %s", bv_stream_reader_error(rd));
			goto out;
		}
		if (rec.type == BV_REC_END)
			break;
		if (i >= n || rec.type != ops[i].type) {
			diag("record %zu: type %d", i, rec.type);
			goto out;
		}
		if (rec.type == BV_REC_DATA) {
			if (rec.len == 0 || rec.len % 512 ||
			    rec.len > BV_STREAM_PIECE ||
			    rec.off != ops[i].off + done ||
			    done + rec.len > ops[i].len ||
			    memcmp(rec.data, ops[i].data + done, rec.len)) {
				diag("record %zu: bad piece %llu+%llu", i,
				     (unsigned long long)rec.off,
				     (unsigned long long)rec.len);
				goto out;
			}
			done += rec.len;
			if (done < ops[i].len)
				continue;
		} else if (rec.off != ops[i].off || rec.len != ops[i].len) {
			diag("record %zu differs", i);
			goto out;
		}
		done = 0;
		i++;
	}
	good = i == n;
out:
	bv_stream_reader_close(rd);
	return good;
}

static void test_random(const uint8_t *pool, size_t pool_len)
{
	static struct op ops[MAX_OPS];
	int bad = 0, rounds = 60;

	for (int r = 0; r < rounds; r++) {
		uint64_t size = (1 + rnd() % (64 * MiB / 512)) * 512;
		size_t n = make_ops(ops, &size, pool, pool_len);
		int fd = memfd_create("rt", 0);
		int ret = write_ops(fd, "vm.disk-0", size, ops, n);

		if (ret) {
			diag("round %d: write %d", r, ret);
			bad++;
		} else {
			lseek(fd, 0, SEEK_SET);
			if (!check_ops(fd, "vm.disk-0", size, ops, n)) {
				diag("round %d: read back differs", r);
				bad++;
			} else if (r % 10 == 0) {
				/* also through a pipe, in odd small writes */
				struct stat st;
				uint8_t *p;
				pid_t pid;
				int pfd;

				fstat(fd, &st);
				p = mmap(NULL, (size_t)st.st_size, PROT_READ,
					 MAP_PRIVATE, fd, 0);
				pfd = pipe_fd(p, (size_t)st.st_size,
					      1 + rnd() % 70000, &pid);
				if (!check_ops(pfd, "vm.disk-0", size, ops, n))
					bad++;
				pipe_done(pid);
				close(pfd);
				munmap(p, (size_t)st.st_size);
			}
		}
		close(fd);
	}
	is_int(bad, 0, "%d random streams read back exactly", rounds);
}

/* The writer refuses what the reader would refuse, writes nothing for it,
 * and stays usable. */
static void test_writer_checks(const uint8_t *pool)
{
	bv_stream_header h = { "vm", MiB, 0, BV_CRASH_CONSISTENT, 0 };
	bv_stream_writer *w;
	struct run_result r;
	int fd = memfd_create("wc", 0);

	is_int(bv_stream_writer_open(fd, &h, &w), 0, "open");
	is_int(bv_stream_write_data(w, 100, pool, 512), BV_EALIGN,
	       "unaligned offset");
	is_int(bv_stream_write_data(w, 0, pool, 100), BV_EALIGN,
	       "unaligned length");
	is_int(bv_stream_write_zero(w, MiB - 512, 1024), BV_ERANGE,
	       "past the disk size");
	ok(strstr(bv_stream_writer_error(w),
		  "zero extent 1048064+1024 ends past the disk size 1048576") !=
		   NULL, "message: %s", bv_stream_writer_error(w));
	is_int(bv_stream_write_zero(w, UINT64_MAX - 511, 1024), BV_ERANGE,
	       "overflow");
	is_int(bv_stream_write_resize(w, 1000), BV_EALIGN, "unaligned resize");
	is_int(bv_stream_write_data(w, 512, NULL, 512), BV_EINVAL,
	       "no buffer");
	is_int(bv_stream_write_data(w, MiB, pool, 0), 0,
	       "empty data extent at the end: nothing written");
	is_int(bv_stream_write_zero(w, 0, 0), 0, "empty zero extent");
	is_int(bv_stream_write_data(w, 0, pool, 4096), 0, "good data");
	is_int(bv_stream_write_resize(w, 512), 0, "shrink");
	is_int(bv_stream_write_zero(w, 0, 1024), BV_ERANGE,
	       "past the new size");
	is_int(bv_stream_write_resize(w, 2 * MiB), 0, "grow");
	is_int(bv_stream_write_zero(w, MiB, MiB), 0, "zero the new part");
	is_int(bv_stream_writer_finish(w), 0, "finish");
	lseek(fd, 0, SEEK_SET);
	r = run_fd(fd, BV_FORMAT_BVAULT);
	is_int(r.ret, 0, "the reader accepts it");
	is_int(r.records, 4, "four records, the refused calls left none");

	{
		static const char *names[] = { "", "a/b", "x y", "caf\xc3\xa9",
			("0123456789012345678901234567890123456789"
			 "012345678901234567890123") };
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			h.replica = names[i];
			w = (void *)1;
			is_int(bv_stream_writer_open(1, &h, &w), BV_EINVAL,
			       "bad name %zu refused", i);
			ok(w == NULL, "no writer on failure");
		}
		h.replica = "vm";
		h.disk_size = 1000;
		is_int(bv_stream_writer_open(1, &h, &w), BV_EALIGN,
		       "unaligned disk size");
		h.disk_size = MiB;
		h.consistency = 2;
		is_int(bv_stream_writer_open(1, &h, &w), BV_EINVAL,
		       "bad consistency");
		is_int(bv_stream_writer_open(1, NULL, &w), BV_EINVAL,
		       "no header");
	}
}

/* A write() error sticks and no trailer follows. */
static void test_write_error(const uint8_t *pool)
{
	bv_stream_header h = { "vm", 64 * MiB, 0, BV_CRASH_CONSISTENT, 0 };
	bv_stream_writer *w;
	int fds[2], ret;

	signal(SIGPIPE, SIG_IGN);
	if (pipe(fds))
		bail_out("pipe");
	close(fds[0]);
	is_int(bv_stream_writer_open(fds[1], &h, &w), 0, "open on a pipe");
	ret = bv_stream_write_data(w, 0, pool, 2 * MiB);
	is_int(ret, -EPIPE, "write to a closed pipe: -EPIPE");
	is_int(bv_stream_write_zero(w, 0, 512), -EPIPE, "sticky");
	is_int(bv_stream_writer_finish(w), -EPIPE, "finish fails too");
	close(fds[1]);

	/* abort leaves a stream readers refuse */
	{
		int fd = memfd_create("ab", 0);
		is_int(bv_stream_writer_open(fd, &h, &w), 0, "open");
		bv_stream_write_data(w, 0, pool, 2 * MiB);
		bv_stream_writer_abort(w);
		lseek(fd, 0, SEEK_SET);
		is_int(run_fd(fd, BV_FORMAT_BVAULT).ret, BV_ETRUNCATED,
		       "aborted stream is truncated");
	}
}

/* A stream of header H and, when DATA, one 4 KiB data extent, in a
 * memfd at offset 0, opened by the reader into *RD. */
static int ids_stream(const bv_stream_header *h, const uint8_t *data,
		      struct bv_stream_reader **rd)
{
	bv_stream_writer *w;
	int fd = memfd_create("ids", 0);

	if (fd < 0 || bv_stream_writer_open(fd, h, &w) ||
	    (data && bv_stream_write_data(w, 0, data, 4096)) ||
	    bv_stream_writer_finish(w))
		bail_out("writing a stream");
	lseek(fd, 0, SEEK_SET);
	if (bv_stream_reader_open(fd, BV_FORMAT_BVAULT, rd))
		bail_out("reading it back");
	return fd;
}

/* The writer carries identities in a version 2 header and writes version
 * 1, unchanged, when it has none. */
static void test_ids(const uint8_t *pool)
{
	bv_stream_header h = { "ids", MiB, 7, BV_CRASH_CONSISTENT, 99 };
	struct bv_stream_reader *rd = NULL;
	const struct bv_stream_info *info;
	uint8_t head[16];
	int fd;

	for (int i = 0; i < 16; i++) {
		h.base_id[i] = (uint8_t)(0x10 + i);
		h.result_id[i] = (uint8_t)(0x80 + i);
	}
	fd = ids_stream(&h, pool, &rd);
	ok(pread(fd, head, 16, 0) == 16 && head[8] == 2 && head[9] == 0,
	   "with identities the header says version 2");
	info = bv_stream_reader_info(rd);
	ok(info->version == 2 && info->base_rp == 7 &&
	   !memcmp(info->base_id, h.base_id, 16) &&
	   !memcmp(info->result_id, h.result_id, 16),
	   "both identities and the base RP come back");
	bv_stream_reader_close(rd);
	close(fd);

	memset(h.base_id, 0, 16);
	fd = ids_stream(&h, NULL, &rd);
	info = bv_stream_reader_info(rd);
	ok(info->version == 2 && info->base_id[0] == 0 &&
	   !memcmp(info->result_id, h.result_id, 16),
	   "a result identity alone is version 2 too");
	bv_stream_reader_close(rd);
	close(fd);

	memset(h.result_id, 0, 16);
	fd = ids_stream(&h, NULL, &rd);
	info = bv_stream_reader_info(rd);
	ok(pread(fd, head, 16, 0) == 16 && head[8] == 1 && info->version == 1 &&
	   lseek(fd, 0, SEEK_END) == 38 + 3 + 25,
	   "without identities: version 1, 41 header + 25 trailer bytes");
	bv_stream_reader_close(rd);
	close(fd);
}

/* Each data piece is a multiple of 512, at most BV_STREAM_PIECE, and a
 * long extent comes back whole. */
static void test_pieces(const uint8_t *pool, size_t pool_len)
{
	struct op o = { BV_REC_DATA, 512, pool_len - 1024, pool + 1024 };
	int fd = memfd_create("pc", 0);

	is_int(write_ops(fd, "p", pool_len, &o, 1), 0, "write %zu bytes",
	       (size_t)o.len);
	lseek(fd, 0, SEEK_SET);
	ok(check_ops(fd, "p", pool_len, &o, 1), "read back in pieces");
	close(fd);
}

int main(void)
{
	size_t pool_len = 16 * MiB;
	uint8_t *pool = malloc(pool_len);

	if (!pool)
		bail_out("no memory");
	for (size_t i = 0; i < pool_len; i++)
		pool[i] = (uint8_t)(rnd() >> 32);
	test_random(pool, pool_len);
	test_writer_checks(pool);
	test_write_error(pool);
	test_pieces(pool, pool_len);
	test_ids(pool);
	free(pool);
	return done_testing();
}
