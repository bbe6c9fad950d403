"""Write real DNG files (Adobe's TIFF-based RAW) from ordinary photos, for tests and benchmarks.

A camera's RAW file holds the sensor's mosaic, not an RGB picture: every pixel
saw one colour through a Bayer filter (here RGGB), in linear light, at 12 bits.
:func:`write_dng` turns a photo into exactly that -- sRGB decoded to linear
light, one channel kept per pixel, scaled between a black and a white level --
and stores it the way Adobe's DNG Converter does: IFD0 a small RGB thumbnail
carrying the DNG and orientation tags, its SubIFDs the raw CFA image and
(optionally) a large JPEG preview. LibRaw (``rawpy``) reads these like a
camera's files, so the tests exercise the real decoder, not a mock.

The writer is a few dozen lines of ``struct`` rather than a dependency:
``tifffile`` cannot store an already-encoded JPEG strip without
``imagecodecs``, and ``pidng`` writes no previews.
"""

import io
import struct

import numpy as np
from PIL import Image

#: The black and white level of the 12-bit mosaic.
BLACK, WHITE = 256, 4095

# XYZ (D65) -> linear sRGB: as ColorMatrix1 this makes the "camera" an sRGB
# sensor, so LibRaw's demosaic lands on the photo's own colours.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)

_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_SIZES = {_BYTE: 1, _ASCII: 1, _SHORT: 2, _LONG: 4, _RATIONAL: 8, _SRATIONAL: 8}
_FORMATS = {_BYTE: "B", _ASCII: "B", _SHORT: "H", _LONG: "I", _RATIONAL: "I", _SRATIONAL: "i"}


def bayer_mosaic(rgb):
    """An RGGB mosaic of 12-bit linear values from an sRGB uint8 array of shape (h, w, 3).

    Odd last rows/columns are cut so the 2x2 pattern tiles the frame.
    """
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    srgb = np.asarray(rgb[:h, :w], dtype=np.float32) / 255.0
    lin = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    cfa = np.empty((h, w), np.float32)
    cfa[0::2, 0::2] = lin[0::2, 0::2, 0]
    cfa[0::2, 1::2] = lin[0::2, 1::2, 1]
    cfa[1::2, 0::2] = lin[1::2, 0::2, 1]
    cfa[1::2, 1::2] = lin[1::2, 1::2, 2]
    return (BLACK + cfa * (WHITE - BLACK)).round().astype("<u2")


def write_dng(
    path, photo, *, preview=True, preview_size=None, preview_image=None, orientation=1, thumb_width=160, quality=90,
    exif=None, gps=None,
):
    """Write ``photo`` as an uncompressed 12-bit Bayer DNG.

    Parameters
    ----------
    path : path-like
        Where to write.
    photo : PIL.Image.Image
        The scene, upright as the sensor saw it (orientation is only a tag).
    preview : bool, default=True
        Embed a JPEG preview (a camera's "full-size preview").
    preview_size : tuple of int, default=None
        Its (width, height); None means the mosaic's size.
    preview_image : PIL.Image.Image, default=None
        A different picture to embed as the preview (e.g. one stored already
        turned, as some cameras do); None means ``photo`` itself.
    orientation : int, default=1
        The TIFF/EXIF Orientation tag (6: turn 90 degrees clockwise to view).
    thumb_width : int, default=160
        Width of IFD0's small uncompressed RGB thumbnail.
    quality : int, default=90
        JPEG quality of the preview.
    exif, gps : list of (tag, type, values), default=None
        Entries of an Exif IFD and a GPS IFD that IFD0 points to (as
        cameras store capture times and positions); ``values`` a list of
        numbers (rationals as numerator, denominator, ...) or bytes.
    """
    photo = photo.convert("RGB")
    cfa = bayer_mosaic(np.asarray(photo))
    h, w = cfa.shape
    thumb = photo.resize((thumb_width, max(1, thumb_width * h // w)), Image.BILINEAR)
    raw = [
        (254, _LONG, [0]),  # NewSubFileType: the main image
        (256, _LONG, [w]),
        (257, _LONG, [h]),
        (258, _SHORT, [16]),
        (259, _SHORT, [1]),
        (262, _SHORT, [32803]),  # PhotometricInterpretation: CFA
        (273, _LONG, "DATA"),
        (277, _SHORT, [1]),
        (278, _LONG, [h]),
        (279, _LONG, [cfa.nbytes]),
        (33421, _SHORT, [2, 2]),  # CFARepeatPatternDim
        (33422, _BYTE, [0, 1, 1, 2]),  # CFAPattern: RGGB
        (50710, _BYTE, [0, 1, 2]),  # CFAPlaneColor
        (50711, _SHORT, [1]),  # CFALayout: rectangular
        (50714, _SHORT, [BLACK]),  # BlackLevel
        (50717, _SHORT, [WHITE]),  # WhiteLevel
    ]
    subifds = [(raw, cfa.tobytes())]
    if preview:
        image = photo.crop((0, 0, w, h)) if preview_image is None else preview_image.convert("RGB")
        if preview_size is not None:
            image = image.resize(preview_size, Image.BILINEAR)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality)
        jpeg = buf.getvalue()
        pw, ph = image.size
        subifds.append(
            (
                [
                    (254, _LONG, [1]),  # a reduced-resolution version
                    (256, _LONG, [pw]),
                    (257, _LONG, [ph]),
                    (258, _SHORT, [8, 8, 8]),
                    (259, _SHORT, [7]),  # JPEG
                    (262, _SHORT, [6]),  # YCbCr
                    (273, _LONG, "DATA"),
                    (277, _SHORT, [3]),
                    (278, _LONG, [ph]),
                    (279, _LONG, [len(jpeg)]),
                    (284, _SHORT, [1]),
                ],
                jpeg,
            )
        )
    thumb_bytes = np.asarray(thumb, dtype=np.uint8).tobytes()
    ifd0 = [
        (254, _LONG, [1]),
        (256, _LONG, [thumb.width]),
        (257, _LONG, [thumb.height]),
        (258, _SHORT, [8, 8, 8]),
        (259, _SHORT, [1]),
        (262, _SHORT, [2]),  # RGB
        (271, _ASCII, b"TestCam\0"),  # Make
        (272, _ASCII, b"TestCam T-1\0"),  # Model
        (273, _LONG, "DATA"),
        (274, _SHORT, [orientation]),
        (277, _SHORT, [3]),
        (278, _LONG, [thumb.height]),
        (279, _LONG, [len(thumb_bytes)]),
        (284, _SHORT, [1]),
        (330, _LONG, "SUBIFDS"),
        (50706, _BYTE, [1, 4, 0, 0]),  # DNGVersion
        (50707, _BYTE, [1, 1, 0, 0]),  # DNGBackwardVersion
        (50708, _ASCII, b"TestCam T-1\0"),  # UniqueCameraModel
        (50721, _SRATIONAL, [x for v in _XYZ_TO_SRGB for x in (round(v * 10000), 10000)]),  # ColorMatrix1
        (50728, _RATIONAL, [1, 1, 1, 1, 1, 1]),  # AsShotNeutral
        (50778, _SHORT, [21]),  # CalibrationIlluminant1: D65
    ]
    with open(path, "wb") as f:
        named = [(name, entries) for name, entries in (("EXIF", exif), ("GPS", gps)) if entries]
        ifd0 += [(34665 if name == "EXIF" else 34853, _LONG, name) for name, _ in named]
        f.write(_tiff([(ifd0, thumb_bytes)], subifds, named))


def _tiff(ifds, subifds, named=()):
    """A little-endian TIFF laid out as cameras do: header, IFDs, then the strips.

    With the directories first, a file cut short (a copy interrupted) keeps
    its structure and loses pixel data, the damage a reader must survive.
    """
    tables = [entries for entries, _ in ifds + subifds] + [entries for _, entries in named]
    zeros = {"SUBIFDS": [0] * len(subifds), **{name: [0] for name, _ in named}}
    sizes = [len(_ifd(entries, 0, 0, zeros)) for entries in tables]
    starts, at = [], 8
    for size in sizes:
        starts.append(at)
        at += size + size % 2
    data_at = []
    for _, blob in ifds + subifds:
        data_at.append(at)
        at += len(blob) + len(blob) % 2
    n_data = len(ifds) + len(subifds)
    pointers = {"SUBIFDS": starts[len(ifds) : n_data]}
    pointers.update((name, [starts[n_data + k]]) for k, (name, _) in enumerate(named))
    out = bytearray(b"II*\0" + struct.pack("<I", starts[0]))
    for k, entries in enumerate(tables):
        out += _ifd(entries, starts[k], data_at[k] if k < n_data else 0, pointers if k == 0 else {"SUBIFDS": []})
        _pad(out)
    for _, blob in ifds + subifds:
        out += blob
        _pad(out)
    return bytes(out)


def _ifd(entries, start, data_offset, pointers):
    """One IFD at file offset ``start``: the entry table, then the values that do not fit in 4 bytes.

    ``pointers`` maps a placeholder value (``"SUBIFDS"``, ``"EXIF"``, ``"GPS"``) to the offsets it stands for.
    """
    resolved = []
    for tag, typ, values in sorted(entries, key=lambda e: e[0]):
        if values == "DATA":
            values = [data_offset]
        elif isinstance(values, str):
            values = pointers[values]
        raw = values if isinstance(values, bytes) else struct.pack(f"<{len(values)}{_FORMATS[typ]}", *values)
        resolved.append((tag, typ, len(raw) // _SIZES[typ], raw))
    extra_at = start + 2 + 12 * len(resolved) + 4
    table, extra = bytearray(struct.pack("<H", len(resolved))), bytearray()
    for tag, typ, count, raw in resolved:
        if len(raw) <= 4:
            table += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, typ, count, extra_at + len(extra))
            extra += raw + b"\0" * (len(raw) % 2)
    table += struct.pack("<I", 0)
    return table + extra


def _pad(out):
    if len(out) % 2:
        out += b"\0"
