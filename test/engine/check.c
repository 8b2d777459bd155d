/*
 * engine-check: bv_store_check_report() (bvault check) on an intact store
 * of two replicas finds nothing; then inconsistencies planted with the
 * index layer straight (bv_kv_put) are each found and named:
 *  - a chunk index entry naming an offset past the end of its file;
 *  - one naming a container that does not exist;
 *  - one naming another chunk's record (the header does not repeat it);
 *  - a map entry above its replica's committed head (no session);
 *  - a map entry naming a chunk the chunk index does not hold;
 * while a map entry of the version an "inflight/" marker names is not a
 * finding, and neither is the store after the plants are taken back.
 * Check reads no payload (a flipped payload byte is not its business:
 * verify's) and changes nothing (the same findings twice).
 */
#include "etest.h"
#include "internal.h"

#define CHUNK 65536u
#define SIZE (16u * CHUNK)

struct seen {
	int n, past, missing, other_rec, above, not_held, unknown;
};

static void collect(void *ud, const bv_verify_report *r)
{
	struct seen *f = ud;

	diag("  %d: %s", r->kind, r->message);
	f->n++;
	if (strstr(r->message, "past the end of the file"))
		f->past++;
	else if (strstr(r->message, "which does not exist"))
		f->missing++;
	else if (strstr(r->message, "is not the one its index entry names"))
		f->other_rec++;
	else if (strstr(r->message, "above its committed head"))
		f->above++;
	else if (strstr(r->message, "which the chunk index does not hold"))
		f->not_held++;
	else if (r->kind == BV_VERIFY_UNKNOWN)
		f->unknown++;
}

static void ingest(bv_store *s, const char *name, const uint8_t *img)
{
	bv_commit_opts co = { .make_rp = 1 };
	bv_ingest *in;
	uint64_t rp;

	ET_MUST(s, bv_ingest_begin(s, &in));
	int slot = bv_ingest_add(in, name, 0, SIZE);
	ET_MUST(s, slot);
	ET_MUST(s, bv_ingest_write(in, slot, 0, img, SIZE));
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
}

static int run_check(const char *store, struct seen *f, bv_check_result *res)
{
	bv_open_opts o = { .read_only = 1 };
	bv_store *s = NULL;
	int rc;

	if (bv_store_open(store, &o, &s) < 0)
		bail_out("read-only open failed");
	memset(f, 0, sizeof *f);
	rc = bv_store_check_report(s, collect, f, res);
	bv_store_close(s);
	return rc;
}

/* The chunk index entry of the chunk of BUF (CHUNK bytes). */
static void entry_of(bv_store *s, const uint8_t *buf, bv_fp *fp,
		     uint8_t *v, size_t *vl)
{
	bv_fp_compute(s->secret, buf, CHUNK, fp);
	ET_MUST(s, bv_kv_get(s->kv, BV_CF_CHUNKS, fp->b, 16, v, 64, vl));
}

static void put_loc(bv_store *s, const bv_fp *fp, uint8_t *v, size_t vl,
		    const struct bv_chunk_loc *loc)
{
	bv_chunk_loc_encode(loc, v);
	ET_MUST(s, bv_kv_put(s->kv, BV_CF_CHUNKS, fp->b, 16, v, vl, 1));
}

int main(void)
{
	char *dir = et_tmpdir("check");
	char *store = et_path(dir, "s");
	uint8_t *a = malloc(SIZE), *b = malloc(SIZE);
	uint8_t v[3][64], key[BV_MAP_KEY], mval[16], orig[64];
	size_t vl[3], olen;
	bv_fp fp[3];
	struct bv_chunk_loc loc[3], bad;
	struct bv_rrec rr;
	bv_check_result res;
	struct seen f;
	et_rng rng = { et_seed(21) };
	int rc;

	et_init(store, CHUNK);
	et_fill(&rng, a, SIZE);
	et_fill(&rng, b, SIZE);
	bv_store *s = et_open(store);
	ingest(s, "a", a);
	ingest(s, "b", b);
	bv_store_close(s);

	rc = run_check(store, &f, &res);
	ok(rc == 0 && res.problems == 0 && f.n == 0 && res.chunks == 32 &&
	   res.map_entries == 32 && res.containers >= 1,
	   "an intact store is consistent (%" PRIu64 " entries, %" PRIu64
	   " map entries)", res.chunks, res.map_entries);

	/* A flipped payload byte: check reads no payload. */
	{
		char *c = et_path(store, "containers/00000001.bvc");
		int fd = open(c, O_RDWR);
		uint8_t x;
		ok(fd >= 0 && pread(fd, &x, 1, 4096 + 48 + 100) == 1 &&
		   (x ^= 1, pwrite(fd, &x, 1, 4096 + 48 + 100) == 1),
		   "a payload byte of the first record is flipped");
		rc = run_check(store, &f, &res);
		ok(rc == 0 && f.n == 0, "check does not read payloads: "
		   "consistent still");
		x ^= 1;
		ok(pwrite(fd, &x, 1, 4096 + 48 + 100) == 1, "put back");
		close(fd);
		free(c);
	}

	s = et_open(store);
	for (int i = 0; i < 3; i++) {
		entry_of(s, a + (size_t)i * CHUNK, &fp[i], v[i], &vl[i]);
		ET_MUST(s, bv_chunk_loc_decode(v[i], vl[i], &loc[i]));
	}
	bad = loc[0];
	bad.offset = 1ull << 40; /* far past the end of the file */
	put_loc(s, &fp[0], v[0], vl[0], &bad);
	bad = loc[1];
	bad.container = 99;
	put_loc(s, &fp[1], v[1], vl[1], &bad);
	bad = loc[2];
	bad.offset = loc[0].offset; /* chunk 0's record */
	put_loc(s, &fp[2], v[2], vl[2], &bad);
	ET_MUST(s, bv_rrec_get(s, "a", &rr));
	/* Above the head, no session: a stray entry. */
	bv_key_map(key, rr.rid, 3, rr.head + 5);
	ET_MUST(s, bv_kv_put(s->kv, BV_CF_MAPS, key, sizeof key, fp[0].b, 16,
			     1));
	/* At the head, naming a chunk the index does not hold. */
	memset(mval, 0x5a, sizeof mval);
	bv_key_map(key, rr.rid, 15, rr.head);
	ET_MUST(s, bv_kv_get(s->kv, BV_CF_MAPS, key, sizeof key, orig,
			     sizeof orig, &olen));
	ET_MUST(s, bv_kv_put(s->kv, BV_CF_MAPS, key, sizeof key, mval, 16, 1));
	bv_store_close(s);

	rc = run_check(store, &f, &res);
	ok(rc == BV_ECORRUPT && res.problems == 5,
	   "five inconsistencies found (rc %d, %" PRIu64 ")", rc,
	   res.problems);
	ok(f.past == 1, "an entry past the end of its file");
	ok(f.missing == 1, "an entry naming a missing container");
	ok(f.other_rec == 1, "an entry naming another chunk's record");
	ok(f.above == 1, "a map entry above the head");
	ok(f.not_held == 1, "a map entry naming a chunk the index lacks");
	struct seen f2;
	bv_check_result res2;
	rc = run_check(store, &f2, &res2);
	ok(rc == BV_ECORRUPT && res2.problems == res.problems && f2.n == f.n,
	   "check changed nothing: the same findings again");

	/* A session's version above the head is not a finding. */
	s = et_open(store);
	for (int i = 0; i < 3; i++)
		put_loc(s, &fp[i], v[i], vl[i], &loc[i]);
	bv_key_map(key, rr.rid, 15, rr.head);
	ET_MUST(s, bv_kv_put(s->kv, BV_CF_MAPS, key, sizeof key, orig, olen,
			     1));
	{
		struct bv_kv_batch *kb;
		ET_MUST(s, bv_kv_batch_new(&kb));
		bv_key_map(key, rr.rid, 3, rr.head + 5);
		bv_kv_batch_delete(kb, BV_CF_MAPS, key, sizeof key);
		ET_MUST(s, bv_kv_write(s->kv, kb, 1));
		bv_kv_batch_free(kb);
	}
	{
		uint8_t ik[32], iv[8];
		size_t kl = bv_key_id(ik, "inflight/", rr.rid);
		bv_le64(iv, rr.head + 1);
		ET_MUST(s, bv_kv_put(s->kv, BV_CF_META, ik, kl, iv, 8, 1));
		bv_key_map(key, rr.rid, 2, rr.head + 1);
		ET_MUST(s, bv_kv_put(s->kv, BV_CF_MAPS, key, sizeof key,
				     fp[1].b, 16, 1));
	}
	bv_store_close(s);
	rc = run_check(store, &f, &res);
	ok(rc == 0 && f.n == 0,
	   "taken back, and with an in-flight version: consistent (rc %d)",
	   rc);

	free(a);
	free(b);
	free(store);
	et_tmpdir_done(dir);
	return done_testing();
}
