/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "maintenance.h"
#include "messages.h"

struct Checker {
        Maintenance *mt;
        bool corrupt;
        char corruption[512];
        bool inconsistent;        /* the last foreign_key_check found violations */
        char inconsistency[512];
        char unsupported[512];    /* why quick_check cannot run here; "" it can */
        DbFkCheck fk;             /* the last foreign_key_check, for the admin's reply */
};

typedef struct CheckJob {
        Job job;
        Checker *checker;
        TaskTrigger trigger;
        usec_t started_rt;
        bool integrity;
        bool foreign_keys;        /* run foreign_key_check after the check */
        bool fk_ran;
        DbCheck result;
        DbFault fault;
        DbFkCheck fk;
        DbFault fk_fault;
} CheckJob;

static void job_run(Job *j, Db *db) {
        CheckJob *c = container_of(j, CheckJob, job);

        db_check(db, c->integrity, &c->result);
        c->fault = db_take_fault(db);
        /* After corruption its answers mean nothing; after a cancel there
         * is no time. A check this SQLite cannot run does not keep it from
         * the foreign keys, which are another question. */
        if (!c->foreign_keys || c->result.result == DB_E_CANCELLED || (c->result.result == 0 && !c->result.passed))
                return;
        db_foreign_key_check(db, &c->fk);
        c->fk_fault = db_take_fault(db);
        c->fk_ran = true;
}

/* "child rowid 7: pid -> parent(id)" */
static void describe_violation(const DbFkViolation *v, char *buf, size_t size) {
        char where[48];

        if (v->has_rowid)
                bufprintf(where, sizeof(where), " rowid %" PRIi64, v->rowid);
        else
                bufprintf(where, sizeof(where), " (WITHOUT ROWID)");
        bufprintf(buf, size, "%s%s: %s", v->table, where, *v->key ? v->key : v->parent);
}

/* What foreign_key_check found, for health, the summary and the journal:
 * "3 rows refer to missing parent rows (child: 2, orders: 1); the first:
 * child rowid 7: pid -> parent(id)". */
static void describe_fk(const DbFkCheck *fk, char *text, size_t text_size, char *tables, size_t tables_size,
                        char *first, size_t first_size) {
        size_t off = 0;

        tables[0] = first[0] = '\0';
        for (size_t i = 0; i < fk->n_tables; i++)
                bufprintf(tables + strlen(tables), tables_size - strlen(tables), "%s%s: %" PRIu64, i ? ", " : "",
                          fk->tables[i].table, fk->tables[i].count);
        if (fk->more_tables)
                bufprintf(tables + strlen(tables), tables_size - strlen(tables), ", %u more table%s", fk->more_tables,
                          fk->more_tables == 1 ? "" : "s");
        for (size_t i = 0; i < fk->n_first; i++) {
                char one[384];

                describe_violation(&fk->first[i], one, sizeof(one));
                bufprintf(first + strlen(first), first_size - strlen(first), "%s%s", i ? "; " : "", one);
        }
        text[0] = '\0';
        if (fk->violations) {
                char one[384];

                describe_violation(&fk->first[0], one, sizeof(one));
                off = (size_t)snprintf(text, text_size, "%" PRIu64 " row%s refer%s to missing parent rows (%s); the first: %s",
                                       fk->violations, fk->violations == 1 ? "" : "s", fk->violations == 1 ? "s" : "",
                                       tables, one);
        }
        if (fk->mismatches && off < text_size)
                (void)snprintf(text + off, text_size - off, "%s%u table%s cannot be checked: %s", off ? "; " : "",
                               fk->mismatches, fk->mismatches == 1 ? "" : "s", fk->mismatch);
}

static void job_done(Job *j, bool ran) {
        CheckJob *c = container_of(j, CheckJob, job);
        Checker *ck = c->checker;
        Maintenance *mt = ck->mt;
        const DbCheck *d = &c->result;
        const DbFkCheck *fk = &c->fk;
        const char *kind = c->integrity ? "integrity_check" : "quick_check";
        bool was_corrupt = ck->corrupt, was_unsupported = ck->unsupported[0];
        bool fk_changed = false;
        bool unsupported = d->result == DB_E_SQLITE && c->fault.skew;
        bool fk_found = c->fk_ran && fk->result == 0 && (fk->violations || fk->mismatches);
        bool fk_unsupported = c->fk_ran && fk->result == DB_E_SQLITE && c->fk_fault.skew;
        bool fk_failed = c->fk_ran && fk->result != 0 && !fk_unsupported;
        char fk_text[512] = "", fk_tables[256], fk_first[512], part[320];
        TaskReport r;

        task_report_init(&r, c->trigger, c->started_rt);
        r.duration = d->duration + (c->fk_ran ? fk->duration : 0);
        if (c->fk_ran)
                describe_fk(fk, fk_text, sizeof(fk_text), fk_tables, sizeof(fk_tables), fk_first, sizeof(fk_first));

        /* The check's own part of the summary, and what it found. */
        if (!ran || d->result == DB_E_CANCELLED || (c->fk_ran && fk->result == DB_E_CANCELLED)) {
                r.result = TASK_RESULT_CANCELLED;
                bufprintf(r.summary, sizeof(r.summary), "%s: cancelled", kind);
                /* The stop came during foreign_key_check: the check itself
                 * had passed. */
                if (ran && d->result == 0 && d->passed) {
                        ck->corrupt = false;
                        ck->corruption[0] = '\0';
                }
        } else if (d->result == 0 && !d->passed) {
                r.result = TASK_RESULT_CORRUPT;
                r.priority = LOG_CRIT;
                bufprintf(r.summary, sizeof(r.summary), "%s found %u problem%s; the first: %s", kind, d->problems,
                          d->problems == 1 ? "" : "s", d->first);
                ck->corrupt = true;
                bufprintf(ck->corruption, sizeof(ck->corruption), "%s", d->first);
                maintenance_totals_mut(mt)->checks_failed++;
        } else {
                if (d->result == 0) {
                        bufprintf(r.summary, sizeof(r.summary), "%s: ok", kind);
                        ck->corrupt = false;
                        ck->corruption[0] = '\0';
                } else if (unsupported) {
                        r.result = TASK_RESULT_UNSUPPORTED;
                        r.priority = LOG_WARNING;
                        bufprintf(r.summary, sizeof(r.summary),
                                  "%s: unsupported: sqlvigil's SQLite %s cannot run it on this database, whose schema "
                                  "uses what a newer SQLite added: %s",
                                  kind, sqlite3_libversion(), d->error);
                } else {
                        r.result = TASK_RESULT_FAILED;
                        r.priority = LOG_ERR;
                        bufprintf(r.summary, sizeof(r.summary), "%s could not run: %s", kind, d->error);
                }
                /* The foreign keys' part. */
                if (fk_found) {
                        if (r.result == TASK_RESULT_OK || r.result == TASK_RESULT_UNSUPPORTED) {
                                r.result = TASK_RESULT_INCONSISTENT;
                                r.priority = LOG_WARNING;
                        }
                        bufprintf(part, sizeof(part), "; foreign_key_check: %s", fk_text);
                } else if (fk_unsupported) {
                        if (r.result == TASK_RESULT_OK) {
                                r.result = TASK_RESULT_UNSUPPORTED;
                                r.priority = LOG_WARNING;
                        }
                        bufprintf(part, sizeof(part), "; foreign_key_check: unsupported: %s", fk->error);
                } else if (fk_failed) {
                        r.result = TASK_RESULT_FAILED;
                        r.priority = LOG_ERR;
                        bufprintf(part, sizeof(part), "; foreign_key_check could not run: %s", fk->error);
                } else if (c->fk_ran)
                        bufprintf(part, sizeof(part), "; foreign keys: ok");
                else
                        part[0] = '\0';
                bufprintf(r.summary + strlen(r.summary), sizeof(r.summary) - strlen(r.summary), "%s", part);
        }

        /* Health facts: each changes only with a run that could tell. */
        if (c->fk_ran && fk->result == 0) {
                /* Health's text follows what the latest check found. */
                fk_changed = ck->inconsistent != fk_found || strcmp(ck->inconsistency, fk_text) != 0;
                ck->inconsistent = fk_found;
                bufprintf(ck->inconsistency, sizeof(ck->inconsistency), "%s", fk_text);
                ck->fk = *fk;
        }
        if (!c->integrity && unsupported)
                bufprintf(ck->unsupported, sizeof(ck->unsupported),
                          "quick_check cannot run: sqlvigil's SQLite %s lacks what this database's schema uses, "
                          "which a newer SQLite wrote: %s",
                          sqlite3_libversion(), d->error);
        else if (!c->integrity && d->result == 0)
                ck->unsupported[0] = '\0';

        r.fault = d->result == DB_E_SQLITE ? c->fault : c->fk_fault;
        r.message_id = SQLVIGIL_MESSAGE_INTEGRITY;
        r.event = "integrity";
        log_field(&r.fields, "SQLVIGIL_CHECK", "%s", c->integrity ? "integrity" : "quick");
        log_field(&r.fields, "SQLVIGIL_PROBLEMS", "%u", d->problems);
        if (d->problems)
                log_field(&r.fields, "SQLVIGIL_REASON_TEXT", "%s", d->first);
        else if (d->result == DB_E_SQLITE)
                log_field(&r.fields, "SQLVIGIL_REASON_TEXT", "%s", d->error);
        if (c->fk_ran && fk->result == 0) {
                log_field(&r.fields, "SQLVIGIL_FOREIGN_KEY_VIOLATIONS", "%" PRIu64, fk->violations);
                log_field(&r.fields, "SQLVIGIL_FOREIGN_KEY_USEC", "%" PRIu64, fk->duration);
                if (fk->violations) {
                        log_field(&r.fields, "SQLVIGIL_FOREIGN_KEY_TABLES", "%s", fk_tables);
                        log_field(&r.fields, "SQLVIGIL_FOREIGN_KEY_FIRST", "%s", fk_first);
                }
                if (fk->mismatches) {
                        log_field(&r.fields, "SQLVIGIL_FOREIGN_KEY_MISMATCHES", "%u", fk->mismatches);
                        log_field(&r.fields, "SQLVIGIL_FOREIGN_KEY_MISMATCH", "%s", fk->mismatch);
                }
        }
        if (r.result == TASK_RESULT_UNSUPPORTED)
                log_field(&r.fields, "SQLVIGIL_SQLITE_VERSION", "%s", sqlite3_libversion());
        r.outcome = (MaintenanceOutcome){
                .task = TASK_QUICK_CHECK,
                .ok = r.result == TASK_RESULT_OK,
                .mode = c->integrity ? "integrity" : "quick",
                .error = r.result == TASK_RESULT_OK ? NULL : r.summary,
                .problems = d->problems,
                .first = r.result == TASK_RESULT_CORRUPT ? ck->corruption : NULL,
                .foreign_keys = c->fk_ran && fk->result == 0 ? &ck->fk : NULL,
                .frames = -1,
                .checkpointed = -1,
        };
        free(c);
        if (ck->corrupt != was_corrupt || fk_changed ||
            (ck->unsupported[0] != '\0') != was_unsupported)
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
                c->foreign_keys = maintenance_config(ck->mt)->foreign_key_check;
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

const char *checker_inconsistency(const Checker *c) {
        /* Turned off by a reload: no longer sqlvigil's to report. */
        if (!maintenance_config(c->mt)->foreign_key_check)
                return NULL;
        return c->inconsistent ? c->inconsistency : NULL;
}

const char *checker_unsupported(const Checker *c) {
        return c->unsupported[0] ? c->unsupported : NULL;
}

void checker_set_unsupported(Checker *c, const char *why) {
        bufprintf(c->unsupported, sizeof(c->unsupported), "%s", why ? why : "");
}
