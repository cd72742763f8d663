/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "monitor.h"
#include "walindex.h"

/* The longest the health probe watches a held write lock for a moment it is
 * free. Lock holders are application transactions; 100 ms is longer than
 * nearly all of them, and since the probe runs on the database thread it
 * delays only queued maintenance. It takes nothing: a look is one
 * fcntl(F_GETLK). */
#define PROBE_LOCK_WAIT (100 * USEC_PER_MSEC)

struct Monitor {
        MonitorEnv env;
        usec_t period;
        sd_event_source *timer;       /* starts a round every period */
        sd_event_source *deadline;    /* ends a round whose probe waits behind a long job */
        bool round_open;
        bool probe_pending;
        usec_t files_usec;            /* the file half of the current round */
        MonitorFacts facts;
        int shm_fd;
        HealthLock lock;
        usec_t history[MONITOR_CHECK_HISTORY];
        uint64_t n_history;
};

typedef struct ProbeJob {
        Job job;
        Monitor *monitor;
        int shm_fd;
        Worker *worker;
        usec_t lock_wait;
        DbProbe probe;
        LockSighting lock;
} ProbeJob;

usec_t monitor_probe_lock_wait(usec_t period) {
        return MIN(PROBE_LOCK_WAIT, period / 4);
}

static usec_t timer_accuracy(usec_t period) {
        return MAX(MIN(period / 20, 50 * USEC_PER_MSEC), USEC_PER_MSEC);
}

void monitor_refresh_files(Monitor *m) {
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        WalIndex w;

        health_read_files(m->env.db_path, m->env.wal_path, &m->facts.files);
        if (m->shm_fd >= 0 && walindex_read(m->shm_fd, &w) == 0) {
                m->facts.files.wal_index = true;
                m->facts.files.wal_pending_bytes = (uint64_t)walindex_pending(&w) * ((uint64_t)w.page_size + 24);
        }
        m->files_usec = now_usec(CLOCK_MONOTONIC) - t0;
}

void monitor_watch_write_lock(int shm_fd, usec_t max_wait, Worker *worker, LockSighting *ret) {
        static const usec_t delays[] = { 1000, 2000, 5000, 10000 };
        usec_t start = now_usec(CLOCK_MONOTONIC), now;
        WalLock l;

        *ret = (LockSighting){ 0 };
        for (size_t i = 0;; i++) {
                if (walindex_lock(shm_fd, WALINDEX_LOCK_WRITE, &l) < 0 || !l.held)
                        break;
                ret->holder = l.pid;
                now = now_usec(CLOCK_MONOTONIC);
                if (now - start >= max_wait || (worker && worker_cancelling(worker))) {
                        ret->busy = true;
                        break;
                }
                sleep_usec(MIN(delays[MIN(i, ELEMENTSOF(delays) - 1)], max_wait - (now - start)));
        }
        ret->looked = now_usec(CLOCK_MONOTONIC) - start;
}

static void take_probe(Monitor *m, const DbProbe *probe, const LockSighting *lock, usec_t at) {
        m->facts.probe = *probe;
        m->facts.probe_at = at;
        m->facts.have_probe = true;
        if (probe->result == 0) {
                m->facts.check_usec = m->files_usec + probe->duration;
                m->history[m->n_history % MONITOR_CHECK_HISTORY] = m->facts.check_usec;
                m->n_history++;
                log_debug("health check: files %" PRIu64 " us, probe %" PRIu64 " us", m->files_usec,
                          probe->duration);
        }
        m->facts.lock_busy_for = health_lock_update(&m->lock, lock->busy, at, lock->looked);
        if (lock->busy && lock->holder != m->facts.lock_holder) {
                m->facts.lock_holder = lock->holder;
                walindex_comm(lock->holder, m->facts.lock_holder_comm, sizeof(m->facts.lock_holder_comm));
        } else if (!lock->busy) {
                m->facts.lock_holder = 0;
                m->facts.lock_holder_comm[0] = '\0';
        }
}

static void finish_round(Monitor *m) {
        m->round_open = false;
        (void)sd_event_source_set_enabled(m->deadline, SD_EVENT_OFF);
        if (m->env.round_done)
                m->env.round_done(m->env.userdata);
}

static void probe_run(Job *j, Db *db) {
        ProbeJob *p = container_of(j, ProbeJob, job);

        db_probe(db, &p->probe);
        if (p->shm_fd >= 0)
                monitor_watch_write_lock(p->shm_fd, p->lock_wait, p->worker, &p->lock);
}

static void probe_done(Job *j, bool ran) {
        ProbeJob *p = container_of(j, ProbeJob, job);
        Monitor *m = p->monitor;

        if (m) {
                m->probe_pending = false;
                if (ran && p->probe.result != DB_E_CANCELLED)
                        take_probe(m, &p->probe, &p->lock, j->finished_at);
                if (m->round_open)
                        finish_round(m);
        }
        free(p);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Monitor *m = userdata;

        (void)s;
        (void)usec;
        if (m->round_open)
                finish_round(m);
        return 0;
}

static void start_round(Monitor *m) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        ProbeJob *p;
        int r;

        monitor_refresh_files(m);
        if (!m->probe_pending) {
                p = calloc(1, sizeof(*p));
                if (!p)
                        log_error("cannot queue the health probe: %s", strerror(ENOMEM));
                else {
                        p->job = (Job){ .name = "probe", .urgent = true, .cancellable = true, .run = probe_run,
                                        .done = probe_done };
                        p->monitor = m;
                        p->shm_fd = m->shm_fd;
                        p->worker = m->env.db_worker;
                        p->lock_wait = monitor_probe_lock_wait(m->period);
                        m->probe_pending = true;
                        worker_submit(m->env.db_worker, &p->job);
                }
        }
        m->round_open = true;
        /* If the database thread is in a long job the probe waits behind
         * it; the round then ends at this deadline with the file checks and
         * the thread's heartbeat, so the watchdog is never late for a busy
         * but healthy database. */
        r = sd_event_source_set_time(m->deadline, now + MIN(m->period / 2, USEC_PER_SEC));
        if (r >= 0)
                r = sd_event_source_set_enabled(m->deadline, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error("cannot arm the health round deadline: %s", strerror(-r));
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Monitor *m = userdata;
        int r;

        /* Absolute re-arm: rounds stay on a fixed cadence instead of drifting
         * by the time each one takes. */
        r = sd_event_source_set_time(s, usec + m->period);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                log_error("cannot re-arm the health timer: %s", strerror(-r));
        if (m->round_open)
                /* The previous round is still open (its deadline is shorter
                 * than the period, so this cannot happen; be safe): close it. */
                finish_round(m);
        start_round(m);
        return 0;
}

int monitor_new(Monitor **ret, const MonitorEnv *env) {
        Monitor *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->env = *env;
        m->period = env->period;
        m->shm_fd = -1;
        *ret = m;
        return 0;
}

Monitor *monitor_free(Monitor *m) {
        if (!m)
                return NULL;
        sd_event_source_disable_unref(m->timer);
        sd_event_source_disable_unref(m->deadline);
        free(m);
        return NULL;
}

void monitor_first_check(Monitor *m, Db *db) {
        LockSighting lock = { 0 };
        DbProbe probe;

        monitor_refresh_files(m);
        db_probe(db, &probe);
        if (m->shm_fd >= 0)
                monitor_watch_write_lock(m->shm_fd, monitor_probe_lock_wait(m->period), NULL, &lock);
        take_probe(m, &probe, &lock, now_usec(CLOCK_MONOTONIC));
}

void monitor_set_wal_index(Monitor *m, int shm_fd) {
        m->shm_fd = shm_fd;
}

int monitor_start(Monitor *m, Worker *db_worker) {
        usec_t period = m->period;
        int r;

        m->env.db_worker = db_worker;
        r = sd_event_add_time(m->env.event, &m->deadline, CLOCK_MONOTONIC, 0, USEC_PER_MSEC, on_deadline, m);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(m->deadline, "health-round-deadline");
        r = sd_event_source_set_enabled(m->deadline, SD_EVENT_OFF);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(m->env.event, &m->timer, CLOCK_MONOTONIC, period, timer_accuracy(period),
                                       on_timer, m);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(m->timer, "health");
        return 0;
}

int monitor_set_period(Monitor *m, usec_t period) {
        int r;

        m->period = period;
        r = sd_event_source_set_time_accuracy(m->timer, timer_accuracy(period));
        if (r >= 0)
                r = sd_event_source_set_time_relative(m->timer, period);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->timer, SD_EVENT_ONESHOT);
        return r;
}

void monitor_stop(Monitor *m) {
        (void)sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
        (void)sd_event_source_set_enabled(m->deadline, SD_EVENT_OFF);
        m->round_open = false;
}

const MonitorFacts *monitor_facts(const Monitor *m) {
        return &m->facts;
}

static int cmp_usec(const void *a, const void *b) {
        usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;

        return x < y ? -1 : x > y;
}

void monitor_check_percentiles(const Monitor *m, usec_t *p50, usec_t *p99) {
        usec_t sorted[MONITOR_CHECK_HISTORY];
        size_t n = MIN(m->n_history, (uint64_t)MONITOR_CHECK_HISTORY);

        *p50 = *p99 = 0;
        if (n == 0)
                return;
        memcpy(sorted, m->history, n * sizeof(sorted[0]));
        qsort(sorted, n, sizeof(sorted[0]), cmp_usec);
        *p50 = sorted[n / 2];
        *p99 = sorted[MIN(n - 1, n * 99 / 100)];
}
