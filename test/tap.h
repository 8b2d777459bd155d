/*
 * tap.h: a minimal TAP producer for the test programs (meson runs them
 * with protocol 'tap'). Header-only: each test program includes it once.
 *
 *   ok(cond, "fmt", ...)       one test point
 *   is_int(got, want, "name")  equality of integers, printing both
 *   skip_all("why")            the whole program is skipped (exit 77)
 *   return done_testing();     plan at the end; exit status 1 on failure
 */
#ifndef BV_TEST_TAP_H
#define BV_TEST_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3), unused))
static int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	tap_n++;
	if (!cond)
		tap_failed++;
	printf("%s %d - ", cond ? "ok" : "not ok", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return cond;
}

#define is_int(got, want, ...)                                            \
	do {                                                              \
		long long tap_g_ = (long long)(got), tap_w_ = (long long)(want); \
		if (!ok(tap_g_ == tap_w_, __VA_ARGS__))                   \
			printf("#   got %lld, want %lld\n", tap_g_, tap_w_); \
	} while (0)

__attribute__((format(printf, 1, 2), unused))
static void diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

__attribute__((noreturn, unused))
static void skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	fflush(stdout);
	exit(77);
}

__attribute__((noreturn, unused))
static void bail_out(const char *why)
{
	printf("Bail out! %s\n", why);
	fflush(stdout);
	exit(1);
}

__attribute__((unused))
static int done_testing(void)
{
	printf("1..%d\n", tap_n);
	fflush(stdout);
	return tap_failed ? 1 : 0;
}

#endif
