/*
 * view.h: what view.c shares with promote.c (and the engine tests that
 * reach internals). Not installed.
 */
#ifndef BV_ENGINE_VIEW_H
#define BV_ENGINE_VIEW_H

#include <stdint.h>

#include "bvault.h"

/* STORE/views/NAME/view.conf (storage/FORMAT.md, "Views"). */
struct bv_view_conf {
	char replica[BV_NAME_MAX + 1];
	uint64_t rp, version;
	uint8_t id[BV_ID_SIZE];
	uint32_t chunk_size;
	int64_t created;
	uint64_t rp_size;   /* the replica's size at the RP */
	uint8_t store_id[16];
};

/* The view's lock, taken as bv_view_open takes it (BV_EBUSY when the
 * view is open elsewhere, BV_ENOTFOUND); *FD holds it until closed. */
int bv_view_lock_name(bv_store *s, const char *name, int *fd);
/* bv_view_open with the lock LOCK_FD already held (bv_view_lock_name);
 * bv_view_close leaves LOCK_FD open. */
int bv_view_open_locked(bv_store *s, const char *name, int lock_fd,
			bv_view **out);
const struct bv_view_conf *bv_view_conf_of(const bv_view *v);
/* The smallest size the view has had: past it, blocks not written read
 * zeros, not the RP. */
uint64_t bv_view_min_size(const bv_view *v);
/* 1 if any block of [B0, B1) is in the overlay. */
int bv_view_block_written(const bv_view *v, uint64_t b0, uint64_t b1);

/* What a view pins (FORMAT.md, "Pins"): REPLICA at RP (VERSION). */
struct bv_view_pin {
	char view[BV_NAME_MAX + 1];
	char replica[BV_NAME_MAX + 1];
	uint64_t rp, version;
};
/* Takes views/lock exclusive (made if missing when CREATE; else *LOCK_FD
 * is -1 and there are no pins when there is no views/) into *LOCK_FD
 * and lists the pins into *PINS (malloc'ed), for whatever removes RPs:
 * hold it while deciding and removing, then bv_view_pins_unlock. A
 * view.conf that cannot be read fails it (BV_ECORRUPT), so nothing is
 * removed on a guess. */
int bv_view_pins_lock(bv_store *s, int create, int *lock_fd,
		      struct bv_view_pin **pins, size_t *n);
void bv_view_pins_unlock(int lock_fd, struct bv_view_pin *pins);

/* Tests only (engine-view-fault): the I/O steps a view makes on its own
 * files, and a hook that sees each before it is made. */
enum bv_view_step {
	BV_VSTEP_WRITE,    /* pwrite or pwritev */
	BV_VSTEP_PUNCH,    /* fallocate(PUNCH_HOLE) */
	BV_VSTEP_TRUNCATE, /* ftruncate */
	BV_VSTEP_SYNC,     /* fdatasync or fsync */
	BV_VSTEP_RENAME,   /* of a view's directory */
};
enum bv_view_file {
	BV_VFILE_DATA,
	BV_VFILE_MAP,      /* its bitmap pages (and, at create, the file) */
	BV_VFILE_HEADER,   /* a header slot of map: its write, and the
			    * fdatasync after it */
	BV_VFILE_CONF,
	BV_VFILE_LOCK,
	BV_VFILE_DIR,      /* a directory: DIR is its path */
};
/* HOOK runs before every step of every view of the process, with the
 * view's directory DIR (the directory itself for BV_VFILE_DIR; for a
 * rename, the one renamed); a negative return fails the step with that
 * code, and the step is not made. NULL removes it. Not thread-safe: set
 * it while no view call runs. */
typedef int (*bv_view_io_hook)(void *ud, enum bv_view_step step,
			       enum bv_view_file file, const char *dir);
void bv_view_set_io_hook(bv_view_io_hook hook, void *ud);

#endif
