/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Health rounds: a timer starts one every period; a round reads the file
 * facts on the loop (stat() of the database and its WAL, statvfs()) and
 * hands the probe of the connection to the database thread; the probe's
 * return (or, when the database thread is busy with a long job, a deadline)
 * ends it. The monitor only gathers facts and times them; the manager
 * judges them (health.c) and tells systemd.
 */

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "db.h"
#include "health.h"
#include "worker.h"

typedef struct Monitor Monitor;

/* Health check costs kept for the percentiles: the last this many. */
#define MONITOR_CHECK_HISTORY 1024

typedef struct MonitorEnv {
        sd_event *event;
        Worker *db_worker;      /* NULL until started */
        const char *db_path;
        const char *wal_path;
        void *userdata;
        /* A round ended: the facts are as fresh as they get. Loop thread. */
        void (*round_done)(void *userdata);
} MonitorEnv;

typedef struct MonitorFacts {
        HealthFiles files;
        bool have_probe;
        DbProbe probe;          /* the latest */
        usec_t probe_at;        /* CLOCK_MONOTONIC */
        usec_t lock_busy_for;   /* write lock unobtainable this long; 0: obtainable */
        usec_t check_usec;      /* the last check's cost: its file half plus the probe's work */
} MonitorFacts;

int monitor_new(Monitor **ret, const MonitorEnv *env);
Monitor *monitor_free(Monitor *m);

/* The first check, before the database thread exists: run on the loop
 * thread with the connection itself. */
void monitor_first_check(Monitor *m, Db *db, usec_t lock_wait);

/* Starts the rounds every period (from now), probes going to db_worker. */
int monitor_start(Monitor *m, Worker *db_worker, usec_t period);

/* A new period (reload); the next round comes one period from now. */
int monitor_set_period(Monitor *m, usec_t period);

/* No more rounds. */
void monitor_stop(Monitor *m);

/* Reads the file facts now (for a status request that wants them fresh). */
void monitor_refresh_files(Monitor *m);

const MonitorFacts *monitor_facts(const Monitor *m);

/* p50 and p99 of the recent check costs, µs. */
void monitor_check_percentiles(const Monitor *m, usec_t *ret_p50, usec_t *ret_p99);

/* How long the probe waits for the write lock with this period: short
 * against it. */
usec_t monitor_probe_lock_wait(usec_t period);
