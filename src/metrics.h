/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Prometheus metrics in node_exporter's textfile format ([metrics] textfile).
 * The file is written whole, to a temporary name in the same directory, and
 * renamed over the old one, so the collector never reads half a file. It is
 * refreshed after every health round and every maintenance run.
 */

#include <stddef.h>

typedef struct Manager Manager;

/* Renders the exposition text; the caller frees it. NULL without memory. */
char *metrics_render(Manager *m);

/* Writes the file atomically. 0, or a negative errno with the reason in error. */
int metrics_write(Manager *m, const char *path, char *error, size_t error_size);
