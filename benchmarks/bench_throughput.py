#!/usr/bin/env python3
"""Fingerprinting throughput on camera JPEGs: the original pipeline against ours, in one run.

What it measures, on ``--count`` camera-sized JPEGs (12 MP, 2-5 MB, built by
``make_camera_jpegs.py`` into the cache folder if missing), photos per second
from file to fingerprint. The files are read once first (warm page cache);
every variant is started, loads its model and does a small warm-up; then
``--repeat`` rounds each time one full pass of every variant, back to back,
so the machine's slow and fast spells hit all variants alike. Rates are
medians over the rounds; the speed-ups are medians of the per-round ratios.

(a) original: the original imagecluster, reproduced as it was (``_common.Original``):
    full-size decode + bicubic squash to 224x224 in a ``cpu_count`` process pool,
    ``preprocess_input``, then VGG16 cut at ``fc2`` with ONE photo per
    ``model.predict`` call. Random weights (ImageNet weights cannot be fetched
    here): same cost, timing only.
(b) ours: ``imagecluster.fingerprints(paths, model=<loaded lite0>)``, reduced-scale
    JPEG decode in threads overlapped with batched inference.
(c) ours-vgg16: the same pipeline with VGG16 (random weights), to separate
    "better pipeline" ((c) vs (a)) from "smaller model" ((b) vs (c)).
(d) ceiling: what this machine allows ours at best, measured in the same
    rounds: the CPU time one photo costs to decode (``load_image`` in
    ``cpu_count`` threads, nothing else running in that process) plus the CPU
    time of its lite0 inference (a pre-decoded batch). With every core busy
    and nothing wasted, ``cores / (decode + inference)`` photos/s is the most
    any overlap of the two can reach; (b)'s own CPU time per photo and cores
    kept busy are printed beside it, so a shortfall says whether it is
    overlap (cores idle) or overhead (CPU time above the sum). Being made of
    CPU times, the ceiling drops only a little when other programs share the
    machine (its caches); (b) drops more, and then keeps fewer cores busy.

Every variant runs in its own fresh interpreter, so each peak RSS (``ru_maxrss``)
is its own. Model loading is not in the rates; it is timed separately: the
lite0 model is loaded in a new process with an empty weights cache (cold:
converts the shipped weights) and again with that cache filled (cached); the
TensorFlow import is reported beside it. Threads are left at their defaults.

With ``--previews`` the JPEGs also carry the camera's own 1440 x 1080 copy
of the photo (an MPF large thumbnail, as many cameras write one), which (b),
(c) and (d) then decode instead of the photo; the original decodes the photo
as always.

Run (about 6 minutes on 2 cores)::

    python benchmarks/bench_throughput.py [--count 64] [--repeat 5] [--photos DIR] [--previews]

The last lines are the figures: one line per variant (photos/s, median of the
rounds; peak RSS), the ceiling (d) and where the CPU time of one photo goes,
the model load times, the pipeline-only and model-only factors, and last the
speed-up of ours over the original (target >= 25x).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import CACHE, Original, check_sane, log, median, peak_rss_mb, quiet_tensorflow, run_worker

HERE = Path(__file__).resolve().parent


def _photos(folder, count):
    paths = sorted(Path(folder).glob("*.jpg"))[:count]
    if len(paths) < count:
        raise SystemExit(f"only {len(paths)} JPEGs in {folder}, wanted {count}")
    return paths


def _serve(run, paths, info):
    """Worker loop: say ready, then time one pass per "pass" line on stdin; "quit" ends it.

    Each pass reports its wall time and the CPU time of the whole process (all
    its threads), plus whatever figures ``run`` returns as a dict.
    """
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() != "pass":
            break
        t0, c0 = time.perf_counter(), time.process_time()
        extra = run(paths) or {}
        print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                          **extra}), flush=True)
    print(json.dumps({"rss_mb": peak_rss_mb()}), flush=True)


def worker_original(paths, decode):
    orig = Original(decode=decode)
    orig.load_model()
    orig.run(paths[:4])  # warm-up: builds the predict function
    _serve(lambda ps: orig.run(ps) and None, paths,  # its (fingerprints, times) are not figures
           {"import_s": orig.import_seconds, "load_s": orig.load_seconds})


def worker_ours(paths, model_name, batch_size):
    quiet_tensorflow()
    import imagecluster
    from imagecluster.models import load_model

    t0 = time.perf_counter()
    model = load_model(model_name, weights="random" if model_name == "vgg16" else None)
    load_s = time.perf_counter() - t0

    def run(ps):
        fps = imagecluster.fingerprints(ps, model=model, batch_size=batch_size)
        if len(fps) != len(ps):
            raise SystemExit(f"fingerprints() returned {len(fps)} of {len(ps)} photos")

    warm = imagecluster.fingerprints(paths[:batch_size], model=model, batch_size=batch_size)  # warm-up
    check_sane(list(warm.values()), f"ours {model_name}")
    _serve(run, paths, {"load_s": load_s, "dim": model.dim})


def worker_ceiling(paths):
    """(d): CPU time per photo of decoding alone and of lite0 inference alone, each pass."""
    quiet_tensorflow()
    import numpy as np

    from imagecluster.images import load_image
    from imagecluster.models import load_model

    model = load_model("lite0")
    size = model.input_size
    images = np.stack([load_image(p, size) for p in paths])
    model.fingerprint(images[:32])  # warm-up

    def run(ps):
        c0 = time.process_time()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for _ in pool.map(lambda p: load_image(p, size), ps):
                pass
        c1 = time.process_time()
        model.fingerprint(images)
        c2 = time.process_time()
        return {"decode_cpu_s": c1 - c0, "infer_cpu_s": c2 - c1}

    _serve(run, paths, {})


class Worker:
    """A variant in its own interpreter, timing one pass whenever asked."""

    def __init__(self, args):
        cmd = [sys.executable, str(Path(__file__).resolve()), *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = self._read()
        self.times = []
        self.passes = []  # everything each pass reported

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.proc.args} died (exit status {self.proc.wait()})")
        return json.loads(line)

    def run_pass(self):
        self.proc.stdin.write("pass\n")
        self.passes.append(self._read())
        self.times.append(self.passes[-1]["seconds"])
        return self.times[-1]

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.info.update(self._read())
        self.proc.wait()


def ceiling_rate(figures, count):
    """Photos/s with every core busy and no overhead: cores over the CPU time of decode + inference."""
    return (os.cpu_count() or 1) * count / (figures["decode_cpu_s"] + figures["infer_cpu_s"])


def worker_load(cache_dir):
    quiet_tensorflow()
    t0 = time.perf_counter()
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    import_s = time.perf_counter() - t0
    from imagecluster.models import load_model

    t0 = time.perf_counter()
    load_model("lite0", cache_dir=cache_dir)
    return {"import_s": import_s, "load_s": time.perf_counter() - t0}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=None,
                    help="folder of camera JPEGs (default: camera/ in the cache folder, or camera-preview/ with "
                         "--previews; built if missing)")
    ap.add_argument("--previews", action="store_true",
                    help="camera JPEGs that carry the camera's own 1440x1080 preview (MPF), as many cameras write")
    ap.add_argument("--count", type=int, default=64, help="photos per pass (default: 64)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds of timed passes (default: 5)")
    ap.add_argument("--batch-size", type=int, default=32, help="ours: photos per inference call (default: 32)")
    ap.add_argument("--orig-decode", choices=("pool", "serial"), default="pool",
                    help="original: decode in a cpu_count process pool as it did, or serially (default: pool)")
    ap.add_argument("--skip-vgg16", action="store_true", help="leave out variant (c)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.photos is None:
        args.photos = CACHE / ("camera-preview" if args.previews else "camera")

    if args.worker == "load":
        print(json.dumps(worker_load(args.cache_dir)))
        return 0
    if args.worker:
        paths = _photos(args.photos, args.count)
        if args.worker == "original":
            worker_original(paths, args.orig_decode)
        elif args.worker == "ceiling":
            worker_ceiling(paths)
        else:
            worker_ours(paths, args.worker, args.batch_size)
        return 0

    if len(list(args.photos.glob("*.jpg"))) < args.count:
        log(f"building {args.count} camera JPEGs in {args.photos} ...")
        subprocess.run([sys.executable, str(HERE / "make_camera_jpegs.py"), str(args.photos),
                        "--count", str(args.count), *(["--preview"] if args.previews else [])],
                       check=True, stdout=sys.stderr)
    paths = _photos(args.photos, args.count)
    for p in paths:  # every variant reads from a warm page cache
        p.read_bytes()
    sizes = [p.stat().st_size / 1e6 for p in paths]

    me = Path(__file__).resolve()
    log("lite0 model load: cold weights cache, then cached ...")
    cache = tempfile.mkdtemp(prefix="imagecluster-bench-cache-")
    try:
        cold = run_worker(me, ["--worker", "load", "--cache-dir", cache])
        warm = [run_worker(me, ["--worker", "load", "--cache-dir", cache]) for _ in range(2)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    common = ["--photos", str(args.photos), "--count", str(args.count),
              "--batch-size", str(args.batch_size), "--orig-decode", args.orig_decode]
    names = ["original", "lite0", "ceiling"] + ([] if args.skip_vgg16 else ["vgg16"])
    log("starting the variants (each in its own interpreter, model loaded, warmed up) ...")
    workers = {name: Worker(["--worker", name, *common]) for name in names}
    # Rounds of one pass per variant, back to back, so that the machine's
    # slow and fast spells hit every variant alike; ratios are taken per round.
    for r in range(args.repeat):
        for name, w in workers.items():
            s = w.run_pass()
            if name == "ceiling":
                log(f"  round {r + 1}/{args.repeat} ceiling: {ceiling_rate(w.passes[-1], args.count):.2f} photos/s")
            else:
                log(f"  round {r + 1}/{args.repeat} {name}: {args.count / s:.2f} photos/s")
    for w in workers.values():
        w.close()

    n = args.count
    orig, ours, vgg = workers["original"], workers["lite0"], workers.get("vgg16")
    ceil = workers["ceiling"]
    cores = os.cpu_count() or 1

    def per_photo_ms(w, key):
        return 1000 * median([p[key] for p in w.passes]) / n

    def rate(w):
        return n / median(w.times)

    def ratio(a, b):  # median over rounds of (rate a / rate b)
        return median([tb / ta for ta, tb in zip(a.times, b.times)])

    print()
    kind = "camera JPEGs 4000x3000" + (" with a 1440x1080 MPF preview" if args.previews else "")
    print(f"corpus: {n} {kind}, median {median(sizes):.1f} MB; {os.cpu_count()} cores; "
          f"{args.repeat} rounds of one timed pass per variant, medians")
    print(f"(a) original  VGG16 fc2, full decode ({args.orig_decode}), 1 photo/predict: "
          f"{rate(orig):7.2f} photos/s  peak RSS {orig.info['rss_mb']:.0f} MB")
    print(f"(b) ours      lite0, draft decode + batched:               "
          f"{rate(ours):7.2f} photos/s  peak RSS {ours.info['rss_mb']:.0f} MB")
    if vgg:
        print(f"(c) ours      vgg16 (random), draft decode + batched:      "
              f"{rate(vgg):7.2f} photos/s  peak RSS {vgg.info['rss_mb']:.0f} MB")
    print(f"(d) ceiling   {cores} cores / (decode {per_photo_ms(ceil, 'decode_cpu_s'):.1f} + inference "
          f"{per_photo_ms(ceil, 'infer_cpu_s'):.1f} CPU-ms per photo): "
          f"{median([ceiling_rate(p, n) for p in ceil.passes]):7.2f} photos/s")
    print(f"ours (b) costs {per_photo_ms(ours, 'cpu_s'):.1f} CPU-ms per photo and keeps "
          f"{median([p['cpu_s'] / p['seconds'] for p in ours.passes]):.2f} of {cores} cores busy; "
          f"it reaches {median([n / p['seconds'] / ceiling_rate(q, n) for p, q in zip(ours.passes, ceil.passes)]):.0%}"
          f" of the ceiling")
    print(f"model load (not in rates): original VGG16 build {orig.info['load_s']:.1f} s; "
          f"lite0 cold {cold['load_s']:.1f} s, cached {median([w['load_s'] for w in warm]):.1f} s; "
          f"TensorFlow import {median([w['import_s'] for w in [cold, *warm]]):.1f} s")
    if vgg:
        print(f"pipeline alone (c)/(a): {ratio(vgg, orig):.1f}x   model alone (b)/(c): {ratio(ours, vgg):.1f}x")
    print(f"SPEED-UP ours/original (b)/(a): {ratio(ours, orig):.1f}x  (median of per-round ratios; target >= 25x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
