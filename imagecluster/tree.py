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
"""

import ctypes
import ctypes.util
import datetime
import errno
import hashlib
import json
import logging
import os
import secrets
from pathlib import Path

from ._exceptions import InvalidParameter, NotOurTree, TreeError
from .images import TREE_MARKER

__all__ = ["check_tree_folder", "is_own_tree", "write_event_tree", "write_tree"]

logger = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


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
        folders.append((Path(f"cluster_with_{len(group)}") / f"cluster_{k}", group))
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
        base = Path("events") / name
        folders.append((base, [os.path.abspath(p) for p in photos]))
        for k, group in enumerate(clusters):
            folders.append((base / f"cluster_{k}", [os.path.abspath(p) for p in group]))
    digest = hashlib.sha256(json.dumps(info or {}, sort_keys=True, default=str).encode())
    for folder, photos in folders:
        digest.update(os.fsencode(folder) + b"\0" + os.fsencode("\n".join(photos)) + b"\0")
    return _write(out, folders, {**(info or {}), "digest": digest.hexdigest()[:16]}, len(events), what="events")


def _write(out, folders, info, count, what="clusters"):
    """Build the tree of ``folders`` ((relative folder, photos) pairs) beside ``out`` and swap it in."""
    out = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    _check_replaceable(out)
    if _written_already(out, info["digest"]):
        logger.debug("the cluster tree at %s already holds these clusters; left as it is", out)
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = _new_folder(out.parent, f".{out.name}.new-")
    except OSError as exc:
        raise TreeError(f"cannot create the cluster tree beside {out}: {exc.strerror or exc}") from exc
    try:
        _fill(staging, folders, info, count, what)
        _swap_in(staging, out)
    except BaseException:
        _remove_tree(staging)
        raise
    return out


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


def _new_folder(parent, prefix):
    """A new, empty folder ``parent/prefix<random>`` with the mode the user's umask gives.

    Not ``tempfile.mkdtemp``: its folders are 0700, and this one becomes the
    tree the user browses (and may share).
    """
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no free name for a new folder", os.fspath(parent / prefix))


def _fill(staging, folders, info, count, what):
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
        (staging / TREE_MARKER).write_text(json.dumps(marker, indent=1, default=str) + "\n")
        for relative, group in folders:
            folder = staging / relative
            folder.mkdir(parents=True)
            used: set[str] = set()
            for photo in group:
                name = _unique_name(os.path.basename(photo), used)
                os.symlink(photo, os.path.join(folder, name))
    except OSError as exc:
        raise TreeError(f"cannot write the cluster tree: {exc.strerror or exc}") from exc


def _unique_name(name, used):
    """``IMG_1.jpg``, then ``IMG_1 (2).jpg``, ...: two photos of one name both appear."""
    candidate = name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    count = 1
    while candidate in used:
        count += 1
        candidate = f"{stem} ({count}).{suffix}" if dot else f"{stem} ({count})"
    used.add(candidate)
    return candidate


def _swap_in(staging, out):
    if not out.exists():
        try:
            os.rename(staging, out)
        except OSError as exc:
            raise TreeError(f"cannot move the new cluster tree to {out}: {exc.strerror or exc}") from exc
        return
    if _exchange(staging, out):
        old = staging  # after the exchange, the staging name holds the old tree
    else:
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        try:
            os.rename(out, old)
            os.rename(staging, out)
        except OSError as exc:
            raise TreeError(f"cannot replace the cluster tree at {out}: {exc.strerror or exc}") from exc
    if not _remove_tree(old):
        kept = out.with_name(f"{out.name}.kept-{datetime.datetime.now():%Y%m%d-%H%M%S}")
        os.rename(old, kept)
        logger.warning(
            "the old cluster tree held files imagecluster did not write; they are kept in %s", kept
        )


def _exchange(a, b):
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise TreeError(f"cannot replace the cluster tree at {b}: {os.strerror(err)}")


def _remove_tree(root):
    """Remove what imagecluster writes (symlinks, marker, empty folders); True if all went.

    Regular files other than the marker are never removed.
    """
    clean = True
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or (name == TREE_MARKER and dirpath == os.fspath(root)):
                os.unlink(path)
            else:
                clean = False
        try:
            os.rmdir(dirpath)
        except OSError:
            clean = False
    return clean
