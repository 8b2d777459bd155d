/*
 * fsread_ntfs.c: NTFS for bvault-fsread, through libntfs-3g mounted
 * read-only (NTFS_MNT_RDONLY) on a device of our own
 * (ntfs_device_operations) whose reads are requests to the parent
 * (fsr_pread) and whose writes are refused.
 *
 * libntfs-3g rather than libfsntfs: it is what Debian's ntfs-3g tools
 * (mkntfs, ntfscp, which the tests make images with) are built on, its
 * device operations are a plain table we can fill without a further
 * library (libfsntfs reads through a libbfio handle), and ntfs-3g-dev is
 * packaged and kept current in every Debian release.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/unistr.h>
#include <ntfs-3g/volume.h>

#include "fsread.h"

/* ---- the device ------------------------------------------------------- */

static s64 g_pos;

static int dev_open(struct ntfs_device *dev, int flags)
{
	if ((flags & O_ACCMODE) != O_RDONLY) {
		errno = EROFS;
		return -1;
	}
	NDevSetOpen(dev);
	NDevSetReadOnly(dev);
	g_pos = 0;
	return 0;
}

static int dev_close(struct ntfs_device *dev)
{
	NDevClearOpen(dev);
	return 0;
}

static s64 dev_seek(struct ntfs_device *dev, s64 off, int whence)
{
	s64 base;

	(void)dev;
	switch (whence) {
	case SEEK_SET: base = 0; break;
	case SEEK_CUR: base = g_pos; break;
	case SEEK_END: base = (s64)fsr_size; break;
	default: errno = EINVAL; return -1;
	}
	if ((off > 0 && base > INT64_MAX - off) || base + off < 0) {
		errno = EINVAL;
		return -1;
	}
	g_pos = base + off;
	return g_pos;
}

static s64 dev_pread(struct ntfs_device *dev, void *buf, s64 count, s64 off)
{
	uint64_t n;
	int rc;

	(void)dev;
	if (count < 0 || off < 0) {
		errno = EINVAL;
		return -1;
	}
	if ((uint64_t)off >= fsr_size)
		return 0;
	n = fsr_size - (uint64_t)off < (uint64_t)count
		    ? fsr_size - (uint64_t)off : (uint64_t)count;
	rc = fsr_pread(buf, (size_t)n, (uint64_t)off);
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return (s64)n;
}

static s64 dev_read(struct ntfs_device *dev, void *buf, s64 count)
{
	s64 n = dev_pread(dev, buf, count, g_pos);

	if (n > 0)
		g_pos += n;
	return n;
}

static s64 dev_write(struct ntfs_device *dev, const void *buf, s64 count)
{
	(void)dev, (void)buf, (void)count;
	errno = EROFS;
	return -1;
}

static s64 dev_pwrite(struct ntfs_device *dev, const void *buf, s64 count,
		      s64 off)
{
	(void)dev, (void)buf, (void)count, (void)off;
	errno = EROFS;
	return -1;
}

static int dev_sync(struct ntfs_device *dev)
{
	(void)dev;
	return 0;
}

static int dev_stat(struct ntfs_device *dev, struct stat *st)
{
	(void)dev;
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0400;
	st->st_size = (off_t)fsr_size;
	return 0;
}

static int dev_ioctl(struct ntfs_device *dev, unsigned long req, void *arg)
{
	(void)dev;
	switch (req) {
	case BLKGETSIZE64:
		*(uint64_t *)arg = fsr_size;
		return 0;
	case BLKSSZGET:
	case BLKBSZGET:
		*(int *)arg = 512;
		return 0;
	default:
		errno = ENOTTY;
		return -1;
	}
}

static struct ntfs_device_operations dev_ops = {
	.open = dev_open,
	.close = dev_close,
	.seek = dev_seek,
	.read = dev_read,
	.write = dev_write,
	.pread = dev_pread,
	.pwrite = dev_pwrite,
	.sync = dev_sync,
	.stat = dev_stat,
	.ioctl = dev_ioctl,
};

void fsr_ntfs_init(void)
{
	ntfs_log_set_handler(ntfs_log_handler_null);
}

/* ---- entries ---------------------------------------------------------- */

/* NTFS time (100 ns since 1601) to seconds since 1970, without
 * overflowing on a hostile value. */
static int64_t unix_time(ntfs_time t)
{
	int64_t v = sle64_to_cpu(t);

	return v / 10000000 - INT64_C(11644473600);
}

static int is_dir(ntfs_inode *ni)
{
	return (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) != 0;
}

static int send_entry(ntfs_inode *ni, const char *name, size_t len)
{
	int kind = is_dir(ni) ? FSR_KIND_DIR : FSR_KIND_FILE;
	int ro = (ni->flags & FILE_ATTR_READONLY) != 0;
	uint32_t mode;
	uint64_t size = 0;

	if (ni->flags & FILE_ATTR_REPARSE_POINT)
		kind = FSR_KIND_OTHER;
	if (kind == FSR_KIND_FILE) {
		ntfs_attr *na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);

		if (na) {
			size = na->data_size > 0 ? (uint64_t)na->data_size : 0;
			ntfs_attr_close(na);
		}
	}
	mode = kind == FSR_KIND_DIR ? (ro ? 0555 : 0755) : (ro ? 0444 : 0644);
	return fsr_entry(kind, mode, size, unix_time(ni->last_data_change_time),
			 name, len, NULL, 0);
}

struct fill {
	struct fsr_dlist l;
	int root;
	int err;
};

static int fill_cb(void *ud, const ntfschar *uname, const int ulen,
		   const int type, const s64 pos, const MFT_REF mref,
		   const unsigned dt)
{
	struct fill *f = ud;
	char *name = NULL;
	int len;

	(void)pos, (void)dt;
	if (type == FILE_NAME_DOS)
		return 0; /* the 8.3 alias of a name listed under its own */
	len = ntfs_ucstombs(uname, ulen, &name, 0);
	if (len <= 0) {
		free(name);
		return 0; /* a name that does not convert: left out */
	}
	if ((len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.') ||
	    (f->root && MREF(mref) < FILE_first_user && name[0] == '$') ||
	    memchr(name, '/', (size_t)len)) {
		free(name);
		return 0;
	}
	f->err = fsr_dlist_add(&f->l, name, (size_t)len, mref);
	free(name);
	return f->err ? -1 : 0;
}

static int ls(ntfs_volume *vol, const char *path)
{
	struct fill f = { .l = { 0 } };
	ntfs_inode *ni;
	s64 pos = 0;
	const char *base;
	size_t blen;
	int rc = 0;

	ni = ntfs_pathname_to_inode(vol, NULL, path);
	if (!ni) {
		rc = fsr_say(FSR_ERROR, "%s: no such file or directory (%s)",
			     path, strerror(errno));
		goto cleanup;
	}
	if (!is_dir(ni)) {
		base = fsr_basename(path, &blen);
		rc = send_entry(ni, base, blen);
		if (rc == 0)
			rc = fsr_send(FSR_DONE, NULL, 0);
		goto cleanup;
	}
	f.root = ni->mft_no == FILE_root;
	if (ntfs_readdir(ni, &pos, &f, fill_cb) != 0) {
		rc = fsr_say(FSR_ERROR, "%s: cannot read the directory: %s",
			     path, strerror(f.err ? -f.err : errno));
		goto cleanup;
	}
	fsr_dlist_sort(&f.l);
	for (size_t i = 0; i < f.l.n && rc == 0; i++) {
		ntfs_inode *e = ntfs_inode_open(vol, f.l.v[i].ref);

		if (!e) {
			/* its own entry lost, not the listing */
			rc = fsr_say(FSR_WARN, "%s: cannot read its MFT "
				     "record: %s; left out", f.l.v[i].name,
				     strerror(errno));
			continue;
		}
		rc = send_entry(e, f.l.v[i].name, f.l.v[i].len);
		ntfs_inode_close(e);
	}
	if (rc == 0)
		rc = fsr_send(FSR_DONE, NULL, 0);
cleanup:
	fsr_dlist_free(&f.l);
	if (ni)
		ntfs_inode_close(ni);
	return rc < 0 ? rc : 0;
}

static int get(ntfs_volume *vol, const char *path)
{
	ntfs_inode *ni;
	ntfs_attr *na = NULL;
	uint8_t *buf = NULL, hdr[8];
	uint64_t size, done = 0;
	int rc = 0;

	ni = ntfs_pathname_to_inode(vol, NULL, path);
	if (!ni) {
		rc = fsr_say(FSR_ERROR, "%s: no such file (%s)", path,
			     strerror(errno));
		goto cleanup;
	}
	if (is_dir(ni)) {
		rc = fsr_say(FSR_ERROR, "%s: is a directory; files get copies "
			     "one regular file", path);
		goto cleanup;
	}
	if (ni->flags & FILE_ATTR_REPARSE_POINT) {
		rc = fsr_say(FSR_ERROR, "%s: is a reparse point (a link or a "
			     "placeholder), not a regular file", path);
		goto cleanup;
	}
	na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
	if (!na || na->data_size < 0) {
		rc = fsr_say(FSR_ERROR, "%s: no readable data stream (%s)",
			     path, strerror(errno));
		goto cleanup;
	}
	size = (uint64_t)na->data_size;
	buf = malloc(FSR_FRAME_MAX);
	if (!buf) {
		rc = fsr_say(FSR_ERROR, "%s: %s", path, strerror(ENOMEM));
		goto cleanup;
	}
	fsr_put64(hdr, size);
	rc = fsr_send(FSR_FILE, hdr, 8);
	while (rc == 0 && done < size) {
		s64 want = size - done < FSR_FRAME_MAX ? (s64)(size - done)
						       : FSR_FRAME_MAX;
		s64 got = ntfs_attr_pread(na, (s64)done, want, buf);

		if (got <= 0) {
			rc = fsr_say(FSR_ERROR, "%s: read failed at byte %llu "
				     "of %llu: %s", path,
				     (unsigned long long)done,
				     (unsigned long long)size,
				     got < 0 ? strerror(errno)
					     : "the file ends early");
			goto cleanup;
		}
		rc = fsr_send(FSR_DATA, buf, (uint32_t)got);
		done += (uint64_t)got;
	}
	if (rc == 0)
		rc = fsr_send(FSR_DONE, NULL, 0);
cleanup:
	if (na)
		ntfs_attr_close(na);
	if (ni)
		ntfs_inode_close(ni);
	free(buf);
	return rc < 0 ? rc : 0;
}

int fsr_ntfs_run(int mode, const char *path)
{
	struct ntfs_device *dev;
	ntfs_volume *vol = NULL;
	int rc;

	dev = ntfs_device_alloc("bvault", 0, &dev_ops, NULL);
	if (!dev)
		return fsr_say(FSR_ERROR, "NTFS: %s", strerror(errno));
	vol = ntfs_device_mount(dev, NTFS_MNT_RDONLY);
	if (!vol) {
		rc = fsr_say(FSR_ERROR, "NTFS file system does not mount "
			     "read-only: %s", strerror(errno));
		if (NDevOpen(dev))
			dev_close(dev);
		ntfs_device_free(dev);
		return rc;
	}
	rc = fsr_send(FSR_FSTYPE, "NTFS", 4);
	if (rc == 0)
		rc = mode == FSR_MODE_LS ? ls(vol, path) : get(vol, path);
	ntfs_umount(vol, FALSE);
	return rc;
}
