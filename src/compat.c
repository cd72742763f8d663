/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat.h"

bool compat_error_is_skew(const char *m) {
        /* Anywhere: what a newer SQLite (or the application's own code)
         * provides and this one lacks. */
        static const char *const lacking[] = {
                "no such function",      "unknown function",          "wrong number of arguments to function",
                "no such module",        "unrecognized option",       "invalid fts5 file format",
                "no such collation sequence",
                /* JSON5 text, or JSONB, that a newer SQLite's json
                 * functions wrote and that an index on them keeps. */
                "malformed JSON",
        };
        /* Inside "malformed database schema (X) - ...": SQL this SQLite
         * cannot parse. Other reasons there ("invalid rootpage", "orphan
         * index") are damage. */
        static const char *const unparsable[] = { "syntax error", "unrecognized token" };

        if (!m)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(lacking); i++)
                if (strstr(m, lacking[i]))
                        return true;
        if (strstr(m, "malformed database schema"))
                for (size_t i = 0; i < ELEMENTSOF(unparsable); i++)
                        if (strstr(m, unparsable[i]))
                                return true;
        return false;
}

void compat_format_version(uint32_t n, char *buf, size_t size) {
        if (n == 0) {
                bufprintf(buf, size, "%s", "");
                return;
        }
        bufprintf(buf, size, "%" PRIu32 ".%" PRIu32 ".%" PRIu32, n / 1000000, n / 1000 % 1000, n % 1000);
}

/* Appends "; text" (or text) to a bounded list, marking a cut with "...". */
static void add_item(char *buf, size_t size, const char *text) {
        size_t len = strlen(buf);

        if (len + strlen(text) + 6 >= size) {
                if (len + 6 < size && (len < 3 || strcmp(buf + len - 3, "...") != 0))
                        strcat(buf, len ? "; ..." : "...");
                return;
        }
        if (len)
                strcat(buf, "; ");
        strcat(buf, text);
}

/* Writes name as an SQL identifier: in double quotes, inner ones doubled. */
static void put_ident(FILE *f, const char *name) {
        fputc('"', f);
        for (const char *p = name; *p; p++) {
                if (*p == '"')
                        fputc('"', f);
                fputc(*p, f);
        }
        fputc('"', f);
}

/* Prepares sql and throws it away. SQLite's code; its message in err. */
static int try_prepare(sqlite3 *db, const char *sql, char *err, size_t err_size) {
        sqlite3_stmt *s = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
        if (rc != SQLITE_OK)
                bufprintf(err, err_size, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(s);
        return rc;
}

enum { VERB_SELECT, VERB_INSERT, VERB_UPDATE, VERB_DELETE, _VERB_MAX };
static const char *const verb_names[_VERB_MAX] = { "SELECT", "INSERT", "UPDATE", "DELETE" };

/* The statements that would read and change table (every kind of write
 * compiles the table's index expressions, CHECKs, generated columns,
 * DEFAULTs and triggers), built on db's view of its columns. NULL where the
 * statement does not apply (writes to a view or a virtual table). */
static int build_probes(sqlite3 *db, const char *name, bool writable, char *sql[_VERB_MAX]) {
        sqlite3_stmt *cols = NULL;
        size_t size;
        FILE *f;
        int rc, n = 0;

        for (int v = 0; v < _VERB_MAX; v++)
                sql[v] = NULL;
        f = open_memstream(&sql[VERB_SELECT], &size);
        if (!f)
                return -errno;
        fputs("SELECT * FROM ", f);
        put_ident(f, name);
        fputs(" LIMIT 0", f);
        if (fclose(f) != 0)
                return -ENOMEM;
        if (!writable)
                return 0;

        f = open_memstream(&sql[VERB_INSERT], &size);
        if (!f)
                return -errno;
        fputs("INSERT INTO ", f);
        put_ident(f, name);
        fputs(" DEFAULT VALUES", f);
        if (fclose(f) != 0)
                return -ENOMEM;

        f = open_memstream(&sql[VERB_DELETE], &size);
        if (!f)
                return -errno;
        /* WHERE 0 is not optimised into the truncation, which skips the
         * indexes: it still compiles every index key. */
        fputs("DELETE FROM ", f);
        put_ident(f, name);
        fputs(" WHERE 0", f);
        if (fclose(f) != 0)
                return -ENOMEM;

        /* Every ordinary column set to itself: the UPDATE compiles what
         * depends on any of them. Generated and hidden columns cannot be
         * assigned. */
        rc = sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_xinfo(?) WHERE hidden = 0", -1, &cols, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(cols, 1, name, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK) {
                sqlite3_finalize(cols);
                return 0; /* no UPDATE probe; the others still tell */
        }
        f = open_memstream(&sql[VERB_UPDATE], &size);
        if (!f) {
                sqlite3_finalize(cols);
                return -errno;
        }
        fputs("UPDATE ", f);
        put_ident(f, name);
        fputs(" SET ", f);
        while (sqlite3_step(cols) == SQLITE_ROW) {
                const char *c = (const char *)sqlite3_column_text(cols, 0);

                if (!c)
                        continue;
                if (n++)
                        fputs(", ", f);
                put_ident(f, c);
                fputc('=', f);
                put_ident(f, c);
        }
        fputs(" WHERE 0", f);
        sqlite3_finalize(cols);
        if (fclose(f) != 0)
                return -ENOMEM;
        if (n == 0) {
                free(sql[VERB_UPDATE]);
                sql[VERB_UPDATE] = NULL;
        }
        return 0;
}

static void free_probes(char *sql[_VERB_MAX]) {
        for (int v = 0; v < _VERB_MAX; v++)
                free(sql[v]);
}

/* Runs sql on the scratch database. SQLite's code; its message in err. */
static int scratch_exec(sqlite3 *mem, const char *sql, char *err, size_t err_size) {
        char *msg = NULL;
        int rc;

        rc = sqlite3_exec(mem, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK)
                bufprintf(err, err_size, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return rc;
}

/* Copies table name's definition from db into the scratch database, for a
 * trigger whose body writes to it. Whether it is there now. */
static bool pull_in(sqlite3 *db, sqlite3 *mem, const char *name) {
        sqlite3_stmt *s = NULL;
        char err[256];
        bool ok = false;

        if (sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ? AND sql IS NOT NULL",
                               -1, &s, NULL) != SQLITE_OK)
                return false;
        if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
                ok = scratch_exec(mem, (const char *)sqlite3_column_text(s, 0), err, sizeof(err)) == SQLITE_OK;
        sqlite3_finalize(s);
        return ok;
}

/* Whether compiling sql on the scratch database fails for want of a
 * feature, with a trigger in place. A trigger's body may name other
 * tables, which are created there as needed ("no such table: X"). */
static bool probe_trigger(sqlite3 *db, sqlite3 *mem, const char *sql, char *err, size_t err_size) {
        for (int pulled = 0; pulled < 8; pulled++) {
                const char *missing;

                if (try_prepare(mem, sql, err, err_size) == SQLITE_OK)
                        return false;
                if (compat_error_is_skew(err))
                        return true;
                missing = strncmp(err, "no such table: ", 15) == 0 ? err + 15 : NULL;
                if (missing && strncmp(missing, "main.", 5) == 0)
                        missing += 5;
                if (!missing || strchr(missing, '.') || !pull_in(db, mem, missing))
                        return false;
        }
        return false;
}

/* A culprit: "index t_a: no such function: jsonb_extract". */
static void add_culprit(CompatReport *r, const char *kind, const char *name, const char *error) {
        char item[384];

        bufprintf(item, sizeof(item), "%s %s: %s", kind, name, error);
        add_item(r->culprits, sizeof(r->culprits), item);
        r->objects++;
}

/*
 * Names what makes table's statements fail: the table itself (a CHECK or a
 * generated column on a function this SQLite lacks), one of its indexes,
 * or one of its triggers. One prepare reports only its first error, so each
 * is replayed alone into a private in-memory database. Returns whether
 * anything VACUUM would need (the table or an index) is among them.
 */
static bool explain_table(sqlite3 *db, const char *name, const char *create, const char *first_error,
                          CompatReport *r) {
        sqlite3_stmt *parts = NULL;
        sqlite3 *mem = NULL;
        char err[256], *sql[_VERB_MAX] = { 0 };
        bool found = false, structural = false;
        int rc;

        rc = sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
        if (rc != SQLITE_OK) {
                sqlite3_close(mem);
                goto unexplained;
        }
        if (scratch_exec(mem, create, err, sizeof(err)) != SQLITE_OK) {
                if (compat_error_is_skew(err)) {
                        add_culprit(r, "table", name, err);
                        found = structural = true;
                }
                goto done;
        }
        rc = sqlite3_prepare_v2(db,
                                "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('index', 'trigger') AND "
                                "tbl_name = ? AND sql IS NOT NULL ORDER BY type, rowid",
                                -1, &parts, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(parts, 1, name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK && build_probes(mem, name, true, sql) < 0)
                rc = SQLITE_NOMEM;
        while (rc == SQLITE_OK && sqlite3_step(parts) == SQLITE_ROW) {
                const char *type = (const char *)sqlite3_column_text(parts, 0);
                const char *part = (const char *)sqlite3_column_text(parts, 1);
                const char *psql = (const char *)sqlite3_column_text(parts, 2);

                if (!type || !part || !psql)
                        continue;
                if (streq(type, "index")) {
                        if (scratch_exec(mem, psql, err, sizeof(err)) != SQLITE_OK && compat_error_is_skew(err)) {
                                add_culprit(r, "index", part, err);
                                found = structural = true;
                        }
                        continue;
                }
                /* A trigger's body is compiled only with the statement that
                 * fires it: create it alone, compile the writes, drop it. */
                if (scratch_exec(mem, psql, err, sizeof(err)) != SQLITE_OK)
                        continue;
                for (int v = VERB_INSERT; v < _VERB_MAX; v++)
                        if (sql[v] && probe_trigger(db, mem, sql[v], err, sizeof(err))) {
                                add_culprit(r, "trigger", part, err);
                                found = true;
                                break;
                        }
                {
                        char drop[512];
                        size_t size;
                        char *q = NULL;
                        FILE *f = open_memstream(&q, &size);

                        if (f) {
                                fputs("DROP TRIGGER ", f);
                                put_ident(f, part);
                                if (fclose(f) == 0)
                                        (void)scratch_exec(mem, q, drop, sizeof(drop));
                        }
                        free(q);
                }
        }
done:
        free_probes(sql);
        sqlite3_finalize(parts);
        sqlite3_close(mem);
        if (found)
                return structural;
unexplained:
        /* A DEFAULT, which only an INSERT evaluates, or something the
         * replay cannot show: the table, with the message its statements
         * got. VACUUM copies rows as they are: it needs neither. */
        add_culprit(r, "table", name, first_error);
        return false;
}

int compat_probe(sqlite3 *db, CompatReport *r) {
        usec_t start = now_usec(CLOCK_MONOTONIC);
        sqlite3_stmt *objects = NULL;
        char err[256];
        int rc;

        *r = (CompatReport){ .quick_check = true, .integrity_check = true, .foreign_key_check = true, .vacuum = true };

        rc = sqlite3_prepare_v2(db,
                                "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('table', 'view') AND name "
                                "NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
                                -1, &objects, NULL);
        if (rc != SQLITE_OK) {
                /* The schema does not load: nothing runs. */
                bufprintf(err, sizeof(err), "%s", sqlite3_errmsg(db));
                if (compat_error_is_skew(err)) {
                        r->restricted = true;
                        r->quick_check = r->integrity_check = r->foreign_key_check = r->vacuum = false;
                        bufprintf(r->quick_check_error, sizeof(r->quick_check_error), "%s", err);
                        bufprintf(r->integrity_check_error, sizeof(r->integrity_check_error), "%s", err);
                        bufprintf(r->foreign_key_check_error, sizeof(r->foreign_key_check_error), "%s", err);
                        bufprintf(r->culprits, sizeof(r->culprits), "%s", err);
                        r->objects = 1;
                }
                r->duration = now_usec(CLOCK_MONOTONIC) - start;
                return rc;
        }
        while ((rc = sqlite3_step(objects)) == SQLITE_ROW) {
                const char *type = (const char *)sqlite3_column_text(objects, 0);
                const char *name = (const char *)sqlite3_column_text(objects, 1);
                const char *create = (const char *)sqlite3_column_text(objects, 2);
                bool view, writable;
                char *sql[_VERB_MAX], first[256] = "", verbs[64] = "", item[512];

                if (!type || !name || !create)
                        continue;
                view = streq(type, "view");
                /* A virtual table's writes go to its module: reading it
                 * already connects it, which is what a newer module option
                 * or format breaks. */
                writable = !view && strncasecmp(create, "CREATE VIRTUAL", 14) != 0;
                if (build_probes(db, name, writable, sql) < 0) {
                        free_probes(sql);
                        rc = SQLITE_NOMEM;
                        break;
                }
                for (int v = 0; v < _VERB_MAX; v++) {
                        if (!sql[v] || try_prepare(db, sql[v], err, sizeof(err)) == SQLITE_OK ||
                            !compat_error_is_skew(err))
                                continue;
                        if (!*first)
                                bufprintf(first, sizeof(first), "%s", err);
                        bufprintf(verbs + strlen(verbs), sizeof(verbs) - strlen(verbs), "%s%s", *verbs ? ", " : "",
                                  verb_names[v]);
                }
                free_probes(sql);
                if (!*first)
                        continue;
                r->restricted = true;
                bufprintf(item, sizeof(item), "%s %s cannot %s", view ? "view" : "table", name, verbs);
                add_item(r->statements, sizeof(r->statements), item);
                if (view || !writable)
                        add_culprit(r, view ? "view" : "table", name, first);
                else if (explain_table(db, name, create, first, r))
                        r->vacuum = false;
        }
        sqlite3_finalize(objects);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
                r->duration = now_usec(CLOCK_MONOTONIC) - start;
                return rc;
        }

        /* sqlvigil's own statements. integrity_check compiles every index
         * expression and CHECK; quick_check the CHECKs. */
        if (try_prepare(db, "PRAGMA quick_check", err, sizeof(err)) != SQLITE_OK && compat_error_is_skew(err)) {
                r->quick_check = false;
                bufprintf(r->quick_check_error, sizeof(r->quick_check_error), "%s", err);
        }
        if (try_prepare(db, "PRAGMA integrity_check", err, sizeof(err)) != SQLITE_OK && compat_error_is_skew(err)) {
                r->integrity_check = false;
                bufprintf(r->integrity_check_error, sizeof(r->integrity_check_error), "%s", err);
        }
        if (try_prepare(db, "PRAGMA foreign_key_check", err, sizeof(err)) != SQLITE_OK && compat_error_is_skew(err)) {
                r->foreign_key_check = false;
                bufprintf(r->foreign_key_check_error, sizeof(r->foreign_key_check_error), "%s", err);
        }
        if (!r->quick_check || !r->integrity_check || !r->foreign_key_check)
                r->restricted = true;
        r->duration = now_usec(CLOCK_MONOTONIC) - start;
        return 0;
}

void compat_unsupported_words(const CompatReport *r, char *buf, size_t size) {
        bufprintf(buf, size, "%s%s%s%s", r->quick_check ? "" : "quick_check ",
                  r->integrity_check ? "" : "integrity_check ", r->foreign_key_check ? "" : "foreign_key_check ",
                  r->vacuum ? "" : "vacuum ");
        if (*buf)
                buf[strlen(buf) - 1] = '\0';
}
