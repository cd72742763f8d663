/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The pragmas sqlvigil knows: their value syntax, whom they shape (their
 * scope), and how a requested value compares with what SQLite reports back.
 *
 * A pragma set in sqlvigil.conf shapes one of three things:
 *   file         the database file, for every connection (journal_mode,
 *                page_size, auto_vacuum): sqlvigil sets it for everyone;
 *   sqlvigil     sqlvigil's own connection only (busy_timeout, cache_size,
 *                synchronous, mmap_size, ...): the applications' connections
 *                keep their own values;
 *   application  a per-connection setting only each application can make for
 *                itself (foreign_keys): sqlvigil cannot set it for them, so it
 *                does not apply it at all and reports it as such. Teams that
 *                move an application's pragmas into sqlvigil.conf would
 *                otherwise believe their connections are protected.
 *
 * Values are kept as SQLite's own integers (auto_vacuum 0/1/2, synchronous
 * 0..3, temp_store 0..2, booleans 0/1). journal_mode is the exception: SQLite
 * reports it as text, and sqlvigil only supervises WAL databases, so its one
 * accepted value is "wal" (stored as 0).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum PragmaId {
        /* Persistent: stored in the database file. Order matters when they are
         * applied to a new file: page_size and auto_vacuum must be set before
         * the first write, which switching to WAL is. */
        PRAGMA_PAGE_SIZE,
        PRAGMA_AUTO_VACUUM,
        PRAGMA_JOURNAL_MODE,
        /* Per-connection: shape sqlvigil's own connection only... */
        PRAGMA_BUSY_TIMEOUT,
        PRAGMA_CACHE_SIZE,
        PRAGMA_SYNCHRONOUS,
        PRAGMA_MMAP_SIZE,
        PRAGMA_TEMP_STORE,
        /* ...or, for scope application, nobody's: never applied. */
        PRAGMA_FOREIGN_KEYS,
        PRAGMA_WAL_AUTOCHECKPOINT,
        PRAGMA_JOURNAL_SIZE_LIMIT,
        _PRAGMA_MAX,
} PragmaId;

typedef enum PragmaType {
        PRAGMA_TYPE_ENUM,  /* one of names[], stored as its index */
        PRAGMA_TYPE_INT,   /* a signed integer within [min, max] */
        PRAGMA_TYPE_SIZE,  /* a size ("64M") within [min, max]; may also take -1 */
        PRAGMA_TYPE_BOOL,
} PragmaType;

/* Whom a pragma set in sqlvigil.conf shapes. */
typedef enum PragmaScope {
        PRAGMA_SCOPE_FILE,        /* the database file, for every connection: journal_mode, page_size, auto_vacuum */
        PRAGMA_SCOPE_SQLVIGIL,    /* sqlvigil's own connection only; the applications keep their own values */
        PRAGMA_SCOPE_APPLICATION, /* a per-connection setting only each application can make for itself:
                                   * sqlvigil does not apply it (it would change nothing for anyone) */
        _PRAGMA_SCOPE_MAX,
} PragmaScope;

/* Stable words for the control socket's JSON and the journal ("file",
 * "sqlvigil", "application"), and phrases for people ("the database file"). */
extern const char *const pragma_scope_names[_PRAGMA_SCOPE_MAX];
extern const char *const pragma_scope_phrases[_PRAGMA_SCOPE_MAX];

typedef struct PragmaInfo {
        const char *name;
        PragmaScope scope;
        bool persistent;          /* stored in the file (scope FILE) */
        const char *purpose;      /* for scope application: what the applications get from it */
        PragmaType type;
        const char *const *names; /* PRAGMA_TYPE_ENUM: NULL-terminated */
        int64_t min, max;
        const char *expect; /* what a valid value looks like, for error messages */
} PragmaInfo;

extern const PragmaInfo pragma_info[_PRAGMA_MAX];

/* Parses a configuration value. On -EINVAL or -ERANGE, writes why into err
 * (a phrase such as "expected one of: off, normal, full, extra"). */
int pragma_parse_value(PragmaId id, const char *text, int64_t *ret, char *err, size_t err_size);

/* Formats a value the way the configuration file spells it. */
void pragma_format_value(PragmaId id, int64_t value, char *buf, size_t size);

/* Converts SQLite's read-back text (PRAGMA x; returns "2", "wal", ...) into
 * our value. Returns false when the text is not a value of this pragma (for
 * example journal_mode "delete"). */
bool pragma_value_from_sqlite(PragmaId id, const char *text, int64_t *ret);

/* What a requested value is worth a word about, beyond its outcome. */
typedef enum PragmaNote {
        PRAGMA_NOTE_NONE,
        PRAGMA_NOTE_APPLICATION, /* scope application: not applied, each application must set it */
        PRAGMA_NOTE_MMAP,        /* mmap_size > 0: only sqlvigil's connection maps the file, for no gain */
} PragmaNote;

/* Whether requesting value for id deserves a note, and the note: one
 * sentence, without the place it was set ("foreign_keys = on is a
 * per-connection setting ..."). Pure. */
PragmaNote pragma_note(PragmaId id, int64_t value, char *buf, size_t size);

/* Whether name is a per-connection pragma that only applications can set
 * (recursive_triggers, defer_foreign_keys, ...) and that sqlvigil.conf does
 * not take at all; foreign_keys, which it takes with a warning, is not in
 * this list. */
bool pragma_is_application_only(const char *name);
