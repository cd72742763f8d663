/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * `sqlvigilctl restore FILE`: another database's content put into the live
 * database while the applications keep their connections.
 *
 * FILE is opened by sqlvigilctl with the caller's own permissions and comes
 * over the control socket as a descriptor (SCM_RIGHTS): nobody restores a
 * file they could not read. Then, in order:
 *
 *   1. prepare (backup thread): FILE's bytes become sqlvigil's private copy,
 *      PATH-sqlvigil-restore.tmp beside the database (nobody can change it
 *      while it is checked and read), set to rollback-journal mode, and
 *      checked with integrity_check. A file that is not a database, fails
 *      the check (or the SHA-256 of the manifest passed with it), is the
 *      live database itself, or has another page size
 *      (which SQLite cannot change in a WAL database) is refused: nothing
 *      has changed.
 *   2. safety backup: the current content, as a backup with trigger
 *      "restore" (backup.h); if it cannot be taken, the restore is refused.
 *   3. restore (database thread): db_restore(), one write transaction; then
 *      quick_check of the live database.
 *
 * Every outcome is one journal entry: "restore" when the content was
 * replaced, "restore-refused" when nothing changed (with the reason).
 * One restore at a time. Loop thread.
 */

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef struct Maintenance Maintenance;
typedef struct Restorer Restorer;

typedef struct RestoreOutcome {
        bool ok;
        bool changed;              /* the live database has FILE's content now */
        const char *code;          /* when !ok: "refused" (nothing changed), "busy", "stopping", "failed" */
        const char *error;
        const char *file;          /* FILE as the daemon sees it (/proc/self/fd), for messages */
        uint64_t bytes;
        int64_t pages, page_size;
        const char *safety_backup; /* the backup of the content before */
        usec_t duration;           /* from the request to the end */
        usec_t lock_usec;          /* how long the write lock was held for the copy */
        usec_t check_usec;         /* FILE's check */
} RestoreOutcome;

typedef void (*RestoreReply)(void *userdata, const RestoreOutcome *o);

int restorer_new(Restorer **ret, Maintenance *mt);
Restorer *restorer_free(Restorer *r);

enum {
        RESTORE_E_RUNNING = 1,     /* a restore is under way */
};

/* Starts a restore from fd; manifest_fd (-1: none) is the manifest beside
 * FILE when FILE is one of sqlvigil's backups: its SHA-256 must match, so a
 * backup with flipped bytes that still passes integrity_check is refused
 * too. Both are taken (closed in every case). 0 when started (reply is
 * called when it ends), RESTORE_E_RUNNING, or a negative errno. */
int restorer_start(Restorer *r, int fd, int manifest_fd, RestoreReply reply, void *userdata);

/* The client went away: the restore goes on, its outcome is only logged. */
void restorer_forget(Restorer *r, void *userdata);

/* At start: the private copy a killed restore left, removed. Loop thread
 * (one unlink). */
void restorer_cleanup(Restorer *r);

/* Whether a restore is under way (a scheduled backup waits for it). */
bool restorer_running(const Restorer *r);
