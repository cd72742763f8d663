/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The O(N) checks: PRAGMA quick_check on its schedule, integrity_check when
 * an admin asks. Corruption found is a health fact (failed) until a later
 * check passes.
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
