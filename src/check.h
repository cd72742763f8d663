/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The O(N) checks: PRAGMA quick_check on its schedule, integrity_check when
 * an admin asks, each followed by PRAGMA foreign_key_check ([health]
 * foreign_key_check). Corruption found is a health fact (failed) until a
 * later check passes; rows that break a foreign key are one too (degraded:
 * the file is sound and reads, its content is inconsistent) until a later
 * foreign_key_check finds none.
 *
 * A check that sqlvigil's SQLite cannot run on this database (its schema
 * uses what a newer SQLite added, compat.h) ends as "unsupported" with
 * SQLite's reason, never as failed or passed. When that is the scheduled
 * quick_check, it is a health fact (degraded, sqlite-too-old): what sqlvigil
 * is there to watch goes unwatched.
 */

#include <stdbool.h>

#include "task.h"

typedef struct Maintenance Maintenance;
typedef struct Checker Checker;

int checker_new(Checker **ret, Maintenance *mt);
Checker *checker_free(Checker *c);

/* A run; integrity: integrity_check instead of quick_check. Ends with
 * maintenance_end(). */
void checker_run(Checker *c, TaskTrigger trigger, bool integrity);

/* The first problem the last check found, NULL when it passed. */
const char *checker_corruption(const Checker *c);

/* What the last foreign_key_check found, NULL when nothing. */
const char *checker_inconsistency(const Checker *c);

/* Why quick_check cannot run with this SQLite, NULL when it can (as far
 * as the last run, or the start-up probe before any run, tells). */
const char *checker_unsupported(const Checker *c);

/* The start-up probe found that quick_check cannot run (why); NULL: it can. */
void checker_set_unsupported(Checker *c, const char *why);
