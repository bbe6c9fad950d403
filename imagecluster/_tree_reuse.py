"""Carrying a tree's unchanged folders over into its next version, so a rewrite costs what changed.

A cluster tree at 100,000 photos holds ~76,000 symlinks in ~20,000 folders.
Writing them all again after a few new photos cost 10-40 s on the disks
measured, while one ``rename`` of a folder whose photos did not change costs
~25 µs. So every tree records, in :data:`INDEX_NAME` at its top, a key of each
leaf folder's photos; the next write looks each of its folders up there and
moves a match from the old tree into the new one instead of writing it again.

What is moved is checked first: a real folder (not a symlink, nor below one)
holding symlinks only, exactly the names the new folder would hold. A folder
a person changed (a file added, a link removed) is written afresh, and the
old one stays in the old tree, which keeps such files as before. Link
targets are not read back (that would cost what the move saves): a link
replaced by hand with another of the same name would be carried over.
"""

import hashlib
import json
import logging
import os
import stat

__all__ = ["INDEX_NAME", "Carry", "folder_key", "leaf_keys", "link_names", "read_index", "write_index"]

logger = logging.getLogger(__name__)

INDEX_NAME = ".imagecluster-folders"
_INDEX_VERSION = 1


def folder_key(photos):
    """A key for a folder's photos (absolute path strings, in order): equal keys, equal links."""
    return hashlib.sha256(os.fsencode("\n".join(photos))).hexdigest()[:32]


def link_names(photos):
    """The link name of each photo: ``IMG_1.jpg``, then ``IMG_1 (2).jpg``, ... so both appear."""
    used: set[str] = set()
    names = []
    for photo in photos:
        name = candidate = os.path.basename(photo)
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            stem, suffix = name, ""
        count = 1
        while candidate in used:
            count += 1
            candidate = f"{stem} ({count}).{suffix}" if dot else f"{stem} ({count})"
        used.add(candidate)
        names.append(candidate)
    return names


def leaf_keys(folders):
    """``{relative folder: folder_key}`` of the folders no other folder of the tree lies inside.

    Computed once per write: the index written and the look-up in the old
    tree's index both use it.
    """
    parents = {os.path.dirname(relative) for relative, _ in folders}
    return {relative: folder_key(photos) for relative, photos in folders if relative not in parents}


def read_index(tree):
    """The old tree's {key: relative folder}; empty if it has none or it cannot be read."""
    try:
        with open(os.path.join(tree, INDEX_NAME), encoding="utf-8") as file:
            index = json.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.debug("the folder index of %s is unreadable (%s); every folder is written afresh", tree, exc)
        return {}
    if not isinstance(index, dict) or index.get("version") != _INDEX_VERSION:
        return {}
    folders = index.get("folders")
    return folders if isinstance(folders, dict) else {}


def write_index(tree, keys):
    """Record ``keys`` (:func:`leaf_keys` of the tree's folders) in ``tree``, as ``{key: relative folder}``."""
    index = {key: relative for relative, key in keys.items()}
    with open(os.path.join(tree, INDEX_NAME), "w", encoding="utf-8") as file:
        json.dump({"version": _INDEX_VERSION, "folders": index}, file, separators=(",", ":"))


class Carry:
    """The folders of a new tree that its old tree already holds, and their moves.

    Parameters
    ----------
    old : pathlib.Path
        The tree being replaced (imagecluster's own).
    folders : list of (str, list of str)
        The new tree's folders: relative path and photos.
    keys : dict of str to str
        :func:`leaf_keys` of ``folders``.

    Attributes
    ----------
    moves : dict
        ``{new relative folder: old relative folder}`` for each folder found
        unchanged in ``old``.
    moved : list of (str, str)
        The (old absolute, new absolute) paths actually moved so far, for
        :meth:`undo`.
    """

    def __init__(self, old, folders, keys):
        self.old = os.fspath(old)
        self.moves = {}
        self.moved = []
        self._links = {}  # relative folder -> whether it is or lies below a symlink
        self.photos_of = dict(folders)
        index = read_index(self.old)
        if not index:
            return
        for relative, key in keys.items():
            previous = index.get(key)
            if previous is not None and self._unchanged(previous, self.photos_of[relative]):
                self.moves[relative] = previous
        logger.debug("%s: %d of %d folders carried over", self.old, len(self.moves), len(folders))

    def _unchanged(self, relative, photos):
        """Whether the old tree's ``relative`` is one of its folders holding exactly these links, and only links.

        Only links: a folder holding a real file is never moved, so a
        person's photos never are, whatever the index says.
        """
        if os.path.isabs(relative) or ".." in relative.split(os.sep):
            return False  # never move anything from outside the old tree
        path = os.path.join(self.old, relative)
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode) or self._through_a_link(os.path.dirname(relative)):
                return False
            with os.scandir(path) as listing:
                entries = list(listing)
            if not all(entry.is_symlink() for entry in entries):
                return False
        except OSError:
            return False
        return sorted(entry.name for entry in entries) == sorted(link_names(photos))

    def _through_a_link(self, relative_folder):
        """Whether a folder on the way from the old tree's top to ``relative_folder`` is a symlink."""
        if not relative_folder:
            return False
        known = self._links.get(relative_folder)
        if known is None:
            known = self._through_a_link(os.path.dirname(relative_folder)) or os.path.islink(
                os.path.join(self.old, relative_folder))
            self._links[relative_folder] = known
        return known

    def move(self, staging, relative):
        """Move the old folder carried over as ``relative`` into ``staging``; False if it could not be moved."""
        source = os.path.join(self.old, self.moves[relative])
        target = os.path.join(staging, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.rename(source, target)
        except OSError as exc:  # gone meanwhile, or not movable (another file system): written afresh
            logger.debug("cannot move %s into the new tree (%s); writing it afresh", source, exc)
            return False
        self.moved.append((source, target))
        return True

    def undo(self):
        """Put the moved folders back where they were (after a failed write); best effort."""
        for source, target in reversed(self.moved):
            try:
                os.rename(target, source)
            except OSError as exc:
                logger.debug("cannot put %s back at %s: %s", target, source, exc)
        self.moved.clear()
