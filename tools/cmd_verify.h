/*
 * cmd_verify.h: bvault verify and bvault check (tools/cmd_verify.c), for
 * the command table of tools/bvault.c.
 */
#ifndef BV_CMD_VERIFY_H
#define BV_CMD_VERIFY_H

int cmd_verify(int argc, char **argv);
int cmd_check(int argc, char **argv);

#endif
