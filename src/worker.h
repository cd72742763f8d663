/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Worker threads. The event loop submits jobs; a worker runs them one at a
 * time, in order (urgent jobs such as the health probe go ahead of queued
 * maintenance), and hands each finished job back to the loop, whose done()
 * callback runs on the loop thread. This is what keeps the event loop - and
 * with it the watchdog, signals and the control socket - responsive while a
 * quick_check reads a gigabyte or a checkpoint waits for readers.
 *
 * sqlvigil runs two: the database thread, the only thread that uses the
 * persistent connection once the daemon is running (its jobs get the Db),
 * and the file thread, for work that only touches files or opens its own
 * connections: writing the metrics file, taking and checking backups (its
 * jobs get NULL).
 *
 * A job is embedded in a larger struct by its submitter (container_of style),
 * which owns the parameters and results; the worker only calls run().
 */

#include <pthread.h>
#include <stdbool.h>

#include <systemd/sd-event.h>

#include "db.h"
#include "util.h"

typedef struct Job Job;

struct Job {
        const char *name;   /* for diagnostics: "probe", "checkpoint", ... */
        bool urgent;        /* runs before queued non-urgent jobs */
        bool cancellable;   /* worker_cancel() may stop it */
        void (*run)(Job *job, Db *db);     /* worker thread; db is the worker's, NULL for the file thread */
        void (*done)(Job *job, bool ran);  /* loop thread; owns and frees the job */
        usec_t finished_at; /* CLOCK_MONOTONIC, when run() returned; 0 if it did not run */
        Job *next;
};

typedef struct Worker Worker;

/* A thread named name (for ps and gdb, at most 15 characters) that runs
 * jobs with db (NULL: jobs that need no connection). Returns 0 or a
 * negative errno. */
int worker_new(Worker **ret, const char *name, Db *db, sd_event *event);

/* Stops the thread after the running job (cancelling it if cancellable);
 * queued jobs are completed with ran = false. Returns NULL. */
Worker *worker_free(Worker *w);
static inline void worker_freep(Worker **w) {
        worker_free(*w);
}

void worker_submit(Worker *w, Job *job);

/* Cancels the running job if it is cancellable, and every queued cancellable
 * job (they complete with ran = false). Cancellable jobs submitted later are
 * refused the same way: this is the stop sequence, after which only the
 * final checkpoint (not cancellable) runs. */
void worker_cancel(Worker *w);

/* Name of the running job, NULL when idle. */
const char *worker_current(Worker *w);

/* The worker's last sign of life (CLOCK_MONOTONIC): job boundaries, and for
 * the database thread SQLite's progress and busy handlers. Any thread. */
usec_t worker_heartbeat(Worker *w);

/* Whether worker_cancel() was called: for long jobs of the file thread to
 * look at between their steps. Any thread. */
bool worker_cancelling(Worker *w);
