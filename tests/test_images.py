"""imagecluster.images: discovery and fast decoding of real image files."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagecluster import LibraryNotFound, NotAnImage
from imagecluster.images import STORE_DIRNAME, TREE_MARKER, find_images, is_image_name, load_image


def halves(width, height, left=(255, 0, 0), right=(0, 0, 255)):
    """An image whose left half is one colour and right half another."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = left
    array[:, width // 2 :] = right
    return Image.fromarray(array)


def test_large_jpeg_decodes_small_and_faithfully(tmp_path):
    path = tmp_path / "camera.jpg"
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 4000, dtype=np.float32)[None, :, None] * np.ones((3000, 1, 3))
    noisy = np.clip(gradient + rng.normal(0, 8, gradient.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path, quality=90)
    got = load_image(path, 224)
    assert got.shape == (224, 224, 3) and got.dtype == np.uint8
    with Image.open(path) as im:
        full = np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
    assert np.abs(got - full).mean() < 4  # same picture as a full decode


def test_draft_keeps_decoded_size_near_target(tmp_path):
    path = tmp_path / "camera.jpg"
    Image.new("RGB", (4000, 3000), (90, 120, 30)).save(path)
    with Image.open(path) as im:
        im.draft("RGB", (224, 224))
        assert im.size == (500, 375)  # 1/8 scale in the DCT domain, not 12 MP


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    halves(300, 200).save(path, exif=exif, quality=95)
    got = load_image(path, 224)
    assert got[20, 112, 0] > 200 and got[20, 112, 2] < 60  # red on top
    assert got[200, 112, 2] > 200 and got[200, 112, 0] < 60  # blue below


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif", ".bmp", ".gif"])
def test_formats(tmp_path, suffix):
    path = tmp_path / f"photo{suffix}"
    halves(64, 48).save(path)
    got = load_image(path, 32)
    assert got.shape == (32, 32, 3)
    assert got[16, 2, 0] > 200 and got[16, 29, 2] > 200


def test_gif_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (40, 40), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert tuple(load_image(path, 16)[8, 8]) == (255, 0, 0)


def test_transparency_becomes_white(tmp_path):
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(path)
    assert load_image(path, 8).min() == 255


def test_16_bit_greyscale(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(path)
    assert load_image(path, 8).shape == (8, 8, 3)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"this is a text file, not a photo", "not an image"),
        (b"", "not an image"),
        ("truncated", "truncated"),
    ],
)
def test_broken_files_raise_not_an_image(tmp_path, content, reason):
    path = tmp_path / "broken.jpg"
    if content == "truncated":
        halves(400, 300).save(tmp_path / "whole.jpg")
        content = (tmp_path / "whole.jpg").read_bytes()[:2000]
    path.write_bytes(content)
    with pytest.raises(NotAnImage, match=reason):
        load_image(path, 32)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(NotAnImage, match="not found"):
        load_image(tmp_path / "gone.jpg", 32)
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(NotAnImage):
        load_image(tmp_path / "dir.jpg", 32)


def test_find_images_walks_the_library_and_skips_what_is_not_a_photo(tmp_path):
    lib = tmp_path / "lib"
    wanted = ["2019/07/a.jpg", "2019/07/b.JPEG", "2020/c.png", "d.webp", "e.tiff"]
    unwanted = [
        ".hidden/f.jpg",
        f"{STORE_DIRNAME}/g.jpg",
        "clusters/cluster_with_2/cluster_0/h.jpg",
        "notes.txt",
        "download.jpg.part",
        ".partial.jpg",
        "mine/excluded.jpg",
    ]
    for name in wanted + unwanted:
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(b"x")
    (lib / "clusters" / TREE_MARKER).write_text("{}")
    os.symlink(lib / "d.webp", lib / "link.jpg")
    os.symlink(lib / "2019", lib / "linked-folder")
    found = find_images(lib, exclude=[lib / "mine"])
    assert [p.relative_to(lib).as_posix() for p in found] == sorted(wanted)
    assert all(p.is_absolute() for p in found)


def _find_images_as_before(root, exclude=()):
    """find_images as it was written before walk_photos (os.walk and Paths): the reference."""
    excluded = {os.path.abspath(p) for p in exclude}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if TREE_MARKER in filenames:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and os.path.join(dirpath, d) not in excluded]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if is_image_name(name) and not os.path.islink(path):
                found.append(Path(path))
    return sorted(found)


def test_walk_photos_finds_what_os_walk_found_in_the_same_order(tmp_path):
    lib = tmp_path / "lib"
    names = ["a/b.jpg", "a-c.jpg", "a.d/e.png", "A/f.JPG", "a/z/y.jpg", "a/x.jpg", "x.jpg.xmp", "p.jpg~",
             "deep/er/still/g.png", "deep/h.cr2", "tree/cluster_with_1/cluster_0/i.jpg", "sub/t/j.jpg",
             ".hidden/k.jpg", "out/l.jpg", "ünïcode/m.jpg", "sp ace/n o.jpg"]
    for name in names:
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(b"x")
    (lib / "tree" / TREE_MARKER).write_text("{}")
    os.symlink(lib / "tree" / TREE_MARKER, lib / "sub" / "t" / TREE_MARKER)  # a marker that is a link
    (lib / "folder.jpg").mkdir()
    os.mkfifo(lib / "fifo.jpg")  # listed by its name; load_image refuses it later
    os.symlink(lib / "a" / "b.jpg", lib / "link.jpg")
    os.symlink(lib / "a", lib / "link-folder")
    os.symlink(lib / "nowhere", lib / "dangling.jpg")
    expected = _find_images_as_before(lib, exclude=[lib / "out"])
    assert find_images(lib, exclude=[lib / "out"]) == expected
    assert "fifo.jpg" in {p.name for p in expected} and len(expected) == 11
    from imagecluster.images import walk_photos

    walked = dict(walk_photos(lib, exclude=[lib / "out"]))
    assert {lib / rel for rel in walked} == set(expected)
    assert all(entry.path == os.fspath(lib / rel) for rel, entry in walked.items())


def test_find_images_needs_a_folder(tmp_path):
    with pytest.raises(LibraryNotFound, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(LibraryNotFound, match="not a folder"):
        find_images(tmp_path / "file")


@pytest.mark.parametrize("source", ["dog.jpg", "cat.jpg"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP"])
def test_corrupted_photos_never_raise_anything_but_not_an_image(tmp_path, source, fmt):
    """Flip and cut bytes of real photos: each either decodes or is refused with a reason."""
    original = tmp_path / f"original.{fmt.lower()}"
    with Image.open(Path(__file__).parent / "data" / source) as im:
        im.convert("RGB").save(original, format=fmt)
    data = original.read_bytes()
    rng = np.random.default_rng(len(data))
    for trial in range(40):
        damaged = bytearray(data)
        for offset in rng.integers(0, len(data), size=rng.integers(1, 12)):
            damaged[offset] = rng.integers(0, 256)
        if trial % 3 == 0:
            damaged = damaged[: rng.integers(1, len(damaged))]
        path = tmp_path / f"damaged-{trial}.{fmt.lower()}"
        path.write_bytes(bytes(damaged))
        try:
            assert load_image(path, 32).shape == (32, 32, 3)
        except NotAnImage as exc:
            assert str(exc).startswith(str(path))


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (14000, 13000)).save(path)  # 182 MP in 22 KB
    with pytest.raises(NotAnImage, match="too many pixels"):
        load_image(path, 32)


def test_special_files_named_like_photos_are_refused_without_blocking(tmp_path):
    import socket
    import stat
    import threading

    os.mkfifo(tmp_path / "pipe.jpg")  # open(2) on it would wait for a writer forever
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(os.fspath(tmp_path / "sock.jpg"))
        expected = {"pipe.jpg": "not a regular file (FIFO)", "sock.jpg": "not a regular file (socket)"}
        if os.geteuid() == 0:  # mknod of a device needs root; /dev/null's numbers, harmless to open
            os.mknod(tmp_path / "null.jpg", stat.S_IFCHR | 0o600, os.makedev(1, 3))
            expected["null.jpg"] = "not a regular file (character device)"
        assert sorted(p.name for p in find_images(tmp_path)) == sorted(expected)  # listed, so reported
        results = {}

        def load_all():
            for name in expected:
                try:
                    load_image(tmp_path / name, 224)
                except NotAnImage as exc:
                    results[name] = str(exc)

        thread = threading.Thread(target=load_all, daemon=True)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive(), "load_image blocked on a special file"
    assert results == {name: f"{tmp_path / name}: {reason}" for name, reason in expected.items()}
