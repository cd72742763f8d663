/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "notify.h"

/* STATUS= is one line; a newline would end the field and start garbage. */
static const char *one_line(const char *status, char *buf, size_t size) {
        size_t i;

        for (i = 0; status[i] && i + 1 < size; i++)
                buf[i] = status[i] == '\n' ? ' ' : status[i];
        buf[i] = '\0';
        return buf;
}

int notify_ready(const char *status) {
        char buf[512];

        return sd_notifyf(0, "READY=1\nSTATUS=%s", one_line(status, buf, sizeof(buf)));
}

int notify_status(const char *status) {
        char buf[512];

        return sd_notifyf(0, "STATUS=%s", one_line(status, buf, sizeof(buf)));
}

int notify_watchdog(void) {
        return sd_notify(0, "WATCHDOG=1");
}

int notify_stopping(const char *status) {
        char buf[512];

        return sd_notifyf(0, "STOPPING=1\nSTATUS=%s", one_line(status, buf, sizeof(buf)));
}

int notify_reloading(void) {
        /* MONOTONIC_USEC= is read by systemd 253+ (Type=notify-reload) and
         * ignored by 252; sending it costs nothing and is forward-compatible. */
        return sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec(CLOCK_MONOTONIC));
}

int notify_extend_timeout(usec_t usec) {
        return sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%" PRIu64, usec);
}
