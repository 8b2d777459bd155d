/*
 * proto_replay.c: feeds every file of the protocol fuzz corpus
 * (test/fuzz/corpus/proto/) through the fuzz target's own code
 * (fuzz_proto.c), so that inputs the fuzzer found stay fixed in every
 * build, sanitizer builds included. Files named ok-* are whole, sound
 * sessions: they must log in and run to their end; bad-* must be stopped,
 * with the reason their name gives after the second dash ("bad-auth-*":
 * "authentication failed", and so on: see WHY below). Then the inputs
 * too large for the corpus: a DATA record of BVP_DATA_MAX bytes, taken,
 * and one a byte longer, refused.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "fuzz_proto.h"
#include "session.h"

static const struct {
	const char *tag, *stop;
} WHY[] = {
	{ "bad-header-", "nonzero flags or reserved bytes" },
	{ "bad-big-", "a large frame before login" },
	{ "bad-order-", "expected HELLO" },
	{ "bad-early-", "expected AUTH" },
	{ "bad-hello-", "a malformed HELLO" },
	{ "bad-auth-", "authentication failed" },
	{ "bad-type-", "an unknown message type" },
	{ "bad-change-", "a malformed change record" },
	{ "bad-outside-", "a change record outside a session" },
	{ "bad-slot-", "a change record for a slot never added" },
	{ "bad-version-", "another protocol version" },
	{ "bad-proof-", "a malformed AUTH" },
	{ "bad-sig-", "a malformed AUTH_SIG" },
	{ "bad-removed-", "the agent was removed" },
	{ "bad-begin-", "a malformed BEGIN" },
	{ "bad-add-", "a malformed ADD" },
	{ "bad-addv-", "a malformed ADDV" },
	{ "bad-commit-", "a malformed COMMIT" },
	{ "bad-label-", "a COMMIT label with a NUL byte" },
	{ "bad-abort-", "a malformed ABORT" },
	{ "bad-rps-", "a malformed RPS" },
	{ "bad-rpsv-", "a malformed RPSV" },
	{ "bad-digests-", "a malformed DIGESTS" },
};

static void replay(const char *dir, const char *name)
{
	char path[4096 + 256 + 2];
	struct fuzz_proto_result res;
	struct stat st;
	uint8_t *p = NULL;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st)) {
		ok(0, "%s: cannot open", name);
		return;
	}
	p = malloc((size_t)st.st_size + 1);
	if (!p || read(fd, p, (size_t)st.st_size) != st.st_size) {
		ok(0, "%s: cannot read", name);
		goto out;
	}
	fuzz_proto_one(p, (size_t)st.st_size, &res);
	LLVMFuzzerTestOneInput(p, (size_t)st.st_size);
	if (!strncmp(name, "ok-", 3)) {
		ok(!res.stop && res.state == BVS_READY,
		   "%s: logs in and runs to its end (%u frames, %u sessions, "
		   "%u changes%s%s)", name, res.frames, res.sessions,
		   res.changes, res.stop ? "; stopped: " : "",
		   res.stop ? res.stop : "");
		goto out;
	}
	for (size_t i = 0; i < sizeof WHY / sizeof WHY[0]; i++)
		if (!strncmp(name, WHY[i].tag, strlen(WHY[i].tag))) {
			ok(res.stop && !strcmp(res.stop, WHY[i].stop),
			   "%s: stopped: %s", name,
			   res.stop ? res.stop : "(not stopped)");
			goto out;
		}
	ok(1, "%s: no crash (%u frames)", name, res.frames);
out:
	free(p);
	close(fd);
}

static size_t put_frame(uint8_t *at, uint8_t type, const void *p,
			size_t len)
{
	bvp_header(at, type, (uint32_t)len);
	if (p)
		memcpy(at + BVP_HDR, p, len);
	return BVP_HDR + len;
}

/* A session whose one DATA record carries N bytes: too large for the
 * corpus's files (and -max_len) at the limit, so it is made here. */
static void big_data(size_t n, const char *stop)
{
	static const uint8_t hello[] = "BVAULTP1\x01\x00\x06" "agent1";
	uint8_t proof[BVP_MAC] = { 0 }, add[16 + 4] = { 0 };
	struct fuzz_proto_result res;
	size_t at = 1;
	uint8_t *in = calloc(1, 1 + 5 * BVP_HDR + sizeof hello + sizeof proof +
				sizeof add + 12 + n);

	if (!in) {
		ok(0, "DATA of %zu bytes: out of memory", n);
		return;
	}
	memcpy(add + 16, "\x03vm0", 4);
	at += put_frame(in + at, BVP_HELLO, hello, sizeof hello - 1);
	at += put_frame(in + at, BVP_AUTH, proof, sizeof proof);
	at += put_frame(in + at, BVP_BEGIN, NULL, 0);
	at += put_frame(in + at, BVP_ADD, add, sizeof add);
	at += put_frame(in + at, BVP_DATA, NULL, 12 + n);
	fuzz_proto_one(in, at, &res);
	ok(stop ? res.stop && !strcmp(res.stop, stop) && !res.changes :
		  !res.stop && res.changes == 1,
	   "DATA of %zu bytes: %s", n, res.stop ? res.stop : "taken");
	free(in);
}

int main(void)
{
	char dir[4096];
	const char *src = getenv("BV_SOURCE_DIR");
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof dir, "%s/test/fuzz/corpus/proto",
		 src ? src : ".");
	if (!(d = opendir(dir))) {
		ok(0, "%s: cannot open the corpus", dir);
		return done_testing();
	}
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			replay(dir, e->d_name);
			n++;
		}
	closedir(d);
	ok(n > 0, "the corpus holds %d inputs", n);
	big_data(BVP_DATA_MAX, NULL);
	big_data(BVP_DATA_MAX + 1, "a malformed change record");
	return done_testing();
}
