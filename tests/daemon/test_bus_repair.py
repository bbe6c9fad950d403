"""The daemon keeps its bus connection when the socket is full (dbus-fast's writer, repaired).

The private bus is paused (SIGSTOP) so that the socket fills, as it does
when the bus is slower than the daemon; a large message is then left partly
written and a small one is sent behind it, which dbus-fast 5.2 alone takes
for a broken connection (without the repair this test fails, and dbus-fast
leaves its closed socket behind, so there is no test of that here).
"""

import asyncio
import os
import signal
from typing import Annotated

from dbus_fast import Message
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_signal

from imagecluster.daemon._bus_repair import tolerate_full_socket

INTERFACE = "test.imagecluster.Big"
PHOTOS = 20_000  # about 1 MB of paths: more than a Unix socket's buffer


class _Signals(ServiceInterface):
    def __init__(self):
        super().__init__(INTERFACE)

    @dbus_signal()
    def Big(self) -> Annotated[list, DBusSignature("as")]:
        return [f"/home/you/Pictures/{i:03d}/IMG_{i:05d}.jpg" for i in range(PHOTOS)]

    @dbus_signal()
    def Small(self) -> DBusUInt32:
        return 1


async def _send_while_paused(session_bus, *, repaired):
    """Send Big then Small while the bus is paused; (sender still connected, members received)."""
    sender = await MessageBus(bus_address=session_bus.address).connect()
    receiver = await MessageBus(bus_address=session_bus.address).connect()
    received, small = [], asyncio.Event()

    def on_message(message):
        if message.interface == INTERFACE:
            received.append((message.member, len(message.body[0]) if message.member == "Big" else 1))
            if message.member == "Small":
                small.set()

    receiver.add_message_handler(on_message)
    await receiver.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
        member="AddMatch", signature="s", body=[f"type='signal',interface='{INTERFACE}'"],
    ))
    if repaired:
        tolerate_full_socket(sender)
    signals = _Signals()
    sender.export("/test", signals)
    os.kill(session_bus.proc.pid, signal.SIGSTOP)
    try:
        signals.Big()
        signals.Small()
        await asyncio.sleep(0.2)
    finally:
        os.kill(session_bus.proc.pid, signal.SIGCONT)
    if sender.connected:
        await asyncio.wait_for(small.wait(), 30)
    connected = sender.connected
    sender.disconnect()
    receiver.disconnect()
    return connected, received


def test_a_full_socket_does_not_drop_the_connection(session_bus):
    connected, received = asyncio.run(_send_while_paused(session_bus, repaired=True))
    assert connected
    assert received == [("Big", PHOTOS), ("Small", 1)]  # both, whole, in order
