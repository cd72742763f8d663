/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The configuration: an INI file read with inih, strictly validated against
 * one table of keys (config.c), which is also what --check-config prints and
 * what the defaults come from. Durations are stored in microseconds, sizes in
 * bytes.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "pragmas.h"
#include "util.h"

typedef enum CheckpointMode {
        /* Same order and values as SQLITE_CHECKPOINT_*. */
        CHECKPOINT_PASSIVE,
        CHECKPOINT_FULL,
        CHECKPOINT_RESTART,
        CHECKPOINT_TRUNCATE,
        _CHECKPOINT_MODE_MAX,
} CheckpointMode;

typedef enum VerifyMode {
        VERIFY_INTEGRITY,
        VERIFY_QUICK,
        _VERIFY_MODE_MAX,
} VerifyMode;

typedef enum AnalyzeMode {
        ANALYZE_MODE_OPTIMIZE,
        ANALYZE_MODE_ANALYZE,
        _ANALYZE_MODE_MAX,
} AnalyzeMode;

extern const char *const checkpoint_mode_names[_CHECKPOINT_MODE_MAX + 1];
extern const char *const analyze_mode_names[_ANALYZE_MODE_MAX + 1];
extern const char *const verify_mode_names[_VERIFY_MODE_MAX + 1];

typedef struct PragmaRequest {
        bool set;
        int64_t value;
        unsigned line; /* where the file set it, 0: a default */
} PragmaRequest;

typedef struct Config {
        char *source; /* the file it came from, NULL for built-in defaults */

        /* [database] */
        char *db_path;
        bool create;

        /* [pragmas] */
        PragmaRequest pragmas[_PRAGMA_MAX];

        /* [health] */
        usec_t health_interval; /* 0: half the watchdog period, or 5s without one */
        uint64_t max_wal_size;
        uint64_t min_free_disk;
        usec_t lock_timeout;
        usec_t quick_check_interval; /* 0: never */
        bool foreign_key_check;      /* with every check */

        /* [checkpoint] */
        usec_t checkpoint_interval; /* 0: only on min_wal_pages */
        uint64_t min_wal_pages;
        uint64_t truncate_wal_size; /* 0: never escalate to TRUNCATE */
        CheckpointMode stop_mode;
        usec_t stop_timeout;

        /* [vacuum] */
        usec_t vacuum_interval; /* 0: never */
        uint64_t min_free_pages;
        double free_fraction;
        usec_t step_budget;
        bool convert;

        /* [analyze] */
        usec_t analyze_interval; /* 0: never */
        AnalyzeMode analyze_mode;
        uint64_t analysis_limit;

        /* [control] */
        char *control_socket; /* NULL: derived from the instance name */
        char *admin_group;    /* NULL: none */
        gid_t admin_gid;      /* admin_group's, looked up when the file was read */

        /* [metrics] */
        char *metrics_textfile; /* NULL: off */

        /* [backup] */
        char *backup_directory; /* NULL: no scheduled backups */
        usec_t backup_interval;
        uint64_t keep_last, keep_daily, keep_weekly, keep_monthly;
        VerifyMode backup_verify;
        usec_t backup_max_age;  /* 0: twice the interval */
} Config;

enum {
        CONFIG_E_INVALID = 1, /* the file has errors; they are in the error list */
};

/* Errors found in one file, each a complete sentence naming file, line and key. */
typedef struct ConfigErrors {
        char **messages;
        size_t n;
} ConfigErrors;

void config_errors_clear(ConfigErrors *errors);
int config_errors_add(ConfigErrors *errors, const char *fmt, ...) _printf_(2, 3);

/* A configuration holding every default. db_path may be NULL. */
int config_new_defaults(Config **ret);

/*
 * Reads and validates a file. On CONFIG_E_INVALID, errors holds every problem
 * found; on a negative errno (the file cannot be read) errors holds one
 * message naming the file and the cause. Both are configuration errors to the
 * caller (exit 78).
 */
int config_load_file(const char *path, Config **ret, ConfigErrors *errors);

/* The same for text in memory; name is used in messages as the file name. */
int config_load_string(const char *text, const char *name, Config **ret, ConfigErrors *errors);

Config *config_free(Config *c);
static inline void config_freep(Config **c) {
        config_free(*c);
}

/*
 * What a valid configuration sets that probably does not do what its writer
 * meant: a pragma that only the applications can set (foreign_keys), an
 * mmap_size that only sqlvigil's connection would use. Each is a complete
 * sentence naming the file, the line and the key, added to notes; the
 * configuration stays valid (they are warnings, not errors). 0 or -ENOMEM.
 */
int config_warnings(const Config *c, ConfigErrors *notes);

/* The longest wait for a lock at start-up, reload and for admin commands:
 * [pragmas] busy_timeout, or 0 when it is unset (SQLite's default). */
usec_t config_busy_timeout(const Config *c);

/* Replaces db_path (for --database). */
int config_set_db_path(Config *c, const char *path);

/* Writes the complete effective configuration in the file's own syntax. */
void config_print(const Config *c, FILE *f);

/* The instance name: the config file's basename without ".conf", or the
 * database's basename without its extension. Returned string is allocated. */
char *config_instance_name(const Config *c);

/* The list of (section, key) pairs, for documentation checks and the fuzzer. */
size_t config_n_keys(void);
void config_key_name(size_t i, const char **ret_section, const char **ret_key);

/* Key i's value in the file's own syntax; false when the key is unset. */
bool config_key_value(const Config *c, size_t i, char *buf, size_t size);
