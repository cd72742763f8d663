/* SPDX-License-Identifier: MIT */
/*
 * sqlvigilctl - asks a running sqlvigil over its control socket
 * (docs/control.md) and shows the answer to a person, or as JSON.
 *
 * Exit status: 0 success (for health: ok), 1 failed operation or unhealthy,
 * 2 usage error, 3 daemon unreachable, 4 permission denied.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "json.h"
#include "parse.h"
#include "request.h"
#include "utf8.h"
#include "scheduler.h"
#include "util.h"

enum {
        CTL_OK = 0,
        CTL_FAILED = 1,
        CTL_USAGE = 2,
        CTL_UNREACHABLE = 3,
        CTL_DENIED = 4,
};

#define RUN_DIR "/run/sqlvigil"
#define CONF_DIR "/etc/sqlvigil"
#define REPLY_MAX (4 << 20)
/* How long to keep trying to connect while the daemon's listen backlog is
 * full, when there is no --timeout (the admin commands). */
#define CONNECT_WAIT_MS 10000

static bool use_color;

static void help(void) {
        printf("Usage: sqlvigilctl [OPTIONS] COMMAND [ARGUMENT] [OPTIONS]\n"
               "\n"
               "Ask a running sqlvigil.\n"
               "\n"
               "Read-only commands:\n"
               "  status                 one screen for a person\n"
               "  health                 ok, degraded or failed, with the reason\n"
               "  stats                  everything, as indented JSON\n"
               "  config                 the configuration in force\n"
               "  backups                the backups in [backup] directory, newest first\n"
               "Admin commands (root, sqlvigil's user, or [control] admin_group):\n"
               "  checkpoint [passive|full|restart|truncate]\n"
               "  vacuum [PAGES]         incremental vacuum in budgeted steps\n"
               "  analyze | optimize     ANALYZE every table | the stale ones\n"
               "  check [quick|integrity]\n"
               "  reload                 reload the configuration and say whether it applied\n"
               "  backup                 take a backup now\n"
               "  restore FILE           put FILE's content into the live database, after a\n"
               "                         safety backup; FILE is opened with your permissions\n"
               "\n"
               "Options, before or after the command:\n"
               "  -s, --socket PATH      the control socket\n"
               "  -i, --instance NAME    instance NAME's socket: [control] socket in\n"
               "                         " CONF_DIR "/NAME.conf, else under " RUN_DIR "/\n"
               "      --json             print the daemon's JSON reply\n"
               "  -t, --timeout SECONDS  give up after this long, or 'infinity' (default: 10 for\n"
               "                         read-only commands, 30 for reload, none for the other\n"
               "                         admin commands)\n"
               "  -h, --help, --version\n"
               "\n"
               "Exit status: 0 success (health: ok), 1 operation failed or unhealthy,\n"
               "2 usage error, 3 sqlvigil unreachable, 4 permission denied.\n");
}

/* ---- Finding the socket ------------------------------------------------- */

static bool is_socket(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Instance NAME's socket: the [control] socket of /etc/sqlvigil/NAME.conf
 * when that file sets one (and we may read it), else where the daemon puts
 * it by default. */
static char *instance_socket(const char *name) {
        _cleanup_(freep) char *conf = NULL;
        ConfigErrors errors = { 0 };
        Config *c = NULL;
        char *p;

        conf = strdup_printf(CONF_DIR "/%s.conf", name);
        if (conf && config_load_file(conf, &c, &errors) == 0 && c->control_socket) {
                p = strdup(c->control_socket);
                config_free(c);
                return p;
        }
        config_free(c);
        config_errors_clear(&errors);

        p = strdup_printf(RUN_DIR "/%s/control.sock", name);
        if (p && is_socket(p))
                return p;
        free(p);
        return strdup_printf(RUN_DIR "/%s.sock", name);
}

/* With neither -s nor -i: the one instance there is. */
static int find_only_instance(char **ret) {
        char found[8][256], *list;
        size_t n = 0, len = 0;
        struct dirent *de;
        DIR *d;

        d = opendir(RUN_DIR);
        if (!d) {
                fprintf(stderr, "sqlvigilctl: no sqlvigil instance found (%s: %s); pass -s SOCKET\n", RUN_DIR,
                        strerror(errno));
                return CTL_UNREACHABLE;
        }
        while ((de = readdir(d))) {
                char path[512];
                size_t l = strlen(de->d_name);

                if (de->d_name[0] == '.')
                        continue;
                if (l > 5 && streq(de->d_name + l - 5, ".sock")) {
                        bufprintf(path, sizeof(path), RUN_DIR "/%s", de->d_name);
                        if (!is_socket(path))
                                continue;
                        de->d_name[l - 5] = '\0';
                } else {
                        bufprintf(path, sizeof(path), RUN_DIR "/%s/control.sock", de->d_name);
                        if (!is_socket(path))
                                continue;
                }
                if (n < ELEMENTSOF(found))
                        bufprintf(found[n], sizeof(found[n]), "%s", de->d_name);
                n++;
        }
        closedir(d);
        if (n == 0) {
                fprintf(stderr, "sqlvigilctl: no sqlvigil instance found under %s; pass -s SOCKET\n", RUN_DIR);
                return CTL_UNREACHABLE;
        }
        if (n > 1) {
                list = calloc(1, ELEMENTSOF(found) * 260);
                for (size_t i = 0; list && i < MIN(n, ELEMENTSOF(found)); i++)
                        len += (size_t)sprintf(list + len, "%s%s", i ? ", " : "", found[i]);
                fprintf(stderr, "sqlvigilctl: %zu instances are running (%s); pass -i NAME\n", n, list ? list : "?");
                free(list);
                return CTL_USAGE;
        }
        *ret = instance_socket(found[0]);
        return *ret ? CTL_OK : CTL_FAILED;
}

/* ---- Talking to the daemon ---------------------------------------------- */

/* Sends line, with pass_fd[0] (and pass_fd[1]) as SCM_RIGHTS when not -1. */
static ssize_t send_request(int fd, const char *line, const int pass_fd[2]) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(2 * sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = (char *)line, .iov_len = strlen(line) };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (pass_fd[0] >= 0) {
                size_t n = pass_fd[1] >= 0 ? 2 : 1;
                struct cmsghdr *c;

                memset(&control, 0, sizeof(control));
                msg.msg_control = &control;
                msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
                c = CMSG_FIRSTHDR(&msg);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n * sizeof(int));
                memcpy(CMSG_DATA(c), pass_fd, n * sizeof(int));
        }
        return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

/* timeout_ms -1: no limit. After a timeout, hint (may be NULL) follows the
 * message: what became of the request, what to do. pass_fd: descriptors to
 * hand over with the request (-1: none). */
/* Before a descriptor of the caller's goes to the process listening at
 * socket_path (restore: a file opened with the caller's permissions): that
 * process must be root, or the path to its socket must be one that only
 * root and that process's user control: its directory owned by either,
 * and every directory on the way there owned by root or by it, none
 * writable by anyone else (a sticky /tmp does not count: whoever came
 * first owns /tmp/X). Anyone may bind a socket under /tmp; a [control]
 * socket or -s path there would otherwise hand the file to whoever got
 * there first. The default sockets (/run/sqlvigil/NAME, the service's
 * RuntimeDirectory) pass. CTL_OK, or CTL_DENIED/CTL_FAILED having said
 * why. */
static int check_listener(int fd, const char *socket_path) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        _cleanup_(freep) char *copy = strdup(socket_path), *dir = NULL;
        char *slash;

        if (!copy)
                return CTL_FAILED;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                fprintf(stderr, "sqlvigilctl: cannot tell who listens at %s: %s\n", socket_path, strerror(errno));
                return CTL_FAILED;
        }
        if (cred.uid == 0)
                return CTL_OK;
        slash = strrchr(copy, '/');
        if (!slash)
                strcpy(copy, ".");
        else if (slash == copy)
                copy[1] = '\0';
        else
                *slash = '\0';
        dir = realpath(copy, NULL);
        if (!dir) {
                fprintf(stderr, "sqlvigilctl: %s: %s\n", copy, strerror(errno));
                return CTL_FAILED;
        }
        for (char *p = dir;;) {
                struct stat st;
                const char *why = NULL;

                if (stat(p, &st) < 0) {
                        fprintf(stderr, "sqlvigilctl: %s: %s\n", p, strerror(errno));
                        return CTL_FAILED;
                }
                if (st.st_uid != 0 && st.st_uid != cred.uid)
                        why = "belongs to another user";
                else if (st.st_mode & (S_IWGRP | S_IWOTH))
                        why = "is writable by others";
                if (why) {
                        fprintf(stderr,
                                "sqlvigilctl: not handing the file to the process listening at %s (pid %d, uid %u): "
                                "it is not root, and %s on the way to its socket %s, so anyone could have put a "
                                "socket there; use the instance's own socket (sqlvigilctl -i NAME) or a [control] "
                                "socket in a directory only root and sqlvigil's user can write\n",
                                socket_path, (int)cred.pid, (unsigned)cred.uid, p, why);
                        return CTL_DENIED;
                }
                slash = strrchr(p, '/');
                if (!slash || (slash == p && p[1] == '\0'))
                        return CTL_OK;
                if (slash == p)
                        p[1] = '\0';
                else
                        *slash = '\0';
        }
}

static int ask(const char *socket_path, const char *line, const int pass_fd[2], int timeout_ms, const char *hint,
               char **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = 0, cap = 65536;
        char *buf;
        int fd;

        if (strlen(socket_path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "sqlvigilctl: socket path too long: %s\n", socket_path);
                return CTL_USAGE;
        }
        strcpy(sa.sun_path, socket_path);
        /* Non-blocking, so that a full listen backlog (EAGAIN on an AF_UNIX
         * socket) is retried for a bounded time instead of blocking in
         * connect() for as long as it stays full. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                fprintf(stderr, "sqlvigilctl: cannot create a socket: %s\n", strerror(errno));
                return CTL_FAILED;
        }
        {
                int wait_ms = timeout_ms > 0 ? timeout_ms : CONNECT_WAIT_MS;
                struct timespec start, now;

                clock_gettime(CLOCK_MONOTONIC, &start);
                while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                        int e = errno;

                        clock_gettime(CLOCK_MONOTONIC, &now);
                        if (e == EAGAIN && (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 <
                                                   wait_ms) {
                                (void)poll(NULL, 0, 10);
                                continue;
                        }
                        if (e == EAGAIN)
                                fprintf(stderr,
                                        "sqlvigilctl: sqlvigil at %s did not take the connection within %d s (its "
                                        "queue of connections stayed full)\n",
                                        socket_path, wait_ms / 1000);
                        else
                                fprintf(stderr, "sqlvigilctl: cannot reach sqlvigil at %s: %s\n", socket_path,
                                        strerror(e));
                        close(fd);
                        return e == EACCES || e == EPERM ? CTL_DENIED : CTL_UNREACHABLE;
                }
        }
        if (fcntl(fd, F_SETFL, 0) < 0) {
                fprintf(stderr, "sqlvigilctl: cannot set up the socket: %s\n", strerror(errno));
                close(fd);
                return CTL_FAILED;
        }
        if (pass_fd[0] >= 0) {
                int q = check_listener(fd, socket_path);

                if (q != CTL_OK) {
                        close(fd);
                        return q;
                }
        }
        /* The daemon may have answered and closed already (a "busy" reply,
         * when it is serving as many clients as it can): then sending fails,
         * and the answer is read all the same. */
        if ((send_request(fd, line, pass_fd) < 0 || shutdown(fd, SHUT_WR) < 0) && errno != EPIPE &&
            errno != ECONNRESET && errno != ENOTCONN) {
                fprintf(stderr, "sqlvigilctl: cannot send to %s: %s\n", socket_path, strerror(errno));
                close(fd);
                return CTL_UNREACHABLE;
        }
        buf = malloc(cap);
        if (!buf) {
                close(fd);
                return CTL_FAILED;
        }
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;
                int r;

                r = poll(&p, 1, timeout_ms);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        if (r < 0)
                                fprintf(stderr, "sqlvigilctl: cannot wait for %s: %s\n", socket_path, strerror(errno));
                        else
                                fprintf(stderr, "sqlvigilctl: no answer from %s within %g s%s%s\n", socket_path,
                                        timeout_ms / 1000.0, hint ? "; " : "", hint ? hint : "");
                        free(buf);
                        close(fd);
                        return CTL_UNREACHABLE;
                }
                if (len + 1 >= cap) {
                        char *b;

                        if (cap >= REPLY_MAX) {
                                fprintf(stderr, "sqlvigilctl: reply from %s too large\n", socket_path);
                                free(buf);
                                close(fd);
                                return CTL_UNREACHABLE;
                        }
                        b = realloc(buf, cap * 2);
                        if (!b) {
                                free(buf);
                                close(fd);
                                return CTL_FAILED;
                        }
                        buf = b;
                        cap *= 2;
                }
                n = read(fd, buf + len, cap - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                /* A whole line came before the reset: the daemon closed
                 * with our request unread (it answered without reading it). */
                if (n < 0 && errno == ECONNRESET && len > 0 && buf[len - 1] == '\n')
                        break;
                if (n < 0) {
                        fprintf(stderr, "sqlvigilctl: cannot read from %s: %s\n", socket_path, strerror(errno));
                        free(buf);
                        close(fd);
                        return CTL_UNREACHABLE;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        buf[len] = '\0';
        if (len == 0) {
                fprintf(stderr, "sqlvigilctl: %s closed the connection without an answer\n", socket_path);
                free(buf);
                return CTL_UNREACHABLE;
        }
        *ret = buf;
        return CTL_OK;
}

/* ---- Showing answers ---------------------------------------------------- */

static void print_indented(const JsonValue *v, int depth) {
        switch (v->type) {
        case JSON_NULL:
                printf("null");
                break;
        case JSON_BOOL:
                printf("%s", v->boolean ? "true" : "false");
                break;
        case JSON_NUMBER:
                if (v->number == (double)(int64_t)v->number)
                        printf("%" PRIi64, (int64_t)v->number);
                else
                        printf("%.6f", v->number);
                break;
        case JSON_STRING: {
                Json j;

                json_init(&j);
                json_string(&j, v->string);
                printf("%s", json_text(&j) ? json_text(&j) : "\"?\"");
                json_free(&j);
                break;
        }
        case JSON_ARRAY:
        case JSON_OBJECT: {
                bool obj = v->type == JSON_OBJECT;

                if (!v->child) {
                        printf(obj ? "{}" : "[]");
                        break;
                }
                printf(obj ? "{\n" : "[\n");
                for (const JsonValue *c = v->child; c; c = c->next) {
                        printf("%*s", (depth + 1) * 2, "");
                        if (obj) {
                                Json j;

                                json_init(&j);
                                json_string(&j, c->key);
                                printf("%s: ", json_text(&j) ? json_text(&j) : "\"?\"");
                                json_free(&j);
                        }
                        print_indented(c, depth + 1);
                        printf("%s\n", c->next ? "," : "");
                }
                printf("%*s%s", depth * 2, "", obj ? "}" : "]");
                break;
        }
        }
}

/* For a terminal: strings decoded from the reply may hold control
 * characters (a path with a newline or an escape sequence); show them as a
 * log line does (utf8.h), so every line printed is the line it looks like. */
static void escape_strings(JsonValue *v) {
        for (; v; v = v->next) {
                if (v->type == JSON_STRING) {
                        char *e = utf8_escape_log(v->string);

                        if (e) {
                                free(v->string);
                                v->string = e;
                        }
                }
                escape_strings(v->child);
        }
}

static const char *ago(double at, char *buf, size_t size) {
        double now = (double)now_usec(CLOCK_REALTIME) / 1e6;
        char e[32];

        if (at <= 0)
                return "never";
        bufprintf(buf, size, "%s ago", format_elapsed(e, sizeof(e), now > at ? (usec_t)((now - at) * 1e6) : 0));
        return buf;
}

static const char *bytes(const JsonValue *v, const char *path, char *buf, size_t size) {
        double d;

        if (!json_get_number(v, path, &d))
                return "?";
        return format_bytes(buf, size, (uint64_t)d);
}

static int64_t num(const JsonValue *v, const char *path) {
        double d;

        return json_get_number(v, path, &d) ? (int64_t)d : -1;
}

static const char *str(const JsonValue *v, const char *path) {
        const char *s = json_get_string(v, path);

        return s ? s : "?";
}

static void show_status(const JsonValue *r) {
        const char *state = str(r, "health.state");
        char b1[32], b2[32], b3[64];
        double since = 0, at;
        int64_t pages = num(r, "database.page_count"), free_pages = num(r, "database.freelist_count");
        const JsonValue *pr;
        int differ = 0;

        (void)json_get_number(r, "health.since", &since);
        printf("%s%s%s — %s\n", use_color ? "\033[1m" : "", str(r, "process.instance"), use_color ? "\033[0m" : "",
               str(r, "database.path"));
        printf("  health      %s%s%s%s (since %s)\n", state, *str(r, "health.reason") && !streq(state, "ok") ? ": " : "",
               streq(state, "ok") ? "" : str(r, "health.reason"), "", ago(since, b3, sizeof(b3)));
        printf("  database    %s, %" PRIi64 " pages of %" PRIi64 " bytes, %" PRIi64 " free (%.1f%%)\n",
               bytes(r, "database.bytes", b1, sizeof(b1)), pages, num(r, "database.page_size"), free_pages,
               pages > 0 ? 100.0 * (double)free_pages / (double)pages : 0.0);
        if (num(r, "database.wal_frames") >= 0)
                printf("  WAL         %s, %" PRIi64 " frames, %" PRIi64 " not yet in the database\n",
                       bytes(r, "database.wal_bytes", b1, sizeof(b1)), num(r, "database.wal_frames"),
                       num(r, "database.wal_pending_frames"));
        else
                printf("  WAL         %s\n", bytes(r, "database.wal_bytes", b1, sizeof(b1)));
        printf("  disk        %s free\n", bytes(r, "database.free_disk_bytes", b1, sizeof(b1)));

        /* By scope: what shapes the file for everyone, what shapes only
         * sqlvigil's connection (as requested), and the applications' own
         * settings, which sqlvigil does not apply: those are warnings,
         * never "as configured". */
        pr = json_get(r, "pragmas");
        for (int pass = 0; pass < 2; pass++) {
                const char *scope = pass == 0 ? "file" : "sqlvigil";
                bool first = true;

                for (const JsonValue *p = pr ? pr->child : NULL; p; p = p->next) {
                        const char *sc = json_get_string(p, "scope");

                        if (!sc || !streq(sc, scope) || (pass == 1 && !json_get_string(p, "requested")))
                                continue;
                        printf("%s%s=%s", first ? (pass == 0 ? "  pragmas     file: " : "\n              sqlvigil's own connection: ")
                                                : " ",
                               p->key, str(p, "effective"));
                        first = false;
                }
        }
        printf("\n");
        for (const JsonValue *p = pr ? pr->child : NULL; p; p = p->next) {
                const char *o = json_get_string(p, "outcome");

                if (o && !streq(o, "applied") && !streq(o, "unrequested") && !streq(o, "application-only")) {
                        printf("              %s requested %s, in force %s (%s)\n", p->key, str(p, "requested"),
                               str(p, "effective"), o);
                        differ++;
                } else if (o && streq(o, "application-only"))
                        differ++;
        }
        if (!differ)
                printf("              as configured\n");
        for (const JsonValue *p = pr ? pr->child : NULL; p; p = p->next) {
                const char *o = json_get_string(p, "outcome");

                if (o && streq(o, "application-only"))
                        printf("  %-11s %s\n", "warning", str(p, "note"));
        }

        for (size_t i = 0; i < _TASK_MAX; i++) {
                char path[64];
                const JsonValue *t;

                bufprintf(path, sizeof(path), "maintenance.last.%s", task_names[i]);
                t = json_get(r, path);
                printf("  %-11s ", i == 0 ? "last runs" : "");
                if (!t || t->type != JSON_OBJECT) {
                        printf("%-12s never\n", task_names[i]);
                        continue;
                }
                at = 0;
                (void)json_get_number(t, "at", &at);
                printf("%-12s %-12s %-10s %s (%s, lock %s)\n", task_names[i], ago(at, b3, sizeof(b3)), str(t, "result"),
                       str(t, "summary"), format_elapsed(b1, sizeof(b1), (usec_t)MAX(num(t, "duration_usec"), 0)),
                       format_elapsed(b2, sizeof(b2), (usec_t)MAX(num(t, "lock_usec"), 0)));
        }
        if (json_get_string(r, "maintenance.running"))
                printf("  running     %s\n", str(r, "maintenance.running"));
        printf("  totals      %" PRIi64 " checkpoints, %" PRIi64 " pages reclaimed, %" PRIi64 " tables analyzed, %" PRIi64
               " checks (%" PRIi64 " failed)\n",
               num(r, "maintenance.totals.checkpoints"), num(r, "maintenance.totals.pages_reclaimed"),
               num(r, "maintenance.totals.tables_analyzed"), num(r, "maintenance.totals.quick_checks"),
               num(r, "maintenance.totals.checks_failed"));
        printf("  process     pid %" PRIi64 ", %s, up %s, RSS %s, sqlvigil %s, SQLite %s\n", num(r, "process.pid"),
               str(r, "process.state"), format_elapsed(b1, sizeof(b1), (usec_t)MAX(num(r, "process.uptime_usec"), 0)),
               bytes(r, "process.rss_bytes", b2, sizeof(b2)), str(r, "process.version"),
               str(r, "process.sqlite_version"));
        if (json_get(r, "backups") && json_get(r, "backups")->type == JSON_OBJECT) {
                if (json_get(r, "backups.newest") && json_get(r, "backups.newest")->type == JSON_OBJECT) {
                        at = 0;
                        (void)json_get_number(r, "backups.newest.time", &at);
                        printf("  backups     %" PRIi64 " in %s; newest %s, %s, %s\n", num(r, "backups.count"),
                               str(r, "backups.directory"), str(r, "backups.newest.file"), ago(at, b3, sizeof(b3)),
                               bytes(r, "backups.newest.bytes", b1, sizeof(b1)));
                } else
                        printf("  backups     none yet in %s\n", str(r, "backups.directory"));
                if (json_get_string(r, "backups.failure"))
                        printf("              the last one failed: %s\n", str(r, "backups.failure"));
        }
        printf("  checks      every health round; median %" PRIi64 " us, p99 %" PRIi64 " us\n",
               num(r, "health.check_usec_p50"), num(r, "health.check_usec_p99"));
}

static void show_backups(const JsonValue *r) {
        const JsonValue *list = json_get(r, "backups");
        char b1[32], b2[32], b3[64];
        double at;

        if (!list || !list->child) {
                printf("no backups\n");
                return;
        }
        for (const JsonValue *e = list->child; e; e = e->next) {
                at = 0;
                (void)json_get_number(e, "time", &at);
                printf("%-40s %-14s %9s  %-9s %s check %s (copy %s)%s\n", str(e, "file"), ago(at, b3, sizeof(b3)),
                       bytes(e, "bytes", b1, sizeof(b1)), str(e, "trigger"), str(e, "check"), str(e, "check_result"),
                       format_elapsed(b2, sizeof(b2), (usec_t)MAX(num(e, "copy_usec"), 0)),
                       json_get(e, "present") && json_get(e, "present")->boolean ? "" : "  MISSING");
        }
}

static void show_backup(const JsonValue *r) {
        char b1[32], b2[32], b3[32];

        printf("backup: %s (%s, %" PRIi64 " pages): copied in %s, %s check in %s\n", str(r, "backup.path"),
               bytes(r, "backup.bytes", b1, sizeof(b1)), num(r, "backup.pages"),
               format_elapsed(b2, sizeof(b2), (usec_t)MAX(num(r, "backup.copy_usec"), 0)), str(r, "backup.check"),
               format_elapsed(b3, sizeof(b3), (usec_t)MAX(num(r, "backup.check_usec"), 0)));
}

static void show_restore(const JsonValue *r) {
        char b1[32], b2[32], b3[32];

        printf("restore: %s (%s, %" PRIi64 " pages) is now the database's content, in %s (write lock %s)\n"
               "the content before is in %s\n",
               str(r, "restore.file"), bytes(r, "restore.bytes", b1, sizeof(b1)), num(r, "restore.pages"),
               format_elapsed(b2, sizeof(b2), (usec_t)MAX(num(r, "restore.duration_usec"), 0)),
               format_elapsed(b3, sizeof(b3), (usec_t)MAX(num(r, "restore.lock_usec"), 0)),
               str(r, "restore.safety_backup"));
}

static void show_config(const JsonValue *r) {
        const JsonValue *cfg = json_get(r, "config");

        if (json_get_string(r, "source"))
                printf("# in force in sqlvigil (from %s)\n", str(r, "source"));
        else /* started without --config: the defaults and its command line */
                printf("# in force in sqlvigil (no configuration file: the defaults and its command line)\n");
        for (const JsonValue *sec = cfg ? cfg->child : NULL; sec; sec = sec->next) {
                printf("\n[%s]\n", sec->key);
                for (const JsonValue *k = sec->child; k; k = k->next)
                        if (k->type == JSON_STRING)
                                printf("%s = %s\n", k->key, k->string);
                        else
                                printf("# %s is unset\n", k->key);
        }
}

static void show_operation(const JsonValue *r, const char *key) {
        const JsonValue *op = json_get(r, key);
        char b1[32], b2[32];

        if (!op) {
                printf("%s: done\n", key);
                return;
        }
        printf("%s: %s", key, str(op, "result"));
        if (json_get_string(op, "summary"))
                printf(": %s", str(op, "summary"));
        if (num(op, "duration_usec") >= 0)
                printf(" (%s, longest lock %s)", format_elapsed(b1, sizeof(b1), (usec_t)num(op, "duration_usec")),
                       format_elapsed(b2, sizeof(b2), (usec_t)MAX(num(op, "lock_usec"), 0)));
        printf("\n");
}

/* The longest sqlvigilctl waits for a reload by default: well below the
 * 90 s that systemd gives ExecReload= (TimeoutStartSec=, whose default is
 * DefaultTimeoutStartSec=90s), so that `systemctl reload` fails with our
 * message instead of systemd killing us, and above the 5 s default
 * [pragmas] busy_timeout a reload may wait for a lock. */
#define RELOAD_TIMEOUT_SEC 30
/* poll() takes int milliseconds. */
#define TIMEOUT_MAX_SEC (INT_MAX / 1000)

/* SECONDS: a positive number, fractions allowed, or "infinity" (0: no limit). */
static int parse_timeout(const char *s, double *ret) {
        char *end;
        double d;

        if (streq(s, "infinity")) {
                *ret = 0;
                return 0;
        }
        errno = 0;
        d = strtod(s, &end);
        if (end == s || *end || errno != 0 || !(d >= 0.001) || d > TIMEOUT_MAX_SEC)
                return -EINVAL;
        *ret = d;
        return 0;
}

static void unknown_option(const char *arg, const struct option *options) {
        const char *names[16];
        size_t n = 0, len;
        char word[64];
        int near = -1;

        if (strncmp(arg, "--", 2) == 0) {
                len = strcspn(arg + 2, "=");
                bufprintf(word, sizeof(word), "%.*s", (int)MIN(len, sizeof(word) - 1), arg + 2);
                for (; options[n].name && n < ELEMENTSOF(names); n++)
                        names[n] = options[n].name;
                near = nearest_word(word, names, n);
        }
        if (near >= 0)
                fprintf(stderr, "sqlvigilctl: unknown option '%s'; did you mean '--%s'? Try --help\n", arg, names[near]);
        else
                fprintf(stderr, "sqlvigilctl: unknown option '%s'; try --help\n", arg);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "instance", required_argument, NULL, 'i' },
                { "json", no_argument, NULL, 'j' },
                { "timeout", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        _cleanup_(freep) char *socket_path = NULL, *reply = NULL, *line = NULL;
        const char *instance = NULL, *path = NULL, *words[2];
        size_t n_words = 0;
        bool json = false;
        double timeout = -1;
        JsonValue *v = NULL;
        char error[256];
        Request req;
        size_t off;
        int c, r, pass_fd[2] = { -1, -1 };

        /* Options may come before or after the command: a leading '-' has
         * getopt return the other words in order, as 1, whatever
         * $POSIXLY_CORRECT says, so "stats --json" works everywhere. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, "-:s:i:t:h", options, NULL)) >= 0) {
                switch (c) {
                case 1:
                        if (n_words == ELEMENTSOF(words)) {
                                fprintf(stderr, "sqlvigilctl: too many arguments ('%s'); try --help\n", optarg);
                                return CTL_USAGE;
                        }
                        words[n_words++] = optarg;
                        break;
                case 's':
                        path = optarg;
                        break;
                case 'i':
                        instance = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 't':
                        if (parse_timeout(optarg, &timeout) < 0) {
                                fprintf(stderr,
                                        "sqlvigilctl: --timeout takes a number of seconds between 0.001 and %d, "
                                        "or 'infinity', not '%s'\n",
                                        TIMEOUT_MAX_SEC, optarg);
                                return CTL_USAGE;
                        }
                        break;
                case 'h':
                        help();
                        return CTL_OK;
                case 'V':
                        printf("sqlvigilctl %s\n", SQLVIGIL_VERSION);
                        return CTL_OK;
                case ':':
                        if (strncmp(argv[optind - 1], "--", 2) == 0)
                                fprintf(stderr, "sqlvigilctl: option '%s' needs an argument; try --help\n",
                                        argv[optind - 1]);
                        else
                                fprintf(stderr, "sqlvigilctl: option '-%c' needs an argument; try --help\n", optopt);
                        return CTL_USAGE;
                default:
                        if (optopt != 0 && strncmp(argv[optind - 1], "--", 2) != 0)
                                fprintf(stderr, "sqlvigilctl: unknown option '-%c'; try --help\n", optopt);
                        else
                                unknown_option(argv[optind - 1], options);
                        return CTL_USAGE;
                }
        }
        /* After "--", the rest are words. */
        for (; optind < argc; optind++) {
                if (n_words == ELEMENTSOF(words)) {
                        fprintf(stderr, "sqlvigilctl: too many arguments ('%s'); try --help\n", argv[optind]);
                        return CTL_USAGE;
                }
                words[n_words++] = argv[optind];
        }
        if (path && instance) {
                fprintf(stderr, "sqlvigilctl: -s and -i exclude each other\n");
                return CTL_USAGE;
        }
        if (n_words == 0) {
                fprintf(stderr, "sqlvigilctl: no command; try --help\n");
                return CTL_USAGE;
        }
        if (streq(words[0], "restore")) {
                /* FILE is opened here, with the caller's permissions, and
                 * handed over: the daemon never opens a path for a client. */
                if (n_words != 2) {
                        fprintf(stderr, "sqlvigilctl: restore needs the FILE to restore from\n");
                        return CTL_USAGE;
                }
                /* O_NONBLOCK: a FIFO must not hang the command before it
                 * even connects; only a regular file goes on. */
                pass_fd[0] = open(words[1], O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                if (pass_fd[0] < 0) {
                        fprintf(stderr, "sqlvigilctl: cannot open %s: %s\n", words[1], strerror(errno));
                        return errno == EACCES || errno == EPERM ? CTL_DENIED : CTL_FAILED;
                }
                {
                        struct stat st;
                        /* Beside the file itself, not beside a link to it. */
                        _cleanup_(freep) char *real = realpath(words[1], NULL);
                        _cleanup_(freep) char *wal = strdup_printf("%s-wal", real ? real : words[1]);

                        if (fstat(pass_fd[0], &st) < 0 || !S_ISREG(st.st_mode)) {
                                fprintf(stderr, "sqlvigilctl: %s is not a regular file; restore takes an SQLite "
                                                "database file (one of sqlvigil's backups)\n",
                                        words[1]);
                                return CTL_FAILED;
                        }
                        /* A database in WAL mode whose commits are still in
                         * its -wal: the file alone is older than what its
                         * programs see, and restoring it would lose them. */
                        if (!wal)
                                return CTL_FAILED;
                        if (stat(wal, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
                                fprintf(stderr,
                                        "sqlvigilctl: %s holds %jd bytes: commits that %s itself may not have "
                                        "yet; restoring the file alone would lose them. Checkpoint them into it "
                                        "first (sqlite3 %s 'PRAGMA wal_checkpoint(TRUNCATE)', with the programs "
                                        "that write it stopped), then run restore again\n",
                                        wal, (intmax_t)st.st_size, words[1], words[1]);
                                return CTL_FAILED;
                        }
                }
                /* One of sqlvigil's backups (NAME.db) has its manifest
                 * beside it (NAME.json): the daemon checks the SHA-256. */
                {
                        size_t n = strlen(words[1]);
                        _cleanup_(freep) char *manifest = n > 3 && streq(words[1] + n - 3, ".db")
                                                                   ? strdup_printf("%.*s.json", (int)(n - 3), words[1])
                                                                   : NULL;

                        struct stat st;

                        if (manifest)
                                pass_fd[1] = open(manifest, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                        if (pass_fd[1] >= 0 && (fstat(pass_fd[1], &st) < 0 || !S_ISREG(st.st_mode))) {
                                fprintf(stderr, "sqlvigilctl: %s is not a regular file; not passing it as the "
                                                "backup's manifest\n",
                                        manifest);
                                close(pass_fd[1]);
                                pass_fd[1] = -1;
                        }
                }
                line = strdup("restore\n");
        } else
                line = strdup_printf("%s%s%s\n", words[0], n_words == 2 ? " " : "", n_words == 2 ? words[1] : "");
        if (!line)
                return CTL_FAILED;
        /* The daemon's own parser: what it would refuse, we refuse here. */
        if (request_parse(line, strlen(line), &req, error, sizeof(error)) < 0) {
                fprintf(stderr, "sqlvigilctl: %s\n", error);
                return CTL_USAGE;
        }

        if (path)
                socket_path = strdup(path);
        else if (instance)
                socket_path = instance_socket(instance);
        else {
                r = find_only_instance(&socket_path);
                if (r != CTL_OK)
                        return r;
        }
        if (!socket_path)
                return CTL_FAILED;

        use_color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
        if (timeout < 0)
                timeout = req.command == REQUEST_RELOAD ? RELOAD_TIMEOUT_SEC : request_is_admin(req.command) ? 0 : 10;
        /* Going away does not cancel a reload: the daemon finishes it and
         * logs the outcome. */
        r = ask(socket_path, line, pass_fd, timeout > 0 ? (int)(timeout * 1000) : -1,
                req.command == REQUEST_RELOAD ? "sqlvigil goes on with the reload and logs whether it was applied; "
                                                "pass --timeout to wait longer"
                                              : NULL,
                &reply);
        for (int i = 0; i < 2; i++)
                if (pass_fd[i] >= 0)
                        close(pass_fd[i]);
        if (r != CTL_OK)
                return r;

        r = json_parse(reply, strlen(reply), &v, &off);
        if (r < 0) {
                fprintf(stderr, "sqlvigilctl: unreadable answer from %s (at byte %zu)\n", socket_path, off);
                return CTL_UNREACHABLE;
        }
        if (json)
                fputs(reply, stdout);
        else if (req.command != REQUEST_STATS) /* stats is printed as JSON */
                escape_strings(v);
        {
                bool ok = false;
                const char *code = json_get_string(v, "code");

                (void)json_get_bool(v, "ok", &ok);
                if (!ok) {
                        if (req.command == REQUEST_RESTORE)
                                fprintf(stderr, "sqlvigilctl: restore %s: %s\n", words[1], str(v, "error"));
                        else
                                fprintf(stderr, "sqlvigilctl: %s: %s\n", socket_path, str(v, "error"));
                        r = code && streq(code, "permission-denied") ? CTL_DENIED
                            : code && streq(code, "bad-request")     ? CTL_USAGE
                                                                     : CTL_FAILED;
                        if (!json && req.command == REQUEST_CHECK && json_get(v, "check"))
                                show_operation(v, "check");
                        json_value_free(v);
                        return r;
                }
        }
        r = CTL_OK;
        switch (req.command) {
        case REQUEST_HEALTH: {
                const char *state = str(v, "health.state");

                if (!json) {
                        if (streq(state, "ok"))
                                printf("ok\n");
                        else
                                printf("%s: %s\n", state, str(v, "health.reason"));
                }
                r = streq(state, "ok") ? CTL_OK : CTL_FAILED;
                break;
        }
        case REQUEST_STATS:
                if (!json) {
                        print_indented(v, 0);
                        printf("\n");
                }
                break;
        case REQUEST_STATUS:
                if (!json)
                        show_status(v);
                break;
        case REQUEST_CONFIG:
                if (!json)
                        show_config(v);
                break;
        case REQUEST_RELOAD:
                if (!json) {
                        if (json_get_string(v, "reload.control_socket"))
                                printf("reload: applied; the control socket moved to %s\n",
                                       str(v, "reload.control_socket"));
                        else
                                printf("reload: applied\n");
                }
                /* Applied, except what takes a restart: say so, also with --json. */
                if (json_get_string(v, "reload.restart_needed"))
                        fprintf(stderr, "sqlvigilctl: %s: %s\n", socket_path, str(v, "reload.restart_needed"));
                break;
        case REQUEST_BACKUPS:
                if (!json)
                        show_backups(v);
                break;
        case REQUEST_BACKUP:
                if (!json)
                        show_backup(v);
                break;
        case REQUEST_RESTORE:
                if (!json)
                        show_restore(v);
                break;
        default:
                if (!json)
                        show_operation(v, req.command == REQUEST_CHECK      ? "check"
                                          : req.command == REQUEST_OPTIMIZE ? "analyze"
                                                                            : request_names[req.command]);
                break;
        }
        json_value_free(v);
        if (fflush(stdout) != 0) {
                fprintf(stderr, "sqlvigilctl: cannot write: %s\n", strerror(errno));
                return CTL_FAILED;
        }
        return r;
}
