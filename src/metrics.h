/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Prometheus metrics in node_exporter's textfile format ([metrics] textfile),
 * rendered from the status snapshot. The file is written whole, on the file
 * thread (never on the event loop), to a temporary name in the same
 * directory, and renamed over the old one, so the collector never reads half
 * a file.
 */

#include <stddef.h>

#include "status.h"

/* Renders the exposition text; the caller frees it. NULL without memory. */
char *metrics_render(const Status *s);

/* Writes text to path atomically: path.PID.tmp, then rename(2). Refuses to
 * replace a file that is not a metrics file sqlvigil wrote (it does not
 * start with "# HELP sqlvigil_"), or that is one of the n_avoid files in
 * avoid (the database, its -wal and -shm), which it never opens. Any
 * thread. 0, or a negative errno with the reason in error. */
int metrics_write(const char *path, const char *text, const FileId *avoid, size_t n_avoid, char *error,
                  size_t error_size);
