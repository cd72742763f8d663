/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The sd_notify(3) messages sqlvigil sends, in one place, each checked
 * against the life cycle (lifecycle.h) and moving it on. Each returns what
 * sd_notify() returns - > 0 sent, 0 no $NOTIFY_SOCKET (not under systemd),
 * a negative errno on failure - or NOTIFY_E_REFUSED when the life cycle
 * does not allow the message now (nothing is sent). Callers log failures.
 * Loop thread only.
 */

#include "lifecycle.h"
#include "util.h"

enum {
        NOTIFY_E_REFUSED = 1000, /* not allowed in this state: not sent */
};

int notify_ready(Lifecycle *state, const char *status);
int notify_status(Lifecycle *state, const char *status);
int notify_watchdog(Lifecycle *state);
int notify_stopping(Lifecycle *state, const char *status);
/* STATUS= while stopping: what the stop now waits for. */
int notify_stopping_status(Lifecycle *state, const char *status);
int notify_reloading(Lifecycle *state);
int notify_extend_timeout(Lifecycle *state, usec_t usec);
