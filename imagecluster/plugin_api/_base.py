"""What the two clients share, free of I/O: argument checks, the calls they send, how answers are read.

Each public method of :class:`~imagecluster.plugin_api.Client` and
:class:`~imagecluster.plugin_api.AsyncClient` builds a :class:`_Call` here and
sends it the one way it can (blocking or awaited); both read the answer with
the call's ``parse``.
"""

import enum
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._exceptions import DaemonFailed, InvalidParameter, LibraryNotFound, PhotoNotFound
from ..cluster import check_sim
from ._contract import INTERFACE

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_WORK_TIMEOUT", "USE_CLIENT_DEFAULT", "ClientState", "Status"]

logger = logging.getLogger(__name__)

#: Seconds for quick calls (``status``, subscriptions, the margin of ``wait_idle``),
#: the same as ``gdbus`` and ``busctl`` allow.
DEFAULT_TIMEOUT = 25.0

#: Seconds for calls that may fingerprint or cluster (``cluster``, ``cluster_library``,
#: ``write_tree``, ``fingerprint``, ``similar``): a first clustering of a large
#: library, or a worker that has to load its model first, takes a while.
DEFAULT_WORK_TIMEOUT = 600.0

# WaitIdle accepts 0..3600 seconds.
MAX_WAIT = 3600.0

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
class _Call:
    """One method call to send: what, with which arguments, how long to wait, how to read the answer."""

    member: str
    signature: str
    body: tuple
    timeout: Any
    parse: Callable
    interface: str = INTERFACE
    not_found: type = field(default=PhotoNotFound)


def check_timeout(timeout, name="timeout"):
    """Return ``timeout`` as a positive float, or ``None`` (wait forever); else raise InvalidParameter."""
    if timeout is None:
        return None
    try:
        value = float(timeout)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"{name} must be a number of seconds or None, got {timeout!r}") from exc
    if math.isnan(value) or value <= 0:
        raise InvalidParameter(f"{name} must be more than 0 seconds, got {timeout!r}")
    return value


def check_wait(seconds):
    """Return ``seconds`` as a float in 0..3600 (how long ``WaitIdle`` may wait), or raise InvalidParameter."""
    try:
        value = float(seconds)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"timeout must be a number of seconds, got {seconds!r}") from exc
    if not 0.0 <= value <= MAX_WAIT:  # also false for NaN
        raise InvalidParameter(f"timeout must be between 0 and {MAX_WAIT:g} seconds, got {seconds!r}")
    return value


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
    """

    def __init__(self, *, timeout=DEFAULT_TIMEOUT, work_timeout=DEFAULT_WORK_TIMEOUT, bus_address=None):
        self._timeout = check_timeout(timeout, "timeout")
        self._work_timeout = check_timeout(work_timeout, "work_timeout")
        self._bus_address = bus_address
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

    def _fingerprint_call(self, path, timeout):
        return _Call("Fingerprint", "s", (check_path(path),), self._work(timeout), _fingerprint)

    def _similar_call(self, path, sim, timeout):
        return _Call("Similar", "sd", (check_path(path), check_sim(sim)), self._work(timeout), _matches)

    def _wait_idle_call(self, seconds):
        seconds = check_wait(seconds)
        margin = self._timeout
        return _Call("WaitIdle", "d", (seconds,), None if margin is None else seconds + margin, _first)

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
