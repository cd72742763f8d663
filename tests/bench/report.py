# SPDX-License-Identifier: MIT
"""Writes benchmarks.md and its pictures from the results of run.py (B8-B12:
their modules' own summary rows and sections).

Every figure in the page comes from this run; the notes under a missed
target are chosen by what was measured and quote the evidence (per-step
lock times, the stalls and what overlapped them, log lines)."""

import os
import re
import shutil
import subprocess

import backups
import faults
import lib
import locks

MiB = 1 << 20


def ms(v, digits=1):
    return "–" if v is None else f"{v * 1000:.{digits}f} ms"


def us_or_ms(v):
    if v is None:
        return "–"
    return f"{v * 1e6:.0f} µs" if v < 0.001 else f"{v * 1000:.1f} ms"


def mib(v):
    return f"{v / MiB:.1f} MiB"


def qc_lines(q):
    """quick_check's problems, one per line, without the header."""
    return [l for x in q for l in x.split("\n") if l.strip() and not l.startswith("*** in database")]


def qc(q):
    lines = qc_lines(q)
    if lines == ["ok"]:
        return "ok"
    return f"**{len(lines)}{'+' if len(lines) >= 20 else ''} problems**, first: `{lines[0][:80]}`"


def err_short(error):
    """'failed after freeing N pages: <SQLite's message>' from sqlvigil's log line."""
    if not error:
        return ""
    m = re.search(r"(\w+) after freeing (\d+) pages: (?:PRAGMA [^:]*: )?(.*?)(?: in \S+)?$", error)
    if m:
        return f"{m.group(1)} after {m.group(2)} pages: `{m.group(3)}`"
    return f"`{error[:120]}`"


def yes(ok):
    return "**met**" if ok else "**missed**"


# ---- pictures ------------------------------------------------------------------

def gq(text):
    """A gnuplot double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gnuplot(script, out):
    if not shutil.which("gnuplot"):
        return "gnuplot is not installed (apt-get install gnuplot-nox)"
    r = subprocess.run(["gnuplot"], input=script, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0 or not os.path.exists(out):
        return f"gnuplot failed: {r.stderr.strip()[:500]}"
    return None


def plot_b1(b1, path):
    colors = {"vacuum": "#d62728", 20: "#1f77b4"}
    sizes = b1["sizes"]
    lines = [f"set terminal pngcairo size 1100,{380 * len(sizes)} font 'DejaVu Sans,10' noenhanced",
             f"set output '{path}'",
             f"set multiplot layout {len(sizes)},1",
             "set logscale y", "set grid",
             "set ylabel 'writer statement latency (ms)'",
             "set xlabel 'seconds since the reclaim started'",
             "set key top right opaque box",
             "set yrange [0.01:*]"]
    for s in sizes:
        runs = s["runs"]
        xmax = max(r["reclaim_s"] for r in runs) + 1.0
        lines.append("set title " + gq(f"B1 {s['label']}: one INSERT every 3 ms (busy_timeout 5000) while the "
                                       f"free half is reclaimed"))
        lines.append(f"set xrange [-1:{xmax:.1f}]")
        plots = []
        for r in runs:
            if r["method"] == "vacuum":
                title, color = f"full VACUUM ({r['reclaim_s']:.2f} s)", colors["vacuum"]
            else:
                title = f"sqlvigil step_budget {r['budget_ms']} ms ({r['reclaim_s']:.2f} s)"
                color = colors.get(r["budget_ms"], "#2ca02c")
            plots.append(f"'{r['plot']}' using 1:2 with points pt 7 ps 0.35 lc rgb '{color}' title {gq(title)} noenhanced")
        plots.append("30 with lines dt 2 lc rgb '#555555' title '30 ms = 1.5 x 20 ms'")
        lines.append("plot " + ", \\\n     ".join(plots))
    lines.append("unset multiplot")
    return gnuplot("\n".join(lines) + "\n", path)


def plot_b2(b2, path):
    colors = {"b2-autocheckpoint": "#d62728", "b2-sqlvigil": "#1f77b4", "b2-both": "#9467bd",
              "b2-sqlvigil-500": "#2ca02c", "b2-starved": "#7f7f7f"}
    plots = []
    for c in b2["cases"]:
        plots.append(f"'{c['plot']}' using 1:2 with lines lw 2 lc rgb '{colors.get(c['name'], '#000000')}' "
                     f"{'dt 2 ' if c['name'] == 'b2-starved' else ''}title {gq(b2_title(c))} noenhanced")
    script = "\n".join([
        "set terminal pngcairo size 1100,480 font 'DejaVu Sans,10' noenhanced",
        f"set output '{path}'",
        "set grid", "set key top left opaque box",
        "set xlabel 'seconds'", "set ylabel '-wal file size (MiB)'",
        f"set xrange [0:{b2['duration']}]",
        "set title 'B2: two writers at 500 commits/s each, two readers holding 20 ms of every 50 ms'",
        "plot 8 with lines dt 3 lc rgb '#555555' title '8 MiB target', \\\n     " + ", \\\n     ".join(plots),
    ]) + "\n"
    return gnuplot(script, path)


def b2_title(c):
    return {
        "b2-autocheckpoint": "applications' autocheckpoint (1000 pages) alone",
        "b2-sqlvigil": "sqlvigil (defaults), applications' autocheckpoint off",
        "b2-both": "sqlvigil (defaults) and the applications' autocheckpoint",
        "b2-sqlvigil-500": "sqlvigil, min_wal_pages = 500 (PASSIVE at 500 new frames, RESTART at 1000)",
        "b2-starved": "sqlvigil, a reader that never leaves (from 1 s)",
    }.get(c["name"], c["name"])


# ---- the page ------------------------------------------------------------------

def write(ctx, out, only):
    R = ctx.results
    meta = ctx.meta
    md = []
    add = md.append
    add("# Benchmarks\n")
    add("What sqlvigil costs the applications and what it saves them, measured side by side with the "
        "alternatives in one run on one machine (issues 6, 11, 12 and 14). These are measurements, not "
        "pass/fail tests; where sqlvigil misses a target, the note under it says why, with the evidence from "
        "the same run. Every figure on this page was written by the run described below.\n")
    add("## How to run\n")
    add("```sh\nmeson setup build --buildtype=release && ninja -C build\n"
        "meson test -C build --benchmark --verbose       # or: tests/bench/run.py --build build\n"
        "tests/bench/run.py --build build --quick        # small databases, short runs (report in build/bench-quick/)\n"
        "tests/bench/run.py --build build --report-only  # rewrite the page from the last run's results.json\n```\n")
    add("Options: `--only B1,B6` runs a subset, `--sqlvigil PATH` measures another binary, `--out DIR` "
        "writes the page elsewhere. Raw data (every writer statement's latency, WAL samples, daemon logs "
        "with `SQLVIGIL_DEBUG=1` step lines, the daemons' journal entries as `*.journal.json`, results.json) "
        "stay in `build/bench-data/`. Databases live in a temporary directory under `$TMPDIR` (default /tmp) "
        "and are removed at the end.\n")
    add("sqlvigil's figures about itself (how long it held the write lock, how many times, for which task; a "
        "backup's copy, snapshot and check times) come from its journal entries' fields (`SQLVIGIL_LOCK_USEC`, "
        "`SQLVIGIL_LOCK_HOLDS`, `SQLVIGIL_COPY_USEC`...) and from `sqlvigilctl stats`. Without a journald here, "
        "each daemon runs in a mount namespace of its own where `/run/systemd/journal/socket` is the "
        "benchmark's socket, and `$JOURNAL_STREAM` names its stderr, as under systemd (this needs root; "
        + ("it was available in this run" if getattr(ctx, "meta", {}).get("journal", True) else
           "**it was not available in this run, so the figures from journal fields are missing**")
        + "). The applications' figures are their own: every statement timed by `sqlvigil-loadgen`.\n")
    add("## This run\n")
    add("| | |\n|---|---|")
    for k, v in meta["rows"]:
        add(f"| {k} | {v} |")
    add("")
    add("The machine is shared: other work ran beside the benchmark. Each section says how busy the "
        f"machine's {os.cpu_count()} CPUs were while it ran (all processes) and how much of that was the benchmark's own "
        "processes, so a noisy figure can be recognised.\n")

    # Each benchmark's summary rows and section; B1 and B2 also draw a picture into out.
    parts = (
        ("B1", b1_summary, lambda r: b1_section(ctx, r, out)),
        ("B2", b2_summary, lambda r: b2_section(ctx, r, out)),
        ("B3", b3_summary, lambda r: b3_section(ctx, r)),
        ("B4", b4_summary, lambda r: b4_section(ctx, r)),
        ("B5", b5_summary, lambda r: b5_section(ctx, r)),
        ("B6", b6_summary, lambda r: b6_section(ctx, r)),
        ("B7", b7_summary, lambda r: b7_section(ctx, r)),
        ("B8", locks.b8_summary, lambda r: locks.b8_section(ctx, r)),
        ("B9", locks.b9_summary, lambda r: locks.b9_section(ctx, r)),
        ("B10", backups.b10_summary, lambda r: backups.b10_section(ctx, r, out)),
        ("B11", backups.b11_summary, lambda r: backups.b11_section(ctx, r)),
        ("B12", faults.b12_summary, lambda r: faults.b12_section(ctx, r)),
    )
    summary = []
    sections = []
    for name, summarize, section in parts:
        if name in only:
            summary += summarize(R[name])
            sections.append(section(R[name]))

    add("## Summary\n")
    add("| | sqlvigil | alternative | target | |")
    add("|---|---|---|---|---|")
    for row in summary:
        add("| " + " | ".join(row) + " |")
    add("")
    for s in sections:
        add(s)
    add("## Time\n")
    add("| step | seconds |\n|---|---|")
    for k, v in ctx.timings.items():
        add(f"| {k} | {v:.1f} |")
    add("")
    with open(os.path.join(out, "benchmarks.md"), "w") as f:
        f.write("\n".join(md))


def failed_section(name, res):
    return f"## {name}\n\nDid not run: `{res['error']}`\n"


def load_line(ctx, b):
    l = ctx.load.get(b)
    if not l:
        return ""
    return (f"*Machine load during {b}: CPUs {l['busy_pct']:.0f}% busy, of which the benchmark's own processes "
            f"{l['ours_pct']:.0f}%; {l['seconds']:.0f} s.*\n")


# ---- B1 ---------------------------------------------------------------------------

def b1_budget_runs(size):
    return [r for r in size["runs"] if r["method"] == "sqlvigil"]


def b1_summary(b1):
    if "error" in b1:
        return [["B1 reclaim stall", "did not run", "", "", ""]]
    rows = []
    for s in b1["sizes"]:
        vac = next(r for r in s["runs"] if r["method"] == "vacuum")
        for r in b1_budget_runs(s):
            if r["budget_ms"] != 20:
                continue
            stall_ok = r["all"]["max"] <= 1.5 * r["budget_ms"] / 1000 and not r["error"]
            rows.append([f"B1 {s['label']}: writer max stall (step_budget 20 ms)",
                         ms(r["all"]["max"]) + ("" if not r["error"] else " (the reclaim failed: see below)"),
                         f"full VACUUM {ms(vac['all']['max'])}", "≤ 30 ms", yes(stall_ok)])
            lh = b1_longest_hold(r)
            if lh:
                rows.append([f"B1 {s['label']}: sqlvigil's longest write-lock hold, any task (step_budget 20 ms)",
                             f"{ms(lh[1])} ({lh[0]})", "full VACUUM: the whole statement",
                             "≤ 20 ms (the budget)", yes(lh[1] <= r["budget_ms"] / 1000)])
            if s["label"] in ("256M", "32M"):
                ratio = vac["all"]["max"] / r["all"]["max"]
                rows.append([f"B1 {s['label']}: stall reduction", f"{ratio:.0f}×"
                             + (" (until the reclaim failed)" if r["error"] else ""), "", "≥ 30×",
                             yes(ratio >= 30 and not r["error"])])
            rt = r["reclaim_s"] / vac["reclaim_s"]
            # sqlvigil's time includes the checkpoints that give the space
            # back; the VACUUM statement's does not (the file shrinks only
            # at the checkpoint after it), so both ratios are shown and the
            # target is judged on the stricter one.
            whole = vac["reclaim_s"] + (vac.get("checkpoint_after_s") or 0)
            rows.append([f"B1 {s['label']}: reclaim time",
                         f"{r['reclaim_s']:.2f} s ({rt:.1f}× the statement, {r['reclaim_s'] / whole:.1f}× with its "
                         "checkpoint)" if not r["error"] else
                         f"{err_short(r['error'])} in {r['reclaim_s']:.2f} s",
                         f"full VACUUM {vac['reclaim_s']:.2f} s ({whole:.2f} s with the checkpoint that shrinks the "
                         "file)", "≤ 2×", yes(rt <= 2 and not r["error"])])
        runs = b1_budget_runs(s)
        fails = " / ".join(f"{r['writer']['failed']}" + (f" (`{r['writer']['first_error']}`)" if r["writer"]["failed"]
                                                         else "") for r in runs)
        rows.append([f"B1 {s['label']}: failed writes (" + " / ".join(f"{r['budget_ms']} ms" for r in runs) + ")",
                     fails, f"full VACUUM {vac['writer']['failed']}", "0",
                     yes(all(r["writer"]["failed"] == 0 for r in runs))])
        bad = [r for r in runs if qc_lines(r["quick_check"]) != ["ok"]]
        rows.append([f"B1 {s['label']}: database intact after the reclaims",
                     "; ".join(f"{r['budget_ms']} ms: **damaged**, quick_check {qc(r['quick_check'])}"
                               for r in bad) or "yes (quick_check ok)",
                     "yes" if vac["quick_check"] == ["ok"] else "no", "yes", yes(not bad)])
    return rows


def b1_section(ctx, b1, out):
    if "error" in b1:
        return failed_section("B1 reclaim stall", b1)
    md = ["## B1 reclaim stall\n", load_line(ctx, "B1")]
    md.append(
        "Each database is an application table `events(id, ts, kind, payload)` with an index on `ts`, "
        "about 1,000-byte rows, `auto_vacuum=incremental`, 4 KiB pages, WAL, whose **older half was "
        "deleted**: the free pages are at the start of the file and the live ones at its end, so every page "
        "incremental vacuum gives back is a page in use it must move first (the hard case for it; a full "
        "VACUUM rewrites the live half either way). Every case works on a fresh copy (fsynced). The writer "
        "is `sqlvigil-loadgen writer`: one INSERT of a 100-byte row every 3 ms, `busy_timeout=5000`, "
        "`synchronous=NORMAL`, `wal_autocheckpoint=0` (checkpoints are sqlvigil's job; in the VACUUM case "
        "nobody checkpoints during the measurement), each statement timed. After 1 s of writing, the space "
        "is reclaimed:\n\n"
        "- **full VACUUM**: what the old service's `optimize()` did, from a connection with "
        "`busy_timeout=5000` (its ANALYZE is not timed);\n"
        f"- **sqlvigil** with `[vacuum] interval = 1s` and `step_budget` 20 ms or {b1['other_budget']} ms, "
        "everything else default (`SQLVIGIL_DEBUG=1` logs every step).\n\n"
        "Reclaim time: the VACUUM statement, or sqlvigil's run from its first step to its result line "
        "(both leave the new pages in the WAL; the file shrinks at the next checkpoint). \"During\" counts "
        "the statements that started while the reclaim ran; max is over the whole run (a statement can "
        "start just before).\n")
    for s in b1["sizes"]:
        m = s["master"]
        md.append(f"### {s['label']}: {m['pages']} pages ({m['bytes'] / MiB:.0f} MiB), {m['free']} free; "
                  f"built in {m['total_s']:.1f} s\n")
        md.append("| reclaim | time | freed pages | writer p50 / p99 during | writer max | failed writes "
                  "| steps (p50 / max lock, over budget) | quick_check |")
        md.append("|---|---|---|---|---|---|---|---|")
        for r in s["runs"]:
            name = "full VACUUM" if r["method"] == "vacuum" else f"sqlvigil, step_budget {r['budget_ms']} ms"
            sl = r.get("step_lock")
            steps = (f"{sl['n']} ({ms(sl['p50'])} / {ms(sl['max'])}, {sl['over_budget']})" if sl else "1 (all)")
            md.append(f"| {name} | {r['reclaim_s']:.2f} s{' (' + err_short(r['error']) + ')' if r['error'] else ''} | "
                      f"{r['freed']} | {us_or_ms(r['during']['p50'])} / {us_or_ms(r['during']['p99'])} | "
                      f"{ms(r['all']['max'])} | {r['writer']['failed']} of {r['writer']['attempted']}"
                      f"{' (`' + r['writer']['first_error'] + '`)' if r['writer']['failed'] else ''} | {steps} | "
                      f"{qc(r['quick_check'])} |")
        base = s["runs"][0]["before"]
        md.append(f"\nBefore any reclaim the writer's statements took {us_or_ms(base['p50'])} (p50), "
                  f"{us_or_ms(base['p99'])} (p99), {ms(base['max'])} at most. The VACUUM's connection then "
                  f"needed {s['runs'][0].get('checkpoint_after_s', 0):.2f} s for the TRUNCATE checkpoint that "
                  "shrinks the file.\n")
        md.append(b1_holds(s))
        md.append(b1_stalls(s))
    err = plot_b1(b1, os.path.join(out, "bench-b1-latency.png"))
    md.append("![B1: writer latency over time, full VACUUM vs budgeted incremental vacuum](bench-b1-latency.png)\n"
              if not err else f"(picture not drawn: {err})\n")
    md.append(b1_notes(b1))
    return "\n".join(md)


def b1_longest_hold(r):
    """(what, seconds) of sqlvigil's longest single hold of the write lock
    in a run: the journal's per-run maximum (SQLVIGIL_LOCK_USEC), the
    stop's included; else stats' per-task maximum."""
    best = None
    for x in r.get("longest_runs") or []:
        if not best or x["lock_max"] > best[1]:
            best = (x["what"], x["lock_max"])
    if r.get("stop_hold") and (not best or r["stop_hold"][0] > best[1]):
        best = ("the final truncate checkpoint", r["stop_hold"][0])
    for task, h in (r.get("lock_holds") or {}).items():
        if not best or h["max_usec"] / 1e6 > best[1]:
            best = (task, h["max_usec"] / 1e6)
    return best


def b1_holds(size):
    """sqlvigil's holds of the write lock, per run: every task (sqlvigilctl
    stats, maintenance.lock_holds) and the final checkpoint (its journal
    entry)."""
    out = ["sqlvigil's holds of the write lock in each run, every task counted (`sqlvigilctl stats`: "
           "`maintenance.lock_holds`; the final checkpoint from its journal entry's SQLVIGIL_LOCK_HOLDS and "
           "LOCK_USEC), and its longest single holds with what took them (each run's journal entry: "
           "SQLVIGIL_LOCK_USEC is the run's longest hold, LOCK_HOLDS how many it took):\n"]
    for r in b1_budget_runs(size):
        tasks = "; ".join(f"{task}: {h['count']} hold{'s' if h['count'] != 1 else ''}, longest {h['max_usec'] / 1000:.1f} ms, "
                          f"{h['total_usec'] / 1000:.0f} ms in all" for task, h in sorted((r.get("lock_holds")
                                                                                            or {}).items()))
        stop = (f"; the final truncate checkpoint: {r['stop_hold'][1]} hold{'s' if r['stop_hold'][1] != 1 else ''}, "
                f"longest {ms(r['stop_hold'][0])}"
                if r.get("stop_hold") else "")
        longest = ", ".join(f"{x['what']} {ms(x['lock_max'])} ({x['holds']} hold{'s' if x['holds'] != 1 else ''})"
                            for x in (r.get("longest_runs") or [])[:4])
        out.append(f"- step_budget {r['budget_ms']} ms: {tasks or 'no stats'}{stop}. Longest: {longest or '–'}.")
    return "\n".join(out) + "\n"


def b1_stalls(size):
    out = ["The longest writer statements and what overlapped them (vacuum steps: their lock times from the step "
           "lines; other runs: what, its longest hold and its number of holds, from the journal):\n"]
    for r in b1_budget_runs(size):
        items = []
        for t in r["top"][:3]:
            what = []
            if t["steps"]:
                what.append(f"{len(t['steps'])} step{'s' if len(t['steps']) > 1 else ''} (" + ", ".join(f"{x * 1000:.1f}" for x in t["steps"][:8])
                            + (" …" if len(t["steps"]) > 8 else "") + " ms)")
            for name, held, n in t["checkpoints"]:
                what.append(f"{name} (longest hold {held * 1000:.1f} ms of {n})")
            if not what:
                what.append("no hold of sqlvigil's")
            rel = t["at"] - r["start"]
            items.append(f"{t['latency'] * 1000:.1f} ms at {rel:+.2f} s: " + ", ".join(what))
        out.append(f"- step_budget {r['budget_ms']} ms: " + "; ".join(items))
    return "\n".join(out) + "\n"


def b1_notes(b1):
    """What the misses are and why, from the measurements."""
    notes, damaged = [], []
    for s in b1["sizes"]:
        vac = next(r for r in s["runs"] if r["method"] == "vacuum")
        for r in b1_budget_runs(s):
            lbl = f"{s['label']}, step_budget {r['budget_ms']} ms"
            if (qc_lines(r["quick_check"]) != ["ok"] or (r["error"] and "after freeing" in r["error"])
                    or any(e in r["writer"]["first_error"] for e in ("not a database", "malformed"))):
                damaged.append((lbl, r))
            sl = r.get("step_lock")
            limit = 1.5 * r["budget_ms"] / 1000
            if sl and r["all"]["max"] > limit:
                c = r.get("stall_causes", {})
                parts = [f"{n} {what}" for what, n in (
                    ("overlapped a checkpoint's hold of the write lock", c.get("reset-checkpoint", 0)),
                    ("waited through two or more steps", c.get("several-steps", 0)),
                    ("overlapped one step", c.get("one-step", 0)),
                    ("overlapped no hold of sqlvigil's", c.get("other", 0))) if n]
                top = r["top"][0]
                held = max([x for x in top["steps"]] + [h for _, h, _ in top["checkpoints"]], default=None)
                text = (f"- **{lbl}: max stall {ms(r['all']['max'])} ({r['all']['max'] * 1000 / r['budget_ms']:.1f}× "
                        f"the budget).** Of the statements slower than {limit * 1000:.0f} ms, " + ", ".join(parts)
                        + f". Steps held the lock {ms(sl['p50'])} (p50), {ms(sl['max'])} at most, {sl['over_budget']} "
                        f"of {sl['n']} over the budget.")
                lh = b1_longest_hold(r)
                if lh:
                    text += f" sqlvigil's longest single hold in this run: {lh[0]}, {ms(lh[1])}."
                if r.get("overruns"):
                    text += (" Steps over the budget, and where their time went (the database thread's "
                             "/proc schedstat, sampled every 4 ms): "
                             + "; ".join(lib.overrun_text(o) for o in r["overruns"][:3]) + ".")
                if held is not None:
                    text += (f" The longest statement ({ms(top['latency'])}) overlapped holds of up to "
                             f"{ms(held)}; the rest is the busy handler: SQLite's default handler sleeps 1, 2, 5, "
                             "10, 15, 20… ms between tries, so a writer that found the lock taken just as a hold "
                             "began tries again 1, 3, 8, 18, 33, 53… ms later, and a hold of "
                             f"{ms(held)} costs it {lib.busy_retry_after(held * 1000)} ms. So a waiting writer "
                             f"stays within 1.5 × `step_budget` ({1.5 * r['budget_ms']:g} ms) only while every hold "
                             f"ends by its try at {lib.busy_retry_before(1.5 * r['budget_ms'])} ms.")
                notes.append(text)
            if r["budget_ms"] == 20 and s["label"] in ("256M", "32M") and r["all"]["max"] > 0 and \
                    vac["all"]["max"] / r["all"]["max"] < 30:
                other = [(x["label"], next(y for y in x["runs"] if y["method"] == "vacuum")["all"]["max"],
                          next(y for y in b1_budget_runs(x) if y["budget_ms"] == 20)["all"]["max"])
                         for x in b1["sizes"] if x is not s]
                notes.append(
                    f"- **{s['label']}: the stall reduction was {vac['all']['max'] / r['all']['max']:.0f}×**, under "
                    f"30×: the full VACUUM stalled the writer {ms(vac['all']['max'])} here, sqlvigil "
                    f"{ms(r['all']['max'])}. sqlvigil's stall is bounded by `step_budget` whatever the size; the "
                    "VACUUM's grows with the database and with the disk's speed at that moment"
                    + "".join(f" (at {lbl}: {ms(v)} against {ms(m)}, {v / m:.0f}×)" for lbl, v, m in other if m)
                    + ".")
            if sl and r["reclaim_s"] > 2 * vac["reclaim_s"]:
                lock_total = sum(x for _, _, x in r["steps"])
                notes.append(
                    f"- **{lbl}: reclaim took {r['reclaim_s']:.2f} s, {r['reclaim_s'] / vac['reclaim_s']:.1f}× "
                    f"the full VACUUM's {vac['reclaim_s']:.2f} s.** {sl['n']} steps of "
                    f"{r['freed'] / max(sl['n'], 1):.0f} pages on average held the lock {lock_total:.2f} s in all "
                    f"(p50 {ms(sl['p50'])} per step, against a target of {0.75 * r['budget_ms']:.0f} ms); the rest "
                    f"is the pauses that let writers in between steps, and the checkpoints the database thread runs "
                    f"between them ({len([x for x in r.get('runs') or [] if x['event'] == 'checkpoint'])} in this "
                    "run).")
            if r.get("degraded"):
                notes.append(f"- {lbl}: during or after the reclaim sqlvigil reported `{r['degraded'][0][:200]}`.")
    md = []
    if notes:
        md.append("**Where B1 misses, and why.**\n\n" + "\n".join(notes) + "\n")
        md.append(B1_DIAGNOSIS)
    else:
        md.append("Every B1 target was met in this run.\n")
    if damaged:
        md.append("### Database damage under a concurrent writer\n")
        for lbl, r in damaged:
            w = r["writer"]
            md.append(f"- {lbl}: the reclaim " + (err_short(r["error"]) if r["error"] else "ended ok")
                      + f"; the application's writer had {w['failed']} failed statements"
                      + (f" (first: `{w['first_error']}`)" if w["failed"] else "")
                      + f"; `PRAGMA quick_check` afterwards: {qc(r['quick_check'])}.")
        md.append("\n" + DAMAGE_DIAGNOSIS)
    return "\n".join(md)


B1_DIAGNOSIS = """What holds the write lock, and for how long (the figures are in the tables above; the
step lines and journal entries of each run are in `build/bench-data/b1-*.log` and `*.journal.json`):

1. **Vacuum steps** step `PRAGMA incremental_vacuum(N)` until they have held the lock for three
   fifths of `step_budget`, then commit what they freed. The time is checked between pages
   (src/db.c, db_vacuum_step()), not during the commit that ends the step, which writes every page
   the step changed to the WAL. N (from the measured cost per page, at most three quarters of
   sqlvigil's cache) is what bounds that commit, so a step of many pages whose commit is slower
   than the pages before it were (a stretch of costlier pages) can end past its budget.
2. **RESTART checkpoints** (the WAL-driven ones at twice `min_wal_pages` frames, and the final
   TRUNCATE) first copy what they can with a PASSIVE pass that blocks nobody, then take the write
   lock in slices only when the readers in the way will be gone in moments. A slice holds the lock
   while it copies the frames committed since the PASSIVE pass and syncs the database file:
   SQLite must sync the database before the WAL starts over, so that sync is always under the lock,
   and on a slow disk it is the longest part of the hold.
3. **What the writer sees** is the hold plus the rest of the busy-handler sleep it was in when the
   lock came free, and, right after a hold, the other commits that queued meanwhile.
"""

DAMAGE_DIAGNOSIS = """**This must not happen.** It did once, in the first version of the WAL watch:
closing *any* descriptor of the `-shm` file drops *all* POSIX locks the process holds on it, SQLite's
WAL locks included, so a look at the WAL index that opened and closed the file could release the
write lock a vacuum step held, and two connections then appended to the WAL at once. sqlvigil has
kept its descriptors of the database's files open for the connection's whole life since (files.h,
walindex.h), and the integration test `locks_kept` guards it; a damaged database here means that
rule, or another, was broken again.
"""


# ---- B2 ---------------------------------------------------------------------------

def b2_summary(b2):
    if "error" in b2:
        return [["B2 WAL bound", "did not run", "", "", ""]]
    c = {x["name"]: x for x in b2["cases"]}
    rows = [["B2 WAL high-water, readers leave gaps", mib(c["b2-sqlvigil"]["high_water"]) + " (defaults)",
             "autocheckpoint alone " + mib(c["b2-autocheckpoint"]["high_water"]), "≤ 8 MiB",
             yes(c["b2-sqlvigil"]["high_water"] <= 8 * MiB)]]
    if "b2-sqlvigil-500" in c:
        rows.append(["B2 … with min_wal_pages = 500", mib(c["b2-sqlvigil-500"]["high_water"]), "", "≤ 8 MiB",
                     yes(c["b2-sqlvigil-500"]["high_water"] <= 8 * MiB)])
    st = c.get("b2-starved")
    if st:
        rows.append(["B2 never-ending reader: starvation reported after", f"{st['starved_after_s']:.1f} s",
                     "autocheckpoint: never", "(reported)", "reader named" if st["reader_named"] else
                     "**reader not named**"])
    return rows


def b2_section(ctx, b2, out):
    if "error" in b2:
        return failed_section("B2 WAL bound", b2)
    md = ["## B2 WAL bound\n", load_line(ctx, "B2")]
    md.append(
        f"A 4 MiB database; two writers (`sqlvigil-loadgen writer`, one 500-byte row every 2 ms each, "
        f"busy_timeout 5000) and two readers (`reader --hold-ms 20 --gap-ms 30`: a read transaction held "
        f"20 ms of every 50 ms, so the WAL often has no reader at all) for {b2['duration']} s; the `-wal` "
        "file's size sampled every 20 ms. sqlvigil runs with its defaults (`[checkpoint] interval = 1min, "
        "min_wal_pages = 1000, truncate_wal_size = 256M`) unless said otherwise. Last: a reader that never "
        "leaves, started after 1 s, and the time until sqlvigil logs `checkpoints starved`.\n")
    md.append("| case | WAL high-water | WAL at the end | after everyone closed | sqlvigil checkpoints "
              "(interval / wal-pages / wal-restart / wal-size) | writes (failed) | writer p99 / max |")
    md.append("|---|---|---|---|---|---|---|")
    for c in b2["cases"]:
        ck = c.get("checkpoints")
        cks = " / ".join(str(ck[k]) for k in ("interval", "wal-pages", "wal-restart", "wal-size")) if ck else "–"
        md.append(f"| {b2_title(c)} | {mib(c['high_water'])} | {mib(c['final_bytes'])} | "
                  f"{mib(c['after_close_bytes'])} | {cks} | {c['writes']} ({c['failed']}) | "
                  f"{ms(c['p99'])} / {ms(c['max'])} |")
    st = next((c for c in b2["cases"] if c["name"] == "b2-starved"), None)
    if st:
        md.append(f"\nWith the never-ending reader, sqlvigil reported after {st['starved_after_s']:.2f} s: "
                  f"`{st['starved_line'][:300]}`\n")
    err = plot_b2(b2, os.path.join(out, "bench-b2-wal.png"))
    md.append("![B2: WAL size over time](bench-b2-wal.png)\n" if not err else f"(picture not drawn: {err})\n")
    md.append(b2_notes(b2))
    return "\n".join(md)


def b2_knob(c):
    """What the min_wal_pages = 500 case showed, as a sentence."""
    k, s = c.get("b2-sqlvigil-500"), c["b2-sqlvigil"]
    if not k:
        return "The high-water follows `min_wal_pages`. "
    return (f"The high-water follows `min_wal_pages`: at 500 it was {mib(k['high_water'])}"
            f"{' (target met)' if k['high_water'] <= 8 * MiB else ''}, with {k['checkpoints']['wal-restart']} "
            f"RESTARTs instead of {s['checkpoints']['wal-restart']}, each taking the write lock in short "
            f"slices (writer p99 / max {ms(k['p99'])} / {ms(k['max'])} against "
            f"{ms(s['p99'])} / {ms(s['max'])}; see B1). ")


def b2_notes(b2):
    c = {x["name"]: x for x in b2["cases"]}
    s = c["b2-sqlvigil"]
    notes = []
    if s["high_water"] > 8 * MiB:
        ck = s["checkpoints"]
        notes.append(
            f"- **sqlvigil with its defaults let the WAL reach {mib(s['high_water'])}** (the applications' own "
            f"autocheckpoint alone: {mib(c['b2-autocheckpoint']['high_water'])}). Its PASSIVE checkpoints "
            f"({ck['wal-pages']}, at 1000 new frames) copy nearly everything, but the WAL only starts over "
            "when a checkpoint has copied *every* frame and then a writer begins while no reader uses the WAL; "
            "with writers committing every millisecond and readers overlapping, that almost never happens. "
            f"So sqlvigil resets it with a RESTART ({ck['wal-restart']} here) once it holds twice "
            "`min_wal_pages` frames (2000 frames of 4 KiB pages and their 24-byte headers are 7.9 MiB)"
            + (f"; its RESTARTs found up to {s['restart_frames_max']} frames in the WAL "
               f"({s['restart_frames_max'] * 4120 / MiB:.1f} MiB; journal: SQLVIGIL_WAL_FRAMES)"
               if s.get("restart_frames_max") else "")
            + ". Frames keep coming while the WAL watch waits for its next look (every 100 ms at this rate), "
            "while the RESTART's PASSIVE pass copies and while a slice waits for the readers in the way, so the "
            "file ends a little above the threshold. "
            + b2_knob(c) + "The applications' autocheckpoint runs after *every* commit once the WAL holds "
            "1000 frames, so it catches a moment without readers more often: "
            f"{mib(c['b2-autocheckpoint']['high_water'])} alone in this run"
            + (f", {mib(c['b2-both']['high_water'])} together with sqlvigil" if "b2-both" in c else "")
            + "; but it never says when a reader holds it back (last row).")
    for name in ("b2-sqlvigil", "b2-sqlvigil-500"):
        x = c.get(name)
        rr = (x or {}).get("reset_results") or {}
        unfinished = sum(n for k, n in rr.items() if k != "ok")
        if x and unfinished:
            notes.append(
                f"- {b2_title(x)}: {unfinished} of its {sum(rr.values())} RESTART/TRUNCATE runs ended without "
                f"resetting the WAL ({', '.join(f'{n} {k}' for k, n in sorted(rr.items()))}; journal: "
                "SQLVIGIL_RESULT). A run copies what it can without the lock, then takes the write lock in "
                "slices of about `step_budget` while the readers in the way started after the last commit, and "
                "gives up after 2 s; these readers hold 20 ms each and overlap, so some run finds one in the way "
                "in every slice. It is tried again 250 ms later, and the WAL grows meanwhile"
                + (f" (the longest hold of any of its checkpoints: {ms(x['reset_lock_max_s'])})."
                   if x.get("reset_lock_max_s") is not None else "."))
    for name in ("b2-sqlvigil", "b2-sqlvigil-500"):
        x = c.get(name)
        if x and x.get("reset_lock_max_s") and x["max"] and x["max"] > 0.045:
            notes.append(
                f"- {b2_title(x)}: the writers waited up to {ms(x['max'])}. sqlvigil's longest hold of the write "
                f"lock there was {ms(x['reset_lock_max_s'])} (a RESTART slice: its wait for the readers, up to "
                "`step_budget`, then the copy of the frames since its PASSIVE pass and the database's sync, under "
                "the same hold; journal: SQLVIGIL_LOCK_USEC). With two writers, one that waited for the other's "
                f"commit and then for that hold got the lock at its try at {lib.busy_retry_before(x['max'] * 1000)} ms "
                "(SQLite's busy handler tries at 1, 3, 8, 18, 33, 53… ms).")
    if s.get("false_starvation"):
        notes.append(
            "- **The same short readers made sqlvigil report checkpoint starvation** (health `degraded`) although "
            f"none of them stays longer than 20 ms: `{s['false_starvation'][:200]}`. The rule asks for three "
            "checkpoints in a row that fell short, copied nothing new and saw no WAL reset; this is a bug.")
    if not notes:
        return "The B2 target was met in this run.\n"
    return "**Where B2 misses, and why:**\n\n" + "\n".join(notes) + "\n"


# ---- B3 ---------------------------------------------------------------------------

def b3_summary(b3):
    if "error" in b3:
        return [["B3 health check cost", "did not run", "", "", ""]]
    a, b = b3["1M"], b3["big"]
    if "pending" in a or "pending" in b:
        return [["B3 health check p50 (1 MB / 1 GB)", "pending: " + (a.get("pending") or b.get("pending")), "",
                 "≤ 50 µs, ratio ≤ 1.3", "pending"]]
    ratio = b["p50_us"] / max(a["p50_us"], 1)
    return [[f"B3 health check p50 / p99, 1 MB vs {b3['big_label']}",
             f"{a['p50_us']} / {a['p99_us']} µs vs {b['p50_us']} / {b['p99_us']} µs (ratio {ratio:.2f})", "",
             "≤ 50 µs, ratio ≤ 1.3", yes(b["p50_us"] <= 50 and ratio <= 1.3)]]


def b3_section(ctx, b3):
    if "error" in b3:
        return failed_section("B3 health check cost", b3)
    md = ["## B3 health check cost\n", load_line(ctx, "B3")]
    md.append("sqlvigil with `[health] interval = 50ms` on a 1 MiB database and on the "
              f"{b3['big_label']} one, for {b3.get('seconds', 10)} s each; the figures are the daemon's own timing of "
              "its health check (`stats` on the control socket: `health.check_usec_p50`, `check_usec_p99`, see "
              "docs/control.md): the file part on the event loop (stat() of the database and its -wal, the WAL "
              "index header, a statvfs() at most every 10 s) plus the probe on the database thread (one statement "
              "that reads sqlite_schema, journal_mode, page_count and freelist_count: a read transaction, no write "
              "lock). The look at the write lock after it (fcntl(F_GETLK) on the WAL index's lock byte, which takes "
              "nothing) is not in the daemon's figure; `sqlvigil-probe-loop` times it apart. With "
              "`SQLVIGIL_DEBUG=1` each check logs its two parts, whose medians are given too.\n")
    for k, lbl in (("1M", "1 MiB"), ("big", b3["big_label"])):
        v = b3[k]
        if "pending" in v:
            md.append(f"- {lbl}: pending: {v['pending']}")
            continue
        parts = (f" (medians of the parts: files {v['files_p50_us']} µs, probe {v['probe_p50_us']} µs)"
                 if "files_p50_us" in v else "")
        md.append(f"- {lbl}, in the daemon: p50 {v['p50_us']} µs, p99 {v['p99_us']} µs over {v.get('checks')} "
                  f"checks{parts}")
        for key, how in (("loop", "back to back"), ("loop_gap", "50 ms asleep between checks, as in the daemon")):
            loop = v.get(key) or {}
            if "p50_us" in loop:
                md.append(f"  - the same functions in `sqlvigil-probe-loop`, {how} ({loop['n']} checks): p50 "
                          f"{loop['p50_us']} µs, p99 {loop['p99_us']} µs (files {loop['files_p50_us']} µs, probe "
                          f"{loop['probe_p50_us']} µs, the lock look {loop['lock_look_p50_us']} µs)")
    missed = [b3[k] for k in ("1M", "big") if "p50_us" in b3[k] and b3[k]["p50_us"] > 50]
    if missed:
        a = b3["1M"]
        loop, gap = a.get("loop") or {}, a.get("loop_gap") or {}
        md.append("\n**Where B3 misses, and why.** The check costs the same whatever the database's size "
                  "(the two databases above), and the work itself is small: run back to back with sqlvigil's "
                  f"own functions it takes {loop.get('p50_us', '?')} µs (median). Run the same way in a process "
                  f"of its own but with 50 ms asleep between checks, as the daemon's checks come, it takes "
                  f"{gap.get('p50_us', '?')} µs (the daemon: {a['p50_us']} µs): the cost is that of "
                  "a thread that wakes from sleep on this shared virtual machine (caches, TLB and branch "
                  "predictors cold, system calls slower), not of anything sqlvigil does in the daemon. The probe "
                  "takes no lock an application waits for (B9); what remains are the system calls SQLite makes "
                  "for a read transaction (fcntl() locks on the database and the WAL index) and the stat() "
                  "calls."
                  + (f" The two databases' medians differ in the daemon ({b3['1M']['p50_us']} vs "
                     f"{b3['big']['p50_us']} µs) but not back to back ({loop.get('p50_us', '?')} vs "
                     f"{(b3['big'].get('loop') or {}).get('p50_us', '?')} µs): that difference is the spread of the "
                     "wake-up cost, not the size." if b3["big"].get("p50_us", 0) > 1.3 * a["p50_us"] else "")
                  + "\n")
    md.append("")
    return "\n".join(md)


# ---- B4 ---------------------------------------------------------------------------

def b4_summary(b4):
    if "error" in b4:
        return [["B4 footprint", "did not run", "", "", ""]]
    a = b4["after"]
    extra = a["RssAnon"] - b4["cache_bytes"]
    i = b4["idle"]
    return [
        ["B4 private memory (RssAnon) after maintenance", f"{a['RssAnon'] / 1024:.0f} KiB "
         f"(limit {(b4['cache_bytes'] + 2 * MiB) / 1024:.0f} KiB: the 2000 KiB cache + 2 MiB)",
         f"sqlite3 shell {b4['sqlite3_shell']['RssAnon'] / 1024:.0f} KiB", "≤ cache + 2 MB",
         yes(extra <= 2 * MiB)],
        ["B4 idle wake-ups (all threads, voluntary context switches)",
         f"{i.get('wakeups_per_s', i['slices'] / i['seconds']):.2f}/s ({i.get('wakeups', i['slices'])} in "
         f"{i['seconds']:.0f} s)", "", "≤ 1/s", yes(i.get("wakeups_per_s", 99) <= 1.0)],
        ["B4 idle CPU", f"{i['cpu_pct']:.4f}%", "", "≤ 0.1%", yes(i["cpu_pct"] <= 0.1)],
    ]


def b4_section(ctx, b4):
    if "error" in b4:
        return failed_section("B4 footprint", b4)
    md = ["## B4 footprint\n", load_line(ctx, "B4")]
    cyc = b4["cycles_s"]
    runs = b4["runs"]
    md.append(
        f"Memory from /proc/PID/status: private (RssAnon), shared libraries and other file mappings (RssFile) "
        f"and shared memory (RssShmem; the WAL index is a mapping of the `-shm` file, so it counts as RssFile). The page cache is configured as `cache_size = -2000` "
        f"(2000 KiB, SQLite's default, as the sqlite3 shell beside it has; sqlvigil's own default is 8 MiB, "
        f"which only vacuum steps fill). \"After maintenance\": {cyc:.0f} s of fast-motion maintenance with a "
        f"writer (one insert every 3 ms) on a copy of the purged database: health checks every 25 ms (about "
        f"{b4['health_checks']}, an hour is 720 at 5 s), checkpoints every 250 ms, vacuum every 3 s, analyze and "
        f"quick_check every 5 s; the log shows {runs['checkpoint']} checkpoints, {runs['vacuum']} vacuum runs, "
        f"{runs['analyze']} analyzes, {runs['quick_check']} quick_checks (an hour at the defaults: 60 "
        "checkpoints, 6 vacuum evaluations).\n")
    md.append("| process | RssAnon | RssFile | RssShmem | VmRSS | VmHWM | threads |")
    md.append("|---|---|---|---|---|---|---|")
    for lbl, m in (("sqlvigil after start", b4["start"]), ("sqlvigil after maintenance", b4["after"]),
                   (f"sqlvigil after {b4['idle']['seconds']:.0f} s idle", b4["idle_mem"]),
                   ("sqlite3 shell, same 1 MiB database open", b4["sqlite3_shell"])):
        md.append(f"| {lbl} | {m['RssAnon'] / 1024:.0f} KiB | {m['RssFile'] / 1024:.0f} KiB | "
                  f"{m['RssShmem'] / 1024:.0f} KiB | {m['VmRSS'] / 1024:.0f} KiB | {m['VmHWM'] / 1024:.0f} KiB | "
                  f"{m['Threads']} |")
    i = b4["idle"]
    md.append(
        f"\nIdle: defaults and `WATCHDOG_USEC=30000000` (the unit's `WatchdogSec=30s`, so a health check "
        f"every 15 s), a 1 MiB database, nobody else using it, {i['seconds']:.0f} s measured from "
        f"{b4.get('idle_since_ready_s', 1):.0f} s after READY=1"
        + ("".join(f" (its first quick_check, which comes within two minutes of the start, ran {t:.0f} s after "
                   f"READY=1: `{l[:80]}`)" for t, l in b4.get("before_log", [])[:1]))
        + f": {i['cpu_s'] * 1000:.1f} ms CPU ({i['cpu_pct']:.4f}%; /proc/PID/task/*/schedstat), "
        f"{i.get('wakeups', '?')} wake-ups ({i.get('wakeups_per_s', 0):.2f} a second: each time a thread went to "
        "sleep and was woken, its voluntary_ctxt_switches in /proc/PID/task/*/status), "
        f"{b4['watchdog_pings']} watchdog pings, {i['threads']} threads.\n")
    if i.get("per_thread"):
        md.append("| thread | wake-ups | involuntary switches | CPU |")
        md.append("|---|---|---|---|")
        for t in i["per_thread"]:
            md.append(f"| {t['name']}{' (the event loop)' if t['main'] else ''} | {t['wakeups']} | "
                      f"{t['involuntary']} | {t['cpu_s'] * 1000:.2f} ms |")
        md.append("")
    if i.get("wakeups_per_s", 0) > 1.0:
        loop = next((t for t in i["per_thread"] if t["main"]), None)
        others = sum(t["wakeups"] for t in i["per_thread"] if not t["main"])
        rounds = i["seconds"] / 15
        md.append(
            f"**Where B4 misses, and why.** {i['wakeups_per_s']:.2f} wake-ups a second against 1. The event loop "
            f"woke {loop['wakeups'] if loop else '?'} times in {i['seconds']:.0f} s: the WAL watch reads the WAL "
            "index once a second when the WAL is quiet (src/checkpoint.c, WAL_POLL_MAX; other processes' "
            "commits fire no hook of sqlvigil's, so this look is how \"as soon as the WAL reaches "
            "min_wal_pages\" is kept), which alone is one a second; on top come the health rounds (about "
            f"{rounds:.0f} in this window, one every 15 s): the round's timer, the probe's result coming back "
            f"from the database thread, the watchdog ping. The other threads woke {others} times together (the "
            "database thread once per probe). Closing the gap means looking at a quiet WAL less often than once "
            "a second (letting the look back off further while nothing is written, at the price of noticing the "
            "first burst after a quiet spell later) or being told of writes by inotify on the -wal.\n")
    if i["cpu_pct"] > 0.1:
        md.append(f"**B4 idle CPU missed**: {i['cpu_pct']:.4f}%.\n")
    if b4.get("idle_log"):
        md.append("sqlvigil logged while idle: " + "; ".join(f"`{l[:120]}`" for l in b4["idle_log"][:5]) + "\n")
    return "\n".join(md)


# ---- B5 ---------------------------------------------------------------------------

def b5_summary(b5):
    if "error" in b5:
        return [["B5 startup", "did not run", "", "", ""]]
    return [[f"B5 exec to READY=1 ({b5['label']})", f"{b5['median'] * 1000:.2f} ms (median of {b5['n']})",
             f"sqlite3 shell exec+open+query+exit {b5['floors']['shell'] * 1000:.1f} ms", "≤ 10 ms",
             yes(b5["median"] <= 0.010)]]


def b5_section(ctx, b5):
    if "error" in b5:
        return failed_section("B5 startup", b5)
    md = ["## B5 startup\n", load_line(ctx, "B5")]
    f = b5["floors"]
    md.append(
        f"`sqlvigil --config` on the {b5['label']} database ({b5['bytes'] / MiB:.0f} MiB), spawned with "
        f"posix_spawn and timed from just before the spawn to the arrival of READY=1 on the notification "
        f"socket, {b5['n']} times; periodic maintenance is off so nothing else runs.\n")
    md.append("| | median | min | max |\n|---|---|---|---|")
    md.append(f"| sqlvigil exec to READY=1 | {b5['median'] * 1000:.1f} ms | {b5['min'] * 1000:.1f} ms | "
              f"{b5['max'] * 1000:.1f} ms |")
    md.append(f"| `sqlvigil --version` (exec, dynamic linking, exit) | {f['version'] * 1000:.1f} ms | | |")
    md.append(f"| `/bin/true` | {f['true'] * 1000:.1f} ms | | |")
    md.append(f"| `sqlite3 DB 'PRAGMA journal_mode; SELECT count(*) FROM sqlite_schema'` | "
              f"{f['shell'] * 1000:.1f} ms | | |")
    for k, lbl in (("empty", "an empty `main()`"), ("empty_sqlite", "an empty `main()` linked with -lsqlite3"),
                   ("empty_sqlite_systemd_inih", "an empty `main()` linked with -lsqlite3 -lsystemd -linih")):
        if k in f:
            md.append(f"| {lbl} | {f[k] * 1000:.1f} ms | | |")
    own = sorted(b5["own"])
    md.append(f"\nsqlvigil's own \"ready in\" (from reading its configuration to READY=1): "
              f"{own[len(own) // 2] if own else '?'} (median).\n")
    if b5["median"] > 0.010:
        md.append(
            f"**Missed.** Most of the time is before sqlvigil's first instruction: on this machine the "
            f"spawn of `sqlvigil --version` alone takes {f['version'] * 1000:.1f} ms against "
            f"{f['true'] * 1000:.1f} ms for `/bin/true`. The difference is loading and relocating "
            f"{len(b5.get('libs', [])) or 'its'} shared libraries ({', '.join(b5.get('libs', []))}): "
            "Debian 12's libsystemd (252) links libgcrypt, libgpg-error, liblzma, libzstd, liblz4 and "
            "libcap, which sqlvigil never uses (it needs sd-event, sd-daemon and sd_journal_send). Opening the "
            "database, applying the pragmas and the first health check take the remaining "
            f"{(b5['median'] - f['version']) * 1000:.1f} ms, independent of the database's size. What would "
            "close it: send the notifications and journal entries without libsystemd (sd_notify and the "
            "journal's native protocol are each a datagram on a Unix socket) and replace sd-event with epoll "
            "plus timerfd/signalfd, or link libsystemd statically"
            + (f" — in this run an empty `main()` linked with -lsqlite3 -lsystemd -linih took "
               f"{f['empty_sqlite_systemd_inih'] * 1000:.1f} ms to spawn and exit, with -lsqlite3 alone "
               f"{f['empty_sqlite'] * 1000:.1f} ms" if "empty_sqlite_systemd_inih" in f else "") + ".\n")
    return "\n".join(md)


# ---- B6 ---------------------------------------------------------------------------

def b6_summary(b6):
    if "error" in b6:
        return [["B6 stop checkpoint", "did not run", "", "", ""]]
    return [[f"B6 stop with a {b6['wal_mib']} MiB WAL (medians of {len(b6['rounds'])} rounds)",
             f"{b6['daemon_s'] * 1000:.0f} ms SIGTERM to exit (checkpoint {b6['daemon_ckpt_s'] * 1000:.0f} ms)",
             f"sqlite3 shell {b6['shell_s'] * 1000:.0f} ms (statement {b6['shell_stmt_s'] * 1000:.0f} ms)",
             "≤ 1.2×", f"{yes(b6['ratio'] <= 1.2)} ({b6['ratio']:.2f}×)"]]


def b6_section(ctx, b6):
    if "error" in b6:
        return failed_section("B6 stop checkpoint", b6)
    md = ["## B6 stop checkpoint\n", load_line(ctx, "B6")]
    md.append(
        f"A database with {b6['wal_bytes'] / MiB:.0f} MiB of WAL ({b6['wal_mib']} MiB of new rows and their "
        "index pages, written with `wal_autocheckpoint=0` by a process that keeps its connection open, so the "
        "WAL stays as it is), and an identical copy (database and WAL copied, fsynced, its WAL index rebuilt "
        "by a second such process before anything is timed). On the copy: `sqlite3 COPY` running `PRAGMA "
        "wal_checkpoint(TRUNCATE)`, timed from spawn to exit, and its `.timer` for the statement alone. On "
        "the original: sqlvigil (its checkpoints off, so the WAL is untouched until the stop), SIGTERM, timed "
        "to its exit; its checkpoint time is from its `stopping; final truncate checkpoint` line to its `done` "
        "line. Three rounds on fresh pairs, alternating which goes first; the summary takes the medians.\n")
    md.append("| round | sqlvigil SIGTERM to exit | its checkpoint | sqlite3 shell spawn to exit | its statement "
              "| ratio | WAL after (sqlvigil / shell) |")
    md.append("|---|---|---|---|---|---|---|")
    for i, r in enumerate(b6["rounds"], 1):
        md.append(f"| {i} ({'sqlvigil' if r['daemon_first'] else 'shell'} first) | {r['daemon_s'] * 1000:.0f} ms | "
                  f"{r.get('daemon_ckpt_s', 0) * 1000:.0f} ms | {r['shell_s'] * 1000:.0f} ms | "
                  f"{r.get('shell_stmt_s', 0) * 1000:.0f} ms | {r['ratio']:.2f} | {r['daemon_wal_after']} / "
                  f"{r['shell_wal_after']} bytes |")
    md.append(f"\nsqlvigil's log: `{b6['rounds'][0].get('daemon_line')}`. Setup (writing the WAL, copying it): "
              f"{b6['rounds'][0]['setup_s']:.1f} s a round.\n")
    if b6["ratio"] > 1.2:
        md.append(f"**Missed** ({b6['ratio']:.2f}×): " + b6_note(b6))
    return "\n".join(md)


def b6_note(b6):
    d, s = b6["daemon_ckpt_s"], b6["shell_stmt_s"]
    rest = b6["daemon_s"] - d
    per = ", ".join(f"{r['ratio']:.2f}" for r in b6["rounds"])
    e = next((r["stop_entry"] for r in b6["rounds"] if r.get("stop_entry")), None)
    if d > 1.2 * s and e:
        dur, holds, total, longest = (e["DURATION_USEC"] / 1e6, e["LOCK_HOLDS"], e["LOCK_TOTAL_USEC"] / 1e6,
                                      e["LOCK_USEC"] / 1e6)
        return (f"the checkpoint itself took {d * 1000:.0f} ms in sqlvigil against {s * 1000:.0f} ms for the "
                f"shell's statement (ratios per round: {per}). The shell truncates the WAL in one call, holding the "
                "write lock throughout. sqlvigil's stop follows the lock rule of every other checkpoint (issue 12): "
                "a PASSIVE pass that copies the frames without the lock, then the WAL is started over and the "
                "-wal file shortened in pieces of about `step_budget`, the write lock released between pieces so "
                f"that writers get in. Its journal entry (first round): {holds} holds of the write lock, "
                f"{total * 1000:.0f} ms in all, the longest {longest * 1000:.1f} ms, in a run of "
                f"{dur * 1000:.0f} ms. Between the holds come {max(holds - 1, 0)} pauses of at least half of "
                f"`step_budget` each (at least {max(holds - 1, 0) * 10} ms at 20 ms), which no writer used here, "
                "and each piece is handed to the database thread and back; the shell's one call has neither. "
                "The remaining "
                f"{rest * 1000:.0f} ms of sqlvigil's stop are the signal, the worker finishing, closing and "
                "exiting.\n")
    if d > 1.2 * s:
        return (f"the checkpoint itself took {d * 1000:.0f} ms in sqlvigil against {s * 1000:.0f} ms for the "
                f"shell's statement (ratios per round: {per}); the journal fields that would say how it was spent "
                "were not captured in this run.\n")
    return (f"the checkpoints took about the same ({d * 1000:.0f} ms vs {s * 1000:.0f} ms); the other "
            f"{rest * 1000:.0f} ms of sqlvigil's stop are around it.\n")


# ---- B7 ---------------------------------------------------------------------------

def b7_summary(b7):
    if "error" in b7:
        return [["B7 concurrent writes", "did not run", "", "", ""]]
    s, o = b7["cases"]
    rate = lambda c: 100 * c["succeeded"] / max(c["attempted"], 1)  # noqa: E731
    ok = s["succeeded"] == s["attempted"] and s["rows_ok"] and qc_lines(s["quick_check"]) == ["ok"]
    return [[f"B7 8 writers × {b7['count']}", f"{rate(s):.2f}% ({s['failed']} failed, rows "
             f"{'all there' if s['rows_ok'] else 'missing'}, quick_check {qc(s['quick_check'])})",
             f"full VACUUM + ANALYZE: {rate(o):.2f}%", "100%", yes(ok)]]


def b7_section(ctx, b7):
    if "error" in b7:
        return failed_section("B7 concurrent writes", b7)
    md = ["## B7 concurrent writes\n", load_line(ctx, "B7")]
    md.append(
        f"The old service's test was \"5 concurrent writes, at least 4 succeed\". Here: 8 writer processes × "
        f"{b7['count']} single-row inserts (one every 1 ms each, busy_timeout 5000, `synchronous=NORMAL`, "
        f"SQLite's default autocheckpoint) on a copy of the {b7['label']} purged database, (a) while sqlvigil "
        "runs its maintenance at a fast pace (vacuum evaluated every 1 s with step_budget 20 ms, checkpoints "
        "every 2 s and at 1000 frames, ANALYZE every 3 s, quick_check every 4 s), and (b) with the old "
        "`optimize()` instead: a full VACUUM and ANALYZE one second in. Rows are counted per writer afterwards "
        "by an independent client.\n")
    md.append("| | writes succeeded | failed | rows all there | writer p99 / max | quick_check | maintenance "
              "during the writes |")
    md.append("|---|---|---|---|---|---|---|")
    for c in b7["cases"]:
        if c["method"] == "sqlvigil":
            m = c["maintenance"]
            maint = (f"{m['vacuum_steps']} vacuum steps ({m['vacuum_runs']} runs ended), {m['checkpoints']} "
                     f"checkpoints, {m['analyze']} analyze, {m['quick_check']} quick_check")
            name = "sqlvigil"
        else:
            maint = f"VACUUM + ANALYZE {c['optimize_s']:.2f} s" + (f" ({c['optimize_error']})"
                                                                   if c["optimize_error"] else "")
            name = "old optimize()"
        md.append(f"| {name} | {c['succeeded']} of {c['attempted']} | {c['failed']} | "
                  f"{'yes' if c['rows_ok'] else '**no**'} | {ms(c['p99'])} / {ms(c['max'])} | "
                  f"{qc(c['quick_check'])} | {maint} |")
    s = b7["cases"][0]
    lk = s.get("locks")
    holds = s.get("holds") or {}
    if holds or lk:
        md.append(
            "\nsqlvigil's holds of the write lock meanwhile (`sqlvigilctl stats`, `maintenance.lock_holds`): "
            + ("; ".join(f"{task} {h['count']} holds, longest {h['max_usec'] / 1000:.1f} ms, "
                         f"{h['total_usec'] / 1000:.0f} ms in all" for task, h in sorted(holds.items())) or "none")
            + (f"; the WAL peaked at {mib(lk['wal_max_bytes'])} (its checkpoint lines)" if lk else "")
            + f". The writers' maximum of {ms(s['max'])} is longer than any of them: with eight writers "
            "committing every millisecond each, a writer that keeps losing the lock to the seven others sleeps its "
            "way up SQLite's busy-handler ladder (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms, then 100 ms "
            "each). The writers also checkpoint among themselves here (SQLite's autocheckpoint is on); while one "
            "of them holds the checkpoint lock, SQLite turns sqlvigil's checkpoint away at once and sqlvigil "
            "retries every millisecond for at least 20 ms.")
    if s.get("errors"):
        md.append("\nsqlvigil logged: " + "; ".join(f"`{e[:200]}`" for e in s["errors"]))
    if s["first_errors"]:
        md.append("\nWriters' first errors: " + "; ".join(f"`{e}`" for e in s["first_errors"]))
    if s["failed"] or not s["rows_ok"] or qc_lines(s["quick_check"]) != ["ok"]:
        md.append("\n**Missed.** See B1, *Database damage under a concurrent writer*.")
    md.append("")
    return "\n".join(md)
