/*
 * view.c: writable copy-on-write views of an RP (bvault.h, "views";
 * storage/FORMAT.md, "Views"). A view keeps its writes in an overlay of
 * its own, STORE/views/NAME/:
 *   view.conf  what it is a view of (written once, checksummed)
 *   data       sparse: the overlay's blocks at their disk offsets
 *   map        two header slots (size, smallest size ever, written
 *              blocks, generation; checksummed), then one bit per
 *              BV_VIEW_BLOCK block: set, the block is in the overlay
 *   lock       an OFD lock (fcntl) on it: one bv_view_open at a time
 * Everything else reads from REPLICA@RP through bv_readers of the store
 * given; past the smallest size the view ever had, unwritten blocks read
 * zeros.
 *
 * Durability order, kept by bv_view_flush (numbered as in INVARIANTS.md):
 *  V1. The map on disk names only blocks whose data is durable: bits are
 *      set in memory only, after the block's pwrite; a flush takes a copy
 *      of the dirty map pages while no write is between its pwrite and
 *      its bit (the gate, held exclusively for the copy only), then
 *      fdatasyncs the data file, and only then writes the copied pages.
 *      (No MAP_SHARED mapping of the map: the kernel could write a page
 *      back before the data it names is durable.) An open fdatasyncs
 *      data, then map: a failed flush may have left pages in the cache
 *      that the open reads, and a flush of nothing must not report them
 *      durable.
 *  V2. Map pages are durable (fdatasync) before the header slot that
 *      names the size they go with; bits only ever go from 0 to 1 for
 *      blocks inside the size, so a torn page leaves each block old
 *      (read from the RP) or new. (The bits a shrink clears are past
 *      the size of a header made durable before them: V4.)
 *  V3. A header is written into the slot the previous flush did not
 *      use, with a checksum and a generation one higher, so a torn
 *      header write leaves the other slot, the one before, good.
 *  V4. Zeros and trims are holes punched into the data file with the
 *      block's bit set (a hole reads zeros): never "fall through" to the
 *      RP. A shrink cuts the data file and lowers the smallest size, so
 *      that a later grow reads zeros, not the RP; it first makes a
 *      header naming the new size and smallest size durable (under the
 *      flush lock), so that no crash or failed flush shows the old size
 *      over cut data or cleared bits.
 *  V5. A view never writes into the store: only STORE/views/. Creation
 *      builds the view in views/.new-NAME (every file fsynced) and
 *      renames it into place (the directory then fsynced): a crash
 *      leaves no half view; removal renames it to views/.rm-NAME first.
 *
 * Tests: every write, punch, truncate, sync and rename a view makes on
 * its own files is a step that bv_view_set_io_hook (view.h) sees first
 * and may fail; engine-view-fault records the steps to check the order
 * above, and fails each in turn. Unset, the hook costs a load and a
 * branch per step.
 *
 * Threads: every call but bv_view_close may run on several threads at
 * once. Writes hold the gate shared from their range check to their bit
 * setting, and the stripe locks of the blocks they touch (so that a
 * read-modify-write of a partial block never undoes a write beside it);
 * flush and resize hold it exclusively. Bits are atomics: a read issued
 * after a write returned sees it. The write path allocates nothing and
 * makes no system call besides its pwrite (pwritev) or fallocate.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "view.h"

#define CONF_MAGIC "BVVIEW01"
#define MAP_MAGIC "BVVMAP01"
#define CONF_SIZE 152
#define SLOT_SIZE 64
#define MAP_PAGE 4096u
#define MAP_BITS_AT (2 * MAP_PAGE) /* slot A at 0, slot B at 4096 */
#define BITS_PER_PAGE (MAP_PAGE * 8u)
#define WORDS_PER_PAGE (MAP_PAGE / 8u)
#define NSTRIPE 32u /* a write holds up to all of them: ThreadSanitizer
			 * follows at most 64 locks held at once */
#define POOL_MAX 4u

struct bv_view {
	bv_store *s;
	char name[BV_NAME_MAX + 1];
	char *dir;
	struct bv_view_conf conf;
	int lock_fd, data_fd, map_fd;
	int own_lock;              /* close lock_fd at close */

	pthread_rwlock_t gate;
	pthread_mutex_t stripe[NSTRIPE];
	pthread_mutex_t flush_lock;

	/* Under the gate: shared to read, exclusive to change. */
	uint64_t size, min_size;
	uint64_t nblocks;          /* blocks of SIZE */
	size_t npages;             /* bitmap pages allocated */
	_Atomic uint64_t *bits;
	_Atomic uint8_t *dirty;    /* per bitmap page */
	atomic_uint_fast64_t written; /* bits set below nblocks */
	atomic_int unflushed;
	uint64_t gen;              /* of the header slot last written */
	int flush_err;             /* sticky: a failed fdatasync */

	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	bv_reader *pool[POOL_MAX];
	unsigned npool, nmade;
};

static const uint8_t zeros[64 << 10];

/* ---- the test hook (view.h) -------------------------------------------- */

static bv_view_io_hook io_hook;
static void *io_hook_ud;

void bv_view_set_io_hook(bv_view_io_hook hook, void *ud)
{
	io_hook_ud = ud;
	io_hook = hook;
}

/* 0, or the hook's refusal of the step: a load and a branch when no hook
 * is set, the write path's whole cost. */
static inline int io_step(enum bv_view_step step, enum bv_view_file file,
			  const char *dir)
{
	if (__builtin_expect(io_hook != NULL, 0))
		return io_hook(io_hook_ud, step, file, dir);
	return 0;
}

/* ---- names and paths ------------------------------------------------- */

static int views_path(const bv_store *s, const char *leaf, char *buf,
		      size_t len)
{
	int n = snprintf(buf, len, "%s/views%s%s", s->path, leaf ? "/" : "",
			 leaf ? leaf : "");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int view_check_name(const char *name)
{
	int rc = bv_name_check("view", name);
	if (!rc && !strcmp(name, "lock"))
		rc = bv_fail(BV_EINVAL, "view name 'lock': taken by "
			     "STORE/views/lock");
	return rc;
}

/* RC with the calling thread's message prefixed by "view NAME: " (and
 * SUFFIX appended): the message is copied first, as bv_fail writes
 * where it lies. */
static int fail_wrap(int rc, const char *name, const char *suffix)
{
	char was[1024];
	snprintf(was, sizeof was, "%s", bv_last_error());
	return bv_fail(rc, "view %s: %s%s", name, was, suffix);
}

/* ---- the config record ------------------------------------------------ */

static void conf_encode(const struct bv_view_conf *c, uint8_t *b)
{
	memset(b, 0, CONF_SIZE);
	memcpy(b, CONF_MAGIC, 8);
	bv_le32(b + 8, 1);
	bv_le32(b + 12, c->chunk_size);
	memcpy(b + 16, c->replica, strlen(c->replica));
	bv_le64(b + 80, c->rp);
	bv_le64(b + 88, c->version);
	memcpy(b + 96, c->id, BV_ID_SIZE);
	bv_le64(b + 112, (uint64_t)c->created);
	bv_le64(b + 120, c->rp_size);
	memcpy(b + 128, c->store_id, 16);
	bv_le64(b + 144, bv_checksum64(b, 144));
}

static int conf_decode(const uint8_t *b, size_t len, struct bv_view_conf *c)
{
	if (len != CONF_SIZE || memcmp(b, CONF_MAGIC, 8) ||
	    bv_get_le64(b + 144) != bv_checksum64(b, 144) ||
	    bv_get_le32(b + 8) != 1 || b[16 + BV_NAME_MAX] != 0)
		return BV_ECORRUPT;
	memset(c, 0, sizeof *c);
	c->chunk_size = bv_get_le32(b + 12);
	memcpy(c->replica, b + 16, BV_NAME_MAX);
	c->rp = bv_get_le64(b + 80);
	c->version = bv_get_le64(b + 88);
	memcpy(c->id, b + 96, BV_ID_SIZE);
	c->created = (int64_t)bv_get_le64(b + 112);
	c->rp_size = bv_get_le64(b + 120);
	memcpy(c->store_id, b + 128, 16);
	if (c->rp_size % BV_SECTOR || c->rp == 0)
		return BV_ECORRUPT;
	return 0;
}

/* ---- the map header ---------------------------------------------------- */

struct slot_hdr {
	uint64_t gen, size, min_size, written;
};

static void slot_encode(const struct slot_hdr *h, uint8_t b[SLOT_SIZE])
{
	memset(b, 0, SLOT_SIZE);
	memcpy(b, MAP_MAGIC, 8);
	bv_le32(b + 8, 1);
	bv_le32(b + 12, BV_VIEW_BLOCK);
	bv_le64(b + 16, h->gen);
	bv_le64(b + 24, h->size);
	bv_le64(b + 32, h->min_size);
	bv_le64(b + 40, h->written);
	bv_le64(b + 56, bv_checksum64(b, 56));
}

static int slot_decode(const uint8_t b[SLOT_SIZE], struct slot_hdr *h)
{
	if (memcmp(b, MAP_MAGIC, 8) || bv_get_le64(b + 56) != bv_checksum64(b, 56)
	    || bv_get_le32(b + 8) != 1 || bv_get_le32(b + 12) != BV_VIEW_BLOCK)
		return BV_ECORRUPT;
	h->gen = bv_get_le64(b + 16);
	h->size = bv_get_le64(b + 24);
	h->min_size = bv_get_le64(b + 32);
	h->written = bv_get_le64(b + 40);
	if (h->size % BV_SECTOR || h->min_size % BV_SECTOR ||
	    h->size > (UINT64_C(1) << 62) || h->min_size > h->size ||
	    h->gen == 0)
		return BV_ECORRUPT;
	return 0;
}

static int read_full(int fd, void *buf, size_t len, uint64_t off,
		     size_t *got)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done,
				  (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	if (got)
		*got = done;
	else if (done < len)
		memset((uint8_t *)buf + done, 0, len - done);
	return 0;
}

static int write_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

/* write_full and fdatasync (fsync when FULL) as steps of FILE of the
 * view in DIR. */
static int step_write(enum bv_view_file file, const char *dir, int fd,
		      const void *buf, size_t len, uint64_t off)
{
	int rc = io_step(BV_VSTEP_WRITE, file, dir);
	return rc ? rc : write_full(fd, buf, len, off);
}

static int step_sync(enum bv_view_file file, const char *dir, int fd,
		     int full)
{
	int rc = io_step(BV_VSTEP_SYNC, file, dir);
	if (!rc && (full ? fsync(fd) : fdatasync(fd)) < 0)
		rc = -errno;
	return rc;
}

/* The newer good slot of the map file FD. */
static int header_read(int fd, struct slot_hdr *h)
{
	uint8_t b[2][SLOT_SIZE];
	struct slot_hdr x[2];
	int good[2], rc;

	if ((rc = read_full(fd, b[0], SLOT_SIZE, 0, NULL)) ||
	    (rc = read_full(fd, b[1], SLOT_SIZE, MAP_PAGE, NULL)))
		return rc;
	good[0] = slot_decode(b[0], &x[0]) == 0;
	good[1] = slot_decode(b[1], &x[1]) == 0;
	if (!good[0] && !good[1])
		return BV_ECORRUPT;
	if (good[0] && (!good[1] || x[0].gen > x[1].gen))
		*h = x[0];
	else
		*h = x[1];
	return 0;
}

static int header_write(const char *dir, int fd, const struct slot_hdr *h)
{
	uint8_t b[SLOT_SIZE];
	slot_encode(h, b);
	return step_write(BV_VFILE_HEADER, dir, fd, b, SLOT_SIZE,
			  (h->gen & 1) ? 0 : MAP_PAGE);
}

/* ---- reading the config ------------------------------------------------ */

static int conf_load(const char *dir, const char *name,
		     struct bv_view_conf *c)
{
	char path[4096];
	uint8_t b[CONF_SIZE + 1];
	struct stat st;
	size_t got = 0;
	int fd, rc, e;

	snprintf(path, sizeof path, "%s/view.conf", dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		e = errno;
		if (e != ENOENT)
			rc = bv_fail(-e, "view %s: %s: %s", name, path,
				     strerror(e));
		else if (stat(dir, &st) == 0)
			rc = bv_fail(BV_ECORRUPT, "view %s: %s is missing "
				     "(bvault view rm removes the view)", name,
				     path);
		else
			rc = bv_fail(BV_ENOTFOUND, "view %s: no such view",
				     name);
		goto out;
	}
	if ((rc = read_full(fd, b, sizeof b, 0, &got)))
		rc = bv_fail(rc, "view %s: %s: %s", name, path, strerror(-rc));
	else if (conf_decode(b, got, c))
		rc = bv_fail(BV_ECORRUPT, "view %s: %s is damaged", name, path);
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static int fsync_dir(const char *path);

/* ---- the views directory lock ---------------------------------------- */

/* Takes STORE/views/lock (made, with views/, when CREATE), exclusive or
 * shared. *FD -1 when there is no views/ and CREATE is 0. */
static int views_lock(bv_store *s, int create, int exclusive, int *fd)
{
	char path[4096];
	int rc, lfd = -1;

	*fd = -1;
	if ((rc = views_path(s, NULL, path, sizeof path))) {
		rc = bv_fail(rc, "store %s: views: %s", s->path, strerror(-rc));
		goto out;
	}
	if (create && mkdir(path, 0700) == 0) {
		/* views/ itself is durable (V5); else it goes, so that the
		 * next create makes it, and syncs, again */
		if ((rc = fsync_dir(s->path))) {
			rmdir(path);
			rc = bv_fail(rc, "store %s: syncing it after making %s: "
				     "%s", s->path, path, strerror(-rc));
			goto out;
		}
	} else if (create && errno != EEXIST) {
		rc = bv_fail(-errno, "store %s: cannot make %s: %s", s->path,
			     path, strerror(errno));
		goto out;
	}
	if (create)
		chmod(path, 0700);
	views_path(s, "lock", path, sizeof path);
	lfd = open(path, (create ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC,
		   0600);
	if (lfd < 0) {
		if (errno != ENOENT || create)
			rc = bv_fail(-errno, "store %s: %s: %s", s->path, path,
				     strerror(errno));
		goto out; /* no views/ yet: no views, nothing to lock */
	}
	while (flock(lfd, exclusive ? LOCK_EX : LOCK_SH) < 0) {
		if (errno == EINTR)
			continue;
		rc = bv_fail(-errno, "store %s: locking %s: %s", s->path, path,
			     strerror(errno));
		goto out;
	}
	*fd = lfd;
	lfd = -1;
out:
	if (lfd >= 0)
		close(lfd);
	return rc;
}

static void views_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* The view's own lock: an OFD write lock on DIR/lock (taken: 0; held by
 * an open elsewhere: BV_EBUSY). OFD locks can be tested without taking
 * them (view_in_use), which flock cannot. */
static int view_lock(const char *dir, const char *name, int *fd)
{
	char path[4096];
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	struct stat a, b;
	int rc = 0, lfd;

	*fd = -1;
	snprintf(path, sizeof path, "%s/lock", dir);
	if ((lfd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
		rc = errno == ENOENT ?
		     bv_fail(BV_ENOTFOUND, "view %s: no such view", name) :
		     bv_fail(-errno, "view %s: %s: %s", name, path,
			     strerror(errno));
		goto out;
	}
	if (fcntl(lfd, F_OFD_SETLK, &fl) < 0) {
		rc = errno == EAGAIN || errno == EACCES ?
		     bv_fail(BV_EBUSY, "view %s: in use (open in another "
			     "process or handle)", name) :
		     bv_fail(-errno, "view %s: locking %s: %s", name, path,
			     strerror(errno));
		goto out;
	}
	/* Removed (and maybe made again) between the open and the lock: the
	 * lock would be on a file no view has. */
	if (fstat(lfd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev) {
		rc = bv_fail(BV_ENOTFOUND, "view %s: no such view (removed "
			     "while opening)", name);
		goto out;
	}
	*fd = lfd;
	lfd = -1;
out:
	if (lfd >= 0)
		close(lfd);
	return rc;
}

static int view_in_use(const char *dir)
{
	char path[4096];
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd, used = 0;

	snprintf(path, sizeof path, "%s/lock", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fcntl(fd, F_OFD_GETLK, &fl) == 0)
		used = fl.l_type != F_UNLCK;
	close(fd);
	return used;
}

/* ---- removing a directory of the views -------------------------------- */

static int rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >=
		    (int)sizeof path)
			continue;
		if (unlink(path) < 0 && errno != ENOENT && !rc)
			rc = -errno;
	}
	closedir(d);
	if (rmdir(dir) < 0 && errno != ENOENT && !rc)
		rc = -errno;
	return rc;
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;
	if (fd < 0)
		return -errno;
	rc = step_sync(BV_VFILE_DIR, path, fd, 1);
	close(fd);
	return rc;
}

/* Leftovers of a create or remove cut short by a crash (V5): views/.new-*
 * and views/.rm-*. Called under the views lock, exclusive. */
static void sweep(bv_store *s)
{
	char dir[4096], path[4096];
	struct dirent *e;
	DIR *d;

	if (views_path(s, NULL, dir, sizeof dir) || !(d = opendir(dir)))
		return;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, ".new-", 5) && strncmp(e->d_name, ".rm-", 4))
			continue;
		if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) <
		    (int)sizeof path)
			rm_tree(path);
	}
	closedir(d);
}

/* ---- create, list, info, remove ---------------------------------------- */

/* DIR/LEAF of view NAME, with LEN bytes of BUF and SIZE long, fsynced;
 * the message names the file. */
static int make_file(const char *name, const char *dir, const char *leaf,
		     enum bv_view_file file, const void *buf, size_t len,
		     uint64_t size)
{
	char path[4096];
	int fd, rc = 0;

	snprintf(path, sizeof path, "%s/%s", dir, leaf);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (len)
		rc = step_write(file, dir, fd, buf, len, 0);
	if (!rc && size && !(rc = io_step(BV_VSTEP_TRUNCATE, file, dir)) &&
	    ftruncate(fd, (off_t)size) < 0)
		rc = -errno;
	if (!rc)
		rc = step_sync(file, dir, fd, 1);
	close(fd);
out:
	if (rc)
		rc = bv_fail(rc, "view %s: writing %s: %s", name, path,
			     strerror(-rc));
	return rc;
}

int bv_view_create(bv_store *s, const char *name, const char *replica,
		   uint64_t rp)
{
	struct bv_view_conf c;
	struct bv_rrec rr;
	struct slot_hdr h;
	char final[4096], tmp[4096], leaf[BV_NAME_MAX + 8], vdir[4096];
	uint8_t conf[CONF_SIZE], slot[SLOT_SIZE];
	uint64_t rp_real;
	struct stat st;
	int rc, lfd = -1, made = 0;

	bv_fail(0, "%s", "");
	if ((rc = view_check_name(name)))
		return rc;
	if (!replica || (rc = bv_name_check("replica", replica)))
		return replica ? rc : bv_fail(BV_EINVAL, "view %s: no replica "
					      "named", name);
	if (rp == 0)
		return bv_fail(BV_EINVAL, "view %s: of %s@0: a view is of a "
			       "recovery point, not of the head", name,
			       replica);
	memset(&c, 0, sizeof c);
	/* The RP is checked before views/ is made (a refused create leaves
	 * nothing), and again under the views lock, which whatever removes
	 * RPs holds while it reads the pins (FORMAT.md, "Views"). */
	if ((rc = bv_replica_at(s, replica, rp, &rr, &c.version, &c.rp_size,
				&rp_real)) ||
	    (rc = views_lock(s, 1, 1, &lfd)))
		goto out;
	if ((rc = bv_replica_at(s, replica, rp, &rr, &c.version, &c.rp_size,
				&rp_real)))
		goto out;
	if ((rc = bv_ident_get(s, rr.rid, c.version, c.id))) {
		rc = bv_fail(rc, "replica %s: identity of version %llu: %s",
			     replica, (unsigned long long)c.version,
			     bv_strerror(rc));
		goto out;
	}
	snprintf(c.replica, sizeof c.replica, "%s", replica);
	c.rp = rp_real;
	c.chunk_size = rr.chunk_size;
	c.created = (int64_t)time(NULL);
	memcpy(c.store_id, s->store_id, 16);
	sweep(s);
	snprintf(leaf, sizeof leaf, ".new-%s", name);
	if (views_path(s, name, final, sizeof final) ||
	    views_path(s, leaf, tmp, sizeof tmp) ||
	    views_path(s, NULL, vdir, sizeof vdir)) {
		rc = bv_fail(-ENAMETOOLONG, "view %s: path too long", name);
		goto out;
	}
	if (lstat(final, &st) == 0) {
		rc = bv_fail(BV_EEXIST, "view %s: a view of that name exists",
			     name);
		goto out;
	}
	if (mkdir(tmp, 0700) < 0) {
		rc = bv_fail(-errno, "view %s: cannot make %s: %s", name, tmp,
			     strerror(errno));
		goto out;
	}
	made = 1;
	conf_encode(&c, conf);
	h = (struct slot_hdr){ 1, c.rp_size, c.rp_size, 0 };
	slot_encode(&h, slot);
	if ((rc = make_file(name, tmp, "view.conf", BV_VFILE_CONF, conf,
			    sizeof conf, 0)) ||
	    (rc = make_file(name, tmp, "map", BV_VFILE_MAP, slot, sizeof slot,
			    0)) ||
	    (rc = make_file(name, tmp, "data", BV_VFILE_DATA, NULL, 0,
			    c.rp_size)) ||
	    (rc = make_file(name, tmp, "lock", BV_VFILE_LOCK, NULL, 0, 0)))
		goto out;
	if ((rc = fsync_dir(tmp))) {
		rc = bv_fail(rc, "view %s: syncing %s: %s", name, tmp,
			     strerror(-rc));
		goto out;
	}
	if ((rc = io_step(BV_VSTEP_RENAME, BV_VFILE_DIR, tmp)) ||
	    (rename(tmp, final) < 0 && (rc = -errno))) {
		rc = bv_fail(rc, "view %s: renaming %s to %s: %s", name, tmp,
			     final, strerror(-rc));
		goto out;
	}
	made = 0;
	if ((rc = fsync_dir(vdir)))
		rc = bv_fail(rc, "view %s: made, but syncing %s failed (the "
			     "view may not survive a power loss): %s", name,
			     vdir, strerror(-rc));
out:
	if (made)
		rm_tree(tmp);
	views_unlock(lfd);
	return rc;
}

/* Fills OUT for view NAME in DIR (its config, the map header, whether it
 * is open). */
static int info_load(const char *dir, const char *name, bv_view_info *out)
{
	struct bv_view_conf c;
	struct slot_hdr h;
	char path[4096];
	int fd, rc;

	if ((rc = conf_load(dir, name, &c)))
		return rc;
	snprintf(path, sizeof path, "%s/map", dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return bv_fail(errno == ENOENT ? BV_ECORRUPT : -errno,
			       "view %s: %s: %s", name, path, strerror(errno));
	rc = header_read(fd, &h);
	close(fd);
	if (rc)
		return bv_fail(rc == BV_ECORRUPT ? rc : rc, "view %s: %s: %s",
			       name, path, rc == BV_ECORRUPT ?
			       "both header slots are damaged" : strerror(-rc));
	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "%s", name);
	snprintf(out->replica, sizeof out->replica, "%s", c.replica);
	out->rp = c.rp;
	out->version = c.version;
	memcpy(out->id, c.id, BV_ID_SIZE);
	out->created = c.created;
	out->size = h.size;
	out->written_bytes = h.written * BV_VIEW_BLOCK;
	out->in_use = view_in_use(dir);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int bv_view_list(bv_store *s, int (*cb)(void *ud, const bv_view_info *v),
		 void *ud)
{
	char dir[4096], vdir[4096];
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	bv_view_info info;
	DIR *d = NULL;
	int rc, lfd = -1;

	bv_fail(0, "%s", "");
	if ((rc = views_lock(s, 0, 0, &lfd)) || lfd < 0)
		goto out;
	views_path(s, NULL, dir, sizeof dir);
	if (!(d = opendir(dir))) {
		rc = errno == ENOENT ? 0 : bv_fail(-errno, "store %s: %s: %s",
						   s->path, dir,
						   strerror(errno));
		goto out;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !strcmp(e->d_name, "lock"))
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			char **nn = realloc(names, nc * sizeof *names);
			if (!nn) {
				rc = -ENOMEM;
				goto out;
			}
			names = nn;
			cap = nc;
		}
		if (!(names[n] = strdup(e->d_name))) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	closedir(d);
	d = NULL;
	views_unlock(lfd);
	lfd = -1;
	if (n)
		qsort(names, n, sizeof *names, name_cmp);
	for (size_t i = 0; i < n; i++) {
		if (snprintf(vdir, sizeof vdir, "%s/%s", dir, names[i]) >=
		    (int)sizeof vdir)
			continue;
		rc = info_load(vdir, names[i], &info);
		if (rc == BV_ENOTFOUND) /* removed since the listing */
			continue;
		if (rc)
			goto out;
		if ((rc = cb(ud, &info)))
			goto out;
	}
	rc = 0;
out:
	if (d)
		closedir(d);
	views_unlock(lfd);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int bv_view_info_get(bv_store *s, const char *name, bv_view_info *out)
{
	char dir[4096];
	int rc;

	bv_fail(0, "%s", "");
	if ((rc = view_check_name(name)))
		return rc;
	if (views_path(s, name, dir, sizeof dir))
		return bv_fail(BV_EINVAL, "view %s: path too long", name);
	return info_load(dir, name, out);
}

int bv_view_remove(bv_store *s, const char *name)
{
	char dir[4096], gone[4096], vdir[4096], leaf[BV_NAME_MAX + 8];
	struct stat st;
	int rc, lfd = -1, vfd = -1;

	bv_fail(0, "%s", "");
	if ((rc = view_check_name(name)))
		return rc;
	if ((rc = views_lock(s, 0, 1, &lfd)))
		goto out;
	snprintf(leaf, sizeof leaf, ".rm-%s", name);
	if (lfd < 0 || views_path(s, name, dir, sizeof dir) ||
	    views_path(s, leaf, gone, sizeof gone) ||
	    views_path(s, NULL, vdir, sizeof vdir) || lstat(dir, &st) < 0) {
		rc = bv_fail(BV_ENOTFOUND, "view %s: no such view", name);
		goto out;
	}
	/* A view that lost its lock file cannot be open: it goes too. */
	if ((rc = view_lock(dir, name, &vfd)) &&
	    !(rc == BV_ENOTFOUND && stat(dir, &st) == 0))
		goto out;
	rc = 0;
	rm_tree(gone);
	if ((rc = io_step(BV_VSTEP_RENAME, BV_VFILE_DIR, dir)) ||
	    (rename(dir, gone) < 0 && (rc = -errno))) {
		rc = bv_fail(rc, "view %s: renaming %s to %s: %s", name, dir,
			     gone, strerror(-rc));
		goto out;
	}
	/* Gone once the rename is durable; the files go after (V5). A
	 * failed sync is said: the view is gone, but a power loss may bring
	 * it back (whole: the rename is atomic). */
	if ((rc = fsync_dir(vdir))) {
		rc = bv_fail(rc, "view %s: removed, but syncing %s failed (it "
			     "may come back after a power loss): %s", name,
			     vdir, strerror(-rc));
		goto out;
	}
	if ((rc = rm_tree(gone)) || (rc = fsync_dir(vdir)))
		rc = bv_fail(rc, "view %s: removed, but removing %s: %s", name,
			     gone, strerror(-rc));
out:
	if (vfd >= 0)
		close(vfd);
	views_unlock(lfd);
	return rc;
}

/* ---- the bitmap ---------------------------------------------------------- */

static inline int bit_get(const bv_view *v, uint64_t b)
{
	return (int)((atomic_load_explicit(&v->bits[b / 64],
					   memory_order_acquire) >> (b % 64)) & 1);
}

/* Sets the bits of blocks [B0, B1) (inside nblocks); caller holds the
 * gate shared. */
static void bits_set(bv_view *v, uint64_t b0, uint64_t b1)
{
	uint64_t added = 0;

	for (uint64_t b = b0; b < b1;) {
		uint64_t w = b / 64, lo = b % 64;
		uint64_t hi = b1 - w * 64 < 64 ? b1 - w * 64 : 64;
		uint64_t mask = (hi == 64 ? ~UINT64_C(0) :
				 (UINT64_C(1) << hi) - 1) &
				~((UINT64_C(1) << lo) - 1);
		uint64_t old = atomic_load_explicit(&v->bits[w],
						    memory_order_relaxed);
		if ((old & mask) != mask) {
			old = atomic_fetch_or_explicit(&v->bits[w], mask,
						       memory_order_release);
			added += (uint64_t)__builtin_popcountll(mask & ~old);
			atomic_store_explicit(&v->dirty[w / WORDS_PER_PAGE], 1,
					      memory_order_relaxed);
		}
		b = w * 64 + hi;
	}
	if (added)
		atomic_fetch_add(&v->written, added);
	atomic_store_explicit(&v->unflushed, 1, memory_order_relaxed);
}

/* Makes room for NBLOCKS blocks' bits (new bits 0); gate exclusive. */
static int bits_grow(bv_view *v, uint64_t nblocks)
{
	size_t np = (size_t)((nblocks + BITS_PER_PAGE - 1) / BITS_PER_PAGE);
	if (np == 0)
		np = 1;
	if (np <= v->npages)
		return 0;
	_Atomic uint64_t *nb = realloc((void *)v->bits,
				       np * (size_t)MAP_PAGE);
	if (!nb)
		return -ENOMEM;
	v->bits = nb;
	_Atomic uint8_t *nd = realloc((void *)v->dirty, np);
	if (!nd)
		return -ENOMEM;
	v->dirty = nd;
	for (size_t i = v->npages * WORDS_PER_PAGE; i < np * WORDS_PER_PAGE; i++)
		atomic_init(&v->bits[i], 0);
	for (size_t p = v->npages; p < np; p++)
		atomic_init(&v->dirty[p], 1); /* written over what is there */
	v->npages = np;
	return 0;
}

/* ---- stripes ----------------------------------------------------------- */

/* Locks the stripes of blocks [B0, B1) in ascending stripe order. */
static void stripes_lock(bv_view *v, uint64_t b0, uint64_t b1, int lock)
{
	uint64_t n = b1 - b0;
	if (n >= NSTRIPE) {
		for (unsigned i = 0; i < NSTRIPE; i++)
			lock ? pthread_mutex_lock(&v->stripe[i]) :
			       pthread_mutex_unlock(&v->stripe[i]);
		return;
	}
	unsigned first = (unsigned)(b0 % NSTRIPE);
	unsigned end = first + (unsigned)n; /* may pass NSTRIPE: wraps */
	for (unsigned i = 0; i < NSTRIPE; i++) {
		int in = (i >= first && i < end) || i + NSTRIPE < end;
		if (in)
			lock ? pthread_mutex_lock(&v->stripe[i]) :
			       pthread_mutex_unlock(&v->stripe[i]);
	}
}

/* ---- the reader pool ------------------------------------------------------ */

static int pool_take(bv_view *v, bv_reader **out)
{
	int rc = 0;

	pthread_mutex_lock(&v->pool_lock);
	while (v->npool == 0 && v->nmade == POOL_MAX)
		pthread_cond_wait(&v->pool_cond, &v->pool_lock);
	if (v->npool) {
		*out = v->pool[--v->npool];
		pthread_mutex_unlock(&v->pool_lock);
		return 0;
	}
	v->nmade++;
	pthread_mutex_unlock(&v->pool_lock);
	rc = bv_reader_open(v->s, v->conf.replica, v->conf.rp, out);
	if (rc) {
		pthread_mutex_lock(&v->pool_lock);
		v->nmade--;
		pthread_cond_signal(&v->pool_cond);
		pthread_mutex_unlock(&v->pool_lock);
		rc = fail_wrap(rc, v->name, "");
	}
	return rc;
}

static void pool_give(bv_view *v, bv_reader *r)
{
	pthread_mutex_lock(&v->pool_lock);
	v->pool[v->npool++] = r;
	pthread_cond_signal(&v->pool_cond);
	pthread_mutex_unlock(&v->pool_lock);
}

/* ---- reading ---------------------------------------------------------------- */

static int data_read(bv_view *v, uint8_t *dst, size_t len, uint64_t off)
{
	int rc = read_full(v->data_fd, dst, len, off, NULL);
	if (rc)
		return bv_fail(rc, "view %s: reading %s/data at %llu: %s",
			       v->name, v->dir, (unsigned long long)off,
			       strerror(-rc));
	return 0;
}

/* [OFF, OFF+LEN) of blocks not in the overlay: the RP below the
 * smallest size, zeros past it. */
static int rp_read(bv_view *v, uint8_t *dst, size_t len, uint64_t off)
{
	bv_reader *r;
	size_t n = 0;
	int rc;

	if (off < v->min_size)
		n = v->min_size - off < len ? (size_t)(v->min_size - off) : len;
	if (n < len)
		memset(dst + n, 0, len - n);
	if (n == 0)
		return 0;
	if ((rc = pool_take(v, &r)))
		return rc;
	rc = bv_reader_pread(r, dst, n, off);
	if (rc)
		rc = fail_wrap(rc, v->name, "");
	pool_give(v, r);
	return rc;
}

/* Reads [OFF, OFF+LEN) inside the size; gate held. */
static int view_read(bv_view *v, uint8_t *dst, size_t len, uint64_t off)
{
	while (len) {
		uint64_t b = off / BV_VIEW_BLOCK;
		int in = bit_get(v, b);
		uint64_t end = (b + 1) * BV_VIEW_BLOCK;
		/* the run of blocks of the same kind */
		while (end < off + len && bit_get(v, end / BV_VIEW_BLOCK) == in)
			end += BV_VIEW_BLOCK;
		size_t n = end - off < len ? (size_t)(end - off) : len;
		int rc = in ? data_read(v, dst, n, off) : rp_read(v, dst, n, off);
		if (rc)
			return rc;
		dst += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int range_check(bv_view *v, const char *what, uint64_t off,
		       uint64_t len, int aligned)
{
	if (aligned && (off % BV_SECTOR || len % BV_SECTOR))
		return bv_fail(BV_EALIGN, "view %s: %s %llu+%llu is not aligned "
			       "to 512 bytes", v->name, what,
			       (unsigned long long)off,
			       (unsigned long long)len);
	if (off > v->size || len > v->size - off)
		return bv_fail(BV_ERANGE, "view %s: %s %llu+%llu ends past the "
			       "size %llu", v->name, what,
			       (unsigned long long)off,
			       (unsigned long long)len,
			       (unsigned long long)v->size);
	return 0;
}

int bv_view_pread(bv_view *v, void *buf, size_t len, uint64_t off)
{
	int rc;

	bv_fail(0, "%s", "");
	pthread_rwlock_rdlock(&v->gate);
	rc = range_check(v, "read", off, len, 0);
	if (!rc)
		rc = view_read(v, buf, len, off);
	pthread_rwlock_unlock(&v->gate);
	return rc;
}

/* ---- writing ---------------------------------------------------------------- */

/* Block B's bytes inside the size: [B * BLOCK, *END). */
static uint64_t block_end(const bv_view *v, uint64_t b)
{
	uint64_t e = (b + 1) * BV_VIEW_BLOCK;
	return e < v->size ? e : v->size;
}

/* Writes SRC (NULL: zeros) to [OFF, OFF+LEN), inside the size, LEN > 0;
 * gate held shared. Partial blocks at either edge are read, patched and
 * written whole (under their stripes); whole blocks of zeros become
 * holes. */
/* Makes [A, B) of the data file a hole (zeros where holes cannot be
 * punched). */
static int punch(bv_view *v, uint64_t a, uint64_t b)
{
	int rc;

	if ((rc = io_step(BV_VSTEP_PUNCH, BV_VFILE_DATA, v->dir)))
		return rc;
	if (fallocate(v->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)a, (off_t)(b - a)) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	for (uint64_t p = a; p < b && !rc;) {
		size_t n = b - p < sizeof zeros ? (size_t)(b - p) : sizeof zeros;
		rc = step_write(BV_VFILE_DATA, v->dir, v->data_fd, zeros, n, p);
		p += n;
	}
	return rc;
}

static int overlay_write(bv_view *v, const uint8_t *src, uint64_t off,
			 uint64_t len)
{
	uint8_t head[BV_VIEW_BLOCK], tail[BV_VIEW_BLOCK];
	uint64_t end = off + len;
	uint64_t b0 = off / BV_VIEW_BLOCK, bl = (end - 1) / BV_VIEW_BLOCK;
	uint64_t s0 = b0 * BV_VIEW_BLOCK, e0 = block_end(v, b0);
	uint64_t sl = bl * BV_VIEW_BLOCK, el = block_end(v, bl);
	int hp = off > s0 || end < e0;          /* head block partial */
	int tp = bl != b0 && end < el;          /* tail block partial */
	uint64_t mid0 = hp ? e0 : off, mid1 = tp ? sl : end;
	struct iovec iov[3];
	int niov = 0, rc = 0;

	if (bl == b0 && hp)
		mid0 = mid1 = e0; /* all inside one block */
	stripes_lock(v, b0, bl + 1, 1);
	if (hp) {
		uint64_t pe = end < e0 ? end : e0;
		if ((rc = view_read(v, head, (size_t)(e0 - s0), s0)))
			goto out;
		if (src)
			memcpy(head + (off - s0), src, (size_t)(pe - off));
		else
			memset(head + (off - s0), 0, (size_t)(pe - off));
		iov[niov++] = (struct iovec){ head, (size_t)(e0 - s0) };
	}
	if (mid1 > mid0)
		iov[niov++] = (struct iovec){ src ? (void *)(src + (mid0 - off))
						  : NULL,
					      (size_t)(mid1 - mid0) };
	if (tp) {
		if ((rc = view_read(v, tail, (size_t)(el - sl), sl)))
			goto out;
		if (src)
			memcpy(tail, src + (sl - off), (size_t)(end - sl));
		else
			memset(tail, 0, (size_t)(end - sl));
		iov[niov++] = (struct iovec){ tail, (size_t)(el - sl) };
	}
	if (src) {
		/* One system call for the whole range. */
		uint64_t at = hp ? s0 : off;
		int i = 0;
		if ((rc = io_step(BV_VSTEP_WRITE, BV_VFILE_DATA, v->dir)))
			goto fail;
		while (i < niov) {
			ssize_t n = pwritev(v->data_fd, iov + i, niov - i,
					    (off_t)at);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				rc = -errno;
				goto fail;
			}
			at += (uint64_t)n;
			while (i < niov && (size_t)n >= iov[i].iov_len) {
				n -= (ssize_t)iov[i].iov_len;
				i++;
			}
			if (i < niov) {
				iov[i].iov_base = (uint8_t *)iov[i].iov_base + n;
				iov[i].iov_len -= (size_t)n;
			}
		}
	} else {
		/* Zeros: the partial edges written, whole blocks punched
		 * (V4). */
		if (hp && (rc = step_write(BV_VFILE_DATA, v->dir, v->data_fd,
					   head, (size_t)(e0 - s0), s0)))
			goto fail;
		if (tp && (rc = step_write(BV_VFILE_DATA, v->dir, v->data_fd,
					   tail, (size_t)(el - sl), sl)))
			goto fail;
		if (mid1 > mid0 && (rc = punch(v, mid0, mid1)))
			goto fail;
	}
	bits_set(v, b0, bl + 1);
	goto out;
fail:
	rc = bv_fail(rc, "view %s: writing %s/data at %llu: %s", v->name, v->dir,
		     (unsigned long long)off, strerror(-rc));
out:
	stripes_lock(v, b0, bl + 1, 0);
	return rc;
}

int bv_view_pwrite(bv_view *v, const void *buf, size_t len, uint64_t off)
{
	int rc;

	bv_fail(0, "%s", "");
	pthread_rwlock_rdlock(&v->gate);
	rc = range_check(v, "write", off, len, 1);
	if (!rc && len)
		rc = overlay_write(v, buf, off, len);
	pthread_rwlock_unlock(&v->gate);
	return rc;
}

int bv_view_zero(bv_view *v, uint64_t off, uint64_t len)
{
	int rc;

	bv_fail(0, "%s", "");
	pthread_rwlock_rdlock(&v->gate);
	rc = range_check(v, "zero", off, len, 1);
	if (!rc && len)
		rc = overlay_write(v, NULL, off, len);
	pthread_rwlock_unlock(&v->gate);
	return rc;
}

/* ---- flush, resize ------------------------------------------------------- */

int bv_view_flush(bv_view *v)
{
	uint8_t *pages = NULL;
	size_t *which = NULL, n = 0;
	struct slot_hdr h;
	int rc = 0;

	bv_fail(0, "%s", "");
	pthread_mutex_lock(&v->flush_lock);
	if (v->flush_err) {
		rc = bv_fail(v->flush_err, "view %s: an earlier flush failed "
			     "(%s): the view must be closed and reopened",
			     v->name, strerror(-v->flush_err));
		goto out;
	}
	/* V1: a copy of the dirty pages, with no write between its pwrite
	 * and its bits. */
	pthread_rwlock_wrlock(&v->gate);
	if (!atomic_load(&v->unflushed)) {
		pthread_rwlock_unlock(&v->gate);
		goto out;
	}
	for (size_t p = 0; p < v->npages; p++)
		n += atomic_load_explicit(&v->dirty[p], memory_order_relaxed);
	if (n && (!(pages = malloc(n * (size_t)MAP_PAGE)) ||
		  !(which = malloc(n * sizeof *which)))) {
		pthread_rwlock_unlock(&v->gate);
		rc = bv_fail(-ENOMEM, "view %s: flush: out of memory", v->name);
		goto out;
	}
	n = 0;
	for (size_t p = 0; p < v->npages; p++) {
		if (!atomic_load_explicit(&v->dirty[p], memory_order_relaxed))
			continue;
		uint64_t *dst = (uint64_t *)(void *)(pages + n * MAP_PAGE);
		for (size_t w = 0; w < WORDS_PER_PAGE; w++) {
			uint64_t x = atomic_load_explicit(
				&v->bits[p * WORDS_PER_PAGE + w],
				memory_order_relaxed);
			uint8_t le[8];
			bv_le64(le, x);
			memcpy(&dst[w], le, 8);
		}
		atomic_store_explicit(&v->dirty[p], 0, memory_order_relaxed);
		which[n++] = p;
	}
	h.gen = v->gen + 1;
	h.size = v->size;
	h.min_size = v->min_size;
	h.written = atomic_load(&v->written);
	atomic_store(&v->unflushed, 0);
	pthread_rwlock_unlock(&v->gate);

	if ((rc = step_sync(BV_VFILE_DATA, v->dir, v->data_fd, 0))) {
		v->flush_err = rc;
		rc = bv_fail(rc, "view %s: fdatasync of %s/data: %s", v->name,
			     v->dir, strerror(-rc));
		goto fail;
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = step_write(BV_VFILE_MAP, v->dir, v->map_fd,
				pages + i * MAP_PAGE, MAP_PAGE,
				MAP_BITS_AT + (uint64_t)which[i] * MAP_PAGE);
	/* V2, then V3. */
	if (!rc && (rc = step_sync(BV_VFILE_MAP, v->dir, v->map_fd, 0)))
		v->flush_err = rc;
	if (!rc)
		rc = header_write(v->dir, v->map_fd, &h);
	if (!rc && (rc = step_sync(BV_VFILE_HEADER, v->dir, v->map_fd, 0)))
		v->flush_err = rc;
	if (rc) {
		rc = bv_fail(rc, "view %s: writing %s/map: %s", v->name, v->dir,
			     strerror(-rc));
		goto fail;
	}
	v->gen = h.gen;
	goto out;
fail:
	/* What was taken for this flush is still to be written. */
	pthread_rwlock_wrlock(&v->gate);
	for (size_t i = 0; i < n; i++)
		if (which[i] < v->npages)
			atomic_store(&v->dirty[which[i]], 1);
	atomic_store(&v->unflushed, 1);
	pthread_rwlock_unlock(&v->gate);
out:
	pthread_mutex_unlock(&v->flush_lock);
	free(pages);
	free(which);
	return rc;
}

/* V4: a shrink's header, durable before the data file is cut and
 * before any flush writes the bits it clears (which are past the size it
 * names). Nothing changes in memory; flush lock and gate held. */
static int shrink_header(bv_view *v, uint64_t new_size, uint64_t nb)
{
	struct slot_hdr h;
	uint64_t cleared = 0;
	int rc;

	if (v->flush_err)
		return bv_fail(v->flush_err, "view %s: an earlier flush failed "
			       "(%s): the view must be closed and reopened",
			       v->name, strerror(-v->flush_err));
	for (uint64_t b = nb; b < v->nblocks; b++)
		cleared += (uint64_t)bit_get(v, b);
	h.gen = v->gen + 1;
	h.size = new_size;
	h.min_size = new_size < v->min_size ? new_size : v->min_size;
	h.written = atomic_load(&v->written) - cleared;
	if ((rc = header_write(v->dir, v->map_fd, &h)) ||
	    ((rc = step_sync(BV_VFILE_HEADER, v->dir, v->map_fd, 0)) &&
	     (v->flush_err = rc)))
		return bv_fail(rc, "view %s: resize: writing %s/map: %s",
			       v->name, v->dir, strerror(-rc));
	v->gen = h.gen;
	return 0;
}

int bv_view_resize(bv_view *v, uint64_t new_size)
{
	uint64_t nb = (new_size + BV_VIEW_BLOCK - 1) / BV_VIEW_BLOCK;
	int rc = 0;

	bv_fail(0, "%s", "");
	if (new_size % BV_SECTOR || new_size > (UINT64_C(1) << 62))
		return bv_fail(BV_EALIGN, "view %s: new size %llu is not a "
			       "multiple of 512 below 4 EiB", v->name,
			       (unsigned long long)new_size);
	pthread_mutex_lock(&v->flush_lock);
	pthread_rwlock_wrlock(&v->gate);
	if (new_size == v->size)
		goto out;
	if ((rc = bits_grow(v, nb))) {
		rc = bv_fail(rc, "view %s: resize: out of memory", v->name);
		goto out;
	}
	if (new_size < v->size && (rc = shrink_header(v, new_size, nb)))
		goto out;
	/* V4: the data past the new end goes, and the RP is read as ending
	 * there from now on. */
	if ((rc = io_step(BV_VSTEP_TRUNCATE, BV_VFILE_DATA, v->dir)) ||
	    (ftruncate(v->data_fd, (off_t)new_size) < 0 && (rc = -errno))) {
		rc = bv_fail(rc, "view %s: resizing %s/data: %s", v->name,
			     v->dir, strerror(-rc));
		/* A shrink's header is on disk: the next flush writes the
		 * size the view still has over it. */
		if (new_size < v->size)
			atomic_store(&v->unflushed, 1);
		goto out;
	}
	if (new_size < v->size) {
		uint64_t cleared = 0;
		for (uint64_t b = nb; b < v->nblocks; b++) {
			uint64_t m = UINT64_C(1) << (b % 64);
			if (atomic_fetch_and(&v->bits[b / 64], ~m) & m)
				cleared++;
			atomic_store(&v->dirty[b / BITS_PER_PAGE], 1);
		}
		atomic_fetch_sub(&v->written, cleared);
		if (new_size < v->min_size)
			v->min_size = new_size;
	} else {
		for (uint64_t p = v->nblocks / BITS_PER_PAGE;
		     p < (nb + BITS_PER_PAGE - 1) / BITS_PER_PAGE; p++)
			atomic_store(&v->dirty[p], 1);
	}
	v->size = new_size;
	v->nblocks = nb;
	atomic_store(&v->unflushed, 1);
out:
	pthread_rwlock_unlock(&v->gate);
	pthread_mutex_unlock(&v->flush_lock);
	return rc;
}

uint64_t bv_view_size(const bv_view *v)
{
	bv_view *w = (bv_view *)v;
	pthread_rwlock_rdlock(&w->gate);
	uint64_t n = w->size;
	pthread_rwlock_unlock(&w->gate);
	return n;
}

/* ---- extents ----------------------------------------------------------- */

/* Overlay blocks [OFF, END): 0 for a hole of the data file, 1 for data;
 * *N the run. */
static int data_extent(bv_view *v, uint64_t off, uint64_t end, uint64_t *n)
{
	off_t d = lseek(v->data_fd, (off_t)off, SEEK_DATA);
	if (d < 0 && errno != ENXIO)
		return bv_fail(-errno, "view %s: %s/data: %s", v->name, v->dir,
			       strerror(errno));
	if (d < 0 || (uint64_t)d >= end) {
		*n = end - off;
		return 0;
	}
	if ((uint64_t)d > off) {
		*n = (uint64_t)d - off;
		return 0;
	}
	off_t h = lseek(v->data_fd, (off_t)off, SEEK_HOLE);
	if (h < 0)
		return bv_fail(-errno, "view %s: %s/data: %s", v->name, v->dir,
			       strerror(errno));
	*n = ((uint64_t)h < end ? (uint64_t)h : end) - off;
	if (*n == 0)
		*n = end - off;
	return 1;
}

int bv_view_extent(bv_view *v, uint64_t off, uint64_t *len)
{
	uint64_t want = *len, run = 0;
	int kind = -1, rc = 0;
	bv_reader *r = NULL;

	bv_fail(0, "%s", "");
	pthread_rwlock_rdlock(&v->gate);
	if ((rc = range_check(v, "extent query", off, want, 0)))
		goto out;
	while (run < want) {
		uint64_t pos = off + run, lim = off + want, n;
		uint64_t b = pos / BV_VIEW_BLOCK;
		int in = bit_get(v, b), k;
		uint64_t end = (b + 1) * BV_VIEW_BLOCK;
		while (end < lim && bit_get(v, end / BV_VIEW_BLOCK) == in)
			end += BV_VIEW_BLOCK;
		if (end > lim)
			end = lim;
		if (in) {
			if ((k = data_extent(v, pos, end, &n)) < 0) {
				rc = k;
				goto out;
			}
		} else if (pos >= v->min_size) {
			k = 0;
			n = end - pos;
		} else {
			n = (end < v->min_size ? end : v->min_size) - pos;
			if (!r && (rc = pool_take(v, &r)))
				goto out;
			if ((k = bv_reader_extent(r, pos, &n)) < 0) {
				rc = fail_wrap(k, v->name, "");
				goto out;
			}
		}
		if (kind == -1)
			kind = k;
		else if (kind != k)
			break;
		run += n;
	}
	*len = run;
	rc = kind < 0 ? 0 : kind;
out:
	if (r)
		pool_give(v, r);
	pthread_rwlock_unlock(&v->gate);
	return rc;
}

/* ---- open and close ------------------------------------------------------ */

static void view_free(bv_view *v)
{
	if (v->data_fd >= 0)
		close(v->data_fd);
	if (v->map_fd >= 0)
		close(v->map_fd);
	if (v->own_lock && v->lock_fd >= 0)
		close(v->lock_fd);
	for (unsigned i = 0; i < v->npool; i++)
		bv_reader_close(v->pool[i]);
	pthread_rwlock_destroy(&v->gate);
	for (unsigned i = 0; i < NSTRIPE; i++)
		pthread_mutex_destroy(&v->stripe[i]);
	pthread_mutex_destroy(&v->flush_lock);
	pthread_mutex_destroy(&v->pool_lock);
	pthread_cond_destroy(&v->pool_cond);
	free((void *)v->bits);
	free((void *)v->dirty);
	free(v->dir);
	free(v);
}

int bv_view_open_locked(bv_store *s, const char *name, int lock_fd,
			bv_view **out)
{
	pthread_rwlockattr_t ra;
	struct slot_hdr h;
	struct bv_rrec rr;
	char path[4096];
	uint64_t ver, size, rp_real;
	uint8_t id[BV_ID_SIZE];
	bv_view *v;
	int rc;

	*out = NULL;
	if (!(v = calloc(1, sizeof *v)))
		return -ENOMEM;
	v->s = s;
	v->lock_fd = lock_fd;
	v->data_fd = v->map_fd = -1;
	snprintf(v->name, sizeof v->name, "%s", name);
	pthread_rwlockattr_init(&ra);
	/* A flush waits for the writes in flight, not for every later one. */
	pthread_rwlockattr_setkind_np(&ra,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&v->gate, &ra);
	pthread_rwlockattr_destroy(&ra);
	for (unsigned i = 0; i < NSTRIPE; i++)
		pthread_mutex_init(&v->stripe[i], NULL);
	pthread_mutex_init(&v->flush_lock, NULL);
	pthread_mutex_init(&v->pool_lock, NULL);
	pthread_cond_init(&v->pool_cond, NULL);
	if (views_path(s, name, path, sizeof path) || !(v->dir = strdup(path))) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = conf_load(v->dir, name, &v->conf)))
		goto fail;
	if (memcmp(v->conf.store_id, s->store_id, 16)) {
		rc = bv_fail(BV_ECORRUPT, "view %s: was made in another store "
			     "(its store id differs)", name);
		goto fail;
	}
	/* The RP must still be the version the view was made of. */
	if ((rc = bv_replica_at(s, v->conf.replica, v->conf.rp, &rr, &ver,
				&size, &rp_real))) {
		rc = fail_wrap(rc, name,
			     rc == BV_ENOTFOUND && s->read_only ?
			     " (a read-only store sees the RPs committed "
			     "before it was opened)" : "");
		goto fail;
	}
	if ((rc = bv_ident_get(s, rr.rid, ver, id)))
		goto fail;
	if (ver != v->conf.version || size != v->conf.rp_size ||
	    rr.chunk_size != v->conf.chunk_size ||
	    memcmp(id, v->conf.id, BV_ID_SIZE)) {
		rc = bv_fail(BV_ECORRUPT, "view %s: %s@%llu is no longer the "
			     "version the view was made of (version %llu, now "
			     "%llu)", name, v->conf.replica,
			     (unsigned long long)v->conf.rp,
			     (unsigned long long)v->conf.version,
			     (unsigned long long)ver);
		goto fail;
	}
	snprintf(path, sizeof path, "%s/map", v->dir);
	if ((v->map_fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
		rc = bv_fail(errno == ENOENT ? BV_ECORRUPT : -errno,
			     "view %s: %s: %s", name, path, strerror(errno));
		goto fail;
	}
	if ((rc = header_read(v->map_fd, &h))) {
		rc = bv_fail(rc, "view %s: %s: %s", name, path,
			     rc == BV_ECORRUPT ? "both header slots are "
			     "damaged" : strerror(-rc));
		goto fail;
	}
	v->gen = h.gen;
	v->size = h.size;
	v->min_size = h.min_size > v->conf.rp_size ? v->conf.rp_size :
						     h.min_size;
	v->nblocks = (h.size + BV_VIEW_BLOCK - 1) / BV_VIEW_BLOCK;
	if ((rc = bits_grow(v, v->nblocks)))
		goto fail;
	{
		uint8_t *page = malloc(MAP_PAGE);
		uint64_t count = 0;
		if (!page) {
			rc = -ENOMEM;
			goto fail;
		}
		for (size_t p = 0; p < v->npages && !rc; p++) {
			rc = read_full(v->map_fd, page, MAP_PAGE,
				       MAP_BITS_AT + (uint64_t)p * MAP_PAGE,
				       NULL);
			for (size_t w = 0; w < WORDS_PER_PAGE && !rc; w++) {
				uint64_t x = bv_get_le64(page + 8 * w);
				uint64_t b = ((uint64_t)p * WORDS_PER_PAGE + w) *
					     64;
				/* Bits past the size are not the view's. */
				if (b >= v->nblocks)
					x = 0;
				else if (v->nblocks - b < 64)
					x &= (UINT64_C(1) << (v->nblocks - b)) - 1;
				atomic_init(&v->bits[p * WORDS_PER_PAGE + w], x);
				count += (uint64_t)__builtin_popcountll(x);
			}
			atomic_init(&v->dirty[p], 0);
		}
		free(page);
		if (rc) {
			rc = bv_fail(rc, "view %s: reading %s: %s", name, path,
				     strerror(-rc));
			goto fail;
		}
		atomic_init(&v->written, count);
	}
	snprintf(path, sizeof path, "%s/data", v->dir);
	if ((v->data_fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
		rc = bv_fail(errno == ENOENT ? BV_ECORRUPT : -errno,
			     "view %s: %s: %s", name, path, strerror(errno));
		goto fail;
	}
	/* After a crash the data file may have the length of a resize that
	 * was not flushed: it takes the flushed size (bytes past it are no
	 * block's). */
	if ((rc = io_step(BV_VSTEP_TRUNCATE, BV_VFILE_DATA, v->dir)) ||
	    (ftruncate(v->data_fd, (off_t)v->size) < 0 && (rc = -errno)) ||
	    (rc = step_sync(BV_VFILE_DATA, v->dir, v->data_fd, 0))) {
		rc = bv_fail(rc, "view %s: %s: %s", name, path, strerror(-rc));
		goto fail;
	}
	/* V1: what a failed flush of an earlier open left in the page cache
	 * is read as the view: it is made durable, data then map, before a
	 * flush of this open can say the view is. */
	if ((rc = step_sync(BV_VFILE_MAP, v->dir, v->map_fd, 0))) {
		rc = bv_fail(rc, "view %s: %s/map: %s", name, v->dir,
			     strerror(-rc));
		goto fail;
	}
	*out = v;
	return 0;
fail:
	v->own_lock = 0;
	view_free(v);
	return rc;
}

int bv_view_open(bv_store *s, const char *name, bv_view **out)
{
	char dir[4096];
	int rc, fd = -1;

	bv_fail(0, "%s", "");
	*out = NULL;
	if ((rc = view_check_name(name)))
		return rc;
	if (views_path(s, name, dir, sizeof dir))
		return bv_fail(BV_EINVAL, "view %s: path too long", name);
	if ((rc = view_lock(dir, name, &fd)))
		return rc;
	if ((rc = bv_view_open_locked(s, name, fd, out))) {
		close(fd);
		return rc;
	}
	(*out)->own_lock = 1;
	return 0;
}

int bv_view_close(bv_view *v)
{
	int rc;

	if (!v)
		return 0;
	rc = bv_view_flush(v);
	view_free(v);
	return rc;
}

/* ---- for promote (view.h) ------------------------------------------------- */

const struct bv_view_conf *bv_view_conf_of(const bv_view *v)
{
	return &v->conf;
}

uint64_t bv_view_min_size(const bv_view *v)
{
	return v->min_size;
}

int bv_view_block_written(const bv_view *v, uint64_t b0, uint64_t b1)
{
	for (uint64_t b = b0; b < b1 && b < v->nblocks; b++)
		if (bit_get(v, b))
			return 1;
	return 0;
}

int bv_view_lock_name(bv_store *s, const char *name, int *fd)
{
	char dir[4096];
	int rc;

	if ((rc = view_check_name(name)))
		return rc;
	if (views_path(s, name, dir, sizeof dir))
		return bv_fail(BV_EINVAL, "view %s: path too long", name);
	return view_lock(dir, name, fd);
}

/* ---- pins (for removals: lifecycle.c) ---------------------------------- */

int bv_view_pins_lock(bv_store *s, int create, int *lock_fd,
		      struct bv_view_pin **out, size_t *nout)
{
	char dir[4096], vdir[4096];
	struct bv_view_pin *pins = NULL;
	size_t n = 0, cap = 0;
	struct bv_view_conf c;
	struct dirent *e;
	DIR *d = NULL;
	int rc;

	*out = NULL;
	*nout = 0;
	/* Made if missing (CREATE, for a removal): a create that comes
	 * later takes the same lock and checks its RP after this removal
	 * (FORMAT.md, "Pins"). Without CREATE (a dry run, which changes
	 * nothing) no views/ means no pins. */
	if ((rc = views_lock(s, create, 1, lock_fd)))
		return rc;
	if (*lock_fd < 0)
		return 0;
	views_path(s, NULL, dir, sizeof dir);
	if (!(d = opendir(dir))) {
		rc = bv_fail(-errno, "store %s: %s: %s", s->path, dir,
			     strerror(errno));
		goto out;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !strcmp(e->d_name, "lock") ||
		    strlen(e->d_name) > BV_NAME_MAX)
			continue; /* not a view's name */
		if (snprintf(vdir, sizeof vdir, "%s/%s", dir, e->d_name) >=
		    (int)sizeof vdir)
			continue;
		if ((rc = conf_load(vdir, e->d_name, &c)))
			goto out; /* a damaged view pins what we cannot tell */
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct bv_view_pin *np = realloc(pins, nc * sizeof *np);
			if (!np) {
				rc = -ENOMEM;
				goto out;
			}
			pins = np;
			cap = nc;
		}
		memcpy(pins[n].view, e->d_name, strlen(e->d_name) + 1);
		snprintf(pins[n].replica, sizeof pins[n].replica, "%s",
			 c.replica);
		pins[n].rp = c.rp;
		pins[n].version = c.version;
		n++;
	}
	*out = pins;
	*nout = n;
	pins = NULL;
out:
	if (d)
		closedir(d);
	free(pins);
	if (rc) {
		views_unlock(*lock_fd);
		*lock_fd = -1;
	}
	return rc;
}

void bv_view_pins_unlock(int lock_fd, struct bv_view_pin *pins)
{
	free(pins);
	views_unlock(lock_fd);
}
