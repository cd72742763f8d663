/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Version skew: a database written by a newer SQLite than the one sqlvigil
 * links. An application whose driver bundles its own SQLite (3.53, say) may
 * put into the schema what Debian's 3.40 does not know: an index on
 * jsonb_extract(), a CHECK on unhex(), a view on unistr(), digit separators.
 * Two kinds of failure follow (see /work/notes/version-skew.md):
 *
 *   - new syntax, or a known function with a new number of arguments: the
 *     schema does not load at all, every statement fails with
 *     SQLITE_CORRUPT "malformed database schema (X) - <parse error>";
 *   - an unknown function: the schema loads, and only the statements that
 *     compile the object fail, at prepare, with SQLITE_ERROR "unknown
 *     function: F()" or "no such function: F" (integrity_check with an index
 *     on F, quick_check with a CHECK on F, INSERT into the table, ...).
 *
 * Neither is corruption, and neither is fixed by a restart or a recovery:
 * sqlvigil says what it cannot do and why, and never reacts to them as to a
 * damaged file. This module classifies SQLite's messages (pure) and, at
 * start, finds out with prepare-only probes what this SQLite cannot do with
 * the database: nothing is ever stepped, so nothing is written or locked.
 */

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "util.h"

/* Whether SQLite's message says this SQLite lacks something the database
 * uses (an unknown function, new syntax in the schema, an unknown module,
 * FTS5's newer format), rather than that the file is damaged. Pure. */
bool compat_error_is_skew(const char *message);

/* "3.53.2" for SQLITE_VERSION_NUMBER-style 3053002; "" for 0. */
void compat_format_version(uint32_t number, char *buf, size_t size);

/* What sqlvigil's SQLite cannot do with the database. */
typedef struct CompatReport {
        bool restricted;        /* something the database holds fails with this SQLite */
        uint32_t file_version;  /* header bytes 96-99: the SQLite of the last writer of
                                 * page 1 (a hint: any write may restamp it), 0 unknown */
        /* sqlvigil's own operations: false when this SQLite cannot run them
         * here, with SQLite's message. */
        bool quick_check, integrity_check, foreign_key_check, vacuum;
        char quick_check_error[256];
        char integrity_check_error[256];
        char foreign_key_check_error[256];
        /* The objects that fail, each with SQLite's message: "index t_a: no
         * such function: jsonb_extract; view v: no such function: unistr". */
        unsigned objects;
        char culprits[1024];
        /* What the applications' statements could not do with this SQLite,
         * for other clients that link it (the sqlite3 shell, scripts):
         * "table t cannot INSERT, UPDATE, DELETE; view v cannot SELECT". */
        char statements[512];
        usec_t duration;
} CompatReport;

/*
 * Probes the database open on db (read-write: a read-only connection drops
 * CHECK constraints while loading the schema, and would miss them):
 * prepares, for every table, SELECT, INSERT, UPDATE and DELETE statements
 * that never run, SELECT for every view, and the PRAGMAs sqlvigil runs;
 * then names each object that fails by replaying it into a private
 * in-memory database. Cost: about 10 us per statement prepared; 30 ms for
 * 1,600 objects, 130-230 ms for 5,334 (two cores). The caller fills
 * file_version.
 * 0, or SQLite's code when the schema itself cannot be read (the report
 * then says so in quick_check_error).
 */
int compat_probe(sqlite3 *db, CompatReport *ret);

/* The operations of sqlvigil the report says it cannot run, as words
 * ("integrity_check vacuum"); "" for none. */
void compat_unsupported_words(const CompatReport *r, char *buf, size_t size);
