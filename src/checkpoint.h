/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * WAL checkpoints: which one the WAL needs (a pure decision), the WAL watch
 * that asks that question often, runs on the database thread, the outcome of
 * a run (one computation for the scheduled, the admin's and the final
 * checkpoint at stop), and starvation: readers that keep every checkpoint
 * from catching up.
 *
 * Every run starts with a PASSIVE pass, which copies what it can without
 * taking the write lock. A RESTART or TRUNCATE then runs in slices: each
 * looks at the read locks (without taking any), and takes the write lock
 * only when holding it can help - when the readers in the way started after
 * the last commit, so they will be gone in moments, while a reader stuck at
 * an old frame is waited for without it - and then for about step_budget at
 * most; between slices the lock is free for the applications' writers. A
 * large -wal file is shortened in pieces of that budget too (walindex_trim())
 * before the last TRUNCATE. A run that reaches its deadline (stop_timeout at
 * stop, busy_timeout for an admin) ends incomplete, naming the reader.
 */

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "files.h"
#include "task.h"
#include "walindex.h"

typedef struct Maintenance Maintenance;
typedef struct Checkpointer Checkpointer;

/* What a checkpoint run did. */
typedef struct CheckpointOutcome {
        CheckpointMode mode;
        TaskResult result;   /* ok (caught up), busy, incomplete, failed, cancelled */
        int frames;          /* frames in the WAL; -1 unknown (another connection held the checkpoint lock) */
        int copied;          /* of those, now in the database; -1 unknown */
        bool caught_up;      /* everything was copied (and for RESTART/TRUNCATE, the WAL reset) */
        bool lock_taken;     /* another connection held the checkpoint lock all along */
        usec_t duration;
        LockHolds holds;     /* the run's holds of the write lock (none for PASSIVE) */
        uint64_t wal_before, wal_after; /* -wal file sizes, bytes */
        unsigned slices;
        pid_t reader;        /* incomplete: the reader in the way, 0 if none was seen */
        char reader_comm[32];
        char error[256];     /* result failed: SQLite's message */
} CheckpointOutcome;

/* The passes of a run, for checkpoint_outcome(). */
typedef struct CheckpointPasses {
        DbCheckpoint first;   /* the first PASSIVE pass: how many frames there were */
        DbCheckpoint passive; /* the last PASSIVE pass */
        DbCheckpoint final;   /* the last pass of the stronger mode ... */
        bool final_ran;       /* ... if one ran */
        bool reset;           /* RESTART/TRUNCATE: the goal was reached (the WAL starts over;
                               * for TRUNCATE the file is empty) */
        bool cancelled;
} CheckpointPasses;

/* The outcome of a run of mode from its passes. ran: whether the run's
 * jobs ran at all (false: cancelled before). Pure. */
void checkpoint_outcome(CheckpointMode mode, const CheckpointPasses *p, bool ran, CheckpointOutcome *ret);

/* What the checkpoint policy looks at. */
typedef struct CheckpointInput {
        uint64_t wal_bytes;      /* size of the -wal file */
        bool wal_valid;          /* wal below was read */
        WalIndex wal;
        uint32_t new_frames;     /* frames committed since our last checkpoint ended */
        bool interval;           /* the checkpoint interval came round */
        bool may_reset;          /* no busy RESTART/TRUNCATE is backing off */
        bool may_restart;        /* false: a RESTART already left this very WAL (same salt and
                                  * frames) for the next writer to start over: nothing to do */
        uint64_t min_wal_pages;
        uint64_t truncate_wal_size; /* 0: never */
        uint64_t shrink_wal_size;   /* a -wal file this large with nothing pending is shortened; 0: never */
} CheckpointInput;

/* Which checkpoint the WAL needs now, if any (see checkpoint.c). Pure. */
bool checkpoint_choose(const CheckpointInput *in, CheckpointMode *ret_mode, TaskTrigger *ret_trigger);

typedef enum ResetPlan {
        RESET_PLAN_DONE,  /* nothing pending and no reader in the WAL: the next write starts it over */
        RESET_PLAN_TRY,   /* the readers in the way will be gone in moments: hold the lock (briefly) */
        RESET_PLAN_WAIT,  /* a reader is stuck at an old frame: the lock would not help; wait without it */
} ResetPlan;

/*
 * After a PASSIVE pass, whether a RESTART or TRUNCATE should take the write
 * lock now. locks: what other processes hold; stuck: each read mark's frame
 * when it blocked the previous slice (0: it did not), stuck_valid: there was
 * a previous slice. *ret_slot: the read mark in the way (0: none). Pure.
 */
ResetPlan checkpoint_reset_plan(const WalIndex *w, const WalLocks *locks, const uint32_t stuck[WALINDEX_READERS],
                                bool stuck_valid, int *ret_slot);

int checkpointer_new(Checkpointer **ret, Maintenance *mt);
Checkpointer *checkpointer_free(Checkpointer *c);

/* Starts the WAL watch on the files' -shm (none: interval checkpoints only). */
int checkpointer_start(Checkpointer *c, const DbFiles *files);
void checkpointer_stop(Checkpointer *c);

/* A run for the scheduler (TRIGGER_INTERVAL: only if the WAL needs one) or
 * an admin (TRIGGER_ADMIN, mode). The run ends with maintenance_end(). */
void checkpointer_run(Checkpointer *c, TaskTrigger trigger, CheckpointMode mode);

/* Looks at the WAL now and starts the checkpoint it needs, if any and none
 * runs (after each vacuum step, which fills the WAL fastest). */
void checkpointer_look(Checkpointer *c);

/* The final checkpoint (see maintenance_final_checkpoint()). */
int checkpointer_final(Checkpointer *c, CheckpointMode mode, usec_t timeout,
                       void (*done)(void *userdata, const CheckpointOutcome *outcome, bool ran), void *userdata);

/* The starvation report, NULL when checkpoints keep up. */
const char *checkpointer_starvation(const Checkpointer *c);

/* The latest WAL index header read, if any. */
bool checkpointer_wal_index(const Checkpointer *c, WalIndex *ret);
