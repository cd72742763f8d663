/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
                {
                        uint16_t sz;

                        memcpy(&sz, buf + 14, sizeof(sz));
                        /* 65536 does not fit: SQLite stores it as 1. */
                        ret->page_size = sz == 1 ? 65536 : sz;
                }
                ret->salt = u32_at(buf + 32);
                ret->salt2 = u32_at(buf + 36);
                ret->n_backfill = u32_at(buf + CKPT_INFO);
                for (int i = 0; i < WALINDEX_READERS; i++)
                        ret->read_mark[i] = u32_at(buf + CKPT_INFO + 4 + 4 * i);
                r = 0;
                break;
        }
        return r;
}

int walindex_wal_matches(int shm_fd, int wal_fd) {
        unsigned char hdr[32];
        WalIndex w;
        ssize_t n;
        int r;

        r = walindex_read(shm_fd, &w);
        if (r != 0)
                return r;
        if (w.mx_frame <= w.n_backfill)
                return 1;
        n = pread(wal_fd, hdr, sizeof(hdr), 0);
        if (n < 0)
                return -errno;
        /* SQLite copies the salts byte for byte between the -wal's header
         * (offset 16) and the index header; a -wal too short for a header
         * has none of the frames the index names either. */
        if (n < (ssize_t)sizeof(hdr))
                return 0;
        return memcmp(hdr + 16, &w.salt, 4) == 0 && memcmp(hdr + 20, &w.salt2, 4) == 0;
}

static int lock_state(int fd, int byte, WalLock *ret) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

        if (fcntl(fd, F_GETLK, &fl) < 0)
                return -errno;
        *ret = (WalLock){
                .held = fl.l_type != F_UNLCK,
                .exclusive = fl.l_type == F_WRLCK,
                .pid = fl.l_type != F_UNLCK ? fl.l_pid : 0,
        };
        return 0;
}

int walindex_lock(int fd, int byte, WalLock *ret) {
        *ret = (WalLock){ 0 };
        if (fd < 0)
                return -EBADF;
        return lock_state(fd, byte, ret);
}

int walindex_locks(int fd, WalLocks *ret) {
        int r;

        *ret = (WalLocks){ 0 };
        if (fd < 0)
                return -EBADF;
        r = lock_state(fd, WALINDEX_LOCK_WRITE, &ret->write);
        if (r == 0)
                r = lock_state(fd, WALINDEX_LOCK_CHECKPOINT, &ret->checkpoint);
        if (r == 0)
                r = lock_state(fd, WALINDEX_LOCK_RECOVER, &ret->recover);
        for (int i = 0; r == 0 && i < WALINDEX_READERS; i++)
                r = lock_state(fd, WALINDEX_LOCK_READ0 + i, &ret->read[i]);
        if (r == 0)
                r = lock_state(fd, WALINDEX_LOCK_DMS, &ret->dms);
        return r;
}

int walindex_trim(int shm_fd, int wal_fd, uint64_t target, uint64_t max_bytes, WalTrim *ret) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = WALINDEX_LOCK_WRITE, .l_len = 1 };
        struct stat st;
        usec_t start;
        WalIndex w;
        uint64_t floor, to;
        int r = 0;

        *ret = (WalTrim){ 0 };
        if (fstat(wal_fd, &st) < 0)
                return -errno;
        ret->before = ret->after = (uint64_t)st.st_size;
        if ((uint64_t)st.st_size <= target)
                return 0;
        /* Not waiting: a writer has it, and it is their turn. */
        if (fcntl(shm_fd, F_SETLK, &fl) < 0) {
                if (errno == EAGAIN || errno == EACCES) {
                        ret->busy = true;
                        return 0;
                }
                return -errno;
        }
        start = now_usec(CLOCK_MONOTONIC);
        /* Under the lock the header is stable: the valid frames end here. */
        r = walindex_read(shm_fd, &w);
        if (r == 0 && fstat(wal_fd, &st) == 0) {
                floor = MAX(walindex_valid_bytes(&w), target);
                to = (uint64_t)st.st_size > max_bytes ? (uint64_t)st.st_size - max_bytes : 0;
                to = MAX(to, floor);
                if (to < (uint64_t)st.st_size && ftruncate(wal_fd, (off_t)to) < 0)
                        r = -errno;
                else
                        ret->after = MIN(to, (uint64_t)st.st_size);
        } else if (r == 0)
                r = -errno;
        else
                r = r > 0 ? -EAGAIN : r; /* an index being rebuilt: not now */
        ret->held = now_usec(CLOCK_MONOTONIC) - start;
        fl.l_type = F_UNLCK;
        if (fcntl(shm_fd, F_SETLK, &fl) < 0 && r == 0)
                r = -errno;
        return r;
}

void walindex_comm(pid_t pid, char *buf, size_t size) {
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
                                walindex_comm(out[k].pid, out[k].comm, sizeof(out[k].comm));
                                k++;
                        }
        *ret_n = k;
        return 0;
}

int walindex_lock_holders(const char *locks_text, dev_t dev, ino_t ino, pid_t self, pid_t *out, size_t max,
                          size_t *ret_n) {
        _cleanup_(freep) char *owned = NULL;
        const char *line;
        size_t n = 0;

        if (!locks_text) {
                owned = slurp_proc_locks();
                if (!owned)
                        return -errno;
                locks_text = owned;
        }
        for (line = locks_text; *line && n < max; line = strchrnul(line, '\n'), line += *line == '\n') {
                char kind[16], mode[16], access[16];
                unsigned maj, min;
                unsigned long long lino;
                bool seen = false;
                int pid;

                if (sscanf(line, "%*d: %15s %15s %15s %d %x:%x:%llu", kind, mode, access, &pid, &maj, &min, &lino) != 7)
                        continue;
                if (lino != (unsigned long long)ino || maj != major(dev) || min != minor(dev) || pid == (int)self)
                        continue;
                for (size_t i = 0; i < n; i++)
                        seen = seen || out[i] == pid;
                if (!seen)
                        out[n++] = pid;
        }
        *ret_n = n;
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
