/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "paths.h"

typedef struct Named {
        const char *what;   /* "[control] socket", "the database's -wal" */
        char *path;         /* as configured */
        char *resolved;     /* real path of the directory, then the name */
        bool exists;
        FileId id;
} Named;

/* The directory's real path (symbolic links resolved) and the name; the
 * directory need not exist (then the path as written). */
static char *resolve(const char *path) {
        char dir[PATH_MAX], base[PATH_MAX], real[PATH_MAX];

        bufprintf(dir, sizeof(dir), "%s", path);
        bufprintf(base, sizeof(base), "%s", path);
        if (!realpath(dirname(dir), real))
                return strdup(path);
        return strdup_printf("%s/%s", streq(real, "/") ? "" : real, basename(base));
}

static int add(Named *list, size_t *n, const char *what, const char *path, bool own_suffixes) {
        static const char *const suffixes[] = { "-wal", "-shm", "-journal", "-sqlvigil", "-sqlvigil-restore.tmp" };
        static const char *const names[] = { "the database's -wal", "the database's -shm",
                                             "the database's -journal", "sqlvigil's mark beside the database",
                                             "the private copy of a restore" };
        struct stat st;

        list[*n] = (Named){ .what = what, .path = strdup(path), .resolved = resolve(path) };
        if (!list[*n].path || !list[*n].resolved)
                return -ENOMEM;
        if (stat(path, &st) == 0) {
                list[*n].exists = true;
                list[*n].id = (FileId){ .dev = st.st_dev, .ino = st.st_ino };
        }
        (*n)++;
        if (!own_suffixes)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_(freep) char *p = strdup_printf("%s%s", path, suffixes[i]);
                int r;

                if (!p)
                        return -ENOMEM;
                r = add(list, n, names[i], p, false);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool same(const Named *a, const Named *b) {
        return streq(a->resolved, b->resolved) || (a->exists && b->exists && file_id_eq(a->id, b->id));
}

int paths_check(const Config *c, const char *config_path, ConfigErrors *errors) {
        Named list[24];
        size_t n = 0, protected_n;
        int r = 0, found = 0;

        if (c->db_path)
                r = add(list, &n, "the database", c->db_path, true);
        if (r == 0 && config_path)
                r = add(list, &n, "the configuration file", config_path, false);
        protected_n = n;
        if (r == 0 && c->control_socket)
                r = add(list, &n, "[control] socket", c->control_socket, false);
        if (r == 0 && c->metrics_textfile)
                r = add(list, &n, "[metrics] textfile", c->metrics_textfile, false);
        if (r == 0 && c->backup_directory)
                r = add(list, &n, "[backup] directory", c->backup_directory, false);
        for (size_t i = protected_n; r == 0 && i < n; i++)
                for (size_t j = 0; j < i; j++)
                        if (same(&list[i], &list[j])) {
                                r = config_errors_add(errors,
                                                      "%s: %s = %s is also %s; output paths never name the "
                                                      "database, its files, the configuration or each other",
                                                      c->source ? c->source : "configuration", list[i].what,
                                                      list[i].path, list[j].what);
                                found++;
                                break;
                        }
        for (size_t i = 0; i < n; i++) {
                free(list[i].path);
                free(list[i].resolved);
        }
        if (r < 0)
                return r;
        return found ? CONFIG_E_INVALID : 0;
}
