/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util.h"
#include "walindex.h"

#define WALINDEX_VERSION 3007000
#define HDR_SIZE 48
#define CKPT_INFO 96
#define LOCK_BASE 120 /* WALINDEX_LOCK_OFFSET */
#define READ_LOCK_0 (LOCK_BASE + 3)

static uint32_t u32_at(const unsigned char *p) {
        uint32_t v;

        memcpy(&v, p, sizeof(v));
        return v;
}

int walindex_read(int fd, WalIndex *ret) {
        unsigned char buf[CKPT_INFO + 4 * (1 + WALINDEX_READERS)];
        ssize_t n = 0;
        int r = WALINDEX_E_UNINITIALIZED;

        if (fd < 0)
                return WALINDEX_E_UNINITIALIZED;
        /* The writer updates the two header copies one after the other; SQLite
         * itself retries until they agree, and so do we. */
        for (int attempt = 0; attempt < 5; attempt++) {
                n = pread(fd, buf, sizeof(buf), 0);
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if ((size_t)n < sizeof(buf))
                        break;
                if (memcmp(buf, buf + HDR_SIZE, HDR_SIZE) != 0)
                        continue;
                if (u32_at(buf) != WALINDEX_VERSION || buf[12] != 1)
                        break;
                ret->mx_frame = u32_at(buf + 16);
                ret->salt = u32_at(buf + 32);
                ret->n_backfill = u32_at(buf + CKPT_INFO);
                for (int i = 0; i < WALINDEX_READERS; i++)
                        ret->read_mark[i] = u32_at(buf + CKPT_INFO + 4 + 4 * i);
                r = 0;
                break;
        }
        return r;
}

static void read_comm(pid_t pid, char *buf, size_t size) {
        char path[64];
        FILE *f;

        bufprintf(buf, size, "?");
        bufprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return; /* gone, or hidden from us (ProtectProc=invisible) */
        if (fgets(buf, (int)size, f))
                buf[strcspn(buf, "\n")] = '\0';
        else
                bufprintf(buf, size, "?");
        fclose(f);
}

static char *slurp_proc_locks(void) {
        size_t size = 0, cap = 0;
        char *text = NULL;
        FILE *f;

        f = fopen("/proc/locks", "re");
        if (!f)
                return NULL;
        for (;;) {
                size_t n;

                if (cap - size < 4096) {
                        char *t = realloc(text, cap + 65536);

                        if (!t) {
                                free(text);
                                fclose(f);
                                errno = ENOMEM;
                                return NULL;
                        }
                        text = t;
                        cap += 65536;
                }
                n = fread(text + size, 1, cap - size - 1, f);
                size += n;
                if (n == 0)
                        break;
        }
        if (ferror(f)) {
                free(text);
                fclose(f);
                errno = EIO;
                return NULL;
        }
        fclose(f);
        text[size] = '\0';
        return text;
}

int walindex_readers(const char *locks_text, dev_t dev, ino_t ino, const WalIndex *wi, pid_t self,
                     WalReader *out, size_t max, size_t *ret_n) {
        _cleanup_(freep) char *owned = NULL;
        WalReader found[64];
        size_t n = 0, k = 0;
        const char *line;

        if (!locks_text) {
                owned = slurp_proc_locks();
                if (!owned)
                        return -errno;
                locks_text = owned;
        }

        /* Lines look like "3: POSIX  ADVISORY  READ 12670 fe:00:10953666 123 123";
         * waiters are "3: -> POSIX ..." and hold nothing yet. */
        for (line = locks_text; *line && n < ELEMENTSOF(found); line = strchrnul(line, '\n'), line += *line == '\n') {
                char kind[16], mode[16], access[16];
                unsigned maj, min;
                unsigned long long lino;
                char start_s[32], end_s[32];
                long long start, end;
                int pid;

                if (sscanf(line, "%*d: %15s %15s %15s %d %x:%x:%llu %31s %31s", kind, mode, access, &pid, &maj, &min,
                           &lino, start_s, end_s) != 9)
                        continue;
                if (strcmp(kind, "POSIX") != 0 && strcmp(kind, "OFDLCK") != 0)
                        continue;
                if (lino != (unsigned long long)ino || maj != major(dev) || min != minor(dev))
                        continue;
                if (pid == (int)self)
                        continue;
                start = atoll(start_s);
                end = strcmp(end_s, "EOF") == 0 ? INT64_MAX : atoll(end_s);
                for (int slot = 0; slot < WALINDEX_READERS; slot++) {
                        long long byte = READ_LOCK_0 + slot;

                        if (start > byte || end < byte || n >= ELEMENTSOF(found))
                                continue;
                        found[n] = (WalReader){ .pid = pid, .slot = slot };
                        found[n].mark = wi ? wi->read_mark[slot] : 0;
                        found[n].blocks_backfill = wi && slot > 0 && found[n].mark < wi->mx_frame;
                        n++;
                }
        }

        /* Blockers of backfill first, then those that only prevent a reset. */
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < n; i++)
                        if (found[i].blocks_backfill == (pass == 0) && k < max) {
                                out[k] = found[i];
                                read_comm(out[k].pid, out[k].comm, sizeof(out[k].comm));
                                k++;
                        }
        *ret_n = k;
        return 0;
}

void walindex_format_readers(const WalReader *r, size_t n, uint32_t mx_frame, char *buf, size_t size) {
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && off < size; i++) {
                int w;

                if (r[i].slot == 0)
                        w = snprintf(buf + off, size - off, "%spid %d (%s), reading the database file", i ? "; " : "",
                                     (int)r[i].pid, r[i].comm);
                else
                        w = snprintf(buf + off, size - off, "%spid %d (%s), reading frame %" PRIu32 " of %" PRIu32,
                                     i ? "; " : "", (int)r[i].pid, r[i].comm, r[i].mark, mx_frame);
                if (w < 0)
                        break;
                off += (size_t)w;
        }
}
