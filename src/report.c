/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "report.h"

static const char *const outcome_names[] = {
        [PRAGMA_UNREQUESTED] = "unrequested", [PRAGMA_APPLIED] = "applied", [PRAGMA_DIFFERS] = "differs",
        [PRAGMA_NEEDS_VACUUM] = "needs-vacuum", [PRAGMA_FIXED] = "fixed",
        [PRAGMA_APPLICATION_ONLY] = "application-only",
};

static double seconds(usec_t usec) {
        return (double)usec / (double)USEC_PER_SEC;
}

static void health_members(const Status *s, Json *j) {
        json_kv_string(j, "state", health_state_names[s->health.state]);
        json_kv_string(j, "code", health_code_names[s->health.code]);
        json_kv_string(j, "reason", s->health.reason);
        json_kv_double(j, "since", seconds(s->health_since));
        json_kv_double(j, "checked", seconds(s->checked_at));
        json_kv_uint(j, "check_usec", s->check_usec);
        json_kv_uint(j, "checks", s->checks);
}

void report_health(const Status *s, Json *j) {
        json_object_begin(j);
        health_members(s, j);
        json_object_end(j);
}

static void run_object(Json *j, const TaskRun *r) {
        if (!r->valid) {
                json_null(j);
                return;
        }
        json_object_begin(j);
        json_kv_double(j, "at", seconds(r->at));
        json_kv_string(j, "result", task_result_names[r->result]);
        json_kv_string(j, "trigger", task_trigger_names[r->trigger]);
        json_kv_uint(j, "duration_usec", r->duration);
        json_kv_uint(j, "lock_usec", r->lock_usec);
        json_kv_string(j, "summary", r->summary);
        json_object_end(j);
}

void report_stats_members(const Status *s, Json *j) {
        const MaintenanceTotals *t = &s->totals;

        json_key(j, "health");
        json_object_begin(j);
        health_members(s, j);
        json_kv_uint(j, "check_usec_p50", s->check_usec_p50);
        json_kv_uint(j, "check_usec_p99", s->check_usec_p99);
        json_object_end(j);

        json_key(j, "database");
        json_object_begin(j);
        json_kv_string(j, "path", s->db_path);
        json_kv_uint(j, "bytes", s->files.db_bytes);
        json_kv_uint(j, "wal_bytes", s->files.wal_bytes);
        if (s->wal_valid) {
                json_kv_uint(j, "wal_frames", s->wal.mx_frame);
                json_kv_uint(j, "wal_pending_frames", walindex_pending(&s->wal));
        } else {
                json_kv_null(j, "wal_frames");
                json_kv_null(j, "wal_pending_frames");
        }
        json_kv_int(j, "page_size", s->page_size);
        json_kv_int(j, "page_count", s->page_count);
        json_kv_int(j, "freelist_count", s->freelist_count);
        json_kv_uint(j, "free_disk_bytes", s->files.free_bytes);
        json_object_end(j);

        json_key(j, "pragmas");
        json_object_begin(j);
        for (PragmaId id = 0; id < _PRAGMA_MAX; id++) {
                const PragmaStatus *st = &s->pragmas[id];
                PragmaScope scope = pragma_info[id].scope;
                char req[32], note[512];

                json_key(j, pragma_info[id].name);
                json_object_begin(j);
                json_kv_string(j, "scope", pragma_scope_names[scope]);
                if (st->requested) {
                        pragma_format_value(id, st->requested_value, req, sizeof(req));
                        json_kv_string(j, "requested", req);
                } else
                        json_kv_null(j, "requested");
                /* What the applications use is theirs to know. */
                if (scope == PRAGMA_SCOPE_APPLICATION)
                        json_kv_null(j, "effective");
                else
                        json_kv_string(j, "effective", st->effective);
                json_kv_string(j, "outcome", outcome_names[st->outcome]);
                if (st->requested && pragma_note(id, st->requested_value, note, sizeof(note)) != PRAGMA_NOTE_NONE)
                        json_kv_string(j, "note", note);
                json_object_end(j);
        }
        json_object_end(j);

        json_key(j, "maintenance");
        json_object_begin(j);
        json_kv_string(j, "running", s->running);
        json_kv_bool(j, "starved", s->starved);
        json_key(j, "last");
        json_object_begin(j);
        for (int task = 0; task < _TASK_MAX; task++) {
                json_key(j, task_names[task]);
                run_object(j, &s->last[task]);
        }
        json_object_end(j);
        json_key(j, "totals");
        json_object_begin(j);
        json_kv_uint(j, "checkpoints", t->runs[TASK_CHECKPOINT]);
        json_kv_uint(j, "frames_checkpointed", t->frames_checkpointed);
        json_kv_uint(j, "vacuums", t->runs[TASK_VACUUM]);
        json_kv_uint(j, "pages_reclaimed", t->pages_reclaimed);
        json_kv_uint(j, "analyzes", t->runs[TASK_ANALYZE]);
        json_kv_uint(j, "tables_analyzed", t->tables_analyzed);
        json_kv_uint(j, "quick_checks", t->runs[TASK_QUICK_CHECK]);
        json_kv_uint(j, "checks_failed", t->checks_failed);
        json_object_end(j);
        /* sqlvigil's own write-lock holds, to line up with an application's
         * "database is locked". */
        json_key(j, "lock_holds");
        json_object_begin(j);
        for (int task = 0; task < _TASK_MAX; task++) {
                json_key(j, task_names[task]);
                json_object_begin(j);
                json_kv_uint(j, "count", t->holds[task].count);
                json_kv_uint(j, "total_usec", t->holds[task].total);
                json_kv_uint(j, "max_usec", t->holds[task].max);
                json_object_end(j);
        }
        json_object_end(j);
        json_object_end(j);

        /* null when no [backup] directory is configured. */
        json_key(j, "backups");
        if (!s->backups.configured)
                json_null(j);
        else {
                const BackupFacts *b = &s->backups;

                json_object_begin(j);
                json_kv_string(j, "directory", s->backup_directory);
                json_kv_uint(j, "count", b->count);
                json_key(j, "newest");
                if (!b->have_newest)
                        json_null(j);
                else {
                        json_object_begin(j);
                        json_kv_string(j, "file", b->newest_name);
                        json_kv_double(j, "time", seconds(b->newest_time));
                        json_kv_uint(j, "bytes", b->newest_bytes);
                        json_kv_uint(j, "copy_usec", b->newest_copy_usec);
                        json_kv_uint(j, "check_usec", b->newest_check_usec);
                        json_kv_bool(j, "check_ok", b->newest_check_ok);
                        json_object_end(j);
                }
                json_kv_string(j, "failure", b->failed ? b->failure : NULL);
                json_object_end(j);
        }

        json_key(j, "process");
        json_object_begin(j);
        json_kv_int(j, "pid", s->pid);
        json_kv_uint(j, "uptime_usec", s->uptime);
        json_kv_uint(j, "rss_bytes", s->rss_bytes);
        json_kv_string(j, "version", SQLVIGIL_VERSION);
        json_kv_string(j, "sqlite_version", sqlite3_libversion());
        json_kv_string(j, "state", lifecycle_names[s->lifecycle]);
        json_kv_string(j, "instance", s->instance);
        json_object_end(j);
}

void report_config(const Config *c, Json *j) {
        const char *section = NULL;

        json_object_begin(j);
        for (size_t i = 0; i < config_n_keys(); i++) {
                const char *sec, *key;
                char value[4096];

                config_key_name(i, &sec, &key);
                if (!section || !streq(section, sec)) {
                        if (section)
                                json_object_end(j);
                        section = sec;
                        json_key(j, sec);
                        json_object_begin(j);
                }
                if (config_key_value(c, i, value, sizeof(value)))
                        json_kv_string(j, key, value);
                else
                        json_kv_null(j, key);
        }
        if (section)
                json_object_end(j);
        json_object_end(j);
}
