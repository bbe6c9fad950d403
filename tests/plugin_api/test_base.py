"""The client's I/O-free parts: argument checks, error mapping, states, callbacks, the bus address."""

import asyncio
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from dbus_fast import Variant

import imagecluster
import imagecluster.plugin_api as plugin_api
from imagecluster.plugin_api import (
    AsyncClient,
    Client,
    DaemonDisconnected,
    DaemonFailed,
    DaemonNotAvailable,
    DaemonTimeout,
    ImageClusterError,
    InvalidParameter,
    LibraryNotFound,
    NotAnImage,
    NotInLibrary,
    NotOurTree,
    PhotoNotFound,
    Status,
)
from imagecluster.plugin_api._base import _fingerprint, _status, check_path, check_timeout, check_wait
from imagecluster.plugin_api._connection import session_bus_address
from imagecluster.plugin_api._contract import error_from_dbus

PREFIX = "org.imagecluster.ImageCluster1.Error."
FDO = "org.freedesktop.DBus.Error."


def test_exported_members():
    assert sorted(plugin_api.__all__) == plugin_api.__all__
    for name in plugin_api.__all__:
        assert hasattr(plugin_api, name), name
    errors = [getattr(plugin_api, n) for n in plugin_api.__all__ if isinstance(getattr(plugin_api, n), type)
              and issubclass(getattr(plugin_api, n), Exception)]
    assert all(issubclass(e, ImageClusterError) for e in errors)


def test_the_new_errors_are_leaves_of_the_one_root_and_builtins():
    assert issubclass(DaemonNotAvailable, ConnectionError)
    assert issubclass(DaemonDisconnected, ConnectionError)
    assert issubclass(DaemonTimeout, TimeoutError)
    assert issubclass(DaemonFailed, RuntimeError)
    for error in (DaemonNotAvailable, DaemonDisconnected, DaemonTimeout, DaemonFailed):
        assert issubclass(error, imagecluster.ImageClusterError)
        assert error.__name__ in imagecluster._exceptions.__doc__


def test_importing_the_core_does_not_load_the_plugin_api():
    code = ("import sys, imagecluster, imagecluster.cli;"
            "print([m for m in sys.modules if 'plugin_api' in m or m == 'dbus_fast'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.parametrize(("name", "error"), [
    ("InvalidArgument", InvalidParameter),
    ("NotInLibrary", NotInLibrary),
    ("NotFound", PhotoNotFound),
    ("NotAnImage", NotAnImage),
    ("NotOurTree", NotOurTree),
    ("Failed", DaemonFailed),
    ("SomethingNewer", DaemonFailed),
])
def test_each_daemon_error_name_becomes_the_exception_of_the_same_meaning(name, error):
    exc = error_from_dbus(PREFIX + name, "what went wrong", member="Fingerprint")
    assert type(exc) is error
    assert "what went wrong" in str(exc)


def test_not_found_about_a_library_is_library_not_found():
    exc = error_from_dbus(PREFIX + "NotFound", "library /mnt/photos is not available now", member="ClusterLibrary",
                          not_found=LibraryNotFound)
    assert type(exc) is LibraryNotFound and isinstance(exc, FileNotFoundError)


@pytest.mark.parametrize(("name", "error", "words"), [
    (FDO + "ServiceUnknown", DaemonNotAvailable, "imagecluster install-service"),
    (FDO + "NameHasNoOwner", DaemonNotAvailable, "imagecluster install-service"),
    (FDO + "Spawn.ChildExited", DaemonNotAvailable, "journalctl --user -u imagecluster"),
    (FDO + "NoReply", DaemonDisconnected, "went away before answering Cluster"),
    (FDO + "TimedOut", DaemonTimeout, "Cluster"),
    (FDO + "InvalidArgs", InvalidParameter, "the text"),
    (FDO + "UnknownMethod", DaemonFailed, "older than this client"),
    ("com.example.Error.Odd", DaemonFailed, "com.example.Error.Odd"),
])
def test_bus_errors_become_clear_exceptions(name, error, words):
    exc = error_from_dbus(name, "the text", member="Cluster")
    assert type(exc) is error
    assert words in str(exc)


@pytest.mark.parametrize("sim", [-0.1, 1.5, math.nan, "high", None])
def test_a_bad_sim_is_refused_before_anything_is_sent(sim):
    client = Client()
    with pytest.raises(InvalidParameter):
        client._cluster_call(sim, 10)
    with pytest.raises(InvalidParameter):
        client._similar_call("/x.jpg", sim, 10)
    assert client._runner is None  # nothing was started
    client.close()


def test_paths_are_made_absolute_and_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_path("a/b.jpg") == str(tmp_path / "a/b.jpg")
    assert check_path(tmp_path / "c.jpg") == str(tmp_path / "c.jpg")
    assert check_path("/x/../y/café.jpg") == "/y/café.jpg"
    for bad in ("", b"\xff\xfe.jpg", 3, None, "a\0b"):
        with pytest.raises(InvalidParameter):
            check_path(bad)


def test_timeouts_are_checked():
    assert check_timeout(None) is None and check_timeout(3) == 3.0
    for bad in (0, -1, math.nan, "soon"):
        with pytest.raises(InvalidParameter):
            check_timeout(bad)
    assert check_wait(0) == 0.0 and check_wait(3600) == 3600.0
    for bad in (-1, 3601, math.nan, "x"):
        with pytest.raises(InvalidParameter):
            check_wait(bad)
    with pytest.raises(InvalidParameter):
        Client(timeout=0)
    with pytest.raises(InvalidParameter):
        AsyncClient(work_timeout=-5)


def test_each_call_takes_its_timeout_from_the_client_or_the_call():
    client = Client(timeout=7, work_timeout=70)
    assert client._status_call(plugin_api.USE_CLIENT_DEFAULT).timeout == 7
    assert client._cluster_call(0.5, plugin_api.USE_CLIENT_DEFAULT).timeout == 70
    assert client._fingerprint_call("/x.jpg", 3).timeout == 3
    assert client._fingerprint_call("/x.jpg", None).timeout is None
    assert client._wait_idle_call(60).timeout == 67  # the wait, plus a quick call's time
    client.close()


def test_answers_are_read_into_python_types():
    vector = _fingerprint([[0.6, 0.8, 0.0]])
    assert vector.dtype == np.float32 and vector.shape == (3,)
    values = {"Libraries": Variant("as", ["/p"]), "Model": Variant("s", "lite0"), "Indexed": Variant("u", 3),
              "Pending": Variant("u", 0), "State": Variant("s", "idle"), "Sim": Variant("d", 0.7),
              "Version": Variant("s", "0.1.0")}
    status = _status([values])
    assert status == Status(libraries=("/p",), model="lite0", indexed=3, pending=0, state="idle", sim=0.7,
                            version="0.1.0")
    with pytest.raises(Exception):
        status.indexed = 4  # frozen
    del values["Version"]
    with pytest.raises(DaemonFailed, match="Version"):
        _status([values])


def test_a_closed_client_cannot_be_used_or_reopened():
    with Client() as client:
        with pytest.raises(RuntimeError):
            client.__enter__()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.status()
    with pytest.raises(RuntimeError, match="reopen"):
        client.__enter__()
    client.close()  # idempotent


def test_a_closed_async_client_cannot_be_used_or_reopened():
    async def main():
        async with AsyncClient() as client:
            pass
        assert client.is_closed
        with pytest.raises(RuntimeError, match="closed"):
            await client.status()
        with pytest.raises(RuntimeError, match="reopen"):
            await client.__aenter__()
        await client.aclose()

    asyncio.run(main())


def test_callbacks_are_called_with_typed_values_until_unsubscribed():
    client = Client()
    seen = []
    stop = client._add_callback("Progress", lambda i, p: seen.append((i, p)))
    client._add_callback("Progress", lambda i, p: seen.append("second"))
    targets = client._targets("Progress", [3, 1])
    for callback, args in targets:
        callback(*args)
    assert seen == [(3, 1), "second"]
    stop()
    stop()  # twice is harmless
    assert len(client._targets("Progress", [3, 1])) == 1
    assert client._targets("ClustersWritten", ["/t", 2]) == []
    with pytest.raises(InvalidParameter):
        client._add_callback("Progress", "not callable")
    client.close()


def test_the_session_bus_address_comes_from_the_environment(tmp_path):
    assert session_bus_address("unix:path=/x") == "unix:path=/x"
    assert session_bus_address(environ={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/y"}) == "unix:path=/y"
    with socket.socket(socket.AF_UNIX) as sock:  # systemd's user bus, when the variable is not set
        sock.bind(str(tmp_path / "bus"))
        assert session_bus_address(environ={"XDG_RUNTIME_DIR": str(tmp_path)}) == f"unix:path={tmp_path}/bus"
    os.unlink(tmp_path / "bus")
    with pytest.raises(DaemonNotAvailable, match="DBUS_SESSION_BUS_ADDRESS"):
        session_bus_address(environ={"XDG_RUNTIME_DIR": str(tmp_path)})
    with pytest.raises(DaemonNotAvailable, match="DBUS_SESSION_BUS_ADDRESS"):
        session_bus_address(environ={})
