/*
 * nbd_rand.c: random 4 KiB reads from an NBD export, DEPTH in flight on
 * one connection (libnbd's asynchronous API), for bench/nbd.sh, which
 * runs it against the bvault plugin and against nbdkit's file plugin
 * serving the same bytes, with the same count, depth and seed.
 *
 *   nbd_rand URI COUNT DEPTH SEED
 *
 * Prints "reads COUNT depth DEPTH seconds S per_second R". Offsets are
 * 4 KiB aligned, drawn from a xorshift generator seeded with SEED, so
 * both runs read the same places in the same order.
 */
#include <inttypes.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BLOCK 4096u
#define DEPTH_MAX 256

struct slot {
	int busy;
	int failed;
	char *buf;
};

static int done_cb(void *ud, int *error)
{
	struct slot *s = ud;
	if (*error)
		s->failed = 1;
	s->busy = 0;
	return 1; /* retire the command */
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct slot slots[DEPTH_MAX] = { 0 };
	struct nbd_handle *h = NULL;
	uint64_t count, done = 0, issued = 0, blocks, x;
	unsigned depth, inflight = 0;
	int64_t size;
	double t0, t1;
	int rc = 1;

	if (argc != 5) {
		fprintf(stderr, "usage: nbd_rand URI COUNT DEPTH SEED\n");
		return 2;
	}
	count = strtoull(argv[2], NULL, 10);
	depth = (unsigned)strtoul(argv[3], NULL, 10);
	x = strtoull(argv[4], NULL, 10) | 1;
	if (count == 0 || depth == 0 || depth > DEPTH_MAX) {
		fprintf(stderr, "nbd_rand: COUNT > 0, DEPTH 1 to %d\n",
			DEPTH_MAX);
		return 2;
	}
	for (unsigned i = 0; i < depth; i++)
		if (!(slots[i].buf = malloc(BLOCK)))
			goto cleanup;
	if (!(h = nbd_create()) || nbd_connect_uri(h, argv[1]) == -1 ||
	    (size = nbd_get_size(h)) < (int64_t)BLOCK) {
		fprintf(stderr, "nbd_rand: %s: %s\n", argv[1],
			nbd_get_error() ? nbd_get_error() : "too small");
		goto cleanup;
	}
	blocks = (uint64_t)size / BLOCK;
	t0 = now();
	while (done < count) {
		for (unsigned i = 0; i < depth && issued < count; i++) {
			nbd_completion_callback cb = { .callback = done_cb,
						       .user_data = &slots[i] };
			if (slots[i].busy)
				continue;
			slots[i].busy = 1;
			if (nbd_aio_pread(h, slots[i].buf, BLOCK,
					  next(&x) % blocks * BLOCK, cb,
					  0) == -1) {
				fprintf(stderr, "nbd_rand: %s\n",
					nbd_get_error());
				goto cleanup;
			}
			issued++;
			inflight++;
		}
		if (nbd_poll(h, -1) == -1) {
			fprintf(stderr, "nbd_rand: %s\n", nbd_get_error());
			goto cleanup;
		}
		unsigned busy = 0;
		for (unsigned i = 0; i < depth; i++) {
			if (slots[i].failed) {
				fprintf(stderr, "nbd_rand: a read failed\n");
				goto cleanup;
			}
			busy += (unsigned)slots[i].busy;
		}
		done += inflight - busy;
		inflight = busy;
	}
	t1 = now();
	printf("reads %" PRIu64 " depth %u seconds %.3f per_second %.0f\n",
	       count, depth, t1 - t0, (double)count / (t1 - t0));
	rc = 0;
cleanup:
	if (h) {
		nbd_shutdown(h, 0);
		nbd_close(h);
	}
	for (unsigned i = 0; i < depth; i++)
		free(slots[i].buf);
	return rc;
}
