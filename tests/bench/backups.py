# SPDX-License-Identifier: MIT
"""B10 and B11 (issue 14): backups and restore under load.

B10: back up 256 MiB and 1 GiB databases while a writer commits every 3 ms:
`sqlvigilctl backup` against `sqlite3 DB ".backup FILE"` and `sqlite3 DB
"VACUUM INTO 'FILE'"`, in the same run, on the same live database, with
sqlvigil supervising it throughout: copy times, the writer's stalls, the
WAL's growth during each copy and how long it takes to come back.

B11: `sqlvigilctl restore FILE` of a 256 MiB file into the live database
while an application reads and writes, against the documented way with
everything stopped (docs/operations.md, section 10): stop the application
and sqlvigil, put the file in place, start both again.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import lib
from lib import MiB
from locks import fmt_ms, load_line, window, yes

QUIET = """
[health]
quick_check_interval = 0
[analyze]
interval = 0
[vacuum]
interval = 0
"""

# The WAL size sqlvigil keeps at its defaults (B2's target, 8 MiB).
WAL_BOUND = 8 * MiB


def dense_db(ctx, label, mib):
    """A database of `mib` MiB without free pages (events rows of about
    1000 bytes with an index, 4 KiB pages, WAL), built once per run; cases
    work on copies."""
    key = "dense-" + label
    if key not in ctx.masters:
        path = ctx.path(f"dense-{label}.db")
        ctx.log(f"building the dense {label} database ({mib} MiB)")
        t0 = time.monotonic()
        lib.make_small_db(path, mib)
        info = {"path": path, "bytes": os.path.getsize(path), "total_s": time.monotonic() - t0}
        info.update(lib.db_stats(path))
        ctx.masters[key] = info
        ctx.timings[f"setup dense {label} database"] = info["total_s"]
    return ctx.masters[key]


def run_timed(args, cap):
    """Runs args; returns (exit status or None when killed at the cap,
    wall seconds, CPU seconds, stderr)."""
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = False
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > cap:
            p.send_signal(signal.SIGKILL)
            killed = True
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.01)
    took = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode("utf-8", "replace").strip()
    p.stderr.close()
    return (None if killed else p.returncode), took, ru.ru_utime + ru.ru_stime, err


def wal_content(size, mx):
    """What the WAL holds (its frames since the last reset, from the WAL
    index), bytes; the file's size when there is no WAL index."""
    return size if mx is None else min(size, mx * (4096 + 24))


def wal_back(sampler, t_end, timeout, bound):
    """Waits (up to timeout) until the WAL holds at most bound after t_end
    (its frames since the last reset: the -wal file itself keeps its size
    when it is reused from the start); returns seconds after t_end, or
    None."""
    deadline = t_end + timeout
    while True:
        for t, size, mx in list(sampler.samples):
            if t >= t_end and wal_content(size, mx) <= bound:
                return t - t_end
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def b10_size(ctx, label, mib):
    master = dense_db(ctx, label, mib)
    db = ctx.path(f"b10-{label}.db")
    lib.copy_db(master["path"], db)
    bkdir = ctx.path(f"b10-{label}-backups")
    os.mkdir(bkdir)
    out = ctx.path(f"b10-{label}-out")
    os.mkdir(out)
    res = {"label": label, "mib": mib, "bytes": master["bytes"], "pages": master["pages"], "methods": []}
    name = f"b10-{label}"
    d = lib.Sqlvigil(ctx.tmp, db, f"""
[backup]
directory = {bkdir}
interval = 1d
{QUIET}""", name, control=True)
    w = None
    sampler = lib.WalSampler(db, 0.05)
    wait_after = ctx.p(60, 10)  # one checkpoint interval at the defaults (quick: shorter)
    try:
        w = lib.Writer(db, ctx.datafile(name + ".lat"), interval_us=3000, payload=100, autocheckpoint=0)
        time.sleep(2.0)
        res["wal_before_max"] = sampler.max()

        def after(m, t1):
            m["wal_peak"] = sampler.max(m["t0"], t1 + 0.2)
            m["wal_content_peak"] = max((wal_content(b, mx) for t, b, mx in sampler.samples
                                         if m["t0"] <= t <= t1 + 0.2), default=0)
            m["wal_at_start"] = next((b for t, b, _ in sampler.samples if t >= m["t0"]), 0)
            m["wal_content_start"] = next((wal_content(b, mx) for t, b, mx in sampler.samples if t >= m["t0"]), 0)
            m["wal_back_s"] = wal_back(sampler, t1, wait_after, WAL_BOUND)
            m["wal_file_after"] = lib.file_size(db + "-wal")
            res["methods"].append(m)
            time.sleep(1.0)

        # sqlvigil
        t0 = time.monotonic()
        rc, reply, took, err = d.ctl("backup", timeout=600)
        t1 = time.monotonic()
        m = {"method": "sqlvigil", "t0": t0, "t1": t1, "exit": rc, "seconds": took, "stderr": err}
        b = (reply or {}).get("backup") or {}
        m["reply"] = b
        m["error"] = None if rc == 0 else ((reply or {}).get("error") or err)
        for k in ("copy_usec", "snapshot_usec", "check_usec", "bytes", "pages"):
            m[k] = b.get(k)
        if b.get("path"):
            try:
                with open(b["path"][:-3] + ".json") as f:
                    m["manifest"] = json.load(f)
            except (OSError, ValueError) as e:
                m["manifest"] = {"error": str(e)}
        entry = [f for _, f in d.entries("backup", after=t0)]
        m["entry"] = {k: v for k, v in entry[-1].items() if k.startswith(("SQLVIGIL_", "MESSAGE"))} if entry else None
        after(m, t1)

        # VACUUM INTO (the shell's own connection: synchronous FULL, so the copy is synced)
        target = os.path.join(out, "vacuum-into.db")
        t0 = time.monotonic()
        rc, took, cpu, err = run_timed(["sqlite3", db, f"VACUUM INTO '{target}'"], 600)
        t1 = time.monotonic()
        m = {"method": "vacuum-into", "t0": t0, "t1": t1, "exit": rc, "seconds": took, "cpu_s": cpu,
             "error": None if rc == 0 else err or f"exit {rc}", "bytes": lib.file_size(target)}
        res["vacuum_into_file"] = target
        after(m, t1)

        # .backup: the shell steps the backup API 100 pages at a time without
        # a read snapshot; a commit between steps starts it over.
        cap = ctx.p(min(max(15.0, 5 * m["seconds"]), 30.0), 5.0)
        target = os.path.join(out, "dot-backup.db")
        t0 = time.monotonic()
        rc, took, cpu, err = run_timed(["sqlite3", db, f".backup '{target}'"], cap)
        t1 = time.monotonic()
        m = {"method": "dot-backup", "t0": t0, "t1": t1, "exit": rc, "seconds": took, "cpu_s": cpu, "cap_s": cap,
             "finished": rc == 0, "error": None if rc == 0 else (f"not finished after {cap:.0f} s (killed)"
                                                                 if rc is None else err or f"exit {rc}"),
             "bytes": lib.file_size(target)}
        after(m, t1)

        t_stop = time.monotonic()
        summary = w.stop()
        res["holds"] = lib.holds_by_task(d.stats())
        res["exit"], _ = d.stop()
        d.save_log(ctx.datafile(name + ".log"))
        res["runs"] = [{k: r[k] for k in ("what", "lock_max", "holds", "end", "duration")}
                       for r in lib.lock_runs(d.entries()) if r["holds"]]
    finally:
        sampler.stop()
        if w:
            w.kill()
        d.kill()
    lats = w.latencies()
    res["writer"] = {k: summary[k] for k in ("attempted", "succeeded", "failed", "first_error")}
    for m in res["methods"]:
        m["app"] = window(lats, m["t0"], m["t1"] + 0.5)
        # sqlvigil's holds of the write lock while the copy ran (and just after)
        m["holds_during"] = [r for r in res["runs"] if r["end"] - r["duration"] < m["t1"] + 0.5 and r["end"] > m["t0"]]
    res["before"] = window(lats, lats[0][0], res["methods"][0]["t0"])
    rows = lib.rows_by_writer(db)
    res["rows_ok"] = rows is not None and rows.get(1, (0, 0)) == (summary["succeeded"], summary["succeeded"])
    with open(ctx.datafile(name + ".wal.plot"), "w") as f:
        base = res["methods"][0]["t0"]
        for t, size, mx in sampler.samples:
            if t > t_stop:  # not the moment the last connection closes and the WAL goes
                break
            f.write(f"{t - base:.3f} {size / MiB:.3f} {(mx or 0) * (4096 + 24) / MiB:.3f}\n")
    res["plot"] = ctx.datafile(name + ".wal.plot")
    res["marks"] = [(m["method"], m["t0"] - base, m["t1"] - base) for m in res["methods"]]
    lib.remove_db(db)
    shutil.rmtree(bkdir, ignore_errors=True)
    for m in res["methods"]:
        ctx.log(f"  {label} {m['method']}: {m['seconds']:.2f}s"
                + (f" (copy {m['copy_usec'] / 1e6:.2f}s, check {m['check_usec'] / 1e6:.2f}s)"
                   if m.get("copy_usec") else "")
                + (f", {m['error']}" if m.get("error") else "")
                + f"; writer max {fmt_ms(m['app']['max'])}, {m['app']['failed']} failed; WAL peak "
                f"{m['wal_peak'] / MiB:.1f} MiB, its content back under 8 MiB after "
                + ("never" if m["wal_back_s"] is None else f"{m['wal_back_s']:.1f}s"))
    return res


def b10(ctx):
    sizes = ctx.p([("256M", 256), ("1G", 1024)], [("32M", 32)])
    ctx.log("B10: sqlvigilctl backup vs sqlite3 VACUUM INTO and .backup, writer every 3 ms")
    return {"sizes": [b10_size(ctx, label, mib) for label, mib in sizes], "budget_ms": 20, "bound": WAL_BOUND}


def b10_method(size, name):
    return next((m for m in size["methods"] if m["method"] == name), None)


def b10_sqlvigil_time(m):
    return (m.get("copy_usec") or 0) / 1e6


def b10_summary(b10):
    if "error" in b10:
        return [["B10 backups", "did not run", "", "", ""]]
    rows = []
    limit = 1.5 * b10["budget_ms"] / 1000
    for s in b10["sizes"]:
        sv, vi, db = (b10_method(s, k) for k in ("sqlvigil", "vacuum-into", "dot-backup"))
        alts = [m["seconds"] for m in (vi, db) if m and not m.get("error")]
        best = min(alts) if alts else None
        t = b10_sqlvigil_time(sv)
        ok = not sv.get("error") and best is not None and t <= 1.2 * best
        rows.append([f"B10 {s['label']}: backup time (copy; its check separately)",
                     f"{t:.2f} s (check {(sv.get('check_usec') or 0) / 1e6:.2f} s; `sqlvigilctl backup` "
                     f"{sv['seconds']:.2f} s in all)" if not sv.get("error") else f"failed: {sv['error']}",
                     f"VACUUM INTO {vi['seconds']:.2f} s; .backup "
                     + (f"{db['seconds']:.2f} s" if db["finished"] else db["error"]),
                     "≤ 1.2× the faster", yes(ok) + (f" ({t / best:.2f}×)" if best else "")])
        mx = sv["app"]["max"]
        rows.append([f"B10 {s['label']}: writer max stall during sqlvigil's backup", fmt_ms(mx),
                     f"VACUUM INTO {fmt_ms(vi['app']['max'])}; .backup {fmt_ms(db['app']['max'])}",
                     f"≤ {limit * 1000:.0f} ms", yes(mx is not None and mx <= limit and sv["app"]["failed"] == 0)])
        back = sv["wal_back_s"]
        rows.append([f"B10 {s['label']}: WAL growth during sqlvigil's backup / back under 8 MiB",
                     f"+{max(sv.get('wal_content_peak', 0) - sv.get('wal_content_start', 0), 0) / MiB:.1f} MiB "
                     f"(peak {sv.get('wal_content_peak', 0) / MiB:.1f} MiB) / "
                     + ("not within the wait" if back is None else f"after {back:.1f} s"),
                     f"VACUUM INTO peak {vi.get('wal_content_peak', 0) / MiB:.1f} MiB; .backup "
                     f"{db.get('wal_content_peak', 0) / MiB:.1f} MiB",
                     "back within 1 checkpoint interval", yes(back is not None and back <= 60)])
    return rows


def plot_b10(b10, path):
    from report import gnuplot, gq
    sizes = b10["sizes"]
    lines = [f"set terminal pngcairo size 1100,{340 * len(sizes)} font 'DejaVu Sans,10' noenhanced",
             f"set output '{path}'", f"set multiplot layout {len(sizes)},1", "set grid",
             "set ylabel 'MiB'", "set xlabel " + gq("seconds since sqlvigil's backup began"),
             "set key top right opaque box"]
    colors = {"sqlvigil": "#1f77b4", "vacuum-into": "#2ca02c", "dot-backup": "#d62728"}
    for s in sizes:
        lines.append("set title " + gq(f"B10 {s['label']}: the WAL during the copies (writer every 3 ms); shaded: "
                                       "sqlvigil's backup (blue), VACUUM INTO (green), .backup (red)"))
        objs = []
        for i, (name, a, b) in enumerate(s["marks"], 1):
            objs.append(f"set object {i} rect from {a:.2f}, graph 0 to {b:.2f}, graph 1 fc rgb "
                        f"'{colors.get(name, '#999999')}' fs transparent solid 0.15 noborder")
        lines += objs
        lines.append(f"plot '{s['plot']}' using 1:2 with lines lw 2 lc rgb '#000000' title '-wal file size', "
                     f"'{s['plot']}' using 1:3 with lines lw 1 lc rgb '#ff7f0e' title 'WAL content (frames x 4120 B)', "
                     "8 with lines dt 3 lc rgb '#555555' title '8 MiB'")
        lines.append("unset object")
    lines.append("unset multiplot")
    return gnuplot("\n".join(lines) + "\n", path)


def b10_section(ctx, b10, out):
    if "error" in b10:
        return f"## B10 backups\n\nDid not run: `{b10['error']}`\n"
    md = ["## B10 backups under a writer\n", load_line(ctx, "B10")]
    md.append(
        "A database without free pages (`events` rows of about 1000 bytes with an index, 4 KiB pages, WAL) and "
        "one application writer (`sqlvigil-loadgen writer`, a 100-byte INSERT every 3 ms, `busy_timeout=5000`, "
        "`wal_autocheckpoint=0`: the WAL is sqlvigil's to keep short). sqlvigil supervises it at its defaults "
        "with `[backup] directory` set. On the same live database, one after the other, a second apart: "
        "`sqlvigilctl backup` (the figures from its reply, the same as in its journal entry and manifest: "
        "`copy_usec` from the first step to the sync, `snapshot_usec` how long the read snapshot was held, "
        "`check_usec` the integrity_check of the copy from another connection), `sqlite3 DB \"VACUUM INTO "
        "'FILE'\"` (spawn to exit; the shell's synchronous=FULL syncs the copy), and `sqlite3 DB \".backup "
        "FILE\"` (spawn to exit, killed at a cap: five times VACUUM INTO's time, at least 15 s, at most 30 s). The -wal "
        "file's size and the WAL index's frame count (the WAL's content: its frames since it last started over, "
        "4120 bytes each) are sampled every 50 ms; after each copy the benchmark waits (up to one checkpoint interval, 60 s) until "
        "the WAL holds 8 MiB or less again, B2's bound. (The file itself keeps its size when SQLite starts the WAL "
        "over at its beginning; sqlvigil shortens it only when it is over four times `min_wal_pages` frames, "
        "16 MiB at the defaults, with nothing pending.)\n")
    for s in b10["sizes"]:
        md.append(f"### {s['label']}: {s['pages']} pages ({s['bytes'] / MiB:.0f} MiB)\n")
        md.append("| method | time | CPU | writer statements during it | failed | writer max | WAL content at start / "
                  "peak (-wal file peak) | WAL back under 8 MiB after | sqlvigil's write-lock holds meanwhile |")
        md.append("|---|---|---|---|---|---|---|---|---|")
        for m in s["methods"]:
            if m["method"] == "sqlvigil":
                name = "`sqlvigilctl backup`"
                if m.get("error"):
                    t = f"failed: `{str(m['error'])[:160]}`"
                else:
                    t = (f"copy {m['copy_usec'] / 1e6:.2f} s (snapshot held {m['snapshot_usec'] / 1e6:.2f} s), "
                         f"check {m['check_usec'] / 1e6:.2f} s; {m['seconds']:.2f} s in all")
                cpu = "(in sqlvigil)"
            else:
                name = "`VACUUM INTO`" if m["method"] == "vacuum-into" else "`.backup`"
                t = f"{m['seconds']:.2f} s" + (f" — **{m['error']}**" if m.get("error") else "")
                cpu = f"{m['cpu_s']:.2f} s"
            a = m["app"]
            back = m["wal_back_s"]
            hd = m.get("holds_during") or []
            holds = ", ".join(f"{h['what']} {h['lock_max'] * 1000:.1f} ms" for h in hd[:4]) or "none"
            md.append(f"| {name} | {t} | {cpu} | {a['n']} | {a['failed']} | {fmt_ms(a['max'])} | "
                      f"{m.get('wal_content_start', 0) / MiB:.1f} / {m.get('wal_content_peak', 0) / MiB:.1f} MiB "
                      f"({m['wal_peak'] / MiB:.1f} MiB) | "
                      + ("**not within the wait**" if back is None else f"{back:.1f} s") + f" | {holds} |")
        sv = b10_method(s, "sqlvigil")
        e = sv.get("entry") or {}
        md.append(f"\nBefore the copies the writer's statements took at most {fmt_ms(s['before']['max'])}; "
                  f"{s['writer']['attempted']} writes in all, {s['writer']['failed']} failed, rows "
                  f"{'all there' if s['rows_ok'] else '**missing**'}.")
        if e:
            md.append(f" sqlvigil's journal entry: `{e.get('MESSAGE', '')[:300]}` (SQLVIGIL_COPY_USEC="
                      f"{e.get('SQLVIGIL_COPY_USEC')}, SNAPSHOT_USEC={e.get('SQLVIGIL_SNAPSHOT_USEC')}, CHECK_USEC="
                      f"{e.get('SQLVIGIL_CHECK_USEC')}, WAL_BYTES_BEFORE={e.get('SQLVIGIL_WAL_BYTES_BEFORE')}, "
                      f"WAL_BYTES={e.get('SQLVIGIL_WAL_BYTES')}).")
        mf = sv.get("manifest") or {}
        if mf and "error" not in mf:
            md.append(f" Its manifest: copy_usec {mf.get('copy_usec')}, snapshot_usec {mf.get('snapshot_usec')}, "
                      f"check_usec {mf.get('check_usec')}, sha256 {str(mf.get('sha256'))[:16]}….")
        md.append("\n")
    err = plot_b10(b10, os.path.join(out, "bench-b10-wal.png"))
    md.append("![B10: the -wal file during the copies](bench-b10-wal.png)\n" if not err
              else f"(picture not drawn: {err})\n")
    md.append(b10_notes(b10))
    return "\n".join(md)


def b10_notes(b10):
    notes, others = [], []
    limit = 1.5 * b10["budget_ms"] / 1000
    for s in b10["sizes"]:
        sv, vi, db = (b10_method(s, k) for k in ("sqlvigil", "vacuum-into", "dot-backup"))
        if not db["finished"]:
            others.append(f"- **{s['label']}: `.backup` did not finish** in {db['cap_s']:.0f} s; it used "
                         f"{db['cpu_s']:.1f} s of CPU meanwhile. The shell steps the backup API 100 pages at a time "
                         "from a connection that holds no read transaction between steps; each commit by the "
                         "writer (every 3 ms) makes the next step start the copy over. That is why sqlvigil "
                         "holds one read snapshot for its whole copy.")
        alts = [m["seconds"] for m in (vi, db) if m and not m.get("error")]
        best = min(alts) if alts else None
        t = b10_sqlvigil_time(sv)
        if best and t > 1.2 * best:
            notes.append(f"- **{s['label']}: sqlvigil's copy took {t:.2f} s, {t / best:.2f}× VACUUM INTO's "
                         f"{best:.2f} s.** sqlvigil copies every page as it is (the backup API, 1024 pages a step "
                         "with a pause between steps) and syncs the copy; VACUUM INTO writes a new, packed file "
                         "from the rows. The same file size here (no free pages), so the difference is the "
                         "stepping and pausing.")
        mx = sv["app"]["max"]
        if mx is not None and mx > limit:
            hd = sv.get("holds_during") or []
            longest = max(hd, key=lambda h: h["lock_max"]) if hd else None
            notes.append(f"- **{s['label']}: the writer waited up to {fmt_ms(mx)} during sqlvigil's backup.** "
                         + (f"sqlvigil's longest hold of the write lock meanwhile: {longest['what']}, "
                            f"{longest['lock_max'] * 1000:.1f} ms. " if longest else
                            "sqlvigil took the write lock not once meanwhile (journal): the copy holds a read "
                            "snapshot only. ")
                         + "A stall without a hold of sqlvigil's is the disk: the copy's writes and its fsync "
                           "compete with the writer's WAL writes on the same virtual disk.")
        if sv["wal_back_s"] is None:
            notes.append(f"- **{s['label']}: the WAL did not come back under 8 MiB** within the wait "
                         f"({sv['wal_file_after'] / MiB:.1f} MiB -wal file at the end).")
    out = []
    if others:
        out.append("What the alternatives did:\n\n" + "\n".join(others) + "\n")
    if notes:
        out.append("**Where B10 misses, and why.**\n\n" + "\n".join(notes) + "\n")
    else:
        out.append("Every B10 target was met in this run.\n")
    return "\n".join(out)


# ---- B11: restore into a live database ------------------------------------------------

def make_restore_file(ctx, master, path):
    """A complete database file with other content than the live one: a
    copy of the master with every tenth row deleted and 1000 rows added,
    written out by VACUUM INTO (as a backup would be)."""
    src = ctx.path("b11-src.db")
    lib.copy_db(master["path"], src)
    con = lib.sqlite3.connect(src, isolation_level=None)
    con.execute("DELETE FROM events WHERE id % 10 = 0")
    con.execute("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000) "
                "INSERT INTO events(ts, kind, payload) SELECT i, 9, randomblob(1000) FROM s")
    con.execute(f"VACUUM INTO '{path}'")
    con.close()
    lib.remove_db(src)
    lib.sync_file(path)
    con = lib.sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    return n


APP = ("--transaction", "immediate", "--interval-us", 3000, "--busy-timeout", 5000, "--payload", 100)


def b11_app(db, latfile):
    """The application: read-then-write transactions every 3 ms (BEGIN
    IMMEDIATE, as docs/operations.md advises), and a reader that reads for
    5 ms of every 25."""
    w = lib.harness.Loadgen("writer", db, *(APP + ("--latencies", latfile, "--id", 1)))
    r = lib.Reader(db, 5, 20)
    return w, r


def lat_file(path, start_usec):
    out = []
    with open(path) as f:
        for line in f:
            t, lat, ok = line.split()
            out.append(((start_usec + int(t)) / 1e6, int(lat) / 1e6, ok == "1"))
    return out


def b11(ctx):
    label, mib = ctx.p(("256M", 256), ("32M", 32))
    master = dense_db(ctx, label, mib)
    file = ctx.path("b11-restore-me.db")
    rows_in_file = make_restore_file(ctx, master, file)
    res = {"label": label, "bytes": os.path.getsize(file), "rows_in_file": rows_in_file}
    ctx.log(f"B11: restore of a {label} file into a live database with the application running, "
            "vs stopping everything and copying")

    # 1. sqlvigilctl restore with the application running
    db = ctx.path("b11-live.db")
    lib.copy_db(master["path"], db)
    bkdir = ctx.path("b11-backups")
    os.mkdir(bkdir)
    d = lib.Sqlvigil(ctx.tmp, db, f"[backup]\ndirectory = {bkdir}\ninterval = 1d\n{QUIET}", "b11", control=True)
    w = r = None
    a = {}
    try:
        w, r = b11_app(db, ctx.datafile("b11-online.lat"))
        time.sleep(2.0)
        t0 = time.monotonic()
        rc, reply, took, err = d.ctl("restore", file, timeout=600)
        t1 = time.monotonic()
        rep = (reply or {}).get("restore") or {}
        a = {"t0": t0, "t1": t1, "exit": rc, "seconds": took, "reply": rep,
             "error": None if rc == 0 else ((reply or {}).get("error") or err)}
        safety = [f for _, f in d.entries("backup", after=t0)]
        a["safety_entry"] = {k: v for k, v in safety[-1].items() if k.startswith(("SQLVIGIL_", "MESSAGE"))} \
            if safety else None
        entry = [f for _, f in d.entries("restore", after=t0)]
        a["entry"] = {k: v for k, v in entry[-1].items() if k.startswith(("SQLVIGIL_", "MESSAGE"))} if entry else None
        time.sleep(2.0)
        # What came after: sqlvigil's next checkpoint (how many frames it still
        # found) and any change of health.
        nxt = [(t, f) for t, f in d.entries("checkpoint", after=t1)]
        a["next_checkpoint"] = ({"after_s": nxt[0][0] - t1, "frames": lib.entry_usec(nxt[0][1], "SQLVIGIL_WAL_FRAMES"),
                                 "message": nxt[0][1].get("MESSAGE", "")} if nxt else None)
        a["health"] = [(t - t1, f.get("MESSAGE", "")) for t, f in d.entries("health", after=t0)]
        a["summary"] = w.stop()
        r.stop()
        w = r = None
        a["rows_after"] = lib.harness.query(db, "SELECT count(*) FROM events")[0][0]
        a["load_rows_after"] = lib.harness.query(db, "SELECT count(*) FROM load")[0][0]
        a["integrity"] = lib.harness.integrity(db)
        a["exit_daemon"], _ = d.stop()
        d.save_log(ctx.datafile("b11.log"))
    finally:
        for p in (w, r):
            if p:
                p.kill()
        d.kill()
    lats = lat_file(ctx.datafile("b11-online.lat"), a["summary"]["start_usec"])
    a["app"] = window(lats, a["t0"], a["t1"])
    # The longest statements, from the restore's start (seconds).
    a["top"] = [(t - a["t0"], lat, ok) for t, lat, ok in sorted(lats, key=lambda x: -x[1])[:3]]
    a["app_all"] = window(lats, lats[0][0], lats[-1][0] + 10)
    # Writes the application committed after the restore began (the restored file has none).
    a["writes_after"] = sum(1 for t, lat, ok in lats if ok and t + lat > a["t1"])
    res["online"] = a
    lib.remove_db(db)
    shutil.rmtree(bkdir, ignore_errors=True)
    ctx.log(f"  sqlvigilctl restore: {a['seconds']:.2f}s; application: max wait {fmt_ms(a['app']['max'])}, "
            f"{a['app']['failed']} failed; rows after {a['rows_after']} (file {rows_in_file})")

    # 2. stop everything, copy, start again (docs/operations.md, "Restore with everything stopped")
    db = ctx.path("b11-offline.db")
    lib.copy_db(master["path"], db)
    d = lib.Sqlvigil(ctx.tmp, db, QUIET, "b11-off")
    w = r = None
    o = {}
    try:
        w, r = b11_app(db, ctx.datafile("b11-offline-1.lat"))
        time.sleep(2.0)
        t0 = time.monotonic()
        s1 = w.stop()
        r.stop()
        w = r = None
        t_app = time.monotonic()
        d.stop()
        t_d = time.monotonic()
        os.rename(db, db + ".before-restore")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
        shutil.copyfile(file, db)
        lib.sync_file(db)
        t_cp = time.monotonic()
        d = lib.Sqlvigil(ctx.tmp, db, QUIET, "b11-off2")
        t_ready = time.monotonic()
        w, r = b11_app(db, ctx.datafile("b11-offline-2.lat"))
        time.sleep(2.0)
        s2 = w.stop()
        r.stop()
        w = r = None
        d.stop()
    finally:
        for p in (w, r):
            if p:
                p.kill()
        d.kill()
    lats1 = lat_file(ctx.datafile("b11-offline-1.lat"), s1["start_usec"])
    lats2 = lat_file(ctx.datafile("b11-offline-2.lat"), s2["start_usec"])
    first_ok = next((t + lat for t, lat, ok in lats2 if ok), None)
    last_ok = max((t + lat for t, lat, ok in lats1 if ok), default=t0)
    o = {"t0": t0, "app_stop_s": t_app - t0, "sqlvigil_stop_s": t_d - t_app, "copy_s": t_cp - t_d,
         "sqlvigil_start_s": t_ready - t_cp, "first_write_s": (first_ok - t_ready) if first_ok else None,
         "outage_s": (first_ok - last_ok) if first_ok else None,
         "failed": s1["failed"] + s2["failed"], "rows_after": lib.harness.query(db, "SELECT count(*) FROM events")[0][0]}
    res["offline"] = o
    lib.remove_db(db)
    lib.remove_db(db + ".before-restore")
    ctx.log(f"  stop, copy, start: the application wrote nothing for {o['outage_s'] or 0:.2f}s (stop "
            f"{o['app_stop_s']:.2f}s + sqlvigil stop {o['sqlvigil_stop_s']:.2f}s + copy {o['copy_s']:.2f}s + "
            f"sqlvigil start {o['sqlvigil_start_s']:.2f}s + first write {o['first_write_s'] or 0:.2f}s)")
    return res


def b11_summary(b11):
    if "error" in b11:
        return [["B11 restore", "did not run", "", "", ""]]
    a, o = b11["online"], b11["offline"]
    ok = a["exit"] == 0 and a["app"]["failed"] == 0 and (a["app"]["max"] or 0) < 5.0
    return [[f"B11 restore {b11['label']} into the live database: the application's errors / longest wait",
             f"{a['app']['failed']} / {fmt_ms(a['app']['max'])} (restore {a['seconds']:.2f} s)",
             f"stop everything, copy, start: no writes for {o['outage_s'] or 0:.2f} s",
             "none beyond busy_timeout (5 s)", yes(ok)]]


def b11_section(ctx, b11):
    if "error" in b11:
        return f"## B11 restore\n\nDid not run: `{b11['error']}`\n"
    a, o = b11["online"], b11["offline"]
    rep = a.get("reply") or {}
    md = ["## B11 restore into a live database\n", load_line(ctx, "B11")]
    md.append(
        f"The live database: a copy of the dense {b11['label']} database (B10). The file to restore: the same "
        f"database with every tenth row deleted and 1000 added, written out with VACUUM INTO "
        f"({b11['bytes'] / MiB:.0f} MiB, {b11['rows_in_file']} rows in `events`). The application: a "
        "read-then-write transaction every 3 ms (`BEGIN IMMEDIATE`, a SELECT, an INSERT, COMMIT; "
        "`busy_timeout=5000`) and a reader holding a read transaction 5 ms of every 25, both with their "
        "connections open throughout.\n")
    md.append("| | time | the application's longest wait | its failed statements | content afterwards |")
    md.append("|---|---|---|---|---|")
    safety = a.get("safety_entry") or {}
    parts = []
    if safety:
        parts.append(f"safety backup: copy {lib.entry_usec(safety, 'SQLVIGIL_COPY_USEC') / 1e6:.2f} s, check "
                     f"{lib.entry_usec(safety, 'SQLVIGIL_CHECK_USEC') / 1e6:.2f} s")
    if rep:
        parts.append(f"write lock held {rep.get('lock_usec', 0) / 1e6:.2f} s, quick_check after "
                     f"{rep.get('check_usec', 0) / 1e6:.2f} s")
    md.append(f"| `sqlvigilctl restore FILE`, application running | {a['seconds']:.2f} s"
              + (f" ({'; '.join(parts)})" if parts else "")
              + (f" — **failed: {a['error']}**" if a.get("error") else "")
              + f" | {fmt_ms(a['app']['max'])} | {a['app']['failed']} during the restore, "
              f"{a['app_all']['failed']} in all | {a['rows_after']} rows in `events` (the file's "
              f"{b11['rows_in_file']}), integrity_check {'ok' if a['integrity'] == ['ok'] else a['integrity'][:2]}; "
              f"{a['writes_after']} of the application's writes after the restore are in `load` "
              f"({a['load_rows_after']} rows) |")
    md.append(f"| stop the application and sqlvigil, move the file in, start both | "
              f"{(o['outage_s'] or 0):.2f} s without writes: application stop {o['app_stop_s']:.2f} s, sqlvigil "
              f"stop {o['sqlvigil_stop_s']:.2f} s, copy and fsync {o['copy_s']:.2f} s, sqlvigil start to READY "
              f"{o['sqlvigil_start_s']:.2f} s, application start to its first commit "
              f"{(o['first_write_s'] or 0):.2f} s | {(o['outage_s'] or 0) * 1000:.0f} ms (no connection at all) | "
              f"{o['failed']} | {o['rows_after']} rows |")
    e = a.get("entry") or {}
    if e:
        md.append(f"\nsqlvigil's journal entry: `{e.get('MESSAGE', '')[:400]}`")
    if a.get("top"):
        md.append("\nThe application's longest statements, by when they began (seconds after `sqlvigilctl restore` "
                  f"was started; its reply came at {a['t1'] - a['t0']:.2f} s): "
                  + "; ".join(f"{lat * 1000:.0f} ms at {t:+.2f} s" + ("" if ok else " (failed)")
                              for t, lat, ok in a["top"])
                  + f". sqlvigil held the write lock {rep.get('lock_usec', 0) / 1e6:.2f} s at once (its reply's "
                  "`lock_usec`); a writer that found it taken waits that long plus the rest of its busy-handler "
                  "sleep (100 ms each by then)"
                  + (f"; and sqlvigil's next checkpoint, {a['next_checkpoint']['after_s']:.2f} s after the reply, "
                     f"found only {a['next_checkpoint']['frames']} frame{'s' if a['next_checkpoint']['frames'] != 1 else ''} in the WAL "
                     f"(`{a['next_checkpoint']['message'][:160]}`): the restored pages had already been copied into "
                     "the database file by the application's own first commit after the restore, which runs "
                     "SQLite's autocheckpoint once the WAL holds 1000 frames and so waited for that copy too"
                     if a.get("next_checkpoint") and a["next_checkpoint"]["frames"] < 1000 else "")
                  + ".")
    for dt, msg in a.get("health") or []:
        md.append(f"\nHealth {dt:+.2f} s after the reply: `{msg[:200]}`.")
    md.append(
        "\nThe restore copies the file's pages into the live database in one write transaction (the online "
        "backup API into sqlvigil's own connection), so the application's writers wait for it within their busy "
        "timeout while readers go on; their next statement sees the restored content without reconnecting. "
        "The documented offline way is shorter for the writers here, but every program must be stopped and "
        "started, and nothing checks the file before it is in place.\n")
    if a["app"]["failed"] or (a["app"]["max"] or 0) >= 5.0 or a["exit"] != 0:
        md.append("**Missed:** the application saw failures or waited past its busy timeout during the restore; "
                  "see the table.\n")
    return "\n".join(md)
