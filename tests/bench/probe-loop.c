/* SPDX-License-Identifier: MIT */
/*
 * B3's other half: the health check's own work, with sqlvigil's code, as a
 * round does it (monitor.c: health_read_files() and the WAL index header
 * on the loop; db_probe() and the look at the write lock on the database
 * thread), on a database given on the command line:
 *     sqlvigil-probe-loop DB [N [GAP_US]]
 * N checks (default 20000), back to back or GAP_US microseconds asleep
 * between them (the daemon's checks come one health interval apart);
 * prints one JSON line with the median and p99 cost in microseconds, and
 * the median of each part.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "db.h"
#include "health.h"
#include "monitor.h"
#include "walindex.h"

static int cmp(const void *a, const void *b) {
        usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;

        return x < y ? -1 : x > y;
}

static usec_t median(usec_t *v, int n) {
        qsort(v, (size_t)n, sizeof(*v), cmp);
        return v[n / 2];
}

int main(int argc, char **argv) {
        PragmaRequest req[_PRAGMA_MAX] = { [PRAGMA_JOURNAL_MODE] = { .set = true } };
        int n = argc > 2 ? atoi(argv[2]) : 20000;
        usec_t gap = argc > 3 ? (usec_t)strtoull(argv[3], NULL, 10) : 0;
        usec_t *cost, *files, *probe, *look, p50_files, p50_probe, p50_look;
        HealthFiles f = { 0 };
        char error[512] = "", wal[4096], shm[4096];
        DbPragmas pragmas;
        DbProbe p;
        WalIndex w;
        LockSighting lock;
        Db *db;
        int shm_fd;

        if (argc < 2 || n <= 0) {
                fprintf(stderr, "usage: sqlvigil-probe-loop DB [N [GAP_US]]\n");
                return 2;
        }
        if (db_open(argv[1], false, &db, error, sizeof(error)) != 0 ||
            db_apply_pragmas(db, req, USEC_PER_SEC, &pragmas, error, sizeof(error)) != 0) {
                fprintf(stderr, "sqlvigil-probe-loop: %s\n", error);
                return 1;
        }
        bufprintf(wal, sizeof(wal), "%s-wal", argv[1]);
        bufprintf(shm, sizeof(shm), "%s-shm", argv[1]);
        /* The connection has read: the -shm exists. Kept open until after
         * db_free(): closing it would drop SQLite's locks (walindex.h). */
        shm_fd = open(shm, O_RDWR | O_CLOEXEC);
        if (shm_fd < 0) {
                perror("sqlvigil-probe-loop: -shm");
                return 1;
        }
        cost = calloc((size_t)n, sizeof(*cost));
        files = calloc((size_t)n, sizeof(*files));
        probe = calloc((size_t)n, sizeof(*probe));
        look = calloc((size_t)n, sizeof(*look));
        if (!cost || !files || !probe || !look)
                return 1;
        for (int i = 0; i < n; i++) {
                usec_t t0, t1, t2;

                if (gap)
                        sleep_usec(gap);
                t0 = now_usec(CLOCK_MONOTONIC);
                health_read_files(argv[1], wal, &f);
                (void)walindex_read(shm_fd, &w);
                t1 = now_usec(CLOCK_MONOTONIC);
                db_probe(db, &p);
                if (p.result != 0) {
                        fprintf(stderr, "sqlvigil-probe-loop: probe failed: %s\n", p.error);
                        return 1;
                }
                t2 = now_usec(CLOCK_MONOTONIC);
                monitor_watch_write_lock(shm_fd, monitor_probe_lock_wait(USEC_PER_SEC), NULL, &lock);
                files[i] = t1 - t0;
                probe[i] = p.duration;
                look[i] = now_usec(CLOCK_MONOTONIC) - t2;
                /* What the daemon counts as a check's cost (monitor.c):
                 * the file part and the probe's own timing. */
                cost[i] = files[i] + p.duration;
        }
        p50_files = median(files, n);
        p50_probe = median(probe, n);
        p50_look = median(look, n);
        qsort(cost, (size_t)n, sizeof(*cost), cmp);
        printf("{\"n\": %d, \"gap_us\": %" PRIu64 ", \"p50_us\": %" PRIu64 ", \"p99_us\": %" PRIu64
               ", \"files_p50_us\": %" PRIu64 ", \"probe_p50_us\": %" PRIu64 ", \"lock_look_p50_us\": %" PRIu64 "}\n",
               n, gap, cost[n / 2], cost[n * 99 / 100], p50_files, p50_probe, p50_look);
        free(cost);
        free(files);
        free(probe);
        free(look);
        db_free(db);
        close(shm_fd);
        return 0;
}
