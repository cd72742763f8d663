/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget.h"
#include "checkpoint.h"
#include "log.h"
#include "maintenance.h"
#include "messages.h"

/* How often the WAL index is read. Other processes' commits fire no hooks of
 * ours, so "as soon as the WAL reaches min_wal_pages" means "at the next
 * look", and how far the WAL grows past that depends on how fast it grows
 * between looks. A look is a pread() of 136 bytes and a stat(). When the WAL
 * is quiet we look once a second (Litestream's rate; one idle wake-up a
 * second); while it grows by a quarter of min_wal_pages or more between
 * looks, we look twice as often, down to every 100 ms. Measured with two
 * writers committing 4000 frames a second: at a fixed 1 s the WAL reached
 * 18 MB between looks; adaptively it stays near min_wal_pages. After a
 * minute without a single new frame the database is idle, and the watch
 * looks every 2 s: the looks were most of an idle sqlvigil's wake-ups
 * (B4: 1.18 a second in all); the first burst after such a quiet spell is
 * seen at most 2 s late, and the looks speed up again at once. */
#define WAL_POLL_MAX (1 * USEC_PER_SEC)
#define WAL_POLL_IDLE (2 * USEC_PER_SEC)
#define WAL_POLL_IDLE_AFTER (60 * USEC_PER_SEC)
#define WAL_POLL_MIN (100 * USEC_PER_MSEC)

/* Checkpoints in a row that could not catch up before we call it starvation. */
#define STARVATION_ROUNDS 3

/* A RESTART or TRUNCATE that could not reset the WAL is tried again after
 * this. Backing off further lets the WAL grow meanwhile: measured with two
 * readers holding 20 ms of every 50, retrying every 250 ms kept the WAL at
 * 8.5 MiB where doubling up to 2 s let it reach 20 MiB (benchmark B2). While
 * a reader starves the checkpoints, a reset cannot succeed at all: then once
 * per checkpoint interval. */
#define RESET_RETRY (250 * USEC_PER_MSEC)

/* How long a scheduled RESTART, TRUNCATE or shrink keeps slicing before it
 * ends incomplete (an admin's waits busy_timeout, the final one
 * stop_timeout). Each slice holds the lock at most about step_budget. */
#define RUN_DEADLINE (2 * USEC_PER_SEC)

/* While a reader is stuck at an old frame, the next slice looks again this
 * much later (no lock is taken meanwhile). */
#define WAIT_PAUSE (50 * USEC_PER_MSEC)

/* The first piece a large -wal file is shortened by. ftruncate() freed
 * 80 MB in 23 ms on this project's test machine; later pieces follow the
 * measured rate to fill three quarters of step_budget. */
#define TRIM_FIRST_CHUNK (16ULL << 20)
#define TRIM_MIN_CHUNK (1ULL << 20)

typedef void (*FinalDone)(void *userdata, const CheckpointOutcome *outcome, bool ran);

typedef struct Run {
        bool active;
        CheckpointMode mode;
        TaskTrigger trigger;
        usec_t started_rt, started; /* CLOCK_REALTIME, CLOCK_MONOTONIC */
        usec_t deadline;            /* CLOCK_MONOTONIC: no slice starts after it */
        usec_t budget;              /* step_budget when the run started */
        uint64_t target;            /* shrink: the -wal file size to get below; 0 otherwise */
        bool cancellable;
        FinalDone done;             /* the final checkpoint reports here */
        void *userdata;

        CheckpointPasses passes;
        bool have_first;
        LockHolds holds;
        uint64_t wal_before, wal_after;
        unsigned slices;
        uint32_t stuck[WALINDEX_READERS];
        bool stuck_valid;
        usec_t last_hold;
        DbFault fault;
        uint64_t pending_bytes;     /* what the WAL held not yet in the database, at the first look */
        pid_t reader;
        double trim_usec_per_mb;    /* measured ftruncate() cost */
} Run;

struct Checkpointer {
        Maintenance *mt;
        int shm_fd, wal_fd;
        uint64_t generation;          /* of the run: a slice of an ended run is dropped */
        sd_event_source *wal_timer;   /* the WAL watch */
        sd_event_source *slice_timer; /* the pause between slices */
        Run run;

        WalIndex wal;
        bool wal_valid;
        usec_t wal_poll;            /* the WAL watch's current period */
        usec_t quiet_for;           /* how long the WAL has not grown, as the looks saw it */
        uint32_t poll_mx_frame;     /* mxFrame and salt at the previous look */
        uint32_t poll_salt;
        uint32_t ckpt_mx_frame;     /* mxFrame when our last checkpoint ended */
        uint32_t ckpt_salt;         /* and the WAL's salt then (it changes on reset) */
        uint32_t ckpt_backfill;     /* and nBackfill then */
        bool have_ckpt_mark;
        unsigned incomplete_in_a_row;
        bool starved;
        char starvation[512];
        usec_t reset_not_before;    /* CLOCK_BOOTTIME; after an incomplete RESTART/TRUNCATE */
        bool restart_left;          /* a RESTART found nothing to wait for; the next writer starts */
        uint32_t restart_salt;      /* this WAL (salt, frames) over: no new RESTART until it changes */
        uint32_t restart_mx_frame;
        double trim_usec_per_mb;
};

typedef struct SliceJob {
        Job job;
        Checkpointer *checkpointer;
        uint64_t generation;
        /* In. */
        CheckpointMode mode;
        usec_t budget;
        uint64_t target;
        int shm_fd, wal_fd;
        uint32_t stuck[WALINDEX_READERS];
        bool stuck_valid;
        uint64_t trim_chunk;
        /* Out. */
        uint64_t wal_before, wal_after;
        DbCheckpoint passive, final;
        bool final_ran;
        bool wal_valid;
        WalIndex wal;
        uint64_t pending_bytes;     /* not yet in the database, before the PASSIVE pass */
        WalLocks locks;
        ResetPlan plan;
        int slot;
        DbHold restart;
        bool restart_ran;
        WalTrim trim;
        bool trim_ran;
        int trim_error;
        bool reset;                 /* the goal of the run was reached */
        DbFault fault;              /* of a failed pass */
} SliceJob;

static void next_slice(Checkpointer *cp);

static usec_t now_boot(void) {
        return now_usec(CLOCK_BOOTTIME);
}

/* ---- Pure decisions ----------------------------------------------------- */

void checkpoint_outcome(CheckpointMode mode, const CheckpointPasses *p, bool ran, CheckpointOutcome *o) {
        const DbCheckpoint *last = p->final_ran ? &p->final : &p->passive;
        bool busy;

        *o = (CheckpointOutcome){ .mode = mode, .frames = -1, .copied = -1 };
        if (!ran || p->cancelled || p->first.result == DB_E_CANCELLED || p->passive.result == DB_E_CANCELLED ||
            (p->final_ran && p->final.result == DB_E_CANCELLED)) {
                o->result = TASK_RESULT_CANCELLED;
                bufprintf(o->error, sizeof(o->error), "cancelled: sqlvigil is stopping");
                return;
        }
        /* A TRUNCATE reports 0 frames (the WAL it leaves): what there was
         * comes from the PASSIVE passes, unknown (-1) when they found
         * another connection checkpointing. */
        o->frames = MAX(p->first.log_frames, p->passive.log_frames);
        if (p->final_ran && mode != CHECKPOINT_TRUNCATE)
                o->frames = MAX(o->frames, p->final.log_frames);
        busy = last->result == DB_E_BUSY;
        /* Both counts stay -1 while another connection holds the checkpoint
         * lock all along (an application's autocheckpoint, usually). */
        o->lock_taken = busy && last->log_frames == -1;
        if (mode == CHECKPOINT_PASSIVE)
                o->caught_up = p->passive.result == 0 && p->passive.checkpointed >= p->passive.log_frames;
        else
                o->caught_up = p->reset;
        o->copied = o->caught_up ? o->frames
                                 : MAX(p->passive.checkpointed, p->final_ran ? p->final.checkpointed : -1);

        if (p->first.result == DB_E_SQLITE || p->passive.result == DB_E_SQLITE ||
            (p->final_ran && p->final.result == DB_E_SQLITE)) {
                o->result = TASK_RESULT_FAILED;
                bufprintf(o->error, sizeof(o->error), "%s",
                          p->first.result == DB_E_SQLITE     ? p->first.error
                          : p->passive.result == DB_E_SQLITE ? p->passive.error
                                                             : p->final.error);
        } else if (o->caught_up)
                o->result = TASK_RESULT_OK;
        else if (busy)
                o->result = TASK_RESULT_BUSY;
        else
                o->result = TASK_RESULT_INCOMPLETE;
}

/*
 * Which checkpoint the WAL needs now, if any:
 *  - TRUNCATE when the -wal file is larger than truncate_wal_size: only
 *    that gives the space back;
 *  - RESTART when the WAL holds twice min_wal_pages frames since it last
 *    started over. Normally PASSIVE checkpoints keep up and the next writer
 *    starts the WAL over by itself, so it never gets there. It does when
 *    readers overlap all the time (each short, but never all gone at once:
 *    every PASSIVE ends a few frames short and the WAL never wraps; measured
 *    with two readers holding 20 ms of every 50 ms, it grew 16 MB a second),
 *    and while a writer commits every few milliseconds during a vacuum run.
 *    RESTART holds the writer lock, for a slice, so that new readers stay
 *    out of the WAL while the old ones finish;
 *  - a shrink (TRUNCATE, in pieces) when the -wal file stayed larger than
 *    shrink_wal_size with nothing pending: after a burst the file keeps its
 *    peak size, and nobody else will give the space back;
 *  - PASSIVE when min_wal_pages new frames arrived (or, on the interval, any).
 */
bool checkpoint_choose(const CheckpointInput *in, CheckpointMode *ret_mode, TaskTrigger *ret_trigger) {
        if (in->truncate_wal_size && in->wal_bytes > in->truncate_wal_size && in->may_reset) {
                *ret_mode = CHECKPOINT_TRUNCATE;
                *ret_trigger = TRIGGER_WAL_SIZE;
                return true;
        }
        if (!in->wal_valid)
                return false;
        if (in->wal.mx_frame >= 2 * in->min_wal_pages && in->may_reset && in->may_restart) {
                *ret_mode = CHECKPOINT_RESTART;
                *ret_trigger = TRIGGER_WAL_RESTART;
                return true;
        }
        if (in->new_frames >= in->min_wal_pages ||
            (in->interval && (in->new_frames > 0 || walindex_pending(&in->wal) > 0))) {
                *ret_mode = CHECKPOINT_PASSIVE;
                *ret_trigger = in->interval ? TRIGGER_INTERVAL : TRIGGER_WAL_PAGES;
                return true;
        }
        if (in->shrink_wal_size && in->wal_bytes > in->shrink_wal_size && walindex_pending(&in->wal) == 0 &&
            in->may_reset) {
                *ret_mode = CHECKPOINT_TRUNCATE;
                *ret_trigger = TRIGGER_WAL_SHRINK;
                return true;
        }
        return false;
}

ResetPlan checkpoint_reset_plan(const WalIndex *w, const WalLocks *locks, const uint32_t stuck[WALINDEX_READERS],
                                bool stuck_valid, int *ret_slot) {
        bool readers = false;

        *ret_slot = 0;
        /* Read mark 0 reads the database file only: no reset waits for it. */
        for (int k = 1; k < WALINDEX_READERS; k++) {
                if (!locks->read[k].held)
                        continue;
                readers = true;
                if (*ret_slot == 0)
                        *ret_slot = k;
                /* Its snapshot ends before the WAL does: it keeps frames
                 * from being copied. Seen at the same frame by the previous
                 * slice too, it is a long reader (a report, a backup): the
                 * write lock would only keep the writers waiting with it. */
                if (w->read_mark[k] < w->mx_frame && stuck_valid && stuck[k] == w->read_mark[k]) {
                        *ret_slot = k;
                        return RESET_PLAN_WAIT;
                }
        }
        if (!readers && w->n_backfill >= w->mx_frame)
                return RESET_PLAN_DONE;
        return RESET_PLAN_TRY;
}

/* ---- The WAL index ------------------------------------------------------ */

static int refresh_wal(Checkpointer *c) {
        int r = walindex_read(c->shm_fd, &c->wal);

        if (r == 0)
                c->wal_valid = true;
        return r;
}

/* Frames committed since our last checkpoint ended. */
static uint32_t new_frames(const Checkpointer *c) {
        if (!c->wal_valid)
                return 0;
        if (!c->have_ckpt_mark || c->wal.salt != c->ckpt_salt || c->wal.mx_frame < c->ckpt_mx_frame)
                return c->wal.mx_frame; /* first look, or the WAL was reset since */
        return c->wal.mx_frame - c->ckpt_mx_frame;
}

static uint64_t frame_bytes(const Checkpointer *c) {
        return (uint64_t)(c->wal_valid && c->wal.page_size ? c->wal.page_size : 4096) + 24;
}

static bool choose(Checkpointer *c, bool interval, CheckpointMode *ret_mode, TaskTrigger *ret_trigger) {
        const MaintenanceEnv *env = maintenance_env(c->mt);
        const Config *cfg = maintenance_config(c->mt);
        CheckpointInput in = {
                .wal_bytes = file_size(env->wal_path),
                .wal_valid = c->wal_valid,
                .wal = c->wal,
                .new_frames = new_frames(c),
                .interval = interval,
                .may_reset = now_boot() >= c->reset_not_before,
                /* An idle database after a burst keeps its frame count until
                 * the next write: without this, a RESTART every look. */
                .may_restart = !(c->restart_left && c->wal_valid && c->wal.salt == c->restart_salt &&
                                 c->wal.mx_frame == c->restart_mx_frame),
                .min_wal_pages = cfg->min_wal_pages,
                .truncate_wal_size = cfg->truncate_wal_size,
                /* Four times what a RESTART lets the WAL reach. */
                .shrink_wal_size = c->wal_fd >= 0 ? 4 * cfg->min_wal_pages * frame_bytes(c) : 0,
        };

        return checkpoint_choose(&in, ret_mode, ret_trigger);
}

/* ---- Starvation ---------------------------------------------------------- */

static void update_starvation(Checkpointer *c, bool caught_up, uint64_t wal_bytes) {
        LogFields f = { 0 };
        char bytes[32];

        if (caught_up) {
                c->incomplete_in_a_row = 0;
                if (c->starved) {
                        c->starved = false;
                        c->starvation[0] = '\0';
                        log_field(&f, "SQLVIGIL_STARVED", "0");
                        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, wal_bytes);
                        log_event(LOG_NOTICE, SQLVIGIL_MESSAGE_STARVATION, "starvation", &f,
                                  "checkpoint starvation over: checkpoints caught up with the WAL (%s)",
                                  format_bytes(bytes, sizeof(bytes), wal_bytes));
                        maintenance_facts_changed(c->mt);
                }
                return;
        }

        if (++c->incomplete_in_a_row < STARVATION_ROUNDS || c->starved)
                return;

        WalReader readers[4];
        size_t n = 0;
        struct stat st;
        char who[320] = "";
        int r = -ENOENT;

        if (c->shm_fd >= 0 && fstat(c->shm_fd, &st) == 0)
                r = walindex_readers(NULL, st.st_dev, st.st_ino, c->wal_valid ? &c->wal : NULL, getpid(), readers,
                                     ELEMENTSOF(readers), &n);
        if (r == 0 && n > 0)
                walindex_format_readers(readers, n, c->wal.mx_frame, who, sizeof(who));
        else if (r < 0)
                bufprintf(who, sizeof(who), "cannot read /proc/locks: %s", strerror(-r));
        else
                bufprintf(who, sizeof(who), "no read lock found (a reader in another mount or PID namespace?)");

        c->starved = true;
        bufprintf(c->starvation, sizeof(c->starvation),
                  "checkpoints starved: %u in a row could not catch up with the WAL (%s, %" PRIu32
                  " frames not in the database); reader: %s",
                  c->incomplete_in_a_row, format_bytes(bytes, sizeof(bytes), wal_bytes),
                  c->wal_valid ? walindex_pending(&c->wal) : 0, who);
        log_field(&f, "SQLVIGIL_STARVED", "1");
        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, wal_bytes);
        log_field(&f, "SQLVIGIL_WAL_FRAMES", "%" PRIu32, c->wal_valid ? c->wal.mx_frame : 0);
        log_field(&f, "SQLVIGIL_PAGES", "%" PRIu32, c->wal_valid ? walindex_pending(&c->wal) : 0);
        if (r == 0 && n > 0) {
                log_field(&f, "SQLVIGIL_READER_PID", "%d", (int)readers[0].pid);
                log_field(&f, "SQLVIGIL_READER_COMM", "%s", readers[0].comm);
        }
        log_event(LOG_WARNING, SQLVIGIL_MESSAGE_STARVATION, "starvation", &f, "%s", c->starvation);
        maintenance_facts_changed(c->mt);
}

/* ---- Slices, on the database thread ---------------------------------------- */

static uint64_t fd_size(int fd, uint64_t fallback) {
        struct stat st;

        return fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_size : fallback;
}

/* For TRUNCATE and a shrink: what is left to do once the WAL can be reset. */
static void make_small(SliceJob *s, Db *db) {
        uint64_t size = fd_size(s->wal_fd, db_wal_bytes(db));

        if (s->target && size <= s->target) {
                s->reset = true;
                return;
        }
        if (s->wal_fd >= 0 && s->shm_fd >= 0 && size > s->trim_chunk) {
                /* Too large to truncate within one hold. First the WAL
                 * must start over (then its old frames are dead: their
                 * salts no longer match); then it is shortened a piece at a
                 * time, the write lock released in between. */
                if (s->wal_valid && s->wal.mx_frame > 1) {
                        db_wal_restart(db, s->budget, &s->restart);
                        s->restart_ran = true;
                        return;
                }
                db_wait_quiet(db);
                s->trim_error = walindex_trim(s->shm_fd, s->wal_fd, s->target, s->trim_chunk, &s->trim);
                s->trim_ran = true;
                if (s->trim.held)
                        db_note_hold(db, s->trim.held);
                if (s->target && s->trim.after <= s->target)
                        s->reset = true;
                return;
        }
        /* Small enough for one TRUNCATE: reset and empty it. */
        db_checkpoint(db, CHECKPOINT_TRUNCATE, s->budget, &s->final);
        s->final_ran = true;
        s->reset = s->final.result == 0;
}

/* How long a slice's RESTART or TRUNCATE may wait for readers. The write
 * lock is held from the moment it is taken, through that wait, to the end
 * of the copy and the database's sync: the wait gets what the budget leaves
 * after those. The PASSIVE pass just before copied and synced almost
 * everything; its own time (without waiting for another connection's
 * checkpoint lock) is what the rest costs at most. Measured (B2, 20 ms
 * budget): holds of 23 ms when the wait had the whole budget. At least half
 * the budget is left to the wait. */
static usec_t reader_wait(const SliceJob *s) {
        usec_t copy = s->passive.duration - MIN(s->passive.duration, s->passive.ckpt_lock_wait);

        return s->budget - MIN(s->budget / 2, copy + USEC_PER_MSEC);
}

static void slice_run(Job *j, Db *db) {
        SliceJob *s = container_of(j, SliceJob, job);

        s->wal_before = fd_size(s->wal_fd, db_wal_bytes(db));
        /* Content copied over the -wal in place (cp): the index still names
         * frames, but not the ones now in the file, and any checkpoint
         * would copy those into the database. The health rounds see it too
         * and start the rescue; meanwhile nothing is copied. */
        if (s->shm_fd >= 0 && s->wal_fd >= 0 && walindex_wal_matches(s->shm_fd, s->wal_fd) == 0) {
                s->passive = (DbCheckpoint){ .result = DB_E_SQLITE, .log_frames = -1, .checkpointed = -1 };
                bufprintf(s->passive.error, sizeof(s->passive.error),
                          "not checkpointed: the -wal's header no longer matches its WAL index (content was copied "
                          "over it in place)");
                goto finish;
        }
        if (walindex_read(s->shm_fd, &s->wal) == 0)
                s->pending_bytes = (uint64_t)walindex_pending(&s->wal) * ((uint64_t)s->wal.page_size + 24);
        /* PASSIVE first, always: it copies what it can without blocking
         * anyone. */
        db_checkpoint(db, CHECKPOINT_PASSIVE, 0, &s->passive);
        if (s->mode == CHECKPOINT_PASSIVE || s->passive.result == DB_E_SQLITE || s->passive.result == DB_E_CANCELLED)
                goto finish;

        s->wal_valid = walindex_read(s->shm_fd, &s->wal) == 0 && walindex_locks(s->shm_fd, &s->locks) == 0;
        if (!s->wal_valid) {
                /* No WAL index to look at: a plain bounded attempt. */
                db_checkpoint(db, s->mode, reader_wait(s), &s->final);
                s->final_ran = true;
                s->reset = s->final.result == 0;
                goto finish;
        }
        s->plan = checkpoint_reset_plan(&s->wal, &s->locks, s->stuck, s->stuck_valid, &s->slot);
        /* Another connection is checkpointing right now: its copy is ours
         * too; look again after the pause. */
        if (s->passive.result == DB_E_BUSY && s->passive.log_frames == -1)
                s->plan = RESET_PLAN_WAIT;
        switch (s->plan) {
        case RESET_PLAN_DONE:
                if (s->mode == CHECKPOINT_RESTART)
                        s->reset = true; /* the next writer starts the WAL over */
                else
                        make_small(s, db);
                break;
        case RESET_PLAN_TRY:
                db_checkpoint(db, s->mode, reader_wait(s), &s->final);
                s->final_ran = true;
                if (s->final.result == 0) {
                        if (s->mode == CHECKPOINT_RESTART || !s->target)
                                s->reset = true;
                        else
                                s->reset = fd_size(s->wal_fd, 0) <= s->target;
                }
                break;
        case RESET_PLAN_WAIT:
                break;
        }
finish:
        s->wal_after = fd_size(s->wal_fd, db_wal_bytes(db));
        s->fault = db_take_fault(db);
}

/* ---- Runs, on the loop --------------------------------------------------------- */

/* The one-line summary of an outcome, as the journal and replies give it. */
static void summarize(const CheckpointOutcome *o, const char *what, char *buf, size_t size) {
        char before[32], after[32], reader[96] = "";

        format_bytes(before, sizeof(before), o->wal_before);
        format_bytes(after, sizeof(after), o->wal_after);
        if (o->reader > 0 && !o->caught_up)
                bufprintf(reader, sizeof(reader), "; in the way: pid %d (%s)", (int)o->reader, o->reader_comm);
        if (o->result == TASK_RESULT_CANCELLED)
                bufprintf(buf, size, "%s: cancelled", what);
        else if (o->result == TASK_RESULT_FAILED)
                bufprintf(buf, size, "%s failed: %s", what, o->error);
        else if (o->frames < 0)
                bufprintf(buf, size, "%s: %s; WAL %s -> %s%s", what,
                          o->caught_up ? "frames in WAL unknown (another connection was checkpointing), all checkpointed"
                                       : "busy: another connection was checkpointing",
                          before, after, reader);
        else
                bufprintf(buf, size, "%s: %d frames in WAL, %d checkpointed%s; WAL %s -> %s%s", what, o->frames,
                          MAX(o->copied, 0),
                          o->caught_up                    ? ""
                          : o->lock_taken                 ? " (busy: another connection was checkpointing)"
                          : o->result == TASK_RESULT_BUSY ? " (busy: readers or a writer in the way)"
                                                          : "",
                          before, after, reader);
}

/* A RESTART that is done leaves the reset to the next writer: remember the
 * WAL it left, so an idle database is not restarted again and again. */
static void c_note_restart(Checkpointer *cp, CheckpointMode mode, bool caught_up) {
        cp->restart_left = mode == CHECKPOINT_RESTART && caught_up && cp->wal_valid;
        if (cp->restart_left) {
                cp->restart_salt = cp->wal.salt;
                cp->restart_mx_frame = cp->wal.mx_frame;
        }
}

static void end_run(Checkpointer *cp, bool ran) {
        Run *run = &cp->run;
        Maintenance *mt = cp->mt;
        CheckpointOutcome o;
        TaskReport r;
        bool reset_since, progress;
        char what[32];

        (void)sd_event_source_set_enabled(cp->slice_timer, SD_EVENT_OFF);
        run->active = false;
        checkpoint_outcome(run->mode, &run->passes, ran, &o);
        o.duration = now_usec(CLOCK_MONOTONIC) - run->started;
        o.holds = run->holds;
        o.wal_before = run->wal_before;
        o.wal_after = run->wal_after;
        o.slices = run->slices;
        if (run->reader > 0) {
                o.reader = run->reader;
                walindex_comm(o.reader, o.reader_comm, sizeof(o.reader_comm));
        }
        if (run->trim_usec_per_mb > 0)
                cp->trim_usec_per_mb = run->trim_usec_per_mb;

        if (o.result != TASK_RESULT_CANCELLED) {
                if (o.copied > 0)
                        maintenance_totals_mut(mt)->frames_checkpointed += (uint64_t)o.copied;
                /* Readers that come and go but always overlap keep a PASSIVE
                 * checkpoint a few frames short every time; that is no
                 * starvation as long as the copying moves on (nBackfill
                 * grows) or the WAL gets reset now and then (its salt
                 * changes). Starvation is a reader that holds the copying at
                 * one frame, round after round. */
                (void)refresh_wal(cp);
                reset_since = cp->wal_valid && cp->have_ckpt_mark && cp->wal.salt != cp->ckpt_salt;
                progress = cp->wal_valid && cp->have_ckpt_mark && cp->wal.n_backfill > cp->ckpt_backfill;
                /* Where the WAL stood when we finished: new frames count from here. */
                if (cp->wal_valid) {
                        cp->ckpt_mx_frame = cp->wal.mx_frame;
                        cp->ckpt_salt = cp->wal.salt;
                        cp->ckpt_backfill = cp->wal.n_backfill;
                        cp->have_ckpt_mark = true;
                }
                c_note_restart(cp, run->mode, o.caught_up);
                if (run->mode != CHECKPOINT_PASSIVE && !o.caught_up)
                        cp->reset_not_before =
                                now_boot() + (cp->starved ? MAX(RESET_RETRY, maintenance_config(mt)->checkpoint_interval)
                                                          : RESET_RETRY);
                if (o.result != TASK_RESULT_FAILED)
                        update_starvation(cp, o.caught_up || reset_since || progress, o.wal_after);
        }

        if (run->done) {
                run->done(run->userdata, &o, ran);
                return;
        }

        task_report_init(&r, run->trigger, run->started_rt);
        r.result = o.result;
        r.duration = o.duration;
        r.holds = o.holds;
        bufprintf(what, sizeof(what), "%s", run->trigger == TRIGGER_WAL_SHRINK ? "shrink" : checkpoint_mode_names[run->mode]);
        summarize(&o, what, r.summary, sizeof(r.summary));
        r.message_id = SQLVIGIL_MESSAGE_CHECKPOINT;
        r.event = "checkpoint";
        r.priority = o.result == TASK_RESULT_FAILED ? LOG_ERR : LOG_INFO;
        bufprintf(r.message, sizeof(r.message), "checkpoint (%s)", task_trigger_names[run->trigger]);
        log_field(&r.fields, "SQLVIGIL_CHECKPOINT_MODE", "%s", checkpoint_mode_names[run->mode]);
        log_field(&r.fields, "SQLVIGIL_WAL_FRAMES", "%d", o.frames);
        log_field(&r.fields, "SQLVIGIL_PAGES", "%d", o.copied);
        log_field(&r.fields, "SQLVIGIL_BUSY", "%d", o.result == TASK_RESULT_BUSY);
        log_field(&r.fields, "SQLVIGIL_WAL_BYTES_BEFORE", "%" PRIu64, o.wal_before);
        log_field(&r.fields, "SQLVIGIL_WAL_BYTES", "%" PRIu64, o.wal_after);
        log_field(&r.fields, "SQLVIGIL_SLICES", "%u", o.slices);
        if (o.reader > 0 && !o.caught_up) {
                log_field(&r.fields, "SQLVIGIL_READER_PID", "%d", (int)o.reader);
                log_field(&r.fields, "SQLVIGIL_READER_COMM", "%s", o.reader_comm);
        }
        r.outcome = (MaintenanceOutcome){
                .task = TASK_CHECKPOINT,
                .ok = o.result != TASK_RESULT_FAILED && o.result != TASK_RESULT_CANCELLED,
                .mode = checkpoint_mode_names[run->mode],
                .frames = o.frames,
                .checkpointed = o.copied,
                .busy = o.result == TASK_RESULT_BUSY,
        };
        if (o.result == TASK_RESULT_FAILED) {
                r.fault = run->fault;
                /* A checkpoint grows the database by what the WAL holds. */
                r.space_needed = run->pending_bytes;
        }
        maintenance_end(mt, TASK_CHECKPOINT, &r);
}

static void add_hold(Run *run, usec_t held) {
        if (held > 0) {
                lock_holds_add(&run->holds, held);
                run->last_hold = held;
        }
}

static void slice_done(Job *j, bool ran) {
        SliceJob *s = container_of(j, SliceJob, job);
        Checkpointer *cp = s->checkpointer;
        Run *run = &cp->run;
        usec_t now, pause;
        bool failed;
        int r;

        if (s->generation != cp->generation || !run->active) {
                /* A slice of a run that ended meanwhile (cancelled at stop). */
                free(s);
                return;
        }
        if (!ran || s->passive.result == DB_E_CANCELLED || (s->final_ran && s->final.result == DB_E_CANCELLED)) {
                run->passes.cancelled = true;
                free(s);
                end_run(cp, ran && run->slices > 0);
                return;
        }
        run->slices++;
        if (!run->have_first) {
                run->passes.first = s->passive;
                run->wal_before = s->wal_before;
                run->have_first = true;
                run->pending_bytes = s->pending_bytes;
        }
        if (s->fault.code)
                run->fault = s->fault;
        run->passes.passive = s->passive;
        if (s->final_ran) {
                run->passes.final = s->final;
                run->passes.final_ran = true;
                /* The stronger modes hold the writer lock while they wait,
                 * copy and sync; waiting for the checkpoint lock holds
                 * nothing. */
                add_hold(run, s->final.duration - MIN(s->final.duration, s->final.ckpt_lock_wait));
        }
        if (s->restart_ran)
                add_hold(run, s->restart.held);
        if (s->trim_ran) {
                add_hold(run, s->trim.held);
                if (s->trim.before > s->trim.after && s->trim.held > 0)
                        run->trim_usec_per_mb = (double)s->trim.held /
                                                ((double)(s->trim.before - s->trim.after) / (1 << 20));
        }
        run->wal_after = s->wal_after;
        if (s->reset)
                run->passes.reset = true;

        /* Who is in the way, and which readers were stuck where. */
        if (s->wal_valid) {
                for (int k = 0; k < WALINDEX_READERS; k++)
                        run->stuck[k] = s->locks.read[k].held && s->wal.read_mark[k] < s->wal.mx_frame
                                                ? s->wal.read_mark[k]
                                                : 0;
                run->stuck_valid = true;
                run->reader = s->slot > 0 ? s->locks.read[s->slot].pid : 0;
        }

        failed = s->passive.result == DB_E_SQLITE || (s->final_ran && s->final.result == DB_E_SQLITE) ||
                 (s->restart_ran && s->restart.result == DB_E_SQLITE) || (s->trim_ran && s->trim_error < 0);
        if (failed && !(s->passive.result == DB_E_SQLITE || (s->final_ran && s->final.result == DB_E_SQLITE))) {
                /* The restart write or the trim failed: report it as a
                 * failed pass. */
                run->passes.final.result = DB_E_SQLITE;
                run->passes.final_ran = true;
                if (s->restart_ran && s->restart.result == DB_E_SQLITE)
                        bufprintf(run->passes.final.error, sizeof(run->passes.final.error), "%s", s->restart.error);
                else
                        bufprintf(run->passes.final.error, sizeof(run->passes.final.error),
                                  "cannot shorten the -wal file: %s", strerror(-s->trim_error));
        }
        free(s);

        now = now_usec(CLOCK_MONOTONIC);
        if (failed || run->mode == CHECKPOINT_PASSIVE || run->passes.reset || now >= run->deadline ||
            (run->cancellable && !maintenance_active(cp->mt))) {
                end_run(cp, true);
                return;
        }
        /* The writers a hold made wait get their turn first. */
        pause = run->last_hold ? MAX(budget_writer_quantum(run->last_hold) + USEC_PER_MSEC, run->budget / 2)
                               : WAIT_PAUSE;
        run->last_hold = 0;
        r = sd_event_source_set_time(cp->slice_timer, now + pause);
        if (r >= 0)
                r = sd_event_source_set_enabled(cp->slice_timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_error("cannot arm the checkpoint slice timer: %s", strerror(-r));
                end_run(cp, true);
        }
}

static uint64_t trim_chunk(const Checkpointer *cp, usec_t budget) {
        double per_mb = cp->run.trim_usec_per_mb > 0 ? cp->run.trim_usec_per_mb : cp->trim_usec_per_mb;
        double mb;

        if (per_mb <= 0)
                return TRIM_FIRST_CHUNK;
        mb = (double)(budget * 3 / 4) / per_mb;
        return MAX((uint64_t)(mb * (1 << 20)), TRIM_MIN_CHUNK);
}

static void next_slice(Checkpointer *cp) {
        Run *run = &cp->run;
        SliceJob *s = calloc(1, sizeof(*s));

        if (!s) {
                run->passes.final.result = DB_E_SQLITE;
                run->passes.final_ran = true;
                bufprintf(run->passes.final.error, sizeof(run->passes.final.error), "out of memory");
                end_run(cp, run->slices > 0);
                return;
        }
        s->job = (Job){ .name = run->done ? "final checkpoint" : "checkpoint", .urgent = !run->cancellable,
                        .cancellable = run->cancellable, .run = slice_run, .done = slice_done };
        s->checkpointer = cp;
        s->generation = cp->generation;
        s->mode = run->mode;
        s->budget = MAX(MIN(run->budget, run->deadline - MIN(run->deadline, now_usec(CLOCK_MONOTONIC))),
                        USEC_PER_MSEC);
        s->target = run->target;
        s->shm_fd = cp->shm_fd;
        s->wal_fd = cp->wal_fd;
        memcpy(s->stuck, run->stuck, sizeof(s->stuck));
        s->stuck_valid = run->stuck_valid;
        s->trim_chunk = trim_chunk(cp, run->budget);
        if (!run->cancellable)
                worker_submit(maintenance_env(cp->mt)->db_worker, &s->job);
        else if (!maintenance_submit(cp->mt, &s->job)) {
                free(s);
                run->passes.cancelled = true;
                end_run(cp, run->slices > 0);
        }
}

static int on_slice_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Checkpointer *cp = userdata;

        (void)s;
        (void)usec;
        if (cp->run.active)
                next_slice(cp);
        return 0;
}

/* Starts a run (already marked running with the scheduler, unless final). */
static void start(Checkpointer *cp, CheckpointMode mode, TaskTrigger trigger, usec_t deadline_after, FinalDone done,
                  void *userdata) {
        const Config *cfg = maintenance_config(cp->mt);
        usec_t now = now_usec(CLOCK_MONOTONIC);

        cp->generation++;
        cp->run = (Run){
                .active = true,
                .mode = mode,
                .trigger = trigger,
                .started_rt = now_usec(CLOCK_REALTIME),
                .started = now,
                .deadline = now + deadline_after,
                .budget = cfg->step_budget,
                .cancellable = done == NULL,
                .done = done,
                .userdata = userdata,
                .passes = { .first.log_frames = -1, .first.checkpointed = -1, .passive.log_frames = -1,
                            .passive.checkpointed = -1, .final.log_frames = -1, .final.checkpointed = -1 },
        };
        if (trigger == TRIGGER_WAL_SHRINK)
                /* Down to what min_wal_pages frames take. */
                cp->run.target = MAX(cfg->min_wal_pages * frame_bytes(cp), (uint64_t)(1 << 20));
        log_debug("checkpoint: starting %s (%s)", checkpoint_mode_names[mode], task_trigger_names[trigger]);
        next_slice(cp);
}

static usec_t deadline_for(Checkpointer *cp, TaskTrigger trigger) {
        if (trigger == TRIGGER_ADMIN)
                return MAX(config_busy_timeout(maintenance_config(cp->mt)), maintenance_config(cp->mt)->step_budget);
        return RUN_DEADLINE;
}

void checkpointer_run(Checkpointer *cp, TaskTrigger trigger, CheckpointMode mode) {
        TaskReport r;

        if (trigger == TRIGGER_ADMIN) {
                start(cp, mode, trigger, deadline_for(cp, trigger), NULL, NULL);
                return;
        }
        /* The scheduled one: only when there is something to do. */
        (void)refresh_wal(cp);
        if (!maintenance_backing_off(cp->mt, TASK_CHECKPOINT) && choose(cp, true, &mode, &trigger)) {
                start(cp, mode, trigger, deadline_for(cp, trigger), NULL, NULL);
                return;
        }
        task_report_init(&r, TRIGGER_INTERVAL, 0);
        r.nothing_done = true;
        maintenance_end(cp->mt, TASK_CHECKPOINT, &r);
}

void checkpointer_look(Checkpointer *cp) {
        Scheduler *s = maintenance_scheduler(cp->mt);
        CheckpointMode mode;
        TaskTrigger trigger;

        if (!maintenance_active(cp->mt) || refresh_wal(cp) != 0 || s->task[TASK_CHECKPOINT].running ||
            maintenance_backing_off(cp->mt, TASK_CHECKPOINT))
                return;
        if (choose(cp, false, &mode, &trigger) && scheduler_begin(s, TASK_CHECKPOINT, now_boot()))
                start(cp, mode, trigger, deadline_for(cp, trigger), NULL, NULL);
}

/* Adapts the WAL watch's period to how fast the WAL grows. */
static void adapt_wal_poll(Checkpointer *cp) {
        const Config *cfg = maintenance_config(cp->mt);
        uint32_t grown;

        if (cp->wal.salt != cp->poll_salt || cp->wal.mx_frame < cp->poll_mx_frame)
                grown = cp->wal.mx_frame; /* reset since the last look */
        else
                grown = cp->wal.mx_frame - cp->poll_mx_frame;
        cp->poll_mx_frame = cp->wal.mx_frame;
        cp->poll_salt = cp->wal.salt;
        cp->quiet_for = grown == 0 ? cp->quiet_for + cp->wal_poll : 0;
        if (grown >= MAX(cfg->min_wal_pages / 4, 1))
                cp->wal_poll = MAX(MIN(cp->wal_poll, WAL_POLL_MAX) / 2, WAL_POLL_MIN);
        else if (grown > 0)
                cp->wal_poll = MIN(cp->wal_poll, WAL_POLL_MAX);
        else
                cp->wal_poll = MIN(cp->wal_poll * 2, cp->quiet_for >= WAL_POLL_IDLE_AFTER ? WAL_POLL_IDLE : WAL_POLL_MAX);
}

static int on_wal_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Checkpointer *cp = userdata;
        int r;

        if (!maintenance_active(cp->mt))
                return 0;
        if (refresh_wal(cp) == 0)
                adapt_wal_poll(cp);
        else
                cp->wal_poll = WAL_POLL_MAX;
        r = sd_event_source_set_time(s, usec + cp->wal_poll);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error("cannot re-arm the WAL watch: %s", strerror(-r));
        checkpointer_look(cp);
        return 0;
}

/* ---- Final checkpoint ------------------------------------------------------ */

int checkpointer_final(Checkpointer *cp, CheckpointMode mode, usec_t timeout, FinalDone done, void *userdata) {
        /* A run of the scheduler's, cancelled by the stop, may still have a
         * slice on the database thread: it ends as cancelled when that
         * comes back, and this one starts after it (its job is queued
         * behind as urgent). */
        if (cp->run.active && cp->run.cancellable) {
                cp->run.passes.cancelled = true;
                end_run(cp, cp->run.slices > 0);
        }
        start(cp, mode, TRIGGER_STOP, timeout, done, userdata);
        return 0;
}

/* ---- Object -------------------------------------------------------------- */

int checkpointer_new(Checkpointer **ret, Maintenance *mt) {
        Checkpointer *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->mt = mt;
        c->shm_fd = c->wal_fd = -1;
        c->wal_poll = WAL_POLL_MAX;
        *ret = c;
        return 0;
}

Checkpointer *checkpointer_free(Checkpointer *c) {
        if (!c)
                return NULL;
        sd_event_source_disable_unref(c->wal_timer);
        sd_event_source_disable_unref(c->slice_timer);
        free(c);
        return NULL;
}

int checkpointer_start(Checkpointer *c, const DbFiles *files) {
        sd_event *e = maintenance_env(c->mt)->event;
        int r;

        c->shm_fd = files ? files->shm_fd : -1;
        c->wal_fd = files ? files->wal_fd : -1;
        r = sd_event_add_time(e, &c->slice_timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, on_slice_timer, c);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(c->slice_timer, "checkpoint-slice");
        r = sd_event_source_set_enabled(c->slice_timer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(e, &c->wal_timer, CLOCK_MONOTONIC, c->wal_poll, WAL_POLL_MIN / 10, on_wal_timer,
                                       c);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(c->wal_timer, "wal-watch");
        return 0;
}

void checkpointer_stop(Checkpointer *c) {
        (void)sd_event_source_set_enabled(c->wal_timer, SD_EVENT_OFF);
        /* Between slices: no job comes back to end the run. */
        if (c->run.active && c->run.cancellable && sd_event_source_get_enabled(c->slice_timer, NULL) > 0) {
                c->run.passes.cancelled = true;
                end_run(c, true);
        }
}

const char *checkpointer_starvation(const Checkpointer *c) {
        return c->starved ? c->starvation : NULL;
}

bool checkpointer_wal_index(const Checkpointer *c, WalIndex *ret) {
        if (!c->wal_valid)
                return false;
        *ret = c->wal;
        return true;
}
