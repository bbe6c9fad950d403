"""The D-Bus contract seen from a client: the XML file that describes it, and how its errors map to ours.

The names come from :mod:`imagecluster._dbus_names`, which the daemon uses
too; that module holds only strings, so a plugin needs none of the daemon's
code or dependencies.
"""

from importlib import resources

from .._dbus_names import BUS_NAME, ERROR_NAMES, ERROR_PREFIX, INTERFACE, OBJECT_PATH
from .._exceptions import (
    DaemonDisconnected,
    DaemonFailed,
    DaemonNotAvailable,
    DaemonTimeout,
    InvalidParameter,
    PhotoNotFound,
)

__all__ = ["BUS_NAME", "ERROR_PREFIX", "INTERFACE", "INTERFACE_XML", "OBJECT_PATH", "error_from_dbus",
           "interface_xml"]

#: The file name of the introspection XML, inside this package and in
#: ``share/dbus-1/interfaces/`` of an installation.
INTERFACE_XML = INTERFACE + ".xml"

INSTALL_HINT = (
    "the imagecluster daemon is not running and not installed for D-Bus activation: "
    "run `imagecluster install-service` (then `systemctl --user daemon-reload`), "
    "or start it with `imagecluster daemon --library DIR`"
)
NO_BUS_HINT = (
    "run this inside your desktop session, or export DBUS_SESSION_BUS_ADDRESS "
    "with the address of its session bus"
)
LOG_HINT = "see the daemon's log: journalctl --user -u imagecluster"

# The daemon's named errors, by the part after ERROR_PREFIX: the first class
# listed for a name wins. "Failed" is the daemon's own failure.
_OUR_ERRORS = {name: kind for kind, name in reversed(ERROR_NAMES)}
_OUR_ERRORS["Failed"] = DaemonFailed

_FDO = "org.freedesktop.DBus.Error."


def interface_xml():
    """The introspection XML of ``org.imagecluster.ImageCluster1``, as shipped with this package.

    Returns
    -------
    xml : str
        The text of ``org.imagecluster.ImageCluster1.xml``: every method with
        its arguments, every property with its access, every signal.
    """
    return resources.files(__package__).joinpath(INTERFACE_XML).read_text(encoding="utf-8")


def error_from_dbus(name, text, *, member, not_found=PhotoNotFound):
    """The imagecluster exception for a D-Bus error reply.

    Parameters
    ----------
    name : str
        The error name, e.g. ``org.imagecluster.ImageCluster1.Error.NotInLibrary``.
    text : str
        The error's message.
    member : str
        The method that was called, for messages about the bus itself.
    not_found : type, default=PhotoNotFound
        The exception for ``...Error.NotFound`` (``LibraryNotFound`` for the
        calls whose ``NotFound`` means a library that is not mounted).

    Returns
    -------
    error : ImageClusterError
        A leaf with the same meaning as ``name``; :class:`DaemonFailed` for
        ``Failed`` and for names without a closer meaning.
    """
    if name.startswith(ERROR_PREFIX):
        kind = name[len(ERROR_PREFIX):]
        if kind == "NotFound":
            return not_found(text)
        if kind in _OUR_ERRORS:
            return _OUR_ERRORS[kind](text)
        return DaemonFailed(f"{text} ({name})")
    if name in (_FDO + "ServiceUnknown", _FDO + "NameHasNoOwner"):
        return DaemonNotAvailable(INSTALL_HINT)
    if name.startswith(_FDO + "Spawn."):
        why = ": its config file or options are wrong" if text.endswith("exited with status 2") else ""
        return DaemonNotAvailable(
            f"D-Bus activation could not start the imagecluster daemon ({text}){why}; to see why, run "
            f"`imagecluster daemon` in a terminal, or {LOG_HINT}"
        )
    if name == _FDO + "NoReply":
        return DaemonDisconnected(
            f"the imagecluster daemon went away before answering {member} (it exited or crashed); {LOG_HINT}"
        )
    if name in (_FDO + "Timeout", _FDO + "TimedOut"):
        return DaemonTimeout(f"no answer to {member}: {text}")
    if name == _FDO + "InvalidArgs":
        return InvalidParameter(text)
    if name in (_FDO + "UnknownMethod", _FDO + "UnknownInterface", _FDO + "UnknownObject", _FDO + "UnknownProperty"):
        return DaemonFailed(f"the daemon does not know {member}; is it older than this client? ({text})")
    return DaemonFailed(f"{member} failed: {text} ({name})")

