/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The control socket server (protocol: docs/control.md). It lives on the
 * event loop: accepting, reading a request line with a deadline, checking
 * the peer's credentials for admin commands, and writing one JSON reply,
 * all without ever blocking. Admin work goes to the worker as maintenance
 * jobs; their replies are written when the jobs finish.
 */

#include <stdbool.h>
#include <stddef.h>

typedef struct Manager Manager;
typedef struct Control Control;

typedef struct Config Config;

/* The path the socket gets: [control] socket, else $RUNTIME_DIRECTORY/
 * control.sock, else /run/sqlvigil/NAME.sock. *ret_explicit is true when
 * failing to create it must stop the daemon. */
char *control_socket_path(const Config *c, const char *instance, bool *ret_explicit);

/*
 * Binds and listens. Returns 0; CONTROL_E_DISABLED when the default path
 * cannot be created (the daemon runs without a socket; the reason is in
 * error); a negative errno with the reason in error otherwise.
 */
enum {
        CONTROL_E_DISABLED = 1,
};
int control_new(Control **ret, Manager *m, char *error, size_t error_size);

/* Closes every connection, removes the socket file. Returns NULL. */
Control *control_free(Control *c);

