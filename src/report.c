/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "config.h"
#include "maintenance.h"
#include "manager.h"
#include "report.h"

static const char *const outcome_names[] = {
        [PRAGMA_UNREQUESTED] = "unrequested", [PRAGMA_APPLIED] = "applied", [PRAGMA_DIFFERS] = "differs",
        [PRAGMA_NEEDS_VACUUM] = "needs-vacuum", [PRAGMA_FIXED] = "fixed",
};

static double seconds(usec_t usec) {
        return (double)usec / (double)USEC_PER_SEC;
}

uint64_t report_rss_bytes(void) {
        unsigned long size, resident;
        FILE *f = fopen("/proc/self/statm", "re");
        int n;

        if (!f)
                return 0;
        n = fscanf(f, "%lu %lu", &size, &resident);
        fclose(f);
        if (n != 2)
                return 0;
        return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int cmp_usec(const void *a, const void *b) {
        usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;

        return x < y ? -1 : x > y;
}

/* p50 and p99 of the recent health check costs. */
static void check_percentiles(const Manager *m, usec_t *p50, usec_t *p99) {
        usec_t sorted[MANAGER_CHECK_HISTORY];
        size_t n = MIN(m->check_count, (uint64_t)MANAGER_CHECK_HISTORY);

        *p50 = *p99 = 0;
        if (n == 0)
                return;
        memcpy(sorted, m->check_usec, n * sizeof(sorted[0]));
        qsort(sorted, n, sizeof(sorted[0]), cmp_usec);
        *p50 = sorted[n / 2];
        *p99 = sorted[MIN(n - 1, n * 99 / 100)];
}

static void health_members(Manager *m, Json *j) {
        json_kv_string(j, "state", health_state_names[m->health.state]);
        json_kv_string(j, "code", health_code_names[m->health.code]);
        json_kv_string(j, "reason", m->health.reason);
        json_kv_double(j, "since", seconds(m->health_since));
        json_kv_double(j, "checked", seconds(m->last_check_at));
        json_kv_uint(j, "check_usec", m->last_check_usec);
        json_kv_uint(j, "checks", m->checks);
}

void report_health(Manager *m, Json *j) {
        json_object_begin(j);
        health_members(m, j);
        json_object_end(j);
}

static void run_object(Json *j, const TaskRun *r) {
        if (!r || !r->valid) {
                json_null(j);
                return;
        }
        json_object_begin(j);
        json_kv_double(j, "at", seconds(r->at));
        json_kv_string(j, "result", r->result);
        json_kv_string(j, "trigger", r->trigger);
        json_kv_uint(j, "duration_usec", r->duration);
        json_kv_uint(j, "lock_usec", r->lock_usec);
        json_kv_string(j, "summary", r->summary);
        json_object_end(j);
}

void report_stats_members(Manager *m, Json *j) {
        const MaintenanceTotals *t = maintenance_totals(m->maintenance);
        usec_t p50, p99;
        WalIndex wi;
        bool have_wi = maintenance_wal_index(m->maintenance, &wi);

        json_key(j, "health");
        json_object_begin(j);
        health_members(m, j);
        check_percentiles(m, &p50, &p99);
        json_kv_uint(j, "check_usec_p50", p50);
        json_kv_uint(j, "check_usec_p99", p99);
        json_object_end(j);

        json_key(j, "database");
        json_object_begin(j);
        json_kv_string(j, "path", m->config->db_path);
        json_kv_uint(j, "bytes", m->files.db_bytes);
        json_kv_uint(j, "wal_bytes", m->files.wal_bytes);
        if (have_wi) {
                json_kv_uint(j, "wal_frames", wi.mx_frame);
                json_kv_uint(j, "wal_pending_frames", walindex_pending(&wi));
        } else {
                json_kv_null(j, "wal_frames");
                json_kv_null(j, "wal_pending_frames");
        }
        json_kv_int(j, "page_size", m->page_size);
        json_kv_int(j, "page_count", m->probe.page_count);
        json_kv_int(j, "freelist_count", m->probe.freelist_count);
        json_kv_uint(j, "free_disk_bytes", m->files.free_bytes);
        json_object_end(j);

        json_key(j, "pragmas");
        json_object_begin(j);
        for (PragmaId id = 0; id < _PRAGMA_MAX; id++) {
                const PragmaStatus *st = &m->pragmas[id];
                char req[32];

                json_key(j, pragma_info[id].name);
                json_object_begin(j);
                if (st->requested) {
                        pragma_format_value(id, st->requested_value, req, sizeof(req));
                        json_kv_string(j, "requested", req);
                } else
                        json_kv_null(j, "requested");
                json_kv_string(j, "effective", st->effective);
                json_kv_string(j, "outcome", outcome_names[st->outcome]);
                json_object_end(j);
        }
        json_object_end(j);

        json_key(j, "maintenance");
        json_object_begin(j);
        json_kv_string(j, "running", maintenance_running(m->maintenance));
        json_kv_bool(j, "starved", maintenance_starvation(m->maintenance) != NULL);
        json_key(j, "last");
        json_object_begin(j);
        for (int task = 0; task < _TASK_MAX; task++) {
                json_key(j, task_names[task]);
                run_object(j, maintenance_last(m->maintenance, (TaskId)task));
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
        json_object_end(j);

        json_key(j, "process");
        json_object_begin(j);
        json_kv_int(j, "pid", getpid());
        json_kv_uint(j, "uptime_usec", now_usec(CLOCK_MONOTONIC) - m->started_at);
        json_kv_uint(j, "rss_bytes", report_rss_bytes());
        json_kv_string(j, "version", SQLVIGIL_VERSION);
        json_kv_string(j, "sqlite_version", sqlite3_libversion());
        json_kv_string(j, "state", m->stopping ? "stopping" : m->reloading ? "reloading" : "running");
        json_kv_string(j, "instance", m->instance);
        json_object_end(j);
}

void report_config(Manager *m, Json *j) {
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
                if (config_key_value(m->config, i, value, sizeof(value)))
                        json_kv_string(j, key, value);
                else
                        json_kv_null(j, key);
        }
        if (section)
                json_object_end(j);
        json_object_end(j);
}
