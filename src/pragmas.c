/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "parse.h"
#include "pragmas.h"
#include "util.h"

static const char *const journal_mode_names[] = { "wal", NULL };
static const char *const auto_vacuum_names[] = { "none", "full", "incremental", NULL };
static const char *const synchronous_names[] = { "off", "normal", "full", "extra", NULL };
static const char *const temp_store_names[] = { "default", "file", "memory", NULL };

const char *const pragma_scope_names[_PRAGMA_SCOPE_MAX] = {
        [PRAGMA_SCOPE_FILE] = "file",
        [PRAGMA_SCOPE_SQLVIGIL] = "sqlvigil",
        [PRAGMA_SCOPE_APPLICATION] = "application",
};

const char *const pragma_scope_phrases[_PRAGMA_SCOPE_MAX] = {
        [PRAGMA_SCOPE_FILE] = "the database file (every connection)",
        [PRAGMA_SCOPE_SQLVIGIL] = "sqlvigil's own connection only",
        [PRAGMA_SCOPE_APPLICATION] = "each application's own connections (not applied by sqlvigil)",
};

const PragmaInfo pragma_info[_PRAGMA_MAX] = {
        [PRAGMA_PAGE_SIZE] = {
                .name = "page_size", .scope = PRAGMA_SCOPE_FILE, .persistent = true, .type = PRAGMA_TYPE_SIZE,
                .min = 512, .max = 65536,
                .expect = "a power of two between 512 and 65536",
        },
        [PRAGMA_AUTO_VACUUM] = {
                .name = "auto_vacuum", .scope = PRAGMA_SCOPE_FILE, .persistent = true, .type = PRAGMA_TYPE_ENUM,
                .names = auto_vacuum_names,
        },
        [PRAGMA_JOURNAL_MODE] = {
                .name = "journal_mode", .scope = PRAGMA_SCOPE_FILE, .persistent = true, .type = PRAGMA_TYPE_ENUM,
                .names = journal_mode_names,
                .expect = "wal (sqlvigil supervises databases in WAL mode only)",
        },
        [PRAGMA_BUSY_TIMEOUT] = {
                .name = "busy_timeout", .scope = PRAGMA_SCOPE_SQLVIGIL, .persistent = false, .type = PRAGMA_TYPE_INT,
                .min = 0, .max = INT32_MAX,
                .expect = "a number of milliseconds from 0 to 2147483647",
        },
        [PRAGMA_CACHE_SIZE] = {
                .name = "cache_size", .scope = PRAGMA_SCOPE_SQLVIGIL, .persistent = false, .type = PRAGMA_TYPE_INT,
                .min = INT32_MIN + 1, .max = INT32_MAX,
                .expect = "a number of pages, or of KiB when negative (-10000)",
        },
        [PRAGMA_SYNCHRONOUS] = {
                .name = "synchronous", .scope = PRAGMA_SCOPE_SQLVIGIL, .persistent = false, .type = PRAGMA_TYPE_ENUM,
                .names = synchronous_names,
        },
        [PRAGMA_MMAP_SIZE] = {
                .name = "mmap_size", .scope = PRAGMA_SCOPE_SQLVIGIL, .persistent = false, .type = PRAGMA_TYPE_SIZE,
                .min = 0, .max = INT64_MAX,
                .expect = "a size such as 0, 30000000 or 256M",
        },
        [PRAGMA_TEMP_STORE] = {
                .name = "temp_store", .scope = PRAGMA_SCOPE_SQLVIGIL, .persistent = false, .type = PRAGMA_TYPE_ENUM,
                .names = temp_store_names,
        },
        [PRAGMA_FOREIGN_KEYS] = {
                .name = "foreign_keys", .scope = PRAGMA_SCOPE_APPLICATION, .persistent = false, .type = PRAGMA_TYPE_BOOL,
                .purpose = "SQLite enforces foreign key constraints only on connections that turn it on",
        },
        [PRAGMA_WAL_AUTOCHECKPOINT] = {
                .name = "wal_autocheckpoint", .scope = PRAGMA_SCOPE_SQLVIGIL, .persistent = false, .type = PRAGMA_TYPE_INT,
                .min = 0, .max = INT32_MAX,
                .expect = "a number of pages from 0 to 2147483647 (0 turns it off)",
        },
        [PRAGMA_JOURNAL_SIZE_LIMIT] = {
                .name = "journal_size_limit", .scope = PRAGMA_SCOPE_SQLVIGIL, .persistent = false, .type = PRAGMA_TYPE_SIZE,
                .min = 0, .max = INT64_MAX,
                .expect = "a size such as 64M, or -1 for no limit",
        },
};

static void format_enum_expectation(const PragmaInfo *p, char *err, size_t err_size) {
        size_t off = 0;

        if (p->expect) {
                bufprintf(err, err_size, "expected %s", p->expect);
                return;
        }
        off = (size_t)snprintf(err, err_size, "expected one of:");
        for (size_t i = 0; p->names[i] && off < err_size; i++)
                off += (size_t)snprintf(err + off, err_size - off, "%s %s", i ? "," : "", p->names[i]);
}

int pragma_parse_value(PragmaId id, const char *text, int64_t *ret, char *err, size_t err_size) {
        const PragmaInfo *p = &pragma_info[id];
        uint64_t u;
        int64_t v;
        int r;

        switch (p->type) {
        case PRAGMA_TYPE_ENUM:
                for (size_t i = 0; p->names[i]; i++)
                        if (strcasecmp(text, p->names[i]) == 0) {
                                *ret = (int64_t)i;
                                return 0;
                        }
                format_enum_expectation(p, err, err_size);
                return -EINVAL;

        case PRAGMA_TYPE_BOOL:
                r = parse_boolean(text);
                if (r < 0) {
                        bufprintf(err, err_size, "expected a boolean (yes/no, true/false, on/off, 1/0)");
                        return r;
                }
                *ret = r;
                return 0;

        case PRAGMA_TYPE_INT:
                r = parse_int64(text, &v);
                if (r == 0 && (v < p->min || v > p->max))
                        r = -ERANGE;
                if (r < 0) {
                        bufprintf(err, err_size, "expected %s", p->expect);
                        return r;
                }
                *ret = v;
                return 0;

        case PRAGMA_TYPE_SIZE:
                if (id == PRAGMA_JOURNAL_SIZE_LIMIT && streq(text, "-1")) {
                        *ret = -1;
                        return 0;
                }
                r = parse_size(text, &u);
                if (r == 0 && (u > (uint64_t)p->max || (int64_t)u < p->min))
                        r = -ERANGE;
                if (r == 0 && id == PRAGMA_PAGE_SIZE && (u & (u - 1)) != 0)
                        r = -ERANGE;
                if (r < 0) {
                        bufprintf(err, err_size, "expected %s", p->expect);
                        return r;
                }
                *ret = (int64_t)u;
                return 0;
        }
        return -EINVAL;
}

void pragma_format_value(PragmaId id, int64_t value, char *buf, size_t size) {
        const PragmaInfo *p = &pragma_info[id];

        switch (p->type) {
        case PRAGMA_TYPE_ENUM:
                for (int64_t i = 0; p->names[i]; i++)
                        if (i == value) {
                                bufprintf(buf, size, "%s", p->names[i]);
                                return;
                        }
                bufprintf(buf, size, "%" PRIi64, value);
                return;
        case PRAGMA_TYPE_BOOL:
                bufprintf(buf, size, "%s", value ? "on" : "off");
                return;
        case PRAGMA_TYPE_INT:
        case PRAGMA_TYPE_SIZE:
                bufprintf(buf, size, "%" PRIi64, value);
                return;
        }
}

bool pragma_value_from_sqlite(PragmaId id, const char *text, int64_t *ret) {
        const PragmaInfo *p = &pragma_info[id];

        if (!text)
                return false;
        if (id == PRAGMA_JOURNAL_MODE) {
                if (strcasecmp(text, "wal") != 0)
                        return false;
                *ret = 0;
                return true;
        }
        if (parse_int64(text, ret) < 0)
                return false;
        if (p->type == PRAGMA_TYPE_ENUM) {
                int64_t n = 0;

                while (p->names[n])
                        n++;
                return *ret >= 0 && *ret < n;
        }
        return true;
}

PragmaNote pragma_note(PragmaId id, int64_t value, char *buf, size_t size) {
        const PragmaInfo *p = &pragma_info[id];
        char v[32];

        pragma_format_value(id, value, v, sizeof(v));
        if (p->scope == PRAGMA_SCOPE_APPLICATION) {
                /* SQLite spells the statement in upper case in its docs;
                 * the value as the configuration does. */
                bufprintf(buf, size,
                          "%s = %s is a per-connection setting that only the applications can make: sqlvigil does not "
                          "apply it and cannot set it for them (%s); each application must run 'PRAGMA %s = %s' on "
                          "each of its connections",
                          p->name, v, p->purpose, p->name, v);
                return PRAGMA_NOTE_APPLICATION;
        }
        if (id == PRAGMA_MMAP_SIZE && value > 0) {
                /* Copied from an application, it protects nothing and costs
                 * memory: checks read the whole file, and every page they
                 * touch through the map counts in sqlvigil's resident set. */
                bufprintf(buf, size,
                          "mmap_size = %s shapes sqlvigil's own connection only (each application's mmap_size is "
                          "its own): it gains sqlvigil nothing, and the pages its checks read through the map count "
                          "in its resident memory; leave it unset unless that is what you want",
                          v);
                return PRAGMA_NOTE_MMAP;
        }
        if (size)
                buf[0] = '\0';
        return PRAGMA_NOTE_NONE;
}

bool pragma_is_application_only(const char *name) {
        /* Per-connection pragmas that change what an application's own
         * statements do, and nothing sqlvigil does. */
        static const char *const names[] = {
                "recursive_triggers", "defer_foreign_keys", "ignore_check_constraints", "case_sensitive_like",
                "trusted_schema",     "query_only",         "automatic_index",          "reverse_unordered_selects",
                "legacy_alter_table", "count_changes",      "full_column_names",        "short_column_names",
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcasecmp(name, names[i]) == 0)
                        return true;
        return false;
}
