#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How fast sqlvigil notices a file fault: the time from the file
operation (taken just before the syscall) to the file-fault journal entry
and to STOPPING=1 on the notify socket (for a read-only file system, which
stops nothing, to the health entry). Not a test: it prints figures.

    tests/bench/fault_latency.py --build build [--reps 10] [--only NAME ...]

The daemon runs as in tests/integration/test_safety.py (its Vigil: emulated
systemd, journald caught in a mount namespace; so as root, or with user
namespaces), with the default [health] interval (half the watchdog period;
the watchdog here is 2 s, so 1 s). The faults inotify sees should be
noticed in milliseconds; the others within about one health interval (a cp
over the -wal: two, since the header check wants two readings in a row)."""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="the meson build directory")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--only", nargs="*", help="fault names to run")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["SQLVIGIL"] = os.path.join(build, "src", "sqlvigil")
    os.environ["SQLVIGILCTL"] = os.path.join(build, "src", "sqlvigilctl")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "integration"))
    import test_safety as ts  # noqa: E402  (reads $SQLVIGIL at import)

    def conf():
        # Defaults, but for what would add noise: no scheduled maintenance.
        return ("[health]\nquick_check_interval = 0\n[vacuum]\ninterval = 0\n[analyze]\ninterval = 0\n"
                "[checkpoint]\ninterval = 1h\nstop_timeout = 2s\n")

    def setup(tmp, work):
        # The notify and journal sockets stay in tmp: work may be moved.
        db = os.path.join(work, "x.db")
        ts.make_db(db, "seed", 100)
        v, _ = ts.start(tmp, db, conf())
        ts.write_rows(db, "old", 200)
        return db, v

    def rename_over(tmp, db):
        new = ts.new_database(tmp, "new.db", "new", 3)
        t0 = time.monotonic()
        os.rename(new, db)
        return t0

    def rename_away(tmp, db):
        t0 = time.monotonic()
        os.rename(db, os.path.join(tmp, "away.db"))
        return t0

    def delete_db(tmp, db):
        t0 = time.monotonic()
        os.unlink(db)
        return t0

    def delete_wal(tmp, db):
        t0 = time.monotonic()
        os.unlink(db + "-wal")
        return t0

    def foreign_wal(tmp, db):
        other = os.path.join(tmp, "o.db")
        ts.make_db(other, "seed", 0)
        h = ts.App(other)
        h.cmd("insert f 50")
        shutil.copyfile(other + "-wal", os.path.join(tmp, "f-wal"))
        h.quit()
        t0 = time.monotonic()
        os.rename(os.path.join(tmp, "f-wal"), db + "-wal")
        return t0

    def directory(tmp, db):
        t0 = time.monotonic()
        os.rename(os.path.dirname(db), os.path.dirname(db) + ".moved")
        return t0

    def cp_over(tmp, db):
        older = os.path.join(tmp, "older.db")
        ts.make_db(older, "seed", 1)
        app = ts.App(db)
        app.cmd("insert more 3000")
        app.cmd("checkpoint")
        app.cmd("insert wal 500")
        app.quit()
        t0 = time.monotonic()
        subprocess.run(["cp", older, db], check=True)
        return t0

    def cp_over_wal(tmp, db):
        other = os.path.join(tmp, "o.db")
        ts.make_db(other, "seed", 0)
        h = ts.App(other)
        h.cmd("insert f 50")
        shutil.copyfile(other + "-wal", os.path.join(tmp, "f-wal"))
        h.quit()
        # The application's close in setup() armed a fresh look 200 ms
        # later (and none for 5 s after it): let it pass, so that what
        # notices the cp is the header check of the health rounds.
        time.sleep(0.5)
        t0 = time.monotonic()
        subprocess.run(["cp", os.path.join(tmp, "f-wal"), db + "-wal"], check=True)
        return t0

    faults = [("rename over the database", "inotify", rename_over, True),
              ("database renamed away", "inotify", rename_away, True),
              ("database deleted", "inotify", delete_db, True),
              ("-wal deleted", "inotify", delete_wal, False),
              ("foreign -wal renamed in", "inotify", foreign_wal, False),
              ("directory renamed", "inotify", directory, True),
              ("cp over the database", "inotify, then a fresh look after 200 ms", cp_over, False),
              ("cp over the -wal", "health rounds (two readings)", cp_over_wal, False)]
    results = []
    for name, how, op, subdir in faults:
        if a.only and name not in a.only:
            continue
        to_fault, to_stop = [], []
        for _ in range(a.reps):
            tmp = tempfile.mkdtemp(prefix="sqlvigil-latency-")
            work = os.path.join(tmp, "d") if subdir else tmp
            os.makedirs(work, exist_ok=True)
            db, v = setup(tmp, work)
            try:
                t0 = op(work, db)
                tf, _ = v.journal.wait("file-fault", after=t0, MESSAGE_ID=ts.MSG_FILE_FAULT)
                ts_, _ = v.notify.wait_for("STOPPING", "1", after=t0, timeout=20)
                v.wait_exit(60)
            finally:
                v.close()
            to_fault.append((tf - t0) * 1000)
            to_stop.append((ts_ - t0) * 1000)
            shutil.rmtree(tmp, ignore_errors=True)
        results.append((name, how, to_fault, to_stop))
        print(f"{name}: file-fault {fmt(to_fault)}; STOPPING=1 {fmt(to_stop)}", flush=True)
    ro = read_only(ts, a.reps) if not a.only or "read-only" in a.only else None
    if ro:
        results.append(("file system read-only", "write probe every health round", ro, []))
        print(f"file system read-only: health entry {fmt(ro)}", flush=True)
    print("\n| fault | noticed by | file-fault entry (ms): median, max | STOPPING=1 (ms): median, max |")
    print("|---|---|---|---|")
    for name, how, f, s in results:
        print(f"| {name} | {how} | {statistics.median(f):.1f}, {max(f):.1f} | "
              + (f"{statistics.median(s):.1f}, {max(s):.1f} |" if s else "(health entry; nothing stops) |"))


def fmt(xs):
    return f"median {statistics.median(xs):.1f} ms, min {min(xs):.1f}, max {max(xs):.1f} (n={len(xs)})"


def read_only(ts, reps):
    """ext4 on a loop device, errors=remount-ro, an error triggered: to the
    health entry (reason read-only). Root only."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        print("file system read-only: skipped (needs root and losetup)")
        return None
    out = []
    for _ in range(reps):
        tmp = tempfile.mkdtemp(prefix="sqlvigil-latency-ro-")
        img, mnt = os.path.join(tmp, "fs.img"), os.path.join(tmp, "mnt")
        os.mkdir(mnt)
        with open(img, "wb") as f:
            f.truncate(64 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
        dev = subprocess.run(["losetup", "--find", "--show", img], capture_output=True, text=True,
                             check=True).stdout.strip()
        v = None
        try:
            subprocess.run(["mount", "-o", "errors=remount-ro", dev, mnt], check=True)
            db = os.path.join(mnt, "x.db")
            ts.make_db(db, "seed", 100)
            v, _ = ts.start(tmp, db, "[health]\nquick_check_interval = 0\n")
            t0 = time.monotonic()
            with open(f"/sys/fs/ext4/{os.path.basename(dev)}/trigger_fs_error", "w") as f:
                f.write("latency\n")
            t, _ = v.journal.wait("health failed", after=t0, MESSAGE_ID=ts.MSG_HEALTH, SQLVIGIL_HEALTH="failed")
            out.append((t - t0) * 1000)
        finally:
            if v:
                v.close()
            subprocess.run(["umount", "-l", mnt], capture_output=True)
            subprocess.run(["losetup", "-d", dev], capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
