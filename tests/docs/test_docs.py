#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The documentation against the program: the catalog, the man pages and the
example configuration must say what the code does, so these tests read the
facts from the code (src/messages.h, the log_event() calls, the key table as
`sqlvigil --check-config` prints it) and never from a list kept here.

Usage: test_docs.py CASE. Exit status 0 passed, 1 failed, 77 skipped.
Paths come from the environment (tests/meson.build sets them):
  SQLVIGIL_SOURCE_ROOT  the source tree
  SQLVIGIL              the built daemon
  SCDOC                 scdoc, if meson found it (else looked up in $PATH)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCE_ROOT = os.environ.get("SQLVIGIL_SOURCE_ROOT",
                             os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SQLVIGIL = os.environ.get("SQLVIGIL", os.path.join(SOURCE_ROOT, "build", "src", "sqlvigil"))


def src(*parts):
    return os.path.join(SOURCE_ROOT, *parts)


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


# ---- Facts from the code ---------------------------------------------------

def message_ids():
    """{NAME: id} from src/messages.h (SQLVIGIL_MESSAGE_NAME "id")."""
    ids = dict(re.findall(r'#define\s+SQLVIGIL_MESSAGE_(\w+)\s+"([0-9a-f]{32})"', read(src("src", "messages.h"))))
    check(len(ids) >= 10, f"found only {len(ids)} MESSAGE_IDs in src/messages.h; has its format changed?")
    return ids


def c_functions(text):
    """The bodies of a C file's top-level functions (from a line that ends in
    '{' at column 0 context to the next '}' at column 0)."""
    return re.findall(r"^\w[^;{}]*\)\s*\{\n.*?^\}", text, flags=re.S | re.M)


def task_report_fields():
    """The fields maintenance.c adds to every task's entry: the log_field()
    calls of the function that logs a TaskReport (log_event() with
    report->message_id)."""
    common = set()
    for name in sorted(os.listdir(src("src"))):
        if name.endswith(".c"):
            for body in c_functions(read(src("src", name))):
                if re.search(r"log_event\([^;]*?->message_id", body, flags=re.S):
                    common |= set(re.findall(r'log_field\(\s*&?\w+\s*,\s*"(\w+)"', body))
    check(common, "found no function that logs a TaskReport (log_event() with ->message_id)")
    return common


def event_fields():
    """{message name: set of journal fields its entries may carry}. In each
    function of src/*.c, the log_field() calls since the LogFields was last
    cleared belong to the log_event() that follows them, or to the
    TaskReport whose message_id is set there (maintenance_end() logs it
    with the fields of task_report_fields()). log.c adds SQLVIGIL_DATABASE
    and SQLVIGIL_EVENT to every event."""
    token = re.compile(r'log_field\(\s*&?[\w.>-]+\s*,\s*"(?P<field>\w+)"'
                       r'|(?P<reset>\bLogFields\s+\w+\s*=\s*\{|=\s*\(LogFields\)\s*\{|task_report_init\()'
                       r'|log_event\([^;]*?SQLVIGIL_MESSAGE_(?P<message>\w+)'
                       r'|(?:\.|->)message_id\s*=\s*SQLVIGIL_MESSAGE_(?P<report>\w+)', re.S)
    common = task_report_fields()
    fields = {}
    for name in sorted(os.listdir(src("src"))):
        if not name.endswith(".c"):
            continue
        for body in c_functions(read(src("src", name))):
            pending = set()
            reports = set()
            for m in token.finditer(body):
                if m.group("field"):
                    pending.add(m.group("field"))
                elif m.group("reset"):
                    pending = set()
                elif m.group("report"):
                    reports.add(m.group("report"))
                else:
                    fields.setdefault(m.group("message"), set()).update(
                        pending | {"SQLVIGIL_DATABASE", "SQLVIGIL_EVENT"})
            # A report's fields are set before or after its message_id; all
            # of them in the function belong to it.
            for report in reports:
                fields.setdefault(report, set()).update(
                    pending | common | {"SQLVIGIL_DATABASE", "SQLVIGIL_EVENT"})
    return fields


def parse_catalog(text):
    """[(id, {header: [values]}, body)] of a catalog file."""
    entries = []
    current = None
    for line in text.split("\n"):
        if line.startswith("#") and current is None:
            continue
        m = re.match(r"^-- ([0-9a-f]{32})(?: \S+)?$", line)
        if m:
            current = [m.group(1), {}, [], True]  # in headers
            entries.append(current)
            continue
        if current is None:
            check(not line.strip(), f"catalog text outside any entry: {line!r}")
            continue
        if current[3]:
            if not line.strip():
                current[3] = False
                continue
            h = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            check(h, f"entry {current[0]}: malformed header line {line!r}")
            current[1].setdefault(h.group(1), []).append(h.group(2))
        else:
            current[2].append(line)
    return [(i, headers, "\n".join(body)) for i, headers, body, _ in entries]


def effective_config(args):
    """[(section, key, is_set, value)] from `sqlvigil --check-config ARGS`,
    in the order printed. An unset key is printed as "# key =  ; help"."""
    r = run([SQLVIGIL, "--check-config"] + args)
    check(r.returncode == 0, f"sqlvigil --check-config {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    keys = []
    section = None
    for line in r.stdout.splitlines():
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^(# )?(\w+) =(?: (.*?))?(?:  ; .*)?$", line)
        if m and section:
            keys.append((section, m.group(2), m.group(1) is None, m.group(3) or ""))
    check(len(keys) >= 30, f"found only {len(keys)} keys in the output of sqlvigil --check-config")
    return keys


def event_words():
    """{message name: SQLVIGIL_EVENT word} from the log_event() calls."""
    words = {}
    for name in sorted(os.listdir(src("src"))):
        if name.endswith(".c"):
            text = read(src("src", name))
            pairs = re.findall(r'log_event\([^;]*?SQLVIGIL_MESSAGE_(\w+),\s*"([\w-]+)"', text, flags=re.S)
            # A TaskReport: message_id and event set one after the other.
            pairs += re.findall(r'(?:\.|->)message_id\s*=\s*SQLVIGIL_MESSAGE_(\w+);\s*\w+(?:\.|->)event\s*=\s*"([\w-]+)"',
                                text)
            for message, word in pairs:
                check(words.get(message, word) == word, f"{message} is logged as {words.get(message)} and {word}")
                words[message] = word
    return words


def health_codes():
    """{reason code word: state} from src/health.c ("none" is ok)."""
    text = read(src("src", "health.c"))
    names = dict(re.findall(r'\[HEALTH_CODE_(\w+)\]\s*=\s*"([\w-]+)"', text))
    states = {"NONE": "ok"}
    for state, code in re.findall(r"add\(\s*&v,\s*HEALTH_(\w+),\s*HEALTH_CODE_(\w+)", text):
        states[code] = state.lower()
    check(set(names) == set(states), f"health codes without a rule, or rules without a name: "
                                     f"{sorted(set(names) ^ set(states))}")
    return {names[c]: states[c] for c in names}


def scd_sections(text, level="#"):
    """{heading: text under it} for the headings of one level of an scd page."""
    parts = re.split(rf"^{level} (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def conf_page_keys(text):
    """{section: [(key, block text)]} from docs/sqlvigil.conf.5.scd: the
    subsections "## [section]" of KEYS, each key an entry "*key* = ...". """
    keys_part = scd_sections(text)["KEYS"]
    result = {}
    for heading, body in scd_sections(keys_part, "##").items():
        m = re.match(r"^\[(\w+)\]$", heading)
        check(m, f"sqlvigil.conf.5: subsection '{heading}' under KEYS is not a [section]")
        entries = re.split(r"^\*(\w+)\* = ", body, flags=re.M)
        result[m.group(1)] = [(entries[i], entries[i + 1]) for i in range(1, len(entries), 2)]
    return result


# ---- Cases -----------------------------------------------------------------

def case_catalog(tmp):
    """docs/sqlvigil.catalog explains every MESSAGE_ID, journalctl accepts
    it, and its @FIELD@s are fields the events really carry."""
    journalctl = shutil.which("journalctl")
    if not journalctl:
        raise Skip("journalctl is not installed")
    ids = message_ids()
    by_id = {v: k for k, v in ids.items()}
    catalog_path = src("docs", "sqlvigil.catalog")
    entries = parse_catalog(read(catalog_path))
    fields = event_fields()

    seen = set()
    for entry_id, headers, body in entries:
        check(entry_id not in seen, f"{entry_id} has two entries")
        seen.add(entry_id)
        check(entry_id in by_id, f"catalog entry {entry_id} is no MESSAGE_ID in src/messages.h")
        name = by_id[entry_id]
        for h in ("Subject", "Defined-By", "Documentation"):
            check(len(headers.get(h, [])) == 1, f"{name} ({entry_id}): needs exactly one {h}: header")
        check(headers["Defined-By"] == ["sqlvigil"], f"{name}: Defined-By: is not sqlvigil")
        check(headers["Documentation"][0].startswith("man:"), f"{name}: Documentation: is no man: page")
        check(len(body.strip()) > 200, f"{name}: the explanation is missing or too short")
        check(name in fields, f"no log_event() call in src/ uses SQLVIGIL_MESSAGE_{name}")
        text = headers["Subject"][0] + "\n" + body
        for field in sorted(set(re.findall(r"@(\w+)@", text))):
            check(field in fields[name],
                  f"{name}: the catalog uses @{field}@, but no {name} entry carries that field "
                  f"(it carries {', '.join(sorted(fields[name]))})")
        for line in body.split("\n"):
            check(len(line) <= 76, f"{name}: line longer than 76 characters: {line!r}")
    missing = sorted(set(ids.values()) - seen)
    check(not missing, "no catalog entry for " + ", ".join(f"{by_id[i]} ({i})" for i in missing))

    # Exactly as a package installs it, under a scratch root: journalctl
    # must parse it without a complaint and list every ID with its subject.
    catalogdir = os.path.join(tmp, "usr", "lib", "systemd", "catalog")
    os.makedirs(catalogdir)
    shutil.copy(catalog_path, catalogdir)
    r = run([journalctl, f"--root={tmp}", "--update-catalog"])
    check(r.returncode == 0, f"journalctl --update-catalog: exit {r.returncode}: {r.stderr.strip()}")
    check(not r.stderr.strip(), f"journalctl --update-catalog complained: {r.stderr.strip()}")
    r = run([journalctl, f"--root={tmp}", "--list-catalog"])
    check(r.returncode == 0, f"journalctl --list-catalog: exit {r.returncode}: {r.stderr.strip()}")
    listed = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    subjects = {i: h["Subject"][0] for i, h, _ in entries}
    for name, i in sorted(ids.items()):
        check(i in listed, f"journalctl --list-catalog does not list {name} ({i})")
        check(listed[i] == f"sqlvigil: {subjects[i]}",
              f"{name}: journalctl lists {listed[i]!r}, expected 'sqlvigil: {subjects[i]}'")


def case_man_render(tmp):
    """Every man page goes through scdoc without a word on stderr, and groff
    and man(1) render it without a warning."""
    scdoc = os.environ.get("SCDOC") or shutil.which("scdoc")
    if not scdoc:
        raise Skip("scdoc is not installed, so the man pages cannot be built (Debian: apt-get install scdoc)")
    groff = shutil.which("groff")
    man = shutil.which("man")
    if not groff and not man:
        raise Skip("neither groff nor man is installed to render the man pages (Debian: apt-get install groff)")
    pages = sorted(f for f in os.listdir(src("docs")) if f.endswith(".scd"))
    check(len(pages) >= 3, f"expected the three man pages in docs/, found {pages}")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for page in pages:
        out = os.path.join(tmp, page[:-len(".scd")])
        with open(src("docs", page), "rb") as f:
            r = subprocess.run([scdoc], stdin=f, capture_output=True, timeout=60)
        check(r.returncode == 0 and not r.stderr.strip(),
              f"scdoc {page}: exit {r.returncode}: {r.stderr.decode(errors='replace').strip()}")
        with open(out, "wb") as f:
            f.write(r.stdout)
        renders = []
        if groff:
            renders.append([groff, "-t", "-man", "-Tutf8", "-ww", "-z", out])
        if man:
            renders.append([man, "--warnings", "-E", "UTF-8", "-l", out])
        for args in renders:
            r = run(args, env=env)
            check(r.returncode == 0, f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
            check(not r.stderr.strip(), f"{os.path.basename(args[0])} warns about {page}:\n{r.stderr.strip()}")
            if args[0] == man:
                check("NAME" in r.stdout and "SEE ALSO" in r.stdout, f"man -l {page}: NAME or SEE ALSO missing")


def case_man_conf_keys(tmp):
    """sqlvigil.conf.5 documents every key under its section, in the order of
    the key table, with the default that sqlvigil itself reports."""
    daemon = effective_config([])
    page = conf_page_keys(read(src("docs", "sqlvigil.conf.5.scd")))
    documented = [(section, key) for section, entries in page.items() for key, _ in entries]
    expected = [(section, key) for section, key, _, _ in daemon]
    missing = [f"[{s}] {k}" for s, k in expected if (s, k) not in documented]
    extra = [f"[{s}] {k}" for s, k in documented if (s, k) not in expected]
    check(not missing, "sqlvigil.conf.5 does not document " + ", ".join(missing))
    check(not extra, "sqlvigil.conf.5 documents keys sqlvigil does not have: " + ", ".join(extra))
    check(documented == expected, "sqlvigil.conf.5 lists the keys in another order than sqlvigil --check-config")
    blocks = {(section, key): block for section, entries in page.items() for key, block in entries}
    for section, key, is_set, value in daemon:
        block = blocks[(section, key)]
        m = re.search(r"^\tDefault: (?:\*([^*]+)\*|(unset))", block, flags=re.M)
        check(m, f"sqlvigil.conf.5: [{section}] {key} has no line 'Default: *value*.' or 'Default: unset'")
        documented_default = m.group(1) if m.group(1) else None
        actual = value if is_set else None
        check(documented_default == actual,
              f"sqlvigil.conf.5: [{section}] {key} says the default is {documented_default or 'unset'}, "
              f"sqlvigil --check-config says {actual or 'unset'}")
        check(len(block.split()) >= 15, f"sqlvigil.conf.5: [{section}] {key} is hardly explained")


def case_man_daemon(tmp):
    """sqlvigil.8 lists what the code defines: every MESSAGE_ID with its
    event word and fields, every health reason code with its state, every
    exit status, every option and every metric."""
    text = read(src("docs", "sqlvigil.8.scd"))
    sections = scd_sections(text)
    ids = message_ids()
    words = event_words()
    fields = event_fields()
    logging = sections["LOGGING"]
    for name, i in sorted(ids.items()):
        word = words.get(name)
        check(word, f"no log_event() call uses SQLVIGIL_MESSAGE_{name}")
        m = re.search(rf"^\*{re.escape(word)}\* {i}\n((?:\t.*\n)+)", logging, flags=re.M)
        check(m, f"sqlvigil.8 LOGGING does not list '*{word}* {i}'")
        listed = set(re.findall(r"\b[A-Z][A-Z0-9_]*[A-Z0-9]\b", m.group(1).split("Fields:", 1)[-1]))
        actual = {f[len("SQLVIGIL_"):] for f in fields[name]} - {"DATABASE", "EVENT"}
        check(listed == actual, f"sqlvigil.8 lists the fields of {word} as {sorted(listed)}, "
                                f"the code sends {sorted(actual)}")
    documented = set(re.findall(r"^\*(\S+)\* [0-9a-f]{32}$", logging, flags=re.M))
    check(documented == set(words.values()), f"sqlvigil.8 lists events {sorted(documented - set(words.values()))} "
                                             f"that the code does not log")

    reasons = scd_sections(sections["HEALTH"], "##")["Reasons"]
    catalog = read(src("docs", "sqlvigil.catalog"))
    health_entry = catalog.split("-- " + ids["HEALTH"], 1)[1].split("\n-- ", 1)[0]
    for code, state in sorted(health_codes().items()):
        check(re.search(rf"^\*{re.escape(code)}\* \({state}\)$", reasons, flags=re.M),
              f"sqlvigil.8 HEALTH does not describe reason '*{code}* ({state})'")
        check(re.search(rf"(?<![\w-]){re.escape(code)}(?![\w-])", health_entry),
              f"the catalog's health entry does not explain reason {code}")

    exits = dict(re.findall(r"EXIT_(\w+)\s*=\s*(\d+)", read(src("src", "manager.h"))))
    check(len(exits) >= 5, f"found only {exits} in src/manager.h")
    for name, number in sorted(exits.items()):
        check(re.search(rf"^\*{number}\*$", sections["EXIT STATUS"], flags=re.M),
              f"sqlvigil.8 EXIT STATUS does not describe {number} (EXIT_{name})")

    main = read(src("src", "sqlvigil.c"))
    options = re.findall(r'\{\s*"([\w-]+)",\s*(?:no|required|optional)_argument', main)
    shorts = re.search(r'getopt_long\([^"]*"([^"]*)"', main).group(1)
    check(options, "no long options found in src/sqlvigil.c")
    for option in options:
        check(f"*--{option}*" in sections["OPTIONS"], f"sqlvigil.8 OPTIONS does not describe --{option}")
    for short in re.findall(r"\w", shorts):
        check(f"*-{short}*" in sections["OPTIONS"], f"sqlvigil.8 OPTIONS does not describe -{short}")

    metrics = set(re.findall(r'"(sqlvigil_[a-z_]+)"', read(src("src", "metrics.c"))))
    listed = set(re.findall(r"\*(sqlvigil_[a-z_]+)\*", sections.get("METRICS", "")))
    check(metrics, "no metric names found in src/metrics.c")
    check(metrics <= listed, f"sqlvigil.8 METRICS does not list {sorted(metrics - listed)}")
    check(listed <= metrics, f"sqlvigil.8 METRICS lists metrics src/metrics.c does not write: "
                             f"{sorted(listed - metrics)}")


def case_man_ctl(tmp):
    """sqlvigilctl.1 describes every option of src/sqlvigilctl.c, every
    command of the request parser (src/request.c) and every exit status."""
    sections = scd_sections(read(src("docs", "sqlvigilctl.1.scd")))
    main = read(src("src", "sqlvigilctl.c"))
    options = re.findall(r'\{\s*"([\w-]+)",\s*(?:no|required|optional)_argument', main)
    shorts = re.search(r'getopt_long\([^"]*"([^"]*)"', main).group(1)
    check(options, "no long options found in src/sqlvigilctl.c")
    for option in options:
        check(f"*--{option}*" in sections["OPTIONS"], f"sqlvigilctl.1 OPTIONS does not describe --{option}")
    for short in re.findall(r"\w", shorts):
        check(f"*-{short}*" in sections["OPTIONS"], f"sqlvigilctl.1 OPTIONS does not describe -{short}")
    commands = re.findall(r'\[REQUEST_\w+\]\s*=\s*"(\w+)"', read(src("src", "request.c")))
    check(len(commands) >= 10, f"found only {commands} in src/request.c")
    for command in commands:
        check(re.search(rf"^\*{command}\*", sections["COMMANDS"], flags=re.M),
              f"sqlvigilctl.1 COMMANDS does not describe {command}")
    exits = dict(re.findall(r"CTL_(\w+)\s*=\s*(\d+)", main))
    check(len(exits) >= 5, f"found only {exits} in src/sqlvigilctl.c")
    for name, number in sorted(exits.items()):
        check(re.search(rf"^\*{number}\*$", sections["EXIT STATUS"], flags=re.M),
              f"sqlvigilctl.1 EXIT STATUS does not describe {number} (CTL_{name})")


def case_example_config(tmp):
    """conf/sqlvigil.conf.example is valid, sets every key to its default
    (only [database] path, which has none, is an example), and shows every
    key sqlvigil has, under its section: set where there is a default,
    commented out ("#key =") where the default is unset."""
    example = src("conf", "sqlvigil.conf.example")
    from_example = effective_config(["--config", example])
    defaults = effective_config(["--database", "/nonexistent/sqlvigil-docs-test.db"])
    check([k[:2] for k in from_example] == [k[:2] for k in defaults],
          "the example's effective configuration has other keys than the defaults")
    for (section, key, is_set, value), (_, _, default_set, default) in zip(from_example, defaults):
        if (section, key) == ("database", "path"):
            check(is_set and value.startswith("/"), "the example does not set [database] path")
            continue
        check((is_set, value) == (default_set, default),
              f"the example sets [{section}] {key} to {value if is_set else 'unset'}, "
              f"the default is {default if default_set else 'unset'}")

    # Every key appears, under its section, the way --check-config shows it.
    lines = {}
    section = None
    for number, line in enumerate(read(example).splitlines(), 1):
        m = re.match(r"^\[(\w+)\]\s*$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^(#?)(\w+) =(?: (.*))?$", line)
        if m and section:
            check((section, m.group(2)) not in lines, f"example line {number}: [{section}] {m.group(2)} twice")
            lines[(section, m.group(2))] = (m.group(1) == "", (m.group(3) or "").strip(), number)
    for section, key, default_set, default in defaults:
        check((section, key) in lines,
              f"the example does not show [{section}] {key} (as '{key} = ...' or '#{key} =')")
        active, value, number = lines[(section, key)]
        if (section, key) == ("database", "path"):
            continue
        if default_set:
            check(active and value == default,
                  f"example line {number}: [{section}] {key} should read '{key} = {default}'")
        else:
            check(not active and value == "",
                  f"example line {number}: [{section}] {key} is unset by default and should read '#{key} ='")
    known = {(s, k) for s, k, _, _ in defaults}
    unknown = sorted(f"[{s}] {k}" for s, k in lines if (s, k) not in known)
    check(not unknown, "the example shows keys sqlvigil does not have: " + ", ".join(unknown))


def case_test_lists(tmp):
    """Every case a test script defines is registered in tests/meson.build,
    and every registered one exists: a case missing there would never run."""
    build = read(src("tests", "meson.build"))
    scripts = (
        ("daemon_cases", ("tests", "integration", "test_daemon.py"), r"^def case_(\w+)\("),
        ("lifecycle_cases", ("tests", "integration", "test_lifecycle.py"), r"^def case_(\w+)\("),
        ("control_cases", ("tests", "integration", "test_control.py"), r"^def case_(\w+)\("),
        ("maintenance_cases", ("tests", "integration", "test_maintenance.py"), r"^def case_(\w+)\("),
        ("checks_cases", ("tests", "integration", "test_checks.py"), r"^def case_(\w+)\("),
        ("lock_cases", ("tests", "integration", "test_locks.py"), r"^def case_(\w+)\("),
        ("backup_cases", ("tests", "integration", "test_backup.py"), r"^def case_(\w+)\("),
        ("safety_cases", ("tests", "integration", "test_safety.py"), r"^def case_(\w+)\("),
        ("docs_cases", ("tests", "docs", "test_docs.py"), r"^def case_(\w+)\("),
        ("system_cases", ("tests", "system", "test_system.py"), r"^@(?:static|booted)\ndef (\w+)\("),
    )
    for var, path, pattern in scripts:
        m = re.search(rf"^{var} = \[(.*?)\]", build, re.M | re.S)
        check(m, f"tests/meson.build has no {var} list")
        registered = set(re.findall(r"'(\w+)'", m.group(1)))
        defined = set(re.findall(pattern, read(src(*path)), re.M))
        check(defined, f"no cases found in {'/'.join(path)}")
        check(registered == defined,
              f"{var} in tests/meson.build and {path[-1]} differ: only registered {sorted(registered - defined)}, "
              f"only defined {sorted(defined - registered)}")


CASES = {name[5:]: func for name, func in sorted(globals().items()) if name.startswith("case_")}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(f"usage: {sys.argv[0]} {'|'.join(CASES)}", file=sys.stderr)
        return 2
    name = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix=f"sqlvigil-docs-{name}-")
    try:
        CASES[name](tmp)
    except Failure as e:
        print(f"FAIL {name}: {e}")
        return 1
    except Skip as e:
        print(f"SKIP {name}: {e}")
        return 77
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok   {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
