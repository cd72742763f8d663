/* SPDX-License-Identifier: MIT */
/* The checkpoint policy and how a run's outcome is read from its passes. */
#include "checkpoint.h"
#include "test.h"

static DbCheckpoint pass(int result, int frames, int copied, usec_t duration) {
        return (DbCheckpoint){ .result = result, .log_frames = frames, .checkpointed = copied, .duration = duration };
}

static DbCheckpoint none(void) {
        return pass(0, -1, -1, 0);
}

static void test_outcome_passive(void) {
        CheckpointPasses p = { .first = pass(0, 100, 100, 300), .passive = pass(0, 100, 100, 300), .final = none() };
        CheckpointOutcome o;

        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_OK);
        CHECK_INT(o.frames, 100);
        CHECK_INT(o.copied, 100);
        CHECK(o.caught_up);

        /* A reader kept it short: incomplete, not busy, not failed. */
        p.first = p.passive = pass(0, 100, 60, 300);
        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_INCOMPLETE);
        CHECK(!o.caught_up);
        CHECK_INT(o.copied, 60);

        /* Another connection held the checkpoint lock all along. */
        p.first = p.passive = pass(DB_E_BUSY, -1, -1, 20000);
        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_BUSY);
        CHECK(o.lock_taken);
        CHECK_INT(o.frames, -1);
}

static void test_outcome_stronger(void) {
        CheckpointPasses p = { .first = pass(0, 200, 150, 100), .passive = pass(0, 210, 210, 100),
                               .final = pass(0, 0, 0, 5000), .final_ran = true, .reset = true };
        CheckpointOutcome o;

        /* TRUNCATE reports the WAL it leaves (0 frames): the frames come from
         * the PASSIVE passes, and all of them reached the database. */
        checkpoint_outcome(CHECKPOINT_TRUNCATE, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_OK);
        CHECK_INT(o.frames, 210);
        CHECK_INT(o.copied, 210);
        CHECK(o.caught_up);

        /* A RESTART whose slices never got the readers out by the deadline:
         * busy when its last attempt was, what it copied counts. */
        p = (CheckpointPasses){ .first = pass(0, 300, 200, 100), .passive = pass(0, 300, 200, 100),
                                .final = pass(DB_E_BUSY, 310, 250, 20000), .final_ran = true };
        checkpoint_outcome(CHECKPOINT_RESTART, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_BUSY);
        CHECK_INT(o.frames, 310);
        CHECK_INT(o.copied, 250);
        CHECK(!o.lock_taken);
        CHECK(!o.caught_up);

        /* Slices that only waited for a stuck reader (no attempt): incomplete. */
        p = (CheckpointPasses){ .first = pass(0, 300, 200, 100), .passive = pass(0, 320, 200, 100), .final = none() };
        checkpoint_outcome(CHECKPOINT_TRUNCATE, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_INCOMPLETE);
        CHECK_INT(o.frames, 320);
        CHECK_INT(o.copied, 200);

        /* The WAL could be reset without the lock (nothing pending, nobody
         * in the WAL): a RESTART that is done. */
        p = (CheckpointPasses){ .first = pass(0, 40, 40, 100), .passive = pass(0, 40, 40, 100), .final = none(),
                                .reset = true };
        checkpoint_outcome(CHECKPOINT_RESTART, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_OK);
        CHECK_INT(o.copied, 40);

        /* A failure in any pass is a failure, with SQLite's message. */
        p = (CheckpointPasses){ .first = pass(0, 10, 10, 100), .passive = pass(0, 10, 10, 100),
                                .final = pass(DB_E_SQLITE, -1, -1, 50), .final_ran = true };
        snprintf(p.final.error, sizeof(p.final.error), "disk I/O error");
        checkpoint_outcome(CHECKPOINT_TRUNCATE, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_FAILED);
        CHECK_STR(o.error, "disk I/O error");
}

static void test_outcome_cancelled(void) {
        CheckpointPasses p = { .first = none(), .passive = none(), .final = none() };
        CheckpointOutcome o;

        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, false, &o);
        CHECK_INT(o.result, TASK_RESULT_CANCELLED);
        p.passive = pass(DB_E_CANCELLED, -1, -1, 10);
        checkpoint_outcome(CHECKPOINT_PASSIVE, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_CANCELLED);
        p = (CheckpointPasses){ .first = pass(0, 5, 5, 1), .passive = pass(0, 5, 5, 1), .final = none(),
                                .cancelled = true };
        checkpoint_outcome(CHECKPOINT_TRUNCATE, &p, true, &o);
        CHECK_INT(o.result, TASK_RESULT_CANCELLED);
}

static void test_reset_plan(void) {
        WalIndex w = { .mx_frame = 100, .n_backfill = 100, .read_mark = { 0, 100, 100, 0, 0 } };
        WalLocks l = { 0 };
        uint32_t stuck[WALINDEX_READERS] = { 0 };
        int slot;

        /* Nothing pending, no reader in the WAL: the next writer resets it. */
        CHECK_INT(checkpoint_reset_plan(&w, &l, stuck, false, &slot), RESET_PLAN_DONE);
        CHECK_INT(slot, 0);
        /* A reader on mark 0 reads the database file only: still done. */
        l.read[0].held = true;
        CHECK_INT(checkpoint_reset_plan(&w, &l, stuck, false, &slot), RESET_PLAN_DONE);

        /* A reader whose snapshot is the WAL's end: it only keeps the WAL
         * from starting over, and leaves in moments: worth a brief hold. */
        l.read[1] = (WalLock){ .held = true, .pid = 42 };
        CHECK_INT(checkpoint_reset_plan(&w, &l, stuck, true, &slot), RESET_PLAN_TRY);
        CHECK_INT(slot, 1);
        /* Frames pending and no reader: the hold copies them and resets. */
        l.read[1].held = false;
        w.n_backfill = 90;
        CHECK_INT(checkpoint_reset_plan(&w, &l, stuck, true, &slot), RESET_PLAN_TRY);

        /* A reader at an old frame, seen there for the first time: try... */
        w.mx_frame = 200;
        l.read[2] = (WalLock){ .held = true, .pid = 7 };
        w.read_mark[2] = 120;
        CHECK_INT(checkpoint_reset_plan(&w, &l, stuck, false, &slot), RESET_PLAN_TRY);
        CHECK_INT(slot, 2);
        /* ...at a new frame since the last slice: a new short reader: try... */
        stuck[2] = 110;
        CHECK_INT(checkpoint_reset_plan(&w, &l, stuck, true, &slot), RESET_PLAN_TRY);
        /* ...at the same old frame as the last slice saw: a long reader.
         * Holding the lock would keep every writer waiting with it. */
        stuck[2] = 120;
        CHECK_INT(checkpoint_reset_plan(&w, &l, stuck, true, &slot), RESET_PLAN_WAIT);
        CHECK_INT(slot, 2);
        CHECK_INT(l.read[slot].pid, 7);
}

static void test_choose(void) {
        CheckpointInput in = {
                .wal_valid = true,
                .wal = { .mx_frame = 10, .n_backfill = 0 },
                .new_frames = 10,
                .may_reset = true,
                .may_restart = true,
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
        /* A RESTART already left this very WAL for the next writer: an
         * idle database is not restarted again and again. */
        in.may_reset = true;
        in.may_restart = false;
        in.new_frames = 0;
        in.wal.n_backfill = 2000;
        CHECK(!checkpoint_choose(&in, &mode, &trigger));
        in.may_restart = true;
        in.new_frames = 1000;
        in.wal.n_backfill = 0;

        /* A -wal file past truncate_wal_size: TRUNCATE. */
        in.may_reset = true;
        in.wal_bytes = (256 << 20) + 1;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_TRUNCATE);
        CHECK_INT(trigger, TRIGGER_WAL_SIZE);
        in.truncate_wal_size = 0;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_RESTART);

        /* A -wal file left large after a burst, nothing pending: shrink it. */
        in.wal = (WalIndex){ .mx_frame = 100, .n_backfill = 100 };
        in.new_frames = 0;
        in.wal_bytes = 80 << 20;
        in.shrink_wal_size = 16 << 20;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(mode, CHECKPOINT_TRUNCATE);
        CHECK_INT(trigger, TRIGGER_WAL_SHRINK);
        /* Not while frames are pending (a PASSIVE comes first)... */
        in.wal.n_backfill = 50;
        in.interval = true;
        CHECK(checkpoint_choose(&in, &mode, &trigger));
        CHECK_INT(trigger, TRIGGER_INTERVAL);
        /* ...nor while backing off. */
        in.interval = false;
        in.wal.n_backfill = 100;
        in.may_reset = false;
        CHECK(!checkpoint_choose(&in, &mode, &trigger));

        /* Without the WAL index, only the file size can decide. */
        in.may_reset = true;
        in.wal_valid = false;
        CHECK(!checkpoint_choose(&in, &mode, &trigger));
}

int main(void) {
        test_outcome_passive();
        test_outcome_stronger();
        test_outcome_cancelled();
        test_reset_plan();
        test_choose();
        return test_result("test-checkpoint");
}
