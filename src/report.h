/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the daemon says about itself, as JSON objects for the control socket
 * (docs/control.md): health, stats (everything), config. One place, so the
 * socket, sqlvigilctl and the tests all see the same names.
 */

#include "json.h"

typedef struct Manager Manager;

/* An object: state, code, reason, since, checked, check_usec, checks. */
void report_health(Manager *m, Json *j);
/* Members (health, database, pragmas, maintenance, process) of the object
 * the caller has open. */
void report_stats_members(Manager *m, Json *j);
/* An object of sections of keys, values as the file spells them or null. */
void report_config(Manager *m, Json *j);

/* Resident set size of this process in bytes, 0 if unknown. */
uint64_t report_rss_bytes(void);
