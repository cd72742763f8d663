#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The control socket, sqlvigilctl and the metrics textfile, through the
real binaries; results checked with an independent SQLite client and with
promtool."""

import fcntl
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, Notify, Skip, check, fd_targets, make_db, query, run,  # noqa: E402
                     wait_until, write_config)

CTL = os.environ.get("SQLVIGILCTL", "build/src/sqlvigilctl")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def start(tmp, extra="", db_rows=100, name="c", watchdog=None, env=None, umask=None):
    db = os.path.join(tmp, f"{name}.db")
    if not os.path.exists(db):
        make_db(db, rows=db_rows)
    sock = os.path.join(tmp, f"{name}.sock")
    conf = os.path.join(tmp, f"{name}.conf")
    write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n{extra}")
    sockdir = os.path.join(tmp, f"notify-{name}-{time.monotonic_ns()}")
    os.mkdir(sockdir)
    notify = Notify(sockdir)
    old = os.umask(umask) if umask is not None else None
    try:
        d = Daemon(["--config", conf], notify=notify, watchdog_usec=watchdog, env=env)
    finally:
        if old is not None:
            os.umask(old)
    try:
        notify.wait_for("READY", "1", timeout=20)
    except Failure:
        d.kill()
        notify.close()
        raise Failure("not ready:\n" + d.dump())
    return d, notify, db, sock, conf


def ask(sock, line, timeout=10):
    """One raw request; returns the decoded reply (dict)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(line if isinstance(line, bytes) else line.encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    check(data.endswith(b"\n") and data.count(b"\n") == 1, f"reply is not one line: {data[:200]!r}")
    return json.loads(data)


def ctl(*args, user=None, timeout=60):
    cmd = (NOBODY if user == "nobody" else user or []) + [CTL] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def stop(d, notify):
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(30)
    notify.close()
    check(rc == 0, f"exit {rc}:\n{d.dump()}")


# ---------------------------------------------------------------------------

def case_read_only(tmp):
    d, notify, db, sock, _ = start(tmp)
    try:
        h = ask(sock, "health\n")
        check(h["ok"] is True and h["health"]["state"] == "ok" and h["health"]["code"] == "none", str(h))
        check(h["health"]["since"] > 1e9 and h["health"]["checked"] > 1e9, f"times: {h}")
        s = ask(sock, "stats\n")
        for key in ("health", "database", "pragmas", "maintenance", "process"):
            check(key in s, f"stats lacks {key}")
        check(s["database"]["path"] == db, "path")
        pages = query(db, "PRAGMA page_count")[0][0]
        check(s["database"]["page_count"] == pages, f"page_count {s['database']['page_count']} != {pages}")
        check(s["database"]["page_size"] == 4096, "page_size")
        check(s["pragmas"]["journal_mode"] == {"scope": "file", "requested": "wal", "effective": "wal",
                                               "outcome": "applied"},
              str(s["pragmas"]["journal_mode"]))
        check(s["pragmas"]["mmap_size"]["requested"] is None, "unrequested pragma")
        check(set(s["maintenance"]["last"]) == {"checkpoint", "vacuum", "analyze", "quick_check", "backup"}, "tasks")
        check(s["process"]["pid"] == d.pid and s["process"]["rss_bytes"] > 0, str(s["process"]))
        check(s["process"]["sqlite_version"] == sqlite3.sqlite_version, "sqlite version")
        check(s["health"]["check_usec_p50"] > 0, "no check timing")
        st = ask(sock, "status\n")
        check(set(st) == set(s), "status and stats differ in shape")
        c = ask(sock, "config\n")
        check(c["config"]["database"]["path"] == db and c["config"]["pragmas"]["mmap_size"] is None, str(c)[:300])
        check(c["config"]["vacuum"]["step_budget"] == "20ms", "step_budget")
        stop(d, notify)
    finally:
        d.kill()


def case_sqlvigilctl(tmp):
    d, notify, db, sock, conf = start(tmp, "[health]\ninterval = 200ms\n")
    try:
        r = ctl("-s", sock, "status")
        check(r.returncode == 0, f"status: {r.returncode} {r.stderr}")
        for word in ("health      ok", "database", "WAL", "last runs", "checkpoint", "totals", "process"):
            check(word in r.stdout, f"status lacks {word!r}:\n{r.stdout}")
        r = ctl("-s", sock, "health")
        check(r.returncode == 0 and r.stdout == "ok\n", f"health: {r.returncode} {r.stdout!r}")
        r = ctl("-s", sock, "--json", "health")
        check(r.returncode == 0 and json.loads(r.stdout)["health"]["state"] == "ok", r.stdout)
        r = ctl("-s", sock, "stats")
        check(r.returncode == 0 and json.loads(r.stdout)["database"]["path"] == db, "stats is not JSON")
        r = ctl("-s", sock, "config")
        check(r.returncode == 0 and f"path = {db}" in r.stdout, r.stdout)

        # Admin commands, as root.
        r = ctl("-s", sock, "checkpoint", "truncate")
        check(r.returncode == 0 and r.stdout.startswith("checkpoint: ok"), f"{r.returncode} {r.stdout} {r.stderr}")
        r = ctl("-s", sock, "--json", "analyze")
        check(r.returncode == 0 and json.loads(r.stdout)["analyze"]["mode"] == "analyze", r.stdout)
        check(query(db, "SELECT count(*) FROM sqlite_stat1")[0][0] >= 1, "analyze left no statistics")
        r = ctl("-s", sock, "check", "integrity")
        check(r.returncode == 0 and "integrity_check: ok" in r.stdout, r.stdout)
        r = ctl("-s", sock, "vacuum", "100")
        check(r.returncode == 1 and "auto_vacuum is none" in r.stderr, f"vacuum on a none file: {r.stderr}")

        # Usage errors: 2, naming the problem.
        for args, needle in ((["bogus"], "unknown command 'bogus'"), (["heath"], "did you mean 'health'"),
                             (["vacuum", "x"], "vacuum takes a number of pages"),
                             (["checkpoint", "hard"], "checkpoint mode must be"),
                             (["health", "now"], "health takes no argument"), ([], "no command"),
                             (["-s", sock, "-i", "x", "health"], "exclude each other")):
            r = ctl("-s", sock, *args) if "-s" not in args else ctl(*args)
            check(r.returncode == 2, f"{args}: exit {r.returncode}")
            check(needle in r.stderr, f"{args}: {r.stderr!r}")
        # Unreachable: 3, naming the socket.
        r = ctl("-s", os.path.join(tmp, "nope.sock"), "health")
        check(r.returncode == 3 and "nope.sock" in r.stderr, f"{r.returncode} {r.stderr}")

        # Health: 1 when degraded, with the reason.
        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n[health]\ninterval = 200ms\n"
                           "min_free_disk = 1T\n")
        r = ctl("-s", sock, "reload")
        check(r.returncode == 0 and r.stdout == "reload: applied\n", f"reload: {r.returncode} {r.stdout} {r.stderr}")
        wait_until(lambda: ctl("-s", sock, "health").returncode == 1, 10, "health to turn degraded")
        r = ctl("-s", sock, "health")
        check(r.stdout.startswith("degraded: ") and "min_free_disk" in r.stdout, r.stdout)

        # A broken reload: 1 and the first error, running configuration kept.
        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n[health]\nintervall = 1s\n")
        r = ctl("-s", sock, "reload")
        check(r.returncode == 1 and "did you mean 'interval'" in r.stderr, f"{r.returncode} {r.stderr}")
        check(ctl("-s", sock, "health").returncode == 1, "the running configuration was not kept")
        stop(d, notify)
    finally:
        d.kill()


def case_instance_lookup(tmp):
    """-i NAME finds /run/sqlvigil/NAME/control.sock; with one instance, no
    option is needed. Runs with $RUNTIME_DIRECTORY as the unit sets it."""
    name = f"ctltest{os.getpid()}"
    rundir = f"/run/sqlvigil/{name}"
    try:
        os.makedirs(rundir, exist_ok=False)
    except PermissionError:
        raise Skip("cannot create /run/sqlvigil (not root)")
    db = os.path.join(tmp, f"{name}.db")
    make_db(db)
    conf = os.path.join(tmp, f"{name}.conf")
    write_config(conf, f"[database]\npath = {db}\n")
    notify = Notify(tmp)
    d = Daemon(["--config", conf], notify=notify, env={"RUNTIME_DIRECTORY": rundir})
    try:
        notify.wait_for("READY", "1", timeout=20)
        path = f"{rundir}/control.sock"
        check(stat.S_ISSOCK(os.stat(path).st_mode), f"no socket at {path}")
        r = ctl("-i", name, "health")
        check(r.returncode == 0 and r.stdout == "ok\n", f"-i: {r.returncode} {r.stderr}")
        r = ctl("health", "-i", name, "--json")  # options after the command
        check(r.returncode == 0 and json.loads(r.stdout)["health"]["state"] == "ok",
              f"health -i: {r.returncode} {r.stdout} {r.stderr}")
        others = [e for e in os.listdir("/run/sqlvigil") if e != name]
        if not others:
            r = ctl("health")
            check(r.returncode == 0, f"without -i: {r.returncode} {r.stderr}")
        r = ctl("-i", name + "x", "health")
        check(r.returncode == 3, f"unknown instance: {r.returncode}")
        d.signal(signal.SIGTERM)
        check(d.wait_exit() == 0, d.dump())
        check(not os.path.exists(path), "socket left behind")
    finally:
        d.kill()
        notify.close()
        shutil.rmtree(rundir, ignore_errors=True)


def case_options_anywhere(tmp):
    """Options before or after the command, as people type them; an unknown
    or incomplete option is a usage error (2) that names it."""
    d, notify, db, sock, _ = start(tmp)
    try:
        r = ctl("stats", "--json", "-s", sock)
        check(r.returncode == 0, f"stats --json: {r.returncode} {r.stderr}")
        check(r.stdout.count("\n") == 1 and json.loads(r.stdout)["database"]["path"] == db,
              f"stats --json printed no one-line reply: {r.stdout[:200]!r}")
        r = ctl("health", "-s", sock, "--timeout", "3")
        check(r.returncode == 0 and r.stdout == "ok\n", f"health --timeout 3: {r.returncode} {r.stdout!r} {r.stderr}")
        r = ctl("-s", sock, "health", "-t", "0.5", "--json")
        check(r.returncode == 0 and json.loads(r.stdout)["health"]["state"] == "ok", f"{r.returncode} {r.stderr}")
        # Between the command and its argument, and after "--".
        r = ctl("checkpoint", "--json", "-s", sock, "truncate")
        check(r.returncode == 0 and json.loads(r.stdout)["checkpoint"]["mode"] == "truncate",
              f"checkpoint --json ... truncate: {r.returncode} {r.stdout} {r.stderr}")
        r = ctl("-s", sock, "--", "health")
        check(r.returncode == 0 and r.stdout == "ok\n", f"-- health: {r.returncode} {r.stderr}")
        # The same with $POSIXLY_CORRECT, which stops getopt's own reordering.
        r = subprocess.run([CTL, "stats", "--json", "-s", sock], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, POSIXLY_CORRECT="1"))
        check(r.returncode == 0 and json.loads(r.stdout)["database"]["path"] == db,
              f"POSIXLY_CORRECT: {r.returncode} {r.stderr}")

        for args, message in (
                (["stats", "--jsn"], "sqlvigilctl: unknown option '--jsn'; did you mean '--json'? Try --help\n"),
                (["health", "--frobnicate"], "sqlvigilctl: unknown option '--frobnicate'; try --help\n"),
                (["health", "-x"], "sqlvigilctl: unknown option '-x'; try --help\n"),
                (["health", "--timeout"], "sqlvigilctl: option '--timeout' needs an argument; try --help\n"),
                (["health", "-t"], "sqlvigilctl: option '-t' needs an argument; try --help\n"),
                (["health", "-t", "3s"], "sqlvigilctl: --timeout takes a number of seconds between 0.001 and "
                                         "2147483, or 'infinity', not '3s'\n"),
                (["health", "-t", "0"], "sqlvigilctl: --timeout takes a number of seconds between 0.001 and "
                                        "2147483, or 'infinity', not '0'\n"),
                (["vacuum", "10", "--json", "20"], "sqlvigilctl: too many arguments ('20'); try --help\n"),
                (["--json"], "sqlvigilctl: no command; try --help\n")):
            r = ctl("-s", sock, *args)
            check(r.returncode == 2, f"{args}: exit {r.returncode}, expected 2: {r.stderr}")
            check(r.stderr == message, f"{args}: stderr {r.stderr!r}, expected {message!r}")
            check(r.stdout == "", f"{args}: printed {r.stdout!r}")
        stop(d, notify)
    finally:
        d.kill()


def case_reload_timeout(tmp):
    """sqlvigilctl reload gives up after 30 s by default (systemd gives
    ExecReload= 90 s), with exit status 3 and a message that says the reload
    goes on; --timeout changes it. A socket that accepts and never answers
    stands in for a daemon whose reload waits; health keeps its 10 s."""
    path = os.path.join(tmp, "silent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)
    held = []
    running = True

    def accept():
        while running:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        start_t = time.monotonic()
        r = ctl("-s", path, "reload", "--timeout", "1.5")
        took = time.monotonic() - start_t
        check(r.returncode == 3, f"reload --timeout 1.5: exit {r.returncode}, expected 3: {r.stderr}")
        check(r.stderr == f"sqlvigilctl: no answer from {path} within 1.5 s; sqlvigil goes on with the reload "
                          "and logs whether it was applied; pass --timeout to wait longer\n", repr(r.stderr))
        check(1.4 <= took < 20, f"--timeout 1.5 took {took:.1f}s")

        start_t = time.monotonic()
        r = ctl("-s", path, "health", timeout=120)
        took = time.monotonic() - start_t
        check(r.returncode == 3 and r.stderr == f"sqlvigilctl: no answer from {path} within 10 s\n",
              f"health: {r.returncode} {r.stderr!r}")
        check(9.9 <= took < 40, f"health's default timeout took {took:.1f}s")

        start_t = time.monotonic()
        r = ctl("reload", "-s", path, timeout=120)
        took = time.monotonic() - start_t
        check(r.returncode == 3, f"reload: exit {r.returncode}, expected 3: {r.stderr}")
        check(r.stderr.startswith(f"sqlvigilctl: no answer from {path} within 30 s; sqlvigil goes on"),
              repr(r.stderr))
        # Below systemd's 90 s for ExecReload=, with room for a slow machine.
        check(29.9 <= took < 60, f"reload's default timeout took {took:.1f}s")
    finally:
        running = False
        server.close()
        for c in held:
            c.close()


def case_permissions(tmp):
    """Anyone who reaches the socket may read; admin commands need root,
    sqlvigil's uid or admin_group (primary or supplementary)."""
    if os.geteuid() != 0:
        raise Skip("needs root to run sqlvigilctl as other users (setpriv)")
    os.chmod(tmp, 0o755)
    d, notify, db, sock, conf = start(tmp, umask=0o077)
    try:
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        check(mode == 0o666, f"socket mode {oct(mode)} under umask 077")
        r = ctl("-s", sock, "health", user="nobody")
        check(r.returncode == 0, f"nobody cannot read: {r.returncode} {r.stderr}")
        r = ctl("-s", sock, "checkpoint", user="nobody")
        check(r.returncode == 4 and "permission denied" in r.stderr, f"{r.returncode} {r.stderr}")
        raw = subprocess.run(NOBODY + [sys.executable, "-c", f"""
import socket
s = socket.socket(socket.AF_UNIX); s.connect({sock!r}); s.sendall(b"vacuum\\n")
print(s.recv(4096).decode(), end="")
"""], capture_output=True, text=True, timeout=20)
        reply = json.loads(raw.stdout)
        check(reply == {"ok": False, "code": "permission-denied", "error": reply.get("error")}, raw.stdout)

        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\nadmin_group = nogroup\n")
        check(ctl("-s", sock, "reload").returncode == 0, "reload")
        r = ctl("-s", sock, "checkpoint", user="nobody")  # primary group nogroup
        check(r.returncode == 0, f"admin_group (primary) refused: {r.returncode} {r.stderr}")
        r = ctl("-s", sock, "checkpoint", user=["setpriv", "--reuid=65534", "--regid=1", "--groups=65534"])
        check(r.returncode == 0, f"admin_group (supplementary) refused: {r.returncode} {r.stderr}")
        r = ctl("-s", sock, "checkpoint", user=["setpriv", "--reuid=65534", "--regid=1", "--clear-groups"])
        check(r.returncode == 4, f"non-member allowed: {r.returncode}")
        stop(d, notify)
    finally:
        d.kill()


def case_robustness(tmp):
    """Malformed, oversized, slow and abruptly closed requests get an error or
    a closed connection; the daemon keeps serving, and the watchdog keeps
    being pinged."""
    d, notify, db, sock, _ = start(tmp, "[health]\ninterval = 250ms\n", watchdog=1_000_000)
    try:
        t0 = time.monotonic()
        cases = [
            (b"\n", "empty request"),
            (b"   \t \n", "empty request"),
            (b"stast\n", "did you mean 'stats'"),
            (b"health\x01\n", "non-printable byte 0x01"),
            (b"\xff\xfe\n", "non-printable byte 0xff"),
            (b"vacuum 1 2\n", "too many words"),
            (b"vacuum -5\n", "vacuum takes a number of pages"),
            (b"vacuum 99999999999\n", "vacuum takes a number of pages"),
            (b"check fast\n", "check takes quick or integrity"),
            (b"x" * 5000 + b"\n", "request too long"),
            (b"health" + b" " * 2000 + b"\n", "request too long"),
        ]
        for raw, needle in cases:
            r = ask(sock, raw)
            check(r["ok"] is False and r["code"] == "bad-request" and needle in r["error"], f"{raw[:30]!r}: {r}")
        # No newline, but the client half-closes: still a request.
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(b"health")
        s.shutdown(socket.SHUT_WR)
        check(json.loads(s.recv(65536))["ok"], "request without newline")
        s.close()
        # Abruptly closed: right away, and halfway through a request.
        for payload in (b"", b"hea"):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            if payload:
                s.sendall(payload)
            s.close()
        # A client that sends and never reads its reply (nor closes): served
        # others meanwhile, and dropped when its time is up (checked below).
        lazy = socket.socket(socket.AF_UNIX)
        lazy.connect(sock)
        lazy.sendall(b"stats\n")
        check(ask(sock, "health\n")["ok"], "blocked by a client that does not read")
        # A client that never sends: times out with an error, while others
        # are served meanwhile.
        slow = socket.socket(socket.AF_UNIX)
        slow.connect(sock)
        t_slow = time.monotonic()
        check(ask(sock, "health\n")["ok"], "blocked by a silent client")
        slow.settimeout(15)
        reply = json.loads(slow.recv(65536))
        waited = time.monotonic() - t_slow
        # An idle connection holds a slot: it is dropped after 2 seconds.
        check(reply["code"] == "timeout" and "no request within 2 seconds" in reply["error"] and 1.5 < waited < 12,
              f"{reply} after {waited:.1f}s")
        slow.close()
        # The lazy client's time is up too (it came first): the daemon has
        # closed its end, so writing to it fails; its reply was whole.
        def lazy_dropped():
            try:
                lazy.send(b"x")
                return False
            except (BrokenPipeError, ConnectionResetError):
                return True
        wait_until(lazy_dropped, 15, "the daemon to drop a client that never read its reply")
        lazy.settimeout(5)
        data = b""
        while not data.endswith(b"\n"):
            chunk = lazy.recv(65536)
            check(chunk, f"the lazy client's reply was cut short: {data[:80]!r}")
            data += chunk
        check(json.loads(data)["ok"], "the lazy client's reply")
        lazy.close()

        # 100 clients at once, all answered.
        results = []
        def one():
            try:
                results.append(ask(sock, "stats\n", timeout=30)["ok"])
            except Exception as e:  # noqa: BLE001
                results.append(repr(e))
        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        check(results.count(True) == 100, f"{results.count(True)} of 100 answered: {set(map(str, results))}")

        check(d.alive(), "sqlvigil died")
        check(ask(sock, "health\n")["health"]["state"] == "ok", "not healthy afterwards")
        pings = notify.times("WATCHDOG", "1", after=t0)
        gaps = [b - a for a, b in zip([t0] + pings, pings + [time.monotonic()])]
        check(max(gaps) < 1.0, f"watchdog gap of {max(gaps):.2f}s while serving clients")
        stop(d, notify)
    finally:
        d.kill()


def case_long_admin_work(tmp):
    """A long integrity_check runs on the database thread: other clients
    and the watchdog are not held up; a second vacuum is 'busy'."""
    db = os.path.join(tmp, "big.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA page_size=1024")
    con.execute("PRAGMA auto_vacuum=incremental")
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
    con.execute("CREATE INDEX ta ON t(a)")
    con.execute("CREATE INDEX tb ON t(b)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t(a, b) VALUES (?, ?)", (("a%09d" % (i * 7919 % 1000003), "b%d" % i)
                                                          for i in range(400000)))
    con.execute("COMMIT")
    # A contiguous range, so that whole pages become free (deleting every
    # third row left only 128 free pages, a vacuum of 80 ms, and the test
    # below raced it).
    con.execute("DELETE FROM t WHERE id <= 300000")
    con.close()
    d, notify, _, sock, _ = start(tmp, "[health]\ninterval = 250ms\nquick_check_interval = 0\n"
                                       "[vacuum]\ninterval = 0\nstep_budget = 1ms\n[analyze]\ninterval = 0\n",
                                  name="big", watchdog=1_000_000)
    try:
        out = {}
        def integrity():
            out["check"] = ctl("-s", sock, "--json", "check", "integrity")
        t = threading.Thread(target=integrity)
        t0 = time.monotonic()
        t.start()
        latencies = []
        while t.is_alive() and time.monotonic() - t0 < 60:
            a = time.monotonic()
            check(ask(sock, "health\n")["ok"], "health failed during integrity_check")
            latencies.append(time.monotonic() - a)
            time.sleep(0.05)
        t.join()
        took = time.monotonic() - t0
        r = out["check"]
        check(r.returncode == 0 and json.loads(r.stdout)["check"]["result"] == "ok", f"{r.stdout} {r.stderr}")
        check(len(latencies) >= 3, f"integrity_check too quick ({took:.2f}s) to show anything")
        check(max(latencies) < 0.5, f"a health request waited {max(latencies):.2f}s behind integrity_check")
        pings = notify.times("WATCHDOG", "1", after=t0, before=t0 + took)
        gaps = [b - a for a, b in zip([t0] + pings, pings + [t0 + took])]
        check(max(gaps) < 1.0, f"watchdog gap of {max(gaps):.2f}s during integrity_check")

        # Two vacuums at once: the second is busy (the first, at a 1 ms
        # budget on 17,000 free pages, takes 2 s, 5 s under ASan).
        first = subprocess.Popen([CTL, "-s", sock, "vacuum"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: ask(sock, "stats\n")["maintenance"]["running"] == "vacuum", 10, "the vacuum to run")
        r = ctl("-s", sock, "vacuum")
        check(r.returncode == 1 and "vacuum is already running" in r.stderr, f"{r.returncode} {r.stderr}")
        out1, err1 = first.communicate(timeout=120)
        check(first.returncode == 0 and out1.startswith("vacuum: ok: freed "), f"first vacuum: exit {first.returncode}, stdout {out1!r}, stderr {err1!r}")
        check(query(os.path.join(tmp, "big.db"), "PRAGMA freelist_count")[0][0] == 0, "free pages left")
        stop(d, notify)
    finally:
        d.kill()


def case_socket_lifecycle(tmp):
    """The socket is removed on stop, a stale file is replaced, and a live
    socket of another instance is never taken over."""
    d, notify, db, sock, conf = start(tmp)
    try:
        d2 = Daemon(["--config", conf])
        rc = d2.wait_exit(20)
        check(rc == 1, f"a second instance on the same socket: exit {rc}")
        check(d2.find_log(r"control socket .* is in use by another process"), d2.dump())
        check(ask(sock, "health\n")["ok"], "the first instance lost its socket")
        stop(d, notify)
        check(not os.path.exists(sock), "socket not removed on stop")
    finally:
        d.kill()
    # A stale socket file (as a crash leaves it) is replaced.
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()
    d, notify, db, sock, conf = start(tmp)
    try:
        check(ask(sock, "health\n")["ok"], "stale socket not replaced")
        stop(d, notify)
    finally:
        d.kill()


def case_checkpoint_lock(tmp):
    """Another connection holding the checkpoint lock (what an application's
    autocheckpoint does) makes SQLite answer SQLITE_BUSY at once, without a
    busy handler: sqlvigil retries, for busy_timeout in a truncate, and
    reports a passive one that never got the lock as busy, counts unknown."""
    d, notify, db, sock, _ = start(tmp, "[checkpoint]\ninterval = 1h\n")
    try:
        con = sqlite3.connect(db)
        con.execute("PRAGMA wal_autocheckpoint = 0")
        with con:
            con.executemany("INSERT INTO t(v) VALUES (?)", [("x" * 500,)] * 300)
        con.close()  # before the lock: closing any descriptor of the file drops this process's locks
        check(os.path.getsize(db + "-wal") > 0, "no WAL to checkpoint")

        # The checkpoint lock is byte 121 of the -shm file (WALINDEX_LOCK_OFFSET
        # 120 + WAL_CKPT_LOCK 1 in SQLite's wal.c), an fcntl lock like SQLite's.
        fd = os.open(db + "-shm", os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 121)
            r = ask(sock, "checkpoint\n")
            c = r["checkpoint"]
            check(c["result"] == "busy" and c["busy"] is True, str(r))
            check(c["wal_frames"] is None and c["checkpointed"] is None, str(r))
            check("another connection was checkpointing" in c["summary"], str(r))
            check(c["duration_usec"] >= 20000, f"gave up after {c['duration_usec']} us, not 20 ms")

            replies = []
            t = threading.Thread(target=lambda: replies.append(ask(sock, "checkpoint truncate\n", timeout=60)))
            t.start()
            t.join(1.0)
            # Without the retry the answer would be back at once, busy.
            check(t.is_alive(), f"truncate checkpoint answered while the lock was held: {replies}")
        finally:
            os.close(fd)  # releases the lock
        t.join(30)
        check(not t.is_alive(), "no answer after the lock was released")
        c = replies[0]["checkpoint"]
        check(replies[0]["ok"] and c["result"] == "ok", str(replies[0]))
        check(c["busy"] is False, str(c))
        # The first PASSIVE pass found the lock taken (counts unknown); the
        # slices go on, without the writer lock, until the lock is free, and
        # the PASSIVE pass of that slice counts the frames there were.
        check(c["wal_frames"] is not None and c["wal_frames"] > 0 and c["checkpointed"] == c["wal_frames"], str(c))
        check(f"{c['wal_frames']} frames in WAL, {c['wal_frames']} checkpointed" in c["summary"], str(c))
        check(c["duration_usec"] >= 900000, f"duration {c['duration_usec']} us, the lock was held 1 s")
        check(os.path.getsize(db + "-wal") == 0, "truncate left a WAL")
        check(query(db, "SELECT count(*) FROM t")[0][0] == 400, "rows")
        check(d.find_log("another connection was checkpointing"), "no log line about the lock")
        stop(d, notify)
    finally:
        d.kill()


def case_metrics(tmp):
    """The textfile passes promtool, is replaced atomically, readable under
    umask 077, and follows maintenance runs."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise Skip("promtool is not installed (Debian package prometheus)")
    os.chmod(tmp, 0o755)
    prom = os.path.join(tmp, "sqlvigil.prom")
    d, notify, db, sock, _ = start(tmp, f"[metrics]\ntextfile = {prom}\n[health]\ninterval = 200ms\n", umask=0o077)
    try:
        wait_until(lambda: os.path.exists(prom), 10, "the metrics file")
        r = subprocess.run([promtool, "check", "metrics"], stdin=open(prom), capture_output=True, text=True)
        check(r.returncode == 0, f"promtool: {r.stdout} {r.stderr}")
        mode = stat.S_IMODE(os.stat(prom).st_mode)
        check(mode == 0o644, f"metrics file mode {oct(mode)}")
        text = open(prom).read()
        for name in ("sqlvigil_up", "sqlvigil_health_state", "sqlvigil_wal_size_bytes", "sqlvigil_freelist_pages",
                     "sqlvigil_task_runs_total", "sqlvigil_checkpoint_frames_total",
                     "sqlvigil_health_check_duration_seconds"):
            check(f"\n{name}{{database=\"{db}\"" in text, f"{name} missing")
        check('sqlvigil_health_state{database="%s",state="ok"} 1' % db in text, "health state")
        before = text.count('task="checkpoint"')
        check(ctl("-s", sock, "checkpoint").returncode == 0, "checkpoint")
        wait_until(lambda: 'sqlvigil_task_runs_total{database="%s",task="checkpoint"} 1' % db in open(prom).read(),
                   10, "the checkpoint in the metrics")
        check(open(prom).read().count('task="checkpoint"') > before, "last-run metrics missing")
        r = subprocess.run([promtool, "check", "metrics"], stdin=open(prom), capture_output=True, text=True)
        check(r.returncode == 0, f"promtool after a run: {r.stdout} {r.stderr}")
        leftovers = [f for f in os.listdir(tmp) if f.endswith(".tmp")]
        check(not leftovers, f"temporary files left: {leftovers}")
        stop(d, notify)
    finally:
        d.kill()

    # With backups: their metrics, after one, pass promtool too.
    bdir = os.path.join(tmp, "backups")
    os.mkdir(bdir)
    d, notify, db, sock, _ = start(tmp, f"[metrics]\ntextfile = {prom}\n[health]\ninterval = 200ms\n"
                                        f"[backup]\ndirectory = {bdir}\n", umask=0o077)
    try:
        check(ctl("-s", sock, "backup").returncode == 0, "backup")
        wait_until(lambda: "sqlvigil_backup_newest_timestamp_seconds" in open(prom).read(), 10,
                   "the backup in the metrics")
        text = open(prom).read()
        for name, value in (("sqlvigil_backups", "1"), ("sqlvigil_backup_failed", "0"),
                            ("sqlvigil_backup_newest_check_ok", "1")):
            check(f'\n{name}{{database="{db}"}} {value}\n' in text, f"{name} is not {value}:\n{text}")
        size = os.path.getsize(next(os.path.join(bdir, f) for f in os.listdir(bdir) if f.endswith(".db")))
        check(f'sqlvigil_backup_newest_size_bytes{{database="{db}"}} {size}\n' in text, "backup size")
        r = subprocess.run([promtool, "check", "metrics"], stdin=open(prom), capture_output=True, text=True)
        check(r.returncode == 0, f"promtool with backups: {r.stdout} {r.stderr}")
        stop(d, notify)
    finally:
        d.kill()


# ---- Bytes out: whatever a path holds, every output is valid UTF-8 ---------

# A directory name with what a path may hold and a format may not: a byte
# that is not UTF-8, quotes, a backslash, control characters (one a terminal
# escape), a newline, and a valid non-ASCII letter.
ODD_DIR = b'd\xff"q" \\ \x01\x1b[31m\nline \xc3\xa9'
ODD_DB = b"app\xfe.db"
ODD_CONF = b"in\xffst.conf"  # the instance name comes from it


def as_text(b):
    """The rule of src/utf8.h: bytes that are not UTF-8 as the text \\xNN."""
    return b.decode("utf-8", "backslashreplace")


def as_log(b):
    """A log line's or a journal field's form: control characters as \\n,
    \\r, \\t or \\xNN too."""
    short = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return "".join(short.get(c, "\\x%02x" % ord(c)) if ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f else c
                   for c in as_text(b))


def as_label(b):
    """A Prometheus label value, escaped as the exposition format requires."""
    text = "".join(c if c == "\n" or not (ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f) else "\\x%02x" % ord(c)
                   for c in as_text(b))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def odd_paths(tmp):
    d = os.path.join(os.fsencode(tmp), ODD_DIR)
    os.mkdir(d)
    db = os.path.join(d, ODD_DB)
    make_db(db, rows=10)
    return db


def ask_raw(sock, line, timeout=10):
    """One request; the reply as bytes, which must be one line."""
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
    check(data.endswith(b"\n") and data.count(b"\n") == 1, f"reply is not one line: {data[:300]!r}")
    return data


def strict_json(data, what):
    """Python's json module, strictly: valid UTF-8, no raw control characters."""
    try:
        return json.loads(data.decode("utf-8"), strict=True)
    except (UnicodeDecodeError, ValueError) as e:
        raise Failure(f"{what}: not strict JSON in UTF-8 ({e}): {data[:300]!r}")


def case_path_bytes(tmp):
    """A database path and an instance name holding bytes that are not
    UTF-8, quotes, a backslash, control characters and a newline: the
    control socket's replies are strict JSON in UTF-8 that say which bytes
    they were, the metrics file passes promtool, and every stderr line is
    one line of UTF-8 (src/utf8.h gives the rule)."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise Skip("promtool is not installed (Debian package prometheus)")
    os.chmod(tmp, 0o755)
    db = odd_paths(tmp)
    conf = os.path.join(os.fsencode(tmp), ODD_CONF)
    sock = os.path.join(tmp, "c.sock")
    prom = os.path.join(tmp, "odd.prom")
    write_config(os.fsdecode(conf), f"[control]\nsocket = {sock}\n[metrics]\ntextfile = {prom}\n"
                                    "[health]\ninterval = 200ms\n")
    notify = Notify(tmp)
    d = Daemon([b"--config", conf, b"--database", db], notify=notify)
    try:
        try:
            notify.wait_for("READY", "1", timeout=20)
        except Failure:
            raise Failure("not ready:\n" + d.dump())
        for command in ("stats", "status", "health", "config"):
            reply = strict_json(ask_raw(sock, command + "\n"), command)
            check(reply["ok"] is True, f"{command}: {reply}")
            if command in ("stats", "status"):
                check(reply["database"]["path"] == as_text(db),
                      f"{command}: path {reply['database']['path']!r}, expected {as_text(db)!r}")
                instance = as_text(b"in\xffst")
                check(reply["process"]["instance"] == instance, f"instance {reply['process']}")
        cfg = strict_json(ask_raw(sock, "config\n"), "config")
        check(cfg["config"]["database"]["path"] == as_text(db), f"config path {cfg['config']['database']}")
        check(cfg["source"] == as_text(conf), f"config source {cfg['source']!r}")
        # sqlvigilctl reads it back and prints it, still one line of UTF-8.
        r = subprocess.run([CTL, "-s", sock, "--json", "stats"], capture_output=True, timeout=60)
        check(r.returncode == 0 and strict_json(r.stdout, "sqlvigilctl --json")["database"]["path"] == as_text(db),
              f"sqlvigilctl --json stats: {r.returncode} {r.stderr!r}")
        # For a person: the path in its log form, no terminal escape let through.
        r = subprocess.run([CTL, "-s", sock, "status"], capture_output=True, timeout=60)
        check(r.returncode == 0 and f" — {as_log(db)}\n".encode() in r.stdout and b"\x1b" not in r.stdout,
              f"sqlvigilctl status: {r.returncode} {r.stdout[:300]!r}")

        wait_until(lambda: os.path.exists(prom), 10, "the metrics file")
        data = open(prom, "rb").read()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Failure(f"metrics file is not UTF-8 ({e})")
        r = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True)
        check(r.returncode == 0, f"promtool: {r.stdout!r} {r.stderr!r}")
        want = f'sqlvigil_up{{database="{as_label(db)}"}} 1\n'
        check(want in data.decode(), f"metrics lack {want!r}:\n{data[:400]!r}")
        name = as_label(b"in\xffst")
        check(f',name="{name}"}} 1\n' in data.decode(), "the instance label")
        stop(d, notify)
    finally:
        d.kill()

    # stderr: one line per message, UTF-8, the path in its log form.
    for raw in d.raw:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Failure(f"stderr line is not UTF-8 ({e}): {raw!r}")
    check(not any(raw.startswith(b"line ") for raw in d.raw), "a path's newline split a stderr line")
    start_line = f"starting (SQLite {sqlite3.sqlite_version}): {as_log(db)}, configuration {as_log(conf)}\n"
    check(any(raw.decode().endswith(start_line) for raw in d.raw),
          f"no start line ending {start_line!r}:\n" + d.dump())


def case_journal_bytes(tmp):
    """The same path and name under journald: every field sqlvigil sends
    (MESSAGE, SQLVIGIL_DATABASE, SQLVIGIL_CONFIG, ...) is one line of valid
    UTF-8 in the native protocol's plain FIELD=value form, never the binary
    form a newline forces. A datagram socket stands in for journald at
    /run/systemd/journal/socket, in a mount namespace of the daemon's own."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise Skip("needs root and unshare(1) to give sqlvigil its own /run/systemd")
    db = odd_paths(tmp)
    conf = os.path.join(os.fsencode(tmp), ODD_CONF)
    sock = os.path.join(tmp, "c.sock")
    write_config(os.fsdecode(conf), f"[control]\nsocket = {sock}\n[health]\ninterval = 200ms\n")
    fake = os.path.join(tmp, "run-systemd")
    os.makedirs(os.path.join(fake, "journal"))
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(os.path.join(fake, "journal", "socket"))
    journal.settimeout(0.2)
    entries = []

    def receive():
        while True:
            try:
                data = journal.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            entries.append(data)

    threading.Thread(target=receive, daemon=True).start()
    errfile = os.path.join(tmp, "stderr")
    err = open(errfile, "wb")
    st = os.fstat(err.fileno())
    notify_dir = os.path.join(tmp, "notify")
    os.mkdir(notify_dir)
    notify = Notify(notify_dir)
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}",
               RUNTIME_DIRECTORY=tempfile.mkdtemp(prefix="sqlvigil-run-"))
    proc = subprocess.Popen(["unshare", "--mount", "sh", "-c", 'mount --bind "$1" /run/systemd && shift && exec "$@"',
                             "sh", fake, os.environ.get("SQLVIGIL", "build/src/sqlvigil"), b"--config", conf,
                             b"--database", db], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err)
    try:
        try:
            notify.wait_for("READY", "1", timeout=20)
        except Failure:
            raise Failure(f"not ready: {open(errfile, 'rb').read()[-2000:]!r}")
        strict_json(ask_raw(sock, "stats\n"), "stats")
        proc.send_signal(signal.SIGTERM)
        check(proc.wait(timeout=30) == 0, f"exit {proc.returncode}: {open(errfile, 'rb').read()[-2000:]!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        err.close()
        time.sleep(0.3)  # the receiver's last datagrams
        journal.close()

    check(len(entries) >= 3, f"only {len(entries)} journal entries; stderr: {open(errfile, 'rb').read()[-2000:]!r}")
    messages, databases, configs = [], set(), set()
    for data in entries:
        fields = {}
        for line in data.split(b"\n"):
            if not line:
                continue
            check(b"=" in line, f"a field in the binary form (a newline in its value): {line!r} in {data!r}")
            name, value = line.split(b"=", 1)
            try:
                fields[name.decode("ascii")] = value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Failure(f"field {name!r} is not UTF-8 ({e}): {value!r}")
        messages.append(fields.get("MESSAGE", ""))
        if "SQLVIGIL_DATABASE" in fields:
            databases.add(fields["SQLVIGIL_DATABASE"])
        if "SQLVIGIL_CONFIG" in fields:
            configs.add(fields["SQLVIGIL_CONFIG"])
    check(databases == {as_log(db)}, f"SQLVIGIL_DATABASE {databases}, expected {as_log(db)!r}")
    check(configs == {as_log(conf)}, f"SQLVIGIL_CONFIG {configs}, expected {as_log(conf)!r}")
    start_line = f"starting (SQLite {sqlite3.sqlite_version}): {as_log(db)}, configuration {as_log(conf)}"
    check(any(m.endswith(start_line) for m in messages), f"no message ending {start_line!r}: {messages[:5]}")
    check(open(errfile, "rb").read() == b"", f"stderr used besides the journal: {open(errfile, 'rb').read()!r}")


# ---- No local user can deny the socket to others ------------------------------

FLOODER = r"""
import json, socket, sys, time
sock, n_idle, n_half, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
counts = {"opened": 0, "busy": 0, "timeout": 0, "other": 0, "closed": 0, "refused": 0}
idle, half = [], []
def fill(pool, n, payload):
    while len(pool) < n:
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        try:
            s.connect(sock)
        except BlockingIOError:
            counts["refused"] += 1
            s.close()
            return
        counts["opened"] += 1
        if payload:
            try:
                s.send(payload)
            except OSError:
                pass
        pool.append(s)
def harvest(pool):
    keep = []
    for s in pool:
        try:
            data = s.recv(65536)
        except BlockingIOError:
            keep.append(s)
            continue
        except OSError:
            data = b""
        if not data:
            counts["closed"] += 1
        else:
            try:
                code = json.loads(data.split(b"\n")[0]).get("code")
            except ValueError:
                code = None
            counts[code if code in ("busy", "timeout") else "other"] += 1
        s.close()
    pool[:] = keep
end = time.monotonic() + limit
fill(idle, n_idle, b"")
fill(half, n_half, b"stat")
print(json.dumps({"started": len(idle) + len(half)}), flush=True)
import select
while time.monotonic() < end:
    if select.select([sys.stdin], [], [], 0.1)[0]:
        break  # told to stop
    harvest(idle)
    harvest(half)
    fill(idle, n_idle, b"")
    fill(half, n_half, b"stat")
for s in idle + half:
    s.close()
print(json.dumps(counts), flush=True)
"""


def make_user(name):
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
                        name], capture_output=True, text=True)
    check(r.returncode == 0, f"useradd {name}: {r.stderr}")
    import pwd
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def case_flood(tmp):
    """An unprivileged user holds 400 idle connections and 100 that sent half
    a line and stall, reopening each one the daemon drops: root's status and
    reload are answered, another unprivileged user is served, the flooder
    gets "busy" replies, the watchdog keeps being pinged, and once the flood
    ends the flooding user is served too."""
    if os.geteuid() != 0:
        raise Skip("needs root to create a user for the flood (useradd) and run as it")
    name = f"svflood{os.getpid() % 100000}"
    uid, gid = make_user(name)
    as_flooder = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    os.chmod(tmp, 0o755)
    d, notify, db, sock, conf = start(tmp, "[health]\ninterval = 500ms\n", watchdog=4_000_000)
    flooder = None
    try:
        flooder = subprocess.Popen(as_flooder + [sys.executable, "-c", FLOODER, sock, "400", "100", "120"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = json.loads(flooder.stdout.readline() or "{}")
        if started.get("started") != 500:
            flooder.kill()
            raise Failure(f"the flooder did not get going: {started} {flooder.communicate()[1]}")
        t_flood = time.monotonic()
        times = {}
        # Three rounds, 2.5 s apart: the flood goes on meanwhile, through
        # the daemon's idle and request deadlines (2 s and 5 s).
        for round_ in range(3):
            time.sleep(1.0 if round_ == 0 else 2.5)
            for label, args, user in (("status", ["status"], None), ("reload", ["reload"], None),
                                      ("health as nobody", ["health"], "nobody")):
                t0 = time.monotonic()
                r = ctl("-s", sock, *args, user=user, timeout=60)
                took = time.monotonic() - t0
                times[label] = max(times.get(label, 0.0), took)
                check(r.returncode == 0, f"{label} during the flood: exit {r.returncode} after {took:.1f}s: "
                                         f"{r.stderr}\n{d.dump()}")
                check(took < 10, f"{label} took {took:.1f}s during the flood")
        d.wait_log(r"configuration .* reloaded", after=t_flood)
        if flooder.poll() is not None:
            raise Failure(f"the flooder stopped early: {flooder.communicate()}")
        out, err = flooder.communicate("stop\n", timeout=60)
        check(flooder.returncode == 0, f"the flooder failed: {err}")
        counts = json.loads(out.strip().splitlines()[-1])
        flood_for = time.monotonic() - t_flood
        check(counts["busy"] > 0, f"the flooder never got a busy reply: {counts}")
        check(counts["timeout"] > 0, f"no idle or stalled connection was dropped with a timeout: {counts}")
        # Flood over: the same user is served again.
        t0 = time.monotonic()
        r = wait_until(lambda: (lambda r: r if r.returncode == 0 else None)(ctl("-s", sock, "health", user=as_flooder)),
                       20, "the flooding user to be served once its connections are gone")
        times["health as the flooder, after"] = time.monotonic() - t0
        pings = notify.times("WATCHDOG", "1", after=t_flood)
        gap = max(b - a for a, b in zip([t_flood] + pings, pings + [time.monotonic()]))
        check(gap < 4.0, f"a watchdog gap of {gap:.1f}s (WatchdogSec 4s) during the flood")
        check(d.find_log(r"control socket .*: \d+ connections? turned away busy"), "the journal does not say")
        print("  flood for %.1fs: %s; longest: %s; longest watchdog gap %.2fs" % (
            flood_for, counts, ", ".join(f"{k} {v:.3f}s" for k, v in times.items()), gap))
        stop(d, notify)
    finally:
        d.kill()
        if flooder and flooder.poll() is None:
            flooder.kill()
        subprocess.run(["userdel", name], capture_output=True)


def socket_fds(pid):
    return sum(1 for t in fd_targets(pid) if t.startswith("socket:"))


def case_client_hangup(tmp):
    """A client that hangs up while its admin command runs (a TRUNCATE
    checkpoint waiting for a reader) gives its slot back at once; the command
    goes on, and when it ends its reply is discarded - the journal says both."""
    d, notify, db, sock, conf = start(tmp, "[pragmas]\nbusy_timeout = 60000\n")
    reader = subprocess.Popen([sys.executable, "-c", r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN")
con.execute("SELECT count(*) FROM t").fetchone()
w = sqlite3.connect(sys.argv[1], isolation_level=None)
w.execute("INSERT INTO t(v) VALUES ('after the reader')")
print("reading", flush=True)
sys.stdin.readline()
""", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    client = None
    try:
        check(reader.stdout.readline().strip() == "reading", "the reader did not start")
        idle = socket_fds(d.pid)
        client = subprocess.Popen([CTL, "-s", sock, "checkpoint", "truncate"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        wait_until(lambda: ask(sock, "stats\n")["maintenance"]["running"] == "checkpoint", 10, "the checkpoint")
        wait_until(lambda: socket_fds(d.pid) == idle + 1, 10, "the waiting client's connection")
        t0 = time.monotonic()
        client.kill()
        client.wait()
        d.wait_log(rf"pid {client.pid} \(uid 0\) hung up while its 'checkpoint' runs; it goes on", after=t0)
        wait_until(lambda: socket_fds(d.pid) == idle, 10, "the daemon to close the hung-up client's connection")
        check(ask(sock, "stats\n")["maintenance"]["running"] == "checkpoint", "the checkpoint stopped with its client")
        reader.kill()
        reader.wait()
        d.wait_log(r"checkpoint \(admin\) truncate: ", after=t0, timeout=70)
        d.wait_log(rf"the reply to pid {client.pid}'s 'checkpoint' is discarded: it hung up", after=t0)
        check(ask(sock, "health\n")["ok"], "not serving afterwards")
        stop(d, notify)
    finally:
        d.kill()
        reader.kill()
        if client:
            client.kill()


def case_reload_moves_socket(tmp):
    """A reload that changes [control] socket moves it there (the old file
    goes); one that cannot keeps the old socket and says in the reply, on
    sqlvigilctl's stderr and in the journal that it takes a restart."""
    d, notify, db, sock, conf = start(tmp)
    try:
        moved = os.path.join(tmp, "moved.sock")
        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {moved}\n")
        r = ctl("-s", sock, "reload")
        check(r.returncode == 0 and f"the control socket moved to {moved}" in r.stdout, f"{r.returncode} {r.stdout} {r.stderr}")
        check(not os.path.exists(sock), "the old socket file is left")
        check(ask(moved, "health\n")["ok"], "nobody answers at the new path")
        d.wait_log(rf"reload: the control socket moved from {sock} to {moved}")

        nowhere = os.path.join(tmp, "missing-dir", "c.sock")
        write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {nowhere}\n")
        r = ctl("-s", moved, "--json", "reload")
        check(r.returncode == 0, f"{r.returncode} {r.stdout} {r.stderr}")
        reply = json.loads(r.stdout)
        need = reply["reload"].get("restart_needed", "")
        check(reply["reload"]["result"] == "applied" and f"the control socket stays at {moved}" in need
              and "No such file or directory" in need and f"restart sqlvigil to move it to {nowhere}" in need, str(reply))
        check(need in r.stderr, f"sqlvigilctl does not say so: {r.stderr!r}")
        d.wait_log(r"warning: reload: the control socket stays at .*restart sqlvigil to move it")
        check(ask(moved, "health\n")["ok"], "the socket stopped answering")
        c = ask(moved, "config\n")
        check(c["config"]["control"]["socket"] == moved, f"config says the socket is {c['config']['control']}")
        stop(d, notify)
    finally:
        d.kill()


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    run(CASES)
