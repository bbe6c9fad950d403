"""One rule finds the session bus for the daemon and for its clients.

``$DBUS_SESSION_BUS_ADDRESS``, else the socket ``$XDG_RUNTIME_DIR/bus`` (where
systemd's user instance puts the bus). Before, ``remote`` followed it but the
daemon exited 1 with "could not get DISPLAY environment variable".
"""

import os
import socket
import subprocess
import sys
import time

from imagecluster._session_bus import find_session_bus
from imagecluster.plugin_api import Client

STARTUP_TIMEOUT = 60.0  # the daemon's start on a loaded 2-core machine


def test_the_variable_comes_first_then_the_runtime_socket(tmp_path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "bus"))
        runtime = {"XDG_RUNTIME_DIR": str(tmp_path)}
        assert find_session_bus({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/y", **runtime}) == "unix:path=/y"
        assert find_session_bus(runtime) == f"unix:path={tmp_path}/bus"
        assert find_session_bus({"DBUS_SESSION_BUS_ADDRESS": "", **runtime}) == f"unix:path={tmp_path}/bus"
    (tmp_path / "bus").unlink()
    (tmp_path / "bus").write_text("not a socket")
    assert find_session_bus({"XDG_RUNTIME_DIR": str(tmp_path)}) is None
    assert find_session_bus({}) is None


def test_daemon_and_remote_find_the_bus_in_the_runtime_folder(runtime_bus, tmp_path, monkeypatch):
    unset = ("DBUS_SESSION_BUS_ADDRESS", "DBUS_STARTER_ADDRESS", "DISPLAY")
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env.update(XDG_RUNTIME_DIR=str(runtime_bus), XDG_CONFIG_HOME=str(tmp_path / "config"))
    library = tmp_path / "photos"
    library.mkdir()
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "imagecluster", "daemon", "--library", str(library)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            result = subprocess.run(
                [sys.executable, "-m", "imagecluster", "remote", "status", "--json"],
                capture_output=True, text=True, env=env, timeout=60,
            )
            if result.returncode == 0 or daemon.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert daemon.poll() is None, log.read_text()
        assert result.returncode == 0, result.stderr + log.read_text()
        assert f'"libraries": ["{library}"]' in result.stdout
        # The Python client follows the same rule.
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_bus))
        with Client() as client:
            assert client.status().libraries == (str(library),)
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0, log.read_text()
    assert "DISPLAY" not in log.read_text()
