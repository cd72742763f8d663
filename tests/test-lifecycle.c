/* SPDX-License-Identifier: MIT */
/* The life cycle's rules: which sd_notify messages each stage allows. */
#include "lifecycle.h"
#include "test.h"

static void test_start_and_reload(void) {
        Lifecycle s = LIFECYCLE_STARTING;

        CHECK(lifecycle_allows(s, NOTIFY_STATUS));
        CHECK(!lifecycle_allows(s, NOTIFY_WATCHDOG));
        CHECK(!lifecycle_allows(s, NOTIFY_RELOADING));
        CHECK(!lifecycle_allows(s, NOTIFY_EXTEND_TIMEOUT));
        CHECK(!lifecycle_allows(s, NOTIFY_STOPPING_STATUS));
        s = lifecycle_next(s, NOTIFY_READY);
        CHECK_INT(s, LIFECYCLE_RUNNING);
        CHECK(!lifecycle_allows(s, NOTIFY_STOPPING_STATUS));
        /* A second READY=1 without a reload is not allowed. */
        CHECK(!lifecycle_allows(s, NOTIFY_READY));
        CHECK(lifecycle_allows(s, NOTIFY_WATCHDOG));
        s = lifecycle_next(s, NOTIFY_RELOADING);
        CHECK_INT(s, LIFECYCLE_RELOADING);
        /* systemd enforces the watchdog while reloading too. */
        CHECK(lifecycle_allows(s, NOTIFY_WATCHDOG));
        CHECK(!lifecycle_allows(s, NOTIFY_RELOADING));
        s = lifecycle_next(s, NOTIFY_READY);
        CHECK_INT(s, LIFECYCLE_RUNNING);
}

static void test_stop_wins(void) {
        /* From every stage, STOPPING=1 is final: nothing but extensions after it. */
        for (Lifecycle from = 0; from < LIFECYCLE_STOPPING; from++) {
                Lifecycle s = lifecycle_next(from, NOTIFY_STOPPING);

                CHECK_INT(s, LIFECYCLE_STOPPING);
                CHECK(!lifecycle_allows(s, NOTIFY_READY));
                CHECK(!lifecycle_allows(s, NOTIFY_RELOADING));
                CHECK(!lifecycle_allows(s, NOTIFY_STATUS));
                CHECK(!lifecycle_allows(s, NOTIFY_WATCHDOG));
                CHECK(!lifecycle_allows(s, NOTIFY_STOPPING));
                CHECK(lifecycle_allows(s, NOTIFY_EXTEND_TIMEOUT));
                CHECK(lifecycle_allows(s, NOTIFY_STOPPING_STATUS));
                /* A refused message changes nothing. */
                CHECK_INT(lifecycle_next(s, NOTIFY_READY), LIFECYCLE_STOPPING);
                CHECK_INT(lifecycle_next(s, NOTIFY_RELOADING), LIFECYCLE_STOPPING);
        }
        /* A reload that finishes after the stop began: its READY=1 is refused. */
        {
                Lifecycle s = LIFECYCLE_RUNNING;

                s = lifecycle_next(s, NOTIFY_RELOADING);
                s = lifecycle_next(s, NOTIFY_STOPPING);
                CHECK(!lifecycle_allows(s, NOTIFY_READY));
                CHECK_INT(lifecycle_next(s, NOTIFY_READY), LIFECYCLE_STOPPING);
        }
}

static void test_names(void) {
        CHECK_STR(lifecycle_names[LIFECYCLE_RUNNING], "running");
        CHECK_STR(lifecycle_names[LIFECYCLE_STOPPING], "stopping");
}

int main(void) {
        test_start_and_reload();
        test_stop_wins();
        test_names();
        return test_result("test-lifecycle");
}
