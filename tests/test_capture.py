"""Capture time and GPS position from photo headers, and their store records.

Issue 14 part 1; RAW files: issue 16 part 6.

Photos are real JPEGs (the packaged test photos) with EXIF written by
``piexif``, and real DNGs written by ``tests/_dng.py`` with an Exif and a GPS
directory, read back by the header reader; nothing is mocked.
"""

import datetime as dt
import os
import pickle
import shutil
from pathlib import Path

import piexif
import pytest
from PIL import Image

from imagecluster import InvalidParameter, Store
from imagecluster._capture import EMPTY, Capture, capture_time, check_sources, read_capture

from _dng import write_dng

DATA = Path(__file__).parent / "data"
EXIF_EPOCH = dt.datetime(1970, 1, 1)


def wall(text):
    """Wall-clock seconds (the Capture convention) of 'YYYY-MM-DD HH:MM:SS'."""
    return (dt.datetime.fromisoformat(text) - EXIF_EPOCH).total_seconds()


def rational(value):
    return (round(value * 10000), 10000)


def dms(value):
    deg = int(value)
    minutes = int((value - deg) * 60)
    seconds = (value - deg - minutes / 60) * 3600
    return ((deg, 1), (minutes, 1), rational(seconds))


def jpeg(path, *, zeroth=None, exif=None, gps=None, source="dog.jpg"):
    """A real JPEG with the given EXIF directories (piexif dicts)."""
    data = piexif.dump({"0th": zeroth or {}, "Exif": exif or {}, "GPS": gps or {}})
    with Image.open(DATA / source) as im:
        im.convert("RGB").save(path, quality=85, exif=data)
    return path


def gps_ifd(lat, lon):
    return {
        piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
        piexif.GPSIFD.GPSLatitude: dms(abs(lat)),
        piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
        piexif.GPSIFD.GPSLongitude: dms(abs(lon)),
    }


# ------------------------------------------------------------------ times


def test_original_time_with_sub_seconds_and_offset(tmp_path):
    path = jpeg(tmp_path / "a.jpg", exif={
        piexif.ExifIFD.DateTimeOriginal: b"2024:05:01 12:34:56",
        piexif.ExifIFD.SubSecTimeOriginal: b"25",
        piexif.ExifIFD.OffsetTimeOriginal: b"+02:00",
    })
    c = read_capture(path)
    assert c.original == wall("2024-05-01 12:34:56") + 0.25
    assert c.original_offset == 7200
    t = capture_time(c, os.stat(path).st_mtime_ns)
    assert t.source == "original"
    assert t.timestamp == dt.datetime(2024, 5, 1, 10, 34, 56, 250000, tzinfo=dt.timezone.utc).timestamp()


def test_negative_offset_and_three_digit_sub_seconds(tmp_path):
    path = jpeg(tmp_path / "a.jpg", exif={
        piexif.ExifIFD.DateTimeOriginal: b"2023:12:31 23:59:59",
        piexif.ExifIFD.SubSecTimeOriginal: b"125",
        piexif.ExifIFD.OffsetTimeOriginal: b"-05:30",
    })
    t = capture_time(read_capture(path), None)
    assert t.timestamp == dt.datetime(2024, 1, 1, 5, 29, 59, 125000, tzinfo=dt.timezone.utc).timestamp()


def test_a_time_without_offset_is_local_time(tmp_path):
    path = jpeg(tmp_path / "a.jpg", exif={piexif.ExifIFD.DateTimeOriginal: b"2024:07:14 08:00:00"})
    t = capture_time(read_capture(path), None)
    assert t.timestamp == dt.datetime(2024, 7, 14, 8, 0, 0).timestamp()  # naive = this machine's local time
    assert t.wall == wall("2024-07-14 08:00:00")


def test_fallbacks_digitized_then_datetime_then_mtime(tmp_path):
    digitized = jpeg(tmp_path / "d.jpg", zeroth={piexif.ImageIFD.DateTime: b"2024:01:02 00:00:00"},
                     exif={piexif.ExifIFD.DateTimeDigitized: b"2024:01:01 00:00:00"})
    only_datetime = jpeg(tmp_path / "t.jpg", zeroth={piexif.ImageIFD.DateTime: b"2024:01:02 00:00:00"})
    nothing = jpeg(tmp_path / "n.jpg")
    os.utime(nothing, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert capture_time(read_capture(digitized), 0).source == "digitized"
    assert capture_time(read_capture(only_datetime), 0).source == "datetime"
    t = capture_time(read_capture(nothing), os.stat(nothing).st_mtime_ns)
    assert (t.source, t.timestamp) == ("mtime", 1_700_000_000.0)
    # Configurable: without the file time, a photo without EXIF has no time; the order is the caller's.
    assert capture_time(read_capture(nothing), os.stat(nothing).st_mtime_ns, ("original", "digitized")) is None
    assert capture_time(read_capture(digitized), 0, ("datetime", "digitized")).source == "datetime"


@pytest.mark.parametrize("text", [b"0000:00:00 00:00:00", b"    :  :     :  :  ", b"2024:13:40 25:61:00", b"garbage"])
def test_garbled_times_are_absent(tmp_path, text):
    path = jpeg(tmp_path / "a.jpg", exif={piexif.ExifIFD.DateTimeOriginal: text,
                                          piexif.ExifIFD.OffsetTimeOriginal: b"+99:99"})
    c = read_capture(path)
    assert c.original is None and c.original_offset is None


def test_check_sources():
    assert check_sources("original,mtime") == ("original", "mtime")
    for bad in ("original,exif", "", ["mtime", "mtime"]):
        with pytest.raises(InvalidParameter):
            check_sources(bad)


# -------------------------------------------------------------------- GPS


def test_gps_position_north_east_and_south_west(tmp_path):
    c = read_capture(jpeg(tmp_path / "a.jpg", gps=gps_ifd(48.8584, 2.2945)))
    assert c.lat == pytest.approx(48.8584, abs=1e-5) and c.lon == pytest.approx(2.2945, abs=1e-5)
    c = read_capture(jpeg(tmp_path / "b.jpg", gps=gps_ifd(-33.8568, -70.6483)))
    assert c.lat == pytest.approx(-33.8568, abs=1e-5) and c.lon == pytest.approx(-70.6483, abs=1e-5)


def test_gps_as_decimal_degrees_in_one_rational(tmp_path):
    gps = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((4785, 100),),
           piexif.GPSIFD.GPSLongitudeRef: b"W", piexif.GPSIFD.GPSLongitude: ((12250, 100), (0, 0), (0, 0))}
    c = read_capture(jpeg(tmp_path / "a.jpg", gps=gps))
    assert (c.lat, c.lon) == (47.85, -122.5)


@pytest.mark.parametrize("lat, lon", [
    (((0, 1), (0, 1), (0, 1)), ((0, 1), (0, 1), (0, 1))),  # 0/0: a receiver without a fix
    (((45, 0), (0, 1), (0, 1)), ((7, 1), (0, 1), (0, 1))),  # a zero denominator
    (((95, 1), (0, 1), (0, 1)), ((7, 1), (0, 1), (0, 1))),  # latitude out of range
    (((45, 1), (0, 1), (0, 1)), ((181, 1), (0, 1), (0, 1))),  # longitude out of range
])
def test_corrupt_gps_is_absent_and_the_time_is_kept(tmp_path, lat, lon):
    gps = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: lat,
           piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: lon}
    c = read_capture(jpeg(tmp_path / "a.jpg", gps=gps, exif={piexif.ExifIFD.DateTimeOriginal: b"2024:05:01 12:00:00"}))
    assert (c.lat, c.lon) == (None, None)
    assert c.original == wall("2024-05-01 12:00:00")


def test_gps_with_a_latitude_only_is_absent(tmp_path):
    gps = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: dms(45.5)}
    assert read_capture(jpeg(tmp_path / "a.jpg", gps=gps)).has_gps is False


# ------------------------------------------------------- other containers


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_png_webp_and_tiff_carry_exif_too(tmp_path, fmt):
    data = piexif.dump({"Exif": {piexif.ExifIFD.DateTimeOriginal: b"2022:02:02 02:02:02"}, "GPS": gps_ifd(10.5, 20.25)})
    path = tmp_path / f"a.{fmt.lower()}"
    with Image.open(DATA / "cat.jpg") as im:
        im.save(path, fmt, exif=data)
    c = read_capture(path)
    assert c.original == wall("2022-02-02 02:02:02") and c.lat == pytest.approx(10.5)


def dng_with_exif(path, *, magic=None):
    exif = [(0x9003, 2, b"2021:08:15 18:30:05\0"), (0x9291, 2, b"5\0"), (0x9011, 2, b"+09:00\0")]
    gps = [(1, 2, b"N\0"), (2, 5, [35, 1, 39, 1, 2940, 100]), (3, 2, b"E\0"), (4, 5, [139, 1, 42, 1, 1800, 100])]
    with Image.open(DATA / "dog.jpg") as im:
        write_dng(path, im.convert("RGB"), exif=exif, gps=gps)
    if magic:
        with open(path, "r+b") as f:
            f.write(magic)
    return path


def test_raw_capture_time_and_gps_from_a_dng(tmp_path):
    c = read_capture(dng_with_exif(tmp_path / "IMG_0001.dng"))
    assert c.original == wall("2021-08-15 18:30:05") + 0.5 and c.original_offset == 9 * 3600
    assert c.lat == pytest.approx(35 + 39 / 60 + 29.4 / 3600, abs=1e-6)
    assert c.lon == pytest.approx(139 + 42 / 60 + 18 / 3600, abs=1e-6)
    # the DNG is a real RAW: LibRaw reads it (the same file the header reader read)
    import rawpy

    with rawpy.imread(os.fspath(tmp_path / "IMG_0001.dng")) as raw:
        assert raw.sizes.raw_width > 0


@pytest.mark.parametrize("suffix, magic", [(".orf", b"IIRO"), (".rw2", b"IIU\x00")])
def test_raws_with_their_own_tiff_magic(tmp_path, suffix, magic):
    """Olympus and Panasonic files are TIFF directories behind a magic of their own."""
    c = read_capture(dng_with_exif(tmp_path / f"IMG{suffix}", magic=magic))
    assert c.original == wall("2021-08-15 18:30:05") + 0.5 and c.has_gps


def test_a_raw_without_exif_falls_back_to_its_file_time(tmp_path):
    path = tmp_path / "IMG.dng"
    with Image.open(DATA / "dog.jpg") as im:
        write_dng(path, im.convert("RGB"))
    c = read_capture(path)
    assert c == EMPTY
    assert capture_time(c, os.stat(path).st_mtime_ns).source == "mtime"


# ----------------------------------------------------------- bad files


def test_broken_files_give_empty_captures_never_errors(tmp_path):
    good = jpeg(tmp_path / "good.jpg", exif={piexif.ExifIFD.DateTimeOriginal: b"2024:05:01 12:00:00"},
                gps=gps_ifd(1.5, 2.5))
    data = good.read_bytes()
    cases = {
        "empty.jpg": b"",
        "random.jpg": os.urandom(5000),
        "cut.jpg": data[:30],
        "fake.nef": b"II*\x00" + b"\xff" * 100,
        "loop.tif": b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + b"\x69\x87\x04\x00\x01\x00\x00\x00\x08\x00\x00\x00",
        "raf.raf": b"FUJIFILMCCD-RAW " + b"\x00" * 68 + b"\xff\xff\xff\x00",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert read_capture(tmp_path / name) == EMPTY, name
    # Flip bytes inside the EXIF block: whatever survives is well-formed, nothing raises.
    for at in range(20, 400, 7):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        (tmp_path / "damaged.jpg").write_bytes(bytes(damaged))
        c = read_capture(tmp_path / "damaged.jpg")
        assert isinstance(c, Capture)
        assert c.lat is None or (abs(c.lat) <= 90 and abs(c.lon) <= 180)
    assert read_capture(tmp_path / "missing.jpg") == EMPTY
    os.mkfifo(tmp_path / "fifo.jpg")
    assert read_capture(tmp_path / "fifo.jpg") == EMPTY  # refused without opening: no hang


def test_the_reader_reads_the_header_only(tmp_path):
    """A JPEG whose pixel data is cut away still gives its capture data: the pixels are never read."""
    good = jpeg(tmp_path / "good.jpg", exif={piexif.ExifIFD.DateTimeOriginal: b"2024:05:01 12:00:00"})
    data = good.read_bytes()
    sos = data.index(b"\xff\xda")
    (tmp_path / "head.jpg").write_bytes(data[: sos + 2])
    assert read_capture(tmp_path / "head.jpg").original == wall("2024-05-01 12:00:00")


# ------------------------------------------------------------------ store


CAPTURE = Capture(original=wall("2024-05-01 12:00:00"), original_offset=3600, lat=45.0, lon=7.5)


def test_the_store_keeps_captures_through_journal_and_snapshot(tmp_path):
    store = Store(tmp_path)
    store.put("lite0", [("a.jpg", 10, 20, [1.0, 0.0])])
    store.put_captures([("a.jpg", 10, 20, CAPTURE), ("b.jpg", 5, 6, EMPTY)])
    assert Store(tmp_path).captures()["a.jpg"] == (10, 20, CAPTURE)  # from the journal
    store.compact()
    fresh = Store(tmp_path)
    assert fresh.captures() == {"a.jpg": (10, 20, CAPTURE), "b.jpg": (5, 6, EMPTY)}  # from the snapshot
    journal = tmp_path / ".imagecluster" / "journal.pk"
    size = journal.stat().st_size
    fresh.put_captures([("a.jpg", 10, 20, CAPTURE)])  # nothing new: nothing written
    assert journal.stat().st_size == size
    store.move("a.jpg", "sub/a.jpg")
    store.remove(["b.jpg"])
    assert Store(tmp_path).captures() == {"sub/a.jpg": (10, 20, CAPTURE)}
    store.remove(["sub/a.jpg"], model="lite0")  # one model's fingerprint: the file's capture data stays
    assert "sub/a.jpg" in Store(tmp_path).captures()


def test_a_store_written_without_captures_loads_unchanged(tmp_path):
    store = Store(tmp_path)
    store.put("lite0", [("a.jpg", 10, 20, [1.0, 0.0])])
    store.compact()
    snapshot = tmp_path / ".imagecluster" / "fingerprints.pk"
    with open(snapshot, "rb") as f:
        assert "captures" not in pickle.load(f)
    again = Store(tmp_path)
    assert again.captures() == {} and again.entries("lite0")["a.jpg"] == (10, 20)
    again.put_captures([("a.jpg", 10, 20, CAPTURE)])
    again.compact()
    assert Store(tmp_path).entries("lite0")["a.jpg"] == (10, 20)


def test_bad_capture_data_is_refused(tmp_path):
    store = Store(tmp_path)
    for bad in (Capture(lat=91.0, lon=0.0), Capture(lat=1.0), Capture(original=float("nan")), ("x",)):
        with pytest.raises(InvalidParameter):
            store.put_captures([("a.jpg", 1, 2, bad)])


def test_a_tampered_capture_snapshot_is_set_aside(tmp_path, caplog):
    lib = tmp_path / "lib"
    lib.mkdir()
    store = Store(lib)
    store.put("lite0", [("a.jpg", 10, 20, [1.0, 0.0])])
    store.put_captures([("a.jpg", 10, 20, CAPTURE)])
    store.compact()
    snapshot = lib / ".imagecluster" / "fingerprints.pk"
    with open(snapshot, "rb") as f:
        obj = pickle.load(f)
    obj["captures"]["fields"][0] = (1.0, "+01:00", None, None, None, None, None, None)
    with open(snapshot, "wb") as f:
        pickle.dump(obj, f)
    assert Store(lib).captures() == {}  # the damaged store is moved aside and rebuilt, never trusted
    assert list((lib / ".imagecluster").glob("damaged-*"))
    shutil.rmtree(lib / ".imagecluster")
