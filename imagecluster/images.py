"""Finding photos in a library, and the public face of decoding them.

Which files are photos, in which order a library is listed, and where it
lives; :func:`load_image` and :func:`load_image_and_thumbnail` are
:mod:`imagecluster._decode`'s, which reads each photo small and fast.
"""

import os
from pathlib import Path

from ._decode import load_image, load_image_and_thumbnail
from ._exceptions import InvalidParameter, LibraryNotFound
from ._raw import RAW_SUFFIXES, SIDECAR_SUFFIXES

__all__ = [
    "IMAGE_SUFFIXES",
    "RAW_SUFFIXES",
    "SIDECAR_SUFFIXES",
    "STORE_DIRNAME",
    "TREE_MARKER",
    "check_library",
    "find_images",
    "is_image_name",
    "listing_order",
    "load_image",
    "load_image_and_thumbnail",
    "walk_photos",
]

#: File name endings (lower case) that are treated as photos; camera RAW files
#: (:data:`RAW_SUFFIXES`) are read through LibRaw.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"}
) | RAW_SUFFIXES

#: The per-library folder that holds the fingerprint store; never indexed.
STORE_DIRNAME = ".imagecluster"

#: A file imagecluster writes into every cluster tree; folders holding it are never indexed.
TREE_MARKER = ".imagecluster-tree"

def _register_heif():
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


_HEIF_AVAILABLE = _register_heif()


def is_image_name(name):
    """Whether a file name looks like a photo we can read (by its ending).

    Hidden files and partial downloads are not photos yet.
    """
    return _is_photo_basename(os.path.basename(os.fspath(name)))


def _is_photo_basename(base):
    """:func:`is_image_name` of a name without folders (as a folder listing gives it), without a path split."""
    dot = base.rfind(".")
    if base.startswith(".") or dot < 0:
        return False
    suffix = base[dot:].lower()
    if suffix in SIDECAR_SUFFIXES:  # edits and thumbnails beside a photo: silently not photos
        return False
    if suffix in {".heic", ".heif"} and not _HEIF_AVAILABLE:
        return False
    return suffix in IMAGE_SUFFIXES


def find_images(library, *, exclude=()):
    """List the photos below ``library``, recursively, in a stable order.

    Hidden folders, the store folder, cluster trees written by imagecluster
    (any folder holding :data:`TREE_MARKER`) and the folders in ``exclude`` are
    skipped, so a cluster tree of symlinks is never indexed as new photos.
    Symlinks (to files or folders) are not followed: a library's photos are
    the files that really live in it.

    Names are listed by their ending only, without opening anything: a FIFO,
    socket or device named like a photo is listed, and :func:`load_image`
    then refuses it without opening it ("not a regular file"), so it is
    reported as skipped with that reason instead of silently missing.

    Parameters
    ----------
    library : str or os.PathLike
        The photo folder.
    exclude : iterable of path-like, default=()
        Folders to leave out (e.g. the cluster output folder).

    Returns
    -------
    list of pathlib.Path
        Absolute paths, sorted.
    """
    root = check_library(library)
    return [Path(entry.path) for _, entry in sorted(walk_photos(root, exclude=exclude), key=listing_order)]


def listing_order(item):
    """Sort key of a ``(library-relative POSIX path, ...)`` item: the order :func:`find_images` lists photos in.

    Part by part, as ``Path`` objects sort (``a/b.jpg`` before ``a-c.jpg``),
    without making a ``Path`` per photo.
    """
    return item[0].split("/")


def walk_photos(root, *, exclude=()):
    """The photos below ``root`` by the rules of :func:`find_images`, as they are found.

    Strings and ``os.DirEntry`` objects instead of sorted Paths: a daemon's
    start-up goes through every photo of the library, and at 100,000 photos
    making and sorting ``Path`` objects cost 4 of the 5 s it took. The
    entry's ``stat()`` is one system call (``lstat`` never: a symlink is
    known from the folder listing where the file system says so).

    Parameters
    ----------
    root : str or os.PathLike
        The photo folder, absolute (as :func:`check_library` returns it).
    exclude : iterable of path-like, default=()
        Folders to leave out.

    Yields
    ------
    relative : str
        The photo's path below ``root``, with ``/``.
    entry : os.DirEntry
        Its folder entry (``entry.path`` is absolute).
    """
    excluded = {os.path.abspath(p) for p in exclude}
    folders = [("", os.fspath(root))]
    while folders:
        relative, folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:
            continue  # gone or unreadable: skipped, as os.walk does
        kinds = [(entry, _is_dir(entry)) for entry in entries]
        if any(entry.name == TREE_MARKER and not is_dir for entry, is_dir in kinds):
            continue  # a cluster tree: its symlinks are not photos
        for entry, is_dir in kinds:
            name = entry.name
            if is_dir:
                if not name.startswith(".") and not entry.is_symlink() and entry.path not in excluded:
                    folders.append((f"{relative}{name}/", entry.path))
            elif _is_photo_basename(name) and not entry.is_symlink():
                yield relative + name, entry


def _is_dir(entry):
    try:
        return entry.is_dir()
    except OSError:
        return False


def check_library(library):
    """Return ``library`` as an absolute, resolved Path, or raise LibraryNotFound."""
    if library is None or os.fspath(library) == "":
        raise InvalidParameter("no photo folder given")
    path = Path(library).expanduser()
    if not path.exists():
        raise LibraryNotFound(f"photo folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise LibraryNotFound(f"{str(path)!r} is not a folder")
    return path.resolve()
