/*
 * engine-api: the contracts of bvault.h, one by one.
 *
 * Errors: each bad call returns the documented code, leaves a message
 * that names the object, and changes nothing: after every failure every
 * replica's head and every RP is exported and compared with the model.
 * Then the things that need more than one replica or store: group
 * commits, reader isolation, bv_diff into a second store, stats, and
 * bv_reader_extent.
 */
#include <dirent.h>

#include "etest.h"

#define MAXREP 8
#define MAXRP 16

typedef struct rep {
	char name[BV_NAME_MAX + 1];
	uint64_t size;
	uint8_t *head;
	uint64_t rp[MAXRP]; /* RP numbers of its group that it was in */
	uint64_t rpsize[MAXRP];
	uint8_t *rpimg[MAXRP];
	int nrp;
} rep;

typedef struct world {
	bv_store *s;
	const char *scratch;
	rep r[MAXREP];
	int n;
} world;

static et_rng rng;

static rep *find(world *w, const char *name)
{
	for (int i = 0; i < w->n; i++)
		if (!strcmp(w->r[i].name, name))
			return &w->r[i];
	return NULL;
}

static rep *add_rep(world *w, const char *name, uint64_t size)
{
	rep *m = &w->r[w->n++];
	memset(m, 0, sizeof *m);
	snprintf(m->name, sizeof m->name, "%s", name);
	m->size = size;
	m->head = calloc(1, size ? size : 1);
	if (!m->head)
		bail_out("out of memory");
	return m;
}

static void note_rp(rep *m, uint64_t number)
{
	if (m->nrp == MAXRP)
		bail_out("too many RPs for the test model");
	m->rp[m->nrp] = number;
	m->rpsize[m->nrp] = m->size;
	m->rpimg[m->nrp] = malloc(m->size ? m->size : 1);
	if (!m->rpimg[m->nrp])
		bail_out("out of memory");
	memcpy(m->rpimg[m->nrp], m->head, m->size);
	m->nrp++;
}

static uint64_t latest(const rep *m)
{
	return m->nrp ? m->rp[m->nrp - 1] : 0;
}

/* Every head and every RP of every replica in W still reads as the
 * model says. */
static int same_as_before(world *w)
{
	int good = 1;
	for (int i = 0; i < w->n; i++) {
		rep *m = &w->r[i];
		if (!et_export_eq(w->s, m->name, 0, w->scratch, m->head,
				  m->size))
			good = 0;
		for (int j = 0; j < m->nrp; j++)
			if (!et_export_eq(w->s, m->name, m->rp[j], w->scratch,
					  m->rpimg[j], m->rpsize[j]))
				good = 0;
	}
	return good;
}

/* A session on the one replica M: NW random writes, committed, with an
 * RP if MAKE_RP. CREATE_SIZE as for bv_ingest_add. */
static void ingest_random(world *w, rep *m, int nw, int make_rp,
			  uint64_t create_size, uint64_t max_sectors)
{
	bv_ingest *in;
	int slot;
	uint64_t rp = 0;
	bv_commit_opts co = { .make_rp = make_rp };
	uint8_t *buf = malloc(256 << 10);

	ET_MUST(w->s, bv_ingest_begin(w->s, &in));
	slot = bv_ingest_add(in, m->name, latest(m), create_size);
	ET_MUST(w->s, slot);
	for (int i = 0; i < nw; i++) {
		uint64_t off = et_below(&rng, m->size / 512) * 512;
		uint64_t len = et_range(&rng, 1, max_sectors) * 512;
		if (len > m->size - off)
			len = m->size - off;
		et_fill(&rng, buf, len);
		ET_MUST(w->s, bv_ingest_write(in, slot, off, buf, len));
		memcpy(m->head + off, buf, len);
	}
	ET_MUST(w->s, bv_ingest_commit(in, &co, &rp));
	if (make_rp)
		note_rp(m, rp);
	free(buf);
}

static int has(const char *msg, const char *what)
{
	return msg && strstr(msg, what) != NULL;
}

/* ---- store init and open -------------------------------------------- */

static void test_init_open(const char *dir)
{
	char err[512] = "";
	char *st = et_path(dir, "s-init");
	char *notstore = et_path(dir, "not-a-store");
	char *empty = et_path(dir, "empty");
	char *file = et_path(dir, "plain-file");
	char *missing = et_path(dir, "missing");
	char *junk;
	bv_init_opts bad = { .chunk_size = 5000 };
	bv_store *s = NULL;
	int rc;

	is_int(bv_store_init(st, NULL, err, sizeof err), 0, "init a new store");
	err[0] = 0;
	rc = bv_store_init(st, NULL, err, sizeof err);
	is_int(rc, BV_EEXIST, "init twice: BV_EEXIST");
	ok(err[0] != 0, "init twice has a message: %s", err);

	mkdir(notstore, 0755);
	junk = et_path(notstore, "junk");
	et_write_file(junk, "hello", 5);
	is_int(bv_store_init(notstore, NULL, err, sizeof err), BV_EEXIST,
	       "init into a directory that holds a file: BV_EEXIST");

	rc = bv_store_open(notstore, NULL, &s);
	is_int(rc, BV_ENOTSTORE, "open a directory that is not a store");
	ok(s && has(bv_store_error(s), notstore),
	   "the message names the path: %s", s ? bv_store_error(s) : "(no handle)");
	bv_store_close(s);
	s = NULL;

	mkdir(empty, 0755);
	rc = bv_store_open(empty, NULL, &s);
	is_int(rc, BV_ENOTSTORE, "open an empty directory");
	ok(s && has(bv_store_error(s), empty), "the message names the path: %s",
	   s ? bv_store_error(s) : "(no handle)");
	bv_store_close(s);
	s = NULL;
	{
		DIR *dp = opendir(empty);
		int entries = 0;
		struct dirent *de;
		while (dp && (de = readdir(dp)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				entries++;
		if (dp)
			closedir(dp);
		ok(dp && entries == 0,
		   "a failed open leaves the empty directory empty (%d entries)",
		   entries);
	}

	et_write_file(file, "not a store", 11);
	rc = bv_store_open(file, NULL, &s);
	is_int(rc, BV_ENOTSTORE, "open a regular file");
	ok(s && has(bv_store_error(s), file), "the message names the path: %s",
	   s ? bv_store_error(s) : "(no handle)");
	bv_store_close(s);
	s = NULL;

	rc = bv_store_open(missing, NULL, &s);
	ok(rc == BV_ENOTSTORE || rc == BV_ENOTFOUND || rc == -ENOENT,
	   "open a missing path fails (%d %s)", rc, bv_strerror(rc));
	bv_store_close(s);
	s = NULL;
	{
		struct stat sb;
		ok(stat(missing, &sb) < 0, "opening a missing path creates nothing");
	}

	rc = bv_store_init(missing, &bad, err, sizeof err);
	is_int(rc, BV_EINVAL, "init with chunk size 5000: BV_EINVAL");
	ok(has(err, "5000") || err[0], "with a message: %s", err);
	bad.chunk_size = 2048;
	is_int(bv_store_init(missing, &bad, err, sizeof err), BV_EINVAL,
	       "init with chunk size 2048: BV_EINVAL");
	bad.chunk_size = 8u << 20;
	is_int(bv_store_init(missing, &bad, err, sizeof err), BV_EINVAL,
	       "init with chunk size 8 MiB: BV_EINVAL");
	{
		struct stat sb;
		ok(stat(missing, &sb) < 0 ||
			   (S_ISDIR(sb.st_mode) && rmdir(missing) == 0),
		   "a refused init leaves no store behind");
	}
	ok(bv_strerror(BV_EBASE) && *bv_strerror(BV_EBASE) &&
		   strcmp(bv_strerror(BV_EBASE), bv_strerror(BV_EEXIST)),
	   "bv_strerror names engine codes: %s", bv_strerror(BV_EBASE));
	ok(bv_strerror(-ENOSPC) && *bv_strerror(-ENOSPC),
	   "bv_strerror names -errno: %s", bv_strerror(-ENOSPC));
	ok(bv_version() && *bv_version(), "bv_version: %s", bv_version());

	free(junk);
	free(st);
	free(notstore);
	free(empty);
	free(file);
	free(missing);
}

/* ---- argument and state errors -------------------------------------- */

static void test_errors(world *w)
{
	bv_store *s = w->s;
	bv_ingest *in = NULL, *in2 = NULL;
	rep *a = find(w, "a"), *b = find(w, "b");
	uint8_t buf[4096];
	int slot, rc;
	char name64[BV_NAME_MAX + 2], name63[BV_NAME_MAX + 1];

	memset(buf, 0x5a, sizeof buf);

	/* Wrong base RP: the message names replica and both RPs. */
	ET_MUST(s, bv_ingest_begin(s, &in));
	rc = bv_ingest_add(in, "a", 17, 0);
	is_int(rc, BV_EBASE, "add with base RP 17 while latest is %" PRIu64,
	       latest(a));
	{
		char l[32];
		snprintf(l, sizeof l, "%" PRIu64, latest(a));
		ok(has(bv_store_error(s), "a") && has(bv_store_error(s), "17") &&
			   has(bv_store_error(s), l),
		   "the message names replica and both RPs: %s",
		   bv_store_error(s));
	}
	bv_ingest_abort(in);
	ok(same_as_before(w), "after BV_EBASE nothing changed");

	ET_MUST(s, bv_ingest_begin(s, &in));
	is_int(bv_ingest_add(in, "a", latest(a) - 1, 0), BV_EBASE,
	       "add with an older base RP: BV_EBASE");
	bv_ingest_abort(in);
	ET_MUST(s, bv_ingest_begin(s, &in));
	is_int(bv_ingest_add(in, "b", 0, 0), BV_EBASE,
	       "add with base 0 to a replica that has an RP: BV_EBASE");
	bv_ingest_abort(in);

	ET_MUST(s, bv_ingest_begin(s, &in));
	rc = bv_ingest_add(in, "nosuch", 0, 0);
	is_int(rc, BV_ENOTFOUND, "add an unknown replica without a size");
	ok(has(bv_store_error(s), "nosuch"), "the message names it: %s",
	   bv_store_error(s));
	bv_ingest_abort(in);
	ok(same_as_before(w), "after BV_ENOTFOUND nothing changed");
	{
		bv_replica_info ri;
		is_int(bv_replica_info_get(s, "nosuch", &ri), BV_ENOTFOUND,
		       "and it was not created");
	}

	/* Extents out of range, unaligned, overflowing: each in a fresh
	 * session, aborted. */
	struct {
		int kind; /* 0 write, 1 zero, 2 resize */
		uint64_t off, len;
		int want;
		const char *what;
	} bad[] = {
		{ 0, 0, 0, BV_ERANGE, "write at the disk end" },
		{ 0, 512, 1024, BV_ERANGE, "write across the disk end" },
		{ 1, 512, 1024, BV_ERANGE, "zero across the disk end" },
		{ 0, 100, 512, BV_EALIGN, "write at an unaligned offset" },
		{ 0, 0, 100, BV_EALIGN, "write of an unaligned length" },
		{ 1, 1000, 512, BV_EALIGN, "zero at an unaligned offset" },
		{ 2, 1000, 0, BV_EALIGN, "resize to an unaligned size" },
		{ 1, UINT64_MAX - 511, 1024, BV_ERANGE,
		  "zero whose end overflows 64 bits" },
		{ 1, 512, UINT64_MAX - 511, BV_ERANGE,
		  "zero whose length overflows 64 bits" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t off = bad[i].off;
		/* Offsets 0 and 512 above count back from the disk end. */
		if (bad[i].want == BV_ERANGE && off <= 512 && bad[i].len <= 1024)
			off = a->size - off;
		ET_MUST(s, bv_ingest_begin(s, &in));
		slot = bv_ingest_add(in, "a", latest(a), 0);
		ET_MUST(s, slot);
		if (bad[i].kind == 0)
			rc = bv_ingest_write(in, slot, off, buf,
					     bad[i].len ? bad[i].len : 512);
		else if (bad[i].kind == 1)
			rc = bv_ingest_zero(in, slot, off, bad[i].len);
		else
			rc = bv_ingest_resize(in, slot, a->size + off);
		is_int(rc, bad[i].want, "%s (off %" PRIu64 ")", bad[i].what, off);
		ok(rc >= 0 || bv_store_error(s)[0], "message: %s",
		   bv_store_error(s));
		bv_ingest_abort(in);
	}
	ok(same_as_before(w), "after the bad extents nothing changed");

	/* A bad write in the middle of a session: either the session still
	 * commits what was good, or the commit is refused; never a mix. */
	{
		uint8_t good[8192];
		uint64_t rp = 0;
		bv_commit_opts co = { .make_rp = 1 };
		et_fill(&rng, good, sizeof good);
		ET_MUST(s, bv_ingest_begin(s, &in));
		slot = bv_ingest_add(in, "a", latest(a), 0);
		ET_MUST(s, slot);
		ET_MUST(s, bv_ingest_write(in, slot, 4096, good, sizeof good));
		rc = bv_ingest_write(in, slot, a->size, buf, 512);
		is_int(rc, BV_ERANGE, "bad write after a good one");
		rc = bv_ingest_commit(in, &co, &rp);
		if (rc == 0) {
			memcpy(a->head + 4096, good, sizeof good);
			note_rp(a, rp);
		}
		diag("commit after a refused write: %d %s", rc, bv_strerror(rc));
		ok(same_as_before(w), "then every RP is the good data or as before");
	}

	/* Names and chunk sizes. */
	memset(name64, 'x', BV_NAME_MAX + 1);
	name64[BV_NAME_MAX + 1] = 0;
	memset(name63, 'y', BV_NAME_MAX);
	name63[BV_NAME_MAX] = 0;
	const char *bad_names[] = { "", "bad/name", "sp ace", "tab\there",
				    name64, "new\nline", "ümlaut" };
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
		is_int(bv_replica_create(s, bad_names[i], 1 << 20, 0),
		       BV_EINVAL, "bad replica name %zu (%zu bytes) refused", i,
		       strlen(bad_names[i]));
	is_int(bv_replica_create(s, NULL, 1 << 20, 0), BV_EINVAL,
	       "NULL replica name refused");
	ET_MUST(s, bv_ingest_begin(s, &in));
	is_int(bv_ingest_add(in, "a/b", 0, 1 << 20), BV_EINVAL,
	       "bad name through bv_ingest_add with a create size");
	bv_ingest_abort(in);
	is_int(bv_replica_create(s, name63, 1 << 20, 0), 0,
	       "a 63-character name is fine");
	add_rep(w, name63, 1 << 20);
	is_int(bv_replica_create(s, "a", 1 << 20, 0), BV_EEXIST,
	       "creating an existing replica: BV_EEXIST");
	uint32_t bad_chunks[] = { 3000, 2048, 12288, 8u << 20, 1, 65535,
				  BV_CHUNK_MAX * 2u };
	for (size_t i = 0; i < sizeof bad_chunks / sizeof bad_chunks[0]; i++)
		is_int(bv_replica_create(s, "cx", 1 << 20, bad_chunks[i]),
		       BV_EINVAL, "chunk size %u refused", bad_chunks[i]);
	rc = bv_replica_create(s, "cx", 1000, 0);
	ok(rc == BV_EALIGN || rc == BV_EINVAL,
	   "a size that is not a multiple of 512 is refused (%d)", rc);
	{
		bv_replica_info ri;
		is_int(bv_replica_info_get(s, "cx", &ri), BV_ENOTFOUND,
		       "the refused creations left nothing");
	}
	is_int(bv_replica_create(s, "c-min", 1 << 20, BV_CHUNK_MIN), 0,
	       "chunk size BV_CHUNK_MIN is fine");
	add_rep(w, "c-min", 1 << 20);
	is_int(bv_replica_create(s, "c-max", 16 << 20, BV_CHUNK_MAX), 0,
	       "chunk size BV_CHUNK_MAX is fine");
	add_rep(w, "c-max", 16 << 20);
	ok(same_as_before(w), "after the refused names nothing changed");

	/* Groups. */
	{
		const char *unknown[] = { "c-min", "ghost" };
		const char *withrp[] = { "c-min", "a" };
		const char *badname[] = { "c-min" };
		rc = bv_group_create(s, "g-unknown", unknown, 2);
		is_int(rc, BV_ENOTFOUND, "group with an unknown replica");
		ok(has(bv_store_error(s), "ghost"), "the message names it: %s",
		   bv_store_error(s));
		rc = bv_group_create(s, "g-rp", withrp, 2);
		ok(rc < 0, "group with a replica that has RPs refused (%d %s)",
		   rc, bv_strerror(rc));
		ok(has(bv_store_error(s), "a"), "message: %s", bv_store_error(s));
		is_int(bv_group_create(s, "bad group", badname, 1), BV_EINVAL,
		       "group with a bad name");
		bv_replica_info ri;
		ET_MUST(s, bv_replica_info_get(s, "c-min", &ri));
		ok(!strcmp(ri.group, "c-min"),
		   "the refused groups left c-min in its own group (%s)",
		   ri.group);
	}

	/* A session may not span groups, nor two sessions share a replica. */
	ET_MUST(s, bv_ingest_begin(s, &in));
	ET_MUST(s, bv_ingest_add(in, "a", latest(a), 0));
	is_int(bv_ingest_add(in, "b", latest(b), 0), BV_EGROUP,
	       "a session spanning two groups: BV_EGROUP");
	ok(bv_store_error(s)[0], "message: %s", bv_store_error(s));
	ET_MUST(s, bv_ingest_begin(s, &in2));
	is_int(bv_ingest_add(in2, "a", latest(a), 0), BV_EBUSY,
	       "a second session on the same replica: BV_EBUSY");
	bv_ingest_abort(in2);
	bv_ingest_abort(in);
	ET_MUST(s, bv_ingest_begin(s, &in));
	ok(bv_ingest_add(in, "a", latest(a), 0) >= 0,
	   "after the abort the replica is free again");
	bv_ingest_abort(in);

	/* Readers and exports of things that do not exist. */
	{
		bv_reader *r = NULL;
		char *p = et_path(w->scratch, "x.img");
		is_int(bv_reader_open(s, "ghost", 0, &r), BV_ENOTFOUND,
		       "reader of an unknown replica");
		is_int(bv_reader_open(s, "a", 99, &r), BV_ENOTFOUND,
		       "reader of an unknown RP");
		ok(has(bv_store_error(s), "99"), "message: %s",
		   bv_store_error(s));
		is_int(bv_export(s, "a", 99, p, NULL, NULL), BV_ENOTFOUND,
		       "export of an unknown RP");
		ET_MUST(s, bv_reader_open(s, "a", 0, &r));
		rc = bv_reader_pread(r, buf, 1024, a->size - 512);
		ok(rc < 0, "pread past the end refused (%d %s)", rc,
		   bv_strerror(rc));
		bv_reader_close(r);
		{
			uint64_t n = 0;
			is_int(bv_rp_create(s, "ghost", NULL, 0, &n),
			       BV_ENOTFOUND, "rp_create of an unknown replica");
			char longlabel[BV_LABEL_MAX + 2];
			memset(longlabel, 'l', sizeof longlabel - 1);
			longlabel[sizeof longlabel - 1] = 0;
			rc = bv_rp_create(s, "a", longlabel, 0, &n);
			is_int(rc, BV_EINVAL, "an RP label over 127 bytes");
		}
		free(p);
	}
	ok(same_as_before(w), "after all the refused calls nothing changed");
}

/* ---- groups ----------------------------------------------------------- */

typedef struct rp_seen {
	uint64_t number[MAXRP];
	uint32_t members[MAXRP];
	uint64_t version[MAXRP];
	int n;
} rp_seen;

static int rp_seen_cb(void *ud, const bv_rp_info *rp)
{
	rp_seen *x = ud;
	if (x->n < MAXRP) {
		x->number[x->n] = rp->number;
		x->members[x->n] = rp->members;
		x->version[x->n] = rp->version;
	}
	x->n++;
	return 0;
}

static void test_groups(world *w)
{
	bv_store *s = w->s;
	const char *names[] = { "g1", "g2" };
	rep *g1, *g2;
	bv_ingest *in;
	uint64_t rp = 0;
	uint8_t buf[65536];
	int s1, s2;
	bv_commit_opts co = { .make_rp = 1, .label = "group", .consistency =
				      BV_APP_CONSISTENT, .time = 1700000000 };
	bv_replica_info ri;
	rp_seen seen;

	ET_MUST(s, bv_replica_create(s, "g1", 1 << 20, 16384));
	ET_MUST(s, bv_replica_create(s, "g2", 2 << 20, 65536));
	g1 = add_rep(w, "g1", 1 << 20);
	g2 = add_rep(w, "g2", 2 << 20);
	is_int(bv_group_create(s, "grp", names, 2), 0, "group of g1 and g2");
	ET_MUST(s, bv_replica_info_get(s, "g2", &ri));
	ok(!strcmp(ri.group, "grp"), "g2 is in group grp (%s)", ri.group);
	{
		int rc = bv_group_create(s, "grp2", names, 1);
		ok(rc < 0, "g1, already in a group, cannot make another (%d %s)",
		   rc, bv_strerror(rc));
		const char *other[] = { "c-min" };
		rc = bv_group_create(s, "grp", other, 1);
		ok(rc < 0, "the group name grp is taken (%d %s)", rc,
		   bv_strerror(rc));
	}

	/* One session writes both; one RP names both. */
	ET_MUST(s, bv_ingest_begin(s, &in));
	s1 = bv_ingest_add(in, "g1", 0, 0);
	s2 = bv_ingest_add(in, "g2", 0, 0);
	ok(s1 >= 0 && s2 >= 0 && s1 != s2, "both added to one session (%d, %d)",
	   s1, s2);
	et_fill(&rng, buf, sizeof buf);
	ET_MUST(s, bv_ingest_write(in, s1, 0, buf, sizeof buf));
	memcpy(g1->head, buf, sizeof buf);
	et_fill(&rng, buf, sizeof buf);
	ET_MUST(s, bv_ingest_write(in, s2, 65536, buf, sizeof buf));
	memcpy(g2->head + 65536, buf, sizeof buf);
	is_int(bv_ingest_commit(in, &co, &rp), 0, "group commit");
	is_int(rp, 1, "it made RP 1 of the group");
	note_rp(g1, rp);
	note_rp(g2, rp);
	memset(&seen, 0, sizeof seen);
	ET_MUST(s, bv_rp_list(s, "grp", rp_seen_cb, &seen));
	ok(seen.n == 1 && seen.number[0] == 1 && seen.members[0] == 2,
	   "the group has one RP with two members (%d RPs, %u members)",
	   seen.n, seen.members[0]);
	ET_MUST(s, bv_replica_info_get(s, "g1", &ri));
	is_int(ri.latest_rp, 1, "g1 sees latest RP 1");
	ok(same_as_before(w), "both members read back at RP 1");

	/* A session that changes only g1 still makes an RP of the group:
	 * g2 at RP 2 is g2 at RP 1. */
	ET_MUST(s, bv_ingest_begin(s, &in));
	s1 = bv_ingest_add(in, "g1", 1, 0);
	ET_MUST(s, s1);
	et_fill(&rng, buf, sizeof buf);
	ET_MUST(s, bv_ingest_write(in, s1, 512, buf, 4096));
	memcpy(g1->head + 512, buf, 4096);
	is_int(bv_ingest_commit(in, &co, &rp), 0, "commit of one member");
	is_int(rp, 2, "RP 2 of the group");
	note_rp(g1, rp);
	note_rp(g2, rp);
	ET_MUST(s, bv_replica_info_get(s, "g2", &ri));
	is_int(ri.latest_rp, 2, "g2 sees latest RP 2");
	ok(same_as_before(w), "g2 at RP 2 is g2 at RP 1; g1 changed");

	/* A stale base for the untouched member is refused. */
	ET_MUST(s, bv_ingest_begin(s, &in));
	is_int(bv_ingest_add(in, "g2", 1, 0), BV_EBASE,
	       "g2 with base 1 while the group is at RP 2");
	bv_ingest_abort(in);

	/* An aborted group session leaves both as they were. */
	ET_MUST(s, bv_ingest_begin(s, &in));
	s1 = bv_ingest_add(in, "g1", 2, 0);
	s2 = bv_ingest_add(in, "g2", 2, 0);
	ET_MUST(s, s1);
	ET_MUST(s, s2);
	et_fill(&rng, buf, sizeof buf);
	ET_MUST(s, bv_ingest_write(in, s1, 0, buf, sizeof buf));
	ET_MUST(s, bv_ingest_write(in, s2, 0, buf, sizeof buf));
	ET_MUST(s, bv_ingest_resize(in, s2, 4 << 20));
	bv_ingest_abort(in);
	ok(same_as_before(w), "an aborted group session changed nothing");
	ET_MUST(s, bv_replica_info_get(s, "g2", &ri));
	ok(ri.size == 2 << 20 && ri.latest_rp == 2,
	   "g2 keeps its size and RP (%" PRIu64 ", %" PRIu64 ")", ri.size,
	   ri.latest_rp);

	/* bv_rp_create on the group name: both members again. */
	ET_MUST(s, bv_rp_create(s, "grp", "by name", BV_CRASH_CONSISTENT, &rp));
	is_int(rp, 3, "bv_rp_create of the group makes RP 3");
	note_rp(g1, rp);
	note_rp(g2, rp);
	memset(&seen, 0, sizeof seen);
	ET_MUST(s, bv_rp_list(s, "g2", rp_seen_cb, &seen));
	ok(seen.n == 3 && seen.members[2] == 2 &&
		   seen.version[1] == seen.version[0] &&
		   seen.version[2] == seen.version[1],
	   "g2's version is the same in RPs 1-3 (%" PRIu64 ", %" PRIu64
	   ", %" PRIu64 ")", seen.version[0], seen.version[1],
	   seen.version[2]);
	ok(same_as_before(w), "every member of every group RP reads back");
}

/* ---- reader isolation ------------------------------------------------- */

static void test_isolation(world *w)
{
	bv_store *s = w->s;
	rep *a = find(w, "a");
	bv_reader *at_rp = NULL, *at_head = NULL;
	uint64_t n = latest(a), size = a->size;
	uint8_t *snap = malloc(size), *got = malloc(size);
	int rc, good;

	memcpy(snap, a->head, size);
	ET_MUST(s, bv_reader_open(s, "a", n, &at_rp));
	ET_MUST(s, bv_reader_open(s, "a", 0, &at_head));
	/* Rewrite most of the disk twice and grow it, with RPs. */
	for (int i = 0; i < 2; i++) {
		bv_ingest *in;
		uint64_t rp;
		bv_commit_opts co = { .make_rp = 1 };
		int slot;
		ET_MUST(s, bv_ingest_begin(s, &in));
		slot = bv_ingest_add(in, "a", latest(a), 0);
		ET_MUST(s, slot);
		et_fill(&rng, got, size);
		ET_MUST(s, bv_ingest_write(in, slot, 0, got, size));
		memcpy(a->head, got, size);
		ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		note_rp(a, rp);
	}
	good = 1;
	for (int k = 0; k < 2; k++) {
		bv_reader *r = k ? at_head : at_rp;
		memset(got, 0, size);
		rc = bv_reader_pread(r, got, size, 0);
		if (rc < 0 || memcmp(got, snap, size) != 0 ||
		    bv_reader_size(r) != size)
			good = 0;
	}
	ok(good, "readers opened at RP %" PRIu64 " and at the head keep "
	   "their bytes after two newer commits", n);
	bv_reader_close(at_rp);
	bv_reader_close(at_head);
	ok(same_as_before(w), "new readers see the new RPs");
	free(snap);
	free(got);
}

/* ---- diff into a second store ------------------------------------------ */

static int ingest_file(bv_store *s, const char *path, const char *name,
		       uint64_t *rp)
{
	int fd = open(path, O_RDONLY), rc, slot;
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	if (fd < 0)
		return -errno;
	rc = bv_ingest_begin(s, &in);
	if (rc < 0)
		goto out;
	slot = bv_ingest_stream(in, fd, BV_FORMAT_BVAULT, name, 0,
				NULL, NULL, NULL, NULL);
	if (slot < 0) {
		rc = slot;
		bv_ingest_abort(in);
		goto out;
	}
	rc = bv_ingest_commit(in, &co, rp);
out:
	close(fd);
	return rc;
}

static uint64_t file_size(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static int diff_to(bv_store *s, const char *replica, uint64_t a, uint64_t b,
		   uint64_t over, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), rc;
	if (fd < 0)
		return -errno;
	rc = bv_diff(s, replica, a, b, over, fd, NULL, NULL);
	close(fd);
	return rc;
}

static void test_diff(world *w, const char *dir)
{
	bv_store *s = w->s;
	char *st2 = et_path(dir, "s-diff");
	char *full = et_path(dir, "full.bvs"), *incr = et_path(dir, "incr.bvs");
	char *trunc = et_path(dir, "trunc.bvs");
	world w2 = { .scratch = w->scratch };
	rep *d, *d2;
	uint64_t rp = 0;
	int rc;

	/* Source: "d" with RP 1, a small change (RP 2), a grow and a zeroed
	 * range (RP 3). */
	ET_MUST(s, bv_replica_create(s, "d", 1 << 20, 16384));
	d = add_rep(w, "d", 1 << 20);
	ingest_random(w, d, 40, 1, 0, 512);
	ingest_random(w, d, 2, 1, 0, 16);
	{
		bv_ingest *in;
		int slot;
		bv_commit_opts co = { .make_rp = 1 };
		uint8_t *grown = calloc(1, 1536 << 10);
		ET_MUST(s, bv_ingest_begin(s, &in));
		slot = bv_ingest_add(in, "d", latest(d), 0);
		ET_MUST(s, bv_ingest_resize(in, slot, 1536 << 10));
		ET_MUST(s, bv_ingest_zero(in, slot, 100 * 512, 64 * 1024));
		ET_MUST(s, bv_ingest_write(in, slot, 1400 << 10, d->head, 4096));
		memcpy(grown, d->head, d->size);
		memset(grown + 100 * 512, 0, 64 * 1024);
		memcpy(grown + (1400 << 10), d->head, 4096);
		free(d->head);
		d->head = grown;
		d->size = 1536 << 10;
		ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		note_rp(d, rp);
	}

	et_init(st2, 0);
	w2.s = et_open(st2);
	d2 = add_rep(&w2, "d", 0);

	rc = diff_to(s, "d", 0, d->rp[0], BV_RP_LATEST, full);
	is_int(rc, 0, "diff 0..%" PRIu64 " (a full stream)", d->rp[0]);
	rc = ingest_file(w2.s, full, NULL, &rp);
	is_int(rc, 0, "the full stream ingests into a second store");
	if (rc == 0) {
		free(d2->head);
		d2->size = d->rpsize[0];
		d2->head = malloc(d2->size);
		memcpy(d2->head, d->rpimg[0], d2->size);
		note_rp(d2, rp);
	}
	ok(same_as_before(&w2), "the copy equals d@RP %" PRIu64, d->rp[0]);

	rc = diff_to(s, "d", d->rp[0], d->rp[2], 1, incr);
	is_int(rc, 0, "diff RP %" PRIu64 "..%" PRIu64 " with base 1", d->rp[0],
	       d->rp[2]);
	ok(file_size(incr) < file_size(full) / 2,
	   "the incremental stream is much smaller than the full one "
	   "(%" PRIu64 " vs %" PRIu64 " bytes)", file_size(incr),
	   file_size(full));

	/* A truncated copy of the incremental stream is refused and changes
	 * nothing. */
	{
		uint8_t *bytes;
		uint64_t len;
		ET_MUST(NULL, et_read_file(incr, &bytes, &len));
		et_write_file(trunc, bytes, len > 100 ? len - 100 : 0);
		free(bytes);
		rc = ingest_file(w2.s, trunc, "d", &rp);
		ok(rc < 0, "a truncated stream is refused (%d %s: %s)", rc,
		   bv_strerror(rc), bv_store_error(w2.s));
		ok(same_as_before(&w2), "and the second store is as before");
	}

	rc = ingest_file(w2.s, incr, "d", &rp);
	is_int(rc, 0, "the incremental stream ingests");
	if (rc == 0) {
		free(d2->head);
		d2->size = d->rpsize[2];
		d2->head = malloc(d2->size);
		memcpy(d2->head, d->rpimg[2], d2->size);
		note_rp(d2, rp);
	}
	ok(same_as_before(&w2), "the copy now equals d@RP %" PRIu64 " (%" PRIu64
	   " bytes)", d->rp[2], d2->size);

	/* Ingesting the same incremental stream again: its base is stale. */
	rc = ingest_file(w2.s, incr, "d", &rp);
	is_int(rc, BV_EBASE, "the same stream again: BV_EBASE");
	ok(same_as_before(&w2), "and nothing changed");

	/* A full stream of the latest RP in a third store. */
	{
		char *st3 = et_path(dir, "s-diff3");
		world w3 = { .scratch = w->scratch };
		rep *d3;
		rc = diff_to(s, "d", 0, d->rp[2], BV_RP_LATEST, full);
		is_int(rc, 0, "diff 0..%" PRIu64, d->rp[2]);
		et_init(st3, 0);
		w3.s = et_open(st3);
		d3 = add_rep(&w3, "d", 0);
		rc = ingest_file(w3.s, full, NULL, &rp);
		is_int(rc, 0, "full stream of the latest RP ingests");
		if (rc == 0) {
			free(d3->head);
			d3->size = d->rpsize[2];
			d3->head = malloc(d3->size);
			memcpy(d3->head, d->rpimg[2], d3->size);
			note_rp(d3, rp);
		}
		ok(same_as_before(&w3), "the third store equals d@RP %" PRIu64,
		   d->rp[2]);
		bv_store_close(w3.s);
		free(st3);
		for (int i = 0; i < w3.n; i++) {
			free(w3.r[i].head);
			for (int j = 0; j < w3.r[i].nrp; j++)
				free(w3.r[i].rpimg[j]);
		}
	}
	bv_store_close(w2.s);
	for (int i = 0; i < w2.n; i++) {
		free(w2.r[i].head);
		for (int j = 0; j < w2.r[i].nrp; j++)
			free(w2.r[i].rpimg[j]);
	}
	free(st2);
	free(full);
	free(incr);
	free(trunc);
}

/* ---- stats and extents --------------------------------------------------- */

static void test_stats_extent(const char *dir)
{
	char *st = et_path(dir, "s-stats");
	bv_store *s;
	bv_stats s0, s1, s2;
	uint64_t size = 2 << 20, rp;
	uint8_t *data = malloc(size);
	bv_commit_opts co = { .make_rp = 1 };

	et_init(st, 65536);
	s = et_open(st);
	ET_MUST(s, bv_stats_get(s, &s0));
	ok(s0.replicas == 0 && s0.chunks == 0 && s0.rps == 0,
	   "an empty store has no replicas, chunks, RPs");
	et_fill(&rng, data, size);
	for (int k = 0; k < 2; k++) {
		bv_ingest *in;
		int slot;
		ET_MUST(s, bv_ingest_begin(s, &in));
		slot = bv_ingest_add(in, k ? "twin" : "orig", 0, size);
		ET_MUST(s, slot);
		ET_MUST(s, bv_ingest_write(in, slot, 0, data, size));
		ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		ET_MUST(s, bv_stats_get(s, k ? &s2 : &s1));
	}
	diag("after one: chunks %" PRIu64 " raw %" PRIu64 " stored %" PRIu64
	     " ingested %" PRIu64 " containers %" PRIu64 " (%" PRIu64
	     " bytes) index %" PRIu64 " map entries %" PRIu64,
	     s1.chunks, s1.raw_bytes, s1.stored_bytes, s1.ingested_bytes,
	     s1.containers, s1.container_bytes, s1.index_bytes,
	     s1.map_entries);
	ok(s1.replicas == 1 && s1.groups == 1 && s1.rps == 1,
	   "one replica, one group, one RP");
	is_int(s1.chunks, size / 65536, "2 MiB of random data: 32 chunks");
	is_int(s1.raw_bytes, size, "raw bytes are the data");
	ok(s1.stored_bytes >= size && s1.stored_bytes <= size + size / 16,
	   "random data stored about raw (%" PRIu64 ")", s1.stored_bytes);
	ok(s1.container_bytes >= s1.stored_bytes,
	   "containers hold at least the stored bytes (%" PRIu64 ")",
	   s1.container_bytes);
	is_int(s1.logical_bytes, size, "logical bytes");
	is_int(s1.ingested_bytes, size, "ingested bytes");
	ok(s1.map_entries >= size / 65536, "map entries %" PRIu64,
	   s1.map_entries);
	ok(s2.replicas == 2 && s2.rps == 2, "two replicas, two RPs");
	is_int(s2.chunks, s1.chunks, "the twin adds no chunk (dedup)");
	is_int(s2.stored_bytes, s1.stored_bytes, "nor stored bytes");
	is_int(s2.logical_bytes, 2 * size, "logical bytes double");
	is_int(s2.ingested_bytes, 2 * size, "ingested bytes double");

	/* Extents: data only at [64 KiB, 192 KiB) of a fresh 1 MiB replica;
	 * an all-zero write at [512 KiB, 576 KiB) must not count as data. */
	{
		bv_ingest *in;
		bv_reader *r;
		int slot, rc;
		uint64_t len;
		et_fill(&rng, data, 131072); /* not the chunks stored above */
		ET_MUST(s, bv_ingest_begin(s, &in));
		slot = bv_ingest_add(in, "sparse", 0, 1 << 20);
		ET_MUST(s, bv_ingest_write(in, slot, 65536, data, 131072));
		memset(data, 0, 65536);
		ET_MUST(s, bv_ingest_write(in, slot, 512 << 10, data, 65536));
		ET_MUST(s, bv_ingest_commit(in, &co, &rp));
		ET_MUST(s, bv_reader_open(s, "sparse", rp, &r));
		len = 1 << 20;
		rc = bv_reader_extent(r, 0, &len);
		ok(rc == 0 && len == 65536,
		   "[0, 64K) never written: zeros (%d, run %" PRIu64 ")", rc,
		   len);
		len = (1 << 20) - 65536;
		rc = bv_reader_extent(r, 65536, &len);
		ok(rc == 1 && len == 131072, "[64K, 192K): data (%d, run %" PRIu64
		   ")", rc, len);
		len = (1 << 20) - 196608;
		rc = bv_reader_extent(r, 196608, &len);
		ok(rc == 0 && len == (1 << 20) - 196608,
		   "[192K, 1M): zeros, the zero write included (%d, run %" PRIu64
		   ")", rc, len);
		len = 4096;
		rc = bv_reader_extent(r, 70000 & ~511u, &len);
		ok(rc == 1 && len == 4096, "a short query inside data (%d, %" PRIu64
		   ")", rc, len);
		bv_reader_close(r);
	}
	{
		bv_stats s3;
		ET_MUST(s, bv_stats_get(s, &s3));
		is_int(s3.chunks, s2.chunks + 2,
		       "the sparse replica adds only its two data chunks");
	}
	bv_store_close(s);
	s = et_open(st);
	{
		bv_stats s4;
		ET_MUST(s, bv_stats_get(s, &s4));
		ok(s4.chunks == s2.chunks + 2 && s4.replicas == 3 && s4.rps == 3,
		   "stats survive a reopen (%" PRIu64 " chunks)", s4.chunks);
	}
	bv_store_close(s);
	free(data);
	free(st);
}

/* Agents with a key and with a secret side by side; grant and revoke. */
static int agent_kind_n;
static int count_kinds(void *ud, const bv_agent_info *a)
{
	(void)ud;
	agent_kind_n += a->kind == BV_AGENT_KIND_KEY ? 10 :
		a->kind == BV_AGENT_KIND_SECRET ? 1 : 100;
	return 0;
}

static void test_agents(const char *dir)
{
	char *sp = et_path(dir, "s-agents");
	const char *g1[] = { "vm1" }, *g2[] = { "vm2", "vm3" },
		   *gx[] = { "vm9" }, *gdup[] = { "vm4", "vm4" };
	uint8_t pk[BV_AGENT_PUBLIC_KEY], secret[BV_AGENT_SECRET],
		got[BV_AGENT_SECRET], zero[BV_AGENT_SECRET] = { 0 };
	bv_agent_info ai;
	bv_store *s;

	for (size_t i = 0; i < sizeof pk; i++)
		pk[i] = (uint8_t)(0xa0 + i);
	et_init(sp, 16384);
	s = et_open(sp);
	ET_MUST(s, bv_agent_add_key(s, "kk", g1, 1, pk));
	ET_MUST(s, bv_agent_add(s, "ss", g1, 1, secret));
	ok(bv_agent_add_key(s, "kk", g1, 1, pk) == BV_EEXIST,
	   "agent add with a key: the name taken");
	ok(bv_agent_add_key(s, "k2", gdup, 2, pk) == BV_EINVAL,
	   "agent add with a key: a group named twice");
	ok(bv_agent_add_key(s, "k2", g1, 1, NULL) == BV_EINVAL,
	   "agent add with a key: no key");
	memset(got, 0x55, sizeof got);
	ok(bv_agent_get(s, "kk", &ai, got) == 0 &&
	   ai.kind == BV_AGENT_KIND_KEY &&
	   !memcmp(ai.public_key, pk, sizeof pk) &&
	   !memcmp(got, zero, sizeof got) && ai.ngroups == 1,
	   "a key agent: its kind and public key, and no secret");
	ok(bv_agent_get(s, "ss", &ai, got) == 0 &&
	   ai.kind == BV_AGENT_KIND_SECRET &&
	   !memcmp(got, secret, sizeof got) &&
	   !memcmp(ai.public_key, zero, sizeof zero),
	   "a secret agent: its kind and secret, no public key");
	ET_MUST(s, bv_agent_grant(s, "kk", g2, 2));
	ET_MUST(s, bv_agent_grant(s, "kk", g1, 1)); /* held: no change */
	ok(bv_agent_get(s, "kk", &ai, NULL) == 0 && ai.ngroups == 3 &&
	   bv_agent_may(&ai, "vm1") && bv_agent_may(&ai, "vm2") &&
	   bv_agent_may(&ai, "vm3") && !memcmp(ai.public_key, pk, sizeof pk),
	   "grant: three groups, the key kept");
	ET_MUST(s, bv_agent_revoke(s, "kk", g1, 1));
	ok(bv_agent_get(s, "kk", &ai, NULL) == 0 && ai.ngroups == 2 &&
	   !bv_agent_may(&ai, "vm1") && bv_agent_may(&ai, "vm3"),
	   "revoke: vm1 gone, the others kept");
	ok(bv_agent_revoke(s, "kk", gx, 1) == BV_ENOTFOUND,
	   "revoke a group not held: BV_ENOTFOUND");
	ok(bv_agent_revoke(s, "kk", g2, 2) == BV_EINVAL &&
	   bv_agent_get(s, "kk", &ai, NULL) == 0 && ai.ngroups == 2,
	   "revoke every group: refused, nothing changed");
	ok(bv_agent_grant(s, "nobody", g1, 1) == BV_ENOTFOUND,
	   "grant to an unknown agent: BV_ENOTFOUND");
	ok(bv_agent_grant(s, "kk", gdup, 2) == BV_EINVAL,
	   "grant a group named twice: BV_EINVAL");
	ET_MUST(s, bv_agent_grant(s, "ss", g2, 2));
	bv_store_close(s);
	s = et_open(sp);
	ok(bv_agent_get(s, "ss", &ai, got) == 0 && ai.ngroups == 3 &&
	   ai.kind == BV_AGENT_KIND_SECRET && !memcmp(got, secret, sizeof got),
	   "after a reopen: the secret agent's grant and secret");
	agent_kind_n = 0;
	ok(bv_agent_list(s, count_kinds, NULL) == 0 && agent_kind_n == 11,
	   "agent list: one key agent and one secret agent");
	bv_store_close(s);
	free(sp);
}

int main(void)
{
	uint64_t seed = et_seed(7);
	char *dir = et_tmpdir("api");
	char *st = et_path(dir, "s-main");
	world w = { .scratch = dir };
	rep *a, *b;

	rng.s = seed;
	test_init_open(dir);

	et_init(st, 16384);
	w.s = et_open(st);
	ET_MUST(w.s, bv_replica_create(w.s, "a", 1 << 20, 0));
	a = add_rep(&w, "a", 1 << 20);
	ingest_random(&w, a, 10, 1, 0, 512);
	ingest_random(&w, a, 3, 1, 0, 512);
	ingest_random(&w, a, 3, 0, 0, 512); /* head past the latest RP */
	b = add_rep(&w, "b", 512 << 10);
	ingest_random(&w, b, 5, 1, 512 << 10, 512);
	ok(same_as_before(&w), "the starting state reads back");

	test_errors(&w);
	test_groups(&w);
	test_isolation(&w);
	test_diff(&w, dir);

	bv_store_close(w.s);
	w.s = et_open(st);
	ok(same_as_before(&w), "everything reads back after a reopen");
	bv_store_close(w.s);

	test_stats_extent(dir);
	test_agents(dir);

	for (int i = 0; i < w.n; i++) {
		free(w.r[i].head);
		for (int j = 0; j < w.r[i].nrp; j++)
			free(w.r[i].rpimg[j]);
	}
	free(st);
	et_tmpdir_done(dir);
	return done_testing();
}
