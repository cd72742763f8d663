/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "log.h"
#include "utf8.h"

static LogTarget target = LOG_TARGET_STDERR;
static int max_level = LOG_INFO;
static bool stderr_time = true;
static char *database;

/* Same test as systemd's own log.c: stderr is the journal stream when its
 * device and inode match $JOURNAL_STREAM ("dev:ino"), which systemd sets for
 * units with StandardError=journal. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
}

void log_setup(void) {
        target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
        if (getenv("SQLVIGIL_DEBUG"))
                max_level = LOG_DEBUG;
}

void log_set_stderr_time(bool on) {
        stderr_time = on;
}

void log_set_database(const char *path) {
        free(database);
        database = path ? strdup(path) : NULL;
}

void log_field(LogFields *f, const char *name, const char *fmt, ...) {
        va_list ap;
        int n;

        if (f->n >= LOG_FIELDS_MAX)
                return;
        n = snprintf(f->field[f->n], LOG_FIELD_SIZE, "%s=", name);
        if (n < 0 || n >= LOG_FIELD_SIZE)
                return;
        va_start(ap, fmt);
        (void)vsnprintf(f->field[f->n] + n, LOG_FIELD_SIZE - (size_t)n, fmt, ap);
        va_end(ap);
        f->n++;
}

static const char *level_prefix(int priority) {
        switch (priority) {
        case LOG_EMERG:
        case LOG_ALERT:
        case LOG_CRIT:
        case LOG_ERR:
                return "error: ";
        case LOG_WARNING:
                return "warning: ";
        case LOG_DEBUG:
                return "debug: ";
        default:
                return "";
        }
}

/* "2025-06-01T14:03:07.215+02:00": local time, ISO 8601 with milliseconds
 * and the offset from UTC, as `date +%FT%T.%3N%:z` prints it. Empty when the
 * clock cannot be read as a local time (localtime_r() failing). */
static void format_now(char *buf, size_t size) {
        usec_t now = now_usec(CLOCK_REALTIME);
        time_t sec = (time_t)(now / USEC_PER_SEC);
        struct tm tm;
        long off;
        char date[32];

        buf[0] = '\0';
        if (!localtime_r(&sec, &tm) || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
                return;
        off = tm.tm_gmtoff / 60;
        bufprintf(buf, size, "%s.%03u%c%02ld:%02ld ", date, (unsigned)(now % USEC_PER_SEC / USEC_PER_MSEC),
                  off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
}

/* One line, whatever the message holds: the escaping is utf8.h's. */
static void log_to_stderr(int priority, const char *message, bool with_time) {
        _cleanup_(freep) char *text = utf8_escape_log(message);
        char when[48] = "";

        if (with_time)
                format_now(when, sizeof(when));
        fprintf(stderr, "%ssqlvigil: %s%s\n", when, level_prefix(priority), text ? text : "(out of memory)");
        fflush(stderr);
}

/* NAME=value with value escaped as a log line (utf8.h): journalctl shows a
 * field that is not UTF-8, or holds a newline, only as "[blob data]". */
static char *journal_field(const char *name, const char *value) {
        _cleanup_(freep) char *v = utf8_escape_log(value);

        return v ? strdup_printf("%s=%s", name, v) : NULL;
}

static int log_to_journal(int priority, const char *message_id, const char *event, const LogFields *fields,
                          const char *message) {
        char prio[16], id[64], ev[64];
        _cleanup_(freep) char *msg = NULL, *db = NULL;
        char *extra[LOG_FIELDS_MAX] = { NULL };
        struct iovec iov[8 + LOG_FIELDS_MAX];
        size_t n = 0, n_extra = 0;
        int r = -ENOMEM;

        msg = journal_field("MESSAGE", message);
        if (!msg)
                return -ENOMEM;
        iov[n++] = (struct iovec){ msg, strlen(msg) };
        bufprintf(prio, sizeof(prio), "PRIORITY=%d", priority);
        iov[n++] = (struct iovec){ prio, strlen(prio) };
        iov[n++] = (struct iovec){ (char *)"SYSLOG_IDENTIFIER=sqlvigil", strlen("SYSLOG_IDENTIFIER=sqlvigil") };
        if (message_id) {
                bufprintf(id, sizeof(id), "MESSAGE_ID=%s", message_id);
                iov[n++] = (struct iovec){ id, strlen(id) };
        }
        if (event) {
                bufprintf(ev, sizeof(ev), "SQLVIGIL_EVENT=%s", event);
                iov[n++] = (struct iovec){ ev, strlen(ev) };
        }
        if (database) {
                db = journal_field("SQLVIGIL_DATABASE", database);
                if (!db)
                        return -ENOMEM;
                iov[n++] = (struct iovec){ db, strlen(db) };
        }
        for (size_t i = 0; fields && i < fields->n; i++) {
                const char *f = fields->field[i], *eq = strchr(f, '=');
                _cleanup_(freep) char *name = NULL;

                /* log_field() wrote NAME=value; only the value is escaped. */
                name = eq ? strndup(f, (size_t)(eq - f)) : NULL;
                if (!name || !(extra[n_extra] = journal_field(name, eq + 1)))
                        goto finish;
                iov[n++] = (struct iovec){ extra[n_extra], strlen(extra[n_extra]) };
                n_extra++;
        }
        r = sd_journal_sendv(iov, (int)n);
finish:
        for (size_t i = 0; i < n_extra; i++)
                free(extra[i]);
        return r;
}

void log_event(int priority, const char *message_id, const char *event, const LogFields *fields,
               const char *fmt, ...) {
        char message[2048];
        va_list ap;
        int r;

        if (priority > max_level)
                return;
        va_start(ap, fmt);
        (void)vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        if (target == LOG_TARGET_JOURNAL) {
                r = log_to_journal(priority, message_id, event, fields, message);
                if (r >= 0)
                        return;
                /* Never lose a message: fall back to the stream, which
                 * journald stamps with its own time. */
                log_to_stderr(LOG_WARNING, "cannot send to the journal; logging to stderr", false);
                log_to_stderr(priority, message, false);
                return;
        }
        log_to_stderr(priority, message, stderr_time);
}

void log_notify_failure(int r, const char *what) {
        if (r < 0)
                log_warning("cannot send %s to systemd: %s", what, strerror(-r));
}
