"""The D-Bus fixtures of the daemon and plugin API tests: a private session bus, and real daemons on it.

A conftest makes them available with ``from _support.fixtures import session_bus, start_daemon``.
"""

import asyncio
import sys
import time

import pytest
from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

from imagecluster.plugin_api import BUS_NAME

from .bus import PrivateBus
from .processes import STARTUP_TIMEOUT, DaemonDidNotStop, DaemonProcess, config_text

# Runs the real daemon, its service's test seam (_before_clustering) holding
# each clustering until the file named by argv[1] exists (argv[2:] are
# libraries): a test can then make calls while a Cluster is provably still running.
GATED_DAEMON = """
import pathlib, sys, time
from imagecluster.daemon._config import load_config
from imagecluster.daemon._daemon import Daemon, configure_logging
from imagecluster.daemon._service import ImageClusterInterface

gate = pathlib.Path(sys.argv[1])

def hold(self, library):
    deadline = time.monotonic() + 120
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.02)

ImageClusterInterface._before_clustering = hold
configure_logging(1)
config = load_config(None, libraries=sys.argv[2:], settle_seconds=0.2)
sys.exit(Daemon(config).run())
"""


@pytest.fixture
def runtime_bus(tmp_path):
    """A private bus listening only at ``<tmp>/runtime/bus``, as systemd's user instance puts it; yields the folder."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    bus = PrivateBus(tmp_path / "bus", listen=f"unix:path={runtime / 'bus'}")
    yield runtime
    bus.stop()


@pytest.fixture
def session_bus(tmp_path, monkeypatch):
    """A private session bus for this test; DBUS_SESSION_BUS_ADDRESS points to it.

    XDG_CONFIG_HOME and XDG_DATA_HOME point to empty folders, so no config
    file or service file of the user takes part.
    """
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))
    bus = PrivateBus(tmp_path / "bus")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    monkeypatch.delenv("DBUS_STARTER_ADDRESS", raising=False)
    yield bus
    bus.stop()


async def name_has_owner(bus, name=BUS_NAME):
    """Whether ``name`` has an owner on ``bus`` (a connected dbus-fast MessageBus)."""
    reply = await bus.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
        member="NameHasOwner", signature="s", body=[name],
    ))
    return reply.body[0]


async def wait_for_name(daemon, timeout):
    """Wait until the daemon owns its name on the session bus; fail if it exits or takes longer."""
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    try:
        deadline = time.monotonic() + timeout
        while not await name_has_owner(bus):
            if daemon.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({daemon.proc.returncode}):\n{daemon.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{BUS_NAME} did not appear within {timeout} s:\n{daemon.log()}")
            await asyncio.sleep(0.05)
    finally:
        bus.disconnect()


@pytest.fixture
def start_daemon(session_bus, tmp_path):
    """``start_daemon(*libraries, config=None, wait=True, gate=None)`` -> DaemonProcess.

    Runs the real daemon on the private bus with ``--library`` for each
    library and, when ``config`` (a dict) is given, a config file holding it
    (``--config``). With ``wait``, returns once the bus name is owned. With
    ``gate`` (a path), every clustering waits until that file exists.
    All daemons are stopped at the end of the test; one that does not stop
    on SIGTERM fails the test (DaemonDidNotStop).
    """
    started = []

    def start(*libraries, config=None, wait=True, gate=None):
        n = len(started)
        if gate is not None:
            argv = [sys.executable, "-c", GATED_DAEMON, str(gate), *map(str, libraries)]
        else:
            argv = [sys.executable, "-m", "imagecluster", "daemon", "-v"]
            for library in libraries:
                argv += ["--library", str(library)]
            if config is not None:
                path = tmp_path / f"daemon{n}.toml"
                path.write_text(config_text(config))
                argv += ["--config", str(path)]
        daemon = DaemonProcess(argv, tmp_path / f"daemon{n}.log")
        started.append(daemon)
        if wait:
            asyncio.run(wait_for_name(daemon, STARTUP_TIMEOUT))
        return daemon

    yield start
    stuck = []
    for daemon in started:
        try:
            daemon.stop()
        except DaemonDidNotStop as exc:  # every daemon is stopped first, then the first failure is reported
            stuck.append(exc)
    if stuck:
        raise stuck[0]
