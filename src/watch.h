/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Watching the database's directory with inotify (sd_event_add_inotify()):
 * a rename over, a deletion or a new file among the database, its -wal,
 * -shm and -journal, the directory itself moved or deleted, and a program
 * closing the database file after writing it. Each says "look now", so a
 * displaced file is noticed within milliseconds, not at the next health
 * round (which still looks, for file systems whose changes inotify cannot
 * see: NFS, CIFS, another host).
 */

#include <stdbool.h>

#include <systemd/sd-event.h>

typedef struct Watch Watch;

typedef enum WatchEvent {
        WATCH_NAMES,      /* one of the names was created, deleted, renamed; or the directory moved */
        WATCH_DB_WRITTEN, /* a program that wrote the database file closed it (cp over it, say) */
} WatchEvent;

typedef void (*WatchHandler)(void *userdata, WatchEvent event);

/* Watches the directory of db_path. 0 or a negative errno (the daemon then
 * relies on the health rounds). Loop thread. */
int watch_new(Watch **ret, sd_event *event, const char *db_path, WatchHandler handler, void *userdata);
Watch *watch_free(Watch *w);
