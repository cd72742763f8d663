#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Unattended maintenance through the real binary, with independent
application processes (sqlvigil-loadgen) writing and reading, and results
checked with Python's sqlite3 module."""

import os
import random
import re
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, Loadgen, Notify, check, file_size, integrity,  # noqa: E402
                     query, run, wait_until, write_config)


def make_free_pages(path, pages, page_size=1024, auto_vacuum="incremental", payload=None, table="big"):
    """A WAL database whose freelist holds at least `pages` pages."""
    new = not os.path.exists(path)
    con = sqlite3.connect(path, isolation_level=None)
    if new:
        con.execute(f"PRAGMA page_size={page_size}")
        con.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
        con.execute("PRAGMA journal_mode=wal")
    con.execute(f"CREATE TABLE IF NOT EXISTS {table}(id INTEGER PRIMARY KEY, v BLOB)")
    size = payload or (page_size - 150)  # one row per page
    con.execute("BEGIN")
    con.executemany(f"INSERT INTO {table}(v) VALUES (randomblob(?))", ((size,) for _ in range(pages + 100)))
    con.execute("COMMIT")
    con.execute(f"DELETE FROM {table}")
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    check(free >= pages, f"prepared only {free} free pages, wanted {pages}")
    return free


def start(tmp, db, conf_text, watchdog=None, debug=False, name="m"):
    conf = os.path.join(tmp, f"{name}.conf")
    write_config(conf, f"[database]\npath = {db}\n" + conf_text)
    sockdir = os.path.join(tmp, f"sock-{name}-{time.monotonic_ns()}")
    os.mkdir(sockdir)
    notify = Notify(sockdir)
    env = {"SQLVIGIL_DEBUG": "1"} if debug else None
    d = Daemon(["--config", conf], notify=notify, watchdog_usec=watchdog, env=env)
    try:
        notify.wait_for("READY", "1", timeout=30)
    except Failure:
        d.kill()
        notify.close()
        raise Failure("not ready:\n" + d.dump())
    return d, notify, conf


def stop(d, notify, timeout=30):
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(timeout)
    notify.close()
    check(rc == 0, f"exit {rc}:\n{d.dump()}")


def check_writers(db, summaries):
    """Every write succeeded and every committed row is there."""
    for s in summaries:
        check(s["failed"] == 0, f"writer {s['writer']}: {s['failed']} failed writes: {s['first_error']}")
        n, top = query(db, "SELECT count(*), coalesce(max(seq), 0) FROM load WHERE writer = ?", s["writer"])[0]
        check(n == s["succeeded"] and top == s["succeeded"],
              f"writer {s['writer']}: {s['succeeded']} committed, {n} rows found (max seq {top})")


# ---------------------------------------------------------------------------

def case_load_reclaim(tmp):
    """Four writers insert continuously while sqlvigil checkpoints, reclaims
    more than 50,000 free pages and analyzes: every write succeeds."""
    db = os.path.join(tmp, "load.db")
    # The writers reuse free pages too (a few thousand in a slow sanitizer
    # run), so start with enough that vacuum itself frees over 50,000.
    make_free_pages(db, 60000)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, k TEXT)")
    con.execute("CREATE INDEX items_k ON items(k)")
    con.executemany("INSERT INTO items(k) VALUES (?)", (("k%d" % (i % 97),) for i in range(2000)))
    con.close()

    writers = []
    d, notify, _ = start(tmp, db, """
[health]
interval = 500ms
quick_check_interval = 0
[checkpoint]
interval = 1s
min_wal_pages = 500
[vacuum]
interval = 1s
[analyze]
interval = 1s
""")
    try:
        for i in range(4):
            writers.append(Loadgen("writer", db, "--id", i + 1, "--interval-us", 2000, "--payload", 200))
        # The whole freelist must come down below the trigger, with
        # checkpoints and an ANALYZE along the way.
        d.wait_log(r"vacuum \(interval\) freed \d+ pages .* free pages \d+ -> \d+", timeout=120)
        d.wait_log(r"analyze \(interval\) optimize: [1-9]\d* of \d+ tables analyzed", timeout=30)
        d.wait_log(r"checkpoint \((interval|wal-pages)\) passive", timeout=30)
        time.sleep(1.0)
        summaries = [w.stop() for w in writers]
        stop(d, notify)
    finally:
        for w in writers:
            w.kill()
        d.kill()

    freed = sum(int(m) for m in re.findall(r"vacuum \(interval\) freed (\d+) pages", "\n".join(d.log())))
    check(freed >= 50000, f"reclaimed only {freed} pages")
    check(sum(s["succeeded"] for s in summaries) > 1000, f"writers barely wrote: {summaries}")
    check_writers(db, summaries)
    free, pages = query(db, "SELECT (SELECT freelist_count FROM pragma_freelist_count), "
                            "(SELECT page_count FROM pragma_page_count)")[0]
    trigger = 256 + 0.05 * pages
    check(free <= trigger, f"freelist {free} is above the trigger {trigger:.0f}")
    stat = query(db, "SELECT count(*) FROM sqlite_stat1 WHERE idx = 'items_k'")[0][0]
    check(stat == 1, "sqlite_stat1 has no row for items_k")
    check(integrity(db) == ["ok"], "integrity_check failed")
    worst = max(s["max_us"] for s in summaries)
    print(f"  reclaimed {freed} pages; {sum(s['succeeded'] for s in summaries)} writes, worst writer latency "
          f"{worst / 1000:.1f} ms")


def case_wal_bound(tmp):
    """Sustained writes with periodic short readers: the WAL stays under
    truncate_wal_size without the applications checkpointing at all."""
    db = os.path.join(tmp, "wal.db")
    make_free_pages(db, 10, page_size=4096)
    limit = 8 << 20
    writers, readers = [], []
    d, notify, _ = start(tmp, db, """
[checkpoint]
interval = 1s
min_wal_pages = 200
truncate_wal_size = 8M
[vacuum]
interval = 0
[analyze]
interval = 0
""")
    # Under AddressSanitizer sqlvigil runs a few times slower; the same
    # write rate would then measure the sanitizer, not the policy.
    interval = 6000 if os.environ.get("SQLVIGIL_SANITIZED") else 2000
    try:
        for i in range(2):
            writers.append(Loadgen("writer", db, "--id", i + 1, "--interval-us", interval, "--payload", 500,
                                   "--autocheckpoint", 0))
        for _ in range(2):
            readers.append(Loadgen("reader", db, "--hold-ms", 20, "--gap-ms", 30))
        sizes = []
        end = time.monotonic() + 8
        while time.monotonic() < end:
            sizes.append(file_size(db + "-wal"))
            time.sleep(0.02)
        summaries = [w.stop() for w in writers]
        for r in readers:
            r.stop()
        stop(d, notify)
    finally:
        for p in writers + readers:
            p.kill()
        d.kill()
    runs = len(re.findall(r"checkpoint \((interval|wal-pages|wal-size)\)", "\n".join(d.log())))
    check(runs >= 3, f"only {runs} checkpoints in 8 s")
    check(max(sizes) <= limit, f"WAL reached {max(sizes)} bytes, above truncate_wal_size {limit}")
    check_writers(db, summaries)
    print(f"  WAL high-water {max(sizes) / 1048576:.1f} MiB over 8 s, {runs} checkpoints")


def case_wal_triggers(tmp):
    """New frames reaching min_wal_pages start a PASSIVE checkpoint at once;
    a -wal file above truncate_wal_size is truncated."""
    db = os.path.join(tmp, "trig.db")
    make_free_pages(db, 10, page_size=4096)
    d, notify, _ = start(tmp, db, """
[checkpoint]
interval = 1h
min_wal_pages = 300
truncate_wal_size = 4M
[vacuum]
interval = 0
[analyze]
interval = 0
[health]
quick_check_interval = 0
""")
    try:
        # 80 commits of a page and its parents, about 350 frames (1.4 MiB):
        # past min_wal_pages, under truncate_wal_size.
        t0 = time.monotonic()
        s = Loadgen("writer", db, "--interval-us", 100, "--count", 80, "--payload", 3000,
                    "--autocheckpoint", 0).wait()
        check(s["failed"] == 0, f"writer failed: {s}")
        d.wait_log(r"checkpoint \(wal-pages\) passive: \d+ frames in WAL, \d+ checkpointed", after=t0, timeout=10)
        check(not d.find_log(r"checkpoint \(wal-size\)", after=t0), "truncated below truncate_wal_size")
        # 1300 more commits (over 5 MiB): the -wal file grows past 4 MiB; with the writer
        # gone and no readers, TRUNCATE succeeds.
        t1 = time.monotonic()
        s = Loadgen("writer", db, "--id", 2, "--interval-us", 100, "--count", 1300, "--payload", 3000,
                    "--autocheckpoint", 0).wait()
        check(s["failed"] == 0, f"writer failed: {s}")
        d.wait_log(r"checkpoint \(wal-size\) truncate: \d+ frames in WAL, \d+ checkpointed; WAL [0-9.]+M -> 0B",
                   after=t1, timeout=10)
        check(file_size(db + "-wal") == 0, "WAL not truncated")
        stop(d, notify)
    finally:
        d.kill()


def case_starvation(tmp):
    """A reader that never leaves: checkpoints cannot catch up; sqlvigil says
    so, names the reader's pid, and health is degraded until it goes."""
    db = os.path.join(tmp, "starve.db")
    make_free_pages(db, 10, page_size=4096)
    d, notify, _ = start(tmp, db, """
[checkpoint]
interval = 1s
min_wal_pages = 100
[vacuum]
interval = 0
[analyze]
interval = 0
[health]
interval = 300ms
quick_check_interval = 0
""")
    writer = reader = None
    try:
        writer = Loadgen("writer", db, "--interval-us", 2000, "--payload", 500, "--autocheckpoint", 0)
        # The reader's snapshot must end inside the WAL, so that it holds
        # checkpoints back: let the writer put frames there first.
        wait_until(lambda: file_size(db + "-wal") > 64 * 1024, 10, "the writer's first frames in the WAL")
        reader = Loadgen("reader", db, "--hold-ms", -1)
        pid = reader.hello["pid"]
        t, line = d.wait_log(r"checkpoints starved: \d+ in a row could not catch up", timeout=30)
        check(f"pid {pid} (" in line, f"reader pid {pid} not named: {line}")
        check(re.search(rf"pid {pid} \((?!\?)", line), f"reader's command not named: {line}")
        d.wait_log(r"health: degraded: .*checkpoints starved", timeout=10)
        reader.kill()
        t1 = time.monotonic()
        d.wait_log(r"checkpoint starvation over", after=t1, timeout=15)
        d.wait_log(r"health: ok \(was degraded\)", after=t1, timeout=10)
        s = writer.stop()
        check(s["failed"] == 0, f"writer failed: {s}")
        stop(d, notify)
    finally:
        for p in (writer, reader):
            if p:
                p.kill()
        d.kill()


def case_stop_during_reclaim(tmp):
    """SIGTERM in the middle of a long reclaim: the run is cancelled, the stop
    checkpoint still truncates the WAL, all within stop_timeout."""
    db = os.path.join(tmp, "long.db")
    make_free_pages(db, 30000)
    d, notify, _ = start(tmp, db, """
[vacuum]
interval = 200ms
step_budget = 1ms
[checkpoint]
stop_timeout = 3s
[analyze]
interval = 0
[health]
quick_check_interval = 0
""", debug=True)
    try:
        d.wait_log(r"vacuum step 20:", timeout=30)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(3 + 5)
        took = time.monotonic() - t0
        notify.close()
        check(rc == 0, f"exit {rc}")
        check(took < 3.0, f"stop took {took:.2f}s, stop_timeout is 3s")
        check(d.find_log(r"vacuum \(interval\) cancelled after freeing \d+ pages"), "the run was not cancelled:\n"
              + d.dump())
        check(d.find_log(r"final truncate checkpoint done"), "no final checkpoint:\n" + d.dump())
        check(file_size(db + "-wal") == 0, "WAL not truncated")
        free = query(db, "PRAGMA freelist_count")[0][0]
        check(free > 1000, f"only {free} free pages left: the reclaim was not interrupted mid-way")
        check(integrity(db) == ["ok"], "integrity_check failed")
    finally:
        d.kill()


def case_optimize(tmp):
    """mode = optimize analyzes stale tables, and only those, from a
    connection that never queried them; mode = analyze analyzes all."""
    db = os.path.join(tmp, "opt.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE a(x)")
    con.execute("CREATE INDEX ia ON a(x)")
    con.execute("CREATE TABLE b(x)")
    con.execute("CREATE INDEX ib ON b(x)")
    con.executemany("INSERT INTO a VALUES (?)", ((i % 50,) for i in range(1000)))
    con.executemany("INSERT INTO b VALUES (?)", ((i % 50,) for i in range(1000)))
    con.execute("ANALYZE b")  # b is up to date, a never analyzed
    con.close()
    d, notify, conf = start(tmp, db, """
[analyze]
interval = 300ms
mode = optimize
[vacuum]
interval = 0
[health]
quick_check_interval = 0
""")
    try:
        d.wait_log(r"analyze \(interval\) optimize: 1 of 2 tables analyzed \(a\)", timeout=10)
        check(query(db, "SELECT count(*) FROM sqlite_stat1 WHERE idx = 'ia'")[0][0] == 1, "no statistics for ia")
        t0 = time.monotonic()
        d.wait_log(r"analyze \(interval\) optimize: 0 of 2 tables analyzed", after=t0, timeout=10)

        # Twenty times the rows, in one transaction (so no run sees half of
        # them): b is stale now.
        con = sqlite3.connect(db, isolation_level=None, timeout=10)
        con.execute("BEGIN")
        con.executemany("INSERT INTO b VALUES (?)", ((i % 50,) for i in range(20000)))
        con.execute("COMMIT")
        con.close()
        t1 = time.monotonic()
        d.wait_log(r"analyze \(interval\) optimize: 1 of 2 tables analyzed \(b\)", after=t1, timeout=10)
        rows = int(query(db, "SELECT stat FROM sqlite_stat1 WHERE idx = 'ib'")[0][0].split()[0])
        check(rows > 10000, f"sqlite_stat1 for ib says {rows} rows")

        # mode = analyze, by reload: every table, every time.
        write_config(conf, f"[database]\npath = {db}\n[analyze]\ninterval = 300ms\nmode = analyze\n"
                           "[vacuum]\ninterval = 0\n[health]\nquick_check_interval = 0\n")
        t2 = time.monotonic()
        d.signal(signal.SIGHUP)
        d.wait_log(r"analyze \(interval\) analyze: 2 of 2 tables analyzed \(a, b\)", after=t2, timeout=10)
        stop(d, notify)
    finally:
        d.kill()


def case_quick_check_corruption(tmp):
    """A damaged page: quick_check reports it, health fails with the first
    error row as the reason, and the watchdog pings stop."""
    db = os.path.join(tmp, "bad.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT)")
    con.execute("CREATE INDEX tk ON t(k)")
    con.executemany("INSERT INTO t(k) VALUES (?)", (("key-%08d" % i,) for i in range(20000)))
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("SELECT pageno FROM dbstat WHERE name = 'tk' AND pagetype = 'leaf' "
                       "ORDER BY pageno LIMIT 1 OFFSET 10").fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with open(db, "r+b") as f:
        f.seek((page - 1) * size + 8)
        f.write(b"\xff" * 200)
    d, notify, _ = start(tmp, db, """
[health]
quick_check_interval = 1s
[vacuum]
interval = 0
[analyze]
interval = 0
""", watchdog=1_000_000)
    try:
        t, line = d.wait_log(r"quick_check found \d+ problems?; the first: ", timeout=15)
        tf, _ = d.wait_log(r"health: failed: quick_check: ", timeout=5)
        time.sleep(2.0)
        late = notify.times("WATCHDOG", "1", after=tf + 0.1)
        check(not late, f"{len(late)} pings after quick_check failed")
    finally:
        d.kill()
        notify.close()


def case_convert(tmp):
    """auto_vacuum = none: reported once; with convert = yes, one full VACUUM
    switches the file to incremental when free disk allows."""
    db = os.path.join(tmp, "none.db")
    make_free_pages(db, 3000, auto_vacuum="none")
    d, notify, conf = start(tmp, db, """
[vacuum]
interval = 200ms
convert = no
[analyze]
interval = 0
[health]
quick_check_interval = 0
""")
    try:
        d.wait_log(r"vacuum: \d+ free pages .* cannot be reclaimed step by step: auto_vacuum is none", timeout=10)
        time.sleep(1.5)  # several more intervals
        notes = [l for l in d.log() if "cannot be reclaimed step by step" in l]
        check(len(notes) == 1, f"the same report {len(notes)} times")
        check(query(db, "PRAGMA auto_vacuum")[0][0] == 0, "changed without convert = yes")

        write_config(conf, f"[database]\npath = {db}\n[vacuum]\ninterval = 200ms\nconvert = yes\n"
                           "[analyze]\ninterval = 0\n[health]\nquick_check_interval = 0\n")
        t0 = time.monotonic()
        d.signal(signal.SIGHUP)
        d.wait_log(r"vacuum: converted to auto_vacuum=incremental with a full VACUUM: pages \d+ -> \d+, "
                   r"free pages \d+ -> 0", after=t0, timeout=20)
        stop(d, notify)
    finally:
        d.kill()
    check(query(db, "PRAGMA auto_vacuum")[0][0] == 2, "file not converted")
    check(query(db, "PRAGMA freelist_count")[0][0] == 0, "free pages left after the full VACUUM")
    check(integrity(db) == ["ok"], "integrity_check failed")


def case_reload_rearms(tmp):
    """Reload re-arms the maintenance timers with the new intervals."""
    db = os.path.join(tmp, "re.db")
    make_free_pages(db, 2000)
    d, notify, conf = start(tmp, db, "[vacuum]\ninterval = 1h\n[analyze]\ninterval = 0\n"
                                     "[health]\nquick_check_interval = 0\n")
    try:
        time.sleep(1.0)
        check(not d.find_log(r"vacuum \("), "vacuum ran long before its 1h interval")
        write_config(conf, f"[database]\npath = {db}\n[vacuum]\ninterval = 300ms\n[analyze]\ninterval = 0\n"
                           "[health]\nquick_check_interval = 0\n")
        t0 = time.monotonic()
        d.signal(signal.SIGHUP)
        d.wait_log(r"vacuum \(interval\) freed \d+ pages", after=t0, timeout=10)
        stop(d, notify)
    finally:
        d.kill()


# ---- Crash safety ------------------------------------------------------------

FLAVORS = {
    # task: (configuration, start pattern, end pattern, longest random delay)
    "vacuum": ("[vacuum]\ninterval = 100ms\nstep_budget = 5ms\n[analyze]\ninterval = 0\n"
               "[checkpoint]\ninterval = 1h\nmin_wal_pages = 1000000\n",
               r"vacuum: starting", r"vacuum \(interval\)", 0.15),
    "checkpoint": ("[vacuum]\ninterval = 0\n[analyze]\ninterval = 0\n[checkpoint]\ninterval = 1h\n"
                   "min_wal_pages = 2000\n",
                   r"checkpoint: starting", r"checkpoint \(", 0.03),
    "analyze": ("[vacuum]\ninterval = 0\n[checkpoint]\ninterval = 1h\nmin_wal_pages = 1000000\n"
                "[analyze]\ninterval = 100ms\nmode = analyze\nanalysis_limit = 0\n",
                r"analyze: starting", r"analyze \(interval\) analyze: ", 0.02),
}


def prepare_trial(db, flavor, rng):
    con = sqlite3.connect(db, isolation_level=None, timeout=10)
    con.execute("PRAGMA wal_autocheckpoint=0")
    if flavor == "vacuum":
        con.execute("BEGIN")
        con.executemany("INSERT INTO big(v) VALUES (randomblob(850))", ((),) * 4000)
        con.execute("COMMIT")
        con.execute("DELETE FROM big")
    elif flavor == "checkpoint":
        con.execute("BEGIN")
        con.executemany("INSERT INTO big(v) VALUES (randomblob(850))", ((),) * 6000)
        con.execute("COMMIT")
        con.execute("DELETE FROM big")  # the WAL now holds well over 2000 new frames
    else:
        con.execute("CREATE TABLE IF NOT EXISTS idx(id INTEGER PRIMARY KEY, a TEXT, b INT, c TEXT)")
        con.execute("CREATE INDEX IF NOT EXISTS idx_a ON idx(a)")
        con.execute("CREATE INDEX IF NOT EXISTS idx_b ON idx(b, a)")
        con.execute("CREATE INDEX IF NOT EXISTS idx_c ON idx(c, b)")
        if con.execute("SELECT count(*) FROM idx").fetchone()[0] < 120000:
            # One transaction: 120,000 back-to-back autocommits would starve
            # the test's own writer (busy_timeout waiters rarely win against
            # a loop that takes the lock again at once).
            con.execute("BEGIN")
            con.executemany("INSERT INTO idx(a, b, c) VALUES (?, ?, ?)",
                            (("v%d" % rng.randrange(5000), rng.randrange(100), "c%d" % rng.randrange(20000))
                             for _ in range(120000)))
            con.execute("COMMIT")
    con.close()


def case_crash_safety(tmp):
    """kill -9 at random moments during vacuum, checkpoint and analyze: every
    trial ends with integrity_check ok and no committed row lost. Trials:
    $SQLVIGIL_CRASH_TRIALS (default 21; the long mode runs 100+)."""
    trials = int(os.environ.get("SQLVIGIL_CRASH_TRIALS", "21"))
    rng = random.Random(int(os.environ.get("SQLVIGIL_CRASH_SEED", str(time.time_ns()))))
    db = os.path.join(tmp, "crash.db")
    make_free_pages(db, 10)
    mid_run = {f: 0 for f in FLAVORS}
    tried = {f: 0 for f in FLAVORS}
    for i in range(trials):
        flavor = list(FLAVORS)[i % len(FLAVORS)]
        conf_text, start_rx, end_rx, window = FLAVORS[flavor]
        # The writer connects first and stays: the preparing connection's
        # close is then not the last one, so it leaves the WAL as it is.
        writer = Loadgen("writer", db, "--id", i + 1, "--interval-us", 1000, "--payload", 300,
                         "--autocheckpoint", 0)
        prepare_trial(db, flavor, rng)
        d = notify = None
        try:
            d, notify, _ = start(tmp, db, conf_text + "[health]\nquick_check_interval = 0\n", debug=True,
                                 name=f"t{i}")
            t_start, _ = d.wait_log(start_rx, timeout=20, interval=0.001)
            time.sleep(rng.uniform(0, window))
            d.proc.kill()  # SIGKILL
            d.wait_exit(10)
            t_kill = time.monotonic()
            finished = d.find_log(end_rx, after=t_start)
            tried[flavor] += 1
            if not finished or finished[0] > t_kill:
                mid_run[flavor] += 1
            s = writer.stop()
        finally:
            writer.kill()
            if d:
                d.kill()
            if notify:
                notify.close()
        check(s["failed"] == 0, f"trial {i}: writer failed: {s}")
        result = integrity(db)
        check(result == ["ok"], f"trial {i} ({flavor}): integrity_check: {result[:3]}")
        check_writers(db, [s])
    print(f"  {trials} trials; killed mid-run: " + ", ".join(f"{f} {mid_run[f]}/{tried[f]}" for f in FLAVORS))
    for f in FLAVORS:
        check(mid_run[f] >= 1, f"no trial killed sqlvigil in the middle of {f}")


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    run(CASES)
