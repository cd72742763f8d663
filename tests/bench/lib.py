# SPDX-License-Identifier: MIT
"""Building blocks of the benchmarks: databases, the daemon, the application
stand-in (sqlvigil-loadgen), latency files and statistics.

The daemon and the notification socket come from the integration harness
(tests/integration/harness.py): the same emulated systemd the tests use.
Every database is checked with Python's sqlite3 module, never with
sqlvigil's code.
"""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

PAGE = 4096
MiB = 1 << 20


class BenchError(Exception):
    pass


def setup_binaries(sqlvigil, loadgen):
    for p in (sqlvigil, loadgen):
        if not os.access(p, os.X_OK):
            raise BenchError(f"{p} is not built (run: ninja -C BUILD)")
    harness.SQLVIGIL = sqlvigil
    harness.LOADGEN = loadgen


# ---- statistics -------------------------------------------------------------

def pct(sorted_values, q):
    """Nearest rank, as sqlvigil-loadgen computes it: v[n*q] (0 <= q < 1)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def median(values):
    v = sorted(values)
    return pct(v, 0.5)


# ---- databases --------------------------------------------------------------

LOAD_TABLE = "CREATE TABLE IF NOT EXISTS load(id INTEGER PRIMARY KEY, writer INT, seq INT, ts INT, payload BLOB)"


def sync_file(path):
    """Flush a file written in bulk, so that its writeback does not land in a
    later measurement (an fsync by anyone on ext4 can wait for it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.sync()


def remove_db(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def make_purged_db(path, mib, cache_mib=256):
    """An application database of about `mib` MiB whose older half was
    purged: table events(id, ts, kind, payload ~1000 bytes) with an index on
    ts, auto_vacuum=incremental, 4 KiB pages, WAL. The newer half of the rows
    sits at the end of the file, so every page incremental vacuum reclaims
    is a page in use it has to move (the hard case for it; a full VACUUM
    just rewrites the live half). Built in one transaction without a journal
    (the fast way to make a big file; it is not how the benchmark writes).
    Returns a dict with the sizes and how long it took."""
    remove_db(path)
    t0 = time.monotonic()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA page_size={PAGE}")
    con.execute("PRAGMA auto_vacuum=incremental")
    con.execute("PRAGMA journal_mode=off")
    con.execute("PRAGMA synchronous=off")
    con.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
    con.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, ts INT, kind INT, payload BLOB)")
    con.execute("CREATE INDEX events_ts ON events(ts)")
    con.execute(LOAD_TABLE)
    # About 3.7 rows per 4 KiB leaf with their index entries.
    rows = int(mib * MiB / 1105)
    con.execute("BEGIN")
    con.execute("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
                "INSERT INTO events(id, ts, kind, payload) SELECT i, 1700000000 + i, i % 7, randomblob(1000) FROM s",
                (rows,))
    con.execute("COMMIT")
    t1 = time.monotonic()
    con.execute("DELETE FROM events WHERE id <= ?", (rows // 2,))
    pages, free = con.execute("SELECT (SELECT page_count FROM pragma_page_count), "
                              "(SELECT freelist_count FROM pragma_freelist_count)").fetchone()
    con.execute("PRAGMA journal_mode=wal")
    con.close()
    t2 = time.monotonic()
    sync_file(path)
    t3 = time.monotonic()
    return {"path": path, "rows": rows, "live_rows": rows - rows // 2, "pages": pages, "free": free,
            "bytes": os.path.getsize(path), "insert_s": t1 - t0, "purge_s": t2 - t1, "sync_s": t3 - t2,
            "total_s": t3 - t0}


def make_small_db(path, mib=1):
    """A small live database (no free pages): the idle/health cases."""
    remove_db(path)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA page_size={PAGE}")
    con.execute("PRAGMA auto_vacuum=incremental")
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, ts INT, kind INT, payload BLOB)")
    con.execute("CREATE INDEX events_ts ON events(ts)")
    con.execute(LOAD_TABLE)
    rows = max(1, int(mib * MiB / 1105))
    con.execute("BEGIN")
    con.execute("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
                "INSERT INTO events(id, ts, kind, payload) SELECT i, 1700000000 + i, i % 7, randomblob(1000) FROM s",
                (rows,))
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    sync_file(path)


def copy_db(src, dst):
    """A private copy of a quiescent database (no -wal), flushed to disk."""
    remove_db(dst)
    t0 = time.monotonic()
    shutil.copyfile(src, dst)
    sync_file(dst)
    return time.monotonic() - t0


def db_stats(path):
    con = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        pages, free = con.execute("SELECT (SELECT page_count FROM pragma_page_count), "
                                  "(SELECT freelist_count FROM pragma_freelist_count)").fetchone()
        return {"pages": pages, "free": free}
    finally:
        con.close()


def quick_check(path):
    """PRAGMA quick_check: catches structural damage (lost pages, bad
    pointer maps) in O(N); returns ["ok"] or the problems."""
    con = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        rows = [line for r in con.execute("PRAGMA quick_check(20)") for line in r[0].split("\n")]
        return [r for r in rows if r.strip() and not r.startswith("*** in database")] or rows
    except sqlite3.DatabaseError as e:
        return [f"quick_check failed: {e}"]
    finally:
        con.close()


def rows_by_writer(path):
    con = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        return {w: (n, top) for w, n, top in
                con.execute("SELECT writer, count(*), max(seq) FROM load GROUP BY writer")}
    except sqlite3.DatabaseError:
        return None
    finally:
        con.close()


file_size = harness.file_size


# ---- the daemon -------------------------------------------------------------

class Sqlvigil:
    """sqlvigil under the emulated systemd of the integration harness, with
    its stderr captured line by line (with arrival times)."""

    def __init__(self, tmp, db, conf, name, debug=False, watchdog_usec=None):
        self.conf = os.path.join(tmp, f"{name}.conf")
        with open(self.conf, "w") as f:
            f.write(f"[database]\npath = {db}\n{conf}")
        sockdir = os.path.join(tmp, f"notify-{name}-{time.monotonic_ns()}")
        os.mkdir(sockdir)
        self.notify = harness.Notify(sockdir)
        env = {"SQLVIGIL_DEBUG": "1"} if debug else None
        self.d = harness.Daemon(["--config", self.conf], notify=self.notify, watchdog_usec=watchdog_usec, env=env)
        self.wait_ready()

    def wait_ready(self, timeout=60):
        try:
            t, _ = self.notify.wait_for("READY", "1", timeout=timeout)
        except harness.Failure:
            self.kill()
            raise BenchError("sqlvigil did not become ready:\n" + self.d.dump())
        return t

    @property
    def pid(self):
        return self.d.pid

    def lines(self):
        with self.d.lock:
            return list(self.d.lines)

    def wait_log(self, pattern, timeout, after=0.0):
        try:
            return self.d.wait_log(pattern, after=after, timeout=timeout, interval=0.005)
        except harness.Failure as e:
            raise BenchError(str(e)[:3000])

    def find_log(self, pattern, after=0.0):
        return self.d.find_log(pattern, after=after)

    def stop(self, timeout=60):
        """SIGTERM; returns (exit status, seconds from the signal to the exit)."""
        t0 = time.monotonic()
        self.d.signal(signal.SIGTERM)
        rc = self.d.proc.wait(timeout=timeout)
        took = time.monotonic() - t0
        for r in self.d.readers:
            r.join(timeout=5)
        self.notify.close()
        return rc, took

    def kill(self):
        self.d.kill()
        try:
            self.notify.close()
        except Exception:
            pass

    def save_log(self, path):
        with open(path, "w") as f:
            for t, line in self.lines():
                f.write(f"{t:.6f} {line}\n")


STEP_RE = re.compile(r"vacuum step (\d+): freed (\d+) pages holding the lock (\d+) us; next (\d+) pages")
VACUUM_RE = re.compile(r"vacuum \((\w+)\) (freed (\d+) pages|\w+ after freeing (\d+) pages)")
CHECKPOINT_RE = re.compile(r"checkpoint \(([\w-]+)\) (\w+)[: ].* in (\d+(?:\.\d+)?)(us|ms|s)\b")


def parse_duration(value, unit):
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def vacuum_events(lines, after=0.0):
    """Vacuum steps (end time, pages, lock seconds), start and end of the
    first run after `after`, and its result line."""
    steps, start, end, result = [], None, None, None
    for t, line in lines:
        if t < after:
            continue
        if start is None and "vacuum: starting" in line:
            start = t
        m = STEP_RE.search(line)
        if m and start is not None and end is None:
            steps.append((t, int(m.group(2)), int(m.group(3)) / 1e6))
        m = VACUUM_RE.search(line)
        if m and start is not None and end is None:
            end, result = t, line
    return steps, start, end, result


def checkpoint_events(lines, after=0.0):
    out = []
    for t, line in lines:
        if t < after:
            continue
        m = CHECKPOINT_RE.search(line)
        if m:
            out.append((t, m.group(1), m.group(2), parse_duration(m.group(3), m.group(4)), line))
    return out



WAL_SIZE_RE = re.compile(r"WAL (\d+(?:\.\d+)?)([KMG]?)B? -> ")


def longest_locks(lines):
    """What held the writer lock longest in a daemon log: the longest vacuum
    step, the longest RESTART/TRUNCATE checkpoint (both hold the writer lock),
    and the largest WAL a checkpoint saw."""
    step, reset, wal = 0.0, ("", 0.0), 0
    for _, line in lines:
        m = STEP_RE.search(line)
        if m:
            step = max(step, int(m.group(3)) / 1e6)
        m = CHECKPOINT_RE.search(line)
        if m and m.group(2) in ("restart", "truncate"):
            d = parse_duration(m.group(3), m.group(4))
            if d > reset[1]:
                reset = (m.group(2), d)
        m = WAL_SIZE_RE.search(line)
        if m:
            wal = max(wal, int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]))
    return {"step_s": step, "reset_mode": reset[0], "reset_s": reset[1], "wal_max_bytes": wal}


# ---- the application --------------------------------------------------------

class Writer:
    """sqlvigil-loadgen writer: a fixed pace of single-row INSERTs with
    busy_timeout, every statement's latency written to a file."""

    def __init__(self, db, latfile, wid=1, interval_us=3000, payload=100, autocheckpoint=0, count=None,
                 busy_ms=5000):
        args = ["--id", wid, "--interval-us", interval_us, "--payload", payload, "--busy-timeout", busy_ms,
                "--synchronous", "normal", "--latencies", latfile]
        if autocheckpoint is not None:
            args += ["--autocheckpoint", autocheckpoint]
        if count:
            args += ["--count", count]
        self.latfile = latfile
        self.w = harness.Loadgen("writer", db, *args)
        self.summary = None

    def stop(self):
        self.summary = self.w.stop(timeout=60)
        return self.summary

    def wait(self, timeout=600):
        self.summary = self.w.wait(timeout=timeout)
        return self.summary

    def kill(self):
        self.w.kill()

    def latencies(self):
        """[(absolute start, seconds on CLOCK_MONOTONIC), latency s, ok)]."""
        base = self.summary["start_usec"]
        out = []
        with open(self.latfile) as f:
            for line in f:
                t, lat, ok = line.split()
                out.append(((base + int(t)) / 1e6, int(lat) / 1e6, ok == "1"))
        return out


class Reader:
    def __init__(self, db, hold_ms, gap_ms):
        self.r = harness.Loadgen("reader", db, "--hold-ms", hold_ms, "--gap-ms", gap_ms)
        self.pid = self.r.pid

    def stop(self):
        return self.r.stop(timeout=30)

    def kill(self):
        self.r.kill()


def latency_stats(lats, t0=None, t1=None):
    """p50/p99/max (seconds) and failures of the statements that started in
    [t0, t1) (all when None)."""
    sel = [(lat, ok) for t, lat, ok in lats if (t0 is None or t >= t0) and (t1 is None or t < t1)]
    v = sorted(lat for lat, _ in sel)
    return {"n": len(sel), "failed": sum(1 for _, ok in sel if not ok), "p50": pct(v, 0.5), "p99": pct(v, 0.99),
            "max": v[-1] if v else None}


# ---- /proc ------------------------------------------------------------------

def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.strip()
            if v.endswith(" kB"):
                out[k] = int(v[:-3]) * 1024
            else:
                out[k] = v
    return out


def proc_cpu(pid):
    """(utime + stime seconds, timeslices run, voluntary + involuntary
    context switches), summed over the process's threads."""
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / tick
    slices = switches = 0
    cpu_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, _wait, n = f.read().split()
                slices += int(n)
                cpu_ns += int(run_ns)
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except FileNotFoundError:
            pass
    return {"cpu_s": cpu, "run_ns": cpu_ns, "slices": slices, "switches": switches,
            "threads": len(os.listdir(f"/proc/{pid}/task"))}


# ---- the control socket (docs/control.md) -----------------------------------

def control_request(path, request, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(request.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return json.loads(buf.decode())


def run_cmd(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
