/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "files.h"
#include "walindex.h"

/* The mark's probe counter: a fixed-width field at a fixed offset, so the
 * write probe rewrites these bytes and nothing else. */
#define PROBE_PREFIX "probe="
#define PROBE_WIDTH 20

const char *const file_state_names[4] = {
        [FILE_STATE_OK] = "ok",
        [FILE_STATE_GONE] = "gone",
        [FILE_STATE_DELETED] = "deleted",
        [FILE_STATE_REPLACED] = "replaced",
};

static void protect(FileId id);

int dbfiles_init(DbFiles *f, const char *db_path, FileId db) {
        char buf[4096];
        struct stat st;

        *f = (DbFiles){ .db = db, .db_fd = -1, .wal_fd = -1, .shm_fd = -1, .mark_fd = -1 };
        protect(db);
        bufprintf(buf, sizeof(buf), "%s", db_path);
        f->db_path = strdup(db_path);
        f->wal_path = strdup_printf("%s-wal", db_path);
        f->shm_path = strdup_printf("%s-shm", db_path);
        f->mark_path = strdup_printf("%s-sqlvigil", db_path);
        f->dir = strdup(dirname(buf));
        if (!f->db_path || !f->wal_path || !f->shm_path || !f->mark_path || !f->dir) {
                dbfiles_done(f);
                return -ENOMEM;
        }
        if (stat(f->dir, &st) == 0)
                f->dir_id = (FileId){ .dev = st.st_dev, .ino = st.st_ino };
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

/* ---- Descriptors from outside ---------------------------------------------- */

static pthread_mutex_t protect_lock = PTHREAD_MUTEX_INITIALIZER;
static FileId protected_ids[8];
static size_t n_protected;
static int *parked;
static size_t n_parked;

static void protect(FileId id) {
        bool known = false;

        pthread_mutex_lock(&protect_lock);
        for (size_t i = 0; i < n_protected; i++)
                known = known || file_id_eq(protected_ids[i], id);
        if (!known && n_protected < ELEMENTSOF(protected_ids) && (id.dev || id.ino))
                protected_ids[n_protected++] = id;
        pthread_mutex_unlock(&protect_lock);
}

void files_close(int fd) {
        struct stat st;
        bool keep = false;

        if (fd < 0)
                return;
        pthread_mutex_lock(&protect_lock);
        if (fstat(fd, &st) == 0)
                for (size_t i = 0; i < n_protected && !keep; i++)
                        keep = protected_ids[i].dev == st.st_dev && protected_ids[i].ino == st.st_ino;
        if (keep) {
                int *grown = realloc(parked, (n_parked + 1) * sizeof(*parked));

                /* Without memory the descriptor leaks: that is still
                 * better than closing it. */
                if (grown) {
                        parked = grown;
                        parked[n_parked++] = fd;
                }
        }
        pthread_mutex_unlock(&protect_lock);
        if (!keep)
                close(fd);
}

void files_release_parked(void) {
        pthread_mutex_lock(&protect_lock);
        for (size_t i = 0; i < n_parked; i++)
                close(parked[i]);
        free(parked);
        parked = NULL;
        n_parked = 0;
        n_protected = 0;
        pthread_mutex_unlock(&protect_lock);
}

int dbfiles_attach(DbFiles *f) {
        FileId id;
        int r = 0, q;

        if (f->db_fd < 0) {
                q = find_open(f->db_path, &id, &f->db_fd);
                if (q == 0 && !file_id_eq(id, f->db)) {
                        /* Not the file SQLite opened a moment ago. */
                        close(f->db_fd);
                        f->db_fd = -1;
                        q = -ESTALE;
                }
                r = q;
        }
        if (!f->have_shm) {
                q = find_open(f->shm_path, &f->shm, &f->shm_fd);
                f->have_shm = q == 0;
                if (r == 0)
                        r = q;
        }
        if (!f->have_wal) {
                q = find_open(f->wal_path, &f->wal, &f->wal_fd);
                f->have_wal = q == 0;
                if (r == 0)
                        r = q;
        }
        protect(f->db);
        if (f->have_wal)
                protect(f->wal);
        if (f->have_shm)
                protect(f->shm);
        return r;
}

void dbfiles_done(DbFiles *f) {
        files_release_parked();
        if (f->db_fd >= 0)
                close(f->db_fd);
        if (f->wal_fd >= 0)
                close(f->wal_fd);
        if (f->shm_fd >= 0)
                close(f->shm_fd);
        if (f->mark_fd >= 0)
                close(f->mark_fd);
        free(f->db_path);
        free(f->wal_path);
        free(f->shm_path);
        free(f->mark_path);
        free(f->dir);
        *f = (DbFiles){ .db_fd = -1, .wal_fd = -1, .shm_fd = -1, .mark_fd = -1 };
}

/* ---- What happened to the files -------------------------------------------- */

static FileState state_of(const char *path, FileId ours, int fd, FileId *ret_now, int *ret_errno) {
        struct stat st;

        if (stat(path, &st) == 0) {
                if (ret_now)
                        *ret_now = (FileId){ .dev = st.st_dev, .ino = st.st_ino };
                return st.st_dev == ours.dev && st.st_ino == ours.ino ? FILE_STATE_OK : FILE_STATE_REPLACED;
        }
        if (errno != ENOENT && ret_errno)
                *ret_errno = errno;
        /* Our file has no name at the path: renamed away, or gone for good. */
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_nlink == 0)
                return FILE_STATE_DELETED;
        return FILE_STATE_GONE;
}

void dbfiles_check(const DbFiles *f, FilesCheck *c) {
        struct stat st;

        *c = (FilesCheck){ 0 };
        c->db = state_of(f->db_path, f->db, f->db_fd, &c->db_now, &c->stat_errno);
        if (f->have_wal)
                c->wal = state_of(f->wal_path, f->wal, f->wal_fd, NULL, NULL);
        if (f->have_shm)
                c->shm = state_of(f->shm_path, f->shm, f->shm_fd, NULL, NULL);
        c->dir_moved = stat(f->dir, &st) < 0 || st.st_dev != f->dir_id.dev || st.st_ino != f->dir_id.ino;
}

bool files_check_bad(const FilesCheck *c) {
        return c->db != FILE_STATE_OK || c->wal != FILE_STATE_OK || c->shm != FILE_STATE_OK || c->dir_moved;
}

void files_check_describe(const FilesCheck *c, const DbFiles *f, char *buf, size_t size) {
        if (c->dir_moved && c->db != FILE_STATE_OK)
                bufprintf(buf, size, "the directory %s was moved or replaced: %s is no longer the database sqlvigil has open",
                          f->dir, f->db_path);
        else if (c->db == FILE_STATE_REPLACED)
                bufprintf(buf, size,
                          "database file %s was replaced (inode %ju is open, the path now names device %u:%u inode %ju)",
                          f->db_path, (uintmax_t)f->db.ino, major(c->db_now.dev), minor(c->db_now.dev),
                          (uintmax_t)c->db_now.ino);
        else if (c->db != FILE_STATE_OK && c->stat_errno)
                bufprintf(buf, size, "database file %s cannot be examined: %s", f->db_path, strerror(c->stat_errno));
        else if (c->db != FILE_STATE_OK)
                bufprintf(buf, size, "database file %s was deleted or renamed away", f->db_path);
        else if (c->wal != FILE_STATE_OK || c->shm != FILE_STATE_OK)
                bufprintf(buf, size, "%s%s%s of %s %s while the database is open",
                          c->wal != FILE_STATE_OK ? f->wal_path : "",
                          c->wal != FILE_STATE_OK && c->shm != FILE_STATE_OK ? " and " : "",
                          c->shm != FILE_STATE_OK ? f->shm_path : "", f->db_path,
                          (c->wal == FILE_STATE_REPLACED || c->shm == FILE_STATE_REPLACED) ? "were replaced"
                                                                                              : "were deleted or renamed away");
        else
                bufprintf(buf, size, "the files of %s are where they were", f->db_path);
}

/* ---- The mark ----------------------------------------------------------------- */

static int parse_id(const char *s, FileId *ret) {
        unsigned long long dev, ino;

        if (sscanf(s, "%llu:%llu", &dev, &ino) != 2)
                return -EINVAL;
        *ret = (FileId){ .dev = (dev_t)dev, .ino = (ino_t)ino };
        return 0;
}

int mark_read(const char *mark_path, Mark *ret) {
        char line[256];
        FILE *fp;
        int r = 0;

        *ret = (Mark){ 0 };
        fp = fopen(mark_path, "re");
        if (!fp)
                return errno == ENOENT ? 0 : -errno;
        while (fgets(line, sizeof(line), fp)) {
                line[strcspn(line, "\n")] = '\0';
                if (strncmp(line, "db=", 3) == 0)
                        r = r ?: parse_id(line + 3, &ret->db);
                else if (strncmp(line, "wal=", 4) == 0)
                        r = r ?: parse_id(line + 4, &ret->wal);
                else if (strncmp(line, "shm=", 4) == 0)
                        r = r ?: parse_id(line + 4, &ret->shm);
                else if (strncmp(line, "born=", 5) == 0)
                        ret->db_birth = strtoull(line + 5, NULL, 10);
                else if (strncmp(line, "stale=", 6) == 0)
                        ret->stale = atoi(line + 6) != 0;
                else if (strncmp(line, "pid=", 4) == 0)
                        ret->pid = (pid_t)atoi(line + 4);
        }
        if (ferror(fp))
                r = -EIO;
        fclose(fp);
        ret->valid = r == 0 && ret->db.ino != 0;
        return r;
}

int dbfiles_write_mark(DbFiles *f, bool stale) {
        _cleanup_(freep) char *tmp = NULL, *text = NULL;
        int fd, r;

        tmp = strdup_printf("%s.%d.tmp", f->mark_path, (int)getpid());
        text = strdup_printf("# sqlvigil: which database file the -wal and -shm beside it belong to (see sqlvigil(8),\n"
                             "# DATA SAFETY). Written by sqlvigil; safe to delete while it is stopped.\n"
                             "db=%ju:%ju\nborn=%" PRIu64 "\nwal=%ju:%ju\nshm=%ju:%ju\nstale=%d\npid=%d\n" PROBE_PREFIX
                             "%0*" PRIu64 "\n",
                             (uintmax_t)f->db.dev, (uintmax_t)f->db.ino,
                             f->db_fd >= 0 ? files_birth(f->db_fd, "") : (uint64_t)0, (uintmax_t)f->wal.dev,
                             (uintmax_t)f->wal.ino, (uintmax_t)f->shm.dev, (uintmax_t)f->shm.ino, stale, (int)getpid(),
                             PROBE_WIDTH, f->probe_count);
        if (!tmp || !text)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = write_all(fd, text, strlen(text));
        if (r < 0)
                goto fail;
        if (fsync(fd) < 0 || rename(tmp, f->mark_path) < 0) {
                r = -errno;
                goto fail;
        }
        (void)fsync_path(f->dir, true);
        if (f->mark_fd >= 0)
                close(f->mark_fd);
        f->mark_fd = fd;
        return 0;
fail:
        close(fd);
        (void)unlink(tmp);
        return r;
}

int dbfiles_probe_write(DbFiles *f) {
        char field[PROBE_WIDTH + 1];
        struct stat st;
        off_t at;
        ssize_t n;

        if (f->mark_fd < 0)
                return 0;
        if (fstat(f->mark_fd, &st) < 0)
                return -errno;
        /* The counter is the mark's last line: PROBE_WIDTH digits and "\n". */
        at = st.st_size - PROBE_WIDTH - 1;
        if (at < 0)
                return 0;
        f->probe_count++;
        bufprintf(field, sizeof(field), "%0*" PRIu64, PROBE_WIDTH, f->probe_count);
        n = pwrite(f->mark_fd, field, PROBE_WIDTH, at);
        if (n < 0)
                return -errno;
        return n == PROBE_WIDTH ? 0 : -EIO;
}

void files_stale_plan(const Mark *m, FileId db_now, FileId wal_now, FileId shm_now, StalePlan *ret) {
        /* The mark's -wal and -shm belong to the mark's database; they are
         * stale beside any other file, or beside that one when the mark
         * says so (its content was replaced in place). */
        bool other_db = !m->valid || m->stale || db_now.ino == 0 || !file_id_eq(db_now, m->db);

        *ret = (StalePlan){ 0 };
        if (!m->valid)
                return;
        ret->wal = other_db && wal_now.ino != 0 && file_id_eq(wal_now, m->wal);
        ret->shm = other_db && shm_now.ino != 0 && file_id_eq(shm_now, m->shm);
}

static bool has_prefix_suffix(const char *s, const char *prefix, size_t prefix_len, const char *suffix) {
        size_t n = strlen(s), m = strlen(suffix);

        return n > prefix_len + m && strncmp(s, prefix, prefix_len) == 0 && streq(s + n - m, suffix);
}

int files_remove_unfinished(const char *db_path, char *removed, size_t size) {
        _cleanup_(freep) char *copy = strdup(db_path), *copy2 = strdup(db_path), *deleted = NULL, *mark = NULL,
                             *fence = NULL;
        const char *dir, *base;
        struct dirent *de;
        struct stat st;
        DIR *d;
        int n = 0;

        if (!copy || !copy2)
                return -ENOMEM;
        dir = dirname(copy);
        base = basename(copy2);
        deleted = strdup_printf("%s.deleted-", base);
        mark = strdup_printf("%s-sqlvigil.", base);
        fence = strdup_printf("%s-shm.fence-", base);
        if (!deleted || !mark || !fence)
                return -ENOMEM;
        removed[0] = '\0';
        d = opendir(dir);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                size_t used = strlen(removed);

                if (!has_prefix_suffix(de->d_name, deleted, strlen(deleted), ".tmp") &&
                    !has_prefix_suffix(de->d_name, mark, strlen(mark), ".tmp") &&
                    !has_prefix_suffix(de->d_name, fence, strlen(fence), ""))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) < 0)
                        continue;
                n++;
                bufprintf(removed + used, size - used, "%s%s/%s", used ? "; " : "", dir, de->d_name);
        }
        closedir(d);
        return n;
}

int files_rename_noreplace(const char *from, const char *to) {
        /* renameat2(RENAME_NOREPLACE); where the file system lacks it, a
         * link and an unlink, which refuse to replace too. */
        if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */) == 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS)
                return -errno;
        if (link(from, to) < 0)
                return -errno;
        if (unlink(from) < 0)
                return -errno;
        return 0;
}

int files_set_aside(const char *path, const char *why, char **ret_new) {
        char stamp[32];
        time_t t = time(NULL);
        struct tm tm;
        int r = -EEXIST;

        gmtime_r(&t, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
        for (int i = 0; i < 100 && r == -EEXIST; i++) {
                _cleanup_(freep) char *to = i ? strdup_printf("%s.%s-%s.%d", path, why, stamp, i)
                                              : strdup_printf("%s.%s-%s", path, why, stamp);

                if (!to)
                        return -ENOMEM;
                r = files_rename_noreplace(path, to);
                if (r == 0 && ret_new)
                        *ret_new = TAKE_PTR(to);
        }
        return r;
}

uint64_t files_birth(int dirfd, const char *path) {
        struct statx stx;

        if (statx(dirfd, path, (*path ? 0 : AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW, STATX_BTIME, &stx) < 0 ||
            !(stx.stx_mask & STATX_BTIME))
                return 0;
        return (uint64_t)stx.stx_btime.tv_sec * 1000000000u + stx.stx_btime.tv_nsec;
}

int files_find_by_id(const char *dir, FileId id, uint64_t birth, char **ret_name) {
        struct dirent *de;
        struct stat st;
        DIR *d;
        int r = -ENOENT;

        d = opendir(dir);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (st.st_dev == id.dev && st.st_ino == id.ino) {
                        if (birth && files_birth(dirfd(d), de->d_name) != birth)
                                continue; /* the number, reused */
                        *ret_name = strdup(de->d_name);
                        r = *ret_name ? 0 : -ENOMEM;
                        break;
                }
        }
        closedir(d);
        return r;
}

int files_fence(const char *shm_path, int *ret_fd, FileId *ret_id) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = WALINDEX_LOCK_DMS, .l_len = 1 };
        _cleanup_(freep) char *tmp = strdup_printf("%s.fence-%d", shm_path, (int)getpid());
        struct stat st;
        int fd, r;

        if (!tmp)
                return -ENOMEM;
        /* Locked under another name, then renamed into place: at the path
         * it is a fence from its first moment, never a plain empty -shm
         * that a connection opening just then would take for its own. */
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (fcntl(fd, F_SETLK, &fl) < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                (void)unlink(tmp);
                close(fd);
                return r;
        }
        r = files_rename_noreplace(tmp, shm_path);
        if (r < 0) {
                (void)unlink(tmp);
                close(fd);
                return r;
        }
        *ret_fd = fd;
        *ret_id = (FileId){ .dev = st.st_dev, .ino = st.st_ino };
        return 0;
}

void files_unfence(const char *shm_path, int fd, FileId id) {
        struct stat st;

        if (fd < 0)
                return;
        /* Only the file we made: nobody could have attached to it. */
        if (stat(shm_path, &st) == 0 && st.st_dev == id.dev && st.st_ino == id.ino)
                (void)unlink(shm_path);
        close(fd);
}

int files_pid_has_open_in(pid_t pid, FileId id, const char *dir) {
        char fddir[64], link[PATH_MAX], target[PATH_MAX];
        size_t dlen = strlen(dir);
        struct dirent *de;
        bool found = false;
        DIR *d;

        bufprintf(fddir, sizeof(fddir), "/proc/%d/fd", (int)pid);
        d = opendir(fddir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while (!found && (de = readdir(d))) {
                struct stat st;
                ssize_t n;

                if (de->d_name[0] == '.')
                        continue;
                bufprintf(link, sizeof(link), "%s/%s", fddir, de->d_name);
                if (stat(link, &st) < 0 || st.st_dev != id.dev || st.st_ino != id.ino)
                        continue;
                n = readlink(link, target, sizeof(target) - 1);
                if (n <= 0)
                        continue;
                target[n] = '\0';
                found = (size_t)n > dlen && strncmp(target, dir, dlen) == 0 && target[dlen] == '/' &&
                        !strchr(target + dlen + 1, '/');
        }
        closedir(d);
        return found ? 1 : 0;
}

int files_other_user(int shm_fd, pid_t *ret_pid) {
        WalLock l;
        int r;

        *ret_pid = 0;
        r = walindex_lock(shm_fd, WALINDEX_LOCK_DMS, &l);
        if (r < 0)
                return r;
        if (l.held)
                *ret_pid = l.pid > 0 ? l.pid : FILES_PID_UNSEEN;
        return 0;
}
