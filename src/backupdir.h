/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The backup directory ([backup] directory) and what sqlvigil keeps in it.
 * A backup is two files named after the database file without its extension
 * (the stem) and the time it was taken, in UTC:
 *
 *   STEM-YYYYMMDDTHHMMSSZ.db     the copy, in rollback-journal mode
 *   STEM-YYYYMMDDTHHMMSSZ.json   its manifest (BackupManifest)
 *
 * (a "-N" before the extension when two are taken within one second). A
 * backup counts only once its manifest is there: the copy is written as
 * .NAME.db.tmp, synced, checked and renamed first, and the manifest, written
 * as .NAME.json.tmp and synced, is renamed after it. A crash at any point
 * leaves either nothing that counts, or a whole backup; the temporary files
 * are cleaned up by the next run (backupdir_cleanup()).
 *
 * sqlvigil deletes only what it wrote for this database: files with these
 * names whose manifest names this database as its source. Everything else
 * in the directory is left alone.
 *
 * These do file I/O and block: the backup thread calls them (and the loop
 * thread only backupdir_stem()).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "retention.h"
#include "util.h"

#define BACKUP_FORMAT "sqlvigil-backup/1"

/* What the source looked like when the copy was taken: equal states mean
 * nothing was committed in between (a commit moves the WAL's last frame or
 * its salts; a checkpoint changes the file's size or time). */
typedef struct BackupSourceState {
        uint64_t db_size;
        int64_t db_mtime_ns;
        uint32_t wal_salt1, wal_salt2, wal_max_frame;
        bool valid;
} BackupSourceState;

bool backup_source_state_eq(const BackupSourceState *a, const BackupSourceState *b);

typedef struct BackupManifest {
        char *source;            /* the database's path */
        char *file;              /* the copy's name in the directory */
        usec_t time;             /* CLOCK_REALTIME µs when the copy's snapshot was taken */
        char trigger[16];        /* interval, admin, restore */
        int64_t page_size, page_count;
        uint64_t bytes;
        char sqlite_version[32];
        char sha256[65];
        usec_t copy_usec, snapshot_usec, check_usec;
        char check[16];          /* integrity | quick */
        bool check_ok;
        BackupSourceState state;
} BackupManifest;

void backup_manifest_done(BackupManifest *m);

/* One backup in the directory, from its manifest. */
typedef struct BackupEntry {
        BackupManifest m;
        char *manifest_name;
        bool present;            /* the copy is there with the manifest's size */
} BackupEntry;

typedef struct BackupList {
        BackupEntry *entries;    /* newest first */
        size_t n;
} BackupList;

void backup_list_done(BackupList *l);

/* The stem of db_path's backups: its file name without the last extension
 * ("app.db" -> "app", ".x" -> ".x", "data" -> "data"). malloc'd; NULL when
 * out of memory. */
char *backupdir_stem(const char *db_path);

/* Whether name is one of the names this stem's backups have, and of which
 * kind. Pure. */
typedef enum BackupName {
        BACKUP_NAME_NONE,
        BACKUP_NAME_COPY,         /* STEM-STAMP.db */
        BACKUP_NAME_MANIFEST,     /* STEM-STAMP.json */
        BACKUP_NAME_COPY_TMP,     /* .STEM-STAMP.db.tmp */
        BACKUP_NAME_MANIFEST_TMP, /* .STEM-STAMP.json.tmp */
} BackupName;

BackupName backupdir_classify(const char *stem, const char *name);

/* The base name (STEM-STAMP or STEM-STAMP-N) for a backup taken at time t
 * (CLOCK_REALTIME µs) that no file in dir has yet. malloc'd into *ret.
 * 0 or a negative errno. */
int backupdir_new_base(const char *dir, const char *stem, usec_t t, char **ret);

/* Every backup of db_path in dir, newest first. 0 or a negative errno
 * (-ENOENT: no directory). Unreadable or foreign manifests are skipped. */
int backupdir_list(const char *dir, const char *db_path, BackupList *ret);

/* Writes m as dir/.BASE.json.tmp, synced. 0 or a negative errno. */
int backupdir_write_manifest(const char *dir, const char *base, const BackupManifest *m);

/* Parses a manifest's text. 0, -EINVAL or -ENOMEM. */
int backup_manifest_parse(const char *text, size_t len, BackupManifest *ret);

/* Leftovers of runs that were killed: temporary copies are removed; a
 * temporary manifest whose copy was already renamed into place and still
 * matches it (size and SHA-256) is completed, otherwise removed. What was
 * done goes into report (empty if nothing). 0 or a negative errno. */
int backupdir_cleanup(const char *dir, const char *db_path, char *report, size_t size);

/* Applies retention to list (from backupdir_list()): deletes the copy, then
 * the manifest, of every backup the rules drop. *ret_deleted: how many.
 * 0 or the first negative errno met (the others are still tried). */
int backupdir_prune(const char *dir, const BackupList *list, const RetentionRules *rules, unsigned *ret_deleted);
