/* SPDX-License-Identifier: MIT */
/*
 * Configuration loading: every malformed input gets one exact message naming
 * the file, the line and the key; good input gets the values it says.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "test.h"

static const struct {
        const char *text;
        const char *error;
} malformed[] = {
        /* 1-5: sections and keys */
        { "[database]\npath = /x.db\n[chekpoint]\ninterval = 1min\n",
          "unknown section [chekpoint] at x.conf:3; did you mean [checkpoint]?" },
        { "[database]\npath = /x.db\n[foo]\n", "unknown section [foo] at x.conf:3" },
        { "[checkpoint]\nintervall = 1min\n",
          "unknown key 'intervall' in [checkpoint] at x.conf:2; did you mean 'interval'?" },
        { "[health]\nfrobnicate = yes\n", "unknown key 'frobnicate' in [health] at x.conf:2" },
        { "[checkpoint]\nlock_timeout = 5s\n",
          "unknown key 'lock_timeout' in [checkpoint] at x.conf:2; did you mean 'lock_timeout' in [health]?" },
        /* 6-10: structure */
        { "path = /x.db\n", "key 'path' at x.conf:1 is outside any section; did you mean [database]?" },
        { "colour = red\n", "key 'colour' at x.conf:1 is outside any section" },
        { "[database]\npath = /x.db\npath = /y.db\n",
          "duplicate key 'path' in [database] at x.conf:3 (first set at line 2)" },
        { "[database]\njust some words\n",
          "syntax error at x.conf:2: expected '[section]', 'key = value' or a comment" },
        { "[database\npath = /x.db\n", "syntax error at x.conf:1: section header without closing ']'" },
        /* 11-15: more structure */
        { "[database] extra\n", "syntax error at x.conf:1: unexpected text after [database]" },
        { "[database]\n= /x.db\n", "syntax error at x.conf:2: missing key name before '='" },
        { "[Database]\n", "unknown section [Database] at x.conf:1; did you mean [database]?" },
        { "[pragmas]\nbusy_timout = 100\n",
          "unknown key 'busy_timout' in [pragmas] at x.conf:2; did you mean 'busy_timeout'?" },
        { "[health]\nInterval = 5s\n", "unknown key 'Interval' in [health] at x.conf:2; did you mean 'interval'?" },
        /* 16-20: durations */
        { "[checkpoint]\ninterval = 5 minutes\n",
          "invalid value '5 minutes' for 'interval' in [checkpoint] at x.conf:2: expected a duration such as 250ms, "
          "30s, 5min, 2h or 1d" },
        { "[checkpoint]\ninterval = -1s\n",
          "invalid value '-1s' for 'interval' in [checkpoint] at x.conf:2: expected a duration such as 250ms, 30s, "
          "5min, 2h or 1d" },
        { "[health]\nlock_timeout = 10ms\n",
          "value '10ms' for 'lock_timeout' in [health] at x.conf:2 is out of range: must be between 100ms and 7d" },
        { "[vacuum]\nstep_budget = 0\n",
          "value '0' for 'step_budget' in [vacuum] at x.conf:2 is out of range: must be between 1ms and 10s" },
        { "[health]\ninterval =\n",
          "missing value for 'interval' in [health] at x.conf:2: expected a duration such as 250ms, 30s, 5min, 2h "
          "or 1d" },
        /* 21-27: sizes, numbers, fractions */
        { "[health]\nmax_wal_size = 64MB\n",
          "invalid value '64MB' for 'max_wal_size' in [health] at x.conf:2: expected a size such as 4096, 64K, 16M "
          "or 1G" },
        { "[health]\nmax_wal_size = 17179869184G\n",
          "value '17179869184G' for 'max_wal_size' in [health] at x.conf:2 is out of range: a size is at most "
          "16777215T (just under 2^64 bytes)" },
        { "[pragmas]\nbusy_timeout = 4294967296\n",
          "value '4294967296' for 'busy_timeout' in [pragmas] at x.conf:2 is out of range: expected a number of "
          "milliseconds from 0 to 2147483647" },
        { "[health]\nmin_free_disk = lots\n",
          "invalid value 'lots' for 'min_free_disk' in [health] at x.conf:2: expected a size such as 4096, 64K, 16M "
          "or 1G" },
        { "[checkpoint]\nmin_wal_pages = 0\n",
          "value '0' for 'min_wal_pages' in [checkpoint] at x.conf:2 is out of range: expected a whole number "
          "between 1 and 4294967295" },
        { "[checkpoint]\nmin_wal_pages = 1e3\n",
          "invalid value '1e3' for 'min_wal_pages' in [checkpoint] at x.conf:2: expected a whole number between 1 "
          "and 4294967295" },
        { "[vacuum]\nfree_fraction = 1.5\n",
          "value '1.5' for 'free_fraction' in [vacuum] at x.conf:2 is out of range: expected a fraction between 0 "
          "and 1, such as 0.05" },
        /* 28-32: booleans and enums */
        { "[vacuum]\nfree_fraction = 5%\n",
          "invalid value '5%' for 'free_fraction' in [vacuum] at x.conf:2: expected a fraction between 0 and 1, such "
          "as 0.05" },
        { "[database]\ncreate = maybe\n",
          "invalid value 'maybe' for 'create' in [database] at x.conf:2: expected a boolean (yes/no, true/false, "
          "on/off, 1/0)" },
        { "[vacuum]\nconvert = y\n",
          "invalid value 'y' for 'convert' in [vacuum] at x.conf:2: expected a boolean (yes/no, true/false, on/off, "
          "1/0)" },
        { "[checkpoint]\nstop_mode = truncat\n",
          "invalid value 'truncat' for 'stop_mode' in [checkpoint] at x.conf:2: expected one of: passive, full, "
          "restart, truncate; did you mean 'truncate'?" },
        { "[analyze]\nmode = vacuum\n",
          "invalid value 'vacuum' for 'mode' in [analyze] at x.conf:2: expected one of: optimize, analyze" },
        /* 33-37: pragmas */
        { "[pragmas]\njournal_mode = delete\n",
          "invalid value 'delete' for 'journal_mode' in [pragmas] at x.conf:2: expected wal (sqlvigil supervises "
          "databases in WAL mode only)" },
        { "[pragmas]\nsynchronous = sometimes\n",
          "invalid value 'sometimes' for 'synchronous' in [pragmas] at x.conf:2: expected one of: off, normal, full, "
          "extra" },
        { "[pragmas]\npage_size = 3000\n",
          "value '3000' for 'page_size' in [pragmas] at x.conf:2 is out of range: expected a power of two between "
          "512 and 65536" },
        { "[pragmas]\nbusy_timeout = 5s\n",
          "invalid value '5s' for 'busy_timeout' in [pragmas] at x.conf:2: expected a number of milliseconds from 0 "
          "to 2147483647" },
        { "[pragmas]\nauto_vacuum = incremetal\n",
          "invalid value 'incremetal' for 'auto_vacuum' in [pragmas] at x.conf:2: expected one of: none, full, "
          "incremental" },
        /* 38-42: paths, groups, limits */
        { "[database]\npath = relative/x.db\n",
          "invalid value 'relative/x.db' for 'path' in [database] at x.conf:2: expected an absolute path" },
        { "[control]\nadmin_group = no-such-group-sqlvigil\n",
          "invalid value 'no-such-group-sqlvigil' for 'admin_group' in [control] at x.conf:2: no such group" },
        { "[pragmas]\nforeign_keys = sure\n",
          "invalid value 'sure' for 'foreign_keys' in [pragmas] at x.conf:2: expected a boolean (yes/no, "
          "true/false, on/off, 1/0)" },
        { "[pragmas]\njournal_mode =\n",
          "missing value for 'journal_mode' in [pragmas] at x.conf:2: expected wal (sqlvigil supervises databases "
          "in WAL mode only)" },
        { "[analyze]\nanalysis_limit = 100000\n",
          "value '100000' for 'analysis_limit' in [analyze] at x.conf:2 is out of range: expected a whole number "
          "between 0 and 65535" },
        /* 43-45: values on later lines after comments and blank lines */
        { "; comment\n\n# another\n[health]\n\n   quick_check_interval = often ; inline comment\n",
          "invalid value 'often' for 'quick_check_interval' in [health] at x.conf:6: expected a duration such as "
          "250ms, 30s, 5min, 2h or 1d" },
        { "[pragmas]\ncache_size = -10000x\n",
          "invalid value '-10000x' for 'cache_size' in [pragmas] at x.conf:2: expected a number of pages, or of KiB "
          "when negative (-10000)" },
        { "[pragmas]\njournal_size_limit = -2\n",
          "invalid value '-2' for 'journal_size_limit' in [pragmas] at x.conf:2: expected a size such as 64M, or -1 "
          "for no limit" },
        /* 46-: values that are not what they look like (sqlvigil.conf(5), VALUES) */
        { "[database]\npath = /var/lib/app/app.db # main database\ncreate = yes\n",
          "invalid value '/var/lib/app/app.db # main database' for 'path' in [database] at x.conf:2: '#' does not "
          "start a comment here; only ';' after a space or tab starts an inline comment" },
        { "[control]\nadmin_group = # none\n",
          "invalid value '# none' for 'admin_group' in [control] at x.conf:2: '#' does not start a comment here; "
          "only ';' after a space or tab starts an inline comment" },
        { "[pragmas]\ncache_size = -10000 # 40M\n",
          "invalid value '-10000 # 40M' for 'cache_size' in [pragmas] at x.conf:2: '#' does not start a comment "
          "here; only ';' after a space or tab starts an inline comment" },
        { "[vacuum]\nconvert = yes\t#\n",
          "invalid value 'yes\\t#' for 'convert' in [vacuum] at x.conf:2: '#' does not start a comment here; only "
          "';' after a space or tab starts an inline comment" },
        { "[health]\nmax_wal_size = 64M #limit ; the real comment\n",
          "invalid value '64M #limit' for 'max_wal_size' in [health] at x.conf:2: '#' does not start a comment "
          "here; only ';' after a space or tab starts an inline comment" },
        { "[health]\ninterval = 30s\xc2\xa0\n",
          "invalid value '30s<U+00A0>' for 'interval' in [health] at x.conf:2: it ends with a no-break space "
          "(U+00A0), which looks like a blank or like nothing at all but is part of the value; delete it (only ';' "
          "after a space or tab starts an inline comment)" },
        { "[database]\npath = \xc2\xa0/x.db\n",
          "invalid value '<U+00A0>/x.db' for 'path' in [database] at x.conf:2: it starts with a no-break space "
          "(U+00A0), which looks like a blank or like nothing at all but is part of the value; delete it (only ';' "
          "after a space or tab starts an inline comment)" },
        { "[database]\npath = /x.db\xc2\xa0; main database\n",
          "invalid value '/x.db<U+00A0>; main database' for 'path' in [database] at x.conf:2: it holds a no-break "
          "space (U+00A0), which looks like a blank or like nothing at all but is part of the value; delete it "
          "(only ';' after a space or tab starts an inline comment)" },
        { "[metrics]\ntextfile = /var/lib/node/x\xe2\x80\x8b.prom\n",
          "invalid value '/var/lib/node/x<U+200B>.prom' for 'textfile' in [metrics] at x.conf:2: it holds a "
          "zero-width space (U+200B), which looks like a blank or like nothing at all but is part of the value; "
          "delete it (only ';' after a space or tab starts an inline comment)" },
        { "[checkpoint]\ninterval = 1min\xe2\x80\x83\n",
          "invalid value '1min<U+2003>' for 'interval' in [checkpoint] at x.conf:2: it ends with a Unicode space "
          "(U+2003), which looks like a blank or like nothing at all but is part of the value; delete it (only ';' "
          "after a space or tab starts an inline comment)" },
        { "[database]\ncreate = yes\xef\xbb\xbf\n",
          "invalid value 'yes<U+FEFF>' for 'create' in [database] at x.conf:2: it ends with a byte order mark "
          "(U+FEFF), which looks like a blank or like nothing at all but is part of the value; delete it (only ';' "
          "after a space or tab starts an inline comment)" },
        { "[checkpoint]\nstop_mode = truncate\x1b[0m\n",
          "invalid value 'truncate\\x1b[0m' for 'stop_mode' in [checkpoint] at x.conf:2: it holds a control "
          "character (U+001B); delete it" },
        { "[database]\npath = /srv/a\rb.db\n",
          "invalid value '/srv/a\\x0db.db' for 'path' in [database] at x.conf:2: it holds a control character "
          "(U+000D); delete it" },
        { "[database]\npath = /srv/my\tdata/x.db\n",
          "invalid value '/srv/my\\tdata/x.db' for 'path' in [database] at x.conf:2: it holds a tab, which looks "
          "like spaces; a path or name may not hold one" },
        { "[database]\npath = /srv/caf\xe9/x.db\n",
          "invalid value '/srv/caf\\xe9/x.db' for 'path' in [database] at x.conf:2: it holds the byte \\xe9, which "
          "is not UTF-8; sqlvigil reads the file as UTF-8 text (for a path that is not UTF-8, use a symbolic link)" },
        { "[database]\npath = \"/var/lib/app/app.db\"\n",
          "invalid value '\"/var/lib/app/app.db\"' for 'path' in [database] at x.conf:2: quotes are not removed; "
          "write the value without them" },
        { "[analyze]\nmode = 'analyze'\n",
          "invalid value ''analyze'' for 'mode' in [analyze] at x.conf:2: quotes are not removed; write the value "
          "without them" },
        { "[database]\npath\xc2\xa0= /x.db\n",
          "unknown key 'path<U+00A0>' in [database] at x.conf:2; did you mean 'path'?" },
};

static void test_malformed(void) {
        for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
                ConfigErrors errors = { 0 };
                Config *c = NULL;
                int r;

                r = config_load_string(malformed[i].text, "x.conf", &c, &errors);
                CHECK_INT(r, CONFIG_E_INVALID);
                CHECK(c == NULL);
                CHECK_INT(errors.n, 1);
                if (errors.n >= 1)
                        CHECK_STR(errors.messages[0], malformed[i].error);
                if (errors.n != 1) {
                        fprintf(stderr, "  input %zu:\n%s  gave:\n", i + 1, malformed[i].text);
                        for (size_t j = 0; j < errors.n; j++)
                                fprintf(stderr, "    %s\n", errors.messages[j]);
                }
                config_errors_clear(&errors);
        }
        fprintf(stderr, "test-config: %zu malformed inputs\n", sizeof(malformed) / sizeof(malformed[0]));
}

static void test_many_errors(void) {
        ConfigErrors errors = { 0 };
        Config *c = NULL;

        /* Every problem is reported, in file order, not only the first. */
        CHECK_INT(config_load_string("[health]\ninterval = x\n[nope]\nkey = 1\n[vacuum]\nconvert = 2\n", "y.conf", &c,
                                     &errors),
                  CONFIG_E_INVALID);
        CHECK_INT(errors.n, 3);
        if (errors.n == 3) {
                CHECK(strstr(errors.messages[0], "y.conf:2") != NULL);
                CHECK_STR(errors.messages[1], "unknown section [nope] at y.conf:3");
                CHECK(strstr(errors.messages[2], "y.conf:6") != NULL);
        }
        config_errors_clear(&errors);
}

static void test_long_line(void) {
        ConfigErrors errors = { 0 };
        Config *c = NULL;
        char text[1200];

        memset(text, 0, sizeof(text));
        strcpy(text, "[database]\npath = /");
        memset(text + strlen(text), 'a', 1000);
        strcat(text, "\n");
        CHECK_INT(config_load_string(text, "x.conf", &c, &errors), CONFIG_E_INVALID);
        CHECK_INT(errors.n, 1);
        if (errors.n == 1)
                CHECK(strncmp(errors.messages[0], "line too long at x.conf:2", 25) == 0);
        config_errors_clear(&errors);

        /* A NUL byte in the middle of a line. */
        {
                static const char nul[] = "[database]\ncreate = y\0es\n";
                char path[] = "/tmp/sqlvigil-test-config-XXXXXX";
                char expected[128];
                int fd = mkstemp(path);

                CHECK(fd >= 0);
                if (fd < 0)
                        return;
                CHECK_INT(write(fd, nul, sizeof(nul) - 1), (long long)(sizeof(nul) - 1));
                close(fd);
                CHECK_INT(config_load_file(path, &c, &errors), CONFIG_E_INVALID);
                CHECK_INT(errors.n, 1);
                snprintf(expected, sizeof(expected), "invalid character (NUL byte) at %s:2", path);
                if (errors.n == 1)
                        CHECK_STR(errors.messages[0], expected);
                config_errors_clear(&errors);
                unlink(path);
        }
}

static void test_missing_file(void) {
        ConfigErrors errors = { 0 };
        Config *c = NULL;

        CHECK_INT(config_load_file("/nonexistent/sqlvigil.conf", &c, &errors), -ENOENT);
        CHECK_INT(errors.n, 1);
        if (errors.n == 1)
                CHECK_STR(errors.messages[0],
                          "cannot open configuration file /nonexistent/sqlvigil.conf: No such file or directory");
        config_errors_clear(&errors);
}

static void test_good(void) {
        static const char text[] = "\xEF\xBB\xBF; a complete file\n"
                                   "[database]\n"
                                   "path = /var/lib/wecare/wecare.db\n"
                                   "create = yes\n"
                                   "[pragmas]\n"
                                   "journal_mode = WAL\n"
                                   "busy_timeout = 5000\n"
                                   "cache_size = -10000\n"
                                   "synchronous = normal\n"
                                   "mmap_size = 30000000\n"
                                   "temp_store = memory\n"
                                   "page_size = 4096\n"
                                   "auto_vacuum = incremental\n"
                                   "foreign_keys = on\n"
                                   "[ health ]\n"
                                   "interval = 5s\n"
                                   "max_wal_size = 64M\n"
                                   "lock_timeout = 1min\n"
                                   "quick_check_interval = 0\n"
                                   "[checkpoint]\n"
                                   "interval = 1min ; comment\n"
                                   "min_wal_pages = 500\n"
                                   "stop_mode = restart\n"
                                   "stop_timeout = 1h\n"
                                   "[vacuum]\n"
                                   "free_fraction = 0.25\n"
                                   "step_budget = 5ms\n"
                                   "[analyze]\n"
                                   "mode = analyze\n"
                                   "[control]\n"
                                   "socket = /run/x.sock\n"
                                   "admin_group = root\n"
                                   "[metrics]\n"
                                   "textfile = /var/lib/node/x.prom\n";
        ConfigErrors errors = { 0 };
        Config *c = NULL;

        CHECK_INT(config_load_string(text, "good.conf", &c, &errors), 0);
        CHECK_INT(errors.n, 0);
        if (!c)
                return;
        CHECK_STR(c->db_path, "/var/lib/wecare/wecare.db");
        CHECK(c->create);
        CHECK(c->pragmas[PRAGMA_JOURNAL_MODE].set);
        CHECK_INT(c->pragmas[PRAGMA_BUSY_TIMEOUT].value, 5000);
        CHECK_INT(c->pragmas[PRAGMA_CACHE_SIZE].value, -10000);
        CHECK_INT(c->pragmas[PRAGMA_SYNCHRONOUS].value, 1);
        CHECK_INT(c->pragmas[PRAGMA_MMAP_SIZE].value, 30000000);
        CHECK_INT(c->pragmas[PRAGMA_TEMP_STORE].value, 2);
        CHECK_INT(c->pragmas[PRAGMA_AUTO_VACUUM].value, 2);
        CHECK_INT(c->pragmas[PRAGMA_FOREIGN_KEYS].value, 1);
        CHECK(!c->pragmas[PRAGMA_JOURNAL_SIZE_LIMIT].set);
        CHECK_INT(c->health_interval, 5 * USEC_PER_SEC);
        CHECK_INT(c->lock_timeout, USEC_PER_MINUTE);
        CHECK_INT(c->quick_check_interval, 0);
        CHECK_INT(c->checkpoint_interval, USEC_PER_MINUTE);
        CHECK_INT(c->min_wal_pages, 500);
        CHECK_INT(c->stop_mode, CHECKPOINT_RESTART);
        CHECK_INT(c->stop_timeout, USEC_PER_HOUR);
        CHECK(c->free_fraction == 0.25);
        CHECK_INT(c->step_budget, 5 * USEC_PER_MSEC);
        CHECK_INT(c->analyze_mode, ANALYZE_MODE_ANALYZE);
        CHECK_STR(c->control_socket, "/run/x.sock");
        CHECK_STR(c->admin_group, "root");
        CHECK_STR(c->metrics_textfile, "/var/lib/node/x.prom");
        /* Untouched keys keep their defaults. */
        CHECK_INT(c->min_free_disk, 64ULL << 20);
        CHECK_INT(c->truncate_wal_size, 256ULL << 20);
        CHECK_INT(c->vacuum_interval, 10 * USEC_PER_MINUTE);
        CHECK_INT(c->analysis_limit, 1000);
        config_free(c);
}

/* What the value rules leave alone: '#' inside a word, ';' without a blank
 * before it, spaces inside a path, tabs between a duration's parts, and
 * characters beyond ASCII that can be seen. */
static void test_values_accepted(void) {
        static const char text[] = "[database]\n"
                                   "path = /srv/app#2/caf\xc3\xa9 files/app#2.db;v2 ; the comment\n"
                                   "[checkpoint]\n"
                                   "interval = 1h\t30min\t; a tab before the comment\n"
                                   "[metrics]\n"
                                   "textfile = /var/lib/node/\xe6\x95\xb0.prom\n";
        ConfigErrors errors = { 0 };
        Config *c = NULL;

        CHECK_INT(config_load_string(text, "ok.conf", &c, &errors), 0);
        for (size_t i = 0; i < errors.n; i++)
                fprintf(stderr, "  %s\n", errors.messages[i]);
        if (c) {
                CHECK_STR(c->db_path, "/srv/app#2/caf\xc3\xa9 files/app#2.db;v2");
                CHECK_INT(c->checkpoint_interval, 90 * USEC_PER_MINUTE);
                CHECK_STR(c->metrics_textfile, "/var/lib/node/\xe6\x95\xb0.prom");
        }
        config_errors_clear(&errors);
        config_free(c);
}

static void test_defaults(void) {
        Config *c = NULL;

        CHECK_INT(config_new_defaults(&c), 0);
        if (!c)
                return;
        CHECK(c->db_path == NULL);
        CHECK(!c->create);
        CHECK(c->pragmas[PRAGMA_JOURNAL_MODE].set);
        CHECK_INT(c->pragmas[PRAGMA_BUSY_TIMEOUT].value, 5000);
        /* sqlvigil's own connection: no fsync per vacuum step, no inline checkpoints. */
        CHECK_INT(c->pragmas[PRAGMA_SYNCHRONOUS].value, 1);
        CHECK(c->pragmas[PRAGMA_WAL_AUTOCHECKPOINT].set);
        CHECK_INT(c->pragmas[PRAGMA_WAL_AUTOCHECKPOINT].value, 0);
        CHECK(c->pragmas[PRAGMA_CACHE_SIZE].set);
        CHECK_INT(c->pragmas[PRAGMA_CACHE_SIZE].value, -8192);
        CHECK_INT(c->health_interval, 0);
        CHECK_INT(c->max_wal_size, 64ULL << 20);
        CHECK_INT(c->lock_timeout, 30 * USEC_PER_SEC);
        CHECK_INT(c->quick_check_interval, 6 * USEC_PER_HOUR);
        CHECK_INT(c->checkpoint_interval, USEC_PER_MINUTE);
        CHECK_INT(c->min_wal_pages, 1000);
        CHECK_INT(c->stop_mode, CHECKPOINT_TRUNCATE);
        CHECK_INT(c->stop_timeout, 20 * USEC_PER_SEC);
        CHECK_INT(c->min_free_pages, 256);
        CHECK(c->free_fraction == 0.05);
        CHECK_INT(c->step_budget, 20 * USEC_PER_MSEC);
        CHECK_INT(c->analyze_interval, USEC_PER_DAY);
        CHECK_INT(c->analyze_mode, ANALYZE_MODE_OPTIMIZE);
        CHECK(c->control_socket == NULL);
        CHECK(c->metrics_textfile == NULL);
        config_free(c);
}

/* --check-config output is itself a valid configuration with the same values. */
static void test_print_roundtrip(void) {
        ConfigErrors errors = { 0 };
        Config *a = NULL, *b = NULL;
        char *text = NULL, *text2 = NULL;
        size_t len = 0, len2 = 0;
        FILE *f;

        CHECK_INT(config_load_string("[database]\npath = /x.db\n[pragmas]\nsynchronous = normal\n"
                                     "[vacuum]\nstep_budget = 1500us\nfree_fraction = 0.125\n",
                                     "p.conf", &a, &errors),
                  0);
        if (!a)
                return;
        f = open_memstream(&text, &len);
        config_print(a, f);
        fclose(f);
        CHECK_INT(config_load_string(text, "printed.conf", &b, &errors), 0);
        for (size_t i = 0; i < errors.n; i++)
                fprintf(stderr, "  %s\n", errors.messages[i]);
        if (b) {
                free(b->source);
                b->source = strdup("p.conf");
                f = open_memstream(&text2, &len2);
                config_print(b, f);
                fclose(f);
                CHECK_STR(text2, text);
                CHECK_INT(b->step_budget, 1500);
        }
        config_errors_clear(&errors);
        free(text);
        free(text2);
        config_free(a);
        config_free(b);
}

static void test_instance_name(void) {
        ConfigErrors errors = { 0 };
        Config *c = NULL;
        char *n;

        CHECK_INT(config_load_string("[database]\npath = /var/lib/a/b.db\n", "/etc/sqlvigil/wecare.conf", &c, &errors),
                  0);
        if (!c)
                return;
        n = config_instance_name(c);
        CHECK_STR(n, "wecare");
        free(n);
        free(c->source);
        c->source = NULL;
        n = config_instance_name(c);
        CHECK_STR(n, "b");
        free(n);
        config_free(c);
}

/* Whom each pragma shapes, and what a configuration that sets one of the
 * applications' own says: a warning naming the file, the line and what the
 * applications must do, never an error. */
static void test_pragma_scopes(void) {
        static const char text[] = "[database]\n"
                                   "path = /x.db\n"
                                   "[pragmas]\n"
                                   "mmap_size = 30000000\n"
                                   "cache_size = -10000\n"
                                   "foreign_keys = on\n";
        ConfigErrors errors = { 0 }, notes = { 0 };
        Config *c = NULL;
        char note[512];

        for (PragmaId id = 0; id < _PRAGMA_MAX; id++) {
                CHECK(pragma_info[id].scope < _PRAGMA_SCOPE_MAX);
                CHECK(pragma_info[id].persistent == (pragma_info[id].scope == PRAGMA_SCOPE_FILE));
                CHECK(pragma_info[id].scope != PRAGMA_SCOPE_APPLICATION || pragma_info[id].purpose);
        }
        CHECK_INT(pragma_info[PRAGMA_JOURNAL_MODE].scope, PRAGMA_SCOPE_FILE);
        CHECK_INT(pragma_info[PRAGMA_AUTO_VACUUM].scope, PRAGMA_SCOPE_FILE);
        CHECK_INT(pragma_info[PRAGMA_MMAP_SIZE].scope, PRAGMA_SCOPE_SQLVIGIL);
        CHECK_INT(pragma_info[PRAGMA_TEMP_STORE].scope, PRAGMA_SCOPE_SQLVIGIL);
        CHECK_INT(pragma_info[PRAGMA_FOREIGN_KEYS].scope, PRAGMA_SCOPE_APPLICATION);

        CHECK_INT(pragma_note(PRAGMA_MMAP_SIZE, 0, note, sizeof(note)), PRAGMA_NOTE_NONE);
        CHECK_INT(pragma_note(PRAGMA_CACHE_SIZE, -10000, note, sizeof(note)), PRAGMA_NOTE_NONE);
        CHECK_INT(pragma_note(PRAGMA_FOREIGN_KEYS, 0, note, sizeof(note)), PRAGMA_NOTE_APPLICATION);
        CHECK(strstr(note, "'PRAGMA foreign_keys = off'") != NULL);

        CHECK_INT(config_load_string(text, "p.conf", &c, &errors), 0);
        CHECK_INT(errors.n, 0);
        if (!c)
                return;
        CHECK_INT(c->pragmas[PRAGMA_FOREIGN_KEYS].line, 6);
        CHECK_INT(config_warnings(c, &notes), 0);
        CHECK_INT(notes.n, 2);
        if (notes.n == 2) {
                CHECK(strncmp(notes.messages[0], "[pragmas] at p.conf:4: mmap_size = 30000000 shapes sqlvigil's own "
                              "connection only", 80) == 0);
                CHECK(strncmp(notes.messages[1], "[pragmas] at p.conf:6: foreign_keys = on is a per-connection "
                              "setting that only the applications can make: sqlvigil does not apply it", 120) == 0);
                CHECK(strstr(notes.messages[1], "each application must run 'PRAGMA foreign_keys = on' on each of its "
                             "connections") != NULL);
        }
        config_errors_clear(&notes);
        config_free(c);

        /* The applications' other per-connection pragmas are no keys: the
         * error says whose they are instead of "unknown key". */
        c = NULL;
        CHECK_INT(config_load_string("[pragmas]\nrecursive_triggers = on\n", "r.conf", &c, &errors),
                  CONFIG_E_INVALID);
        CHECK_INT(errors.n, 1);
        if (errors.n == 1)
                CHECK_STR(errors.messages[0],
                          "'recursive_triggers' in [pragmas] at r.conf:2 is a per-connection setting that only the "
                          "applications can make: sqlvigil cannot set it for them; remove it here, and have each "
                          "application run 'PRAGMA recursive_triggers' on each of its connections");
        config_errors_clear(&errors);
        config_free(c);
}

int main(void) {
        test_malformed();
        test_many_errors();
        test_long_line();
        test_missing_file();
        test_good();
        test_values_accepted();
        test_defaults();
        test_print_roundtrip();
        test_instance_name();
        test_pragma_scopes();
        return test_result("test-config");
}
