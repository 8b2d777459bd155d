/*
 * progress.h: the progress bar of bvault and bvault-agent, and the
 * helpers it draws with (tools/progress.c). A bar is drawn only when its
 * stream is a terminal, redrawn at most ten times a second, and ended
 * with a newline; elsewhere (a log, a pipe) nothing is written. One
 * struct progress per thread; the functions keep no state of their own.
 */
#ifndef BV_PROGRESS_H
#define BV_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

struct progress {
	const char *what; /* the bar's title; must outlive the bar */
	FILE *f;
	int on;           /* F is a terminal */
	int drawn;
	double start, last;
};

/* Starts a bar titled WHAT on F (drawn only if F is a terminal). */
void progress_start(struct progress *p, const char *what, FILE *f);
/* Draws DONE of TOTAL bytes (TOTAL 0: unknown) with the mean rate. */
void progress_draw(struct progress *p, uint64_t done, uint64_t total);
/* A bv_progress_fn (UD: the struct progress): progress_draw, at most
 * ten times a second, and always at DONE == TOTAL. */
void progress_cb(void *ud, uint64_t done, uint64_t total);
/* Ends the line of a bar that was drawn. */
void progress_end(struct progress *p);

/* V bytes as "12.3 MiB" into BUF. */
void human(char *buf, size_t len, double v);
/* CLOCK_MONOTONIC in seconds. */
double now_sec(void);

#endif
