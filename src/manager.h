/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The manager owns everything the running daemon has - the event loop, the
 * configuration, the connection and its worker thread, the health state - and
 * wires the events together: signals (stop, reload), the health timer and
 * watchdog, and finished jobs. It is where sqlvigil logs.
 */

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "db.h"
#include "health.h"
#include "maintenance.h"
#include "util.h"
#include "worker.h"

/* Exit codes, as the contract and sysexits.h have them. */
enum {
        EXIT_CLEAN = 0,
        EXIT_FAILURE_OTHER = 1,
        EXIT_USAGE = 64,   /* EX_USAGE */
        EXIT_NOINPUT = 66, /* EX_NOINPUT: database missing, create = no */
        EXIT_CONFIG = 78,  /* EX_CONFIG */
};

/* Health check costs kept for stats: the last this many. */
#define MANAGER_CHECK_HISTORY 1024

typedef void (*ReloadReply)(void *userdata, bool applied, const char *error);

typedef struct Control Control;

typedef struct Manager {
        sd_event *event;
        Config *config;
        char *config_path;      /* NULL when started with --database alone */
        char *db_override;      /* --database */
        bool create_override;   /* --create */

        Db *db;                 /* after start-up, used only on the worker thread */
        Worker *worker;
        Maintenance *maintenance; /* set before the control socket and the first metrics, which rely on it */
        Control *control;
        char *instance;         /* NAME: for the control socket and metrics */
        PragmaStatus pragmas[_PRAGMA_MAX]; /* the loop's copy of db->pragmas */
        int64_t page_size;

        /* Health rounds: a timer starts one, the worker's probe (or, if the
         * worker is busy, a deadline) ends it, and the result feeds STATUS=
         * and the watchdog. */
        usec_t watchdog_usec;   /* 0: no watchdog */
        usec_t health_period;
        sd_event_source *health_timer;
        sd_event_source *round_timer;
        bool round_open;
        bool probe_pending;
        HealthFiles files;
        DbProbe probe;          /* the latest; manager_start() takes the first */
        usec_t probe_at;        /* CLOCK_MONOTONIC of the latest probe */
        HealthLock lock;
        usec_t lock_busy_for;
        HealthResult health;
        usec_t health_since;    /* CLOCK_REALTIME of the last state change */
        char status[512];       /* last STATUS= sent */
        uint64_t checks;

        /* What health checks cost: the file-system part of the round plus
         * the probe's work, without lock waits. */
        usec_t round_files_usec;
        usec_t check_usec[MANAGER_CHECK_HISTORY];
        uint64_t check_count;
        usec_t last_check_usec;
        usec_t last_check_at;   /* CLOCK_REALTIME */
        char metrics_error[256]; /* the last failure to write metrics, said once */

        /* Life cycle. */
        usec_t started_at;      /* CLOCK_MONOTONIC */
        bool ready;
        bool stopping;
        bool tearing_down;
        bool reloading;
        bool reload_again;
        Config *pending_config; /* a reload waiting for its pragmas job */
        ReloadReply reload_reply; /* a control client waiting for the reload */
        void *reload_userdata;
        sd_event_source *extend_timer;
        usec_t stop_started;
        int exit_code;
} Manager;

typedef struct ManagerOptions {
        const char *config_path;
        const char *db_override;
        bool create_override;
} ManagerOptions;

/* Takes ownership of config when it succeeds; on failure the caller keeps it. */
int manager_new(Manager **ret, Config *config, const ManagerOptions *options);
Manager *manager_free(Manager *m);
static inline void manager_freep(Manager **m) {
        manager_free(*m);
}

/*
 * Opens the database, applies and verifies the pragmas, runs the first
 * health check and starts the worker, timers and signal handlers; then sends
 * READY=1. Returns an exit code: EXIT_CLEAN when the loop may run.
 */
int manager_start(Manager *m);

/* Runs the event loop until the daemon stops; returns the exit code. */
int manager_run(Manager *m);

/* Reloads the configuration for a control client; reply says how it went.
 * -EBUSY while a reload runs, -ESHUTDOWN while stopping. */
int manager_request_reload(Manager *m, ReloadReply reply, void *userdata);
void manager_forget_reload(Manager *m, void *userdata);

/* The longest wait for a lock at start-up, reload and for admin commands:
 * [pragmas] busy_timeout, or 0 when it is unset (SQLite's default). */
usec_t manager_busy_timeout(const Config *c);

/* Refreshes what others read about us: the metrics textfile, if configured.
 * Called after every health round and maintenance run. */
void manager_publish(Manager *m);

/* Judges health again from the facts at hand (a maintenance task found
 * corruption or starvation) and updates STATUS=; no watchdog ping. */
void manager_reevaluate(Manager *m);
