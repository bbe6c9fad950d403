"""Finding photos in a library and decoding them small and fast.

A camera JPEG of 12 MP is never decoded at full size: Pillow's ``draft`` asks
libjpeg to scale in the DCT domain (1/2, 1/4 or 1/8) to just above the size the
network wants, which is most of the speed of the whole pipeline. When the
camera stored a smaller copy of the photo in the file (an MPF large
thumbnail), that copy is decoded instead (:mod:`imagecluster._jpeg_preview`).
"""

import logging
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ._exceptions import InvalidParameter, LibraryNotFound, NotAnImage
from ._jpeg_preview import decode_preview, preview_frame
from ._raw import RAW_SUFFIXES, SIDECAR_SUFFIXES, open_raw

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

logger = logging.getLogger(__name__)

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


def load_image(path, size):
    """Decode one photo to an RGB array of shape ``(size, size, 3)``, uint8.

    EXIF orientation is applied, a GIF gives its first frame, a camera RAW
    file its embedded preview or a half-size demosaic, transparency is
    flattened onto white, and the whole photo is squashed to a square (like the
    original imagecluster), so nothing at its edges is cropped away.

    Parameters
    ----------
    path : str or os.PathLike
        The photo.
    size : int
        Side of the square the network wants, in pixels.

    Returns
    -------
    numpy.ndarray of shape (size, size, 3), dtype uint8

    Raises
    ------
    NotAnImage
        The file cannot be decoded (not an image, truncated, far too large),
        or is not a regular file (a FIFO, socket or device is never opened,
        so it cannot make the call wait).
    """
    return _decode(path, size, None)[0]


def load_image_and_thumbnail(path, size, side):
    """One decode for both a fingerprint's input and a gallery's thumbnail.

    Decoding a camera JPEG is bounded by libjpeg's entropy decoding of the
    whole file, at any scale; a thumbnail made apart from the fingerprint
    costs that decode a second time. The network's array is exactly
    :func:`load_image`'s; the thumbnail is cut from the same small decode.

    Parameters
    ----------
    path : str or os.PathLike
        The photo.
    size : int
        Side of the square the network wants, in pixels.
    side : int
        Longest side of the thumbnail, in pixels (a smaller photo keeps its size).

    Returns
    -------
    array : numpy.ndarray of shape (size, size, 3), dtype uint8
    thumbnail : PIL.Image.Image or None
        Upright, RGB, aspect ratio kept; None when the small decode came out
        smaller than the thumbnail should be (rare: a near-square JPEG).

    Raises
    ------
    NotAnImage
        As :func:`load_image`.
    """
    return _decode(path, size, side)


def _decode(path, size, side):
    """``(array, thumbnail or None)``: the work of :func:`load_image`, keeping a thumbnail when ``side`` is set."""
    im, stored = _decode_upright(path, size)
    return _square(im, size), _thumbnail(im, side, stored)


def _decode_upright(path, size):
    """Decode a photo upright and in RGB, as small as its format allows while both sides stay >= ``size``.

    The one decode behind fingerprints and gallery thumbnails, so both read
    every file, with every format's rules, the same way.

    Parameters
    ----------
    path : path-like
        The photo (a regular file).
    size : int
        Smallest side wanted, in pixels. JPEGs are decoded at 1/2, 1/4 or
        1/8 scale in the DCT domain (draft mode) as far as keeps both sides
        at least ``size``, or their camera's preview when one can stand for
        them (:mod:`imagecluster._jpeg_preview`); RAW files give their
        embedded preview or a half-size demosaic (:mod:`imagecluster._raw`).

    Returns
    -------
    image : PIL.Image.Image
        Loaded, RGB, upright.
    stored : (int, int)
        Width and height as stored in the file, before any scaling.

    Raises
    ------
    NotAnImage
        The file is not a regular file or cannot be decoded; the message says why.
    """
    try:
        with _open_regular(path) as f:
            if os.path.splitext(os.fspath(path))[1].lower() in RAW_SUFFIXES:
                # LibRaw opens by name: /proc/self/fd names the very file checked above.
                im = _to_rgb(open_raw(_fd_name(f, path), size))
                return im, im.size
            # Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (179 MP) with
            # DecompressionBombError, caught below as "too many pixels".
            with Image.open(f) as im:
                stored = im.size
                frame = preview_frame(im)
                if frame is None:
                    return _small(im, size), stored
                preview = _camera_preview(im, frame, size, path)
                if preview is not None:
                    return preview, stored
            f.seek(0)  # the preview could not stand for the photo: the photo itself, opened afresh
            with Image.open(f) as im:
                return _small(im, size), stored
    except NotAnImage:
        raise
    except MemoryError as exc:
        raise NotAnImage(f"{os.fspath(path)}: not enough memory to decode it") from exc
    except Exception as exc:
        # A photo file is untrusted input: a malformed one can make a decoder
        # raise nearly anything (struct.error, IndexError, ...). None of that
        # may stop a run over a whole library.
        raise NotAnImage(f"{os.fspath(path)}: {_describe(exc)}") from exc


def _small(im, size):
    """Decode the open ``im`` upright, in RGB, at 1/2, 1/4 or 1/8 scale (JPEG) while both sides stay >= ``size``."""
    im.draft("RGB", (size, size))
    im = _to_rgb(_upright(im))
    im.load()
    return im


def _camera_preview(im, frame, size, path):
    """The camera's own preview of a JPEG (:mod:`imagecluster._jpeg_preview`), or None to decode the photo itself."""
    try:
        return decode_preview(im, frame, size)
    except Exception as exc:  # noqa: BLE001 - a broken preview is not a broken photo: the photo may be intact
        logger.debug("%s: embedded preview unusable (%s), decoding the photo instead", os.fspath(path), exc)
        return None


def _square(im, size):
    return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.uint8)


def _thumbnail(im, side, stored):
    """A thumbnail of the decoded ``im``, or None when the decode came out smaller than the thumbnail should be.

    (A near-square JPEG drafted for a 224 px network can decode to 224-255 px:
    its thumbnail is then left to a decode of its own, at the right scale.)
    """
    if side is None or max(im.size) < min(side, max(stored)):
        return None
    im = im.copy()
    im.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return im


def _open_regular(path):
    """Open ``path`` for reading only if it is a regular file; never blocks on a FIFO or device.

    The type is checked with ``stat`` before any open, because opening some
    devices has effects of its own (a tape rewinds, a watchdog arms) and
    opening a FIFO waits for a writer. The open itself is non-blocking and
    checked again with ``fstat``, so a file swapped for a FIFO in between is
    refused too, and what Pillow reads is exactly the file checked.
    A ``stat`` on a hung hard-mounted network file system still blocks in
    the kernel; no user-space code can bound that.
    """
    _check_regular(os.stat(path), path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check_regular(os.fstat(fd), path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(st, path):
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise NotAnImage(f"{os.fspath(path)}: is a folder")
    raise NotAnImage(f"{os.fspath(path)}: not a regular file ({_file_kind(st.st_mode)})")


def special_file_kind(path):
    """What a special file is (``"FIFO"``, ``"socket"``, ``"character device"``, ...), or None.

    None for a regular file, a folder, a symlink or a path that is not there:
    for a file named like a photo that must be reported, never opened.
    """
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return None
    return _file_kind(mode)


def _file_kind(mode):
    kinds = (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _fd_name(f, path):
    """A name that opens the same file as ``f`` (Linux), else ``path``."""
    name = f"/proc/self/fd/{f.fileno()}"
    return name if os.path.exists(name) else path


def _upright(im):
    """Apply the EXIF orientation; a damaged EXIF block leaves the pixels as stored, not the photo unread."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - untrusted metadata; its parsers raise anything
        logger.debug("%s: EXIF orientation unreadable (%s); using the pixels as stored", im, exc)
        return im


def _to_rgb(im):
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale (scientific TIFFs, some PNGs): scale to 8 bits.
        arr = np.asarray(im, dtype=np.float32)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / top)).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def _describe(exc):
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels to be a photo (decompression bomb guard)"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder"
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower() or not isinstance(exc, OSError):
        return f"damaged or truncated image ({text})"
    return text
