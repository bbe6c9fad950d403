#!/usr/bin/env python3
"""Fingerprinting throughput on camera RAW files (DNG, 12-24 MP, with embedded previews) against camera JPEGs.

What it builds: ``--count`` DNGs in the cache folder (``raw-dng/``), one from
each 12 MP camera JPEG of ``make_camera_jpegs.py`` (built there if missing):
the JPEG's pixels scaled to a sensor of 12, 16, 20 or 24 MP in turn (4000x3000,
4608x3456, 5472x3648, 6000x4000), mosaiced into a 12-bit RGGB Bayer CFA
(``tests/_dng.py``, the tests' writer), stored uncompressed with the camera
JPEG's orientation tag and an embedded JPEG preview at quality 85: full size
(as Canon, Nikon and Pentax embed), except every fourth at 1080 px high (as
Sony does). Eight more DNGs of 12 MP have no preview, to time the demosaic
fallback.

What it measures, in one process with lite0 loaded once, after one warm-up
pass over everything (page cache warm, LibRaw imported):

(j) jpeg: ``imagecluster.fingerprints`` over the camera JPEGs, photos/s.
(r) raw: the same over the DNGs with previews, photos/s.
(d) decode only, the same threads as the pipeline (one per core): photos/s of
    ``load_image`` for the JPEGs, the DNGs, and the DNGs without preview
    (half-size demosaic).

``--repeat`` rounds, each one pass of every variant back to back; rates are
medians of the rounds, the ratio is the median of per-round ratios. The
original imagecluster reads RAW files with Pillow only: it is not timed, but
what Pillow makes of these DNGs (their 160 px IFD0 thumbnail) is reported.

Run (about 5 minutes on 2 cores the first time, building the DNGs; 1-2 after)::

    python benchmarks/bench_raw.py [--count 32] [--repeat 3]

The last lines are the figures: the corpus, the decode-only rates, the
pipeline rates and last **RAW/JPEG**, the ratio of photos/s (target >= 1).
"""

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from _common import CACHE, REPO, check_sane, log, median, quiet_tensorflow

sys.path.insert(0, str(REPO / "tests"))
from _dng import write_dng  # noqa: E402 - the tests' DNG writer, one copy of it

HERE = Path(__file__).resolve().parent

#: Sensor sizes the DNGs cycle through (12, 16, 20 and 24 MP).
SENSORS = ((4000, 3000), (4608, 3456), (5472, 3648), (6000, 4000))
NO_PREVIEW = 8
VERSION = "1"  # part of the file names: a change in how DNGs are made rebuilds them


def _camera_jpegs(folder, count):
    paths = sorted(folder.glob("*.jpg"))[:count]
    if len(paths) < count:
        log(f"making {count} camera JPEGs in {folder}")
        subprocess.run([sys.executable, str(HERE / "make_camera_jpegs.py"), str(folder), "--count", str(count)],
                       check=True, stdout=subprocess.DEVNULL)
        paths = sorted(folder.glob("*.jpg"))[:count]
    return paths


def _make_dng(jpeg, path, sensor, preview):
    """A DNG of ``jpeg``'s scene on a sensor of ``sensor`` (w, h), stored as the JPEG was (orientation tag kept)."""
    with Image.open(jpeg) as im:
        orientation = im.getexif().get(0x0112, 1)
        im = im.convert("RGB")
    w, h = sensor if im.width >= im.height else sensor[::-1]
    scene = im.resize((w, h), Image.BICUBIC)
    if preview == "full":
        write_dng(path, scene, orientation=orientation, quality=85)
    elif preview == "1080":
        size = (round(1080 * w / h), 1080) if w >= h else (1080, round(1080 * h / w))
        write_dng(path, scene, orientation=orientation, quality=85, preview_size=size)
    else:
        write_dng(path, scene, orientation=orientation, preview=False)


def make_corpus(jpegs, folder):
    """The DNGs with previews (one per JPEG) and the ones without; built once, kept in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with_preview, without = [], []
    for k, jpeg in enumerate(jpegs):
        sensor = SENSORS[k % len(SENSORS)]
        preview = "1080" if k % 4 == 3 else "full"
        path = folder / f"v{VERSION}_{jpeg.stem}_{sensor[0]}x{sensor[1]}_{preview}.dng"
        if not path.exists():
            t0 = time.perf_counter()
            _make_dng(jpeg, path, sensor, preview)
            log(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")
        with_preview.append(path)
    for jpeg in jpegs[:NO_PREVIEW]:
        path = folder / f"v{VERSION}_{jpeg.stem}_4000x3000_none.dng"
        if not path.exists():
            _make_dng(jpeg, path, SENSORS[0], None)
            log(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB")
        without.append(path)
    return with_preview, without


def decode_rate(paths, size, workers):
    """Photos/s of load_image alone, in a thread pool as the pipeline decodes."""
    from imagecluster.images import load_image

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda p: load_image(p, size), paths))
    seconds = time.perf_counter() - t0
    assert all(a.shape == (size, size, 3) for a in arrays)
    return len(paths) / seconds


def pipeline_rate(paths, model):
    import imagecluster

    t0 = time.perf_counter()
    fps = imagecluster.fingerprints(paths, model=model)
    seconds = time.perf_counter() - t0
    if len(fps) != len(paths):
        raise SystemExit(f"fingerprints() returned {len(fps)} of {len(paths)} photos")
    return len(paths) / seconds, fps


def agreement(jpegs, dngs, fps_jpeg, fps_raw):
    """Cosine similarity of each DNG's fingerprint with its camera JPEG's (same scene, other sensor size)."""
    out = []
    for j, r in zip(jpegs, dngs):
        a, b = np.asarray(fps_jpeg[Path(j)]), np.asarray(fps_raw[Path(r)])
        out.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=32, help="camera JPEGs, and DNGs made from them (default 32)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--photos", type=Path, default=CACHE / "camera", help="camera JPEG folder (default: cache)")
    ap.add_argument("--raws", type=Path, default=CACHE / "raw-dng", help="DNG folder (default: cache)")
    args = ap.parse_args(argv)

    jpegs = _camera_jpegs(args.photos, args.count)
    dngs, plain = make_corpus(jpegs, args.raws)
    quiet_tensorflow()
    from imagecluster.models import load_model

    model = load_model("lite0")
    workers = os.cpu_count() or 1
    log("warm-up pass (page cache, LibRaw import, TensorFlow graph)")
    pipeline_rate(jpegs, model)
    _, warm = pipeline_rate(dngs + plain, model)
    check_sane(list(warm.values()), "raw")

    rates = {name: [] for name in ("dec_jpeg", "dec_raw", "dec_plain", "jpeg", "raw")}
    ratios = []
    for r in range(args.repeat):
        rates["dec_jpeg"].append(decode_rate(jpegs, model.input_size, workers))
        rates["dec_raw"].append(decode_rate(dngs, model.input_size, workers))
        rates["dec_plain"].append(decode_rate(plain, model.input_size, workers))
        jpeg_rate, fps_jpeg = pipeline_rate(jpegs, model)
        raw_rate, fps_raw = pipeline_rate(dngs, model)
        rates["jpeg"].append(jpeg_rate)
        rates["raw"].append(raw_rate)
        ratios.append(raw_rate / jpeg_rate)
        log(f"round {r + 1}: jpeg {jpeg_rate:.1f}/s, raw {raw_rate:.1f}/s")
    cos = agreement(jpegs, dngs, fps_jpeg, fps_raw)
    cos_demosaic = agreement(jpegs[:NO_PREVIEW], plain, fps_jpeg, warm)

    mb = [p.stat().st_size / 1e6 for p in dngs]
    mp = sorted({f"{w * h / 1e6:.0f}" for w, h in SENSORS})
    try:
        with Image.open(dngs[0]) as im:
            pillow_sees = f"their {im.size[0]}x{im.size[1]} thumbnail"
    except OSError:
        pillow_sees = "nothing"
    jpeg_mb = [p.stat().st_size / 1e6 for p in jpegs]
    print(f"corpus: {len(jpegs)} camera JPEGs 4000x3000 (median {median(jpeg_mb):.1f} MB); "
          f"{len(dngs)} DNGs of {'/'.join(mp)} MP, 12-bit Bayer, uncompressed, preview JPEG full size "
          f"(3 of 4) or 1080 px high (median {median(mb):.0f} MB); {len(plain)} 12 MP DNGs without preview")
    print(f"original imagecluster: Pillow opens these DNGs as {pillow_sees}; other RAW formats not at all")
    print(f"cosine(DNG fingerprint, its camera JPEG's): from the preview median {median(cos):.4f}, "
          f"min {min(cos):.4f}; from the half-size demosaic median {median(cos_demosaic):.4f}, "
          f"min {min(cos_demosaic):.4f}")
    print(f"decode only ({workers} threads): jpeg {median(rates['dec_jpeg']):.1f} photos/s, "
          f"raw with preview {median(rates['dec_raw']):.1f} photos/s, "
          f"raw without preview (half-size demosaic) {median(rates['dec_plain']):.2f} photos/s")
    print(f"pipeline jpeg: {median(rates['jpeg']):.1f} photos/s (median of {args.repeat})")
    print(f"pipeline raw:  {median(rates['raw']):.1f} photos/s (median of {args.repeat})")
    print(f"RAW/JPEG: {median(ratios):.2f}x photos/s (median of per-round ratios; target >= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
