/*
 * cli.h: what the bvault commands share (tools/cli.c): messages and exit
 * statuses, option and argument parsing, output helpers, progress bars,
 * and opening a store. Each command file (bvault.c, cmd_*.c) is a thin
 * layer over bvault.h and this.
 */
#ifndef BV_CLI_H
#define BV_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "bvault.h"
#include "progress.h"

#define EXIT_OP 1
#define EXIT_USAGE 2
/* A parse result meaning "help was printed: exit 0". */
#define HELP_SHOWN (-1)

#define IO_BUF (4u << 20)

/* Name of the running command ("rp ls") and its usage text, set by main
 * (per thread: bvaultd runs commands on its admin thread). */
extern _Thread_local const char *g_cmd;
extern _Thread_local const char *g_usage;

/* Where a command writes its output (CLI_OUT) and its messages (CLI_ERR):
 * stdout and stderr, unless the thread set cli_out_f / cli_err_f (bvaultd
 * carrying out a command for bvault over its admin socket writes to the
 * caller's descriptors). Commands write through these, never straight
 * to stdout or stderr. */
extern _Thread_local FILE *cli_out_f, *cli_err_f;
#define CLI_OUT (cli_out_f ? cli_out_f : stdout)
#define CLI_ERR (cli_err_f ? cli_err_f : stderr)
/* Where a command reads stdin from ('-'): the caller's descriptor when
 * the thread set cli_in_fd (it starts as -1), else standard input. */
extern _Thread_local int cli_in_fd;
#define CLI_IN_FD (cli_in_fd >= 0 ? cli_in_fd : STDIN_FILENO)

/* A store the thread already holds open (bvaultd's, for a command over
 * the admin socket): open_store() and open_store_reading() hand it out
 * instead of opening the store, and close_store() leaves it open.
 * Commands close what open_store gave them with close_store(), never
 * with bv_store_close(). */
extern _Thread_local bv_store *cli_held;
/* The held store's directory: open_store() of another STORE is refused. */
extern _Thread_local const char *cli_held_path;
void close_store(bv_store *s);
/* In bvault (not in bvaultd), for a command flagged CMD_CHANGES: when a
 * bvaultd holds the store at PATH and answers on its admin socket, the
 * command runs there and bvault exits with its status; else it returns
 * and the command goes on by itself. open_store() calls it; a command
 * that opens the store its own way (verify) calls it first. */
void cli_try_forward(const char *path);

/* Set by cli_run in bvault for a command flagged CMD_CHANGES: the words
 * of the whole command line (after "bvault"). open_store() (for writing)
 * first hands the command to the store's bvaultd through its admin
 * socket (admin.h) and, when one answered, ends bvault with the
 * command's exit status there; else it opens the store as usual. */
extern _Thread_local char **cli_fwd_argv;
extern _Thread_local int cli_fwd_argc;

/* The command table and its dispatch (tools/bvault.c). cli_run runs the
 * command ARGV names (ARGV[0] is the program) on the calling thread and
 * returns its exit status: HOW is CLI_LOCAL in bvault, CLI_DAEMON in
 * bvaultd running it for a caller of its admin socket. A command's flags
 * in the table: CMD_CHANGES, it changes the store (carried out by
 * bvaultd when one holds the store); CMD_ALONE, it needs the store to
 * itself (refused while bvaultd holds it). */
enum { CLI_LOCAL, CLI_DAEMON };
#define CMD_CHANGES 1
#define CMD_ALONE 2
int cli_run(int argc, char **argv, int how);
/* The name of the command ARGV names ("agent add"), or NULL. */
const char *cli_name(int argc, char **argv);

enum { OPT_FLAG, OPT_VALUE };
struct optdef {
	const char *name; /* long name without "--" */
	int kind;
	const char **value; /* OPT_VALUE: set to the argument */
	int *flag;          /* OPT_FLAG: set to 1 */
};

__attribute__((format(printf, 1, 2)))
int usage_error(const char *fmt, ...);
__attribute__((format(printf, 1, 2)))
int op_error(const char *fmt, ...);
const char *store_msg(const bv_store *s, int rc);
int store_error(const bv_store *s, int rc);
int parse_opts(int argc, char **argv, const struct optdef *defs,
	       char **pos, int *npos);
const char *parse_u64(const char *s, uint64_t *out);
const char *parse_size(const char *s, uint64_t *out);
int arg_size(const char *opt, const char *s, uint64_t *out);
int arg_u64(const char *opt, const char *s, uint64_t *out);
int arg_chunk_size(const char *s, uint32_t *out);
int arg_consistency(const char *s, int *out);
const char *check_name(const char *s);
int arg_name(const char *what, const char *s);
int arg_replica_rp(const char *s, char *name, uint64_t *rp);
int want_pos(int npos, char **pos, int min, int max,
	     const char *const *names);
void json_str(FILE *f, const char *s);
void text_str(FILE *f, const char *s);
/* progress_start (progress.h) on the thread's CLI_ERR. */
void progress_init(struct progress *p, const char *what);
int open_store_how(const char *path, int reading, bv_store **out);
int open_store(const char *path, bv_store **out);
int open_store_reading(const char *path, bv_store **out);
int open_stream_out(const char *path, int *fd, int *created);
void fmt_time(char *buf, size_t len, int64_t t);
void json_id(FILE *f, const uint8_t id[BV_ID_SIZE]);

#endif
