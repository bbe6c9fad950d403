"""Reading TIFF directories and a JPEG's EXIF segment from untrusted files, within bounds.

The EXIF block of a JPEG, and TIFF and the TIFF-based RAW formats, are TIFF
directories: entries of (tag, type, count, value or offset). This reader
fetches only the entries and the values asked for, accepts every RAW's
byte-order magic (:data:`TIFF_MAGIC`), reads at most ``_MAX_READ`` bytes of
a file, ``_MAX_ENTRIES`` entries of a directory and ``_MAX_SEGMENTS`` JPEG
markers, never follows a directory twice, and never raises for garbled data:
a bad offset or type reads as absent. What the tags mean is the caller's
(:mod:`imagecluster._capture`).
"""

import os
import struct

__all__ = ["TIFF_MAGIC", "BytesSource", "FileSource", "IfdReader", "jpeg_app1"]

#: The first four bytes of a TIFF header: little and big endian, and the RAW variants (Olympus, Panasonic).
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")
_MAX_READ = 1 << 20  # bytes read from a file in all: headers are small, a hostile file must not make us read more
_MAX_ENTRIES = 1000  # entries per directory
_MAX_SEGMENTS = 64  # JPEG markers before giving up on finding APP1
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}  # bytes per value of each TIFF type


def jpeg_app1(f, start):
    """The TIFF bytes of a JPEG's ``Exif`` APP1 segment starting at file offset ``start``, or None."""
    f.seek(start)
    if f.read(2) != b"\xff\xd8":
        return None
    for _ in range(_MAX_SEGMENTS):
        marker = f.read(2)
        while marker[:1] == b"\xff" and marker[1:] == b"\xff":  # fill bytes
            marker = marker[1:] + f.read(1)
        if len(marker) < 2 or marker[0] != 0xFF or marker[1] in (0xD9, 0xDA):
            return None  # end of image or start of the pixels: no EXIF before them
        if 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0x01:
            continue  # markers without a length
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0] - 2
        if length < 0:
            return None
        if marker[1] == 0xE1:
            data = f.read(length)
            if data.startswith(b"Exif\x00"):
                return data[6:]
        else:
            f.seek(length, os.SEEK_CUR)
    return None


class BytesSource:
    """Reads at offsets of bytes already in memory (a JPEG's EXIF segment)."""

    def __init__(self, data):
        self.data = data

    def read(self, offset, n):
        return self.data[offset : offset + n] if offset >= 0 else b""


class FileSource:
    """Reads at offsets of a seekable file, at most ``_MAX_READ`` bytes in all."""

    def __init__(self, f):
        self.f = f
        self.budget = _MAX_READ

    def read(self, offset, n):
        if offset < 0 or n > self.budget:
            return b""
        self.f.seek(offset)
        data = self.f.read(n)
        self.budget -= len(data)
        return data


class IfdReader:
    """Reads TIFF directories (entries only; values fetched on demand)."""

    def __init__(self, src, base, endian):
        self.src, self.base, self.endian = src, base, endian
        self.seen = set()

    def entries(self, offset):
        """``{tag: (type, count, value_or_offset_bytes)}``; empty for a bad or already read directory."""
        if not offset or offset in self.seen:
            return {}
        self.seen.add(offset)
        raw = self.src.read(self.base + offset, 2)
        if len(raw) < 2:
            return {}
        (n,) = struct.unpack(self.endian + "H", raw)
        table = self.src.read(self.base + offset + 2, 12 * min(n, _MAX_ENTRIES))
        found: dict[int, tuple[int, int, bytes]] = {}
        for k in range(len(table) // 12):
            tag, typ, count = struct.unpack_from(self.endian + "HHI", table, 12 * k)
            found.setdefault(tag, (typ, count, table[12 * k + 8 : 12 * k + 12]))
        return found

    def _value(self, entry, types, max_count):
        if entry is None:
            return None, 0
        typ, count, inline = entry
        if typ not in types or not 0 < count <= max_count:
            return None, 0
        size = _TYPE_SIZES[typ] * count
        if size <= 4:
            return inline[:size], typ
        (offset,) = struct.unpack(self.endian + "I", inline)
        data = self.src.read(self.base + offset, size)
        return (data, typ) if len(data) == size else (None, 0)

    def pointer(self, entry):
        data, typ = self._value(entry, (4, 13), 1)
        return struct.unpack(self.endian + "I", data)[0] if data else None

    def ascii(self, entry):
        data, _ = self._value(entry, (2, 7, 1), 64)
        return data

    def rationals(self, entry):
        data, typ = self._value(entry, (5, 10), 3)
        if not data:
            return None
        values = struct.unpack(f"{self.endian}{len(data) // 4}{'I' if typ == 5 else 'i'}", data)
        return list(zip(values[0::2], values[1::2]))
