/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "parse.h"
#include "request.h"
#include "util.h"

const char *const request_names[_REQUEST_MAX] = {
        [REQUEST_HEALTH] = "health",         [REQUEST_STATS] = "stats",     [REQUEST_STATUS] = "status",
        [REQUEST_CONFIG] = "config",         [REQUEST_CHECKPOINT] = "checkpoint",
        [REQUEST_VACUUM] = "vacuum",         [REQUEST_ANALYZE] = "analyze", [REQUEST_OPTIMIZE] = "optimize",
        [REQUEST_CHECK] = "check",           [REQUEST_RELOAD] = "reload",   [REQUEST_BACKUPS] = "backups",
        [REQUEST_BACKUP] = "backup",         [REQUEST_RESTORE] = "restore",
};

bool request_is_admin(RequestCommand c) {
        return c >= REQUEST_CHECKPOINT;
}

int request_parse(const char *line, size_t len, Request *ret, char *error, size_t error_size) {
        char buf[REQUEST_MAX + 1], *words[2];
        size_t n = 0;
        char *p, *save = NULL;
        int cmd = -1;

        if (len > 0 && line[len - 1] == '\n')
                len--;
        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (len >= sizeof(buf) - 1) {
                bufprintf(error, error_size, "request too long (the limit is %d bytes)", REQUEST_MAX);
                return -EINVAL;
        }
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e) {
                        if (line[i] == '\t')
                                continue;
                        bufprintf(error, error_size, "request contains a non-printable byte 0x%02x at offset %zu",
                                  (unsigned char)line[i], i);
                        return -EINVAL;
                }
        memcpy(buf, line, len);
        buf[len] = '\0';

        /* A command and at most one argument. */
        for (p = strtok_r(buf, " \t", &save); p; p = strtok_r(NULL, " \t", &save)) {
                if (n == 2) {
                        bufprintf(error, error_size, "too many words in the request");
                        return -EINVAL;
                }
                words[n++] = p;
        }
        if (n == 0) {
                bufprintf(error, error_size, "empty request");
                return -EINVAL;
        }
        for (int i = 0; i < _REQUEST_MAX; i++)
                if (streq(words[0], request_names[i]))
                        cmd = i;
        if (cmd < 0) {
                int near = nearest_word(words[0], request_names, _REQUEST_MAX);

                if (strlen(words[0]) > 32)
                        bufprintf(error, error_size, "unknown command");
                else if (near >= 0)
                        bufprintf(error, error_size, "unknown command '%s'; did you mean '%s'?", words[0],
                                  request_names[near]);
                else
                        bufprintf(error, error_size, "unknown command '%s'", words[0]);
                return -EINVAL;
        }

        *ret = (Request){ .command = (RequestCommand)cmd };
        switch (cmd) {
        case REQUEST_CHECKPOINT:
                ret->arg = CHECKPOINT_PASSIVE;
                if (n == 2) {
                        int mode = -1;

                        for (int i = 0; i < _CHECKPOINT_MODE_MAX; i++)
                                if (streq(words[1], checkpoint_mode_names[i]))
                                        mode = i;
                        if (mode < 0) {
                                bufprintf(error, error_size,
                                          "checkpoint mode must be passive, full, restart or truncate");
                                return -EINVAL;
                        }
                        ret->arg = mode;
                }
                return 0;
        case REQUEST_VACUUM:
                if (n == 2) {
                        uint64_t pages;

                        if (parse_uint64(words[1], &pages) < 0 || pages == 0 || pages > UINT32_MAX) {
                                bufprintf(error, error_size, "vacuum takes a number of pages between 1 and %u",
                                          UINT32_MAX);
                                return -EINVAL;
                        }
                        ret->arg = (int64_t)pages;
                }
                return 0;
        case REQUEST_CHECK:
                if (n == 2) {
                        if (streq(words[1], "quick"))
                                ret->arg = 0;
                        else if (streq(words[1], "integrity"))
                                ret->arg = 1;
                        else {
                                bufprintf(error, error_size, "check takes quick or integrity");
                                return -EINVAL;
                        }
                }
                return 0;
        default:
                if (n > 1) {
                        bufprintf(error, error_size, "%s takes no argument", request_names[cmd]);
                        return -EINVAL;
                }
                return 0;
        }
}
