"""The contract file: shipped with the package, and identical to what the running daemon introspects."""

import asyncio
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

import imagecluster.plugin_api as plugin_api
from imagecluster.daemon import _service
from imagecluster.plugin_api import BUS_NAME, ERROR_PREFIX, INTERFACE, INTERFACE_XML, OBJECT_PATH, interface_xml

ROOT = Path(__file__).parents[2]


def members(xml_text, interface=INTERFACE):
    """The interface's methods, signals and properties, normalised for comparison.

    Methods: name -> (in args as (name, type), out types, out names).
    Signals: name -> (types, names). Properties: name -> (type, access).
    Names of out and signal arguments are kept only to compare where both sides have them.
    """
    root = ET.fromstring(xml_text)
    found = [node for node in root.findall("interface") if node.get("name") == interface]
    assert len(found) == 1, f"{interface} is not (once) in the XML"
    node = found[0]
    methods, signals, properties = {}, {}, {}
    for method in node.findall("method"):
        args = method.findall("arg")
        ins = tuple((a.get("name"), a.get("type")) for a in args if a.get("direction", "in") == "in")
        outs = [a for a in args if a.get("direction") == "out"]
        methods[method.get("name")] = (ins, tuple(a.get("type") for a in outs), tuple(a.get("name") for a in outs))
    for signal in node.findall("signal"):
        args = signal.findall("arg")
        signals[signal.get("name")] = (tuple(a.get("type") for a in args), tuple(a.get("name") for a in args))
    for prop in node.findall("property"):
        properties[prop.get("name")] = (prop.get("type"), prop.get("access"))
    return methods, signals, properties


def assert_same_contract(ours, theirs):
    """``ours`` (the shipped file) describes exactly ``theirs`` (a live or generated introspection)."""
    our_methods, our_signals, our_props = members(ours)
    methods, signals, props = members(theirs)
    assert our_props == props
    assert sorted(our_methods) == sorted(methods)
    for name, (ins, out_types, out_names) in methods.items():
        our_ins, our_out_types, our_out_names = our_methods[name]
        assert our_ins == ins, name
        assert our_out_types == out_types, name
        assert all(our_out_names), f"{name}: the contract names every out argument"
        assert all(n is None or n == o for n, o in zip(out_names, our_out_names)), name
    assert sorted(our_signals) == sorted(signals)
    for name, (types, names) in signals.items():
        assert our_signals[name][0] == types, name
        assert all(our_signals[name][1]), f"{name}: the contract names every signal argument"
        assert all(n is None or n == o for n, o in zip(names, our_signals[name][1])), name


def test_the_contract_is_package_data_and_names_match_the_daemon():
    text = interface_xml()
    assert text == (Path(plugin_api.__file__).parent / INTERFACE_XML).read_text(encoding="utf-8")
    assert INTERFACE_XML == "org.imagecluster.ImageCluster1.xml"
    root = ET.fromstring(text)
    assert root.get("name") == OBJECT_PATH
    assert (BUS_NAME, OBJECT_PATH, INTERFACE, ERROR_PREFIX) == (
        _service.BUS_NAME, _service.OBJECT_PATH, _service.INTERFACE, _service.ERROR_PREFIX)


def test_setup_installs_the_contract_for_binding_generators():
    setup = (ROOT / "setup.py").read_text()
    package_data = next(line for line in setup.splitlines() if line.strip().startswith('"imagecluster.plugin_api":'))
    assert '"org.imagecluster.ImageCluster1.xml"' in package_data
    assert '("share/dbus-1/interfaces", ["imagecluster/plugin_api/org.imagecluster.ImageCluster1.xml"])' in setup


def test_every_documented_member_is_in_the_contract():
    methods, signals, props = members(interface_xml())
    api = (ROOT / "doc" / "dbus-api.rst").read_text()
    for name in [*methods, *signals]:
        assert f"``{name}(" in api, name
    for name, (kind, _) in props.items():
        assert f"``{name}``" in api and f"``{kind}``" in api, name


def test_the_contract_matches_the_service_class():
    """Without a bus: the dbus-fast interface the daemon exports describes the same members."""
    code = (
        "from dbus_fast.introspection import Node\n"
        "from imagecluster.daemon._service import ImageClusterInterface, OBJECT_PATH\n"
        "iface = ImageClusterInterface(None, None)\n"
        "print(Node(OBJECT_PATH, interfaces=[iface.introspect()]).tostring())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(result.stderr)
    assert_same_contract(interface_xml(), result.stdout)


def introspect(address):
    """The raw answer of org.freedesktop.DBus.Introspectable.Introspect on the daemon's object."""

    async def call():
        bus = await MessageBus(bus_address=address).connect()
        try:
            reply = await bus.call(Message(
                destination=BUS_NAME, path=OBJECT_PATH, interface="org.freedesktop.DBus.Introspectable",
                member="Introspect",
            ))
            assert reply.message_type is MessageType.METHOD_RETURN, reply.body
            return reply.body[0]
        finally:
            bus.disconnect()

    return asyncio.run(call())


def test_the_running_daemon_introspects_as_the_contract(photo_daemon):
    live = introspect(photo_daemon.address)
    assert_same_contract(interface_xml(), live)
    # the standard interfaces a binding relies on are served too
    served = {node.get("name") for node in ET.fromstring(live).findall("interface")}
    assert {"org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Properties",
            "org.freedesktop.DBus.Peer"} <= served
