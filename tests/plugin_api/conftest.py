"""Fixtures of the plugin_api tests: the daemon tests' private bus and daemon, plus shared daemons.

``session_bus`` and ``start_daemon`` are the daemon tests' own fixtures
(``tests/daemon/conftest.py``, loaded from there, not copied). Tests that
only read need no daemon of their own: ``photo_daemon`` is one real daemon
on one private bus for the whole run, watching a library of real photos
(three dogs, three cats, a cat named ``café_ß.jpg``, and a text file named
``notes.jpg``); ``gated_daemon`` is one whose clusterings wait for a gate
file, so a test can hold a call open (a timeout), and whose library tests
may add photos to.
"""

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagecluster.plugin_api import Client, DaemonNotAvailable

HERE = Path(__file__).parent


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_daemon_fixtures = _load("_imagecluster_daemon_fixtures", HERE.parent / "daemon" / "conftest.py")
_photo_fixtures = _load("_imagecluster_photo_fixtures", HERE.parent / "conftest.py")

# The daemon tests' fixtures, for this folder too.
session_bus = _daemon_fixtures.session_bus
start_daemon = _daemon_fixtures.start_daemon

PrivateBus = _daemon_fixtures.PrivateBus
DaemonProcess = _daemon_fixtures.DaemonProcess
GATED_DAEMON = _daemon_fixtures.GATED_DAEMON
STARTUP_TIMEOUT = _daemon_fixtures.STARTUP_TIMEOUT
WORK_TIMEOUT = _daemon_fixtures.WORK_TIMEOUT

PHOTOS = {
    "2023/05/dog_1.jpg": "dog.jpg",
    "2023/05/dog_2.jpg": "dog.jpg",
    "2023/06/dog_3.jpg": "dog.jpg",
    "2024/01/cat_1.jpg": "cat.jpg",
    "2024/01/cat_2.jpg": "cat.jpg",
    "2024/cat_3.jpg": "cat.jpg",
    "2024/café_ß.jpg": "cat.jpg",
}


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
        return Client(bus_address=self.address, **options)

    def run(self, *argv, timeout=120):
        """Run a command (``gdbus``, ``busctl``, ``python -m imagecluster``) on this bus; bytes out."""
        return subprocess.run(list(map(str, argv)), env=self.env, capture_output=True, timeout=timeout)


def _bus_env(address, folder):
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address)
    env.pop("DBUS_STARTER_ADDRESS", None)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        path = folder / name.lower()
        path.mkdir(exist_ok=True)
        env[name] = str(path)
    return env


def _wait_until_serving(shared, timeout=STARTUP_TIMEOUT):
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
def _shared_daemon(folder, library, argv_for):
    bus = PrivateBus(folder / "bus")
    env = _bus_env(bus.address, folder)
    daemon = DaemonProcess(argv_for(library), folder / "daemon.log", env=env)
    shared = SharedDaemon(bus=bus, daemon=daemon, library=library, env=env)
    try:
        _wait_until_serving(shared)
        yield shared
    finally:
        with contextlib.suppress(AssertionError):
            daemon.stop()
        bus.stop()


@pytest.fixture(scope="session")
def photo_daemon(tmp_path_factory):
    """The real daemon watching a library of real photos, every photo indexed (session-wide; only read it)."""
    folder = tmp_path_factory.mktemp("photo_daemon")
    library = folder / "photos"
    for seed, (name, source) in enumerate(sorted(PHOTOS.items())):
        path = library / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _photo_fixtures.camera_moved(_photo_fixtures.DATA / source, seed).save(path, quality=88)
    (library / "notes.jpg").write_text("not a photo\n")
    config = folder / "daemon.toml"
    config.write_text("settle_seconds = 0.2\n")

    def argv(lib):
        return [sys.executable, "-m", "imagecluster", "daemon", "-v", "--library", str(lib), "--config", str(config)]

    with _shared_daemon(folder, library, argv) as shared:
        deadline = time.monotonic() + WORK_TIMEOUT
        with shared.client() as client:
            while not (client.wait_idle(10) and client.status().indexed == len(PHOTOS)):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the photos were not indexed in time:\n{shared.daemon.log()}")
        yield shared


@pytest.fixture(scope="session")
def gated_daemon(tmp_path_factory):
    """A daemon whose every clustering waits while ``gate`` does not exist.

    The gate exists between tests; a test removes it to hold a clustering
    open, and must create it again (use :func:`held`). Its library starts
    empty; the progress tests add photos to it.
    """
    folder = tmp_path_factory.mktemp("gated_daemon")
    library = folder / "photos"
    library.mkdir()
    gate = folder / "gate"
    gate.touch()

    def argv(lib):
        return [sys.executable, "-c", GATED_DAEMON, str(gate), str(lib)]

    with _shared_daemon(folder, library, argv) as shared:
        shared.gate = gate
        yield shared


@contextlib.contextmanager
def held(shared):
    """Within the block, clusterings on ``shared`` (a gated daemon) wait; after it they finish."""
    shared.gate.unlink()
    try:
        yield
    finally:
        shared.gate.touch()
        with shared.client() as client:
            deadline = time.monotonic() + WORK_TIMEOUT
            while client.status().state == "clustering" and time.monotonic() < deadline:
                time.sleep(0.05)


@pytest.fixture
def hold():
    """:func:`held` as a fixture (test modules cannot import a conftest)."""
    return held


@pytest.fixture
def on_bus(monkeypatch):
    """``on_bus(shared)``: point DBUS_SESSION_BUS_ADDRESS (and XDG dirs) at a shared daemon's bus."""

    def point(shared):
        for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
            monkeypatch.setenv(name, shared.env[name])
        monkeypatch.delenv("DBUS_STARTER_ADDRESS", raising=False)
        return shared

    return point


def until(predicate, timeout=WORK_TIMEOUT, what="the condition"):
    """Call ``predicate()`` until it is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        time.sleep(0.05)


@pytest.fixture
def wait_until():
    """The blocking :func:`until` helper, as a fixture."""
    return until
