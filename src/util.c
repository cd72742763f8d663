/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util.h"

usec_t now_usec(clockid_t clock) {
        struct timespec ts;

        /* clock_gettime() cannot fail for the clocks we pass (CLOCK_MONOTONIC,
         * CLOCK_REALTIME, CLOCK_BOOTTIME); abort rather than return garbage. */
        if (clock_gettime(clock, &ts) < 0)
                abort();
        return (usec_t)ts.tv_sec * USEC_PER_SEC + (usec_t)ts.tv_nsec / 1000;
}

void bufprintf(char *buf, size_t size, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(buf, size, fmt, ap);
        va_end(ap);
}

char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *s;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

uint64_t file_size(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

char *format_bytes(char *buf, size_t size, uint64_t bytes) {
        static const char suffixes[] = "KMGTPE";
        double v = (double)bytes;
        size_t i;

        if (bytes < 1024) {
                bufprintf(buf, size, "%" PRIu64 "B", bytes);
                return buf;
        }
        for (i = 0; i < sizeof(suffixes) - 1; i++) {
                v /= 1024.0;
                if (v < 1024.0 || i == sizeof(suffixes) - 2)
                        break;
        }
        bufprintf(buf, size, "%.1f%c", v, suffixes[i]);
        return buf;
}

static const struct {
        const char *suffix;
        usec_t usec;
} duration_units[] = {
        { "d", USEC_PER_DAY },   { "h", USEC_PER_HOUR }, { "min", USEC_PER_MINUTE },
        { "s", USEC_PER_SEC },   { "ms", USEC_PER_MSEC }, { "us", 1 },
};

char *format_duration(char *buf, size_t size, usec_t usec) {
        if (usec == 0) {
                bufprintf(buf, size, "0");
                return buf;
        }
        for (size_t i = 0; i < ELEMENTSOF(duration_units); i++)
                if (usec % duration_units[i].usec == 0) {
                        bufprintf(buf, size, "%" PRIu64 "%s", usec / duration_units[i].usec,
                                  duration_units[i].suffix);
                        return buf;
                }
        return buf; /* not reached: every value is a whole number of "us" */
}

char *format_elapsed(char *buf, size_t size, usec_t usec) {
        if (usec < USEC_PER_MSEC)
                bufprintf(buf, size, "%" PRIu64 "us", usec);
        else if (usec < USEC_PER_SEC)
                bufprintf(buf, size, "%" PRIu64 "ms", usec / USEC_PER_MSEC);
        else if (usec < 2 * USEC_PER_MINUTE)
                bufprintf(buf, size, "%" PRIu64 "s", usec / USEC_PER_SEC);
        else if (usec < 2 * USEC_PER_HOUR)
                bufprintf(buf, size, "%" PRIu64 "min", usec / USEC_PER_MINUTE);
        else if (usec < 2 * USEC_PER_DAY)
                bufprintf(buf, size, "%" PRIu64 "h", usec / USEC_PER_HOUR);
        else
                bufprintf(buf, size, "%" PRIu64 "d", usec / USEC_PER_DAY);
        return buf;
}

void sleep_usec(usec_t usec) {
        struct timespec ts = {
                .tv_sec = (time_t)(usec / USEC_PER_SEC),
                .tv_nsec = (long)(usec % USEC_PER_SEC) * 1000,
        };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* The mount point of path: the highest directory above it on the same device. */
static void mount_point(const char *path, char *buf, size_t size) {
        struct stat st, up;
        char cur[4096];

        bufprintf(cur, sizeof(cur), "%s", path);
        if (stat(cur, &st) < 0) {
                bufprintf(buf, size, "?");
                return;
        }
        for (;;) {
                char *slash = strrchr(cur, '/');

                if (!slash || slash == cur) {
                        /* The parent is /. */
                        if (stat("/", &up) == 0 && up.st_dev == st.st_dev)
                                bufprintf(cur, sizeof(cur), "/");
                        break;
                }
                *slash = '\0';
                if (stat(cur, &up) < 0 || up.st_dev != st.st_dev) {
                        *slash = '/';
                        break;
                }
        }
        bufprintf(buf, size, "%s", cur);
}

void describe_space(const char *dir, uint64_t needed, char *buf, size_t size) {
        char mnt[4096], avail[32], total[32], need[32];
        struct statvfs vfs;

        mount_point(dir, mnt, sizeof(mnt));
        if (statvfs(dir, &vfs) < 0) {
                bufprintf(buf, size, "cannot read the free space of the file system holding %s: %s", dir,
                          strerror(errno));
                return;
        }
        format_bytes(avail, sizeof(avail), (uint64_t)vfs.f_bavail * vfs.f_frsize);
        format_bytes(total, sizeof(total), (uint64_t)vfs.f_blocks * vfs.f_frsize);
        if (needed)
                bufprintf(buf, size, "the file system holding %s (mounted at %s) has %s free of %s; about %s needed",
                          dir, mnt, avail, total, format_bytes(need, sizeof(need), needed));
        else
                bufprintf(buf, size, "the file system holding %s (mounted at %s) has %s free of %s", dir, mnt, avail,
                          total);
}

int check_space(const char *dir, uint64_t needed, uint64_t keep_free, char *buf, size_t size) {
        struct statvfs vfs;
        uint64_t avail;

        if (statvfs(dir, &vfs) < 0) {
                int r = -errno;

                bufprintf(buf, size, "cannot read the free space of the file system holding %s: %s", dir,
                          strerror(errno));
                return r;
        }
        avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        if (avail >= needed && avail - needed >= keep_free)
                return 0;
        describe_space(dir, needed + keep_free, buf, size);
        return -ENOSPC;
}

int write_all(int fd, const void *buf, size_t len) {
        const char *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int fsync_path(const char *path, bool directory) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (directory ? O_DIRECTORY : 0)), r = 0;

        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                r = -errno;
        close(fd);
        return r;
}
