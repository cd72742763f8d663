/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "control.h"
#include "log.h"
#include "manager.h"
#include "messages.h"
#include "metrics.h"
#include "notify.h"

/* The longest the health probe waits for the write lock. Lock holders are
 * application transactions; 100 ms is longer than nearly all of them, and
 * since the probe runs on the worker it delays only queued maintenance. */
#define PROBE_LOCK_WAIT (100 * USEC_PER_MSEC)

/* While the final checkpoint runs we keep asking systemd for this much more
 * time, once a second, so TimeoutStopSec= never cuts it short... */
#define STOP_EXTEND_STEP (5 * USEC_PER_SEC)
/* ...but only this long beyond stop_timeout: copying a huge WAL back takes
 * time, a hung disk takes forever, and then systemd's SIGKILL is right. */
#define STOP_EXTEND_GRACE (60 * USEC_PER_SEC)

static void manager_finish_round(Manager *m);
static void manager_reload(Manager *m);

/* ---- Jobs ------------------------------------------------------------- */

typedef struct ProbeJob {
        Job job;
        Manager *manager;
        usec_t lock_wait;
        DbProbe probe;
} ProbeJob;

typedef struct PragmaJob {
        Job job;
        Manager *manager;
        PragmaRequest requests[_PRAGMA_MAX];
        usec_t max_wait;
        int result;
        char error[512];
        PragmaStatus status[_PRAGMA_MAX];
        int64_t page_size;
} PragmaJob;

typedef struct StopJob {
        Job job;
        Manager *manager;
        CheckpointMode mode;
        usec_t max_wait;
        uint64_t wal_bytes_before;
        uint64_t wal_bytes_after;
        DbCheckpoint passive; /* first pass: copies what it can, never waits */
        DbCheckpoint result;  /* then stop_mode, with the bounded wait */
} StopJob;

/* ---- Helpers ---------------------------------------------------------- */

usec_t manager_busy_timeout(const Config *c) {
        /* Unset ("busy_timeout =") means SQLite's own default: no waiting. */
        if (!c->pragmas[PRAGMA_BUSY_TIMEOUT].set)
                return 0;
        return (usec_t)c->pragmas[PRAGMA_BUSY_TIMEOUT].value * USEC_PER_MSEC;
}

static usec_t compute_health_period(const Config *c, usec_t watchdog) {
        usec_t p = c->health_interval;

        if (p == 0)
                p = watchdog ? watchdog / 2 : 5 * USEC_PER_SEC;
        /* sd_watchdog_enabled(3): ping at half the period. A longer configured
         * interval would let the watchdog fire on a healthy database. */
        if (watchdog && p > watchdog / 2)
                p = watchdog / 2;
        return p;
}

static usec_t timer_accuracy(usec_t period) {
        return MAX(MIN(period / 20, 50 * USEC_PER_MSEC), USEC_PER_MSEC);
}

static void format_status(Manager *m, char *buf, size_t size) {
        char wal[32], ago[32], last[256] = "";
        usec_t now = now_usec(CLOCK_REALTIME);
        size_t off = 0;

        /* "…; last checkpoint 12s ago, vacuum 5min ago": every task that ran. */
        for (int t = 0; m->maintenance && t < _TASK_MAX; t++) {
                const TaskRun *r = maintenance_last(m->maintenance, (TaskId)t);
                int n;

                if (!r->valid)
                        continue;
                n = snprintf(last + off, sizeof(last) - off, "%s%s %s ago", off ? ", " : "; last ", task_names[t],
                             format_elapsed(ago, sizeof(ago), now > r->at ? now - r->at : 0));
                if (n < 0 || (size_t)n >= sizeof(last) - off)
                        break;
                off += (size_t)n;
        }
        format_bytes(wal, sizeof(wal), m->files.wal_bytes);
        bufprintf(buf, size, "%s%s%s; WAL %s; %" PRIi64 " free pages%s", health_state_names[m->health.state],
                  m->health.state == HEALTH_OK ? "" : ": ", m->health.state == HEALTH_OK ? "" : m->health.reason, wal,
                  m->probe.freelist_count, last);
}

static void update_status(Manager *m) {
        char status[sizeof(m->status)];

        format_status(m, status, sizeof(status));
        if (streq(status, m->status))
                return;
        bufprintf(m->status, sizeof(m->status), "%s", status);
        if (!m->ready || m->stopping)
                return;
        log_notify_failure(notify_status(status), "STATUS=");
}

static void log_pragmas(Manager *m, const Config *c) {
        char line[1024], req[32];
        size_t off = 0;

        for (PragmaId id = 0; id < _PRAGMA_MAX; id++) {
                const PragmaStatus *st = &m->pragmas[id];
                const char *name = pragma_info[id].name;
                LogFields f = { 0 };

                off += (size_t)snprintf(line + off, sizeof(line) - MIN(off, sizeof(line)), "%s%s=%s", off ? " " : "",
                                        name, st->effective);
                if (off >= sizeof(line))
                        off = sizeof(line) - 1;
                if (st->outcome == PRAGMA_UNREQUESTED || st->outcome == PRAGMA_APPLIED)
                        continue;

                pragma_format_value(id, st->requested_value, req, sizeof(req));
                log_field(&f, "SQLVIGIL_PRAGMA", "%s", name);
                log_field(&f, "SQLVIGIL_REQUESTED", "%s", req);
                log_field(&f, "SQLVIGIL_EFFECTIVE", "%s", st->effective);
                switch (st->outcome) {
                case PRAGMA_NEEDS_VACUUM:
                        log_event(LOG_WARNING, SQLVIGIL_MESSAGE_PRAGMA, "pragma", &f,
                                  "%s: requested %s, file has %s; only a full VACUUM changes it (%s)", name, req,
                                  st->effective,
                                  c->convert && st->requested_value == 2
                                          ? "[vacuum] convert = yes: sqlvigil runs it at the next vacuum interval "
                                            "when the file system has room for it"
                                          : st->requested_value == 2
                                                    ? "let sqlvigil run it once with [vacuum] convert = yes"
                                                    : "sqlvigil converts only to incremental; run VACUUM yourself");
                        break;
                case PRAGMA_FIXED:
                        log_event(LOG_WARNING, SQLVIGIL_MESSAGE_PRAGMA, "pragma", &f,
                                  "%s: requested %s, file has %s; a database in WAL mode keeps its page size "
                                  "(changing it takes journal_mode=delete and a full VACUUM, which sqlvigil does "
                                  "not do)",
                                  name, req, st->effective);
                        break;
                default:
                        log_event(LOG_WARNING, SQLVIGIL_MESSAGE_PRAGMA, "pragma", &f,
                                  "%s: requested %s, SQLite uses %s on this connection", name, req, st->effective);
                        break;
                }
        }
        log_info("pragmas in force: %s", line);
}

/* ---- Health ----------------------------------------------------------- */

static void manager_set_health(Manager *m, const HealthResult *r) {
        HealthState old_state = m->health.state;
        HealthCode old_code = m->health.code;
        LogFields f = { 0 };
        int prio;

        m->health = *r;
        if (r->state == old_state && r->code == old_code)
                return;
        m->health_since = now_usec(CLOCK_REALTIME);

        prio = r->state == HEALTH_FAILED ? LOG_ERR : r->state == HEALTH_DEGRADED ? LOG_WARNING : LOG_NOTICE;
        log_field(&f, "SQLVIGIL_HEALTH", "%s", health_state_names[r->state]);
        log_field(&f, "SQLVIGIL_PREVIOUS_HEALTH", "%s", health_state_names[old_state]);
        log_field(&f, "SQLVIGIL_REASON", "%s", health_code_names[r->code]);
        log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", r->reason);
        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, m->files.wal_bytes);
        if (r->state == HEALTH_OK)
                log_event(prio, SQLVIGIL_MESSAGE_HEALTH, "health", &f, "health: %s (was %s)",
                          health_state_names[r->state], health_state_names[old_state]);
        else
                log_event(prio, SQLVIGIL_MESSAGE_HEALTH, "health", &f, "health: %s: %s%s",
                          health_state_names[r->state], r->reason,
                          r->state == HEALTH_FAILED && m->watchdog_usec ? " (watchdog pings stop)" : "");
}

/* Judges the latest facts; called at the end of every round. */
static void manager_evaluate(Manager *m) {
        HealthLimits limits = {
                .max_wal_size = m->config->max_wal_size,
                .min_free_disk = m->config->min_free_disk,
                .lock_timeout = m->config->lock_timeout,
        };
        HealthInput in = {
                .files = m->files,
                .open_dev = m->db->dev,
                .open_ino = m->db->ino,
                .probe = &m->probe, /* manager_start() takes the first before anything evaluates */
                .lock_busy_for = m->lock_busy_for,
                .corruption = maintenance_corruption(m->maintenance),
                .starvation = maintenance_starvation(m->maintenance),
        };
        HealthResult result;
        const char *current = m->worker ? worker_current(m->worker) : NULL;

        /* The worker is in a long job (quick_check of a big file, say) and the
         * probe is waiting behind it. That is fine as long as the job shows
         * progress; it is a failure when it has not for lock_timeout. */
        if (current) {
                usec_t now = now_usec(CLOCK_MONOTONIC), beat = worker_heartbeat(m->worker);

                in.stalled_for = now > beat ? now - beat : 0;
                in.stalled_job = current;
        }
        health_evaluate(&limits, &in, &result);
        manager_set_health(m, &result);
        m->checks++;
}

void manager_publish(Manager *m) {
        char error[256];
        int r;

        if (!m->config->metrics_textfile || m->tearing_down)
                return;
        r = metrics_write(m, m->config->metrics_textfile, error, sizeof(error));
        if (r < 0 && !streq(error, m->metrics_error))
                log_warning("metrics: %s", error);
        else if (r == 0 && m->metrics_error[0])
                log_notice("metrics: %s written again", m->config->metrics_textfile);
        bufprintf(m->metrics_error, sizeof(m->metrics_error), "%s", r < 0 ? error : "");
}

void manager_reevaluate(Manager *m) {
        if (m->stopping || m->tearing_down)
                return;
        manager_evaluate(m);
        update_status(m);
}

static void probe_run(Db *db, Job *j) {
        ProbeJob *p = container_of(j, ProbeJob, job);

        db_probe(db, p->lock_wait, &p->probe);
}

static void record_check_cost(Manager *m, usec_t usec) {
        m->check_usec[m->check_count % MANAGER_CHECK_HISTORY] = usec;
        m->check_count++;
        m->last_check_usec = usec;
}

static void manager_take_probe(Manager *m, const DbProbe *probe, usec_t at) {
        m->probe = *probe;
        m->probe_at = at;
        m->page_size = probe->page_size;
        if (probe->result == 0) {
                record_check_cost(m, m->round_files_usec + probe->duration);
                log_debug("health check: files %" PRIu64 " us, probe %" PRIu64 " us", m->round_files_usec,
                          probe->duration);
                m->lock_busy_for = health_lock_update(&m->lock, probe->lock_busy, at, probe->lock_wait);
        }
}

static void probe_done(Job *j, bool ran) {
        ProbeJob *p = container_of(j, ProbeJob, job);
        Manager *m = p->manager;

        if (!m->tearing_down) {
                m->probe_pending = false;
                if (ran && p->probe.result != DB_E_CANCELLED)
                        manager_take_probe(m, &p->probe, j->finished_at);
                if (m->round_open)
                        manager_finish_round(m);
        }
        free(p);
}

/* The file half of a check: stat() of the database and its WAL, timed. */
static void read_files(Manager *m) {
        usec_t t0 = now_usec(CLOCK_MONOTONIC);

        health_read_files(m->db->path, m->db->wal_path, &m->files);
        m->round_files_usec = now_usec(CLOCK_MONOTONIC) - t0;
}

/* How long the probe may wait for the write lock: short against the period. */
static usec_t probe_lock_wait(const Manager *m) {
        return MIN(PROBE_LOCK_WAIT, m->health_period / 4);
}

/* The end of a check: the verdict, and when it was reached. */
static void judge_check(Manager *m) {
        manager_evaluate(m);
        m->last_check_at = now_usec(CLOCK_REALTIME);
}

static int submit_probe(Manager *m) {
        ProbeJob *p;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->job = (Job){ .name = "probe", .urgent = true, .cancellable = true, .run = probe_run, .done = probe_done };
        p->manager = m;
        p->lock_wait = probe_lock_wait(m);
        m->probe_pending = true;
        worker_submit(m->worker, &p->job);
        return 0;
}

static void manager_finish_round(Manager *m) {
        m->round_open = false;
        (void)sd_event_source_set_enabled(m->round_timer, SD_EVENT_OFF);
        if (m->stopping)
                return;
        judge_check(m);
        update_status(m);
        if (m->watchdog_usec && m->health.state != HEALTH_FAILED)
                log_notify_failure(notify_watchdog(), "WATCHDOG=1");
        manager_publish(m);
}

static int on_round_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void)s;
        (void)usec;
        if (m->round_open)
                manager_finish_round(m);
        return 0;
}

static void manager_start_round(Manager *m) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        int r;

        if (m->stopping)
                return;
        read_files(m);
        if (!m->probe_pending) {
                r = submit_probe(m);
                if (r < 0)
                        log_error("cannot queue the health probe: %s", strerror(-r));
        }
        m->round_open = true;
        /* If the worker is in a long job the probe waits behind it; the round
         * then ends at this deadline with the file checks and the worker's
         * heartbeat, so the watchdog is never late for a busy but healthy
         * database. */
        r = sd_event_source_set_time(m->round_timer, now + MIN(m->health_period / 2, USEC_PER_SEC));
        if (r >= 0)
                r = sd_event_source_set_enabled(m->round_timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error("cannot arm the health round deadline: %s", strerror(-r));
}

static int on_health_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        /* Absolute re-arm: rounds stay on a fixed cadence instead of drifting
         * by the time each one takes. */
        r = sd_event_source_set_time(s, usec + m->health_period);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error("cannot re-arm the health timer: %s", strerror(-r));
        if (m->round_open)
                /* The previous round is still open (deadline longer than the
                 * period cannot happen, but be safe): close it first. */
                manager_finish_round(m);
        manager_start_round(m);
        return 0;
}

static int manager_arm_health_timer(Manager *m) {
        int r;

        m->health_period = compute_health_period(m->config, m->watchdog_usec);
        if (!m->health_timer) {
                r = sd_event_add_time_relative(m->event, &m->health_timer, CLOCK_MONOTONIC, m->health_period,
                                               timer_accuracy(m->health_period), on_health_timer, m);
                if (r < 0)
                        return r;
                (void)sd_event_source_set_description(m->health_timer, "health");
                return 0;
        }
        r = sd_event_source_set_time_accuracy(m->health_timer, timer_accuracy(m->health_period));
        if (r >= 0)
                r = sd_event_source_set_time_relative(m->health_timer, m->health_period);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->health_timer, SD_EVENT_ONESHOT);
        return r;
}

/* ---- Stop ------------------------------------------------------------- */

static void stop_run(Db *db, Job *j) {
        StopJob *s = container_of(j, StopJob, job);

        /* PASSIVE first: it does the copying without waiting for anyone and
         * tells how many frames the WAL holds (after a TRUNCATE, SQLite
         * reports 0 for both counts). The stop mode then only has to wait for
         * readers to leave and reset the WAL. */
        s->wal_bytes_before = db_wal_bytes(db);
        db_checkpoint(db, CHECKPOINT_PASSIVE, 0, &s->passive);
        if (s->mode == CHECKPOINT_PASSIVE)
                s->result = s->passive;
        else
                db_checkpoint(db, s->mode, s->max_wait, &s->result);
        s->result.duration += s->passive.duration;
        s->wal_bytes_after = db_wal_bytes(db);
}

static void stop_done(Job *j, bool ran) {
        StopJob *s = container_of(j, StopJob, job);
        Manager *m = s->manager;
        const DbCheckpoint *c = &s->result;
        const char *mode = checkpoint_mode_names[s->mode];
        /* Frames in the WAL and how many reached the database: from the
         * PASSIVE pass, or the final pass when that one saw more. A TRUNCATE
         * reports the WAL it leaves, 0 frames; both passes report -1 while
         * another connection holds the checkpoint lock. */
        int frames = s->mode == CHECKPOINT_TRUNCATE ? s->passive.log_frames : MAX(s->passive.log_frames, c->log_frames);
        int copied = c->result == 0 && s->mode != CHECKPOINT_PASSIVE ? frames
                                                                       : MAX(s->passive.checkpointed, c->checkpointed);
        char before[32], after[32], took[32], counts[96];
        LogFields f = { 0 };

        if (m->tearing_down) {
                free(s);
                return;
        }
        (void)sd_event_source_set_enabled(m->extend_timer, SD_EVENT_OFF);
        format_bytes(before, sizeof(before), s->wal_bytes_before);
        format_bytes(after, sizeof(after), s->wal_bytes_after);
        format_elapsed(took, sizeof(took), c->duration);
        if (frames >= 0)
                bufprintf(counts, sizeof(counts), "%d frames in WAL, %d checkpointed", frames, MAX(copied, 0));
        else
                bufprintf(counts, sizeof(counts), "frames in WAL unknown (another connection was checkpointing)");

        log_field(&f, "SQLVIGIL_CHECKPOINT_MODE", "%s", mode);
        log_field(&f, "SQLVIGIL_RESULT", "%s",
                  !ran ? "not-run" : c->result == 0 ? "ok" : c->result == DB_E_BUSY ? "busy" : "failed");
        log_field(&f, "SQLVIGIL_WAL_FRAMES", "%d", frames);
        log_field(&f, "SQLVIGIL_PAGES", "%d", copied);
        log_field(&f, "SQLVIGIL_BUSY", "%d", c->result == DB_E_BUSY);
        log_field(&f, "SQLVIGIL_WAL_BYTES_BEFORE", "%" PRIu64, s->wal_bytes_before);
        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, s->wal_bytes_after);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, c->duration);

        if (!ran)
                log_event(LOG_ERR, SQLVIGIL_MESSAGE_STOPPING, "stopping", &f,
                          "stopping: the final %s checkpoint did not run", mode);
        else if (c->result == 0)
                log_event(LOG_INFO, SQLVIGIL_MESSAGE_STOPPING, "stopping", &f,
                          "stopping: final %s checkpoint done in %s: %s, WAL %s -> %s", mode, took, counts,
                          before, after);
        else if (c->result == DB_E_BUSY)
                log_event(LOG_WARNING, SQLVIGIL_MESSAGE_STOPPING, "stopping", &f,
                          "stopping: final %s checkpoint incomplete after %s: database busy (%s stayed past "
                          "stop_timeout); %s, WAL %s -> %s",
                          mode, took,
                          c->log_frames < 0 ? "another connection's checkpoint" : "readers or a writer", counts,
                          before, after);
        else
                log_event(LOG_ERR, SQLVIGIL_MESSAGE_STOPPING, "stopping", &f,
                          "stopping: final %s checkpoint failed after %s: %s", mode, took, c->error);

        free(s);
        m->exit_code = EXIT_CLEAN;
        (void)sd_event_exit(m->event, EXIT_CLEAN);
}

static int on_extend_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        usec_t elapsed = usec - m->stop_started;
        int r;

        if (elapsed > m->config->stop_timeout + STOP_EXTEND_GRACE) {
                log_warning("stopping: the final checkpoint has taken %" PRIu64 "s; no longer extending the stop "
                            "timeout",
                            elapsed / USEC_PER_SEC);
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        }
        log_notify_failure(notify_extend_timeout(STOP_EXTEND_STEP), "EXTEND_TIMEOUT_USEC=");
        r = sd_event_source_set_time(s, usec + USEC_PER_SEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return r;
}

static void manager_stop(Manager *m, const char *why) {
        StopJob *s;
        int r;

        m->stopping = true;
        m->stop_started = now_usec(CLOCK_MONOTONIC);
        log_notify_failure(notify_stopping("stopping: final checkpoint"), "STOPPING=1");
        log_info("%s: stopping; final %s checkpoint, waiting at most %" PRIu64 " ms for readers and writers", why,
                 checkpoint_mode_names[m->config->stop_mode], m->config->stop_timeout / USEC_PER_MSEC);

        (void)sd_event_source_set_enabled(m->health_timer, SD_EVENT_OFF);
        (void)sd_event_source_set_enabled(m->round_timer, SD_EVENT_OFF);
        m->round_open = false;
        if (m->maintenance)
                maintenance_stop(m->maintenance);

        /* Abandon whatever maintenance runs; the final checkpoint is queued
         * behind it and is not cancellable. */
        worker_cancel(m->worker);

        log_notify_failure(notify_extend_timeout(m->config->stop_timeout + STOP_EXTEND_STEP), "EXTEND_TIMEOUT_USEC=");
        r = sd_event_add_time_relative(m->event, &m->extend_timer, CLOCK_MONOTONIC, USEC_PER_SEC,
                                       100 * USEC_PER_MSEC, on_extend_timer, m);
        if (r < 0)
                log_warning("cannot arm the stop timeout extension: %s", strerror(-r));
        else
                (void)sd_event_source_set_description(m->extend_timer, "extend-stop-timeout");

        s = calloc(1, sizeof(*s));
        if (!s) {
                log_error("stopping: out of memory; exiting without the final checkpoint");
                m->exit_code = EXIT_FAILURE_OTHER;
                (void)sd_event_exit(m->event, EXIT_FAILURE_OTHER);
                return;
        }
        s->job = (Job){ .name = "final checkpoint", .urgent = true, .cancellable = false, .run = stop_run,
                        .done = stop_done };
        s->manager = m;
        s->mode = m->config->stop_mode;
        s->max_wait = m->config->stop_timeout;
        worker_submit(m->worker, &s->job);
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void)s;
        if (m->stopping) {
                log_notice("%s: already stopping; waiting for the final checkpoint", strsignal((int)si->ssi_signo));
                return 0;
        }
        manager_stop(m, strsignal((int)si->ssi_signo));
        return 0;
}

/* ---- Reload ----------------------------------------------------------- */

static void finish_reload(Manager *m, bool applied, const char *error) {
        ReloadReply reply = m->reload_reply;
        void *userdata = m->reload_userdata;

        m->reloading = false;
        m->reload_reply = NULL;
        m->reload_userdata = NULL;
        log_notify_failure(notify_ready(m->status), "READY=1");
        if (reply)
                reply(userdata, applied, error);
        if (m->reload_again) {
                m->reload_again = false;
                manager_reload(m);
        }
}

static void log_config_rejected(const char *path, const ConfigErrors *errors, const char *consequence) {
        LogFields f = { 0 };
        char joined[2048];
        size_t off = 0;

        joined[0] = '\0';
        for (size_t i = 0; i < errors->n && off < sizeof(joined); i++)
                off += (size_t)snprintf(joined + off, sizeof(joined) - off, "%s%s", i ? "; " : "",
                                        errors->messages[i]);
        log_field(&f, "SQLVIGIL_CONFIG", "%s", path);
        log_field(&f, "SQLVIGIL_ERRORS", "%zu", errors->n);
        log_field(&f, "SQLVIGIL_ERROR", "%s", errors->n ? errors->messages[0] : "");
        log_event(LOG_ERR, SQLVIGIL_MESSAGE_CONFIG_REJECTED, "config-rejected", &f,
                  "configuration %s rejected (%zu error%s)%s: %s", path, errors->n, errors->n == 1 ? "" : "s",
                  consequence, joined);
}

static void pragma_run(Db *db, Job *j) {
        PragmaJob *p = container_of(j, PragmaJob, job);

        p->result = db_apply_pragmas(db, p->requests, p->max_wait);
        if (p->result != 0)
                bufprintf(p->error, sizeof(p->error), "%s", db->error);
        memcpy(p->status, db->pragmas, sizeof(p->status));
        p->page_size = db->page_size;
}

static void reload_pragmas_done(Job *j, bool ran) {
        PragmaJob *p = container_of(j, PragmaJob, job);
        Manager *m = p->manager;
        LogFields f = { 0 };
        int r;

        if (m->tearing_down || m->stopping) {
                config_free(TAKE_PTR(m->pending_config));
                free(p);
                if (m->stopping && m->reload_reply)
                        finish_reload(m, false, "sqlvigil is stopping");
                return;
        }
        if (!ran)
                log_error("reload: the pragmas were not applied (the database thread was stopping)");
        else if (p->result != 0)
                log_error("reload: applying pragmas failed: %s", p->error);
        {
                bool unused;
                _cleanup_(freep) char *old = control_socket_path(m->config, m->instance, &unused);
                _cleanup_(freep) char *new = control_socket_path(m->pending_config, m->instance, &unused);

                if (old && new && !streq(old, new))
                        log_warning("reload: [control] socket changes take effect at the next start; the socket "
                                    "stays at %s",
                                    old);
        }
        if (ran) {
                memcpy(m->pragmas, p->status, sizeof(m->pragmas));
                m->page_size = p->page_size;
        }

        config_free(m->config);
        m->config = TAKE_PTR(m->pending_config);
        if (ran)
                log_pragmas(m, m->config);
        r = manager_arm_health_timer(m);
        if (r < 0)
                log_error("reload: cannot re-arm the health timer: %s", strerror(-r));
        if (m->maintenance)
                maintenance_reload(m->maintenance);

        log_field(&f, "SQLVIGIL_CONFIG", "%s", m->config_path);
        log_event(LOG_INFO, SQLVIGIL_MESSAGE_RELOADED, "reloaded", &f,
                  "configuration %s reloaded; health checks every %" PRIu64 " ms", m->config_path,
                  m->health_period / USEC_PER_MSEC);
        free(p);
        finish_reload(m, true, NULL);
}

static int apply_overrides(Manager *m, Config *c) {
        int r;

        if (m->db_override) {
                r = config_set_db_path(c, m->db_override);
                if (r < 0)
                        return r;
        }
        if (m->create_override)
                c->create = true;
        return 0;
}

static void manager_reload(Manager *m) {
        _cleanup_(config_freep) Config *c = NULL;
        ConfigErrors errors = { 0 };
        PragmaJob *p;
        int r;

        if (m->stopping)
                return;
        if (m->reloading) {
                m->reload_again = true;
                return;
        }
        m->reloading = true;
        log_notify_failure(notify_reloading(), "RELOADING=1");

        if (!m->config_path) {
                log_info("reload: started with --database and no configuration file; nothing to reload");
                finish_reload(m, true, NULL);
                return;
        }

        r = config_load_file(m->config_path, &c, &errors);
        if (r == 0)
                r = apply_overrides(m, c);
        if (r == 0 && !c->db_path) {
                r = CONFIG_E_INVALID;
                config_errors_add(&errors, "%s: [database] path is not set", m->config_path);
        }
        if (r == 0 && !streq(c->db_path, m->config->db_path)) {
                r = CONFIG_E_INVALID;
                config_errors_add(&errors,
                                  "%s: [database] path changed from %s to %s; a reload cannot switch databases, "
                                  "restart the service instead",
                                  m->config_path, m->config->db_path, c->db_path);
        }
        if (r != 0) {
                char first[512];

                if (errors.n == 0) {
                        bufprintf(first, sizeof(first), "cannot load %s: %s", m->config_path,
                                  strerror(r < 0 ? -r : EINVAL));
                        log_error("reload: %s", first);
                } else {
                        bufprintf(first, sizeof(first), "%s", errors.messages[0]);
                        log_config_rejected(m->config_path, &errors, "; the running configuration stays in force");
                }
                config_errors_clear(&errors);
                finish_reload(m, false, first);
                return;
        }

        p = calloc(1, sizeof(*p));
        if (!p) {
                log_error("reload: out of memory; the running configuration stays in force");
                finish_reload(m, false, "out of memory");
                return;
        }
        p->job = (Job){ .name = "pragmas", .urgent = true, .cancellable = false, .run = pragma_run,
                        .done = reload_pragmas_done };
        p->manager = m;
        memcpy(p->requests, c->pragmas, sizeof(p->requests));
        p->max_wait = manager_busy_timeout(c);
        m->pending_config = TAKE_PTR(c);
        worker_submit(m->worker, &p->job);
}

int manager_request_reload(Manager *m, ReloadReply reply, void *userdata) {
        if (m->stopping)
                return -ESHUTDOWN;
        if (m->reloading)
                return -EBUSY;
        m->reload_reply = reply;
        m->reload_userdata = userdata;
        manager_reload(m);
        return 0;
}

void manager_forget_reload(Manager *m, void *userdata) {
        if (m->reload_userdata == userdata) {
                m->reload_reply = NULL;
                m->reload_userdata = NULL;
        }
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void)s;
        (void)si;
        manager_reload(m);
        return 0;
}

/* ---- Life cycle ------------------------------------------------------- */

int manager_new(Manager **ret, Config *config, const ManagerOptions *options) {
        Manager *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->started_at = now_usec(CLOCK_MONOTONIC);
        m->health_since = now_usec(CLOCK_REALTIME);
        m->exit_code = EXIT_CLEAN;
        if (options->config_path && !(m->config_path = strdup(options->config_path)))
                goto oom;
        if (options->db_override && !(m->db_override = strdup(options->db_override)))
                goto oom;
        m->create_override = options->create_override;
        m->instance = config_instance_name(config);
        if (!m->instance)
                goto oom;

        r = sd_event_default(&m->event);
        if (r < 0) {
                manager_free(m);
                return r;
        }
        /* Only now: on failure the caller still owns (and frees) it. */
        m->config = config;
        *ret = m;
        return 0;

oom:
        manager_free(m);
        return -ENOMEM;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        m->tearing_down = true;
        /* Control first: its waiting clients withdraw their replies from
         * maintenance. Then the worker: it joins its thread and hands back
         * queued jobs, whose done() callbacks still see a whole manager. */
        control_free(m->control);
        worker_free(m->worker);
        maintenance_free(m->maintenance);
        sd_event_source_disable_unref(m->health_timer);
        sd_event_source_disable_unref(m->round_timer);
        sd_event_source_disable_unref(m->extend_timer);
        db_free(m->db);
        config_free(m->pending_config);
        config_free(m->config);
        free(m->config_path);
        free(m->db_override);
        free(m->instance);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

/* Every way start-up can fail ends here: one entry with its own
 * MESSAGE_ID, the exit status and the reason. */
static int start_failed(int status, const char *fmt, ...) _printf_(2, 3);
static int start_failed(int status, const char *fmt, ...) {
        char reason[1024];
        LogFields f = { 0 };
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        log_field(&f, "SQLVIGIL_EXIT_STATUS", "%d", status);
        log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", reason);
        log_event(LOG_ERR, SQLVIGIL_MESSAGE_START_FAILED, "start-failed", &f, "%s", reason);
        return status;
}

static int manager_open(Manager *m) {
        char error[1024];
        int r;

        r = db_open(m->config->db_path, m->config->create, &m->db, error, sizeof(error));
        if (r == DB_E_MISSING)
                return start_failed(EXIT_NOINPUT, "%s", error);
        if (r != 0)
                return start_failed(EXIT_FAILURE_OTHER, "%s", error);

        r = db_apply_pragmas(m->db, m->config->pragmas, manager_busy_timeout(m->config));
        if (r != 0)
                return start_failed(EXIT_FAILURE_OTHER, "%s: %s", m->config->db_path, m->db->error);
        memcpy(m->pragmas, m->db->pragmas, sizeof(m->pragmas));
        m->page_size = m->db->page_size;
        log_pragmas(m, m->config);

        /* Now in WAL mode, the -shm exists: keep a descriptor for reading
         * the WAL index (never closed before the connection, see walindex.h). */
        r = db_open_wal_index(m->db);
        if (r < 0)
                log_warning("cannot open %s-shm: %s; WAL-driven checkpoints are off, interval ones remain",
                            m->config->db_path, strerror(-r));
        return EXIT_CLEAN;
}

int manager_start(Manager *m) {
        static const int signals[] = { SIGTERM, SIGINT, SIGHUP };
        char took[32], period[32], watchdog[32];
        DbProbe probe;
        LogFields f = { 0 };
        sigset_t mask;
        uint64_t wd = 0;
        int r;

        log_set_database(m->config->db_path);
        log_field(&f, "SQLVIGIL_VERSION", "%s", SQLVIGIL_VERSION);
        log_field(&f, "SQLVIGIL_SQLITE_VERSION", "%s", sqlite3_libversion());
        log_field(&f, "SQLVIGIL_CONFIG", "%s", m->config_path ? m->config_path : "");
        log_event(LOG_INFO, SQLVIGIL_MESSAGE_STARTED, "started", &f, "sqlvigil %s starting (SQLite %s): %s%s%s",
                  SQLVIGIL_VERSION, sqlite3_libversion(), m->config->db_path,
                  m->config_path ? ", configuration " : "", m->config_path ? m->config_path : "");

        r = manager_open(m);
        if (r != EXIT_CLEAN)
                return r;

        r = sd_watchdog_enabled(0, &wd);
        if (r < 0)
                log_warning("ignoring an invalid $WATCHDOG_USEC: %s", strerror(-r));
        m->watchdog_usec = r > 0 ? wd : 0;
        m->health_period = compute_health_period(m->config, m->watchdog_usec);
        if (m->config->health_interval > m->health_period)
                log_notice("[health] interval %" PRIu64 " ms is longer than half the watchdog period; checking "
                           "every %" PRIu64 " ms",
                           m->config->health_interval / USEC_PER_MSEC, m->health_period / USEC_PER_MSEC);

        /* The first health check, before READY=1: a database that is not
         * healthy now is not one we claim to supervise. It runs here, on this
         * thread; the worker does not exist yet. */
        read_files(m);
        db_probe(m->db, probe_lock_wait(m), &probe);
        manager_take_probe(m, &probe, now_usec(CLOCK_MONOTONIC));
        judge_check(m);
        if (m->health.state == HEALTH_FAILED)
                return start_failed(EXIT_FAILURE_OTHER, "not starting: health check failed: %s", m->health.reason);

        /* sd_event_add_signal() needs the signals blocked (in libsystemd 252
         * there is no SD_EVENT_SIGNAL_PROCMASK). The worker thread, created
         * below, starts with every signal blocked. */
        sigemptyset(&mask);
        for (size_t i = 0; i < ELEMENTSOF(signals); i++)
                sigaddset(&mask, signals[i]);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                return start_failed(EXIT_FAILURE_OTHER, "cannot block signals: %s", strerror(errno));
        }
        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_terminate, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_terminate, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m);
        if (r < 0) {
                return start_failed(EXIT_FAILURE_OTHER, "cannot watch signals: %s", strerror(-r));
        }

        r = worker_new(&m->worker, m->db, m->event);
        if (r < 0) {
                return start_failed(EXIT_FAILURE_OTHER, "cannot start the database thread: %s", strerror(-r));
        }

        r = sd_event_add_time(m->event, &m->round_timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC, on_round_deadline, m);
        if (r >= 0) {
                (void)sd_event_source_set_description(m->round_timer, "health-round-deadline");
                r = sd_event_source_set_enabled(m->round_timer, SD_EVENT_OFF);
        }
        if (r >= 0)
                r = manager_arm_health_timer(m);
        if (r < 0) {
                return start_failed(EXIT_FAILURE_OTHER, "cannot create timers: %s", strerror(-r));
        }

        r = maintenance_new(&m->maintenance, m);
        if (r >= 0)
                r = maintenance_start(m->maintenance);
        if (r < 0) {
                return start_failed(EXIT_FAILURE_OTHER, "cannot set up maintenance: %s", strerror(-r));
        }

        {
                char error[512];

                r = control_new(&m->control, m, error, sizeof(error));
                if (r == CONTROL_E_DISABLED)
                        log_warning("no control socket: %s", error);
                else if (r < 0)
                        return start_failed(EXIT_FAILURE_OTHER, "%s", error);
        }

        m->ready = true;
        manager_publish(m);
        format_status(m, m->status, sizeof(m->status));
        log_notify_failure(notify_ready(m->status), "READY=1");

        f = (LogFields){ 0 };
        log_field(&f, "SQLVIGIL_HEALTH", "%s", health_state_names[m->health.state]);
        log_field(&f, "SQLVIGIL_WATCHDOG_USEC", "%" PRIu64, m->watchdog_usec);
        log_field(&f, "SQLVIGIL_HEALTH_INTERVAL_USEC", "%" PRIu64, m->health_period);
        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, m->files.wal_bytes);
        log_field(&f, "SQLVIGIL_PAGE_SIZE", "%" PRIi64, m->page_size);
        log_field(&f, "SQLVIGIL_PAGE_COUNT", "%" PRIi64, m->probe.page_count);
        log_field(&f, "SQLVIGIL_FREELIST_COUNT", "%" PRIi64, m->probe.freelist_count);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, now_usec(CLOCK_MONOTONIC) - m->started_at);
        log_event(LOG_INFO, SQLVIGIL_MESSAGE_READY, "ready", &f,
                  "ready in %s: %s; health checks every %s%s%s", format_elapsed(took, sizeof(took),
                  now_usec(CLOCK_MONOTONIC) - m->started_at), m->status,
                  format_elapsed(period, sizeof(period), m->health_period),
                  m->watchdog_usec ? ", watchdog " : "",
                  m->watchdog_usec ? format_elapsed(watchdog, sizeof(watchdog), m->watchdog_usec) : "");
        return EXIT_CLEAN;
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_loop(m->event);
        if (r < 0) {
                log_error("event loop failed: %s", strerror(-r));
                return EXIT_FAILURE_OTHER;
        }
        return m->exit_code;
}
