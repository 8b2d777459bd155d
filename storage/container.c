/*
 * container.c: append-only container files of chunk records.
 *
 * Durability invariants kept here (numbers are local to this file; the
 * store-wide invariants are in INVARIANTS.md, which lists these too):
 *
 *  C1 (the storage half of INVARIANTS.md 1) bv_cset_flush() returns 0
 *     only after every run appended before it is written and fdatasync'ed
 *     in every container touched since the previous flush, and the
 *     directory is fsync'ed when a container file was created since then.
 *     The tail it reports covers only such bytes. Ordering the index commit
 *     after the flush is the engine's part.
 *  C2 Open never cuts or removes a byte: the tail the index names may be
 *     stale (a damaged or restored index), so bytes past it are kept and
 *     listed (bv_cset_unknown_list) for the engine to report, and appends
 *     then go to a new container above every existing one. Only bytes
 *     this process appended itself and never made durable are cut, by
 *     bv_cset_rollback(): past the last flushed tail, in containers it
 *     created or in the tail container it was appending to.
 *  C3 Appends never touch bytes below the tail: records go at the current
 *     end only, and new container files are created with O_EXCL.
 *  C4 (INVARIANTS.md 4) bv_cset_read() hands out bytes only after the
 *     record header checksum, the header-versus-location match, the stored
 *     bytes' checksum, a safe decode to exactly raw_len bytes, and the keyed
 *     fingerprint of the decoded bytes all check.
 *  C5 After a failed write or fdatasync the set refuses to append or flush
 *     until bv_cset_rollback(): a failed fdatasync may have dropped dirty
 *     pages, so a retry could report bytes durable that are not.
 *
 * States of the write side (all transitions under cs->mu):
 *
 *   CLEAN  --bv_cset_appendv-->  DIRTY (written, not synced)
 *   DIRTY  --bv_cset_flush-->  CLEAN   (tail := end)
 *   DIRTY  --write/sync error--> BROKEN
 *   any    --bv_cset_rollback--> CLEAN (end := tail)
 *
 * The staging buffer always holds the last BUF_LEN bytes before CUR_END of
 * container CUR_ID; everything before that is written to the file.
 */
#include "container.h"
#include "cstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endian.h"
#include "errcodes.h"

#define FILE_MAGIC "BVCONTNR"       /* 8 bytes at offset 0 of a container */
#define FILE_VERSION 1u
#define FILE_HDR_USED 40u           /* bytes of the file header in use */
#define REC_MAGIC 0x43525642u       /* "BVRC" little-endian */
#define LOC_VERSION 1u
#define PAGE 4096u
#define RC_SLOTS 256                /* cached read fds */
#define READ_BATCH 256              /* records per bv_ring_run in reads */
/* The staging buffer holds a new container's file header until the first
 * run is written after it, and flush padding: two pages. */
#define BUF_BYTES (2u * PAGE)

_Static_assert(BV_CONTAINER_HDR % PAGE == 0, "header is whole pages");
_Static_assert(BV_REC_HDR == 48, "record header layout in FORMAT.md");


static _Thread_local char cs_err[512];

const char *bv_cset_error(void)
{
	return cs_err;
}

__attribute__((format(printf, 1, 2)))
static void set_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cs_err, sizeof(cs_err), fmt, ap);
	va_end(ap);
}

struct dirty_fd {
	uint32_t id;
	int fd;
};

struct rc_slot {
	uint32_t id;
	int direct;      /* the fd is O_DIRECT (bv_cset_read_runs) */
	int fd;          /* -1: free */
	unsigned refs;   /* reads using the fd right now */
	int doomed;      /* close when refs drops to 0 */
	uint64_t stamp;  /* LRU clock */
};

struct bv_cset {
	struct bv_cstore base; /* the container interface (cstore.h) */
	int read_only;
	int tenants;     /* fingerprints are tenant-tagged (bv_fp_check) */
	char *dir;
	int dirfd;
	uint64_t container_max;
	size_t cap;
	uint8_t secret[BV_SECRET_SIZE];
	uint8_t store_id[16];

	/* Write side, under mu. */
	pthread_mutex_t mu;
	int mu_init;
	uint8_t *buf;
	size_t buf_len;
	uint32_t cur_id;     /* 0: no container yet */
	uint64_t cur_end;    /* logical end, staged bytes included */
	int wfd;             /* fd of cur_id, -1 if none */
	int direct;          /* wfd is O_DIRECT: writes are page-aligned */
	int cur_dirty;       /* cur_id written since the last flush */
	int dir_dirty;       /* a container was created since the last flush */
	int broken;          /* C5: the error that broke the set, or 0 */
	uint32_t tail_id;    /* last flushed (durable) tail */
	uint64_t tail_end;
	/* C2: the first container id this process may create: above every
	 * container found at open. Containers from it on, and container
	 * TAIL_ID when APPENDABLE, hold only this process's appends, so a
	 * rollback may cut them; nothing else is ever cut or removed. */
	uint32_t own_first;
	int appendable;      /* container TAIL_ID is appended to (it ended
			      * exactly at the tail at open, or is ours) */
	uint32_t seal_id;    /* no append goes into a container up to this
			      * id again (bv_cset_seal) */
	struct bv_cset_unknown *unknown; /* found at open (C2) */
	size_t nunknown;
	struct dirty_fd *dirty; /* closed containers awaiting fdatasync */
	size_t ndirty, dirty_cap;

	/* Read fd cache, under rmu. */
	pthread_mutex_t rmu;
	int rmu_init;
	struct rc_slot rc[RC_SLOTS];
	uint64_t clock;
	/* The file system refused an O_DIRECT open (tmpfs), or BV_NO_DIRECT
	 * is set: bv_cset_read_runs reads through the page cache. */
	atomic_int no_direct;
};

struct rec_hdr {
	uint8_t codec;
	uint32_t raw_len;
	uint32_t stored_len;
	bv_fp fp;
	uint64_t csum;
};

/* ---- chunk locations ---------------------------------------------- */

/* Lengths and codec of a record are consistent (raw is never larger than
 * LZ4, see codec.h). */
static int lens_valid(uint8_t codec, uint32_t stored_len, uint32_t raw_len)
{
	if (stored_len == 0 || raw_len == 0)
		return 0;
	if (codec == BV_CODEC_RAW)
		return stored_len == raw_len;
	if (codec == BV_CODEC_LZ4)
		return stored_len < raw_len;
	return 0;
}

static int loc_valid(const struct bv_chunk_loc *l)
{
	return l->container != 0 && l->offset >= BV_CONTAINER_HDR &&
	       l->offset % 16 == 0 && l->offset <= (UINT64_MAX >> 2) &&
	       lens_valid(l->codec, l->stored_len, l->raw_len);
}

void bv_chunk_loc_encode(const struct bv_chunk_loc *l,
			 uint8_t out[BV_LOC_SIZE])
{
	out[0] = LOC_VERSION;
	out[1] = l->codec;
	out[2] = 0;
	out[3] = 0;
	bv_le32(out + 4, l->container);
	bv_le64(out + 8, l->offset);
	bv_le32(out + 16, l->stored_len);
	bv_le32(out + 20, l->raw_len);
}

int bv_chunk_entry_digest(const void *in, size_t len, uint8_t out[16])
{
	if (in == NULL || len != BV_LOC_DIGEST_SIZE)
		return 0;
	memcpy(out, (const uint8_t *)in + BV_LOC_SIZE, 16);
	return 1;
}

int bv_chunk_loc_decode(const void *in, size_t len, struct bv_chunk_loc *l)
{
	const uint8_t *p = in;
	struct bv_chunk_loc t;
	int ret = ST_ECORRUPT;

	if (p == NULL || (len != BV_LOC_SIZE && len != BV_LOC_DIGEST_SIZE) ||
	    p[0] != LOC_VERSION || p[2] != 0 || p[3] != 0)
		goto out;
	t.codec = p[1];
	t.container = bv_get_le32(p + 4);
	t.offset = bv_get_le64(p + 8);
	t.stored_len = bv_get_le32(p + 16);
	t.raw_len = bv_get_le32(p + 20);
	if (!loc_valid(&t))
		goto out;
	*l = t;
	ret = 0;
out:
	return ret;
}

/* ---- headers -------------------------------------------------------- */

static void rec_hdr_build(uint8_t h[BV_REC_HDR], const bv_fp *fp,
			  uint8_t codec, uint32_t stored_len, uint32_t raw_len,
			  uint64_t csum)
{
	bv_le32(h, REC_MAGIC);
	h[4] = codec;
	h[5] = 0; /* flags */
	h[6] = 0;
	h[7] = 0;
	bv_le32(h + 8, raw_len);
	bv_le32(h + 12, stored_len);
	memcpy(h + 16, fp->b, 16);
	bv_le64(h + 32, csum);
	bv_le64(h + 40, bv_checksum64(h, 40));
}

/* ST_ECORRUPT for a header that is not a record header or has impossible
 * fields, ST_ECHECKSUM when its checksum does not match. */
static int rec_hdr_parse(const uint8_t h[BV_REC_HDR], struct rec_hdr *r)
{
	int ret = ST_ECORRUPT;

	if (bv_get_le32(h) != REC_MAGIC)
		goto out;
	if (bv_get_le64(h + 40) != bv_checksum64(h, 40)) {
		ret = ST_ECHECKSUM;
		goto out;
	}
	r->codec = h[4];
	r->raw_len = bv_get_le32(h + 8);
	r->stored_len = bv_get_le32(h + 12);
	memcpy(r->fp.b, h + 16, 16);
	r->csum = bv_get_le64(h + 32);
	if (h[5] != 0 || h[6] != 0 || h[7] != 0 ||
	    !lens_valid(r->codec, r->stored_len, r->raw_len))
		goto out;
	ret = 0;
out:
	return ret;
}

static void file_hdr_build(const struct bv_cset *cs, uint32_t id,
			   uint8_t h[BV_CONTAINER_HDR])
{
	memset(h, 0, BV_CONTAINER_HDR);
	memcpy(h, FILE_MAGIC, 8);
	bv_le32(h + 8, FILE_VERSION);
	bv_le32(h + 12, id);
	memcpy(h + 16, cs->store_id, 16);
	bv_le64(h + 32, bv_checksum64(h, 32));
}

/* Checks the header of container ID open at FD: ST_ECORRUPT when it is
 * not ours (magic, id, store id, checksum), ST_EFORMAT for a version we do
 * not know. */
static int file_hdr_check(const struct bv_cset *cs, uint32_t id, int fd)
{
	/* A whole aligned page, so that an O_DIRECT fd reads it too. */
	_Alignas(PAGE) uint8_t h[PAGE];
	ssize_t n;
	int ret = ST_ECORRUPT;

	do
		n = pread(fd, h, sizeof(h), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		ret = -errno;
		goto out;
	}
	if ((size_t)n < FILE_HDR_USED || memcmp(h, FILE_MAGIC, 8) != 0 ||
	    bv_get_le64(h + 32) != bv_checksum64(h, 32))
		goto out;
	if (bv_get_le32(h + 8) != FILE_VERSION) {
		ret = ST_EFORMAT;
		goto out;
	}
	if (bv_get_le32(h + 12) != id || memcmp(h + 16, cs->store_id, 16) != 0)
		goto out;
	ret = 0;
out:
	return ret;
}

/* ---- names ---------------------------------------------------------- */

static int name_of(uint32_t id, char *buf, size_t n)
{
	int k = snprintf(buf, n, "%08u.bvc", id);

	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

/* The id of a container file name, or 0 when NAME is not one. Only the
 * exact form name_of() makes counts, so stray files are left alone. */
static uint32_t id_of(const char *name)
{
	char back[32];
	unsigned long v;
	char *end;

	if (name[0] < '0' || name[0] > '9')
		return 0;
	errno = 0;
	v = strtoul(name, &end, 10);
	if (errno != 0 || v == 0 || v > UINT32_MAX || strcmp(end, ".bvc") != 0)
		return 0;
	if (name_of((uint32_t)v, back, sizeof(back)) != 0 ||
	    strcmp(back, name) != 0)
		return 0;
	return (uint32_t)v;
}

int bv_cset_path(const struct bv_cset *cs, uint32_t id, char *buf, size_t n)
{
	int k = snprintf(buf, n, "%s/%08u.bvc", cs->dir, id);

	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

static int open_container(const struct bv_cset *cs, uint32_t id, int flags,
			  int *fd)
{
	char name[32];
	int ret = name_of(id, name, sizeof(name));

	if (ret != 0)
		goto out;
	*fd = openat(cs->dirfd, name, flags | O_CLOEXEC, 0600);
	if (*fd < 0)
		ret = -errno;
out:
	return ret;
}

/* ---- read fd cache -------------------------------------------------- */

/* An fd for container ID with a reference held (O_DIRECT when DIRECT);
 * *SLOT is -1 when the fd is private to the caller (cache full of busy
 * fds). */
static int rc_get(struct bv_cset *cs, uint32_t id, int direct, int *fd,
		  int *slot)
{
	int nfd = -1;
	int ret = 0;
	int victim = -1;

	pthread_mutex_lock(&cs->rmu);
	for (int i = 0; i < RC_SLOTS; i++) {
		struct rc_slot *s = &cs->rc[i];

		if (s->fd >= 0 && s->id == id && s->direct == direct &&
		    !s->doomed) {
			s->refs++;
			s->stamp = ++cs->clock;
			*fd = s->fd;
			*slot = i;
			pthread_mutex_unlock(&cs->rmu);
			goto out;
		}
	}
	pthread_mutex_unlock(&cs->rmu);

	/* Open and check outside the lock: other readers keep going. */
	ret = open_container(cs, id, O_RDONLY | (direct ? O_DIRECT : 0),
			     &nfd);
	if (ret != 0)
		goto out;
	ret = file_hdr_check(cs, id, nfd);
	if (ret != 0)
		goto out;

	pthread_mutex_lock(&cs->rmu);
	for (int i = 0; i < RC_SLOTS; i++) {
		struct rc_slot *s = &cs->rc[i];

		if (s->fd >= 0 && s->id == id && s->direct == direct &&
		    !s->doomed) {
			/* Another reader cached it meanwhile. */
			s->refs++;
			s->stamp = ++cs->clock;
			*fd = s->fd;
			*slot = i;
			pthread_mutex_unlock(&cs->rmu);
			goto out;
		}
		if (s->fd < 0) {
			if (victim < 0 || cs->rc[victim].fd >= 0)
				victim = i;
		} else if (s->refs == 0 && (victim < 0 ||
			   (cs->rc[victim].fd >= 0 &&
			    s->stamp < cs->rc[victim].stamp))) {
			victim = i;
		}
	}
	if (victim >= 0) {
		struct rc_slot *s = &cs->rc[victim];

		if (s->fd >= 0)
			close(s->fd);
		s->id = id;
		s->direct = direct;
		s->fd = nfd;
		s->refs = 1;
		s->doomed = 0;
		s->stamp = ++cs->clock;
		*slot = victim;
	} else {
		*slot = -1;
	}
	*fd = nfd;
	nfd = -1;
	pthread_mutex_unlock(&cs->rmu);
out:
	if (nfd >= 0)
		close(nfd);
	return ret;
}

static void rc_put(struct bv_cset *cs, int fd, int slot)
{
	struct rc_slot *s;

	if (slot < 0) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&cs->rmu);
	s = &cs->rc[slot];
	s->refs--;
	if (s->doomed && s->refs == 0) {
		close(s->fd);
		s->fd = -1;
		s->doomed = 0;
	}
	pthread_mutex_unlock(&cs->rmu);
}

/* Forgets the cached fds of container ID (about to be removed). */
static void rc_forget(struct bv_cset *cs, uint32_t id)
{
	pthread_mutex_lock(&cs->rmu);
	for (int i = 0; i < RC_SLOTS; i++) {
		struct rc_slot *s = &cs->rc[i];

		if (s->fd < 0 || s->id != id)
			continue;
		if (s->refs == 0) {
			close(s->fd);
			s->fd = -1;
		} else {
			s->doomed = 1;
		}
	}
	pthread_mutex_unlock(&cs->rmu);
}

/* Forgets cached fds of containers above ID (about to be removed): a new
 * container with the same id must not be read through the old inode. */
static void rc_forget_above(struct bv_cset *cs, uint32_t id)
{
	pthread_mutex_lock(&cs->rmu);
	for (int i = 0; i < RC_SLOTS; i++) {
		struct rc_slot *s = &cs->rc[i];

		if (s->fd < 0 || s->id <= id)
			continue;
		if (s->refs == 0) {
			close(s->fd);
			s->fd = -1;
		} else {
			s->doomed = 1;
		}
	}
	pthread_mutex_unlock(&cs->rmu);
}

/* ---- cutting back to the tail (C2) ---------------------------------- */

/* Opens a fresh listing of the container directory: fdopendir takes over
 * its fd, and a dup would share the read position with other listings. */
static int open_listing(struct bv_cset *cs, DIR **out)
{
	int dfd = openat(cs->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*out = NULL;
	if (dfd < 0)
		return -errno;
	*out = fdopendir(dfd);
	if (*out == NULL) {
		int e = -errno;
		close(dfd);
		return e;
	}
	return 0;
}

/* Calls FN for each container file of the directory (in directory
 * order), with its id and name; a non-zero return stops the walk and is
 * returned. Other files are left alone. */
static int each_container(struct bv_cset *cs,
			  int (*fn)(struct bv_cset *cs, uint32_t id,
				    const char *name, void *ud),
			  void *ud)
{
	DIR *d = NULL;
	struct dirent *e;
	int ret;

	ret = open_listing(cs, &d);
	while (ret == 0) {
		uint32_t cid;

		errno = 0;
		e = readdir(d);
		if (e == NULL) {
			if (errno != 0)
				ret = -errno;
			break;
		}
		cid = id_of(e->d_name);
		if (cid != 0)
			ret = fn(cs, cid, e->d_name, ud);
	}
	if (d != NULL)
		closedir(d);
	return ret;
}

struct own_above {
	uint32_t above;
	int removed;
};

static int remove_one(struct bv_cset *cs, uint32_t id, const char *name,
		      void *ud)
{
	struct own_above *o = ud;

	if (id <= o->above)
		return 0;
	if (unlinkat(cs->dirfd, name, 0) != 0 && errno != ENOENT)
		return -errno;
	o->removed = 1;
	return 0;
}

/* Removes the containers this process created past the durable tail
 * (ids above TAIL_ID, from OWN_FIRST on: C2), then fsyncs the directory
 * if one was removed, so that a removed container stays removed. */
static int remove_own_above(struct bv_cset *cs)
{
	struct own_above o = { cs->tail_id, 0 };
	int ret;

	if (o.above < cs->own_first - 1)
		o.above = cs->own_first - 1;
	rc_forget_above(cs, o.above);
	ret = each_container(cs, remove_one, &o);
	if (ret == 0 && o.removed && fsync(cs->dirfd) != 0)
		ret = -errno;
	return ret;
}

/* Container writes bypass the page cache when the file system allows
 * it (O_DIRECT; tmpfs does not): backup data is written once and read
 * rarely, and the copy into the page cache then writeback at fdatasync
 * was the ingest bottleneck. Every write is whole pages at a page offset
 * (runs are whole pages, and so is the header). */

static void try_direct(struct bv_cset *cs, int fd)
{
	int fl = fcntl(fd, F_GETFL);
	cs->direct = 0;
	if (fl >= 0 && !getenv("BV_NO_DIRECT") &&
	    fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
		cs->direct = 1;
}

/* Opens container TAIL_ID, checks that it is ours and holds at least
 * TAIL_END bytes, and tells its size. The error names the file and the
 * offset (bv_cset_error). */
static int check_tail(struct bv_cset *cs, int *fd_out, uint64_t *size)
{
	char path[4096];
	struct stat st;
	int fd = -1;
	int ret;

	*fd_out = -1;
	(void)bv_cset_path(cs, cs->tail_id, path, sizeof(path));
	ret = open_container(cs, cs->tail_id, O_RDWR, &fd);
	if (ret == -ENOENT) {
		set_err("container %s is missing, but the index records "
			"committed data in it up to offset %llu", path,
			(unsigned long long)cs->tail_end);
		ret = ST_ECORRUPT;
		goto out;
	}
	if (ret != 0) {
		set_err("container %s: %s", path, strerror(-ret));
		goto out;
	}
	ret = file_hdr_check(cs, cs->tail_id, fd);
	if (ret != 0) {
		set_err("container %s: the file header at offset 0 is %s",
			path, ret == ST_EFORMAT ? "of a format this build does "
			"not know" : ret == ST_ECORRUPT ? "damaged or not "
			"this store's" : strerror(-ret));
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		ret = -errno;
		set_err("container %s: %s", path, strerror(errno));
		goto out;
	}
	if ((uint64_t)st.st_size < cs->tail_end) {
		set_err("container %s ends at offset %llu, but the index "
			"records committed data in it up to offset %llu",
			path, (unsigned long long)st.st_size,
			(unsigned long long)cs->tail_end);
		ret = ST_ECORRUPT; /* committed bytes are missing */
		goto out;
	}
	*size = (uint64_t)st.st_size;
	*fd_out = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Makes container TAIL_ID, which ends exactly at TAIL_END or holds only
 * this process's uncommitted appends past it (rollback), the one to
 * append to: cut back to TAIL_END (C2). */
static int open_tail(struct bv_cset *cs)
{
	uint64_t size = 0;
	int fd = -1;
	int ret;

	ret = check_tail(cs, &fd, &size);
	if (ret != 0)
		goto out;
	if (size > cs->tail_end && ftruncate(fd, (off_t)cs->tail_end) != 0) {
		ret = -errno;
		goto out;
	}
	cs->wfd = fd;
	try_direct(cs, fd);
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Remembers bytes no commit names, found at open (C2). */
static int note_unknown(struct bv_cset *cs, uint32_t id, uint64_t from,
			uint64_t to)
{
	struct bv_cset_unknown *n;

	n = realloc(cs->unknown, (cs->nunknown + 1) * sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	cs->unknown = n;
	n[cs->nunknown++] = (struct bv_cset_unknown){ id, from, to };
	return 0;
}

/* Lists container ID whole when it lies above the tail (C2), and keeps
 * the highest id in *UD. */
static int note_above(struct bv_cset *cs, uint32_t id, const char *name,
		      void *ud)
{
	uint32_t *max_id = ud;
	struct stat st;
	int ret;

	if (id <= cs->tail_id)
		return 0;
	if (fstatat(cs->dirfd, name, &st, 0) != 0)
		return -errno;
	ret = note_unknown(cs, id, 0, (uint64_t)st.st_size);
	if (ret == 0 && id > *max_id)
		*max_id = id;
	return ret;
}

/* C2 at open: every container above the tail, and bytes of the tail
 * container past TAIL_END, are kept and listed; appends then go to a
 * new container above them all. Only a tail container that ends exactly
 * at the tail is appended to. */
static int find_unknown(struct bv_cset *cs)
{
	uint32_t max_id = cs->tail_id;
	uint64_t size = 0;
	int fd = -1;
	int ret;

	if (cs->tail_id != 0) {
		ret = check_tail(cs, &fd, &size);
		if (ret != 0)
			goto out;
		if (size > cs->tail_end) {
			ret = note_unknown(cs, cs->tail_id, cs->tail_end, size);
			if (ret != 0)
				goto out;
		}
	}
	ret = each_container(cs, note_above, &max_id);
	if (ret != 0)
		goto out;
	if (max_id == UINT32_MAX) {
		ret = -EFBIG;
		goto out;
	}
	cs->own_first = max_id + 1;
	if (cs->tail_id != 0 && cs->nunknown == 0) {
		/* The usual case: the tail container ends at the tail. */
		cs->wfd = fd;
		try_direct(cs, fd);
		fd = -1;
		cs->appendable = 1;
	} else {
		/* Appends start a container of their own (make_room). */
		cs->cur_id = max_id;
		cs->cur_end = 0;
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

size_t bv_cset_unknown_list(const struct bv_cset *cs,
			    const struct bv_cset_unknown **out)
{
	*out = cs->unknown;
	return cs->nunknown;
}

static void close_dirty(struct bv_cset *cs)
{
	for (size_t i = 0; i < cs->ndirty; i++)
		close(cs->dirty[i].fd);
	cs->ndirty = 0;
}

/* ---- open / close --------------------------------------------------- */

int bv_cset_create_dir(const char *dir)
{
	struct stat st;
	int ret = 0;

	if (mkdir(dir, 0700) != 0) {
		ret = -errno;
		if (ret == -EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
			ret = 0;
	}
	return ret;
}

int bv_cset_open(const char *dir, const struct bv_cset_opts *o,
		 uint32_t tail_id, uint64_t tail_end, struct bv_cset **out)
{
	struct bv_cset *cs = NULL;
	int ret;

	*out = NULL;
	if (dir == NULL || o == NULL || o->secret == NULL ||
	    (tail_id == 0 && tail_end != 0) ||
	    (tail_id != 0 && tail_end < BV_CONTAINER_HDR) ||
	    (o->container_max != 0 && o->container_max <= BV_CONTAINER_HDR)) {
		ret = ST_EINVAL;
		goto fail;
	}
	cs = calloc(1, sizeof(*cs));
	if (cs == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	cs->dirfd = -1;
	cs->wfd = -1;
	for (int i = 0; i < RC_SLOTS; i++)
		cs->rc[i].fd = -1;
	cs->container_max = o->container_max ? o->container_max
					     : BV_CONTAINER_MAX;
	cs->cap = BUF_BYTES;
	memcpy(cs->secret, o->secret, BV_SECRET_SIZE);
	if (o->store_id != NULL)
		memcpy(cs->store_id, o->store_id, 16);
	cs->tail_id = tail_id;
	cs->tail_end = tail_end;
	cs->cur_id = tail_id;
	cs->cur_end = tail_end;

	cs->dir = strdup(dir);
	if (cs->dir == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = pthread_mutex_init(&cs->mu, NULL);
	if (ret != 0) {
		ret = -ret;
		goto fail;
	}
	cs->mu_init = 1;
	ret = pthread_mutex_init(&cs->rmu, NULL);
	if (ret != 0) {
		ret = -ret;
		goto fail;
	}
	cs->rmu_init = 1;
	ret = posix_memalign((void **)&cs->buf, PAGE, cs->cap);
	if (ret != 0) {
		cs->buf = NULL;
		ret = -ret;
		goto fail;
	}
	cs->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cs->dirfd < 0) {
		ret = -errno;
		goto fail;
	}
	cs->read_only = o->read_only;
	cs->tenants = o->tenants;
	atomic_init(&cs->no_direct, getenv("BV_NO_DIRECT") != NULL);
	if (o->read_only) {
		/* Another process may be appending: leave every file as it
		 * is, read only what the tail given covers, write nothing. */
		cs->broken = -EROFS;
		*out = cs;
		return 0;
	}
	ret = find_unknown(cs);
	if (ret != 0)
		goto fail;
	*out = cs;
	return 0;
fail:
	bv_cset_close(cs);
	return ret;
}

void bv_cset_close(struct bv_cset *cs)
{
	if (cs == NULL)
		return;
	if (cs->wfd >= 0)
		close(cs->wfd);
	close_dirty(cs);
	free(cs->dirty);
	for (int i = 0; i < RC_SLOTS; i++)
		if (cs->rc[i].fd >= 0)
			close(cs->rc[i].fd);
	if (cs->dirfd >= 0)
		close(cs->dirfd);
	if (cs->rmu_init)
		pthread_mutex_destroy(&cs->rmu);
	if (cs->mu_init)
		pthread_mutex_destroy(&cs->mu);
	free(cs->buf);
	free(cs->unknown);
	free(cs->dir);
	free(cs);
}

/* ---- appending ------------------------------------------------------ */

/* Writes the staging buffer to the file. With O_DIRECT every write is
 * whole pages at a page-aligned offset (each flush period starts on a
 * page boundary): a partial last page stays staged, unless FINAL, when it
 * is written padded with zeros past the end (the container is closed, and
 * a scanner skips zero padding). Caller holds mu. */
static int write_out(struct bv_cset *cs, struct bv_ring *ring, int final)
{
	size_t len = cs->buf_len, keep = 0;
	uint64_t off = cs->cur_end - cs->buf_len;
	int ret = 0;

	if (len == 0)
		goto out;
	if (cs->direct && len % PAGE) {
		if (final) {
			size_t pad = PAGE - len % PAGE;
			memset(cs->buf + len, 0, pad); /* cap is whole pages */
			len += pad;
		} else {
			keep = len % PAGE;
			len -= keep;
			if (len == 0)
				goto out;
		}
	}
	ret = bv_ring_pwrite(ring, cs->wfd, cs->buf, len, off);
	if (ret != 0)
		goto out;
	if (keep)
		memmove(cs->buf, cs->buf + len, keep);
	cs->buf_len = keep;
	cs->cur_dirty = 1;
out:
	return ret;
}

/* Closes the current container (its fd waits in the dirty list for the
 * next flush's fdatasync) and starts container CUR_ID + 1, whose header
 * becomes the first staged bytes. Caller holds mu. */
static int roll_over(struct bv_cset *cs, struct bv_ring *ring)
{
	uint32_t id = cs->cur_id + 1;
	int fd = -1;
	int ret;

	if (id == 0) {
		ret = -EFBIG; /* 2^32 - 1 containers */
		goto out;
	}
	ret = write_out(cs, ring, 1);
	if (ret != 0)
		goto out;
	if (cs->wfd >= 0) {
		if (cs->cur_dirty) {
			if (cs->ndirty == cs->dirty_cap) {
				size_t nc = cs->dirty_cap ? cs->dirty_cap * 2 : 8;
				struct dirty_fd *nd;

				nd = realloc(cs->dirty, nc * sizeof(*nd));
				if (nd == NULL) {
					ret = -ENOMEM;
					goto out;
				}
				cs->dirty = nd;
				cs->dirty_cap = nc;
			}
			cs->dirty[cs->ndirty].id = cs->cur_id;
			cs->dirty[cs->ndirty].fd = cs->wfd;
			cs->ndirty++;
		} else {
			close(cs->wfd);
		}
		cs->wfd = -1;
	}
	ret = open_container(cs, id, O_RDWR | O_CREAT | O_EXCL, &fd);
	if (ret != 0)
		goto out;
	file_hdr_build(cs, id, cs->buf);
	cs->buf_len = BV_CONTAINER_HDR;
	cs->wfd = fd;
	try_direct(cs, fd);
	cs->cur_id = id;
	cs->cur_end = BV_CONTAINER_HDR;
	cs->cur_dirty = 1;
	cs->dir_dirty = 1;
out:
	return ret;
}

int64_t bv_rec_build(uint8_t *dst, const bv_fp *fp, uint8_t codec,
		     const void *stored, uint32_t stored_len, uint32_t raw_len)
{
	uint64_t rec;

	if (dst == NULL || fp == NULL || stored == NULL ||
	    !lens_valid(codec, stored_len, raw_len))
		return ST_EINVAL;
	rec = bv_rec_size(stored_len);
	rec_hdr_build(dst, fp, codec, stored_len, raw_len,
		      bv_checksum64(stored, stored_len));
	/* STORED may already be in place (the encoder wrote there). */
	if (stored != dst + BV_REC_HDR)
		memcpy(dst + BV_REC_HDR, stored, stored_len);
	memset(dst + BV_REC_HDR + stored_len, 0,
	       (size_t)rec - BV_REC_HDR - stored_len);
	return (int64_t)rec;
}

/* Starts a new container when BYTES more (a record or a run) cannot go
 * into the current one: none is open, or they would end past
 * container_max. Something larger than container_max still goes into an
 * empty container of its own. Caller holds cs->mu. */
static int make_room(struct bv_cset *cs, struct bv_ring *ring,
		     uint64_t bytes)
{
	if (cs->wfd < 0 || cs->cur_id <= cs->seal_id ||
	    (cs->cur_end > BV_CONTAINER_HDR &&
	     cs->cur_end + bytes > cs->container_max))
		return roll_over(cs, ring);
	return 0;
}

/* Pads the current container with zeros to a page boundary and writes
 * out everything staged. Caller holds mu. */
static int pad_and_write(struct bv_cset *cs, struct bv_ring *ring)
{
	int ret;

	if (cs->cur_id != 0 && cs->cur_end % PAGE != 0) {
		/* Zero padding to a page boundary: the next flush starts
		 * aligned, and a scanner knows a zero magic means "skip to
		 * the next page". */
		size_t pad = PAGE - (size_t)(cs->cur_end % PAGE);

		if (cs->buf_len + pad > cs->cap) {
			ret = write_out(cs, ring, 0);
			if (ret != 0)
				return ret;
		}
		memset(cs->buf + cs->buf_len, 0, pad);
		cs->buf_len += pad;
		cs->cur_end += pad;
	}
	return write_out(cs, ring, 1);
}

int bv_cset_appendv(struct bv_cset *cs, struct bv_ring *ring,
		    struct iovec *seg, unsigned nseg, uint32_t *container,
		    uint64_t *offset)
{
	size_t total = 0;
	int ret;

	if (cs == NULL || ring == NULL || seg == NULL || container == NULL ||
	    offset == NULL || nseg == 0 || nseg > BV_APPEND_MAX_SEG)
		return ST_EINVAL;
	for (unsigned i = 0; i < nseg; i++) {
		if (seg[i].iov_base == NULL || seg[i].iov_len == 0 ||
		    seg[i].iov_len % PAGE != 0 ||
		    (uintptr_t)seg[i].iov_base % PAGE != 0 ||
		    seg[i].iov_len > BV_APPEND_MAX - total)
			return ST_EINVAL;
		total += seg[i].iov_len;
	}
	pthread_mutex_lock(&cs->mu);
	ret = cs->broken;
	if (ret != 0)
		goto out;
	ret = make_room(cs, ring, total);
	if (ret != 0)
		goto broken;
	/* What is staged goes first, and the run starts on a page. */
	ret = pad_and_write(cs, ring);
	if (ret != 0)
		goto broken;
	struct bv_io io = { .fd = cs->wfd, .op = BV_IO_WRITEV, .iov = seg,
			    .niov = nseg, .len = total, .off = cs->cur_end };
	ret = bv_ring_run(ring, &io, 1);
	if (ret != 0)
		goto broken;
	*container = cs->cur_id;
	*offset = cs->cur_end;
	cs->cur_end += total;
	cs->cur_dirty = 1;
	goto out;
broken:
	cs->broken = ret;
out:
	pthread_mutex_unlock(&cs->mu);
	return ret;
}

int bv_cset_flush(struct bv_cset *cs, struct bv_ring *ring,
		  uint32_t *tail_id, uint64_t *tail_end)
{
	int ret;

	pthread_mutex_lock(&cs->mu);
	ret = cs->broken;
	if (ret != 0)
		goto out;
	ret = pad_and_write(cs, ring);
	if (ret != 0)
		goto broken;
	for (size_t i = 0; i < cs->ndirty; i++) {
		ret = bv_ring_fdatasync(ring, cs->dirty[i].fd);
		if (ret != 0)
			goto broken;
	}
	if (cs->cur_dirty) {
		ret = bv_ring_fdatasync(ring, cs->wfd);
		if (ret != 0)
			goto broken;
	}
	if (cs->dir_dirty) {
		ret = bv_ring_fdatasync(ring, cs->dirfd);
		if (ret != 0)
			goto broken;
	}
	close_dirty(cs);
	cs->cur_dirty = 0;
	cs->dir_dirty = 0;
	if (cs->wfd >= 0) {
		cs->tail_id = cs->cur_id;
		cs->tail_end = cs->cur_end;
		cs->appendable = 1;
	}
	goto out;
broken:
	cs->broken = ret;
out:
	if (ret == 0) {
		if (tail_id != NULL)
			*tail_id = cs->tail_id;
		if (tail_end != NULL)
			*tail_end = cs->tail_end;
	}
	pthread_mutex_unlock(&cs->mu);
	return ret;
}

int bv_cset_rollback(struct bv_cset *cs)
{
	int ret;

	pthread_mutex_lock(&cs->mu);
	cs->buf_len = 0;
	close_dirty(cs);
	if (cs->wfd >= 0) {
		close(cs->wfd);
		cs->wfd = -1;
	}
	cs->cur_dirty = 0;
	cs->dir_dirty = 0;
	ret = remove_own_above(cs);
	if (cs->appendable) {
		cs->cur_id = cs->tail_id;
		cs->cur_end = cs->tail_end;
		if (ret == 0)
			ret = open_tail(cs);
	} else {
		/* Nothing of ours is durable yet: the next append starts a
		 * container of its own again. */
		cs->cur_id = cs->own_first - 1;
		cs->cur_end = 0;
	}
	/* Still broken if the cut failed: appending now could land after
	 * bytes that are not committed. */
	cs->broken = ret;
	pthread_mutex_unlock(&cs->mu);
	return ret;
}

/* ---- reading (C4) --------------------------------------------------- */

static int verify_read(const struct bv_cset *cs, struct bv_chunk_read *r)
{
	const uint8_t *p = r->scratch;
	struct rec_hdr h;
	int ret;

	ret = rec_hdr_parse(p, &h);
	if (ret != 0)
		goto out;
	if (h.codec != r->loc.codec || h.raw_len != r->loc.raw_len ||
	    h.stored_len != r->loc.stored_len || !bv_fp_equal(&h.fp, &r->fp)) {
		ret = ST_ECORRUPT; /* the location names another record */
		goto out;
	}
	if (bv_checksum64(p + BV_REC_HDR, h.stored_len) != h.csum) {
		ret = ST_ECHECKSUM;
		goto out;
	}
	ret = bv_codec_decode(h.codec, p + BV_REC_HDR, h.stored_len, r->out,
			      h.raw_len);
	if (ret != 0)
		goto out;
	{
		bv_fp got;

		bv_fp_compute(cs->secret, r->out, h.raw_len, &got);
		if (!bv_fp_check(cs->secret, cs->tenants, &got, &r->fp, NULL))
			ret = ST_ECHECKSUM;
	}
out:
	return ret;
}

int bv_cset_read(struct bv_cset *cs, struct bv_ring *ring,
		 struct bv_chunk_read *reads, size_t n)
{
	struct bv_io ios[READ_BATCH];
	size_t which[READ_BATCH];
	int fds[READ_BATCH];
	int slots[READ_BATCH];
	int ret = 0;

	for (size_t base = 0; base < n; base += READ_BATCH) {
		size_t k = n - base < READ_BATCH ? n - base : READ_BATCH;
		size_t m = 0;

		for (size_t i = base; i < base + k; i++) {
			struct bv_chunk_read *r = &reads[i];
			int err;

			r->res = 0;
			if (r->out == NULL || r->scratch == NULL) {
				r->res = ST_EINVAL;
				continue;
			}
			if (!loc_valid(&r->loc)) {
				r->res = ST_ECORRUPT;
				continue;
			}
			err = rc_get(cs, r->loc.container, 0, &fds[m],
				     &slots[m]);
			if (err != 0) {
				r->res = err;
				continue;
			}
			/* loc_valid bounds offset to 2^62: no overflow. */
			ios[m] = (struct bv_io){
				.fd = fds[m],
				.op = BV_IO_READ,
				.buf = r->scratch,
				.len = (size_t)BV_REC_HDR + r->loc.stored_len,
				.off = r->loc.offset,
			};
			which[m] = i;
			m++;
		}
		(void)bv_ring_run(ring, ios, m);
		for (size_t j = 0; j < m; j++) {
			struct bv_chunk_read *r = &reads[which[j]];

			rc_put(cs, fds[j], slots[j]);
			if (ios[j].res < 0)
				r->res = (int)ios[j].res;
			else
				r->res = verify_read(cs, r);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (reads[i].res != 0) {
			ret = reads[i].res;
			break;
		}
	}
	return ret;
}

int bv_rec_hdr_parse(const uint8_t h[BV_REC_HDR], uint32_t container,
		     uint64_t offset, struct bv_chunk_loc *loc, bv_fp *fp)
{
	struct rec_hdr r;
	int ret = rec_hdr_parse(h, &r);

	if (ret != 0)
		return ret;
	*loc = (struct bv_chunk_loc){ .container = container,
				      .offset = offset, .codec = r.codec,
				      .stored_len = r.stored_len,
				      .raw_len = r.raw_len };
	*fp = r.fp;
	return 0;
}

int bv_cset_read_headers(struct bv_cset *cs, struct bv_ring *ring,
			 struct bv_chunk_read *reads, size_t n)
{
	struct bv_io ios[READ_BATCH];
	size_t which[READ_BATCH];
	int fds[READ_BATCH];
	int slots[READ_BATCH];
	int ret = 0;

	for (size_t base = 0; base < n; base += READ_BATCH) {
		size_t k = n - base < READ_BATCH ? n - base : READ_BATCH;
		size_t m = 0;

		for (size_t i = base; i < base + k; i++) {
			struct bv_chunk_read *r = &reads[i];
			int err;

			r->res = 0;
			if (r->scratch == NULL) {
				r->res = ST_EINVAL;
				continue;
			}
			if (!loc_valid(&r->loc)) {
				r->res = ST_ECORRUPT;
				continue;
			}
			err = rc_get(cs, r->loc.container, 0, &fds[m],
				     &slots[m]);
			if (err != 0) {
				r->res = err;
				continue;
			}
			ios[m] = (struct bv_io){
				.fd = fds[m],
				.op = BV_IO_READ,
				.buf = r->scratch,
				.len = BV_REC_HDR,
				.off = r->loc.offset,
			};
			which[m] = i;
			m++;
		}
		(void)bv_ring_run(ring, ios, m);
		for (size_t j = 0; j < m; j++) {
			struct bv_chunk_read *r = &reads[which[j]];
			struct rec_hdr h;

			rc_put(cs, fds[j], slots[j]);
			if (ios[j].res < 0) {
				r->res = (int)ios[j].res;
				continue;
			}
			r->res = rec_hdr_parse(r->scratch, &h);
			if (r->res == 0 &&
			    (h.codec != r->loc.codec ||
			     h.raw_len != r->loc.raw_len ||
			     h.stored_len != r->loc.stored_len ||
			     !bv_fp_equal(&h.fp, &r->fp)))
				r->res = ST_ECORRUPT;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (reads[i].res != 0) {
			ret = reads[i].res;
			break;
		}
	}
	return ret;
}

/* Runs of records (bv_cset_read_runs). */
#define RUN_GAP (64u << 10)  /* bytes between records read through */
#define RUN_MAX (2u << 20)   /* a run grows no longer than this */

struct run {
	uint32_t container;
	uint64_t from, to;   /* bytes of the file read */
	size_t first, n;     /* its reads: ORDER[first .. first+n) */
	size_t at;           /* where in the buffer */
	int fd, slot, direct;
};

/* Reads RUNS[0..NR) into BUF, then checks and decodes their records. */
static void runs_do(struct bv_cset *cs, struct bv_ring *ring,
		    struct bv_chunk_read *reads, const uint16_t *order,
		    struct run *runs, size_t nr, uint8_t *buf)
{
	struct bv_io ios[READ_BATCH];

	for (size_t i = 0; i < nr; i++)
		ios[i] = (struct bv_io){ .fd = runs[i].fd, .op = BV_IO_READ,
					 .buf = buf + runs[i].at,
					 .len = runs[i].to - runs[i].from,
					 .off = runs[i].from };
	(void)bv_ring_run(ring, ios, nr);
	for (size_t i = 0; i < nr; i++) {
		rc_put(cs, runs[i].fd, runs[i].slot);
		for (size_t k = 0; k < runs[i].n; k++) {
			struct bv_chunk_read *r = &reads[order[runs[i].first + k]];
			r->scratch = buf + runs[i].at +
				     (r->loc.offset - runs[i].from);
			r->res = ios[i].res < 0 ? (int)ios[i].res
						: verify_read(cs, r);
		}
	}
}

int bv_cset_read_runs(struct bv_cset *cs, struct bv_ring *ring,
		      struct bv_chunk_read *reads, size_t n, uint8_t *buf,
		      size_t buflen)
{
	uint16_t order[READ_BATCH];
	struct run runs[READ_BATCH];
	int ret = 0;

	for (size_t base = 0; base < n; base += READ_BATCH) {
		size_t k = n - base < READ_BATCH ? n - base : READ_BATCH;
		size_t m = 0, nr = 0, used = 0;

		/* The valid reads of this batch, by container and offset
		 * (insertion sort: they come nearly in order). */
		for (size_t i = base; i < base + k; i++) {
			struct bv_chunk_read *r = &reads[i];
			size_t j = m;

			r->res = 0;
			if (r->out == NULL) {
				r->res = ST_EINVAL;
				continue;
			}
			if (!loc_valid(&r->loc)) {
				r->res = ST_ECORRUPT;
				continue;
			}
			while (j > 0) {
				const struct bv_chunk_loc *a =
					&reads[order[j - 1]].loc;
				if (a->container < r->loc.container ||
				    (a->container == r->loc.container &&
				     a->offset <= r->loc.offset))
					break;
				order[j] = order[j - 1];
				j--;
			}
			order[j] = (uint16_t)i;
			m++;
		}
		for (size_t i = 0; i < m;) {
			const struct bv_chunk_loc *l = &reads[order[i]].loc;
			struct run *u = &runs[nr];
			size_t j = i + 1;
			uint64_t end = l->offset + BV_REC_HDR + l->stored_len;
			int err;

			/* loc_valid bounds offsets to 2^62: no overflow. */
			while (j < m) {
				const struct bv_chunk_loc *b =
					&reads[order[j]].loc;
				uint64_t e = b->offset + BV_REC_HDR +
					     b->stored_len;
				if (b->container != l->container ||
				    b->offset > end + RUN_GAP ||
				    e - l->offset > RUN_MAX)
					break;
				if (e > end)
					end = e;
				j++;
			}
			*u = (struct run){ .container = l->container,
					   .from = l->offset, .to = end,
					   .first = i, .n = j - i, .direct = 1 };
			err = atomic_load(&cs->no_direct) ? -EINVAL :
			      rc_get(cs, l->container, 1, &u->fd, &u->slot);
			if (err == -EINVAL)
				atomic_store(&cs->no_direct, 1);
			if (err == 0) {
				/* Whole pages: containers are padded to a
				 * page at every flush. */
				u->from -= u->from % PAGE;
				u->to += (PAGE - u->to % PAGE) % PAGE;
			} else {
				u->direct = 0;
				err = rc_get(cs, l->container, 0, &u->fd,
					     &u->slot);
			}
			if (err) {
				for (size_t q = i; q < j; q++)
					reads[order[q]].res = err;
				i = j;
				continue;
			}
			if (used + (u->to - u->from) > buflen) {
				if (nr == 0 || u->to - u->from > buflen) {
					rc_put(cs, u->fd, u->slot);
					for (size_t q = i; q < j; q++)
						reads[order[q]].res = ST_EINVAL;
					i = j;
					continue;
				}
				struct run keep = *u;
				runs_do(cs, ring, reads, order, runs, nr, buf);
				runs[0] = keep;
				u = &runs[0];
				nr = 0;
				used = 0;
			}
			u->at = used;
			used += u->to - u->from;
			used += (PAGE - used % PAGE) % PAGE;
			nr++;
			i = j;
		}
		if (nr)
			runs_do(cs, ring, reads, order, runs, nr, buf);
	}
	for (size_t i = 0; i < n; i++) {
		if (reads[i].res != 0) {
			ret = reads[i].res;
			break;
		}
	}
	return ret;
}

/* ---- scanning ------------------------------------------------------- */

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	int ret = 0;

	while (done < len) {
		ssize_t k = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (k < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		if (k == 0) {
			ret = -EIO;
			break;
		}
		done += (size_t)k;
	}
	return ret;
}

/* Grows *BUF to at least N bytes. */
static int grow(uint8_t **buf, size_t *cap, size_t n)
{
	uint8_t *nb;

	if (n <= *cap)
		return 0;
	nb = realloc(*buf, n);
	if (nb == NULL)
		return -ENOMEM;
	*buf = nb;
	*cap = n;
	return 0;
}

/* What one scan reads with: the file, how far, and growing buffers. */
struct scanner {
	struct bv_cset *cs;
	int fd;
	uint64_t limit;
	uint8_t *pbuf, *dbuf, *win;
	size_t pcap, dcap;
};

/* Reads what is at OFF: 0 for an intact record (LOC, FP, *NEXT after
 * it), 1 for flush padding (*NEXT: the next page), ST_ECORRUPT for
 * damage, or -errno. */
static int scan_at(struct scanner *sc, uint32_t id, uint64_t off,
		   struct bv_chunk_loc *loc, bv_fp *fp, uint64_t *next)
{
	uint64_t limit = sc->limit;
	uint8_t h[BV_REC_HDR];
	struct rec_hdr rh;
	uint64_t rec;
	size_t body;
	bv_fp got;
	int ret;

	if (limit - off >= 4) {
		ret = pread_full(sc->fd, h, 4, off);
		if (ret != 0)
			return ret;
	}
	if (limit - off < 4 || bv_get_le32(h) == 0) {
		/* Flush padding: zeros up to the next page (or the end).
		 * Never at a page start: a flush pads only a partial page. */
		uint64_t nx = (off + PAGE - 1) / PAGE * PAGE;
		size_t len;

		if (off % PAGE == 0)
			return ST_ECORRUPT;
		if (nx > limit)
			nx = limit;
		len = (size_t)(nx - off);
		ret = grow(&sc->pbuf, &sc->pcap, len);
		if (ret == 0)
			ret = pread_full(sc->fd, sc->pbuf, len, off);
		if (ret != 0)
			return ret;
		if (!bv_is_zero(sc->pbuf, len))
			return ST_ECORRUPT;
		*next = nx;
		return 1;
	}
	if (limit - off < BV_REC_HDR)
		return ST_ECORRUPT;
	ret = pread_full(sc->fd, h, BV_REC_HDR, off);
	if (ret != 0)
		return ret;
	if (rec_hdr_parse(h, &rh) != 0)
		return ST_ECORRUPT;
	rec = bv_rec_size(rh.stored_len);
	if (rec > limit - off)
		return ST_ECORRUPT;
	body = (size_t)(rec - BV_REC_HDR);
	ret = grow(&sc->pbuf, &sc->pcap, body);
	if (ret == 0)
		ret = grow(&sc->dbuf, &sc->dcap, rh.raw_len);
	if (ret == 0)
		ret = pread_full(sc->fd, sc->pbuf, body, off + BV_REC_HDR);
	if (ret != 0)
		return ret;
	if (bv_checksum64(sc->pbuf, rh.stored_len) != rh.csum ||
	    !bv_is_zero(sc->pbuf + rh.stored_len, body - rh.stored_len) ||
	    bv_codec_decode(rh.codec, sc->pbuf, rh.stored_len, sc->dbuf,
			    rh.raw_len) != 0)
		return ST_ECORRUPT;
	bv_fp_compute(sc->cs->secret, sc->dbuf, rh.raw_len, &got);
	if (!bv_fp_check(sc->cs->secret, sc->cs->tenants, &got, &rh.fp, NULL))
		return ST_ECORRUPT;
	loc->container = id;
	loc->offset = off;
	loc->stored_len = rh.stored_len;
	loc->raw_len = rh.raw_len;
	loc->codec = rh.codec;
	*fp = rh.fp;
	*next = off + rec;
	return 0;
}

/* ---- windowed scanning (bv_cset_scan_data) ---------------------------
 * A scan for verify reads the file in windows of WIN_BYTES through
 * io_uring, WIN_IO bytes a request and all of a window's requests in
 * flight, through an O_DIRECT descriptor where the file system takes one
 * (no copy out of the page cache: at these rates the copy, not the disk,
 * was most of the time). Records and padding wholly inside the window
 * are checked there, exactly as scan_at() checks them; anything else
 * (damage, a record across the window's end, the file's last partial
 * page) goes to scan_at(), which says what it is. */
#define WIN_BYTES (8u << 20)
#define WIN_IO (1u << 20)

struct window {
	int fd;               /* O_DIRECT when it could be, else buffered */
	struct bv_ring *ring;
	uint8_t *buf;         /* WIN_BYTES, page aligned */
	uint64_t from, to;    /* the file bytes BUF holds */
	uint64_t end;         /* windows reach no further: LIMIT in pages */
};

static void window_free(struct window *w)
{
	if (w->fd >= 0)
		close(w->fd);
	bv_ring_free(w->ring);
	free(w->buf);
}

static int window_open(struct bv_cset *cs, uint32_t id, uint64_t limit,
		       struct window *w)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->end = limit / PAGE * PAGE;
	ret = open_container(cs, id, O_RDONLY | (getenv("BV_NO_DIRECT") ?
						 0 : O_DIRECT), &w->fd);
	if (ret == -EINVAL)
		ret = open_container(cs, id, O_RDONLY, &w->fd);
	if (ret == 0)
		ret = bv_ring_new(WIN_BYTES / WIN_IO, &w->ring);
	if (ret == 0 && posix_memalign((void **)&w->buf, PAGE, WIN_BYTES))
		ret = -ENOMEM;
	return ret;
}

/* Reads the window of whole pages from the page of OFF. */
static int window_fill(struct window *w, uint64_t off)
{
	struct bv_io ios[WIN_BYTES / WIN_IO];
	uint64_t from = off / PAGE * PAGE;
	uint64_t to = from + WIN_BYTES < w->end ? from + WIN_BYTES : w->end;
	size_t n = 0;
	int ret;

	w->from = w->to = from;
	if (to <= from)
		return 0;
	for (uint64_t at = from; at < to; at += WIN_IO)
		ios[n++] = (struct bv_io){
			.fd = w->fd, .op = BV_IO_READ,
			.buf = w->buf + (at - from),
			.len = (size_t)(to - at < WIN_IO ? to - at : WIN_IO),
			.off = at,
		};
	ret = bv_ring_run(w->ring, ios, n);
	if (ret == 0)
		w->to = to;
	return ret;
}

/* What scan_at() does, on the bytes at OFF inside the window: 0 for an
 * intact record (its decoded bytes in SC->dbuf), 1 for padding, 2 when
 * the window cannot tell (scan_at() is asked). */
static int window_at(struct scanner *sc, struct window *w, uint32_t id,
		     uint64_t off, struct bv_chunk_loc *loc, bv_fp *fp,
		     uint64_t *next)
{
	const uint8_t *p;
	struct rec_hdr rh;
	uint64_t rec, avail;
	bv_fp got;

	if (off < w->from || off + BV_REC_HDR > w->to) {
		if (window_fill(w, off) != 0 || off + BV_REC_HDR > w->to)
			return 2;
	}
	p = w->buf + (off - w->from);
	avail = w->to - off;
	if (bv_get_le32(p) == 0) {
		uint64_t nx = (off + PAGE - 1) / PAGE * PAGE;
		if (off % PAGE == 0 || nx > w->to ||
		    !bv_is_zero(p, (size_t)(nx - off)))
			return 2;
		*next = nx;
		return 1;
	}
	if (rec_hdr_parse(p, &rh) != 0)
		return 2;
	rec = bv_rec_size(rh.stored_len);
	if (rec > sc->limit - off)
		return 2;
	if (rec > avail) {
		if (rec > WIN_BYTES - PAGE || window_fill(w, off) != 0 ||
		    rec > w->to - off)
			return 2;
		p = w->buf + (off - w->from);
	}
	if (grow(&sc->dbuf, &sc->dcap, rh.raw_len) != 0)
		return 2;
	if (bv_checksum64(p + BV_REC_HDR, rh.stored_len) != rh.csum ||
	    !bv_is_zero(p + BV_REC_HDR + rh.stored_len,
			(size_t)(rec - BV_REC_HDR - rh.stored_len)) ||
	    bv_codec_decode(rh.codec, p + BV_REC_HDR, rh.stored_len, sc->dbuf,
			    rh.raw_len) != 0)
		return 2;
	bv_fp_compute(sc->cs->secret, sc->dbuf, rh.raw_len, &got);
	if (!bv_fp_check(sc->cs->secret, sc->cs->tenants, &got, &rh.fp, NULL))
		return 2;
	loc->container = id;
	loc->offset = off;
	loc->stored_len = rh.stored_len;
	loc->raw_len = rh.raw_len;
	loc->codec = rh.codec;
	*fp = rh.fp;
	*next = off + rec;
	return 0;
}

#define RESYNC_WINDOW (1u << 20)

/* After damage at OFF: the first 16-aligned offset past it where an
 * intact record starts, or the limit. Record magics are looked for in
 * windows read at once, so that a long damaged run costs reads of a
 * MiB, not one read per 16 bytes. */
static int resync(struct scanner *sc, uint32_t id, uint64_t off,
		  uint64_t *good)
{
	uint64_t at = off + 16;
	int ret;

	if (sc->win == NULL) {
		sc->win = malloc(RESYNC_WINDOW);
		if (sc->win == NULL)
			return -ENOMEM;
	}
	while (at + 4 <= sc->limit) {
		size_t len = sc->limit - at < RESYNC_WINDOW ?
			     (size_t)(sc->limit - at) : RESYNC_WINDOW;

		ret = pread_full(sc->fd, sc->win, len, at);
		if (ret != 0)
			return ret;
		for (size_t i = 0; i + 4 <= len; i += 16) {
			struct bv_chunk_loc loc;
			uint64_t next;
			bv_fp fp;

			if (bv_get_le32(sc->win + i) != REC_MAGIC)
				continue;
			ret = scan_at(sc, id, at + i, &loc, &fp, &next);
			if (ret == 0) {
				*good = at + i;
				return 0;
			}
			if (ret != ST_ECORRUPT && ret != 1)
				return ret;
		}
		at += len;
	}
	*good = sc->limit;
	return 0;
}

static int scan_impl(struct bv_cset *cs, uint32_t id,
		     int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			       const bv_fp *fp),
		     int (*cbd)(void *ud, const struct bv_chunk_loc *loc,
				const bv_fp *fp, const void *raw),
		     int (*damage)(void *ud, uint32_t id, uint64_t off,
				   uint64_t len),
		     void *ud, uint64_t *bad_off);

int bv_cset_scan_all(struct bv_cset *cs, uint32_t id,
		     int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			       const bv_fp *fp),
		     int (*damage)(void *ud, uint32_t id, uint64_t off,
				   uint64_t len),
		     void *ud, uint64_t *bad_off)
{
	return scan_impl(cs, id, cb, NULL, damage, ud, bad_off);
}

int bv_cset_scan_data(struct bv_cset *cs, uint32_t id,
		      int (*cb)(void *ud, const struct bv_chunk_loc *loc,
				const bv_fp *fp, const void *raw),
		      int (*damage)(void *ud, uint32_t id, uint64_t off,
				    uint64_t len),
		      void *ud)
{
	uint64_t bad = 0;

	return scan_impl(cs, id, NULL, cb, damage, ud, &bad);
}

static int scan_impl(struct bv_cset *cs, uint32_t id,
		     int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			       const bv_fp *fp),
		     int (*cbd)(void *ud, const struct bv_chunk_loc *loc,
				const bv_fp *fp, const void *raw),
		     int (*damage)(void *ud, uint32_t id, uint64_t off,
				   uint64_t len),
		     void *ud, uint64_t *bad_off)
{
	struct scanner sc = { .cs = cs, .fd = -1 };
	uint64_t off = BV_CONTAINER_HDR;
	struct window w = { .fd = -1 };
	int windowed = 0;
	struct stat st;
	int ret;

	if (bad_off != NULL)
		*bad_off = 0;
	ret = open_container(cs, id, O_RDONLY, &sc.fd);
	if (ret != 0)
		goto out;
	if (fstat(sc.fd, &st) != 0) {
		ret = -errno;
		goto out;
	}
	sc.limit = (uint64_t)st.st_size;
	/* The container being appended: only what is written out counts,
	 * the staged bytes are not in the file yet. */
	pthread_mutex_lock(&cs->mu);
	if (id == cs->cur_id && cs->wfd >= 0 &&
	    sc.limit > cs->cur_end - cs->buf_len)
		sc.limit = cs->cur_end - cs->buf_len;
	pthread_mutex_unlock(&cs->mu);
	ret = file_hdr_check(cs, id, sc.fd);
	if (ret == ST_ECORRUPT || ret == ST_EFORMAT) {
		/* bad_off 0: the file header. The records after it are
		 * self-describing: with DAMAGE, they are read anyway. */
		off = 0;
		if (damage == NULL)
			goto out;
		ret = damage(ud, id, 0, sc.limit < BV_CONTAINER_HDR ?
			     sc.limit : BV_CONTAINER_HDR);
		off = BV_CONTAINER_HDR;
	}
	if (ret != 0)
		goto out;
	/* Only a scan that hands out the bytes reads in windows; a window
	 * that cannot be set up leaves the scan to scan_at(). */
	if (cbd != NULL && window_open(cs, id, sc.limit, &w) == 0)
		windowed = 1;
	while (off < sc.limit) {
		struct bv_chunk_loc loc;
		uint64_t next = 0;
		bv_fp fp;

		ret = windowed ? window_at(&sc, &w, id, off, &loc, &fp, &next) :
				 2;
		if (ret == 2)
			ret = scan_at(&sc, id, off, &loc, &fp, &next);
		if (ret == 0)
			ret = cbd ? cbd(ud, &loc, &fp, sc.dbuf) :
				    cb(ud, &loc, &fp);
		else if (ret == 1)
			ret = 0;
		else if (ret == ST_ECORRUPT && damage != NULL) {
			ret = resync(&sc, id, off, &next);
			if (ret == 0)
				ret = damage(ud, id, off, next - off);
		}
		if (ret != 0)
			goto out;
		off = next;
	}
	ret = 0;
out:
	if (ret == ST_ECORRUPT && bad_off != NULL)
		*bad_off = off;
	if (sc.fd >= 0)
		close(sc.fd);
	window_free(&w);
	free(sc.pbuf);
	free(sc.dbuf);
	free(sc.win);
	return ret;
}

int bv_cset_scan(struct bv_cset *cs, uint32_t id,
		 int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			   const bv_fp *fp),
		 void *ud, uint64_t *bad_off)
{
	return bv_cset_scan_all(cs, id, cb, NULL, ud, bad_off);
}

struct id_list {
	uint32_t *v;
	size_t n, cap;
};

static int add_id(struct bv_cset *cs, uint32_t id, const char *name, void *ud)
{
	struct id_list *l = ud;

	(void)cs;
	(void)name;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		uint32_t *nv = realloc(l->v, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = id;
	return 0;
}

static int id_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int bv_cset_list(struct bv_cset *cs, uint32_t **ids, size_t *n)
{
	struct id_list l = { 0 };
	int ret = each_container(cs, add_id, &l);

	*ids = NULL;
	*n = 0;
	if (ret != 0) {
		free(l.v);
		return ret;
	}
	if (l.n > 1)
		qsort(l.v, l.n, sizeof(*l.v), id_cmp);
	*ids = l.v;
	*n = l.n;
	return 0;
}

struct usage {
	uint64_t files, bytes;
};

static int add_usage(struct bv_cset *cs, uint32_t id, const char *name,
		     void *ud)
{
	struct usage *u = ud;
	struct stat st;

	(void)id;
	if (fstatat(cs->dirfd, name, &st, 0) != 0)
		return errno == ENOENT ? 0 : -errno; /* removed meanwhile */
	u->files++;
	u->bytes += (uint64_t)st.st_size;
	return 0;
}

int bv_cset_usage(struct bv_cset *cs, uint64_t *files, uint64_t *bytes)
{
	struct usage u = { 0, 0 };
	int ret = each_container(cs, add_usage, &u);

	if (ret == 0) {
		*files = u.files;
		*bytes = u.bytes;
	}
	return ret;
}

/* ---- the file backend behind the container interface (cstore.h) ---- */

void bv_ctail_file(struct bv_ctail *t, uint32_t id, uint64_t end)
{
	memset(t, 0, sizeof(*t));
	if (id == 0)
		return;
	t->len = 12;
	bv_le32(t->b, id);
	bv_le64(t->b + 4, end);
}

int bv_ctail_file_parse(const struct bv_ctail *t, uint32_t *id,
			uint64_t *end)
{
	*id = 0;
	*end = 0;
	if (t == NULL || t->len == 0)
		return 0;
	if (t->len != 12)
		return ST_ECORRUPT;
	*id = bv_get_le32(t->b);
	*end = bv_get_le64(t->b + 4);
	return 0;
}

static struct bv_cset *file_of(struct bv_cstore *c)
{
	return (struct bv_cset *)c;
}

static int file_appendv(struct bv_cstore *c, struct bv_ring *ring,
			struct iovec *seg, unsigned nseg, uint32_t *container,
			uint64_t *offset)
{
	return bv_cset_appendv(file_of(c), ring, seg, nseg, container, offset);
}

static int file_flush(struct bv_cstore *c, struct bv_ring *ring,
		      struct bv_ctail *tail)
{
	uint32_t id = 0;
	uint64_t end = 0;
	int ret = bv_cset_flush(file_of(c), ring, &id, &end);

	if (ret == 0)
		bv_ctail_file(tail, id, end);
	return ret;
}

static int file_rollback(struct bv_cstore *c)
{
	return bv_cset_rollback(file_of(c));
}

static int file_read(struct bv_cstore *c, struct bv_ring *ring,
		     struct bv_chunk_read *reads, size_t n)
{
	return bv_cset_read(file_of(c), ring, reads, n);
}

static int file_scan_data(struct bv_cstore *c, uint32_t id,
			  int (*cb)(void *ud, const struct bv_chunk_loc *loc,
				    const bv_fp *fp, const void *raw),
			  int (*damage)(void *ud, uint32_t id, uint64_t off,
					uint64_t len),
			  void *ud)
{
	return bv_cset_scan_data(file_of(c), id, cb, damage, ud);
}

static int file_read_headers(struct bv_cstore *c, struct bv_ring *ring,
			     struct bv_chunk_read *reads, size_t n)
{
	return bv_cset_read_headers(file_of(c), ring, reads, n);
}

static int file_read_runs(struct bv_cstore *c, struct bv_ring *ring,
			  struct bv_chunk_read *reads, size_t n, uint8_t *buf,
			  size_t len)
{
	return bv_cset_read_runs(file_of(c), ring, reads, n, buf, len);
}

static int file_scan(struct bv_cstore *c, uint32_t id,
		     int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			       const bv_fp *fp),
		     int (*damage)(void *ud, uint32_t id, uint64_t off,
				   uint64_t len),
		     void *ud)
{
	uint64_t bad = 0;

	return bv_cset_scan_all(file_of(c), id, cb, damage, ud, &bad);
}

/* Removes container ID and makes that durable. Never the one being
 * appended to. */
static int file_remove(struct bv_cstore *c, uint32_t id)
{
	struct bv_cset *cs = file_of(c);
	char name[32];
	int ret;

	if (cs->read_only)
		return -EROFS;
	ret = name_of(id, name, sizeof(name));
	if (ret != 0)
		return ret;
	pthread_mutex_lock(&cs->mu);
	if (id == cs->cur_id && cs->wfd >= 0) {
		ret = ST_EINVAL;
	} else {
		rc_forget(cs, id);
		if (unlinkat(cs->dirfd, name, 0) != 0)
			ret = -errno;
		else if (fsync(cs->dirfd) != 0)
			ret = -errno;
	}
	pthread_mutex_unlock(&cs->mu);
	return ret;
}

int bv_cset_seal(struct bv_cset *cs, uint32_t *id)
{
	int ret = 0;

	if (cs->read_only)
		return -EROFS;
	pthread_mutex_lock(&cs->mu);
	if (cs->broken || cs->buf_len != 0 || cs->cur_dirty ||
	    cs->ndirty != 0) {
		/* Only right after a flush: nothing may be pending. */
		ret = cs->broken ? cs->broken : ST_EINVAL;
		goto out;
	}
	if (cs->wfd >= 0) {
		close(cs->wfd);
		cs->wfd = -1;
	}
	if (cs->cur_id > cs->seal_id)
		cs->seal_id = cs->cur_id;
	/* Containers found at open are below own_first, and none of them
	 * is appended to unless it is the tail. */
	if (cs->own_first > 0 && cs->own_first - 1 > cs->seal_id)
		cs->seal_id = cs->own_first - 1;
	*id = cs->seal_id;
out:
	pthread_mutex_unlock(&cs->mu);
	return ret;
}

static int file_seal(struct bv_cstore *c, uint32_t *id)
{
	return bv_cset_seal(file_of(c), id);
}

int bv_cset_size(struct bv_cset *cs, uint32_t id, uint64_t *bytes)
{
	char name[32];
	struct stat st;
	int ret = name_of(id, name, sizeof(name));

	if (ret != 0)
		return ret;
	if (fstatat(cs->dirfd, name, &st, 0) != 0)
		return -errno;
	*bytes = (uint64_t)st.st_size;
	return 0;
}

static int file_size(struct bv_cstore *c, uint32_t id, uint64_t *bytes)
{
	return bv_cset_size(file_of(c), id, bytes);
}

static int file_list(struct bv_cstore *c, uint32_t **ids, size_t *n)
{
	struct bv_cset *cs = file_of(c);
	int ret = bv_cset_list(cs, ids, n);

	/* A read-only open reads up to the tail it was given: above it, a
	 * writer may be appending. */
	if (ret == 0 && cs->read_only)
		while (*n > 0 && (*ids)[*n - 1] > cs->tail_id)
			(*n)--;
	return ret;
}

static int file_usage(struct bv_cstore *c, uint64_t *count, uint64_t *bytes)
{
	return bv_cset_usage(file_of(c), count, bytes);
}

static int file_name(const struct bv_cstore *c, uint32_t id, char *buf,
		     size_t n)
{
	return bv_cset_path((const struct bv_cset *)c, id, buf, n);
}

static size_t file_unknown(const struct bv_cstore *c,
			   const struct bv_cset_unknown **out)
{
	return bv_cset_unknown_list((const struct bv_cset *)c, out);
}

static int file_tail_cmp(const struct bv_cstore *c, const struct bv_ctail *a,
			 const struct bv_ctail *b)
{
	uint32_t ia, ib;
	uint64_t ea, eb;

	(void)c;
	(void)bv_ctail_file_parse(a, &ia, &ea);
	(void)bv_ctail_file_parse(b, &ib, &eb);
	if (ia != ib)
		return ia < ib ? -1 : 1;
	return ea < eb ? -1 : ea > eb;
}

static void file_close(struct bv_cstore *c)
{
	bv_cset_close(file_of(c));
}

static const struct bv_cstore_ops file_ops = {
	.name = "file",
	.appendv = file_appendv,
	.flush = file_flush,
	.rollback = file_rollback,
	.read = file_read,
	.read_runs = file_read_runs,
	.read_headers = file_read_headers,
	.scan = file_scan,
	.scan_data = file_scan_data,
	.remove = file_remove,
	.seal = file_seal,
	.size = file_size,
	.list = file_list,
	.usage = file_usage,
	.where = file_name,
	.unknown = file_unknown,
	.tail_cmp = file_tail_cmp,
	.close = file_close,
};

int bv_cstore_file_open(const char *dir, const struct bv_cset_opts *o,
			const struct bv_ctail *tail, struct bv_cstore **out)
{
	struct bv_cset *cs = NULL;
	uint32_t id;
	uint64_t end;
	int ret;

	*out = NULL;
	ret = bv_ctail_file_parse(tail, &id, &end);
	if (ret != 0) {
		set_err("containers %s: the recorded tail has %u bytes, not 12",
			dir, tail->len);
		return ret;
	}
	ret = bv_cset_open(dir, o, id, end, &cs);
	if (ret != 0)
		return ret;
	cs->base.ops = &file_ops;
	*out = &cs->base;
	return 0;
}

/* ---- whose containers ------------------------------------------------ */

int bv_cset_dir_owner(const char *dir, uint8_t store_id[16], uint32_t *which)
{
	_Alignas(PAGE) uint8_t h[PAGE];
	DIR *d = opendir(dir);
	struct dirent *e;
	uint32_t best = 0;
	char path[4096];
	ssize_t n;
	int fd;

	if (d == NULL)
		return errno == ENOENT ? ST_ENOTFOUND : -errno;
	while ((e = readdir(d)) != NULL) {
		uint32_t id = id_of(e->d_name);

		if (id != 0 && (best == 0 || id < best))
			best = id;
	}
	closedir(d);
	if (best == 0)
		return ST_ENOTFOUND;
	*which = best;
	if (snprintf(path, sizeof(path), "%s/%08u.bvc", dir, best) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = pread(fd, h, sizeof(h), 0);
	close(fd);
	if (n < (ssize_t)FILE_HDR_USED || memcmp(h, FILE_MAGIC, 8) != 0 ||
	    bv_get_le64(h + 32) != bv_checksum64(h, 32) ||
	    bv_get_le32(h + 12) != best)
		return ST_ECORRUPT;
	memcpy(store_id, h + 16, 16);
	return 0;
}
