"""Running the real daemon for the daemon benchmarks (not part of the package).

* :class:`PrivateBus`: a ``dbus-daemon --session`` of the benchmark's own, as
  ``tests/daemon/conftest.py`` starts it (nothing the user installed can be
  activated on it).
* :class:`DaemonRun`: ``python -m imagecluster daemon --library ... --config ...``
  in a subprocess on that bus, as systemd runs it, with its log in a file.
* readings from ``/proc`` that do not disturb the daemon: VmRSS / VmHWM, the
  processes it started (the inference worker is the one whose command line
  holds ``spawn_main``), and :func:`wait_stored`, which polls the store on disk
  read-only through :class:`imagecluster.Store`.

Every process is started in a session of its own (Ctrl-C in the terminal
reaches only the benchmark, which then stops them) and stopped by its process
id, or its process group id, when the benchmark ends for any reason.
:func:`sigterm_as_interrupt` makes SIGTERM end a benchmark like Ctrl-C does.
"""

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, log

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{servicedir}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

#: Model the daemon runs in the benchmarks (the package default).
MODEL = "lite0"


def sigterm_as_interrupt():
    """Make SIGTERM raise KeyboardInterrupt, so ``finally`` blocks stop the daemon and the bus."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _stop_process(proc, timeout, *, group=True):
    """SIGTERM, wait ``timeout`` s, then SIGKILL the process (and its process group)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"process {proc.pid} did not exit within {timeout:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    if group:  # whatever it started and left behind (its session is its own, so pgid == pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


class PrivateBus:
    """A running ``dbus-daemon``; use as a context manager. ``address`` is its address."""

    def __init__(self, folder):
        folder = Path(folder)
        servicedir = folder / "services"
        servicedir.mkdir(parents=True, exist_ok=True)
        config = folder / "bus.conf"
        config.write_text(BUS_CONFIG.format(servicedir=servicedir))
        self.log_file = open(folder / "bus.log", "wb")
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=self.log_file, start_new_session=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        self.address = self.proc.stdout.readline().decode().strip() if ready else ""
        if not self.address:
            self.stop()
            raise SystemExit("dbus-daemon did not print its address")

    def stop(self):
        _stop_process(self.proc, 10)
        self.proc.stdout.close()
        self.log_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _toml(value):
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class DaemonRun:
    """``python -m imagecluster daemon`` on ``bus`` with a config file holding ``settings``; a context manager.

    The environment: this checkout first on PYTHONPATH, the bus, empty
    XDG_CONFIG_HOME / XDG_DATA_HOME in ``folder`` (no user file takes part),
    XDG_CACHE_HOME as :mod:`_common` set it (the benchmarks' model cache).
    No ``-v``: it logs at INFO, as under systemd. ``extra_env`` is added to
    the environment (for experiments, e.g. glibc's ``MALLOC_*`` tunables).
    """

    def __init__(self, libraries, settings, folder, bus, *, name="daemon", extra_env=None):
        folder = Path(folder)
        for sub in ("config", "data"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.config_path = folder / f"{name}.toml"
        self.config_path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in settings.items()))
        self.log_path = folder / f"{name}.log"
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            DBUS_SESSION_BUS_ADDRESS=bus.address,
            XDG_CONFIG_HOME=str(folder / "config"),
            XDG_DATA_HOME=str(folder / "data"),
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        env.update(extra_env or {})
        env.pop("DBUS_STARTER_ADDRESS", None)
        self.argv = [sys.executable, "-m", "imagecluster", "daemon", "--config", str(self.config_path)]
        for lib in libraries:  # none: the config file's ``libraries`` (which may give ``out`` folders)
            self.argv += ["--library", str(lib)]
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd="/", start_new_session=True)
        self.pid = self.proc.pid

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, timeout=120.0, *, sample=None):
        """Wait for the "serving ..." log line (logged once the libraries are reconciled).

        ``sample()`` is called every 20 ms meanwhile. Returns the seconds since start.
        """
        deadline = time.monotonic() + timeout
        while "serving org.imagecluster" not in self.log_text():
            self.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start within {timeout:g} s:\n{self.log_text()}")
            if sample is not None:
                sample()
            time.sleep(0.02)
        return time.monotonic() - self.started

    def check_alive(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"the daemon exited with status {self.proc.returncode}:\n{self.log_text()}")

    def worker_pids(self):
        """Process ids of the live inference worker(s) (children running ``spawn_main``, zombies excluded)."""
        return [pid for pid, cmd in children(self.pid) if "spawn_main" in cmd and proc_state(pid) not in ("Z", None)]

    def helper_pids(self):
        """Other live children (multiprocessing's resource tracker)."""
        return [pid for pid, cmd in children(self.pid) if "spawn_main" not in cmd and proc_state(pid) not in ("Z", None)]

    def wait_worker(self, *, alive, timeout=120.0):
        """Wait until the worker runs (``alive``) or is gone; returns the seconds waited."""
        t0 = time.monotonic()
        while bool(self.worker_pids()) != alive:
            self.check_alive()
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"the worker did not {'start' if alive else 'exit'} within {timeout:g} s:\n"
                                 f"{self.log_text()}")
            time.sleep(0.05)
        return time.monotonic() - t0

    def stop(self):
        _stop_process(self.proc, 30)
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def children(pid):
    """``[(pid, command line)]`` of the processes whose parent is ``pid`` (a /proc scan)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        found.append((int(entry), cmd))
    return found


def proc_state(pid):
    """The one-letter state of a process (``Z`` for a zombie), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[0].decode()


def memory_mb(pid):
    """``{"rss": VmRSS, "hwm": VmHWM, "anon": RssAnon, "file": RssFile}`` of a process, in MB (1e6 bytes)."""
    keys = {"VmRSS": "rss", "VmHWM": "hwm", "RssAnon": "anon", "RssFile": "file"}
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keys:
                out[keys[key]] = int(value.split()[0]) * 1024 / 1e6
    return out


def reset_hwm(pid):
    """Reset a process's VmHWM to its current RSS (``/proc/PID/clear_refs``); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def wait_stored(store, rel, sig, timeout, poll):
    """Poll the store on disk until it holds ``rel`` at ``sig = (size, mtime_ns)``.

    Read-only: a :class:`~imagecluster.Store` re-reads only when its files
    changed (two ``stat`` calls otherwise), and then under a *shared*
    ``flock`` held for the replay of the new journal bytes; it never writes or
    creates anything. Returns ``time.monotonic()`` right after the read that
    found it (so detection adds up to one ``poll`` interval plus one read).
    """
    deadline = time.monotonic() + timeout
    while True:
        entry = store.entries(MODEL).get(rel)
        if entry is not None and tuple(entry) == tuple(sig):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{rel} not in the store after {timeout:g} s")
        time.sleep(poll)


def p95(xs):
    """95th percentile, linear interpolation between order statistics (numpy's default)."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * 0.95
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)
