"""The average-linkage dendrogram of a library, its axis in sim, as a PNG.

The y axis is the similarity at which groups merge: 1 at the photos (leaves),
falling towards the root (merges below 0 are drawn at 0). The chosen ``sim``
is a dashed red line: every branch that crosses it is one cluster of
``imagecluster cluster --sim``. Up to :data:`MAX_LEAVES` photos each photo is a
leaf, labelled with its file name; a larger library is drawn at the cluster
level instead: the clusters at ``sim`` are the leaves (the largest
:data:`MAX_LEAVES` of them), joined above the line by the same average linkage.

matplotlib is an optional extra (``pip install 'imagecluster[plots]'``).
"""

import logging
import os

import numpy as np

from .._exceptions import InvalidParameter, MissingDependency, NotAnImage
from ..cluster import check_fingerprints, check_sim, cluster
from ._build import display_name

__all__ = ["MAX_LEAVES", "MAX_THUMBNAILS", "Dendrogram", "plot_dendrogram"]

logger = logging.getLogger(__name__)

#: Most leaves drawn one per photo; above, the leaves are clusters.
MAX_LEAVES = 300

#: The colour of the sim line (matplotlib's tab:red), for readers of the PNG.
SIM_LINE_RGB = (214, 39, 40)

_DPI = 100
_HEIGHT_INCHES = 7.0
#: Most leaves drawn with their thumbnails (a leaf is 0.16 inch wide at most leaves; thumbnails need room).
MAX_THUMBNAILS = 40
_THUMB_INCHES = 0.9
# Longest leaf label; longer file names are cut with an ellipsis.
_LABEL_CHARS = 34


class Dendrogram:
    """What :func:`plot_dendrogram` drew.

    Attributes
    ----------
    level : {"photos", "clusters"}
        Whether the leaves are photos or clusters at ``sim``.
    leaves : int
        Number of leaves drawn.
    size : (int, int)
        The PNG's width and height in pixels.
    sim_line_y : int
        Pixel row (from the top) of the sim line.
    x_range : (int, int)
        Pixel columns the plot area spans.
    """

    def __init__(self, level, leaves, size, sim_line_y, x_range):
        self.level = level
        self.leaves = leaves
        self.size = size
        self.sim_line_y = sim_line_y
        self.x_range = x_range


def plot_dendrogram(names, fingerprints, png, *, sim, max_leaves=MAX_LEAVES, title=None, photos=None):
    """Draw the average-linkage dendrogram of photos, y axis in sim, into a PNG.

    Parameters
    ----------
    names : list of str
        A label per photo (its file name).
    fingerprints : array-like of shape (n_images, n_features)
        Their fingerprints.
    png : path-like
        Where the PNG goes.
    sim : float
        Drawn as a line; above ``max_leaves`` photos, the cut that makes the leaves.
    max_leaves : int, default=MAX_LEAVES
        Most photos drawn as leaves.
    title : str, default=None
        The plot's title.
    photos : list of path-like, default=None
        The photos themselves: up to :data:`MAX_THUMBNAILS` leaves, each gets
        its thumbnail under it (one that cannot be read is left out).

    Returns
    -------
    Dendrogram

    Raises
    ------
    MissingDependency
        matplotlib is not installed.
    InvalidParameter
        Fewer than two photos, or names and fingerprints of different lengths.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependency(
            "the dendrogram needs matplotlib: pip install 'imagecluster[plots]'"
        ) from exc
    from scipy.cluster.hierarchy import dendrogram

    fps, sim = check_fingerprints(fingerprints), check_sim(sim)
    if len(names) != len(fps):
        raise InvalidParameter(f"{len(names)} names for {len(fps)} fingerprints")
    if len(fps) < 2:
        raise InvalidParameter("a dendrogram needs at least two photos")
    unit = fps / np.maximum(np.linalg.norm(fps, axis=1, keepdims=True), 1e-12)
    if len(fps) <= max_leaves:
        level, labels = "photos", [_label(os.path.basename(n) or n) for n in names]
        tree = _average_linkage(unit, [[k] for k in range(len(unit))])
    else:
        level = "clusters"
        groups = _cluster_leaves(unit, sim, max_leaves)
        labels = [_label(f"{len(g)}: {os.path.basename(names[g[0]])[:24]}") for g in groups]
        tree = _average_linkage(unit, groups)
    leaves = len(labels)
    width = min(60.0, max(8.0, 0.16 * leaves + 2.0))
    thumbs = photos is not None and level == "photos" and leaves <= MAX_THUMBNAILS
    if thumbs:
        width = max(width, _THUMB_INCHES * leaves + 1.2)
    height = _HEIGHT_INCHES + (_THUMB_INCHES if thumbs else 0.0)
    fig = Figure(figsize=(width, height), dpi=_DPI)
    left, right = 0.9 / width, 0.3 / width  # inches for the axis label, the sim line's text
    bottom = (2.4 + (_THUMB_INCHES if thumbs else 0.0)) / height
    ax = fig.add_axes((left, bottom, 1.0 - left - right, 4.1 / height))
    shape = dendrogram(tree, no_plot=True, labels=labels)
    for xs, ds in zip(shape["icoord"], shape["dcoord"]):
        ax.plot(xs, np.clip(1.0 - np.asarray(ds), 0.0, 1.0), color="#1f3b73", linewidth=0.9)
    ax.set_xlim(0, 10 * leaves)
    ax.set_ylim(1.0, 0.0)  # leaves (sim 1) at the bottom, the root (sim 0) at the top
    ax.set_ylabel("sim (average similarity at which groups merge)")
    ax.set_xticks(np.arange(5, 10 * leaves, 10))
    font = max(4.0, min(9.0, 900.0 / max(leaves, 1)))
    ax.set_xticklabels(shape["ivl"], rotation=90, fontsize=font)
    if thumbs:
        _add_thumbnails(ax, [photos[k] for k in shape["leaves"]])
    ax.axhline(sim, color=np.array(SIM_LINE_RGB) / 255.0, linestyle="--", linewidth=2.0)
    ax.text(1.0, sim, f"sim {sim:g} ", transform=ax.get_yaxis_transform(), color=np.array(SIM_LINE_RGB) / 255.0,
            va="bottom", ha="right", fontsize=9, backgroundcolor="white")
    if title:
        ax.set_title(title)
    if level == "clusters":
        ax.set_xlabel(f"the {leaves} largest clusters at sim {sim:g} (size: first photo); "
                      f"{len(fps)} photos are too many to label one by one")
    fig.savefig(os.fspath(png), dpi=_DPI)
    size = (int(round(width * _DPI)), int(round(height * _DPI)))
    _, y = ax.transData.transform((0, sim))
    x0, _ = ax.transData.transform((0, 0))
    x1, _ = ax.transData.transform((10 * leaves, 0))
    return Dendrogram(level, leaves, size, int(round(size[1] - y)), (int(x0), int(x1)))


def _add_thumbnails(ax, photos):
    """Each leaf's thumbnail just under the axis; its label moves below them."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from ._thumbs import make_thumbnail

    side = int(_THUMB_INCHES * _DPI) - 8
    ax.tick_params(axis="x", pad=_THUMB_INCHES * 72 + 2)  # points
    for k, path in enumerate(photos):
        try:
            image = np.asarray(make_thumbnail(path, side))
        except NotAnImage as exc:
            logger.info("no thumbnail in the dendrogram for %s", exc)
            continue
        box = AnnotationBbox(OffsetImage(image, zoom=1.0), (10 * k + 5, 1.0), xybox=(0, -_THUMB_INCHES * 36),
                             xycoords="data", boxcoords="offset points", frameon=False, annotation_clip=False)
        ax.add_artist(box)


def _label(name):
    """A file name as matplotlib text: one line of valid Unicode, ``$`` not starting math."""
    name = display_name(name)
    if len(name) > _LABEL_CHARS:
        name = name[: _LABEL_CHARS - 1] + "\u2026"
    return name.replace("$", r"\$")


def _cluster_leaves(unit, sim, max_leaves):
    """The clusters at ``sim`` (photos alone count when there is room), the largest ``max_leaves``."""
    groups = cluster(unit, sim, 1)
    if len(groups) > max_leaves:
        logger.info("%d groups at sim %s; drawing the %d largest", len(groups), sim, max_leaves)
    return groups[:max_leaves]


def _average_linkage(unit, groups):
    """scipy-format linkage of groups (average linkage seeded with whole groups), distance ``1 - sim``."""
    if len(groups) == 1:
        return np.zeros((0, 4))
    sums = np.stack([unit[g].astype(np.float64).sum(axis=0) for g in groups])
    sizes = np.array([len(g) for g in groups], dtype=np.float64)
    sims = sums @ sums.T / np.outer(sizes, sizes)
    np.fill_diagonal(sims, -np.inf)
    g = len(groups)
    ids = np.arange(g)
    leaves = np.ones(g)  # scipy counts leaves (groups), not photos
    tree = np.zeros((g - 1, 4))
    for step in range(g - 1):
        a, b = divmod(int(np.argmax(sims)), g)
        a, b = min(a, b), max(a, b)
        tree[step] = (ids[a], ids[b], 1.0 - sims[a, b], leaves[a] + leaves[b])
        merged = (sizes[a] * sims[a] + sizes[b] * sims[b]) / (sizes[a] + sizes[b])  # Lance-Williams, average
        sims[a], sims[:, a] = merged, merged
        sims[b], sims[:, b] = -np.inf, -np.inf
        sims[a, a] = -np.inf
        sizes[a] += sizes[b]
        leaves[a] += leaves[b]
        ids[a] = g + step
    tree[:, 2] = np.maximum(tree[:, 2], 0.0)
    return tree
