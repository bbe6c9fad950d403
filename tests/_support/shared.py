"""A real daemon on a bus of its own, shared by many tests (the plugin API and darktable tests' session daemons)."""

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from imagecluster.plugin_api import Client, DaemonNotAvailable

from .bus import PrivateBus, bus_env
from .processes import SESSION_PROCESSES, STARTUP_TIMEOUT, DaemonProcess


@dataclass
class SharedDaemon:
    """A daemon on a bus of its own; ``env`` is this process's environment pointed at that bus."""

    bus: object
    daemon: object
    library: Path
    env: dict
    gate: Path = None

    @property
    def address(self):
        return self.bus.address

    def client(self, **options):
        """A blocking client on this daemon's bus."""
        return Client(bus_address=self.address, **options)

    def run(self, *argv, timeout=120):
        """Run a command (``gdbus``, ``busctl``, ``python -m imagecluster``) on this bus; bytes out."""
        return subprocess.run(list(map(str, argv)), env=self.env, capture_output=True, timeout=timeout)


def wait_until_serving(shared, timeout=STARTUP_TIMEOUT):
    """The daemon's Status once it answers; fail if it exits or does not answer within ``timeout``."""
    deadline = time.monotonic() + timeout
    with shared.client(timeout=10) as client:
        while True:
            if shared.daemon.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({shared.daemon.proc.returncode}):\n{shared.daemon.log()}")
            try:
                return client.status()
            except DaemonNotAvailable:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the daemon did not start within {timeout} s:\n{shared.daemon.log()}")
                time.sleep(0.1)


@contextlib.contextmanager
def shared_daemon(folder, library, argv_for):
    """A :class:`SharedDaemon` running ``argv_for(library)`` on a new private bus, stopped at the end.

    A daemon that does not stop on SIGTERM fails (DaemonDidNotStop) after the bus was stopped too.
    """
    bus = PrivateBus(folder / "bus")
    env = bus_env(bus.address, folder)
    daemon = DaemonProcess(argv_for(library), folder / "daemon.log", env=env)
    shared = SharedDaemon(bus=bus, daemon=daemon, library=library, env=env)
    SESSION_PROCESSES.update((bus.proc.pid, daemon.pid))  # checked when the session ends
    try:
        wait_until_serving(shared)
        yield shared
    finally:
        try:
            daemon.stop()
        finally:
            bus.stop()
