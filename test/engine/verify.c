/*
 * engine-verify: bv_store_verify() finds a store intact after ingests of
 * every shape (large and small writes, chunks repeated right after new
 * ones, zeros, several versions), and finds damage put into a container
 * file by hand: a flipped payload byte, a flipped header byte, and a
 * nonzero byte in the zero padding between records. Each time it names
 * the container and changes nothing (a second verify finds the same).
 * Also bv_reader_digests: from the index alone, every chunk of an RP as
 * zero or as the XXH3-128 an agent computes of the exported bytes. Map
 * entries of a format 2 store keep the digest, and verify finds a wrong
 * one there or in the chunk index (put into the index with RocksDB by
 * hand); a format 1 store is read and written as format 1 (its map
 * entries keep no digest, and the digests come from the chunk index); a
 * format 3 store is refused.
 */
#include <dirent.h>

#include <rocksdb/c.h>
#include <xxhash.h>

#include "etest.h"

#define CHUNK 65536u
#define SIZE (24u << 20)

static et_rng rng;

/* Ingests one version of "disk": WRITES calls of random sizes, each
 * with new chunks and, at its end, chunks that repeat its first ones (a
 * stored chunk right after a new one). */
static void ingest(bv_store *s, uint64_t base, int big)
{
	uint8_t *buf = malloc(4u << 20);
	bv_ingest *in;
	uint64_t rp;
	bv_commit_opts co = { .make_rp = 1, .label = "v" };

	ET_MUST(s, bv_ingest_begin(s, &in));
	int slot = bv_ingest_add(in, "disk", base, SIZE);
	ET_MUST(s, slot);
	for (int k = 0; k < 12; k++) {
		uint64_t len = big ? (uint64_t)et_range(&rng, 16, 64) * CHUNK :
				     (uint64_t)et_range(&rng, 1, 8) * 8192;
		uint64_t off = et_below(&rng, (SIZE - len) / 512) * 512;
		et_fill(&rng, buf, len);
		/* LZ4 output should shrink: half of each 4 KiB repeats. */
		for (uint64_t o = 0; o + 4096 <= len; o += 4096)
			memcpy(buf + o + 2048, buf + o, 2048);
		if (len >= 4 * CHUNK) {
			memcpy(buf + len - CHUNK, buf, CHUNK);
			memcpy(buf + len - 2 * CHUNK, buf + CHUNK, CHUNK);
		}
		ET_MUST(s, bv_ingest_write(in, slot, off, buf, len));
		if (k % 5 == 4)
			ET_MUST(s, bv_ingest_zero(in, slot, off, CHUNK));
	}
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
	free(buf);
}

/* The largest container file (the one most records are in). */
static char *biggest_container(const char *dir)
{
	char *cdir = et_path(dir, "containers");
	DIR *d = opendir(cdir);
	struct dirent *e;
	char *best = NULL;
	off_t best_size = -1;
	if (!d)
		bail_out("no containers directory");
	while ((e = readdir(d))) {
		struct stat st;
		char *p;
		if (!strstr(e->d_name, ".bvc"))
			continue;
		p = et_path(cdir, e->d_name);
		if (stat(p, &st) == 0 && st.st_size > best_size) {
			free(best);
			best = p;
			best_size = st.st_size;
		} else {
			free(p);
		}
	}
	closedir(d);
	free(cdir);
	if (!best)
		bail_out("no container file");
	return best;
}

/* Reads the byte at OFF of PATH, then writes it back XORed with X. */
static uint8_t poke(const char *path, uint64_t off, uint8_t x)
{
	int fd = open(path, O_RDWR);
	uint8_t b = 0;
	if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1)
		bail_out("cannot read the container");
	uint8_t nb = b ^ x;
	if (pwrite(fd, &nb, 1, (off_t)off) != 1)
		bail_out("cannot write the container");
	close(fd);
	return b;
}

/* Offsets in PATH: the first record's payload, the header of the second
 * record, and a zero byte of padding after a record that is followed by
 * zeros up to a page boundary. */
static void find_spots(const char *path, uint64_t *payload, uint64_t *hdr,
		       uint64_t *pad)
{
	uint8_t *buf = NULL;
	uint64_t len = 0, off = 4096;
	int n = 0;
	*payload = *hdr = *pad = 0;
	if (et_read_file(path, &buf, &len))
		bail_out("cannot read the container");
	while (off + 48 <= len) {
		uint32_t magic, stored;
		memcpy(&magic, buf + off, 4);
		if (magic == 0) {
			/* Padding up to the next page. */
			if (!*pad)
				*pad = off;
			off = (off + 4096) & ~(uint64_t)4095;
			continue;
		}
		memcpy(&stored, buf + off + 12, 4);
		if (n == 0)
			*payload = off + 48 + stored / 2;
		if (n == 1)
			*hdr = off + 8;
		n++;
		off += (48 + (uint64_t)stored + 15) & ~(uint64_t)15;
	}
	free(buf);
}

static void expect_damage(bv_store *s, const char *what)
{
	bv_verify_result r;
	int rc = bv_store_verify(s, &r);
	is_int(rc, BV_ECORRUPT, "%s: verify reports damage", what);
	ok(r.problems >= 1, "%s: %llu problem(s) counted", what,
	   (unsigned long long)r.problems);
	ok(strstr(bv_store_error(s), "container") != NULL ||
	   strstr(bv_store_error(s), "chunk") != NULL,
	   "%s: the message names the object: %s", what, bv_store_error(s));
	bv_verify_result r2;
	is_int(bv_store_verify(s, &r2), BV_ECORRUPT,
	       "%s: verify changed nothing (a second one finds it again)",
	       what);
	is_int((long long)r2.problems, (long long)r.problems,
	       "%s: the same count", what);
}

/* bv_reader_digests of every chunk of disk@RP against its export. */
static void check_digests(bv_store *s, uint64_t rp)
{
	bv_reader *r;
	ET_MUST(s, bv_reader_open(s, "disk", rp, &r));
	uint64_t n = (bv_reader_size(r) + CHUNK - 1) / CHUNK;
	uint8_t *kinds = malloc(n), (*d)[16] = malloc(n * 16);
	uint8_t *buf = malloc(CHUNK);
	int same = 1, zeros = 0, known = 0;
	ET_MUST(s, bv_reader_digests(r, 0, n, kinds, d));
	for (uint64_t i = 0; i < n; i++) {
		memset(buf, 0, CHUNK);
		uint64_t len = bv_reader_size(r) - i * CHUNK;
		ET_MUST(s, bv_reader_pread(r, buf, len < CHUNK ? len : CHUNK,
					   i * CHUNK));
		int allz = 1;
		for (uint32_t k = 0; k < CHUNK && allz; k++)
			allz = buf[k] == 0;
		if (kinds[i] == BV_DIGEST_ZERO) {
			zeros++;
			same &= allz;
			continue;
		}
		known += kinds[i] == BV_DIGEST_KNOWN;
		XXH128_hash_t h = XXH3_128bits(buf, CHUNK);
		uint8_t want[16];
		for (int k = 0; k < 8; k++) {
			want[k] = (uint8_t)(h.low64 >> (8 * k));
			want[8 + k] = (uint8_t)(h.high64 >> (8 * k));
		}
		same &= kinds[i] == BV_DIGEST_KNOWN && !memcmp(want, d[i], 16);
	}
	ok(same && zeros > 0 && known > 0, "RP %llu: %d zero and %d data "
	   "chunks, each digest equals XXH3-128 of the exported chunk",
	   (unsigned long long)rp, zeros, known);
	is_int(bv_reader_digests(r, n, 1, kinds, d), BV_ERANGE,
	       "digests past the last chunk are refused");
	bv_reader_close(r);
	free(kinds);
	free(d);
	free(buf);
}

/* The store's RocksDB index, opened by hand: CF handles in the order
 * of the store's column families (storage/kv.c). */
enum { CF_META = 1, CF_CHUNKS = 2, CF_MAPS = 3, CF_BIRTHS = 4, CF_N = 5 };
struct raw {
	rocksdb_t *db;
	rocksdb_options_t *o;
	rocksdb_column_family_handle_t *cf[CF_N];
};

static void raw_open(struct raw *k, const char *store)
{
	const char *names[CF_N] = { "default", "meta", "chunks", "maps",
				    "births" };
	const rocksdb_options_t *opts[CF_N];
	char *path = et_path(store, "index"), *err = NULL;
	k->o = rocksdb_options_create();
	for (int i = 0; i < CF_N; i++)
		opts[i] = k->o;
	k->db = rocksdb_open_column_families(k->o, path, CF_N, names, opts,
					     k->cf, &err);
	if (err) {
		diag("rocksdb open %s: %s", path, err);
		bail_out("cannot open the index by hand");
	}
	free(path);
}

static void raw_close(struct raw *k)
{
	for (int i = 0; i < CF_N; i++)
		rocksdb_column_family_handle_destroy(k->cf[i]);
	rocksdb_close(k->db);
	rocksdb_options_destroy(k->o);
}

static void raw_put(struct raw *k, int cf, const void *key, size_t kl,
		    const void *val, size_t vl)
{
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	char *err = NULL;
	rocksdb_put_cf(k->db, wo, k->cf[cf], key, kl, val, vl, &err);
	rocksdb_writeoptions_destroy(wo);
	if (err) {
		diag("rocksdb put: %s", err);
		bail_out("cannot write the index by hand");
	}
}

/* Counts the values of CF by length (lens[l] for l < 64), and copies the
 * first entry whose value is WANT bytes into KEY/VAL. */
static void raw_scan(struct raw *k, int cf, uint64_t lens[64], size_t want,
		     uint8_t key[64], size_t *kl, uint8_t val[64])
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(k->db, ro,
							    k->cf[cf]);
	int got = 0;
	memset(lens, 0, 64 * sizeof *lens);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t l, vl;
		const char *kp = rocksdb_iter_key(it, &l);
		const char *vp = rocksdb_iter_value(it, &vl);
		lens[vl < 64 ? vl : 63]++;
		if (!got && vl == want && l <= 64) {
			memcpy(key, kp, l);
			memcpy(val, vp, vl);
			*kl = l;
			got = 1;
		}
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (!got) {
		diag("no value of %zu bytes in column family %d", want, cf);
		bail_out("nothing to change");
	}
}

/* Flips byte AT of the first value of WANT bytes in CF (again: back). */
static void raw_flip(const char *store, int cf, size_t want, size_t at)
{
	struct raw k;
	uint64_t lens[64];
	uint8_t key[64], val[64];
	size_t kl;
	raw_open(&k, store);
	raw_scan(&k, cf, lens, want, key, &kl, val);
	val[at] ^= 0x10;
	raw_put(&k, cf, key, kl, val, want);
	raw_close(&k);
}

static void expect_message(const char *store, const char *what,
			   const char *says)
{
	bv_store *s = et_open(store);
	bv_verify_result r;
	is_int(bv_store_verify(s, &r), BV_ECORRUPT, "%s: verify reports "
	       "damage", what);
	ok(strstr(bv_store_error(s), says) != NULL, "%s: %s",
	   what, bv_store_error(s));
	bv_store_close(s);
	s = et_open(store);
	is_int(bv_store_verify(s, &r), BV_ECORRUPT, "%s: and changed "
	       "nothing", what);
	bv_store_close(s);
}

/* The store format in STORE's marker file and config record. */
static void set_format(const char *store, int marker, uint32_t config)
{
	char *m = et_path(store, "bvault.store"), line[32];
	snprintf(line, sizeof line, "bvault-store %d\n", marker);
	et_write_file(m, line, strlen(line));
	free(m);

	struct raw k;
	char *err = NULL;
	size_t vl;
	raw_open(&k, store);
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	char *v = rocksdb_get_cf(k.db, ro, k.cf[CF_META], "config", 6, &vl,
				 &err);
	rocksdb_readoptions_destroy(ro);
	if (err || !v || vl < 4)
		bail_out("no config record");
	for (int i = 0; i < 4; i++)
		v[i] = (char)(config >> (8 * i));
	raw_put(&k, CF_META, "config", 6, v, vl);
	rocksdb_free(v);
	raw_close(&k);
}

/* Map entries of a format 2 store keep digests; verify catches a wrong
 * one, in a map entry and in the chunk index. */
static void digests_kept(const char *store)
{
	struct raw k;
	uint64_t lens[64];
	uint8_t key[64], val[64];
	size_t kl;

	raw_open(&k, store);
	raw_scan(&k, CF_MAPS, lens, 32, key, &kl, val);
	raw_close(&k);
	ok(lens[32] > 0 && lens[16] == 0 && lens[0] > 0, "format 2: each "
	   "map entry of data keeps its digest (%llu of 32 bytes, %llu of "
	   "16, %llu zero)", (unsigned long long)lens[32],
	   (unsigned long long)lens[16], (unsigned long long)lens[0]);

	raw_flip(store, CF_MAPS, 32, 20);
	expect_message(store, "a wrong digest in a map entry",
		       "keeps a digest that is not the chunk's");
	raw_flip(store, CF_MAPS, 32, 20);
	raw_flip(store, CF_CHUNKS, 40, 30);
	expect_message(store, "a wrong digest in the chunk index",
		       "plain digest its index entry keeps is not its bytes'");
	raw_flip(store, CF_CHUNKS, 40, 30);
	bv_store *s = et_open(store);
	bv_verify_result r;
	is_int(bv_store_verify(s, &r), 0, "both put back: intact");
	bv_store_close(s);
}

/* A format 1 store: read, and written as format 1. */
static void format1(const char *dir)
{
	char *store = et_path(dir, "f1");
	struct raw k;
	uint64_t lens[64];
	uint8_t key[64], val[64];
	size_t kl;
	bv_verify_result r;

	et_init(store, CHUNK);
	set_format(store, 1, 1);
	bv_store *s = et_open(store);
	ingest(s, 0, 1);
	ingest(s, 1, 0);
	is_int(bv_store_verify(s, &r), 0, "format 1: ingests, and verifies "
	       "(%s)", bv_store_error(s));
	check_digests(s, 2);
	bv_store_close(s);
	raw_open(&k, store);
	raw_scan(&k, CF_MAPS, lens, 16, key, &kl, val);
	raw_close(&k);
	ok(lens[16] > 0 && lens[32] == 0, "format 1: map entries keep no "
	   "digest (%llu of 16 bytes, %llu of 32)",
	   (unsigned long long)lens[16], (unsigned long long)lens[32]);

	static const struct { int marker; uint32_t config; const char *says;
	} bad[] = { { 3, 1, "format 3" }, { 2, 3, "index format 3" } };
	for (int i = 0; i < 2; i++) {
		set_format(store, bad[i].marker, bad[i].config);
		s = NULL;
		is_int(bv_store_open(store, NULL, &s), BV_EFORMAT, "marker "
		       "format %d, index format %u: refused", bad[i].marker,
		       bad[i].config);
		ok(s && strstr(bv_store_error(s), bad[i].says), "the message "
		   "says so: %s", s ? bv_store_error(s) : "(no handle)");
		bv_store_close(s);
	}
	set_format(store, 1, 1);
	s = et_open(store);
	is_int(bv_store_verify(s, &r), 0, "format 1 again: the refused opens "
	       "changed nothing");
	bv_store_close(s);
	free(store);
}

int main(void)
{
	char *dir = et_tmpdir("verify");
	char *store = et_path(dir, "store");
	bv_verify_result r;
	uint64_t payload, hdr, pad;

	rng.s = et_seed(4242);
	et_init(store, CHUNK);
	bv_store *s = et_open(store);

	is_int(bv_store_verify(s, &r), 0, "an empty store verifies");
	ingest(s, 0, 1);
	ingest(s, 1, 0);
	ingest(s, 2, 1);
	is_int(bv_store_verify(s, &r), 0, "after three ingests: intact (%s)",
	       bv_store_error(s));
	ok(r.containers >= 1 && r.chunks > 0 && r.records >= r.chunks &&
	   r.map_entries > 0, "it read %llu containers, %llu records, %llu "
	   "chunks, %llu map entries", (unsigned long long)r.containers,
	   (unsigned long long)r.records, (unsigned long long)r.chunks,
	   (unsigned long long)r.map_entries);
	is_int((long long)r.problems, 0, "no problems");
	check_digests(s, 1);
	check_digests(s, 3);
	bv_store_close(s);

	char *c = biggest_container(store);
	find_spots(c, &payload, &hdr, &pad);
	ok(payload && hdr && pad, "found a payload, a header and padding in "
	   "%s", c);

	s = et_open(store);
	uint8_t was = poke(c, payload, 0x5a);
	expect_damage(s, "a flipped payload byte");
	poke(c, payload, 0x5a);
	(void)was;
	is_int(bv_store_verify(s, &r), 0, "put back: intact again");

	poke(c, hdr, 0x01);
	expect_damage(s, "a flipped header byte");
	poke(c, hdr, 0x01);

	poke(c, pad, 0x80);
	expect_damage(s, "a nonzero byte in padding");
	poke(c, pad, 0x80);
	is_int(bv_store_verify(s, &r), 0, "all put back: intact");

	bv_store_close(s);
	free(c);
	digests_kept(store);
	format1(dir);
	free(store);
	et_tmpdir_done(dir);
	return done_testing();
}
