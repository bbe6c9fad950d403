"""Real photos made by the tests: "camera moved" shots of the two packaged test photos."""

import random
from pathlib import Path

from PIL import Image, ImageEnhance

DATA = Path(__file__).resolve().parents[1] / "data"

#: The shared daemons' library (plugin API and darktable tests): {relative path: source photo}.
PHOTOS = {
    "2023/05/dog_1.jpg": "dog.jpg",
    "2023/05/dog_2.jpg": "dog.jpg",
    "2023/06/dog_3.jpg": "dog.jpg",
    "2024/01/cat_1.jpg": "cat.jpg",
    "2024/01/cat_2.jpg": "cat.jpg",
    "2024/cat_3.jpg": "cat.jpg",
    "2024/café_ß.jpg": "cat.jpg",
}


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
