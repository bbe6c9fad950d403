"""The similarity graph's file, ``graph-<model>.npz`` in the store folder: written atomically, read without trust.

numpy's ``.npz`` format holds plain arrays: the header (JSON as bytes), the
photos' paths (one UTF-8 blob), each photo's file size and modification time,
and the edges (``i < j``, ``sim``). It is read with ``allow_pickle=False``, so
an object array (a pickle) is refused, never loaded; then every structural
rule is checked before anything is used. Whether the edges agree with the
fingerprints is the caller's check (:meth:`imagecluster.graph.LibraryGraph.update`),
once the graph has caught up with the store.
"""

import contextlib
import json
import os
import tempfile
from typing import NamedTuple

import numpy as np

from ._edges import Edges

__all__ = ["ROUNDING", "SavedGraph", "read_graph", "write_graph"]

#: Edges found again may differ in float32 rounding by this much (another tiling, another BLAS).
ROUNDING = 1e-4

_FORMAT = "imagecluster-graph"
_VERSION = 1
_MEMBERS = ("meta", "paths", "sizes", "mtimes", "i", "j", "sim")


class SavedGraph(NamedTuple):
    """What a graph file holds, once its structure has been checked."""

    paths: list
    sizes: np.ndarray
    mtimes: np.ndarray
    edges: Edges
    exact: bool


def write_graph(path, graph, *, model, floor, dtype):
    """Write ``graph`` (a :class:`SavedGraph`) to ``path`` atomically: a temporary file beside it, fsync, rename.

    Raises
    ------
    OSError
        The file could not be written; nothing is left behind.
    """
    blob = np.frombuffer("\0".join(graph.paths).encode("utf-8", "surrogateescape"), dtype=np.uint8)
    meta = json.dumps({"format": _FORMAT, "version": _VERSION, "model": model, "floor": floor,
                       "dtype": dtype, "n": len(graph.paths), "exact": graph.exact})
    fd, tmp = tempfile.mkstemp(prefix=".graph-", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.frombuffer(meta.encode(), dtype=np.uint8), paths=blob, sizes=graph.sizes,
                     mtimes=graph.mtimes, i=graph.edges.i, j=graph.edges.j, sim=graph.edges.sim)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_graph(path, *, model, floor, dtype):
    """Read the graph file at ``path`` if it is one this graph can take.

    Parameters
    ----------
    path : path-like
    model : str
        The model the graph must be made for.
    floor : float
        The floor it must have been made with.
    dtype : str or None
        The fingerprints' dtype it must have been made from; None when any
        does (no photo is stored).

    Returns
    -------
    graph : SavedGraph or None
        None when there is no file, or it cannot be taken.
    problem : str
        Why it cannot be taken, as the end of a sentence ("cannot be read
        (...)", "is not used (...)"); empty when it can, or there is none.
    """
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _MEMBERS}
    except FileNotFoundError:
        return None, ""
    except Exception as exc:  # noqa: BLE001 - not a zip, not numpy arrays, a missing member, a refused pickle ...
        return None, f"cannot be read ({exc})"
    graph, problem = _check(arrays, model=model, floor=floor, dtype=dtype)
    return graph, problem and f"is not used ({problem})"


def _check(arrays, *, model, floor, dtype):
    """``(SavedGraph, "")`` if the arrays' structure is valid, else ``(None, why not)``."""
    try:
        meta = json.loads(bytes(arrays["meta"]).decode())
        paths = bytes(arrays["paths"]).decode("utf-8", "surrogateescape").split("\0")
    except (TypeError, ValueError) as exc:
        return None, f"unreadable header or paths: {exc}"
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
        return None, "not an imagecluster graph of this version"
    if meta.get("floor") != floor or meta.get("model") != model:
        return None, f"made for floor {meta.get('floor')} and model {meta.get('model')!r}"
    if dtype is not None and meta.get("dtype") != dtype:
        return None, f"made from {meta.get('dtype')} fingerprints"
    n = meta.get("n")
    i, j, sims, sizes, mtimes = (arrays[k] for k in ("i", "j", "sim", "sizes", "mtimes"))
    if n == 0:
        paths = []
    if not isinstance(n, int) or len(paths) != n or len(set(paths)) != n or sizes.shape != (n,) \
            or mtimes.shape != (n,) or sizes.dtype != np.int64 or mtimes.dtype != np.int64:
        return None, "photo list damaged"
    if not (i.dtype == j.dtype == np.int32 and sims.dtype == np.float32 and i.shape == j.shape == sims.shape
            and i.ndim == 1):
        return None, "edge arrays damaged"
    if len(i) and (i.min() < 0 or j.max() >= n or not (i < j).all()
                   or not np.isfinite(sims).all() or sims.min() < floor or sims.max() > 1.0 + ROUNDING):
        return None, "edges out of range"
    exact = meta.get("exact", True)  # graphs saved before approximate builds were all exact
    if not isinstance(exact, bool):
        return None, "header damaged"
    return SavedGraph(paths, sizes, mtimes, Edges(i, j, sims), exact), ""
