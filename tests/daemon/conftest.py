"""Fixtures of the daemon tests: a private session bus, and the real daemon running on it.

Every bus is a ``dbus-daemon`` of its own, with a generated config whose only
service folder is the test's (so nothing the user installed can be activated),
and every daemon is ``python -m imagecluster daemon`` in a subprocess, as
systemd runs it.
"""

import contextlib

import pytest
from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from imagecluster.daemon._service import BUS_NAME, INTERFACE, OBJECT_PATH

from _support.fixtures import runtime_bus, session_bus, start_daemon  # noqa: F401  (fixtures of this folder)
from _support.poll import until
from _support.processes import WORK_TIMEOUT


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


@pytest.fixture
def wait_until():
    """``await wait_until(predicate, timeout, what)``: the shared polling helper, awaited.

    ``predicate()`` returns an awaitable here. (A fixture: test modules cannot import a conftest.)
    """

    def wait(predicate, timeout=WORK_TIMEOUT, what="the condition"):
        return until(predicate, timeout, what, interval=0.1)

    return wait
