#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What sqlvigil says about the database beyond its health probe, through
the real binaries: whom each pragma shapes (and the ones only the
applications can set), PRAGMA foreign_key_check with every check, and a
database that a newer SQLite wrote. Results are checked with Python's
sqlite3 module, an independent client.

A "newer SQLite" database is made with the system SQLite alone: the object
is created with a function this SQLite has, then its SQL text in
sqlite_schema is rewritten (PRAGMA writable_schema) to what a newer SQLite
would have stored, and header bytes 96-99 say 3.53.0 wrote it. SQLite
3.40 fails on such a file exactly as on one written by 3.53
(/work/notes/version-skew.md, section 6)."""

import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SQLVIGIL, Daemon, Failure, Loadgen, Notify, check, make_db, query, run,  # noqa: E402
                     wait_until, write_config)

CTL = os.environ.get("SQLVIGILCTL", "build/src/sqlvigilctl")
NEWER = 3053000  # what the header says wrote the "newer" databases


def start(tmp, db, extra="", name="k", watchdog=None, expect_ready=True):
    sock = os.path.join(tmp, f"{name}.sock")
    conf = os.path.join(tmp, f"{name}.conf")
    write_config(conf, f"[database]\npath = {db}\n[control]\nsocket = {sock}\n{extra}")
    sockdir = os.path.join(tmp, f"notify-{name}-{time.monotonic_ns()}")
    os.mkdir(sockdir)
    notify = Notify(sockdir)
    d = Daemon(["--config", conf], notify=notify, watchdog_usec=watchdog)
    if expect_ready:
        try:
            notify.wait_for("READY", "1", timeout=30)
        except Failure:
            d.kill()
            notify.close()
            raise Failure("not ready:\n" + d.dump())
    return d, notify, sock, conf


def stop(d, notify):
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(30)
    notify.close()
    check(rc == 0, f"exit {rc}:\n{d.dump()}")


def ctl(*args, timeout=120):
    return subprocess.run([CTL] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def ctl_json(sock, *args):
    r = ctl("-s", sock, "--json", *args)
    check(r.stdout.strip(), f"sqlvigilctl {' '.join(args)}: no JSON (exit {r.returncode}): {r.stderr}")
    return r.returncode, json.loads(r.stdout)


def health(sock):
    return ctl_json(sock, "health")[1]["health"]


def stats(sock):
    return ctl_json(sock, "stats")[1]


def sqlvigil_sqlite_version(sock):
    return stats(sock)["process"]["sqlite_version"]


# ---- Pragma scopes ----------------------------------------------------------

def case_pragma_scopes(tmp):
    """foreign_keys in sqlvigil.conf is reported as the applications' own
    setting, never as applied: --check-config warns with file, line and what
    the applications must run, the journal says it at start, stats says
    application-only, status prints a warning instead of "as configured".
    And the applications' connections are indeed unprotected."""
    db = os.path.join(tmp, "p.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE parent(id INTEGER PRIMARY KEY)")
    con.execute("CREATE TABLE child(id INTEGER PRIMARY KEY, pid INT REFERENCES parent(id))")
    con.close()
    pragmas = "[pragmas]\ncache_size = -4000\nmmap_size = 30000000\nforeign_keys = on\n"

    conf = os.path.join(tmp, "check.conf")
    write_config(conf, f"[database]\npath = {db}\n{pragmas}")
    r = subprocess.run([SQLVIGIL, "--check-config", "--config", conf], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"--check-config: exit {r.returncode}, expected 0 (a warning, not an error): {r.stderr}")
    check(f"sqlvigil: warning: [pragmas] at {conf}:6: foreign_keys = on is a per-connection setting that only the "
          "applications can make: sqlvigil does not apply it" in r.stderr, f"no foreign_keys warning: {r.stderr!r}")
    check("each application must run 'PRAGMA foreign_keys = on' on each of its connections" in r.stderr,
          f"the warning does not say what the applications must do: {r.stderr!r}")
    check(f"[pragmas] at {conf}:5: mmap_size = 30000000 shapes sqlvigil's own connection only" in r.stderr,
          f"no mmap_size note: {r.stderr!r}")
    for line in ("journal_mode = wal  ; shapes the database file (every connection)",
                 "cache_size = -4000  ; shapes sqlvigil's own connection only",
                 "mmap_size = 30000000  ; shapes sqlvigil's own connection only",
                 "foreign_keys = on  ; shapes each application's own connections (not applied by sqlvigil)"):
        check(line in r.stdout, f"--check-config does not print {line!r}:\n{r.stdout}")

    # The applications' other per-connection pragmas are errors that say whose they are.
    bad = os.path.join(tmp, "bad.conf")
    write_config(bad, f"[database]\npath = {db}\n[pragmas]\nrecursive_triggers = on\n")
    r = subprocess.run([SQLVIGIL, "--check-config", "--config", bad], capture_output=True, text=True, timeout=30)
    check(r.returncode == 78, f"recursive_triggers: exit {r.returncode}, expected 78")
    check(f"'recursive_triggers' in [pragmas] at {bad}:4 is a per-connection setting that only the applications "
          "can make" in r.stderr, f"stderr: {r.stderr!r}")

    d, notify, sock, conf = start(tmp, db, pragmas)
    try:
        t, line = d.wait_log(r"warning: foreign_keys = on is a per-connection setting", timeout=10)
        check(f"({conf}:8)" in line, f"the journal warning does not name the file and line: {line}")
        _, inforce = d.wait_log(r"pragmas in force: ", timeout=5)
        check("pragmas in force: file page_size=4096 auto_vacuum=none journal_mode=wal; sqlvigil's own connection "
              "busy_timeout=5000 cache_size=-4000 synchronous=normal mmap_size=30000000" in inforce,
              f"the pragmas line does not group by scope: {inforce}")
        check(inforce.endswith("; each application's own, not applied: foreign_keys=on"), inforce)

        s = stats(sock)["pragmas"]
        check(s["foreign_keys"]["scope"] == "application" and s["foreign_keys"]["requested"] == "on" and
              s["foreign_keys"]["effective"] is None and s["foreign_keys"]["outcome"] == "application-only",
              f"foreign_keys in stats: {s['foreign_keys']}")
        check("each application must run 'PRAGMA foreign_keys = on'" in s["foreign_keys"]["note"], str(s))
        check(s["journal_mode"]["scope"] == "file" and s["journal_mode"]["outcome"] == "applied", str(s))
        check(s["cache_size"] == {"scope": "sqlvigil", "requested": "-4000", "effective": "-4000",
                                  "outcome": "applied"}, str(s["cache_size"]))
        check(s["mmap_size"]["scope"] == "sqlvigil" and s["mmap_size"]["outcome"] == "applied" and
              "resident memory" in s["mmap_size"]["note"], str(s["mmap_size"]))

        r = ctl("-s", sock, "status")
        check(r.returncode == 0, f"status: {r.returncode} {r.stderr}")
        check("as configured" not in r.stdout, f"status says 'as configured' with foreign_keys set:\n{r.stdout}")
        check("  warning     foreign_keys = on is a per-connection setting that only the applications can make"
              in r.stdout, f"status has no warning for foreign_keys:\n{r.stdout}")
        check("  pragmas     file: page_size=4096 auto_vacuum=none journal_mode=wal\n"
              "              sqlvigil's own connection: busy_timeout=5000 cache_size=-4000" in r.stdout, r.stdout)

        # What "foreign_keys = on" in sqlvigil.conf does for an application:
        # nothing. Its connection still has them off, and an orphan goes in.
        app = sqlite3.connect(db, isolation_level=None, timeout=10)
        check(app.execute("PRAGMA foreign_keys").fetchone()[0] == 0, "the application's connection has foreign keys on")
        app.execute("INSERT INTO child(pid) VALUES (42)")
        app.close()
        check(query(db, "PRAGMA foreign_key_check") == [("child", 1, "parent", 0)], "the orphan is not there")
        stop(d, notify)
    finally:
        d.kill()


# ---- foreign_key_check --------------------------------------------------------

def make_family(db, children=100):
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("CREATE TABLE child(id INTEGER PRIMARY KEY, pid INT REFERENCES parent(id), note TEXT)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO parent VALUES (?, ?)", ((i, f"p{i}") for i in range(1, 11)))
    con.executemany("INSERT INTO child(pid, note) VALUES (?, ?)", (((i % 10) + 1, f"c{i}") for i in range(children)))
    con.execute("COMMIT")
    con.close()


def case_foreign_keys(tmp):
    """An application without foreign_keys leaves orphans: the scheduled
    check finds them (degraded, foreign-key, naming table and row), an admin
    check reports exactly what an independent foreign_key_check lists; once
    the rows are repaired health is ok again; turning the check off by
    reload clears it."""
    db = os.path.join(tmp, "f.db")
    make_family(db)
    d, notify, sock, conf = start(tmp, db, "[health]\nquick_check_interval = 1s\ninterval = 200ms\n"
                                           "[vacuum]\ninterval = 0\n[analyze]\ninterval = 0\n", watchdog=2_000_000)
    try:
        d.wait_log(r"quick_check: ok; foreign keys: ok", timeout=30)
        check(health(sock)["state"] == "ok", str(health(sock)))

        # The application, as most do, never turned foreign_keys on.
        app = sqlite3.connect(db, isolation_level=None, timeout=10)
        app.execute("INSERT INTO child(id, pid, note) VALUES (1001, 77, 'orphan'), (1002, 78, 'orphan')")
        app.execute("DELETE FROM parent WHERE id = 3")  # 10 children lose their parent
        app.close()
        expected = query(db, "PRAGMA foreign_key_check")
        check(len(expected) == 12, f"the independent check lists {len(expected)} rows, expected 12")

        h = wait_until(lambda: (lambda h: h if h["code"] == "foreign-key" else None)(health(sock)), 30,
                       "health foreign-key")
        check(h["state"] == "degraded", f"foreign keys broken is {h['state']}, expected degraded")
        check(h["reason"].startswith("foreign_key_check: 12 rows refer to missing parent rows (child: 12); "
                                     "the first: child rowid "), h["reason"])
        d.wait_log(r"warning: quick_check: ok; foreign_key_check: 12 rows refer to missing parent rows "
                   r"\(child: 12\); the first: child rowid \d+: pid -> parent\(id\) in ", timeout=10)
        last = stats(sock)["maintenance"]["last"]["quick_check"]
        check(last["trigger"] == "interval" and last["result"] == "inconsistent", f"the scheduled run: {last}")
        # Degraded keeps the watchdog fed.
        t = time.monotonic()
        notify.wait_for("WATCHDOG", "1", after=t, timeout=10)

        rc, reply = ctl_json(sock, "check", "integrity")
        check(rc == 1 and reply["ok"] is False and reply["code"] == "failed", f"exit {rc}: {reply}")
        c = reply["check"]
        check(c["result"] == "inconsistent" and c["kind"] == "integrity" and c["problems"] == 0, str(c))
        fk = c["foreign_keys"]
        check(fk["violations"] == 12 and fk["tables"] == [{"table": "child", "violations": 12}], str(fk))
        check(fk["mismatches"] == 0 and fk["mismatch"] is None and fk["more_tables"] == 0, str(fk))
        got = [(v["table"], v["rowid"], v["parent"], v["fkid"]) for v in fk["first"]]
        check(got == expected[:5], f"first violations {got}, the independent check says {expected[:5]}")
        check(all(v["key"] == "pid -> parent(id)" for v in fk["first"]), str(fk["first"]))
        check(c["lock_usec"] == 0, f"the check held the write lock for {c['lock_usec']} us")
        r = ctl("-s", sock, "check")
        check(r.returncode == 1 and r.stdout.startswith("check: inconsistent: quick_check: ok; foreign_key_check: "
                                                        "12 rows refer"), f"{r.returncode} {r.stdout!r}")

        # Repaired by the application: the next check clears it.
        app = sqlite3.connect(db, isolation_level=None, timeout=10)
        app.execute("DELETE FROM child WHERE pid NOT IN (SELECT id FROM parent)")
        app.close()
        check(query(db, "PRAGMA foreign_key_check") == [], "the repair left violations")
        wait_until(lambda: health(sock)["state"] == "ok", 30, "health ok after the repair")

        # Broken again, then the check turned off by a reload: not reported.
        app = sqlite3.connect(db, isolation_level=None, timeout=10)
        app.execute("INSERT INTO child(pid, note) VALUES (99, 'orphan')")
        app.close()
        wait_until(lambda: health(sock)["code"] == "foreign-key", 30, "health foreign-key again")
        with open(conf) as f:
            text = f.read()
        write_config(conf, text.replace("[health]\n", "[health]\nforeign_key_check = no\n"))
        r = ctl("-s", sock, "reload")
        check(r.returncode == 0, f"reload: {r.returncode} {r.stderr}")
        wait_until(lambda: health(sock)["state"] == "ok", 30, "health ok with foreign_key_check = no")
        rc, reply = ctl_json(sock, "check")
        check(rc == 0 and reply["check"]["result"] == "ok" and reply["check"]["foreign_keys"] is None, str(reply))
        stop(d, notify)
    finally:
        d.kill()
        notify.close()


def case_foreign_keys_report(tmp):
    """The report is bounded and complete: every violation counted, 8
    tables named and the rest counted, 5 rows described, a WITHOUT ROWID
    row without rowid; a foreign key SQLite cannot check ("mismatch")
    counts, and the other tables are still checked."""
    db = os.path.join(tmp, "r.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE parent(id INTEGER PRIMARY KEY, code TEXT)")
    con.execute("CREATE TABLE w(k TEXT PRIMARY KEY, pid INT REFERENCES parent(id)) WITHOUT ROWID")
    con.execute("INSERT INTO w VALUES ('a', 500)")
    con.close()

    d, notify, sock, conf = start(tmp, db, "[health]\nquick_check_interval = 0\n")
    try:
        # A WITHOUT ROWID table's row has no rowid to name.
        rc, reply = ctl_json(sock, "check")
        check(rc == 1 and reply["check"]["foreign_keys"]["first"] == [
            {"table": "w", "rowid": None, "parent": "parent", "fkid": 0, "key": "pid -> parent(id)"}], str(reply))
        check("w (WITHOUT ROWID): pid -> parent(id)" in health(sock)["reason"], str(health(sock)))
    finally:
        stop(d, notify)
        d.kill()

    con = sqlite3.connect(db, isolation_level=None)
    for t in range(10):
        con.execute(f"CREATE TABLE c{t}(id INTEGER PRIMARY KEY, a INT, b INT, "
                    f"FOREIGN KEY (a) REFERENCES parent(id), FOREIGN KEY (b) REFERENCES parent)")
        con.executemany(f"INSERT INTO c{t}(a, b) VALUES (?, ?)", ((1000 + i, None) for i in range(t + 1)))
    con.close()
    expected = query(db, "PRAGMA foreign_key_check")
    check(len(expected) == 1 + sum(range(1, 11)), f"{len(expected)} violations prepared")

    d, notify, sock, conf = start(tmp, db, "[health]\nquick_check_interval = 0\n")
    try:
        rc, reply = ctl_json(sock, "check")
        fk = reply["check"]["foreign_keys"]
        check(rc == 1 and reply["check"]["result"] == "inconsistent", str(reply))
        check(fk["violations"] == len(expected), f"{fk['violations']} violations counted, {len(expected)} exist")
        tables = {}
        for table, _, _, _ in expected:
            tables[table] = tables.get(table, 0) + 1
        order = list(dict.fromkeys(t for t, _, _, _ in expected))
        check(fk["tables"] == [{"table": t, "violations": tables[t]} for t in order[:8]],
              f"tables {fk['tables']}, expected the first 8 of {tables}")
        check(fk["more_tables"] == len(order) - 8, f"more_tables {fk['more_tables']}")
        check([(v["table"], v["rowid"], v["parent"], v["fkid"]) for v in fk["first"]] == expected[:5],
              f"first {fk['first']}, expected {expected[:5]}")

        # A foreign key on a parent column that is not unique: SQLite
        # refuses to check the database at all; sqlvigil checks the tables
        # one by one.
        app = sqlite3.connect(db, isolation_level=None, timeout=10)
        app.execute("CREATE TABLE bad(id INTEGER PRIMARY KEY, code TEXT REFERENCES parent(code))")
        app.close()
        try:
            query(db, "PRAGMA foreign_key_check")
            raise Failure("the independent check accepts the mismatched foreign key")
        except sqlite3.OperationalError as e:
            check("foreign key mismatch" in str(e), str(e))
        rc, reply = ctl_json(sock, "check")
        fk = reply["check"]["foreign_keys"]
        check(rc == 1 and reply["check"]["result"] == "inconsistent", str(reply))
        check(fk["mismatches"] == 1 and fk["mismatch"] == 'foreign key mismatch - "bad" referencing "parent"',
              str(fk))
        check(fk["violations"] == len(expected), f"with a mismatch, {fk['violations']} of {len(expected)} counted")
        check(len(fk["first"]) == 5 and
              all((v["table"], v["rowid"], v["parent"], v["fkid"]) in expected for v in fk["first"]), str(fk["first"]))
        h = health(sock)
        check(h["code"] == "foreign-key" and "1 table cannot be checked: foreign key mismatch" in h["reason"], str(h))
        stop(d, notify)
    finally:
        d.kill()
        notify.close()


def case_foreign_keys_no_write_lock(tmp):
    """foreign_key_check holds a read snapshot, never the write lock: an
    application writer whose busy timeout is 0 (any lock in its way is an
    error at once) commits throughout checks of a 1,000,000-row child
    table without a single SQLITE_BUSY. sqlvigil's other lock-taking work
    is turned off, so nothing else could take the lock."""
    db = os.path.join(tmp, "big.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("CREATE TABLE child(id INTEGER PRIMARY KEY, pid INT REFERENCES parent(id), v TEXT)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO parent VALUES (?, ?)", ((i, f"p{i}") for i in range(1, 10001)))
    con.executemany("INSERT INTO child(pid, v) VALUES (?, ?)",
                    (((i % 10000) + 1 if i % 250000 else 20000 + i, f"value {i}") for i in range(1_000_000)))
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    orphans = len(query(db, "PRAGMA foreign_key_check"))
    check(orphans == 4, f"{orphans} orphans prepared, expected 4")

    d, notify, sock, conf = start(tmp, db, "[health]\nquick_check_interval = 0\n"
                                           "[checkpoint]\ninterval = 0\nmin_wal_pages = 4294967295\n"
                                           "truncate_wal_size = 0\n"
                                           "[vacuum]\ninterval = 0\n[analyze]\ninterval = 0\n")
    writer = None
    try:
        writer = Loadgen("writer", db, "--interval-us", 1000, "--busy-timeout", 0)
        checks, fk_usec = 0, 0
        for checks in range(1, 41):
            rc, reply = ctl_json(sock, "check")
            c = reply["check"]
            check(c["result"] == "inconsistent" and c["foreign_keys"]["violations"] == 4, str(c)[:300])
            fk_usec += c["foreign_keys"]["duration_usec"]
            if fk_usec >= 2_000_000:  # two seconds of foreign_key_check in all
                break
        summary = writer.stop()
        writer = None
        check(summary["busy"] == 0 and summary["failed"] == 0,
              f"the writer met the lock {summary['busy']} times ({summary['failed']} failed writes: "
              f"{summary.get('first_error')}) during {checks} checks")
        check(fk_usec >= 1_000_000 and summary["succeeded"] >= 500,
              f"too little overlap to tell: {fk_usec} us of foreign_key_check, {summary['succeeded']} commits")
        print(f"  {checks} checks, foreign_key_check {fk_usec / checks / 1000:.0f} ms on average; writer: "
              f"{summary['succeeded']} commits, p99 {summary['p99_us']} us, max {summary['max_us']} us", flush=True)
        stop(d, notify)
    finally:
        if writer:
            writer.kill()
        d.kill()
        notify.close()


# ---- Version skew ----------------------------------------------------------------

def make_newer(db, rewrite, rows=200, setup=(), wal=True):
    """A database as a newer SQLite leaves it: objects created with what
    this SQLite has, then their stored SQL rewritten (rewrite: {name: sql}),
    and the header saying 3.53.0 wrote it."""
    con = sqlite3.connect(db, isolation_level=None)
    if wal:
        con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, doc TEXT, hx TEXT)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t(doc, hx) VALUES (?, ?)", ((json.dumps({"a": i}), "cafe") for i in range(rows)))
    con.execute("COMMIT")
    for sql in setup:
        con.execute(sql)
    con.execute("PRAGMA writable_schema=ON")
    for name, sql in rewrite.items():
        n = con.execute("UPDATE sqlite_schema SET sql = ? WHERE name = ?", (sql, name)).rowcount
        check(n == 1, f"no object {name} to rewrite")
    con.execute("PRAGMA writable_schema=OFF")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    with open(db, "r+b") as f:
        f.seek(96)
        f.write(struct.pack(">I", NEWER))


def sqlite_error(db, sql):
    """What this SQLite (Python's, the system's, like sqlvigil's) says to sql; None if it runs."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute(sql).fetchall()
        return None
    except sqlite3.Error as e:
        return str(e)
    finally:
        con.close()


def case_skew_index(tmp):
    """An index on jsonb_extract() (SQLite 3.45) and a view on unistr()
    (3.50): sqlvigil says at start, once, with both versions and the
    culprits, that it cannot run integrity_check or the conversion VACUUM;
    health stays ok (quick_check runs); 'check integrity' is unsupported
    with the reason, not failed; the conversion is unsupported once and not
    retried; nothing in the file changes."""
    db = os.path.join(tmp, "j.db")
    make_newer(db, {"t_a": "CREATE INDEX t_a ON t(jsonb_extract(doc, '$.a'))",
                    "v": "CREATE VIEW v AS SELECT unistr('caf\\u00e9') AS x"},
               setup=("CREATE INDEX t_a ON t(json_extract(doc, '$.a'))", "CREATE VIEW v AS SELECT 1 AS x",
                      "CREATE TABLE junk(b BLOB)",
                      "INSERT INTO junk SELECT randomblob(3000) FROM t",
                      "DROP TABLE junk"),
               wal=True)
    # The precondition, with the same SQLite: what fails and what does not.
    check("unknown function: jsonb_extract()" in (sqlite_error(db, "PRAGMA integrity_check") or ""),
          "the fixture's integrity_check does not fail on jsonb_extract")
    check(sqlite_error(db, "PRAGMA quick_check") is None, "the fixture's quick_check fails")
    free_before = query(db, "PRAGMA freelist_count")[0][0]
    check(free_before > 100 and query(db, "PRAGMA auto_vacuum")[0][0] == 0, "fixture: free pages, auto_vacuum none")

    d, notify, sock, conf = start(tmp, db, "[health]\nquick_check_interval = 1s\n"
                                           "[vacuum]\ninterval = 1s\nmin_free_pages = 1\nconvert = yes\n"
                                           "[analyze]\ninterval = 0\n")
    try:
        ours = sqlvigil_sqlite_version(sock)
        _, line = d.wait_log(r"warning: .* uses what sqlvigil's SQLite ", timeout=10)
        for word in (f"sqlvigil's SQLite {ours} lacks", "its header says SQLite 3.53.0 wrote it last",
                     "index t_a: no such function: jsonb_extract", "view v: no such function: unistr",
                     "sqlvigil cannot run integrity_check, the VACUUM of [vacuum] convert on it",
                     "'unsupported' with the reason", f"with SQLite {ours}, table t cannot INSERT, UPDATE, DELETE",
                     "view v cannot SELECT"):
            check(word in line, f"the start-up warning lacks {word!r}:\n{line}")
        check("quick_check" not in line.split("cannot run", 1)[1].split(" on it")[0], line)
        check(len([l for l in d.log() if "uses what sqlvigil's SQLite" in l]) == 1, "said more than once")

        # Scheduled quick_check runs, and the conversion is unsupported, once.
        d.wait_log(r"quick_check: ok; foreign keys: ok in ", timeout=30)
        _, conv = d.wait_log(r"full VACUUM to auto_vacuum=incremental: unsupported: sqlvigil's SQLite .* cannot "
                             r"rebuild this database", timeout=30)
        check("no such function: jsonb_extract" in conv, conv)
        d.wait_log(r"free pages .* cannot be reclaimed: full VACUUM to auto_vacuum=incremental: unsupported", timeout=30)
        time.sleep(2.5)  # two more vacuum intervals: the conversion must not run again
        check(len([l for l in d.log() if "full VACUUM to auto_vacuum=incremental" in l and "in " in l and
                   "cannot be reclaimed" not in l]) == 1, "the conversion was tried more than once:\n" + d.dump())
        h = health(sock)
        check(h["state"] == "ok", f"health with an unsupported integrity_check and conversion: {h}")

        r = ctl("-s", sock, "check", "integrity")
        check(r.returncode == 1, f"check integrity: exit {r.returncode}, expected 1")
        check(r.stdout.startswith("check: unsupported: integrity_check: unsupported: sqlvigil's SQLite "
                                  f"{ours} cannot run it on this database"), r.stdout)
        check("unknown function: jsonb_extract()" in r.stdout, r.stdout)
        rc, reply = ctl_json(sock, "check", "integrity")
        check(reply["ok"] is False and reply["check"]["result"] == "unsupported", str(reply))
        check(stats(sock)["maintenance"]["last"]["quick_check"]["result"] == "unsupported", "record")
        check(health(sock)["state"] == "ok", "an admin integrity_check that cannot run changed health")
        r = ctl("-s", sock, "check")
        check(r.returncode == 0 and r.stdout.startswith("check: ok: quick_check: ok; foreign keys: ok"), r.stdout)
        stop(d, notify)
    finally:
        d.kill()
        notify.close()
    # Nothing was rewritten or lost: the index is still the newer one.
    check(query(db, "SELECT sql FROM sqlite_schema WHERE name = 't_a'")[0][0].startswith(
        "CREATE INDEX t_a ON t(jsonb_extract"), "the index changed")
    check(query(db, "SELECT count(*) FROM t")[0][0] == 200 and query(db, "PRAGMA auto_vacuum")[0][0] == 0, "data")


def case_skew_check(tmp):
    """A CHECK on unhex() (3.41): even quick_check cannot run. Health is
    degraded, sqlite-too-old, from the first check on (READY's STATUS=
    says so), never failed: the watchdog keeps being fed; each scheduled
    check is unsupported, without back-off."""
    db = os.path.join(tmp, "c.db")
    make_newer(db, {"c": "CREATE TABLE c(id INTEGER PRIMARY KEY, hx TEXT CHECK (unhex(hx) IS NOT NULL))"},
               setup=("CREATE TABLE c(id INTEGER PRIMARY KEY, hx TEXT CHECK (hex(hx) IS NOT NULL))",
                      "INSERT INTO c(hx) VALUES ('cafe')"))
    check("unknown function: unhex()" in (sqlite_error(db, "PRAGMA quick_check") or ""), "fixture")
    d, notify, sock, conf = start(tmp, db, "[health]\nquick_check_interval = 1s\ninterval = 200ms\n",
                                  watchdog=2_000_000)
    try:
        _, ready = notify.wait_for("READY", "1")
        check(ready.get("STATUS", "").startswith("degraded: quick_check cannot run: sqlvigil's SQLite "),
              f"STATUS at READY: {ready.get('STATUS')}")
        h = health(sock)
        check(h["state"] == "degraded" and h["code"] == "sqlite-too-old", str(h))
        check("unknown function: unhex()" in h["reason"] and "table c: no such function: unhex" in h["reason"],
              h["reason"])
        _, line = d.wait_log(r"uses what sqlvigil's SQLite .* lacks", timeout=5)
        check("the scheduled quick_check is among them: health is degraded (sqlite-too-old)" in line, line)
        t0 = time.monotonic()
        for n in range(3):
            t0 = d.wait_log(r"warning: quick_check: unsupported: sqlvigil's SQLite .* cannot run it on this database, "
                            r"whose schema uses what a newer SQLite added: .*unknown function: unhex\(\).* in ",
                            after=t0, timeout=30)[0] + 0.001
            last = stats(sock)["maintenance"]["last"]["quick_check"]
            check(last["trigger"] == "interval" and last["result"] == "unsupported", f"the scheduled run: {last}")
        check(not any("could not run" in l for l in d.log()), "a check was reported failed:\n" + d.dump())
        late = notify.times("WATCHDOG", "1", after=time.monotonic() - 2)
        check(late, "no watchdog pings while degraded by version skew")
        check(health(sock)["code"] == "sqlite-too-old", "health changed")
        stop(d, notify)
    finally:
        d.kill()
        notify.close()


def case_skew_runtime(tmp):
    """An application writes a schema this SQLite cannot parse (digit
    separators, 3.46) while sqlvigil runs: health turns degraded,
    sqlite-too-old, not corrupt or failed; sqlvigil does not take it for
    content copied over the file (no rescue, nothing set aside), keeps
    running, and its stop checkpoint still puts every committed row into
    the database."""
    db = os.path.join(tmp, "r.db")
    make_db(db, rows=50)
    d, notify, sock, conf = start(tmp, db, "[health]\ninterval = 200ms\nquick_check_interval = 0\n",
                                  watchdog=2_000_000)
    try:
        app = sqlite3.connect(db, isolation_level=None, timeout=10)
        app.execute("CREATE TABLE c(id INTEGER PRIMARY KEY, n INT CHECK (n < 1000000))")
        app.execute("INSERT INTO t(v) VALUES ('late 1'), ('late 2'), ('late 3')")
        app.execute("PRAGMA writable_schema=ON")
        app.execute("UPDATE sqlite_schema SET sql = 'CREATE TABLE c(id INTEGER PRIMARY KEY, n INT CHECK "
                    "(n < 1_000_000))' WHERE name = 'c'")
        app.execute("PRAGMA writable_schema=OFF")
        app.close()  # closing its write descriptor makes sqlvigil take a fresh look
        h = wait_until(lambda: (lambda h: h if h["code"] != "none" else None)(health(sock)), 30, "a health change")
        check(h["state"] == "degraded" and h["code"] == "sqlite-too-old", f"health: {h}")
        check('unrecognized token: "1_000_000"' in h["reason"], h["reason"])
        time.sleep(3)  # several rounds and the fresh look, which must not start a rescue
        check(d.alive(), "sqlvigil exited:\n" + d.dump())
        check(health(sock)["code"] == "sqlite-too-old", str(health(sock)))
        check(not any("overwritten" in l or "rescue" in l for l in d.log()), "taken for an overwrite:\n" + d.dump())
        check(not [f for f in os.listdir(tmp) if ".stale" in f], f"files set aside: {os.listdir(tmp)}")
        late = notify.times("WATCHDOG", "1", after=time.monotonic() - 2)
        check(late, "no watchdog pings")
        stop(d, notify)
    finally:
        d.kill()
        notify.close()
    check(os.path.getsize(db + "-wal") == 0 if os.path.exists(db + "-wal") else True, "the stop left a WAL")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA writable_schema=ON")  # this SQLite reads the rest of such a schema only so
    check(con.execute("SELECT count(*) FROM t").fetchone()[0] == 53, "committed rows missing")
    con.close()


def case_skew_unreadable(tmp):
    """A schema this SQLite cannot read at all, at start: exit 1, with a
    message that says it is no damage and names both versions."""
    db = os.path.join(tmp, "u.db")
    make_newer(db, {"c": "CREATE TABLE c(id INTEGER PRIMARY KEY, n INT CHECK (n < 1_000_000))"},
               setup=("CREATE TABLE c(id INTEGER PRIMARY KEY, n INT CHECK (n < 1000000))",))
    r = subprocess.run([SQLVIGIL, "--database", db], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")})
    check(r.returncode == 1, f"exit {r.returncode}, expected 1: {r.stderr}")
    check('malformed database schema (c) - unrecognized token: "1_000_000"' in r.stderr, r.stderr)
    check("This is not damage: the schema uses SQL that sqlvigil's SQLite " in r.stderr and
          "(the file was last written by SQLite 3.53.0)" in r.stderr, r.stderr)
    check(not [f for f in os.listdir(tmp) if ".stale" in f], f"files set aside: {os.listdir(tmp)}")


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    run(CASES)
