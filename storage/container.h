/*
 * container.h: append-only container files of self-describing chunk
 * records (byte layout: storage/FORMAT.md). This layer knows records,
 * files and bytes; it knows nothing of replicas or dedup. It is kept
 * behind this small interface so that containers may later live in an
 * object store.
 *
 * Durability (INVARIANTS.md I1, C1): a record appended with
 * bv_cset_appendv() is durable only after bv_cset_flush() returned 0. The
 * caller records the tail that flush reports in its index, in the same
 * commit as the index entries naming the records. bv_cset_open() never
 * cuts or removes anything (C2 in container.c): bytes past the tail it is
 * given are kept and listed, and appends go to a new container.
 *
 * Threads: staging and flushing are serialized by a mutex inside the set;
 * bv_cset_read() may run from any number of threads at once, each with its
 * own ring and buffers.
 */
#ifndef BV_STORAGE_CONTAINER_H
#define BV_STORAGE_CONTAINER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "codec.h"
#include "ring.h"

#define BV_REC_HDR 48u                 /* record header bytes */
#define BV_CONTAINER_HDR 4096u         /* container file header bytes */
#define BV_CONTAINER_MAX (1ull << 30)  /* a container is closed past this */

/* Where a chunk's record is. */
struct bv_chunk_loc {
	uint32_t container;  /* container id, 1, 2, ... */
	uint64_t offset;     /* of the record header in the file */
	uint32_t stored_len; /* payload bytes */
	uint32_t raw_len;
	uint8_t codec;
};

/* Encoded size of a chunk location, as the engine stores it in the chunks
 * column family (layout: storage/FORMAT.md). */
#define BV_LOC_SIZE 24u

/* Writes L into OUT (BV_LOC_SIZE bytes, little-endian fields). */
void bv_chunk_loc_encode(const struct bv_chunk_loc *l,
			 uint8_t out[BV_LOC_SIZE]);
/* A chunk index entry: the location, then (since bvault 0.3) the chunk's
 * plain digest (bv_digest_compute), for consistency checks. */
#define BV_LOC_DIGEST_SIZE (BV_LOC_SIZE + 16u)
/* Copies the digest of entry IN (LEN bytes) to OUT; 0 when the entry has
 * none (written before digests were kept). */
int bv_chunk_entry_digest(const void *in, size_t len, uint8_t out[16]);
/* Parses IN (LEN bytes, from the index: untrusted) into L. ST_ECORRUPT if
 * LEN is not BV_LOC_SIZE or BV_LOC_DIGEST_SIZE (the location comes first)
 * or a field is impossible (unknown codec or
 * version, container 0, offset inside the file header or not 16-aligned,
 * zero lengths, stored longer than raw, or an LZ4 record not smaller). */
int bv_chunk_loc_decode(const void *in, size_t len, struct bv_chunk_loc *l);

/* Bytes a record with STORED_LEN payload takes in a file (header, payload,
 * padding to 16). */
static inline uint64_t bv_rec_size(uint32_t stored_len)
{
	return ((uint64_t)BV_REC_HDR + stored_len + 15u) & ~(uint64_t)15u;
}

struct bv_cset;

struct bv_cset_opts {
	uint64_t container_max;  /* 0: BV_CONTAINER_MAX */
	const uint8_t *secret;   /* fingerprint key, BV_SECRET_SIZE bytes */
	const uint8_t *store_id; /* 16 bytes written into container headers */
	int read_only;           /* no file is changed, cut or removed;
				  * every write fails with -EROFS */
	int tenants;             /* records carry tenant tags (dedup scope
				  * group, bv_fp_check); 0: untagged */
};

/* Opens the container directory DIR (created by bv_cset_create_dir()).
 * TAIL_ID/TAIL_END are the durable tail the index last committed
 * (0/0 when nothing ever was). When container TAIL_ID ends exactly there
 * and nothing lies above it, appends continue in it; otherwise the bytes
 * past the tail are kept and listed (bv_cset_unknown_list) and appends go
 * to a new container above every existing one. Nothing is cut or
 * removed. The secret and store id are copied (store_id NULL: 16 zero
 * bytes). ST_ECORRUPT when container TAIL_ID is missing, shorter than
 * TAIL_END or not this store's, with bv_cset_error() naming the file and
 * the offset; ST_EINVAL for a tail 0 with an offset. Read-only
 * (O->read_only), nothing is checked or listed: another process may be
 * appending. */
int bv_cset_open(const char *dir, const struct bv_cset_opts *o,
		 uint32_t tail_id, uint64_t tail_end, struct bv_cset **out);
/* The message of the last failure of bv_cset_open() in this thread. */
const char *bv_cset_error(void);

/* Bytes that no commit names, found by a writable open: [FROM, TO) of
 * container ID (a crash between a flush and the commit that would have
 * named them, or an index older than the containers). */
struct bv_cset_unknown {
	uint32_t id;
	uint64_t from, to;
};
/* The list found at open; valid until close. */
size_t bv_cset_unknown_list(const struct bv_cset *cs,
			    const struct bv_cset_unknown **out);
int bv_cset_create_dir(const char *dir);
void bv_cset_close(struct bv_cset *cs);

/* Builds one record (header, STORED, zero padding) at DST, which holds
 * bv_rec_size(STORED_LEN) bytes; returns that size, or ST_EINVAL. STORED
 * may be DST + BV_REC_HDR already (encoded in place), else it must not
 * overlap DST. Any thread may build records without the set. */
int64_t bv_rec_build(uint8_t *dst, const bv_fp *fp, uint8_t codec,
		     const void *stored, uint32_t stored_len, uint32_t raw_len);
/* Appends a run given as NSEG segments (at most BV_APPEND_MAX_SEG, at
 * most BV_APPEND_MAX bytes in all), written back to back in one vectored
 * write after what is staged, starting on a page boundary. Each segment
 * starts on a page and is whole pages long: records made by
 * bv_rec_build end to end, then zero bytes to the segment's end (a
 * scanner skips them: FORMAT.md). Sets where the first segment starts;
 * segment I is at *OFFSET plus the lengths of the segments before it.
 * SEG is used by the ring and may be left advanced. Refused arguments
 * (ST_EINVAL) change nothing. Durable only after bv_cset_flush(). */
#define BV_APPEND_MAX_SEG 1024u
#define BV_APPEND_MAX ((size_t)1 << 30)
int bv_cset_appendv(struct bv_cset *cs, struct bv_ring *ring,
		    struct iovec *seg, unsigned nseg, uint32_t *container,
		    uint64_t *offset);
/* Writes what is staged, pads the container to a 4 KiB boundary and
 * fdatasyncs every container written since the last flush (and the
 * directory if a container was created); then reports the durable tail to
 * record in the index (0/0 while no record was ever staged). TAIL_ID and
 * TAIL_END may be NULL.
 * After any failed write or fdatasync (in stage or flush) the set returns
 * that error from stage and flush until bv_cset_rollback(). */
int bv_cset_flush(struct bv_cset *cs, struct bv_ring *ring,
		  uint32_t *tail_id, uint64_t *tail_end);
/* Drops what is staged but not written (an aborted session), and cuts
 * back to the last flushed tail what this set appended past it (never
 * bytes it found at open). */
int bv_cset_rollback(struct bv_cset *cs);

/* One chunk read: fill LOC, FP (expected fingerprint), OUT (RAW_LEN bytes)
 * and SCRATCH (at least bv_rec_size(stored_len) bytes). */
struct bv_chunk_read {
	struct bv_chunk_loc loc;
	bv_fp fp;
	void *out;
	void *scratch;
	int res; /* 0, or the error for this chunk */
};

/* Reads N records through RING with all in flight (in batches of 256),
 * checks each record's
 * header, its stored-bytes checksum, decodes it, and checks the
 * fingerprint of the decoded bytes (invariant 4). Returns 0 or the first
 * error (ST_ECHECKSUM, ST_ECORRUPT, -errno); each RES is set.
 * ST_ECORRUPT: impossible location, record magic or fields that do not
 * match LOC/FP, or undecodable payload; ST_ECHECKSUM: header or payload
 * checksum, or the fingerprint of the decoded bytes.
 * Only records written out of the staging buffer can be read: read what a
 * session staged only after bv_cset_flush(). */
int bv_cset_read(struct bv_cset *cs, struct bv_ring *ring,
		 struct bv_chunk_read *reads, size_t n);

/* As bv_cset_read, for reads that are mostly neighbours in the files (a
 * restore in disk order): the reads of each batch are sorted by container
 * and offset, records less than 64 KiB apart are read as one run (of up
 * to 1 MiB, whole pages through an O_DIRECT descriptor where the file
 * system takes it) into BUF (LEN bytes, page aligned; at least 1 MiB and
 * one record of the largest chunk plus two pages), then each is checked
 * and decoded as bv_cset_read does. SCRATCH is not used: it is set to
 * where the record lies in BUF. */
int bv_cset_read_runs(struct bv_cset *cs, struct bv_ring *ring,
		      struct bv_chunk_read *reads, size_t n, uint8_t *buf,
		      size_t len);

/* As bv_cset_read, but reads and checks each record's header only (its
 * checksum, and that it repeats LOC's codec and lengths and FP): for
 * bvault check, which holds the index against the containers without
 * reading payloads. SCRATCH needs BV_REC_HDR bytes; OUT is not used. A
 * header past the end of the file fails with -EIO. */
int bv_cset_read_headers(struct bv_cset *cs, struct bv_ring *ring,
			 struct bv_chunk_read *reads, size_t n);

/* Parses record header H (read at OFFSET of CONTAINER) into LOC and FP:
 * 0, ST_ECORRUPT (not a record header, impossible fields) or
 * ST_ECHECKSUM (its checksum). */
int bv_rec_hdr_parse(const uint8_t h[BV_REC_HDR], uint32_t container,
		     uint64_t offset, struct bv_chunk_loc *loc, bv_fp *fp);

/* Scans container ID record by record, calling CB for each intact record
 * (for verify and index rebuild). Stops at the first damaged record with
 * ST_ECORRUPT, naming its offset in *BAD_OFF. */
int bv_cset_scan(struct bv_cset *cs, uint32_t id,
		 int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			   const bv_fp *fp),
		 void *ud, uint64_t *bad_off);

/* Scans like bv_cset_scan, but goes on past damage: DAMAGE is called
 * for each damaged run of bytes [OFF, OFF+LEN) (a damaged file header is
 * [0, 4096)), and the scan resumes at the next intact record. A non-zero
 * return of either callback stops the scan and is returned. */
int bv_cset_scan_all(struct bv_cset *cs, uint32_t id,
		     int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			       const bv_fp *fp),
		     int (*damage)(void *ud, uint32_t id, uint64_t off,
				   uint64_t len),
		     void *ud, uint64_t *bad_off);

/* As bv_cset_scan_all, with CB given each intact record's decoded bytes
 * too (RAW, loc->raw_len bytes, valid during the call): verify checks
 * the chunk index against them in the same read. */
int bv_cset_scan_data(struct bv_cset *cs, uint32_t id,
		      int (*cb)(void *ud, const struct bv_chunk_loc *loc,
				const bv_fp *fp, const void *raw),
		      int (*damage)(void *ud, uint32_t id, uint64_t off,
				    uint64_t len),
		      void *ud);

/* The ids of every container file, ascending, in *IDS (malloc'ed; the
 * caller frees it). */
int bv_cset_list(struct bv_cset *cs, uint32_t **ids, size_t *n);

/* Closes the container being appended to (if any): every later append
 * goes to a new container above every existing one, so that all of
 * them, up to *ID, may be rewritten and removed (GC). Only right after a
 * flush (ST_EINVAL while anything is pending). */
int bv_cset_seal(struct bv_cset *cs, uint32_t *id);
/* Bytes of container ID's file. */
int bv_cset_size(struct bv_cset *cs, uint32_t id, uint64_t *bytes);

/* Number of container files and their total bytes. */
int bv_cset_usage(struct bv_cset *cs, uint64_t *files, uint64_t *bytes);

/* The store id in the header of the lowest-numbered container file in
 * DIR (its id in *WHICH), without opening the set: which store the
 * containers belong to (an index restore checks it). ST_ENOTFOUND when
 * DIR holds no container, ST_ECORRUPT for a damaged header. */
int bv_cset_dir_owner(const char *dir, uint8_t store_id[16], uint32_t *which);

/* Directory path of container ID into BUF. */
int bv_cset_path(const struct bv_cset *cs, uint32_t id, char *buf, size_t n);

#endif
