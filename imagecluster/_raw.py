"""Decoding camera RAW files (CR2, NEF, ARW, DNG, ...) small and fast, through LibRaw.

A RAW file is the sensor's mosaic, and demosaicing it costs far more than
decoding a JPEG. But nearly every camera also stores a full-size (or at least
screen-size) JPEG preview inside the file, rendered by the camera itself. When
that preview is big enough for the network -- its short side at least the
network's input size -- it is all we decode: about the cost of a small JPEG,
with the camera's own colours. Only when it is missing or tiny is the mosaic
demosaiced, at half size (LibRaw skips interpolation by taking each 2x2 Bayer
cell as one RGB pixel; full size only for a sensor too small for that).

Both ways give the photo upright: LibRaw applies the RAW's orientation to its
demosaic, and the same orientation is applied here to the preview (which
cameras store as the sensor saw it).

``rawpy`` (LibRaw) is imported on the first RAW file only, so a run over JPEGs
never pays for it. Errors are raised as the builtins
:func:`imagecluster.images.load_image` already turns into ``NotAnImage`` with
a reason: ``OSError`` with a message, and Pillow's ``DecompressionBombError``
for a RAW with too many pixels.
"""

import io
import logging
import os

from PIL import Image

__all__ = ["RAW_SUFFIXES", "SIDECAR_SUFFIXES", "open_raw", "upright_preview"]

logger = logging.getLogger(__name__)

#: Camera RAW file endings (lower case), all read through LibRaw.
RAW_SUFFIXES = frozenset(
    {
        ".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".fff", ".iiq", ".kdc", ".mef",
        ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".rw2", ".rwl", ".sr2", ".srf", ".srw", ".x3f",
    }
)  # fmt: skip

#: Files that photo tools keep beside a photo (edits, thumbnails): never photos themselves.
#: .xmp darktable/digiKam/Lightroom, .pp3 RawTherapee, .dop DxO, .thm camera thumbnails,
#: .aae Apple edits.
SIDECAR_SUFFIXES = frozenset({".xmp", ".pp3", ".dop", ".thm", ".aae"})

# The sRGB transfer curve as LibRaw's (power, toe slope).
_SRGB_GAMMA = (2.4, 12.92)

# LibRaw's flip code (bit 0 mirror left-right, bit 1 mirror top-bottom, bit 2
# swap axes) as the EXIF orientation it was read from.
_FLIP_TO_EXIF = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}

# EXIF orientation -> the transposition that turns the stored pixels upright (as ImageOps.exif_transpose).
_EXIF_TO_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

def open_raw(path, size):
    """The photo in a RAW file as an upright RGB image, its short side at least ``size`` if it can be.

    Parameters
    ----------
    path : str or os.PathLike
        The RAW file.
    size : int
        The side the network wants: a preview whose short side is smaller is
        not used.

    Returns
    -------
    PIL.Image.Image
        Mode ``RGB``, orientation applied, not yet resized to ``size``.

    Raises
    ------
    OSError
        Not a RAW file LibRaw knows, or damaged or truncated (the message says which).
    PIL.Image.DecompressionBombError
        The sensor has more pixels than Pillow allows any image (``2 * Image.MAX_IMAGE_PIXELS``).
    """
    import rawpy  # here, not at the top: JPEG-only runs never load LibRaw

    path = os.fspath(path)
    try:
        with rawpy.imread(path) as raw:
            _check_pixels(raw.sizes)
            try:
                preview = _preview(raw, rawpy, size, path)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - untrusted bytes; the decoders raise anything
                # A broken preview is not a broken photo: the mosaic may be intact.
                logger.debug("%s: embedded preview unusable (%s), demosaicing instead", path, exc)
                preview = None
            if preview is not None:
                return preview
            # half_size: each 2x2 Bayer cell becomes one pixel (no interpolation),
            # unless that leaves fewer pixels than the network wants. The sRGB
            # curve (LibRaw's default is BT.709's) is the one previews are
            # rendered with: fingerprints of both ways agree better. LibRaw
            # applies the orientation itself.
            half = min(raw.sizes.width, raw.sizes.height) >= 2 * size
            rgb = raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8, gamma=_SRGB_GAMMA)
            return Image.fromarray(rgb).convert("RGB")
    except rawpy.LibRawError as exc:
        raise OSError(_describe_libraw(exc, rawpy, path)) from exc


def _check_pixels(sizes):
    """Refuse a sensor bigger than Pillow's decompression-bomb limit, before LibRaw allocates it."""
    limit = Image.MAX_IMAGE_PIXELS
    pixels = sizes.raw_width * sizes.raw_height
    if limit is not None and pixels > 2 * limit:
        raise Image.DecompressionBombError(f"{pixels} pixels exceed the limit of {2 * limit}")


def _preview(raw, rawpy, size, path):
    """The largest embedded preview, upright and RGB, or None when there is none at least ``size`` high and wide."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        if _runs_past_the_end(path, thumb.data):
            raise OSError("the embedded preview is cut off by the end of the file")
        im = Image.open(io.BytesIO(thumb.data))
        if min(im.size) < size:
            return None
        # LibRaw gives the preview an EXIF block with the RAW's orientation,
        # unless the camera wrote one of its own (then that one speaks for it).
        orientation = im.getexif().get(0x0112, 1)
        # Decode in libjpeg's DCT domain only as large as needed (as for JPEGs).
        im.draft("RGB", (size, size))
        im = im.convert("RGB")
    elif thumb.format == rawpy.ThumbFormat.BITMAP and thumb.data.ndim == 3 and min(thumb.data.shape[:2]) >= size:
        im = Image.fromarray(thumb.data[..., :3] if thumb.data.shape[2] >= 3 else thumb.data[..., 0]).convert("RGB")
        orientation = _FLIP_TO_EXIF[raw.sizes.flip & 7]
    else:
        return None
    return upright_preview(im, orientation, (raw.sizes.width, raw.sizes.height))


def _runs_past_the_end(path, data, probe=32):
    """Whether the preview ``data`` goes on beyond the end of the file at ``path``.

    LibRaw (0.21, 0.22) reads a preview up to 16 KB past the end of a cut
    file and hands back its buffer with the missing part never written: the
    tail is whatever the heap held -- zeros in a fresh process, the preview of
    an earlier photo in a long one -- so the decode would depend on what ran
    before. A cut preview ends in the file's last bytes: when those occur in
    the preview short of its end, the rest came from no file at all. One small
    read at the end of the file, no search through the file.
    """
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        f.seek(max(0, end - probe))
        tail = f.read(probe)
    if len(tail) < probe:
        return False
    found = bytes(data).rfind(tail)
    return 0 <= found < len(data) - probe


def upright_preview(im, orientation, photo_size):
    """Turn a camera's preview of a photo of ``photo_size`` (width, height, as stored) upright.

    Cameras store a preview as the sensor saw it, like the photo, so the
    photo's EXIF orientation applies -- unless the camera stored it turned
    already.
    """
    width, height = photo_size
    if orientation in (5, 6, 7, 8) and (im.width > im.height) != (width > height):
        # The orientation swaps the axes, but the preview's shape already
        # differs from the sensor's: this camera stored it turned.
        return im
    method = _EXIF_TO_TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def _describe_libraw(exc, rawpy, path):
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        return "not a RAW file LibRaw can read"
    if isinstance(exc, rawpy.LibRawIOError):
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            return "an empty file"
        return "damaged or cut short: LibRaw ran out of data (a RAW file copied in part?)"
    if isinstance(exc, rawpy.LibRawDataError):
        return "damaged RAW data"
    too_big = (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError, rawpy.LibRawMemPoolOverflowError)
    if isinstance(exc, too_big):
        return "too many pixels to be a photo (LibRaw's memory limit)"
    text = exc.args[0] if exc.args else type(exc).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"LibRaw could not read it ({text})"
