/*
 * index.c: a backup of the index, taken while the store is in use, and
 * putting one back (bvault.h, "The index: backup and restore";
 * storage/FORMAT.md, "Index backups").
 *
 * A backup is a directory of two things: index/, a RocksDB checkpoint of
 * the whole database at one moment (every column family at one sequence
 * number), and backup.info, which says whose index it is, when it was
 * taken and what it holds. The checkpoint runs in the writing process,
 * beside its sessions: RocksDB flushes the memtables and hard-links (or
 * copies) the table files, so sessions go on meanwhile.
 *
 * A restore never destroys the index it replaces: that one is renamed to
 * index.old.N and kept, because the user may have restored the wrong
 * backup. The restored copy must then open as the store's writer (the
 * containers must be this store's, the tail the backup names must still
 * be there): when it does not, the old index is put back and nothing is
 * changed. Commits made after the backup are not in it; their container
 * bytes are kept and recorded as unknown by that open (storage/FORMAT.md,
 * "What open and rollback may cut"), and the seal is set to the backup.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "internal.h"

#define INFO_NAME "backup.info"
#define INFO_LEN 72
static const char info_magic[8] = { 'B', 'V', 'I', 'D', 'X', 'B', 'K', '1' };

/* ---- backup.info --------------------------------------------------------- */

static void info_encode(uint8_t b[INFO_LEN], const bv_index_backup_info *in)
{
	memset(b, 0, INFO_LEN);
	memcpy(b, info_magic, 8);
	bv_le32(b + 8, 1);
	memcpy(b + 16, in->store_id, 16);
	bv_le64(b + 32, (uint64_t)in->time);
	bv_le64(b + 40, in->sequence);
	bv_le64(b + 48, in->replicas);
	bv_le64(b + 56, in->rps);
	bv_le64(b + 64, XXH3_64bits(b, 64));
}

static int info_decode(const uint8_t *b, size_t len, bv_index_backup_info *out)
{
	if (len != INFO_LEN || memcmp(b, info_magic, 8) != 0 ||
	    bv_get_le64(b + 64) != XXH3_64bits(b, 64))
		return BV_ECORRUPT;
	if (bv_get_le32(b + 8) != 1)
		return BV_EFORMAT;
	memcpy(out->store_id, b + 16, 16);
	out->time = (int64_t)bv_get_le64(b + 32);
	out->sequence = bv_get_le64(b + 40);
	out->replicas = bv_get_le64(b + 48);
	out->rps = bv_get_le64(b + 56);
	return 0;
}

/* ---- small file helpers ------------------------------------------------- */

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* The directory that holds PATH, fsynced (a rename or create in it). */
static int fsync_parent(const char *path)
{
	char dir[4096];
	char *slash;

	if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (!slash)
		return fsync_path(".");
	if (slash == dir)
		slash[1] = 0;
	else
		*slash = 0;
	return fsync_path(dir);
}

/* Removes directory PATH and the plain files in it: only ever a
 * directory this file made itself (a half-made backup, a copy being
 * restored), never one of the store's. */
static void remove_own_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' || (e->d_name[1] &&
					    (e->d_name[1] != '.' ||
					     e->d_name[2])))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(path);
}

/* Copies the plain files of directory FROM into the new directory TO
 * (0700, files 0600), each fsynced, then TO. */
static int copy_dir(const char *from, const char *to)
{
	static const size_t bufsz = 1u << 20;
	DIR *d = opendir(from);
	struct dirent *e;
	char *buf = NULL;
	int rc = 0, tfd = -1;

	if (!d)
		return bv_fail(-errno, "backup %s: %s", from, strerror(errno));
	if (mkdir(to, 0700) != 0) {
		rc = bv_fail(-errno, "index %s: %s", to, strerror(errno));
		goto out;
	}
	if ((tfd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    !(buf = malloc(bufsz))) {
		rc = tfd < 0 ? bv_fail(-errno, "index %s: %s", to,
				       strerror(errno)) : -ENOMEM;
		goto out;
	}
	while (rc == 0 && (errno = 0, e = readdir(d)) != NULL) {
		struct stat st;
		int in, outfd;
		ssize_t n = 0;

		if (e->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode)) {
			rc = bv_fail(BV_ECORRUPT, "backup %s: %s is not a "
				     "plain file", from, e->d_name);
			break;
		}
		in = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
		outfd = openat(tfd, e->d_name, O_WRONLY | O_CREAT | O_EXCL |
			       O_CLOEXEC, 0600);
		while (in >= 0 && outfd >= 0 &&
		       (n = read(in, buf, bufsz)) > 0)
			if (write(outfd, buf, (size_t)n) != n) {
				n = -1;
				break;
			}
		if (in < 0 || outfd < 0 || n < 0 || fsync(outfd) != 0)
			rc = bv_fail(-(errno ? errno : EIO), "index backup: "
				     "copying %s/%s to %s: %s", from,
				     e->d_name, to, strerror(errno ? errno :
							     EIO));
		if (in >= 0)
			close(in);
		if (outfd >= 0)
			close(outfd);
	}
	if (rc == 0 && fsync(tfd) != 0)
		rc = bv_fail(-errno, "index %s: %s", to, strerror(errno));
out:
	if (tfd >= 0)
		close(tfd);
	free(buf);
	closedir(d);
	return rc;
}

/* ---- what a database holds ------------------------------------------- */

static int count_prefix(struct bv_kv *kv, const char *prefix, uint64_t *n)
{
	size_t pl = strlen(prefix);
	uint8_t hi[16];
	struct bv_kv_iter *it;
	int rc;

	memcpy(hi, prefix, pl);
	hi[pl - 1]++; /* "p/" -> "p0": every key that begins with "p/" */
	if ((rc = bv_kv_iter_new(kv, BV_CF_META, prefix, pl, hi, pl, &it)))
		return rc;
	*n = 0;
	for (bv_kv_iter_seek(it, prefix, pl); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it))
		(*n)++;
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc;
}

/* Opens the database in DIR read-only and describes it in INFO. */
static int describe(const char *dir, bv_index_backup_info *info)
{
	struct bv_kv_opts ko = { .read_only = 1 };
	struct bv_kv *kv = NULL;
	uint8_t cfg[256];
	size_t len;
	int rc;

	if ((rc = bv_kv_open(dir, &ko, &kv)))
		return bv_fail(rc, "index %s: %s", dir, bv_kv_error());
	rc = bv_kv_get(kv, BV_CF_META, "config", 6, cfg, sizeof cfg, &len);
	if (rc || len < 24) {
		rc = bv_fail(BV_ECORRUPT, "index %s: no intact config record",
			     dir);
		goto out;
	}
	memcpy(info->store_id, cfg + 8, 16);
	info->sequence = bv_kv_sequence(kv);
	if ((rc = count_prefix(kv, "r/", &info->replicas)) ||
	    (rc = count_prefix(kv, "p/", &info->rps)))
		rc = bv_fail(rc, "index %s: %s", dir, bv_kv_error());
out:
	bv_kv_close(kv);
	return rc;
}

/* ---- backup -------------------------------------------------------------- */

int bv_index_backup(bv_store *s, const char *dir, bv_index_backup_info *info)
{
	bv_index_backup_info in = { 0 };
	char sub[4096];
	uint8_t b[INFO_LEN];
	int rc, fd;

	if ((rc = bv_store_writable(s)))
		return rc;
	if (!dir || !*dir || strlen(dir) > 3000)
		return bv_fail(BV_EINVAL, "index backup: no directory, or a "
			       "path too long");
	if (mkdir(dir, 0700) != 0)
		return bv_fail(errno == EEXIST ? BV_EEXIST : -errno,
			       "index backup %s: %s", dir, errno == EEXIST ?
			       "exists already (a backup is made in a new "
			       "directory, never over anything)" :
			       strerror(errno));
	snprintf(sub, sizeof sub, "%s/index", dir);
	if ((rc = bv_kv_checkpoint(s->kv, sub))) {
		rc = bv_fail(rc, "index backup %s: %s", dir, bv_kv_error());
		goto fail;
	}
	if ((rc = describe(sub, &in)))
		goto fail;
	if (memcmp(in.store_id, s->store_id, 16) != 0) {
		rc = bv_fail(BV_ECORRUPT, "index backup %s: the copy names "
			     "another store", dir);
		goto fail;
	}
	in.time = (int64_t)time(NULL);
	info_encode(b, &in);
	snprintf(sub, sizeof sub, "%s/" INFO_NAME, dir);
	fd = open(sub, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, b, sizeof b) != (ssize_t)sizeof b ||
	    fsync(fd) != 0) {
		rc = bv_fail(-(errno ? errno : EIO), "index backup %s: %s",
			     sub, strerror(errno ? errno : EIO));
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	close(fd);
	if ((rc = fsync_path(dir)) || (rc = fsync_parent(dir))) {
		rc = bv_fail(rc, "index backup %s: %s", dir, strerror(-rc));
		goto fail;
	}
	if (info)
		*info = in;
	return 0;
fail:
	/* Only what this call made: the new directory and its files. */
	snprintf(sub, sizeof sub, "%s/index", dir);
	remove_own_dir(sub);
	remove_own_dir(dir);
	return rc;
}

int bv_index_backup_read(const char *dir, bv_index_backup_info *info)
{
	bv_index_backup_info in = { 0 }, db = { 0 };
	char sub[4096];
	uint8_t b[INFO_LEN + 1];
	ssize_t n;
	int fd, rc;

	bv_fail(0, "%s", "");
	if (!dir || !*dir || strlen(dir) > 3000)
		return bv_fail(BV_EINVAL, "index backup: no directory, or a "
			       "path too long");
	snprintf(sub, sizeof sub, "%s/" INFO_NAME, dir);
	if ((fd = open(sub, O_RDONLY | O_CLOEXEC)) < 0)
		return bv_fail(errno == ENOENT ? BV_ENOTFOUND : -errno,
			       "index backup %s: %s", dir, errno == ENOENT ?
			       "not a bvault index backup (no " INFO_NAME ")" :
			       strerror(errno));
	n = read(fd, b, sizeof b);
	close(fd);
	if ((rc = info_decode(b, n < 0 ? 0 : (size_t)n, &in)))
		return bv_fail(rc, "index backup %s: " INFO_NAME " is %s", dir,
			       rc == BV_EFORMAT ? "of a newer format" :
			       "damaged");
	snprintf(sub, sizeof sub, "%s/index", dir);
	if ((rc = describe(sub, &db)))
		return rc;
	if (memcmp(db.store_id, in.store_id, 16) != 0 ||
	    db.sequence != in.sequence)
		return bv_fail(BV_ECORRUPT, "index backup %s: index/ is not "
			       "the copy " INFO_NAME " describes", dir);
	if (info)
		*info = in;
	return 0;
}

/* ---- restore ------------------------------------------------------------- */

/* The backup IN must be of the store in STORE: the one its containers
 * name, and the one its index names when that index still opens. */
static int same_store(const char *store, const char *dir,
		      const bv_index_backup_info *in)
{
	bv_index_backup_info now = { 0 };
	char sub[4096], id[33], want[33];
	uint32_t which = 0;
	int rc;

	bv_ident_hex(in->store_id, want);
	snprintf(sub, sizeof sub, "%s/containers", store);
	rc = bv_cset_dir_owner(sub, now.store_id, &which);
	if (rc == 0 && memcmp(now.store_id, in->store_id, 16) != 0)
		return bv_fail(BV_EINVAL, "index backup %s is of store %s, but "
			       "the containers of %s are of store %s (container "
			       "%u): not this store's backup; nothing was "
			       "changed", dir, want, store,
			       bv_ident_hex(now.store_id, id), which);
	if (rc != 0 && rc != ST_ENOTFOUND)
		return bv_fail(BV_ECORRUPT, "store %s: container %u: its header "
			       "is damaged, so it cannot say whose it is; "
			       "nothing was changed", store, which);
	snprintf(sub, sizeof sub, "%s/index", store);
	if (describe(sub, &now) == 0 &&
	    memcmp(now.store_id, in->store_id, 16) != 0)
		return bv_fail(BV_EINVAL, "index backup %s is of store %s, but "
			       "%s is store %s: not this store's backup; "
			       "nothing was changed", dir, want, store,
			       bv_ident_hex(now.store_id, id));
	bv_fail(0, "%s", "");
	return 0;
}

/* The first STORE/index.old.N that does not exist, into BUF. */
static int old_name(const char *store, char *buf, size_t len)
{
	struct stat st;

	for (unsigned i = 1; i < 100000; i++) {
		snprintf(buf, len, "%s/index.old.%u", store, i);
		if (lstat(buf, &st) != 0 && errno == ENOENT)
			return 0;
	}
	return -EEXIST;
}

/* Takes the writer's lock of STORE (the marker file's flock) into
 * *LOCK: an index is never replaced under its writer. */
static int writer_lock(const char *store, int *lock)
{
	char marker[4096];

	snprintf(marker, sizeof marker, "%s/" BV_MARKER, store);
	if ((*lock = open(marker, O_RDONLY | O_CLOEXEC)) < 0 ||
	    flock(*lock, LOCK_EX | LOCK_NB) != 0)
		return bv_fail(errno == EWOULDBLOCK ? BV_EBUSY : -errno,
			       "store %s: %s", store, errno == EWOULDBLOCK ?
			       "open for writing in another process (stop "
			       "bvaultd, or the command using it, first: an "
			       "index cannot be replaced under its writer)" :
			       strerror(errno));
	return 0;
}

/* Puts the new index TMP (WHAT: "restored", "rebuilt") in place of
 * STORE/index, which is set aside as KEEP (STORE/index.old.N) when there
 * is one, then proves it with a writable open (OO), which takes the
 * writer's lock itself: *LOCK is given up first. On any failure the old
 * index is back in place and TMP holds the new one (the caller removes
 * it). */
static int swap_in(const char *store, const char *tmp, const char *what,
		   const bv_open_opts *oo, int *lock, char *keep,
		   size_t keeplen)
{
	char idx[4096], why[1024];
	struct stat st;
	bv_store *s = NULL;
	int rc = 0;

	snprintf(idx, sizeof idx, "%s/index", store);
	if (lstat(idx, &st) == 0 && ((rc = old_name(store, keep, keeplen)) ||
				     rename(idx, keep) != 0))
		return bv_fail(rc ? rc : -errno, "store %s: cannot set the "
			       "index aside: %s", store,
			       strerror(rc ? -rc : errno));
	if (rename(tmp, idx) != 0) {
		rc = bv_fail(-errno, "store %s: cannot put the %s index in "
			     "place: %s", store, what, strerror(errno));
		goto undo;
	}
	if ((rc = fsync_path(store))) {
		rename(idx, tmp);
		rc = bv_fail(rc, "store %s: cannot put the %s index in place: "
			     "%s", store, what, strerror(-rc));
		goto undo;
	}
	close(*lock);
	*lock = -1;
	if ((rc = bv_store_open(store, oo, &s))) {
		snprintf(why, sizeof why, "%s", s ? bv_store_error(s) :
			 bv_strerror(rc));
		bv_store_close(s);
		rename(idx, tmp);
		rc = bv_fail(rc, "store %s: the %s index does not open (%s); "
			     "the index it replaced is back in place", store,
			     what, why);
		goto undo;
	}
	bv_store_close(s);
	return 0;
undo:
	if (*keep && rename(keep, idx) == 0)
		fsync_path(store);
	return rc;
}

int bv_index_restore(const char *store, const char *dir,
		     bv_index_backup_info *info, char *old, size_t oldlen,
		     char *errbuf, size_t errlen)
{
	bv_index_backup_info in;
	bv_open_opts oo = { .accept_index_loss = 1 };
	char tmp[4096], keep[4096] = "", marker[4096];
	int rc, lock = -1;

	if ((rc = bv_check_marker(store)))
		goto out;
	if (strlen(store) > 3000) {
		rc = bv_fail(BV_EINVAL, "store %s: path too long", store);
		goto out;
	}
	if ((rc = writer_lock(store, &lock)) ||
	    (rc = bv_index_backup_read(dir, &in)) ||
	    (rc = same_store(store, dir, &in)))
		goto out;
	snprintf(tmp, sizeof tmp, "%s/index.restore", store);
	/* A copy a restore cut short left behind (ours: never the index). */
	remove_own_dir(tmp);
	snprintf(marker, sizeof marker, "%s/index", dir);
	if ((rc = copy_dir(marker, tmp)))
		goto fail_tmp;
	if ((rc = swap_in(store, tmp, "restored", &oo, &lock, keep,
			  sizeof keep)))
		goto fail_tmp;
	if (info)
		*info = in;
	if (old && oldlen)
		snprintf(old, oldlen, "%s", keep);
	rc = 0;
	goto out;
fail_tmp:
	remove_own_dir(tmp);
out:
	if (lock >= 0)
		close(lock);
	if (rc && errbuf && errlen)
		snprintf(errbuf, errlen, "%s", bv_last_error());
	return rc;
}

/* ---- rebuild ------------------------------------------------------------- */

struct replay {
	struct bv_kv *kv;
	uint64_t last, entries;
};

static int replay_one(void *ud, uint64_t lsn, int kind, const void *data,
		      size_t len)
{
	struct replay *r = ud;
	int rc;

	if (kind != BV_J_BATCH && kind != BV_J_SNAP_DATA)
		return 0;
	if ((rc = bv_kv_apply_log(r->kv, data, len)))
		return rc;
	r->last = lsn;
	r->entries++;
	return 0;
}

/* Replays the journal of STORE (store id ID) into a new database in
 * DIR. */
static int replay_into(const char *store, const uint8_t id[16],
		       const char *dir, uint64_t *entries)
{
	struct bv_kv_opts ko = { .create = 1 };
	struct bv_journal *j = NULL;
	struct replay r = { 0 };
	char jdir[4096];
	uint8_t v[8];
	int rc;

	snprintf(jdir, sizeof jdir, "%s/journal", store);
	if ((rc = bv_journal_open(jdir, id, 0, &j)))
		return bv_fail(rc, "store %s: %s", store, bv_journal_error());
	if (mkdir(dir, 0700) != 0) {
		rc = bv_fail(-errno, "index %s: %s", dir, strerror(errno));
		goto out;
	}
	if ((rc = bv_kv_open(dir, &ko, &r.kv))) {
		rc = bv_fail(rc, "index %s: %s", dir, bv_kv_error());
		goto out;
	}
	rc = bv_journal_replay(j, replay_one, &r);
	if (rc) {
		rc = bv_fail(rc, "store %s: %s", store, bv_kv_error()[0] &&
			     rc != ST_ECORRUPT && rc != ST_ENOTFOUND ?
			     bv_kv_error() : bv_journal_error());
		goto out;
	}
	bv_le64(v, r.last);
	if ((rc = bv_kv_put(r.kv, BV_CF_META, "jlsn", 4, v, 8, 1)) ||
	    (rc = bv_kv_flush(r.kv)))
		rc = bv_fail(rc, "index %s: %s", dir, bv_kv_error());
	*entries = r.entries;
out:
	bv_kv_close(r.kv);
	bv_journal_close(j);
	return rc;
}

int bv_index_rebuild(const char *store, bv_index_backup_info *info,
		     char *old, size_t oldlen, char *errbuf, size_t errlen)
{
	bv_open_opts oo = { .accept_index_loss = 1 };
	char tmp[4096], keep[4096] = "", sub[4096];
	uint8_t id[16];
	uint64_t entries = 0;
	uint32_t which;
	int rc, lock = -1;

	if ((rc = bv_check_marker(store)))
		goto out;
	if (strlen(store) > 3000) {
		rc = bv_fail(BV_EINVAL, "store %s: path too long", store);
		goto out;
	}
	if ((rc = writer_lock(store, &lock)))
		goto out;
	/* Whose store: the containers' headers say, else the journal's. */
	snprintf(sub, sizeof sub, "%s/containers", store);
	rc = bv_cset_dir_owner(sub, id, &which);
	if (rc == ST_ENOTFOUND) {
		snprintf(sub, sizeof sub, "%s/journal", store);
		rc = bv_journal_owner(sub, id);
	}
	if (rc) {
		rc = bv_fail(rc == ST_ENOTFOUND ? BV_ENOTFOUND : BV_ECORRUPT,
			     "store %s: %s", store, rc == ST_ENOTFOUND ?
			     "no container and no journal to rebuild the "
			     "index from" : "the first container's header is "
			     "damaged: it cannot say whose store this is");
		goto out;
	}
	snprintf(tmp, sizeof tmp, "%s/index.rebuild", store);
	remove_own_dir(tmp); /* a rebuild cut short: ours */
	snprintf(sub, sizeof sub, "%s/index.rebuild.seal", store);
	unlink(sub);
	if ((rc = replay_into(store, id, tmp, &entries)))
		goto fail_tmp;
	unlink(sub); /* the seal of the new database's own open */
	if ((rc = swap_in(store, tmp, "rebuilt", &oo, &lock, keep,
			  sizeof keep)))
		goto fail_tmp;
	snprintf(sub, sizeof sub, "%s/index", store);
	if (info && (rc = describe(sub, info)))
		goto out;
	if (info)
		info->sequence = entries;
	if (old && oldlen)
		snprintf(old, oldlen, "%s", keep);
	rc = 0;
	goto out;
fail_tmp:
	remove_own_dir(tmp);
out:
	if (lock >= 0)
		close(lock);
	if (rc && errbuf && errlen)
		snprintf(errbuf, errlen, "%s", bv_last_error());
	return rc;
}

