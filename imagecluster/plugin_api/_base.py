"""What the two clients share, free of I/O: argument checks, the calls they send, how answers are read.

Each public method of :class:`~imagecluster.plugin_api.Client` and
:class:`~imagecluster.plugin_api.AsyncClient` builds a :class:`_Call` here and
sends it the one way it can (blocking or awaited); both read the answer with
the call's ``parse``.
"""

import enum
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._exceptions import DaemonFailed, InvalidParameter, LibraryNotFound, PhotoNotFound
from .._validation import check_sim, check_timeout, check_wait
from ._contract import INTERFACE

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_WORK_TIMEOUT", "USE_CLIENT_DEFAULT", "ClientState", "Event", "Status"]

logger = logging.getLogger(__name__)

#: Seconds for quick calls (``status``, subscriptions, the margin of ``wait_idle``),
#: the same as ``gdbus`` and ``busctl`` allow.
DEFAULT_TIMEOUT = 25.0

#: Seconds for calls that may fingerprint or cluster (``cluster``, ``cluster_library``,
#: ``write_tree``, ``fingerprint``, ``similar``): a first clustering of a large
#: library, or a worker that has to load its model first, takes a while. The first
#: Cluster of a million-photo library waits for its similar-pair search (10-15
#: minutes on 2 cores; the daemon's Working signal shows how far it is).
DEFAULT_WORK_TIMEOUT = 1800.0

_PROPERTIES = "org.freedesktop.DBus.Properties"


class _UseClientDefault:
    """The type of :data:`USE_CLIENT_DEFAULT`."""

    def __repr__(self):
        return "USE_CLIENT_DEFAULT"


#: The default of every method's ``timeout``: the client's ``timeout`` or ``work_timeout``.
USE_CLIENT_DEFAULT = _UseClientDefault()


class ClientState(enum.Enum):
    """Where a client is in its life: a closed client cannot be opened again."""

    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


@dataclass(frozen=True)
class Status:
    """The daemon's properties, read at one moment (``GetAll``).

    Attributes
    ----------
    libraries : tuple of str
        The watched libraries, as configured (also those not mounted now).
    model : str
        The fingerprint model, ``"lite0"`` or ``"vgg16"``.
    indexed : int
        Photos with a fingerprint in the stores.
    pending : int
        Photos waiting to be fingerprinted.
    state : str
        ``"idle"``, ``"indexing"`` or ``"clustering"``.
    sim : float
        The default sim the user configured.
    version : str
        The daemon's imagecluster release.
    """

    libraries: tuple
    model: str
    indexed: int
    pending: int
    state: str
    sim: float
    version: str


@dataclass(frozen=True)
class Event:
    """One event from ``ClusterEvents``: photos taken close in time and place, with their content clusters.

    Attributes
    ----------
    name : str
        Its folder in the events tree, ``YYYY-MM-DD_<place or number>``.
    date : str
        Its first day, ``YYYY-MM-DD`` (the camera's clock).
    place : str
        Rounded coordinates, ``45.07N_7.69E``; empty without GPS.
    start, end : float
        First and last capture time, seconds since the epoch (UTC).
    photos : tuple of str
        Every photo of the event (absolute paths, in time order).
    clusters : tuple of tuple of str
        Its content clusters, largest first.
    """

    name: str
    date: str
    place: str
    start: float
    end: float
    photos: tuple
    clusters: tuple


@dataclass(frozen=True)
class _Call:
    """One method call to send: what, with which arguments, how long to wait, how to read the answer."""

    member: str
    signature: str
    body: tuple
    timeout: Any
    parse: Callable
    interface: str = INTERFACE
    not_found: type = field(default=PhotoNotFound)


def check_path(path, what="path"):
    """Return ``path`` as an absolute path string (relative to this process's folder), or raise InvalidParameter.

    The daemon runs elsewhere, so a relative path is made absolute here. D-Bus
    strings are UTF-8, so a file name that is not cannot be sent.
    """
    try:
        text = os.fsdecode(os.fspath(path))
    except TypeError as exc:
        raise InvalidParameter(f"{what} must be a path, got {path!r}") from exc
    if not text:
        raise InvalidParameter(f"{what} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidParameter(f"{what} {text!r} is not valid UTF-8; D-Bus cannot carry it") from exc
    if "\0" in text:
        raise InvalidParameter(f"{what} {text!r} contains a NUL character")
    return os.path.abspath(text)


def _clusters(body):
    return [list(cluster) for cluster in body[0]]


def _events(body):
    return [Event(str(n), str(d), str(p), float(s), float(e), tuple(photos), tuple(map(tuple, clusters)))
            for n, d, p, s, e, photos, clusters in body[0]]


def _fingerprint(body):
    return np.asarray(body[0], dtype=np.float32)


def _matches(body):
    return [(path, float(similarity)) for path, similarity in body[0]]


def _tree(body):
    return body[0], int(body[1])


def _first(body):
    return body[0]


def _status(body):
    values = {name: variant.value for name, variant in body[0].items()}
    try:
        return Status(
            libraries=tuple(values["Libraries"]), model=values["Model"], indexed=int(values["Indexed"]),
            pending=int(values["Pending"]), state=values["State"], sim=float(values["Sim"]),
            version=values["Version"],
        )
    except KeyError as exc:
        raise DaemonFailed(
            f"the daemon does not have the property {exc.args[0]}; is it older than this client?"
        ) from exc


class _Subscription:
    """One registered callback (equal only to itself)."""

    __slots__ = ("callback",)

    def __init__(self, callback):
        self.callback = callback


class _BaseClient:
    """Settings, state and the calls of a client; sending them is the subclass's business.

    Parameters
    ----------
    timeout : float or None, default=DEFAULT_TIMEOUT
        Seconds to wait for quick calls; ``None`` waits forever.
    work_timeout : float or None, default=DEFAULT_WORK_TIMEOUT
        Seconds to wait for calls that fingerprint or cluster.
    bus_address : str, default=None
        A D-Bus address to use instead of the session bus.
    transport : object, default=None
        A bus object to use instead of connecting (tests: a mock bus).
    """

    def __init__(self, *, timeout=DEFAULT_TIMEOUT, work_timeout=DEFAULT_WORK_TIMEOUT, bus_address=None,
                 transport=None):
        self._timeout = check_timeout(timeout, "timeout")
        self._work_timeout = check_timeout(work_timeout, "work_timeout")
        self._bus_address = bus_address
        self._transport = transport
        self._state = ClientState.UNOPENED
        self._callbacks = {"Progress": [], "ClustersWritten": []}

    @property
    def is_closed(self):
        """Whether :meth:`close` (``aclose``) was called."""
        return self._state is ClientState.CLOSED

    def _open(self):
        if self._state is ClientState.CLOSED:
            raise RuntimeError("Cannot use a client once it has been closed; make a new one.")
        self._state = ClientState.OPENED

    def _enter(self):
        if self._state is not ClientState.UNOPENED:
            raise RuntimeError(
                "Cannot open a client more than once." if self._state is ClientState.OPENED
                else "Cannot reopen a client once it has been closed."
            )
        self._state = ClientState.OPENED

    def _quick(self, timeout):
        return self._timeout if timeout is USE_CLIENT_DEFAULT else check_timeout(timeout)

    def _work(self, timeout):
        return self._work_timeout if timeout is USE_CLIENT_DEFAULT else check_timeout(timeout)

    # ------------------------------------------------------------- calls

    def _sim_call(self):
        return _Call("Get", "ss", (INTERFACE, "Sim"), self._timeout, lambda body: float(body[0].value),
                     interface=_PROPERTIES)

    def _status_call(self, timeout):
        return _Call("GetAll", "s", (INTERFACE,), self._quick(timeout), _status, interface=_PROPERTIES)

    def _cluster_call(self, sim, timeout):
        return _Call("Cluster", "d", (check_sim(sim),), self._work(timeout), _clusters)

    def _cluster_library_call(self, library, sim, timeout):
        body = (check_path(library, "library"), check_sim(sim))
        return _Call("ClusterLibrary", "sd", body, self._work(timeout), _clusters, not_found=LibraryNotFound)

    def _write_tree_call(self, library, sim, out, timeout):
        body = (check_path(library, "library"), check_sim(sim), check_path(out, "out"))
        return _Call("WriteTree", "sds", body, self._work(timeout), _tree, not_found=LibraryNotFound)

    def _events_call(self, sim, hours, km, timeout):
        from ..events import DEFAULT_HOURS, DEFAULT_KM, check_hours, check_km

        body = (check_sim(sim), check_hours(DEFAULT_HOURS if hours is None else hours),
                check_km(DEFAULT_KM if km is None else km))
        return _Call("ClusterEvents", "ddd", body, self._work(timeout), _events)

    def _fingerprint_call(self, path, timeout):
        return _Call("Fingerprint", "s", (check_path(path),), self._work(timeout), _fingerprint)

    def _similar_call(self, path, sim, timeout):
        return _Call("Similar", "sd", (check_path(path), check_sim(sim)), self._work(timeout), _matches)

    def _wait_idle_call(self, seconds):
        seconds = check_wait(seconds)
        margin = self._timeout
        return _Call("WaitIdle", "d", (seconds,), None if margin is None else seconds + margin, _first)

    def _gallery_call(self, library, timeout):
        return _Call("Gallery", "s", (check_path(library, "library"),), self._work(timeout), _first)

    # ------------------------------------------------------------ signals

    def _add_callback(self, member, callback):
        """Register ``callback`` for ``member``; returns the function that removes it again."""
        if not callable(callback):
            raise InvalidParameter(f"callback must be callable, got {callback!r}")
        callbacks = self._callbacks[member]
        entry = _Subscription(callback)  # compared by identity: a function may be registered twice
        callbacks.append(entry)

        def unsubscribe():
            if entry in callbacks:
                callbacks.remove(entry)

        return unsubscribe

    def _targets(self, member, args):
        """The callbacks a signal goes to, with its arguments (a copy: callbacks may unsubscribe)."""
        callbacks = self._callbacks.get(member)
        if not callbacks:
            return []
        if member == "Progress":
            args = (int(args[0]), int(args[1]))
        else:
            args = (str(args[0]), int(args[1]))
        return [(entry.callback, args) for entry in list(callbacks)]
