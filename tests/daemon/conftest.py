"""Fixtures of the daemon tests: a private session bus, and the real daemon running on it.

Every bus is a ``dbus-daemon`` of its own, with a generated config whose only
service folder is the test's (so nothing the user installed can be activated),
and every daemon is ``python -m imagecluster daemon`` in a subprocess, as
systemd runs it.
"""

import asyncio
import contextlib
import select
import signal
import subprocess
import sys
import time

import pytest
from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

from imagecluster.daemon._service import BUS_NAME, INTERFACE, OBJECT_PATH

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{listen}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{servicedir}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# Generous: the first fingerprint of a run loads TensorFlow in the worker (~5 s
# alone, more on a loaded 2-core machine).
STARTUP_TIMEOUT = 60.0
WORK_TIMEOUT = 120.0

# Runs the real daemon with a cluster hook that holds each clustering until
# the file named by argv[1] exists (argv[2:] are libraries): a test can then
# make calls while a Cluster is provably still running.
GATED_DAEMON = """
import pathlib, sys, time
from imagecluster.daemon._config import load_config
from imagecluster.daemon._daemon import Daemon, configure_logging

gate = pathlib.Path(sys.argv[1])

def hold(library):
    deadline = time.monotonic() + 120
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.02)

configure_logging(1)
config = load_config(None, libraries=sys.argv[2:], settle_seconds=0.2)
sys.exit(Daemon(config, cluster_hook=hold).run())
"""


class PrivateBus:
    """A running ``dbus-daemon``; ``servicedir`` is where activation files go; ``listen``: its D-Bus address."""

    def __init__(self, folder, listen="unix:tmpdir=/tmp"):
        self.servicedir = folder / "services"
        self.servicedir.mkdir(parents=True)
        config = folder / "bus.conf"
        config.write_text(BUS_CONFIG.format(servicedir=self.servicedir, listen=listen))
        with open(folder / "bus.log", "wb") as log:
            self.proc = subprocess.Popen(
                ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
                stdout=subprocess.PIPE, stderr=log,
            )
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        self.address = self.proc.stdout.readline().decode().strip() if ready else ""
        if not self.address:
            self.stop()
            raise RuntimeError("dbus-daemon did not print its address")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


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


class DaemonProcess:
    """``python -m imagecluster daemon`` on the private bus; its stderr goes to ``log_path``."""

    def __init__(self, argv, log_path, env=None):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send ``sig`` and wait; returns the exit status (killed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the daemon did not exit within {timeout} s:\n{self.log()}") from None
        return self.proc.returncode


async def name_has_owner(bus, name=BUS_NAME):
    reply = await bus.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
        member="NameHasOwner", signature="s", body=[name],
    ))
    return reply.body[0]


async def _wait_for_name(daemon, timeout):
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
    All daemons are stopped at the end of the test.
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
                path.write_text("".join(f"{key} = {_toml(value)}\n" for key, value in config.items()))
                argv += ["--config", str(path)]
        daemon = DaemonProcess(argv, tmp_path / f"daemon{n}.log")
        started.append(daemon)
        if wait:
            asyncio.run(_wait_for_name(daemon, STARTUP_TIMEOUT))
        return daemon

    yield start
    for daemon in started:
        with contextlib.suppress(AssertionError):
            daemon.stop()


def _toml(value):
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


@pytest.fixture
def client():
    """``async with client() as iface``: a dbus-fast proxy of the daemon's interface on the session bus."""

    @contextlib.asynccontextmanager
    async def connect():
        bus = await MessageBus(bus_type=BusType.SESSION).connect()
        try:
            introspection = await bus.introspect(BUS_NAME, OBJECT_PATH)
            proxy = bus.get_proxy_object(BUS_NAME, OBJECT_PATH, introspection)
            iface = proxy.get_interface(INTERFACE)
            iface.bus = bus
            yield iface
        finally:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()

    return connect


async def until(predicate, timeout=WORK_TIMEOUT, what="the condition"):
    """Await ``predicate()`` (a coroutine function) until it is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        await asyncio.sleep(0.1)


@pytest.fixture
def wait_until():
    """The :func:`until` helper, as a fixture (test modules cannot import a conftest)."""
    return until
