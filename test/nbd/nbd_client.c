/*
 * nbd_client.c: the NBD client checks of the nbd tests that the libnbd
 * tools cannot make (the test/nbd scripts run it). Exit 0 when the check holds,
 * 1 with a message on stderr when not, 2 for a usage error.
 *
 *   nbd_client refused URI
 *       the export is read-only: a write, a write-zeroes and a trim sent
 *       anyway (libnbd's own checks off) each fail with EPERM or EROFS,
 *       and the connection still reads afterwards
 *   nbd_client hold URI FILE READY GO
 *       connects, checks that the size is FILE's, creates READY, waits
 *       (up to 300 s) until GO exists, then reads the whole export over
 *       the same connection and compares it with FILE: a connection
 *       keeps what it opened, whatever is committed meanwhile
 *   nbd_client write URI OFF LEN BYTE
 *       writes LEN bytes of BYTE at OFF with FUA, then flushes
 *   nbd_client unaligned URI
 *       a write and a write-zeroes not aligned to 512 bytes (libnbd's
 *       checks off) fail with EINVAL, and the connection still reads
 *   nbd_client view-create STORE NAME REPLICA RP
 *       makes view NAME of REPLICA@RP (RP a number or latest) through
 *       a read-only open of STORE, as bv_view_create allows
 *   nbd_client view-info STORE NAME
 *       prints "size WRITTEN_BYTES IN_USE" of view NAME
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bvault.h"

#define PIECE (1u << 20)

static struct nbd_handle *connect_uri(const char *uri)
{
	struct nbd_handle *h = nbd_create();

	if (!h) {
		fprintf(stderr, "nbd_create: %s\n", nbd_get_error());
		return NULL;
	}
	if (nbd_connect_uri(h, uri) == -1) {
		fprintf(stderr, "connect %s: %s\n", uri, nbd_get_error());
		nbd_close(h);
		return NULL;
	}
	return h;
}

static int refused_errno(const char *what)
{
	int e = nbd_get_errno();
	if (e == EPERM || e == EROFS) {
		fprintf(stderr, "%s refused as it should be: %s\n", what,
			nbd_get_error());
		return 0;
	}
	fprintf(stderr, "%s: failed with errno %d (%s), want EPERM or "
		"EROFS\n", what, e, nbd_get_error());
	return 1;
}

static int cmd_refused(const char *uri)
{
	struct nbd_handle *h = connect_uri(uri);
	char buf[512];
	int bad = 0;

	if (!h)
		return 1;
	if (nbd_is_read_only(h) != 1) {
		fprintf(stderr, "%s: not advertised read-only\n", uri);
		bad = 1;
	}
	/* Send what a careful client would not: the server must refuse. */
	nbd_set_strict_mode(h, 0);
	memset(buf, 0x5a, sizeof buf);
	if (nbd_pwrite(h, buf, sizeof buf, 0, 0) == 0) {
		fprintf(stderr, "%s: a write succeeded\n", uri);
		bad = 1;
	} else {
		bad |= refused_errno("write");
	}
	if (nbd_zero(h, 4096, 0, 0) == 0) {
		fprintf(stderr, "%s: a write-zeroes succeeded\n", uri);
		bad = 1;
	} else {
		bad |= refused_errno("write-zeroes");
	}
	if (nbd_trim(h, 4096, 0, 0) == 0) {
		fprintf(stderr, "%s: a trim succeeded\n", uri);
		bad = 1;
	} else {
		bad |= refused_errno("trim");
	}
	if (nbd_pread(h, buf, sizeof buf, 0, 0) == -1) {
		fprintf(stderr, "%s: no read after the refusals: %s\n", uri,
			nbd_get_error());
		bad = 1;
	}
	nbd_shutdown(h, 0);
	nbd_close(h);
	return bad;
}

static int cmd_hold(const char *uri, const char *file, const char *ready,
		    const char *go)
{
	struct nbd_handle *h = NULL;
	char *a = malloc(PIECE), *b = malloc(PIECE);
	int fd = -1, bad = 1;
	struct stat st;
	int64_t size;

	if (!a || !b)
		goto cleanup;
	if ((fd = open(file, O_RDONLY)) < 0 || fstat(fd, &st)) {
		perror(file);
		goto cleanup;
	}
	if (!(h = connect_uri(uri)))
		goto cleanup;
	size = nbd_get_size(h);
	if (size != st.st_size) {
		fprintf(stderr, "%s: size %" PRId64 ", %s has %jd\n", uri,
			size, file, (intmax_t)st.st_size);
		goto cleanup;
	}
	close(open(ready, O_WRONLY | O_CREAT, 0600));
	for (int i = 0; access(go, F_OK) != 0; i++) {
		if (i == 3000) {
			fprintf(stderr, "%s never appeared\n", go);
			goto cleanup;
		}
		usleep(100000);
	}
	for (int64_t off = 0; off < size; off += PIECE) {
		size_t n = size - off < PIECE ? (size_t)(size - off) : PIECE;
		if (nbd_pread(h, a, n, (uint64_t)off, 0) == -1) {
			fprintf(stderr, "%s: read at %" PRId64 ": %s\n", uri,
				off, nbd_get_error());
			goto cleanup;
		}
		if (pread(fd, b, n, off) != (ssize_t)n) {
			perror(file);
			goto cleanup;
		}
		if (memcmp(a, b, n)) {
			fprintf(stderr, "%s: differs from %s in the MiB at "
				"%" PRId64 "\n", uri, file, off);
			goto cleanup;
		}
	}
	bad = 0;
cleanup:
	if (h) {
		nbd_shutdown(h, 0);
		nbd_close(h);
	}
	if (fd >= 0)
		close(fd);
	free(a);
	free(b);
	return bad;
}

static int cmd_write(const char *uri, uint64_t off, uint64_t len, int byte)
{
	struct nbd_handle *h = connect_uri(uri);
	char *buf = NULL;
	int bad = 1;

	if (!h)
		return 1;
	if (!(buf = malloc(len)))
		goto cleanup;
	memset(buf, byte, len);
	if (nbd_pwrite(h, buf, len, off, LIBNBD_CMD_FLAG_FUA) == -1 ||
	    nbd_flush(h, 0) == -1) {
		fprintf(stderr, "%s: write %" PRIu64 "+%" PRIu64 ": %s\n", uri,
			off, len, nbd_get_error());
		goto cleanup;
	}
	bad = 0;
cleanup:
	nbd_shutdown(h, 0);
	nbd_close(h);
	free(buf);
	return bad;
}

static int cmd_unaligned(const char *uri)
{
	struct nbd_handle *h = connect_uri(uri);
	char buf[1024];
	int bad = 0;

	if (!h)
		return 1;
	nbd_set_strict_mode(h, 0);
	memset(buf, 0x77, sizeof buf);
	if (nbd_pwrite(h, buf, 100, 1000, 0) == 0 ||
	    nbd_get_errno() != EINVAL) {
		fprintf(stderr, "%s: an unaligned write did not fail with "
			"EINVAL: %s\n", uri, nbd_get_error());
		bad = 1;
	}
	if (nbd_zero(h, 700, 512, 0) == 0 || nbd_get_errno() != EINVAL) {
		fprintf(stderr, "%s: an unaligned write-zeroes did not fail "
			"with EINVAL: %s\n", uri, nbd_get_error());
		bad = 1;
	}
	if (nbd_pread(h, buf, sizeof buf, 0, 0) == -1) {
		fprintf(stderr, "%s: no read after the refusals: %s\n", uri,
			nbd_get_error());
		bad = 1;
	}
	nbd_shutdown(h, 0);
	nbd_close(h);
	return bad;
}

static int cmd_view(int argc, char **argv)
{
	bv_open_opts o = { .read_only = 1 };
	bv_store *s = NULL;
	bv_view_info vi;
	int rc;

	umask(077);
	if ((rc = bv_store_open(argv[2], &o, &s)))
		goto cleanup;
	if (strcmp(argv[1], "view-create") == 0 && argc == 6) {
		uint64_t rp = strcmp(argv[5], "latest") == 0 ?
			      BV_RP_LATEST : strtoull(argv[5], NULL, 10);
		rc = bv_view_create(s, argv[3], argv[4], rp);
	} else {
		if ((rc = bv_view_info_get(s, argv[3], &vi)) == 0)
			printf("%" PRIu64 " %" PRIu64 " %d\n", vi.size,
			       vi.written_bytes, vi.in_use);
	}
cleanup:
	if (rc)
		fprintf(stderr, "%s: %s\n", argv[1], bv_store_error(s));
	bv_store_close(s);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "refused") == 0)
		return cmd_refused(argv[2]);
	if (argc == 6 && strcmp(argv[1], "hold") == 0)
		return cmd_hold(argv[2], argv[3], argv[4], argv[5]);
	if (argc == 6 && strcmp(argv[1], "write") == 0)
		return cmd_write(argv[2], strtoull(argv[3], NULL, 0),
				 strtoull(argv[4], NULL, 0),
				 (int)strtol(argv[5], NULL, 0));
	if (argc == 3 && strcmp(argv[1], "unaligned") == 0)
		return cmd_unaligned(argv[2]);
	if ((argc == 6 && strcmp(argv[1], "view-create") == 0) ||
	    (argc == 4 && strcmp(argv[1], "view-info") == 0))
		return cmd_view(argc, argv);
	fprintf(stderr, "usage: nbd_client refused URI | hold URI FILE READY "
		"GO | write URI OFF LEN BYTE | unaligned URI | view-create "
		"STORE NAME REPLICA RP | view-info STORE NAME\n");
	return 2;
}
