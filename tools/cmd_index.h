/*
 * cmd_index.h: the index commands (tools/cmd_index.c), for the command
 * table of tools/bvault.c.
 */
#ifndef BV_CMD_INDEX_H
#define BV_CMD_INDEX_H

int cmd_index_backup(int argc, char **argv);
int cmd_index_restore(int argc, char **argv);
int cmd_index_rebuild(int argc, char **argv);

#endif
