/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon's life cycle as systemd sees it, and which sd_notify(3)
 * messages each stage allows. Every message sqlvigil sends goes through
 * lifecycle_send() (notify.c), so the rules hold by construction:
 *
 *   starting  -> READY=1 -> running -> RELOADING=1 -> reloading -> READY=1 -> running
 *   any       -> STOPPING=1 -> stopping (for good)
 *
 *   STATUS=      starting, running, reloading; in stopping the one sent with STOPPING=1,
 *                then only a stopping STATUS= (what the stop now waits for, e.g. the
 *                rescue holding off a process: rescue.h)
 *   WATCHDOG=1   running, reloading (systemd enforces the watchdog there)
 *   EXTEND_TIMEOUT_USEC=  stopping
 *
 * Stop wins: once STOPPING=1 is sent, no READY=1, RELOADING=1 or other
 * STATUS= follows, whatever else is in flight. Pure; unit-tested.
 */

#include <stdbool.h>

typedef enum Lifecycle {
        LIFECYCLE_STARTING,
        LIFECYCLE_RUNNING,
        LIFECYCLE_RELOADING,
        LIFECYCLE_STOPPING,
        _LIFECYCLE_MAX,
} Lifecycle;

typedef enum NotifyKind {
        NOTIFY_READY,
        NOTIFY_RELOADING,
        NOTIFY_STATUS,
        NOTIFY_WATCHDOG,
        NOTIFY_STOPPING,
        NOTIFY_EXTEND_TIMEOUT,
        NOTIFY_STOPPING_STATUS, /* STATUS= about the stop itself */
        _NOTIFY_KIND_MAX,
} NotifyKind;

/* "starting", "running", "reloading", "stopping": the stats' process.state. */
extern const char *const lifecycle_names[_LIFECYCLE_MAX];

/* Whether a message of kind may be sent in state. */
bool lifecycle_allows(Lifecycle state, NotifyKind kind);

/* The state after a message of kind was sent in state (state itself when
 * the message changes nothing, or was not allowed). */
Lifecycle lifecycle_next(Lifecycle state, NotifyKind kind);
