/*
 * cmd_prom.h: bvault stats --prometheus (tools/cmd_prom.c).
 */
#ifndef BV_CMD_PROM_H
#define BV_CMD_PROM_H

#include "bvault.h"

/* Prints ST (the figures of store S at path STORE), the per-group and
 * per-replica usage unless QUICK (GROUP: only that group; NULL: all),
 * and the live counters of the bvaultd serving STORE, when one answers,
 * in Prometheus's text format. 0, or EXIT_OP after the message. */
int print_prometheus(bv_store *s, const char *store, const bv_stats *st,
		     const char *group, int quick);

#endif
