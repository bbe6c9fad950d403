"""Decoding one photo small and fast, upright and in RGB, for the network and for thumbnails.

A camera JPEG of 12 MP is never decoded at full size: Pillow's ``draft`` asks
libjpeg to scale in the DCT domain (1/2, 1/4 or 1/8) to just above the size the
network wants, which is most of the speed of the whole pipeline. When the
camera stored a smaller copy of the photo in the file (an MPF large
thumbnail), that copy is decoded instead (:mod:`imagecluster._jpeg_preview`).
RAW files are read through LibRaw (:mod:`imagecluster._raw`).
"""

import logging
import os

import numpy as np
from PIL import Image, ImageOps

from ._exceptions import NotAnImage
from ._jpeg_preview import decode_preview, preview_frame
from ._raw import RAW_SUFFIXES, open_raw
from ._regular import fd_name, open_regular

__all__ = ["decode_upright", "load_image", "load_image_and_thumbnail"]

logger = logging.getLogger(__name__)


def load_image(path, size):
    """Decode one photo to an RGB array of shape ``(size, size, 3)``, uint8.

    EXIF orientation is applied, a GIF gives its first frame, a camera RAW
    file its embedded preview or a half-size demosaic, a camera JPEG that
    carries its camera's smaller copy of the photo (MPF) that copy,
    transparency is flattened onto white, and the whole photo is squashed to
    a square (like the original imagecluster), so nothing at its edges is
    cropped away.

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
    im, stored = decode_upright(path, size)
    return _square(im, size), _thumbnail(im, side, stored)


def decode_upright(path, size):
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
        with open_regular(path) as f:
            if os.path.splitext(os.fspath(path))[1].lower() in RAW_SUFFIXES:
                # LibRaw opens by name: /proc/self/fd names the very file checked above.
                im = _to_rgb(open_raw(fd_name(f, path), size))
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
