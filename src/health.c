/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "health.h"

const char *const health_state_names[_HEALTH_STATE_MAX] = {
        [HEALTH_OK] = "ok",
        [HEALTH_DEGRADED] = "degraded",
        [HEALTH_FAILED] = "failed",
};

/* Stable words for SQLVIGIL_REASON= and the control socket's JSON. */
const char *const health_code_names[_HEALTH_CODE_MAX] = {
        [HEALTH_CODE_NONE] = "none",
        [HEALTH_CODE_FILE_DELETED] = "file-deleted",
        [HEALTH_CODE_FILE_REPLACED] = "file-replaced",
        [HEALTH_CODE_WAL_DISPLACED] = "wal-displaced",
        [HEALTH_CODE_OVERWRITTEN] = "overwritten",
        [HEALTH_CODE_READ_ONLY] = "read-only",
        [HEALTH_CODE_QUERY_FAILED] = "query-failed",
        [HEALTH_CODE_CORRUPT] = "corrupt",
        [HEALTH_CODE_NOT_WAL] = "not-wal",
        [HEALTH_CODE_LOCK_TIMEOUT] = "lock-timeout",
        [HEALTH_CODE_STALLED] = "stalled",
        [HEALTH_CODE_STORAGE] = "storage-fault",
        [HEALTH_CODE_QUERY_BUSY] = "query-busy",
        [HEALTH_CODE_LOCK_BUSY] = "lock-busy",
        [HEALTH_CODE_WAL_SIZE] = "wal-size",
        [HEALTH_CODE_DISK_SPACE] = "disk-space",
        [HEALTH_CODE_STARVATION] = "starvation",
        [HEALTH_CODE_BACKUP_STALE] = "backup-stale",
        [HEALTH_CODE_BACKUP_FAILED] = "backup-failed",
        [HEALTH_CODE_FOREIGN_KEY] = "foreign-key",
        [HEALTH_CODE_SQLITE_TOO_OLD] = "sqlite-too-old",
};

void health_read_files(const char *db_path, const char *wal_path, HealthFiles *f) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        struct statvfs vfs;
        struct stat st;
        char dir[4096];
        HealthFiles prev = *f;

        *f = (HealthFiles){ 0 };
        if (prev.fs_checked && now - prev.fs_checked < HEALTH_FS_MAX_AGE) {
                f->fs_errno = prev.fs_errno;
                f->free_bytes = prev.free_bytes;
                f->read_only = prev.read_only;
                f->fs_checked = prev.fs_checked;
        }
        if (stat(db_path, &st) < 0)
                f->db_errno = errno;
        else {
                f->dev = st.st_dev;
                f->ino = st.st_ino;
                f->db_bytes = (uint64_t)st.st_size;
        }
        f->wal_bytes = file_size(wal_path);

        if (f->fs_checked)
                return;
        /* Free space where the WAL grows: the database's directory. */
        bufprintf(dir, sizeof(dir), "%s", db_path);
        f->fs_checked = now;
        if (statvfs(dirname(dir), &vfs) < 0)
                f->fs_errno = errno;
        else {
                f->free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
                f->read_only = vfs.f_flag & ST_RDONLY;
        }
}

typedef struct Verdict {
        HealthResult *result;
        size_t used;
} Verdict;

static void add(Verdict *v, HealthState state, HealthCode code, const char *fmt, ...) _printf_(4, 5);
static void add(Verdict *v, HealthState state, HealthCode code, const char *fmt, ...) {
        HealthResult *r = v->result;
        va_list ap;
        int n;

        if (state < r->state)
                return;
        if (state > r->state) {
                /* A worse severity replaces what was said before. */
                r->state = state;
                r->code = code;
                r->reason[0] = '\0';
                v->used = 0;
        }
        if (v->used > 0 && v->used + 2 < sizeof(r->reason)) {
                memcpy(r->reason + v->used, "; ", 3);
                v->used += 2;
        }
        if (v->used >= sizeof(r->reason) - 1)
                return;
        va_start(ap, fmt);
        n = vsnprintf(r->reason + v->used, sizeof(r->reason) - v->used, fmt, ap);
        va_end(ap);
        if (n > 0)
                v->used = MIN(v->used + (size_t)n, sizeof(r->reason) - 1);
}

void health_evaluate(const HealthLimits *limits, const HealthInput *in, HealthResult *ret) {
        Verdict v = { .result = ret };
        char a[32], b[32], who[64] = "";
        const DbProbe *p = in->probe;

        *ret = (HealthResult){ .state = HEALTH_OK, .code = HEALTH_CODE_NONE };

        /* Identity first: if the file is gone or another, nothing else matters. */
        if (in->files.db_errno == ENOENT)
                add(&v, HEALTH_FAILED, HEALTH_CODE_FILE_DELETED, "database file was deleted");
        else if (in->files.db_errno != 0)
                add(&v, HEALTH_FAILED, HEALTH_CODE_FILE_DELETED, "cannot stat database file: %s",
                    strerror(in->files.db_errno));
        else if (in->files.dev != in->open_dev || in->files.ino != in->open_ino)
                add(&v, HEALTH_FAILED, HEALTH_CODE_FILE_REPLACED,
                    "database file was replaced (inode %ju is open, the path now names inode %ju)",
                    (uintmax_t)in->open_ino, (uintmax_t)in->files.ino);

        if (in->wal_displaced)
                add(&v, HEALTH_FAILED, HEALTH_CODE_WAL_DISPLACED, "%s", in->wal_displaced);
        if (in->overwritten)
                add(&v, HEALTH_FAILED, HEALTH_CODE_OVERWRITTEN, "%s", in->overwritten);
        /* A file system that refuses a write: mounted read-only, or
         * remounted so after errors (ext4's "emergency_ro" shows in no
         * statvfs() flag; the write says it). */
        if (in->write_errno)
                add(&v, HEALTH_FAILED, HEALTH_CODE_READ_ONLY, "the file system refused a write to %s: %s",
                    in->write_path ? in->write_path : "sqlvigil's mark", strerror(in->write_errno));
        else if (in->files.read_only)
                add(&v, HEALTH_FAILED, HEALTH_CODE_READ_ONLY, "the database's file system is mounted read-only");

        if (p && p->result == DB_E_SQLITE) {
                int primary = p->sqlite_code & 0xff;

                /* A schema a newer SQLite wrote, which this one cannot
                 * parse, reads as "malformed": no damage, and a restart
                 * would only fail to start. */
                if (p->skew)
                        add(&v, HEALTH_DEGRADED, HEALTH_CODE_SQLITE_TOO_OLD,
                            "sqlvigil's SQLite %s cannot read this database's schema, which a newer SQLite wrote: %s; "
                            "sqlvigil cannot check it",
                            sqlite3_libversion(), p->error);
                else if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB)
                        add(&v, HEALTH_FAILED, HEALTH_CODE_CORRUPT, "%s", p->error);
                else if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
                        add(&v, HEALTH_DEGRADED, HEALTH_CODE_QUERY_BUSY, "%s", p->error);
                else
                        add(&v, HEALTH_FAILED, HEALTH_CODE_QUERY_FAILED, "%s", p->error);
        } else if (p && p->result == 0 && !p->wal)
                add(&v, HEALTH_FAILED, HEALTH_CODE_NOT_WAL, "journal_mode is %s, not wal", p->journal_mode);

        if (in->corruption)
                add(&v, HEALTH_FAILED, HEALTH_CODE_CORRUPT, "quick_check: %s", in->corruption);

        /* An I/O error, a read-only file system or corruption met by
         * sqlvigil's own work is failed at once, not hours later at the
         * next quick_check; a full disk is degraded. */
        if (in->storage_fault && (in->storage_fault_code & 0xff) == SQLITE_FULL)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_DISK_SPACE, "%s", in->storage_fault);
        else if (in->storage_fault)
                add(&v, HEALTH_FAILED, HEALTH_CODE_STORAGE, "%s", in->storage_fault);

        if (in->stalled_for >= limits->lock_timeout)
                add(&v, HEALTH_FAILED, HEALTH_CODE_STALLED, "no progress from the database thread for %s (in %s)",
                    format_elapsed(a, sizeof(a), in->stalled_for), in->stalled_job ? in->stalled_job : "?");

        if (in->lock_holder > 0)
                bufprintf(who, sizeof(who), ": held by pid %d (%s)", (int)in->lock_holder,
                          in->lock_holder_comm && *in->lock_holder_comm ? in->lock_holder_comm : "?");
        if (in->lock_busy_for >= limits->lock_timeout)
                add(&v, HEALTH_FAILED, HEALTH_CODE_LOCK_TIMEOUT,
                    "write lock unobtainable for %s (lock_timeout %s)%s", format_elapsed(a, sizeof(a), in->lock_busy_for),
                    format_elapsed(b, sizeof(b), limits->lock_timeout), who);
        else if (in->lock_busy_for >= limits->lock_timeout / 4)
                /* Shorter waits are ordinary contention with application
                 * writers and not worth a state change. */
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_LOCK_BUSY, "write lock busy for %s%s",
                    format_elapsed(a, sizeof(a), in->lock_busy_for), who);

        /* What counts is what is not yet in the database: a -wal file left
         * at its peak after a burst, with nothing pending, is shortened by
         * sqlvigil and harms nobody meanwhile. Without the WAL index, the
         * file's size is all there is to go by. */
        if (limits->max_wal_size > 0 && in->files.wal_index && in->files.wal_pending_bytes > limits->max_wal_size)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_WAL_SIZE, "WAL holds %s not yet in the database (max_wal_size %s)",
                    format_bytes(a, sizeof(a), in->files.wal_pending_bytes),
                    format_bytes(b, sizeof(b), limits->max_wal_size));
        else if (limits->max_wal_size > 0 && !in->files.wal_index && in->files.wal_bytes > limits->max_wal_size)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_WAL_SIZE, "WAL is %s (max_wal_size %s)",
                    format_bytes(a, sizeof(a), in->files.wal_bytes), format_bytes(b, sizeof(b), limits->max_wal_size));

        if (in->files.fs_errno != 0)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_DISK_SPACE, "cannot read free disk space: %s",
                    strerror(in->files.fs_errno));
        else if (in->files.free_bytes < limits->min_free_disk)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_DISK_SPACE, "%s free on the database's file system (min_free_disk %s)",
                    format_bytes(a, sizeof(a), in->files.free_bytes), format_bytes(b, sizeof(b), limits->min_free_disk));

        if (in->starvation)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_STARVATION, "%s", in->starvation);

        /* Backups: a database that works but has no recent copy is one
         * disk failure from loss. */
        if (in->backup_max_age > 0 && in->backup_known) {
                /* An old backup of a database that has not changed since is
                 * as good as a new one: what counts is how long the
                 * database may have been ahead of its newest backup. */
                if (in->backup_have && in->backup_behind > in->backup_max_age)
                        add(&v, HEALTH_DEGRADED, HEALTH_CODE_BACKUP_STALE,
                            "the newest backup, %s, is %s old and the database may have changed since "
                            "(max_age %s)",
                            in->backup_newest ? in->backup_newest : "?", format_elapsed(a, sizeof(a), in->backup_age),
                            format_elapsed(b, sizeof(b), in->backup_max_age));
                else if (!in->backup_have && in->running_for > in->backup_max_age)
                        add(&v, HEALTH_DEGRADED, HEALTH_CODE_BACKUP_STALE, "no backup after %s of running (max_age %s)",
                            format_elapsed(a, sizeof(a), in->running_for),
                            format_elapsed(b, sizeof(b), in->backup_max_age));
        }
        if (in->backup_failure)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_BACKUP_FAILED, "the last backup failed: %s", in->backup_failure);
        /* Readable, but inconsistent: the applications' own foreign keys
         * were not enforced (PRAGMA foreign_keys is theirs to turn on). */
        if (in->inconsistency)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_FOREIGN_KEY, "foreign_key_check: %s", in->inconsistency);

        /* The scheduled check cannot run: what sqlvigil promises to watch
         * goes unwatched. Not failed: nothing is wrong with the file. */
        if (in->unsupported)
                add(&v, HEALTH_DEGRADED, HEALTH_CODE_SQLITE_TOO_OLD, "%s", in->unsupported);
}

usec_t health_lock_update(HealthLock *l, bool busy, usec_t now, usec_t waited) {
        if (!busy) {
                l->busy_since = 0;
                return 0;
        }
        if (l->busy_since == 0)
                /* It was already busy when the probe started waiting. */
                l->busy_since = now - MIN(now, waited);
        return now - l->busy_since;
}
