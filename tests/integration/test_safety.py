#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Data safety through the real binary: files renamed, deleted or copied
over under a live database, a file system that turns read-only, output
paths that name the database's files, and sqlvigil killed in the middle of
its reaction. Each case counts the rows of the new file and of the old one
(wherever it went) with Python's sqlite3, runs PRAGMA integrity_check on
both, and reads what sqlvigil said: its journal entries (caught on a
journal socket of the test's own, below), STATUS= and the other notify
messages, sqlvigilctl health, and the exit status.

The journal: sqlvigil logs to journald when stderr is the stream named by
$JOURNAL_STREAM, as under systemd. Each daemon here runs in a mount
namespace of its own (unshare) with a directory of the test bind-mounted
over /run/systemd, so sd_journal_sendv() reaches the test's socket there
with every field (MESSAGE_ID, SQLVIGIL_REASON, ...) and nothing else on
the host changes."""

import faulthandler
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PYTHON, SQLVIGIL, Failure, Notify, Skip, check, file_size, run, wait_until,  # noqa: E402
                     write_config)

CTL = os.environ.get("SQLVIGILCTL", "build/src/sqlvigilctl")

MSG_FILE_FAULT = "926eff0a0d8d4f938cb4d1dd3853e354"
MSG_FILE_RESCUED = "6aeb7fe315274ac181a32f70d01fa779"
MSG_STALE_WAL = "74e29fce2abd4811b61051d154724e9a"
MSG_HEALTH = None  # looked up from src/messages.h below
MSG_READY = None
MSG_START_FAILED = None

WATCHDOG = 2_000_000  # pings every second; health rounds every 250 ms (below)
EXIT_RESCUED = 75
EXIT_CONFIG = 78


def _message_ids():
    """MESSAGE_IDs by name, from the source (the docs suite checks the
    catalog against the same file)."""
    here = os.path.dirname(os.path.abspath(__file__))
    ids = {}
    with open(os.path.join(here, "..", "..", "src", "messages.h")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("SQLVIGIL_MESSAGE_"):
                ids[parts[1][len("SQLVIGIL_MESSAGE_"):]] = parts[2].strip('"')
    return ids


_IDS = _message_ids()
check(_IDS.get("FILE_FAULT") == MSG_FILE_FAULT and _IDS.get("FILE_RESCUED") == MSG_FILE_RESCUED
      and _IDS.get("STALE_WAL") == MSG_STALE_WAL, f"MESSAGE_IDs changed in src/messages.h: {_IDS}")
MSG_HEALTH = _IDS["HEALTH"]
MSG_READY = _IDS["READY"]
MSG_START_FAILED = _IDS["START_FAILED"]


# ---- A journal of the test's own --------------------------------------------------

def _parse_native(data):
    """journald's native protocol: KEY=VALUE lines, or KEY, a newline, a
    64-bit little-endian length, the value and a newline."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.find(b"\n", i)
        if nl < 0:
            nl = len(data)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode("utf-8", "replace")
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            fields[line.decode()] = data[nl + 9:nl + 9 + size].decode("utf-8", "replace")
            i = nl + 9 + size + 1
    return fields


class Journal:
    """The socket sd_journal_sendv() writes to, at DIR/journal/socket; DIR
    is bind-mounted over /run/systemd for the daemon."""

    def __init__(self, directory):
        self.root = os.path.join(directory, "run-systemd")
        os.makedirs(os.path.join(self.root, "journal"), exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(self.root, "journal", "socket"))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.settimeout(0.1)
        self.entries = []  # (monotonic time, fields)
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data, anc, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            for level, kind, payload in anc:
                # A large entry comes as a sealed memfd.
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = struct.unpack("i", payload[:4])[0]
                    with os.fdopen(fd, "rb") as f:
                        data = f.read()
            with self.lock:
                self.entries.append((now, _parse_native(data)))

    def snapshot(self):
        with self.lock:
            return list(self.entries)

    def find(self, after=0.0, **want):
        for t, e in self.snapshot():
            if t >= after and all(e.get(k) == v for k, v in want.items()):
                return t, e
        return None

    def all(self, after=0.0, **want):
        return [(t, e) for t, e in self.snapshot() if t >= after and all(e.get(k) == v for k, v in want.items())]

    def wait(self, what, after=0.0, timeout=20, **want):
        return wait_until(lambda: self.find(after, **want), timeout,
                          f"{what} in the journal; entries so far:\n{self.dump()}")

    def dump(self):
        return "\n".join(f"  {e.get('SQLVIGIL_EVENT', '-')}: {e.get('MESSAGE')}" for _, e in self.snapshot())

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


_NS_CHECKED = []


def namespace_prefix():
    """The command that runs a program in a mount namespace of its own with
    a directory over /run/systemd: as root, or in a user namespace."""
    if not _NS_CHECKED:
        probe = tempfile.mkdtemp(prefix="sqlvigil-ns-")
        for prefix in (["unshare", "--mount", "--propagation", "private"],
                       ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]):
            try:
                r = subprocess.run(prefix + ["sh", "-c", 'mount --bind "$0" /run/systemd', probe],
                                   capture_output=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if r.returncode == 0:
                _NS_CHECKED.append(prefix)
                break
        else:
            _NS_CHECKED.append(None)
        os.rmdir(probe)
    if _NS_CHECKED[0] is None:
        raise Skip("cannot run sqlvigil in a mount namespace of its own (unshare --mount, as root or in a user "
                   "namespace), which these tests need to read its journal entries")
    if not os.path.isdir("/run/systemd"):
        raise Skip("/run/systemd does not exist, so the test's journal socket cannot be put over it")
    return _NS_CHECKED[0]


class Vigil:
    """One sqlvigil process under an emulated systemd: the notify socket,
    the watchdog, and journald (this test's Journal). Anything it writes to
    stderr (there should be nothing: it logs to the journal) is kept."""

    def __init__(self, tmp, args, watchdog=WATCHDOG, name="v", pidns=False):
        base = os.path.join(tmp, f"sd-{name}-{time.monotonic_ns()}")
        os.mkdir(base)
        self.notify = Notify(base)
        self.journal = Journal(base)
        r, w = os.pipe()
        st = os.fstat(w)
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(k, None)
        env["NOTIFY_SOCKET"] = self.notify.path
        if watchdog:
            env["WATCHDOG_USEC"] = str(watchdog)
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        env["RUNTIME_DIRECTORY"] = tempfile.mkdtemp(prefix="sqlvigil-run-", dir=tmp)
        # unshare and sh exec: the pid is sqlvigil's once it runs.
        # pidns: in a PID namespace of its own, as in a container (then the
        # pid is unshare's, which exits with sqlvigil's status).
        cmd = namespace_prefix() + (["--pid", "--fork"] if pidns else []) + [
            "sh", "-c", 'mount --bind "$0" /run/systemd && exec "$@"', self.journal.root, SQLVIGIL] + list(args)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w)
        os.close(w)
        self.stderr = []
        self.reader = threading.Thread(target=self._read, args=(r,), daemon=True)
        self.reader.start()

    def _read(self, fd):
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def pid(self):
        return self.proc.pid

    def ready(self, timeout=20):
        try:
            t, _ = self.notify.wait_for("READY", "1", timeout=timeout)
        except Failure:
            self.kill()
            raise Failure("sqlvigil did not become ready:\n" + self.dump())
        return t

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=40):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"sqlvigil did not exit within {timeout}s:\n" + self.dump())
        self.reader.join(timeout=5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def dump(self):
        return ("journal:\n" + self.journal.dump() + "\nstderr:\n" + "\n".join(self.stderr) +
                "\nnotify:\n" + "\n".join(f"  {f}" for _, f in self.notify.snapshot()))

    def close(self):
        self.kill()
        self.notify.close()
        self.journal.close()


def settings(**sections):
    """Everything but what a case looks at is out of the way: no scheduled
    vacuum, ANALYZE or quick_check, checkpoints only at stop (so the WAL
    holds what the applications committed), health rounds every 250 ms;
    section__key = value adds or overrides."""
    conf = {"health": {"quick_check_interval": "0", "interval": "250ms"},
            "checkpoint": {"interval": "1h", "min_wal_pages": "100000", "stop_timeout": "4s"},
            "vacuum": {"interval": "0"}, "analyze": {"interval": "0"}}
    for name, value in sections.items():
        section, key = name.split("__")
        conf.setdefault(section, {})[key] = str(value)
    return "".join(f"[{sec}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) for sec, keys in conf.items())


def start(tmp, db, extra=None, name="v", watchdog=WATCHDOG, wait_ready=True, pidns=False):
    """sqlvigil on db with its own control socket; returns the Vigil and
    the socket's path."""
    sock = os.path.join(tmp, f"{name}.sock")
    conf = os.path.join(tmp, f"{name}.conf")
    write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n"
                       + (extra if extra is not None else settings()))
    v = Vigil(tmp, ["--config", conf], watchdog=watchdog, name=name, pidns=pidns)
    if wait_ready:
        v.ready()
    return v, sock


def ctl(*args, timeout=30):
    return subprocess.run([CTL] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


# ---- Databases and applications -------------------------------------------------

def make_db(path, tag, rows):
    """A WAL database with table t(id, v), rows v = 'TAG-i', closed."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
    if rows:
        con.execute("BEGIN")
        con.executemany("INSERT INTO t(v) VALUES (?)", ((f"{tag}-{i}",) for i in range(rows)))
        con.execute("COMMIT")
    con.close()


def ro_connect(path):
    """A read-only look that creates nothing beside the file when it is in
    rollback mode (a saved copy), and uses the -wal beside it otherwise."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10)


def tags(path):
    """{tag: count of rows} and integrity_check of the database at path,
    read by a new connection (as a newly started program sees it)."""
    con = ro_connect(path)
    try:
        ic = [r[0] for r in con.execute("PRAGMA integrity_check")]
        out = {}
        for (v,) in con.execute("SELECT v FROM t"):
            tag = v.rsplit("-", 1)[0]
            out[tag] = out.get(tag, 0) + 1
        return out, ic
    finally:
        con.close()


def expect_rows(path, want, what):
    """The database at path holds exactly these rows ({tag: count}) and
    passes integrity_check."""
    try:
        got, ic = tags(path)
    except sqlite3.DatabaseError as e:
        raise Failure(f"{what} ({path}) cannot be read: {e}")
    check(ic == ["ok"], f"{what} ({path}) fails integrity_check: {ic[:5]}")
    check(got == want, f"{what} ({path}) holds {got}, expected {want}")


APP = r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
con.execute("PRAGMA wal_autocheckpoint=0")   # checkpoints are sqlvigil's (and at the last close)
n = con.execute("SELECT count(*) FROM t").fetchone()[0]   # a read: now attached to the WAL index
print("ready", n, flush=True)
for line in sys.stdin:
    cmd = line.split()
    try:
        if cmd[0] == "insert":          # insert TAG N: one transaction
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO t(v) VALUES (?)", (("%s-%d" % (cmd[1], i),) for i in range(int(cmd[2]))))
            con.execute("COMMIT")
            print("ok", flush=True)
        elif cmd[0] == "each":          # each TAG N: N transactions of one row
            for i in range(int(cmd[2])):
                con.execute("INSERT INTO t(v) VALUES (?)", ("%s-%d" % (cmd[1], i),))
            print("ok", flush=True)
        elif cmd[0] == "begin":         # begin TAG N: a write transaction left open (the write lock held)
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO t(v) VALUES (?)", (("%s-%d" % (cmd[1], i),) for i in range(int(cmd[2]))))
            print("ok", flush=True)
        elif cmd[0] == "commit":
            con.execute("COMMIT")
            print("ok", flush=True)
        elif cmd[0] == "checkpoint":
            print("ok", con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone(), flush=True)
        elif cmd[0] == "quit":
            con.close()
            print("closed", flush=True)
            break
    except sqlite3.Error as e:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        print("error", e, flush=True)
"""


class App:
    """An application: one connection, kept open, driven line by line."""

    def __init__(self, db):
        self.proc = subprocess.Popen([PYTHON, "-c", APP, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        line = self.proc.stdout.readline().split()
        if line[:1] != ["ready"]:
            self.proc.kill()
            raise Failure(f"the application did not start: {line} {self.proc.stderr.read()}")

    def cmd(self, text, want="ok"):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        check(line.startswith(want), f"application: {text!r} -> {line!r}")
        return line

    def quit(self):
        if self.proc.poll() is None:
            self.cmd("quit", "closed")
            self.proc.wait(timeout=30)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_rows(db, tag, rows):
    """An application that writes rows in one transaction and exits."""
    app = App(db)
    app.cmd(f"insert {tag} {rows}")
    app.quit()


def new_database(tmp, name, tag, rows):
    """Another WAL database with the same schema, created and closed (no
    -wal, no -shm left): what an operator would rename over the path."""
    path = os.path.join(tmp, name)
    make_db(path, tag, rows)
    check(not os.path.exists(path + "-wal"), f"{path}-wal left behind")
    return path


def listing(directory, prefix):
    return sorted(f for f in os.listdir(directory) if f.startswith(prefix))


def aside(directory, name, kind):
    """The files set aside as NAME.KIND-TIME (never a .tmp)."""
    return [os.path.join(directory, f) for f in listing(directory, f"{name}.{kind}-") if not f.endswith(".tmp")]


def saved_copy(directory, name):
    found = aside(directory, name, "deleted")
    check(len(found) == 1, f"one saved copy {name}.deleted-TIME expected in {sorted(os.listdir(directory))}")
    return found[0]


# ---- What sqlvigil said -------------------------------------------------------------

def expect_fault(v, t0, reason, names, rescued_names=(), complete=True, rc=EXIT_RESCUED, held=None):
    """The reaction to a displaced file, as systemd and an operator see it:
    a file-fault entry and a health entry (reason, text naming the file),
    STOPPING=1 with a STATUS= naming the file, no WATCHDOG=1 after it and
    no READY=1 after the fault, a file-rescued entry, and exit status 75.
    held: the pid sqlvigil held off past stop_timeout; the one STATUS=
    after STOPPING=1 names it. Returns (file-fault entry, file-rescued
    entry)."""
    _, fault = v.journal.wait("the file-fault entry", after=t0, MESSAGE_ID=MSG_FILE_FAULT)
    for n in names:
        check(n in fault.get("MESSAGE", "") and n in fault.get("SQLVIGIL_REASON_TEXT", ""),
              f"the file-fault entry does not name {n}: {fault.get('MESSAGE')!r}")
    check(fault.get("PRIORITY") == "2", f"file-fault PRIORITY={fault.get('PRIORITY')}")
    _, health = v.journal.wait("the health entry", after=t0, MESSAGE_ID=MSG_HEALTH, SQLVIGIL_HEALTH="failed")
    check(health.get("SQLVIGIL_REASON") == reason,
          f"health reason {health.get('SQLVIGIL_REASON')}, expected {reason}: {health.get('MESSAGE')!r}")
    for n in names:
        check(n in health.get("SQLVIGIL_REASON_TEXT", ""), f"the health reason does not name {n}: {health!r}")
    rc_got = v.wait_exit(60)
    check(rc_got == rc, f"exit status {rc_got}, expected {rc}:\n{v.dump()}")
    msgs = v.notify.snapshot()
    stop_at = [i for i, (_, f) in enumerate(msgs) if f.get("STOPPING") == "1"]
    check(stop_at, f"no STOPPING=1:\n{v.dump()}")
    status = msgs[stop_at[0]][1].get("STATUS", "")
    check(status.startswith("failed: ") and all(n in status for n in names),
          f"STATUS= with STOPPING=1 does not name {names}: {status!r}")
    late = [f for _, f in msgs[stop_at[0]:] if f.get("WATCHDOG") == "1" or f.get("READY") == "1"]
    check(not late, f"after STOPPING=1: {late}")
    check(not [f for t, f in msgs if t >= t0 and f.get("READY") == "1"], "READY=1 after the fault")
    statuses = [f["STATUS"] for _, f in msgs[stop_at[0] + 1:] if "STATUS" in f]
    if held:
        check(statuses and all(st.startswith(f"failed: pid {held} ") and "still has the old files open" in st
                               for st in statuses),
              f"STATUS= after STOPPING=1 should name pid {held}: {statuses}")
    else:
        check(not statuses, f"STATUS= changed after STOPPING=1: {statuses}")
    _, rescued = v.journal.wait("the file-rescued entry", after=t0, MESSAGE_ID=MSG_FILE_RESCUED)
    check(rescued.get("SQLVIGIL_EXIT_STATUS") == str(EXIT_RESCUED), f"file-rescued: {rescued}")
    check(rescued.get("SQLVIGIL_COMPLETE") == ("1" if complete else "0"),
          f"file-rescued COMPLETE={rescued.get('SQLVIGIL_COMPLETE')}, expected {int(complete)}: "
          f"{rescued.get('MESSAGE')!r}")
    for n in rescued_names:
        check(n in rescued.get("MESSAGE", ""), f"the file-rescued entry does not say {n!r}: {rescued.get('MESSAGE')!r}")
    check(not v.stderr, "sqlvigil wrote to stderr although the journal was there:\n" + "\n".join(v.stderr))
    return fault, rescued


def expect_hold(v, t0, pid, timeout_s, how="sqlvigil stays", who=None):
    """stop_timeout has passed with pid still attached: sqlvigil says so
    (journal, STATUS=) and stays, holding it off (how: the words that say
    how; who: how it names the process, if not by pid)."""
    what = f"{who or f'pid {pid} (python3)'} still has the old files open after {timeout_s} s; {how}"
    wait_until(lambda: [e for t, e in v.journal.snapshot() if t >= t0 and what in e.get("MESSAGE", "")],
               timeout_s + 30, f"{what!r} in the journal:\n{v.dump()}")
    wait_until(lambda: [f for t, f in v.notify.snapshot() if t >= t0 and what in f.get("STATUS", "")], 10,
               f"STATUS= saying {what!r}:\n{v.dump()}")
    check(v.proc.poll() is None, f"sqlvigil exited ({v.proc.returncode}) while pid {pid} was attached")


def restart_and_write(tmp, db, old_rows, tag, rows, name="again"):
    """The restart systemd does: sqlvigil on what the path names now,
    ready and ok; an application commits rows; stop; the file holds
    old_rows plus those, integrity ok."""
    v, _ = start(tmp, db, name=name)
    try:
        _, ready = v.journal.wait("ready", MESSAGE_ID=MSG_READY)
        check(ready.get("SQLVIGIL_HEALTH") == "ok", f"restarted, not ok: {ready.get('MESSAGE')}")
        write_rows(db, tag, rows)
        v.signal(signal.SIGTERM)
        rc = v.wait_exit(30)
        check(rc == 0, f"the restarted sqlvigil stopped with {rc}:\n{v.dump()}")
    finally:
        v.close()
    want = dict(old_rows)
    want[tag] = want.get(tag, 0) + rows
    expect_rows(db, want, "the database after the restart and the stop")


# ---- The database renamed over --------------------------------------------------

def case_rename_over(tmp):
    """The issue's input 1: an application wrote 2000 rows and exited (the
    WAL holds them), then another WAL database is renamed over the path.
    sqlvigil fails at once (file-replaced), keeps the old WAL out of the
    new file, saves the old database (its name is gone) with every row as
    PATH.deleted-TIME, exits 75; started again it supervises the new file,
    which takes 500 more rows and stays intact."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 10)
    v, _ = start(tmp, db)
    try:
        write_rows(db, "old", 2000)
        check(file_size(db + "-wal") > 0, "the old rows are not in the WAL")
        new = new_database(tmp, "new.db", "new", 7)
        t0 = time.monotonic()
        os.rename(new, db)
        fault, rescued = expect_fault(v, t0, "file-replaced", [db], ["saved the deleted database"])
        check(fault.get("SQLVIGIL_DB_STATE") == "replaced", f"DB_STATE={fault.get('SQLVIGIL_DB_STATE')}")
        # Nobody committed during the rescue: one copy is enough.
        check(", again," not in rescued["MESSAGE"], f"copied twice: {rescued['MESSAGE']!r}")
    finally:
        v.close()
    expect_rows(db, {"new": 7}, "the new file")
    expect_rows(saved_copy(tmp, "x.db"), {"seed": 10, "old": 2000}, "the old database's saved copy")
    check(aside(tmp, "x.db-wal", "stale"), f"the old -wal was not set aside: {sorted(os.listdir(tmp))}")
    restart_and_write(tmp, db, {"new": 7}, "later", 500)



def health_during_rescue(sock, reason, names):
    """sqlvigilctl health while the rescue waits: failed, the reason, the
    file named; exit 1 (unhealthy)."""
    r = ctl("-s", sock, "--json", "health")
    check(r.returncode == 1, f"sqlvigilctl health exited {r.returncode} during the rescue: {r.stdout} {r.stderr}")
    h = json.loads(r.stdout)["health"]
    check(h["state"] == "failed" and h["code"] == reason and all(n in h["reason"] for n in names),
          f"sqlvigilctl health does not say failed, {reason}, {names}: {h}")


def case_rename_over_app(tmp):
    """The same with an application still connected to the old file: it
    keeps committing into the old WAL while sqlvigil waits for it; those
    commits reach the saved copy too. sqlvigilctl health says failed,
    file-replaced. Then the application goes (it is restarted, as the
    entry asks), sqlvigil ends complete; the new file never saw a row of
    it."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 10)
    v, sock = start(tmp, db, settings(checkpoint__stop_timeout="30s"))
    app = App(db)
    try:
        app.cmd("insert old 1000")
        new = new_database(tmp, "new.db", "new", 7)
        t0 = time.monotonic()
        os.rename(new, db)
        v.journal.wait("the file-fault entry", after=t0, MESSAGE_ID=MSG_FILE_FAULT)
        # sqlvigil waits for the application: it is still attached.
        app.cmd("insert during 100")
        app.cmd("each during1 20")
        check(v.proc.poll() is None, "sqlvigil left while the application was still attached")
        health_during_rescue(sock, "file-replaced", [db])
        app.quit()
        expect_fault(v, t0, "file-replaced", [db], ["saved the deleted database", ", again, with what other "
                                                    "programs committed during the rescue"])
    finally:
        app.kill()
        v.close()
    expect_rows(db, {"new": 7}, "the new file")
    expect_rows(saved_copy(tmp, "x.db"), {"seed": 10, "old": 1000, "during": 100, "during1": 20},
                "the old database's saved copy")
    restart_and_write(tmp, db, {"new": 7}, "later", 500)


def case_rename_over_app_stays(tmp):
    """An application that stays on the old file past stop_timeout is named
    (pid and command) in the file-rescued entry, which says the rescue is
    not complete; what it committed until sqlvigil left is in the saved
    copy."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 10)
    v, sock = start(tmp, db, settings(checkpoint__stop_timeout="3s"))
    app = App(db)
    try:
        app.cmd("insert old 1000")
        new = new_database(tmp, "new.db", "new", 7)
        t0 = time.monotonic()
        os.rename(new, db)
        v.journal.wait("the file-fault entry", after=t0, MESSAGE_ID=MSG_FILE_FAULT)
        app.cmd("insert during 100")
        expect_fault(v, t0, "file-replaced", [db], [f"pid {app.pid} (python3) still has the old files open"],
                     complete=False)
        app.quit()
    finally:
        app.kill()
        v.close()
    expect_rows(db, {"new": 7}, "the new file")
    expect_rows(saved_copy(tmp, "x.db"), {"seed": 10, "old": 1000, "during": 100}, "the old database's saved copy")



# ---- The database renamed away, its directory renamed ------------------------------

def case_rename_away(tmp):
    """The database renamed to another name in its directory while an
    application is attached: the old -wal and -shm follow it (OTHER-wal,
    OTHER-shm, where SQLite looks for them), what the application commits
    meanwhile is drained into it, and it opens with every row; the path
    stays empty (a new start finds no database: exit 66)."""
    db = os.path.join(tmp, "x.db")
    other = os.path.join(tmp, "renamed.db")
    make_db(db, "seed", 10)
    v, sock = start(tmp, db, settings(checkpoint__stop_timeout="30s"))
    app = App(db)
    try:
        app.cmd("insert old 1000")
        t0 = time.monotonic()
        os.rename(db, other)
        v.journal.wait("the file-fault entry", after=t0, MESSAGE_ID=MSG_FILE_FAULT)
        app.cmd("insert during 50")
        health_during_rescue(sock, "file-deleted", [db])
        app.quit()
        fault, _ = expect_fault(v, t0, "file-deleted", [db],
                                [f"the database sqlvigil had open is now {tmp}/renamed.db",
                                 f"moved {db}-wal to {other}-wal", f"moved {db}-shm to {other}-shm",
                                 "drained the old WAL into renamed.db"])
        check(fault.get("SQLVIGIL_DB_STATE") == "gone", f"DB_STATE={fault.get('SQLVIGIL_DB_STATE')}")
    finally:
        app.kill()
        v.close()
    check(not os.path.exists(db) and not os.path.exists(db + "-wal") and not os.path.exists(db + "-shm"),
          f"files at the old path: {sorted(os.listdir(tmp))}")
    check(file_size(other + "-wal") == 0, f"{other}-wal still holds {file_size(other + '-wal')} bytes: not drained")
    expect_rows(other, {"seed": 10, "old": 1000, "during": 50}, "the renamed database")
    # Nothing to supervise at the path: the next start says so (66), and
    # leaves the renamed database alone.
    r = subprocess.run([SQLVIGIL, "--database", db], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, RUNTIME_DIRECTORY=tempfile.mkdtemp(dir=tmp)))
    check(r.returncode == 66 and db in r.stderr, f"a start on the empty path: {r.returncode} {r.stderr}")
    expect_rows(other, {"seed": 10, "old": 1000, "during": 50}, "the renamed database")


def case_directory_renamed(tmp):
    """The database's directory renamed: the database, its -wal and -shm
    stay together in the moved directory, the WAL is drained into the
    database there, and it opens with every row."""
    d = os.path.join(tmp, "data")
    os.mkdir(d)
    db = os.path.join(d, "x.db")
    make_db(db, "seed", 10)
    v, _ = start(tmp, db)
    try:
        write_rows(db, "old", 1000)
        t0 = time.monotonic()
        os.rename(d, os.path.join(tmp, "moved"))
        expect_fault(v, t0, "file-deleted", [f"the directory {d} was moved", db],
                     ["drained the old WAL into"])
    finally:
        v.close()
    moved = os.path.join(tmp, "moved", "x.db")
    check(file_size(moved + "-wal") == 0, f"{moved}-wal holds {file_size(moved + '-wal')} bytes: not drained")
    expect_rows(moved, {"seed": 10, "old": 1000}, "the database in the moved directory")



# ---- The -wal and -shm deleted or replaced ---------------------------------------------

def lock_owner(path, byte):
    """The pid holding a write lock on one byte of path (F_GETLK: takes
    none), 0 when nobody does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        req = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
        got = fcntl.fcntl(fd, fcntl.F_GETLK, req)
        kind, _, _, _, pid = struct.unpack("hhqqi", got)
        return pid if kind == fcntl.F_WRLCK else 0
    finally:
        os.close(fd)


def rm_wal_shm(db):
    """rm -f DB-wal DB-shm: two unlinks, and sqlvigil may react between
    them (moving the -shm aside, then fencing the path): the second may
    find nothing, or remove the fence."""
    os.unlink(db + "-wal")
    try:
        os.unlink(db + "-shm")
    except FileNotFoundError:
        pass


def committed_app(db, rows=3000, in_wal=(100, 100, 100)):
    """The issue's application: rows checkpointed into the database file,
    then commits that are in the WAL only; it stays attached."""
    app = App(db)
    app.cmd(f"insert base {rows}")
    app.cmd("checkpoint")
    for i, n in enumerate(in_wal):
        app.cmd(f"insert wal{i} {n}")
    return app


def expect_fence(v, db, old_shm):
    """While the rescue waits: a new, empty file at the -shm path with a
    write lock on byte 128 held by sqlvigil, so that programs opening the
    database now fail instead of starting a second WAL. Polled: the
    file-fault entry is written when the fault is seen, and the old -shm
    may still be at its path for a moment after it, until the rescue has
    moved it aside and put the fence there."""
    shm = db + "-shm"
    seen = {}

    def fence():
        try:
            st = os.stat(shm)
            seen["ino"], seen["owner"] = st.st_ino, lock_owner(shm, 128)
        except FileNotFoundError:
            seen["ino"], seen["owner"] = None, None
            return False
        return (old_shm is None or seen["ino"] != old_shm) and seen["owner"] == v.pid

    try:
        wait_until(fence, 10, "the fence at " + shm)
    except Failure as e:
        what = ("nothing" if seen.get("ino") is None else
                "the old -shm" if seen["ino"] == old_shm else
                f"a new file, byte 128 locked by pid {seen['owner']}, not by sqlvigil ({v.pid})")
        raise Failure(f"{e}: {what} is there; files: {sorted(os.listdir(os.path.dirname(db)))}\n{v.dump()}")


def wal_shm_deleted_held(tmp, v, sock, db, app, probe_fence=False):
    """-wal and -shm deleted under the application; sqlvigil fences, drains,
    and once stop_timeout (3 s) has passed with the application still
    attached, stays. probe_fence: a new connection tries to read through
    the fence (SQLite retries for about 10 s before "locking protocol").
    Returns (t0, the rows committed so far)."""
    old_shm = os.stat(db + "-shm").st_ino
    t0 = time.monotonic()
    rm_wal_shm(db)
    v.journal.wait("the file-fault entry", after=t0, MESSAGE_ID=MSG_FILE_FAULT)
    expect_fence(v, db, old_shm)
    app.cmd("insert during 10")
    # Two unlinks: sqlvigil may see the -wal gone before the -shm (then
    # it moved the -shm aside, and the second unlink removed the fence,
    # which it puts back).
    health_during_rescue(sock, "wal-displaced", [db + "-wal"])
    expect_hold(v, t0, app.pid, 3)
    # Held: the fence still keeps new connections out, and what the
    # application commits now is drained into the database.
    expect_fence(v, db, None)
    if probe_fence:
        probe = sqlite3.connect(db, isolation_level=None, timeout=0)
        try:
            probe.execute("SELECT count(*) FROM t").fetchone()
            raise Failure("a new connection read the database through the fence while sqlvigil held it")
        except sqlite3.Error as e:
            check("locking protocol" in str(e), f"a new connection got {e}")
        finally:
            probe.close()
    app.cmd("insert held 5")
    want = {"base": 3000, "wal0": 100, "wal1": 100, "wal2": 100, "during": 10, "held": 5}
    copy = os.path.join(tmp, "copy.db")

    def drained():
        shutil.copyfile(db, copy)
        try:
            return tags(copy)[0] == want
        except sqlite3.Error:
            return False
    wait_until(drained, 30, "the rows committed during the hold, drained into the database file")
    return t0, want


def case_wal_shm_deleted(tmp):
    """The issue's input 2: -wal and -shm deleted while an application and
    sqlvigil have the database open (3000 rows checkpointed, 300 only in
    the WAL). At once wal-displaced, naming both files; a fence keeps new
    connections out while sqlvigil drains the deleted WAL into the
    database, including what the application commits meanwhile. The
    application is still attached at stop_timeout: leaving then would let
    a new connection start a second WAL beside its one, so sqlvigil stays,
    names it (journal, STATUS=), keeps the fence and goes on draining; once
    the application leaves, the rescue is complete: exit 75. A new program
    sees every committed row, and 100 rows committed then survive the stop."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 0)
    v, sock = start(tmp, db, settings(checkpoint__stop_timeout="3s"))
    app = committed_app(db)
    try:
        t0, want = wal_shm_deleted_held(tmp, v, sock, db, app, probe_fence=True)
        app.quit()  # the operator restarts the application, as the entry says
        fault, _ = expect_fault(v, t0, "wal-displaced", [db + "-wal"],
                                [f"fenced {db}-shm", f"pid {app.pid} (python3) still has the old files open",
                                 f"removed the fence {db}-shm"], held=app.pid)
        check(fault.get("SQLVIGIL_WAL_STATE") == "deleted", f"file-fault states: {fault}")
        check(not os.path.exists(db + "-shm"), "the fence was left behind")
    finally:
        app.kill()
        v.close()
    expect_rows(db, want, "the database, as a new program sees it")
    restart_and_write(tmp, db, want, "later", 100)


def wal_shm_deleted_stopped(tmp, early):
    """-wal and -shm deleted under an attached application; the operator
    stops sqlvigil (SIGTERM) while it holds the application off, or
    (early) during the rescue, before stop_timeout: then it leaves at
    stop_timeout at the latest. Either way everything committed until then
    is drained into the database, the file-rescued entry says the rescue is
    not complete, names the application and says to stop it and check the
    database. A start while the application is still attached is refused,
    naming it. Once it is gone: sqlvigil starts, a new program sees every
    committed row."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 0)
    v, sock = start(tmp, db, settings(checkpoint__stop_timeout="3s"))
    app = committed_app(db)
    try:
        if early:
            old_shm = os.stat(db + "-shm").st_ino
            t0 = time.monotonic()
            rm_wal_shm(db)
            v.journal.wait("the file-fault entry", after=t0, MESSAGE_ID=MSG_FILE_FAULT)
            expect_fence(v, db, old_shm)
            v.signal(signal.SIGTERM)
            app.cmd("insert last 7")
            want = {"base": 3000, "wal0": 100, "wal1": 100, "wal2": 100, "last": 7}
        else:
            t0, want = wal_shm_deleted_held(tmp, v, sock, db, app)
            # Committed just before the stop: drained all the same.
            app.cmd("insert last 7")
            want["last"] = 7
            v.signal(signal.SIGTERM)
        fault, _ = expect_fault(v, t0, "wal-displaced", [db + "-wal"],
                                [f"told to stop while pid {app.pid} (python3) still has the old files open",
                                 "PRAGMA integrity_check", f"removed the fence {db}-shm"],
                                complete=False, held=None if early else app.pid)
        check(not os.path.exists(db + "-shm"), "the fence was left behind")
        # The application still runs on the deleted files: no start.
        v2, _ = start(tmp, db, name="early", wait_ready=False)
        try:
            rc = v2.wait_exit(30)
            check(rc == 1, f"sqlvigil started ({rc}) while pid {app.pid} was still on the deleted -shm:\n{v2.dump()}")
            check(not v2.notify.find("READY", "1"), "READY=1 from the refused start")
            _, failed = v2.journal.wait("start-failed", MESSAGE_ID=MSG_START_FAILED)
            check(f"pid {app.pid}" in failed["MESSAGE"] and db in failed["MESSAGE"],
                  f"the refusal does not name the application and the database: {failed['MESSAGE']!r}")
        finally:
            v2.close()
        app.quit()
    finally:
        app.kill()
        v.close()
    expect_rows(db, want, "the database, as a new program sees it")
    restart_and_write(tmp, db, want, "later", 100)


def case_wal_shm_deleted_stop(tmp):
    wal_shm_deleted_stopped(tmp, early=False)


def case_wal_shm_deleted_early_stop(tmp):
    wal_shm_deleted_stopped(tmp, early=True)



def displaced(tmp, mode):
    """One of the -wal and -shm deleted, or another database's -wal renamed
    over the -wal, while an application is attached with commits in the
    WAL only. A fence at the -shm path in every case (the -shm still at its
    path is moved aside first: a new connection must not attach to an index
    whose WAL is gone); the application commits during the rescue and then
    leaves; the rescue is complete; the restart finds nothing stale; a new
    program sees every row; 100 more survive the stop. A foreign -wal is
    set aside untouched, never replayed."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 0)
    v, sock = start(tmp, db, settings(checkpoint__stop_timeout="30s"))
    app = committed_app(db, 1000)
    foreign_bytes = None
    try:
        old_shm = os.stat(db + "-shm").st_ino
        if mode == "foreign":
            # Another database with frames in its WAL, its -wal kept (an
            # open connection, then the file copied while it is open).
            other = os.path.join(tmp, "other.db")
            make_db(other, "seed", 0)
            holder = App(other)
            holder.cmd("insert foreign 500")
            shutil.copyfile(other + "-wal", os.path.join(tmp, "foreign-wal"))
            holder.quit()
            with open(os.path.join(tmp, "foreign-wal"), "rb") as f:
                foreign_bytes = f.read()
            check(len(foreign_bytes) > 32, "the foreign -wal is empty")
        t0 = time.monotonic()
        if mode == "wal":
            os.unlink(db + "-wal")
            names, states = [db + "-wal"], ("deleted", "ok")
        elif mode == "shm":
            os.unlink(db + "-shm")
            names, states = [db + "-shm"], ("ok", "deleted")
        else:
            os.rename(os.path.join(tmp, "foreign-wal"), db + "-wal")
            names, states = [db + "-wal"], ("replaced", "ok")
        v.journal.wait("the file-fault entry", after=t0, MESSAGE_ID=MSG_FILE_FAULT)
        expect_fence(v, db, old_shm)
        if mode == "wal":
            # rm DB-wal DB-shm racing with sqlvigil, which had just moved the
            # -shm aside: the second rm removes the fence; it comes back.
            os.unlink(db + "-shm")
            # (Its inode number may well be the removed fence's again.)
            expect_fence(v, db, None)
        app.cmd("insert during 10")
        health_during_rescue(sock, "wal-displaced", names)
        app.quit()
        extra = ([f"set {db}-wal aside as {db}-wal.foreign-"] if mode == "foreign" else
                 [f"the fence {db}-shm was removed; fenced it again"] if mode == "wal" else [])
        fault, _ = expect_fault(v, t0, "wal-displaced", names, [f"fenced {db}-shm", f"removed the fence {db}-shm"]
                                + extra)
        check((fault.get("SQLVIGIL_WAL_STATE"), fault.get("SQLVIGIL_SHM_STATE")) == states,
              f"file-fault states {fault.get('SQLVIGIL_WAL_STATE')}, {fault.get('SQLVIGIL_SHM_STATE')}, "
              f"expected {states}")
    finally:
        app.kill()
        v.close()
    want = {"base": 1000, "wal0": 100, "wal1": 100, "wal2": 100, "during": 10}
    if mode == "foreign":
        found = aside(tmp, "x.db-wal", "foreign")
        check(len(found) == 1, f"the foreign -wal set aside: {sorted(os.listdir(tmp))}")
        with open(found[0], "rb") as f:
            check(f.read() == foreign_bytes, "the foreign -wal was changed")
    copy = os.path.join(tmp, "copy.db")
    shutil.copyfile(db, copy)
    expect_rows(copy, want, "a copy of the database file alone")
    expect_rows(db, want, "the database, as a new program sees it")
    v, _ = start(tmp, db, name="restart")
    try:
        v.signal(signal.SIGTERM)
        check(v.wait_exit(30) == 0, f"the restart did not stop cleanly:\n{v.dump()}")
    finally:
        v.close()
    check(not v.journal.find(MESSAGE_ID=MSG_STALE_WAL),
          f"the restart set files aside although nothing was stale:\n{v.journal.dump()}")
    restart_and_write(tmp, db, want, "later", 100)


def case_wal_deleted(tmp):
    displaced(tmp, "wal")


def case_shm_deleted(tmp):
    displaced(tmp, "shm")


def case_foreign_wal(tmp):
    displaced(tmp, "foreign")



# ---- Content copied over in place ------------------------------------------------------

def case_cp_over(tmp):
    """The issue's input 4: an older, smaller copy copied with cp over the
    live database (same inode) while the WAL holds 2000 newer rows. A new
    connection would mix the two; sqlvigil's fresh look after the write
    sees it: overwritten, exit 75; the old WAL is set aside, not replayed;
    the file holds the copy's rows, intact; restarted, it takes 500 more."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 10)
    older = os.path.join(tmp, "older.db")
    shutil.copyfile(db, older)
    v, _ = start(tmp, db)
    try:
        # 2000 rows checkpointed into the file (it grows past the copy),
        # 1000 more in the WAL only.
        app = App(db)
        app.cmd("insert old 2000")
        app.cmd("checkpoint")
        app.cmd("insert new 1000")
        app.quit()
        check(file_size(db) > file_size(older), "the database did not grow")
        ino = os.stat(db).st_ino
        t0 = time.monotonic()
        subprocess.run(["cp", older, db], check=True)
        check(os.stat(db).st_ino == ino, "cp replaced the inode")
        expect_fault(v, t0, "overwritten", [db], [f"set {db}-wal aside as {db}-wal.stale-"])
    finally:
        v.close()
    stale = aside(tmp, "x.db-wal", "stale")
    check(len(stale) == 1 and file_size(stale[0]) > 0, f"the old WAL, set aside with its frames: {stale}")
    expect_rows(db, {"seed": 10}, "the copied-in content")
    restart_and_write(tmp, db, {"seed": 10}, "later", 500)


def overwritten_with_app(tmp, pidns=False):
    """A database (10 rows) and an older copy of it; sqlvigil on it
    (stop_timeout 3 s); an application attached with 2000 rows checkpointed
    into the file (it grows past the copy) and 1000 in the WAL only.
    Returns (db, the copy, the Vigil, the App)."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 10)
    older = os.path.join(tmp, "older.db")
    shutil.copyfile(db, older)
    v, _ = start(tmp, db, settings(checkpoint__stop_timeout="3s"), pidns=pidns)
    app = None
    try:
        app = App(db)
        app.cmd("insert old 2000")
        app.cmd("checkpoint")
        app.cmd("insert new 1000")
    except BaseException:
        if app:
            app.kill()
        v.close()
        raise
    return db, older, v, app


def case_cp_over_app_stays(tmp):
    """cp over the live database while an application stays attached, with
    1000 rows in the WAL only and a write transaction open (it holds the
    write lock all along), past stop_timeout: the application's next
    checkpoint (its autocheckpoint, or the one at its last close) would copy
    those frames into the copied-in content, and the file would fail
    integrity_check. So sqlvigil stays, holding the old WAL's checkpoint
    lock (the one that matters; it cannot have the write lock yet), and
    says so; once the application commits, the write lock too. The
    application's checkpoint is turned away; once it has left (its close
    cannot checkpoint either), the rescue is complete: exit 75; the file
    holds the copy's rows, intact."""
    db, older, v, app = overwritten_with_app(tmp)
    try:
        app.cmd("begin open 10")
        t0 = time.monotonic()
        subprocess.run(["cp", older, db], check=True)
        expect_hold(v, t0, app.pid, 3, "sqlvigil stays and holds the old WAL's checkpoint lock, so that")
        shm = aside(tmp, "x.db-shm", "stale")
        check(len(shm) == 1, f"the old -shm set aside: {sorted(os.listdir(tmp))}")
        check(lock_owner(shm[0], 121) == v.pid, f"the checkpoint lock of {shm[0]} is held by pid "
                                                f"{lock_owner(shm[0], 121)}, not by sqlvigil ({v.pid})")
        app.cmd("commit")
        expect_hold(v, t0, app.pid, 3, "sqlvigil stays and holds the old WAL's checkpoint and write locks")
        check(lock_owner(shm[0], 120) == v.pid, f"the write lock of {shm[0]} is not sqlvigil's")
        line = app.cmd("checkpoint")
        check(line.startswith("ok (1, -1, -1)"), f"the application's checkpoint was not turned away: {line!r}")
        app.quit()
        expect_fault(v, t0, "overwritten", [db],
                     [f"set {db}-wal aside as {db}-wal.stale-", f"pid {app.pid} (python3) still has the old files open"],
                     held=app.pid)
    finally:
        app.kill()
        v.close()
    expect_rows(db, {"seed": 10}, "the copied-in content, after the application left")
    restart_and_write(tmp, db, {"seed": 10}, "later", 500)


def case_cp_over_app_other_pidns(tmp):
    """As cp_over_app_stays, with sqlvigil in a PID namespace of its own (a
    container) and the application outside it: F_GETLK names the
    application's lock with pid 0 there. It still counts: sqlvigil stays,
    holding the checkpoint lock, describes the application as a process in
    another PID namespace, and leaves once it is gone; the file holds the
    copy's rows, intact."""
    db, older, v, app = overwritten_with_app(tmp, pidns=True)
    try:
        t0 = time.monotonic()
        subprocess.run(["cp", older, db], check=True)
        expect_hold(v, t0, None, 3, "sqlvigil stays and holds the old WAL's checkpoint",
                    who="a process in another PID namespace (its pid is not visible here; fuser -v on the old "
                        "-shm, from its namespace, names it)")
        line = app.cmd("checkpoint")
        check(line.startswith("ok (1, -1, -1)"), f"the application's checkpoint was not turned away: {line!r}")
        app.quit()
        rc = v.wait_exit(60)
        check(rc == EXIT_RESCUED, f"exit status {rc}:\n{v.dump()}")
    finally:
        app.kill()
        v.close()
    expect_rows(db, {"seed": 10}, "the copied-in content, after the application left")


def case_cp_over_wal(tmp):
    """Another database's -wal copied with cp over the live -wal (same
    inode): its header no longer matches the WAL index; overwritten, exit
    75; the -wal is set aside, never checkpointed into the database, which
    keeps what it held (the seed rows), intact."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 10)
    other = os.path.join(tmp, "other.db")
    make_db(other, "seed", 0)
    holder = App(other)
    holder.cmd("insert foreign 300")
    shutil.copyfile(other + "-wal", os.path.join(tmp, "foreign-wal"))
    holder.quit()
    v, _ = start(tmp, db)
    try:
        write_rows(db, "old", 200)
        ino = os.stat(db + "-wal").st_ino
        t0 = time.monotonic()
        subprocess.run(["cp", os.path.join(tmp, "foreign-wal"), db + "-wal"], check=True)
        check(os.stat(db + "-wal").st_ino == ino, "cp replaced the inode")
        # Seen by the salts of the -wal and its index, or by a fresh
        # connection's look, whichever comes first: the text names the
        # database either way.
        expect_fault(v, t0, "overwritten", [db], [f"set {db}-wal aside as {db}-wal.stale-"])
    finally:
        v.close()
    expect_rows(db, {"seed": 10}, "the database")
    restart_and_write(tmp, db, {"seed": 10}, "later", 100)



def case_cp_over_wal_checkpoint(tmp):
    """A checkpoint asked for between a cp over the -wal and the health
    rounds that see it (here: sqlvigilctl checkpoint, with rounds every 2
    s, and no program closing the database, which would bring a fresh look
    sooner): it must not copy the foreign frames into the database. It
    fails, saying why; then the rescue; the database keeps its rows,
    intact."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 10)
    other = os.path.join(tmp, "other.db")
    make_db(other, "seed", 0)
    holder = App(other)
    holder.cmd("insert foreign 300")
    shutil.copyfile(other + "-wal", os.path.join(tmp, "foreign-wal"))
    holder.quit()
    v, sock = start(tmp, db, settings(health__interval="2s"), watchdog=None)
    app = App(db)
    try:
        app.cmd("insert old 200")  # stays attached: no close, no fresh look
        t0 = time.monotonic()
        subprocess.run(["cp", os.path.join(tmp, "foreign-wal"), db + "-wal"], check=True)
        for mode in ("passive", "truncate"):
            r = ctl("-s", sock, "--json", "checkpoint", mode)
            check(r.returncode == 1, f"checkpoint {mode} after the cp: exit {r.returncode}: {r.stdout} {r.stderr}")
            c = json.loads(r.stdout).get("checkpoint", {})
            check(c.get("result") == "failed" and "no longer matches its WAL index" in c.get("summary", ""),
                  f"checkpoint {mode} after the cp: {r.stdout}")
        v.journal.wait("the file-fault entry", after=t0, timeout=30, MESSAGE_ID=MSG_FILE_FAULT)
        app.quit()
        expect_fault(v, t0, "overwritten", [db], [f"set {db}-wal aside as {db}-wal.stale-"])
    finally:
        app.kill()
        v.close()
    expect_rows(db, {"seed": 10}, "the database")
    restart_and_write(tmp, db, {"seed": 10}, "later", 100)


# ---- A stale -wal found at start ----------------------------------------------------------

def case_stale_wal_at_start(tmp):
    """While sqlvigil is not running, an application (killed, so its -wal
    stays with 300 rows in it) and then a new database renamed over the
    path: the mark beside it says the -wal belongs to the old file. At
    start sqlvigil sets it aside (a stale-wal entry naming it) instead of
    letting SQLite replay it into the new file, which stays intact and
    takes more rows. When the old database was only renamed away in the
    same directory, its -wal goes back beside it and it opens with every
    row."""
    for variant in ("deleted", "renamed"):
        sub = os.path.join(tmp, variant)
        os.mkdir(sub)
        db = os.path.join(sub, "x.db")
        make_db(db, "seed", 10)
        v, _ = start(sub, db)
        v.signal(signal.SIGTERM)
        check(v.wait_exit(30) == 0, v.dump())
        v.close()
        check(os.path.exists(db + "-sqlvigil"), "no mark beside the database")
        app = App(db)
        app.cmd("insert old 300")
        app.kill()
        check(file_size(db + "-wal") > 0, "the killed application left no frames")
        if variant == "renamed":
            os.rename(db, os.path.join(sub, "old.db"))
        new = new_database(sub, "new.db", "new", 7)
        os.rename(new, db)
        v, _ = start(sub, db, name="stale")
        try:
            _, e = v.journal.wait("the stale-wal entry", MESSAGE_ID=MSG_STALE_WAL)
            moved_to = f"{sub}/old.db-wal" if variant == "renamed" else f"{db}-wal.stale-"
            check(f"{db}-wal -> {moved_to}" in e["MESSAGE"] and e.get("PRIORITY") == "4",
                  f"the stale-wal entry does not say where {db}-wal went: {e['MESSAGE']!r}")
            _, ready = v.journal.wait("ready", MESSAGE_ID=MSG_READY)
            check(ready.get("SQLVIGIL_HEALTH") == "ok", ready["MESSAGE"])
            v.signal(signal.SIGTERM)
            check(v.wait_exit(30) == 0, v.dump())
        finally:
            v.close()
        expect_rows(db, {"new": 7}, "the new file")
        if variant == "renamed":
            expect_rows(os.path.join(sub, "old.db"), {"seed": 10, "old": 300}, "the renamed old database")
        else:
            found = aside(sub, "x.db-wal", "stale")
            check(len(found) == 1 and file_size(found[0]) > 0, f"the stale -wal with its frames: {found}")
        restart_and_write(sub, db, {"new": 7}, "later", 50)



# ---- The file system turns read-only ---------------------------------------------------

def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, **kw)


def case_read_only(tmp):
    """The issue's input 3: an ext4 file system mounted with
    errors=remount-ro turns read-only under the database (an error
    triggered through /sys/fs/ext4/DEV/trigger_fs_error; the kernel shows
    no ST_RDONLY then). Health is failed at once with reason read-only and
    the file named, the watchdog pings stop; a start on that file system,
    and on one mounted read-only, never says READY=1. The rows committed
    before survive."""
    if os.geteuid() != 0:
        raise Skip("needs root to attach a loop device and mount an ext4 image")
    for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
        if not shutil.which(tool):
            raise Skip(f"{tool} is not installed")
    if not os.path.exists("/dev/loop-control"):
        raise Skip("no loop devices (/dev/loop-control)")
    img, mnt = os.path.join(tmp, "fs.img"), os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    r = sh("mkfs.ext4", "-q", "-F", img)
    check(r.returncode == 0, f"mkfs.ext4: {r.stderr}")
    r = sh("losetup", "--find", "--show", img)
    if r.returncode != 0:
        raise Skip(f"no free loop device: {r.stderr.strip()}")
    dev = r.stdout.strip()
    mounted = False
    v = None
    try:
        r = sh("mount", "-t", "ext4", "-o", "errors=remount-ro", dev, mnt)
        if r.returncode != 0:
            raise Skip(f"cannot mount an ext4 image: {r.stderr.strip()}")
        mounted = True
        trigger = f"/sys/fs/ext4/{os.path.basename(dev)}/trigger_fs_error"
        if not os.path.exists(trigger):
            raise Skip(f"{trigger} does not exist (kernel older than 5.x), and a mounted file system in use "
                       "cannot be remounted read-only")
        db = os.path.join(mnt, "x.db")
        make_db(db, "seed", 10)
        v, _ = start(tmp, db)
        write_rows(db, "old", 500)
        v.notify.wait_for("WATCHDOG", "1", after=time.monotonic(), timeout=10)
        t0 = time.monotonic()
        with open(trigger, "w") as f:
            f.write("sqlvigil test\n")
        _, h = v.journal.wait("health failed", after=t0, MESSAGE_ID=MSG_HEALTH, SQLVIGIL_HEALTH="failed")
        check(h.get("SQLVIGIL_REASON") == "read-only", f"health reason {h.get('SQLVIGIL_REASON')}: {h['MESSAGE']!r}")
        check(f"{db}-sqlvigil" in h.get("SQLVIGIL_REASON_TEXT", "") and "Read-only file system" in h["MESSAGE"],
              f"the reason does not name the file and the kernel's error: {h['MESSAGE']!r}")
        msgs = v.notify.snapshot()
        failed_at = [i for i, (t, f) in enumerate(msgs) if t >= t0 and f.get("STATUS", "").startswith("failed")]
        if not failed_at:
            wait_until(lambda: [f for t, f in v.notify.snapshot() if t >= t0 and
                                f.get("STATUS", "").startswith("failed")], 10, "STATUS=failed")
            msgs = v.notify.snapshot()
            failed_at = [i for i, (t, f) in enumerate(msgs) if t >= t0 and f.get("STATUS", "").startswith("failed")]
        check("read-only" in msgs[failed_at[0]][1]["STATUS"] or "Read-only" in msgs[failed_at[0]][1]["STATUS"],
              f"STATUS= {msgs[failed_at[0]][1]['STATUS']!r}")
        # Several health rounds (250 ms each) and a watchdog period later:
        # still no ping since the failure.
        wait_until(lambda: v.journal.find(after=t0 + 2.5) or time.monotonic() > t0 + 2.5, 10, "two seconds")
        pings = [f for _, f in v.notify.snapshot()[failed_at[0]:] if f.get("WATCHDOG") == "1"]
        check(not pings, f"{len(pings)} WATCHDOG=1 after health failed:\n{v.dump()}")
        v.signal(signal.SIGTERM)
        v.wait_exit(40)
        v.close()
        v = None
        # A start on the read-only file system: never ready.
        for how in ("emergency", "mounted ro"):
            if how == "mounted ro":
                check(sh("umount", mnt).returncode == 0, "umount")
                mounted = False
                sh("e2fsck", "-fy", dev)
                # (Right after the umount, mount may still find the device
                # busy for a moment.)
                wait_until(lambda: sh("mount", "-t", "ext4", "-o", "ro", dev, mnt).returncode == 0, 20,
                           f"mount -o ro {dev}")
                mounted = True
            v, _ = start(tmp, db, name=f"ro{len(how)}", wait_ready=False)
            rc = v.wait_exit(40)
            check(rc not in (0, EXIT_RESCUED) and not v.notify.find("READY", "1"),
                  f"a start on a read-only file system ({how}): exit {rc}:\n{v.dump()}")
            _, e = v.journal.wait("start-failed", MESSAGE_ID=MSG_START_FAILED)
            check("read-only" in e["MESSAGE"].lower() and db in e["MESSAGE"],
                  f"the refusal ({how}) does not say read-only and name the file: {e['MESSAGE']!r}")
            v.close()
            v = None
        check(sh("umount", mnt).returncode == 0, "umount")
        mounted = False
        wait_until(lambda: sh("mount", "-t", "ext4", dev, mnt).returncode == 0, 20, f"mount {dev}")
        mounted = True
        expect_rows(db, {"seed": 10, "old": 500}, "the database after the file system came back")
    finally:
        if v:
            v.close()
        if mounted:
            sh("umount", "-l", mnt)
        sh("losetup", "-d", dev)


# ---- Output paths that name the database's files ---------------------------------------

def case_output_paths(tmp):
    """[control] socket, [metrics] textfile and [backup] directory set to
    the database, its -wal, -shm, -journal, the mark, the configuration
    file (also through a symbolic link to the directory), or to each other:
    --check-config and a start exit 78 naming both, and nothing is touched.
    A regular file at the socket path is never removed."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 10)
    for suffix in ("-wal", "-shm", "-journal", "-sqlvigil"):
        with open(db + suffix, "ab"):
            pass  # they exist, as they do beside a live database
    before = {f: os.stat(os.path.join(tmp, f)) for f in os.listdir(tmp)}
    conf = os.path.join(tmp, "o.conf")
    os.symlink(tmp, os.path.join(tmp, "link"))
    targets = [(db, "the database"), (db + "-wal", "the database's -wal"), (db + "-shm", "the database's -shm"),
               (db + "-journal", "the database's -journal"),
               (db + "-sqlvigil", "sqlvigil's mark beside the database"), (conf, "the configuration file"),
               (os.path.join(tmp, "link", "x.db"), "the database")]
    keys = [("control", "socket"), ("metrics", "textfile"), ("backup", "directory")]
    env = dict(os.environ, RUNTIME_DIRECTORY=tempfile.mkdtemp(dir=tmp))

    def refused(text, what, names):
        write_config(conf, f"[database]\npath = {db}\n{text}")
        for args in (["--check-config", "--config", conf], ["--config", conf]):
            r = subprocess.run([SQLVIGIL] + args, capture_output=True, text=True, timeout=30, env=env)
            check(r.returncode == EXIT_CONFIG, f"{what}, {args[0]}: exit {r.returncode}, expected 78: {r.stderr}")
            for n in names:
                check(n in r.stderr, f"{what}, {args[0]}: the message does not name {n!r}: {r.stderr}")

    for section, key in keys:
        for path, name in targets:
            refused(f"[{section}]\n{key} = {path}\n", f"{section}.{key} = {name}", [f"[{section}] {key}", path, name])
    for (s1, k1), (s2, k2) in ((keys[0], keys[1]), (keys[0], keys[2]), (keys[1], keys[2])):
        out = os.path.join(tmp, "out")
        refused(f"[{s1}]\n{k1} = {out}\n[{s2}]\n{k2} = {out}\n", f"{k1} = {k2}",
                [f"[{s1}] {k1}", f"[{s2}] {k2}", out])
    after = {f: os.stat(os.path.join(tmp, f)) for f in before}
    for f, st in before.items():
        check((after[f].st_ino, after[f].st_size, after[f].st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns),
              f"{f} was touched")
    expect_rows(db, {"seed": 10}, "the database")
    # A regular file at the socket path (no database's): refused, kept.
    notes = os.path.join(tmp, "notes.txt")
    with open(notes, "w") as f:
        f.write("keep me\n")
    write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {notes}\n")
    v = Vigil(tmp, ["--config", conf], name="notes")
    try:
        rc = v.wait_exit(30)
        check(rc != 0 and not v.notify.find("READY", "1"), f"started on a socket path taken by a file: {rc}")
        _, e = v.journal.wait("start-failed", MESSAGE_ID=MSG_START_FAILED)
        check(notes in e["MESSAGE"] and "not a socket" in e["MESSAGE"], f"start-failed: {e['MESSAGE']!r}")
    finally:
        v.close()
    with open(notes) as f:
        check(f.read() == "keep me\n", f"{notes} was changed")



# ---- sqlvigil killed in the middle of its reaction -----------------------------------------

KILL_TRIALS = 20


def kill_trial(tmp, mode, delay):
    """One trial: the fault, SIGKILL after delay seconds (or none when
    delay is None), then what an operator does next: the applications
    restarted, sqlvigil started again and stopped after an application
    committed more. Returns (killed, reaction seconds, old copy found).

    A database renamed over has no name left: only sqlvigil's descriptor
    keeps it, and no process can give it a name back. Killed before its
    copy is complete (the first milliseconds), its rows are gone with the
    process: such trials are counted, not failed; a sqlvigil that was not
    killed must have made the copy."""
    db = os.path.join(tmp, "x.db")
    make_db(db, "seed", 5)
    v, _ = start(tmp, db, settings(checkpoint__stop_timeout="2s"))
    app = None
    killed = saved = False
    try:
        if mode == "rename":
            write_rows(db, "old", 200)
            new = new_database(tmp, "new.db", "new", 3)
        else:
            app = committed_app(db, 200, (20, 20))
        t0 = time.monotonic()
        if mode == "rename":
            os.rename(new, db)
        else:
            rm_wal_shm(db)
        if delay is not None:
            time.sleep(delay)  # the random point of the reaction: what the trial is about
            killed = v.proc.poll() is None
            v.kill()
        elif app:
            # sqlvigil stays while the application is attached to the
            # deleted WAL, and names it: the operator restarts it then.
            expect_hold(v, t0, app.pid, 2)
            app.quit()
        rc = v.wait_exit(30)
        reaction = time.monotonic() - t0
        check(killed or rc == EXIT_RESCUED, f"exit {rc}:\n{v.dump()}")
    finally:
        v.close()
        if app:
            app.quit()  # the operator restarts the applications
    # systemd starts sqlvigil again (before that, a program opening the
    # path could still meet the old -wal: what the mark is for); then
    # nothing corrupt anywhere, nothing committed lost.
    if mode == "rename":
        restart_and_write(tmp, db, {"new": 3}, "later", 20, name="after")
        copies = aside(tmp, "x.db", "deleted")
        check(copies or killed, "sqlvigil exited without saving the old database")
        if copies:
            saved = True
            expect_rows(copies[0], {"seed": 5, "old": 200}, "the saved copy")
    else:
        want = {"seed": 5, "base": 200, "wal0": 20, "wal1": 20}
        restart_and_write(tmp, db, want, "later", 20, name="after")
    leftovers = [f for f in os.listdir(tmp) if f.endswith(".tmp")]
    check(not leftovers, f"temporary files left: {leftovers}")
    return killed, reaction, saved


def kill_trials(tmp, mode):
    seed = int(os.environ.get("SQLVIGIL_TEST_SEED", time.time_ns() % 1_000_000_007))
    print(f"  {mode}: seed {seed} (SQLVIGIL_TEST_SEED={seed} repeats the delays)", flush=True)
    rnd = random.Random(seed)
    # A trial without a kill measures the whole reaction; a third of the
    # kills fall in its first millisecond, a third in its first 20 ms (the
    # mark, the set-aside, the copy, the drain), a third anywhere in it.
    sub = os.path.join(tmp, "measure")
    os.mkdir(sub)
    _, reaction, _ = kill_trial(sub, mode, None)
    killed = saved = 0
    for i in range(KILL_TRIALS):
        delay = rnd.uniform(0, (0.001, 0.02, reaction)[i % 3])
        sub = os.path.join(tmp, f"trial{i}")
        os.mkdir(sub)
        try:
            k, _, sv = kill_trial(sub, mode, delay)
        except Failure as e:
            raise Failure(f"trial {i} (kill after {delay * 1000:.1f} ms, seed {seed}): {e}")
        killed += k
        saved += sv
    print(f"  {mode}: reaction {reaction * 1000:.0f} ms; {killed} of {KILL_TRIALS} trials killed sqlvigil "
          f"before it exited" + (f"; the old database's copy existed after {saved} (the others were killed "
                                 f"before it was complete)" if mode == "rename" else ""), flush=True)
    check(killed >= KILL_TRIALS // 2, f"only {killed} of {KILL_TRIALS} kills came before sqlvigil exited")
    if mode == "rename":
        check(saved > KILL_TRIALS - killed, f"no killed trial had the copy ({saved} copies, {killed} kills): the "
                                            "checks of a copy made before a kill never ran")


def case_kill_rename_over(tmp):
    """SIGKILL at random points of the reaction to a rename over: the new
    file never gets the old WAL, every file opens intact, the restarted
    sqlvigil supervises the new file and what is committed then stays;
    the old database's copy, when one was made, holds every old row."""
    kill_trials(tmp, "rename")


def case_kill_wal_deleted(tmp):
    """SIGKILL at random points of the reaction to a deleted -wal and -shm
    (the application attached): once the application is restarted and
    sqlvigil started again, every committed row is in the database, intact,
    and what is committed then stays."""
    kill_trials(tmp, "wal")


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    run(CASES)
