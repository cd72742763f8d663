/* SPDX-License-Identifier: MIT */
/*
 * sqlvigil - supervises one SQLite database for systemd.
 *
 * This file is the program's edge: it parses arguments, loads the
 * configuration, and hands over to the manager (manager.c), mapping every
 * outcome to the exit codes of the contract (docs/sqlvigil.8).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "config.h"
#include "log.h"
#include "manager.h"
#include "messages.h"
#include "paths.h"

static void help(void) {
        printf("Usage: sqlvigil [OPTIONS]\n"
               "\n"
               "Supervise one SQLite database for systemd: verified pragmas, readiness and\n"
               "watchdog pings tied to a real health check, unattended maintenance, and a\n"
               "TRUNCATE checkpoint on stop. Runs in the foreground.\n"
               "\n"
               "  -c, --config FILE     read the configuration from FILE\n"
               "  -d, --database PATH   supervise PATH; overrides [database] path, and without\n"
               "                        --config every other setting is the default\n"
               "      --create          create the database if it is missing (create = yes)\n"
               "      --check-config    validate the configuration, print it in full, and exit\n"
               "  -h, --help            show this help and exit\n"
               "      --version         show the version and exit\n"
               "\n"
               "Exit status: 0 clean stop, 1 failure, 64 bad arguments, 66 database missing\n"
               "(and create = no), 75 files displaced under the live database (saved; start\n"
               "again), 78 configuration error. See sqlvigil(8), sqlvigil.conf(5).\n");
}

typedef struct Args {
        const char *config;
        const char *database;
        bool create;
        bool check_config;
} Args;

enum {
        ARG_VERSION = 0x100,
        ARG_CREATE,
        ARG_CHECK_CONFIG,
};

/* Returns -1 to continue, or an exit code. */
static int parse_args(int argc, char *argv[], Args *a) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "database", required_argument, NULL, 'd' },
                { "create", no_argument, NULL, ARG_CREATE },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":c:d:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        a->config = optarg;
                        break;
                case 'd':
                        a->database = optarg;
                        break;
                case ARG_CREATE:
                        a->create = true;
                        break;
                case ARG_CHECK_CONFIG:
                        a->check_config = true;
                        break;
                case 'h':
                        help();
                        return EXIT_CLEAN;
                case ARG_VERSION:
                        printf("sqlvigil %s (SQLite %s)\n", SQLVIGIL_VERSION, sqlite3_libversion());
                        return EXIT_CLEAN;
                case ':':
                        fprintf(stderr, "sqlvigil: option '%s' needs an argument\n", argv[optind - 1]);
                        goto usage;
                default:
                        fprintf(stderr, "sqlvigil: unknown option '%s'\n", argv[optind - 1]);
                        goto usage;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "sqlvigil: unexpected argument '%s'\n", argv[optind]);
                goto usage;
        }
        if (a->config && !*a->config) {
                fprintf(stderr, "sqlvigil: --config needs a file name\n");
                goto usage;
        }
        if (a->database && !*a->database) {
                fprintf(stderr, "sqlvigil: --database needs a path\n");
                goto usage;
        }
        if (!a->config && !a->database && !a->check_config) {
                fprintf(stderr, "sqlvigil: no database to supervise: pass --config FILE or --database PATH\n");
                goto usage;
        }
        return -1;

usage:
        fprintf(stderr, "Try 'sqlvigil --help'.\n");
        return EXIT_USAGE;
}

static char *absolute_path(const char *path) {
        char cwd[4096];

        if (path[0] == '/')
                return strdup(path);
        if (!getcwd(cwd, sizeof(cwd)))
                return NULL;
        return strdup_printf("%s/%s", cwd, path);
}

/* One entry per error, each naming its own file, line and key, with the
 * same fields a rejected reload has. */
static void report_config_errors(const char *path, const ConfigErrors *errors) {
        for (size_t i = 0; i < errors->n; i++) {
                LogFields f = { 0 };

                log_field(&f, "SQLVIGIL_CONFIG", "%s", path);
                log_field(&f, "SQLVIGIL_ERRORS", "%zu", errors->n);
                log_field(&f, "SQLVIGIL_ERROR", "%s", errors->messages[i]);
                log_event(LOG_ERR, SQLVIGIL_MESSAGE_CONFIG_REJECTED, "config-rejected", &f, "%s",
                          errors->messages[i]);
        }
}

static int load_config(const Args *a, Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *db = NULL;
        ConfigErrors errors = { 0 };
        int r;

        if (a->config) {
                r = config_load_file(a->config, &c, &errors);
                if (r != 0) {
                        report_config_errors(a->config, &errors);
                        config_errors_clear(&errors);
                        if (r == -ENOMEM)
                                return EXIT_FAILURE_OTHER;
                        return EXIT_CONFIG;
                }
        } else {
                r = config_new_defaults(&c);
                if (r < 0) {
                        log_error("cannot set up the default configuration: %s", strerror(-r));
                        return EXIT_FAILURE_OTHER;
                }
        }

        if (a->database) {
                db = absolute_path(a->database);
                if (!db || config_set_db_path(c, db) < 0) {
                        log_error("cannot resolve %s: %s", a->database, strerror(errno ? errno : ENOMEM));
                        return EXIT_FAILURE_OTHER;
                }
        }
        if (a->create)
                c->create = true;
        if (!c->db_path && !(a->check_config && !a->config)) {
                if (a->config) {
                        ConfigErrors missing = { 0 };

                        if (config_errors_add(&missing, "no database in %s: set path in [database], or pass --database",
                                              a->config) < 0)
                                return EXIT_FAILURE_OTHER;
                        report_config_errors(a->config, &missing);
                        config_errors_clear(&missing);
                        return EXIT_CONFIG;
                }
                log_error("no database: pass --config FILE or --database PATH");
                return EXIT_USAGE;
        }

        /* A typo in an output path must not have sqlvigil unlink the
         * database to bind a socket, or rename metrics over it. */
        if (c->db_path) {
                ConfigErrors clash = { 0 };

                r = paths_check(c, a->config, &clash);
                if (r != 0) {
                        report_config_errors(a->config ? a->config : "the command line", &clash);
                        config_errors_clear(&clash);
                        return r == -ENOMEM ? EXIT_FAILURE_OTHER : EXIT_CONFIG;
                }
        }

        *ret = TAKE_PTR(c);
        return EXIT_CLEAN;
}

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        Config *config = NULL;
        Args args = { 0 };
        int r;

        log_setup();

        r = parse_args(argc, argv, &args);
        if (r >= 0)
                return r;
        /* A command for a terminal, like nginx -t: its lines need no time. */
        if (args.check_config)
                log_set_stderr_time(false);

        r = load_config(&args, &config);
        if (r != EXIT_CLEAN)
                return r;

        if (args.check_config) {
                ConfigErrors notes = { 0 };

                config_print(config, stdout);
                /* Valid, but probably not what was meant: said on stderr,
                 * and the exit status stays 0. */
                r = config_warnings(config, &notes);
                for (size_t i = 0; i < notes.n; i++)
                        fprintf(stderr, "sqlvigil: warning: %s\n", notes.messages[i]);
                config_errors_clear(&notes);
                config_free(config);
                if (r < 0) {
                        fprintf(stderr, "sqlvigil: %s\n", strerror(-r));
                        return EXIT_FAILURE_OTHER;
                }
                if (fflush(stdout) != 0 || ferror(stdout)) {
                        fprintf(stderr, "sqlvigil: cannot write the configuration: %s\n", strerror(errno));
                        return EXIT_FAILURE_OTHER;
                }
                return EXIT_CLEAN;
        }

        /* Clients of the control socket may hang up while we write. */
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
                log_error("cannot ignore SIGPIPE: %s", strerror(errno));
                config_free(config);
                return EXIT_FAILURE_OTHER;
        }

        r = manager_new(&m, config, &(ManagerOptions){
                                            .config_path = args.config,
                                            .db_override = config->db_path && args.database ? config->db_path : NULL,
                                            .create_override = args.create,
                                    });
        if (r < 0) {
                log_error("cannot set up: %s", strerror(-r));
                config_free(config);
                return EXIT_FAILURE_OTHER;
        }

        r = manager_start(m);
        if (r == EXIT_CLEAN)
                r = manager_run(m);
        /* Every exit path tells systemd we are going, with why (once: the
         * stop itself may have said so already). */
        manager_say_stopping(m, r == EXIT_CLEAN ? "stopped" : "failed to start; see the journal");
        return r;
}
