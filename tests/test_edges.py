"""imagecluster._edges: the exact search for similar pairs, whole and incremental."""

import numpy as np
import pytest

from imagecluster._edges import Edges, edges_against, similarity_edges, unit_rows


def pairs(edges):
    return {(int(a), int(b)): float(s) for a, b, s in zip(edges.i, edges.j, edges.sim)}


def brute_force(unit, floor):
    sims = unit.astype(np.float64) @ unit.T.astype(np.float64)
    i, j = np.nonzero(np.triu(sims >= floor, k=1))
    return {(int(a), int(b)): sims[a, b] for a, b in zip(i, j)}


def library(rng, n, dim=24):
    scenes = rng.normal(size=(n // 4 + 1, dim))
    return unit_rows(scenes[rng.integers(0, len(scenes), n)] + rng.normal(scale=0.6, size=(n, dim)))


@pytest.mark.parametrize("n", [1, 2, 37, 2048 + 5, 9000])
def test_finds_every_pair_above_the_floor_once(n, monkeypatch):
    rng = np.random.default_rng(n)
    unit = library(rng, n)
    floor = 0.8
    found = pairs(similarity_edges(unit, floor))
    expected = brute_force(unit, floor)
    # Pairs within float32 rounding of the floor may go either way; none other may differ.
    undecided = {p for p, s in expected.items() if abs(s - floor) < 1e-5}
    assert set(found) - undecided == set(expected) - undecided
    assert all(a < b for a, b in found)
    assert all(abs(found[p] - expected[p]) < 1e-5 for p in set(found) & set(expected))


def test_progress_reaches_every_pair():
    unit = library(np.random.default_rng(0), 5000)
    seen = []
    similarity_edges(unit, 0.9, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5000 * 4999 // 2,) * 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_edges_against_some_rows_equals_the_full_search_restricted_to_them():
    rng = np.random.default_rng(3)
    unit = library(rng, 3000)
    rows = rng.choice(3000, 40, replace=False)
    full = pairs(similarity_edges(unit, 0.7))
    expected = {p for p in full if p[0] in set(rows.tolist()) or p[1] in set(rows.tolist())}
    found = edges_against(unit, rows, 0.7)
    assert len(found) == len(set(pairs(found)))  # each pair once, also between two given rows
    assert set(pairs(found)) == expected


def test_edges_helpers():
    edges = Edges([0, 1, 2], [1, 2, 3], [0.5, 0.9, 0.7])
    assert len(edges.at_least(0.7)) == 2
    assert len(Edges.concatenate([edges, edges.take([0])])) == 4
    assert len(Edges.concatenate([])) == 0
    assert edges.i.dtype == np.int32 and edges.sim.dtype == np.float32
