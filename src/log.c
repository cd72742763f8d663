/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "log.h"

static LogTarget target = LOG_TARGET_STDERR;
static int max_level = LOG_INFO;
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

static void log_to_stderr(int priority, const char *message) {
        fprintf(stderr, "sqlvigil: %s%s\n", level_prefix(priority), message);
        fflush(stderr);
}

static int log_to_journal(int priority, const char *message_id, const char *event, const LogFields *fields,
                          const char *message) {
        char prio[16], id[64], ev[64];
        _cleanup_(freep) char *msg = NULL, *db = NULL;
        struct iovec iov[8 + LOG_FIELDS_MAX];
        size_t n = 0;

        msg = strdup_printf("MESSAGE=%s", message);
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
                db = strdup_printf("SQLVIGIL_DATABASE=%s", database);
                if (!db)
                        return -ENOMEM;
                iov[n++] = (struct iovec){ db, strlen(db) };
        }
        for (size_t i = 0; fields && i < fields->n; i++)
                iov[n++] = (struct iovec){ (char *)fields->field[i], strlen(fields->field[i]) };

        return sd_journal_sendv(iov, (int)n);
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
                /* Never lose a message: fall back to the stream. */
                log_to_stderr(LOG_WARNING, "cannot send to the journal; logging to stderr");
        }
        log_to_stderr(priority, message);
}

void log_notify_failure(int r, const char *what) {
        if (r < 0)
                log_warning("cannot send %s to systemd: %s", what, strerror(-r));
}
