/*
 * fsread.h: the parts of bvault-fsread (the sandboxed guest file-system
 * reader, tools/FILES.md): the byte source over the parent's pipe and the
 * framed answers (fsread.c), and one reader per file-system family
 * (fsread_ext.c over libext2fs, fsread_ntfs.c over libntfs-3g), kept in
 * files of their own because the two libraries' headers do not mix.
 */
#ifndef BV_FSREAD_H
#define BV_FSREAD_H

#include <stddef.h>
#include <stdint.h>

#include "fsproto.h"

enum fsr_mode { FSR_MODE_LS, FSR_MODE_GET };

/* The partition's size in bytes (given by the parent). */
extern uint64_t fsr_size;

/* Reads LEN bytes at OFF of the partition (through a small cache of
 * whole windows, so that a file system's block-sized reads do not each
 * cost a round trip). 0, or -errno: -EIO when the parent could not read
 * the RP or refused the range, -EPIPE when the parent is gone. */
int fsr_pread(void *buf, size_t len, uint64_t off);

/* One frame to the parent; 0 or -errno. */
int fsr_send(uint32_t type, const void *payload, uint32_t len);
/* FSR_ERROR or FSR_WARN with a formatted text (cut at FSR_MSG_MAX). */
__attribute__((format(printf, 2, 3)))
int fsr_say(uint32_t type, const char *fmt, ...);
/* One FSR_ENTRY. */
int fsr_entry(int kind, uint32_t mode, uint64_t size, int64_t mtime,
	      const char *name, size_t name_len, const char *target,
	      size_t target_len);

/* The readers: each answers MODE for PATH (ls: the directory's entries,
 * sorted by name, or the one entry of a file; get: FSR_FILE then the
 * bytes), ending with FSR_DONE, or sends FSR_ERROR. Returns 0 when the
 * answer went out (DONE or ERROR), -errno when the parent is gone.
 * fsr_*_init runs before the sandbox closes (library set-up). */
void fsr_ext_init(void);
int fsr_ext_run(int mode, const char *path);
void fsr_ntfs_init(void);
int fsr_ntfs_run(int mode, const char *path);

/* The last component of PATH (PATH itself when it has no '/'; "/" for
 * the root), for the entry of a file named outright. */
const char *fsr_basename(const char *path, size_t *len);

/* A growable list of directory entries, sorted by name before they are
 * sent. */
struct fsr_dent {
	char *name;
	size_t len;
	uint64_t ref; /* the inode number, or NTFS MFT reference */
};
struct fsr_dlist {
	struct fsr_dent *v;
	size_t n, cap;
};
/* 0, -ENOMEM, or -EFBIG past FSR_DIR_MAX entries. */
#define FSR_DIR_MAX (4u << 20)
int fsr_dlist_add(struct fsr_dlist *l, const char *name, size_t len,
		  uint64_t ref);
void fsr_dlist_sort(struct fsr_dlist *l);
void fsr_dlist_free(struct fsr_dlist *l);

#endif
