"""imagecluster.cluster: exact average linkage, both cuts, validation."""

import numpy as np
import pytest

from imagecluster import InvalidParameter
from imagecluster.cluster import cluster

from _reference import reference


def bursts(rng, n_scenes=12, dim=16):
    scenes = np.abs(rng.normal(size=(n_scenes, dim)))
    shots = [scene + rng.normal(scale=0.08, size=(rng.integers(1, 5), dim)) for scene in scenes]
    return np.abs(np.concatenate(shots)).astype(np.float32)


@pytest.mark.parametrize("cut", ["absolute", "relative"])
@pytest.mark.parametrize("sim", [0.3, 0.6, 0.8, 0.9, 0.97])
def test_equals_full_average_linkage(cut, sim):
    rng = np.random.default_rng(int(sim * 100))
    fps = bursts(rng)
    assert cluster(fps, sim, 2, cut=cut) == reference(fps, sim, 2, cut)


def test_finds_bursts_and_leaves_singles_out():
    a, b, c = np.eye(3, 8, dtype=np.float32) * 5 + 1
    fps = np.stack([a, c, a * 1.01, b, a + 0.01, b + 0.02])
    groups = cluster(fps, 0.95)
    assert groups == [[0, 2, 4], [3, 5]]  # largest first; c (row 1) alone is not reported
    assert cluster(fps, 0.95, min_size=1)[-1] == [1]


def test_sim_extremes():
    rng = np.random.default_rng(1)
    fps = np.abs(rng.normal(size=(10, 4))).astype(np.float32)
    fps[3] = fps[7]
    assert cluster(fps, 0.0) == [list(range(10))]
    assert cluster(fps, 1.0) == [[3, 7]]


def test_absolute_cut_does_not_depend_on_library_size():
    rng = np.random.default_rng(2)
    fps = bursts(rng)
    far = np.zeros((1, fps.shape[1]), dtype=np.float32)
    far[0, 0] = 1.0
    grown = np.concatenate([fps, far, -fps[:3] * 50])  # an outlier stretches the relative scale
    small = cluster(fps, 0.8)
    old_rows = [g for g in cluster(grown, 0.8) if g[0] < len(fps)]
    assert old_rows == small
    assert cluster(grown, 0.8, cut="relative") != cluster(fps, 0.8, cut="relative")


def test_too_few_photos():
    assert cluster(np.ones((1, 3)), 0.5) == []
    assert cluster(np.zeros((0, 3)), 0.5) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sim": float("nan")},
        {"sim": -0.1},
        {"sim": 1.5},
        {"sim": "high"},
        {"min_size": 0},
        {"min_size": 2.5},
        {"cut": "sideways"},
    ],
)
def test_bad_parameters(kwargs):
    args = {"sim": 0.5, **kwargs}
    with pytest.raises(InvalidParameter):
        cluster(np.ones((3, 2)), **args)


@pytest.mark.parametrize("fps", [np.ones(3), np.array([[1.0, np.nan]]), [["a", "b"]]])
def test_bad_fingerprints(fps):
    with pytest.raises(InvalidParameter):
        cluster(fps, 0.5)
