/*
 * imgfmt.h: telling a raw disk image from a container format (qcow2,
 * VMDK, VHDX, VHD, VDI) by the magic at its start. bvault-agent and
 * bvault mkstream read sources as raw bytes; a container's bytes are its
 * metadata, so backing one up would store the wrong disk without an
 * error. They refuse such a file and name how to serve it raw
 * (qemu-nbd). Pure functions: thread-safe, no allocation.
 */
#ifndef BV_IMGFMT_H
#define BV_IMGFMT_H

#include <stddef.h>
#include <stdint.h>

/* The bytes imgfmt_detect wants from the start of the file. */
#define IMGFMT_HEAD 512

/* The container format whose magic starts HEAD (its first N bytes, fewer
 * than IMGFMT_HEAD for a short file), as qemu-img names it ("qcow2",
 * "vmdk", "vhdx", "vpc", "vdi"), or NULL: no known magic (taken as
 * raw). The string is static. */
const char *imgfmt_detect(const uint8_t *head, size_t n);

/* Reads the start of FD (at offset 0, pread: the file position is left
 * alone) and returns imgfmt_detect's answer; NULL also when the read
 * fails (the caller's own reads will then report it). */
const char *imgfmt_detect_fd(int fd);

#endif
