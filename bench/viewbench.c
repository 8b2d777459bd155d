/*
 * viewbench: random 4 KiB writes into a view (bv_view_pwrite, then one
 * bv_view_flush) against the same writes into a plain sparse file of the
 * same size on the same disk (pwrite, then one fdatasync): the ratio of
 * their rates, per round and the median. Rounds alternate which goes
 * first. bench/view.sh runs it; bench/RESULTS.md keeps its figure.
 *
 *   viewbench [--dir DIR] [--size MIB] [--writes N] [--rounds R]
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bvault.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_s = 12345;
static uint64_t rnd(void)
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int rm_one(const char *p, const struct stat *st, int f, struct FTW *w)
{
	(void)st;
	(void)f;
	(void)w;
	remove(p);
	return 0;
}

static void die(const char *what, bv_store *s)
{
	fprintf(stderr, "viewbench: %s: %s\n", what, bv_store_error(s));
	exit(1);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *base = "/var/tmp";
	uint64_t size = 1024ull << 20, nw = 20000;
	int rounds = 3;
	char dir[4096], store[4200], file[4200], name[32];
	static uint8_t data[1 << 20];
	double ratios[64];

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--dir"))
			base = argv[i + 1];
		else if (!strcmp(argv[i], "--size"))
			size = strtoull(argv[i + 1], NULL, 0) << 20;
		else if (!strcmp(argv[i], "--writes"))
			nw = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--rounds"))
			rounds = atoi(argv[i + 1]);
	}
	if (rounds < 1 || rounds > 64 || size < (1u << 20) || nw == 0) {
		fprintf(stderr, "usage: viewbench [--dir DIR] [--size MIB] "
			"[--writes N] [--rounds 1..64]\n");
		return 2;
	}
	umask(077);
	snprintf(dir, sizeof dir, "%s/viewbench-XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(store, sizeof store, "%s/store", dir);
	snprintf(file, sizeof file, "%s/plain.img", dir);
	for (size_t i = 0; i < sizeof data; i += 8) {
		uint64_t x = rnd();
		memcpy(data + i, &x, 8);
	}
	bv_store *s = NULL;
	if (bv_store_init(store, NULL, NULL, 0) < 0 ||
	    bv_store_open(store, NULL, &s) < 0 ||
	    bv_replica_create(s, "vm", size, 0) < 0 ||
	    bv_rp_create(s, "vm", NULL, BV_CRASH_CONSISTENT, NULL) < 0)
		die("store", s);
	uint64_t nblocks = size / 4096;
	uint64_t *offs = malloc(nw * sizeof *offs);
	if (!offs)
		return 1;
	printf("random 4 KiB writes: %llu per round into %llu MiB, flush at "
	       "the end\n", (unsigned long long)nw,
	       (unsigned long long)(size >> 20));
	for (int r = 0; r < rounds; r++) {
		double tv = 0, tf = 0;
		for (uint64_t i = 0; i < nw; i++)
			offs[i] = (rnd() % nblocks) * 4096;
		for (int k = 0; k < 2; k++) {
			int view_now = (k == 0) == (r % 2 == 0);
			if (view_now) {
				bv_view *v;
				snprintf(name, sizeof name, "b%d", r);
				if (bv_view_create(s, name, "vm", 1) < 0 ||
				    bv_view_open(s, name, &v) < 0)
					die("view", s);
				double t0 = now();
				for (uint64_t i = 0; i < nw; i++)
					if (bv_view_pwrite(v, data + (i % 255) * 4096,
							   4096, offs[i]) < 0)
						die("view write", s);
				if (bv_view_flush(v) < 0)
					die("view flush", s);
				tv = now() - t0;
				bv_view_close(v);
				bv_view_remove(s, name);
			} else {
				int fd = open(file, O_RDWR | O_CREAT | O_TRUNC |
						    O_CLOEXEC, 0600);
				if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
					perror(file);
					return 1;
				}
				double t0 = now();
				for (uint64_t i = 0; i < nw; i++)
					if (pwrite(fd, data + (i % 255) * 4096, 4096,
						   (off_t)offs[i]) != 4096) {
						perror("pwrite");
						return 1;
					}
				if (fdatasync(fd) < 0) {
					perror("fdatasync");
					return 1;
				}
				tf = now() - t0;
				close(fd);
				unlink(file);
			}
		}
		double mv = (double)nw * 4096 / tv / 1e6;
		double mf = (double)nw * 4096 / tf / 1e6;
		ratios[r] = mv / mf;
		printf("round %d: view %.1f MB/s, sparse file %.1f MB/s, ratio "
		       "%.2fx\n", r + 1, mv, mf, ratios[r]);
	}
	qsort(ratios, (size_t)rounds, sizeof *ratios, cmp_d);
	printf("view random 4K pwrite + flush vs sparse file pwrite + "
	       "fdatasync (median of %d): %.2fx\n", rounds,
	       ratios[rounds / 2]);
	bv_store_close(s);
	free(offs);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
