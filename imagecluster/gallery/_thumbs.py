"""Small previews of a library's photos, made once and kept in its store folder.

A thumbnail is made from the same fast decode path as a fingerprint
(:mod:`imagecluster._decode`): libjpeg scales a JPEG by 1/2, 1/4 or 1/8 while
decoding (``draft``), the EXIF orientation is applied, and the rest is one
resize. Decoding, resizing and encoding release the GIL, so one thread per
core keeps every core busy.

The cache is ``<store folder>/thumbs-<side>/``: one JPEG per photo, named by
a hash of (path, size, modification time), and ``index.json`` with each
one's width and height. A photo that changes gets a new name; names no
photo has any more are removed (:meth:`ThumbnailCache.prune`).
"""

import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import logging
import os
import tempfile
from pathlib import Path

from PIL import Image

from .._cores import usable_cores
from .._decode import decode_upright
from .._exceptions import NotAnImage

__all__ = ["DEFAULT_SIDE", "ThumbnailCache", "ThumbnailFiles", "library_thumbnails", "make_thumbnail"]

logger = logging.getLogger(__name__)

#: Longest side of a thumbnail, in pixels.
DEFAULT_SIDE = 256

_QUALITY = 80
_INDEX = "index.json"


def make_thumbnail(path, side=DEFAULT_SIDE):
    """Decode one photo small, upright, as an RGB image whose longest side is at most ``side``.

    Parameters
    ----------
    path : path-like
        The photo.
    side : int, default=DEFAULT_SIDE
        Longest side in pixels.

    Returns
    -------
    PIL.Image.Image

    Raises
    ------
    NotAnImage
        The file cannot be decoded, or is not a regular file.
    """
    im, _ = decode_upright(path, side)
    im.thumbnail((side, side), Image.BILINEAR, reducing_gap=2.0)
    return im


def library_thumbnails(store, side=DEFAULT_SIDE):
    """The thumbnail cache of a library: ``thumbs-<side>/`` in its store folder.

    Parameters
    ----------
    store : Store
        The library's store (its folder may be under ``$XDG_DATA_HOME`` for a read-only library).
    side : int, default=DEFAULT_SIDE
        Longest side of each thumbnail.

    Returns
    -------
    ThumbnailCache
    """
    return ThumbnailCache(store.folder / f"thumbs-{side}", side=side)


class ThumbnailCache:
    """A library's thumbnails, in ``folder``, keyed by (path, size, mtime).

    Parameters
    ----------
    folder : path-like
        The cache folder (created on first write), e.g. ``<store folder>/thumbs-256``.
    side : int, default=DEFAULT_SIDE
        Longest side of each thumbnail.
    """

    def __init__(self, folder, *, side=DEFAULT_SIDE):
        self.folder = Path(folder)
        self.side = int(side)
        #: Thumbnails decoded by the last :meth:`ensure` (the rest came from the cache).
        self.made = 0

    def name(self, rel, size, mtime_ns):
        """The file name of one photo's thumbnail (hex digits and ``.jpg``).

        Parameters
        ----------
        rel : str
            Library-relative path.
        size : int
            Bytes.
        mtime_ns : int
            Modification time, nanoseconds.

        Returns
        -------
        str
        """
        key = os.fsencode(rel) + b"\0" + f"{size}:{mtime_ns}:{self.side}".encode()
        return hashlib.sha256(key).hexdigest()[:32] + ".jpg"

    def file(self, rel, size, mtime_ns):
        """Where one photo's thumbnail is kept (a Path): :attr:`folder` / :meth:`name`, same parameters."""
        return self.folder / self.name(rel, size, mtime_ns)

    def ensure(self, root, photos, *, workers=None, progress=None):
        """Make the thumbnails that are missing; returns what each photo has.

        Parameters
        ----------
        root : Path
            The library.
        photos : list of (str, int, int)
            (library-relative path, size, mtime_ns) of each photo.
        workers : int, default=None
            Threads decoding at once; None means one per core this process may
            use (its affinity).
        progress : callable, default=None
            ``progress(total)`` is called once with the number of thumbnails
            to make and returns a callable called with the number just made.

        Returns
        -------
        list of (str, int, int) or None
            Per photo, (file name in :attr:`folder`, width, height), or None
            when it could not be decoded.
        """
        index = self._read_index()
        names = [self.name(*photo) for photo in photos]
        unlisted = [name for name in names if name not in index]
        adopted = self._adopt(unlisted, index) if unlisted else 0
        todo = [(k, photo) for k, (photo, name) in enumerate(zip(photos, names)) if name not in index]
        self.made = len(todo)
        if adopted and not todo:
            self._write_index(index)
        if todo:
            self.folder.mkdir(parents=True, exist_ok=True)
            advance = progress(len(todo)) if progress is not None else None
            workers = workers or usable_cores()
            # One photo per thread in flight, the next handed out only after ``advance``
            # returned: a stop (Ctrl-C, or ``advance`` raising because the daemon stops)
            # then waits for the decodes in hand alone. With every photo queued at once,
            # a thread took the next one before the stop could drop it. The thumbnails
            # already written are found by the next run (see _adopt).
            waiting = iter(todo)
            with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="imagecluster-thumbs") as pool:

                def start(count):
                    return {pool.submit(self._make, root / photo[0], names[k])
                            for k, photo in itertools.islice(waiting, count)}

                running = start(workers)
                while running:
                    done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                    for job in done:
                        name, made = job.result()
                        index[name] = made
                        if advance is not None:
                            advance(1)
                    running |= start(len(done))
            self._write_index(index)
        out = []
        for name in names:
            made = index.get(name)
            out.append((name, made[0], made[1]) if made and made[0] > 0 else None)
        return out

    def sink(self, root, photos):
        """Where an indexing run that is about to decode ``photos`` keeps their thumbnails.

        The files are named as this cache names them and listed in no index:
        the next :meth:`ensure` finds them (as it finds the daemon worker's).

        Parameters
        ----------
        root : path-like
            The library.
        photos : list of (str, int, int)
            (library-relative path, size, mtime_ns) of each photo to be decoded.

        Returns
        -------
        ThumbnailFiles
        """
        targets = {Path(root) / rel: self.file(rel, size, mtime_ns) for rel, size, mtime_ns in photos}
        return ThumbnailFiles(self.side, targets)

    def prune(self, keep, *, written_before=None):
        """Remove the thumbnails of photos that are gone or changed.

        Parameters
        ----------
        keep : iterable of str
            File names still in use (from :meth:`name`).
        written_before : float, default=None
            Of the files no gallery has listed yet, remove only those last
            written before this time (seconds since the epoch); None removes
            any. The daemon's inference worker writes a new photo's thumbnail
            before the photo is in the store, so a ``keep`` read from the
            store a moment earlier does not name it yet: such a file is left
            to a later prune. A listed thumbnail not in ``keep`` is a gone
            photo's, and goes.

        Returns
        -------
        int
            Thumbnails removed.
        """
        keep = set(keep)
        index = self._read_index()
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                if entry.name.endswith(".jpg") and entry.name not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        unlisted = entry.name not in index
                        if unlisted and written_before is not None and entry.stat().st_mtime >= written_before:
                            continue
                        os.unlink(entry.path)
                        removed += 1
        stale = [name for name in index if name not in keep]
        if stale:
            for name in stale:
                del index[name]
            self._write_index(index)
        return removed

    def _make(self, path, name):
        """One thumbnail: ``(name, [width, height])``, ``[0, 0]`` when the photo cannot be read."""
        try:
            im = make_thumbnail(path, self.side)
        except NotAnImage as exc:
            logger.info("no thumbnail for %s", exc)
            return name, [0, 0]
        return name, self._save(im, name)

    def _save(self, im, name):
        """Write one thumbnail atomically; returns ``[width, height]``."""
        return _write_jpeg(im, self.folder, name)

    def _adopt(self, names, index):
        """List in ``index`` the thumbnails among ``names`` written without it (by the daemon's worker).

        Their size comes from the JPEG's header; a file that is not a readable
        JPEG is left out (and made again). Returns how many were listed.
        """
        adopted = 0
        for name in names:
            try:
                with Image.open(self.folder / name) as im:
                    if im.format == "JPEG" and min(im.size) > 0:
                        index[name] = [im.width, im.height]
                        adopted += 1
            except (OSError, ValueError, SyntaxError):
                continue
        return adopted

    def _read_index(self):
        try:
            data = json.loads((self.folder / _INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        # A thumbnail listed but deleted since is made again.
        present = set(os.listdir(self.folder)) if self.folder.is_dir() else set()
        return {
            k: v for k, v in data.items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)
            and (v[0] == 0 or k in present)
        }

    def _write_index(self, index):
        fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(index, f, separators=(",", ":"))
            os.replace(tmp, self.folder / _INDEX)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class ThumbnailFiles:
    """Thumbnails made by the fingerprinting's own decode, written to files named in advance.

    Decoding a camera JPEG costs the same at any scale (libjpeg's entropy
    decoding of the whole file), so a thumbnail made apart from the
    fingerprint doubles the work of a first gallery. The indexing (its
    decoding threads, or the daemon's inference worker, a process of its own)
    hands each photo's thumbnail to :meth:`add`; the files are listed in no
    index, and the next gallery lists those it finds
    (:meth:`ThumbnailCache.ensure`), so two processes never write one
    ``index.json``.

    Parameters
    ----------
    side : int
        Longest side of each thumbnail.
    targets : dict of str to str
        Photo path (as the indexing names it) -> the thumbnail's file path.
    """

    def __init__(self, side, targets):
        self.side = int(side)
        self._targets = {os.fspath(path): os.fspath(target) for path, target in targets.items()}

    def add(self, path, image):
        """Write the thumbnail of the photo at ``path``, if it has a target.

        Parameters
        ----------
        path : path-like
            The photo.
        image : PIL.Image.Image
            Its thumbnail.
        """
        target = self._targets.get(os.fspath(path))
        if target is not None:
            _write_jpeg(image, Path(target).parent, Path(target).name)


def _write_jpeg(im, folder, name):
    """Write ``im`` as ``folder/name`` atomically (a reader sees the whole file or none); ``[width, height]``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, "JPEG", quality=_QUALITY)
        os.replace(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return [im.width, im.height]
