/* SPDX-License-Identifier: MIT */
/*
 * B3's other half: the health check's own work, run back to back, with
 * sqlvigil's code (health_read_files() and db_probe(), as a round does),
 * on a database given on the command line:
 *     sqlvigil-probe-loop DB [N]
 * prints one JSON line with the median and p99 cost in microseconds.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "health.h"

static int cmp(const void *a, const void *b) {
        usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;

        return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
        PragmaRequest req[_PRAGMA_MAX] = { [PRAGMA_JOURNAL_MODE] = { .set = true } };
        int n = argc > 2 ? atoi(argv[2]) : 20000;
        usec_t *cost, *files;
        HealthFiles f = { 0 };
        char error[512] = "", wal[4096];
        DbPragmas pragmas;
        DbProbe p;
        Db *db;

        if (argc < 2 || n <= 0) {
                fprintf(stderr, "usage: sqlvigil-probe-loop DB [N]\n");
                return 2;
        }
        if (db_open(argv[1], false, &db, error, sizeof(error)) != 0 ||
            db_apply_pragmas(db, req, USEC_PER_SEC, &pragmas, error, sizeof(error)) != 0) {
                fprintf(stderr, "sqlvigil-probe-loop: %s\n", error);
                return 1;
        }
        bufprintf(wal, sizeof(wal), "%s-wal", argv[1]);
        cost = calloc((size_t)n, sizeof(*cost));
        files = calloc((size_t)n, sizeof(*files));
        if (!cost || !files)
                return 1;
        for (int i = 0; i < n; i++) {
                usec_t t0 = now_usec(CLOCK_MONOTONIC), t1;

                health_read_files(argv[1], wal, &f);
                t1 = now_usec(CLOCK_MONOTONIC);
                db_probe(db, &p);
                if (p.result != 0) {
                        fprintf(stderr, "sqlvigil-probe-loop: probe failed: %s\n", p.error);
                        return 1;
                }
                files[i] = t1 - t0;
                cost[i] = files[i] + p.duration;
        }
        qsort(cost, (size_t)n, sizeof(*cost), cmp);
        qsort(files, (size_t)n, sizeof(*files), cmp);
        printf("{\"n\": %d, \"p50_us\": %" PRIu64 ", \"p99_us\": %" PRIu64 ", \"files_p50_us\": %" PRIu64 "}\n", n,
               cost[n / 2], cost[n * 99 / 100], files[n / 2]);
        free(cost);
        free(files);
        db_free(db);
        return 0;
}
