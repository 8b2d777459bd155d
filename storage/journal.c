/*
 * journal.c: the index journal (journal.h; storage/FORMAT.md, "The index
 * journal").
 */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "endian.h"
#include "errcodes.h"

#define FILE_HDR 4096u
#define FILE_HDR_USED 48u
#define ENT_HDR 40u
#define ENT_MAGIC 0x454a5642u /* "BVJE" */
#define ENT_MAX ((uint32_t)1 << 30)
#define FILE_ROLL ((uint64_t)64 << 20)
static const char file_magic[8] = { 'B', 'V', 'J', 'O', 'U', 'R', 'N', 'L' };

struct bv_journal {
	char *dir;
	uint8_t store_id[16];
	int writable;
	int dfd;
	/* The file being appended to (writer): made at the first append. */
	int fd;
	uint32_t id;      /* its id; 0: none yet */
	uint64_t end;     /* its length */
	uint64_t base;    /* the index's LSN when it was started */
	int dirty;        /* appended since the last sync */
	int new_file;     /* the directory needs a sync */
	int must_roll;    /* the next append starts a new file */
	uint8_t *buf;     /* an entry being built, or read */
	size_t cap;
	int (*hook)(void *ud, int op, uint64_t lsn); /* tests */
	void *hook_ud;
};

static _Thread_local char j_err[512];

const char *bv_journal_error(void)
{
	return j_err;
}

__attribute__((format(printf, 1, 2)))
static void set_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j_err, sizeof(j_err), fmt, ap);
	va_end(ap);
}

static int grow(struct bv_journal *j, size_t need)
{
	uint8_t *n;
	size_t cap = j->cap ? j->cap : 65536;

	if (need <= j->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (!(n = realloc(j->buf, cap)))
		return -ENOMEM;
	j->buf = n;
	j->cap = cap;
	return 0;
}

/* The id of a journal file name, or 0. */
static uint32_t id_of(const char *name)
{
	char back[32];
	unsigned long v;
	char *end;

	if (name[0] < '0' || name[0] > '9')
		return 0;
	errno = 0;
	v = strtoul(name, &end, 10);
	if (errno || v == 0 || v > UINT32_MAX || strcmp(end, ".bvj") != 0)
		return 0;
	snprintf(back, sizeof(back), "%08lu.bvj", v);
	return strcmp(back, name) == 0 ? (uint32_t)v : 0;
}

static int by_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The ids of the journal's files, ascending (malloc'ed). */
static int list_files(struct bv_journal *j, uint32_t **ids, size_t *n)
{
	DIR *d = opendir(j->dir);
	struct dirent *e;
	uint32_t *v = NULL;
	size_t cap = 0;

	*ids = NULL;
	*n = 0;
	if (!d) {
		if (errno == ENOENT)
			return 0;
		set_err("journal %s: %s", j->dir, strerror(errno));
		return -errno;
	}
	while ((e = readdir(d)) != NULL) {
		uint32_t id = id_of(e->d_name);

		if (!id)
			continue;
		if (*n == cap) {
			uint32_t *nv = realloc(v, (cap ? 2 * cap : 16) *
						  sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			cap = cap ? 2 * cap : 16;
		}
		v[(*n)++] = id;
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), by_u32);
	*ids = v;
	return 0;
}

int bv_journal_open(const char *dir, const uint8_t *store_id, int writable,
		    struct bv_journal **out)
{
	struct bv_journal *j = calloc(1, sizeof(*j));

	*out = NULL;
	if (!j || !(j->dir = strdup(dir))) {
		free(j);
		return -ENOMEM;
	}
	memcpy(j->store_id, store_id, 16);
	j->writable = writable;
	j->fd = -1;
	j->dfd = -1;
	if (writable && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		set_err("journal %s: %s", dir, strerror(errno));
		bv_journal_close(j);
		return -errno;
	}
	j->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dfd < 0 && (writable || errno != ENOENT)) {
		int e = errno;
		set_err("journal %s: %s", dir, strerror(e));
		bv_journal_close(j);
		return -e;
	}
	*out = j;
	return 0;
}

int bv_journal_owner(const char *dir, uint8_t store_id[16])
{
	struct bv_journal j = { .dir = (char *)dir, .fd = -1 };
	uint32_t *ids;
	size_t n;
	uint8_t h[FILE_HDR_USED];
	char path[4096];
	int fd, rc;

	if ((rc = list_files(&j, &ids, &n)))
		return rc;
	if (n == 0) {
		free(ids);
		return ST_ENOTFOUND;
	}
	snprintf(path, sizeof(path), "%s/%08u.bvj", dir, ids[0]);
	free(ids);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	rc = pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
	     memcmp(h, file_magic, 8) == 0 &&
	     bv_get_le64(h + 40) == XXH3_64bits(h, 40) ? 0 : ST_ECORRUPT;
	close(fd);
	if (rc == 0)
		memcpy(store_id, h + 16, 16);
	return rc;
}

void bv_journal_close(struct bv_journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0)
		close(j->fd);
	if (j->dfd >= 0)
		close(j->dfd);
	free(j->buf);
	free(j->dir);
	free(j);
}

/* ---- writing ------------------------------------------------------------ */

static int write_all(int fd, const void *p, size_t len, uint64_t off)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = pwrite(fd, b, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* A new file above every existing one, its header saying BASE. */
static int start_file(struct bv_journal *j, uint64_t base)
{
	uint8_t h[FILE_HDR] = { 0 };
	uint32_t *ids, id;
	size_t n;
	char name[32];
	int rc;

	if ((rc = list_files(j, &ids, &n)))
		return rc;
	id = n ? ids[n - 1] + 1 : 1;
	free(ids);
	if (j->fd >= 0) {
		/* The old one must be durable before a newer one may void
		 * its entries. */
		if ((rc = bv_journal_sync(j)))
			return rc;
		close(j->fd);
		j->fd = -1;
	}
	snprintf(name, sizeof(name), "%08u.bvj", id);
	j->fd = openat(j->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		       0600);
	if (j->fd < 0) {
		rc = -errno;
		set_err("journal %s/%s: %s", j->dir, name, strerror(errno));
		return rc;
	}
	memcpy(h, file_magic, 8);
	bv_le32(h + 8, 1);
	bv_le32(h + 12, id);
	memcpy(h + 16, j->store_id, 16);
	bv_le64(h + 32, base);
	bv_le64(h + 40, XXH3_64bits(h, 40));
	if ((rc = write_all(j->fd, h, sizeof(h), 0))) {
		set_err("journal %s/%s: %s", j->dir, name, strerror(-rc));
		return rc;
	}
	j->id = id;
	j->must_roll = 0;
	j->end = FILE_HDR;
	j->base = base;
	j->new_file = 1;
	j->dirty = 1;
	return 0;
}

int bv_journal_append(struct bv_journal *j, uint64_t lsn, int kind,
		      const void *data, size_t len)
{
	size_t tot = ENT_HDR + ((len + 7) & ~(size_t)7);
	uint8_t *e;
	int rc;

	if (!j->writable) {
		set_err("journal %s: opened read-only", j->dir);
		return ST_EINVAL;
	}
	if (j->hook && (rc = j->hook(j->hook_ud, 0, lsn)) != 0) {
		set_err("journal %s: entry %llu: failed by a test hook (%d)",
			j->dir, (unsigned long long)lsn, rc);
		return rc;
	}
	if (len >= ENT_MAX || kind < BV_J_BATCH || kind > BV_J_SNAP_END) {
		set_err("journal %s: entry %llu: %zu bytes, kind %d", j->dir,
			(unsigned long long)lsn, len, kind);
		return ST_EINVAL;
	}
	/* The first entry of this open, or a full file: a new file. A
	 * batch LSN follows the index state BASE = LSN - 1; a snapshot is
	 * of state LSN. */
	if (j->fd < 0 || (kind != BV_J_SNAP_DATA && kind != BV_J_SNAP_END &&
			  (j->must_roll || j->end >= FILE_ROLL))) {
		if ((rc = start_file(j, kind == BV_J_BATCH ? lsn - 1 : lsn)))
			return rc;
	}
	if ((rc = grow(j, tot)))
		return rc;
	e = j->buf;
	memset(e, 0, tot);
	bv_le32(e, ENT_MAGIC);
	e[4] = (uint8_t)kind;
	bv_le32(e + 8, (uint32_t)len);
	bv_le64(e + 16, lsn);
	bv_le64(e + 24, XXH3_64bits(data, len));
	bv_le64(e + 32, XXH3_64bits(e, 32));
	memcpy(e + ENT_HDR, data, len);
	if ((rc = write_all(j->fd, e, tot, j->end))) {
		set_err("journal %s/%08u.bvj: writing entry %llu: %s", j->dir,
			j->id, (unsigned long long)lsn, strerror(-rc));
		return rc;
	}
	j->end += tot;
	j->dirty = 1;
	return 0;
}

void bv_journal_set_hook(struct bv_journal *j,
			 int (*hook)(void *ud, int op, uint64_t lsn), void *ud)
{
	j->hook = hook;
	j->hook_ud = ud;
}

void bv_journal_roll(struct bv_journal *j)
{
	/* The next append starts the new file, after the old one is made
	 * durable (its earlier entries were taken by the index). */
	j->must_roll = 1;
}

int bv_journal_sync(struct bv_journal *j)
{
	int rc;

	if (!j->dirty || j->fd < 0)
		return 0;
	if (j->hook && (rc = j->hook(j->hook_ud, 1, 0)) != 0) {
		set_err("journal %s: sync failed by a test hook (%d)", j->dir,
			rc);
		return rc;
	}
	if (fdatasync(j->fd) != 0 || (j->new_file && fsync(j->dfd) != 0)) {
		int e = errno;
		set_err("journal %s/%08u.bvj: fdatasync: %s", j->dir, j->id,
			strerror(e));
		return -e;
	}
	j->dirty = 0;
	j->new_file = 0;
	return 0;
}

/* ---- reading ------------------------------------------------------------ */

struct jfile {
	uint32_t id;
	uint64_t base;
	uint64_t bound; /* entries above it are void: a later file's base */
};

/* Opens file ID and checks its header: its fd, or a negative error. */
static int open_file(struct bv_journal *j, uint32_t id, uint64_t *base)
{
	uint8_t h[FILE_HDR_USED];
	char name[32];
	int fd;

	snprintf(name, sizeof(name), "%08u.bvj", id);
	fd = openat(j->dfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_err("journal %s/%s: %s", j->dir, name, strerror(errno));
		return -errno;
	}
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h, file_magic, 8) != 0 ||
	    bv_get_le64(h + 40) != XXH3_64bits(h, 40) ||
	    bv_get_le32(h + 8) != 1 || bv_get_le32(h + 12) != id ||
	    memcmp(h + 16, j->store_id, 16) != 0) {
		close(fd);
		set_err("journal %s/%s: the file header is damaged, or not "
			"this store's", j->dir, name);
		return ST_ECORRUPT;
	}
	*base = bv_get_le64(h + 32);
	return fd;
}

/* Reads the entry at *OFF of FD into J->buf: 1 with its fields, 0 at
 * the end of the intact entries (the end of the file, or a torn or
 * damaged entry), or an error. */
static int read_entry(struct bv_journal *j, int fd, uint64_t *off,
		      uint64_t *lsn, int *kind, size_t *len)
{
	uint8_t h[ENT_HDR];
	size_t pad;
	ssize_t n;
	int rc;

	n = pread(fd, h, sizeof(h), (off_t)*off);
	if (n < 0)
		return -errno;
	if (n < (ssize_t)sizeof(h) || bv_get_le32(h) != ENT_MAGIC ||
	    bv_get_le64(h + 32) != XXH3_64bits(h, 32))
		return 0;
	*kind = h[4];
	*len = bv_get_le32(h + 8);
	*lsn = bv_get_le64(h + 16);
	if (*kind < BV_J_BATCH || *kind > BV_J_SNAP_END || *len >= ENT_MAX)
		return 0;
	pad = (*len + 7) & ~(size_t)7;
	if ((rc = grow(j, pad ? pad : 8)))
		return rc;
	n = pread(fd, j->buf, pad, (off_t)(*off + ENT_HDR));
	if (n < 0)
		return -errno;
	if ((size_t)n < pad || bv_get_le64(h + 24) != XXH3_64bits(j->buf, *len))
		return 0;
	*off += ENT_HDR + pad;
	return 1;
}

/* Whether an intact entry of a live LSN lies past OFF in FD (whose end
 * is at or before the file's size): then the entry at OFF is damage, not
 * the torn end a crash leaves. */
static int damage_after(struct bv_journal *j, int fd, uint64_t off,
			uint64_t bound)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return 0;
	for (uint64_t at = off + 8; at + ENT_HDR <= (uint64_t)st.st_size;
	     at += 8) {
		uint64_t o = at, l;
		size_t len;
		int kind;

		if (read_entry(j, fd, &o, &l, &kind, &len) == 1 && l <= bound)
			return 1;
	}
	return 0;
}

/* The files, with each one's bound. */
static int load_files(struct bv_journal *j, struct jfile **out, size_t *nout)
{
	uint32_t *ids;
	struct jfile *f;
	size_t n;
	int rc;

	*out = NULL;
	*nout = 0;
	if (j->dfd < 0)
		return 0;
	if ((rc = list_files(j, &ids, &n)))
		return rc;
	if (!(f = calloc(n + 1, sizeof(*f)))) {
		free(ids);
		return -ENOMEM;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int fd = open_file(j, ids[i], &f[k].base);
		struct stat st;
		char name[32];

		snprintf(name, sizeof(name), "%08u.bvj", ids[i]);
		if (fd == ST_ECORRUPT && fstatat(j->dfd, name, &st, 0) == 0 &&
		    st.st_size <= (off_t)FILE_HDR)
			continue; /* made, but its header never written whole:
				   * a crash at its start; it holds nothing */
		if (fd < 0) {
			free(ids);
			free(f);
			return fd;
		}
		close(fd);
		f[k++].id = ids[i];
	}
	n = k;
	for (size_t i = n; i-- > 0;)
		f[i].bound = i + 1 < n ? (f[i + 1].base < f[i + 1].bound ?
					  f[i + 1].base : f[i + 1].bound) :
				 UINT64_MAX;
	free(ids);
	*out = f;
	*nout = n;
	return 0;
}

/* A non-void entry: a batch at or below its file's bound, or a snapshot
 * entry of a state at or below it. */
static int live(const struct jfile *f, uint64_t lsn)
{
	return lsn <= f->bound;
}

int bv_journal_last(struct bv_journal *j, uint64_t *lsn)
{
	struct jfile *f;
	size_t n;
	int rc;

	*lsn = 0;
	if ((rc = load_files(j, &f, &n)))
		return rc;
	/* A file's entries all come after the older files' live ones, so
	 * the newest file with a live entry ends the journal. */
	for (size_t i = n; i-- > 0 && *lsn == 0 && rc == 0;) {
		uint64_t off = FILE_HDR, l = 0;
		size_t len;
		int kind, fd = open_file(j, f[i].id, &f[i].base);

		if (fd < 0) {
			rc = fd;
			break;
		}
		while ((rc = read_entry(j, fd, &off, &l, &kind, &len)) == 1 &&
		       live(&f[i], l))
			*lsn = l;
		close(fd);
		if (rc == 1)
			rc = 0;
	}
	free(f);
	return rc < 0 ? rc : 0;
}

/* Where the last complete snapshot of the files F[0..N) begins: *FOUND,
 * and its file (index into F) and offset; ST_ECORRUPT for damage with
 * intact entries after it. */
static int last_snapshot(struct bv_journal *j, struct jfile *f, size_t n,
			 int *found, size_t *sfile, uint64_t *soff)
{
	int rc = 0;

	*found = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint64_t off = FILE_HDR, at = 0, l;
		size_t len;
		int kind, fd = open_file(j, f[i].id, &f[i].base), in = 0;

		if (fd < 0) {
			rc = fd;
			break;
		}
		for (;;) {
			uint64_t here = off;

			if ((rc = read_entry(j, fd, &off, &l, &kind, &len)) != 1)
				break;
			if (!live(&f[i], l))
				break;
			if (kind == BV_J_SNAP_BEGIN) {
				in = 1;
				at = here;
			} else if (kind == BV_J_SNAP_END && in) {
				*found = 1;
				*sfile = i;
				*soff = at;
				in = 0;
			}
		}
		if (rc == 0 && damage_after(j, fd, off, f[i].bound)) {
			set_err("journal %s/%08u.bvj: the entry at offset %llu "
				"is damaged, and intact ones follow it", j->dir,
				f[i].id, (unsigned long long)off);
			rc = ST_ECORRUPT;
		}
		close(fd);
		if (rc == 1)
			rc = 0; /* the rest of the file is void */
	}
	return rc < 0 ? rc : 0;
}

int bv_journal_bytes(struct bv_journal *j, uint64_t *bytes)
{
	uint32_t *ids;
	size_t n;
	int rc;

	*bytes = 0;
	if (j->dfd < 0)
		return 0;
	if ((rc = list_files(j, &ids, &n)))
		return rc;
	for (size_t i = 0; i < n; i++) {
		char name[32];
		struct stat st;

		snprintf(name, sizeof(name), "%08u.bvj", ids[i]);
		if (fstatat(j->dfd, name, &st, 0) == 0)
			*bytes += (uint64_t)st.st_size;
	}
	free(ids);
	return 0;
}

int bv_journal_trim(struct bv_journal *j, unsigned *removed)
{
	struct jfile *f;
	size_t n, sfile = 0;
	uint64_t soff = 0;
	int rc, found = 0;

	*removed = 0;
	if ((rc = load_files(j, &f, &n)))
		return rc;
	rc = last_snapshot(j, f, n, &found, &sfile, &soff);
	/* Replay starts at the last complete snapshot: the files before
	 * its own hold nothing it reads. */
	for (size_t i = 0; rc == 0 && found && i < sfile; i++) {
		char name[32];

		snprintf(name, sizeof(name), "%08u.bvj", f[i].id);
		if (unlinkat(j->dfd, name, 0) != 0 && errno != ENOENT) {
			set_err("journal %s/%s: cannot remove it: %s", j->dir,
				name, strerror(errno));
			rc = -errno;
			break;
		}
		(*removed)++;
	}
	if (*removed && fsync(j->dfd) != 0 && rc == 0) {
		set_err("journal %s: %s", j->dir, strerror(errno));
		rc = -errno;
	}
	free(f);
	return rc;
}

int bv_journal_replay(struct bv_journal *j,
		      int (*cb)(void *ud, uint64_t lsn, int kind,
				const void *data, size_t len),
		      void *ud)
{
	struct jfile *f;
	size_t n, sfile = 0;
	uint64_t soff = 0, next = 0;
	int rc, found = 0;

	if ((rc = load_files(j, &f, &n)))
		return rc;
	/* Pass 1: where the last complete snapshot begins. */
	rc = last_snapshot(j, f, n, &found, &sfile, &soff);
	if (rc < 0)
		goto out;
	if (!found) {
		set_err("journal %s: no complete snapshot of the index (a store "
			"older than its journal that no writable open has "
			"snapshotted yet)", j->dir);
		rc = ST_ENOTFOUND;
		goto out;
	}
	/* Pass 2: the snapshot (BEGIN, DATA..., END, nothing between),
	 * then every batch after it in LSN order; later snapshots, whole or
	 * cut short, repeat what the batches say and are skipped. */
	for (size_t i = sfile, after = 0; i < n && rc == 0; i++) {
		uint64_t off = i == sfile ? soff : FILE_HDR, l;
		size_t len;
		int kind, fd = open_file(j, f[i].id, &f[i].base);

		if (fd < 0) {
			rc = fd;
			break;
		}
		while ((rc = read_entry(j, fd, &off, &l, &kind, &len)) == 1) {
			if (!live(&f[i], l))
				break;
			if (!after) {
				if (kind == BV_J_SNAP_END) {
					after = 1;
					next = l + 1;
				}
			} else if (kind != BV_J_BATCH || l < next) {
				continue;
			} else if (l > next) {
				set_err("journal %s/%08u.bvj: entries %llu to "
					"%llu are missing (a damaged entry "
					"before them)", j->dir, f[i].id,
					(unsigned long long)next,
					(unsigned long long)l - 1);
				rc = ST_ECORRUPT;
				break;
			} else {
				next = l + 1;
			}
			if ((rc = cb(ud, l, kind, j->buf, len)) != 0)
				break;
		}
		if (rc == 1 && !live(&f[i], l))
			rc = 0; /* the rest of the file is void */
		if (rc == 0 && damage_after(j, fd, off, f[i].bound)) {
			set_err("journal %s/%08u.bvj: the entry at offset %llu "
				"is damaged, and intact ones follow it", j->dir,
				f[i].id, (unsigned long long)off);
			rc = ST_ECORRUPT;
		}
		close(fd);
	}
out:
	free(f);
	return rc < 0 ? rc : 0;
}
