"""A darktable user's library of camera RAW files, written by the tests: DNG bursts and RAW + JPEG shots.

``dng/`` holds a burst of three dogs and one of two cats, each a DNG mosaiced
from a "camera moved" shot of the test photos (``_dng.write_dng``; some with
an embedded JPEG preview, some without, so both ways of reading a RAW run).
``pairs/`` holds two shots saved twice by the camera, ``IMG_0001.DNG`` +
``IMG_0001.JPG`` (a dog) and ``IMG_0002.DNG`` + ``IMG_0002.JPG`` (a cat): one
photo each, however many files.

Used by the daemon's D-Bus test and darktable's end-to-end test; a plain
module (not a conftest), loaded from ``tests/`` on ``sys.path``.
"""

import importlib.util
from pathlib import Path

from _dng import write_dng

HERE = Path(__file__).parent

#: {relative name: (source photo, embedded preview)} of the DNG bursts.
BURSTS = {
    "dng/dog_1.dng": ("dog.jpg", True),
    "dng/dog_2.dng": ("dog.jpg", True),
    "dng/dog_3.dng": ("dog.jpg", False),
    "dng/cat_1.dng": ("cat.jpg", True),
    "dng/cat_2.dng": ("cat.jpg", False),
}
#: {shot: source photo}; each shot is ``pairs/<shot>.DNG`` and ``pairs/<shot>.JPG``.
PAIRS = {"IMG_0001": "dog.jpg", "IMG_0002": "cat.jpg"}
#: The frame of every shot: 640x480, so a preview is big enough (short side >= 224).
SIZE = (640, 480)


def _camera_moved():
    spec = importlib.util.spec_from_file_location("_imagecluster_photo_fixtures", HERE / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.camera_moved


def write_raw_library(library):
    """Write the bursts and the pairs into ``library``.

    Parameters
    ----------
    library : pathlib.Path
        The folder to fill (created).

    Returns
    -------
    dict of str to pathlib.Path
        Every file written, by relative name (``"dng/dog_1.dng"``,
        ``"pairs/IMG_0001.JPG"``, ...).
    """
    camera_moved = _camera_moved()
    data = HERE / "data"
    files = {}
    for seed, (name, (source, preview)) in enumerate(sorted(BURSTS.items())):
        files[name] = library / name
        files[name].parent.mkdir(parents=True, exist_ok=True)
        write_dng(files[name], camera_moved(data / source, seed, size=SIZE), preview=preview)
    for seed, (shot, source) in enumerate(sorted(PAIRS.items()), start=len(BURSTS)):
        scene = camera_moved(data / source, seed, size=SIZE)
        raw, jpeg = library / "pairs" / f"{shot}.DNG", library / "pairs" / f"{shot}.JPG"
        raw.parent.mkdir(parents=True, exist_ok=True)
        write_dng(raw, scene)
        scene.save(jpeg, quality=92)  # the camera's own JPEG of the same shot
        files[f"pairs/{shot}.DNG"], files[f"pairs/{shot}.JPG"] = raw, jpeg
    return files
