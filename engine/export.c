/*
 * export.c: bv_export, a restore (restore.c) to a path: the RP is found
 * first, so that a missing one creates nothing; a regular file is made
 * (0600) or truncated, a device or FIFO opened as it is; a file made here
 * is removed when the restore fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

int bv_export(bv_store *s, const char *replica, uint64_t rp, const char *path,
	      bv_progress_fn progress, void *ud)
{
	bv_restore_opts o = { .name = path, .progress = progress, .ud = ud };
	struct bv_rrec rr;
	struct stat st;
	uint64_t version, size, rp_out;
	int fd = -1, created = 0, rc;

	bv_fail(0, "%s", "");
	if ((rc = bv_replica_at(s, replica, rp, &rr, &version, &size, &rp_out)))
		goto out;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		fd = open(path, O_WRONLY | O_CLOEXEC);
	} else {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			created = 1;
		else if (errno == EEXIST)
			fd = open(path, O_WRONLY | O_CLOEXEC);
	}
	if (fd < 0) {
		rc = bv_fail(-errno, "export %s: %s", path, strerror(errno));
		goto out;
	}
	rc = bv_restore_fd(s, replica, rp, fd, &o, NULL);
out:
	if (fd >= 0)
		close(fd);
	if (rc && created)
		unlink(path);
	return rc;
}
