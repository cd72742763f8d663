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

/* Clients served at once. Each costs a few KiB; more wait in the backlog. */
#define MAX_CLIENTS 128
/* A client that does not send its request, or read its reply, this long is
 * cut off: it holds a slot. */
#define CLIENT_TIMEOUT (5 * USEC_PER_SEC)

typedef struct ControlClient Client;

static void client_drain(Client *cl);

struct Control {
        ControlEnv env;
        char *path;
        int fd;
        dev_t dev;
        ino_t ino;
        sd_event_source *listen;
        Client *clients;
        unsigned n_clients;
};

struct ControlClient {
        Control *control;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        char in[REQUEST_MAX];
        size_t in_len;
        bool waiting;     /* an admin operation runs on its behalf */
        bool replying;
        bool draining;    /* reply sent; reading until the client closes */
        Json reply;
        size_t reply_off;
        ControlPeer peer;
        int passed_fd[2]; /* descriptors that came with the request (SCM_RIGHTS), -1: none */
        Client *prev, *next;
};

static void client_free(Client *cl) {
        Control *c = cl->control;

        if (cl->waiting && c->env.gone)
                /* Gone before its operation finished: the operation goes on,
                 * nobody is told. */
                c->env.gone(c->env.userdata, cl);
        sd_event_source_disable_unref(cl->io);
        sd_event_source_disable_unref(cl->timer);
        if (cl->fd >= 0)
                close(cl->fd);
        for (size_t i = 0; i < ELEMENTSOF(cl->passed_fd); i++)
                if (cl->passed_fd[i] >= 0)
                        files_close(cl->passed_fd[i]);
        json_free(&cl->reply);
        if (cl->prev)
                cl->prev->next = cl->next;
        else
                c->clients = cl->next;
        if (cl->next)
                cl->next->prev = cl->prev;
        c->n_clients--;
        /* A slot is free again. */
        if (c->listen && c->n_clients == MAX_CLIENTS - 1)
                (void)sd_event_source_set_enabled(c->listen, SD_EVENT_ON);
        free(cl);
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
        if (!json_text(&cl->reply)) {
                /* Out of memory while building: a short reply we can afford. */
                reply_error_members(control_reply_begin(cl, false), "failed", "out of memory");
                json_object_end(&cl->reply);
        }
        /* One line: the JSON writer never emits a raw newline. */
        json_newline(&cl->reply);
        r = sd_event_source_set_time_relative(cl->timer, CLIENT_TIMEOUT);
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
        cl->waiting = true;
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
        /* While an operation runs on its behalf the client's source is off
         * (client_process()): nothing arrives here until the reply. */
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

static int on_client_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Client *cl = userdata;

        (void)s;
        (void)usec;
        if (cl->replying || cl->draining) {
                client_free(cl); /* never read its reply, or never closed */
                return 0;
        }
        (void)sd_event_source_set_enabled(cl->io, SD_EVENT_OFF);
        control_reply_error(cl, "timeout", "no complete request within %llu seconds",
                    (unsigned long long)(CLIENT_TIMEOUT / USEC_PER_SEC));
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Control *c = userdata;

        (void)revents;
        while (c->n_clients < MAX_CLIENTS) {
                socklen_t len = sizeof(struct ucred);
                struct ucred cred;
                Client *cl;
                int cfd, r;

                cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return 0;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* Out of descriptors: stop accepting until a client leaves. */
                                log_warning("control socket: cannot accept: %s", strerror(errno));
                                if (c->n_clients > 0)
                                        (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
                                return 0;
                        }
                        log_error("control socket: accept failed: %s", strerror(errno));
                        return 0;
                }
                cl = calloc(1, sizeof(*cl));
                if (!cl) {
                        close(cfd);
                        return 0;
                }
                cl->control = c;
                cl->fd = cfd;
                cl->passed_fd[0] = cl->passed_fd[1] = -1;
                json_init(&cl->reply);
                cl->next = c->clients;
                if (c->clients)
                        c->clients->prev = cl;
                c->clients = cl;
                c->n_clients++;

                if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                        /* Unknown peer: treat as nobody; reads still work. */
                        cl->peer = (ControlPeer){ .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
                } else {
                        socklen_t glen = sizeof(cl->peer.groups);

                        cl->peer = (ControlPeer){ .pid = cred.pid, .uid = cred.uid, .gid = cred.gid };
                        if (getsockopt(cfd, SOL_SOCKET, SO_PEERGROUPS, cl->peer.groups, &glen) == 0)
                                cl->peer.n_groups = (int)(glen / sizeof(gid_t));
                        /* ERANGE (more than CONTROL_MAX_GROUPS groups): the primary group still counts. */
                }

                r = sd_event_add_io(c->env.event, &cl->io, cfd, EPOLLIN | EPOLLRDHUP, on_client_io, cl);
                if (r >= 0)
                        r = sd_event_add_time_relative(c->env.event, &cl->timer, CLOCK_MONOTONIC, CLIENT_TIMEOUT,
                                                       100 * USEC_PER_MSEC, on_client_timeout, cl);
                if (r < 0) {
                        log_error("control socket: cannot watch a client: %s", strerror(-r));
                        client_free(cl);
                        continue;
                }
                (void)sd_event_source_set_description(cl->io, "control-client");
        }
        /* Full: the backlog holds the rest until a slot frees. */
        (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
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

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot create the control socket: %s", strerror(errno));
                control_free(c);
                return r;
        }
        r = bind_socket(c->fd, c->path, error, error_size);
        if (r < 0) {
                free(TAKE_PTR(c->path)); /* not ours: do not remove it */
                control_free(c);
                return !explicit_path && r != -EADDRINUSE ? CONTROL_E_DISABLED : r;
        }
        /* Whatever our umask (the unit has UMask=0077): anyone who can reach
         * the directory may ask read-only questions; admin commands check
         * peer credentials. */
        if (chmod(c->path, 0666) < 0 || stat(c->path, &st) < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot set up control socket %s: %s", c->path, strerror(errno));
                control_free(c);
                return r;
        }
        c->dev = st.st_dev;
        c->ino = st.st_ino;
        if (listen(c->fd, SOMAXCONN) < 0) {
                r = -errno;
                bufprintf(error, error_size, "cannot listen on control socket %s: %s", c->path, strerror(errno));
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

Control *control_free(Control *c) {
        struct stat st;

        if (!c)
                return NULL;
        while (c->clients)
                client_free(c->clients);
        sd_event_source_disable_unref(c->listen);
        c->listen = NULL;
        if (c->fd >= 0)
                close(c->fd);
        /* Remove the file only if it is still the one we made. */
        if (c->path && c->ino && stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
                (void)unlink(c->path);
        free(c->path);
        free(c);
        return NULL;
}
