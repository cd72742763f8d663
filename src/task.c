/* SPDX-License-Identifier: MIT */
#include "task.h"

const char *const task_names[_TASK_MAX] = {
        [TASK_CHECKPOINT] = "checkpoint",
        [TASK_VACUUM] = "vacuum",
        [TASK_ANALYZE] = "analyze",
        [TASK_QUICK_CHECK] = "quick_check",
        [TASK_BACKUP] = "backup",
};

const char *const task_result_names[_TASK_RESULT_MAX] = {
        [TASK_RESULT_OK] = "ok",
        [TASK_RESULT_BUSY] = "busy",
        [TASK_RESULT_INCOMPLETE] = "incomplete",
        [TASK_RESULT_FAILED] = "failed",
        [TASK_RESULT_CORRUPT] = "corrupt",
        [TASK_RESULT_CANCELLED] = "cancelled",
        [TASK_RESULT_INCONSISTENT] = "inconsistent",
        [TASK_RESULT_UNSUPPORTED] = "unsupported",
};

const char *const task_trigger_names[_TRIGGER_MAX] = {
        [TRIGGER_INTERVAL] = "interval",
        [TRIGGER_ADMIN] = "admin",
        [TRIGGER_WAL_PAGES] = "wal-pages",
        [TRIGGER_WAL_RESTART] = "wal-restart",
        [TRIGGER_WAL_SIZE] = "wal-size",
        [TRIGGER_WAL_SHRINK] = "wal-shrink",
        [TRIGGER_CONVERT] = "convert",
        [TRIGGER_RETRY] = "retry",
        [TRIGGER_STOP] = "stop",
        [TRIGGER_RESTORE] = "restore",
};

void lock_holds_add(LockHolds *h, usec_t held) {
        h->count++;
        h->total += held;
        h->max = MAX(h->max, held);
}

usec_t task_backoff(unsigned failures, usec_t base, usec_t cap) {
        usec_t d = base;

        if (failures == 0)
                return 0;
        for (unsigned i = 1; i < failures && d < cap; i++)
                d = d > cap / 2 ? cap : d * 2;
        return MIN(d, cap);
}
