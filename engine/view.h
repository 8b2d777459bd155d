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

#endif
