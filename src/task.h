/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The words of maintenance: which task, why it ran, how it ended, and the
 * record of its last run. Every task - scheduled, triggered, asked for by an
 * admin, or run at stop - ends in one TaskReport, and maintenance.c turns
 * that into the journal entry, the record, the admin's reply and the next
 * run (maintenance_end()). Names are the stable words of SQLVIGIL_RESULT=,
 * SQLVIGIL_TRIGGER=, the control socket's JSON and the metrics' labels.
 */

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef enum TaskId {
        TASK_CHECKPOINT,
        TASK_VACUUM,
        TASK_ANALYZE,
        TASK_QUICK_CHECK,
        TASK_BACKUP,
        _TASK_MAX,
} TaskId;

/* How a run ended. */
typedef enum TaskResult {
        TASK_RESULT_OK,         /* it did its job (or found nothing to do) */
        TASK_RESULT_BUSY,       /* a lock it needed stayed taken; tried again soon */
        TASK_RESULT_INCOMPLETE, /* it did what it could before its deadline (a reader stayed) */
        TASK_RESULT_FAILED,     /* SQLite or the system said no; see the summary */
        TASK_RESULT_CORRUPT,    /* a check found problems in the database */
        TASK_RESULT_CANCELLED,  /* sqlvigil stopped it (it is stopping) */
        TASK_RESULT_INCONSISTENT, /* a check found rows that break foreign keys; the file itself is sound */
        TASK_RESULT_UNSUPPORTED,  /* sqlvigil's SQLite cannot run it on this database (a newer SQLite's
                                   * schema, compat.h); not a failure: retrying would not help */
        _TASK_RESULT_MAX,
} TaskResult;

/* Why a run started. */
typedef enum TaskTrigger {
        TRIGGER_INTERVAL,    /* its interval came round */
        TRIGGER_ADMIN,       /* sqlvigilctl asked */
        TRIGGER_WAL_PAGES,   /* the WAL reached min_wal_pages new frames */
        TRIGGER_WAL_RESTART, /* the WAL never started over: RESTART */
        TRIGGER_WAL_SIZE,    /* the -wal file grew past truncate_wal_size */
        TRIGGER_WAL_SHRINK,  /* nothing pending, but the -wal file stayed large */
        TRIGGER_CONVERT,     /* the one-time conversion to auto_vacuum=incremental */
        TRIGGER_RETRY,       /* an earlier run failed; backing off */
        TRIGGER_STOP,        /* the final checkpoint */
        TRIGGER_RESTORE,     /* the safety backup before a restore */
        _TRIGGER_MAX,
} TaskTrigger;

extern const char *const task_names[_TASK_MAX];
extern const char *const task_result_names[_TASK_RESULT_MAX];
extern const char *const task_trigger_names[_TRIGGER_MAX];

/* The last run of a task, for STATUS=, stats and metrics. */
typedef struct TaskRun {
        bool valid;
        usec_t at;        /* CLOCK_REALTIME when it started */
        usec_t duration;
        usec_t lock_usec; /* longest single hold of the write lock */
        TaskResult result;
        TaskTrigger trigger;
        char summary[320];
} TaskRun;

/* Write-lock holds of sqlvigil's own work, per task: how many, how long in
 * all, the longest. A hold is any statement or checkpoint pass that had the
 * WAL write lock, from taking it to letting go. */
typedef struct LockHolds {
        uint64_t count;
        usec_t total;
        usec_t max;
} LockHolds;

void lock_holds_add(LockHolds *h, usec_t held);

/* How long to wait before the next try after `failures` failed runs in a
 * row: base, doubled for each further failure, at most cap; 0 failures: 0.
 * A task that fails for lack of disk or a broken file system tries again
 * this way instead of at every interval or trigger. */
usec_t task_backoff(unsigned failures, usec_t base, usec_t cap);
