/*
 * kv.c: the RocksDB wrapper behind the index (C API, RocksDB 7.8).
 *
 * Memory is bounded whatever the store size: one LRU block cache shared by
 * all column families (index and filter blocks are charged to it too), a
 * cap on all memtables together (db_write_buffer_size), and a cap on open
 * SST files. The chunks and maps families carry full bloom filters, so
 * a lookup of an absent fingerprint (the common case for new data) rarely
 * touches disk.
 *
 * Errors: every RocksDB error string is copied into a per-thread buffer
 * (bv_kv_error) and freed at once; callers see ST_EDB.
 *
 * Read-only opens are RocksDB secondary instances: they may run while
 * another process writes the database, and see it as it was when they
 * opened (they never catch up). A secondary keeps every table file open
 * (max_open_files -1), so compactions of the writer that delete files do
 * not pull them away; its own info log goes to a directory of its own,
 * made under $TMPDIR and removed at close.
 *
 * The seal (PATH.seal, beside the database, never inside it): RocksDB
 * recovers its write-ahead log in kPointInTimeRecovery mode, which keeps
 * a torn last record from blocking the open after a power loss, but
 * which also silently drops every record after a damaged one, synced
 * or not; and a database directory restored from an older copy opens as
 * if nothing were missing. Neither is acceptable for writes that were
 * acknowledged as committed. So every synced write is followed by a
 * record of its sequence number in the seal (fdatasync'ed), and an open
 * compares the sequence number RocksDB recovered with the sealed one:
 * fewer means the database lost a committed write, and the open fails
 * (ST_ELOST) before RocksDB writes anything (the check opens the
 * database read-only first). Unsynced writes after the last synced one
 * may be lost (they were never acknowledged), which is why the seal and
 * not kAbsoluteConsistency: that mode would refuse the store after any
 * power loss during an ingest.
 *
 * The seal file has two slots of SEAL_SLOT bytes, written in turn (a torn
 * write spoils only the slot being written; the other still holds an
 * older, lower number, which errs on the side of opening):
 *   0  8  magic "BVSEAL01"
 *   8  8  u64 write count (the slot is count % 2)
 *  16  8  u64 sequence number of the last synced write
 *  24  8  XXH3-64 of bytes 0..23
 */
#include "kv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/c.h>
#include <xxhash.h>

#include "endian.h"
#include "journal.h"

#include "errcodes.h"

#define KV_CF_TOTAL (BV_CF_COUNT + 1) /* "default" is opened, unused */
#define MULTI_BATCH 64                 /* keys per rocksdb_multi_get_cf */

static const char *const cf_names[KV_CF_TOTAL] = {
	"default", "meta", "chunks", "maps", "births",
};

struct bv_kv {
	rocksdb_t *db;
	rocksdb_options_t *dbopt;
	rocksdb_options_t *cfopt[KV_CF_TOTAL];
	rocksdb_column_family_handle_t *cf[KV_CF_TOTAL];
	rocksdb_cache_t *cache;
	rocksdb_readoptions_t *ro;
	rocksdb_writeoptions_t *wo;      /* unsynced */
	rocksdb_writeoptions_t *wo_sync; /* WAL fsync before return */
	char *path;
	char *secondary; /* a read-only open's own directory, or NULL */

	/* The seal (see the top of the file). wmu orders every write, so
	 * that the sequence number read after a synced write is that
	 * write's, not a later unsynced one's. */
	pthread_mutex_t wmu;
	int wmu_init;
	int seal_fd;            /* -1: read-only, or no seal */
	uint64_t seal_count;    /* writes of the seal so far */
	uint64_t sealed;        /* sequence number in the seal */
	uint64_t recovered;     /* sequence number RocksDB opened at */

	/* The journal (journal.h; bv_kv_set_journal): every write goes to
	 * it first, numbered JLSN + 1, and the number goes into the same
	 * write as meta "jlsn". */
	struct bv_journal *journal;
	uint64_t jlsn;
	/* The births family was missing (a store made before it): opened
	 * without it, and a writer then makes it (bv_kv_open). */
	int births_missing;

	/* Tests: called before every write (bv_kv_set_hook). */
	int (*hook)(void *ud, const struct bv_kv_batch *b, int sync);
	void *hook_ud;
};

#define SEAL_SLOT 4096u
#define SEAL_USED 32u
static const char seal_magic[8] = { 'B', 'V', 'S', 'E', 'A', 'L', '0', '1' };

/* A batch is filled without knowing its database (bv_kv_batch_put takes
 * no kv), while RocksDB's write batches need the database's column family
 * handles. So a batch logs its operations in one reusable byte buffer and
 * bv_kv_write() replays them into a reusable RocksDB batch. Both buffers
 * keep their capacity across bv_kv_batch_clear(): no allocation per
 * operation once warm. Entry: op u8, cf u8, klen u32, vlen u32, key, val
 * (host order: the log never leaves the process). */
struct bv_kv_batch {
	uint8_t *log;
	size_t len, cap;
	size_t count;
	int oom; /* an append failed: bv_kv_write refuses the batch */
	rocksdb_writebatch_t *wb;
};

struct bv_kv_iter {
	rocksdb_iterator_t *it;
	rocksdb_readoptions_t *ro;
	char *bounds; /* LO then HI: the read options point into it */
};

static _Thread_local char kv_err[512];

const char *bv_kv_error(void)
{
	return kv_err;
}

__attribute__((format(printf, 1, 2)))
static void set_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(kv_err, sizeof(kv_err), fmt, ap);
	va_end(ap);
}

/* Takes RocksDB's error string (may be NULL): 0 when there was none, else
 * ST_EDB with the message kept for bv_kv_error(). Frees it either way. */
static int take_err(char *err, const char *what)
{
	if (err == NULL)
		return 0;
	set_err("%s: %s", what, err);
	rocksdb_free(err);
	return ST_EDB;
}

/* The column family handle of CF (the first of ours is after "default"). */
static rocksdb_column_family_handle_t *cfh(struct bv_kv *kv, enum bv_cf cf)
{
	/* A read-only open of a store without births reads it through
	 * "default", which is always there and always empty: no births. */
	if (kv->cf[(int)cf + 1] == NULL)
		return kv->cf[0];
	return kv->cf[(int)cf + 1];
}

/* Families to open: all but births when the store lacks it (kv_open). */
static int kv_ncf(const struct bv_kv *kv)
{
	return kv->births_missing ? KV_CF_TOTAL - 1 : KV_CF_TOTAL;
}

/* Sets kv->births_missing when the database at kv->path has no births
 * family (made before it existed). */
static int births_probe(struct bv_kv *kv)
{
	char *err = NULL;
	size_t n = 0;
	char **names = rocksdb_list_column_families(kv->dbopt, kv->path, &n,
						   &err);
	int ret = take_err(err, "kv list column families");

	if (ret != 0)
		return ret;
	kv->births_missing = 1;
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], cf_names[KV_CF_TOTAL - 1]) == 0)
			kv->births_missing = 0;
	rocksdb_list_column_families_destroy(names, n);
	return 0;
}

static int cf_ok(enum bv_cf cf)
{
	return (int)cf >= 0 && cf < BV_CF_COUNT;
}

static rocksdb_options_t *cf_options(const struct bv_kv *kv, int bloom,
				     size_t write_buffer)
{
	rocksdb_options_t *o = rocksdb_options_create();
	rocksdb_block_based_table_options_t *bbo =
		rocksdb_block_based_options_create();

	rocksdb_block_based_options_set_block_cache(bbo, kv->cache);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(bbo, 1);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(
		bbo, 1);
	rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(
		bbo, 1);
	rocksdb_block_based_options_set_format_version(bbo, 5);
	if (bloom) {
		/* The table options own the policy from here on. */
		rocksdb_block_based_options_set_filter_policy(
			bbo, rocksdb_filterpolicy_create_bloom_full(10));
	}
	rocksdb_options_set_block_based_table_factory(o, bbo);
	rocksdb_block_based_options_destroy(bbo);
	rocksdb_options_set_write_buffer_size(o, write_buffer);
	rocksdb_options_set_max_write_buffer_number(o, 3);
	/* Fingerprints do not compress; map keys and values are small. LZ4
	 * costs little and helps meta and maps. */
	rocksdb_options_set_compression(o, rocksdb_lz4_compression);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
	if (bloom) {
		/* A bloom filter over the memtable's whole keys: a lookup of a
		 * new fingerprint (every chunk of new data) skips the skip
		 * list search. 2 % of the write buffer. */
		rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.02);
		rocksdb_options_set_memtable_whole_key_filtering(o, 1);
	}
	return o;
}

/* Removes a read-only open's directory: RocksDB leaves only its info
 * logs there. */
static void remove_secondary(char *dir)
{
	DIR *d;
	struct dirent *e;

	if (dir == NULL)
		return;
	d = opendir(dir);
	if (d != NULL) {
		int fd = dirfd(d);
		while ((e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(fd, e->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
	free(dir);
}

/* ---- the seal ------------------------------------------------------ */

/* Reads the seal of KV (its highest intact slot) into kv->sealed and
 * kv->seal_count: 0/0 when there is no seal yet (a store made before
 * seals were kept, or a new one). FD is the seal's, open for reading. */
static int seal_read(struct bv_kv *kv, int fd)
{
	uint8_t b[SEAL_USED];

	kv->sealed = 0;
	kv->seal_count = 0;
	for (unsigned i = 0; i < 2; i++) {
		ssize_t n = pread(fd, b, sizeof(b), (off_t)i * SEAL_SLOT);
		uint64_t count;

		if (n < 0) {
			int e = errno;
			set_err("kv %s.seal: %s", kv->path, strerror(e));
			return -e;
		}
		if (n != (ssize_t)sizeof(b) || memcmp(b, seal_magic, 8) != 0 ||
		    bv_get_le64(b + 24) != XXH3_64bits(b, 24))
			continue; /* never written, or torn */
		count = bv_get_le64(b + 8);
		if (count % 2 != i || count < kv->seal_count)
			continue;
		kv->seal_count = count;
		kv->sealed = bv_get_le64(b + 16);
	}
	return 0;
}

/* Opens (CREATE: makes) the seal beside the database and reads it. Read
 * only, a missing seal is no seal (fd -1, nothing is created). */
static int seal_open(struct bv_kv *kv, int create, int *fd_out)
{
	char p[4096];
	int fd, ret;

	*fd_out = -1;
	if (snprintf(p, sizeof(p), "%s.seal", kv->path) >= (int)sizeof(p)) {
		set_err("kv %s: path too long", kv->path);
		return ST_EINVAL;
	}
	fd = open(p, create ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDONLY | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		int e = errno;
		if (!create && e == ENOENT)
			return 0;
		set_err("kv %s: %s", p, strerror(e));
		return -e;
	}
	ret = seal_read(kv, fd);
	if (ret != 0) {
		close(fd);
		return ret;
	}
	*fd_out = fd;
	return 0;
}

/* Records SEQ, the sequence number of a synced write, in the seal, and
 * makes it durable. Seals arrive in any order from several threads; the
 * number never goes down. Caller holds wmu. */
static int seal_write(struct bv_kv *kv, uint64_t seq)
{
	uint8_t b[SEAL_USED];
	uint64_t count = kv->seal_count + 1;

	if (kv->seal_fd < 0 || seq <= kv->sealed)
		return 0;
	memcpy(b, seal_magic, 8);
	bv_le64(b + 8, count);
	bv_le64(b + 16, seq);
	bv_le64(b + 24, XXH3_64bits(b, 24));
	if (pwrite(kv->seal_fd, b, sizeof(b), (off_t)(count % 2) * SEAL_SLOT) !=
		    (ssize_t)sizeof(b) ||
	    fdatasync(kv->seal_fd) != 0) {
		int e = errno ? errno : EIO;
		set_err("kv %s.seal: cannot record a commit: %s", kv->path,
			strerror(e));
		return -e;
	}
	kv->seal_count = count;
	kv->sealed = seq;
	return 0;
}

/* The writer's check before RocksDB may write anything: a read-only open
 * replays the write-ahead log in memory (in the same recovery mode) and
 * tells what sequence number the database would open at. */
static int seal_check(struct bv_kv *kv)
{
	rocksdb_column_family_handle_t *cf[KV_CF_TOTAL] = { 0 };
	char *err = NULL;
	rocksdb_t *db;
	int ret;

	db = rocksdb_open_for_read_only_column_families(
		kv->dbopt, kv->path, kv_ncf(kv), cf_names,
		(const rocksdb_options_t *const *)kv->cfopt, cf, 0, &err);
	ret = take_err(err, "kv open (recovery check)");
	if (ret != 0)
		return ret;
	kv->recovered = rocksdb_get_latest_sequence_number(db);
	for (int i = 0; i < KV_CF_TOTAL; i++)
		if (cf[i] != NULL)
			rocksdb_column_family_handle_destroy(cf[i]);
	rocksdb_close(db);
	if (kv->recovered < kv->sealed) {
		set_err("index %s holds writes up to number %llu, but %s.seal "
			"records that writes up to number %llu were committed: "
			"the index lost committed writes (a damaged "
			"write-ahead log, or a directory restored from an "
			"older copy)", kv->path,
			(unsigned long long)kv->recovered, kv->path,
			(unsigned long long)kv->sealed);
		return ST_ELOST;
	}
	return 0;
}

int bv_kv_lost(const struct bv_kv *kv, uint64_t *recovered, uint64_t *sealed)
{
	if (recovered != NULL)
		*recovered = kv->recovered;
	if (sealed != NULL)
		*sealed = kv->sealed;
	return kv->recovered < kv->sealed;
}

int bv_kv_reseal(struct bv_kv *kv)
{
	int ret;

	if (kv->seal_fd < 0) {
		set_err("kv %s: opened read-only", kv->path);
		return ST_EINVAL;
	}
	pthread_mutex_lock(&kv->wmu);
	kv->sealed = 0; /* seal_write never lowers it */
	ret = seal_write(kv, rocksdb_get_latest_sequence_number(kv->db));
	pthread_mutex_unlock(&kv->wmu);
	return ret;
}

/* Opens KV->path as a secondary instance (see the top of the file). A
 * writer may delete a file between the moment the secondary reads the
 * manifest and the moment it opens the file: such a failure is tried
 * again a few times. */
static int open_secondary(struct bv_kv *kv)
{
	const char *tmp = getenv("TMPDIR");
	char dir[4096];
	char *err = NULL;

	if (snprintf(dir, sizeof(dir), "%s/bvault-ro.XXXXXX",
		     tmp && *tmp ? tmp : "/tmp") >= (int)sizeof(dir)) {
		set_err("kv %s: TMPDIR too long", kv->path);
		return ST_EINVAL;
	}
	if (mkdtemp(dir) == NULL) {
		int e = errno;
		set_err("kv %s: a directory for a read-only open (%s): %s",
			kv->path, dir, strerror(e));
		return -e;
	}
	kv->secondary = strdup(dir);
	if (kv->secondary == NULL) {
		rmdir(dir);
		return -ENOMEM;
	}
	rocksdb_options_set_max_open_files(kv->dbopt, -1);
	/* Every table file stays open: a large index needs more descriptors
	 * than the usual soft limit of 1024; take what the hard one allows. */
	{
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	for (int attempt = 0;; attempt++) {
		kv->db = rocksdb_open_as_secondary_column_families(
			kv->dbopt, kv->path, kv->secondary, kv_ncf(kv),
			cf_names, (const rocksdb_options_t *const *)kv->cfopt,
			kv->cf, &err);
		if (err == NULL || attempt == 4)
			break;
		if (strstr(err, "Corruption") != NULL) {
			/* A damaged write-ahead log: a secondary refuses it
			 * whole, while a read-only open recovers to the last
			 * intact record (point in time), so that a damaged
			 * store can still be examined. Its info log goes to
			 * our own directory: nothing in the store is
			 * written. */
			rocksdb_free(err);
			err = NULL;
			rocksdb_options_set_db_log_dir(kv->dbopt,
						       kv->secondary);
			kv->db = rocksdb_open_for_read_only_column_families(
				kv->dbopt, kv->path, kv_ncf(kv), cf_names,
				(const rocksdb_options_t *const *)kv->cfopt,
				kv->cf, 0, &err);
			break;
		}
		rocksdb_free(err);
		err = NULL;
		usleep(20000);
	}
	return take_err(err, "kv open (read-only)");
}

/* The process that opened RocksDB first, whose background threads every
 * open shares (bv_kv_flush_big). */
static _Atomic pid_t first_pid;

int bv_kv_open(const char *path, const struct bv_kv_opts *o,
	       struct bv_kv **out)
{
	static const struct bv_kv_opts defaults = { 0 };
	struct bv_kv *kv = NULL;
	char *err = NULL;
	size_t cache_mb;
	int ret;
	pid_t none = 0;

	*out = NULL;
	atomic_compare_exchange_strong(&first_pid, &none, getpid());
	if (path == NULL) {
		set_err("kv: no path");
		ret = ST_EINVAL;
		goto fail;
	}
	if (o == NULL)
		o = &defaults;
	if (!o->create || o->read_only) {
		/* RocksDB would say so too, but as a generic error: say
		 * plainly that there is no database here. */
		char cur[4096];
		struct stat st;

		if (snprintf(cur, sizeof(cur), "%s/CURRENT", path) >=
		    (int)sizeof(cur)) {
			set_err("kv %s: path too long", path);
			ret = ST_EINVAL;
			goto fail;
		}
		if (stat(cur, &st) != 0) {
			set_err("kv %s: no database here", path);
			ret = ST_ENOTFOUND;
			goto fail;
		}
	}
	kv = calloc(1, sizeof(*kv));
	if (kv == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	kv->seal_fd = -1;
	kv->path = strdup(path);
	if (kv->path == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	cache_mb = o->cache_mb ? o->cache_mb : 64;
	kv->cache = rocksdb_cache_create_lru(cache_mb << 20);

	kv->dbopt = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(kv->dbopt, o->create ? 1 : 0);
	rocksdb_options_set_create_missing_column_families(kv->dbopt,
							   o->create ? 1 : 0);
	rocksdb_options_set_paranoid_checks(kv->dbopt, 1);
	rocksdb_options_set_max_open_files(kv->dbopt, 512);
	rocksdb_options_set_max_background_jobs(kv->dbopt, 2);
	rocksdb_options_set_keep_log_file_num(kv->dbopt, 4);
	rocksdb_options_set_max_log_file_size(kv->dbopt, 8 << 20);
	/* All memtables together: 3 x 32 MiB, whatever the families do. */
	rocksdb_options_set_db_write_buffer_size(kv->dbopt, (size_t)96 << 20);
	rocksdb_options_set_max_total_wal_size(kv->dbopt, (uint64_t)256 << 20);

	kv->cfopt[0] = cf_options(kv, 0, (size_t)4 << 20);
	kv->cfopt[1 + BV_CF_META] = cf_options(kv, 0, (size_t)8 << 20);
	kv->cfopt[1 + BV_CF_CHUNKS] = cf_options(kv, 1, (size_t)32 << 20);
	kv->cfopt[1 + BV_CF_MAPS] = cf_options(kv, 1, (size_t)32 << 20);
	kv->cfopt[1 + BV_CF_BIRTHS] = cf_options(kv, 0, (size_t)8 << 20);

	kv->ro = rocksdb_readoptions_create();
	kv->wo = rocksdb_writeoptions_create();
	kv->wo_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(kv->wo_sync, 1);

	/* Point-in-time recovery, checked against the seal (top of file). */
	rocksdb_options_set_wal_recovery_mode(kv->dbopt, 2);
	ret = pthread_mutex_init(&kv->wmu, NULL);
	if (ret != 0) {
		ret = -ret;
		goto fail;
	}
	kv->wmu_init = 1;
	/* The seal is read before the database: a commit between the two
	 * then only makes the database newer than the seal, never older. */
	ret = seal_open(kv, !o->read_only, &kv->seal_fd);
	if (ret != 0)
		goto fail;
	if (!o->create && (ret = births_probe(kv)) != 0)
		goto fail;
	if (o->read_only) {
		if (kv->seal_fd >= 0) {
			close(kv->seal_fd);
			kv->seal_fd = -1;
		}
		ret = open_secondary(kv);
		if (ret != 0)
			goto fail;
	} else {
		if (kv->sealed != 0) {
			/* (No seal yet: a new store, or one made before seals
			 * were kept; its first synced write makes one.) */
			ret = seal_check(kv);
			if (ret == ST_ELOST && o->accept_loss)
				ret = 0;
			if (ret != 0)
				goto fail;
		}
		kv->db = rocksdb_open_column_families(
			kv->dbopt, path, kv_ncf(kv), cf_names,
			(const rocksdb_options_t *const *)kv->cfopt, kv->cf,
			&err);
		if (err == NULL && kv->db != NULL && kv->births_missing) {
			/* Made here, and only this family: a store that lacks
			 * meta, chunks or maps still fails to open. */
			kv->cf[KV_CF_TOTAL - 1] = rocksdb_create_column_family(
				kv->db, kv->cfopt[KV_CF_TOTAL - 1],
				cf_names[KV_CF_TOTAL - 1], &err);
			if (err == NULL)
				kv->births_missing = 0;
		}
	}
	ret = take_err(err, "kv open");
	if (ret == 0 && kv->db == NULL) {
		set_err("kv open %s: failed", path);
		ret = ST_EDB;
	}
	if (ret != 0) {
		kv->db = NULL;
		for (int i = 0; i < KV_CF_TOTAL; i++)
			kv->cf[i] = NULL;
		goto fail;
	}
	if (o->read_only)
		kv->recovered = rocksdb_get_latest_sequence_number(kv->db);
	*out = kv;
	return 0;
fail:
	bv_kv_close(kv);
	return ret;
}

void bv_kv_close(struct bv_kv *kv)
{
	if (kv == NULL)
		return;
	for (int i = 0; i < KV_CF_TOTAL; i++)
		if (kv->cf[i] != NULL)
			rocksdb_column_family_handle_destroy(kv->cf[i]);
	if (kv->db != NULL)
		rocksdb_close(kv->db);
	if (kv->wo_sync != NULL)
		rocksdb_writeoptions_destroy(kv->wo_sync);
	if (kv->wo != NULL)
		rocksdb_writeoptions_destroy(kv->wo);
	if (kv->ro != NULL)
		rocksdb_readoptions_destroy(kv->ro);
	for (int i = 0; i < KV_CF_TOTAL; i++)
		if (kv->cfopt[i] != NULL)
			rocksdb_options_destroy(kv->cfopt[i]);
	if (kv->dbopt != NULL)
		rocksdb_options_destroy(kv->dbopt);
	if (kv->cache != NULL)
		rocksdb_cache_destroy(kv->cache);
	remove_secondary(kv->secondary);
	if (kv->seal_fd >= 0)
		close(kv->seal_fd);
	if (kv->wmu_init)
		pthread_mutex_destroy(&kv->wmu);
	free(kv->path);
	free(kv);
}

int bv_kv_get(struct bv_kv *kv, enum bv_cf cf, const void *key, size_t klen,
	      void *val, size_t cap, size_t *vlen)
{
	rocksdb_pinnableslice_t *ps = NULL;
	const char *v;
	size_t len;
	char *err = NULL;
	int ret;

	if (!cf_ok(cf)) {
		ret = ST_EINVAL;
		goto out;
	}
	ps = rocksdb_get_pinned_cf(kv->db, kv->ro, cfh(kv, cf), key, klen,
				   &err);
	ret = take_err(err, "kv get");
	if (ret != 0)
		goto out;
	if (ps == NULL) {
		ret = ST_ENOTFOUND;
		goto out;
	}
	v = rocksdb_pinnableslice_value(ps, &len);
	if (vlen != NULL)
		*vlen = len;
	if (len > cap) {
		ret = ST_EINVAL;
		goto out;
	}
	if (len > 0)
		memcpy(val, v, len);
out:
	if (ps != NULL)
		rocksdb_pinnableslice_destroy(ps);
	return ret;
}

int bv_kv_multi_get(struct bv_kv *kv, enum bv_cf cf, size_t n,
		    const char *const *keys, const size_t *klens, void *vals,
		    size_t vcap, size_t *vlens, uint8_t *found)
{
	const rocksdb_column_family_handle_t *cfs[MULTI_BATCH];
	char *values[MULTI_BATCH];
	size_t sizes[MULTI_BATCH];
	char *errs[MULTI_BATCH];
	int ret = 0;

	if (!cf_ok(cf))
		return ST_EINVAL;
	for (size_t i = 0; i < MULTI_BATCH; i++)
		cfs[i] = cfh(kv, cf);
	for (size_t base = 0; base < n; base += MULTI_BATCH) {
		size_t k = n - base < MULTI_BATCH ? n - base : MULTI_BATCH;

		rocksdb_multi_get_cf(kv->db, kv->ro, cfs, k, keys + base,
				     klens + base, values, sizes, errs);
		/* Walk every slot even after an error: each may own memory. */
		for (size_t j = 0; j < k; j++) {
			size_t i = base + j;
			int e = take_err(errs[j], "kv multi_get");

			found[i] = 0;
			vlens[i] = 0;
			if (e != 0 && ret == 0)
				ret = e;
			if (values[j] == NULL)
				continue;
			vlens[i] = sizes[j];
			if (sizes[j] > vcap) {
				if (ret == 0) {
					set_err("kv multi_get: value of %zu "
						"bytes over %zu", sizes[j],
						vcap);
					ret = ST_EINVAL;
				}
			} else {
				memcpy((char *)vals + i * vcap, values[j],
				       sizes[j]);
				found[i] = 1;
			}
			rocksdb_free(values[j]);
		}
	}
	return ret;
}

int bv_kv_batch_new(struct bv_kv_batch **out)
{
	struct bv_kv_batch *b = calloc(1, sizeof(*b));
	int ret = 0;

	*out = NULL;
	if (b == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	b->wb = rocksdb_writebatch_create();
	*out = b;
out:
	return ret;
}

void bv_kv_batch_free(struct bv_kv_batch *b)
{
	if (b == NULL)
		return;
	if (b->wb != NULL)
		rocksdb_writebatch_destroy(b->wb);
	free(b->log);
	free(b);
}

void bv_kv_batch_clear(struct bv_kv_batch *b)
{
	b->len = 0;
	b->count = 0;
	b->oom = 0;
}

size_t bv_kv_batch_count(const struct bv_kv_batch *b)
{
	return b->count;
}

enum { OP_PUT = 1, OP_DEL = 2, OP_RANGE = 3 };
#define ENTRY_HDR 10u

static void batch_add(struct bv_kv_batch *b, int op, enum bv_cf cf,
		      const void *key, size_t klen, const void *val,
		      size_t vlen)
{
	uint32_t k32 = (uint32_t)klen, v32 = (uint32_t)vlen;
	size_t need;
	uint8_t *p;

	if (b->oom)
		return;
	if (!cf_ok(cf) || klen > UINT32_MAX || vlen > UINT32_MAX ||
	    klen + vlen > SIZE_MAX / 2 - ENTRY_HDR - b->len) {
		b->oom = ST_EINVAL;
		return;
	}
	need = b->len + ENTRY_HDR + klen + vlen;
	if (need > b->cap) {
		size_t nc = b->cap ? b->cap : 4096;
		uint8_t *nl;

		while (nc < need)
			nc *= 2;
		nl = realloc(b->log, nc);
		if (nl == NULL) {
			b->oom = -ENOMEM;
			return;
		}
		b->log = nl;
		b->cap = nc;
	}
	p = b->log + b->len;
	p[0] = (uint8_t)op;
	p[1] = (uint8_t)cf;
	memcpy(p + 2, &k32, 4);
	memcpy(p + 6, &v32, 4);
	if (klen > 0)
		memcpy(p + ENTRY_HDR, key, klen);
	if (vlen > 0)
		memcpy(p + ENTRY_HDR + klen, val, vlen);
	b->len = need;
	b->count++;
}

void bv_kv_batch_put(struct bv_kv_batch *b, enum bv_cf cf, const void *key,
		     size_t klen, const void *val, size_t vlen)
{
	batch_add(b, OP_PUT, cf, key, klen, val, vlen);
}

void bv_kv_batch_delete(struct bv_kv_batch *b, enum bv_cf cf,
			const void *key, size_t klen)
{
	batch_add(b, OP_DEL, cf, key, klen, NULL, 0);
}

void bv_kv_batch_delete_range(struct bv_kv_batch *b, enum bv_cf cf,
			      const void *lo, size_t lolen, const void *hi,
			      size_t hilen)
{
	batch_add(b, OP_RANGE, cf, lo, lolen, hi, hilen);
}

/* The journal's half of a write (caller holds wmu): the batch is
 * appended to the journal as entry JLSN + 1, made durable first when the
 * write is synced (and with it every earlier entry), and the write
 * records the number (meta "jlsn"). An unsynced write's entry is
 * written before RocksDB takes the batch, so that a crash that keeps
 * the page cache keeps both, and the next synced write makes both
 * durable, in that order (storage/FORMAT.md, "The index journal"). */
static int journal_first(struct bv_kv *kv, struct bv_kv_batch *b, int sync)
{
	uint64_t lsn = kv->jlsn + 1;
	uint8_t v[8];
	int ret;

	ret = bv_journal_append(kv->journal, lsn, BV_J_BATCH, b->log, b->len);
	if (ret == 0 && sync)
		ret = bv_journal_sync(kv->journal);
	if (ret != 0) {
		set_err("kv write: %s", bv_journal_error());
		bv_journal_roll(kv->journal);
		return ret;
	}
	bv_le64(v, lsn);
	rocksdb_writebatch_put_cf(b->wb, cfh(kv, BV_CF_META), "jlsn", 4,
				  (const char *)v, sizeof(v));
	return 0;
}

int bv_kv_write(struct bv_kv *kv, struct bv_kv_batch *b, int sync)
{
	char *err = NULL;
	size_t pos = 0;
	int ret;

	if (b->oom != 0) {
		set_err("kv write: batch is incomplete (%s)",
			b->oom == -ENOMEM ? "out of memory" : "bad entry");
		ret = b->oom;
		goto out;
	}
	pthread_mutex_lock(&kv->wmu);
	if (kv->hook != NULL && (ret = kv->hook(kv->hook_ud, b, sync)) != 0) {
		pthread_mutex_unlock(&kv->wmu);
		set_err("kv write: failed by a test hook (%d)", ret);
		goto out;
	}
	pthread_mutex_unlock(&kv->wmu);
	rocksdb_writebatch_clear(b->wb);
	while (pos < b->len) {
		const uint8_t *p = b->log + pos;
		uint32_t klen, vlen;
		const char *key;

		memcpy(&klen, p + 2, 4);
		memcpy(&vlen, p + 6, 4);
		key = (const char *)p + ENTRY_HDR;
		if (p[0] == OP_PUT)
			rocksdb_writebatch_put_cf(b->wb, cfh(kv, p[1]), key,
						  klen, key + klen, vlen);
		else if (p[0] == OP_RANGE)
			rocksdb_writebatch_delete_range_cf(
				b->wb, cfh(kv, p[1]), key, klen, key + klen,
				vlen);
		else
			rocksdb_writebatch_delete_cf(b->wb, cfh(kv, p[1]), key,
						     klen);
		pos += ENTRY_HDR + (size_t)klen + vlen;
	}
	pthread_mutex_lock(&kv->wmu);
	if (kv->journal != NULL && (ret = journal_first(kv, b, sync)) != 0) {
		pthread_mutex_unlock(&kv->wmu);
		goto out;
	}
	rocksdb_write(kv->db, sync ? kv->wo_sync : kv->wo, b->wb, &err);
	ret = take_err(err, "kv write");
	if (kv->journal != NULL) {
		if (ret == 0)
			kv->jlsn++;
		else
			bv_journal_roll(kv->journal); /* void the entry */
	}
	if (ret == 0 && sync)
		ret = seal_write(kv, rocksdb_get_latest_sequence_number(kv->db));
	pthread_mutex_unlock(&kv->wmu);
	rocksdb_writebatch_clear(b->wb);
out:
	return ret;
}

int bv_kv_put(struct bv_kv *kv, enum bv_cf cf, const void *key, size_t klen,
	      const void *val, size_t vlen, int sync)
{
	struct bv_kv_batch *b = NULL;
	int ret;

	/* A batch of one: one write path (the seal, the test hook). */
	if (!cf_ok(cf)) {
		ret = ST_EINVAL;
		goto out;
	}
	ret = bv_kv_batch_new(&b);
	if (ret != 0)
		goto out;
	bv_kv_batch_put(b, cf, key, klen, val, vlen);
	ret = bv_kv_write(kv, b, sync);
out:
	bv_kv_batch_free(b);
	return ret;
}

/* A snapshot: what the database held at bv_kv_snap_new, for scans that
 * must see one point in time (GC's mark and sweep). */
struct bv_kv_snap {
	const rocksdb_snapshot_t *snap;
};

int bv_kv_snap_new(struct bv_kv *kv, struct bv_kv_snap **out)
{
	struct bv_kv_snap *sn = calloc(1, sizeof(*sn));

	*out = NULL;
	if (sn == NULL)
		return -ENOMEM;
	sn->snap = rocksdb_create_snapshot(kv->db);
	if (sn->snap == NULL) {
		free(sn);
		set_err("kv snapshot: RocksDB made none");
		return ST_EDB;
	}
	*out = sn;
	return 0;
}

void bv_kv_snap_free(struct bv_kv *kv, struct bv_kv_snap *sn)
{
	if (sn == NULL)
		return;
	rocksdb_release_snapshot(kv->db, sn->snap);
	free(sn);
}

uint64_t bv_kv_estimate_keys(struct bv_kv *kv, enum bv_cf cf)
{
	char *v;
	uint64_t n = 0;

	if (!cf_ok(cf))
		return 0;
	v = rocksdb_property_value_cf(kv->db, cfh(kv, cf),
				      "rocksdb.estimate-num-keys");
	if (v != NULL) {
		n = strtoull(v, NULL, 10);
		rocksdb_free(v);
	}
	return n;
}

static int iter_make(struct bv_kv *kv, const struct bv_kv_snap *sn,
		     enum bv_cf cf, const void *lo, size_t lolen,
		     const void *hi, size_t hilen, struct bv_kv_iter **out);

int bv_kv_iter_new(struct bv_kv *kv, enum bv_cf cf, const void *lo,
		   size_t lolen, const void *hi, size_t hilen,
		   struct bv_kv_iter **out)
{
	return iter_make(kv, NULL, cf, lo, lolen, hi, hilen, out);
}

int bv_kv_iter_new_at(struct bv_kv *kv, const struct bv_kv_snap *sn,
		      enum bv_cf cf, const void *lo, size_t lolen,
		      const void *hi, size_t hilen, struct bv_kv_iter **out)
{
	return iter_make(kv, sn, cf, lo, lolen, hi, hilen, out);
}

static int iter_make(struct bv_kv *kv, const struct bv_kv_snap *sn,
		     enum bv_cf cf, const void *lo, size_t lolen,
		     const void *hi, size_t hilen, struct bv_kv_iter **out)
{
	struct bv_kv_iter *it = NULL;
	size_t blen;
	int ret = 0;

	*out = NULL;
	if (!cf_ok(cf) || (lo == NULL && lolen != 0) ||
	    (hi == NULL && hilen != 0) || lolen > SIZE_MAX / 2 ||
	    hilen > SIZE_MAX / 2) {
		ret = ST_EINVAL;
		goto fail;
	}
	it = calloc(1, sizeof(*it));
	if (it == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	blen = lolen + hilen;
	it->bounds = malloc(blen ? blen : 1);
	if (it->bounds == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	if (lolen > 0)
		memcpy(it->bounds, lo, lolen);
	if (hilen > 0)
		memcpy(it->bounds + lolen, hi, hilen);
	it->ro = rocksdb_readoptions_create();
	if (sn != NULL) {
		/* A whole-store scan: it would only push the hot blocks of
		 * lookups out of the cache. */
		rocksdb_readoptions_set_snapshot(it->ro, sn->snap);
		rocksdb_readoptions_set_fill_cache(it->ro, 0);
	}
	if (lo != NULL)
		rocksdb_readoptions_set_iterate_lower_bound(it->ro, it->bounds,
							    lolen);
	if (hi != NULL)
		rocksdb_readoptions_set_iterate_upper_bound(
			it->ro, it->bounds + lolen, hilen);
	it->it = rocksdb_create_iterator_cf(kv->db, it->ro, cfh(kv, cf));
	/* Positioned at the lower bound, so "new, then while valid" works
	 * without a seek. */
	rocksdb_iter_seek_to_first(it->it);
	*out = it;
	return 0;
fail:
	bv_kv_iter_free(it);
	return ret;
}

void bv_kv_iter_free(struct bv_kv_iter *it)
{
	if (it == NULL)
		return;
	/* The iterator before the read options and bounds it points into. */
	if (it->it != NULL)
		rocksdb_iter_destroy(it->it);
	if (it->ro != NULL)
		rocksdb_readoptions_destroy(it->ro);
	free(it->bounds);
	free(it);
}

void bv_kv_iter_seek(struct bv_kv_iter *it, const void *key, size_t klen)
{
	rocksdb_iter_seek(it->it, key, klen);
}

int bv_kv_iter_valid(struct bv_kv_iter *it)
{
	return rocksdb_iter_valid(it->it) ? 1 : 0;
}

void bv_kv_iter_next(struct bv_kv_iter *it)
{
	rocksdb_iter_next(it->it);
}

const void *bv_kv_iter_key(struct bv_kv_iter *it, size_t *klen)
{
	return rocksdb_iter_key(it->it, klen);
}

const void *bv_kv_iter_value(struct bv_kv_iter *it, size_t *vlen)
{
	return rocksdb_iter_value(it->it, vlen);
}

int bv_kv_iter_status(struct bv_kv_iter *it)
{
	char *err = NULL;

	rocksdb_iter_get_error(it->it, &err);
	return take_err(err, "kv iterator");
}

/* Sums the sizes of the regular files in DIR (the database directory has
 * no subdirectories that matter). */
int bv_kv_disk_bytes(struct bv_kv *kv, uint64_t *bytes)
{
	DIR *d;
	struct dirent *e;
	uint64_t sum = 0;
	int ret = 0;

	d = opendir(kv->path);
	if (d == NULL) {
		ret = -errno;
		goto out;
	}
	for (;;) {
		struct stat st;

		errno = 0;
		e = readdir(d);
		if (e == NULL) {
			if (errno != 0)
				ret = -errno;
			break;
		}
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno == ENOENT)
				continue; /* compaction removed it meanwhile */
			ret = -errno;
			break;
		}
		if (S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	if (ret == 0)
		*bytes = sum;
out:
	return ret;
}

/* Fsyncs every regular file in DIR, then DIR: RocksDB's checkpoint does
 * not promise that its copies (or its new CURRENT and MANIFEST) are
 * durable, and a backup that a power loss can tear is no backup. */
static int sync_dir_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;

	if (d == NULL)
		return -errno;
	while (ret == 0 && (errno = 0, e = readdir(d)) != NULL) {
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC |
			    O_NOFOLLOW);
		if (fd < 0) {
			ret = -errno;
			break;
		}
		if (fsync(fd) != 0)
			ret = -errno;
		close(fd);
	}
	if (ret == 0 && errno != 0)
		ret = -errno;
	if (ret == 0 && fsync(dirfd(d)) != 0)
		ret = -errno;
	closedir(d);
	return ret;
}

int bv_kv_checkpoint(struct bv_kv *kv, const char *dir)
{
	rocksdb_checkpoint_t *cp;
	char *err = NULL;
	int ret;

	cp = rocksdb_checkpoint_object_create(kv->db, &err);
	if ((ret = take_err(err, "kv checkpoint")) != 0)
		return ret;
	/* log_size_for_flush 0: always flush, so the copy needs no log. */
	rocksdb_checkpoint_create(cp, dir, 0, &err);
	rocksdb_checkpoint_object_destroy(cp);
	if ((ret = take_err(err, "kv checkpoint")) != 0)
		return ret;
	if ((ret = sync_dir_files(dir)) != 0)
		set_err("kv checkpoint %s: cannot sync: %s", dir,
			strerror(-ret));
	return ret;
}

uint64_t bv_kv_sequence(struct bv_kv *kv)
{
	return rocksdb_get_latest_sequence_number(kv->db);
}

int bv_kv_set_journal(struct bv_kv *kv, struct bv_journal *j)
{
	uint8_t v[8];
	size_t len = 0;
	int ret;

	ret = bv_kv_get(kv, BV_CF_META, "jlsn", 4, v, sizeof(v), &len);
	if (ret == ST_ENOTFOUND) {
		len = 8;
		memset(v, 0, sizeof(v));
	} else if (ret != 0 || len != 8) {
		set_err("kv %s: the journal number (meta jlsn) is damaged",
			kv->path);
		return ST_ECORRUPT;
	}
	pthread_mutex_lock(&kv->wmu);
	kv->journal = j;
	kv->jlsn = bv_get_le64(v);
	pthread_mutex_unlock(&kv->wmu);
	return 0;
}

uint64_t bv_kv_jlsn(struct bv_kv *kv)
{
	uint64_t v;

	pthread_mutex_lock(&kv->wmu);
	v = kv->jlsn;
	pthread_mutex_unlock(&kv->wmu);
	return v;
}

/* Appends the whole database to J as a snapshot of state LSN: BEGIN,
 * DATA entries of whole batches (puts, in column family then key order)
 * of about 1 MiB, END. Caller makes sure nothing writes meanwhile. */
int bv_kv_snapshot(struct bv_kv *kv, struct bv_journal *j, uint64_t lsn)
{
	struct bv_kv_batch *b = NULL;
	int ret;

	if ((ret = bv_kv_batch_new(&b)) != 0)
		return ret;
	if ((ret = bv_journal_append(j, lsn, BV_J_SNAP_BEGIN, "", 0)) != 0)
		goto out;
	for (int cf = 0; cf < BV_CF_COUNT && ret == 0; cf++) {
		struct bv_kv_iter *it = NULL;

		if ((ret = bv_kv_iter_new(kv, (enum bv_cf)cf, "", 0, NULL, 0,
					  &it)) != 0)
			break;
		for (bv_kv_iter_seek(it, "", 0); bv_kv_iter_valid(it);
		     bv_kv_iter_next(it)) {
			size_t kl, vl;
			const void *k = bv_kv_iter_key(it, &kl);
			const void *v = bv_kv_iter_value(it, &vl);

			if (cf == BV_CF_META && kl == 4 &&
			    memcmp(k, "jlsn", 4) == 0)
				continue; /* the rebuild writes its own */
			bv_kv_batch_put(b, (enum bv_cf)cf, k, kl, v, vl);
			if (b->len >= (1u << 20)) {
				ret = bv_journal_append(j, lsn, BV_J_SNAP_DATA,
							b->log, b->len);
				bv_kv_batch_clear(b);
				if (ret != 0)
					break;
			}
		}
		if (ret == 0)
			ret = bv_kv_iter_status(it);
		bv_kv_iter_free(it);
	}
	if (ret == 0 && b->len)
		ret = bv_journal_append(j, lsn, BV_J_SNAP_DATA, b->log, b->len);
	if (ret == 0)
		ret = bv_journal_append(j, lsn, BV_J_SNAP_END, "", 0);
	if (ret == 0)
		ret = bv_journal_sync(j);
	if (ret != 0 && bv_journal_error()[0])
		set_err("kv %s: snapshot into the journal: %s", kv->path,
			bv_journal_error());
out:
	bv_kv_batch_free(b);
	return ret;
}

int bv_kv_apply_log(struct bv_kv *kv, const void *log, size_t len)
{
	struct bv_kv_batch *b = NULL;
	const uint8_t *p = log;
	size_t pos = 0;
	int ret;

	if ((ret = bv_kv_batch_new(&b)) != 0)
		return ret;
	while (pos < len) {
		uint32_t klen, vlen;

		if (len - pos < ENTRY_HDR)
			goto bad;
		memcpy(&klen, p + pos + 2, 4);
		memcpy(&vlen, p + pos + 6, 4);
		if (klen > len - pos - ENTRY_HDR ||
		    vlen > len - pos - ENTRY_HDR - klen ||
		    p[pos + 1] >= BV_CF_COUNT ||
		    (p[pos] != OP_PUT && p[pos] != OP_DEL &&
		     p[pos] != OP_RANGE))
			goto bad;
		if (p[pos] == OP_PUT)
			bv_kv_batch_put(b, (enum bv_cf)p[pos + 1],
					p + pos + ENTRY_HDR, klen,
					p + pos + ENTRY_HDR + klen, vlen);
		else if (p[pos] == OP_RANGE)
			bv_kv_batch_delete_range(b, (enum bv_cf)p[pos + 1],
						 p + pos + ENTRY_HDR, klen,
						 p + pos + ENTRY_HDR + klen,
						 vlen);
		else
			bv_kv_batch_delete(b, (enum bv_cf)p[pos + 1],
					   p + pos + ENTRY_HDR, klen);
		pos += ENTRY_HDR + (size_t)klen + vlen;
	}
	ret = bv_kv_write(kv, b, 0);
	bv_kv_batch_free(b);
	return ret;
bad:
	bv_kv_batch_free(b);
	set_err("kv %s: a journal entry that is no batch (at byte %zu)",
		kv->path, pos);
	return ST_ECORRUPT;
}

int bv_kv_flush(struct bv_kv *kv)
{
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	int ret = 0;

	rocksdb_flushoptions_set_wait(fo, 1);
	for (int i = 0; i < BV_CF_COUNT && ret == 0; i++) {
		char *err = NULL;

		rocksdb_flush_cf(kv->db, fo, cfh(kv, (enum bv_cf)i), &err);
		ret = take_err(err, "kv flush");
	}
	rocksdb_flushoptions_destroy(fo);
	return ret;
}

int bv_kv_flush_big(struct bv_kv *kv, uint64_t min)
{
	uint64_t all = 0;

	/* A flush waits for RocksDB's background threads, which a child
	 * forked after the first open does not have (their pool is the
	 * parent's): it would wait for ever. Such a child leaves the log. */
	if (getpid() != first_pid)
		return 0;

	for (int i = 0; i < BV_CF_COUNT; i++) {
		uint64_t n = 0;
		if (rocksdb_property_int_cf(kv->db, cfh(kv, (enum bv_cf)i),
					    "rocksdb.cur-size-all-mem-tables",
					    &n) == 0)
			all += n;
	}
	return all >= min ? bv_kv_flush(kv) : 0;
}

int bv_kv_compact_range(struct bv_kv *kv, enum bv_cf cf, const void *lo,
			size_t lolen, const void *hi, size_t hilen)
{
	if (!cf_ok(cf))
		return ST_EINVAL;
	rocksdb_compact_range_cf(kv->db, cfh(kv, cf), lo, lolen, hi, hilen);
	return 0;
}

void bv_kv_set_hook(struct bv_kv *kv,
		    int (*hook)(void *ud, const struct bv_kv_batch *b,
				int sync),
		    void *ud)
{
	pthread_mutex_lock(&kv->wmu);
	kv->hook = hook;
	kv->hook_ud = ud;
	pthread_mutex_unlock(&kv->wmu);
}

int bv_kv_batch_each(const struct bv_kv_batch *b,
		     int (*cb)(void *ud, int put, enum bv_cf cf,
			       const void *key, size_t klen, const void *val,
			       size_t vlen),
		     void *ud)
{
	size_t pos = 0;
	int ret = 0;

	while (pos < b->len && ret == 0) {
		const uint8_t *p = b->log + pos;
		uint32_t klen, vlen;

		memcpy(&klen, p + 2, 4);
		memcpy(&vlen, p + 6, 4);
		ret = cb(ud, p[0] == OP_PUT, (enum bv_cf)p[1], p + ENTRY_HDR,
			 klen, p[0] == OP_DEL ? NULL : p + ENTRY_HDR + klen,
			 vlen);
		pos += ENTRY_HDR + (size_t)klen + vlen;
	}
	return ret;
}
