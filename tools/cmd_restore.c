/*
 * cmd_restore.c: bvault restore and bvault export, which share how a
 * destination is opened:
 *
 *   DEST          how it is written
 *   -             standard output, in order, zeros included (a pipe or a
 *                 file; never a terminal)
 *   nbd://...,    an NBD export, through libnbd (loaded with dlopen when
 *   nbd+unix://.. one is named, as bvault-agent does: it brings GnuTLS,
 *                 libxml2 and ICU, which every other command can do
 *                 without); zeros as NBD zero requests where the server
 *                 takes them
 *   a block device  as it is (never truncated; too small: refused)
 *   a regular file  created 0600, or truncated (zeros left as holes); with
 *                 --delta it must exist
 *   anything else that opens for writing (a FIFO, /dev/null), in order
 *
 * Everything that can be checked is checked before DEST is touched: the
 * arguments, the RP (the store is opened read-only and the reader opened
 * first), the kind and size of DEST; a file this command created is
 * removed when the restore fails.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bvault.h"
#include "cli.h"

int cmd_restore(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* ---- libnbd, loaded when an NBD URI is named ------------------------- */

#define NBD_FUNCS(X)                                                        \
	X(nbd_create) X(nbd_close) X(nbd_get_error) X(nbd_get_errno)        \
	X(nbd_supports_uri) X(nbd_connect_uri) X(nbd_get_size)              \
	X(nbd_is_read_only) X(nbd_can_zero) X(nbd_can_flush)                \
	X(nbd_get_block_size) X(nbd_pread) X(nbd_pwrite) X(nbd_zero)        \
	X(nbd_flush) X(nbd_shutdown)

static struct {
#define NBD_PTR(f) __typeof__(f) *f;
	NBD_FUNCS(NBD_PTR)
#undef NBD_PTR
	char why[256]; /* why libnbd could not be loaded; "" once it is */
} lib;

static void lib_load(void)
{
	void *h = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		snprintf(lib.why, sizeof lib.why, "NBD destinations need "
			 "libnbd (Debian: libnbd0), which cannot be loaded: %s",
			 dlerror());
		return;
	}
#define NBD_SYM(f)                                                          \
	if (!lib.why[0]) {                                                  \
		void *p = dlsym(h, #f);                                     \
		if (!p)                                                     \
			snprintf(lib.why, sizeof lib.why, "the libnbd found " \
				 "has no %s: it is too old", #f);           \
		memcpy(&lib.f, &p, sizeof p);                               \
	}
	NBD_FUNCS(NBD_SYM)
#undef NBD_SYM
}

/* An NBD destination: one connection, shared by the restore's reader
 * (delta) and writer threads (a libnbd handle takes calls from several
 * threads). */
struct nbd_dest {
	struct nbd_handle *h;
	const char *uri;
	uint64_t size;
	size_t max;        /* largest read or write the server takes */
	int can_zero;
};

static int nbd_errno(void)
{
	int e = lib.nbd_get_errno();

	return e > 0 ? -e : -EIO;
}

static int nd_write(void *ud, const void *buf, size_t len, uint64_t off)
{
	struct nbd_dest *d = ud;

	for (size_t done = 0; done < len;) {
		size_t n = len - done < d->max ? len - done : d->max;
		if (lib.nbd_pwrite(d->h, (const uint8_t *)buf + done, n,
				   off + done, 0) < 0)
			return nbd_errno();
		done += n;
	}
	return 0;
}

static int nd_read(void *ud, void *buf, size_t len, uint64_t off)
{
	struct nbd_dest *d = ud;

	for (size_t done = 0; done < len;) {
		size_t n = len - done < d->max ? len - done : d->max;
		if (lib.nbd_pread(d->h, (uint8_t *)buf + done, n, off + done,
				  0) < 0)
			return nbd_errno();
		done += n;
	}
	return 0;
}

static int nd_zero(void *ud, uint64_t off, uint64_t len)
{
	struct nbd_dest *d = ud;
	const uint64_t step = 1u << 30; /* NBD lengths are 32 bits */

	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < step ? len - done : step;
		if (lib.nbd_zero(d->h, n, off + done, 0) < 0)
			return nbd_errno();
		done += n;
	}
	return 0;
}

static int nd_flush(void *ud)
{
	struct nbd_dest *d = ud;

	return lib.nbd_flush(d->h, 0) < 0 ? nbd_errno() : 0;
}

static void nd_close(struct nbd_dest *d)
{
	if (d->h) {
		(void)lib.nbd_shutdown(d->h, 0);
		lib.nbd_close(d->h);
		d->h = NULL;
	}
}

/* Connects to URI, for writing (and reading, with DELTA). */
static int nd_open(struct nbd_dest *d, const char *uri)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	int64_t size, max;
	int rc = EXIT_OP;

	memset(d, 0, sizeof *d);
	d->uri = uri;
	pthread_once(&once, lib_load);
	if (lib.why[0]) {
		op_error("%s: %s", uri, lib.why);
		goto out;
	}
	if (!(d->h = lib.nbd_create())) {
		op_error("%s: cannot make an NBD handle: %s", uri,
			 lib.nbd_get_error());
		goto out;
	}
	if (lib.nbd_supports_uri(d->h) != 1)
		op_error("%s: this libnbd cannot open NBD URIs", uri);
	else if (lib.nbd_connect_uri(d->h, uri) < 0)
		op_error("%s: cannot connect: %s", uri, lib.nbd_get_error());
	else if (lib.nbd_is_read_only(d->h) == 1)
		op_error("%s: the NBD export is read-only", uri);
	else if ((size = lib.nbd_get_size(d->h)) < 0)
		op_error("%s: cannot get the export's size: %s", uri,
			 lib.nbd_get_error());
	else
		rc = 0;
	if (rc)
		goto out;
	d->size = (uint64_t)size;
	max = lib.nbd_get_block_size(d->h, LIBNBD_SIZE_MAXIMUM);
	d->max = max > 0 && max < (4 << 20) ? (size_t)max : 4u << 20;
	d->can_zero = lib.nbd_can_zero(d->h) == 1;
out:
	return rc;
}

/* ---- the commands ----------------------------------------------------- */

/* 1 for an NBD URI, 0 for a path, -1 for another "scheme://". */
static int uri_kind(const char *s)
{
	static const char *const nbd[] = { "nbd://", "nbds://", "nbd+unix://",
					   "nbds+unix://", "nbd+vsock://",
					   "nbds+vsock://" };
	const char *colon = strstr(s, "://");
	int kind = 0;

	/* "scheme://" at the start; a path may hold "://" further on. */
	if (colon && s + strspn(s, "abcdefghijklmnopqrstuvwxyz+") == colon) {
		kind = -1;
		for (size_t i = 0; i < sizeof nbd / sizeof nbd[0]; i++)
			if (strncmp(s, nbd[i], strlen(nbd[i])) == 0)
				kind = 1;
	}
	return kind;
}

static int parse_rate(const char *s, uint64_t *out)
{
	int rc = arg_size("--bandwidth", s, out);

	if (!rc && *out == 0)
		rc = usage_error("bad --bandwidth '%s': must be above 0 (bytes "
				 "per second, with K, M or G)", s);
	return rc;
}

/* Opens DEST (a path or "-") for writing, reading too with DELTA. Sets
 * *CREATED when the file was made here. */
static int open_dest(const char *dest, int delta, int *fd, int *created)
{
	struct stat st;
	int exists, rc = EXIT_OP;

	*created = 0;
	*fd = -1;
	if (strcmp(dest, "-") == 0) {
		if (delta)
			op_error("standard output: a delta restore reads DEST "
				 "back; name a file or device");
		else if (isatty(STDOUT_FILENO))
			op_error("refusing to write a disk image to a "
				 "terminal; redirect standard output");
		else
			rc = 0;
		if (!rc)
			*fd = STDOUT_FILENO;
		goto out;
	}
	exists = stat(dest, &st) == 0;
	if (!exists && errno != ENOENT) {
		op_error("%s: %s", dest, strerror(errno));
		goto out;
	}
	if (exists && S_ISDIR(st.st_mode)) {
		op_error("%s: is a directory", dest);
		goto out;
	}
	if (!exists && delta) {
		op_error("%s: does not exist: a delta restore writes only what "
			 "differs from an earlier copy, so DEST must hold one",
			 dest);
		goto out;
	}
	if (exists && delta && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		op_error("%s: a delta restore reads DEST back: it must be a "
			 "regular file or a block device", dest);
		goto out;
	}
	if (exists) {
		*fd = open(dest, (delta ? O_RDWR : O_WRONLY) | O_CLOEXEC);
	} else {
		*fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		*created = *fd >= 0;
	}
	if (*fd < 0) {
		op_error("%s: %s", dest, strerror(errno));
		goto out;
	}
	if (isatty(*fd)) {
		op_error("%s: is a terminal: refusing to write a disk image "
			 "to it", dest);
		close(*fd);
		*fd = -1;
		goto out;
	}
	rc = 0;
out:
	return rc;
}

static int run(int argc, char **argv, int is_restore)
{
	const char *bw_s = NULL;
	int delta = 0;
	struct optdef defs[] = {
		{ "delta", OPT_FLAG, NULL, &delta },
		{ "bandwidth", OPT_VALUE, &bw_s, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const rnames[] = { "STORE", "REPLICA@RP", "DEST" };
	static const char *const enames[] = { "STORE", "REPLICA@RP", "OUT" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	char name[BV_NAME_MAX + 1];
	struct progress pr;
	struct nbd_dest nd = { 0 };
	bv_restore_target t;
	bv_restore_opts o = { 0 };
	bv_restore_result res = { 0 };
	bv_reader *r = NULL;
	bv_store *s = NULL;
	uint64_t rp = 0, size;
	int npos, rc, fd = -1, created = 0, kind;
	const char *dest = NULL;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	progress_init(&pr, is_restore ? "restore" : "export");
	rc = parse_opts(argc, argv, is_restore ? defs : NULL, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 3, 3, is_restore ? rnames : enames);
	if (!rc)
		rc = arg_replica_rp(pos[1], name, &rp);
	if (!rc && bw_s)
		rc = parse_rate(bw_s, &o.bandwidth);
	if (rc)
		goto out;
	dest = pos[2];
	kind = uri_kind(dest);
	if (kind < 0) {
		rc = usage_error("bad DEST '%s': not an NBD URI (nbd://, "
				 "nbd+unix://, ...) nor a path", dest);
		goto out;
	}
	if (strcmp(dest, "-") == 0 && !delta && isatty(STDOUT_FILENO)) {
		rc = op_error("refusing to write a disk image to a terminal; "
			      "redirect standard output");
		goto out;
	}
	if ((rc = open_store_reading(pos[0], &s)))
		goto out;
	/* The RP first: a missing one must create nothing. */
	if ((rc = bv_reader_open(s, name, rp, &r)) < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	size = bv_reader_size(r);
	bv_reader_close(r);
	r = NULL;
	o.delta = delta;
	o.name = strcmp(dest, "-") == 0 ? "standard output" : dest;
	o.progress = progress_cb;
	o.ud = &pr;
	/* A reader of standard output that goes away is an error to
	 * report, not a signal to die of. */
	signal(SIGPIPE, SIG_IGN);
	if (kind == 1) {
		if ((rc = nd_open(&nd, dest)))
			goto out;
		if (nd.size < size) {
			rc = op_error("%s: the NBD export holds %" PRIu64 " "
				      "bytes, replica %s needs %" PRIu64, dest,
				      nd.size, name, size);
			goto out;
		}
		t = (bv_restore_target){
			.name = dest, .size = nd.size, .ud = &nd,
			.write = nd_write, .read = nd_read,
			.zero = nd.can_zero ? nd_zero : NULL,
			.flush = lib.nbd_can_flush(nd.h) == 1 ? nd_flush : NULL,
		};
		rc = bv_restore_to(s, name, rp, &t, &o, &res);
	} else {
		if ((rc = open_dest(dest, delta, &fd, &created)))
			goto out;
		rc = bv_restore_fd(s, name, rp, fd, &o, &res);
	}
	progress_end(&pr);
	if (rc < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	if (is_restore) {
		char a[32], b[32];
		/* Not on standard output when the image goes there. */
		FILE *f = strcmp(dest, "-") == 0 ? stderr : stdout;
		human(a, sizeof a, (double)res.size);
		human(b, sizeof b, (double)res.written_bytes);
		fprintf(f, "restored %s to %s: %s, wrote %" PRIu64 " of %"
			PRIu64 " chunks (%s)", pos[1], o.name, a,
			res.written_chunks, res.chunks, b);
		if (delta)
			fprintf(f, ", skipped %" PRIu64 " unchanged",
				res.skipped_chunks);
		fprintf(f, "\n");
	}
	rc = 0;
out:
	progress_end(&pr);
	nd_close(&nd);
	if (fd >= 0 && fd != STDOUT_FILENO)
		close(fd);
	if (rc && created)
		unlink(dest);
	bv_reader_close(r);
	bv_store_close(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}

int cmd_restore(int argc, char **argv)
{
	return run(argc, argv, 1);
}

int cmd_export(int argc, char **argv)
{
	return run(argc, argv, 0);
}
