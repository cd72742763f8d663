/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "backupdir.h"
#include "copy.h"
#include "files.h"
#include "log.h"
#include "maintenance.h"
#include "messages.h"
#include "restore.h"

/* A scheduled backup that is running when the safety backup is due is
 * waited for, this often, this long. */
#define SAFETY_RETRY (200 * USEC_PER_MSEC)
#define SAFETY_WAIT_MAX (10 * USEC_PER_MINUTE)

typedef enum Stage {
        STAGE_IDLE,
        STAGE_PREPARE,
        STAGE_SAFETY,
        STAGE_RESTORE,
} Stage;

struct Restorer {
        Maintenance *mt;
        Stage stage;
        RestoreReply reply;
        void *userdata;
        usec_t started;          /* CLOCK_MONOTONIC */
        usec_t safety_deadline;
        sd_event_source *retry;
        char *tmp;               /* the private copy */
        char file[512];          /* FILE's name, for messages */
        uint64_t bytes;
        int64_t pages, page_size;
        usec_t check_usec;
        char safety[4096];
};

typedef struct PrepareJob {
        Job job;
        Restorer *restorer;
        int fd;
        int manifest_fd;
        char *tmp;
        char *db_path;            /* the live database's, as configured */
        dev_t db_dev;
        ino_t db_ino;
        int64_t live_page_size;
        uint64_t keep_free;       /* [health] min_free_disk */
        bool refused;
        char error[768];
        uint64_t bytes;
        int64_t page_size, pages;
        usec_t check_usec;
} PrepareJob;

typedef struct RestoreJob {
        Job job;
        Restorer *restorer;
        char *tmp;
        usec_t max_wait;
        DbRestore restore;
        DbCheck check;
} RestoreJob;

static void finish(Restorer *r, const RestoreOutcome *o);
static void restore_job_run(Job *j, Db *db);
static void restore_job_done(Job *j, bool ran);

/* ---- 1. Prepare: FILE becomes a checked private copy --------------------------- */

static int64_t header_page_size(const unsigned char hdr[100]) {
        unsigned v = (unsigned)hdr[16] << 8 | hdr[17];

        return v == 1 ? 65536 : (int64_t)v;
}

/* The manifest passed with FILE, if it is one of sqlvigil's: *ret filled,
 * 1; 0 when there is none or it is something else (then it is ignored). */
/* The manifest passed beside FILE: 1 read into ret, 0 none passed or not
 * one of sqlvigil's (a NAME.json of the application's own), -EBADMSG one
 * that says it is (a "sha256" field) but cannot be read whole: then it
 * cannot vouch for the file, and the file is refused rather than taken
 * unchecked. */
static int read_passed_manifest(int fd, BackupManifest *ret) {
        char buf[65536];
        size_t len = 0;

        if (fd < 0)
                return 0;
        while (len < sizeof(buf)) {
                ssize_t n = pread(fd, buf + len, sizeof(buf) - len, (off_t)len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        if (backup_manifest_parse(buf, len, ret) == 0)
                return 1;
        return memmem(buf, len, "\"sha256\"", 8) ? -EBADMSG : 0;
}

/* Whether a manifest's source names the live database: the same path, or
 * another spelling of the same file (its identity, taken at the start). */
static bool same_database(const PrepareJob *p, const char *source) {
        struct stat st;

        if (streq(source, p->db_path))
                return true;
        return stat(source, &st) == 0 && st.st_dev == p->db_dev && st.st_ino == p->db_ino;
}

static void prepare_run(Job *j, Db *db) {
        PrepareJob *p = container_of(j, PrepareJob, job);
        unsigned char hdr[100];
        struct stat st;
        CopyCheck check;
        char why[512];
        int fd, q;

        (void)db;
        if (fstat(p->fd, &st) < 0) {
                bufprintf(p->error, sizeof(p->error), "cannot examine the file: %s", strerror(errno));
                p->refused = true;
                return;
        }
        if (!S_ISREG(st.st_mode)) {
                bufprintf(p->error, sizeof(p->error), "not a regular file");
                p->refused = true;
                return;
        }
        if (st.st_dev == p->db_dev && st.st_ino == p->db_ino) {
                bufprintf(p->error, sizeof(p->error), "it is the live database itself");
                p->refused = true;
                return;
        }
        /* The private copy and the WAL the restore writes (every page once)
         * land on the database's disk: both must fit, with the
         * applications' share left free. */
        {
                char dir[4096], room[384];

                bufprintf(dir, sizeof(dir), "%s", p->tmp);
                q = check_space(dirname(dir), 2 * (uint64_t)st.st_size, p->keep_free, room, sizeof(room));
                if (q == -ENOSPC) {
                        bufprintf(p->error, sizeof(p->error), "no room beside the database for it: %s", room);
                        p->refused = true;
                        return;
                }
        }
        /* Whatever a crash left under the private name is ours. */
        if (unlink(p->tmp) < 0 && errno != ENOENT) {
                bufprintf(p->error, sizeof(p->error), "cannot remove the leftover %s: %s", p->tmp, strerror(errno));
                return;
        }
        q = copy_fd(p->fd, p->tmp, &p->bytes, why, sizeof(why));
        if (q < 0) {
                bufprintf(p->error, sizeof(p->error), "cannot copy the file beside the database: %s", why);
                return;
        }
        fd = open(p->tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
            memcmp(hdr, "SQLite format 3", 16) != 0) {
                bufprintf(p->error, sizeof(p->error), "not an SQLite database (%" PRIu64 " bytes, no \"SQLite format 3\" header)",
                          p->bytes);
                p->refused = true;
                if (fd >= 0)
                        close(fd);
                goto fail;
        }
        close(fd);
        p->page_size = header_page_size(hdr);
        /* A file copied from a WAL database says so in its header; as a
         * file of its own it has no -wal, and SQLite must not look for one
         * beside our copy. */
        if ((hdr[18] == 2 || hdr[19] == 2) && (q = copy_set_rollback_header(p->tmp)) < 0) {
                bufprintf(p->error, sizeof(p->error), "cannot prepare the copy %s: %s", p->tmp, strerror(-q));
                goto fail;
        }
        {
                BackupManifest m;
                char sha[65];

                q = read_passed_manifest(p->manifest_fd, &m);
                if (q == -EBADMSG) {
                        bufprintf(p->error, sizeof(p->error),
                                  "its manifest (the .json beside it) is sqlvigil's but cannot be read whole, so it "
                                  "cannot vouch for the file; to put the file in all the same, restore a copy of it "
                                  "without the manifest (its integrity_check still runs)");
                        p->refused = true;
                        goto fail;
                }
                if (q == 1) {
                        /* Another instance's backup (sqlvigilctl -i app1
                         * restore .../app2/...) is a mistake far more often
                         * than a migration; a migration says so by leaving
                         * the manifest behind. */
                        if (!same_database(p, m.source)) {
                                bufprintf(p->error, sizeof(p->error),
                                          "its manifest says it is a backup of %s, not of %s; to put it into %s "
                                          "all the same, restore a copy of the file without its manifest "
                                          "(its integrity_check still runs, its SHA-256 is not compared)",
                                          m.source, p->db_path, p->db_path);
                                p->refused = true;
                                backup_manifest_done(&m);
                                goto fail;
                        }
                        q = copy_sha256(p->tmp, sha);
                        if (q < 0 || m.bytes != p->bytes || !streq(sha, m.sha256)) {
                                bufprintf(p->error, sizeof(p->error),
                                          "it is not the file its manifest describes (%s: %" PRIu64
                                          " bytes, SHA-256 %.16s...; the file: %" PRIu64 " bytes, SHA-256 %.16s...): "
                                          "it changed after sqlvigil wrote it",
                                          m.file, m.bytes, m.sha256, p->bytes, q < 0 ? "?" : sha);
                                p->refused = true;
                                backup_manifest_done(&m);
                                goto fail;
                        }
                        backup_manifest_done(&m);
                }
        }
        copy_check(p->tmp, false, &check);
        p->check_usec = check.duration;
        p->pages = check.pages;
        if (check.result != 0 || !check.passed) {
                bufprintf(p->error, sizeof(p->error), "it fails integrity_check%s: %s",
                          check.result != 0 ? " (it could not run)" : "", check.first);
                p->refused = true;
                goto fail;
        }
        if (p->live_page_size > 0 && check.page_size != p->live_page_size) {
                bufprintf(p->error, sizeof(p->error),
                          "its page size is %" PRIi64 " bytes, the database's is %" PRIi64 "; SQLite cannot change the "
                          "page size of a database in WAL mode. Convert the file first: sqlite3 FILE "
                          "'PRAGMA journal_mode=delete; PRAGMA page_size=%" PRIi64 "; VACUUM'",
                          check.page_size, p->live_page_size, p->live_page_size);
                p->refused = true;
                goto fail;
        }
        return;
fail:
        (void)unlink(p->tmp);
}

static void start_safety(Restorer *r);

static void prepare_done(Job *j, bool ran) {
        PrepareJob *p = container_of(j, PrepareJob, job);
        Restorer *r = p->restorer;

        files_close(p->fd);
        files_close(p->manifest_fd);
        if (!ran || p->error[0]) {
                (void)unlink(p->tmp);
                finish(r, &(RestoreOutcome){
                                  .code = !ran ? "stopping" : p->refused ? "refused" : "failed",
                                  .error = !ran ? "sqlvigil is stopping" : p->error,
                          });
        } else {
                r->bytes = p->bytes;
                r->pages = p->pages;
                r->page_size = p->page_size;
                r->check_usec = p->check_usec;
                r->safety_deadline = now_usec(CLOCK_MONOTONIC) + SAFETY_WAIT_MAX;
                start_safety(r);
        }
        free(p->tmp);
        free(p->db_path);
        free(p);
}

/* ---- 2. The safety backup -------------------------------------------------------- */

static void safety_done(void *userdata, const MaintenanceOutcome *o) {
        Restorer *r = userdata;
        RestoreJob *rj;

        if (r->stage != STAGE_SAFETY)
                return;
        if (!o->ok || !o->backup_path) {
                char why[600];

                bufprintf(why, sizeof(why), "the safety backup of the current content could not be taken: %s",
                          o->error ? o->error : "?");
                (void)unlink(r->tmp);
                finish(r, &(RestoreOutcome){ .code = "refused", .error = why });
                return;
        }
        bufprintf(r->safety, sizeof(r->safety), "%s", o->backup_path);

        rj = calloc(1, sizeof(*rj));
        if (rj)
                rj->tmp = strdup(r->tmp);
        if (!rj || !rj->tmp) {
                free(rj);
                (void)unlink(r->tmp);
                finish(r, &(RestoreOutcome){ .code = "failed", .error = "out of memory" });
                return;
        }
        rj->restorer = r;
        rj->max_wait = config_busy_timeout(maintenance_config(r->mt));
        r->stage = STAGE_RESTORE;
        /* Not cancellable: once the copy has started it ends, committed or
         * rolled back, and a stop waits for it (seconds per gigabyte). */
        rj->job = (Job){ .name = "restore", .cancellable = false, .run = restore_job_run, .done = restore_job_done };
        if (!maintenance_submit(r->mt, &rj->job)) {
                (void)unlink(r->tmp);
                free(rj->tmp);
                free(rj);
                finish(r, &(RestoreOutcome){ .code = "stopping", .error = "sqlvigil is stopping; nothing changed" });
        }
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        start_safety(userdata);
        return 0;
}

static void start_safety(Restorer *r) {
        int q;

        r->stage = STAGE_SAFETY;
        q = maintenance_request(r->mt, TASK_BACKUP, BACKUP_FOR_RESTORE, safety_done, r);
        if (q == 0)
                return;
        if (q == MAINTENANCE_E_RUNNING && now_usec(CLOCK_MONOTONIC) < r->safety_deadline) {
                /* A scheduled backup is running: its end frees the task. */
                q = sd_event_source_set_time_relative(r->retry, SAFETY_RETRY);
                if (q >= 0)
                        q = sd_event_source_set_enabled(r->retry, SD_EVENT_ONESHOT);
                if (q >= 0)
                        return;
        }
        (void)unlink(r->tmp);
        finish(r, &(RestoreOutcome){
                          .code = q == MAINTENANCE_E_STOPPING ? "stopping" : "failed",
                          .error = q == MAINTENANCE_E_STOPPING ? "sqlvigil is stopping; nothing changed"
                                   : q == MAINTENANCE_E_RUNNING ? "a backup kept running; nothing changed"
                                                                : strerror(-q),
                  });
}

/* ---- 3. The restore ---------------------------------------------------------------- */

static void restore_job_run(Job *j, Db *db) {
        RestoreJob *rj = container_of(j, RestoreJob, job);

        db_restore(db, rj->tmp, rj->max_wait, &rj->restore);
        if (rj->restore.result == 0)
                db_check(db, false, &rj->check);
        (void)unlink(rj->tmp);
}

static void restore_job_done(Job *j, bool ran) {
        RestoreJob *rj = container_of(j, RestoreJob, job);
        Restorer *r = rj->restorer;
        const DbRestore *d = &rj->restore;
        char why[768];

        if (!ran)
                finish(r, &(RestoreOutcome){ .code = "stopping", .error = "sqlvigil is stopping; nothing changed" });
        else if (d->result != 0) {
                bufprintf(why, sizeof(why), "%s%s; nothing changed", d->error,
                          d->result == DB_E_BUSY ? " (another connection held the write lock all the time)" : "");
                finish(r, &(RestoreOutcome){ .code = d->result == DB_E_BUSY ? "busy" : "failed", .error = why });
        } else if (rj->check.result != 0 || !rj->check.passed) {
                bufprintf(why, sizeof(why), "the content was restored, but quick_check of the live database then %s: %s",
                          rj->check.result != 0 ? "could not run" : "failed",
                          rj->check.result != 0 ? rj->check.error : rj->check.first);
                finish(r, &(RestoreOutcome){ .changed = true, .code = "failed", .error = why, .lock_usec = d->held });
        } else
                finish(r, &(RestoreOutcome){ .ok = true, .changed = true, .lock_usec = d->held });
        free(rj->tmp);
        free(rj);
}

/* ---- The end ----------------------------------------------------------------------- */

static void log_restored(const Restorer *r, const RestoreOutcome *o) {
        LogFields f = { 0 };
        char took[32], bytes[32], held[32];

        log_field(&f, "SQLVIGIL_RESTORE_FILE", "%s", r->file);
        log_field(&f, "SQLVIGIL_BYTES", "%" PRIu64, o->bytes);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, o->duration);
        log_field(&f, "SQLVIGIL_PAGES", "%" PRIi64, o->pages);
        log_field(&f, "SQLVIGIL_LOCK_USEC", "%" PRIu64, o->lock_usec);
        log_field(&f, "SQLVIGIL_SAFETY_BACKUP", "%s", r->safety);
        log_field(&f, "SQLVIGIL_RESULT", "%s", o->ok ? "ok" : "check-failed");
        if (!o->ok)
                log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", o->error);
        log_event(o->ok ? LOG_NOTICE : LOG_CRIT, SQLVIGIL_MESSAGE_RESTORE, "restore", &f,
                  "restore: %s now holds the content of %s (%s, %" PRIi64 " pages) in %s, the write lock held %s; "
                  "the content before is in %s%s%s",
                  maintenance_env(r->mt)->db_path, r->file, format_bytes(bytes, sizeof(bytes), o->bytes), o->pages,
                  format_elapsed(took, sizeof(took), o->duration), format_elapsed(held, sizeof(held), o->lock_usec),
                  r->safety, o->ok ? "" : "; ", o->ok ? "" : o->error);
}

static void log_refused(const Restorer *r, const RestoreOutcome *o) {
        LogFields f = { 0 };

        log_field(&f, "SQLVIGIL_RESTORE_FILE", "%s", r->file);
        log_field(&f, "SQLVIGIL_BYTES", "%" PRIu64, o->bytes);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, o->duration);
        log_field(&f, "SQLVIGIL_CODE", "%s", o->code ? o->code : "failed");
        log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", o->error ? o->error : "?");
        if (r->safety[0])
                log_field(&f, "SQLVIGIL_SAFETY_BACKUP", "%s", r->safety);
        log_event(LOG_ERR, SQLVIGIL_MESSAGE_RESTORE_REFUSED, "restore-refused", &f,
                  "restore of %s into %s refused: %s; the database is unchanged", r->file,
                  maintenance_env(r->mt)->db_path, o->error ? o->error : "?");
}

static void finish(Restorer *r, const RestoreOutcome *given) {
        RestoreOutcome o = *given;

        o.file = r->file;
        o.bytes = r->bytes;
        o.pages = r->pages;
        o.page_size = r->page_size;
        o.safety_backup = r->safety[0] ? r->safety : NULL;
        o.duration = now_usec(CLOCK_MONOTONIC) - r->started;
        o.check_usec = r->check_usec;
        if (o.changed)
                log_restored(r, &o);
        else
                log_refused(r, &o);
        if (r->reply)
                r->reply(r->userdata, &o);
        r->reply = NULL;
        r->userdata = NULL;
        r->stage = STAGE_IDLE;
        free(r->tmp);
        r->tmp = NULL;
        r->safety[0] = '\0';
        maintenance_facts_changed(r->mt);
}

int restorer_new(Restorer **ret, Maintenance *mt) {
        Restorer *r = calloc(1, sizeof(*r));
        int q;

        if (!r)
                return -ENOMEM;
        r->mt = mt;
        q = sd_event_add_time_relative(maintenance_env(mt)->event, &r->retry, CLOCK_MONOTONIC, SAFETY_RETRY,
                                       10 * USEC_PER_MSEC, on_retry, r);
        if (q >= 0) {
                (void)sd_event_source_set_description(r->retry, "restore-retry");
                q = sd_event_source_set_enabled(r->retry, SD_EVENT_OFF);
        }
        if (q < 0) {
                sd_event_source_disable_unref(r->retry);
                free(r);
                return q;
        }
        *ret = r;
        return 0;
}

Restorer *restorer_free(Restorer *r) {
        if (!r)
                return NULL;
        sd_event_source_disable_unref(r->retry);
        free(r->tmp);
        free(r);
        return NULL;
}

int restorer_start(Restorer *r, int fd, int manifest_fd, RestoreReply reply, void *userdata) {
        const MaintenanceEnv *env = maintenance_env(r->mt);
        char link[64];
        PrepareJob *p;
        ssize_t n;

        if (r->stage != STAGE_IDLE || !maintenance_active(r->mt)) {
                files_close(fd);
                files_close(manifest_fd);
                return r->stage != STAGE_IDLE ? RESTORE_E_RUNNING : -ESHUTDOWN;
        }
        p = calloc(1, sizeof(*p));
        r->tmp = strdup_printf("%s-sqlvigil-restore.tmp", env->db_path);
        if (p) {
                p->tmp = r->tmp ? strdup(r->tmp) : NULL;
                p->db_path = strdup(env->db_path);
        }
        if (!p || !p->tmp || !p->db_path) {
                if (p) {
                        free(p->tmp);
                        free(p->db_path);
                }
                free(p);
                free(r->tmp);
                r->tmp = NULL;
                files_close(fd);
                files_close(manifest_fd);
                return -ENOMEM;
        }
        /* The name FILE has in this process's view, for the messages. */
        bufprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, r->file, sizeof(r->file) - 1);
        r->file[n > 0 ? n : 0] = '\0';
        if (n <= 0)
                bufprintf(r->file, sizeof(r->file), "the file passed");
        r->reply = reply;
        r->userdata = userdata;
        r->started = now_usec(CLOCK_MONOTONIC);
        r->bytes = 0;
        r->pages = r->page_size = 0;
        r->check_usec = 0;
        r->safety[0] = '\0';
        r->stage = STAGE_PREPARE;

        p->job = (Job){ .name = "restore-prepare", .cancellable = true, .run = prepare_run, .done = prepare_done };
        p->restorer = r;
        p->fd = fd;
        p->manifest_fd = manifest_fd;
        {
                struct stat st;

                if (stat(env->db_path, &st) == 0) {
                        p->db_dev = st.st_dev;
                        p->db_ino = st.st_ino;
                }
        }
        p->live_page_size = env->pragmas->page_size;
        p->keep_free = maintenance_config(r->mt)->min_free_disk;
        worker_submit(env->backup_worker, &p->job);
        return 0;
}

void restorer_forget(Restorer *r, void *userdata) {
        if (r->userdata == userdata) {
                r->reply = NULL;
                r->userdata = NULL;
        }
}

void restorer_cleanup(Restorer *r) {
        _cleanup_(freep) char *tmp = strdup_printf("%s-sqlvigil-restore.tmp", maintenance_env(r->mt)->db_path);

        if (tmp && unlink(tmp) == 0)
                /* The restore commits before it removes its copy: a kill
                 * between the two leaves the copy behind although the
                 * content went in. Either way the database is whole. */
                log_warning("removed %s, left by a restore that was interrupted: the database holds either its "
                            "earlier content or the restored one, whole (the earlier is in the safety backup the "
                            "restore took first); look which before you restore again",
                            tmp);
}

bool restorer_running(const Restorer *r) {
        return r->stage != STAGE_IDLE;
}
