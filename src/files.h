/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The database's three files - the database, its -wal and its -shm - as
 * SQLite has them open, and as their paths name them now; and sqlvigil's
 * own mark beside them.
 *
 * SQLite opens the -wal and -shm when the connection first reads. sqlvigil
 * finds those descriptors in /proc/self/fd (by device and inode) and keeps
 * a duplicate of each: the -shm's for reading the WAL index and watching
 * its locks, the -wal's for shortening the file. A duplicate names the very
 * file SQLite uses, whatever has happened to the paths since.
 *
 * Never close them while the connection is open: closing any descriptor of
 * a file drops every POSIX lock this process holds on it, SQLite's included
 * (walindex.h). dbfiles_done() comes after sqlite3_close().
 *
 * A WAL names no database: SQLite takes whatever -wal and -shm sit beside
 * the name it opens. The mark, DB-sqlvigil, records which database file the
 * -wal and -shm at those names belong to (device and inode of each), so
 * that a -wal left beside another file (a database renamed over, a copy
 * put in its place) is recognised at the next start and set aside instead
 * of being replayed into the wrong file. It is rewritten when sqlvigil
 * starts and when it finds its files displaced (then it says "stale" first
 * of all, so a kill at any later moment still leaves the evidence), and a
 * few bytes of it are rewritten every health round: a write that fails says
 * the file system went read-only, however it did.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

typedef struct DbFiles {
        char *db_path, *wal_path, *shm_path, *dir, *mark_path;
        FileId db, wal, shm, dir_id; /* as opened */
        bool have_wal, have_shm;
        int db_fd, wal_fd, shm_fd; /* duplicates of SQLite's descriptors; -1 when not found */
        int mark_fd;          /* the mark, for the write probe; -1 when not written */
        uint64_t probe_count;
} DbFiles;

/* ---- Descriptors from outside ------------------------------------------------
 *
 * A descriptor another process hands sqlvigil (a restore's FILE, over the
 * control socket) may name the database, its -wal or its -shm: a client
 * can open them as well as anyone. Closing it would drop every POSIX lock
 * this process holds on that file, SQLite's included, and the next
 * application to close its connection would take sqlvigil for gone,
 * checkpoint, and delete the -wal and -shm under it. files_close() closes
 * any other descriptor, and keeps those until files_release_parked(), after
 * sqlite3_close(). Any thread. */
void files_close(int fd);
void files_release_parked(void);

/* Sets up f for the database at db_path, opened as db (nothing is opened).
 * 0 or -ENOMEM. */
int dbfiles_init(DbFiles *f, const char *db_path, FileId db);

/* Finds SQLite's descriptors of the -wal and -shm in /proc/self/fd (call
 * after the connection has read: then they are open) and duplicates them.
 * Returns 0 when both were found, -ENOENT when one is missing (the other
 * is kept), or another negative errno. Loop thread, before the database
 * thread starts. */
int dbfiles_attach(DbFiles *f);

/* Closes the duplicates and the mark and frees the paths: only after
 * sqlite3_close(). */
void dbfiles_done(DbFiles *f);

/* ---- What happened to the files -------------------------------------------- */

typedef enum FileState {
        FILE_STATE_OK,         /* the path names the file that is open */
        FILE_STATE_GONE,       /* nothing at the path; ours still has a name elsewhere */
        FILE_STATE_DELETED,    /* nothing at the path, and ours has no name left (only open descriptors) */
        FILE_STATE_REPLACED,   /* another file has the path (renamed or copied over it) */
} FileState;

extern const char *const file_state_names[4];

typedef struct FilesCheck {
        FileState db, wal, shm;
        bool dir_moved;        /* the database's directory is not the one it was */
        FileId db_now;         /* what the path names now (0:0 when nothing) */
        int stat_errno;        /* stat() of the database path failed with this (not ENOENT) */
} FilesCheck;

/* Looks at the paths and at the open files (stat(), fstat() of the
 * duplicates). Cheap: no open, no read. Any thread. */
void dbfiles_check(const DbFiles *f, FilesCheck *ret);

/* Whether anything is displaced. */
bool files_check_bad(const FilesCheck *c);

/* One sentence for the journal and STATUS=: which file, what happened. */
void files_check_describe(const FilesCheck *c, const DbFiles *f, char *buf, size_t size);

/* ---- The mark ----------------------------------------------------------------- */

typedef struct Mark {
        bool valid;
        FileId db, wal, shm;
        uint64_t db_birth;     /* the database file's birth time (statx), in ns; 0 when unknown */
        bool stale;            /* the -wal and -shm named do not belong to the file at the path */
        pid_t pid;
} Mark;

/* Reads DB-sqlvigil. 0 (ret->valid tells whether there was one), or a
 * negative errno for a mark that exists but cannot be read. */
int mark_read(const char *mark_path, Mark *ret);

/* Writes the mark for f's files (stale: they no longer belong to the file
 * at the path) whole, under a temporary name, synced, renamed, the
 * directory synced; keeps it open for the write probe. 0 or a negative
 * errno. */
int dbfiles_write_mark(DbFiles *f, bool stale);

/* The write probe: rewrites the mark's counter in place (no fsync).
 * 0, or the negative errno of the failed write (-EROFS, -EIO, -ENOSPC). */
int dbfiles_probe_write(DbFiles *f);

/* At start, before SQLite opens the database: which of the -wal and -shm
 * at the paths the mark says belong to another database file (db_now:
 * what the database path names now, 0:0 when nothing). Pure. */
typedef struct StalePlan {
        bool wal, shm;
} StalePlan;

void files_stale_plan(const Mark *mark, FileId db_now, FileId wal_now, FileId shm_now, StalePlan *ret);

/* Whether process pid has the file id open under a name in dir (its
 * descriptor's link, "(deleted)" or not): an inode number alone may have
 * been reused by an unrelated file since. 1 yes, 0 no, or a negative errno
 * when /proc/PID/fd cannot be read (another user's process): then nobody
 * knows. */
int files_pid_has_open_in(pid_t pid, FileId id, const char *dir);

/* Moves the file at path out of SQLite's way, under a name that says so:
 * PATH.stale-YYYYmmddTHHMMSSZ (never replacing anything). *ret_new gets
 * the new path (malloc'd). 0 or a negative errno. */
int files_set_aside(const char *path, const char *why, char **ret_new);

/* In dir, the name of the file with identity id, if any (malloc'd into
 * *ret_name); birth, when not 0, must be its birth time too: the inode
 * number of a file deleted since is soon another file's. 0, -ENOENT, or
 * another negative errno. */
int files_find_by_id(const char *dir, FileId id, uint64_t birth, char **ret_name);

/* The birth time (statx STATX_BTIME) of the file at path relative to dirfd
 * (AT_EMPTY_PATH with "": of dirfd itself), in ns; 0 when the file system
 * does not keep one or the call fails. */
uint64_t files_birth(int dirfd, const char *path);

/* Removes what a killed sqlvigil left unfinished beside db_path: the
 * partial copy of a deleted database (DB.deleted-TIME.tmp), a mark not yet
 * renamed into place (DB-sqlvigil.PID.tmp), a fence not yet in place
 * (DB-shm.fence-PID); only names that sqlvigil makes. Their names go into removed ("; "-separated). Returns how many,
 * or a negative errno. */
int files_remove_unfinished(const char *db_path, char *removed, size_t size);

/* Renames from to to, but never over an existing file. */
int files_rename_noreplace(const char *from, const char *to);

/* The fence: a new empty file at shm_path, with an exclusive lock on the
 * byte every SQLite connection needs to attach to a WAL index (128): any
 * program that opens the database now fails (SQLITE_PROTOCOL, after about
 * 10 s of SQLite's own retries) instead of starting a second WAL beside the
 * one still in use. Only if nothing is at the path. *ret_fd: the file,
 * *ret_id its identity. 0, -EEXIST, or another negative errno. */
int files_fence(const char *shm_path, int *ret_fd, FileId *ret_id);

/* Removes the fence, if the path still names it. */
void files_unfence(const char *shm_path, int fd, FileId id);

/* Whether another process is attached to the WAL index open at shm_fd (it
 * holds the DMS byte, as every connection that has read does): *ret_pid
 * one of them, FILES_PID_UNSEEN when the holder is in another PID
 * namespace (F_GETLK then says pid 0), 0 when none. Takes no lock. 0 or a
 * negative errno. */
#define FILES_PID_UNSEEN ((pid_t)INT32_MAX)
int files_other_user(int shm_fd, pid_t *ret_pid);
