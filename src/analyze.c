/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdlib.h>

#include "analyze.h"
#include "log.h"
#include "maintenance.h"
#include "messages.h"

/* A task that could not get the lock is tried again this soon rather than a
 * whole interval (a day) later. */
#define BUSY_RETRY (5 * USEC_PER_MINUTE)

typedef struct AnalyzeJob {
        Job job;
        Maintenance *mt;
        TaskTrigger trigger;
        usec_t started_rt;
        AnalyzeMode mode;
        uint64_t limit;
        usec_t max_wait;
        DbAnalyze result;
        DbFault fault;
} AnalyzeJob;

static void job_run(Job *j, Db *db) {
        AnalyzeJob *a = container_of(j, AnalyzeJob, job);

        db_analyze(db, a->mode, a->limit, a->max_wait, &a->result);
        a->fault = db_take_fault(db);
}

static void job_done(Job *j, bool ran) {
        AnalyzeJob *a = container_of(j, AnalyzeJob, job);
        const DbAnalyze *d = &a->result;
        char lock[32];
        TaskReport r;

        task_report_init(&r, a->trigger, a->started_rt);
        r.duration = d->duration;
        r.holds = d->holds;
        if (!ran || d->result == DB_E_CANCELLED)
                r.result = TASK_RESULT_CANCELLED;
        else if (d->result == DB_E_BUSY)
                r.result = TASK_RESULT_BUSY;
        else if (d->result != 0)
                r.result = TASK_RESULT_FAILED;
        else
                r.result = TASK_RESULT_OK;
        format_elapsed(lock, sizeof(lock), d->holds.max);
        if (r.result == TASK_RESULT_CANCELLED)
                bufprintf(r.summary, sizeof(r.summary),
                          "%s: cancelled (sqlvigil is stopping) after %u table%s analyzed%s%s%s, longest lock %s",
                          analyze_mode_names[a->mode], d->analyzed, d->analyzed == 1 ? "" : "s",
                          d->analyzed ? " (" : "", d->tables, d->analyzed ? ")" : "", lock);
        else
                bufprintf(r.summary, sizeof(r.summary), "%s: %u of %u tables analyzed%s%s%s, longest lock %s%s%s",
                          analyze_mode_names[a->mode], d->analyzed, d->considered, d->analyzed ? " (" : "",
                          d->tables, d->analyzed ? ")" : "", lock, d->result ? "; " : "", d->result ? d->error : "");
        r.message_id = SQLVIGIL_MESSAGE_ANALYZE;
        r.event = "analyze";
        r.priority = r.result == TASK_RESULT_FAILED ? LOG_ERR : LOG_INFO;
        bufprintf(r.message, sizeof(r.message), "analyze (%s)", task_trigger_names[a->trigger]);
        log_field(&r.fields, "SQLVIGIL_ANALYZE_MODE", "%s", analyze_mode_names[a->mode]);
        log_field(&r.fields, "SQLVIGIL_TABLES", "%u", d->analyzed);
        log_field(&r.fields, "SQLVIGIL_TABLES_CONSIDERED", "%u", d->considered);
        log_field(&r.fields, "SQLVIGIL_TABLE_NAMES", "%s", d->tables);
        log_field(&r.fields, "SQLVIGIL_SQLITE_OPTIMIZE", "%d", d->sqlite_optimize);
        r.outcome = (MaintenanceOutcome){
                .task = TASK_ANALYZE,
                .ok = r.result == TASK_RESULT_OK,
                .mode = analyze_mode_names[a->mode],
                .error = r.result == TASK_RESULT_OK ? NULL : r.summary,
                .tables = d->analyzed,
                .busy = r.result == TASK_RESULT_BUSY,
                .frames = -1,
                .checkpointed = -1,
        };
        r.retry = r.result == TASK_RESULT_BUSY ? BUSY_RETRY : 0;
        r.fault = a->fault;
        if (r.result != TASK_RESULT_CANCELLED)
                maintenance_totals_mut(a->mt)->tables_analyzed += d->analyzed;
        {
                Maintenance *mt = a->mt;

                free(a);
                maintenance_end(mt, TASK_ANALYZE, &r);
        }
}

void analyze_run(Maintenance *mt, TaskTrigger trigger, AnalyzeMode mode) {
        AnalyzeJob *a = calloc(1, sizeof(*a));
        TaskReport r;

        if (a) {
                a->job = (Job){ .name = "analyze", .cancellable = true, .run = job_run, .done = job_done };
                a->mt = mt;
                a->trigger = trigger;
                a->started_rt = now_usec(CLOCK_REALTIME);
                a->mode = mode;
                a->limit = maintenance_config(mt)->analysis_limit;
                /* Waiting for the lock blocks no one; holding it does, and
                 * each table's ANALYZE holds it only for its bounded sample. */
                a->max_wait = USEC_PER_SEC;
                if (maintenance_submit(mt, &a->job)) {
                        log_debug("analyze: starting %s (%s)", analyze_mode_names[mode], task_trigger_names[trigger]);
                        return;
                }
        }
        task_report_init(&r, trigger, now_usec(CLOCK_REALTIME));
        r.result = a ? TASK_RESULT_CANCELLED : TASK_RESULT_FAILED;
        bufprintf(r.summary, sizeof(r.summary), "%s", a ? "cancelled: sqlvigil is stopping" : "out of memory");
        free(a);
        maintenance_end(mt, TASK_ANALYZE, &r);
}
