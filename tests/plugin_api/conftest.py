"""Fixtures of the plugin_api tests: the daemon tests' private bus and daemon, plus shared daemons.

``session_bus`` and ``start_daemon`` are the daemon tests' fixtures, from
``tests/_support`` (shared, not copied). Tests that
only read need no daemon of their own: ``photo_daemon`` is one real daemon
on one private bus for the whole run, watching a library of real photos
(three dogs, three cats, a cat named ``café_ß.jpg``, and a text file named
``notes.jpg``); ``gated_daemon`` is one whose clusterings wait for a gate
file, so a test can hold a call open (a timeout), and whose library tests
may add photos to.
"""

import contextlib
import sys
import time

import pytest

from _support.fixtures import GATED_DAEMON, session_bus, start_daemon  # noqa: F401  (fixtures of this folder)
from _support.photos import DATA, PHOTOS, camera_moved
from _support.poll import until as _until
from _support.processes import WORK_TIMEOUT
from _support.shared import shared_daemon as _shared_daemon


@pytest.fixture(scope="session")
def photo_daemon(tmp_path_factory):
    """The real daemon watching a library of real photos, every photo indexed (session-wide; only read it)."""
    folder = tmp_path_factory.mktemp("photo_daemon")
    library = folder / "photos"
    for seed, (name, source) in enumerate(sorted(PHOTOS.items())):
        path = library / name
        path.parent.mkdir(parents=True, exist_ok=True)
        camera_moved(DATA / source, seed).save(path, quality=88)
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
    """Call ``predicate()`` until it is true; fail after ``timeout`` s (the shared polling helper)."""
    return _until(predicate, timeout, what)


@pytest.fixture
def wait_until():
    """The blocking :func:`until` helper, as a fixture."""
    return until
