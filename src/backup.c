/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backup.h"
#include "copy.h"
#include "log.h"
#include "maintenance.h"
#include "messages.h"
#include "walindex.h"

typedef struct ListRequest ListRequest;

struct Backuper {
        Maintenance *mt;
        atomic_bool cancel;       /* read by the backup thread between copy steps */
        int shm_fd;               /* the WAL index, for the source's state; -1 before start */
        BackupFacts facts;
        BackupSourceState last_state; /* of the newest good backup */
        char newest_sha[65];
        bool scanning, scan_again;
        ListRequest *lists;       /* `backups` requests being read */
};

/* ---- The copy, on the backup thread --------------------------------------------- */

typedef enum BackupEnd {
        BACKUP_END_DONE,
        BACKUP_END_UNCHANGED,     /* nothing committed since the newest backup */
        BACKUP_END_FAILED,
        BACKUP_END_CANCELLED,
} BackupEnd;

typedef struct BackupJob {
        Job job;
        Backuper *backuper;
        TaskTrigger trigger;
        usec_t started_rt;
        /* In: fixed when the run starts. */
        char *db_path, *wal_path, *dir;
        bool prune;               /* the configured directory: retention applies */
        uint64_t keep_free;       /* [health] min_free_disk: left free when the copy shares the database's disk */
        bool quick;
        RetentionRules rules;
        int shm_fd;
        BackupSourceState last_state;
        char newest_sha[65];
        /* Out. */
        BackupEnd end;
        bool dir_full;            /* the backup directory's file system ran out */
        char skew[256];           /* integrity_check could not run with this SQLite: why */
        char error[512];
        DbFault fault;
        BackupManifest manifest;
        char *path;               /* the backup's path */
        unsigned deleted;
        int prune_error;
        char cleanup[512];
        uint64_t wal_before, wal_after;
        usec_t duration;
        BackupList list;          /* the directory afterwards */
        int list_error;
} BackupJob;

static void source_state(const char *db_path, int shm_fd, BackupSourceState *ret) {
        struct stat st;
        WalIndex wi;

        *ret = (BackupSourceState){ 0 };
        if (stat(db_path, &st) < 0)
                return;
        ret->db_size = (uint64_t)st.st_size;
        ret->db_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (shm_fd >= 0 && walindex_read(shm_fd, &wi) == 0) {
                ret->wal_salt1 = wi.salt;
                ret->wal_salt2 = wi.salt2;
                ret->wal_max_frame = wi.mx_frame;
        }
        ret->valid = true;
}

static int open_source(const char *path, sqlite3 **ret, char *error, size_t size) {
        sqlite3 *d = NULL;
        int persist = 1, rc;

        rc = sqlite3_open_v2(path, &d, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
        /* Like the daemon's own connection, this one must never checkpoint
         * or delete the WAL when it closes (db.h). */
        if (rc == SQLITE_OK)
                rc = sqlite3_db_config(d, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_file_control(d, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
        if (rc == SQLITE_OK)
                rc = sqlite3_busy_timeout(d, 5000);
        if (rc != SQLITE_OK) {
                bufprintf(error, size, "cannot open %s to copy it: %s", path, d ? sqlite3_errmsg(d) : sqlite3_errstr(rc));
                sqlite3_close(d);
                return rc;
        }
        *ret = d;
        return SQLITE_OK;
}

static void fail(BackupJob *b, const char *fmt, ...) _printf_(2, 3);
static void fail(BackupJob *b, const char *fmt, ...) {
        va_list ap;

        b->end = BACKUP_END_FAILED;
        va_start(ap, fmt);
        (void)vsnprintf(b->error, sizeof(b->error), fmt, ap);
        va_end(ap);
}

static void take(BackupJob *b) {
        _cleanup_(freep) char *stem = backupdir_stem(b->db_path), *base = NULL, *tmp = NULL, *mtmp = NULL,
                             *final = NULL, *mfinal = NULL;
        BackupSourceState state;
        CopyResult copy;
        CopyCheck check;
        sqlite3 *src = NULL;
        struct stat st;
        usec_t snapshot_rt;
        int r;

        if (!stem) {
                fail(b, "out of memory");
                return;
        }
        if (stat(b->dir, &st) < 0) {
                fail(b, "the backup directory %s: %s%s", b->dir, strerror(errno),
                     errno == ENOENT ? "; create it (install -d -m 0750 -o USER DIR) and allow the service to write "
                                       "it (ReadWritePaths=)"
                                     : "");
                return;
        }
        if (!S_ISDIR(st.st_mode)) {
                fail(b, "the backup directory %s is not a directory", b->dir);
                return;
        }
        r = backupdir_cleanup(b->dir, b->db_path, b->cleanup, sizeof(b->cleanup));
        if (r < 0 && r != -ENOENT)
                bufprintf(b->cleanup, sizeof(b->cleanup), "cannot clean up %s: %s", b->dir, strerror(-r));

        source_state(b->db_path, b->shm_fd, &state);
        if (b->trigger == TRIGGER_INTERVAL && backup_source_state_eq(&state, &b->last_state)) {
                b->end = BACKUP_END_UNCHANGED;
                return;
        }

        /* Room for the copy (about the file and its WAL) without taking
         * the applications' share when it is their disk too. */
        {
                struct stat db_st;
                char why[384];

                if (stat(b->db_path, &db_st) == 0) {
                        uint64_t needed = (uint64_t)db_st.st_size + file_size(b->wal_path);

                        r = check_space(b->dir, needed, db_st.st_dev == st.st_dev ? b->keep_free : 0, why, sizeof(why));
                        if (r == -ENOSPC) {
                                fail(b, "no room for a backup: %s", why);
                                return;
                        }
                }
        }
        snapshot_rt = now_usec(CLOCK_REALTIME);
        r = backupdir_new_base(b->dir, stem, snapshot_rt, &base);
        if (r < 0) {
                fail(b, "cannot name a backup in %s: %s", b->dir, strerror(-r));
                return;
        }
        tmp = strdup_printf("%s/.%s.db.tmp", b->dir, base);
        mtmp = strdup_printf("%s/.%s.json.tmp", b->dir, base);
        final = strdup_printf("%s/%s.db", b->dir, base);
        mfinal = strdup_printf("%s/%s.json", b->dir, base);
        b->manifest.file = strdup_printf("%s.db", base);
        b->manifest.source = strdup(b->db_path);
        if (!tmp || !mtmp || !final || !mfinal || !b->manifest.file || !b->manifest.source) {
                fail(b, "out of memory");
                return;
        }

        r = open_source(b->db_path, &src, b->error, sizeof(b->error));
        if (r != SQLITE_OK) {
                b->end = BACKUP_END_FAILED;
                b->fault.code = r;
                return;
        }
        b->wal_before = file_size(b->wal_path);
        copy_database(src, tmp, &b->backuper->cancel, &copy);
        b->wal_after = file_size(b->wal_path);
        (void)sqlite3_close(src);
        if (copy.result == DB_E_CANCELLED) {
                b->end = BACKUP_END_CANCELLED;
                return;
        }
        if (copy.result != 0) {
                fail(b, "%s", copy.error);
                /* Only a failure to read the database is the database's
                 * storage fault; a full or read-only backup directory is
                 * the backup's. */
                if (!copy.dest_failed)
                        b->fault = copy.fault;
                else
                        b->dir_full = (copy.fault.code & 0xff) == SQLITE_FULL || copy.fault.sys_errno == ENOSPC ||
                                      copy.fault.sys_errno == EDQUOT || copy.result == -ENOSPC;
                return;
        }

        copy_check(tmp, b->quick, &check);
        if (check.result != 0 || !check.passed) {
                fail(b, "the copy %s failed its %s check: %s%s; it was deleted, the earlier backups stay", tmp,
                     b->quick ? "quick" : "integrity", check.result != 0 ? "could not run: " : "", check.first);
                (void)unlink(tmp);
                return;
        }
        r = copy_sha256(tmp, b->manifest.sha256);
        if (r < 0) {
                fail(b, "cannot read %s back: %s", tmp, strerror(-r));
                (void)unlink(tmp);
                return;
        }
        /* The same bytes as the newest backup: nothing to keep. */
        if (b->trigger == TRIGGER_INTERVAL && b->newest_sha[0] && streq(b->newest_sha, b->manifest.sha256)) {
                (void)unlink(tmp);
                b->end = BACKUP_END_UNCHANGED;
                return;
        }

        b->manifest.time = snapshot_rt;
        bufprintf(b->manifest.trigger, sizeof(b->manifest.trigger), "%s", task_trigger_names[b->trigger]);
        b->manifest.page_size = copy.page_size;
        b->manifest.page_count = copy.pages;
        b->manifest.bytes = copy.bytes;
        bufprintf(b->manifest.sqlite_version, sizeof(b->manifest.sqlite_version), "%s", sqlite3_libversion());
        b->manifest.copy_usec = copy.duration;
        b->manifest.snapshot_usec = copy.snapshot;
        b->manifest.check_usec = check.duration;
        bufprintf(b->manifest.check, sizeof(b->manifest.check), "%s", check.quick ? "quick" : "integrity");
        bufprintf(b->skew, sizeof(b->skew), "%s", check.skew);
        b->manifest.check_ok = true;
        b->manifest.state = state;

        /* The copy into place first, then its manifest: only a backup with
         * a manifest counts (backupdir.h). */
        r = backupdir_write_manifest(b->dir, base, &b->manifest);
        if (r == 0)
                r = files_rename_noreplace(tmp, final) < 0 ? -errno : 0;
        if (r == 0)
                r = files_rename_noreplace(mtmp, mfinal) < 0 ? -errno : 0;
        if (r == 0)
                r = fsync_path(b->dir, true);
        if (r < 0) {
                fail(b, "cannot put the backup in place in %s: %s", b->dir, strerror(-r));
                (void)unlink(mtmp);
                (void)unlink(mfinal);
                (void)unlink(tmp);
                (void)unlink(final);
                return;
        }
        b->path = TAKE_PTR(final);
        b->end = BACKUP_END_DONE;
}

static void backup_job_run(Job *j, Db *db) {
        BackupJob *b = container_of(j, BackupJob, job);
        usec_t start = now_usec(CLOCK_MONOTONIC);

        (void)db;
        take(b);
        if (b->end == BACKUP_END_DONE && b->prune) {
                BackupList before;

                if (backupdir_list(b->dir, b->db_path, &before) == 0) {
                        b->prune_error = backupdir_prune(b->dir, &before, &b->rules, &b->deleted);
                        backup_list_done(&before);
                }
        }
        if (b->prune)
                b->list_error = backupdir_list(b->dir, b->db_path, &b->list);
        b->duration = now_usec(CLOCK_MONOTONIC) - start;
}

/* ---- The facts -------------------------------------------------------------------- */

static void take_list_facts(Backuper *bk, const BackupList *l) {
        BackupFacts *f = &bk->facts;
        const BackupEntry *newest = NULL;

        f->known = true;
        f->count = 0;
        for (size_t i = 0; i < l->n; i++)
                if (l->entries[i].present && l->entries[i].m.check_ok) {
                        f->count++;
                        if (!newest)
                                newest = &l->entries[i];
                }
        f->have_newest = newest != NULL;
        if (!newest)
                return;
        f->newest_time = newest->m.time;
        f->current_at = MAX(f->current_at, newest->m.time);
        f->newest_bytes = newest->m.bytes;
        f->newest_copy_usec = newest->m.copy_usec;
        f->newest_check_usec = newest->m.check_usec;
        f->newest_check_ok = newest->m.check_ok;
        bufprintf(f->newest_name, sizeof(f->newest_name), "%s", newest->m.file);
        bk->last_state = newest->m.state;
        bufprintf(bk->newest_sha, sizeof(bk->newest_sha), "%s", newest->m.sha256);
}

static void backup_job_free(BackupJob *b) {
        free(b->db_path);
        free(b->wal_path);
        free(b->dir);
        free(b->path);
        backup_manifest_done(&b->manifest);
        backup_list_done(&b->list);
        free(b);
}

/* The journal entry of a backup taken. */
static void report_taken(TaskReport *r, const BackupJob *b) {
        char bytes[32], copy_took[32], check_took[32];

        format_bytes(bytes, sizeof(bytes), b->manifest.bytes);
        format_elapsed(copy_took, sizeof(copy_took), b->manifest.copy_usec);
        format_elapsed(check_took, sizeof(check_took), b->manifest.check_usec);
        bufprintf(r->summary, sizeof(r->summary), "%s (%s, %" PRIi64 " pages), copied in %s, %s check ok in %s", b->path,
                  bytes, b->manifest.page_count, copy_took, b->manifest.check, check_took);
        if (b->skew[0])
                bufprintf(r->summary + strlen(r->summary), sizeof(r->summary) - strlen(r->summary),
                          " (integrity_check cannot run with SQLite %s: %s)", sqlite3_libversion(), b->skew);
        if (b->deleted)
                bufprintf(r->summary + strlen(r->summary), sizeof(r->summary) - strlen(r->summary),
                          "; retention deleted %u older backup%s", b->deleted, b->deleted == 1 ? "" : "s");
        r->message_id = SQLVIGIL_MESSAGE_BACKUP;
        r->event = "backup";
        log_field(&r->fields, "SQLVIGIL_BACKUP_DIRECTORY", "%s", b->dir);
        log_field(&r->fields, "SQLVIGIL_BACKUP_FILE", "%s", b->path);
        log_field(&r->fields, "SQLVIGIL_BYTES", "%" PRIu64, b->manifest.bytes);
        log_field(&r->fields, "SQLVIGIL_PAGES", "%" PRIi64, b->manifest.page_count);
        log_field(&r->fields, "SQLVIGIL_SHA256", "%s", b->manifest.sha256);
        log_field(&r->fields, "SQLVIGIL_COPY_USEC", "%" PRIu64, b->manifest.copy_usec);
        log_field(&r->fields, "SQLVIGIL_SNAPSHOT_USEC", "%" PRIu64, b->manifest.snapshot_usec);
        log_field(&r->fields, "SQLVIGIL_CHECK", "%s", b->manifest.check);
        log_field(&r->fields, "SQLVIGIL_CHECK_USEC", "%" PRIu64, b->manifest.check_usec);
        log_field(&r->fields, "SQLVIGIL_DELETED", "%u", b->deleted);
        log_field(&r->fields, "SQLVIGIL_WAL_BYTES_BEFORE", "%" PRIu64, b->wal_before);
        log_field(&r->fields, "SQLVIGIL_WAL_BYTES", "%" PRIu64, b->wal_after);
}

/* The journal entry of a run that failed or was cancelled. */
static void report_failed(TaskReport *r, const BackupJob *b) {
        r->message_id = SQLVIGIL_MESSAGE_BACKUP_FAILED;
        r->event = "backup-failed";
        log_field(&r->fields, "SQLVIGIL_BACKUP_DIRECTORY", "%s", b->dir ? b->dir : "");
        log_field(&r->fields, "SQLVIGIL_REASON_TEXT", "%s", r->summary);
}

static void backup_job_done(Job *j, bool ran) {
        BackupJob *b = container_of(j, BackupJob, job);
        Backuper *bk = b->backuper;
        TaskReport r;

        task_report_init(&r, b->trigger, b->started_rt);
        r.duration = b->duration;
        r.outcome.task = TASK_BACKUP;
        if (!ran || b->end == BACKUP_END_CANCELLED) {
                r.result = TASK_RESULT_CANCELLED;
                bufprintf(r.summary, sizeof(r.summary), "backup: cancelled, sqlvigil is stopping");
                report_failed(&r, b);
        } else if (b->end == BACKUP_END_UNCHANGED) {
                /* A run, on the record (stats, STATUS=), but no journal
                 * entry: an idle database would otherwise log one a day
                 * saying nothing happened. */
                r.outcome.ok = true;
                bufprintf(r.summary, sizeof(r.summary), "unchanged since the newest backup, %s: no copy taken",
                          bk->facts.newest_name);
                bk->facts.current_at = b->started_rt;
                bk->facts.failed = false;
                bk->facts.failure[0] = '\0';
        } else if (b->end == BACKUP_END_FAILED) {
                r.result = TASK_RESULT_FAILED;
                r.priority = LOG_ERR;
                r.fault = b->fault;
                bufprintf(r.summary, sizeof(r.summary), "%s", b->error);
                if (b->dir_full) {
                        char more[384];

                        describe_space(b->dir, 0, more, sizeof(more));
                        bufprintf(r.summary + strlen(r.summary), sizeof(r.summary) - strlen(r.summary), "; %s", more);
                }
                report_failed(&r, b);
                bk->facts.failed = true;
                bufprintf(bk->facts.failure, sizeof(bk->facts.failure), "%s", b->error);
        } else {
                report_taken(&r, b);
                r.outcome.ok = true;
                r.outcome.backup = &b->manifest;
                r.outcome.backup_path = b->path;
                bk->facts.failed = false;
                bk->facts.failure[0] = '\0';
                if (b->prune && b->list_error == 0)
                        take_list_facts(bk, &b->list);
        }
        if (b->cleanup[0])
                log_info("backup directory %s: %s", b->dir, b->cleanup);
        if (b->prune_error < 0)
                log_warning("retention in %s: %s; the backups it meant to delete are still there", b->dir,
                            strerror(-b->prune_error));
        if (!r.outcome.ok && r.result != TASK_RESULT_CANCELLED)
                r.outcome.error = r.summary;
        maintenance_end(bk->mt, TASK_BACKUP, &r);
        maintenance_facts_changed(bk->mt);
        backup_job_free(b);
}

void backuper_run(Backuper *bk, TaskTrigger trigger) {
        Maintenance *mt = bk->mt;
        const Config *c = maintenance_config(mt);
        const MaintenanceEnv *env = maintenance_env(mt);
        char dir[4096];
        BackupJob *b;

        b = calloc(1, sizeof(*b));
        if (!b)
                goto oom;
        b->job = (Job){ .name = "backup", .cancellable = true, .run = backup_job_run, .done = backup_job_done };
        b->backuper = bk;
        b->trigger = trigger;
        b->started_rt = now_usec(CLOCK_REALTIME);
        b->db_path = strdup(env->db_path);
        b->wal_path = strdup(env->wal_path);
        if (c->backup_directory) {
                b->dir = strdup(c->backup_directory);
                b->prune = true;
        } else if (trigger == TRIGGER_RESTORE) {
                /* The safety backup has to go somewhere: beside the
                 * database, where sqlvigil may certainly write. */
                bufprintf(dir, sizeof(dir), "%s", env->db_path);
                b->dir = strdup(dirname(dir));
        }
        if (!b->db_path || !b->wal_path || (!b->dir && (c->backup_directory || trigger == TRIGGER_RESTORE)))
                goto oom;
        b->quick = c->backup_verify == VERIFY_QUICK;
        b->keep_free = c->min_free_disk;
        b->rules = (RetentionRules){ .last = c->keep_last,
                                     .daily = c->keep_daily,
                                     .weekly = c->keep_weekly,
                                     .monthly = c->keep_monthly };
        b->shm_fd = bk->shm_fd;
        b->last_state = bk->last_state;
        bufprintf(b->newest_sha, sizeof(b->newest_sha), "%s", bk->newest_sha);
        if (!b->dir) {
                b->end = BACKUP_END_FAILED;
                bufprintf(b->error, sizeof(b->error),
                          "no [backup] directory is configured: set one in the configuration and reload");
                backup_job_done(&b->job, true);
                return;
        }
        worker_submit(env->backup_worker, &b->job);
        return;
oom:
        if (b) {
                free(b->db_path);
                free(b->wal_path);
                free(b->dir);
                free(b);
        }
        {
                TaskReport r;

                task_report_init(&r, trigger, now_usec(CLOCK_REALTIME));
                r.result = TASK_RESULT_FAILED;
                bufprintf(r.summary, sizeof(r.summary), "backup: out of memory");
                report_failed(&r, &(BackupJob){ 0 });
                r.outcome.error = r.summary;
                maintenance_end(mt, TASK_BACKUP, &r);
        }
}

/* ---- Reading the directory, on the file thread ------------------------------- */

typedef struct ScanJob {
        Job job;
        Backuper *backuper;   /* NULL: a list request whose client went away */
        char *dir, *db_path;
        bool cleanup;
        char report[512];
        int error;
        BackupList list;
        BackupListDone done;
        void *userdata;
} ScanJob;

struct ListRequest {
        ScanJob *job;
        ListRequest *next;
};

static void scan_run(Job *j, Db *db) {
        ScanJob *s = container_of(j, ScanJob, job);

        (void)db;
        if (s->cleanup)
                (void)backupdir_cleanup(s->dir, s->db_path, s->report, sizeof(s->report));
        s->error = backupdir_list(s->dir, s->db_path, &s->list);
}

static void scan_free(ScanJob *s) {
        free(s->dir);
        free(s->db_path);
        backup_list_done(&s->list);
        free(s);
}

static void start_scan(Backuper *bk);

static void scan_done(Job *j, bool ran) {
        ScanJob *s = container_of(j, ScanJob, job);
        Backuper *bk = s->backuper;

        if (bk) {
                bk->scanning = false;
                if (ran && s->report[0])
                        log_info("backup directory %s: %s", s->dir, s->report);
                if (ran && s->error == 0)
                        take_list_facts(bk, &s->list);
                else if (ran && s->error != -ENOENT)
                        log_warning("cannot read the backup directory %s: %s", s->dir, strerror(-s->error));
                else if (ran)
                        bk->facts.known = true; /* no directory yet: no backups */
                if (bk->scan_again) {
                        bk->scan_again = false;
                        start_scan(bk);
                }
                maintenance_facts_changed(bk->mt);
        }
        scan_free(s);
}

static ScanJob *scan_new(Backuper *bk, const char *dir) {
        ScanJob *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->job = (Job){ .name = "backup-list", .cancellable = true, .run = scan_run, .done = scan_done };
        s->backuper = bk;
        s->dir = strdup(dir);
        s->db_path = strdup(maintenance_env(bk->mt)->db_path);
        if (!s->dir || !s->db_path) {
                scan_free(s);
                return NULL;
        }
        return s;
}

static void start_scan(Backuper *bk) {
        const Config *c = maintenance_config(bk->mt);
        ScanJob *s;

        bk->facts = (BackupFacts){ .configured = c->backup_directory != NULL };
        bk->last_state = (BackupSourceState){ 0 };
        bk->newest_sha[0] = '\0';
        if (!c->backup_directory)
                return;
        if (bk->scanning) {
                bk->scan_again = true;
                return;
        }
        s = scan_new(bk, c->backup_directory);
        if (!s) {
                log_warning("cannot read the backup directory: out of memory");
                return;
        }
        s->cleanup = true;
        bk->scanning = true;
        worker_submit(maintenance_env(bk->mt)->file_worker, &s->job);
}

static void list_done(Job *j, bool ran) {
        ScanJob *s = container_of(j, ScanJob, job);
        Backuper *bk = s->backuper;

        if (bk) {
                for (ListRequest **p = &bk->lists; *p; p = &(*p)->next)
                        if ((*p)->job == s) {
                                ListRequest *gone = *p;

                                *p = gone->next;
                                free(gone);
                                break;
                        }
                if (s->userdata)
                        s->done(s->userdata, ran ? s->error : -ECANCELED, &s->list);
        }
        scan_free(s);
}

int backuper_list(Backuper *bk, BackupListDone done, void *userdata) {
        const Config *c = maintenance_config(bk->mt);
        ListRequest *req;
        ScanJob *s;

        if (!c->backup_directory)
                return -ENOENT;
        s = scan_new(bk, c->backup_directory);
        req = calloc(1, sizeof(*req));
        if (!s || !req) {
                if (s)
                        scan_free(s);
                free(req);
                return -ENOMEM;
        }
        s->job.done = list_done;
        s->done = done;
        s->userdata = userdata;
        req->job = s;
        req->next = bk->lists;
        bk->lists = req;
        worker_submit(maintenance_env(bk->mt)->file_worker, &s->job);
        return 0;
}

void backuper_forget(Backuper *bk, void *userdata) {
        for (ListRequest *r = bk->lists; r; r = r->next)
                if (r->job->userdata == userdata)
                        r->job->userdata = NULL;
}

/* ---- Life ---------------------------------------------------------------------- */

int backuper_new(Backuper **ret, Maintenance *mt) {
        Backuper *bk = calloc(1, sizeof(*bk));

        if (!bk)
                return -ENOMEM;
        bk->mt = mt;
        bk->shm_fd = -1;
        atomic_init(&bk->cancel, false);
        *ret = bk;
        return 0;
}

Backuper *backuper_free(Backuper *bk) {
        if (!bk)
                return NULL;
        /* The jobs still out are handed back when the threads stop; they
         * must not reach a freed Backuper. The threads stop first
         * (manager_free()), so only the list is left. */
        while (bk->lists) {
                ListRequest *r = bk->lists;

                bk->lists = r->next;
                r->job->backuper = NULL;
                free(r);
        }
        free(bk);
        return NULL;
}

int backuper_start(Backuper *bk, const DbFiles *files) {
        bk->shm_fd = files ? files->shm_fd : -1;
        start_scan(bk);
        return 0;
}

void backuper_reload(Backuper *bk) {
        start_scan(bk);
}

void backuper_stop(Backuper *bk) {
        atomic_store(&bk->cancel, true);
}

const BackupFacts *backuper_facts(const Backuper *bk) {
        return &bk->facts;
}
