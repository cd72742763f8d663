/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"
#include "backup.h"
#include "check.h"
#include "checkpoint.h"
#include "maintenance.h"
#include <sqlite3.h>
#include "messages.h"
#include "restore.h"
#include "vacuum.h"

typedef struct Pending {
        MaintenanceReply reply;
        void *userdata;
} Pending;

struct Maintenance {
        MaintenanceEnv env;
        const Config *config;
        Scheduler scheduler;
        sd_event_source *timer;  /* the scheduler's next task */
        bool started;
        bool dying;              /* being freed: runs that end now are not reported */

        TaskRun last[_TASK_MAX];
        MaintenanceTotals totals;
        Pending pending[_TASK_MAX]; /* admin replies waiting for a run */
        int64_t admin_arg[_TASK_MAX];
        unsigned failures[_TASK_MAX];   /* failed runs in a row */
        usec_t not_before[_TASK_MAX];   /* CLOCK_BOOTTIME: backing off until then */

        /* The storage fault a run ran into, until its task succeeds again. */
        bool fault;
        TaskId fault_task;
        DbFault fault_codes;
        char fault_text[512];

        Checkpointer *checkpointer;
        Vacuumer *vacuumer;
        Checker *checker;
        Backuper *backuper;
        Restorer *restorer;
};

static int arm_timer(Maintenance *mt);

static usec_t now_boot(void) {
        return now_usec(CLOCK_BOOTTIME);
}

static void collect_intervals(const Config *c, usec_t intervals[_TASK_MAX]) {
        intervals[TASK_CHECKPOINT] = c->checkpoint_interval;
        intervals[TASK_VACUUM] = c->vacuum_interval;
        intervals[TASK_ANALYZE] = c->analyze_interval;
        intervals[TASK_QUICK_CHECK] = c->quick_check_interval;
        intervals[TASK_BACKUP] = c->backup_directory ? c->backup_interval : 0;
}

static uint64_t random_seed(void) {
        uint64_t seed = now_usec(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32);
        FILE *f = fopen("/dev/urandom", "re");

        /* Without /dev/urandom (a very bare sandbox) time and pid still make
         * instances on one host differ, which is all the jitter is for. */
        if (f) {
                if (fread(&seed, sizeof(seed), 1, f) != 1)
                        seed ^= (uint64_t)(uintptr_t)&seed;
                fclose(f);
        }
        return seed;
}

/* Failed runs in a row back off from this to this: a full or broken file
 * system is not asked again every interval (or every second, for the WAL
 * watch), and the journal is not filled with the same failure. */
#define FAIL_BACKOFF_BASE (5 * USEC_PER_SEC)
#define FAIL_BACKOFF_CAP (10 * USEC_PER_MINUTE)

/* ---- The end of every run ---------------------------------------------------- */

bool maintenance_is_storage_fault(DbFault f) {
        /* "malformed database schema" from SQL of a newer SQLite: the
         * storage is fine, this SQLite is too old (compat.h). */
        if (f.skew)
                return false;
        switch (f.code & 0xff) {
        case SQLITE_IOERR:
        case SQLITE_READONLY:
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
        case SQLITE_CANTOPEN:
        case SQLITE_FULL:
                return true;
        default:
                return f.sys_errno == ENOSPC || f.sys_errno == EDQUOT || f.sys_errno == EROFS || f.sys_errno == EIO;
        }
}

/* A full file system: say which, how much it has, how much was needed. */
static void add_space(Maintenance *mt, TaskReport *r) {
        char dir[4096], more[384];

        if ((r->fault.code & 0xff) != SQLITE_FULL && r->fault.sys_errno != ENOSPC && r->fault.sys_errno != EDQUOT)
                return;
        bufprintf(dir, sizeof(dir), "%s", mt->env.db_path);
        describe_space(dirname(dir), r->space_needed, more, sizeof(more));
        bufprintf(r->summary + strlen(r->summary), sizeof(r->summary) - strlen(r->summary), "; %s", more);
}

void task_report_init(TaskReport *r, TaskTrigger trigger, usec_t started_rt) {
        *r = (TaskReport){
                .result = TASK_RESULT_OK,
                .trigger = trigger,
                .started_rt = started_rt,
                .priority = LOG_INFO,
                .outcome = { .frames = -1, .checkpointed = -1, .freelist_after = -1 },
        };
}

static void log_report(TaskId task, const TaskReport *r) {
        LogFields f = r->fields;
        char took[32];

        if (!r->message_id)
                return;
        log_field(&f, "SQLVIGIL_TRIGGER", "%s", task_trigger_names[r->trigger]);
        log_field(&f, "SQLVIGIL_RESULT", "%s", task_result_names[r->result]);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, r->duration);
        log_field(&f, "SQLVIGIL_LOCK_USEC", "%" PRIu64, r->holds.max);
        log_field(&f, "SQLVIGIL_LOCK_HOLDS", "%" PRIu64, r->holds.count);
        log_field(&f, "SQLVIGIL_LOCK_TOTAL_USEC", "%" PRIu64, r->holds.total);
        format_elapsed(took, sizeof(took), r->duration);
        (void)task;
        log_event(r->priority, r->message_id, r->event, &f, "%s%s%s in %s", r->message, r->message[0] ? " " : "",
                  r->summary, took);
}

void maintenance_end(Maintenance *mt, TaskId task, TaskReport *r) {
        TaskRun *run = &mt->last[task];
        Pending p = mt->pending[task];

        if (mt->dying)
                return;
        if (r->result == TASK_RESULT_FAILED)
                add_space(mt, r);
        if (!r->nothing_done) {
                log_report(task, r);
                *run = (TaskRun){
                        .valid = true,
                        .at = r->started_rt,
                        .duration = r->duration,
                        .lock_usec = r->holds.max,
                        .result = r->result,
                        .trigger = r->trigger,
                };
                bufprintf(run->summary, sizeof(run->summary), "%s", r->summary);
                mt->totals.runs[task]++;
                mt->totals.holds[task].count += r->holds.count;
                mt->totals.holds[task].total += r->holds.total;
                mt->totals.holds[task].max = MAX(mt->totals.holds[task].max, r->holds.max);
        }

        mt->pending[task] = (Pending){ 0 };
        if (p.reply) {
                r->outcome.task = task;
                r->outcome.run = r->nothing_done ? NULL : run;
                if (!r->outcome.ok && !r->outcome.error)
                        r->outcome.error = r->result == TASK_RESULT_CANCELLED ? "cancelled: sqlvigil is stopping"
                                                                              : r->summary;
                p.reply(p.userdata, &r->outcome);
        }

        /* Storage faults are health facts until the task succeeds again. */
        if (r->result == TASK_RESULT_FAILED && maintenance_is_storage_fault(r->fault)) {
                bool was = mt->fault;

                mt->fault = true;
                mt->fault_task = task;
                mt->fault_codes = r->fault;
                bufprintf(mt->fault_text, sizeof(mt->fault_text), "%s: %s", task_names[task], r->summary);
                if (!was)
                        maintenance_facts_changed(mt);
        } else if (mt->fault && mt->fault_task == task && r->result == TASK_RESULT_OK && !r->nothing_done) {
                mt->fault = false;
                maintenance_facts_changed(mt);
        }

        if (r->result == TASK_RESULT_FAILED) {
                usec_t delay = task_backoff(++mt->failures[task], FAIL_BACKOFF_BASE, FAIL_BACKOFF_CAP);

                mt->not_before[task] = now_boot() + delay;
                scheduler_defer(&mt->scheduler, task, now_boot(), MAX(delay, r->retry));
        } else {
                if (r->result != TASK_RESULT_CANCELLED && !r->nothing_done) {
                        mt->failures[task] = 0;
                        mt->not_before[task] = 0;
                }
                if (r->retry)
                        scheduler_retry(&mt->scheduler, task, now_boot(), r->retry);
                else
                        scheduler_done(&mt->scheduler, task, now_boot());
        }
        if (mt->started)
                (void)arm_timer(mt);
        if (!r->nothing_done && mt->env.run_ended)
                mt->env.run_ended(mt->env.userdata, task);
}

/* ---- Scheduling ------------------------------------------------------------------ */

static void start_task(Maintenance *mt, TaskId t, TaskTrigger trigger) {
        int64_t arg = trigger == TRIGGER_ADMIN ? mt->admin_arg[t] : 0;

        switch (t) {
        case TASK_CHECKPOINT:
                checkpointer_run(mt->checkpointer, trigger, (CheckpointMode)arg);
                break;
        case TASK_VACUUM:
                vacuumer_run(mt->vacuumer, trigger, arg);
                break;
        case TASK_ANALYZE:
                analyze_run(mt, trigger, trigger == TRIGGER_ADMIN ? (AnalyzeMode)arg : mt->config->analyze_mode);
                break;
        case TASK_QUICK_CHECK:
                checker_run(mt->checker, trigger, trigger == TRIGGER_ADMIN && arg == 1);
                break;
        case TASK_BACKUP:
                backuper_run(mt->backuper, trigger == TRIGGER_ADMIN && arg == BACKUP_FOR_RESTORE ? TRIGGER_RESTORE
                                                                                                 : trigger);
                break;
        default: {
                TaskReport r;

                task_report_init(&r, trigger, now_usec(CLOCK_REALTIME));
                r.nothing_done = true;
                maintenance_end(mt, t, &r);
                break;
        }
        }
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Maintenance *mt = userdata;
        int t;

        (void)s;
        (void)usec;
        while ((t = scheduler_take_due(&mt->scheduler, now_boot())) >= 0)
                start_task(mt, (TaskId)t, TRIGGER_INTERVAL);
        return arm_timer(mt);
}

static int arm_timer(Maintenance *mt) {
        usec_t next = scheduler_next(&mt->scheduler), smallest = USEC_INFINITY;
        int r;

        if (mt->scheduler.stopped || next == USEC_INFINITY)
                return sd_event_source_set_enabled(mt->timer, SD_EVENT_OFF);
        for (int t = 0; t < _TASK_MAX; t++)
                if (mt->scheduler.task[t].interval)
                        smallest = MIN(smallest, mt->scheduler.task[t].interval);
        /* Coarse timers let the kernel batch wake-ups: a twentieth of the
         * shortest interval, at most a second. */
        r = sd_event_source_set_time_accuracy(mt->timer, MAX(MIN(smallest / 20, USEC_PER_SEC), USEC_PER_MSEC));
        if (r >= 0)
                r = sd_event_source_set_time(mt->timer, next);
        if (r >= 0)
                r = sd_event_source_set_enabled(mt->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error("cannot arm the maintenance timer: %s", strerror(-r));
        return r;
}

/* ---- Public ----------------------------------------------------------------------- */

int maintenance_new(Maintenance **ret, const MaintenanceEnv *env, const Config *config) {
        Maintenance *mt;
        int r;

        mt = calloc(1, sizeof(*mt));
        if (!mt)
                return -ENOMEM;
        mt->env = *env;
        mt->config = config;
        r = checkpointer_new(&mt->checkpointer, mt);
        if (r >= 0)
                r = vacuumer_new(&mt->vacuumer, mt);
        if (r >= 0)
                r = checker_new(&mt->checker, mt);
        if (r >= 0)
                r = backuper_new(&mt->backuper, mt);
        if (r >= 0)
                r = restorer_new(&mt->restorer, mt);
        if (r < 0) {
                maintenance_free(mt);
                return r;
        }
        *ret = mt;
        return 0;
}

Maintenance *maintenance_free(Maintenance *mt) {
        if (!mt)
                return NULL;
        checkpointer_free(mt->checkpointer);
        vacuumer_free(mt->vacuumer);
        checker_free(mt->checker);
        backuper_free(mt->backuper);
        restorer_free(mt->restorer);
        sd_event_source_disable_unref(mt->timer);
        free(mt);
        return NULL;
}

void maintenance_teardown(Maintenance *mt) {
        if (mt)
                mt->dying = true;
}

int maintenance_start(Maintenance *mt, const DbFiles *files) {
        usec_t intervals[_TASK_MAX];
        int r;

        collect_intervals(mt->config, intervals);
        scheduler_init(&mt->scheduler, intervals, now_boot(), random_seed());

        r = sd_event_add_time(mt->env.event, &mt->timer, CLOCK_BOOTTIME, USEC_INFINITY, USEC_PER_SEC, on_timer, mt);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(mt->timer, "maintenance");
        r = checkpointer_start(mt->checkpointer, files);
        if (r >= 0)
                r = vacuumer_start(mt->vacuumer);
        if (r >= 0)
                r = backuper_start(mt->backuper, files);
        if (r >= 0)
                restorer_cleanup(mt->restorer);
        if (r < 0)
                return r;
        mt->started = true;
        return arm_timer(mt);
}

void maintenance_reload(Maintenance *mt, const Config *config) {
        usec_t intervals[_TASK_MAX];

        mt->config = config;
        collect_intervals(config, intervals);
        scheduler_set_intervals(&mt->scheduler, intervals, now_boot());
        vacuumer_reload(mt->vacuumer);
        backuper_reload(mt->backuper);
        (void)arm_timer(mt);
}

void maintenance_stop(Maintenance *mt) {
        scheduler_stop(&mt->scheduler);
        (void)sd_event_source_set_enabled(mt->timer, SD_EVENT_OFF);
        checkpointer_stop(mt->checkpointer);
        vacuumer_stop(mt->vacuumer);
        backuper_stop(mt->backuper);
}

int maintenance_request(Maintenance *mt, TaskId task, int64_t arg, MaintenanceReply cb, void *userdata) {
        if (mt->scheduler.stopped)
                return MAINTENANCE_E_STOPPING;
        if (mt->pending[task].reply || !scheduler_begin(&mt->scheduler, task, now_boot()))
                return MAINTENANCE_E_RUNNING;
        mt->pending[task] = (Pending){ .reply = cb, .userdata = userdata };
        mt->admin_arg[task] = arg;
        start_task(mt, task, TRIGGER_ADMIN);
        return 0;
}

void maintenance_forget_reply(Maintenance *mt, void *userdata) {
        for (int t = 0; t < _TASK_MAX; t++)
                if (mt->pending[t].userdata == userdata)
                        mt->pending[t] = (Pending){ 0 };
}

int maintenance_final_checkpoint(Maintenance *mt, CheckpointMode mode, usec_t timeout, FinalCheckpointDone done,
                                 void *userdata) {
        return checkpointer_final(mt->checkpointer, mode, timeout, done, userdata);
}

const char *maintenance_corruption(const Maintenance *mt) {
        return checker_corruption(mt->checker);
}

const char *maintenance_inconsistency(const Maintenance *mt) {
        return checker_inconsistency(mt->checker);
}

const char *maintenance_check_unsupported(const Maintenance *mt) {
        return checker_unsupported(mt->checker);
}

void maintenance_set_check_unsupported(Maintenance *mt, const char *why) {
        checker_set_unsupported(mt->checker, why);
}

const char *maintenance_storage_fault(const Maintenance *mt, int *ret_code) {
        if (!mt->fault)
                return NULL;
        if (ret_code)
                *ret_code = mt->fault_codes.code;
        return mt->fault_text;
}

bool maintenance_backing_off(const Maintenance *mt, TaskId task) {
        return mt->not_before[task] > now_boot();
}

const BackupFacts *maintenance_backups(const Maintenance *mt) {
        return backuper_facts(mt->backuper);
}

Backuper *maintenance_backuper(Maintenance *mt) {
        return mt->backuper;
}

Restorer *maintenance_restorer(Maintenance *mt) {
        return mt->restorer;
}

const char *maintenance_starvation(const Maintenance *mt) {
        return checkpointer_starvation(mt->checkpointer);
}

const TaskRun *maintenance_last(const Maintenance *mt, TaskId task) {
        return &mt->last[task];
}

const MaintenanceTotals *maintenance_totals(const Maintenance *mt) {
        return &mt->totals;
}

bool maintenance_wal_index(const Maintenance *mt, WalIndex *ret) {
        return checkpointer_wal_index(mt->checkpointer, ret);
}

const char *maintenance_running(const Maintenance *mt) {
        for (int t = 0; t < _TASK_MAX; t++)
                if (mt->scheduler.task[t].running)
                        return task_names[t];
        return NULL;
}

/* ---- For the tasks ------------------------------------------------------------- */

const MaintenanceEnv *maintenance_env(const Maintenance *mt) {
        return &mt->env;
}

const Config *maintenance_config(const Maintenance *mt) {
        return mt->config;
}

Scheduler *maintenance_scheduler(Maintenance *mt) {
        return &mt->scheduler;
}

bool maintenance_active(const Maintenance *mt) {
        return !mt->scheduler.stopped && !mt->dying;
}

bool maintenance_submit(Maintenance *mt, Job *job) {
        if (!maintenance_active(mt))
                return false;
        worker_submit(mt->env.db_worker, job);
        return true;
}

bool maintenance_admin_waiting(const Maintenance *mt, TaskId task) {
        return mt->pending[task].reply != NULL;
}

MaintenanceTotals *maintenance_totals_mut(Maintenance *mt) {
        return &mt->totals;
}

void maintenance_facts_changed(Maintenance *mt) {
        if (!mt->dying && mt->env.facts_changed)
                mt->env.facts_changed(mt->env.userdata);
}

Checkpointer *maintenance_checkpointer(Maintenance *mt) {
        return mt->checkpointer;
}
