"""Camera RAW files, read through the real LibRaw: DNGs the tests write from the two test photos.

``_dng.write_dng`` mosaics a photo into a 12-bit RGGB Bayer CFA and stores it as
a DNG, with or without an embedded JPEG preview, with an orientation tag.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagecluster import NotAnImage, cluster_folder, index_library
from imagecluster._raw import open_raw
from imagecluster.images import find_images, is_image_name, load_image

from _dng import write_dng
from _support.scenes import best_orientation, cosine, photo, upright

# --- which picture is decoded ------------------------------------------------------------


def test_a_big_enough_preview_is_decoded_instead_of_the_mosaic(tmp_path):
    # The mosaic is the dog, the preview the cat: what comes out says which was decoded.
    dog = photo("dog.jpg", scale=2)  # 640x480
    cat = photo("cat.jpg").resize((640, 480), Image.BICUBIC)
    write_dng(tmp_path / "preview.dng", dog, preview_image=cat)
    write_dng(tmp_path / "small_preview.dng", dog, preview_image=cat, preview_size=(200, 150))
    write_dng(tmp_path / "mosaic.dng", dog, preview=False)

    def closest(path):
        decoded = np.asarray(open_raw(path, 224), dtype=np.float64)
        assert decoded.shape == (240, 320, 3)  # the preview JPEG-drafted by 1/2, or a half-size demosaic
        errors = {
            name: np.abs(decoded - np.asarray(scene.resize((320, 240), Image.BILINEAR))).mean()
            for name, scene in (("dog", dog), ("cat", cat))
        }
        return min(errors, key=errors.get)

    assert closest(tmp_path / "preview.dng") == "cat"
    assert closest(tmp_path / "small_preview.dng") == "dog"  # a 150 px preview is too small: demosaic
    assert closest(tmp_path / "mosaic.dng") == "dog"


def test_a_broken_preview_falls_back_to_the_mosaic(tmp_path):
    dog = photo("dog.jpg", scale=2)
    write_dng(tmp_path / "mosaic.dng", dog, preview=False)
    write_dng(tmp_path / "broken.dng", dog)
    data = bytearray((tmp_path / "broken.dng").read_bytes())
    soi = data.rindex(b"\xff\xd8\xff")  # the preview JPEG is the file's last strip
    data[soi : soi + 64] = bytes(64)
    (tmp_path / "broken.dng").write_bytes(bytes(data))
    assert np.array_equal(load_image(tmp_path / "broken.dng", 224), load_image(tmp_path / "mosaic.dng", 224))


def test_a_tiny_sensor_is_demosaiced_at_full_size(tmp_path):
    write_dng(tmp_path / "tiny.dng", photo("dog.jpg"), preview=False)  # 320x240: half size is too small
    assert open_raw(tmp_path / "tiny.dng", 224).size == (320, 240)
    assert open_raw(tmp_path / "tiny.dng", 100).size == (160, 120)  # half size suffices for 100 px


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("preview", [True, False], ids=["preview", "demosaic"])
def test_orientation_is_applied(tmp_path, orientation, preview):
    scene = photo("dog.jpg", scale=2)
    path = tmp_path / f"o{orientation}.dng"
    write_dng(path, scene, preview=preview, orientation=orientation)
    decoded = open_raw(path, 224)
    assert best_orientation(decoded, scene) == orientation
    assert decoded.size == upright(scene.resize((320, 240)), orientation).size


def test_a_preview_stored_upright_is_not_turned_again(tmp_path):
    """Some cameras store the preview already turned: its shape then differs from the sensor's."""
    scene = photo("dog.jpg", scale=2)
    path = tmp_path / "turned.dng"
    write_dng(path, scene, preview=True, orientation=6, preview_image=upright(scene, 6))
    decoded = open_raw(path, 224)
    assert decoded.height > decoded.width
    assert best_orientation(decoded, scene) == 6


# --- fingerprints: preview and demosaic agree ----------------------------------------------


@pytest.mark.parametrize("source", ["dog.jpg", "cat.jpg"])
@pytest.mark.parametrize("orientation", [1, 6, 8, 3])
def test_preview_and_demosaic_fingerprints_agree(tmp_path, lite0, source, orientation):
    # x2: the sensor is 640 px wide and the preview big enough, so the two
    # really take different ways (the cat's 1x preview, 213 px high, would not).
    scene = photo(source, scale=2)
    write_dng(tmp_path / "preview.dng", scene, preview=True, orientation=orientation)
    write_dng(tmp_path / "mosaic.dng", scene, preview=False, orientation=orientation)
    a = load_image(tmp_path / "preview.dng", lite0.input_size)
    b = load_image(tmp_path / "mosaic.dng", lite0.input_size)
    assert not np.array_equal(a, b)
    similarity = cosine(lite0, a, b)
    print(f"cosine(preview, demosaic) {source} orientation {orientation}: {similarity:.4f}")
    assert similarity >= 0.95


def test_a_raw_fingerprints_like_the_same_shot_as_jpeg(tmp_path, lite0):
    scene = photo("dog.jpg", scale=2)
    write_dng(tmp_path / "shot.dng", scene, preview=False, orientation=6)
    upright(scene, 6).save(tmp_path / "shot.jpg", quality=92)
    similarity = cosine(lite0, load_image(tmp_path / "shot.dng", 224), load_image(tmp_path / "shot.jpg", 224))
    print(f"cosine(demosaic, jpeg) {similarity:.4f}")
    assert similarity >= 0.95


# --- a library of RAW files ------------------------------------------------------------------


def test_a_burst_of_dngs_clusters_like_the_same_burst_as_jpegs(tmp_path, burst_library):
    raws = tmp_path / "raws"
    for k, jpeg in enumerate(sorted(burst_library.rglob("*.jpg"))):
        target = raws / jpeg.relative_to(burst_library).with_suffix(".dng")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(jpeg) as im:
            # Alternate the ways in: preview, no preview, a tiny preview only.
            write_dng(target, im, preview=k % 3 != 1, preview_size=(120, 90) if k % 3 == 2 else None)
        for sidecar in (".xmp", ".pp3", ".dop"):  # what darktable, RawTherapee and DxO leave beside it
            Path(f"{target}{sidecar}").write_text("<x:xmpmeta/>")
    (raws / "2024" / "IMG_0001.THM").write_bytes(b"\xff\xd8 camera thumbnail")
    (raws / "2024" / "IMG_0001.AAE").write_text("<plist/>")

    report = index_library(raws)
    assert report.failures == []  # sidecars are not photos, not even unreadable ones
    assert report.found == 6

    def stems(clusters):
        return sorted(sorted(p.stem for p in group) for group in clusters)

    from_jpegs = cluster_folder(burst_library, sim=0.7, write=False)
    from_raws = cluster_folder(raws, sim=0.7, write=False)
    assert stems(from_raws) == stems(from_jpegs) == [["cat_1", "cat_2", "cat_3"], ["dog_1", "dog_2", "dog_3"]]


def test_raw_suffixes_are_photos_and_sidecars_are_not(tmp_path):
    for suffix in (".CR2", ".cr3", ".NEF", ".arw", ".RAF", ".orf", ".rw2", ".pef", ".srw", ".dng"):
        assert is_image_name(f"IMG_0001{suffix}"), suffix
    for name in ("IMG_0001.CR2.xmp", "IMG_0001.xmp", "a.pp3", "a.NEF.dop", "IMG_0001.THM", "IMG_0001.aae"):
        assert not is_image_name(name), name
    write_dng(tmp_path / "a.dng", photo("cat.jpg"))
    (tmp_path / "a.dng.xmp").write_text("<x:xmpmeta/>")
    assert find_images(tmp_path) == [tmp_path / "a.dng"]


# --- bad files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "an empty file"),
        (b"this is a text file, not a Nikon RAW\n" * 20, "not a RAW file"),
        (b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64, "not a RAW file"),  # a TIFF header with no image
    ],
)
def test_a_fake_raw_is_not_an_image(tmp_path, content, reason):
    path = tmp_path / "DSC_0001.nef"
    path.write_bytes(content)
    with pytest.raises(NotAnImage, match=reason) as info:
        load_image(path, 224)
    assert str(info.value).startswith(str(path))


def test_a_jpeg_named_nef_is_not_an_image(tmp_path):
    path = tmp_path / "DSC_0002.NEF"
    photo("dog.jpg").save(path, format="JPEG")
    with pytest.raises(NotAnImage):
        load_image(path, 224)


@pytest.mark.parametrize("preview", [True, False], ids=["preview", "demosaic"])
def test_a_truncated_dng_is_not_an_image(tmp_path, preview):
    whole = tmp_path / "whole.dng"
    write_dng(whole, photo("dog.jpg", scale=2), preview=preview)
    data = whole.read_bytes()
    assert load_image(whole, 224).shape == (224, 224, 3)
    for fraction in (0.05, 0.3, 0.6, 0.8):  # the mosaic (the file's bulk) is cut
        cut = tmp_path / f"cut-{fraction}.dng"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(NotAnImage, match="cut short|truncated|not a RAW file") as info:
            load_image(cut, 224)
        assert str(info.value).startswith(str(cut))


def test_a_dng_cut_in_its_preview_is_still_read_from_the_mosaic(tmp_path):
    scene = photo("dog.jpg", scale=2)
    write_dng(tmp_path / "whole.dng", scene)  # strips: thumbnail, mosaic, then the preview JPEG
    write_dng(tmp_path / "mosaic.dng", scene, preview=False)
    cut = tmp_path / "cut.dng"
    cut.write_bytes((tmp_path / "whole.dng").read_bytes()[:-200])
    # LibRaw reads a preview up to 16 KB past the end of a file into a buffer it never clears:
    # decoded just after the whole file, the cut one would get the whole preview's bytes back.
    whole = load_image(tmp_path / "whole.dng", 224)
    read = load_image(cut, 224)
    assert np.array_equal(read, load_image(tmp_path / "mosaic.dng", 224))
    assert not np.array_equal(read, whole)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("preview", [True, False], ids=["preview", "demosaic"])
def test_damaged_dngs_never_raise_anything_but_not_an_image(tmp_path, preview):
    """Flip and cut bytes of a real DNG (also in its directories): decoded or refused, never a crash or a hang."""
    original = tmp_path / "original.dng"
    write_dng(original, photo("cat.jpg"), preview=preview, orientation=6)
    data = original.read_bytes()
    head = 600  # the header and the directories (IFD0 and its SubIFDs come first)
    rng = np.random.default_rng(16)
    refused = 0
    for trial in range(40):
        damaged = bytearray(data)
        for offset in rng.integers(0, head if trial % 2 else len(data), size=rng.integers(1, 8)):
            damaged[offset] = rng.integers(0, 256)
        if trial % 3 == 0:
            damaged = damaged[: rng.integers(1, len(damaged))]
        path = tmp_path / f"damaged-{trial}.dng"
        path.write_bytes(bytes(damaged))
        try:
            assert load_image(path, 32).shape == (32, 32, 3)
        except NotAnImage as exc:
            assert str(exc).startswith(str(path))
            refused += 1
    assert refused > 0


def test_a_raw_with_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.dng"
    write_dng(path, photo("dog.jpg"), preview=False)  # 76,800 pixels
    assert load_image(path, 32).shape == (32, 32, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # the guard refuses over twice this
    with pytest.raises(NotAnImage, match="too many pixels"):
        load_image(path, 32)


# --- cost ----------------------------------------------------------------------------------


def test_jpeg_only_runs_never_import_libraw(tmp_path):
    jpeg = tmp_path / "a.jpg"
    photo("cat.jpg").save(jpeg)
    dng = tmp_path / "a.dng"
    write_dng(dng, photo("cat.jpg"))
    code = (
        "import sys; from imagecluster.images import load_image, find_images\n"
        f"find_images({str(tmp_path)!r}); load_image({str(jpeg)!r}, 64)\n"
        "print('rawpy' in sys.modules)\n"
        f"load_image({str(dng)!r}, 64); print('rawpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]

