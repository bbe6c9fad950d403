"""When and where a photo was taken: EXIF capture time and GPS position, read from the file header only.

What is read, per photo (:class:`Capture`):

* the three EXIF times -- ``DateTimeOriginal`` (the shutter), ``DateTimeDigitized``
  and ``DateTime`` (IFD0; editors change it) -- each with its sub-seconds
  (``SubSecTime*``) and, when the camera wrote one, its UTC offset
  (``OffsetTime*``, EXIF 2.31);
* the GPS latitude and longitude (GPS IFD, degrees/minutes/seconds as one to
  three rationals, signed by their ``N``/``S``/``E``/``W`` reference).

Which time a photo gets is decided later, by :func:`capture_time`, from an
ordered list of sources (default: original, digitized, datetime, then the
file's modification time), so changing that order needs no re-read. A time
without an offset is the camera's wall clock, taken as the local time of the
machine that clusters (the offset that applied on that date).

Only the metadata is read, never the pixels: for a JPEG the ``APP1`` segment
(the markers before the image data), for TIFF and the TIFF-based RAW formats
(DNG, NEF, NRW, CR2, ARW, SR2, SRW, PEF, ORF, RW2, 3FR, ERF, ...) the few
directories that hold these tags, for a Fujifilm RAF the JPEG preview's
``APP1``, and for PNG, WebP and HEIC the EXIF block Pillow finds while
opening the file (it decodes nothing). Canon CR3 (ISO media boxes) is not
parsed: it falls back to the file time. The TIFF reader is our own
(:mod:`imagecluster._tiff`, not Pillow's ``ImageFileDirectory``): it
accepts every RAW's byte-order magic (``IIRO``, ``IIU``), reads a bounded
number of bytes, and never warns or raises -- photo files are untrusted
input, and a missing or garbled field is simply absent. Measured: the same
photo's header read costs ~0.1 ms for a JPEG (see
``benchmarks/bench_events.py``).
"""

import datetime as _dt
import math
import re
import struct
from typing import NamedTuple

from ._tiff import TIFF_MAGIC, BytesSource, FileSource, IfdReader, jpeg_app1

__all__ = [
    "DEFAULT_SOURCES", "EMPTY", "SOURCES", "Capture", "CaptureTime", "capture_problem", "capture_time",
    "check_sources", "read_capture",
]

#: Where a capture time can come from, as :func:`capture_time` names them.
SOURCES = ("original", "digitized", "datetime", "mtime")
#: The order tried by default: the shutter time first, the file time last.
DEFAULT_SOURCES = SOURCES

_EPOCH = _dt.datetime(1970, 1, 1)
_TIME = re.compile(rb"(\d{4})[:\-/](\d\d)[:\-/](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_OFFSET = re.compile(rb"([+-])(\d\d):?(\d\d)")
# Tags (IFD0 / Exif IFD / GPS IFD).
_DATETIME, _EXIF_IFD, _GPS_IFD = 0x0132, 0x8769, 0x8825
_ORIGINAL, _DIGITIZED = 0x9003, 0x9004
_OFFSETS = {0x9010: "datetime", 0x9011: "original", 0x9012: "digitized"}
_SUBSECS = {0x9290: "datetime", 0x9291: "original", 0x9292: "digitized"}


class Capture(NamedTuple):
    """What a photo's header says about when and where it was taken; every field may be None.

    Times are wall-clock seconds since 1970-01-01 00:00 as the camera's clock
    showed them (a naive time counted as if it were UTC), with sub-seconds;
    offsets are seconds east of UTC. Latitude and longitude are degrees
    (north and east positive), both given or both None.
    """

    original: float | None = None
    original_offset: int | None = None
    digitized: float | None = None
    digitized_offset: int | None = None
    datetime: float | None = None
    datetime_offset: int | None = None
    lat: float | None = None
    lon: float | None = None

    @property
    def has_gps(self):
        """Whether the photo has a usable position."""
        return self.lat is not None


#: A photo whose header says nothing (no EXIF, or unreadable).
EMPTY = Capture()


class CaptureTime(NamedTuple):
    """A photo's capture time as used.

    ``timestamp`` seconds since the epoch (UTC), ``wall`` the wall clock (as
    :class:`Capture`), ``source`` the name from :data:`SOURCES` it came from.
    """

    timestamp: float
    wall: float
    source: str


def read_capture(path):
    """Read a photo's capture times and GPS position from its header, without decoding pixels.

    Parameters
    ----------
    path : str or os.PathLike
        The photo (any format :func:`imagecluster.find_images` lists).

    Returns
    -------
    Capture
        :data:`EMPTY` when the file has no EXIF, cannot be opened, or is not
        a regular file; a field is None when it is missing or garbled.
        Never raises (except ``MemoryError``).
    """
    try:
        from ._regular import open_regular  # a FIFO or device named like a photo is never opened

        with open_regular(path) as f:
            return _read(f)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - untrusted files: whatever goes wrong, the fields are simply absent
        return EMPTY


def capture_time(capture, mtime_ns, sources=DEFAULT_SOURCES):
    """The capture time of one photo, from the first source in ``sources`` that it has.

    Parameters
    ----------
    capture : Capture
        What its header says.
    mtime_ns : int or None
        The file's modification time (``os.stat``), for the ``"mtime"`` source.
    sources : sequence of str, default=DEFAULT_SOURCES
        Names from :data:`SOURCES`, in the order to try them.

    Returns
    -------
    CaptureTime or None
        None when no source in ``sources`` gives a time. A wall time without
        an offset is taken as local time (the machine's time zone on that
        date); the file time's ``wall`` is its local wall clock.
    """
    for source in sources:
        if source == "mtime":
            if mtime_ns is None:
                continue
            stamp = mtime_ns / 1e9
            try:
                wall = (_dt.datetime.fromtimestamp(stamp) - _EPOCH).total_seconds()
            except (OverflowError, OSError, ValueError):
                continue
            return CaptureTime(stamp, wall, "mtime")
        wall = getattr(capture, source)
        if wall is None:
            continue
        offset = getattr(capture, f"{source}_offset")
        if offset is not None:
            return CaptureTime(wall - offset, wall, source)
        try:
            stamp = (_EPOCH + _dt.timedelta(seconds=wall)).timestamp()  # naive: the local time zone
        except (OverflowError, OSError, ValueError):
            continue
        return CaptureTime(stamp, wall, source)
    return None


def check_sources(sources):
    """Return ``sources`` as a tuple of known source names; ValueError (InvalidParameter) otherwise."""
    from ._exceptions import InvalidParameter

    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",")]
    try:
        sources = tuple(sources)
    except TypeError as exc:
        raise InvalidParameter(f"sources must be names from {', '.join(SOURCES)}") from exc
    bad = [s for s in sources if s not in SOURCES]
    if bad or not sources or len(set(sources)) != len(sources):
        raise InvalidParameter(
            f"time sources must be distinct names from {', '.join(SOURCES)}, "
            f"got {', '.join(map(str, sources)) or 'none'}"
        )
    return sources


def capture_problem(fields):
    """Why a stored capture tuple is malformed, or an empty string (for the store's checks)."""
    if type(fields) is not tuple or len(fields) != len(Capture._fields):
        return "capture: wrong shape"
    for k in (0, 2, 4):
        wall, offset = fields[k], fields[k + 1]
        if wall is not None and (type(wall) is not float or not abs(wall) < 1e12):
            return "capture: bad time"
        if offset is not None and (type(offset) is not int or abs(offset) > 86400):
            return "capture: bad offset"
    lat, lon = fields[6], fields[7]
    if (lat is None) != (lon is None):
        return "capture: half a position"
    if lat is not None and not (type(lat) is type(lon) is float and abs(lat) <= 90 and abs(lon) <= 180):
        return "capture: bad position"
    return ""


# ----------------------------------------------------------------- reading


def _read(f):
    head = f.read(16)
    if head[:2] == b"\xff\xd8":
        return _from_tiff_bytes(jpeg_app1(f, 0))
    if head[:4] in TIFF_MAGIC:
        return _from_tiff(FileSource(f), 0)
    if head.startswith(b"FUJIFILMCCD-RAW"):
        f.seek(84)
        (offset,) = struct.unpack(">I", f.read(4))
        return _from_tiff_bytes(jpeg_app1(f, offset))
    return _from_pillow(f)


def _from_pillow(f):
    """PNG, WebP, HEIC, GIF, ...: the EXIF block Pillow reads while opening (no pixel decode)."""
    from PIL import Image

    f.seek(0)
    with Image.open(f) as im:
        exif = im.info.get("exif")
    if isinstance(exif, bytes) and exif.startswith(b"Exif\x00"):
        exif = exif[6:]
    return _from_tiff_bytes(exif if isinstance(exif, bytes) else None)


def _from_tiff_bytes(data):
    if not data or data[:4] not in TIFF_MAGIC:
        return EMPTY
    return _from_tiff(BytesSource(data), 0)


def _from_tiff(src, base):
    head = src.read(base, 8)
    if len(head) < 8:
        return EMPTY
    endian = "<" if head[:2] == b"II" else ">"
    reader = IfdReader(src, base, endian)
    ifd0 = reader.entries(struct.unpack(endian + "I", head[4:8])[0])
    walls, offsets, subsecs = {}, {}, {}
    walls["datetime"] = reader.ascii(ifd0.get(_DATETIME))
    exif = reader.entries(reader.pointer(ifd0.get(_EXIF_IFD)))
    walls["original"] = reader.ascii(exif.get(_ORIGINAL))
    walls["digitized"] = reader.ascii(exif.get(_DIGITIZED))
    for tag, name in _OFFSETS.items():
        offsets[name] = _parse_offset(reader.ascii(exif.get(tag)))
    for tag, name in _SUBSECS.items():
        subsecs[name] = reader.ascii(exif.get(tag))
    gps = reader.entries(reader.pointer(ifd0.get(_GPS_IFD)))
    lat = _coordinate(reader.rationals(gps.get(2)), reader.ascii(gps.get(1)), b"S", 90.0)
    lon = _coordinate(reader.rationals(gps.get(4)), reader.ascii(gps.get(3)), b"W", 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):  # 0/0: a receiver without a fix
        lat = lon = None
    fields = {}
    for name in ("original", "digitized", "datetime"):
        wall = _parse_time(walls[name], subsecs[name])
        fields[name] = wall
        fields[f"{name}_offset"] = offsets[name] if wall is not None else None
    return Capture(**fields, lat=lat, lon=lon)


def _parse_time(text, subsec):
    if not text:
        return None
    m = _TIME.search(text)
    if m is None:
        return None
    try:
        year, month, day, hour, minute, second = map(int, m.groups())
        moment = _dt.datetime(year, month, day, hour, minute, second)
    except ValueError:  # "0000:00:00 00:00:00", a 13th month, ...
        return None
    seconds = (moment - _EPOCH).total_seconds()
    digits = re.match(rb"\s*(\d{1,9})", subsec or b"")
    if digits:
        seconds += int(digits.group(1)) / 10 ** len(digits.group(1))
    return float(seconds)


def _parse_offset(text):
    m = _OFFSET.search(text or b"")
    if m is None:
        return None
    sign, hours, minutes = m.groups()
    seconds = int(hours) * 3600 + int(minutes) * 60
    if int(hours) > 14 or int(minutes) >= 60:
        return None
    return -seconds if sign == b"-" else seconds


def _coordinate(rationals, ref, negative, limit):
    """Degrees from one to three (numerator, denominator) pairs, or None when garbled or out of range."""
    if not rationals:
        return None
    value = 0.0
    for (num, den), scale in zip(rationals, (1.0, 60.0, 3600.0)):
        if den == 0:
            if num == 0 and scale != 1.0:
                continue  # some writers store an unused minutes/seconds part as 0/0
            return None
        value += num / den / scale
    ref = (ref or b"").strip(b"\x00 ")[:1].upper()
    if ref == negative:
        value = -abs(value)
    if not math.isfinite(value) or abs(value) > limit:
        return None
    return round(value, 7)
