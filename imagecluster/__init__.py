"""imagecluster: group photos by content.

A pretrained network turns every photo into a fingerprint vector, average-
linkage clustering groups similar fingerprints, and the groups are written as
a tree of symlinks. The building blocks are plain functions over paths and
numpy arrays::

    import imagecluster
    clusters = imagecluster.cluster_folder("~/Pictures", sim=0.7)

    fps = imagecluster.fingerprints(paths)                  # {path: vector}
    names = list(fps)
    groups = imagecluster.cluster.cluster(list(fps.values()), sim=0.7)  # row indices
    imagecluster.write_tree([[names[i] for i in g] for g in groups], "out")
"""

__version__ = "0.1.0"

from ._api import cluster_folder, default_tree_folder, fingerprints
from ._exceptions import (
    ImageClusterError,
    InvalidParameter,
    LibraryNotFound,
    ModelError,
    NotAnImage,
    NotInLibrary,
    NotOurTree,
    PhotoNotFound,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    TreeError,
)
from ._library import IndexReport, index_library
from .cluster import DEFAULT_SIM
from .images import find_images, load_image
from .models import load_model
from .store import Store
from .tree import write_tree

__all__ = [
    "DEFAULT_SIM",
    "ImageClusterError",
    "IndexReport",
    "InvalidParameter",
    "LibraryNotFound",
    "ModelError",
    "NotAnImage",
    "NotInLibrary",
    "NotOurTree",
    "PhotoNotFound",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "TreeError",
    "__version__",
    "cluster",
    "cluster_folder",
    "default_tree_folder",
    "find_images",
    "fingerprints",
    "index_library",
    "load_image",
    "load_model",
    "write_tree",
]
