/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Unattended maintenance: checkpoints, budgeted incremental vacuum, ANALYZE,
 * quick_check. This is the event-loop side: it decides when and how much
 * (scheduler.c, budget.c), hands the work to the worker as jobs (db.c does
 * the SQLite part), and logs one journal entry per run with what it did, how
 * long it took and the longest time it held the write lock.
 *
 * Runs come from three sources: the scheduler's intervals, triggers from
 * watching the WAL index (new frames reached min_wal_pages, the -wal file
 * grew past truncate_wal_size), and admin commands on the control socket.
 */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "scheduler.h"
#include "util.h"
#include "walindex.h"

typedef struct Manager Manager;
typedef struct Maintenance Maintenance;

/* The last run of a task, for STATUS=, stats and metrics. */
typedef struct TaskRun {
        bool valid;
        usec_t at;        /* CLOCK_REALTIME when it started */
        usec_t duration;
        usec_t lock_usec; /* longest time it held the write lock */
        const char *result; /* "ok", "busy", "incomplete", "failed", "cancelled" */
        const char *trigger;
        char summary[256];
} TaskRun;

typedef struct MaintenanceTotals {
        uint64_t runs[_TASK_MAX];
        uint64_t frames_checkpointed;
        uint64_t pages_reclaimed;
        uint64_t tables_analyzed;
        uint64_t checks_failed;
} MaintenanceTotals;

/* What an admin request gets back when its run ends. */
typedef struct MaintenanceOutcome {
        TaskId task;
        bool ok;          /* it ran and did its job */
        const TaskRun *run;
        const char *error; /* when !ok: why, one line */
        const char *mode;  /* checkpoint mode, analyze mode, or "quick"/"integrity" */
        const char *first; /* a check's first problem */
        /* Task figures, for the JSON reply. */
        int64_t frames, checkpointed, pages, freelist_after, tables, problems;
        bool busy;
} MaintenanceOutcome;

typedef void (*MaintenanceReply)(void *userdata, const MaintenanceOutcome *outcome);

int maintenance_new(Maintenance **ret, Manager *m);
Maintenance *maintenance_free(Maintenance *mt);

/* Arms the timers; called once the daemon is ready. */
int maintenance_start(Maintenance *mt);

/* The configuration changed: new intervals and thresholds. */
void maintenance_reload(Maintenance *mt);

/* No new work from now on; running work is being cancelled by the manager. */
void maintenance_stop(Maintenance *mt);

/*
 * Runs a task now, for an admin command. arg: checkpoint mode for
 * TASK_CHECKPOINT (-1: passive), page limit for TASK_VACUUM (0: down to the
 * trigger's floor... every free page the limit allows), ANALYZE_MODE_* for
 * TASK_ANALYZE, 1 for integrity_check with TASK_QUICK_CHECK.
 * Returns 0 when started (reply will be called), -EBUSY when the task is
 * running already, -ESHUTDOWN when stopping, -ENOMEM.
 */
int maintenance_request(Maintenance *mt, TaskId task, int64_t arg, MaintenanceReply reply, void *userdata);

/* Forgets a pending reply (its client went away). */
void maintenance_forget_reply(Maintenance *mt, void *userdata);

/* Facts for the health check: NULL when fine. */
const char *maintenance_corruption(const Maintenance *mt);
const char *maintenance_starvation(const Maintenance *mt);

const TaskRun *maintenance_last(const Maintenance *mt, TaskId task);
const MaintenanceTotals *maintenance_totals(const Maintenance *mt);

/* The latest WAL index header seen, if any. */
bool maintenance_wal_index(const Maintenance *mt, WalIndex *ret);

/* Which task runs right now, or NULL. */
const char *maintenance_running(const Maintenance *mt);
