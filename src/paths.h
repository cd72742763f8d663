/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The output paths of the configuration - [control] socket, [metrics]
 * textfile, [backup] directory - never name the database, its -wal, -shm,
 * -journal or sqlvigil's mark beside it, nor the configuration file, nor
 * each other: a typo there must not have sqlvigil unlink the database to
 * bind a socket, or rename metrics over it. Paths are compared as they
 * resolve (the directory's real path, then the name) and, for files that
 * exist, by device and inode, so a symbolic link or a second hard link is
 * caught too.
 */

#include "config.h"

/* Adds one error per collision to errors (naming the file, both keys and
 * what the path also is). config_path: the configuration file, NULL when
 * none. Returns CONFIG_E_INVALID when it added any, 0 when the paths are
 * apart, -ENOMEM. */
int paths_check(const Config *c, const char *config_path, ConfigErrors *errors);
