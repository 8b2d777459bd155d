/*
 * bvault-main.c: main() of the bvault command-line tool. The commands,
 * their table and the dispatch are in the bvcli library (tools/bvault.c,
 * cli.c, cmd_*.c), which bvaultd links too, to run the commands that
 * change a store it holds for a caller of its admin socket.
 */
#include <sys/stat.h>

#include "cli.h"

int main(int argc, char **argv)
{
	/* The store is private to its owner (storage/FORMAT.md, "File
	 * modes"): RocksDB makes its files 0644 less the umask and cannot be
	 * told otherwise, so the umask makes them 0600, as it does streams
	 * and exports. */
	umask(077);
	return cli_run(argc, argv, CLI_LOCAL);
}
