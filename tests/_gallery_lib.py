"""A small library for the gallery tests: real JPEGs made here, fingerprints stored directly.

The model is not what the gallery tests are about, so each photo's fingerprint
is made up (families of similar photos whose merge heights spread over the
slider's range 0.5..1) and written with ``Store.put`` at the photo's size and
mtime: ``imagecluster cluster`` and ``show`` then find nothing to fingerprint
and never load TensorFlow. The photos are real JPEGs (variations of the two
test photos), one of them stored sideways with an EXIF orientation tag, and
some with hostile names.
"""

import os
from pathlib import Path

import numpy as np
from PIL import Image

from imagecluster.store import Store

from _bad_files import DATA, camera_moved  # the shared "camera moved" shots of the test photos

MODEL = "lite0"

#: Names that must show as text: quotes, markup, an ampersand, a newline, a byte that is not UTF-8,
#: and a path that spells the end of a script element.
HOSTILE = [
    'evil "quote" \'single\' <img src=x onerror="window.pwned=1"> &amp; & co.jpg',
    "new\nline.jpg",
    os.fsdecode(b"caf\xe9 latin-1.jpg"),
    "<script>window.pwned=2<" + "/script>.jpg",
]


def _fingerprints(count, seed, dim=48):
    """Families of subgroups of photos (similarities about 0.3 to 0.99), and each photo's family."""
    rng = np.random.default_rng(seed)
    out, families = [], []
    while len(out) < count:
        family = rng.standard_normal(dim)
        families_so_far = len(set(families))
        for _ in range(int(rng.integers(1, 4))):
            sub = rng.standard_normal(dim)
            weight = rng.uniform(0.3, 1.2)
            for _ in range(int(rng.integers(1, 5))):
                v = family + weight * sub + rng.uniform(0.1, 0.8) * rng.standard_normal(dim)
                out.append(v / np.linalg.norm(v))
                families.append(families_so_far)
    return np.array(out[:count], dtype=np.float32), families[:count]


def make_gallery_library(root, *, count=24, seed=7, hostile=True):
    """Write ``count`` JPEGs (plus the hostile names) under ``root`` and store made-up fingerprints.

    Returns
    -------
    list of str
        The library-relative paths, sorted.
    """
    root = Path(root)
    names = [f"{'2023' if k % 2 else '2024'}/shot_{k:02d}.jpg" for k in range(count)]
    if hostile:
        names += [f"odd/{n}" for n in HOSTILE]
    vectors, families = _fingerprints(len(names), seed)
    items = []
    for k, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        source = DATA / ("dog.jpg" if families[k] % 2 else "cat.jpg")  # a family looks alike
        image = camera_moved(source, seed * 1000 + k, size=(480, 360))
        if k == 1:  # stored sideways, upright by its EXIF orientation (6: rotate 90 clockwise to view)
            exif = Image.Exif()
            exif[0x0112] = 6
            image.transpose(Image.Transpose.ROTATE_90).save(path, quality=85, exif=exif)
        else:
            image.save(path, quality=85)
        st = path.stat()
        items.append((Path(name).as_posix(), st.st_size, st.st_mtime_ns, vectors[k]))
    Store(root).put(MODEL, items)
    return sorted(name for name, *_ in items)
