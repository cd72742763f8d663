/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The manager owns everything the running daemon has - the event loop, the
 * configuration, the connection and the threads, the health rounds
 * (monitor.c), maintenance, the control socket - and wires them together:
 * signals (stop, reload), judging health and telling systemd (STATUS=, the
 * watchdog, the life cycle of lifecycle.h), the status snapshot every
 * consumer reads, and the final checkpoint. It is where sqlvigil logs what
 * happens to the daemon as a whole. Loop thread only.
 */

#include <stdbool.h>

#include "config.h"
#include "status.h"

/* Exit codes, as the contract and sysexits.h have them. */
enum {
        EXIT_CLEAN = 0,
        EXIT_FAILURE_OTHER = 1,
        EXIT_USAGE = 64,   /* EX_USAGE */
        EXIT_NOINPUT = 66, /* EX_NOINPUT: database missing, create = no */
        EXIT_RESCUED = 75, /* EX_TEMPFAIL: the files were displaced; start again on what the paths name now */
        EXIT_CONFIG = 78,  /* EX_CONFIG */
};

typedef struct Manager Manager;

typedef struct ManagerOptions {
        const char *config_path; /* NULL: started with --database alone */
        const char *db_override; /* --database */
        bool create_override;    /* --create */
} ManagerOptions;

/* Takes ownership of config when it succeeds; on failure the caller keeps
 * it. Returns 0 or a negative errno. */
int manager_new(Manager **ret, Config *config, const ManagerOptions *options);
Manager *manager_free(Manager *m);
static inline void manager_freep(Manager **m) {
        manager_free(*m);
}

/*
 * Opens the database, applies and verifies the pragmas, runs the first
 * health check and starts the threads, timers and signal handlers; then
 * sends READY=1. Returns an exit code: EXIT_CLEAN when the loop may run.
 */
int manager_start(Manager *m);

/* Runs the event loop until the daemon stops; returns the exit code. */
int manager_run(Manager *m);

/* Tells systemd the daemon is going (STOPPING=1 with status), unless it
 * already did: every exit path calls this. */
void manager_say_stopping(Manager *m, const char *status);

/* ---- For the control socket's commands (commands.c) ------------------------ */

/* The status snapshot, with the file facts read now. */
void manager_status(Manager *m, Status *ret);
const Config *manager_config(const Manager *m);
Maintenance *manager_maintenance(Manager *m);
bool manager_stopping(const Manager *m);

/* How a reload a control client asked for ended. */
typedef enum ReloadResult {
        RELOAD_APPLIED,   /* the new configuration is in force */
        RELOAD_REJECTED,  /* it has errors: the running one stays in force */
        RELOAD_ABANDONED, /* sqlvigil began to stop meanwhile: stop wins */
} ReloadResult;

typedef struct ReloadOutcome {
        ReloadResult result;
        const char *error;          /* rejected, abandoned: why, one line */
        const char *control_socket; /* applied: where the control socket moved, NULL if it did not */
        const char *restart_needed; /* applied, but this part takes a restart (the socket could not move) */
} ReloadOutcome;

typedef void (*ReloadReply)(void *userdata, const ReloadOutcome *outcome);

enum {
        MANAGER_E_RELOADING = 1, /* a reload is in progress */
        MANAGER_E_STOPPING,      /* sqlvigil is stopping */
};

/* Reloads the configuration for a control client; reply says how it went.
 * 0, MANAGER_E_RELOADING or MANAGER_E_STOPPING. */
int manager_request_reload(Manager *m, ReloadReply reply, void *userdata);
void manager_forget_reload(Manager *m, void *userdata);
