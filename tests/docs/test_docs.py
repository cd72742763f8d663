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


def event_fields():
    """{message name: set of journal fields its entries may carry}. In each
    function of src/*.c, the log_field() calls since the LogFields was last
    cleared belong to the log_event() that follows them. log.c adds
    SQLVIGIL_DATABASE and SQLVIGIL_EVENT to every event."""
    token = re.compile(r'log_field\(\s*&?\w+\s*,\s*"(?P<field>\w+)"'
                       r'|(?P<reset>\bLogFields\s+\w+\s*=\s*\{|=\s*\(LogFields\)\s*\{)'
                       r'|log_event\([^;]*?SQLVIGIL_MESSAGE_(?P<message>\w+)', re.S)
    fields = {}
    for name in sorted(os.listdir(src("src"))):
        if not name.endswith(".c"):
            continue
        for body in c_functions(read(src("src", name))):
            pending = set()
            for m in token.finditer(body):
                if m.group("field"):
                    pending.add(m.group("field"))
                elif m.group("reset"):
                    pending = set()
                else:
                    fields.setdefault(m.group("message"), set()).update(
                        pending | {"SQLVIGIL_DATABASE", "SQLVIGIL_EVENT"})
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


CASES = {
    "catalog": case_catalog,
}


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
