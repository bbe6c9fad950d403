"""imagecluster.graph: the kept similarity graph equals a search from scratch, and is never trusted blindly."""

import logging
import os

import numpy as np
import pytest

import imagecluster.graph as graph_module
from imagecluster import Store
from imagecluster._edges import row_norms, similarity_edges, unit_rows
from imagecluster._library import library_clusters
from imagecluster.cluster import cluster
from imagecluster.graph import LibraryGraph, UnitRows

DIM = 24


def photos(rng, n, start=0):
    """(path, size, mtime, fingerprint): bursts of 1-6 shots around random scenes."""
    out, k = [], start
    while len(out) < n:
        scene = rng.normal(size=DIM)
        for _ in range(int(rng.integers(1, 7))):
            out.append((f"d{k % 7}/p{k:05d}.jpg", 1000 + k, 10**9 + k, scene + rng.normal(scale=0.5, size=DIM)))
            k += 1
    return out[:n]


def expected(store, sim, min_size=2):
    paths, fps = store.fingerprints("m")
    return sorted(([paths[i] for i in g] for g in cluster(fps, sim, min_size)), key=lambda g: (-len(g), g[0]))


def edge_set(graph):
    return {tuple(sorted((graph.paths[a], graph.paths[b]))): round(float(s), 3)
            for a, b, s in zip(graph.edges.i, graph.edges.j, graph.edges.sim)}


def indexed(tmp_path, rng, n):
    """A store of ``n`` photos and its graph, brought up to date (and saved)."""
    store = Store(tmp_path)
    store.put("m", photos(rng, n))
    graph = LibraryGraph(store, "m")
    graph.update()
    return store, graph


def test_clusters_from_the_graph_equal_clustering_every_pair(tmp_path):
    store, graph = indexed(tmp_path, np.random.default_rng(0), 400)
    for sim in (0.5, 0.6, 0.7, 0.8, 0.95):
        assert graph.clusters(sim) == expected(store, sim)
    assert graph.clusters(0.7, 1) == expected(store, 0.7, 1)


def test_incremental_graph_equals_a_fresh_one_after_adds_removes_moves_and_a_restart(tmp_path):
    rng = np.random.default_rng(1)
    store, graph = indexed(tmp_path, rng, 300)
    for step in range(6):
        paths = sorted(store.entries("m"))
        store.put("m", photos(rng, int(rng.integers(1, 30)), start=1000 + 100 * step))  # new photos
        store.remove([str(p) for p in rng.choice(paths, 10, replace=False)])
        survivors = sorted(store.entries("m"))
        store.move(survivors[0], f"moved/{step}.jpg")
        changed = survivors[5]  # the same path, a new version of the photo
        store.put("m", [(changed, 7, 7 + step, rng.normal(size=DIM))])
        graph.update()
        assert edge_set(graph) == from_scratch(store)
        assert graph.clusters(0.6) == expected(store, 0.6)
    restarted = LibraryGraph(Store(tmp_path), "m")  # loads the saved file
    assert restarted.update() is False
    assert edge_set(restarted) == edge_set(graph)
    assert restarted.clusters(0.6) == expected(store, 0.6)


def test_a_graph_saved_before_the_store_changed_catches_up(tmp_path):
    rng = np.random.default_rng(2)
    store = Store(tmp_path)
    store.put("m", photos(rng, 200))
    LibraryGraph(store, "m").update()  # saved
    store.put("m", photos(rng, 20, start=500))
    store.remove(sorted(store.entries("m"))[:15])
    store.compact()  # rows renumbered: the file still names photos by path
    graph = LibraryGraph(Store(tmp_path), "m")
    assert graph.update() is True
    assert graph.clusters(0.55) == expected(store, 0.55)


def from_scratch(store):
    paths, fps = store.fingerprints("m")
    edges = similarity_edges(unit_rows(fps), 0.5)
    return {tuple(sorted((paths[a], paths[b]))): round(float(s), 3) for a, b, s in zip(edges.i, edges.j, edges.sim)}


class Evil:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def tamper(path, **changes):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage", ["bytes", "truncated", "pickle", "sims", "missing-edge", "indices", "floor"])
def test_a_damaged_or_tampered_graph_is_rebuilt(tmp_path, caplog, monkeypatch, damage):
    monkeypatch.setattr(graph_module, "_CHECKED_NODES", 1000)  # check every photo's neighbours
    rng = np.random.default_rng(3)
    store = Store(tmp_path)
    store.put("m", photos(rng, 120))
    good = LibraryGraph(store, "m")
    good.update()
    before = edge_set(good)
    path = good.file
    if damage == "bytes":
        path.write_bytes(rng.bytes(500))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "pickle":  # an object array is a pickle: it must never be unpickled
        with np.load(path) as f:
            tamper(path, meta=np.array([Evil(tmp_path / "SENTINEL")], dtype=object), i=f["i"])
    elif damage == "sims":
        with np.load(path) as f:
            tamper(path, sim=(f["sim"] * 0 + np.float32(0.99)))
    elif damage == "missing-edge":
        with np.load(path) as f:
            tamper(path, i=f["i"][1:], j=f["j"][1:], sim=f["sim"][1:])
    elif damage == "indices":
        with np.load(path) as f:
            tamper(path, j=f["j"] + 10_000)
    elif damage == "floor":
        with np.load(path) as f:
            tamper(path, meta=np.frombuffer(bytes(f["meta"]).replace(b'"floor": 0.5', b'"floor": 0.4'), np.uint8))
    with caplog.at_level(logging.WARNING, logger="imagecluster.graph"):
        graph = LibraryGraph(Store(tmp_path), "m")
        graph.update()
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "SENTINEL").exists()
    assert edge_set(graph) == before
    assert graph.clusters(0.6) == expected(store, 0.6)


def test_a_graph_that_cannot_be_saved_is_reported_and_still_answers(tmp_path, caplog):
    rng = np.random.default_rng(5)
    store = Store(tmp_path)
    store.put("m", photos(rng, 60))
    graph = LibraryGraph(store, "m")
    graph.file.mkdir()  # a folder where the file should go: the rename fails
    with caplog.at_level(logging.WARNING, logger="imagecluster.graph"):
        graph.update()
    assert "cannot save the similarity graph" in caplog.text
    assert graph.clusters(0.6) == expected(store, 0.6)
    assert not list(store.folder.glob(".graph-*"))  # no temporary file left behind


def test_similar_answers_from_edges_and_by_search(tmp_path):
    rng = np.random.default_rng(4)
    store, graph = indexed(tmp_path, rng, 150)
    paths, fps = store.fingerprints("m")
    unit = fps / np.linalg.norm(fps, axis=1, keepdims=True)
    me = 17
    for sim in (0.3, 0.6, 0.8):  # 0.3: below the floor, a product over the library
        truth = {paths[k]: s for k, s in enumerate(unit @ unit[me]) if s >= sim and k != me}
        found = dict(graph.similar(fps[me], sim, path=paths[me]))
        assert found.keys() == truth.keys()
        assert all(abs(found[p] - truth[p]) < 1e-4 for p in truth)
    ranked = graph.similar(fps[me], 0.5, path=paths[me])
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


def test_library_clusters_below_the_floor_compares_every_pair(tmp_path, caplog):
    store = Store(tmp_path)
    store.put("m", photos(np.random.default_rng(5), 80))
    with caplog.at_level(logging.INFO, logger="imagecluster._library"):
        groups = library_clusters(tmp_path, store, "m", sim=0.3)
    assert [[p.relative_to(tmp_path).as_posix() for p in g] for g in groups] == expected(store, 0.3)
    assert any("below the similarity graph's floor" in r.getMessage() for r in caplog.records)
    assert not LibraryGraph(store, "m").file.exists()
    assert library_clusters(tmp_path, store, "m", sim=0.7)
    assert LibraryGraph(store, "m").file.exists()


def test_a_first_build_reports_progress_in_photos(tmp_path):
    store = Store(tmp_path)
    store.put("m", photos(np.random.default_rng(6), 300))
    seen = []
    LibraryGraph(store, "m").update(progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (300, 300) and all(t == 300 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    seen.clear()
    LibraryGraph(store, "m").update(progress=lambda done, total: seen.append((done, total)))
    assert seen == []  # loaded from its file: nothing to search, nothing to report


def test_a_first_build_of_one_photo_reports_progress_without_dividing_by_zero(tmp_path):
    # A library of one photo: no pair to search (imagecluster index of it ended in a ZeroDivisionError).
    store = Store(tmp_path)
    store.put("m", photos(np.random.default_rng(7), 1))
    seen = []
    graph = LibraryGraph(store, "m")
    graph.update(progress=lambda done, total: seen.append((done, total)))
    assert all(total == 1 for _, total in seen) and len(graph.edges) == 0 and graph.paths


def test_an_approximate_first_build_is_kept_as_such_and_never_holds_a_false_pair(tmp_path, caplog):
    rng = np.random.default_rng(7)
    store = Store(tmp_path)
    store.put("m", photos(rng, 600))
    graph = LibraryGraph(store, "m", approximate_above=100)  # 600 photos: searched approximately
    graph.update()
    assert graph.exact is False
    exact = from_scratch(store)
    assert set(edge_set(graph)) <= set(exact)
    assert len(edge_set(graph)) >= 0.8 * len(exact)
    # Photos added later are searched exactly: all their pairs are there.
    store.put("m", photos(rng, 5, start=5000))
    graph.update()
    new = {pair for pair in from_scratch(store) if any("/p050" in path for path in pair)}
    assert new and new <= set(edge_set(graph))
    # Saved and loaded again as approximate, and the load's neighbour check accepts it.
    with caplog.at_level(logging.WARNING, logger="imagecluster.graph"):
        again = LibraryGraph(Store(tmp_path), "m", approximate_above=100)
        assert again.update() is False
    assert again.exact is False and edge_set(again) == edge_set(graph)
    assert "rebuilding" not in caplog.text


def test_a_copy_keeps_its_edges_while_the_original_follows_the_store_and_each_catches_up(tmp_path):
    rng = np.random.default_rng(7)
    store, graph = indexed(tmp_path, rng, 200)
    frozen = graph.copy()
    before, paths_before = edge_set(frozen), list(frozen.paths)

    store.put("m", photos(rng, 20, start=5000))
    store.remove(paths_before[:15])
    graph.update()
    assert frozen.paths == paths_before and edge_set(frozen) == before  # untouched by the original's catch-up
    assert edge_set(graph) != before

    frozen.update()  # and the copy catches up on its own, to the same graph
    assert frozen.paths == graph.paths and edge_set(frozen) == edge_set(graph)
    assert graph.clusters(0.7) == frozen.clusters(0.7) == expected(store, 0.7)


def test_unit_rows_from_kept_lengths_are_the_rows_unit_rows_gives(tmp_path):
    """The graph keeps row lengths between catch-ups; rows scaled by them must be bit-for-bit unit_rows'."""
    matrix = np.random.default_rng(7).standard_normal((3000, 64)).astype(np.float16)
    matrix[17] = 0  # a zero row stays zero
    kept = UnitRows(matrix, row_norms(matrix, chunk_rows=1000))
    assert np.array_equal(kept[:], unit_rows(matrix))
    assert np.array_equal(kept[[2999, 17, 0]], unit_rows(matrix[[2999, 17, 0]]))
    assert np.array_equal(kept[np.array([[1, 2], [3, 4]])], unit_rows(matrix[[1, 2, 3, 4]]).reshape(2, 2, 64))
    assert np.array_equal(kept.to_array(), UnitRows(matrix).to_array())


def test_photos_only_added_are_caught_up_as_a_fresh_build_finds_them(tmp_path):
    """The usual catch-up (new photos only: the store appends their rows) takes a shortcut; same edges."""
    rng = np.random.default_rng(5)
    store, graph = indexed(tmp_path, rng, 200)
    for step in range(4):
        store.put("m", photos(rng, int(rng.integers(1, 12)), start=1000 + 100 * step))
        assert graph.update() is True
        assert edge_set(graph) == from_scratch(store)
        assert graph.clusters(0.6) == expected(store, 0.6)


def test_the_path_index_follows_every_catch_up(tmp_path):
    """Similar by path finds each photo's node through an index of path hashes, kept in step by each catch-up
    (grown when photos were only added, built again otherwise) so that no Similar call has to build it."""
    rng = np.random.default_rng(8)
    store, graph = indexed(tmp_path, rng, 120)

    def in_step(g):
        assert g._index is not None and len(g._index[0]) == len(g.paths)  # made by the catch-up, not by a lookup
        return all(g._node_of(path) == node for node, path in enumerate(g.paths))

    assert in_step(graph) and graph._node_of("not/there.jpg") is None
    for step in range(3):  # only added: grown
        store.put("m", photos(rng, int(rng.integers(1, 9)), start=2000 + 100 * step))
        graph.update()
        assert in_step(graph)
    store.remove(graph.paths[:5])  # rows renumbered: built again
    graph.update()
    assert in_step(graph) and graph._node_of(graph.paths[0]) == 0
    assert graph.update() is False and in_step(graph)  # nothing new: kept
    restarted = LibraryGraph(Store(tmp_path), "m")  # loaded from its file
    assert restarted.update() is False and in_step(restarted)


def test_a_catch_up_that_fails_leaves_the_graph_and_its_path_index_as_they_were(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    store, graph = indexed(tmp_path, rng, 120)
    before = list(graph.paths)
    store.remove(before[:3])
    store.put("m", photos(rng, 4, start=3000))

    def fails(*args, **kwargs):
        raise MemoryError("no room for the search")

    monkeypatch.setattr(graph_module, "edges_against", fails)
    with pytest.raises(MemoryError):
        graph.update()
    assert graph.paths == before and len(graph._index[0]) == len(before)
    assert all(graph._node_of(path) == node for node, path in enumerate(before))
    monkeypatch.undo()
    graph.update()
    assert edge_set(graph) == from_scratch(store)


def test_a_first_build_that_fails_leaves_the_graph_marked_as_it_was(tmp_path, monkeypatch):
    """An approximate search that raised must not leave an exact graph marked approximate."""
    rng = np.random.default_rng(10)
    store, graph = indexed(tmp_path, rng, 40)
    assert graph.exact
    store.put("m", photos(rng, 200, start=4000))  # mostly new: one search of every pair, approximate above 100
    graph.approximate_above = 100

    def fails(*args, **kwargs):
        raise MemoryError("no room for the search")

    monkeypatch.setattr(graph_module, "approximate_edges", fails)
    with pytest.raises(MemoryError):
        graph.update()
    assert graph.exact and len(graph.paths) == 40
    monkeypatch.undo()
    graph.update()
    assert not graph.exact and len(graph.paths) == 240
