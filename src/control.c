/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "control.h"
#include "files.h"
#include "json.h"
#include "log.h"
#include "request.h"
#include "util.h"

/* A connection that has sent nothing this long is dropped: an idle
 * connection holds a slot and does nothing with it. sqlvigilctl sends its
 * request as soon as it is connected. */
#define IDLE_TIMEOUT (2 * USEC_PER_SEC)
/* The whole request line must arrive this soon after connecting... */
#define REQUEST_TIMEOUT (5 * USEC_PER_SEC)
/* ...and the reply must be read this soon after it was written. */
#define REPLY_TIMEOUT (5 * USEC_PER_SEC)
/* Connections taken from the backlog per turn of the event loop: a flood
 * of them never keeps the loop from the watchdog and the other sources. */
#define ACCEPT_BATCH 32
/* Out of descriptors with none in reserve: try accepting again this soon. */
#define ACCEPT_RETRY (250 * USEC_PER_MSEC)
/* Connections turned away are logged at most this often, with a count. */
#define BUSY_LOG_INTERVAL (10 * USEC_PER_SEC)

typedef struct ControlClient Client;

static void client_drain(Client *cl);

struct Control {
        ControlEnv env;
        char *path;
        int fd;
        dev_t dev;
        ino_t ino;
        sd_event_source *listen;
        sd_event_source *retry;  /* accepting again after running out of descriptors */
        int reserve_fd;          /* kept for a "busy" answer when descriptors run out */
        Client *clients;
        unsigned n_clients;
        unsigned n_unprivileged;
        Client *orphans;         /* hung up while their admin command runs */

        /* Connections turned away, for the journal. */
        unsigned busy_unlogged;
        usec_t busy_logged_at;   /* CLOCK_MONOTONIC */
};

struct ControlClient {
        Control *control;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        usec_t accepted;  /* CLOCK_MONOTONIC */
        char in[REQUEST_MAX];
        size_t in_len;
        bool privileged;  /* root, sqlvigil's user or admin_group: counted apart */
        bool waiting;     /* an admin operation runs on its behalf */
        bool orphan;      /* it hung up meanwhile: the reply goes nowhere */
        bool replying;
        bool draining;    /* reply sent; reading until the client closes */
        char command[16]; /* what it asked for, for the journal */
        Json reply;
        size_t reply_off;
        ControlPeer peer;
        int passed_fd[2]; /* descriptors that came with the request (SCM_RIGHTS), -1: none */
        Client *prev, *next;
};

ControlAdmit control_admit(unsigned total, unsigned unprivileged, unsigned same_uid, bool privileged) {
        if (total >= CONTROL_MAX_CLIENTS)
                return CONTROL_FULL;
        if (privileged)
                return CONTROL_ADMIT;
        if (unprivileged >= CONTROL_MAX_UNPRIVILEGED)
                return CONTROL_FULL;
        if (same_uid >= CONTROL_MAX_PER_UID)
                return CONTROL_USER_FULL;
        return CONTROL_ADMIT;
}

static void list_remove(Client **head, Client *cl) {
        if (cl->prev)
                cl->prev->next = cl->next;
        else
                *head = cl->next;
        if (cl->next)
                cl->next->prev = cl->prev;
        cl->prev = cl->next = NULL;
}

static void list_push(Client **head, Client *cl) {
        cl->prev = NULL;
        cl->next = *head;
        if (*head)
                (*head)->prev = cl;
        *head = cl;
}

/* Gives the client's slot back: the descriptor and the sources go, and
 * accepting resumes if it had stopped. The struct stays. */
static void client_release(Client *cl) {
        Control *c = cl->control;

        cl->io = sd_event_source_disable_unref(cl->io);
        cl->timer = sd_event_source_disable_unref(cl->timer);
        if (cl->fd >= 0)
                close(cl->fd);
        cl->fd = -1;
        list_remove(&c->clients, cl);
        c->n_clients--;
        if (!cl->privileged)
                c->n_unprivileged--;
        /* A slot is free again, and a descriptor. */
        if (c->listen)
                (void)sd_event_source_set_enabled(c->listen, SD_EVENT_ON);
}

static void client_free(Client *cl) {
        Control *c = cl->control;

        if (cl->orphan)
                list_remove(&c->orphans, cl);
        else
                client_release(cl);
        if ((cl->waiting || cl->orphan) && c->env.gone)
                /* The server goes before the operation finished: nobody is
                 * told when it ends. */
                c->env.gone(c->env.userdata, cl);
        for (size_t i = 0; i < ELEMENTSOF(cl->passed_fd); i++)
                if (cl->passed_fd[i] >= 0)
                        files_close(cl->passed_fd[i]);
        json_free(&cl->reply);
        free(cl);
}

/* The client hung up while its admin command runs: its slot is free at
 * once; the command goes on and its reply will be discarded. */
static void client_orphan(Client *cl) {
        Control *c = cl->control;

        client_release(cl);
        cl->orphan = true;
        list_push(&c->orphans, cl);
        log_notice("control socket: pid %d (uid %u) hung up while its '%s' runs; it goes on, and its reply will "
                   "be discarded",
                   (int)cl->peer.pid, (unsigned)cl->peer.uid, cl->command);
}

static int client_write(Client *cl) {
        const char *text = json_text(&cl->reply);
        size_t len = text ? cl->reply.len : 0;

        while (cl->reply_off < len) {
                ssize_t n = send(cl->fd, text + cl->reply_off, len - cl->reply_off, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0; /* wait for EPOLLOUT */
                        return -errno;  /* the client went away */
                }
                cl->reply_off += (size_t)n;
        }
        return 1;
}

Json *control_reply_begin(Client *cl, bool ok) {
        json_free(&cl->reply);
        json_init(&cl->reply);
        json_object_begin(&cl->reply);
        json_kv_bool(&cl->reply, "ok", ok);
        return &cl->reply;
}

/* What a failed reply says besides "ok": false. */
static void reply_error_members(Json *j, const char *code, const char *msg) {
        json_kv_string(j, "code", code);
        json_kv_string(j, "error", msg);
}

void control_reply_send(Client *cl) {
        int r;

        cl->waiting = false;
        cl->replying = true;
        json_object_end(&cl->reply); /* the object control_reply_begin() opened */
        if (cl->orphan) {
                log_notice("control socket: the reply to pid %d's '%s' is discarded: it hung up", (int)cl->peer.pid,
                           cl->command);
                client_free(cl);
                return;
        }
        if (!json_text(&cl->reply)) {
                /* Out of memory while building: a short reply we can afford. */
                reply_error_members(control_reply_begin(cl, false), "failed", "out of memory");
                json_object_end(&cl->reply);
        }
        /* One line: the JSON writer never emits a raw newline. */
        json_newline(&cl->reply);
        r = sd_event_source_set_time_relative(cl->timer, REPLY_TIMEOUT);
        if (r >= 0)
                r = sd_event_source_set_enabled(cl->timer, SD_EVENT_ONESHOT);
        if (r < 0) {
                client_free(cl);
                return;
        }
        r = client_write(cl);
        if (r < 0) {
                client_free(cl);
                return;
        }
        if (r > 0) {
                if (sd_event_source_set_enabled(cl->io, SD_EVENT_ON) < 0)
                        client_free(cl);
                else
                        client_drain(cl);
                return;
        }
        r = sd_event_source_set_io_events(cl->io, EPOLLOUT);
        if (r >= 0)
                r = sd_event_source_set_enabled(cl->io, SD_EVENT_ON);
        if (r < 0)
                client_free(cl);
}

void control_reply_error(Client *cl, const char *code, const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        reply_error_members(control_reply_begin(cl, false), code, msg);
        control_reply_send(cl);
}

void control_client_wait(Client *cl) {
        int r;

        cl->waiting = true;
        /* Only a hang-up can come now: epoll always reports EPOLLHUP, which
         * on an AF_UNIX stream socket means the peer closed it (shutting
         * down its sending side, as sqlvigilctl does after its request, is
         * EPOLLRDHUP, not EPOLLHUP). */
        r = sd_event_source_set_io_events(cl->io, 0);
        if (r >= 0)
                r = sd_event_source_set_enabled(cl->io, SD_EVENT_ON);
        if (r < 0)
                log_warning("control socket: cannot watch pid %d for hanging up: %s", (int)cl->peer.pid,
                            strerror(-r));
}

const ControlPeer *control_client_peer(const Client *cl) {
        return &cl->peer;
}

static void client_process(Client *cl) {
        char error[256];
        Request req;

        (void)sd_event_source_set_enabled(cl->io, SD_EVENT_OFF);
        (void)sd_event_source_set_enabled(cl->timer, SD_EVENT_OFF);
        if (request_parse(cl->in, cl->in_len, &req, error, sizeof(error)) < 0) {
                control_reply_error(cl, "bad-request", "%s", error);
                return;
        }
        bufprintf(cl->command, sizeof(cl->command), "%s", request_names[req.command]);
        cl->control->env.request(cl->control->env.userdata, cl, &req);
}

/*
 * After the reply: half-close and read until the client closes. Closing a
 * socket that still has unread input makes the kernel send a reset, which
 * can destroy the reply before the client reads it (an over-long request
 * leaves input unread).
 */
static void client_drain(Client *cl) {
        int r;

        cl->replying = false;
        cl->draining = true;
        if (shutdown(cl->fd, SHUT_WR) < 0) {
                client_free(cl);
                return;
        }
        r = sd_event_source_set_io_events(cl->io, EPOLLIN | EPOLLRDHUP);
        if (r < 0)
                client_free(cl);
}

/* Reads what the client sent, and the descriptors that may come with it
 * (sqlvigilctl restore passes the file it opened, and its manifest): at
 * most two are kept, any others are closed at once. */
static ssize_t client_recv(Client *cl, int fd) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        struct iovec iov = { .iov_base = cl->in + cl->in_len, .iov_len = sizeof(cl->in) - cl->in_len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                              .msg_controllen = sizeof(control) };
        ssize_t n;

        n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return n;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                size_t count;
                int fds[4];

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                memcpy(fds, CMSG_DATA(c), MIN(count, ELEMENTSOF(fds)) * sizeof(int));
                for (size_t i = 0; i < MIN(count, ELEMENTSOF(fds)); i++) {
                        size_t k = 0;

                        while (k < ELEMENTSOF(cl->passed_fd) && cl->passed_fd[k] >= 0)
                                k++;
                        if (k < ELEMENTSOF(cl->passed_fd))
                                cl->passed_fd[k] = fds[i];
                        else
                                files_close(fds[i]);
                }
        }
        /* Cut short: the descriptors that did not fit were closed by the
         * kernel (MSG_CTRUNC); the request is refused for lack of its file
         * if it needed one. */
        return n;
}

int control_client_take_fd(ControlClient *cl, size_t i) {
        int fd;

        if (i >= ELEMENTSOF(cl->passed_fd))
                return -1;
        fd = cl->passed_fd[i];
        cl->passed_fd[i] = -1;
        return fd;
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Client *cl = userdata;
        ssize_t n;
        char *nl;
        int r;

        (void)s;
        if (cl->waiting) {
                /* Only EPOLLHUP and EPOLLERR are watched now. */
                if (revents & (EPOLLHUP | EPOLLERR))
                        client_orphan(cl);
                return 0;
        }
        if (cl->draining) {
                char sink[4096];

                n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        client_free(cl);
                return 0;
        }
        if (cl->replying) {
                if (revents & (EPOLLERR | EPOLLHUP)) {
                        client_free(cl);
                        return 0;
                }
                r = client_write(cl);
                if (r < 0)
                        client_free(cl);
                else if (r > 0)
                        client_drain(cl);
                return 0;
        }
        n = client_recv(cl, fd);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                client_free(cl);
                return 0;
        }
        if (n == 0) {
                /* EOF: a request without a newline is still a request. */
                if (cl->in_len == 0)
                        client_free(cl);
                else
                        client_process(cl);
                return 0;
        }
        if (cl->in_len == 0) {
                /* Not idle any more: the whole line has until REQUEST_TIMEOUT. */
                r = sd_event_source_set_time(cl->timer, cl->accepted + REQUEST_TIMEOUT);
                if (r < 0) {
                        client_free(cl);
                        return 0;
                }
        }
        /* Earlier reads held no newline (a line is processed as soon as it
         * is complete), so only the new bytes can end it. */
        nl = memchr(cl->in + cl->in_len, '\n', (size_t)n);
        if (nl) {
                cl->in_len = (size_t)(nl - cl->in) + 1; /* anything after the line is ignored */
                client_process(cl);
                return 0;
        }
        cl->in_len += (size_t)n;
        if (cl->in_len >= sizeof(cl->in)) {
                (void)sd_event_source_set_enabled(cl->io, SD_EVENT_OFF);
                control_reply_error(cl, "bad-request", "request too long (the limit is %d bytes)", REQUEST_MAX);
        }
        return 0;
}

/* One line, written without waiting on a descriptor that is about to be
 * closed: a fresh connection's send buffer is empty, so it fits. */
static void send_line_and_close(int fd, const char *code, const char *msg) {
        Json j;
        char sink[REQUEST_MAX];

        json_init(&j);
        json_object_begin(&j);
        json_kv_bool(&j, "ok", false);
        reply_error_members(&j, code, msg);
        json_object_end(&j);
        json_newline(&j);
        if (json_text(&j))
                (void)send(fd, json_text(&j), j.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        json_free(&j);
        /* What the client sent already is read first: closing with unread
         * input would make its next read fail (ECONNRESET) instead of end.
         * Descriptors passed with it (a restore's file) are never installed
         * here: without room for them, the kernel drops them (MSG_CTRUNC),
         * so none of ours is closed. */
        while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
                ;
        close(fd);
}

static int on_client_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Client *cl = userdata;
        char msg[128];
        int fd;

        (void)s;
        (void)usec;
        if (cl->replying || cl->draining) {
                client_free(cl); /* never read its reply, or never closed */
                return 0;
        }
        /* It sent nothing, or not a whole line: say why, and let the slot go
         * now rather than after a reply nobody may read. */
        if (cl->in_len == 0)
                bufprintf(msg, sizeof(msg), "no request within %llu seconds of connecting",
                          (unsigned long long)(IDLE_TIMEOUT / USEC_PER_SEC));
        else
                bufprintf(msg, sizeof(msg), "no complete request within %llu seconds",
                          (unsigned long long)(REQUEST_TIMEOUT / USEC_PER_SEC));
        fd = cl->fd;
        cl->fd = -1;
        client_free(cl);
        send_line_and_close(fd, "timeout", msg);
        return 0;
}

/* Counts connections turned away; says so at most every BUSY_LOG_INTERVAL. */
static void note_busy(Control *c, const ControlPeer *peer, ControlAdmit why) {
        usec_t now = now_usec(CLOCK_MONOTONIC);

        char since[32] = "";

        c->busy_unlogged++;
        if (c->busy_logged_at && now - c->busy_logged_at < BUSY_LOG_INTERVAL)
                return;
        if (c->busy_logged_at)
                format_elapsed(since, sizeof(since), now - c->busy_logged_at);
        log_warning("control socket %s: %u connection%s turned away busy%s%s (the latest from pid %d, uid %u: %s); "
                    "%u served now, %u of them unprivileged",
                    c->path, c->busy_unlogged, c->busy_unlogged == 1 ? "" : "s", since[0] ? " in the last " : "",
                    since, (int)peer->pid, (unsigned)peer->uid,
                    why == CONTROL_USER_FULL ? "that uid has all the connections one user may have" : "no slot free",
                    c->n_clients, c->n_unprivileged);
        c->busy_unlogged = 0;
        c->busy_logged_at = now;
}

static void read_peer(int fd, ControlPeer *peer) {
        socklen_t len = sizeof(struct ucred);
        struct ucred cred;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                /* Unknown peer: treat as nobody; reads still work. */
                *peer = (ControlPeer){ .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
        } else {
                socklen_t glen = sizeof(peer->groups);

                *peer = (ControlPeer){ .pid = cred.pid, .uid = cred.uid, .gid = cred.gid };
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, peer->groups, &glen) == 0)
                        peer->n_groups = (int)(glen / sizeof(gid_t));
                /* ERANGE (more than CONTROL_MAX_GROUPS groups): the primary group still counts. */
        }
}

static unsigned count_uid(const Control *c, uid_t uid) {
        unsigned n = 0;

        for (const Client *cl = c->clients; cl; cl = cl->next)
                if (!cl->privileged && cl->peer.uid == uid)
                        n++;
        return n;
}

/* Takes one connection: a slot for it, or "busy" and closed. */
static void take(Control *c, int cfd) {
        ControlPeer peer;
        ControlAdmit admit;
        bool privileged;
        Client *cl;
        int r;

        read_peer(cfd, &peer);
        privileged = c->env.privileged && c->env.privileged(c->env.userdata, &peer);
        admit = control_admit(c->n_clients, c->n_unprivileged, privileged ? 0 : count_uid(c, peer.uid), privileged);
        if (admit != CONTROL_ADMIT) {
                char msg[256];

                if (admit == CONTROL_USER_FULL)
                        bufprintf(msg, sizeof(msg),
                                  "too many connections from uid %u (at most %d at once); try again when one of "
                                  "them is done",
                                  (unsigned)peer.uid, CONTROL_MAX_PER_UID);
                else
                        bufprintf(msg, sizeof(msg), "sqlvigil is serving as many clients as it can; try again");
                note_busy(c, &peer, admit);
                send_line_and_close(cfd, "busy", msg);
                return;
        }

        cl = calloc(1, sizeof(*cl));
        if (!cl) {
                close(cfd);
                return;
        }
        cl->control = c;
        cl->fd = cfd;
        cl->passed_fd[0] = cl->passed_fd[1] = -1;
        cl->peer = peer;
        cl->privileged = privileged;
        cl->accepted = now_usec(CLOCK_MONOTONIC);
        json_init(&cl->reply);
        list_push(&c->clients, cl);
        c->n_clients++;
        if (!privileged)
                c->n_unprivileged++;

        r = sd_event_add_io(c->env.event, &cl->io, cfd, EPOLLIN | EPOLLRDHUP, on_client_io, cl);
        if (r >= 0)
                r = sd_event_add_time(c->env.event, &cl->timer, CLOCK_MONOTONIC, cl->accepted + IDLE_TIMEOUT,
                                      100 * USEC_PER_MSEC, on_client_timeout, cl);
        if (r < 0) {
                log_error("control socket: cannot watch a client: %s", strerror(-r));
                client_free(cl);
                return;
        }
        (void)sd_event_source_set_description(cl->io, "control-client");
}

static int on_accept_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Control *c = userdata;

        (void)usec;
        c->retry = sd_event_source_disable_unref(s);
        if (c->listen)
                (void)sd_event_source_set_enabled(c->listen, SD_EVENT_ON);
        return 0;
}

/* accept() cannot go on for now: stop listening and look again in a moment,
 * or when a client leaves, instead of spinning on a socket that stays
 * readable. */
static void pause_accepting(Control *c) {
        int r;

        (void)sd_event_source_set_enabled(c->listen, SD_EVENT_OFF);
        if (c->retry)
                return;
        r = sd_event_add_time_relative(c->env.event, &c->retry, CLOCK_MONOTONIC, ACCEPT_RETRY, 50 * USEC_PER_MSEC,
                                       on_accept_retry, c);
        if (r < 0) {
                /* Without a timer, a client leaving turns accepting on again. */
                log_error("control socket: cannot arm the accept retry timer: %s", strerror(-r));
                c->retry = NULL;
        }
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Control *c = userdata;

        (void)s;
        (void)revents;
        for (int i = 0; i < ACCEPT_BATCH; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd >= 0) {
                        take(c, cfd);
                        continue;
                }
                if (errno == EAGAIN)
                        return 0;
                if (errno == EINTR || errno == ECONNABORTED)
                        continue;
                if ((errno == EMFILE || errno == ENFILE) && c->reserve_fd >= 0) {
                        /* Out of descriptors: the one kept in reserve lets us
                         * say so to this caller instead of leaving it (and
                         * everyone behind it) waiting in the backlog. */
                        int e = errno;

                        close(c->reserve_fd);
                        c->reserve_fd = -1;
                        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                        if (cfd >= 0)
                                send_line_and_close(cfd, "busy", "sqlvigil has run out of file descriptors; try again");
                        c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                        log_warning("control socket %s: cannot accept: %s; %u clients served now", c->path,
                                    strerror(e), c->n_clients);
                        if (c->reserve_fd < 0)
                                pause_accepting(c);
                        return 0;
                }
                log_warning("control socket %s: cannot accept: %s; trying again shortly", c->path, strerror(errno));
                pause_accepting(c);
                return 0;
        }
        return 0;
}

char *control_socket_path(const Config *c, const char *instance, bool *ret_explicit) {
        const char *rt = getenv("RUNTIME_DIRECTORY");

        if (c->control_socket) {
                *ret_explicit = true;
                return strdup(c->control_socket);
        }
        if (rt && *rt) {
                /* systemd may pass several directories separated by ':'. */
                size_t n = strcspn(rt, ":");

                *ret_explicit = true;
                return strdup_printf("%.*s/control.sock", (int)n, rt);
        }
        *ret_explicit = false;
        return strdup_printf("/run/sqlvigil/%s.sock", instance);
}

/* Binds, replacing a stale socket file but never a live one. */
static int bind_socket(int fd, const char *path, char *error, size_t error_size) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t len;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                bufprintf(error, error_size, "control socket path %s is too long", path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        if (bind(fd, (struct sockaddr *)&sa, len) == 0)
                return 0;
        if (errno != EADDRINUSE) {
                int r = -errno;

                bufprintf(error, error_size, "cannot bind control socket %s: %s", path, strerror(errno));
                return r;
        }
        {
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                bool alive;

                if (probe < 0) {
                        int r = -errno;

                        bufprintf(error, error_size, "cannot check control socket %s: %s", path, strerror(errno));
                        return r;
                }
                alive = connect(probe, (struct sockaddr *)&sa, len) == 0;
                close(probe);
                if (alive) {
                        bufprintf(error, error_size,
                                  "control socket %s is in use by another process (is this instance already running?)",
                                  path);
                        return -EADDRINUSE;
                }
        }
        /* Only a socket nobody answers on is ours to replace: anything else
         * at the path (a typo naming a database, a directory) is not. */
        {
                struct stat st;

                if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
                        bufprintf(error, error_size,
                                  "control socket path %s is taken by a file that is not a socket; sqlvigil never "
                                  "removes it (check [control] socket)",
                                  path);
                        return -EEXIST;
                }
        }
        if (unlink(path) < 0 && errno != ENOENT) {
                int r = -errno;

                bufprintf(error, error_size, "cannot remove stale control socket %s: %s", path, strerror(errno));
                return r;
        }
        if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
                int r = -errno;

                bufprintf(error, error_size, "cannot bind control socket %s: %s", path, strerror(errno));
                return r;
        }
        return 0;
}

/* A listening socket at path: bound (replacing only a stale socket),
 * readable and writable by everyone, listening; *ret_st: the file made.
 * Returns the descriptor, or a negative errno with the reason in error (a
 * file it made at path is gone again). */
/* nonnull: with -fsanitize=undefined, GCC otherwise follows the branch
 * after a failed null check of path into the messages below and warns. */
static int listen_at(const char *path, struct stat *ret_st, char *error, size_t error_size) __attribute__((nonnull(1)));
static int listen_at(const char *path, struct stat *ret_st, char *error, size_t error_size) {
        int fd, r;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot create the control socket: %s", strerror(errno));
                return r;
        }
        r = bind_socket(fd, path, error, error_size);
        if (r < 0) {
                close(fd);
                return r;
        }
        /* Whatever our umask (the unit has UMask=0077): anyone who can reach
         * the directory may ask read-only questions; admin commands check
         * peer credentials. */
        if (chmod(path, 0666) < 0 || stat(path, ret_st) < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot set up control socket %s: %s", path, strerror(errno));
                (void)unlink(path);
                close(fd);
                return r;
        }
        if (listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot listen on control socket %s: %s", path, strerror(errno));
                (void)unlink(path);
                close(fd);
                return r;
        }
        return fd;
}

int control_new(Control **ret, const ControlEnv *env, const char *path, bool explicit_path, char *error,
                size_t error_size) {
        Control *c;
        struct stat st;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->env = *env;
        c->fd = -1;
        c->reserve_fd = -1;
        c->path = strdup(path);
        if (!c->path) {
                free(c);
                return -ENOMEM;
        }
        if (!explicit_path && mkdir("/run/sqlvigil", 0755) < 0 && errno != EEXIST) {
                bufprintf(error, error_size, "cannot create /run/sqlvigil: %s", strerror(errno));
                control_free(c);
                return CONTROL_E_DISABLED;
        }
        r = listen_at(path, &st, error, error_size);
        if (r < 0) {
                free(TAKE_PTR(c->path)); /* not ours: do not remove it */
                control_free(c);
                return !explicit_path && r != -EADDRINUSE ? CONTROL_E_DISABLED : r;
        }
        c->fd = r;
        c->dev = st.st_dev;
        c->ino = st.st_ino;
        /* One descriptor in reserve, for saying "busy" when they run out. */
        c->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (c->reserve_fd < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot open /dev/null: %s", strerror(errno));
                control_free(c);
                return r;
        }
        r = sd_event_add_io(env->event, &c->listen, c->fd, EPOLLIN, on_accept, c);
        if (r < 0) {
                bufprintf(error, error_size, "cannot watch control socket %s: %s", c->path, strerror(-r));
                control_free(c);
                return r;
        }
        (void)sd_event_source_set_description(c->listen, "control-listen");
        *ret = c;
        return 0;
}

/* Removes the socket file at path, but only if it is still the one we made. */
static void remove_ours(const char *path, dev_t dev, ino_t ino) {
        struct stat st;

        if (path && ino && stat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
                (void)unlink(path);
}

const char *control_path(const Control *c) {
        return c->path;
}

int control_rebind(Control *c, const char *path, char *error, size_t error_size) {
        _cleanup_(freep) char *copy = strdup(path);
        sd_event_source *listen = NULL;
        struct stat st;
        int fd, r;

        if (!copy) {
                bufprintf(error, error_size, "out of memory");
                return -ENOMEM;
        }
        fd = listen_at(path, &st, error, error_size);
        if (fd < 0)
                return fd;
        r = sd_event_add_io(c->env.event, &listen, fd, EPOLLIN, on_accept, c);
        if (r < 0) {
                bufprintf(error, error_size, "cannot watch control socket %s: %s", path, strerror(-r));
                remove_ours(path, st.st_dev, st.st_ino);
                close(fd);
                return r;
        }
        (void)sd_event_source_set_description(listen, "control-listen");
        /* Connections taken from the old socket stay; new ones come here. */
        c->listen = sd_event_source_disable_unref(c->listen);
        c->retry = sd_event_source_disable_unref(c->retry);
        close(c->fd);
        remove_ours(c->path, c->dev, c->ino);
        free(c->path);
        c->path = TAKE_PTR(copy);
        c->fd = fd;
        c->dev = st.st_dev;
        c->ino = st.st_ino;
        c->listen = listen;
        return 0;
}

Control *control_free(Control *c) {
        if (!c)
                return NULL;
        while (c->clients)
                client_free(c->clients);
        while (c->orphans)
                client_free(c->orphans);
        c->listen = sd_event_source_disable_unref(c->listen);
        c->retry = sd_event_source_disable_unref(c->retry);
        if (c->fd >= 0)
                close(c->fd);
        if (c->reserve_fd >= 0)
                close(c->reserve_fd);
        remove_ours(c->path, c->dev, c->ino);
        free(c->path);
        free(c);
        return NULL;
}
