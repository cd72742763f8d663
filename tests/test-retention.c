/* SPDX-License-Identifier: MIT */
/* Retention over a simulated calendar: the rules applied after every new
 * backup, as the daemon does, with the clock injected. */
#include <string.h>
#include <time.h>

#include "retention.h"
#include "test.h"

#define MAXB 512

/* UTC time of y-m-d h:00. */
static usec_t at(int y, int mon, int d, int h) {
        struct tm tm = { .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h };

        return (usec_t)timegm(&tm) * USEC_PER_SEC;
}

typedef struct Dir {
        usec_t t[MAXB];
        size_t n;
} Dir;

/* One more backup at t, then retention: what the daemon does. */
static void take(Dir *d, usec_t t, const RetentionRules *r) {
        unsigned keep[MAXB];
        size_t j = 0;

        d->t[d->n++] = t;
        retention_plan(d->t, d->n, r, keep);
        for (size_t i = 0; i < d->n; i++)
                if (keep[i])
                        d->t[j++] = d->t[i];
        d->n = j;
}

static bool has(const Dir *d, usec_t t) {
        for (size_t i = 0; i < d->n; i++)
                if (d->t[i] == t)
                        return true;
        return false;
}

static void test_daily_for_sixty_days(void) {
        RetentionRules r = { .last = 3, .daily = 5, .weekly = 3, .monthly = 2 };
        Dir d = { .n = 0 };

        /* 2026-01-01 (a Thursday) to 2026-03-01 (a Sunday), at 02:00. */
        for (usec_t t = at(2026, 1, 1, 2); t <= at(2026, 3, 1, 2); t += USEC_PER_DAY)
                take(&d, t, &r);
        /* last 3: Feb 27, 28, Mar 1; daily 5: Feb 25 - Mar 1; weekly 3:
         * the Sundays of ISO weeks 9, 8, 7 (Mar 1, Feb 22, Feb 15);
         * monthly 2: Mar 1, Feb 28. */
        CHECK_INT(d.n, 7);
        CHECK(has(&d, at(2026, 2, 15, 2)));
        CHECK(has(&d, at(2026, 2, 22, 2)));
        for (int day = 25; day <= 28; day++)
                CHECK(has(&d, at(2026, 2, day, 2)));
        CHECK(has(&d, at(2026, 3, 1, 2)));
        CHECK(!has(&d, at(2026, 1, 31, 2))); /* January fell out of monthly = 2 */
}

static void test_several_a_day(void) {
        RetentionRules r = { .last = 2, .daily = 3, .weekly = 0, .monthly = 0 };
        Dir d = { .n = 0 };

        /* Every 6 hours from 2026-05-01 00:00 to 2026-05-05 18:00. */
        for (usec_t t = at(2026, 5, 1, 0); t <= at(2026, 5, 5, 18); t += 6 * USEC_PER_HOUR)
                take(&d, t, &r);
        /* last 2: May 5 12:00 and 18:00; daily 3: the last of May 5, 4, 3. */
        CHECK_INT(d.n, 4);
        CHECK(has(&d, at(2026, 5, 5, 12)));
        CHECK(has(&d, at(2026, 5, 5, 18)));
        CHECK(has(&d, at(2026, 5, 4, 18)));
        CHECK(has(&d, at(2026, 5, 3, 18)));
}

static void test_gaps_count_only_days_with_backups(void) {
        RetentionRules r = { .last = 1, .daily = 3, .weekly = 0, .monthly = 0 };
        Dir d = { .n = 0 };

        /* The host was off from the 3rd to the 20th. */
        take(&d, at(2026, 6, 1, 2), &r);
        take(&d, at(2026, 6, 2, 2), &r);
        take(&d, at(2026, 6, 21, 2), &r);
        CHECK_INT(d.n, 3);
        take(&d, at(2026, 6, 22, 2), &r);
        CHECK_INT(d.n, 3);
        CHECK(!has(&d, at(2026, 6, 1, 2)));
}

static void test_iso_week_across_the_year(void) {
        RetentionRules r = { .last = 1, .daily = 0, .weekly = 2, .monthly = 0 };
        unsigned keep[4];
        /* 2026-12-31 and 2027-01-03 are both in ISO week 2026-W53;
         * 2027-01-04 starts 2027-W01; 2026-12-27 is in 2026-W52. */
        usec_t t[4] = { at(2026, 12, 27, 2), at(2026, 12, 31, 2), at(2027, 1, 3, 2), at(2027, 1, 4, 2) };

        retention_plan(t, 4, &r, keep);
        CHECK_INT(keep[3], RETENTION_LAST | RETENTION_WEEKLY);
        CHECK_INT(keep[2], RETENTION_WEEKLY);
        CHECK_INT(keep[1], 0);
        CHECK_INT(keep[0], 0);
}

static void test_edges(void) {
        RetentionRules none = { 0 };
        unsigned keep[3] = { 7, 7, 7 };
        usec_t t[3] = { at(2026, 1, 1, 0), at(2026, 1, 1, 0), at(2025, 1, 1, 0) };

        retention_plan(t, 0, &none, keep);
        /* keep_last 0 still keeps the newest: never an empty directory. */
        retention_plan(t, 3, &none, keep);
        CHECK_INT(keep[0], RETENTION_LAST);
        CHECK_INT(keep[1], 0);
        CHECK_INT(keep[2], 0);
        /* Order of the input does not matter. */
        {
                RetentionRules r = { .last = 1, .monthly = 5 };
                usec_t u[3] = { at(2025, 1, 1, 0), at(2026, 3, 1, 0), at(2026, 2, 1, 0) };

                retention_plan(u, 3, &r, keep);
                CHECK_INT(keep[1], RETENTION_LAST | RETENTION_MONTHLY);
                CHECK_INT(keep[2], RETENTION_MONTHLY);
                CHECK_INT(keep[0], RETENTION_MONTHLY);
        }
}

int main(void) {
        test_daily_for_sixty_days();
        test_several_a_day();
        test_gaps_count_only_days_with_backups();
        test_iso_week_across_the_year();
        test_edges();
        return test_result("test-retention");
}
