/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>

#include "util.h"
#include "watch.h"

struct Watch {
        sd_event_source *dir;
        WatchHandler handler;
        void *userdata;
        char *base;   /* the database's file name */
        size_t base_len;
};

/* One of base, base-wal, base-shm, base-journal. */
static bool ours(const Watch *w, const char *name, bool *ret_db) {
        *ret_db = streq(name, w->base);
        if (*ret_db)
                return true;
        if (strncmp(name, w->base, w->base_len) != 0)
                return false;
        name += w->base_len;
        return streq(name, "-wal") || streq(name, "-shm") || streq(name, "-journal");
}

static int on_dir(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        Watch *w = userdata;
        bool db = false;

        (void)s;
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_Q_OVERFLOW)) {
                w->handler(w->userdata, WATCH_NAMES);
                return 0;
        }
        if (ev->len == 0 || !ours(w, ev->name, &db))
                return 0;
        if (ev->mask & IN_CLOSE_WRITE) {
                if (db)
                        w->handler(w->userdata, WATCH_DB_WRITTEN);
                return 0;
        }
        w->handler(w->userdata, WATCH_NAMES);
        return 0;
}

int watch_new(Watch **ret, sd_event *event, const char *db_path, WatchHandler handler, void *userdata) {
        char dir[4096], base[4096];
        Watch *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->handler = handler;
        w->userdata = userdata;
        bufprintf(dir, sizeof(dir), "%s", db_path);
        bufprintf(base, sizeof(base), "%s", db_path);
        w->base = strdup(basename(base));
        if (!w->base) {
                free(w);
                return -ENOMEM;
        }
        w->base_len = strlen(w->base);
        /* No IN_MODIFY: every commit of every application modifies the
         * -wal, thousands of times a second under load. */
        r = sd_event_add_inotify(event, &w->dir, dirname(dir),
                                 IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_CLOSE_WRITE |
                                         IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR,
                                 on_dir, w);
        if (r < 0) {
                watch_free(w);
                return r;
        }
        (void)sd_event_source_set_description(w->dir, "files-watch");
        *ret = w;
        return 0;
}

Watch *watch_free(Watch *w) {
        if (!w)
                return NULL;
        sd_event_source_disable_unref(w->dir);
        free(w->base);
        free(w);
        return NULL;
}
