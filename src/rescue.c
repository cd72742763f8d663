/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "copy.h"
#include "log.h"
#include "rescue.h"
#include "walindex.h"

/* How often the rescue looks for the other processes still attached to the
 * old files, and drains what they committed meanwhile. */
#define TICK (200 * USEC_PER_MSEC)
#define DRAIN_EVERY (1 * USEC_PER_SEC)

const char *const rescue_kind_names[_RESCUE_KIND_MAX] = {
        [RESCUE_DB_MOVED] = "database-moved",
        [RESCUE_WAL_DISPLACED] = "wal-displaced",
        [RESCUE_OVERWRITTEN] = "overwritten",
};

typedef enum Step {
        STEP_SAVE,   /* a deleted database: its copy */
        STEP_DRAIN,  /* the WAL into its own database file */
        STEP_WAIT,   /* for the others to leave the old files */
        STEP_RESAVE, /* a deleted database: the copy again, if others committed since */
        STEP_DONE,
} Step;

struct Rescue {
        RescueEnv env;
        RescueKind kind;
        FilesCheck check;
        sd_event_source *timer;
        Step step;
        bool busy;             /* a job or checkpoint of the current step is out */
        usec_t deadline;       /* CLOCK_MONOTONIC */
        usec_t next_drain;
        bool db_deleted;
        char *db_name;         /* where the old database is now, in its directory; NULL if not there */
        char *saved;           /* the deleted database's copy, once made */
        int64_t saved_version; /* PRAGMA data_version just before that copy began */
        int fence_fd;
        FileId fence_id;
        bool ckpt_held;        /* the old WAL index's checkpoint lock: nobody copies its frames in */
        bool write_held;       /* and its write lock: nobody commits more to it */
        pid_t other;           /* a process still attached to the old files */
        int copied;            /* frames drained into the database, in all */
        int late;              /* of those, frames that others committed during the rescue */
        bool drained_last;     /* the drain after the others left (or the deadline) is done */
        bool holding;          /* past the deadline, for a process it must hold off (rescue.h) */
        pid_t held_pid;        /* what the last announcement of the hold said: who, */
        int held_how;          /* and how (HoldHow) */
        bool abandoned;        /* told to stop: holds nobody off past the deadline */
        char actions[1536];    /* what was done, for the summary */
        bool failed;
};

typedef struct SaveJob {
        Job job;
        Rescue *rescue;
        char *dest;            /* the final name */
        char *tmp;
        bool again;            /* the second copy, at the end of the rescue */
        bool replace;          /* it replaces the first, and is made only if something changed since */
        int64_t version;       /* data_version before the copy began */
        bool unchanged;        /* again, and nobody committed since the first copy: none made */
        CopyResult copy;
        int rename_error;
} SaveJob;

static void advance(Rescue *r);
static void finish(Rescue *r);

RescueKind rescue_kind_for(const FilesCheck *c) {
        if (c->db != FILE_STATE_OK || c->dir_moved)
                return RESCUE_DB_MOVED;
        return RESCUE_WAL_DISPLACED;
}

static void act(Rescue *r, const char *fmt, ...) _printf_(2, 3);
static void act(Rescue *r, const char *fmt, ...) {
        size_t off = strlen(r->actions);
        va_list ap;

        if (off && off + 2 < sizeof(r->actions)) {
                memcpy(r->actions + off, "; ", 3);
                off += 2;
        }
        va_start(ap, fmt);
        (void)vsnprintf(r->actions + off, sizeof(r->actions) - off, fmt, ap);
        va_end(ap);
}

/* ---- Setting files aside ------------------------------------------------------- */

/* The old database's -wal or -shm at path: beside the old database when it
 * is still in the directory (under NAME-wal, where SQLite looks for it),
 * else out of the way under a name that says so. */
static void follow_or_set_aside(Rescue *r, const char *path, const char *suffix) {
        _cleanup_(freep) char *to = NULL, *aside = NULL;
        int q = -ENOENT;

        if (r->db_name) {
                to = strdup_printf("%s/%s%s", r->env.files->dir, r->db_name, suffix);
                if (to)
                        q = files_rename_noreplace(path, to);
                if (q == 0) {
                        act(r, "moved %s to %s, beside the database it belongs to", path, to);
                        return;
                }
        }
        q = files_set_aside(path, "stale", &aside);
        if (q == 0)
                act(r, "set %s aside as %s", path, aside);
        else {
                act(r, "could not move %s out of the way: %s", path, strerror(-q));
                r->failed = true;
        }
}

static void set_aside(Rescue *r, const char *path, const char *why) {
        _cleanup_(freep) char *aside = NULL;
        int q = files_set_aside(path, why, &aside);

        if (q == 0)
                act(r, "set %s aside as %s", path, aside);
        else if (q != -ENOENT) {
                act(r, "could not move %s out of the way: %s", path, strerror(-q));
                r->failed = true;
        }
}

/* F_SETLK of one lock byte of the WAL index at fd: 0 or a negative errno. */
static int lock_byte(int fd, off_t byte, short type) {
        struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

        return fcntl(fd, F_SETLK, &fl) < 0 ? -errno : 0;
}

/* The checkpoint and write locks of the old WAL index, so that no process
 * still attached to it copies its frames into the database's new content
 * or commits more of them. Only while sqlvigil's own connection does
 * nothing (POSIX locks do not conflict within a process). The checkpoint
 * lock first and on its own: it is the one that protects the file (only a
 * checkpoint writes frames into it), and a writer that keeps the write
 * lock nearly all the time (long transactions back to back) would starve a
 * request for both at once. Returns whether the checkpoint lock is held. */
static bool hold_locks(Rescue *r) {
        int fd = r->env.files->shm_fd;

        if (fd < 0)
                return false;
        if (!r->ckpt_held && lock_byte(fd, WALINDEX_LOCK_CHECKPOINT, F_WRLCK) == 0) {
                r->ckpt_held = true;
                act(r, "holding the checkpoint lock of the old WAL, so that nobody copies its frames into the new "
                       "content");
        }
        if (r->ckpt_held && !r->write_held && lock_byte(fd, WALINDEX_LOCK_WRITE, F_WRLCK) == 0) {
                r->write_held = true;
                act(r, "holding its write lock too, so that nobody commits more to it");
        }
        return r->ckpt_held;
}

static void release_locks(Rescue *r) {
        int fd = r->env.files->shm_fd;

        if (r->write_held && lock_byte(fd, WALINDEX_LOCK_WRITE, F_UNLCK) == 0)
                r->write_held = false;
        if (r->ckpt_held && lock_byte(fd, WALINDEX_LOCK_CHECKPOINT, F_UNLCK) == 0)
                r->ckpt_held = false;
}

/* The first, synchronous part: nothing of the old files stays where
 * SQLite would take it for the new ones. */
static void set_files_aside(Rescue *r) {
        DbFiles *f = r->env.files;
        int q;

        switch (r->kind) {
        case RESCUE_DB_MOVED:
                if (!r->check.dir_moved && !r->db_deleted &&
                    files_find_by_id(f->dir, f->db, 0, &r->db_name) == 0)
                        act(r, "the database sqlvigil had open is now %s/%s", f->dir, r->db_name);
                /* The WAL first: a -shm alone is rebuilt by the next
                 * connection, a -wal alone is replayed. */
                if (!r->check.dir_moved && r->check.wal == FILE_STATE_OK)
                        follow_or_set_aside(r, f->wal_path, "-wal");
                if (!r->check.dir_moved && r->check.shm == FILE_STATE_OK)
                        follow_or_set_aside(r, f->shm_path, "-shm");
                break;
        case RESCUE_WAL_DISPLACED:
                if (r->check.wal == FILE_STATE_REPLACED)
                        set_aside(r, f->wal_path, "foreign");
                if (r->check.shm == FILE_STATE_REPLACED)
                        set_aside(r, f->shm_path, "foreign");
                /* A -shm still at its path is the live index of a WAL that
                 * is no longer at its own: a connection opened now would
                 * attach to it and read its frames from whatever -wal it
                 * finds or creates there. It goes aside (sqlvigil and the
                 * applications keep it open), and the fence takes its
                 * place. */
                if (r->check.shm == FILE_STATE_OK)
                        set_aside(r, f->shm_path, "stale");
                q = files_fence(f->shm_path, &r->fence_fd, &r->fence_id);
                if (q == 0)
                        act(r, "fenced %s: programs that open the database now fail with \"locking protocol\" "
                               "until sqlvigil has drained the old WAL",
                            f->shm_path);
                else {
                        act(r, "could not fence %s (%s): a program opened the database meanwhile and may run "
                               "a second WAL",
                            f->shm_path, q == -EEXIST ? "another process created it first" : strerror(-q));
                        r->failed = true;
                }
                break;
        case RESCUE_OVERWRITTEN:
                (void)hold_locks(r);
                if (r->check.wal == FILE_STATE_OK)
                        set_aside(r, f->wal_path, "stale");
                if (r->check.shm == FILE_STATE_OK)
                        set_aside(r, f->shm_path, "stale");
                break;
        default:
                break;
        }
}

/* ---- The steps ------------------------------------------------------------------- */

static void save_run(Job *j, Db *db) {
        SaveJob *s = container_of(j, SaveJob, job);
        int64_t before = s->version;
        int q;

        /* The version first: a commit after it and before the copy's
         * snapshot only makes the second copy happen for nothing. */
        if (db_data_version(db, &s->version) != 0)
                s->version = INT64_MIN; /* unknown: the second copy is always made */
        if (s->replace && s->version == before && before != INT64_MIN) {
                s->unchanged = true;
                return;
        }
        db_save_copy(db, s->tmp, &s->copy);
        if (s->copy.result != 0)
                return;
        /* The second copy replaces the first: it is ours, made moments ago,
         * and holds everything the first did. */
        q = s->replace ? (rename(s->tmp, s->dest) < 0 ? -errno : 0) : files_rename_noreplace(s->tmp, s->dest);
        if (q < 0) {
                s->rename_error = -q;
                (void)unlink(s->tmp);
        }
}

static void save_done(Job *j, bool ran) {
        SaveJob *s = container_of(j, SaveJob, job);
        Rescue *r = s->rescue;
        char bytes[32];

        if (!ran)
                act(r, "could not save the deleted database: the database thread was stopping");
        else if (s->unchanged)
                ; /* the first copy has everything */
        else if (s->copy.result != 0 || s->rename_error) {
                act(r, "could not save the deleted database%s as %s: %s", s->again ? " again" : "", s->dest,
                    s->rename_error ? strerror(s->rename_error) : s->copy.error);
                r->failed = true;
        } else {
                (void)fsync_path(r->env.files->dir, true);
                act(r, "saved the deleted database (%s, %" PRIi64 " pages) as %s%s",
                    format_bytes(bytes, sizeof(bytes), s->copy.bytes), s->copy.pages, s->dest,
                    s->again ? ", again, with what other programs committed during the rescue" : "");
                if (!r->saved) {
                        r->saved = TAKE_PTR(s->dest);
                        r->saved_version = s->version;
                }
        }
        r->busy = false;
        free(s->dest);
        free(s->tmp);
        if (s->again) {
                free(s);
                finish(r);
                return;
        }
        free(s);
        r->step = STEP_DRAIN;
        advance(r);
}

/* The copy of a deleted database: first at once (a kill from then on
 * loses nothing that was committed before the fault), and again at the end
 * (again) when other programs still attached committed since: their
 * commits went into the old WAL, which nobody can reach once sqlvigil has
 * left. */
static void start_save(Rescue *r, bool again) {
        char stamp[32];
        time_t t = time(NULL);
        struct tm tm;
        SaveJob *s;

        gmtime_r(&t, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
        s = calloc(1, sizeof(*s));
        if (s) {
                s->again = again;
                s->replace = again && r->saved;
                s->version = r->saved_version;
                s->dest = s->replace ? strdup(r->saved) : strdup_printf("%s.deleted-%s", r->env.files->db_path, stamp);
                s->tmp = strdup_printf("%s.deleted-%s.tmp", r->env.files->db_path, stamp);
        }
        if (!s || !s->dest || !s->tmp) {
                if (s) {
                        free(s->dest);
                        free(s->tmp);
                }
                free(s);
                act(r, "could not save the deleted database: out of memory");
                r->failed = true;
                if (again)
                        finish(r);
                else {
                        r->step = STEP_DRAIN;
                        advance(r);
                }
                return;
        }
        s->job = (Job){ .name = "save", .urgent = true, .cancellable = false, .run = save_run, .done = save_done };
        s->rescue = r;
        r->busy = true;
        worker_submit(r->env.db_worker, &s->job);
}

static void drained(void *userdata, const CheckpointOutcome *o, bool ran) {
        Rescue *r = userdata;

        r->busy = false;
        if (ran && o->copied > 0) {
                r->copied += o->copied;
                if (r->step == STEP_WAIT)
                        r->late += o->copied;
        }
        if (!ran || o->result == TASK_RESULT_FAILED) {
                act(r, "draining the old WAL failed: %s", ran ? o->error : "the database thread was stopping");
                r->failed = true;
        }
        if (r->step == STEP_DRAIN) {
                if (ran && o->result != TASK_RESULT_FAILED)
                        act(r, "drained the old WAL into %s (%d frames in it, %s)",
                            r->db_deleted ? "the deleted database" : r->db_name ? r->db_name : r->env.files->db_path,
                            o->frames, task_result_names[o->result]);
                r->step = STEP_WAIT;
        }
        advance(r);
}

static void start_drain(Rescue *r, usec_t timeout) {
        int q = maintenance_final_checkpoint(r->env.maintenance, CHECKPOINT_TRUNCATE, timeout, drained, r);

        if (q < 0) {
                act(r, "could not drain the old WAL: %s", strerror(-q));
                r->failed = true;
                r->step = STEP_WAIT;
                advance(r);
                return;
        }
        r->busy = true;
}

/* "pid N (comm)", or what can be said of a process in another PID
 * namespace. */
static void describe_other(const Rescue *r, char *buf, size_t size) {
        char comm[64] = "";

        if (r->other == FILES_PID_UNSEEN) {
                bufprintf(buf, size, "a process in another PID namespace (its pid is not visible here; "
                                     "fuser -v on the old -shm, from its namespace, names it)");
                return;
        }
        walindex_comm(r->other, comm, sizeof(comm));
        bufprintf(buf, size, "pid %d (%s)", (int)r->other, comm);
}

static void finish(Rescue *r) {
        char who[256] = "", text[2048];

        r->step = STEP_DONE;
        (void)sd_event_source_set_enabled(r->timer, SD_EVENT_OFF);
        if (r->fence_fd >= 0) {
                files_unfence(r->env.files->shm_path, r->fence_fd, r->fence_id);
                r->fence_fd = -1;
                act(r, "removed the fence %s", r->env.files->shm_path);
        }
        release_locks(r);
        if (r->other > 0 && r->abandoned && r->kind != RESCUE_DB_MOVED) {
                describe_other(r, who, sizeof(who));
                act(r, "told to stop while %s still has the old files open: %s; stop it now, then check "
                       "the database with PRAGMA integrity_check",
                    who,
                    r->kind == RESCUE_OVERWRITTEN
                            ? "nothing keeps it from checkpointing its set-aside WAL into the copied-in content "
                              "any more"
                            : "nothing keeps new connections from starting a second WAL beside its one any more");
        } else if (r->other > 0) {
                describe_other(r, who, sizeof(who));
                act(r, "%s still has the old files open after %" PRIu64 " s: restart it; its commits "
                       "from now on go to the database that was moved away, where no new connection looks",
                    who, r->env.timeout / USEC_PER_SEC);
        }
        bufprintf(text, sizeof(text), "%s", r->actions);
        r->env.done(r->env.userdata, text, !r->failed && r->other <= 0);
}

/* How sqlvigil holds the process off now. */
typedef enum HoldHow {
        HOLD_NOTHING,    /* neither lock nor fence yet: it goes on trying */
        HOLD_CHECKPOINT, /* the old WAL's checkpoint lock */
        HOLD_BOTH_LOCKS, /* its write lock too */
        HOLD_FENCE,
} HoldHow;

static HoldHow hold_how(const Rescue *r) {
        if (r->kind == RESCUE_OVERWRITTEN)
                return r->write_held ? HOLD_BOTH_LOCKS : r->ckpt_held ? HOLD_CHECKPOINT : HOLD_NOTHING;
        return r->fence_fd >= 0 ? HOLD_FENCE : HOLD_NOTHING;
}

static const char *hold_text(const Rescue *r, HoldHow how) {
        switch (how) {
        case HOLD_BOTH_LOCKS:
                return "holds the old WAL's checkpoint and write locks, so that it can neither commit nor checkpoint "
                       "its set-aside WAL into the copied-in content,";
        case HOLD_CHECKPOINT:
                return "holds the old WAL's checkpoint lock, so that it cannot checkpoint its set-aside WAL into the "
                       "copied-in content,";
        case HOLD_FENCE:
                return "keeps the fence, so that no new connection starts a second WAL beside its one, and drains "
                       "what it commits,";
        default:
                return r->kind == RESCUE_OVERWRITTEN
                               ? "tries to take the old WAL's checkpoint lock, which it keeps taking (until then it "
                                 "may checkpoint old frames into the copied-in content: stop it now),"
                               : "drains what it commits, but has no fence (see above: a new connection may start a "
                                 "second WAL; stop every program now),";
        }
}

/* stop_timeout has passed and r->other is still attached: say who it is and
 * why sqlvigil stays; again whenever who or how changes. */
static void hold(Rescue *r) {
        char who[256] = "", text[768];
        HoldHow how = hold_how(r);

        if (r->holding && r->held_pid == r->other && r->held_how == (int)how)
                return;
        r->holding = true;
        r->held_pid = r->other;
        r->held_how = how;
        describe_other(r, who, sizeof(who));
        bufprintf(text, sizeof(text),
                  "%s still has the old files open after %" PRIu64 " s; sqlvigil stays and %s until it is gone: "
                  "stop or restart it",
                  who, r->env.timeout / USEC_PER_SEC, hold_text(r, how));
        act(r, "%s", text);
        if (r->env.holding)
                r->env.holding(r->env.userdata, text);
}

bool rescue_holding(const Rescue *r) {
        return r && r->holding && r->step != STEP_DONE;
}

void rescue_abandon(Rescue *r) {
        if (!r || r->step == STEP_DONE)
                return;
        r->abandoned = true;
        if (r->holding && !r->busy)
                advance(r);
}

static void advance(Rescue *r) {
        usec_t now = now_usec(CLOCK_MONOTONIC);

        if (r->busy || r->step == STEP_DONE)
                return;
        switch (r->step) {
        case STEP_SAVE:
                if (r->db_deleted) {
                        start_save(r, false);
                        return;
                }
                r->step = STEP_DRAIN;
                /* fall through */
        case STEP_DRAIN:
                if (r->kind != RESCUE_OVERWRITTEN) {
                        start_drain(r, r->env.timeout);
                        return;
                }
                r->step = STEP_WAIT;
                /* fall through */
        case STEP_WAIT:
                if (r->kind == RESCUE_OVERWRITTEN && !hold_locks(r) && now < r->deadline)
                        return; /* the next tick tries again */
                if (files_other_user(r->env.files->shm_fd, &r->other) < 0)
                        r->other = 0;
                /* Told to stop, it leaves as it would without the others:
                 * after the last drain. */
                if (r->other > 0 && now >= r->deadline && r->kind != RESCUE_DB_MOVED && !r->abandoned) {
                        hold(r);
                        if (r->kind == RESCUE_WAL_DISPLACED && now >= r->next_drain) {
                                r->next_drain = now + DRAIN_EVERY;
                                start_drain(r, USEC_PER_SEC);
                        }
                        return;
                }
                if (r->other <= 0 || now >= r->deadline) {
                        /* Once more: what others committed since the
                         * previous drain (they may have left just now)
                         * is in the old WAL only, which nobody reaches
                         * once sqlvigil is gone. */
                        if (r->kind != RESCUE_OVERWRITTEN && !r->drained_last) {
                                r->drained_last = true;
                                start_drain(r, now < r->deadline ? MIN(USEC_PER_SEC, r->deadline - now)
                                                                 : USEC_PER_SEC);
                                return;
                        }
                        if (r->late > 0)
                                act(r, "drained %d frames that other programs committed during the rescue", r->late);
                        if (r->db_deleted) {
                                r->step = STEP_RESAVE;
                                start_save(r, true);
                        } else
                                finish(r);
                        return;
                }
                /* Someone still commits into the old WAL: bring that in too. */
                if (r->kind != RESCUE_OVERWRITTEN && now >= r->next_drain) {
                        r->next_drain = now + DRAIN_EVERY;
                        start_drain(r, MIN(USEC_PER_SEC, r->deadline - now)); /* now < deadline here */
                }
                return;
        default:
                return;
        }
}

void rescue_look(Rescue *r) {
        struct stat st;
        DbFiles *f;
        int q;

        if (!r || r->fence_fd < 0 || r->step == STEP_DONE)
                return;
        f = r->env.files;
        if (stat(f->shm_path, &st) == 0 && st.st_dev == r->fence_id.dev && st.st_ino == r->fence_id.ino)
                return;
        close(r->fence_fd);
        r->fence_fd = -1;
        q = files_fence(f->shm_path, &r->fence_fd, &r->fence_id);
        if (q == 0)
                act(r, "the fence %s was removed; fenced it again", f->shm_path);
        else {
                act(r, "the fence %s was removed and could not be put back (%s): a program may have opened the "
                       "database and started a second WAL",
                    f->shm_path, q == -EEXIST ? "another file is there now" : strerror(-q));
                r->failed = true;
        }
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Rescue *r = userdata;
        int q;

        q = sd_event_source_set_time(s, usec + TICK);
        if (q >= 0)
                q = sd_event_source_set_enabled(s, SD_EVENT_ON);
        if (q < 0) {
                act(r, "cannot arm the rescue timer: %s", strerror(-q));
                r->failed = true;
                finish(r);
                return 0;
        }
        rescue_look(r);
        advance(r);
        return 0;
}

int rescue_start(Rescue **ret, const RescueEnv *env, RescueKind kind, const FilesCheck *check) {
        Rescue *r;
        int q;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->env = *env;
        r->kind = kind;
        r->check = *check;
        r->fence_fd = -1;
        r->deadline = now_usec(CLOCK_MONOTONIC) + env->timeout;

        /* The timer before any job: once one is out, r must live. */
        q = sd_event_add_time_relative(env->event, &r->timer, CLOCK_MONOTONIC, TICK, 10 * USEC_PER_MSEC, on_tick, r);
        if (q < 0) {
                free(r);
                return q;
        }
        (void)sd_event_source_set_description(r->timer, "rescue");
        (void)sd_event_source_set_enabled(r->timer, SD_EVENT_ON);
        r->step = STEP_SAVE;

        /* A deleted database before anything else: only sqlvigil's
         * descriptor still keeps it, nothing can give it a name back, and
         * a kill before its copy is complete loses it. The copy runs on
         * the database thread while the mark below is synced. */
        if (kind == RESCUE_DB_MOVED) {
                struct stat st;

                r->db_deleted = env->files->db_fd >= 0 && fstat(env->files->db_fd, &st) == 0 && st.st_nlink == 0;
                if (r->db_deleted)
                        start_save(r, false);
        }

        /* Then the evidence: should sqlvigil be killed from here
         * on, the next start sets the old -wal and -shm aside. Not when the
         * directory moved: the files stay together in it, and the mark
         * there already names them as they belong (the mark path is gone,
         * too). Nor when the -wal or -shm was displaced: the database is
         * still the one they belong to, and a -wal still at its path holds
         * commits that the next start must replay, not set aside. */
        q = check->dir_moved || kind == RESCUE_WAL_DISPLACED ? 0 : dbfiles_write_mark(env->files, true);
        if (q < 0) {
                act(r, "could not mark the old -wal and -shm stale in %s: %s", env->files->mark_path, strerror(-q));
                r->failed = true;
        }
        set_files_aside(r);
        *ret = r;
        advance(r);
        return 0;
}

Rescue *rescue_free(Rescue *r) {
        if (!r)
                return NULL;
        sd_event_source_disable_unref(r->timer);
        if (r->fence_fd >= 0)
                files_unfence(r->env.files->shm_path, r->fence_fd, r->fence_id);
        release_locks(r);
        free(r->db_name);
        free(r->saved);
        free(r);
        return NULL;
}
