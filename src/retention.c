/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "retention.h"

typedef struct Entry {
        usec_t time;
        size_t index;
} Entry;

static int newest_first(const void *a, const void *b) {
        const Entry *x = a, *y = b;

        if (x->time != y->time)
                return x->time > y->time ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* The calendar bucket of t for each rule: a number that is equal for two
 * times in the same day, ISO week or month (UTC). */
static long bucket(usec_t t, RetentionReason rule) {
        time_t s = (time_t)(t / USEC_PER_SEC);
        struct tm tm;
        char iso[16];

        if (!gmtime_r(&s, &tm))
                return -1;
        switch (rule) {
        case RETENTION_DAILY:
                return (long)(s / 86400);
        case RETENTION_WEEKLY:
                /* %G: the ISO 8601 week-based year; %V: its week, 01-53. */
                if (strftime(iso, sizeof(iso), "%G%V", &tm) == 0)
                        return -1;
                return strtol(iso, NULL, 10);
        case RETENTION_MONTHLY:
                return (long)(tm.tm_year + 1900) * 12 + tm.tm_mon;
        default:
                return -1;
        }
}

static void keep_per_bucket(const Entry *e, size_t n, unsigned count, RetentionReason rule, unsigned *keep) {
        long last = 0;
        unsigned kept = 0;

        for (size_t i = 0; i < n && kept < count; i++) {
                long b = bucket(e[i].time, rule);

                /* Newest first: the first backup of a new bucket is that
                 * bucket's newest. */
                if (i > 0 && b == last)
                        continue;
                last = b;
                keep[e[i].index] |= rule;
                kept++;
        }
}

void retention_plan(const usec_t *times, size_t n, const RetentionRules *rules, unsigned *keep) {
        Entry *e;

        memset(keep, 0, n * sizeof(*keep));
        if (n == 0)
                return;
        e = calloc(n, sizeof(*e));
        if (!e) {
                /* Without memory, keep everything: never delete by mistake. */
                for (size_t i = 0; i < n; i++)
                        keep[i] = RETENTION_LAST;
                return;
        }
        for (size_t i = 0; i < n; i++)
                e[i] = (Entry){ .time = times[i], .index = i };
        qsort(e, n, sizeof(*e), newest_first);
        for (size_t i = 0; i < n && i < MAX(rules->last, 1u); i++)
                keep[e[i].index] |= RETENTION_LAST;
        keep_per_bucket(e, n, rules->daily, RETENTION_DAILY, keep);
        keep_per_bucket(e, n, rules->weekly, RETENTION_WEEKLY, keep);
        keep_per_bucket(e, n, rules->monthly, RETENTION_MONTHLY, keep);
        free(e);
}
