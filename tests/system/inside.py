# SPDX-License-Identifier: MIT
"""Container side of the system tests: what a scenario uses to act like an
operator (systemctl, journalctl, useradd) and to check results with
independent clients (the sqlite3 CLI, Python's sqlite3 module, /proc).

Nothing here sleeps and hopes: every wait polls a condition with a generous
deadline and fails with what it saw.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import time
import traceback

TEST_DIR = "/opt/sqlvigil-test"

# MESSAGE_IDs: sqlvigil's own (src/messages.h) and systemd's (sd-messages.h).
MSG_STARTED = "8cc4fa5c844a4d54b1ceebf52488943e"
MSG_READY = "1ca5414d9fe842bcb6693d6324f35d65"
MSG_HEALTH = "071157879bff4004816d0b2cbfe74e68"
MSG_STOPPING = "aa36bd36702f47c994ae8bf6f277578e"
MSG_CONFIG_REJECTED = "31558d0150cf4c098b8dc45b192366f8"
MSG_RELOADED = "fdddf745c3384f5396d4e7289edd6ac8"
MSG_FILE_FAULT = "926eff0a0d8d4f938cb4d1dd3853e354"
MSG_FILE_RESCUED = "6aeb7fe315274ac181a32f70d01fa779"
MSG_BACKUP = "69c0eda20db14e10827e787e5b0ff249"
SD_UNIT_SUCCESS = "7ad2d189f7e94e70a38c781354912448"
SD_UNIT_FAILURE_RESULT = "d9b373ed55a64feb8242e02dbe79a49c"
SD_UNIT_RESTART_SCHEDULED = "5eb03494b6584870a536b337290809b3"

# Sanitizer reports, in a -Db_sanitize build, end up in the unit's journal.
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


# A small application that talks over stdin/stdout: one command per line,
# one JSON reply per line. It keeps one connection open the whole time, like
# a real service would. Commands:
#   insert N    N rows, each in its own transaction (autocommit)
#   sql TEXT    any statement (BEGIN, COMMIT, SELECT ...); replies its rows
#   quit        closes the connection and exits
APP = r"""
import json, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
def reply(**kw):
    print(json.dumps(kw), flush=True)
reply(ok=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    try:
        if cmd == "insert":
            for i in range(int(arg)):
                con.execute("INSERT INTO t(v) VALUES (?)", ("application row %d" % i,))
            reply(ok=True)
        elif cmd == "sql":
            reply(ok=True, rows=[list(r) for r in con.execute(arg).fetchall()])
        elif cmd == "quit":
            con.close()
            reply(ok=True)
            break
        else:
            reply(ok=False, error="unknown command " + cmd)
    except Exception as e:
        reply(ok=False, error=str(e))
"""


class App:
    """An application process of `user` with a persistent connection to db."""

    def __init__(self, session, user, db):
        self.s = session
        self.proc = subprocess.Popen(["runuser", "-u", user, "--", "python3", "-c", APP, db],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._reply("start")

    def _reply(self, what):
        line = self.proc.stdout.readline()
        check(line, f"application exited during {what!r} (status {self.proc.poll()})")
        r = json.loads(line)
        check(r.get("ok"), f"application: {what!r} failed: {r.get('error')}")
        return r

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._reply(line)

    def sql(self, text):
        return self.cmd("sql " + text)["rows"]

    def alive(self):
        return self.proc.poll() is None

    def quit(self):
        if self.alive():
            self.cmd("quit")
            self.proc.wait(timeout=30)

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()


class Instance:
    """sqlvigil@NAME: its user, database and configuration."""

    def __init__(self, name, user=None, directory=None):
        self.name = name
        self.user = user or name
        self.unit = f"sqlvigil@{name}.service"
        self.dir = directory or f"/var/lib/{name}"
        self.db = f"{self.dir}/{name}.db"
        self.wal = self.db + "-wal"
        self.conf = f"/etc/sqlvigil/{name}.conf"
        self.runtime_dir = f"/run/sqlvigil/{name}"


class Session:
    def __init__(self, name):
        self.name = name
        self.start = time.monotonic()
        self.log_path = os.path.join(TEST_DIR, "driver.log")
        self.apps = []

    # ---- reporting --------------------------------------------------------

    def log(self, message):
        line = f"[{time.monotonic() - self.start:6.2f}s] {message}"
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def wait_until(self, pred, timeout, what, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Failure(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    # ---- commands ---------------------------------------------------------

    def run(self, *argv, check_status=True, quiet=False):
        r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if not quiet:
            self.log(f"$ {' '.join(argv)} -> {r.returncode}"
                     + (f"\n{r.stdout.rstrip()}" if r.stdout.strip() else "")
                     + (f"\n{r.stderr.rstrip()}" if r.stderr.strip() else ""))
        if check_status and r.returncode != 0:
            raise Failure(f"{' '.join(argv)} exited with {r.returncode}: {r.stderr.strip()}")
        return r

    def systemctl(self, *args, check_status=True):
        return self.run("systemctl", "--no-pager", *args, check_status=check_status)

    def show(self, unit, *props):
        r = self.run("systemctl", "show", "-p", ",".join(props), unit, quiet=True)
        out = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition("=")
            out[k] = v
        return out

    def prop(self, unit, name):
        return self.show(unit, name)[name]

    def daemon_reload(self):
        self.systemctl("daemon-reload")

    def dropin(self, unit, name, text):
        d = f"/etc/systemd/system/{unit}.d"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/{name}.conf", "w") as f:
            f.write(text)
        self.log(f"drop-in {d}/{name}.conf:\n{text.rstrip()}")
        self.daemon_reload()

    def sqlite_cli(self, user, db, sql):
        """The sqlite3 command-line shell, as `user`: an independent client."""
        return self.run("runuser", "-u", user, "--", "sqlite3", db, sql).stdout.strip()

    def app(self, inst):
        a = App(self, inst.user, inst.db)
        self.apps.append(a)
        return a

    # ---- the journal ------------------------------------------------------

    def cursor(self):
        """Where the journal ends now: pass as after= to see only what comes
        next."""
        r = self.run("journalctl", "--no-pager", "-n", "1", "-o", "json", quiet=True)
        lines = r.stdout.strip().splitlines()
        return json.loads(lines[-1])["__CURSOR"] if lines else None

    def journal(self, unit=None, after=None, sync=False, **match):
        """Entries in journal order, as dicts. unit= takes what `journalctl
        -u` shows: the service's own entries and systemd's about it. Other
        keyword arguments must all match (field=value)."""
        if sync:
            self.run("journalctl", "--sync", quiet=True)
        argv = ["journalctl", "--no-pager", "-o", "json"]
        if unit:
            argv += ["-u", unit]
        if after:
            # Not --after-cursor: journalctl 252 with a match (-u) skips the
            # first matching entry after the cursor. --cursor includes the
            # cursor's own entry, which is dropped below.
            argv += [f"--cursor={after}"]
        r = self.run(*argv, quiet=True, check_status=False)
        out = []
        for line in r.stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            for k, v in list(e.items()):
                if isinstance(v, list):  # binary or repeated field
                    try:
                        e[k] = bytes(v).decode("utf-8", "replace")
                    except (TypeError, ValueError):
                        e[k] = str(v)
            if after and e.get("__CURSOR") == after:
                continue
            if all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def wait_journal(self, what, timeout=20, pred=None, **kw):
        """The first entry matching kw (and pred), polling."""
        def find():
            for e in self.journal(**kw):
                if pred is None or pred(e):
                    return e
            return None
        e = self.wait_until(find, timeout, f"a journal entry: {what}", interval=0.1)
        self.log(f"journal: {what}: {e.get('MESSAGE')!r}")
        return e

    # ---- set-up -----------------------------------------------------------

    def instance(self, name, config="", rows=0, wal=True, user=None, directory=None):
        """By the unit's convention: a user and group NAME, owning
        /var/lib/NAME and its database NAME.db (with table t), and
        /etc/sqlvigil/NAME.conf. user= and directory= put the database
        elsewhere, owned by another user."""
        inst = Instance(name, user, directory)
        self.forget_host_leftovers(inst)
        self.run("useradd", "--system", "--user-group", "--home-dir", inst.dir, "--no-create-home",
                 "--shell", "/usr/sbin/nologin", inst.user)
        os.makedirs(inst.dir, exist_ok=True)
        con = sqlite3.connect(inst.db, isolation_level=None)
        con.execute(f"PRAGMA journal_mode={'wal' if wal else 'delete'}")
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        if rows:
            con.execute("BEGIN")
            con.executemany("INSERT INTO t(v) VALUES (?)", ((f"row {i}",) for i in range(rows)))
            con.execute("COMMIT")
        con.close()
        self.run("chown", "-R", f"{inst.user}:{inst.user}", inst.dir)
        self.write_config(inst, f"[database]\npath = {inst.db}\n\n{config}")
        return inst

    def forget_host_leftovers(self, inst):
        """The container's / is the host's under an overlay, so a host that
        has followed the README (CI's machine has a user wecare and
        /var/lib/wecare) shows its users, state directories and
        configuration here too. A scenario checks what a fresh install
        does, so it starts from none of them. This only hides them in the
        container's upper layer; the host keeps its files."""
        for user in {inst.user, inst.name}:
            if subprocess.run(["getent", "passwd", user], capture_output=True).returncode == 0:
                self.run("userdel", user)
            if subprocess.run(["getent", "group", user], capture_output=True).returncode == 0:
                self.run("groupdel", user)
        for path in (inst.dir, f"/var/lib/{inst.name}", f"/var/backups/sqlvigil/{inst.name}"):
            if os.path.lexists(path):
                self.log(f"removing the host's {path} from the container")
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
        if os.path.lexists(inst.conf):
            self.log(f"removing the host's {inst.conf} from the container")
            os.remove(inst.conf)

    def write_config(self, inst, text):
        os.makedirs(os.path.dirname(inst.conf), exist_ok=True)
        with open(inst.conf + ".tmp", "w") as f:
            f.write(text)
        os.rename(inst.conf + ".tmp", inst.conf)
        self.log(f"{inst.conf}:\n{text.rstrip()}")

    # ---- the end ----------------------------------------------------------

    def finish(self):
        for a in self.apps:
            a.kill()


def run_inside(name, func):
    """Runs one scenario in the container and writes result.json. Always
    returns normally: the container powers off either way."""
    os.makedirs(TEST_DIR, exist_ok=True)
    s = Session(name)
    result = {"name": name, "passed": False, "skipped": False, "error": None}
    try:
        func(s)
        # Whatever the scenario did, a sanitizer report in any instance's
        # journal fails it.
        reports = [e for e in s.journal(unit="sqlvigil@*", sync=True)
                   if any(m in e.get("MESSAGE", "") for m in SANITIZER_MARKS)]
        check(not reports, "sanitizer report in the journal:\n"
              + "\n".join(e.get("MESSAGE", "") for e in reports[:40]))
        result["passed"] = True
    except Skip as e:
        result["skipped"] = True
        result["error"] = str(e)
    except Failure as e:
        result["error"] = str(e)
    except Exception:
        result["error"] = "exception in the scenario:\n" + traceback.format_exc()
    finally:
        s.finish()
    result["elapsed"] = time.monotonic() - s.start
    try:
        with open(s.log_path) as f:
            result["log"] = f.read()
    except OSError:
        result["log"] = ""
    journal = subprocess.run(["journalctl", "--no-pager", "-o", "short-monotonic", "-u", "sqlvigil@*",
                              "-u", "sqlvigil-test-driver.service"],
                             capture_output=True, text=True)
    with open(os.path.join(TEST_DIR, "journal.txt"), "w") as f:
        f.write(journal.stdout)
    with open(os.path.join(TEST_DIR, "result.json.tmp"), "w") as f:
        json.dump(result, f)
    os.rename(os.path.join(TEST_DIR, "result.json.tmp"), os.path.join(TEST_DIR, "result.json"))
