"""A library's similarity graph, kept beside its store and followed as photos come and go.

Clustering at any ``sim`` at or above the graph's ``floor`` needs only the
pairs of photos at least ``sim`` similar (their connected components bound
every cluster, :mod:`imagecluster._edges`) and the fingerprints of the photos
in those components. Finding the pairs is the one costly step (every pair of
photos, ``O(n^2 d)``), so it is done once and then kept up to date: a new or
changed photo costs one product of its fingerprint with the library's
matrix, a removed one drops its edges, a moved one is a removal plus an
addition. A Cluster call then costs the components and the linkage inside
them, not the search.

The graph is saved as ``graph-<model>.npz`` in the store folder (numpy's
format, read with ``allow_pickle=False``: plain arrays, never code;
:mod:`imagecluster._graph_file`). It names
each photo with its path, size and modification time, so a graph saved by
an older run is brought up to date the same way: photos whose file changed,
or that are new, are searched again; photos that are gone lose their edges.
It is a cache and never trusted blindly: a file that is not a valid graph,
was made with another floor or dtype, or whose sampled edges and neighbour
lists do not match the fingerprints is logged and rebuilt.

Below the floor the graph cannot answer; :func:`imagecluster._library.library_clusters`
then searches every pair, as before the graph existed.
"""

import copy
import itertools
import logging

import numpy as np

from ._edges import Edges, UnitRows, edges_against, row_norms, row_tiles, similarities, similarity_edges, unit_rows
from ._exceptions import InvalidParameter
from ._graph_file import ROUNDING, SavedGraph, read_graph, write_graph
from ._ivf import APPROXIMATE_ABOVE, approximate_edges
from .cluster import DEFAULT_DENSE_BUDGET, check_min_size, check_sim, cluster_graph

__all__ = ["DEFAULT_FLOOR", "LibraryGraph", "UnitRows"]

logger = logging.getLogger(__name__)

#: Smallest similarity the kept graph holds; Cluster at a lower sim searches every pair.
#: 0.5 is the lowest sim the README's table recommends ("loosely related photos").
DEFAULT_FLOOR = 0.5

# Rows converted to float32 at a time when the whole matrix is read in tiles.
_CHUNK_ROWS = 8192
# Photos whose neighbour lists are recomputed in full when a saved graph is loaded.
_CHECKED_NODES = 3
# Edges whose similarity is recomputed when a saved graph is loaded.
_CHECKED_EDGES = 256


def _index_with(index, paths, start=0):
    """``index`` (sorted path hashes, their nodes) with the nodes ``start:`` of ``paths`` added.

    ``index`` None (none yet) indexes every path. Sorting only the new hashes
    and inserting them costs a copy of the index (16 MB at 1,000,000 photos,
    3-15 ms), where sorting every hash again took 240-300 ms. Equal hashes
    may come in any order: :meth:`LibraryGraph._node_of` compares the paths
    of all of them.
    """
    if index is None:
        start = 0
    new = np.fromiter(map(hash, itertools.islice(paths, start, None)), np.int64, len(paths) - start)
    order = np.argsort(new)
    new = new[order]
    if index is None:
        return new, order
    hashes, nodes = index
    at = np.searchsorted(hashes, new, "right")
    return np.insert(hashes, at, new), np.insert(nodes, at, order + start)


def _no_versions():
    """Sizes and mtimes of no photo."""
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


class LibraryGraph:
    """The graph of photo pairs at least ``floor`` similar, for one library and model.

    Parameters
    ----------
    store : Store
        The library's store; the graph file lives in its folder.
    model : str
        Model name: one graph per model, as fingerprints.
    floor : float, default=DEFAULT_FLOOR
        Smallest similarity kept.
    approximate_above : int, default=APPROXIMATE_ABOVE
        A first build of more photos than this searches pairs approximately
        (:mod:`imagecluster._ivf`): minutes instead of hours at 1,000,000
        photos, at the cost of a small share of pairs. Photos added later are
        always searched exactly.

    Attributes
    ----------
    paths : list of str
        Library-relative path of each photo (node), after :meth:`update`.
    edges : Edges
        Pairs of nodes at least ``floor`` similar.
    exact : bool
        Whether ``edges`` holds every such pair (False after an approximate build).
    """

    def __init__(self, store, model, *, floor=DEFAULT_FLOOR, approximate_above=APPROXIMATE_ABOVE):
        self.store = store
        self.model = model
        self.floor = check_sim(floor)
        self.approximate_above = approximate_above
        self.exact = True
        if self.floor == 0.0:
            raise InvalidParameter("floor must be above 0: at 0 every pair would be an edge")
        self.paths = []
        self.edges = Edges.empty()
        self._sizes, self._mtimes = _no_versions()  # each node's file version (size, mtime_ns)
        self._matrix = np.empty((0, 0), np.float32)
        self._norms = None  # each row's length (row_norms) once measured, kept across catch-ups
        self._index = None  # (sorted path hashes, their nodes), for Similar by path
        self._loaded = False
        self._dirty = False
        self._version = None  # the store's version at the last catch-up

    def __repr__(self):
        return f"LibraryGraph({self.store!r}, {self.model!r}, floor={self.floor}, {len(self.paths)} photos)"

    @property
    def dimension(self):
        """Values per fingerprint (0 while the graph is empty)."""
        return self._matrix.shape[1] if len(self.paths) else 0

    @property
    def file(self):
        """Where the graph is saved: ``<store folder>/graph-<model>.npz``."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model)
        return self.store.folder / f"graph-{safe}.npz"

    # ------------------------------------------------------------ public

    def update(self, *, progress=None, save=True):
        """Bring the graph in step with the store.

        Parameters
        ----------
        progress : callable, default=None
            ``progress(done, total)`` while every pair is searched (a first
            build), in photos: ``done`` of the ``total`` photos compared with
            all others.
        save : bool, default=True
            Write the graph file when it changed.

        Returns
        -------
        changed : bool
            Whether photos were added to or dropped from the graph.
        """
        version = self.store.version()
        if self._loaded and version == self._version and not self._dirty:
            return False  # nothing written since the last catch-up
        view = self.store.view(self.model)
        loaded = not self._loaded and self._load(view)
        self._loaded = True
        changed = self._follow(view, progress)
        problem = self._disagreement() if loaded else ""
        if problem:
            logger.warning("the similarity graph %s is not used (%s); rebuilding it", self.file, problem)
            self.paths, self.edges, self._norms, self._index = [], Edges.empty(), None, None
            self._sizes, self._mtimes = _no_versions()
            changed = self._follow(view, progress)
        self._dirty |= changed
        self._version = version
        if save and self._dirty and self.paths:
            self.save()
        return changed

    def copy(self):
        """A graph as this one is now, that another thread can read and update while this one changes.

        Cheap: :meth:`update` replaces the paths, the edges and the matrix
        view rather than changing them, so both share them until one catches
        up with the store. Each must still be used by one thread at a time.
        """
        return copy.copy(self)

    def clusters(self, sim, min_size=2, *, dense_budget=DEFAULT_DENSE_BUDGET):
        """Clusters at ``sim`` (at least the floor) from the graph, as relative paths.

        Parameters
        ----------
        sim : float
            Similarity index, ``floor <= sim <= 1``.
        min_size : int, default=2
        dense_budget : int, default=DEFAULT_DENSE_BUDGET

        Returns
        -------
        list of list of str
            Paths of each cluster, sorted; largest cluster first, ties by
            their first path (the order ``cluster`` gives on sorted paths).
        """
        sim, min_size = check_sim(sim), check_min_size(min_size)
        if sim < self.floor:
            raise InvalidParameter(f"sim {sim} is below the graph's floor {self.floor}")
        groups = cluster_graph(self._rows(), self.edges, sim, min_size, dense_budget=dense_budget)
        named = [sorted(self.paths[i] for i in group) for group in groups]
        named.sort(key=lambda g: (-len(g), g[0]))
        return named

    def similar(self, vector, sim, *, path=None):
        """Photos at least ``sim`` similar to a fingerprint, most similar first.

        Parameters
        ----------
        vector : ndarray of shape (n_features,)
            The fingerprint.
        sim : float
            Smallest similarity reported.
        path : str, default=None
            The photo's own path when it is in the graph: at or above the
            floor its edges answer without a product over the library.

        Returns
        -------
        list of (str, float)
            (relative path, similarity), itself left out.
        """
        sim = check_sim(sim)
        node = self._node_of(path) if path is not None and sim >= self.floor else None
        if node is not None:
            touching = (self.edges.i == node) | (self.edges.j == node)
            near = self.edges.take(touching).at_least(sim - 1e-6)
            others = np.where(near.i == node, near.j, near.i)
            matches = [(self.paths[k], float(min(s, 1.0))) for k, s in zip(others.tolist(), near.sim.tolist())]
        else:
            query = unit_rows(np.asarray(vector, dtype=np.float32)[None, :])[0]
            matches = []
            for start, rows in row_tiles(self._rows(), _CHUNK_ROWS):
                scores = similarities(query[None, :], rows)[0]
                for k in np.flatnonzero(scores >= sim - 1e-6).tolist():
                    if self.paths[start + k] != path:
                        matches.append((self.paths[start + k], float(min(scores[k], 1.0))))
        matches.sort(key=lambda m: (-m[1], m[0]))
        return matches

    def save(self):
        """Write the graph file atomically (:mod:`imagecluster._graph_file`); a failure is logged, not raised."""
        saved = SavedGraph(self.paths, self._sizes, self._mtimes, self.edges, self.exact)
        try:
            write_graph(self.file, saved, model=self.model, floor=self.floor, dtype=self._matrix.dtype.name)
        except OSError as exc:
            logger.warning("cannot save the similarity graph %s: %s (it is rebuilt when needed)", self.file, exc)
            return
        self._dirty = False

    # --------------------------------------------------------- internals

    def _rows(self):
        """The fingerprint matrix as unit rows, with the lengths kept since the last catch-up."""
        return UnitRows(self._matrix, self._norms)

    def _node_of(self, path):
        """The node of a path, or None.

        The index is the paths' hashes, sorted (16 bytes a photo, where a dict
        of a million paths would take 70 MB of the daemon's memory). Each
        catch-up keeps it in step, in the daemon's background refresh rather
        than in the first ``Similar`` (that first call took 52 ms at 100,000
        photos): grown when photos were only added (the usual catch-up),
        built again when rows were renumbered or the graph was loaded.
        """
        if self._index is None:  # a graph never caught up
            self._index = _index_with(None, self.paths)
        hashes, order = self._index
        key = hash(path)
        start, stop = np.searchsorted(hashes, key, "left"), np.searchsorted(hashes, key, "right")
        for node in order[start:stop].tolist():  # one node, unless two paths' hashes collide
            if self.paths[node] == path:
                return node
        return None

    def _follow(self, view, progress):
        """Re-map the graph onto the store's rows now; search pairs for new and changed photos."""
        sizes, mtimes = view.entries.by_row()
        k = len(self.paths)
        if view.paths == self.paths and np.array_equal(sizes, self._sizes) and np.array_equal(mtimes, self._mtimes):
            if self._norms is None:  # a graph just loaded from its file
                self._norms = row_norms(view.matrix)
            # The view's list shares its strings with the store: a graph loaded
            # from its file then holds no second copy of a million paths.
            self.paths, self._matrix = view.paths, view.matrix
            self._sizes, self._mtimes = sizes, mtimes
            if self._index is None:  # a graph just loaded from its file
                self._index = _index_with(None, view.paths)
            return False
        n = len(view.paths)
        if (view.paths[:k] == self.paths and np.array_equal(sizes[:k], self._sizes)
                and np.array_equal(mtimes[:k], self._mtimes)):
            # Photos only added, the usual catch-up: the store appends their rows, the rest stay.
            old_to_new = np.arange(k, dtype=np.int64)
            index = _index_with(self._index, view.paths, k)
        else:
            index = _index_with(None, view.paths)  # rows renumbered
            row_now = {p: r for r, p in enumerate(view.paths)}
            old_to_new = np.fromiter((row_now.get(p, -1) for p in self.paths), np.int64, k)
            found = old_to_new >= 0
            rows = old_to_new[found]
            same = (sizes[rows] == self._sizes[found]) & (mtimes[rows] == self._mtimes[found])
            old_to_new[np.flatnonzero(found)[~same]] = -1  # a new version under the same path
        kept = old_to_new >= 0
        fresh = np.ones(n, dtype=bool)
        fresh[old_to_new[kept]] = False
        new_rows = np.flatnonzero(fresh)
        dropped = len(self.paths) - int(kept.sum())
        # Lengths of the rows kept move with them; only new rows are measured (a photo
        # arriving in a large library then costs one conversion of the matrix, not two passes).
        if self._norms is not None:
            norms = np.empty(n, dtype=np.float32)
            norms[old_to_new[kept]] = self._norms[kept]
            norms[new_rows] = row_norms(view.matrix[new_rows])
        else:
            norms = row_norms(view.matrix)
        rows = UnitRows(view.matrix, norms)
        if len(new_rows) > n // 2:  # mostly new: one search of every pair is half the work
            logger.info("searching similar pairs among %d photos (floor %s)", n, self.floor)
            report = None if progress is None else (lambda done, total: progress(round(n * done / max(total, 1)), n))
            exact = n <= self.approximate_above
            search = similarity_edges if exact else approximate_edges
            edges = search(rows.to_array(), self.floor, progress=report)
        else:
            exact = self.exact  # pairs of the new photos are searched exactly; the old ones stay as found
            old = self.edges
            both = kept[old.i] & kept[old.j] if len(old) else np.zeros(0, dtype=bool)
            a, b = old_to_new[old.i[both]], old_to_new[old.j[both]]
            edges = Edges.concatenate([
                Edges(np.minimum(a, b), np.maximum(a, b), old.sim[both]),
                edges_against(rows, new_rows, self.floor),
            ])
        if len(new_rows) or dropped:
            logger.debug("graph of %s: %d photos new or changed, %d dropped",
                         self.store.library, len(new_rows), dropped)
        # Set together: a catch-up that raised before here leaves the graph, index and exactness included,
        # as it was.
        self.paths, self._matrix, self.edges, self._index = view.paths, view.matrix, edges, index  # new lists
        self.exact = exact
        self._sizes, self._mtimes, self._norms = sizes, mtimes, norms
        return bool(len(new_rows) or dropped)  # a different count means one of them is not 0

    def _load(self, view):
        """Take the saved graph if its structure is valid; whether it was taken.

        Whether it agrees with the fingerprints is checked once it has caught
        up with the store (:meth:`_disagreement`).
        """
        dtype = view.matrix.dtype.name if len(view.paths) else None
        saved, problem = read_graph(self.file, model=self.model, floor=self.floor, dtype=dtype)
        if problem:
            logger.warning("the similarity graph %s %s; rebuilding it", self.file, problem)
        if saved is None:
            return False
        self.paths, self._norms, self._index = saved.paths, None, None
        self._sizes, self._mtimes = saved.sizes, saved.mtimes
        self.edges, self.exact = saved.edges, saved.exact
        return True

    def _disagreement(self):
        """Check a sample of edges and of whole neighbour lists against the fingerprints; '' when they agree."""
        n = len(self.paths)
        if not n:
            return ""
        rng = np.random.default_rng()
        rows = self._rows()
        if len(self.edges):
            pick = rng.choice(len(self.edges), min(_CHECKED_EDGES, len(self.edges)), replace=False)
            a, b = rows[self.edges.i[pick]], rows[self.edges.j[pick]]
            if np.abs(np.einsum("ij,ij->i", a, b) - self.edges.sim[pick]).max() > ROUNDING:
                return "its edges do not match the fingerprints"
        nodes = rng.choice(n, min(_CHECKED_NODES, n), replace=False)
        found = edges_against(rows, nodes, self.floor)
        for node in nodes.tolist():
            def near(edges):
                touching = (edges.i == node) | (edges.j == node)
                return {(int(x), int(y)): float(s) for x, y, s in
                        zip(edges.i[touching], edges.j[touching], edges.sim[touching])}

            kept, real = near(self.edges), near(found)
            undecided = {p for p, s in {**kept, **real}.items() if abs(s - self.floor) <= ROUNDING}
            kept, real = set(kept) - undecided, set(real) - undecided
            # An approximate graph may lack a few pairs, never hold a false one.
            if kept != real if self.exact else not kept <= real:
                return "a photo's neighbours do not match the fingerprints"
        return ""
