/* SPDX-License-Identifier: MIT */
/*
 * Version skew: which SQLite messages mean "this SQLite lacks what the
 * database uses" rather than damage, and what the prepare-only probe finds
 * and names. The "newer" schema is made in memory with this SQLite alone:
 * objects created with functions it has, their stored SQL rewritten
 * (writable_schema) to functions it does not have.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "test.h"

static void test_classify(void) {
        /* The deferred kind: an unknown function, at prepare. */
        CHECK(compat_error_is_skew("unknown function: jsonb_extract()"));
        CHECK(compat_error_is_skew("PRAGMA integrity_check(100): unknown function: jsonb_extract() (SQL logic error, code 1)"));
        CHECK(compat_error_is_skew("no such function: unistr"));
        CHECK(compat_error_is_skew("wrong number of arguments to function iif()"));
        CHECK(compat_error_is_skew("no such module: vec0"));
        CHECK(compat_error_is_skew("unrecognized option: \"contentless_delete\""));
        CHECK(compat_error_is_skew("invalid fts5 file format (found 5, expected 4) - run 'rebuild'"));
        /* The schema that does not load. */
        CHECK(compat_error_is_skew("malformed database schema (c) - unrecognized token: \"1_000_000\""));
        CHECK(compat_error_is_skew("malformed database schema (v) - near \"ORDER\": syntax error"));
        /* Damage stays damage. */
        CHECK(!compat_error_is_skew("malformed database schema (t) - invalid rootpage"));
        CHECK(!compat_error_is_skew("malformed database schema (i) - orphan index"));
        CHECK(!compat_error_is_skew("database disk image is malformed"));
        CHECK(!compat_error_is_skew("disk I/O error"));
        CHECK(!compat_error_is_skew("near \"SELEC\": syntax error")); /* our own SQL: a bug, not skew */
        CHECK(!compat_error_is_skew(NULL));
}

static void test_version(void) {
        char buf[32];

        compat_format_version(3053002, buf, sizeof(buf));
        CHECK_STR(buf, "3.53.2");
        compat_format_version(3040001, buf, sizeof(buf));
        CHECK_STR(buf, "3.40.1");
        compat_format_version(0, buf, sizeof(buf));
        CHECK_STR(buf, "");
}

static int exec(sqlite3 *db, const char *sql) {
        return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void test_probe(void) {
        sqlite3 *db = NULL;
        CompatReport r;

        CHECK_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
        CHECK_INT(exec(db, "CREATE TABLE plain(id INTEGER PRIMARY KEY, v TEXT);"
                           "CREATE INDEX plain_v ON plain(lower(v));"
                           "CREATE VIEW vplain AS SELECT v FROM plain;"),
                  SQLITE_OK);
        CHECK_INT(compat_probe(db, &r), 0);
        CHECK(!r.restricted);
        CHECK(r.quick_check && r.integrity_check && r.foreign_key_check && r.vacuum);
        CHECK_INT(r.objects, 0);

        sqlite3_close(db);
        db = NULL;
        /* A rewritten schema takes effect when it is read again, by a new
         * connection: the file is made, closed and opened again. */
        {
                char path[] = "/tmp/test-compat-XXXXXX";
                int fd = mkstemp(path);

                CHECK(fd >= 0);
                if (fd < 0)
                        return;
                close(fd);
                CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
                CHECK_INT(exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, doc TEXT);"
                                   "CREATE INDEX t_a ON t(json_extract(doc, '$.a'));"
                                   "CREATE TABLE c(id INTEGER PRIMARY KEY, hx TEXT CHECK (hex(hx) IS NOT NULL));"
                                   "CREATE TABLE g(id INTEGER PRIMARY KEY, x INT);"
                                   "CREATE TABLE glog(msg TEXT);"
                                   "CREATE TRIGGER g_ai AFTER INSERT ON g BEGIN INSERT INTO glog VALUES (upper('x')); "
                                   "END;"
                                   "CREATE VIEW v AS SELECT 1 AS x;"
                                   "PRAGMA writable_schema = ON;"
                                   "UPDATE sqlite_schema SET sql = 'CREATE INDEX t_a ON t(jsonb_extract(doc, "
                                   "''$.a''))' WHERE name = 't_a';"
                                   "UPDATE sqlite_schema SET sql = 'CREATE TABLE c(id INTEGER PRIMARY KEY, hx TEXT "
                                   "CHECK (unhex(hx) IS NOT NULL))' WHERE name = 'c';"
                                   "UPDATE sqlite_schema SET sql = 'CREATE TRIGGER g_ai AFTER INSERT ON g BEGIN "
                                   "INSERT INTO glog VALUES (concat_ws(''-'', ''a'', ''b'')); END' "
                                   "WHERE name = 'g_ai';"
                                   "UPDATE sqlite_schema SET sql = 'CREATE VIEW v AS SELECT unistr(''x'') AS x' "
                                   "WHERE name = 'v';"
                                   "PRAGMA writable_schema = OFF;"),
                          SQLITE_OK);
                sqlite3_close(db);
                CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
                unlink(path);
        }
        CHECK_INT(compat_probe(db, &r), 0);
        CHECK(r.restricted);
        /* A CHECK on unhex(): even quick_check; the index: integrity_check. */
        CHECK(!r.quick_check);
        CHECK(!r.integrity_check);
        CHECK(r.foreign_key_check);
        CHECK(!r.vacuum);
        CHECK(strstr(r.quick_check_error, "unhex") != NULL);
        CHECK_INT(r.objects, 4);
        CHECK(strstr(r.culprits, "index t_a: no such function: jsonb_extract") != NULL);
        CHECK(strstr(r.culprits, "table c: no such function: unhex") != NULL);
        CHECK(strstr(r.culprits, "trigger g_ai: no such function: concat_ws") != NULL);
        CHECK(strstr(r.culprits, "view v: no such function: unistr") != NULL);
        CHECK(strstr(r.statements, "table t cannot INSERT, UPDATE, DELETE") != NULL);
        CHECK(strstr(r.statements, "table g cannot INSERT") != NULL);
        CHECK(strstr(r.statements, "view v cannot SELECT") != NULL);
        {
                char words[128];

                compat_unsupported_words(&r, words, sizeof(words));
                CHECK_STR(words, "quick_check integrity_check vacuum");
        }
        sqlite3_close(db);
}

int main(void) {
        test_classify();
        test_version();
        test_probe();
        return test_result("test-compat");
}
