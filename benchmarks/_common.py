"""Helpers shared by the benchmark scripts (not part of the package).

* :func:`real_photos` fetches real photos from two registry packages, once, into
  a cache folder: the sample photos of Debian's ``darknet`` package and the
  photos scikit-image's wheel ships.
* :class:`Original` reproduces the original imagecluster's fingerprinting
  (elcorto/imagecluster ``io.read_image_arrays`` + ``calc.fingerprints``):
  full-size decode, bicubic squash to 224x224 in a process pool, then VGG16 cut
  at ``fc2`` with one ``model.predict`` call per photo.
* small timing helpers: medians, peak RSS, a worker-subprocess protocol.

TensorFlow is only imported inside the functions that need it.
"""

import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"

# The benchmarks measure this checkout's package, installed or not.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Where fetched packages, extracted photos and generated corpora are kept.
CACHE = Path(os.environ.get("IMAGECLUSTER_BENCH_CACHE", Path.home() / ".cache" / "imagecluster-bench"))

# The package keeps converted model weights in $XDG_CACHE_HOME/imagecluster.
# The benchmarks use their own, so that a stale file another checkout left in
# ~/.cache/imagecluster cannot change what they measure (inherited by every
# command they start).
os.environ["XDG_CACHE_HOME"] = str(CACHE / "xdg")

#: Real colour photos (name -> where it lies in the extracted packages).
PHOTO_NAMES = (
    # Debian darknet sample photos
    "dog", "eagle", "giraffe", "horses", "kite", "person", "scream",
    # scikit-image's photos
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
    "motorcycle_left", "motorcycle_right", "ihc",
)


def log(*args):
    """Progress goes to stderr, so that stdout ends with the figures."""
    print(*args, file=sys.stderr, flush=True)


def fetch_sources(cache=CACHE):
    """Download (once) darknet's .deb and scikit-image's wheel; return the extraction folder."""
    src = Path(cache) / "src"
    x = src / "x"
    if (x / ".done").exists():
        return x
    src.mkdir(parents=True, exist_ok=True)
    if not glob.glob(str(src / "darknet*.deb")):
        log("apt-get download darknet ...")
        subprocess.run(["apt-get", "download", "-q", "darknet"], cwd=src, check=True,
                       stdout=subprocess.DEVNULL)
    if not glob.glob(str(src / "scikit_image*.whl")):
        log("pip download scikit-image ...")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(src),
                        "scikit-image"], check=True)
    x.mkdir(exist_ok=True)
    subprocess.run(["dpkg", "-x", glob.glob(str(src / "darknet*.deb"))[0], str(x)], check=True)
    with zipfile.ZipFile(glob.glob(str(src / "scikit_image*.whl"))[0]) as z:
        for n in z.namelist():
            if n.startswith("skimage/data/") and n.endswith((".png", ".jpg")):
                z.extract(n, x)
    (x / ".done").touch()
    return x


def real_photos(cache=CACHE):
    """Return ``{name: path}`` of the real colour photos in :data:`PHOTO_NAMES`."""
    x = fetch_sources(cache)
    found = {Path(p).stem: Path(p) for p in
             glob.glob(str(x / "usr/share/darknet/data/*.jpg")) + glob.glob(str(x / "skimage/data/*"))}
    missing = [n for n in PHOTO_NAMES if n not in found]
    if missing:
        raise SystemExit(f"photos missing from the fetched packages: {missing}")
    return {n: found[n] for n in PHOTO_NAMES}


def check_sane(matrix, what):
    """Stop if fingerprints are degenerate (zero rows, or all photos alike): nothing else would be valid."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1)
    if (norms < 1e-6).any():
        raise SystemExit(f"{what}: {int((norms < 1e-6).sum())} of {len(matrix)} fingerprints are all zero; "
                         "the model is broken (stale weights cache?)")
    unit = matrix / norms[:, None]
    if len(unit) > 1 and float((unit @ unit.T).min()) > 0.999:
        raise SystemExit(f"{what}: all {len(matrix)} fingerprints are the same; the model is broken")


def median(xs):
    return statistics.median(xs)


def peak_rss_mb():
    """Peak resident set size of this process so far, in MB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cli(*args):
    """The ``imagecluster`` command line of this checkout, and the environment to run it in."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return [sys.executable, "-m", "imagecluster", *map(str, args)], env


def run_worker(script, args, *, env=None):
    """Run ``script --worker ...`` in a fresh interpreter; return the JSON object it printed last.

    Each variant runs in its own process so that its peak RSS and its imports
    are its own.
    """
    cmd = [sys.executable, str(script), *map(str, args)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_alternating(script, sources, args, reps, describe):
    """Run ``script --worker *args`` for each variant, ``reps`` rounds, the variants taking turns.

    This machine's disk and CPU speed drift by several times within minutes:
    variants run one after the other would compare two different machines.

    Parameters
    ----------
    sources : dict of str to path-like
        Variant name -> folder holding its ``imagecluster`` package.
    describe : callable
        A worker's result -> a short text for the log.

    Returns
    -------
    dict of str to list
        Variant name -> its workers' results, in order.
    """
    results: dict[str, list] = {name: [] for name in sources}
    for rep in range(reps):
        for name, source in sources.items():
            result = run_worker(script, ["--worker", *args], env={**os.environ, "PYTHONPATH": str(source)})
            log(f"{name} ({result['package']}), run {rep + 1} of {reps}: {describe(result)}")
            results[name].append(result)
    return results


def package_at(commit, folder):
    """The ``imagecluster`` package of ``commit`` (``git archive``), extracted into ``folder``; returns ``folder``.

    The "before" of a benchmark: put ``folder`` first on ``PYTHONPATH``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "imagecluster"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class Original:
    """The original imagecluster's fingerprinting, reproduced as it was.

    elcorto/imagecluster (``imagecluster/io.py`` and ``imagecluster/calc.py``):

    * ``read_image_arrays``: ``mp.Pool(cpu_count)`` maps, per file,
      ``PIL.Image.open(f).convert('RGB').resize((224, 224), resample=3)``
      (full-size decode, bicubic squash) and ``img_to_array(img, dtype=int)``;
    * ``calc.fingerprints``: per photo ``preprocess_input(img[None])`` and
      ``model.predict(...)[0, :]``, one photo per ``predict`` call;
    * ``get_model``: ``VGG16(weights='imagenet', include_top=True)`` cut at
      ``fc2`` (4096 values). ImageNet weights cannot be fetched here, so
      ``weights=None`` (random): identical cost, meaningless values, timing only.

    ``decode="serial"`` decodes in this process instead of a pool.
    """

    def __init__(self, decode="pool"):
        quiet_tensorflow()
        t0 = time.perf_counter()
        import keras  # noqa: F401  (the original imported keras at module level)

        self.import_seconds = time.perf_counter() - t0
        self.decode = decode
        self.model = None
        self.load_seconds = None

    def load_model(self):
        import keras
        from keras.applications.vgg16 import VGG16

        t0 = time.perf_counter()
        base = VGG16(weights=None, include_top=True)
        self.model = keras.Model(inputs=base.input, outputs=base.get_layer("fc2").output)
        self.load_seconds = time.perf_counter() - t0
        return self.model

    def read_image_arrays(self, paths):
        paths = [str(p) for p in paths]
        if self.decode == "serial":
            return dict(map(_original_img_worker, paths))
        import multiprocessing as mp

        with mp.get_context("fork").Pool(mp.cpu_count()) as pool:
            return dict(pool.map(_original_img_worker, paths))

    def fingerprints(self, arrays):
        from keras.applications.vgg16 import preprocess_input

        fps = {}
        for fn, img_arr in arrays.items():
            fps[fn] = self.model.predict(preprocess_input(img_arr[None]), verbose=0)[0, :]
        return fps

    def run(self, paths):
        """Decode then fingerprint ``paths``; return (fingerprints, decode_s, predict_s)."""
        t0 = time.perf_counter()
        arrays = self.read_image_arrays(paths)
        t1 = time.perf_counter()
        fps = self.fingerprints(arrays)
        t2 = time.perf_counter()
        return fps, t1 - t0, t2 - t1


def _original_img_worker(filename):
    import numpy as np
    import PIL.Image

    img = PIL.Image.open(filename).convert("RGB").resize((224, 224), resample=PIL.Image.BICUBIC)
    # keras.preprocessing.image.img_to_array(img, dtype=int) == np.asarray(img, dtype=int)
    # for a channels_last RGB image; not importing keras keeps the pool workers light.
    return filename, np.asarray(img, dtype=int)
