"""``plugin_api._connection``: the bus address, and every way a call can go wrong, on the in-memory bus."""

import asyncio
import socket

import pytest
from dbus_fast import Message

from imagecluster.plugin_api import DaemonDisconnected, DaemonNotAvailable, InvalidParameter, LibraryNotFound
from imagecluster.plugin_api._connection import MATCH_RULE, Connection, session_bus_address
from imagecluster.plugin_api._contract import INTERFACE, OBJECT_PATH
from imagecluster.plugin_api._mockbus import FakeDaemon, MockBus

pytestmark = pytest.mark.mockbus


def test_the_address_given_wins():
    assert session_bus_address("unix:path=/x", environ={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/y"}) == "unix:path=/x"


def test_the_address_from_the_environment():
    assert session_bus_address(environ={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/y"}) == "unix:path=/y"


def test_the_address_from_xdg_runtime_dir(tmp_path):
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "bus"))
        assert session_bus_address(environ={"XDG_RUNTIME_DIR": str(tmp_path)}) == f"unix:path={tmp_path / 'bus'}"


def test_no_address_at_all_says_what_to_do(tmp_path):
    (tmp_path / "bus").touch()  # a file named bus is no bus
    with pytest.raises(DaemonNotAvailable, match="DBUS_SESSION_BUS_ADDRESS is not set"):
        session_bus_address(environ={"XDG_RUNTIME_DIR": str(tmp_path)})


def call(connection, member, signature="", body=(), **options):
    async def main():
        try:
            return await connection.call(member, signature, body, timeout=5, **options)
        finally:
            await connection.close()

    return asyncio.run(main())


def test_a_reply_is_its_body():
    connection = Connection(on_signal=print, transport=MockBus(FakeDaemon(["/lib"], {"/lib/a.jpg": [3.0, 4.0]})))
    assert call(connection, "Fingerprint", "s", ["/lib/a.jpg"]) == [[0.6, 0.8]]


def test_a_body_that_does_not_match_its_signature_is_invalid():
    connection = Connection(on_signal=print, transport=MockBus(FakeDaemon(["/lib"])))
    with pytest.raises(InvalidParameter, match="bad arguments for Cluster"):
        call(connection, "Cluster", "d", ["0.5"])


def test_not_found_means_what_the_caller_says():
    connection = Connection(on_signal=print, transport=MockBus(FakeDaemon(["/lib"], unmounted=["/lib"])))
    with pytest.raises(LibraryNotFound):
        call(connection, "ClusterLibrary", "sd", ["/lib", 0.5], not_found=LibraryNotFound)


class Silent(MockBus):
    """A bus whose calls end without a reply (dbus-fast answers None when the connection drops)."""

    async def call(self, message):
        if message.destination == "org.freedesktop.DBus":
            return await super().call(message)
        return None


def test_no_reply_is_disconnected():
    with pytest.raises(DaemonDisconnected, match="during Cluster"):
        call(Connection(on_signal=print, transport=Silent(FakeDaemon(["/lib"]))), "Cluster", "d", [0.5])


class Refusing(MockBus):
    """A bus that refuses the signal subscription."""

    def _bus_method(self, message):
        if message.member == "AddMatch":
            return Message.new_error(message, "org.freedesktop.DBus.Error.AccessDenied", "no")
        return super()._bus_method(message)


def test_a_refused_subscription_is_not_available():
    connection = Connection(on_signal=print, transport=Refusing(FakeDaemon(["/lib"])))

    async def main():
        try:
            await connection.subscribe(5)
        finally:
            await connection.close()

    with pytest.raises(DaemonNotAvailable, match="refused the signal subscription"):
        asyncio.run(main())


def test_only_the_daemons_signals_reach_the_callback():
    seen = []
    bus = MockBus(FakeDaemon(["/lib"]))
    connection = Connection(on_signal=lambda member, args: seen.append((member, args)), transport=bus)

    async def main():
        await connection.subscribe(5)
        assert connection.connected and MATCH_RULE.startswith("type='signal'")
        for handler in bus._handlers:  # what the bus delivers: ours, another interface's, another object's
            handler(Message.new_signal(OBJECT_PATH, INTERFACE, "Progress", "uu", [1, 2]))
            handler(Message.new_signal(OBJECT_PATH, "org.example.Other", "Progress", "uu", [3, 4]))
            handler(Message.new_signal("/elsewhere", INTERFACE, "Progress", "uu", [5, 6]))
        await connection.close()
        assert not connection.connected
        await connection.close()  # again: nothing to do

    asyncio.run(main())
    assert seen == [("Progress", [1, 2])]


def test_a_bus_that_cannot_be_reached_names_its_address():
    connection = Connection(on_signal=print, transport=MockBus(fail_connect=OSError(2, "No such file")))
    with pytest.raises(DaemonNotAvailable, match="cannot connect to the D-Bus session bus at the mock bus"):
        call(connection, "Cluster", "d", [0.5])
