/*
 * engine-heal: chunks marked bad (INVARIANTS.md 13). Two replicas share
 * a chunk; a byte of its record is flipped in the container file. Then:
 *  - a read-only verify finds it, names it and every REPLICA@RP range
 *    that needs it (exact), and marks nothing (it says why);
 *  - a writable verify marks it (one mark; stats count it), and a second
 *    one marks nothing new; a mark is refused when the chunk index entry
 *    no longer names the record verify read (a heal moved it);
 *  - every read of a range that needs it fails naming the chunk (hex),
 *    the container, the offset and the REPLICA@RP range; export too;
 *    ranges that do not need it read bit for bit;
 *  - bv_reader_digests gives its digest as unknown (the agent resends);
 *  - dedup never reuses it: an ingest of its bytes writes a fresh record
 *    (the container files grow by it, the chunk count does not), the
 *    chunk index points there and the mark is gone: every RP that needed
 *    it exports bit for bit again, the digests are known, and verify
 *    finds the store intact (the damaged old record is garbage).
 * Also verify on a thread beside an ingest of this process finds nothing
 * and marks nothing, and a mark put straight into the index is seen by the
 * next open.
 */
#include <dirent.h>

#include <pthread.h>

#include "etest.h"
#include "internal.h"

#define CHUNK 65536u
#define NCH 32u
#define SIZE (NCH * CHUNK)
#define SHARED 5u   /* chunk of a that b has at B_AT */
#define B_AT 10u

static et_rng rng;

struct found {
	int damaged, needed, other;
	char needed_txt[4][256];
	int nfound;
	uint64_t rp[4], off[4], len[4];
	char rep[4][BV_NAME_MAX + 1];
};

static void collect(void *ud, const bv_verify_report *r)
{
	struct found *f = ud;

	diag("  %d: %s", r->kind, r->message);
	if (r->kind == BV_VERIFY_DAMAGED) {
		f->damaged++;
	} else if (r->kind == BV_VERIFY_NEEDED) {
		if (f->needed < 4) {
			int i = f->needed;
			f->rp[i] = r->rp;
			f->off[i] = r->off;
			f->len[i] = r->len;
			snprintf(f->rep[i], sizeof f->rep[i], "%s", r->replica);
			snprintf(f->needed_txt[i], sizeof f->needed_txt[i], "%s",
				 r->message);
		}
		f->needed++;
	} else {
		f->other++;
	}
}

static int has_range(const struct found *f, const char *rep, uint64_t rp,
		     uint64_t off, uint64_t len)
{
	for (int i = 0; i < f->needed && i < 4; i++)
		if (!strcmp(f->rep[i], rep) && f->rp[i] == rp &&
		    f->off[i] == off && f->len[i] == len)
			return 1;
	return 0;
}

static void write_version(bv_store *s, const char *name, uint64_t base,
			  const uint8_t *img, uint64_t off, uint64_t len)
{
	bv_commit_opts co = { .make_rp = 1 };
	bv_ingest *in;
	uint64_t rp;

	ET_MUST(s, bv_ingest_begin(s, &in));
	int slot = bv_ingest_add(in, name, base, SIZE);
	ET_MUST(s, slot);
	ET_MUST(s, bv_ingest_write(in, slot, off, img + off, len));
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
}

/* Flips one byte inside the copy of CHUNK bytes of DATA in the
 * container files (random data is stored raw: its bytes are there). */
static int flip_in_containers(const char *store, const uint8_t *data)
{
	char *dir = et_path(store, "containers");
	DIR *d = opendir(dir);
	struct dirent *e;
	int flipped = 0;

	while (d && (e = readdir(d)) && !flipped) {
		char *p = et_path(dir, e->d_name);
		uint8_t *buf = NULL;
		uint64_t len = 0;
		if (strstr(e->d_name, ".bvc") && et_read_file(p, &buf, &len) == 0) {
			uint8_t *at = memmem(buf, len, data, CHUNK);
			if (at) {
				int fd = open(p, O_WRONLY);
				uint8_t b = (uint8_t)(at[1000] ^ 0x40);
				flipped = fd >= 0 &&
					  pwrite(fd, &b, 1, at - buf + 1000) == 1;
				if (fd >= 0)
					close(fd);
			}
		}
		free(buf);
		free(p);
	}
	if (d)
		closedir(d);
	free(dir);
	return flipped;
}

static bv_store *open_ro(const char *dir)
{
	bv_open_opts o = { .read_only = 1 };
	bv_store *s = NULL;
	if (bv_store_open(dir, &o, &s) < 0)
		bail_out("read-only open failed");
	return s;
}

/* Ingests versions of replica "d" while verify runs beside it. */
struct busy {
	bv_store *s;
	int rounds;
	int failed;
};

static void *ingest_loop(void *arg)
{
	struct busy *b = arg;
	uint8_t *buf = malloc(2u << 20);
	et_rng r = { 77 };

	for (int i = 0; i < b->rounds && buf; i++) {
		bv_commit_opts co = { .make_rp = 1 };
		bv_ingest *in;
		uint64_t rp;
		int slot;
		et_fill(&r, buf, 2u << 20);
		if (bv_ingest_begin(b->s, &in) < 0 ||
		    (slot = bv_ingest_add(in, "d", (uint64_t)i, SIZE)) < 0 ||
		    bv_ingest_write(in, slot, (uint64_t)(i % 4) * (2u << 20) %
				    SIZE, buf, 2u << 20) < 0 ||
		    bv_ingest_commit(in, &co, &rp) < 0) {
			b->failed = 1;
			break;
		}
	}
	free(buf);
	return NULL;
}

/* Verify on a thread of the writing process beside an ingest (what
 * bvaultd's admin socket does): no false finding, nothing marked. */
static void beside_ingest(const char *store)
{
	bv_store *s = et_open(store);
	struct busy b = { .s = s, .rounds = 8 };
	bv_verify_opts vo = { .jobs = 2 };
	bv_verify_result res;
	pthread_t th;
	int clean = 1, runs = 0, rc;

	if (pthread_create(&th, NULL, ingest_loop, &b))
		bail_out("pthread_create");
	for (int i = 0; i < 3; i++) {
		rc = bv_store_verify_opts(s, &vo, NULL, NULL, &res);
		runs++;
		if (rc != 0 || res.marked) {
			diag("verify %d beside ingest: %d: %s", i, rc,
			     bv_store_error(s));
			clean = 0;
		}
	}
	pthread_join(th, NULL);
	ok(!b.failed, "8 ingests ran beside verify");
	ok(clean, "%d verifies beside them found nothing and marked nothing",
	   runs);
	rc = bv_store_verify_opts(s, &vo, NULL, NULL, &res);
	ok(rc == 0, "and the store verifies after them");
	bv_store_close(s);
}

int main(void)
{
	char *dir = et_tmpdir("heal");
	char *scratch = et_tmpdir("heal-x");
	char *store = et_path(dir, "s");
	uint8_t *a1 = malloc(SIZE), *a2 = malloc(SIZE), *b1 = calloc(1, SIZE);
	uint8_t *c1 = malloc(SIZE);
	uint8_t kinds[NCH], dig[NCH][16];
	bv_verify_result res;
	bv_stats st, st0;
	struct found f;
	char msg[2048];
	char *xp = et_path(scratch, "x.img");
	int rc;

	rng.s = et_seed(13);
	et_init(store, CHUNK);
	et_fill(&rng, a1, SIZE);
	memcpy(a2, a1, SIZE);
	et_fill(&rng, a2 + 7 * CHUNK, CHUNK);
	memcpy(b1 + B_AT * CHUNK, a1 + SHARED * CHUNK, CHUNK);
	et_fill(&rng, c1, SIZE);

	bv_store *s = et_open(store);
	write_version(s, "a", 0, a1, 0, SIZE);             /* a@1 */
	write_version(s, "a", 1, a2, 7 * CHUNK, CHUNK);    /* a@2 */
	write_version(s, "b", 0, b1, B_AT * CHUNK, CHUNK); /* b@1 */
	write_version(s, "c", 0, c1, 0, SIZE);             /* c@1 */
	ET_MUST(s, bv_stats_get(s, &st0));
	ok(st0.bad_chunks == 0, "a new store has no bad chunk");
	bv_store_close(s);
	ok(flip_in_containers(store, a1 + SHARED * CHUNK),
	   "a byte of the shared chunk's record is flipped in its container");

	/* Read-only: found, named, not marked. */
	s = open_ro(store);
	memset(&f, 0, sizeof f);
	rc = bv_store_verify_opts(s, NULL, collect, &f, &res);
	ok(rc == BV_ECORRUPT && f.damaged == 2 && res.bad_chunks == 1,
	   "read-only verify finds the damaged bytes and the one chunk in "
	   "them (rc %d, %d damaged)", rc, f.damaged);
	ok(f.needed == 3 &&
	   has_range(&f, "a", 1, SHARED * CHUNK, CHUNK) &&
	   has_range(&f, "a", 2, SHARED * CHUNK, CHUNK) &&
	   has_range(&f, "b", 1, B_AT * CHUNK, CHUNK),
	   "it names exactly a@1, a@2 and b@1 with the chunk's ranges (%d)",
	   f.needed);
	ok(strstr(f.needed_txt[0], "chunk ") != NULL,
	   "a needed range names the chunk: %s", f.needed_txt[0]);
	ok(res.marked == 0 && res.unmarked == 1 &&
	   strstr(res.not_marked, "read-only") != NULL,
	   "a read-only verify marks nothing and says why: %s", res.not_marked);
	ET_MUST(s, bv_stats_counters(s, &st));
	ok(st.bad_chunks == 0, "nothing was marked");
	bv_store_close(s);

	/* Writable, but asked not to mark. */
	s = et_open(store);
	bv_verify_opts vo = { .read_only = 1 };
	memset(&f, 0, sizeof f);
	rc = bv_store_verify_opts(s, &vo, collect, &f, &res);
	ok(rc == BV_ECORRUPT && res.marked == 0 && res.unmarked == 1,
	   "verify with read_only on a writable store marks nothing");
	ET_MUST(s, bv_stats_counters(s, &st));
	ok(st.bad_chunks == 0, "still no mark");

	/* --jobs: the same findings with one reader and with four. */
	for (unsigned j = 1; j <= 4; j *= 4) {
		bv_verify_opts jo = { .read_only = 1, .jobs = j };
		memset(&f, 0, sizeof f);
		rc = bv_store_verify_opts(s, &jo, collect, &f, &res);
		ok(rc == BV_ECORRUPT && f.damaged == 2 && f.needed == 3 &&
		   res.chunks == 2 * NCH + 1 && res.records == 2 * NCH,
		   "%u reader%s: the same findings (%" PRIu64 " chunks, %"
		   PRIu64 " records)", j, j == 1 ? "" : "s", res.chunks,
		   res.records);
	}
	/* Scope: only what the RPs named read. */
	{
		bv_verify_scope sc[2] = { { "c", 1 }, { "a", 1 } };
		bv_verify_opts so = { .read_only = 1, .scope = sc, .nscope = 1 };
		memset(&f, 0, sizeof f);
		rc = bv_store_verify_opts(s, &so, collect, &f, &res);
		ok(rc == 0 && f.damaged == 0 && res.chunks == NCH,
		   "scope c@1: intact (%" PRIu64 " chunks read)", res.chunks);
		so.scope = &sc[1];
		memset(&f, 0, sizeof f);
		rc = bv_store_verify_opts(s, &so, collect, &f, &res);
		ok(rc == BV_ECORRUPT && f.needed == 1 &&
		   has_range(&f, "a", 1, SHARED * CHUNK, CHUNK),
		   "scope a@1: the damaged chunk, a@1's range only");
		bv_verify_scope g = { "b", 0 };
		so.scope = &g;
		memset(&f, 0, sizeof f);
		rc = bv_store_verify_opts(s, &so, collect, &f, &res);
		ok(rc == BV_ECORRUPT && f.needed == 1 &&
		   has_range(&f, "b", 1, B_AT * CHUNK, CHUNK),
		   "scope group b (every RP): b@1's range only");
		bv_verify_scope none = { "nosuch", 1 };
		so.scope = &none;
		rc = bv_store_verify_opts(s, &so, collect, &f, &res);
		ok(rc == BV_ENOTFOUND, "scope of a missing replica: refused");
	}

	/* A mark whose record moved is not written. */
	{
		bv_bad_info m = { 0 };
		size_t marked = 9;
		bv_fp_compute(s->secret, a1 + SHARED * CHUNK, CHUNK, &m.fp);
		m.container = 1;
		m.offset = 4096 + 16 * 1000003ull;
		ET_MUST(s, bv_bad_mark(s, &m, 1, &marked));
		ok(marked == 0 && !bv_bad_has(s, &m.fp),
		   "a mark naming a record the index no longer names is not "
		   "written");
	}

	/* Writable: marked. */
	memset(&f, 0, sizeof f);
	rc = bv_store_verify_opts(s, NULL, collect, &f, &res);
	ok(rc == BV_ECORRUPT && res.marked == 1 && res.unmarked == 0,
	   "a writable verify marks the chunk (marked %" PRIu64 ")",
	   res.marked);
	ET_MUST(s, bv_stats_counters(s, &st));
	ok(st.bad_chunks == 1, "stats count one bad chunk");
	memset(&f, 0, sizeof f);
	rc = bv_store_verify_opts(s, NULL, collect, &f, &res);
	ok(rc == BV_ECORRUPT && res.marked == 0 && f.needed == 3,
	   "a second verify marks nothing new and names the same ranges");

	/* Effect (a): reads that need it fail, naming it; others read. */
	{
		bv_reader *r;
		uint8_t *buf = malloc(CHUNK);
		char hex[33];
		bv_fp fp;
		bv_fp_compute(s->secret, a1 + SHARED * CHUNK, CHUNK, &fp);
		bv_fp_hex(&fp, hex);
		ET_MUST(s, bv_reader_open(s, "a", 1, &r));
		rc = bv_reader_pread(r, buf, CHUNK, SHARED * CHUNK);
		snprintf(msg, sizeof msg, "%s", bv_store_error(s));
		ok(rc == BV_ECORRUPT && strstr(msg, hex) &&
		   strstr(msg, "marked bad") && strstr(msg, "00000001.bvc") &&
		   strstr(msg, "a@1 needs it for bytes 327680 to 393216"),
		   "a read of a@1 that needs it fails naming chunk, container, "
		   "offset and range: %s", msg);
		rc = bv_reader_pread(r, buf, CHUNK, (SHARED + 1) * CHUNK);
		ok(rc == 0 && !memcmp(buf, a1 + (SHARED + 1) * CHUNK, CHUNK),
		   "the next chunk of a@1 reads");
		bv_reader_close(r);
		free(buf);
	}
	rc = bv_export(s, "b", 1, xp, NULL, NULL);
	snprintf(msg, sizeof msg, "%s", bv_store_error(s));
	ok(rc == BV_ECORRUPT && strstr(msg, "marked bad") &&
	   strstr(msg, "b@1 needs it for bytes 655360 to 720896"),
	   "export of b@1 fails naming its range: %s", msg);

	/* Effect (c): its digest is unknown; a neighbour's is known. */
	{
		bv_reader *r;
		ET_MUST(s, bv_reader_open(s, "a", 2, &r));
		ET_MUST(s, bv_reader_digests(r, 0, NCH, kinds, dig));
		ok(kinds[SHARED] == BV_DIGEST_UNKNOWN &&
		   kinds[SHARED - 1] == BV_DIGEST_KNOWN,
		   "its digest is unknown, its neighbour's known");
		bv_reader_close(r);
	}
	bv_store_close(s);

	/* The mark is kept: a new open sees it. */
	s = open_ro(store);
	ok(bv_export(s, "a", 2, xp, NULL, NULL) ==
	   BV_ECORRUPT, "a read-only open after the mark refuses it too");
	bv_store_close(s);

	/* Effect (b): the heal. A new version of b sends the chunk again. */
	s = et_open(store);
	ET_MUST(s, bv_stats_get(s, &st0));
	write_version(s, "b", 1, b1, B_AT * CHUNK, CHUNK); /* b@2 */
	ET_MUST(s, bv_stats_get(s, &st));
	ok(st.bad_chunks == 0, "the ingest removed the mark");
	ok(st.chunks == st0.chunks &&
	   st.container_bytes >= st0.container_bytes + CHUNK,
	   "a fresh record was written (%" PRIu64 " -> %" PRIu64
	   " container bytes), not a new chunk", st0.container_bytes,
	   st.container_bytes);
	ok(et_export_eq(s, "a", 1, scratch, a1, SIZE), "a@1 exports again");
	ok(et_export_eq(s, "a", 2, scratch, a2, SIZE), "a@2 exports again");
	ok(et_export_eq(s, "b", 1, scratch, b1, SIZE), "b@1 exports again");
	ok(et_export_eq(s, "b", 2, scratch, b1, SIZE), "b@2 exports");
	ok(et_export_eq(s, "c", 1, scratch, c1, SIZE), "c@1 exports");
	{
		bv_reader *r;
		ET_MUST(s, bv_reader_open(s, "a", 2, &r));
		ET_MUST(s, bv_reader_digests(r, 0, NCH, kinds, dig));
		ok(kinds[SHARED] == BV_DIGEST_KNOWN, "its digest is known again");
		bv_reader_close(r);
	}
	memset(&f, 0, sizeof f);
	rc = bv_store_verify_opts(s, NULL, collect, &f, &res);
	ok(rc == 0 && res.problems == 0 && f.damaged == 0 && f.needed == 0,
	   "verify finds the healed store intact (rc %d)", rc);
	ok(f.other == 1 && res.unknown_bytes > CHUNK,
	   "the old record is reported as garbage, not as damage");
	bv_store_close(s);

	beside_ingest(store);

	/* A mark written with the index layer straight is seen at open:
	 * the healed chunk is refused again. */
	s = et_open(store);
	{
		bv_bad_info m = { 0 };
		uint8_t v[64];
		size_t vl, marked;
		struct bv_chunk_loc loc;
		bv_fp_compute(s->secret, a1 + SHARED * CHUNK, CHUNK, &m.fp);
		ET_MUST(s, bv_kv_get(s->kv, BV_CF_CHUNKS, m.fp.b, 16, v,
				     sizeof v, &vl));
		ET_MUST(s, bv_chunk_loc_decode(v, vl, &loc));
		m.container = loc.container;
		m.offset = loc.offset;
		snprintf(m.reason, sizeof m.reason, "test");
		ET_MUST(s, bv_bad_mark(s, &m, 1, &marked));
		ok(marked == 1, "a mark of the current record is written");
	}
	bv_store_close(s);
	s = open_ro(store);
	rc = bv_export(s, "b", 2, xp, NULL, NULL);
	snprintf(msg, sizeof msg, "%s", bv_store_error(s));
	ok(rc == BV_ECORRUPT && strstr(msg, "(bvault verify, 20"),
	   "the next open loads it, and a read says when it was found: %s",
	   msg);
	ok(et_export_eq(s, "a", 2, scratch, a2, SIZE) == 0,
	   "every RP needing it is refused again");
	bv_store_close(s);

	free(a1);
	free(a2);
	free(b1);
	free(c1);
	free(store);
	free(xp);
	et_tmpdir_done(scratch);
	et_tmpdir_done(dir);
	return done_testing();
}
