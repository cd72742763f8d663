/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What each control-socket command does (docs/control.md): the read-only
 * ones answer from the status snapshot (report.c), the admin ones check the
 * peer's credentials and start maintenance or a reload, answering when it
 * ends. control.c carries the bytes; this is the meaning. Loop thread.
 */

#include "control.h"
#include "request.h"

typedef struct Manager Manager;

void commands_handle(Manager *m, ControlClient *client, const Request *req);

/* A waiting client went away: nobody is told when its operation ends. */
void commands_forget(Manager *m, ControlClient *client);

/* Whether peer is one the control socket keeps room for: the same callers
 * as may run admin commands, by the configuration in force. */
bool commands_peer_privileged(Manager *m, const ControlPeer *peer);

/* Whether peer may run admin commands: root, sqlvigil's own uid, or a
 * member (primary or supplementary) of admin_gid when has_admin_group. */
bool commands_peer_is_admin(const ControlPeer *peer, uid_t self, bool has_admin_group, gid_t admin_gid);
