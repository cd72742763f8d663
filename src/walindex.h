/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The WAL index (the -shm file), read the way another process sees it.
 *
 * Applications' commits do not fire sqlvigil's hooks, and the -wal file's
 * size says little (SQLite reuses the file from the start after a reset
 * without shrinking it). The WAL index header says exactly how many frames
 * the WAL holds (mxFrame) and how many are already copied into the database
 * (nBackfill); its read marks say where each reader's snapshot ends. The
 * layout is SQLite's documented file format (fileformat2.html, "The
 * WAL-Index Format"): two copies of a 48-byte header, then the checkpoint
 * info with nBackfill and five read marks, integers in native byte order.
 *
 * Which process holds which read lock is not in the file: SQLite takes POSIX
 * advisory locks on bytes 120..127 of the -shm file (byte 123 + i is read
 * mark i), and /proc/locks lists them with the holder's pid.
 *
 * Never open and close the -shm (or the database, or the -wal) in a process
 * that has the database open through SQLite: closing any descriptor of a
 * file drops every POSIX lock the process holds on it, SQLite's included,
 * and two writers then corrupt the database ("How To Corrupt An SQLite
 * Database File", section 2.2). So this module reads from one descriptor
 * that the caller opens once and closes only after sqlite3_close().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

#define WALINDEX_READERS 5

enum {
        WALINDEX_E_UNINITIALIZED = 1, /* no valid header (yet): no WAL, or being rebuilt */
};

typedef struct WalIndex {
        uint32_t mx_frame;   /* frames in the WAL (the last valid one) */
        uint32_t page_size;  /* bytes; a frame is page_size + 24 bytes */
        uint32_t salt;       /* changes whenever the WAL is reset to its start */
        uint32_t salt2;
        uint32_t n_backfill; /* frames already copied back into the database */
        uint32_t read_mark[WALINDEX_READERS];
} WalIndex;

/* Reads the header from the -shm file open at fd (see above).
 * 0, WALINDEX_E_UNINITIALIZED, or a negative errno. */
int walindex_read(int fd, WalIndex *ret);

/* Whether the -wal open at wal_fd is the WAL that the index open at shm_fd
 * describes: 1 when their salts agree or no frame is pending, 0 when frames
 * are pending and the -wal's header has other salts (content copied over
 * it in place: its frames are not the ones the index names, and a
 * checkpoint would copy them into the database), or a negative errno /
 * WALINDEX_E_UNINITIALIZED when it cannot tell. Takes no lock. Any thread. */
int walindex_wal_matches(int shm_fd, int wal_fd);

/* Frames committed to the WAL but not yet in the database. */
static inline uint32_t walindex_pending(const WalIndex *w) {
        return w->mx_frame > w->n_backfill ? w->mx_frame - w->n_backfill : 0;
}

/* Bytes of the -wal file that hold its valid frames: the 32-byte header
 * and mx_frame frames. Everything after that is left over from before the
 * last reset. */
static inline uint64_t walindex_valid_bytes(const WalIndex *w) {
        return 32 + (uint64_t)w->mx_frame * ((uint64_t)w->page_size + 24);
}

/* The lock bytes of the -shm (SQLite's wal.c and os_unix.c): POSIX record
 * locks, per process. */
enum {
        WALINDEX_LOCK_WRITE = 120,
        WALINDEX_LOCK_CHECKPOINT = 121,
        WALINDEX_LOCK_RECOVER = 122,
        WALINDEX_LOCK_READ0 = 123, /* read mark i is byte 123 + i */
        WALINDEX_LOCK_DMS = 128,   /* every attached connection holds it shared */
};

typedef struct WalLock {
        bool held;      /* another process holds a lock on the byte */
        bool exclusive; /* an exclusive (write) one */
        pid_t pid;      /* one holder (F_GETLK reports one of several) */
} WalLock;

typedef struct WalLocks {
        WalLock write, checkpoint, recover, read[WALINDEX_READERS], dms;
} WalLocks;

/* What other processes hold on the -shm's lock bytes, asked with
 * fcntl(F_GETLK), which takes nothing. Locks of this process are never
 * seen (POSIX locks do not conflict within a process). Any thread. 0 or a
 * negative errno. */
int walindex_locks(int fd, WalLocks *ret);

/* The same for one lock byte (WALINDEX_LOCK_*). */
int walindex_lock(int fd, int byte, WalLock *ret);

/* The name of pid from /proc/PID/comm, "?" when it cannot be read. */
void walindex_comm(pid_t pid, char *buf, size_t size);

typedef struct WalTrim {
        uint64_t before, after; /* -wal file sizes, bytes */
        usec_t held;            /* how long the write lock was held */
        bool busy;              /* another process had the write lock: nothing done */
} WalTrim;

/*
 * Shortens the -wal file open at wal_fd by at most max_bytes, down to
 * target but never into its valid frames, while holding the WAL write lock
 * (byte 120 of the -shm open read-write at shm_fd) so that no writer can
 * append meanwhile: what SQLite's own journal_size_limit does, in pieces
 * small enough to keep each hold short (an ftruncate() frees about 3 MB a
 * millisecond here, so 80 MB at once held the lock 24 ms). Only safe while
 * no connection of this process writes (the caller runs it on the database
 * thread between statements, with no other writing connection open), and
 * only after the WAL was reset: the bytes past its valid frames are then
 * old frames no reader or recovery uses (their salts no longer match).
 * Returns 0 (see ret->busy) or a negative errno.
 */
int walindex_trim(int shm_fd, int wal_fd, uint64_t target, uint64_t max_bytes, WalTrim *ret);

typedef struct WalReader {
        pid_t pid;
        int slot;       /* read mark index, 0..4; 0 reads the database file only */
        uint32_t mark;  /* its snapshot ends at this frame */
        bool blocks_backfill; /* its snapshot is older than the WAL's end */
        char comm[32];  /* /proc/PID/comm, "?" when not visible to us */
} WalReader;

/*
 * Finds processes holding read locks on the -shm file identified by dev/ino,
 * from locks_text in /proc/locks format (NULL: read /proc/locks), leaving
 * out pid self. Fills up to max entries, blockers of backfill first, and sets
 * *ret_n to the number filled in. Returns 0 or a negative errno.
 */
int walindex_readers(const char *locks_text, dev_t dev, ino_t ino, const WalIndex *wi, pid_t self,
                     WalReader *out, size_t max, size_t *ret_n);

/* The processes other than self that hold any lock on the file dev/ino
 * (from locks_text in /proc/locks format; NULL: read /proc/locks): up to
 * max of them, each once, in *ret_n. 0 or a negative errno. */
int walindex_lock_holders(const char *locks_text, dev_t dev, ino_t ino, pid_t self, pid_t *out, size_t max,
                          size_t *ret_n);

/* "pid 1234 (python3), reading frame 12 of 480; pid 99 (?)" */
void walindex_format_readers(const WalReader *r, size_t n, uint32_t mx_frame, char *buf, size_t size);
