/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The sd_notify(3) messages sqlvigil sends, in one place. Each returns what
 * sd_notify() returns: > 0 sent, 0 no $NOTIFY_SOCKET (not under systemd),
 * negative errno on failure. Callers log failures.
 */

#include "util.h"

int notify_ready(const char *status);
int notify_status(const char *status);
int notify_watchdog(void);
int notify_stopping(const char *status);
int notify_reloading(void);
int notify_extend_timeout(usec_t usec);
