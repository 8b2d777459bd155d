/*
 * fsproto.h: the protocol between `bvault files` (the parent, which holds
 * the store) and bvault-fsread (the child, which parses the guest file
 * system in a sandbox). tools/FILES.md describes it in full.
 *
 * Two pipes, both little-endian, both framed:
 *   child -> parent (child fd FSR_FD_OUT): frames of a 8-byte header,
 *     u32 type, u32 payload length (at most FSR_FRAME_MAX), then the
 *     payload. The parent checks every length and field: the child is
 *     untrusted.
 *   parent -> child (child fd FSR_FD_IN): only answers to FSR_READ, an
 *     8-byte header, u32 status (0, or an errno), u32 length (the length
 *     asked for when status is 0, else 0), then the bytes.
 */
#ifndef BV_FSPROTO_H
#define BV_FSPROTO_H

#include <stdint.h>
#include <string.h>

/* The child's file descriptors: all it has (stdin, stdout and stderr are
 * closed; sanitizer builds keep stderr for their reports). */
#define FSR_FD_IN 3
#define FSR_FD_OUT 4

#define FSR_FRAME_MAX (1u << 20) /* payload bytes of one frame */
#define FSR_READ_MAX (1u << 20)  /* bytes of one disk read */
#define FSR_NAME_MAX 4096        /* bytes of an entry's name */
#define FSR_TARGET_MAX 4096      /* bytes of a symlink's target */
#define FSR_MSG_MAX 1024         /* bytes of an error or a report */

enum fsr_type {
	/* u64 offset, u32 length: the child wants partition bytes; the
	 * parent answers on the other pipe. */
	FSR_READ = 1,
	/* the file system found: a short text ("ext2/3/4", "NTFS") */
	FSR_FSTYPE = 2,
	/* one directory entry (ls): FSR_ENTRY_HDR bytes, the name, the
	 * symlink target */
	FSR_ENTRY = 3,
	/* get: u64, the size of the file whose bytes follow */
	FSR_FILE = 4,
	/* get: the next bytes of the file, in order */
	FSR_DATA = 5,
	/* the end of a successful answer; no payload */
	FSR_DONE = 6,
	/* the request failed: a text naming the object and what is wrong */
	FSR_ERROR = 7,
	/* a text the parent shows as a warning (a journal not replayed) */
	FSR_WARN = 8,
	/* the sandbox as the child sees it (--report-sandbox) */
	FSR_SANDBOX = 9,
};

enum fsr_kind {
	FSR_KIND_FILE = 1,
	FSR_KIND_DIR = 2,
	FSR_KIND_SYMLINK = 3,
	FSR_KIND_CHAR = 4,
	FSR_KIND_BLOCK = 5,
	FSR_KIND_FIFO = 6,
	FSR_KIND_SOCKET = 7,
	FSR_KIND_OTHER = 8, /* an NTFS reparse point, an unknown type */
};

/* FSR_ENTRY: u8 kind, 3 bytes zero, u32 mode (permission bits), u64 size,
 * i64 mtime (seconds since 1970), u32 name length (1..FSR_NAME_MAX),
 * u32 target length (0..FSR_TARGET_MAX), then the name and the target
 * (no NUL, no '/' in the name). */
#define FSR_ENTRY_HDR 32u

static inline void fsr_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void fsr_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t fsr_get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t fsr_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#endif
