"""The file-system steps of writing a cluster tree, each one safe for the user's files.

:mod:`imagecluster.tree` decides what a tree holds; this module only makes
folders, swaps them and clears them, under two rules: what a person browses
is replaced in one atomic step, and nothing but what imagecluster writes
(symlinks, its own marker and index files, empty folders) is ever removed.
"""

import ctypes
import ctypes.util
import datetime
import errno
import json
import logging
import os
import secrets
import socket

from ._exceptions import TreeError
from ._tree_reuse import INDEX_NAME
from .images import TREE_MARKER

__all__ = [
    "OWN_FILES",
    "clear_old_tree",
    "new_folder",
    "remove_abandoned_staging",
    "remove_tree",
    "swap_in",
    "write_marker",
]

logger = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

#: Files at a tree's top that imagecluster writes and may remove: the marker,
#: the folder index (:mod:`imagecluster._tree_reuse`) and a marker being replaced.
MARKER_BEING_WRITTEN = TREE_MARKER + ".new"
OWN_FILES = frozenset({TREE_MARKER, INDEX_NAME, MARKER_BEING_WRITTEN})

STAGING_INFIX = ".new-"


def new_folder(parent, prefix):
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


def write_marker(root, marker):
    """Write ``marker`` (a dict) as the tree's marker file, replacing any in one rename.

    The writer's process and host go in too, so that a staging folder left by
    a crash can be told from one another process is still filling.
    """
    text = json.dumps({**marker, "writer": [socket.gethostname(), os.getpid()]}, indent=1, default=str)
    temporary = os.path.join(root, MARKER_BEING_WRITTEN)
    with open(temporary, "w") as file:
        file.write(text + "\n")
    os.replace(temporary, os.path.join(root, TREE_MARKER))


def swap_in(staging, out):
    """Make ``staging`` the tree at ``out``; where the old tree is now (to clear), or None if there was none.

    Nothing is removed here: once this returns, the new tree is in place and
    a failure to clear the old one (:func:`clear_old_tree`) must not undo it.
    """
    if not out.exists():
        try:
            os.rename(staging, out)
        except OSError as exc:
            raise TreeError(f"cannot move the new cluster tree to {out}: {exc.strerror or exc}") from exc
        return None
    if _exchange(staging, out):
        return staging  # after the exchange, the staging name holds the old tree
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    try:
        os.rename(out, old)
    except OSError as exc:
        raise TreeError(f"cannot replace the cluster tree at {out}: {exc.strerror or exc}") from exc
    try:
        os.rename(staging, out)
    except OSError as exc:
        os.rename(old, out)  # the old tree back where it was
        raise TreeError(f"cannot replace the cluster tree at {out}: {exc.strerror or exc}") from exc
    return old


def clear_old_tree(old, out):
    """Remove the old tree now at ``old``; set it aside beside ``out`` if it holds files imagecluster did not write.

    The new tree is already in place: a failure here is logged, not raised.
    """
    try:
        if remove_tree(old):
            return
        kept = out.with_name(f"{out.name}.kept-{datetime.datetime.now():%Y%m%d-%H%M%S}")
        os.rename(old, kept)
    except OSError as exc:
        logger.warning("the new cluster tree is at %s; the old one could not be cleared from %s: %s", out, old, exc)
        return
    logger.warning("the old cluster tree held files imagecluster did not write; they are kept in %s", kept)


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


def remove_tree(root):
    """Remove what imagecluster writes (symlinks, its files at the top, empty folders); True if all went.

    Regular files other than :data:`OWN_FILES` at the top are never removed.
    """
    clean = True
    top = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or (name in OWN_FILES and dirpath == top):
                os.unlink(path)
            else:
                clean = False
        try:
            os.rmdir(dirpath)
        except OSError:
            clean = False
    return clean


def remove_abandoned_staging(out):
    """Clear the staging folders of ``out`` whose writer died (a crash or a kill mid-write).

    Only folders named like ours, holding our marker, written on this host by
    a process that no longer runs, are cleared, and only of what
    :func:`remove_tree` removes. Errors are logged, never raised: this is
    tidying, not the write.
    """
    prefix = f".{out.name}{STAGING_INFIX}"
    try:
        names = [n for n in os.listdir(out.parent) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        folder = out.parent / name
        try:
            with open(folder / TREE_MARKER) as file:
                host, pid = json.load(file)["writer"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if host != socket.gethostname() or not isinstance(pid, int) or _running(pid):
            continue
        try:
            if remove_tree(folder):
                logger.info("removed %s, left half written by an imagecluster that stopped", folder)
        except OSError as exc:
            logger.warning("cannot remove the abandoned staging folder %s: %s", folder, exc)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
