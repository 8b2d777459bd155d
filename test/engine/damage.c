/*
 * engine-damage: a damaged store can still be examined (INVARIANTS.md,
 * "nothing lost", section 2 of the issue).
 *
 * A store of three replicas over several small containers
 * (BV_CONTAINER_MAX) is damaged in four ways: the tail container cut in
 * half, a run of zeros written into a middle container, the tail
 * container deleted, a byte of a container's file header flipped. Each
 * time:
 *  - a writable open that meets the damage (the tail container) refuses
 *    with an error naming the container file and the offset;
 *  - a read-only open works, and verify reports the damaged bytes (with
 *    the file) and, for each damaged chunk, the REPLICA@RP ranges that
 *    need it;
 *  - those reports are exact: every RP that verify says needs damage
 *    fails to export (an error, never wrong bytes) and every range it
 *    names fails to read, while every RP it does not name exports bit
 *    for bit.
 */
#include <dirent.h>
#include <sys/wait.h>

#include "etest.h"

#define CHUNK (64u << 10)

struct img {
	const char *replica;
	uint64_t rp;
	uint8_t *bytes;
	uint64_t size;
};

static struct img imgs[4];
static size_t nimgs;

struct needed {
	char replica[BV_NAME_MAX + 1];
	uint64_t rp, off, len;
};

struct findings {
	struct needed need[256];
	size_t nneed;
	size_t damaged, named_file;
};

static void collect(void *ud, const bv_verify_report *r)
{
	struct findings *f = ud;
	if (r->kind == BV_VERIFY_DAMAGED) {
		f->damaged++;
		if (strstr(r->message, ".bvc"))
			f->named_file++;
	} else if (r->kind == BV_VERIFY_NEEDED && f->nneed < 256) {
		struct needed *n = &f->need[f->nneed++];
		snprintf(n->replica, sizeof n->replica, "%s", r->replica);
		n->rp = r->rp;
		n->off = r->off;
		n->len = r->len;
	}
}

static int run(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void ingest(bv_store *s, const char *name, const uint8_t *buf,
		   uint64_t size, uint64_t base)
{
	bv_ingest *in = NULL;
	bv_commit_opts co = { .make_rp = 1 };
	uint64_t rp = 0;
	int slot;

	ET_MUST(s, bv_ingest_begin(s, &in));
	ET_MUST(s, slot = bv_ingest_add(in, name, base, size));
	ET_MUST(s, bv_ingest_write(in, slot, 0, buf, size));
	ET_MUST(s, bv_ingest_commit(in, &co, &rp));
}

static uint32_t container_ids(const char *store, uint32_t *max)
{
	char *dir = et_path(store, "containers");
	DIR *d = opendir(dir);
	struct dirent *e;
	uint32_t n = 0;

	*max = 0;
	while (d && (e = readdir(d)) != NULL) {
		unsigned id;
		if (sscanf(e->d_name, "%u.bvc", &id) == 1) {
			n++;
			if (id > *max)
				*max = id;
		}
	}
	if (d)
		closedir(d);
	free(dir);
	return n;
}

static char *container_path(const char *store, uint32_t id)
{
	char *p;
	if (asprintf(&p, "%s/containers/%08u.bvc", store, id) < 0)
		bail_out("asprintf");
	return p;
}

/* Reading [OFF, OFF+LEN) of REPLICA@RP fails. */
static int range_fails(bv_store *s, const struct needed *n)
{
	bv_reader *r = NULL;
	uint8_t *buf = malloc(n->len);
	int rc;

	if (!buf)
		bail_out("out of memory");
	rc = bv_reader_open(s, n->replica, n->rp ? n->rp : 0, &r);
	if (rc == 0)
		rc = bv_reader_pread(r, buf, n->len, n->off);
	bv_reader_close(r);
	free(buf);
	return rc < 0;
}

static void check_damage(const char *root, const char *pristine,
			 const char *what, const char *how, int tail)
{
	char *st = et_path(root, "damaged");
	char cmd[8192];
	bv_store *s = NULL;
	bv_open_opts wo = { .workers = 2 };
	bv_open_opts ro = { .workers = 2, .read_only = 1 };
	struct findings f;
	bv_verify_result res;
	int rc;

	memset(&f, 0, sizeof f);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s' && cd '%s' "
		 "&& %s", st, pristine, st, st, how);
	if (run(cmd))
		bail_out("damaging the store");
	rc = bv_store_open(st, &wo, &s);
	if (tail) {
		ok(rc == BV_ECORRUPT && strstr(bv_store_error(s), ".bvc") &&
		   strstr(bv_store_error(s), "offset"),
		   "%s: a writable open refuses, naming the file and the "
		   "offset: %s", what, bv_store_error(s));
	}
	bv_store_close(s);
	s = NULL;
	rc = bv_store_open(st, &ro, &s);
	is_int(rc, 0, "%s: a read-only open works", what);
	if (rc) {
		diag("%s", bv_store_error(s));
		bv_store_close(s);
		free(st);
		return;
	}
	rc = bv_store_verify_report(s, collect, &f, &res);
	is_int(rc, BV_ECORRUPT, "%s: verify finds damage", what);
	ok(f.damaged > 0 && f.named_file == f.damaged,
	   "%s: %zu damage reports, each naming the container file", what,
	   f.damaged);
	ok(f.nneed > 0, "%s: %zu REPLICA@RP ranges need damaged data", what,
	   f.nneed);
	int sound = 1;
	for (size_t i = 0; i < f.nneed; i++)
		if (!range_fails(s, &f.need[i])) {
			diag("%s@%" PRIu64 " bytes %" PRIu64 "+%" PRIu64
			     " reads without error", f.need[i].replica,
			     f.need[i].rp, f.need[i].off, f.need[i].len);
			sound = 0;
		}
	ok(sound, "%s: every range verify names fails to read", what);
	int exact = 1;
	for (size_t k = 0; k < nimgs; k++) {
		int named = 0;
		for (size_t i = 0; i < f.nneed; i++)
			if (!strcmp(f.need[i].replica, imgs[k].replica) &&
			    f.need[i].rp == imgs[k].rp)
				named = 1;
		if (named) {
			char *out = et_path(root, "x.img");
			rc = bv_export(s, imgs[k].replica, imgs[k].rp, out, NULL,
				       NULL);
			unlink(out);
			free(out);
			if (rc == 0) {
				diag("%s@%" PRIu64 " exports although verify "
				     "names it", imgs[k].replica, imgs[k].rp);
				exact = 0;
			}
		} else if (!et_export_eq(s, imgs[k].replica, imgs[k].rp, root,
					 imgs[k].bytes, imgs[k].size)) {
			exact = 0;
		}
	}
	ok(exact, "%s: each RP verify does not name exports bit for bit, "
	   "each it names fails", what);
	bv_store_close(s);
	free(st);
}

int main(void)
{
	char *root = et_tmpdir("damage");
	char *pristine = et_path(root, "pristine");
	et_rng rng = { et_seed(777) };
	uint64_t sz1 = 16u << 20, sz2 = 8u << 20, sz3 = 4u << 20;
	uint8_t *a = malloc(sz2), *b1 = malloc(sz1), *b2 = malloc(sz1);
	uint8_t *z = calloc(1, sz3);
	bv_store *s;
	uint32_t max;

	if (!a || !b1 || !b2 || !z)
		bail_out("out of memory");
	setenv("BV_CONTAINER_MAX", "4194304", 1);
	et_fill(&rng, a, sz2);
	et_fill(&rng, b1, sz1);
	memcpy(b2, b1, sz1);
	et_fill(&rng, b2 + (2u << 20), 2u << 20);
	et_init(pristine, CHUNK);
	s = et_open(pristine);
	ingest(s, "vm2", a, sz2, 0);
	ingest(s, "vm3", z, sz3, 0);
	ingest(s, "vm1", b1, sz1, 0);
	ingest(s, "vm1", b2, sz1, 1);
	bv_store_close(s);
	imgs[nimgs++] = (struct img){ "vm2", 1, a, sz2 };
	imgs[nimgs++] = (struct img){ "vm3", 1, z, sz3 };
	imgs[nimgs++] = (struct img){ "vm1", 1, b1, sz1 };
	imgs[nimgs++] = (struct img){ "vm1", 2, b2, sz1 };
	uint32_t n = container_ids(pristine, &max);
	ok(n >= 4, "the store spans %u containers (the tail is %u)", n, max);

	char how[512], *tailp = container_path(".", max);
	snprintf(how, sizeof how, "truncate -s %u '%s'", 1u << 20, tailp);
	check_damage(root, pristine, "tail container cut", how, 1);
	snprintf(how, sizeof how, "dd if=/dev/zero of=containers/%08u.bvc "
		 "bs=4096 seek=100 count=64 conv=notrunc status=none", 2u);
	check_damage(root, pristine, "zeros in container 2", how, 0);
	snprintf(how, sizeof how, "rm '%s'", tailp);
	check_damage(root, pristine, "tail container deleted", how, 1);
	snprintf(how, sizeof how, "printf X | dd of=containers/%08u.bvc "
		 "bs=1 seek=3 conv=notrunc status=none", 3u);
	check_damage(root, pristine, "header of container 3", how, 0);

	free(tailp);
	free(a);
	free(b1);
	free(b2);
	free(z);
	free(pristine);
	et_tmpdir_done(root);
	return done_testing();
}
