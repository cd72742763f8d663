/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * WAL checkpoints: which one the WAL needs (a pure decision), the WAL watch
 * that asks that question often, runs on the database thread, the outcome of
 * a run (one computation for the scheduled, the admin's and the final
 * checkpoint at stop), and starvation: readers that keep every checkpoint
 * from catching up.
 */

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
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
        usec_t lock_usec;    /* longest hold of the writer lock (0 for PASSIVE, which takes none) */
        uint64_t wal_before, wal_after; /* -wal file sizes, bytes */
        char error[256];     /* result failed: SQLite's message */
} CheckpointOutcome;

/*
 * The outcome of a run: a PASSIVE pass, then (for the stronger modes) one of
 * mode. final is NULL when only the PASSIVE pass ran. ran: whether the job
 * ran at all (false: cancelled before it started). Pure.
 */
void checkpoint_outcome(CheckpointMode mode, const DbCheckpoint *passive, const DbCheckpoint *final, bool ran,
                        CheckpointOutcome *ret);

/* What the checkpoint policy looks at. */
typedef struct CheckpointInput {
        uint64_t wal_bytes;      /* size of the -wal file */
        bool wal_valid;          /* wal below was read */
        WalIndex wal;
        uint32_t new_frames;     /* frames committed since our last checkpoint ended */
        bool interval;           /* the checkpoint interval came round */
        bool may_reset;          /* no busy RESTART/TRUNCATE is backing off */
        uint64_t min_wal_pages;
        uint64_t truncate_wal_size; /* 0: never */
} CheckpointInput;

/* Which checkpoint the WAL needs now, if any (see checkpoint.c). Pure. */
bool checkpoint_choose(const CheckpointInput *in, CheckpointMode *ret_mode, TaskTrigger *ret_trigger);

int checkpointer_new(Checkpointer **ret, Maintenance *mt);
Checkpointer *checkpointer_free(Checkpointer *c);

/* Starts the WAL watch on shm_fd (-1: none; interval checkpoints only). */
int checkpointer_start(Checkpointer *c, int shm_fd);
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
