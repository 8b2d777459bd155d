/*
 * cmd_tls.c: bvault tls init and bvault tls fingerprint: the server key
 * and certificate bvaultd's TCP listeners present (tls.h; README.md,
 * "Over a network").
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bvault.h"
#include "cli.h"
#include "tls.h"

int cmd_tls_init(int argc, char **argv);
int cmd_tls_fingerprint(int argc, char **argv);

#define MAX_NAMES 16

/* STORE must be a store: opened read-only and closed (this works
 * beside a running bvaultd). */
static int check_store(const char *path)
{
	bv_store *s = NULL;
	int rc = open_store_reading(path, &s);
	if (!rc)
		bv_store_close(s);
	return rc;
}

static int print_fingerprint(const char *store)
{
	char cert[PATH_MAX], hex[BVT_FP_HEX], err[700];
	if (bvt_path(store, BVT_CERT, cert, sizeof cert))
		return op_error("%s: path too long", store);
	if (access(cert, F_OK) && errno == ENOENT)
		return op_error("store %s has no TLS certificate: `bvault tls "
				"init %s` makes one (so does bvaultd's first "
				"start with --listen)", store, store);
	if (bvt_file_fingerprint(cert, hex, err, sizeof err))
		return op_error("%s", err);
	fprintf(CLI_OUT, "sha256:%s\n", hex);
	return 0;
}

int cmd_tls_init(int argc, char **argv)
{
	const char *names_arg = NULL;
	int renew = 0;
	struct optdef defs[] = {
		{ "name", OPT_VALUE, &names_arg, NULL },
		{ "renew", OPT_FLAG, NULL, &renew },
		{ NULL, 0, NULL, NULL },
	};
	static const char *const pnames[] = { "STORE" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	const char *names[MAX_NAMES];
	char list[1024] = "", err[700];
	int npos, nn = 0, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, pnames);
	if (!rc && names_arg) {
		if (strlen(names_arg) >= sizeof list) {
			rc = usage_error("--name: too long");
		} else {
			strcpy(list, names_arg);
			for (char *t, *p = strtok_r(list, ",", &t); p && !rc;
			     p = strtok_r(NULL, ",", &t)) {
				if (nn == MAX_NAMES)
					rc = usage_error("--name: at most %d "
							 "names", MAX_NAMES);
				else if (strspn(p, "abcdefghijklmnopqrstuvwxyz"
						"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						"0123456789.-:*") != strlen(p))
					rc = usage_error("--name '%s': not a "
							 "host name or an IP "
							 "address", p);
				else
					names[nn++] = p;
			}
		}
	}
	if (!rc)
		rc = check_store(pos[0]);
	if (rc)
		goto out;
	int made = bvt_make(pos[0], renew, names, nn, err, sizeof err);
	if (made < 0) {
		rc = op_error("%s", err);
		goto out;
	}
	if (made == 1) {
		rc = op_error("store %s already has a TLS key: `bvault tls "
			      "fingerprint %s` shows it; --renew replaces it "
			      "(every agent must then pin the new "
			      "fingerprint)", pos[0], pos[0]);
		goto out;
	}
	rc = print_fingerprint(pos[0]);
	if (!rc && renew)
		fprintf(CLI_ERR, "a running bvaultd takes the new key up when "
			"it is restarted\n");
out:
	free(pos);
	return rc;
}

int cmd_tls_fingerprint(int argc, char **argv)
{
	struct optdef defs[] = { { NULL, 0, NULL, NULL } };
	static const char *const pnames[] = { "STORE" };
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));
	int npos, rc;

	if (!pos)
		return op_error("%s", strerror(ENOMEM));
	rc = parse_opts(argc, argv, defs, pos, &npos);
	if (!rc)
		rc = want_pos(npos, pos, 1, 1, pnames);
	if (!rc)
		rc = print_fingerprint(pos[0]);
	free(pos);
	return rc;
}
