"""Photos waiting to be fingerprinted: settling until complete, then ready, then in flight.

A photo is keyed ``(library root, relative posix path)`` and carries its
``sig = (size, mtime_ns)``. It settles until its sig stayed the same for
``settle_seconds`` (a change restarts the clock), so a file still being
written or downloaded is never fingerprinted half done; then it is ready, in
arrival order, until the indexer takes it in a batch. Pure bookkeeping: the
caller stats the files and knows the store.
"""

import dataclasses
import heapq
import itertools
import time

__all__ = ["PendingPhotos"]


@dataclasses.dataclass
class _Settling:
    sig: tuple
    since: float  # when this sig was first seen
    due: float  # when it is next looked at


class PendingPhotos:
    """The settling, ready and in-flight photos of all libraries.

    Parameters
    ----------
    settle_seconds : float
        How long a photo's ``(size, mtime_ns)`` must stay unchanged.
    """

    def __init__(self, settle_seconds):
        self.settle = settle_seconds
        self.settling = {}  # key -> _Settling
        self.ready = {}  # key -> sig, in arrival order
        self.in_flight = []  # [(key, sig)] of the batch in hand
        self.retried = set()  # keys whose batch the worker failed once
        self._heap = []  # (due, seq, key); stale entries are skipped
        self._seq = itertools.count()

    def __len__(self):
        return len(self.settling) + len(self.ready) + len(self.in_flight)

    def touch(self, key, sig):
        """A change was seen on a photo: if it is settling, restart its clock. True if it was settling."""
        entry = self.settling.get(key)
        if entry is None:
            return False
        if sig is None:
            del self.settling[key]
        elif sig != entry.sig:
            entry.sig, entry.since = sig, time.monotonic()
        return True

    def consider(self, key, sig, stored, *, since=None):
        """A photo seen with ``sig``; ``stored`` is the store's entry for it (or None).

        Nothing to do if the store holds this version; otherwise it settles
        from ``since`` (default: now).
        """
        if stored is not None and tuple(stored) == sig:
            self.ready.pop(key, None)
            self.settling.pop(key, None)
            return
        if self.ready.get(key) == sig or (key in self.settling and self.settling[key].sig == sig):
            return
        self.ready.pop(key, None)
        since = time.monotonic() if since is None else since
        self.settling[key] = entry = _Settling(sig, since, since + self.settle)
        heapq.heappush(self._heap, (entry.due, next(self._seq), key))

    def next_due(self):
        """Seconds until a settling photo is next looked at, or None when none is settling."""
        return max(0.0, self._heap[0][0] - time.monotonic()) if self._heap else None

    def settle_due(self, current_sig, stored):
        """Move photos whose sig stayed unchanged long enough to ready.

        ``current_sig(key)`` stats the file now (None if gone); ``stored(key)``
        gives the store's entry, so a photo that turns out stored as is is dropped.
        Returns the keys made ready.
        """
        now = time.monotonic()
        made_ready = []
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            entry = self.settling.get(key)
            if entry is None or entry.due != due:
                continue  # gone, or queued again for later
            sig = current_sig(key)
            if sig is None:
                del self.settling[key]
                continue
            if sig != entry.sig:
                entry.sig, entry.since = sig, now
            if entry.since + self.settle > now:  # changed meanwhile: look again later
                entry.due = entry.since + self.settle
                heapq.heappush(self._heap, (entry.due, next(self._seq), key))
                continue
            del self.settling[key]
            entry_stored = stored(key)
            if entry_stored is None or tuple(entry_stored) != sig:
                self.ready[key] = sig
                made_ready.append(key)
        if len(self._heap) > 4 * len(self.settling) + 64:  # forget stale heap entries
            self._heap = [(e.due, next(self._seq), k) for k, e in self.settling.items()]
            heapq.heapify(self._heap)
        return made_ready

    def drop(self, root, match=None):
        """Forget settling and ready photos of one library whose relative path ``match``-es (all if None)."""
        for table in (self.settling, self.ready):
            for key in [k for k in table if k[0] == root and (match is None or match(k[1]))]:
                del table[key]

    def waiting_by_name(self, root):
        """Settling and ready photos of one library as ``{(file name, sig): [rel, ...]}``."""
        index = {}
        items = itertools.chain(((k, e.sig) for k, e in self.settling.items()), self.ready.items())
        for (r, rel), sig in items:
            if r == root:
                index.setdefault((rel.rsplit("/", 1)[-1], sig), []).append(rel)
        return index

    def discard(self, key, sig):
        """Forget one photo if it is waiting with this sig (it was just fingerprinted otherwise)."""
        if self.ready.get(key) == sig:
            del self.ready[key]
        if key in self.settling and self.settling[key].sig == sig:
            del self.settling[key]

    def take(self, n):
        """Make up to ``n`` ready photos the batch in hand and return it as ``[(key, sig)]``."""
        keys = list(itertools.islice(self.ready, n))
        self.in_flight = [(key, self.ready.pop(key)) for key in keys]
        return self.in_flight

    def requeue_failed(self):
        """The worker failed on the batch in hand: queue it again once, first in line.

        Returns
        -------
        again, given_up : list of key
        """
        again = [(key, sig) for key, sig in self.in_flight if key not in self.retried]
        given_up = [key for key, _ in self.in_flight if key in self.retried]
        self.retried = {key for key, _ in again}
        self.ready = {**{k: s for k, s in again if k not in self.settling}, **self.ready}
        self.in_flight = []
        return [key for key, _ in again], given_up

    def done(self):
        """The batch in hand is finished (stored or dropped)."""
        self.retried.difference_update(key for key, _ in self.in_flight)
        self.in_flight = []
