#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""sqlvigil benchmarks B1..B12 (issues 6, 11, 12, 14), side by side in one run.

    tests/bench/run.py --build build [--quick] [--only B1,B2] [--out DIR]

or, from meson: meson test -C build --benchmark --verbose

Measures what sqlvigil costs the applications and what it saves them, next
to the alternatives (a full VACUUM, the applications' own autocheckpoint,
the sqlite3 command-line tool) on the same machine in the same run, and
writes docs/benchmarks.md with its gnuplot pictures. These are
measurements, not pass/fail tests: the exit status is 0 whenever every
benchmark ran, whatever the figures; 1 if one of them could not run.

B1-B7 are in this file; B8, B9 (locks.py), B10, B11 (backups.py) and B12
(faults.py) in their own modules, each with its rows and section of the
page. sqlvigil's journal entries, with their SQLVIGIL_* fields, are read
through a stand-in for journald's socket (lib.py, Journal); that needs
root for a mount namespace, and without it the daemon logs to stderr and
the page says which figures are missing.

--quick: small databases and short runs, for development (about two minutes);
its report goes to BUILD/bench-quick/ unless --out says otherwise.
Raw data (latency files, WAL samples, daemon logs) go to BUILD/bench-data/.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import backups  # noqa: E402
import faults  # noqa: E402
import locks  # noqa: E402
from lib import BenchError, MiB  # noqa: E402
import report  # noqa: E402

SOURCE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class Ctx:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.build = os.path.abspath(args.build)
        self.sqlvigil = os.path.abspath(args.sqlvigil or os.path.join(self.build, "src", "sqlvigil"))
        self.loadgen = os.path.abspath(os.path.join(self.build, "tests", "sqlvigil-loadgen"))
        self.sqlvigilctl = os.path.abspath(args.sqlvigilctl or os.path.join(os.path.dirname(self.sqlvigil),
                                                                            "sqlvigilctl"))
        self.tmp = tempfile.mkdtemp(prefix="sqlvigil-bench-")
        self.data = os.path.join(self.build, "bench-data" + ("-quick" if self.quick else ""))
        shutil.rmtree(self.data, ignore_errors=True)
        os.makedirs(self.data)
        self.results = {}
        self.timings = {}
        self.masters = {}
        self.started = time.monotonic()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def datafile(self, name):
        return os.path.join(self.data, name)

    def log(self, msg):
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", flush=True)

    def p(self, full, quick):
        return quick if self.quick else full


# Common daemon settings: nothing scheduled that the benchmark did not ask for
# (quick_check and ANALYZE start at a random moment within their interval).
QUIET = """
[health]
quick_check_interval = 0
[analyze]
interval = 0
"""


def master_db(ctx, label, mib):
    """The purged database of `mib` MiB, built once per run; every case works
    on its own copy."""
    if label not in ctx.masters:
        path = ctx.path(f"master-{label}.db")
        ctx.log(f"building the {label} database ({mib} MiB, older half purged)")
        info = lib.make_purged_db(path, mib)
        ctx.log(f"  {info['pages']} pages, {info['free']} free, {info['bytes'] / MiB:.0f} MiB in "
                f"{info['total_s']:.1f}s (insert {info['insert_s']:.1f}s, purge+WAL {info['purge_s']:.1f}s, "
                f"fsync {info['sync_s']:.1f}s)")
        ctx.masters[label] = info
        ctx.timings[f"setup {label} database"] = info["total_s"]
    return ctx.masters[label]


def overlapping(runs, t, end):
    """sqlvigil's runs (lib.lock_runs) that held the write lock and
    overlapped [t, end]."""
    return [r for r in runs if r["holds"] and r["start"] < end and r["end"] > t]


def classify_stalls(lats, steps, runs, t0, t1, threshold):
    """Statements that started during the reclaim (or 0.5 s after) and took
    longer than threshold, by the longest hold that overlapped them: a
    checkpoint's (RESTART/TRUNCATE slices, a shrink), or vacuum steps' (two
    or more, or one), or none that sqlvigil logged."""
    out = {"reset-checkpoint": 0, "several-steps": 0, "one-step": 0, "other": 0}
    for t, lat, _ in lats:
        if lat <= threshold or t < t0 or t > t1 + 0.5:
            continue
        end = t + lat
        over = [s for s in steps if s[0] - s[2] < end and s[0] > t]
        resets = [r for r in overlapping(runs, t, end) if r["event"] in ("checkpoint", "stopping")]
        if resets and max(r["lock_max"] for r in resets) >= max((s[2] for s in over), default=0):
            out["reset-checkpoint"] += 1
        elif len(over) >= 2:
            out["several-steps"] += 1
        elif over:
            out["one-step"] += 1
        else:
            out["other"] += 1
    return out


def top_stalls(lats, steps, runs, n=5):
    """The n longest statements, each with what overlapped it: vacuum steps
    (lock held [end - lock, end]) and sqlvigil's other runs that held the
    write lock (what, longest hold, holds)."""
    out = []
    for t, lat, ok in sorted(lats, key=lambda x: -x[1])[:n]:
        end = t + lat
        over = [lock for te, _, lock in steps if te - lock < end and te > t]
        ck = [(r["what"], r["lock_max"], r["holds"]) for r in overlapping(runs, t, end) if r["event"] != "vacuum"]
        out.append({"at": t, "latency": lat, "ok": ok, "steps": over, "checkpoints": ck})
    return out


# ---- B1 reclaim stall ----------------------------------------------------------

def b1_case(ctx, label, master, method, budget_ms=None):
    name = f"b1-{label}-{method}" + (f"{budget_ms}ms" if budget_ms else "")
    db = ctx.path(name + ".db")
    copy_s = lib.copy_db(master["path"], db)
    latfile = ctx.datafile(name + ".lat")
    baseline, tail = 1.0, 1.0
    res = {"method": method, "budget_ms": budget_ms, "copy_s": copy_s}
    w = lib.Writer(db, latfile, interval_us=3000, payload=100, autocheckpoint=0)
    d = None
    try:
        time.sleep(baseline)
        if method == "vacuum":
            # What the old service's optimize() did, from its one persistent
            # connection in WAL mode (its ANALYZE part is not timed here).
            con = sqlite3.connect(db, isolation_level=None, timeout=5.0)
            con.execute("PRAGMA busy_timeout=5000")
            con.execute("PRAGMA synchronous=normal")
            con.execute("PRAGMA wal_autocheckpoint=0")
            t0 = time.monotonic()
            try:
                con.execute("VACUUM")
                res["error"] = None
            except sqlite3.DatabaseError as e:
                res["error"] = f"VACUUM failed: {e}"
            t1 = time.monotonic()
            time.sleep(tail)
            w.stop()
            # The file only shrinks once the new pages are checkpointed.
            tc = time.monotonic()
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            res["checkpoint_after_s"] = time.monotonic() - tc
            con.close()
            res.update(start=t0, end=t1, steps=[], runs=[], checkpoints=[])
        else:
            d = lib.Sqlvigil(ctx.tmp, db, f"""
[vacuum]
interval = 1s
step_budget = {budget_ms}ms
{QUIET}""", name, debug=True, control=True)
            ts = lib.ThreadSampler(d.pid, "sqlvigil-db")
            limit = ctx.p(180, 60)
            try:
                d.wait_log(r"vacuum \(interval\) (freed|\w+ after freeing)", timeout=limit)
                unfinished = None
            except BenchError:
                unfinished = f"not finished after {limit} s"
            time.sleep(tail)
            w.stop()
            res["lock_holds"] = lib.holds_by_task(d.stats())
            rc, stop_s = d.stop()
            ts.stop()
            d.save_log(ctx.datafile(name + ".log"))
            lines = d.lines()
            steps, t0, t1, result = lib.vacuum_events(lines)
            if t1 is None:  # unfinished, or cancelled by the stop
                t1 = steps[-1][0] if steps else time.monotonic()
            runs = lib.lock_runs(d.entries())
            res.update(start=t0, end=t1, steps=steps, runs=runs, checkpoints=lib.checkpoint_events(lines),
                       result=result, exit=rc, stop_s=stop_s, journal=d.journal is not None)
            res["overruns"] = lib.long_holds(steps, ts, budget_ms / 1000, asked=lib.step_requests(lines))
            stop_run = next((r for r in runs if r["event"] == "stopping"), None)
            res["stop_hold"] = (stop_run["lock_max"], stop_run["holds"]) if stop_run else None
            res["error"] = unfinished or (None if " freed " in result else result.split("sqlvigil: ", 1)[-1])
    finally:
        w.kill()
        if d:
            d.kill()
    lats = w.latencies()
    s = w.summary
    res["writer"] = s
    res["reclaim_s"] = res["end"] - res["start"]
    res["during"] = lib.latency_stats(lats, res["start"], res["end"])
    res["before"] = lib.latency_stats(lats, None, res["start"])
    res["all"] = lib.latency_stats(lats)
    res["top"] = top_stalls(lats, res["steps"], res["runs"])
    if budget_ms:
        res["stall_causes"] = classify_stalls(lats, res["steps"], res["runs"], res["start"], res["end"],
                                              1.5 * budget_ms / 1000)
        # sqlvigil's longest single holds of the write lock in this run, by
        # what took them (journal: SQLVIGIL_LOCK_USEC of each run).
        res["longest_runs"] = sorted(({k: r[k] for k in ("what", "lock_max", "holds", "lock_total", "duration",
                                                          "message")} for r in res["runs"] if r["holds"]),
                                     key=lambda r: -r["lock_max"])[:5]
        res["degraded"] = [l.split("sqlvigil: ", 1)[-1] for _, l in lines if "health: degraded" in l][:2]
    after = lib.db_stats(db)
    res["pages_after"], res["free_after"] = after["pages"], after["free"]
    res["freed"] = master["free"] - after["free"]
    res["quick_check"] = lib.quick_check(db)
    rows = lib.rows_by_writer(db)
    res["rows_ok"] = rows is not None and rows.get(1, (0, 0)) == (s["succeeded"], s["succeeded"])
    if res["steps"]:
        locks = sorted(lk for _, _, lk in res["steps"])
        res["step_lock"] = {"n": len(locks), "p50": lib.pct(locks, 0.5), "max": locks[-1],
                            "over_budget": sum(1 for lk in locks if lk > budget_ms / 1000)}
    # Timeline for the picture: seconds since the reclaim started, ms.
    with open(ctx.datafile(name + ".plot"), "w") as f:
        for t, lat, ok in lats:
            f.write(f"{t - res['start']:.4f} {lat * 1000:.3f} {int(ok)}\n")
    res["plot"] = ctx.datafile(name + ".plot")
    lib.remove_db(db)
    fmt = lambda v: "-" if v is None else f"{v * 1000:.1f}"  # noqa: E731
    ctx.log(f"  {name}: reclaim {res['reclaim_s']:.2f}s, freed {res['freed']}; writer during: p50 "
            f"{fmt(res['during']['p50'])} p99 {fmt(res['during']['p99'])} max {fmt(res['all']['max'])} ms, "
            f"{s['failed']} failed; quick_check {res['quick_check'][0]}"
            + (f"; {res['error']}" if res["error"] else ""))
    return res


def b1(ctx):
    sizes = ctx.p([("256M", 256), ("1G", 1024)], [("32M", 32), ("64M", 64)])
    if ctx.args.b1_sizes:
        sizes = [(f"{m}M" if m < 1024 else f"{m // 1024}G", m) for m in map(int, ctx.args.b1_sizes.split(","))]
    other = ctx.args.other_budget
    out = {"sizes": [], "other_budget": other}
    for label, mib in sizes:
        master = master_db(ctx, label, mib)
        ctx.log(f"B1 {label}: full VACUUM vs budgeted incremental vacuum (20 ms, {other} ms), writer every 3 ms")
        runs = [b1_case(ctx, label, master, "vacuum"),
                b1_case(ctx, label, master, "sqlvigil", 20),
                b1_case(ctx, label, master, "sqlvigil", other)]
        out["sizes"].append({"label": label, "mib": mib, "master": master, "runs": runs})
    return out


# ---- B2 WAL bound ---------------------------------------------------------------

def wal_sampler(db, stop, samples, period=0.02):
    while not stop.is_set():
        samples.append((time.monotonic(), lib.file_size(db + "-wal")))
        time.sleep(period)


def b2_case(ctx, name, daemon, app_autocheckpoint, duration, starve=False, conf=""):
    """Two writers (500 commits/s each, 500-byte rows) and two readers that
    hold a read transaction 20 ms of every 50 ms; the -wal file's size is
    sampled every 20 ms. starve: one reader that never leaves instead, and
    the time until sqlvigil reports it."""
    db = ctx.path(name + ".db")
    lib.make_small_db(db, 4)
    d, writers, readers = None, [], []
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=wal_sampler, args=(db, stop, samples), daemon=True)
    res = {"name": name, "daemon": daemon, "app_autocheckpoint": app_autocheckpoint, "conf": conf.strip()}
    try:
        if daemon:
            d = lib.Sqlvigil(ctx.tmp, db, conf + "[vacuum]\ninterval = 0\n" + QUIET, name)
        t0 = time.monotonic()
        sampler.start()
        for i in range(2):
            writers.append(lib.Writer(db, ctx.datafile(f"{name}-w{i + 1}.lat"), wid=i + 1, interval_us=2000,
                                      payload=500, autocheckpoint=app_autocheckpoint))
        if starve:
            time.sleep(1.0)
            reader_at = time.monotonic()
            readers.append(lib.Reader(db, -1, 0))
            t, line = d.wait_log(r"checkpoints starved: \d+ in a row", timeout=duration, after=reader_at)
            res["starved_after_s"] = t - reader_at
            res["starved_line"] = line.split("sqlvigil: ", 1)[-1]
            res["reader_named"] = f"pid {readers[0].pid} (" in line
            time.sleep(0.5)
        else:
            for _ in range(2):
                readers.append(lib.Reader(db, 20, 30))
            time.sleep(duration)
        t_end = time.monotonic()
        res["final_bytes"] = lib.file_size(db + "-wal")
        for w in writers:
            w.stop()
        for r in readers:
            r.stop()
        stop.set()
        sampler.join()
        if d:
            res["exit"], res["stop_s"] = d.stop()
            d.save_log(ctx.datafile(name + ".log"))
            lines = [l for _, l in d.lines()]
            res["checkpoints"] = {m: sum(1 for l in lines if f"checkpoint ({m})" in l)
                                  for m in ("interval", "wal-pages", "wal-restart", "wal-size", "wal-shrink")}
            res["checkpoints_busy"] = sum(1 for l in lines if "checkpoint (" in l and "(busy" in l)
            # From the journal: how each RESTART/TRUNCATE ended (ok, busy, incomplete) and its holds.
            ck = [f for _, f in d.entries("checkpoint")]
            res["reset_results"] = {}
            for f in ck:
                if f.get("SQLVIGIL_CHECKPOINT_MODE") in ("restart", "truncate"):
                    k = f.get("SQLVIGIL_RESULT", "?")
                    res["reset_results"][k] = res["reset_results"].get(k, 0) + 1
            res["reset_lock_max_s"] = max((lib.entry_usec(f, "SQLVIGIL_LOCK_USEC") / 1e6 for f in ck), default=None)
            res["restart_frames_max"] = max((lib.entry_usec(f, "SQLVIGIL_WAL_FRAMES") for f in ck
                                             if f.get("SQLVIGIL_CHECKPOINT_MODE") == "restart"), default=None)
            if not starve:
                res["false_starvation"] = next((l.split("sqlvigil: ", 1)[-1] for l in lines
                                                if "checkpoints starved" in l), None)
            res["resets"] = sum(1 for l in lines if "checkpoint (wal-restart)" in l or "checkpoint (wal-size)" in l)
            res["resets_busy"] = sum(1 for l in lines if ("checkpoint (wal-restart)" in l or
                                                          "checkpoint (wal-size)" in l) and "(busy" in l)
        res["after_close_bytes"] = lib.file_size(db + "-wal")
    finally:
        stop.set()
        for p in writers + readers:
            p.kill()
        if d:
            d.kill()
    res["seconds"] = t_end - t0
    res["high_water"] = max((s for t, s in samples if t <= t_end), default=0)
    res["writes"] = sum(w.summary["succeeded"] for w in writers)
    res["failed"] = sum(w.summary["failed"] for w in writers)
    lats = sorted(lat for w in writers for _, lat, _ in w.latencies())
    res["p99"], res["max"] = lib.pct(lats, 0.99), lats[-1] if lats else None
    res["quick_check"] = lib.quick_check(db)
    with open(ctx.datafile(name + ".plot"), "w") as f:
        for t, size in samples:
            if t <= t_end:  # not the moment the last connection closes and the WAL goes
                f.write(f"{t - t0:.3f} {size / MiB:.3f}\n")
    res["plot"] = ctx.datafile(name + ".plot")
    lib.remove_db(db)
    ctx.log(f"  {name}: WAL high-water {res['high_water'] / MiB:.1f} MiB, at the end {res['final_bytes'] / MiB:.1f}"
            f" MiB; {res['writes']} writes, {res['failed']} failed"
            + (f"; starvation reported after {res['starved_after_s']:.2f}s" if starve else ""))
    return res


def b2(ctx):
    dur = ctx.p(10, 3)
    ctx.log(f"B2: WAL size under 1000 commits/s with short readers, {dur}s each")
    return {"duration": dur, "cases": [
        b2_case(ctx, "b2-autocheckpoint", False, None, dur),
        b2_case(ctx, "b2-sqlvigil", True, 0, dur),
        b2_case(ctx, "b2-both", True, None, dur),
        b2_case(ctx, "b2-sqlvigil-500", True, 0, dur, conf="[checkpoint]\nmin_wal_pages = 500\n"),
        b2_case(ctx, "b2-starved", True, 0, ctx.p(60, 30), starve=True),
    ]}


# ---- B3 health check cost ----------------------------------------------------------

CHECK_RE = re.compile(r"health check: files (\d+) us, probe (\d+) us")


def b3_case(ctx, label, db):
    d = lib.Sqlvigil(ctx.tmp, db, """
[health]
interval = 50ms
quick_check_interval = 0
[vacuum]
interval = 0
[analyze]
interval = 0
""", f"b3-{label}", control=True, debug=True)
    try:
        time.sleep(ctx.p(10, 2))  # B3's "seconds"
        stats = d.stats()
        if not stats.get("ok"):
            return {"pending": f"stats failed: {stats.get('error')}"}
        h = stats.get("health", {})
        if "check_usec_p50" not in h:
            return {"pending": "stats has no health.check_usec_p50"}
        res = {"p50_us": h["check_usec_p50"], "p99_us": h["check_usec_p99"], "checks": h.get("checks")}
        # Each check's two parts, from the debug lines (SQLVIGIL_DEBUG=1).
        parts = [tuple(map(int, m.groups())) for m in (CHECK_RE.search(l) for _, l in d.lines()) if m]
        if parts:
            res["files_p50_us"] = lib.median([f for f, _ in parts])
            res["probe_p50_us"] = lib.median([p for _, p in parts])
            res["parts_n"] = len(parts)
        return res
    except (OSError, ValueError) as e:
        return {"pending": f"control socket did not answer: {e}"}
    finally:
        d.stop()
        d.save_log(ctx.datafile(f"b3-{label}.log"))


def b3(ctx):
    small = ctx.path("b3-1M.db")
    lib.make_small_db(small, 1)
    big_label = ctx.p("1G", "64M")
    big = master_db(ctx, big_label, ctx.p(1024, 64))["path"]
    ctx.log(f"B3: health check cost at 1M and {big_label} (control socket stats)")
    res = {"big_label": big_label, "seconds": ctx.p(10, 2),
           "1M": b3_case(ctx, "1M", small), "big": b3_case(ctx, big_label, big)}
    # The same work with sqlvigil's own functions (tests/bench/probe-loop.c):
    # back to back, and 50 ms asleep between checks as in the daemon above.
    loop = os.path.join(ctx.build, "tests", "sqlvigil-probe-loop")
    for k, path, n, gap in (("loop", small, ctx.p(20000, 2000), 0), ("loop_gap", small, ctx.p(100, 20), 50000),
                            ("loop", big, ctx.p(20000, 2000), 0)):
        key = "1M" if path == small else "big"
        if os.path.exists(loop):
            r = subprocess.run([loop, path, str(n), str(gap)], capture_output=True, text=True, timeout=300)
            res[key][k] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()}
    lib.remove_db(small)
    for k in ("1M", "big"):
        ctx.log(f"  {k}: {res[k]}")
    return res


# ---- B4 footprint ------------------------------------------------------------------

def mem(pid):
    s = lib.proc_status(pid)
    return {k: s.get(k, 0) for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")} | {
        "Threads": int(s.get("Threads", 0))}


def b4(ctx):
    res = {}
    # Memory: start, then an hour's worth of maintenance in fast motion.
    label, mib = ctx.p(("256M", 256), ("32M", 32))
    master = master_db(ctx, label, mib)
    db = ctx.path("b4.db")
    lib.copy_db(master["path"], db)
    dur = ctx.p(10, 4)
    ctx.log(f"B4: memory after start and after {dur}s of accelerated maintenance on {label}, with a writer")
    d = lib.Sqlvigil(ctx.tmp, db, """
[pragmas]
cache_size = -2000
[health]
interval = 25ms
quick_check_interval = 5s
[checkpoint]
interval = 250ms
[vacuum]
interval = 3s
[analyze]
interval = 5s
""", "b4")
    w = None
    try:
        time.sleep(0.3)
        res["start"] = mem(d.pid)
        w = lib.Writer(db, ctx.datafile("b4.lat"), interval_us=3000, payload=100, autocheckpoint=0)
        t0 = time.monotonic()
        time.sleep(dur)
        w.stop()
        res["after"] = mem(d.pid)
        res["cycles_s"] = time.monotonic() - t0
        lines = [l for _, l in d.lines()]
        res["runs"] = {k: sum(1 for l in lines if pat in l) for k, pat in (
            ("checkpoint", "checkpoint ("), ("vacuum", "vacuum ("), ("analyze", "analyze ("),
            ("quick_check", "quick_check: ok"))}
        res["health_checks"] = int(res["cycles_s"] / 0.025)
        res["cache_bytes"] = 2000 * 1024
        res["exit"], _ = d.stop()
        d.save_log(ctx.datafile("b4.log"))
    finally:
        if w:
            w.kill()
        d.kill()
    lib.remove_db(db)

    # A bare SQLite process for comparison: the sqlite3 shell holding a
    # small database open.
    shell_db = ctx.path("b4-shell.db")
    lib.make_small_db(shell_db, 1)
    sh = subprocess.Popen(["sqlite3", shell_db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sh.stdin.write("SELECT count(*) FROM events;\n")
    sh.stdin.flush()
    sh.stdout.readline()
    res["sqlite3_shell"] = mem(sh.pid)
    sh.stdin.close()
    sh.wait()

    lib.remove_db(shell_db)

    # Idle CPU and wake-ups: the installed unit's settings (WatchdogSec=30s,
    # so health checks every 15 s) and every other default. The daemon was
    # started at the beginning of the run (idle_start()), so that its first
    # quick_check, which comes within SCHEDULER_FIRST_CHECK (2 min) of the
    # start, is behind it: the window shows the steady state.
    idle = ctx.p(60, 10)
    d, small = getattr(ctx, "idle_daemon", None) or idle_start(ctx)
    settle = ctx.p(IDLE_SETTLE_S, 1.0) - (time.monotonic() - d.ready_at)
    ctx.log(f"B4: idle CPU and wake-ups over {idle}s (defaults, WATCHDOG_USEC=30s)"
            + (f", after {settle:.0f} s more of settling" if settle > 0 else ""))
    if settle > 0:
        time.sleep(settle)
    try:
        res["idle_since_ready_s"] = time.monotonic() - d.ready_at
        c0, th0, t0 = lib.proc_cpu(d.pid), lib.proc_threads(d.pid), time.monotonic()
        time.sleep(idle)
        c1, th1, t1 = lib.proc_cpu(d.pid), lib.proc_threads(d.pid), time.monotonic()
        res["idle_mem"] = mem(d.pid)
        res["watchdog_pings"] = len(d.notify.times("WATCHDOG", "1", after=t0, before=t1))
        d.stop()
        res["idle_log"] = [l.split("sqlvigil: ", 1)[-1] for t, l in d.lines() if t0 <= t <= t1]
        res["before_log"] = [(t - d.ready_at, l.split("sqlvigil: ", 1)[-1]) for t, l in d.lines()
                             if d.ready_at < t < t0 and "quick_check" in l]
    finally:
        d.kill()
    lib.remove_db(small)
    el = t1 - t0
    threads = []
    for tid, a in sorted(th0.items(), key=lambda x: int(x[0])):
        b = th1.get(tid)
        if not b:
            continue
        threads.append({"name": a["name"], "main": tid == str(d.pid), "wakeups": b["voluntary"] - a["voluntary"],
                        "involuntary": b["involuntary"] - a["involuntary"], "cpu_s": (b["run_ns"] - a["run_ns"]) / 1e9,
                        "slices": b["slices"] - a["slices"]})
    res["idle"] = {"seconds": el, "cpu_s": (c1["run_ns"] - c0["run_ns"]) / 1e9,
                   "cpu_ticks_s": c1["cpu_s"] - c0["cpu_s"], "slices": c1["slices"] - c0["slices"],
                   "switches": c1["switches"] - c0["switches"], "threads": c1["threads"], "per_thread": threads,
                   "wakeups": sum(t["wakeups"] for t in threads)}
    res["idle"]["cpu_pct"] = 100 * res["idle"]["cpu_s"] / el
    res["idle"]["wakeups_per_s"] = res["idle"]["wakeups"] / el
    res["idle"]["wakeups_per_min"] = res["idle"]["wakeups"] * 60 / el
    ctx.log(f"  start RssAnon {res['start']['RssAnon'] / 1024:.0f} KiB, after {res['after']['RssAnon'] / 1024:.0f}"
            f" KiB (RssFile {res['after']['RssFile'] / 1024:.0f} KiB); idle CPU {res['idle']['cpu_pct']:.4f}%, "
            f"{res['idle']['wakeups_per_s']:.2f} wake-ups/s: "
            + ", ".join(f"{t['name']} {t['wakeups']}" for t in threads))
    return res


IDLE_SETTLE_S = 125.0


def idle_start(ctx):
    """B4's idle daemon: defaults, the unit's watchdog, a 1 MiB database."""
    small = ctx.path("b4-idle.db")
    lib.make_small_db(small, 1)
    return lib.Sqlvigil(ctx.tmp, small, "", "b4-idle", watchdog_usec=30_000_000), small


# ---- B5 startup --------------------------------------------------------------------

def spawn_time(argv, env=None, notify=None, stderr_path=os.devnull):
    """Spawns argv with posix_spawn (the least the harness can add) and
    returns the seconds until it exits, or, with notify (a bound datagram
    socket), until READY=1 arrives on it (then returns (seconds, pid))."""
    fa = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
          (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
          (os.POSIX_SPAWN_OPEN, 2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)]
    t0 = time.monotonic()
    pid = os.posix_spawn(argv[0], argv, env or os.environ, file_actions=fa)
    if notify is None:
        os.waitpid(pid, 0)
        return time.monotonic() - t0
    while True:
        data = notify.recv(4096)
        if b"READY=1" in data.split(b"\n"):
            return time.monotonic() - t0, pid


def b5(ctx):
    label = ctx.p("1G", "64M")
    master = master_db(ctx, label, ctx.p(1024, 64))
    n = ctx.p(20, 5)
    ctx.log(f"B5: exec to READY=1 on the {label} database, {n} starts")
    conf = ctx.path("b5.conf")
    with open(conf, "w") as f:
        f.write(f"[database]\npath = {master['path']}\n[vacuum]\ninterval = 0\n[analyze]\ninterval = 0\n"
                "[health]\nquick_check_interval = 0\n")
    sockpath = ctx.path("b5-notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sockpath)
    notify.settimeout(30)
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}
    env["NOTIFY_SOCKET"] = sockpath
    errlog = ctx.datafile("b5.log")
    runs = []
    try:
        for _ in range(n):
            took, pid = spawn_time([ctx.sqlvigil, "--config", conf], env=env, notify=notify, stderr_path=errlog)
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            runs.append(took)
            notify.setblocking(False)
            while True:  # drain STOPPING=1 and friends
                try:
                    notify.recv(4096)
                except BlockingIOError:
                    break
            notify.settimeout(30)
    finally:
        notify.close()
    with open(errlog) as f:
        own = [l.split("ready in ", 1)[1].split(":")[0] for l in f if "ready in " in l]
    floors = {
        "true": [spawn_time(["/bin/true"]) for _ in range(n)],
        "version": [spawn_time([ctx.sqlvigil, "--version"]) for _ in range(n)],
        "shell": [spawn_time(["/usr/bin/sqlite3", master["path"], "PRAGMA journal_mode; SELECT count(*) FROM sqlite_schema"])
                  for _ in range(n)] if os.path.exists("/usr/bin/sqlite3") else [0],
    }
    # What linking costs at exec on this machine: an empty main() linked
    # with the daemon's libraries, and with SQLite's alone.
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        src = ctx.path("empty.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        for name, libs in (("empty", []), ("empty_sqlite", ["-lsqlite3"]),
                           ("empty_sqlite_systemd_inih", ["-lsqlite3", "-lsystemd", "-linih"])):
            exe = ctx.path(name)
            if lib.run_cmd([cc, "-O2", src, "-o", exe, "-Wl,--no-as-needed"] + libs).returncode == 0:
                floors[name] = [spawn_time([exe]) for _ in range(n)]
    v = sorted(runs)
    res = {"label": label, "bytes": master["bytes"], "n": n, "median": lib.median(v), "min": v[0], "max": v[-1],
           "own": own, "floors": {k: lib.median(x) for k, x in floors.items()},
           "libs": [l.split()[0] for l in lib.run_cmd(["ldd", ctx.sqlvigil]).stdout.splitlines() if "=>" in l]}
    ctx.log(f"  exec to READY: median {res['median'] * 1000:.1f} ms (min {res['min'] * 1000:.1f}, max "
            f"{res['max'] * 1000:.1f}); sqlvigil's own 'ready in' {own[len(own) // 2] if own else '?'}; spawn of "
            f"/bin/true {res['floors']['true'] * 1000:.1f} ms, sqlvigil --version "
            f"{res['floors']['version'] * 1000:.1f} ms")
    return res


# ---- B6 stop checkpoint ------------------------------------------------------------

HOLDER = r"""
import sqlite3, sys
db, mib = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db, isolation_level=None)
con.execute("PRAGMA wal_autocheckpoint=0")
con.execute("PRAGMA synchronous=normal")
if mib:
    rows = mib * 1024 * 1024 // 4096
    for i in range(0, rows, 1000):
        con.execute("BEGIN")
        con.execute("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000) "
                    "INSERT INTO events(ts, kind, payload) SELECT i, 0, randomblob(3900) FROM s")
        con.execute("COMMIT")
n = con.execute("SELECT count(*) FROM events").fetchone()[0]
print(n, flush=True)
sys.stdin.read()
con.close()
"""


class Holder:
    """A process that keeps a connection to the database open (no
    transaction), so the -wal file stays as it is until someone checkpoints
    it; with mib > 0 it first writes that much into the WAL."""

    def __init__(self, db, mib):
        self.p = subprocess.Popen([sys.executable, "-c", HOLDER, db, str(mib)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.strip():
            raise BenchError("WAL holder did not start")

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=120)


def b6_round(ctx, mib, n, daemon_first):
    a, b = ctx.path(f"b6-daemon-{n}.db"), ctx.path(f"b6-shell-{n}.db")
    lib.make_small_db(a, 1)
    t0 = time.monotonic()
    ha = Holder(a, mib)
    hb = None
    res = {"daemon_first": daemon_first}
    try:
        res["wal_bytes"] = lib.file_size(a + "-wal")
        lib.remove_db(b)
        shutil.copyfile(a, b)
        shutil.copyfile(a + "-wal", b + "-wal")
        for f in (a, a + "-wal", b, b + "-wal"):
            lib.sync_file(f)
        hb = Holder(b, 0)  # recovers the copy's WAL index before anything is timed
        res["setup_s"] = time.monotonic() - t0

        def shell():
            t1 = time.monotonic()
            r = lib.run_cmd(["sqlite3", "-cmd", ".timer on", b], input="PRAGMA wal_checkpoint(TRUNCATE);\n")
            res["shell_s"] = time.monotonic() - t1
            res["shell_output"] = r.stdout.strip()
            for line in r.stdout.splitlines():
                if line.startswith("Run Time: real"):
                    res["shell_stmt_s"] = float(line.split()[3])
            res["shell_wal_after"] = lib.file_size(b + "-wal")

        def daemon():
            d = lib.Sqlvigil(ctx.tmp, a, """
[health]
max_wal_size = 2G
quick_check_interval = 0
[checkpoint]
interval = 0
min_wal_pages = 4294967295
truncate_wal_size = 0
stop_mode = truncate
stop_timeout = 60s
[vacuum]
interval = 0
[analyze]
interval = 0
""", f"b6-{n}")
            try:
                time.sleep(0.3)
                res["exit"], res["daemon_s"] = d.stop(timeout=120)
                d.save_log(ctx.datafile(f"b6-{n}.log"))
                began = d.find_log(r": stopping; final truncate checkpoint")
                done = d.find_log(r"final truncate checkpoint done in")
                res["daemon_line"] = done[1].split("sqlvigil: ", 1)[-1] if done else None
                if began and done:  # the log's own figure is rounded to whole seconds above 1 s
                    res["daemon_ckpt_s"] = done[0] - began[0]
                e = [f for _, f in d.entries("stopping")]
                if e:
                    res["stop_entry"] = {k: lib.entry_usec(e[-1], "SQLVIGIL_" + k) for k in (
                        "DURATION_USEC", "LOCK_USEC", "LOCK_HOLDS", "LOCK_TOTAL_USEC")}
            finally:
                d.kill()
            res["daemon_wal_after"] = lib.file_size(a + "-wal")

        for step in ((daemon, shell) if daemon_first else (shell, daemon)):
            step()
    finally:
        ha.close()
        if hb:
            hb.close()
    for p in (a, b):
        lib.remove_db(p)
    res["ratio"] = res["daemon_s"] / res["shell_s"]
    ctx.log(f"  round {n} ({'sqlvigil' if daemon_first else 'shell'} first): sqlvigil SIGTERM to exit "
            f"{res['daemon_s'] * 1000:.0f} ms (checkpoint {res.get('daemon_ckpt_s', 0) * 1000:.0f} ms); sqlite3 shell "
            f"{res['shell_s'] * 1000:.0f} ms (statement {res.get('shell_stmt_s', 0) * 1000:.0f} ms); setup "
            f"{res['setup_s']:.1f}s")
    return res


def b6(ctx):
    mib = ctx.p(256, 32)
    ctx.log(f"B6: stop checkpoint of a {mib} MiB WAL vs sqlite3 'PRAGMA wal_checkpoint(TRUNCATE)' on a copy")
    # Three rounds on fresh pairs, alternating which goes first; the medians
    # (one fsync-heavy round can be slow on a shared disk).
    rounds = [b6_round(ctx, mib, i + 1, i % 2 == 1) for i in range(3)]
    res = {"wal_mib": mib, "rounds": rounds, "wal_bytes": rounds[0]["wal_bytes"]}
    for k in ("daemon_s", "shell_s", "daemon_ckpt_s", "shell_stmt_s", "ratio"):
        res[k] = lib.median([r.get(k, 0) for r in rounds])
    return res


# ---- B7 concurrent writes ----------------------------------------------------------

def b7_case(ctx, name, master, method, count):
    db = ctx.path(name + ".db")
    lib.copy_db(master["path"], db)
    d, writers, res = None, [], {"method": method}
    try:
        if method == "sqlvigil":
            d = lib.Sqlvigil(ctx.tmp, db, """
[health]
interval = 1s
quick_check_interval = 4s
[checkpoint]
interval = 2s
[vacuum]
interval = 1s
[analyze]
interval = 3s
""", name, debug=True, control=True)
        t0 = time.monotonic()
        for i in range(8):
            writers.append(lib.Writer(db, ctx.datafile(f"{name}-w{i + 1}.lat"), wid=i + 1, interval_us=1000,
                                      payload=100, autocheckpoint=None, count=count))
        if method == "optimize":
            # The old service's optimize(): VACUUM then ANALYZE, one second in.
            time.sleep(1.0)
            con = sqlite3.connect(db, isolation_level=None, timeout=5.0)
            con.execute("PRAGMA busy_timeout=5000")
            tv = time.monotonic()
            try:
                con.execute("VACUUM")
                con.execute("ANALYZE")
                res["optimize_error"] = None
            except sqlite3.DatabaseError as e:
                res["optimize_error"] = str(e)
            res["optimize_s"] = time.monotonic() - tv
            con.close()
        for w in writers:
            w.wait(timeout=600)
        t1 = time.monotonic()
        if d:
            lines = d.lines()
            res["holds"] = lib.holds_by_task(d.stats())
            res["exit"], _ = d.stop()
            d.save_log(ctx.datafile(name + ".log"))
            win = [l for t, l in lines if t0 <= t <= t1]
            res["maintenance"] = {
                "vacuum_steps": sum(1 for l in win if "vacuum step" in l),
                "vacuum_runs": sum(1 for l in win if "vacuum (interval)" in l),
                "checkpoints": sum(1 for l in win if "checkpoint (" in l),
                "analyze": sum(1 for l in win if "analyze (interval)" in l),
                "quick_check": sum(1 for l in win if "quick_check:" in l and "starting" not in l),
            }
            res["errors"] = [l.split("sqlvigil: ", 1)[-1] for _, l in lines if "error" in l][:3]
            res["locks"] = lib.longest_locks(lines)
    finally:
        for w in writers:
            w.kill()
        if d:
            d.kill()
    res["seconds"] = t1 - t0
    res["attempted"] = sum(w.summary["attempted"] for w in writers)
    res["succeeded"] = sum(w.summary["succeeded"] for w in writers)
    res["failed"] = sum(w.summary["failed"] for w in writers)
    res["first_errors"] = sorted({w.summary["first_error"] for w in writers if w.summary["first_error"]})
    lats = sorted(lat for w in writers for _, lat, _ in w.latencies())
    res["p99"], res["max"] = lib.pct(lats, 0.99), lats[-1]
    rows = lib.rows_by_writer(db)
    res["rows_ok"] = rows is not None and all(
        rows.get(w.summary["writer"], (0, 0)) == (w.summary["succeeded"], w.summary["succeeded"])
        for w in writers)
    res["quick_check"] = lib.quick_check(db)
    lib.remove_db(db)
    ctx.log(f"  {name}: {res['succeeded']}/{res['attempted']} writes succeeded in {res['seconds']:.1f}s, "
            f"max latency {res['max'] * 1000:.0f} ms; rows {'all there' if res['rows_ok'] else 'MISSING'}; "
            f"quick_check {res['quick_check'][0]}" + (f"; maintenance {res['maintenance']}" if d else ""))
    return res


def b7(ctx):
    label, mib = ctx.p(("256M", 256), ("32M", 32))
    master = master_db(ctx, label, mib)
    count = ctx.p(10000, 1000)
    ctx.log(f"B7: 8 writers x {count} inserts on the {label} database during maintenance")
    return {"label": label, "count": count, "cases": [
        b7_case(ctx, "b7-sqlvigil", master, "sqlvigil", count),
        b7_case(ctx, "b7-optimize", master, "optimize", count),
    ]}


# ---- driver ---------------------------------------------------------------------

def sh(args):
    try:
        return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_snapshot():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime
    return time.monotonic(), sum(v), idle, ours


def load_between(a, b):
    el = b[0] - a[0]
    total = b[1] - a[1]
    return {"seconds": el, "busy_pct": 100 * (total - (b[2] - a[2])) / max(total, 1),
            "ours_pct": 100 * (b[3] - a[3]) / max(el * (os.cpu_count() or 1), 1e-9)}


def machine(ctx, command):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    src, fstype, opts = (sh(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", ctx.tmp]).split() + ["?"] * 3)[:3]
    dev = os.path.basename(src)
    rot = sh(["cat", f"/sys/block/{dev}/queue/rotational"])
    model = sh(["cat", f"/sys/block/{dev}/device/model"]) or ("virtio disk" if dev.startswith("vd") else "?")
    virt = sh(["systemd-detect-virt"]) or "?"
    commit = sh(["git", "-C", SOURCE, "describe", "--always", "--dirty"])
    buildtype = "?"
    try:
        with open(os.path.join(ctx.build, "meson-info", "intro-buildoptions.json")) as f:
            buildtype = next(o["value"] for o in json.load(f) if o["name"] == "buildtype")
    except (OSError, ValueError, StopIteration):
        pass
    rows = [
        ("date", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())),
        ("command", f"`{command}`" + (" (quick mode)" if ctx.quick else "")),
        ("CPUs (`nproc`)", f"{os.cpu_count()} × {cpu}"),
        ("memory", f"{mem // 1024} MiB"),
        ("kernel", f"{platform.system()} {platform.release()} ({virt} virtualisation)"),
        ("temporary directory", f"{os.path.dirname(ctx.tmp)}: {fstype} on {src} ({model}, "
                                f"{'rotational' if rot == '1' else 'non-rotational' if rot == '0' else '?'} as the "
                                f"kernel reports it), mounted {opts}"),
        ("SQLite", f"{sqlite3.sqlite_version} (the system library: sqlvigil, sqlvigil-loadgen, Python and the "
                   f"sqlite3 shell all use it)"),
        ("sqlvigil", f"`{sh([ctx.sqlvigil, '--version'])}`, {ctx.sqlvigil}, git {commit}, buildtype {buildtype}"),
        ("gnuplot", sh(["gnuplot", "--version"]) or "not installed"),
        ("load average at start", open("/proc/loadavg").read().split(" ", 3)[:3].__str__()),
    ]
    return rows



BENCHES = {"B1": b1, "B2": b2, "B3": b3, "B4": b4, "B5": b5, "B6": b6, "B7": b7,
           "B8": locks.b8, "B9": lambda ctx: locks.b9(ctx, master_db), "B10": backups.b10, "B11": backups.b11,
           "B12": faults.b12}


def report_only(args):
    class Saved:
        pass
    ctx = Saved()
    ctx.quick, ctx.build = args.quick, os.path.abspath(args.build)
    data = os.path.join(ctx.build, "bench-data" + ("-quick" if args.quick else ""))
    with open(os.path.join(data, "results.json")) as f:
        saved = json.load(f)
    ctx.results, ctx.timings, ctx.meta, ctx.load = saved["results"], saved["timings"], saved["meta"], saved["load"]
    out = args.out or (os.path.join(SOURCE, "docs") if not args.quick else os.path.join(ctx.build, "bench-quick"))
    os.makedirs(out, exist_ok=True)
    report.write(ctx, out, saved["only"])
    print(f"report: {os.path.join(out, 'benchmarks.md')}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="meson build directory (default: build)")
    ap.add_argument("--quick", action="store_true", help="small databases, short runs")
    ap.add_argument("--only", help="comma-separated subset, e.g. B1,B6")
    ap.add_argument("--out", help="where benchmarks.md and the PNGs go (default: docs/, or BUILD/bench-quick/)")
    ap.add_argument("--sqlvigil", help="benchmark this sqlvigil binary instead of BUILD/src/sqlvigil")
    ap.add_argument("--sqlvigilctl", help="the sqlvigilctl beside --sqlvigil (default: its directory's)")
    ap.add_argument("--other-budget", type=int, default=5, help="the second step_budget of B1, ms (default 5)")
    ap.add_argument("--b1-sizes", help="B1's database sizes in MiB, e.g. 256,1024 (default: 256,1024; quick 32,64)")
    ap.add_argument("--command", help=argparse.SUPPRESS)
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the page from the last run's BUILD/bench-data*/results.json, measuring nothing")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    if args.report_only:
        return report_only(args)
    ctx = Ctx(args)
    out = args.out or (os.path.join(SOURCE, "docs") if not args.quick else os.path.join(ctx.build, "bench-quick"))
    os.makedirs(out, exist_ok=True)
    only = [b.strip().upper() for b in args.only.split(",")] if args.only else list(BENCHES)
    failed = []
    try:
        lib.setup_binaries(ctx.sqlvigil, ctx.loadgen, ctx.sqlvigilctl)
        command = args.command or "tests/bench/run.py " + " ".join(sys.argv[1:])
        ctx.meta = {"rows": machine(ctx, command), "journal": lib.journal_available(ctx.tmp)}
        ctx.load = {}
        ctx.log(f"sqlvigil {ctx.sqlvigil}; temporary files in {ctx.tmp}; raw data in {ctx.data}")
        if "B4" in only and not ctx.quick:
            # B4 measures it idle two minutes from now (see b4()); nothing
            # else uses its database meanwhile.
            ctx.idle_daemon = idle_start(ctx)
        for b in only:
            t0 = time.monotonic()
            snap = cpu_snapshot()
            try:
                ctx.results[b] = BENCHES[b](ctx)
            except Exception as e:  # report what ran, and why this one did not
                traceback.print_exc()
                ctx.results[b] = {"error": f"{type(e).__name__}: {e}"[:2000]}
                failed.append(b)
            ctx.timings[b] = time.monotonic() - t0
            ctx.load[b] = load_between(snap, cpu_snapshot())
        ctx.timings["total"] = time.monotonic() - ctx.started
        ctx.meta["rows"].append(("load average at the end", str(open("/proc/loadavg").read().split(" ", 3)[:3])))
        ctx.meta["rows"].append(("total time", f"{ctx.timings['total']:.0f} s"))
        with open(os.path.join(ctx.data, "results.json"), "w") as f:
            json.dump({"results": ctx.results, "timings": ctx.timings, "meta": ctx.meta, "load": ctx.load,
                       "only": only}, f, indent=1, default=str)
        report.write(ctx, out, only)
        ctx.log(f"report: {os.path.join(out, 'benchmarks.md')}")
    finally:
        if getattr(ctx, "idle_daemon", None):
            ctx.idle_daemon[0].kill()
        if not args.keep:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
