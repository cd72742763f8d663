/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "worker.h"

struct Worker {
        char name[16];
        Db *db;              /* NULL for the file thread */
        atomic_bool cancelling;
        _Atomic usec_t heartbeat; /* job boundaries; the Db keeps its own finer one */
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t wake;

        /* Protected by lock. */
        Job *queue;   /* waiting, urgent ones first */
        Job *done;    /* finished or dropped, waiting for the loop */
        Job *current;
        bool quit;
        bool cancelled;

        int event_fd; /* signalled when done gets a job */
        sd_event_source *source;
};

static void list_append(Job **head, Job *job) {
        Job **p = head;

        while (*p)
                p = &(*p)->next;
        job->next = NULL;
        *p = job;
}

/* Urgent jobs go after the last urgent job, before the first ordinary one. */
static void queue_insert(Job **head, Job *job) {
        Job **p = head;

        if (!job->urgent) {
                list_append(head, job);
                return;
        }
        while (*p && (*p)->urgent)
                p = &(*p)->next;
        job->next = *p;
        *p = job;
}

static void signal_loop(Worker *w) {
        uint64_t one = 1;

        /* An eventfd counter only fails to take a write when it would
         * overflow, which 2^64 pending wake-ups cannot reach. */
        if (write(w->event_fd, &one, sizeof(one)) != sizeof(one))
                abort();
}

static void *worker_main(void *userdata) {
        Worker *w = userdata;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                Job *job;

                while (!w->queue && !w->quit)
                        pthread_cond_wait(&w->wake, &w->lock);
                if (w->quit)
                        break;
                job = w->queue;
                w->queue = job->next;
                w->current = job;
                atomic_store(&w->heartbeat, now_usec(CLOCK_MONOTONIC));
                if (w->db)
                        db_set_cancellable(w->db, job->cancellable);
                pthread_mutex_unlock(&w->lock);

                job->run(job, w->db);
                job->finished_at = now_usec(CLOCK_MONOTONIC);
                atomic_store(&w->heartbeat, job->finished_at);

                pthread_mutex_lock(&w->lock);
                w->current = NULL;
                if (w->db)
                        db_set_cancellable(w->db, false);
                list_append(&w->done, job);
                signal_loop(w);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* Loop thread: hands finished jobs to their owners. */
/* Gives each job of the list back to its owner through done(); ran says
 * whether it ran (a queued job's finished_at is still 0). */
static void hand_back(Job *list) {
        while (list) {
                Job *job = list;

                list = job->next;
                job->next = NULL;
                job->done(job, job->finished_at != 0);
        }
}

static int on_worker_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        uint64_t n;
        Job *list;

        (void)s;
        (void)revents;
        if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
                return -errno;

        pthread_mutex_lock(&w->lock);
        list = w->done;
        w->done = NULL;
        pthread_mutex_unlock(&w->lock);

        hand_back(list);
        return 0;
}

int worker_new(Worker **ret, const char *name, Db *db, sd_event *event) {
        Worker *w;
        sigset_t all, old;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        bufprintf(w->name, sizeof(w->name), "%s", name);
        w->db = db;
        w->event_fd = -1;
        atomic_init(&w->cancelling, false);
        atomic_init(&w->heartbeat, now_usec(CLOCK_MONOTONIC));
        /* With default attributes these only fail for lack of memory; the
         * lock and wait calls below cannot fail on a valid, owned mutex. */
        r = -pthread_mutex_init(&w->lock, NULL);
        if (r < 0) {
                free(w);
                return r;
        }
        r = -pthread_cond_init(&w->wake, NULL);
        if (r < 0) {
                pthread_mutex_destroy(&w->lock);
                free(w);
                return r;
        }

        w->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->event_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(event, &w->source, w->event_fd, EPOLLIN, on_worker_event, w);
        if (r < 0)
                goto fail;
        (void)sd_event_source_set_description(w->source, w->name);

        /* Signals belong to the event loop thread (signalfd); the worker must
         * never be picked to receive one. */
        sigfillset(&all);
        r = -pthread_sigmask(SIG_BLOCK, &all, &old);
        if (r < 0)
                goto fail;
        r = -pthread_create(&w->thread, NULL, worker_main, w);
        (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                goto fail;
        w->thread_started = true;
        /* Only a name for ps -L and gdb; a failure changes nothing else. */
        (void)pthread_setname_np(w->thread, w->name);

        *ret = w;
        return 0;

fail:
        worker_free(w);
        return r;
}

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;
        if (w->thread_started) {
                pthread_mutex_lock(&w->lock);
                w->quit = true;
                atomic_store(&w->cancelling, true);
                if (w->db)
                        db_cancel(w->db);
                pthread_cond_signal(&w->wake);
                pthread_mutex_unlock(&w->lock);
                pthread_join(w->thread, NULL);
        }
        /* Whatever is left never ran, or finished without the loop seeing it;
         * its owner still frees it. */
        hand_back(w->done);
        hand_back(w->queue);
        sd_event_source_disable_unref(w->source);
        if (w->event_fd >= 0)
                close(w->event_fd);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

void worker_submit(Worker *w, Job *job) {
        job->finished_at = 0;
        pthread_mutex_lock(&w->lock);
        if (w->cancelled && job->cancellable) {
                /* Refused: goes straight back as "did not run". */
                list_append(&w->done, job);
                signal_loop(w);
        } else {
                queue_insert(&w->queue, job);
                pthread_cond_signal(&w->wake);
        }
        pthread_mutex_unlock(&w->lock);
}

void worker_cancel(Worker *w) {
        Job **p;

        pthread_mutex_lock(&w->lock);
        w->cancelled = true;
        atomic_store(&w->cancelling, true);
        if (w->db)
                db_cancel(w->db);
        p = &w->queue;
        while (*p) {
                Job *job = *p;

                if (job->cancellable) {
                        *p = job->next;
                        list_append(&w->done, job);
                } else
                        p = &job->next;
        }
        if (w->done)
                signal_loop(w);
        pthread_mutex_unlock(&w->lock);
}

const char *worker_current(Worker *w) {
        const char *name;

        pthread_mutex_lock(&w->lock);
        name = w->current ? w->current->name : NULL;
        pthread_mutex_unlock(&w->lock);
        return name;
}

usec_t worker_heartbeat(Worker *w) {
        return w->db ? db_heartbeat(w->db) : atomic_load(&w->heartbeat);
}

bool worker_cancelling(Worker *w) {
        return atomic_load(&w->cancelling);
}
