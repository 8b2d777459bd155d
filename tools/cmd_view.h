/*
 * cmd_view.h: the view commands (tools/cmd_view.c), for the command
 * table of tools/bvault.c.
 */
#ifndef BV_CMD_VIEW_H
#define BV_CMD_VIEW_H

int cmd_view_create(int argc, char **argv);
int cmd_view_ls(int argc, char **argv);
int cmd_view_rm(int argc, char **argv);
int cmd_view_promote(int argc, char **argv);

#endif
