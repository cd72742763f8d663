/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Unattended maintenance, the event-loop side: when each task runs
 * (scheduler.c), and the bookkeeping every run shares - the record of its
 * last run, the totals, the admin's reply, the journal entry and when it
 * runs next. The tasks themselves are one concept each:
 *
 *   checkpoint.c   WAL checkpoints: the policy, the WAL watch, starvation
 *   vacuum.c       incremental vacuum runs in budgeted steps; the conversion
 *   analyze.c      ANALYZE / PRAGMA optimize
 *   check.c        quick_check, integrity_check, foreign_key_check
 *
 * Each hands its SQLite work to the database thread as jobs (db.c does the
 * SQLite part) and ends every run, however it ended, with one TaskReport
 * through maintenance_end().
 *
 * The daemon gives maintenance what it needs once (MaintenanceEnv) and
 * learns what happened through two hooks; maintenance never reaches into
 * the manager.
 */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "db.h"
#include "files.h"
#include "log.h"
#include "scheduler.h"
#include "task.h"
#include "util.h"
#include "walindex.h"
#include "worker.h"

typedef struct Maintenance Maintenance;

typedef struct MaintenanceEnv {
        sd_event *event;
        Worker *db_worker;          /* the database thread */
        Worker *file_worker;        /* files only: the backup directory's listing */
        Worker *backup_worker;      /* copies of the database: backups */
        const char *db_path;        /* for file sizes and the file system's free space */
        const char *wal_path;
        const DbPragmas *pragmas;   /* the loop's copy, kept current by the daemon */

        /* Hooks, called on the loop thread. */
        void *userdata;
        /* A run ended (its record and the totals are updated). */
        void (*run_ended)(void *userdata, TaskId task);
        /* A fact health depends on changed: corruption, starvation. */
        void (*facts_changed)(void *userdata);
        /* The one-time conversion changed auto_vacuum in the file. */
        void (*pragma_changed)(void *userdata, PragmaId id, const PragmaStatus *status);
} MaintenanceEnv;

typedef struct MaintenanceTotals {
        uint64_t runs[_TASK_MAX];
        uint64_t frames_checkpointed;
        uint64_t pages_reclaimed;
        uint64_t tables_analyzed;
        uint64_t checks_failed;
        LockHolds holds[_TASK_MAX]; /* sqlvigil's own write-lock holds, by task */
} MaintenanceTotals;

/* What an admin gets back when the run it asked for ends. */
typedef struct MaintenanceOutcome {
        TaskId task;
        bool ok;            /* it ran and did its job */
        const TaskRun *run; /* its record */
        const char *error;  /* when !ok: why, one line */
        const char *mode;   /* checkpoint mode, analyze mode, or "quick"/"integrity" */
        const char *first;  /* a check's first problem */
        const DbFkCheck *foreign_keys; /* a check's foreign_key_check, NULL when it did not run */
        /* Task figures for the JSON reply; -1 where unknown. */
        int64_t frames, checkpointed, pages, freelist_after, tables, problems;
        bool busy;
        /* A backup's manifest and path, when one was taken. */
        const struct BackupManifest *backup;
        const char *backup_path;
} MaintenanceOutcome;

typedef void (*MaintenanceReply)(void *userdata, const MaintenanceOutcome *outcome);

/* How a run ended, as its task reports it to maintenance_end(). */
typedef struct TaskReport {
        TaskResult result;
        TaskTrigger trigger;
        usec_t started_rt;  /* CLOCK_REALTIME when the run started */
        usec_t duration;
        LockHolds holds;    /* the run's write-lock holds */
        char summary[320];  /* one line: what it did */
        /* The journal entry: its MESSAGE_ID, SQLVIGIL_EVENT= word, priority,
         * text (summary and duration are appended) and the task's own
         * fields; maintenance_end() adds TRIGGER, RESULT, DURATION_USEC,
         * LOCK_USEC and the lock-hold counts. */
        const char *message_id;
        const char *event;
        int priority;
        char message[96];   /* "checkpoint (interval)"; "" for the summary alone */
        LogFields fields;
        /* For an admin's reply. */
        MaintenanceOutcome outcome;
        /* When the next run comes: 0 one interval after this one's start;
         * otherwise this much later (a busy lock, a back-off). */
        usec_t retry;
        /* Nothing was done (below the trigger, nothing to check): no
         * journal entry and no record; an admin still gets the outcome. */
        bool nothing_done;
        /* When it failed: SQLite's and the system's codes. A storage fault
         * (an I/O error, a read-only or full file system, corruption) is a
         * health fact until a later run of the task succeeds; every failure
         * backs the task off (task_backoff()). */
        DbFault fault;
        uint64_t space_needed; /* bytes the run needed, for a "disk full" message; 0 unknown */
} TaskReport;

/* Starts a report for a run of trigger that started at started_rt. */
void task_report_init(TaskReport *r, TaskTrigger trigger, usec_t started_rt);

/* Takes config as the configuration to read; the caller keeps it alive and
 * calls maintenance_reload() when it changes. */
int maintenance_new(Maintenance **ret, const MaintenanceEnv *env, const Config *config);
Maintenance *maintenance_free(Maintenance *mt);

/* From now on, runs that end (their jobs handed back while the threads
 * stop) are neither reported nor replied to: the daemon is being freed. */
void maintenance_teardown(Maintenance *mt);

/* Arms the timers; called once the daemon is ready. files: the database's
 * files as SQLite has them open (their -shm for the WAL index and its
 * locks, their -wal for shortening it). */
int maintenance_start(Maintenance *mt, const DbFiles *files);

/* The configuration changed: new intervals and thresholds. Runs in progress
 * keep the settings they started with. */
void maintenance_reload(Maintenance *mt, const Config *config);

/* No new work from now on; runs in progress end as cancelled (the caller
 * cancels the jobs on the database thread). */
void maintenance_stop(Maintenance *mt);

enum {
        MAINTENANCE_E_RUNNING = 1,  /* the task is running already */
        MAINTENANCE_E_STOPPING,     /* sqlvigil is stopping */
};

/*
 * Runs a task now, for an admin command. arg: checkpoint mode for
 * TASK_CHECKPOINT, page limit for TASK_VACUUM (0: every free page),
 * ANALYZE_MODE_* for TASK_ANALYZE, 1 for integrity_check with
 * TASK_QUICK_CHECK. Returns 0 when started (reply is called when it ends,
 * perhaps before this returns), MAINTENANCE_E_RUNNING,
 * MAINTENANCE_E_STOPPING, or -ENOMEM.
 */
int maintenance_request(Maintenance *mt, TaskId task, int64_t arg, MaintenanceReply reply, void *userdata);

/* Forgets a pending reply (its client went away). */
void maintenance_forget_reply(Maintenance *mt, void *userdata);

/* The final checkpoint at stop: mode, waiting at most timeout for readers
 * and writers; not cancellable. done is called with its outcome. */
typedef struct CheckpointOutcome CheckpointOutcome;
typedef void (*FinalCheckpointDone)(void *userdata, const CheckpointOutcome *outcome, bool ran);
int maintenance_final_checkpoint(Maintenance *mt, CheckpointMode mode, usec_t timeout, FinalCheckpointDone done,
                                 void *userdata);

/* The backups: facts for health, the status and the metrics; the list for
 * `sqlvigilctl backups` (backup.h). */
typedef struct BackupFacts BackupFacts;
typedef struct Backuper Backuper;
const BackupFacts *maintenance_backups(const Maintenance *mt);
Backuper *maintenance_backuper(Maintenance *mt);
typedef struct Restorer Restorer;
Restorer *maintenance_restorer(Maintenance *mt);

/* Facts for health and the status: NULL when there is nothing to say. */
const char *maintenance_corruption(const Maintenance *mt);
const char *maintenance_inconsistency(const Maintenance *mt); /* foreign_key_check's findings */
const char *maintenance_check_unsupported(const Maintenance *mt); /* quick_check cannot run here */

/* What the start-up probe found (compat.h): quick_check cannot run, why. */
void maintenance_set_check_unsupported(Maintenance *mt, const char *why);
const char *maintenance_starvation(const Maintenance *mt);

/* The storage fault sqlvigil's own work ran into, NULL when none (or its
 * task has succeeded since). *ret_code: SQLite's extended code. */
const char *maintenance_storage_fault(const Maintenance *mt, int *ret_code);

/* Whether SQLite's code (and errno) says the storage failed: I/O error,
 * read-only, corruption, not a database, cannot open, full. Pure. */
bool maintenance_is_storage_fault(DbFault f);

/* Whether task is backing off after failures (WAL-driven checkpoints look). */
bool maintenance_backing_off(const Maintenance *mt, TaskId task);

const TaskRun *maintenance_last(const Maintenance *mt, TaskId task);
const MaintenanceTotals *maintenance_totals(const Maintenance *mt);

/* The latest WAL index header seen, if any. */
bool maintenance_wal_index(const Maintenance *mt, WalIndex *ret);

/* Which task runs right now, or NULL. */
const char *maintenance_running(const Maintenance *mt);

/* ---- For the tasks (checkpoint.c, vacuum.c, analyze.c, check.c) ---------- */

const MaintenanceEnv *maintenance_env(const Maintenance *mt);
const Config *maintenance_config(const Maintenance *mt);
Scheduler *maintenance_scheduler(Maintenance *mt);

/* Whether new work may start (not stopping). */
bool maintenance_active(const Maintenance *mt);

/* Hands a job to the database thread; false (job untouched) when stopping. */
bool maintenance_submit(Maintenance *mt, Job *job);

/* Whether an admin waits for task's run (it may wait longer than a
 * scheduled run would). */
bool maintenance_admin_waiting(const Maintenance *mt, TaskId task);

/* The one end of every run: the journal entry, the record, the totals'
 * runs and lock holds, the admin's reply, and the next run. */
void maintenance_end(Maintenance *mt, TaskId task, TaskReport *report);

/* Counts what a run did, for the totals (call before maintenance_end()). */
MaintenanceTotals *maintenance_totals_mut(Maintenance *mt);

/* The tasks report health facts through this: they changed. */
void maintenance_facts_changed(Maintenance *mt);

/* The task objects, for each other: vacuum looks at the WAL after its steps,
 * the conversion asks for a checkpoint. */
typedef struct Checkpointer Checkpointer;
Checkpointer *maintenance_checkpointer(Maintenance *mt);
