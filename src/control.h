/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The control socket server (protocol: docs/control.md). It lives on the
 * event loop: accepting, reading a request line with a deadline, checking
 * the peer's credentials for admin commands, and writing one JSON reply,
 * all without ever blocking. Admin work goes to the worker as maintenance
 * jobs; their replies are written when the jobs finish.
 *
 * No local user can deny the socket to others. Slots are shared out at
 * accept() by the caller's credentials (control_admit()): unprivileged
 * callers together get fewer slots than there are, each uid a few, so the
 * rest is always there for root, sqlvigil's own user and admin_group. A
 * connection that finds no slot is answered "busy" at once and closed; one
 * that has sent nothing within a second or two is dropped; one that hangs
 * up while its admin command runs gives its slot back at once (the command
 * goes on, its reply is discarded, and the journal says so).
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "json.h"
#include "request.h"

typedef struct Control Control;
typedef struct ControlClient ControlClient;
typedef struct Config Config;

#define CONTROL_MAX_GROUPS 256

/* Who is on the other end, from SO_PEERCRED and SO_PEERGROUPS. */
typedef struct ControlPeer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        gid_t groups[CONTROL_MAX_GROUPS];
        int n_groups;
} ControlPeer;

/* What the server hands to the daemon, on the loop thread. */
typedef struct ControlEnv {
        sd_event *event;
        void *userdata;
        /* A parsed request from client: answer it with control_reply_*(),
         * now or later (then call control_client_wait() first). */
        void (*request)(void *userdata, ControlClient *client, const Request *req);
        /* A client that was waiting for an answer went away: forget it. */
        void (*gone)(void *userdata, ControlClient *client);
        /* Whether peer is one of those the socket keeps room for (root,
         * sqlvigil's own user, admin_group). */
        bool (*privileged)(void *userdata, const ControlPeer *peer);
} ControlEnv;

/* Connections served at once, all callers together... */
#define CONTROL_MAX_CLIENTS 128
/* ...of which unprivileged callers together may hold this many (the rest is
 * kept for the privileged)... */
#define CONTROL_MAX_UNPRIVILEGED 96
/* ...and each unprivileged uid this many. */
#define CONTROL_MAX_PER_UID 8

typedef enum ControlAdmit {
        CONTROL_ADMIT,     /* it gets a slot */
        CONTROL_FULL,      /* every slot it may use is taken */
        CONTROL_USER_FULL, /* its uid has all the slots one unprivileged uid may have */
} ControlAdmit;

/* Whether a new connection gets a slot, given the connections open now:
 * total, how many of them are unprivileged, how many have the newcomer's
 * uid. Pure. */
ControlAdmit control_admit(unsigned total, unsigned unprivileged, unsigned same_uid, bool privileged);

/* The path the socket gets: [control] socket, else $RUNTIME_DIRECTORY/
 * control.sock, else /run/sqlvigil/NAME.sock. *ret_explicit is true when
 * failing to create it must stop the daemon. */
char *control_socket_path(const Config *c, const char *instance, bool *ret_explicit);

/*
 * Binds path and listens. explicit_path: the path was configured (or given
 * by systemd), so failing to create it is an error; otherwise a default
 * path that cannot be created disables the socket. Returns 0;
 * CONTROL_E_DISABLED (the daemon runs without a socket; the reason is in
 * error); a negative errno with the reason in error otherwise.
 */
enum {
        CONTROL_E_DISABLED = 1,
};
int control_new(Control **ret, const ControlEnv *env, const char *path, bool explicit_path, char *error,
                size_t error_size);

/* Closes every connection, removes the socket file. Returns NULL. */
Control *control_free(Control *c);

/* The path it listens on. */
const char *control_path(const Control *c);

/*
 * Moves the socket to path (a reload changed [control] socket): binds and
 * listens there, then stops listening at the old path and removes that
 * file. Connections already open stay. Returns 0, or a negative errno with
 * the reason in error: then nothing changed and the old path still serves.
 */
int control_rebind(Control *c, const char *path, char *error, size_t error_size);


/* The peer of a client. */
const ControlPeer *control_client_peer(const ControlClient *cl);

/* The i-th descriptor (0 or 1) the client passed with its request
 * (SCM_RIGHTS), now the caller's to close; -1 when none came. */
int control_client_take_fd(ControlClient *cl, size_t i);

/* The answer to client will come later: keep it. A client that hangs up
 * meanwhile gives its slot back at once; its reply, when it comes, is
 * discarded (and the journal says so). env.gone is called only when the
 * server itself goes (control_free()). */
void control_client_wait(ControlClient *cl);

/* A reply: control_reply_begin() opens {"ok": ok, ...; add members to the
 * Json it returns, close nothing, and control_reply_send() closes the
 * object and sends it as one line. */
Json *control_reply_begin(ControlClient *cl, bool ok);
void control_reply_send(ControlClient *cl);

/* {"ok": false, "code": code, "error": message}, sent. */
void control_reply_error(ControlClient *cl, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
