#!/usr/bin/env python3
"""First run and re-run of ``imagecluster cluster`` on 1,000 real-photo JPEGs, against the original.

What it measures, in one run:

* corpus: ``--count`` small JPEGs (long side 480-800 px) cut from the real
  photos of Debian's darknet and scikit-image's wheel (random crop, flip,
  small rotation, exposure, colour), rebuilt from scratch every run so the
  first run really is the first (no store, model weights cache as the user has it);
* ours, first run: wall time of the real command
  ``python -m imagecluster cluster PHOTOS --sim S --out TREE`` (fresh
  interpreter: TensorFlow import, model load, fingerprinting, clustering, tree);
* ours, re-run on the unchanged folder: the same command, ``--repeat`` times,
  median wall time; once more through ``imagecluster.cli.main`` to check
  that TensorFlow was not imported and that the same clusters were written;
* ours, re-run after ``--add`` new photos were copied in (only they are fingerprinted);
* the original imagecluster (elcorto/imagecluster, README usage:
  ``io.get_image_data(dir)`` then ``calc.cluster`` and ``postproc.make_links``):
  - its re-run on an unchanged folder IS cached: ``get_image_data`` pickles
    ``<dir>/imagecluster/images.pk`` (every photo as a 224x224x3 int64 array)
    and ``fingerprints.pk``, and a re-run loads both, re-reads every photo's
    EXIF timestamp in a process pool, and clusters. That re-run is measured
    for real (fresh interpreter; ``import keras`` as its modules do; its
    sklearn and matplotlib imports are left out, they are not installed here,
    which only flatters it). Its ``images.pk`` is made with its own decode
    code; its ``fingerprints.pk`` holds random 4096-value vectors, since
    computing 1,000 real VGG16 fingerprints would take ~10 minutes and the
    values do not change the cost of loading and clustering them;
  - its first run is ESTIMATED: its per-photo rate (full decode in a pool,
    VGG16 ``fc2`` with one ``predict`` per photo, random weights) is measured
    on ``--orig-sample`` photos of the corpus and scaled to ``--count``, plus
    its measured TensorFlow import and model build;
  - its cache has no notion of new or changed photos: after adding photos it
    silently clusters the old set, or the user deletes the pickles and pays a
    full first run again (reported as such).

Run (about 2-3 minutes on 2 cores)::

    python benchmarks/bench_rerun.py [--count 1000] [--repeat 5]

The last lines: first run and re-run seconds for ours and for the original
(measured / estimated, as labelled), whether the re-run imported TensorFlow,
and the re-run after adding photos.
"""

import argparse
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from _common import CACHE, Original, cli, log, median, real_photos


def make_corpus(folder, count, seed, prefix="photo"):
    """``count`` small JPEGs cut from the real photos; returns their paths."""
    photos = real_photos()
    names = sorted(photos)
    sources = {n: Image.open(photos[n]).convert("RGB") for n in names}
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for k in range(count):
        name = names[k % len(names)]
        im = sources[name]
        w, h = im.size
        z = rng.uniform(0.5, 1.0)
        cw, ch = int(w * z), int(h * z)
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        s = im.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            s = s.transpose(Image.FLIP_LEFT_RIGHT)
        s = s.rotate(rng.uniform(-5, 5), resample=Image.BICUBIC)
        s = ImageEnhance.Brightness(s).enhance(rng.uniform(0.8, 1.2))
        s = ImageEnhance.Color(s).enhance(rng.uniform(0.8, 1.2))
        side = rng.randint(480, 800)
        scale = side / max(s.size)
        s = s.resize((max(1, round(s.width * scale)), max(1, round(s.height * scale))), Image.BICUBIC)
        path = folder / f"{prefix}_{k:05d}_{name}.jpg"
        s.save(path, quality=rng.choice((80, 88, 92)))
        paths.append(path)
    return paths


def timed(cmd, env):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        log(proc.stdout + proc.stderr)
        raise SystemExit(f"failed with exit status {proc.returncode}: {' '.join(map(str, cmd))}")
    return seconds, proc.stdout


_CHECK = """\
import json, sys
from imagecluster.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


def tree_groups(tree):
    groups = []
    for dirpath, _dirs, files in os.walk(tree):
        links = sorted(os.path.basename(os.path.realpath(os.path.join(dirpath, f)))
                       for f in files if os.path.islink(os.path.join(dirpath, f)))
        if links:
            groups.append(links)
    return sorted(groups)


# --- the original imagecluster's cached re-run (io.get_image_data + calc.cluster + postproc.make_links)

ORIG_BASE = "imagecluster"  # io.ic_base_dir


def _orig_get_files(imagedir):
    import re

    rex = re.compile(r"^.*\.(jpg|jpeg|bmp|png)$", re.I)
    return [os.path.join(imagedir, b) for b in os.listdir(imagedir) if rex.match(b)]


def _orig_timestamp_worker(filename):
    # io.timestamp(source='auto'): EXIF DateTime (tag 306) if present, else mtime.
    import PIL.Image

    try:
        img = PIL.Image.open(filename)
        exif = img._getexif() if "exif" in img.info and hasattr(img, "_getexif") else None
        if exif and 306 in exif:
            return filename, exif[306]
        return filename, os.stat(filename).st_mtime
    except OSError:
        return filename, None


def orig_prepare(imagedir, sample):
    """Write the original's pickles; measure its per-photo fingerprint rate on ``sample`` photos."""
    orig = Original(decode="pool")
    files = _orig_get_files(imagedir)
    arrays = orig.read_image_arrays(files)
    base = os.path.join(imagedir, ORIG_BASE)
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "images.pk"), "wb") as fd:
        pickle.dump(arrays, fd)
    rng = np.random.default_rng(0)
    fps = {f: rng.standard_normal(4096).astype(np.float32) for f in files}
    with open(os.path.join(base, "fingerprints.pk"), "wb") as fd:
        pickle.dump(fps, fd)
    del arrays, fps
    orig.load_model()
    paths = sorted(files)[:sample]
    orig.run(paths[:4])  # warm-up: builds the predict function
    times = []
    for _ in range(2):
        _, d, p = orig.run(paths)
        times.append(d + p)
    return {"import_s": orig.import_seconds, "load_s": orig.load_seconds,
            "per_photo_s": median(times) / len(paths), "n_files": len(files)}


def orig_rerun(imagedir, sim):
    """The original's re-run of an unchanged folder, as its README runs it."""
    import multiprocessing as mp

    t0 = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: F401  calc.py / io.py import keras at module level
    from keras.applications.vgg16 import VGG16, preprocess_input  # noqa: F401
    from scipy.cluster import hierarchy
    from scipy.spatial import distance

    base = os.path.join(imagedir, ORIG_BASE)
    with open(os.path.join(base, "images.pk"), "rb") as fd:
        images = pickle.load(fd)
    with open(os.path.join(base, "fingerprints.pk"), "rb") as fd:
        fps = pickle.load(fd)
    with mp.Pool(mp.cpu_count()) as pool:
        timestamps = dict(pool.map(_orig_timestamp_worker, _orig_get_files(imagedir)))
    # calc.cluster(fps, sim)
    files = list(fps.keys())
    dfps = distance.pdist(np.array(list(fps.values())), "euclidean")
    Z = hierarchy.linkage(dfps, method="average", metric="euclidean")
    cut = hierarchy.fcluster(Z, t=dfps.max() * (1.0 - sim), criterion="distance")
    cluster_dct = {}
    for iimg, iclus in enumerate(cut):
        cluster_dct.setdefault(iclus, []).append(files[iimg])
    clusters = {}
    for c in cluster_dct.values():
        if len(c) >= 2:
            clusters.setdefault(len(c), []).append(c)
    # postproc.make_links(clusters, <dir>/imagecluster/clusters)
    cluster_dr = os.path.join(base, "clusters")
    if os.path.exists(cluster_dr):
        shutil.rmtree(cluster_dr)
    for csize, group in clusters.items():
        for iclus, c in enumerate(group):
            dr = os.path.join(cluster_dr, f"cluster_with_{csize}", f"cluster_{iclus}")
            for fn in c:
                link = os.path.join(dr, os.path.basename(fn))
                os.makedirs(dr, exist_ok=True)
                os.symlink(os.path.abspath(fn), link)
    return {"seconds_in_process": time.perf_counter() - t0, "n_images": len(images),
            "n_timestamps": len(timestamps), "n_clusters": sum(len(g) for g in clusters.values())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=CACHE / "rerun",
                    help="scratch folder, emptied every run (default: %(default)s)")
    ap.add_argument("--count", type=int, default=1000, help="photos in the folder (default: 1000)")
    ap.add_argument("--add", type=int, default=10, help="photos added before the last re-run (default: 10)")
    ap.add_argument("--repeat", type=int, default=5, help="timed re-runs (default: 5)")
    ap.add_argument("--sim", type=float, default=None, help="sim for our runs (default: the package's DEFAULT_SIM)")
    ap.add_argument("--orig-sim", type=float, default=0.5, help="sim for the original's re-run (its default: 0.5)")
    ap.add_argument("--orig-sample", type=int, default=24,
                    help="photos on which the original's per-photo rate is measured (default: 24)")
    ap.add_argument("--seed", type=int, default=1, help="corpus random seed (default: 1)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "orig-prepare":
        print(json.dumps(orig_prepare(args.dir, args.orig_sample)))
        return 0
    if args.worker == "orig-rerun":
        print(json.dumps(orig_rerun(args.dir, args.orig_sim)))
        return 0

    if args.sim is None:
        from imagecluster.cluster import DEFAULT_SIM

        args.sim = DEFAULT_SIM
    shutil.rmtree(args.work, ignore_errors=True)
    ours_dir, orig_dir, tree = args.work / "photos", args.work / "original", args.work / "tree"
    log(f"building {args.count} photos in {ours_dir} ...")
    t0 = time.perf_counter()
    paths = make_corpus(ours_dir, args.count, args.seed)
    log(f"  {time.perf_counter() - t0:.0f} s, {sum(p.stat().st_size for p in paths) / 1e6:.0f} MB")
    subprocess.run(["sync"], check=False)

    cmd, env = cli("cluster", ours_dir, "--sim", args.sim, "--out", tree)
    log("ours, first run: $ " + " ".join(cmd))
    first_s, _ = timed(cmd, env)
    first_groups = tree_groups(tree)
    log(f"  {first_s:.1f} s, {len(first_groups)} clusters")
    reruns = []
    for r in range(args.repeat):
        s, _ = timed(cmd, env)
        reruns.append(s)
        log(f"  re-run {r + 1}/{args.repeat}: {s:.2f} s")
    check_cmd = [sys.executable, "-c", _CHECK, *cmd[3:]]
    _, out = timed(check_cmd, env)
    check = json.loads(out.strip().splitlines()[-1])
    same = tree_groups(tree) == first_groups

    # a few new photos (from a different seed) arrive
    make_corpus(ours_dir, args.add, args.seed + 1000, prefix="new")
    add_s, _ = timed(cmd, env)
    log(f"  after adding {args.add} photos: {add_s:.1f} s")

    # the original, on its own copy of the same photos (its pickles live in <dir>/imagecluster)
    orig_dir.mkdir(parents=True)
    for p in paths:
        os.link(p, orig_dir / p.name)
    me = [sys.executable, str(Path(__file__).resolve())]
    log("original: writing its pickles, measuring its per-photo rate ...")
    _, out = timed([*me, "--worker", "orig-prepare", "--dir", orig_dir, "--orig-sample", str(args.orig_sample)], None)
    prep = json.loads(out.strip().splitlines()[-1])
    orig_reruns = []
    for r in range(max(3, args.repeat // 2)):
        s, out = timed([*me, "--worker", "orig-rerun", "--dir", orig_dir, "--orig-sim", str(args.orig_sim)], None)
        orig_reruns.append(s)
        log(f"  original re-run {r + 1}: {s:.2f} s")
    rerun_info = json.loads(out.strip().splitlines()[-1])
    assert rerun_info["n_images"] == args.count, rerun_info
    orig_first = prep["import_s"] + prep["load_s"] + args.count * prep["per_photo_s"]
    pk_mb = (orig_dir / ORIG_BASE / "images.pk").stat().st_size / 1e6

    print()
    print(f"folder: {args.count} JPEGs of 480-800 px from real photos; ours: `imagecluster cluster --sim {args.sim}` "
          f"in a fresh interpreter; wall seconds")
    print(f"ours      first run:             {first_s:7.1f} s  (measured; {args.count / first_s:.0f} photos/s overall, "
          f"{len(first_groups)} clusters)")
    print(f"ours      re-run, unchanged:     {median(reruns):7.2f} s  (measured, median of {args.repeat}; "
          f"TensorFlow imported: {'YES' if check['tensorflow'] else 'no'}; same clusters: {'yes' if same else 'NO'})")
    print(f"ours      re-run, +{args.add} photos:     {add_s:7.1f} s  (measured; fingerprints only the new ones)")
    print(f"original  first run:             {orig_first:7.0f} s  "
          f"(ESTIMATED: {prep['per_photo_s']:.2f} s/photo measured "
          f"on {args.orig_sample} photos x {args.count} + TF import {prep['import_s']:.1f} s + VGG16 build "
          f"{prep['load_s']:.1f} s)")
    print(f"original  re-run, unchanged:     {median(orig_reruns):7.2f} s  (measured, median of {len(orig_reruns)}: "
          f"imports Keras, loads its {pk_mb:.0f} MB images.pk + fingerprints.pk, re-reads all EXIF, clusters)")
    print(f"original  re-run, +{args.add} photos:     {orig_first:7.0f} s  (ESTIMATED: its pickle cache cannot "
          f"update, so the user deletes it and re-runs everything; left alone, it ignores the new photos)")
    print(f"RE-RUN unchanged: ours {median(reruns):.2f} s vs original {median(orig_reruns):.2f} s; "
          f"FIRST RUN: ours {first_s:.0f} s vs original ~{orig_first:.0f} s (estimated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
