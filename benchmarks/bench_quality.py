#!/usr/bin/env python3
"""Clustering quality on real photos: pairwise precision / recall / F1 over a sweep of ``sim``.

What it measures. The labelled set is built by ``../shared/datasets/make_dev_photos.py``
(real photos from Debian's darknet and scikit-image's wheel; camera-moved
bursts, a real stereo pair, distractors) and scored with ``prf`` from
``../shared/datasets/score.py``: a pair of photos is positive when the truth
puts them in one group. ``--seeds 1,2,3,4,5`` (the default) also builds the same kind of set
with other random seeds (a copy of that script with only its seed changed,
kept in the cache folder), so the recommended ``sim`` does not rest on one
draw of 47 photos; seed 1 is the script exactly as shipped.

For every set, in one run:

* ours: lite0 fingerprints (``imagecluster.fingerprints``, once), then
  ``imagecluster.cluster.cluster`` for each ``sim`` in the sweep, with the
  absolute cut (cosine, the default) and with the relative cut (the
  original's rule, euclidean, ``(1 - sim) * max distance``);
* baseline: perceptual hashes (``imagehash.phash``, 64 and 256 bits), hamming
  distance, average linkage, cut at every possible hamming threshold; its best
  F1 over that sweep is reported (its most favourable setting, chosen with
  the answers known);
* the original tool itself (VGG16 ImageNet ``fc2`` + relative cut) is NOT
  measured: Keras cannot download the ImageNet weights here, and VGG16 with
  random weights would measure nothing. The relative-cut rows show its rule
  applied to our fingerprints.
* end to end: the real command ``imagecluster cluster PHOTOS --sim <DEFAULT_SIM>``
  (a fresh interpreter, writing its symlink tree) on the seed-1 set, the
  tree scored with ``score.py``'s ``clusters_from_tree``.

The recommended ``sim`` is the middle of the plateau where the absolute cut's
F1 (mean over the seeds) is within ``--tolerance`` of its maximum, not its edge.

Run (under a minute once the sets are built)::

    python benchmarks/bench_quality.py [--seeds 1,2,3,4,5] [--sweep 0.30:0.95:0.05]

The last lines: the F1 table (rows = sim; columns = ours absolute / relative,
mean over seeds, with P/R for absolute), the phash baselines' best F1, the
end-to-end F1 of the real CLI at the default, and ``RECOMMENDED sim``.
"""

import argparse
import importlib.util
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import CACHE, SHARED, check_sane, cli, fetch_sources, log, quiet_tensorflow

DATASETS = SHARED / "datasets"


def _load_score():
    path = DATASETS / "score.py"
    spec = importlib.util.spec_from_file_location("shared_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_set(seed, root):
    """Run make_dev_photos.py (seed 1: as shipped; else a copy with its seed changed)."""
    out = Path(root) / f"seed{seed}"
    if (out / "truth.json").exists():
        return out
    script = DATASETS / "make_dev_photos.py"
    Path(root).mkdir(parents=True, exist_ok=True)
    if seed != 1:
        text = script.read_text()
        if text.count("random.Random(1)") != 1:
            raise SystemExit(f"cannot change the seed of {script}: its 'random.Random(1)' moved")
        copy = Path(root) / f"make_dev_photos_seed{seed}.py"
        copy.write_text(text.replace("random.Random(1)", f"random.Random({seed})"))
        script = copy
    # Hand it the packages already fetched, so it does not download them again.
    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    for pattern in ("darknet*.deb", "scikit_image*.whl"):
        for f in (fetch_sources().parent).glob(pattern):
            shutil.copy(f, src / f.name)
    log(f"building the labelled set (seed {seed}) in {out} ...")
    subprocess.run([sys.executable, str(script), str(out)], check=True, stdout=sys.stderr,
                   stderr=subprocess.DEVNULL)
    return out


def _groups_to_names(groups, names):
    return [[names[i] for i in g] for g in groups]


def sweep_ours(fps, names, truth, sims, prf):
    from imagecluster.cluster import cluster

    out = {}
    for cut in ("absolute", "relative"):
        out[cut] = [prf(truth, _groups_to_names(cluster(fps, sim, cut=cut), names)) for sim in sims]
    return out


def _hash_distances(paths, hash_size):
    import imagehash
    from PIL import Image, ImageOps

    hashes = []
    for p in paths:
        with Image.open(p) as im:
            hashes.append(imagehash.phash(ImageOps.exif_transpose(im).convert("RGB"), hash_size=hash_size))
    bits = np.array([h.hash.ravel() for h in hashes], dtype=bool)
    return (bits[:, None, :] != bits[None, :, :]).sum(-1), bits.shape[1]


def sweep_phash(paths, names, truth, prf, hash_size):
    """Best F1 of phash + hamming + average linkage over every hamming threshold."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    dist, nbits = _hash_distances(paths, hash_size)
    tree = linkage(squareform(dist.astype(float), checks=False), method="average")
    best = None
    for t in range(nbits + 1):
        labels = fcluster(tree, t=t + 1e-9, criterion="distance")
        groups = {}
        for name, label in zip(names, labels):
            groups.setdefault(label, []).append(name)
        score = prf(truth, [g for g in groups.values() if len(g) > 1])
        if best is None or score[2] > best[1][2]:
            best = (t, score)
    return nbits, best


def plateau(sims, f1s, tolerance):
    """The run of consecutive sims around the best F1 where F1 >= best - tolerance; the longest if several."""
    top = max(f1s)
    ok = [f >= top - tolerance for f in f1s]
    runs, start = [], None
    for i, flag in enumerate(ok + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    lo, hi = max(runs, key=lambda r: (r[1] - r[0], max(f1s[r[0]:r[1] + 1])))
    return lo, hi


def run_cli(photos, sim, truth, score):
    out = Path(tempfile.mkdtemp(prefix="imagecluster-bench-e2e-"))
    tree = out / "tree"
    try:
        # a fresh copy: the command starts with no fingerprint store
        shutil.copytree(photos, out / "photos", ignore=shutil.ignore_patterns(".*"))
        cmd, env = cli("cluster", out / "photos", "--sim", sim, "--out", tree)
        log("$ " + " ".join(cmd))
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            log(proc.stdout + proc.stderr)
            raise SystemExit(f"imagecluster cluster failed with exit status {proc.returncode}")
        clusters = score.clusters_from_tree(tree)
        return len(clusters), score.prf(truth, clusters)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=CACHE / "quality",
                    help="where the labelled sets are built (default: %(default)s)")
    ap.add_argument("--seeds", default="1,2,3,4,5",
                    help="comma-separated seeds of labelled sets; 1 = make_dev_photos.py as shipped "
                         "(default: 1,2,3,4,5)")
    ap.add_argument("--sweep", default="0.30:0.95:0.05",
                    help="sim sweep START:STOP:STEP, inclusive (default: %(default)s)")
    ap.add_argument("--tolerance", type=float, default=0.005,
                    help="F1 within this of the best counts as the plateau (default: 0.005, i.e. equal to the best)")
    ap.add_argument("--model", default="lite0", help="our model (default: lite0)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the labelled sets")
    args = ap.parse_args(argv)

    start, stop, step = (float(x) for x in args.sweep.split(":"))
    sims = [round(s, 4) for s in np.arange(start, stop + step / 2, step)]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.rebuild:
        shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)

    score = _load_score()
    quiet_tensorflow()
    import imagecluster
    from imagecluster.cluster import DEFAULT_SIM
    from imagecluster.models import load_model

    model = load_model(args.model)
    ours, hashes, sizes = [], {8: [], 16: []}, []
    for seed in seeds:
        root = build_set(seed, args.work)
        truth = json.loads((root / "truth.json").read_text())
        names = sorted(truth)
        paths = [root / "photos" / name for name in names]
        fps = imagecluster.fingerprints(paths, model=model)
        if len(fps) != len(paths):
            raise SystemExit(f"seed {seed}: fingerprints() returned {len(fps)} of {len(paths)} photos")
        matrix = np.stack([fps[p] for p in paths])
        check_sane(matrix, f"labelled set seed {seed}")
        ours.append(sweep_ours(matrix, names, truth, sims, score.prf))
        for hash_size in hashes:
            hashes[hash_size].append(sweep_phash(paths, names, truth, score.prf, hash_size))
        n_pairs = sum(len(list(itertools.combinations(range(c), 2)))
                      for c in np.unique(list(truth.values()), return_counts=True)[1])
        sizes.append((len(paths), len(set(truth.values())), n_pairs))

    def mean(cut, k):
        return [float(np.mean([o[cut][i][k] for o in ours])) for i in range(len(sims))]

    f1_abs, p_abs, r_abs, f1_rel = mean("absolute", 2), mean("absolute", 0), mean("absolute", 1), mean("relative", 2)
    if max(f1_abs) == 0:
        raise SystemExit("our F1 is 0 at every sim: nothing to recommend (is the model broken?)")
    lo, hi = plateau(sims, f1_abs, args.tolerance)
    recommended = round((sims[lo] + sims[hi]) / 2, 3)
    rlo, rhi = plateau(sims, f1_rel, args.tolerance)

    seed1 = build_set(seeds[0], args.work)
    truth1 = json.loads((seed1 / "truth.json").read_text())
    log(f"end to end at the default sim {DEFAULT_SIM} ...")
    e2e = run_cli(seed1 / "photos", DEFAULT_SIM, truth1, score)
    e2e_rec = run_cli(seed1 / "photos", recommended, truth1, score) if abs(recommended - DEFAULT_SIM) > 1e-9 else None

    print()
    print(f"labelled sets: seeds {','.join(map(str, seeds))}: "
          + "; ".join(f"{n} photos, {g} groups, {p} true pairs" for n, g, p in sizes))
    print(f"model {model.name} (dim {model.dim}); F1 = mean over the {len(seeds)} sets; "
          f"per-set F1 of the absolute cut in brackets")
    print("   sim | abs P  abs R  abs F1 | rel F1 | abs F1 per set")
    for i, sim in enumerate(sims):
        mark = " <" if lo <= i <= hi else ""
        per = " ".join(f"{o['absolute'][i][2]:.2f}" for o in ours)
        print(f" {sim:5.3f} | {p_abs[i]:.3f}  {r_abs[i]:.3f}  {f1_abs[i]:.3f}  | {f1_rel[i]:.3f}  | [{per}]{mark}")
    print(f"ours absolute: best F1 {max(f1_abs):.3f}; plateau (F1 >= best - {args.tolerance}) "
          f"sim {sims[lo]:.3f}..{sims[hi]:.3f}")
    print(f"ours relative (original's rule): best F1 {max(f1_rel):.3f}; plateau sim {sims[rlo]:.3f}..{sims[rhi]:.3f}")
    for hash_size, results in hashes.items():
        nbits = results[0][0]
        best_f1 = np.mean([b[1][2] for _, b in results])
        ts = ",".join(str(b[0]) for _, b in results)
        print(f"baseline phash {nbits}-bit, hamming, average linkage: best F1 {best_f1:.3f} "
              f"(mean over sets of each set's best; at hamming <= {ts} of {nbits})")
    print("original tool (VGG16 ImageNet fc2): not measured, its ImageNet weights cannot be downloaded here")
    n, (p, r, f) = e2e
    print(f"end to end `imagecluster cluster --sim {DEFAULT_SIM}` (DEFAULT_SIM) on seed {seeds[0]}: "
          f"{n} clusters, P {p:.3f} R {r:.3f} F1 {f:.3f}")
    if e2e_rec:
        n, (p, r, f) = e2e_rec
        print(f"end to end `imagecluster cluster --sim {recommended}` on seed {seeds[0]}: "
              f"{n} clusters, P {p:.3f} R {r:.3f} F1 {f:.3f}")
    print(f"RECOMMENDED sim: {recommended:.3f} (~{round(recommended * 20) / 20:.2f}; middle of the absolute-cut "
          f"plateau {sims[lo]:.3f}..{sims[hi]:.3f}; package DEFAULT_SIM is {DEFAULT_SIM})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
