/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "db.h"

/* How often (in virtual machine instructions) SQLite calls our progress
 * handler. At 1000 the handler runs every few microseconds of work: it costs a
 * clock read (~20 ns through the vDSO) and lets a cancelled statement stop
 * within microseconds. */
#define PROGRESS_OPS 1000

static void set_error(char *buf, size_t size, sqlite3 *s, int rc, const char *what) {
        const char *msg = s ? sqlite3_errmsg(s) : sqlite3_errstr(rc);

        bufprintf(buf, size, "%s: %s (%s, code %d)", what, msg, sqlite3_errstr(rc), rc);
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
        if (db->cancellable && atomic_load(&db->cancel))
                return 0;
        if (now >= db->busy_deadline)
                return 0;
        delay = delays[MIN((size_t)count, ELEMENTSOF(delays) - 1)];
        delay = MIN(delay, db->busy_deadline - now);
        sleep_usec(delay);
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
        return db->cancellable && atomic_load(&db->cancel);
}

void db_set_cancellable(Db *db, bool cancellable) {
        db->cancellable = cancellable;
        atomic_store(&db->heartbeat, now_usec(CLOCK_MONOTONIC));
}

/* Bounds the lock waits of what follows. */
static void set_wait(Db *db, usec_t max_wait) {
        usec_t now = now_usec(CLOCK_MONOTONIC);

        db->busy_deadline = max_wait > USEC_INFINITY - now ? USEC_INFINITY : now + max_wait;
}

static bool cancelled(const Db *db) {
        return db->cancellable && atomic_load(&db->cancel);
}

/* Runs a statement to completion, ignoring rows. */
static int exec_sql(Db *db, const char *sql) {
        sqlite3_stmt *stmt;
        int rc;

        rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK) {
                set_error(db->error, sizeof(db->error), db->sqlite, rc, sql);
                return DB_E_SQLITE;
        }
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
                ;
        if (rc != SQLITE_DONE)
                set_error(db->error, sizeof(db->error), db->sqlite, rc, sql);
        sqlite3_finalize(stmt);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc == SQLITE_INTERRUPT)
                return DB_E_CANCELLED;
        return (rc & 0xff) == SQLITE_BUSY ? DB_E_BUSY : DB_E_SQLITE;
}

/* Runs a one-row query and copies the first column as text. */
static int query_text(Db *db, sqlite3_stmt *cached, const char *sql, char *out, size_t out_size) {
        sqlite3_stmt *stmt = cached;
        int rc;

        if (!stmt) {
                rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL);
                if (rc != SQLITE_OK) {
                        set_error(db->error, sizeof(db->error), db->sqlite, rc, sql);
                        return DB_E_SQLITE;
                }
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
                set_error(db->error, sizeof(db->error), db->sqlite, rc, sql);
        }
        /* Reset at once: a statement left on a row keeps its read transaction
         * open, and an open read transaction starves checkpoints. */
        if (cached)
                sqlite3_reset(stmt);
        else
                sqlite3_finalize(stmt);
        if (rc == SQLITE_OK)
                return 0;
        return (rc & 0xff) == SQLITE_BUSY ? DB_E_BUSY : DB_E_SQLITE;
}

static int query_int(Db *db, sqlite3_stmt *cached, const char *sql, int64_t *ret) {
        char buf[64];
        int r;

        r = query_text(db, cached, sql, buf, sizeof(buf));
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
                set_error(db->error, sizeof(db->error), db->sqlite, rc, sql);
                return DB_E_SQLITE;
        }
        return 0;
}

Db *db_free(Db *db) {
        if (!db)
                return NULL;
        sqlite3_finalize(db->stmt_schema);
        sqlite3_finalize(db->stmt_journal_mode);
        sqlite3_finalize(db->stmt_page_count);
        sqlite3_finalize(db->stmt_freelist);
        sqlite3_finalize(db->stmt_begin);
        sqlite3_finalize(db->stmt_rollback);
        /* sqlite3_close() fails only with unfinalized statements, which we
         * just finalized; close_v2 would hide such a bug as a leak instead. */
        if (db->sqlite && sqlite3_close(db->sqlite) != SQLITE_OK)
                abort();
        free(db->path);
        free(db->wal_path);
        free(db);
        return NULL;
}

int db_open(const char *path, bool create, Db **ret, char *error, size_t error_size) {
        _cleanup_(db_freep) Db *db = NULL;
        struct stat st;
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
        } else if (!S_ISREG(st.st_mode)) {
                bufprintf(error, error_size, "database %s is not a regular file", path);
                return -EINVAL;
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
                set_error(error, error_size, db->sqlite, rc, path);
                return DB_E_SQLITE;
        }
        rc = sqlite3_extended_result_codes(db->sqlite, 1);
        if (rc == SQLITE_OK)
                rc = sqlite3_busy_handler(db->sqlite, busy_handler, db);
        if (rc != SQLITE_OK) {
                set_error(error, error_size, db->sqlite, rc, path);
                return DB_E_SQLITE;
        }
        sqlite3_progress_handler(db->sqlite, PROGRESS_OPS, progress_handler, db);

        /* The first read: a file that is no database fails here, not later. */
        set_wait(db, 5 * USEC_PER_SEC);
        r = query_int(db, NULL, "PRAGMA page_size", &db->page_size);
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

        if (prepare_cached(db, "SELECT 1 FROM sqlite_schema LIMIT 1", &db->stmt_schema) ||
            prepare_cached(db, "PRAGMA journal_mode", &db->stmt_journal_mode) ||
            prepare_cached(db, "PRAGMA page_count", &db->stmt_page_count) ||
            prepare_cached(db, "PRAGMA freelist_count", &db->stmt_freelist) ||
            prepare_cached(db, "BEGIN IMMEDIATE", &db->stmt_begin) ||
            prepare_cached(db, "ROLLBACK", &db->stmt_rollback)) {
                bufprintf(error, error_size, "%s: %s", path, db->error);
                return DB_E_SQLITE;
        }

        *ret = TAKE_PTR(db);
        return 0;
}

static void format_effective(PragmaId id, const char *text, PragmaStatus *st, int64_t *value, bool *known) {
        *known = pragma_value_from_sqlite(id, text, value);
        if (*known)
                pragma_format_value(id, *value, st->effective, sizeof(st->effective));
        else
                bufprintf(st->effective, sizeof(st->effective), "%s", *text ? text : "?");
}

int db_apply_pragmas(Db *db, const PragmaRequest requests[_PRAGMA_MAX], usec_t max_wait) {
        int64_t page_count;
        bool fresh;
        int r;

        set_wait(db, max_wait);
        r = query_int(db, NULL, "PRAGMA page_count", &page_count);
        if (r != 0)
                return r;
        /* A database without a single page takes page_size and auto_vacuum
         * directly; the enum order applies those before journal_mode=wal,
         * whose switch writes the first page. */
        fresh = page_count == 0;

        for (PragmaId id = 0; id < _PRAGMA_MAX; id++) {
                const PragmaInfo *info = &pragma_info[id];
                PragmaStatus *st = &db->pragmas[id];
                char sql[128], value[32], text[64];
                int64_t effective;
                bool known;

                *st = (PragmaStatus){ .requested = requests[id].set, .requested_value = requests[id].value };
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
                r = query_text(db, NULL, sql, text, sizeof(text));
                if (r != 0)
                        return r;
                format_effective(id, text, st, &effective, &known);

                if (!st->requested)
                        st->outcome = PRAGMA_UNREQUESTED;
                else if (known && effective == st->requested_value)
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
                set_error(db->error, sizeof(db->error), db->sqlite, SQLITE_ERROR, "sqlite3_busy_handler");
                return DB_E_SQLITE;
        }
        r = query_int(db, NULL, "PRAGMA page_size", &db->page_size);
        if (r != 0)
                return r;
        return 0;
}

static int step_cached(sqlite3_stmt *stmt) {
        int rc = sqlite3_step(stmt);

        sqlite3_reset(stmt);
        if (rc == SQLITE_DONE || rc == SQLITE_ROW)
                return SQLITE_OK;
        return rc;
}

void db_probe(Db *db, usec_t lock_wait, DbProbe *p) {
        usec_t start = now_usec(CLOCK_MONOTONIC), lock_start;
        char unused[8];
        int moved = 0, rc, r;

        *p = (DbProbe){ .page_size = db->page_size };
        set_wait(db, 0);

        rc = sqlite3_file_control(db->sqlite, "main", SQLITE_FCNTL_HAS_MOVED, &moved);
        if (rc != SQLITE_OK) {
                set_error(p->error, sizeof(p->error), db->sqlite, rc, "SQLITE_FCNTL_HAS_MOVED");
                p->result = DB_E_SQLITE;
                p->sqlite_code = rc;
                goto finish;
        }
        p->moved = moved != 0;

        r = query_text(db, db->stmt_schema, "SELECT 1 FROM sqlite_schema LIMIT 1", unused, sizeof(unused));
        if (r == 0)
                r = query_text(db, db->stmt_journal_mode, "PRAGMA journal_mode", p->journal_mode,
                               sizeof(p->journal_mode));
        if (r == 0)
                r = query_int(db, db->stmt_page_count, "PRAGMA page_count", &p->page_count);
        if (r == 0)
                r = query_int(db, db->stmt_freelist, "PRAGMA freelist_count", &p->freelist_count);
        if (r != 0) {
                p->result = r;
                p->sqlite_code = sqlite3_extended_errcode(db->sqlite);
                bufprintf(p->error, sizeof(p->error), "%s", db->error);
                goto finish;
        }
        p->wal = strcasecmp(p->journal_mode, "wal") == 0;

        /* The write lock probe: BEGIN IMMEDIATE takes the WAL write lock, the
         * one every application writer needs. Held by someone else for the
         * whole wait, we report busy; the caller tracks for how long. */
        lock_start = now_usec(CLOCK_MONOTONIC);
        set_wait(db, lock_wait);
        rc = step_cached(db->stmt_begin);
        p->lock_wait = now_usec(CLOCK_MONOTONIC) - lock_start;
        if ((rc & 0xff) == SQLITE_BUSY) {
                p->lock_busy = true;
                p->result = cancelled(db) ? DB_E_CANCELLED : 0;
        } else if (rc != SQLITE_OK) {
                set_error(p->error, sizeof(p->error), db->sqlite, rc, "BEGIN IMMEDIATE");
                p->result = DB_E_SQLITE;
                p->sqlite_code = rc;
        } else {
                rc = step_cached(db->stmt_rollback);
                if (rc != SQLITE_OK) {
                        set_error(p->error, sizeof(p->error), db->sqlite, rc, "ROLLBACK");
                        p->result = DB_E_SQLITE;
                        p->sqlite_code = rc;
                }
        }
finish:
        /* The cost of a check is its work; a wait for someone else's lock is
         * reported separately. */
        p->duration = now_usec(CLOCK_MONOTONIC) - start;
        if (p->lock_busy)
                p->duration -= MIN(p->duration, p->lock_wait);
}

void db_checkpoint(Db *db, CheckpointMode mode, usec_t max_wait, DbCheckpoint *c) {
        usec_t start = now_usec(CLOCK_MONOTONIC);
        int rc;

        *c = (DbCheckpoint){ .mode = mode, .log_frames = -1, .checkpointed = -1 };
        set_wait(db, max_wait);
        rc = sqlite3_wal_checkpoint_v2(db->sqlite, NULL, (int)mode, &c->log_frames, &c->checkpointed);
        c->duration = now_usec(CLOCK_MONOTONIC) - start;
        if (rc == SQLITE_OK)
                return;
        if ((rc & 0xff) == SQLITE_BUSY) {
                c->result = cancelled(db) ? DB_E_CANCELLED : DB_E_BUSY;
                bufprintf(c->error, sizeof(c->error), "%s", sqlite3_errstr(rc));
                return;
        }
        c->result = (rc & 0xff) == SQLITE_INTERRUPT ? DB_E_CANCELLED : DB_E_SQLITE;
        set_error(c->error, sizeof(c->error), db->sqlite, rc, "wal_checkpoint");
}

uint64_t db_wal_bytes(const Db *db) {
        struct stat st;

        if (stat(db->wal_path, &st) < 0)
                return 0;
        return (uint64_t)st.st_size;
}

uint64_t db_wal_frames(uint64_t wal_bytes, int64_t page_size) {
        /* A WAL is a 32-byte header and frames of a 24-byte header plus a page. */
        if (wal_bytes <= 32 || page_size <= 0)
                return 0;
        return (wal_bytes - 32) / (24 + (uint64_t)page_size);
}
