/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Logging for the edges of the program (main and the event handlers).
 *
 * Under journald (stderr is the stream named by $JOURNAL_STREAM) every entry
 * is sent with sd_journal_sendv(): MESSAGE, PRIORITY, SYSLOG_IDENTIFIER,
 * SQLVIGIL_DATABASE and, for events, MESSAGE_ID, SQLVIGIL_EVENT and the
 * event's figures as SQLVIGIL_* fields. Anywhere else, the message is one
 * readable line on stderr, after the local time (ISO 8601 with milliseconds
 * and the UTC offset) so that it lines up with an application's log; the
 * figures are in the message text too.
 *
 * Whatever bytes a message or a field holds (a path, SQLite's error text),
 * what is written is one line of valid UTF-8: control characters and bytes
 * that are not UTF-8 are escaped as utf8.h says (\n, \xNN).
 */

#include <stdarg.h>
#include <syslog.h>

#include "util.h"

#define LOG_FIELDS_MAX 24
#define LOG_FIELD_SIZE 512

/* SQLVIGIL_* fields of one entry, filled with log_field(). */
typedef struct LogFields {
        size_t n;
        char field[LOG_FIELDS_MAX][LOG_FIELD_SIZE];
} LogFields;

typedef enum LogTarget {
        LOG_TARGET_STDERR,
        LOG_TARGET_JOURNAL,
} LogTarget;

/* Chooses the target from $JOURNAL_STREAM and stderr; call once, early. */
void log_setup(void);

/* Whether stderr lines start with the time (the default); --check-config,
 * a command for a terminal, turns it off. Call from the main thread before
 * any other thread runs. */
void log_set_stderr_time(bool on);

/* Adds SQLVIGIL_DATABASE=path to every entry from now on (NULL removes it). */
void log_set_database(const char *path);

/* Appends NAME=value; NAME must be upper case (SQLVIGIL_PAGES). */
void log_field(LogFields *f, const char *name, const char *fmt, ...) _printf_(3, 4);

/* One entry. message_id, event and fields may be NULL. */
void log_event(int priority, const char *message_id, const char *event, const LogFields *fields,
               const char *fmt, ...) _printf_(5, 6);

#define log_error(...) log_event(LOG_ERR, NULL, NULL, NULL, __VA_ARGS__)
#define log_warning(...) log_event(LOG_WARNING, NULL, NULL, NULL, __VA_ARGS__)

/* For the result r of a notify_*() call: a warning that what ("READY=1")
 * could not be sent to systemd when r < 0, nothing otherwise. */
void log_notify_failure(int r, const char *what);
#define log_notice(...) log_event(LOG_NOTICE, NULL, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_event(LOG_INFO, NULL, NULL, NULL, __VA_ARGS__)
#define log_debug(...) log_event(LOG_DEBUG, NULL, NULL, NULL, __VA_ARGS__)
