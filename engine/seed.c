/*
 * seed.c: seed sets (storage/SEED.md): export of an RP of a store, or of
 * a caller's disks, to media folders; verify of a set on its own; import
 * into a store in one commit.
 *
 * Every file of a set but the medium label goes through one writer
 * (struct sfw) and one reader (struct sfr): a 64-byte header naming the
 * set, the file's kind and number and its body length, then the body,
 * either plain with an XXH3-128 trailer over header and body, or as
 * crypto_secretstream messages of up to SEED_MSG bytes whose additional
 * data is the header (so a file moved to another name, medium or set
 * fails), the last tagged FINAL (so a cut file fails).
 *
 * The set is a pure function of the RP (or the disks' content) and the
 * options: entries are numbered in the order a walk of the replicas, in
 * chunk order, first meets each distinct chunk, and packs and media are
 * cut at sizes known before any data is read (every entry holds a whole
 * chunk). So a rerun after an interruption plans the same set, finds
 * the files it made complete (they verify) and writes only the others;
 * the walk that plans reads the map's digests only (a store) and the
 * walk that writes reads the data of the packs it writes.
 *
 * How INVARIANTS.md is kept on import:
 *  1. chunks go through the ingest session (bv_ingest_write), which
 *     makes their records durable before any index entry names them;
 *     repeats of a chunk in the set are map entries naming the
 *     fingerprint the session stored (bv_ingest_ref).
 *  2. one commit makes the replicas, their identities, the RP and the
 *     "seed/" record visible; a failure before aborts the session.
 *  6. the set is checked before anything is read into the session (all
 *     media there, labels of one set, the key, the manifest, every file's
 *     size) and while it is read (checksums, tags, digests); any fault
 *     aborts the session: the store is unchanged.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

#define SEED_FORMAT 1
#define SEED_MSG (1u << 20)     /* plaintext bytes per sealed message */
#define FHDR 64                 /* file header */
#define TRAILER 24              /* plain files: XXH3-128, u64 body length */
#define SS_HDR crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define SS_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define LABEL_SIZE 128
#define ENTRY_HDR 24            /* u32 length, u32 0, digest(16) */
#define REP_REC 112
#define PACK_REC 24
#define MAN_FIXED 320
#define PACK_DEFAULT (256ull << 20)
#define TABLE_MAX (1u << 23)    /* dedup slots: 32 bytes each, 256 MiB */
#define DIGEST_BATCH 1024
#define RA_BYTES (8u << 20)    /* export's read ahead */

enum { K_MANIFEST = 1, K_MAP = 2, K_PACK = 3, K_COMPLETE = 4 };
enum { SRC_STORE = 1, SRC_DISKS = 2 };

static const char LABEL_MAGIC[8] = "BVSEEDL";
static const char FILE_MAGIC[8] = "BVSEEDF";
static const char MAN_MAGIC[8] = "BVSEEDM";
static const char KEY_MAGIC[] = "bvault-seed-key 1\n";

/* ---- file names and sizes --------------------------------------------- */

static void file_name(char *buf, size_t len, int kind, uint32_t number)
{
	switch (kind) {
	case K_MANIFEST: snprintf(buf, len, "manifest"); break;
	case K_MAP: snprintf(buf, len, "map.%04u", number); break;
	case K_PACK: snprintf(buf, len, "pack.%06u", number); break;
	default: snprintf(buf, len, "complete"); break;
	}
}

static uint64_t file_size(uint64_t body, int sealed)
{
	if (sealed)
		return FHDR + SS_HDR + body +
		       (uint64_t)SS_ABYTES * (body / SEED_MSG + 1);
	return FHDR + body + TRAILER;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len, size_t *got)
{
	uint8_t *p = buf;
	size_t done = 0;
	*got = 0;
	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*got = done;
	return 0;
}

/* ---- the set ------------------------------------------------------------ */

struct srep {
	char name[BV_NAME_MAX + 1];
	uint64_t size;
	uint32_t cs;
	uint8_t id[BV_ID_SIZE];
	uint64_t nchunks;
	/* export's source */
	bv_reader *rd;
	const bv_seed_disk *disk;
};

struct spack {
	uint32_t medium;
	uint32_t count;
	uint64_t first; /* entry number (0-based) */
	uint64_t body;
};

struct set {
	uint8_t set_id[16];
	int sealed;
	uint8_t keycheck[16];
	const uint8_t *key;
	uint32_t source;
	uint8_t source_id[16];
	int64_t created;
	uint64_t media_size, pack_max;
	char group[BV_NAME_MAX + 1];
	uint64_t rp;
	int64_t time;
	uint32_t consistency;
	char label[BV_LABEL_MAX + 1];
	uint32_t nrep;
	struct srep *reps;
	uint64_t nentries;
	uint32_t npacks, pcap;
	struct spack *packs;
	uint32_t nmedia;
	uint32_t map_medium;
	uint64_t *mbytes; /* per medium, [0] for medium 1 */
};

static void set_free(struct set *t)
{
	for (uint32_t i = 0; t->reps && i < t->nrep; i++)
		bv_reader_close(t->reps[i].rd);
	free(t->reps);
	free(t->packs);
	free(t->mbytes);
	memset(t, 0, sizeof *t);
}

static void key_check(const uint8_t *key, uint8_t out[16])
{
	static const char what[] = "bvault seed key check";
	crypto_generichash(out, 16, (const uint8_t *)what, sizeof what - 1,
			   key, BV_SEED_KEY);
}

static uint64_t manifest_body(const struct set *t)
{
	return MAN_FIXED + (uint64_t)t->nrep * REP_REC +
	       (uint64_t)t->npacks * PACK_REC + (uint64_t)t->nmedia * 8;
}

static uint64_t map_body(const struct srep *r)
{
	return r->nchunks * 8;
}

/* ---- byte cursors ------------------------------------------------------ */

struct cur {
	uint8_t *p;
	size_t n, at;
	int bad;
};

static void put(struct cur *c, const void *v, size_t len)
{
	if (c->at + len > c->n) {
		c->bad = 1;
		return;
	}
	memcpy(c->p + c->at, v, len);
	c->at += len;
}
static void put32(struct cur *c, uint32_t v)
{
	uint8_t b[4];
	bv_le32(b, v);
	put(c, b, 4);
}
static void put64(struct cur *c, uint64_t v)
{
	uint8_t b[8];
	bv_le64(b, v);
	put(c, b, 8);
}
static void putstr(struct cur *c, const char *s, size_t field)
{
	uint8_t b[BV_LABEL_MAX + 1] = { 0 };
	size_t l = strlen(s);
	memcpy(b, s, l < field ? l : field - 1);
	put(c, b, field);
}
static void get(struct cur *c, void *v, size_t len)
{
	if (c->at + len > c->n) {
		c->bad = 1;
		memset(v, 0, len);
		return;
	}
	memcpy(v, c->p + c->at, len);
	c->at += len;
}
static uint32_t get32(struct cur *c)
{
	uint8_t b[4];
	get(c, b, 4);
	return bv_get_le32(b);
}
static uint64_t get64(struct cur *c)
{
	uint8_t b[8];
	get(c, b, 8);
	return bv_get_le64(b);
}
static void getstr(struct cur *c, char *s, size_t field)
{
	get(c, s, field);
	if (memchr(s, 0, field) == NULL)
		c->bad = 1;
	s[field - 1] = 0;
}

static void manifest_encode(const struct set *t, uint8_t *buf, size_t len)
{
	struct cur c = { buf, len, 0, 0 };
	memset(buf, 0, len);
	put(&c, MAN_MAGIC, 8);
	put32(&c, SEED_FORMAT);
	put32(&c, (uint32_t)t->sealed);
	put(&c, t->set_id, 16);
	put(&c, t->source_id, 16);
	put32(&c, t->source);
	put32(&c, t->consistency);
	put64(&c, (uint64_t)t->created);
	put64(&c, t->media_size);
	put64(&c, t->pack_max);
	putstr(&c, t->group, BV_NAME_MAX + 1);
	put64(&c, t->rp);
	put64(&c, (uint64_t)t->time);
	putstr(&c, t->label, BV_LABEL_MAX + 1);
	put64(&c, t->nentries);
	put32(&c, t->nrep);
	put32(&c, t->npacks);
	put32(&c, t->nmedia);
	put32(&c, t->map_medium);
	c.at = MAN_FIXED;
	for (uint32_t i = 0; i < t->nrep; i++) {
		const struct srep *r = &t->reps[i];
		putstr(&c, r->name, BV_NAME_MAX + 1);
		put64(&c, r->size);
		put32(&c, r->cs);
		put32(&c, 0);
		put(&c, r->id, 16);
		put64(&c, r->nchunks);
		c.at += REP_REC - (BV_NAME_MAX + 1) - 8 - 8 - 16 - 8;
	}
	for (uint32_t i = 0; i < t->npacks; i++) {
		put32(&c, t->packs[i].medium);
		put32(&c, t->packs[i].count);
		put64(&c, t->packs[i].first);
		put64(&c, t->packs[i].body);
	}
	for (uint32_t i = 0; i < t->nmedia; i++)
		put64(&c, t->mbytes[i]);
}

/* Decodes and checks a manifest body: every count and size must agree
 * with the rest, since import trusts them to size its reads. */
static int manifest_decode(struct set *t, uint8_t *buf, size_t len,
			   const char *where)
{
	struct cur c = { buf, len, 0, 0 };
	char magic[8];
	uint64_t ent = 0;

	get(&c, magic, 8);
	if (memcmp(magic, MAN_MAGIC, 8) || len < MAN_FIXED)
		return bv_fail(BV_ECORRUPT, "%s: not a seed manifest", where);
	if (get32(&c) != SEED_FORMAT)
		return bv_fail(BV_EFORMAT, "%s: seed format not understood "
			       "(this build reads format %d)", where,
			       SEED_FORMAT);
	c.at += 4 + 16;
	get(&c, t->source_id, 16);
	t->source = get32(&c);
	t->consistency = get32(&c);
	t->created = (int64_t)get64(&c);
	t->media_size = get64(&c);
	t->pack_max = get64(&c);
	getstr(&c, t->group, BV_NAME_MAX + 1);
	t->rp = get64(&c);
	t->time = (int64_t)get64(&c);
	getstr(&c, t->label, BV_LABEL_MAX + 1);
	t->nentries = get64(&c);
	t->nrep = get32(&c);
	t->npacks = get32(&c);
	t->nmedia = get32(&c);
	t->map_medium = get32(&c);
	if (c.bad || t->nrep == 0 || t->nrep > BV_GROUP_MAX_MEMBERS ||
	    t->nmedia == 0 || t->map_medium == 0 ||
	    t->map_medium > t->nmedia || manifest_body(t) != len)
		return bv_fail(BV_ECORRUPT, "%s: manifest counts do not agree "
			       "with its size", where);
	c.at = MAN_FIXED;
	t->reps = calloc(t->nrep, sizeof *t->reps);
	t->packs = calloc(t->npacks ? t->npacks : 1, sizeof *t->packs);
	t->mbytes = calloc(t->nmedia, sizeof *t->mbytes);
	if (!t->reps || !t->packs || !t->mbytes)
		return -ENOMEM;
	t->pcap = t->npacks;
	for (uint32_t i = 0; i < t->nrep; i++) {
		struct srep *r = &t->reps[i];
		size_t at = c.at;
		getstr(&c, r->name, BV_NAME_MAX + 1);
		r->size = get64(&c);
		r->cs = get32(&c);
		(void)get32(&c);
		get(&c, r->id, 16);
		r->nchunks = get64(&c);
		c.at = at + REP_REC;
		if (bv_name_check("replica", r->name) ||
		    r->cs < BV_CHUNK_MIN || r->cs > BV_CHUNK_MAX ||
		    (r->cs & (r->cs - 1)) || r->size % BV_SECTOR ||
		    r->size > (UINT64_C(1) << 62) ||
		    r->nchunks != (r->size + r->cs - 1) / r->cs)
			return bv_fail(BV_ECORRUPT, "%s: replica %u is not "
				       "valid", where, i);
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(t->reps[j].name, r->name))
				return bv_fail(BV_ECORRUPT, "%s: replica %s "
					       "named twice", where, r->name);
	}
	for (uint32_t i = 0; i < t->npacks; i++) {
		struct spack *p = &t->packs[i];
		p->medium = get32(&c);
		p->count = get32(&c);
		p->first = get64(&c);
		p->body = get64(&c);
		if (p->medium == 0 || p->medium > t->nmedia || p->count == 0 ||
		    p->first != ent || p->body < (uint64_t)p->count *
		    (ENTRY_HDR + BV_CHUNK_MIN) || p->body > (uint64_t)p->count *
		    (ENTRY_HDR + BV_CHUNK_MAX) ||
		    (i && p->medium < t->packs[i - 1].medium))
			return bv_fail(BV_ECORRUPT, "%s: pack %u is not "
				       "valid", where, i);
		ent += p->count;
	}
	for (uint32_t i = 0; i < t->nmedia; i++)
		t->mbytes[i] = get64(&c);
	if (c.bad || ent != t->nentries)
		return bv_fail(BV_ECORRUPT, "%s: the packs do not hold the "
			       "set's %llu chunks", where,
			       (unsigned long long)t->nentries);
	if (bv_name_check("group", t->group))
		return bv_fail(BV_ECORRUPT, "%s: bad group name", where);
	return 0;
}

/* ---- the medium label ------------------------------------------------- */

struct label {
	uint32_t medium, media;
	int sealed;
	uint8_t set_id[16], keycheck[16];
	uint64_t bytes;
};

static void label_encode(const struct set *t, uint32_t medium,
			 uint8_t out[LABEL_SIZE])
{
	struct cur c = { out, LABEL_SIZE, 0, 0 };
	XXH128_hash_t h;
	memset(out, 0, LABEL_SIZE);
	put(&c, LABEL_MAGIC, 8);
	put32(&c, SEED_FORMAT);
	put32(&c, medium);
	put32(&c, t->nmedia);
	put32(&c, (uint32_t)t->sealed);
	put(&c, t->set_id, 16);
	put(&c, t->keycheck, 16);
	put64(&c, t->mbytes[medium - 1]);
	h = XXH3_128bits(out, LABEL_SIZE - 16);
	bv_le64(out + LABEL_SIZE - 16, h.low64);
	bv_le64(out + LABEL_SIZE - 8, h.high64);
}

/* Reads DIR/medium: 0, BV_ENOTFOUND (none there), BV_ECORRUPT, -errno. */
static int label_read(const char *dir, struct label *l)
{
	char path[PATH_MAX];
	uint8_t b[LABEL_SIZE + 1];
	struct cur c = { b, LABEL_SIZE, 8, 0 };
	XXH128_hash_t h;
	size_t got = 0;
	int fd, rc;

	snprintf(path, sizeof path, "%s/medium", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return BV_ENOTFOUND;
		return bv_fail(-errno, "%s: %s", path, strerror(errno));
	}
	rc = read_all(fd, b, sizeof b, &got);
	close(fd);
	if (rc)
		return bv_fail(rc, "%s: %s", path, strerror(-rc));
	h = XXH3_128bits(b, LABEL_SIZE - 16);
	if (got != LABEL_SIZE || memcmp(b, LABEL_MAGIC, 8) ||
	    bv_get_le64(b + LABEL_SIZE - 16) != h.low64 ||
	    bv_get_le64(b + LABEL_SIZE - 8) != h.high64)
		return bv_fail(BV_ECORRUPT, "%s: not a seed medium label, or "
			       "damaged", path);
	if (get32(&c) != SEED_FORMAT)
		return bv_fail(BV_EFORMAT, "%s: seed format not understood",
			       path);
	l->medium = get32(&c);
	l->media = get32(&c);
	l->sealed = (int)get32(&c);
	get(&c, l->set_id, 16);
	get(&c, l->keycheck, 16);
	l->bytes = get64(&c);
	if (l->medium == 0 || l->medium > l->media)
		return bv_fail(BV_ECORRUPT, "%s: medium %u of %u", path,
			       l->medium, l->media);
	return 0;
}

static char *hex16(const uint8_t id[16], char buf[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(buf + 2 * i, 3, "%02x", id[i]);
	return buf;
}

/* ---- the file writer --------------------------------------------------- */

struct sfw {
	int fd;
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	const char *dir;
	int sealed;
	crypto_secretstream_xchacha20poly1305_state st;
	uint8_t hdr[FHDR];
	XXH3_state_t *xx;
	uint8_t *buf, *cbuf;
	size_t used;
	uint64_t body, left;
	uint64_t *written; /* bytes written, counted for progress */
	void (*tick)(void *ud); /* after each message: the progress bar */
	void *tick_ud;
};

static void file_header(uint8_t hdr[FHDR], const struct set *t, int kind,
			uint32_t number, uint64_t body)
{
	struct cur c = { hdr, FHDR, 0, 0 };
	memset(hdr, 0, FHDR);
	put(&c, FILE_MAGIC, 8);
	put32(&c, SEED_FORMAT);
	put32(&c, (uint32_t)t->sealed);
	put(&c, t->set_id, 16);
	put32(&c, (uint32_t)kind);
	put32(&c, number);
	put64(&c, body);
}

static int sfw_emit(struct sfw *w, int final)
{
	int rc;
	if (!w->sealed) {
		XXH3_128bits_update(w->xx, w->buf, w->used);
		rc = write_all(w->fd, w->buf, w->used);
		if (!rc && w->written)
			*w->written += w->used;
	} else {
		unsigned long long cl;
		crypto_secretstream_xchacha20poly1305_push(&w->st, w->cbuf,
			&cl, w->buf, w->used, w->hdr, FHDR,
			final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
			      : 0);
		rc = write_all(w->fd, w->cbuf, (size_t)cl);
		if (!rc && w->written)
			*w->written += cl;
	}
	w->used = 0;
	if (rc)
		return bv_fail(rc, "%s: %s", w->tmp, strerror(-rc));
	if (w->tick)
		w->tick(w->tick_ud);
	return 0;
}

/* Buffers are the caller's (BUF SEED_MSG bytes, CBUF SEED_MSG + ABYTES):
 * reused from file to file. */
static int sfw_open(struct sfw *w, const struct set *t, const char *dir,
		    int kind, uint32_t number, uint64_t body, uint8_t *buf,
		    uint8_t *cbuf, XXH3_state_t *xx, uint64_t *written)
{
	char name[32];
	int rc;

	memset(w, 0, sizeof *w);
	w->fd = -1;
	w->dir = dir;
	w->sealed = t->sealed;
	w->buf = buf;
	w->cbuf = cbuf;
	w->xx = xx;
	w->body = w->left = body;
	w->written = written;
	file_name(name, sizeof name, kind, number);
	snprintf(w->path, sizeof w->path, "%s/%s", dir, name);
	snprintf(w->tmp, sizeof w->tmp, "%s.tmp", w->path);
	file_header(w->hdr, t, kind, number, body);
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0)
		return bv_fail(-errno, "%s: %s", w->tmp, strerror(errno));
	if ((rc = write_all(w->fd, w->hdr, FHDR)))
		return bv_fail(rc, "%s: %s", w->tmp, strerror(-rc));
	if (written)
		*written += FHDR;
	if (w->sealed) {
		uint8_t h[SS_HDR];
		crypto_secretstream_xchacha20poly1305_init_push(&w->st, h,
								t->key);
		if ((rc = write_all(w->fd, h, SS_HDR)))
			return bv_fail(rc, "%s: %s", w->tmp, strerror(-rc));
		if (written)
			*written += SS_HDR;
	} else {
		XXH3_128bits_reset(xx);
		XXH3_128bits_update(xx, w->hdr, FHDR);
	}
	return 0;
}

static int sfw_write(struct sfw *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	int rc;
	if (len > w->left)
		return bv_fail(BV_EINVAL, "%s: more than its %llu bytes",
			       w->tmp, (unsigned long long)w->body);
	w->left -= len;
	while (len) {
		size_t n = SEED_MSG - w->used;
		if (n > len)
			n = len;
		memcpy(w->buf + w->used, p, n);
		w->used += n;
		p += n;
		len -= n;
		if (w->used == SEED_MSG && (rc = sfw_emit(w, 0)))
			return rc;
	}
	return 0;
}

/* Ends the file: the last message (FINAL) or the trailer, fdatasync, the
 * rename to its name, the folder's fsync. */
static int sfw_finish(struct sfw *w)
{
	int rc;
	if (w->left)
		return bv_fail(BV_EINVAL, "%s: %llu bytes short", w->tmp,
			       (unsigned long long)w->left);
	if ((rc = sfw_emit(w, 1)))
		return rc;
	if (!w->sealed) {
		uint8_t tr[TRAILER];
		XXH128_hash_t h = XXH3_128bits_digest(w->xx);
		bv_le64(tr, h.low64);
		bv_le64(tr + 8, h.high64);
		bv_le64(tr + 16, w->body);
		if ((rc = write_all(w->fd, tr, TRAILER)))
			return bv_fail(rc, "%s: %s", w->tmp, strerror(-rc));
		if (w->written)
			*w->written += TRAILER;
	}
	if (fdatasync(w->fd))
		return bv_fail(-errno, "%s: fdatasync: %s", w->tmp,
			       strerror(errno));
	close(w->fd);
	w->fd = -1;
	if (rename(w->tmp, w->path))
		return bv_fail(-errno, "%s: rename: %s", w->tmp,
			       strerror(errno));
	if ((rc = fsync_dir(w->dir)))
		return bv_fail(rc, "%s: fsync: %s", w->dir, strerror(-rc));
	return 0;
}

static void sfw_drop(struct sfw *w)
{
	if (w->fd >= 0) {
		close(w->fd);
		unlink(w->tmp);
	}
	w->fd = -1;
}

/* ---- the file reader ---------------------------------------------------- */

struct sfr {
	int fd;
	char path[PATH_MAX];
	int sealed;
	crypto_secretstream_xchacha20poly1305_state st;
	uint8_t hdr[FHDR];
	XXH3_state_t *xx;
	uint8_t *buf, *cbuf;
	size_t have, off;
	uint64_t body, left; /* body bytes not yet decoded */
	int final;           /* the last message was read */
	uint64_t *readb;
};

/* Opens DIR/name of KIND and NUMBER of set T, whose body must be BODY
 * bytes (the file's size then follows). */
static int sfr_open(struct sfr *r, const struct set *t, const char *dir,
		    int kind, uint32_t number, uint64_t body, uint8_t *buf,
		    uint8_t *cbuf, XXH3_state_t *xx, uint64_t *readb)
{
	uint8_t want[FHDR];
	char name[32];
	struct stat st;
	size_t got = 0;
	int rc;

	memset(r, 0, sizeof *r);
	r->sealed = t->sealed;
	r->buf = buf;
	r->cbuf = cbuf;
	r->xx = xx;
	r->body = r->left = body;
	r->readb = readb;
	file_name(name, sizeof name, kind, number);
	snprintf(r->path, sizeof r->path, "%s/%s", dir, name);
	r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		if (errno == ENOENT)
			return bv_fail(BV_ENOTFOUND, "%s: missing", r->path);
		return bv_fail(-errno, "%s: %s", r->path, strerror(errno));
	}
	if (fstat(r->fd, &st))
		return bv_fail(-errno, "%s: %s", r->path, strerror(errno));
	if ((uint64_t)st.st_size != file_size(body, t->sealed))
		return bv_fail(BV_ETRUNCATED, "%s: %llu bytes, but the set "
			       "says %llu (truncated or damaged)", r->path,
			       (unsigned long long)st.st_size,
			       (unsigned long long)file_size(body, t->sealed));
	if ((rc = read_all(r->fd, r->hdr, FHDR, &got)))
		return bv_fail(rc, "%s: %s", r->path, strerror(-rc));
	file_header(want, t, kind, number, body);
	if (got != FHDR || memcmp(want, r->hdr, FHDR)) {
		if (got == FHDR && !memcmp(want, r->hdr, 8) &&
		    memcmp(want + 16, r->hdr + 16, 16))
			return bv_fail(BV_EINVAL, "%s: a file of another seed "
				       "set", r->path);
		return bv_fail(BV_ECHECKSUM, "%s: its header is not the one "
			       "this set has there (damaged, or a file moved "
			       "from another place)", r->path);
	}
	if (r->sealed) {
		uint8_t h[SS_HDR];
		if ((rc = read_all(r->fd, h, SS_HDR, &got)))
			return bv_fail(rc, "%s: %s", r->path, strerror(-rc));
		if (got != SS_HDR ||
		    crypto_secretstream_xchacha20poly1305_init_pull(&r->st, h,
								    t->key))
			return bv_fail(BV_ECHECKSUM, "%s: bad stream header",
				       r->path);
	} else {
		XXH3_128bits_reset(xx);
		XXH3_128bits_update(xx, r->hdr, FHDR);
	}
	if (readb)
		*readb += FHDR + (r->sealed ? SS_HDR : 0);
	return 0;
}

static int sfr_fill(struct sfr *r)
{
	size_t n = r->left < SEED_MSG ? (size_t)r->left : SEED_MSG;
	size_t got = 0;
	int rc;

	if (!r->sealed) {
		if (n == 0) {
			r->final = 1;
			return 0;
		}
		if ((rc = read_all(r->fd, r->buf, n, &got)))
			return bv_fail(rc, "%s: %s", r->path, strerror(-rc));
		if (got != n)
			return bv_fail(BV_ETRUNCATED, "%s: ends early", r->path);
		XXH3_128bits_update(r->xx, r->buf, n);
	} else {
		unsigned long long ml;
		unsigned char tag;
		int last = r->left < SEED_MSG;
		if ((rc = read_all(r->fd, r->cbuf, n + SS_ABYTES, &got)))
			return bv_fail(rc, "%s: %s", r->path, strerror(-rc));
		if (got != n + SS_ABYTES)
			return bv_fail(BV_ETRUNCATED, "%s: ends early", r->path);
		if (crypto_secretstream_xchacha20poly1305_pull(&r->st, r->buf,
				&ml, &tag, r->cbuf, n + SS_ABYTES, r->hdr,
				FHDR) || ml != n)
			return bv_fail(BV_ECHECKSUM, "%s: authentication failed "
				       "at byte %llu (tampered, damaged or "
				       "reordered)", r->path,
				       (unsigned long long)(r->body - r->left));
		if (last != (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL))
			return bv_fail(BV_ECHECKSUM, "%s: its messages end in "
				       "the wrong place (cut or reordered)",
				       r->path);
		r->final = last;
	}
	if (r->readb)
		*r->readb += n + (r->sealed ? SS_ABYTES : 0);
	r->left -= n;
	r->have = n;
	r->off = 0;
	return 0;
}

static int sfr_read(struct sfr *r, void *dst, size_t len)
{
	uint8_t *p = dst;
	int rc;
	while (len) {
		if (r->off == r->have) {
			if (r->left == 0)
				return bv_fail(BV_ECORRUPT, "%s: ends before its "
					       "content does", r->path);
			if ((rc = sfr_fill(r)))
				return rc;
		}
		size_t n = r->have - r->off;
		if (n > len)
			n = len;
		memcpy(p, r->buf + r->off, n);
		r->off += n;
		p += n;
		len -= n;
	}
	return 0;
}

/* Checks the end: every body byte used, the trailer or the final tag. */
static int sfr_finish(struct sfr *r)
{
	uint8_t tr[TRAILER + 1];
	size_t got = 0;
	int rc;
	if (r->off != r->have || r->left)
		return bv_fail(BV_ECORRUPT, "%s: holds more than its content",
			       r->path);
	if (r->sealed && !r->final) {
		/* The body ended on a message's end: the final one is empty. */
		if ((rc = sfr_fill(r)))
			return rc;
		if (r->have)
			return bv_fail(BV_ECORRUPT, "%s: holds more than its "
				       "content", r->path);
	}
	if (!r->sealed) {
		XXH128_hash_t h = XXH3_128bits_digest(r->xx);
		if ((rc = read_all(r->fd, tr, sizeof tr, &got)))
			return bv_fail(rc, "%s: %s", r->path, strerror(-rc));
		if (got != TRAILER || bv_get_le64(tr) != h.low64 ||
		    bv_get_le64(tr + 8) != h.high64 ||
		    bv_get_le64(tr + 16) != r->body)
			return bv_fail(BV_ECHECKSUM, "%s: checksum mismatch "
				       "(damaged)", r->path);
		if (r->readb)
			*r->readb += TRAILER;
	}
	return 0;
}

static void sfr_close(struct sfr *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/* Reads a whole file through, checking it (a kept file on resume, the
 * manifests and markers on verify). */
static int sfr_check(const struct set *t, const char *dir, int kind,
		     uint32_t number, uint64_t body, uint8_t *buf,
		     uint8_t *cbuf, XXH3_state_t *xx, uint64_t *readb)
{
	struct sfr r;
	int rc = sfr_open(&r, t, dir, kind, number, body, buf, cbuf, xx,
			  readb);
	while (!rc && r.left)
		rc = sfr_fill(&r);
	r.off = r.have;
	if (!rc)
		rc = sfr_finish(&r);
	sfr_close(&r);
	return rc;
}

/* ---- the dedup table (export) ----------------------------------------- */

struct dslot {
	uint8_t d[16];
	uint32_t len, used;
	uint64_t e;
};

struct dtab {
	struct dslot *s;
	size_t cap, n;
};

static void dtab_free(struct dtab *t)
{
	free(t->s);
	memset(t, 0, sizeof *t);
}

static int dtab_grow(struct dtab *t)
{
	size_t cap = t->cap ? t->cap * 2 : (1u << 16);
	struct dslot *ns = calloc(cap, sizeof *ns);
	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->s[i].used)
			continue;
		size_t h = (size_t)bv_get_le64(t->s[i].d) & (cap - 1);
		while (ns[h].used)
			h = (h + 1) & (cap - 1);
		ns[h] = t->s[i];
	}
	free(t->s);
	t->s = ns;
	t->cap = cap;
	return 0;
}

/* The entry of (D, LEN): *E and 1 when it has one, else *E = NEXT, put
 * into the table while there is room, and 0. The same calls in the same
 * order give the same answers (the set is planned twice). */
static int dtab_assign(struct dtab *t, const uint8_t d[16], uint32_t len,
		       uint64_t next, uint64_t *e)
{
	if (t->cap == 0 || (t->n + 1) * 2 > t->cap) {
		if (t->cap < TABLE_MAX) {
			int rc = dtab_grow(t);
			if (rc)
				return rc;
		}
	}
	size_t h = (size_t)bv_get_le64(d) & (t->cap - 1);
	while (t->s[h].used) {
		if (t->s[h].len == len && !memcmp(t->s[h].d, d, 16)) {
			*e = t->s[h].e;
			return 1;
		}
		h = (h + 1) & (t->cap - 1);
	}
	*e = next;
	if ((t->n + 1) * 4 <= t->cap * 3) {
		memcpy(t->s[h].d, d, 16);
		t->s[h].len = len;
		t->s[h].used = 1;
		t->s[h].e = next;
		t->n++;
	}
	return 0;
}

/* ---- export -------------------------------------------------------------- */

struct xp {
	struct set t;
	const bv_seed_opts *o;
	uint32_t first, last;  /* media written by this run */
	struct dtab tab;
	uint8_t *chunk;        /* one chunk (BV_CHUNK_MAX) */
	int chunk_ok;          /* CHUNK holds the chunk last asked for */
	uint8_t *kinds;
	uint8_t (*digests)[16];
	uint64_t dfirst;
	size_t dn;
	uint32_t drep;
	uint8_t *buf, *cbuf;
	XXH3_state_t *xx;
	uint8_t *pack_done;    /* per pack: 1 kept */
	int map_done;          /* the maps are there already */
	uint64_t written, todo;
	uint64_t kept;
	uint64_t zeros;        /* zero chunks the plan met */
	uint8_t *ra;           /* read ahead: chunks RA_FIRST.. of RA_RD */
	bv_reader *ra_rd;
	uint64_t ra_first, ra_n;
};

static int src_read(struct xp *x, struct srep *r, uint64_t c)
{
	uint64_t off = c * r->cs;
	size_t len = r->size - off < r->cs ? (size_t)(r->size - off) : r->cs;
	int rc;
	if (r->rd) {
		/* Read ahead: the chunks a walk writes are mostly neighbours,
		 * and one read of many lets the reader batch its container
		 * reads and decode them together. */
		if (x->ra_rd != r->rd || c < x->ra_first ||
		    c >= x->ra_first + x->ra_n) {
			uint64_t n = RA_BYTES / r->cs;
			if (n > r->nchunks - c)
				n = r->nchunks - c;
			uint64_t rl = n * r->cs;
			if (rl > r->size - off)
				rl = r->size - off;
			x->ra_rd = NULL;
			if ((rc = bv_reader_pread(r->rd, x->ra, (size_t)rl, off)))
				return rc;
			memset(x->ra + rl, 0, (size_t)(n * r->cs - rl));
			x->ra_rd = r->rd;
			x->ra_first = c;
			x->ra_n = n;
		}
		memcpy(x->chunk, x->ra + (c - x->ra_first) * r->cs, r->cs);
		x->chunk_ok = 1;
		return 0;
	} else {
		rc = r->disk->read(r->disk->ud, x->chunk, len, off);
		if (rc)
			rc = bv_fail(rc < 0 ? rc : -EIO, "disk %s: read at "
				     "%llu: %s", r->name,
				     (unsigned long long)off,
				     strerror(rc < 0 ? -rc : EIO));
	}
	if (rc)
		return rc;
	memset(x->chunk + len, 0, r->cs - len);
	x->chunk_ok = 1;
	return 0;
}

/* What chunk C of replica RI is: 0 zero, 1 data with its digest in D. */
static int src_kind(struct xp *x, uint32_t ri, uint64_t c, uint8_t d[16])
{
	struct srep *r = &x->t.reps[ri];
	int rc;

	x->chunk_ok = 0;
	if (r->rd) {
		if (x->drep != ri || c < x->dfirst || c >= x->dfirst + x->dn) {
			size_t n = r->nchunks - c < DIGEST_BATCH ?
				   (size_t)(r->nchunks - c) : DIGEST_BATCH;
			if ((rc = bv_reader_digests(r->rd, c, n, x->kinds,
						    x->digests)))
				return rc;
			x->drep = ri;
			x->dfirst = c;
			x->dn = n;
		}
		size_t i = (size_t)(c - x->dfirst);
		if (x->kinds[i] == BV_DIGEST_ZERO)
			return 0;
		if (x->kinds[i] == BV_DIGEST_KNOWN) {
			memcpy(d, x->digests[i], 16);
			return 1;
		}
		/* A store of format 1 keeps no digest: read the chunk. */
		if ((rc = src_read(x, r, c)))
			return rc;
		bv_chunk_digest(x->chunk, r->cs, d);
		return 1;
	}
	uint64_t off = c * r->cs;
	uint64_t len = r->size - off < r->cs ? r->size - off : r->cs;
	if (r->disk->extent) {
		uint64_t run = 0;
		rc = r->disk->extent(r->disk->ud, off, len, &run);
		if (rc < 0)
			return bv_fail(rc, "disk %s: extents at %llu: %s",
				       r->name, (unsigned long long)off,
				       strerror(-rc));
		if (rc == 0 && run >= len)
			return 0;
	}
	if ((rc = src_read(x, r, c)))
		return rc;
	if (bv_is_zero(x->chunk, r->cs))
		return 0;
	bv_chunk_digest(x->chunk, r->cs, d);
	return 1;
}

static int plan_media(struct set *t)
{
	uint64_t fixed, maps = 0, used;
	uint32_t guess = 1;

	for (uint32_t i = 0; i < t->nrep; i++)
		maps += file_size(map_body(&t->reps[i]), t->sealed);
	for (int round = 0; round < 16; round++) {
		uint32_t m = 1;
		t->nmedia = guess;
		fixed = LABEL_SIZE + file_size(manifest_body(t), t->sealed) +
			file_size(0, t->sealed);
		used = fixed;
		for (uint32_t i = 0; i < t->npacks; i++) {
			uint64_t f = file_size(t->packs[i].body, t->sealed);
			if (t->media_size && used + f > t->media_size) {
				if (used == fixed)
					return bv_fail(BV_EINVAL, "a pack of %llu "
						       "bytes does not fit a "
						       "medium of %llu",
						       (unsigned long long)f,
						       (unsigned long long)
						       t->media_size);
				m++;
				used = fixed;
			}
			t->packs[i].medium = m;
			used += f;
		}
		if (t->media_size && used + maps > t->media_size) {
			m++;
			used = fixed;
			if (used + maps > t->media_size)
				return bv_fail(BV_EINVAL, "the block maps (%llu "
					       "bytes) do not fit a medium of "
					       "%llu", (unsigned long long)maps,
					       (unsigned long long)
					       t->media_size);
		}
		if (m <= guess) {
			t->nmedia = guess;
			t->map_medium = guess;
			/* Media past the last pack's hold the maps alone. */
			free(t->mbytes);
			t->mbytes = calloc(guess, sizeof *t->mbytes);
			if (!t->mbytes)
				return -ENOMEM;
			for (uint32_t i = 0; i < guess; i++)
				t->mbytes[i] = fixed;
			for (uint32_t i = 0; i < t->npacks; i++)
				t->mbytes[t->packs[i].medium - 1] +=
					file_size(t->packs[i].body, t->sealed);
			if (t->media_size &&
			    t->mbytes[guess - 1] + maps > t->media_size &&
			    m < guess)
				return bv_fail(BV_EINVAL, "cannot plan the media");
			t->mbytes[guess - 1] += maps;
			return 0;
		}
		guess = m;
	}
	return bv_fail(BV_EINVAL, "cannot plan the media");
}

static int add_pack(struct set *t, uint64_t first)
{
	if (t->npacks == UINT32_MAX - 1)
		return bv_fail(BV_EINVAL, "too many packs");
	if (t->npacks == t->pcap) {
		uint32_t cap = t->pcap ? t->pcap * 2 : 64;
		struct spack *np = realloc(t->packs, cap * sizeof *np);
		if (!np)
			return -ENOMEM;
		t->packs = np;
		t->pcap = cap;
	}
	memset(&t->packs[t->npacks], 0, sizeof t->packs[0]);
	t->packs[t->npacks].first = first;
	t->npacks++;
	return 0;
}

/* Pass 1: numbers the entries, cuts the packs; for disks, derives each
 * version identity from the content. Reads no data from a store that
 * keeps digests. */
static int plan(struct xp *x)
{
	struct set *t = &x->t;
	uint8_t d[16];
	uint64_t e;
	int rc;

	dtab_free(&x->tab);
	t->nentries = 0;
	t->npacks = 0;
	x->zeros = 0;
	for (uint32_t ri = 0; ri < t->nrep; ri++) {
		struct srep *r = &t->reps[ri];
		uint64_t esz = ENTRY_HDR + r->cs;
		if (!r->rd) {
			XXH3_128bits_reset(x->xx);
			XXH3_128bits_update(x->xx, "bvseed-disk", 11);
			XXH3_128bits_update(x->xx, r->name, strlen(r->name));
			uint8_t b[12];
			bv_le64(b, r->size);
			bv_le32(b + 8, r->cs);
			XXH3_128bits_update(x->xx, b, 12);
		}
		for (uint64_t c = 0; c < r->nchunks; c++) {
			if ((rc = src_kind(x, ri, c, d)) < 0)
				return rc;
			if (!r->rd) {
				uint8_t k = (uint8_t)rc;
				XXH3_128bits_update(x->xx, &k, 1);
				if (rc)
					XXH3_128bits_update(x->xx, d, 16);
			}
			if (rc == 0) {
				x->zeros++;
				continue;
			}
			if ((rc = dtab_assign(&x->tab, d, r->cs, t->nentries,
					      &e)) < 0)
				return rc;
			if (rc == 1)
				continue;
			struct spack *p = t->npacks ?
					  &t->packs[t->npacks - 1] : NULL;
			if (!p || p->body + esz > t->pack_max) {
				if ((rc = add_pack(t, t->nentries)))
					return rc;
				p = &t->packs[t->npacks - 1];
			}
			p->count++;
			p->body += esz;
			t->nentries++;
		}
		if (!r->rd) {
			XXH128_hash_t h = XXH3_128bits_digest(x->xx);
			bv_le64(r->id, h.low64);
			bv_le64(r->id + 8, h.high64);
			if (bv_ident_none(r->id))
				r->id[0] = 1;
		}
	}
	return plan_media(t);
}

static void set_identity(struct set *t)
{
	XXH3_state_t *xx = XXH3_createState();
	XXH128_hash_t h;
	uint8_t b[40];

	XXH3_128bits_reset(xx);
	XXH3_128bits_update(xx, "bvseed-set", 10);
	bv_le32(b, t->source);
	bv_le32(b + 4, (uint32_t)t->sealed);
	bv_le64(b + 8, t->media_size);
	bv_le64(b + 16, t->pack_max);
	bv_le64(b + 24, t->rp);
	/* An agent's seed is timed when first planned: not part of its id,
	 * so that a rerun finds its set (adopt_times). */
	bv_le64(b + 32, t->source == SRC_STORE ? (uint64_t)t->time : 0);
	XXH3_128bits_update(xx, b, 40);
	XXH3_128bits_update(xx, t->source_id, 16);
	XXH3_128bits_update(xx, t->group, strlen(t->group) + 1);
	XXH3_128bits_update(xx, t->label, strlen(t->label) + 1);
	for (uint32_t i = 0; i < t->nrep; i++) {
		XXH3_128bits_update(xx, t->reps[i].name,
				    strlen(t->reps[i].name) + 1);
		XXH3_128bits_update(xx, t->reps[i].id, 16);
		bv_le64(b, t->reps[i].size);
		bv_le32(b + 8, t->reps[i].cs);
		XXH3_128bits_update(xx, b, 12);
	}
	h = XXH3_128bits_digest(xx);
	XXH3_freeState(xx);
	bv_le64(t->set_id, h.low64);
	bv_le64(t->set_id + 8, h.high64);
}

static const char *mdir(const struct xp *x, uint32_t m)
{
	return x->o->dirs[m - x->first];
}

/* Makes DIR medium M's folder, or checks the one there; writes its label
 * and manifest when missing; fills what is kept. */
static int medium_prepare(struct xp *x, uint32_t m)
{
	struct set *t = &x->t;
	const char *dir = mdir(x, m);
	uint64_t need, keep = 0;
	uint8_t lab[LABEL_SIZE];
	struct label l;
	struct statvfs sv;
	char path[PATH_MAX], idh[33], idh2[33];
	int rc, fd;

	if (mkdir(dir, 0700) && errno != EEXIST)
		return bv_fail(-errno, "medium %u: folder %s: %s", m, dir,
			       strerror(errno));
	rc = label_read(dir, &l);
	if (rc == 0) {
		if (memcmp(l.set_id, t->set_id, 16))
			return bv_fail(BV_EINVAL, "%s: holds medium %u of seed "
				       "set %s, not of this set %s", dir,
				       l.medium, hex16(l.set_id, idh),
				       hex16(t->set_id, idh2));
		if (l.medium != m)
			return bv_fail(BV_EINVAL, "%s: holds medium %u of this "
				       "set, not medium %u", dir, l.medium, m);
		keep += LABEL_SIZE;
	} else if (rc != BV_ENOTFOUND) {
		return rc;
	}
	/* Files an interrupted run left half written go first: their room
	 * counts as free. */
	if (rc == 0) {
		DIR *dh = opendir(dir);
		struct dirent *de;
		while (dh && (de = readdir(dh))) {
			size_t nl = strlen(de->d_name);
			if (nl > 4 && !strcmp(de->d_name + nl - 4, ".tmp") &&
			    (!strncmp(de->d_name, "pack.", 5) ||
			     !strncmp(de->d_name, "map.", 4) ||
			     !strncmp(de->d_name, "manifest", 8) ||
			     !strncmp(de->d_name, "complete", 8))) {
				snprintf(path, sizeof path, "%s/%s", dir,
					 de->d_name);
				unlink(path);
			}
		}
		if (dh)
			closedir(dh);
	}
	/* What is there and whole is kept; the rest is written anew. */
	uint64_t body = manifest_body(t);
	if (sfr_check(t, dir, K_MANIFEST, m, body, x->buf, x->cbuf, x->xx,
		      NULL) == 0)
		keep += file_size(body, t->sealed);
	else
		x->todo += file_size(body, t->sealed);
	if (m == t->map_medium) {
		int all = 1;
		for (uint32_t i = 0; i < t->nrep; i++) {
			uint64_t mb = map_body(&t->reps[i]);
			if (sfr_check(t, dir, K_MAP, i, mb, x->buf, x->cbuf,
				      x->xx, NULL) == 0)
				keep += file_size(mb, t->sealed);
			else
				all = 0;
		}
		x->map_done = all;
	}
	for (uint32_t p = 0; p < t->npacks; p++) {
		if (t->packs[p].medium != m)
			continue;
		if (sfr_check(t, dir, K_PACK, p, t->packs[p].body, x->buf,
			      x->cbuf, x->xx, NULL) == 0) {
			x->pack_done[p] = 1;
			keep += file_size(t->packs[p].body, t->sealed);
			x->kept++;
		} else {
			x->todo += file_size(t->packs[p].body, t->sealed);
		}
	}
	if (m == t->map_medium && !x->map_done)
		for (uint32_t i = 0; i < t->nrep; i++)
			x->todo += file_size(map_body(&t->reps[i]), t->sealed);
	x->todo += file_size(0, t->sealed);
	need = t->mbytes[m - 1] > keep ? t->mbytes[m - 1] - keep : 0;
	if (statvfs(dir, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize < need) {
		char a[32], b[32];
		snprintf(a, sizeof a, "%llu", (unsigned long long)need);
		snprintf(b, sizeof b, "%llu", (unsigned long long)
			 ((uint64_t)sv.f_bavail * sv.f_frsize));
		return bv_fail(-ENOSPC, "%s: no room for medium %u of %u: it "
			       "needs %s more bytes, the folder's file system "
			       "has %s free", dir, m, t->nmedia, a, b);
	}
	if (rc == BV_ENOTFOUND) {
		snprintf(path, sizeof path, "%s/medium.tmp", dir);
		label_encode(t, m, lab);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return bv_fail(-errno, "%s: %s", path, strerror(errno));
		rc = write_all(fd, lab, LABEL_SIZE);
		if (!rc && fdatasync(fd))
			rc = -errno;
		close(fd);
		if (rc)
			return bv_fail(rc, "%s: %s", path, strerror(-rc));
		char fin[PATH_MAX];
		snprintf(fin, sizeof fin, "%s/medium", dir);
		if (rename(path, fin) || (rc = fsync_dir(dir)))
			return bv_fail(rc ? rc : -errno, "%s: %s", fin,
				       strerror(rc ? -rc : errno));
		x->written += LABEL_SIZE;
	}
	return 0;
}

static int write_manifest(struct xp *x, uint32_t m)
{
	struct set *t = &x->t;
	uint64_t body = manifest_body(t);
	struct sfw w;
	uint8_t *mb;
	int rc;

	if (sfr_check(t, mdir(x, m), K_MANIFEST, m, body, x->buf, x->cbuf,
		      x->xx, NULL) == 0)
		return 0;
	if (!(mb = malloc(body)))
		return -ENOMEM;
	manifest_encode(t, mb, body);
	rc = sfw_open(&w, t, mdir(x, m), K_MANIFEST, m, body, x->buf, x->cbuf,
		      x->xx, &x->written);
	if (!rc)
		rc = sfw_write(&w, mb, body);
	if (!rc)
		rc = sfw_finish(&w);
	sfw_drop(&w);
	free(mb);
	return rc;
}

static int write_complete(struct xp *x, uint32_t m)
{
	struct sfw w;
	int rc;
	if (sfr_check(&x->t, mdir(x, m), K_COMPLETE, m, 0, x->buf, x->cbuf,
		      x->xx, NULL) == 0)
		return 0;
	rc = sfw_open(&w, &x->t, mdir(x, m), K_COMPLETE, m, 0, x->buf,
		      x->cbuf, x->xx, &x->written);
	if (!rc)
		rc = sfw_finish(&w);
	sfw_drop(&w);
	return rc;
}

static void progress(struct xp *x)
{
	if (x->o->progress)
		x->o->progress(x->o->ud, x->written, x->todo);
}

static void progress_tick(void *ud)
{
	progress(ud);
}

/* Pass 2: the same walk, writing the packs of this run's media that are
 * not kept, and the maps when their medium is in this run. */
static int write_set(struct xp *x)
{
	struct set *t = &x->t;
	int maps = t->map_medium >= x->first && t->map_medium <= x->last &&
		   !x->map_done;
	uint8_t *pw_buf = NULL, *pw_cbuf = NULL;
	XXH3_state_t *pxx = NULL;
	struct sfw mw, pw;
	uint8_t d[16], hdr[ENTRY_HDR], mv[8];
	uint64_t e, next = 0;
	uint32_t cp = 0;      /* pack of entry NEXT */
	int pw_open = 0, mw_open = 0, rc = 0;
	int need = maps;

	mw.fd = pw.fd = -1;
	for (uint32_t p = 0; p < t->npacks && !need; p++)
		if (t->packs[p].medium >= x->first &&
		    t->packs[p].medium <= x->last && !x->pack_done[p])
			need = 1;
	if (!need)
		return 0;
	pw_buf = malloc(SEED_MSG);
	pw_cbuf = malloc(SEED_MSG + SS_ABYTES);
	pxx = XXH3_createState();
	if (!pw_buf || !pw_cbuf || !pxx) {
		rc = -ENOMEM;
		goto out;
	}
	dtab_free(&x->tab);
	for (uint32_t ri = 0; ri < t->nrep; ri++) {
		struct srep *r = &t->reps[ri];
		if (maps) {
			if ((rc = sfw_open(&mw, t, mdir(x, t->map_medium), K_MAP,
					   ri, map_body(r), x->buf, x->cbuf,
					   x->xx, &x->written)))
				goto out;
			mw_open = 1;
		}
		for (uint64_t c = 0; c < r->nchunks; c++) {
			uint64_t ref = 0;
			int kind, wanted;
			/* Store: the data is read only for a pack written. */
			if ((kind = src_kind(x, ri, c, d)) < 0) {
				rc = kind;
				goto out;
			}
			if (kind == 0)
				goto mapput;
			if ((rc = dtab_assign(&x->tab, d, r->cs, next, &e)) < 0)
				goto out;
			ref = e + 1;
			if (rc == 1)
				goto mapput;
			rc = 0;
			while (cp < t->npacks && next >= t->packs[cp].first +
			       t->packs[cp].count)
				cp++;
			if (cp == t->npacks) {
				rc = bv_fail(BV_ECORRUPT, "seed: the walk differs "
					     "from its plan (the source "
					     "changed?)");
				goto out;
			}
			wanted = t->packs[cp].medium >= x->first &&
				 t->packs[cp].medium <= x->last &&
				 !x->pack_done[cp];
			if (wanted) {
				if (!pw_open) {
					if ((rc = sfw_open(&pw, t, mdir(x,
							t->packs[cp].medium),
							K_PACK, cp,
							t->packs[cp].body,
							pw_buf, pw_cbuf, pxx,
							&x->written)))
						goto out;
					pw.tick = progress_tick;
					pw.tick_ud = x;
					pw_open = 1;
				}
				if (!x->chunk_ok && (rc = src_read(x, r, c)))
					goto out;
				bv_le32(hdr, r->cs);
				bv_le32(hdr + 4, 0);
				memcpy(hdr + 8, d, 16);
				if ((rc = sfw_write(&pw, hdr, ENTRY_HDR)) ||
				    (rc = sfw_write(&pw, x->chunk, r->cs)))
					goto out;
				if (next + 1 == t->packs[cp].first +
				    t->packs[cp].count) {
					if ((rc = sfw_finish(&pw)))
						goto out;
					pw_open = 0;
					progress(x);
				}
			}
			next++;
mapput:
			if (maps) {
				bv_le64(mv, ref);
				if ((rc = sfw_write(&mw, mv, 8)))
					goto out;
			}
		}
		if (maps) {
			if ((rc = sfw_finish(&mw)))
				goto out;
			mw_open = 0;
			progress(x);
		}
	}
	if (next != t->nentries)
		rc = bv_fail(BV_ECORRUPT, "seed: the walk differs from its "
			     "plan (the source changed?)");
out:
	if (pw_open)
		sfw_drop(&pw);
	if (mw_open)
		sfw_drop(&mw);
	free(pw_buf);
	free(pw_cbuf);
	if (pxx)
		XXH3_freeState(pxx);
	return rc;
}

/* A rerun (or the run of a later medium) takes the times of the set as
 * first planned from a manifest of it in one of its folders, so that
 * every medium's manifest says the same. */
static void adopt_times(struct xp *x, const bv_seed_opts *o)
{
	struct set *t = &x->t;
	for (size_t i = 0; i < o->ndirs; i++) {
		struct label l;
		struct sfr r;
		uint64_t body = manifest_body(t);
		uint8_t *mb;
		int rc;
		if (label_read(o->dirs[i], &l) || memcmp(l.set_id, t->set_id, 16))
			continue;
		if (!(mb = malloc(body)))
			return;
		rc = sfr_open(&r, t, o->dirs[i], K_MANIFEST, l.medium, body,
			      x->buf, x->cbuf, x->xx, NULL);
		if (!rc)
			rc = sfr_read(&r, mb, body);
		if (!rc)
			rc = sfr_finish(&r);
		sfr_close(&r);
		if (!rc) {
			struct set u;
			memset(&u, 0, sizeof u);
			u.sealed = t->sealed;
			if (manifest_decode(&u, mb, body, o->dirs[i]) == 0) {
				t->time = u.time;
				t->created = u.created;
			}
			set_free(&u);
		}
		free(mb);
		if (!rc)
			break;
	}
	bv_fail(0, "%s", "");
}

static int export_run(struct xp *x, bv_seed_result *out)
{
	struct set *t = &x->t;
	const bv_seed_opts *o = x->o;
	int rc;

	if (o->media_size && o->media_size < (1u << 20))
		return bv_fail(BV_EINVAL, "media size %llu: at least 1 MiB",
			       (unsigned long long)o->media_size);
	t->media_size = o->media_size;
	t->pack_max = o->pack_size ? o->pack_size : PACK_DEFAULT;
	if (!o->pack_size && o->media_size && o->media_size / 8 < t->pack_max)
		t->pack_max = o->media_size / 8;
	for (uint32_t i = 0; i < t->nrep; i++)
		if (t->pack_max < ENTRY_HDR + t->reps[i].cs)
			t->pack_max = ENTRY_HDR + t->reps[i].cs;
	t->sealed = o->key != NULL;
	t->key = o->key;
	if (o->key)
		key_check(o->key, t->keycheck);
	x->chunk = malloc(BV_CHUNK_MAX);
	x->ra = malloc(RA_BYTES);
	x->kinds = malloc(DIGEST_BATCH);
	x->digests = malloc(DIGEST_BATCH * 16);
	x->buf = malloc(SEED_MSG);
	x->cbuf = malloc(SEED_MSG + SS_ABYTES);
	x->xx = XXH3_createState();
	x->drep = UINT32_MAX;
	if (!x->chunk || !x->ra || !x->kinds || !x->digests || !x->buf || !x->cbuf ||
	    !x->xx)
		return -ENOMEM;
	if ((rc = plan(x)))
		return rc;
	set_identity(t);
	x->first = o->first_medium ? o->first_medium : 1;
	adopt_times(x, o);
	if (x->first > t->nmedia)
		return bv_fail(BV_EINVAL, "medium %u: the set has %u", x->first,
			       t->nmedia);
	if (o->ndirs == 0)
		return bv_fail(BV_EINVAL, "seed export: no folder");
	x->last = x->first + (uint32_t)o->ndirs - 1;
	if (x->last > t->nmedia)
		x->last = t->nmedia;
	if (!(x->pack_done = calloc(t->npacks + 1, 1)))
		return -ENOMEM;
	for (uint32_t m = x->first; m <= x->last; m++)
		if ((rc = medium_prepare(x, m)))
			return rc;
	for (uint32_t m = x->first; m <= x->last; m++)
		if ((rc = write_manifest(x, m)))
			return rc;
	progress(x);
	if ((rc = write_set(x)))
		return rc;
	for (uint32_t m = x->first; m <= x->last; m++)
		if ((rc = write_complete(x, m)))
			return rc;
	progress(x);
	if (out) {
		memcpy(out->set_id, t->set_id, 16);
		out->encrypted = t->sealed;
		out->media = t->nmedia;
		out->next_medium = x->last < t->nmedia ? x->last + 1 : 0;
		out->replicas = t->nrep;
		out->entries = t->nentries;
		out->packs = t->npacks;
		for (uint32_t m = 0; m < t->nmedia; m++)
			out->bytes += t->mbytes[m];
		out->bytes_written = x->written;
		out->files_kept = x->kept;
		for (uint32_t i = 0; i < t->nrep; i++)
			out->chunks += t->reps[i].nchunks;
		snprintf(out->group, sizeof out->group, "%s", t->group);
		snprintf(out->label, sizeof out->label, "%s", t->label);
		out->time = t->time;
		out->rp = t->rp;
		out->zero_chunks = x->zeros;
	}
	bv_fail(0, "%s", "");
	return 0;
}

static void xp_free(struct xp *x)
{
	set_free(&x->t);
	dtab_free(&x->tab);
	free(x->chunk);
	free(x->ra);
	free(x->kinds);
	free(x->digests);
	free(x->buf);
	free(x->cbuf);
	free(x->pack_done);
	if (x->xx)
		XXH3_freeState(x->xx);
}

struct rp_find {
	uint64_t want;
	int found;
	bv_rp_info info;
};

static int rp_find_cb(void *ud, const bv_rp_info *rp)
{
	struct rp_find *f = ud;
	if (f->want == BV_RP_LATEST || rp->number == f->want) {
		f->info = *rp;
		f->found = 1;
	}
	return 0;
}

struct grp_find {
	const char *name;
	int found;
	uint32_t n;
	char members[BV_GROUP_MAX_MEMBERS][BV_NAME_MAX + 1];
};

static int grp_find_cb(void *ud, const bv_group_info *g)
{
	struct grp_find *f = ud;
	if (strcmp(g->name, f->name))
		return 0;
	f->found = 1;
	f->n = g->nmembers;
	for (uint32_t i = 0; i < g->nmembers && i < BV_GROUP_MAX_MEMBERS; i++)
		snprintf(f->members[i], BV_NAME_MAX + 1, "%s", g->members[i]);
	return 0;
}

static int opts_check(const bv_seed_opts *o)
{
	if (!o || !o->dirs || o->ndirs == 0)
		return bv_fail(BV_EINVAL, "seed: no media folder given");
	if (sodium_init() < 0)
		return bv_fail(-EIO, "seed: libsodium does not start");
	return 0;
}

int bv_seed_export(bv_store *s, const char *what, uint64_t rp,
		   const bv_seed_opts *o, bv_seed_result *out)
{
	static _Thread_local struct grp_find g;
	struct rp_find f = { .want = rp };
	struct xp x;
	int rc;

	bv_fail(0, "%s", "");
	memset(&x, 0, sizeof x);
	x.o = o;
	if (out)
		memset(out, 0, sizeof *out);
	if ((rc = opts_check(o)))
		return rc;
	if (rp == 0)
		return bv_fail(BV_EINVAL, "seed export of %s: a seed is of a "
			       "recovery point (not RP 0)", what);
	if ((rc = bv_rp_list(s, what, rp_find_cb, &f)))
		return rc;
	if (!f.found) {
		if (rp == BV_RP_LATEST)
			return bv_fail(BV_ENOTFOUND, "%s: no recovery point",
				       what);
		return bv_fail(BV_ENOTFOUND, "%s: no RP %llu", what,
			       (unsigned long long)rp);
	}
	memset(&g, 0, sizeof g);
	g.name = f.info.group;
	if ((rc = bv_group_list(s, grp_find_cb, &g)))
		return rc;
	if (!g.found)
		return bv_fail(BV_ENOTFOUND, "group %s: gone", f.info.group);
	struct set *t = &x.t;
	snprintf(t->group, sizeof t->group, "%s", f.info.group);
	/* REPLICA@RP: that replica alone; it keeps its group's name only
	 * when it is the group's one member. */
	{
		bv_replica_info ri;
		if (bv_replica_info_get(s, what, &ri) == 0 && g.n > 1) {
			g.n = 1;
			snprintf(g.members[0], BV_NAME_MAX + 1, "%s", what);
			snprintf(t->group, sizeof t->group, "%s", what);
		}
		bv_fail(0, "%s", "");
	}
	snprintf(t->label, sizeof t->label, "%s", f.info.label);
	t->rp = f.info.number;
	t->time = f.info.time;
	t->consistency = (uint32_t)f.info.consistency;
	t->created = (int64_t)time(NULL);
	t->source = SRC_STORE;
	memcpy(t->source_id, s->store_id, 16);
	if (!(t->reps = calloc(g.n ? g.n : 1, sizeof *t->reps))) {
		rc = -ENOMEM;
		goto out;
	}
	/* The members the RP holds (one added to the group later is not
	 * in it), in name order. */
	for (uint32_t i = 0; i < g.n; i++) {
		struct rp_find fr = { .want = t->rp };
		struct srep *r = &t->reps[t->nrep];
		if ((rc = bv_rp_list(s, g.members[i], rp_find_cb, &fr)))
			goto out;
		if (!fr.found)
			continue;
		snprintf(r->name, sizeof r->name, "%s", g.members[i]);
		if ((rc = bv_reader_open(s, r->name, t->rp, &r->rd)))
			goto out;
		r->size = bv_reader_size(r->rd);
		r->cs = bv_reader_chunk_size(r->rd);
		r->nchunks = (r->size + r->cs - 1) / r->cs;
		memcpy(r->id, fr.info.id, 16);
		t->nrep++;
		if (bv_ident_none(r->id)) {
			rc = bv_fail(BV_EINVAL, "replica %s: RP %llu has no "
				     "version identity (made before stores "
				     "kept them): a seed could not be "
				     "continued from", r->name,
				     (unsigned long long)t->rp);
			goto out;
		}
	}
	for (uint32_t i = 0; i < t->nrep; i++)
		for (uint32_t j = i + 1; j < t->nrep; j++)
			if (strcmp(t->reps[i].name, t->reps[j].name) > 0) {
				struct srep tmp = t->reps[i];
				t->reps[i] = t->reps[j];
				t->reps[j] = tmp;
			}
	if (t->nrep == 0) {
		rc = bv_fail(BV_ENOTFOUND, "%s@%llu: no replica", what,
			     (unsigned long long)t->rp);
		goto out;
	}
	rc = export_run(&x, out);
out:
	xp_free(&x);
	return rc;
}

int bv_seed_export_disks(const bv_seed_disk *d, size_t n, const char *group,
			 const char *label, int64_t tm, const bv_seed_opts *o,
			 bv_seed_result *out)
{
	struct xp x;
	struct set *t = &x.t;
	int rc;

	bv_fail(0, "%s", "");
	memset(&x, 0, sizeof x);
	x.o = o;
	if (out)
		memset(out, 0, sizeof *out);
	if ((rc = opts_check(o)))
		return rc;
	if (n == 0 || n > BV_GROUP_MAX_MEMBERS)
		return bv_fail(BV_EINVAL, "seed: %zu disks", n);
	if (n > 1 && (rc = bv_name_check("group", group ? group : "")))
		return rc;
	if (label && (rc = bv_rp_label_check(label)))
		return rc;
	snprintf(t->group, sizeof t->group, "%s", n > 1 ? group : d[0].name);
	snprintf(t->label, sizeof t->label, "%s", label ? label : "seed");
	t->rp = 1;
	t->time = tm ? tm : (int64_t)time(NULL);
	t->created = (int64_t)time(NULL);
	t->source = SRC_DISKS;
	if (!(t->reps = calloc(n, sizeof *t->reps)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct srep *r = &t->reps[i];
		uint32_t cs = d[i].chunk_size ? d[i].chunk_size :
						BV_CHUNK_DEFAULT;
		if ((rc = bv_name_check("replica", d[i].name)))
			goto out;
		if (!d[i].read || d[i].size % BV_SECTOR || !d[i].size ||
		    cs < BV_CHUNK_MIN || cs > BV_CHUNK_MAX || (cs & (cs - 1))) {
			rc = bv_fail(BV_EINVAL, "disk %s: size %llu or chunk "
				     "size %u not valid", d[i].name,
				     (unsigned long long)d[i].size, cs);
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(d[j].name, d[i].name)) {
				rc = bv_fail(BV_EINVAL, "disk %s: named twice",
					     d[i].name);
				goto out;
			}
		snprintf(r->name, sizeof r->name, "%s", d[i].name);
		r->size = d[i].size;
		r->cs = cs;
		r->nchunks = (r->size + cs - 1) / cs;
		r->disk = &d[i];
		t->nrep++;
	}
	rc = export_run(&x, out);
out:
	xp_free(&x);
	return rc;
}

/* ---- opening a set (verify, import) --------------------------------- */

struct rs {
	struct set t;
	const char **dir;    /* per medium */
	uint8_t *buf, *cbuf;
	XXH3_state_t *xx;
	uint64_t readb, total;
	const bv_seed_opts *o;
};

static void rs_free(struct rs *x)
{
	set_free(&x->t);
	free(x->dir);
	free(x->buf);
	free(x->cbuf);
	if (x->xx)
		XXH3_freeState(x->xx);
}

static int rs_open(struct rs *x, const char *const *dirs, size_t n,
		   const bv_seed_opts *o)
{
	struct set *t = &x->t;
	struct label l0, l;
	char a[33], b[33];
	uint8_t *mb = NULL;
	uint32_t m;
	int rc;

	memset(x, 0, sizeof *x);
	x->o = o;
	if (sodium_init() < 0)
		return bv_fail(-EIO, "seed: libsodium does not start");
	if (n == 0)
		return bv_fail(BV_EINVAL, "seed: no media folder given");
	x->buf = malloc(SEED_MSG);
	x->cbuf = malloc(SEED_MSG + SS_ABYTES);
	x->xx = XXH3_createState();
	if (!x->buf || !x->cbuf || !x->xx)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		rc = i ? label_read(dirs[i], &l) : label_read(dirs[i], &l0);
		if (rc == BV_ENOTFOUND)
			return bv_fail(BV_ENOTFOUND, "%s: not a seed medium (no "
				       "medium label)", dirs[i]);
		if (rc)
			return rc;
		if (i == 0) {
			if (!(x->dir = calloc(l0.media, sizeof *x->dir)))
				return -ENOMEM;
			l = l0;
		} else if (memcmp(l.set_id, l0.set_id, 16) ||
			   l.media != l0.media) {
			return bv_fail(BV_EINVAL, "%s: medium %u of seed set %s, "
				       "but %s is of set %s", dirs[i], l.medium,
				       hex16(l.set_id, a), dirs[0],
				       hex16(l0.set_id, b));
		}
		if (x->dir[l.medium - 1])
			return bv_fail(BV_EINVAL, "%s and %s: both medium %u",
				       x->dir[l.medium - 1], dirs[i], l.medium);
		x->dir[l.medium - 1] = dirs[i];
	}
	memcpy(t->set_id, l0.set_id, 16);
	t->sealed = l0.sealed;
	for (m = 1; m <= l0.media; m++)
		if (!x->dir[m - 1])
			return bv_fail(BV_ENOTFOUND, "seed set %s: medium %u of %u "
				       "is missing (give its folder too)",
				       hex16(t->set_id, a), m, l0.media);
	if (t->sealed) {
		uint8_t kc[16];
		if (!o || !o->key)
			return bv_fail(BV_EINVAL, "seed set %s is encrypted: "
				       "give its key (--key)",
				       hex16(t->set_id, a));
		key_check(o->key, kc);
		if (memcmp(kc, l0.keycheck, 16))
			return bv_fail(BV_ECHECKSUM, "seed set %s: wrong key "
				       "(not the key it was made with)",
				       hex16(t->set_id, a));
		t->key = o->key;
	}
	/* The manifest's body length is in its header, authenticated
	 * with the rest (a sealed file's header is its additional data). */
	{
		char path[PATH_MAX];
		uint8_t h[FHDR];
		size_t got = 0;
		int fd;
		snprintf(path, sizeof path, "%s/manifest", dirs[0]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return bv_fail(errno == ENOENT ? BV_ENOTFOUND : -errno,
				       "%s: %s", path, strerror(errno));
		rc = read_all(fd, h, FHDR, &got);
		close(fd);
		if (rc || got != FHDR)
			return bv_fail(BV_ETRUNCATED, "%s: no header", path);
		uint64_t body = bv_get_le64(h + 40);
		if (body < MAN_FIXED || body > (256u << 20))
			return bv_fail(BV_ECORRUPT, "%s: damaged header", path);
		struct sfr r;
		if (!(mb = malloc(body)))
			return -ENOMEM;
		rc = sfr_open(&r, t, dirs[0], K_MANIFEST, l0.medium, body,
			      x->buf, x->cbuf, x->xx, NULL);
		if (!rc)
			rc = sfr_read(&r, mb, body);
		if (!rc)
			rc = sfr_finish(&r);
		sfr_close(&r);
		if (!rc)
			rc = manifest_decode(t, mb, body, path);
		free(mb);
		if (rc)
			return rc;
		if (t->nmedia != l0.media)
			return bv_fail(BV_ECORRUPT, "%s: %u media, but its label "
				       "says %u", path, t->nmedia, l0.media);
	}
	/* Every file there, of the right size, before anything is read. */
	for (m = 1; m <= t->nmedia; m++) {
		char path[PATH_MAX], name[32];
		struct stat st;
#define HAVE(kind, num, body) do { \
		file_name(name, sizeof name, kind, num); \
		snprintf(path, sizeof path, "%s/%s", x->dir[m - 1], name); \
		if (stat(path, &st)) \
			return bv_fail(errno == ENOENT ? BV_ENOTFOUND : -errno, \
				       "medium %u: %s: %s%s", m, path, \
				       strerror(errno), errno == ENOENT && \
				       kind == K_COMPLETE ? " (the export of " \
				       "this medium did not finish)" : ""); \
		if ((uint64_t)st.st_size != file_size(body, t->sealed)) \
			return bv_fail(BV_ETRUNCATED, "medium %u: %s: %llu " \
				       "bytes, but the set says %llu " \
				       "(truncated or damaged)", m, path, \
				       (unsigned long long)st.st_size, \
				       (unsigned long long) \
				       file_size(body, t->sealed)); \
	} while (0)
		HAVE(K_COMPLETE, m, 0);
		HAVE(K_MANIFEST, m, manifest_body(t));
		if (m == t->map_medium)
			for (uint32_t i = 0; i < t->nrep; i++)
				HAVE(K_MAP, i, map_body(&t->reps[i]));
		for (uint32_t p = 0; p < t->npacks; p++)
			if (t->packs[p].medium == m)
				HAVE(K_PACK, p, t->packs[p].body);
#undef HAVE
		x->total += t->mbytes[m - 1];
	}
	return 0;
}

/* The packs, read entry by entry in entry order across the media. */
struct pr {
	struct rs *x;
	struct sfr r;
	int open;
	uint32_t pack;
	uint64_t left; /* entries left in the open pack */
	uint64_t next; /* the next entry's number */
};

static int pr_next(struct pr *p, uint32_t cs, uint8_t *data,
		   uint8_t digest[16])
{
	struct set *t = &p->x->t;
	uint8_t hdr[ENTRY_HDR], d[16];
	int rc;

	if (!p->open) {
		if (p->pack >= t->npacks)
			return bv_fail(BV_ECORRUPT, "seed: a map names entry "
				       "%llu past the set's %llu",
				       (unsigned long long)p->next,
				       (unsigned long long)t->nentries);
		struct spack *sp = &t->packs[p->pack];
		if ((rc = sfr_open(&p->r, t, p->x->dir[sp->medium - 1], K_PACK,
				   p->pack, sp->body, p->x->buf, p->x->cbuf,
				   p->x->xx, &p->x->readb)))
			return rc;
		p->open = 1;
		p->left = sp->count;
	}
	if ((rc = sfr_read(&p->r, hdr, ENTRY_HDR)))
		return rc;
	if (bv_get_le32(hdr) != cs || bv_get_le32(hdr + 4))
		return bv_fail(BV_ECORRUPT, "%s: entry %llu holds %u bytes, but "
			       "the map needs a chunk of %u", p->r.path,
			       (unsigned long long)p->next,
			       bv_get_le32(hdr), cs);
	if ((rc = sfr_read(&p->r, data, cs)))
		return rc;
	bv_chunk_digest(data, cs, d);
	if (memcmp(d, hdr + 8, 16))
		return bv_fail(BV_ECHECKSUM, "%s: entry %llu: its digest does "
			       "not match its bytes (damaged)", p->r.path,
			       (unsigned long long)p->next);
	memcpy(digest, d, 16);
	p->next++;
	if (--p->left == 0) {
		rc = sfr_finish(&p->r);
		sfr_close(&p->r);
		p->open = 0;
		p->pack++;
		if (rc)
			return rc;
		if (p->x->o && p->x->o->progress)
			p->x->o->progress(p->x->o->ud, p->x->readb,
					  p->x->total);
	}
	return 0;
}

static void pr_close(struct pr *p)
{
	if (p->open)
		sfr_close(&p->r);
	p->open = 0;
}

static void result_fill(const struct rs *x, bv_seed_result *out)
{
	const struct set *t = &x->t;
	memcpy(out->set_id, t->set_id, 16);
	out->encrypted = t->sealed;
	out->media = t->nmedia;
	out->replicas = t->nrep;
	out->entries = t->nentries;
	out->packs = t->npacks;
	out->bytes = x->total;
	out->rp = t->rp;
	out->time = t->time;
	snprintf(out->group, sizeof out->group, "%s", t->group);
	snprintf(out->label, sizeof out->label, "%s", t->label);
	for (uint32_t i = 0; i < t->nrep; i++)
		out->chunks += t->reps[i].nchunks;
}

/* Walks the maps and the packs together, calling FN for each data chunk
 * (a new entry with its bytes, or a repeat: DATA NULL, the entry's
 * number). Maps must name entries in first-use order. */
static int walk(struct rs *x,
		int (*fn)(void *ud, uint32_t ri, uint64_t c, uint64_t e,
			  const uint8_t *data, const uint8_t *digest),
		void *ud, uint64_t *zeros)
{
	struct set *t = &x->t;
	struct pr p = { .x = x };
	struct sfr mr;
	uint8_t *data = malloc(BV_CHUNK_MAX), mv[8], dg[16];
	/* The map reader has buffers of its own beside the packs'. */
	uint8_t *mbuf = malloc(SEED_MSG), *mcbuf = malloc(SEED_MSG + SS_ABYTES);
	XXH3_state_t *mxx = XXH3_createState();
	int rc = 0;

	if (!data || !mbuf || !mcbuf || !mxx) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t ri = 0; ri < t->nrep && !rc; ri++) {
		struct srep *r = &t->reps[ri];
		if ((rc = sfr_open(&mr, t, x->dir[t->map_medium - 1], K_MAP, ri,
				   map_body(r), mbuf, mcbuf, mxx, &x->readb)))
			break;
		for (uint64_t c = 0; c < r->nchunks; c++) {
			if ((rc = sfr_read(&mr, mv, 8)))
				break;
			uint64_t ref = bv_get_le64(mv);
			if (ref == 0) {
				(*zeros)++;
				continue;
			}
			if (ref - 1 > p.next) {
				rc = bv_fail(BV_ECORRUPT, "%s: chunk %llu names "
					     "entry %llu before entry %llu came",
					     mr.path, (unsigned long long)c,
					     (unsigned long long)(ref - 1),
					     (unsigned long long)p.next);
				break;
			}
			if (ref - 1 == p.next) {
				if ((rc = pr_next(&p, r->cs, data, dg)))
					break;
				rc = fn(ud, ri, c, ref - 1, data, dg);
			} else {
				rc = fn(ud, ri, c, ref - 1, NULL, NULL);
			}
			if (rc)
				break;
		}
		if (!rc)
			rc = sfr_finish(&mr);
		sfr_close(&mr);
	}
	if (!rc && (p.next != t->nentries || p.open))
		rc = bv_fail(BV_ECORRUPT, "seed set: the maps use %llu of its "
			     "%llu chunks", (unsigned long long)p.next,
			     (unsigned long long)t->nentries);
out:
	pr_close(&p);
	free(data);
	free(mbuf);
	free(mcbuf);
	if (mxx)
		XXH3_freeState(mxx);
	return rc;
}

static int verify_fn(void *ud, uint32_t ri, uint64_t c, uint64_t e,
		     const uint8_t *data, const uint8_t *digest)
{
	(void)ud; (void)ri; (void)c; (void)e; (void)data; (void)digest;
	return 0;
}

/* Every medium's manifest and completion marker read through. */
static int check_media(struct rs *x)
{
	int rc = 0;
	for (uint32_t m = 1; m <= x->t.nmedia && !rc; m++) {
		rc = sfr_check(&x->t, x->dir[m - 1], K_MANIFEST, m,
			       manifest_body(&x->t), x->buf, x->cbuf, x->xx,
			       &x->readb);
		if (!rc)
			rc = sfr_check(&x->t, x->dir[m - 1], K_COMPLETE, m, 0,
				       x->buf, x->cbuf, x->xx, &x->readb);
	}
	return rc;
}

int bv_seed_verify(const char *const *dirs, size_t n, const bv_seed_opts *o,
		   bv_seed_result *out)
{
	struct rs x;
	uint64_t zeros = 0;
	int rc;

	bv_fail(0, "%s", "");
	if (out)
		memset(out, 0, sizeof *out);
	if ((rc = rs_open(&x, dirs, n, o)))
		goto out;
	if (!(rc = check_media(&x)))
		rc = walk(&x, verify_fn, NULL, &zeros);
	if (!rc && out) {
		result_fill(&x, out);
		out->zero_chunks = zeros;
	}
out:
	rs_free(&x);
	return rc;
}

/* ---- import ----------------------------------------------------------- */

/* The fingerprint and digest of each entry, for the repeats: in memory
 * up to FP_MEM bytes of them; past that in an unlinked temporary file
 * (entries come in order, so it is appended through a buffer and read
 * back 32 bytes at a time, from the page cache mostly).
 * BV_SEED_FP_MEM=BYTES in the environment sets the bound (tests). */
#define FP_MEM (256ull << 20)
#define FP_WBUF 32768u /* entries per write */

struct fptab {
	uint8_t (*mem)[32];
	int fd;
	uint8_t (*wbuf)[32];
	uint64_t wfirst; /* entry of wbuf[0] */
	size_t wn;
};

static int fptab_open(struct fptab *f, uint64_t n)
{
	const char *tmp = getenv("TMPDIR");
	const char *lim = getenv("BV_SEED_FP_MEM"); /* tests: the bound */
	uint64_t max = lim && *lim ? strtoull(lim, NULL, 10) : FP_MEM;
	memset(f, 0, sizeof *f);
	f->fd = -1;
	if (n * 32 <= max) {
		if (!(f->mem = malloc((n ? n : 1) * 32)))
			return -ENOMEM;
		return 0;
	}
	if (!(f->wbuf = malloc((size_t)FP_WBUF * 32)))
		return -ENOMEM;
	f->fd = open(tmp && *tmp ? tmp : "/tmp", O_RDWR | O_TMPFILE |
		     O_CLOEXEC, 0600);
	if (f->fd < 0)
		return bv_fail(-errno, "seed import: a temporary file for %llu "
			       "fingerprints in %s: %s", (unsigned long long)n,
			       tmp && *tmp ? tmp : "/tmp", strerror(errno));
	return 0;
}

static int fptab_flush(struct fptab *f)
{
	ssize_t w;
	size_t len = f->wn * 32;
	if (!f->wn)
		return 0;
	w = pwrite(f->fd, f->wbuf, len, (off_t)(f->wfirst * 32));
	if (w != (ssize_t)len)
		return bv_fail(w < 0 ? -errno : -EIO, "seed import: the "
			       "fingerprints' temporary file: %s",
			       w < 0 ? strerror(errno) : "short write");
	f->wfirst += f->wn;
	f->wn = 0;
	return 0;
}

static int fptab_put(struct fptab *f, uint64_t e, const uint8_t v[32])
{
	int rc;
	if (f->mem) {
		memcpy(f->mem[e], v, 32);
		return 0;
	}
	if (f->wn == FP_WBUF && (rc = fptab_flush(f)))
		return rc;
	memcpy(f->wbuf[f->wn++], v, 32);
	return 0;
}

static int fptab_get(struct fptab *f, uint64_t e, uint8_t v[32])
{
	if (f->mem) {
		memcpy(v, f->mem[e], 32);
		return 0;
	}
	if (e >= f->wfirst) {
		memcpy(v, f->wbuf[e - f->wfirst], 32);
		return 0;
	}
	ssize_t r = pread(f->fd, v, 32, (off_t)(e * 32));
	if (r != 32)
		return bv_fail(r < 0 ? -errno : -EIO, "seed import: the "
			       "fingerprints' temporary file: %s",
			       r < 0 ? strerror(errno) : "short read");
	return 0;
}

static void fptab_close(struct fptab *f)
{
	free(f->mem);
	free(f->wbuf);
	if (f->fd >= 0)
		close(f->fd);
}

struct im {
	bv_store *s;
	struct rs *x;
	bv_ingest *in;
	int slot[BV_GROUP_MAX_MEMBERS];
	struct fptab fp;
};

static int import_fn(void *ud, uint32_t ri, uint64_t c, uint64_t e,
		     const uint8_t *data, const uint8_t *digest)
{
	struct im *m = ud;
	struct srep *r = &m->x->t.reps[ri];
	uint64_t off = c * r->cs;
	size_t len = r->size - off < r->cs ? (size_t)(r->size - off) : r->cs;
	uint8_t v[32];
	bv_fp fp;
	int rc;

	if (data) {
		/* Fingerprinted under this store's key, tagged with the
		 * replica's group in a group-scoped store (SEED.md,
		 * "Fingerprints"): as the session does, which stores it
		 * unless the store has it. */
		if ((rc = bv_ingest_fingerprint(m->in, m->slot[ri], data,
						r->cs, &fp)))
			return rc;
		memcpy(v, &fp, 16);
		memcpy(v + 16, digest, 16);
		if ((rc = fptab_put(&m->fp, e, v)))
			return rc;
		return bv_ingest_write(m->in, m->slot[ri], off, data, len);
	}
	if ((rc = fptab_get(&m->fp, e, v)))
		return rc;
	memcpy(&fp, v, 16);
	return bv_ingest_ref(m->in, m->slot[ri], c, &fp, v + 16);
}

int bv_seed_import(bv_store *s, const char *const *dirs, size_t n,
		   const bv_seed_opts *o, bv_seed_result *out)
{
	struct rs x;
	struct im m = { .s = s };
	struct bv_rrec rr;
	bv_stats before, after;
	uint64_t zeros = 0, rp = 0;
	uint8_t key[32], val[64];
	char a[33], b[33];
	uint32_t same = 0;
	int rc, fp_open = 0;

	bv_fail(0, "%s", "");
	if (out)
		memset(out, 0, sizeof *out);
	if ((rc = bv_store_writable(s)))
		return rc;
	if ((rc = rs_open(&x, dirs, n, o)) || (rc = check_media(&x)))
		goto out;
	struct set *t = &x.t;
	/* The store's record of the set: imported before, whatever its
	 * replicas did since (their history went on from it). */
	{
		uint8_t v[64];
		size_t vl = 0;
		memcpy(key, "seed/", 5);
		memcpy(key + 5, t->set_id, 16);
		rc = bv_kv_get(s->kv, BV_CF_META, key, 21, v, sizeof v, &vl);
		if (rc == 0) {
			if (out) {
				result_fill(&x, out);
				out->already = 1;
				out->rp = 1;
			}
			goto out;
		}
		if (rc != ST_ENOTFOUND) {
			rc = bv_fail_storage(rc, "seed import");
			goto out;
		}
		rc = 0;
	}
	for (uint32_t i = 0; i < t->nrep; i++) {
		struct srep *r = &t->reps[i];
		bv_replica_info ri;
		rc = bv_replica_info_get(s, r->name, &ri);
		if (rc == BV_ENOTFOUND) {
			rc = 0;
			continue;
		}
		if (rc)
			goto out;
		if (!memcmp(ri.head_id, r->id, 16)) {
			same++;
			continue;
		}
		uint64_t ver;
		if ((rc = bv_rrec_get(s, r->name, &rr)) == 0 &&
		    bv_ident_find(s, rr.rid, r->id, &ver) == 0) {
			rc = bv_fail(BV_EEXIST, "replica %s: the seed's version "
				     "%s is its version %llu, but its head is "
				     "now %s (it went on after the seed was "
				     "imported)", r->name, hex16(r->id, a),
				     (unsigned long long)ver,
				     hex16(ri.head_id, b));
			goto out;
		}
		rc = bv_fail(BV_EEXIST, "replica %s exists with another history: "
			     "its head is version %s, the seed's is %s",
			     r->name, hex16(ri.head_id, a), hex16(r->id, b));
		goto out;
	}
	if (same == t->nrep) {
		if (out) {
			result_fill(&x, out);
			out->already = 1;
			bv_replica_info ri;
			if (bv_replica_info_get(s, t->reps[0].name, &ri) == 0)
				out->rp = ri.latest_rp;
		}
		rc = 0;
		goto out;
	}
	if (same) {
		rc = bv_fail(BV_EEXIST, "seed set %s: replica %s exists, from "
			     "this seed, but others of it do not",
			     hex16(t->set_id, a), t->reps[0].name);
		goto out;
	}
	if (t->nrep > BV_SESSION_MAX) {
		rc = bv_fail(BV_EINVAL, "seed set %s holds group %s of %u "
			     "replicas: one import takes at most %d",
			     hex16(t->set_id, a), t->group, t->nrep,
			     BV_SESSION_MAX);
		goto out;
	}
	if ((rc = fptab_open(&m.fp, t->nentries)))
		goto out;
	fp_open = 1;
	m.x = &x;
	if ((rc = bv_stats_counters(s, &before)) ||
	    (rc = bv_ingest_begin(s, &m.in)))
		goto out;
	/* A group (or a replica whose group had another name) comes back
	 * as the group it was. */
	if ((t->nrep > 1 || strcmp(t->group, t->reps[0].name)) &&
	    (rc = bv_ingest_new_group(m.in, t->group)))
		goto abort;
	for (uint32_t i = 0; i < t->nrep; i++) {
		struct srep *r = &t->reps[i];
		rc = bv_ingest_add_new(m.in, r->name, r->size, r->cs);
		if (rc < 0)
			goto abort;
		m.slot[i] = rc;
		if ((rc = bv_ingest_result_id(m.in, m.slot[i], r->id)))
			goto abort;
	}
	memcpy(key, "seed/", 5);
	memcpy(key + 5, t->set_id, 16);
	memset(val, 0, sizeof val);
	val[0] = 1;
	bv_le64(val + 1, (uint64_t)time(NULL));
	bv_le64(val + 9, (uint64_t)t->created);
	bv_le64(val + 17, t->rp);
	memcpy(val + 25, t->source_id, 16);
	if ((rc = bv_ingest_meta_put(m.in, key, 21, val, 41)))
		goto abort;
	if ((rc = walk(&x, import_fn, &m, &zeros)))
		goto abort;
	bv_commit_opts co = { .make_rp = 1, .label = t->label,
			      .consistency = (int)t->consistency,
			      .time = t->time };
	rc = bv_ingest_commit(m.in, &co, &rp);
	m.in = NULL;
	if (rc)
		goto out;
	if (bv_stats_counters(s, &after))
		after = before;
	if (out) {
		result_fill(&x, out);
		out->zero_chunks = zeros;
		out->rp = rp;
		out->chunks_new = after.chunks - before.chunks;
	}
	goto out;
abort:
	bv_ingest_abort(m.in);
out:
	if (fp_open)
		fptab_close(&m.fp);
	rs_free(&x);
	return rc;
}

/* ---- key files --------------------------------------------------------- */

int bv_seed_keygen(const char *path)
{
	uint8_t k[BV_SEED_KEY];
	char text[sizeof KEY_MAGIC + 2 * BV_SEED_KEY + 2];
	int fd, rc = 0;

	bv_fail(0, "%s", "");
	if (sodium_init() < 0)
		return bv_fail(-EIO, "seed: libsodium does not start");
	randombytes_buf(k, sizeof k);
	snprintf(text, sizeof text, "%s", KEY_MAGIC);
	for (int i = 0; i < BV_SEED_KEY; i++)
		snprintf(text + strlen(KEY_MAGIC) + 2 * i, 3, "%02x", k[i]);
	strcat(text, "\n");
	sodium_memzero(k, sizeof k);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = errno == EEXIST ? BV_EEXIST : -errno;
		rc = bv_fail(rc, "%s: %s", path, errno == EEXIST ?
			     "exists (a key file is never overwritten)" :
			     strerror(errno));
		goto out;
	}
	if ((rc = write_all(fd, text, strlen(text))) == 0 && fsync(fd))
		rc = -errno;
	close(fd);
	if (rc) {
		unlink(path);
		rc = bv_fail(rc, "%s: %s", path, strerror(-rc));
	}
out:
	sodium_memzero(text, sizeof text);
	return rc;
}

int bv_seed_key_load(const char *path, uint8_t key[BV_SEED_KEY])
{
	char text[256];
	size_t got = 0, ml = strlen(KEY_MAGIC);
	int fd, rc;

	bv_fail(0, "%s", "");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bv_fail(-errno, "key file %s: %s", path, strerror(errno));
	rc = read_all(fd, text, sizeof text - 1, &got);
	close(fd);
	if (rc)
		return bv_fail(rc, "key file %s: %s", path, strerror(-rc));
	text[got] = 0;
	if (got < ml + 2 * BV_SEED_KEY || memcmp(text, KEY_MAGIC, ml))
		return bv_fail(BV_EFORMAT, "key file %s: not a bvault seed key "
			       "(made by bvault seed keygen)", path);
	for (int i = 0; i < BV_SEED_KEY; i++) {
		unsigned v;
		char h[3] = { text[ml + 2 * i], text[ml + 2 * i + 1], 0 };
		if (sscanf(h, "%02x", &v) != 1) {
			sodium_memzero(text, sizeof text);
			return bv_fail(BV_EFORMAT, "key file %s: damaged", path);
		}
		key[i] = (uint8_t)v;
	}
	sodium_memzero(text, sizeof text);
	return 0;
}
