/*
 * cstore.h: the container interface. The engine reaches chunk containers
 * only through this table of operations, so that a container may be a
 * file (container.c, through io_uring), a fault-injecting wrapper around
 * another backend (cstore_fault.c, for tests), or later an object in a
 * RADOS pool. Records and their layout are the same whatever the backend
 * (container.h, FORMAT.md); a backend decides where a run of records goes
 * and what makes it durable.
 *
 * The contract every backend keeps (INVARIANTS.md, C1-C5):
 *   - appendv() places a run of whole-page segments of records and says
 *     where (container id, offset); nothing is durable until flush().
 *   - flush() returns 0 only when every run appended before it is
 *     durable, and gives the durable tail as an opaque token: the engine
 *     records it in the same index commit as the entries that name those
 *     records, and hands it back to the backend's open. Tokens are
 *     ordered by tail_cmp(); the engine never records an older one.
 *   - after a failed append or flush the backend refuses both until
 *     rollback(), which drops what was appended since the last flush and
 *     nothing else.
 *   - open never cuts or removes what lies past the token it is given: it
 *     keeps and lists it (unknown()), and appends elsewhere.
 *   - read() checks every record (C4) before handing its bytes out.
 *   - remove() is the only way a container goes away; nothing calls it
 *     on the word of an index that may be stale. GC (engine/gc.c) calls
 *     it for a container it sealed, emptied of every live record (the
 *     chunk index repointed, synced) and that no reader can still read
 *     (INVARIANTS.md 12).
 *
 * Threads: appendv, flush and rollback are serialized by the caller
 * (the store's write lock); read and scan may run from many threads.
 */
#ifndef BV_STORAGE_CSTORE_H
#define BV_STORAGE_CSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "container.h"

/* A durable tail, opaque to the engine: LEN bytes of B (0: nothing was
 * ever made durable). */
#define BV_TAIL_MAX 32u
struct bv_ctail {
	uint32_t len;
	uint8_t b[BV_TAIL_MAX];
};

struct bv_cstore;

struct bv_cstore_ops {
	const char *name; /* "file", "fault", ... */
	int (*appendv)(struct bv_cstore *c, struct bv_ring *ring,
		       struct iovec *seg, unsigned nseg, uint32_t *container,
		       uint64_t *offset);
	int (*flush)(struct bv_cstore *c, struct bv_ring *ring,
		     struct bv_ctail *tail);
	int (*rollback)(struct bv_cstore *c);
	int (*read)(struct bv_cstore *c, struct bv_ring *ring,
		    struct bv_chunk_read *reads, size_t n);
	/* As read, for reads that are neighbours in the containers, through
	 * the caller's buffer (bv_cset_read_runs); NULL: use read. */
	int (*read_runs)(struct bv_cstore *c, struct bv_ring *ring,
			 struct bv_chunk_read *reads, size_t n, uint8_t *buf,
			 size_t len);
	/* As read, checking each record's header alone against its
	 * location and fingerprint (bv_cset_read_headers); NULL: the
	 * backend cannot (check then says so). */
	int (*read_headers)(struct bv_cstore *c, struct bv_ring *ring,
			    struct bv_chunk_read *reads, size_t n);
	/* Every intact record of container ID, and each damaged run. */
	int (*scan)(struct bv_cstore *c, uint32_t id,
		    int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			      const bv_fp *fp),
		    int (*damage)(void *ud, uint32_t id, uint64_t off,
				  uint64_t len),
		    void *ud);
	/* As scan, giving CB each intact record's decoded bytes too
	 * (bv_cset_scan_data); NULL: the backend cannot. */
	int (*scan_data)(struct bv_cstore *c, uint32_t id,
			 int (*cb)(void *ud, const struct bv_chunk_loc *loc,
				   const bv_fp *fp, const void *raw),
			 int (*damage)(void *ud, uint32_t id, uint64_t off,
				       uint64_t len),
			 void *ud);
	/* Removes container ID; -ENOENT if it is gone already. Never the
	 * one being appended to (seal first). */
	int (*remove)(struct bv_cstore *c, uint32_t id);
	/* Starts a new container for the next append: every container up
	 * to *ID takes no append again, so each is a candidate for GC's
	 * rewrite. Called under the write lock right after a flush. */
	int (*seal)(struct bv_cstore *c, uint32_t *id);
	/* Bytes container ID takes (its header included). */
	int (*size)(struct bv_cstore *c, uint32_t id, uint64_t *bytes);
	/* The ids of the containers a reader may read (a read-only open:
	 * up to its tail), ascending, malloc'ed. */
	int (*list)(struct bv_cstore *c, uint32_t **ids, size_t *n);
	int (*usage)(struct bv_cstore *c, uint64_t *count, uint64_t *bytes);
	/* A name for container ID in messages (a path, an object name). */
	int (*where)(const struct bv_cstore *c, uint32_t id, char *buf,
		     size_t n);
	size_t (*unknown)(const struct bv_cstore *c,
			  const struct bv_cset_unknown **out);
	/* <0, 0, >0 as A is before, at, after B. */
	int (*tail_cmp)(const struct bv_cstore *c, const struct bv_ctail *a,
			const struct bv_ctail *b);
	void (*close)(struct bv_cstore *c);
};

struct bv_cstore {
	const struct bv_cstore_ops *ops;
};

/* The file backend: bv_cset_open() (container.h) behind the table. TAIL
 * is the token the index recorded (NULL or len 0: none). */
int bv_cstore_file_open(const char *dir, const struct bv_cset_opts *o,
			const struct bv_ctail *tail, struct bv_cstore **out);

/* ---- the fault-injecting wrapper (cstore_fault.c) -------------------- */

/* Operations the wrapper counts, and can fail. */
enum bv_fault_op {
	BV_FAULT_APPEND = 0, /* appendv: a container write */
	BV_FAULT_FLUSH = 1,  /* flush: the write-out and fdatasync */
	BV_FAULT_READ = 2,   /* read */
	BV_FAULT_REMOVE = 3, /* remove: a container unlinked */
	BV_FAULT_SEAL = 4,   /* seal */
	BV_FAULT_OPS = 5,
};

/* One event of the wrapper's log (the ordering check): an append placed
 * [OFFSET, OFFSET+LEN) of CONTAINER; a flush made TAIL durable. */
struct bv_fault_event {
	enum bv_fault_op op;
	int res;
	uint32_t container;
	uint64_t offset, len;
	struct bv_ctail tail;
};

struct bv_fault_plan {
	/* Fail the Nth call (1, 2, ...) of each op with ERR; 0: never. */
	uint64_t fail_at[BV_FAULT_OPS];
	int err;             /* 0: -EIO */
	int after;           /* a failing flush fails after the inner one
			      * ran (the bytes may be durable, the caller
			      * must not count on it) */
	/* Called for each event, in order (may be NULL). */
	void (*log)(void *ud, const struct bv_fault_event *e);
	void *ud;
};

/* Wraps INNER (taken over: closing the wrapper closes it). The plan is
 * copied; the counts start at 0. */
int bv_cstore_fault_new(struct bv_cstore *inner,
			const struct bv_fault_plan *plan,
			struct bv_cstore **out);
/* Calls of OP so far. */
uint64_t bv_cstore_fault_count(const struct bv_cstore *c,
			       enum bv_fault_op op);

/* The file backend's token for (ID, END), and back: for the engine's
 * stores of format 1 and 2, whose index keeps exactly these 12 bytes. */
void bv_ctail_file(struct bv_ctail *t, uint32_t id, uint64_t end);
int bv_ctail_file_parse(const struct bv_ctail *t, uint32_t *id,
			uint64_t *end);

#endif
