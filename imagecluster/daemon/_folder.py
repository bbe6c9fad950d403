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
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._exceptions import ImageClusterError, InvalidParameter, NotAnImage, NotInLibrary, PhotoNotFound
from .._library import scan_library
from ..images import TREE_MARKER, find_images, is_image_name
from ..store import Store

__all__ = [
    "Libraries", "LibraryFolder", "check_libraries", "file_sig", "folder_identity", "in_cluster_tree",
    "is_hidden", "match_moves", "normalised",
]

logger = logging.getLogger(__name__)


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


def check_libraries(libraries):
    """The library folders as a tuple of distinct resolved Paths; InvalidParameter if none or nested."""
    if isinstance(libraries, (str, os.PathLike)):
        libraries = [libraries]
    roots = []
    for lib in libraries:
        if not isinstance(lib, (str, os.PathLike)) or not os.fspath(lib):
            raise InvalidParameter(f"a library must be a folder path, got {lib!r}")
        root = Path(os.path.realpath(os.path.expanduser(os.fspath(lib))))
        if root not in roots:
            roots.append(root)
    if not roots:
        raise InvalidParameter("give at least one library folder")
    for a in roots:
        for b in roots:
            if a != b and b.is_relative_to(a):
                raise InvalidParameter(f"libraries must not be nested: {b} is inside {a}")
    return tuple(roots)


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
    known: dict = field(default_factory=dict)  # rel -> Entry: mirror of the store, for the model
    backlog: list = field(default_factory=list)  # changes held back while reconciling
    warned: bool = False
    grace: float = 1.0  # seconds a deleted photo's fingerprint is kept for a move seen as delete + create
    gone: dict = field(default_factory=dict)  # rel -> (Entry, expiry): deleted, not yet removed from the store

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
        for rel, (entry, _) in list(self.gone.items()):
            current = entries.get(rel)
            if current is not None and current == entry:
                del entries[rel]
            else:  # removed meanwhile, or a new version stored under its name
                del self.gone[rel]
        self.known = entries

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
            "library %s: %d photos, %d stored, %d moved, %d removed, %d to fingerprint",
            self.root, report.found, report.unchanged, len(moves), len(removed), len(todo),
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
        """Store ``[(rel, sig, vector)]`` whose file still has that sig, in one put; forget ``failed`` photos."""
        current = [(rel, *sig, vector) for rel, sig, vector in items if file_sig(self.root / rel) == sig]
        if current:
            self.store.put(self.model, current)
        if failed:  # a photo that turned unreadable must not keep its old fingerprint
            self.store.remove(failed, model=self.model)
        return self.store.entries(self.model)

    def compact_sync(self):
        self.store.compact()

    def read_sync(self, rel, sig):
        """The stored fingerprint of a photo if the store holds this version (``sig``), else None."""
        entry = self.store.entries(self.model).get(rel)
        if entry is None or tuple(entry) != sig:
            return None
        paths, vectors = self.store.fingerprints(self.model, [rel])
        return normalised(vectors[0], self.store.dtype) if paths else None

    def walk_sync(self, rel):
        """``[(rel, sig)]`` of the photos below one folder of the library, by the path rules."""
        parts = rel.split("/") if rel else []
        if is_hidden(self.root, parts, self.exclude) or in_cluster_tree(self.root, parts):
            return []
        try:
            photos = find_images(self.root.joinpath(*parts), exclude=self.exclude)
        except (ImageClusterError, OSError):
            return []  # gone again
        found = []
        for photo in photos:
            sig = file_sig(photo)
            if sig is not None and photo.is_relative_to(self.root):
                found.append((photo.relative_to(self.root).as_posix(), sig))
        return found


class Libraries:
    """The indexer's libraries, by resolved root: finding paths in them and routing changes to them."""

    def __init__(self, roots, model, exclude, *, grace=1.0):
        self.exclude = exclude
        self.by_root = {root: LibraryFolder(root, Store(root), model, exclude, grace=grace) for root in roots}

    def __iter__(self):
        return iter(self.by_root.values())

    def __getitem__(self, root):
        return self.by_root[root]

    def of(self, text):
        """The library an absolute path (str) lies in, or None."""
        for lib in self.by_root.values():
            root = os.fspath(lib.root)
            if text == root or text.startswith(root.rstrip(os.sep) + os.sep):
                return lib
        return None

    def locate(self, path):
        """``(library, relative posix path)`` of a path that may be indexed, else None."""
        text = os.fspath(path)
        lib = self.of(text)
        rel = lib.relative(text) if lib is not None else None
        return None if rel is None else (lib, rel)

    def resolve(self, path):
        """``(root, rel)`` of a photo; see :meth:`Indexer.resolve`."""
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidParameter(f"path must be a string, got {type(path).__name__}")
        text = os.fsdecode(os.fspath(path))
        if not text or "\0" in text or not os.path.isabs(text):
            raise InvalidParameter(f"path must be a non-empty absolute path, got {text!r}")
        real = os.path.realpath(text)  # before any check: '..' and symlinks cannot lead out
        lib = self.of(real)
        if lib is None:
            raise NotInLibrary(f"{text} is not inside a library ({', '.join(map(str, self.by_root))})")
        if not os.path.exists(real):
            raise PhotoNotFound(f"{text}: no such file")
        if os.path.isdir(real):
            raise NotAnImage(f"{text} is a folder, not a photo")
        if not is_image_name(real) or not os.path.isfile(real):
            raise NotAnImage(f"{text} is not a photo imagecluster reads")
        rel = Path(os.path.relpath(real, lib.root)).as_posix()
        parts = rel.split("/")
        if is_hidden(lib.root, parts, self.exclude) or in_cluster_tree(lib.root, parts[:-1]):
            raise NotAnImage(f"{text} is in the store folder, a hidden folder or a cluster tree: never indexed")
        return lib.root, rel

    def settled(self, keys, pending):
        """Photos just made ready that are gone photos moved are taken out of ``pending``.

        Returns the store operations per library: those moves, and the removal
        of gone photos whose grace time is over.
        """
        operations, indexes = collections.defaultdict(list), {}
        for key in keys:
            lib = self.by_root[key[0]]
            if lib.gone and lib not in indexes:
                indexes[lib] = lib.gone_by_name()
            moved = lib.claim(key[1], pending.ready[key], indexes[lib]) if lib.gone else None
            if moved is not None:
                del pending.ready[key]
                operations[lib] += moved
        for lib in self.by_root.values():
            operations[lib] += lib.expire()
        return operations

    def route(self, changes, pending):
        """Apply watcher changes to the mirrors and ``pending``.

        Returns
        -------
        operations : dict of LibraryFolder to list
            Store operations to run, per library, in order.
        walks : list of (LibraryFolder, str)
            Folders that appeared, to walk for photos.
        lost : list of LibraryFolder
            Libraries whose folder was removed.
        """
        operations, walks, lost = collections.defaultdict(list), [], []
        for change in changes:
            src = self.locate(change.path)
            dst = self.locate(change.dest) if change.dest is not None else None
            held = next((loc[0] for loc in (src, dst) if loc is not None and loc[0].reconciling), None)
            if held is not None:
                held.backlog.append(change)  # replayed once the reconciliation is done
                continue
            src = src if src is not None and src[0].available and src[0] not in lost else None
            dst = dst if dst is not None and dst[0].available and dst[0] not in lost else None
            is_dir = change.is_directory
            if change.kind == "moved" and src and dst and src[0] is dst[0]:
                operations[src[0]] += src[0].on_moved(src[1], dst[1], is_dir, pending, walks)
            elif change.kind == "moved":  # across libraries, or into or out of what is indexed
                if src:
                    operations[src[0]] += src[0].on_deleted(src[1], is_dir, pending)
                if dst:
                    dst[0].on_touched(dst[1], is_dir, pending, walks)
            elif src and change.kind == "deleted" and src[1] == "":
                lost.append(src[0])
            elif src and change.kind == "deleted":
                operations[src[0]] += src[0].on_deleted(src[1], is_dir, pending)
            elif src:
                src[0].on_touched(src[1], is_dir, pending, walks)
        return operations, walks, lost
