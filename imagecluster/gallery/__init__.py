"""See the clusters: a self-contained HTML gallery with a live sim slider, and a dendrogram.

``write_gallery(library, out)`` writes ``out/index.html`` and its thumbnails:
one row per cluster, a slider that regroups in the page at any sim from 0.5
to 1 exactly as ``imagecluster cluster --sim`` does, offline from ``file://``.
``plot_dendrogram`` draws the average-linkage tree with its axis in sim
(needs matplotlib, ``pip install 'imagecluster[plots]'``).
"""

from ._build import GALLERY_MARKER, Gallery, check_gallery_folder, default_gallery_folder, write_gallery
from ._dendrogram import MAX_LEAVES, plot_dendrogram
from ._merges import Merges, cut_merges, library_merges
from ._thumbs import DEFAULT_SIDE, ThumbnailCache, ThumbnailFiles, library_thumbnails, make_thumbnail

__all__ = [
    "DEFAULT_SIDE", "GALLERY_MARKER", "MAX_LEAVES", "Gallery", "Merges", "ThumbnailCache", "ThumbnailFiles",
    "check_gallery_folder", "cut_merges", "default_gallery_folder", "library_merges", "library_thumbnails",
    "make_thumbnail", "plot_dendrogram", "write_gallery",
]
