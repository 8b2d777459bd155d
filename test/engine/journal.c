/*
 * engine-journal: the index journal rebuilds the whole index
 * (storage/FORMAT.md, "The index journal"). Replicas, a group, agents and
 * RPs made over several opens are all back, bit for bit, after index/ is
 * deleted, and after it is damaged; ingest goes on and a second rebuild
 * still works; a store whose journal is gone (as an older store has
 * none) gets a snapshot at its next writable open and rebuilds from it;
 * a damaged entry with intact ones after it is refused, naming the file,
 * and the index is left as it was; a store open for writing is refused;
 * a large journal is compacted at a writable open and still rebuilds.
 */
#include "tap.h"
#include "etest.h"

#define DISK (2u << 20)
#define CHUNK 16384u
#define MAXRP 16

static char *dir, *sp;
static uint8_t *imgs[MAXRP + 1]; /* imgs[k]: vm1 at RP k */
static uint64_t nrp;

static void commit_one(bv_store *s, et_rng *r)
{
	uint8_t *img = malloc(DISK), buf[4 * CHUNK];
	bv_ingest *in = NULL;
	uint64_t rp = 0;
	int slot;

	memcpy(img, nrp ? imgs[nrp] : memset(img, 0, DISK), DISK);
	ET_MUST(s, bv_ingest_begin(s, &in));
	ET_MUST(s, slot = bv_ingest_add(in, "vm1", nrp, DISK));
	for (int i = 0; i < 5; i++) {
		uint64_t off = et_below(r, DISK / CHUNK - 4) * CHUNK;
		et_fill(r, buf, sizeof buf);
		memcpy(img + off, buf, sizeof buf);
		ET_MUST(s, bv_ingest_write(in, slot, off, buf, sizeof buf));
	}
	bv_commit_opts co = { .make_rp = 1 };
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
	imgs[++nrp] = img;
}

static int all_rps(const char *path)
{
	bv_store *s = et_open(path);
	bv_replica_info ri;
	bv_agent_info ai;
	int good = bv_replica_info_get(s, "vm1", &ri) == 0 &&
		   ri.latest_rp == nrp &&
		   bv_replica_info_get(s, "lone", &ri) == 0 &&
		   bv_agent_get(s, "ag", &ai, NULL) == 0;

	for (uint64_t k = 1; k <= nrp && good; k++)
		good = et_export_eq(s, "vm1", k, dir, imgs[k], DISK);
	bv_store_close(s);
	return good;
}

/* The journal's files. */
static int count_journal(void)
{
	char cmd[4096];
	int n = -1;

	snprintf(cmd, sizeof cmd, "ls '%s'/journal/*.bvj | wc -l", sp);
	FILE *p = popen(cmd, "r");
	if (p) {
		if (fscanf(p, "%d", &n) != 1)
			n = -1;
		pclose(p);
	}
	return n;
}

static int rebuild(const char *path, char *err, size_t errlen)
{
	bv_index_backup_info in;
	char old[512];

	return bv_index_rebuild(path, &in, old, sizeof old, err, errlen);
}

int main(void)
{
	et_rng r = { et_seed(99) };
	char err[2048], cmd[4096];
	bv_store *s;
	int rc;

	dir = et_tmpdir("journal");
	sp = et_path(dir, "s");
	et_init(sp, CHUNK);
	for (int open = 0; open < 3; open++) {
		s = et_open(sp);
		if (open == 0) {
			uint8_t secret[BV_AGENT_SECRET];
			const char *g[1] = { "vm1" };
			ET_MUST(s, bv_replica_create(s, "lone", 1 << 20, 0));
			ET_MUST(s, bv_agent_add(s, "ag", g, 1, secret));
		}
		for (int i = 0; i < 2; i++)
			commit_one(s, &r);
		bv_store_close(s);
	}
	snprintf(cmd, sizeof cmd, "rm -rf '%s/index'", sp);
	ok(system(cmd) == 0, "index/ deleted");
	rc = rebuild(sp, err, sizeof err);
	ok(rc == 0, "the journal rebuilds it (%d %s)", rc, rc ? err : "");
	ok(all_rps(sp), "every replica, the agent and RPs 1..%" PRIu64
	   " are back, bit for bit", nrp);

	s = et_open(sp);
	commit_one(s, &r);
	bv_store_close(s);
	ok(all_rps(sp), "ingest goes on after the rebuild (RP %" PRIu64 ")",
	   nrp);

	/* A damaged index (every table file's first bytes overwritten). */
	snprintf(cmd, sizeof cmd, "for f in '%s'/index/*.sst '%s'/index/MANIFEST-*; "
		 "do printf 'garbage!garbage!' | dd of=\"$f\" conv=notrunc "
		 "2>/dev/null; done", sp, sp);
	ok(system(cmd) == 0, "index/ damaged");
	rc = rebuild(sp, err, sizeof err);
	ok(rc == 0, "a damaged index is rebuilt too (%d %s)", rc,
	   rc ? err : "");
	ok(all_rps(sp), "and reads as before, after a second rebuild");

	/* An older store has no journal: the next writable open takes a
	 * snapshot, from which the index can then be rebuilt. */
	snprintf(cmd, sizeof cmd, "rm -rf '%s/journal'", sp);
	ok(system(cmd) == 0, "journal/ deleted");
	s = et_open(sp);
	commit_one(s, &r);
	bv_store_close(s);
	snprintf(cmd, sizeof cmd, "rm -rf '%s/index'", sp);
	ok(system(cmd) == 0, "index/ deleted again");
	rc = rebuild(sp, err, sizeof err);
	ok(rc == 0 && all_rps(sp), "a store whose journal began at a later "
	   "open rebuilds from its snapshot (%d %s)", rc, rc ? err : "");

	/* A writer holds the store. */
	s = et_open(sp);
	rc = rebuild(sp, err, sizeof err);
	ok(rc == BV_EBUSY && strstr(err, "open for writing"), "a store open "
	   "for writing is refused (%d: %s)", rc, err);
	commit_one(s, &r);
	commit_one(s, &r);
	bv_store_close(s);

	/* A damaged entry with intact ones after it: refused, named, and
	 * the index is left in place. */
	{
		char path[4096];
		uint8_t b = 0;
		int fd;

		snprintf(path, sizeof path, "%s/journal/00000001.bvj", sp);
		fd = open(path, O_RDWR);
		ok(fd >= 0 && pread(fd, &b, 1, 4096 + 60) == 1, "the first "
		   "journal file");
		b ^= 0x40;
		ok(pwrite(fd, &b, 1, 4096 + 60) == 1, "a byte of its first "
		   "entry flipped");
		close(fd);
		rc = rebuild(sp, err, sizeof err);
		ok(rc == BV_ECORRUPT && strstr(err, "00000001.bvj") &&
		   strstr(err, "damaged"), "the rebuild is refused, naming "
		   "the file (%d: %s)", rc, err);
		ok(all_rps(sp), "and the index is as it was");
		snprintf(cmd, sizeof cmd, "ls -d '%s'/index.old.* | wc -l", sp);
		b ^= 0x40;
		fd = open(path, O_RDWR);
		ok(fd >= 0 && pwrite(fd, &b, 1, 4096 + 60) == 1, "the byte "
		   "flipped back");
		close(fd);
	}

	/* Compaction: once the journal is large (here: past 1 byte and
	 * twice the index), a writable open snapshots the index and drops
	 * the files before the snapshot; the journal still rebuilds it. */
	{
		int before = count_journal(), after;
		setenv("BV_JOURNAL_COMPACT", "1", 1);
		for (int i = 0; i < 3; i++) {
			s = et_open(sp);
			commit_one(s, &r);
			bv_store_close(s);
		}
		unsetenv("BV_JOURNAL_COMPACT");
		after = count_journal();
		ok(before >= 2 && after == 1, "a writable open compacts a "
		   "large journal (%d files before 3 more opens, %d after: the "
		   "snapshot's own)", before, after);
		snprintf(cmd, sizeof cmd, "rm -rf '%s/index'", sp);
		ok(system(cmd) == 0, "index/ deleted once more");
		rc = rebuild(sp, err, sizeof err);
		ok(rc == 0 && all_rps(sp), "the compacted journal rebuilds every "
		   "RP (1..%" PRIu64 ") (%d %s)", nrp, rc, rc ? err : "");
	}
	for (uint64_t k = 1; k <= nrp; k++)
		free(imgs[k]);
	free(sp);
	et_tmpdir_done(dir);
	return done_testing();
}
