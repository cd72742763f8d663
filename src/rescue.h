/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What sqlvigil does when the files it has open are no longer the ones at
 * their paths, or no longer agree with each other: keep everything
 * committed, keep SQLite from attaching a WAL to a database it does not
 * belong to, and leave, so that systemd starts sqlvigil again on what the
 * paths name now.
 *
 *   the database renamed away, deleted or replaced, its directory moved:
 *       the -wal and -shm at the paths are still the old database's: they
 *       follow it (renamed beside it when it is still in the directory, else
 *       set aside as PATH-wal.stale-TIME), so that nobody replays them into
 *       the new file; the old WAL is then drained into the old file, which
 *       sqlvigil's connection still has open; a database that was deleted is
 *       saved first, as PATH.deleted-TIME.
 *   the -wal or -shm deleted, renamed away, or another file put in their
 *       place: the fence (files_fence()) keeps new connections from starting
 *       a second WAL beside the one still in use; whatever sits at those paths
 *       and is not the database's is set aside, and so is a -shm still at its
 *       path (the live index of a WAL no longer at its own), for the fence to
 *       take its place; the WAL is drained into the database.
 *   the database's (or the WAL's) content replaced in place under its live
 *       WAL (cp over it): the WAL no longer belongs to the content; draining
 *       it would mix the two. sqlvigil holds the checkpoint and write locks
 *       so that nobody copies the old frames in, and sets the -wal and -shm
 *       aside.
 *
 * In every case the mark says "stale" first of all, so a kill at any later
 * moment leaves the next start enough to finish the job; the other
 * processes still attached to the old files are named, and sqlvigil waits
 * for them (draining what they commit) up to stop_timeout; then it exits
 * with EXIT_RESCUED (75, EX_TEMPFAIL) for systemd to restart it.
 *
 * Except when leaving would be the cause: a process still attached after
 * stop_timeout to a WAL that was displaced, or that no longer belongs to
 * the content (overwritten), is held off by sqlvigil alone - the fence
 * keeps new connections from starting a second WAL beside its one, the
 * held locks keep it from checkpointing old frames into copied-in content
 * (measured: a writer outliving the exit did exactly that, and the file
 * failed integrity_check). So sqlvigil stays, says so (holding()), and
 * leaves once that process is gone, or when it is told to stop
 * (rescue_abandon()). A database moved away is not held: what a process
 * attached to it commits goes into its own file, which no new connection
 * shares.
 */

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "files.h"
#include "maintenance.h"
#include "worker.h"

typedef enum RescueKind {
        RESCUE_DB_MOVED,      /* the database path names another file, or none; or the directory moved */
        RESCUE_WAL_DISPLACED, /* the -wal or -shm at its path is not the database's any more */
        RESCUE_OVERWRITTEN,   /* the content was replaced in place under a live WAL */
        _RESCUE_KIND_MAX,
} RescueKind;

extern const char *const rescue_kind_names[_RESCUE_KIND_MAX];

/* Which rescue a check calls for. Pure. */
RescueKind rescue_kind_for(const FilesCheck *c);

typedef struct Rescue Rescue;

typedef struct RescueEnv {
        sd_event *event;
        Worker *db_worker;          /* its cancellable jobs are cancelled already */
        Maintenance *maintenance;   /* stopped; its final checkpoint drains the WAL */
        DbFiles *files;
        usec_t timeout;             /* how long to drain and wait for the others: stop_timeout */
        void *userdata;
        /* The rescue ended: what it did, one sentence. */
        void (*done)(void *userdata, const char *summary, bool complete);
        /* stop_timeout passed with a process still attached that sqlvigil
         * must hold off (above): who, and why sqlvigil stays. Once. */
        void (*holding)(void *userdata, const char *text);
} RescueEnv;

/* Starts it; reason: what was found (the journal has it already). Loop
 * thread. 0 or a negative errno. */
int rescue_start(Rescue **ret, const RescueEnv *env, RescueKind kind, const FilesCheck *check);
Rescue *rescue_free(Rescue *r);

/* The names in the directory changed while the rescue runs (inotify; and
 * every tick): a fence that someone removed (rm DB-wal DB-shm racing with
 * the rescue, which had just moved the -shm aside) is put back. Loop
 * thread. */
void rescue_look(Rescue *r);

/* Whether it stays past stop_timeout for a process it holds off (above).
 * Loop thread. */
bool rescue_holding(const Rescue *r);

/* Told to stop (SIGTERM, at any point of the rescue): it holds nobody off
 * past stop_timeout. Holding already, it leaves now (after draining what
 * was committed into a displaced WAL); its summary says what that process
 * may now do and what the operator must do. Loop thread. */
void rescue_abandon(Rescue *r);
