/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Sizing incremental vacuum steps so each holds the write lock for no longer
 * than step_budget, from what the steps actually cost.
 *
 * A step is one "PRAGMA incremental_vacuum(N)" run to SQLITE_DONE in its own
 * transaction: the write lock is held from its first page to its commit. The
 * cost per page is measured on every step (it varies: a free page at the end
 * of the file only needs truncating, a page in use is moved and its parent
 * pointers rewritten) and smoothed; a step that overran is believed at once.
 *
 * Why aim below the budget: writers waiting through sqlite3_busy_timeout()
 * sleep in growing quanta and look at the lock again after 1, 3, 8, 18, 33,
 * 53 ms. With steps of 3/4 of a 20 ms budget (15 ms) a writer that arrives as
 * a step begins gets the lock at its 18 ms look, 0.9 x the budget; a 20 ms
 * step would push it to its 33 ms look, 1.65 x.
 *
 * Why pause: a writer that waited through a step looks at the lock again
 * at most one of its sleep quanta later; a pause shorter than that quantum
 * lets the next step take the lock while the writer sleeps (measured with
 * 28 ms steps: 5 ms pauses gave 54 ms writer stalls, 20 ms pauses 20 ms).
 * The pause is the quantum a writer that started waiting when the step took
 * the lock is sleeping in when the step ends (10 ms after a 15 ms step), and
 * at least half the budget, so several waiting writers all get their turn.
 */

#include <stdint.h>

#include "util.h"

typedef struct Budget {
        usec_t budget;       /* step_budget */
        usec_t target;       /* what a step aims for: 3/4 of the budget */
        double usec_per_page; /* smoothed cost; 0 until the first measurement */
        uint32_t pages;      /* size of the next step */
        uint32_t ceiling;    /* never again as large as a step that overran */
        uint32_t max_pages;  /* what sqlvigil's page cache holds without spilling */
} Budget;

#define BUDGET_FIRST_STEP 16
#define BUDGET_MAX_STEP 65536

/*
 * learned_usec_per_page: a previous run's estimate, or 0.
 *
 * cache_pages: the pages sqlvigil's connection may keep in its cache. The
 * cost per page is not linear: once a step dirties more pages than the cache
 * holds, SQLite spills them to the WAL in the middle of the transaction and
 * the step gets about three times slower per page (measured with the default
 * 2 MB cache and 4 KiB pages: 460 pages in 12 ms, 507 in 31 ms). Steps stay
 * below three quarters of the cache; a step that overran anyway sets a
 * ceiling for the rest of the run, because the smoothed estimate would walk
 * back up into the same cliff.
 */
void budget_init(Budget *b, usec_t step_budget, double learned_usec_per_page, uint32_t cache_pages);

/* How long a step may keep freeing pages before it commits: the target,
 * less a margin for the commit itself (writing the step's dirty pages to the
 * WAL, without fsync at synchronous=NORMAL). */
static inline usec_t budget_hold(const Budget *b) {
        return b->target * 4 / 5;
}

/* Records a step that freed pages in took; sets the next step's size. */
void budget_record(Budget *b, uint32_t pages, usec_t took);

/* How long to leave the lock to others after a step that held it this long. */
usec_t budget_pause(const Budget *b, usec_t took);

/* The sleep a writer waiting through sqlite3_busy_timeout() is in after
 * having waited waited (SQLite's delays: 1, 2, 5, 10, 15, 20, 25, 25, 25, 50,
 * 50, 100 ms, then 100 ms). */
usec_t budget_writer_quantum(usec_t waited);
