/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The backup task: a consistent online copy of the database into [backup]
 * directory every interval, when an admin asks, and before a restore.
 *
 * The copy runs on the backup thread, from a connection of its own that
 * holds one read snapshot for the whole copy (copy.h says why, with the
 * figures): the applications' writers never wait for it, only the WAL
 * grows while it runs, as it does for any reader. Then the copy is synced,
 * checked from another connection ([backup] verify), hashed, described in
 * its manifest and renamed into place (backupdir.h); retention runs; the
 * run ends in one TaskReport (maintenance_end()): a "backup" or
 * "backup-failed" journal entry.
 *
 * A scheduled run takes no copy when nothing was committed since the newest
 * good backup (same WAL position and file state), or when the copy comes
 * out identical to it (same SHA-256).
 *
 * Loop thread, except where a function says otherwise.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backupdir.h"
#include "files.h"
#include "task.h"
#include "util.h"

typedef struct Maintenance Maintenance;
typedef struct Backuper Backuper;

/* maintenance_request(TASK_BACKUP, BACKUP_FOR_RESTORE): the safety backup
 * before a restore, taken even when nothing changed, into the database's
 * own directory when [backup] directory is unset. */
#define BACKUP_FOR_RESTORE 1

/* What sqlvigil knows about its backups, for health, STATUS=, stats and
 * the metrics. */
typedef struct BackupFacts {
        bool configured;          /* [backup] directory is set */
        bool known;               /* the directory has been read at least once */
        size_t count;             /* good backups in the directory */
        bool have_newest;
        usec_t newest_time;       /* CLOCK_REALTIME µs of the newest good backup */
        usec_t current_at;        /* when the newest was last found to hold the database's content: its
                                   * time, or that of a later run that found nothing committed since */
        uint64_t newest_bytes;
        usec_t newest_copy_usec, newest_check_usec;
        bool newest_check_ok;
        char newest_name[256];
        bool failed;              /* the last run failed... */
        char failure[320];        /* ...for this reason */
} BackupFacts;

int backuper_new(Backuper **ret, Maintenance *mt);
Backuper *backuper_free(Backuper *b);

/* Reads the directory (in the background) for the facts, and cleans up
 * what killed runs left. files: the database's files as SQLite has them
 * open (the WAL index tells whether anything was committed). */
int backuper_start(Backuper *b, const DbFiles *files);

/* The directory may have changed: read it again. */
void backuper_reload(Backuper *b);

/* From now on a running copy stops at its next step. */
void backuper_stop(Backuper *b);

/* A run. Ends with maintenance_end(); its outcome carries the manifest. */
void backuper_run(Backuper *b, TaskTrigger trigger);

const BackupFacts *backuper_facts(const Backuper *b);

/* The list for `sqlvigilctl backups`, read on the file thread: done gets
 * the list (owned by the callee for the call only) or a negative errno. */
typedef void (*BackupListDone)(void *userdata, int error, const BackupList *list);
int backuper_list(Backuper *b, BackupListDone done, void *userdata);

/* A list request's client went away: done is not called for it. */
void backuper_forget(Backuper *b, void *userdata);
