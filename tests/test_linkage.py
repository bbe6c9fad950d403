"""The bounded average linkage: the same groups as scipy's dense one, in linear memory."""

import numpy as np
import pytest

from imagecluster._edges import similarity_edges, unit_rows
from imagecluster._linkage import dense_bytes, graph_average_linkage
from imagecluster.cluster import cluster

from _reference import reference


def bursts(rng, n_scenes=60, dim=32, spread=0.35):
    scenes = rng.normal(size=(n_scenes, dim))
    shots = [scene + rng.normal(scale=spread, size=(rng.integers(1, 12), dim)) for scene in scenes]
    return np.concatenate(shots).astype(np.float32)


@pytest.mark.parametrize("sim", [0.3, 0.5, 0.7, 0.8, 0.9, 0.97])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_method_equals_scipy_on_the_full_matrix(sim, seed):
    # Components of every size: small ones go batched, past 128 photos dense or (no budget) bounded.
    fps = bursts(np.random.default_rng(seed))
    expected = reference(fps, sim, 2, "absolute")
    assert cluster(fps, sim, 2) == expected
    assert cluster(fps, sim, 2, dense_budget=0) == expected


def test_batched_linkage_on_components_of_every_small_size():
    rng = np.random.default_rng(7)
    fps = np.concatenate([bursts(rng, n_scenes=40, spread=s) for s in (0.2, 0.4, 0.6)])
    for sim in (0.6, 0.75, 0.85):
        assert cluster(fps, sim, 2) == reference(fps, sim, 2, "absolute")
        assert cluster(fps, sim, 1) == reference(fps, sim, 1, "absolute")


def test_one_huge_component_stays_within_its_budget(monkeypatch):
    # Low sim: the whole library is one component; with a small budget no dense matrix may be made.
    rng = np.random.default_rng(5)
    fps = bursts(rng, n_scenes=150, spread=0.9)
    budget = dense_bytes(40)

    import imagecluster._linkage as linkage

    dense, bounded = [], []
    real_dense, real_bounded = linkage._dense_labels, linkage.graph_average_linkage
    monkeypatch.setattr(linkage, "_dense_labels", lambda unit, sim: dense.append(len(unit)) or real_dense(unit, sim))
    monkeypatch.setattr(linkage, "graph_average_linkage",
                        lambda unit, i, j, sim: bounded.append(len(unit)) or real_bounded(unit, i, j, sim))
    groups = cluster(fps, 0.3, 2, dense_budget=budget)
    assert all(dense_bytes(m) <= budget for m in dense)
    assert max(bounded) > 300  # the case was really past the budget: one component of most photos
    monkeypatch.undo()
    assert groups == cluster(fps, 0.3, 2)


def test_graph_average_linkage_on_its_own():
    unit = unit_rows(np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0.98, 0.2], [0, 0, 1]], np.float32))
    edges = similarity_edges(unit, 0.5)
    labels = graph_average_linkage(unit, edges.i, edges.j, 0.9)
    assert labels[0] == labels[1] and labels[2] == labels[3]
    assert len({labels[0], labels[2], labels[4]}) == 3
