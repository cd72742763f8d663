/* SPDX-License-Identifier: MIT */
/* Scheduling rules on a fake clock: intervals, jitter bounds, no overlap. */
#include "scheduler.h"
#include "test.h"

#define S USEC_PER_SEC

static void test_jitter_bounds(void) {
        usec_t intervals[_TASK_MAX] = { 60 * S, 600 * S, 86400 * S, 0 };
        usec_t now = 1000 * S;
        usec_t min_seen = USEC_INFINITY, max_seen = 0;

        /* Over many seeds every first run lies in [now, now + interval). */
        for (uint64_t seed = 1; seed <= 2000; seed++) {
                Scheduler s;

                scheduler_init(&s, intervals, now, seed * 7919);
                for (int t = 0; t < 3; t++) {
                        CHECK(s.task[t].next >= now);
                        CHECK(s.task[t].next < now + intervals[t]);
                }
                CHECK(s.task[TASK_QUICK_CHECK].next == USEC_INFINITY); /* interval 0: off */
                min_seen = MIN(min_seen, s.task[TASK_CHECKPOINT].next - now);
                max_seen = MAX(max_seen, s.task[TASK_CHECKPOINT].next - now);
        }
        /* ...and they are spread over it, not bunched at one end. */
        CHECK(min_seen < 3 * S);
        CHECK(max_seen > 57 * S);

        /* quick_check looks again soon after a start, whatever its interval. */
        {
                usec_t q[_TASK_MAX] = { 0, 0, 0, 6 * 3600 * S };

                for (uint64_t seed = 1; seed <= 200; seed++) {
                        Scheduler s;

                        scheduler_init(&s, q, now, seed);
                        CHECK(s.task[TASK_QUICK_CHECK].next >= now);
                        CHECK(s.task[TASK_QUICK_CHECK].next < now + SCHEDULER_FIRST_CHECK);
                }
        }

        /* Two instances with different seeds do not align. */
        {
                Scheduler a, b;

                scheduler_init(&a, intervals, now, 1);
                scheduler_init(&b, intervals, now, 2);
                CHECK(a.task[TASK_VACUUM].next != b.task[TASK_VACUUM].next);
        }
}

static void test_run_cycle(void) {
        usec_t intervals[_TASK_MAX] = { 60 * S, 0, 0, 0 };
        usec_t now = 0, first;
        Scheduler s;

        scheduler_init(&s, intervals, now, 42);
        first = s.task[TASK_CHECKPOINT].next;
        CHECK_INT(scheduler_next(&s), first);
        CHECK_INT(scheduler_take_due(&s, first - 1), -1); /* not yet */
        CHECK_INT(scheduler_take_due(&s, first), TASK_CHECKPOINT);
        /* Running: never due again, never overlaps itself. */
        CHECK_INT(scheduler_take_due(&s, first + 1000 * S), -1);
        CHECK_INT(scheduler_next(&s), USEC_INFINITY);
        CHECK(!scheduler_begin(&s, TASK_CHECKPOINT, first + 1));
        scheduler_trigger(&s, TASK_CHECKPOINT, first + 2);
        CHECK_INT(scheduler_take_due(&s, first + 2), -1);

        /* A 5 s run: next one interval after its start. */
        scheduler_done(&s, TASK_CHECKPOINT, first + 5 * S);
        CHECK_INT(s.task[TASK_CHECKPOINT].next, first + 60 * S);
        CHECK_INT(scheduler_next(&s), first + 60 * S);

        /* A run longer than the interval: the next is due at once. */
        CHECK_INT(scheduler_take_due(&s, first + 60 * S), TASK_CHECKPOINT);
        scheduler_done(&s, TASK_CHECKPOINT, first + 200 * S);
        CHECK_INT(s.task[TASK_CHECKPOINT].next, first + 200 * S);

        /* A trigger makes it due now. */
        CHECK_INT(scheduler_take_due(&s, first + 200 * S), TASK_CHECKPOINT);
        scheduler_done(&s, TASK_CHECKPOINT, first + 201 * S);
        scheduler_trigger(&s, TASK_CHECKPOINT, first + 210 * S);
        CHECK_INT(scheduler_next(&s), first + 210 * S);
        CHECK_INT(scheduler_take_due(&s, first + 210 * S), TASK_CHECKPOINT);
        scheduler_done(&s, TASK_CHECKPOINT, first + 210 * S);
        CHECK_INT(s.task[TASK_CHECKPOINT].next, first + 270 * S);
}

static void test_most_overdue_first(void) {
        usec_t intervals[_TASK_MAX] = { 10 * S, 10 * S, 10 * S, 10 * S };
        Scheduler s;
        int order[_TASK_MAX], t, n = 0;

        scheduler_init(&s, intervals, 0, 5);
        s.task[TASK_CHECKPOINT].next = 4 * S;
        s.task[TASK_VACUUM].next = 1 * S;
        s.task[TASK_ANALYZE].next = 3 * S;
        s.task[TASK_QUICK_CHECK].next = 2 * S;
        while ((t = scheduler_take_due(&s, 5 * S)) >= 0)
                order[n++] = t;
        CHECK_INT(n, 4);
        CHECK_INT(order[0], TASK_VACUUM);
        CHECK_INT(order[1], TASK_QUICK_CHECK);
        CHECK_INT(order[2], TASK_ANALYZE);
        CHECK_INT(order[3], TASK_CHECKPOINT);
}

static void test_admin_begin(void) {
        usec_t intervals[_TASK_MAX] = { 60 * S, 60 * S, 0, 0 };
        Scheduler s;

        scheduler_init(&s, intervals, 0, 9);
        CHECK(scheduler_begin(&s, TASK_ANALYZE, 5 * S)); /* off on a timer, still runnable by hand */
        CHECK(!scheduler_begin(&s, TASK_ANALYZE, 6 * S));
        scheduler_done(&s, TASK_ANALYZE, 7 * S);
        CHECK_INT(s.task[TASK_ANALYZE].next, USEC_INFINITY);
        CHECK(scheduler_begin(&s, TASK_VACUUM, 5 * S));
        scheduler_done(&s, TASK_VACUUM, 6 * S);
        CHECK_INT(s.task[TASK_VACUUM].next, 65 * S); /* an admin run postpones the scheduled one */

        /* A run that found the lock taken comes again after the delay, or
         * after one interval if that is sooner; an off task stays off. */
        CHECK(scheduler_begin(&s, TASK_VACUUM, 70 * S));
        scheduler_retry(&s, TASK_VACUUM, 71 * S, 5 * S);
        CHECK_INT(s.task[TASK_VACUUM].next, 76 * S);
        CHECK(scheduler_begin(&s, TASK_VACUUM, 80 * S));
        scheduler_retry(&s, TASK_VACUUM, 81 * S, 600 * S);
        CHECK_INT(s.task[TASK_VACUUM].next, 141 * S);
        CHECK(scheduler_begin(&s, TASK_ANALYZE, 90 * S));
        scheduler_retry(&s, TASK_ANALYZE, 91 * S, 5 * S);
        CHECK_INT(s.task[TASK_ANALYZE].next, USEC_INFINITY);
        CHECK(!s.task[TASK_ANALYZE].running);
}

static void test_reload(void) {
        usec_t a[_TASK_MAX] = { 60 * S, 600 * S, 0, 3600 * S };
        usec_t b[_TASK_MAX] = { 60 * S, 100 * S, 300 * S, 0 };
        Scheduler s;
        usec_t checkpoint_next;

        scheduler_init(&s, a, 0, 11);
        checkpoint_next = s.task[TASK_CHECKPOINT].next;
        CHECK_INT(scheduler_take_due(&s, 600 * S) >= 0, 1);
        /* Let the vacuum have run at 500 s. */
        s.task[TASK_VACUUM].running = false;
        s.task[TASK_VACUUM].last_start = 500 * S;
        s.task[TASK_VACUUM].next = 1100 * S;
        s.task[TASK_CHECKPOINT].running = false;
        s.task[TASK_CHECKPOINT].next = checkpoint_next;
        s.task[TASK_QUICK_CHECK].running = false;

        scheduler_set_intervals(&s, b, 700 * S);
        CHECK_INT(s.task[TASK_CHECKPOINT].next, checkpoint_next);       /* unchanged interval: kept */
        CHECK_INT(s.task[TASK_VACUUM].next, 700 * S);                    /* 500 + 100 is past: now */
        CHECK(s.task[TASK_ANALYZE].next >= 700 * S && s.task[TASK_ANALYZE].next < 1000 * S); /* new: jittered */
        CHECK_INT(s.task[TASK_QUICK_CHECK].next, USEC_INFINITY);        /* turned off */

        /* A trigger runs even an off task once; then it is off again. */
        s.task[TASK_CHECKPOINT].next = s.task[TASK_VACUUM].next = s.task[TASK_ANALYZE].next = 10000 * S;
        scheduler_trigger(&s, TASK_QUICK_CHECK, 800 * S);
        CHECK_INT(scheduler_take_due(&s, 800 * S), TASK_QUICK_CHECK);
        scheduler_done(&s, TASK_QUICK_CHECK, 801 * S);
        CHECK_INT(s.task[TASK_QUICK_CHECK].next, USEC_INFINITY);

        /* Off tasks are never due; a stopped scheduler has nothing due. */
        scheduler_stop(&s);
        CHECK_INT(scheduler_next(&s), USEC_INFINITY);
        CHECK_INT(scheduler_take_due(&s, 100000 * S), -1);
        CHECK(!scheduler_begin(&s, TASK_CHECKPOINT, 100000 * S));
}

int main(void) {
        test_jitter_bounds();
        test_run_cycle();
        test_most_overdue_first();
        test_admin_begin();
        test_reload();
        return test_result("test-scheduler");
}
