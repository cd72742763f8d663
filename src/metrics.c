/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "metrics.h"
#include "utf8.h"

typedef struct Out {
        FILE *f;
        const char *labels; /* database="..." */
} Out;

/*
 * Text in the exposition format (the rule is in utf8.h). A label value
 * escapes backslash, double quote and newline, a HELP text backslash and
 * newline; the format has no other escapes, so any other control character
 * and any byte that is not UTF-8 is written as the text \xNN (its backslash
 * escaped), which keeps the file valid UTF-8 and every sample on one line.
 */
static void escape_text(FILE *f, const char *s, bool label) {
        size_t n = strlen(s), len;

        for (size_t i = 0; i < n; i += len) {
                int32_t c = utf8_decode(s + i, n - i, &len);

                if (c == '\\' || (c == '"' && label))
                        fprintf(f, "\\%c", (char)c);
                else if (c == '\n')
                        fputs("\\n", f);
                else if (c < 0 || unicode_is_control(c))
                        for (size_t k = 0; k < len; k++)
                                fprintf(f, "\\\\x%02x", (unsigned char)s[i + k]);
                else
                        fwrite(s + i, 1, len, f);
        }
}

static void escape_label(FILE *f, const char *s) {
        escape_text(f, s, true);
}

static void family(Out *o, const char *name, const char *type, const char *help) {
        fprintf(o->f, "# HELP %s ", name);
        escape_text(o->f, help, false);
        fprintf(o->f, "\n# TYPE %s %s\n", name, type);
}

static void sample(Out *o, const char *name, const char *extra, double v) {
        fprintf(o->f, "%s{%s%s%s} %.10g\n", name, o->labels, extra ? "," : "", extra ? extra : "", v);
}

static void gauge(Out *o, const char *name, const char *help, double v) {
        family(o, name, "gauge", help);
        sample(o, name, NULL, v);
}

static void counter(Out *o, const char *name, const char *help, double v) {
        family(o, name, "counter", help);
        sample(o, name, NULL, v);
}

char *metrics_render(const Status *s) {
        const MaintenanceTotals *t = &s->totals;
        char *text = NULL, *labels = NULL, extra[256];
        size_t len = 0, llen = 0;
        FILE *lf;
        Out o;

        lf = open_memstream(&labels, &llen);
        if (!lf)
                return NULL;
        fputs("database=\"", lf);
        escape_label(lf, s->db_path);
        fputs("\"", lf);
        if (fclose(lf) != 0) {
                free(labels);
                return NULL;
        }
        o = (Out){ .f = open_memstream(&text, &len), .labels = labels };
        if (!o.f) {
                free(labels);
                return NULL;
        }

        gauge(&o, "sqlvigil_up", "1 while sqlvigil supervises the database (see the file's mtime for freshness).", 1);
        family(&o, "sqlvigil_info", "gauge", "Versions of sqlvigil and SQLite, and the instance name.");
        fprintf(o.f, "sqlvigil_info{%s,version=\"", labels);
        escape_label(o.f, SQLVIGIL_VERSION);
        fputs("\",sqlite_version=\"", o.f);
        escape_label(o.f, sqlite3_libversion());
        fputs("\",name=\"", o.f);
        escape_label(o.f, s->instance);
        fputs("\"} 1\n", o.f);
        gauge(&o, "sqlvigil_start_time_seconds", "When sqlvigil started, in Unix time.",
              (double)s->started_rt / 1e6);

        family(&o, "sqlvigil_health_state", "gauge", "1 for the current health state (ok, degraded, failed), 0 for the others.");
        for (int st = 0; st < _HEALTH_STATE_MAX; st++) {
                bufprintf(extra, sizeof(extra), "state=\"%s\"", health_state_names[st]);
                sample(&o, "sqlvigil_health_state", extra, s->health.state == (HealthState)st);
        }
        gauge(&o, "sqlvigil_health_since_timestamp_seconds", "When the health state last changed, in Unix time.",
              (double)s->health_since / 1e6);
        counter(&o, "sqlvigil_health_checks_total", "Health checks run.", (double)s->checks);
        gauge(&o, "sqlvigil_health_check_duration_seconds", "What the last health check cost (without lock waits).",
              (double)s->check_usec / 1e6);

        gauge(&o, "sqlvigil_database_size_bytes", "Size of the database file.", (double)s->files.db_bytes);
        gauge(&o, "sqlvigil_wal_size_bytes", "Size of the -wal file.", (double)s->files.wal_bytes);
        if (s->wal_valid) {
                gauge(&o, "sqlvigil_wal_frames", "Frames in the WAL.", s->wal.mx_frame);
                gauge(&o, "sqlvigil_wal_pending_frames", "WAL frames not yet copied into the database.",
                      walindex_pending(&s->wal));
        }
        gauge(&o, "sqlvigil_database_pages", "Pages in the database (PRAGMA page_count).",
              (double)s->page_count);
        gauge(&o, "sqlvigil_freelist_pages", "Free pages in the database (PRAGMA freelist_count).",
              (double)s->freelist_count);
        gauge(&o, "sqlvigil_page_size_bytes", "The database's page size.", (double)s->page_size);
        gauge(&o, "sqlvigil_free_disk_bytes", "Free space on the database's file system.", (double)s->files.free_bytes);
        gauge(&o, "sqlvigil_checkpoint_starved", "1 while checkpoints cannot catch up because readers never leave.",
              s->starved);
        gauge(&o, "sqlvigil_resident_memory_bytes", "sqlvigil's resident set size.", (double)s->rss_bytes);

        family(&o, "sqlvigil_task_runs_total", "counter", "Maintenance runs, by task.");
        for (int k = 0; k < _TASK_MAX; k++) {
                bufprintf(extra, sizeof(extra), "task=\"%s\"", task_names[k]);
                sample(&o, "sqlvigil_task_runs_total", extra, (double)t->runs[k]);
        }
        {
                static const struct {
                        const char *name, *help;
                } last[] = {
                        { "sqlvigil_task_last_run_timestamp_seconds", "When the task last ran, in Unix time." },
                        { "sqlvigil_task_last_duration_seconds", "How long the task's last run took." },
                        { "sqlvigil_task_last_lock_seconds", "The longest the task's last run held the write lock." },
                        { "sqlvigil_task_last_success", "1 if the task's last run succeeded." },
                };

                for (size_t i = 0; i < ELEMENTSOF(last); i++) {
                        family(&o, last[i].name, "gauge", last[i].help);
                        for (int k = 0; k < _TASK_MAX; k++) {
                                const TaskRun *r = &s->last[k];
                                double v;

                                if (!r->valid)
                                        continue;
                                v = i == 0 ? (double)r->at / 1e6
                                    : i == 1 ? (double)r->duration / 1e6
                                    : i == 2 ? (double)r->lock_usec / 1e6
                                             : r->result == TASK_RESULT_OK;
                                bufprintf(extra, sizeof(extra), "task=\"%s\"", task_names[k]);
                                sample(&o, last[i].name, extra, v);
                        }
                }
        }
        counter(&o, "sqlvigil_checkpoint_frames_total", "WAL frames copied into the database by sqlvigil's checkpoints.",
                (double)t->frames_checkpointed);
        counter(&o, "sqlvigil_vacuum_pages_reclaimed_total", "Pages given back to the file system by incremental vacuum.",
                (double)t->pages_reclaimed);
        counter(&o, "sqlvigil_analyze_tables_total", "Tables analyzed.", (double)t->tables_analyzed);
        counter(&o, "sqlvigil_integrity_failures_total", "quick_check or integrity_check runs that found problems.",
                (double)t->checks_failed);
        {
                static const struct {
                        const char *name, *help;
                } holds[] = {
                        { "sqlvigil_write_lock_holds_total", "Times sqlvigil's own work held the WAL write lock, by task." },
                        { "sqlvigil_write_lock_held_seconds_total", "Time sqlvigil's own work held the WAL write lock, by task." },
                        { "sqlvigil_write_lock_hold_max_seconds", "The longest single hold of the WAL write lock by sqlvigil's own work, by task." },
                };

                for (size_t i = 0; i < ELEMENTSOF(holds); i++) {
                        family(&o, holds[i].name, i < 2 ? "counter" : "gauge", holds[i].help);
                        for (int k = 0; k < _TASK_MAX; k++) {
                                const LockHolds *h = &t->holds[k];

                                bufprintf(extra, sizeof(extra), "task=\"%s\"", task_names[k]);
                                sample(&o, holds[i].name, extra,
                                       i == 0 ? (double)h->count : i == 1 ? (double)h->total / 1e6 : (double)h->max / 1e6);
                        }
                }
        }

        if (s->backups.configured) {
                const BackupFacts *b = &s->backups;

                gauge(&o, "sqlvigil_backups", "Good backups in the backup directory.", (double)b->count);
                gauge(&o, "sqlvigil_backup_failed", "1 if the last backup run failed.", b->failed);
                if (b->have_newest) {
                        gauge(&o, "sqlvigil_backup_newest_timestamp_seconds",
                              "When the newest good backup was taken, in Unix time.", (double)b->newest_time / 1e6);
                        gauge(&o, "sqlvigil_backup_newest_size_bytes", "Size of the newest good backup.",
                              (double)b->newest_bytes);
                        gauge(&o, "sqlvigil_backup_newest_copy_seconds", "How long the newest backup's copy took.",
                              (double)b->newest_copy_usec / 1e6);
                        gauge(&o, "sqlvigil_backup_newest_check_seconds", "How long the newest backup's check took.",
                              (double)b->newest_check_usec / 1e6);
                        gauge(&o, "sqlvigil_backup_newest_check_ok", "1 if the newest backup passed its check.",
                              b->newest_check_ok);
                }
        }

        free(labels);
        if (fclose(o.f) != 0) {
                free(text);
                return NULL;
        }
        return text;
}

/* Whether path may be replaced: absent, or a metrics file we wrote. It is
 * never opened when it is one of the files in avoid (the database, its -wal
 * and -shm): closing any descriptor of those would drop SQLite's locks. */
static int check_replaceable(const char *path, const FileId *avoid, size_t n_avoid, char *error, size_t error_size) {
        static const char mark[] = "# HELP sqlvigil_";
        char head[sizeof(mark) - 1];
        struct stat st, st2;
        ssize_t n = -1;
        int fd, r;

        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                r = -errno;
                bufprintf(error, error_size, "cannot check %s before replacing it: %s", path, strerror(errno));
                return r;
        }
        for (size_t i = 0; i < n_avoid; i++)
                if (st.st_dev == avoid[i].dev && st.st_ino == avoid[i].ino) {
                        bufprintf(error, error_size, "not replacing %s: it is the database or one of its files", path);
                        return -EEXIST;
                }
        if (S_ISREG(st.st_mode)) {
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
                if (fd < 0) {
                        r = -errno;
                        bufprintf(error, error_size, "cannot check %s before replacing it: %s", path, strerror(errno));
                        return r;
                }
                if (fstat(fd, &st2) == 0 && st2.st_dev == st.st_dev && st2.st_ino == st.st_ino)
                        n = read(fd, head, sizeof(head));
                close(fd);
        }
        if (n != 0 && (n != (ssize_t)sizeof(head) || memcmp(head, mark, sizeof(head)) != 0)) {
                bufprintf(error, error_size,
                          "not replacing %s: it is not a metrics file sqlvigil wrote (check [metrics] textfile)", path);
                return -EEXIST;
        }
        return 0;
}

int metrics_write(const char *path, const char *text, const FileId *avoid, size_t n_avoid, char *error,
                  size_t error_size) {
        _cleanup_(freep) char *tmp = NULL;
        int fd, r;

        r = check_replaceable(path, avoid, n_avoid, error, error_size);
        if (r < 0)
                return r;
        tmp = strdup_printf("%s.%d.tmp", path, (int)getpid());
        if (!tmp) {
                bufprintf(error, error_size, "out of memory");
                return -ENOMEM;
        }
        /* Not ending in .prom: the collector ignores it until the rename. */
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot create %s: %s", tmp, strerror(errno));
                return r;
        }
        r = write_all(fd, text, strlen(text));
        if (r < 0) {
                bufprintf(error, error_size, "cannot write %s: %s", tmp, strerror(-r));
                close(fd);
                (void)unlink(tmp);
                return r;
        }
        /* Readable by the collector whatever our umask (the unit has 0077). */
        if (fchmod(fd, 0644) < 0 || close(fd) < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot finish %s: %s", tmp, strerror(errno));
                (void)unlink(tmp);
                return r;
        }
        if (rename(tmp, path) < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
                (void)unlink(tmp);
                return r;
        }
        return 0;
}
