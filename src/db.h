/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * sqlvigil's one connection to the supervised database, and every operation
 * it performs on it. These functions block: after start-up they run only on
 * the worker thread (worker.c), never on the event loop. Each operation is
 * given the longest time it may wait for a lock; the busy handler enforces it
 * and gives up at once when the operation is cancelled, so a wait is always
 * bounded. No operation leaves a transaction open: an idle read transaction
 * would pin the WAL and starve every checkpoint.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "config.h"
#include "pragmas.h"
#include "task.h"
#include "util.h"

enum {
        DB_E_MISSING = 1,  /* the file does not exist and creating it was not asked for */
        DB_E_SQLITE,       /* SQLite reported an error; Db.error has the text */
        DB_E_BUSY,         /* the lock could not be had within the allowed wait */
        DB_E_CANCELLED,    /* cancelled (stop requested) before it finished */
        DB_E_NOT_WAL,      /* journal_mode could not be switched to wal */
};

typedef enum PragmaOutcome {
        PRAGMA_UNREQUESTED, /* not in the configuration; effective value reported only */
        PRAGMA_APPLIED,     /* requested and read back equal */
        PRAGMA_DIFFERS,     /* per-connection: SQLite read back another value (a cap) */
        PRAGMA_NEEDS_VACUUM,/* persistent: the file keeps its value until a full VACUUM */
        PRAGMA_FIXED,       /* persistent: the file keeps it (page_size in WAL mode) */
        PRAGMA_APPLICATION_ONLY, /* scope application: requested, not applied; only the applications can */
} PragmaOutcome;

typedef struct PragmaStatus {
        PragmaOutcome outcome;
        bool requested;
        int64_t requested_value;
        bool known;          /* SQLite's answer was a value of this pragma */
        int64_t value;       /* that value, when known */
        char effective[32];  /* as the configuration spells it; SQLite's text when not known;
                              * "" for scope application (sqlvigil does not know the applications') */
} PragmaStatus;

/* What db_apply_pragmas() found, for the event loop's copy. */
typedef struct DbPragmas {
        PragmaStatus status[_PRAGMA_MAX];
        int64_t page_size;
} DbPragmas;

/* The codes of a failure: SQLite's extended result code and the system's
 * errno behind it (0 when SQLite did not say; for some I/O errors it does
 * not, see sqlite3_system_errno()). */
typedef struct DbFault {
        int code;
        int sys_errno;
        bool skew;     /* SQLite's message says it lacks what the database uses (compat.h): not damage */
} DbFault;

/* sqlvigil's connection: opaque. Created on the loop thread at start-up,
 * used only by the database thread afterwards; the functions marked "any
 * thread" are the exceptions. */
typedef struct Db Db;

/* Opens path read-write (creating it only if create). DB_E_MISSING when it
 * does not exist; DB_E_SQLITE when it cannot be opened or is no database. */
int db_open(const char *path, bool create, Db **ret, char *error, size_t error_size);
Db *db_free(Db *db);
static inline void db_freep(Db **db) {
        db_free(*db);
}

/* The path it was opened with, and the identity (device, inode) of the file
 * it opened. Fixed at open; any thread. */
const char *db_path(const Db *db);
void db_identity(const Db *db, dev_t *ret_dev, ino_t *ret_ino);

/* The codes of the connection's latest failure, which are then forgotten
 * ({0, 0} when there was none since the last call). Database thread: a job
 * calls it after an operation failed, to classify the failure (a storage
 * fault: I/O error, read-only, corruption, a full disk). */
DbFault db_take_fault(Db *db);

/* Asks the running job to stop, if it may (db_set_cancellable()), and every
 * later one. Any thread. */
void db_cancel(Db *db);

/* The database thread's last sign of life (CLOCK_MONOTONIC): SQLite's
 * progress and busy handlers, job boundaries. Any thread. */
usec_t db_heartbeat(const Db *db);

/* Applies the requested pragmas and reads every one back into *ret.
 * max_wait bounds lock waits (journal_mode=wal needs a moment alone).
 * 0; DB_E_NOT_WAL when the file could not be put in WAL mode; DB_E_BUSY,
 * DB_E_SQLITE; the reason in error. */
int db_apply_pragmas(Db *db, const PragmaRequest requests[_PRAGMA_MAX], usec_t max_wait, DbPragmas *ret,
                     char *error, size_t error_size);

/* The cheap part of the health check. Cost does not depend on the database's size. */
typedef struct DbProbe {
        int result;          /* 0, DB_E_SQLITE, DB_E_CANCELLED */
        int sqlite_code;     /* extended result code of the failure */
        char error[256];
        bool skew;           /* the error says this SQLite cannot read the schema (compat.h), not damage */
        bool wal;            /* journal_mode still wal */
        char journal_mode[16];
        int64_t page_size, page_count, freelist_count;
        usec_t duration;     /* what it cost */
} DbProbe;

/* One read on the connection (page 1, journal_mode, page and freelist
 * counts, in one read transaction): a read lock only. */
void db_probe(Db *db, DbProbe *ret);

typedef struct DbCheckpoint {
        int result;          /* 0, DB_E_BUSY (did what it could), DB_E_SQLITE, DB_E_CANCELLED */
        int log_frames;      /* frames in the WAL, -1 if unknown */
        int checkpointed;    /* frames copied back into the database, -1 if unknown */
        usec_t ckpt_lock_wait; /* of duration: waiting, holding nothing, while another
                                * connection held the checkpoint lock */
        usec_t duration;
        char error[256];
} DbCheckpoint;

void db_checkpoint(Db *db, CheckpointMode mode, usec_t max_wait, DbCheckpoint *ret);

typedef struct DbCounts {
        int result;          /* 0, DB_E_BUSY, DB_E_SQLITE, DB_E_CANCELLED */
        int64_t freelist_count, page_count, page_size;
        char error[256];
} DbCounts;

/* The freelist and page counts, in one read transaction. */
void db_counts(Db *db, DbCounts *ret);

typedef struct DbVacuumStep {
        int result;          /* 0, DB_E_BUSY (no lock within max_wait), DB_E_SQLITE, DB_E_CANCELLED */
        uint32_t freed;      /* pages freed: one per SQLITE_ROW */
        usec_t lock_held;    /* from getting the write lock to the commit */
        int64_t freelist_count, page_count; /* afterwards */
        char error[256];
} DbVacuumStep;

/* One incremental vacuum step in its own transaction: at most pages pages,
 * and no more stepping once it has held the write lock for hold (then the
 * pages freed so far are committed). */
void db_vacuum_step(Db *db, uint32_t pages, usec_t max_wait, usec_t hold, DbVacuumStep *ret);

typedef struct DbConvert {
        int result;        /* 0, DB_E_BUSY, DB_E_SQLITE, DB_E_CANCELLED */
        int64_t page_count_before, freelist_before;
        int64_t page_count_after, freelist_after;
        bool incremental;    /* auto_vacuum reads back incremental afterwards */
        usec_t duration;
        char error[256];
} DbConvert;

/* The one-time full VACUUM that switches auto_vacuum to incremental. */
void db_convert(Db *db, usec_t max_wait, DbConvert *ret);

typedef struct DbCheck {
        int result;          /* 0 when it ran (passed or not), DB_E_SQLITE, DB_E_CANCELLED */
        bool passed;
        unsigned problems;   /* rows reported, at most 100 */
        char first[512];     /* the first problem */
        usec_t duration;
        char error[256];
} DbCheck;

void db_check(Db *db, bool integrity, DbCheck *ret);

/* Steps a prepared PRAGMA quick_check or integrity_check to its end: a
 * single "ok" row passes; every other row is a problem, counted in
 * *problems, the first kept in first (on one line). Returns the last
 * sqlite3_step() code (SQLITE_DONE when it ran to the end). The caller
 * sets *passed false and *problems 0 before. Any thread, any connection. */
int db_check_rows(sqlite3_stmt *s, bool *passed, unsigned *problems, char *first, size_t first_size);

/* One row that PRAGMA foreign_key_check reports: table's row rowid refers,
 * through its foreign key fkid, to a row of parent that does not exist. */
typedef struct DbFkViolation {
        char table[128];
        bool has_rowid;      /* false for a WITHOUT ROWID table */
        int64_t rowid;
        char parent[128];
        int fkid;
        char key[192];       /* "pid -> parent(id)": the columns of foreign key fkid; "" unknown */
} DbFkViolation;

#define DB_FK_FIRST 5    /* violations described one by one */
#define DB_FK_TABLES 8   /* tables counted by name */

typedef struct DbFkCheck {
        int result;          /* 0 when it ran (found something or not), DB_E_SQLITE, DB_E_CANCELLED */
        uint64_t violations; /* rows whose parent row is missing, all of them counted */
        DbFkViolation first[DB_FK_FIRST];
        size_t n_first;
        struct {
                char table[128];
                uint64_t count;
        } tables[DB_FK_TABLES]; /* violations by table, in schema order */
        size_t n_tables;
        unsigned more_tables;   /* tables with violations beyond those */
        unsigned mismatches;    /* tables whose foreign keys cannot be checked: the parent key
                                 * is not a PRIMARY KEY or UNIQUE (a schema error) */
        char mismatch[256];     /* SQLite's message for the first of them */
        usec_t duration;
        char error[256];
} DbFkCheck;

/*
 * PRAGMA foreign_key_check over the whole database: in one read transaction
 * (a read snapshot, no write lock: writers go on), every violation counted,
 * the first DB_FK_FIRST described. A table whose foreign key names a parent
 * key that is not unique makes SQLite refuse the whole check ("foreign key
 * mismatch"); then each table is checked on its own and the mismatched ones
 * are counted. Cancellable. Database thread.
 */
void db_foreign_key_check(Db *db, DbFkCheck *ret);

typedef struct DbAnalyze {
        int result;
        bool sqlite_optimize;   /* SQLite >= 3.46 chose the tables (PRAGMA optimize mask 0x10000) */
        unsigned considered, analyzed;
        char tables[256];       /* names of the tables analyzed, comma-separated, truncated */
        usec_t duration;
        LockHolds holds;        /* each table's ANALYZE holds the write lock once */
        char error[256];
} DbAnalyze;

void db_analyze(Db *db, AnalyzeMode mode, uint64_t analysis_limit, usec_t max_wait, DbAnalyze *ret);

/* A copy of the database this connection has open into the new file dest
 * (copy.h): a database deleted while sqlvigil still held it, saved. */
typedef struct CopyResult CopyResult;
void db_save_copy(Db *db, const char *dest, CopyResult *ret);

/* PRAGMA data_version of this connection: a different value from one call
 * to the next says that another connection committed in between. Database
 * thread. 0, or DB_E_BUSY / DB_E_SQLITE. */
int db_data_version(Db *db, int64_t *ret);

/* Puts the content of the database file at src_path (sqlvigil's own
 * checked copy, in rollback-journal mode, of the live database's page size)
 * into the live database, through SQLite's online backup API: one write
 * transaction, so every other connection sees the old content or the new,
 * never a mix, and a crash leaves the old. The write lock is held for the
 * whole copy (about 1 s per 300 MB here); waits at most max_wait for it.
 * Database thread. */
typedef struct DbRestore {
        int result;          /* 0, DB_E_BUSY, DB_E_SQLITE */
        int64_t pages;       /* pages copied */
        usec_t held;         /* the write lock, from taking it to the commit */
        usec_t duration;
        DbFault fault;
        char error[512];
} DbRestore;

void db_restore(Db *db, const char *src_path, usec_t max_wait, DbRestore *ret);

/* The database at path as a newly started application sees it: a new
 * read-only connection (of this process, which never checkpoints on close)
 * runs PRAGMA quick_check. A database copied over in place under a live WAL
 * shows here ("database disk image is malformed") while sqlvigil's own
 * connection still answers from its cache. Any thread. */
void db_fresh_look(const char *path, DbCheck *ret);

/* What this SQLite cannot do with the database (compat.h), and which
 * SQLite last wrote its header. Prepares statements, never steps them. */
typedef struct CompatReport CompatReport;
void db_compat(Db *db, CompatReport *ret);

/* Size of the -wal file in bytes, 0 if there is none. */
uint64_t db_wal_bytes(const Db *db);

/* What a hold of the write lock cost. */
typedef struct DbHold {
        int result;          /* 0, DB_E_BUSY, DB_E_SQLITE, DB_E_CANCELLED */
        usec_t held;         /* from getting the write lock to letting go */
        char error[256];
} DbHold;

/* A commit that changes nothing (user_version written back as it is): the
 * write that makes SQLite start the WAL over from its beginning, when every
 * frame is in the database and no reader uses the WAL, which a PASSIVE
 * checkpoint then cannot do. Waits at most max_wait for the write lock;
 * holds it for one page. */
void db_wal_restart(Db *db, usec_t max_wait, DbHold *ret);

/* Every hold of the write lock (a checkpoint of a stronger mode, a vacuum
 * step, db_wal_restart()) first waits until the writers the previous hold
 * made wait have had their turn: a writer in sqlite3_busy_timeout() sleeps
 * in growing quanta and would otherwise find the lock taken again when it
 * looks. db_wait_quiet() waits for that; db_note_hold() records a hold taken
 * outside this connection (walindex_trim()). Database thread. */
void db_wait_quiet(Db *db);
void db_note_hold(Db *db, usec_t held);

/* Whether what runs next may be cancelled by Db.cancel; set by the worker
 * before each job. The stop checkpoint is the one job that may not. */
void db_set_cancellable(Db *db, bool cancellable);
