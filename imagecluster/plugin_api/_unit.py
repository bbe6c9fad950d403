"""Whether the daemon's systemd unit failed, so that a call waiting for it says so at once.

A call to the daemon while it is not running makes the bus start it (D-Bus
activation); where systemd runs the session, the bus asks systemd to start
``imagecluster.service``. When that fails (a bad config file makes the daemon
exit with status 2), dbus-daemon does not answer the caller: the call would
wait out its whole timeout and look like a slow daemon. The user manager on
the same bus (``org.freedesktop.systemd1``) knows the unit's state, so
:func:`unit_failure` asks it while a call waits and the name has no owner.
"""

import asyncio

from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.errors import DBusFastError

from ._contract import BUS_NAME

__all__ = ["CHECK_EVERY", "UNIT", "unit_failure"]

UNIT = "imagecluster.service"

#: Seconds between looks at the unit while a call waits.
CHECK_EVERY = 1.0

# A unit that failed before the call (and was not started again by it) counts
# once the call waited this long: systemd refuses a start after too many failures.
_STALE_AFTER = 5.0

_SYSTEMD = "org.freedesktop.systemd1"
_PROPERTIES = "org.freedesktop.DBus.Properties"

# The daemon's exit statuses that systemd does not restart (RestartPreventExitStatus=2 3).
_WHY = {
    2: "it exited with status 2: its config file (~/.config/imagecluster/config.toml) or options are wrong",
    3: "it exited with status 3: another imagecluster daemon owns the bus name",
}


async def _ask(bus, destination, path, interface, member, signature="", body=(), *, timeout):
    """The reply body of one call that never starts anything, or None for an error."""
    reply = await asyncio.wait_for(bus.call(Message(
        destination=destination, path=path, interface=interface, member=member, signature=signature,
        body=list(body), flags=MessageFlag.NO_AUTOSTART,
    )), timeout)
    if reply is None or reply.message_type is MessageType.ERROR:
        return None
    return reply.body


async def unit_failure(bus, *, since, waited, timeout=2.0):
    """Why ``imagecluster.service`` failed, with the fix, or None.

    Parameters
    ----------
    bus : dbus_fast.aio.MessageBus
        The connected session bus.
    since : float
        When the waiting call was sent (``time.time()``): a failure from
        before counts only once ``waited`` passed a few seconds.
    waited : float
        Seconds the call has waited so far.
    timeout : float, default=2.0
        Seconds for each question to the bus and to systemd.

    Returns
    -------
    message : str or None
        None while the daemon owns its name, while the unit is starting or
        running, and where systemd or the unit is not there.
    """
    try:
        owned = await _ask(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                           "NameHasOwner", "s", [BUS_NAME], timeout=timeout)
        if owned is None or owned[0]:
            return None
        found = await _ask(bus, _SYSTEMD, "/org/freedesktop/systemd1", _SYSTEMD + ".Manager", "GetUnit", "s",
                           [UNIT], timeout=timeout)
        if found is None:
            return None  # no systemd on this bus, or the unit is not loaded
        unit = await _ask(bus, _SYSTEMD, found[0], _PROPERTIES, "GetAll", "s", [_SYSTEMD + ".Unit"], timeout=timeout)
        service = await _ask(bus, _SYSTEMD, found[0], _PROPERTIES, "GetAll", "s", [_SYSTEMD + ".Service"],
                             timeout=timeout)
    except (asyncio.TimeoutError, DBusFastError, OSError, EOFError):
        return None
    if unit is None or service is None:
        return None
    unit, service = ({name: variant.value for name, variant in body[0].items()} for body in (unit, service))
    if unit.get("ActiveState") != "failed":
        return None
    changed = unit.get("StateChangeTimestamp", 0) / 1e6  # microseconds since the epoch
    if changed < since - 1.0 and waited < _STALE_AFTER:
        return None  # failed before this call; the start it asked for may not have begun yet
    status, result = service.get("ExecMainStatus", 0), service.get("Result", "")
    why = _WHY.get(status) or (f"it exited with status {status}" if result == "exit-code" else f"result: {result}")
    return (
        f"the imagecluster service failed ({why}). See why: systemctl --user status imagecluster "
        "(or journalctl --user -u imagecluster); fix it, then: systemctl --user restart imagecluster"
    )
