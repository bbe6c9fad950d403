"""The two packaged test photos as scenes, and how to tell what a decode gave: orientation, fingerprint cosine.

Shared by the tests of the decoders that read a camera's own preview (RAW and JPEG).
"""

import numpy as np
from PIL import Image, ImageOps

from .photos import DATA

ORIENTATIONS = range(1, 9)


def photo(name, scale=1):
    with Image.open(DATA / name) as im:
        im = im.convert("RGB")
    return im.resize((im.width * scale, im.height * scale), Image.BICUBIC) if scale != 1 else im


def upright(im, orientation):
    """The photo as a viewer shows it when stored with this EXIF orientation (Pillow as the reference)."""
    im = im.copy()
    im.getexif()[0x0112] = orientation
    return ImageOps.exif_transpose(im)


def best_orientation(decoded, scene):
    """Which orientation's upright scene the decoded photo matches best (correlation at 48x48)."""

    def small(im):
        a = np.asarray(im.convert("L").resize((48, 48), Image.BILINEAR), dtype=np.float64).ravel()
        return (a - a.mean()) / (a.std() or 1.0)

    target = small(decoded)
    return max(ORIENTATIONS, key=lambda o: float(small(upright(scene, o)) @ target))


def cosine(model, a, b):
    fps = model.fingerprint(np.stack([a, b]))
    fps = fps / np.linalg.norm(fps, axis=1, keepdims=True)
    return float(fps[0] @ fps[1])
