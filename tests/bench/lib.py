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
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

PAGE = 4096
MiB = 1 << 20


class BenchError(Exception):
    pass


SQLVIGILCTL = None


def setup_binaries(sqlvigil, loadgen, sqlvigilctl):
    global SQLVIGILCTL
    for p in (sqlvigil, loadgen, sqlvigilctl):
        if not os.access(p, os.X_OK):
            raise BenchError(f"{p} is not built (run: ninja -C BUILD)")
    harness.SQLVIGIL = sqlvigil
    harness.LOADGEN = loadgen
    SQLVIGILCTL = sqlvigilctl


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

# sqlvigil writes its journal entries (with their SQLVIGIL_* fields: lock
# holds, copy times...) to journald's socket when its stderr is the journal
# stream ($JOURNAL_STREAM), as under systemd. To read those fields without a
# journald, the daemon runs in a mount namespace of its own where
# /run/systemd/journal/socket is a link to a datagram socket of the
# benchmark's (the native protocol: KEY=value lines, or KEY, a 64-bit
# length and the bytes). Nothing else changes: the same pid, files and
# sockets. Needs root (unshare -m); without it the daemon logs to stderr and
# the figures that need the fields say so.
JOURNAL_WRAPPER = r"""#!/bin/sh
# sqlvigil with its journal entries sent to $SQLVIGIL_BENCH_JOURNAL (see lib.py)
real="$1"; shift
exec unshare -m --propagation private sh -c '
mount -t tmpfs -o size=64k tmpfs /run/systemd &&
mkdir /run/systemd/journal &&
ln -s "$SQLVIGIL_BENCH_JOURNAL" /run/systemd/journal/socket &&
JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM &&
exec "$0" "$@"' "$real" "$@"
"""

_journal_ok = None


def journal_available(tmp):
    """Whether the daemon's journal entries can be captured here (root,
    mount namespaces, /run/systemd)."""
    global _journal_ok
    if _journal_ok is None:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /run/systemd && mkdir /run/systemd/journal"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _journal_ok = r.returncode == 0
    return _journal_ok


def parse_journal_datagram(data):
    out, i = {}, 0
    while i < len(data):
        nl = data.find(b"\n", i)
        if nl < 0:
            nl = len(data)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            out[k.decode("ascii", "replace")] = v.decode("utf-8", "replace")
            i = nl + 1
        else:  # KEY\n, little-endian 64-bit length, the bytes, \n
            n = int.from_bytes(data[nl + 1:nl + 9], "little")
            out[line.decode("ascii", "replace")] = data[nl + 9:nl + 9 + n].decode("utf-8", "replace")
            i = nl + 9 + n + 1
    return out


PRIORITY_PREFIX = {0: "error: ", 1: "error: ", 2: "error: ", 3: "error: ", 4: "warning: ", 7: "debug: "}


class Journal:
    """A stand-in for journald's socket: every entry with its arrival time
    (CLOCK_MONOTONIC), and, for the patterns the benchmarks look for, the
    line the daemon would have written to stderr."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "journal.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.settimeout(0.05)
        self.entries = []
        self.last = time.monotonic()
        self.sink = None  # (lock, list) of the daemon's lines
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            self.last = now
            f = parse_journal_datagram(data)
            self.entries.append((now, f))
            if self.sink:
                lock, lines = self.sink
                prio = int(f.get("PRIORITY", "6"))
                with lock:
                    lines.append((now, "sqlvigil: " + PRIORITY_PREFIX.get(prio, "") + f.get("MESSAGE", "")))

    def drain(self, quiet=0.2, timeout=5.0):
        """Waits until nothing has arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - self.last < quiet:
            time.sleep(0.02)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


class Sqlvigil:
    """sqlvigil under the emulated systemd of the integration harness, with
    its log captured line by line (with arrival times): its journal entries
    with their fields when journal_available(), else its stderr. control:
    a control socket in tmp, for stats() and ctl()."""

    def __init__(self, tmp, db, conf, name, debug=False, watchdog_usec=None, journal=True, control=False,
                 ready_timeout=60):
        self.tmp, self.name = tmp, name
        self.conf = os.path.join(tmp, f"{name}.conf")
        self.sock = os.path.join(tmp, f"{name}.ctl") if control else None
        with open(self.conf, "w") as f:
            f.write(f"[database]\npath = {db}\n")
            if self.sock:
                f.write(f"[control]\nsocket = {self.sock}\n")
            f.write(conf)
        sockdir = os.path.join(tmp, f"notify-{name}-{time.monotonic_ns()}")
        os.mkdir(sockdir)
        self.notify = harness.Notify(sockdir)
        env = {"SQLVIGIL_DEBUG": "1"} if debug else {}
        self.journal = None
        real = harness.SQLVIGIL
        if journal and journal_available(tmp):
            self.journal = Journal(sockdir)
            env["SQLVIGIL_BENCH_JOURNAL"] = self.journal.path
            wrapper = os.path.join(tmp, "sqlvigil-journal-wrapper")
            if not os.path.exists(wrapper):
                with open(wrapper, "w") as f:
                    f.write(JOURNAL_WRAPPER)
                os.chmod(wrapper, 0o755)
            harness.SQLVIGIL = wrapper
        try:
            self.d = harness.Daemon(([real] if self.journal else []) + ["--config", self.conf],
                                    notify=self.notify, watchdog_usec=watchdog_usec, env=env or None)
        finally:
            harness.SQLVIGIL = real
        if self.journal:
            self.journal.sink = (self.d.lock, self.d.lines)
        self.started = time.monotonic()
        self.ready_at = self.wait_ready(ready_timeout)

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

    def entries(self, event=None, after=0.0):
        """Journal entries [(arrival time, fields)], of one SQLVIGIL_EVENT
        if given; [] without the journal."""
        if not self.journal:
            return []
        return [(t, f) for t, f in list(self.journal.entries)
                if t >= after and (event is None or f.get("SQLVIGIL_EVENT") == event)]

    def wait_log(self, pattern, timeout, after=0.0):
        try:
            return self.d.wait_log(pattern, after=after, timeout=timeout, interval=0.005)
        except harness.Failure as e:
            raise BenchError(str(e)[:3000])

    def find_log(self, pattern, after=0.0):
        return self.d.find_log(pattern, after=after)

    def stats(self, timeout=5.0):
        return control_request(self.sock, "stats", timeout=timeout)

    def ctl(self, *args, timeout=600):
        """sqlvigilctl -s SOCK --json ARGS: (exit status, the reply or None,
        seconds from spawn to exit, stderr)."""
        t0 = time.monotonic()
        r = run_cmd([SQLVIGILCTL, "-s", self.sock, "--json"] + [str(a) for a in args], timeout=timeout)
        took = time.monotonic() - t0
        try:
            reply = json.loads(r.stdout) if r.stdout.strip() else None
        except ValueError:
            reply = None
        return r.returncode, reply, took, r.stderr.strip()

    def stop(self, timeout=60):
        """SIGTERM; returns (exit status, seconds from the signal to the exit)."""
        t0 = time.monotonic()
        self.d.signal(signal.SIGTERM)
        rc = self.d.proc.wait(timeout=timeout)
        took = time.monotonic() - t0
        self._finish()
        return rc, took

    def wait_exit(self, timeout=60):
        rc = self.d.proc.wait(timeout=timeout)
        self._finish()
        return rc

    def _finish(self):
        for r in self.d.readers:
            r.join(timeout=5)
        if self.journal:
            self.journal.drain()
            self.journal.close()
            self.journal.running = False
        self.notify.close()

    def kill(self):
        self.d.kill()
        for closer in (self.notify.close, self.journal.close if self.journal else None):
            try:
                if closer:
                    closer()
            except Exception:
                pass

    def save_log(self, path):
        with open(path, "w") as f:
            for t, line in self.lines():
                f.write(f"{t:.6f} {line}\n")
        if self.journal:
            with open(path[:-4] + ".journal.json" if path.endswith(".log") else path + ".journal.json", "w") as f:
                json.dump([[t, e] for t, e in self.journal.entries], f, indent=None)


def entry_usec(f, key, default=0):
    try:
        return int(f.get(key, default))
    except ValueError:
        return default


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



def lock_runs(entries):
    """The journal entries that carry lock holds (every maintenance run,
    the final checkpoint, a restore), as dicts: end (arrival time), start
    (end - duration), what, duration, lock_max, holds, lock_total (seconds),
    message."""
    out = []
    for t, f in entries:
        if "SQLVIGIL_LOCK_USEC" not in f:
            continue
        dur = entry_usec(f, "SQLVIGIL_DURATION_USEC") / 1e6
        what = f.get("SQLVIGIL_EVENT", "?")
        if f.get("SQLVIGIL_TRIGGER"):
            what += f" ({f['SQLVIGIL_TRIGGER']})"
        if f.get("SQLVIGIL_CHECKPOINT_MODE"):
            what += " " + f["SQLVIGIL_CHECKPOINT_MODE"]
        out.append({"end": t, "start": t - dur, "what": what, "event": f.get("SQLVIGIL_EVENT"),
                    "trigger": f.get("SQLVIGIL_TRIGGER"), "mode": f.get("SQLVIGIL_CHECKPOINT_MODE"),
                    "duration": dur, "lock_max": entry_usec(f, "SQLVIGIL_LOCK_USEC") / 1e6,
                    "holds": entry_usec(f, "SQLVIGIL_LOCK_HOLDS"),
                    "lock_total": entry_usec(f, "SQLVIGIL_LOCK_TOTAL_USEC") / 1e6,
                    "slices": entry_usec(f, "SQLVIGIL_SLICES", None) if "SQLVIGIL_SLICES" in f else None,
                    "message": f.get("MESSAGE", "")})
    return out


def holds_by_task(stats):
    """stats' maintenance.lock_holds: {task: {count, total_usec, max_usec}}
    for the tasks that held the write lock at all."""
    lh = (stats or {}).get("maintenance", {}).get("lock_holds", {})
    return {k: v for k, v in lh.items() if v.get("count")}


# SQLite's default busy handler (sqliteDefaultBusyCallback, with usleep):
# it sleeps these many ms, then 100 ms each time.
BUSY_DELAYS_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)


def busy_retry_after(ms):
    """When (ms after it began waiting) a connection waiting in SQLite's
    default busy handler tries again at or after `ms`: a writer that found
    the lock taken just as a hold of `ms` began waits this long."""
    total, i = 0, 0
    while total < ms:
        total += BUSY_DELAYS_MS[i] if i < len(BUSY_DELAYS_MS) else 100
        i += 1
    return total


def busy_retry_before(ms):
    """The last time (ms after it began waiting) at which a connection in
    SQLite's default busy handler tries at or before `ms`: holds that end by
    then cost a writer no more than `ms`."""
    total, i, last = 0, 0, 0
    while True:
        total += BUSY_DELAYS_MS[i] if i < len(BUSY_DELAYS_MS) else 100
        i += 1
        if total > ms:
            return last
        last = total


def busy_sleep_at(ms):
    """The length (ms) of the busy-handler sleep a connection is in after it
    has waited `ms` in all: a lock freed then is taken only when that sleep
    ends."""
    total, i = 0, 0
    while True:
        d = BUSY_DELAYS_MS[i] if i < len(BUSY_DELAYS_MS) else 100
        if total + d >= ms:
            return d
        total += d
        i += 1


def wal_index_header(db):
    """mxFrame and nBackfill from the -shm (read-only, no lock: a torn read
    is possible and harmless for a sample); None without one."""
    try:
        with open(db + "-shm", "rb") as f:
            h = f.read(136)
    except FileNotFoundError:
        return None
    if len(h) < 136:
        return None
    return {"mx_frame": int.from_bytes(h[16:20], sys.byteorder), "n_backfill": int.from_bytes(h[96:100], sys.byteorder)}


class WalSampler:
    """The -wal file's size (and the WAL index's frame count) every period,
    on a thread: samples [(time, bytes, mx_frame or None)]."""

    def __init__(self, db, period=0.02):
        self.db, self.period = db, period
        self.samples = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.is_set():
            h = wal_index_header(self.db)
            self.samples.append((time.monotonic(), file_size(self.db + "-wal"), h["mx_frame"] if h else None))
            time.sleep(self.period)

    def stop(self):
        self.stop_ev.set()
        self.thread.join()
        return self.samples

    def max(self, t0=None, t1=None):
        v = [b for t, b, _ in self.samples if (t0 is None or t >= t0) and (t1 is None or t <= t1)]
        return max(v, default=0)


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


def proc_threads(pid):
    """Per thread (by tid): name, voluntary and involuntary context
    switches, CPU time run (ns, schedstat) and times scheduled. A thread
    that sleeps and wakes counts one voluntary switch per sleep."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, _wait, n = f.read().split()
            vol = invol = 0
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol = int(line.split()[1])
        except FileNotFoundError:
            continue
        out[tid] = {"name": name, "voluntary": vol, "involuntary": invol, "run_ns": int(run_ns), "slices": int(n)}
    return out


class ThreadSampler:
    """/proc/PID/task/TID/schedstat of one of the daemon's threads (by its
    name) every period, on a thread of the benchmark's: [(time, ns on a
    CPU, ns runnable but waiting for a CPU)]. split() tells, for a stretch
    of time (a long hold of the write lock, say), how much of it the thread
    ran, waited for a CPU, or was blocked (I/O, a lock, sleep)."""

    def __init__(self, pid, name, period=0.004):
        self.path = None
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    if f.read().strip() == name:
                        self.path = f"/proc/{pid}/task/{tid}/schedstat"
            except FileNotFoundError:
                pass
        self.period = period
        self.samples = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if self.path:
            self.thread.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                with open(self.path) as f:
                    run_ns, wait_ns, _ = f.read().split()
            except (FileNotFoundError, ProcessLookupError, ValueError):
                return
            self.samples.append((time.monotonic(), int(run_ns), int(wait_ns)))
            time.sleep(self.period)

    def stop(self):
        self.stop_ev.set()
        if self.path:
            self.thread.join()

    def split(self, t0, t1):
        """(wall, on CPU, waiting for a CPU) seconds over the sampled stretch
        that covers [t0, t1] (from the last sample before t0 to the first
        after t1); None when the samples do not cover it."""
        before = [x for x in self.samples if x[0] <= t0]
        after = [x for x in self.samples if x[0] >= t1]
        if not before or not after:
            return None
        a, b = before[-1], after[0]
        return b[0] - a[0], (b[1] - a[1]) / 1e9, (b[2] - a[2]) / 1e9


def step_requests(lines):
    """{step end time: pages it was asked for} from the step lines (each
    says how many the next step asks for)."""
    out, asked = {}, None
    for t, line in lines:
        m = STEP_RE.search(line)
        if m:
            if asked is not None:
                out[t] = asked
            asked = int(m.group(4))
        elif "vacuum: starting" in line:
            asked = None
    return out


def long_holds(steps, sampler, budget_s, n=5, asked=None):
    """The vacuum steps (end time, pages, lock s) that held the lock longer
    than the budget, longest first, each with what its thread did meanwhile
    (sampler.split) and how many pages it was asked for (step_requests()):
    [{lock, pages, asked, at, wall, cpu, runq}]."""
    out = []
    for te, pages, lock in sorted((s for s in steps if s[2] > budget_s), key=lambda s: -s[2])[:n]:
        sp = sampler.split(te - lock, te) if sampler else None
        out.append({"at": te, "lock": lock, "pages": pages, "asked": (asked or {}).get(te),
                    "budget": budget_s, "wall": sp[0] if sp else None, "cpu": sp[1] if sp else None,
                    "runq": sp[2] if sp else None})
    return out


def overrun_text(o):
    """One long hold and where its time went, as text."""
    text = f"{o['lock'] * 1000:.1f} ms ({o['pages']} pages"
    if o.get("asked") and o["pages"] == o["asked"] and o.get("budget"):
        # The time check between pages stops a step at 3/5 of the budget;
        # one that freed all it was asked for had not reached it before its
        # last page, so the rest of its hold is the commit that ends it.
        text += (f", all it was asked for: its pages took less than {0.6 * o['budget'] * 1000:.0f} ms, so about "
                 f"{max(o['lock'] - 0.6 * o['budget'], 0) * 1000:.0f} ms or more was the commit that ends the step")
    if o.get("wall") is not None:
        blocked = max(o["wall"] - o["cpu"] - o["runq"], 0.0)
        text += (f"; over the {o['wall'] * 1000:.0f} ms sampled around it the database thread ran "
                 f"{o['cpu'] * 1000:.0f} ms, waited {o['runq'] * 1000:.0f} ms for a CPU and was blocked "
                 f"{blocked * 1000:.0f} ms")
    return text + ")"


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
