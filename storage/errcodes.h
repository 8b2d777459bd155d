/*
 * errcodes.h: the error codes the storage layer returns besides -errno.
 * Their values are the public BV_E* values of engine/bvault.h (the engine
 * checks that with static asserts); storage/ must not include engine/.
 */
#ifndef BV_STORAGE_ERRCODES_H
#define BV_STORAGE_ERRCODES_H

#define ST_ECORRUPT (-1001)  /* damaged record or index entry */
#define ST_ECHECKSUM (-1002) /* checksum or fingerprint mismatch */
#define ST_EFORMAT (-1003)   /* format version not understood */
#define ST_ENOTFOUND (-1005) /* key not present */
#define ST_EINVAL (-1007)    /* bad argument */
#define ST_EDB (-1013)       /* RocksDB reported an error */
#define ST_ELOST (-1017)     /* the index lost writes it had committed */

#endif
