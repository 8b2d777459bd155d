/*
 * cmd_usage.h: bvault stats' per-group part (tools/cmd_usage.c).
 */
#ifndef BV_CMD_USAGE_H
#define BV_CMD_USAGE_H

#include "bvault.h"

/* Prints the usage of GROUP (NULL: every group) and its replicas, as
 * rows, or with JSON as a "groups" member continuing an open object.
 * 0, or EXIT_OP after the message. */
int print_usage(bv_store *s, const char *group, int json);

#endif
