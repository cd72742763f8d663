/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget.h"
#include "db.h"
#include "log.h"
#include "maintenance.h"
#include "manager.h"
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

/* A task that could not get the lock is tried again this soon rather than a
 * whole interval (a day, for ANALYZE) later. */
#define BUSY_RETRY (5 * USEC_PER_MINUTE)

/* Consecutive vacuum steps that found the lock busy before the run gives up
 * until its next interval. At 2 x step_budget per attempt, about 4 s. */
#define VACUUM_MAX_BUSY 100

typedef struct Request {
        MaintenanceReply reply;
        void *userdata;
} Request;

typedef struct VacuumRun {
        bool active;
        const char *trigger;
        int64_t floor;          /* stop when the freelist is this small */
        int64_t limit;          /* pages to free at most, 0: no limit */
        int64_t freelist_before, page_count_before;
        int64_t freelist, page_count;
        uint64_t freed;
        unsigned steps, busy_in_a_row, busy_total;
        usec_t lock_max;
        usec_t started_rt;
        Budget budget;
} VacuumRun;

struct Maintenance {
        Manager *manager;
        Scheduler scheduler;
        sd_event_source *timer;      /* the scheduler's next task */
        sd_event_source *wal_timer;  /* the WAL watch */
        sd_event_source *step_timer; /* the pause between vacuum steps */

        TaskRun last[_TASK_MAX];
        MaintenanceTotals totals;
        Request pending[_TASK_MAX]; /* admin replies waiting for a run */

        /* WAL watch and checkpoints. */
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
        usec_t reset_not_before;    /* after a busy RESTART/TRUNCATE */

        VacuumRun vacuum;
        usec_t vacuum_ended;        /* CLOCK_MONOTONIC; probes before this are stale */
        double learned_usec_per_page;
        char vacuum_note[256];      /* the last "cannot reclaim" report, to say it once */

        bool corrupt;
        char corruption[512];
        bool publish_pending;       /* a run ended: refresh the metrics */
};

static int arm_timer(Maintenance *mt);
static void vacuum_next_step(Maintenance *mt);

/* ---- Small helpers ---------------------------------------------------- */

static usec_t now_boot(void) {
        return now_usec(CLOCK_BOOTTIME);
}

static void collect_intervals(const Config *c, usec_t intervals[_TASK_MAX]) {
        intervals[TASK_CHECKPOINT] = c->checkpoint_interval;
        intervals[TASK_VACUUM] = c->vacuum_interval;
        intervals[TASK_ANALYZE] = c->analyze_interval;
        intervals[TASK_QUICK_CHECK] = c->quick_check_interval;
}

static uint64_t random_seed(void) {
        uint64_t seed = now_usec(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32);
        FILE *f = fopen("/dev/urandom", "re");

        /* Without /dev/urandom (a very bare sandbox) time and pid still make
         * instances on one host differ, which is all the jitter is for. */
        if (f) {
                if (fread(&seed, sizeof(seed), 1, f) != 1)
                        seed ^= (uint64_t)(uintptr_t)&seed;
                fclose(f);
        }
        return seed;
}

/* Reads the WAL index into mt->wal; 0, or what walindex_read() says. */
static int refresh_wal(Maintenance *mt) {
        int r = walindex_read(mt->manager->db->shm_fd, &mt->wal);

        if (r == 0)
                mt->wal_valid = true;
        return r;
}

/* Frames committed since our last checkpoint ended. */
static uint32_t new_frames(const Maintenance *mt) {
        if (!mt->wal_valid)
                return 0;
        if (!mt->have_ckpt_mark || mt->wal.salt != mt->ckpt_salt || mt->wal.mx_frame < mt->ckpt_mx_frame)
                return mt->wal.mx_frame; /* first look, or the WAL was reset since */
        return mt->wal.mx_frame - mt->ckpt_mx_frame;
}

static void record_run(Maintenance *mt, TaskId t, usec_t started_rt, usec_t duration, usec_t lock_usec,
                       const char *result, const char *trigger, const char *summary) {
        TaskRun *r = &mt->last[t];

        *r = (TaskRun){
                .valid = true,
                .at = started_rt,
                .duration = duration,
                .lock_usec = lock_usec,
                .result = result,
                .trigger = trigger,
        };
        bufprintf(r->summary, sizeof(r->summary), "%s", summary);
        mt->totals.runs[t]++;
        /* Totals are counted by the callers right after; publish then. */
        mt->publish_pending = true;
}

static void reply(Maintenance *mt, TaskId t, const MaintenanceOutcome *o) {
        Request r = mt->pending[t];

        mt->pending[t] = (Request){ 0 };
        if (r.reply)
                r.reply(r.userdata, o);
}

/* A run of t ended. With retry 0 the next comes one interval after this
 * one's start; otherwise this one found the lock taken, and the next comes
 * after retry (an interval at most). */
static void task_end(Maintenance *mt, TaskId t, usec_t retry) {
        if (retry)
                scheduler_retry(&mt->scheduler, t, now_boot(), retry);
        else
                scheduler_done(&mt->scheduler, t, now_boot());
        (void)arm_timer(mt);
        if (mt->publish_pending) {
                mt->publish_pending = false;
                manager_publish(mt->manager);
        }
}

static bool submit(Maintenance *mt, Job *job) {
        if (mt->scheduler.stopped || mt->manager->stopping)
                return false;
        worker_submit(mt->manager->worker, job);
        return true;
}

/* What the job of every task run carries besides its own figures. */
typedef struct TaskJob {
        Job job;
        Maintenance *mt;
        const char *trigger;
        usec_t started_rt; /* for the last-run record */
} TaskJob;

/* A zeroed job of size bytes: a struct whose first member is a TaskJob. */
static void *task_job_new(Maintenance *mt, size_t size, const char *name, const char *trigger,
                          void (*run)(Db *db, Job *job), void (*done)(Job *job, bool ran)) {
        TaskJob *t = calloc(1, size);

        if (!t)
                return NULL;
        t->job = (Job){ .name = name, .cancellable = true, .run = run, .done = done };
        t->mt = mt;
        t->trigger = trigger;
        t->started_rt = now_usec(CLOCK_REALTIME);
        return t;
}

/* Hands the job to the database thread, or frees it when sqlvigil is
 * stopping (-ESHUTDOWN). */
static int task_job_submit(TaskJob *t) {
        if (!submit(t->mt, &t->job)) {
                free(t);
                return -ESHUTDOWN;
        }
        return 0;
}

/* ---- Checkpoints ------------------------------------------------------ */

typedef struct CheckpointJob {
        TaskJob task;
        CheckpointMode mode;
        usec_t max_wait;
        uint64_t wal_before, wal_after;
        DbCheckpoint passive, final;
} CheckpointJob;

static void checkpoint_run(Db *db, Job *j) {
        CheckpointJob *c = container_of(j, CheckpointJob, task.job);

        c->wal_before = db_wal_bytes(db);
        /* PASSIVE first, always: it copies what it can without blocking
         * anyone. A stronger mode then only has to wait (boundedly, holding
         * the writer lock) for readers to leave and reset the WAL. */
        db_checkpoint(db, CHECKPOINT_PASSIVE, 0, &c->passive);
        if (c->mode != CHECKPOINT_PASSIVE && c->passive.result != DB_E_SQLITE)
                db_checkpoint(db, c->mode, c->max_wait, &c->final);
        c->wal_after = db_wal_bytes(db);
}

static void update_starvation(Maintenance *mt, bool caught_up, uint64_t wal_bytes) {
        Manager *m = mt->manager;
        LogFields f = { 0 };
        char bytes[32];

        if (caught_up) {
                mt->incomplete_in_a_row = 0;
                if (mt->starved) {
                        mt->starved = false;
                        mt->starvation[0] = '\0';
                        log_field(&f, "SQLVIGIL_STARVED", "0");
                        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, wal_bytes);
                        log_event(LOG_NOTICE, SQLVIGIL_MESSAGE_STARVATION, "starvation", &f,
                                  "checkpoint starvation over: checkpoints caught up with the WAL (%s)",
                                  format_bytes(bytes, sizeof(bytes), wal_bytes));
                        manager_reevaluate(m);
                }
                return;
        }

        if (++mt->incomplete_in_a_row < STARVATION_ROUNDS || mt->starved)
                return;

        {
                WalReader readers[4];
                size_t n = 0;
                struct stat st;
                char who[320] = "";
                int r = -ENOENT;

                if (fstat(mt->manager->db->shm_fd, &st) == 0)
                        r = walindex_readers(NULL, st.st_dev, st.st_ino, mt->wal_valid ? &mt->wal : NULL, getpid(),
                                             readers, ELEMENTSOF(readers), &n);
                if (r == 0 && n > 0)
                        walindex_format_readers(readers, n, mt->wal.mx_frame, who, sizeof(who));
                else if (r < 0)
                        bufprintf(who, sizeof(who), "cannot read /proc/locks: %s", strerror(-r));
                else
                        bufprintf(who, sizeof(who), "no read lock found (a reader in another mount or PID namespace?)");

                mt->starved = true;
                bufprintf(mt->starvation, sizeof(mt->starvation),
                          "checkpoints starved: %u in a row could not catch up with the WAL (%s, %" PRIu32
                          " frames not in the database); reader: %s",
                          mt->incomplete_in_a_row, format_bytes(bytes, sizeof(bytes), wal_bytes),
                          mt->wal_valid ? walindex_pending(&mt->wal) : 0, who);
                log_field(&f, "SQLVIGIL_STARVED", "1");
                log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, wal_bytes);
                log_field(&f, "SQLVIGIL_WAL_FRAMES", "%" PRIu32, mt->wal_valid ? mt->wal.mx_frame : 0);
                log_field(&f, "SQLVIGIL_PAGES", "%" PRIu32, mt->wal_valid ? walindex_pending(&mt->wal) : 0);
                if (r == 0 && n > 0) {
                        log_field(&f, "SQLVIGIL_READER_PID", "%d", (int)readers[0].pid);
                        log_field(&f, "SQLVIGIL_READER_COMM", "%s", readers[0].comm);
                }
                log_event(LOG_WARNING, SQLVIGIL_MESSAGE_STARVATION, "starvation", &f, "%s", mt->starvation);
                manager_reevaluate(m);
        }
}

static void checkpoint_done(Job *j, bool ran) {
        CheckpointJob *c = container_of(j, CheckpointJob, task.job);
        Maintenance *mt = c->task.mt;
        const char *mode = checkpoint_mode_names[c->mode], *result;
        /* The pass that decides the outcome: the stronger mode's, if any. */
        const DbCheckpoint *last = c->mode == CHECKPOINT_PASSIVE ? &c->passive : &c->final;
        char before[32], after[32], took[32], summary[256];
        MaintenanceOutcome o = { .task = TASK_CHECKPOINT };
        LogFields f = { 0 };
        usec_t duration, lock_usec;
        int frames, copied, prio = LOG_INFO;
        bool caught_up, busy, lock_taken, reset_since, progress;

        if (mt->manager->tearing_down) {
                free(c);
                return;
        }
        if (!ran || c->passive.result == DB_E_CANCELLED) {
                record_run(mt, TASK_CHECKPOINT, c->task.started_rt, 0, 0, "cancelled", c->task.trigger, "cancelled");
                o.run = &mt->last[TASK_CHECKPOINT];
                o.error = "cancelled: sqlvigil is stopping";
                reply(mt, TASK_CHECKPOINT, &o);
                free(c);
                return;
        }

        /* A TRUNCATE reports 0 frames (the WAL it leaves); what there was
         * comes from the PASSIVE before it, unknown (-1) if that one found
         * another connection checkpointing. */
        frames = c->mode == CHECKPOINT_PASSIVE || c->mode == CHECKPOINT_TRUNCATE
                         ? c->passive.log_frames
                         : MAX(c->passive.log_frames, c->final.log_frames);
        copied = c->passive.checkpointed;
        busy = last->result == DB_E_BUSY;
        duration = c->passive.duration + c->final.duration;
        /* PASSIVE never takes the writer lock; the other modes hold it while
         * they wait for readers, which is what writers feel. */
        lock_usec = c->mode == CHECKPOINT_PASSIVE ? 0 : c->final.duration - c->final.ckpt_lock_wait;
        /* Both counts stay -1 when another connection held the checkpoint
         * lock all along (an application's autocheckpoint, usually). */
        lock_taken = busy && last->log_frames == -1;

        if (c->mode == CHECKPOINT_PASSIVE) {
                caught_up = c->passive.result == 0 && copied >= frames;
        } else {
                caught_up = c->final.result == 0;
                if (caught_up)
                        copied = frames;
        }
        /* Readers that come and go but always overlap keep a PASSIVE
         * checkpoint a few frames short every time; that is no starvation as
         * long as the copying moves on (nBackfill grows) or the WAL gets
         * reset now and then (its salt changes). Starvation is a reader that
         * holds the copying at one frame, round after round. */
        (void)refresh_wal(mt);
        reset_since = mt->wal_valid && mt->have_ckpt_mark && mt->wal.salt != mt->ckpt_salt;
        progress = mt->wal_valid && mt->have_ckpt_mark && mt->wal.n_backfill > mt->ckpt_backfill;

        if (c->passive.result == DB_E_SQLITE || c->final.result == DB_E_SQLITE) {
                result = "failed";
                prio = LOG_ERR;
        } else if (caught_up)
                result = "ok";
        else if (busy)
                result = "busy";
        else
                result = "incomplete";

        format_bytes(before, sizeof(before), c->wal_before);
        format_bytes(after, sizeof(after), c->wal_after);
        format_elapsed(took, sizeof(took), duration);
        if (prio == LOG_ERR)
                bufprintf(summary, sizeof(summary), "%s failed: %s", mode,
                          c->passive.result == DB_E_SQLITE ? c->passive.error : c->final.error);
        else if (frames < 0)
                bufprintf(summary, sizeof(summary), "%s: %s; WAL %s -> %s", mode,
                          caught_up ? "frames in WAL unknown (another connection was checkpointing), all checkpointed"
                                    : "busy: another connection was checkpointing",
                          before, after);
        else
                bufprintf(summary, sizeof(summary), "%s: %d frames in WAL, %d checkpointed%s; WAL %s -> %s", mode,
                          frames, copied,
                          caught_up    ? ""
                          : lock_taken ? " (busy: another connection was checkpointing)"
                          : busy       ? " (busy: readers or a writer in the way)"
                                       : "",
                          before, after);

        log_field(&f, "SQLVIGIL_CHECKPOINT_MODE", "%s", mode);
        log_field(&f, "SQLVIGIL_TRIGGER", "%s", c->task.trigger);
        log_field(&f, "SQLVIGIL_RESULT", "%s", result);
        log_field(&f, "SQLVIGIL_WAL_FRAMES", "%d", frames);
        log_field(&f, "SQLVIGIL_PAGES", "%d", copied);
        log_field(&f, "SQLVIGIL_BUSY", "%d", busy);
        log_field(&f, "SQLVIGIL_WAL_BYTES_BEFORE", "%" PRIu64, c->wal_before);
        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, c->wal_after);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, duration);
        log_field(&f, "SQLVIGIL_LOCK_USEC", "%" PRIu64, lock_usec);
        log_event(prio, SQLVIGIL_MESSAGE_CHECKPOINT, "checkpoint", &f, "checkpoint (%s) %s in %s", c->task.trigger,
                  summary, took);

        record_run(mt, TASK_CHECKPOINT, c->task.started_rt, duration, lock_usec, result, c->task.trigger, summary);
        if (copied > 0)
                mt->totals.frames_checkpointed += (uint64_t)copied;

        /* Where the WAL stood when we finished: new frames count from here. */
        if (mt->wal_valid) {
                mt->ckpt_mx_frame = mt->wal.mx_frame;
                mt->ckpt_salt = mt->wal.salt;
                mt->ckpt_backfill = mt->wal.n_backfill;
                mt->have_ckpt_mark = true;
        }
        if (c->mode != CHECKPOINT_PASSIVE && !caught_up)
                mt->reset_not_before = now_boot() + (mt->starved ? MAX(RESET_RETRY, mt->manager->config->checkpoint_interval)
                                                                 : RESET_RETRY);

        if (prio != LOG_ERR)
                update_starvation(mt, caught_up || reset_since || progress, c->wal_after);

        o.ok = prio != LOG_ERR;
        o.mode = mode;
        o.run = &mt->last[TASK_CHECKPOINT];
        o.error = prio == LOG_ERR ? summary : NULL;
        o.frames = frames;
        o.checkpointed = copied;
        o.busy = busy;
        reply(mt, TASK_CHECKPOINT, &o);

        task_end(mt, TASK_CHECKPOINT, 0);
        free(c);
}

static int start_checkpoint(Maintenance *mt, CheckpointMode mode, const char *trigger) {
        const Config *cfg = mt->manager->config;
        CheckpointJob *c;
        int r;

        c = task_job_new(mt, sizeof(*c), "checkpoint", trigger, checkpoint_run, checkpoint_done);
        if (!c)
                return -ENOMEM;
        c->mode = mode;
        /* A stronger mode holds the writer lock while it waits: bound that
         * by the same budget as a vacuum step. An admin asked for it and
         * may wait longer: busy_timeout. */
        c->max_wait = mt->pending[TASK_CHECKPOINT].reply
                              ? manager_busy_timeout(cfg)
                              : cfg->step_budget;
        r = task_job_submit(&c->task);
        if (r < 0)
                return r;
        log_debug("checkpoint: starting %s (%s)", checkpoint_mode_names[mode], trigger);
        return 0;
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
static bool choose_checkpoint(Maintenance *mt, uint64_t wal_bytes, bool interval, CheckpointMode *ret_mode,
                              const char **ret_trigger) {
        const Config *cfg = mt->manager->config;
        bool may_reset = now_boot() >= mt->reset_not_before;
        uint32_t frames;

        if (cfg->truncate_wal_size && wal_bytes > cfg->truncate_wal_size && may_reset) {
                *ret_mode = CHECKPOINT_TRUNCATE;
                *ret_trigger = "wal-size";
                return true;
        }
        if (!mt->wal_valid)
                return false;
        if (mt->wal.mx_frame >= 2 * cfg->min_wal_pages && may_reset) {
                *ret_mode = CHECKPOINT_RESTART;
                *ret_trigger = "wal-restart";
                return true;
        }
        frames = new_frames(mt);
        if (frames >= cfg->min_wal_pages || (interval && (frames > 0 || walindex_pending(&mt->wal) > 0))) {
                *ret_mode = CHECKPOINT_PASSIVE;
                *ret_trigger = interval ? "interval" : "wal-pages";
                return true;
        }
        return false;
}

/* The scheduled checkpoint: only when there is something to do. */
static void scheduled_checkpoint(Maintenance *mt) {
        CheckpointMode mode;
        const char *trigger;

        (void)refresh_wal(mt);
        if (!choose_checkpoint(mt, db_wal_bytes(mt->manager->db), true, &mode, &trigger) ||
            start_checkpoint(mt, mode, trigger) < 0)
                task_end(mt, TASK_CHECKPOINT, 0);
}

/* Adapts the WAL watch's period to how fast the WAL grows. */
static void adapt_wal_poll(Maintenance *mt) {
        const Config *cfg = mt->manager->config;
        uint32_t grown;

        if (mt->wal.salt != mt->poll_salt || mt->wal.mx_frame < mt->poll_mx_frame)
                grown = mt->wal.mx_frame; /* reset since the last look */
        else
                grown = mt->wal.mx_frame - mt->poll_mx_frame;
        mt->poll_mx_frame = mt->wal.mx_frame;
        mt->poll_salt = mt->wal.salt;
        if (grown >= MAX(cfg->min_wal_pages / 4, 1))
                mt->wal_poll = MAX(mt->wal_poll / 2, WAL_POLL_MIN);
        else if (grown == 0)
                mt->wal_poll = MIN(mt->wal_poll * 2, WAL_POLL_MAX);
}

/* Starts the checkpoint the WAL needs now, if any and none runs. */
static void wal_check(Maintenance *mt) {
        CheckpointMode mode;
        const char *trigger;

        if (mt->scheduler.stopped || !mt->wal_valid || mt->scheduler.task[TASK_CHECKPOINT].running)
                return;
        if (choose_checkpoint(mt, db_wal_bytes(mt->manager->db), false, &mode, &trigger) &&
            scheduler_begin(&mt->scheduler, TASK_CHECKPOINT, now_boot()) && start_checkpoint(mt, mode, trigger) < 0)
                task_end(mt, TASK_CHECKPOINT, 0);
}

static int on_wal_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Maintenance *mt = userdata;
        int r;

        if (mt->scheduler.stopped)
                return 0;
        if (refresh_wal(mt) == 0)
                adapt_wal_poll(mt);
        else
                mt->wal_poll = WAL_POLL_MAX;
        r = sd_event_source_set_time(s, usec + mt->wal_poll);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error("cannot re-arm the WAL watch: %s", strerror(-r));
        wal_check(mt);
        return 0;
}

/* ---- Incremental vacuum ----------------------------------------------- */

typedef struct VacuumStepJob {
        Job job;
        Maintenance *mt;
        uint32_t pages;
        usec_t max_wait;
        usec_t hold;
        DbVacuumStep step;
} VacuumStepJob;

typedef struct ConvertJob {
        TaskJob task;
        usec_t max_wait;
        uint64_t file_before, file_after;
        DbConvert convert;
} ConvertJob;

static void vacuum_step_run(Db *db, Job *j) {
        VacuumStepJob *v = container_of(j, VacuumStepJob, job);

        db_vacuum_step(db, v->pages, v->max_wait, v->hold, &v->step);
}

static void vacuum_finish(Maintenance *mt, const char *result, const char *error) {
        VacuumRun *v = &mt->vacuum;
        Manager *m = mt->manager;
        MaintenanceOutcome o = { .task = TASK_VACUUM };
        char took[32], lock[32], freed[32], fb[32], fa[32], summary[256];
        /* The database's size as its page count says: the file itself only
         * shrinks when a checkpoint copies the last commit back. */
        uint64_t page_size = (uint64_t)MAX(m->page_size, 1);
        uint64_t size_before = (uint64_t)v->page_count_before * page_size;
        uint64_t size_after = (uint64_t)v->page_count * page_size;
        usec_t duration = now_boot() - mt->scheduler.task[TASK_VACUUM].last_start;
        LogFields f = { 0 };
        int prio = streq(result, "failed") ? LOG_ERR : LOG_INFO;

        (void)sd_event_source_set_enabled(mt->step_timer, SD_EVENT_OFF);
        v->active = false;
        mt->vacuum_ended = now_usec(CLOCK_MONOTONIC);

        format_elapsed(took, sizeof(took), duration);
        format_elapsed(lock, sizeof(lock), v->lock_max);
        format_bytes(freed, sizeof(freed), v->freed * page_size);
        format_bytes(fb, sizeof(fb), size_before);
        format_bytes(fa, sizeof(fa), size_after);
        if (error)
                bufprintf(summary, sizeof(summary), "%s after freeing %" PRIu64 " pages: %s", result, v->freed, error);
        else
                bufprintf(summary, sizeof(summary),
                          "freed %" PRIu64 " pages (%s) in %u steps, longest lock %s; free pages %" PRIi64 " -> %" PRIi64
                          "; database %s -> %s",
                          v->freed, freed, v->steps, lock, v->freelist_before, v->freelist, fb, fa);

        log_field(&f, "SQLVIGIL_TRIGGER", "%s", v->trigger);
        log_field(&f, "SQLVIGIL_RESULT", "%s", result);
        log_field(&f, "SQLVIGIL_PAGES", "%" PRIu64, v->freed);
        log_field(&f, "SQLVIGIL_STEPS", "%u", v->steps);
        log_field(&f, "SQLVIGIL_BUSY_STEPS", "%u", v->busy_total);
        log_field(&f, "SQLVIGIL_FREELIST_BEFORE", "%" PRIi64, v->freelist_before);
        log_field(&f, "SQLVIGIL_FREELIST_COUNT", "%" PRIi64, v->freelist);
        log_field(&f, "SQLVIGIL_PAGE_COUNT_BEFORE", "%" PRIi64, v->page_count_before);
        log_field(&f, "SQLVIGIL_PAGE_COUNT", "%" PRIi64, v->page_count);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, duration);
        log_field(&f, "SQLVIGIL_LOCK_USEC", "%" PRIu64, v->lock_max);
        log_field(&f, "SQLVIGIL_STEP_BUDGET_USEC", "%" PRIu64, m->config->step_budget);
        log_event(prio, SQLVIGIL_MESSAGE_VACUUM, "vacuum", &f, "vacuum (%s) %s in %s", v->trigger, summary, took);

        record_run(mt, TASK_VACUUM, v->started_rt, duration, v->lock_max, result, v->trigger, summary);
        mt->totals.pages_reclaimed += v->freed;
        if (v->budget.usec_per_page > 0)
                mt->learned_usec_per_page = v->budget.usec_per_page;

        o.ok = streq(result, "ok");
        o.run = &mt->last[TASK_VACUUM];
        o.error = o.ok ? NULL : error ? error : result;
        o.pages = (int64_t)v->freed;
        o.freelist_after = v->freelist;
        o.busy = streq(result, "busy");
        reply(mt, TASK_VACUUM, &o);

        if (streq(result, "busy"))
                task_end(mt, TASK_VACUUM, BUSY_RETRY);
        else
                task_end(mt, TASK_VACUUM, 0);
}

static void vacuum_step_done(Job *j, bool ran) {
        VacuumStepJob *s = container_of(j, VacuumStepJob, job);
        Maintenance *mt = s->mt;
        VacuumRun *v = &mt->vacuum;
        const DbVacuumStep st = s->step;
        usec_t pause;
        int r;

        free(s);
        if (mt->manager->tearing_down)
                return;
        if (!ran || st.result == DB_E_CANCELLED) {
                vacuum_finish(mt, "cancelled", "sqlvigil is stopping");
                return;
        }
        if (st.result == DB_E_SQLITE) {
                vacuum_finish(mt, "failed", st.error);
                return;
        }
        if (st.result == DB_E_BUSY) {
                /* Writers had the lock the whole time we were willing to
                 * wait: let them be, and try again after a pause. */
                v->busy_total++;
                if (++v->busy_in_a_row >= VACUUM_MAX_BUSY) {
                        vacuum_finish(mt, "busy", "the write lock was busy for every attempt");
                        return;
                }
                pause = budget_pause(&v->budget, 0);
        } else {
                v->busy_in_a_row = 0;
                v->steps++;
                v->freed += st.freed;
                v->freelist = st.freelist_count;
                v->page_count = st.page_count;
                v->lock_max = MAX(v->lock_max, st.lock_held);
                budget_record(&v->budget, st.freed, st.lock_held);
                pause = budget_pause(&v->budget, st.lock_held);
                /* Our own steps are what fill the WAL fastest now (each
                 * writes about three frames per page freed): look at it after
                 * every step rather than at the next poll, so checkpoints
                 * stay small. Measured: between 100 ms polls the WAL grew by
                 * 5,000-17,000 frames, and the RESTART that followed held the
                 * writer lock for up to 70 ms. */
                if (refresh_wal(mt) == 0)
                        wal_check(mt);
                log_debug("vacuum step %u: freed %" PRIu32 " pages holding the lock %" PRIu64 " us; next %" PRIu32
                          " pages (%.1f us/page)",
                          v->steps, st.freed, st.lock_held, v->budget.pages, v->budget.usec_per_page);
                if (st.freed == 0 || v->freelist <= v->floor || (v->limit && (int64_t)v->freed >= v->limit)) {
                        vacuum_finish(mt, "ok", NULL);
                        return;
                }
        }
        if (mt->scheduler.stopped) {
                vacuum_finish(mt, "cancelled", "sqlvigil is stopping");
                return;
        }
        r = sd_event_source_set_time_relative(mt->step_timer, pause);
        if (r >= 0)
                r = sd_event_source_set_enabled(mt->step_timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_error("cannot arm the vacuum step timer: %s", strerror(-r));
                vacuum_finish(mt, "failed", "timer");
        }
}

static void vacuum_next_step(Maintenance *mt) {
        VacuumRun *v = &mt->vacuum;
        VacuumStepJob *s;
        int64_t want;

        want = v->freelist - v->floor;
        if (v->limit)
                want = MIN(want, v->limit - (int64_t)v->freed);
        s = calloc(1, sizeof(*s));
        if (!s) {
                vacuum_finish(mt, "failed", "out of memory");
                return;
        }
        s->job = (Job){ .name = "vacuum", .cancellable = true, .run = vacuum_step_run, .done = vacuum_step_done };
        s->mt = mt;
        s->pages = (uint32_t)MAX(MIN((int64_t)v->budget.pages, want), 1);
        s->hold = budget_hold(&v->budget);
        /* Waiting for the lock blocks nobody; do not wait much longer than a
         * step would hold it. */
        s->max_wait = mt->manager->config->step_budget;
        if (!submit(mt, &s->job)) {
                free(s);
                vacuum_finish(mt, "cancelled", "sqlvigil is stopping");
        }
}

static int on_step_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Maintenance *mt = userdata;

        (void)s;
        (void)usec;
        if (mt->vacuum.active)
                vacuum_next_step(mt);
        return 0;
}

static void convert_run(Db *db, Job *j) {
        ConvertJob *c = container_of(j, ConvertJob, task.job);

        c->file_before = file_size(db->path);
        db_convert(db, c->max_wait, &c->convert);
        c->file_after = file_size(db->path);
}

static void convert_done(Job *j, bool ran) {
        ConvertJob *c = container_of(j, ConvertJob, task.job);
        Maintenance *mt = c->task.mt;
        Manager *m = mt->manager;
        const DbConvert *cv = &c->convert;
        char took[32], fb[32], fa[32], summary[256];
        MaintenanceOutcome o = { .task = TASK_VACUUM };
        LogFields f = { 0 };
        const char *result;

        if (m->tearing_down) {
                free(c);
                return;
        }
        /* Health probes from before the conversion describe another file. */
        mt->vacuum_ended = now_usec(CLOCK_MONOTONIC);
        format_elapsed(took, sizeof(took), cv->duration);
        format_bytes(fb, sizeof(fb), c->file_before);
        format_bytes(fa, sizeof(fa), c->file_after);
        if (!ran || cv->result == DB_E_CANCELLED) {
                result = "cancelled";
                bufprintf(summary, sizeof(summary), "full VACUUM to auto_vacuum=incremental cancelled");
        } else if (cv->result != 0 || !cv->incremental) {
                result = "failed";
                bufprintf(summary, sizeof(summary), "full VACUUM to auto_vacuum=incremental failed: %s",
                          cv->result ? cv->error : "auto_vacuum did not change");
        } else {
                result = "ok";
                bufprintf(summary, sizeof(summary),
                          "converted to auto_vacuum=incremental with a full VACUUM: pages %" PRIi64 " -> %" PRIi64
                          ", free pages %" PRIi64 " -> %" PRIi64 ", file %s -> %s",
                          cv->page_count_before, cv->page_count_after, cv->freelist_before, cv->freelist_after, fb,
                          fa);
                memcpy(&m->pragmas[PRAGMA_AUTO_VACUUM], &m->db->pragmas[PRAGMA_AUTO_VACUUM],
                       sizeof(m->pragmas[PRAGMA_AUTO_VACUUM]));
                bufprintf(m->pragmas[PRAGMA_AUTO_VACUUM].effective, sizeof(m->pragmas[0].effective), "incremental");
        }
        log_field(&f, "SQLVIGIL_TRIGGER", "convert");
        log_field(&f, "SQLVIGIL_RESULT", "%s", result);
        log_field(&f, "SQLVIGIL_CONVERT", "1");
        log_field(&f, "SQLVIGIL_PAGE_COUNT_BEFORE", "%" PRIi64, cv->page_count_before);
        log_field(&f, "SQLVIGIL_PAGE_COUNT", "%" PRIi64, cv->page_count_after);
        log_field(&f, "SQLVIGIL_FREELIST_BEFORE", "%" PRIi64, cv->freelist_before);
        log_field(&f, "SQLVIGIL_FREELIST_COUNT", "%" PRIi64, cv->freelist_after);
        log_field(&f, "SQLVIGIL_FILE_BYTES_BEFORE", "%" PRIu64, c->file_before);
        log_field(&f, "SQLVIGIL_FILE_BYTES", "%" PRIu64, c->file_after);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, cv->duration);
        log_field(&f, "SQLVIGIL_LOCK_USEC", "%" PRIu64, cv->duration);
        log_event(streq(result, "ok") ? LOG_NOTICE : LOG_ERR, SQLVIGIL_MESSAGE_VACUUM, "vacuum", &f, "vacuum: %s in %s",
                  summary, took);
        record_run(mt, TASK_VACUUM, c->task.started_rt, cv->duration, cv->duration, result, c->task.trigger, summary);
        o.ok = streq(result, "ok");
        o.run = &mt->last[TASK_VACUUM];
        o.error = o.ok ? NULL : summary;
        reply(mt, TASK_VACUUM, &o);
        /* The whole database went through the WAL; shrink it now (task_end()
         * arms the timer for it). */
        if (o.ok)
                scheduler_trigger(&mt->scheduler, TASK_CHECKPOINT, now_boot());
        task_end(mt, TASK_VACUUM, 0);
        free(c);
}

/* How many pages sqlvigil's own connection caches (PRAGMA cache_size read
 * back: pages when positive, KiB when negative). */
static uint32_t cache_pages(const Manager *m) {
        int64_t v;

        if (!pragma_value_from_sqlite(PRAGMA_CACHE_SIZE, m->pragmas[PRAGMA_CACHE_SIZE].effective, &v) || v == 0)
                return 0;
        if (v > 0)
                return (uint32_t)MIN(v, (int64_t)UINT32_MAX);
        return (uint32_t)MIN(-v * 1024 / MAX(m->page_size, 512), (int64_t)UINT32_MAX);
}

/* Says once why free pages cannot be reclaimed; repeats only when the reason changes. */
static void vacuum_note(Maintenance *mt, int prio, const char *fmt, ...) _printf_(3, 4);
static void vacuum_note(Maintenance *mt, int prio, const char *fmt, ...) {
        char text[256];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (streq(text, mt->vacuum_note))
                return;
        bufprintf(mt->vacuum_note, sizeof(mt->vacuum_note), "%s", text);
        log_event(prio, SQLVIGIL_MESSAGE_VACUUM, "vacuum", NULL, "vacuum: %s", text);
}

/* The one-time full VACUUM that switches a file to auto_vacuum=incremental,
 * when the file system has room. Returns 0 when started, 1 when not now. */
static int start_convert(Maintenance *mt, int64_t pages, int64_t freelist) {
        Manager *m = mt->manager;
        const Config *cfg = m->config;
        uint64_t db_bytes = m->files.db_bytes;
        char need[32], have[32];
        ConvertJob *c;

        /* VACUUM in WAL mode writes every page of the new database into the
         * WAL first: the file system needs room for about one more copy of
         * the database, besides min_free_disk. */
        if (m->files.free_bytes < db_bytes + cfg->min_free_disk) {
                vacuum_note(mt, LOG_WARNING,
                            "not converting to auto_vacuum=incremental: the full VACUUM needs %s free (the "
                            "database's size plus min_free_disk), the file system has %s",
                            format_bytes(need, sizeof(need), db_bytes + cfg->min_free_disk),
                            format_bytes(have, sizeof(have), m->files.free_bytes));
                return 1;
        }
        c = task_job_new(mt, sizeof(*c), "vacuum (convert)", "convert", convert_run, convert_done);
        if (!c)
                return -ENOMEM;
        c->max_wait = manager_busy_timeout(cfg);
        log_notice("vacuum: converting to auto_vacuum=incremental with a one-time full VACUUM "
                   "(%" PRIi64 " pages, %" PRIi64 " free; writers wait until it is done)",
                   pages, freelist);
        return task_job_submit(&c->task);
}

/* Starts a vacuum run if the trigger says so (or an admin asked). Returns
 * 0 when a run started, 1 when there is nothing to do, 2 when an admin's run
 * cannot be done (why says why), or a negative errno. */
static int start_vacuum(Maintenance *mt, const char *trigger, int64_t limit, char *why,
                        size_t why_size) {
        Manager *m = mt->manager;
        const Config *cfg = m->config;
        VacuumRun *v = &mt->vacuum;
        int64_t freelist = m->probe.freelist_count, pages = m->probe.page_count;
        double threshold = (double)cfg->min_free_pages + cfg->free_fraction * (double)pages;
        const char *av = m->pragmas[PRAGMA_AUTO_VACUUM].effective;
        int64_t requested = m->pragmas[PRAGMA_AUTO_VACUUM].requested ? m->pragmas[PRAGMA_AUTO_VACUUM].requested_value : -1;
        bool admin = streq(trigger, "admin");
        char bytes[32];

        /* The trigger is judged on the latest health probe, but one taken
         * during the previous run says nothing about after it. An admin's
         * run starts regardless: its first step finds out. */
        if (admin && !streq(av, "incremental")) {
                bufprintf(why, why_size,
                          "auto_vacuum is %s: incremental vacuum cannot reclaim pages in this file (with [vacuum] "
                          "convert = yes the scheduled task converts it once, when free disk allows)",
                          av);
                return 2;
        }
        if (!admin && m->probe_at <= mt->vacuum_ended)
                return 1;

        if (streq(av, "none")) {
                /* The one-time conversion: when asked for explicitly
                 * ([pragmas] auto_vacuum = incremental), at the first vacuum
                 * interval; with auto_vacuum unset, only once there are free
                 * pages worth reclaiming. Never against an explicit none or full. */
                bool asked = requested == 2, allowed = requested == -1 || requested == 2;

                format_bytes(bytes, sizeof(bytes), (uint64_t)freelist * (uint64_t)MAX(m->page_size, 1));
                if (!asked && (double)freelist <= threshold)
                        return 1;
                if (!cfg->convert || !allowed) {
                        vacuum_note(mt, LOG_WARNING,
                                    "%" PRIi64 " free pages (%s) cannot be reclaimed step by step: auto_vacuum is none%s",
                                    freelist, bytes,
                                    !allowed ? " ([pragmas] auto_vacuum asks for that, so [vacuum] convert does not "
                                               "apply)"
                                             : "; set [vacuum] convert = yes to allow a one-time full VACUUM to "
                                               "incremental");
                        return 1;
                }
                return start_convert(mt, pages, freelist);
        }
        if (!admin && (double)freelist <= threshold)
                return 1;
        if (streq(av, "full")) {
                vacuum_note(mt, LOG_NOTICE,
                            "auto_vacuum is full: SQLite reclaims free pages at every commit; nothing to do");
                return 1;
        }

        *v = (VacuumRun){
                .active = true,
                .trigger = trigger,
                .floor = admin ? 0 : (int64_t)cfg->min_free_pages,
                .limit = limit,
                .freelist_before = freelist,
                .page_count_before = pages,
                .freelist = freelist,
                .page_count = pages,
                .started_rt = now_usec(CLOCK_REALTIME),
        };
        budget_init(&v->budget, cfg->step_budget, mt->learned_usec_per_page, cache_pages(m));
        mt->vacuum_note[0] = '\0';
        log_debug("vacuum: starting (%s), %" PRIi64 " free pages", trigger, freelist);
        vacuum_next_step(mt);
        return 0;
}

/* ---- ANALYZE ---------------------------------------------------------- */

typedef struct AnalyzeJob {
        TaskJob task;
        AnalyzeMode mode;
        uint64_t limit;
        usec_t max_wait;
        DbAnalyze result;
} AnalyzeJob;

static void analyze_run(Db *db, Job *j) {
        AnalyzeJob *a = container_of(j, AnalyzeJob, task.job);

        db_analyze(db, a->mode, a->limit, a->max_wait, &a->result);
}

static void analyze_done(Job *j, bool ran) {
        AnalyzeJob *a = container_of(j, AnalyzeJob, task.job);
        Maintenance *mt = a->task.mt;
        const DbAnalyze *r = &a->result;
        MaintenanceOutcome o = { .task = TASK_ANALYZE };
        char took[32], lock[32], summary[256];
        const char *result;
        LogFields f = { 0 };
        int prio = LOG_INFO;

        if (mt->manager->tearing_down) {
                free(a);
                return;
        }
        format_elapsed(took, sizeof(took), r->duration);
        format_elapsed(lock, sizeof(lock), r->lock_max);
        if (!ran || r->result == DB_E_CANCELLED)
                result = "cancelled";
        else if (r->result == DB_E_BUSY)
                result = "busy";
        else if (r->result != 0) {
                result = "failed";
                prio = LOG_ERR;
        } else
                result = "ok";
        bufprintf(summary, sizeof(summary), "%s: %u of %u tables analyzed%s%s%s, longest lock %s%s%s",
                  analyze_mode_names[a->mode], r->analyzed, r->considered, r->analyzed ? " (" : "", r->tables,
                  r->analyzed ? ")" : "", lock, r->result && ran ? "; " : "", r->result && ran ? r->error : "");

        log_field(&f, "SQLVIGIL_TRIGGER", "%s", a->task.trigger);
        log_field(&f, "SQLVIGIL_RESULT", "%s", result);
        log_field(&f, "SQLVIGIL_ANALYZE_MODE", "%s", analyze_mode_names[a->mode]);
        log_field(&f, "SQLVIGIL_TABLES", "%u", r->analyzed);
        log_field(&f, "SQLVIGIL_TABLES_CONSIDERED", "%u", r->considered);
        log_field(&f, "SQLVIGIL_TABLE_NAMES", "%s", r->tables);
        log_field(&f, "SQLVIGIL_SQLITE_OPTIMIZE", "%d", r->sqlite_optimize);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, r->duration);
        log_field(&f, "SQLVIGIL_LOCK_USEC", "%" PRIu64, r->lock_max);
        log_event(prio, SQLVIGIL_MESSAGE_ANALYZE, "analyze", &f, "analyze (%s) %s in %s", a->task.trigger, summary, took);

        record_run(mt, TASK_ANALYZE, a->task.started_rt, r->duration, r->lock_max, result, a->task.trigger, summary);
        mt->totals.tables_analyzed += r->analyzed;
        o.ok = streq(result, "ok");
        o.mode = analyze_mode_names[a->mode];
        o.run = &mt->last[TASK_ANALYZE];
        o.error = o.ok ? NULL : summary;
        o.tables = r->analyzed;
        o.busy = streq(result, "busy");
        reply(mt, TASK_ANALYZE, &o);
        if (o.busy)
                task_end(mt, TASK_ANALYZE, BUSY_RETRY);
        else
                task_end(mt, TASK_ANALYZE, 0);
        free(a);
}

static int start_analyze(Maintenance *mt, AnalyzeMode mode, const char *trigger) {
        const Config *cfg = mt->manager->config;
        AnalyzeJob *a;
        int r;

        a = task_job_new(mt, sizeof(*a), "analyze", trigger, analyze_run, analyze_done);
        if (!a)
                return -ENOMEM;
        a->mode = mode;
        a->limit = cfg->analysis_limit;
        /* Waiting for the lock blocks no one; holding it does, and each
         * table's ANALYZE holds it only for its bounded sample. */
        a->max_wait = USEC_PER_SEC;
        r = task_job_submit(&a->task);
        if (r < 0)
                return r;
        log_debug("analyze: starting %s (%s)", analyze_mode_names[mode], trigger);
        return 0;
}

/* ---- quick_check -------------------------------------------------------- */

typedef struct CheckJob {
        TaskJob task;
        bool integrity;
        DbCheck result;
} CheckJob;

static void check_run(Db *db, Job *j) {
        CheckJob *c = container_of(j, CheckJob, task.job);

        db_check(db, c->integrity, &c->result);
}

static void check_done(Job *j, bool ran) {
        CheckJob *c = container_of(j, CheckJob, task.job);
        Maintenance *mt = c->task.mt;
        const DbCheck *r = &c->result;
        const char *kind = c->integrity ? "integrity_check" : "quick_check", *result;
        MaintenanceOutcome o = { .task = TASK_QUICK_CHECK };
        char took[32], summary[640];
        LogFields f = { 0 };
        int prio;
        bool was_corrupt = mt->corrupt;

        if (mt->manager->tearing_down) {
                free(c);
                return;
        }
        format_elapsed(took, sizeof(took), r->duration);
        if (!ran || r->result == DB_E_CANCELLED) {
                result = "cancelled";
                prio = LOG_INFO;
                bufprintf(summary, sizeof(summary), "%s: cancelled", kind);
        } else if (r->result != 0) {
                result = "failed";
                prio = LOG_ERR;
                bufprintf(summary, sizeof(summary), "%s could not run: %s", kind, r->error);
        } else if (r->passed) {
                result = "ok";
                prio = LOG_INFO;
                bufprintf(summary, sizeof(summary), "%s: ok", kind);
                mt->corrupt = false;
                mt->corruption[0] = '\0';
        } else {
                result = "corrupt";
                prio = LOG_CRIT;
                bufprintf(summary, sizeof(summary), "%s found %u problem%s; the first: %s", kind, r->problems,
                          r->problems == 1 ? "" : "s", r->first);
                mt->corrupt = true;
                bufprintf(mt->corruption, sizeof(mt->corruption), "%s", r->first);
                mt->totals.checks_failed++;
        }
        log_field(&f, "SQLVIGIL_TRIGGER", "%s", c->task.trigger);
        log_field(&f, "SQLVIGIL_CHECK", "%s", c->integrity ? "integrity" : "quick");
        log_field(&f, "SQLVIGIL_RESULT", "%s", result);
        log_field(&f, "SQLVIGIL_PROBLEMS", "%u", r->problems);
        if (r->problems)
                log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", r->first);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, r->duration);
        log_field(&f, "SQLVIGIL_LOCK_USEC", "0");
        log_event(prio, SQLVIGIL_MESSAGE_INTEGRITY, "integrity", &f, "%s in %s", summary, took);

        record_run(mt, TASK_QUICK_CHECK, c->task.started_rt, r->duration, 0, result, c->task.trigger, summary);
        if (mt->corrupt != was_corrupt)
                manager_reevaluate(mt->manager);
        o.ok = streq(result, "ok");
        o.mode = c->integrity ? "integrity" : "quick";
        o.run = &mt->last[TASK_QUICK_CHECK];
        o.error = o.ok ? NULL : summary;
        o.problems = r->problems;
        o.first = r->problems ? r->first : NULL;
        reply(mt, TASK_QUICK_CHECK, &o);
        task_end(mt, TASK_QUICK_CHECK, 0);
        free(c);
}

static int start_check(Maintenance *mt, bool integrity, const char *trigger) {
        const char *name = integrity ? "integrity_check" : "quick_check";
        CheckJob *c;
        int r;

        c = task_job_new(mt, sizeof(*c), name, trigger, check_run, check_done);
        if (!c)
                return -ENOMEM;
        c->integrity = integrity;
        r = task_job_submit(&c->task);
        if (r < 0)
                return r;
        log_debug("%s: starting (%s)", name, trigger);
        return 0;
}

/* ---- Scheduling ------------------------------------------------------- */

static void start_task(Maintenance *mt, TaskId t, const char *trigger, int64_t arg) {
        int r = 0;

        switch (t) {
        case TASK_CHECKPOINT:
                if (streq(trigger, "admin"))
                        r = start_checkpoint(mt, arg < 0 ? CHECKPOINT_PASSIVE : (CheckpointMode)arg, trigger);
                else {
                        scheduled_checkpoint(mt);
                        return;
                }
                break;
        case TASK_VACUUM: {
                char why[256];

                r = start_vacuum(mt, trigger, arg, why, sizeof(why));
                if (r == 1 || r == 2) {
                        MaintenanceOutcome o = { .task = TASK_VACUUM, .ok = r == 1,
                                                 .freelist_after = mt->manager->probe.freelist_count,
                                                 .error = r == 2 ? why : NULL };

                        reply(mt, TASK_VACUUM, &o); /* nothing to do is a success */
                        task_end(mt, TASK_VACUUM, 0);
                        return;
                }
                break;
        }
        case TASK_ANALYZE:
                r = start_analyze(mt, streq(trigger, "admin") ? (AnalyzeMode)arg : mt->manager->config->analyze_mode,
                                  trigger);
                break;
        case TASK_QUICK_CHECK:
                r = start_check(mt, streq(trigger, "admin") && arg == 1, trigger);
                break;
        default:
                return;
        }
        if (r < 0) {
                MaintenanceOutcome o = { .task = t, .error = r == -ESHUTDOWN ? "sqlvigil is stopping" : strerror(-r) };

                if (r != -ESHUTDOWN)
                        log_error("%s: cannot start: %s", task_names[t], strerror(-r));
                reply(mt, t, &o);
                task_end(mt, t, 0);
        }
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Maintenance *mt = userdata;
        int t;

        (void)s;
        (void)usec;
        while ((t = scheduler_take_due(&mt->scheduler, now_boot())) >= 0)
                start_task(mt, (TaskId)t, "interval", 0);
        return arm_timer(mt);
}

static int arm_timer(Maintenance *mt) {
        usec_t next = scheduler_next(&mt->scheduler), smallest = USEC_INFINITY;
        int r;

        if (mt->scheduler.stopped || next == USEC_INFINITY)
                return sd_event_source_set_enabled(mt->timer, SD_EVENT_OFF);
        for (int t = 0; t < _TASK_MAX; t++)
                if (mt->scheduler.task[t].interval)
                        smallest = MIN(smallest, mt->scheduler.task[t].interval);
        /* Coarse timers let the kernel batch wake-ups: a twentieth of the
         * shortest interval, at most a second. */
        r = sd_event_source_set_time_accuracy(mt->timer, MAX(MIN(smallest / 20, USEC_PER_SEC), USEC_PER_MSEC));
        if (r >= 0)
                r = sd_event_source_set_time(mt->timer, next);
        if (r >= 0)
                r = sd_event_source_set_enabled(mt->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error("cannot arm the maintenance timer: %s", strerror(-r));
        return r;
}

/* ---- Public ----------------------------------------------------------- */

int maintenance_new(Maintenance **ret, Manager *m) {
        Maintenance *mt;

        mt = calloc(1, sizeof(*mt));
        if (!mt)
                return -ENOMEM;
        mt->manager = m;
        *ret = mt;
        return 0;
}

Maintenance *maintenance_free(Maintenance *mt) {
        if (!mt)
                return NULL;
        sd_event_source_disable_unref(mt->timer);
        sd_event_source_disable_unref(mt->wal_timer);
        sd_event_source_disable_unref(mt->step_timer);
        free(mt);
        return NULL;
}

int maintenance_start(Maintenance *mt) {
        Manager *m = mt->manager;
        usec_t intervals[_TASK_MAX];
        int r;

        collect_intervals(m->config, intervals);
        scheduler_init(&mt->scheduler, intervals, now_boot(), random_seed());

        r = sd_event_add_time(m->event, &mt->timer, CLOCK_BOOTTIME, USEC_INFINITY, USEC_PER_SEC, on_timer, mt);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(mt->timer, "maintenance");
        mt->wal_poll = WAL_POLL_MAX;
        r = sd_event_add_time_relative(m->event, &mt->wal_timer, CLOCK_MONOTONIC, mt->wal_poll, WAL_POLL_MIN / 10,
                                       on_wal_timer, mt);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(mt->wal_timer, "wal-watch");
        r = sd_event_add_time(m->event, &mt->step_timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC,
                              on_step_timer, mt);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(mt->step_timer, "vacuum-step");
        r = sd_event_source_set_enabled(mt->step_timer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        return arm_timer(mt);
}

void maintenance_reload(Maintenance *mt) {
        usec_t intervals[_TASK_MAX];

        collect_intervals(mt->manager->config, intervals);
        scheduler_set_intervals(&mt->scheduler, intervals, now_boot());
        mt->vacuum_note[0] = '\0'; /* the new configuration may change the verdict */
        (void)arm_timer(mt);
}

void maintenance_stop(Maintenance *mt) {
        scheduler_stop(&mt->scheduler);
        (void)sd_event_source_set_enabled(mt->timer, SD_EVENT_OFF);
        (void)sd_event_source_set_enabled(mt->wal_timer, SD_EVENT_OFF);
        if (mt->vacuum.active && sd_event_source_get_enabled(mt->step_timer, NULL) > 0)
                /* Between steps: no job will come back to end the run. */
                vacuum_finish(mt, "cancelled", "sqlvigil is stopping");
}

int maintenance_request(Maintenance *mt, TaskId task, int64_t arg, MaintenanceReply cb, void *userdata) {
        usec_t now = now_boot();

        if (mt->scheduler.stopped)
                return -ESHUTDOWN;
        if (mt->pending[task].reply || !scheduler_begin(&mt->scheduler, task, now))
                return -EBUSY;
        mt->pending[task] = (Request){ .reply = cb, .userdata = userdata };
        start_task(mt, task, "admin", arg);
        return 0;
}

void maintenance_forget_reply(Maintenance *mt, void *userdata) {
        for (int t = 0; t < _TASK_MAX; t++)
                if (mt->pending[t].userdata == userdata)
                        mt->pending[t] = (Request){ 0 };
}

const char *maintenance_corruption(const Maintenance *mt) {
        return mt && mt->corrupt ? mt->corruption : NULL;
}

const char *maintenance_starvation(const Maintenance *mt) {
        return mt && mt->starved ? mt->starvation : NULL;
}

const TaskRun *maintenance_last(const Maintenance *mt, TaskId task) {
        return &mt->last[task];
}

const MaintenanceTotals *maintenance_totals(const Maintenance *mt) {
        return &mt->totals;
}

bool maintenance_wal_index(const Maintenance *mt, WalIndex *ret) {
        if (!mt->wal_valid)
                return false;
        *ret = mt->wal;
        return true;
}

const char *maintenance_running(const Maintenance *mt) {
        for (int t = 0; t < _TASK_MAX; t++)
                if (mt->scheduler.task[t].running)
                        return task_names[t];
        return NULL;
}
