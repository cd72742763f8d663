/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * When each maintenance task runs. Pure bookkeeping on times passed in by
 * the caller, so its rules are unit-tested without sleeping:
 *
 *  - every task has an interval (0: the task is off);
 *  - first runs are spread by a random delay in [0, interval), like
 *    systemd's RandomizedDelaySec=, so that instances started together on
 *    one host do not all vacuum at the same moment; quick_check's first run
 *    comes within SCHEDULER_FIRST_CHECK of the start instead, so that a
 *    restart (perhaps the watchdog's, after quick_check found corruption)
 *    looks at the database again soon, not up to an interval later;
 *  - a task never overlaps itself: while it runs it is not due again, and a
 *    trigger (the WAL reached min_wal_pages) only moves it earlier;
 *  - after a run the next is one interval after the run's start, or at once
 *    if the run took longer than that;
 *  - once stopped, nothing is due any more.
 */

#include <stdbool.h>
#include <stdint.h>

#include "task.h"
#include "util.h"


#define SCHEDULER_FIRST_CHECK (2 * USEC_PER_MINUTE)

typedef struct TaskSchedule {
        usec_t interval; /* 0: off */
        usec_t next;     /* CLOCK_MONOTONIC; USEC_INFINITY when off */
        bool running;
        usec_t last_start; /* 0: never ran */
} TaskSchedule;

typedef struct Scheduler {
        TaskSchedule task[_TASK_MAX];
        uint64_t rng;
        bool stopped;
} Scheduler;

void scheduler_init(Scheduler *s, const usec_t intervals[_TASK_MAX], usec_t now, uint64_t seed);

/* New intervals (reload): an unchanged task keeps its time; a changed one
 * runs one new interval after its last start, or after a fresh random delay
 * if it never ran, and never in the past. */
void scheduler_set_intervals(Scheduler *s, const usec_t intervals[_TASK_MAX], usec_t now);

/* The earliest time a task that is not running is due; USEC_INFINITY if none. */
usec_t scheduler_next(const Scheduler *s);

/* A task due at now and not running, marked running; -1 if none. */
int scheduler_take_due(Scheduler *s, usec_t now);

/* Marks a task running for a run not started by the clock (an admin
 * command or a trigger). Returns false if it is already running. */
bool scheduler_begin(Scheduler *s, TaskId t, usec_t now);

/* The run that began at last_start ended at now: the next is one interval
 * after its start, or now if that has passed. */
void scheduler_done(Scheduler *s, TaskId t, usec_t now);

/* The run ended at now without getting the lock: the next comes after
 * delay, or after one interval if that is shorter; an off task stays off. */
void scheduler_retry(Scheduler *s, TaskId t, usec_t now, usec_t delay);

/* The run ended at now and failed: the next comes after delay, even if that
 * is longer than the interval (a back-off); an off task stays off. */
void scheduler_defer(Scheduler *s, TaskId t, usec_t now, usec_t delay);

/* Makes a task due at now (unless running or stopped), even one whose
 * interval is 0: a trigger is a condition that needs the task, not a
 * schedule. Afterwards an off task is off again. */
void scheduler_trigger(Scheduler *s, TaskId t, usec_t now);

void scheduler_stop(Scheduler *s);

/* The pseudo-random generator behind the jitter (splitmix64), exposed for tests. */
uint64_t scheduler_random(Scheduler *s);
