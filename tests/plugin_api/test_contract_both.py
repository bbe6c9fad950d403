"""One contract test, run against the in-memory bus and against the real daemon on a real dbus-daemon.

Each case sends one raw D-Bus message and checks what comes back: the
error's name, or the reply's signature (the shipped XML's). The mock case is
part of the ``mockbus`` layer; the real one is what keeps the mock honest:
when the daemon changes what it answers, the real case fails first.
"""

import asyncio
import math

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.introspection import Node

from imagecluster.plugin_api import BUS_NAME, INTERFACE, OBJECT_PATH, interface_xml
from imagecluster.plugin_api._mockbus import FakeDaemon, MockBus

OURS = "org.imagecluster.ImageCluster1.Error."
FDO = "org.freedesktop.DBus.Error."
PROPS = "org.freedesktop.DBus.Properties"
PHOTO = "2024/cat_3.jpg"  # in both libraries


def contract():
    (interface,) = [i for i in Node.parse(interface_xml()).interfaces if i.name == INTERFACE]
    return interface


class Target:
    """Where the messages go: ``send(interface, member, signature, body)`` -> the reply Message."""

    def __init__(self, library, connect):
        self.library = library
        self._connect = connect

    def send(self, interface, member, signature="", body=()):
        async def main():
            bus = await self._connect()
            try:
                return await bus.call(Message(destination=BUS_NAME, path=OBJECT_PATH, interface=interface,
                                              member=member, signature=signature, body=list(body)))
            finally:
                bus.disconnect()

        return asyncio.run(main())


@pytest.fixture(params=[pytest.param("mock", marks=pytest.mark.mockbus), "real"])
def target(request):
    if request.param == "mock":
        library = "/photos"
        daemon = FakeDaemon([library], {f"{library}/{PHOTO}": [0.0, 1.0], f"{library}/2024/cat_2.jpg": [0.1, 1.0],
                                        f"{library}/notes.jpg": None}, sim=0.7)
        bus = MockBus(daemon)
        return Target(library, bus.connect)
    shared = request.getfixturevalue("photo_daemon")
    return Target(str(shared.library), lambda: MessageBus(bus_address=shared.address).connect())


def error_of(reply):
    assert reply.message_type is MessageType.ERROR, f"a reply {reply.signature!r}, not an error"
    return reply.error_name


ERROR_CASES = [
    ("Cluster", "d", lambda lib: [2.0], OURS + "InvalidArgument"),
    ("Cluster", "d", lambda lib: [math.nan], OURS + "InvalidArgument"),
    ("Cluster", "s", lambda lib: ["0.5"], FDO + "UnknownMethod"),  # dbus-fast: no such signature
    ("NoSuchMethod", "", lambda lib: [], FDO + "UnknownMethod"),
    ("WaitIdle", "d", lambda lib: [-1.0], OURS + "InvalidArgument"),
    ("WaitIdle", "d", lambda lib: [3601.0], OURS + "InvalidArgument"),
    ("Fingerprint", "s", lambda lib: [""], OURS + "InvalidArgument"),
    ("Fingerprint", "s", lambda lib: ["relative.jpg"], OURS + "InvalidArgument"),
    ("Fingerprint", "s", lambda lib: ["/elsewhere/x.jpg"], OURS + "NotInLibrary"),
    ("Fingerprint", "s", lambda lib: [f"{lib}/missing.jpg"], OURS + "NotFound"),
    ("Fingerprint", "s", lambda lib: [f"{lib}/notes.jpg"], OURS + "NotAnImage"),
    ("Similar", "sd", lambda lib: [f"{lib}/{PHOTO}", 1.5], OURS + "InvalidArgument"),
    ("ClusterLibrary", "sd", lambda lib: ["/elsewhere", 0.5], OURS + "NotInLibrary"),
    ("ClusterLibrary", "sd", lambda lib: ["photos", 0.5], OURS + "InvalidArgument"),
    ("WriteTree", "sds", lambda lib: [lib, 0.5, "relative"], OURS + "InvalidArgument"),
    ("Gallery", "s", lambda lib: ["/elsewhere"], OURS + "NotInLibrary"),
    ("Gallery", "s", lambda lib: ["photos"], OURS + "InvalidArgument"),
    ("Gallery", "d", lambda lib: [0.5], FDO + "UnknownMethod"),
]


@pytest.mark.parametrize("member, signature, body, error", ERROR_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_the_error_names(target, member, signature, body, error):
    assert error_of(target.send(INTERFACE, member, signature, body(target.library))) == error


@pytest.mark.parametrize("member, signature, body", [
    ("Fingerprint", "s", lambda lib: [f"{lib}/{PHOTO}"]),
    ("Similar", "sd", lambda lib: [f"{lib}/{PHOTO}", 0.0]),
    ("WaitIdle", "d", lambda lib: [0.0]),
])
def test_replies_have_the_contracts_signature(target, member, signature, body):
    reply = target.send(INTERFACE, member, signature, body(target.library))
    assert reply.message_type is MessageType.METHOD_RETURN, reply.body
    (method,) = [m for m in contract().methods if m.name == member]
    assert reply.signature == method.out_signature


def test_getall_is_every_property_with_its_type(target):
    reply = target.send(PROPS, "GetAll", "s", [INTERFACE])
    values = reply.body[0]
    assert {name: variant.signature for name, variant in values.items()} == {
        p.name: p.signature for p in contract().properties
    }
    assert values["Libraries"].value == [target.library] and values["Model"].value == "lite0"
    assert values["Sim"].value == 0.7


def test_properties_are_read_only(target):
    reply = target.send(PROPS, "Set", "ssv", [INTERFACE, "Sim", Variant("d", 0.5)])
    assert error_of(reply).startswith(FDO)
    assert target.send(PROPS, "Get", "ss", [INTERFACE, "Sim"]).body[0].value == 0.7


def test_introspection_has_the_contracts_members(target):
    reply = target.send("org.freedesktop.DBus.Introspectable", "Introspect")
    (live,) = [i for i in Node.parse(reply.body[0]).interfaces if i.name == INTERFACE]
    ours = contract()
    assert {(m.name, m.in_signature, m.out_signature) for m in live.methods} == {
        (m.name, m.in_signature, m.out_signature) for m in ours.methods
    }
    assert {(s.name, s.signature) for s in live.signals} == {(s.name, s.signature) for s in ours.signals}
