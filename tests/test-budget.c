/* SPDX-License-Identifier: MIT */
/* Step sizing against a simulated cost model; no database, no sleeping. */
#include "budget.h"
#include "test.h"

#define MS USEC_PER_MSEC

/* A step's cost: 0.5 ms fixed plus a per-page cost, and a cliff (three times
 * the per-page cost) past `cliff` pages, as a cache spill looks. */
static usec_t cost(uint32_t pages, double usec_per_page, uint32_t cliff) {
        double c = 500 + pages * usec_per_page;

        if (cliff && pages > cliff)
                c += (pages - cliff) * usec_per_page * 2;
        return (usec_t)c;
}

static void test_converges_under_budget(void) {
        Budget b;
        usec_t worst = 0;

        budget_init(&b, 20 * MS, 0, 0);
        CHECK_INT(b.pages, BUDGET_FIRST_STEP);
        for (int i = 0; i < 60; i++) {
                usec_t took = cost(b.pages, 25.0, 0);

                if (i > 0)
                        worst = MAX(worst, took);
                budget_record(&b, b.pages, took);
        }
        /* Aims at 3/4 of the budget and never overruns it. */
        CHECK(worst <= 20 * MS);
        CHECK(cost(b.pages, 25.0, 0) >= 12 * MS);
        CHECK(cost(b.pages, 25.0, 0) <= 16 * MS);
}

static void test_growth_limited(void) {
        Budget b;

        budget_init(&b, 20 * MS, 0, 0);
        /* A step that cost nothing must not make the next one huge. */
        budget_record(&b, 16, 1);
        CHECK_INT(b.pages, 32);
        budget_record(&b, 32, 1);
        CHECK_INT(b.pages, 64);
}

static void test_overrun_shrinks_at_once(void) {
        Budget b;

        budget_init(&b, 20 * MS, 10.0, 0);
        CHECK_INT(b.pages, 1500); /* 15 ms / 10 us */
        /* The pages got ten times dearer: believed at once, not averaged. */
        budget_record(&b, 1500, 150 * MS);
        CHECK(b.pages <= 150);
        CHECK(b.ceiling == 1350);
}

static void test_cliff_ceiling(void) {
        Budget b;
        int overruns = 0;

        budget_init(&b, 20 * MS, 0, 0);
        for (int i = 0; i < 200; i++) {
                usec_t took = cost(b.pages, 25.0, 450);

                if (took > 20 * MS)
                        overruns++;
                budget_record(&b, b.pages, took);
        }
        /* The smoothed estimate would walk back into the cliff again and
         * again; the ceiling allows it once. */
        CHECK(overruns <= 1);
}

static void test_cache_cap(void) {
        Budget b;

        budget_init(&b, 20 * MS, 1.0, 500);
        CHECK_INT(b.max_pages, 375);
        CHECK_INT(b.pages, 375);
        budget_record(&b, 375, 375);
        CHECK_INT(b.pages, 375);
}

static void test_pause(void) {
        Budget b;

        budget_init(&b, 20 * MS, 0, 0);
        /* After a 15 ms step a writer that waited all along sleeps 10 ms. */
        CHECK_INT(budget_writer_quantum(15 * MS), 10 * MS);
        CHECK_INT(budget_writer_quantum(0), 1 * MS);
        CHECK_INT(budget_writer_quantum(20 * MS), 15 * MS);
        CHECK_INT(budget_writer_quantum(10 * USEC_PER_SEC), 100 * MS);
        CHECK_INT(budget_pause(&b, 15 * MS), 11 * MS);
        CHECK_INT(budget_pause(&b, 1 * MS), 10 * MS); /* at least half the budget */
        CHECK_INT(budget_pause(&b, 28 * MS), 16 * MS);
}

int main(void) {
        test_converges_under_budget();
        test_growth_limited();
        test_overrun_shrinks_at_once();
        test_cliff_ceiling();
        test_cache_cap();
        test_pause();
        return test_result("test-budget");
}
