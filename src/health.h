/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Health: turns facts about the database into ok / degraded / failed with a
 * reason. The facts come from three places - the file system (read on the
 * event loop: stat of the database and its WAL, statvfs), the worker's probe
 * of the connection (db_probe), and the scheduled tasks (quick_check,
 * checkpoint starvation) - and this module only judges them, so its rules
 * are unit-tested without a database or a clock.
 *
 *   failed    the database is gone, replaced, corrupt, not in WAL mode, not
 *             answering, or its write lock has been unobtainable for
 *             lock_timeout: no watchdog ping, systemd restarts sqlvigil.
 *   degraded  it works, but something needs an operator: the WAL holds more
 *             than max_wal_size not yet copied into the database (a -wal
 *             file left large after a burst, with nothing pending, is no
 *             problem: sqlvigil shortens it), free disk is below
 *             min_free_disk, the write
 *             lock has been busy for a quarter of lock_timeout, checkpoints
 *             are starved, the newest backup is older than max_age, the
 *             last backup failed, rows refer to parent rows that do not
 *             exist (foreign_key_check: the data reads, but is
 *             inconsistent), or sqlvigil's SQLite cannot check (or read) a
 *             database that a newer SQLite wrote: version skew is no damage,
 *             and restarting sqlvigil would not help.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "db.h"
#include "util.h"

typedef enum HealthState {
        HEALTH_OK,
        HEALTH_DEGRADED,
        HEALTH_FAILED,
        _HEALTH_STATE_MAX,
} HealthState;

typedef enum HealthCode {
        HEALTH_CODE_NONE,
        /* failed */
        HEALTH_CODE_FILE_DELETED,
        HEALTH_CODE_FILE_REPLACED,
        HEALTH_CODE_WAL_DISPLACED,
        HEALTH_CODE_OVERWRITTEN,
        HEALTH_CODE_READ_ONLY,
        HEALTH_CODE_QUERY_FAILED,
        HEALTH_CODE_CORRUPT,
        HEALTH_CODE_NOT_WAL,
        HEALTH_CODE_LOCK_TIMEOUT,
        HEALTH_CODE_STALLED,
        HEALTH_CODE_STORAGE,
        /* degraded */
        HEALTH_CODE_QUERY_BUSY,
        HEALTH_CODE_LOCK_BUSY,
        HEALTH_CODE_WAL_SIZE,
        HEALTH_CODE_DISK_SPACE,
        HEALTH_CODE_STARVATION,
        HEALTH_CODE_BACKUP_STALE,
        HEALTH_CODE_BACKUP_FAILED,
        HEALTH_CODE_FOREIGN_KEY,
        HEALTH_CODE_SQLITE_TOO_OLD,
        _HEALTH_CODE_MAX,
} HealthCode;

extern const char *const health_state_names[_HEALTH_STATE_MAX];
extern const char *const health_code_names[_HEALTH_CODE_MAX];

/* What the file system says, read on the event loop thread. */
typedef struct HealthFiles {
        int db_errno; /* stat() of the database path failed with this, 0 if not */
        dev_t dev;
        ino_t ino;
        uint64_t db_bytes;
        uint64_t wal_bytes;       /* the -wal file's size */
        bool wal_index;           /* the WAL index was read: the next field is known */
        uint64_t wal_pending_bytes; /* WAL frames not yet in the database, in bytes */
        int fs_errno; /* statvfs() failed with this, 0 if not */
        uint64_t free_bytes;
        bool read_only;    /* statvfs() says ST_RDONLY */
        usec_t fs_checked; /* CLOCK_MONOTONIC of the statvfs() behind fs_errno/free_bytes */
} HealthFiles;

/* Reads the files' facts. statvfs() of the directory is repeated only when
 * the previous reading (in *ret, taken at its fs_checked) is older than
 * HEALTH_FS_MAX_AGE: free space does not change by much in a few seconds,
 * and the call is a third of a round's file-system cost. */
#define HEALTH_FS_MAX_AGE (10 * USEC_PER_SEC)
void health_read_files(const char *db_path, const char *wal_path, HealthFiles *ret);

typedef struct HealthLimits {
        uint64_t max_wal_size;
        uint64_t min_free_disk;
        usec_t lock_timeout;
} HealthLimits;

typedef struct HealthInput {
        HealthFiles files;
        dev_t open_dev; /* the file sqlvigil opened */
        ino_t open_ino;
        const DbProbe *probe;     /* the latest probe, NULL before the first */
        usec_t lock_busy_for;     /* write lock held by others this long, 0: free at the last look */
        pid_t lock_holder;        /* who held it, 0: unknown */
        const char *lock_holder_comm;
        usec_t stalled_for;       /* worker without progress this long, 0: fine */
        const char *stalled_job;  /* what it was running */
        const char *corruption;   /* first quick_check error, NULL: none */
        const char *inconsistency; /* what foreign_key_check found, NULL: nothing */
        const char *unsupported;  /* the scheduled check cannot run with this SQLite, and why; NULL: it can */
        const char *starvation;   /* starvation report, NULL: none */
        const char *storage_fault; /* a storage fault sqlvigil's own work met, NULL: none */
        const char *wal_displaced; /* the -wal or -shm at its path is not the database's, NULL: fine */
        const char *overwritten;  /* the content was replaced in place under the live WAL, NULL: no */
        int write_errno;          /* the write probe failed with this (EROFS...), 0: it worked */
        const char *write_path;   /* what it wrote */
        int storage_fault_code;   /* its SQLite code: SQLITE_FULL is degraded, the rest failed */
        /* Backups, when [backup] directory is set and has been read. */
        bool backup_known;
        bool backup_have;           /* there is a good backup... */
        usec_t backup_age;          /* ...this old (now minus its time) */
        usec_t backup_behind;       /* how long the database has been ahead of it, at most (now minus
                                     * the last time a run found nothing new since it) */
        const char *backup_newest;  /* its name */
        usec_t backup_max_age;      /* 0: backups are not judged */
        usec_t running_for;         /* how long sqlvigil has run: no backup yet is stale after max_age */
        const char *backup_failure; /* the last backup failed for this reason, NULL: it did not */
} HealthInput;

typedef struct HealthResult {
        HealthState state;
        HealthCode code;   /* the first reason of the worst severity */
        char reason[768];  /* all reasons of that severity, "; "-separated; "" when ok */
} HealthResult;

void health_evaluate(const HealthLimits *limits, const HealthInput *in, HealthResult *ret);

/* Tracks since when the write lock has been unobtainable. */
typedef struct HealthLock {
        usec_t busy_since; /* 0: obtainable at the last probe */
} HealthLock;

/* Records one probe: busy or not, at now, after having waited waited.
 * Returns for how long the lock has been unobtainable (0 if obtained). */
usec_t health_lock_update(HealthLock *l, bool busy, usec_t now, usec_t waited);
