"""The indexer's set of libraries: checking the folders given, finding a path's library, routing changes.

Each library's own state and rules are a :class:`~._folder.LibraryFolder`;
this module decides which library a path or a watcher change belongs to.
"""

import collections
import os
from pathlib import Path

from .._exceptions import InvalidParameter, NotAnImage, NotInLibrary, PhotoNotFound
from ..images import is_image_name
from ..store import Store
from ._folder import LibraryFolder, in_cluster_tree, is_hidden

__all__ = ["Libraries", "check_libraries"]


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


class Libraries:
    """The indexer's libraries, by resolved root: finding paths in them and routing changes to them."""

    def __init__(self, roots, model, exclude, *, grace=1.0):
        self.exclude = exclude
        # file_backed: a large library's fingerprints stay out of the daemon's resident memory between calls.
        self.by_root = {root: LibraryFolder(root, Store(root, file_backed=True), model, exclude, grace=grace)
                        for root in roots}

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
