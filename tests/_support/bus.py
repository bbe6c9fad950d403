"""A private ``dbus-daemon`` for a test or a benchmark: nothing the user installed can be activated on it."""

import os
import select
import subprocess

from .processes import stop_process

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


class PrivateBus:
    """A running ``dbus-daemon`` with a generated config; a context manager.

    Parameters
    ----------
    folder : Path
        Its config, log and ``services`` folder (the only activation folder) go here.
    listen : str, default="unix:tmpdir=/tmp"
        The D-Bus listen address.
    new_session : bool, default=False
        Start it in a session of its own (a benchmark's Ctrl-C then reaches
        only the benchmark, which stops it).

    Attributes
    ----------
    address : str
        Its D-Bus address.
    servicedir : Path
        Where activation files go.
    """

    def __init__(self, folder, listen="unix:tmpdir=/tmp", *, new_session=False):
        self.servicedir = folder / "services"
        self.servicedir.mkdir(parents=True, exist_ok=True)
        self._group = new_session
        config = folder / "bus.conf"
        config.write_text(BUS_CONFIG.format(servicedir=self.servicedir, listen=listen))
        with open(folder / "bus.log", "wb") as log:
            self.proc = subprocess.Popen(
                ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
                stdout=subprocess.PIPE, stderr=log, start_new_session=new_session,
            )
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        self.address = self.proc.stdout.readline().decode().strip() if ready else ""
        if not self.address:
            self.stop()
            raise RuntimeError("dbus-daemon did not print its address")

    def stop(self):
        """Stop the bus (SIGTERM; SIGKILL after 10 s)."""
        stop_process(self.proc, 10, group=self._group)
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def bus_env(address, folder, environ=None):
    """An environment for processes on the bus at ``address``: empty XDG config and data folders in ``folder``."""
    env = dict(os.environ if environ is None else environ, DBUS_SESSION_BUS_ADDRESS=address)
    env.pop("DBUS_STARTER_ADDRESS", None)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        path = folder / name.lower()
        path.mkdir(exist_ok=True)
        env[name] = str(path)
    return env
