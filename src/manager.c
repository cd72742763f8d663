/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "checkpoint.h"
#include "commands.h"
#include "compat.h"
#include "control.h"
#include "files.h"
#include "rescue.h"
#include "walindex.h"
#include "watch.h"
#include "log.h"
#include "backup.h"
#include "manager.h"
#include "messages.h"
#include "metrics.h"
#include "monitor.h"
#include "notify.h"
#include "paths.h"
#include "worker.h"

/* While the final checkpoint runs we keep asking systemd for this much more
 * time, once a second, so TimeoutStopSec= never cuts it short... */
#define STOP_EXTEND_STEP (5 * USEC_PER_SEC)
/* ...but only this long beyond stop_timeout: copying a huge WAL back takes
 * time, a hung disk takes forever, and then systemd's SIGKILL is right. */
#define STOP_EXTEND_GRACE (60 * USEC_PER_SEC)

struct Manager {
        sd_event *event;
        Config *config;
        char *config_path;      /* NULL when started with --database alone */
        char *db_override;      /* --database */
        bool create_override;   /* --create */
        char *instance;         /* NAME: for the control socket and metrics */
        Lifecycle lifecycle;    /* what systemd has been told (notify.c keeps it) */

        Db *db;                 /* after start-up, used only by the database thread */
        FileId db_id;           /* the file it opened */
        char *db_path;          /* [database] path: a reload cannot change it */
        char *wal_path;
        /* The database's files as SQLite has them open, with duplicates of
         * its -wal and -shm descriptors: closed only after the connection
         * (files.h). */
        DbFiles files;
        Watch *watch;           /* inotify on the database's directory */
        Rescue *rescue;         /* the files were displaced: saving what is committed */
        FilesCheck files_check; /* the latest look at the paths */
        int write_errno;        /* the write probe's latest failure, 0: it worked */
        unsigned salt_mismatches; /* the -wal's header and the WAL index disagree, looks in a row */
        char overwritten[512];  /* the content was replaced in place: why we think so */
        sd_event_source *fresh_timer; /* a fresh look at the database, after a write by someone */
        bool fresh_running;
        usec_t fresh_not_before; /* CLOCK_MONOTONIC */
        Worker *db_worker;
        Worker *file_worker;
        Worker *backup_worker;  /* backups and a restore's preparation: long file work of its own */
        Monitor *monitor;
        Maintenance *maintenance;
        Control *control;
        DbPragmas pragmas;      /* the loop's copy: only job results on this thread change it */
        char check_unsupported[512]; /* the start-up probe: quick_check cannot run here, why; "" it can */

        /* Health. */
        usec_t watchdog_usec;   /* 0: no watchdog */
        usec_t health_period;
        HealthResult health;
        usec_t health_since;    /* CLOCK_REALTIME of the last state change */
        usec_t checked_at;      /* CLOCK_REALTIME of the last judgement */
        uint64_t checks;
        char status[512];       /* the last STATUS= line */

        /* The metrics file, written on the file thread. */
        bool metrics_writing;   /* a write is under way... */
        bool metrics_again;     /* ...and another was asked for meanwhile */
        char metrics_error[256]; /* the last failure, said once */

        /* Life cycle. */
        usec_t started_at;      /* CLOCK_MONOTONIC */
        usec_t started_rt;      /* CLOCK_REALTIME */
        bool tearing_down;
        bool reload_again;
        Config *pending_config; /* a reload waiting for its pragmas job */
        ReloadReply reload_reply; /* a control client waiting for the reload */
        void *reload_userdata;
        sd_event_source *extend_timer;
        usec_t stop_started;
        int exit_code;
};

typedef struct PragmaJob {
        Job job;
        Manager *manager;
        PragmaRequest requests[_PRAGMA_MAX];
        usec_t max_wait;
        int result;
        char error[512];
        DbPragmas pragmas;
} PragmaJob;

typedef struct FreshJob {
        Job job;
        Manager *manager;
        char *path;
        DbCheck check;
} FreshJob;

typedef struct MetricsJob {
        Job job;
        Manager *manager;
        char *path;
        char *text;
        FileId avoid[1];
        int result;
        char error[256];
} MetricsJob;

static void manager_reload(Manager *m);
static void on_control_request(void *userdata, ControlClient *cl, const Request *req);
static void on_control_gone(void *userdata, ControlClient *cl);
static bool on_control_privileged(void *userdata, const ControlPeer *peer);

/* The control socket at path (explicit: its failure stops the daemon; see
 * control_new()), answering through the handlers below. */
static int new_control(Manager *m, const char *path, bool explicit_path, char *error, size_t error_size) {
        return control_new(&m->control,
                           &(ControlEnv){
                                   .event = m->event,
                                   .userdata = m,
                                   .request = on_control_request,
                                   .gone = on_control_gone,
                                   .privileged = on_control_privileged,
                           },
                           path, explicit_path, error, error_size);
}

/* ---- Helpers ---------------------------------------------------------- */

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

static bool stopping(const Manager *m) {
        return m->lifecycle == LIFECYCLE_STOPPING;
}

/* "file journal_mode=wal page_size=4096 auto_vacuum=none; sqlvigil's own
 * connection busy_timeout=5000 ...; each application's own, not applied:
 * foreign_keys=on": what is in force, by whom it shapes. */
static void format_pragmas_line(const DbPragmas *p, char *line, size_t size) {
        static const char *const heads[_PRAGMA_SCOPE_MAX] = {
                [PRAGMA_SCOPE_FILE] = "file",
                [PRAGMA_SCOPE_SQLVIGIL] = "sqlvigil's own connection",
                [PRAGMA_SCOPE_APPLICATION] = "each application's own, not applied:",
        };
        size_t off = 0;

        line[0] = '\0';
        for (PragmaScope scope = 0; scope < _PRAGMA_SCOPE_MAX; scope++) {
                bool first = true;

                for (PragmaId id = 0; id < _PRAGMA_MAX && off < size; id++) {
                        const PragmaStatus *st = &p->status[id];
                        char req[32];

                        if (pragma_info[id].scope != scope ||
                            (scope == PRAGMA_SCOPE_APPLICATION && !st->requested))
                                continue;
                        if (scope == PRAGMA_SCOPE_APPLICATION)
                                pragma_format_value(id, st->requested_value, req, sizeof(req));
                        off += (size_t)snprintf(line + off, size - off, "%s%s %s=%s", off && first ? "; " : "",
                                                first ? heads[scope] : "", pragma_info[id].name,
                                                scope == PRAGMA_SCOPE_APPLICATION ? req : st->effective);
                        first = false;
                }
        }
        if (off >= size && size > 4)
                memcpy(line + size - 4, "...", 4);
}

static void log_pragmas(Manager *m, const Config *c) {
        char line[1024], req[32], note[512], where[512];

        for (PragmaId id = 0; id < _PRAGMA_MAX; id++) {
                const PragmaStatus *st = &m->pragmas.status[id];
                const char *name = pragma_info[id].name;
                PragmaNote kind;
                LogFields f = { 0 };

                if (!st->requested)
                        continue;
                pragma_format_value(id, st->requested_value, req, sizeof(req));
                kind = pragma_note(id, st->requested_value, note, sizeof(note));
                if (st->outcome == PRAGMA_APPLIED && kind == PRAGMA_NOTE_NONE)
                        continue;

                where[0] = '\0';
                if (c->pragmas[id].line && c->source)
                        bufprintf(where, sizeof(where), " (%s:%u)", c->source, c->pragmas[id].line);
                log_field(&f, "SQLVIGIL_PRAGMA", "%s", name);
                log_field(&f, "SQLVIGIL_SCOPE", "%s", pragma_scope_names[pragma_info[id].scope]);
                log_field(&f, "SQLVIGIL_REQUESTED", "%s", req);
                if (st->outcome != PRAGMA_APPLICATION_ONLY)
                        log_field(&f, "SQLVIGIL_EFFECTIVE", "%s", st->effective);
                switch (st->outcome) {
                case PRAGMA_APPLICATION_ONLY:
                        log_event(LOG_WARNING, SQLVIGIL_MESSAGE_PRAGMA, "pragma", &f, "%s%s", note, where);
                        break;
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
                case PRAGMA_DIFFERS:
                        log_event(LOG_WARNING, SQLVIGIL_MESSAGE_PRAGMA, "pragma", &f,
                                  "%s: requested %s, SQLite uses %s on this connection", name, req, st->effective);
                        break;
                default:
                        /* Applied, but worth a word (mmap_size). */
                        log_event(LOG_NOTICE, SQLVIGIL_MESSAGE_PRAGMA, "pragma", &f, "%s%s", note, where);
                        break;
                }
        }
        format_pragmas_line(&m->pragmas, line, sizeof(line));
        log_info("pragmas in force: %s", line);
}

/* ---- Status --------------------------------------------------------------- */

void manager_status(Manager *m, Status *s) {
        const MonitorFacts *f = monitor_facts(m->monitor);

        *s = (Status){
                .lifecycle = m->lifecycle,
                .instance = m->instance,
                .db_path = m->db_path,
                .pid = getpid(),
                .started_rt = m->started_rt,
                .uptime = now_usec(CLOCK_MONOTONIC) - m->started_at,
                .rss_bytes = status_rss_bytes(),
                .health = m->health,
                .health_since = m->health_since,
                .checked_at = m->checked_at,
                .checks = m->checks,
                .check_usec = f->check_usec,
                .files = f->files,
                .page_size = m->pragmas.page_size,
                .page_count = f->probe.page_count,
                .freelist_count = f->probe.freelist_count,
        };
        monitor_check_percentiles(m->monitor, &s->check_usec_p50, &s->check_usec_p99);
        memcpy(s->pragmas, m->pragmas.status, sizeof(s->pragmas));
        if (m->maintenance) {
                s->wal_valid = maintenance_wal_index(m->maintenance, &s->wal);
                s->running = maintenance_running(m->maintenance);
                s->starved = maintenance_starvation(m->maintenance) != NULL;
                for (int t = 0; t < _TASK_MAX; t++)
                        s->last[t] = *maintenance_last(m->maintenance, (TaskId)t);
                s->totals = *maintenance_totals(m->maintenance);
                s->backup_directory = m->config->backup_directory;
                s->backups = *maintenance_backups(m->maintenance);
        }
}

const Config *manager_config(const Manager *m) {
        return m->config;
}

Maintenance *manager_maintenance(Manager *m) {
        return m->maintenance;
}

bool manager_stopping(const Manager *m) {
        return stopping(m);
}

static void update_status_line(Manager *m, const Status *s) {
        char line[sizeof(m->status)];

        status_line(s, now_usec(CLOCK_REALTIME), line, sizeof(line));
        if (streq(line, m->status))
                return;
        bufprintf(m->status, sizeof(m->status), "%s", line);
        if (m->lifecycle == LIFECYCLE_STARTING)
                return; /* READY=1 carries it */
        log_notify_failure(notify_status(&m->lifecycle, line), "STATUS=");
}

static void metrics_run(Job *j, Db *db) {
        MetricsJob *mj = container_of(j, MetricsJob, job);

        (void)db;
        mj->result = metrics_write(mj->path, mj->text, mj->avoid, ELEMENTSOF(mj->avoid), mj->error,
                                   sizeof(mj->error));
}

static void publish(Manager *m);

static void metrics_done(Job *j, bool ran) {
        MetricsJob *mj = container_of(j, MetricsJob, job);
        Manager *m = mj->manager;

        if (!m->tearing_down && ran) {
                if (mj->result < 0 && !streq(mj->error, m->metrics_error))
                        log_warning("metrics: %s", mj->error);
                else if (mj->result == 0 && m->metrics_error[0])
                        log_notice("metrics: %s written again", mj->path);
                bufprintf(m->metrics_error, sizeof(m->metrics_error), "%s", mj->result < 0 ? mj->error : "");
        }
        m->metrics_writing = false;
        free(mj->path);
        free(mj->text);
        free(mj);
        if (m->metrics_again && !m->tearing_down) {
                m->metrics_again = false;
                publish(m);
        }
}

static void write_metrics(Manager *m, const Status *s) {
        MetricsJob *mj;

        if (!m->config->metrics_textfile || !m->file_worker)
                return;
        if (m->metrics_writing) {
                /* One write at a time; the newest facts go out next. */
                m->metrics_again = true;
                return;
        }
        mj = calloc(1, sizeof(*mj));
        if (!mj || !(mj->path = strdup(m->config->metrics_textfile)) || !(mj->text = metrics_render(s))) {
                if (mj)
                        free(mj->path);
                free(mj);
                log_warning("metrics: out of memory");
                return;
        }
        mj->job = (Job){ .name = "metrics", .cancellable = true, .run = metrics_run, .done = metrics_done };
        mj->manager = m;
        mj->avoid[0] = m->db_id;
        m->metrics_writing = true;
        worker_submit(m->file_worker, &mj->job);
}

/* Refreshes what others read about us: STATUS= and the metrics file. */
static void publish(Manager *m) {
        Status s;

        if (m->tearing_down)
                return;
        manager_status(m, &s);
        update_status_line(m, &s);
        write_metrics(m, &s);
}

void manager_say_stopping(Manager *m, const char *status) {
        log_notify_failure(notify_stopping(&m->lifecycle, status), "STOPPING=1");
}

/* ---- Health ----------------------------------------------------------- */

static void set_health(Manager *m, const HealthResult *r) {
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
        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, monitor_facts(m->monitor)->files.wal_bytes);
        if (r->state == HEALTH_OK)
                log_event(prio, SQLVIGIL_MESSAGE_HEALTH, "health", &f, "health: %s (was %s)",
                          health_state_names[r->state], health_state_names[old_state]);
        else
                log_event(prio, SQLVIGIL_MESSAGE_HEALTH, "health", &f, "health: %s: %s%s",
                          health_state_names[r->state], r->reason,
                          r->state == HEALTH_FAILED && m->watchdog_usec ? " (watchdog pings stop)" : "");
}

/* Judges the latest facts. */
static void judge(Manager *m) {
        const MonitorFacts *facts = monitor_facts(m->monitor);
        HealthLimits limits = {
                .max_wal_size = m->config->max_wal_size,
                .min_free_disk = m->config->min_free_disk,
                .lock_timeout = m->config->lock_timeout,
        };
        HealthInput in = {
                .files = facts->files,
                .open_dev = m->db_id.dev,
                .open_ino = m->db_id.ino,
                .probe = facts->have_probe ? &facts->probe : NULL,
                .lock_busy_for = facts->lock_busy_for,
                .lock_holder = facts->lock_holder,
                .lock_holder_comm = facts->lock_holder_comm,
                .corruption = m->maintenance ? maintenance_corruption(m->maintenance) : NULL,
                .starvation = m->maintenance ? maintenance_starvation(m->maintenance) : NULL,
                .inconsistency = m->maintenance ? maintenance_inconsistency(m->maintenance) : NULL,
                .unsupported = m->maintenance              ? maintenance_check_unsupported(m->maintenance)
                               : m->check_unsupported[0] ? m->check_unsupported
                                                         : NULL,
        };
        if (m->maintenance)
                in.storage_fault = maintenance_storage_fault(m->maintenance, &in.storage_fault_code);
        /* Without scheduled checks, none goes unwatched. */
        if (m->config->quick_check_interval == 0)
                in.unsupported = NULL;
        if (m->maintenance && m->config->backup_directory) {
                const BackupFacts *bf = maintenance_backups(m->maintenance);
                usec_t now_rt = now_usec(CLOCK_REALTIME);

                in.backup_known = bf->known;
                in.backup_have = bf->have_newest;
                in.backup_age = now_rt > bf->newest_time ? now_rt - bf->newest_time : 0;
                in.backup_behind = now_rt > bf->current_at ? now_rt - bf->current_at : 0;
                in.backup_newest = bf->newest_name;
                in.backup_max_age = m->config->backup_max_age ? m->config->backup_max_age
                                                              : 2 * m->config->backup_interval;
                in.running_for = now_usec(CLOCK_MONOTONIC) - m->started_at;
                in.backup_failure = bf->failed ? bf->failure : NULL;
        }
        char displaced[512];

        if (m->files_check.wal != FILE_STATE_OK || m->files_check.shm != FILE_STATE_OK) {
                files_check_describe(&m->files_check, &m->files, displaced, sizeof(displaced));
                in.wal_displaced = displaced;
        }
        in.overwritten = m->overwritten[0] ? m->overwritten : NULL;
        in.write_errno = m->write_errno;
        in.write_path = m->files.mark_path;
        const char *current = m->db_worker ? worker_current(m->db_worker) : NULL;
        HealthResult result;

        /* The database thread is in a long job (quick_check of a big file,
         * say) and the probe waits behind it. That is fine as long as the
         * job shows progress; it is a failure when it has not for
         * lock_timeout. */
        if (current) {
                usec_t now = now_usec(CLOCK_MONOTONIC), beat = worker_heartbeat(m->db_worker);

                in.stalled_for = now > beat ? now - beat : 0;
                in.stalled_job = current;
        }
        health_evaluate(&limits, &in, &result);
        set_health(m, &result);
        m->checks++;
        m->checked_at = now_usec(CLOCK_REALTIME);
}

/* ---- The files ------------------------------------------------------- */

static void start_extending(Manager *m);
static void abandon_reload(Manager *m);
static void wind_down(Manager *m, const char *status);

static void on_rescue_done(void *userdata, const char *summary, bool complete) {
        Manager *m = userdata;
        LogFields f = { 0 };

        if (m->tearing_down)
                return;
        (void)sd_event_source_set_enabled(m->extend_timer, SD_EVENT_OFF);
        log_field(&f, "SQLVIGIL_COMPLETE", "%d", complete);
        log_field(&f, "SQLVIGIL_EXIT_STATUS", "%d", EXIT_RESCUED);
        log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", summary);
        log_event(complete ? LOG_WARNING : LOG_ERR, SQLVIGIL_MESSAGE_FILE_RESCUED, "file-rescued", &f,
                  "files of %s: %s; exiting with status %d so that the service starts again on what the paths "
                  "name now",
                  m->db_path, summary, EXIT_RESCUED);
        m->exit_code = EXIT_RESCUED;
        (void)sd_event_exit(m->event, EXIT_RESCUED);
}

/* Past stop_timeout, for a process that only sqlvigil holds off
 * (rescue.h): the journal and STATUS= say who, and what to do. */
static void on_rescue_holding(void *userdata, const char *text) {
        Manager *m = userdata;
        char status[600];

        if (m->tearing_down)
                return;
        log_error("files of %s: %s", m->db_path, text);
        bufprintf(status, sizeof(status), "failed: %s", text);
        log_notify_failure(notify_stopping_status(&m->lifecycle, status), "STATUS=");
        /* The extension may have ended already (a drain that outlasted
         * stop_timeout and its grace): the hold needs it again. */
        if (m->extend_timer && sd_event_source_get_enabled(m->extend_timer, NULL) == 0) {
                int r = sd_event_source_set_time_relative(m->extend_timer, 0);

                if (r >= 0)
                        r = sd_event_source_set_enabled(m->extend_timer, SD_EVENT_ONESHOT);
                if (r < 0)
                        log_warning("cannot extend the stop timeout again: %s", strerror(-r));
        }
}

/* The files sqlvigil has open are no longer the ones at their paths (or no
 * longer agree): say so at once, then save what is committed and leave
 * (rescue.h). */
static void start_rescue(Manager *m, RescueKind kind, const char *reason) {
        char status[600];
        LogFields f = { 0 };
        HealthResult h = { .state = HEALTH_FAILED };
        int r;

        if (m->rescue || stopping(m) || m->tearing_down)
                return;
        h.code = kind == RESCUE_OVERWRITTEN                            ? HEALTH_CODE_OVERWRITTEN
                 : kind == RESCUE_WAL_DISPLACED                        ? HEALTH_CODE_WAL_DISPLACED
                 : m->files_check.db == FILE_STATE_REPLACED            ? HEALTH_CODE_FILE_REPLACED
                                                                       : HEALTH_CODE_FILE_DELETED;
        bufprintf(h.reason, sizeof(h.reason), "%s", reason);
        log_field(&f, "SQLVIGIL_RESCUE", "%s", rescue_kind_names[kind]);
        log_field(&f, "SQLVIGIL_DB_STATE", "%s", file_state_names[m->files_check.db]);
        log_field(&f, "SQLVIGIL_WAL_STATE", "%s", file_state_names[m->files_check.wal]);
        log_field(&f, "SQLVIGIL_SHM_STATE", "%s", file_state_names[m->files_check.shm]);
        log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", reason);
        log_event(LOG_CRIT, SQLVIGIL_MESSAGE_FILE_FAULT, "file-fault", &f,
                  "%s; sqlvigil keeps what is committed, moves the files that no longer belong out of SQLite's "
                  "way, and restarts. Do not put other content into a live database with mv or cp: stop every "
                  "program, or use sqlvigilctl restore",
                  reason);
        set_health(m, &h);

        bufprintf(status, sizeof(status), "failed: %s; saving what is committed, then restarting", reason);
        wind_down(m, status);

        r = rescue_start(&m->rescue,
                         &(RescueEnv){
                                 .event = m->event,
                                 .db_worker = m->db_worker,
                                 .maintenance = m->maintenance,
                                 .files = &m->files,
                                 .timeout = m->config->stop_timeout,
                                 .userdata = m,
                                 .done = on_rescue_done,
                                 .holding = on_rescue_holding,
                         },
                         kind, &m->files_check);
        if (r < 0) {
                log_error("cannot save the files of %s: %s; exiting", m->db_path, strerror(-r));
                m->exit_code = EXIT_RESCUED;
                (void)sd_event_exit(m->event, EXIT_RESCUED);
        }
}

/* Looks at the paths now: after an inotify event, and every round. */
static void look_at_files(Manager *m) {
        char reason[512];

        if (m->tearing_down || stopping(m) || !m->files.db_path)
                return;
        dbfiles_check(&m->files, &m->files_check);
        if (!files_check_bad(&m->files_check))
                return;
        files_check_describe(&m->files_check, &m->files, reason, sizeof(reason));
        start_rescue(m, rescue_kind_for(&m->files_check), reason);
}

/* The -wal's header and the WAL index name the same WAL (their salts),
 * whenever it holds frames: content copied over either of them does not. */
static void check_wal_header(Manager *m) {
        unsigned char hdr[32];
        uint32_t salt1, salt2;
        WalIndex w;

        if (m->files.wal_fd < 0 || walindex_read(m->files.shm_fd, &w) != 0 || w.mx_frame == 0 ||
            pread(m->files.wal_fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
                m->salt_mismatches = 0;
                return;
        }
        /* SQLite copies the salts byte for byte between the -wal's header
         * (offset 16) and the index header. */
        memcpy(&salt1, hdr + 16, 4);
        memcpy(&salt2, hdr + 20, 4);
        if (salt1 == w.salt && salt2 == w.salt2) {
                m->salt_mismatches = 0;
                return;
        }
        /* Twice in a row, a round apart: a writer that was starting the
         * WAL over between our two reads explains one. */
        if (++m->salt_mismatches < 2)
                return;
        bufprintf(m->overwritten, sizeof(m->overwritten),
                  "%s and its WAL index %s no longer belong together (their salts differ): one of them was "
                  "overwritten in place",
                  m->files.wal_path, m->files.shm_path);
        start_rescue(m, RESCUE_OVERWRITTEN, m->overwritten);
}

static void fresh_run(Job *j, Db *db) {
        FreshJob *fj = container_of(j, FreshJob, job);

        (void)db;
        db_fresh_look(fj->path, &fj->check);
}

static void fresh_done(Job *j, bool ran) {
        FreshJob *fj = container_of(j, FreshJob, job);
        Manager *m = fj->manager;

        m->fresh_running = false;
        if (!m->tearing_down && ran && fj->check.result == 0 && fj->check.problems > 0 && !stopping(m)) {
                bufprintf(m->overwritten, sizeof(m->overwritten),
                          "%s was written in place by another program while its WAL was in use, and a new "
                          "connection now reads: %s",
                          m->db_path, fj->check.first);
                start_rescue(m, RESCUE_OVERWRITTEN, m->overwritten);
        }
        free(fj->path);
        free(fj);
}

/* A fresh connection's look at the database, as a newly started program
 * sees it: sqlvigil's own connection answers from its cache and would not
 * notice content copied over the file. */
static int on_fresh_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        FreshJob *fj;

        (void)s;
        (void)usec;
        if (m->fresh_running || stopping(m) || m->tearing_down)
                return 0;
        fj = calloc(1, sizeof(*fj));
        if (!fj || !(fj->path = strdup(m->db_path))) {
                free(fj);
                return 0;
        }
        fj->job = (Job){ .name = "fresh look", .cancellable = true, .run = fresh_run, .done = fresh_done };
        fj->manager = m;
        m->fresh_running = true;
        m->fresh_not_before = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
        worker_submit(m->file_worker, &fj->job);
        return 0;
}

static void on_watch(void *userdata, WatchEvent ev) {
        Manager *m = userdata;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        int r;

        if (ev == WATCH_NAMES) {
                if (m->rescue)
                        rescue_look(m->rescue);
                look_at_files(m);
                return;
        }
        /* Someone wrote the database file and closed it: cp over it, or an
         * application closing its connection (SQLite opens it read-write).
         * Look, a moment later (the writer may not be done), at most every
         * 5 seconds: a fresh look reads the whole file. */
        if (!m->fresh_timer || stopping(m))
                return;
        r = sd_event_source_set_time(m->fresh_timer, MAX(now + 200 * USEC_PER_MSEC, m->fresh_not_before));
        if (r >= 0 && sd_event_source_get_enabled(m->fresh_timer, NULL) == 0)
                r = sd_event_source_set_enabled(m->fresh_timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning("cannot arm the fresh look at %s: %s", m->db_path, strerror(-r));
}

static void on_round_done(void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->tearing_down || stopping(m))
                return;
        /* The periodic look, for changes inotify does not see (NFS, CIFS,
         * another host). */
        look_at_files(m);
        if (stopping(m))
                return;
        check_wal_header(m);
        if (stopping(m))
                return;
        r = dbfiles_probe_write(&m->files);
        m->write_errno = r < 0 ? -r : 0;
        judge(m);
        if (m->watchdog_usec && m->health.state != HEALTH_FAILED)
                log_notify_failure(notify_watchdog(&m->lifecycle), "WATCHDOG=1");
        publish(m);
}

/* Maintenance: a health fact changed (corruption, starvation). */
static void on_facts_changed(void *userdata) {
        Manager *m = userdata;

        if (m->tearing_down || stopping(m))
                return;
        judge(m);
        publish(m);
}

static void on_run_ended(void *userdata, TaskId task) {
        Manager *m = userdata;

        (void)task;
        publish(m);
}

static void on_pragma_changed(void *userdata, PragmaId id, const PragmaStatus *st) {
        Manager *m = userdata;

        m->pragmas.status[id] = *st;
}

/* ---- Stop ------------------------------------------------------------- */

static void final_checkpoint_done(void *userdata, const CheckpointOutcome *o, bool ran) {
        Manager *m = userdata;
        const char *mode = checkpoint_mode_names[o->mode];
        char before[32], after[32], took[32], counts[96], reader[96] = "";
        LogFields f = { 0 };

        if (m->tearing_down)
                return;
        if (o->reader > 0 && !o->caught_up)
                bufprintf(reader, sizeof(reader), "; in the way: pid %d (%s)", (int)o->reader, o->reader_comm);
        (void)sd_event_source_set_enabled(m->extend_timer, SD_EVENT_OFF);
        format_bytes(before, sizeof(before), o->wal_before);
        format_bytes(after, sizeof(after), o->wal_after);
        format_elapsed(took, sizeof(took), o->duration);
        if (o->frames >= 0)
                bufprintf(counts, sizeof(counts), "%d frames in WAL, %d checkpointed", o->frames, MAX(o->copied, 0));
        else
                bufprintf(counts, sizeof(counts), "frames in WAL unknown (another connection was checkpointing)");

        log_field(&f, "SQLVIGIL_CHECKPOINT_MODE", "%s", mode);
        log_field(&f, "SQLVIGIL_RESULT", "%s", !ran ? "not-run" : task_result_names[o->result]);
        log_field(&f, "SQLVIGIL_WAL_FRAMES", "%d", o->frames);
        log_field(&f, "SQLVIGIL_PAGES", "%d", o->copied);
        log_field(&f, "SQLVIGIL_BUSY", "%d", o->result == TASK_RESULT_BUSY);
        log_field(&f, "SQLVIGIL_WAL_BYTES_BEFORE", "%" PRIu64, o->wal_before);
        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, o->wal_after);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, o->duration);
        log_field(&f, "SQLVIGIL_LOCK_USEC", "%" PRIu64, o->holds.max);
        log_field(&f, "SQLVIGIL_LOCK_HOLDS", "%" PRIu64, o->holds.count);
        log_field(&f, "SQLVIGIL_LOCK_TOTAL_USEC", "%" PRIu64, o->holds.total);
        if (o->reader > 0 && !o->caught_up) {
                log_field(&f, "SQLVIGIL_READER_PID", "%d", (int)o->reader);
                log_field(&f, "SQLVIGIL_READER_COMM", "%s", o->reader_comm);
        }

        if (!ran)
                log_event(LOG_ERR, SQLVIGIL_MESSAGE_STOPPING, "stopping", &f,
                          "stopping: the final %s checkpoint did not run", mode);
        else if (o->result == TASK_RESULT_OK)
                log_event(LOG_INFO, SQLVIGIL_MESSAGE_STOPPING, "stopping", &f,
                          "stopping: final %s checkpoint done in %s: %s, WAL %s -> %s", mode, took, counts,
                          before, after);
        else if (o->result == TASK_RESULT_BUSY || o->result == TASK_RESULT_INCOMPLETE)
                log_event(LOG_WARNING, SQLVIGIL_MESSAGE_STOPPING, "stopping", &f,
                          "stopping: final %s checkpoint incomplete after %s: database busy (%s stayed past "
                          "stop_timeout); %s, WAL %s -> %s%s",
                          mode, took, o->lock_taken ? "another connection's checkpoint" : "readers or a writer",
                          counts, before, after, reader);
        else
                log_event(LOG_ERR, SQLVIGIL_MESSAGE_STOPPING, "stopping", &f,
                          "stopping: final %s checkpoint failed after %s: %s", mode, took, o->error);

        m->exit_code = EXIT_CLEAN;
        (void)sd_event_exit(m->event, EXIT_CLEAN);
}

static int on_extend_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int on_extend_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        usec_t elapsed = usec - m->stop_started;
        int r;

        /* A rescue holding off a process (rescue.h) stays as long as that
         * process does: leaving would be the cause of what it then does. */
        if (elapsed > m->config->stop_timeout + STOP_EXTEND_GRACE && !rescue_holding(m->rescue)) {
                log_warning("stopping: the %s has taken %" PRIu64 "s; no longer extending the stop timeout",
                            m->rescue ? "rescue of the files" : "final checkpoint", elapsed / USEC_PER_SEC);
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        }
        log_notify_failure(notify_extend_timeout(&m->lifecycle, STOP_EXTEND_STEP), "EXTEND_TIMEOUT_USEC=");
        r = sd_event_source_set_time(s, usec + USEC_PER_SEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return r;
}

static void start_extending(Manager *m) {
        int r;

        log_notify_failure(notify_extend_timeout(&m->lifecycle, m->config->stop_timeout + STOP_EXTEND_STEP),
                           "EXTEND_TIMEOUT_USEC=");
        r = sd_event_add_time_relative(m->event, &m->extend_timer, CLOCK_MONOTONIC, USEC_PER_SEC,
                                       100 * USEC_PER_MSEC, on_extend_timer, m);
        if (r < 0)
                log_warning("cannot arm the stop timeout extension: %s", strerror(-r));
        else
                (void)sd_event_source_set_description(m->extend_timer, "extend-stop-timeout");
}

/* Both ways of stopping, the stop and the rescue, begin alike: STOPPING=1
 * with its status at once, no new work, a reload in flight abandoned (stop
 * wins), whatever may be cancelled cancelled (what comes next - the final
 * checkpoint, the rescue's drain - is queued behind it and is not), and
 * systemd's stop timeout extended while it lasts. */
static void wind_down(Manager *m, const char *status) {
        manager_say_stopping(m, status);
        m->stop_started = now_usec(CLOCK_MONOTONIC);
        monitor_stop(m->monitor);
        maintenance_stop(m->maintenance);
        abandon_reload(m);
        worker_cancel(m->db_worker);
        worker_cancel(m->file_worker);
        worker_cancel(m->backup_worker);
        start_extending(m);
}

static void manager_stop(Manager *m, const char *why) {
        int r;

        log_info("%s: stopping; final %s checkpoint, waiting at most %" PRIu64 " ms for readers and writers", why,
                 checkpoint_mode_names[m->config->stop_mode], m->config->stop_timeout / USEC_PER_MSEC);
        wind_down(m, "stopping: final checkpoint");

        r = maintenance_final_checkpoint(m->maintenance, m->config->stop_mode, m->config->stop_timeout,
                                         final_checkpoint_done, m);
        if (r < 0) {
                log_error("stopping: %s; exiting without the final checkpoint", strerror(-r));
                m->exit_code = EXIT_FAILURE_OTHER;
                (void)sd_event_exit(m->event, EXIT_FAILURE_OTHER);
        }
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void)s;
        if (m->rescue) {
                /* systemd sends SIGTERM once: it must count whenever it
                 * comes during the rescue. */
                if (rescue_holding(m->rescue))
                        log_warning("%s: leaving the files of %s to the process sqlvigil was holding off",
                                    strsignal((int)si->ssi_signo), m->db_path);
                else
                        log_notice("%s: saving the files of %s first; then sqlvigil leaves, at stop_timeout at the "
                                   "latest, even if programs are still attached",
                                   strsignal((int)si->ssi_signo), m->db_path);
                rescue_abandon(m->rescue);
                return 0;
        }
        if (stopping(m)) {
                log_notice("%s: already stopping; waiting for the %s", strsignal((int)si->ssi_signo),
                           m->rescue ? "files to be saved" : "final checkpoint");
                return 0;
        }
        manager_stop(m, strsignal((int)si->ssi_signo));
        return 0;
}

/* ---- Reload ----------------------------------------------------------- */

static void finish_reload(Manager *m, const ReloadOutcome *o) {
        ReloadReply reply = m->reload_reply;
        void *userdata = m->reload_userdata;

        m->reload_reply = NULL;
        m->reload_userdata = NULL;
        /* Stop wins: after STOPPING=1 the life cycle refuses READY=1 anyway;
         * asking is not even tried. */
        if (!stopping(m))
                log_notify_failure(notify_ready(&m->lifecycle, m->status), "READY=1");
        if (reply)
                reply(userdata, o);
        if (m->reload_again && !stopping(m)) {
                m->reload_again = false;
                manager_reload(m);
        }
}

static void finish_reload_simple(Manager *m, ReloadResult result, const char *error) {
        finish_reload(m, &(ReloadOutcome){ .result = result, .error = error });
}

/* The stop began (or the files were displaced) while a reload was in
 * flight: it is abandoned, and its client told so now. Its pragmas job,
 * cancelled with the rest, comes back later and is dropped. */
static void abandon_reload(Manager *m) {
        m->reload_again = false;
        if (!m->pending_config && !m->reload_reply)
                return;
        log_notice("reload abandoned: sqlvigil is stopping; the configuration is not applied");
        finish_reload_simple(m, RELOAD_ABANDONED, "sqlvigil is stopping; the configuration was not applied");
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

static void pragma_run(Job *j, Db *db) {
        PragmaJob *p = container_of(j, PragmaJob, job);

        p->result = db_apply_pragmas(db, p->requests, p->max_wait, &p->pragmas, p->error, sizeof(p->error));
}

/* A reload changed [control] socket: listen at the new path, or say that
 * it takes a restart (and keep the old path in the configuration in force,
 * so that `config` tells the truth and the next reload tries again). */
static void move_control_socket(Manager *m, ReloadOutcome *o, char *moved_to, size_t moved_size, char *restart,
                                size_t restart_size) {
        bool old_explicit, new_explicit;
        _cleanup_(freep) char *old = control_socket_path(m->config, m->instance, &old_explicit);
        _cleanup_(freep) char *new = control_socket_path(m->pending_config, m->instance, &new_explicit);
        char error[512];
        int r;

        if (!old || !new || streq(old, new))
                return;
        if (m->control)
                r = control_rebind(m->control, new, error, sizeof(error));
        else {
                r = new_control(m, new, new_explicit, error, sizeof(error));
                if (r == CONTROL_E_DISABLED)
                        r = -ENOENT;
        }
        if (r == 0) {
                log_notice("reload: the control socket moved from %s to %s", old, new);
                bufprintf(moved_to, moved_size, "%s", new);
                o->control_socket = moved_to;
                return;
        }
        bufprintf(restart, restart_size, "the control socket stays at %s: %s; restart sqlvigil to move it to %s",
                  m->control ? control_path(m->control) : "(none)", error, new);
        log_warning("reload: %s", restart);
        o->restart_needed = restart;
        free(m->pending_config->control_socket);
        m->pending_config->control_socket = m->config->control_socket ? strdup(m->config->control_socket) : NULL;
}

static void reload_pragmas_done(Job *j, bool ran) {
        PragmaJob *p = container_of(j, PragmaJob, job);
        Manager *m = p->manager;
        ReloadOutcome outcome = { .result = RELOAD_APPLIED };
        char moved_to[4096], restart_needed[1024];
        LogFields f = { 0 };
        int r;

        if (m->tearing_down || stopping(m)) {
                /* Abandoned when the stop began (abandon_reload()). */
                config_free(TAKE_PTR(m->pending_config));
                free(p);
                return;
        }
        if (!ran)
                log_error("reload: the pragmas were not applied (the database thread was stopping)");
        else if (p->result != 0)
                log_error("reload: applying pragmas failed: %s", p->error);
        move_control_socket(m, &outcome, moved_to, sizeof(moved_to), restart_needed, sizeof(restart_needed));
        if (ran)
                m->pragmas = p->pragmas;

        config_free(m->config);
        m->config = TAKE_PTR(m->pending_config);
        if (ran)
                log_pragmas(m, m->config);
        m->health_period = compute_health_period(m->config, m->watchdog_usec);
        r = monitor_set_period(m->monitor, m->health_period);
        if (r < 0)
                log_error("reload: cannot re-arm the health timer: %s", strerror(-r));
        maintenance_reload(m->maintenance, m->config);

        log_field(&f, "SQLVIGIL_CONFIG", "%s", m->config_path);
        log_event(LOG_INFO, SQLVIGIL_MESSAGE_RELOADED, "reloaded", &f,
                  "configuration %s reloaded; health checks every %" PRIu64 " ms", m->config_path,
                  m->health_period / USEC_PER_MSEC);
        free(p);
        finish_reload(m, &outcome);
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

        if (stopping(m))
                return;
        if (m->lifecycle == LIFECYCLE_RELOADING) {
                m->reload_again = true;
                return;
        }
        log_notify_failure(notify_reloading(&m->lifecycle), "RELOADING=1");

        if (!m->config_path) {
                log_info("reload: started with --database and no configuration file; nothing to reload");
                finish_reload_simple(m, RELOAD_APPLIED, NULL);
                return;
        }

        r = config_load_file(m->config_path, &c, &errors);
        if (r == 0)
                r = apply_overrides(m, c);
        if (r == 0 && !c->db_path) {
                r = CONFIG_E_INVALID;
                config_errors_add(&errors, "%s: [database] path is not set", m->config_path);
        }
        if (r == 0 && paths_check(c, m->config_path, &errors) != 0)
                r = CONFIG_E_INVALID;
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
                finish_reload_simple(m, RELOAD_REJECTED, first);
                return;
        }

        p = calloc(1, sizeof(*p));
        if (!p) {
                log_error("reload: out of memory; the running configuration stays in force");
                finish_reload_simple(m, RELOAD_REJECTED, "out of memory");
                return;
        }
        /* Cancellable: a stop that begins while it waits for the write lock
         * (busy_timeout) interrupts it; stop wins. */
        p->job = (Job){ .name = "pragmas", .urgent = true, .cancellable = true, .run = pragma_run,
                        .done = reload_pragmas_done };
        p->manager = m;
        memcpy(p->requests, c->pragmas, sizeof(p->requests));
        p->max_wait = config_busy_timeout(c);
        m->pending_config = TAKE_PTR(c);
        worker_submit(m->db_worker, &p->job);
}

int manager_request_reload(Manager *m, ReloadReply reply, void *userdata) {
        if (stopping(m))
                return MANAGER_E_STOPPING;
        if (m->lifecycle == LIFECYCLE_RELOADING)
                return MANAGER_E_RELOADING;
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
        if (stopping(m)) {
                log_notice("SIGHUP: sqlvigil is stopping; not reloading");
                return 0;
        }
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
        m->started_rt = now_usec(CLOCK_REALTIME);
        m->health_since = m->started_rt;
        m->exit_code = EXIT_CLEAN;
        m->files = (DbFiles){ .db_fd = -1, .wal_fd = -1, .shm_fd = -1, .mark_fd = -1 };
        if (options->config_path && !(m->config_path = strdup(options->config_path)))
                goto oom;
        if (options->db_override && !(m->db_override = strdup(options->db_override)))
                goto oom;
        m->create_override = options->create_override;
        m->instance = config_instance_name(config);
        if (!m->instance)
                goto oom;
        m->db_path = strdup(config->db_path);
        m->wal_path = strdup_printf("%s-wal", config->db_path);
        if (!m->db_path || !m->wal_path)
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
        maintenance_teardown(m->maintenance);
        /* Control first: its waiting clients withdraw their replies. Then
         * the threads: they join and hand back queued jobs, whose done()
         * callbacks still see whole objects. */
        control_free(m->control);
        watch_free(m->watch);
        sd_event_source_disable_unref(m->fresh_timer);
        worker_free(m->db_worker);
        worker_free(m->file_worker);
        worker_free(m->backup_worker);
        rescue_free(m->rescue);
        maintenance_free(m->maintenance);
        monitor_free(m->monitor);
        sd_event_source_disable_unref(m->extend_timer);
        db_free(m->db);
        /* Only now: SQLite's locks are gone with its connection. */
        dbfiles_done(&m->files);
        config_free(m->pending_config);
        config_free(m->config);
        free(m->config_path);
        free(m->db_override);
        free(m->instance);
        free(m->db_path);
        free(m->wal_path);
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

static FileId path_id(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 ? (FileId){ .dev = st.st_dev, .ino = st.st_ino } : (FileId){ 0 };
}

/* Before SQLite opens the database: a -wal and -shm that the mark says
 * belong to another database file (a file renamed over this one, content
 * copied into it, while sqlvigil was not there to see) are set aside, or
 * moved back beside the database they belong to, instead of being replayed
 * into this one. Returns EXIT_CLEAN or the exit code to fail with. */
static int set_aside_stale(Manager *m) {
        _cleanup_(freep) char *mark_path = strdup_printf("%s-sqlvigil", m->db_path),
                             *wal_path = strdup_printf("%s-wal", m->db_path),
                             *shm_path = strdup_printf("%s-shm", m->db_path), *dir = NULL, *owner = NULL;
        FileId db_now, wal_now, shm_now;
        pid_t holders[8];
        size_t n = 0;
        StalePlan plan;
        char who[256] = "", done[1024] = "", tmp[4096];
        Mark mark;
        int r;

        if (!mark_path || !wal_path || !shm_path)
                return start_failed(EXIT_FAILURE_OTHER, "out of memory");
        r = mark_read(mark_path, &mark);
        if (r < 0) {
                log_warning("cannot read %s: %s; a -wal left beside %s by another database cannot be recognised",
                            mark_path, strerror(-r), m->db_path);
                return EXIT_CLEAN;
        }
        db_now = path_id(m->db_path);
        wal_now = path_id(wal_path);
        shm_now = path_id(shm_path);
        if (mark.valid && mark.shm.ino)
                (void)walindex_lock_holders(NULL, mark.shm.dev, mark.shm.ino, getpid(), holders, ELEMENTSOF(holders),
                                            &n);
        bufprintf(tmp, sizeof(tmp), "%s", m->db_path);
        dir = realpath(dirname(tmp), NULL);
        if (!dir)
                return start_failed(EXIT_FAILURE_OTHER, "cannot resolve the directory of %s: %s", m->db_path,
                                    strerror(errno));
        /* Only processes that have that -shm open beside this database: its
         * inode number may belong to an unrelated file by now. One whose
         * descriptors cannot be read (another user's) counts: better a start
         * refused with the reason than a second WAL. */
        for (size_t i = 0; i < n;)
                if (files_pid_has_open_in(holders[i], mark.shm, dir) != 0)
                        i++;
                else
                        holders[i] = holders[--n];
        for (size_t i = 0; i < n; i++) {
                char comm[32];

                walindex_comm(holders[i], comm, sizeof(comm));
                bufprintf(who + strlen(who), sizeof(who) - strlen(who), "%spid %d (%s)", i ? ", " : "",
                          (int)holders[i], comm);
        }
        /* The same database file, and programs still attached to a WAL index
         * that is no longer at its path (deleted or set aside while they
         * ran): a new WAL beside theirs would split the database in two.
         * A stale mark is no exception: the rescue after a deleted -wal or
         * -shm writes one, and exits while such programs may remain. */
        if (n > 0 && mark.valid && file_id_eq(db_now, mark.db) && !file_id_eq(shm_now, mark.shm))
                return start_failed(EXIT_FAILURE_OTHER,
                                    "%s still has %s open through a -shm that is no longer at %s (it was deleted "
                                    "or set aside while they ran): their commits go where no new connection looks. "
                                    "Restart them, then sqlvigil",
                                    who, m->db_path, shm_path);

        files_stale_plan(&mark, db_now, wal_now, shm_now, &plan);
        if (!plan.wal && !plan.shm)
                return EXIT_CLEAN;
        /* The database they belong to, if it is still in the directory
         * under another name: they go back beside it. */
        if (dir && !mark.stale && !file_id_eq(db_now, mark.db))
                (void)files_find_by_id(dir, mark.db, mark.db_birth, &owner);
        for (int i = 0; i < 2; i++) {
                const char *path = i == 0 ? wal_path : shm_path;
                _cleanup_(freep) char *to = NULL;

                if (!(i == 0 ? plan.wal : plan.shm))
                        continue;
                r = -ENOENT;
                if (owner) {
                        to = strdup_printf("%s/%s%s", dir, owner, i == 0 ? "-wal" : "-shm");
                        r = to ? files_rename_noreplace(path, to) : -ENOMEM;
                }
                if (r < 0) {
                        free(to);
                        to = NULL;
                        r = files_set_aside(path, "stale", &to);
                }
                if (r < 0)
                        return start_failed(EXIT_FAILURE_OTHER,
                                            "%s belongs to another database file (%s says so) and cannot be moved out "
                                            "of the way: %s; move it yourself before starting sqlvigil",
                                            path, mark_path, strerror(-r));
                bufprintf(done + strlen(done), sizeof(done) - strlen(done), "%s%s -> %s", *done ? "; " : "", path,
                          to);
        }
        {
                LogFields f = { 0 };

                log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", done);
                log_event(LOG_WARNING, SQLVIGIL_MESSAGE_STALE_WAL, "stale-wal", &f,
                          "%s: the -wal and -shm beside it belonged to another database file%s, so SQLite would have "
                          "replayed them into the wrong one; moved: %s%s%s",
                          m->db_path,
                          owner ? "" : mark.stale ? " (its content was replaced in place)" : " (renamed over or deleted)",
                          done, n ? "; still using them: " : "", who);
        }
        return EXIT_CLEAN;
}

/* Once, at start: what sqlvigil's SQLite cannot do with this database,
 * which a newer SQLite (the applications' own) may have given features
 * this one lacks. Said in one warning; quick_check that cannot run is a
 * health fact from the first round on. */
static void check_compat(Manager *m) {
        char ours[32], theirs[32], words[128], written[96] = "", scheduled[160] = "", cannot[512], others[600] = "",
             took[32];
        CompatReport r;
        LogFields f = { 0 };

        db_compat(m->db, &r);
        if (!r.restricted) {
                log_debug("SQLite %s can do everything sqlvigil does with %s (looked in %" PRIu64 " us)",
                          sqlite3_libversion(), m->db_path, r.duration);
                return;
        }
        bufprintf(ours, sizeof(ours), "%s", sqlite3_libversion());
        compat_format_version(r.file_version, theirs, sizeof(theirs));
        if (r.file_version > (uint32_t)sqlite3_libversion_number())
                bufprintf(written, sizeof(written), " (its header says SQLite %s wrote it last)", theirs);
        compat_unsupported_words(&r, words, sizeof(words));
        /* A health fact while checks are scheduled (judge() asks the
         * configuration in force, which a reload may change). */
        if (!r.quick_check)
                bufprintf(m->check_unsupported, sizeof(m->check_unsupported),
                          "quick_check cannot run: sqlvigil's SQLite %s lacks what this database's schema uses, which "
                          "a newer SQLite wrote: %s (%s)",
                          ours, r.quick_check_error, r.culprits);
        if (!r.quick_check && m->config->quick_check_interval > 0)
                bufprintf(scheduled, sizeof(scheduled), "; the scheduled quick_check is among them: health is degraded "
                                                        "(sqlite-too-old)");

        log_field(&f, "SQLVIGIL_SQLITE_VERSION", "%s", ours);
        if (r.file_version)
                log_field(&f, "SQLVIGIL_FILE_SQLITE_VERSION", "%s", theirs);
        log_field(&f, "SQLVIGIL_UNSUPPORTED", "%s", words);
        log_field(&f, "SQLVIGIL_OBJECTS", "%u", r.objects);
        log_field(&f, "SQLVIGIL_REASON_TEXT", "%s", r.culprits);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, r.duration);
        if (*words) {
                char list[192];

                bufprintf(list, sizeof(list), "%s%s%s%s", r.quick_check ? "" : ", quick_check",
                          r.integrity_check ? "" : ", integrity_check", r.foreign_key_check ? "" : ", foreign_key_check",
                          r.vacuum ? "" : ", the VACUUM of [vacuum] convert");
                bufprintf(cannot, sizeof(cannot),
                          "sqlvigil cannot run %s on it, and reports each as 'unsupported' with the reason%s", list + 2,
                          scheduled);
        }
        else
                bufprintf(cannot, sizeof(cannot), "sqlvigil's own work is not affected");
        if (*r.statements)
                bufprintf(others, sizeof(others), "; with SQLite %s, %s", ours, r.statements);
        log_event(LOG_WARNING, SQLVIGIL_MESSAGE_SQLITE_SKEW, "sqlite-skew", &f,
                  "%s uses what sqlvigil's SQLite %s lacks, features of a newer SQLite%s: %s. %s%s. This is no "
                  "damage; a sqlvigil built with the applications' SQLite, or a newer one, lifts it (found in %s "
                  "by statements prepared, never run)",
                  m->db_path, ours, written, r.culprits, cannot, others,
                  format_elapsed(took, sizeof(took), r.duration));
}

static int manager_open(Manager *m) {
        char error[1024];
        DbProbe probe;
        int r;

        /* SQLite follows a symbolic link and keeps its -wal and -shm
         * beside the file it names; sqlvigil's watch, fence and rescue work
         * by the configured path. The two would disagree, so the link is
         * refused, naming the file to configure. */
        {
                struct stat st;
                _cleanup_(freep) char *target = NULL;

                if (lstat(m->config->db_path, &st) == 0 && S_ISLNK(st.st_mode)) {
                        target = realpath(m->config->db_path, NULL);
                        return start_failed(EXIT_CONFIG,
                                            "%s is a symbolic link%s%s; set [database] path to the file itself "
                                            "(its -wal and -shm live beside it, not beside the link)",
                                            m->config->db_path, target ? " to " : " to nothing",
                                            target ? target : "");
                }
        }
        r = set_aside_stale(m);
        if (r != EXIT_CLEAN)
                return r;
        /* A sqlvigil killed while it saved a deleted database leaves a
         * partial copy under a temporary name: no copy at all, and no
         * database anyone should open. */
        r = files_remove_unfinished(m->db_path, error, sizeof(error));
        if (r > 0)
                log_notice("removed what a previous sqlvigil left unfinished: %s", error);
        r = db_open(m->config->db_path, m->config->create, &m->db, error, sizeof(error));
        if (r == DB_E_MISSING)
                return start_failed(EXIT_NOINPUT, "%s", error);
        if (r != 0)
                return start_failed(EXIT_FAILURE_OTHER, "%s", error);
        db_identity(m->db, &m->db_id.dev, &m->db_id.ino);

        r = db_apply_pragmas(m->db, m->config->pragmas, config_busy_timeout(m->config), &m->pragmas, error,
                             sizeof(error));
        if (r != 0)
                return start_failed(EXIT_FAILURE_OTHER, "%s: %s", m->config->db_path, error);
        log_pragmas(m, m->config);

        /* One read: until a connection has read, it holds no lock and has
         * opened neither the -wal nor the -shm (its checkpoints would do
         * nothing at all). Then keep duplicates of SQLite's own descriptors
         * of those files: the WAL index is read, and its locks watched,
         * through the very file SQLite uses, from the first moment, however
         * the database was created. */
        db_probe(m->db, &probe);
        if (probe.result != 0)
                return start_failed(EXIT_FAILURE_OTHER, "%s: %s", m->config->db_path, probe.error);
        check_compat(m);
        r = dbfiles_init(&m->files, m->db_path, m->db_id);
        if (r < 0)
                return start_failed(EXIT_FAILURE_OTHER, "%s", strerror(-r));
        r = dbfiles_attach(&m->files);
        if (r < 0)
                return start_failed(EXIT_FAILURE_OTHER,
                                    "cannot find SQLite's -wal and -shm of %s among this process's open files: %s",
                                    m->db_path, strerror(-r));
        /* The mark: which database these -wal and -shm belong to. Writing
         * it is also the first write probe: a read-only file system says
         * so here, before READY=1. */
        r = dbfiles_write_mark(&m->files, false);
        if (r < 0)
                return start_failed(EXIT_FAILURE_OTHER, "cannot write %s: %s%s", m->files.mark_path, strerror(-r),
                                    r == -EROFS ? " (the database's file system is read-only)" : "");
        return EXIT_CLEAN;
}

static void on_control_request(void *userdata, ControlClient *cl, const Request *req) {
        commands_handle(userdata, cl, req);
}

static void on_control_gone(void *userdata, ControlClient *cl) {
        commands_forget(userdata, cl);
}

static bool on_control_privileged(void *userdata, const ControlPeer *peer) {
        return commands_peer_privileged(userdata, peer);
}

int manager_start(Manager *m) {
        static const int signals[] = { SIGTERM, SIGINT, SIGHUP };
        char took[32], period[32], watchdog[32];
        LogFields f = { 0 };
        sigset_t mask;
        uint64_t wd = 0;
        Status s;
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

        r = monitor_new(&m->monitor, &(MonitorEnv){
                                             .event = m->event,
                                             .db_path = m->db_path,
                                             .wal_path = m->wal_path,
                                             .period = m->health_period,
                                             .userdata = m,
                                             .round_done = on_round_done,
                                     });
        if (r < 0)
                return start_failed(EXIT_FAILURE_OTHER, "cannot set up health checks: %s", strerror(-r));
        monitor_set_wal_index(m->monitor, m->files.shm_fd);

        /* The first health check, before READY=1: a database that is not
         * healthy now is not one we claim to supervise. It runs here, on this
         * thread; the database thread does not exist yet. */
        monitor_first_check(m->monitor, m->db);
        judge(m);
        if (m->health.state == HEALTH_FAILED)
                return start_failed(EXIT_FAILURE_OTHER, "not starting: health check failed: %s", m->health.reason);

        /* sd_event_add_signal() needs the signals blocked (in libsystemd 252
         * there is no SD_EVENT_SIGNAL_PROCMASK). The threads, created below,
         * start with every signal blocked. */
        sigemptyset(&mask);
        for (size_t i = 0; i < ELEMENTSOF(signals); i++)
                sigaddset(&mask, signals[i]);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return start_failed(EXIT_FAILURE_OTHER, "cannot block signals: %s", strerror(errno));
        /* Stop wins: SIGTERM and SIGINT come before SIGHUP (and before
         * anything else pending), so a stop and a reload that arrive
         * together stop without reloading first. sd-event dispatches the
         * pending source of the highest priority first. */
        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                sd_event_source *source = NULL;

                r = sd_event_add_signal(m->event, &source, signals[i], signals[i] == SIGHUP ? on_sighup : on_terminate,
                                        m);
                if (r >= 0 && signals[i] != SIGHUP)
                        r = sd_event_source_set_priority(source, SD_EVENT_PRIORITY_IMPORTANT);
                if (r >= 0)
                        r = sd_event_source_set_floating(source, true);
                sd_event_source_unref(source);
                if (r < 0)
                        return start_failed(EXIT_FAILURE_OTHER, "cannot watch signals: %s", strerror(-r));
        }

        r = worker_new(&m->db_worker, "sqlvigil-db", m->db, m->event);
        if (r >= 0)
                r = worker_new(&m->file_worker, "sqlvigil-files", NULL, m->event);
        if (r >= 0)
                r = worker_new(&m->backup_worker, "sqlvigil-backup", NULL, m->event);
        if (r < 0)
                return start_failed(EXIT_FAILURE_OTHER, "cannot start the worker threads: %s", strerror(-r));

        r = monitor_start(m->monitor, m->db_worker);
        if (r < 0)
                return start_failed(EXIT_FAILURE_OTHER, "cannot create timers: %s", strerror(-r));

        r = maintenance_new(&m->maintenance,
                            &(MaintenanceEnv){
                                    .event = m->event,
                                    .db_worker = m->db_worker,
                                    .file_worker = m->file_worker,
                                    .backup_worker = m->backup_worker,
                                    .db_path = m->db_path,
                                    .wal_path = m->wal_path,
                                    .pragmas = &m->pragmas,
                                    .userdata = m,
                                    .run_ended = on_run_ended,
                                    .facts_changed = on_facts_changed,
                                    .pragma_changed = on_pragma_changed,
                            },
                            m->config);
        if (r >= 0) {
                maintenance_set_check_unsupported(m->maintenance,
                                                  m->check_unsupported[0] ? m->check_unsupported : NULL);
                r = maintenance_start(m->maintenance, &m->files);
        }
        if (r < 0)
                return start_failed(EXIT_FAILURE_OTHER, "cannot set up maintenance: %s", strerror(-r));

        r = watch_new(&m->watch, m->event, m->db_path, on_watch, m);
        if (r < 0)
                log_warning("cannot watch %s with inotify: %s; displaced files are noticed at the next health "
                            "round instead",
                            m->files.dir, strerror(-r));
        r = sd_event_add_time(m->event, &m->fresh_timer, CLOCK_MONOTONIC, USEC_INFINITY, 50 * USEC_PER_MSEC,
                              on_fresh_timer, m);
        if (r >= 0) {
                (void)sd_event_source_set_description(m->fresh_timer, "fresh-look");
                r = sd_event_source_set_enabled(m->fresh_timer, SD_EVENT_OFF);
        }
        if (r < 0)
                return start_failed(EXIT_FAILURE_OTHER, "cannot create timers: %s", strerror(-r));

        {
                char error[512];
                bool explicit_path;
                _cleanup_(freep) char *path = control_socket_path(m->config, m->instance, &explicit_path);

                if (!path)
                        return start_failed(EXIT_FAILURE_OTHER, "out of memory");
                r = new_control(m, path, explicit_path, error, sizeof(error));
                if (r == CONTROL_E_DISABLED)
                        log_warning("no control socket: %s", error);
                else if (r < 0)
                        return start_failed(EXIT_FAILURE_OTHER, "%s", error);
        }

        manager_status(m, &s);
        status_line(&s, now_usec(CLOCK_REALTIME), m->status, sizeof(m->status));
        write_metrics(m, &s);
        log_notify_failure(notify_ready(&m->lifecycle, m->status), "READY=1");

        f = (LogFields){ 0 };
        log_field(&f, "SQLVIGIL_HEALTH", "%s", health_state_names[m->health.state]);
        log_field(&f, "SQLVIGIL_WATCHDOG_USEC", "%" PRIu64, m->watchdog_usec);
        log_field(&f, "SQLVIGIL_HEALTH_INTERVAL_USEC", "%" PRIu64, m->health_period);
        log_field(&f, "SQLVIGIL_WAL_BYTES", "%" PRIu64, s.files.wal_bytes);
        log_field(&f, "SQLVIGIL_PAGE_SIZE", "%" PRIi64, s.page_size);
        log_field(&f, "SQLVIGIL_PAGE_COUNT", "%" PRIi64, s.page_count);
        log_field(&f, "SQLVIGIL_FREELIST_COUNT", "%" PRIi64, s.freelist_count);
        log_field(&f, "SQLVIGIL_DURATION_USEC", "%" PRIu64, now_usec(CLOCK_MONOTONIC) - m->started_at);
        log_event(LOG_INFO, SQLVIGIL_MESSAGE_READY, "ready", &f,
                  "ready in %s: %s; health checks every %s%s%s; control socket %s", format_elapsed(took, sizeof(took),
                  now_usec(CLOCK_MONOTONIC) - m->started_at), m->status,
                  format_elapsed(period, sizeof(period), m->health_period),
                  m->watchdog_usec ? ", watchdog " : "",
                  m->watchdog_usec ? format_elapsed(watchdog, sizeof(watchdog), m->watchdog_usec) : "",
                  m->control ? control_path(m->control) : "none");
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
