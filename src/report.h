/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The status snapshot (status.h) and the configuration as JSON, for the
 * control socket (docs/control.md): health, stats (everything), config. One
 * place, so the socket, sqlvigilctl and the tests all see the same names.
 */

#include "config.h"
#include "json.h"
#include "status.h"

/* An object: state, code, reason, since, checked, check_usec, checks. */
void report_health(const Status *s, Json *j);
/* Members (health, database, pragmas, maintenance, process) of the object
 * the caller has open. */
void report_stats_members(const Status *s, Json *j);
/* An object of sections of keys, values as the file spells them or null. */
void report_config(const Config *c, Json *j);
