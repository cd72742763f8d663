/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The control socket's request line: "COMMAND [ARGUMENT]" (docs/control.md).
 * Parsing is separate from the server so that it can be fuzzed on its own
 * (tests/fuzz/fuzz-request.c): every input either parses or gets a message
 * saying what is wrong with it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REQUEST_MAX 1024 /* bytes, newline included */

typedef enum RequestCommand {
        REQUEST_HEALTH,
        REQUEST_STATS,
        REQUEST_STATUS,
        REQUEST_CONFIG,
        REQUEST_BACKUPS,
        /* Admin commands from here on. */
        REQUEST_CHECKPOINT, /* arg: CheckpointMode */
        REQUEST_VACUUM,     /* arg: pages, 0 = all */
        REQUEST_ANALYZE,
        REQUEST_OPTIMIZE,
        REQUEST_CHECK,      /* arg: 0 quick, 1 integrity */
        REQUEST_RELOAD,
        REQUEST_BACKUP,
        REQUEST_RESTORE,    /* with the file's descriptor (SCM_RIGHTS) */
        _REQUEST_MAX,
} RequestCommand;

extern const char *const request_names[_REQUEST_MAX];

typedef struct Request {
        RequestCommand command;
        int64_t arg;
} Request;

/*
 * Parses one request line (with or without its trailing "\n" or "\r\n";
 * len bytes, not NUL-terminated). Returns 0, or -EINVAL with a one-sentence
 * reason in error.
 */
int request_parse(const char *line, size_t len, Request *ret, char *error, size_t error_size);

/* Commands that change something need an admin peer. */
bool request_is_admin(RequestCommand c);
