"""One library folder as the indexer sees it: path rules, changes, and store work run in threads.

Path rules (as :func:`imagecluster.find_images`): hidden names (the store
folder among them), excluded folders, and everything below a folder holding
:data:`~imagecluster.images.TREE_MARKER` (a cluster tree) are never indexed.

:class:`LibraryFolder` keeps a mirror of its store's entries for the model
(``known``). Change handlers run in the event loop: they update the mirror at
once and return the store operations to run; the ``*_sync`` methods do the
blocking work in a thread and return the store's fresh entries, which become
the mirror.
"""

import collections
import collections.abc
import itertools
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._library import scan_library
from .._library_events import capture_items
from .._regular import special_file_kind
from ..images import TREE_MARKER, listing_order, walk_photos
from ..store import Entries, Store

__all__ = ["LibraryFolder", "Mirror", "file_sig", "folder_identity", "in_cluster_tree", "is_hidden", "match_moves",
           "normalised"]

logger = logging.getLogger(__name__)

#: The daemon compacts a store only once its journal has grown to this share
#: of the snapshot: a few photos are replayed at the next load in no time, a
#: million photos' snapshot takes over 30 s to rewrite (longer than systemd
#: waits for a stop).
COMPACT_SHARE = 1 / 16


def file_sig(path):
    """``(size, mtime_ns)`` of a regular file, not following symlinks; None otherwise."""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def folder_identity(path):
    """``(st_dev, st_ino)`` of a folder (a remount changes it), None if there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def is_hidden(root, parts, exclude):
    """Whether a path (its parts below ``root``) is hidden, in the store folder, or in an excluded folder."""
    if any(p.startswith(".") for p in parts):
        return True
    full = os.path.join(root, *parts)
    return any(full == ex or full.startswith(ex + os.sep) for ex in exclude)


def in_cluster_tree(root, dir_parts):
    """Whether a folder (its parts below ``root``) is in a cluster tree; stats each level."""
    folder = os.fspath(root)
    for part in ["", *dir_parts]:
        folder = os.path.join(folder, part) if part else folder
        if os.path.lexists(os.path.join(folder, TREE_MARKER)):
            return True
    return False


def normalised(vector, dtype):
    """A fingerprint as the store keeps it (``dtype``), back in float32 and L2-normalised."""
    v = np.asarray(vector, np.float32).astype(dtype).astype(np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def match_moves(todo, gone, known):
    """Pairs ``(old, new)`` of gone and new photos alike in basename, size and mtime, one to one."""
    def key(rel, size, mtime):
        return (rel.rsplit("/", 1)[-1], size, mtime)

    new = collections.defaultdict(list)
    for rel, size, mtime in todo:
        if rel not in known:
            new[key(rel, size, mtime)].append(rel)
    old = collections.defaultdict(list)
    for rel in gone:
        old[key(rel, *known[rel])].append(rel)
    return [(olds[0], new[k][0]) for k, olds in old.items() if len(olds) == 1 and len(new.get(k, ())) == 1]


class Mirror(collections.abc.MutableMapping):
    """The store's entries as last handed out, with the event loop's own changes on top.

    The event loop moves and forgets photos in the mirror before the store
    runs the same operations in a thread. Those changes are a small dict over
    the store's read-only :class:`~imagecluster.store.Entries` (``None``
    where a photo was taken out), so a library of a million photos is never
    copied for them, and the next store call replaces the whole mirror.
    """

    __slots__ = ("_base", "_changes", "_len")

    def __init__(self, base=None):
        self._base = Entries() if base is None else base
        self._changes = {}  # rel -> Entry, or None: taken out
        self._len = len(self._base)

    def __getitem__(self, rel):
        if rel in self._changes:
            entry = self._changes[rel]
            if entry is None:
                raise KeyError(rel)
            return entry
        return self._base[rel]

    def __contains__(self, rel):
        return self._changes[rel] is not None if rel in self._changes else rel in self._base

    def __setitem__(self, rel, entry):
        self._len += rel not in self
        self._changes[rel] = entry

    def __delitem__(self, rel):
        if rel not in self:
            raise KeyError(rel)
        self._changes[rel] = None
        self._len -= 1

    def __iter__(self):
        changes = self._changes
        if not changes:
            return iter(self._base)
        return itertools.chain((r for r in self._base if r not in changes),
                               (r for r, e in changes.items() if e is not None))

    def __len__(self):
        return self._len

    def __repr__(self):
        return f"<Mirror of {self._len} photos, {len(self._changes)} changed here>"


@dataclass(eq=False)
class LibraryFolder:
    """A library's folder, store and state in the indexer."""

    root: Path
    store: Store
    model: str
    exclude: tuple = ()
    available: bool = False
    reconciling: bool = False
    watched: bool | None = None  # False: cannot be watched, reconciled at every rescan instead
    identity: tuple | None = None  # (st_dev, st_ino) of the folder being watched
    known: Mirror = field(default_factory=Mirror)  # rel -> Entry: mirror of the store, for the model
    backlog: list = field(default_factory=list)  # changes held back while reconciling
    warned: bool = False
    seen: bool = False  # was available at some point (a library that comes back is "available again")
    grace: float = 1.0  # seconds a deleted photo's fingerprint is kept for a move seen as delete + create
    gone: dict = field(default_factory=dict)  # rel -> (Entry, expiry): deleted, not yet removed from the store
    reported: set = field(default_factory=set)  # special files named like photos, already reported

    def relative(self, text):
        """The relative posix path of an absolute path below the root that may be indexed, else None."""
        root = os.fspath(self.root)
        if text == root:
            return ""
        if not text.startswith(root.rstrip(os.sep) + os.sep):
            return None
        rel = Path(os.path.relpath(text, root)).as_posix()
        return None if is_hidden(root, rel.split("/"), self.exclude) else rel

    # ------------------------------------------------- changes (event loop)

    def on_touched(self, rel, is_dir, pending, walks):
        """A file or folder appeared or changed: settle the file, or queue the folder for a walk."""
        if is_dir:
            walks.append((self, rel))
            return
        sig = file_sig(self.root / rel)
        if sig is None:
            self.report_special(rel)
        if pending.touch((self.root, rel), sig):  # already settling: its clock restarted
            return
        if sig is not None and not in_cluster_tree(self.root, rel.split("/")[:-1]):
            pending.consider((self.root, rel), sig, self.known.get(rel))

    def on_deleted(self, rel, is_dir, pending):
        """A file or folder went away; returns the store operations.

        inotify reports a move into a folder it does not watch yet (one just
        created) as a deletion and a creation, in either order. So a deleted
        photo alike in name, size and mtime to one waiting to be fingerprinted
        moved there; otherwise it is forgotten now and removed from the store
        after ``grace`` seconds, in case its twin still appears (:meth:`claim`).
        """
        prefix = rel + "/"
        match = (lambda r: r.startswith(prefix)) if is_dir else rel.__eq__
        pending.drop(self.root, match)
        expiry = time.monotonic() + self.grace
        waiting, moves = None, []
        for r in [r for r in self.known if match(r)]:
            entry = self.known.pop(r)
            waiting = pending.waiting_by_name(self.root) if waiting is None else waiting
            twins = waiting.get((r.rsplit("/", 1)[-1], tuple(entry)), ())
            if len(twins) == 1 and twins[0] not in self.known:
                pending.discard((self.root, twins[0]), tuple(entry))
                self.known[twins[0]] = entry
                moves.append((r, twins[0]))
            else:
                self.gone[r] = (entry, expiry)
        return [("move", moves)] if moves else []

    def on_moved(self, old, new, is_dir, pending, walks):
        """A file or folder moved within the library: fingerprints follow; returns the store operations."""
        parts = new.split("/")
        if in_cluster_tree(self.root, parts if is_dir else parts[:-1]):
            return self.on_deleted(old, is_dir, pending)  # into a cluster tree: gone from the library
        prefix = old + "/"
        if is_dir:
            pairs = [(r, f"{new}/{r[len(prefix):]}") for r in self.known if r.startswith(prefix)]
            pending.drop(self.root, lambda r: r.startswith(prefix))
        else:
            pairs = [(old, new)] if old in self.known else []  # else the new path is judged by its sig
            pending.drop(self.root, old.__eq__)
        for a, b in pairs:  # as Store.move_many does it
            self.known.pop(b, None)
            self.gone.pop(b, None)
            self.known[b] = self.known.pop(a)
        self.on_touched(new, is_dir, pending, walks)  # the file (or folder) at its new place
        return [("move", pairs)] if pairs else []

    def report_special(self, rel):
        """Log once that a FIFO, socket or device named like a photo is skipped (it is never opened)."""
        kind = special_file_kind(self.root / rel)
        if kind is not None and rel not in self.reported:
            self.reported.add(rel)
            logger.warning("skipped %s: not a regular file (%s)", self.root / rel, kind)

    def claim(self, rel, sig, index=None):
        """A settled photo: if one gone photo had its name, size and mtime, it moved here.

        ``index`` is :meth:`gone_by_name`, when several photos are claimed at
        once. Returns the store operations (the move), or None when nothing matched.
        """
        index = self.gone_by_name() if index is None else index
        olds = [old for old in index.get((rel.rsplit("/", 1)[-1], sig), ()) if old in self.gone]
        if len(olds) != 1:
            return None
        entry, _ = self.gone.pop(olds[0])
        self.known.pop(rel, None)
        self.known[rel] = entry
        return [("move", [(olds[0], rel)])] if olds[0] != rel else []

    def gone_by_name(self):
        """The gone photos as ``{(file name, sig): [rel, ...]}``."""
        index = collections.defaultdict(list)
        for rel, (entry, _) in self.gone.items():
            index[(rel.rsplit("/", 1)[-1], tuple(entry))].append(rel)
        return index

    def expire(self):
        """Store operations removing the gone photos whose grace time is over."""
        now = time.monotonic()
        over = [r for r, (_, expiry) in self.gone.items() if expiry <= now]
        for r in over:
            del self.gone[r]
        removed = [r for r in over if r not in self.known]  # unless a photo came back under its name
        return [("remove", removed)] if removed else []

    def set_known(self, entries):
        """Take the store's fresh entries as the mirror; gone photos stay out of it until removed."""
        known = Mirror(entries)
        for rel, (entry, _) in list(self.gone.items()):
            current = known.get(rel)
            if current is not None and current == entry:
                del known[rel]
            else:  # removed meanwhile, or a new version stored under its name
                del self.gone[rel]
        self.known = known

    def next_expiry(self):
        """When the next gone photo is due for removal (monotonic time), or None."""
        return min((expiry for _, expiry in self.gone.values()), default=None)

    # ------------------------------------------------------ work (threads)

    def reconcile_sync(self):
        """Bring the store in step with the folder, except for fingerprinting.

        Photos moved meanwhile (a gone and a new photo alike in basename, size
        and mtime) keep their fingerprint under the new path; gone photos are
        removed. Returns ``(todo, entries)``: (relative path, size, mtime_ns)
        of the photos to fingerprint, and the store's entries now.
        """
        todo, gone, report = scan_library(self.root, self.store, self.model, exclude=self.exclude)
        known = self.store.entries(self.model)
        moves = match_moves(todo, gone, known)
        if moves:
            self.store.move_many(moves)
        moved_old, moved_new = {a for a, _ in moves}, {b for _, b in moves}
        removed = [rel for rel in gone if rel not in moved_old]
        if removed:
            self.store.remove(removed)
        todo = [t for t in todo if t[0] not in moved_new]
        for failure in report.failures:
            logger.warning("cannot read %s: %s", failure.path, failure.reason)
        logger.info(
            "library %s: %d photos, %d stored, %d moved, %d removed, %d to fingerprint, %d unreadable as before",
            self.root, report.found, report.unchanged, len(moves), len(removed), len(todo), len(report.known_failures),
        )
        return todo, self.store.entries(self.model)

    def apply_sync(self, operations):
        """Run ``[("move", pairs) | ("remove", paths)]`` in order, one journal append each."""
        for kind, arg in operations:
            if kind == "move":
                self.store.move_many(arg)
            else:
                self.store.remove(arg)
        return self.store.entries(self.model)

    def put_sync(self, items, failed):
        """Store ``[(rel, sig, vector)]`` whose file still has that sig, in one put.

        ``failed`` is ``[(rel, sig, reason)]`` of photos that could not be
        read: they lose any old fingerprint and, while their file keeps that
        sig, are not tried again (not even at the next start).
        """
        current = [(rel, *sig, vector) for rel, sig, vector in items if file_sig(self.root / rel) == sig]
        if current:
            self.store.put(self.model, current)
            # When and where each was taken (header only, the file just read): ClusterEvents reads nothing more.
            self.store.put_captures(capture_items(self.root, [item[:3] for item in current]))
        if failed:
            self.store.remove([rel for rel, _, _ in failed], model=self.model)
            self.store.mark_unreadable(self.model, [(rel, *sig, reason) for rel, sig, reason in failed])
        return self.store.entries(self.model)

    def compact_sync(self):
        self.store.compact(min_journal_share=COMPACT_SHARE)

    def read_sync(self, rel, sig):
        """The stored fingerprint of a photo if the store holds this version (``sig``), else None.

        The version is checked against the mirror of the store (``known``):
        copying a large library's entries for one photo would cost more than
        the answer.
        """
        entry = self.known.get(rel)
        if entry is None or tuple(entry) != sig:
            return None
        paths, vectors = self.store.fingerprints(self.model, [rel])
        return normalised(vectors[0], self.store.dtype) if paths else None

    def walk_sync(self, rel):
        """``[(rel, sig)]`` of the photos below one folder of the library, by the path rules."""
        parts = rel.split("/") if rel else []
        if is_hidden(self.root, parts, self.exclude) or in_cluster_tree(self.root, parts):
            return []
        folder = os.path.join(self.root, *parts)
        if os.path.islink(folder):
            return []  # a symlink to a folder: its photos do not live in the library
        prefix = f"{rel}/" if rel else ""
        found = []
        for sub, entry in walk_photos(folder, exclude=self.exclude):  # a folder gone again gives nothing
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((prefix + sub, (st.st_size, st.st_mtime_ns)))
        found.sort(key=listing_order)
        return found
