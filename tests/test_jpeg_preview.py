"""A camera JPEG's own preview (an MPF large thumbnail) is decoded instead of the photo, when it can stand for it.

The files are real multi-picture JPEGs (``_mpf.write_mpf_jpeg``), read through
Pillow and libjpeg. Where the photo and its "preview" show different scenes
(the dog and the cat), what comes out says which one was decoded.
"""

import numpy as np
import pytest
from PIL import Image

from imagecluster import NotAnImage, cluster_folder
from imagecluster.images import load_image, load_image_and_thumbnail

from _mpf import DISPARITY, LARGE_THUMBNAIL_FULL_HD, LARGE_THUMBNAIL_VGA, UNDEFINED, write_mpf_jpeg
from _support.scenes import best_orientation, cosine, photo, upright

SIZE = 224


@pytest.fixture
def dog():
    return photo("dog.jpg", scale=4)  # 1280x960: decoded at 1/4 for 224 px


@pytest.fixture
def cat_preview():
    return photo("cat.jpg").resize((640, 480), Image.BICUBIC)


def plain(path, im, **save):
    im.save(path, quality=92, **save)
    return path


def which(decoded, dog, cat):
    """"dog" or "cat": which scene the decoded picture is."""
    decoded = np.asarray(decoded, dtype=np.float64)
    size = (decoded.shape[1], decoded.shape[0])
    errors = {
        name: np.abs(decoded - np.asarray(scene.resize(size, Image.BILINEAR))).mean()
        for name, scene in (("dog", dog), ("cat", cat))
    }
    return min(errors, key=errors.get)


# --- which picture is decoded ------------------------------------------------------------


@pytest.mark.parametrize("mp_type", [LARGE_THUMBNAIL_FULL_HD, LARGE_THUMBNAIL_VGA])
def test_a_large_thumbnail_is_decoded_instead_of_the_photo(tmp_path, dog, cat_preview, mp_type):
    path = tmp_path / "shot.jpg"
    write_mpf_jpeg(path, dog, cat_preview, mp_type=mp_type)
    array, thumbnail = load_image_and_thumbnail(path, SIZE, 256)
    assert array.shape == (SIZE, SIZE, 3)
    assert which(array, dog, cat_preview) == "cat"
    assert thumbnail.size == (256, 192)  # the gallery's thumbnail is cut from the same small decode
    assert which(thumbnail, dog, cat_preview) == "cat"


@pytest.mark.parametrize(
    "case",
    ["undefined type", "stereo view", "too small", "letterboxed", "cropped photo", "turned, photo not",
     "broken preview"],
)
def test_a_preview_that_cannot_stand_for_the_photo_is_not_used(tmp_path, dog, cat_preview, case):
    """Each case decodes exactly as the photo without any preview does."""
    path = tmp_path / "shot.jpg"
    preview, mp_type, photo_im = cat_preview, LARGE_THUMBNAIL_FULL_HD, dog
    if case == "undefined type":  # Pillow's own MPOs, and HDR gain maps
        mp_type = UNDEFINED
    elif case == "stereo view":
        mp_type = DISPARITY
    elif case == "too small":
        preview = cat_preview.resize((200, 150), Image.BICUBIC)
    elif case == "letterboxed":
        preview = cat_preview.resize((640, 360), Image.BICUBIC)
    elif case == "cropped photo":  # an editor cut the photo to 3:2 and left the camera's 4:3 preview
        photo_im = dog.crop((0, 0, 1280, 853))
    elif case == "turned, photo not":  # stored turned, though the photo has no orientation that turns it
        preview = cat_preview.transpose(Image.Transpose.ROTATE_90)
    write_mpf_jpeg(path, photo_im, preview, mp_type=mp_type)
    if case == "broken preview":
        data = bytearray(path.read_bytes())
        soi = data.rindex(b"\xff\xd8\xff")  # the preview is the file's second JPEG
        data[soi + 2 : soi + 400] = bytes(398)
        path.write_bytes(bytes(data))
    expected = load_image(plain(tmp_path / "plain.jpg", photo_im), SIZE)
    assert np.array_equal(load_image(path, SIZE), expected)


def cut_copy(path, dog, cat_preview, part):
    """A shot with a preview, copied only half-way through its ``part`` ("photo" or "preview")."""
    write_mpf_jpeg(path, dog, cat_preview)
    data = path.read_bytes()
    preview_start = data.rindex(b"\xff\xd8\xff")
    end = preview_start // 2 if part == "photo" else (preview_start + len(data)) // 2
    path.write_bytes(data[:end])
    return path


def test_a_file_cut_in_its_preview_is_read_from_the_photo(tmp_path, dog, cat_preview):
    path = cut_copy(tmp_path / "cut.jpg", dog, cat_preview, "preview")
    expected = load_image(plain(tmp_path / "plain.jpg", dog), SIZE)
    assert np.array_equal(load_image(path, SIZE), expected)


def test_a_file_cut_in_the_photo_is_not_an_image(tmp_path, dog, cat_preview):
    path = cut_copy(tmp_path / "cut.jpg", dog, cat_preview, "photo")
    with pytest.raises(NotAnImage, match="cut.jpg: damaged or truncated"):
        load_image(path, SIZE)


# --- orientation -------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_the_photos_orientation_is_applied_to_its_preview(tmp_path, orientation):
    scene = photo("dog.jpg", scale=4)
    path = tmp_path / f"o{orientation}.jpg"
    write_mpf_jpeg(path, scene, scene.resize((640, 480), Image.BICUBIC), orientation=orientation)
    decoded, _ = load_image_and_thumbnail(path, SIZE, 320)
    _, thumbnail = load_image_and_thumbnail(path, SIZE, 320)
    assert best_orientation(thumbnail, scene) == orientation
    assert thumbnail.size == upright(scene.resize((320, 240)), orientation).size


def test_a_preview_stored_upright_is_not_turned_again(tmp_path):
    scene = photo("dog.jpg", scale=4)
    path = tmp_path / "turned.jpg"
    write_mpf_jpeg(path, scene, upright(scene.resize((640, 480), Image.BICUBIC), 6), orientation=6)
    _, thumbnail = load_image_and_thumbnail(path, SIZE, 320)
    assert thumbnail.height > thumbnail.width
    assert best_orientation(thumbnail, scene) == 6


# --- fingerprints: preview and photo agree -----------------------------------------------


@pytest.mark.parametrize("source", ["dog.jpg", "cat.jpg"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_preview_and_photo_fingerprints_agree(tmp_path, lite0, source, orientation):
    scene = photo(source, scale=4)
    preview = scene.resize((scene.width // 2, scene.height // 2), Image.LANCZOS)
    write_mpf_jpeg(tmp_path / "mpf.jpg", scene, preview, orientation=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    a = load_image(tmp_path / "mpf.jpg", lite0.input_size)
    b = load_image(plain(tmp_path / "plain.jpg", scene, exif=exif), lite0.input_size)
    assert not np.array_equal(a, b)  # really two ways: the preview, and the photo at 1/8
    similarity = cosine(lite0, a, b)
    print(f"cosine(preview, photo) {source} orientation {orientation}: {similarity:.4f}")
    assert similarity >= 0.98


def test_a_library_of_camera_jpegs_with_previews_clusters_as_without(tmp_path, make_library):
    """The same burst library, once as plain JPEGs and once with each photo's preview: the same clusters."""
    plain_lib = make_library({"dog_1.jpg": "dog.jpg", "dog_2.jpg": "dog.jpg", "cat_1.jpg": "cat.jpg",
                              "cat_2.jpg": "cat.jpg", "cat_3.jpg": "cat.jpg"}, root=tmp_path / "plain")
    mpf_lib = tmp_path / "mpf"
    mpf_lib.mkdir()
    for path in plain_lib.iterdir():
        with Image.open(path) as im:
            big = im.convert("RGB").resize((im.width * 4, im.height * 4), Image.BICUBIC)
        write_mpf_jpeg(mpf_lib / path.name, big, big.resize((im.width * 2, im.height * 2), Image.LANCZOS))

    def groups(lib):
        return sorted(sorted(p.name for p in group) for group in cluster_folder(lib, sim=0.7, write=False))

    assert groups(mpf_lib) == groups(plain_lib) == [["cat_1.jpg", "cat_2.jpg", "cat_3.jpg"], ["dog_1.jpg", "dog_2.jpg"]]
