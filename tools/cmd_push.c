/*
 * cmd_push.c: bvault push, the replication of a group's RPs to a second
 * server (a bvaultd), which keeps their numbers, labels, times and
 * version identities (DESIGN.md "Seeding and replication").
 *
 * The remote's own RP list is the truth, asked for each member (RPSV,
 * tools/PROTOCOL.md): every RP both sides have must name the same
 * version identities (else the remote holds another history, and nothing
 * is sent); the RPs the remote lacks, numbered above its latest, go
 * oldest first, each as one session (BEGIN, ADDV and the diff's records
 * for each member, COMMIT with the RP's number): the difference from the
 * RP before it that the remote holds, or a full stream when it holds
 * none. A push cut off anywhere leaves the remote with whole RPs only
 * (an open session is aborted), and the next push goes on from there.
 *
 * The local store is only read (opened read-only), so a push runs beside
 * the local bvaultd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bvault.h"
#include "cli.h"
#include "netclient.h"
#include "proto.h"

#define PUSH_MEMBERS 256

/* One RP of one replica, here or there. */
struct rpv {
	uint64_t number;
	int64_t time;
	int consistency;
	char label[BV_LABEL_MAX + 1];
	uint8_t id[BV_ID_SIZE];
	uint64_t size;
};

struct rplist {
	struct rpv *v;
	size_t n, cap;
};

struct member {
	char name[BV_NAME_MAX + 1];
	struct rplist here, there;
	int exists_there;
	char group_there[BV_NAME_MAX + 1];
	uint64_t latest_there; /* the remote group's highest RP number */
	uint64_t size_there;   /* the remote replica's size at its head */
	uint8_t head_there[BV_ID_SIZE]; /* the identity of its head there */
	uint32_t slot;         /* in the session being sent */
};

static _Thread_local struct {
	const char *server, *group;
	struct nc nc;
	struct member *m;
	size_t nm;
	uint64_t data, zero, wire; /* of the RP being sent */
	struct member *cur;        /* the member being sent */
	int failed;                /* a sink call failed: the message is
				    * in nc.err */
} P;

static const char *idhex(const uint8_t id[BV_ID_SIZE], char out[33])
{
	static const char *const none = "(none)";
	int zero = 1;
	for (int i = 0; i < BV_ID_SIZE; i++) {
		snprintf(out + 2 * i, 3, "%02x", id[i]);
		zero &= !id[i];
	}
	return zero ? none : out;
}

static int id_none(const uint8_t id[BV_ID_SIZE])
{
	for (int i = 0; i < BV_ID_SIZE; i++)
		if (id[i])
			return 0;
	return 1;
}

static struct rpv *rplist_add(struct rplist *l)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 32;
		struct rpv *v = realloc(l->v, nc * sizeof *v);
		if (!v)
			return NULL;
		l->v = v;
		l->cap = nc;
	}
	memset(&l->v[l->n], 0, sizeof l->v[0]);
	return &l->v[l->n++];
}

static const struct rpv *rplist_find(const struct rplist *l, uint64_t n)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].number == n)
			return &l->v[i];
	return NULL;
}

/* ---- what is here --------------------------------------------------- */

struct find_group {
	const char *name;
	int found;
};

static int group_cb(void *ud, const bv_group_info *g)
{
	struct find_group *f = ud;
	if (strcmp(g->name, f->name))
		return 0;
	f->found = 1;
	P.m = calloc(g->nmembers ? g->nmembers : 1, sizeof *P.m);
	if (!P.m)
		return -ENOMEM;
	for (uint32_t i = 0; i < g->nmembers; i++)
		snprintf(P.m[i].name, sizeof P.m[i].name, "%s", g->members[i]);
	P.nm = g->nmembers;
	return 1;
}

static int here_cb(void *ud, const bv_rp_info *rp)
{
	struct rplist *l = ud;
	struct rpv *v = rplist_add(l);
	if (!v)
		return -ENOMEM;
	v->number = rp->number;
	v->time = rp->time;
	v->consistency = rp->consistency;
	snprintf(v->label, sizeof v->label, "%s", rp->label);
	memcpy(v->id, rp->id, BV_ID_SIZE);
	v->size = rp->size;
	return 0;
}

/* ---- what is there -------------------------------------------------- */

/* A server-side refusal or a broken connection, as an error naming the
 * server and group. */
static int net_error(const char *what)
{
	return op_error("server %s, group %s: %s: %s", P.server, P.group, what,
			P.nc.err);
}

/* Asks the remote for member M's RPs (RPSV, a page at a time). */
static int ask_remote(struct member *m)
{
	uint64_t first = 1;
	size_t nl = strlen(m->name);
	uint8_t *ans = malloc(BVP_PAYLOAD_MAX);
	char what[128];
	int rc = 0;

	if (!ans)
		return op_error("%s", strerror(ENOMEM));
	snprintf(what, sizeof what, "RPs of replica %s", m->name);
	for (;;) {
		uint8_t *p = P.nc.frame + BVP_HDR;
		bvp_put64(p, first);
		p[8] = (uint8_t)nl;
		memcpy(p + 9, m->name, nl);
		if (nc_send(&P.nc, BVP_RPSV, 9 + nl)) {
			rc = net_error(what);
			break;
		}
		long len = nc_answer(&P.nc, ans, BVP_PAYLOAD_MAX);
		if (len == NC_ERROR && P.nc.code == BVP_E_NOTFOUND) {
			m->exists_there = 0;
			break;
		}
		if (len == NC_ERROR && P.nc.code == BVP_E_DENIED &&
		    (P.nm > 1 || strcmp(m->name, P.group))) {
			rc = op_error("server %s, group %s: %s: %s (a group of "
				      "several replicas, or named unlike its "
				      "replica, must exist on the remote with "
				      "the same members: bvault replica "
				      "create and group create there)",
				      P.server, P.group, what, P.nc.err);
			break;
		}
		if (len == NC_ERROR && P.nc.code == BVP_E_PROTO &&
		    strstr(P.nc.err, "unknown message type")) {
			rc = op_error("server %s, group %s: %s: %s (a bvaultd "
				      "older than push, which does not know "
				      "RPSV: upgrade it)", P.server, P.group,
				      what, P.nc.err);
			break;
		}
		if (len < 0) {
			rc = net_error(what);
			break;
		}
		struct bvp_rd r = { ans, (size_t)len, 0 };
		m->latest_there = bvp_u64(&r);
		m->size_there = bvp_u64(&r);
		const uint8_t *hid = bvp_take(&r, BV_ID_SIZE);
		if (hid)
			memcpy(m->head_there, hid, BV_ID_SIZE);
		bvp_name(&r, m->group_there);
		uint32_t n = bvp_u32(&r);
		m->exists_there = 1;
		for (uint32_t i = 0; i < n && !r.bad; i++) {
			struct rpv *v = rplist_add(&m->there);
			if (!v) {
				rc = op_error("%s", strerror(ENOMEM));
				goto out;
			}
			v->number = bvp_u64(&r);
			v->time = (int64_t)bvp_u64(&r);
			v->consistency = bvp_u8(&r);
			const uint8_t *id = bvp_take(&r, BV_ID_SIZE);
			uint8_t ll = bvp_u8(&r);
			const uint8_t *lb = ll ? bvp_take(&r, ll) : NULL;
			if (id)
				memcpy(v->id, id, BV_ID_SIZE);
			if (lb && ll <= BV_LABEL_MAX)
				memcpy(v->label, lb, ll);
			if (v->number < first || (ll && !lb) ||
			    ll > BV_LABEL_MAX)
				r.bad = 1;
			first = v->number + 1;
		}
		if (r.bad || r.left) {
			rc = op_error("server %s: a malformed answer to RPSV "
				      "(%s)", P.server, what);
			break;
		}
		if (n == 0 || first == 0)
			break;
	}
out:
	free(ans);
	return rc;
}

/* ---- sending one RP --------------------------------------------------- */

static int sink_fail(void)
{
	P.failed = 1;
	return -EIO;
}

static int sink_begin(void *ud, const struct bv_stream_header *h)
{
	struct member *m = ud;
	uint8_t *p = P.nc.frame + BVP_HDR, ans[4];
	size_t nl = strlen(m->name);

	bvp_put64(p, h->base_rp);
	bvp_put64(p + 8, h->disk_size);
	memcpy(p + 16, h->base_id, BV_ID_SIZE);
	memcpy(p + 16 + BV_ID_SIZE, h->result_id, BV_ID_SIZE);
	p[16 + 2 * BV_ID_SIZE] = (uint8_t)nl;
	memcpy(p + 17 + 2 * BV_ID_SIZE, m->name, nl);
	if (nc_send(&P.nc, BVP_ADDV, 17 + 2 * BV_ID_SIZE + nl))
		return sink_fail();
	long len = nc_answer(&P.nc, ans, sizeof ans);
	if (len < 0)
		return sink_fail();
	if (len != 4) {
		snprintf(P.nc.err, sizeof P.nc.err, "a malformed answer to "
			 "ADDV");
		return sink_fail();
	}
	m->slot = bvp_get32(ans);
	/* A full stream sends no zero chunk: it must go to a replica that
	 * is new or all zeros (made empty there, no version yet). */
	if (h->base_rp == 0 && m->exists_there && !id_none(m->head_there)) {
		char a[33];
		snprintf(P.nc.err, sizeof P.nc.err, "the remote replica has "
			 "version %s and no RP of this history: a first RP "
			 "goes to a new or empty replica only",
			 idhex(m->head_there, a));
		return sink_fail();
	}
	P.wire += BVP_HDR + 17 + 2 * BV_ID_SIZE + nl;
	/* An existing replica is set to the RP's size first. */
	if (m->exists_there && m->size_there != h->disk_size) {
		if (nc_send_resize(&P.nc, m->slot, h->disk_size))
			return sink_fail();
		P.wire += BVP_HDR + 12;
	}
	return 0;
}

static int sink_data(void *ud, uint64_t off, const void *buf, size_t len)
{
	struct member *m = ud;
	const uint8_t *q = buf;

	while (len) {
		size_t n = len < BVP_DATA_MAX ? len : BVP_DATA_MAX;
		if (nc_send_data(&P.nc, m->slot, off, q, n))
			return sink_fail();
		P.data += n;
		P.wire += BVP_HDR + 12 + n;
		q += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int sink_zero(void *ud, uint64_t off, uint64_t len)
{
	struct member *m = ud;

	if (nc_send_zero(&P.nc, m->slot, off, len))
		return sink_fail();
	P.zero += len;
	P.wire += BVP_HDR + 20;
	return 0;
}

/* Sends group RP RP as one session, each member that it holds diffed
 * from RP BASE (0, or a member not in BASE: a full stream). */
static int send_rp(bv_store *s, const struct rpv *rp, uint64_t base)
{
	char what[160];
	uint8_t ans[8];
	int rc, members = 0;

	snprintf(what, sizeof what, "RP %" PRIu64, rp->number);
	P.data = P.zero = P.wire = 0;
	if (nc_send(&P.nc, BVP_BEGIN, 0) || nc_answer(&P.nc, NULL, 0) < 0)
		return net_error(what);
	for (size_t i = 0; i < P.nm; i++) {
		struct member *m = &P.m[i];
		if (!rplist_find(&m->here, rp->number))
			continue; /* not a member at this RP */
		uint64_t from = base && rplist_find(&m->here, base) ? base : 0;
		bv_diff_sink sink = { m, sink_begin, sink_data, sink_zero };
		P.failed = 0;
		rc = bv_diff_sink_run(s, m->name, from, rp->number, &sink,
				      NULL, NULL);
		if (rc < 0 && P.failed) {
			snprintf(what, sizeof what, "RP %" PRIu64 ", replica "
				 "%s", rp->number, m->name);
			if (P.nc.code == BVP_E_BASE)
				return op_error("server %s, group %s: %s: the "
						"remote's history differs: %s; "
						"nothing changed on either "
						"side", P.server, P.group, what,
						P.nc.err);
			return net_error(what);
		}
		if (rc < 0)
			return op_error("group %s: RP %" PRIu64 ", replica %s: "
					"%s", P.group, rp->number, m->name,
					store_msg(s, rc));
		members++;
	}
	if (nc_send_commit(&P.nc, 1, rp->consistency, rp->time, rp->label,
			   rp->number))
		return net_error(what);
	P.wire += BVP_HDR + 19 + strlen(rp->label);
	long len = nc_answer(&P.nc, ans, sizeof ans);
	if (len < 0)
		return net_error(what);
	if (len != 8 || bvp_get64(ans) != rp->number)
		return op_error("server %s, group %s: %s: committed as RP "
				"%" PRIu64 ", not %" PRIu64, P.server, P.group,
				what, len == 8 ? bvp_get64(ans) : 0,
				rp->number);
	char d[32], w[32];
	human(d, sizeof d, (double)P.data);
	human(w, sizeof w, (double)P.wire);
	fprintf(CLI_OUT, "sent RP %" PRIu64 " '", rp->number);
	text_str(CLI_OUT, rp->label);
	fprintf(CLI_OUT, "': %d replica%s, %" PRIu64 " bytes of data (%s), "
		"%" PRIu64 " zeroed, %" PRIu64 " bytes sent (%s)\n", members,
		members == 1 ? "" : "s", P.data, d, P.zero, P.wire, w);
	fflush(CLI_OUT);
	return 0;
}

/* ---- the command ------------------------------------------------------ */

/* Holds the remote's RPs against ours: 0, or the error printed. Sets
 * *BASE to the remote's newest RP (0: none), which the next RP is
 * diffed from, and *LATEST to the remote group's highest RP number. */
static int check_lineage(uint64_t newest_here, uint64_t *base,
			 uint64_t *latest)
{
	char a[33], b[33];

	*base = 0;
	*latest = 0;
	for (size_t i = 0; i < P.nm; i++) {
		struct member *m = &P.m[i];
		if (!m->exists_there && (P.nm > 1 || strcmp(m->name, P.group)))
			return op_error("server %s, group %s: the remote has no "
					"replica %s: a group of several "
					"replicas, or named unlike its replica, "
					"must exist there with the same members "
					"(bvault replica create and group "
					"create there)", P.server, P.group,
					m->name);
		if (!m->exists_there)
			continue;
		if (strcmp(m->group_there, P.group))
			return op_error("server %s, group %s: replica %s is in "
					"group %s there: push a group to a "
					"group of the same members (make it "
					"there with bvault group create)",
					P.server, P.group, m->name,
					m->group_there);
		if (m->latest_there > *latest)
			*latest = m->latest_there;
		for (size_t j = 0; j < m->there.n; j++) {
			const struct rpv *t = &m->there.v[j];
			const struct rpv *h = rplist_find(&m->here, t->number);
			if (t->number > newest_here)
				return op_error("server %s, group %s: the "
						"remote has RP %" PRIu64 " "
						"(replica %s, version %s), "
						"newer than every RP here "
						"(latest %" PRIu64 "): its "
						"history differs; nothing "
						"sent", P.server, P.group,
						t->number, m->name,
						idhex(t->id, a), newest_here);
			if (t->number > *base)
				*base = t->number;
			if (!h)
				continue; /* removed here since */
			if (!id_none(h->id) && !id_none(t->id) &&
			    memcmp(h->id, t->id, BV_ID_SIZE))
				return op_error("server %s, group %s: RP %" PRIu64
						", replica %s: the remote has "
						"version %s, this store has "
						"version %s: the histories "
						"differ; nothing sent",
						P.server, P.group, t->number,
						m->name, idhex(t->id, a),
						idhex(h->id, b));
		}
	}
	return 0;
}

int cmd_push(int argc, char **argv);
int cmd_push(int argc, char **argv)
{
	const char *server = NULL, *unix_path = NULL, *name = NULL,
		   *secret = NULL, *key = NULL, *bw = NULL, *fp = NULL,
		   *ca = NULL;
	int no_tls = 0;
	struct optdef defs[] = {
		{ "fingerprint", OPT_VALUE, &fp, NULL },
		{ "ca", OPT_VALUE, &ca, NULL },
		{ "no-tls", OPT_FLAG, NULL, &no_tls },
		{ "server", OPT_VALUE, &server, NULL },
		{ "unix", OPT_VALUE, &unix_path, NULL },
		{ "name", OPT_VALUE, &name, NULL },
		{ "secret-file", OPT_VALUE, &secret, NULL },
		{ "key", OPT_VALUE, &key, NULL },
		{ "bandwidth", OPT_VALUE, &bw, NULL },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const names[] = { "STORE", "GROUP" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	struct rplist group_rps = { 0 };
	bv_store *s = NULL;
	uint64_t rate = 0;
	int npos, rc;

	memset(&P, 0, sizeof P);
	P.nc.fd = -1;
	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 2, 2, names);
	if (!rc && !server == !unix_path)
		rc = usage_error("give --server HOST:PORT or --unix PATH (one)");
	if (!rc && (!name || (!secret && !key)))
		rc = usage_error("--name AGENT and --key FILE (or "
				 "--secret-file FILE) are needed: the remote "
				 "authorizes the push as an agent");
	if (!rc && secret && key)
		rc = usage_error("give --key or --secret-file, not both");
	if (!rc)
		rc = arg_name("agent", name);
	if (!rc)
		rc = arg_name("group", pos[1]);
	if (!rc && bw && nc_parse_rate(bw, &rate))
		rc = usage_error("bad --bandwidth '%s': bytes per second, "
				 "more than 0 (K, M, G suffixes)", bw);
	struct nc_tls tls = { 0 };
	char terr[300];
	if (!rc && ((fp && nc_tls_option(&tls, "--fingerprint", fp, terr,
					 sizeof terr) < 0) ||
		    (ca && nc_tls_option(&tls, "--ca", ca, terr,
					 sizeof terr) < 0)))
		rc = usage_error("%s", terr);
	tls.plain = no_tls;
	if (rc)
		goto out;
	P.group = pos[1];
	P.server = server ? server : unix_path;
	if ((rc = open_store_reading(pos[0], &s)))
		goto out;

	struct find_group fg = { P.group, 0 };
	rc = bv_group_list(s, group_cb, &fg);
	if (rc < 0) {
		rc = rc == -ENOMEM ? op_error("%s", strerror(ENOMEM)) :
				     store_error(s, rc);
		goto out;
	}
	if (!fg.found) {
		rc = op_error("no group named %s in %s", P.group, pos[0]);
		goto out;
	}
	if ((rc = bv_rp_list(s, P.group, here_cb, &group_rps)) < 0) {
		rc = store_error(s, rc);
		goto out;
	}
	for (size_t i = 0; i < P.nm; i++)
		if ((rc = bv_rp_list(s, P.m[i].name, here_cb,
				     &P.m[i].here)) < 0) {
			rc = store_error(s, rc);
			goto out;
		}
	if (group_rps.n == 0) {
		rc = op_error("group %s has no recovery point to push",
			      P.group);
		goto out;
	}
	uint64_t newest = group_rps.v[group_rps.n - 1].number;

	if (nc_connect(&P.nc, server, unix_path, &tls) ||
	    (key ? nc_login_key(&P.nc, name, key) :
	     nc_login(&P.nc, name, secret))) {
		rc = op_error("server %s: %s", P.server, P.nc.err);
		goto out;
	}
	P.nc.bandwidth = rate;
	for (size_t i = 0; i < P.nm; i++)
		if ((rc = ask_remote(&P.m[i])))
			goto out;
	uint64_t base, latest;
	if ((rc = check_lineage(newest, &base, &latest)))
		goto out;
	if (base && !rplist_find(&group_rps, base)) {
		rc = op_error("server %s, group %s: the remote's latest RP "
			      "%" PRIu64 " is not in this store any more: "
			      "there is nothing to diff from", P.server,
			      P.group, base);
		goto out;
	}

	double t0 = now_sec();
	uint64_t sent = 0, total = 0;
	for (size_t i = 0; i < group_rps.n; i++) {
		const struct rpv *g = &group_rps.v[i];
		int there = 0;
		for (size_t j = 0; j < P.nm; j++)
			there |= rplist_find(&P.m[j].there, g->number) != NULL;
		if (there)
			continue;
		if (g->number <= latest) {
			fprintf(CLI_ERR, "bvault push: RP %" PRIu64 " is not on "
				"the remote, but its RP numbers are at %" PRIu64
				" already (removed there?): not sent\n",
				g->number, latest);
			continue;
		}
		if ((rc = send_rp(s, g, base)))
			goto out;
		base = latest = g->number;
		sent++;
		total += P.wire;
		for (size_t j = 0; j < P.nm; j++)
			if (rplist_find(&P.m[j].here, g->number)) {
				const struct rpv *h =
					rplist_find(&P.m[j].here, g->number);
				P.m[j].exists_there = 1;
				P.m[j].size_there = h->size;
				memcpy(P.m[j].head_there, h->id, BV_ID_SIZE);
			}
	}
	if (sent == 0) {
		fprintf(CLI_OUT, "nothing to send: the remote has every RP of "
			"%s\n", P.group);
	} else {
		char w[32];
		human(w, sizeof w, (double)total);
		fprintf(CLI_OUT, "pushed %" PRIu64 " RP%s of group %s to %s: "
			"%" PRIu64 " bytes sent (%s), %.1f s\n", sent,
			sent == 1 ? "" : "s", P.group, P.server, total, w,
			now_sec() - t0);
	}
	rc = 0;
out:
	nc_close(&P.nc);
	for (size_t i = 0; P.m && i < P.nm; i++) {
		free(P.m[i].here.v);
		free(P.m[i].there.v);
	}
	free(P.m);
	free(group_rps.v);
	close_store(s);
	free(pos);
	return rc == HELP_SHOWN ? 0 : rc;
}
