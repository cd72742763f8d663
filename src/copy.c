/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sha2.h>

#include "compat.h"
#include "copy.h"

/* Pages per backup step, and the pause between steps: the copy keeps its
 * read snapshot throughout, so the pauses cost nothing but time; they let
 * cancellation in. Measured: 256 MB in 0.80-0.85 s with these. */
#define COPY_STEP_PAGES 1024
#define COPY_STEP_PAUSE (1 * USEC_PER_MSEC)

static void sqlite_error(sqlite3 *db, int rc, const char *what, CopyResult *c) {
        int sys = db ? sqlite3_system_errno(db) : 0;

        /* Which side failed: whatever the copy's connection (or no
         * connection: closing it) reports is the destination's. */
        c->dest_failed = db != c->src;
        c->fault = (DbFault){ .code = rc, .sys_errno = sys > 0 ? sys : 0 };
        if (sys > 0)
                bufprintf(c->error, sizeof(c->error), "%s: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                          strerror(sys));
        else
                bufprintf(c->error, sizeof(c->error), "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        c->result = DB_E_SQLITE;
}

int copy_set_rollback_header(const char *path) {
        static const unsigned char one[2] = { 1, 1 };
        int fd, r = 0;

        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        /* Bytes 18 and 19: the file format write and read versions, 1 for
         * rollback journal, 2 for WAL (fileformat2.html, 1.3). */
        if (pwrite(fd, one, sizeof(one), 18) != (ssize_t)sizeof(one))
                r = errno ? -errno : -EIO;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}

void copy_database(sqlite3 *src, const char *dest, const atomic_bool *cancel, CopyResult *c) {
        usec_t start = now_usec(CLOCK_MONOTONIC), snap = 0;
        sqlite3_backup *b = NULL;
        sqlite3 *d = NULL;
        bool in_txn = false;
        struct stat st;
        int fd, rc, r;

        *c = (CopyResult){ .src = src };
        /* A new file, never an existing one: O_EXCL. An empty file is an
         * empty database to SQLite. */
        fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                c->result = -errno;
                c->dest_failed = true;
                bufprintf(c->error, sizeof(c->error), "cannot create %s: %s", dest, strerror(errno));
                return;
        }
        close(fd);

        rc = sqlite3_open_v2(dest, &d, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(d, "PRAGMA journal_mode = off; PRAGMA synchronous = off", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                sqlite_error(d, rc, dest, c);
                goto finish;
        }
        /* One read snapshot for the whole copy: the backup steps then see
         * one consistent database whatever the writers do meanwhile. */
        rc = sqlite3_exec(src, "BEGIN; SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                sqlite_error(src, rc, "reading the database", c);
                goto finish;
        }
        in_txn = true;
        snap = now_usec(CLOCK_MONOTONIC);
        b = sqlite3_backup_init(d, "main", src, "main");
        if (!b) {
                sqlite_error(d, sqlite3_errcode(d), "sqlite3_backup_init", c);
                goto finish;
        }
        for (;;) {
                if (cancel && atomic_load(cancel)) {
                        c->result = DB_E_CANCELLED;
                        bufprintf(c->error, sizeof(c->error), "cancelled: sqlvigil is stopping");
                        break;
                }
                rc = sqlite3_backup_step(b, COPY_STEP_PAGES);
                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
                        /* A write that failed (a full or read-only file
                         * system) is the copy's; a read that failed, the
                         * source's. SQLite leaves the message on either. */
                        int sys = sqlite3_system_errno(d);

                        sqlite_error(sys > 0 || (rc & 0xff) == SQLITE_FULL ? d : src, rc, "copying the database", c);
                        if (sys > 0 || (rc & 0xff) == SQLITE_FULL)
                                bufprintf(c->error, sizeof(c->error), "writing the copy %s: %s%s%s", dest,
                                          sqlite3_errstr(rc), sys > 0 ? ": " : "", sys > 0 ? strerror(sys) : "");
                        break;
                }
                sleep_usec(COPY_STEP_PAUSE);
        }
        c->pages = sqlite3_backup_pagecount(b);
        rc = sqlite3_backup_finish(b);
        if (rc != SQLITE_OK && c->result == 0)
                sqlite_error(d, rc, "finishing the copy", c);
finish:
        if (in_txn) {
                (void)sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
                c->snapshot = now_usec(CLOCK_MONOTONIC) - snap;
        }
        if (d) {
                sqlite3_stmt *s = NULL;

                if (c->result == 0 && sqlite3_prepare_v2(d, "PRAGMA page_size", -1, &s, NULL) == SQLITE_OK &&
                    sqlite3_step(s) == SQLITE_ROW)
                        c->page_size = sqlite3_column_int64(s, 0);
                sqlite3_finalize(s);
                rc = sqlite3_close(d);
                if (rc != SQLITE_OK && c->result == 0)
                        sqlite_error(NULL, rc, "closing the copy", c);
        }
        if (c->result == 0) {
                r = copy_set_rollback_header(dest);
                if (r == 0)
                        r = fsync_path(dest, false);
                if (r < 0) {
                        c->result = r;
                        c->dest_failed = true;
                        c->fault = (DbFault){ .sys_errno = -r };
                        bufprintf(c->error, sizeof(c->error), "cannot finish %s: %s", dest, strerror(-r));
                } else if (stat(dest, &st) == 0)
                        c->bytes = (uint64_t)st.st_size;
        }
        if (c->result != 0)
                (void)unlink(dest);
        c->duration = now_usec(CLOCK_MONOTONIC) - start;
}

int copy_fd(int fd, const char *dest, uint64_t *ret_bytes, char *error, size_t error_size) {
        char buf[65536];
        uint64_t total = 0;
        off_t off = 0;
        int out, r = 0;

        out = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (out < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot create %s: %s", dest, strerror(errno));
                return r;
        }
        for (;;) {
                ssize_t n = pread(fd, buf, sizeof(buf), off), w = 0;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        bufprintf(error, error_size, "cannot read the file: %s", strerror(errno));
                        break;
                }
                if (n == 0)
                        break;
                while (w < n) {
                        ssize_t k = write(out, buf + w, (size_t)(n - w));

                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0) {
                                r = -errno;
                                bufprintf(error, error_size, "cannot write %s: %s", dest, strerror(errno));
                                goto done;
                        }
                        w += k;
                }
                off += n;
                total += (uint64_t)n;
        }
done:
        if (r == 0 && fsync(out) < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot sync %s: %s", dest, strerror(errno));
        }
        if (close(out) < 0 && r == 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot close %s: %s", dest, strerror(errno));
        }
        if (r < 0)
                (void)unlink(dest);
        else if (ret_bytes)
                *ret_bytes = total;
        return r;
}

char *copy_immutable_uri(const char *path) {
        static const char hex[] = "0123456789ABCDEF";
        static const char suffix[] = "?mode=ro&immutable=1";
        size_t n = strlen(path), o = 0;
        char *uri = sqlite3_malloc64(5 + 3 * n + sizeof(suffix));

        if (!uri)
                return NULL;
        memcpy(uri, "file:", 5);
        o = 5;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)path[i];

                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '/' ||
                    ch == '-' || ch == '.' || ch == '_' || ch == '~')
                        uri[o++] = (char)ch;
                else {
                        uri[o++] = '%';
                        uri[o++] = hex[ch >> 4];
                        uri[o++] = hex[ch & 15];
                }
        }
        memcpy(uri + o, suffix, sizeof(suffix));
        return uri;
}

static void run_check(const char *path, bool quick, CopyCheck *c);

void copy_check(const char *path, bool quick, CopyCheck *c) {
        char skew[sizeof(c->skew)];

        run_check(path, quick, c);
        if (quick || c->result == 0 || !compat_error_is_skew(c->first))
                return;
        bufprintf(skew, sizeof(skew), "%s", c->first);
        run_check(path, true, c);
        bufprintf(c->skew, sizeof(c->skew), "%s", skew);
}

static void run_check(const char *path, bool quick, CopyCheck *c) {
        usec_t start = now_usec(CLOCK_MONOTONIC);
        unsigned char hdr[100];
        sqlite3_stmt *s = NULL;
        char *uri = NULL;
        sqlite3 *d = NULL;
        int fd, rc;

        *c = (CopyCheck){ .quick = quick };
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
                c->result = DB_E_SQLITE;
                bufprintf(c->first, sizeof(c->first), "cannot read %s: %s", path,
                          fd < 0 ? strerror(errno) : "shorter than a database header");
                if (fd >= 0)
                        close(fd);
                return;
        }
        close(fd);
        if (memcmp(hdr, "SQLite format 3", 16) != 0) {
                c->result = 0;
                c->problems = 1;
                bufprintf(c->first, sizeof(c->first), "%s is not an SQLite database (no \"SQLite format 3\" header)",
                          path);
                c->duration = now_usec(CLOCK_MONOTONIC) - start;
                return;
        }
        c->wal_header = hdr[18] == 2 || hdr[19] == 2;
        /* immutable=1: no locks, no -wal, no -shm, nothing written beside
         * the file. A WAL-mode header would still look for a -wal: callers
         * fix the header of their own copies first. */
        uri = copy_immutable_uri(path);
        if (!uri) {
                c->result = DB_E_SQLITE;
                bufprintf(c->first, sizeof(c->first), "out of memory");
                return;
        }
        rc = sqlite3_open_v2(uri, &d, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);
        sqlite3_free(uri);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(d, quick ? "PRAGMA quick_check(100)" : "PRAGMA integrity_check(100)", -1, &s,
                                        NULL);
        if (rc != SQLITE_OK) {
                c->result = (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB ? 0 : DB_E_SQLITE;
                c->problems = c->result == 0;
                bufprintf(c->first, sizeof(c->first), "%s", d ? sqlite3_errmsg(d) : sqlite3_errstr(rc));
                goto finish;
        }
        rc = db_check_rows(s, &c->passed, &c->problems, c->first, sizeof(c->first));
        if (rc != SQLITE_DONE) {
                c->passed = false;
                /* Corruption met while checking is a finding. */
                if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) {
                        c->problems++;
                        if (!c->first[0])
                                bufprintf(c->first, sizeof(c->first), "%s", sqlite3_errmsg(d));
                } else {
                        c->result = DB_E_SQLITE;
                        bufprintf(c->first, sizeof(c->first), "%s", sqlite3_errmsg(d));
                }
        }
        sqlite3_finalize(s);
        s = NULL;
        if (sqlite3_prepare_v2(d, "SELECT (SELECT page_count FROM pragma_page_count), "
                                  "(SELECT page_size FROM pragma_page_size)",
                               -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW) {
                c->pages = sqlite3_column_int64(s, 0);
                c->page_size = sqlite3_column_int64(s, 1);
        }
finish:
        sqlite3_finalize(s);
        sqlite3_close(d);
        c->duration = now_usec(CLOCK_MONOTONIC) - start;
}

int copy_sha256(const char *path, char hex[65]) {
        uint8_t digest[SHA256_DIGEST_LENGTH];
        unsigned char buf[65536];
        SHA2_CTX ctx;
        int fd, r = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        SHA256Init(&ctx);
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                SHA256Update(&ctx, buf, (size_t)n);
        }
        close(fd);
        if (r < 0)
                return r;
        SHA256Final(digest, &ctx);
        for (size_t i = 0; i < sizeof(digest); i++)
                snprintf(hex + 2 * i, 3, "%02x", digest[i]);
        return 0;
}
