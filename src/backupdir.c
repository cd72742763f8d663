/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backupdir.h"
#include "copy.h"
#include "json.h"

/* A manifest is a few hundred bytes; anything much larger is not ours. */
#define MANIFEST_MAX 65536

bool backup_source_state_eq(const BackupSourceState *a, const BackupSourceState *b) {
        return a->valid && b->valid && a->db_size == b->db_size && a->db_mtime_ns == b->db_mtime_ns &&
               a->wal_salt1 == b->wal_salt1 && a->wal_salt2 == b->wal_salt2 && a->wal_max_frame == b->wal_max_frame;
}

void backup_manifest_done(BackupManifest *m) {
        free(m->source);
        free(m->file);
        *m = (BackupManifest){ 0 };
}

void backup_list_done(BackupList *l) {
        for (size_t i = 0; i < l->n; i++) {
                backup_manifest_done(&l->entries[i].m);
                free(l->entries[i].manifest_name);
        }
        free(l->entries);
        *l = (BackupList){ 0 };
}

char *backupdir_stem(const char *db_path) {
        const char *base = strrchr(db_path, '/'), *dot;

        base = base ? base + 1 : db_path;
        dot = strrchr(base, '.');
        if (!dot || dot == base)
                return strdup(base);
        return strndup(base, (size_t)(dot - base));
}

/* "YYYYMMDDTHHMMSSZ" optionally followed by "-N": the part after "STEM-". */
static bool is_stamp(const char *s, size_t len) {
        if (len < 16)
                return false;
        for (size_t i = 0; i < 16; i++) {
                bool digit = isdigit((unsigned char)s[i]);

                if ((i == 8 && s[i] != 'T') || (i == 15 && s[i] != 'Z') || (i != 8 && i != 15 && !digit))
                        return false;
        }
        if (len == 16)
                return true;
        if (s[16] != '-' || len == 17)
                return false;
        for (size_t i = 17; i < len; i++)
                if (!isdigit((unsigned char)s[i]))
                        return false;
        return len <= 22;
}

static bool ends_with(const char *s, size_t len, const char *suffix, size_t *ret_stem_len) {
        size_t n = strlen(suffix);

        if (len < n || memcmp(s + len - n, suffix, n) != 0)
                return false;
        *ret_stem_len = len - n;
        return true;
}

BackupName backupdir_classify(const char *stem, const char *name) {
        static const struct {
                const char *suffix;
                bool dot;
                BackupName kind;
        } kinds[] = {
                { ".db.tmp", true, BACKUP_NAME_COPY_TMP },
                { ".json.tmp", true, BACKUP_NAME_MANIFEST_TMP },
                { ".db", false, BACKUP_NAME_COPY },
                { ".json", false, BACKUP_NAME_MANIFEST },
        };
        size_t stem_len = strlen(stem);

        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                const char *p = name;
                size_t len = strlen(name), base_len;

                if (kinds[k].dot) {
                        if (p[0] != '.')
                                continue;
                        p++;
                        len--;
                }
                if (!ends_with(p, len, kinds[k].suffix, &base_len))
                        continue;
                if (base_len <= stem_len + 1 || memcmp(p, stem, stem_len) != 0 || p[stem_len] != '-')
                        continue;
                if (is_stamp(p + stem_len + 1, base_len - stem_len - 1))
                        return kinds[k].kind;
        }
        return BACKUP_NAME_NONE;
}

static bool exists_at(int dfd, const char *name) {
        struct stat st;

        return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

int backupdir_new_base(const char *dir, const char *stem, usec_t t, char **ret) {
        time_t s = (time_t)(t / USEC_PER_SEC);
        struct tm tm;
        char stamp[32];
        int dfd;

        if (!gmtime_r(&s, &tm) || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
                return -EINVAL;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        for (int i = 1; i < 1000; i++) {
                _cleanup_(freep) char *base = i == 1 ? strdup_printf("%s-%s", stem, stamp)
                                                     : strdup_printf("%s-%s-%d", stem, stamp, i);
                _cleanup_(freep) char *copy = NULL, *manifest = NULL, *ctmp = NULL, *mtmp = NULL;

                if (base) {
                        copy = strdup_printf("%s.db", base);
                        manifest = strdup_printf("%s.json", base);
                        ctmp = strdup_printf(".%s.db.tmp", base);
                        mtmp = strdup_printf(".%s.json.tmp", base);
                }
                if (!base || !copy || !manifest || !ctmp || !mtmp) {
                        close(dfd);
                        return -ENOMEM;
                }
                if (exists_at(dfd, copy) || exists_at(dfd, manifest) || exists_at(dfd, ctmp) || exists_at(dfd, mtmp))
                        continue;
                close(dfd);
                *ret = TAKE_PTR(base);
                return 0;
        }
        close(dfd);
        return -EEXIST;
}

/* ---- Manifests ----------------------------------------------------------------- */

static void format_time(usec_t t, char *buf, size_t size) {
        time_t s = (time_t)(t / USEC_PER_SEC);
        struct tm tm;
        char day[32] = "1970-01-01T00:00:00";

        if (gmtime_r(&s, &tm))
                (void)strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
        bufprintf(buf, size, "%s.%06" PRIu64 "Z", day, t % USEC_PER_SEC);
}

int backupdir_write_manifest(const char *dir, const char *base, const BackupManifest *m) {
        _cleanup_(freep) char *path = strdup_printf("%s/.%s.json.tmp", dir, base);
        char when[48];
        const char *text;
        Json j;
        int fd, r = 0;

        if (!path)
                return -ENOMEM;
        format_time(m->time, when, sizeof(when));
        json_init(&j);
        json_object_begin(&j);
        json_kv_string(&j, "format", BACKUP_FORMAT);
        json_kv_string(&j, "source", m->source);
        json_kv_string(&j, "file", m->file);
        json_kv_string(&j, "time", when);
        json_kv_uint(&j, "time_usec", m->time);
        json_kv_string(&j, "trigger", m->trigger);
        json_kv_int(&j, "page_size", m->page_size);
        json_kv_int(&j, "page_count", m->page_count);
        json_kv_uint(&j, "bytes", m->bytes);
        json_kv_string(&j, "sqlite_version", m->sqlite_version);
        json_kv_string(&j, "sha256", m->sha256);
        json_kv_uint(&j, "copy_usec", m->copy_usec);
        json_kv_uint(&j, "snapshot_usec", m->snapshot_usec);
        json_kv_string(&j, "check", m->check);
        json_kv_string(&j, "check_result", m->check_ok ? "ok" : "failed");
        json_kv_uint(&j, "check_usec", m->check_usec);
        json_key(&j, "source_state");
        json_object_begin(&j);
        json_kv_uint(&j, "db_size", m->state.db_size);
        json_kv_int(&j, "db_mtime_ns", m->state.db_mtime_ns);
        json_kv_uint(&j, "wal_salt1", m->state.wal_salt1);
        json_kv_uint(&j, "wal_salt2", m->state.wal_salt2);
        json_kv_uint(&j, "wal_max_frame", m->state.wal_max_frame);
        json_object_end(&j);
        json_object_end(&j);
        json_newline(&j);
        text = json_text(&j);
        if (!text) {
                json_free(&j);
                return -ENOMEM;
        }

        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                r = -errno;
                json_free(&j);
                return r;
        }
        r = write_all(fd, text, strlen(text));
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0)
                (void)unlink(path);
        json_free(&j);
        return r;
}

static void copy_string(const JsonValue *v, const char *key, char *buf, size_t size) {
        const char *s = json_get_string(v, key);

        bufprintf(buf, size, "%s", s ? s : "");
}

static uint64_t get_uint(const JsonValue *v, const char *key) {
        double d;

        return json_get_number(v, key, &d) && d >= 0 ? (uint64_t)d : 0;
}

int backup_manifest_parse(const char *text, size_t len, BackupManifest *m) {
        JsonValue *v = NULL;
        const char *format, *source, *file, *result;
        size_t off;
        double d;
        int r;

        *m = (BackupManifest){ 0 };
        r = json_parse(text, len, &v, &off);
        if (r < 0)
                return r;
        format = json_get_string(v, "format");
        source = json_get_string(v, "source");
        file = json_get_string(v, "file");
        if (!format || !streq(format, BACKUP_FORMAT) || !source || !file || !json_get_number(v, "time_usec", &d)) {
                json_value_free(v);
                return -EINVAL;
        }
        m->source = strdup(source);
        m->file = strdup(file);
        if (!m->source || !m->file) {
                backup_manifest_done(m);
                json_value_free(v);
                return -ENOMEM;
        }
        m->time = (usec_t)d;
        copy_string(v, "trigger", m->trigger, sizeof(m->trigger));
        m->page_size = (int64_t)get_uint(v, "page_size");
        m->page_count = (int64_t)get_uint(v, "page_count");
        m->bytes = get_uint(v, "bytes");
        copy_string(v, "sqlite_version", m->sqlite_version, sizeof(m->sqlite_version));
        copy_string(v, "sha256", m->sha256, sizeof(m->sha256));
        m->copy_usec = get_uint(v, "copy_usec");
        m->snapshot_usec = get_uint(v, "snapshot_usec");
        m->check_usec = get_uint(v, "check_usec");
        copy_string(v, "check", m->check, sizeof(m->check));
        result = json_get_string(v, "check_result");
        m->check_ok = result && streq(result, "ok");
        if (json_get(v, "source_state")) {
                m->state.db_size = get_uint(v, "source_state.db_size");
                m->state.db_mtime_ns = json_get_number(v, "source_state.db_mtime_ns", &d) ? (int64_t)d : 0;
                m->state.wal_salt1 = (uint32_t)get_uint(v, "source_state.wal_salt1");
                m->state.wal_salt2 = (uint32_t)get_uint(v, "source_state.wal_salt2");
                m->state.wal_max_frame = (uint32_t)get_uint(v, "source_state.wal_max_frame");
                m->state.valid = true;
        }
        json_value_free(v);
        return 0;
}

/* Reads dir/name (a regular file, not a symlink, at most MANIFEST_MAX
 * bytes) into a malloc'd, NUL-terminated buffer. */
static int read_small(int dfd, const char *name, char **ret, size_t *ret_len) {
        _cleanup_(freep) char *buf = NULL;
        struct stat st;
        size_t len = 0;
        int fd, r = 0;

        fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MANIFEST_MAX) {
                close(fd);
                return -EINVAL;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        while (len < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        break;
                }
                len += (size_t)n;
        }
        close(fd);
        if (r < 0)
                return r;
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* Whether file is the copy the manifest called name describes:
 * "X.json" and ".X.json.tmp" describe "X.db". */
static bool names_copy(const char *name, const char *file) {
        const char *own = name[0] == '.' ? name + 1 : name;
        size_t len = strlen(own), suffix = strlen(name[0] == '.' ? ".json.tmp" : ".json");

        return len > suffix && strlen(file) == len - suffix + 3 && strncmp(file, own, len - suffix) == 0 &&
               streq(file + len - suffix, ".db");
}

/* The manifest dir/name, if it is one of db_path's. */
static int read_manifest(int dfd, const char *name, const char *db_path, BackupManifest *m) {
        _cleanup_(freep) char *text = NULL;
        size_t len = 0;
        int r;

        r = read_small(dfd, name, &text, &len);
        if (r < 0)
                return r;
        r = backup_manifest_parse(text, len, m);
        if (r < 0)
                return r;
        /* Ours, for this database, and naming its own copy: NAME.json
         * describes NAME.db and nothing else, so retention never deletes a
         * file sqlvigil did not write, whatever a manifest says. */
        if (!streq(m->source, db_path) || !names_copy(name, m->file)) {
                backup_manifest_done(m);
                return -EINVAL;
        }
        return 0;
}

static int newest_first(const void *a, const void *b) {
        const BackupEntry *x = a, *y = b;

        if (x->m.time != y->m.time)
                return x->m.time > y->m.time ? -1 : 1;
        return strcmp(y->m.file, x->m.file);
}

int backupdir_list(const char *dir, const char *db_path, BackupList *ret) {
        _cleanup_(freep) char *stem = backupdir_stem(db_path);
        BackupList l = { 0 };
        struct dirent *de;
        DIR *d;
        int dfd, r = 0;

        *ret = (BackupList){ 0 };
        if (!stem)
                return -ENOMEM;
        d = opendir(dir);
        if (!d)
                return -errno;
        dfd = dirfd(d);
        while ((errno = 0, de = readdir(d))) {
                BackupEntry e = { 0 };
                BackupEntry *grown;
                struct stat st;

                if (backupdir_classify(stem, de->d_name) != BACKUP_NAME_MANIFEST)
                        continue;
                if (read_manifest(dfd, de->d_name, db_path, &e.m) < 0)
                        continue;
                e.manifest_name = strdup(de->d_name);
                grown = e.manifest_name ? realloc(l.entries, (l.n + 1) * sizeof(*l.entries)) : NULL;
                if (!grown) {
                        backup_manifest_done(&e.m);
                        free(e.manifest_name);
                        r = -ENOMEM;
                        break;
                }
                l.entries = grown;
                e.present = fstatat(dfd, e.m.file, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
                            (uint64_t)st.st_size == e.m.bytes;
                l.entries[l.n++] = e;
        }
        if (r == 0 && errno != 0)
                r = -errno;
        closedir(d);
        if (r < 0) {
                backup_list_done(&l);
                return r;
        }
        if (l.n > 1)
                qsort(l.entries, l.n, sizeof(*l.entries), newest_first);
        *ret = l;
        return 0;
}

/* ---- Leftovers and retention ------------------------------------------------ */

static void note(char *report, size_t size, const char *fmt, ...) _printf_(3, 4);
static void note(char *report, size_t size, const char *fmt, ...) {
        size_t off = strlen(report);
        va_list ap;

        if (off && off + 2 < size) {
                memcpy(report + off, "; ", 3);
                off += 2;
        }
        if (off >= size)
                return;
        va_start(ap, fmt);
        (void)vsnprintf(report + off, size - off, fmt, ap);
        va_end(ap);
}

/* A temporary manifest whose copy was renamed into place before the kill:
 * finish it if the copy is the one it describes. */
static int complete_manifest(const char *dir, int dfd, const char *tmp_name, const char *db_path, bool *ret_done) {
        _cleanup_(freep) char *final = strdup(tmp_name + 1), *copy_path = NULL;
        BackupManifest m;
        struct stat st;
        char sha[65];
        int r;

        *ret_done = false;
        if (!final)
                return -ENOMEM;
        final[strlen(final) - strlen(".tmp")] = '\0';
        if (read_manifest(dfd, tmp_name, db_path, &m) < 0)
                return 0;
        copy_path = strdup_printf("%s/%s", dir, m.file);
        if (copy_path && fstatat(dfd, m.file, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (uint64_t)st.st_size == m.bytes && copy_sha256(copy_path, sha) == 0 && streq(sha, m.sha256) &&
            !exists_at(dfd, final)) {
                r = renameat(dfd, tmp_name, dfd, final) < 0 ? -errno : 0;
                *ret_done = r == 0;
        }
        backup_manifest_done(&m);
        return 0;
}

int backupdir_cleanup(const char *dir, const char *db_path, char *report, size_t size) {
        _cleanup_(freep) char *stem = backupdir_stem(db_path);
        struct dirent *de;
        bool changed = false;
        DIR *d;
        int dfd, r = 0;

        if (size)
                report[0] = '\0';
        if (!stem)
                return -ENOMEM;
        d = opendir(dir);
        if (!d)
                return -errno;
        dfd = dirfd(d);
        while ((errno = 0, de = readdir(d))) {
                BackupName kind = backupdir_classify(stem, de->d_name);
                bool done;

                if (kind == BACKUP_NAME_COPY_TMP) {
                        if (unlinkat(dfd, de->d_name, 0) < 0 && errno != ENOENT && r == 0)
                                r = -errno;
                        else {
                                note(report, size, "removed %s, left by a backup that did not finish",
                                     de->d_name);
                                changed = true;
                        }
                } else if (kind == BACKUP_NAME_MANIFEST_TMP) {
                        (void)complete_manifest(dir, dfd, de->d_name, db_path, &done);
                        if (done)
                                note(report, size, "completed %s, whose copy was in place", de->d_name + 1);
                        else if (unlinkat(dfd, de->d_name, 0) < 0 && errno != ENOENT && r == 0)
                                r = -errno;
                        else
                                note(report, size, "removed %s, left by a backup that did not finish",
                                     de->d_name);
                        changed = true;
                }
        }
        closedir(d);
        if (changed)
                (void)fsync_path(dir, true);
        return r;
}

int backupdir_prune(const char *dir, const BackupList *list, const RetentionRules *rules, unsigned *ret_deleted) {
        _cleanup_(freep) usec_t *times = NULL;
        _cleanup_(freep) unsigned *keep = NULL;
        unsigned deleted = 0;
        int dfd, r = 0;

        *ret_deleted = 0;
        if (list->n == 0)
                return 0;
        times = calloc(list->n, sizeof(*times));
        keep = calloc(list->n, sizeof(*keep));
        if (!times || !keep)
                return -ENOMEM;
        for (size_t i = 0; i < list->n; i++)
                times[i] = list->entries[i].m.time;
        retention_plan(times, list->n, rules, keep);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        for (size_t i = 0; i < list->n; i++) {
                const BackupEntry *e = &list->entries[i];

                if (keep[i])
                        continue;
                /* The copy first: a manifest without its copy shows as
                 * missing and goes next time; a copy without its manifest
                 * would no longer be recognised as ours. */
                if (unlinkat(dfd, e->m.file, 0) < 0 && errno != ENOENT) {
                        if (r == 0)
                                r = -errno;
                        continue;
                }
                if (unlinkat(dfd, e->manifest_name, 0) < 0 && errno != ENOENT) {
                        if (r == 0)
                                r = -errno;
                        continue;
                }
                deleted++;
        }
        if (deleted > 0 && fsync(dfd) < 0 && r == 0)
                r = -errno;
        close(dfd);
        *ret_deleted = deleted;
        return r;
}
