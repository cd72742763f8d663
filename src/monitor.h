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
        usec_t period;          /* a round every period */
        void *userdata;
        /* A round ended: the facts are as fresh as they get. Loop thread. */
        void (*round_done)(void *userdata);
} MonitorEnv;

/* Whether the WAL write lock was free at some moment of a probe. */
typedef struct LockSighting {
        bool busy;              /* held by another process the whole time we looked */
        usec_t looked;          /* how long we looked */
        pid_t holder;           /* who held it (one of them) */
} LockSighting;

typedef struct MonitorFacts {
        HealthFiles files;
        bool have_probe;
        DbProbe probe;          /* the latest */
        usec_t probe_at;        /* CLOCK_MONOTONIC */
        usec_t lock_busy_for;   /* write lock held by others this long; 0: free at the last look */
        pid_t lock_holder;      /* who held it at the last look */
        char lock_holder_comm[32];
        usec_t check_usec;      /* the last check's cost: its file half plus the probe's work */
} MonitorFacts;

int monitor_new(Monitor **ret, const MonitorEnv *env);
Monitor *monitor_free(Monitor *m);

/* The first check, before the database thread exists: run on the loop
 * thread with the connection itself. */
void monitor_first_check(Monitor *m, Db *db);

/* The -shm, opened read-write and never closed before the connection (see
 * walindex.h), for watching the WAL write lock; -1: not known yet. */
void monitor_set_wal_index(Monitor *m, int shm_fd);

/* Looks at the WAL write lock (byte 120 of the -shm at shm_fd) until it is
 * free or max_wait has passed, without taking it: a look every few
 * milliseconds (1, 2, 5, then 10 ms apart). worker: stops early when it is
 * cancelling (NULL: never). Any thread. */
void monitor_watch_write_lock(int shm_fd, usec_t max_wait, Worker *worker, LockSighting *ret);

/* Starts the rounds every period (from now), probes going to db_worker. */
int monitor_start(Monitor *m, Worker *db_worker);

/* A new period (reload); the next round comes one period from now. */
int monitor_set_period(Monitor *m, usec_t period);

/* No more rounds. */
void monitor_stop(Monitor *m);

/* Reads the file facts now (for a status request that wants them fresh). */
void monitor_refresh_files(Monitor *m);

const MonitorFacts *monitor_facts(const Monitor *m);

/* p50 and p99 of the recent check costs, µs. */
void monitor_check_percentiles(const Monitor *m, usec_t *ret_p50, usec_t *ret_p99);

/* How long the probe watches a held write lock with this period: short
 * against it. */
usec_t monitor_probe_lock_wait(usec_t period);
