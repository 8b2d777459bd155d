/*
 * workers.c: a fixed pool of threads for the CPU-bound per-chunk work
 * (hashing, compression, decompression). A run hands out item indexes
 * through an atomic counter; the caller works too, so a pool of N workers
 * keeps N + 1 threads busy only while the caller has nothing else to do.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#include "internal.h"

/* 0 on every thread but a pool worker, which has 1 + its number. */
static _Thread_local unsigned thread_index;

struct bv_pool {
	pthread_t *threads;
	unsigned n;
	unsigned started;
	atomic_uint numbered;     /* workers that took their index */
	pthread_mutex_t lock;     /* guards the job fields and stop */
	pthread_cond_t wake;      /* a job was posted, or stop */
	pthread_cond_t idle;      /* a worker finished its share */
	pthread_mutex_t run_lock; /* one run at a time */
	void (*fn)(void *ctx, size_t i);
	void *ctx;
	size_t nitems;
	atomic_size_t next;
	atomic_uint_fast64_t job; /* bumped per run (under lock) */
	atomic_uint busy;   /* workers inside the current run (under lock) */
	atomic_int stop;
};

static void drain(struct bv_pool *p, void (*fn)(void *, size_t), void *ctx,
		  size_t n)
{
	for (;;) {
		size_t i = atomic_fetch_add(&p->next, 1);
		if (i >= n)
			break;
		fn(ctx, i);
	}
}

/* How long a thread polls before it sleeps on a condition variable.
 * Waking a sleeping thread costs tens of microseconds on a virtual
 * machine (an interprocessor interrupt and a reschedule), as long as a
 * pool run of a few chunks; consecutive runs come closer together than
 * this, so the pool stays awake through them. */
#define SPIN_NS 100000

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Polls until DONE(P, ARG) holds or SPIN_NS passed; says which. */
static int spin_until(struct bv_pool *p, int (*done)(struct bv_pool *, uint64_t),
		      uint64_t arg)
{
	uint64_t end = 0;
	for (unsigned k = 0;; k++) {
		if (done(p, arg))
			return 1;
		if ((k & 63) == 0) {
			uint64_t t = mono_ns();
			if (!end)
				end = t + SPIN_NS;
			else if (t >= end)
				return 0;
		}
		cpu_relax();
	}
}

static int job_posted(struct bv_pool *p, uint64_t seen)
{
	return atomic_load_explicit(&p->stop, memory_order_relaxed) ||
	       atomic_load_explicit(&p->job, memory_order_relaxed) != seen;
}

static int all_idle(struct bv_pool *p, uint64_t unused)
{
	(void)unused;
	return atomic_load_explicit(&p->busy, memory_order_relaxed) == 0;
}

static void *worker(void *arg)
{
	struct bv_pool *p = arg;
	uint64_t seen = 0;

	thread_index = atomic_fetch_add(&p->numbered, 1) + 1;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (!p->stop && p->job == seen) {
			pthread_mutex_unlock(&p->lock);
			spin_until(p, job_posted, seen);
			pthread_mutex_lock(&p->lock);
		}
		while (!p->stop && p->job == seen)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->stop)
			break;
		seen = p->job;
		void (*fn)(void *, size_t) = p->fn;
		void *ctx = p->ctx;
		size_t n = p->nitems;
		p->busy++;
		pthread_mutex_unlock(&p->lock);
		drain(p, fn, ctx, n);
		pthread_mutex_lock(&p->lock);
		p->busy--;
		pthread_cond_broadcast(&p->idle);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int bv_pool_new(unsigned workers, struct bv_pool **out)
{
	struct bv_pool *p = calloc(1, sizeof *p);
	int rc = -ENOMEM;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->run_lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->n = workers;
	p->threads = calloc(workers ? workers : 1, sizeof *p->threads);
	if (!p->threads)
		goto fail;
	for (unsigned i = 0; i < workers; i++) {
		int e = pthread_create(&p->threads[i], NULL, worker, p);
		if (e) {
			rc = -e;
			goto fail;
		}
		p->started++;
	}
	*out = p;
	return 0;
fail:
	bv_pool_free(p);
	return rc;
}

void bv_pool_free(struct bv_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->started; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->idle);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->run_lock);
	free(p);
}

unsigned bv_pool_size(const struct bv_pool *p)
{
	return p->n;
}

unsigned bv_pool_thread_index(void)
{
	return thread_index;
}

void bv_pool_run(struct bv_pool *p, void (*fn)(void *ctx, size_t i),
		 void *ctx, size_t n)
{
	if (n == 0)
		return;
	if (p->n == 0 || n == 1) {
		for (size_t i = 0; i < n; i++)
			fn(ctx, i);
		return;
	}
	pthread_mutex_lock(&p->run_lock);
	pthread_mutex_lock(&p->lock);
	/* A worker that woke late for the previous run may still be in it
	 * (finding nothing left); the counter is reset only after it left. */
	while (p->busy)
		pthread_cond_wait(&p->idle, &p->lock);
	p->fn = fn;
	p->ctx = ctx;
	p->nitems = n;
	atomic_store(&p->next, 0);
	p->job++;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);

	drain(p, fn, ctx, n);
	spin_until(p, all_idle, 0);

	/* Workers that woke for this job must leave it before the next run
	 * may reuse the counter; a worker that never woke will see the job
	 * number moved on and only take part in a later run. */
	pthread_mutex_lock(&p->lock);
	while (p->busy)
		pthread_cond_wait(&p->idle, &p->lock);
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_unlock(&p->run_lock);
}
