/* SPDX-License-Identifier: MIT */
#include "scheduler.h"

uint64_t scheduler_random(Scheduler *s) {
        uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static usec_t jitter(Scheduler *s, usec_t interval) {
        return interval ? scheduler_random(s) % interval : 0;
}

void scheduler_init(Scheduler *s, const usec_t intervals[_TASK_MAX], usec_t now, uint64_t seed) {
        *s = (Scheduler){ .rng = seed };
        for (int t = 0; t < _TASK_MAX; t++) {
                usec_t spread = t == TASK_QUICK_CHECK ? MIN(intervals[t], SCHEDULER_FIRST_CHECK) : intervals[t];

                s->task[t].interval = intervals[t];
                s->task[t].next = intervals[t] ? now + jitter(s, spread) : USEC_INFINITY;
        }
}

void scheduler_set_intervals(Scheduler *s, const usec_t intervals[_TASK_MAX], usec_t now) {
        for (int t = 0; t < _TASK_MAX; t++) {
                TaskSchedule *ts = &s->task[t];

                if (ts->interval == intervals[t])
                        continue;
                ts->interval = intervals[t];
                if (!ts->interval)
                        ts->next = USEC_INFINITY;
                else if (ts->last_start)
                        ts->next = MAX(ts->last_start + ts->interval, now);
                else
                        ts->next = now + jitter(s, ts->interval);
        }
}

usec_t scheduler_next(const Scheduler *s) {
        usec_t next = USEC_INFINITY;

        if (s->stopped)
                return USEC_INFINITY;
        for (int t = 0; t < _TASK_MAX; t++)
                if (!s->task[t].running && s->task[t].next < next)
                        next = s->task[t].next;
        return next;
}

int scheduler_take_due(Scheduler *s, usec_t now) {
        int best = -1;

        if (s->stopped)
                return -1;
        /* The most overdue first, so a slow task cannot starve the others. */
        for (int t = 0; t < _TASK_MAX; t++)
                if (!s->task[t].running && s->task[t].next <= now && (best < 0 || s->task[t].next < s->task[best].next))
                        best = t;
        if (best >= 0) {
                s->task[best].running = true;
                s->task[best].last_start = now;
        }
        return best;
}

bool scheduler_begin(Scheduler *s, TaskId t, usec_t now) {
        if (s->stopped || s->task[t].running)
                return false;
        s->task[t].running = true;
        s->task[t].last_start = now;
        return true;
}

void scheduler_done(Scheduler *s, TaskId t, usec_t now) {
        TaskSchedule *ts = &s->task[t];

        ts->running = false;
        if (!ts->interval) {
                ts->next = USEC_INFINITY;
                return;
        }
        /* Triggers are ignored while a task runs: the condition that caused
         * them is checked again when it is due next. */
        ts->next = MAX(ts->last_start + ts->interval, now);
}

void scheduler_retry(Scheduler *s, TaskId t, usec_t now, usec_t delay) {
        TaskSchedule *ts = &s->task[t];

        ts->running = false;
        if (ts->interval)
                ts->next = now + MIN(delay, ts->interval);
}

void scheduler_defer(Scheduler *s, TaskId t, usec_t now, usec_t delay) {
        TaskSchedule *ts = &s->task[t];

        ts->running = false;
        if (ts->interval)
                ts->next = now + delay;
}

void scheduler_trigger(Scheduler *s, TaskId t, usec_t now) {
        TaskSchedule *ts = &s->task[t];

        if (s->stopped || ts->running)
                return;
        if (ts->next > now)
                ts->next = now;
}

void scheduler_stop(Scheduler *s) {
        s->stopped = true;
}
