/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Small helpers shared by every part of sqlvigil: time, cleanup attributes and
 * human-readable formatting.
 *
 * Error contract (used by every module):
 *   - A function returns 0 on success.
 *   - It returns a negative errno value (-ENOMEM, -EINVAL, ...) when something
 *     failed that the caller can only report.
 *   - It returns a named positive code, declared next to the function as an
 *     enum (CONFIG_E_INVALID, DB_E_BUSY, ...), for an expected outcome the
 *     caller must handle.
 * Lower layers never log; they return codes and, where a message helps,
 * fill a caller-provided buffer. Logging happens in sqlvigil.c and in the
 * manager's event handlers.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>

typedef uint64_t usec_t;

#define USEC_PER_MSEC ((usec_t)1000)
#define USEC_PER_SEC ((usec_t)1000000)
#define USEC_PER_MINUTE (60 * USEC_PER_SEC)
#define USEC_PER_HOUR (60 * USEC_PER_MINUTE)
#define USEC_PER_DAY (24 * USEC_PER_HOUR)
#define USEC_INFINITY UINT64_MAX

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))

static inline void freep(void *p) {
        free(*(void **)p);
}

/* Takes ownership out of a cleanup variable: *p is returned and set to NULL. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _ptr_ = (p);                                                         \
                (p) = NULL;                                                                        \
                _ptr_;                                                                             \
        })

usec_t now_usec(clockid_t clock);

/* Formats bytes in base 1024 with one decimal: "0B", "512B", "4.0K", "63.9M". */
char *format_bytes(char *buf, size_t size, uint64_t bytes);

/* Formats a duration the way the configuration accepts it back: "250ms",
 * "30s", "5min", "2h", "1d"; values that are no whole unit use the largest
 * unit that divides them ("90s", "1500ms"). 0 is "0". */
char *format_duration(char *buf, size_t size, usec_t usec);

/* Formats an elapsed time for people: "850ms", "12s", "3min", "5h", "2d". */
char *format_elapsed(char *buf, size_t size, usec_t usec);

/* snprintf into a fixed buffer; truncation is not an error for our callers
 * (all buffers are sized for their content), so the result is void. */
void bufprintf(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);

/* asprintf that returns NULL on failure instead of leaving the pointer undefined. */
char *strdup_printf(const char *fmt, ...) _printf_(1, 2);

bool streq(const char *a, const char *b);

/* A file's identity: device and inode. */
typedef struct FileId {
        dev_t dev;
        ino_t ino;
} FileId;

static inline bool file_id_eq(FileId a, FileId b) {
        return a.dev == b.dev && a.ino == b.ino;
}

/* The file's size in bytes; 0 when it does not exist or cannot be stat()ed. */
uint64_t file_size(const char *path);

/* "the file system holding DIR (mounted at M) has 12.0M free of 9.8G; about
 * 4.0M needed" for a full disk; needed 0 leaves the last part out. */
void describe_space(const char *dir, uint64_t needed, char *buf, size_t size);

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Sleeps for usec, resuming after signals; returns early only if usec is 0. */
void sleep_usec(usec_t usec);

/* write(2) of all len bytes of buf to fd, resuming after EINTR and short
 * writes. 0 or a negative errno (what is written before a failure stays
 * written). Any thread. */
int write_all(int fd, const void *buf, size_t len);

/* fsync() of the file or directory at path (opened read-only, never
 * following a final symbolic link): a directory's, so that a rename in it
 * survives a crash. 0 or a negative errno. Any thread. Never for the
 * database's own files: closing the descriptor would drop SQLite's locks
 * (files.h). */
int fsync_path(const char *path, bool directory);

/* Whether the file system holding dir has room for needed more bytes and
 * still keep keep_free free (the applications' share: a copy sqlvigil
 * makes must never be what fills the database's disk). 0 when it has;
 * -ENOSPC with the sentence of describe_space() in buf when it has not;
 * another negative errno when statvfs() fails. */
int check_space(const char *dir, uint64_t needed, uint64_t keep_free, char *buf, size_t size);
