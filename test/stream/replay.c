/*
 * replay.c: feeds every file of the stream fuzz corpus
 * (test/fuzz/corpus/stream/) to the reader in both formats through the
 * fuzz target's own code, so that inputs the fuzzer found stay fixed in
 * every build, sanitizer builds included. Files named ok-<format>-* must
 * read to END in that format and bad-<format>-* must fail in it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "fuzz_stream.h"
#include "stream.h"

static void replay(const char *dir, const char *name)
{
	char path[4096 + 256 + 2];
	struct stat st;
	uint8_t *p = NULL;
	int fd, rb, rr;

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
	rb = fuzz_stream_one(p, (size_t)st.st_size, BV_FORMAT_BVAULT, NULL);
	rr = fuzz_stream_one(p, (size_t)st.st_size, BV_FORMAT_RBD_DIFF, NULL);
	LLVMFuzzerTestOneInput(p, (size_t)st.st_size);
	if (!strncmp(name, "ok-bvault-", 10))
		is_int(rb, 0, "%s reads to END", name);
	else if (!strncmp(name, "bad-bvault-", 11))
		ok(rb < 0, "%s fails (%d)", name, rb);
	else if (!strncmp(name, "ok-rbd-", 7))
		is_int(rr, 0, "%s reads to END", name);
	else if (!strncmp(name, "bad-rbd-", 8))
		ok(rr < 0, "%s fails (%d)", name, rr);
	else
		ok(1, "%s: no crash (bvault %d, rbd %d)", name, rb, rr);
out:
	free(p);
	close(fd);
}

int main(int argc, char **argv)
{
	char dir[4096];
	const char *src = getenv("BV_SOURCE_DIR");
	struct dirent *e;
	DIR *d;
	int n = 0;

	if (argc > 1)
		snprintf(dir, sizeof(dir), "%s", argv[1]);
	else if (src)
		snprintf(dir, sizeof(dir), "%s/test/fuzz/corpus/stream", src);
	else
		skip_all("BV_SOURCE_DIR not set and no corpus named");
	d = opendir(dir);
	if (!d)
		bail_out("cannot open the corpus directory");
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		replay(dir, e->d_name);
		n++;
	}
	closedir(d);
	ok(n >= 10, "%d corpus files replayed", n);
	return done_testing();
}
