/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The database's three files - the database, its -wal and its -shm - as
 * SQLite has them open, and as their paths name them now.
 *
 * SQLite opens the -wal and -shm when the connection first reads. sqlvigil
 * finds those descriptors in /proc/self/fd (by device and inode) and keeps
 * a duplicate of each: the -shm's for reading the WAL index and watching
 * its locks, the -wal's for shortening the file. A duplicate names the very
 * file SQLite uses, whatever has happened to the paths since.
 *
 * Never close them while the connection is open: closing any descriptor of
 * a file drops every POSIX lock this process holds on it, SQLite's included
 * (walindex.h). dbfiles_close() comes after sqlite3_close().
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

typedef struct DbFiles {
        char *db_path, *wal_path, *shm_path;
        FileId db, wal, shm;  /* as SQLite has them open */
        bool have_wal, have_shm;
        int wal_fd, shm_fd;   /* duplicates of SQLite's descriptors; -1 when not found */
} DbFiles;

/* Sets up f for the database at db_path (nothing is opened). 0 or -ENOMEM. */
int dbfiles_init(DbFiles *f, const char *db_path, FileId db);

/* Finds SQLite's descriptors of the -wal and -shm in /proc/self/fd (call
 * after the connection has read: then they are open) and duplicates them.
 * Returns 0 when both were found, -ENOENT when one is missing (the other
 * is kept), or another negative errno. Loop thread, before the database
 * thread starts. */
int dbfiles_attach(DbFiles *f);

/* Closes the duplicates and frees the paths: only after sqlite3_close(). */
void dbfiles_done(DbFiles *f);
