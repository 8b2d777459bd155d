/*
 * bvault.h: the one public header of libbvault, a block-level
 * deduplicating replica storage engine.
 *
 * Contract, for every function below unless it says otherwise:
 *   - Returns 0 (or a non-negative count) on success and a negative error
 *     code on failure: -errno for OS and io_uring failures, passed up
 *     unchanged, or one of the BV_E* codes below. bv_strerror() names it.
 *   - On failure the store handle keeps a message naming the object and
 *     what was wrong ("replica vm7: stream base is RP 12 but latest is RP
 *     14"); bv_store_error() returns it. The message is valid until the next
 *     call on the same store handle from the same thread.
 *   - A failed call changes nothing in the store.
 *   - Strings passed in are copied; the caller keeps ownership.
 *
 * Threads: a bv_store may be shared by threads; calls on it are serialized
 * internally where they must be. Each bv_ingest, bv_reader and
 * bv_stream_writer belongs to one thread at a time. Any number of readers
 * may be open beside one ingest session per replica.
 *
 * Caveats:
 *   - One process opens a store at a time (the index holds a lock).
 *   - Sizes and offsets in change streams are multiples of 512 bytes.
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

#define BVAULT_VERSION_MAJOR 0
#define BVAULT_VERSION_MINOR 1

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

BV_API const char *bv_strerror(int err);
BV_API const char *bv_version(void);

/* ---- store ------------------------------------------------------------ */

/* Option structs (bv_init_opts, bv_open_opts, bv_commit_opts) grow new
 * fields at their end, each meaning "as before" when 0: initialize them
 * whole ("= { 0 }" or designated initializers), never field by field. */

typedef struct bv_init_opts {
	uint32_t chunk_size; /* default chunk size of new replicas; 0: 64 KiB */
} bv_init_opts;

typedef struct bv_open_opts {
	unsigned workers;   /* compression workers; 0: one per online core */
	int read_only;      /* see bv_store_open */
} bv_open_opts;

/* Creates a new store in PATH (created if missing; must be empty) and
 * leaves it closed. BV_EEXIST if PATH already holds anything. Errors
 * are reported through ERRBUF (may be NULL). */
BV_API int bv_store_init(const char *path, const bv_init_opts *opts,
			 char *errbuf, size_t errlen);

/* Opens the store in PATH. *OUT is set on success and on failure (unless
 * the failure is -ENOMEM), so that bv_store_error() can explain; close it
 * either way. BV_ENOTSTORE, BV_EFORMAT (a store of another format
 * version), BV_EDB. Opening recovers from a crash: versions that were not
 * committed are removed (invariant 2).
 * One process opens a store for writing at a time (BV_EBUSY for a second
 * one). With OPTS->read_only, a process opens it beside that writer (a
 * running bvaultd, say): it sees the store as it was at the open, every
 * committed RP whole and nothing of the sessions in flight, and never
 * catches up; it does no crash recovery (what it reads is committed
 * anyway), and every call that would change the store fails with
 * BV_EREADONLY, changing nothing. A read-only open keeps every index file
 * open, and raises the process's soft limit of open files to its hard
 * limit for that. */
BV_API int bv_store_open(const char *path, const bv_open_opts *opts,
			 bv_store **out);
/* Closes and frees S; NULL is fine. Sessions still open are aborted. */
BV_API void bv_store_close(bv_store *s);
BV_API const char *bv_store_error(const bv_store *s);
BV_API uint32_t bv_store_chunk_size(const bv_store *s);

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
 * store's default. */
BV_API int bv_replica_create(bv_store *s, const char *name, uint64_t size,
			     uint32_t chunk_size);
BV_API int bv_replica_info_get(bv_store *s, const char *name,
			       bv_replica_info *out);
/* Calls CB for each replica in name order; a non-zero return from CB stops
 * the walk and is returned. */
BV_API int bv_replica_list(bv_store *s,
			   int (*cb)(void *ud, const bv_replica_info *r),
			   void *ud);

/* Makes group GROUP of the N named replicas. Each must exist, must still
 * be alone in its own default group, and must have no RP yet (RPs are
 * numbered per group, so a replica cannot take its history along). */
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
 * members' committed heads. O(members), whatever their size. */
BV_API int bv_rp_create(bv_store *s, const char *what, const char *label,
			int consistency, uint64_t *number_out);
/* Lists RPs in number order of WHAT (replica or group; NULL: every group). */
BV_API int bv_rp_list(bv_store *s, const char *what,
		      int (*cb)(void *ud, const bv_rp_info *rp), void *ud);

/* ---- ingest ------------------------------------------------------------ */

typedef struct bv_commit_opts {
	int make_rp;        /* also make an RP of the group */
	const char *label;  /* RP label, may be NULL */
	int consistency;    /* for the RP */
	int64_t time;       /* for the RP; 0: now */
} bv_commit_opts;

/* Starts an empty ingest session. Nothing is visible to readers until
 * bv_ingest_commit(); abort, failure, or a crash leave every replica and
 * RP as before (invariant 2). */
BV_API int bv_ingest_begin(bv_store *s, bv_ingest **out);

/* Adds replica NAME to the session and returns its slot (>= 0) for the
 * calls below. BASE_RP is the RP the sender's changes start from: it must
 * be the replica's latest RP (0 for a replica with none), else BV_EBASE.
 * The new version gets a fresh random identity at commit.
 * When the replica does not exist and CREATE_SIZE is not 0, it is created
 * at commit with that size; otherwise BV_ENOTFOUND. All replicas of one
 * session must be in one group (BV_EGROUP). */
BV_API int bv_ingest_add(bv_ingest *in, const char *name, uint64_t base_rp,
			 uint64_t create_size);
/* Data extent: OFF and LEN multiples of 512, inside the disk. */
BV_API int bv_ingest_write(bv_ingest *in, int slot, uint64_t off,
			   const void *buf, size_t len);
/* Zero extent: reads as zeros afterwards. */
BV_API int bv_ingest_zero(bv_ingest *in, int slot, uint64_t off,
			  uint64_t len);
/* Size change; shrinking drops the data past the new end. */
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
 * *CONSISTENCY and *TIME from the stream when not NULL. */
BV_API int bv_ingest_stream(bv_ingest *in, int fd, int format,
			    const char *name, uint64_t base_rp,
			    int *consistency, int64_t *time,
			    bv_progress_fn progress, void *ud);

/* Commits every replica of the session atomically as one new version each
 * and, with opts->make_rp, one RP of the group, whose number is stored in
 * *RP_OUT (0 when no RP was made). Each new version gets its identity in
 * the same write: the result identity of its stream, else a fresh random
 * one (-errno if the system's random source fails). Frees IN, whatever
 * the result. */
BV_API int bv_ingest_commit(bv_ingest *in, const bv_commit_opts *opts,
			    uint64_t *rp_out);
/* Drops everything the session did; frees IN. NULL is fine. */
BV_API void bv_ingest_abort(bv_ingest *in);

/* ---- reading ------------------------------------------------------------ */

/* Opens REPLICA at RP (a number, or BV_RP_LATEST for the latest RP; 0 for
 * the committed head, which may be newer than every RP). The reader sees
 * that version only, whatever is committed later (invariant 3). */
BV_API int bv_reader_open(bv_store *s, const char *replica, uint64_t rp,
			  bv_reader **out);
BV_API uint64_t bv_reader_size(const bv_reader *r);
BV_API uint32_t bv_reader_chunk_size(const bv_reader *r);
/* Reads LEN bytes at OFF (OFF+LEN within the size). Every chunk read is
 * verified (invariant 4): BV_ECHECKSUM rather than wrong bytes. */
BV_API int bv_reader_pread(bv_reader *r, void *buf, size_t len, uint64_t off);
/* Tells whether [OFF, OFF+*LEN) starts with data or zeros: returns 1 for
 * data, 0 for zeros, and shortens *LEN to the run of the same kind. */
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

/* Writes REPLICA@RP to PATH: a regular file (created or truncated, zeros
 * left as holes) or a block device (zeros written). */
BV_API int bv_export(bv_store *s, const char *replica, uint64_t rp,
		     const char *path, bv_progress_fn progress, void *ud);

/* Writes to FD the bvault change stream that turns REPLICA@RP1 into
 * REPLICA@RP2 (RP1 0: from nothing, a full stream). Only chunks that differ
 * are sent. The stream's base RP is RP1 unless BASE_OVERRIDE is not
 * BV_RP_LATEST. It names as base identity that of the version at RP1
 * (none for RP1 0), whatever BASE_OVERRIDE says: the override renumbers,
 * it never lets the stream apply to another history. It names as result
 * identity that of the version at RP2, unless that version is older than
 * RP1's (a diff backwards makes a new state in the receiver: it gets a
 * fresh identity there). Identities unknown here (versions committed
 * before identities were kept) are named as none. */
BV_API int bv_diff(bv_store *s, const char *replica, uint64_t rp1,
		   uint64_t rp2, uint64_t base_override, int fd,
		   bv_progress_fn progress, void *ud);

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
} bv_stats;

BV_API int bv_stats_get(bv_store *s, bv_stats *out);

/* What bv_store_verify() read. */
typedef struct bv_verify_result {
	uint64_t containers;  /* container files scanned */
	uint64_t records;     /* intact records found in them */
	uint64_t chunks;      /* chunk index entries read back and checked */
	uint64_t map_entries; /* map entries checked */
	uint64_t problems;    /* damage found (0: the store is intact) */
} bv_verify_result;

/* Reads everything the store keeps: every container record by record,
 * every indexed chunk (decoded, its fingerprint recomputed), and every
 * map entry against the chunk index. Changes nothing; goes on past
 * damage. 0 when intact; BV_ECORRUPT when damage was found (OUT counts
 * it, bv_store_error names the first); another error when it could not
 * read on. Ingest sessions of this process wait while containers are
 * scanned. */
BV_API int bv_store_verify(bv_store *s, bv_verify_result *out);

/* ---- agent identities (for the network server, tools/PROTOCOL.md) ---- */

#define BV_AGENT_SECRET 32
#define BV_AGENT_GROUPS_MAX 64

typedef struct bv_agent_info {
	char name[BV_NAME_MAX + 1];
	int64_t created;    /* seconds since the epoch */
	uint32_t ngroups;   /* groups it may read and write */
	char groups[BV_AGENT_GROUPS_MAX][BV_NAME_MAX + 1];
} bv_agent_info;

/* Creates agent NAME with access to the N GROUPS (which need not exist
 * yet: a new replica is in a group of its own name) and a new random
 * secret, copied to SECRET_OUT: the only time it leaves the store.
 * BV_EEXIST if the name is taken. */
BV_API int bv_agent_add(bv_store *s, const char *name,
			const char *const *groups, size_t n,
			uint8_t secret_out[BV_AGENT_SECRET]);
/* Fills OUT; also the secret when SECRET_OUT is not NULL. */
BV_API int bv_agent_get(bv_store *s, const char *name, bv_agent_info *out,
			uint8_t *secret_out);
/* Calls CB for each agent in name order (secrets are not given out). */
BV_API int bv_agent_list(bv_store *s,
			 int (*cb)(void *ud, const bv_agent_info *a),
			 void *ud);
BV_API int bv_agent_remove(bv_store *s, const char *name);
/* 1 if agent A may read and write GROUP. */
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
 * when open fails. */
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

#ifdef __cplusplus
}
#endif
#endif
