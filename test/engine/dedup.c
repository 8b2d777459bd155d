/*
 * engine-dedup: the dedup scope through bvault.h. A store made with no
 * scope, or with BV_DEDUP_STORE, reports BV_DEDUP_STORE in its stats;
 * a scope out of range is refused naming it; BV_DEDUP_GROUP is refused
 * by this build before anything is made (the store could not keep it).
 */
#include <sys/stat.h>

#include "tap.h"
#include "etest.h"

int main(void)
{
	char *dir = et_tmpdir("dedup");
	char *sp = et_path(dir, "s"), *gp = et_path(dir, "g");
	char *bp = et_path(dir, "b");
	char err[512];
	struct stat st;
	bv_stats stats;
	bv_store *s;

	bv_init_opts o = { .dedup_scope = BV_DEDUP_STORE };
	is_int(bv_store_init(sp, &o, err, sizeof err), 0, "store scope: init");
	s = et_open(sp);
	ET_MUST(s, bv_stats_counters(s, &stats));
	is_int(stats.dedup_scope, BV_DEDUP_STORE, "stats: scope store");
	bv_store_close(s);

	bv_init_opts g = { .dedup_scope = BV_DEDUP_GROUP };
	int rc = bv_store_init(gp, &g, err, sizeof err);
	ok(rc == BV_EINVAL && strstr(err, "dedup scope group"),
	   "group scope refused, named (%d: %s)", rc, err);
	ok(stat(gp, &st) < 0, "the refused init made nothing");

	bv_init_opts b = { .dedup_scope = 7 };
	rc = bv_store_init(bp, &b, err, sizeof err);
	ok(rc == BV_EINVAL && strstr(err, "dedup scope 7"),
	   "a scope out of range refused, named (%d: %s)", rc, err);

	free(bp);
	free(gp);
	free(sp);
	et_tmpdir_done(dir);
	return done_testing();
}
