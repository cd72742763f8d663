# SPDX-License-Identifier: MIT
"""B8 and B9 (issue 12): what sqlvigil's locks cost the applications.

B8: a reader pinned for 30 s (a read transaction held open) while an admin
`sqlvigilctl checkpoint truncate` runs and then while sqlvigil stops: the
application writers' errors and longest waits.

B9: deferred read-then-write transactions (BEGIN; SELECT; INSERT; COMMIT),
which get SQLITE_BUSY at once, whatever their busy timeout, whenever another
connection holds the write lock: without sqlvigil, with its health probe
alone, at its defaults, with the applications' wal_autocheckpoint = 0 (the
old advice) and with the vacuum running; then the same with BEGIN
IMMEDIATE. All in one run.

Each function returns plain data (JSON) for results.json; the summary rows
and the sections of the page are made from it below.
"""

import time

import lib

QUIET = """
[health]
quick_check_interval = 0
[analyze]
interval = 0
"""


def fmt_ms(v, digits=1):
    return "–" if v is None else f"{v * 1000:.{digits}f} ms"


def yes(ok):
    return "**met**" if ok else "**missed**"


def window(lats, t0, t1):
    """Statements that were running at some moment of [t0, t1]: started
    before t1 and ended after t0."""
    sel = [(lat, ok) for t, lat, ok in lats if t < t1 and t + lat > t0]
    v = sorted(lat for lat, _ in sel)
    return {"n": len(sel), "failed": sum(1 for _, ok in sel if not ok), "max": v[-1] if v else None,
            "p99": lib.pct(v, 0.99)}


def load_line(ctx, b):
    l = ctx.load.get(b)
    if not l:
        return ""
    return (f"*Machine load during {b}: CPUs {l['busy_pct']:.0f}% busy, of which the benchmark's own processes "
            f"{l['ours_pct']:.0f}%; {l['seconds']:.0f} s.*\n")


def holds_text(holds):
    """stats' lock holds by task, as text."""
    if not holds:
        return "none"
    return "; ".join(f"{task}: {h['count']} hold{'s' if h['count'] != 1 else ''} (longest {h['max_usec'] / 1000:.1f} ms, {h['total_usec'] / 1000:.0f} ms "
                     "in all)" for task, h in sorted(holds.items()))


# ---- B8: a pinned reader during an admin TRUNCATE and the stop ---------------------

def b8(ctx):
    pin = ctx.p(30, 7)
    stop_timeout = ctx.p(20, 3)
    busy_ms = ctx.p(5000, 1500)
    budget_ms = 20
    ctx.log(f"B8: a reader pinned for {pin} s; an admin TRUNCATE (busy_timeout {busy_ms} ms), then the stop "
            f"(stop_timeout {stop_timeout} s); two writers every 3 ms")
    db = ctx.path("b8.db")
    lib.make_small_db(db, 4)
    res = {"pin_s": pin, "stop_timeout_s": stop_timeout, "busy_timeout_ms": busy_ms, "budget_ms": budget_ms,
           "writers": 2}
    d = lib.Sqlvigil(ctx.tmp, db, f"""
[pragmas]
busy_timeout = {busy_ms}
[checkpoint]
stop_timeout = {stop_timeout}s
[vacuum]
interval = 0
step_budget = {budget_ms}ms
{QUIET}""", "b8", control=True)
    writers, reader = [], None
    try:
        for i in range(2):
            writers.append(lib.Writer(db, ctx.datafile(f"b8-w{i + 1}.lat"), wid=i + 1, interval_us=3000,
                                      payload=100, autocheckpoint=None))
        time.sleep(1.0)
        reader = lib.Reader(db, pin * 1000, 3_600_000)
        res["reader_pid"] = reader.pid
        pinned = time.monotonic()
        time.sleep(1.0)  # commits after the reader's snapshot: no checkpoint can finish while it reads

        ta0 = time.monotonic()
        rc, reply, took, err = d.ctl("checkpoint", "truncate", timeout=120)
        ta1 = time.monotonic()
        res["admin"] = {"t0": ta0, "t1": ta1, "exit": rc, "seconds": took, "reply": reply, "stderr": err}
        res["admin_holds"] = lib.holds_by_task(d.stats())
        time.sleep(1.0)

        tb0 = time.monotonic()
        rc, took = d.stop(timeout=stop_timeout + 60)
        tb1 = time.monotonic()
        res["stop"] = {"t0": tb0, "t1": tb1, "exit": rc, "seconds": took,
                       "reader_alive": reader.r.proc.poll() is None}
        d.save_log(ctx.datafile("b8.log"))
        res["journal"] = d.journal is not None
        stopping = [f for _, f in d.entries("stopping")]
        res["stop"]["entry"] = {k: v for k, v in stopping[-1].items() if k.startswith(("SQLVIGIL_", "MESSAGE"))} \
            if stopping else None
        if not stopping:
            line = d.find_log(r"stopping: final")
            res["stop"]["line"] = line[1] if line else None
        # The writers go on until the reader lets go, and a little after.
        left = pinned + pin + 1.0 - time.monotonic()
        if left > 0:
            time.sleep(left)
        for w in writers:
            w.stop()
        reader.stop()
        reader = None
    finally:
        for w in writers:
            w.kill()
        if reader:
            reader.kill()
        d.kill()
    lats = sorted((x for w in writers for x in w.latencies()), key=lambda x: x[0])
    res["all"] = window(lats, lats[0][0], lats[-1][0] + 10)
    res["admin"]["app"] = window(lats, res["admin"]["t0"], res["admin"]["t1"])
    res["stop"]["app"] = window(lats, res["stop"]["t0"], res["stop"]["t1"])
    res["before"] = window(lats, lats[0][0], res["admin"]["t0"])
    res["attempted"] = sum(w.summary["attempted"] for w in writers)
    res["failed"] = sum(w.summary["failed"] for w in writers)
    res["first_errors"] = sorted({w.summary["first_error"] for w in writers if w.summary["first_error"]})
    res["target_s"] = (1.5 * budget_ms + lib.busy_sleep_at(1.5 * budget_ms)) / 1000
    res["busy_sleep_ms"] = lib.busy_sleep_at(1.5 * budget_ms)
    rows = lib.rows_by_writer(db)
    res["rows_ok"] = rows is not None and all(rows.get(w.summary["writer"], (0, 0)) ==
                                              (w.summary["succeeded"], w.summary["succeeded"]) for w in writers)
    res["quick_check"] = lib.quick_check(db)
    with open(ctx.datafile("b8.plot"), "w") as f:
        for t, lat, ok in lats:
            f.write(f"{t - res['admin']['t0']:.4f} {lat * 1000:.3f} {int(ok)}\n")
    lib.remove_db(db)
    ctx.log(f"  admin TRUNCATE {res['admin']['seconds']:.1f}s: writers max {fmt_ms(res['admin']['app']['max'])}, "
            f"{res['admin']['app']['failed']} failed; stop {res['stop']['seconds']:.1f}s: max "
            f"{fmt_ms(res['stop']['app']['max'])}, {res['stop']['app']['failed']} failed; all {res['failed']} failed")
    return res


def b8_summary(b8):
    if "error" in b8:
        return [["B8 pinned reader", "did not run", "", "", ""]]
    rows = []
    for key, lbl in (("admin", "an admin `checkpoint truncate`"), ("stop", "the stop")):
        a = b8[key]["app"]
        ok = a["failed"] == 0 and a["max"] is not None and a["max"] <= b8["target_s"]
        rows.append([f"B8 reader pinned {b8['pin_s']} s, during {lbl}: writers' errors / longest wait",
                     f"{a['failed']} / {fmt_ms(a['max'])}", "", f"0 / ≤ {b8['target_s'] * 1000:.0f} ms", yes(ok)])
    return rows


def b8_section(ctx, b8):
    if "error" in b8:
        return f"## B8 pinned reader\n\nDid not run: `{b8['error']}`\n"
    md = ["## B8 a pinned reader during an admin TRUNCATE and the stop\n", load_line(ctx, "B8")]
    md.append(
        f"A 4 MiB database; two application writers (`sqlvigil-loadgen writer`, one 100-byte INSERT every 3 ms "
        f"each, `busy_timeout=5000`, SQLite's autocheckpoint on) and a report job: `sqlvigil-loadgen reader` "
        f"opens a read transaction and holds it {b8['pin_s']} s. One second after it began (the writers have "
        f"committed past its snapshot, so no checkpoint can reset the WAL while it reads), an admin runs "
        f"`sqlvigilctl checkpoint truncate` (it may try for `busy_timeout`, {b8['busy_timeout_ms']} ms here); "
        f"a second later sqlvigil gets SIGTERM (its final TRUNCATE may try for `stop_timeout`, "
        f"{b8['stop_timeout_s']} s). sqlvigil runs with `step_budget` {b8['budget_ms']} ms, otherwise defaults "
        "(no vacuum, ANALYZE or quick_check). Target for the writers' longest wait: 1.5 × `step_budget` plus "
        f"the busy-handler sleep a writer is in at that point ({1.5 * b8['budget_ms']:.0f} ms + "
        f"{b8['busy_sleep_ms']} ms: SQLite's default busy handler sleeps 1, 2, 5, 10, 15 ms… and retries "
        "only when a sleep ends). A statement counts for a phase when it ran at some moment of it.\n")
    md.append("| phase | sqlvigil | its write-lock holds | writer statements | failed | longest wait | p99 |")
    md.append("|---|---|---|---|---|---|---|")
    b = b8["before"]
    md.append(f"| before (1 s writing, 1 s with the reader) | – | – | {b['n']} | {b['failed']} | {fmt_ms(b['max'])} | "
              f"{fmt_ms(b['p99'])} |")
    a = b8["admin"]
    rep = (a.get("reply") or {}).get("checkpoint") or {}
    summ = rep.get("summary") or (a.get("reply") or {}).get("error") or a.get("stderr") or "?"
    md.append(f"| admin `checkpoint truncate` | {a['seconds']:.2f} s, exit {a['exit']}, result "
              f"`{rep.get('result', '?')}`: `{summ[:200]}` | longest {rep.get('lock_usec', 0) / 1000:.1f} ms; "
              f"stats: {holds_text(b8.get('admin_holds'))} | {a['app']['n']} | {a['app']['failed']} | "
              f"{fmt_ms(a['app']['max'])} | {fmt_ms(a['app']['p99'])} |")
    s = b8["stop"]
    e = s.get("entry") or {}
    if e:
        what = (f"{s['seconds']:.2f} s, exit {s['exit']}: `{e.get('MESSAGE', '')[:240]}`")
        n = lib.entry_usec(e, 'SQLVIGIL_LOCK_HOLDS')
        holds = (f"{n} hold{'s' if n != 1 else ''}, longest "
                 f"{lib.entry_usec(e, 'SQLVIGIL_LOCK_USEC') / 1000:.1f} ms, "
                 f"{lib.entry_usec(e, 'SQLVIGIL_LOCK_TOTAL_USEC') / 1000:.0f} ms in all (journal: "
                 "SQLVIGIL_LOCK_HOLDS, LOCK_USEC, LOCK_TOTAL_USEC)")
    else:
        what = f"{s['seconds']:.2f} s, exit {s['exit']}: `{(s.get('line') or '?')[:240]}`"
        holds = "(journal fields not captured)"
    md.append(f"| SIGTERM to exit | {what} | {holds} | {s['app']['n']} | {s['app']['failed']} | "
              f"{fmt_ms(s['app']['max'])} | {fmt_ms(s['app']['p99'])} |")
    md.append(f"\nOver the whole run: {b8['attempted']} writes, {b8['failed']} failed"
              + (f" (`{'`, `'.join(b8['first_errors'])}`)" if b8["first_errors"] else "")
              + f"; rows {'all there' if b8['rows_ok'] else '**missing**'}; quick_check "
              f"{'ok' if b8['quick_check'] == ['ok'] else b8['quick_check'][:3]}. The reader was "
              f"{'still reading' if s.get('reader_alive') else 'gone'} when sqlvigil exited.\n")
    notes = []
    for key, lbl in (("admin", "the admin TRUNCATE"), ("stop", "the stop")):
        app = b8[key]["app"]
        if app["failed"] or (app["max"] or 0) > b8["target_s"]:
            notes.append(f"- **During {lbl}** the writers waited up to {fmt_ms(app['max'])} "
                         f"({app['failed']} failed). " + b8_cause(b8, key))
    if notes:
        md.append("**Where B8 misses, and why.**\n\n" + "\n".join(notes) + "\n")
    else:
        md.append("Every B8 target was met in this run: sqlvigil waited for the reader in slices and kept the "
                  "write lock free between them.\n")
    return "\n".join(md)


def b8_cause(b8, key):
    if key == "admin":
        rep = ((b8["admin"].get("reply") or {}).get("checkpoint") or {})
        held = rep.get("lock_usec", 0) / 1e6
    else:
        held = lib.entry_usec(b8["stop"].get("entry") or {}, "SQLVIGIL_LOCK_USEC") / 1e6
    if held * 1.5 < (b8[key]["app"]["max"] or 0):
        return (f"sqlvigil's own longest hold of the write lock in that phase was {fmt_ms(held)}; the rest of the "
                "wait is the writers' own: the other writer's commits and SQLite's autocheckpoint in the "
                "applications, and the busy handler's sleeps between tries.")
    return (f"sqlvigil held the write lock up to {fmt_ms(held)} at once in that phase, more than the budget: "
            "the hold is a RESTART/TRUNCATE slice (copying what it can and syncing the database under the lock).")


# ---- B9: deferred read-then-write transactions --------------------------------------

B9_CASES = (
    # name, transaction, sqlvigil (None: not running), the application's wal_autocheckpoint (None: SQLite's 1000)
    ("none", "deferred", None, None),
    ("probe", "deferred", "probe", None),
    ("defaults", "deferred", "defaults", None),
    ("autockpt0", "deferred", "defaults", 0),
    ("vacuum", "deferred", "vacuum", None),
    ("none", "immediate", None, None),
    ("defaults", "immediate", "defaults", None),
    ("autockpt0", "immediate", "defaults", 0),
    ("vacuum", "immediate", "vacuum", None),
)

B9_CONF = {
    # The probe alone: health every 100 ms (50 times the default rate), nothing else that takes a lock.
    "probe": """
[health]
interval = 100ms
quick_check_interval = 0
[checkpoint]
interval = 0
min_wal_pages = 4294967295
truncate_wal_size = 0
[vacuum]
interval = 0
[analyze]
interval = 0
""",
    "defaults": "",
    "vacuum": """
[vacuum]
interval = 1s
""",
}


def b9_case(ctx, master, name, transaction, daemon, autockpt, duration):
    label = f"b9-{name}-{transaction}"
    db = ctx.path(label + ".db")
    if daemon == "vacuum":
        lib.copy_db(master["path"], db)
    else:
        lib.make_small_db(db, 4)
    res = {"name": name, "transaction": transaction, "daemon": daemon, "autocheckpoint": autockpt}
    d = None
    latfile = ctx.datafile(label + ".lat")
    args = ["--transaction", transaction, "--interval-us", 1000, "--busy-timeout", 5000, "--payload", 100,
            "--synchronous", "normal", "--latencies", latfile, "--id", 1]
    if autockpt is not None:
        args += ["--autocheckpoint", autockpt]
    try:
        if daemon:
            d = lib.Sqlvigil(ctx.tmp, db, B9_CONF[daemon], label, control=True, debug=daemon == "vacuum")
            ts = lib.ThreadSampler(d.pid, "sqlvigil-db") if daemon == "vacuum" else None
        t0 = time.monotonic()
        if daemon == "vacuum":
            app = lib.harness.Loadgen("writer", db, *args)
            limit = ctx.p(120, 60)
            try:
                d.wait_log(r"vacuum \(interval\) (freed|\w+ after freeing)", timeout=limit)
            except lib.BenchError:
                res["unfinished"] = f"the vacuum did not finish in {limit} s"
            time.sleep(0.5)
            summary = app.stop(timeout=60)
        else:
            app = lib.harness.Loadgen("writer", db, *(args + ["--duration", duration]))
            summary = app.wait(timeout=duration + 60)
        t1 = time.monotonic()
        if d:
            st = d.stats()
            res["holds"] = lib.holds_by_task(st)
            res["health_checks"] = st.get("health", {}).get("checks")
            lines = d.lines()
            res["exit"], _ = d.stop()
            if ts:
                ts.stop()
            d.save_log(ctx.datafile(label + ".log"))
            runs = lib.lock_runs(d.entries())
            res["runs_by_what"] = {}
            for r in runs:
                if r["holds"] and r["event"] != "stopping":
                    x = res["runs_by_what"].setdefault(r["what"], {"runs": 0, "holds": 0, "max": 0.0})
                    x["runs"] += 1
                    x["holds"] += r["holds"]
                    x["max"] = max(x["max"], r["lock_max"])
            if daemon == "vacuum":
                steps, vs, ve, result = lib.vacuum_events(lines)
                res["vacuum"] = {"steps": len(steps), "seconds": (ve - vs) if vs and ve else None,
                                 "result": (result or "").split("sqlvigil: ", 1)[-1],
                                 "overruns": lib.long_holds(steps, ts, 0.020, n=3, asked=lib.step_requests(lines))}
    finally:
        if d:
            d.kill()
    res["seconds"] = t1 - t0
    for k in ("attempted", "succeeded", "failed", "busy", "first_error", "max_us", "p99_us"):
        res[k] = summary[k]
    rows = lib.rows_by_writer(db)
    res["rows_ok"] = rows is not None and rows.get(1, (0, 0)) == (summary["succeeded"], summary["succeeded"])
    lib.remove_db(db)
    ctx.log(f"  {label}{'' if autockpt is None else ' (app wal_autocheckpoint=0)'}: {res['attempted']} "
            f"transactions, {res['busy']} SQLITE_BUSY, {res['failed']} failed, max {res['max_us'] / 1000:.1f} ms"
            + (f"; sqlvigil's holds: {holds_text(res.get('holds'))}" if daemon else ""))
    return res


def b9(ctx, master_db):
    duration = ctx.p(8, 2)
    label, mib = ctx.p(("1G", 1024), ("64M", 64))
    master = master_db(ctx, label, mib)
    ctx.log(f"B9: deferred vs immediate read-then-write transactions, one every 1 ms, {duration} s a case "
            f"(the vacuum cases: until the {label} database's free half is reclaimed)")
    return {"duration": duration, "vacuum_label": label,
            "cases": [b9_case(ctx, master, *c, duration) for c in B9_CASES]}


def b9_title(c):
    return {
        "none": "no sqlvigil",
        "probe": "sqlvigil: health probe every 100 ms, nothing else",
        "defaults": "sqlvigil at its defaults",
        "autockpt0": "sqlvigil at its defaults, the application's `wal_autocheckpoint = 0`",
        "vacuum": "sqlvigil reclaiming the free half (`[vacuum] interval = 1s`)",
    }[c["name"]]


def b9_find(b9, name, transaction):
    return next((c for c in b9["cases"] if c["name"] == name and c["transaction"] == transaction), None)


def b9_summary(b9):
    if "error" in b9:
        return [["B9 deferred transactions", "did not run", "", "", ""]]
    none, probe = b9_find(b9, "none", "deferred"), b9_find(b9, "probe", "deferred")
    rows = [["B9 deferred transactions: SQLITE_BUSY with sqlvigil's probe alone",
             f"{probe['busy']} in {probe['attempted']}", f"without sqlvigil: {none['busy']} in {none['attempted']}",
             "the same as without", yes(probe["busy"] <= none["busy"])]]
    for name in ("defaults", "autockpt0", "vacuum"):
        dc, ic = b9_find(b9, name, "deferred"), b9_find(b9, name, "immediate")
        rows.append([f"B9 … {b9_title(dc)}: deferred / BEGIN IMMEDIATE",
                     f"{dc['busy']} in {dc['attempted']} / {ic['busy']} in {ic['attempted']}", "", "(measured)", ""])
    return rows


def b9_section(ctx, b9):
    if "error" in b9:
        return f"## B9 deferred transactions\n\nDid not run: `{b9['error']}`\n"
    md = ["## B9 deferred read-then-write transactions\n", load_line(ctx, "B9")]
    md.append(
        "One application connection (`sqlvigil-loadgen writer --transaction deferred|immediate`) runs a "
        "read-then-write transaction every millisecond: `BEGIN` (or `BEGIN IMMEDIATE`), `SELECT count(*) FROM "
        "load WHERE writer = ?`, `INSERT` of a 100-byte row, `COMMIT`; `busy_timeout=5000`, "
        "`synchronous=NORMAL`. It is the only application connection, so every SQLITE_BUSY it gets comes from "
        "another connection taking the write lock: sqlvigil's. A deferred transaction asks for the write lock "
        "at its INSERT, with a read snapshot already open, and SQLite then answers SQLITE_BUSY at once instead "
        f"of waiting. Each case runs {b9['duration']} s on a fresh 4 MiB database, except the vacuum cases: a "
        f"copy of the {b9['vacuum_label']} purged database (B1), from sqlvigil's start until its vacuum has "
        "reclaimed the free half, with every step logged. \"sqlvigil's write-lock holds\" are from `sqlvigilctl "
        "stats` (`maintenance.lock_holds`) at the end of the case.\n")
    md.append("| case | transaction | seconds | transactions | SQLITE_BUSY | other failures | longest | "
              "sqlvigil's write-lock holds |")
    md.append("|---|---|---|---|---|---|---|---|")
    for c in b9["cases"]:
        extra = ""
        if c.get("vacuum"):
            v = c["vacuum"]
            extra = f" (vacuum: {v['steps']} steps in {v['seconds'] or 0:.2f} s)"
        md.append(f"| {b9_title(c)}{extra} | {'`BEGIN IMMEDIATE`' if c['transaction'] == 'immediate' else 'deferred'} "
                  f"| {c['seconds']:.1f} | {c['attempted']} | {c['busy']} | {c['failed'] - c['busy']} | "
                  f"{c['max_us'] / 1000:.1f} ms | "
                  f"{holds_text(c.get('holds')) if c['daemon'] else '–'} |")
    md.append("")
    md.append(b9_notes(b9))
    return "\n".join(md)


def b9_notes(b9):
    none, probe = b9_find(b9, "none", "deferred"), b9_find(b9, "probe", "deferred")
    out = []
    if probe["busy"] <= none["busy"]:
        out.append(f"sqlvigil's health probe took no lock an application can collide with: {probe['busy']} "
                   f"SQLITE_BUSY in {probe['attempted']} deferred transactions over {probe.get('health_checks')} "
                   f"health checks, against {none['busy']} without sqlvigil. (It reads: a read lock, which no "
                   "writer waits for, and looks at the write lock with fcntl(F_GETLK), which takes nothing.)")
    else:
        out.append(f"**Missed:** with sqlvigil's probe alone the deferred transactions got {probe['busy']} "
                   f"SQLITE_BUSY against {none['busy']} without sqlvigil; holds in that case: "
                   f"{holds_text(probe.get('holds'))}.")
    for name in ("defaults", "autockpt0", "vacuum"):
        dc, ic = b9_find(b9, name, "deferred"), b9_find(b9, name, "immediate")
        what = "; ".join(f"{w}: {x['runs']} run{'s' if x['runs'] != 1 else ''}, {x['holds']} "
                         f"hold{'s' if x['holds'] != 1 else ''}, longest {x['max'] * 1000:.1f} ms"
                         for w, x in sorted(dc.get("runs_by_what", {}).items())) or "none"
        ov = (dc.get("vacuum") or {}).get("overruns") or []
        if ov:
            what += (". Vacuum steps over the 20 ms budget, and where their time went (the database thread's "
                     "/proc schedstat, sampled every 4 ms): " + "; ".join(lib.overrun_text(o) for o in ov))
        out.append(f"- {b9_title(dc)}: deferred {dc['busy']} SQLITE_BUSY in {dc['attempted']} "
                   f"({100 * dc['busy'] / max(dc['attempted'], 1):.2f}%), `BEGIN IMMEDIATE` {ic['busy']} in "
                   f"{ic['attempted']} (longest wait {ic['max_us'] / 1000:.1f} ms). sqlvigil's runs that took the "
                   f"write lock in the deferred case: {what}.")
    out.append("\nEvery hold of the write lock by another connection, however short, is an SQLITE_BUSY for a "
               "deferred transaction that reaches its first write at that moment; with `BEGIN IMMEDIATE` the same "
               "holds are waits within the busy timeout. This is the measurement behind docs/operations.md, "
               "section 3: start transactions that write with `BEGIN IMMEDIATE`, and leave the applications' "
               "`wal_autocheckpoint` on (with it off, sqlvigil has to run the WAL resets that take the write "
               "lock: compare the two deferred rows above).\n")
    return "\n".join(out)
