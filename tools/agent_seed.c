/*
 * agent_seed.c: bvault-agent seed, a seed set made at the protected site
 * straight from the disks (tools/source.h), with no server and no store
 * (storage/SEED.md; bvault.h, bv_seed_export_disks).
 *
 *   bvault-agent seed --disk NAME=SOURCE [--disk ...] --to DIR[,DIR...]
 *                     [--media-size SIZE] [--medium N] [--pack-size SIZE]
 *                     [--key FILE] [--group G] [--label L]
 *                     [--chunk-size SIZE] [--json]
 *
 * Holes and zero ranges (bv_source_data_extents: SEEK_DATA, NBD
 * base:allocation) are never read; nothing is fingerprinted with a
 * store's key (the set carries plain digests; the importing store
 * fingerprints under its own).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bvault.h"
#include "progress.h"
#include "source.h"

int agent_seed_main(int argc, char **argv);

#define SEED_DISKS 64
#define EXT_MAX 4096
#define WINDOW (1ull << 30)

/* One disk: its source and a window of its data extents, asked of the
 * source a window at a time (one block status query per GiB, not one
 * per chunk). */
struct sdisk {
	char name[64];
	const char *spec;
	struct bv_source *src;
	uint64_t size;
	uint64_t wfrom, wto; /* the window the extents describe */
	uint64_t ext[EXT_MAX][2];
	size_t next;
	int full;            /* the walk stopped at EXT_MAX */
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
						     noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "bvault-agent seed: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int ext_cb(void *ud, uint64_t off, uint64_t len)
{
	struct sdisk *d = ud;
	if (d->next == EXT_MAX) {
		d->full = 1;
		return 1;
	}
	d->ext[d->next][0] = off;
	d->ext[d->next][1] = len;
	d->next++;
	return 0;
}

static int fill_window(struct sdisk *d, uint64_t off)
{
	uint64_t to = d->size - off < WINDOW ? d->size : off + WINDOW;
	int rc;

	d->next = 0;
	d->full = 0;
	rc = bv_source_data_extents(d->src, off, to - off, ext_cb, d);
	if (rc < 0)
		return rc;
	d->wfrom = off;
	/* Cut short: the window ends where the last extent kept ends. */
	d->wto = d->full ? d->ext[EXT_MAX - 1][0] + d->ext[EXT_MAX - 1][1] :
			   to;
	return 0;
}

static int disk_extent(void *ud, uint64_t off, uint64_t len, uint64_t *run)
{
	struct sdisk *d = ud;
	int rc;

	if (off < d->wfrom || off >= d->wto || d->wto == 0) {
		if ((rc = fill_window(d, off)))
			return rc;
	}
	/* The extents are few per window: a linear look is enough. */
	for (size_t i = 0; i < d->next; i++) {
		uint64_t a = d->ext[i][0], b = a + d->ext[i][1];
		if (off < a) {
			*run = a - off < len ? a - off : len;
			return 0;
		}
		if (off < b) {
			*run = b - off < len ? b - off : len;
			return 1;
		}
	}
	uint64_t z = d->wto - off;
	*run = z < len ? z : len;
	return 0;
}

static int disk_read(void *ud, void *buf, size_t len, uint64_t off)
{
	struct sdisk *d = ud;
	struct bv_source_read r = { .buf = buf, .len = len, .off = off };
	int rc = bv_source_read_many(d->src, &r, 1);
	if (rc)
		fprintf(stderr, "bvault-agent seed: disk %s: %s\n", d->name,
			bv_source_error(d->src));
	return rc;
}

static uint64_t parse_size(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	uint64_t v = strtoull(s, &end, 10), m = 1;
	if (errno || end == s)
		die("%s %s: not a size", opt, s);
	switch (*end) {
	case 0: break;
	case 'K': case 'k': m = 1ull << 10; end++; break;
	case 'M': case 'm': m = 1ull << 20; end++; break;
	case 'G': case 'g': m = 1ull << 30; end++; break;
	case 'T': case 't': m = 1ull << 40; end++; break;
	default: die("%s %s: not a size", opt, s);
	}
	if (*end && strcmp(end, "iB") && strcmp(end, "B"))
		die("%s %s: not a size", opt, s);
	if (v > UINT64_MAX / m)
		die("%s %s: too large", opt, s);
	return v * m;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: bvault-agent seed --disk NAME=SOURCE [--disk ...] --to DIR[,DIR...]\n"
"                         [--media-size SIZE] [--medium N] [--pack-size SIZE]\n"
"                         [--key FILE] [--group G] [--label L]\n"
"                         [--chunk-size SIZE] [--json]\n"
"Writes a seed set (storage/SEED.md) of the disks (a file, a block device\n"
"or an NBD URI each) to the media folders, with no server: bvault seed\n"
"import brings it into a store, and the agent's next --bitmap, --extents\n"
"or --compare run goes on from it. Holes and zero ranges are not read\n"
"twice nor stored. Each disk is read twice (digests, then data); freeze\n"
"it (a snapshot, a stopped VM) while the seed is made.\n");
}

int agent_seed_main(int argc, char **argv)
{
	static struct sdisk disks[SEED_DISKS];
	bv_seed_disk sd[SEED_DISKS];
	const char *to = NULL, *keyf = NULL, *group = NULL, *label = NULL;
	const char *dirs[256];
	uint8_t key[BV_SEED_KEY];
	bv_seed_opts o = { 0 };
	bv_seed_result r;
	struct progress pg;
	uint32_t cs = 0;
	int nd = 0, json = 0, rc;
	char *tocopy;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL() (v ? (i++, v) : (die("%s needs a value", a), v))
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--disk")) {
			const char *d = VAL(), *eq = strchr(d, '=');
			if (!eq || eq == d || (size_t)(eq - d) > 63 || !eq[1])
				die("--disk %s: not NAME=SOURCE", d);
			if (nd == SEED_DISKS)
				die("at most %d disks", SEED_DISKS);
			memcpy(disks[nd].name, d, (size_t)(eq - d));
			disks[nd].name[eq - d] = 0;
			disks[nd].spec = eq + 1;
			nd++;
		} else if (!strcmp(a, "--to")) {
			to = VAL();
		} else if (!strcmp(a, "--media-size")) {
			o.media_size = parse_size(a, VAL());
		} else if (!strcmp(a, "--pack-size")) {
			o.pack_size = parse_size(a, VAL());
		} else if (!strcmp(a, "--medium")) {
			uint64_t m = parse_size(a, VAL());
			if (m == 0 || m > 1000000)
				die("--medium: a medium number, 1 or more");
			o.first_medium = (uint32_t)m;
		} else if (!strcmp(a, "--chunk-size")) {
			uint64_t c = parse_size(a, VAL());
			if (c < BV_CHUNK_MIN || c > BV_CHUNK_MAX || (c & (c - 1)))
				die("--chunk-size: a power of two from 4K to 4M");
			cs = (uint32_t)c;
		} else if (!strcmp(a, "--key")) {
			keyf = VAL();
		} else if (!strcmp(a, "--group")) {
			group = VAL();
		} else if (!strcmp(a, "--label")) {
			label = VAL();
		} else if (!strcmp(a, "--json")) {
			json = 1;
		} else {
			fprintf(stderr, "bvault-agent seed: unknown argument "
				"'%s'\n", a);
			usage(stderr);
			return 2;
		}
#undef VAL
	}
	if (!nd || !to) {
		usage(stderr);
		return 2;
	}
	if (nd > 1 && !group)
		die("several disks make a group: name it (--group G)");
	if (!(tocopy = strdup(to)))
		die("out of memory");
	for (char *p = tocopy; p && o.ndirs < 256;) {
		char *c = strchr(p, ',');
		if (c)
			*c++ = 0;
		if (*p)
			dirs[o.ndirs++] = p;
		p = c;
	}
	if (!o.ndirs)
		die("--to: no folder");
	o.dirs = dirs;
	if (keyf) {
		if (bv_seed_key_load(keyf, key))
			die("%s", bv_store_error(NULL));
		o.key = key;
	}
	for (int i = 0; i < nd; i++) {
		char err[1024];
		struct sdisk *d = &disks[i];
		if (bv_source_open(d->spec, NULL, &d->src, err, sizeof err))
			die("disk %s: %s", d->name, err);
		d->size = bv_source_size(d->src);
		if (d->size == 0 || d->size % 512)
			die("disk %s: %s is %" PRIu64 " bytes, not a whole "
			    "number of 512-byte sectors", d->name, d->spec,
			    d->size);
		sd[i] = (bv_seed_disk){ .name = d->name, .size = d->size,
					.chunk_size = cs, .ud = d,
					.read = disk_read,
					.extent = disk_extent };
	}
	progress_start(&pg, "seed", stderr);
	o.progress = progress_cb;
	o.ud = &pg;
	rc = bv_seed_export_disks(sd, (size_t)nd, group, label, 0, &o, &r);
	progress_end(&pg);
	for (int i = 0; i < nd; i++)
		bv_source_close(disks[i].src);
	free(tocopy);
	if (rc)
		die("%s", bv_store_error(NULL));
	char id[33];
	for (int i = 0; i < 16; i++)
		snprintf(id + 2 * i, 3, "%02x", r.set_id[i]);
	if (json)
		printf("{\"command\":\"seed\",\"set\":\"%s\",\"media\":%u,"
		       "\"next_medium\":%u,\"chunks\":%" PRIu64
		       ",\"zero_chunks\":%" PRIu64 ",\"entries\":%" PRIu64
		       ",\"packs\":%" PRIu64 ",\"bytes\":%" PRIu64
		       ",\"bytes_written\":%" PRIu64 "}\n", id, r.media,
		       r.next_medium, r.chunks, r.zero_chunks, r.entries,
		       r.packs, r.bytes, r.bytes_written);
	else
		printf("seed set %s%s: %d disk%s, %" PRIu64 " chunks (%" PRIu64
		       " zero, %" PRIu64 " distinct) in %" PRIu64 " packs, %"
		       PRIu64 " bytes on %u medi%s\n", id,
		       r.encrypted ? " (encrypted)" : "", nd,
		       nd == 1 ? "" : "s", r.chunks, r.zero_chunks, r.entries,
		       r.packs, r.bytes, r.media, r.media == 1 ? "um" : "a");
	if (r.next_medium) {
		fprintf(stderr, "bvault-agent seed: medium %u of %u is needed "
			"next: put an empty medium in place and run again with "
			"--medium %u --to DIR\n", r.next_medium, r.media,
			r.next_medium);
		return 3;
	}
	return 0;
}
