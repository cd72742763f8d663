/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the control socket's request parser. Invariants: every
 * input either parses or fails with -EINVAL and a message; what parses, once
 * written back as a request line, parses to the same request.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char error[256] = "", line[128];
        Request a, b;
        int r;

        r = request_parse((const char *)data, size, &a, error, sizeof(error));
        if (r < 0) {
                if (r != -EINVAL || !error[0])
                        abort();
                return 0;
        }
        switch (a.command) {
        case REQUEST_CHECKPOINT:
                snprintf(line, sizeof(line), "checkpoint %s\n", checkpoint_mode_names[a.arg]);
                break;
        case REQUEST_VACUUM:
                if (a.arg)
                        snprintf(line, sizeof(line), "vacuum %" PRIi64 "\n", a.arg);
                else
                        snprintf(line, sizeof(line), "vacuum\n");
                break;
        case REQUEST_CHECK:
                snprintf(line, sizeof(line), "check %s\n", a.arg ? "integrity" : "quick");
                break;
        default:
                snprintf(line, sizeof(line), "%s\n", request_names[a.command]);
        }
        if (request_parse(line, strlen(line), &b, error, sizeof(error)) != 0 || b.command != a.command ||
            b.arg != a.arg)
                abort();
        return 0;
}
