/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Which backups to keep: [backup] keep_last, keep_daily, keep_weekly and
 * keep_monthly, as restic's "forget --keep-*" counts them, so an operator
 * who knows one knows the other. Pure: times in, decisions out; the
 * calendar is UTC (days, ISO 8601 weeks, months).
 *
 *   keep_last N     the N newest backups;
 *   keep_daily N    the newest backup of each of the N newest days that
 *                   have a backup (days without one are not counted, so a
 *                   host that was off for a week still keeps N days);
 *   keep_weekly N   likewise per ISO week, keep_monthly per month.
 *
 * A backup is kept when any rule keeps it. At least one is always kept:
 * keep_last is at least 1.
 */

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef struct RetentionRules {
        unsigned last, daily, weekly, monthly;
} RetentionRules;

typedef enum RetentionReason {
        RETENTION_DROP = 0,
        RETENTION_LAST = 1 << 0,
        RETENTION_DAILY = 1 << 1,
        RETENTION_WEEKLY = 1 << 2,
        RETENTION_MONTHLY = 1 << 3,
} RetentionReason;

/* times[i]: when backup i was taken, CLOCK_REALTIME µs; any order. Sets
 * keep[i] to the RetentionReason bits that keep it (0: delete it). */
void retention_plan(const usec_t *times, size_t n, const RetentionRules *rules, unsigned *keep);
