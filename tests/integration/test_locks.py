#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Never the cause of an outage: sqlvigil's own work never keeps the
applications' writers waiting longer than step_budget at a time, its health
probe takes no lock at all, the WAL is watched from the first moment, a -wal
left large after a burst is shortened, and failing work backs off.

Applications are the independent loadgen (tests/tools/loadgen.c); what they
saw is counted (errors, SQLITE_BUSY), never timed, and the rows are checked
with Python's sqlite3."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, LockHolder, Loadgen, Notify, Skip, check, file_size, integrity,  # noqa: E402
                     make_db, query, run, wait_until, write_config)

CTL = os.environ.get("SQLVIGILCTL", "build/src/sqlvigilctl")

def settings(**sections):
    """The configuration's sections after [database]: everything but what
    a case looks at is out of the way (no scheduled vacuum, ANALYZE or
    quick_check); keyword arguments add keys, section__key = value."""
    conf = {"health": {"quick_check_interval": "0"}, "vacuum": {"interval": "0"}, "analyze": {"interval": "0"}}
    for name, value in sections.items():
        section, key = name.split("__")
        conf.setdefault(section, {})[key] = str(value)
    return "".join(f"[{sec}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) for sec, keys in conf.items())


def start(tmp, db, extra, name="l", watchdog=None, create=False):
    sock = os.path.join(tmp, f"{name}.sock")
    conf = os.path.join(tmp, f"{name}.conf")
    write_config(conf, f"[database]\npath = {db}\ncreate = {'yes' if create else 'no'}\n"
                       f"[control]\nsocket = {sock}\n{extra}")
    sockdir = os.path.join(tmp, f"notify-{name}-{time.monotonic_ns()}")
    os.mkdir(sockdir)
    notify = Notify(sockdir)
    d = Daemon(["--config", conf], notify=notify, watchdog_usec=watchdog)
    try:
        notify.wait_for("READY", "1", timeout=20)
    except Failure:
        d.kill()
        notify.close()
        raise Failure("not ready:\n" + d.dump())
    return d, notify, sock, conf


def ctl(*args, timeout=60):
    return subprocess.run([CTL] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def stats(sock):
    r = ctl("-s", sock, "--json", "stats")
    check(r.returncode == 0, f"stats: {r.returncode} {r.stderr}")
    return json.loads(r.stdout)


def rows(db, table="load"):
    return query(db, f"SELECT count(*) FROM {table}")[0][0]


def committed(summary):
    return summary["succeeded"]


def writers_then_reader(db):
    """An application writing every 5 ms (busy_timeout 2000 ms, as many
    services set it), then a report that opens a read transaction and never
    ends it, then more writes after it: the reader's snapshot stays behind
    the WAL's end, so no checkpoint can reset the WAL while it reads."""
    writer = Loadgen("writer", db, "--interval-us", 5000, "--busy-timeout", 2000, "--autocheckpoint", 0)
    wait_until(lambda: file_size(db + "-wal") > 50_000, 20, "the writer to fill the WAL")
    reader = Loadgen("reader", db, "--hold-ms", -1)
    wal = file_size(db + "-wal")
    wait_until(lambda: file_size(db + "-wal") > wal + 20_000, 20, "writes after the reader began")
    return writer, reader


def case_stop_long_reader(tmp):
    """A report job holds a read transaction while sqlvigil stops: the final
    TRUNCATE waits for it in slices, never holding the write lock long, so
    the application's writes all succeed; the stop ends within stop_timeout
    (plus the last slice) and names the reader."""
    db = os.path.join(tmp, "s.db")
    make_db(db, rows=100)
    d, notify, sock, _ = start(tmp, db, settings(checkpoint__interval="1h", checkpoint__stop_timeout="3s"))
    writer = reader = None
    try:
        writer, reader = writers_then_reader(db)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1", after=t0, timeout=5)
        rc = d.wait_exit(40)
        took = time.monotonic() - t0
        check(rc == 0, f"exit {rc}:\n{d.dump()}")
        check(took < 30, f"the stop took {took:.1f}s with stop_timeout = 3s")
        # The application kept writing through the whole stop.
        time.sleep(0.5)
        summary = writer.stop()
        check(summary["failed"] == 0,
              f"{summary['failed']} writes failed during the stop ({summary['first_error']}); max wait "
              f"{summary['max_us']} us")
        line = d.find_log(r"final truncate checkpoint incomplete after .*database busy")
        check(line, f"no incomplete final checkpoint:\n{d.dump()}")
        check(f"in the way: pid {reader.pid} (sqlvigil-loadge" in line[1],  # comm: 15 characters
              f"the reader (pid {reader.pid}) is not named: {line[1]}")
        reader.stop()
        reader = None
        check(rows(db) == committed(summary), f"rows {rows(db)} != {committed(summary)} committed")
        check(integrity(db) == ["ok"], "integrity_check failed")
    finally:
        d.kill()
        notify.close()
        for p in (writer, reader):
            if p:
                p.kill()


def case_admin_truncate_long_reader(tmp):
    """sqlvigilctl checkpoint truncate with a reader in the way: the same
    slices, for busy_timeout; the application sees no error; the reply says
    it could not finish and names the reader."""
    db = os.path.join(tmp, "a.db")
    make_db(db, rows=100)
    d, notify, sock, _ = start(tmp, db, settings(pragmas__busy_timeout=3000, checkpoint__interval="1h"))
    writer = reader = None
    try:
        writer, reader = writers_then_reader(db)
        r = ctl("-s", sock, "--json", "checkpoint", "truncate")
        reply = json.loads(r.stdout)
        c = reply["checkpoint"]
        summary = writer.stop()
        check(summary["failed"] == 0,
              f"{summary['failed']} writes failed during the checkpoint ({summary['first_error']})")
        check(c["result"] in ("busy", "incomplete"), f"result {c['result']}: {reply}")
        check(f"in the way: pid {reader.pid}" in c["summary"], f"the reader is not named: {c['summary']}")
        check(c["lock_usec"] < 1_000_000, f"held the write lock {c['lock_usec']} us at once")
        s = stats(sock)
        holds = s["maintenance"]["lock_holds"]["checkpoint"]
        check(holds["count"] >= 1 and holds["max_usec"] == c["lock_usec"] or holds["max_usec"] >= c["lock_usec"],
              f"lock holds not counted: {holds}")
        reader.stop()
        reader = None
        d.signal(signal.SIGTERM)
        check(d.wait_exit(30) == 0, d.dump())
        check(file_size(db + "-wal") == 0, "the WAL was not emptied once the reader had gone")
        check(rows(db) == committed(summary), "rows lost")
    finally:
        d.kill()
        notify.close()
        for p in (writer, reader):
            if p:
                p.kill()


def case_deferred_probe(tmp):
    """Deferred read-then-write transactions (BEGIN; SELECT; INSERT; COMMIT)
    get SQLITE_BUSY at once, whatever their busy_timeout, whenever another
    connection holds the write lock. A health probe every 20 ms must never
    be that connection: not one BUSY."""
    db = os.path.join(tmp, "p.db")
    make_db(db, rows=10)
    d, notify, sock, _ = start(tmp, db, settings(health__interval="20ms", checkpoint__interval="1h",
                                                 checkpoint__min_wal_pages=1000000))
    try:
        app = Loadgen("writer", db, "--transaction", "deferred", "--busy-timeout", 5000, "--interval-us", 1000,
                      "--duration", 5)
        summary = app.wait(timeout=60)
        check(summary["attempted"] > 500, f"too few transactions: {summary}")
        check(summary["busy"] == 0 and summary["failed"] == 0,
              f"{summary['busy']} SQLITE_BUSY and {summary['failed']} failures in {summary['attempted']} deferred "
              f"transactions ({summary['first_error']})")
        s = stats(sock)
        check(s["health"]["checks"] > 100, f"only {s['health']['checks']} health checks ran")
        check(rows(db) == summary["succeeded"], "rows")
    finally:
        d.kill()
        notify.close()


def case_first_start_wal(tmp):
    """A database sqlvigil creates, and one it switches to WAL: WAL-driven
    checkpoints work from the first moment (the -shm exists once the
    connection has read, and sqlvigil watches SQLite's own)."""
    for variant in ("create", "switch"):
        sub = os.path.join(tmp, variant)
        os.mkdir(sub)
        db = os.path.join(sub, "f.db")
        if variant == "switch":
            make_db(db, rows=10, wal=False)
        d, notify, sock, _ = start(sub, db, settings(checkpoint__interval="1h", checkpoint__min_wal_pages=200),
                                   name=variant, create=variant == "create")
        try:
            check(not d.find_log(r"WAL-driven checkpoints are off"), f"{variant}: {d.dump()}")
            if variant == "create":
                make_db(db)
            writer = Loadgen("writer", db, "--interval-us", 1000, "--count", 3000, "--autocheckpoint", 0,
                             "--payload", 400)
            # The WAL watch sees the frames: PASSIVE at min_wal_pages, or a
            # RESTART when they came faster than it looks.
            d.wait_log(r"checkpoint \((wal-pages|wal-restart)\) (passive|restart)", timeout=20)
            summary = writer.wait(timeout=120)
            check(summary["failed"] == 0, f"{variant}: writes failed: {summary}")
            check(rows(db) == 3000, f"{variant}: rows")
        finally:
            d.kill()
            notify.close()


def case_shrink_after_burst(tmp):
    """A burst leaves the -wal file at its peak with nothing pending: it is
    shortened again (in pieces of step_budget), and health judges what is
    pending, so a large but checkpointed -wal is no reason to be degraded."""
    db = os.path.join(tmp, "b.db")
    make_db(db, rows=10)
    d, notify, sock, _ = start(tmp, db, settings(health__max_wal_size="8M", checkpoint__interval="1h",
                                                 checkpoint__min_wal_pages=200))
    try:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA wal_autocheckpoint = 0")
        con.execute("BEGIN")
        con.executemany("INSERT INTO t(v) VALUES (?)", (("x" * 3000,) for _ in range(10_000)))
        con.execute("COMMIT")
        con.close()
        peak = file_size(db + "-wal")
        check(peak > 30 << 20, f"the burst made a -wal of only {peak} bytes")
        d.wait_log(r"checkpoint \(wal-shrink\)", timeout=30)
        wait_until(lambda: file_size(db + "-wal") <= 2 << 20, 30,
                   f"the -wal ({file_size(db + '-wal')} bytes) to shrink back")
        s = stats(sock)
        check(s["health"]["state"] == "ok", f"health {s['health']}")
        holds = s["maintenance"]["lock_holds"]["checkpoint"]
        check(holds["count"] >= 2, f"the shrink took {holds['count']} holds: {holds}")
        check(rows(db, "t") == 10_010 and integrity(db) == ["ok"], "rows or integrity")
        d.signal(signal.SIGTERM)
        check(d.wait_exit(30) == 0, d.dump())
    finally:
        d.kill()
        notify.close()


def case_startup_no_write_lock(tmp):
    """Start-up takes no write lock when the file already has the
    requested persistent pragmas (PRAGMA auto_vacuum takes it even when
    nothing changes): READY comes while an application holds a long write
    transaction."""
    db = os.path.join(tmp, "u.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA auto_vacuum = incremental")
    con.execute("PRAGMA journal_mode = wal")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.close()
    holder = LockHolder(db, 12.0)
    try:
        d, notify, sock, _ = start(tmp, db, settings(pragmas__auto_vacuum="incremental", pragmas__busy_timeout=2000))
        try:
            ready, _ = notify.wait_for("READY", "1", timeout=1)
            check(holder.proc.poll() is None, "READY only after the lock holder let go")
        finally:
            d.kill()
            notify.close()
    finally:
        holder.kill()


def case_backoff_disk_full(tmp):
    """A full file system: the checkpoint fails, says which file system, how
    much it has and how much was needed, health says why, and the retries
    back off instead of coming every second; once space is back, it recovers
    and an idle sqlvigil does nothing."""
    if os.geteuid() != 0:
        raise Skip("needs root to mount a small tmpfs")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    d = notify = None
    try:
        db = os.path.join(mnt, "full.db")
        make_db(db, rows=10)
        d, notify, sock, _ = start(tmp, db, settings(health__min_free_disk=0, checkpoint__interval="1s",
                                                     checkpoint__min_wal_pages=100))
        # Most of the file system goes to a filler; the application then
        # commits until the disk is full. Its WAL and sqlvigil's checkpoints
        # (which grow the database file) compete for the rest, until both
        # fail: frames pending in the WAL, no room to put them anywhere.
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            while os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize > (1536 << 10):
                f.write(b"\0" * 65536)
                f.flush()
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA wal_autocheckpoint = 0")
        app_rows = 10
        for _ in range(10_000):
            try:
                con.execute("BEGIN")
                con.executemany("INSERT INTO t(v) VALUES (?)", (("y" * 1000,) for _ in range(20)))
                con.execute("COMMIT")
                app_rows += 20
            except sqlite3.OperationalError as e:
                check("full" in str(e), f"the application's commit failed with {e}")
                con.execute("ROLLBACK") if con.in_transaction else None
                break
        else:
            raise Failure("the file system never filled up")
        t_fail, line = d.wait_log(r"checkpoint \(.*\) .* failed: .*the file system holding "
                                  + mnt + r" \(mounted at " + mnt + r"\) has .* free of .*; about .* needed",
                                  timeout=30)
        wait_until(lambda: ctl("-s", sock, "health").stdout.startswith("degraded: ") and
                   "full" in ctl("-s", sock, "health").stdout, 20, "health to say the disk is full")
        # Back-off: 5 s, 10 s, 20 s... not a failed checkpoint every second.
        time.sleep(9)
        fails = [l for t, l in d.lines if t >= t_fail and "checkpoint (" in l and " failed" in l]
        check(len(fails) <= 3, f"{len(fails)} failed checkpoints in 9 s:\n" + "\n".join(fails))
        con.close()
        os.unlink(filler)
        wait_until(lambda: ctl("-s", sock, "health").stdout == "ok\n", 90, "health to recover once space is back")
        wait_until(lambda: query(db, "SELECT count(*) FROM t")[0][0] == app_rows, 30, "the committed rows")
        # Idle now: no RESTART every second.
        time.sleep(2)
        t_idle = time.monotonic()
        time.sleep(5)
        runs = [l for t, l in d.lines if t >= t_idle and "checkpoint (" in l]
        check(len(runs) <= 1, f"{len(runs)} checkpoints in 5 idle seconds:\n" + "\n".join(runs))
        check(integrity(db) == ["ok"], "integrity")
        d.signal(signal.SIGTERM)
        check(d.wait_exit(30) == 0, d.dump())
        d = None
    finally:
        if d:
            d.kill()
        if notify:
            notify.close()
        subprocess.run(["umount", "-l", mnt], capture_output=True)


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    run(CASES)
