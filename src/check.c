/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "log.h"
#include "maintenance.h"
#include "messages.h"

struct Checker {
        Maintenance *mt;
        bool corrupt;
        char corruption[512];
};

typedef struct CheckJob {
        Job job;
        Checker *checker;
        TaskTrigger trigger;
        usec_t started_rt;
        bool integrity;
        DbCheck result;
        DbFault fault;
} CheckJob;

static void job_run(Job *j, Db *db) {
        CheckJob *c = container_of(j, CheckJob, job);

        db_check(db, c->integrity, &c->result);
        c->fault = db_take_fault(db);
}

static void job_done(Job *j, bool ran) {
        CheckJob *c = container_of(j, CheckJob, job);
        Checker *ck = c->checker;
        Maintenance *mt = ck->mt;
        const DbCheck *d = &c->result;
        const char *kind = c->integrity ? "integrity_check" : "quick_check";
        bool was_corrupt = ck->corrupt;
        TaskReport r;

        task_report_init(&r, c->trigger, c->started_rt);
        r.duration = d->duration;
        if (!ran || d->result == DB_E_CANCELLED) {
                r.result = TASK_RESULT_CANCELLED;
                r.priority = LOG_INFO;
                bufprintf(r.summary, sizeof(r.summary), "%s: cancelled", kind);
        } else if (d->result != 0) {
                r.result = TASK_RESULT_FAILED;
                r.priority = LOG_ERR;
                bufprintf(r.summary, sizeof(r.summary), "%s could not run: %s", kind, d->error);
        } else if (d->passed) {
                r.result = TASK_RESULT_OK;
                r.priority = LOG_INFO;
                bufprintf(r.summary, sizeof(r.summary), "%s: ok", kind);
                ck->corrupt = false;
                ck->corruption[0] = '\0';
        } else {
                r.result = TASK_RESULT_CORRUPT;
                r.priority = LOG_CRIT;
                bufprintf(r.summary, sizeof(r.summary), "%s found %u problem%s; the first: %s", kind, d->problems,
                          d->problems == 1 ? "" : "s", d->first);
                ck->corrupt = true;
                bufprintf(ck->corruption, sizeof(ck->corruption), "%s", d->first);
                maintenance_totals_mut(mt)->checks_failed++;
        }
        r.fault = c->fault;
        r.message_id = SQLVIGIL_MESSAGE_INTEGRITY;
        r.event = "integrity";
        log_field(&r.fields, "SQLVIGIL_CHECK", "%s", c->integrity ? "integrity" : "quick");
        log_field(&r.fields, "SQLVIGIL_PROBLEMS", "%u", d->problems);
        if (d->problems)
                log_field(&r.fields, "SQLVIGIL_REASON_TEXT", "%s", d->first);
        r.outcome = (MaintenanceOutcome){
                .task = TASK_QUICK_CHECK,
                .ok = r.result == TASK_RESULT_OK,
                .mode = c->integrity ? "integrity" : "quick",
                .error = r.result == TASK_RESULT_OK ? NULL : r.summary,
                .problems = d->problems,
                .first = r.result == TASK_RESULT_CORRUPT ? ck->corruption : NULL,
                .frames = -1,
                .checkpointed = -1,
        };
        free(c);
        if (ck->corrupt != was_corrupt)
                maintenance_facts_changed(mt);
        maintenance_end(mt, TASK_QUICK_CHECK, &r);
}

void checker_run(Checker *ck, TaskTrigger trigger, bool integrity) {
        const char *name = integrity ? "integrity_check" : "quick_check";
        CheckJob *c = calloc(1, sizeof(*c));
        TaskReport r;

        if (c) {
                c->job = (Job){ .name = name, .cancellable = true, .run = job_run, .done = job_done };
                c->checker = ck;
                c->trigger = trigger;
                c->started_rt = now_usec(CLOCK_REALTIME);
                c->integrity = integrity;
                if (maintenance_submit(ck->mt, &c->job)) {
                        log_debug("%s: starting (%s)", name, task_trigger_names[trigger]);
                        return;
                }
        }
        task_report_init(&r, trigger, now_usec(CLOCK_REALTIME));
        r.result = c ? TASK_RESULT_CANCELLED : TASK_RESULT_FAILED;
        bufprintf(r.summary, sizeof(r.summary), "%s: %s", name, c ? "cancelled: sqlvigil is stopping" : "out of memory");
        free(c);
        maintenance_end(ck->mt, TASK_QUICK_CHECK, &r);
}

int checker_new(Checker **ret, Maintenance *mt) {
        Checker *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->mt = mt;
        *ret = c;
        return 0;
}

Checker *checker_free(Checker *c) {
        free(c);
        return NULL;
}

const char *checker_corruption(const Checker *c) {
        return c->corrupt ? c->corruption : NULL;
}
