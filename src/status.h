/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One snapshot of everything sqlvigil knows about itself and its database,
 * built by the manager from its parts (manager_status()) and read by every
 * consumer: the STATUS= line, the control socket's health and stats
 * (report.c), the metrics file (metrics.c). Like OpenBSD ntpd's status
 * structure: the facts are gathered once, the renderings differ.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backup.h"
#include "db.h"
#include "health.h"
#include "lifecycle.h"
#include "maintenance.h"
#include "task.h"
#include "walindex.h"

typedef struct Status {
        /* The daemon. */
        Lifecycle lifecycle;
        const char *instance;
        const char *db_path;
        pid_t pid;
        usec_t started_rt;       /* CLOCK_REALTIME */
        usec_t uptime;
        uint64_t rss_bytes;

        /* Health. */
        HealthResult health;
        usec_t health_since;     /* CLOCK_REALTIME of the last change */
        usec_t checked_at;       /* CLOCK_REALTIME of the last judgement */
        uint64_t checks;
        usec_t check_usec;       /* what the last check cost */
        usec_t check_usec_p50, check_usec_p99;

        /* The database. */
        HealthFiles files;
        int64_t page_size, page_count, freelist_count;
        bool wal_valid;
        WalIndex wal;
        PragmaStatus pragmas[_PRAGMA_MAX];

        /* Maintenance. */
        const char *running;     /* the task running now, NULL if none */
        bool starved;
        TaskRun last[_TASK_MAX];
        MaintenanceTotals totals;

        /* Backups. */
        const char *backup_directory; /* NULL: not configured */
        BackupFacts backups;
} Status;

/* The STATUS= line: "ok; WAL 1.2M; 12 free pages; last checkpoint 3s ago". */
void status_line(const Status *s, usec_t now_rt, char *buf, size_t size);

/* Resident set size of this process in bytes, 0 if unknown. */
uint64_t status_rss_bytes(void);
