/*
 * store.c: a store is one directory:
 *
 *   STORE/bvault.store   marker: "bvault-store <format>\n", written last
 *                        at init, so its presence means a complete store
 *   STORE/index/         RocksDB: meta, chunks, maps (kv.h)
 *   STORE/containers/    chunk containers (container.h)
 *
 * The store-wide invariants are numbered in INVARIANTS.md (at the top of
 * the repository), each with where it is kept and the tests that check
 * it; comments here cite them by number. This file keeps 2 at open
 * (recover(): a writable open removes what an unfinished session left),
 * 7 (a read-only open takes no lock and writes nothing) and 8
 * (store_make_private()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define CONFIG_LEN (4 + 4 + 16 + BV_SECRET_SIZE)

int bv_name_check(const char *what, const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > BV_NAME_MAX)
		return bv_fail(BV_EINVAL, "%s name '%s': must be 1 to %d "
			       "characters", what, name ? name : "",
			       BV_NAME_MAX);
	if (name[0] == '.' || name[0] == '-')
		return bv_fail(BV_EINVAL, "%s name '%s': must not begin "
			       "with '.' or '-'", what, name);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return bv_fail(BV_EINVAL, "%s name '%s': only letters, "
				       "digits, '.', '_' and '-' are allowed",
				       what, name);
	}
	return 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc = 0;
	size_t len = strlen(text);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		rc = -EIO;
	else if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int dir_has_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int found = 0;
	if (!d)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			found = 1;
			break;
		}
	}
	closedir(d);
	return found;
}

/* Takes group and other access away from NAME in directory DFD: a
 * directory becomes 0700, a regular file loses every bit but the
 * owner's. Symbolic links and other types are left alone. ENOENT (gone
 * meanwhile) and EPERM (not the owner, and not root: the store is
 * shared on purpose) are no failure. */
static int make_private_at(int dfd, const char *name)
{
	struct stat st;
	mode_t want;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode))
		want = 0700;
	else if (S_ISREG(st.st_mode))
		want = st.st_mode & 0700;
	else
		return 0;
	if ((st.st_mode & 07777) == want)
		return 0;
	if (fchmodat(dfd, name, want, 0) < 0 && errno != ENOENT &&
	    errno != EPERM)
		return -errno;
	return 0;
}

/* make_private_at() for every entry of directory FD (closed here), and
 * for the entries of its subdirectories DEPTH levels down. */
static int make_private_dir(int fd, int depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;
	int rc = 0;

	if (!d) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while (!rc && (e = readdir(d)) != NULL) {
		int sub;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((rc = make_private_at(dirfd(d), e->d_name)) || depth == 0)
			continue;
		sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY |
			     O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			rc = make_private_dir(sub, depth - 1);
		else if (errno != ENOTDIR && errno != ENOENT &&
			 errno != ELOOP)
			rc = -errno;
	}
	closedir(d);
	return rc;
}

/* Makes the store in PATH private to its owner (storage/FORMAT.md,
 * "File modes"): the store directory and every directory in it 0700,
 * every file in it (the marker, the index seal, the files of index/ and
 * containers/) 0600 or less. Run by init and by every writable open, so
 * that stores made by older code (0755 directories, 0644 files) are
 * upgraded in place. Only the writer runs it, holding the store's lock,
 * so nothing is created meanwhile. */
static int store_make_private(const char *path)
{
	int top = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (top < 0)
		return bv_fail(-errno, "store %s: %s", path, strerror(errno));
	if ((rc = make_private_at(top, ".")) == 0)
		rc = make_private_dir(top, 1);
	else
		close(top);
	if (rc)
		return bv_fail(rc, "store %s: cannot make it private to its "
			       "owner: %s", path, strerror(-rc));
	return 0;
}

static int chunk_size_check(uint32_t cs)
{
	if (cs < BV_CHUNK_MIN || cs > BV_CHUNK_MAX || (cs & (cs - 1)))
		return bv_fail(BV_EINVAL, "chunk size %u: must be a power of "
			       "two from 4 KiB to 4 MiB", cs);
	return 0;
}

int bv_store_init(const char *path, const bv_init_opts *opts, char *errbuf,
		  size_t errlen)
{
	uint32_t cs = opts && opts->chunk_size ? opts->chunk_size :
						 BV_CHUNK_DEFAULT;
	char sub[4096];
	struct bv_kv *kv = NULL;
	struct bv_kv_batch *b = NULL;
	uint8_t cfg[CONFIG_LEN];
	int rc;

	uint64_t csize = opts && opts->container_size ? opts->container_size :
			 BV_CONTAINER_SIZE_DEFAULT;

	bv_fail(0, "%s", "");
	if ((rc = chunk_size_check(cs)))
		goto out;
	if (csize < BV_CONTAINER_SIZE_MIN || csize > BV_CONTAINER_SIZE_MAX) {
		rc = bv_fail(BV_EINVAL, "container size %llu: must be from "
			     "1 MiB to 16 GiB", (unsigned long long)csize);
		goto out;
	}
	int scope = opts ? opts->dedup_scope : BV_DEDUP_STORE;
	if (scope != BV_DEDUP_STORE && scope != BV_DEDUP_GROUP) {
		rc = bv_fail(BV_EINVAL, "store %s: dedup scope %d: must be "
			     "BV_DEDUP_STORE or BV_DEDUP_GROUP", path, scope);
		goto out;
	}
	if (mkdir(path, 0700) < 0) {
		if (errno != EEXIST) {
			rc = bv_fail(-errno, "store %s: cannot create: %s",
				     path, strerror(errno));
			goto out;
		}
		rc = dir_has_entries(path);
		if (rc < 0) {
			rc = bv_fail(rc, "store %s: %s", path, strerror(-rc));
			goto out;
		}
		if (rc > 0) {
			snprintf(sub, sizeof sub, "%s/" BV_MARKER, path);
			rc = bv_fail(BV_EEXIST, access(sub, F_OK) == 0 ?
				     "store %s: already a bvault store" :
				     "store %s: directory is not empty", path);
			goto out;
		}
	}
	snprintf(sub, sizeof sub, "%s/containers", path);
	if ((rc = bv_cset_create_dir(sub))) {
		rc = bv_fail(rc, "store %s: cannot create containers: %s",
			     path, bv_strerror(rc));
		goto out;
	}
	/* RocksDB makes its files 0644 less the umask, and the C API has no
	 * say in it: a 0700 directory keeps them from anyone else. */
	snprintf(sub, sizeof sub, "%s/index", path);
	if (mkdir(sub, 0700) < 0) {
		rc = bv_fail(-errno, "store %s: cannot create index: %s",
			     path, strerror(errno));
		goto out;
	}
	struct bv_kv_opts ko = { .create = 1 };
	if ((rc = bv_kv_open(sub, &ko, &kv))) {
		rc = bv_fail_storage(rc, path);
		goto out;
	}
	cfg[0] = 0;
	bv_le32(cfg, BV_STORE_FORMAT);
	bv_le32(cfg + 4, cs);
	if ((rc = bv_secret_generate(cfg + 8)) ||
	    (rc = bv_secret_generate(cfg + 8 + 16)))
		goto out;
	if ((rc = bv_kv_batch_new(&b)))
		goto out;
	bv_kv_batch_put(b, BV_CF_META, "config", 6, cfg, sizeof cfg);
	/* Beside config, not in it: stores without it keep 1 GiB, and
	 * config keeps the layout older builds read. */
	uint8_t csv[8];
	bv_le64(csv, csize);
	bv_kv_batch_put(b, BV_CF_META, "csize", 5, csv, sizeof csv);
	/* Beside config for the same reason; fixed from here on: a change
	 * would re-key every chunk. */
	uint8_t sv = (uint8_t)scope;
	bv_kv_batch_put(b, BV_CF_META, "dedup", 5, &sv, 1);
	if ((rc = bv_kv_write(kv, b, 1))) {
		rc = bv_fail_storage(rc, path);
		goto out;
	}
	char marker[64];
	snprintf(marker, sizeof marker, "bvault-store %d\n", BV_STORE_FORMAT);
	snprintf(sub, sizeof sub, "%s/" BV_MARKER, path);
	if ((rc = write_file(sub, marker))) {
		rc = bv_fail(rc, "store %s: cannot write marker: %s", path,
			     strerror(-rc));
		goto out;
	}
	/* The readers file (gc.c): there before any reader opens. */
	snprintf(sub, sizeof sub, "%s/readers", path);
	int rfd = open(sub, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (rfd < 0) {
		rc = bv_fail(-errno, "store %s: cannot make %s: %s", path, sub,
			     strerror(errno));
		goto out;
	}
	close(rfd);
	rc = store_make_private(path);
out:
	bv_kv_batch_free(b);
	bv_kv_close(kv);
	if (rc && errbuf && errlen)
		snprintf(errbuf, errlen, "%s", bv_last_error());
	return rc;
}

int bv_check_marker(const char *path)
{
	char p[4096], buf[64] = { 0 };
	struct stat st;
	int fd, fmt;

	if (stat(path, &st) < 0)
		return bv_fail(errno == ENOENT ? BV_ENOTSTORE : -errno,
			       "store %s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return bv_fail(BV_ENOTSTORE, "store %s: not a directory, so "
			       "not a bvault store", path);
	snprintf(p, sizeof p, "%s/" BV_MARKER, path);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bv_fail(BV_ENOTSTORE, "store %s: not a bvault store "
			       "(no " BV_MARKER " file)", path);
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0 || sscanf(buf, "bvault-store %d\n", &fmt) != 1)
		return bv_fail(BV_ENOTSTORE, "store %s: " BV_MARKER " is not "
			       "a bvault marker", path);
	if (fmt < BV_STORE_FORMAT_MIN || fmt > BV_STORE_FORMAT)
		return bv_fail(BV_EFORMAT, "store %s: format %d, but this "
			       "bvault reads formats %d to %d", path, fmt,
			       BV_STORE_FORMAT_MIN, BV_STORE_FORMAT);
	return 0;
}

/* Invariant 2 after a crash: every replica a session was writing when the
 * process died loses the map entries above its committed head. */
static int recover(bv_store *s)
{
	struct bv_kv_iter *it = NULL;
	uint64_t rids[256];
	size_t n = 0;
	int rc;

	/* Removals cut short first (invariant 11): they free exactly the
	 * set their intent froze, before anything else can change. */
	if ((rc = bv_life_recover(s)))
		return rc;
	do {
		n = 0;
		if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "inflight/", 9,
					 "inflight0", 9, &it)))
			return bv_fail_storage(rc, s->path);
		for (bv_kv_iter_seek(it, "inflight/", 9);
		     bv_kv_iter_valid(it) && n < 256; bv_kv_iter_next(it)) {
			size_t kl;
			const uint8_t *k = bv_kv_iter_key(it, &kl);
			if (kl != 17)
				continue;
			rids[n++] = bv_get_be64(k + 9);
		}
		rc = bv_kv_iter_status(it);
		bv_kv_iter_free(it);
		if (rc)
			return bv_fail_storage(rc, s->path);
		for (size_t i = 0; i < n; i++) {
			char name[BV_NAME_MAX + 1];
			struct bv_rrec r = { 0 };
			rc = bv_id_name(s, "ri/", rids[i], name);
			if (rc == 0)
				rc = bv_rrec_get(s, name, &r);
			if (rc == ST_ENOTFOUND)
				r.head = 0; /* created by the lost session */
			else if (rc)
				return bv_fail(rc, "store %s: replica id %llu: "
					       "%s", s->path,
					       (unsigned long long)rids[i],
					       bv_strerror(rc));
			if ((rc = bv_replica_cleanup(s, rids[i], r.head)))
				return rc;
		}
	} while (n == 256);
	return bv_births_start(s);
}

/* Records, synced, the container bytes that no commit names (found by
 * the container set's open: a crash between a flush and its commit, or
 * an index older than the containers) as meta "u/" records, before any
 * append can move the tail past them: kept and reported (stats, verify),
 * never cut on the index's word (container.c C2). */
static int note_unknown(bv_store *s)
{
	const struct bv_cset_unknown *u;
	size_t n = s->cs->ops->unknown(s->cs, &u);
	struct bv_kv_batch *b = NULL;
	int rc;

	if (n == 0)
		return 0;
	if ((rc = bv_kv_batch_new(&b)))
		return bv_fail(rc, "store %s: %s", s->path, bv_strerror(rc));
	for (size_t i = 0; i < n; i++) {
		uint8_t key[2 + 4 + 8], val[8];
		memcpy(key, "u/", 2);
		bv_be32(key + 2, u[i].id);
		bv_be64(key + 6, u[i].from);
		bv_le64(val, u[i].to);
		bv_kv_batch_put(b, BV_CF_META, key, sizeof key, val, sizeof val);
	}
	rc = bv_kv_write(s->kv, b, 1);
	bv_kv_batch_free(b);
	return rc ? bv_fail_storage(rc, s->path) : 0;
}

/* Whether the journal has grown enough to be compacted: past
 * JOURNAL_COMPACT bytes and past twice what the index takes on disk, so
 * that a snapshot replaces much more than it writes (tests set
 * BV_JOURNAL_COMPACT=N: past N bytes, whatever the index's size). Never
 * while the index may have lost commits the journal still holds
 * (index_lost: bvault index rebuild wants them). */
#define JOURNAL_COMPACT (64ull << 20)

static int journal_big(bv_store *s)
{
	const char *e = getenv("BV_JOURNAL_COMPACT");
	uint64_t jb = 0, kb = 0;

	if (s->index_lost || bv_journal_bytes(s->journal, &jb))
		return 0;
	if (e && *e)
		return jb >= strtoull(e, NULL, 0);
	return jb >= JOURNAL_COMPACT && bv_kv_disk_bytes(s->kv, &kb) == 0 &&
	       jb > 2 * kb;
}

/* The writer's journal (storage/FORMAT.md, "The index journal"): every
 * index write from here on goes to it first. A journal that holds no
 * complete snapshot (a store older than journals) or ends before the
 * index's last journaled write (a power loss that took its unsynced
 * tail, or files removed) first gets a snapshot of the whole index,
 * before anything else writes: from then on it can rebuild the index. */
static int journal_start(bv_store *s)
{
	char dir[4096];
	uint8_t v[8];
	uint64_t last = 0, at;
	size_t len;
	int snap, rc;

	snprintf(dir, sizeof dir, "%s/journal", s->path);
	if ((rc = bv_journal_open(dir, s->store_id, 1, &s->journal)) ||
	    (rc = bv_journal_last(s->journal, &last)))
		return bv_fail(rc, "store %s: %s", s->path,
			       bv_journal_error());
	if ((rc = bv_kv_set_journal(s->kv, s->journal)))
		return bv_fail_storage(rc, s->path);
	/* meta "jsnap": the state of the last snapshot the journal took. */
	snap = bv_kv_get(s->kv, BV_CF_META, "jsnap", 5, v, sizeof v,
			 &len) == 0 && len == 8;
	at = bv_kv_jlsn(s->kv);
	if (snap && last >= at && !journal_big(s))
		return 0;
	if ((rc = bv_kv_snapshot(s->kv, s->journal, at)))
		return bv_fail(rc, "store %s: %s", s->path, bv_kv_error());
	/* Journaled itself, as the write after the snapshot's state. */
	bv_le64(v, at);
	if ((rc = bv_kv_put(s->kv, BV_CF_META, "jsnap", 5, v, 8, 1)))
		return bv_fail_storage(rc, s->path);
	/* The snapshot is durable and holds the index as it is: the files
	 * before it are never read again. A failure leaves them, and the
	 * store works on. */
	if (snap) {
		unsigned removed;
		(void)bv_journal_trim(s->journal, &removed);
	}
	return 0;
}

int bv_store_open(const char *path, const bv_open_opts *opts, bv_store **out)
{
	return bv_store_open_wrapped(path, opts, NULL, NULL, out);
}

int bv_store_open_wrapped(const char *path, const bv_open_opts *opts,
			  int (*wrap)(void *ud, struct bv_cstore *inner,
				      struct bv_cstore **out),
			  void *wrap_ud, bv_store **out)
{
	bv_store *s = calloc(1, sizeof *s);
	char sub[4096];
	uint8_t cfg[CONFIG_LEN];
	size_t len;
	int rc;

	*out = s;
	bv_fail(0, "%s", "");
	if (!s)
		return -ENOMEM;
	s->lock_fd = -1;
	s->readers_fd = -1;
	pthread_mutex_init(&s->meta_lock, NULL);
	pthread_mutex_init(&s->write_lock, NULL);
	pthread_mutex_init(&s->index_lock, NULL);
	pthread_mutex_init(&s->life_lock, NULL);
	pthread_mutex_init(&s->bmem_lock, NULL);
	s->bmem_limit = opts && opts->ingest_memory ? opts->ingest_memory :
			BV_INGEST_MEMORY_DEFAULT;
	if (!(s->path = strdup(path)))
		return -ENOMEM;
	if (s->bmem_limit < BV_INGEST_MEMORY_MIN)
		return bv_fail(BV_EINVAL, "store %s: ingest memory %llu bytes: "
			       "at least %llu", path,
			       (unsigned long long)s->bmem_limit,
			       (unsigned long long)BV_INGEST_MEMORY_MIN);
	if ((rc = bv_check_marker(path)))
		return rc;
	/* One process at a time: an advisory lock on the marker, taken
	 * before RocksDB's own, so that a second opener gets a clear word. */
	snprintf(sub, sizeof sub, "%s/" BV_MARKER, path);
	s->lock_fd = open(sub, O_RDONLY | O_CLOEXEC);
	if (s->lock_fd < 0)
		return bv_fail(-errno, "store %s: %s", path, strerror(errno));
	s->read_only = opts && opts->read_only;
	if (!s->read_only && flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return bv_fail(errno == EWOULDBLOCK ? BV_EBUSY : -errno,
			       "store %s: open for writing in another process "
			       "(one writer at a time; a read-only open works "
			       "beside it)", path);
	if (!s->read_only && (rc = store_make_private(path)))
		return rc;
	/* GC removes no container a read-only open may read: it opens
	 * under a lock of STORE/readers (gc.c, INVARIANTS.md 12). */
	if (s->read_only)
		bv_readers_enter(s);
	else
		bv_readers_make(s);
	snprintf(sub, sizeof sub, "%s/index", path);
	struct bv_kv_opts ko = { .create = 0, .read_only = s->read_only,
				 .accept_loss = opts && opts->accept_index_loss };
	if ((rc = bv_kv_open(sub, &ko, &s->kv)) == ST_ELOST)
		return bv_fail(BV_ELOST, "store %s: %s. Nothing was changed. "
			       "Read-only commands (ls, rp ls, export, verify) "
			       "still open it; restore index/ from a copy at "
			       "least as new, or go on without the lost "
			       "commits: bvault recover %s --accept-index-loss",
			       path, bv_kv_error(), path);
	if (rc)
		return bv_fail_storage(rc, path);
	s->index_lost = bv_kv_lost(s->kv, NULL, NULL);
	if (s->read_only)
		bv_readers_settle(s);
	rc = bv_kv_get(s->kv, BV_CF_META, "config", 6, cfg, sizeof cfg, &len);
	if (rc || len != CONFIG_LEN)
		return bv_fail(BV_ECORRUPT, "store %s: config record %s", path,
			       rc ? bv_strerror(rc) : "has the wrong size");
	s->format = bv_get_le32(cfg);
	if (s->format < BV_STORE_FORMAT_MIN || s->format > BV_STORE_FORMAT)
		return bv_fail(BV_EFORMAT, "store %s: index format %u, but "
			       "this bvault reads formats %d to %d", path,
			       s->format, BV_STORE_FORMAT_MIN,
			       BV_STORE_FORMAT);
	s->chunk_default = bv_get_le32(cfg + 4);
	memcpy(s->store_id, cfg + 8, 16);
	memcpy(s->secret, cfg + 24, BV_SECRET_SIZE);
	if (chunk_size_check(s->chunk_default))
		return bv_fail(BV_ECORRUPT, "store %s: config names chunk "
			       "size %u", path, s->chunk_default);
	if (!s->read_only && (rc = journal_start(s)))
		return rc;
	rc = bv_kv_get(s->kv, BV_CF_META, "tail", 4, s->tail.b,
		       sizeof s->tail.b, &len);
	if (rc == 0 && len > 0 && len <= BV_TAIL_MAX) {
		s->tail.len = (uint32_t)len;
	} else if (rc != ST_ENOTFOUND) {
		return bv_fail(BV_ECORRUPT, "store %s: container tail record "
			       "is damaged", path);
	}
	snprintf(sub, sizeof sub, "%s/containers", path);
	struct bv_cset_opts co = { .secret = s->secret,
				   .store_id = s->store_id,
				   .read_only = s->read_only };
	/* The store's container size (meta "csize"; 1 GiB for stores made
	 * before it was kept); BV_CONTAINER_MAX overrides it for tests and
	 * benchmarks that need many containers. */
	uint8_t csv[8];
	s->container_size = BV_CONTAINER_MAX;
	if (bv_kv_get(s->kv, BV_CF_META, "csize", 5, csv, sizeof csv, &len) ==
	    0 && len == 8 && bv_get_le64(csv) >= BV_CONTAINER_SIZE_MIN)
		s->container_size = bv_get_le64(csv);
	co.container_max = s->container_size;
	/* The dedup scope (meta "dedup"; absent: store). A group-scoped
	 * store's records carry tenant tags, which the containers check. */
	uint8_t dsv[8];
	s->dedup_scope = BV_DEDUP_STORE;
	rc = bv_kv_get(s->kv, BV_CF_META, "dedup", 5, dsv, sizeof dsv, &len);
	if (rc == 0 && (len != 1 || dsv[0] > BV_DEDUP_GROUP))
		return bv_fail(BV_EFORMAT, "store %s: dedup scope record "
			       "(%zu bytes, first %u) is not one this bvault "
			       "keeps", path, len, len ? dsv[0] : 0);
	if (rc == 0)
		s->dedup_scope = dsv[0];
	else if (rc != ST_ENOTFOUND)
		return bv_fail_storage(rc, path);
	co.tenants = s->dedup_scope == BV_DEDUP_GROUP;
	const char *cmax = getenv("BV_CONTAINER_MAX");
	if (cmax && *cmax)
		co.container_max = strtoull(cmax, NULL, 0);
	if ((rc = bv_cstore_file_open(sub, &co, &s->tail, &s->cs)))
		return bv_fail(rc, "store %s: %s%s", path, bv_cset_error(),
			       rc == BV_ECORRUPT ? "; nothing was changed, and "
			       "read-only commands (bvault verify STORE) still "
			       "open the store to show what it affects" : "");
	if (wrap) {
		struct bv_cstore *w = NULL;
		if ((rc = wrap(wrap_ud, s->cs, &w))) {
			s->cs->ops->close(s->cs);
			s->cs = NULL;
			return bv_fail(rc, "store %s: container wrapper: %s",
				       path, bv_strerror(rc));
		}
		s->cs = w;
	}
	if (!s->read_only && (rc = note_unknown(s)))
		return rc;
	if (!s->read_only && (rc = bv_gc_state_new(s)))
		return bv_fail(rc, "store %s: %s", path, strerror(-rc));
	if ((rc = bv_bad_load(s)))
		return rc;
	unsigned w = opts && opts->workers ? opts->workers :
		     (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (w < 1)
		w = 1;
	if (w > 64)
		w = 64;
	/* The caller works in each run too: W - 1 threads make W workers. */
	if ((rc = bv_pool_new(w - 1, &s->pool)))
		return bv_fail(rc, "store %s: worker threads: %s", path,
			       strerror(-rc));
	if (!s->read_only && (rc = recover(s)))
		return rc;
	if (s->index_lost && !s->read_only) {
		/* Accepted (accept_index_loss): from here on the index as it
		 * is counts as committed. */
		if ((rc = bv_kv_reseal(s->kv)))
			return bv_fail_storage(rc, path);
		s->index_lost = 0;
	}
	return 0;
}

int bv_store_writable(const bv_store *s)
{
	if (!s->read_only)
		return 0;
	return bv_fail(BV_EREADONLY, "store %s: opened read-only; changes "
		       "need the store's writer (is bvaultd serving it?)",
		       s->path);
}

/* A writer's close flushes the index's memtables when they hold this
 * much (bv_kv_flush_big). */
#define FLUSH_AT_CLOSE (1u << 20)

void bv_store_close(bv_store *s)
{
	if (!s)
		return;
	bv_pool_free(s->pool);
	if (s->cs)
		s->cs->ops->close(s->cs);
	bv_bad_free(s);
	/* Best effort: a failed flush leaves the log, which every open
	 * replays. */
	if (!s->read_only && s->kv)
		(void)bv_kv_flush_big(s->kv, FLUSH_AT_CLOSE);
	bv_kv_close(s->kv);
	bv_journal_close(s->journal);
	bv_gc_state_free(s);
	if (s->readers_fd >= 0)
		close(s->readers_fd);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	pthread_mutex_destroy(&s->meta_lock);
	pthread_mutex_destroy(&s->write_lock);
	pthread_mutex_destroy(&s->index_lock);
	pthread_mutex_destroy(&s->life_lock);
	pthread_mutex_destroy(&s->bmem_lock);
	free(s->path);
	free(s);
}

void bv_store_ingest_memory(bv_store *s, bv_ingest_memory *out)
{
	pthread_mutex_lock(&s->bmem_lock);
	out->limit = s->bmem_limit;
	out->used = s->bmem_used;
	out->peak = s->bmem_peak;
	out->over = s->bmem_over;
	out->sessions = s->bmem_sessions;
	pthread_mutex_unlock(&s->bmem_lock);
}

uint32_t bv_store_chunk_size(const bv_store *s)
{
	return s->chunk_default;
}

int bv_busy_take_locked(bv_store *s, uint64_t rid)
{
	for (size_t i = 0; i < s->nbusy; i++)
		if (s->busy[i] == rid)
			return BV_EBUSY;
	if (s->nbusy == sizeof s->busy / sizeof s->busy[0])
		return BV_EBUSY;
	s->busy[s->nbusy++] = rid;
	return 0;
}

void bv_busy_drop_locked(bv_store *s, uint64_t rid)
{
	for (size_t i = 0; i < s->nbusy; i++)
		if (s->busy[i] == rid) {
			s->busy[i] = s->busy[--s->nbusy];
			break;
		}
}

void bv_busy_drop(bv_store *s, uint64_t rid)
{
	pthread_mutex_lock(&s->meta_lock);
	bv_busy_drop_locked(s, rid);
	pthread_mutex_unlock(&s->meta_lock);
}

/* Deletes, through births, the entries of RID above version HEAD: every
 * births key (RID, v > HEAD, chunk) names one. */
static int cleanup_births(bv_store *s, uint64_t rid, uint64_t head,
			  struct bv_kv_batch *b)
{
	uint8_t lo[16], hi[8];
	struct bv_kv_iter *it = NULL;
	int rc;

	bv_be64(lo, rid);
	bv_be64(lo + 8, head + 1);
	bv_be64(hi, rid + 1);
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_BIRTHS, lo, 16, hi, 8, &it)))
		return rc;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		if (kl != BV_BIRTH_KEY)
			continue;
		bv_map_delete(b, rid, bv_get_be64(k + 16), bv_get_be64(k + 8));
		if (bv_kv_batch_count(b) >= 65536) {
			if ((rc = bv_kv_write(s->kv, b, 0)))
				break;
			bv_kv_batch_clear(b);
		}
	}
	if (!rc)
		rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc;
}

/* The same by a walk of RID's whole map: versions from before births. */
static int cleanup_scan(bv_store *s, uint64_t rid, uint64_t head,
			struct bv_kv_batch *b)
{
	uint8_t lo[8], hi[8];
	struct bv_kv_iter *it = NULL;
	int rc;

	bv_be64(lo, rid);
	bv_be64(hi, rid + 1);
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_MAPS, lo, 8, hi, 8, &it)))
		return rc;
	for (; bv_kv_iter_valid(it); bv_kv_iter_next(it)) {
		size_t kl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		if (kl != BV_MAP_KEY)
			continue;
		if (~bv_get_be64(k + 16) > head)
			bv_map_delete(b, rid, bv_get_be64(k + 8),
				      ~bv_get_be64(k + 16));
		if (bv_kv_batch_count(b) >= 65536) {
			if ((rc = bv_kv_write(s->kv, b, 0)))
				break;
			bv_kv_batch_clear(b);
		}
	}
	if (!rc)
		rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	return rc;
}

int bv_replica_cleanup(bv_store *s, uint64_t rid, uint64_t head)
{
	struct bv_kv_batch *b = NULL;
	uint8_t key[32];
	uint64_t first;
	int rc;

	if ((rc = bv_kv_batch_new(&b)))
		goto out;
	/* O(what the session wrote) when its version has births keys;
	 * else O(the replica). */
	if ((rc = bv_births_first(s, rid, &first)))
		goto out;
	if (first <= head + 1)
		rc = cleanup_births(s, rid, head, b);
	else
		rc = cleanup_scan(s, rid, head, b);
	if (rc)
		goto out;
	/* The deletions are synced with the marker's removal: a crash
	 * before this leaves the marker, and the next open redoes it. */
	bv_kv_batch_delete(b, BV_CF_META, key, bv_key_id(key, "inflight/",
							  rid));
	rc = bv_kv_write(s->kv, b, 1);
out:
	bv_kv_batch_free(b);
	if (rc)
		return bv_fail_storage(rc, "recovery of an unfinished session");
	return 0;
}

int bv_resolve_group(bv_store *s, const char *what, char *gname,
		     struct bv_grec *g)
{
	struct bv_rrec r;
	int rc = bv_rrec_get(s, what, &r);
	if (rc == 0) {
		if ((rc = bv_id_name(s, "gi/", r.gid, gname)))
			return bv_fail(BV_ECORRUPT, "replica %s: its group "
				       "id %llu is missing", what,
				       (unsigned long long)r.gid);
	} else if (rc == ST_ENOTFOUND) {
		snprintf(gname, BV_NAME_MAX + 1, "%s", what);
	} else {
		return bv_fail(rc, "replica %s: %s", what, bv_strerror(rc));
	}
	rc = bv_grec_get(s, gname, g);
	if (rc == ST_ENOTFOUND)
		return bv_fail(BV_ENOTFOUND, "no replica or group named '%s'",
			       what);
	if (rc)
		return bv_fail(rc, "group %s: %s", gname, bv_strerror(rc));
	return 0;
}

int bv_replica_at(bv_store *s, const char *name, uint64_t rp,
		  struct bv_rrec *r, uint64_t *version, uint64_t *size,
		  uint64_t *rp_out)
{
	char gname[BV_NAME_MAX + 1];
	struct bv_grec g;
	static _Thread_local struct bv_rprec p;
	int rc;

	if ((rc = bv_name_check("replica", name)))
		return rc;
	rc = bv_rrec_get(s, name, r);
	if (rc == ST_ENOTFOUND)
		return bv_fail(BV_ENOTFOUND, "replica %s: no such replica",
			       name);
	if (rc)
		return bv_fail(rc, "replica %s: %s", name, bv_strerror(rc));
	if (rp == 0) {
		*version = r->head;
		*size = r->size;
		*rp_out = 0;
		return 0;
	}
	if ((rc = bv_resolve_group(s, name, gname, &g)))
		return rc;
	if (rp == BV_RP_LATEST) {
		if ((rc = bv_rp_latest(s, g.gid, g.latest_rp, &rp)))
			return bv_fail(rc, "replica %s: latest recovery point: "
				       "%s", name, bv_strerror(rc));
		if (rp == 0)
			return bv_fail(BV_ENOTFOUND, "replica %s: has no "
				       "recovery point yet", name);
	}
	rc = bv_rprec_get(s, g.gid, rp, &p);
	if (rc == ST_ENOTFOUND)
		return bv_fail(BV_ENOTFOUND, "replica %s: no recovery point "
			       "%llu (latest is %llu)", name,
			       (unsigned long long)rp,
			       (unsigned long long)g.latest_rp);
	if (rc)
		return bv_fail(rc, "replica %s: recovery point %llu: %s", name,
			       (unsigned long long)rp, bv_strerror(rc));
	for (uint32_t i = 0; i < p.n; i++) {
		if (p.m[i].rid == r->rid) {
			*version = p.m[i].version;
			*size = p.m[i].size;
			*rp_out = rp;
			return 0;
		}
	}
	/* (bv_group_add: a member takes part from the next RP on.) */
	return bv_fail(BV_ENOTFOUND, "replica %s: recovery point %llu of group "
		       "%s does not hold it (it joined the group later)", name,
		       (unsigned long long)rp, gname);
}

int bv_stats_counters(bv_store *s, bv_stats *out)
{
	struct bv_kv_iter *it = NULL;
	struct bv_cstat c;
	struct bv_mstat m;
	int rc;

	memset(out, 0, sizeof *out);
	bv_fail(0, "%s", "");
	if ((rc = bv_cstat_get(s, &c)) || (rc = bv_mstat_get(s, &m)))
		return bv_fail(rc, "store %s: counters: %s", s->path,
			       bv_strerror(rc));
	out->chunks = c.chunks;
	out->raw_bytes = c.raw_bytes;
	out->stored_bytes = c.stored_bytes;
	out->ingested_bytes = m.ingested_bytes;
	out->map_entries = m.map_entries;
	out->dedup_scope = s->dedup_scope;
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "", 0, NULL, 0, &it)))
		return bv_fail_storage(rc, s->path);
	for (bv_kv_iter_seek(it, "g/", 2); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		if (kl >= 2 && !memcmp(k, "g/", 2)) {
			out->groups++;
		} else if (kl > 2 && !memcmp(k, "p/", 2)) {
			/* One record per RP that exists: a group's latest
			 * number counts the removed ones too. */
			out->rps++;
		} else if (kl >= 2 && !memcmp(k, "r/", 2)) {
			out->replicas++;
			if (vl == 37)
				out->logical_bytes += bv_get_le64(v + 21);
		} else if (kl > 2 && k[0] > 'r') {
			break;
		}
	}
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	if (rc)
		return bv_fail_storage(rc, s->path);
	if ((rc = bv_kv_iter_new(s->kv, BV_CF_META, "u/", 2, "u0", 2, &it)))
		return bv_fail_storage(rc, s->path);
	for (bv_kv_iter_seek(it, "u/", 2); bv_kv_iter_valid(it);
	     bv_kv_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = bv_kv_iter_key(it, &kl);
		const uint8_t *v = bv_kv_iter_value(it, &vl);
		uint64_t from = kl == 14 ? bv_get_be64(k + 6) : 0;
		uint64_t to = vl == 8 ? bv_get_le64(v) : 0;
		if (to > from) {
			out->unknown_ranges++;
			out->unknown_bytes += to - from;
		}
	}
	rc = bv_kv_iter_status(it);
	bv_kv_iter_free(it);
	if (rc)
		return bv_fail_storage(rc, s->path);
	if ((rc = bv_bad_count(s, &out->bad_chunks)))
		return bv_fail_storage(rc, s->path);
	out->index_lost = s->index_lost;
	if ((rc = s->cs->ops->usage(s->cs, &out->containers,
				&out->container_bytes)))
		return bv_fail(rc, "store %s: containers: %s", s->path,
			       bv_strerror(rc));
	if ((rc = bv_kv_disk_bytes(s->kv, &out->index_bytes)))
		return bv_fail_storage(rc, s->path);
	return 0;
}
