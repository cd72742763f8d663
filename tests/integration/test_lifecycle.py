#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The life cycle as systemd sees it, through the real binary: stop wins over
whatever is in flight (a reload, an admin command, the conversion, a rescue),
a stop and a reload that arrive together stop without reloading, a run cut
short by the stop is `cancelled` everywhere it is reported, and STATUS=
follows maintenance runs. Each case reads the exact sequence of messages on
the emulated notify socket."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, LockHolder, Notify, check, integrity, make_db, query, run,  # noqa: E402
                     wait_until, write_config)

CTL = os.environ.get("SQLVIGILCTL", "build/src/sqlvigilctl")


def start(tmp, db, extra, watchdog=None, name="l"):
    sock = os.path.join(tmp, f"{name}.sock")
    conf = os.path.join(tmp, f"{name}.conf")
    write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n{extra}")
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify, watchdog_usec=watchdog)
    try:
        notify.wait_for("READY", "1", timeout=20)
    except Failure:
        d.kill()
        notify.close()
        raise Failure("not ready:\n" + d.dump())
    return d, notify, sock, conf


def ask(sock, line, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(line.encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data)


def ctl_async(sock, *args):
    return subprocess.Popen([CTL, "-s", sock, "--json"] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def sequence(notify):
    """The messages as they arrived, each as its sorted keys, for messages."""
    return [sorted(f) for _, f in notify.snapshot()]


def check_stop_wins(notify, dump):
    """Exactly one STOPPING=1, and after it nothing but EXTEND_TIMEOUT_USEC=:
    no READY=1, RELOADING=1, WATCHDOG=1 or other STATUS=."""
    msgs = notify.snapshot()
    stops = [i for i, (_, f) in enumerate(msgs) if f.get("STOPPING") == "1"]
    check(len(stops) == 1, f"{len(stops)} STOPPING=1 messages: {[f for _, f in msgs]}\n{dump()}")
    after = [f for _, f in msgs[stops[0] + 1:]]
    wrong = [f for f in after if set(f) - {"EXTEND_TIMEOUT_USEC"}]
    check(not wrong, f"after STOPPING=1 came {wrong}; the whole sequence: {[f for _, f in msgs]}\n{dump()}")
    return msgs[stops[0]][1]


def reader_process(db):
    """A reader that keeps its snapshot (so no RESTART or TRUNCATE can end)
    while a writer adds a frame after it."""
    p = subprocess.Popen([sys.executable, "-c", r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN")
con.execute("SELECT count(*) FROM t").fetchone()
w = sqlite3.connect(sys.argv[1], isolation_level=None)
w.execute("INSERT INTO t(v) VALUES ('after the reader')")
print("reading", flush=True)
sys.stdin.readline()
""", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    check(p.stdout.readline().strip() == "reading", "the reader did not start")
    return p


# ---- Stop wins ---------------------------------------------------------------

def case_stop_during_reload(tmp):
    """SIGTERM while a reload waits for the write lock (its auto_vacuum
    change needs it, busy_timeout is a minute): STOPPING=1 and then nothing
    but extensions - no READY=1 from the reload - its client is told the
    reload was abandoned, and the stop does not wait out busy_timeout."""
    db = os.path.join(tmp, "r.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA auto_vacuum=full")
    con.close()
    make_db(db, rows=10)
    base = "[health]\nlock_timeout = 5min\n[checkpoint]\nstop_timeout = 2s\n"
    d, notify, sock, conf = start(tmp, db, base + "[pragmas]\nbusy_timeout = 60000\n", watchdog=2_000_000)
    holder = LockHolder(db, 120)
    client = None
    try:
        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n{base}"
                           "[pragmas]\nbusy_timeout = 60000\nauto_vacuum = incremental\n")
        t0 = time.monotonic()
        client = ctl_async(sock, "reload")
        t_rel, _ = notify.wait_for("RELOADING", "1", after=t0, timeout=10)
        wait_until(lambda: ask(sock, "stats\n")["process"]["state"] == "reloading", 10, "the reload to be running")
        time.sleep(0.3)  # the pragmas job is waiting for the lock now (it has a minute)
        check(client.poll() is None, "the reload ended while the write lock was held")
        t_term = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(90)
        took = time.monotonic() - t_term
        check(rc == 0, f"exit {rc}:\n{d.dump()}")
        stopping = check_stop_wins(notify, d.dump)
        check(stopping["STATUS"].startswith("stopping"), f"STOPPING=1 came with {stopping}")
        out, err = client.communicate(timeout=10)
        reply = json.loads(out)
        check(client.returncode == 1 and reply["code"] == "stopping" and "reload abandoned" in reply["error"],
              f"reload reply: exit {client.returncode} {out!r} {err!r}")
        # busy_timeout is a minute, stop_timeout 2 s: the reload's lock wait
        # was interrupted, not waited out.
        check(took < 30, f"the stop took {took:.1f}s: it waited for the reload's lock wait")
        check(d.find_log(r"reload abandoned: sqlvigil is stopping"), f"no journal line:\n{d.dump()}")
        check(not d.find_log(r"configuration .* reloaded"), f"the reload was applied:\n{d.dump()}")
        print(f"  stop with a reload in flight took {took:.2f}s; sequence {sequence(notify)}")
    finally:
        d.kill()
        holder.kill()
        if client:
            client.kill()
        notify.close()


def case_sighup_with_sigterm(tmp):
    """SIGHUP and SIGTERM pending together (the process stopped while both
    arrive): sqlvigil stops without reloading first - no RELOADING=1 at all."""
    db = os.path.join(tmp, "h.db")
    make_db(db, rows=10)
    d, notify, sock, conf = start(tmp, db, "[health]\ninterval = 300ms\n")
    try:
        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n[health]\ninterval = 400ms\n")
        d.signal(signal.SIGSTOP)
        # kill() returns before the process has stopped: wait until it has,
        # or the loop may still read the SIGHUP alone.
        def stopped():
            with open(f"/proc/{d.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "T"
        wait_until(stopped, 10, "sqlvigil stopped by SIGSTOP")
        # Both are pending (blocked, for the signalfd) before the loop looks.
        d.signal(signal.SIGHUP)
        d.signal(signal.SIGTERM)
        d.signal(signal.SIGCONT)
        rc = d.wait_exit(30)
        check(rc == 0, f"exit {rc}:\n{d.dump()}")
        check(notify.find("RELOADING") is None, f"RELOADING=1 although SIGTERM was pending: {sequence(notify)}")
        check_stop_wins(notify, d.dump)
        check(not d.find_log(r"reloaded"), f"reloaded before stopping:\n{d.dump()}")
        check(d.find_log(r"SIGHUP: sqlvigil is stopping; not reloading"), f"the SIGHUP is not accounted for:\n{d.dump()}")
    finally:
        d.kill()
        notify.close()


def case_stop_cancels_conversion(tmp):
    """The one-time conversion waits for the write lock (busy_timeout, a
    minute here) when SIGTERM comes: it ends `cancelled` in its journal entry
    (not busy, not failed), the file is unchanged, and stop wins."""
    db = os.path.join(tmp, "c.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA auto_vacuum=none")
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t(v) VALUES (randomblob(900))", ((),) * 3000)
    con.execute("COMMIT")
    con.execute("DELETE FROM t WHERE id > 100")
    con.close()
    # Taken before sqlvigil starts (it needs no write lock to start), so the
    # conversion cannot run before it.
    holder = LockHolder(db, 120)
    try:
        d, notify, sock, conf = start(tmp, db, "[pragmas]\nbusy_timeout = 60000\nauto_vacuum = incremental\n"
                                               "[vacuum]\ninterval = 300ms\nconvert = yes\n[analyze]\ninterval = 0\n"
                                               "[health]\nlock_timeout = 5min\nquick_check_interval = 0\n"
                                               "[checkpoint]\nstop_timeout = 2s\n")
    except Failure:
        holder.kill()
        raise
    try:
        d.wait_log(r"vacuum: converting to auto_vacuum=incremental", timeout=20)
        wait_until(lambda: ask(sock, "stats\n")["maintenance"]["running"] == "vacuum", 10, "the conversion to run")
        time.sleep(0.3)
        t_term = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(40)
        took = time.monotonic() - t_term
        check(rc == 0, f"exit {rc}:\n{d.dump()}")
        check_stop_wins(notify, d.dump)
        line = d.find_log(r"vacuum: full VACUUM to auto_vacuum=incremental cancelled")
        check(line, f"the conversion was not reported cancelled:\n{d.dump()}")
        check(not d.find_log(r"vacuum: full VACUUM .* (failed|busy)"), f"reported as failed or busy:\n{d.dump()}")
        check(took < 30, f"the stop took {took:.1f}s: the conversion's lock wait was not interrupted")
        holder.kill()
        check(query(db, "PRAGMA auto_vacuum")[0][0] == 0, "the cancelled conversion changed the file")
        check(integrity(db) == ["ok"], "integrity_check failed")
        print(f"  stop during the conversion's lock wait took {took:.2f}s")
    finally:
        d.kill()
        holder.kill()
        notify.close()


def case_stop_cancels_admin(tmp):
    """An admin's TRUNCATE checkpoint is waiting for a reader when SIGTERM
    comes: its client gets code `cancelled` and result `cancelled`, the
    journal entry says cancelled, and stats during the stop (the final
    checkpoint waits for that reader) show the run ended - nothing running,
    last result `cancelled` - while STATUS= stays the stopping one."""
    db = os.path.join(tmp, "a.db")
    make_db(db, rows=100)
    d, notify, sock, conf = start(tmp, db, "[pragmas]\nbusy_timeout = 60000\n[checkpoint]\nstop_timeout = 4s\n"
                                           "[health]\ninterval = 250ms\n", watchdog=2_000_000)
    reader = reader_process(db)
    client = None
    try:
        client = ctl_async(sock, "checkpoint", "truncate")
        wait_until(lambda: ask(sock, "stats\n")["maintenance"]["running"] == "checkpoint", 10,
                   "the admin checkpoint to run")
        time.sleep(0.3)
        check(client.poll() is None, "the checkpoint ended with the reader still there")
        d.signal(signal.SIGTERM)
        out, err = client.communicate(timeout=30)
        reply = json.loads(out)
        check(client.returncode == 1, f"exit {client.returncode}: {out} {err}")
        check(reply["ok"] is False and reply["code"] == "cancelled", f"reply: {reply}")
        check(reply["checkpoint"]["result"] == "cancelled", f"reply: {reply}")
        # The final checkpoint waits for the reader (stop_timeout 4 s): ask now.
        s = ask(sock, "stats\n")
        check(s["process"]["state"] == "stopping", f"state {s['process']['state']}")
        check(s["maintenance"]["running"] is None, f"still running during the stop: {s['maintenance']['running']}")
        check(s["maintenance"]["last"]["checkpoint"]["result"] == "cancelled",
              f"last checkpoint: {s['maintenance']['last']['checkpoint']}")
        rc = d.wait_exit(40)
        check(rc == 0, f"exit {rc}:\n{d.dump()}")
        check(d.find_log(r"checkpoint \(admin\) truncate: cancelled"), f"journal:\n{d.dump()}")
        check_stop_wins(notify, d.dump)
    finally:
        d.kill()
        reader.kill()
        if client:
            client.kill()
        notify.close()


def case_stop_cancels_queued(tmp):
    """A reload waits for the write lock on the database thread while an
    admin's analyze, integrity check, vacuum and checkpoint wait behind it:
    SIGTERM ends every one of them `cancelled` - each reply (code and
    result), each journal entry - abandons the reload, and stop wins."""
    db = os.path.join(tmp, "q.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA auto_vacuum=full")
    con.close()
    make_db(db, rows=100)
    base = ("[health]\nlock_timeout = 5min\nquick_check_interval = 0\n[checkpoint]\nstop_timeout = 2s\n"
            "interval = 0\n[vacuum]\ninterval = 0\n[analyze]\ninterval = 0\n")
    d, notify, sock, conf = start(tmp, db, base + "[pragmas]\nbusy_timeout = 60000\n")
    holder = LockHolder(db, 120)
    clients = {}
    try:
        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n{base}"
                           "[pragmas]\nbusy_timeout = 60000\nauto_vacuum = incremental\n")
        clients["reload"] = ctl_async(sock, "reload")
        wait_until(lambda: ask(sock, "stats\n")["process"]["state"] == "reloading", 10, "the reload to be running")
        # stats names the first running task in the order checkpoint,
        # vacuum, analyze, quick_check: asked for in reverse, each shows up
        # there once it is in flight.
        for args, key, task in ((["check", "integrity"], "check", "quick_check"), (["analyze"], "analyze", "analyze"),
                                (["vacuum"], "vacuum", "vacuum"), (["checkpoint", "truncate"], "checkpoint", "checkpoint")):
            clients[key] = ctl_async(sock, *args)
            wait_until(lambda: ask(sock, "stats\n")["maintenance"]["running"] == task, 10,
                       f"the admin's {key} to be in flight")
        ended = [key for key, c in clients.items() if c.poll() is not None]
        check(not ended, f"ended before the stop: {ended}")
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(60)
        check(rc == 0, f"exit {rc}:\n{d.dump()}")
        check_stop_wins(notify, d.dump)
        for key, c in clients.items():
            out, err = c.communicate(timeout=10)
            reply = json.loads(out)
            if key == "reload":
                check(reply["code"] == "stopping" and "reload abandoned" in reply["error"], f"reload: {reply}")
                continue
            check(c.returncode == 1 and reply["code"] == "cancelled" and reply[key]["result"] == "cancelled",
                  f"{key}: exit {c.returncode}, reply {reply}")
        for rx in (r"analyze \(admin\) analyze: cancelled", r"integrity_check: cancelled",
                   r"vacuum \(admin\) cancelled", r"checkpoint \(admin\) truncate: cancelled"):
            check(d.find_log(rx), f"no journal entry matching {rx!r}:\n{d.dump()}")
    finally:
        d.kill()
        holder.kill()
        for c in clients.values():
            c.kill()
        notify.close()


def case_rescue_abandons_reload(tmp):
    """The database is deleted while a reload waits for the write lock: the
    rescue's STOPPING=1 (failed, saving what is committed) is the last word -
    no READY=1 from the reload - and the reload's client is told it was
    abandoned."""
    db = os.path.join(tmp, "x.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA auto_vacuum=full")
    con.close()
    make_db(db, rows=10)
    base = "[health]\nlock_timeout = 5min\ninterval = 250ms\n[checkpoint]\nstop_timeout = 2s\n"
    d, notify, sock, conf = start(tmp, db, base + "[pragmas]\nbusy_timeout = 60000\n")
    holder = LockHolder(db, 120)
    client = None
    try:
        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n{base}"
                           "[pragmas]\nbusy_timeout = 60000\nauto_vacuum = incremental\n")
        client = ctl_async(sock, "reload")
        wait_until(lambda: ask(sock, "stats\n")["process"]["state"] == "reloading", 10, "the reload to be running")
        os.rename(db, db + ".moved")
        notify.wait_for("STOPPING", "1", timeout=10)
        holder.kill()
        rc = d.wait_exit(90)
        check(rc == 75, f"exit {rc}, expected 75:\n{d.dump()}")
        stopping = check_stop_wins(notify, d.dump)
        out, err = client.communicate(timeout=10)
        reply = json.loads(out)
        check(reply["ok"] is False and reply["code"] == "stopping" and "reload abandoned" in reply["error"],
              f"reload reply: {out!r} {err!r}")
        check(stopping["STATUS"].startswith("failed:"), f"STOPPING=1 came with {stopping}")
        check(notify.find("READY", "1", after=notify.find("RELOADING", "1")[0]) is None,
              f"READY=1 after the reload began: {sequence(notify)}")
    finally:
        d.kill()
        holder.kill()
        if client:
            client.kill()
        notify.close()


# ---- STATUS= -----------------------------------------------------------------

def case_status_follows_runs(tmp):
    """STATUS= changes when a maintenance run or a backup ends, not only at
    health rounds: with health checks an hour apart, an admin checkpoint, an
    analyze and a backup each show up in STATUS= at once."""
    db = os.path.join(tmp, "s.db")
    make_db(db, rows=100)
    backups = os.path.join(tmp, "backups")
    os.mkdir(backups)
    d, notify, sock, conf = start(tmp, db, "[health]\ninterval = 1h\nquick_check_interval = 0\n"
                                           "[checkpoint]\ninterval = 0\n[vacuum]\ninterval = 0\n"
                                           f"[analyze]\ninterval = 0\n[backup]\ndirectory = {backups}\n"
                                           "interval = 365d\n")
    try:
        check("last" not in notify.find("READY", "1")[1]["STATUS"], "a run before any ran")
        for cmd, word in ((["checkpoint"], "checkpoint"), (["analyze"], "analyze"), (["backup"], "backup")):
            t0 = time.monotonic()
            r = subprocess.run([CTL, "-s", sock] + cmd, capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, f"{cmd}: {r.returncode} {r.stderr}")
            wait_until(lambda: any(f"last {word}" in m.get("STATUS", "") or f", {word}" in m.get("STATUS", "")
                                   for t, m in notify.snapshot() if t >= t0), 10, f"STATUS= naming the {word} run")
        # The next health round is an hour after the first, before READY=1:
        # the runs' own ends sent these STATUS= lines.
        d.signal(signal.SIGTERM)
        check(d.wait_exit(30) == 0, d.dump())
        check_stop_wins(notify, d.dump)
    finally:
        d.kill()
        notify.close()


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    run(CASES)
