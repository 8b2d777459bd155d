/*
 * bvault.h: the one public header of libbvault, a block-level
 * deduplicating replica storage engine.
 *
 * Contract, for every function below unless it says otherwise:
 *   - Returns 0 (or a non-negative count or slot) on success and a negative
 *     error code on failure: -errno for OS and io_uring failures, passed up
 *     unchanged, or one of the BV_E* codes below. bv_strerror() names it,
 *     bv_errno() maps it to the nearest errno. Each function lists the
 *     BV_E* codes it returns; besides those, any function that touches the
 *     store may return BV_EDB (the index failed), BV_ECORRUPT (a damaged
 *     record) and -errno (-ENOMEM, -EIO, -ENOSPC, -EACCES, ...).
 *   - On failure the calling thread keeps a message naming the object and
 *     what was wrong ("replica vm7: stream base is RP 12 but latest is RP
 *     14"); bv_store_error() returns it. The message is per thread, not
 *     per handle: it stays valid until the next libbvault call of the same
 *     thread (on any handle), which may replace it. bv_stream_writer_error()
 *     is the one exception: a stream writer keeps its own.
 *   - A failed call changes nothing in the store (INVARIANTS.md 2 and 6).
 *     In an ingest session a refused argument changes nothing either; a
 *     failure while data is being applied leaves the session good only
 *     for bv_ingest_abort() (the store itself still unchanged).
 *   - Strings and buffers passed in are copied or used only during the
 *     call; the caller keeps ownership. Structs filled for the caller are
 *     the caller's.
 *
 * Threads:
 *   - bv_strerror, bv_errno, bv_version and bv_chunk_digest may be called
 *     from any thread at any time.
 *   - A bv_store may be shared by threads: every call that takes a
 *     bv_store may run on several threads at once (calls that change the
 *     store are serialized inside), except bv_store_close(), which must
 *     be the last call on it, with nothing else running on it.
 *   - Each bv_ingest, bv_reader and bv_stream_writer belongs to one
 *     thread at a time (hand it over with your own synchronization).
 *   - Any number of readers may be open beside the ingest sessions; a
 *     replica is in at most one open session of a process at a time
 *     (BV_EBUSY).
 *
 * Callbacks (the list walks, bv_progress_fn) run on the calling thread,
 * and no lock of the store is held while they run (bv_verify_fn may run
 * while verify holds one, and has a stricter rule: see there). They may
 * call any function of this header, including ones that change the store,
 * except bv_store_close() on that store and, from a progress callback of
 * bv_ingest_stream(), calls on that session. The entries a list walk
 * visits are fixed when it begins (a replica created by the callback is
 * not visited); a change the callback makes may or may not show in the
 * entries still to come. A non-zero return of a list callback stops the
 * walk and is returned (with whatever message the callback left). Structs
 * passed to a callback are valid only during that call: copy what you
 * keep.
 *
 * Processes: one process opens a store for writing at a time (BV_EBUSY
 * for a second one); any number of processes open it read-only beside
 * that writer (bv_open_opts.read_only), each seeing the store as it was
 * at its open. Changes in a process that has it open read-only are
 * refused (BV_EREADONLY): they must go through the writer (bvaultd).
 *
 * Caveats:
 *   - Sizes and offsets of disks, extents and streams are multiples of
 *     512 bytes.
 *   - Nothing tracks the sessions and readers of a store: close every
 *     bv_ingest and bv_reader before bv_store_close().
 *   - A reader, and a read-only bv_store, hold a snapshot of the index:
 *     files that the writer's compactions replace stay on disk until they
 *     are closed. Close them when done.
 *   - The store is private to its owner (0700 directories, 0600 files;
 *     storage/FORMAT.md, "File modes"), but index files RocksDB makes get
 *     0644 less the process's umask: set umask(077) in a program that
 *     embeds libbvault, as the bvault tools do.
 */
#ifndef BVAULT_H
#define BVAULT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BV_BUILDING_LIB) && defined(__GNUC__)
#define BV_API __attribute__((visibility("default")))
#else
#define BV_API
#endif

/* BVAULT_VERSION ("MAJOR.MINOR.PATCH"), BVAULT_VERSION_MAJOR, _MINOR and
 * _PATCH, made by the build from project(version:) in meson.build;
 * bv_version() is the library's at run time. */
#include "bvault_version.h"

/* Engine error codes: a range of their own, below every -errno. Pinned:
 * these values never change meaning. */
enum {
	BV_ECORRUPT = -1001,   /* a stored record or index entry is damaged */
	BV_ECHECKSUM = -1002,  /* checksum or fingerprint mismatch on read */
	BV_EFORMAT = -1003,    /* store or stream format version not understood */
	BV_EBASE = -1004,      /* stream base (RP or version identity) is not
				* the replica's latest */
	BV_ENOTFOUND = -1005,  /* no such replica, group, RP or store */
	BV_EEXIST = -1006,     /* the name is taken */
	BV_EINVAL = -1007,     /* a bad argument */
	BV_ESTREAM = -1008,    /* malformed change stream */
	BV_ETRUNCATED = -1009, /* change stream ended early */
	BV_ERANGE = -1010,     /* extent past the disk size, or overflowing */
	BV_EALIGN = -1011,     /* offset or length not a multiple of 512 */
	BV_EBUSY = -1012,      /* another session holds the replica */
	BV_EDB = -1013,        /* the index (RocksDB) failed */
	BV_ENOTSTORE = -1014,  /* the directory is not a bvault store */
	BV_EGROUP = -1015,     /* replicas of one session span groups */
	BV_EREADONLY = -1016,  /* the store was opened read-only */
	BV_ELOST = -1017,      /* the index lost writes it had committed */
};

#define BV_NAME_MAX 63   /* replica and group names: [A-Za-z0-9._-], 1..63 */
#define BV_LABEL_MAX 127 /* RP labels: any bytes but NUL, up to 127 */
#define BV_RP_LATEST UINT64_MAX
#define BV_CHUNK_MIN 4096u
#define BV_CHUNK_MAX (4u << 20)
#define BV_CHUNK_DEFAULT (64u << 10)
#define BV_SECTOR 512u
/* Version identities: every version committed by this build has one, 128
 * random bits, kept in the index; a bv_diff stream carries the identity of
 * its base version and of the version it makes, so that a history goes on
 * unchanged in another store (engine/STREAM.md). All zero: none (a stream
 * that names no identity) or unknown (a version committed before stores
 * kept identities). */
#define BV_ID_SIZE 16

/* Consistency kind an RP was declared with by its sender. */
enum { BV_CRASH_CONSISTENT = 0, BV_APP_CONSISTENT = 1 };

/* Change stream formats accepted by bv_ingest_stream(). */
enum { BV_FORMAT_BVAULT = 0, BV_FORMAT_RBD_DIFF = 1 };

typedef struct bv_store bv_store;
typedef struct bv_ingest bv_ingest;
typedef struct bv_reader bv_reader;
typedef struct bv_stream_writer bv_stream_writer;

/* Called with bytes done and bytes in all; may be NULL. */
typedef void (*bv_progress_fn)(void *ud, uint64_t done, uint64_t total);

/* A static string naming ERR (a BV_E* code or -errno); never NULL. */
BV_API const char *bv_strerror(int err);
/* The errno nearest to ERR, for a plugin or server that must answer with
 * one: -errno (above -1000) gives errno; BV_ENOTFOUND and BV_ENOTSTORE
 * ENOENT, BV_EEXIST EEXIST, BV_EINVAL, BV_EALIGN, BV_ERANGE and BV_EGROUP
 * EINVAL, BV_EREADONLY EROFS, BV_EBUSY EBUSY, BV_ECORRUPT, BV_ECHECKSUM,
 * BV_EDB and BV_ELOST EIO, BV_ESTREAM and BV_ETRUNCATED EBADMSG,
 * BV_EFORMAT ENOTSUP, BV_EBASE ESTALE, any other negative value EIO; 0 for
 * ERR >= 0. */
BV_API int bv_errno(int err);
/* The library's version, "MAJOR.MINOR.PATCH" (BVAULT_VERSION of the
 * header it was built with); static. */
BV_API const char *bv_version(void);

/* ---- store ------------------------------------------------------------ */

/* Option structs (bv_init_opts, bv_open_opts, bv_commit_opts) grow new
 * fields at their end, each meaning "as before" when 0: initialize them
 * whole ("= { 0 }" or designated initializers), never field by field. */

typedef struct bv_init_opts {
	uint32_t chunk_size; /* default chunk size of new replicas; 0: 64 KiB */
	/* Bytes past which a container file is closed and a new one begun
	 * (the GC's unit of rewriting); 0: BV_CONTAINER_SIZE_DEFAULT. From
	 * 1 MiB to 16 GiB. */
	uint64_t container_size;
	/* Which writes dedup against each other (BV_DEDUP_*), recorded at
	 * init and fixed for the store's life; 0: BV_DEDUP_STORE. */
	int dedup_scope;
} bv_init_opts;
/* BV_DEDUP_STORE: every chunk dedups against every replica's (the most
 * space saved; a commit's timing tells whether its data was stored
 * already). BV_DEDUP_GROUP: each replica group (tenant) dedups only
 * against its own chunks: fingerprints are tagged with the group
 * (INVARIANTS.md 15), so data groups share is stored once per group. */
#define BV_DEDUP_STORE 0
#define BV_DEDUP_GROUP 1
#define BV_CONTAINER_SIZE_DEFAULT (64ull << 20)
#define BV_CONTAINER_SIZE_MIN (1ull << 20)
#define BV_CONTAINER_SIZE_MAX (16ull << 30)

typedef struct bv_open_opts {
	unsigned workers;   /* compression workers; 0: one per online core */
	int read_only;      /* see bv_store_open */
	int accept_index_loss; /* see bv_store_open (BV_ELOST) */
	/* Bytes of batch memory that all the ingest sessions of the store
	 * share (bv_ingest_memory below); 0: BV_INGEST_MEMORY_DEFAULT. At
	 * least BV_INGEST_MEMORY_MIN. */
	uint64_t ingest_memory;
} bv_open_opts;
#define BV_INGEST_MEMORY_DEFAULT (128ull << 20)
#define BV_INGEST_MEMORY_MIN (8ull << 20)

/* Creates a new store in PATH (created if missing; must be empty) and
 * leaves it closed, private to its owner (PATH becomes 0700). BV_EEXIST
 * if PATH already holds anything, BV_EINVAL for a bad chunk size,
 * container size or dedup scope (before PATH is made), BV_EDB. The
 * message is also copied to ERRBUF (may be NULL). */
BV_API int bv_store_init(const char *path, const bv_init_opts *opts,
			 char *errbuf, size_t errlen);

/* Opens the store in PATH. *OUT is set on success and on failure (unless
 * the failure is -ENOMEM), so that bv_store_error() can explain; close it
 * either way. BV_ENOTSTORE (no store there), BV_EFORMAT (a store of
 * another format version), BV_EBUSY (another process has it open for
 * writing), BV_ECORRUPT (its config is damaged; for a writable open also
 * a container that is missing, shorter than the index says, or has a
 * damaged header: the message names the file and the offset), BV_ELOST
 * (a writable open: the index lost commits its seal records, a damaged
 * write-ahead log or an index/ restored from an older copy; nothing is
 * changed; OPTS->accept_index_loss opens anyway, from what the index
 * holds, and reseals it), BV_EDB, -errno (-EACCES, -EROFS: a writable
 * open needs to write).
 * A writable open never cuts or removes container bytes (INVARIANTS.md,
 * C2): bytes no commit names are kept, recorded and reported
 * (bv_stats.unknown_bytes, bv_store_verify_report).
 * A writable open takes the store's lock, makes the store private to its
 * owner (upgrading stores of older code, storage/FORMAT.md "File modes")
 * and recovers from a crash: versions that were not committed are
 * removed (INVARIANTS.md 2).
 * With OPTS->read_only, it opens the store beside a writer (a running
 * bvaultd, say) or alone, and never writes a byte of it (INVARIANTS.md
 * 7): no lock, so it never keeps a writer out; no recovery (what it reads
 * is committed anyway); works on a read-only mount and for a user who
 * may only read the store, and on a damaged store (a damaged index log
 * is read up to its last intact record; bv_stats.index_lost says when
 * commits were lost), so that bv_store_verify_report can show what the
 * damage affects. It needs a writable $TMPDIR (else /tmp) for
 * the index's log, removed at close. It sees the store as it was at the
 * open, every committed RP whole and nothing of the sessions in flight,
 * and never catches up; every call that would change the store fails
 * with BV_EREADONLY, changing nothing. It keeps every index file open,
 * and raises the process's soft limit of open files to its hard limit
 * for that. */
BV_API int bv_store_open(const char *path, const bv_open_opts *opts,
			 bv_store **out);
/* Closes and frees S; NULL is fine. Every bv_ingest and bv_reader of S
 * must be closed (committed, aborted) before: nothing tracks them, and one
 * left open then uses freed memory. No other call on S may be running.
 * An uncommitted session's data is removed at the next writable open. */
BV_API void bv_store_close(bv_store *s);
/* The calling thread's message about its last failure ("no error" when
 * there is none), whatever S is (S may be NULL): see the contract at the
 * top. Valid until that thread's next libbvault call. */
BV_API const char *bv_store_error(const bv_store *s);
/* The store's default chunk size for new replicas. */
BV_API uint32_t bv_store_chunk_size(const bv_store *s);

/* Ingest memory. An ingest session holds its pending chunks in batches
 * (engine/ingest.c): raw chunk bytes and the compressed records built
 * from them, up to 8 MiB of raw data a batch and up to 6 batches, so that
 * hashing and LZ4 go on while earlier batches are written and indexed.
 * The store gives every batch's buffers out of one budget
 * (bv_open_opts.ingest_memory) that all its open sessions share, so that
 * the memory of ingest does not grow with the number of sessions: a
 * session takes a batch when it has data to fill and gives it back
 * (unmapped, RSS included) once the batch is written and indexed and
 * the session holds more than its share (the budget divided by the open
 * sessions), or when it ends; with many sessions open, batches are
 * smaller. A session
 * never waits for another one's memory (bvaultd applies every session
 * on one thread: such a wait could never end): when the budget is spent
 * it waits for its own batches to be written, and reuses them; one that
 * holds no batch at all still gets one batch of the smallest size (1 MiB
 * of raw data, its run buffer beside it) past the budget, so that every
 * session can always go on. The budget is thus exceeded by at most one
 * smallest batch per session that holds nothing else (counted in OVER).
 * A single session on the default budget keeps all 6 full batches of
 * 64 KiB chunks (about 20 MiB each with up to 3 workers; each worker
 * more adds 1 MiB to every batch's run buffer, and larger chunks take
 * more): its throughput is as without the budget. Counted are the
 * buffers' mapped bytes (an upper bound of the resident ones); the small
 * per-slot tables are not. */
typedef struct bv_ingest_memory {
	uint64_t limit;     /* the budget */
	uint64_t used;      /* bytes of batches held now */
	uint64_t peak;      /* the most USED was since the open */
	uint64_t over;      /* batches given past the budget, since the open */
	unsigned sessions;  /* ingest sessions open now */
} bv_ingest_memory;
/* Fills OUT with S's ingest memory accounting. Thread-safe; no error. */
BV_API void bv_store_ingest_memory(bv_store *s, bv_ingest_memory *out);

/* ---- replicas and groups -------------------------------------------- */

typedef struct bv_replica_info {
	char name[BV_NAME_MAX + 1];
	char group[BV_NAME_MAX + 1];
	uint64_t size;       /* disk size at the head version */
	uint32_t chunk_size;
	uint64_t head;       /* committed version; 0: nothing yet */
	uint64_t latest_rp;  /* latest RP of its group; 0: none */
	uint8_t head_id[BV_ID_SIZE]; /* identity of the head version; all
				      * zero: unknown, or no version yet */
} bv_replica_info;

/* Creates an empty replica (all zeros) of SIZE bytes (a multiple of 512),
 * in a group of its own with the same name. CHUNK_SIZE 0 takes the
 * store's default. BV_EINVAL (a bad name, size or chunk size), BV_EEXIST
 * (a replica or group of that name exists), BV_EREADONLY. */
BV_API int bv_replica_create(bv_store *s, const char *name, uint64_t size,
			     uint32_t chunk_size);
/* Fills OUT with replica NAME as committed. BV_EINVAL (a bad name),
 * BV_ENOTFOUND. */
BV_API int bv_replica_info_get(bv_store *s, const char *name,
			       bv_replica_info *out);
/* Calls CB for each replica in name order (see "Callbacks" at the top).
 * Returns 0, CB's non-zero return, or BV_ECORRUPT, BV_EDB. */
BV_API int bv_replica_list(bv_store *s,
			   int (*cb)(void *ud, const bv_replica_info *r),
			   void *ud);

/* Makes group GROUP of the N named replicas. Each must exist, must still
 * be alone in its own default group, and must have no RP yet (RPs are
 * numbered per group, so a replica cannot take its history along).
 * BV_EINVAL (a bad name, N 0 or too many, a replica named twice, one
 * with an RP), BV_ENOTFOUND (no such replica), BV_EEXIST (the group name
 * is taken, or a replica is in another group already), BV_EREADONLY. */
BV_API int bv_group_create(bv_store *s, const char *group,
			   const char *const *replicas, size_t n);

/* ---- recovery points ------------------------------------------------ */

typedef struct bv_rp_info {
	char group[BV_NAME_MAX + 1];
	uint64_t number;     /* 1, 2, ... per group */
	int64_t time;        /* seconds since the epoch, as declared */
	int consistency;     /* BV_CRASH_CONSISTENT or BV_APP_CONSISTENT */
	char label[BV_LABEL_MAX + 1];
	uint32_t members;    /* replicas in it */
	/* Filled only when the list was asked for one replica: */
	uint64_t size;       /* that replica's size at this RP */
	uint64_t version;    /* that replica's version at this RP */
	uint8_t id[BV_ID_SIZE]; /* that version's identity; all zero: unknown
				 * (committed before identities were kept) */
} bv_rp_info;

/* Makes an RP of the group of WHAT (a replica or a group name) from the
 * members' committed heads, numbered the group's latest + 1 (into
 * *NUMBER_OUT). O(members), whatever their size. BV_EINVAL (a bad name,
 * label or consistency), BV_ENOTFOUND, BV_EREADONLY. */
BV_API int bv_rp_create(bv_store *s, const char *what, const char *label,
			int consistency, uint64_t *number_out);
/* Calls CB for each RP of WHAT (a replica or group; NULL: every group),
 * in group then number order (see "Callbacks" at the top). Returns 0,
 * CB's non-zero return, or BV_EINVAL, BV_ENOTFOUND, BV_ECORRUPT, BV_EDB. */
BV_API int bv_rp_list(bv_store *s, const char *what,
		      int (*cb)(void *ud, const bv_rp_info *rp), void *ud);

/* ---- ingest ------------------------------------------------------------ */

typedef struct bv_commit_opts {
	int make_rp;        /* also make an RP of the group */
	const char *label;  /* RP label, may be NULL */
	int consistency;    /* for the RP */
	int64_t time;       /* for the RP; 0: now */
	/* The RP's number (with make_rp; else BV_EINVAL); 0: the group's
	 * latest + 1. Must be above every number the group has had (its
	 * latest, removed RPs included), else BV_EINVAL: numbers are never
	 * reused and never go back. For a copy of another store's history
	 * (bvault push), whose numbering has gaps where RPs were removed. */
	uint64_t number;
} bv_commit_opts;

/* Starts an empty ingest session. Nothing is visible to readers until
 * bv_ingest_commit(); abort, failure, or a crash leave every replica and
 * RP as before (INVARIANTS.md 2). BV_EREADONLY, -ENOMEM. */
BV_API int bv_ingest_begin(bv_store *s, bv_ingest **out);

/* Adds replica NAME to the session and returns its slot (>= 0) for the
 * calls below. BASE_RP is the RP the sender's changes start from: it must
 * be the replica's latest RP (0 for a replica with none), else BV_EBASE.
 * The new version gets a fresh random identity at commit.
 * When the replica does not exist and CREATE_SIZE is not 0, it is created
 * at commit with that size; otherwise BV_ENOTFOUND. All replicas of one
 * session must be in one group (BV_EGROUP). BV_EINVAL (a bad name, the
 * replica added twice, too many replicas, a bad CREATE_SIZE), BV_EBUSY
 * (another session of this process holds the replica). */
BV_API int bv_ingest_add(bv_ingest *in, const char *name, uint64_t base_rp,
			 uint64_t create_size);
/* ---- push: a copy of another store's history (bvault push) ---- */
/* bv_ingest_add for changes made by bv_diff_sink in another store:
 * BASE_ID is the identity of the version they start from (all zero:
 * none, a full stream) and RESULT_ID that of the version they make (all
 * zero: a fresh one), both 16 bytes the caller keeps. The base is checked
 * as bv_ingest_stream checks a stream's (engine/STREAM.md, "Version
 * identities"): by identity when both sides have one (BV_EBASE naming
 * both: another history), else BASE_RP against the latest RP. The new
 * version takes RESULT_ID at commit; BV_EEXIST if it names a version of
 * the replica other than its head. Every refusal leaves the session as
 * it was. Otherwise as bv_ingest_add. */
BV_API int bv_ingest_add_ids(bv_ingest *in, const char *name,
			     uint64_t base_rp,
			     const uint8_t base_id[BV_ID_SIZE],
			     const uint8_t result_id[BV_ID_SIZE],
			     uint64_t create_size);
/* ---- end of push ---- */
/* Data extent: LEN bytes of BUF (copied or consumed before the call
 * returns) at OFF; OFF and LEN multiples of 512 (BV_EALIGN), inside the
 * disk (BV_ERANGE), SLOT one of this session (BV_EINVAL). These three
 * refusals leave the session usable. */
BV_API int bv_ingest_write(bv_ingest *in, int slot, uint64_t off,
			   const void *buf, size_t len);
/* Zero extent: reads as zeros afterwards. Errors as bv_ingest_write. */
BV_API int bv_ingest_zero(bv_ingest *in, int slot, uint64_t off,
			  uint64_t len);
/* Size change; shrinking drops the data past the new end. BV_EALIGN,
 * BV_EINVAL. */
BV_API int bv_ingest_resize(bv_ingest *in, int slot, uint64_t new_size);

/* Reads a whole change stream from FD into the session (adding its
 * replica) and returns the slot. FORMAT is BV_FORMAT_BVAULT or
 * BV_FORMAT_RBD_DIFF. For a bvault stream NAME may be NULL (the stream's
 * name is taken) or must match, and BASE_RP is ignored (the stream names
 * its base). The base is checked as engine/STREAM.md says: when the
 * stream names a base identity and the replica's head version has one,
 * they must be equal (the RP numbers then do not matter); a stream that
 * names a base identity is refused by a replica that has no version yet;
 * otherwise the stream's base RP must be the replica's latest RP. Each is
 * BV_EBASE, with a message naming both sides. The version committed takes
 * the stream's result identity when it names one (BV_EEXIST, before any
 * record is applied, if that identity names an older version of the
 * replica than its head), else a fresh one.
 * For rbd-diff, which names no replica, NAME says which; BASE_RP is the
 * base RP, or BV_RP_LATEST to find it: a full diff (no from-snapshot) has
 * base 0, and a diff from snapshot F is based on the replica's one RP
 * labelled F (BV_EBASE naming both when no RP or several carry that
 * label). An RP made by bv_ingest_commit() without a label takes the
 * to-snapshot name of the session's first rbd diff that has one
 * (BV_EINVAL at commit if it is longer than BV_LABEL_MAX).
 * The stream's trailer checksum is checked before the session can commit;
 * any fault makes the session unusable except for abort. Fills
 * *CONSISTENCY and *TIME from the stream when not NULL. BV_ESTREAM
 * (malformed), BV_ETRUNCATED, BV_ECHECKSUM (the trailer's), BV_EFORMAT (a
 * newer stream version), BV_EALIGN, BV_ERANGE, BV_EINVAL (a bad FORMAT,
 * or NAME does not match), BV_EBASE and BV_EEXIST as above, and
 * bv_ingest_add's errors for the replica it names. PROGRESS (may be
 * NULL) gets bytes read and the stream's size when FD has one (else 0). */
BV_API int bv_ingest_stream(bv_ingest *in, int fd, int format,
			    const char *name, uint64_t base_rp,
			    int *consistency, int64_t *time,
			    bv_progress_fn progress, void *ud);

/* Commits every replica of the session atomically as one new version each
 * and, with opts->make_rp, one RP of the group, whose number is stored in
 * *RP_OUT (0 when no RP was made). Each new version gets its identity in
 * the same write: the result identity of its stream, else a fresh random
 * one (-errno if the system's random source fails). Frees IN, whatever
 * the result: on failure nothing of the session is committed. BV_EBASE
 * (another writer made an RP of the group since bv_ingest_add),
 * BV_EINVAL (no replica in the session, a bad label), the session's
 * earlier failure if it had one. */
BV_API int bv_ingest_commit(bv_ingest *in, const bv_commit_opts *opts,
			    uint64_t *rp_out);
/* Drops everything the session did; frees IN. NULL is fine. */
BV_API void bv_ingest_abort(bv_ingest *in);

/* ---- reading ------------------------------------------------------------ */

/* Opens REPLICA at RP (a number, or BV_RP_LATEST for the latest RP; 0 for
 * the committed head, which may be newer than every RP). The reader sees
 * that version only, for as long as it is open, whatever is committed
 * later (INVARIANTS.md 3), even after the RP is removed (bv_rp_remove),
 * until GC deletes chunks that only the removed RP read: reads that need
 * them then fail with BV_ENOTFOUND, saying the RP was removed (never
 * other bytes). It must be closed before its store. BV_EINVAL (a bad
 * name), BV_ENOTFOUND (no such replica or RP). */
BV_API int bv_reader_open(bv_store *s, const char *replica, uint64_t rp,
			  bv_reader **out);
BV_API uint64_t bv_reader_size(const bv_reader *r);
BV_API uint32_t bv_reader_chunk_size(const bv_reader *r);
/* Reads LEN bytes at OFF (OFF+LEN within the size, else BV_ERANGE). Every
 * chunk read is verified (INVARIANTS.md 4): BV_ECHECKSUM or BV_ECORRUPT
 * rather than wrong bytes. */
BV_API int bv_reader_pread(bv_reader *r, void *buf, size_t len, uint64_t off);
/* Tells whether [OFF, OFF+*LEN) starts with data or zeros: returns 1 for
 * data, 0 for zeros, and shortens *LEN to the run of the same kind.
 * BV_ERANGE past the size. */
BV_API int bv_reader_extent(bv_reader *r, uint64_t off, uint64_t *len);
BV_API void bv_reader_close(bv_reader *r);

/* Digests of chunks FIRST .. FIRST+N-1 of the reader's version, from the
 * index alone (no chunk is read or decompressed), for an agent's
 * consistency check: KINDS[i] is BV_DIGEST_ZERO (the chunk reads as
 * zeros), BV_DIGEST_KNOWN (DIGESTS[i] is XXH3-128, seed 0, of the whole
 * chunk, zero-padded past the disk end; low 64 bits then high, each
 * little-endian) or BV_DIGEST_UNKNOWN (stored before digests were kept).
 * BV_ERANGE past the last chunk. */
enum { BV_DIGEST_ZERO = 0, BV_DIGEST_KNOWN = 1, BV_DIGEST_UNKNOWN = 2 };
/* The digest bv_reader_digests gives, of LEN bytes at DATA (a whole
 * chunk, zero-padded past a disk's end), computed the way the store does
 * (XXH3-128, seed 0, with AVX2 or AVX-512 where the CPU has them): for an
 * agent comparing its disk with a replica. */
BV_API void bv_chunk_digest(const void *data, size_t len, uint8_t out[16]);
BV_API int bv_reader_digests(bv_reader *r, uint64_t first, size_t n,
			     uint8_t *kinds, uint8_t (*digests)[16]);

/* Writes REPLICA@RP (RP as in bv_reader_open) to PATH: a regular file
 * (created 0600 or truncated, zeros left as holes; a file it created is
 * removed on failure), a block device (zeros written), or anything else
 * that can be opened for writing, in order (a FIFO, /dev/null); then
 * fdatasyncs it. It is bv_restore_fd without delta, after the RP is
 * found (a missing one creates nothing). PROGRESS (may be NULL) gets bytes written and the size.
 * BV_ENOTFOUND, BV_EINVAL, BV_ERANGE (the device is too small), the
 * reader's errors, -errno of PATH. */
BV_API int bv_export(bv_store *s, const char *replica, uint64_t rp,
		     const char *path, bv_progress_fn progress, void *ud);

/* Writes to FD (not closed) the bvault change stream that turns
 * REPLICA@RP1 into REPLICA@RP2 (RP1 0: from nothing, a full stream; RP2 a
 * recovery point or BV_RP_LATEST, not 0). Only chunks that differ are
 * sent. The stream's base RP is RP1 unless BASE_OVERRIDE is not
 * BV_RP_LATEST. It names as base identity that of the version at RP1
 * (none for RP1 0), whatever BASE_OVERRIDE says: the override renumbers,
 * it never lets the stream apply to another history. It names as result
 * identity that of the version at RP2, unless that version is older than
 * RP1's (a diff backwards makes a new state in the receiver: it gets a
 * fresh identity there). Identities unknown here (versions committed
 * before identities were kept) are named as none. PROGRESS (may be NULL)
 * gets bytes of the disk done and its size. BV_EINVAL, BV_ENOTFOUND, the
 * reader's errors, -errno of FD (a failed write leaves a stream without
 * its trailer, which readers refuse). */
BV_API int bv_diff(bv_store *s, const char *replica, uint64_t rp1,
		   uint64_t rp2, uint64_t base_override, int fd,
		   bv_progress_fn progress, void *ud);
/* ---- push: the diff handed to a caller's functions (bvault push) ---- */
/* Where bv_diff_sink puts what bv_diff would write as a stream. Each
 * function returns 0, or a negative value that stops the diff, returned
 * as is (the caller keeps its own message). */
struct bv_stream_header;
typedef struct bv_diff_sink {
	void *ud;
	/* First, once: the header the stream would carry (its pointers valid
	 * during the call). May be NULL. */
	int (*begin)(void *ud, const struct bv_stream_header *h);
	/* LEN bytes of BUF at OFF (a multiple of 512, at most 64 chunks). */
	int (*data)(void *ud, uint64_t off, const void *buf, size_t len);
	/* [OFF, OFF+LEN) reads as zeros. */
	int (*zero)(void *ud, uint64_t off, uint64_t len);
} bv_diff_sink;
/* bv_diff with the header and the records handed to SINK instead of
 * written as a stream: the same extents in the same order, the same
 * identities (BASE_OVERRIDE is BV_RP_LATEST here). Reads only: a
 * read-only S works beside a running writer. Errors as bv_diff, and a
 * SINK function's negative return. */
BV_API int bv_diff_sink_run(bv_store *s, const char *replica, uint64_t rp1,
			    uint64_t rp2, const bv_diff_sink *sink,
			    bv_progress_fn progress, void *ud);
/* ---- end of push ---- */

/* ---- restore: an RP written to a file, a device or a caller's target -- */

/* A restore writes REPLICA@RP (RP as in bv_reader_open) to a destination
 * and makes it durable. It reads the store only (a read-only S works
 * beside a running writer). The chunks are read in disk order, records
 * near each other in a container as one read, decoded by threads of the
 * restore's own (twice the store's workers, and one) and written
 * by one more while the next piece is read; memory stays bounded (about
 * 64 MiB per restore with 64 KiB chunks, 100 MiB with 4 MiB ones)
 * whatever the size. Any number of restores may run
 * at once on one S, on different threads.
 *
 * With delta, the destination is read first, piece by piece, and each
 * chunk's digest (bv_chunk_digest) compared with the one the RP's map
 * keeps: only chunks that differ are read from the store and written.
 * Unchanged chunks are never read from the store nor decompressed; a
 * zero chunk of the RP is compared with zeros; a chunk whose map entry
 * keeps no digest (stores of format 1) is read and compared byte for
 * byte. */

/* Where a restore writes when it is not a file descriptor (an NBD export,
 * say). Callbacks return 0 or -errno (the restore stops and returns it,
 * its message naming NAME, the operation and the offset). WRITE, ZERO and
 * FLUSH run on the restore's writer thread, one at a time, in ascending
 * offset order; READ runs on the restore's reading threads, several at
 * once, and at the same time as WRITEs, always of other bytes: the target
 * must allow that (a libnbd handle does). No call is longer than 16 MiB.
 * None may call into the restore's store. */
typedef struct bv_restore_target {
	const char *name; /* names the target in messages (copied) */
	uint64_t size;    /* bytes it holds: at least the RP's size, else
			   * BV_ERANGE (only the RP's size is written) */
	void *ud;
	/* Writes LEN bytes of BUF at OFF. Required. */
	int (*write)(void *ud, const void *buf, size_t len, uint64_t off);
	/* Reads LEN bytes at OFF into BUF; needed for delta (else
	 * BV_EINVAL), never called without. */
	int (*read)(void *ud, void *buf, size_t len, uint64_t off);
	/* Makes [OFF, OFF+LEN) read as zeros; NULL: zeros are written. */
	int (*zero)(void *ud, uint64_t off, uint64_t len);
	/* Makes everything written durable, once at the end; may be NULL. */
	int (*flush)(void *ud);
} bv_restore_target;

/* Options (grow at the end, each meaning "as before" when 0). */
typedef struct bv_restore_opts {
	int delta;          /* write only the chunks that differ (above) */
	uint64_t bandwidth; /* bytes written per second at most; 0: no limit */
	const char *name;   /* bv_restore_fd: names FD in messages; NULL:
			     * "fd N" */
	bv_progress_fn progress; /* disk bytes done and the RP's size, on the
				  * calling thread; may be NULL */
	void *ud;
} bv_restore_opts;

/* What a restore did (filled on success). */
typedef struct bv_restore_result {
	uint64_t size;           /* the RP's size */
	uint64_t chunks;         /* its chunks */
	uint64_t zero_chunks;    /* of them, chunks that read as zeros */
	uint64_t written_chunks; /* chunks written (data, or zeros written or
				  * punched); zero chunks left as holes of a
				  * new file are not */
	uint64_t written_bytes;  /* their bytes */
	uint64_t skipped_chunks; /* delta: chunks the destination held */
} bv_restore_result;

/* Restores REPLICA@RP to FD (not closed, its offset not used), by what
 * FD is:
 *   - a regular file (not open for appending: BV_EINVAL): without
 *     delta, truncated and sized to the RP's size, zero chunks left as
 *     holes; with delta, first sized to the RP's size when it is not (a
 *     longer file is cut, a shorter one grows with zeros), then
 *     compared; a zero chunk that differs is punched (written as
 *     zeros where the file system cannot);
 *   - a block device: never truncated; smaller than the RP, BV_ERANGE
 *     (nothing written); every zero chunk made to read as zeros (delta:
 *     one that differs), by the device's zeroing (fallocate
 *     FALLOC_FL_ZERO_RANGE) or else by writing zeros;
 *   - anything else (a pipe, a character device, a socket): written in
 *     order from start to end, zeros included; delta is refused
 *     (BV_EINVAL: it cannot be read back).
 * Files and devices are written with O_DIRECT where the file system
 * takes it (a second descriptor of the same file; BV_NO_DIRECT=1 in the
 * environment: through the page cache), delta reads FD the same way (FD
 * must then be open for reading and writing), and they are fdatasync'ed
 * at the end. OPTS may be NULL; OUT (may be NULL) is filled on success.
 * Arguments, the RP and the destination's size are checked before
 * anything is written: BV_EINVAL, BV_ENOTFOUND, BV_ERANGE then leave FD
 * as it was. A failure later (the reader's errors: BV_ECHECKSUM,
 * BV_ECORRUPT; -errno of FD) leaves it partly written. */
BV_API int bv_restore_fd(bv_store *s, const char *replica, uint64_t rp,
			 int fd, const bv_restore_opts *opts,
			 bv_restore_result *out);
/* bv_restore_fd to target T (the caller's, used during the call only):
 * as for a block device (nothing truncated; zeros through T->zero when
 * not NULL), then T->flush. BV_EINVAL (no T or T->write, delta without
 * T->read), BV_ERANGE (T->size below the RP's size), and the errors of
 * bv_restore_fd. */
BV_API int bv_restore_to(bv_store *s, const char *replica, uint64_t rp,
			 const bv_restore_target *t,
			 const bv_restore_opts *opts, bv_restore_result *out);

/* ---- views: writable copy-on-write clones of an RP -------------------- */

/* A view reads as REPLICA@RP until written. Its writes go to an overlay
 * of its own (STORE/views/NAME/: a sparse data file and a persistent map
 * of written blocks, storage/FORMAT.md "Views"), never into the store:
 * views are made, written and removed beside the store's writer (a
 * running bvaultd) through a read-only bv_store, and they never change
 * the RP they came from. A view pins its RP: prune and garbage collection
 * keep every RP a view names (they list the views under the lock that
 * bv_view_create and bv_view_remove take, STORE/views/lock).
 * Zeros and trims are written into the overlay as zero blocks (never
 * "fall through" to the RP); after a shrink the RP is read as ending at
 * the smallest size the view ever had, so a later grow reads zeros. */

typedef struct bv_view bv_view;

#define BV_VIEW_BLOCK 4096u /* the overlay's block: writes smaller than it,
			     * or not aligned to it, read the rest of the
			     * block first */

typedef struct bv_view_info {
	char name[BV_NAME_MAX + 1];
	char replica[BV_NAME_MAX + 1];
	uint64_t rp;            /* the RP it was made from */
	uint64_t version;       /* the replica's version at that RP */
	uint8_t id[BV_ID_SIZE]; /* that version's identity (all zero:
				 * unknown) */
	int64_t created;        /* seconds since the epoch */
	uint64_t size;          /* its size, as last flushed */
	uint64_t written_bytes; /* overlay blocks as last flushed, in bytes
				 * (written, zeroed or trimmed) */
	int in_use;             /* 1: a process has it open now */
} bv_view_info;

/* Makes view NAME (BV_NAME_MAX, [A-Za-z0-9._-]) of REPLICA@RP (RP a
 * number or BV_RP_LATEST; not 0: a view is of a recovery point). S may
 * be read-only: only STORE/views/ is written, made private to its owner.
 * BV_EINVAL (a bad name), BV_ENOTFOUND (no such replica or RP in S),
 * BV_EEXIST (a view of that name exists), -errno. */
BV_API int bv_view_create(bv_store *s, const char *name, const char *replica,
			  uint64_t rp);
/* Calls CB for each view in name order (see "Callbacks" at the top).
 * Returns 0, CB's non-zero return, BV_ECORRUPT (a damaged view record:
 * the message names it), -errno. */
BV_API int bv_view_list(bv_store *s,
			int (*cb)(void *ud, const bv_view_info *v), void *ud);
/* Fills OUT. BV_EINVAL, BV_ENOTFOUND. */
BV_API int bv_view_info_get(bv_store *s, const char *name, bv_view_info *out);
/* Removes view NAME and its overlay; its RP is no longer pinned by it.
 * BV_ENOTFOUND, BV_EBUSY (a process has it open), -errno. */
BV_API int bv_view_remove(bv_store *s, const char *name);

/* Opens view NAME for reading and writing; one handle at a time (the
 * view's own lock, STORE/views/NAME/lock: BV_EBUSY for a second open, in
 * another process or in this one). S (read-only or not) must hold
 * the view's RP (a read-only S opened before the view's RP was committed
 * does not: BV_ENOTFOUND), and must stay open until bv_view_close.
 * Unlike a bv_reader, a bv_view may be used by several threads at once:
 * every call below but bv_view_close may run concurrently (writes to the
 * same bytes at once land in an unspecified order, as on a disk).
 * A read issued after a write returned sees it. Memory: one bit per
 * BV_VIEW_BLOCK of the view (32 MiB per TiB), twice that during a flush,
 * and up to 4 bv_readers of S, opened as reads of the RP need them.
 * BV_EINVAL, BV_ENOTFOUND, BV_EBUSY, BV_ECORRUPT (a damaged overlay map:
 * the message names the file; or the RP no longer names the version
 * the view was made of), -errno. */
BV_API int bv_view_open(bv_store *s, const char *name, bv_view **out);
BV_API uint64_t bv_view_size(const bv_view *v);
/* Reads LEN bytes at OFF: written blocks from the overlay, the rest from
 * the RP. BV_ERANGE past the size; the RP reader's errors. */
BV_API int bv_view_pread(bv_view *v, void *buf, size_t len, uint64_t off);
/* Writes LEN bytes at OFF into the overlay (OFF and LEN multiples of 512,
 * else BV_EALIGN; within the size, else BV_ERANGE). Durable at the next
 * bv_view_flush; until then a crash leaves, for each block, its old or
 * its new content. -errno (-ENOSPC) of the overlay. */
BV_API int bv_view_pwrite(bv_view *v, const void *buf, size_t len,
			  uint64_t off);
/* Makes [OFF, OFF+LEN) read as zeros (as bv_view_pwrite; the overlay
 * keeps whole zero blocks as holes of its data file). A trim is the
 * same. */
BV_API int bv_view_zero(bv_view *v, uint64_t off, uint64_t len);
/* Makes every write, zero and resize done before it durable (the
 * overlay's data, then its map). */
BV_API int bv_view_flush(bv_view *v);
/* Changes the size (a multiple of 512). Bytes past the smallest size the
 * view has had read as zeros after a grow. */
BV_API int bv_view_resize(bv_view *v, uint64_t new_size);
/* As bv_reader_extent: 1 for data, 0 for zeros (zero blocks of the
 * overlay, and zero chunks of the RP not written over), shortening *LEN
 * to the run of the same kind. BV_ERANGE past the size. */
BV_API int bv_view_extent(bv_view *v, uint64_t off, uint64_t *len);
/* Closes V, flushing it first (its result is returned; V is freed
 * whatever it is). NULL is fine. */
BV_API int bv_view_close(bv_view *v);

/* Makes the content of view NAME (as last flushed) a version of a
 * replica; needs a writable S (BV_EREADONLY) and the view not open
 * elsewhere (BV_EBUSY). AS non-NULL: a new replica AS (in a group of its
 * own) whose first version is the view's content, sharing with the RP
 * every chunk the view did not write (no chunk copied), followed by RP 1
 * of it (*RP_OUT). AS NULL: the view's content becomes the next version
 * of the replica it came from, after an RP of that replica's group is
 * made of its head when the head is newer than the latest RP (the old
 * head stays recoverable), and an RP is made of it (*RP_OUT). The view
 * is kept (remove it with bv_view_remove). Atomic as an ingest commit;
 * with AS NULL, a failure after the RP of the old head was made leaves
 * that RP (of the head as it was), nothing else. LABEL (may be NULL)
 * labels the RP of the view's content. BV_EEXIST (AS names a replica
 * or group), BV_EINVAL, BV_ENOTFOUND, BV_EBUSY (the view is open, here
 * or in another process; or an ingest session holds the replica). */
BV_API int bv_view_promote(bv_store *s, const char *name, const char *as,
			   const char *label, uint64_t *rp_out);

/* ---- statistics ------------------------------------------------------ */

typedef struct bv_stats {
	uint64_t replicas, groups, rps;
	uint64_t logical_bytes;   /* sum of replica sizes at their heads */
	uint64_t ingested_bytes;  /* non-zero chunk bytes ever committed */
	uint64_t chunks;          /* unique chunks stored */
	uint64_t raw_bytes;       /* their raw size */
	uint64_t stored_bytes;    /* their size in containers */
	uint64_t containers;
	uint64_t container_bytes; /* container files on disk */
	uint64_t index_bytes;     /* the index on disk */
	uint64_t map_entries;     /* versioned map entries written */
	/* Container bytes that no commit names, found by writable opens
	 * and kept (never cut on the index's word): left by a crash between
	 * a flush and its commit, or by an index older than the containers.
	 * A later reclaim (GC) may give them back. */
	uint64_t unknown_bytes;
	uint64_t unknown_ranges;
	/* 1: the index lost commits its seal records (a read-only open of
	 * such a store; a writable one is refused with BV_ELOST). */
	int index_lost;
	/* From the walk of bv_stats_get (0 from bv_stats_counters): */
	int scanned;                  /* 1: the fields below are filled */
	uint64_t protected_bytes;     /* what the RPs protect: the non-zero
				       * chunk bytes of every RP of every
				       * replica (a chunk that ten RPs read
				       * counts ten times) */
	uint64_t live_chunks;         /* chunks a committed version names */
	uint64_t live_raw_bytes;      /* their raw size */
	uint64_t live_bytes;          /* their records' bytes in containers */
	uint64_t unreferenced_chunks; /* chunks the index holds that no
				       * committed version names (left by
				       * aborted or crashed sessions) */
	uint64_t unreferenced_bytes;  /* their records' bytes */
	/* Chunks marked bad by verify and not healed yet (also from
	 * bv_stats_counters): INVARIANTS.md 13. */
	uint64_t bad_chunks;
	/* The store's dedup scope, BV_DEDUP_* (also from bv_stats_counters);
	 * stores made before it was recorded read as BV_DEDUP_STORE. */
	int dedup_scope;
} bv_stats;

/* Fills OUT: the index's counters and the files on disk
 * (bv_stats_counters), then walks the map and the chunk index for what
 * the RPs protect and which chunks are live (engine/stats.c): time in
 * proportion to the index, memory bounded (a Bloom filter of up to 768
 * MiB; past 2^28 chunks the unreferenced figure is a lower bound). The
 * walk sees the index as it is while it runs. BV_EDB, -ENOMEM. */
BV_API int bv_stats_get(bv_store *s, bv_stats *out);

/* What one group or replica takes (bv_stats_usage). */
typedef struct bv_usage {
	char name[BV_NAME_MAX + 1];
	char group[BV_NAME_MAX + 1]; /* a replica's group; "" for a group */
	int is_group;
	uint64_t logical_bytes; /* size at the head; a group: its members' */
	uint64_t rps;           /* RPs of the group (a replica: its group's) */
	uint64_t unique_chunks; /* chunks its committed versions name and no
				 * other replica (a group: none outside it)
				 * names */
	uint64_t unique_bytes;  /* their records' bytes in containers: what
				 * removing it, then collecting, gives back */
} bv_usage;

/* Fills *OUT (N entries; free with bv_usage_free) with each group, then
 * its replicas, in name order; GROUP (NULL: every group) keeps only that
 * group and its members (uniqueness is still against the whole store).
 * Walks the map and the chunk index once per pass, in passes over a
 * partition of the fingerprints so that memory stays within 256 MiB
 * (one pass up to about 4 million chunks). BV_ENOTFOUND (no such group),
 * BV_EDB, -ENOMEM. */
BV_API int bv_stats_usage(bv_store *s, const char *group, bv_usage **out,
			  size_t *n);
BV_API void bv_usage_free(bv_usage *u);
/* The counters alone, at once, whatever the store's size (OUT->scanned
 * is 0 and the walk's fields are 0). BV_EDB. */
BV_API int bv_stats_counters(bv_store *s, bv_stats *out);

/* What bv_store_verify() read. */
typedef struct bv_verify_result {
	uint64_t containers;  /* container files scanned */
	uint64_t records;     /* intact records found in them */
	uint64_t chunks;      /* chunk index entries read back and checked */
	uint64_t map_entries; /* map entries checked */
	uint64_t problems;    /* damage found (0: the store is intact) */
	uint64_t damaged_bytes;  /* container bytes found damaged */
	uint64_t needed_ranges;  /* REPLICA@RP ranges that read damage */
	uint64_t unknown_bytes;  /* container bytes no commit names */
	/* Chunks marked bad (bv_store_verify_opts, INVARIANTS.md 13): */
	uint64_t bad_chunks;     /* chunks found bad (marked or to mark) */
	uint64_t marked;         /* marked by this run */
	uint64_t unmarked;       /* found bad, not marked by this run */
	char not_marked[256];    /* why not, when UNMARKED > 0 ("" else) */
} bv_verify_result;

/* One finding of bv_store_verify_report(). */
enum {
	BV_VERIFY_DAMAGED = 1, /* damaged bytes of a container, or a chunk
				* that cannot be read back */
	BV_VERIFY_NEEDED = 2,  /* a byte range of REPLICA@RP reads damaged
				* or missing data */
	BV_VERIFY_UNKNOWN = 3, /* container bytes no commit names (kept;
				* not damage) */
	BV_VERIFY_INDEX = 4,   /* the index itself: damaged entries, or
				* commits it lost */
};
typedef struct bv_verify_report {
	int kind;
	const char *message;     /* names the object and what is wrong */
	uint32_t container;      /* DAMAGED, UNKNOWN: container id, or 0 */
	uint64_t offset, length; /* DAMAGED, UNKNOWN: its bytes concerned */
	const char *replica;     /* NEEDED: the replica */
	uint64_t rp;             /* NEEDED: the RP; 0: the committed head,
				  * newer than every RP */
	uint64_t off, len;       /* NEEDED: the range of REPLICA@RP */
} bv_verify_report;
/* Called for each finding, in the order found; the pointers are valid
 * during the call only. It must not call into the store. */
typedef void (*bv_verify_fn)(void *ud, const bv_verify_report *r);

/* Reads everything the store keeps: every container record by record,
 * every indexed chunk (decoded, its fingerprint recomputed), and every
 * map entry against the chunk index. Changes nothing (marks nothing:
 * bv_store_verify_opts does); goes on past damage. 0 when intact; BV_ECORRUPT when damage was found (OUT counts
 * it, bv_store_error names the first); another error when it could not
 * read on. Ingest sessions of this process wait while containers are
 * scanned. On a read-only store it checks what the store held at the
 * open. */
BV_API int bv_store_verify(bv_store *s, bv_verify_result *out);
/* bv_store_verify, telling FN (may be NULL) of every finding: each
 * damaged run of container bytes and each chunk that does not read back
 * (the scan goes on past damage to the next intact record), then, for
 * each damaged or missing chunk, every REPLICA@RP byte range that reads
 * it (adjacent chunks merged), and the container bytes no commit names.
 * Memory stays bounded: up to 2^20 damaged chunks are traced to the RPs
 * that need them (more are counted, and said so). */
BV_API int bv_store_verify_report(bv_store *s, bv_verify_fn fn, void *ud,
				  bv_verify_result *out);

/* ---- agent identities (for the network server, tools/PROTOCOL.md) ---- */

#define BV_AGENT_SECRET 32
#define BV_AGENT_PUBLIC_KEY 32   /* an Ed25519 public key */
#define BV_AGENT_GROUPS_MAX 64

/* How an agent proves who it is (tools/PROTOCOL.md, "Authentication"). */
enum {
	BV_AGENT_KIND_SECRET = 1, /* HMAC with a secret the store keeps too */
	BV_AGENT_KIND_KEY = 2,    /* Ed25519 signature; the store keeps only
				   * the public key */
};

typedef struct bv_agent_info {
	char name[BV_NAME_MAX + 1];
	int64_t created;    /* seconds since the epoch */
	uint32_t ngroups;   /* groups it may read and write */
	char groups[BV_AGENT_GROUPS_MAX][BV_NAME_MAX + 1];
	int kind;           /* BV_AGENT_KIND_* */
	/* BV_AGENT_KIND_KEY: its public key (not a secret); else zeros */
	uint8_t public_key[BV_AGENT_PUBLIC_KEY];
} bv_agent_info;

/* Creates agent NAME with access to the N GROUPS (which need not exist
 * yet: a new replica is in a group of its own name) and a new random
 * secret, copied to SECRET_OUT: the only time it leaves the store.
 * BV_EEXIST if the name is taken, BV_EINVAL (a bad name, N 0 or above
 * BV_AGENT_GROUPS_MAX), BV_EREADONLY. */
BV_API int bv_agent_add(bv_store *s, const char *name,
			const char *const *groups, size_t n,
			uint8_t secret_out[BV_AGENT_SECRET]);
/* Creates agent NAME of kind BV_AGENT_KIND_KEY: like bv_agent_add, but
 * the store keeps only PUBLIC_KEY (Ed25519, as crypto_sign_keypair makes
 * it; not checked here) and no secret. */
BV_API int bv_agent_add_key(bv_store *s, const char *name,
			    const char *const *groups, size_t n,
			    const uint8_t public_key[BV_AGENT_PUBLIC_KEY]);
/* Fills OUT; also the secret when SECRET_OUT is not NULL (all zeros for
 * an agent of kind BV_AGENT_KIND_KEY, which has none). BV_EINVAL,
 * BV_ENOTFOUND. */
BV_API int bv_agent_get(bv_store *s, const char *name, bv_agent_info *out,
			uint8_t *secret_out);
/* Calls CB for each agent in name order (secrets are not given out; see
 * "Callbacks" at the top). Returns 0, CB's non-zero return, or
 * BV_ECORRUPT, BV_EDB. */
BV_API int bv_agent_list(bv_store *s,
			 int (*cb)(void *ud, const bv_agent_info *a),
			 void *ud);
/* BV_EINVAL, BV_ENOTFOUND, BV_EREADONLY. */
BV_API int bv_agent_remove(bv_store *s, const char *name);
/* Gives agent NAME the N GROUPS besides those it has (one it has already
 * is no change), keeping its secret or key: one synced write, seen by the
 * next bv_agent_get. BV_EINVAL (a bad name, a group named twice, more
 * than BV_AGENT_GROUPS_MAX in all), BV_ENOTFOUND, BV_EREADONLY. */
BV_API int bv_agent_grant(bv_store *s, const char *name,
			  const char *const *groups, size_t n);
/* Takes the N GROUPS away from agent NAME. BV_ENOTFOUND also if it does
 * not have one of them (nothing is changed then); BV_EINVAL if none would
 * be left (remove the agent instead), BV_EREADONLY. */
BV_API int bv_agent_revoke(bv_store *s, const char *name,
			   const char *const *groups, size_t n);
/* 1 if agent A may read and write GROUP, else 0. Touches no store. */
BV_API int bv_agent_may(const bv_agent_info *a, const char *group);

/* ---- change stream writer (the format is engine/STREAM.md) ----------- */

typedef struct bv_stream_header {
	const char *replica;
	uint64_t disk_size;
	uint64_t base_rp;
	int consistency;
	int64_t time;
	/* Identity of the base version and of the version the stream makes
	 * (all zero: none). With both none the writer writes a version 1
	 * stream, which older readers read too; else version 2. */
	uint8_t base_id[BV_ID_SIZE];
	uint8_t result_id[BV_ID_SIZE];
} bv_stream_header;

/* Writes a stream to FD (not closed). Offsets and lengths are checked as
 * the reader would check them, so a writer never makes a bad stream: a
 * refused call (BV_EALIGN, BV_ERANGE, BV_EINVAL) writes nothing and the
 * writer stays usable; a failed write() is sticky (-errno from then on,
 * and no trailer, so readers see the stream as truncated). *OUT is NULL
 * when open fails: BV_EINVAL (no header, a bad replica name or
 * consistency, a bad FD), BV_EALIGN (the disk size), -ENOMEM; open
 * leaves no message. The writer's own failures
 * keep their message in the writer (bv_stream_writer_error). */
BV_API int bv_stream_writer_open(int fd, const bv_stream_header *h,
				 bv_stream_writer **out);
BV_API int bv_stream_write_data(bv_stream_writer *w, uint64_t off,
				const void *buf, size_t len);
BV_API int bv_stream_write_zero(bv_stream_writer *w, uint64_t off,
				uint64_t len);
BV_API int bv_stream_write_resize(bv_stream_writer *w, uint64_t new_size);
/* Writes the trailer and frees W. */
BV_API int bv_stream_writer_finish(bv_stream_writer *w);
/* Frees W without a trailer: the stream it leaves is refused by readers. */
BV_API void bv_stream_writer_abort(bv_stream_writer *w);
/* Message for the last failure of W. */
BV_API const char *bv_stream_writer_error(const bv_stream_writer *w);

/* ---- the index: backup and restore ---------------------------------------
 *
 * A backup of the index (storage/FORMAT.md, "Index backups") is a
 * directory holding index/, a consistent copy of the whole index at one
 * moment (a RocksDB checkpoint), and backup.info, which names the store
 * and what the copy holds. Containers are not in it: with the store's
 * containers, it is the store as of the backup.
 */
typedef struct bv_index_backup_info {
	uint8_t store_id[16];
	int64_t time;      /* when it was taken, seconds since the epoch */
	uint64_t sequence; /* the index's newest write in the copy */
	uint64_t replicas, rps;
} bv_index_backup_info;

/* Backs the index of S (the store's writer: BV_EREADONLY otherwise) up
 * into DIR, a new directory (its parent must exist; BV_EEXIST if DIR
 * does): consistent while sessions run on other threads. Every file is
 * fsynced before it returns. A failure removes what it made. */
BV_API int bv_index_backup(bv_store *s, const char *dir,
			   bv_index_backup_info *info);
/* Checks the backup in DIR (backup.info intact and describing the copy
 * in DIR/index) and describes it. */
BV_API int bv_index_backup_read(const char *dir, bv_index_backup_info *info);
/* Puts the backup in DIR in place as the index of the store in STORE,
 * which must not be open for writing (BV_EBUSY). The index it replaces
 * is kept as STORE/index.old.N (its path into OLD, "" when there was
 * none); the restored one must open as the store's writer (its
 * containers this store's, the container tail it names intact), else
 * the old one is put back and nothing changed. Commits made after the
 * backup are not in the restored index: their container bytes are kept
 * and counted as unknown, and the seal accepts the backup's state. The
 * message goes to ERRBUF. */
BV_API int bv_index_restore(const char *store, const char *dir,
			    bv_index_backup_info *info, char *old,
			    size_t oldlen, char *errbuf, size_t errlen);
/* Rebuilds the index of the store in STORE, which must not be open for
 * writing (BV_EBUSY), from its journal alone (storage/FORMAT.md, "The
 * index journal": every index write since the journal's last snapshot),
 * whatever state index/ is in (missing, damaged): into a new database,
 * which then takes the place of index/ (kept as STORE/index.old.N, its
 * path into OLD). The rebuilt index must open with the containers, else
 * the old one is put back. INFO describes the result (its sequence: the
 * journal entries replayed). BV_ENOTFOUND: no journal, or no complete
 * snapshot in it; BV_ECORRUPT: a damaged journal entry lost later ones
 * (the message names the file). */
BV_API int bv_index_rebuild(const char *store, bv_index_backup_info *info,
			    char *old, size_t oldlen, char *errbuf,
			    size_t errlen);
/* ---- lifecycle: removing RPs and replicas, retention ------------------- */

/* Removing an RP frees the map entries that no remaining RP, head, view
 * or session can read (invariant 11; storage/FORMAT.md, "Removing
 * versions"): in time proportional to what changed around it, never to
 * the replica's size. Chunks and containers are never removed here (GC
 * reclaims the chunks no map entry names). A removal is crash-safe: its
 * intent is synced first, and a writable open finishes it.
 *
 * Threads: every call here may run on any thread of the writing process
 * beside ingest sessions; removals take turns. A bv_reader open on an RP
 * being removed keeps reading that RP as it was (its map iterator is a
 * snapshot made at open, and chunks are not removed); read-only handles
 * of other processes see the store as at their open. */

#define BV_LOCK_FOREVER INT64_MAX

/* Removes recovery point RP (a number or BV_RP_LATEST) of the group of
 * WHAT (a replica or group name). The group's latest RP is refused
 * unless FORCE (agents diff from it); numbers are never reused, and
 * "latest" then means the newest left. BV_EBUSY: a view is made from
 * it, or it is protected (FORCE does not help until the lock expires).
 * BV_EINVAL, BV_ENOTFOUND, BV_EREADONLY. */
BV_API int bv_rp_remove(bv_store *s, const char *what, uint64_t rp,
			int force);
/* Protects RP of the group of WHAT until UNTIL (seconds since the epoch;
 * BV_LOCK_FOREVER: never expires): no removal takes it, forced or not.
 * A lock only ever extends: BV_EINVAL for an UNTIL in the past or before
 * the lock it has. BV_ENOTFOUND, BV_EREADONLY. */
BV_API int bv_rp_protect(bv_store *s, const char *what, uint64_t rp,
			 int64_t until);
/* *UNTIL: the RP's lock (0: none or expired). */
BV_API int bv_rp_protected(bv_store *s, const char *what, uint64_t rp,
			   int64_t *until);

/* Removes replica NAME: its map, its records, its place in its group
 * and in the group's RPs (an RP left with no member goes; a group left
 * with no member goes). BV_EBUSY: a session writes it, a view is made
 * from it, or an RP naming it is protected. BV_EINVAL, BV_ENOTFOUND,
 * BV_EREADONLY. */
BV_API int bv_replica_remove(bv_store *s, const char *name);

/* Adds the N named replicas to existing group GROUP. Each must be alone
 * in its own group, with no RP, and no session writing it; it takes part
 * from the group's next RP on (older RPs do not name it, and reading it
 * at one is BV_ENOTFOUND). BV_EINVAL, BV_ENOTFOUND, BV_EEXIST (already in
 * a group), BV_EBUSY, BV_EREADONLY. */
BV_API int bv_group_add(bv_store *s, const char *group,
			const char *const *replicas, size_t n);

/* A retention policy (storage/FORMAT.md "pol/"; README "Retention"):
 * Proxmox Backup Server's rules, on RP times in UTC, newest first:
 * keep_last keeps the newest N; then hourly, daily, weekly (ISO week),
 * monthly and yearly each keep the newest RP of up to N periods not
 * already covered by an RP kept before. max_age_days (0: none) removes
 * RPs older than that many days even if a rule kept them; alone it keeps
 * those younger. Whatever the policy, the latest RP, protected RPs and
 * RPs a view is made from are kept. All zero: no policy. */
typedef struct bv_policy {
	uint32_t keep_last, keep_hourly, keep_daily, keep_weekly;
	uint32_t keep_monthly, keep_yearly, max_age_days;
} bv_policy;

/* Sets the policy of the group of WHAT; an empty one is BV_EINVAL. */
BV_API int bv_policy_set(bv_store *s, const char *what, const bv_policy *p);
/* Fills P (all zero: none set). BV_ENOTFOUND. */
BV_API int bv_policy_get(bv_store *s, const char *what, bv_policy *p);

typedef struct bv_prune_item {
	const char *group;
	uint64_t number;
	int64_t time;
	const char *label;
	int keep;            /* 1 kept, 0 removed (or would be) */
	char reason[96];     /* "daily 2026-11-30", "protected until ...",
			      * "latest", "view NAME", "not kept by policy" */
} bv_prune_item;

/* Applies the policy of the group of WHAT (NULL: every group with one):
 * calls CB for each RP, newest first, with what the policy makes of it,
 * then removes those not kept (DRY_RUN: changes nothing). A group named
 * without a policy is BV_EINVAL. CB's non-zero return stops it. */
BV_API int bv_prune(bv_store *s, const char *what, int dry_run,
		    int (*cb)(void *ud, const bv_prune_item *it), void *ud);

typedef struct bv_group_info {
	char name[BV_NAME_MAX + 1];
	uint32_t nmembers;
	const char *const *members; /* names; valid during the callback */
	uint64_t rps;               /* RPs it has */
	uint64_t latest_rp;         /* newest RP left; 0: none */
	bv_policy policy;           /* all zero: none */
} bv_group_info;

/* Calls CB for each group in name order. */
BV_API int bv_group_list(bv_store *s,
			 int (*cb)(void *ud, const bv_group_info *g),
			 void *ud);
/* ---- gc: garbage collection and container compaction ----------------- */

/* Finds the chunks that no committed version, view, RP, or session in
 * flight can reach (what aborted sessions and crashes left: chunk index
 * entries no map entry names, records no chunk index entry names, the
 * unknown bytes an open recorded) and gives their space back: their
 * chunk index entries are deleted, and every container whose live share
 * is below the threshold is rewritten (its live records copied to new
 * containers, newest RPs' reading order first) and removed once no
 * reader can still read it (INVARIANTS.md 5 and 12; storage/FORMAT.md,
 * "Garbage collection").
 *
 * Threads: callable from any thread of the writing process while ingest
 * sessions, readers, restores and views run on other threads; one GC
 * runs at a time per store (a second caller waits). Sessions keep going
 * meanwhile: a lookup of a chunk being deleted waits for the delete's
 * synced batch (milliseconds) and then stores the chunk anew.
 * Memory: a Bloom filter of 12.5 bits per map entry (10, and a quarter
 * more for entries RocksDB's estimate misses: 1.56 GB per billion map
 * entries; at least 64 KiB), a few bytes per container, and about 40 MiB
 * of copy buffers. */
typedef struct bv_gc_opts {
	int dry_run;        /* change nothing: report what a run would do */
	unsigned threshold; /* rewrite containers whose live share is below
			     * this percentage, 1..100; 0: 50 */
} bv_gc_opts;

typedef struct bv_gc_report {
	uint64_t map_entries;        /* marked */
	uint64_t chunks;             /* chunk index entries swept */
	uint64_t dead_chunks;        /* of them, deleted (would be) */
	uint64_t dead_bytes;         /* their records' bytes */
	uint64_t containers;         /* candidates (every sealed one) */
	uint64_t containers_rewritten; /* victims: live records copied */
	uint64_t containers_retired; /* emptied now, removed when no
				      * reader can read them */
	uint64_t containers_removed; /* removed (this run's or earlier
				      * runs' retired ones) */
	uint64_t containers_waiting; /* retired, kept: a reader may read */
	uint64_t containers_damaged; /* kept: a live chunk failed its
				      * checks and could not be copied */
	uint64_t damaged_chunks;
	uint64_t chunks_copied;
	uint64_t bytes_read;         /* container bytes read */
	uint64_t bytes_written;      /* container bytes written */
	uint64_t bytes_removed;      /* container bytes removed */
	uint64_t bytes_reclaimed;    /* removed less written (>= 0) */
	uint64_t bloom_bytes;        /* the mark's filter */
	double mark_seconds, sweep_seconds, compact_seconds;
} bv_gc_report;

/* Runs one GC (OPTS may be NULL: defaults) and fills *REPORT (may be
 * NULL). BV_EREADONLY for a read-only handle, BV_EINVAL for a threshold
 * above 100. A failure (an I/O error, a full disk) leaves the store
 * consistent: every committed RP reads as before, and the next run
 * finishes what this one began; a crash at any point likewise. */
BV_API int bv_gc(bv_store *s, const bv_gc_opts *opts, bv_gc_report *report);

/* ---- verify with marks, and check (INVARIANTS.md 13) ---------------- */

/* What bv_store_verify_opts covers: with NSCOPE 0, the whole store; else
 * only what the RPs named read (the chunks their map entries name). */
typedef struct bv_verify_scope {
	const char *name; /* a replica, or (RP 0) a replica or a group */
	uint64_t rp;      /* an RP of replica NAME; 0: every RP of group
			   * NAME (or of replica NAME's group) */
} bv_verify_scope;

typedef struct bv_verify_opts {
	unsigned jobs;    /* reader threads; 0: two per core (one's read
			   * overlaps another's checks) */
	int read_only;    /* report only: mark nothing */
	const bv_verify_scope *scope;
	size_t nscope;
	/* Called now and then with the bytes read so far and the bytes to
	 * read (may be NULL); from the calling thread. */
	bv_progress_fn progress;
	void *progress_ud;
} bv_verify_opts;

/* bv_store_verify_report with options (O may be NULL: the whole store,
 * one reader per core, marks). A chunk whose record does not read back
 * (a checksum, a fingerprint, a short or missing container, a damaged
 * index entry) is marked bad in the index ("bad/", storage/FORMAT.md) in
 * one synced write at the end, when S is writable and O->read_only is 0;
 * else OUT->unmarked counts them and OUT->not_marked says why. From then
 * on no read hands the chunk out (the error names the chunk, its
 * container and offset, and the REPLICA@RP range), bv_reader_digests
 * gives its digest as unknown, and an ingest that meets the chunk's
 * bytes again writes a fresh record and repoints the chunk index to it,
 * removing the mark: every RP that needed it reads again. Safe to call
 * on a thread of the writing process beside ingest sessions. Returns as
 * bv_store_verify_report; BV_ENOTFOUND for a scope that names nothing. */
BV_API int bv_store_verify_opts(bv_store *s, const bv_verify_opts *o,
				bv_verify_fn fn, void *ud,
				bv_verify_result *out);

/* What bv_store_check_report() looked at. */
typedef struct bv_check_result {
	uint64_t containers;  /* container files */
	uint64_t chunks;      /* chunk index entries held against headers */
	uint64_t map_entries; /* map entries checked */
	uint64_t problems;    /* inconsistencies (0: consistent) */
} bv_check_result;

/* Holds the index against the containers without reading chunk
 * payloads: each chunk index entry's container exists and the record
 * header at its offset repeats its fingerprint, codec and lengths; each
 * map entry names a chunk the index holds and is of a version at or
 * below its replica's committed head, or of the version an in-flight
 * session writes; each container file is at or below the durable tail
 * or kept by a "u/" record, else reported (kind BV_VERIFY_UNKNOWN, not
 * a problem). Findings go to FN as bv_store_verify_report's (kind
 * BV_VERIFY_INDEX for inconsistencies). Changes nothing; works on a
 * read-only S. 0 when consistent; BV_ECORRUPT when not (OUT counts,
 * bv_store_error names the first); BV_EDB, -ENOMEM, BV_EINVAL (a
 * container backend that cannot read headers alone). */
BV_API int bv_store_check_report(bv_store *s, bv_verify_fn fn, void *ud,
				 bv_check_result *out);

/* ---- seed sets: moving replicas between sites (storage/SEED.md) ------
 *
 * A seed set is one RP of a replica (or of a group) written to removable
 * media, one folder per medium, each self-describing: a label (set id,
 * medium N of M), the manifest (replicas, sizes, chunk sizes, the RP's
 * label and time, the version identities), chunk packs of bounded size
 * (each distinct chunk once in the set), the block map of each replica
 * (on the last medium) and a checksum or authentication tag on every
 * file. With a key, every file but the label is encrypted and
 * authenticated (libsodium crypto_secretstream_xchacha20poly1305), bound
 * to its set and its place in it. A set carries no fingerprint of the
 * store it came from: the destination fingerprints every chunk under its
 * own key (SEED.md, "Fingerprints").
 *
 * Threads: each call runs on the calling thread alone; calls on other
 * sets, or on the same store, may run at once. Memory is bounded by the
 * set's distinct chunks: export keeps a dedup table of at most 256 MiB
 * (past it, a repeated chunk may be stored twice in the set), import up
 * to 256 MiB of fingerprints (past that, a temporary file in $TMPDIR).
 */
#define BV_SEED_KEY 32

typedef struct bv_seed_opts {
	/* The media folders of this run: DIRS[i] gets medium FIRST_MEDIUM +
	 * i (created 0700 when missing; its parent must exist). A folder
	 * that already holds a medium of this set is resumed (its complete
	 * files checked and kept, the rest written); one that holds another
	 * set's medium is refused. */
	const char *const *dirs;
	size_t ndirs;
	uint32_t first_medium; /* 0 or 1: medium 1 */
	uint64_t media_size;   /* bytes per medium at most; 0: one medium */
	uint64_t pack_size;    /* bytes per pack at most; 0: 256 MiB, or an
				* eighth of MEDIA_SIZE when that is less */
	const uint8_t *key;    /* BV_SEED_KEY bytes: an encrypted set; NULL:
				* checksums only */
	bv_progress_fn progress; /* bytes written (export), read (verify,
				  * import) and the bytes to do */
	void *ud;
} bv_seed_opts;

typedef struct bv_seed_result {
	uint8_t set_id[16];
	int encrypted;
	uint32_t media;         /* media in the set */
	uint32_t next_medium;   /* export: 0 when every medium is complete;
				 * else the medium this run could not write
				 * (no folder given for it) */
	uint32_t replicas;
	uint64_t chunks;        /* chunks of the replicas */
	uint64_t zero_chunks;   /* of them, zero chunks (not in the set) */
	uint64_t entries;       /* distinct chunks in the set */
	uint64_t packs;
	uint64_t bytes;         /* the set's bytes, every medium */
	uint64_t bytes_written; /* export: bytes this run wrote */
	uint64_t files_kept;    /* export: complete files found and kept */
	uint64_t chunks_new;    /* import: chunks the store did not have */
	uint64_t rp;            /* import: the RP made (or found) */
	int already;            /* import: imported before; nothing changed */
	char group[BV_NAME_MAX + 1];
	char label[BV_LABEL_MAX + 1];
	int64_t time;           /* the RP's time */
} bv_seed_result;

/* Writes REPLICA@RP or GROUP@RP (WHAT, RP a number or BV_RP_LATEST) of S
 * as a seed set to the folders of O: a group's every member at that RP,
 * or the replica alone (in a group of its own name at the destination,
 * unless it was its group's one member). Only reads S (a read-only S works
 * beside a running writer). Re-running with the same arguments after an
 * interruption (a crash, a kill, a full disk) keeps the files it finds
 * complete and writes the rest: each file is written under a temporary
 * name, fdatasync'ed, renamed and its folder fsync'ed. When O has fewer
 * folders than the set needs media, the media it has are written and
 * OUT->next_medium names the next one (0 returned): run it again with
 * that medium's folder and O->first_medium set to it. BV_EINVAL (bad
 * options, a folder holding another set or another medium),
 * BV_ENOTFOUND, -ENOSPC (a folder without room for its medium: nothing
 * written to it), the reader's errors, -errno of the folders. */
BV_API int bv_seed_export(bv_store *s, const char *what, uint64_t rp,
			  const bv_seed_opts *o, bv_seed_result *out);

/* A disk for bv_seed_export_disks: read from the caller, not a store. */
typedef struct bv_seed_disk {
	const char *name;    /* the replica it becomes */
	uint64_t size;       /* a multiple of 512 */
	uint32_t chunk_size; /* 0: BV_CHUNK_DEFAULT */
	void *ud;
	/* Reads LEN bytes at OFF (inside SIZE); 0 or -errno. Required. */
	int (*read)(void *ud, void *buf, size_t len, uint64_t off);
	/* 1 when [OFF, OFF+LEN) starts with data, 0 with zeros or a hole,
	 * setting *RUN to the bytes of that kind from OFF (at most LEN);
	 * -errno. NULL: everything is read. */
	int (*extent)(void *ud, uint64_t off, uint64_t len, uint64_t *run);
} bv_seed_disk;

/* bv_seed_export from N disks (a group of them when N > 1: GROUP names
 * it; else the replica's own), as RP 1 labelled LABEL (may be NULL) made
 * at TIME (0: now), with no store: for an agent at the protected site.
 * Zero chunks and holes are not read twice, nor put in the set. Each
 * disk's version identity is derived from its content (the same disks
 * give the same identities and set, so a rerun resumes). Each disk is
 * read twice (a digest pass, then the data of the packs written). */
BV_API int bv_seed_export_disks(const bv_seed_disk *d, size_t n,
				const char *group, const char *label,
				int64_t time, const bv_seed_opts *o,
				bv_seed_result *out);

/* Checks the set in the N folders DIRS (any order) on its own: every
 * medium there (BV_ENOTFOUND naming the one missing), every file whole,
 * every checksum and, with KEY, every authentication tag right, every
 * chunk's digest. O->dirs is not used; O->key, O->progress are. Fills
 * OUT. BV_ECHECKSUM (a damaged or tampered file, or a wrong key: the
 * message names the file), BV_ECORRUPT, BV_EINVAL (media of two sets),
 * BV_EFORMAT, -errno. */
BV_API int bv_seed_verify(const char *const *dirs, size_t n,
			  const bv_seed_opts *o, bv_seed_result *out);

/* Imports the set in the N folders DIRS (any order, all present) into S:
 * checks the set as bv_seed_verify does while it reads, stores only the
 * chunks S lacks (OUT->chunks_new), then one commit creates the
 * replicas, with the set's version identities, and their RP (the set's
 * label and time), and records the set (meta "seed/"). A set the store
 * recorded so, or whose replicas exist with its identities at their
 * heads: 0 with OUT->already set, nothing changed. A replica that exists with another
 * history: BV_EEXIST naming both identities. A set of a group makes
 * the group (of its name: BV_EEXIST when the name is taken) with every
 * member and RP 1 of it; at most 64 replicas per set. Any failure
 * changes nothing. BV_EREADONLY, and bv_seed_verify's errors. */
BV_API int bv_seed_import(bv_store *s, const char *const *dirs, size_t n,
			  const bv_seed_opts *o, bv_seed_result *out);

/* Writes a new random key to PATH (created 0600; BV_EEXIST when it
 * exists): storage/SEED.md, "Key files". */
BV_API int bv_seed_keygen(const char *path);
/* Reads the key file at PATH into KEY. BV_EFORMAT (not a key file),
 * -errno. */
BV_API int bv_seed_key_load(const char *path, uint8_t key[BV_SEED_KEY]);
/* ---- end of seed sets ---------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif
