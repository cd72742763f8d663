/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The worker thread: the only thread that uses the database connection once
 * the daemon is running. The event loop submits jobs; the worker runs them one
 * at a time, in order (urgent jobs such as the health probe go ahead of queued
 * maintenance), and hands each finished job back to the loop, whose done()
 * callback runs on the loop thread. This is what keeps the event loop - and
 * with it the watchdog, signals and the control socket - responsive while a
 * quick_check reads a gigabyte or a checkpoint waits for readers.
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
        void (*run)(Db *db, Job *job);     /* worker thread */
        void (*done)(Job *job, bool ran);  /* loop thread; owns and frees the job */
        usec_t finished_at; /* CLOCK_MONOTONIC, when run() returned; 0 if it did not run */
        Job *next;
};

typedef struct Worker Worker;

int worker_new(Worker **ret, Db *db, sd_event *event);

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

/* The worker's last sign of life (CLOCK_MONOTONIC), and whether it is idle. */
usec_t worker_heartbeat(Worker *w);
