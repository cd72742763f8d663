/* SPDX-License-Identifier: MIT */
#include "budget.h"

static uint32_t pages_for(const Budget *b, double usec_per_page) {
        double n;

        if (usec_per_page <= 0)
                n = BUDGET_FIRST_STEP;
        else
                n = (double)b->target / usec_per_page;
        n = MIN(n, (double)b->max_pages);
        n = MIN(n, (double)b->ceiling);
        return n < 1 ? 1 : (uint32_t)n;
}

void budget_init(Budget *b, usec_t step_budget, double learned_usec_per_page, uint32_t cache_pages) {
        *b = (Budget){
                .budget = step_budget,
                .target = step_budget * 3 / 4,
                .usec_per_page = learned_usec_per_page,
                .ceiling = BUDGET_MAX_STEP,
                .max_pages = cache_pages ? MAX(cache_pages * 3 / 4, 1) : BUDGET_MAX_STEP,
        };
        b->max_pages = MIN(b->max_pages, BUDGET_MAX_STEP);
        b->pages = pages_for(b, learned_usec_per_page);
}

void budget_record(Budget *b, uint32_t pages, usec_t took) {
        double cost, smoothed;
        uint32_t next;

        if (pages == 0)
                return;
        cost = (double)took / pages;
        if (took > b->budget && pages > 1)
                b->ceiling = MIN(b->ceiling, pages * 9 / 10);
        else if (took <= b->target && b->ceiling < BUDGET_MAX_STEP)
                /* One slow step must not cap the whole run: steps that keep
                 * to the target lift the ceiling again, slowly. */
                b->ceiling = MIN((uint32_t)BUDGET_MAX_STEP, b->ceiling + MAX(b->ceiling / 8, 1u));
        if (b->usec_per_page <= 0 || (took > b->target && cost > b->usec_per_page))
                /* The first measurement, or an overrun: believe it at once. */
                smoothed = cost;
        else
                smoothed = (b->usec_per_page + cost) / 2;
        b->usec_per_page = smoothed;

        next = pages_for(b, smoothed);
        /* Grow at most 2x per step: one cheap step (pages that only needed
         * truncating) must not make the next one huge. Shrinking is not
         * limited. */
        if (next > 2 * pages && pages < BUDGET_MAX_STEP / 2)
                next = 2 * pages;
        b->pages = next;
}

usec_t budget_writer_quantum(usec_t waited) {
        static const unsigned delays_ms[] = { 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 };
        usec_t total = 0;

        for (size_t i = 0; i < ELEMENTSOF(delays_ms); i++) {
                total += delays_ms[i] * USEC_PER_MSEC;
                if (waited < total)
                        return delays_ms[i] * USEC_PER_MSEC;
        }
        return 100 * USEC_PER_MSEC;
}

usec_t budget_pause(const Budget *b, usec_t took) {
        return MAX(budget_writer_quantum(took) + USEC_PER_MSEC, b->budget / 2);
}
