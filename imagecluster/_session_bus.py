"""Where the D-Bus session bus is: one rule for the daemon, the clients and the installer.

``$DBUS_SESSION_BUS_ADDRESS`` when it is set, else the socket
``$XDG_RUNTIME_DIR/bus`` when there is one. The second is where systemd's user
instance puts the bus (``dbus-user-session``, dbus-broker), and libdbus, GDBus
and sd-bus look there too when the variable is unset; dbus-fast alone would
fall back to X11 and fail with "could not get DISPLAY environment variable".
Plain functions of the environment, no D-Bus code, so the plugin API can use
them without the daemon's dependencies.
"""

import os
import stat

__all__ = ["find_session_bus"]


def find_session_bus(environ=None):
    """The session bus's address, or ``None`` when the environment names none.

    Parameters
    ----------
    environ : mapping, default=None
        The environment to read; ``None`` means ``os.environ``.

    Returns
    -------
    address : str or None
        ``$DBUS_SESSION_BUS_ADDRESS`` if set and not empty, else
        ``unix:path=$XDG_RUNTIME_DIR/bus`` if that is a socket, else ``None``.
    """
    environ = os.environ if environ is None else environ
    address = environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if address:
        return address
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if not runtime:
        return None
    socket_path = os.path.join(runtime, "bus")
    try:
        is_socket = stat.S_ISSOCK(os.stat(socket_path).st_mode)
    except OSError:
        return None
    return f"unix:path={socket_path}" if is_socket else None
