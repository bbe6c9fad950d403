"""Library-like synthetic fingerprints for the scale benchmarks (not part of the package).

What a photo library's fingerprints look like to the clustering, at any size:
bursts of 2-10 near-duplicates (cosine ~0.8-0.95 to each other), pairs of
"the same kind of scene" (cosine ~0.6-0.75), and a long tail of unrelated
photos. 1280 values, L2-normalised, with a decaying spectrum so that, as in
the scale notes, the top 256 principal components hold ~58% of the energy.
Generated in chunks from a seed, so 1,000,000 rows never need more than the
result's own memory; cached as .npy beside the other benchmark data.
"""

import os
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("IMAGECLUSTER_BENCH_CACHE", Path.home() / ".cache" / "imagecluster-bench"))
DIM = 1280


def _chunk(rng, n, scale):
    out = np.empty((n, DIM), np.float32)
    i = 0

    def direction(k=1):
        v = rng.standard_normal((k, DIM), dtype=np.float32) * scale
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    while i < n:
        r = rng.random()
        if r < 0.35:  # a burst of 2-10 shots of one scene
            k = min(int(rng.integers(2, 11)), n - i)
            out[i : i + k] = direction() + rng.uniform(0.25, 0.55, (k, 1)).astype(np.float32) * direction(k)
            i += k
        elif r < 0.5 and i + 2 <= n:  # two photos of the same kind of scene
            target = rng.uniform(0.6, 0.75)
            out[i : i + 2] = direction() * np.sqrt(target / (1 - target)) + direction(2)
            i += 2
        else:  # unrelated
            out[i] = direction()[0]
            i += 1
    return out


def library_like(n, seed=0):
    """``n`` library-like fingerprints, shape (n, 1280) float32, rows in random order."""
    path = CACHE / f"synthetic-{n}-{seed}.npy"
    if path.exists():
        return np.load(path)
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.sqrt(1 + np.arange(DIM) / 40.0)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    step = 50_000
    for start in range(0, n, step):
        out[start : start + step] = _chunk(rng, min(step, n - start), scale)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    out = out[rng.permutation(n)]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out
