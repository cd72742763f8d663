/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget.h"
#include "compat.h"
#include "copy.h"
#include "db.h"

struct Db {
        sqlite3 *sqlite;
        char *path;
        char *wal_path;
        dev_t dev; /* identity of the file we opened */
        ino_t ino;

        /* No vacuum step starts before this (CLOCK_MONOTONIC), so that
         * writers stalled by a checkpoint that held the writer lock get in
         * first (see db_checkpoint()). */
        usec_t quiet_until;

        /* Set per operation, read by the busy handler. */
        usec_t busy_deadline;
        usec_t busy_slept; /* time the running operation spent waiting for locks */
        bool cancellable;

        /* Written by any thread (db_cancel()), read by the database thread. */
        atomic_bool cancel;
        /* Written by the database thread whenever it shows progress (progress
         * and busy handlers, job boundaries); read by the watchdog logic. */
        _Atomic usec_t heartbeat;

        sqlite3_stmt *stmt_probe; /* cached: the health probe runs often */
        sqlite3_stmt *stmt_counts;

        int64_t page_size;

        /* Row estimates at sqlvigil's last ANALYZE of each table (optimize
         * mode on SQLite < 3.46; see db_analyze()). */
        struct {
                char table[64];
                int64_t rows;
        } analyzed[64];
        size_t n_analyzed;

        char error[512]; /* the last failure's text, for the operation's result */
        DbFault fault;   /* and its codes */
};

/* How often (in virtual machine instructions) SQLite calls our progress
 * handler. At 1000 the handler runs every few microseconds of work: it costs a
 * clock read (~20 ns through the vDSO) and lets a cancelled statement stop
 * within microseconds. */
#define PROGRESS_OPS 1000

/* The probe's reads in one statement, so they share one read transaction:
 * every separate statement would take and drop the WAL read lock again
 * (four fcntl() calls each). Reading sqlite_schema touches page 1 (a
 * database that no longer reads fails here); the rest are header fields. */
#define PROBE_SQL                                                                                  \
        "SELECT (SELECT 1 FROM sqlite_schema LIMIT 1), (SELECT journal_mode FROM pragma_journal_mode), " \
        "(SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count)"

/* The counts a vacuum step reads after itself, in one statement for the
 * same reason. */
#define COUNTS_SQL                                                                                 \
        "SELECT (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_count FROM pragma_page_count)"

static void set_error(Db *db, char *buf, size_t size, int rc, const char *what) {
        sqlite3 *s = db ? db->sqlite : NULL;
        const char *msg = s ? sqlite3_errmsg(s) : sqlite3_errstr(rc);
        int sys = s ? sqlite3_system_errno(s) : 0;

        if (db)
                db->fault = (DbFault){ .code = rc, .sys_errno = sys > 0 ? sys : 0,
                                       .skew = ((rc & 0xff) == SQLITE_ERROR || (rc & 0xff) == SQLITE_CORRUPT) &&
                                               compat_error_is_skew(msg) };

        /* SQLite's text for an I/O failure ("unable to open database file")
         * does not say why; the operating system's error does. */
        if (sys > 0 && ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_IOERR ||
                        (rc & 0xff) == SQLITE_READONLY || (rc & 0xff) == SQLITE_FULL))
                bufprintf(buf, size, "%s: %s: %s (SQLite code %d)%s", what, msg, strerror(sys), rc,
                          sys == EROFS || sys == EACCES || sys == EPERM
                                  ? "; SQLite needs to write the database's directory too (for -wal and -shm)"
                                  : "");
        else
                bufprintf(buf, size, "%s: %s (%s, code %d)", what, msg, sqlite3_errstr(rc), rc);
}

/* Whether the running job may stop and was asked to. */
static bool cancelled(const Db *db) {
        return db->cancellable && atomic_load(&db->cancel);
}

/*
 * SQLite's own busy handler (sqlite3_busy_timeout) would sleep in the calling
 * thread for up to busy_timeout ms. Ours bounds every wait by the running
 * operation's deadline, gives up at once when the operation is cancelled, and
 * sleeps at most 10 ms at a time so that cancellation is prompt. The first
 * sleeps are short (1, 2, 5 ms) because most lock holders are application
 * transactions of a few milliseconds.
 */
static int busy_handler(void *userdata, int count) {
        static const usec_t delays[] = { 1000, 2000, 5000, 10000 };
        Db *db = userdata;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        usec_t delay;

        atomic_store(&db->heartbeat, now);
        if (cancelled(db))
                return 0;
        if (now >= db->busy_deadline)
                return 0;
        delay = delays[MIN((size_t)count, ELEMENTSOF(delays) - 1)];
        delay = MIN(delay, db->busy_deadline - now);
        sleep_usec(delay);
        db->busy_slept += delay;
        return 1;
}

/*
 * Cancellation of running statements. sqlite3_interrupt() from the event loop
 * thread could race with the start of the next job (the stop checkpoint, which
 * must not be interrupted); the progress handler runs on the worker thread and
 * knows whether the current job may be cancelled, so it is the one place that
 * decides. It doubles as the worker's heartbeat for the watchdog.
 */
static int progress_handler(void *userdata) {
        Db *db = userdata;

        atomic_store(&db->heartbeat, now_usec(CLOCK_MONOTONIC));
        return cancelled(db);
}

void db_set_cancellable(Db *db, bool cancellable) {
        db->cancellable = cancellable;
        atomic_store(&db->heartbeat, now_usec(CLOCK_MONOTONIC));
}

DbFault db_take_fault(Db *db) {
        DbFault f = db->fault;

        db->fault = (DbFault){ 0 };
        return f;
}

void db_cancel(Db *db) {
        atomic_store(&db->cancel, true);
}

usec_t db_heartbeat(const Db *db) {
        return atomic_load(&db->heartbeat);
}

const char *db_path(const Db *db) {
        return db->path;
}

void db_identity(const Db *db, dev_t *ret_dev, ino_t *ret_ino) {
        *ret_dev = db->dev;
        *ret_ino = db->ino;
}

/* What a failed statement's code means to the caller. A lock wait that
 * ended because the job was cancelled (the busy handler gives up at once
 * then) is a cancellation, not a busy database: the stop cut it short. */
static int failure_of(const Db *db, int rc) {
        if ((rc & 0xff) == SQLITE_INTERRUPT || ((rc & 0xff) == SQLITE_BUSY && cancelled(db)))
                return DB_E_CANCELLED;
        return (rc & 0xff) == SQLITE_BUSY ? DB_E_BUSY : DB_E_SQLITE;
}

/* Bounds the lock waits of what follows. */
static void set_wait(Db *db, usec_t max_wait) {
        usec_t now = now_usec(CLOCK_MONOTONIC);

        db->busy_deadline = max_wait > USEC_INFINITY - now ? USEC_INFINITY : now + max_wait;
        db->busy_slept = 0;
}

/* Runs a statement to completion, ignoring rows. */
static int exec_sql(Db *db, const char *sql) {
        sqlite3_stmt *stmt;
        int rc;

        rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK) {
                set_error(db, db->error, sizeof(db->error), rc, sql);
                return DB_E_SQLITE;
        }
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
                ;
        if (rc != SQLITE_DONE)
                set_error(db, db->error, sizeof(db->error), rc, sql);
        sqlite3_finalize(stmt);
        if (rc == SQLITE_DONE)
                return 0;
        return failure_of(db, rc);
}

/* Runs a one-row query and copies the first column as text. */
static int query_text(Db *db, const char *sql, char *out, size_t out_size) {
        sqlite3_stmt *stmt;
        int rc;

        rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK) {
                set_error(db, db->error, sizeof(db->error), rc, sql);
                return DB_E_SQLITE;
        }
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                const unsigned char *t = sqlite3_column_text(stmt, 0);

                bufprintf(out, out_size, "%s", t ? (const char *)t : "");
                rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
                out[0] = '\0';
                rc = SQLITE_OK;
        } else {
                set_error(db, db->error, sizeof(db->error), rc, sql);
        }
        sqlite3_finalize(stmt);
        if (rc == SQLITE_OK)
                return 0;
        return failure_of(db, rc);
}

static int query_int(Db *db, const char *sql, int64_t *ret) {
        char buf[64];
        int r;

        r = query_text(db, sql, buf, sizeof(buf));
        if (r != 0)
                return r;
        if (sscanf(buf, "%" SCNd64, ret) != 1) {
                bufprintf(db->error, sizeof(db->error), "%s: unexpected answer '%s'", sql, buf);
                return DB_E_SQLITE;
        }
        return 0;
}

static int prepare_cached(Db *db, const char *sql, sqlite3_stmt **ret) {
        int rc;

        /* SQLITE_PREPARE_PERSISTENT: these live as long as the connection. */
        rc = sqlite3_prepare_v3(db->sqlite, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL);
        if (rc != SQLITE_OK) {
                set_error(db, db->error, sizeof(db->error), rc, sql);
                return DB_E_SQLITE;
        }
        return 0;
}

Db *db_free(Db *db) {
        if (!db)
                return NULL;
        sqlite3_finalize(db->stmt_probe);
        sqlite3_finalize(db->stmt_counts);
        /* sqlite3_close() fails only with unfinalized statements, which we
         * just finalized; close_v2 would hide such a bug as a leak instead. */
        if (db->sqlite && sqlite3_close(db->sqlite) != SQLITE_OK)
                abort();
        free(db->path);
        free(db->wal_path);
        free(db);
        return NULL;
}

/* Header bytes 96-99 (SQLITE_VERSION_NUMBER of the last writer of page
 * 1), read through SQLite's own file handle: a descriptor of our own would
 * drop SQLite's locks when closed. 0 when unknown. */
static uint32_t file_version(Db *db) {
        sqlite3_file *f = NULL;
        unsigned char h[100];

        if (sqlite3_file_control(db->sqlite, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
            !f->pMethods || f->pMethods->xRead(f, h, sizeof(h), 0) != SQLITE_OK)
                return 0;
        return (uint32_t)h[96] << 24 | (uint32_t)h[97] << 16 | (uint32_t)h[98] << 8 | h[99];
}

void db_compat(Db *db, CompatReport *r) {
        /* Preparing reads the schema: a read lock at most, which only a
         * WAL recovery makes wait. */
        set_wait(db, USEC_PER_SEC);
        (void)compat_probe(db->sqlite, r);
        r->file_version = file_version(db);
}

int db_open(const char *path, bool create, Db **ret, char *error, size_t error_size) {
        _cleanup_(db_freep) Db *db = NULL;
        struct stat st;
        bool exists = true;
        int rc, r;

        /* Look before opening: sqlite3_open_v2() without SQLITE_OPEN_CREATE
         * would also refuse, but this way the message is precise and nothing
         * (no -wal, no -shm) is created next to a file that is not there. */
        if (stat(path, &st) < 0) {
                if (errno != ENOENT) {
                        r = -errno;
                        bufprintf(error, error_size, "cannot access database %s: %s", path, strerror(errno));
                        return r;
                }
                if (!create) {
                        bufprintf(error, error_size,
                                  "database %s does not exist (set 'create = yes' in [database], or pass --create, "
                                  "to create it)",
                                  path);
                        return DB_E_MISSING;
                }
                exists = false;
        } else if (!S_ISREG(st.st_mode)) {
                bufprintf(error, error_size, "database %s is not a regular file", path);
                return -EINVAL;
        }

        /* SQLite would quietly open a file it cannot write read-only, and a
         * directory it cannot write makes WAL mode fail later with "attempt
         * to write a readonly database". Say what is wrong before that. */
        {
                char dir[4096];

                bufprintf(dir, sizeof(dir), "%s", path);
                if (faccessat(AT_FDCWD, dirname(dir), W_OK | X_OK, AT_EACCESS) < 0) {
                        r = -errno;
                        bufprintf(error, error_size,
                                  "cannot write the directory of %s as uid %u: %s (SQLite creates the -wal and -shm "
                                  "files there; under systemd, see ReadWritePaths=)",
                                  path, (unsigned)geteuid(), strerror(errno));
                        return r;
                }
                if (exists && faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) < 0) {
                        r = -errno;
                        bufprintf(error, error_size, "cannot open %s for reading and writing as uid %u: %s", path,
                                  (unsigned)geteuid(), strerror(errno));
                        return r;
                }
        }

        db = calloc(1, sizeof(*db));
        if (!db)
                return -ENOMEM;
        db->path = strdup(path);
        db->wal_path = strdup_printf("%s-wal", path);
        if (!db->path || !db->wal_path)
                return -ENOMEM;
        atomic_init(&db->cancel, false);
        atomic_init(&db->heartbeat, now_usec(CLOCK_MONOTONIC));
        db->busy_deadline = 0;

        /* NOMUTEX: one thread at a time uses the connection (the event loop
         * thread until start-up is done, then the worker); SQLite's own
         * mutexes would only cost. */
        rc = sqlite3_open_v2(path, &db->sqlite,
                             SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX,
                             NULL);
        if (rc != SQLITE_OK) {
                set_error(db, error, error_size, rc, path);
                return DB_E_SQLITE;
        }
        rc = sqlite3_extended_result_codes(db->sqlite, 1);
        if (rc == SQLITE_OK)
                rc = sqlite3_busy_handler(db->sqlite, busy_handler, db);
        if (rc != SQLITE_OK) {
                set_error(db, error, error_size, rc, path);
                return DB_E_SQLITE;
        }
        sqlite3_progress_handler(db->sqlite, PROGRESS_OPS, progress_handler, db);

        /* sqlvigil's close never checkpoints and never deletes the -wal and
         * -shm by name. By then the names may be another database's: the
         * files were renamed over or deleted, and SQLite's last close
         * unlinks "PATH-wal" and "PATH-shm", whatever files those are. The
         * final checkpoint comes before the close, on purpose. */
        {
                int one = 1, on = 0;

                rc = sqlite3_db_config(db->sqlite, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, &on);
                if (rc == SQLITE_OK)
                        rc = sqlite3_file_control(db->sqlite, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
                if (rc != SQLITE_OK) {
                        set_error(db, error, error_size, rc, "sqlite3_db_config(NO_CKPT_ON_CLOSE) or PERSIST_WAL");
                        return DB_E_SQLITE;
                }
        }

        /* The first read: a file that is no database fails here, not later. */
        set_wait(db, 5 * USEC_PER_SEC);
        r = query_int(db, "PRAGMA page_size", &db->page_size);
        if (r != 0) {
                bufprintf(error, error_size, "%s: %s", path, db->error);
                return DB_E_SQLITE;
        }
        if (stat(path, &st) < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot access database %s: %s", path, strerror(errno));
                return r;
        }
        db->dev = st.st_dev;
        db->ino = st.st_ino;

        if (prepare_cached(db, PROBE_SQL, &db->stmt_probe) ||
            prepare_cached(db, COUNTS_SQL, &db->stmt_counts)) {
                char version[32];

                if ((db->fault.code & 0xff) == SQLITE_NOTADB) {
                        bufprintf(error, error_size,
                                  "%s is not an SQLite database (SQLite: file is not a database, code %d): check "
                                  "that [database] path names the database, and that the file is not encrypted "
                                  "or damaged",
                                  path, db->fault.code);
                        return DB_E_SQLITE;
                }
                if (!db->fault.skew) {
                        bufprintf(error, error_size, "%s: %s", path, db->error);
                        return DB_E_SQLITE;
                }
                compat_format_version(file_version(db), version, sizeof(version));
                bufprintf(error, error_size,
                          "%s: %s. This is not damage: the schema uses SQL that sqlvigil's SQLite %s cannot read, "
                          "written by a newer SQLite%s%s%s; sqlvigil can supervise this database only when built "
                          "with a SQLite that reads it",
                          path, db->error, sqlite3_libversion(), *version ? " (the file was last written by SQLite " : "",
                          version, *version ? ")" : "");
                return DB_E_SQLITE;
        }

        *ret = TAKE_PTR(db);
        return 0;
}

static void set_effective(PragmaId id, const char *text, PragmaStatus *st) {
        st->known = pragma_value_from_sqlite(id, text, &st->value);
        if (st->known)
                pragma_format_value(id, st->value, st->effective, sizeof(st->effective));
        else
                bufprintf(st->effective, sizeof(st->effective), "%s", *text ? text : "?");
}

static int apply_pragmas(Db *db, const PragmaRequest requests[_PRAGMA_MAX], usec_t max_wait, DbPragmas *ret) {
        int64_t page_count;
        bool fresh;
        int r;

        set_wait(db, max_wait);
        r = query_int(db, "PRAGMA page_count", &page_count);
        if (r != 0)
                return r;
        /* A database without a single page takes page_size and auto_vacuum
         * directly; the enum order applies those before journal_mode=wal,
         * whose switch writes the first page. */
        fresh = page_count == 0;

        for (PragmaId id = 0; id < _PRAGMA_MAX; id++) {
                const PragmaInfo *info = &pragma_info[id];
                PragmaStatus *st = &ret->status[id];
                char sql[128], value[32], text[64];

                *st = (PragmaStatus){ .requested = requests[id].set, .requested_value = requests[id].value };
                if (info->scope == PRAGMA_SCOPE_APPLICATION) {
                        /* Set here, it would change sqlvigil's connection
                         * only, where it does nothing, and read back as
                         * "applied" to anyone who thinks it protects the
                         * applications. Their values are not ours to know. */
                        st->outcome = st->requested ? PRAGMA_APPLICATION_ONLY : PRAGMA_UNREQUESTED;
                        continue;
                }
                if (st->requested && pragma_info[id].persistent && !fresh) {
                        /* Setting a persistent pragma can take the write lock
                         * even when nothing changes (auto_vacuum writes its
                         * header field in a write transaction every time):
                         * ask first, and change only what would change. */
                        bufprintf(sql, sizeof(sql), "PRAGMA %s", info->name);
                        r = query_text(db, sql, text, sizeof(text));
                        if (r != 0)
                                return r;
                        set_effective(id, text, st);
                        if (st->known && st->value == st->requested_value)
                                goto judged;
                        /* Only a new file takes page_size; auto_vacuum switches
                         * between full and incremental in place, and from or
                         * to none only with a full VACUUM. */
                        if (id == PRAGMA_PAGE_SIZE ||
                            (id == PRAGMA_AUTO_VACUUM && (!st->known || st->value == 0 || st->requested_value == 0)))
                                goto judged;
                }
                if (st->requested) {
                        pragma_format_value(id, requests[id].value, value, sizeof(value));
                        bufprintf(sql, sizeof(sql), "PRAGMA %s = %s", info->name, value);
                        r = exec_sql(db, sql);
                        if (r == DB_E_BUSY && id == PRAGMA_JOURNAL_MODE) {
                                bufprintf(db->error, sizeof(db->error),
                                          "cannot switch journal_mode to wal: the database stayed locked by "
                                          "another connection for %" PRIu64 " ms",
                                          max_wait / USEC_PER_MSEC);
                                return DB_E_NOT_WAL;
                        }
                        if (r != 0)
                                return r;
                }
                bufprintf(sql, sizeof(sql), "PRAGMA %s", info->name);
                r = query_text(db, sql, text, sizeof(text));
                if (r != 0)
                        return r;
                set_effective(id, text, st);
        judged:
                if (!st->requested)
                        st->outcome = PRAGMA_UNREQUESTED;
                else if (st->known && st->value == st->requested_value)
                        st->outcome = PRAGMA_APPLIED;
                else if (id == PRAGMA_JOURNAL_MODE) {
                        bufprintf(db->error, sizeof(db->error),
                                  "cannot switch journal_mode to wal: the file stays in %s mode", st->effective);
                        return DB_E_NOT_WAL;
                } else if (id == PRAGMA_PAGE_SIZE && !fresh)
                        st->outcome = PRAGMA_FIXED;
                else if (id == PRAGMA_AUTO_VACUUM && !fresh)
                        st->outcome = PRAGMA_NEEDS_VACUUM;
                else
                        st->outcome = PRAGMA_DIFFERS;
        }

        /* PRAGMA busy_timeout installed SQLite's own busy handler; put ours
         * back. busy_timeout's value is still honoured: it is the wait the
         * caller passes for start-up, reload and admin operations. */
        if (sqlite3_busy_handler(db->sqlite, busy_handler, db) != SQLITE_OK) {
                set_error(db, db->error, sizeof(db->error), SQLITE_ERROR, "sqlite3_busy_handler");
                return DB_E_SQLITE;
        }
        r = query_int(db, "PRAGMA page_size", &db->page_size);
        if (r != 0)
                return r;
        ret->page_size = db->page_size;
        return 0;
}

int db_apply_pragmas(Db *db, const PragmaRequest requests[_PRAGMA_MAX], usec_t max_wait, DbPragmas *ret,
                     char *error, size_t error_size) {
        int r;

        *ret = (DbPragmas){ 0 };
        r = apply_pragmas(db, requests, max_wait, ret);
        if (r != 0)
                bufprintf(error, error_size, "%s", db->error);
        return r;
}

/* Runs PROBE_SQL and fills in what it read. */
static int probe_read(Db *db, DbProbe *p) {
        sqlite3_stmt *stmt = db->stmt_probe;
        int rc;

        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                const unsigned char *mode = sqlite3_column_text(stmt, 1);

                bufprintf(p->journal_mode, sizeof(p->journal_mode), "%s", mode ? (const char *)mode : "");
                p->page_count = sqlite3_column_int64(stmt, 2);
                p->freelist_count = sqlite3_column_int64(stmt, 3);
                rc = SQLITE_OK;
        } else
                set_error(db, p->error, sizeof(p->error), rc, "health probe query");
        /* Reset at once: a statement left on a row keeps its read
         * transaction, and an open read transaction starves checkpoints. */
        sqlite3_reset(stmt);
        return rc;
}

void db_probe(Db *db, DbProbe *p) {
        usec_t start = now_usec(CLOCK_MONOTONIC);
        int rc;

        /* Whether the file was deleted or replaced is not asked here
         * (SQLITE_FCNTL_HAS_MOVED would stat() the path once more): the
         * event loop's stat() of the path against the identity recorded at
         * open already tells, every round. Nor is the write lock taken: an
         * application's deferred read-then-write transaction gets
         * SQLITE_BUSY at once, whatever its busy timeout, whenever another
         * connection holds it, even for microseconds. Whether someone holds
         * it is asked of the lock itself (walindex_locks()). This read takes
         * a read lock only, which no writer waits for. */
        *p = (DbProbe){ .page_size = db->page_size };
        set_wait(db, 0);
        rc = probe_read(db, p);
        if (rc != SQLITE_OK) {
                p->result = (rc & 0xff) == SQLITE_INTERRUPT ? DB_E_CANCELLED : DB_E_SQLITE;
                p->sqlite_code = rc;
                p->skew = db->fault.skew;
        }
        p->wal = strcasecmp(p->journal_mode, "wal") == 0;
        p->duration = now_usec(CLOCK_MONOTONIC) - start;
}

/*
 * Only one connection checkpoints at a time: SQLite returns SQLITE_BUSY at
 * once, without calling the busy handler and without reading the WAL (both
 * counts stay -1), while another one holds the checkpoint lock. Applications
 * that keep their autocheckpoint on hold it most of the time under load:
 * with 8 writers committing every millisecond each, every one of sqlvigil's
 * checkpoints over 7 s found it taken and the WAL grew from 91 to 260 MiB
 * (benchmark B7). Nothing is held while we wait for it, so we try again
 * every millisecond, for at least this long.
 */
#define CKPT_LOCK_WAIT (20 * USEC_PER_MSEC)

void db_checkpoint(Db *db, CheckpointMode mode, usec_t max_wait, DbCheckpoint *c) {
        usec_t start, attempt, now, lock_deadline;
        int rc;

        *c = (DbCheckpoint){ .log_frames = -1, .checkpointed = -1 };
        if (mode != CHECKPOINT_PASSIVE)
                db_wait_quiet(db);
        start = now_usec(CLOCK_MONOTONIC);
        lock_deadline = start + MAX(max_wait, CKPT_LOCK_WAIT);
        set_wait(db, max_wait);
        for (;;) {
                attempt = now_usec(CLOCK_MONOTONIC);
                rc = sqlite3_wal_checkpoint_v2(db->sqlite, NULL, (int)mode, &c->log_frames, &c->checkpointed);
                if ((rc & 0xff) != SQLITE_BUSY || c->log_frames != -1)
                        break;
                now = now_usec(CLOCK_MONOTONIC);
                if (now >= lock_deadline || cancelled(db))
                        break;
                sleep_usec(MIN(USEC_PER_MSEC, lock_deadline - now));
        }
        now = now_usec(CLOCK_MONOTONIC);
        c->ckpt_lock_wait = attempt - start;
        c->duration = now - start;
        /* FULL, RESTART and TRUNCATE hold the writer lock while they wait,
         * copy, truncate and sync. Writers blocked meanwhile sleep in their
         * busy handlers; the next vacuum step waits out one of their sleeps. */
        if (mode != CHECKPOINT_PASSIVE)
                db->quiet_until = now + budget_writer_quantum(now - attempt) + USEC_PER_MSEC;
        if (rc == SQLITE_OK)
                return;
        if ((rc & 0xff) == SQLITE_BUSY) {
                c->result = cancelled(db) ? DB_E_CANCELLED : DB_E_BUSY;
                bufprintf(c->error, sizeof(c->error), "%s%s", sqlite3_errstr(rc),
                          c->log_frames == -1 ? " (another connection held the checkpoint lock)" : "");
                return;
        }
        c->result = (rc & 0xff) == SQLITE_INTERRUPT ? DB_E_CANCELLED : DB_E_SQLITE;
        set_error(db, c->error, sizeof(c->error), rc, "wal_checkpoint");
}

uint64_t db_wal_bytes(const Db *db) {
        return file_size(db->wal_path);
}

void db_wait_quiet(Db *db) {
        usec_t now;

        while ((now = now_usec(CLOCK_MONOTONIC)) < db->quiet_until && !cancelled(db))
                sleep_usec(MIN(db->quiet_until - now, 10 * USEC_PER_MSEC));
}

void db_note_hold(Db *db, usec_t held) {
        /* Writers that waited through the hold are sleeping in their busy
         * handlers; the next hold waits out one of their sleeps. */
        db->quiet_until = now_usec(CLOCK_MONOTONIC) + budget_writer_quantum(held) + USEC_PER_MSEC;
}

void db_wal_restart(Db *db, usec_t max_wait, DbHold *h) {
        sqlite3_stmt *stmt = NULL;
        int64_t version = 0;
        usec_t start = 0;
        char sql[64];
        int r;

        *h = (DbHold){ 0 };
        db_wait_quiet(db);
        set_wait(db, max_wait);
        r = exec_sql(db, "BEGIN IMMEDIATE");
        if (r != 0)
                goto fail;
        start = now_usec(CLOCK_MONOTONIC);
        r = query_int(db, "PRAGMA user_version", &version);
        if (r == 0) {
                /* Written back unchanged: a commit of one page, and nothing
                 * an application could see but the commit itself. */
                bufprintf(sql, sizeof(sql), "PRAGMA user_version = %" PRIi64, version);
                r = exec_sql(db, sql);
        }
        if (r == 0)
                r = exec_sql(db, "COMMIT");
        h->held = now_usec(CLOCK_MONOTONIC) - start;
        db_note_hold(db, h->held);
        if (r == 0)
                return;
        (void)sqlite3_prepare_v2(db->sqlite, "ROLLBACK", -1, &stmt, NULL);
        if (stmt) {
                (void)sqlite3_step(stmt);
                sqlite3_finalize(stmt);
        }
fail:
        h->result = r;
        bufprintf(h->error, sizeof(h->error), "%s", db->error);
}

/* The freelist and page counts (pages), in a read transaction of their
 * own: 0, or failure_of() with the reason in error. */
static int read_counts(Db *db, int64_t *freelist_count, int64_t *page_count, char *error, size_t error_size) {
        int rc = sqlite3_step(db->stmt_counts), r = 0;

        if (rc == SQLITE_ROW) {
                *freelist_count = sqlite3_column_int64(db->stmt_counts, 0);
                *page_count = sqlite3_column_int64(db->stmt_counts, 1);
        } else {
                set_error(db, error, error_size, rc, "PRAGMA freelist_count and page_count");
                r = failure_of(db, rc);
        }
        /* At once: a statement left on a row keeps its read transaction. */
        sqlite3_reset(db->stmt_counts);
        return r;
}

void db_vacuum_step(Db *db, uint32_t pages, usec_t max_wait, usec_t hold, DbVacuumStep *v) {
        sqlite3_stmt *stmt = NULL;
        char sql[64];
        usec_t start;
        int rc;

        *v = (DbVacuumStep){ 0 };
        /* Writers that a checkpoint or the previous step held up are
         * sleeping in their busy handlers; let them have the lock before we
         * take it again. */
        db_wait_quiet(db);
        bufprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%" PRIu32 ")", pages);
        rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK) {
                set_error(db, v->error, sizeof(v->error), rc, sql);
                v->result = DB_E_SQLITE;
                return;
        }
        set_wait(db, max_wait);
        start = now_usec(CLOCK_MONOTONIC);
        /* Each SQLITE_ROW is one page freed. The statement commits when it
         * reaches SQLITE_DONE, or - in autocommit mode - when it is reset
         * early: then the pages freed so far are given back. That is how a
         * step keeps to its time when some pages cost far more than others
         * (a page in use is moved and its parent pointers rewritten). The
         * first step may wait for the lock (busy_slept); that is no hold. */
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                v->freed++;
                if (now_usec(CLOCK_MONOTONIC) - start - db->busy_slept >= hold) {
                        rc = sqlite3_reset(stmt);
                        rc = rc == SQLITE_OK ? SQLITE_DONE : rc;
                        break;
                }
        }
        v->lock_held = now_usec(CLOCK_MONOTONIC) - start;
        v->lock_held -= MIN(v->lock_held, db->busy_slept);
        sqlite3_finalize(stmt);
        if (rc != SQLITE_DONE) {
                if ((rc & 0xff) == SQLITE_BUSY)
                        v->result = cancelled(db) ? DB_E_CANCELLED : DB_E_BUSY;
                else if ((rc & 0xff) == SQLITE_INTERRUPT)
                        v->result = DB_E_CANCELLED;
                else
                        v->result = DB_E_SQLITE;
                bufprintf(v->error, sizeof(v->error), "%s: %s", sql, sqlite3_errstr(rc));
                v->freed = 0; /* rolled back */
                v->lock_held = 0;
                return;
        }
        v->result = read_counts(db, &v->freelist_count, &v->page_count, v->error, sizeof(v->error));
}

void db_restore(Db *db, const char *src_path, usec_t max_wait, DbRestore *r) {
        usec_t start = now_usec(CLOCK_MONOTONIC), locked;
        sqlite3_backup *b = NULL;
        sqlite3 *src = NULL;
        char *uri;
        int rc;

        *r = (DbRestore){ 0 };
        uri = copy_immutable_uri(src_path);
        if (!uri) {
                r->result = DB_E_SQLITE;
                bufprintf(r->error, sizeof(r->error), "out of memory");
                return;
        }
        rc = sqlite3_open_v2(uri, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);
        sqlite3_free(uri);
        if (rc != SQLITE_OK) {
                r->result = DB_E_SQLITE;
                bufprintf(r->error, sizeof(r->error), "cannot open %s: %s", src_path,
                          src ? sqlite3_errmsg(src) : sqlite3_errstr(rc));
                sqlite3_close(src);
                goto done;
        }
        db_wait_quiet(db);
        set_wait(db, max_wait);
        b = sqlite3_backup_init(db->sqlite, "main", src, "main");
        if (!b) {
                set_error(db, r->error, sizeof(r->error), sqlite3_errcode(db->sqlite), "sqlite3_backup_init");
                r->result = DB_E_SQLITE;
                sqlite3_close(src);
                goto done;
        }
        /* All pages in one step: one transaction on the live database. */
        rc = sqlite3_backup_step(b, -1);
        r->pages = sqlite3_backup_pagecount(b);
        if (rc == SQLITE_DONE)
                rc = sqlite3_backup_finish(b);
        else
                (void)sqlite3_backup_finish(b);
        locked = now_usec(CLOCK_MONOTONIC) - start;
        r->held = locked - MIN(locked, db->busy_slept);
        db_note_hold(db, r->held);
        if (rc != SQLITE_OK && rc != SQLITE_DONE) {
                set_error(db, r->error, sizeof(r->error), rc, "copying into the database");
                r->result = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED ? DB_E_BUSY : DB_E_SQLITE;
                if (r->result == DB_E_BUSY)
                        r->held = 0;
        }
        sqlite3_close(src);
done:
        r->fault = db_take_fault(db);
        r->duration = now_usec(CLOCK_MONOTONIC) - start;
}

void db_save_copy(Db *db, const char *dest, CopyResult *ret) {
        copy_database(db->sqlite, dest, NULL, ret);
}

int db_data_version(Db *db, int64_t *ret) {
        set_wait(db, USEC_PER_SEC);
        return query_int(db, "PRAGMA data_version", ret);
}

void db_fresh_look(const char *path, DbCheck *c) {
        usec_t start = now_usec(CLOCK_MONOTONIC);
        sqlite3_stmt *s = NULL;
        sqlite3 *d = NULL;
        int rc, on = 0;

        *c = (DbCheck){ 0 };
        rc = sqlite3_open_v2(path, &d, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_db_config(d, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, &on);
        if (rc == SQLITE_OK)
                rc = sqlite3_busy_timeout(d, 1000);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(d, "PRAGMA quick_check(10)", -1, &s, NULL);
        if (rc != SQLITE_OK) {
                bufprintf(c->error, sizeof(c->error), "%s", d ? sqlite3_errmsg(d) : sqlite3_errstr(rc));
                /* A schema from a newer SQLite that this one cannot parse
                 * also says "malformed": that is no sign of content
                 * copied over the file, and no reason for a rescue. */
                if (((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) &&
                    !compat_error_is_skew(c->error)) {
                        c->problems = 1;
                        bufprintf(c->first, sizeof(c->first), "%s", c->error);
                } else
                        c->result = DB_E_SQLITE;
                goto finish;
        }
        rc = db_check_rows(s, &c->passed, &c->problems, c->first, sizeof(c->first));
        if (rc != SQLITE_DONE) {
                c->passed = false;
                if (((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) &&
                    !compat_error_is_skew(sqlite3_errmsg(d))) {
                        c->problems++;
                        if (!c->first[0])
                                bufprintf(c->first, sizeof(c->first), "%s", sqlite3_errmsg(d));
                } else {
                        c->result = DB_E_SQLITE;
                        bufprintf(c->error, sizeof(c->error), "%s", sqlite3_errmsg(d));
                }
        }
finish:
        sqlite3_finalize(s);
        if (d)
                sqlite3_close(d);
        c->duration = now_usec(CLOCK_MONOTONIC) - start;
}

void db_counts(Db *db, DbCounts *c) {
        *c = (DbCounts){ .page_size = db->page_size };
        set_wait(db, 0);
        c->result = read_counts(db, &c->freelist_count, &c->page_count, c->error, sizeof(c->error));
}

void db_convert(Db *db, usec_t max_wait, DbConvert *c) {
        usec_t start = now_usec(CLOCK_MONOTONIC);
        int64_t av = 0;
        int r;

        *c = (DbConvert){ 0 };
        set_wait(db, max_wait);
        r = query_int(db, "PRAGMA page_count", &c->page_count_before);
        if (r == 0)
                r = query_int(db, "PRAGMA freelist_count", &c->freelist_before);
        /* auto_vacuum=incremental is remembered by the connection and written
         * into the new file VACUUM builds; it works in WAL mode. */
        if (r == 0)
                r = exec_sql(db, "PRAGMA auto_vacuum = incremental");
        if (r == 0)
                r = exec_sql(db, "VACUUM");
        if (r == 0)
                r = query_int(db, "PRAGMA auto_vacuum", &av);
        if (r == 0)
                r = query_int(db, "PRAGMA page_count", &c->page_count_after);
        if (r == 0)
                r = query_int(db, "PRAGMA freelist_count", &c->freelist_after);
        c->duration = now_usec(CLOCK_MONOTONIC) - start;
        c->incremental = av == 2;
        if (r != 0) {
                c->result = r;
                bufprintf(c->error, sizeof(c->error), "%s", db->error);
        }
}

int db_check_rows(sqlite3_stmt *s, bool *passed, unsigned *problems, char *first, size_t first_size) {
        int rc;

        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                const char *t = (const char *)sqlite3_column_text(s, 0);

                if (*problems == 0 && t && strcmp(t, "ok") == 0) {
                        *passed = true;
                        continue;
                }
                *passed = false;
                if (*problems == 0) {
                        /* integrity_check's report has lines ("*** in
                         * database main ***\nPage 2: ..."): one line here. */
                        bufprintf(first, first_size, "%s", t ? t : "?");
                        for (char *p = first; *p; p++)
                                if (*p == '\n')
                                        *p = ' ';
                }
                (*problems)++;
        }
        return rc;
}

void db_check(Db *db, bool integrity, DbCheck *c) {
        const char *sql = integrity ? "PRAGMA integrity_check(100)" : "PRAGMA quick_check(100)";
        usec_t start = now_usec(CLOCK_MONOTONIC);
        sqlite3_stmt *stmt = NULL;
        int rc;

        *c = (DbCheck){ 0 };
        set_wait(db, 0);
        rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK) {
                set_error(db, c->error, sizeof(c->error), rc, sql);
                c->result = DB_E_SQLITE;
                return;
        }
        rc = db_check_rows(stmt, &c->passed, &c->problems, c->first, sizeof(c->first));
        c->duration = now_usec(CLOCK_MONOTONIC) - start;
        if (rc != SQLITE_DONE) {
                c->passed = false;
                c->result = failure_of(db, rc) == DB_E_CANCELLED ? DB_E_CANCELLED : DB_E_SQLITE;
                set_error(db, c->error, sizeof(c->error), rc, sql);
                /* Corruption found while checking is a finding, not a failure to check;
                 * a schema this SQLite cannot parse is neither (db->fault.skew). */
                if (((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) && !db->fault.skew) {
                        c->result = 0;
                        c->problems++;
                        if (!c->first[0])
                                bufprintf(c->first, sizeof(c->first), "%s", c->error);
                }
        }
        sqlite3_finalize(stmt);
}

/* Appends a name to a comma-separated list, marking truncation with "...". */
static void list_append(char *buf, size_t size, const char *name) {
        size_t len = strlen(buf);

        if (len + strlen(name) + 6 >= size) {
                if (len + 4 < size && (len < 3 || strcmp(buf + len - 3, "...") != 0))
                        strcat(buf, len ? ", ..." : "...");
                return;
        }
        if (len)
                strcat(buf, ", ");
        strcat(buf, name);
}

/* A foreign_key_check under way: its result and the table of the row
 * before (SQLite reports each table's violations together). */
typedef struct FkScan {
        DbFkCheck *c;
        char last[128];
} FkScan;

/* Counts one row of foreign_key_check, by table, and keeps the first few. */
static void fk_add(FkScan *f, sqlite3_stmt *stmt) {
        const char *table = (const char *)sqlite3_column_text(stmt, 0);
        const char *parent = (const char *)sqlite3_column_text(stmt, 2);
        DbFkCheck *c = f->c;

        if (!table)
                table = "?";
        c->violations++;
        if (c->violations == 1 || strcmp(f->last, table) != 0) {
                bufprintf(f->last, sizeof(f->last), "%s", table);
                if (c->n_tables < DB_FK_TABLES) {
                        bufprintf(c->tables[c->n_tables].table, sizeof(c->tables[0].table), "%s", table);
                        c->tables[c->n_tables++].count = 0;
                } else
                        c->more_tables++;
        }
        if (!c->more_tables)
                c->tables[c->n_tables - 1].count++;
        if (c->n_first < DB_FK_FIRST) {
                DbFkViolation *v = &c->first[c->n_first++];

                *v = (DbFkViolation){ .has_rowid = sqlite3_column_type(stmt, 1) != SQLITE_NULL,
                                      .rowid = sqlite3_column_int64(stmt, 1),
                                      .fkid = sqlite3_column_int(stmt, 3) };
                bufprintf(v->table, sizeof(v->table), "%s", table);
                bufprintf(v->parent, sizeof(v->parent), "%s", parent ? parent : "?");
        }
}

/* Steps a prepared foreign_key_check to its end. SQLite's code. */
static int fk_rows(FkScan *f, sqlite3_stmt *stmt) {
        int rc;

        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
                fk_add(f, stmt);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* "pid -> parent(id)" for foreign key fkid of table; "" when unknown. */
static void fk_describe(Db *db, DbFkViolation *v) {
        sqlite3_stmt *stmt = NULL;
        char from[96] = "", to[96] = "";

        v->key[0] = '\0';
        if (sqlite3_prepare_v2(db->sqlite, "SELECT \"from\", \"to\" FROM pragma_foreign_key_list(?) WHERE id = ? "
                               "ORDER BY seq", -1, &stmt, NULL) != SQLITE_OK)
                return; /* a description only: the count stands without it */
        if (sqlite3_bind_text(stmt, 1, v->table, -1, SQLITE_STATIC) == SQLITE_OK &&
            sqlite3_bind_int(stmt, 2, v->fkid) == SQLITE_OK)
                while (sqlite3_step(stmt) == SQLITE_ROW) {
                        const char *f = (const char *)sqlite3_column_text(stmt, 0);
                        const char *t = (const char *)sqlite3_column_text(stmt, 1);

                        list_append(from, sizeof(from), f ? f : "?");
                        if (t)
                                list_append(to, sizeof(to), t);
                }
        sqlite3_finalize(stmt);
        if (*from)
                bufprintf(v->key, sizeof(v->key), "%s -> %s%s%s%s", from, v->parent, *to ? "(" : "", to, *to ? ")" : "");
}

void db_foreign_key_check(Db *db, DbFkCheck *c) {
        usec_t start = now_usec(CLOCK_MONOTONIC);
        sqlite3_stmt *stmt = NULL, *tables = NULL;
        FkScan f = { .c = c };
        int rc;

        *c = (DbFkCheck){ 0 };
        set_wait(db, 0);
        rc = sqlite3_prepare_v2(db->sqlite, "PRAGMA foreign_key_check", -1, &stmt, NULL);
        if (rc == SQLITE_OK)
                rc = fk_rows(&f, stmt);
        sqlite3_finalize(stmt);
        stmt = NULL;
        if (rc == SQLITE_ERROR && strncmp(sqlite3_errmsg(db->sqlite), "foreign key mismatch", 20) == 0) {
                /* One table's broken foreign key stops the whole check:
                 * check them one by one, so the others are still seen. */
                *c = (DbFkCheck){ 0 };
                f = (FkScan){ .c = c };
                rc = sqlite3_prepare_v2(db->sqlite,
                                        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
                                        "ESCAPE '\\' ORDER BY rowid",
                                        -1, &tables, NULL);
                if (rc == SQLITE_OK)
                        rc = sqlite3_prepare_v2(db->sqlite, "SELECT * FROM pragma_foreign_key_check(?)", -1, &stmt, NULL);
                while (rc == SQLITE_OK && (rc = sqlite3_step(tables)) == SQLITE_ROW) {
                        rc = sqlite3_bind_value(stmt, 1, sqlite3_column_value(tables, 0));
                        if (rc == SQLITE_OK)
                                rc = fk_rows(&f, stmt);
                        if (rc == SQLITE_ERROR && strncmp(sqlite3_errmsg(db->sqlite), "foreign key mismatch", 20) == 0) {
                                if (c->mismatches++ == 0)
                                        bufprintf(c->mismatch, sizeof(c->mismatch), "%s", sqlite3_errmsg(db->sqlite));
                                rc = SQLITE_OK;
                        }
                        sqlite3_reset(stmt);
                }
                if (rc == SQLITE_DONE)
                        rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK) {
                set_error(db, c->error, sizeof(c->error), rc, "PRAGMA foreign_key_check");
                c->result = (rc & 0xff) == SQLITE_INTERRUPT ? DB_E_CANCELLED : DB_E_SQLITE;
        }
        sqlite3_finalize(stmt);
        sqlite3_finalize(tables);
        for (size_t i = 0; c->result == 0 && i < c->n_first; i++)
                fk_describe(db, &c->first[i]);
        c->duration = now_usec(CLOCK_MONOTONIC) - start;
}


/* One ANALYZE statement for one table: its own transaction, so the write
 * lock it holds lasts one table's sampling (bounded by analysis_limit), not
 * the whole database's. */
static int analyze_one(Db *db, const char *sql, const char *table, DbAnalyze *a) {
        usec_t start, took;
        int r;

        start = now_usec(CLOCK_MONOTONIC);
        db->busy_slept = 0;
        r = exec_sql(db, sql);
        took = now_usec(CLOCK_MONOTONIC) - start;
        took -= MIN(took, db->busy_slept);
        if (r != 0)
                return r;
        lock_holds_add(&a->holds, took);
        a->analyzed++;
        list_append(a->tables, sizeof(a->tables), table);
        return 0;
}

static int64_t *analyzed_memo(Db *db, const char *table, bool create) {
        for (size_t i = 0; i < db->n_analyzed; i++)
                if (strcmp(db->analyzed[i].table, table) == 0)
                        return &db->analyzed[i].rows;
        if (!create || strlen(table) >= sizeof(db->analyzed[0].table))
                return NULL;
        if (db->n_analyzed == ELEMENTSOF(db->analyzed))
                db->n_analyzed = 0; /* forget the oldest; at worst one extra ANALYZE */
        bufprintf(db->analyzed[db->n_analyzed].table, sizeof(db->analyzed[0].table), "%s", table);
        db->analyzed[db->n_analyzed].rows = -1;
        return &db->analyzed[db->n_analyzed++].rows;
}

/* Runs a query with one text parameter and returns its first integer, or -1. */
static int64_t query_param_int(Db *db, const char *sql, const char *param) {
        sqlite3_stmt *stmt = NULL;
        int64_t v = -1;

        if (sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL) != SQLITE_OK)
                return -1;
        if (param)
                sqlite3_bind_text(stmt, 1, param, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL)
                v = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        return v;
}

/*
 * Whether a table needs ANALYZE, by the rules of SQLite 3.46's PRAGMA optimize
 * with mask 0x10000 (every table, not only those this connection queried):
 * an index without statistics, or a row count 10 times larger or smaller
 * than at the last analysis. SQLite estimates the row count from the b-tree's
 * shape, which SQL cannot reach; the cheap stand-in here is the rowid range
 * (two index seeks). It overestimates after deletions, so once sqlvigil has
 * analyzed a table it compares against its own earlier estimate instead of
 * the count in sqlite_stat1, which keeps a table with gaps from being
 * analyzed again and again. WITHOUT ROWID tables get the index rule only.
 */
static bool table_is_stale(Db *db, const char *table, bool have_stat1, int64_t *ret_estimate) {
        int64_t stat_rows, estimate, base, *memo;
        sqlite3_stmt *stmt = NULL;
        bool missing = false;
        char *sql;

        *ret_estimate = -1;
        if (!have_stat1)
                return true;

        if (sqlite3_prepare_v2(db->sqlite,
                               "SELECT il.name, EXISTS(SELECT 1 FROM sqlite_stat1 s WHERE s.tbl = ?1 AND s.idx = il.name) "
                               "FROM pragma_index_list(?1) il",
                               -1, &stmt, NULL) != SQLITE_OK)
                return true;
        sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
        while (sqlite3_step(stmt) == SQLITE_ROW)
                if (!sqlite3_column_int(stmt, 1))
                        missing = true;
        sqlite3_finalize(stmt);
        if (missing)
                return true;

        stat_rows = query_param_int(db, "SELECT CAST(stat AS INTEGER) FROM sqlite_stat1 WHERE tbl = ?1 LIMIT 1", table);
        if (stat_rows < 0)
                return true; /* never analyzed (an index-less table has one row with idx NULL) */

        sql = sqlite3_mprintf("SELECT max(rowid) - min(rowid) + 1 FROM \"main\".\"%w\"", table);
        if (!sql)
                return false;
        estimate = query_param_int(db, sql, NULL);
        sqlite3_free(sql);
        if (estimate < 0)
                return false; /* WITHOUT ROWID, or empty */
        *ret_estimate = estimate;

        memo = analyzed_memo(db, table, false);
        base = memo && *memo >= 0 ? *memo : stat_rows;
        /* Tiny tables flip by 10x without mattering to the planner. */
        if (MAX(base, estimate) < 100)
                return false;
        return estimate >= 10 * base || 10 * estimate <= base;
}

static int collect_tables(Db *db, const char *sql, char ***ret, size_t *ret_n) {
        sqlite3_stmt *stmt = NULL;
        char **list = NULL;
        size_t n = 0;
        int rc;

        rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK) {
                set_error(db, db->error, sizeof(db->error), rc, sql);
                return DB_E_SQLITE;
        }
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
                const char *t = (const char *)sqlite3_column_text(stmt, 0);
                char **l;

                if (!t)
                        continue;
                l = realloc(list, (n + 1) * sizeof(*l));
                if (!l || !(l[n] = strdup(t))) {
                        list = l ? l : list;
                        rc = SQLITE_NOMEM;
                        break;
                }
                list = l;
                n++;
        }
        if (rc != SQLITE_DONE)
                set_error(db, db->error, sizeof(db->error), rc, sql);
        sqlite3_finalize(stmt);
        *ret = list;
        *ret_n = n;
        return rc == SQLITE_DONE ? 0 : rc == SQLITE_NOMEM ? DB_E_SQLITE : failure_of(db, rc);
}

void db_analyze(Db *db, AnalyzeMode mode, uint64_t analysis_limit, usec_t max_wait, DbAnalyze *a) {
        usec_t start = now_usec(CLOCK_MONOTONIC);
        char **items = NULL;
        size_t n = 0;
        char sql[64];
        bool have_stat1;
        int r;

        *a = (DbAnalyze){ 0 };
        set_wait(db, max_wait);
        bufprintf(sql, sizeof(sql), "PRAGMA analysis_limit = %" PRIu64, analysis_limit);
        r = exec_sql(db, sql);
        if (r != 0)
                goto finish;

        if (mode == ANALYZE_MODE_OPTIMIZE && sqlite3_libversion_number() >= 3046000) {
                /* SQLite chooses: mask 0x10000 considers every table, not
                 * only those this connection has queried, and 0x1 makes it
                 * list the ANALYZE statements instead of running them, so we
                 * can run them one table at a time. */
                a->sqlite_optimize = true;
                r = collect_tables(db, "PRAGMA optimize = 0x10003", &items, &n);
        } else
                r = collect_tables(db,
                                   "SELECT name FROM sqlite_schema WHERE type = 'table' "
                                   "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                                   "AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
                                   &items, &n);
        if (r != 0)
                goto finish;

        /* Only our own staleness test (SQLite before 3.46) asks. */
        have_stat1 = mode == ANALYZE_MODE_OPTIMIZE && !a->sqlite_optimize &&
                     query_param_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_stat1'", NULL) > 0;
        for (size_t i = 0; i < n; i++) {
                int64_t estimate = -1, *memo;
                char *stmt;

                if (cancelled(db)) {
                        r = DB_E_CANCELLED;
                        break;
                }
                a->considered++;
                if (a->sqlite_optimize) {
                        /* items[i] is the statement itself: ANALYZE "main"."t" */
                        const char *dot = strrchr(items[i], '.');

                        r = analyze_one(db, items[i], dot ? dot + 1 : items[i], a);
                } else {
                        if (mode == ANALYZE_MODE_OPTIMIZE && !table_is_stale(db, items[i], have_stat1, &estimate))
                                continue;
                        stmt = sqlite3_mprintf("ANALYZE \"main\".\"%w\"", items[i]);
                        if (!stmt) {
                                r = -ENOMEM;
                                break;
                        }
                        r = analyze_one(db, stmt, items[i], a);
                        sqlite3_free(stmt);
                        memo = analyzed_memo(db, items[i], true);
                        if (r == 0 && memo)
                                *memo = estimate;
                }
                if (r != 0)
                        break;
        }

finish:
        for (size_t i = 0; i < n; i++)
                free(items[i]);
        free(items);
        a->duration = now_usec(CLOCK_MONOTONIC) - start;
        if (r != 0) {
                a->result = r < 0 ? DB_E_SQLITE : r;
                bufprintf(a->error, sizeof(a->error), "%s", r == -ENOMEM ? "out of memory" : db->error);
        }
}
