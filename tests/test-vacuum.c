/* SPDX-License-Identifier: MIT */
/* The vacuum rule: when free pages call for reclaiming, and how. */
#include "test.h"
#include "vacuum.h"

static VacuumInput input(int auto_vacuum, int64_t freelist, int64_t pages) {
        return (VacuumInput){
                .freelist = freelist,
                .page_count = pages,
                .auto_vacuum = auto_vacuum,
                .auto_vacuum_requested = -1,
                .min_free_pages = 256,
                .free_fraction = 0.05,
        };
}

static void test_trigger(void) {
        /* 256 + 0.05 * 10000 = 756. */
        VacuumInput in = input(2, 756, 10000);

        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_NOTHING);
        in.freelist = 757;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_STEPS);
        /* auto_vacuum = full reclaims by itself: nothing sqlvigil can do. */
        in.auto_vacuum = 1;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_CANNOT);
        in.freelist = 10;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_NOTHING);
}

static void test_admin(void) {
        VacuumInput in = input(2, 0, 100);

        /* An admin's run starts below the trigger... */
        in.admin = true;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_STEPS);
        /* ...but only where incremental vacuum works. */
        in.auto_vacuum = 0;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_REFUSED);
        in.auto_vacuum = 1;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_REFUSED);
        in.convert = true;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_REFUSED);
}

static void test_convert(void) {
        VacuumInput in = input(0, 5000, 10000);

        /* auto_vacuum none, unset in the configuration: only with convert. */
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_CANNOT);
        in.convert = true;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_CONVERT);
        /* Below the trigger, unasked: no conversion. */
        in.freelist = 10;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_NOTHING);
        /* Asked for explicitly: at once, whatever the free pages. */
        in.auto_vacuum_requested = 2;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_CONVERT);
        /* An explicit none or full is never overridden. */
        in.freelist = 5000;
        in.auto_vacuum_requested = 0;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_CANNOT);
        in.auto_vacuum_requested = 1;
        CHECK_INT(vacuum_plan(&in), VACUUM_PLAN_CANNOT);
}

int main(void) {
        test_trigger();
        test_admin();
        test_convert();
        return test_result("test-vacuum");
}
