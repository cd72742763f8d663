/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "notify.h"
#include "utf8.h"

/* STATUS= is one line; a newline would end the field and start garbage.
 * systemd also ignores a STATUS= that is not UTF-8, so the text is escaped
 * as a log line is (utf8.h), and cut only between characters. */
static const char *one_line(const char *status, char *buf, size_t size) {
        _cleanup_(freep) char *e = utf8_escape_log(status);
        size_t n, len, total;

        if (!e) {
                buf[0] = '\0';
                return buf;
        }
        total = strlen(e);
        for (n = 0; n < total; n += len) {
                (void)utf8_decode(e + n, total - n, &len);
                if (n + len + 1 > size)
                        break;
        }
        memcpy(buf, e, n);
        buf[n] = '\0';
        return buf;
}

/* Sends text if state allows kind, and moves state on. */
static int send_message(Lifecycle *state, NotifyKind kind, const char *text) {
        int r;

        if (!lifecycle_allows(*state, kind))
                return NOTIFY_E_REFUSED;
        *state = lifecycle_next(*state, kind);
        r = sd_notify(0, text);
        return r;
}

int notify_ready(Lifecycle *state, const char *status) {
        char buf[512], text[600];

        bufprintf(text, sizeof(text), "READY=1\nSTATUS=%s", one_line(status, buf, sizeof(buf)));
        return send_message(state, NOTIFY_READY, text);
}

int notify_status(Lifecycle *state, const char *status) {
        char buf[512], text[600];

        bufprintf(text, sizeof(text), "STATUS=%s", one_line(status, buf, sizeof(buf)));
        return send_message(state, NOTIFY_STATUS, text);
}

int notify_stopping_status(Lifecycle *state, const char *status) {
        char buf[512], text[600];

        bufprintf(text, sizeof(text), "STATUS=%s", one_line(status, buf, sizeof(buf)));
        return send_message(state, NOTIFY_STOPPING_STATUS, text);
}

int notify_watchdog(Lifecycle *state) {
        return send_message(state, NOTIFY_WATCHDOG, "WATCHDOG=1");
}

int notify_stopping(Lifecycle *state, const char *status) {
        char buf[512], text[600];

        bufprintf(text, sizeof(text), "STOPPING=1\nSTATUS=%s", one_line(status, buf, sizeof(buf)));
        return send_message(state, NOTIFY_STOPPING, text);
}

int notify_reloading(Lifecycle *state) {
        char text[128];

        /* MONOTONIC_USEC= is read by systemd 253+ (Type=notify-reload) and
         * ignored by 252; sending it costs nothing and is forward-compatible. */
        bufprintf(text, sizeof(text), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec(CLOCK_MONOTONIC));
        return send_message(state, NOTIFY_RELOADING, text);
}

int notify_extend_timeout(Lifecycle *state, usec_t usec) {
        char text[64];

        bufprintf(text, sizeof(text), "EXTEND_TIMEOUT_USEC=%" PRIu64, usec);
        return send_message(state, NOTIFY_EXTEND_TIMEOUT, text);
}
