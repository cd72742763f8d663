#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""sqlvigil@.service under a real systemd.

    test_system.py NAME             run scenario NAME (meson does this)
    test_system.py --inside NAME    inside the container (the driver unit)

Two kinds of scenario:

- @static: checks on the generated unit file that run on the host, need no
  root and boot nothing (systemd-analyze verify / security).
- @booted: run inside a freshly booted container (see container.py) with
  this build installed. The function gets a Session (inside.py) and acts
  like an operator: systemctl, journalctl, an application process. It
  raises Failure (check()) when something is wrong, or Skip when the
  feature it needs is not there. Booted scenarios skip with status 77,
  saying why, when not root or when systemd-nspawn is missing. Each one
  boots its own container (about 3 s with the install), so group related
  checks in one scenario.

To add a scenario, write one function here and add one line to
tests/meson.build. For example, once maintenance lands:

    @booted
    def maintenance(s):
        t = s.instance("t", config="[checkpoint]\\ninterval = 1s\\n")
        s.systemctl("start", t.unit)
        app = s.app(t)
        app.cmd("insert 100")
        s.wait_journal("a checkpoint run", unit=t.unit, SQLVIGIL_EVENT="checkpoint")

plus `'maintenance',` in system_cases in tests/meson.build.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inside import (MSG_BACKUP, MSG_CONFIG_REJECTED, MSG_FILE_FAULT, MSG_FILE_RESCUED, MSG_HEALTH,  # noqa: E402
                    MSG_READY, MSG_RELOADED, MSG_STARTED, MSG_STOPPING, SD_UNIT_FAILURE_RESULT, SD_UNIT_RESTART_SCHEDULED,
                    SD_UNIT_SUCCESS, Failure, Skip, check, run_inside)

STATIC = {}
BOOTED = {}
# Longest a booted scenario may run inside the container.
BOOTED_TIMEOUT = 120


def static(func):
    STATIC[func.__name__] = func
    return func


def booted(func):
    BOOTED[func.__name__] = func
    return func


def size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return None


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def pragmas_lines(entries):
    return [e["MESSAGE"] for e in entries if e.get("MESSAGE", "").startswith("pragmas in force:")]


# ---- Static checks on the unit file -----------------------------------------

def unit_for_analysis(tmp):
    """The generated unit as instance sqlvigil@t.service in tmp, with
    ExecStart= pointing at the built binary so systemd-analyze can
    resolve it. First checks that the generated ExecStart= names the path
    where this build installs the binary."""
    import container
    build = container.BUILD
    unit = os.path.join(build, "units", "sqlvigil@.service")
    binary = os.path.join(build, "src", "sqlvigil")
    with open(unit) as f:
        text = f.read()
    m = re.search(r"^ExecStart=(\S+)", text, re.M)
    check(m, "no ExecStart= in the generated unit")
    installed = container.installed_path(binary)
    check(m.group(1) == installed,
          f"ExecStart= runs {m.group(1)}, but the build installs the binary as {installed}")
    check("@" not in m.group(1), f"unsubstituted variable in ExecStart={m.group(1)}")
    ctl = os.path.join(build, "src", "sqlvigilctl")
    m = re.search(r"^ExecReload=(\S+)", text, re.M)
    check(m and m.group(1) == container.installed_path(ctl),
          f"ExecReload= runs {m.group(1) if m else None}, not the sqlvigilctl this build installs")
    path = os.path.join(tmp, "sqlvigil@t.service")
    with open(path, "w") as f:
        f.write(text.replace(f"ExecStart={installed} ", f"ExecStart={os.path.abspath(binary)} ")
                    .replace(f"ExecReload={m.group(1)} ", f"ExecReload={os.path.abspath(ctl)} "))
    return path


@static
def unit_verify(tmp):
    path = unit_for_analysis(tmp)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    print(f"systemd-analyze verify --man=no sqlvigil@t.service: exit {r.returncode}")
    if out:
        print(out)
    check(r.returncode == 0, f"systemd-analyze verify exited with {r.returncode}")
    # Complaints about other units (the host's) are not ours; any about this
    # one, even a warning, is.
    concerns = [line for line in out.splitlines() if "sqlvigil" in line]
    check(not concerns, "systemd-analyze verify complains:\n" + "\n".join(concerns))


@static
def unit_security(tmp):
    path = unit_for_analysis(tmp)
    # --threshold is in tenths of the displayed score: 15 means 1.5.
    r = subprocess.run(["systemd-analyze", "security", "--no-pager", "--offline=true", "--threshold=15", path],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for sqlvigil@t\.service: (\d+\.\d+) (\w+)", r.stdout)
    check(m, f"no overall exposure level in:\n{r.stdout}{r.stderr}")
    print(f"exposure {m.group(1)} {m.group(2)} (threshold 1.5); not satisfied:")
    print("\n".join(line for line in r.stdout.splitlines() if line.startswith("✗")))
    check(r.returncode == 0, f"exposure {m.group(1)} is above 1.5 (exit {r.returncode}):\n{r.stderr}")


# ---- Booted scenarios --------------------------------------------------------

@booted
def start_ready(s):
    """Active only after READY=1; the STATUS= line; the structured ready
    entry; the sandbox; instances side by side."""
    # A rollback-journal database with a "migration" holding an EXCLUSIVE
    # lock: sqlvigil cannot even read it, and waits (busy_timeout 5s).
    t = s.instance("t", rows=10, wal=False)
    app = s.app(t)
    app.sql("BEGIN EXCLUSIVE")
    app.sql("INSERT INTO t(v) VALUES ('migration')")

    s.systemctl("start", "--no-block", t.unit)
    s.wait_journal("sqlvigil's started entry", unit=t.unit, MESSAGE_ID=MSG_STARTED)
    pid = s.prop(t.unit, "MainPID")
    check(pid != "0", "no main process while starting")
    # Blocked on the lock, before READY=1: the unit must stay `activating`.
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        st = s.show(t.unit, "ActiveState", "SubState")
        check((st["ActiveState"], st["SubState"]) == ("activating", "start"),
              f"unit is {st['ActiveState']} ({st['SubState']}) while sqlvigil waits for the database; "
              "expected activating (start) until READY=1")
        time.sleep(0.05)
    s.log("unit stayed activating (start) for 1 s while the database was locked")
    app.sql("COMMIT")
    s.wait_until(lambda: s.prop(t.unit, "ActiveState") == "active", 15, "the unit to become active")
    st = s.show(t.unit, "SubState", "MainPID", "StatusText", "ExecMainStartTimestampMonotonic",
                "ActiveEnterTimestampMonotonic", "NRestarts")
    check(st["SubState"] == "running", f"SubState={st['SubState']}")
    check(st["MainPID"] == pid, f"main process changed while starting: {pid} -> {st['MainPID']}")
    check(st["NRestarts"] == "0", f"NRestarts={st['NRestarts']}")
    # systemd's own clock: active at least a second after the process began.
    waited = (int(st["ActiveEnterTimestampMonotonic"]) - int(st["ExecMainStartTimestampMonotonic"])) / 1e6
    check(waited >= 1.0, f"unit became active {waited:.2f}s after the process started; expected >= 1 s "
          "(READY=1 only after the database opened)")
    s.log(f"active {waited:.2f}s after ExecStart")

    # STATUS= as systemctl shows it.
    status = st["StatusText"]
    check(status.startswith("ok; WAL "), f"StatusText={status!r}")
    out = s.systemctl("status", t.unit).stdout
    check(f'Status: "{status}"' in out, f"systemctl status lacks the status line {status!r}:\n{out}")

    # The ready entry, with sqlvigil's fields and the unit's LogExtraFields=.
    ready = s.wait_journal("the ready entry", unit=t.unit, MESSAGE_ID=MSG_READY)
    for k, v in (("SQLVIGIL_EVENT", "ready"), ("SQLVIGIL_INSTANCE", "t"), ("SQLVIGIL_DATABASE", t.db),
                 ("SQLVIGIL_HEALTH", "ok"), ("SQLVIGIL_WATCHDOG_USEC", "30000000"), ("PRIORITY", "6"),
                 ("SYSLOG_IDENTIFIER", "sqlvigil"), ("_SYSTEMD_UNIT", t.unit)):
        check(ready.get(k) == v, f"ready entry: {k}={ready.get(k)!r}, expected {v!r}")
    check(ready.get("_PID") == pid, f"ready entry from PID {ready.get('_PID')}, main PID is {pid}")
    # Every entry of the daemon carries the instance.
    untagged = [e for e in s.journal(unit=t.unit, _SYSTEMD_UNIT=t.unit) if e.get("SQLVIGIL_INSTANCE") != "t"]
    check(not untagged, f"entries without SQLVIGIL_INSTANCE=t: {[e.get('MESSAGE') for e in untagged]}")

    # The database is now in WAL mode, the migration's row is there.
    check(s.sqlite_cli("t", t.db, "PRAGMA journal_mode;") == "wal", "journal_mode is not wal")
    check(s.sqlite_cli("t", t.db, "SELECT count(*) FROM t;") == "11", "rows missing")

    # The sandbox, as the kernel sees it.
    ps = proc_status(pid)
    uid = subprocess.run(["id", "-u", "t"], capture_output=True, text=True).stdout.strip()
    for k, v in (("NoNewPrivs", "1"), ("Seccomp", "2"), ("CapEff", "0000000000000000"),
                 ("CapBnd", "0000000000000000")):
        check(ps.get(k) == v, f"/proc/{pid}/status: {k}: {ps.get(k)}, expected {v}")
    check(ps["Uid"].split() == [uid] * 4, f"Uid: {ps['Uid']}, expected user t ({uid})")

    # A second instance beside it, with its own runtime directory; stopping
    # it leaves the first one alone.
    u = s.instance("u")
    s.systemctl("start", u.unit)
    for inst in (t, u):
        check(os.path.isdir(inst.runtime_dir), f"{inst.runtime_dir} missing")
        owner = subprocess.run(["stat", "-c", "%U", inst.runtime_dir], capture_output=True,
                               text=True).stdout.strip()
        check(owner == inst.name, f"{inst.runtime_dir} is owned by {owner}")
    ready_u = s.wait_journal("u's ready entry", unit=u.unit, MESSAGE_ID=MSG_READY)
    check(ready_u.get("SQLVIGIL_INSTANCE") == "u" and ready_u.get("SQLVIGIL_DATABASE") == u.db,
          f"u's ready entry: {ready_u.get('SQLVIGIL_INSTANCE')} {ready_u.get('SQLVIGIL_DATABASE')}")
    s.systemctl("stop", u.unit)
    check(not os.path.exists(u.runtime_dir), f"{u.runtime_dir} still there after stop")
    check(os.path.isdir(t.runtime_dir), f"stopping sqlvigil@u removed {t.runtime_dir}")
    st = s.show(t.unit, "ActiveState", "MainPID")
    check(st == {"ActiveState": "active", "MainPID": pid}, f"sqlvigil@t after stopping @u: {st}")
    app.quit()


@booted
def reload_config(s):
    """systemctl reload applies a new configuration; a broken one is
    rejected and the old one stays in force."""
    t = s.instance("t", config="[pragmas]\ncache_size = -3000\n")
    s.systemctl("start", t.unit)
    check(any("cache_size=-3000" in m for m in pragmas_lines(s.journal(unit=t.unit))),
          "the pragmas line at start does not show cache_size=-3000")
    pid = s.prop(t.unit, "MainPID")

    def reload_and_wait(what, message_id):
        # ExecReload= is `sqlvigilctl -i NAME reload`, which waits for the
        # daemon's answer: systemctl reload succeeds for a good file, fails
        # for a rejected one, and returns only when the reload is done.
        c = s.cursor()
        r = s.systemctl("reload", t.unit, check_status=False)
        check((r.returncode == 0) == (what == "reloaded"),
              f"systemctl reload exited {r.returncode} for a {what} configuration: {r.stderr.strip()}")
        e = s.wait_journal(what, unit=t.unit, after=c, MESSAGE_ID=message_id, timeout=5)
        s.wait_until(lambda: s.show(t.unit, "ActiveState", "SubState") ==
                     {"ActiveState": "active", "SubState": "running"}, 10, "active (running) after the reload")
        return c, e

    # A good new configuration.
    s.write_config(t, f"[database]\npath = {t.db}\n\n[pragmas]\ncache_size = -4000\n")
    c, e = reload_and_wait("reloaded", MSG_RELOADED)
    check(e.get("SQLVIGIL_EVENT") == "reloaded" and e.get("SQLVIGIL_INSTANCE") == "t", f"reloaded entry: {e}")
    lines = pragmas_lines(s.journal(unit=t.unit, after=c, sync=True))
    check(lines and "cache_size=-4000" in lines[-1], f"after the reload, pragmas lines: {lines}")

    # A broken one: rejected, naming the key; still running, same process.
    s.write_config(t, f"[database]\npath = {t.db}\n\n[pragmas]\ncache_sise = -5000\n")
    c, e = reload_and_wait("config-rejected", MSG_CONFIG_REJECTED)
    check(e.get("SQLVIGIL_EVENT") == "config-rejected" and e.get("SQLVIGIL_INSTANCE") == "t",
          f"config-rejected entry: {e}")
    check(e.get("PRIORITY") == "3", f"config-rejected PRIORITY={e.get('PRIORITY')}")
    check("cache_sise" in e.get("MESSAGE", "") and t.conf in e.get("MESSAGE", ""),
          f"the message does not name the file and the key: {e.get('MESSAGE')!r}")
    after = s.journal(unit=t.unit, after=c, sync=True)
    check(not pragmas_lines(after), "pragmas changed although the configuration was rejected")
    check(not [x for x in after if x.get("MESSAGE_ID") == MSG_RELOADED], "a 'reloaded' entry for a broken file")
    st = s.show(t.unit, "ActiveState", "SubState", "MainPID", "NRestarts")
    check(st == {"ActiveState": "active", "SubState": "running", "MainPID": pid, "NRestarts": "0"},
          f"after a rejected reload: {st}")

    # And it still reloads after that.
    s.write_config(t, f"[database]\npath = {t.db}\n\n[pragmas]\ncache_size = -6000\n")
    c, e = reload_and_wait("reloaded", MSG_RELOADED)
    lines = pragmas_lines(s.journal(unit=t.unit, after=c, sync=True))
    check(lines and "cache_size=-6000" in lines[-1], f"after the second reload, pragmas lines: {lines}")
    check(s.prop(t.unit, "MainPID") == pid, "the main process changed during reloads")


@booted
def watchdog_restart(s):
    """An application that holds the write lock past lock_timeout fails
    health; pings stop, systemd's watchdog kills and restarts sqlvigil; the
    journal says why in sqlvigil's words first, naming the holder."""
    t = s.instance("t", rows=5, config="[health]\ninterval = 500ms\nlock_timeout = 2s\n")
    # A short watchdog to keep the test fast (pings every 1.5 s).
    s.dropin(t.unit, "50-test-watchdog", "[Service]\nWatchdogSec=3s\n")
    s.systemctl("start", t.unit)
    pid = s.prop(t.unit, "MainPID")
    ready = s.wait_journal("ready", unit=t.unit, MESSAGE_ID=MSG_READY)
    check(ready.get("SQLVIGIL_WATCHDOG_USEC") == "3000000",
          f"ready entry: SQLVIGIL_WATCHDOG_USEC={ready.get('SQLVIGIL_WATCHDOG_USEC')}")
    c = s.cursor()

    # An application hangs inside a write transaction.
    app = s.app(t)
    app.sql("BEGIN IMMEDIATE")
    app.sql("INSERT INTO t(v) VALUES ('inside the hung transaction')")
    s.log("the application holds the write lock")
    s.wait_journal("systemd: watchdog result", timeout=30, unit=t.unit, after=c,
                   pred=lambda e: e.get("MESSAGE_ID") == SD_UNIT_FAILURE_RESULT and
                   e.get("UNIT_RESULT") == "watchdog")
    # The application recovers (its transaction ends); the restarted
    # sqlvigil stays up.
    app.sql("COMMIT")

    def restarted():
        st = s.show(t.unit, "ActiveState", "NRestarts", "MainPID")
        return st["ActiveState"] == "active" and st["NRestarts"] != "0" and st["MainPID"] != pid
    s.wait_until(restarted, 30, "a restart (NRestarts >= 1) and the unit active again")
    st = s.show(t.unit, "NRestarts", "MainPID", "ActiveState", "SubState")
    s.log(f"restarted: {st}")
    s.wait_journal("ready after the restart", unit=t.unit, after=c, MESSAGE_ID=MSG_READY)
    check(s.sqlite_cli("t", t.db, "SELECT count(*) FROM t;") == "6", "the committed row is missing")

    entries = s.journal(unit=t.unit, after=c, sync=True)

    def first(pred, what):
        for i, e in enumerate(entries):
            if pred(e):
                s.log(f"journal #{i}: {what}: {e.get('MESSAGE')!r}")
                return i, e
        raise Failure(f"no journal entry: {what}; journal since the transaction began:\n"
                      + "\n".join(e.get("MESSAGE", "") for e in entries))

    i_health, health = first(lambda e: e.get("MESSAGE_ID") == MSG_HEALTH and e.get("SQLVIGIL_HEALTH") == "failed",
                             "sqlvigil: health failed")
    check(health.get("SQLVIGIL_REASON") == "lock-timeout", f"SQLVIGIL_REASON={health.get('SQLVIGIL_REASON')}")
    check(f"pid {app.proc.pid}" in health.get("MESSAGE", "") or "python3" in health.get("MESSAGE", ""),
          f"the health entry does not name the holder: {health.get('MESSAGE')!r}")
    check(health.get("SQLVIGIL_INSTANCE") == "t" and health.get("_PID") == pid, "health entry: wrong origin")
    i_wd, wd = first(lambda e: e.get("UNIT") == t.unit and "Watchdog timeout" in e.get("MESSAGE", ""),
                     "systemd: watchdog timeout")
    check(i_health < i_wd, "systemd's watchdog timeout comes before sqlvigil's health entry")
    i_res, res = first(lambda e: e.get("MESSAGE_ID") == SD_UNIT_FAILURE_RESULT and e.get("UNIT") == t.unit,
                       "systemd: unit result")
    check(res.get("UNIT_RESULT") == "watchdog", f"UNIT_RESULT={res.get('UNIT_RESULT')}")
    i_rs, rs = first(lambda e: e.get("MESSAGE_ID") == SD_UNIT_RESTART_SCHEDULED and e.get("UNIT") == t.unit,
                     "systemd: restart scheduled")
    check(i_wd < i_res < i_rs, "watchdog, result and restart out of order")
    app.quit()


@booted
def rename_over_restart(s):
    """The restore that docs used to recommend: a database renamed over the
    live one. sqlvigil keeps the old WAL out of the new file, saves the old
    content, exits 75 and is restarted by systemd on the new file (no
    watchdog kill); the application's writes afterwards land in a file that
    passes integrity_check."""
    t = s.instance("t", config="[checkpoint]\ninterval = 2s\n")
    s.dropin(t.unit, "50-test-watchdog", "[Service]\nWatchdogSec=4s\n")
    s.systemctl("start", t.unit)
    pid = s.prop(t.unit, "MainPID")
    s.wait_journal("ready", unit=t.unit, MESSAGE_ID=MSG_READY)

    # An application writes 2000 rows and exits; the WAL holds them (a
    # checkpoint may have copied some).
    app = s.app(t)
    app.cmd("insert 2000")
    app.quit()
    c = s.cursor()
    new = t.db + ".new"
    s.sqlite_cli("t", new, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); "
                 "INSERT INTO t(v) VALUES ('replacement');")
    os.rename(new, t.db)
    s.log("renamed a new database over the live one")

    fault = s.wait_journal("file-fault", unit=t.unit, after=c, MESSAGE_ID=MSG_FILE_FAULT)
    check(fault.get("SQLVIGIL_DB_STATE") in ("deleted", "replaced") and t.db in fault.get("MESSAGE", ""),
          f"file-fault entry: {fault.get('SQLVIGIL_DB_STATE')} {fault.get('MESSAGE')!r}")
    check(fault.get("PRIORITY") == "2", f"file-fault PRIORITY={fault.get('PRIORITY')}")
    rescued = s.wait_journal("file-rescued", unit=t.unit, after=c, MESSAGE_ID=MSG_FILE_RESCUED)
    check(rescued.get("SQLVIGIL_COMPLETE") == "1", f"rescue incomplete: {rescued.get('MESSAGE')!r}")

    def restarted():
        st = s.show(t.unit, "ActiveState", "NRestarts", "MainPID")
        return st["ActiveState"] == "active" and st["NRestarts"] != "0" and st["MainPID"] != pid
    s.wait_until(restarted, 30, "a restart and the unit active again")
    s.wait_journal("ready after the restart", unit=t.unit, after=c, MESSAGE_ID=MSG_READY)
    entries = s.journal(unit=t.unit, after=c, sync=True)
    res = [e for e in entries if e.get("MESSAGE_ID") == SD_UNIT_FAILURE_RESULT]
    check(res and res[0].get("UNIT_RESULT") == "exit-code",
          f"unit results: {[e.get('UNIT_RESULT') for e in res]}, expected exit-code (status 75), not the watchdog")
    check(not any("Watchdog timeout" in e.get("MESSAGE", "") for e in entries),
          "systemd's watchdog fired: sqlvigil should have restarted on its own")
    check(any("status=75" in e.get("MESSAGE", "") for e in entries), "no exit with status 75")

    # The application carries on with the new file.
    app = s.app(t)
    app.cmd("insert 500")
    app.quit()
    s.systemctl("stop", t.unit)
    check(s.sqlite_cli("t", t.db, "PRAGMA integrity_check;") == "ok", "the new database is corrupt")
    check(s.sqlite_cli("t", t.db, "SELECT count(*) FROM t;") == "501", "rows of the new database")
    check(s.sqlite_cli("t", t.db, "SELECT v FROM t WHERE id = 1;") == "replacement", "not the replacement")
    # The old content, every committed row, saved beside it.
    saved = [f for f in os.listdir(t.dir) if f.startswith("t.db.deleted-") and not f.endswith(".tmp")]
    check(len(saved) == 1, f"saved copies in {t.dir}: {sorted(os.listdir(t.dir))}")
    old = os.path.join(t.dir, saved[0])
    check(s.sqlite_cli("t", old, "PRAGMA integrity_check;") == "ok", f"{old} is corrupt")
    check(s.sqlite_cli("t", old, "SELECT count(*) FROM t;") == "2000", f"rows in {old}")


@booted
def start_limit(s):
    """A database that stays gone ends in `failed` at the start limit; a
    bad configuration fails at once, with no restart."""
    # A configuration error: exit 78, RestartPreventExitStatus=78.
    bad = s.instance("bad", config="[checkpoint]\nintervall = 1min\n")
    r = s.systemctl("start", bad.unit, check_status=False)
    check(r.returncode != 0, "systemctl start succeeded with a broken configuration")
    started_bad = time.monotonic()
    e = s.wait_journal("config-rejected at start", unit=bad.unit, MESSAGE_ID=MSG_CONFIG_REJECTED)
    check("intervall" in e.get("MESSAGE", "") and e.get("SQLVIGIL_INSTANCE") == "bad",
          f"config-rejected entry: {e.get('MESSAGE')!r} {e.get('SQLVIGIL_INSTANCE')}")

    # The database is deleted under a running instance: sqlvigil saves what
    # it still holds and exits 75 at once; every start after that exits 66.
    gone = s.instance("gone")
    s.dropin(gone.unit, "50-test-watchdog", "[Service]\nWatchdogSec=3s\n")
    s.systemctl("start", gone.unit)
    for f in (gone.db, gone.db + "-wal", gone.db + "-shm"):
        if os.path.exists(f):
            os.unlink(f)
    s.log("deleted the database")
    # Each start after that exits 66 at once; systemd refuses the sixth
    # within StartLimitIntervalSec=10min (StartLimitBurst=5) and leaves the
    # unit failed. (On 252 Result= stays that of the last run, exit-code,
    # when the refused start is an automatic restart.)
    s.wait_journal("systemd: start request repeated too quickly", timeout=60, unit=gone.unit,
                   pred=lambda e: "Start request repeated too quickly" in e.get("MESSAGE", ""))
    s.wait_until(lambda: s.show(gone.unit, "ActiveState", "SubState") ==
                 {"ActiveState": "failed", "SubState": "failed"}, 10, "sqlvigil@gone to be failed")
    st = s.show(gone.unit, "NRestarts", "ExecMainStatus", "Result")
    s.log(f"sqlvigil@gone: {st}")
    entries = s.journal(unit=gone.unit, sync=True)
    # Under heavy load (the sanitizer run), systemd in the container has been
    # seen to fail a restart itself, before sqlvigil runs: "status=219/CGROUP".
    # Such a start counts towards the limit but is systemd's, not ours.
    spawn_failures = [e for e in entries if "status=219/CGROUP" in e.get("MESSAGE", "")]
    if spawn_failures:
        s.log(f"{len(spawn_failures)} restart(s) failed in systemd itself (219/CGROUP)")
    check(st["ExecMainStatus"] == "66" or (spawn_failures and st["ExecMainStatus"] == "219"),
          f"last exit status {st['ExecMainStatus']}, expected 66")
    check(st["Result"] in ("exit-code", "start-limit-hit"), f"Result={st['Result']}")
    starts = [e for e in entries if e.get("MESSAGE_ID") == MSG_STARTED]
    check(len(starts) + len(spawn_failures) == 5,
          f"{len(starts)} starts (+{len(spawn_failures)} failed by systemd), expected 5 (StartLimitBurst=5)")
    check(st["NRestarts"] == "5", f"NRestarts={st['NRestarts']}, expected 5 (the fifth was refused)")
    check(any(e.get("MESSAGE_ID") == MSG_HEALTH and e.get("SQLVIGIL_REASON") == "file-deleted" for e in entries),
          "no health entry saying the file was deleted")
    check(any("does not exist" in e.get("MESSAGE", "") and e.get("PRIORITY") == "3" for e in entries),
          "no error entry saying the database does not exist")
    check(any("status=75" in e.get("MESSAGE", "") for e in entries), "the first run did not exit with status 75")
    check(not any("Watchdog timeout" in e.get("MESSAGE", "") for e in entries),
          "the watchdog fired: sqlvigil should have left on its own")
    saved = [f for f in os.listdir(gone.dir) if f.startswith("gone.db.deleted-")]
    check(len(saved) == 1, f"the deleted database was not saved: {sorted(os.listdir(gone.dir))}")

    # By now the broken configuration has had several RestartSec= to be
    # restarted, had it been.
    check(time.monotonic() - started_bad > 5, "not enough time passed to see a restart")
    st = s.show(bad.unit, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    check(st == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "78", "NRestarts": "0"},
          f"sqlvigil@bad: {st}")
    starts = {e.get("_PID") for e in s.journal(unit=bad.unit, _SYSTEMD_UNIT=bad.unit)}
    check(len(starts) == 1, f"sqlvigil@bad ran {len(starts)} times")


@booted
def stop_checkpoint(s):
    """systemctl stop: the WAL is truncated while the application stays
    connected; all of its rows are there, and the file is sound."""
    t = s.instance("t")
    s.systemctl("start", t.unit)
    app = s.app(t)
    app.cmd("insert 300")  # 300 transactions while sqlvigil runs
    wal = size(t.wal)
    check(wal and wal > 0, f"WAL is {wal} bytes before stop; expected frames to checkpoint")
    s.log(f"WAL before stop: {wal} bytes")
    c = s.cursor()
    began = time.monotonic()
    s.systemctl("stop", t.unit)
    took = time.monotonic() - began
    s.log(f"systemctl stop took {took:.2f}s")
    # The application is still connected (and idle): the WAL is empty now.
    wal = size(t.wal)
    check(wal in (0, None), f"WAL is {wal} bytes after stop, expected 0 (TRUNCATE checkpoint)")
    check(app.alive(), "the application died")
    st = s.show(t.unit, "ActiveState", "Result", "ExecMainStatus")
    check(st == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, f"after stop: {st}")
    s.wait_journal("systemd: deactivated successfully", unit=t.unit, after=c, MESSAGE_ID=SD_UNIT_SUCCESS)
    check(not os.path.exists(t.runtime_dir), f"{t.runtime_dir} still there")
    e = s.wait_journal("the stopping entry", unit=t.unit, after=c, MESSAGE_ID=MSG_STOPPING)
    for k, v in (("SQLVIGIL_EVENT", "stopping"), ("SQLVIGIL_CHECKPOINT_MODE", "truncate"),
                 ("SQLVIGIL_WAL_BYTES", "0"), ("SQLVIGIL_BUSY", "0"), ("SQLVIGIL_INSTANCE", "t")):
        check(e.get(k) == v, f"stopping entry: {k}={e.get(k)!r}, expected {v!r}")
    check(int(e.get("SQLVIGIL_WAL_BYTES_BEFORE", "0")) > 0, "stopping entry: nothing was in the WAL before")
    # The application's connection still works, reads everything and writes.
    check(app.sql("SELECT count(*) FROM t") == [[300]], "the application does not see its 300 rows")
    app.cmd("insert 1")
    app.quit()
    # An independent client: every row, and a sound file.
    check(s.sqlite_cli("t", t.db, "SELECT count(*) FROM t;") == "301", "rows missing")
    check(s.sqlite_cli("t", t.db, "PRAGMA integrity_check;") == "ok", "integrity_check failed")


@booted
def stop_extend(s):
    """A reader that never leaves: the final checkpoint waits stop_timeout
    (4 s) and gives up cleanly. TimeoutStopSec is shorter (2 s, for the
    test), so only EXTEND_TIMEOUT_USEC= keeps systemd from killing it."""
    t = s.instance("t", config="[checkpoint]\nstop_timeout = 4s\n")
    s.dropin(t.unit, "50-test-stop", "[Service]\nTimeoutStopSec=2s\n")
    s.systemctl("start", t.unit)
    app = s.app(t)
    app.cmd("insert 50")
    app.sql("BEGIN")
    check(app.sql("SELECT count(*) FROM t") == [[50]], "reader: wrong count")  # holds a read snapshot
    c = s.cursor()
    began = time.monotonic()
    s.systemctl("stop", t.unit)
    took = time.monotonic() - began
    s.log(f"systemctl stop took {took:.2f}s")
    check(3.5 <= took < 20, f"stop took {took:.2f}s; expected about stop_timeout (4 s)")
    st = s.show(t.unit, "ActiveState", "Result", "ExecMainStatus")
    check(st == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"},
          f"after stop: {st} (Result=timeout means systemd killed it: EXTEND_TIMEOUT_USEC= did not work)")
    s.wait_journal("systemd: deactivated successfully", unit=t.unit, after=c, MESSAGE_ID=SD_UNIT_SUCCESS)
    e = s.wait_journal("the stopping entry", unit=t.unit, after=c, MESSAGE_ID=MSG_STOPPING)
    check(e.get("SQLVIGIL_BUSY") == "1", f"stopping entry: SQLVIGIL_BUSY={e.get('SQLVIGIL_BUSY')}")
    killed = [x for x in s.journal(unit=t.unit, after=c, sync=True) if "timed out" in x.get("MESSAGE", "")]
    check(not killed, f"systemd timed out: {[x.get('MESSAGE') for x in killed]}")
    app.sql("COMMIT")
    app.quit()
    check(s.sqlite_cli("t", t.db, "SELECT count(*) FROM t;") == "50", "rows missing")
    check(s.sqlite_cli("t", t.db, "PRAGMA integrity_check;") == "ok", "integrity_check failed")


@booted
def override_paths(s):
    """The documented override: a database outside /var/lib/NAME, owned by
    another user, supervised through a `systemctl edit` drop-in."""
    w = s.instance("wecare", user="www", directory="/srv/wecare/db")
    # What `systemctl edit sqlvigil@wecare` would write.
    s.dropin(w.unit, "override", "[Service]\nUser=www\nGroup=www\nReadWritePaths=/srv/wecare/db\n")
    check(not os.path.exists("/var/lib/wecare"), "/var/lib/wecare exists")
    s.systemctl("start", w.unit)
    st = s.show(w.unit, "ActiveState", "SubState", "MainPID")
    check((st["ActiveState"], st["SubState"]) == ("active", "running"), f"{w.unit}: {st}")
    uid = subprocess.run(["id", "-u", "www"], capture_output=True, text=True).stdout.strip()
    ps = proc_status(st["MainPID"])
    check(ps["Uid"].split() == [uid] * 4, f"Uid: {ps['Uid']}, expected www ({uid})")
    # The application, as www, writes; the stop checkpoint can still write
    # the database's directory.
    app = s.app(w)
    app.cmd("insert 20")
    check((size(w.wal) or 0) > 0, "nothing in the WAL")
    s.systemctl("stop", w.unit)
    check(size(w.wal) in (0, None), f"WAL is {size(w.wal)} bytes after stop")
    check(s.prop(w.unit, "Result") == "success", "stop did not succeed")
    app.quit()
    check(s.sqlite_cli("www", w.db, "SELECT count(*) FROM t;") == "20", "rows missing")


# ---- Entry points --------------------------------------------------------------

@booted
def maintenance(s):
    """Scheduled maintenance happens unattended and shows in
    journalctl -u: a one-time conversion to auto_vacuum=incremental, then
    checkpoints, incremental vacuum, ANALYZE and quick_check, each one entry
    with its figures as SQLVIGIL_* fields."""
    t = s.instance("t", config="[pragmas]\nauto_vacuum = incremental\n\n"
                               "[checkpoint]\ninterval = 1s\nmin_wal_pages = 50\n\n"
                               "[vacuum]\ninterval = 1s\nmin_free_pages = 10\nconvert = yes\n\n"
                               "[analyze]\ninterval = 1s\n\n"
                               "[health]\ninterval = 500ms\nquick_check_interval = 2s\n")
    app = s.app(t)
    app.sql("CREATE INDEX t_v ON t(v)")
    big_rows = ("INSERT INTO t(v) SELECT hex(randomblob(1500)) FROM "
                "(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {n}) SELECT i FROM r)")
    app.sql(big_rows.format(n=1500))
    app.sql("DELETE FROM t WHERE id % 2 = 0")
    c = s.cursor()
    s.systemctl("start", t.unit)
    conv = s.wait_journal("the conversion to auto_vacuum=incremental", unit=t.unit, after=c, timeout=30,
                          SQLVIGIL_EVENT="vacuum", SQLVIGIL_CONVERT="1")
    check(conv.get("SQLVIGIL_RESULT") == "ok", f"conversion: {conv.get('MESSAGE')}")
    check(s.sqlite_cli("t", t.db, "PRAGMA auto_vacuum") == "2", "the file is not incremental")
    # More free pages, now reclaimable step by step.
    app.sql(big_rows.format(n=2000))
    app.sql("DELETE FROM t WHERE id % 3 = 0")
    app.cmd("insert 500")
    for event in ("checkpoint", "vacuum", "analyze", "integrity"):
        e = s.wait_journal(f"a {event} run", unit=t.unit, after=c, timeout=30, SQLVIGIL_EVENT=event,
                           pred=lambda e: event != "vacuum" or e.get("SQLVIGIL_CONVERT") != "1")
        for field in ("SQLVIGIL_DURATION_USEC", "SQLVIGIL_LOCK_USEC", "SQLVIGIL_DATABASE", "SQLVIGIL_INSTANCE",
                      "MESSAGE_ID"):
            check(field in e, f"the {event} entry lacks {field}: {e}")
        check(e["SQLVIGIL_DATABASE"] == t.db, f"{event}: SQLVIGIL_DATABASE={e['SQLVIGIL_DATABASE']}")
    vac = s.wait_journal("a vacuum that freed pages", unit=t.unit, after=c, timeout=30, SQLVIGIL_EVENT="vacuum",
                         pred=lambda e: e.get("SQLVIGIL_CONVERT") != "1" and int(e.get("SQLVIGIL_PAGES", "0")) > 0)
    check(int(vac["SQLVIGIL_LOCK_USEC"]) <= 1_000_000, f"vacuum held the lock {vac['SQLVIGIL_LOCK_USEC']} us")
    # The operator's query from the docs works: journalctl SQLVIGIL_EVENT=checkpoint -o json.
    r = s.run("journalctl", "--no-pager", "-o", "json", "SQLVIGIL_EVENT=checkpoint", "SQLVIGIL_INSTANCE=t")
    rows = [l for l in r.stdout.splitlines() if l.strip()]
    check(rows, "journalctl SQLVIGIL_EVENT=checkpoint finds nothing")
    check(s.sqlite_cli("t", t.db, "SELECT count(*) FROM sqlite_stat1 WHERE idx = 't_v'") == "1",
          "no statistics for t_v")
    app.quit()
    s.systemctl("stop", t.unit)
    check(s.sqlite_cli("t", t.db, "PRAGMA integrity_check") == "ok", "integrity_check")


@booted
def backup_restic(s):
    """Scheduled backups under the unit, shipped by the example path unit to
    a local restic repository, and brought back with restic restore: the
    restored file passes integrity_check with the rows committed before, and
    sqlvigilctl restore puts it back into the live database."""
    if not shutil.which("restic"):
        raise Skip("restic is not installed (Debian: apt-get install restic)")
    bdir = "/var/backups/sqlvigil/t"
    t = s.instance("t", rows=1000, config=f"[backup]\ndirectory = {bdir}\ninterval = 2s\n")
    s.run("install", "-d", "-o", "t", "-g", "t", "-m", "0750", bdir)
    repo = "/srv/restic/t"
    s.run("install", "-d", "-o", "t", "-g", "t", "-m", "0700", repo)
    password = "/etc/sqlvigil/restic-t.password"
    with open(password, "w") as f:
        f.write("correct horse battery staple\n")
    s.run("chown", "t:t", password)
    os.chmod(password, 0o400)
    env_file = "/etc/sqlvigil/restic-t.env"
    with open(env_file, "w") as f:
        f.write(f"RESTIC_REPOSITORY={repo}\nRESTIC_PASSWORD_FILE={password}\n")
    os.chmod(env_file, 0o600)
    restic = ["runuser", "-u", "t", "--", "env", f"RESTIC_REPOSITORY={repo}", f"RESTIC_PASSWORD_FILE={password}",
              "restic", "--no-cache"]
    s.run(*restic, "init")

    # The path unit first, as operations.md says: it ships what appears
    # after it starts watching.
    s.systemctl("enable", "--now", "sqlvigil-backup-ship@t.path")
    c = s.cursor()
    s.systemctl("start", t.unit)
    first = s.wait_journal("a scheduled backup", unit=t.unit, after=c, timeout=30, MESSAGE_ID=MSG_BACKUP,
                           SQLVIGIL_TRIGGER="interval")
    # A commit, and the next scheduled backup: the path unit ships each.
    s.sqlite_cli("t", t.db, "INSERT INTO t(v) SELECT v FROM t LIMIT 500;")
    taken = s.wait_journal("a second scheduled backup", unit=t.unit, after=c, timeout=30, MESSAGE_ID=MSG_BACKUP,
                           SQLVIGIL_TRIGGER="interval",
                           pred=lambda e: e.get("SQLVIGIL_BACKUP_FILE") != first.get("SQLVIGIL_BACKUP_FILE"))
    name = os.path.basename(taken["SQLVIGIL_BACKUP_FILE"])
    check(taken["SQLVIGIL_BACKUP_FILE"].startswith(bdir + "/"), f"backup at {taken['SQLVIGIL_BACKUP_FILE']}")
    check(taken.get("SQLVIGIL_INSTANCE") == "t" and taken.get("SQLVIGIL_CHECK") == "integrity", str(taken))

    def shipped():
        r = s.run(*restic, "ls", "latest", check_status=False, quiet=True)
        return r.returncode == 0 and f"{bdir}/{name}" in r.stdout and f"{bdir}/{name[:-3]}.json" in r.stdout
    try:
        s.wait_until(shipped, 60, f"{name} and its manifest in the restic repository")
    except Failure:
        s.run("journalctl", "--no-pager", "-u", "sqlvigil-backup-ship@t.service", "-u", "sqlvigil-backup-ship@t.path",
              check_status=False)
        s.run("systemctl", "status", "--no-pager", "sqlvigil-backup-ship@t.path", "sqlvigil-backup-ship@t.service",
              check_status=False)
        s.run("ls", "-la", bdir, check_status=False)
        raise
    st = s.show("sqlvigil-backup-ship@t.service", "Result", "ExecMainStatus")
    check(st["Result"] == "success", f"the ship service: {st}")
    snaps = s.run(*restic, "snapshots", "--json", quiet=True).stdout
    check('"sqlvigil"' in snaps and '"t"' in snaps, f"snapshots lack the tags: {snaps[:300]}")
    check(not any(".tmp" in line for line in s.run(*restic, "ls", "latest", quiet=True).stdout.splitlines()),
          "a temporary file was shipped")

    # Bring it back, as after losing the host.
    target = "/var/tmp/restored"
    s.run("install", "-d", "-o", "t", "-g", "t", target)
    s.run(*restic, "restore", "latest", "--target", target, "--include", f"{bdir}/{name}",
          "--include", f"{bdir}/{name[:-3]}.json")
    restored = f"{target}{bdir}/{name}"
    check(os.path.isfile(restored), f"{restored} was not restored")
    check(s.sqlite_cli("t", restored, "PRAGMA integrity_check;") == "ok", "the restored backup is corrupt")
    check(s.sqlite_cli("t", restored, "SELECT count(*) FROM t;") == "1500", "rows in the restored backup")
    import hashlib
    import json as json_
    with open(f"{target}{bdir}/{name[:-3]}.json") as f:
        manifest = json_.load(f)
    with open(restored, "rb") as f:
        check(hashlib.sha256(f.read()).hexdigest() == manifest["sha256"], "SHA-256 differs from the manifest")
    # And into the live database with sqlvigilctl restore, after a change.
    s.sqlite_cli("t", t.db, "DELETE FROM t WHERE id > 10;")
    r = s.run("sqlvigilctl", "-i", "t", "restore", restored)
    check("the content before is in" in r.stdout, f"restore: {r.stdout}")
    check(s.sqlite_cli("t", t.db, "SELECT count(*) FROM t;") == "1500", "rows after sqlvigilctl restore")
    s.systemctl("stop", "sqlvigil-backup-ship@t.path", t.unit)
    check(s.sqlite_cli("t", t.db, "PRAGMA integrity_check;") == "ok", "integrity_check of the live database")


@booted
def control_socket(s):
    """sqlvigilctl -i NAME finds the instance's socket; anyone may read,
    only root, the service's user or admin_group may act; the metrics
    textfile is written readable for node_exporter; all is gone on stop."""
    t = s.instance("t", rows=10, config="[metrics]\ntextfile = /var/lib/t/sqlvigil.prom\n")
    s.systemctl("start", t.unit)
    sock = f"{t.runtime_dir}/control.sock"
    mode = oct(os.stat(sock).st_mode & 0o777)
    check(mode == "0o666", f"control socket mode {mode} (the unit has UMask=0077)")
    r = s.run("sqlvigilctl", "-i", "t", "status")
    check("health      ok" in r.stdout and t.db in r.stdout, f"status: {r.stdout}")
    r = s.run("runuser", "-u", "nobody", "--", "sqlvigilctl", "-i", "t", "health", check_status=False)
    check(r.returncode == 0 and r.stdout == "ok\n", f"nobody's health: {r.returncode} {r.stderr}")
    r = s.run("runuser", "-u", "nobody", "--", "sqlvigilctl", "-i", "t", "checkpoint", check_status=False)
    check(r.returncode == 4 and "permission denied" in r.stderr, f"nobody's checkpoint: {r.returncode} {r.stderr}")
    r = s.run("runuser", "-u", "t", "--", "sqlvigilctl", "-i", "t", "checkpoint", "truncate", check_status=False)
    check(r.returncode == 0 and r.stdout.startswith("checkpoint: ok"), f"the service user's checkpoint: {r.stdout}")
    r = s.run("sqlvigilctl", "-i", "t", "--json", "stats")
    check('"instance":"t"' in r.stdout, "stats do not name the instance")
    prom = "/var/lib/t/sqlvigil.prom"
    s.wait_until(lambda: os.path.exists(prom), 10, "the metrics textfile")
    mode = oct(os.stat(prom).st_mode & 0o777)
    check(mode == "0o644", f"metrics file mode {mode}")
    if shutil.which("promtool"):
        with open(prom) as f:
            r = subprocess.run(["promtool", "check", "metrics"], stdin=f, capture_output=True, text=True)
        check(r.returncode == 0, f"promtool: {r.stdout} {r.stderr}")
    s.systemctl("stop", t.unit)
    check(not os.path.exists(t.runtime_dir), f"{t.runtime_dir} left after stop")


def host(name):
    if name in STATIC:
        tmp = tempfile.mkdtemp(prefix=f"sqlvigil-{name}-")
        try:
            STATIC[name](tmp)
        except Failure as e:
            print(f"FAIL {name}: {e}")
            return 1
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"ok   {name}")
        return 0

    import container
    reason = container.skip_reason()
    if reason:
        print(f"SKIP {name}: {reason}")
        return 77
    start = time.monotonic()
    try:
        with container.Container(name) as c:
            c.install()
            c.add_tests()
            result = c.boot(name, BOOTED_TIMEOUT)
    except container.ContainerError as e:
        print(f"FAIL {name}: {e}")
        return 1
    print(result.get("log", "").rstrip())
    total = time.monotonic() - start
    if result.get("skipped"):
        print(f"SKIP {name}: {result['error']}")
        return 77
    if not result.get("passed"):
        print(f"FAIL {name}: {result.get('error')}")
        print("--- journal (sqlvigil@* and the driver) ---")
        print(result.get("journal", "").rstrip())
        return 1
    print(f"ok   {name} ({result['elapsed']:.1f}s in the container, {total:.1f}s in all)")
    return 0


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--inside":
        run_inside(args[1], BOOTED[args[1]])
        return 0
    if len(args) != 1 or (args[0] not in STATIC and args[0] not in BOOTED):
        print(f"usage: {sys.argv[0]} [--inside] NAME, NAME one of: {', '.join(list(STATIC) + list(BOOTED))}",
              file=sys.stderr)
        return 2
    return host(args[0])


if __name__ == "__main__":
    sys.exit(main())
