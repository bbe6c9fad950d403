"""Real JPEGs with EXIF capture times and GPS positions (written with piexif), for the events tests."""

import os
from pathlib import Path

import piexif
from PIL import Image, ImageEnhance

DATA = Path(__file__).parent / "data"
TURIN, PARIS = (45.07, 7.69), (48.86, 2.35)


def exif_photo(lib, name, source, seed, when=None, gps=None, mtime=None, offset=b"+02:00"):
    """Write ``lib/name``: a variant of a packaged test photo with DateTimeOriginal ``when`` and GPS ``gps``.

    ``when`` is ``"YYYY:MM:DD HH:MM:SS"`` (None: no EXIF time), ``gps`` (lat, lon) north/east (None: no GPS),
    ``mtime`` the file time to set (seconds).
    """
    with Image.open(DATA / source) as im:
        shot = ImageEnhance.Brightness(im.convert("RGB").rotate(seed % 3 - 1)).enhance(1 + seed / 50)
    exif = {}
    if when:
        exif["Exif"] = {piexif.ExifIFD.DateTimeOriginal: when.encode()}
        if offset:
            exif["Exif"][piexif.ExifIFD.OffsetTimeOriginal] = offset
    if gps:
        exif["GPS"] = {1: b"N", 2: ((round(gps[0] * 1e6), 1000000),), 3: b"E", 4: ((round(gps[1] * 1e6), 1000000),)}
    path = Path(lib) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shot.save(path, quality=88, exif=piexif.dump(exif) if exif else b"")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def two_cities(lib):
    """Six photos: Turin (2 + 1 without GPS) and Paris (2) on one day, and a scan without EXIF in 2027."""
    exif_photo(lib, "turin/1.jpg", "dog.jpg", 1, "2024:05:01 10:00:00", TURIN)
    exif_photo(lib, "turin/2.jpg", "dog.jpg", 2, "2024:05:01 11:00:00", TURIN)
    exif_photo(lib, "turin/3.jpg", "dog.jpg", 3, "2024:05:01 11:30:00")  # no GPS: joins Turin (time, content)
    exif_photo(lib, "paris/1.jpg", "cat.jpg", 4, "2024:05:01 10:30:00", PARIS)  # same day, another city
    exif_photo(lib, "paris/2.jpg", "cat.jpg", 5, "2024:05:01 12:30:00", PARIS)
    exif_photo(lib, "scan.jpg", "cat.jpg", 6, mtime=1_800_000_000)  # no EXIF at all: the file time
    return ["2024-05-01_45.07N_7.69E", "2024-05-01_48.86N_2.35E", "2027-01-15_003"]
