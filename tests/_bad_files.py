"""A library of real bad, odd and special files among good photos, for tests/test_bad_files.py.

Each maker writes one kind of file. The kinds fall in three groups:

* ``BROKEN``: cannot be a photo; the run must skip it and say why (the
  reason is matched as a regular expression);
* ``ODD``: valid but unusual photos (16-bit, CMYK, EXIF-rotated, odd names,
  ...): they must be read and cluster like any photo;
* ``IGNORED``: not photos of the library by design, so neither fingerprinted
  nor listed: symlinks (never followed) and a folder named like a photo
  (searched like any folder).
"""

import hashlib
import io
import os
import random
import socket
import stat
import struct
import zlib

import numpy as np
from PIL import Image

from _support.photos import DATA, camera_moved


def jpeg_bytes(image, **options):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88, **options)
    return buffer.getvalue()


def png_chunk(kind, data, *, crc=None):
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bomb(width, height):
    """A PNG of a few dozen bytes that declares ``width`` x ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")
    )


def jpeg_bomb(width, height):
    """A small real JPEG whose frame header claims ``width`` x ``height`` pixels."""
    data = bytearray(jpeg_bytes(Image.new("RGB", (16, 16), (200, 30, 30))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bad_crc_png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[29:33] = bytes(b ^ 0xFF for b in data[29:33])  # the IHDR chunk's CRC
    return bytes(data)


def corrupt_exif_jpeg(image):
    """A JPEG whose EXIF block (APP1) is garbage after a valid-looking TIFF header."""
    rng = random.Random(7)
    payload = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + bytes(rng.randrange(256) for _ in range(200))
    data = jpeg_bytes(image)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def shot(source, seed):
    return camera_moved(DATA / source, seed)


def make_corpus(lib):
    """Write the corpus into ``lib``; returns (good, broken, ignored, sock).

    good : dict of relative name (str) -> bytes, the photos that must be read
    broken : dict of relative name -> reason pattern
    ignored : list of relative names
    sock : the socket bound to ``bad/socket.jpg``; the caller closes it
    """
    lib.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    good, broken, ignored = {}, {}, []

    def put(name, data, table=good, reason=None):
        path = lib / os.fsdecode(name) if isinstance(name, bytes) else lib / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        key = os.fsdecode(name) if isinstance(name, bytes) else name
        if table is good:
            good[key] = data
        else:
            broken[key] = reason
        return path

    # Good photos: three shots of a dog, three of a cat.
    for i in range(3):
        put(f"2023/dog_{i}.jpg", jpeg_bytes(shot("dog.jpg", i)))
        put(f"2024/cat_{i}.jpg", jpeg_bytes(shot("cat.jpg", 10 + i)))

    # ODD: valid photos in unusual shapes and names.
    dog, cat = shot("dog.jpg", 20), shot("cat.jpg", 21)
    grey16 = (np.asarray(dog.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    buffers = {}
    for name, image, options in [
        ("odd/grey16.png", Image.fromarray(grey16), {}),
        ("odd/bilevel.png", dog.convert("1"), {}),
        ("odd/palette_alpha.png", cat.convert("P", palette=Image.ADAPTIVE, colors=64), {"transparency": 0}),
        ("odd/cmyk.jpg", cat.convert("CMYK"), {"quality": 90}),
        ("odd/grey.jpg", dog.convert("L"), {"quality": 90}),
        ("odd/animated.gif", cat, {"save_all": True, "append_images": [dog], "duration": 100, "loop": 0}),
        ("odd/pages.tif", dog, {"save_all": True, "append_images": [cat]}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, Image.registered_extensions()[os.path.splitext(name)[1]], **options)
        buffers[name] = buffer.getvalue()
        put(name, buffers[name])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; shown after a quarter turn clockwise
    put("odd/rotated.jpg", jpeg_bytes(shot("cat.jpg", 22).transpose(Image.Transpose.ROTATE_90), exif=exif))
    put("odd/bad_exif.jpg", corrupt_exif_jpeg(shot("dog.jpg", 23)))
    put("names/dog on the beach.jpg", jpeg_bytes(shot("dog.jpg", 30)))
    put("names/Ålesund – čaj 猫.jpg", jpeg_bytes(shot("cat.jpg", 31)))
    put("names/new\nline.jpg", jpeg_bytes(shot("dog.jpg", 32)))
    put(b"names/caf\xe9 latin-1.jpg", jpeg_bytes(shot("cat.jpg", 33)))
    put("names/" + "x" * 251 + ".jpg", jpeg_bytes(shot("dog.jpg", 34)))  # 255 bytes, the longest name

    # BROKEN: no photo in them.
    whole = jpeg_bytes(shot("dog.jpg", 40))
    put("bad/empty.jpg", b"", broken, "not an image Pillow can read")
    put("bad/half.jpg", whole[: len(whole) // 2], broken, "damaged or truncated")
    put("bad/header_only.jpg", whole[:200], broken, "damaged or truncated|not an image")
    put("bad/notes.jpg", b"shopping list: milk, eggs\n" * 20, broken, "not an image Pillow can read")
    put("bad/noise.png", bytes(rng.randrange(256) for _ in range(5000)), broken, "not an image Pillow can read")
    put("bad/bad_crc.png", bad_crc_png(dog), broken, "not an image Pillow can read")
    buffer = io.BytesIO()
    cat.save(buffer, "PNG")
    put("bad/half.png", buffer.getvalue()[: len(buffer.getvalue()) // 2], broken, "damaged or truncated")
    put("bad/half.tif", buffers["odd/pages.tif"][:3000], broken, "damaged or truncated|not an image")
    put("bad/text.webp", b"RIFF\x10\x00\x00\x00WEBPnothing", broken, "not an image|damaged")
    put("bad/header.gif", b"GIF89a", broken, "not an image|damaged or truncated")
    put("bad/bomb.png", png_bomb(40_000, 40_000), broken, "too many pixels")
    put("bad/bomb.jpg", jpeg_bomb(40_000, 40_000), broken, "too many pixels")
    put("bad/noise.dng", bytes(rng.randrange(256) for _ in range(5000)), broken, "not a RAW file|LibRaw")
    put("bad/empty.nef", b"", broken, "empty file|not a RAW file|LibRaw")
    put(b"bad/broken\nname \xff.jpg", b"", broken, "not an image Pillow can read")
    os.mkfifo(lib / "bad" / "pipe.jpg")
    broken["bad/pipe.jpg"] = r"not a regular file \(FIFO\)"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.fspath(lib / "bad" / "socket.jpg"))
    broken["bad/socket.jpg"] = r"not a regular file \(socket\)"
    try:
        os.mknod(lib / "bad" / "device.jpg", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
        broken["bad/device.jpg"] = r"not a regular file \(character device\)"
    except PermissionError:  # not root, or a container without CAP_MKNOD: one kind fewer
        pass
    locked = put("bad/locked.jpg", jpeg_bytes(shot("cat.jpg", 41)))
    locked.chmod(0)
    if not os.access(locked, os.R_OK):  # root reads it anyway: then it is a good photo
        del good["bad/locked.jpg"]
        broken["bad/locked.jpg"] = "permission denied"

    # IGNORED: symlinks are not followed; a folder is searched, whatever its name.
    os.symlink(lib / "bad" / "gone.jpg", lib / "bad" / "dangling.jpg")
    os.symlink(lib / "bad" / "loop_b.jpg", lib / "bad" / "loop_a.jpg")
    os.symlink(lib / "bad" / "loop_a.jpg", lib / "bad" / "loop_b.jpg")
    os.symlink(lib / "2023" / "dog_0.jpg", lib / "bad" / "link_to_a_photo.jpg")
    (lib / "bad" / "folder.jpg").mkdir()
    ignored += ["bad/dangling.jpg", "bad/loop_a.jpg", "bad/loop_b.jpg", "bad/link_to_a_photo.jpg", "bad/folder.jpg"]
    return good, broken, ignored, sock


def disk_state(lib):
    """Every entry below ``lib`` (but the store, the tree and its gallery) by kind, mode and content.

    Never opens a special file.
    """
    found = {}
    for dirpath, dirnames, filenames in os.walk(lib):
        dirnames[:] = [d for d in dirnames if d not in (".imagecluster", "clusters", "clusters-gallery")]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and os.access(path, os.R_OK):  # root reads even the mode-000 file
                with open(path, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISREG(st.st_mode):
                content = (st.st_size, st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            found[os.path.relpath(path, lib)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), content)
    return found


def tree_clusters(lib):
    """The clusters the tree ``lib/clusters`` holds, as sets of paths relative to ``lib``."""
    lib = lib.resolve()
    groups = set()
    for dirpath, _, filenames in os.walk(lib / "clusters"):
        links = [os.path.join(dirpath, f) for f in filenames if os.path.islink(os.path.join(dirpath, f))]
        if links:
            groups.add(frozenset(os.path.relpath(os.readlink(link), lib) for link in links))
    return groups


def write_photos(folder, photos):
    """Write ``{relative name: bytes}`` below ``folder`` (the good photos alone, for a control run)."""
    for name, data in photos.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder
