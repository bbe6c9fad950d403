"""A session bus in memory that speaks the daemon's contract, for tests without a dbus-daemon.

:class:`MockBus` stands in for dbus-fast's ``MessageBus`` the way httpx's
``MockTransport`` stands in for the network: give it to a client
(``Client(transport=MockBus(daemon))``) and every call goes through the
client's real code (argument checks, the error names, timeouts, signals)
without a bus or a daemon process. Every message is marshalled to D-Bus bytes
and read back, so a body the real bus would refuse is refused here too.

What is on the other side is a *handler*: an object with one method per
D-Bus method of the shipped contract (``Cluster(sim)``, ...), one attribute
per property (``Libraries``, ...), that raises :class:`dbus_fast.DBusError`
with the contract's error names. :class:`FakeDaemon` is that handler with the
daemon's rules and a dictionary of photos instead of a model; the contract
test (``tests/plugin_api/test_contract_both.py``) checks that it answers as
the real daemon does. The signatures of methods, properties and signals are
read from the shipped XML, never written here a second time.

Besides the daemon, the bus answers what a client asks the bus itself
(``AddMatch``, ``NameHasOwner``) and refuses everything else as the real bus
would (``ServiceUnknown``).
"""

import asyncio
import inspect
import io
import os
import time

import numpy as np
from dbus_fast import DBusError, Message, Variant
from dbus_fast._private.unmarshaller import Unmarshaller
from dbus_fast.errors import SignatureBodyMismatchError
from dbus_fast.introspection import Node
from dbus_fast.signature import get_signature_tree

from .._exceptions import InvalidParameter
from .._validation import check_sim, check_wait
from ._contract import BUS_NAME, ERROR_PREFIX, INTERFACE, OBJECT_PATH, interface_xml

__all__ = ["FakeDaemon", "MockBus"]

_FDO = "org.freedesktop.DBus"
_FDO_ERROR = _FDO + ".Error."
_PROPERTIES = _FDO + ".Properties"
_INTROSPECTABLE = _FDO + ".Introspectable"


def _contract():
    """The shipped XML's methods, properties and signals: name -> (in signature, out signature) / signature."""
    (interface,) = [i for i in Node.parse(interface_xml()).interfaces if i.name == INTERFACE]
    methods = {m.name: (m.in_signature, m.out_signature) for m in interface.methods}
    properties = {p.name: p.signature for p in interface.properties}
    signals = {s.name: s.signature for s in interface.signals}
    return methods, properties, signals


def _wire(message):
    """``message`` marshalled to bytes and read back, as a bus would carry it (bad bodies raise here)."""
    reader = Unmarshaller(io.BytesIO(bytes(message._marshall(False))))
    reader.unmarshall()
    return reader.message


class MockBus:
    """A stand-in for ``dbus_fast.aio.MessageBus`` connected to ``handler`` as the daemon.

    Parameters
    ----------
    handler : object or None
        The daemon (see the module docstring), e.g. a :class:`FakeDaemon`;
        ``None`` is a bus where the daemon is neither running nor activatable.
    fail_connect : Exception or None, default=None
        Raised by :meth:`connect`, as by a bus that cannot be reached.

    Attributes
    ----------
    calls : list of (str, list)
        Every ``(member, body)`` the daemon received, in order.
    """

    def __init__(self, handler=None, *, fail_connect=None):
        self.handler = handler
        self.fail_connect = fail_connect
        self.calls = []
        self.connected = False
        self._serial = 0
        self._handlers = []
        self._matched = False
        self._closed = None
        self._working = set()
        self._methods, self._properties, self._signals = _contract()
        if handler is not None:
            handler.bus = self

    # ------------------------------------------------ MessageBus's surface

    async def connect(self):
        """Connect (again); returns the bus."""
        if self.fail_connect is not None:
            raise self.fail_connect
        self.connected = True
        self._matched = False  # a new connection has no match rules and no handlers yet
        self._handlers = []
        self._closed = asyncio.get_running_loop().create_future()
        return self

    def add_message_handler(self, handler):
        """Call ``handler(message)`` for every signal delivered to this connection."""
        self._handlers.append(handler)

    def remove_message_handler(self, handler):
        """Stop calling ``handler``."""
        if handler in self._handlers:
            self._handlers.remove(handler)

    def disconnect(self):
        """Close the connection."""
        self.connected = False
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def wait_for_disconnect(self):
        """Return once the connection is closed."""
        if self._closed is not None:
            await self._closed

    async def call(self, message):
        """Send a method call; return the reply (a method return or an error), as it came over the wire."""
        if not self.connected:
            raise EOFError("the bus connection is closed")
        self._serial += 1
        message.serial = self._serial
        message = _wire(message)
        # The daemon works on in a task of its own: a caller that stops waiting
        # (a timeout) does not stop the daemon, as on a real bus.
        answer = asyncio.ensure_future(self._answer(message))
        self._working.add(answer)
        answer.add_done_callback(self._working.discard)
        closed = self._closed
        await asyncio.wait({answer, closed}, return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            raise EOFError("the bus connection was closed during the call")
        return _wire(answer.result())

    # ------------------------------------------------------- for the tests

    def emit(self, member, *args):
        """Send the daemon's signal ``member`` (its signature from the contract) to a subscribed connection."""
        signal = _wire(Message.new_signal(OBJECT_PATH, INTERFACE, member, self._signals[member], list(args)))
        if self.connected and self._matched:
            for handler in list(self._handlers):
                handler(signal)

    def lose_connection(self):
        """The bus goes away (dbus-daemon killed): the connection is closed under the client."""
        self.disconnect()

    # ------------------------------------------------------------ helpers

    async def _answer(self, message):
        if message.destination == _FDO:
            return self._bus_method(message)
        if message.destination != BUS_NAME or self.handler is None:
            return Message.new_error(
                message, _FDO_ERROR + "ServiceUnknown",
                f"The name {message.destination} was not provided by any .service files",
            )
        if message.path != OBJECT_PATH:
            return Message.new_error(message, _FDO_ERROR + "UnknownObject", f"no object at {message.path}")
        try:
            if message.interface == _PROPERTIES:
                return self._property(message)
            if message.interface == _INTROSPECTABLE and message.member == "Introspect":
                return Message.new_method_return(message, "s", [interface_xml()])
            if message.interface != INTERFACE or message.member not in self._methods:
                raise DBusError(_FDO_ERROR + "UnknownMethod",
                                f"{message.interface}.{message.member} is not a method of {OBJECT_PATH}")
            in_sig, out_sig = self._methods[message.member]
            if message.signature != in_sig:  # dbus-fast's services answer so, not InvalidArgs
                raise DBusError(_FDO_ERROR + "UnknownMethod",
                                f"{message.member} takes the signature '{in_sig}', got '{message.signature}'")
            self.calls.append((message.member, list(message.body)))
            method = getattr(self.handler, message.member, None)
            if method is None:  # a member of the contract this handler does not implement (yet)
                raise DBusError(_FDO_ERROR + "UnknownMethod", f"the mock daemon has no {message.member}")
            result = method(*message.body)
            if inspect.isawaitable(result):
                result = await result
        except DBusError as exc:
            return Message.new_error(message, exc.type, exc.text)
        body = [] if not out_sig else ([result] if len(get_signature_tree(out_sig).types) == 1 else list(result))
        try:
            get_signature_tree(out_sig).verify(body)
        except SignatureBodyMismatchError as exc:  # the handler broke the contract: a test bug, said loudly
            raise AssertionError(f"{message.member} answered {body!r}, not '{out_sig}': {exc}") from exc
        return Message.new_method_return(message, out_sig, body)

    def _property(self, message):
        if message.member == "GetAll" and message.signature == "s":
            if message.body[0] != INTERFACE:
                return Message.new_method_return(message, "a{sv}", [{}])
            return Message.new_method_return(message, "a{sv}", [
                {name: Variant(sig, self._value(name)) for name, sig in self._properties.items()}
            ])
        if message.member == "Get" and message.signature == "ss":
            interface, name = message.body
            if interface != INTERFACE or name not in self._properties:
                raise DBusError(_FDO_ERROR + "UnknownProperty", f"no property {interface}.{name}")
            return Message.new_method_return(message, "v", [Variant(self._properties[name], self._value(name))])
        if message.member == "Set":
            raise DBusError(_FDO_ERROR + "PropertyReadOnly", "the daemon's properties are read-only")
        raise DBusError(_FDO_ERROR + "UnknownMethod", f"{_PROPERTIES}.{message.member} with '{message.signature}'")

    def _value(self, name):
        value = getattr(self.handler, name)
        return list(value) if isinstance(value, tuple) else value

    def _bus_method(self, message):
        if message.member == "AddMatch":
            self._matched = True
            return Message.new_method_return(message)
        if message.member == "NameHasOwner":
            return Message.new_method_return(message, "b", [message.body[0] == BUS_NAME and self.handler is not None])
        return Message.new_error(message, _FDO_ERROR + "UnknownMethod", f"the mock bus has no {message.member}")


class FakeDaemon:
    """The daemon's D-Bus methods and properties over a dictionary of photos; no model, no files.

    Argument checks, error names and answers follow the real daemon
    (``imagecluster.daemon._service``), which the contract test compares.

    Parameters
    ----------
    libraries : sequence of str
        The watched libraries (absolute paths).
    photos : dict of str to array-like or None, default=None
        Absolute photo path -> fingerprint (any length; normalised here);
        ``None`` is a file that is not a photo (``NotAnImage``).
    unmounted : sequence of str, default=()
        Libraries that are not mounted now (``NotFound`` for them).
    sim : float, default=0.8
        The configured default sim (the ``Sim`` property).
    pending : int, default=0
        Photos waiting (``WaitIdle`` answers False while there are any).
    taken : dict of str to float, default=None
        Absolute photo path -> capture time (seconds since the epoch), for
        ``ClusterEvents``; photos without one take part in no event.

    Attributes
    ----------
    gate : asyncio.Event or None
        When set to an unset event, every clustering waits for it (a test can
        hold a call open, as the gated real daemon does).
    trees : list of (str, int)
        The ``ClustersWritten`` signals sent.
    """

    Model = "lite0"
    Version = "0.1.0"

    def __init__(self, libraries, photos=None, *, unmounted=(), sim=0.8, pending=0, taken=None):
        self.Libraries = [os.fspath(lib) for lib in libraries]
        self.photos = {}
        for path, vector in (photos or {}).items():
            if vector is not None:
                vector = np.asarray(vector, np.float64)
                vector = vector / np.linalg.norm(vector)
            self.photos[os.fspath(path)] = vector
        self.unmounted = {os.fspath(u) for u in unmounted}
        self.Sim = float(sim)
        self.Pending = int(pending)
        self.State = "indexing" if pending else "idle"
        self.gate = None
        self.trees = []
        self.bus = None
        self.taken = {os.fspath(path): float(t) for path, t in (taken or {}).items()}
        self.galleries = {}  # library -> the index.html beside its newest tree (the real daemon writes it)

    @property
    def Indexed(self):
        """Photos with a fingerprint."""
        return sum(v is not None for v in self.photos.values())

    # ------------------------------------------------------------ methods

    async def Cluster(self, sim):
        """Cluster every mounted library; send ClustersWritten for each; all clusters."""
        sim = _sim(sim)
        clusters = []
        for library in self.Libraries:
            if library not in self.unmounted:
                clusters += await self._cluster(library, sim, os.path.join(library, "clusters"))
        return _largest_first(clusters)

    async def ClusterLibrary(self, library, sim):
        """Cluster one library."""
        sim = _sim(sim)
        library = self._library(library)
        return await self._cluster(library, sim, os.path.join(library, "clusters"))

    async def WriteTree(self, library, sim, out):
        """Cluster one library into the tree ``out``: [tree, number of clusters]."""
        sim = _sim(sim)
        out = os.path.normpath(_absolute(out, "out"))
        library = self._library(library)
        return [out, len(await self._cluster(library, sim, out))]

    async def ClusterEvents(self, sim, hours, km):
        """Events of every mounted library: capture-time gaps over ``hours`` split them (no places here)."""
        from ..events import check_hours, check_km

        sim, hours, _ = _sim(sim), _checked(check_hours, hours), _checked(check_km, km)
        answer = []
        for library in self.Libraries:
            if library in self.unmounted:
                continue
            prefix = library.rstrip("/") + "/"
            timed = sorted((t, p) for p, t in self.taken.items()
                           if p.startswith(prefix) and self.photos.get(p) is not None)
            runs = []
            for t, path in timed:
                if runs and t - runs[-1][-1][0] <= hours * 3600.0:
                    runs[-1].append((t, path))
                else:
                    runs.append([(t, path)])
            for k, run in enumerate(runs):
                paths = [p for _, p in run]
                date = time.strftime("%Y-%m-%d", time.gmtime(run[0][0]))
                clusters = _groups(sorted(paths), [self.photos[p] for p in sorted(paths)], sim)
                answer.append([f"{date}_{k + 1}", date, "", run[0][0], run[-1][0], paths, clusters])
            tree = os.path.join(library, "clusters-events")
            self.trees.append((tree, len(runs)))
            if self.bus is not None:
                self.bus.emit("ClustersWritten", tree, len(runs))
        return sorted(answer, key=lambda event: event[3])

    def Fingerprint(self, path):
        """The photo's fingerprint."""
        return [float(v) for v in self._vector(path)]

    def Similar(self, path, sim):
        """Photos at least ``sim`` similar, best first."""
        sim = _sim(sim)
        own = os.path.normpath(path)
        vector = self._vector(path)
        matches = [
            [other, float(np.dot(vector, v))] for other, v in self.photos.items()
            if v is not None and other != own and float(np.dot(vector, v)) >= sim
        ]
        return sorted(matches, key=lambda m: (-m[1], m[0]))

    async def Gallery(self, library):
        """The gallery beside the library's newest tree (the fake writes no file; it names it)."""
        library = self._library(library)
        if library not in self.galleries:
            raise DBusError(ERROR_PREFIX + "NotFound",
                            f"no gallery of {library} yet: call Cluster or ClusterLibrary first")
        return self.galleries[library]

    async def WaitIdle(self, timeout):
        """Whether nothing is pending, after waiting at most ``timeout`` s."""
        timeout = _checked(check_wait, timeout)
        if self.Pending:
            await asyncio.sleep(min(timeout, 0.05))
        return self.Pending == 0

    # ------------------------------------------------------------ helpers

    def _library(self, library):
        library = os.path.normpath(_absolute(library, "library"))
        if library not in self.Libraries:
            raise DBusError(ERROR_PREFIX + "NotInLibrary",
                            f"{library} is not a watched library (see the Libraries property)")
        if library in self.unmounted:
            raise DBusError(ERROR_PREFIX + "NotFound", f"library {library} is not available now (not mounted?)")
        return library

    def _vector(self, path):
        path = os.path.normpath(_absolute(path, "path"))
        if not any(path.startswith(lib.rstrip("/") + "/") for lib in self.Libraries):
            raise DBusError(ERROR_PREFIX + "NotInLibrary", f"{path} is not inside any library")
        if path not in self.photos:
            raise DBusError(ERROR_PREFIX + "NotFound", f"{path}: no such file")
        if self.photos[path] is None:
            raise DBusError(ERROR_PREFIX + "NotAnImage", f"{path}: cannot identify image file")
        return self.photos[path]

    async def _cluster(self, library, sim, tree):
        if self.gate is not None:
            self.State = "clustering"
            try:
                await self.gate.wait()
            finally:
                self.State = "indexing" if self.Pending else "idle"
        prefix = library.rstrip("/") + "/"
        paths = sorted(p for p, v in self.photos.items() if v is not None and p.startswith(prefix))
        groups = _groups(paths, [self.photos[p] for p in paths], sim)
        self.trees.append((tree, len(groups)))
        self.galleries[library] = os.path.join(f"{tree}-gallery", "index.html")
        if self.bus is not None:
            self.bus.emit("ClustersWritten", tree, len(groups))
        return groups


def _checked(check, value):
    """``check(value)`` (a check of :mod:`imagecluster._validation`, as the daemon uses), its failure named."""
    try:
        return check(value)
    except InvalidParameter as exc:
        raise DBusError(ERROR_PREFIX + "InvalidArgument", str(exc)) from None


def _sim(sim):
    return _checked(check_sim, sim)


def _absolute(path, what):
    if not path:
        raise DBusError(ERROR_PREFIX + "InvalidArgument", f"{what} is empty; give an absolute path")
    if not os.path.isabs(path):
        raise DBusError(ERROR_PREFIX + "InvalidArgument", f"{what} {path!r} is relative; give an absolute path")
    return path


def _groups(paths, vectors, sim):
    """Connected groups of photos at least ``sim`` similar (single link: enough for a fake), two or more."""
    parent = list(range(len(paths)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            if float(np.dot(vectors[i], vectors[j])) >= sim:
                parent[root(j)] = root(i)
    groups = {}
    for i, path in enumerate(paths):
        groups.setdefault(root(i), []).append(path)
    return _largest_first([g for g in groups.values() if len(g) >= 2])


def _largest_first(groups):
    return sorted((sorted(g) for g in groups), key=lambda g: (-len(g), g[0]))
