/* SPDX-License-Identifier: MIT */
#include "lifecycle.h"

const char *const lifecycle_names[_LIFECYCLE_MAX] = {
        [LIFECYCLE_STARTING] = "starting",
        [LIFECYCLE_RUNNING] = "running",
        [LIFECYCLE_RELOADING] = "reloading",
        [LIFECYCLE_STOPPING] = "stopping",
};

bool lifecycle_allows(Lifecycle state, NotifyKind kind) {
        switch (kind) {
        case NOTIFY_READY:
                return state == LIFECYCLE_STARTING || state == LIFECYCLE_RELOADING;
        case NOTIFY_RELOADING:
                return state == LIFECYCLE_RUNNING;
        case NOTIFY_STATUS:
                return state != LIFECYCLE_STOPPING;
        case NOTIFY_WATCHDOG:
                return state == LIFECYCLE_RUNNING || state == LIFECYCLE_RELOADING;
        case NOTIFY_STOPPING:
                return state != LIFECYCLE_STOPPING;
        case NOTIFY_EXTEND_TIMEOUT:
        case NOTIFY_STOPPING_STATUS:
                return state == LIFECYCLE_STOPPING;
        default:
                return false;
        }
}

Lifecycle lifecycle_next(Lifecycle state, NotifyKind kind) {
        if (!lifecycle_allows(state, kind))
                return state;
        switch (kind) {
        case NOTIFY_READY:
                return LIFECYCLE_RUNNING;
        case NOTIFY_RELOADING:
                return LIFECYCLE_RELOADING;
        case NOTIFY_STOPPING:
                return LIFECYCLE_STOPPING;
        default:
                return state;
        }
}
