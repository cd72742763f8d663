/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "status.h"

void status_line(const Status *s, usec_t now, char *buf, size_t size) {
        char wal[32], ago[32], last[256] = "";
        size_t off = 0;

        /* "...; last checkpoint 12s ago, vacuum 5min ago": every task that ran. */
        for (int t = 0; t < _TASK_MAX; t++) {
                const TaskRun *r = &s->last[t];
                int n;

                /* A backup's age is that of the newest backup, below. */
                if (!r->valid || t == TASK_BACKUP)
                        continue;
                n = snprintf(last + off, sizeof(last) - off, "%s%s %s ago", off ? ", " : "; last ", task_names[t],
                             format_elapsed(ago, sizeof(ago), now > r->at ? now - r->at : 0));
                if (n < 0 || (size_t)n >= sizeof(last) - off)
                        break;
                off += (size_t)n;
        }
        if (s->backups.configured && s->backups.have_newest)
                (void)snprintf(last + off, sizeof(last) - off, "%sbackup %s ago", off ? ", " : "; last ",
                               format_elapsed(ago, sizeof(ago),
                                              now > s->backups.newest_time ? now - s->backups.newest_time : 0));
        else if (s->backups.configured && s->backups.known)
                (void)snprintf(last + off, sizeof(last) - off, "; no backup yet");
        format_bytes(wal, sizeof(wal), s->files.wal_bytes);
        bufprintf(buf, size, "%s%s%s; WAL %s; %" PRIi64 " free pages%s", health_state_names[s->health.state],
                  s->health.state == HEALTH_OK ? "" : ": ", s->health.state == HEALTH_OK ? "" : s->health.reason, wal,
                  s->freelist_count, last);
}

uint64_t status_rss_bytes(void) {
        unsigned long size, resident;
        FILE *f = fopen("/proc/self/statm", "re");
        int n;

        if (!f)
                return 0;
        n = fscanf(f, "%lu %lu", &size, &resident);
        fclose(f);
        if (n != 2)
                return 0;
        return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}
