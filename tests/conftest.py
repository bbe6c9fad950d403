"""Shared fixtures: real photos made from the two packaged test photos, and hygiene checks."""

import random
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

DATA = Path(__file__).parent / "data"


def camera_moved(source, seed, size=None):
    """A 'camera moved' shot of a photo: overlapping crop, slight rotation, exposure, re-encoding."""
    rng = random.Random(seed)
    with Image.open(source) as im:
        im = im.convert("RGB")
    w, h = im.size
    zoom = rng.uniform(0.8, 0.92)
    cw, ch = int(w * zoom), int(h * zoom)
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    shot = im.crop((x0, y0, x0 + cw, y0 + ch)).rotate(rng.uniform(-3, 3), resample=Image.BICUBIC)
    shot = ImageEnhance.Brightness(shot).enhance(rng.uniform(0.85, 1.15))
    if size:
        shot = shot.resize(size, Image.LANCZOS)
    return shot


@pytest.fixture
def make_library(tmp_path):
    """Build a library: {relative name: source photo} -> folder of real JPEG shots."""

    def make(layout, root=None):
        lib = root or tmp_path / "photos"
        for seed, (name, source) in enumerate(sorted(layout.items())):
            path = lib / name
            path.parent.mkdir(parents=True, exist_ok=True)
            camera_moved(DATA / source, seed).save(path, quality=88)
        return lib

    return make


@pytest.fixture
def burst_library(make_library):
    """Three shots of a dog and three of a cat, in nested year/month folders."""
    return make_library(
        {
            "2023/05/dog_1.jpg": "dog.jpg",
            "2023/05/dog_2.jpg": "dog.jpg",
            "2023/06/dog_3.jpg": "dog.jpg",
            "2024/01/cat_1.jpg": "cat.jpg",
            "2024/01/cat_2.jpg": "cat.jpg",
            "2024/cat_3.jpg": "cat.jpg",
        }
    )


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """A test must not leave Python threads running (decoder pools, watchers, ...)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leaked:
        thread.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads left running: {still}"
