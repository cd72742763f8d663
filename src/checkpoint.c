/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
 * 18 MB between looks; adaptively it stays near min_wal_pages. */
#define WAL_POLL_MAX (1 * USEC_PER_SEC)
#define WAL_POLL_MIN (100 * USEC_PER_MSEC)

/* Checkpoints in a row that could not catch up before we call it starvation. */
#define STARVATION_ROUNDS 3

/* A busy RESTART or TRUNCATE is retried after this. Each attempt holds the
 * writer lock (stalling writers) for up to step_budget while it waits for
 * readers, so attempts are spaced out; but backing off further lets the WAL
 * grow meanwhile. Measured with two readers holding 20 ms of every 50: most
 * attempts were busy when their phases left no gap, and backing off by
 * doubling (up to 2 s) let the WAL reach 20 MiB where retrying every 250 ms
 * kept it at 8.5 MiB (benchmark B2). While a reader starves the checkpoints,
 * a reset cannot succeed at all: then once per checkpoint interval. */
#define RESET_RETRY (250 * USEC_PER_MSEC)

struct Checkpointer {
        Maintenance *mt;
        int shm_fd;
        sd_event_source *wal_timer; /* the WAL watch */

        WalIndex wal;
        bool wal_valid;
        usec_t wal_poll;            /* the WAL watch's current period */
        uint32_t poll_mx_frame;     /* mxFrame and salt at the previous look */
        uint32_t poll_salt;
        uint32_t ckpt_mx_frame;     /* mxFrame when our last checkpoint ended */
        uint32_t ckpt_salt;         /* and the WAL's salt then (it changes on reset) */
        uint32_t ckpt_backfill;     /* and nBackfill then */
        bool have_ckpt_mark;
        unsigned incomplete_in_a_row;
        bool starved;
        char starvation[512];
        usec_t reset_not_before;    /* CLOCK_BOOTTIME; after a busy RESTART/TRUNCATE */
};

typedef struct CheckpointJob {
        Job job;
        Checkpointer *checkpointer;
        CheckpointMode mode;
        TaskTrigger trigger;
        usec_t started_rt;
        usec_t max_wait;
        uint64_t wal_before, wal_after;
        bool final_ran;
        DbCheckpoint passive, final;
        /* The final checkpoint at stop reports here instead. */
        void (*done)(void *userdata, const CheckpointOutcome *outcome, bool ran);
        void *userdata;
} CheckpointJob;

static usec_t now_boot(void) {
        return now_usec(CLOCK_BOOTTIME);
}

/* ---- Pure decisions ----------------------------------------------------- */

void checkpoint_outcome(CheckpointMode mode, const DbCheckpoint *passive, const DbCheckpoint *final, bool ran,
                        CheckpointOutcome *o) {
        /* The pass that decides the outcome: the stronger mode's, if any. */
        const DbCheckpoint *last = final ? final : passive;
        bool busy;

        *o = (CheckpointOutcome){ .mode = mode, .frames = -1, .copied = -1 };
        if (!ran || passive->result == DB_E_CANCELLED || (final && final->result == DB_E_CANCELLED)) {
                o->result = TASK_RESULT_CANCELLED;
                bufprintf(o->error, sizeof(o->error), "cancelled: sqlvigil is stopping");
                return;
        }
        o->duration = passive->duration + (final ? final->duration : 0);
        /* PASSIVE never takes the writer lock; the other modes hold it while
         * they wait for readers, copy and sync, which is what writers feel.
         * Waiting for the checkpoint lock holds nothing. */
        o->lock_usec = final ? final->duration - MIN(final->duration, final->ckpt_lock_wait) : 0;

        /* A TRUNCATE reports 0 frames (the WAL it leaves): what there was
         * comes from the PASSIVE before it, unknown (-1) when that one found
         * another connection checkpointing. */
        if (!final || mode == CHECKPOINT_TRUNCATE)
                o->frames = passive->log_frames;
        else
                o->frames = MAX(passive->log_frames, final->log_frames);
        busy = last->result == DB_E_BUSY;
        /* Both counts stay -1 while another connection holds the checkpoint
         * lock all along (an application's autocheckpoint, usually). */
        o->lock_taken = busy && last->log_frames == -1;

        if (!final) {
                o->copied = passive->checkpointed;
                o->caught_up = passive->result == 0 && o->copied >= o->frames;
        } else {
                o->caught_up = final->result == 0;
                o->copied = o->caught_up ? o->frames : MAX(passive->checkpointed, final->checkpointed);
        }

        if (passive->result == DB_E_SQLITE || (final && final->result == DB_E_SQLITE)) {
                o->result = TASK_RESULT_FAILED;
                bufprintf(o->error, sizeof(o->error), "%s",
                          passive->result == DB_E_SQLITE ? passive->error : final->error);
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
 *    and while a writer commits every few milliseconds during a vacuum run
 *    (a PASSIVE that sees new frames arrive does not shrink the database
 *    file either). RESTART makes the next writer start over. It holds the
 *    writer lock while it copies the last frames, truncates the database
 *    and syncs it: small and often costs least (measured on this project's
 *    test machine: median 15 ms, where a RESTART at 128 MiB truncated 120 MB
 *    and synced for 160 ms);
 *  - PASSIVE when min_wal_pages new frames arrived (or, on the interval, any).
 * Both stronger modes wait for readers at most step_budget and back off
 * after a busy attempt.
 */
bool checkpoint_choose(const CheckpointInput *in, CheckpointMode *ret_mode, TaskTrigger *ret_trigger) {
        if (in->truncate_wal_size && in->wal_bytes > in->truncate_wal_size && in->may_reset) {
                *ret_mode = CHECKPOINT_TRUNCATE;
                *ret_trigger = TRIGGER_WAL_SIZE;
                return true;
        }
        if (!in->wal_valid)
                return false;
        if (in->wal.mx_frame >= 2 * in->min_wal_pages && in->may_reset) {
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
        return false;
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
                .min_wal_pages = cfg->min_wal_pages,
                .truncate_wal_size = cfg->truncate_wal_size,
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

/* ---- Runs ------------------------------------------------------------------- */

static void checkpoint_job_run(Job *j, Db *db) {
        CheckpointJob *c = container_of(j, CheckpointJob, job);

        c->wal_before = db_wal_bytes(db);
        /* PASSIVE first, always: it copies what it can without blocking
         * anyone. A stronger mode then only has to wait (boundedly, holding
         * the writer lock) for readers to leave and reset the WAL. */
        db_checkpoint(db, CHECKPOINT_PASSIVE, 0, &c->passive);
        if (c->mode != CHECKPOINT_PASSIVE && c->passive.result != DB_E_SQLITE) {
                db_checkpoint(db, c->mode, c->max_wait, &c->final);
                c->final_ran = true;
        }
        c->wal_after = db_wal_bytes(db);
}

static void outcome_of(const CheckpointJob *c, bool ran, CheckpointOutcome *o) {
        checkpoint_outcome(c->mode, &c->passive, c->final_ran ? &c->final : NULL, ran, o);
        o->wal_before = c->wal_before;
        o->wal_after = c->wal_after;
}

/* The one-line summary of an outcome, as the journal and replies give it. */
static void summarize(const CheckpointOutcome *o, char *buf, size_t size) {
        const char *mode = checkpoint_mode_names[o->mode];
        char before[32], after[32];

        format_bytes(before, sizeof(before), o->wal_before);
        format_bytes(after, sizeof(after), o->wal_after);
        if (o->result == TASK_RESULT_CANCELLED)
                bufprintf(buf, size, "%s: cancelled", mode);
        else if (o->result == TASK_RESULT_FAILED)
                bufprintf(buf, size, "%s failed: %s", mode, o->error);
        else if (o->frames < 0)
                bufprintf(buf, size, "%s: %s; WAL %s -> %s", mode,
                          o->caught_up ? "frames in WAL unknown (another connection was checkpointing), all checkpointed"
                                       : "busy: another connection was checkpointing",
                          before, after);
        else
                bufprintf(buf, size, "%s: %d frames in WAL, %d checkpointed%s; WAL %s -> %s", mode, o->frames,
                          MAX(o->copied, 0),
                          o->caught_up                        ? ""
                          : o->lock_taken                     ? " (busy: another connection was checkpointing)"
                          : o->result == TASK_RESULT_BUSY     ? " (busy: readers or a writer in the way)"
                                                              : "",
                          before, after);
}

static void checkpoint_job_done(Job *j, bool ran) {
        CheckpointJob *c = container_of(j, CheckpointJob, job);
        Checkpointer *cp = c->checkpointer;
        Maintenance *mt = cp->mt;
        CheckpointOutcome o;
        TaskReport r;
        bool reset_since, progress;

        outcome_of(c, ran, &o);
        if (c->done) {
                c->done(c->userdata, &o, ran);
                free(c);
                return;
        }

        task_report_init(&r, c->trigger, c->started_rt);
        r.result = o.result;
        r.duration = o.duration;
        if (o.lock_usec)
                lock_holds_add(&r.holds, o.lock_usec);
        summarize(&o, r.summary, sizeof(r.summary));
        r.message_id = SQLVIGIL_MESSAGE_CHECKPOINT;
        r.event = "checkpoint";
        r.priority = o.result == TASK_RESULT_FAILED ? LOG_ERR : LOG_INFO;
        bufprintf(r.message, sizeof(r.message), "checkpoint (%s)", task_trigger_names[c->trigger]);
        log_field(&r.fields, "SQLVIGIL_CHECKPOINT_MODE", "%s", checkpoint_mode_names[c->mode]);
        log_field(&r.fields, "SQLVIGIL_WAL_FRAMES", "%d", o.frames);
        log_field(&r.fields, "SQLVIGIL_PAGES", "%d", o.copied);
        log_field(&r.fields, "SQLVIGIL_BUSY", "%d", o.result == TASK_RESULT_BUSY);
        log_field(&r.fields, "SQLVIGIL_WAL_BYTES_BEFORE", "%" PRIu64, o.wal_before);
        log_field(&r.fields, "SQLVIGIL_WAL_BYTES", "%" PRIu64, o.wal_after);
        r.outcome = (MaintenanceOutcome){
                .task = TASK_CHECKPOINT,
                .ok = o.result != TASK_RESULT_FAILED && o.result != TASK_RESULT_CANCELLED,
                .mode = checkpoint_mode_names[c->mode],
                .frames = o.frames,
                .checkpointed = o.copied,
                .busy = o.result == TASK_RESULT_BUSY,
        };

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
                if (c->mode != CHECKPOINT_PASSIVE && !o.caught_up)
                        cp->reset_not_before =
                                now_boot() + (cp->starved ? MAX(RESET_RETRY, maintenance_config(mt)->checkpoint_interval)
                                                          : RESET_RETRY);
                if (o.result != TASK_RESULT_FAILED)
                        update_starvation(cp, o.caught_up || reset_since || progress, o.wal_after);
        }
        free(c);
        maintenance_end(mt, TASK_CHECKPOINT, &r);
}

static CheckpointJob *checkpoint_job_new(Checkpointer *cp, CheckpointMode mode, TaskTrigger trigger, usec_t max_wait) {
        CheckpointJob *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->job = (Job){ .name = "checkpoint", .cancellable = true, .run = checkpoint_job_run,
                        .done = checkpoint_job_done };
        c->checkpointer = cp;
        c->mode = mode;
        c->trigger = trigger;
        c->max_wait = max_wait;
        c->started_rt = now_usec(CLOCK_REALTIME);
        return c;
}

/* Starts a run; on failure ends it at once (the run is already marked running). */
static void start(Checkpointer *cp, CheckpointMode mode, TaskTrigger trigger) {
        const Config *cfg = maintenance_config(cp->mt);
        CheckpointJob *c;
        TaskReport r;

        /* A stronger mode holds the writer lock while it waits: bound that
         * by the same budget as a vacuum step. An admin asked for it and
         * may wait longer: busy_timeout. */
        c = checkpoint_job_new(cp, mode, trigger,
                               maintenance_admin_waiting(cp->mt, TASK_CHECKPOINT) ? config_busy_timeout(cfg)
                                                                                   : cfg->step_budget);
        if (c && maintenance_submit(cp->mt, &c->job)) {
                log_debug("checkpoint: starting %s (%s)", checkpoint_mode_names[mode], task_trigger_names[trigger]);
                return;
        }
        task_report_init(&r, trigger, now_usec(CLOCK_REALTIME));
        r.result = c ? TASK_RESULT_CANCELLED : TASK_RESULT_FAILED;
        bufprintf(r.summary, sizeof(r.summary), "%s: %s", checkpoint_mode_names[mode],
                  c ? "cancelled: sqlvigil is stopping" : "cannot start: out of memory");
        free(c);
        maintenance_end(cp->mt, TASK_CHECKPOINT, &r);
}

void checkpointer_run(Checkpointer *cp, TaskTrigger trigger, CheckpointMode mode) {
        TaskReport r;

        if (trigger == TRIGGER_ADMIN) {
                start(cp, mode, trigger);
                return;
        }
        /* The scheduled one: only when there is something to do. */
        (void)refresh_wal(cp);
        if (choose(cp, true, &mode, &trigger)) {
                start(cp, mode, trigger);
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

        if (!maintenance_active(cp->mt) || refresh_wal(cp) != 0 || s->task[TASK_CHECKPOINT].running)
                return;
        if (choose(cp, false, &mode, &trigger) && scheduler_begin(s, TASK_CHECKPOINT, now_boot()))
                start(cp, mode, trigger);
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
        if (grown >= MAX(cfg->min_wal_pages / 4, 1))
                cp->wal_poll = MAX(cp->wal_poll / 2, WAL_POLL_MIN);
        else if (grown == 0)
                cp->wal_poll = MIN(cp->wal_poll * 2, WAL_POLL_MAX);
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

int checkpointer_final(Checkpointer *cp, CheckpointMode mode, usec_t timeout,
                       void (*done)(void *userdata, const CheckpointOutcome *outcome, bool ran), void *userdata) {
        CheckpointJob *c = checkpoint_job_new(cp, mode, TRIGGER_STOP, timeout);

        if (!c)
                return -ENOMEM;
        c->job.name = "final checkpoint";
        c->job.urgent = true;
        c->job.cancellable = false;
        c->done = done;
        c->userdata = userdata;
        worker_submit(maintenance_env(cp->mt)->db_worker, &c->job);
        return 0;
}

/* ---- Object -------------------------------------------------------------- */

int checkpointer_new(Checkpointer **ret, Maintenance *mt) {
        Checkpointer *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->mt = mt;
        c->shm_fd = -1;
        c->wal_poll = WAL_POLL_MAX;
        *ret = c;
        return 0;
}

Checkpointer *checkpointer_free(Checkpointer *c) {
        if (!c)
                return NULL;
        sd_event_source_disable_unref(c->wal_timer);
        free(c);
        return NULL;
}

int checkpointer_start(Checkpointer *c, int shm_fd) {
        int r;

        c->shm_fd = shm_fd;
        r = sd_event_add_time_relative(maintenance_env(c->mt)->event, &c->wal_timer, CLOCK_MONOTONIC, c->wal_poll,
                                       WAL_POLL_MIN / 10, on_wal_timer, c);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(c->wal_timer, "wal-watch");
        return 0;
}

void checkpointer_stop(Checkpointer *c) {
        (void)sd_event_source_set_enabled(c->wal_timer, SD_EVENT_OFF);
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
