/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Incremental vacuum: a run reads the freelist and page counts, decides
 * whether they call for reclaiming (a pure rule), and then frees pages in
 * steps, each holding the write lock no longer than step_budget (budget.c
 * sizes them), with a pause between steps so application writers get in.
 * The one-time conversion of a file to auto_vacuum=incremental ([vacuum]
 * convert = yes) is a run of its own: a full VACUUM, which blocks writers
 * and says so.
 */

#include <stdbool.h>
#include <stdint.h>

#include "task.h"

typedef struct Maintenance Maintenance;
typedef struct Vacuumer Vacuumer;

/* What a run decides on. */
typedef enum VacuumPlan {
        VACUUM_PLAN_NOTHING,   /* below the trigger, or nothing to reclaim */
        VACUUM_PLAN_STEPS,     /* reclaim in budgeted steps */
        VACUUM_PLAN_CONVERT,   /* the one-time full VACUUM to incremental */
        VACUUM_PLAN_CANNOT,    /* free pages it may not reclaim (auto_vacuum none, no convert; full) */
        VACUUM_PLAN_REFUSED,   /* an admin's run cannot work in this file (auto_vacuum not incremental) */
} VacuumPlan;

typedef struct VacuumInput {
        bool admin;
        int64_t freelist, page_count;
        int auto_vacuum;          /* the file's: 0 none, 1 full, 2 incremental */
        int auto_vacuum_requested; /* [pragmas] auto_vacuum, -1 unset */
        uint64_t min_free_pages;
        double free_fraction;
        bool convert;             /* [vacuum] convert */
} VacuumInput;

/* The rule: free > min_free_pages + free_fraction * page_count. Pure. */
VacuumPlan vacuum_plan(const VacuumInput *in);

int vacuumer_new(Vacuumer **ret, Maintenance *mt);
Vacuumer *vacuumer_free(Vacuumer *v);
int vacuumer_start(Vacuumer *v);

/* A run: for the scheduler (limit 0) or an admin (limit: pages at most,
 * 0 every free page). Ends with maintenance_end(). */
void vacuumer_run(Vacuumer *v, TaskTrigger trigger, int64_t limit);

/* No more steps; a run between steps ends as cancelled. */
void vacuumer_stop(Vacuumer *v);

/* The configuration changed: say again why pages cannot be reclaimed. */
void vacuumer_reload(Vacuumer *v);
