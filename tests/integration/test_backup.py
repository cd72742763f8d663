#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Backups and restore through the real binary: scheduled and admin backups
taken under writers and checked with an independent client, retention,
faults of the backup directory, restore into a live database with an
application connected, refusals that change nothing, permissions, and kill -9
at random points of a backup and of a restore."""

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, Notify, Skip, check, integrity, make_db, query, run,  # noqa: E402
                     wait_until, write_config)

CTL = os.environ.get("SQLVIGILCTL", "build/src/sqlvigilctl")
PYTHON = sys.executable


def start(tmp, db, extra="", name="b", backup_dir=None, wait_ready=True):
    sock = os.path.join(tmp, f"{name}.sock")
    conf = os.path.join(tmp, f"{name}.conf")
    bdir = backup_dir if backup_dir is not None else os.path.join(tmp, "backups")
    if backup_dir is None:
        os.makedirs(bdir, exist_ok=True)
    text = (f"[database]\npath = {db}\n[control]\nsocket = {sock}\n"
            f"[health]\nquick_check_interval = 0\ninterval = 200ms\n[vacuum]\ninterval = 0\n[analyze]\ninterval = 0\n")
    if bdir:
        text += f"[backup]\ndirectory = {bdir}\n"
    write_config(conf, text + extra)
    sockdir = os.path.join(tmp, f"notify-{name}-{time.monotonic_ns()}")
    os.mkdir(sockdir)
    notify = Notify(sockdir)
    d = Daemon(["--config", conf], notify=notify)
    if wait_ready:
        try:
            notify.wait_for("READY", "1", timeout=20)
        except Failure:
            d.kill()
            notify.close()
            raise Failure("not ready:\n" + d.dump())
    return d, notify, sock, bdir


def stop(d, notify):
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(30)
    notify.close()
    check(rc == 0, f"exit {rc}:\n{d.dump()}")


def ctl(*args, user=None, timeout=120):
    return subprocess.run((user or []) + [CTL] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def ctl_json(sock, *args):
    r = ctl("-s", sock, "--json", *args)
    try:
        return r.returncode, json.loads(r.stdout), r.stderr
    except ValueError:
        raise Failure(f"sqlvigilctl {' '.join(args)}: exit {r.returncode}, no JSON: {r.stdout!r} {r.stderr!r}")


def backups_in(bdir):
    """{base name: manifest} for every finished backup (a manifest) in bdir."""
    out = {}
    for name in sorted(os.listdir(bdir)):
        if name.endswith(".json") and not name.startswith("."):
            with open(os.path.join(bdir, name)) as f:
                out[name[:-5]] = json.load(f)
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def check_backup(bdir, base, manifest):
    """A finished backup is whole: its size and SHA-256 are the manifest's,
    it passes integrity_check, and it needs no -wal."""
    path = os.path.join(bdir, base + ".db")
    check(os.path.isfile(path), f"{base}.json names a missing copy")
    check(os.path.getsize(path) == manifest["bytes"], f"{path}: size {os.path.getsize(path)} != {manifest['bytes']}")
    check(sha256(path) == manifest["sha256"], f"{path}: SHA-256 differs from its manifest")
    uri = f"file:{path}?mode=ro&immutable=1"
    con = sqlite3.connect(uri, uri=True)
    try:
        check(con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"{path} fails integrity_check")
        check(con.execute("PRAGMA journal_mode").fetchone()[0] != "wal", f"{path} is in WAL mode")
    finally:
        con.close()
    for suffix in ("-wal", "-shm"):
        check(not os.path.exists(path + suffix), f"{path}{suffix} exists beside a backup")
    for key in ("source", "time", "page_size", "page_count", "sqlite_version", "copy_usec", "check_usec",
                "check", "check_result"):
        check(key in manifest, f"manifest {base}.json lacks {key}")
    check(manifest["check_result"] == "ok", f"{base}: check {manifest['check_result']}")


def unchanged_runs(sock):
    """When the last backup run found nothing to copy: its start time (a
    float that grows with every such run); None otherwise."""
    _, s, _ = ctl_json(sock, "stats")
    last = s["maintenance"]["last"]["backup"]
    if last and last["result"] == "ok" and last["summary"].startswith("unchanged since the newest backup"):
        return last["at"]
    return None


def db_content(path):
    """The logical content, for "unchanged" checks: every row of every table."""
    con = sqlite3.connect(path, timeout=30)
    try:
        out = []
        for (name,) in con.execute("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"):
            out.append((name, con.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall()))
        return out
    finally:
        con.close()


# Eight writers: each transaction inserts K rows for its writer and moves the
# writer's progress counter to the last seq, in one commit. A consistent copy
# holds, for every writer, exactly the rows 1..n with n its counter and n a
# multiple of K: a commit boundary.
K = 5
WRITER = r"""
import sqlite3, sys, time
db, w, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = sqlite3.connect(db, isolation_level=None, timeout=30)
n = 0
print("ready", flush=True)
while True:
    con.execute("BEGIN IMMEDIATE")
    for i in range(k):
        n += 1
        con.execute("INSERT INTO r(w, seq, pad) VALUES (?, ?, randomblob(200))", (w, n))
    con.execute("UPDATE progress SET n = ? WHERE w = ?", (n, w))
    con.execute("COMMIT")
    time.sleep(0.002)
"""


def make_writers_db(path, writers):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE r(w INTEGER, seq INTEGER, pad BLOB, PRIMARY KEY (w, seq))")
    con.execute("CREATE TABLE progress(w INTEGER PRIMARY KEY, n INTEGER)")
    con.executemany("INSERT INTO progress VALUES (?, 0)", ((w,) for w in range(writers)))
    con.close()


def check_commit_boundary(path, writers):
    uri = f"file:{path}?mode=ro&immutable=1"
    con = sqlite3.connect(uri, uri=True)
    try:
        for w in range(writers):
            (n,) = con.execute("SELECT n FROM progress WHERE w = ?", (w,)).fetchone()
            cnt, mx = con.execute("SELECT count(*), coalesce(max(seq), 0) FROM r WHERE w = ?", (w,)).fetchone()
            check(n % K == 0, f"{path}: writer {w}'s counter {n} is not at a commit boundary")
            check(cnt == n and mx == n, f"{path}: writer {w} has {cnt} rows up to {mx}, its counter says {n}")
        return con.execute("SELECT sum(n) FROM progress").fetchone()[0]
    finally:
        con.close()


# ---------------------------------------------------------------------------

def case_backup_under_writers(tmp):
    """Backups taken (scheduled and admin) while 8 processes commit: each is
    whole, passes its check, and holds every writer at a commit boundary."""
    db = os.path.join(tmp, "w.db")
    make_writers_db(db, 8)
    d, notify, sock, bdir = start(tmp, db, "interval = 1s\nkeep_last = 100\n")
    writers = []
    try:
        for w in range(8):
            p = subprocess.Popen([PYTHON, "-c", WRITER, db, str(w), str(K)], stdout=subprocess.PIPE, text=True)
            writers.append(p)
            check(p.stdout.readline().strip() == "ready", f"writer {w} did not start")
        # Scheduled backups (interval 1 s) and admin ones meanwhile.
        for _ in range(3):
            # A scheduled one may be running: the admin's waits its turn.
            r = wait_until(lambda: (lambda r: r if r.returncode == 0 or "already running" not in r.stderr else None)(
                ctl("-s", sock, "backup")), 60, "an admin backup between scheduled ones", interval=0.05)
            check(r.returncode == 0, f"sqlvigilctl backup: {r.returncode} {r.stderr}")
            check("backup: " in r.stdout and ".db" in r.stdout, f"backup output: {r.stdout!r}")
        wait_until(lambda: sum(1 for m in backups_in(bdir).values() if m["trigger"] == "interval") >= 2, 60,
                   "two scheduled backups")
        for p in writers:
            check(p.poll() is None, "a writer died")
    finally:
        for p in writers:
            p.kill()
            p.wait()
    found = backups_in(bdir)
    check(len(found) >= 5, f"{len(found)} backups")
    totals = set()
    for base, m in found.items():
        check_backup(bdir, base, m)
        check(m["source"] == db, f"{base}: source {m['source']}")
        totals.add(check_commit_boundary(os.path.join(bdir, base + ".db"), 8))
    check(len(totals) >= 3, f"the backups hold only {len(totals)} distinct states: {sorted(totals)}")
    # Nothing committed since: scheduled runs take no copy (at most one
    # more, for the writers' last commits, if the previous run missed them).
    wait_until(lambda: unchanged_runs(sock) is not None, 30, "a scheduled run that found nothing to copy")
    before = set(backups_in(bdir))
    first = unchanged_runs(sock)
    wait_until(lambda: (unchanged_runs(sock) or 0) > first + 1, 30, "two more unchanged runs")
    after = set(backups_in(bdir))
    check(after == before, f"an unchanged database got new backups: {sorted(after - before)}")
    listing_rc, listing, _ = ctl_json(sock, "backups")
    check(listing_rc == 0 and listing["ok"], f"backups: {listing}")
    check({e["file"] for e in listing["backups"]} == {b + ".db" for b in after}, "backups lists other files")
    times = [e["time"] for e in listing["backups"]]
    check(times == sorted(times, reverse=True), "backups are not newest first")
    check(all(e["check_result"] == "ok" and e["present"] for e in listing["backups"]), "a listed backup is bad")
    check(integrity(db) == ["ok"], "the live database is corrupt")
    stop(d, notify)


def case_backup_skips_unchanged(tmp):
    """A scheduled run after nothing changed takes no copy; a commit makes
    the next run take one."""
    db = os.path.join(tmp, "s.db")
    make_db(db, rows=100)
    d, notify, sock, bdir = start(tmp, db, "interval = 1s\n")
    try:
        wait_until(lambda: len(backups_in(bdir)) >= 1, 30, "the first scheduled backup")
        first = set(backups_in(bdir))
        wait_until(lambda: unchanged_runs(sock) is not None, 30, "a run that found nothing to copy")
        at = unchanged_runs(sock)
        wait_until(lambda: (unchanged_runs(sock) or 0) > at + 1, 30, "two more runs")
        check(set(backups_in(bdir)) == first, f"a backup of an unchanged database: {sorted(backups_in(bdir))}")
        check(not d.find_log("no copy taken"), "an unchanged run was logged")
        query(db, "INSERT INTO t(v) VALUES ('one more')")
        wait_until(lambda: len(backups_in(bdir)) == 2, 30, "a backup after a commit")
        newest = max(backups_in(bdir).items(), key=lambda kv: kv[1]["time_usec"])
        check_backup(bdir, newest[0], newest[1])
        con = sqlite3.connect(f"file:{os.path.join(bdir, newest[0] + '.db')}?mode=ro&immutable=1", uri=True)
        check(con.execute("SELECT count(*) FROM t").fetchone()[0] == 101, "the new backup lacks the commit")
        con.close()
        stop(d, notify)
    finally:
        d.kill()


def case_retention(tmp):
    """keep_last = 2 (no calendar rules): after five backups two remain;
    files sqlvigil did not write are never deleted, even ones named like
    backups, or with a manifest naming another database."""
    db = os.path.join(tmp, "k.db")
    make_db(db, rows=10)
    bdir = os.path.join(tmp, "backups")
    os.makedirs(bdir)
    foreign = {
        "notes.txt": b"keep me",
        "k-20200101T000000Z.db": b"not ours: no manifest",
        "k-20200102T000000Z.db": b"a manifest for another database",
        "k-20200102T000000Z.json": json.dumps({"format": "sqlvigil-backup/1", "source": "/elsewhere/k.db",
                                               "file": "k-20200102T000000Z.db", "time_usec": 1}).encode(),
        "k-20200103T000000Z.json": json.dumps({"format": "sqlvigil-backup/1", "source": db,
                                               "file": "notes.txt", "time_usec": 1}).encode(),
    }
    for name, data in foreign.items():
        with open(os.path.join(bdir, name), "wb") as f:
            f.write(data)
    d, notify, sock, _ = start(tmp, db, "keep_last = 2\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n",
                               backup_dir=bdir)
    try:
        taken = []
        for i in range(5):
            query(db, "INSERT INTO t(v) VALUES (?)", f"change {i}")
            rc, r, err = ctl_json(sock, "backup")
            check(rc == 0 and r["ok"], f"backup {i}: {r} {err}")
            taken.append(os.path.basename(r["backup"]["path"])[:-3])
        left = backups_in(bdir)
        ours = {b for b in left if b in taken}
        check(ours == set(taken[-2:]), f"kept {sorted(ours)}, expected the newest two {taken[-2:]}")
        for name, data in foreign.items():
            path = os.path.join(bdir, name)
            check(os.path.exists(path), f"retention deleted {name}, which sqlvigil did not write")
            with open(path, "rb") as f:
                check(f.read() == data, f"{name} changed")
        for b in ours:
            check_backup(bdir, b, left[b])
        stop(d, notify)
    finally:
        d.kill()


def case_backup_dir_faults(tmp):
    """A missing, read-only or full backup directory: the run fails with
    the reason, health turns degraded (backup-failed), earlier backups stay,
    the database is untouched; a [backup] directory naming the database
    itself is a configuration error."""
    db = os.path.join(tmp, "f.db")
    make_db(db, rows=2000)
    content = db_content(db)

    # The database itself as the backup directory.
    conf = os.path.join(tmp, "same.conf")
    write_config(conf, f"[database]\npath = {db}\n[backup]\ndirectory = {db}\n")
    r = subprocess.run([os.environ.get("SQLVIGIL", "build/src/sqlvigil"), "--check-config", "--config", conf],
                       capture_output=True, text=True)
    check(r.returncode == 78 and "[backup] directory" in r.stderr and "database" in r.stderr,
          f"backup directory = the database: exit {r.returncode}: {r.stderr}")

    missing = os.path.join(tmp, "nowhere")
    d, notify, sock, _ = start(tmp, db, backup_dir=missing, name="m")
    try:
        rc, rep, err = ctl_json(sock, "backup")
        check(rc == 1 and not rep["ok"] and missing in rep["error"] and "No such file" in rep["error"],
              f"missing directory: {rc} {rep}")
        wait_until(lambda: ctl_json(sock, "health")[1]["health"]["code"] == "backup-failed", 10,
                   "health backup-failed")
        check(not os.path.exists(missing), "sqlvigil created the missing directory")
        # It appears: the next backup works and health recovers.
        os.makedirs(missing)
        rc, rep, err = ctl_json(sock, "backup")
        check(rc == 0 and rep["ok"], f"after mkdir: {rep}")
        wait_until(lambda: ctl_json(sock, "health")[1]["health"]["state"] == "ok", 10, "health ok again")
        stop(d, notify)
    finally:
        d.kill()

    if os.geteuid() != 0:
        raise Skip("the read-only and full directories need root (a tmpfs mount)")
    small = os.path.join(tmp, "small")
    os.makedirs(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small], check=True)
    try:
        d, notify, sock, _ = start(tmp, db, backup_dir=small, name="s")
        try:
            rc, rep, err = ctl_json(sock, "backup")
            check(rc == 0 and rep["ok"], f"first backup into 1 MiB: {rep}")
            good = backups_in(small)
            check(len(good) == 1, f"backups: {good}")
            # Now the database grows past what the tmpfs can hold.
            con = sqlite3.connect(db, isolation_level=None)
            con.execute("INSERT INTO t(v) SELECT hex(randomblob(300)) FROM t")
            con.close()
            rc, rep, err = ctl_json(sock, "backup")
            # Refused before copying: the estimate does not fit.
            check(rc == 1 and not rep["ok"] and "no room for a backup" in rep["error"] and small in rep["error"]
                  and "needed" in rep["error"], f"full directory: {rep}")
            check(backups_in(small) == good, "the earlier backup changed")
            for name in os.listdir(small):
                check(not name.endswith(".tmp"), f"left behind: {name}")
            check_backup(small, next(iter(good)), next(iter(good.values())))
            stop(d, notify)
        finally:
            d.kill()
        # Read-only: room enough (another file system), but no writing.
        rofs = os.path.join(tmp, "rofs")
        os.makedirs(rofs)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", rofs], check=True)
        d, notify, sock, _ = start(tmp, db, backup_dir=rofs, name="r")
        try:
            rc, rep, err = ctl_json(sock, "backup")
            check(rc == 0 and rep["ok"], f"a backup before the remount: {rep}")
            good = backups_in(rofs)
            subprocess.run(["mount", "-o", "remount,ro", rofs], check=True)
            rc, rep, err = ctl_json(sock, "backup")
            check(rc == 1 and "Read-only" in rep["error"] and rofs in rep["error"], f"read-only directory: {rep}")
            check(ctl_json(sock, "health")[1]["health"]["code"] == "backup-failed", "health")
            check(backups_in(rofs) == good, "the earlier backup changed")
            check_backup(rofs, next(iter(good)), next(iter(good.values())))
            stop(d, notify)
        finally:
            d.kill()
    finally:
        subprocess.run(["umount", "-l", small])
        if os.path.ismount(os.path.join(tmp, "rofs")):
            subprocess.run(["umount", "-l", os.path.join(tmp, "rofs")])
    check(integrity(db) == ["ok"], "the database is corrupt")


def case_backup_newer_sqlite(tmp):
    """A database with an index on jsonb_extract() (SQLite 3.45; this SQLite
    cannot run integrity_check on it, quick_check it can): the backup is
    still taken and checked, with quick_check, and says why."""
    db = os.path.join(tmp, "n.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, doc TEXT)")
    con.executemany("INSERT INTO t(doc) VALUES (?)", ((json.dumps({"a": i}),) for i in range(200)))
    con.execute("CREATE INDEX t_a ON t(json_extract(doc, '$.a'))")
    # What a newer SQLite leaves: the same index on jsonb_extract().
    con.execute("PRAGMA writable_schema=ON")
    con.execute("UPDATE sqlite_schema SET sql = 'CREATE INDEX t_a ON t(jsonb_extract(doc, ''$.a''))' "
                "WHERE name = 't_a'")
    con.execute("PRAGMA writable_schema=OFF")
    con.close()
    try:
        query(db, "PRAGMA integrity_check")
        raise Skip("this SQLite knows jsonb_extract(): nothing to test")
    except sqlite3.Error as e:
        check("jsonb_extract" in str(e), f"the fixture: {e}")
    d, notify, sock, bdir = start(tmp, db)
    try:
        rc, rep, err = ctl_json(sock, "backup")
        check(rc == 0 and rep["ok"], f"backup of a newer SQLite's database: {rep} {err}")
        check(rep["backup"]["check"] == "quick", f"check {rep['backup']['check']}")
        check("integrity_check cannot run" in rep["backup"]["summary"] and "jsonb_extract" in rep["backup"]["summary"],
              f"summary: {rep['backup']['summary']}")
        base = os.path.basename(rep["backup"]["path"])[:-3]
        m = backups_in(bdir)[base]
        check(m["check"] == "quick" and m["check_result"] == "ok", f"manifest: {m}")
        check(ctl_json(sock, "health")[1]["health"]["code"] != "backup-failed", "health says the backup failed")
        stop(d, notify)
    finally:
        d.kill()


def case_backup_stale(tmp):
    """No backup after max_age of running is degraded (backup-stale); a
    backup clears it; it comes back when that backup ages past max_age."""
    db = os.path.join(tmp, "a.db")
    make_db(db, rows=10)
    d, notify, sock, bdir = start(tmp, db, "interval = 1d\nmax_age = 2s\n")
    try:
        health = lambda: ctl_json(sock, "health")[1]["health"]  # noqa: E731
        check(health()["state"] == "ok", "not ok at start")
        wait_until(lambda: health()["code"] == "backup-stale", 15, "backup-stale without a backup")
        check("no backup" in health()["reason"], health()["reason"])
        check(any("no backup after" in f.get("STATUS", "") for _, f in notify.snapshot()), "STATUS= did not say so")
        rc, rep, _ = ctl_json(sock, "backup")
        check(rc == 0, f"backup: {rep}")
        wait_until(lambda: health()["state"] == "ok", 10, "ok after a backup")
        st = ctl("-s", sock, "status").stdout
        check("backups     1 in " in st, f"status lacks the backups line:\n{st}")
        wait_until(lambda: health()["code"] == "backup-stale", 15, "stale again after max_age")
        check("the newest backup" in health()["reason"], health()["reason"])
        stop(d, notify)
    finally:
        d.kill()


def make_other(path, rows, marker):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE TABLE marker(what TEXT)")
    con.execute("INSERT INTO marker VALUES (?)", (marker,))
    con.execute("BEGIN")
    con.executemany("INSERT INTO t(v) VALUES (?)", ((f"{marker} {i}",) for i in range(rows)))
    con.execute("COMMIT")
    con.close()


READER_APP = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
for line in sys.stdin:
    line = line.strip()
    try:
        if line == "quit":
            break
        if line.startswith("write "):
            con.execute("INSERT INTO t(v) VALUES (?)", (line[6:],))
            print("ok", flush=True)
        else:
            print(repr(con.execute(line).fetchall()), flush=True)
    except Exception as e:
        print("error " + str(e), flush=True)
"""


def case_restore_live(tmp):
    """restore FILE with an application connected: it keeps its connection
    and then reads FILE's content; the content before is in the safety
    backup; integrity_check ok; sqlvigilctl backups lists the safety backup."""
    db = os.path.join(tmp, "live.db")
    make_other(db, 3000, "old")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.close()
    other = os.path.join(tmp, "other.db")
    make_other(other, 500, "new")
    d, notify, sock, bdir = start(tmp, db)
    app = subprocess.Popen([PYTHON, "-c", READER_APP, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def app_do(line):
        app.stdin.write(line + "\n")
        app.stdin.flush()
        return app.stdout.readline().strip()
    try:
        check(app_do("SELECT what FROM marker") == "[('old',)]", "the application does not see the old content")
        check(app_do("write before") == "ok", "the application cannot write")
        rc, rep, err = ctl_json(sock, "restore", other)
        check(rc == 0 and rep["ok"] and rep["restore"]["changed"], f"restore: {rc} {rep} {err}")
        safety = rep["restore"]["safety_backup"]
        check(safety and safety.startswith(bdir), f"safety backup {safety}")
        # The application's next statements read the new content.
        check(app_do("SELECT what FROM marker") == "[('new',)]", "the application still sees the old content")
        check(app_do("SELECT count(*) FROM t") == "[(500,)]", "the application's row count")
        check(app_do("write after") == "ok", "the application cannot write after the restore")
        check(integrity(db) == ["ok"], "the restored database is corrupt")
        check(query(db, "SELECT count(*) FROM t")[0][0] == 501, "rows after the restore")
        # The safety backup holds the content from before, with the
        # application's last write.
        con = sqlite3.connect(f"file:{safety}?mode=ro&immutable=1", uri=True)
        check(con.execute("SELECT what FROM marker").fetchall() == [("old",)], "safety backup marker")
        check(con.execute("SELECT count(*) FROM t").fetchone()[0] == 3001, "safety backup rows")
        con.close()
        base = os.path.basename(safety)[:-3]
        m = backups_in(bdir)[base]
        check(m["trigger"] == "restore", f"safety backup trigger {m['trigger']}")
        check_backup(bdir, base, m)
        _, listing, _ = ctl_json(sock, "backups")
        check(any(e["file"] == base + ".db" and e["trigger"] == "restore" for e in listing["backups"]),
              "backups does not list the safety backup")
        check(not os.path.exists(db + "-sqlvigil-restore.tmp"), "the private copy was left behind")
        out = ctl("-s", sock, "restore", other)
        check(out.returncode == 0 and "the content before is in" in out.stdout, f"restore output: {out.stdout!r}")
        d.wait_log("restore: .* now holds the content of")
        stop(d, notify)
    finally:
        app.kill()
        d.kill()


def case_restore_refused(tmp):
    """Files that must not go in are refused with the reason, exit status 1,
    and the live database is unchanged: flipped bytes, not a database, empty,
    another page size, the live database itself, a directory, a FIFO (no
    hang), and a WAL database whose commits are still in its -wal (the file
    alone is older than what its programs see)."""
    db = os.path.join(tmp, "r.db")
    make_db(db, rows=300)
    content = db_content(db)
    good = os.path.join(tmp, "good.db")
    make_other(good, 200, "good")
    flipped = os.path.join(tmp, "flipped.db")
    shutil.copy(good, flipped)
    with open(flipped, "r+b") as f:
        # Page 2 (the table's root): its b-tree page header.
        f.seek(4096)
        f.write(b"\xde\xad\xbe\xef" * 4)
    notdb = os.path.join(tmp, "notes.txt")
    with open(notdb, "w") as f:
        f.write("hello\n" * 500)
    empty = os.path.join(tmp, "empty.db")
    open(empty, "w").close()
    bigpage = os.path.join(tmp, "bigpage.db")
    con = sqlite3.connect(bigpage, isolation_level=None)
    con.execute("PRAGMA page_size = 8192")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    con.close()
    fifo = os.path.join(tmp, "pipe.db")
    os.mkfifo(fifo)
    # A WAL database with 100 rows in its -wal only, its program still
    # attached (so the -wal stays).
    pending = os.path.join(tmp, "pending.db")
    make_other(pending, 5, "pending")
    holder = subprocess.Popen([PYTHON, "-c", (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA journal_mode=wal'); c.execute('PRAGMA wal_autocheckpoint=0')\n"
        "c.execute('BEGIN'); c.executemany('INSERT INTO marker VALUES (?)', [('wal',)] * 100); c.execute('COMMIT')\n"
        "print('ready', flush=True); sys.stdin.read()\n"), pending],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    check(holder.stdout.readline().strip() == "ready", "the program holding pending.db did not start")
    check(os.path.getsize(pending + "-wal") > 0, "pending.db-wal is empty")
    pending_link = os.path.join(tmp, "link.db")
    os.symlink(pending, pending_link)
    d, notify, sock, bdir = start(tmp, db)
    try:
        # One of sqlvigil's own backups with one byte of a row flipped:
        # integrity_check cannot see it, its manifest's SHA-256 does.
        rc, rep, _ = ctl_json(sock, "backup")
        check(rc == 0, f"backup: {rep}")
        made = rep["backup"]["path"]
        os.makedirs(os.path.join(tmp, "copied"))
        tampered = os.path.join(tmp, "copied", os.path.basename(made))
        shutil.copy(made, tampered)
        shutil.copy(made[:-3] + ".json", tampered[:-3] + ".json")
        with open(tampered, "r+b") as f:
            data = f.read()
            at = data.rindex(b"row 1")
            f.seek(at)
            f.write(b"ROW 1")
        check(integrity(tampered) == ["ok"], "the tampered copy should pass integrity_check")
        # The same backup, whole, but its manifest names another database
        # (another instance's backup directory).
        os.makedirs(os.path.join(tmp, "app2"))
        foreign = os.path.join(tmp, "app2", os.path.basename(made))
        shutil.copy(made, foreign)
        with open(made[:-3] + ".json") as f:
            manifest = json.load(f)
        check(manifest.get("source") == db, f"the manifest's source: {manifest.get('source')!r}")
        manifest["source"] = "/var/lib/app2/app2.db"
        with open(foreign[:-3] + ".json", "w") as f:
            json.dump(manifest, f)
        # And with its manifest cut short of its source: it cannot vouch.
        os.makedirs(os.path.join(tmp, "cut"))
        cut = os.path.join(tmp, "cut", os.path.basename(made))
        shutil.copy(tampered, cut)
        del manifest["source"]
        with open(cut[:-3] + ".json", "w") as f:
            json.dump(manifest, f)
        cases = [
            (tampered, ("not the file its manifest describes",)),
            (foreign, (f"its manifest says it is a backup of /var/lib/app2/app2.db, not of {db}",)),
            (cut, ("its manifest (the .json beside it) is sqlvigil's but cannot be read whole",)),
            (flipped, ("integrity_check", "malformed", "corrupt")),
            (notdb, ("not an SQLite database",)),
            (empty, ("not an SQLite database",)),
            (bigpage, ("page size is 8192",)),
            (db, ("live database itself",)),
            # Descriptors of the files SQLite holds locks on: sqlvigil
            # must not close them (that would drop its locks).
            (db + "-shm", ("not an SQLite database",)),
            (db + "-wal", ("not an SQLite database",)),
            (tmp, ("not a regular file", "Is a directory")),
            (fifo, ("is not a regular file",)),
            (pending, (f"{pending}-wal holds", "Checkpoint them into it first")),
            # A link to it: the -wal is beside the file, not beside the link.
            (pending_link, (f"{pending}-wal holds",)),
        ]
        by_daemon = 0
        for path, words in cases:
            r = ctl("-s", sock, "restore", path, timeout=60)
            check(r.returncode == 1, f"restore {path}: exit {r.returncode}: {r.stdout} {r.stderr}")
            check(any(w in r.stderr for w in words), f"restore {path}: reason {r.stderr!r}, expected one of {words}")
            check(db_content(db) == content, f"restore {path} changed the database")
            # The daemon's refusals name the file, not the socket.
            by_daemon += r.stderr.startswith(f"sqlvigilctl: restore {path}: ")
        check(integrity(db) == ["ok"], "the database is corrupt")
        # sqlvigil still holds its locks: an application that opens and
        # closes the database does not take itself for the last connection
        # (which would checkpoint and delete the -wal and -shm).
        shm_before = os.stat(db + "-shm").st_ino
        con = sqlite3.connect(db)
        con.execute("SELECT count(*) FROM t").fetchone()
        con.close()
        check(os.path.exists(db + "-shm") and os.stat(db + "-shm").st_ino == shm_before,
              "the -shm was deleted when an application closed: sqlvigil lost its locks")
        check(ctl_json(sock, "health")[1]["health"]["state"] == "ok", "health after the refusals")
        check(not os.path.exists(db + "-sqlvigil-restore.tmp"), "the private copy was left behind")
        check(by_daemon >= len(cases) - 5, f"only {by_daemon} of {len(cases)} refusals came from the daemon")
        check(sum(1 for l in d.log() if "refused" in l and "restore of" in l) == by_daemon,
              f"not one restore-refused entry per refusal of the daemon ({by_daemon}):\n" + d.dump())
        # The refused ones took no safety backup (all were refused before).
        check(set(backups_in(bdir)) == {os.path.basename(made)[:-3]},
              f"refused restores made backups: {sorted(backups_in(bdir))}")
        # A request without a descriptor is refused by the daemon itself.
        import socket as s_
        so = s_.socket(s_.AF_UNIX, s_.SOCK_STREAM)
        so.connect(sock)
        so.sendall(b"restore\n")
        reply = json.loads(so.makefile().readline())
        so.close()
        check(not reply["ok"] and reply["code"] == "bad-request", f"restore without a file: {reply}")
        stop(d, notify)
    finally:
        d.kill()
        holder.kill()
        holder.wait()


LISTENER = r"""
import array, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
fds = array.array("i")
data, anc, _, _ = c.recvmsg(4096, socket.CMSG_SPACE(2 * fds.itemsize))
for level, kind, payload in anc:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
c.sendall(b'{"ok":true,"restore":{"result":"ok"}}\n')
print("fds", len(fds), flush=True)
"""


def case_restore_permissions(tmp):
    """backup and restore are admin commands; an admin_group member can
    restore only a file they can read themselves. sqlvigilctl hands the
    file only to a listener that is root or owns the socket's directory,
    which nobody else can write: not to another user's socket in a shared
    directory such as /tmp."""
    if os.geteuid() != 0:
        raise Skip("needs root to run sqlvigilctl as other users")
    group = "sqlvigil-test-admins"
    user = "sqlvigil-test-admin"
    subprocess.run(["groupadd", "-f", group], check=True)
    if subprocess.run(["id", user], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "-G", group, user], check=True)
    try:
        db = os.path.join(tmp, "p.db")
        make_db(db, rows=50)
        content = db_content(db)
        os.chmod(tmp, 0o755)
        secret = os.path.join(tmp, "secret.db")
        make_other(secret, 10, "secret")
        os.chmod(secret, 0o600)
        readable = os.path.join(tmp, "readable.db")
        make_other(readable, 20, "readable")
        os.chmod(readable, 0o644)
        d, notify, sock, bdir = start(tmp, db, f"[control]\nadmin_group = {group}\n", name="p")
        try:
            nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
            r = ctl("-s", sock, "backup", user=nobody)
            check(r.returncode == 4 and "permission denied" in r.stderr, f"backup as nobody: {r.returncode} {r.stderr}")
            r = ctl("-s", sock, "restore", readable, user=nobody)
            check(r.returncode == 4 and "permission denied" in r.stderr, f"restore as nobody: {r.returncode} {r.stderr}")
            check(db_content(db) == content, "a refused restore changed the database")
            admin = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
            r = ctl("-s", sock, "restore", secret, user=admin)
            check(r.returncode == 4 and "Permission denied" in r.stderr,
                  f"restore of an unreadable file by an admin: {r.returncode} {r.stderr}")
            check(db_content(db) == content, "an unreadable file was restored")
            r = ctl("-s", sock, "restore", readable, user=admin)
            check(r.returncode == 0, f"restore by an admin_group member: {r.returncode} {r.stderr}")
            check(query(db, "SELECT what FROM marker") == [("readable",)], "not restored")
            r = ctl("-s", sock, "backups", user=nobody)
            check(r.returncode == 0, f"backups (read-only) as nobody: {r.returncode} {r.stderr}")
            # nobody listens in a directory everyone may write (like /tmp).
            shared = os.path.join(tmp, "shared")
            os.mkdir(shared)
            os.chmod(shared, 0o1777)
            # And in a directory of its own, made there (mode 0755, its
            # owner): the directory above is still anyone's.
            subprocess.run(nobody + ["mkdir", "-m", "755", os.path.join(shared, "own")], check=True)
            for fake in (os.path.join(shared, "ctl.sock"), os.path.join(shared, "own", "ctl.sock")):
                listener = subprocess.Popen(nobody + [PYTHON, "-c", LISTENER, fake], stdout=subprocess.PIPE, text=True)
                try:
                    check(listener.stdout.readline().strip() == "ready", "the listener did not start")
                    r = ctl("-s", fake, "restore", secret, timeout=30)
                    check(r.returncode == 4 and "not handing the file" in r.stderr and fake in r.stderr
                          and "is writable by others" in r.stderr,
                          f"restore through another user's socket {fake}: {r.returncode} {r.stdout!r} {r.stderr!r}")
                    got = listener.communicate(timeout=30)[0].strip()
                    check(got in ("", "fds 0"), f"the listener at {fake} received: {got!r}")
                finally:
                    listener.kill()
                    listener.wait()
            stop(d, notify)
        finally:
            d.kill()
    finally:
        subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


def case_kill_during_backup(tmp):
    """kill -9 at random points of backups: no finished-looking backup is
    ever partial; the next start cleans the leftovers; the database is
    intact and holds every commit."""
    db = os.path.join(tmp, "kb.db")
    make_db(db)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN")
    con.executemany("INSERT INTO t(v) VALUES (?)", ((os.urandom(400).hex(),) for _ in range(40000)))
    con.execute("COMMIT")
    con.close()
    rows = query(db, "SELECT count(*) FROM t")[0][0]
    bdir = os.path.join(tmp, "backups")
    os.makedirs(bdir)
    seed = int(os.environ.get("SQLVIGIL_TEST_SEED", time.time_ns() % 100000))
    rng = random.Random(seed)
    print(f"seed {seed}", flush=True)
    killed_mid = 0
    d, notify, sock, _ = start(tmp, db, "keep_last = 1000\n", name="timing", backup_dir=bdir)
    try:
        began = time.monotonic()
        check(ctl("-s", sock, "backup").returncode == 0, "the timing backup failed")
        took = time.monotonic() - began
        stop(d, notify)
    finally:
        d.kill()
    print(f"a backup takes {took:.2f}s here", flush=True)
    for trial in range(20):
        d, notify, sock, _ = start(tmp, db, "keep_last = 1000\n", name=f"k{trial}", backup_dir=bdir)
        try:
            query(db, "INSERT INTO t(v) VALUES (?)", f"trial {trial}")
            rows += 1
            p = subprocess.Popen([CTL, "-s", sock, "backup"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, 1.2 * took))
            d.signal(signal.SIGKILL)
            d.wait_exit(30)
            p.wait(30)
            notify.close()
            if any(n.endswith(".tmp") for n in os.listdir(bdir)):
                killed_mid += 1
        finally:
            d.kill()
        for base, m in backups_in(bdir).items():
            check_backup(bdir, base, m)
        for name in os.listdir(bdir):
            if name.endswith(".db") and not name.startswith("."):
                check(os.path.exists(os.path.join(bdir, name[:-3] + ".json")) or
                      any(n.startswith("." + name[:-3]) and n.endswith(".json.tmp") for n in os.listdir(bdir)),
                      f"trial {trial}: {name} has no manifest (finished or pending)")
        check(integrity(db) == ["ok"], f"trial {trial}: the database is corrupt")
        check(query(db, "SELECT count(*) FROM t")[0][0] == rows, f"trial {trial}: rows lost")
    # A last start cleans every leftover.
    d, notify, sock, _ = start(tmp, db, name="final", backup_dir=bdir)
    try:
        wait_until(lambda: not any(n.startswith(".") and n.endswith(".tmp") for n in os.listdir(bdir)), 20,
                   f"leftovers cleaned: {sorted(os.listdir(bdir))}")
        for base, m in backups_in(bdir).items():
            check_backup(bdir, base, m)
        stop(d, notify)
    finally:
        d.kill()
    print(f"{killed_mid} of 20 kills left temporary files (killed mid-copy); seed {seed}", flush=True)
    check(killed_mid >= 3, f"only {killed_mid} kills hit a backup in progress; the trials prove little")


def case_kill_during_restore(tmp):
    """kill -9 at random points of restores: the live database holds the old
    content or the restored one, whole, never a mix; integrity ok."""
    db = os.path.join(tmp, "kr.db")
    src = os.path.join(tmp, "src.db")
    for path, marker in ((db, "old"), (src, "new")):
        con = sqlite3.connect(path, isolation_level=None)
        if path == db:
            con.execute("PRAGMA journal_mode=wal")
        con.execute("CREATE TABLE marker(what TEXT)")
        con.execute("INSERT INTO marker VALUES (?)", (marker,))
        con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, m TEXT)")
        con.execute("BEGIN")
        con.executemany("INSERT INTO t(v, m) VALUES (?, ?)",
                        ((os.urandom(300).hex(), marker) for _ in range(30000 if marker == "new" else 20000)))
        con.execute("COMMIT")
        con.close()
    expected = {"old": 20000, "new": 30000}
    seed = int(os.environ.get("SQLVIGIL_TEST_SEED", time.time_ns() % 100000))
    rng = random.Random(seed)
    print(f"seed {seed}", flush=True)
    outcomes = {"old": 0, "new": 0}

    def back_to_old():
        if query(db, "SELECT what FROM marker")[0][0] == "new":
            con = sqlite3.connect(db, isolation_level=None)
            con.execute("DELETE FROM t")
            con.execute("UPDATE marker SET what = 'old'")
            con.execute("INSERT INTO t(v, m) SELECT hex(randomblob(300)), 'old' FROM "
                        "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) "
                        "SELECT x FROM c)")
            con.close()

    # How long a whole restore takes here, from the state every trial
    # starts from (a sanitizer build is several times slower): the kills are
    # spread over that, and a little beyond.
    took = 0.0
    for calibration in range(2):
        back_to_old()
        d, notify, sock, bdir = start(tmp, db, "keep_last = 1\n", name=f"timing{calibration}")
        try:
            began = time.monotonic()
            r = ctl("-s", sock, "restore", src)
            took = max(took, time.monotonic() - began)
            check(r.returncode == 0, f"the timing restore failed: {r.stderr}")
            stop(d, notify)
        finally:
            d.kill()
    print(f"a restore takes {took:.2f}s here", flush=True)
    for trial in range(20):
        back_to_old()
        d, notify, sock, bdir = start(tmp, db, "keep_last = 1\n", name=f"r{trial}")
        try:
            p = subprocess.Popen([CTL, "-s", sock, "restore", src], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, 2.0 * took))
            d.signal(signal.SIGKILL)
            d.wait_exit(30)
            p.wait(30)
            notify.close()
        finally:
            d.kill()
        check(integrity(db) == ["ok"], f"trial {trial}: corrupt after kill -9")
        (marker,) = query(db, "SELECT what FROM marker")[0]
        counts = dict(query(db, "SELECT m, count(*) FROM t GROUP BY m"))
        check(counts == {marker: expected[marker]}, f"trial {trial}: marker {marker} with rows {counts}: a mix")
        outcomes[marker] += 1
    # The next start removes the private copy a kill left.
    d, notify, sock, bdir = start(tmp, db, name="after")
    try:
        check(not os.path.exists(db + "-sqlvigil-restore.tmp"), "the private copy of a killed restore is still there")
        stop(d, notify)
    finally:
        d.kill()
    print(f"outcomes {outcomes}; seed {seed}", flush=True)
    check(outcomes["old"] > 0 and outcomes["new"] > 0, f"the kills all fell on one side: {outcomes}")


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    run(CASES)
