/*
 * fsread_ext.c: ext2/3/4 for bvault-fsread, through libext2fs opened
 * read-only on an io_manager of our own whose every read is a request to
 * the parent (fsr_pread). Writes are refused at the io_manager, so nothing
 * the library does can change the RP (it cannot anyway: the parent only
 * answers reads).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <et/com_err.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2fs.h>

#include "fsread.h"

#define TARGET_BUF (FSR_TARGET_MAX + 64)

/* ---- the io_manager ---------------------------------------------------- */

static struct struct_io_manager bv_io_manager;

static errcode_t bvio_open(const char *name, int flags, io_channel *out)
{
	io_channel ch = NULL;
	errcode_t err = 0;

	if (flags & IO_FLAG_RW)
		return EROFS;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return ENOMEM;
	ch->name = strdup(name);
	if (!ch->name) {
		err = ENOMEM;
		goto cleanup;
	}
	ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	ch->manager = &bv_io_manager;
	ch->block_size = 1024;
	ch->refcount = 1;
	*out = ch;
	ch = NULL;
cleanup:
	free(ch);
	return err;
}

static errcode_t bvio_close(io_channel ch)
{
	if (--ch->refcount > 0)
		return 0;
	free(ch->name);
	free(ch);
	return 0;
}

static errcode_t bvio_set_blksize(io_channel ch, int blksize)
{
	if (blksize <= 0 || blksize > (64 << 10))
		return EXT2_ET_INVALID_ARGUMENT;
	ch->block_size = blksize;
	return 0;
}

/* COUNT blocks, or -COUNT bytes (the io_manager convention). */
static errcode_t bvio_read_blk64(io_channel ch, unsigned long long block,
				 int count, void *data)
{
	uint64_t bs = (uint64_t)ch->block_size, len, off;
	int rc;

	len = count < 0 ? (uint64_t)-(int64_t)count : (uint64_t)count * bs;
	if (block > UINT64_MAX / bs)
		return EXT2_ET_SHORT_READ;
	off = block * bs;
	if (off > fsr_size || len > fsr_size - off)
		return EXT2_ET_SHORT_READ;
	rc = fsr_pread(data, (size_t)len, off);
	return rc < 0 ? (errcode_t)-rc : 0;
}

static errcode_t bvio_read_blk(io_channel ch, unsigned long block, int count,
			       void *data)
{
	return bvio_read_blk64(ch, block, count, data);
}

static errcode_t bvio_write_blk(io_channel ch, unsigned long block, int count,
				const void *data)
{
	(void)ch, (void)block, (void)count, (void)data;
	return EROFS;
}

static errcode_t bvio_write_blk64(io_channel ch, unsigned long long block,
				  int count, const void *data)
{
	(void)ch, (void)block, (void)count, (void)data;
	return EROFS;
}

static errcode_t bvio_write_byte(io_channel ch, unsigned long off, int count,
				 const void *data)
{
	(void)ch, (void)off, (void)count, (void)data;
	return EROFS;
}

static errcode_t bvio_flush(io_channel ch)
{
	(void)ch;
	return 0;
}

static errcode_t bvio_set_option(io_channel ch, const char *opt,
				 const char *arg)
{
	(void)ch, (void)opt, (void)arg;
	return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t bvio_get_stats(io_channel ch, io_stats *st)
{
	(void)ch;
	*st = NULL;
	return 0;
}

static struct struct_io_manager bv_io_manager = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "bvault RP reader",
	.open = bvio_open,
	.close = bvio_close,
	.set_blksize = bvio_set_blksize,
	.read_blk = bvio_read_blk,
	.write_blk = bvio_write_blk,
	.flush = bvio_flush,
	.write_byte = bvio_write_byte,
	.set_option = bvio_set_option,
	.get_stats = bvio_get_stats,
	.read_blk64 = bvio_read_blk64,
	.write_blk64 = bvio_write_blk64,
};

void fsr_ext_init(void)
{
	initialize_ext2_error_table();
}

/* ---- entries ------------------------------------------------------------- */

static int kind_of(unsigned mode)
{
	if (LINUX_S_ISREG(mode))
		return FSR_KIND_FILE;
	if (LINUX_S_ISDIR(mode))
		return FSR_KIND_DIR;
	if (LINUX_S_ISLNK(mode))
		return FSR_KIND_SYMLINK;
	if (LINUX_S_ISCHR(mode))
		return FSR_KIND_CHAR;
	if (LINUX_S_ISBLK(mode))
		return FSR_KIND_BLOCK;
	if (LINUX_S_ISFIFO(mode))
		return FSR_KIND_FIFO;
	if (LINUX_S_ISSOCK(mode))
		return FSR_KIND_SOCKET;
	return FSR_KIND_OTHER;
}

static errcode_t read_inode(ext2_filsys fs, ext2_ino_t ino,
			    struct ext2_inode_large *in)
{
	memset(in, 0, sizeof(*in));
	return ext2fs_read_inode_full(fs, ino, (struct ext2_inode *)in,
				      sizeof(*in));
}

/* Seconds since 1970: the 32 signed bits, and the epoch bits of a large
 * inode's extra field (past 2038). */
static int64_t mtime_of(ext2_filsys fs, const struct ext2_inode_large *in)
{
	int64_t t = (int32_t)in->i_mtime;
	size_t need = offsetof(struct ext2_inode_large, i_mtime_extra) +
		      sizeof(in->i_mtime_extra) - EXT2_GOOD_OLD_INODE_SIZE;

	if (EXT2_INODE_SIZE(fs->super) > EXT2_GOOD_OLD_INODE_SIZE &&
	    in->i_extra_isize >= need)
		t += (int64_t)(in->i_mtime_extra & 3) << 32;
	return t;
}

/* The target of symlink INO into BUF (TARGET_BUF bytes); its length, cut
 * at FSR_TARGET_MAX. */
static size_t link_target(ext2_filsys fs, ext2_ino_t ino,
			  struct ext2_inode_large *in, char *buf)
{
	uint64_t size = EXT2_I_SIZE(in);
	size_t want = size > FSR_TARGET_MAX ? FSR_TARGET_MAX : (size_t)size;
	unsigned int got = 0;
	ext2_file_t f = NULL;

	if (ext2fs_is_fast_symlink((struct ext2_inode *)in)) {
		size_t max = sizeof(in->i_block);

		if (want > max)
			want = max;
		memcpy(buf, in->i_block, want);
		return strnlen(buf, want);
	}
	if (in->i_flags & EXT4_INLINE_DATA_FL) {
		size_t isz = 0;

		if (ext2fs_inline_data_size(fs, ino, &isz) ||
		    isz > TARGET_BUF ||
		    ext2fs_inline_data_get(fs, ino, (struct ext2_inode *)in,
					   buf, &isz))
			return 0;
		return isz < want ? isz : want;
	}
	if (ext2fs_file_open2(fs, ino, (struct ext2_inode *)in, 0, &f))
		return 0;
	if (ext2fs_file_read(f, buf, (unsigned)want, &got))
		got = 0;
	ext2fs_file_close(f);
	return got;
}

static int send_entry(ext2_filsys fs, ext2_ino_t ino, const char *name,
		      size_t len)
{
	struct ext2_inode_large in;
	char *target = NULL;
	size_t tlen = 0;
	int kind, rc;
	errcode_t err = read_inode(fs, ino, &in);

	/* A damaged inode costs its own entry, not the listing: the rest
	 * of the directory is what a recovery needs. */
	if (err)
		return fsr_say(FSR_WARN, "%.*s (inode %u): cannot read the "
			       "inode: %s; left out", (int)len, name, ino,
			       error_message(err));
	kind = kind_of(in.i_mode);
	if (kind == FSR_KIND_SYMLINK) {
		target = malloc(TARGET_BUF);
		if (!target)
			return -ENOMEM;
		tlen = link_target(fs, ino, &in, target);
	}
	rc = fsr_entry(kind, in.i_mode, EXT2_I_SIZE(&in), mtime_of(fs, &in),
		       name, len, target, tlen);
	free(target);
	return rc;
}

static int dir_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *d,
		  int offset, int blocksize, char *buf, void *ud)
{
	struct fsr_dlist *l = ud;
	int len = ext2fs_dirent_name_len(d);

	(void)dir, (void)entry, (void)offset, (void)blocksize, (void)buf;
	if (d->inode == 0 || len <= 0)
		return 0;
	if ((len == 1 && d->name[0] == '.') ||
	    (len == 2 && d->name[0] == '.' && d->name[1] == '.'))
		return 0;
	if (memchr(d->name, '/', (size_t)len) || memchr(d->name, 0, (size_t)len))
		return 0; /* a name no path could reach */
	return fsr_dlist_add(l, d->name, (size_t)len, d->inode) < 0
		       ? DIRENT_ABORT : 0;
}

static int ls(ext2_filsys fs, const char *path)
{
	struct fsr_dlist l = { 0 };
	struct ext2_inode_large in;
	ext2_ino_t ino;
	errcode_t err;
	size_t blen;
	const char *base;
	int rc = 0;

	err = ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino);
	if (err) {
		rc = fsr_say(FSR_ERROR, "%s: no such file or directory (%s)",
			     path, error_message(err));
		goto cleanup;
	}
	err = read_inode(fs, ino, &in);
	if (err) {
		rc = fsr_say(FSR_ERROR, "%s: cannot read its inode %u: %s", path,
			     ino, error_message(err));
		goto cleanup;
	}
	if (!LINUX_S_ISDIR(in.i_mode)) {
		base = fsr_basename(path, &blen);
		rc = send_entry(fs, ino, base, blen);
		if (rc == 0)
			rc = fsr_send(FSR_DONE, NULL, 0);
		goto cleanup;
	}
	err = ext2fs_dir_iterate2(fs, ino, 0, NULL, dir_cb, &l);
	if (err) {
		rc = fsr_say(FSR_ERROR, "%s: cannot read the directory: %s",
			     path, error_message(err));
		goto cleanup;
	}
	fsr_dlist_sort(&l);
	for (size_t i = 0; i < l.n && rc == 0; i++)
		rc = send_entry(fs, (ext2_ino_t)l.v[i].ref, l.v[i].name,
				l.v[i].len);
	if (rc == 0)
		rc = fsr_send(FSR_DONE, NULL, 0);
cleanup:
	fsr_dlist_free(&l);
	return rc < 0 ? rc : 0;
}

static const char *kind_name(int kind)
{
	switch (kind) {
	case FSR_KIND_DIR: return "a directory";
	case FSR_KIND_SYMLINK: return "a symlink";
	case FSR_KIND_CHAR: return "a character device";
	case FSR_KIND_BLOCK: return "a block device";
	case FSR_KIND_FIFO: return "a FIFO";
	case FSR_KIND_SOCKET: return "a socket";
	default: return "not a regular file";
	}
}

static int get(ext2_filsys fs, const char *path)
{
	struct ext2_inode_large in;
	ext2_file_t f = NULL;
	uint8_t *buf = NULL, hdr[8];
	uint64_t size, done = 0;
	ext2_ino_t ino;
	errcode_t err;
	int kind, rc = 0;

	err = ext2fs_namei_follow(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino);
	if (err) {
		rc = fsr_say(FSR_ERROR, "%s: no such file (%s)", path,
			     error_message(err));
		goto cleanup;
	}
	err = read_inode(fs, ino, &in);
	if (err) {
		rc = fsr_say(FSR_ERROR, "%s: cannot read its inode %u: %s", path,
			     ino, error_message(err));
		goto cleanup;
	}
	kind = kind_of(in.i_mode);
	if (kind != FSR_KIND_FILE) {
		rc = fsr_say(FSR_ERROR, "%s: is %s; files get copies one "
			     "regular file", path, kind_name(kind));
		goto cleanup;
	}
	size = EXT2_I_SIZE(&in);
	err = ext2fs_file_open2(fs, ino, (struct ext2_inode *)&in, 0, &f);
	if (err) {
		rc = fsr_say(FSR_ERROR, "%s: cannot open: %s", path,
			     error_message(err));
		goto cleanup;
	}
	buf = malloc(FSR_FRAME_MAX);
	if (!buf) {
		rc = fsr_say(FSR_ERROR, "%s: %s", path, strerror(ENOMEM));
		goto cleanup;
	}
	fsr_put64(hdr, size);
	rc = fsr_send(FSR_FILE, hdr, 8);
	while (rc == 0 && done < size) {
		unsigned int got = 0;
		unsigned int want = size - done < FSR_FRAME_MAX
					    ? (unsigned)(size - done)
					    : FSR_FRAME_MAX;

		err = ext2fs_file_read(f, buf, want, &got);
		if (err || got == 0) {
			rc = fsr_say(FSR_ERROR, "%s: read failed at byte %llu "
				     "of %llu: %s", path,
				     (unsigned long long)done,
				     (unsigned long long)size,
				     err ? error_message(err)
					 : "the file ends early");
			goto cleanup;
		}
		rc = fsr_send(FSR_DATA, buf, got);
		done += got;
	}
	if (rc == 0)
		rc = fsr_send(FSR_DONE, NULL, 0);
cleanup:
	if (f)
		ext2fs_file_close(f);
	free(buf);
	return rc < 0 ? rc : 0;
}

int fsr_ext_run(int mode, const char *path)
{
	ext2_filsys fs = NULL;
	errcode_t err;
	int rc;

	err = ext2fs_open2("bvault", NULL, EXT2_FLAG_64BITS, 0, 0,
			   &bv_io_manager, &fs);
	if (err) {
		rc = fsr_say(FSR_ERROR, "ext2/3/4 file system does not open: "
			     "%s", error_message(err));
		goto cleanup;
	}
	rc = fsr_send(FSR_FSTYPE, "ext2/3/4", 8);
	if (rc == 0 && ext2fs_has_feature_journal_needs_recovery(fs->super))
		rc = fsr_say(FSR_WARN, "the ext journal was not replayed (a "
			     "crash-consistent RP): what it holds of the last "
			     "changes is not shown");
	if (rc < 0)
		goto cleanup;
	rc = mode == FSR_MODE_LS ? ls(fs, path) : get(fs, path);
cleanup:
	if (fs)
		ext2fs_close_free(&fs);
	return rc;
}
