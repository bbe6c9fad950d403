"""imagecluster._edges: the exact search for similar pairs, whole and incremental."""

import numpy as np
import pytest

from imagecluster._edges import Edges, UnitRows, edges_against, row_norms, similarities, similarity_edges, unit_rows


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


@pytest.mark.parametrize("n_rows", [1, 3, 40])  # numpy's loop for a few new photos, BLAS for more
def test_edges_against_float16_rows_converted_tile_by_tile_equal_those_of_the_converted_array(n_rows, monkeypatch):
    """What the graph does for a new photo: the store's float16 matrix read as UnitRows, one tile at a time."""
    import imagecluster._edges as edges_module

    monkeypatch.setattr(edges_module, "_TILE_COLS", 1000)  # several tiles, the last one short
    rng = np.random.default_rng(4)
    matrix = (library(rng, 3500) * rng.uniform(0.5, 2, size=(3500, 1))).astype(np.float16)
    rows = rng.choice(3500, n_rows, replace=False)
    converted = unit_rows(matrix)
    expected = pairs(edges_against(converted, rows, 0.7))
    found = pairs(edges_against(UnitRows(matrix, row_norms(matrix)), rows, 0.7))
    undecided = {p for p, s in expected.items() if abs(s - 0.7) < 1e-5}
    assert set(found) - undecided == set(expected) - undecided
    assert len(expected) > n_rows  # the photos have neighbours to find
    assert all(abs(found[p] - expected[p]) < 1e-6 for p in set(found) & set(expected))


def test_unit_rows_tiles_cover_every_row_once_in_one_buffer():
    matrix = np.random.default_rng(5).standard_normal((2500, 16)).astype(np.float16)
    rows = UnitRows(matrix, row_norms(matrix))
    seen, buffers = [], set()
    for start, tile in rows.tiles(1000):
        assert np.array_equal(tile, unit_rows(matrix[start : start + len(tile)]))
        seen.append((start, len(tile)))
        buffers.add(tile.__array_interface__["data"][0])
    assert seen == [(0, 1000), (1000, 1000), (2000, 500)]
    assert len(buffers) == 1  # no fresh 42 MB array per tile at full size
    assert [(s, len(t)) for s, t in UnitRows(matrix).tiles(1000)] == seen  # without lengths: measured per tile


def test_similarities_of_a_few_queries_and_of_many_agree():
    rng = np.random.default_rng(6)
    columns, queries = library(rng, 500, dim=64), library(rng, 10, dim=64)
    few = np.concatenate([similarities(queries[k : k + 2], columns) for k in range(0, 10, 2)])
    many = similarities(queries, columns)
    assert few.shape == many.shape == (10, 500)
    np.testing.assert_allclose(few, queries.astype(np.float64) @ columns.T.astype(np.float64), atol=1e-6)
    np.testing.assert_allclose(few, many, atol=1e-6)


def test_edges_helpers():
    edges = Edges([0, 1, 2], [1, 2, 3], [0.5, 0.9, 0.7])
    assert len(edges.at_least(0.7)) == 2
    assert len(Edges.concatenate([edges, edges.take([0])])) == 4
    assert len(Edges.concatenate([])) == 0
    assert edges.i.dtype == np.int32 and edges.sim.dtype == np.float32
