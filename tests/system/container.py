# SPDX-License-Identifier: MIT
"""Host side of the system tests: boots a real systemd in a throw-away
container and runs one scenario inside it.

The container's root file system is an overlay: the host's / as the
read-only lower layer, and a tmpfs as the upper layer. Everything the test
writes (the installed build, users, configuration, databases, the journal)
lands in that tmpfs and disappears with it. The host sees none of it: no
host systemctl, no host /etc changes. The build is installed into the
overlay with `meson install --destdir`, exactly as a package would install
it, so the container runs the unit file and binary that this build
installs.

The scenario runs inside the container as a oneshot driver unit
(`python3 test_system.py --inside NAME`). That unit is the container's
default unit, and the container powers off when the driver finishes,
whether it succeeded or failed. The driver writes its verdict to
/opt/sqlvigil-test/result.json, and this side reads it after the container
is gone.
"""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("SQLVIGIL_BUILD_ROOT", "build")
SANITIZE = os.environ.get("SQLVIGIL_SANITIZE", "none")
# Where the test's own files go inside the container.
TEST_DIR = "/opt/sqlvigil-test"
# Unit directories the container's systemd reads.
UNIT_PATHS = ("/etc/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system",
              "/usr/lib/systemd/system")


class ContainerError(Exception):
    pass


def skip_reason():
    """Why the booted tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (mounts an overlay and boots systemd-nspawn)"
    if not shutil.which("systemd-nspawn"):
        return "systemd-nspawn is missing (Debian: apt-get install systemd-container)"
    return None


def run(argv, **kw):
    kw.setdefault("check", True)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    try:
        return subprocess.run(argv, **kw)
    except subprocess.CalledProcessError as e:
        raise ContainerError(f"{' '.join(argv)} failed with status {e.returncode}:\n{e.stdout}") from None


def installed_files():
    """{build path: install path} from `meson introspect --installed`."""
    out = run(["meson", "introspect", "--installed", BUILD], stderr=subprocess.PIPE).stdout
    return json.loads(out)


def installed_path(build_path):
    inst = installed_files()
    real = os.path.realpath(build_path)
    for src, dst in inst.items():
        if os.path.realpath(src) == real:
            return dst
    raise ContainerError(f"{build_path} is not installed by this build (meson introspect --installed)")


class Container:
    """A container: use as `with Container(name) as c:`, then c.boot()."""

    def __init__(self, name):
        self.name = name
        # A unique machine name per container: nspawn keeps per-machine
        # state under /run/systemd/nspawn/ on the host, and the suite boots
        # several containers in parallel.
        self.machine = f"sqlvigil-{name.replace('_', '-')}-{os.getpid()}"[:64]
        self.dir = None
        self.root = None
        self.mounted = []

    # ---- set-up and tear-down -------------------------------------------

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix=f"sqlvigil-system-{self.name}-")
        up = os.path.join(self.dir, "up")
        self.root = os.path.join(self.dir, "root")
        os.mkdir(up)
        os.mkdir(self.root)
        try:
            run(["mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", up])
            self.mounted.append(up)
            os.mkdir(os.path.join(up, "u"))
            os.mkdir(os.path.join(up, "w"))
            run(["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir=/,upperdir={up}/u,workdir={up}/w", self.root])
            self.mounted.append(self.root)
            # The container's systemd makes up a fresh machine ID (and so
            # its own journal directory) instead of using the host's.
            self.remove("/etc/machine-id")
            self.forget_host_install()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def cleanup(self):
        """Unmounts everything (even after a failure) and removes the
        temporary directory, but only once nothing is mounted under it."""
        problems = []
        for path in reversed(self.mounted):
            r = subprocess.run(["umount", path], capture_output=True, text=True)
            if r.returncode != 0:
                # Still busy (a process left behind): detach it instead.
                r2 = subprocess.run(["umount", "--lazy", path], capture_output=True, text=True)
                if r2.returncode != 0:
                    problems.append(f"umount {path}: {r.stderr.strip()} / {r2.stderr.strip()}")
        self.mounted = []
        if self.dir and not problems:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            print("warning: " + "; ".join(problems), file=sys.stderr)

    # ---- files in the container -------------------------------------------

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def write(self, p, text, mode=0o644):
        full = self.path(p)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
        os.chmod(full, mode)

    def read(self, p):
        with open(self.path(p)) as f:
            return f.read()

    def remove(self, p):
        try:
            os.unlink(self.path(p))
        except FileNotFoundError:
            pass

    def forget_host_install(self):
        """A host that has run the README's install (CI's machine has
        sqlvigil@wecare configured and binaries in /usr/local/bin) would
        otherwise boot its configuration, enabled units and older files in
        every container. The container starts as a host that never had
        sqlvigil; removing them here only hides them in the tmpfs upper
        layer (overlayfs whiteouts), the host keeps them."""
        gone = []
        for top in ("/etc", "/usr/local", "/usr/lib/systemd", "/lib/systemd", "/usr/share/man"):
            base = self.path(top)
            if not os.path.isdir(base) or os.path.islink(base):
                continue
            for dirpath, dirnames, filenames in os.walk(base):
                for n in list(dirnames) + filenames:
                    if not n.startswith("sqlvigil"):
                        continue
                    full = os.path.join(dirpath, n)
                    if os.path.isdir(full) and not os.path.islink(full):
                        shutil.rmtree(full)
                        dirnames.remove(n)
                    else:
                        os.unlink(full)
                    gone.append(os.path.relpath(full, self.root))
        if gone:
            print(f"hidden from the container (the host's own sqlvigil): {' '.join(sorted(gone))}",
                  file=sys.stderr)

    # ---- contents -------------------------------------------------------

    def install(self):
        """`meson install --destdir` into the container. Installs are
        serialized: meson writes its install log into the build tree."""
        lock_path = os.path.join(BUILD, "meson-private", "sqlvigil-system-install.lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            run(["meson", "install", "-C", BUILD, "--destdir", self.root, "--no-rebuild", "--quiet"])
        # With -Dsystemdsystemunitdir= pointing elsewhere, make the unit
        # visible to the container's systemd anyway.
        unit = installed_path(os.path.join(BUILD, "units", "sqlvigil@.service"))
        if os.path.dirname(unit) not in UNIT_PATHS:
            shutil.copy(self.path(unit), self.path("/etc/systemd/system/sqlvigil@.service"))
        if SANITIZE not in ("", "none"):
            self.write("/etc/systemd/system/sqlvigil@.service.d/90-test-sanitizer.conf",
                       sanitizer_dropin())

    def add_tests(self):
        os.makedirs(self.path(TEST_DIR), exist_ok=True)
        for f in os.listdir(HERE):
            if f.endswith(".py"):
                shutil.copy(os.path.join(HERE, f), self.path(os.path.join(TEST_DIR, f)))

    def boot(self, scenario, timeout):
        """Boots with the driver unit as the default unit and waits for the
        container to power off. Returns the driver's result (a dict)."""
        self.write("/etc/systemd/system/sqlvigil-test-driver.service", driver_unit(scenario, timeout))
        console = os.path.join(self.dir, "console.log")
        argv = ["systemd-nspawn", "--quiet", "-D", self.root, f"--machine={self.machine}",
                "--register=no", "--keep-unit", "--private-network", "-b", "--console=pipe",
                "--", "systemd.unit=sqlvigil-test-driver.service"]
        with open(console, "w") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout=timeout + 30)
            except subprocess.TimeoutExpired:
                # First SIGTERM: nspawn asks the container to halt.
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise ContainerError(f"the container did not power off within {timeout + 30}s"
                                     + self.diagnostics(console))
        try:
            result = json.loads(self.read(os.path.join(TEST_DIR, "result.json")))
        except (OSError, ValueError) as e:
            raise ContainerError(f"no result from the driver ({e}); nspawn exited with status "
                                 f"{proc.returncode}" + self.diagnostics(console))
        result["journal"] = self.read_or_empty(os.path.join(TEST_DIR, "journal.txt"))
        result["console"] = console
        return result

    def read_or_empty(self, p):
        try:
            return self.read(p)
        except OSError:
            return ""

    def diagnostics(self, console):
        text = ""
        try:
            with open(console) as f:
                text += "\n--- container console (last 40 lines) ---\n" + "".join(f.readlines()[-40:])
        except OSError:
            pass
        log = self.read_or_empty(os.path.join(TEST_DIR, "driver.log"))
        if log:
            text += "\n--- driver log ---\n" + log
        return text


def driver_unit(scenario, timeout):
    return f"""[Unit]
Description=sqlvigil system test: {scenario}
# Power off when done, whatever the outcome: the host waits for that.
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 {TEST_DIR}/test_system.py --inside {scenario}
Environment=PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
StandardOutput=journal
StandardError=journal
TimeoutStartSec={timeout}
"""


def sanitizer_dropin():
    """Test-only drop-in for a -Db_sanitize build. LeakSanitizer stops the
    world with ptrace(2) at exit, which SystemCallFilter=@system-service
    denies ("LeakSanitizer has encountered a fatal error", exit 1). Allow
    that one call so leak checking keeps working, and pass the suite's
    sanitizer options so any report fails the test. The rest of the
    sandbox stays exactly as shipped."""
    env = []
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if os.environ.get(var):
            env.append(f'"{var}={os.environ[var]}"')
    text = f"""# Test only: this build has -Db_sanitize={SANITIZE}.
[Service]
SystemCallFilter=ptrace
"""
    if env:
        text += "Environment=" + " ".join(env) + "\n"
    return text
