"""``systemctl --user start imagecluster``, for real: the README's steps under a real systemd user manager.

How the manager runs without systemd as PID 1: as root, in a private mount
namespace (``unshare -m --propagation private``) in which a tmpfs covers
``/run/systemd`` and ``/run/systemd/system`` exists (the mark by which systemd
and systemctl recognise a systemd system; the host's ``/run`` is untouched).
There ``/lib/systemd/systemd --user`` runs with ``HOME`` and
``XDG_RUNTIME_DIR`` of the test. The session bus at ``$XDG_RUNTIME_DIR/bus``
is the manager's own ``dbus.socket`` (Debian's ``dbus-user-session``), as in a
desktop session: a bus started beside the manager would not do, because a
``Type=dbus`` unit requires ``dbus.socket`` and that socket takes over the
path. ``systemctl`` runs inside the namespace (``nsenter``); imagecluster's
commands and the client run outside, on the bus socket, as a user's would.

Root only (CI runs as root); elsewhere the tests skip saying why, unless
``IMAGECLUSTER_REQUIRE_SYSTEMD=1`` (``.ci/run`` sets it), where they fail.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagecluster.daemon._install import NEXT_STEP
from imagecluster.plugin_api import Client

SYSTEMD = "/lib/systemd/systemd"
DBUS_SOCKET_UNIT = "/usr/lib/systemd/user/dbus.socket"
REQUIRE = os.environ.get("IMAGECLUSTER_REQUIRE_SYSTEMD") == "1"

# Inside the new mount namespace: make /run/systemd/system exist, then become the user manager.
NAMESPACE_SCRIPT = (
    "mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system "
    f"&& exec {SYSTEMD} --user"
)

# Generous: systemd starting, the worker loading TensorFlow on a loaded 2-core machine.
TIMEOUT = 120.0


def _missing():
    """Why the user manager cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "systemd runs on Linux only"
    if os.geteuid() != 0:
        return "needs root for a private mount namespace (unshare -m); CI runs as root"
    for tool in ("unshare", "nsenter", "systemctl", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: util-linux, systemd)"
    if not os.access(SYSTEMD, os.X_OK):
        return f"{SYSTEMD} is missing (Debian: systemd)"
    if not os.path.exists(DBUS_SOCKET_UNIT):
        return f"{DBUS_SOCKET_UNIT} is missing: the session bus of a user manager (Debian: dbus-user-session)"
    return None


class UserSession:
    """A systemd user manager in a mount namespace of its own, and its session bus."""

    def __init__(self, folder):
        self.home = folder / "home"
        self.runtime = folder / "runtime"
        self.home.mkdir()
        self.runtime.mkdir(mode=0o700)
        self.config_file = self.home / ".config" / "imagecluster" / "config.toml"
        self.log_path = folder / "systemd.log"
        self.proc = None

    def start(self):
        """Start the manager; it inherits this process's environment."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def systemctl(self, *args, check=False):
        """``systemctl --user ARGS`` in the manager's namespace."""
        return self.shell("systemctl --user " + " ".join(args), check=check)

    def shell(self, command, check=False):
        """A shell command in the manager's namespace (``systemctl`` needs its ``/run/systemd``)."""
        result = subprocess.run(
            ["nsenter", "--target", str(self.proc.pid), "--mount", "--", "sh", "-c", command],
            capture_output=True, text=True, timeout=TIMEOUT,
        )
        if check:
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}\n{self.status()}"
        return result

    def show(self):
        """The service's state, restart count, main process and exit status."""
        names = "ActiveState,SubState,Result,NRestarts,MainPID,ExecMainStatus"
        out = self.systemctl("show", "-p", names, "imagecluster").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def status(self):
        """What systemd says about the service, for failure messages."""
        return self.systemctl("status", "--no-pager", "-l", "imagecluster").stdout

    def wait_for(self, predicate, what):
        """Poll :meth:`show` until ``predicate(state)``; returns that state."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            state = self.show()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {TIMEOUT:g} s: {state}\n{self.status()}")
            time.sleep(0.1)

    def wait_until_running(self):
        deadline = time.monotonic() + TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            state = self.systemctl("is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)
        raise AssertionError(f"systemd --user did not come up: {self.log_path.read_text(errors='replace')}")

    def stop(self):
        """Stop the manager (it stops its units, the bus and the daemon first)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _left_over(runtime):
    """Processes (other than this one) started with our XDG_RUNTIME_DIR: what the manager failed to stop."""
    marker = f"XDG_RUNTIME_DIR={runtime}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue  # exited meanwhile, or not ours to read
    return found


@pytest.fixture
def session(tmp_path, monkeypatch):
    """A running systemd user manager with HOME, XDG_* and the session bus of this test; stopped at the end."""
    reason = _missing()
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"{reason}, and IMAGECLUSTER_REQUIRE_SYSTEMD=1")
        pytest.skip(reason)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")  # the converted model weights
    user = UserSession(tmp_path)
    # libdbus finds ~/.local/share through the password database, not $HOME: name the folders.
    env = {
        "HOME": user.home, "XDG_RUNTIME_DIR": user.runtime, "XDG_CONFIG_HOME": user.home / ".config",
        "XDG_DATA_HOME": user.home / ".local" / "share", "XDG_CACHE_HOME": cache,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    for name in ("DBUS_SESSION_BUS_ADDRESS", "DBUS_STARTER_ADDRESS", "DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    user.start()
    user.wait_until_running()
    yield user
    user.stop()
    left = _left_over(user.runtime)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running after systemd --user stopped: {left}"


def _imagecluster(*args):
    """The imagecluster command of this installation, as the README runs it."""
    return subprocess.run(
        [sys.executable, "-m", "imagecluster", *args], capture_output=True, text=True, timeout=TIMEOUT,
    )


def _install(session, config_text):
    """The README's steps: the config file, ``imagecluster install-service``, then the step it prints."""
    session.config_file.parent.mkdir(parents=True)
    session.config_file.write_text(config_text)
    installed = _imagecluster("install-service")
    assert installed.returncode == 0, installed.stderr
    assert f"next: {NEXT_STEP}\n" in installed.stdout
    return installed.stdout, session.shell(NEXT_STEP)


def test_the_readme_steps_start_stop_activate_and_restart_the_service(session, burst_library):
    out, step = _install(session, f'libraries = ["{burst_library}"]\n')
    assert "warning" not in out, out
    assert step.returncode == 0, step.stderr + session.status()
    assert session.systemctl("is-active", "imagecluster").stdout == "active\n"
    first = session.show()

    # A Cluster call through the started service (it fingerprints the photos first).
    with Client(timeout=TIMEOUT, work_timeout=TIMEOUT) as client:
        assert client.wait_idle(TIMEOUT)
        clusters = client.cluster(0.7)
    assert sorted(sorted(Path(p).name for p in c) for c in clusters) == [
        ["cat_1.jpg", "cat_2.jpg", "cat_3.jpg"], ["dog_1.jpg", "dog_2.jpg", "dog_3.jpg"],
    ]
    assert session.show()["MainPID"] == first["MainPID"]  # the unit's process answered

    # stop: inactive, not failed.
    session.systemctl("stop", "imagecluster", check=True)
    result = session.systemctl("is-active", "imagecluster")
    assert (result.stdout, result.returncode) == ("inactive\n", 3)
    assert session.show()["Result"] == "success"

    # A call while stopped starts it again through D-Bus activation, as the unit.
    with Client(timeout=TIMEOUT) as client:
        assert client.status().libraries == (str(burst_library),)
    started = session.show()
    assert started["ActiveState"] == "active" and started["MainPID"] not in ("0", first["MainPID"]), started

    # SIGKILL: systemd restarts it (Restart=on-failure).
    os.kill(int(started["MainPID"]), signal.SIGKILL)
    restarted = session.wait_for(
        lambda s: s["ActiveState"] == "active" and s["MainPID"] not in ("0", started["MainPID"]),
        "a restart after SIGKILL",
    )
    assert restarted["NRestarts"] == "1"
    with Client(timeout=TIMEOUT) as client:
        assert client.status().indexed == 6


def test_a_bad_config_fails_with_status_2_and_is_not_restarted(session):
    out, step = _install(session, "libraries = 5\n")
    assert "warning: the daemon will not start" in out
    assert step.returncode != 0  # enable --now reports the failed start
    failed = session.wait_for(lambda s: s["ActiveState"] == "failed", "the failure")
    assert (failed["Result"], failed["ExecMainStatus"], failed["NRestarts"]) == ("exit-code", "2", "0"), failed
    time.sleep(1.0)  # RestartSec is 100 ms: a restart loop would have shown by now
    again = session.show()
    assert (again["ActiveState"], again["NRestarts"]) == ("failed", "0"), again

    # A call now (D-Bus activation asks systemd, which fails again) says so at
    # once, with the fix, instead of waiting out --timeout like a slow daemon.
    remote = subprocess.run(
        [sys.executable, "-m", "imagecluster", "remote", "status", "--timeout", "600"],
        capture_output=True, text=True, timeout=60,
    )
    assert remote.returncode == 3, remote.stderr
    assert "the imagecluster service failed (it exited with status 2: its config file" in remote.stderr
    assert "systemctl --user status imagecluster" in remote.stderr
    assert "systemctl --user restart imagecluster" in remote.stderr
    assert session.show()["NRestarts"] == "0"
