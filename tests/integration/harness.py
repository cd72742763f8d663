# SPDX-License-Identifier: MIT
"""Test harness: runs the real sqlvigil binary under an emulated systemd.

The test binds an AF_UNIX datagram socket and passes it as $NOTIFY_SOCKET
(and, when asked, $WATCHDOG_USEC), exactly as systemd does for Type=notify
services. Every datagram is recorded with its arrival time, so tests can
assert on order (READY before WATCHDOG, RELOADING before READY) and cadence.

Results are checked with an independent client, Python's sqlite3 module,
never with sqlvigil's own code. Tests poll for conditions with generous
deadlines; nothing depends on exact timing.
"""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

SQLVIGIL = os.environ.get("SQLVIGIL", "build/src/sqlvigil")
LOADGEN = os.environ.get("LOADGEN", "build/tests/sqlvigil-loadgen")
PYTHON = sys.executable


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def wait_until(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns something true; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Notify:
    """An emulated systemd notification socket."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, {field: value})
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            fields = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            with self.lock:
                self.messages.append((now, fields))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def find(self, key, value=None, after=0.0):
        """First message at or after `after` that carries key (=value)."""
        for t, f in self.snapshot():
            if t >= after and key in f and (value is None or f[key] == value):
                return t, f
        return None

    def wait_for(self, key, value=None, after=0.0, timeout=10):
        return wait_until(lambda: self.find(key, value, after), timeout,
                          f"{key}={value if value is not None else '*'} on the notify socket")

    def times(self, key, value=None, after=0.0, before=float("inf")):
        return [t for t, f in self.snapshot()
                if after <= t < before and key in f and (value is None or f[key] == value)]

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


class Daemon:
    """One sqlvigil process with its stderr captured line by line."""

    def __init__(self, args, notify=None, watchdog_usec=None, env=None, cwd=None):
        e = dict(os.environ)
        e.pop("JOURNAL_STREAM", None)  # always readable stderr in tests
        e.pop("NOTIFY_SOCKET", None)
        e.pop("WATCHDOG_USEC", None)
        e.pop("WATCHDOG_PID", None)
        if notify:
            e["NOTIFY_SOCKET"] = notify.path
        if watchdog_usec:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        # Each daemon gets its own runtime directory, as the unit gives each
        # instance one: its control socket goes there, never into the host's
        # /run/sqlvigil, and tests running side by side cannot collide.
        e["RUNTIME_DIRECTORY"] = tempfile.mkdtemp(prefix="sqlvigil-run-")
        if env:
            e.update(env)
        self.proc = subprocess.Popen([SQLVIGIL] + list(args), env=e, cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = []  # (monotonic time, text)
        self.raw = []  # stderr lines as bytes, undecoded
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stderr, True), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stdout, False), daemon=True)]
        for r in self.readers:
            r.start()

    def _read(self, stream, is_stderr):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not is_stderr:
                continue  # drained, so that the daemon never blocks on a full pipe
            with self.lock:
                self.lines.append((time.monotonic(), line))
                self.raw.append(raw)
            if os.environ.get("SQLVIGIL_TEST_VERBOSE"):
                print(f"  [sqlvigil] {line}", flush=True)

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with self.lock:
            return [l for _, l in self.lines]

    def find_log(self, pattern, after=0.0):
        rx = re.compile(pattern)
        with self.lock:
            for t, l in self.lines:
                if t >= after and rx.search(l):
                    return t, l
        return None

    def wait_log(self, pattern, after=0.0, timeout=10, interval=0.02):
        return wait_until(lambda: self.find_log(pattern, after), timeout,
                          f"a log line matching {pattern!r}; log so far:\n" + "\n".join(self.log()),
                          interval=interval)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=30):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"sqlvigil did not exit within {timeout}s; log:\n" + "\n".join(self.log()))
        for r in self.readers:
            r.join(timeout=5)
        return rc

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def dump(self):
        return "\n".join(self.log())


def fd_targets(pid):
    out = []
    d = f"/proc/{pid}/fd"
    try:
        for fd in os.listdir(d):
            try:
                out.append(os.readlink(os.path.join(d, fd)))
            except OSError:
                pass
    except OSError:
        pass
    return out


def make_db(path, rows=0, wal=True):
    con = sqlite3.connect(path, isolation_level=None)
    if wal:
        con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
    if rows:
        con.execute("BEGIN")
        con.executemany("INSERT INTO t(v) VALUES (?)", (("row %d" % i,) for i in range(rows)))
        con.execute("COMMIT")
    con.close()


def count_rows(path, table="t"):
    con = sqlite3.connect(path, isolation_level=None)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def integrity(path):
    con = sqlite3.connect(path, isolation_level=None)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check")]
    finally:
        con.close()


def file_size(path):
    """Its size in bytes; 0 when it does not exist (an absent -wal is an
    empty one)."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def write_config(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


class LockHolder:
    """Another process holding the database's write lock (BEGIN IMMEDIATE,
    which in WAL mode is the lock every writer needs) for `seconds`."""

    CODE = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN IMMEDIATE")
con.execute("INSERT INTO t(v) VALUES ('held')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
print("released", flush=True)
"""

    def __init__(self, db, seconds):
        self.proc = subprocess.Popen([PYTHON, "-c", self.CODE, db, str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        check(line == "locked", f"lock holder did not take the lock: {line!r}")
        self.locked_at = time.monotonic()

    def wait(self, timeout=120):
        self.proc.wait(timeout=timeout)
        self.released_at = time.monotonic()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Loadgen:
    """An application process: sqlvigil-loadgen writer or reader."""

    def __init__(self, mode, db, *args):
        self.proc = subprocess.Popen([LOADGEN, mode, "--db", db] + [str(a) for a in args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        if not first.strip():
            raise Failure(f"loadgen {mode} did not start: {self.proc.stderr.read()}")
        import json
        self.hello = json.loads(first)
        self.pid = self.proc.pid

    def stop(self, timeout=30):
        """SIGTERM, then the summary line (a dict)."""
        import json
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure("loadgen did not stop")
        lines = [l for l in out.splitlines() if l.strip()]
        if not lines:
            raise Failure(f"loadgen printed no summary; stderr: {err}")
        return json.loads(lines[-1])

    def wait(self, timeout=60):
        import json
        out, err = self.proc.communicate(timeout=timeout)
        lines = [l for l in out.splitlines() if l.strip()]
        check(lines, f"loadgen printed no summary; stderr: {err}")
        return json.loads(lines[-1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def query(path, sql, *params):
    con = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def max_gap(times):
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def run(cases):
    """Runs the case named on the command line (or all), printing a verdict.
    Exit status: 0 passed, 1 failed, 77 skipped (meson's convention)."""
    names = sys.argv[1:] or list(cases)
    failed = 0
    for name in names:
        func = cases[name]
        tmp = tempfile.mkdtemp(prefix=f"sqlvigil-{name}-")
        start = time.monotonic()
        try:
            func(tmp)
        except Failure as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Skip as e:
            print(f"SKIP {name}: {e}", flush=True)
            if len(names) == 1:
                sys.exit(77)
        else:
            print(f"ok   {name} ({time.monotonic() - start:.1f}s)", flush=True)
    sys.exit(1 if failed else 0)


class Skip(Exception):
    pass
