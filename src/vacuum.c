/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "budget.h"
#include "checkpoint.h"
#include "log.h"
#include "maintenance.h"
#include "messages.h"
#include "vacuum.h"

/* A task that could not get the lock is tried again this soon rather than a
 * whole interval later. */
#define BUSY_RETRY (5 * USEC_PER_MINUTE)

/* Consecutive vacuum steps that found the lock busy before the run gives up
 * until its next interval. At 2 x step_budget per attempt, about 4 s. */
#define VACUUM_MAX_BUSY 100

typedef struct VacuumRun {
        bool active;
        TaskTrigger trigger;
        usec_t started_rt, started;  /* CLOCK_REALTIME, CLOCK_MONOTONIC */
        int64_t floor;          /* stop when the freelist is this small */
        int64_t limit;          /* pages to free at most, 0: no limit */
        int64_t page_size;
        int64_t freelist_before, page_count_before;
        int64_t freelist, page_count;
        uint64_t freed;
        unsigned steps, busy_in_a_row, busy_total;
        LockHolds holds;
        Budget budget;          /* fixed at the start: a reload does not change a run */
} VacuumRun;

struct Vacuumer {
        Maintenance *mt;
        sd_event_source *step_timer; /* the pause between steps */
        VacuumRun run;
        double learned_usec_per_page;
        char note[256];              /* the last "cannot reclaim" report, to say it once */
        char convert_unsupported[320]; /* the conversion cannot run with this SQLite: why; "" it can */
};

typedef struct CountsJob {
        Job job;
        Vacuumer *vacuumer;
        TaskTrigger trigger;
        int64_t limit;
        usec_t started_rt;
        DbCounts counts;
} CountsJob;

typedef struct StepJob {
        Job job;
        Vacuumer *vacuumer;
        uint32_t pages;
        usec_t max_wait;
        usec_t hold;
        DbVacuumStep step;
        DbFault fault;
} StepJob;

typedef struct ConvertJob {
        Job job;
        Vacuumer *vacuumer;
        usec_t started_rt;
        usec_t max_wait;
        uint64_t file_before, file_after;
        DbConvert convert;
        DbFault fault;
} ConvertJob;

static void next_step(Vacuumer *v);

/* ---- The rule ------------------------------------------------------------- */

VacuumPlan vacuum_plan(const VacuumInput *in) {
        double threshold = (double)in->min_free_pages + in->free_fraction * (double)in->page_count;

        /* An admin's run starts regardless of the trigger; it only needs a
         * file in which incremental vacuum can work. */
        if (in->admin)
                return in->auto_vacuum == 2 ? VACUUM_PLAN_STEPS : VACUUM_PLAN_REFUSED;
        if (in->auto_vacuum == 0) {
                /* The one-time conversion: when asked for explicitly
                 * ([pragmas] auto_vacuum = incremental), at the first vacuum
                 * interval; with auto_vacuum unset, only once there are free
                 * pages worth reclaiming. Never against an explicit none or full. */
                bool asked = in->auto_vacuum_requested == 2;
                bool allowed = in->auto_vacuum_requested == -1 || asked;

                if (!asked && (double)in->freelist <= threshold)
                        return VACUUM_PLAN_NOTHING;
                return in->convert && allowed ? VACUUM_PLAN_CONVERT : VACUUM_PLAN_CANNOT;
        }
        if ((double)in->freelist <= threshold)
                return VACUUM_PLAN_NOTHING;
        return in->auto_vacuum == 2 ? VACUUM_PLAN_STEPS : VACUUM_PLAN_CANNOT;
}

/* ---- Helpers --------------------------------------------------------------- */

/* Says once why free pages cannot be reclaimed; repeats only when the reason changes. */
static void note(Vacuumer *v, int prio, const char *fmt, ...) _printf_(3, 4);
static void note(Vacuumer *v, int prio, const char *fmt, ...) {
        char text[256];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (streq(text, v->note))
                return;
        bufprintf(v->note, sizeof(v->note), "%s", text);
        log_event(prio, SQLVIGIL_MESSAGE_VACUUM, "vacuum", NULL, "vacuum: %s", text);
}

/* How many pages sqlvigil's own connection caches (PRAGMA cache_size read
 * back: pages when positive, KiB when negative); 0 when unknown. */
static uint32_t cache_pages(const PragmaStatus *cache, int64_t page_size) {
        if (!cache->known || cache->value == 0)
                return 0;
        if (cache->value > 0)
                return (uint32_t)MIN(cache->value, (int64_t)UINT32_MAX);
        return (uint32_t)MIN(-cache->value * 1024 / MAX(page_size, 512), (int64_t)UINT32_MAX);
}

static const PragmaStatus *pragma(const Vacuumer *v, PragmaId id) {
        return &maintenance_env(v->mt)->pragmas->status[id];
}

/* Ends a run that never started steps: nothing to do, or it could not start. */
static void end_early(Vacuumer *v, TaskTrigger trigger, usec_t started_rt, TaskResult result, bool nothing,
                      const char *error, int64_t freelist) {
        TaskReport r;

        task_report_init(&r, trigger, started_rt);
        r.result = result;
        r.nothing_done = nothing;
        if (result == TASK_RESULT_CANCELLED)
                bufprintf(r.summary, sizeof(r.summary), "cancelled before it began: %s", error ? error : "?");
        else
                bufprintf(r.summary, sizeof(r.summary), "%s", error ? error : "nothing to reclaim");
        r.message_id = SQLVIGIL_MESSAGE_VACUUM;
        r.event = "vacuum";
        r.priority = result == TASK_RESULT_FAILED ? LOG_ERR : LOG_INFO;
        bufprintf(r.message, sizeof(r.message), "vacuum (%s)", task_trigger_names[trigger]);
        r.outcome = (MaintenanceOutcome){
                .task = TASK_VACUUM,
                .ok = result == TASK_RESULT_OK,
                .error = error,
                .pages = 0,
                .freelist_after = freelist,
                .frames = -1,
                .checkpointed = -1,
        };
        maintenance_end(v->mt, TASK_VACUUM, &r);
}

/* ---- Steps ------------------------------------------------------------------- */

static void finish(Vacuumer *v, TaskResult result, const char *error, DbFault fault) {
        VacuumRun *run = &v->run;
        char took[32], lock[32], freed[32], fb[32], fa[32];
        /* The database's size as its page count says: the file itself only
         * shrinks when a checkpoint copies the last commit back. */
        uint64_t page_size = (uint64_t)MAX(run->page_size, 1);
        uint64_t size_before = (uint64_t)run->page_count_before * page_size;
        uint64_t size_after = (uint64_t)run->page_count * page_size;
        TaskReport r;

        (void)sd_event_source_set_enabled(v->step_timer, SD_EVENT_OFF);
        run->active = false;

        task_report_init(&r, run->trigger, run->started_rt);
        r.result = result;
        r.duration = now_usec(CLOCK_MONOTONIC) - run->started;
        r.holds = run->holds;
        format_elapsed(took, sizeof(took), r.duration);
        format_elapsed(lock, sizeof(lock), run->holds.max);
        format_bytes(freed, sizeof(freed), run->freed * page_size);
        format_bytes(fb, sizeof(fb), size_before);
        format_bytes(fa, sizeof(fa), size_after);
        if (error)
                bufprintf(r.summary, sizeof(r.summary), "%s after freeing %" PRIu64 " pages: %s",
                          task_result_names[result], run->freed, error);
        else
                bufprintf(r.summary, sizeof(r.summary),
                          "freed %" PRIu64 " pages (%s) in %u steps, longest lock %s; free pages %" PRIi64
                          " -> %" PRIi64 "; database %s -> %s",
                          run->freed, freed, run->steps, lock, run->freelist_before, run->freelist, fb, fa);
        r.message_id = SQLVIGIL_MESSAGE_VACUUM;
        r.event = "vacuum";
        r.priority = result == TASK_RESULT_FAILED ? LOG_ERR : LOG_INFO;
        bufprintf(r.message, sizeof(r.message), "vacuum (%s)", task_trigger_names[run->trigger]);
        log_field(&r.fields, "SQLVIGIL_PAGES", "%" PRIu64, run->freed);
        log_field(&r.fields, "SQLVIGIL_STEPS", "%u", run->steps);
        log_field(&r.fields, "SQLVIGIL_BUSY_STEPS", "%u", run->busy_total);
        log_field(&r.fields, "SQLVIGIL_FREELIST_BEFORE", "%" PRIi64, run->freelist_before);
        log_field(&r.fields, "SQLVIGIL_FREELIST_COUNT", "%" PRIi64, run->freelist);
        log_field(&r.fields, "SQLVIGIL_PAGE_COUNT_BEFORE", "%" PRIi64, run->page_count_before);
        log_field(&r.fields, "SQLVIGIL_PAGE_COUNT", "%" PRIi64, run->page_count);
        log_field(&r.fields, "SQLVIGIL_STEP_BUDGET_USEC", "%" PRIu64, run->budget.budget);
        r.outcome = (MaintenanceOutcome){
                .task = TASK_VACUUM,
                .ok = result == TASK_RESULT_OK,
                .error = result == TASK_RESULT_OK ? NULL : error ? error : task_result_names[result],
                .pages = (int64_t)run->freed,
                .freelist_after = run->freelist,
                .busy = result == TASK_RESULT_BUSY,
                .frames = -1,
                .checkpointed = -1,
        };
        r.retry = result == TASK_RESULT_BUSY ? BUSY_RETRY : 0;
        r.fault = fault;

        if (result != TASK_RESULT_CANCELLED)
                maintenance_totals_mut(v->mt)->pages_reclaimed += run->freed;
        if (run->budget.usec_per_page > 0)
                v->learned_usec_per_page = run->budget.usec_per_page;
        maintenance_end(v->mt, TASK_VACUUM, &r);
}

static void step_run(Job *j, Db *db) {
        StepJob *s = container_of(j, StepJob, job);

        db_vacuum_step(db, s->pages, s->max_wait, s->hold, &s->step);
        s->fault = db_take_fault(db);
}

static void step_done(Job *j, bool ran) {
        StepJob *s = container_of(j, StepJob, job);
        Vacuumer *v = s->vacuumer;
        VacuumRun *run = &v->run;
        const DbVacuumStep st = s->step;
        const DbFault fault = s->fault;
        usec_t pause;
        int r;

        free(s);
        if (!ran || st.result == DB_E_CANCELLED) {
                finish(v, TASK_RESULT_CANCELLED, "sqlvigil is stopping", (DbFault){ 0 });
                return;
        }
        if (st.result == DB_E_SQLITE) {
                finish(v, TASK_RESULT_FAILED, st.error, fault);
                return;
        }
        if (st.result == DB_E_BUSY) {
                /* Writers had the lock the whole time we were willing to
                 * wait: let them be, and try again after a pause. */
                run->busy_total++;
                if (++run->busy_in_a_row >= VACUUM_MAX_BUSY) {
                        finish(v, TASK_RESULT_BUSY, "the write lock was busy for every attempt", (DbFault){ 0 });
                        return;
                }
                pause = budget_pause(&run->budget, 0);
        } else {
                run->busy_in_a_row = 0;
                run->steps++;
                run->freed += st.freed;
                run->freelist = st.freelist_count;
                run->page_count = st.page_count;
                if (st.lock_held)
                        lock_holds_add(&run->holds, st.lock_held);
                budget_record(&run->budget, st.freed, st.lock_held);
                pause = budget_pause(&run->budget, st.lock_held);
                /* Our own steps are what fill the WAL fastest now (each
                 * writes about three frames per page freed): look at it after
                 * every step rather than at the next poll, so checkpoints
                 * stay small. Measured: between 100 ms polls the WAL grew by
                 * 5,000-17,000 frames, and the RESTART that followed held the
                 * writer lock for up to 70 ms. */
                checkpointer_look(maintenance_checkpointer(v->mt));
                log_debug("vacuum step %u: freed %" PRIu32 " pages holding the lock %" PRIu64 " us; next %" PRIu32
                          " pages (%.1f us/page)",
                          run->steps, st.freed, st.lock_held, run->budget.pages, run->budget.usec_per_page);
                if (st.freed == 0 || run->freelist <= run->floor ||
                    (run->limit && (int64_t)run->freed >= run->limit)) {
                        finish(v, TASK_RESULT_OK, NULL, (DbFault){ 0 });
                        return;
                }
        }
        if (!maintenance_active(v->mt)) {
                finish(v, TASK_RESULT_CANCELLED, "sqlvigil is stopping", (DbFault){ 0 });
                return;
        }
        r = sd_event_source_set_time_relative(v->step_timer, pause);
        if (r >= 0)
                r = sd_event_source_set_enabled(v->step_timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_error("cannot arm the vacuum step timer: %s", strerror(-r));
                finish(v, TASK_RESULT_FAILED, "cannot arm the step timer", (DbFault){ 0 });
        }
}

static void next_step(Vacuumer *v) {
        VacuumRun *run = &v->run;
        StepJob *s;
        int64_t want;

        want = run->freelist - run->floor;
        if (run->limit)
                want = MIN(want, run->limit - (int64_t)run->freed);
        s = calloc(1, sizeof(*s));
        if (!s) {
                finish(v, TASK_RESULT_FAILED, "out of memory", (DbFault){ 0 });
                return;
        }
        s->job = (Job){ .name = "vacuum", .cancellable = true, .run = step_run, .done = step_done };
        s->vacuumer = v;
        s->pages = (uint32_t)MAX(MIN((int64_t)run->budget.pages, want), 1);
        s->hold = budget_hold(&run->budget);
        /* Waiting for the lock blocks nobody; do not wait much longer than a
         * step would hold it. */
        s->max_wait = run->budget.budget;
        if (!maintenance_submit(v->mt, &s->job)) {
                free(s);
                finish(v, TASK_RESULT_CANCELLED, "sqlvigil is stopping", (DbFault){ 0 });
        }
}

static int on_step_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Vacuumer *v = userdata;

        (void)s;
        (void)usec;
        if (v->run.active)
                next_step(v);
        return 0;
}

/* ---- The conversion ----------------------------------------------------------- */

static void convert_run(Job *j, Db *db) {
        ConvertJob *c = container_of(j, ConvertJob, job);

        c->file_before = file_size(db_path(db));
        db_convert(db, c->max_wait, &c->convert);
        c->fault = db_take_fault(db);
        c->file_after = file_size(db_path(db));
}

static void convert_done(Job *j, bool ran) {
        ConvertJob *c = container_of(j, ConvertJob, job);
        Vacuumer *v = c->vacuumer;
        const DbConvert *cv = &c->convert;
        const MaintenanceEnv *env = maintenance_env(v->mt);
        char fb[32], fa[32];
        TaskReport r;

        task_report_init(&r, TRIGGER_CONVERT, c->started_rt);
        r.duration = cv->duration;
        format_bytes(fb, sizeof(fb), c->file_before);
        format_bytes(fa, sizeof(fa), c->file_after);
        if (!ran || cv->result == DB_E_CANCELLED) {
                r.result = TASK_RESULT_CANCELLED;
                bufprintf(r.summary, sizeof(r.summary),
                          "full VACUUM to auto_vacuum=incremental cancelled (sqlvigil is stopping); the file is "
                          "unchanged");
        } else if (cv->result == DB_E_SQLITE && c->fault.skew) {
                /* VACUUM rebuilds every index and CHECK: one on a function
                 * this SQLite lacks fails it half way, after reading the
                 * whole database. Not again until a restart or reload. */
                r.result = TASK_RESULT_UNSUPPORTED;
                bufprintf(r.summary, sizeof(r.summary),
                          "full VACUUM to auto_vacuum=incremental: unsupported: sqlvigil's SQLite %s cannot rebuild "
                          "this database, whose schema uses what a newer SQLite added: %s",
                          sqlite3_libversion(), cv->error);
                bufprintf(v->convert_unsupported, sizeof(v->convert_unsupported), "%s", r.summary);
        } else if (cv->result != 0 || !cv->incremental) {
                r.result = cv->result == DB_E_BUSY ? TASK_RESULT_BUSY : TASK_RESULT_FAILED;
                bufprintf(r.summary, sizeof(r.summary), "full VACUUM to auto_vacuum=incremental failed: %s",
                          cv->result ? cv->error : "auto_vacuum did not change");
        } else {
                PragmaStatus st = env->pragmas->status[PRAGMA_AUTO_VACUUM];

                r.result = TASK_RESULT_OK;
                bufprintf(r.summary, sizeof(r.summary),
                          "converted to auto_vacuum=incremental with a full VACUUM: pages %" PRIi64 " -> %" PRIi64
                          ", free pages %" PRIi64 " -> %" PRIi64 ", file %s -> %s",
                          cv->page_count_before, cv->page_count_after, cv->freelist_before, cv->freelist_after, fb,
                          fa);
                st.outcome = st.requested ? PRAGMA_APPLIED : PRAGMA_UNREQUESTED;
                st.known = true;
                st.value = 2;
                pragma_format_value(PRAGMA_AUTO_VACUUM, 2, st.effective, sizeof(st.effective));
                if (env->pragma_changed)
                        env->pragma_changed(env->userdata, PRAGMA_AUTO_VACUUM, &st);
        }
        r.fault = c->fault;
        /* The VACUUM writes the whole database once more, through the WAL. */
        r.space_needed = c->file_before;
        /* The whole VACUUM holds the write lock: it is one hold. */
        if (ran && cv->duration)
                lock_holds_add(&r.holds, cv->duration);
        r.message_id = SQLVIGIL_MESSAGE_VACUUM;
        r.event = "vacuum";
        r.priority = r.result == TASK_RESULT_OK || r.result == TASK_RESULT_CANCELLED ? LOG_NOTICE
                     : r.result == TASK_RESULT_UNSUPPORTED                             ? LOG_WARNING
                                                                                       : LOG_ERR;
        bufprintf(r.message, sizeof(r.message), "vacuum:");
        log_field(&r.fields, "SQLVIGIL_CONVERT", "1");
        log_field(&r.fields, "SQLVIGIL_PAGE_COUNT_BEFORE", "%" PRIi64, cv->page_count_before);
        log_field(&r.fields, "SQLVIGIL_PAGE_COUNT", "%" PRIi64, cv->page_count_after);
        log_field(&r.fields, "SQLVIGIL_FREELIST_BEFORE", "%" PRIi64, cv->freelist_before);
        log_field(&r.fields, "SQLVIGIL_FREELIST_COUNT", "%" PRIi64, cv->freelist_after);
        log_field(&r.fields, "SQLVIGIL_FILE_BYTES_BEFORE", "%" PRIu64, c->file_before);
        log_field(&r.fields, "SQLVIGIL_FILE_BYTES", "%" PRIu64, c->file_after);
        r.outcome = (MaintenanceOutcome){
                .task = TASK_VACUUM,
                .ok = r.result == TASK_RESULT_OK,
                .error = r.result == TASK_RESULT_OK ? NULL : r.summary,
                .freelist_after = cv->freelist_after,
                .frames = -1,
                .checkpointed = -1,
        };
        free(c);
        /* The whole database went through the WAL; shrink it now. */
        if (r.result == TASK_RESULT_OK)
                scheduler_trigger(maintenance_scheduler(v->mt), TASK_CHECKPOINT, now_usec(CLOCK_BOOTTIME));
        maintenance_end(v->mt, TASK_VACUUM, &r);
}

/* The one-time full VACUUM that switches a file to auto_vacuum=incremental,
 * when the file system has room. */
static void start_convert(Vacuumer *v, const DbCounts *counts, usec_t started_rt) {
        const MaintenanceEnv *env = maintenance_env(v->mt);
        const Config *cfg = maintenance_config(v->mt);
        uint64_t db_bytes = file_size(env->db_path), free_bytes = 0;
        char need[32], have[32], dir[4096];
        struct statvfs vfs;
        ConvertJob *c;

        bufprintf(dir, sizeof(dir), "%s", env->db_path);
        if (statvfs(dirname(dir), &vfs) == 0)
                free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
        /* VACUUM in WAL mode writes every page of the new database into the
         * WAL first: the file system needs room for about one more copy of
         * the database, besides min_free_disk. */
        if (free_bytes < db_bytes + cfg->min_free_disk) {
                note(v, LOG_WARNING,
                     "not converting to auto_vacuum=incremental: the full VACUUM needs %s free (the "
                     "database's size plus min_free_disk), the file system has %s",
                     format_bytes(need, sizeof(need), db_bytes + cfg->min_free_disk),
                     format_bytes(have, sizeof(have), free_bytes));
                end_early(v, TRIGGER_INTERVAL, started_rt, TASK_RESULT_OK, true, NULL, counts->freelist_count);
                return;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                end_early(v, TRIGGER_CONVERT, started_rt, TASK_RESULT_FAILED, false, "out of memory",
                          counts->freelist_count);
                return;
        }
        c->job = (Job){ .name = "vacuum (convert)", .cancellable = true, .run = convert_run, .done = convert_done };
        c->vacuumer = v;
        c->started_rt = started_rt;
        c->max_wait = config_busy_timeout(cfg);
        log_notice("vacuum: converting to auto_vacuum=incremental with a one-time full VACUUM "
                   "(%" PRIi64 " pages, %" PRIi64 " free; writers wait until it is done)",
                   counts->page_count, counts->freelist_count);
        if (!maintenance_submit(v->mt, &c->job)) {
                free(c);
                end_early(v, TRIGGER_CONVERT, started_rt, TASK_RESULT_CANCELLED, false, "sqlvigil is stopping",
                          counts->freelist_count);
        }
}

/* ---- A run ------------------------------------------------------------------ */

static void counts_run(Job *j, Db *db) {
        CountsJob *c = container_of(j, CountsJob, job);

        db_counts(db, &c->counts);
}

static void counts_done(Job *j, bool ran) {
        CountsJob *c = container_of(j, CountsJob, job);
        Vacuumer *v = c->vacuumer;
        const Config *cfg = maintenance_config(v->mt);
        const PragmaStatus *av = pragma(v, PRAGMA_AUTO_VACUUM);
        const DbCounts counts = c->counts;
        TaskTrigger trigger = c->trigger;
        usec_t started_rt = c->started_rt;
        int64_t limit = c->limit;
        char bytes[32], why[320];
        VacuumInput in;

        free(c);
        if (!ran || counts.result == DB_E_CANCELLED) {
                end_early(v, trigger, started_rt, TASK_RESULT_CANCELLED, false, "sqlvigil is stopping", -1);
                return;
        }
        if (counts.result != 0) {
                end_early(v, trigger, started_rt,
                          counts.result == DB_E_BUSY ? TASK_RESULT_BUSY : TASK_RESULT_FAILED, false, counts.error, -1);
                return;
        }
        in = (VacuumInput){
                .admin = trigger == TRIGGER_ADMIN,
                .freelist = counts.freelist_count,
                .page_count = counts.page_count,
                .auto_vacuum = av->known ? (int)av->value : -1,
                .auto_vacuum_requested = av->requested ? (int)av->requested_value : -1,
                .min_free_pages = cfg->min_free_pages,
                .free_fraction = cfg->free_fraction,
                .convert = cfg->convert,
        };
        format_bytes(bytes, sizeof(bytes), (uint64_t)counts.freelist_count * (uint64_t)MAX(counts.page_size, 1));
        switch (vacuum_plan(&in)) {
        case VACUUM_PLAN_NOTHING:
                end_early(v, trigger, started_rt, TASK_RESULT_OK, true, NULL, counts.freelist_count);
                return;
        case VACUUM_PLAN_REFUSED:
                bufprintf(why, sizeof(why),
                          "auto_vacuum is %s: incremental vacuum cannot reclaim pages in this file (with [vacuum] "
                          "convert = yes the scheduled task converts it once, when free disk allows)",
                          av->effective);
                end_early(v, trigger, started_rt, TASK_RESULT_FAILED, true, why, counts.freelist_count);
                return;
        case VACUUM_PLAN_CANNOT:
                if (in.auto_vacuum == 1)
                        note(v, LOG_NOTICE,
                             "auto_vacuum is full: SQLite reclaims free pages at every commit; nothing to do");
                else
                        note(v, LOG_WARNING,
                             "%" PRIi64 " free pages (%s) cannot be reclaimed step by step: auto_vacuum is %s%s",
                             counts.freelist_count, bytes, av->effective,
                             in.auto_vacuum != 0 ? ""
                             : in.auto_vacuum_requested == 0 || in.auto_vacuum_requested == 1
                                     ? " ([pragmas] auto_vacuum asks for that, so [vacuum] convert does not apply)"
                                     : "; set [vacuum] convert = yes to allow a one-time full VACUUM to incremental");
                end_early(v, trigger, started_rt, TASK_RESULT_OK, true, NULL, counts.freelist_count);
                return;
        case VACUUM_PLAN_CONVERT:
                if (v->convert_unsupported[0]) {
                        note(v, LOG_WARNING, "%" PRIi64 " free pages (%s) cannot be reclaimed: %s", counts.freelist_count,
                             bytes, v->convert_unsupported);
                        end_early(v, trigger, started_rt, TASK_RESULT_UNSUPPORTED, true, v->convert_unsupported,
                                  counts.freelist_count);
                        return;
                }
                start_convert(v, &counts, started_rt);
                return;
        case VACUUM_PLAN_STEPS:
                break;
        }

        v->run = (VacuumRun){
                .active = true,
                .trigger = trigger,
                .started_rt = started_rt,
                .started = now_usec(CLOCK_MONOTONIC),
                .floor = trigger == TRIGGER_ADMIN ? 0 : (int64_t)cfg->min_free_pages,
                .limit = limit,
                .page_size = counts.page_size,
                .freelist_before = counts.freelist_count,
                .page_count_before = counts.page_count,
                .freelist = counts.freelist_count,
                .page_count = counts.page_count,
        };
        budget_init(&v->run.budget, cfg->step_budget, v->learned_usec_per_page,
                    cache_pages(pragma(v, PRAGMA_CACHE_SIZE), counts.page_size));
        v->note[0] = '\0';
        log_debug("vacuum: starting (%s), %" PRIi64 " free pages", task_trigger_names[trigger], counts.freelist_count);
        next_step(v);
}

void vacuumer_run(Vacuumer *v, TaskTrigger trigger, int64_t limit) {
        CountsJob *c = calloc(1, sizeof(*c));
        usec_t now = now_usec(CLOCK_REALTIME);

        if (!c) {
                end_early(v, trigger, now, TASK_RESULT_FAILED, false, "out of memory", -1);
                return;
        }
        /* The counts are read when the run starts, not taken from a health
         * round seconds ago: the trigger and the summary see the file as it
         * is. */
        c->job = (Job){ .name = "vacuum", .cancellable = true, .run = counts_run, .done = counts_done };
        c->vacuumer = v;
        c->trigger = trigger;
        c->limit = limit;
        c->started_rt = now;
        if (!maintenance_submit(v->mt, &c->job)) {
                free(c);
                end_early(v, trigger, now, TASK_RESULT_CANCELLED, false, "sqlvigil is stopping", -1);
        }
}

/* ---- Object ------------------------------------------------------------------ */

int vacuumer_new(Vacuumer **ret, Maintenance *mt) {
        Vacuumer *v = calloc(1, sizeof(*v));

        if (!v)
                return -ENOMEM;
        v->mt = mt;
        *ret = v;
        return 0;
}

Vacuumer *vacuumer_free(Vacuumer *v) {
        if (!v)
                return NULL;
        sd_event_source_disable_unref(v->step_timer);
        free(v);
        return NULL;
}

int vacuumer_start(Vacuumer *v) {
        int r;

        r = sd_event_add_time(maintenance_env(v->mt)->event, &v->step_timer, CLOCK_MONOTONIC, USEC_INFINITY,
                              USEC_PER_MSEC, on_step_timer, v);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(v->step_timer, "vacuum-step");
        return sd_event_source_set_enabled(v->step_timer, SD_EVENT_OFF);
}

void vacuumer_stop(Vacuumer *v) {
        if (v->run.active && sd_event_source_get_enabled(v->step_timer, NULL) > 0)
                /* Between steps: no job will come back to end the run. */
                finish(v, TASK_RESULT_CANCELLED, "sqlvigil is stopping", (DbFault){ 0 });
}

void vacuumer_reload(Vacuumer *v) {
        v->note[0] = '\0'; /* the new configuration may change the verdict */
        v->convert_unsupported[0] = '\0'; /* and the schema may have changed: try once more */
}
