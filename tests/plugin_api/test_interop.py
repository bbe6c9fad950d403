"""The daemon through the D-Bus stacks photo managers use: GDBus (Shotwell), sd-bus, QtDBus (digiKam).

Each stack, on the shared private bus, calls ``Cluster`` and ``Fingerprint``
(of ``café_ß.jpg``: UTF-8 paths cross every stack), reads properties, gets a
named error back, and receives ``ClustersWritten``.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagecluster.plugin_api import BUS_NAME, INTERFACE, OBJECT_PATH

HERE = Path(__file__).parent
CATS = sorted(["cat_1.jpg", "cat_2.jpg", "cat_3.jpg", "café_ß.jpg"])
CLUSTERS = sorted([CATS, ["dog_1.jpg", "dog_2.jpg", "dog_3.jpg"]])
SIGNAL_TIMEOUT = 60.0


def basenames(clusters):
    return sorted(sorted(os.path.basename(p) for p in cluster) for cluster in clusters)


def gdbus(shared, method, *args, interface=INTERFACE):
    return shared.run("gdbus", "call", "--session", "--timeout", "120", "--dest", BUS_NAME,
                      "--object-path", OBJECT_PATH, "--method", f"{interface}.{method}", *args)


def busctl(shared, *args):
    return shared.run("busctl", "--user", "--json=short", "--timeout=120", *args)


def receive_signal(shared, monitor_argv, trigger, seen):
    """Start a monitor, ``trigger()`` until ``seen(output)`` (the monitor may need a moment to subscribe)."""
    monitor = subprocess.Popen(monitor_argv, env=shared.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = b""
    try:
        deadline = time.monotonic() + SIGNAL_TIMEOUT
        while not seen(output.decode("utf-8", "replace")):
            if time.monotonic() > deadline:
                raise AssertionError(f"no signal within {SIGNAL_TIMEOUT} s; the monitor said:\n{output.decode()}")
            trigger()
            wait_until = time.monotonic() + 2
            while not seen(output.decode("utf-8", "replace")) and time.monotonic() < wait_until:
                ready, _, _ = select.select([monitor.stdout], [], [], 0.1)
                if ready:
                    chunk = os.read(monitor.stdout.fileno(), 65536)
                    if not chunk:
                        raise AssertionError(f"the monitor exited:\n{output.decode()}")
                    output += chunk
        return output.decode("utf-8")
    finally:
        monitor.send_signal(signal.SIGINT)
        try:
            monitor.wait(10)
        except subprocess.TimeoutExpired:
            monitor.kill()
            monitor.wait()
        monitor.stdout.close()


# ---------------------------------------------------------------- GDBus


def test_gdbus(photo_daemon):
    lib = photo_daemon.library
    answer = gdbus(photo_daemon, "Cluster", "0.7")
    assert answer.returncode == 0, answer.stderr
    clusters = [re.findall(r"'([^']*)'", group) for group in re.findall(r"\[('[^\]]*)\]", answer.stdout.decode())]
    assert basenames(clusters) == CLUSTERS

    answer = gdbus(photo_daemon, "Fingerprint", str(lib / "2024/café_ß.jpg"))
    assert answer.returncode == 0, answer.stderr
    assert len(answer.stdout.decode().strip("([],)\n").split(",")) == 1280

    answer = gdbus(photo_daemon, "GetAll", INTERFACE, interface="org.freedesktop.DBus.Properties")
    props = answer.stdout.decode()
    assert "'Model': <'lite0'>" in props and "'Indexed': <uint32 7>" in props and "'State': <'idle'>" in props
    assert f"'Libraries': <['{lib}']>" in props

    answer = gdbus(photo_daemon, "Fingerprint", "/etc/passwd")
    assert answer.returncode != 0
    assert "GDBus.Error:org.imagecluster.ImageCluster1.Error.NotInLibrary" in answer.stderr.decode()

    line = f"{INTERFACE}.ClustersWritten ('{lib / 'clusters'}', uint32 2)"
    output = receive_signal(
        photo_daemon, ["gdbus", "monitor", "--session", "--dest", BUS_NAME],
        trigger=lambda: gdbus(photo_daemon, "ClusterLibrary", str(lib), "0.7"), seen=lambda out: line in out,
    )
    assert line in output


# --------------------------------------------------------------- sd-bus


def test_busctl(photo_daemon):
    lib = photo_daemon.library
    target = [BUS_NAME, OBJECT_PATH, INTERFACE]
    answer = busctl(photo_daemon, "call", *target, "Cluster", "d", "0.7")
    assert answer.returncode == 0, answer.stderr
    reply = json.loads(answer.stdout)
    assert reply["type"] == "aas" and basenames(reply["data"][0]) == CLUSTERS

    answer = busctl(photo_daemon, "call", *target, "Fingerprint", "s", str(lib / "2024/café_ß.jpg"))
    assert answer.returncode == 0, answer.stderr
    reply = json.loads(answer.stdout)
    assert reply["type"] == "ad" and len(reply["data"][0]) == 1280

    answer = busctl(photo_daemon, "get-property", *target, "Model", "Indexed", "Libraries", "Sim")
    assert answer.returncode == 0, answer.stderr
    assert [json.loads(line) for line in answer.stdout.decode().splitlines()] == [
        {"type": "s", "data": "lite0"}, {"type": "u", "data": 7}, {"type": "as", "data": [str(lib)]},
        {"type": "d", "data": 0.7},
    ]

    answer = busctl(photo_daemon, "call", *target, "Fingerprint", "s", "/etc/passwd")
    assert answer.returncode != 0 and "is not inside a library" in answer.stderr.decode()

    rule = f"type='signal',interface='{INTERFACE}',member='ClustersWritten'"

    def written(output):
        return any(json.loads(line).get("payload", {}).get("data") == [str(lib / "clusters"), 2]
                   for line in output.splitlines() if line.startswith("{"))

    receive_signal(
        photo_daemon, ["busctl", "--user", "--json=short", "monitor", f"--match={rule}"],
        trigger=lambda: busctl(photo_daemon, "call", *target, "Cluster", "d", "0.7"), seen=written,
    )


# --------------------------------------------------------------- QtDBus


def test_qtdbus(photo_daemon):
    if not os.environ.get("CI"):
        pytest.importorskip("PySide6.QtDBus", reason="pip install PySide6-Essentials (the test extra)")
    lib = photo_daemon.library
    env = dict(photo_daemon.env, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [sys.executable, str(HERE / "qtdbus_plugin.py"), str(lib / "2024/café_ß.jpg"), "/etc/passwd"],
        env=env, capture_output=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["connected"] and report["valid"]
    assert report["properties"] == {
        "Libraries": [str(lib)], "Model": "lite0", "Indexed": 7, "Pending": 0, "State": "idle", "Sim": 0.7,
        "Version": report["properties"]["Version"],
    }
    assert len(report["fingerprint"]) == 1280
    assert report["error"][0] == "org.imagecluster.ImageCluster1.Error.NotInLibrary"
    assert report["subscribed"] is True
    assert basenames(report["clusters"]) == CLUSTERS
    assert report["written"] == [[str(lib / "clusters"), 2]]
