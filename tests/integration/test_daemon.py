#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The daemon core through the real binary: arguments and exit codes,
readiness, the health-gated watchdog, stop and reload."""

import datetime
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SQLVIGIL, Daemon, Failure, LockHolder, Notify, check, count_rows,  # noqa: E402
                     fd_targets, file_size, integrity, make_db, max_gap, run, wait_until,
                     write_config)

WATCHDOG = 1_000_000  # 1 s: pings every 0.5 s
PERIOD = WATCHDOG / 1e6


def config_text(db, extra=""):
    return f"""[database]
path = {db}

[health]
lock_timeout = 30s

{extra}
"""


def run_cmd(args, **kw):
    return subprocess.run([SQLVIGIL] + args, capture_output=True, text=True, timeout=30, **kw)


# ---- Arguments and exit codes ---------------------------------------------

def case_arguments(tmp):
    r = run_cmd(["--version"])
    check(r.returncode == 0 and r.stdout.startswith("sqlvigil "), f"--version: {r.returncode} {r.stdout!r}")
    r = run_cmd(["--help"])
    check(r.returncode == 0 and "--check-config" in r.stdout, f"--help: {r.returncode}")
    for args, needle in ((["--bogus"], "unknown option '--bogus'"),
                         (["--config"], "option '--config' needs an argument"),
                         ([], "no database to supervise"),
                         (["--database", "/x.db", "extra"], "unexpected argument 'extra'")):
        r = run_cmd(args)
        check(r.returncode == 64, f"{args}: exit {r.returncode}, expected 64")
        check(needle in r.stderr, f"{args}: stderr {r.stderr!r} lacks {needle!r}")


def case_check_config(tmp):
    conf = os.path.join(tmp, "good.conf")
    write_config(conf, config_text("/var/lib/x/x.db", "[checkpoint]\ninterval = 90s\nstop_mode = restart\n"))
    r = run_cmd(["--check-config", "--config", conf])
    check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
    check("path = /var/lib/x/x.db" in r.stdout, "effective path not printed")
    check("interval = 90s" in r.stdout and "stop_mode = restart" in r.stdout, "values not printed")
    check("step_budget = 20ms" in r.stdout, "defaults not printed")
    # What it prints is itself a valid configuration.
    printed = os.path.join(tmp, "printed.conf")
    write_config(printed, r.stdout)
    r2 = run_cmd(["--check-config", "--config", printed])
    check(r2.returncode == 0, f"printed configuration rejected: {r2.stderr}")

    bad = os.path.join(tmp, "bad.conf")
    write_config(bad, "[database]\npath = /x.db\n\n[checkpoint]\nintervall = 1min\n")
    r = run_cmd(["--check-config", "--config", bad])
    check(r.returncode == 78, f"bad config: exit {r.returncode}, expected 78")
    check(f"unknown key 'intervall' in [checkpoint] at {bad}:5; did you mean 'interval'?" in r.stderr,
          f"stderr: {r.stderr!r}")


def case_bad_config_at_start(tmp):
    db = os.path.join(tmp, "a.db")
    make_db(db)
    conf = os.path.join(tmp, "a.conf")
    write_config(conf, config_text(db, "[vacuum]\nstep_budget = fast\n"))
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify)
    try:
        rc = d.wait_exit(30)
        check(rc == 78, f"exit {rc}, expected 78; log:\n{d.dump()}")
        check(d.find_log(rf"invalid value 'fast' for 'step_budget' in \[vacuum\] at {conf}:8"),
              f"no file:line message:\n{d.dump()}")
        check(notify.find("READY") is None, "READY=1 sent despite a bad configuration")
    finally:
        d.kill()
        notify.close()

    # A configuration file that does not exist is a configuration error too.
    r = run_cmd(["--config", os.path.join(tmp, "missing.conf")])
    check(r.returncode == 78, f"missing config: exit {r.returncode}")
    check("cannot open configuration file" in r.stderr, r.stderr)

    # Not a file to read: a FIFO (nobody writes it: no hang), a device
    # that never ends, a directory; and a file far too large to be one.
    fifo = os.path.join(tmp, "fifo.conf")
    os.mkfifo(fifo)
    huge = os.path.join(tmp, "huge.conf")
    with open(huge, "wb") as f:
        f.truncate(8 << 20)
    for path, words in ((fifo, "is not a regular file"), ("/dev/zero", "is not a regular file"),
                        (tmp, "is not a regular file"), (huge, "is 8388608 bytes, more than")):
        r = run_cmd(["--check-config", "--config", path])
        check(r.returncode == 78, f"--config {path}: exit {r.returncode}, expected 78: {r.stderr!r}")
        check(f"configuration file {path} {words}" in r.stderr, f"--config {path}: {r.stderr!r}")


COMMENT_RULE = "only ';' after a space or tab starts an inline comment"


def case_value_comment(tmp):
    """A value that is not what it looks like (issue 13): '#' after a value,
    a no-break space at the end. Both are configuration errors (78) naming
    file, line and key, at --check-config, at start and at reload, and with
    create = yes no file is ever created under the name they would make."""
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    cases = (
        (f"[database]\npath = {data}/app.db # main database\ncreate = yes\n",
         f"invalid value '{data}/app.db # main database' for 'path' in [database] at {{conf}}:2: '#' does not "
         f"start a comment here; {COMMENT_RULE}"),
        (f"[database]\ncreate = yes\npath = {data}/app.db\u00a0\n",
         f"invalid value '{data}/app.db<U+00A0>' for 'path' in [database] at {{conf}}:3: it ends with a no-break "
         f"space (U+00A0), which looks like a blank or like nothing at all but is part of the value; delete it "
         f"({COMMENT_RULE})"),
    )
    for i, (text, message) in enumerate(cases):
        conf = os.path.join(tmp, f"c{i}.conf")
        write_config(conf, text)
        message = message.format(conf=conf)
        r = run_cmd(["--check-config", "--config", conf])
        check(r.returncode == 78, f"--check-config: exit {r.returncode}, expected 78: {r.stderr}")
        check(r.stderr == f"sqlvigil: error: {message}\n", f"--check-config stderr {r.stderr!r}, expected {message!r}")
        check(r.stdout == "", f"--check-config printed a configuration: {r.stdout[:200]!r}")

        os.mkdir(os.path.join(tmp, f"n{i}"))
        notify = Notify(os.path.join(tmp, f"n{i}"))
        d = Daemon(["--config", conf], notify=notify)
        try:
            rc = d.wait_exit(30)
            check(rc == 78, f"start: exit {rc}, expected 78; log:\n{d.dump()}")
            check(any(line.endswith(f"sqlvigil: error: {message}") for line in d.log()),
                  f"start: no such line:\n{message}\nlog:\n{d.dump()}")
            check(notify.find("READY") is None, "READY=1 sent despite the error")
        finally:
            d.kill()
            notify.close()
        check(os.listdir(data) == [], f"files created: {os.listdir(data)}")

    # At reload: rejected with the same sentence, the running configuration kept.
    db = os.path.join(data, "app.db")
    make_db(db)
    conf = os.path.join(tmp, "run.conf")
    write_config(conf, config_text(db))
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify)
    try:
        notify.wait_for("READY", "1", timeout=20)
        write_config(conf, config_text(db, "[checkpoint]\ntruncate_wal_size = 64M # the limit\n"))
        t = time.monotonic()
        d.signal(signal.SIGHUP)
        message = (f"invalid value '64M # the limit' for 'truncate_wal_size' in [checkpoint] at {conf}:8: '#' does "
                   f"not start a comment here; {COMMENT_RULE}")
        d.wait_log(re.escape(message), after=t, timeout=20)
        notify.wait_for("READY", "1", after=t, timeout=20)
        check(d.alive(), "sqlvigil stopped over a rejected reload")
        d.signal(signal.SIGTERM)
        check(d.wait_exit(30) == 0, d.dump())
    finally:
        d.kill()
        notify.close()
    check(not [n for n in os.listdir(data) if "#" in n or "\u00a0" in n], f"files: {os.listdir(data)}")


def case_stderr_time(tmp):
    """Outside journald every stderr line starts with the local time, ISO
    8601 with milliseconds and the UTC offset (TZ fixes the offset here),
    so it can be lined up with an application's log."""
    db = os.path.join(tmp, "t.db")
    make_db(db)
    notify = Notify(tmp)
    before = time.time()
    d = Daemon(["--database", db], notify=notify, env={"TZ": "XXX-05:45"})
    try:
        notify.wait_for("READY", "1", timeout=20)
        d.signal(signal.SIGTERM)
        check(d.wait_exit(30) == 0, d.dump())
    finally:
        d.kill()
        notify.close()
    after = time.time()
    lines = d.log()
    check(len(lines) >= 2, f"too few lines:\n{d.dump()}")
    rx = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:45) sqlvigil: \S")
    stamps = []
    for line in lines:
        m = rx.match(line)
        check(m, f"line without an ISO 8601 time: {line!r}")
        stamps.append(datetime.datetime.fromisoformat(m.group(1)).timestamp())
    check(all(before - 0.001 <= t <= after + 0.001 for t in stamps),
          f"times {stamps} outside the run {before}..{after}")
    check(stamps == sorted(stamps), f"times go backwards: {stamps}")


def case_database_symlink(tmp):
    """The database path is a symbolic link (to a database, or to nothing
    with --create): refused at start, exit 78, naming the link and the file
    to configure; nothing is created or opened, the database is unchanged;
    a link to the directory above works."""
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    real = os.path.join(data, "real.db")
    make_db(real)
    before = open(real, "rb").read()
    link = os.path.join(tmp, "link.db")
    os.symlink(real, link)
    dangling = os.path.join(tmp, "dangling.db")
    os.symlink(os.path.join(data, "nothing.db"), dangling)
    for args, words in ((["--database", link], f"{link} is a symbolic link to {real}; set [database] path"),
                        (["--database", dangling, "--create"], f"{dangling} is a symbolic link to nothing")):
        r = run_cmd(args)
        check(r.returncode == 78, f"{args}: exit {r.returncode}, expected 78: {r.stderr!r}")
        check(words in r.stderr, f"{args}: {r.stderr!r}")
    check(sorted(os.listdir(data)) == ["real.db"], f"files were created: {sorted(os.listdir(data))}")
    check(open(real, "rb").read() == before, "the database changed")
    # A symbolic link to the directory is fine.
    os.symlink(data, os.path.join(tmp, "datalink"))
    notify = Notify(tmp)
    d = Daemon(["--database", os.path.join(tmp, "datalink", "real.db")], notify=notify)
    try:
        notify.wait_for("READY", "1", timeout=15)
        d.signal(signal.SIGTERM)
        check(d.wait_exit() == 0, f"exit code not 0:\n{d.dump()}")
    finally:
        d.kill()
        notify.close()


def case_missing_database(tmp):
    sub = os.path.join(tmp, "data")
    os.mkdir(sub)
    db = os.path.join(sub, "missing.db")
    r = run_cmd(["--database", db])
    check(r.returncode == 66, f"exit {r.returncode}, expected 66: {r.stderr}")
    check(f"database {db} does not exist" in r.stderr, f"stderr: {r.stderr!r}")
    check(os.listdir(sub) == [], f"files were created: {os.listdir(sub)}")

    # create = yes in the file, and --create on the command line, create it.
    conf = os.path.join(tmp, "c.conf")
    write_config(conf, f"[database]\npath = {db}\ncreate = yes\n")
    for i, (args, path) in enumerate(((["--config", conf], db), (["--database", db + "2", "--create"], db + "2"))):
        sockdir = os.path.join(tmp, f"n{i}")
        os.mkdir(sockdir)
        notify = Notify(sockdir)
        d = Daemon(args, notify=notify)
        try:
            notify.wait_for("READY", "1", timeout=15)
            check(os.path.exists(path), f"{path} was not created")
            d.signal(signal.SIGTERM)
            check(d.wait_exit() == 0, f"exit code not 0:\n{d.dump()}")
            con = sqlite3.connect(path)
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
            con.close()
            check(mode == "wal", f"created database is in {mode} mode")
        finally:
            d.kill()
            notify.close()


def case_not_a_database(tmp):
    db = os.path.join(tmp, "junk.db")
    with open(db, "wb") as f:
        f.write(b"this is not an sqlite database at all" * 200)
    r = run_cmd(["--database", db])
    check(r.returncode == 1, f"exit {r.returncode}, expected 1")
    check(f"{db} is not an SQLite database (SQLite: file is not a database" in r.stderr
          and "check that [database] path names the database" in r.stderr and "SELECT" not in r.stderr,
          f"stderr: {r.stderr!r}")


def case_unwritable(tmp):
    """A database sqlvigil cannot write, or whose directory it cannot write
    (SQLite creates -wal and -shm there), is refused at start with what is
    wrong, not opened read-only behind our back."""
    if os.geteuid() != 0:
        from harness import Skip
        raise Skip("needs root to run sqlvigil as another user")
    os.chmod(tmp, 0o755)
    sub = os.path.join(tmp, "ro")
    os.mkdir(sub)
    db = os.path.join(sub, "ro.db")
    make_db(db, rows=3)
    os.chmod(db, 0o644)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    os.chmod(sub, 0o555)
    r = subprocess.run(nobody + [SQLVIGIL, "--database", db], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1, f"exit {r.returncode}")
    check(f"cannot write the directory of {db} as uid 65534: Permission denied" in r.stderr, r.stderr)
    os.chmod(sub, 0o777)
    r = subprocess.run(nobody + [SQLVIGIL, "--database", db], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1, f"exit {r.returncode}")
    check(f"cannot open {db} for reading and writing as uid 65534: Permission denied" in r.stderr, r.stderr)
    check(sorted(os.listdir(sub)) == ["ro.db"], f"files created: {os.listdir(sub)}")


# ---- Readiness -------------------------------------------------------------

def case_ready_after_open(tmp):
    """READY=1 comes only once the database is open and its pragmas verified:
    with the file in rollback mode and another process holding it locked,
    sqlvigil cannot switch it to WAL, so it must not be ready until the lock
    goes away."""
    db = os.path.join(tmp, "r.db")
    make_db(db, rows=10, wal=False)
    # The holder lets go when told: READY must come after that, however long
    # the daemon took to get going.
    holder = subprocess.Popen([sys.executable, "-c", r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("COMMIT")
print("released", flush=True)
""", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    check(holder.stdout.readline().strip() == "locked", "lock holder failed")
    notify = Notify(tmp)
    d = Daemon(["--database", db], notify=notify)
    try:
        # A second with the lock held (busy_timeout is 5 s): alive, not ready.
        time.sleep(1.0)
        check(d.alive(), f"sqlvigil gave up while the database was locked:\n{d.dump()}")
        check(notify.find("READY", "1") is None, "READY=1 while the database was locked")
        released_at = time.monotonic()
        holder.stdin.write("\n")
        holder.stdin.flush()
        check(holder.stdout.readline().strip() == "released", "lock holder failed to let go")
        t, _ = notify.wait_for("READY", "1", timeout=15)
        # The pid's open files at READY include the database itself.
        check(any(p == db for p in fd_targets(d.pid)), f"database not open at READY: {fd_targets(d.pid)}")
        check(t >= released_at, f"READY=1 arrived {released_at - t:.2f}s before the lock was released")
        ready_log = d.find_log(r"ready in")
        pragmas_log = d.find_log(r"pragmas in force: .*journal_mode=wal")
        check(pragmas_log and ready_log and pragmas_log[0] <= ready_log[0], f"pragmas not verified first:\n{d.dump()}")
        # It says where to reach it.
        check(re.search(r"; control socket /\S+\.sock$", ready_log[1]), f"the ready line: {ready_log[1]!r}")
        con = sqlite3.connect(db)
        check(con.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "file not switched to WAL")
        con.close()
        d.signal(signal.SIGTERM)
        check(d.wait_exit() == 0, d.dump())
    finally:
        d.kill()
        holder.kill()
        holder.wait()
        notify.close()


def case_status_line(tmp):
    """STATUS= is one line: health, WAL size, free pages, and how long ago
    each maintenance task last ran."""
    db = os.path.join(tmp, "s.db")
    make_db(db, rows=100)
    conf = os.path.join(tmp, "s.conf")
    write_config(conf, f"[database]\npath = {db}\n[health]\ninterval = 200ms\n[checkpoint]\ninterval = 500ms\n")
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify, watchdog_usec=WATCHDOG)
    try:
        _, f = notify.wait_for("READY", "1", timeout=15)
        status = f.get("STATUS", "")
        check(status.startswith("ok; WAL "), f"STATUS= is {status!r}")
        check("free pages" in status, f"STATUS= is {status!r}")
        check("\n" not in status, "STATUS= spans lines")
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.executemany("INSERT INTO t(v) VALUES (?)", (("x",) for _ in range(50)))
        con.close()
        wait_until(lambda: any("; last checkpoint " in m.get("STATUS", "") and " ago" in m.get("STATUS", "")
                               for _, m in notify.snapshot()), 15, "STATUS= naming the last checkpoint")
    finally:
        d.kill()
        notify.close()


# ---- Watchdog ----------------------------------------------------------------

def start_watched(tmp, db, extra="", watchdog=WATCHDOG):
    conf = os.path.join(tmp, "w.conf")
    write_config(conf, config_text(db, extra))
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify, watchdog_usec=watchdog)
    ready, _ = notify.wait_for("READY", "1", timeout=15)
    return notify, d, ready


def case_watchdog_cadence(tmp):
    db = os.path.join(tmp, "w.db")
    make_db(db, rows=100)
    notify, d, ready = start_watched(tmp, db)
    try:
        time.sleep(4 * PERIOD)  # the window observed; nothing waits for it to be long enough
        end = time.monotonic()
        pings = notify.times("WATCHDOG", "1", after=ready, before=end)
        # Half the period is 0.5 s: in 4 s expect about 8; allow for a slow machine.
        check(len(pings) >= 5, f"only {len(pings)} pings in {4 * PERIOD}s")
        # The end counts too: pings that stop early leave a gap up to it.
        gap = max_gap([ready] + pings + [end])
        check(gap < PERIOD, f"a gap of {gap:.2f}s between pings (or after the last one)")
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        median = sorted(gaps)[len(gaps) // 2]
        check(0.3 * PERIOD < median < 0.75 * PERIOD, f"median ping interval {median:.2f}s, expected about {PERIOD / 2}s")
        check(not notify.find("WATCHDOG", "trigger"), "sent WATCHDOG=trigger while healthy")
    finally:
        d.kill()
        notify.close()


def case_no_watchdog_without_env(tmp):
    db = os.path.join(tmp, "n.db")
    make_db(db)
    notify = Notify(tmp)
    d = Daemon(["--database", db], notify=notify)
    try:
        notify.wait_for("READY", "1", timeout=15)
        time.sleep(1.5)
        check(notify.find("WATCHDOG") is None, "pinged the watchdog although none was requested")
    finally:
        d.kill()
        notify.close()


def replace_or_delete(tmp, mode):
    """The database replaced (renamed over) or deleted under sqlvigil: at
    once health is failed with the file named, pings stop, STOPPING=1 says
    why, and sqlvigil saves the old content and exits with 75 so that
    systemd starts it again on the new file, without waiting for the
    watchdog. Nothing of the old database is lost: it was deleted (its last
    name went), so sqlvigil saved it beside the path."""
    db = os.path.join(tmp, "x.db")
    make_db(db, rows=10)
    notify, d, ready = start_watched(tmp, db)
    try:
        notify.wait_for("WATCHDOG", "1", after=ready, timeout=5)
        t0 = time.monotonic()
        if mode == "replace":
            other = os.path.join(tmp, "other.db")
            make_db(other, rows=1)
            os.rename(other, db)
        else:
            os.unlink(db)
        what = "was replaced" if mode == "replace" else "was deleted"
        t_failed, _ = d.wait_log(rf"health: failed: database file {db} {what}", after=t0, timeout=5)
        _, stopping = notify.wait_for("STOPPING", "1", after=t0, timeout=5)
        check(stopping.get("STATUS", "").startswith("failed: database file"), f"STATUS= {stopping}")
        rc = d.wait_exit(30)
        check(rc == 75, f"exit {rc}, expected 75 (EX_TEMPFAIL):\n{d.dump()}")
        late = notify.times("WATCHDOG", "1", after=t_failed)
        check(not late, f"{len(late)} pings after health failed")
        check(not notify.find("READY", "1", after=t0), "READY=1 after the files were displaced")
        saved = [f for f in os.listdir(tmp) if f.startswith("x.db.deleted-")]
        check(len(saved) == 1, f"the deleted database was not saved: {os.listdir(tmp)}")
        check(count_rows(os.path.join(tmp, saved[0])) == 10 and integrity(os.path.join(tmp, saved[0])) == ["ok"],
              "the saved copy lacks the rows")
        if mode == "replace":
            check(count_rows(db) == 1 and integrity(db) == ["ok"], "the new database was touched")
        d.wait_log(r"files of .*: .*saved the deleted database .* exiting with status 75")
    finally:
        d.kill()
        notify.close()


def case_watchdog_replaced(tmp):
    replace_or_delete(tmp, "replace")


def case_watchdog_deleted(tmp):
    replace_or_delete(tmp, "delete")


def case_lock_brief(tmp):
    """A writer holding the lock for less than lock_timeout: pings go on at
    their cadence, the loop never stalls."""
    db = os.path.join(tmp, "l.db")
    make_db(db, rows=10)
    notify, d, ready = start_watched(tmp, db, "")  # lock_timeout = 30s
    try:
        notify.wait_for("WATCHDOG", "1", after=ready, timeout=5)
        holder = LockHolder(db, 3.0)
        holder.wait()
        pings = notify.times("WATCHDOG", "1", after=holder.locked_at, before=holder.released_at)
        check(len(pings) >= 4, f"only {len(pings)} pings while the lock was held 3s")
        window = [holder.locked_at] + pings + [holder.released_at]
        check(max_gap(window) < PERIOD, f"loop stalled: {max_gap(window):.2f}s without a ping")
        check(not d.find_log(r"health: failed"), f"health failed on a brief lock:\n{d.dump()}")
        check(count_rows(db) == 11, "the lock holder's row is missing")
    finally:
        d.kill()
        notify.close()


def case_lock_timeout(tmp):
    """A writer holding the lock beyond lock_timeout: failed, pings stop; when
    it lets go, health recovers and pings resume."""
    db = os.path.join(tmp, "l.db")
    make_db(db, rows=10)
    conf = os.path.join(tmp, "w.conf")
    write_config(conf, f"[database]\npath = {db}\n[health]\nlock_timeout = 2s\n")
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify, watchdog_usec=WATCHDOG)
    try:
        ready, _ = notify.wait_for("READY", "1", timeout=15)
        notify.wait_for("WATCHDOG", "1", after=ready, timeout=5)
        holder = LockHolder(db, 6.0)
        t_failed, line = d.wait_log(r"health: failed: write lock unobtainable", after=holder.locked_at, timeout=8)
        check(t_failed - holder.locked_at >= 2.0 - 0.2,
              f"failed after {t_failed - holder.locked_at:.2f}s, before lock_timeout")
        holder.wait()
        # The holder sleeps 6 s after taking the lock, so it held it at least
        # until locked_at + 6; released_at is when we saw it exit, later.
        late = notify.times("WATCHDOG", "1", after=t_failed + 0.05, before=holder.locked_at + 6.0)
        check(not late, f"{len(late)} pings while failed")
        # Recovery.
        d.wait_log(r"health: ok \(was failed\)", after=holder.released_at - 0.1, timeout=5)
        notify.wait_for("WATCHDOG", "1", after=holder.released_at, timeout=5)
    finally:
        d.kill()
        notify.close()


# ---- Stop --------------------------------------------------------------------

WRITER = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
con.execute("PRAGMA wal_autocheckpoint=0")   # leave all checkpointing to sqlvigil
n = int(sys.argv[2])
for i in range(n):
    con.execute("INSERT INTO t(v) VALUES (?)", ("w%d" % i,))
print("done", flush=True)
sys.stdin.readline()       # stay connected, idle, until told to go
con.close()
"""


def case_stop_truncates(tmp):
    db = os.path.join(tmp, "stop.db")
    make_db(db, rows=100)
    notify, d, ready = start_watched(tmp, db)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, db, "2000"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        check(writer.stdout.readline().strip() == "done", "writer failed")
        wal = file_size(db + "-wal")
        check(wal and wal > 100_000, f"expected a sizeable WAL before stop, have {wal}")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1", after=t0, timeout=5)
        rc = d.wait_exit(30)
        check(rc == 0, f"exit {rc}:\n{d.dump()}")
        # The writer is still connected, so SQLite's own last-close cleanup
        # cannot be what emptied the WAL: sqlvigil's checkpoint did.
        check(writer.poll() is None, "writer went away early")
        wal = file_size(db + "-wal")
        check(wal == 0, f"-wal is {wal} bytes after stop")
        check(d.find_log(r"stopping: final truncate checkpoint done in .*: \d+ frames in WAL, \d+ checkpointed, "
                         r"WAL [0-9.]+[KM] -> 0B"), f"stop result not logged:\n{d.dump()}")
        check(count_rows(db) == 2100, f"rows: {count_rows(db)}, expected 2100")
        check(integrity(db) == ["ok"], "integrity_check failed")
        writer.stdin.write("\n")
        writer.stdin.flush()
        writer.wait(timeout=10)
    finally:
        d.kill()
        writer.kill()
        notify.close()


def case_stop_busy_reader(tmp):
    """A reader that never leaves: the stop checkpoint waits stop_timeout,
    reports busy, and sqlvigil still exits 0 - and stays within the time
    it asked systemd for with EXTEND_TIMEOUT_USEC."""
    db = os.path.join(tmp, "busy.db")
    make_db(db, rows=10)
    conf = os.path.join(tmp, "b.conf")
    write_config(conf, f"[database]\npath = {db}\n[checkpoint]\nstop_timeout = 2s\n")
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify)
    reader = None
    try:
        notify.wait_for("READY", "1", timeout=15)
        reader = subprocess.Popen([sys.executable, "-c", r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN")
con.execute("SELECT count(*) FROM t").fetchone()
w = sqlite3.connect(sys.argv[1], isolation_level=None)
w.execute("INSERT INTO t(v) VALUES ('after reader')")
print("reading", flush=True)
sys.stdin.readline()
""", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        check(reader.stdout.readline().strip() == "reading", "reader failed")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1", after=t0, timeout=5)
        ext = notify.wait_for("EXTEND_TIMEOUT_USEC", after=t0, timeout=5)
        check(int(ext[1]["EXTEND_TIMEOUT_USEC"]) >= 2_000_000, f"extension too short: {ext[1]}")
        rc = d.wait_exit(20)
        took = time.monotonic() - t0
        check(rc == 0, f"exit {rc}")
        check(1.5 < took < 10, f"stop took {took:.1f}s with stop_timeout = 2s")
        check(d.find_log(r"final truncate checkpoint incomplete after .*database busy"),
              f"busy stop not reported:\n{d.dump()}")
    finally:
        d.kill()
        if reader:
            reader.kill()
        notify.close()


def case_sigint(tmp):
    db = os.path.join(tmp, "i.db")
    make_db(db, rows=10)
    notify = Notify(tmp)
    d = Daemon(["--database", db], notify=notify)
    try:
        notify.wait_for("READY", "1", timeout=15)
        d.signal(signal.SIGINT)
        notify.wait_for("STOPPING", "1", timeout=5)
        check(d.wait_exit() == 0, d.dump())
        check(file_size(db + "-wal") == 0, "WAL left behind")
    finally:
        d.kill()
        notify.close()


# ---- Reload ------------------------------------------------------------------

def case_reload(tmp):
    db = os.path.join(tmp, "h.db")
    make_db(db, rows=10)
    conf = os.path.join(tmp, "h.conf")
    write_config(conf, f"[database]\npath = {db}\n[pragmas]\ncache_size = -1000\n[health]\ninterval = 400ms\n")
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify)
    try:
        notify.wait_for("READY", "1", timeout=15)
        d.wait_log(r"pragmas in force: .*cache_size=-1000")

        write_config(conf, f"[database]\npath = {db}\n[pragmas]\ncache_size = -500\n[health]\ninterval = 300ms\n")
        t0 = time.monotonic()
        d.signal(signal.SIGHUP)
        t_rel, f = notify.wait_for("RELOADING", "1", after=t0, timeout=5)
        check("MONOTONIC_USEC" in f and int(f["MONOTONIC_USEC"]) > 0, f"RELOADING without MONOTONIC_USEC: {f}")
        t_ready, _ = notify.wait_for("READY", "1", after=t_rel, timeout=10)
        check(t_ready >= t_rel, "READY before RELOADING")
        # The new configuration is in force: read back from the connection.
        d.wait_log(r"pragmas in force: .*cache_size=-500", after=t0)
        d.wait_log(r"configuration .* reloaded; health checks every 300 ms", after=t0)

        # A broken file: rejected with file:line, running config kept.
        write_config(conf, f"[database]\npath = {db}\n[pragmas]\ncache_size = lots\n")
        t1 = time.monotonic()
        d.signal(signal.SIGHUP)
        t_rel, _ = notify.wait_for("RELOADING", "1", after=t1, timeout=5)
        notify.wait_for("READY", "1", after=t_rel, timeout=10)
        d.wait_log(rf"configuration {conf} rejected \(1 error\); the running configuration stays in force: "
                   rf"invalid value 'lots' for 'cache_size' in \[pragmas\] at {conf}:4", after=t1)
        check(not d.find_log(r"reloaded", after=t1), "a broken configuration was applied")
        time.sleep(0.5)
        check(d.alive(), "sqlvigil died on a broken reload")

        # A reload cannot switch databases.
        write_config(conf, f"[database]\npath = {db}.other\n")
        t2 = time.monotonic()
        d.signal(signal.SIGHUP)
        d.wait_log(r"path changed from .* restart the service instead", after=t2)
        check(d.alive(), "sqlvigil died")

        d.signal(signal.SIGTERM)
        check(d.wait_exit() == 0, d.dump())
    finally:
        d.kill()
        notify.close()


def case_no_transaction_held(tmp):
    """Between operations sqlvigil holds no transaction: an independent
    TRUNCATE checkpoint succeeds completely while it runs."""
    db = os.path.join(tmp, "t.db")
    make_db(db, rows=10)
    conf = os.path.join(tmp, "t.conf")
    write_config(conf, f"[database]\npath = {db}\n[health]\ninterval = 50ms\n")
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify)
    try:
        notify.wait_for("READY", "1", timeout=15)
        con = sqlite3.connect(db, isolation_level=None, timeout=5)
        con.execute("PRAGMA wal_autocheckpoint=0")
        for i in range(30):
            con.execute("INSERT INTO t(v) VALUES ('x')")
            busy, log, ckpt = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            check(busy == 0, f"TRUNCATE checkpoint busy on round {i}: sqlvigil holds a transaction")
            time.sleep(0.02)
        con.close()
    finally:
        d.kill()
        notify.close()


def shm_locks(db, pid):
    """The byte ranges pid holds POSIX locks on in db's -shm, from /proc/locks."""
    ino = os.stat(db + "-shm").st_ino
    held = []
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if "->" in parts:
                continue
            if len(parts) >= 8 and parts[1] == "POSIX" and int(parts[4]) == pid and \
                    parts[5].split(":")[-1] == str(ino):
                held.append((int(parts[6]), parts[7]))
    return held


def case_locks_kept(tmp):
    """sqlvigil never drops SQLite's own locks. Closing any descriptor of a
    file drops every POSIX lock the process holds on it, so reading the WAL
    index through a descriptor opened and closed on the side would silently
    release SQLite's locks on the -shm - and two writers then corrupt the
    database. SQLite holds a shared lock on byte 128 of the -shm (the
    "dead man switch") for as long as the connection is open: it must still
    be there after many WAL-index reads."""
    db = os.path.join(tmp, "locks.db")
    make_db(db, rows=10)
    conf = os.path.join(tmp, "l.conf")
    write_config(conf, f"[database]\npath = {db}\n[health]\ninterval = 100ms\n[checkpoint]\ninterval = 200ms\n")
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify)
    try:
        notify.wait_for("READY", "1", timeout=15)
        w = subprocess.Popen([sys.executable, "-c", WRITER, db, "300"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        check(w.stdout.readline().strip() == "done", "writer failed")
        # WAL watch looks once a second or faster; checkpoints every 200 ms.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            held = shm_locks(db, d.pid)
            check((128, "128") in held, f"sqlvigil no longer holds its -shm lock on byte 128: {held}")
            time.sleep(0.1)
        check(d.find_log(r"checkpoint \("), "no checkpoint ran meanwhile:\n" + d.dump())
        w.stdin.write("\n")
        w.stdin.flush()
        w.wait(timeout=10)
        d.signal(signal.SIGTERM)
        check(d.wait_exit() == 0, d.dump())
    finally:
        d.kill()
        notify.close()


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    run(CASES)
