"""``imagecluster install-service``: the systemd user unit and the D-Bus activation file.

Both come from templates shipped in ``imagecluster/daemon/templates/`` (the
repository's ``systemd/`` holds the same files, filled in for
``/usr/bin/python3``). ``@PYTHON@`` becomes the Python this installation runs
with, so a virtual environment's daemon runs in that environment.
"""

import subprocess
import sys
from importlib import resources
from pathlib import Path

from .._exceptions import InstallError
from .._xdg import InstalledFile, write_if_changed, xdg_config_home, xdg_data_home
from ._config import ConfigError, default_config_path, load_config
from ._service import BUS_NAME

__all__ = ["ACTIVATION_FILE", "UNIT_FILE", "NEXT_STEP", "InstallError", "InstalledFile", "install_service", "render",
           "service_dirs", "service_warnings"]

UNIT_FILE = "imagecluster.service"
ACTIVATION_FILE = f"{BUS_NAME}.service"

NEXT_STEP = "systemctl --user daemon-reload && systemctl --user enable --now imagecluster"


def service_dirs(environ=None):
    """Where the files go: ``($XDG_CONFIG_HOME/systemd/user, $XDG_DATA_HOME/dbus-1/services)``.

    Unset or relative ``XDG_*`` variables mean ``~/.config`` and ``~/.local/share``.
    """
    return xdg_config_home(environ) / "systemd" / "user", xdg_data_home(environ) / "dbus-1" / "services"


def render(name, *, python=None, daemon_args=()):
    """The text of the template ``name`` with the daemon's command line filled in.

    Parameters
    ----------
    name : {UNIT_FILE, ACTIVATION_FILE}
        Which file.
    python : str, default=None
        The interpreter; None means ``sys.executable``.
    daemon_args : sequence of str, default=()
        Extra arguments after ``-m imagecluster daemon`` (e.g. ``--config FILE``).
    """
    python = sys.executable if python is None else python
    command = " ".join(_quote(arg) for arg in [python, "-m", "imagecluster", "daemon", *daemon_args])
    if name == UNIT_FILE:
        command = command.replace("%", "%%")  # systemd expands %-specifiers
    template = (resources.files(__package__) / "templates" / name).read_text(encoding="utf-8")
    return template.replace("@PYTHON@ -m imagecluster daemon", command)


def _quote(arg):
    """Quote one argument for both systemd's ExecStart= and D-Bus' Exec= (both split like a shell)."""
    if not any(c in arg for c in " \t\"'\\"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def install_service(*, unit_dir=None, dbus_dir=None, python=None, daemon_args=()):
    """Write the systemd user unit and the D-Bus activation file; idempotent.

    Parameters
    ----------
    unit_dir : path-like, default=None
        Folder of the unit; None means ``~/.config/systemd/user`` (XDG).
    dbus_dir : path-like, default=None
        Folder of the activation file; None means ``~/.local/share/dbus-1/services`` (XDG).
    python : str, default=None
        Interpreter that runs the daemon; None means this one (``sys.executable``).
    daemon_args : sequence of str, default=()
        Extra daemon arguments for both files.

    Returns
    -------
    list of InstalledFile
        The unit, then the activation file.

    Raises
    ------
    InstallError
        A folder or file could not be written.
    """
    default_unit_dir, default_dbus_dir = service_dirs()
    unit_dir = Path(unit_dir) if unit_dir is not None else default_unit_dir
    dbus_dir = Path(dbus_dir) if dbus_dir is not None else default_dbus_dir
    kwargs = {"python": python, "daemon_args": daemon_args}
    return [
        write_if_changed(unit_dir / UNIT_FILE, render(UNIT_FILE, **kwargs)),
        write_if_changed(dbus_dir / ACTIVATION_FILE, render(ACTIVATION_FILE, **kwargs)),
    ]


def service_warnings(*, python=None, environ=None):
    """What would stop the installed service from working, in words (empty when all is well).

    Checks that ``python`` imports imagecluster outside this folder (systemd
    starts the daemon in ``$HOME``) and that the config file names a library.
    """
    python = sys.executable if python is None else python
    warnings = []
    try:
        result = subprocess.run(
            [python, "-c", "import imagecluster.daemon"], cwd="/", capture_output=True, timeout=60,
        )
        importable = result.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        importable = False
    if not importable:
        warnings.append(
            f"{python} cannot import imagecluster outside this folder; install it first (pip install .)"
        )
    path = default_config_path(environ)
    try:
        load_config(environ=environ)
    except ConfigError as exc:
        if path.is_file():
            warnings.append(f"the daemon will not start: {exc}")
        else:
            warnings.append(f"the daemon has no library yet: create {path} with libraries = [\"~/Pictures\"]")
    return warnings
