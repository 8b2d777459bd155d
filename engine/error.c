/*
 * error.c: error names, their nearest errno (bv_errno), and the
 * per-thread message behind bv_store_error().
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

_Static_assert(ST_ECORRUPT == BV_ECORRUPT, "error codes drifted");
_Static_assert(ST_ECHECKSUM == BV_ECHECKSUM, "error codes drifted");
_Static_assert(ST_EFORMAT == BV_EFORMAT, "error codes drifted");
_Static_assert(ST_ENOTFOUND == BV_ENOTFOUND, "error codes drifted");
_Static_assert(ST_EINVAL == BV_EINVAL, "error codes drifted");
_Static_assert(ST_EDB == BV_EDB, "error codes drifted");
_Static_assert(ST_ELOST == BV_ELOST, "error codes drifted");

static _Thread_local char msg[1024];

const char *bv_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case BV_ECORRUPT: return "stored data is corrupt";
	case BV_ECHECKSUM: return "checksum mismatch";
	case BV_EFORMAT: return "format version not supported";
	case BV_EBASE: return "stream base is not the latest recovery point";
	case BV_ENOTFOUND: return "not found";
	case BV_EEXIST: return "already exists";
	case BV_EINVAL: return "invalid argument";
	case BV_ESTREAM: return "malformed change stream";
	case BV_ETRUNCATED: return "change stream truncated";
	case BV_ERANGE: return "extent outside the disk";
	case BV_EALIGN: return "offset or length not a multiple of 512";
	case BV_EBUSY: return "replica busy in another session";
	case BV_EDB: return "index database error";
	case BV_ENOTSTORE: return "not a bvault store";
	case BV_EGROUP: return "replicas of one session span groups";
	case BV_EREADONLY: return "the store is open read-only";
	case BV_ELOST: return "the index lost committed writes";
	default:
		if (err < 0 && err > -4096)
			return strerror(-err);
		return "unknown error";
	}
}

int bv_errno(int err)
{
	switch (err) {
	case BV_ECORRUPT:
	case BV_ECHECKSUM:
	case BV_EDB:
		return EIO;
	case BV_EFORMAT:
		return ENOTSUP;
	case BV_EBASE:
		return ESTALE;
	case BV_ENOTFOUND:
	case BV_ENOTSTORE:
		return ENOENT;
	case BV_EEXIST:
		return EEXIST;
	case BV_EINVAL:
	case BV_ERANGE:
	case BV_EALIGN:
	case BV_EGROUP:
		return EINVAL;
	case BV_ESTREAM:
	case BV_ETRUNCATED:
		return EBADMSG;
	case BV_EBUSY:
		return EBUSY;
	case BV_EREADONLY:
		return EROFS;
	case BV_ELOST:
		return EIO;
	default:
		if (err >= 0)
			return 0;
		if (err > -1000) /* -errno: engine codes lie below */
			return -err;
		return EIO;
	}
}

const char *bv_version(void)
{
	return BVAULT_VERSION;
}

int bv_fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return err;
}

int bv_fail_storage(int err, const char *object)
{
	if (err == ST_EDB)
		return bv_fail(err, "%s: index: %s", object, bv_kv_error());
	return bv_fail(err, "%s: %s", object, bv_strerror(err));
}

const char *bv_last_error(void)
{
	return msg;
}

const char *bv_store_error(const bv_store *s)
{
	(void)s;
	return msg[0] ? msg : "no error";
}
