/*
 * cstore_fault.c: the fault-injecting container backend (cstore.h). It
 * is a real backend: every operation goes to the wrapped one, and the
 * Nth call of an append, flush, read, remove or seal fails instead (or, for a flush
 * with plan.after, fails after the wrapped flush ran, the way a failed
 * fdatasync leaves the caller unsure what reached the disk). Each call is
 * reported to the plan's log, so that a test can check the order of
 * container writes, syncs and index commits (INVARIANTS.md, I1).
 *
 * A failed append or flush keeps the wrapper broken until rollback, like
 * every backend (C5): the engine must roll back before it writes again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "errcodes.h"

struct fault {
	struct bv_cstore base;
	struct bv_cstore *inner;
	struct bv_fault_plan plan;
	uint64_t count[BV_FAULT_OPS];
	int broken;
};

static struct fault *fault_of(struct bv_cstore *c)
{
	return (struct fault *)c;
}

static void log_event(struct fault *f, const struct bv_fault_event *e)
{
	if (f->plan.log)
		f->plan.log(f->plan.ud, e);
}

/* 1 when this call of OP is the one to fail. */
static int due(struct fault *f, enum bv_fault_op op)
{
	uint64_t n = ++f->count[op];

	return f->plan.fail_at[op] != 0 && n == f->plan.fail_at[op];
}

static int err_of(const struct fault *f)
{
	return f->plan.err ? f->plan.err : -EIO;
}

static int f_appendv(struct bv_cstore *c, struct bv_ring *ring,
		     struct iovec *seg, unsigned nseg, uint32_t *container,
		     uint64_t *offset)
{
	struct fault *f = fault_of(c);
	struct bv_fault_event e = { .op = BV_FAULT_APPEND };
	int ret;

	for (unsigned i = 0; i < nseg; i++)
		e.len += seg[i].iov_len;
	if (f->broken)
		ret = f->broken;
	else if (due(f, BV_FAULT_APPEND))
		ret = f->broken = err_of(f);
	else
		ret = f->inner->ops->appendv(f->inner, ring, seg, nseg,
					     container, offset);
	if (ret == 0) {
		e.container = *container;
		e.offset = *offset;
	}
	e.res = ret;
	log_event(f, &e);
	return ret;
}

static int f_flush(struct bv_cstore *c, struct bv_ring *ring,
		   struct bv_ctail *tail)
{
	struct fault *f = fault_of(c);
	struct bv_fault_event e = { .op = BV_FAULT_FLUSH };
	struct bv_ctail t = { 0 };
	int ret;

	if (f->broken) {
		ret = f->broken;
	} else if (due(f, BV_FAULT_FLUSH)) {
		if (f->plan.after)
			(void)f->inner->ops->flush(f->inner, ring, &t);
		ret = f->broken = err_of(f);
	} else {
		ret = f->inner->ops->flush(f->inner, ring, &t);
	}
	if (ret == 0) {
		*tail = t;
		e.tail = t;
	}
	e.res = ret;
	log_event(f, &e);
	return ret;
}

static int f_read_runs(struct bv_cstore *c, struct bv_ring *ring,
		       struct bv_chunk_read *reads, size_t n, uint8_t *buf,
		       size_t len)
{
	struct fault *f = fault_of(c);
	struct bv_fault_event e = { .op = BV_FAULT_READ, .len = n };
	int ret;

	if (due(f, BV_FAULT_READ)) {
		ret = err_of(f);
		for (size_t i = 0; i < n; i++)
			reads[i].res = ret;
	} else if (f->inner->ops->read_runs) {
		ret = f->inner->ops->read_runs(f->inner, ring, reads, n, buf,
					       len);
	} else {
		ret = ST_EINVAL;
	}
	e.res = ret;
	log_event(f, &e);
	return ret;
}

/* Headers are read as they are (check): not counted, never failed. */
static int f_read_headers(struct bv_cstore *c, struct bv_ring *ring,
			  struct bv_chunk_read *reads, size_t n)
{
	struct fault *f = fault_of(c);

	if (!f->inner->ops->read_headers)
		return ST_EINVAL;
	return f->inner->ops->read_headers(f->inner, ring, reads, n);
}

static int f_rollback(struct bv_cstore *c)
{
	struct fault *f = fault_of(c);

	f->broken = 0;
	return f->inner->ops->rollback(f->inner);
}

static int f_read(struct bv_cstore *c, struct bv_ring *ring,
		  struct bv_chunk_read *reads, size_t n)
{
	struct fault *f = fault_of(c);
	struct bv_fault_event e = { .op = BV_FAULT_READ, .len = n };
	int ret;

	if (due(f, BV_FAULT_READ)) {
		ret = err_of(f);
		for (size_t i = 0; i < n; i++)
			reads[i].res = ret;
	} else {
		ret = f->inner->ops->read(f->inner, ring, reads, n);
	}
	e.res = ret;
	log_event(f, &e);
	return ret;
}

static int f_scan(struct bv_cstore *c, uint32_t id,
		  int (*cb)(void *ud, const struct bv_chunk_loc *loc,
			    const bv_fp *fp),
		  int (*damage)(void *ud, uint32_t id, uint64_t off,
				uint64_t len),
		  void *ud)
{
	struct fault *f = fault_of(c);

	return f->inner->ops->scan(f->inner, id, cb, damage, ud);
}

static int f_scan_data(struct bv_cstore *c, uint32_t id,
		       int (*cb)(void *ud, const struct bv_chunk_loc *loc,
				 const bv_fp *fp, const void *raw),
		       int (*damage)(void *ud, uint32_t id, uint64_t off,
				     uint64_t len),
		       void *ud)
{
	struct fault *f = fault_of(c);

	if (!f->inner->ops->scan_data)
		return ST_EINVAL;
	return f->inner->ops->scan_data(f->inner, id, cb, damage, ud);
}

static int f_remove(struct bv_cstore *c, uint32_t id)
{
	struct fault *f = fault_of(c);
	struct bv_fault_event e = { .op = BV_FAULT_REMOVE, .container = id };
	int ret;

	if (due(f, BV_FAULT_REMOVE))
		ret = err_of(f);
	else
		ret = f->inner->ops->remove(f->inner, id);
	e.res = ret;
	log_event(f, &e);
	return ret;
}

static int f_seal(struct bv_cstore *c, uint32_t *id)
{
	struct fault *f = fault_of(c);
	struct bv_fault_event e = { .op = BV_FAULT_SEAL };
	int ret;

	if (f->broken)
		ret = f->broken;
	else if (due(f, BV_FAULT_SEAL))
		ret = err_of(f);
	else
		ret = f->inner->ops->seal(f->inner, id);
	if (ret == 0)
		e.container = *id;
	e.res = ret;
	log_event(f, &e);
	return ret;
}

static int f_size(struct bv_cstore *c, uint32_t id, uint64_t *bytes)
{
	struct fault *f = fault_of(c);

	return f->inner->ops->size(f->inner, id, bytes);
}

static int f_list(struct bv_cstore *c, uint32_t **ids, size_t *n)
{
	struct fault *f = fault_of(c);

	return f->inner->ops->list(f->inner, ids, n);
}

static int f_usage(struct bv_cstore *c, uint64_t *count, uint64_t *bytes)
{
	struct fault *f = fault_of(c);

	return f->inner->ops->usage(f->inner, count, bytes);
}

static int f_where(const struct bv_cstore *c, uint32_t id, char *buf,
		   size_t n)
{
	const struct fault *f = (const struct fault *)c;

	return f->inner->ops->where(f->inner, id, buf, n);
}

static size_t f_unknown(const struct bv_cstore *c,
			const struct bv_cset_unknown **out)
{
	const struct fault *f = (const struct fault *)c;

	return f->inner->ops->unknown(f->inner, out);
}

/* The wrapper's tokens are the wrapped backend's. */
static int f_tail_cmp(const struct bv_cstore *c, const struct bv_ctail *a,
		      const struct bv_ctail *b)
{
	const struct fault *f = (const struct fault *)c;

	return f->inner->ops->tail_cmp(f->inner, a, b);
}

static void f_close(struct bv_cstore *c)
{
	struct fault *f = fault_of(c);

	if (f == NULL)
		return;
	f->inner->ops->close(f->inner);
	free(f);
}

static const struct bv_cstore_ops fault_ops = {
	.name = "fault",
	.appendv = f_appendv,
	.flush = f_flush,
	.rollback = f_rollback,
	.read = f_read,
	.read_runs = f_read_runs,
	.read_headers = f_read_headers,
	.scan = f_scan,
	.scan_data = f_scan_data,
	.remove = f_remove,
	.seal = f_seal,
	.size = f_size,
	.list = f_list,
	.usage = f_usage,
	.where = f_where,
	.unknown = f_unknown,
	.tail_cmp = f_tail_cmp,
	.close = f_close,
};

int bv_cstore_fault_new(struct bv_cstore *inner,
			const struct bv_fault_plan *plan,
			struct bv_cstore **out)
{
	struct fault *f;

	*out = NULL;
	if (inner == NULL || plan == NULL)
		return ST_EINVAL;
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	f->base.ops = &fault_ops;
	f->inner = inner;
	f->plan = *plan;
	*out = &f->base;
	return 0;
}

uint64_t bv_cstore_fault_count(const struct bv_cstore *c,
			       enum bv_fault_op op)
{
	const struct fault *f = (const struct fault *)c;

	return op < BV_FAULT_OPS ? f->count[op] : 0;
}
