"""Writing clusters as a tree of symlinks: ``<out>/cluster_with_<N>/cluster_<K>/<photo>``.

The tree is what a person browses, so it must never be seen half written and
must never cost them a file:

* the new tree is built beside the old one and swapped in with one atomic
  ``renameat2(RENAME_EXCHANGE)`` (where the kernel has it; otherwise two
  renames with a moment in between);
* imagecluster only ever replaces a folder holding its own marker file (or an
  empty one), and when clearing an old tree it removes only symlinks, the
  marker and then-empty folders. Anything else found inside is kept, and the
  old tree is left aside under a new name instead of being deleted.

A rewrite costs what changed: folders whose photos are the same are moved
from the old tree into the new one (:mod:`imagecluster._tree_reuse`), after
all new folders are written and just before the swap. In the moment of those
moves (~25 µs a folder) the old tree already lacks them; the new tree appears
whole, in one step. The file-system steps are in :mod:`imagecluster._tree_fs`.
"""

import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path

from ._exceptions import InvalidParameter, NotOurTree, TreeError
from ._tree_fs import (
    STAGING_INFIX,
    clear_old_tree,
    new_folder,
    remove_abandoned_staging,
    remove_tree,
    swap_in,
    write_marker,
)
from ._tree_reuse import Carry, leaf_keys, link_names, write_index
from .images import TREE_MARKER

__all__ = ["check_tree_folder", "is_own_tree", "write_event_tree", "write_tree"]

logger = logging.getLogger(__name__)


def is_own_tree(folder):
    """Whether ``folder`` is a cluster tree that imagecluster wrote (holds the marker file)."""
    marker = Path(folder) / TREE_MARKER
    return marker.is_file() and not marker.is_symlink()


def check_tree_folder(out, *, libraries=()):
    """Where a cluster tree may be written, checked before any work is done.

    Inside a library the tree folder is never indexed, so a folder of photos
    there must not become the tree: its photos would lose their fingerprints
    and the tree could never be written. Checking first means a mistaken
    ``--out`` costs nothing.

    Parameters
    ----------
    out : path-like
        The tree's folder.
    libraries : iterable of path-like, default=()
        The photo folders; inside one of them ``out`` must not exist yet, be
        empty, or be a tree imagecluster wrote.

    Returns
    -------
    pathlib.Path
        ``out``, absolute (``~`` expanded).

    Raises
    ------
    InvalidParameter
        ``out`` is inside a library and is a file, a symlink or a folder
        imagecluster did not write.
    NotOurTree
        ``out`` is outside every library and exists but is not replaceable
        (see :func:`write_tree`).
    """
    if out is None or os.fspath(out) == "":
        raise InvalidParameter("no folder given for the cluster tree")
    out = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    real = Path(os.path.realpath(out))
    for library in libraries:
        library = Path(os.path.realpath(os.path.expanduser(os.fspath(library))))
        if real.is_relative_to(library):
            try:
                _check_replaceable(out)
            except NotOurTree:
                raise InvalidParameter(
                    f"{out} is inside the library {library} and was not written by imagecluster: "
                    "its photos would be left out. Choose a new folder for the cluster tree."
                ) from None
            return out
    _check_replaceable(out)
    return out


def write_tree(clusters, out, *, info=None):
    """Write ``clusters`` as a symlink tree at ``out``, replacing the tree there.

    Parameters
    ----------
    clusters : list of list of path-like
        Photo paths, one list per cluster (as returned by
        :func:`imagecluster.cluster_folder`). Each becomes
        ``cluster_with_<N>/cluster_<K>/``, N the cluster size and K counting
        the clusters of that size from 0. Links point to absolute paths.
    out : path-like
        The tree's folder. Created if missing; if it exists it must be a tree
        imagecluster wrote before, or empty.
    info : dict, default=None
        Extra facts (e.g. sim, model) recorded in the tree's marker file.

    Returns
    -------
    pathlib.Path
        The absolute path of the written tree.

    Raises
    ------
    NotOurTree
        ``out`` exists and is not an imagecluster tree; nothing is touched.
    TreeError
        The tree could not be written (permissions, disk full, ...).
    """
    # Strings, not Paths: making 100,000 Paths took longer than writing the tree.
    groups = [[os.path.abspath(p) for p in group] for group in clusters]
    if any(len(g) == 0 for g in groups):
        raise InvalidParameter("a cluster must hold at least one photo")
    seen_sizes: dict[int, int] = {}
    folders = []
    for group in groups:
        k = seen_sizes.get(len(group), 0)
        seen_sizes[len(group)] = k + 1
        folders.append((f"cluster_with_{len(group)}/cluster_{k}", group))
    return _write(out, folders, {**(info or {}), "digest": _digest(groups, info or {})}, len(groups))


def write_event_tree(events, out, *, info=None):
    """Write events as a symlink tree: ``<out>/events/<name>/`` per event, with ``cluster_<K>/`` inside.

    The same rules as :func:`write_tree`: built beside, swapped in, only a
    tree imagecluster wrote (or an empty folder) is ever replaced, and
    nothing but symlinks, the marker and empty folders is removed.

    Parameters
    ----------
    events : list of (str, list of path-like, list of list of path-like)
        ``(name, photos, clusters)`` per event: the folder name (unique, no
        ``/``), a link to every photo of the event goes in the folder, and
        each content cluster becomes ``cluster_<K>/`` in it (K from 0,
        largest first).
    out : path-like
        The tree's folder (as :func:`write_tree`).
    info : dict, default=None
        Extra facts recorded in the marker file.

    Returns
    -------
    pathlib.Path
        The absolute path of the written tree.

    Raises
    ------
    NotOurTree, TreeError
        As :func:`write_tree`.
    """
    folders, names = [], set()
    for name, photos, clusters in events:
        if not name or "/" in name or name in (".", "..") or name in names or not photos:
            raise InvalidParameter(f"bad or repeated event folder name {name!r}, or an event without photos")
        names.add(name)
        base = f"events/{name}"
        folders.append((base, [os.path.abspath(p) for p in photos]))
        for k, group in enumerate(clusters):
            folders.append((f"{base}/cluster_{k}", [os.path.abspath(p) for p in group]))
    digest = hashlib.sha256(json.dumps(info or {}, sort_keys=True, default=str).encode())
    for folder, photos in folders:
        digest.update(os.fsencode(folder) + b"\0" + os.fsencode("\n".join(photos)) + b"\0")
    return _write(out, folders, {**(info or {}), "digest": digest.hexdigest()[:16]}, len(events), what="events")


def _write(out, folders, info, count, what="clusters"):
    """Build the tree of ``folders`` ((relative folder, photos) pairs) beside ``out`` and swap it in.

    Folders the old tree holds unchanged are moved over rather than written
    again (:mod:`imagecluster._tree_reuse`), after every new folder is
    written: the old tree, which a person may be browsing, gives them up only
    in the last step before the swap.
    """
    out = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    _check_replaceable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TreeError(f"cannot create the cluster tree beside {out}: {exc.strerror or exc}") from exc
    with _one_writer_beside(out):
        _check_replaceable(out)  # again, now that no other imagecluster writes here
        if _written_already(out, info["digest"]):
            logger.debug("the cluster tree at %s already holds these clusters; left as it is", out)
            return out
        remove_abandoned_staging(out)
        try:
            staging = new_folder(out.parent, f".{out.name}{STAGING_INFIX}")
        except OSError as exc:
            raise TreeError(f"cannot create the cluster tree beside {out}: {exc.strerror or exc}") from exc
        keys = leaf_keys(folders)
        carry = Carry(out, folders, keys) if is_own_tree(out) else None
        try:
            _fill(staging, folders, info, count, what, carry)
            if carry is not None and carry.moves:
                _carry_over(out, staging, carry)
            write_index(staging, keys)
            old = swap_in(staging, out)
        except BaseException:
            if carry is not None:
                carry.undo()
            remove_tree(staging)
            raise
        if old is not None:
            clear_old_tree(old, out)
    return out


@contextlib.contextmanager
def _one_writer_beside(out):
    """Hold an exclusive lock on ``out``'s parent folder while the tree is written.

    Two writers of one tree (the CLI and the daemon) would otherwise both move
    folders out of it. Where the file system has no such locks, go on without.
    """
    try:
        fd = os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            logger.debug("cannot lock %s (%s); writing without the lock", out.parent, exc)
        yield
    finally:
        os.close(fd)


def _digest(groups, info):
    """What a tree holds, in 16 hex digits: its clusters in order and how they were made."""
    digest = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode())
    for group in groups:  # the bytes b"\n".join(map(os.fsencode, group)) gives, in one encode
        digest.update(os.fsencode("\n".join(group)) + b"\0")
    return digest.hexdigest()[:16]


def _written_already(out, digest):
    """Whether ``out`` is our tree of exactly these clusters (a repeated Cluster call rewrites nothing)."""
    if not is_own_tree(out):
        return False
    try:
        marker = json.loads((out / TREE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("digest") == digest


def _check_replaceable(out):
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise NotOurTree(f"{out} exists and is not a folder; choose another folder for the cluster tree")
    if out.is_dir() and not is_own_tree(out) and any(out.iterdir()):
        raise NotOurTree(
            f"{out} exists and was not written by imagecluster; "
            "it is left untouched. Choose another folder for the cluster tree, or remove it yourself."
        )


def _fill(staging, folders, info, count, what, carry):
    """Write the marker, then every folder not carried over from the old tree."""
    # The marker comes first: a watcher (the daemon's) then knows the folders
    # that follow are a cluster tree, and a staging folder left by a crash is
    # recognisably ours.
    marker = {
        "written_by": "imagecluster",
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        what: count,
        **info,
    }
    try:
        write_marker(staging, marker)
        for relative, group in folders:
            if carry is None or relative not in carry.moves:
                _write_folder(staging, relative, group)
    except OSError as exc:
        raise TreeError(f"cannot write the cluster tree: {exc.strerror or exc}") from exc


def _write_folder(staging, relative, group):
    folder = os.path.join(staging, relative)
    os.makedirs(folder)
    for photo, name in zip(group, link_names(group)):
        os.symlink(photo, os.path.join(folder, name))


def _carry_over(out, staging, carry):
    """Move the unchanged folders from the live tree at ``out`` into ``staging``.

    The live tree's marker loses its digest first: if this process dies
    before the swap, the tree left at ``out`` (short of the moved folders) is
    never again taken for a complete one, and the next write makes it whole.
    """
    try:
        marker = json.loads((out / TREE_MARKER).read_text())
        if not isinstance(marker, dict):
            marker = {}
    except (OSError, ValueError):
        marker = {}
    try:
        write_marker(out, {"written_by": "imagecluster", **marker, "digest": None, "being_replaced": True})
        for relative in carry.moves:
            if not carry.move(staging, relative):
                _write_folder(staging, relative, carry.photos_of[relative])
    except OSError as exc:
        raise TreeError(f"cannot write the cluster tree: {exc.strerror or exc}") from exc
