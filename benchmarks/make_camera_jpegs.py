#!/usr/bin/env python3
"""Make camera-sized JPEGs (12 MP, 4000x3000, 2-5 MB each) from real photos.

What it builds: ``COUNT`` distinct JPEGs in ``OUT``, each a random 4:3 crop of
one of the real photos that Debian's ``darknet`` package and scikit-image's
wheel ship (fetched once with ``apt-get download`` / ``pip download --no-deps``
into the cache folder, see ``_common.py``), flipped or slightly rotated,
re-exposed, upscaled to 4000x3000, given sensor-like grain (luminance plus a
little chroma noise, so the file has a camera photo's entropy) and saved at
quality 92 with EXIF (Make, Model, DateTime). Every third photo is stored
"sideways" with an EXIF orientation tag (6 or 8), as phones do. The grain is
raised or lowered until the file lies in 2-5 MB.

With ``--preview`` each file also carries the camera's own smaller copy of the
photo, as many cameras write one (Sony: 1616 x 1080 for 3:2): a 1440 x 1080
JPEG of the same grained picture after the photo, listed in an APP2 "MPF"
segment as a large thumbnail (``tests/_mpf.py``, the tests' writer). Use
another OUT for those.

Run::

    python benchmarks/make_camera_jpegs.py /tmp/camera --count 64

The last lines printed are the count, the total size and the median / min /
max file size in MB. Photos already in OUT with the right name and size are
kept, so a second run is instant.
"""

import argparse
import io
import random
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from _common import REPO, log, real_photos

sys.path.insert(0, str(REPO / "tests"))
from _mpf import write_mpf_jpeg  # noqa: E402 - the tests' MPF writer, one copy of it

WIDTH, HEIGHT = 4000, 3000
MIN_BYTES, MAX_BYTES = 2_000_000, 5_000_000
QUALITY = 92
PREVIEW = (1440, 1080)  # a Full-HD-class MPF large thumbnail of a 4:3 photo


def _frame(src, rng, size):
    """A random crop of ``src`` with the aspect of ``size``, flipped / rotated a little, re-exposed."""
    w, h = src.size
    aspect = size[0] / size[1]
    z = rng.uniform(0.6, 1.0)
    cw = min(w, h * aspect) * z
    ch = cw / aspect
    x0 = rng.uniform(0, w - cw)
    y0 = rng.uniform(0, h - ch)
    im = src.crop((int(x0), int(y0), int(x0 + cw), int(y0 + ch)))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = im.rotate(rng.uniform(-4, 4), resample=Image.BICUBIC)
    iw, ih = im.size  # cut away the corners the rotation left black
    im = im.crop((int(0.06 * iw), int(0.06 * ih), int(0.94 * iw), int(0.94 * ih)))
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.85, 1.15))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.85, 1.2))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.9, 1.15))
    return im.resize(size, Image.BICUBIC)


def _grain(img, sigma, seed):
    nrng = np.random.default_rng(seed)
    a = np.asarray(img, dtype=np.float32)
    a += nrng.standard_normal((HEIGHT, WIDTH, 1), dtype=np.float32) * sigma
    a += nrng.standard_normal((HEIGHT, WIDTH, 3), dtype=np.float32) * (0.4 * sigma)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _exif(k, orientation):
    exif = Image.Exif()
    exif[0x010F] = "BenchCam"  # Make
    exif[0x0110] = "BC-12"  # Model
    exif[0x0132] = "2024:06:%02d 12:%02d:%02d" % (1 + k % 28, k % 60, (7 * k) % 60)  # DateTime
    if orientation != 1:
        exif[0x0112] = orientation
    return exif


def make_one(path, src, k, seed, preview=False):
    rng = random.Random(seed * 100_003 + k)
    # Every third photo is a portrait shot: the sensor stores it 4000x3000
    # with an orientation tag saying how to turn it upright (6: rotate 90
    # degrees clockwise to view, 8: counter-clockwise).
    orientation = (1, 1, rng.choice((6, 8)))[k % 3]
    if orientation == 1:
        base = _frame(src, rng, (WIDTH, HEIGHT))
    else:
        upright = _frame(src, rng, (HEIGHT, WIDTH))
        base = upright.transpose(Image.ROTATE_90 if orientation == 6 else Image.ROTATE_270)
    sigma = rng.uniform(3.0, 5.0)
    for _ in range(6):
        buf = io.BytesIO()
        grained = _grain(base, sigma, seed * 7 + k)
        grained.save(buf, "JPEG", quality=QUALITY, exif=_exif(k, orientation))
        size = buf.tell()
        if size < MIN_BYTES:
            sigma *= 1.6
        elif size > MAX_BYTES:
            sigma /= 1.6
        else:
            break
    if not preview:
        path.write_bytes(buf.getvalue())
        return size
    small = grained.resize(PREVIEW, Image.BICUBIC, reducing_gap=2.0)  # stored as the sensor saw it, like the photo
    write_mpf_jpeg(path, grained, small, quality=QUALITY, exif=_exif(k, orientation))
    return path.stat().st_size


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write the JPEGs into")
    ap.add_argument("--count", type=int, default=64, help="number of photos (default: 64)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    ap.add_argument("--preview", action="store_true",
                    help="also store a 1440x1080 MPF large thumbnail in each file, as many cameras do")
    args = ap.parse_args(argv)

    photos = real_photos()
    names = sorted(photos)
    sources = {}
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = []
    for k in range(args.count):
        name = names[k % len(names)]
        path = args.out / f"cam_{k:04d}_{name}.jpg"
        if path.exists() and MIN_BYTES <= path.stat().st_size <= MAX_BYTES + (1_000_000 if args.preview else 0):
            sizes.append(path.stat().st_size)
            continue
        if name not in sources:
            sources[name] = Image.open(photos[name]).convert("RGB")
        sizes.append(make_one(path, sources[name], k, args.seed, preview=args.preview))
        log(f"{path.name}: {sizes[-1] / 1e6:.2f} MB")
    mb = [s / 1e6 for s in sizes]
    with_preview = f", each with a {PREVIEW[0]}x{PREVIEW[1]} MPF preview" if args.preview else ""
    print(f"photos: {len(sizes)} camera JPEGs of {WIDTH}x{HEIGHT}{with_preview} in {args.out}")
    print(f"total: {sum(mb):.1f} MB")
    print(f"size MB: median {statistics.median(mb):.2f}, min {min(mb):.2f}, max {max(mb):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
