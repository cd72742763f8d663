/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Copies of the database in files of their own: a backup, the safety
 * backup before a restore, a database that was deleted while sqlvigil still
 * held it. One way to make them, measured (docs/backups.md): SQLite's
 * online backup API from a connection that holds one read snapshot for the
 * whole copy, so a writer committing between steps does not make it start
 * over (unheld, small steps never finished under a writer committing every
 * 3 ms), stepping 1024 pages with a short pause so other work on the thread
 * may look in; then the header says rollback mode (the copy takes page 1's
 * "WAL" marks with it, and opening such a copy would create -wal and -shm
 * beside it), the file is synced, checked from a separate connection, and
 * hashed.
 *
 * These block: they run on the file thread (or, for the copy of a deleted
 * database, which only sqlvigil's own connection can still read, on the
 * database thread).
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "db.h"
#include "util.h"

typedef struct CopyResult {
        int result;          /* 0, DB_E_SQLITE, DB_E_CANCELLED; or a negative errno */
        uint64_t bytes;      /* the copy's size */
        int64_t pages, page_size;
        usec_t duration;     /* the copy, from the first step to the sync */
        usec_t snapshot;     /* how long the source's read snapshot was held */
        DbFault fault;
        bool dest_failed;    /* the failure was the copy's (its file system), not the source's */
        sqlite3 *src;        /* internal: the source connection */
        char error[512];
} CopyResult;

/* Copies src's "main" database into a new file dest (which must not exist),
 * synced. cancel: checked between steps (NULL: never). On failure dest is
 * removed. */
void copy_database(sqlite3 *src, const char *dest, const atomic_bool *cancel, CopyResult *ret);

/* Copies the bytes of the file open at fd into a new file dest (which must
 * not exist), synced: a restore's FILE, handed over by descriptor, becomes
 * sqlvigil's own private copy before anything reads it as a database. */
int copy_fd(int fd, const char *dest, uint64_t *ret_bytes, char *error, size_t error_size);

typedef struct CopyCheck {
        int result;          /* 0 when the check ran (passed or not), DB_E_SQLITE when it could not */
        bool passed;
        unsigned problems;
        char first[512];     /* the first problem, or why it could not run */
        int64_t pages, page_size;
        bool wal_header;     /* the file's header says WAL mode (bytes 18/19 = 2) */
        bool quick;          /* quick_check ran: asked for, or integrity_check could not */
        char skew[256];      /* why integrity_check could not run with this SQLite ("" when it could) */
        usec_t duration;
} CopyCheck;

/* Opens path read-only (never creating -wal or -shm beside it: a header in
 * WAL mode is refused) and runs integrity_check (quick: quick_check). When
 * integrity_check cannot run because the database uses what this SQLite
 * lacks (an index on a newer function: compat.h), quick_check runs
 * instead, which does not evaluate index expressions, and skew says why. */
void copy_check(const char *path, bool quick, CopyCheck *ret);

/* "file:PATH?mode=ro&immutable=1" with PATH percent-encoded as RFC 3986
 * wants (a '?', '#' or '%' in a path would otherwise end or change it):
 * a read-only connection that takes no locks and never looks for, or
 * creates, a -wal, -shm or journal beside the file. For files that nobody
 * else writes: sqlvigil's own copies. sqlite3_malloc'd; NULL when out of
 * memory. */
char *copy_immutable_uri(const char *path);

/* SHA-256 of the file at path, as 64 hex digits. 0 or a negative errno. */
int copy_sha256(const char *path, char ret_hex[65]);

/* Sets a database file's header to rollback-journal mode (bytes 18 and 19
 * to 1), in place. 0 or a negative errno. */
int copy_set_rollback_header(const char *path);


