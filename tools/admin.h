/*
 * admin.h: bvaultd's admin socket, STORE/admin.sock (tools/PROTOCOL.md,
 * "Admin socket"). While bvaultd holds a store, bvault hands every
 * command that changes it to bvaultd, which runs the same command code
 * (cli_run) on a thread of its own, with the caller's directory, umask
 * and standard descriptors, and answers with its exit status.
 */
#ifndef BV_ADMIN_H
#define BV_ADMIN_H

#include "bvault.h"

#define ADMIN_SOCK "admin.sock"
#define ADMIN_VERSION 1
#define ADMIN_HDR 8                  /* u32 length, u8 type, version, u16 0 */
#define ADMIN_MAX_PAYLOAD (64u << 10)
#define ADMIN_MAX_ARGS 256
#define ADMIN_MAX_ARG 4096
#define ADMIN_MAX_MSG 1024           /* a REFUSED message */
#define ADMIN_NFDS 4                 /* cwd, stdin, stdout, stderr */
#define ADMIN_MAX_RUNNING 4          /* commands at once; more wait */
#define ADMIN_REQ_TIMEOUT 10         /* seconds to receive a request */

enum {
	ADMIN_RUN = 0x01,     /* client: umask, argv; with ADMIN_NFDS fds */
	ADMIN_COUNTERS = 0x02, /* client: nothing; no fds. Read-only */
	ADMIN_EXIT = 0x81,    /* server: u8 exit status; the end */
	ADMIN_FIGURES = 0x82, /* server: "NAME VALUE\n" lines; the end */
	ADMIN_REFUSED = 0x8f, /* server: why (text); the end */
};

/*
 * The client side (bvault). admin_forward: when a bvaultd answers on
 * STORE/admin.sock, runs the command ARGV (ARGC words after "bvault")
 * there and returns its exit status (after printing why when bvaultd
 * refused it or ended before it finished); -1 when no bvaultd answers
 * (the caller then opens the store itself). admin_running: 1 when a
 * bvaultd answers on STORE/admin.sock, else 0.
 */
int admin_forward(const char *store, int argc, char **argv);
int admin_running(const char *store);
/* Asks STORE's bvaultd for its live counters (PROTOCOL.md, "Admin
 * socket", COUNTERS): their "NAME VALUE" lines, NUL-terminated, into
 * BUF (CAP bytes, at least ADMIN_MAX_MSG). Returns their length; -1 when
 * no bvaultd answers; -2 when one answered but not with counters (BUF
 * then holds why). Prints nothing. */
int admin_counters(const char *store, char *buf, size_t cap);

/*
 * The server side (bvaultd). admin_start: makes STORE/admin.sock (STORE
 * absolute; the caller holds the store's writer lock, so a socket file
 * there is stale) and starts the thread that accepts on it; commands
 * run on S. LOG writes a line of bvaultd's log. Returns 0, or -1 after
 * printing why to stderr. admin_stop: stops accepting, waits for the
 * running commands to end, removes the socket. Both from main only.
 */
typedef void (*admin_log_fn)(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
int admin_start(bv_store *s, const char *store, admin_log_fn log);
/* The daemon's live counters for a COUNTERS request: FN writes "NAME
 * VALUE\n" lines (NAME of [a-z0-9_], VALUE a decimal u64) into BUF (CAP
 * bytes) and returns their length; it runs on an admin thread, so it
 * reads what it reports atomically. Set before admin_start; without it,
 * COUNTERS is refused. */
typedef size_t (*admin_counters_fn)(char *buf, size_t cap);
void admin_set_counters(admin_counters_fn fn);
void admin_stop(void);

#endif
