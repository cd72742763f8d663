/* SPDX-License-Identifier: MIT */
/* The checkpoint policy and how a run's outcome is read from its passes. */
#include "checkpoint.h"
#include "test.h"

static DbCheckpoint pass(int result, int frames, int copied, usec_t duration) {
        return (DbCheckpoint){ .result = result, .log_frames = frames, .checkpointed = copied, .duration = duration };
}

static void test_outcome_passive(void) {
        DbCheckpoint p = pass(0, 100, 100, 300);
        CheckpointOutcome o;

        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, NULL, true, &o);
        CHECK_INT(o.result, TASK_RESULT_OK);
        CHECK_INT(o.frames, 100);
        CHECK_INT(o.copied, 100);
        CHECK(o.caught_up);
        CHECK_INT(o.lock_usec, 0); /* PASSIVE takes no writer lock */
        CHECK_INT(o.duration, 300);

        /* A reader kept it short: incomplete, not busy, not failed. */
        p = pass(0, 100, 60, 300);
        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, NULL, true, &o);
        CHECK_INT(o.result, TASK_RESULT_INCOMPLETE);
        CHECK(!o.caught_up);
        CHECK_INT(o.copied, 60);

        /* Another connection held the checkpoint lock all along. */
        p = pass(DB_E_BUSY, -1, -1, 20000);
        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, NULL, true, &o);
        CHECK_INT(o.result, TASK_RESULT_BUSY);
        CHECK(o.lock_taken);
        CHECK_INT(o.frames, -1);
}

static void test_outcome_stronger(void) {
        DbCheckpoint p = pass(0, 200, 150, 100), f = pass(0, 0, 0, 5000);
        CheckpointOutcome o;

        /* TRUNCATE reports the WAL it leaves (0 frames): the frames come from
         * the PASSIVE pass, and all of them reached the database. */
        f.ckpt_lock_wait = 1000;
        checkpoint_outcome(CHECKPOINT_TRUNCATE, &p, &f, true, &o);
        CHECK_INT(o.result, TASK_RESULT_OK);
        CHECK_INT(o.frames, 200);
        CHECK_INT(o.copied, 200);
        CHECK_INT(o.duration, 5100);
        /* The wait for the checkpoint lock held nothing. */
        CHECK_INT(o.lock_usec, 4000);

        /* RESTART that could not wait out a reader: busy; what it copied counts. */
        p = pass(0, 300, 200, 100);
        f = pass(DB_E_BUSY, 310, 250, 20000);
        checkpoint_outcome(CHECKPOINT_RESTART, &p, &f, true, &o);
        CHECK_INT(o.result, TASK_RESULT_BUSY);
        CHECK_INT(o.frames, 310);
        CHECK_INT(o.copied, 250);
        CHECK(!o.lock_taken);

        /* A failure in either pass is a failure, with SQLite's message. */
        p = pass(0, 10, 10, 100);
        f = pass(DB_E_SQLITE, -1, -1, 50);
        snprintf(f.error, sizeof(f.error), "disk I/O error");
        checkpoint_outcome(CHECKPOINT_TRUNCATE, &p, &f, true, &o);
        CHECK_INT(o.result, TASK_RESULT_FAILED);
        CHECK_STR(o.error, "disk I/O error");
}

static void test_outcome_cancelled(void) {
        DbCheckpoint p = { 0 };
        CheckpointOutcome o;

        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, NULL, false, &o);
        CHECK_INT(o.result, TASK_RESULT_CANCELLED);
        p = pass(DB_E_CANCELLED, -1, -1, 10);
        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, NULL, true, &o);
        CHECK_INT(o.result, TASK_RESULT_CANCELLED);
}

static void test_choose(void) {
        CheckpointInput in = {
                .wal_valid = true,
                .wal = { .mx_frame = 10, .n_backfill = 0 },
                .new_frames = 10,
                .may_reset = true,
                .min_wal_pages = 1000,
                .truncate_wal_size = 256 << 20,
        };
        CheckpointMode mode;
        TaskTrigger trigger;

        /* A few new frames: nothing until the interval. */
        CHECK(!checkpoint_choose(&in, &mode, &trigger));
        in.interval = true;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_PASSIVE);
        CHECK_INT(trigger, TRIGGER_INTERVAL);

        /* min_wal_pages new frames: PASSIVE at once. */
        in.interval = false;
        in.new_frames = 1000;
        in.wal.mx_frame = 1000;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_PASSIVE);
        CHECK_INT(trigger, TRIGGER_WAL_PAGES);

        /* The WAL never started over: RESTART, unless backing off. */
        in.wal.mx_frame = 2000;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_RESTART);
        CHECK_INT(trigger, TRIGGER_WAL_RESTART);
        in.may_reset = false;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_PASSIVE);

        /* A -wal file past truncate_wal_size: TRUNCATE. */
        in.may_reset = true;
        in.wal_bytes = (256 << 20) + 1;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_TRUNCATE);
        CHECK_INT(trigger, TRIGGER_WAL_SIZE);
        in.truncate_wal_size = 0;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_RESTART);

        /* Without the WAL index, only the file size can decide. */
        in.wal_valid = false;
        CHECK(!checkpoint_choose(&in, &mode, &trigger));
}

int main(void) {
        test_outcome_passive();
        test_outcome_stronger();
        test_outcome_cancelled();
        test_choose();
        return test_result("test-checkpoint");
}
