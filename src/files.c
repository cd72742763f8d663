/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"

int dbfiles_init(DbFiles *f, const char *db_path, FileId db) {
        *f = (DbFiles){ .db = db, .wal_fd = -1, .shm_fd = -1 };
        f->db_path = strdup(db_path);
        f->wal_path = strdup_printf("%s-wal", db_path);
        f->shm_path = strdup_printf("%s-shm", db_path);
        if (!f->db_path || !f->wal_path || !f->shm_path) {
                dbfiles_done(f);
                return -ENOMEM;
        }
        return 0;
}

/* Duplicates the descriptor of this process that has the file at path
 * open (by device and inode) into *ret_fd, and records its identity. */
static int find_open(const char *path, FileId *ret_id, int *ret_fd) {
        struct stat want, st;
        struct dirent *de;
        DIR *d;
        int r = -ENOENT;

        if (stat(path, &want) < 0)
                return -errno;
        d = opendir("/proc/self/fd");
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                int fd;
                char *end;

                if (de->d_name[0] == '.')
                        continue;
                fd = (int)strtol(de->d_name, &end, 10);
                if (*end || fd == dirfd(d) || fstat(fd, &st) < 0)
                        continue;
                if (!S_ISREG(st.st_mode) || st.st_dev != want.st_dev || st.st_ino != want.st_ino)
                        continue;
                /* SQLite opens the -wal and -shm read-write; a duplicate
                 * shares that. */
                *ret_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                r = *ret_fd < 0 ? -errno : 0;
                if (r == 0)
                        *ret_id = (FileId){ .dev = st.st_dev, .ino = st.st_ino };
                break;
        }
        closedir(d);
        return r;
}

int dbfiles_attach(DbFiles *f) {
        int r = 0, q;

        if (!f->have_shm) {
                q = find_open(f->shm_path, &f->shm, &f->shm_fd);
                f->have_shm = q == 0;
                r = q;
        }
        if (!f->have_wal) {
                q = find_open(f->wal_path, &f->wal, &f->wal_fd);
                f->have_wal = q == 0;
                if (r == 0)
                        r = q;
        }
        return r;
}

void dbfiles_done(DbFiles *f) {
        if (f->wal_fd >= 0)
                close(f->wal_fd);
        if (f->shm_fd >= 0)
                close(f->shm_fd);
        free(f->db_path);
        free(f->wal_path);
        free(f->shm_path);
        *f = (DbFiles){ .wal_fd = -1, .shm_fd = -1 };
}
