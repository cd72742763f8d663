/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <inttypes.h>
#include <libgen.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "parse.h"
#include "utf8.h"

const char *const checkpoint_mode_names[_CHECKPOINT_MODE_MAX + 1] = {
        "passive", "full", "restart", "truncate", NULL,
};
const char *const analyze_mode_names[_ANALYZE_MODE_MAX + 1] = {
        "optimize", "analyze", NULL,
};
const char *const verify_mode_names[_VERIFY_MODE_MAX + 1] = {
        "integrity", "quick", NULL,
};

typedef enum KeyType {
        KEY_STRING,   /* free text, empty allowed (means unset) */
        KEY_PATH,     /* an absolute path, empty allowed (means unset) */
        KEY_GROUP,    /* an existing group name, empty allowed; its gid goes to admin_gid, the one such key */
        KEY_BOOL,
        KEY_DURATION, /* usec_t */
        KEY_SIZE,     /* uint64_t bytes */
        KEY_UINT,     /* uint64_t */
        KEY_FRACTION, /* double */
        KEY_ENUM,     /* int index into names */
        KEY_PRAGMA,   /* PragmaRequest, offset is the PragmaId */
} KeyType;

typedef struct ConfigKey {
        const char *section;
        const char *name;
        KeyType type;
        size_t offset;
        const char *const *names;
        uint64_t min, max; /* bounds for durations, sizes and integers */
        const char *def;   /* the default, in file syntax; NULL means unset */
        const char *help;  /* one line for --check-config and the example file */
} ConfigKey;

#define FIELD(f) offsetof(Config, f)
#define PRAGMA(id, d, h)                                                                           \
        { "pragmas", NULL, KEY_PRAGMA, id, NULL, 0, 0, d, h }

/* The order here is the order of --check-config and of the documentation. */
static const ConfigKey keys[] = {
        { "database", "path", KEY_PATH, FIELD(db_path), .help = "the database file (required)" },
        { "database", "create", KEY_BOOL, FIELD(create), .def = "no",
          .help = "create the file if it is missing" },

        /* --check-config puts each pragma's scope before its help. */
        PRAGMA(PRAGMA_JOURNAL_MODE, "wal", "only wal is supported"),
        PRAGMA(PRAGMA_BUSY_TIMEOUT, "5000", "ms; longest wait for a lock at start, reload and admin commands"),
        PRAGMA(PRAGMA_CACHE_SIZE, "-8192", "negative: KiB; caps vacuum steps at 3/4"),
        PRAGMA(PRAGMA_SYNCHRONOUS, "normal", "its commits (vacuum steps): no fsync per step in WAL mode"),
        PRAGMA(PRAGMA_MMAP_SIZE, NULL, "bytes of the file it memory-maps; no gain for the applications"),
        PRAGMA(PRAGMA_TEMP_STORE, NULL, "default | file | memory"),
        PRAGMA(PRAGMA_PAGE_SIZE, NULL, "only a new database takes it"),
        PRAGMA(PRAGMA_AUTO_VACUUM, NULL, "none | full | incremental"),
        PRAGMA(PRAGMA_FOREIGN_KEYS, NULL, "a warning when set: each application must turn it on itself"),
        PRAGMA(PRAGMA_WAL_AUTOCHECKPOINT, "0", "0: its checkpoints are scheduled"),
        PRAGMA(PRAGMA_JOURNAL_SIZE_LIMIT, NULL, "WAL size kept after a reset (-1: no limit)"),

        { "health", "interval", KEY_DURATION, FIELD(health_interval), .min = 10 * USEC_PER_MSEC,
          .max = USEC_PER_DAY, .help = "unset: half the watchdog period, or 5s without one" },
        { "health", "max_wal_size", KEY_SIZE, FIELD(max_wal_size), .max = UINT64_MAX, .def = "64M",
          .help = "a larger WAL is degraded" },
        { "health", "min_free_disk", KEY_SIZE, FIELD(min_free_disk), .max = UINT64_MAX, .def = "64M",
          .help = "less free space on the database's file system is degraded" },
        { "health", "lock_timeout", KEY_DURATION, FIELD(lock_timeout), .min = 100 * USEC_PER_MSEC,
          .max = 7 * USEC_PER_DAY, .def = "30s", .help = "write lock unobtainable this long is failed" },
        { "health", "quick_check_interval", KEY_DURATION, FIELD(quick_check_interval),
          .max = 365 * USEC_PER_DAY, .def = "6h", .help = "PRAGMA quick_check; 0 turns it off" },
        { "health", "foreign_key_check", KEY_BOOL, FIELD(foreign_key_check), .def = "yes",
          .help = "PRAGMA foreign_key_check with every check; violations are degraded" },

        { "checkpoint", "interval", KEY_DURATION, FIELD(checkpoint_interval), .max = 7 * USEC_PER_DAY,
          .def = "1min", .help = "PASSIVE when the WAL has new frames; 0: only the WAL-driven ones below" },
        { "checkpoint", "min_wal_pages", KEY_UINT, FIELD(min_wal_pages), .min = 1, .max = UINT32_MAX,
          .def = "1000", .help = "PASSIVE as soon as the WAL holds this many pages" },
        { "checkpoint", "truncate_wal_size", KEY_SIZE, FIELD(truncate_wal_size), .max = UINT64_MAX,
          .def = "256M", .help = "above this, TRUNCATE with a bounded wait; 0 turns it off" },
        { "checkpoint", "stop_mode", KEY_ENUM, FIELD(stop_mode), checkpoint_mode_names, .def = "truncate",
          .help = "passive | full | restart | truncate" },
        { "checkpoint", "stop_timeout", KEY_DURATION, FIELD(stop_timeout), .max = USEC_PER_HOUR,
          .def = "20s", .help = "longest wait for readers and writers on stop" },

        { "vacuum", "interval", KEY_DURATION, FIELD(vacuum_interval), .max = 7 * USEC_PER_DAY,
          .def = "10min", .help = "how often the trigger is evaluated; 0 turns it off" },
        { "vacuum", "min_free_pages", KEY_UINT, FIELD(min_free_pages), .max = UINT32_MAX, .def = "256",
          .help = "trigger: free > min_free_pages + free_fraction * page_count" },
        { "vacuum", "free_fraction", KEY_FRACTION, FIELD(free_fraction), .def = "0.05",
          .help = "between 0 and 1" },
        { "vacuum", "step_budget", KEY_DURATION, FIELD(step_budget), .min = USEC_PER_MSEC,
          .max = 10 * USEC_PER_SEC, .def = "20ms", .help = "longest the write lock is held per step" },
        { "vacuum", "convert", KEY_BOOL, FIELD(convert), .def = "no",
          .help = "allow a one-time full VACUUM to switch auto_vacuum to incremental" },

        { "analyze", "interval", KEY_DURATION, FIELD(analyze_interval), .max = 365 * USEC_PER_DAY,
          .def = "1d", .help = "0 turns it off" },
        { "analyze", "mode", KEY_ENUM, FIELD(analyze_mode), analyze_mode_names, .def = "optimize",
          .help = "optimize (stale tables only) | analyze (every table)" },
        { "analyze", "analysis_limit", KEY_UINT, FIELD(analysis_limit), .max = UINT16_MAX, .def = "1000",
          .help = "rows sampled per index; 0: no limit" },

        { "control", "socket", KEY_PATH, FIELD(control_socket),
          .help = "unset: /run/sqlvigil/NAME.sock (RuntimeDirectory when set)" },
        { "control", "admin_group", KEY_GROUP, FIELD(admin_group),
          .help = "members may run admin commands, besides root and sqlvigil's user" },

        { "metrics", "textfile", KEY_PATH, FIELD(metrics_textfile),
          .help = "Prometheus textfile output; unset: off" },

        { "backup", "directory", KEY_PATH, FIELD(backup_directory),
          .help = "where backups go; unset: no scheduled backups" },
        { "backup", "interval", KEY_DURATION, FIELD(backup_interval), .min = USEC_PER_SEC,
          .max = 365 * USEC_PER_DAY, .def = "1d", .help = "a backup this often, when the database changed" },
        { "backup", "keep_last", KEY_UINT, FIELD(keep_last), .min = 1, .max = 10000, .def = "7",
          .help = "retention: the newest this many" },
        { "backup", "keep_daily", KEY_UINT, FIELD(keep_daily), .max = 10000, .def = "7",
          .help = "retention: the newest of each of the last this many days" },
        { "backup", "keep_weekly", KEY_UINT, FIELD(keep_weekly), .max = 10000, .def = "4",
          .help = "retention: the newest of each of the last this many weeks" },
        { "backup", "keep_monthly", KEY_UINT, FIELD(keep_monthly), .max = 10000, .def = "0",
          .help = "retention: the newest of each of the last this many months" },
        { "backup", "verify", KEY_ENUM, FIELD(backup_verify), verify_mode_names, .def = "integrity",
          .help = "integrity | quick: the check a copy passes before it is kept" },
        { "backup", "max_age", KEY_DURATION, FIELD(backup_max_age), .max = 3650 * USEC_PER_DAY,
          .help = "a newest good backup older than this is degraded; unset: twice the interval" },
};

static const char *const sections[] = {
        "database", "pragmas", "health", "checkpoint", "vacuum", "analyze", "control", "metrics", "backup",
};

static const char *key_name(const ConfigKey *k) {
        return k->type == KEY_PRAGMA ? pragma_info[k->offset].name : k->name;
}

size_t config_n_keys(void) {
        return ELEMENTSOF(keys);
}

void config_key_name(size_t i, const char **ret_section, const char **ret_key) {
        *ret_section = keys[i].section;
        *ret_key = key_name(&keys[i]);
}

void config_errors_clear(ConfigErrors *errors) {
        for (size_t i = 0; i < errors->n; i++)
                free(errors->messages[i]);
        free(errors->messages);
        *errors = (ConfigErrors){ 0 };
}

static int config_errors_addv(ConfigErrors *errors, const char *fmt, va_list ap) _printf_(2, 0);
static int config_errors_addv(ConfigErrors *errors, const char *fmt, va_list ap) {
        char **m;
        char *s;

        if (vasprintf(&s, fmt, ap) < 0)
                return -ENOMEM;
        m = realloc(errors->messages, (errors->n + 1) * sizeof(*m));
        if (!m) {
                free(s);
                return -ENOMEM;
        }
        errors->messages = m;
        errors->messages[errors->n++] = s;
        return 0;
}

int config_errors_add(ConfigErrors *errors, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = config_errors_addv(errors, fmt, ap);
        va_end(ap);
        return r;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->source);
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const ConfigKey *k = &keys[i];

                if (k->type == KEY_STRING || k->type == KEY_PATH || k->type == KEY_GROUP)
                        free(*(char **)((char *)c + k->offset));
        }
        free(c);
        return NULL;
}

/*
 * Parses one value into the configuration. Returns 0, or -EINVAL/-ERANGE with
 * the reason in why ("expected ...", "must be at least ...").
 */
static int key_set(Config *c, const ConfigKey *k, const char *value, char *why, size_t why_size) {
        void *field = (char *)c + k->offset;
        char a[32], b[32];
        uint64_t u;
        usec_t t;
        double d;
        int r;

        switch (k->type) {
        case KEY_STRING:
        case KEY_PATH:
        case KEY_GROUP: {
                char *s = NULL;

                if (*value) {
                        if (k->type == KEY_PATH && value[0] != '/') {
                                bufprintf(why, why_size, "expected an absolute path");
                                return -EINVAL;
                        }
                        if (k->type == KEY_GROUP) {
                                /* Looked up here, once: getgrnam() may ask
                                 * NSS (LDAP, sssd) and block, which the
                                 * control socket's event loop must not. */
                                struct group *g = getgrnam(value);

                                if (!g) {
                                        bufprintf(why, why_size, "no such group");
                                        return -EINVAL;
                                }
                                c->admin_gid = g->gr_gid;
                        }
                        if (k->offset == FIELD(control_socket) &&
                            strlen(value) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
                                bufprintf(why, why_size, "a socket path must be shorter than %zu bytes",
                                          sizeof(((struct sockaddr_un *)NULL)->sun_path));
                                return -ERANGE;
                        }
                        s = strdup(value);
                        if (!s)
                                return -ENOMEM;
                }
                free(*(char **)field);
                *(char **)field = s;
                return 0;
        }
        case KEY_BOOL:
                r = parse_boolean(value);
                if (r < 0) {
                        bufprintf(why, why_size, "expected a boolean (yes/no, true/false, on/off, 1/0)");
                        return r;
                }
                *(bool *)field = r;
                return 0;

        case KEY_DURATION:
                r = parse_duration(value, &t);
                if (r < 0) {
                        bufprintf(why, why_size, "expected a duration such as 250ms, 30s, 5min, 2h or 1d");
                        return -EINVAL;
                }
                if (t < k->min || t > k->max) {
                        if (k->min == 0)
                                bufprintf(why, why_size, "must be at most %s",
                                          format_duration(b, sizeof(b), k->max));
                        else
                                bufprintf(why, why_size, "must be between %s and %s",
                                          format_duration(a, sizeof(a), k->min),
                                          format_duration(b, sizeof(b), k->max));
                        return -ERANGE;
                }
                *(usec_t *)field = t;
                return 0;

        case KEY_SIZE:
                r = parse_size(value, &u);
                if (r == -ERANGE) {
                        bufprintf(why, why_size, "a size is at most 16777215T (just under 2^64 bytes)");
                        return -ERANGE;
                }
                if (r < 0) {
                        bufprintf(why, why_size, "expected a size such as 4096, 64K, 16M or 1G");
                        return -EINVAL;
                }
                *(uint64_t *)field = u;
                return 0;

        case KEY_UINT:
                r = parse_uint64(value, &u);
                if (r < 0 || u < k->min || u > k->max) {
                        bufprintf(why, why_size, "expected a whole number between %" PRIu64 " and %" PRIu64,
                                  k->min, k->max);
                        return r < 0 ? r : -ERANGE;
                }
                *(uint64_t *)field = u;
                return 0;

        case KEY_FRACTION:
                r = parse_double(value, &d);
                if (r < 0 || d > 1.0) {
                        bufprintf(why, why_size, "expected a fraction between 0 and 1, such as 0.05");
                        return r < 0 ? r : -ERANGE;
                }
                *(double *)field = d;
                return 0;

        case KEY_ENUM:
                for (int i = 0; k->names[i]; i++)
                        if (strcasecmp(value, k->names[i]) == 0) {
                                *(int *)field = i;
                                return 0;
                        }
                {
                        size_t off = (size_t)snprintf(why, why_size, "expected one of:");
                        size_t n = 0;
                        int near;

                        for (; k->names[n] && off < why_size; n++)
                                off += (size_t)snprintf(why + off, why_size - off, "%s %s", n ? "," : "",
                                                        k->names[n]);
                        near = nearest_word(value, k->names, n);
                        if (near >= 0 && off < why_size)
                                (void)snprintf(why + off, why_size - off, "; did you mean '%s'?", k->names[near]);
                }
                return -EINVAL;

        case KEY_PRAGMA: {
                PragmaRequest *p = &c->pragmas[k->offset];
                int64_t v;

                if (!*value && k->offset != PRAGMA_JOURNAL_MODE) {
                        /* "cache_size =" explicitly leaves the pragma alone;
                         * journal_mode cannot be left alone, and parsing the
                         * empty value says so. */
                        p->set = false;
                        return 0;
                }
                r = pragma_parse_value((PragmaId)k->offset, value, &v, why, why_size);
                if (r < 0)
                        return r;
                p->set = true;
                p->value = v;
                return 0;
        }
        }
        return -EINVAL;
}

int config_new_defaults(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        char why[256];
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (!keys[i].def)
                        continue;
                r = key_set(c, &keys[i], keys[i].def, why, sizeof(why));
                if (r < 0)
                        return r; /* a broken default is a bug; the unit tests catch it */
        }
        *ret = TAKE_PTR(c);
        return 0;
}

usec_t config_busy_timeout(const Config *c) {
        /* Unset ("busy_timeout =") means SQLite's own default: no waiting. */
        if (!c->pragmas[PRAGMA_BUSY_TIMEOUT].set)
                return 0;
        return (usec_t)c->pragmas[PRAGMA_BUSY_TIMEOUT].value * USEC_PER_MSEC;
}

int config_set_db_path(Config *c, const char *path) {
        char *s = strdup(path);

        if (!s)
                return -ENOMEM;
        free(c->db_path);
        c->db_path = s;
        return 0;
}

/* ---- Loading ---------------------------------------------------------- */

typedef struct Loader {
        const char *name;
        FILE *f;
        unsigned line;
        Config *config;
        ConfigErrors *errors;
        unsigned set_at[ELEMENTSOF(keys)]; /* line where each key was set, 0: not yet */
        char *buf;
        size_t buf_size;
        int oom;
} Loader;

/* A section name no file can spell: its header had a syntax error. */
#define INVALID_SECTION "\x01"

static int find_section(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(sections); i++)
                if (streq(sections[i], name))
                        return (int)i;
        return -1;
}

static char *trim(char *s) {
        char *e;

        while (isspace((unsigned char)*s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        return s;
}

/*
 * A value or key as an error message shows it: a character that cannot be
 * seen spelled out as <U+00A0>, control characters and bytes that are not
 * UTF-8 escaped as in log lines (\t, \x01, \xff). Allocated; NULL when
 * memory ran out.
 */
static char *text_display(const char *s) {
        size_t n = strlen(s), len, o = 0;
        char *out, what[96];

        /* The longest form is <U+E0041> for 4 bytes, or \xNN for one. */
        out = malloc(4 * n + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i += len) {
                int32_t c = utf8_decode(s + i, n - i, &len);

                if (c >= 0 && unicode_describe_invisible(c, what, sizeof(what)))
                        o += (size_t)sprintf(out + o, "<U+%04X>", (unsigned)c);
                else if (c == '\t')
                        o += (size_t)sprintf(out + o, "\\t");
                else if (c < 0 || unicode_is_control(c))
                        for (size_t k = 0; k < len; k++)
                                o += (size_t)sprintf(out + o, "\\x%02x", (unsigned char)s[i + k]);
                else {
                        memcpy(out + o, s + i, len);
                        o += len;
                }
        }
        out[o] = '\0';
        return out;
}

/*
 * Text in a value that cannot be what its writer meant (sqlvigil.conf(5),
 * "What a value may hold"), for every key type alike: a '#' that starts the value or follows
 * a blank (a comment in many formats; to inih, part of the value), a
 * character that cannot be seen or looks like a blank without being one, a
 * control character, a tab in a path or name, a byte that is not UTF-8, and
 * quotes around the whole value (never removed). Each of these would
 * otherwise be taken into the value: a database named "app.db # main".
 * Returns 0, or -EINVAL with the reason in why.
 */
static int value_check(const char *value, KeyType type, char *why, size_t why_size) {
        static const char comment_rule[] = "only ';' after a space or tab starts an inline comment";
        size_t n = strlen(value), len;
        bool after_blank = true; /* the start of the value counts as one */
        char what[96];

        for (size_t i = 0; i < n; i += len) {
                int32_t c = utf8_decode(value + i, n - i, &len);

                if (c < 0) {
                        bufprintf(why, why_size,
                                  "it holds the byte \\x%02x, which is not UTF-8; sqlvigil reads the file as UTF-8 "
                                  "text (for a path that is not UTF-8, use a symbolic link)",
                                  (unsigned char)value[i]);
                        return -EINVAL;
                }
                if (unicode_describe_invisible(c, what, sizeof(what))) {
                        bufprintf(why, why_size,
                                  "it %s %s, which looks like a blank or like nothing at all but is part of the "
                                  "value; delete it (%s)",
                                  i == 0 ? "starts with" : i + len == n ? "ends with" : "holds", what, comment_rule);
                        return -EINVAL;
                }
                if (c == '\t' && (type == KEY_PATH || type == KEY_GROUP || type == KEY_STRING)) {
                        bufprintf(why, why_size, "it holds a tab, which looks like spaces; a path or name may not hold one");
                        return -EINVAL;
                }
                if (c != '\t' && unicode_is_control(c)) {
                        bufprintf(why, why_size, "it holds a control character (U+%04X); delete it", (unsigned)c);
                        return -EINVAL;
                }
                if (c == '#' && after_blank) {
                        bufprintf(why, why_size, "'#' does not start a comment here; %s", comment_rule);
                        return -EINVAL;
                }
                after_blank = c == ' ' || c == '\t';
        }
        if (n >= 2 && (value[0] == '"' || value[0] == '\'') && value[n - 1] == value[0]) {
                bufprintf(why, why_size, "quotes are not removed; write the value without them");
                return -EINVAL;
        }
        return 0;
}

static void loader_error(Loader *l, const char *fmt, ...) _printf_(2, 3);
static void loader_error(Loader *l, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (config_errors_addv(l->errors, fmt, ap) < 0)
                l->oom = 1;
        va_end(ap);
}

/*
 * inih's line reader. We read whole lines ourselves so that we know line
 * numbers (Debian's inih is built without INI_HANDLER_LINENO), can reject
 * over-long lines instead of having them split, and can check section headers
 * and syntax with precise messages. What inih receives is normalised: leading
 * whitespace is removed, which also turns off inih's multi-line continuation
 * (an indented line silently appending to the previous value), and lines we
 * already reported become comments so nothing is reported twice.
 */
static char *loader_read(char *str, int num, void *stream) {
        Loader *l = stream;
        ssize_t n;
        char *s;

        n = getline(&l->buf, &l->buf_size, l->f);
        if (n < 0)
                return NULL;
        l->line++;
        if (strlen(l->buf) != (size_t)n) {
                loader_error(l, "invalid character (NUL byte) at %s:%u", l->name, l->line);
                goto comment;
        }
        while (n > 0 && (l->buf[n - 1] == '\n' || l->buf[n - 1] == '\r'))
                l->buf[--n] = '\0';
        s = l->buf;
        if (l->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3; /* UTF-8 byte order mark */
        s = trim(s);

        if (*s == '\0' || *s == ';' || *s == '#')
                goto comment;

        if (*s == '[') {
                char *end = strchr(s, ']'), *rest, *name;

                if (!end) {
                        loader_error(l, "syntax error at %s:%u: section header without closing ']'", l->name,
                                     l->line);
                        goto bad_section;
                }
                *end = '\0';
                rest = trim(end + 1);
                name = trim(s + 1);
                if (*rest && *rest != ';' && *rest != '#') {
                        loader_error(l, "syntax error at %s:%u: unexpected text after [%s]", l->name, l->line,
                                     name);
                        goto bad_section;
                }
                if (find_section(name) < 0) {
                        int near = nearest_word(name, sections, ELEMENTSOF(sections));
                        _cleanup_(freep) char *shown = text_display(name);

                        if (!shown)
                                l->oom = 1;
                        else if (near >= 0)
                                loader_error(l, "unknown section [%s] at %s:%u; did you mean [%s]?", shown, l->name,
                                             l->line, sections[near]);
                        else
                                loader_error(l, "unknown section [%s] at %s:%u", shown, l->name, l->line);
                }
                if ((size_t)num < strlen(name) + 4)
                        goto too_long;
                /* Hand inih the canonical header; keys under an unknown section
                 * are then skipped by the handler without further errors. */
                (void)snprintf(str, (size_t)num, "[%s]\n", name);
                return str;
        }

        if (!strpbrk(s, "=:")) {
                loader_error(l, "syntax error at %s:%u: expected '[section]', 'key = value' or a comment",
                             l->name, l->line);
                goto comment;
        }
        if (*s == '=' || *s == ':') {
                loader_error(l, "syntax error at %s:%u: missing key name before '%c'", l->name, l->line, *s);
                goto comment;
        }
        if ((size_t)num < strlen(s) + 2)
                goto too_long;
        (void)snprintf(str, (size_t)num, "%s\n", s);
        return str;

bad_section:
        /* Keys that follow a broken header belong to no section we know:
         * they are skipped, not reported again as being outside any section. */
        (void)snprintf(str, (size_t)num, "[%s]\n", INVALID_SECTION);
        return str;

too_long:
        loader_error(l, "line too long at %s:%u (the limit is %d characters)", l->name, l->line, num - 3);
comment:
        (void)snprintf(str, (size_t)num, ";\n");
        return str;
}

static int find_key(int section, const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq(keys[i].section, sections[section]) && streq(key_name(&keys[i]), name))
                        return (int)i;
        return -1;
}

static void report_unknown_key(Loader *l, const char *section, const char *name) {
        _cleanup_(freep) char *shown = text_display(name);
        const char *candidates[ELEMENTSOF(keys)];
        size_t n = 0;
        int near;

        if (!shown) {
                l->oom = 1;
                return;
        }
        if (streq(section, "pragmas") && pragma_is_application_only(name)) {
                loader_error(l,
                             "'%s' in [pragmas] at %s:%u is a per-connection setting that only the applications can "
                             "make: sqlvigil cannot set it for them; remove it here, and have each application run "
                             "'PRAGMA %s' on each of its connections",
                             shown, l->name, l->line, shown);
                return;
        }

        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq(keys[i].section, section))
                        candidates[n++] = key_name(&keys[i]);
        near = nearest_word(name, candidates, n);
        if (near >= 0) {
                loader_error(l, "unknown key '%s' in [%s] at %s:%u; did you mean '%s'?", shown, section, l->name,
                             l->line, candidates[near]);
                return;
        }
        /* Right key, wrong section: say where it belongs. */
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq(key_name(&keys[i]), name)) {
                        loader_error(l, "unknown key '%s' in [%s] at %s:%u; did you mean '%s' in [%s]?", shown,
                                     section, l->name, l->line, name, keys[i].section);
                        return;
                }
        loader_error(l, "unknown key '%s' in [%s] at %s:%u", shown, section, l->name, l->line);
}

static int loader_handle(void *user, const char *section, const char *name, const char *value) {
        Loader *l = user;
        char why[256];
        int s, k, r;

        if (!*section) {
                _cleanup_(freep) char *shown = text_display(name);

                if (!shown) {
                        l->oom = 1;
                        return 1;
                }
                for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                        if (streq(key_name(&keys[i]), name)) {
                                loader_error(l, "key '%s' at %s:%u is outside any section; did you mean [%s]?",
                                             shown, l->name, l->line, keys[i].section);
                                return 1;
                        }
                loader_error(l, "key '%s' at %s:%u is outside any section", shown, l->name, l->line);
                return 1;
        }
        s = find_section(section);
        if (s < 0)
                return 1; /* reported when the header was read */
        k = find_key(s, name);
        if (k < 0) {
                report_unknown_key(l, section, name);
                return 1;
        }
        if (l->set_at[k]) {
                loader_error(l, "duplicate key '%s' in [%s] at %s:%u (first set at line %u)", name, section,
                             l->name, l->line, l->set_at[k]);
                return 1;
        }
        l->set_at[k] = l->line;
        if (keys[k].type == KEY_PRAGMA)
                l->config->pragmas[keys[k].offset].line = l->line;

        r = value_check(value, keys[k].type, why, sizeof(why));
        if (r == 0)
                r = key_set(l->config, &keys[k], value, why, sizeof(why));
        if (r == -ENOMEM) {
                l->oom = 1;
                return 1;
        }
        if (r < 0) {
                _cleanup_(freep) char *shown = text_display(value);

                if (!shown)
                        l->oom = 1;
                else if (!*value)
                        loader_error(l, "missing value for '%s' in [%s] at %s:%u: %s", name, section, l->name,
                                     l->line, why);
                else if (r == -ERANGE && keys[k].type != KEY_ENUM)
                        loader_error(l, "value '%s' for '%s' in [%s] at %s:%u is out of range: %s", shown, name,
                                     section, l->name, l->line, why);
                else
                        loader_error(l, "invalid value '%s' for '%s' in [%s] at %s:%u: %s", shown, name, section,
                                     l->name, l->line, why);
        }
        return 1;
}

static int config_load_stream(FILE *f, const char *name, Config **ret, ConfigErrors *errors) {
        _cleanup_(config_freep) Config *c = NULL;
        Loader l = { .name = name, .f = f, .errors = errors };
        int r;

        r = config_new_defaults(&c);
        if (r < 0)
                return r;
        c->source = strdup(name);
        if (!c->source)
                return -ENOMEM;
        l.config = c;

        r = ini_parse_stream(loader_read, &l, loader_handle, &l);
        free(l.buf);
        if (l.oom || r == -2)
                return -ENOMEM;
        if (ferror(f)) {
                config_errors_add(errors, "cannot read %s: %s", name, strerror(errno));
                return -EIO;
        }
        if (r > 0 && errors->n == 0) {
                /* inih found something our reader let through; should not happen. */
                if (config_errors_add(errors, "syntax error at %s:%d", name, r) < 0)
                        return -ENOMEM;
        }
        if (errors->n > 0)
                return CONFIG_E_INVALID;

        *ret = TAKE_PTR(c);
        return 0;
}

/* Far above any real configuration (the example, every key commented, is
 * under 20 KiB); a bound, so that a path naming a device or a huge file
 * cannot make the loader read without end. */
#define CONFIG_MAX_BYTES (1024 * 1024)

int config_load_file(const char *path, Config **ret, ConfigErrors *errors) {
        struct stat st;
        FILE *f;
        int fd, r;

        /* O_NONBLOCK: a FIFO must not hang the start or a reload. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                config_errors_add(errors, "cannot open configuration file %s: %s", path, strerror(errno));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                config_errors_add(errors, "cannot read configuration file %s: %s", path, strerror(-r));
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_BYTES) {
                if (!S_ISREG(st.st_mode))
                        config_errors_add(errors, "configuration file %s is not a regular file; give the path of "
                                                  "an INI file (see sqlvigil.conf(5))", path);
                else
                        config_errors_add(errors, "configuration file %s is %jd bytes, more than the %d a "
                                                  "configuration may have; is it the right file?",
                                          path, (intmax_t)st.st_size, CONFIG_MAX_BYTES);
                close(fd);
                return CONFIG_E_INVALID;
        }
        f = fdopen(fd, "re");
        if (!f) {
                r = -errno;
                close(fd);
                config_errors_add(errors, "cannot read configuration file %s: %s", path, strerror(-r));
                return r;
        }
        r = config_load_stream(f, path, ret, errors);
        fclose(f);
        return r;
}

int config_load_string(const char *text, const char *name, Config **ret, ConfigErrors *errors) {
        FILE *f;
        int r;

        f = fmemopen((void *)text, strlen(text), "r");
        if (!f)
                return -errno;
        r = config_load_stream(f, name, ret, errors);
        fclose(f);
        return r;
}

/* ---- Printing --------------------------------------------------------- */

static void format_size_exact(char *buf, size_t size, uint64_t v) {
        static const char units[] = "TGMK";

        for (int i = 0; i < 4; i++) {
                uint64_t m = 1ULL << (10 * (4 - i));

                if (v != 0 && v % m == 0) {
                        bufprintf(buf, size, "%" PRIu64 "%c", v / m, units[i]);
                        return;
                }
        }
        bufprintf(buf, size, "%" PRIu64, v);
}

static bool key_format(const Config *c, const ConfigKey *k, char *buf, size_t size) {
        const void *field = (const char *)c + k->offset;

        switch (k->type) {
        case KEY_STRING:
        case KEY_PATH:
        case KEY_GROUP: {
                const char *s = *(char *const *)field;

                bufprintf(buf, size, "%s", s ? s : "");
                return s != NULL;
        }
        case KEY_BOOL:
                bufprintf(buf, size, "%s", *(const bool *)field ? "yes" : "no");
                return true;
        case KEY_DURATION:
                if ((k->offset == FIELD(health_interval) || k->offset == FIELD(backup_max_age)) &&
                    *(const usec_t *)field == 0) {
                        buf[0] = '\0';
                        return false;
                }
                format_duration(buf, size, *(const usec_t *)field);
                return true;
        case KEY_SIZE:
                format_size_exact(buf, size, *(const uint64_t *)field);
                return true;
        case KEY_UINT:
                bufprintf(buf, size, "%" PRIu64, *(const uint64_t *)field);
                return true;
        case KEY_FRACTION:
                bufprintf(buf, size, "%g", *(const double *)field);
                return true;
        case KEY_ENUM:
                bufprintf(buf, size, "%s", k->names[*(const int *)field]);
                return true;
        case KEY_PRAGMA: {
                const PragmaRequest *p = &c->pragmas[k->offset];

                if (!p->set) {
                        buf[0] = '\0';
                        return false;
                }
                pragma_format_value((PragmaId)k->offset, p->value, buf, size);
                return true;
        }
        }
        return false;
}

bool config_key_value(const Config *c, size_t i, char *buf, size_t size) {
        return key_format(c, &keys[i], buf, size);
}

void config_print(const Config *c, FILE *f) {
        const char *section = NULL;

        fprintf(f, "# sqlvigil effective configuration (%s)\n", c->source ? c->source : "built-in defaults");
        fprintf(f, "# A commented-out key is unset; the comment says what unset means.\n");
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const ConfigKey *k = &keys[i];
                char value[4096];
                bool set;

                if (!section || !streq(section, k->section)) {
                        section = k->section;
                        fprintf(f, "\n[%s]\n", section);
                }
                set = key_format(c, k, value, sizeof(value));
                fprintf(f, "%s%s =%s%s", set ? "" : "# ", key_name(k), *value ? " " : "", value);
                if (k->type == KEY_PRAGMA)
                        fprintf(f, "  ; shapes %s; %s", pragma_scope_phrases[pragma_info[k->offset].scope], k->help);
                else if (k->help)
                        fprintf(f, "  ; %s", k->help);
                fputc('\n', f);
        }
}

int config_warnings(const Config *c, ConfigErrors *notes) {
        for (PragmaId id = 0; id < _PRAGMA_MAX; id++) {
                const PragmaRequest *p = &c->pragmas[id];
                char note[512], where[512] = "";

                if (!p->set || pragma_note(id, p->value, note, sizeof(note)) == PRAGMA_NOTE_NONE)
                        continue;
                if (p->line)
                        bufprintf(where, sizeof(where), " at %s:%u", c->source ? c->source : "?", p->line);
                if (config_errors_add(notes, "[pragmas]%s: %s", where, note) < 0)
                        return -ENOMEM;
        }
        return 0;
}

char *config_instance_name(const Config *c) {
        const char *from = c->source ? c->source : c->db_path;
        _cleanup_(freep) char *copy = NULL;
        char *base, *dot;

        if (!from)
                return strdup("sqlvigil");
        copy = strdup(from);
        if (!copy)
                return NULL;
        base = basename(copy);
        dot = strrchr(base, '.');
        if (dot && dot != base)
                *dot = '\0';
        return strdup(*base ? base : "sqlvigil");
}
