/*
 * cmd_life.h: the lifecycle commands (tools/cmd_life.c), for the command
 * table of tools/bvault.c.
 */
#ifndef BV_CMD_LIFE_H
#define BV_CMD_LIFE_H

int cmd_rp_rm(int argc, char **argv);
int cmd_rp_protect(int argc, char **argv);
int cmd_policy_set(int argc, char **argv);
int cmd_policy_show(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_replica_rm(int argc, char **argv);
int cmd_group_ls(int argc, char **argv);

#endif
