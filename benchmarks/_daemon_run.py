"""Running the real daemon for the daemon benchmarks (not part of the package).

* :class:`PrivateBus`: a ``dbus-daemon --session`` of the benchmark's own, the
  tests' own (``tests/_support/bus.py``; nothing the user installed can be
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

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, log

# The private bus and the process helpers are the tests' (tests/_support), not copies.
sys.path.insert(0, str(REPO / "tests"))
from _support.bus import PrivateBus as _TestBus  # noqa: E402
from _support.processes import children, proc_state, stop_process, toml  # noqa: E402

#: Model the daemon runs in the benchmarks (the package default).
MODEL = "lite0"


def sigterm_as_interrupt():
    """Make SIGTERM raise KeyboardInterrupt, so ``finally`` blocks stop the daemon and the bus."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _stop_process(proc, timeout):
    """SIGTERM, wait ``timeout`` s, then SIGKILL the process and its process group (its session is its own)."""
    if not stop_process(proc, timeout, group=True):
        log(f"process {proc.pid} did not exit within {timeout:g} s; killed it")


class PrivateBus(_TestBus):
    """The tests' private ``dbus-daemon``, in a session of its own; a context manager. ``address`` is its address."""

    def __init__(self, folder):
        try:
            super().__init__(Path(folder), new_session=True)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None


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
        self.config_path.write_text("".join(f"{k} = {toml(v)}\n" for k, v in settings.items()))
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
        return [pid for pid, cmd in children(self.pid)
                if "spawn_main" not in cmd and proc_state(pid) not in ("Z", None)]

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
