"""The straightforward clustering every fast path must equal: scipy on the full matrix."""

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist


def reference(fps, sim, min_size, cut):
    """The straightforward O(n^2) clustering the fast path must equal."""
    if cut == "absolute":
        unit = fps / np.linalg.norm(fps, axis=1, keepdims=True)
        distances = pdist(unit.astype(np.float64), "cosine")
        threshold = 1 - sim + 1e-6
    else:
        distances = pdist(fps.astype(np.float64), "euclidean")
        threshold = (1 - sim) * distances.max() + 1e-6
    labels = fcluster(linkage(distances, "average"), threshold, "distance")
    groups = [sorted(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels)]
    return sorted((g for g in groups if len(g) >= min_size), key=lambda g: (-len(g), g[0]))
