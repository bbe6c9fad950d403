"""One-call helpers for scripts and notebooks, as the original ``main.main(imagedir, sim)``."""

import logging
import os
from pathlib import Path

from ._library import index_library, library_clusters
from ._pairs import check_pair_link
from ._pipeline import DEFAULT_BATCH_SIZE, check_batch_size, iter_fingerprint_batches, resolve_model
from ._progress import ProgressBar
from .cluster import DEFAULT_SIM, check_cut, check_min_size, check_sim
from .images import check_library
from .store import Store
from .tree import check_tree_folder, write_tree

__all__ = ["cluster_folder", "default_tree_folder", "fingerprints", "run_cluster"]

logger = logging.getLogger(__name__)


def default_tree_folder(library):
    """Where the cluster tree goes unless told otherwise: ``<library>/clusters``.

    Parameters
    ----------
    library : path-like
        The photo folder.

    Returns
    -------
    pathlib.Path
    """
    return Path(library) / "clusters"


def fingerprints(paths, *, model=None, batch_size=DEFAULT_BATCH_SIZE, progress=False):
    """Fingerprint photos without any store: one L2-normalised vector per readable photo.

    Parameters
    ----------
    paths : iterable of path-like
        Photos to fingerprint.
    model : str or model object, default=None
        ``"lite0"`` (the default), ``"vgg16"``, or a model from
        :func:`imagecluster.models.load_model`.
    batch_size : int, default=32
        Photos per inference call.
    progress : bool, default=False
        Show progress on stderr: a bar on a terminal, else a line every 10 s.

    Returns
    -------
    dict of pathlib.Path to numpy.ndarray of shape (n_features,)
        In the order given. Photos that cannot be read are left out and
        logged as warnings.
    """
    batch_size = check_batch_size(batch_size)
    paths = [Path(p) for p in paths]
    model = resolve_model(model)
    result = {}
    with ProgressBar("fingerprinting", enabled=progress) as bar:
        advance = bar(len(paths)) if paths else None
        for batch in iter_fingerprint_batches(paths, model, batch_size=batch_size, progress=advance):
            result.update(zip(map(Path, batch.paths), batch.fingerprints))
            for failure in batch.failures:
                logger.warning("skipped %s: %s", failure.path, failure.reason)
    return result


def run_cluster(
    library, *, sim=DEFAULT_SIM, out=None, model=None, min_size=2, cut="absolute",
    batch_size=DEFAULT_BATCH_SIZE, progress=False, write=True, pair_link="jpeg", scheduler=None, path_map=(),
    thumbnails=False,
):
    """Index, cluster and write the tree; returns ``(report, clusters, tree)``.

    The work behind :func:`cluster_folder` and ``imagecluster cluster``; see
    there for the parameters. ``tree`` is None when ``write`` is False.
    With ``thumbnails`` (a gallery follows) the photos fingerprinted also get
    their gallery thumbnails, from the same decode.
    With ``scheduler`` (a Dask scheduler address or ``"local:N"``) the
    fingerprinting runs on Dask workers, ``path_map`` turning this machine's
    paths into theirs (:mod:`imagecluster._distributed`).
    """
    root = check_library(library)
    sim = check_sim(sim)
    cut = check_cut(cut)
    min_size = check_min_size(min_size)
    batch_size = check_batch_size(batch_size)
    pair_link = check_pair_link(pair_link)
    if write:  # before any indexing: a bad tree folder inside the library would cost its photos' fingerprints
        out = check_tree_folder(default_tree_folder(root) if out is None else out, libraries=[root])
    model = resolve_model(model)
    store = Store(root)
    report = index_for_run(root, model, store, exclude=[out] if write else [], batch_size=batch_size,
                           progress=progress, scheduler=scheduler, path_map=path_map, thumbnails=thumbnails)
    # The first clustering of a large library searches every pair of photos (a minute at 100,000): show it.
    with ProgressBar(f"comparing the photos of {root.name or root}", enabled=progress) as bar:
        clusters = library_clusters(root, store, model.name, sim=sim, min_size=min_size, cut=cut,
                                    pair_link=pair_link, progress=bar.update)
    tree = None
    if write:
        info = {"library": os.fspath(root), "sim": sim, "cut": cut, "model": model.name, "min_size": min_size}
        tree = write_tree(clusters, out, info=info)
    return report, clusters, tree


def index_for_run(root, model, store, *, exclude, batch_size, progress, scheduler=None, path_map=(),
                  thumbnails=False):
    """Fingerprint what is new in a library before clustering it (locally, or on Dask with ``scheduler``).

    ``thumbnails`` keeps gallery thumbnails from the same decode (locally only:
    Dask workers send fingerprints back, not pictures).
    """
    with ProgressBar(f"fingerprinting {root.name or root}", enabled=progress) as bar:
        if scheduler is None:
            cache = None
            if thumbnails:
                from .gallery import library_thumbnails

                cache = library_thumbnails(store)
            return index_library(root, model=model, store=store, exclude=exclude, batch_size=batch_size,
                                 progress=bar, thumbnails=cache)
        from ._distributed import index_with_scheduler

        return index_with_scheduler(root, scheduler, model=model.name, store=store, exclude=exclude,
                                    batch_size=batch_size, path_map=path_map, progress=bar)


def cluster_folder(
    path, *, sim=DEFAULT_SIM, out=None, model=None, min_size=2, cut="absolute", progress=False, write=True,
    pair_link="jpeg",
):
    """Cluster a folder of photos by content, like ``imagecluster cluster``.

    Fingerprints what is new or changed (stored in ``<path>/.imagecluster``),
    clusters everything, and writes the symlink tree.

    Parameters
    ----------
    path : path-like
        The photo folder (searched recursively).
    sim : float, default=DEFAULT_SIM
        Similarity index in 0..1; higher gives smaller, tighter clusters.
    out : path-like, default=None
        Where to write the tree; None means ``<path>/clusters``.
    model : str or model object, default=None
        Fingerprint model; None means ``"lite0"``.
    min_size : int, default=2
        Smallest cluster reported.
    cut : {"absolute", "relative"}, default="absolute"
        How ``sim`` cuts the dendrogram (see :func:`imagecluster.cluster.cluster`).
    progress : bool, default=False
        Show progress on stderr: a bar on a terminal, else a line every 10 s.
    write : bool, default=True
        Write the symlink tree. The fingerprints are stored in
        ``<path>/.imagecluster`` either way; to write nothing at all, use
        :func:`fingerprints` and :func:`imagecluster.cluster.cluster`.
    pair_link : {"jpeg", "raw"}, default="jpeg"
        A RAW and a JPEG of one shot (same folder, same name, e.g.
        ``IMG_0001.CR2`` + ``IMG_0001.JPG``) are one photo: which of the two
        is listed and linked.

    Returns
    -------
    list of list of pathlib.Path
        Absolute photo paths, one list per cluster, largest first.

    Examples
    --------
    >>> import imagecluster
    >>> clusters = imagecluster.cluster_folder("~/Pictures/holiday", sim=0.7)  # doctest: +SKIP
    >>> len(clusters[0])  # doctest: +SKIP
    4
    """
    _, clusters, _ = run_cluster(
        path, sim=sim, out=out, model=model, min_size=min_size, cut=cut, progress=progress, write=write,
        pair_link=pair_link,
    )
    return clusters
