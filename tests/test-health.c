/* SPDX-License-Identifier: MIT */
/* Health rules, judged from facts alone: no database, no clock, no sleeping. */
#include <errno.h>

#include "health.h"
#include "test.h"

static const HealthLimits limits = {
        .max_wal_size = 64ULL << 20,
        .min_free_disk = 64ULL << 20,
        .lock_timeout = 30 * USEC_PER_SEC,
};

static HealthInput healthy(DbProbe *p) {
        *p = (DbProbe){ .wal = true, .page_size = 4096, .page_count = 10 };
        strcpy(p->journal_mode, "wal");
        return (HealthInput){
                .files = { .dev = 1, .ino = 42, .wal_bytes = 4096, .free_bytes = 1ULL << 40 },
                .open_dev = 1,
                .open_ino = 42,
                .probe = p,
        };
}

static void test_ok(void) {
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);

        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_OK);
        CHECK_INT(r.code, HEALTH_CODE_NONE);
        CHECK_STR(r.reason, "");

        /* Before the first probe the file checks alone decide. */
        in.probe = NULL;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_OK);
}

static void test_file_identity(void) {
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);

        in.files.db_errno = ENOENT;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_FILE_DELETED);
        CHECK_STR(r.reason, "database file was deleted");

        in = healthy(&p);
        in.files.ino = 43;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_FILE_REPLACED);
        CHECK_STR(r.reason, "database file was replaced (inode 42 is open, the path now names inode 43)");

        /* Same inode number on another file system is another file too. */
        in = healthy(&p);
        in.files.dev = 2;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.code, HEALTH_CODE_FILE_REPLACED);

}

static void test_probe_failures(void) {
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);

        p.wal = false;
        strcpy(p.journal_mode, "delete");
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_NOT_WAL);
        CHECK_STR(r.reason, "journal_mode is delete, not wal");

        in = healthy(&p);
        p.result = DB_E_SQLITE;
        p.sqlite_code = SQLITE_CORRUPT;
        strcpy(p.error, "database disk image is malformed");
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_CORRUPT);

        in = healthy(&p);
        p.result = DB_E_SQLITE;
        p.sqlite_code = SQLITE_IOERR_READ;
        strcpy(p.error, "disk I/O error");
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_QUERY_FAILED);
        CHECK_STR(r.reason, "disk I/O error");

        in = healthy(&p);
        p.result = DB_E_SQLITE;
        p.sqlite_code = SQLITE_BUSY_RECOVERY;
        strcpy(p.error, "database is locked");
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_INT(r.code, HEALTH_CODE_QUERY_BUSY);

        in = healthy(&p);
        in.corruption = "*** in database main ***\nPage 5: btreeInitPage() returns error code 11";
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_CORRUPT);
}

static void test_lock(void) {
        HealthLock l = { 0 };
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);
        usec_t t = 1000 * USEC_PER_SEC;

        /* Obtainable: nothing to track. */
        CHECK_INT(health_lock_update(&l, false, t, 0), 0);
        /* Busy at a probe that waited 100 ms: busy since the wait began. */
        CHECK_INT(health_lock_update(&l, true, t, 100 * USEC_PER_MSEC), 100 * USEC_PER_MSEC);
        CHECK_INT(health_lock_update(&l, true, t + 5 * USEC_PER_SEC, 100 * USEC_PER_MSEC),
                  5 * USEC_PER_SEC + 100 * USEC_PER_MSEC);
        /* One success resets it. */
        CHECK_INT(health_lock_update(&l, false, t + 6 * USEC_PER_SEC, 0), 0);
        CHECK_INT(health_lock_update(&l, true, t + 7 * USEC_PER_SEC, 0), 0);

        /* Short contention is not worth a state change... */
        in.lock_busy_for = 7 * USEC_PER_SEC;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_OK);
        /* ...a quarter of lock_timeout is degraded... */
        in.lock_busy_for = 8 * USEC_PER_SEC;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_INT(r.code, HEALTH_CODE_LOCK_BUSY);
        CHECK_STR(r.reason, "write lock busy for 8s");
        /* ...and lock_timeout is failed. */
        in.lock_busy_for = 30 * USEC_PER_SEC;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_LOCK_TIMEOUT);
        CHECK_STR(r.reason, "write lock unobtainable for 30s (lock_timeout 30s)");
}

static void test_stalled(void) {
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);

        in.stalled_for = 29 * USEC_PER_SEC;
        in.stalled_job = "quick_check";
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_OK);
        in.stalled_for = 31 * USEC_PER_SEC;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_STALLED);
        CHECK_STR(r.reason, "no progress from the database thread for 31s (in quick_check)");
}

static void test_wal_pending(void) {
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);

        /* A -wal file left at 80 MB after a burst with nothing pending is
         * no reason to worry (sqlvigil shortens it)... */
        in.files.wal_bytes = 80ULL << 20;
        in.files.wal_index = true;
        in.files.wal_pending_bytes = 0;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_OK);
        /* ...80 MB not yet in the database is. */
        in.files.wal_pending_bytes = 80ULL << 20;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_INT(r.code, HEALTH_CODE_WAL_SIZE);
        CHECK_STR(r.reason, "WAL holds 80.0M not yet in the database (max_wal_size 64.0M)");
}

static void test_degraded_and_severity(void) {
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);

        /* Without the WAL index, the file's size is all there is. */
        in.files.wal_bytes = 80ULL << 20;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_INT(r.code, HEALTH_CODE_WAL_SIZE);
        CHECK_STR(r.reason, "WAL is 80.0M (max_wal_size 64.0M)");

        /* Two degraded reasons are both given, in order. */
        in.files.free_bytes = 12ULL << 20;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.code, HEALTH_CODE_WAL_SIZE);
        CHECK_STR(r.reason, "WAL is 80.0M (max_wal_size 64.0M); 12.0M free on the database's file system "
                            "(min_free_disk 64.0M)");

        /* A failure outranks them and replaces the text. */
        in.files.ino = 7;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_FILE_REPLACED);
        CHECK(strstr(r.reason, "WAL") == NULL);

        in = healthy(&p);
        in.files.fs_errno = EACCES;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_STR(r.reason, "cannot read free disk space: Permission denied");

        in = healthy(&p);
        in.starvation = "checkpoints starved for 3 rounds";
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.code, HEALTH_CODE_STARVATION);
}

static void test_backups(void) {
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);

        /* Not judged until the directory has been read, nor without a limit. */
        in.backup_max_age = 2 * USEC_PER_DAY;
        in.running_for = 3 * USEC_PER_DAY;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_OK);

        in.backup_known = true;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_INT(r.code, HEALTH_CODE_BACKUP_STALE);
        CHECK_STR(r.reason, "no backup after 3d of running (max_age 2d)");
        /* A new daemon has not had max_age to take one. */
        in.running_for = USEC_PER_DAY;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_OK);

        /* An old backup of a database that did not change since is current. */
        in.backup_have = true;
        in.backup_newest = "app-20260101T000000Z.db";
        in.backup_age = 5 * USEC_PER_DAY;
        in.backup_behind = USEC_PER_HOUR;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_OK);
        in.backup_behind = 5 * USEC_PER_DAY;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.code, HEALTH_CODE_BACKUP_STALE);
        CHECK_STR(r.reason, "the newest backup, app-20260101T000000Z.db, is 5d old and the database may have "
                            "changed since (max_age 2d)");

        /* A failed run is said as well, after the age. */
        in.backup_failure = "the backup directory /b: No such file or directory";
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.code, HEALTH_CODE_BACKUP_STALE);
        CHECK(strstr(r.reason, "; the last backup failed: the backup directory /b") != NULL);
        in.backup_behind = 0;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.code, HEALTH_CODE_BACKUP_FAILED);
        CHECK_INT(r.state, HEALTH_DEGRADED);

        /* A database failure outranks them. */
        in.files.ino = 7;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
}

/* What the checks found about the content, and what this SQLite cannot
 * do: degraded, never failed (no damage, and a restart would not help). */
static void test_foreign_keys_and_skew(void) {
        HealthResult r;
        DbProbe p;
        HealthInput in = healthy(&p);

        in.inconsistency = "2 rows refer to missing parent rows (child: 2); the first: child rowid 7: pid -> parent(id)";
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_INT(r.code, HEALTH_CODE_FOREIGN_KEY);
        CHECK_STR(health_code_names[r.code], "foreign-key");
        CHECK_STR(r.reason, "foreign_key_check: 2 rows refer to missing parent rows (child: 2); the first: child "
                            "rowid 7: pid -> parent(id)");

        in = healthy(&p);
        in.unsupported = "quick_check cannot run: unknown function: unhex()";
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_INT(r.code, HEALTH_CODE_SQLITE_TOO_OLD);
        CHECK_STR(health_code_names[r.code], "sqlite-too-old");

        /* A schema this SQLite cannot parse reads as SQLITE_CORRUPT: the
         * probe's skew flag keeps it from being "corrupt". */
        in = healthy(&p);
        p.result = DB_E_SQLITE;
        p.sqlite_code = SQLITE_CORRUPT;
        p.skew = true;
        strcpy(p.error, "malformed database schema (c) - unrecognized token: \"1_000_000\"");
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_DEGRADED);
        CHECK_INT(r.code, HEALTH_CODE_SQLITE_TOO_OLD);
        p.skew = false;
        health_evaluate(&limits, &in, &r);
        CHECK_INT(r.state, HEALTH_FAILED);
        CHECK_INT(r.code, HEALTH_CODE_CORRUPT);
}

int main(void) {
        test_ok();
        test_backups();
        test_file_identity();
        test_probe_failures();
        test_lock();
        test_stalled();
        test_degraded_and_severity();
        test_wal_pending();
        test_foreign_keys_and_skew();
        return test_result("test-health");
}
