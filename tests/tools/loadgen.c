/* SPDX-License-Identifier: MIT */
/*
 * sqlvigil-loadgen: the application, for tests and benchmarks.
 *
 *   writer  inserts rows at a fixed pace with busy_timeout (5000 ms by
 *           default) and synchronous=NORMAL (what the seed service used),
 *           the way an application would, timing every statement; with
 *           --transaction deferred (or immediate) each insert is a
 *           read-then-write transaction, BEGIN [IMMEDIATE]; SELECT; INSERT;
 *           COMMIT, the way ORMs and better-sqlite3's db.transaction() do;
 *   reader  opens read transactions: short ones with gaps, or one that
 *           never ends.
 *
 * Nothing here uses sqlvigil's code: it is an independent SQLite client.
 * Writers add rows (writer, seq) to table "load"; seq counts 1, 2, 3... per
 * writer, so a checker can tell exactly which committed rows exist. At the
 * end a writer prints one JSON line: attempts, successes, failures, latency
 * percentiles, and "start_usec", the writer's start on CLOCK_MONOTONIC (the
 * clock of Python's time.monotonic()), so other events can be lined up with
 * its statements. With --latencies FILE it also writes one line per statement:
 * "start_usec latency_usec ok" (start relative to the writer's start).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define MIN_U32(x) ((x) > UINT32_MAX ? UINT32_MAX : (uint32_t)(x))

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
        (void)sig;
        stop = 1;
}

static uint64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_until(uint64_t t) {
        struct timespec ts = { .tv_sec = (time_t)(t / 1000000u), .tv_nsec = (long)(t % 1000000u) * 1000 };

        while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

static void sleep_us(uint64_t us) {
        sleep_until(now_us() + us);
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return x < y ? -1 : x > y;
}

static void die(const char *what, sqlite3 *db) {
        fprintf(stderr, "loadgen: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
        exit(2);
}

static sqlite3 *open_db(const char *path, int busy_ms, int autocheckpoint, const char *synchronous) {
        sqlite3 *db;
        char sql[64];

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
                die("open", db);
        if (sqlite3_busy_timeout(db, busy_ms) != SQLITE_OK)
                die("busy_timeout", db);
        snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", synchronous);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
                die("synchronous", db);
        if (autocheckpoint >= 0) {
                snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint=%d", autocheckpoint);
                if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
                        die("wal_autocheckpoint", db);
        }
        return db;
}

static int writer(int argc, char **argv) {
        static const struct option options[] = {
                { "db", required_argument, NULL, 'd' },
                { "interval-us", required_argument, NULL, 'i' },
                { "duration", required_argument, NULL, 't' },
                { "count", required_argument, NULL, 'n' },
                { "payload", required_argument, NULL, 'p' },
                { "busy-timeout", required_argument, NULL, 'b' },
                { "latencies", required_argument, NULL, 'l' },
                { "id", required_argument, NULL, 'w' },
                { "autocheckpoint", required_argument, NULL, 'a' },
                { "synchronous", required_argument, NULL, 's' },
                { "transaction", required_argument, NULL, 'x' },
                {},
        };
        const char *path = NULL, *latencies = NULL, *synchronous = "normal", *transaction = NULL;
        uint64_t busy_errors = 0;
        sqlite3_stmt *select = NULL;
        uint64_t interval = 3000, count = 0, attempted = 0, succeeded = 0, failed = 0, start, next, deadline = 0;
        double duration = 0;
        int payload = 100, busy = 5000, id = 1, autocheckpoint = -1, c;
        uint32_t *lat = NULL;
        size_t lat_n = 0, lat_cap = 0;
        char first_error[256] = "";
        FILE *lf = NULL;
        sqlite3_stmt *stmt;
        sqlite3 *db;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'd': path = optarg; break;
                case 'i': interval = strtoull(optarg, NULL, 10); break;
                case 't': duration = atof(optarg); break;
                case 'n': count = strtoull(optarg, NULL, 10); break;
                case 'p': payload = atoi(optarg); break;
                case 'b': busy = atoi(optarg); break;
                case 'l': latencies = optarg; break;
                case 'w': id = atoi(optarg); break;
                case 'a': autocheckpoint = atoi(optarg); break;
                case 's': synchronous = optarg; break;
                case 'x': transaction = optarg; break;
                default: return 2;
                }
        }
        if (!path) {
                fprintf(stderr, "loadgen writer: --db is required\n");
                return 2;
        }
        if (transaction && strcmp(transaction, "deferred") != 0 && strcmp(transaction, "immediate") != 0) {
                fprintf(stderr, "loadgen writer: --transaction takes deferred or immediate\n");
                return 2;
        }
        db = open_db(path, busy, autocheckpoint, synchronous);
        if (sqlite3_exec(db,
                         "CREATE TABLE IF NOT EXISTS load(id INTEGER PRIMARY KEY, writer INT, seq INT, ts INT, payload BLOB)",
                         NULL, NULL, NULL) != SQLITE_OK)
                die("create table", db);
        if (sqlite3_prepare_v2(db, "INSERT INTO load(writer, seq, ts, payload) VALUES (?1, ?2, ?3, randomblob(?4))", -1,
                               &stmt, NULL) != SQLITE_OK)
                die("prepare", db);
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM load WHERE writer = ?1", -1, &select, NULL) != SQLITE_OK)
                die("prepare", db);
        if (latencies && !(lf = fopen(latencies, "w"))) {
                perror("loadgen: latencies");
                return 2;
        }
        printf("{\"ready\": true}\n");
        fflush(stdout);

        start = next = now_us();
        if (duration > 0)
                deadline = start + (uint64_t)(duration * 1e6);
        while (!stop && (!count || attempted < count) && (!deadline || now_us() < deadline)) {
                uint64_t t0, t1;
                int rc;

                sleep_until(next);
                if (stop)
                        break;
                attempted++;
                sqlite3_bind_int(stmt, 1, id);
                sqlite3_bind_int64(stmt, 2, (sqlite3_int64)(succeeded + 1));
                sqlite3_bind_int64(stmt, 3, (sqlite3_int64)time(NULL));
                sqlite3_bind_int(stmt, 4, payload);
                t0 = now_us();
                if (!transaction) {
                        rc = sqlite3_step(stmt);
                        sqlite3_reset(stmt);
                } else {
                        /* Read, then write, in one transaction. Deferred: the
                         * write lock is asked for at the INSERT, and SQLite
                         * answers SQLITE_BUSY at once, without the busy
                         * handler, when another connection holds it. */
                        rc = sqlite3_exec(db, strcmp(transaction, "immediate") == 0 ? "BEGIN IMMEDIATE" : "BEGIN",
                                          NULL, NULL, NULL);
                        if (rc == SQLITE_OK) {
                                sqlite3_bind_int(select, 1, id);
                                rc = sqlite3_step(select);
                                sqlite3_reset(select);
                                if (rc == SQLITE_ROW)
                                        rc = sqlite3_step(stmt);
                                sqlite3_reset(stmt);
                        }
                        if (rc == SQLITE_DONE)
                                rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? SQLITE_DONE
                                                                                             : sqlite3_errcode(db);
                        if (rc != SQLITE_DONE) {
                                /* The message before ROLLBACK replaces it. */
                                if (!first_error[0])
                                        snprintf(first_error, sizeof(first_error), "%s", sqlite3_errmsg(db));
                                (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                        }
                }
                t1 = now_us();
                if (rc == SQLITE_DONE)
                        succeeded++;
                else {
                        failed++;
                        if ((rc & 0xff) == SQLITE_BUSY)
                                busy_errors++;
                        if (!first_error[0])
                                snprintf(first_error, sizeof(first_error), "%s", sqlite3_errmsg(db));
                }
                if (lat_n == lat_cap) {
                        lat_cap = lat_cap ? 2 * lat_cap : 4096;
                        lat = realloc(lat, lat_cap * sizeof(*lat));
                        if (!lat)
                                die("out of memory", NULL);
                }
                lat[lat_n++] = (uint32_t)MIN_U32(t1 - t0);
                if (lf)
                        fprintf(lf, "%" PRIu64 " %" PRIu64 " %d\n", t0 - start, t1 - t0, rc == SQLITE_DONE);
                /* A fixed pace, without bursts to catch up after a stall. */
                next += interval;
                if (next < t1)
                        next = t1;
        }
        sqlite3_finalize(stmt);
        sqlite3_finalize(select);
        if (sqlite3_close(db) != SQLITE_OK)
                die("close", db);
        if (lf && fclose(lf) != 0) {
                perror("loadgen: latencies");
                return 2;
        }

        qsort(lat, lat_n, sizeof(*lat), cmp_u32);
        printf("{\"writer\": %d, \"attempted\": %" PRIu64 ", \"succeeded\": %" PRIu64 ", \"failed\": %" PRIu64
               ", \"busy\": %" PRIu64 ", \"p50_us\": %u, \"p99_us\": %u, \"max_us\": %u, \"seconds\": %.3f"
               ", \"first_error\": \"%s\", \"start_usec\": %" PRIu64 "}\n",
               id, attempted, succeeded, failed, busy_errors, lat_n ? lat[lat_n / 2] : 0,
               lat_n ? lat[lat_n * 99 / 100] : 0, lat_n ? lat[lat_n - 1] : 0, (double)(now_us() - start) / 1e6,
               first_error, start);
        free(lat);
        return failed ? 1 : 0;
}

static int reader(int argc, char **argv) {
        static const struct option options[] = {
                { "db", required_argument, NULL, 'd' },
                { "hold-ms", required_argument, NULL, 'h' },
                { "gap-ms", required_argument, NULL, 'g' },
                { "duration", required_argument, NULL, 't' },
                {},
        };
        const char *path = NULL;
        long hold = 10, gap = 10;
        double duration = 0;
        uint64_t deadline = 0, reads = 0;
        sqlite3 *db;
        int c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'd': path = optarg; break;
                case 'h': hold = atol(optarg); break;
                case 'g': gap = atol(optarg); break;
                case 't': duration = atof(optarg); break;
                default: return 2;
                }
        }
        if (!path) {
                fprintf(stderr, "loadgen reader: --db is required\n");
                return 2;
        }
        db = open_db(path, 5000, -1, "normal");
        if (duration > 0)
                deadline = now_us() + (uint64_t)(duration * 1e6);
        while (!stop && (!deadline || now_us() < deadline)) {
                if (sqlite3_exec(db, "BEGIN; SELECT count(*) FROM sqlite_schema;", NULL,
                                 NULL, NULL) != SQLITE_OK)
                        die("read", db);
                reads++;
                if (reads == 1) {
                        printf("{\"reading\": true, \"pid\": %d}\n", (int)getpid());
                        fflush(stdout);
                }
                if (hold < 0) {
                        /* Never leave: the checkpoint starver. */
                        while (!stop)
                                pause();
                } else
                        sleep_us((uint64_t)hold * 1000);
                if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                        die("commit", db);
                sleep_us((uint64_t)gap * 1000);
        }
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (sqlite3_close(db) != SQLITE_OK)
                die("close", db);
        printf("{\"reads\": %" PRIu64 "}\n", reads);
        return 0;
}

int main(int argc, char **argv) {
        struct sigaction sa = { .sa_handler = on_signal };

        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        if (argc < 2) {
                fprintf(stderr, "usage: sqlvigil-loadgen writer|reader --db PATH [options]\n");
                return 2;
        }
        if (strcmp(argv[1], "writer") == 0)
                return writer(argc - 1, argv + 1);
        if (strcmp(argv[1], "reader") == 0)
                return reader(argc - 1, argv + 1);
        fprintf(stderr, "loadgen: unknown mode '%s'\n", argv[1]);
        return 2;
}
