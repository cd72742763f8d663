/* SPDX-License-Identifier: MIT */
/* Task words and the back-off rule. */
#include "task.h"
#include "test.h"

static void test_backoff(void) {
        const usec_t base = 10 * USEC_PER_SEC, cap = 10 * USEC_PER_MINUTE;

        CHECK_INT(task_backoff(0, base, cap), 0);
        CHECK_INT(task_backoff(1, base, cap), 10 * USEC_PER_SEC);
        CHECK_INT(task_backoff(2, base, cap), 20 * USEC_PER_SEC);
        CHECK_INT(task_backoff(3, base, cap), 40 * USEC_PER_SEC);
        CHECK_INT(task_backoff(6, base, cap), 320 * USEC_PER_SEC);
        /* Capped, and never overflowing however long the failures last. */
        CHECK_INT(task_backoff(7, base, cap), cap);
        CHECK_INT(task_backoff(1000, base, cap), cap);
        CHECK_INT(task_backoff(UINT32_MAX, base, cap), cap);
        /* A base above the cap is the cap. */
        CHECK_INT(task_backoff(1, 2 * cap, cap), cap);
}

static void test_lock_holds(void) {
        LockHolds h = { 0 };

        lock_holds_add(&h, 5);
        lock_holds_add(&h, 20);
        lock_holds_add(&h, 7);
        CHECK_INT(h.count, 3);
        CHECK_INT(h.total, 32);
        CHECK_INT(h.max, 20);
}

static void test_names(void) {
        /* The words scripts and metrics rely on. */
        CHECK_STR(task_names[TASK_QUICK_CHECK], "quick_check");
        CHECK_STR(task_names[TASK_BACKUP], "backup");
        CHECK_STR(task_result_names[TASK_RESULT_CANCELLED], "cancelled");
        CHECK_STR(task_trigger_names[TRIGGER_WAL_PAGES], "wal-pages");
        for (int i = 0; i < _TASK_RESULT_MAX; i++)
                CHECK(task_result_names[i] != NULL);
        for (int i = 0; i < _TRIGGER_MAX; i++)
                CHECK(task_trigger_names[i] != NULL);
}

int main(void) {
        test_backoff();
        test_lock_holds();
        test_names();
        return test_result("test-task");
}
